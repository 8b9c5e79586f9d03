#include "histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace dotproxy::dotload {

namespace {
constexpr uint64_t kSub = uint64_t{1} << Histogram::kSubBits;
}

size_t Histogram::bucketOf(uint64_t value) noexcept {
  if (value < 2 * kSub) return static_cast<size_t>(value);
  unsigned msb = 63 - static_cast<unsigned>(std::countl_zero(value));
  unsigned shift = msb - kSubBits;
  // (value >> shift) is in [kSub, 2 kSub): the top bit and kSubBits bits below it.
  return static_cast<size_t>(shift * kSub + (value >> shift));
}

uint64_t Histogram::bucketLow(size_t bucket) noexcept {
  if (bucket < 2 * kSub) return bucket;
  uint64_t shift = bucket / kSub - 1;
  uint64_t mantissa = bucket - shift * kSub;
  return mantissa << shift;
}

uint64_t Histogram::bucketWidth(size_t bucket) noexcept {
  if (bucket < 2 * kSub) return 1;
  return uint64_t{1} << (bucket / kSub - 1);
}

void Histogram::record(uint64_t value) noexcept {
  ++counts_[bucketOf(value)];
  ++count_;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += static_cast<long double>(value);
}

void Histogram::merge(const Histogram& other) noexcept {
  for (size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

void Histogram::clear() noexcept {
  *this = Histogram();
}

double Histogram::mean() const noexcept {
  return count_ ? static_cast<double>(sum_ / static_cast<long double>(count_)) : 0.0;
}

double Histogram::quantile(double q) const noexcept {
  if (count_ == 0) return 0.0;
  q = std::clamp(q, 0.0, 1.0);
  auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      double mid =
          static_cast<double>(bucketLow(i)) + static_cast<double>(bucketWidth(i) - 1) / 2.0;
      return std::clamp(mid, static_cast<double>(min_), static_cast<double>(max_));
    }
  }
  return static_cast<double>(max_);
}

}  // namespace dotproxy::dotload
