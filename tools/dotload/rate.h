#pragma once
// Open-loop pacing: the k-th query (k = 0, 1, ...) is due at start + k / rate, whatever the answers
// do. A worker asks due(now) for the queries whose time has come and sends them as one batch; each
// query's latency is measured from its scheduled time, not from when it actually left, so a
// stalled target is charged for the wait it caused (no coordinated omission).

#include <cstddef>
#include <cstdint>

namespace dotproxy::dotload {

class RateScheduler {
 public:
  // rate in queries per second (> 0); times in nanoseconds on any monotonic clock.
  RateScheduler(double rate, int64_t start_ns) noexcept : rate_(rate), start_ns_(start_ns) {}

  // How many queries are due at now_ns and not yet taken, at most `max`.
  uint64_t due(int64_t now_ns, uint64_t max) const noexcept;
  // The scheduled time of the next query not yet taken.
  int64_t nextTime() const noexcept { return timeOf(taken_); }
  int64_t timeOf(uint64_t k) const noexcept;
  // Marks the next n queries as taken (sent or given up); returns the index of the first.
  uint64_t take(uint64_t n) noexcept {
    uint64_t first = taken_;
    taken_ += n;
    return first;
  }
  uint64_t taken() const noexcept { return taken_; }

 private:
  double rate_;
  int64_t start_ns_;
  uint64_t taken_ = 0;
};

}  // namespace dotproxy::dotload
