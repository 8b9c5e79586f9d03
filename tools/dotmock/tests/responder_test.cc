#include "responder.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "dotproxy/dns/message.h"
#include "dotproxy/dns/types.h"
#include "dotproxy/wire/reader.h"

namespace dotproxy::dotmock {
namespace {

struct QuerySpec {
  std::string name = "a.test.";
  uint16_t type = dns::type::A;
  uint16_t klass = dns::klass::IN;
  uint16_t id = 0x1234;
  bool rd = true;
  std::optional<uint16_t> edns_size{};  // adds an OPT
  bool do_bit = false;
  bool padded = false;  // adds a Padding option so the query is a multiple of 128 bytes
};

PacketBuffer buildQuery(const QuerySpec& s, size_t padding) {
  PacketBuffer out;
  dns::MessageBuilder b(out);
  dns::Header h;
  h.id = s.id;
  h.set(dns::flag::RD, s.rd);
  b.header(h);
  b.question(dns::Name::fromText(s.name).value(), s.type, s.klass);
  if (s.edns_size) {
    dns::Edns e;
    e.udp_size = *s.edns_size;
    e.do_bit = s.do_bit;
    if (s.padded) e.options.push_back({dns::edns_option::Padding, std::vector<std::byte>(padding)});
    b.opt(e);
  }
  EXPECT_TRUE(b.finish());
  return out;
}

PacketBuffer query(QuerySpec s) {
  if (!s.padded) return buildQuery(s, 0);
  if (!s.edns_size) s.edns_size = 1232;
  const size_t bare = buildQuery(s, 0).size();
  return buildQuery(s, (128 - bare % 128) % 128);
}

dns::Message parse(const Reply& r) {
  auto m = dns::parseMessage(r.wire);
  EXPECT_TRUE(m.has_value()) << "reply does not parse";
  return m.value_or(dns::Message{});
}

WireView rdata(const Reply& r, const dns::Record& rec) {
  return r.wire.view().subspan(rec.rdata_offset, rec.rdlength);
}

// The character-strings of a TXT rdata.
std::vector<std::string> txtStrings(WireView rd) {
  std::vector<std::string> out;
  WireReader r(rd);
  while (r.ok() && !r.atEnd()) {
    const uint8_t len = r.u8();
    out.emplace_back(asChars(r.bytes(len)));
  }
  EXPECT_TRUE(r.ok());
  return out;
}

size_t txtTotal(WireView rd) {
  size_t n = 0;
  for (const auto& s : txtStrings(rd)) n += s.size();
  return n;
}

const dns::EdnsOption* findOption(const dns::Message& m, uint16_t code) {
  if (!m.edns) return nullptr;
  for (const auto& o : m.edns->options) {
    if (o.code == code) return &o;
  }
  return nullptr;
}

class ResponderTest : public ::testing::Test {
 protected:
  Reply ask(const QuerySpec& s, Transport t = Transport::Dot) {
    return responder_.respond(query(s), t);
  }

  Responder responder_{ResponderSettings{}};
};

TEST_F(ResponderTest, AnswersA) {
  Reply r = ask({});
  dns::Message m = parse(r);
  EXPECT_EQ(m.header.id, 0x1234);
  EXPECT_TRUE(m.header.qr());
  EXPECT_TRUE(m.header.rd());
  EXPECT_TRUE(m.header.flags & dns::flag::AA);
  EXPECT_TRUE(m.header.flags & dns::flag::RA);
  EXPECT_FALSE(m.header.tc());
  EXPECT_EQ(m.rcode(), 0);
  ASSERT_EQ(m.answer.size(), 1u);
  EXPECT_EQ(m.answer[0].type, dns::type::A);
  EXPECT_EQ(m.answer[0].ttl, 300u);
  const std::vector<std::byte> v4 = {std::byte{192}, std::byte{0}, std::byte{2}, std::byte{1}};
  WireView rd = rdata(r, m.answer[0]);
  EXPECT_EQ(std::vector<std::byte>(rd.begin(), rd.end()), v4);
  EXPECT_FALSE(m.edns);
  EXPECT_EQ(r.delay.count(), 0);
}

TEST_F(ResponderTest, EchoesRdClear) {
  dns::Message m = parse(ask({.rd = false}));
  EXPECT_FALSE(m.header.rd());
}

TEST_F(ResponderTest, AnswersAaaa) {
  Reply r = ask({.name = "b.c.test", .type = dns::type::AAAA});
  dns::Message m = parse(r);
  ASSERT_EQ(m.answer.size(), 1u);
  WireView rd = rdata(r, m.answer[0]);
  ASSERT_EQ(rd.size(), 16u);
  EXPECT_EQ(rd[0], std::byte{0x20});
  EXPECT_EQ(rd[1], std::byte{0x01});
  EXPECT_EQ(rd[2], std::byte{0x0d});
  EXPECT_EQ(rd[3], std::byte{0xb8});
  EXPECT_EQ(rd[15], std::byte{1});
}

TEST_F(ResponderTest, TxtDefaultSize) {
  Reply r = ask({.type = dns::type::TXT});
  dns::Message m = parse(r);
  ASSERT_EQ(m.answer.size(), 1u);
  EXPECT_EQ(txtTotal(rdata(r, m.answer[0])), 32u);
  EXPECT_EQ(txtStrings(rdata(r, m.answer[0]))[0].substr(0, 3), "abc");
}

TEST_F(ResponderTest, TxtSizeFromLabelIsSplitIn255) {
  Reply r = ask({.name = "txt-2000.test", .type = dns::type::TXT});
  dns::Message m = parse(r);
  ASSERT_EQ(m.answer.size(), 1u);
  auto strings = txtStrings(rdata(r, m.answer[0]));
  ASSERT_EQ(strings.size(), 8u);
  for (size_t i = 0; i < 7; ++i) EXPECT_EQ(strings[i].size(), 255u);
  EXPECT_EQ(txtTotal(rdata(r, m.answer[0])), 2000u);
}

TEST_F(ResponderTest, TxtSizeSetting) {
  Responder responder({.txt_size = 700});
  Reply r = responder.respond(query({.type = dns::type::TXT}), Transport::Tcp);
  dns::Message m = parse(r);
  ASSERT_EQ(m.answer.size(), 1u);
  EXPECT_EQ(txtTotal(rdata(r, m.answer[0])), 700u);
}

TEST_F(ResponderTest, TxtZeroIsOneEmptyString) {
  Reply r = ask({.name = "txt-0.test", .type = dns::type::TXT});
  dns::Message m = parse(r);
  ASSERT_EQ(m.answer.size(), 1u);
  EXPECT_EQ(m.answer[0].rdlength, 1u);
}

TEST_F(ResponderTest, TxtTooLargeForAnyMessageIsServfail) {
  dns::Message m = parse(ask({.name = "txt-70000.test", .type = dns::type::TXT}));
  EXPECT_EQ(m.rcode(), static_cast<uint16_t>(dns::Rcode::ServFail));
}

TEST_F(ResponderTest, NxdomainLabelGetsSoa) {
  dns::Message m = parse(ask({.name = "nx.test."}));
  EXPECT_EQ(m.rcode(), static_cast<uint16_t>(dns::Rcode::NxDomain));
  EXPECT_TRUE(m.answer.empty());
  ASSERT_EQ(m.authority.size(), 1u);
  EXPECT_EQ(m.authority[0].type, dns::type::SOA);
  EXPECT_EQ(m.authority[0].name.toText(), "test.");
  EXPECT_EQ(m.authority[0].ttl, 60u);
}

TEST_F(ResponderTest, NxdomainLabelIsConfigurable) {
  Responder responder({.nxdomain_label = "missing"});
  dns::Message m = parse(responder.respond(query({.name = "MISSING.test"}), Transport::Udp));
  EXPECT_EQ(m.rcode(), static_cast<uint16_t>(dns::Rcode::NxDomain));
  m = parse(responder.respond(query({.name = "nx.test"}), Transport::Udp));
  EXPECT_EQ(m.rcode(), 0);
}

TEST_F(ResponderTest, OtherTypeIsNodataWithSoaMinimum) {
  Responder responder({.ttl = 100, .negative_ttl = 30});
  Reply r = responder.respond(query({.name = "a.test", .type = dns::type::MX}), Transport::Dot);
  dns::Message m = parse(r);
  EXPECT_EQ(m.rcode(), 0);
  EXPECT_TRUE(m.answer.empty());
  ASSERT_EQ(m.authority.size(), 1u);
  EXPECT_EQ(m.authority[0].type, dns::type::SOA);
  EXPECT_EQ(m.authority[0].ttl, 30u);
  WireView rd = rdata(r, m.authority[0]);
  ASSERT_GE(rd.size(), 20u);
  EXPECT_EQ(loadU32(rd.data() + rd.size() - 4), 30u);  // SOA MINIMUM
}

TEST_F(ResponderTest, SoaOfTheDeepestZone) {
  Responder responder(
      {.zones = {dns::Name::fromText("test.").value(), dns::Name::fromText("sub.test.").value()}});
  dns::Message m = parse(responder.respond(query({.name = "nx.sub.test"}), Transport::Dot));
  ASSERT_EQ(m.authority.size(), 1u);
  EXPECT_EQ(m.authority[0].name.toText(), "sub.test.");
}

TEST_F(ResponderTest, OutsideZonesIsRefused) {
  dns::Message m = parse(ask({.name = "example.com."}));
  EXPECT_EQ(m.rcode(), static_cast<uint16_t>(dns::Rcode::Refused));
  EXPECT_TRUE(m.answer.empty());
  EXPECT_TRUE(m.authority.empty());
  m = parse(ask({.name = "a.test", .klass = dns::klass::CH}));
  EXPECT_EQ(m.rcode(), static_cast<uint16_t>(dns::Rcode::Refused));
}

TEST_F(ResponderTest, ControlLabels) {
  EXPECT_EQ(parse(ask({.name = "servfail.test"})).rcode(),
            static_cast<uint16_t>(dns::Rcode::ServFail));
  EXPECT_EQ(parse(ask({.name = "refused.test"})).rcode(),
            static_cast<uint16_t>(dns::Rcode::Refused));
  Reply r = ask({.name = "delay-250.test"});
  EXPECT_EQ(r.delay, std::chrono::milliseconds(250));
  EXPECT_EQ(parse(r).answer.size(), 1u);
}

TEST_F(ResponderTest, GlobalDelayAddsToLabelDelay) {
  Responder responder({.delay = std::chrono::milliseconds(10)});
  EXPECT_EQ(responder.respond(query({}), Transport::Dot).delay, std::chrono::milliseconds(10));
  EXPECT_EQ(responder.respond(query({.name = "delay-5.test"}), Transport::Dot).delay,
            std::chrono::milliseconds(15));
}

TEST_F(ResponderTest, QuestionCasePreserved) {
  PacketBuffer q = query({.name = "WwW.TeSt."});
  Reply r = responder_.respond(q, Transport::Dot);
  dns::Message m = parse(r);
  ASSERT_EQ(m.questions.size(), 1u);
  EXPECT_EQ(m.questions[0].name.toText(), "WwW.TeSt.");
  ASSERT_EQ(m.answer.size(), 1u);
}

TEST_F(ResponderTest, EdnsEchoesDo) {
  dns::Message m = parse(ask({.edns_size = 4096, .do_bit = true}));
  ASSERT_TRUE(m.edns);
  EXPECT_EQ(m.edns->udp_size, 1232);
  EXPECT_TRUE(m.edns->do_bit);
  EXPECT_EQ(findOption(m, dns::edns_option::Padding), nullptr);
  m = parse(ask({.edns_size = 4096}));
  ASSERT_TRUE(m.edns);
  EXPECT_FALSE(m.edns->do_bit);
}

TEST_F(ResponderTest, PaddedQueryGetsPaddedAnswer) {
  PacketBuffer q = query({.padded = true});
  ASSERT_EQ(q.size() % 128, 0u);
  for (auto spec : {QuerySpec{.padded = true}, QuerySpec{.type = dns::type::MX, .padded = true},
                    QuerySpec{.name = "txt-1000.test", .type = dns::type::TXT, .padded = true}}) {
    Reply r = responder_.respond(query(spec), Transport::Dot);
    EXPECT_EQ(r.wire.size() % 468, 0u) << spec.name;
    dns::Message m = parse(r);
    EXPECT_NE(findOption(m, dns::edns_option::Padding), nullptr);
  }
  EXPECT_EQ(responder_.counters().padded_queries, 3u);
}

TEST_F(ResponderTest, PaddingNotAtBlockSizeIsNotCountedAsPadded) {
  QuerySpec s{.edns_size = 1232, .padded = true};
  PacketBuffer q = buildQuery(s, 3);
  ASSERT_NE(q.size() % 128, 0u);
  Reply r = responder_.respond(q, Transport::Dot);
  EXPECT_EQ(r.wire.size() % 468, 0u);
  EXPECT_EQ(responder_.counters().padded_queries, 0u);
}

TEST_F(ResponderTest, UdpTruncatesAt512WithoutEdns) {
  Reply r = ask({.name = "txt-600.test", .type = dns::type::TXT}, Transport::Udp);
  dns::Message m = parse(r);
  EXPECT_TRUE(m.header.tc());
  EXPECT_TRUE(m.answer.empty());
  EXPECT_TRUE(m.authority.empty());
  ASSERT_EQ(m.questions.size(), 1u);
  EXPECT_LE(r.wire.size(), 512u);

  r = ask({.name = "txt-400.test", .type = dns::type::TXT}, Transport::Udp);
  EXPECT_FALSE(parse(r).header.tc());
  r = ask({.name = "txt-600.test", .type = dns::type::TXT}, Transport::Tcp);
  EXPECT_FALSE(parse(r).header.tc());
}

TEST_F(ResponderTest, UdpLimitIsAdvertisedSizeCappedAt1232) {
  Reply r =
      ask({.name = "txt-1000.test", .type = dns::type::TXT, .edns_size = 4096}, Transport::Udp);
  EXPECT_FALSE(parse(r).header.tc());
  r = ask({.name = "txt-1300.test", .type = dns::type::TXT, .edns_size = 4096}, Transport::Udp);
  dns::Message m = parse(r);
  EXPECT_TRUE(m.header.tc());
  EXPECT_TRUE(m.edns);
  r = ask({.name = "txt-700.test", .type = dns::type::TXT, .edns_size = 600}, Transport::Udp);
  EXPECT_TRUE(parse(r).header.tc());
  r = ask({.name = "txt-1300.test", .type = dns::type::TXT, .edns_size = 4096}, Transport::Dot);
  EXPECT_FALSE(parse(r).header.tc());
}

TEST_F(ResponderTest, ResponsesAreIgnoredAndGarbageFlagged) {
  PacketBuffer q = query({});
  q[2] = q[2] | std::byte{0x80};  // QR=1
  Reply r = responder_.respond(q, Transport::Udp);
  EXPECT_TRUE(r.wire.empty());
  EXPECT_FALSE(r.garbage);

  const std::byte junk[5] = {};
  r = responder_.respond(WireView(junk, 5), Transport::Tcp);
  EXPECT_TRUE(r.wire.empty());
  EXPECT_TRUE(r.garbage);
  EXPECT_EQ(responder_.counters().queries, 0u);
}

TEST_F(ResponderTest, UnparsableQueryGetsFormerr) {
  PacketBuffer q = query({});
  q.resize(q.size() - 3);  // cut into the question
  Reply r = responder_.respond(q, Transport::Udp);
  ASSERT_FALSE(r.wire.empty());
  WireReader reader(r.wire);
  dns::Header h = dns::readHeader(reader);
  EXPECT_TRUE(h.qr());
  EXPECT_EQ(h.id, 0x1234);
  EXPECT_EQ(h.rcode(), static_cast<uint8_t>(dns::Rcode::FormErr));
  EXPECT_EQ(responder_.counters().formerr, 1u);
  EXPECT_EQ(responder_.counters().queries, 1u);
}

TEST_F(ResponderTest, StatsQueryReportsCountersAndIsNotCounted) {
  ask({}, Transport::Udp);
  ask({}, Transport::Tcp);
  ask({.padded = true}, Transport::Dot);
  responder_.counters().answers = 3;  // the server counts answers it sends
  Reply r = ask({.name = "Stats.DotMock.", .type = dns::type::TXT, .klass = dns::klass::CH},
                Transport::Udp);
  EXPECT_FALSE(r.counted);
  dns::Message m = parse(r);
  EXPECT_EQ(m.rcode(), 0);
  ASSERT_EQ(m.answer.size(), 1u);
  EXPECT_EQ(m.answer[0].klass, dns::klass::CH);
  EXPECT_EQ(m.questions[0].name.toText(), "Stats.DotMock.");
  const std::vector<std::string> expected = {
      "connections=0", "handshakes=0",  "resumptions=0",    "queries=3", "dot_queries=1",
      "udp_queries=1", "tcp_queries=1", "padded_queries=1", "answers=3", "formerr=0"};
  EXPECT_EQ(txtStrings(rdata(r, m.answer[0])), expected);
  EXPECT_EQ(responder_.counters().queries, 3u);
  EXPECT_EQ(countersJson(responder_.counters()),
            "{\"connections\":0,\"handshakes\":0,\"resumptions\":0,\"queries\":3,"
            "\"dot_queries\":1,\"udp_queries\":1,\"tcp_queries\":1,\"padded_queries\":1,"
            "\"answers\":3,\"formerr\":0}");
}

}  // namespace
}  // namespace dotproxy::dotmock
