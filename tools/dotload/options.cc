#include "options.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>

#include "dotproxy/dns/types.h"

namespace dotproxy::dotload {
namespace {

template <class T>
bool parseNumber(std::string_view text, T& out) {
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && p == text.data() + text.size();
}

std::optional<net::SocketAddress> resolve(const std::string& host, uint16_t port,
                                          std::string& error) {
  if (auto a = net::SocketAddress::parse(host, port)) {
    a->setPort(port);
    return *a;
  }
  if (host == "localhost") return resolve("127.0.0.1", port, error);
  error = fmt::format("-s: not an IP address: '{}'", host);
  return std::nullopt;
}

}  // namespace

std::optional<std::vector<int>> parseCpuList(const std::string& text) {
  std::vector<int> out;
  std::string_view rest = text;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    size_t dash = item.find('-');
    int lo = 0, hi = 0;
    if (dash == std::string_view::npos) {
      if (!parseNumber(item, lo)) return std::nullopt;
      hi = lo;
    } else if (!parseNumber(item.substr(0, dash), lo) || !parseNumber(item.substr(dash + 1), hi)) {
      return std::nullopt;
    }
    if (lo < 0 || hi < lo || hi > 4095) return std::nullopt;
    for (int c = lo; c <= hi; ++c) out.push_back(c);
  }
  if (out.empty()) return std::nullopt;
  return out;
}

ParseOutcome parseOptions(int argc, char** argv) {
  Options o;
  std::string server = "127.0.0.1", mode = "udp", zipf, cpus, type = "A";
  int port = -1;
  double seconds = 0, timeout_ms = 2000;
  std::vector<std::string> pins;
  bool progress = false, no_progress = false, no_edns = false, edns = false;
  unsigned connections = 0;

  CLI::App app{
      "dotload: DNS load generator over UDP, TCP and DNS-over-TLS (closed loop with -q, open loop "
      "with -Q)",
      "dotload"};
  app.add_option("-s,--server", server, "server address (IP literal; default 127.0.0.1)");
  app.add_option("-p,--port", port, "server port (default 53, or 853 with -m tls)")
      ->check(CLI::Range(1, 65535));
  app.add_option("-m,--mode", mode, "transport: udp, tcp or tls (default udp)")
      ->check(CLI::IsMember({"udp", "tcp", "tls"}));
  app.add_option("-T,--threads", o.run.threads, "worker threads (default 1)")
      ->check(CLI::Range(1u, 256u));
  app.add_option("-c,--connections", connections,
                 "sockets (udp) or connections (tcp, tls) per thread (default 4 for udp, 1 else)")
      ->check(CLI::Range(1u, 10000u));
  app.add_option("-q,--outstanding", o.run.outstanding,
                 "closed loop: queries in flight per socket/connection (default 100)")
      ->check(CLI::Range(1u, 65536u));
  app.add_option("-Q,--qps", o.run.qps, "open loop: queries per second in total")
      ->check(CLI::PositiveNumber);
  app.add_option("-l,--seconds", seconds, "run this long (default 10 s unless -n is given)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("-n,--queries", o.run.queries, "send this many queries in total, then stop");
  app.add_option("-d,--data", o.query_file, "query file, dnsperf's format: `name TYPE` per line");
  app.add_option("--random-names", o.random_zone,
                 "a unique name under ZONE for every query (every query a cache miss)");
  app.add_option("--zipf", zipf, "N[,EXPONENT]: N names under --zone, Zipf popularity (1.0)");
  app.add_option("--zone", o.zone, "zone of the --zipf names (default test.)");
  app.add_option("--type", type, "type of generated queries (default A)");
  app.add_option("--reconnect-every", o.run.reconnect_every,
                 "tcp/tls: a new connection after every N queries");
  app.add_option("--tls-name", o.run.tls_name, "TLS: name verified and sent as SNI (default -s)");
  app.add_option("--ca-file", o.ca_file, "TLS: PEM bundle to verify against (default system)");
  app.add_option("--pin", pins, "TLS: base64 SHA-256 of the server's SPKI (repeatable)");
  app.add_flag("--insecure", o.insecure, "TLS: do not verify the certificate");
  app.add_option("--timeout-ms", timeout_ms, "a query unanswered this long is lost (default 2000)")
      ->check(CLI::Range(1.0, 3'600'000.0));
  app.add_flag("--json", o.json, "print one JSON object with the results on stdout");
  app.add_flag("--progress", progress, "a progress line each second on stderr (default on a tty)");
  app.add_flag("--no-progress", no_progress, "no progress line");
  app.add_flag("--edns", edns, "queries carry EDNS, udp size 1232 (the default)");
  app.add_flag("--no-edns", no_edns, "queries without EDNS");
  app.add_flag("--do", o.wire.do_bit, "set the DO bit (implies EDNS)");
  app.add_option("--cpu", cpus, "pin thread i to the i-th CPU of LIST (\"1\", \"0,2-3\")");
  app.add_flag("--spin", o.run.spin,
               "udp: busy-poll while queries are in flight (one core per thread, fewer wake-ups)");
  app.add_option("--batch", o.run.batch, "datagrams per sendmmsg/recvmmsg (default 64)")
      ->check(CLI::Range(1, 1024));
  bool no_gso = false;
  app.add_flag("--no-gso", no_gso,
               "udp: one datagram per message (default: equal-sized queries share one with "
               "UDP_SEGMENT)");

  ParseOutcome out;
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    out.help = app.help();
    return out;
  } catch (const CLI::ParseError& e) {
    out.error = e.what();
    return out;
  }
  auto usage = [&](std::string msg) {
    out.error = std::move(msg);
    return out;
  };

  o.run.transport = mode == "udp"   ? Transport::Udp
                    : mode == "tcp" ? Transport::Tcp
                                    : Transport::Tls;
  o.run.connections = connections ? connections : (o.run.transport == Transport::Udp ? 4 : 1);
  uint16_t p = port > 0 ? static_cast<uint16_t>(port)
                        : (o.run.transport == Transport::Tls ? uint16_t{853} : uint16_t{53});
  std::string error;
  auto addr = resolve(server, p, error);
  if (!addr) return usage(error);
  o.run.server = *addr;
  o.run.server_text = server;

  int sources = !o.query_file.empty() + !o.random_zone.empty() + !zipf.empty();
  if (sources > 1) return usage("-d, --random-names and --zipf exclude each other");
  if (!zipf.empty()) {
    std::string_view z = zipf;
    size_t comma = z.find(',');
    if (!parseNumber(z.substr(0, comma), o.zipf_names) || o.zipf_names == 0 ||
        o.zipf_names > kMaxZipfNames) {
      return usage(fmt::format("--zipf: expected N[,EXPONENT] with N in 1..{}, got '{}'",
                               kMaxZipfNames, zipf));
    }
    if (comma != std::string_view::npos) {
      std::string exp(z.substr(comma + 1));
      char* end = nullptr;
      o.zipf_exponent = std::strtod(exp.c_str(), &end);
      if (exp.empty() || *end != '\0' || !std::isfinite(o.zipf_exponent) || o.zipf_exponent < 0 ||
          o.zipf_exponent > 10) {
        return usage(fmt::format("--zipf: exponent must be a number in 0..10, got '{}'", exp));
      }
    }
  }
  auto t = dns::parseType(type);
  if (!t) return usage(fmt::format("--type: unknown type '{}'", type));
  o.qtype = *t;
  if (no_edns && (edns || o.wire.do_bit)) return usage("--no-edns contradicts --edns and --do");
  o.wire.edns = !no_edns;
  if (progress && no_progress) return usage("--progress contradicts --no-progress");
  if (progress) o.progress = true;
  if (no_progress) o.progress = false;
  o.run.gso = !no_gso;
  if (o.run.qps > 0 && o.run.qps < o.run.threads) {
    return usage("-Q: at least one query per second per thread");
  }
  if (o.run.reconnect_every > 0 && o.run.transport == Transport::Udp) {
    return usage("--reconnect-every: only with -m tcp or -m tls");
  }
  if (o.run.transport != Transport::Tls &&
      (!o.run.tls_name.empty() || !o.ca_file.empty() || !pins.empty() || o.insecure)) {
    return usage("--tls-name, --ca-file, --pin and --insecure need -m tls");
  }
  for (const auto& pin : pins) {
    auto decoded = tls::decodePin(pin);
    if (!decoded) return usage(fmt::format("--pin: not a base64 SHA-256 digest: '{}'", pin));
    o.run.pins.push_back(*decoded);
  }
  if (!cpus.empty()) {
    auto list = parseCpuList(cpus);
    if (!list) return usage(fmt::format("--cpu: expected a list like 1 or 0,2-3, got '{}'", cpus));
    o.run.cpus = *list;
  }
  // CLI11's number checks let "inf" and "nan" through, and a double too large for the int64
  // nanoseconds below is undefined behaviour in the conversion: range-check every double here.
  if (!std::isfinite(seconds) || seconds < 0 || seconds > kMaxSeconds) {
    return usage(fmt::format("-l: expected seconds in 0..{}, got {}", kMaxSeconds, seconds));
  }
  if (!std::isfinite(o.run.qps) || o.run.qps > kMaxQps) {
    return usage(
        fmt::format("-Q: expected queries per second in 1..{}, got {}", kMaxQps, o.run.qps));
  }
  if (!std::isfinite(timeout_ms)) return usage("--timeout-ms: expected a finite number");
  if (seconds == 0 && o.run.queries == 0) seconds = 10;
  o.run.duration = std::chrono::nanoseconds(static_cast<int64_t>(seconds * 1e9));
  o.run.timeout = std::chrono::nanoseconds(static_cast<int64_t>(timeout_ms * 1e6));
  if (o.run.queries > 0 && o.run.queries < uint64_t{o.run.threads}) {
    return usage("-n: at least one query per thread");
  }
  out.options = std::move(o);
  return out;
}

}  // namespace dotproxy::dotload
