#include "rate.h"

#include <gtest/gtest.h>

namespace dotproxy::dotload {
namespace {

constexpr int64_t kSec = 1'000'000'000;

TEST(RateScheduler, QueriesAreDueAtTheirScheduledTimes) {
  RateScheduler s(1000.0, 5 * kSec);  // one every millisecond from t=5s
  EXPECT_EQ(s.due(4 * kSec, 100), 0u);
  EXPECT_EQ(s.due(5 * kSec, 100), 1u);  // query 0 at the start
  EXPECT_EQ(s.due(5 * kSec + 999'999, 100), 1u);
  EXPECT_EQ(s.due(5 * kSec + 1'000'000, 100), 2u);
  EXPECT_EQ(s.take(2), 0u);
  EXPECT_EQ(s.nextTime(), 5 * kSec + 2'000'000);
  EXPECT_EQ(s.due(5 * kSec + 1'500'000, 100), 0u);
  EXPECT_EQ(s.timeOf(10), 5 * kSec + 10'000'000);
}

TEST(RateScheduler, ALateWorkerCatchesUpInBatchesAndKeepsTheScheduledTimes) {
  RateScheduler s(2000.0, 0);
  // A stall of one second: 2001 queries are due; taken in batches of at most 64.
  uint64_t total = 0;
  while (uint64_t n = s.due(kSec, 64)) {
    EXPECT_LE(n, 64u);
    uint64_t first = s.take(n);
    EXPECT_EQ(first, total);
    EXPECT_LE(s.timeOf(first + n - 1), kSec);  // latency counts from here, not from now
    total += n;
  }
  EXPECT_EQ(total, 2001u);
}

TEST(RateScheduler, CountOverAnIntervalMatchesTheRate) {
  RateScheduler s(12345.0, 0);
  for (int64_t t = 0; t < 2 * kSec; t += 997'000) s.take(s.due(t, 1 << 20));
  // Taken in steps up to just before 2 s: about 2 s worth, never more than were due.
  EXPECT_NEAR(static_cast<double>(s.taken()), 2 * 12345.0, 30.0);
  // At 2 s exactly, queries 0 .. 2 * 12345 are due.
  EXPECT_EQ(s.due(2 * kSec, 1 << 20) + s.taken(), 2 * 12345u + 1);
}

}  // namespace
}  // namespace dotproxy::dotload
