#include "dotproxy/dns/query.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "dns_test_util.h"
#include "dotproxy/dns/message.h"

namespace dotproxy::dns {
namespace {

using testing::append;
using testing::Bytes;
using testing::makeQuery;
using testing::option;
using testing::optionCodes;
using testing::QuerySpec;
using testing::view;

const std::byte kAddr[] = {std::byte{192}, std::byte{0}, std::byte{2}, std::byte{1}};

// An ECS option body: family 1 (IPv4), source /24, scope 0, 192.0.2.
constexpr std::string_view kEcs{"\x00\x01\x18\x00\xc0\x00\x02", 7};

// ---------------------------------------------------------------- parseQuery

TEST(ParseQuery, PlainQuery) {
  PacketBuffer wire = makeQuery({.qname = "WwW.Example.com"});
  auto q = parseQuery(wire);
  ASSERT_TRUE(q) << errcName(q.error());
  EXPECT_EQ(q->header.id, 0x1234);
  EXPECT_TRUE(q->header.rd());
  EXPECT_EQ(q->qname.toText(), "WwW.Example.com.");
  EXPECT_EQ(q->qtype, type::A);
  EXPECT_EQ(q->qclass, klass::IN);
  EXPECT_EQ(q->question_end, wire.size());
  EXPECT_FALSE(q->edns.present);
  EXPECT_EQ(q->maxUdpReply(1232), 512u);
}

TEST(ParseQuery, EdnsWithClientSubnet) {
  PacketBuffer wire = makeQuery({.edns = true,
                                 .udp_size = 4096,
                                 .do_bit = true,
                                 .options = {option(edns_option::Cookie, "12345678"),
                                             option(edns_option::ClientSubnet, kEcs)}});
  auto q = parseQuery(wire);
  ASSERT_TRUE(q) << errcName(q.error());
  EXPECT_TRUE(q->edns.present);
  EXPECT_EQ(q->edns.udp_size, 4096);
  EXPECT_TRUE(q->edns.do_bit);
  EXPECT_EQ(q->edns.version, 0);
  ASSERT_EQ(q->edns.ecs_len, 4u + kEcs.size());
  // The ECS option is the last thing in the message.
  EXPECT_EQ(q->edns.ecs_offset + q->edns.ecs_len, wire.size());
  EXPECT_EQ(wire[q->edns.ecs_offset + 1], std::byte{8});
  EXPECT_EQ(q->maxUdpReply(1232), 1232u);
  EXPECT_EQ(q->maxUdpReply(8192), 4096u);
}

TEST(ParseQuery, SmallAdvertisedSizeCountsAs512) {
  PacketBuffer wire = makeQuery({.edns = true, .udp_size = 100});
  auto q = parseQuery(wire);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->maxUdpReply(1232), 512u);
}

TEST(ParseQuery, ShorterThanHeaderIsTruncated) {
  Bytes b = testing::bytes({0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0});
  EXPECT_EQ(parseQuery(view(b)).error(), Errc::Truncated);
  EXPECT_EQ(parseQuery(WireView{}).error(), Errc::Truncated);
}

TEST(ParseQuery, ResponseIsNotQuery) {
  PacketBuffer wire = makeQuery({.flags = flag::QR | flag::RD});
  EXPECT_EQ(parseQuery(wire).error(), Errc::NotQuery);
}

TEST(ParseQuery, NotifyOpcodeIsNotImp) {
  PacketBuffer wire = makeQuery({.flags = static_cast<uint16_t>(4u << 11)});
  EXPECT_EQ(parseQuery(wire).error(), Errc::NotImp);
}

TEST(ParseQuery, QdcountZeroIsFormErr) {
  Bytes m = testing::header(1, flag::RD, 0, 0, 0, 0);
  EXPECT_EQ(parseQuery(view(m)).error(), Errc::FormErr);
}

TEST(ParseQuery, QdcountTwoIsFormErr) {
  Bytes m = testing::header(1, flag::RD, 2, 0, 0, 0);
  append(m, {0, 0, 1, 0, 1, 0, 0, 1, 0, 1});
  EXPECT_EQ(parseQuery(view(m)).error(), Errc::FormErr);
}

TEST(ParseQuery, TruncatedQuestionIsFormErr) {
  Bytes m = testing::header(1, flag::RD, 1, 0, 0, 0);
  append(m, {3, 'c', 'o', 'm', 0, 0, 1, 0});
  EXPECT_EQ(parseQuery(view(m)).error(), Errc::FormErr);
}

TEST(ParseQuery, BadQuestionNameIsFormErr) {
  Bytes m = testing::header(1, flag::RD, 1, 0, 0, 0);
  append(m, {0xC0, 12, 0, 1, 0, 1});
  EXPECT_EQ(parseQuery(view(m)).error(), Errc::FormErr);
}

TEST(ParseQuery, EdnsVersion1IsBadVers) {
  PacketBuffer wire = makeQuery({.edns = true, .version = 1});
  EXPECT_EQ(parseQuery(wire).error(), Errc::BadVers);
}

TEST(ParseQuery, MalformedQueryWithEdnsVersion1IsFormErrNotBadVers) {
  Bytes m = testing::header(1, flag::RD, 1, 0, 0, 2);
  append(m, {0, 0, 1, 0, 1});
  append(m, {0, 0, 41, 0x10, 0, 0, 1, 0, 0, 0, 0});
  append(m, {0, 0, 41, 0x10, 0, 0, 1, 0, 0, 0, 0});
  EXPECT_EQ(parseQuery(view(m)).error(), Errc::FormErr);
}

TEST(ParseQuery, TwoOptRecordsAreFormErr) {
  Bytes m = testing::header(1, flag::RD, 1, 0, 0, 2);
  append(m, {0, 0, 1, 0, 1});
  append(m, {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0});
  append(m, {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0});
  EXPECT_EQ(parseQuery(view(m)).error(), Errc::FormErr);
}

TEST(ParseQuery, OptNotAtRootIsFormErr) {
  Bytes m = testing::header(1, flag::RD, 1, 0, 0, 1);
  append(m, {0, 0, 1, 0, 1});
  append(m, {1, 'x', 0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0});
  EXPECT_EQ(parseQuery(view(m)).error(), Errc::FormErr);
}

TEST(ParseQuery, OptInAnswerSectionIsFormErr) {
  Bytes m = testing::header(1, flag::RD, 1, 1, 0, 0);
  append(m, {0, 0, 1, 0, 1});
  append(m, {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0});
  EXPECT_EQ(parseQuery(view(m)).error(), Errc::FormErr);
}

TEST(ParseQuery, OptInAuthoritySectionIsFormErr) {
  Bytes m = testing::header(1, flag::RD, 1, 0, 1, 0);
  append(m, {0, 0, 1, 0, 1});
  append(m, {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0});
  EXPECT_EQ(parseQuery(view(m)).error(), Errc::FormErr);
}

TEST(ParseQuery, OptOptionOverrunIsFormErr) {
  Bytes m = testing::header(1, flag::RD, 1, 0, 0, 1);
  append(m, {0, 0, 1, 0, 1});
  append(m, {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 4, 0, 8, 0, 9});
  EXPECT_EQ(parseQuery(view(m)).error(), Errc::FormErr);
}

TEST(ParseQuery, HugeAncountInTinyMessageIsFormErr) {
  Bytes m = testing::header(1, flag::RD, 1, 65535, 0, 0);
  append(m, {3, 'c', 'o', 'm', 0, 0, 1, 0, 1});
  append(m, {0, 0, 1, 0, 1, 0, 0, 0, 0});
  ASSERT_EQ(m.size(), 30u);
  EXPECT_EQ(parseQuery(view(m)).error(), Errc::FormErr);
}

TEST(ParseQuery, TruncatedRdataIsFormErr) {
  Bytes m = testing::header(1, flag::RD, 1, 0, 0, 1);
  append(m, {0, 0, 1, 0, 1});
  append(m, {0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2});
  EXPECT_EQ(parseQuery(view(m)).error(), Errc::FormErr);
}

TEST(ParseQuery, BadNameInAdditionalIsFormErr) {
  Bytes m = testing::header(1, flag::RD, 1, 0, 0, 1);
  append(m, {0, 0, 1, 0, 1});
  append(m, {0xC0, 40, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0});  // forward pointer
  EXPECT_EQ(parseQuery(view(m)).error(), Errc::FormErr);
}

// One message per datagram or frame (RFC 1035 4.2.1, 4.2.2): junk after the last record is not
// carried upstream, nor kept while the query waits.
TEST(ParseQuery, TrailingBytesAreFormErr) {
  PacketBuffer wire = makeQuery({.edns = true});
  ASSERT_TRUE(parseQuery(wire));
  wire.push(std::byte{0xde});
  EXPECT_EQ(parseQuery(wire).error(), Errc::FormErr);
  PacketBuffer plain = makeQuery({});
  plain.push(std::byte{0});
  EXPECT_EQ(parseQuery(plain).error(), Errc::FormErr);
}

TEST(ParseQuery, OptOwnedByPointerToRootIsAccepted) {
  // The question name is the root at 12; the OPT owner points at it.
  Bytes m = testing::header(1, flag::RD, 1, 0, 0, 1);
  append(m, {0, 0, 2, 0, 1});
  append(m, {0xC0, 12, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0});
  auto q = parseQuery(view(m));
  ASSERT_TRUE(q) << errcName(q.error());
  EXPECT_EQ(q->edns.udp_size, 1232);
}

// ---------------------------------------------------------------- buildErrorReply

TEST(BuildErrorReply, FormErrEchoesIdFlagsAndQuestion) {
  PacketBuffer wire = makeQuery({.flags = flag::RD | flag::CD | flag::AD, .qname = "Foo.Example"});
  PacketBuffer reply = buildErrorReply(wire, Rcode::FormErr);
  auto m = parseMessage(reply);
  ASSERT_TRUE(m) << errcName(m.error());
  EXPECT_EQ(m->header.id, 0x1234);
  EXPECT_TRUE(m->header.qr());
  EXPECT_TRUE(m->header.rd());
  EXPECT_TRUE(m->header.cd());
  EXPECT_FALSE(m->header.ad());
  EXPECT_EQ(m->header.rcode(), 1);
  ASSERT_EQ(m->questions.size(), 1u);
  EXPECT_EQ(m->questions[0].name.toText(), "Foo.Example.");
  EXPECT_FALSE(m->edns);
}

TEST(BuildErrorReply, NoQuestionWhenQdcountIsTwo) {
  Bytes q = testing::header(0x4242, flag::RD, 2, 0, 0, 0);
  append(q, {0, 0, 1, 0, 1, 0, 0, 1, 0, 1});
  PacketBuffer reply = buildErrorReply(view(q), Rcode::FormErr);
  auto m = parseMessage(reply);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->header.id, 0x4242);
  EXPECT_EQ(m->header.qdcount, 0);
  EXPECT_EQ(m->header.rcode(), 1);
}

TEST(BuildErrorReply, NoQuestionWhenQuestionUnreadable) {
  Bytes q = testing::header(7, flag::RD, 1, 0, 0, 0);
  append(q, {0xC0, 12, 0, 1, 0, 1});
  PacketBuffer reply = buildErrorReply(view(q), Rcode::FormErr);
  auto m = parseMessage(reply);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->header.qdcount, 0);
}

TEST(BuildErrorReply, NotImpEchoesOpcode) {
  PacketBuffer wire = makeQuery({.flags = static_cast<uint16_t>(4u << 11)});
  PacketBuffer reply = buildErrorReply(wire, Rcode::NotImp);
  auto m = parseMessage(reply);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->header.opcode(), 4);
  EXPECT_EQ(m->header.rcode(), 4);
  EXPECT_EQ(m->questions.size(), 1u);
}

TEST(BuildErrorReply, BadVersUsesExtendedRcode) {
  PacketBuffer wire = makeQuery({.edns = true, .udp_size = 4096, .do_bit = true, .version = 1});
  PacketBuffer reply = buildErrorReply(wire, Rcode::BadVers);
  auto m = parseMessage(reply);
  ASSERT_TRUE(m) << errcName(m.error());
  EXPECT_EQ(m->header.rcode(), 0);
  ASSERT_TRUE(m->edns);
  EXPECT_EQ(m->edns->ext_rcode, 1);
  EXPECT_EQ(m->edns->version, 0);
  EXPECT_EQ(m->edns->udp_size, 1232);
  EXPECT_TRUE(m->edns->do_bit);
  EXPECT_TRUE(m->edns->options.empty());
  EXPECT_EQ(m->rcode(), 16);
}

TEST(BuildErrorReply, OptIncludedWhenQueryHadOne) {
  PacketBuffer wire = makeQuery({.edns = true, .options = {option(10, "cookie!!")}});
  PacketBuffer reply = buildErrorReply(wire, Rcode::ServFail);
  auto m = parseMessage(reply);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->header.rcode(), 2);
  ASSERT_TRUE(m->edns);
  EXPECT_FALSE(m->edns->do_bit);
  EXPECT_TRUE(m->edns->options.empty());
}

TEST(BuildErrorReply, NoOptWithoutEdns) {
  PacketBuffer wire = makeQuery({});
  PacketBuffer reply = buildErrorReply(wire, Rcode::Refused);
  auto m = parseMessage(reply);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->header.rcode(), 5);
  EXPECT_FALSE(m->edns);
  EXPECT_EQ(m->header.arcount, 0);
}

TEST(BuildErrorReply, ShortQueryGivesEmptyBuffer) {
  Bytes b = testing::bytes({1, 2, 3, 4, 5});
  EXPECT_TRUE(buildErrorReply(view(b), Rcode::FormErr).empty());
}

TEST(BuildErrorReply, HeaderOnlyQuery) {
  Bytes b = testing::header(0x0102, 0, 1, 0, 0, 0);
  PacketBuffer reply = buildErrorReply(view(b), Rcode::FormErr);
  ASSERT_EQ(reply.size(), kHeaderSize);
  auto m = parseMessage(reply);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->header.id, 0x0102);
  EXPECT_EQ(m->header.qdcount, 0);
}

// ---------------------------------------------------------------- buildUpstreamQuery

Edns upstreamEdns(const PacketBuffer& wire) {
  auto m = parseMessage(wire);
  EXPECT_TRUE(m) << errcName(m.error());
  EXPECT_TRUE(m && m->edns);
  return m && m->edns ? *m->edns : Edns{};
}

TEST(BuildUpstreamQuery, CopiesFlagsQuestionAndDo) {
  PacketBuffer raw = makeQuery({.flags = flag::RD | flag::CD | flag::AD | flag::AA,
                                .qname = "MiXeD.Example.COM",
                                .qtype = type::AAAA,
                                .edns = true,
                                .do_bit = true});
  auto q = parseQuery(raw);
  ASSERT_TRUE(q);
  PacketBuffer up = buildUpstreamQuery(*q, raw, 0xabcd, {});
  auto m = parseMessage(up);
  ASSERT_TRUE(m) << errcName(m.error());
  EXPECT_EQ(m->header.id, 0xabcd);
  EXPECT_TRUE(m->header.rd());
  EXPECT_TRUE(m->header.cd());
  EXPECT_TRUE(m->header.ad());
  EXPECT_FALSE(m->header.flags & flag::AA);
  EXPECT_FALSE(m->header.qr());
  EXPECT_EQ(m->header.opcode(), 0);
  ASSERT_EQ(m->questions.size(), 1u);
  EXPECT_TRUE(m->questions[0].name == q->qname);  // exact spelling
  EXPECT_EQ(m->questions[0].type, type::AAAA);
  EXPECT_EQ(m->header.arcount, 1);
  ASSERT_TRUE(m->edns);
  EXPECT_TRUE(m->edns->do_bit);
  EXPECT_EQ(m->edns->udp_size, kDefaultEdnsUdpSize);
  EXPECT_EQ(m->edns->version, 0);
  // The question bytes are the client's bytes.
  EXPECT_TRUE(std::equal(raw.view().begin() + 12, raw.view().begin() + q->question_end,
                         up.view().begin() + 12));
}

TEST(BuildUpstreamQuery, AddsOptWhenClientHadNone) {
  PacketBuffer raw = makeQuery({});
  auto q = parseQuery(raw);
  ASSERT_TRUE(q);
  PacketBuffer up = buildUpstreamQuery(*q, raw, 1, {.udp_size = 1400});
  Edns e = upstreamEdns(up);
  EXPECT_EQ(e.udp_size, 1400);
  EXPECT_FALSE(e.do_bit);
}

TEST(BuildUpstreamQuery, PaddingMakesSizeAMultipleOfTheBlock) {
  for (size_t len = 1; len <= 240; len += 7) {
    // Names of many lengths: labels of up to 50 bytes.
    std::string text;
    size_t left = len;
    while (left > 0) {
      size_t n = std::min<size_t>(left, 50);
      if (!text.empty()) text += '.';
      text += std::string(n, 'a');
      left -= n;
    }
    auto qn = Name::fromText(text);
    if (!qn) continue;  // too long once length bytes are added
    for (bool edns : {false, true}) {
      PacketBuffer raw = makeQuery({.qname = text, .edns = edns});
      auto q = parseQuery(raw);
      ASSERT_TRUE(q);
      PacketBuffer up = buildUpstreamQuery(*q, raw, 1, {});
      EXPECT_EQ(up.size() % 128, 0u) << "name length " << len;
      Edns e = upstreamEdns(up);
      ASSERT_EQ(optionCodes(e), std::vector<uint16_t>{edns_option::Padding});
      EXPECT_TRUE(std::all_of(e.options[0].data.begin(), e.options[0].data.end(),
                              [](std::byte b) { return b == std::byte{0}; }));
    }
  }
}

TEST(BuildUpstreamQuery, PaddingToOtherBlockSizes) {
  PacketBuffer raw = makeQuery({.qname = "example.com"});
  auto q = parseQuery(raw);
  ASSERT_TRUE(q);
  for (size_t block : {16u, 64u, 468u}) {
    PacketBuffer up = buildUpstreamQuery(*q, raw, 1, {.padding_block = block});
    EXPECT_EQ(up.size() % block, 0u) << block;
  }
}

TEST(BuildUpstreamQuery, NoPaddingWhenBlockIsZero) {
  PacketBuffer raw = makeQuery({.edns = true});
  auto q = parseQuery(raw);
  ASSERT_TRUE(q);
  PacketBuffer up = buildUpstreamQuery(*q, raw, 1, {.padding_block = 0});
  EXPECT_TRUE(upstreamEdns(up).options.empty());
  EXPECT_EQ(up.size(), raw.size());
}

TEST(BuildUpstreamQuery, DropsClientOptionsButForwardsEcsOnlyWhenAsked) {
  PacketBuffer raw = makeQuery(
      {.edns = true,
       .options = {option(edns_option::Cookie, "12345678"), option(edns_option::ClientSubnet, kEcs),
                   option(edns_option::TcpKeepalive, ""), option(edns_option::NSID, "")}});
  auto q = parseQuery(raw);
  ASSERT_TRUE(q);
  PacketBuffer plain = buildUpstreamQuery(*q, raw, 1, {});
  EXPECT_EQ(optionCodes(upstreamEdns(plain)), std::vector<uint16_t>{edns_option::Padding});

  PacketBuffer ecs = buildUpstreamQuery(*q, raw, 1, {.forward_ecs = true});
  Edns e = upstreamEdns(ecs);
  ASSERT_EQ(optionCodes(e),
            (std::vector<uint16_t>{edns_option::ClientSubnet, edns_option::Padding}));
  EXPECT_EQ(asChars(e.options[0].data), kEcs);
  EXPECT_EQ(ecs.size() % 128, 0u);
}

// ---------------------------------------------------------------- parseResponse

struct AnswerSpec {
  uint16_t id = 0x1234;
  uint16_t flags = flag::QR | flag::RD | flag::RA;
  std::string_view qname = "example.com.";
  uint16_t qtype = type::A;
  uint32_t ttl = 300;
  unsigned answers = 1;
  bool edns = true;
  uint8_t ext_rcode = 0;
  std::vector<EdnsOption> options = {};
};

// An upstream answer whose answer owners are compression pointers to the question name.
PacketBuffer makeAnswer(const AnswerSpec& s) {
  PacketBuffer out;
  WireWriter w(out);
  Header h;
  h.id = s.id;
  h.flags = s.flags;
  h.qdcount = 1;
  h.ancount = static_cast<uint16_t>(s.answers);
  h.arcount = s.edns ? 1 : 0;
  writeHeader(w, h);
  writeName(w, testing::name(s.qname));
  w.u16(s.qtype);
  w.u16(klass::IN);
  for (unsigned i = 0; i < s.answers; ++i) {
    w.u16(0xC00C);
    w.u16(type::A);
    w.u16(klass::IN);
    w.u32(s.ttl + i);
    w.u16(4);
    w.bytes(kAddr);
  }
  if (s.edns) {
    size_t rdlength = 0;
    for (const auto& o : s.options) rdlength += 4 + o.data.size();
    w.u8(0);
    w.u16(type::OPT);
    w.u16(1232);
    w.u32(uint32_t{s.ext_rcode} << 24);
    w.u16(static_cast<uint16_t>(rdlength));
    for (const auto& o : s.options) {
      w.u16(o.code);
      w.u16(static_cast<uint16_t>(o.data.size()));
      w.bytes(o.data);
    }
  }
  EXPECT_TRUE(w.ok());
  return out;
}

TEST(ParseResponse, ValidAnswer) {
  PacketBuffer a = makeAnswer({.ttl = 120, .answers = 3, .ext_rcode = 1});
  auto r = parseResponse(a);
  ASSERT_TRUE(r) << errcName(r.error());
  EXPECT_EQ(r->header.id, 0x1234);
  EXPECT_EQ(r->qname.toText(), "example.com.");
  EXPECT_EQ(r->qtype, type::A);
  EXPECT_EQ(r->question_end, 12u + 13 + 4);
  EXPECT_EQ(r->min_ttl, 120u);
  EXPECT_EQ(r->opt_offset, a.size() - 11);
  EXPECT_EQ(r->opt_size, 11u);
  EXPECT_EQ(r->end, a.size());
  EXPECT_EQ(r->rcode(), 16);
}

TEST(ParseResponse, NoRecordsGivesZeroMinTtl) {
  PacketBuffer a = makeAnswer({.answers = 0, .edns = false});
  auto r = parseResponse(a);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->min_ttl, 0u);
  EXPECT_EQ(r->opt_offset, 0u);
}

TEST(ParseResponse, QueryIsNotResponse) {
  PacketBuffer a = makeAnswer({.flags = flag::RD});
  EXPECT_EQ(parseResponse(a).error(), Errc::NotResponse);
}

TEST(ParseResponse, ShortIsTruncated) {
  Bytes b = testing::bytes({0x12, 0x34, 0x81});
  EXPECT_EQ(parseResponse(view(b)).error(), Errc::Truncated);
}

TEST(ParseResponse, QdcountZeroIsFormErr) {
  Bytes b = testing::header(1, flag::QR, 0, 0, 0, 0);
  EXPECT_EQ(parseResponse(view(b)).error(), Errc::FormErr);
}

TEST(ParseResponse, HugeAncountInTinyMessageFailsFast) {
  Bytes m = testing::header(1, flag::QR, 1, 65535, 0, 0);
  append(m, {3, 'c', 'o', 'm', 0, 0, 1, 0, 1});
  append(m, {0, 0, 1, 0, 1, 0, 0, 0, 0});
  EXPECT_EQ(parseResponse(view(m)).error(), Errc::Truncated);
}

TEST(ParseResponse, TruncatedRdataIsRejected) {
  PacketBuffer a = makeAnswer({.edns = false});
  a.resize(a.size() - 1);
  EXPECT_EQ(parseResponse(a).error(), Errc::Truncated);
}

TEST(ParseResponse, OptNotLastIsFormErr) {
  Bytes m = testing::header(1, flag::QR, 1, 0, 0, 2);
  append(m, {0, 0, 1, 0, 1});
  append(m, {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0});
  append(m, {0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4});
  EXPECT_EQ(parseResponse(view(m)).error(), Errc::FormErr);
}

TEST(ParseResponse, TwoOptRecordsAreFormErr) {
  Bytes m = testing::header(1, flag::QR, 1, 0, 0, 2);
  append(m, {0, 0, 1, 0, 1});
  append(m, {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0});
  append(m, {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0});
  EXPECT_EQ(parseResponse(view(m)).error(), Errc::FormErr);
}

TEST(ParseResponse, OptInAnswerSectionIsFormErr) {
  Bytes m = testing::header(1, flag::QR, 1, 1, 0, 0);
  append(m, {0, 0, 1, 0, 1});
  append(m, {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0});
  EXPECT_EQ(parseResponse(view(m)).error(), Errc::FormErr);
}

TEST(ParseResponse, OptNotAtRootIsFormErr) {
  Bytes m = testing::header(1, flag::QR, 1, 0, 0, 1);
  append(m, {0, 0, 1, 0, 1});
  append(m, {1, 'a', 0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0});
  EXPECT_EQ(parseResponse(view(m)).error(), Errc::FormErr);
}

TEST(ParseResponse, BadPointerInCnameRdataIsRejected) {
  Bytes m = testing::header(1, flag::QR, 1, 1, 0, 0);
  append(m, {3, 'c', 'o', 'm', 0, 0, 5, 0, 1});
  append(m, {0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xC0, 40});  // forward pointer in rdata
  EXPECT_EQ(parseResponse(view(m)).error(), Errc::BadPointer);
}

TEST(ParseResponse, CnameRdataOverrunningRdlengthIsFormErr) {
  Bytes m = testing::header(1, flag::QR, 1, 1, 0, 0);
  append(m, {3, 'c', 'o', 'm', 0, 0, 5, 0, 1});
  append(m, {0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 1, 1, 'x', 0});  // name longer than rdlength
  EXPECT_FALSE(parseResponse(view(m)));
}

TEST(ParseResponse, HighBitTtlCountsAsZero) {
  PacketBuffer a = makeAnswer({.ttl = 0x80000000u, .answers = 1});
  auto r = parseResponse(a);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->min_ttl, 0u);
}

TEST(ParseResponse, TrailingBytesAreIgnored) {
  PacketBuffer a = makeAnswer({.edns = false});
  const size_t size = a.size();
  a.push(std::byte{1});
  auto r = parseResponse(a);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->end, size);
}

// Found by fuzz/cache.cc: a pointer may land on bytes that are not a name, here a TTL field. The
// cache rewrites TTLs (capped at max_ttl, aged on every hit), so the name a client read changed
// under it: 0x01610000 ("a.") capped to 86400 (0x00015180) reads as the root.
TEST(ParseResponse, PointerIntoTtlFieldIsRejected) {
  Bytes m = testing::header(1, flag::QR, 1, 2, 0, 0);
  append(m, {3, 'c', 'o', 'm', 0, 0, 1, 0, 1});                         // question ends at 21
  append(m, {0xC0, 12, 0, 1, 0, 1, 1, 'a', 0, 0, 0, 4, 192, 0, 2, 1});  // TTL field at 27
  append(m, {0xC0, 27, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 2});   // owner: "a." in the TTL
  EXPECT_EQ(parseResponse(view(m)).error(), Errc::BadPointer);
}

// Found by fuzz/response.cc: a pointer to a label whose bytes run on past the last record. The
// client's reply (and the cache) keep the records only, so the name read off the reply ran out of
// the message: the client got a reply that does not parse.
TEST(ParseResponse, NameReadingPastTheLastRecordIsRejected) {
  Bytes m = testing::header(1, flag::QR, 1, 2, 0, 0);
  append(m, {3, 'c', 'o', 'm', 0, 0, 1, 0, 1});
  append(m, {0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 1, 12});  // TXT rdata: a length byte, at 33
  append(m, {0xC0, 33, 0, 1, 0, 1, 0, 0, 0, 60, 0, 0});       // owner: that label, 34..45
  append(m, {0});                                             // after the records: its root
  EXPECT_EQ(parseResponse(view(m)).error(), Errc::BadPointer);
}

TEST(ParseResponse, PointersToEarlierNamesAreAccepted) {
  // As servers compress: owners to the question, an MX exchange to the owner's labels, a later
  // owner to that exchange, and a pointer to a suffix ("com" inside "example.com").
  Bytes m = testing::header(1, flag::QR, 1, 2, 0, 1);
  append(m, {7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 15, 0, 1});  // ends 29
  append(m, {0xC0, 12, 0, 15, 0, 1, 0, 0, 0, 60, 0, 9, 0, 10, 4, 'm', 'a', 'i', 'l', 0xC0, 12});
  append(m, {0xC0, 12, 0, 15, 0, 1, 0, 0, 0, 60, 0, 8, 0, 20, 3, 'm', 'x', '2', 0xC0, 20});
  append(m, {0xC0, 43, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 25});  // mail.example.com.
  auto r = parseResponse(view(m));
  ASSERT_TRUE(r) << static_cast<int>(r.error());
  EXPECT_EQ(r->end, m.size());
}

// ---------------------------------------------------------------- answerMatches

TEST(AnswerMatches, CaseInsensitiveName) {
  PacketBuffer a = makeAnswer({.qname = "EXAMPLE.com"});
  auto r = parseResponse(a);
  ASSERT_TRUE(r);
  EXPECT_TRUE(answerMatches(*r, 0x1234, testing::name("example.COM"), type::A, klass::IN));
}

TEST(AnswerMatches, MismatchOnIdTypeClassOrName) {
  PacketBuffer a = makeAnswer({});
  auto r = parseResponse(a);
  ASSERT_TRUE(r);
  const Name n = testing::name("example.com");
  EXPECT_FALSE(answerMatches(*r, 0x1235, n, type::A, klass::IN));
  EXPECT_FALSE(answerMatches(*r, 0x1234, n, type::AAAA, klass::IN));
  EXPECT_FALSE(answerMatches(*r, 0x1234, n, type::A, klass::CH));
  EXPECT_FALSE(answerMatches(*r, 0x1234, testing::name("example.org"), type::A, klass::IN));
  EXPECT_FALSE(answerMatches(*r, 0x1234, testing::name("www.example.com"), type::A, klass::IN));
}

// ---------------------------------------------------------------- buildClientReply

struct Exchange {
  PacketBuffer raw;
  QueryInfo q;
  PacketBuffer upstream;
  ResponseInfo r;
};

Exchange exchange(const QuerySpec& qs, const AnswerSpec& as) {
  Exchange x;
  x.raw = makeQuery(qs);
  auto q = parseQuery(x.raw);
  EXPECT_TRUE(q);
  if (q) x.q = *q;
  x.upstream = makeAnswer(as);
  auto r = parseResponse(x.upstream);
  EXPECT_TRUE(r) << errcName(r.error());
  if (r) x.r = *r;
  return x;
}

TEST(BuildClientReply, KeepsClientIdRdAndCase) {
  Exchange x = exchange({.id = 0x1111, .flags = 0, .qname = "ExAmPlE.CoM", .edns = false},
                        {.id = 0x9999, .qname = "example.com", .answers = 2, .edns = true});
  PacketBuffer out;
  buildClientReply(x.upstream, x.r, x.q, x.raw, 512, 1232, out);
  auto m = parseMessage(out);
  ASSERT_TRUE(m) << errcName(m.error());
  EXPECT_EQ(m->header.id, 0x1111);
  EXPECT_FALSE(m->header.rd());
  EXPECT_TRUE(m->header.qr());
  EXPECT_TRUE(m->header.flags & flag::RA);
  ASSERT_EQ(m->questions.size(), 1u);
  EXPECT_EQ(m->questions[0].name.toText(), "ExAmPlE.CoM.");
  ASSERT_EQ(m->answer.size(), 2u);
  // Answer owners are pointers to the question, so they read back in the client's case.
  EXPECT_EQ(m->answer[0].name.toText(), "ExAmPlE.CoM.");
  EXPECT_EQ(m->answer[1].ttl, 301u);
  // Client sent no EDNS: the upstream OPT is gone and none is added.
  EXPECT_FALSE(m->edns);
  EXPECT_EQ(m->header.arcount, 0);
  EXPECT_EQ(out.size(), x.upstream.size() - 11);
}

TEST(BuildClientReply, DropsHopByHopOptionsAndKeepsEde) {
  Exchange x = exchange(
      {.edns = true, .udp_size = 4096, .do_bit = true},
      {.ext_rcode = 0,
       .options = {option(edns_option::Padding, std::string(40, '\0')),
                   option(edns_option::Cookie, "0123456789abcdef"),
                   option(edns_option::TcpKeepalive, "\x01\x00"),
                   option(edns_option::ExtendedError, std::string_view("\x00\x12stale", 7)),
                   option(edns_option::ClientSubnet, kEcs)}});
  PacketBuffer out;
  buildClientReply(x.upstream, x.r, x.q, x.raw, 4096, 1232, out);
  auto m = parseMessage(out);
  ASSERT_TRUE(m) << errcName(m.error());
  ASSERT_TRUE(m->edns);
  EXPECT_EQ(m->edns->udp_size, 1232);
  EXPECT_TRUE(m->edns->do_bit);
  EXPECT_EQ(m->edns->version, 0);
  ASSERT_EQ(optionCodes(*m->edns), std::vector<uint16_t>{edns_option::ExtendedError});
  EXPECT_EQ(asChars(m->edns->options[0].data), std::string_view("\x00\x12stale", 7));
  EXPECT_EQ(m->header.arcount, 1);
  EXPECT_EQ(m->answer.size(), 1u);
}

TEST(BuildClientReply, KeepsExtendedRcode) {
  Exchange x = exchange({.edns = true}, {.flags = flag::QR | 2, .ext_rcode = 1});
  PacketBuffer out;
  buildClientReply(x.upstream, x.r, x.q, x.raw, 1232, 1232, out);
  auto m = parseMessage(out);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->rcode(), 16 + 2);
  EXPECT_FALSE(m->edns->do_bit);
}

TEST(BuildClientReply, AddsOptWhenUpstreamHadNone) {
  Exchange x = exchange({.edns = true, .do_bit = true}, {.edns = false});
  PacketBuffer out;
  buildClientReply(x.upstream, x.r, x.q, x.raw, 1232, 1400, out);
  auto m = parseMessage(out);
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->edns);
  EXPECT_EQ(m->edns->udp_size, 1400);
  EXPECT_TRUE(m->edns->do_bit);
  EXPECT_EQ(m->header.arcount, 1);
}

TEST(BuildClientReply, TruncatesWithTcUnder512) {
  Exchange x = exchange({.qname = "Big.Example", .edns = false},
                        {.qname = "big.example", .answers = 40, .edns = true});
  ASSERT_GT(x.upstream.size(), 512u);
  PacketBuffer out;
  buildClientReply(x.upstream, x.r, x.q, x.raw, 512, 1232, out);
  EXPECT_LE(out.size(), 512u);
  auto m = parseMessage(out);
  ASSERT_TRUE(m) << errcName(m.error());
  EXPECT_TRUE(m->header.tc());
  EXPECT_EQ(m->header.id, 0x1234);
  EXPECT_EQ(m->header.ancount, 0);
  EXPECT_EQ(m->header.nscount, 0);
  EXPECT_EQ(m->header.arcount, 0);
  ASSERT_EQ(m->questions.size(), 1u);
  EXPECT_EQ(m->questions[0].name.toText(), "Big.Example.");
  EXPECT_FALSE(m->edns);
  EXPECT_EQ(out.size(), x.q.question_end);
}

TEST(BuildClientReply, TruncatedReplyKeepsOpt) {
  Exchange x =
      exchange({.qname = "big.example", .edns = true, .udp_size = 512, .do_bit = true},
               {.qname = "big.example",
                .answers = 40,
                .options = {option(edns_option::ExtendedError, std::string_view("\x00\x00", 2))}});
  PacketBuffer out;
  buildClientReply(x.upstream, x.r, x.q, x.raw, x.q.maxUdpReply(1232), 1232, out);
  EXPECT_LE(out.size(), 512u);
  auto m = parseMessage(out);
  ASSERT_TRUE(m) << errcName(m.error());
  EXPECT_TRUE(m->header.tc());
  EXPECT_EQ(m->header.ancount, 0);
  EXPECT_EQ(m->header.arcount, 1);
  ASSERT_TRUE(m->edns);
  EXPECT_TRUE(m->edns->do_bit);
  EXPECT_EQ(optionCodes(*m->edns), std::vector<uint16_t>{edns_option::ExtendedError});
}

TEST(BuildClientReply, FitsExactlyIsNotTruncated) {
  Exchange x = exchange({.edns = false}, {.answers = 3, .edns = false});
  PacketBuffer out;
  buildClientReply(x.upstream, x.r, x.q, x.raw, x.upstream.size(), 1232, out);
  EXPECT_EQ(out.size(), x.upstream.size());
  auto m = parseMessage(out);
  ASSERT_TRUE(m);
  EXPECT_FALSE(m->header.tc());
  EXPECT_EQ(m->answer.size(), 3u);
}

}  // namespace
}  // namespace dotproxy::dns

namespace dotproxy::dns {
namespace {

// ---------------------------------------------------------------- client TTLs

TEST(ClientTtl, TopBitMeansZeroAndCapApplies) {
  EXPECT_EQ(clientTtl(300, 86400), 300u);
  EXPECT_EQ(clientTtl(200000, 86400), 86400u);
  EXPECT_EQ(clientTtl(0x80000010u, 86400), 0u);  // RFC 2181 8
  EXPECT_EQ(clientTtl(0xffffffffu, UINT32_MAX), 0u);
}

TEST(ClientTtl, CapClientTtlsRewritesEveryRecordButOpt) {
  Exchange x = exchange({.edns = true}, {.ttl = 0x80000000u, .answers = 1, .edns = true});
  PacketBuffer out;
  buildClientReply(x.upstream, x.r, x.q, x.raw, 4096, 1232, out);
  capClientTtls(out.mutableView(), 100);
  auto m = parseMessage(out);
  ASSERT_TRUE(m) << errcName(m.error());
  ASSERT_EQ(m->answer.size(), 1u);
  EXPECT_EQ(m->answer[0].ttl, 0u);
  ASSERT_TRUE(m->edns);  // the OPT's TTL field (EDNS flags) is untouched

  Exchange y = exchange({}, {.ttl = 1000, .answers = 2, .edns = false});
  buildClientReply(y.upstream, y.r, y.q, y.raw, 4096, 1232, out);
  capClientTtls(out.mutableView(), 1000);
  m = parseMessage(out);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->answer[0].ttl, 1000u);
  EXPECT_EQ(m->answer[1].ttl, 1000u);  // 1001 lowered to the cap
}

TEST(ClientTtl, NegativeAnswersTakeTheLowerCap) {
  ResponseInfo r;
  r.header.flags = flag::QR;
  EXPECT_EQ(ttlCap(r, {.max_ttl = 500, .negative_max_ttl = 60}), 500u);
  r.authority_soa = true;  // NODATA
  EXPECT_EQ(ttlCap(r, {.max_ttl = 500, .negative_max_ttl = 60}), 60u);
  r.authority_soa = false;
  r.header.setRcode(static_cast<uint8_t>(Rcode::NxDomain));
  EXPECT_EQ(ttlCap(r, {.max_ttl = 500, .negative_max_ttl = 60}), 60u);
  EXPECT_EQ(ttlCap(r, {.max_ttl = 30, .negative_max_ttl = 60}), 30u);
}

}  // namespace
}  // namespace dotproxy::dns
