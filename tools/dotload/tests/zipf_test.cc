#include "zipf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <vector>

namespace dotproxy::dotload {
namespace {

TEST(Zipf, ProbabilitiesFollowThePowerLaw) {
  ZipfSampler z(1000, 1.0);
  double h = 0;
  for (int k = 1; k <= 1000; ++k) h += 1.0 / k;
  EXPECT_NEAR(z.probability(0), 1.0 / h, 1e-12);
  EXPECT_NEAR(z.probability(9), 1.0 / (10 * h), 1e-12);
  EXPECT_NEAR(z.probability(0) / z.probability(1), 2.0, 1e-9);
  EXPECT_EQ(z.probability(1000), 0.0);
}

TEST(Zipf, DrawsMatchTheDistribution) {
  ZipfSampler z(100, 1.2);
  Rng rng(42);
  constexpr int kDraws = 1'000'000;
  std::vector<int> hits(100);
  for (int i = 0; i < kDraws; ++i) {
    uint32_t k = z.draw(rng.uniform());
    ASSERT_LT(k, 100u);
    ++hits[k];
  }
  // Each of the first ranks within 5 standard deviations of its expected count, and a chi-square
  // over all ranks below a bound far in the tail of chi2(99) (p < 1e-6 at about 170).
  double chi2 = 0;
  for (uint32_t k = 0; k < 100; ++k) {
    double expected = z.probability(k) * kDraws;
    if (k < 10) {
      EXPECT_NEAR(hits[k], expected, 5 * std::sqrt(expected)) << "rank " << k;
    }
    chi2 += (hits[k] - expected) * (hits[k] - expected) / expected;
  }
  EXPECT_LT(chi2, 170.0);
}

TEST(Zipf, ExponentZeroIsUniformAndOneNameAlwaysDrawsIt) {
  ZipfSampler uniform(4, 0.0);
  for (uint32_t k = 0; k < 4; ++k) EXPECT_NEAR(uniform.probability(k), 0.25, 1e-12);
  ZipfSampler one(1, 1.0);
  EXPECT_EQ(one.draw(0.0), 0u);
  EXPECT_EQ(one.draw(0.999999), 0u);
}

TEST(Zipf, Mix64IsABijectionOnASample) {
  std::set<uint64_t> seen;
  for (uint64_t i = 0; i < 100000; ++i) seen.insert(mix64(i));
  EXPECT_EQ(seen.size(), 100000u);
}

}  // namespace
}  // namespace dotproxy::dotload
