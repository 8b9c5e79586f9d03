#pragma once
// A latency histogram with bounded relative error, in the manner of HdrHistogram: values below 256
// get a bucket each; above, every power of two is split into 128 equal buckets, so a bucket is at
// most 1/128 of its lower bound wide and the value reported for it (its midpoint) is within 0.4% of
// any value it holds. Fixed size (7424 counters, 58 KiB), so recording never allocates. One owner
// per histogram (one per worker thread); merge() sums them at the end.

#include <array>
#include <cstddef>
#include <cstdint>

namespace dotproxy::dotload {

class Histogram {
 public:
  static constexpr unsigned kSubBits = 7;  // 128 buckets per power of two
  static constexpr size_t kBuckets = (64 - kSubBits - 1) * (size_t{1} << kSubBits) + 256;

  void record(uint64_t value) noexcept;
  void merge(const Histogram& other) noexcept;
  void clear() noexcept;

  uint64_t count() const noexcept { return count_; }
  uint64_t min() const noexcept { return count_ ? min_ : 0; }
  uint64_t max() const noexcept { return max_; }
  double mean() const noexcept;
  // The value at quantile q (0..1): the midpoint of the bucket holding the ceil(q*count)-th
  // smallest value, clamped to [min, max]. 0 when empty.
  double quantile(double q) const noexcept;

  // Bucket arithmetic, public for the tests.
  static size_t bucketOf(uint64_t value) noexcept;
  static uint64_t bucketLow(size_t bucket) noexcept;
  static uint64_t bucketWidth(size_t bucket) noexcept;

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  long double sum_ = 0;
};

}  // namespace dotproxy::dotload
