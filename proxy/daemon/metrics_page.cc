#include "metrics_page.h"

#include <fmt/format.h>

#include <algorithm>
#include <string_view>
#include <utility>

#include "dotproxy/metrics/exposition.h"
#include "dotproxy/util/json.h"
#include "dotproxy/util/log.h"

namespace dotproxy::daemon {

namespace {

using metrics::Exposition;

// Where each plain counter goes: a family, and the label that tells it from its siblings.
struct Mapping {
  std::string_view counter;
  std::string_view family;
  std::string_view label;  // "name=value", or empty
  std::string_view help;   // of the family; given on its first counter
};

// clang-format off
constexpr Mapping kMappings[] = {
    {"udp_queries", "dotproxy_queries_total", "transport=udp", "Queries received, by client transport."},
    {"tcp_queries", "dotproxy_queries_total", "transport=tcp", ""},
    {"answers", "dotproxy_answered_total", "", "Queries answered with an answer (cache, stale or upstream), not an error."},
    {"formerr", "dotproxy_malformed_total", "reply=formerr", "Malformed or unsupported queries, by the error code they got."},
    {"notimp", "dotproxy_malformed_total", "reply=notimp", ""},
    {"badvers", "dotproxy_malformed_total", "reply=badvers", ""},
    {"dropped_short", "dotproxy_dropped_total", "reason=short", "Queries dropped without an answer, by reason."},
    {"dropped_response", "dotproxy_dropped_total", "reason=response", ""},
    {"udp_send_failures", "dotproxy_dropped_total", "reason=send_failure", ""},
    {"coalesce_overflow", "dotproxy_dropped_total", "reason=coalesce_overflow", ""},
    {"servfail", "dotproxy_servfail_total", "", "SERVFAIL answers made by dotproxy (upstreams failed or timed out)."},
    {"truncated", "dotproxy_truncated_total", "", "UDP answers sent truncated (TC=1) to fit the client's size."},
    {"coalesced", "dotproxy_coalesced_total", "", "Queries that joined an identical question already in flight."},
    {"tcp_connections", "dotproxy_tcp_connections_total", "", "TCP client connections accepted."},
    {"tcp_refused_overload", "dotproxy_tcp_closed_total", "reason=overload", "TCP client connections closed, by reason (client: the client closed first)."},
    {"tcp_closed_idle", "dotproxy_tcp_closed_total", "reason=idle", ""},
    {"tcp_closed_error", "dotproxy_tcp_closed_total", "reason=error", ""},
    {"tcp_closed_client", "dotproxy_tcp_closed_total", "reason=client", ""},
    {"tcp_closed_slow", "dotproxy_tcp_closed_total", "reason=slow", ""},
    {"tcp_paused", "dotproxy_tcp_paused_total", "", "Times a TCP client's queries were left unread at tcp_max_inflight or tcp_max_output."},
    {"cache_hits", "dotproxy_cache_lookups_total", "result=hit", "Cache lookups, by result."},
    {"cache_misses", "dotproxy_cache_lookups_total", "result=miss", ""},
    {"cache_stale", "dotproxy_cache_lookups_total", "result=stale", ""},
    {"cache_prefetches", "dotproxy_cache_prefetches_total", "", "Popular entries refreshed ahead of expiry."},
    {"cache_inserts", "dotproxy_cache_inserts_total", "", "Answers inserted into the cache."},
    {"upstream_queries", "dotproxy_upstream_queries_total", "", "Queries sent upstream (every attempt)."},
    {"upstream_answers", "dotproxy_upstream_answers_total", "", "Valid upstream answers received."},
    {"upstream_retries", "dotproxy_upstream_retries_total", "", "Queries retried on another connection or upstream."},
    {"upstream_timeouts", "dotproxy_upstream_failures_total", "cause=timeout", "Upstream failures, by cause."},
    {"upstream_malformed", "dotproxy_upstream_failures_total", "cause=malformed", ""},
    {"upstream_mismatch", "dotproxy_upstream_failures_total", "cause=mismatch", ""},
    {"upstream_tls_failures", "dotproxy_upstream_failures_total", "cause=tls", ""},
    {"upstream_verify_failures", "dotproxy_upstream_failures_total", "cause=verify", ""},
    {"upstream_connect_failures", "dotproxy_upstream_failures_total", "cause=connect", ""},
    {"upstream_resets", "dotproxy_upstream_failures_total", "cause=reset", ""},
    {"upstream_stalls", "dotproxy_upstream_failures_total", "cause=stall", ""},
    {"upstream_refused", "dotproxy_upstream_failures_total", "cause=refused", ""},
    {"upstream_no_upstream", "dotproxy_upstream_failures_total", "cause=no_upstream", ""},
    {"upstream_late", "dotproxy_upstream_late_answers_total", "", "Upstream answers that came after their query had been given up."},
    {"upstream_connects", "dotproxy_upstream_connects_total", "", "Upstream TCP connections opened."},
    {"upstream_handshakes", "dotproxy_upstream_handshakes_total", "", "Upstream TLS handshakes completed."},
    {"upstream_resumed", "dotproxy_upstream_resumptions_total", "", "Upstream TLS handshakes that resumed a session."},
    {"upstream_idle_closes", "dotproxy_upstream_idle_closes_total", "", "Idle upstream connections closed."},
    {"padded_queries", "dotproxy_upstream_padded_queries_total", "", "Upstream queries padded (RFC 8467)."},
};
// clang-format on

const Mapping* mappingOf(std::string_view counter) {
  for (const Mapping& m : kMappings) {
    if (m.counter == counter) return &m;
  }
  return nullptr;
}

void rcodeName(uint16_t rcode, std::string& out) {
  static constexpr std::string_view kNames[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
                                                "NOTIMP",  "REFUSED", "YXDOMAIN", "YXRRSET",
                                                "NXRRSET", "NOTAUTH", "NOTZONE",  "DSOTYPENI"};
  out = rcode < std::size(kNames) ? std::string(kNames[rcode]) : fmt::format("RCODE{}", rcode);
}

using UC = metrics::UpstreamCounters;

// The per-upstream families, labelled by the upstream's "address:port#name".
void renderUpstreams(Exposition& e, const std::vector<const metrics::Counters*>& workers,
                     const std::vector<std::string>& upstreams) {
  auto total = [&](size_t u, metrics::Counter UC::* field) {
    uint64_t v = 0;
    for (const auto* w : workers) {
      if (u < w->upstream_count) v += (w->upstreams[u].*field).get();
    }
    return v;
  };
  auto family = [&](std::string_view name, std::string_view help, metrics::Counter UC::* field) {
    e.family(name, "counter", help);
    for (size_t u = 0; u < upstreams.size(); ++u) {
      e.sample(name, {{"upstream", upstreams[u]}}, total(u, field));
    }
  };
  family("dotproxy_upstream_server_queries_total", "Queries sent to this upstream (attempts).",
         &UC::queries);
  family("dotproxy_upstream_server_answers_total", "Valid answers from this upstream.",
         &UC::answers);
  e.family("dotproxy_upstream_server_failures_total", "counter",
           "This upstream's failures, by cause.");
  static constexpr std::pair<std::string_view, metrics::Counter UC::*> kCauses[] = {
      {"timeout", &UC::timeouts},
      {"malformed", &UC::malformed},
      {"mismatch", &UC::mismatch},
      {"tls", &UC::tls_failures},
      {"verify", &UC::verify_failures},
      {"connect", &UC::connect_failures},
      {"reset", &UC::resets},
      {"refused", &UC::refused},
      {"stall", &UC::stalls}};
  for (size_t u = 0; u < upstreams.size(); ++u) {
    for (const auto& [cause, field] : kCauses) {
      e.sample("dotproxy_upstream_server_failures_total",
               {{"upstream", upstreams[u]}, {"cause", cause}}, total(u, field));
    }
  }
  family("dotproxy_upstream_server_connects_total", "TCP connections opened to this upstream.",
         &UC::connects);
  family("dotproxy_upstream_server_handshakes_total",
         "TLS handshakes completed with this upstream.", &UC::handshakes);
  family("dotproxy_upstream_server_resumptions_total",
         "Handshakes with this upstream that resumed a TLS session.", &UC::resumed);
  family("dotproxy_upstream_server_idle_closes_total", "Idle connections to this upstream closed.",
         &UC::idle_closes);
  family("dotproxy_upstream_server_closes_total",
         "Ready connections to this upstream closed, for any reason.", &UC::closes);
  e.family("dotproxy_upstream_server_connection_age_seconds_total", "counter",
           "Summed age of this upstream's closed connections (mean age = this / closes).");
  for (size_t u = 0; u < upstreams.size(); ++u) {
    e.sample("dotproxy_upstream_server_connection_age_seconds_total", {{"upstream", upstreams[u]}},
             static_cast<double>(total(u, &UC::lifetime_ms)) / 1000.0);
  }
  e.family("dotproxy_upstream_server_connections_open", "gauge",
           "TLS connections to this upstream ready now, all workers.");
  for (size_t u = 0; u < upstreams.size(); ++u) {
    int64_t open = 0;
    for (const auto* w : workers) {
      if (u < w->upstream_count) open += w->upstreams[u].connections_open.get();
    }
    e.sample("dotproxy_upstream_server_connections_open", {{"upstream", upstreams[u]}},
             static_cast<uint64_t>(std::max<int64_t>(open, 0)));
  }
  e.family("dotproxy_upstream_server_up", "gauge",
           "1 when some worker's last connection attempt to this upstream worked.");
  for (size_t u = 0; u < upstreams.size(); ++u) {
    bool up = false;
    for (const auto* w : workers) {
      if (u < w->upstream_count && w->upstreams[u].usable.get() > 0) up = true;
    }
    e.sample("dotproxy_upstream_server_up", {{"upstream", upstreams[u]}}, uint64_t{up});
  }
}

}  // namespace

std::string renderMetrics(const std::vector<const metrics::Counters*>& workers,
                          const std::vector<std::string>& upstreams, const cache::CacheStats& cache,
                          const ProcessState& state) {
  Exposition e;
  e.family("dotproxy_build_info", "gauge", "Always 1; the version is a label.");
  e.sample("dotproxy_build_info", {{"version", DOTPROXY_VERSION}}, uint64_t{1});
  e.family("dotproxy_ready", "gauge", "1 when /readyz answers 200.");
  e.sample("dotproxy_ready", {}, uint64_t{state.ready});
  e.family("dotproxy_draining", "gauge", "1 after SIGTERM, while in-flight queries finish.");
  e.sample("dotproxy_draining", {}, uint64_t{state.draining});
  e.family("dotproxy_workers", "gauge", "Worker threads.");
  e.sample("dotproxy_workers", {}, uint64_t{state.workers});
  e.family("dotproxy_tcp_clients_open", "gauge", "TCP client connections open now.");
  e.sample("dotproxy_tcp_clients_open", {}, uint64_t{state.tcp_clients_open});
  e.family("dotproxy_log_lines_dropped_total", "counter",
           "Log lines dropped: stderr too slow to take them, or over the rate limit.");
  e.sample("dotproxy_log_lines_dropped_total", {}, log::droppedLines());

  // The plain counters, grouped into their families (kMappings lists siblings together).
  auto values = metrics::sum(workers);
  std::string_view current;
  for (const Mapping& m : kMappings) {
    uint64_t v = 0;
    for (const auto& cv : values) {
      if (cv.name == m.counter) v = cv.value;
    }
    if (m.family != current) {
      e.family(m.family, "counter", m.help);
      current = m.family;
    }
    if (m.label.empty()) {
      e.sample(m.family, {}, v);
    } else {
      size_t eq = m.label.find('=');
      e.sample(m.family, {{m.label.substr(0, eq), m.label.substr(eq + 1)}}, v);
    }
  }
  // A counter added to metrics::Counters but not to kMappings is still exported, under its name.
  for (const auto& cv : values) {
    if (mappingOf(cv.name)) continue;
    std::string name = fmt::format("dotproxy_{}_total", cv.name);
    e.family(name, "counter", "See the README's metrics reference.");
    e.sample(name, {}, cv.value);
  }

  auto sumArray = [&](auto member, size_t i) {
    uint64_t total = 0;
    for (const auto* w : workers) total += (w->*member)[i].get();
    return total;
  };
  e.family("dotproxy_queries_by_type_total", "counter",
           "Queries by QTYPE (a fixed set of names; any other type is \"other\").");
  for (size_t i = 0; i <= metrics::kQtypes.size(); ++i) {
    std::string_view name = i < metrics::kQtypes.size() ? metrics::kQtypes[i].second : "other";
    e.sample("dotproxy_queries_by_type_total", {{"qtype", name}},
             sumArray(&metrics::Counters::queries_by_qtype, i));
  }
  e.family("dotproxy_responses_total", "counter", "Replies sent, by header RCODE.");
  std::string rcode;
  for (uint16_t i = 0; i < 16; ++i) {
    uint64_t v = sumArray(&metrics::Counters::responses_by_rcode, i);
    if (v == 0 && i != 0 && i != 2 && i != 3) continue;  // keep the common ones always present
    rcodeName(i, rcode);
    e.sample("dotproxy_responses_total", {{"rcode", rcode}}, v);
  }

  auto sumHistogram = [&](auto get) {
    metrics::HistogramSnapshot s;
    for (const auto* w : workers) s.add(get(*w).snapshot());
    return s;
  };
  e.family("dotproxy_answer_duration_seconds", "histogram",
           "From query received to reply sent, by where the answer came from.");
  metrics::HistogramSnapshot by_source[metrics::kAnswerSources.size()];
  for (size_t i = 0; i < metrics::kAnswerSources.size(); ++i) {
    by_source[i] = sumHistogram([i](const metrics::Counters& c) -> const metrics::Histogram& {
      return c.answer_latency[i];
    });
    e.histogram("dotproxy_answer_duration_seconds", {{"source", metrics::kAnswerSources[i]}},
                by_source[i]);
  }
  e.family("dotproxy_answers_total", "counter", "Replies sent, by where the answer came from.");
  for (size_t i = 0; i < metrics::kAnswerSources.size(); ++i) {
    e.sample("dotproxy_answers_total", {{"source", metrics::kAnswerSources[i]}},
             by_source[i].count);
  }
  e.family("dotproxy_upstream_duration_seconds", "histogram",
           "From a query written to an upstream connection to its valid answer.");
  e.histogram("dotproxy_upstream_duration_seconds", {},
              sumHistogram([](const metrics::Counters& c) -> const metrics::Histogram& {
                return c.upstream_latency;
              }));
  e.family("dotproxy_upstream_handshake_duration_seconds", "histogram",
           "From TCP connect to a ready TLS session, per upstream connection.");
  e.histogram("dotproxy_upstream_handshake_duration_seconds", {},
              sumHistogram([](const metrics::Counters& c) -> const metrics::Histogram& {
                return c.handshake_latency;
              }));

  int64_t open = 0, usable = 0;
  for (const auto* w : workers) {
    open += w->upstream_connections_open.get();
    usable = std::max(usable, w->upstreams_usable.get());
  }
  e.family("dotproxy_upstream_connections_open", "gauge",
           "Upstream TLS connections ready now, all workers.");
  e.sample("dotproxy_upstream_connections_open", {},
           static_cast<uint64_t>(std::max<int64_t>(open, 0)));
  e.family("dotproxy_upstreams_usable", "gauge",
           "Upstreams whose last connection attempt worked (the best worker's view).");
  e.sample("dotproxy_upstreams_usable", {}, static_cast<uint64_t>(std::max<int64_t>(usable, 0)));

  int64_t inflight = 0;
  for (const auto* w : workers) inflight += w->upstream_inflight.get();
  e.family("dotproxy_upstream_inflight", "gauge", "Queries waiting for an upstream answer now.");
  e.sample("dotproxy_upstream_inflight", {}, static_cast<uint64_t>(std::max<int64_t>(inflight, 0)));
  renderUpstreams(e, workers, upstreams);

  e.family("dotproxy_cache_entries", "gauge", "Answers in the cache.");
  e.sample("dotproxy_cache_entries", {}, uint64_t{cache.entries});
  e.family("dotproxy_cache_bytes", "gauge", "Bytes the cache holds (entries and index).");
  e.sample("dotproxy_cache_bytes", {}, uint64_t{cache.bytes});
  e.family("dotproxy_cache_evictions_total", "counter", "Entries evicted to make room.");
  e.sample("dotproxy_cache_evictions_total", {}, cache.evictions);
  uint64_t hits = 0, misses = 0;
  for (const auto& cv : values) {
    if (std::string_view(cv.name) == "cache_hits") hits = cv.value;
    if (std::string_view(cv.name) == "cache_misses") misses = cv.value;
  }
  e.family("dotproxy_cache_hit_ratio", "gauge", "Hits over hits plus misses since start.");
  e.sample("dotproxy_cache_hit_ratio", {},
           hits + misses ? static_cast<double>(hits) / static_cast<double>(hits + misses) : 0.0);
  return e.text();
}

std::string renderStatusJson(const std::vector<const metrics::Counters*>& workers,
                             const std::vector<std::string>& upstreams,
                             const cache::CacheStats& cache, const ProcessState& state,
                             double uptime_seconds) {
  auto values = metrics::sum(workers);
  auto get = [&](std::string_view name) -> uint64_t {
    for (const auto& cv : values) {
      if (cv.name == name) return cv.value;
    }
    return 0;
  };
  std::string out = fmt::format(
      "{{\"version\":{},\"uptime_s\":{:.3f},\"ready\":{},\"draining\":{},\"workers\":{},"
      "\"queries\":{},\"tcp_clients_open\":{},\"servfail\":{},\"dropped\":{},",
      jsonString(DOTPROXY_VERSION), uptime_seconds, state.ready, state.draining, state.workers,
      get("udp_queries") + get("tcp_queries"), state.tcp_clients_open, get("servfail"),
      get("dropped_short") + get("dropped_response") + get("udp_send_failures") +
          get("coalesce_overflow"));
  metrics::HistogramSnapshot latency;
  out += "\"answers\":{";
  for (size_t i = 0; i < metrics::kAnswerSources.size(); ++i) {
    metrics::HistogramSnapshot h;
    for (const auto* w : workers) h.add(w->answer_latency[i].snapshot());
    latency.add(h);
    out += fmt::format("{}\"{}\":{}", i ? "," : "", metrics::kAnswerSources[i], h.count);
  }
  out += fmt::format(
      "}},\"cache\":{{\"hits\":{},\"misses\":{},\"stale\":{},\"entries\":{},\"bytes\":{},"
      "\"evictions\":{}}},",
      get("cache_hits"), get("cache_misses"), get("cache_stale"), cache.entries, cache.bytes,
      cache.evictions);
  out += "\"latency\":{\"bounds_us\":[";
  for (size_t i = 0; i < metrics::kLatencyBucketsUs.size(); ++i) {
    out += fmt::format("{}{}", i ? "," : "", metrics::kLatencyBucketsUs[i]);
  }
  out += "],\"buckets\":[";
  for (size_t i = 0; i < latency.buckets.size(); ++i) {
    out += fmt::format("{}{}", i ? "," : "", latency.buckets[i]);
  }
  out += "]},\"upstreams\":[";
  for (size_t u = 0; u < upstreams.size(); ++u) {
    uint64_t queries = 0, answers = 0, failures = 0, handshakes = 0, resumed = 0;
    int64_t open = 0;
    bool up = false;
    for (const auto* w : workers) {
      if (u >= w->upstream_count) continue;
      const metrics::UpstreamCounters& c = w->upstreams[u];
      queries += c.queries.get();
      answers += c.answers.get();
      failures += c.timeouts.get() + c.malformed.get() + c.mismatch.get() + c.tls_failures.get() +
                  c.verify_failures.get() + c.connect_failures.get() + c.resets.get() +
                  c.stalls.get() + c.refused.get();
      handshakes += c.handshakes.get();
      resumed += c.resumed.get();
      open += c.connections_open.get();
      up = up || c.usable.get() > 0;
    }
    out += fmt::format(
        "{}{{\"name\":{},\"up\":{},\"connections\":{},\"queries\":{},\"answers\":{},"
        "\"failures\":{},\"handshakes\":{},\"resumed\":{}}}",
        u ? "," : "", jsonString(upstreams[u]), up, std::max<int64_t>(open, 0), queries, answers,
        failures, handshakes, resumed);
  }
  out += "]}";
  return out;
}

}  // namespace dotproxy::daemon
