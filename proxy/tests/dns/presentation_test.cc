#include "dotproxy/dns/presentation.h"

#include <gtest/gtest.h>

#include <string>

#include "dotproxy/dns/message.h"
#include "dotproxy/dns/types.h"

namespace dotproxy::dns {
namespace {

Name name(std::string_view text) {
  return Name::fromText(text).value();
}

PacketBuffer bytes(std::initializer_list<uint8_t> b) {
  PacketBuffer out;
  for (uint8_t x : b) out.push(std::byte{x});
  return out;
}

TEST(Presentation, CommonTypes) {
  EXPECT_EQ(rdataText(type::A, bytes({192, 0, 2, 1})), "192.0.2.1");
  EXPECT_EQ(rdataText(type::AAAA, bytes({0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})),
            "2001:db8::1");
  EXPECT_EQ(rdataText(type::TXT, bytes({2, 'h', 'i', 3, 'a', '"', 1})), R"("hi" "a\"\001")");
  EXPECT_EQ(rdataText(type::CNAME, name("a.example").wire()), "a.example.");
  PacketBuffer mx = bytes({0, 10});
  mx.append(name("mail.example").wire());
  EXPECT_EQ(rdataText(type::MX, mx), "10 mail.example.");
}

TEST(Presentation, UnknownOrMalformedRdataIsRfc3597) {
  EXPECT_EQ(rdataText(65280, bytes({0, 0xff})), "\\# 2 00ff");
  EXPECT_EQ(rdataText(type::A, bytes({1, 2, 3})), "\\# 3 010203");  // A of 3 bytes
  EXPECT_EQ(rdataText(type::TXT, bytes({5, 'a'})), "\\# 2 0561");   // string overruns
  EXPECT_EQ(rdataText(65280, {}), "\\# 0");
}

TEST(Presentation, CompressedNamesInRdataAreExpanded) {
  // Header, question example.com A, then a CNAME whose rdata is www + a pointer to the question.
  PacketBuffer m = bytes({0, 1, 0x81, 0, 0, 1, 0, 1, 0, 0, 0, 0});
  m.append(name("example.com").wire());
  m.append(bytes({0, 1, 0, 1}));
  m.append(bytes({0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, 'w', 'w', 'w', 0xc0, 12}));
  auto parsed = parseMessage(m).value();
  ASSERT_EQ(parsed.answer.size(), 1u);
  auto rdata = expandedRdata(m, parsed.answer[0]).value();
  EXPECT_EQ(rdataText(type::CNAME, rdata), "www.example.com.");
  EXPECT_EQ(rdata.size(), name("www.example.com").wireSize());
}

TEST(Presentation, RdataWithBytesAfterTheNameIsFormErr) {
  PacketBuffer m = bytes({0, 1, 0x81, 0, 0, 0, 0, 1, 0, 0, 0, 0});
  m.append(bytes({0, 0, 5, 0, 1, 0, 0, 0, 60, 0, 3, 0, 7, 7}));  // CNAME "." plus 2 bytes
  auto parsed = parseMessage(m).value();
  EXPECT_EQ(expandedRdata(m, parsed.answer[0]).error(), Errc::FormErr);
}

TEST(ParseFailure, NamesTheElementAndItsOffset) {
  ParseFailure f;
  PacketBuffer m = bytes({0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0});  // one question, one answer
  m.append(name("a.test").wire());
  m.append(bytes({0, 1, 0, 1}));
  const size_t answer_at = m.size();
  m.append(bytes({0xc0, 0x30}));  // a forward pointer
  EXPECT_EQ(parseMessage(m, &f).error(), Errc::BadPointer);
  EXPECT_STREQ(f.element, "answer record");
  EXPECT_EQ(f.index, 0u);
  EXPECT_EQ(f.offset, answer_at);

  EXPECT_EQ(parseMessage(bytes({1, 2, 3}), &f).error(), Errc::Truncated);
  EXPECT_STREQ(f.element, "header");
  EXPECT_EQ(f.offset, 0u);
  EXPECT_TRUE(parseMessage(bytes({0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}), nullptr));
}

}  // namespace
}  // namespace dotproxy::dns
