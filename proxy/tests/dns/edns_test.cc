#include "dotproxy/dns/edns.h"

#include <gtest/gtest.h>

#include "dns_test_util.h"

namespace dotproxy::dns {
namespace {

using testing::bytes;
using testing::Bytes;
using testing::view;

TEST(ClientSubnet, TextWithPrefixClearsHostBits) {
  auto s = parseClientSubnetText("192.0.2.77/24");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->family, 1);
  EXPECT_EQ(s->source_prefix, 24);
  EXPECT_EQ(s->toText(), "192.0.2.0/24/0");
  auto o = clientSubnetOption(*s);
  EXPECT_EQ(o.code, edns_option::ClientSubnet);
  EXPECT_EQ(o.data, bytes({0, 1, 24, 0, 192, 0, 2}));  // 3 address bytes for /24
}

TEST(ClientSubnet, PartialByteAndIpv6) {
  auto s = parseClientSubnetText("2001:db8:ffff::1/33");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->family, 2);
  EXPECT_EQ(s->toText(), "2001:db8:8000::/33/0");
  EXPECT_EQ(clientSubnetOption(*s).data, bytes({0, 2, 33, 0, 0x20, 0x01, 0x0d, 0xb8, 0x80}));
}

TEST(ClientSubnet, ZeroSlashZeroAndBareAddress) {
  auto zero = parseClientSubnetText("0/0");
  ASSERT_TRUE(zero);
  EXPECT_EQ(clientSubnetOption(*zero).data, bytes({0, 1, 0, 0}));
  auto bare = parseClientSubnetText("192.0.2.1");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->source_prefix, 32);
  auto bare6 = parseClientSubnetText("::1");
  ASSERT_TRUE(bare6);
  EXPECT_EQ(bare6->source_prefix, 128);
}

TEST(ClientSubnet, BadTextIsRejected) {
  for (const char* t : {"", "garbage", "192.0.2.0/33", "::/129", "192.0.2.0/", "192.0.2.0/x",
                        "192.0.2.0/24x", "/24", "192.0.2/24", "0/1x"}) {
    EXPECT_FALSE(parseClientSubnetText(t)) << t;
  }
}

TEST(ClientSubnet, WireRoundTrip) {
  auto s = parseClientSubnetText("198.51.100.0/22");
  ASSERT_TRUE(s);
  s->scope_prefix = 20;
  auto o = clientSubnetOption(*s);
  auto back = parseClientSubnet(view(o.data));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->toText(), "198.51.100.0/22/20");
}

TEST(ClientSubnet, MalformedWireIsFormErr) {
  EXPECT_FALSE(parseClientSubnet(view(bytes({0, 1, 24}))));                    // short header
  EXPECT_FALSE(parseClientSubnet(view(bytes({0, 3, 0, 0}))));                  // unknown family
  EXPECT_FALSE(parseClientSubnet(view(bytes({0, 1, 33, 0, 1, 2, 3, 4, 5}))));  // prefix > 32
  EXPECT_FALSE(parseClientSubnet(view(bytes({0, 1, 24, 0, 192, 0}))));         // address too short
  EXPECT_FALSE(parseClientSubnet(view(bytes({0, 1, 8, 0, 10, 0}))));           // address too long
  EXPECT_FALSE(parseClientSubnet(view(bytes({0, 1, 7, 0, 0xff}))));  // bit past the prefix
  EXPECT_FALSE(parseClientSubnet(view(bytes({0, 1, 8, 33, 10}))));   // scope > 32
  EXPECT_TRUE(parseClientSubnet(view(bytes({0, 1, 0, 0}))));
}

TEST(Cookie, ClientOnlyAndWithServer) {
  Bytes client = bytes({1, 2, 3, 4, 5, 6, 7, 8});
  auto c = parseCookie(view(client));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->client, client);
  EXPECT_TRUE(c->server.empty());

  Cookie both{.client = client, .server = bytes({9, 9, 9, 9, 9, 9, 9, 9, 9, 9})};
  auto o = cookieOption(both);
  EXPECT_EQ(o.code, edns_option::Cookie);
  EXPECT_EQ(o.data.size(), 18u);
  auto back = parseCookie(view(o.data));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->client, client);
  EXPECT_EQ(back->server, both.server);
}

TEST(Cookie, BadLengthsAreFormErr) {
  for (size_t n : {0u, 7u, 9u, 15u, 41u}) {
    EXPECT_FALSE(parseCookie(view(Bytes(n, std::byte{1})))) << n;
  }
  for (size_t n : {8u, 16u, 40u}) EXPECT_TRUE(parseCookie(view(Bytes(n, std::byte{1})))) << n;
}

TEST(Padding, LengthMakesTheMessageAMultipleOfTheBlock) {
  for (size_t size : {12u, 40u, 123u, 124u, 125u, 128u, 300u}) {
    const size_t pad = paddingLength(size, 128);
    EXPECT_EQ((size + 4 + pad) % 128, 0u) << size;
    EXPECT_LT(pad, 128u);
  }
  EXPECT_EQ(paddingLength(124, 128), 0u);  // 124 + 4 = 128 already
  EXPECT_EQ(paddingLength(50, 0), 0u);
  EXPECT_EQ(paddingLength(50, 1), 0u);
  EXPECT_EQ(paddingOption(5).data, Bytes(5, std::byte{0}));
}

TEST(Padding, BuiltQueryIsAMultipleOfTheBlock) {
  for (size_t block : {16u, 128u, 468u}) {
    Edns e{.udp_size = 1232};
    auto build = [&](const Edns& edns) {
      PacketBuffer out;
      MessageBuilder b(out);
      b.header(Header{.id = 1});
      b.question(testing::name("a.example"), type::A);
      b.opt(edns);
      EXPECT_TRUE(b.finish());
      return out;
    };
    const size_t plain = build(e).size();
    e.options.push_back(paddingOption(paddingLength(plain, block)));
    EXPECT_EQ(build(e).size() % block, 0u) << block;
  }
}

TEST(ExtendedError, CodeAndText) {
  Bytes d = bytes({0, 18, 'n', 'o', 'p', 'e'});
  auto e = parseExtendedError(view(d));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->info_code, 18);
  EXPECT_EQ(e->extra_text, "nope");
  EXPECT_EQ(extendedErrorName(18), "Prohibited");
  EXPECT_EQ(extendedErrorName(3), "Stale Answer");
  EXPECT_EQ(extendedErrorName(999), "");
  EXPECT_FALSE(parseExtendedError(view(bytes({0}))));
  auto bare = parseExtendedError(view(bytes({0, 0})));
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->extra_text, "");
}

TEST(EdnsOptionName, KnownAndUnknown) {
  EXPECT_EQ(ednsOptionName(edns_option::NSID), "NSID");
  EXPECT_EQ(ednsOptionName(edns_option::ClientSubnet), "CLIENT-SUBNET");
  EXPECT_EQ(ednsOptionName(edns_option::Cookie), "COOKIE");
  EXPECT_EQ(ednsOptionName(edns_option::Padding), "PADDING");
  EXPECT_EQ(ednsOptionName(edns_option::ExtendedError), "EDE");
  EXPECT_EQ(ednsOptionName(65001), "");
}

}  // namespace
}  // namespace dotproxy::dns
