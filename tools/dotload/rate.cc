#include "rate.h"

#include <algorithm>
#include <cmath>

namespace dotproxy::dotload {

int64_t RateScheduler::timeOf(uint64_t k) const noexcept {
  return start_ns_ + static_cast<int64_t>(std::floor(static_cast<double>(k) * 1e9 / rate_));
}

uint64_t RateScheduler::due(int64_t now_ns, uint64_t max) const noexcept {
  if (now_ns < start_ns_) return 0;
  // Queries 0..floor(elapsed * rate) are due (query 0 at start).
  double elapsed = static_cast<double>(now_ns - start_ns_) / 1e9;
  auto due_total = static_cast<uint64_t>(std::floor(elapsed * rate_)) + 1;
  // Floating rounding must not make a query due before its own timeOf().
  while (due_total > taken_ && timeOf(due_total - 1) > now_ns) --due_total;
  if (due_total <= taken_) return 0;
  return std::min(due_total - taken_, max);
}

}  // namespace dotproxy::dotload
