#pragma once
// DNS constants (RFC 1035, 6891 and the IANA registries) and the 12-byte header.

#include <cstdint>
#include <optional>
#include <string_view>

#include "dotproxy/wire/reader.h"
#include "dotproxy/wire/writer.h"

namespace dotproxy::dns {

inline constexpr size_t kHeaderSize = 12;
inline constexpr size_t kMaxNameWire = 255;
inline constexpr size_t kMaxLabel = 63;
inline constexpr uint16_t kClassicUdpSize = 512;
inline constexpr uint16_t kDefaultEdnsUdpSize = 1232;  // DNS Flag Day 2020
inline constexpr size_t kMaxMessage = 65535;

namespace type {
inline constexpr uint16_t A = 1, NS = 2, CNAME = 5, SOA = 6, PTR = 12, MX = 15, TXT = 16, AAAA = 28,
                          SRV = 33, DS = 43, RRSIG = 46, NSEC = 47, DNSKEY = 48, OPT = 41,
                          HTTPS = 65, IXFR = 251, AXFR = 252, ANY = 255;
}
namespace klass {
inline constexpr uint16_t IN = 1, CH = 3, ANY = 255;
}

enum class Opcode : uint8_t { Query = 0, IQuery = 1, Status = 2, Notify = 4, Update = 5 };

// The low 4 bits go in the header; values above 15 need an OPT record (extended RCODE).
enum class Rcode : uint16_t {
  NoError = 0,
  FormErr = 1,
  ServFail = 2,
  NxDomain = 3,
  NotImp = 4,
  Refused = 5,
  BadVers = 16
};

namespace edns_option {
inline constexpr uint16_t NSID = 3, ClientSubnet = 8, Cookie = 10, TcpKeepalive = 11, Padding = 12,
                          ExtendedError = 15;  // RFC 8914
}

// Header flag bits in the second 16-bit word.
namespace flag {
inline constexpr uint16_t QR = 0x8000, AA = 0x0400, TC = 0x0200, RD = 0x0100, RA = 0x0080,
                          AD = 0x0020, CD = 0x0010;
}
inline constexpr uint16_t kEdnsDo = 0x8000;  // DO bit in the OPT TTL's low 16 bits (RFC 3225)

struct Header {
  uint16_t id = 0;
  uint16_t flags = 0;  // QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE as on the wire
  uint16_t qdcount = 0, ancount = 0, nscount = 0, arcount = 0;

  bool qr() const noexcept { return flags & flag::QR; }
  bool tc() const noexcept { return flags & flag::TC; }
  bool rd() const noexcept { return flags & flag::RD; }
  bool cd() const noexcept { return flags & flag::CD; }
  bool ad() const noexcept { return flags & flag::AD; }
  uint8_t opcode() const noexcept { return static_cast<uint8_t>((flags >> 11) & 0xf); }
  uint8_t rcode() const noexcept { return static_cast<uint8_t>(flags & 0xf); }
  void setRcode(uint8_t r) noexcept { flags = static_cast<uint16_t>((flags & ~0xfu) | (r & 0xfu)); }
  void set(uint16_t bit, bool on) noexcept {
    flags = static_cast<uint16_t>(on ? (flags | bit) : (flags & ~bit));
  }
};

// Reads 12 bytes; sets Truncated on a short message.
Header readHeader(WireReader& r) noexcept;
void writeHeader(WireWriter& w, const Header& h);

// "A", "AAAA", "TYPE65534"...; unknown values render as TYPEnnn (RFC 3597).
std::string_view typeName(uint16_t type) noexcept;                  // empty if no mnemonic
std::optional<uint16_t> parseType(std::string_view text) noexcept;  // mnemonic or TYPEnnn
std::string_view rcodeName(uint16_t rcode) noexcept;  // "NOERROR", ...; empty if no mnemonic

}  // namespace dotproxy::dns
