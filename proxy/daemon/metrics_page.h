#pragma once
// /metrics: the workers' counters, summed at scrape time, in the Prometheus text format. Every
// counter of metrics::Counters appears; the README lists them all.

#include <string>
#include <string_view>
#include <vector>

#include "dotproxy/cache/packet_cache.h"
#include "dotproxy/metrics/counters.h"

namespace dotproxy::daemon {

struct ProcessState {
  bool ready = false;     // what /readyz says
  bool draining = false;  // SIGTERM received
  unsigned workers = 0;
  unsigned tcp_clients_open = 0;
};

// `upstreams`: the upstreams' labels, in the configured order (as every worker's pool has them).
std::string renderMetrics(const std::vector<const metrics::Counters*>& workers,
                          const std::vector<std::string>& upstreams, const cache::CacheStats& cache,
                          const ProcessState& state);

// /status.json, what the status page draws: totals since start (the page takes differences between
// polls), the answer latency histogram, and each upstream's state.
std::string renderStatusJson(const std::vector<const metrics::Counters*>& workers,
                             const std::vector<std::string>& upstreams,
                             const cache::CacheStats& cache, const ProcessState& state,
                             double uptime_seconds);

// The status page at /: one HTML document with its CSS and JavaScript inline (embedded at build).
std::string_view statusPageHtml();

}  // namespace dotproxy::daemon
