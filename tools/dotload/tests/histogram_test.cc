#include "histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

namespace dotproxy::dotload {
namespace {

TEST(Histogram, BucketsTileTheRangeWithoutGaps) {
  for (size_t b = 0; b + 1 < Histogram::kBuckets; ++b) {
    ASSERT_EQ(Histogram::bucketLow(b) + Histogram::bucketWidth(b), Histogram::bucketLow(b + 1))
        << "bucket " << b;
  }
  EXPECT_EQ(Histogram::bucketOf(UINT64_MAX), Histogram::kBuckets - 1);
}

TEST(Histogram, EveryValueLandsInItsBucketWithinOnePercent) {
  std::mt19937_64 rng(7);
  std::vector<uint64_t> values = {0, 1, 255, 256, 257, 511, 512, 1000, 123456789, UINT64_MAX};
  for (int i = 0; i < 200000; ++i) values.push_back(rng() >> (rng() % 64));
  for (uint64_t v : values) {
    size_t b = Histogram::bucketOf(v);
    ASSERT_LT(b, Histogram::kBuckets);
    uint64_t low = Histogram::bucketLow(b);
    uint64_t width = Histogram::bucketWidth(b);
    ASSERT_GE(v, low);
    ASSERT_LE(v - low, width - 1);
    // The bucket's width relative to the smallest value it holds: under 1%.
    if (low > 0) {
      ASSERT_LT(static_cast<double>(width - 1) / static_cast<double>(low), 0.01) << v;
    }
  }
}

TEST(Histogram, QuantilesOfAKnownDistributionAreWithinOnePercent) {
  auto h = std::make_unique<Histogram>();
  std::vector<uint64_t> values;
  std::mt19937_64 rng(11);
  std::lognormal_distribution<double> dist(11.0, 1.5);  // ~60 us median, long tail, in ns
  for (int i = 0; i < 100000; ++i) {
    auto v = static_cast<uint64_t>(dist(rng));
    values.push_back(v);
    h->record(v);
  }
  std::sort(values.begin(), values.end());
  for (double q : {0.0, 0.5, 0.9, 0.99, 0.999, 1.0}) {
    size_t rank = std::max<size_t>(1, static_cast<size_t>(std::ceil(q * values.size())));
    double exact = static_cast<double>(values[rank - 1]);
    EXPECT_NEAR(h->quantile(q), exact, exact * 0.01 + 0.5) << "q=" << q;
  }
  EXPECT_EQ(h->count(), values.size());
  EXPECT_EQ(h->min(), values.front());
  EXPECT_EQ(h->max(), values.back());
  double sum = 0;
  for (auto v : values) sum += static_cast<double>(v);
  EXPECT_NEAR(h->mean(), sum / values.size(), 1e-6 * sum / values.size());
}

TEST(Histogram, SmallValuesAreExact) {
  auto h = std::make_unique<Histogram>();
  for (uint64_t v = 1; v <= 100; ++v) h->record(v);
  EXPECT_EQ(h->quantile(0.5), 50.0);
  EXPECT_EQ(h->quantile(0.99), 99.0);
  EXPECT_EQ(h->quantile(1.0), 100.0);
  EXPECT_EQ(h->min(), 1u);
}

TEST(Histogram, MergeEqualsRecordingEverythingInOne) {
  auto a = std::make_unique<Histogram>();
  auto b = std::make_unique<Histogram>();
  auto all = std::make_unique<Histogram>();
  std::mt19937_64 rng(3);
  for (int i = 0; i < 50000; ++i) {
    uint64_t v = rng() % 10'000'000;
    (i % 3 ? *a : *b).record(v);
    all->record(v);
  }
  a->merge(*b);
  EXPECT_EQ(a->count(), all->count());
  EXPECT_EQ(a->min(), all->min());
  EXPECT_EQ(a->max(), all->max());
  for (double q : {0.1, 0.5, 0.9, 0.99, 0.999}) EXPECT_EQ(a->quantile(q), all->quantile(q));
}

TEST(Histogram, EmptyReportsZeros) {
  auto h = std::make_unique<Histogram>();
  EXPECT_EQ(h->count(), 0u);
  EXPECT_EQ(h->quantile(0.99), 0.0);
  EXPECT_EQ(h->min(), 0u);
  EXPECT_EQ(h->mean(), 0.0);
}

}  // namespace
}  // namespace dotproxy::dotload
