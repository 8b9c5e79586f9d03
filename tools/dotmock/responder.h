#pragma once
// The mock's answer synthesis: one query's bytes in, the reply's bytes out. No I/O, no clock; the
// caller (mock_server) applies the returned delay and frames/sends the reply. Not thread-safe: one
// Responder per event loop.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "dotproxy/dns/name.h"
#include "dotproxy/wire/buffer.h"

namespace dotproxy::dotmock {

enum class Transport : uint8_t { Udp, Tcp, Dot };

// Everything the mock counts. Read by tests through the `stats.dotmock. CH TXT` query and the
// {"stats":...} line printed at exit.
struct Counters {
  uint64_t connections = 0;  // DoT connections accepted
  uint64_t handshakes = 0;   // TLS handshakes completed
  uint64_t resumptions = 0;  // ... of which resumed a session
  uint64_t queries = 0;      // all transports; the stats query is not counted
  uint64_t dot_queries = 0;
  uint64_t udp_queries = 0;
  uint64_t tcp_queries = 0;
  uint64_t padded_queries = 0;  // Padding option present and length a multiple of 128
  uint64_t answers = 0;         // replies handed to a socket
  uint64_t formerr = 0;

  // Calls fn(name, value) for every counter, in a fixed order.
  template <class Fn>
  void forEach(Fn&& fn) const {
    fn("connections", connections);
    fn("handshakes", handshakes);
    fn("resumptions", resumptions);
    fn("queries", queries);
    fn("dot_queries", dot_queries);
    fn("udp_queries", udp_queries);
    fn("tcp_queries", tcp_queries);
    fn("padded_queries", padded_queries);
    fn("answers", answers);
    fn("formerr", formerr);
  }
};

// {"connections":1,"handshakes":1,...}
std::string countersJson(const Counters& c);

struct ResponderSettings {
  std::vector<dns::Name> zones{};     // empty = "test."
  std::string nxdomain_label = "nx";  // first label that makes NXDOMAIN
  size_t txt_size = 32;               // bytes of TXT text when the name does not say txt-N
  uint32_t ttl = 300;
  uint32_t negative_ttl = 60;          // SOA minimum, and the SOA record's TTL in negatives
  std::chrono::milliseconds delay{0};  // added to every answer (not to the stats answer)
};

inline constexpr size_t kResponsePaddingBlock = 468;  // RFC 8467 4.1, server recommendation
inline constexpr size_t kQueryPaddingBlock = 128;     // RFC 8467 4.1, client recommendation
inline constexpr size_t kMaxUdpReply = 1232;          // our EDNS buffer size, cap on UDP replies

struct Reply {
  PacketBuffer wire{};                 // empty: send nothing (garbage, or a response)
  std::chrono::milliseconds delay{0};  // send after this long
  bool counted = true;                 // false for the stats answer: not counted in `answers`
  bool garbage = false;                // no readable header: stream transports close the connection
};

class Responder {
 public:
  explicit Responder(ResponderSettings settings);

  // The reply to one query received over `transport` (a DNS message without any TCP length
  // prefix). Counts the query. Over UDP, replies larger than the client's limit (512 without EDNS,
  // else min(advertised, 1232)) are truncated: TC=1, question and OPT only.
  Reply respond(WireView query, Transport transport);

  Counters& counters() noexcept { return counters_; }
  const Counters& counters() const noexcept { return counters_; }

 private:
  struct Zone {
    dns::Name name{};
    PacketBuffer soa_rdata{};
  };
  const Zone* findZone(const dns::Name& qname) const noexcept;

  ResponderSettings settings_;
  std::vector<Zone> zones_;
  dns::Name stats_name_;
  Counters counters_;
};

}  // namespace dotproxy::dotmock
