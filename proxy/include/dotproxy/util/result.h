#pragma once
// Expected failures are values: Result<T> = std::expected<T, Errc>. Nothing on the per-packet path
// throws; exceptions are for start-up and configuration only.

#include <cstdint>
#include <expected>
#include <string_view>

namespace dotproxy {

enum class Errc : uint8_t {
  // wire / dns
  Truncated = 1,  // read past the end of the message
  BadPointer,     // compression pointer forward, to itself, or out of the message
  PointerLoop,    // too many compression hops
  LabelTooLong,   // label over 63 bytes
  NameTooLong,    // name over 255 bytes
  BadLabelType,   // 0x40/0x80 label types (RFC 6891 obsoleted extended labels)
  TrailingData,   // bytes after the last record
  TooLarge,       // message would exceed its limit
  FormErr,        // parsed, but breaks a protocol rule (QDCOUNT != 1, two OPTs, ...)
  NotImp,         // opcode we do not implement
  BadVers,        // EDNS version above 0
  NotQuery,       // QR=1 where a query was expected
  NotResponse,    // QR=0 where a response was expected
  Mismatch,       // answer does not match the outstanding query
  BadText,        // presentation-format input that does not parse
  // I/O
  WantRead,   // non-blocking operation must wait for readability
  WantWrite,  // non-blocking operation must wait for writability
  Closed,     // orderly close by the peer
  Reset,      // connection reset / broken pipe
  IoError,    // any other socket error
  Timeout,
  // TLS
  TlsError,         // protocol failure, not speaking TLS, bad record
  TlsVerifyFailed,  // certificate chain or name does not verify
  PinMismatch,      // SPKI pin does not match
  // resources
  Overloaded,  // a limit was reached (connections, in-flight queries)
  NoUpstream,  // no usable upstream
};

// Stable, lower-case, hyphenated name for logs and counters.
std::string_view errcName(Errc e) noexcept;

template <class T>
using Result = std::expected<T, Errc>;

}  // namespace dotproxy
