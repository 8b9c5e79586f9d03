#pragma once
// Per-worker counters in one plain struct. Each worker writes only its own (a relaxed load+store,
// no locked instruction); readers on other threads sum them with relaxed loads. Tests assert on
// these.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dotproxy/metrics/histogram.h"

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

// A level that goes up and down (open connections), written by one thread like Counter.
class Gauge {
 public:
  void add(int64_t n) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  int64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// Where an answer came from, for the latency histograms.
enum class AnswerSource : uint8_t { Cache, Upstream, Stale, Local };
inline constexpr std::array<std::string_view, 4> kAnswerSources = {"cache", "upstream", "stale",
                                                                   "local"};

// Query types counted by name; every other type counts as "other" (a bounded label set).
inline constexpr std::array<std::pair<uint16_t, std::string_view>, 15> kQtypes = {{{1, "A"},
                                                                                   {2, "NS"},
                                                                                   {5, "CNAME"},
                                                                                   {6, "SOA"},
                                                                                   {12, "PTR"},
                                                                                   {15, "MX"},
                                                                                   {16, "TXT"},
                                                                                   {28, "AAAA"},
                                                                                   {33, "SRV"},
                                                                                   {43, "DS"},
                                                                                   {48, "DNSKEY"},
                                                                                   {64, "SVCB"},
                                                                                   {65, "HTTPS"},
                                                                                   {255, "ANY"},
                                                                                   {257, "CAA"}}};
constexpr size_t qtypeSlot(uint16_t qtype) noexcept {
  for (size_t i = 0; i < kQtypes.size(); ++i) {
    if (kQtypes[i].first == qtype) return i;
  }
  return kQtypes.size();
}

// X-macro: one list gives the fields, their names and the sum.
// clang-format off
#define DOTPROXY_COUNTERS(X) \
  X(udp_queries) \
  X(tcp_queries) \
  X(tcp_connections) \
  X(tcp_refused_overload) \
  X(tcp_closed_idle) \
  X(tcp_closed_client) \
  X(tcp_closed_error) \
  X(tcp_closed_slow) \
  X(tcp_paused) \
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

// One upstream's share of the upstream counters, per worker (labelled `upstream` on /metrics).
struct UpstreamCounters {
  Counter queries, answers, timeouts, malformed, mismatch, tls_failures, verify_failures,
      connect_failures, resets, stalls, refused, connects, handshakes, resumed, idle_closes;
  Counter closes;          // TLS-ready connections closed, for any reason
  Counter lifetime_ms;     // their summed age at close: mean age = lifetime_ms / closes
  Gauge connections_open;  // TLS ready now
  Gauge usable;            // 1 when the last connection attempt worked
};

struct Counters {
#define DOTPROXY_COUNTER_FIELD(name) Counter name;
  DOTPROXY_COUNTERS(DOTPROXY_COUNTER_FIELD)
#undef DOTPROXY_COUNTER_FIELD

  std::array<Counter, 16> responses_by_rcode;                // the header RCODE of every reply sent
  std::array<Counter, kQtypes.size() + 1> queries_by_qtype;  // last: any other type
  std::array<Histogram, kAnswerSources.size()> answer_latency;  // query in -> reply out
  Histogram upstream_latency;                                   // query sent -> answer, per attempt
  Histogram handshake_latency;                                  // TCP connect -> TLS ready
  Gauge upstream_connections_open;                              // TLS ready, not yet closed
  Gauge upstreams_usable;   // upstreams whose last connection attempt worked
  Gauge upstream_inflight;  // queries waiting for an upstream answer
  // Per upstream, in the configured order; sized once by upstream::Pool before the worker runs.
  std::unique_ptr<UpstreamCounters[]> upstreams;
  size_t upstream_count = 0;
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
