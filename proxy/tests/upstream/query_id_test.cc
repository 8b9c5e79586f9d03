#include "dotproxy/upstream/query_id.h"

#include <gtest/gtest.h>

#include <bitset>
#include <set>

namespace dotproxy::upstream {
namespace {

// Regression (hardening B10): the pool drew at most 64 random IDs and then used the last one even
// if it was in flight, overwriting a live query. With every ID but one in use the free one must be
// found, every time.
TEST(QueryId, FindsTheOneFreeIdAmong65535InUse) {
  QueryIdSource ids;
  for (uint32_t free_id : {0u, 1u, 4242u, 65534u, 65535u}) {
    for (int round = 0; round < 20; ++round) {
      auto id = pickQueryId(ids, [&](uint16_t x) { return x != free_id; });
      ASSERT_TRUE(id.has_value());
      EXPECT_EQ(*id, free_id);
    }
  }
}

TEST(QueryId, NeverHandsOutALiveIdAsTheConnectionFills) {
  QueryIdSource ids;
  std::bitset<65536> used;
  for (uint32_t n = 0; n < 65536; ++n) {
    auto id = pickQueryId(ids, [&](uint16_t x) { return used.test(x); });
    ASSERT_TRUE(id.has_value()) << "after " << n << " IDs";
    ASSERT_FALSE(used.test(*id)) << "live ID " << *id << " handed out again after " << n;
    used.set(*id);
  }
  EXPECT_FALSE(pickQueryId(ids, [&](uint16_t x) { return used.test(x); }).has_value());
}

TEST(QueryId, DrawsAreSpreadOverTheWholeRange) {
  // Not a randomness test: it catches a source stuck on a few values or on one half.
  QueryIdSource ids;
  std::set<uint16_t> seen;
  bool high = false;
  bool low = false;
  for (int i = 0; i < 1000; ++i) {
    uint16_t id = ids.next();
    seen.insert(id);
    high = high || id >= 0x8000;
    low = low || id < 0x8000;
  }
  EXPECT_GT(seen.size(), 950u);
  EXPECT_TRUE(high && low);
}

}  // namespace
}  // namespace dotproxy::upstream
