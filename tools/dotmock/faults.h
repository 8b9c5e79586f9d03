#pragma once
// The mock's fault script: rules that make it misbehave for chosen queries or connections, as
// upstreams do in production. Text in, rules out; no I/O (mock_server applies them).
//
// One rule per line, `MATCH ACTION [once]`; `#` starts a comment. The first rule that matches
// wins; a rule marked `once` is spent after it has fired once (so a retry of the same question
// gets the normal answer).
//   MATCH   any | query N (the Nth query, 1-based, every transport; the stats query is not
//           counted) | qname NAME (case-insensitive) | label L (first label) |
//           connection N (every query on the Nth DoT or TCP connection, 1-based; and the
//           connection itself for the connection actions)
//   ACTION  per query:       delay MS | drop | close | close-mid | wrong-id | wrong-question |
//                            malformed | truncated | oversized | undersized |
//                            servfail | refused | down MS
//           per connection:  stall-handshake | expired-cert | wrong-name-cert
//                            (with `any` or `connection N` only)

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dotproxy/dns/name.h"
#include "dotproxy/wire/buffer.h"

namespace dotproxy::dotmock {

enum class FaultMatch : uint8_t { Any, Query, Qname, Label, Connection };

enum class FaultAction : uint8_t {
  Delay,          // answer MS later
  Drop,           // never answer
  Close,          // close the connection instead of answering (UDP: drop)
  CloseMid,       // send half of the answer's frame, then close (UDP: drop)
  WrongId,        // the answer with another ID
  WrongQuestion,  // the answer with another question (type)
  Malformed,      // header and question, then a record whose owner points forward
  Truncated,      // the answer cut short inside its last record (frame length consistent)
  Oversized,      // streams: a length prefix announcing more than follows; UDP: a datagram
                  // larger than the query allowed
  Undersized,     // streams: a length prefix one byte short of the message, then the whole
                  // message (its last byte starts the next prefix); UDP: the last byte cut
  ServFail,
  Refused,
  Down,            // drop the query, close every listener and connection, listen again after MS
  StallHandshake,  // accept the connection and never answer its TLS handshake
  ExpiredCert,     // present an expired certificate (same name, in the CA file)
  WrongNameCert,   // present a certificate for another name (in the CA file)
};

bool isConnectionAction(FaultAction a) noexcept;
std::string_view faultActionName(FaultAction a) noexcept;

struct FaultRule {
  FaultMatch match = FaultMatch::Any;
  uint64_t number = 0;  // Query, Connection
  dns::Name name{};     // Qname
  std::string label;    // Label
  FaultAction action = FaultAction::Drop;
  uint32_t ms = 0;  // Delay, Down
  bool once = false;
  unsigned line = 0;
};

class FaultScript {
 public:
  FaultScript() = default;
  explicit FaultScript(std::vector<FaultRule> rules) : rules_(std::move(rules)) {}

  // The per-query rule for the `query_number`th query, named `qname`, arriving on stream
  // connection `connection` (0 for UDP); nullptr if none. Spends a `once` rule.
  const FaultRule* forQuery(uint64_t query_number, const dns::Name& qname,
                            uint64_t connection) noexcept;
  // The per-connection rule for the `connection`th stream connection; nullptr if none. Spends a
  // `once` rule.
  const FaultRule* forConnection(uint64_t connection) noexcept;

  const std::vector<FaultRule>& rules() const noexcept { return rules_; }
  bool empty() const noexcept { return rules_.empty(); }

 private:
  std::vector<FaultRule> rules_;
  std::vector<bool> spent_ = std::vector<bool>(rules_.size());
};

// The answer as `action` alters it (WrongId, WrongQuestion, Malformed, Truncated, ServFail,
// Refused); the other actions return it unchanged. `query` is the query it answers.
PacketBuffer alterAnswer(FaultAction action, WireView query, WireView answer);

// Parses a script; on error nullopt and *error = "line N: what is wrong".
std::optional<FaultScript> parseFaults(std::string_view text, std::string* error);

}  // namespace dotproxy::dotmock
