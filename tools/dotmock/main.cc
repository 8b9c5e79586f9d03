// dotmock: a mock DoT (and plain UDP/TCP) upstream with synthetic zones and scripted faults, for
// tests, benchmarks and offline demos. Prints one JSON "ready" line when it listens, one JSON
// "stats" line when it exits (SIGTERM/SIGINT, exit 0). Bad flags: one line on stderr, exit 2.

#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dotproxy/net/event_loop.h"
#include "dotproxy/net/socket.h"
#include "dotproxy/tls/tls.h"
#include "dotproxy/util/json.h"
#include "dotproxy/util/log.h"
#include "faults.h"
#include "mock_server.h"
#include "responder.h"

namespace dotproxy::dotmock {
namespace {

struct Options {
  std::string dot = "127.0.0.1:0";
  std::string udp;
  std::string tcp;
  std::string cert_file;
  std::string key_file;
  std::vector<std::string> cert_names = {"dotmock.test"};
  bool expired = false;
  std::string write_ca;
  std::vector<std::string> zones = {"test."};
  std::string nxdomain_label = "nx";
  size_t txt_size = 32;
  uint32_t ttl = 300;
  uint32_t negative_ttl = 60;
  uint32_t delay_ms = 0;
  uint32_t idle_timeout_ms = 30'000;
  std::string log_level = "warn";
  std::string faults_file;
};

// A flag value that does not parse: reported as "--flag: why", exit 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

net::SocketAddress parseAddress(std::string_view flag, const std::string& text,
                                uint16_t default_port) {
  auto addr = net::SocketAddress::parse(text, default_port);
  if (!addr) throw UsageError(fmt::format("{}: not an IP address[:port]: '{}'", flag, text));
  return *addr;
}

void printLine(const std::string& line) {
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// The fault script from --faults; nullopt and a message if it cannot be read or parsed.
std::optional<FaultScript> loadFaults(const std::string& path, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = fmt::format("{}: cannot read", path);
    return std::nullopt;
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string why;
  auto script = parseFaults(text, &why);
  if (!script) *error = fmt::format("{}: {}", path, why);
  return script;
}

// SIGTERM/SIGINT through a signalfd, so the loop stops between events; SIGHUP calls on_hup.
class SignalWatcher final : public net::EventLoop::Handler {
 public:
  SignalWatcher(net::EventLoop& loop, const sigset_t& signals, std::function<void()> on_hup)
      : loop_(loop), on_hup_(std::move(on_hup)) {
    fd_.reset(::signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!fd_) throw std::runtime_error("signalfd failed");
    if (!loop_.add(fd_.get(), EPOLLIN, this)) throw std::runtime_error("epoll_ctl (signalfd)");
  }
  ~SignalWatcher() { loop_.remove(fd_.get()); }

  void onEvents(uint32_t /*epoll_events*/) override {
    signalfd_siginfo info;
    while (::read(fd_.get(), &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
      if (info.ssi_signo == SIGHUP) {
        on_hup_();
        continue;
      }
      log::info("dotmock: signal {}, stopping", info.ssi_signo);
      loop_.stop();
    }
  }

 private:
  net::EventLoop& loop_;
  std::function<void()> on_hup_;
  net::Fd fd_;
};

tls::ServerContext makeTlsContext(const Options& o) {
  if (!o.cert_file.empty()) return tls::ServerContext::fromFiles(o.cert_file, o.key_file);
  tls::ServerCertificateSettings cert{.names = o.cert_names};
  if (o.expired) {
    cert.not_before = std::chrono::hours(-48);
    cert.not_after = std::chrono::hours(-24);
  }
  return tls::ServerContext::selfSigned(cert);
}

int run(const Options& o) {
  log::Level level;
  if (!log::parseLevel(o.log_level, level)) {
    throw UsageError(fmt::format("--log-level: unknown level '{}'", o.log_level));
  }
  log::setLevel(level);
  if (o.cert_file.empty() != o.key_file.empty()) {
    throw UsageError("--cert and --key go together");
  }

  ServerSettings server_settings{
      .dot = parseAddress("--dot", o.dot, 853),
      .idle_timeout = std::chrono::milliseconds(o.idle_timeout_ms),
  };
  if (!o.udp.empty()) server_settings.udp = parseAddress("--udp", o.udp, 53);
  if (!o.tcp.empty()) server_settings.tcp = parseAddress("--tcp", o.tcp, 53);

  ResponderSettings responder_settings{
      .nxdomain_label = o.nxdomain_label,
      .txt_size = o.txt_size,
      .ttl = o.ttl,
      .negative_ttl = o.negative_ttl,
      .delay = std::chrono::milliseconds(o.delay_ms),
  };
  for (const std::string& z : o.zones) {
    auto name = dns::Name::fromText(z);
    if (!name) throw UsageError(fmt::format("--zone: not a domain name: '{}'", z));
    responder_settings.zones.push_back(*name);
  }

  // Signals are blocked before anything else exists, then read from the loop.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a peer's reset must be an error value, not a signal

  std::optional<FaultScript> faults;
  if (!o.faults_file.empty()) {
    std::string error;
    faults = loadFaults(o.faults_file, &error);
    if (!faults) throw UsageError(fmt::format("--faults: {}", error));
  }

  tls::ServerContext tls = makeTlsContext(o);
  // With a fault script: the certificates of the expired-cert and wrong-name-cert faults, in the
  // CA file too, so that a client fails on the expiry or the name and not on an unknown issuer.
  std::optional<tls::ServerContext> expired_tls, wrong_name_tls;
  if (faults) {
    expired_tls.emplace(tls::ServerContext::selfSigned({.names = o.cert_names,
                                                        .not_before = std::chrono::hours(-48),
                                                        .not_after = std::chrono::hours(-24)}));
    wrong_name_tls.emplace(tls::ServerContext::selfSigned({.names = {"wrong-name.invalid"}}));
  }
  if (!o.write_ca.empty()) {
    std::ofstream out(o.write_ca, std::ios::binary | std::ios::trunc);
    out << tls.certificatePem();
    if (expired_tls) out << expired_tls->certificatePem() << wrong_name_tls->certificatePem();
    out.close();
    if (!out) throw std::runtime_error(fmt::format("--write-ca {}: cannot write", o.write_ca));
  }

  net::EventLoop loop;
  Responder responder(std::move(responder_settings));
  MockServer server(loop, tls, responder, server_settings);
  if (faults) {
    server.setFaults(std::move(*faults));
    server.setFaultCertificates(&*expired_tls, &*wrong_name_tls);
  }
  // SIGHUP: read the fault script again; {"faults":N} when loaded, else the error (old script
  // kept). Tests wait for this line.
  SignalWatcher watcher(loop, signals, [&] {
    if (o.faults_file.empty()) {
      printLine(R"({"faults":null,"error":"no --faults file"})");
      return;
    }
    std::string error;
    auto script = loadFaults(o.faults_file, &error);
    if (!script) {
      printLine(fmt::format("{{\"faults\":null,\"error\":{}}}", jsonString(error)));
      return;
    }
    const size_t n = script->rules().size();
    server.setFaults(std::move(*script));
    printLine(fmt::format("{{\"faults\":{}}}", n));
  });

  std::string ready =
      fmt::format("{{\"ready\":true,\"dot\":{}", jsonString(server.dotAddress().toString()));
  if (auto a = server.udpAddress()) ready += fmt::format(",\"udp\":{}", jsonString(a->toString()));
  if (auto a = server.tcpAddress()) ready += fmt::format(",\"tcp\":{}", jsonString(a->toString()));
  ready += fmt::format(",\"pin\":{},\"ca_file\":{}}}", jsonString(tls::encodePin(tls.spkiPin())),
                       jsonString(o.write_ca));
  printLine(ready);

  loop.run();

  printLine(fmt::format("{{\"stats\":{}}}", countersJson(responder.counters())));
  return 0;
}

}  // namespace
}  // namespace dotproxy::dotmock

int main(int argc, char** argv) {
  using dotproxy::dotmock::Options;
  Options o;
  CLI::App app{"dotmock: mock DNS-over-TLS upstream with synthetic zones"};
  app.add_option("--dot", o.dot, "DoT listen address IP:PORT (port 0 = ephemeral)")
      ->capture_default_str();
  app.add_option("--udp", o.udp, "also serve plain DNS over UDP on IP:PORT");
  app.add_option("--tcp", o.tcp, "also serve plain DNS over TCP on IP:PORT");
  app.add_option("--cert", o.cert_file, "certificate chain PEM (default: self-signed)");
  app.add_option("--key", o.key_file, "private key PEM for --cert");
  app.add_option("--cert-name", o.cert_names,
                 "DNS name in the self-signed certificate (repeatable)")
      ->capture_default_str();
  app.add_flag("--expired", o.expired, "make the self-signed certificate expired");
  app.add_option("--write-ca", o.write_ca,
                 "write the certificate PEM here (a CA file for clients)");
  app.add_option("--zone", o.zones, "zone to answer for (repeatable)")->capture_default_str();
  app.add_option("--nxdomain-label", o.nxdomain_label, "first label that gets NXDOMAIN")
      ->capture_default_str();
  app.add_option("--txt-size", o.txt_size, "bytes of TXT text")->capture_default_str();
  app.add_option("--ttl", o.ttl, "TTL of answers")->capture_default_str();
  app.add_option("--negative-ttl", o.negative_ttl, "SOA minimum (negative TTL)")
      ->capture_default_str();
  app.add_option("--delay-ms", o.delay_ms, "delay every answer by this much")
      ->capture_default_str();
  app.add_option("--idle-timeout-ms", o.idle_timeout_ms,
                 "close idle DoT/TCP connections after this long (0 = never)")
      ->capture_default_str();
  app.add_option("--faults", o.faults_file,
                 "fault script (see tools/dotmock/faults.h); SIGHUP reads it again");
  app.add_option("--log-level", o.log_level, "debug, info, warn, error, off")
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "dotmock: %s\n", e.what());
    return 2;
  }

  try {
    return dotproxy::dotmock::run(o);
  } catch (const dotproxy::dotmock::UsageError& e) {
    std::fprintf(stderr, "dotmock: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dotmock: %s\n", e.what());
    return 1;
  }
}
