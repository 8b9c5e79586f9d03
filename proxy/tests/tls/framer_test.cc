#include "dotproxy/tls/framer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace dotproxy::tls {
namespace {

std::vector<std::byte> frameAll(const std::vector<std::string>& msgs) {
  PacketBuffer out;
  for (const auto& m : msgs) EXPECT_TRUE(appendFrame(out, asWire(m)).has_value());
  return {out.data(), out.data() + out.size()};
}

// Feeds `stream` cut at the given points and returns every message the framer produced.
std::vector<std::string> runChunked(const std::vector<std::byte>& stream,
                                    const std::vector<size_t>& cuts) {
  DotFramer f;
  std::vector<std::string> got;
  size_t pos = 0;
  auto drain = [&] {
    while (auto m = f.next()) got.emplace_back(asChars(m->view()));
  };
  for (size_t cut : cuts) {
    f.feed(WireView(stream.data() + pos, cut - pos));
    drain();
    pos = cut;
  }
  f.feed(WireView(stream.data() + pos, stream.size() - pos));
  drain();
  EXPECT_EQ(f.buffered(), 0u);
  EXPECT_FALSE(f.midMessage());
  return got;
}

TEST(DotFramer, EveryChunkingOfSeveralMessages) {
  const std::vector<std::string> msgs = {"abc", "", "x", "hi"};
  const auto stream = frameAll(msgs);
  ASSERT_EQ(stream.size(), 2u * 4 + 6);
  // Every subset of the n-1 inner cut points: 2^13 chunkings of a 14-byte stream.
  const size_t inner = stream.size() - 1;
  for (uint32_t mask = 0; mask < (1u << inner); ++mask) {
    std::vector<size_t> cuts;
    for (size_t i = 0; i < inner; ++i)
      if (mask & (1u << i)) cuts.push_back(i + 1);
    ASSERT_EQ(runChunked(stream, cuts), msgs) << "mask " << mask;
  }
}

TEST(DotFramer, ByteByByte) {
  std::vector<std::string> msgs;
  for (int i = 0; i < 20; ++i) msgs.push_back(std::string(static_cast<size_t>(i * 37), 'a' + i));
  const auto stream = frameAll(msgs);
  std::vector<size_t> cuts;
  for (size_t i = 1; i < stream.size(); ++i) cuts.push_back(i);
  EXPECT_EQ(runChunked(stream, cuts), msgs);
}

TEST(DotFramer, SplitPrefix) {
  DotFramer f;
  const std::byte first[] = {std::byte{0x00}};
  f.feed(first);
  EXPECT_FALSE(f.next());
  EXPECT_TRUE(f.midMessage());
  const std::byte rest[] = {std::byte{0x02}, std::byte{'o'}};
  f.feed(rest);
  EXPECT_FALSE(f.next());
  EXPECT_EQ(f.buffered(), 3u);
  const std::byte last[] = {std::byte{'k'}};
  f.feed(last);
  auto m = f.next();
  ASSERT_TRUE(m);
  EXPECT_EQ(asChars(m->view()), "ok");
  EXPECT_FALSE(f.next());
  EXPECT_FALSE(f.midMessage());
}

TEST(DotFramer, ManyInOneFeed) {
  std::vector<std::string> msgs;
  for (int i = 0; i < 500; ++i) msgs.push_back(std::to_string(i));
  const auto stream = frameAll(msgs);
  EXPECT_EQ(runChunked(stream, {}), msgs);
}

// A reader at its limit leaves messages in the framer and asks hasMessage() whether to read more.
TEST(DotFramer, HasMessageSaysWhetherNextReturnsOne) {
  DotFramer f;
  EXPECT_FALSE(f.hasMessage());
  const auto stream = frameAll({"abc", "de"});
  f.feed(WireView(stream).first(1));
  EXPECT_FALSE(f.hasMessage());
  f.feed(WireView(stream).subspan(1, 3));  // the first frame but its last byte
  EXPECT_FALSE(f.hasMessage());
  f.feed(WireView(stream).subspan(4));
  EXPECT_TRUE(f.hasMessage());
  EXPECT_TRUE(f.hasMessage());  // asking consumes nothing
  ASSERT_TRUE(f.next());
  EXPECT_TRUE(f.hasMessage());
  ASSERT_TRUE(f.next());
  EXPECT_FALSE(f.hasMessage());
}

TEST(DotFramer, ZeroLengthFrameIsAnEmptyMessage) {
  DotFramer f;
  const std::byte zero[] = {std::byte{0}, std::byte{0}};
  f.feed(zero);
  auto m = f.next();
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->empty());
  EXPECT_FALSE(f.next());
}

TEST(DotFramer, LargestFrame) {
  const std::string big(65535, 'z');
  const auto stream = frameAll({big});
  EXPECT_EQ(stream[0], std::byte{0xff});
  EXPECT_EQ(stream[1], std::byte{0xff});
  EXPECT_EQ(runChunked(stream, {1, 1000, 65536}), std::vector<std::string>{big});
}

TEST(DotFramer, BufferStaysBoundedWhenAlwaysMidMessage) {
  // Every feed completes one message and starts the next, so the buffer is never empty; without
  // compaction it would grow with the total stream.
  const std::string msg(300, 'm');
  const auto one = frameAll({msg});
  const size_t half = one.size() / 2;
  DotFramer f;
  f.feed(WireView(one.data(), half));
  size_t count = 0;
  for (int i = 0; i < 5000; ++i) {
    f.feed(WireView(one.data() + half, one.size() - half));
    f.feed(WireView(one.data(), half));
    while (auto m = f.next()) {
      ASSERT_EQ(asChars(m->view()), msg);
      ++count;
    }
    ASSERT_TRUE(f.midMessage());
  }
  EXPECT_EQ(count, 5000u);
  EXPECT_LT(f.capacity(), 64u * 1024);
}

TEST(AppendFrame, TooLargeLeavesOutputUntouched) {
  PacketBuffer out;
  ASSERT_TRUE(appendFrame(out, asWire("ab")).has_value());
  const std::string huge(65536, 'h');
  auto r = appendFrame(out, asWire(huge));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::TooLarge);
  EXPECT_EQ(out.size(), 4u);
}

TEST(AppendFrame, AppendsAfterExistingBytes) {
  PacketBuffer out;
  ASSERT_TRUE(appendFrame(out, asWire("a")).has_value());
  ASSERT_TRUE(appendFrame(out, asWire("")).has_value());
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(loadU16(out.data()), 1);
  EXPECT_EQ(out[2], std::byte{'a'});
  EXPECT_EQ(loadU16(out.data() + 3), 0);
}

}  // namespace
}  // namespace dotproxy::tls
