#pragma once
// dotq's command line: dig-style arguments in any order ("@server", "-p", "-t", "-x", "+tls", a
// name and a type in either order). Parsing does no I/O.

#include <chrono>
#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dotproxy/dns/edns.h"
#include "dotproxy/dns/name.h"
#include "dotproxy/tls/tls.h"

namespace dotproxy::dotq {

enum class Transport : uint8_t { Udp, Tcp, Tls };
enum class Output : uint8_t { Full, Short, Json };

struct TlsOptions {
  std::string ca_file;   // empty = system trust store
  std::string hostname;  // SNI and verified name; empty = the server as given
  std::vector<tls::SpkiPin> pins;
  bool insecure = false;
};

// One question; dig asks each name on the command line in turn, each with its own type and class.
struct Question {
  dns::Name name;
  uint16_t type = 1;   // A
  uint16_t klass = 1;  // IN
};

struct Options {
  std::string server = "127.0.0.1";  // IP literal or host name
  std::optional<uint16_t> port;      // default 53, or 853 with +tls
  int family = 0;                    // AF_UNSPEC, or AF_INET/AF_INET6 with -4/-6
  std::vector<Question> questions;   // at least one unless help
  Transport transport = Transport::Udp;
  TlsOptions tls;
  Output output = Output::Full;
  bool dnssec = false;  // DO bit
  bool cd = false;
  bool rd = true;
  bool ad = false;  // +adflag
  bool edns = true;
  uint16_t bufsize = 1232;
  // EDNS options (sent only with EDNS).
  bool nsid = false;                             // RFC 5001: ask for the server's NSID
  std::optional<dns::ClientSubnet> subnet;       // RFC 7871
  std::optional<size_t> padding_block;           // RFC 8467; unset = 128 over TLS, else none
  std::optional<std::vector<std::byte>> cookie;  // RFC 7873; empty = a random client cookie
  bool keepopen = false;                         // pipeline every query over one TCP/DoT connection
  bool stats = false;                            // timing breakdown per query
  std::chrono::milliseconds timeout{5000};       // per try
  unsigned retry = 2;                            // UDP tries after the first, as dig's +retry
  bool help = false;

  uint16_t effectivePort() const { return port.value_or(transport == Transport::Tls ? 853 : 53); }
  // RFC 8467 4.1: queries over TLS are padded to 128-byte blocks unless +nopadding; 0 = none.
  size_t effectivePadding() const {
    return padding_block.value_or(transport == Transport::Tls ? kDefaultPaddingBlock : 0);
  }
  static constexpr size_t kDefaultPaddingBlock = 128;
  static constexpr size_t kMaxPaddingBlock = 4096;
};

// A usage error in words, for one line on stderr.
std::expected<Options, std::string> parseArgs(std::span<const std::string> args);

// "4.3.2.1.in-addr.arpa." / nibble form under ip6.arpa.; nullopt if not an IP literal.
std::optional<std::string> reverseName(const std::string& address);

std::string_view usage();

}  // namespace dotproxy::dotq
