#pragma once
// Per-worker counters in one plain struct. Each worker writes only its own (a relaxed load+store,
// no locked instruction); readers on other threads sum them with relaxed loads. Tests assert on
// these.

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace dotproxy::metrics {

class Counter {
 public:
  void inc(uint64_t n = 1) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// X-macro: one list gives the fields, their names and the sum.
// clang-format off
#define DOTPROXY_COUNTERS(X) \
  X(udp_queries) \
  X(tcp_queries) \
  X(tcp_connections) \
  X(tcp_refused_overload) \
  X(tcp_closed_idle) \
  X(tcp_closed_error) \
  X(dropped_short) \
  X(dropped_response) \
  X(udp_send_failures) \
  X(coalesce_overflow) \
  X(formerr) \
  X(notimp) \
  X(badvers) \
  X(servfail) \
  X(truncated) \
  X(answers) \
  X(coalesced) \
  X(cache_hits) \
  X(cache_misses) \
  X(cache_stale) \
  X(cache_prefetches) \
  X(cache_inserts) \
  X(upstream_queries) \
  X(upstream_answers) \
  X(upstream_retries) \
  X(upstream_timeouts) \
  X(upstream_malformed) \
  X(upstream_mismatch) \
  X(upstream_refused) \
  X(upstream_late) \
  X(upstream_connects) \
  X(upstream_handshakes) \
  X(upstream_resumed) \
  X(upstream_tls_failures) \
  X(upstream_verify_failures) \
  X(upstream_connect_failures) \
  X(upstream_resets) \
  X(upstream_stalls) \
  X(upstream_idle_closes) \
  X(upstream_no_upstream) \
  X(padded_queries)
// clang-format on

struct Counters {
#define DOTPROXY_COUNTER_FIELD(name) Counter name;
  DOTPROXY_COUNTERS(DOTPROXY_COUNTER_FIELD)
#undef DOTPROXY_COUNTER_FIELD
};

struct CounterValue {
  const char* name;
  uint64_t value;
};

// Sums the counters of all workers, in declaration order.
std::vector<CounterValue> sum(const std::vector<const Counters*>& workers);
// {"udp_queries":1,...}
std::string toJson(const std::vector<CounterValue>& values);

}  // namespace dotproxy::metrics
