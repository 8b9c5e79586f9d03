#include <gtest/gtest.h>

#include <set>

#include "dotproxy/dns/types.h"
#include "load.h"

namespace dotproxy::dotload {
namespace {

TEST(QueryPicker, FileOrderCyclesThroughEveryQuery) {
  auto specs = parseQueryFile("a.test\nb.test\nc.test\n", "q");
  auto set = QuerySet::fromSpecs(*specs, WireOptions{});
  QueryPicker p(QuerySource{.set = &*set}, 0);
  uint32_t first = p.next().index;
  for (uint32_t i = 1; i < 7; ++i) EXPECT_EQ(p.next().index, (first + i) % 3);
}

TEST(QueryPicker, RandomNamesNeverRepeatWithinOrAcrossThreads) {
  auto zone = dns::Name::fromText("test.");
  auto set = QuerySet::randomNames(*zone, dns::type::A, WireOptions{});
  std::set<uint64_t> seen;
  for (unsigned thread = 0; thread < 4; ++thread) {
    QueryPicker p(QuerySource{.set = &*set}, thread);
    for (int i = 0; i < 20000; ++i) {
      auto pick = p.next();
      EXPECT_EQ(pick.index, 0u);
      seen.insert(pick.unique);
    }
  }
  EXPECT_EQ(seen.size(), 80000u);
}

TEST(QueryPicker, ZipfPicksFavourTheFirstRanks) {
  auto zone = dns::Name::fromText("test.");
  auto set = QuerySet::fromSpecs(rankedNames(50, *zone, dns::type::A), WireOptions{});
  ZipfSampler zipf(50, 1.0);
  QueryPicker p(QuerySource{.set = &*set, .zipf = &zipf}, 0);
  int rank0 = 0, rank49 = 0;
  for (int i = 0; i < 100000; ++i) {
    uint32_t k = p.next().index;
    ASSERT_LT(k, 50u);
    rank0 += k == 0;
    rank49 += k == 49;
  }
  // P(0) = 50 P(49): with 100000 draws, rank 0 about 22,000 times, rank 49 about 450.
  EXPECT_GT(rank0, 20 * rank49);
}

}  // namespace
}  // namespace dotproxy::dotload
