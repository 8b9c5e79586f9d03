#include "dotproxy/dns/types.h"

#include <gtest/gtest.h>

#include "dns_test_util.h"

namespace dotproxy::dns {
namespace {

using testing::Bytes;
using testing::view;

TEST(Header, RoundTripsAllFields) {
  Header h;
  h.id = 0xbeef;
  h.flags = flag::QR | flag::RD | flag::RA | 3;
  h.qdcount = 1;
  h.ancount = 2;
  h.nscount = 3;
  h.arcount = 4;
  PacketBuffer out;
  WireWriter w(out);
  writeHeader(w, h);
  ASSERT_EQ(out.size(), kHeaderSize);
  WireReader r(out);
  Header back = readHeader(r);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(back.id, 0xbeef);
  EXPECT_TRUE(back.qr());
  EXPECT_TRUE(back.rd());
  EXPECT_FALSE(back.tc());
  EXPECT_EQ(back.rcode(), 3);
  EXPECT_EQ(back.qdcount, 1);
  EXPECT_EQ(back.ancount, 2);
  EXPECT_EQ(back.nscount, 3);
  EXPECT_EQ(back.arcount, 4);
}

TEST(Header, ShortHeaderIsTruncated) {
  Bytes b = testing::bytes({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  WireReader r(view(b));
  readHeader(r);
  EXPECT_EQ(r.error(), Errc::Truncated);
}

TEST(Header, OpcodeAndRcodeAccessors) {
  Header h;
  h.flags = static_cast<uint16_t>(static_cast<unsigned>(Opcode::Notify) << 11);
  EXPECT_EQ(h.opcode(), 4);
  h.setRcode(5);
  EXPECT_EQ(h.rcode(), 5);
  EXPECT_EQ(h.opcode(), 4);
}

TEST(TypeName, KnownAndUnknown) {
  EXPECT_EQ(typeName(type::A), "A");
  EXPECT_EQ(typeName(type::AAAA), "AAAA");
  EXPECT_EQ(typeName(type::HTTPS), "HTTPS");
  EXPECT_EQ(typeName(type::OPT), "OPT");
  EXPECT_EQ(typeName(65534), "");
}

TEST(ParseType, MnemonicsCaseInsensitive) {
  EXPECT_EQ(parseType("A"), type::A);
  EXPECT_EQ(parseType("aaaa"), type::AAAA);
  EXPECT_EQ(parseType("Mx"), type::MX);
  EXPECT_EQ(parseType("HTTPS"), type::HTTPS);
}

TEST(ParseType, GenericTypeNumbers) {
  EXPECT_EQ(parseType("TYPE65534"), 65534);
  EXPECT_EQ(parseType("type1"), type::A);
  EXPECT_EQ(parseType("TYPE0"), 0);
  EXPECT_EQ(parseType("TYPE65535"), 65535);
}

TEST(ParseType, RejectsGarbage) {
  EXPECT_EQ(parseType(""), std::nullopt);
  EXPECT_EQ(parseType("TYPE"), std::nullopt);
  EXPECT_EQ(parseType("TYPE65536"), std::nullopt);
  EXPECT_EQ(parseType("TYPE1x"), std::nullopt);
  EXPECT_EQ(parseType("TYPE-1"), std::nullopt);
  EXPECT_EQ(parseType("TYPE0000001"), std::nullopt);
  EXPECT_EQ(parseType("NOSUCHTYPE"), std::nullopt);
}

TEST(RcodeName, Names) {
  EXPECT_EQ(rcodeName(0), "NOERROR");
  EXPECT_EQ(rcodeName(1), "FORMERR");
  EXPECT_EQ(rcodeName(2), "SERVFAIL");
  EXPECT_EQ(rcodeName(3), "NXDOMAIN");
  EXPECT_EQ(rcodeName(4), "NOTIMP");
  EXPECT_EQ(rcodeName(5), "REFUSED");
  EXPECT_EQ(rcodeName(16), "BADVERS");
  EXPECT_EQ(rcodeName(4000), "");
}

}  // namespace
}  // namespace dotproxy::dns
