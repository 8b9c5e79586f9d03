#pragma once
// Zipf popularity over ranks 0..n-1: rank k is drawn with probability proportional to
// 1/(k+1)^exponent. The cumulative distribution is computed once (8 bytes per rank) and a draw
// is a binary search on it, so drawing never allocates.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dotproxy::dotload {

class ZipfSampler {
 public:
  ZipfSampler(uint32_t n, double exponent);
  uint32_t size() const noexcept { return static_cast<uint32_t>(cdf_.size()); }
  // u uniform in [0, 1): the rank drawn.
  uint32_t draw(double u) const noexcept;
  // The probability of rank k (for tests and reports).
  double probability(uint32_t k) const noexcept;

 private:
  std::vector<double> cdf_;  // cdf_[k] = P(rank <= k); the last is 1
};

// A small, fast generator (xoshiro256**, seeded through splitmix64): one per worker thread.
class Rng {
 public:
  explicit Rng(uint64_t seed) noexcept;
  uint64_t next() noexcept;
  double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t s_[4];
};

// splitmix64's finalizer: a bijection on 64-bit values (distinct inputs give distinct outputs).
uint64_t mix64(uint64_t x) noexcept;

}  // namespace dotproxy::dotload
