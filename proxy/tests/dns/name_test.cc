#include "dotproxy/dns/name.h"

#include <gtest/gtest.h>

#include <string>

#include "dns_test_util.h"
#include "dotproxy/dns/types.h"

namespace dotproxy::dns {
namespace {

using testing::append;
using testing::appendLabel;
using testing::Bytes;
using testing::view;

// A message: a 12-byte header (zeros) followed by `body`.
Bytes msg(std::initializer_list<int> body) {
  Bytes b(kHeaderSize, std::byte{0});
  append(b, body);
  return b;
}

Result<Name> readAt(const Bytes& m, size_t offset, size_t* end = nullptr) {
  WireReader r(view(m));
  r.seek(offset);
  Name n = readName(r);
  if (end) *end = r.pos();
  if (!r.ok()) return std::unexpected(*r.error());
  return n;
}

std::optional<Errc> skipAt(const Bytes& m, size_t offset) {
  WireReader r(view(m));
  r.seek(offset);
  skipName(r);
  return r.error();
}

// ---- fromText / toText

TEST(NameText, ParsesAbsoluteAndRelative) {
  auto a = Name::fromText("www.Example.com");
  auto b = Name::fromText("www.Example.com.");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(a->wireSize(), 17u);
  EXPECT_EQ(a->labelCount(), 3u);
  EXPECT_EQ(a->toText(), "www.Example.com.");
  EXPECT_EQ(a->firstLabel(), "www");
}

TEST(NameText, Root) {
  auto r = Name::fromText(".");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->isRoot());
  EXPECT_EQ(r->toText(), ".");
  EXPECT_EQ(r->labelCount(), 0u);
  EXPECT_EQ(r->firstLabel(), "");
  EXPECT_EQ(Name().wireSize(), 1u);
  EXPECT_EQ(*r, Name());
}

TEST(NameText, EmptyLabelsAreRejected) {
  EXPECT_EQ(Name::fromText("").error(), Errc::BadText);
  EXPECT_EQ(Name::fromText("a..b").error(), Errc::BadText);
  EXPECT_EQ(Name::fromText(".a").error(), Errc::BadText);
  EXPECT_EQ(Name::fromText("a.b..").error(), Errc::BadText);
}

TEST(NameText, Escapes) {
  auto n = Name::fromText(R"(a\.b\065\\c.com)");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->labelCount(), 2u);
  EXPECT_EQ(n->firstLabel(), "a.bA\\c");
  EXPECT_EQ(n->toText(), R"(a\.bA\\c.com.)");
  auto bin = Name::fromText(R"(\000\255\032x.)");
  ASSERT_TRUE(bin);
  EXPECT_EQ(bin->toText(), R"(\000\255\032x.)");
  EXPECT_EQ(Name::fromText(bin->toText()).value(), *bin);
}

TEST(NameText, BadEscapesAreRejected) {
  EXPECT_EQ(Name::fromText(R"(a\256)").error(), Errc::BadText);
  EXPECT_EQ(Name::fromText(R"(a\12)").error(), Errc::BadText);
  EXPECT_EQ(Name::fromText(R"(a\)").error(), Errc::BadText);
}

TEST(NameText, LabelOf63IsAcceptedAnd64Rejected) {
  EXPECT_TRUE(Name::fromText(std::string(63, 'a') + ".com"));
  EXPECT_EQ(Name::fromText(std::string(64, 'a') + ".com").error(), Errc::LabelTooLong);
}

TEST(NameText, NameOf255IsAcceptedAnd256Rejected) {
  // 3 * (1 + 63) + (1 + 61) + 1 = 255
  std::string l63(63, 'a');
  std::string ok = l63 + "." + l63 + "." + l63 + "." + std::string(61, 'b');
  auto n = Name::fromText(ok);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->wireSize(), 255u);
  EXPECT_EQ(Name::fromText(ok + "b").error(), Errc::NameTooLong);
  EXPECT_EQ(Name::fromText(ok + ".b").error(), Errc::NameTooLong);
}

// ---- comparisons

TEST(NameCompare, CaseInsensitiveEquality) {
  auto a = testing::name("WwW.ExAmPlE.cOm");
  auto b = testing::name("www.example.com");
  EXPECT_TRUE(a.equalsIgnoreCase(b));
  EXPECT_FALSE(a == b);
  EXPECT_EQ(a.lowered(), b);
  EXPECT_FALSE(a.equalsIgnoreCase(testing::name("www.example.org")));
  EXPECT_FALSE(a.equalsIgnoreCase(testing::name("ww.example.com")));
}

TEST(NameCompare, CaseFoldingIsAsciiOnly) {
  auto a = Name::fromText(R"(\196.com)").value();  // 0xC4
  auto b = Name::fromText(R"(\228.com)").value();  // 0xE4, its Latin-1 lower case
  EXPECT_FALSE(a.equalsIgnoreCase(b));
}

TEST(NameCompare, IsSubdomainOf) {
  auto n = testing::name("www.Example.com");
  EXPECT_TRUE(n.isSubdomainOf(testing::name("example.COM")));
  EXPECT_TRUE(n.isSubdomainOf(testing::name("com")));
  EXPECT_TRUE(n.isSubdomainOf(testing::name(".")));
  EXPECT_TRUE(n.isSubdomainOf(n));
  EXPECT_FALSE(n.isSubdomainOf(testing::name("xample.com")));  // not on a label boundary
  EXPECT_FALSE(n.isSubdomainOf(testing::name("org")));
  EXPECT_FALSE(testing::name("com").isSubdomainOf(n));
}

// ---- readName / skipName

TEST(ReadName, ReadsPlainName) {
  Bytes m = msg({3, 'w', 'w', 'w', 3, 'c', 'o', 'm', 0, 0xff});
  size_t end = 0;
  auto n = readAt(m, 12, &end);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->toText(), "www.com.");
  EXPECT_EQ(end, 21u);
}

TEST(ReadName, FollowsBackwardPointerAndResumesAfterIt) {
  // 12: example.com.   25: www + pointer to 12
  Bytes m = msg({7, 'e', 'x', 'a', 'm',  'p', 'l', 'e', 3, 'c', 'o', 'm', 0,  //
                 3, 'w', 'w', 'w', 0xC0, 12,  0xAA});
  size_t end = 0;
  auto n = readAt(m, 25, &end);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->toText(), "www.example.com.");
  EXPECT_EQ(end, 31u);
  EXPECT_EQ(skipAt(m, 25), std::nullopt);
}

TEST(ReadName, PointerToPointerWithinLimitIsAccepted) {
  // 12: com.  17: ptr->12  19: ptr->17
  Bytes m = msg({3, 'c', 'o', 'm', 0, 0xC0, 12, 0xC0, 17});
  auto n = readAt(m, 19);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->toText(), "com.");
}

TEST(ReadName, PointerLoopIsRejected) {
  // 12: ptr->14, 14: ptr->12. Entering at 14 reaches 12, whose pointer goes forward again.
  Bytes m = msg({0xC0, 14, 0xC0, 12});
  auto n = readAt(m, 14);
  ASSERT_FALSE(n);
  EXPECT_TRUE(n.error() == Errc::BadPointer || n.error() == Errc::PointerLoop);
  EXPECT_FALSE(readAt(m, 12));
}

TEST(ReadName, PointerToItselfIsRejected) {
  Bytes m = msg({0xC0, 12});
  EXPECT_EQ(readAt(m, 12).error(), Errc::BadPointer);
  EXPECT_EQ(skipAt(m, 12), Errc::BadPointer);
}

TEST(ReadName, PointerIntoOwnLabelSequenceIsRejected) {
  // 12: "a" then a pointer back to 12, the start of the same label sequence.
  Bytes m = msg({1, 'a', 0xC0, 12});
  EXPECT_EQ(readAt(m, 12).error(), Errc::BadPointer);
}

TEST(ReadName, ForwardPointerIsRejected) {
  Bytes m = msg({0xC0, 14, 3, 'c', 'o', 'm', 0});
  EXPECT_EQ(readAt(m, 12).error(), Errc::BadPointer);
}

TEST(ReadName, PointerOutsideMessageIsRejected) {
  Bytes m = msg({0xFF, 0xFF});
  EXPECT_EQ(readAt(m, 12).error(), Errc::BadPointer);
}

TEST(ReadName, PointerIntoHeaderIsRejected) {
  Bytes m = msg({0xC0, 4});
  EXPECT_EQ(readAt(m, 12).error(), Errc::BadPointer);
}

TEST(ReadName, TooManyHopsIsRejected) {
  // 12: root; then 200 pointers, each to the one before it. Every hop is backwards.
  Bytes m = msg({0});
  append(m, {0xC0, 12});
  for (int i = 1; i < 200; ++i) {
    size_t prev = m.size() - 2;
    append(m, {0xC0 | static_cast<int>(prev >> 8), static_cast<int>(prev & 0xff)});
  }
  EXPECT_EQ(readAt(m, m.size() - 2).error(), Errc::PointerLoop);
  EXPECT_EQ(skipAt(m, m.size() - 2), Errc::PointerLoop);
  // 126 hops are still fine: the pointer at 13 + 2*125 reaches 12 in 126 hops.
  EXPECT_TRUE(readAt(m, 13 + 2 * 125));
}

TEST(ReadName, LabelOver63IsRejected) {
  // A length byte of 64 is the 0x40 "extended label" type (RFC 6891 5).
  Bytes m = msg({});
  appendLabel(m, 64, 'a');
  append(m, {0});
  EXPECT_EQ(readAt(m, 12).error(), Errc::BadLabelType);
}

TEST(ReadName, ExtendedLabelTypesAreRejected) {
  EXPECT_EQ(readAt(msg({0x41, 0}), 12).error(), Errc::BadLabelType);
  EXPECT_EQ(readAt(msg({0x80, 0}), 12).error(), Errc::BadLabelType);
  EXPECT_EQ(skipAt(msg({0x80, 0}), 12), Errc::BadLabelType);
}

TEST(ReadName, NameOver255ViaLabelsIsRejected) {
  Bytes m = msg({});
  for (int i = 0; i < 5; ++i) appendLabel(m, 63, 'a');
  append(m, {0});
  EXPECT_EQ(readAt(m, 12).error(), Errc::NameTooLong);
  EXPECT_EQ(skipAt(m, 12), Errc::NameTooLong);
}

TEST(ReadName, NameOf255ViaLabelsIsAccepted) {
  Bytes m = msg({});
  for (int i = 0; i < 3; ++i) appendLabel(m, 63, 'a');
  appendLabel(m, 61, 'b');
  append(m, {0});
  auto n = readAt(m, 12);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->wireSize(), 255u);
}

TEST(ReadName, NameOver255ViaPointersIsRejected) {
  // 12: two 63-byte labels + root (129 bytes). 141: two more 63-byte labels + pointer to 12:
  // 128 + 129 = 257 bytes once expanded.
  Bytes m = msg({});
  appendLabel(m, 63, 'a');
  appendLabel(m, 63, 'b');
  append(m, {0});
  ASSERT_EQ(m.size(), 141u);
  appendLabel(m, 63, 'c');
  appendLabel(m, 63, 'd');
  append(m, {0xC0, 12});
  EXPECT_TRUE(readAt(m, 12));
  EXPECT_EQ(readAt(m, 141).error(), Errc::NameTooLong);
  EXPECT_EQ(skipAt(m, 141), Errc::NameTooLong);
}

TEST(ReadName, TruncatedLabelIsRejected) {
  EXPECT_EQ(readAt(msg({10, 'a', 'b', 'c'}), 12).error(), Errc::Truncated);
}

TEST(ReadName, MissingRootIsRejected) {
  EXPECT_EQ(readAt(msg({3, 'c', 'o', 'm'}), 12).error(), Errc::Truncated);
}

TEST(ReadName, HalfPointerIsRejected) {
  EXPECT_EQ(readAt(msg({0xC0}), 12).error(), Errc::Truncated);
}

TEST(ReadName, ErrorLeavesRootAndStopsReader) {
  Bytes m = msg({0xC0, 12});
  WireReader r(view(m));
  r.seek(12);
  Name n = readName(r);
  EXPECT_TRUE(n.isRoot());
  EXPECT_EQ(r.error(), Errc::BadPointer);
  EXPECT_EQ(r.pos(), 12u);
}

TEST(NameWire, FromWireRoundTrip) {
  Name n = testing::name("a.b.c");
  auto back = Name::fromWire(n.wire());
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, n);
  PacketBuffer out;
  WireWriter w(out);
  writeName(w, n);
  EXPECT_EQ(out.size(), n.wireSize());
}

TEST(NameWire, FromWireRejectsPointersAndTrailingBytes) {
  Bytes p = testing::bytes({1, 'a', 0xC0, 0});
  EXPECT_EQ(Name::fromWire(view(p)).error(), Errc::BadPointer);
  Bytes t = testing::bytes({1, 'a', 0, 0});
  EXPECT_EQ(Name::fromWire(view(t)).error(), Errc::TrailingData);
  Bytes e;
  EXPECT_EQ(Name::fromWire(view(e)).error(), Errc::Truncated);
}

}  // namespace
}  // namespace dotproxy::dns
