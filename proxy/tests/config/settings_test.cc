#include "dotproxy/config/settings.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

namespace dotproxy::config {
namespace {

using namespace std::chrono_literals;

constexpr const char* kPin = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";  // SHA-256 of ""

// A fresh directory per test, removed afterwards.
class SettingsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "dotproxy-config-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  std::filesystem::path dir_;
};

std::string addr(const net::SocketAddress& a) {
  return a.toString();
}

// The ConfigError message applyToml throws for `text`, or "" if none.
std::string tomlError(const std::string& text) {
  Settings s = defaults();
  try {
    applyToml(s, text, "dotproxy.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

struct CliResult {
  std::optional<Settings> settings;
  int exit_code = -1;
  std::string out;
  std::string err;
};

CliResult runCli(std::vector<std::string> args) {
  args.insert(args.begin(), "dotproxy");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  CliResult r;
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  r.settings = parseCommandLine(static_cast<int>(argv.size()), argv.data(), &r.exit_code);
  r.err = testing::internal::GetCapturedStderr();
  r.out = testing::internal::GetCapturedStdout();
  return r;
}

TEST(ConfigDefaults, ListenAndCloudflareUpstreams) {
  Settings s = defaults();
  ASSERT_EQ(s.listen.size(), 1u);
  EXPECT_EQ(addr(s.listen[0]), "127.0.0.1:53");
  ASSERT_EQ(s.upstreams.size(), 2u);
  EXPECT_EQ(addr(s.upstreams[0].address), "1.1.1.1:853");
  EXPECT_EQ(addr(s.upstreams[1].address), "1.0.0.1:853");
  for (const auto& u : s.upstreams) {
    EXPECT_EQ(u.tls_name, "cloudflare-dns.com");
    EXPECT_TRUE(u.ca_file.empty());
    EXPECT_TRUE(u.pins.empty());
  }
  EXPECT_EQ(s.workers, 0u);
  EXPECT_EQ(s.log_level, log::Level::Info);
  EXPECT_EQ(s.max_udp_size, 1232u);
  EXPECT_FALSE(s.insecure);
  EXPECT_EQ(s.query_timeout, 1500ms);
  EXPECT_EQ(s.attempt_timeout, 700ms);
  EXPECT_EQ(s.padding_block, 128u);
}

TEST_F(SettingsTest, TomlOverridesEveryKey) {
  std::string ca = write("ca.pem", "not really a CA, only needs to be readable\n");
  Settings s = defaults();
  applyToml(s,
            R"(
[server]
listen = ["127.0.0.1:5353", "[::1]:5353", "0.0.0.0"]
workers = 4
log_level = "debug"
max_udp_size = 1400
tcp_max_clients = 50
tcp_max_inflight = 16
tcp_max_output = 32768
tcp_idle_timeout_ms = 3000
shutdown_grace_ms = 0
forward_ecs = true

[upstream]
ca_file = ")" + ca +
                R"("
insecure = true
query_timeout_ms = 2000
attempt_timeout_ms = 2000
connect_timeout_ms = 500
idle_timeout_ms = 60000
connections_per_upstream = 2
max_inflight_per_connection = 64
padding_block = 0
backoff_initial_ms = 100
backoff_max_ms = 100

[[upstream.servers]]
address = "9.9.9.9"
tls_name = "dns.quad9.net"
pins = [")" + kPin +
                R"("]

[[upstream.servers]]
address = "2606:4700:4700::1111"
port = 8853
ca_file = ")" + ca +
                R"("

[[upstream.servers]]
address = "192.0.2.1"
)",
            "dotproxy.toml");
  ASSERT_EQ(s.listen.size(), 3u);
  EXPECT_EQ(addr(s.listen[0]), "127.0.0.1:5353");
  EXPECT_EQ(addr(s.listen[1]), "[::1]:5353");
  EXPECT_EQ(addr(s.listen[2]), "0.0.0.0:53");
  EXPECT_EQ(s.workers, 4u);
  EXPECT_EQ(s.log_level, log::Level::Debug);
  EXPECT_EQ(s.max_udp_size, 1400u);
  EXPECT_EQ(s.tcp_max_clients, 50u);
  EXPECT_EQ(s.tcp_max_inflight, 16u);
  EXPECT_EQ(s.tcp_max_output, 32768u);
  EXPECT_EQ(s.tcp_idle_timeout, 3000ms);
  EXPECT_EQ(s.shutdown_grace, 0ms);
  EXPECT_TRUE(s.forward_ecs);
  EXPECT_EQ(s.ca_file, ca);
  EXPECT_TRUE(s.insecure);
  EXPECT_EQ(s.query_timeout, 2000ms);
  EXPECT_EQ(s.attempt_timeout, 2000ms);
  EXPECT_EQ(s.connect_timeout, 500ms);
  EXPECT_EQ(s.idle_timeout, 60000ms);
  EXPECT_EQ(s.connections_per_upstream, 2u);
  EXPECT_EQ(s.max_inflight_per_connection, 64u);
  EXPECT_EQ(s.padding_block, 0u);
  EXPECT_EQ(s.backoff_initial, 100ms);
  EXPECT_EQ(s.backoff_max, 100ms);

  ASSERT_EQ(s.upstreams.size(), 3u);  // replaced, not appended to the defaults
  EXPECT_EQ(addr(s.upstreams[0].address), "9.9.9.9:853");
  EXPECT_EQ(s.upstreams[0].tls_name, "dns.quad9.net");
  EXPECT_EQ(s.upstreams[0].pins, std::vector<std::string>{kPin});
  EXPECT_EQ(addr(s.upstreams[1].address), "[2606:4700:4700::1111]:8853");
  EXPECT_EQ(s.upstreams[1].tls_name, "cloudflare-dns.com");  // known address, name defaulted
  EXPECT_EQ(s.upstreams[1].ca_file, ca);
  EXPECT_EQ(addr(s.upstreams[2].address), "192.0.2.1:853");
  EXPECT_EQ(s.upstreams[2].tls_name, "");  // verify the IP address
}

TEST(ConfigToml, EmptyDocumentKeepsDefaults) {
  Settings s = defaults();
  applyToml(s, "# nothing\n[server]\n[upstream]\n", "dotproxy.toml");
  EXPECT_EQ(s.upstreams.size(), 2u);
  EXPECT_EQ(addr(s.listen[0]), "127.0.0.1:53");
}

TEST(ConfigToml, ExplicitEmptyTlsNameMeansVerifyTheAddress) {
  Settings s = defaults();
  applyToml(s, "[[upstream.servers]]\naddress = \"1.1.1.1\"\ntls_name = \"\"\n", "x.toml");
  ASSERT_EQ(s.upstreams.size(), 1u);
  EXPECT_EQ(s.upstreams[0].tls_name, "");
}

TEST(ConfigToml, UnpaddedPinIsNormalised) {
  Settings s = defaults();
  std::string unpadded(kPin, 43);
  applyToml(s, "[[upstream.servers]]\naddress = \"1.1.1.1\"\npins = [\"" + unpadded + "\"]\n",
            "x.toml");
  EXPECT_EQ(s.upstreams[0].pins, std::vector<std::string>{kPin});
}

// Each error names file, line and key.
TEST(ConfigTomlErrors, OutOfRangeNamesFileLineAndKey) {
  std::string e = tomlError("[server]\n# comment\nworkers = 300\n");
  EXPECT_NE(e.find("dotproxy.toml:3: server.workers: must be between 0 and 256, got 300"),
            std::string::npos)
      << e;
  EXPECT_NE(
      tomlError("[server]\nmax_udp_size = 511\n").find("dotproxy.toml:2: server.max_udp_size:"),
      std::string::npos);
  EXPECT_NE(tomlError("[server]\nmax_udp_size = 4097\n").find("server.max_udp_size:"),
            std::string::npos);
  EXPECT_NE(tomlError("[upstream]\npadding_block = 513\n")
                .find("dotproxy.toml:2: upstream.padding_block:"),
            std::string::npos);
  EXPECT_NE(tomlError("[upstream]\nquery_timeout_ms = 0\n")
                .find("dotproxy.toml:2: upstream.query_timeout_ms:"),
            std::string::npos);
  EXPECT_NE(tomlError("[server]\ntcp_idle_timeout_ms = -5\n").find("server.tcp_idle_timeout_ms:"),
            std::string::npos);
  EXPECT_NE(tomlError("[server]\ntcp_max_output = 4095\n").find("server.tcp_max_output:"),
            std::string::npos);
  EXPECT_NE(tomlError("[server]\nworkers = -1\n").find("server.workers: must be between"),
            std::string::npos);
}

TEST(ConfigTomlErrors, UnknownKeySuggestsTheNearMiss) {
  std::string e = tomlError("[server]\nworkerz = 2\n");
  EXPECT_NE(e.find("dotproxy.toml:2: server.workerz: unknown key (did you mean \"workers\"?)"),
            std::string::npos)
      << e;
  e = tomlError("[upstream]\n\n\nquery_timeout = 100\n");
  EXPECT_NE(e.find("dotproxy.toml:4: upstream.query_timeout: unknown key (did you mean "
                   "\"query_timeout_ms\"?)"),
            std::string::npos)
      << e;
  e = tomlError("[[upstream.servers]]\naddress = \"1.1.1.1\"\ntlsname = \"x\"\n");
  EXPECT_NE(e.find("dotproxy.toml:3: upstream.servers[0].tlsname: unknown key"), std::string::npos)
      << e;
  e = tomlError("[servr]\nworkers = 1\n");
  EXPECT_NE(e.find("dotproxy.toml:1: servr: unknown key"), std::string::npos) << e;
  e = tomlError("workers = 1\n");
  EXPECT_NE(e.find("dotproxy.toml:1: workers: unknown key"), std::string::npos) << e;
  EXPECT_NE(e.find("[server]"), std::string::npos) << e;
}

TEST(ConfigTomlErrors, WrongTypes) {
  std::string e = tomlError("[server]\nworkers = \"4\"\n");
  EXPECT_NE(e.find("dotproxy.toml:2: server.workers: expected an integer, got a string"),
            std::string::npos)
      << e;
  e = tomlError("[server]\nworkers = 4.0\n");
  EXPECT_NE(e.find("server.workers: expected an integer, got a float"), std::string::npos) << e;
  e = tomlError("[server]\nforward_ecs = 1\n");
  EXPECT_NE(e.find("dotproxy.toml:2: server.forward_ecs: expected a boolean"), std::string::npos)
      << e;
  e = tomlError("[server]\nlisten = \"127.0.0.1:53\"\n");
  EXPECT_NE(e.find("dotproxy.toml:2: server.listen: expected an array"), std::string::npos) << e;
  e = tomlError("[server]\nlisten = [53]\n");
  EXPECT_NE(e.find("dotproxy.toml:2: server.listen[0]: expected a string, got an integer"),
            std::string::npos)
      << e;
  e = tomlError("server = 1\n");
  EXPECT_NE(e.find("dotproxy.toml:1: server: expected a table"), std::string::npos) << e;
  e = tomlError("[upstream]\nservers = [\"1.1.1.1\"]\n");
  EXPECT_NE(e.find("dotproxy.toml:2: upstream.servers[0]: expected a table"), std::string::npos)
      << e;
}

TEST(ConfigTomlErrors, SyntaxErrorUsesParserLine) {
  std::string e = tomlError("[server]\nworkers = = 2\n");
  EXPECT_EQ(e.rfind("dotproxy.toml:2: ", 0), 0u) << e;
}

TEST(ConfigTomlErrors, BadPins) {
  const std::string head = "[[upstream.servers]]\naddress = \"1.1.1.1\"\n";
  std::string e = tomlError(head + "pins = [\"not base64!\"]\n");
  EXPECT_NE(e.find("dotproxy.toml:3: upstream.servers[0].pins[0]:"), std::string::npos) << e;
  EXPECT_NE(e.find("SHA-256"), std::string::npos) << e;
  // Valid base64 of 16 bytes, not 32.
  e = tomlError(head + "pins = [\"AAAAAAAAAAAAAAAAAAAAAA==\"]\n");
  EXPECT_NE(e.find("upstream.servers[0].pins[0]:"), std::string::npos) << e;
  // 33 bytes.
  e = tomlError(head + "pins = [\"" + std::string(44, 'A') + "\"]\n");
  EXPECT_NE(e.find("upstream.servers[0].pins[0]:"), std::string::npos) << e;
  // Non-canonical final character (trailing bits set).
  std::string bad = kPin;
  bad[42] = 'V';
  e = tomlError(head + "pins = [\"" + bad + "\"]\n");
  EXPECT_NE(e.find("upstream.servers[0].pins[0]:"), std::string::npos) << e;
  e = tomlError(head + "pins = \"" + kPin + "\"\n");
  EXPECT_NE(e.find("upstream.servers[0].pins: expected an array"), std::string::npos) << e;
}

TEST(ConfigTomlErrors, BadListenAddresses) {
  std::string e = tomlError("[server]\nlisten = [\"localhost:53\"]\n");
  EXPECT_NE(e.find("dotproxy.toml:2: server.listen[0]: \"localhost:53\" is not an IP address"),
            std::string::npos)
      << e;
  e = tomlError("[server]\nlisten = [\"127.0.0.1:99999\"]\n");
  EXPECT_NE(e.find("server.listen[0]:"), std::string::npos) << e;
  e = tomlError("[server]\nlisten = [\n  \"127.0.0.1:53\",\n  \"127.0.0.1\",\n]\n");
  EXPECT_NE(e.find("dotproxy.toml:4: server.listen[1]: 127.0.0.1:53 is listed twice"),
            std::string::npos)
      << e;
  e = tomlError("[server]\nlisten = []\n");
  EXPECT_NE(e.find("dotproxy.toml:2: server.listen: empty"), std::string::npos) << e;
}

TEST(ConfigToml, Ipv6ListenAndEphemeralPort) {
  Settings s = defaults();
  applyToml(s, "[server]\nlisten = [\"[::1]:0\", \"::1\"]\n", "x.toml");
  ASSERT_EQ(s.listen.size(), 2u);
  EXPECT_EQ(s.listen[0].family(), AF_INET6);
  EXPECT_EQ(s.listen[0].port(), 0);
  EXPECT_EQ(addr(s.listen[1]), "[::1]:53");
}

TEST(ConfigTomlErrors, BadUpstreamServers) {
  std::string e = tomlError("[[upstream.servers]]\naddress = \"dns.google\"\n");
  EXPECT_NE(e.find("dotproxy.toml:2: upstream.servers[0].address: \"dns.google\" is a host name"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("tls_name"), std::string::npos) << e;
  e = tomlError("[[upstream.servers]]\naddress = \"1.1.1.1:853\"\n");
  EXPECT_NE(e.find("upstream.servers[0].address:"), std::string::npos) << e;
  e = tomlError("[[upstream.servers]]\nport = 853\n");
  EXPECT_NE(e.find("dotproxy.toml:1: upstream.servers[0].address: missing"), std::string::npos)
      << e;
  e = tomlError("[[upstream.servers]]\naddress = \"1.1.1.1\"\nport = 0\n");
  EXPECT_NE(e.find("dotproxy.toml:3: upstream.servers[0].port: must be between 1 and 65535"),
            std::string::npos)
      << e;
  e = tomlError("[[upstream.servers]]\naddress = \"1.1.1.1\"\nport = 65536\n");
  EXPECT_NE(e.find("upstream.servers[0].port:"), std::string::npos) << e;
  e = tomlError("[[upstream.servers]]\naddress = \"1.1.1.1\"\ntls_name = \"bad name\"\n");
  EXPECT_NE(e.find("dotproxy.toml:3: upstream.servers[0].tls_name:"), std::string::npos) << e;
  e = tomlError("[[upstream.servers]]\naddress = \"1.1.1.1\"\nca_file = \"/nonexistent/ca.pem\"\n");
  EXPECT_NE(e.find("dotproxy.toml:3: upstream.servers[0].ca_file: cannot read"), std::string::npos)
      << e;
  e = tomlError(
      "[[upstream.servers]]\naddress = \"1.1.1.1\"\n[[upstream.servers]]\naddress = \"1.1.1.1\"\n");
  EXPECT_NE(e.find("dotproxy.toml:3: upstream.servers[1]: 1.1.1.1:853 is already listed"),
            std::string::npos)
      << e;
  e = tomlError("[upstream]\nservers = []\n");
  EXPECT_NE(e.find("dotproxy.toml:2: upstream.servers: empty"), std::string::npos) << e;
}

TEST(ConfigTomlErrors, CrossFieldChecksPointAtTheKey) {
  std::string e = tomlError("[upstream]\nquery_timeout_ms = 1000\nattempt_timeout_ms = 1500\n");
  EXPECT_NE(e.find("dotproxy.toml:3: upstream.attempt_timeout_ms: attempt timeout (1500 ms) is "
                   "longer than the query timeout (1000 ms)"),
            std::string::npos)
      << e;
  // Only the query timeout set: it is the one to blame.
  e = tomlError("[upstream]\nquery_timeout_ms = 500\n");
  EXPECT_NE(e.find("dotproxy.toml:2: upstream.query_timeout_ms: attempt timeout"),
            std::string::npos)
      << e;
  e = tomlError("[upstream]\nbackoff_initial_ms = 20000\n");
  EXPECT_NE(e.find("dotproxy.toml:2: upstream.backoff_initial_ms:"), std::string::npos) << e;
}

TEST(ConfigUpstreamSpec, Variants) {
  UpstreamSettings u = parseUpstreamSpec("1.1.1.1");
  EXPECT_EQ(addr(u.address), "1.1.1.1:853");
  EXPECT_EQ(u.tls_name, "cloudflare-dns.com");

  u = parseUpstreamSpec("1.1.1.1:853");
  EXPECT_EQ(addr(u.address), "1.1.1.1:853");
  EXPECT_EQ(u.tls_name, "cloudflare-dns.com");

  u = parseUpstreamSpec("1.0.0.1#cloudflare-dns.com");
  EXPECT_EQ(addr(u.address), "1.0.0.1:853");
  EXPECT_EQ(u.tls_name, "cloudflare-dns.com");

  u = parseUpstreamSpec("192.0.2.7:8853#dot.example.net");
  EXPECT_EQ(addr(u.address), "192.0.2.7:8853");
  EXPECT_EQ(u.tls_name, "dot.example.net");

  u = parseUpstreamSpec("[2606:4700:4700::1111]:853#cloudflare-dns.com");
  EXPECT_EQ(addr(u.address), "[2606:4700:4700::1111]:853");
  EXPECT_EQ(u.tls_name, "cloudflare-dns.com");

  u = parseUpstreamSpec("2606:4700:4700::1001");
  EXPECT_EQ(addr(u.address), "[2606:4700:4700::1001]:853");
  EXPECT_EQ(u.tls_name, "cloudflare-dns.com");

  u = parseUpstreamSpec("[2001:db8::53]");
  EXPECT_EQ(addr(u.address), "[2001:db8::53]:853");
  EXPECT_EQ(u.tls_name, "");

  u = parseUpstreamSpec("9.9.9.9");
  EXPECT_EQ(u.tls_name, "");  // unknown provider: verify the IP address
}

TEST(ConfigUpstreamSpec, Errors) {
  auto error = [](std::string_view spec) {
    try {
      parseUpstreamSpec(spec);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  std::string e = error("dns.google#dns.google");
  EXPECT_NE(e.find("is a host name"), std::string::npos) << e;
  EXPECT_NE(e.find("after '#'"), std::string::npos) << e;
  EXPECT_NE(error("dns.google:853").find("is a host name"), std::string::npos);
  EXPECT_NE(error("1.1.1.1:0").find("port: must be between 1 and 65535"), std::string::npos);
  EXPECT_NE(error("1.1.1.1:70000").find("port:"), std::string::npos);
  EXPECT_NE(error("1.1.1.1:abc").find("expected an integer"), std::string::npos);
  EXPECT_NE(error("1.1.1.1#").find("empty TLS name"), std::string::npos);
  EXPECT_NE(error("[2001:db8::1:853").find("missing ']'"), std::string::npos);
  EXPECT_NE(error("[1.1.1.1]:853").find("brackets"), std::string::npos);
  EXPECT_NE(error("").find("missing"), std::string::npos);
  EXPECT_NE(error("300.1.1.1").find("not an IPv4 or IPv6 address"), std::string::npos);
  EXPECT_NE(error("1.1.1.1#bad_name!").find("not a valid host name"), std::string::npos);
}

TEST_F(SettingsTest, FlagsWinOverTheFile) {
  std::string cfg = write("dotproxy.toml", R"([server]
listen = ["127.0.0.1:5300"]
workers = 2
log_level = "error"
[upstream]
query_timeout_ms = 3000
[[upstream.servers]]
address = "9.9.9.9"
tls_name = "dns.quad9.net"
)");
  CliResult r =
      runCli({"--config",    cfg,         "--listen",        "[::1]:5353",
              "--listen",    "127.0.0.2", "--workers",       "3",
              "--log-level", "warn",      "--query-timeout", "900",
              "--upstream",  "1.1.1.1",   "--upstream",      "[2001:db8::1]:853#dot.example",
              "--pin",       kPin,        "--insecure",      "--check-config"});
  ASSERT_TRUE(r.settings) << r.err;
  EXPECT_EQ(r.exit_code, 0);
  const Settings& s = *r.settings;
  EXPECT_EQ(s.config_file, cfg);
  ASSERT_EQ(s.listen.size(), 2u);
  EXPECT_EQ(addr(s.listen[0]), "[::1]:5353");
  EXPECT_EQ(addr(s.listen[1]), "127.0.0.2:53");
  EXPECT_EQ(s.workers, 3u);
  EXPECT_EQ(s.log_level, log::Level::Warn);
  EXPECT_EQ(s.query_timeout, 900ms);
  ASSERT_EQ(s.upstreams.size(), 2u);
  EXPECT_EQ(addr(s.upstreams[0].address), "1.1.1.1:853");
  EXPECT_EQ(s.upstreams[1].tls_name, "dot.example");
  for (const auto& u : s.upstreams) EXPECT_EQ(u.pins, std::vector<std::string>{kPin});
  EXPECT_TRUE(s.insecure);
  EXPECT_TRUE(s.check_config);
}

TEST_F(SettingsTest, FileValuesSurviveWhenNoFlagOverrides) {
  std::string ca = write("ca.pem", "x\n");
  std::string cfg = write("dotproxy.toml",
                          "[server]\nworkers = 2\n[[upstream.servers]]\n"
                          "address = \"9.9.9.9\"\n");
  CliResult r = runCli({"--config", cfg, "--pin", kPin, "--ca-file", ca});
  ASSERT_TRUE(r.settings) << r.err;
  EXPECT_EQ(r.settings->workers, 2u);
  EXPECT_EQ(r.settings->ca_file, ca);
  ASSERT_EQ(r.settings->upstreams.size(), 1u);
  EXPECT_EQ(r.settings->upstreams[0].pins, std::vector<std::string>{kPin});  // no --upstream: all
  EXPECT_FALSE(r.settings->check_config);
  EXPECT_FALSE(r.settings->insecure);
}

TEST(ConfigCommandLine, NoArgumentsGivesDefaults) {
  CliResult r = runCli({});
  ASSERT_TRUE(r.settings) << r.err;
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(addr(r.settings->listen[0]), "127.0.0.1:53");
  EXPECT_EQ(r.settings->upstreams.size(), 2u);
}

TEST(ConfigCommandLine, HelpAndVersionExitZero) {
  CliResult r = runCli({"--help"});
  EXPECT_FALSE(r.settings);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--upstream"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("DNS-over-TLS"), std::string::npos) << r.out;

  r = runCli({"--version"});
  EXPECT_FALSE(r.settings);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("dotproxy " DOTPROXY_VERSION), std::string::npos) << r.out;
}

TEST(ConfigCommandLine, UsageErrorsExitTwoWithOneLine) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--bogus"},
           {"stray"},
           {"--workers"},
           {"--workers", "abc"},
           {"--workers", "257"},
           {"--log-level", "loud"},
           {"--query-timeout", "0"},
           {"--query-timeout", "100"},  // shorter than the default attempt timeout
           {"--listen", "localhost"},
           {"--listen", "127.0.0.1", "--listen", "127.0.0.1:53"},
           {"--upstream", "dns.google"},
           {"--pin", "abc"},
           {"--ca-file", "/nonexistent/ca.pem"},
           {"--config", "/nonexistent/dotproxy.toml"},
       }) {
    CliResult r = runCli(args);
    EXPECT_FALSE(r.settings) << args[0];
    EXPECT_EQ(r.exit_code, 2) << args[0];
    EXPECT_EQ(r.err.rfind("dotproxy: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

TEST(ConfigCommandLine, ErrorMessagesNameTheFlag) {
  EXPECT_NE(runCli({"--workers", "300"}).err.find("dotproxy: --workers: must be between 0 and 256"),
            std::string::npos);
  std::string err = runCli({"--upstream", "dns.google"}).err;
  EXPECT_NE(err.find("dotproxy: --upstream \"dns.google\": \"dns.google\" is a host name"),
            std::string::npos)
      << err;
  err = runCli({"--query-timeout", "100"}).err;
  EXPECT_NE(err.find("dotproxy: --query-timeout: attempt timeout (700 ms)"), std::string::npos)
      << err;
  err = runCli({"--config", "/nonexistent/dotproxy.toml"}).err;
  EXPECT_NE(err.find("dotproxy: /nonexistent/dotproxy.toml: cannot open config file"),
            std::string::npos)
      << err;
}

TEST_F(SettingsTest, ConfigFileErrorsThroughTheCommandLine) {
  std::string cfg = write("dotproxy.toml", "[server]\n\nworkers = 999\n");
  CliResult r = runCli({"--config", cfg});
  EXPECT_FALSE(r.settings);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("dotproxy.toml:3: server.workers:"), std::string::npos) << r.err;
  EXPECT_EQ(runCli({"--config", dir_.string()}).exit_code, 2);  // a directory
}

TEST_F(SettingsTest, FlagCanFixAFileTimeoutPair) {
  // The file's attempt timeout exceeds the default query timeout; the flag raises it. Validation
  // runs after the flags, so this is accepted.
  std::string cfg = write("dotproxy.toml", "[upstream]\nattempt_timeout_ms = 2000\n");
  CliResult r = runCli({"--config", cfg, "--query-timeout", "2500"});
  ASSERT_TRUE(r.settings) << r.err;
  r = runCli({"--config", cfg});
  EXPECT_NE(r.err.find("dotproxy.toml:2: upstream.attempt_timeout_ms:"), std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace dotproxy::config

namespace dotproxy::config {
namespace {

TEST(ConfigCache, SectionSetsEveryKey) {
  Settings s = defaults();
  EXPECT_EQ(s.cache_size, size_t{64} << 20);
  EXPECT_TRUE(s.serve_stale);
  applyToml(s,
            "[cache]\nsize = 0\nshards = 4\nmin_ttl = 5\nmax_ttl = 600\nnegative_max_ttl = 60\n"
            "servfail_ttl = 2\nserve_stale = false\nstale_max_age = 3600\nprefetch_percent = 0\n",
            "x.toml");
  EXPECT_EQ(s.cache_size, 0u);
  EXPECT_EQ(s.cache_shards, 4u);
  EXPECT_EQ(s.cache_min_ttl.count(), 5);
  EXPECT_EQ(s.cache_max_ttl.count(), 600);
  EXPECT_EQ(s.cache_negative_max_ttl.count(), 60);
  EXPECT_EQ(s.cache_servfail_ttl.count(), 2);
  EXPECT_FALSE(s.serve_stale);
  EXPECT_EQ(s.stale_max_age.count(), 3600);
  EXPECT_EQ(s.prefetch_percent, 0u);
}

TEST(ConfigCache, ErrorsNameTheKey) {
  std::string e = tomlError("[cache]\nsise = 1\n");
  EXPECT_NE(e.find("dotproxy.toml:2: cache.sise: unknown key (did you mean \"size\"?)"),
            std::string::npos)
      << e;
  e = tomlError("[cache]\nshards = 0\n");
  EXPECT_NE(e.find("dotproxy.toml:2: cache.shards: must be between 1 and 1024"), std::string::npos)
      << e;
  e = tomlError("size = 1\n");
  EXPECT_NE(e.find("(put it under [cache])"), std::string::npos) << e;
  e = tomlError("[cache]\nmin_ttl = 700\nmax_ttl = 600\n");
  EXPECT_NE(e.find("cache.min_ttl: must not exceed cache.max_ttl"), std::string::npos) << e;
}

}  // namespace
}  // namespace dotproxy::config

namespace dotproxy::config {
namespace {

TEST(ConfigToml, OperatorEndpointAndLogs) {
  Settings s = defaults();
  EXPECT_FALSE(s.metrics.has_value());
  EXPECT_EQ(s.log_format, log::Format::Text);
  EXPECT_EQ(s.query_log, 0u);
  applyToml(s, "[server]\nmetrics = \"127.0.0.1\"\nlog_format = \"json\"\nquery_log = 100\n",
            "dotproxy.toml");
  ASSERT_TRUE(s.metrics.has_value());
  EXPECT_EQ(s.metrics->toString(), "127.0.0.1:9153");  // CoreDNS's metrics port by default
  EXPECT_EQ(s.log_format, log::Format::Json);
  EXPECT_EQ(s.query_log, 100u);
  applyToml(s, "[server]\nmetrics = \"\"\n", "dotproxy.toml");
  EXPECT_FALSE(s.metrics.has_value());
}

TEST(ConfigTomlErrors, OperatorEndpointAndLogs) {
  EXPECT_NE(tomlError("[server]\nmetrics = \"localhost:9153\"\n")
                .find("dotproxy.toml:2: server.metrics: \"localhost:9153\" is not an IP address"),
            std::string::npos);
  EXPECT_NE(tomlError("[server]\nlog_format = \"xml\"\n")
                .find("dotproxy.toml:2: server.log_format: \"xml\" is not a log format"),
            std::string::npos);
  EXPECT_NE(tomlError("[server]\nquery_log = -1\n").find("dotproxy.toml:2: server.query_log"),
            std::string::npos);
}

TEST(ConfigCommandLine, OperatorEndpointAndLogFlags) {
  CliResult r = runCli({"--metrics", "[::1]:9100", "--log-format", "json", "--query-log", "1"});
  ASSERT_TRUE(r.settings) << r.err;
  EXPECT_EQ(r.settings->metrics->toString(), "[::1]:9100");
  EXPECT_EQ(r.settings->log_format, log::Format::Json);
  EXPECT_EQ(r.settings->query_log, 1u);
  r = runCli({"--log-format", "yaml"});
  EXPECT_FALSE(r.settings);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--log-format: \"yaml\" is not a log format"), std::string::npos) << r.err;
  r = runCli({"--metrics", "nowhere"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--metrics:"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace dotproxy::config
