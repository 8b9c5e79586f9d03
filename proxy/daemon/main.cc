// dotproxy: plain DNS over UDP and TCP in, DNS-over-TLS out.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "dotproxy/cache/packet_cache.h"
#include "dotproxy/config/settings.h"
#include "dotproxy/metrics/exposition.h"
#include "dotproxy/net/udp.h"
#include "dotproxy/tls/tls.h"
#include "dotproxy/util/log.h"
#include "http_server.h"
#include "metrics_page.h"
#include "worker.h"

namespace dotproxy::daemon {
namespace {

// Thrown at start-up only: the message is printed as is, exit code 1 (2 for configuration).
struct StartupError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string bindError(const net::SocketAddress& a, const char* what, int err) {
  if (err == EACCES && a.port() < 1024) {
    return fmt::format(
        "cannot bind {} {}: permission denied. Ports below 1024 need root or the "
        "CAP_NET_BIND_SERVICE capability (setcap cap_net_bind_service=+ep /path/to/dotproxy); "
        "or choose a higher port with --listen",
        what, a.toString());
  }
  return fmt::format("cannot bind {} {}: {} (check --listen)", what, a.toString(),
                     std::strerror(err));
}

// Port 0: a port that no socket uses, for UDP and TCP alike. The probes bind without SO_REUSEPORT,
// so the kernel cannot hand out a port where another process's SO_REUSEPORT socket (same user)
// already listens; our own sockets, which need SO_REUSEPORT (one per worker), would join that
// socket's group and share its traffic. Returns 0 if no free port turned up.
uint16_t pickFreePort(const net::SocketAddress& addr) {
  for (int tries = 0; tries < 50; ++tries) {
    auto udp = net::udpSocket(addr, false);
    if (!udp) return 0;
    net::SocketAddress a = net::localAddress(udp->get());
    if (net::tcpListener(a, false, 1)) return a.port();  // both probes close on return
  }
  return 0;
}

// One UDP socket and one TCP listener per listen address per worker, all with SO_REUSEPORT. Port 0
// picks a port once (the same for UDP and TCP) and every worker binds that port.
std::vector<std::vector<ListenSockets>> bindAll(std::vector<net::SocketAddress>& listen,
                                                unsigned workers) {
  std::vector<std::vector<ListenSockets>> per_worker(workers);
  for (net::SocketAddress& addr : listen) {
    bool ephemeral = addr.port() == 0;
    for (int tries = 0;; ++tries) {
      std::vector<ListenSockets> sockets;
      net::SocketAddress a = addr;
      if (ephemeral) {
        uint16_t port = pickFreePort(addr);
        if (port == 0) throw StartupError(bindError(a, "UDP+TCP", EADDRINUSE));
        a.setPort(port);
      }
      int err = 0;
      bool retry = false;
      for (unsigned w = 0; w < workers && !retry; ++w) {
        auto udp = net::udpSocket(a, true, &err);
        Result<net::Fd> tcp =
            udp ? net::tcpListener(a, true, 1024, &err) : std::unexpected(udp.error());
        if (!udp || !tcp) {
          // Someone took the probed port between the probe and now: pick another.
          if (ephemeral && err == EADDRINUSE && tries < 20) {
            retry = true;
            break;
          }
          throw StartupError(bindError(a, udp ? "TCP" : "UDP", err));
        }
        net::enablePacketInfo(udp->get(), a);
        sockets.push_back({std::move(*udp), std::move(*tcp)});
      }
      if (retry) continue;
      addr = a;
      for (unsigned w = 0; w < workers; ++w) per_worker[w].push_back(std::move(sockets[w]));
      break;
    }
  }
  return per_worker;
}

int run(int argc, char** argv, const sigset_t& set) {
  int exit_code = 0;
  auto parsed = config::parseCommandLine(argc, argv, &exit_code);
  if (!parsed) return exit_code;
  config::Settings s = std::move(*parsed);
  log::setLevel(s.log_level);
  log::setFormat(s.log_format);
  log::start();

  // TLS client contexts: one per distinct CA file. Upstreams keep pointers into this map.
  std::map<std::string, std::unique_ptr<tls::ClientContext>> contexts;
  std::vector<upstream::Upstream> upstreams;
  try {
    for (const auto& u : s.upstreams) {
      std::string ca = u.ca_file.empty() ? s.ca_file : u.ca_file;
      auto& ctx = contexts[ca];
      if (!ctx)
        ctx = std::make_unique<tls::ClientContext>(tls::ClientContextSettings{ca, s.insecure});
      upstream::Upstream up{
          .address = u.address, .tls_name = u.tls_name, .pins = {}, .ctx = ctx.get()};
      for (const auto& p : u.pins) {
        auto pin = tls::decodePin(p);
        if (!pin) throw config::ConfigError(fmt::format("pin {}: not a base64 SHA-256 digest", p));
        up.pins.push_back(*pin);
      }
      upstreams.push_back(std::move(up));
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "dotproxy: {}\n", e.what());
    return 2;
  }
  if (s.check_config) {
    fmt::print("dotproxy: configuration OK: {} listen address(es), {} upstream(s)\n",
               s.listen.size(), s.upstreams.size());
    return 0;
  }
  if (s.insecure) {
    log::event(log::Level::Warn, "insecure",
               "TLS certificate verification is OFF (--insecure): upstream answers can be forged "
               "by anyone on the path");
  }

  // Every TCP client and upstream connection is a descriptor: take the hard limit, and say so when
  // it is below what the TCP client cap needs.
  if (rlimit lim{}; ::getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
    if (lim.rlim_cur < s.tcp_max_clients + 256) {
      log::event(log::Level::Warn, "fd_limit_low",
                 fmt::format("open file limit {} is low for tcp_max_clients = {}; raise it "
                             "(ulimit -n, LimitNOFILE=) or lower tcp_max_clients",
                             static_cast<unsigned long>(lim.rlim_cur), s.tcp_max_clients),
                 {log::field("limit", static_cast<unsigned long>(lim.rlim_cur)),
                  log::field("tcp_max_clients", s.tcp_max_clients)});
    }
  }

  unsigned workers = s.workers ? s.workers : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::vector<ListenSockets>> sockets;
  try {
    sockets = bindAll(s.listen, workers);
  } catch (const StartupError& e) {
    fmt::print(stderr, "dotproxy: {}\n", e.what());
    return 1;
  }

  net::Fd metrics_fd;
  if (s.metrics) {
    int err = 0;
    auto fd = net::tcpListener(*s.metrics, false, 64, &err);
    if (!fd) {
      fmt::print(stderr, "dotproxy: cannot bind the metrics endpoint {}: {} (check --metrics)\n",
                 s.metrics->toString(), std::strerror(err));
      return 1;
    }
    s.metrics = net::localAddress(fd->get());
    metrics_fd = std::move(*fd);
  }

  cache::PacketCache cache(
      {.max_bytes = s.cache_size,
       .shards = s.cache_shards,
       .min_ttl = s.cache_min_ttl,
       .max_ttl = s.cache_max_ttl,
       .negative_max_ttl = s.cache_negative_max_ttl,
       .servfail_ttl = s.cache_servfail_ttl,
       .stale_max_age = s.serve_stale ? s.stale_max_age : std::chrono::seconds(0),
       .prefetch_percent = s.prefetch_percent});
  std::atomic<unsigned> tcp_clients{0};
  std::vector<std::unique_ptr<Worker>> pool;
  for (unsigned w = 0; w < workers; ++w) {
    pool.push_back(
        std::make_unique<Worker>(s, upstreams, std::move(sockets[w]), tcp_clients, &cache));
  }
  std::vector<std::thread> threads;
  for (auto& w : pool) threads.emplace_back([&w] { w->run(); });

  // /readyz: serving, not draining, and at least one upstream reachable over TLS by some worker
  // (each worker connects to every upstream at start).
  std::atomic<bool> draining{false};
  auto state = [&] {
    ProcessState st{.draining = draining.load(),
                    .workers = workers,
                    .tcp_clients_open = tcp_clients.load(std::memory_order_relaxed)};
    bool upstream = std::ranges::any_of(
        pool, [](const auto& w) { return w->counters().upstreams_usable.get() > 0; });
    st.ready = upstream && !st.draining;
    return st;
  };
  const auto started_at = std::chrono::steady_clock::now();
  std::vector<std::string> upstream_labels;
  for (const auto& u : upstreams) upstream_labels.push_back(u.label());
  std::optional<HttpServer> http;
  if (metrics_fd) {
    http.emplace(std::move(metrics_fd), [&](std::string_view path) -> HttpReply {
      if (path == "/metrics") {
        std::vector<const metrics::Counters*> all;
        for (auto& w : pool) all.push_back(&w->counters());
        return {.content_type = std::string(metrics::Exposition::kContentType),
                .body = renderMetrics(all, upstream_labels, cache.stats(), state())};
      }
      if (path == "/" || path == "/index.html") {
        return {.content_type = "text/html; charset=utf-8", .body = std::string(statusPageHtml())};
      }
      if (path == "/status.json") {
        std::vector<const metrics::Counters*> all;
        for (auto& w : pool) all.push_back(&w->counters());
        std::chrono::duration<double> up = std::chrono::steady_clock::now() - started_at;
        return {.content_type = "application/json",
                .body = renderStatusJson(all, upstream_labels, cache.stats(), state(), up.count())};
      }
      if (path == "/healthz") return {.body = "ok\n"};
      if (path == "/readyz") {
        ProcessState st = state();
        if (st.ready) return {.body = "ready\n"};
        return {.status = 503,
                .body = st.draining ? "draining\n" : "not ready: no upstream reachable yet\n"};
      }
      return {.status = 404, .body = "not found: try /, /metrics, /healthz or /readyz\n"};
    });
  }

  std::string listen_json, listen_text;
  for (size_t i = 0; i < s.listen.size(); ++i) {
    listen_json += fmt::format("{}\"{}\"", i ? "," : "", s.listen[i].toString());
    listen_text += (i ? " " : "") + s.listen[i].toString();
  }
  std::string upstream_text;
  for (const auto& u : upstreams) upstream_text += " " + u.label();
  log::event(log::Level::Info, "started",
             fmt::format("dotproxy {} serving UDP+TCP on {} with {} worker(s), forwarding over TLS "
                         "to{}",
                         DOTPROXY_VERSION, listen_text, workers, upstream_text),
             {log::field("version", DOTPROXY_VERSION), log::field("listen", listen_text),
              log::field("workers", workers),
              log::field("upstreams",
                         std::string_view(upstream_text).substr(upstream_text.empty() ? 0 : 1)),
              log::field("metrics", s.metrics ? s.metrics->toString() : std::string())});
  // The readiness line scripts and tests wait for (never a fixed sleep).
  std::string metrics_json =
      s.metrics ? fmt::format(",\"metrics\":\"{}\"", s.metrics->toString()) : std::string();
  fmt::print("{{\"ready\":true,\"listen\":[{}],\"workers\":{}{}}}\n", listen_json, workers,
             metrics_json);
  std::fflush(stdout);

  auto stats = [&] {
    std::vector<const metrics::Counters*> all;
    for (auto& w : pool) all.push_back(&w->counters());
    auto values = metrics::sum(all);
    cache::CacheStats cs = cache.stats();
    values.push_back({"cache_entries", cs.entries});
    values.push_back({"cache_bytes", cs.bytes});
    values.push_back({"cache_evictions", cs.evictions});
    values.push_back({"log_lines_dropped", log::droppedLines()});
    fmt::print("{{\"stats\":{}}}\n", metrics::toJson(values));
    std::fflush(stdout);
  };
  bool hup_logged = false;
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGUSR1) {
      stats();
      continue;
    }
    if (sig == SIGHUP) {
      // No reload yet: a SIGHUP (a closed terminal, `systemctl reload`, a log rotation script)
      // must not end the daemon, which its default action would do. Logged once per process.
      if (!hup_logged) {
        log::event(log::Level::Warn, "sighup_ignored",
                   "SIGHUP ignored: configuration reload is not supported yet; restart to apply "
                   "changes (further SIGHUPs are ignored silently)");
        hup_logged = true;
      }
      continue;
    }
    log::event(log::Level::Info, "draining",
               fmt::format("signal {}: draining (up to {} ms)", sig, s.shutdown_grace.count()),
               {log::field("signal", sig), log::field("grace_ms", s.shutdown_grace.count())});
    draining = true;
    break;
  }
  for (auto& w : pool) w->drain();
  for (auto& t : threads) t.join();
  stats();
  log::event(log::Level::Info, "stopped", "stopped");
  return 0;
}

}  // namespace
}  // namespace dotproxy::daemon

int main(int argc, char** argv) {
  // First thing: the signals the daemon handles are blocked in every thread (threads inherit the
  // mask) and taken synchronously by sigwait in run(). One arriving while the configuration loads
  // or the sockets bind stays pending until then, instead of taking its default action (death).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  try {
    return dotproxy::daemon::run(argc, argv, set);
  } catch (const std::exception& e) {
    fmt::print(stderr, "dotproxy: fatal: {}\n", e.what());
    return 1;
  }
}
