// Target 4: cache::PacketCache. An arbitrary answer that passes dns::parseResponse is inserted for
// its own question, then looked up by a client query (its own ID, spelling and EDNS) some seconds
// later, fresh or stale. A hit must be a message that parses, for the client's ID and question, and
// its TTLs must be at most the inserted ones minus the time spent in the cache (or the stale TTL).
// The first byte chooses the client (EDNS, DO, CD), the age and the UDP limit; the rest is the
// answer.

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "check.h"
#include "dotproxy/cache/packet_cache.h"
#include "dotproxy/dns/message.h"
#include "dotproxy/dns/query.h"
#include "names.h"

namespace {

using namespace dotproxy;
using std::chrono::seconds;

uint32_t wireTtl(uint32_t ttl) {
  return (ttl & 0x80000000u) ? 0 : ttl;  // RFC 2181 8
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t knobs = data[0];
  const WireView answer(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  auto info = dns::parseResponse(answer);
  if (!info) return 0;
  auto parsed = dns::parseMessage(answer);
  FUZZ_CHECK(parsed.has_value());

  // The client: its own ID, and the question in another spelling (the reply must keep the
  // client's).
  PacketBuffer query;
  dns::MessageBuilder b(query);
  uint16_t flags = dns::flag::RD;
  if (knobs & 4) flags |= dns::flag::CD;
  if (knobs & 8) flags |= dns::flag::AD;
  b.header({.id = 0x4242, .flags = flags});
  b.question(fuzz::flipCase(info->qname), info->qtype, info->qclass);
  if (knobs & 1) b.opt({.udp_size = 512, .do_bit = (knobs & 2) != 0});
  FUZZ_CHECK(b.finish().has_value());
  auto q = dns::parseQuery(query);
  FUZZ_CHECK(q.has_value());

  cache::PacketCache cache({.max_bytes = 1 << 16,
                            .shards = 1,
                            .min_ttl = seconds(knobs & 16 ? 2 : 0),
                            .max_ttl = seconds(3600),
                            .negative_max_ttl = seconds(600)});
  const cache::Key key = cache::makeKey(*q);
  const auto t0 = cache::Clock::time_point(seconds(1000));
  if (!cache.insert(key, answer, *info, t0)) return 0;

  constexpr int64_t kAges[] = {0, 1, 29, 300, 7200};
  const int64_t age = kAges[(knobs >> 5) % std::size(kAges)];
  const auto stale = knobs & 0x80 ? cache::Stale::Serve : cache::Stale::Refuse;
  const size_t limit = knobs & 1 ? 512 : dns::kMaxMessage;
  PacketBuffer out;
  auto hit = cache.lookup(key, *q, query, limit, 1232, t0 + seconds(age), stale, out);
  if (age == 0) FUZZ_CHECK(hit.has_value());
  if (!hit) return 0;
  FUZZ_CHECK(stale == cache::Stale::Serve || !hit->stale);
  FUZZ_CHECK(out.size() <= limit);

  auto reply = dns::parseMessage(out);
  FUZZ_CHECK(reply.has_value());
  FUZZ_CHECK(reply->header.id == 0x4242 && reply->header.qr());
  FUZZ_CHECK(reply->questions.size() == 1 && reply->questions[0].name == q->qname);
  FUZZ_CHECK(reply->questions[0].type == q->qtype && reply->questions[0].klass == q->qclass);
  FUZZ_CHECK(reply->edns.has_value() == q->edns.present);

  // The same reply as buildClientReply makes of the fresh answer, but for the TTLs.
  PacketBuffer fresh;
  dns::buildClientReply(answer, *info, *q, query, limit, 1232, fresh);
  FUZZ_CHECK(fresh.size() == out.size());

  if (reply->header.tc() && !info->header.tc()) {  // truncated for the client: no records
    FUZZ_CHECK(reply->answer.empty() && reply->authority.empty() && reply->additional.empty());
    return 0;
  }
  const std::vector<dns::Record>* in[3] = {&parsed->answer, &parsed->authority,
                                           &parsed->additional};
  const std::vector<dns::Record>* got[3] = {&reply->answer, &reply->authority, &reply->additional};
  for (int s = 0; s < 3; ++s) {
    FUZZ_CHECK(in[s]->size() == got[s]->size());
    for (size_t i = 0; i < in[s]->size(); ++i) {
      const uint32_t before = wireTtl((*in[s])[i].ttl);
      const uint32_t after = (*got[s])[i].ttl;
      if (hit->stale) {
        FUZZ_CHECK(after == 30);  // RFC 8767 section 4
      } else {
        const uint32_t aged = before > age ? before - static_cast<uint32_t>(age) : 0;
        FUZZ_CHECK(after <= aged);
      }
      // Same owner, but for case: names compressed to the question read the client's spelling.
      FUZZ_CHECK((*got[s])[i].type == (*in[s])[i].type &&
                 (*got[s])[i].name.equalsIgnoreCase((*in[s])[i].name));
    }
  }
  return 0;
}
