#include "dotproxy/wire/reader.h"

#include <gtest/gtest.h>

#include "dotproxy/wire/writer.h"

namespace dotproxy {
namespace {

TEST(WireReader, ReadsBigEndianFields) {
  const std::byte bytes[] = {std::byte{0x12}, std::byte{0x34}, std::byte{0xde}, std::byte{0xad},
                             std::byte{0xbe}, std::byte{0xef}, std::byte{0x7f}};
  WireReader r(bytes);
  EXPECT_EQ(r.u16(), 0x1234);
  EXPECT_EQ(r.u32(), 0xdeadbeefu);
  EXPECT_EQ(r.u8(), 0x7f);
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(r.atEnd());
}

TEST(WireReader, ErrorIsStickyAndPositionStops) {
  const std::byte bytes[] = {std::byte{1}, std::byte{2}, std::byte{3}};
  WireReader r(bytes);
  EXPECT_EQ(r.u16(), 0x0102);
  EXPECT_EQ(r.u16(), 0);  // only one byte left
  EXPECT_EQ(r.error(), Errc::Truncated);
  EXPECT_EQ(r.pos(), 2u);
  EXPECT_EQ(r.u8(), 0);  // still failing although one byte remains
  EXPECT_EQ(r.pos(), 2u);
  EXPECT_TRUE(r.bytes(1).empty());
}

TEST(WireReader, SeekPastEndFails) {
  const std::byte bytes[] = {std::byte{1}, std::byte{2}};
  WireReader r(bytes);
  r.seek(2);
  EXPECT_TRUE(r.ok());
  r.seek(3);
  EXPECT_EQ(r.error(), Errc::Truncated);
}

TEST(WireWriter, RefusesToGrowPastLimit) {
  PacketBuffer out;
  WireWriter w(out, 5);
  w.u32(0x01020304);
  w.u16(0x0506);
  EXPECT_EQ(w.error(), Errc::TooLarge);
  EXPECT_EQ(out.size(), 4u);
  w.u8(1);  // sticky
  EXPECT_EQ(out.size(), 4u);
}

TEST(WireWriter, PatchesEarlierField) {
  PacketBuffer out;
  WireWriter w(out);
  w.u16(0);
  w.u16(0xffff);
  w.patchU16(0, 0xabcd);
  ASSERT_TRUE(w.ok());
  WireReader r(out);
  EXPECT_EQ(r.u16(), 0xabcd);
  EXPECT_EQ(r.u16(), 0xffff);
}

}  // namespace
}  // namespace dotproxy
