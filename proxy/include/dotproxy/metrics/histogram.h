#pragma once
// A latency histogram with fixed bucket bounds (Prometheus `le` buckets), written by one worker
// thread (relaxed load+store, no locked instruction) and read by any thread, like Counter. Workers
// keep their own; a scrape sums them (HistogramSnapshot::add).

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace dotproxy::metrics {

// Upper bounds in microseconds: 50 us .. 5 s; the last bucket (+Inf) is implicit.
inline constexpr std::array<uint64_t, 15> kLatencyBucketsUs = {
    50,     100,    250,     500,     1'000,   2'500,     5'000,    10'000,
    25'000, 50'000, 100'000, 250'000, 500'000, 1'000'000, 5'000'000};

struct HistogramSnapshot {
  std::array<uint64_t, kLatencyBucketsUs.size() + 1> buckets{};  // not cumulative; last is +Inf
  uint64_t count = 0;  // the sum of the buckets, so that +Inf always equals count
  uint64_t sum_ns = 0;
  void add(const HistogramSnapshot& other) noexcept;
};

class Histogram {
 public:
  void observe(std::chrono::nanoseconds d) noexcept {
    uint64_t ns = d.count() > 0 ? static_cast<uint64_t>(d.count()) : 0;
    size_t i = 0;  // the first bucket whose bound is >= d (`le`)
    while (i < kLatencyBucketsUs.size() && ns > kLatencyBucketsUs[i] * 1'000) ++i;
    bump(buckets_[i], 1);
    bump(sum_ns_, ns);
  }
  HistogramSnapshot snapshot() const noexcept;

 private:
  static void bump(std::atomic<uint64_t>& a, uint64_t n) noexcept {
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::array<std::atomic<uint64_t>, kLatencyBucketsUs.size() + 1> buckets_{};
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace dotproxy::metrics
