// Settings: defaults, then the TOML file, then command-line flags; every value checked on the way
// in.
//
// Configuration file reference (TOML; every key is optional; unknown keys are errors):
// clang-format off
//
//   [server]
//   listen = ["127.0.0.1:53", "[::1]:53"]  # IP literal with optional port (53); replaces the default
//   workers = 0                  # worker threads, 0..256; 0 = one per core
//   log_level = "info"           # "debug" | "info" | "warn" | "error" | "off"
//   max_udp_size = 1232          # 512..4096: our EDNS buffer size, cap on UDP replies
//   tcp_max_clients = 1024       # 1..1000000: concurrent TCP clients, whole process
//   tcp_max_inflight = 128       # 1..65535: pipelined queries in flight per TCP client
//   tcp_max_output = 65536       # 4096..16777216: unsent answer bytes per TCP client at which
//                                # its queries are no longer read
//   tcp_idle_timeout_ms = 10000  # idle TCP client connections are closed (RFC 7766 6.2.3), and
//                                # clients whose unsent answers make no progress for as long
//   shutdown_grace_ms = 2000     # 0..: on SIGTERM, time for in-flight queries to finish
//   forward_ecs = false          # pass the client's EDNS Client Subnet option upstream
//   metrics = "127.0.0.1:9153"   # HTTP /metrics, /healthz, /readyz; "" or absent = off
//   log_format = "text"          # "text" | "json" (one JSON object per line, with fields)
//   query_log = 0                # log one answered query in N; 0 = off, 1 = every query
//
//   [upstream]
//   ca_file = ""                 # PEM CA bundle for upstreams without their own; "" = system store
//   insecure = false             # true disables certificate verification (never for production)
//   query_timeout_ms = 1500      # client deadline: SERVFAIL after this
//   attempt_timeout_ms = 700     # one upstream attempt before retrying; <= query_timeout_ms
//   connect_timeout_ms = 1000    # TCP connect + TLS handshake
//   idle_timeout_ms = 10000      # idle upstream connections are closed
//   connections_per_upstream = 4 # 1..64, per worker; more open only when the open ones are full
//   max_inflight_per_connection = 100 # 1..65535
//   padding_block = 128          # 0..512: EDNS padding block size (RFC 8467); 0 = no padding
//   backoff_initial_ms = 250     # reconnect back-off after a failure, doubling up to ...
//   backoff_max_ms = 10000       # ... this; >= backoff_initial_ms
//
//   [[upstream.servers]]         # repeat per upstream; if present, replaces the default (Cloudflare)
//   address = "1.1.1.1"          # required; IP literal (no host names: nothing is resolved at start-up)
//   port = 853                   # 1..65535
//   tls_name = "cloudflare-dns.com"  # certificate name and SNI; "" = verify the IP address;
//                                # omitted: cloudflare-dns.com for Cloudflare's addresses, else ""
//   ca_file = "/etc/ssl/my-ca.pem"   # overrides [upstream] ca_file for this server
//   pins = ["base64..."]         # base64 SHA-256 of the server's SubjectPublicKeyInfo (32 bytes)
//
//   [cache]
//   size = 67108864              # bytes (entries plus index overhead); 0 = no cache
//   shards = 16                  # 1..1024 locks
//   min_ttl = 0                  # seconds; clamps on how long an answer is kept
//   max_ttl = 86400
//   negative_max_ttl = 3600      # cap for NXDOMAIN/NODATA (RFC 2308)
//   servfail_ttl = 5             # upstream SERVFAIL answers, briefly (RFC 2308 section 7)
//   serve_stale = true           # RFC 8767: answer from an expired entry when upstreams fail
//   stale_max_age = 86400        # seconds past expiry an entry may still be served stale
//   prefetch_percent = 10        # refresh a popular entry in the last N% of its TTL; 0 = off
//
// clang-format on
// Timeouts (*_ms) are 1..86400000 unless noted. Relative file paths are relative to the working
// directory. Errors read "FILE:LINE: KEY: what is wrong"; flags read "--flag: what is wrong".

#include "dotproxy/config/settings.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <iostream>
#include <map>
#include <span>
#include <string_view>

#include <fmt/format.h>
#include <toml++/toml.h>
#include <CLI/CLI.hpp>

namespace dotproxy::config {
namespace {

constexpr uint16_t kDnsPort = 53;
constexpr uint16_t kMetricsPort = 9153;
constexpr uint16_t kDotPort = 853;
constexpr size_t kMaxConfigBytes = 1 << 20;
constexpr std::string_view kCloudflareName = "cloudflare-dns.com";
// Cloudflare's resolver addresses in inet_ntop form: the default TLS name applies to them.
constexpr std::array<std::string_view, 4> kCloudflareAddresses = {
    "1.1.1.1", "1.0.0.1", "2606:4700:4700::1111", "2606:4700:4700::1001"};

struct Limit {
  int64_t min;
  int64_t max;
  std::string_view unit = "";
};
constexpr Limit kWorkers{0, 256};
constexpr Limit kMaxUdpSize{512, 4096, " bytes"};
constexpr Limit kTcpMaxClients{1, 1'000'000};
constexpr Limit kInflight{1, 65'535};  // bounded by the 16-bit DNS message ID
constexpr Limit kTcpOutput{4096, 16 << 20, " bytes"};
constexpr Limit kConnections{1, 64};
constexpr Limit kPaddingBlock{0, 512, " bytes"};
constexpr Limit kTimeout{1, 86'400'000, " ms"};
constexpr Limit kGrace{0, 86'400'000, " ms"};
constexpr Limit kPort{1, 65'535};
constexpr Limit kCacheSize{0, int64_t{1} << 40, " bytes"};
constexpr Limit kShards{1, 1024};
constexpr Limit kTtl{0, 7 * 86'400, " s"};
constexpr Limit kStaleAge{0, 30 * 86'400, " s"};
constexpr Limit kPercent{0, 50, "%"};
constexpr Limit kQueryLog{0, 1'000'000'000};

constexpr std::array<std::string_view, 13> kServerKeys = {
    "listen",          "workers",          "log_level",           "max_udp_size",
    "tcp_max_clients", "tcp_max_inflight", "tcp_idle_timeout_ms", "shutdown_grace_ms",
    "forward_ecs",     "metrics",          "log_format",          "query_log",
    "tcp_max_output"};
constexpr std::array<std::string_view, 12> kUpstreamKeys = {"servers",
                                                            "ca_file",
                                                            "insecure",
                                                            "query_timeout_ms",
                                                            "attempt_timeout_ms",
                                                            "connect_timeout_ms",
                                                            "idle_timeout_ms",
                                                            "connections_per_upstream",
                                                            "max_inflight_per_connection",
                                                            "padding_block",
                                                            "backoff_initial_ms",
                                                            "backoff_max_ms"};
constexpr std::array<std::string_view, 5> kServerEntryKeys = {"address", "port", "tls_name",
                                                              "ca_file", "pins"};
constexpr std::array<std::string_view, 9> kCacheKeys = {
    "size",         "shards",      "min_ttl",       "max_ttl",         "negative_max_ttl",
    "servfail_ttl", "serve_stale", "stale_max_age", "prefetch_percent"};
constexpr std::array<std::string_view, 3> kSections = {"server", "upstream", "cache"};

[[noreturn]] void fail(std::string_view where, std::string_view what) {
  throw ConfigError(fmt::format("{}: {}", where, what));
}

size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// " (did you mean "x"?)" for a near miss among `known`, else "".
std::string suggest(std::string_view name, std::span<const std::string_view> known) {
  std::string_view best;
  size_t best_distance = name.size() >= 8 ? 4 : 3;  // at most 3 (2 for short names) edits away
  for (std::string_view k : known) {
    size_t d = editDistance(name, k);
    if (d < best_distance) {
      best_distance = d;
      best = k;
    }
  }
  return best.empty() ? std::string() : fmt::format(" (did you mean \"{}\"?)", best);
}

std::string_view typeName(toml::node_type t) {
  switch (t) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

void checkRange(std::string_view where, int64_t value, Limit limit) {
  if (value < limit.min || value > limit.max) {
    fail(where, fmt::format("must be between {} and {}{}, got {}", limit.min, limit.max, limit.unit,
                            value));
  }
}

int64_t parseInteger(std::string_view where, std::string_view text, Limit limit) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    fail(where, fmt::format("expected an integer, got \"{}\"", text));
  }
  checkRange(where, value, limit);
  return value;
}

// The inet_ntop form of an IPv4 or IPv6 literal, or nullopt.
std::optional<std::string> canonicalIp(std::string_view text) {
  std::string s(text);
  unsigned char bytes[sizeof(in6_addr)];
  char out[INET6_ADDRSTRLEN];
  for (int family : {AF_INET, AF_INET6}) {
    if (inet_pton(family, s.c_str(), bytes) == 1 && inet_ntop(family, bytes, out, sizeof out)) {
      return std::string(out);
    }
  }
  return std::nullopt;
}

// A DNS host name as it appears in a certificate: LDH labels of 1..63, 253 in all, no trailing
// dot, not all-numeric at the top.
bool validHostName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t start = 0;
  for (;;) {
    size_t dot = name.find('.', start);
    std::string_view label = name.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      bool ok =
          (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
      if (!ok) return false;
    }
    if (dot == std::string_view::npos) {
      // RFC 3696 section 2: a top-level label is never all-numeric ("300.1.1.1" is no name).
      return !std::ranges::all_of(label, [](char c) { return c >= '0' && c <= '9'; });
    }
    start = dot + 1;
  }
}

std::string defaultTlsName(std::string_view canonical_ip) {
  bool cloudflare =
      std::ranges::find(kCloudflareAddresses, canonical_ip) != kCloudflareAddresses.end();
  return cloudflare ? std::string(kCloudflareName) : std::string();
}

// Checks an upstream IP literal (no port) and returns its canonical form.
std::string checkUpstreamHost(std::string_view where, std::string_view host,
                              std::string_view how_to_name) {
  if (auto ip = canonicalIp(host)) return *ip;
  if (validHostName(host)) {
    fail(where,
         fmt::format("\"{}\" is a host name; dotproxy resolves no names at start-up, so give "
                     "an IP literal and {}",
                     host, how_to_name));
  }
  fail(where, fmt::format("\"{}\" is not an IPv4 or IPv6 address", host));
}

void checkTlsName(std::string_view where, std::string_view name) {
  if (!validHostName(name)) {
    fail(where, fmt::format("\"{}\" is not a valid host name for certificate verification", name));
  }
}

// Strict base64 (RFC 4648 section 4, padding optional). Returns the decoded length, or -1.
int base64DecodedLength(std::string_view text) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  size_t bits = 0;
  unsigned acc = 0;
  for (char c : text) {
    unsigned v;
    if (c >= 'A' && c <= 'Z')
      v = static_cast<unsigned>(c - 'A');
    else if (c >= 'a' && c <= 'z')
      v = static_cast<unsigned>(c - 'a') + 26;
    else if (c >= '0' && c <= '9')
      v = static_cast<unsigned>(c - '0') + 52;
    else if (c == '+')
      v = 62;
    else if (c == '/')
      v = 63;
    else
      return -1;
    acc = ((acc << 6) | v) & 0xFFF;
    bits += 6;
  }
  size_t leftover = bits % 8;
  if (leftover >= 6) return -1;                        // a dangling character
  if ((acc & ((1u << leftover) - 1)) != 0) return -1;  // non-canonical trailing bits
  return static_cast<int>(bits / 8);
}

// Validates a SHA-256 SPKI pin and returns it in padded form (44 characters).
std::string checkPin(std::string_view where, std::string_view pin) {
  std::string_view body = pin;
  size_t pad = 0;
  while (!body.empty() && body.back() == '=') {
    body.remove_suffix(1);
    ++pad;
  }
  bool padding_ok = pad == 0 || (body.size() + pad) % 4 == 0;
  if (!padding_ok || base64DecodedLength(body) != 32) {
    fail(where, fmt::format("\"{}\" is not a base64 SHA-256 SPKI pin (32 bytes, 44 characters; "
                            "e.g. openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | "
                            "openssl dgst -sha256 -binary | base64)",
                            pin));
  }
  return std::string(body) + "=";
}

void checkReadableFile(std::string_view where, const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    fail(where, fmt::format("cannot read \"{}\": {}", path, std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) fail(where, fmt::format("\"{}\" is not a regular file", path));
  if (::access(path.c_str(), R_OK) != 0) {
    fail(where, fmt::format("cannot read \"{}\": {}", path, std::strerror(errno)));
  }
}

// An IP literal with an optional port (`default_port` when none); `example` goes in the message.
net::SocketAddress parseAddress(std::string_view where, std::string_view text,
                                uint16_t default_port, std::string_view example) {
  auto addr = net::SocketAddress::parse(text, default_port);
  if (!addr) {
    fail(where,
         fmt::format("\"{}\" is not an IP address with an optional port (e.g. {})", text, example));
  }
  return *addr;
}

net::SocketAddress parseListen(std::string_view where, std::string_view text) {
  return parseAddress(where, text, kDnsPort, "\"127.0.0.1:53\" or \"[::1]:53\"");
}

// The operator endpoint's address; port 9153 (CoreDNS's metrics port) when none is given.
net::SocketAddress parseMetrics(std::string_view where, std::string_view text) {
  return parseAddress(where, text, kMetricsPort, "\"127.0.0.1:9153\"");
}

std::string readConfigFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, fmt::format("cannot open config file: {}", std::strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st{};
  if (::fstat(fd, &st) != 0) fail(path, fmt::format("cannot read: {}", std::strerror(errno)));
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  std::string text;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(path, fmt::format("cannot read config file: {}", std::strerror(errno)));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxConfigBytes) {
      fail(path, fmt::format("config file is larger than {} bytes", kMaxConfigBytes));
    }
  }
  return text;
}

// Applies sources over a Settings and remembers where each scalar came from, so that checks that
// involve two keys (run once all sources are in) can still point at a file line or a flag.
class Loader {
 public:
  explicit Loader(Settings& s) : s_(s) {}

  void applyToml(std::string_view text, std::string_view origin);
  // `key` (e.g. "upstream.query_timeout_ms") was last set by `where` (e.g. "--query-timeout").
  void setBy(std::string key, std::string where) { where_[std::move(key)] = std::move(where); }
  void validate() const;

 private:
  std::string at(const toml::source_region& src, std::string_view key) const {
    if (src.begin.line == 0) return fmt::format("{}: {}", origin_, key);
    return fmt::format("{}:{}: {}", origin_, src.begin.line, key);
  }
  std::string at(const toml::node& n, std::string_view key) const { return at(n.source(), key); }
  std::string whereOf(std::string_view key) const {
    auto it = where_.find(key);
    return it != where_.end() ? it->second : std::string(key);
  }

  [[noreturn]] void wrongType(const toml::node& v, std::string_view key, std::string_view want) {
    fail(at(v, key), fmt::format("expected {}, got {}", want, typeName(v.type())));
  }
  [[noreturn]] void unknownKey(const toml::key& k, std::string_view key,
                               std::span<const std::string_view> known) {
    fail(at(k.source(), key), fmt::format("unknown key{}", suggest(k.str(), known)));
  }

  int64_t integer(const toml::node& v, const std::string& key, Limit limit) {
    const auto* i = v.as_integer();
    if (!i) wrongType(v, key, "an integer");
    checkRange(at(v, key), i->get(), limit);
    setBy(key, at(v, key));
    return i->get();
  }
  template <class T>
  T number(const toml::node& v, const std::string& key, Limit limit) {
    return static_cast<T>(integer(v, key, limit));
  }
  milliseconds duration(const toml::node& v, const std::string& key, Limit limit) {
    return milliseconds(integer(v, key, limit));
  }
  bool boolean(const toml::node& v, const std::string& key) {
    const auto* b = v.as_boolean();
    if (!b) wrongType(v, key, "a boolean (true or false)");
    setBy(key, at(v, key));
    return b->get();
  }
  const std::string& text(const toml::node& v, const std::string& key) {
    const auto* str = v.as_string();
    if (!str) wrongType(v, key, "a string");
    setBy(key, at(v, key));
    return str->get();
  }
  const toml::array& arrayOf(const toml::node& v, const std::string& key, std::string_view want) {
    const auto* a = v.as_array();
    if (!a) wrongType(v, key, want);
    return *a;
  }
  std::string caFile(const toml::node& v, const std::string& key) {
    const std::string& path = text(v, key);
    if (!path.empty()) checkReadableFile(at(v, key), path);
    return path;
  }

  void applyServer(const toml::table& t);
  void applyUpstream(const toml::table& t);
  void applyCache(const toml::table& t);
  std::vector<net::SocketAddress> listenList(const toml::node& v, const std::string& key);
  std::vector<UpstreamSettings> serverList(const toml::node& v, const std::string& key);
  UpstreamSettings serverEntry(const toml::table& t, const std::string& key);
  std::vector<std::string> pinList(const toml::node& v, const std::string& key);

  Settings& s_;
  std::string origin_;
  std::map<std::string, std::string, std::less<>> where_;
};

void Loader::applyToml(std::string_view text, std::string_view origin) {
  origin_ = std::string(origin);
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    if (src.begin.line == 0) fail(origin_, e.description());
    fail(fmt::format("{}:{}", origin_, src.begin.line), e.description());
  }
  for (auto&& [k, v] : root) {
    const std::string key(k.str());
    if (k.str() == "server" || k.str() == "upstream" || k.str() == "cache") {
      const auto* t = v.as_table();
      if (!t) wrongType(v, key, fmt::format("a table ([{}])", key));
      if (k.str() == "server") {
        applyServer(*t);
      } else if (k.str() == "upstream") {
        applyUpstream(*t);
      } else {
        applyCache(*t);
      }
      continue;
    }
    // A key outside any section: name the section it belongs to when it is a known key.
    std::string hint = suggest(k.str(), kSections);
    if (std::ranges::find(kServerKeys, k.str()) != kServerKeys.end()) {
      hint = " (put it under [server])";
    } else if (std::ranges::find(kUpstreamKeys, k.str()) != kUpstreamKeys.end()) {
      hint = " (put it under [upstream])";
    } else if (std::ranges::find(kCacheKeys, k.str()) != kCacheKeys.end()) {
      hint = " (put it under [cache])";
    }
    fail(at(k.source(), key),
         fmt::format("unknown key; settings live under [server], [upstream] and [cache]{}", hint));
  }
}

void Loader::applyServer(const toml::table& t) {
  for (auto&& [k, v] : t) {
    const std::string_view name = k.str();
    const std::string key = fmt::format("server.{}", name);
    if (name == "listen") {
      s_.listen = listenList(v, key);
    } else if (name == "workers") {
      s_.workers = number<unsigned>(v, key, kWorkers);
    } else if (name == "log_level") {
      const std::string& level = text(v, key);
      if (!log::parseLevel(level, s_.log_level)) {
        fail(at(v, key),
             fmt::format("\"{}\" is not a log level (debug, info, warn, error, off)", level));
      }
    } else if (name == "max_udp_size") {
      s_.max_udp_size = number<size_t>(v, key, kMaxUdpSize);
    } else if (name == "tcp_max_clients") {
      s_.tcp_max_clients = number<unsigned>(v, key, kTcpMaxClients);
    } else if (name == "tcp_max_inflight") {
      s_.tcp_max_inflight = number<unsigned>(v, key, kInflight);
    } else if (name == "tcp_max_output") {
      s_.tcp_max_output = number<size_t>(v, key, kTcpOutput);
    } else if (name == "tcp_idle_timeout_ms") {
      s_.tcp_idle_timeout = duration(v, key, kTimeout);
    } else if (name == "shutdown_grace_ms") {
      s_.shutdown_grace = duration(v, key, kGrace);
    } else if (name == "forward_ecs") {
      s_.forward_ecs = boolean(v, key);
    } else if (name == "log_format") {
      const std::string& format = text(v, key);
      if (!log::parseFormat(format, s_.log_format)) {
        fail(at(v, key), fmt::format("\"{}\" is not a log format (text, json)", format));
      }
    } else if (name == "query_log") {
      s_.query_log = number<unsigned>(v, key, kQueryLog);
    } else if (name == "metrics") {
      const std::string& addr = text(v, key);
      if (addr.empty()) {
        s_.metrics.reset();
      } else {
        s_.metrics = parseMetrics(at(v, key), addr);
      }
    } else {
      unknownKey(k, key, kServerKeys);
    }
  }
}

void Loader::applyUpstream(const toml::table& t) {
  for (auto&& [k, v] : t) {
    const std::string_view name = k.str();
    const std::string key = fmt::format("upstream.{}", name);
    if (name == "servers") {
      s_.upstreams = serverList(v, key);
    } else if (name == "ca_file") {
      s_.ca_file = caFile(v, key);
    } else if (name == "insecure") {
      s_.insecure = boolean(v, key);
    } else if (name == "query_timeout_ms") {
      s_.query_timeout = duration(v, key, kTimeout);
    } else if (name == "attempt_timeout_ms") {
      s_.attempt_timeout = duration(v, key, kTimeout);
    } else if (name == "connect_timeout_ms") {
      s_.connect_timeout = duration(v, key, kTimeout);
    } else if (name == "idle_timeout_ms") {
      s_.idle_timeout = duration(v, key, kTimeout);
    } else if (name == "connections_per_upstream") {
      s_.connections_per_upstream = number<unsigned>(v, key, kConnections);
    } else if (name == "max_inflight_per_connection") {
      s_.max_inflight_per_connection = number<unsigned>(v, key, kInflight);
    } else if (name == "padding_block") {
      s_.padding_block = number<size_t>(v, key, kPaddingBlock);
    } else if (name == "backoff_initial_ms") {
      s_.backoff_initial = duration(v, key, kTimeout);
    } else if (name == "backoff_max_ms") {
      s_.backoff_max = duration(v, key, kTimeout);
    } else {
      unknownKey(k, key, kUpstreamKeys);
    }
  }
}

void Loader::applyCache(const toml::table& t) {
  for (auto&& [k, v] : t) {
    const std::string_view name = k.str();
    const std::string key = fmt::format("cache.{}", name);
    auto secs = [&](const Limit& l) { return std::chrono::seconds(number<int64_t>(v, key, l)); };
    if (name == "size") {
      s_.cache_size = number<size_t>(v, key, kCacheSize);
    } else if (name == "shards") {
      s_.cache_shards = number<unsigned>(v, key, kShards);
    } else if (name == "min_ttl") {
      s_.cache_min_ttl = secs(kTtl);
    } else if (name == "max_ttl") {
      s_.cache_max_ttl = secs(kTtl);
    } else if (name == "negative_max_ttl") {
      s_.cache_negative_max_ttl = secs(kTtl);
    } else if (name == "servfail_ttl") {
      s_.cache_servfail_ttl = secs(kTtl);
    } else if (name == "serve_stale") {
      s_.serve_stale = boolean(v, key);
    } else if (name == "stale_max_age") {
      s_.stale_max_age = secs(kStaleAge);
    } else if (name == "prefetch_percent") {
      s_.prefetch_percent = number<unsigned>(v, key, kPercent);
    } else {
      unknownKey(k, key, kCacheKeys);
    }
  }
  if (s_.cache_min_ttl > s_.cache_max_ttl) {
    fail(fmt::format("{}", origin_), "cache.min_ttl: must not exceed cache.max_ttl");
  }
}

std::vector<net::SocketAddress> Loader::listenList(const toml::node& v, const std::string& key) {
  const auto& list =
      arrayOf(v, key, "an array of addresses, e.g. [\"127.0.0.1:53\", \"[::1]:53\"]");
  if (list.empty()) fail(at(v, key), "empty; give at least one address to listen on");
  std::vector<net::SocketAddress> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string item_key = fmt::format("{}[{}]", key, i);
    const auto* text = list[i].as_string();
    if (!text) wrongType(list[i], item_key, "a string");
    net::SocketAddress addr = parseListen(at(list[i], item_key), text->get());
    if (std::ranges::find(out, addr) != out.end()) {
      fail(at(list[i], item_key), fmt::format("{} is listed twice", addr.toString()));
    }
    out.push_back(addr);
  }
  setBy(key, at(v, key));
  return out;
}

std::vector<UpstreamSettings> Loader::serverList(const toml::node& v, const std::string& key) {
  const auto& list = arrayOf(v, key, "an array of tables ([[upstream.servers]])");
  if (list.empty()) fail(at(v, key), "empty; at least one upstream server is required");
  std::vector<UpstreamSettings> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string item_key = fmt::format("{}[{}]", key, i);
    const auto* t = list[i].as_table();
    if (!t) wrongType(list[i], item_key, "a table ([[upstream.servers]])");
    UpstreamSettings u = serverEntry(*t, item_key);
    for (size_t j = 0; j < out.size(); ++j) {
      if (out[j].address == u.address && out[j].tls_name == u.tls_name) {
        fail(at(*t, item_key),
             fmt::format("{} is already listed as {}[{}]", u.address.toString(), key, j));
      }
    }
    out.push_back(std::move(u));
  }
  setBy(key, at(v, key));
  return out;
}

UpstreamSettings Loader::serverEntry(const toml::table& t, const std::string& key) {
  UpstreamSettings u;
  std::optional<std::string> ip;
  const toml::node* address_node = nullptr;
  int64_t port = kDotPort;
  std::optional<std::string> tls_name;
  for (auto&& [k, v] : t) {
    const std::string_view name = k.str();
    const std::string item_key = fmt::format("{}.{}", key, name);
    if (name == "address") {
      address_node = &v;
      ip = checkUpstreamHost(at(v, item_key), text(v, item_key), "put the name in tls_name");
    } else if (name == "port") {
      port = integer(v, item_key, kPort);
    } else if (name == "tls_name") {
      tls_name = text(v, item_key);
      if (!tls_name->empty()) checkTlsName(at(v, item_key), *tls_name);
    } else if (name == "ca_file") {
      u.ca_file = caFile(v, item_key);
    } else if (name == "pins") {
      u.pins = pinList(v, item_key);
    } else {
      unknownKey(k, item_key, kServerEntryKeys);
    }
  }
  if (!ip) fail(at(t, key + ".address"), "missing; every upstream server needs an IP address");
  auto addr = net::SocketAddress::parse(*ip, static_cast<uint16_t>(port));
  if (!addr) {
    fail(at(*address_node, key + ".address"), fmt::format("\"{}\" is not usable", *ip));
  }
  u.address = *addr;
  u.tls_name = tls_name ? *tls_name : defaultTlsName(*ip);
  return u;
}

std::vector<std::string> Loader::pinList(const toml::node& v, const std::string& key) {
  const auto& list = arrayOf(v, key, "an array of base64 strings");
  std::vector<std::string> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string item_key = fmt::format("{}[{}]", key, i);
    const auto* text = list[i].as_string();
    if (!text) wrongType(list[i], item_key, "a string");
    out.push_back(checkPin(at(list[i], item_key), text->get()));
  }
  return out;
}

void Loader::validate() const {
  if (s_.listen.empty()) fail(whereOf("server.listen"), "no address to listen on");
  if (s_.upstreams.empty()) fail(whereOf("upstream.servers"), "no upstream server");
  // Blame the key a flag set (flags come last), else `a` if a source set it, else `b`.
  auto blame = [this](std::string_view a, std::string_view b) {
    std::string wa = whereOf(a), wb = whereOf(b);
    if (wb.starts_with("--") && !wa.starts_with("--")) return wb;
    return wa == a ? wb : wa;
  };
  if (s_.attempt_timeout > s_.query_timeout) {
    fail(blame("upstream.attempt_timeout_ms", "upstream.query_timeout_ms"),
         fmt::format("attempt timeout ({} ms) is longer than the query timeout ({} ms)",
                     s_.attempt_timeout.count(), s_.query_timeout.count()));
  }
  if (s_.backoff_initial > s_.backoff_max) {
    fail(blame("upstream.backoff_initial_ms", "upstream.backoff_max_ms"),
         fmt::format("initial back-off ({} ms) is longer than the maximum back-off ({} ms)",
                     s_.backoff_initial.count(), s_.backoff_max.count()));
  }
}

// HOST[:PORT][#TLS-NAME]; `what` starts the error location ("--upstream", "upstream").
UpstreamSettings parseSpec(std::string_view spec, std::string_view what) {
  const std::string where = fmt::format("{} \"{}\"", what, spec);
  std::string_view hostport = spec;
  std::optional<std::string_view> name;
  if (size_t hash = spec.find('#'); hash != std::string_view::npos) {
    hostport = spec.substr(0, hash);
    name = spec.substr(hash + 1);
    if (name->empty()) fail(where, "empty TLS name after '#'");
    checkTlsName(where, *name);
  }

  std::string_view host = hostport;
  std::optional<std::string_view> port_text;
  if (hostport.starts_with('[')) {
    size_t close = hostport.find(']');
    if (close == std::string_view::npos) fail(where, "missing ']' after the IPv6 address");
    host = hostport.substr(1, close - 1);
    std::string_view rest = hostport.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') fail(where, "expected ':PORT' after ']'");
      port_text = rest.substr(1);
    }
    if (host.find(':') == std::string_view::npos) {
      fail(where, "brackets are for IPv6 addresses; write an IPv4 address as 192.0.2.1:853");
    }
  } else if (size_t colon = hostport.find(':');
             colon != std::string_view::npos && hostport.find(':', colon + 1) == hostport.npos) {
    host = hostport.substr(0, colon);  // one colon: IPv4 or a name, with a port
    port_text = hostport.substr(colon + 1);
  }  // else no colon, or a bare IPv6 address (no port; use [v6]:port for one)
  if (host.empty()) fail(where, "missing the upstream IP address");

  const std::string ip = checkUpstreamHost(
      where, host, fmt::format("put the name after '#' (e.g. 192.0.2.1#{})", host));
  uint16_t port = kDotPort;
  if (port_text) port = static_cast<uint16_t>(parseInteger(where + ": port", *port_text, kPort));
  auto addr = net::SocketAddress::parse(ip, port);
  if (!addr) fail(where, fmt::format("\"{}\" is not usable", ip));
  UpstreamSettings u;
  u.address = *addr;
  u.tls_name = name ? std::string(*name) : defaultTlsName(ip);
  return u;
}

UpstreamSettings cloudflare(std::string_view ip) {
  UpstreamSettings u;
  u.address = *net::SocketAddress::parse(ip, kDotPort);
  u.tls_name = std::string(kCloudflareName);
  return u;
}

std::optional<Settings> parseOrThrow(int argc, const char* const* argv, int& exit_code) {
  CLI::App app{
      "dotproxy: an encrypted DNS forwarder. Answers plain DNS over UDP and TCP and "
      "forwards the queries to upstream resolvers over DNS-over-TLS (RFC 7858).",
      "dotproxy"};
  app.footer(
      "Flags override the --config file. UPSTREAM is HOST[:PORT][#TLS-NAME]: HOST an IP literal\n"
      "([v6]:port with a port), PORT 853 by default, TLS-NAME the certificate name to verify\n"
      "(default cloudflare-dns.com for Cloudflare's addresses, else the IP address).\n"
      "Example: dotproxy --listen 127.0.0.1:5353 --upstream 9.9.9.9#dns.quad9.net");
  app.set_version_flag("--version", "dotproxy " DOTPROXY_VERSION);

  std::vector<std::string> listen, upstreams, pins;
  std::string ca_file, workers, config_file, log_level, query_timeout;
  bool insecure = false, check_config = false;
  auto* listen_opt =
      app.add_option("--listen", listen, "Address to listen on, repeatable (default 127.0.0.1:53)")
          ->type_name("ADDR[:PORT]")
          ->allow_extra_args(false);
  auto* upstream_opt = app.add_option("--upstream", upstreams,
                                      "Upstream DoT server, repeatable (default Cloudflare)")
                           ->type_name("UPSTREAM")
                           ->allow_extra_args(false);
  auto* ca_opt =
      app.add_option("--ca-file", ca_file, "PEM CA bundle for upstreams (default: system store)")
          ->type_name("FILE");
  auto* pin_opt =
      app.add_option("--pin", pins, "Base64 SHA-256 SPKI pin for every upstream, repeatable")
          ->type_name("BASE64")
          ->allow_extra_args(false);
  app.add_flag("--insecure", insecure, "Do not verify upstream certificates (testing only)");
  auto* workers_opt =
      app.add_option("--workers", workers, "Worker threads, 0 = one per core")->type_name("N");
  auto* config_opt =
      app.add_option("--config", config_file, "TOML configuration file")->type_name("FILE");
  app.add_flag("--check-config", check_config, "Validate the configuration and exit");
  auto* level_opt = app.add_option("--log-level", log_level, "debug, info, warn, error or off")
                        ->type_name("LEVEL");
  auto* timeout_opt =
      app.add_option("--query-timeout", query_timeout, "Client deadline before SERVFAIL")
          ->type_name("MS");
  std::string log_format, query_log;
  auto* format_opt =
      app.add_option("--log-format", log_format, "text (default) or json (one object per line)")
          ->type_name("FORMAT");
  auto* query_log_opt =
      app.add_option("--query-log", query_log,
                     "Log one answered query in N (client, name, type, rcode, source, latency); "
                     "0 = off")
          ->type_name("N");
  std::string metrics;
  auto* metrics_opt =
      app.add_option("--metrics", metrics,
                     "HTTP endpoint for /metrics, /healthz and /readyz (port 9153 by default)")
          ->type_name("ADDR[:PORT]");
  std::string cache_size;
  auto* cache_opt =
      app.add_option("--cache-size", cache_size, "Answer cache budget in bytes, 0 = no cache")
          ->type_name("BYTES");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    exit_code = e.get_exit_code();
    if (exit_code == 0) {  // --help, --version
      app.exit(e, std::cout, std::cerr);
    } else {
      std::cerr << "dotproxy: " << e.what() << " (see --help)\n";
      exit_code = 2;
    }
    return std::nullopt;
  }

  Settings s = defaults();
  Loader loader(s);
  if (config_opt->count() > 0) {
    s.config_file = config_file;
    loader.applyToml(readConfigFile(config_file), config_file);
  }
  if (listen_opt->count() > 0) {
    s.listen.clear();
    for (const auto& text : listen) {
      net::SocketAddress addr = parseListen("--listen", text);
      if (std::ranges::find(s.listen, addr) != s.listen.end()) {
        fail("--listen", fmt::format("{} is given twice", addr.toString()));
      }
      s.listen.push_back(addr);
    }
    loader.setBy("server.listen", "--listen");
  }
  if (upstream_opt->count() > 0) {
    s.upstreams.clear();
    for (const auto& spec : upstreams) {
      s.upstreams.push_back(parseSpec(spec, "--upstream"));
    }
    loader.setBy("upstream.servers", "--upstream");
  }
  if (ca_opt->count() > 0) {
    if (!ca_file.empty()) checkReadableFile("--ca-file", ca_file);
    s.ca_file = ca_file;
  }
  if (pin_opt->count() > 0) {
    std::vector<std::string> checked;
    for (const auto& pin : pins) checked.push_back(checkPin("--pin", pin));
    for (auto& u : s.upstreams) u.pins = checked;
  }
  if (insecure) s.insecure = true;
  if (metrics_opt->count() > 0) s.metrics = parseMetrics("--metrics", metrics);
  if (format_opt->count() > 0 && !log::parseFormat(log_format, s.log_format)) {
    fail("--log-format", fmt::format("\"{}\" is not a log format (text, json)", log_format));
  }
  if (query_log_opt->count() > 0) {
    s.query_log = static_cast<unsigned>(parseInteger("--query-log", query_log, kQueryLog));
  }
  if (workers_opt->count() > 0) {
    s.workers = static_cast<unsigned>(parseInteger("--workers", workers, kWorkers));
  }
  if (cache_opt->count() > 0) {
    s.cache_size = static_cast<size_t>(parseInteger("--cache-size", cache_size, kCacheSize));
  }
  if (level_opt->count() > 0 && !log::parseLevel(log_level, s.log_level)) {
    fail("--log-level",
         fmt::format("\"{}\" is not a log level (debug, info, warn, error, off)", log_level));
  }
  if (timeout_opt->count() > 0) {
    s.query_timeout = milliseconds(parseInteger("--query-timeout", query_timeout, kTimeout));
    loader.setBy("upstream.query_timeout_ms", "--query-timeout");
  }
  s.check_config = check_config;
  loader.validate();
  exit_code = 0;
  return s;
}

}  // namespace

Settings defaults() {
  Settings s;
  s.listen.push_back(*net::SocketAddress::parse("127.0.0.1", kDnsPort));
  s.upstreams.push_back(cloudflare("1.1.1.1"));
  s.upstreams.push_back(cloudflare("1.0.0.1"));
  return s;
}

void applyToml(Settings& s, std::string_view toml_text, std::string_view origin) {
  Loader loader(s);
  loader.applyToml(toml_text, origin);
  loader.validate();
}

std::optional<Settings> parseCommandLine(int argc, const char* const* argv, int* exit_code) {
  int ignored = 0;
  int& code = exit_code ? *exit_code : ignored;
  try {
    return parseOrThrow(argc, argv, code);
  } catch (const std::exception& e) {  // ConfigError, and anything unexpected (bad_alloc)
    code = 2;
    std::cerr << "dotproxy: " << e.what() << '\n';
  } catch (...) {
    code = 2;
    std::cerr << "dotproxy: unexpected error while reading the configuration\n";
  }
  return std::nullopt;
}

UpstreamSettings parseUpstreamSpec(std::string_view spec) {
  return parseSpec(spec, "upstream");
}

}  // namespace dotproxy::config
