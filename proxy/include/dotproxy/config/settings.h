#pragma once
// One Settings struct for the daemon: defaults here, then the TOML file (--config), then flags
// (flags win). Validation errors name the file, line and key. Exceptions only here, at start-up.

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "dotproxy/net/socket.h"
#include "dotproxy/util/log.h"

namespace dotproxy::config {

using std::chrono::milliseconds;

struct UpstreamSettings {
  net::SocketAddress address;     // IP literal and port (853 by default)
  std::string tls_name;           // SNI and verified name; empty = verify the IP address
  std::string ca_file;            // empty = the global ca_file, else the system store
  std::vector<std::string> pins;  // base64 SHA-256 SPKI pins; empty = no pinning
};

struct Settings {
  // [server]
  std::vector<net::SocketAddress> listen;  // default 127.0.0.1:53
  unsigned workers = 0;                    // 0 = one per core
  log::Level log_level = log::Level::Info;
  log::Format log_format = log::Format::Text;
  unsigned query_log = 0;                     // log one answered query in N (0 = no query log)
  size_t max_udp_size = 1232;                 // our EDNS buffer size, cap on UDP replies
  unsigned tcp_max_clients = 1024;            // concurrent TCP clients, whole process
  unsigned tcp_max_inflight = 128;            // pipelined queries in flight per TCP client
  size_t tcp_max_output = 64 * 1024;          // unsent answer bytes at which a client's queries
                                              // are no longer read
  milliseconds tcp_idle_timeout{10'000};      // RFC 7766 6.2.3: idle client connections
  milliseconds shutdown_grace{2'000};         // SIGTERM: time for in-flight queries to finish
  bool forward_ecs = false;                   // pass the client's ECS option upstream
  std::optional<net::SocketAddress> metrics;  // HTTP /metrics, /healthz, /readyz; off by default

  // [upstream] and [[upstream.servers]]
  std::vector<UpstreamSettings> upstreams;  // default Cloudflare 1.1.1.1 and 1.0.0.1
  std::string ca_file;                      // default CA bundle for upstreams; empty = system
  bool insecure = false;                    // no certificate verification (warned at start)
  milliseconds query_timeout{1'500};        // client deadline: SERVFAIL after this
  milliseconds attempt_timeout{700};        // one upstream attempt before the retry
  milliseconds connect_timeout{1'000};      // TCP connect + TLS handshake
  milliseconds idle_timeout{10'000};        // idle upstream connections are closed
  unsigned connections_per_upstream = 4;  // per worker; more open only when the open ones are full
  unsigned max_inflight_per_connection = 100;
  size_t padding_block = 128;  // RFC 8467; 0 = off
  milliseconds backoff_initial{250};
  milliseconds backoff_max{10'000};

  // [cache]
  size_t cache_size = size_t{64} << 20;  // bytes, entries plus index; 0 = no cache
  unsigned cache_shards = 16;
  std::chrono::seconds cache_min_ttl{0};
  std::chrono::seconds cache_max_ttl{86400};
  std::chrono::seconds cache_negative_max_ttl{3600};
  std::chrono::seconds cache_servfail_ttl{5};
  bool serve_stale = true;  // RFC 8767, as Unbound's serve-expired
  std::chrono::seconds stale_max_age{86400};
  unsigned prefetch_percent = 10;  // 0 = no prefetch

  std::string config_file;  // where the settings came from, for messages
  bool check_config = false;
};

// "FILE:LINE: KEY: what is wrong" (or "--flag: what is wrong").
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The defaults above, with the default listen address and upstreams filled in.
Settings defaults();

// Applies a TOML document over `s`. `origin` names the file in messages. Throws ConfigError.
void applyToml(Settings& s, std::string_view toml_text, std::string_view origin);

// Parses the command line (CLI11): reads --config first, then applies flags over it, then
// validates. Returns nullopt when the program should exit now with *exit_code (after --help,
// --version, or a usage/config error already printed to stderr, exit code 2).
std::optional<Settings> parseCommandLine(int argc, const char* const* argv, int* exit_code);

// "HOST[:PORT][#TLS-NAME]", HOST an IP literal ([v6]:port for IPv6 with a port). Throws
// ConfigError.
UpstreamSettings parseUpstreamSpec(std::string_view spec);

}  // namespace dotproxy::config
