#include "dotproxy/dns/message.h"

#include <gtest/gtest.h>

#include <string>

#include "dns_test_util.h"

namespace dotproxy::dns {
namespace {

using testing::append;
using testing::Bytes;
using testing::view;

const std::byte kAddr[] = {std::byte{192}, std::byte{0}, std::byte{2}, std::byte{1}};

PacketBuffer sampleMessage() {
  PacketBuffer out;
  MessageBuilder b(out);
  Header h;
  h.id = 7;
  h.flags = flag::QR | flag::RD | flag::RA;
  b.header(h);
  b.question(testing::name("example.com"), type::A);
  b.record(Section::Answer, testing::name("example.com"), type::A, klass::IN, 300, kAddr);
  b.record(Section::Authority, testing::name("example.com"), type::NS, klass::IN, 600,
           testing::name("ns.example.com").wire());
  b.record(Section::Additional, testing::name("ns.example.com"), type::A, klass::IN, 60, kAddr);
  Edns e;
  e.udp_size = 1232;
  e.do_bit = true;
  e.ext_rcode = 1;
  e.options.push_back(testing::option(edns_option::NSID, "abc"));
  b.opt(e);
  EXPECT_TRUE(b.finish());
  return out;
}

TEST(Message, BuildAndParseRoundTrip) {
  PacketBuffer wire = sampleMessage();
  auto m = parseMessage(wire);
  ASSERT_TRUE(m) << errcName(m.error());
  EXPECT_EQ(m->header.id, 7);
  EXPECT_EQ(m->header.qdcount, 1);
  EXPECT_EQ(m->header.ancount, 1);
  EXPECT_EQ(m->header.nscount, 1);
  EXPECT_EQ(m->header.arcount, 2);
  ASSERT_EQ(m->questions.size(), 1u);
  EXPECT_EQ(m->questions[0].name.toText(), "example.com.");
  ASSERT_EQ(m->answer.size(), 1u);
  EXPECT_EQ(m->answer[0].ttl, 300u);
  EXPECT_EQ(m->answer[0].rdlength, 4);
  EXPECT_EQ(wire[m->answer[0].rdata_offset], std::byte{192});
  ASSERT_EQ(m->authority.size(), 1u);
  ASSERT_EQ(m->additional.size(), 1u);  // OPT excluded
  ASSERT_TRUE(m->edns);
  EXPECT_EQ(m->edns->udp_size, 1232);
  EXPECT_TRUE(m->edns->do_bit);
  EXPECT_EQ(m->edns->version, 0);
  ASSERT_EQ(m->edns->options.size(), 1u);
  EXPECT_EQ(m->edns->options[0].code, edns_option::NSID);
  EXPECT_EQ(m->edns->options[0].data.size(), 3u);
  EXPECT_EQ(m->rcode(), 16);
}

TEST(Message, HugeCountInTinyMessageFailsFast) {
  // ANCOUNT=65535 in a 30-byte message: must fail without reserving room for 65535 records.
  Bytes m = testing::header(1, flag::QR, 1, 65535, 0, 0);
  append(m, {3, 'c', 'o', 'm', 0, 0, 1, 0, 1});
  append(m, {0, 0, 1, 0, 1, 0, 0, 0, 0});
  ASSERT_EQ(m.size(), 30u);
  auto r = parseMessage(view(m));
  EXPECT_EQ(r.error(), Errc::Truncated);
}

TEST(Message, HugeQuestionCountFailsFast) {
  Bytes m = testing::header(1, 0, 65535, 0, 0, 0);
  append(m, {0, 0, 1, 0, 1});
  EXPECT_EQ(parseMessage(view(m)).error(), Errc::Truncated);
}

TEST(Message, TruncatedRdataIsRejected) {
  Bytes m = testing::header(1, flag::QR, 1, 1, 0, 0);
  append(m, {0, 0, 1, 0, 1});
  append(m, {0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2});  // rdlength 4, two bytes present
  EXPECT_EQ(parseMessage(view(m)).error(), Errc::Truncated);
}

TEST(Message, TruncatedRecordHeaderIsRejected) {
  Bytes m = testing::header(1, flag::QR, 1, 1, 0, 0);
  append(m, {0, 0, 1, 0, 1});
  append(m, {0, 0, 1, 0, 1, 0, 0});
  EXPECT_EQ(parseMessage(view(m)).error(), Errc::Truncated);
}

TEST(Message, TwoOptRecordsAreFormErr) {
  Bytes m = testing::header(1, 0, 1, 0, 0, 2);
  append(m, {0, 0, 1, 0, 1});
  append(m, {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0});
  append(m, {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0});
  EXPECT_EQ(parseMessage(view(m)).error(), Errc::FormErr);
}

TEST(Message, OptNotAtRootIsFormErr) {
  Bytes m = testing::header(1, 0, 1, 0, 0, 1);
  append(m, {0, 0, 1, 0, 1});
  append(m, {1, 'a', 0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0});
  EXPECT_EQ(parseMessage(view(m)).error(), Errc::FormErr);
}

TEST(Message, OptInAnswerSectionIsFormErr) {
  Bytes m = testing::header(1, flag::QR, 1, 1, 0, 0);
  append(m, {0, 0, 1, 0, 1});
  append(m, {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0});
  EXPECT_EQ(parseMessage(view(m)).error(), Errc::FormErr);
}

TEST(Message, OptOptionOverrunningRdataIsFormErr) {
  Bytes m = testing::header(1, 0, 1, 0, 0, 1);
  append(m, {0, 0, 1, 0, 1});
  append(m, {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 6, 0, 3, 0, 5, 'a', 'b'});
  EXPECT_EQ(parseMessage(view(m)).error(), Errc::FormErr);
}

TEST(Message, BadNameInRecordIsReported) {
  Bytes m = testing::header(1, flag::QR, 1, 1, 0, 0);
  append(m, {0, 0, 1, 0, 1});
  append(m, {0xC0, 17, 0, 1, 0, 1, 0, 0, 0, 60, 0, 0});  // pointer to itself
  EXPECT_EQ(parseMessage(view(m)).error(), Errc::BadPointer);
}

TEST(Message, ShortMessageIsTruncated) {
  Bytes m = testing::bytes({0, 1, 2});
  EXPECT_EQ(parseMessage(view(m)).error(), Errc::Truncated);
}

TEST(MessageBuilder, LimitGivesTooLarge) {
  PacketBuffer out;
  MessageBuilder b(out, 40);
  b.header(Header{});
  b.question(testing::name("example.com"), type::A);
  b.record(Section::Answer, testing::name("example.com"), type::A, klass::IN, 1, kAddr);
  EXPECT_EQ(b.finish().error(), Errc::TooLarge);
}

TEST(MessageBuilder, KeepsExistingPrefix) {
  PacketBuffer out;
  out.push(std::byte{0xAB});
  out.push(std::byte{0xCD});
  MessageBuilder b(out, 12 + 17);
  b.header(Header{.id = 9});
  b.question(testing::name("example.com"), type::A);
  ASSERT_TRUE(b.finish());
  EXPECT_EQ(out.size(), 2u + 12 + 17);
  auto m = parseMessage(out.view().subspan(2));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->header.id, 9);
  EXPECT_EQ(m->questions.size(), 1u);
}

TEST(MessageBuilder, HeaderCountsComeFromBuilder) {
  PacketBuffer out;
  MessageBuilder b(out);
  Header h;
  h.qdcount = 9;
  h.ancount = 9;
  b.header(h);
  ASSERT_TRUE(b.finish());
  auto m = parseMessage(out);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->header.qdcount, 0);
  EXPECT_EQ(m->header.ancount, 0);
}

TEST(TxtRdata, SplitsIntoCharacterStrings) {
  std::string text(300, 'x');
  PacketBuffer r = txtRdata(text);
  ASSERT_EQ(r.size(), 302u);
  EXPECT_EQ(r[0], std::byte{255});
  EXPECT_EQ(r[256], std::byte{45});
}

TEST(TxtRdata, EmptyTextIsOneEmptyString) {
  PacketBuffer r = txtRdata("");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0], std::byte{0});
  PacketBuffer s = txtRdata("hi");
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0], std::byte{2});
}

}  // namespace
}  // namespace dotproxy::dns
