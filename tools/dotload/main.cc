// dotload: a DNS load generator over UDP, TCP and DoT. Prints a summary (or one JSON object with
// --json) at the end. Exit 0: the run completed, losses or not; 1: the target was unusable
// (refused, handshake failed, nothing answered), with one line on stderr; 2: usage error.

#include <fmt/format.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "load.h"
#include "options.h"
#include "report.h"

namespace dotproxy::dotload {
namespace {

std::atomic<bool>* g_stop = nullptr;

extern "C" void onSignal(int) {
  if (g_stop) g_stop->store(true, std::memory_order_relaxed);
}

void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set);
}

int run(const Options& o) {
  // Queries, built once.
  std::optional<QuerySet> set;
  std::optional<ZipfSampler> zipf;
  std::expected<QuerySet, std::string> built = std::unexpected(std::string());
  if (!o.query_file.empty()) {
    auto specs = readQueryFile(o.query_file);
    if (!specs) {
      std::fprintf(stderr, "dotload: %s\n", specs.error().c_str());
      return 2;
    }
    built = QuerySet::fromSpecs(*specs, o.wire);
  } else if (!o.random_zone.empty()) {
    auto zone = dns::Name::fromText(o.random_zone);
    if (!zone) {
      std::fprintf(stderr, "dotload: --random-names: bad zone '%s'\n", o.random_zone.c_str());
      return 2;
    }
    built = QuerySet::randomNames(*zone, o.qtype, o.wire);
  } else if (o.zipf_names > 0) {
    auto zone = dns::Name::fromText(o.zone);
    if (!zone) {
      std::fprintf(stderr, "dotload: --zone: bad zone '%s'\n", o.zone.c_str());
      return 2;
    }
    auto names = rankedNames(o.zipf_names, *zone, o.qtype);
    if (names.size() != o.zipf_names) {
      std::fprintf(stderr, "dotload: --zone '%s' is too long for the --zipf names\n",
                   o.zone.c_str());
      return 2;
    }
    built = QuerySet::fromSpecs(names, o.wire);
    zipf.emplace(o.zipf_names, o.zipf_exponent);
  } else {
    auto name = dns::Name::fromText("a." + o.zone);
    if (!name) {
      std::fprintf(stderr, "dotload: --zone: bad zone '%s'\n", o.zone.c_str());
      return 2;
    }
    built = QuerySet::fromSpecs({QuerySpec{.name = *name, .type = o.qtype}}, o.wire);
  }
  if (!built) {
    std::fprintf(stderr, "dotload: %s\n", built.error().c_str());
    return 2;
  }
  set.emplace(std::move(*built));

  std::optional<tls::ClientContext> tls_ctx;
  if (o.run.transport == Transport::Tls) {
    try {
      tls_ctx.emplace(tls::ClientContextSettings{.ca_file = o.ca_file, .insecure = o.insecure});
    } catch (const std::runtime_error& e) {
      std::fprintf(stderr, "dotload: TLS set-up: %s\n", e.what());
      return 2;
    }
  }

  const RunSettings& s = o.run;
  Shared shared;
  g_stop = &shared.stop;
  struct sigaction sa{};
  sa.sa_handler = onSignal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  std::vector<Published> published(s.threads);
  std::vector<WorkerResult> results(s.threads);
  std::vector<WorkerContext> contexts(s.threads);
  std::mutex done_mutex;
  std::condition_variable done_cv;
  unsigned done = 0;

  int64_t start = nowNs() + 1'000'000;  // a millisecond for the threads to start
  int64_t end =
      s.duration.count() > 0 ? start + s.duration.count() : std::numeric_limits<int64_t>::max();
  for (unsigned t = 0; t < s.threads; ++t) {
    WorkerContext& c = contexts[t];
    c.index = t;
    c.settings = &s;
    c.source = QuerySource{.set = &*set, .zipf = zipf ? &*zipf : nullptr};
    c.tls = tls_ctx ? &*tls_ctx : nullptr;
    c.shared = &shared;
    c.published = &published[t];
    c.queries = s.queries ? s.queries / s.threads + (t < s.queries % s.threads ? 1 : 0) : 0;
    c.qps = s.qps / s.threads;
    c.start_ns = start;
    c.end_ns = end;
  }
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < s.threads; ++t) {
    threads.emplace_back([&, t] {
      if (!s.cpus.empty()) pin(s.cpus[t % s.cpus.size()]);
      // The default 50 us timer slack would let every scheduled send (open loop) and every wake-up
      // come up to 50 us late, and that lateness counts as the target's latency.
      ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
      results[t] =
          s.transport == Transport::Udp ? runUdpWorker(contexts[t]) : runStreamWorker(contexts[t]);
      std::lock_guard lock(done_mutex);
      ++done;
      done_cv.notify_all();
    });
  }

  bool progress = o.progress.value_or(::isatty(STDERR_FILENO) == 1);
  uint64_t last_answered = 0;
  int64_t last_ns = start;
  {
    std::unique_lock lock(done_mutex);
    while (done < s.threads) {
      done_cv.wait_for(lock, std::chrono::seconds(1));
      if (done == s.threads || !progress) continue;
      uint64_t sent = 0, answered = 0, lost = 0;
      for (auto& p : published) {
        sent += p.sent.load(std::memory_order_relaxed);
        answered += p.answered.load(std::memory_order_relaxed);
        lost += p.lost.load(std::memory_order_relaxed);
      }
      int64_t now = nowNs();
      double rate = now > last_ns ? static_cast<double>(answered - last_answered) * 1e9 /
                                        static_cast<double>(now - last_ns)
                                  : 0.0;
      std::fprintf(stderr, "dotload: %6.1fs sent %llu answered %llu lost %llu  %.0f q/s\n",
                   static_cast<double>(now - start) / 1e9, static_cast<unsigned long long>(sent),
                   static_cast<unsigned long long>(answered), static_cast<unsigned long long>(lost),
                   rate);
      last_answered = answered;
      last_ns = now;
    }
  }
  for (auto& t : threads) t.join();
  double duration_s = static_cast<double>(nowNs() - start) / 1e9;
  g_stop = nullptr;

  Report report{.transport = s.transport, .duration_s = duration_s};
  auto latency = std::make_unique<Histogram>();
  for (auto& r : results) {
    report.counters.add(r.counters);
    latency->merge(r.latency);
  }
  report.latency = latency.get();
  if (o.json) {
    std::printf("%s\n", reportJson(report).c_str());
  } else {
    std::printf("%s", reportText(report).c_str());
  }
  std::fflush(stdout);

  if (auto fatal = shared.fatal()) {
    std::fprintf(stderr, "dotload: %s\n", fatal->c_str());
    return 1;
  }
  const Counters& c = report.counters;
  if (c.answered == 0 && c.sent > 0) {
    std::string why = c.malformed + c.mismatch > 0
                          ? fmt::format("{} answers, none usable ({} malformed, {} mismatched)",
                                        c.malformed + c.mismatch, c.malformed, c.mismatch)
                          : fmt::format("{} queries sent, none answered within {} ms", c.sent,
                                        s.timeout.count() / 1'000'000);
    std::fprintf(stderr, "dotload: %s: %s\n", s.server.toString().c_str(), why.c_str());
    return 1;
  }
  if (c.sent == 0 && !shared.stop.load()) {
    std::fprintf(stderr, "dotload: %s: no query could be sent\n", s.server.toString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace dotproxy::dotload

int main(int argc, char** argv) {
  using namespace dotproxy::dotload;
  auto parsed = parseOptions(argc, argv);
  if (!parsed.help.empty()) {
    std::fputs(parsed.help.c_str(), stdout);
    return 0;
  }
  if (!parsed.options) {
    std::fprintf(stderr, "dotload: %s\n", parsed.error.c_str());
    return 2;
  }
  return run(*parsed.options);
}
