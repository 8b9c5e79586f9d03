#include "dotproxy/cache/packet_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <new>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "../dns/dns_test_util.h"
#include "dotproxy/dns/message.h"
#include "dotproxy/dns/query.h"

// Allocation counting for the warm-hit test: a replaced global operator new that counts while
// g_counting is set and otherwise only forwards to malloc. Sanitizer runtimes bring their own
// operator new, so under ASan and TSan the test checks buffer stability only.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define DOTPROXY_TEST_NO_NEW_HOOK 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define DOTPROXY_TEST_NO_NEW_HOOK 1
#endif

namespace {
std::atomic<bool> g_counting{false};
std::atomic<size_t> g_allocations{0};
}  // namespace

#ifndef DOTPROXY_TEST_NO_NEW_HOOK
// GCC, inlining these into callers, takes malloc/free for a mismatch with new/delete.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) {
  return ::operator new(n);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, size_t) noexcept {
  std::free(p);
}
#endif

namespace dotproxy::cache {
namespace {

using dns::Edns;
namespace flag = dns::flag;
namespace klass = dns::klass;
using dns::Section;
using dns::testing::makeQuery;
using dns::testing::option;
using dns::testing::QuerySpec;
namespace type = dns::type;
using std::chrono::hours;
using std::chrono::milliseconds;

const Clock::time_point kT0 = Clock::time_point{} + hours(1000);

using Bytes = dns::testing::Bytes;

Bytes aRdata(uint8_t last) {
  return {std::byte{192}, std::byte{0}, std::byte{2}, std::byte{last}};
}

Bytes toBytes(const PacketBuffer& b) {
  return Bytes(b.view().begin(), b.view().end());
}

Bytes nameRdata(std::string_view text) {
  PacketBuffer out;
  WireWriter w(out);
  dns::writeName(w, dns::testing::name(text));
  return toBytes(out);
}

Bytes soaRdata(uint32_t minimum) {
  PacketBuffer out;
  WireWriter w(out);
  dns::writeName(w, dns::testing::name("ns.example.com"));
  dns::writeName(w, dns::testing::name("hostmaster.example.com"));
  for (uint32_t v : {2024u, 3600u, 600u, 86400u}) w.u32(v);
  w.u32(minimum);
  return toBytes(out);
}

struct Rr {
  Section section = Section::Answer;
  std::string owner = "example.com";
  uint16_t type = type::A;
  uint32_t ttl = 300;
  Bytes rdata = aRdata(1);
};

Rr a(uint32_t ttl, uint8_t last = 1) {
  return {.ttl = ttl, .rdata = aRdata(last)};
}
Rr soa(uint32_t ttl, uint32_t minimum) {
  return {.section = Section::Authority,
          .owner = "example.com",
          .type = type::SOA,
          .ttl = ttl,
          .rdata = soaRdata(minimum)};
}

struct AnswerSpec {
  uint16_t id = 0x9999;
  uint16_t flags = flag::QR | flag::RD | flag::RA;
  uint8_t rcode = 0;
  std::string qname = "example.com";
  uint16_t qtype = type::A;
  std::vector<Rr> records = {};
  bool edns = true;
  uint8_t ext_rcode = 0;
  std::vector<dns::EdnsOption> options = {};
};

struct Upstream {
  PacketBuffer wire;
  dns::ResponseInfo info;
};

Upstream upstream(const AnswerSpec& s) {
  Upstream u;
  dns::MessageBuilder b(u.wire);
  dns::Header h;
  h.id = s.id;
  h.flags = s.flags;
  h.setRcode(s.rcode);
  b.header(h);
  b.question(dns::testing::name(s.qname), s.qtype);
  for (const Rr& r : s.records) {
    b.record(r.section, dns::testing::name(r.owner), r.type, klass::IN, r.ttl, r.rdata);
  }
  if (s.edns) {
    Edns e;
    e.udp_size = 1232;
    e.ext_rcode = s.ext_rcode;
    e.options = s.options;
    b.opt(e);
  }
  EXPECT_TRUE(b.finish());
  auto info = dns::parseResponse(u.wire);
  EXPECT_TRUE(info) << errcName(info.error());
  if (info) u.info = *info;
  return u;
}

struct Client {
  PacketBuffer raw;
  dns::QueryInfo q;
  Key key;
};

Client client(const QuerySpec& s) {
  Client c;
  c.raw = makeQuery(s);
  auto q = dns::parseQuery(c.raw);
  EXPECT_TRUE(q);
  if (q) c.q = *q;
  c.key = makeKey(c.q);
  return c;
}

struct Served {
  std::optional<Hit> hit;
  PacketBuffer wire;
  std::optional<dns::Message> msg;
};

Served lookup(PacketCache& cache, const Client& c, Clock::time_point now,
              Stale stale = Stale::Refuse, size_t max_size = 65535) {
  Served s;
  s.hit = cache.lookup(c.key, c.q, c.raw, max_size, 1232, now, stale, s.wire);
  if (s.hit) {
    auto m = dns::parseMessage(s.wire);
    EXPECT_TRUE(m) << errcName(m.error());
    if (m) s.msg = std::move(*m);
  }
  return s;
}

bool store(PacketCache& cache, const Upstream& u, Clock::time_point now = kT0,
           const QuerySpec& qs = {}) {
  return cache.insert(client(qs).key, u.wire, u.info, now);
}

std::vector<uint32_t> ttls(const dns::Message& m) {
  std::vector<uint32_t> out;
  for (const auto* sec : {&m.answer, &m.authority, &m.additional}) {
    for (const auto& r : *sec) out.push_back(r.ttl);
  }
  return out;
}

// ---------------------------------------------------------------- keys

TEST(CacheKey, CaseFoldedNameGivesEqualKeyAndHash) {
  const Key a = client({.qname = "WwW.ExAmPlE.CoM"}).key;
  const Key b = client({.qname = "www.example.com"}).key;
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.hash, b.hash);
  EXPECT_EQ(a.name.toText(), "www.example.com.");
}

TEST(CacheKey, TypeClassDoAndCdAreSeparate) {
  const Key base = client({}).key;
  const Key aaaa = client({.qtype = type::AAAA}).key;
  const Key ch = client({.qclass = klass::CH}).key;
  const Key do_bit = client({.edns = true, .do_bit = true}).key;
  const Key cd = client({.flags = flag::RD | flag::CD}).key;
  const Key other = client({.qname = "example.org"}).key;
  for (const Key* k : {&aaaa, &ch, &do_bit, &cd, &other}) {
    EXPECT_FALSE(*k == base);
    EXPECT_NE(k->hash, base.hash);
  }
  // EDNS without DO is the same key as no EDNS at all.
  EXPECT_EQ(client({.edns = true}).key, base);
}

TEST(PacketCache, DifferentDoBitsDoNotMix) {
  PacketCache cache({});
  ASSERT_TRUE(store(cache, upstream({.records = {a(300)}}), kT0, {.edns = true, .do_bit = true}));
  EXPECT_FALSE(lookup(cache, client({.edns = true}), kT0).hit);
  EXPECT_TRUE(lookup(cache, client({.edns = true, .do_bit = true}), kT0).hit);
}

// ---------------------------------------------------------------- the reply

// At age 0 a hit is byte for byte what buildClientReply makes of the upstream answer.
TEST(PacketCache, FreshHitEqualsBuildClientReply) {
  const Upstream u = upstream(
      {.records = {a(300),
                   a(200, 2),
                   soa(900, 60),
                   {.section = Section::Additional, .ttl = 50, .rdata = aRdata(9)}},
       .ext_rcode = 0,
       .options = {option(dns::edns_option::Padding, std::string(12, '\0')),
                   option(dns::edns_option::ExtendedError, std::string_view("\x00\x03stale", 7))}});
  const std::vector<QuerySpec> clients = {
      {.id = 1, .flags = 0, .qname = "ExAmPlE.cOm"},
      {.id = 2, .qname = "EXAMPLE.COM", .edns = true, .udp_size = 4096},
      {.id = 3, .edns = true, .udp_size = 512, .do_bit = true},
  };
  for (const QuerySpec& qs : clients) {
    PacketCache cache({});
    ASSERT_TRUE(store(cache, u, kT0, qs));
    const Client c = client(qs);
    for (size_t max : {size_t{65535}, size_t{512}, size_t{60}}) {
      PacketBuffer expected;
      dns::buildClientReply(u.wire, u.info, c.q, c.raw, max, 1232, expected);
      const Served s = lookup(cache, c, kT0, Stale::Refuse, max);
      ASSERT_TRUE(s.hit);
      EXPECT_EQ(asChars(s.wire), asChars(expected)) << "client " << qs.id << " max " << max;
    }
  }
}

// The same differential where the caps bind: a TTL above max_ttl (negative_max_ttl once an SOA
// makes the answer partly negative) and one with the top bit set (RFC 2181 8) read the same fresh
// (the worker's buildClientReply + capClientTtls) and from the cache.
TEST(PacketCache, FreshHitEqualsTheCappedFreshReply) {
  const CacheSettings settings{
      .min_ttl = seconds(10), .max_ttl = seconds(3600), .negative_max_ttl = seconds(60)};
  const dns::TtlCaps caps{.max_ttl = 3600, .negative_max_ttl = 60};
  const std::vector<AnswerSpec> answers = {
      {.records = {a(200000), a(0x80000005u, 2)}},
      {.records = {a(200000), soa(0x80000000u, 900)}},
  };
  for (const AnswerSpec& as : answers) {
    const Upstream u = upstream(as);
    PacketCache cache(settings);
    ASSERT_TRUE(store(cache, u, kT0, {}));
    const Client c = client({.edns = true});
    PacketBuffer expected;
    dns::buildClientReply(u.wire, u.info, c.q, c.raw, 65535, 1232, expected);
    dns::capClientTtls(expected.mutableView(), dns::ttlCap(u.info, caps));
    const Served s = lookup(cache, c, kT0);
    ASSERT_TRUE(s.hit);
    EXPECT_EQ(asChars(s.wire), asChars(expected)) << as.records.size();
    ASSERT_TRUE(s.msg);
    EXPECT_EQ(s.msg->answer[0].ttl, as.records[1].type == type::SOA ? 60u : 3600u);
  }
}

TEST(PacketCache, HitCarriesClientIdSpellingAndOurOpt) {
  PacketCache cache({});
  const Upstream u = upstream({.records = {a(300)}, .ext_rcode = 0});
  ASSERT_TRUE(store(cache, u, kT0, {.qname = "example.com"}));

  Served s = lookup(cache, client({.id = 0x4242, .flags = 0, .qname = "eXaMpLe.CoM"}), kT0);
  ASSERT_TRUE(s.msg);
  EXPECT_EQ(s.msg->header.id, 0x4242);
  EXPECT_FALSE(s.msg->header.rd());
  EXPECT_TRUE(s.msg->header.qr());
  EXPECT_EQ(s.msg->questions[0].name.toText(), "eXaMpLe.CoM.");
  EXPECT_FALSE(s.msg->edns);  // no EDNS from the client: no OPT
  EXPECT_EQ(s.msg->header.arcount, 0);

  s = lookup(cache, client({.id = 7, .edns = true, .udp_size = 4096}), kT0);
  ASSERT_TRUE(s.msg);
  ASSERT_TRUE(s.msg->edns);
  EXPECT_EQ(s.msg->edns->udp_size, 1232);
  EXPECT_FALSE(s.msg->edns->do_bit);
  EXPECT_TRUE(s.msg->edns->options.empty());
  EXPECT_EQ(s.msg->header.arcount, 1);
  EXPECT_TRUE(s.msg->header.rd());
}

TEST(PacketCache, ExtendedRcodeAndEdeSurvive) {
  PacketCache cache({});
  const Upstream u = upstream(
      {.rcode = 2,
       .ext_rcode = 0,
       .options = {option(dns::edns_option::ExtendedError, std::string_view("\x00\x16", 2))}});
  ASSERT_TRUE(store(cache, u, kT0, {.edns = true, .do_bit = true}));
  const Served s = lookup(cache, client({.edns = true, .do_bit = true}), kT0);
  ASSERT_TRUE(s.msg);
  EXPECT_EQ(s.msg->rcode(), 2);
  ASSERT_TRUE(s.msg->edns);
  EXPECT_TRUE(s.msg->edns->do_bit);
  ASSERT_EQ(s.msg->edns->options.size(), 1u);
  EXPECT_EQ(s.msg->edns->options[0].code, dns::edns_option::ExtendedError);
}

TEST(PacketCache, LargeAnswerIsTruncatedForSmallClients) {
  PacketCache cache({});
  std::vector<Rr> many;
  for (int i = 0; i < 40; ++i) many.push_back(a(300, static_cast<uint8_t>(i)));
  const Upstream u = upstream({.records = many});
  ASSERT_GT(u.wire.size(), 512u);
  ASSERT_TRUE(store(cache, u));
  const Client c = client({.qname = "Example.Com"});
  const Served s = lookup(cache, c, kT0 + seconds(10), Stale::Refuse, c.q.maxUdpReply(1232));
  ASSERT_TRUE(s.msg);
  EXPECT_TRUE(s.msg->header.tc());
  EXPECT_EQ(s.msg->header.ancount, 0);
  EXPECT_EQ(s.msg->questions[0].name.toText(), "Example.Com.");
  EXPECT_EQ(s.wire.size(), c.q.question_end);
  // Over TCP the whole answer.
  const Served full = lookup(cache, c, kT0 + seconds(10));
  ASSERT_TRUE(full.msg);
  EXPECT_EQ(full.msg->answer.size(), 40u);
  EXPECT_EQ(full.msg->answer[5].ttl, 290u);
}

// ---------------------------------------------------------------- TTL arithmetic

TEST(PacketCache, TtlsDecreaseByWholeSecondsOfAgeInEverySection) {
  PacketCache cache({});
  const Upstream u = upstream(
      {.records = {a(300),
                   a(1000, 2),
                   {.section = Section::Authority,
                    .type = type::NS,
                    .ttl = 500,
                    .rdata = nameRdata("ns.example.com")},
                   {.section = Section::Additional, .owner = "ns.example.com", .ttl = 400}},
       .ext_rcode = 0});
  ASSERT_TRUE(store(cache, u));
  const Client c = client({.edns = true, .do_bit = false});
  Served s = lookup(cache, c, kT0 + milliseconds(100'900));
  ASSERT_TRUE(s.msg);
  EXPECT_EQ(ttls(*s.msg), (std::vector<uint32_t>{200, 900, 400, 300}));
  ASSERT_TRUE(s.msg->edns);  // OPT untouched as an RR: its TTL field carries flags, not age
  EXPECT_EQ(s.msg->edns->ext_rcode, 0);
  EXPECT_EQ(s.msg->edns->version, 0);
  EXPECT_FALSE(s.msg->edns->do_bit);
  EXPECT_EQ(s.msg->edns->udp_size, 1232);

  s = lookup(cache, c, kT0 + seconds(299));
  ASSERT_TRUE(s.msg);
  EXPECT_EQ(ttls(*s.msg), (std::vector<uint32_t>{1, 701, 201, 101}));
}

TEST(PacketCache, TtlNeverGoesBelowZero) {
  // min_ttl keeps the entry past its records' own TTLs; they stop at 0.
  PacketCache cache({.min_ttl = seconds(60)});
  ASSERT_TRUE(store(cache, upstream({.records = {a(10), a(100, 2)}})));
  const Served s = lookup(cache, client({}), kT0 + seconds(30));
  ASSERT_TRUE(s.msg);
  EXPECT_EQ(ttls(*s.msg), (std::vector<uint32_t>{0, 70}));
}

TEST(PacketCache, PositiveAnswerLivesForItsSmallestTtl) {
  PacketCache cache({});
  ASSERT_TRUE(store(cache, upstream({.records = {
                                         a(300),
                                         {.section = Section::Additional, .ttl = 40},
                                     }})));
  EXPECT_TRUE(lookup(cache, client({}), kT0 + seconds(39)).hit);
  EXPECT_FALSE(lookup(cache, client({}), kT0 + seconds(40)).hit);
}

TEST(PacketCache, ClampsToMinAndMaxTtl) {
  PacketCache cache({.min_ttl = seconds(60), .max_ttl = seconds(3600)});
  ASSERT_TRUE(
      store(cache,
            upstream({.qname = "short.example", .records = {{.owner = "short.example", .ttl = 5}}}),
            kT0, {.qname = "short.example"}));
  ASSERT_TRUE(store(
      cache,
      upstream({.qname = "long.example", .records = {{.owner = "long.example", .ttl = 100000}}}),
      kT0, {.qname = "long.example"}));
  EXPECT_TRUE(lookup(cache, client({.qname = "short.example"}), kT0 + seconds(59)).hit);
  EXPECT_FALSE(lookup(cache, client({.qname = "short.example"}), kT0 + seconds(60)).hit);
  const Served s = lookup(cache, client({.qname = "long.example"}), kT0 + seconds(3599));
  ASSERT_TRUE(s.msg);
  // max_ttl binds what the client is told too (as Unbound's cache-max-ttl): 3600 less the age.
  EXPECT_EQ(s.msg->answer[0].ttl, 3600u - 3599u);
  EXPECT_FALSE(lookup(cache, client({.qname = "long.example"}), kT0 + seconds(3600)).hit);
}

// ---------------------------------------------------------------- negative answers

seconds lifetimeOf(PacketCache& cache, const Upstream& u, const QuerySpec& qs = {}) {
  if (!store(cache, u, kT0, qs)) return seconds(0);
  const Client c = client(qs);
  for (int64_t t = 0; t < 200000; ++t) {
    if (!lookup(cache, c, kT0 + seconds(t)).hit) return seconds(t);
  }
  return seconds(-1);
}

TEST(PacketCache, NxdomainLivesForMinOfSoaTtlAndMinimum) {
  PacketCache cache({});
  EXPECT_EQ(lifetimeOf(cache, upstream({.rcode = 3, .records = {soa(100, 40)}}), {.id = 1}),
            seconds(40));
  EXPECT_EQ(
      lifetimeOf(cache, upstream({.rcode = 3, .qname = "b.example", .records = {soa(40, 100)}}),
                 {.qname = "b.example"}),
      seconds(40));
}

TEST(PacketCache, NodataUsesTheSoaRuleToo) {
  PacketCache cache({});
  EXPECT_EQ(lifetimeOf(cache, upstream({.records = {soa(70, 300)}})), seconds(70));
  EXPECT_EQ(lifetimeOf(cache, upstream({.qname = "c.example", .records = {soa(300, 70)}}),
                       {.qname = "c.example"}),
            seconds(70));
}

TEST(PacketCache, NegativeAnswerIsCappedAndClamped) {
  PacketCache capped({.negative_max_ttl = seconds(600)});
  EXPECT_EQ(lifetimeOf(capped, upstream({.rcode = 3, .records = {soa(7200, 7200)}})), seconds(600));
  PacketCache floored({.min_ttl = seconds(30)});
  EXPECT_EQ(lifetimeOf(floored, upstream({.rcode = 3, .records = {soa(10, 5)}})), seconds(30));
}

TEST(PacketCache, NegativeAnswerWithoutSoaIsNotCached) {
  PacketCache cache({});
  EXPECT_FALSE(store(cache, upstream({.rcode = 3})));
  EXPECT_FALSE(store(cache, upstream({})));  // NODATA without SOA
  EXPECT_EQ(cache.stats().entries, 0u);
}

TEST(PacketCache, ServfailIsCachedBriefly) {
  PacketCache cache({.servfail_ttl = seconds(5)});
  EXPECT_EQ(lifetimeOf(cache, upstream({.rcode = 2})), seconds(5));
  PacketCache off({.servfail_ttl = seconds(0)});
  EXPECT_FALSE(store(off, upstream({.rcode = 2})));
}

TEST(PacketCache, NotCached) {
  PacketCache cache({});
  EXPECT_FALSE(store(cache, upstream({.flags = flag::QR | flag::TC, .records = {a(300)}})));
  EXPECT_FALSE(store(cache, upstream({.rcode = 5, .records = {a(300)}})));      // REFUSED
  EXPECT_FALSE(store(cache, upstream({.rcode = 1})));                           // FORMERR
  EXPECT_FALSE(store(cache, upstream({.rcode = 4})));                           // NOTIMP
  EXPECT_FALSE(store(cache, upstream({.records = {a(300)}, .ext_rcode = 1})));  // BADVERS
  const uint16_t notify = static_cast<uint16_t>(dns::Opcode::Notify) << 11;
  EXPECT_FALSE(store(cache, upstream({.flags = flag::QR | notify, .records = {a(300)}})));
  EXPECT_FALSE(store(cache, upstream({.records = {a(300), a(0, 2)}})));  // zero TTL
  EXPECT_FALSE(store(cache, upstream({.records = {a(0x80000001)}})));    // top bit: 0 (RFC 2181)
  // An answer for another question than the key's.
  EXPECT_FALSE(store(cache, upstream({.qname = "other.example", .records = {a(300)}})));
  EXPECT_EQ(cache.stats().entries, 0u);
}

// ---------------------------------------------------------------- expiry and serve-stale

TEST(PacketCache, ExpiredIsAMissUnlessStaleIsServed) {
  PacketCache cache({.stale_max_age = seconds(3600), .stale_ttl = seconds(30)});
  ASSERT_TRUE(store(cache, upstream({.records = {a(100), soa(500, 500)}})));
  const Client c = client({});
  const Served fresh = lookup(cache, c, kT0 + seconds(99), Stale::Serve);
  ASSERT_TRUE(fresh.hit);
  EXPECT_FALSE(fresh.hit->stale);

  EXPECT_FALSE(lookup(cache, c, kT0 + seconds(100)).hit);
  const Served stale = lookup(cache, c, kT0 + seconds(100 + 3599), Stale::Serve);
  ASSERT_TRUE(stale.hit);
  EXPECT_TRUE(stale.hit->stale);
  EXPECT_FALSE(stale.hit->prefetch);
  ASSERT_TRUE(stale.msg);
  EXPECT_EQ(ttls(*stale.msg), (std::vector<uint32_t>{30, 30}));

  EXPECT_FALSE(lookup(cache, c, kT0 + seconds(100 + 3600), Stale::Serve).hit);
  EXPECT_EQ(cache.stats().entries, 0u);  // past any use: dropped
}

TEST(PacketCache, NoStaleWhenStaleMaxAgeIsZero) {
  PacketCache cache({.stale_max_age = seconds(0)});
  ASSERT_TRUE(store(cache, upstream({.records = {a(100)}})));
  EXPECT_FALSE(lookup(cache, client({}), kT0 + seconds(100), Stale::Serve).hit);
}

// ---------------------------------------------------------------- prefetch

bool prefetchAt(PacketCache& cache, const Client& c, Clock::time_point now) {
  const Served s = lookup(cache, c, now);
  EXPECT_TRUE(s.hit);
  return s.hit && s.hit->prefetch;
}

TEST(PacketCache, PrefetchOncePerEntryWhenPopularInTheLastTenth) {
  PacketCache cache({.prefetch_percent = 10});
  ASSERT_TRUE(store(cache, upstream({.records = {a(100)}})));
  const Client c = client({});
  EXPECT_FALSE(prefetchAt(cache, c, kT0 + seconds(50)));  // first hit, mid-life
  EXPECT_FALSE(prefetchAt(cache, c, kT0 + seconds(89)));  // popular, not near expiry
  EXPECT_TRUE(prefetchAt(cache, c, kT0 + milliseconds(90'001)));
  EXPECT_FALSE(prefetchAt(cache, c, kT0 + seconds(95)));  // reported once
  // Refreshed: the new entry may be reported again.
  ASSERT_TRUE(store(cache, upstream({.records = {a(100)}}), kT0 + seconds(96)));
  EXPECT_FALSE(prefetchAt(cache, c, kT0 + seconds(190)));
  EXPECT_TRUE(prefetchAt(cache, c, kT0 + seconds(191)));
}

TEST(PacketCache, NoPrefetchForAnEntryHitOnce) {
  PacketCache cache({.prefetch_percent = 10});
  ASSERT_TRUE(store(cache, upstream({.records = {a(100)}})));
  EXPECT_FALSE(prefetchAt(cache, client({}), kT0 + seconds(95)));
  PacketCache off({.prefetch_percent = 0});
  ASSERT_TRUE(store(off, upstream({.records = {a(100)}})));
  EXPECT_FALSE(prefetchAt(off, client({}), kT0 + seconds(10)));
  EXPECT_FALSE(prefetchAt(off, client({}), kT0 + seconds(99)));
}

// ---------------------------------------------------------------- memory and eviction

std::string hostName(size_t i) {
  return "host-" + std::to_string(i) + ".example.net";
}

// An A answer for a generated name, and its key.
struct Generated {
  Client c;
  Upstream u;
};
Generated generated(size_t i) {
  const std::string n = hostName(i);
  return {client({.qname = n}),
          upstream({.qname = n, .records = {{.owner = n, .rdata = aRdata(uint8_t(i))}}})};
}

TEST(PacketCache, StaysWithinItsBudget) {
  const size_t budget = 1 << 20;
  PacketCache cache({.max_bytes = budget, .shards = 4});
  for (size_t i = 0; i < 100'000; ++i) {
    const Generated g = generated(i);
    cache.insert(g.c.key, g.u.wire, g.u.info, kT0);
    if (i % 1000 == 0) {
      ASSERT_LE(cache.stats().bytes, budget) << i;
    }
  }
  const CacheStats st = cache.stats();
  EXPECT_LE(st.bytes, budget);
  EXPECT_GT(st.bytes, budget * 3 / 4);  // and uses it
  EXPECT_GT(st.evictions, 80'000u);
  EXPECT_EQ(st.entries + st.evictions, 100'000u);
  // The newest entries are there.
  EXPECT_TRUE(lookup(cache, generated(99'999).c, kT0).hit);
}

TEST(PacketCache, ReplacingAnEntryKeepsOneCopy) {
  PacketCache cache({});
  ASSERT_TRUE(store(cache, upstream({.records = {a(100)}})));
  const size_t bytes = cache.stats().bytes;
  ASSERT_TRUE(store(cache, upstream({.records = {a(200, 7)}}), kT0 + seconds(1)));
  EXPECT_EQ(cache.stats().entries, 1u);
  EXPECT_EQ(cache.stats().bytes, bytes);
  const Served s = lookup(cache, client({}), kT0 + seconds(1));
  ASSERT_TRUE(s.msg);
  EXPECT_EQ(s.msg->answer[0].ttl, 200u);
}

TEST(PacketCache, TooSmallABudgetStoresNothing) {
  PacketCache cache({.max_bytes = 100});
  EXPECT_TRUE(cache.enabled());
  EXPECT_FALSE(store(cache, upstream({.records = {a(300)}})));
  EXPECT_LE(cache.stats().bytes, 100u);
}

// A popular set hit between sweeps of names seen once survives them (SIEVE); a plain FIFO of the
// same capacity evicts it again and again.
TEST(PacketCache, ScanResistance) {
  constexpr size_t kPopular = 100;
  constexpr size_t kSweep = 50'000;
  // Room for about 300 entries: three times the popular set.
  const Generated probe = generated(0);
  size_t entry_bytes = 0;
  {
    PacketCache sizing({.max_bytes = 1 << 20, .shards = 1});
    sizing.insert(probe.c.key, probe.u.wire, probe.u.info, kT0);
    const CacheStats before = sizing.stats();
    const Generated second = generated(1);
    sizing.insert(second.c.key, second.u.wire, second.u.info, kT0);
    entry_bytes = sizing.stats().bytes - before.bytes;
  }
  const size_t budget = 300 * entry_bytes + 1024 * 9;  // plus its index
  PacketCache cache({.max_bytes = budget, .shards = 1});
  std::vector<Generated> popular;
  for (size_t i = 0; i < kPopular; ++i) popular.push_back(generated(1'000'000 + i));
  for (const auto& g : popular) cache.insert(g.c.key, g.u.wire, g.u.info, kT0);
  const size_t capacity = [&] {
    for (size_t i = 0; i < 1000; ++i) {
      const Generated g = generated(2'000'000 + i);
      cache.insert(g.c.key, g.u.wire, g.u.info, kT0);
    }
    return cache.stats().entries;
  }();
  ASSERT_GE(capacity, 2 * kPopular);

  // Every step: one name seen once, then one popular name (round robin), inserted on a miss as
  // the daemon would. A FIFO of the same capacity is simulated alongside.
  std::deque<size_t> fifo;
  std::unordered_set<size_t> in_fifo;
  size_t cache_hits = 0, fifo_hits = 0, lookups = 0;
  PacketBuffer out;
  for (size_t i = 0; i < kSweep; ++i) {
    const Generated g = generated(i + 10);
    cache.insert(g.c.key, g.u.wire, g.u.info, kT0);
    fifo.push_back(i + 10);
    in_fifo.insert(i + 10);

    const size_t p = i % kPopular;
    const Generated& pg = popular[p];
    const size_t pid = 1'000'000 + p;
    ++lookups;
    if (cache.lookup(pg.c.key, pg.c.q, pg.c.raw, 65535, 1232, kT0, Stale::Refuse, out)) {
      ++cache_hits;
    } else {
      cache.insert(pg.c.key, pg.u.wire, pg.u.info, kT0);
    }
    if (in_fifo.contains(pid)) {
      ++fifo_hits;
    } else {
      fifo.push_back(pid);
      in_fifo.insert(pid);
    }
    while (fifo.size() > capacity) {
      in_fifo.erase(fifo.front());
      fifo.pop_front();
    }
  }
  const double cache_ratio = double(cache_hits) / double(lookups);
  const double fifo_ratio = double(fifo_hits) / double(lookups);
  std::printf("scan resistance: capacity %zu entries, popular hit ratio SIEVE %.3f, FIFO %.3f\n",
              capacity, cache_ratio, fifo_ratio);
  EXPECT_GE(cache_ratio, 0.99);
  EXPECT_LT(fifo_ratio, 0.8);
  EXPECT_LE(cache.stats().bytes, budget);
}

// ---------------------------------------------------------------- threads, off, allocations

TEST(PacketCache, ConcurrentInsertsAndLookups) {
  PacketCache cache({.max_bytes = 256 << 10, .shards = 4});
  std::vector<Generated> names;
  for (size_t i = 0; i < 2000; ++i) names.push_back(generated(i));
  std::atomic<size_t> hits{0};
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      PacketBuffer out;
      for (size_t round = 0; round < 20; ++round) {
        for (size_t i = t; i < names.size(); i += 3) {
          const Generated& g = names[i];
          const auto now = kT0 + seconds(round);
          if (cache.lookup(g.c.key, g.c.q, g.c.raw, 65535, 1232, now, Stale::Serve, out)) {
            hits.fetch_add(1, std::memory_order_relaxed);
            ASSERT_GE(out.size(), g.c.q.question_end);
            ASSERT_EQ(loadU16(out.data()), g.c.q.header.id);
          } else {
            cache.insert(g.c.key, g.u.wire, g.u.info, now);
          }
        }
        (void)cache.stats();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_GT(hits.load(), 0u);
  EXPECT_LE(cache.stats().bytes, size_t{256} << 10);
}

TEST(PacketCache, OffWhenMaxBytesIsZero) {
  PacketCache cache({.max_bytes = 0});
  EXPECT_FALSE(cache.enabled());
  EXPECT_FALSE(store(cache, upstream({.records = {a(300)}})));
  EXPECT_FALSE(lookup(cache, client({}), kT0).hit);
  const CacheStats st = cache.stats();
  EXPECT_EQ(st.entries, 0u);
  EXPECT_EQ(st.bytes, 0u);
}

TEST(PacketCache, WarmHitsDoNotAllocate) {
  PacketCache cache({});
  const Upstream u = upstream(
      {.records = {a(300), a(300, 2), soa(300, 300)},
       .options = {option(dns::edns_option::ExtendedError, std::string_view("\x00\x03", 2))}});
  ASSERT_TRUE(store(cache, u, kT0, {.edns = true}));
  const Client c = client({.qname = "EXAMPLE.com", .edns = true});
  PacketBuffer out;
  ASSERT_TRUE(cache.lookup(c.key, c.q, c.raw, 1232, 1232, kT0, Stale::Refuse, out));
  const std::byte* data = out.data();
  const size_t capacity = out.capacity();
  g_allocations = 0;
  g_counting = true;
  size_t hits = 0;
  for (int i = 0; i < 10'000; ++i) {
    hits += cache.lookup(c.key, c.q, c.raw, 1232, 1232, kT0 + seconds(i % 200), Stale::Refuse, out)
                ? 1
                : 0;
  }
  g_counting = false;
  EXPECT_EQ(hits, 10'000u);
  EXPECT_EQ(out.data(), data);
  EXPECT_EQ(out.capacity(), capacity);
#ifndef DOTPROXY_TEST_NO_NEW_HOOK
  EXPECT_EQ(g_allocations.load(), 0u);
#else
  std::printf("allocation count not checked under ASan (it owns operator new)\n");
#endif
}

// ---------------------------------------------------------------- measurements, not tests

// DOTPROXY_CACHE_BENCH=1 core_tests --gtest_filter='PacketCacheBench.*' (a Release build)
TEST(PacketCacheBench, BytesPerEntryAndNsPerHit) {
  if (std::getenv("DOTPROXY_CACHE_BENCH") == nullptr) GTEST_SKIP() << "DOTPROXY_CACHE_BENCH unset";
  auto rss = [] {
    std::ifstream f("/proc/self/statm");
    size_t pages = 0, resident = 0;
    f >> pages >> resident;
    return resident * 4096;
  };
  constexpr size_t kEntries = 1'000'000;
  PacketCache cache({.max_bytes = size_t{4} << 30});
  const size_t rss_before = rss();
  PacketBuffer wire;
  for (size_t i = 0; i < kEntries; ++i) {
    const Generated g = generated(i);
    if (!cache.insert(g.c.key, g.u.wire, g.u.info, kT0)) FAIL() << "insert " << i;
  }
  const size_t rss_after = rss();
  const CacheStats st = cache.stats();
  const Generated sample = generated(1234);
  std::printf(
      "entries %zu, counted bytes/entry %.1f, resident bytes/entry %.1f (a %zu-byte "
      "upstream answer, %zu-byte name)\n",
      st.entries, double(st.bytes) / double(st.entries),
      double(rss_after - rss_before) / double(st.entries), sample.u.wire.size(),
      sample.c.key.name.wireSize());

  std::vector<Generated> hot;
  for (size_t i = 0; i < 1000; ++i) hot.push_back(generated(i * 997));
  PacketBuffer out;
  constexpr size_t kHits = 5'000'000;
  size_t hits = 0;
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < kHits; ++i) {
    const Generated& g = hot[i % hot.size()];
    hits += cache.lookup(g.c.key, g.c.q, g.c.raw, 1232, 1232, kT0 + seconds(1), Stale::Refuse, out)
                ? 1
                : 0;
  }
  const auto ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start);
  std::printf("%.1f ns per hit (lookup + copy + patch, 1000 hot names, %zu hits)\n",
              ns.count() / kHits, hits);
  const auto kstart = std::chrono::steady_clock::now();
  uint64_t sink = 0;
  for (size_t i = 0; i < kHits; ++i) sink += makeKey(hot[i % hot.size()].c.q).hash;
  const auto kns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - kstart);
  std::printf("%.1f ns per makeKey (%llu)\n", kns.count() / kHits,
              static_cast<unsigned long long>(sink & 1));
}

}  // namespace
}  // namespace dotproxy::cache

namespace dotproxy::cache {
namespace {

// Review findings, one test each.

TEST(PacketCacheRegression, AdBitOnlyForClientsThatAskForIt) {
  PacketCache cache({});
  ASSERT_TRUE(store(
      cache, upstream({.flags = flag::QR | flag::RD | flag::RA | flag::AD, .records = {a(300)}})));
  const Served plain = lookup(cache, client({}), kT0);
  ASSERT_TRUE(plain.msg);
  EXPECT_FALSE(plain.msg->header.ad()) << "AD reached a client that set neither AD nor DO";
  const Served asking = lookup(cache, client({.flags = flag::RD | flag::AD}), kT0);
  ASSERT_TRUE(asking.msg);
  EXPECT_TRUE(asking.msg->header.ad());
}

TEST(PacketCacheRegression, CnameToNodataLivesByTheSoaRule) {
  PacketCache cache({});
  Rr cname{.owner = "example.com",
           .type = type::CNAME,
           .ttl = 3600,
           .rdata = Bytes{std::byte{1}, std::byte{'x'}, std::byte{0}}};
  EXPECT_EQ(lifetimeOf(cache, upstream({.records = {cname, soa(3600, 60)}})), seconds(60));
}

TEST(PacketCacheRegression, OldServfailIsNeverServedStale) {
  PacketCache cache({.servfail_ttl = seconds(5)});
  ASSERT_TRUE(store(cache, upstream({.rcode = 2})));
  EXPECT_FALSE(lookup(cache, client({}), kT0 + seconds(6), Stale::Serve).hit);
}

TEST(PacketCacheRegression, AnswerTooLargeForTheShardKeepsTheOldEntry) {
  PacketCache cache({.max_bytes = 32 * 1024, .shards = 1});
  ASSERT_TRUE(store(cache, upstream({.records = {a(300)}})));
  std::vector<Rr> many;  // some 40 KiB: more than the whole budget
  for (int i = 0; i < 1500; ++i) many.push_back(a(300, static_cast<uint8_t>(i)));
  EXPECT_FALSE(store(cache, upstream({.records = many}), kT0 + seconds(1)));
  EXPECT_TRUE(lookup(cache, client({}), kT0 + seconds(2)).hit);
}

TEST(PacketCacheRegression, NegativeCapBindsTheServedTtl) {
  PacketCache cache({.negative_max_ttl = seconds(60)});
  ASSERT_TRUE(store(cache, upstream({.rcode = 3, .records = {soa(3600, 3600)}})));
  const Served s = lookup(cache, client({}), kT0 + seconds(10));
  ASSERT_TRUE(s.msg);
  EXPECT_EQ(s.msg->authority[0].ttl, 50u);
}

TEST(PacketCacheRegression, FailedPrefetchCanBeAskedAgain) {
  PacketCache cache({});
  ASSERT_TRUE(store(cache, upstream({.records = {a(100)}})));
  const Client c = client({});
  EXPECT_FALSE(lookup(cache, c, kT0 + seconds(1)).hit->prefetch);
  EXPECT_TRUE(lookup(cache, c, kT0 + seconds(95)).hit->prefetch);
  EXPECT_FALSE(lookup(cache, c, kT0 + seconds(96)).hit->prefetch);  // once
  cache.prefetchFailed(c.key);
  EXPECT_TRUE(lookup(cache, c, kT0 + seconds(97)).hit->prefetch);  // and again after a failure
}

}  // namespace
}  // namespace dotproxy::cache
