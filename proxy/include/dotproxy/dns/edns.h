#pragma once
// EDNS(0) option payloads (RFC 6891 6.1.2) built and decoded for the general message model
// (dns/message.h): Client Subnet (RFC 7871), Cookie (RFC 7873), Padding (RFC 7830/8467) and
// Extended DNS Errors (RFC 8914). Used by the tools (dotq) and tests; protocol code only, no I/O.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dotproxy/dns/message.h"
#include "dotproxy/util/result.h"
#include "dotproxy/wire/buffer.h"

namespace dotproxy::dns {

// RFC 7871 6: FAMILY 1 (IPv4) or 2 (IPv6), source and scope prefix lengths, and the address.
struct ClientSubnet {
  uint16_t family = 1;
  uint8_t source_prefix = 0;
  uint8_t scope_prefix = 0;
  std::array<std::byte, 16> address{};  // the first 4 bytes for IPv4; bits past the prefix are 0

  // "192.0.2.0/24/0": address, source prefix, scope prefix (as dig prints it).
  std::string toText() const;
};

// Parses "ADDR/PREFIX" or "ADDR" (prefix 32 or 128) or "0/0" (an IPv4 /0, RFC 7871 7.1.2: the
// client asks that no subnet be used). Bits of ADDR past PREFIX are cleared. BadText otherwise.
Result<ClientSubnet> parseClientSubnetText(std::string_view text);

// The option (code 8) with the address cut to ceil(source_prefix / 8) bytes (RFC 7871 6).
EdnsOption clientSubnetOption(const ClientSubnet& subnet);
// Decodes an option's data. FormErr for an unknown family, a prefix beyond the family's width,
// an address longer or shorter than ceil(source_prefix / 8) bytes or with bits set past the prefix.
Result<ClientSubnet> parseClientSubnet(WireView data) noexcept;

// RFC 7873 4: an 8-byte client cookie, optionally followed by an 8 to 32-byte server cookie.
struct Cookie {
  std::vector<std::byte> client;  // 8 bytes
  std::vector<std::byte> server;  // empty, or 8..32 bytes
};
// FormErr for any other length (RFC 7873 5.2.2: such an option is malformed).
Result<Cookie> parseCookie(WireView data);
EdnsOption cookieOption(const Cookie& cookie);

// RFC 7830 / RFC 8467 4.1: the number of padding bytes that makes a message of `unpadded_size`
// bytes (its OPT already included, without the padding option) a multiple of `block` once the
// padding option (4-byte header + that many zero bytes) is added. 0 if block is 0.
size_t paddingLength(size_t unpadded_size, size_t block) noexcept;
EdnsOption paddingOption(size_t length);

// RFC 8914 2: INFO-CODE and EXTRA-TEXT (UTF-8, not NUL-terminated).
struct ExtendedError {
  uint16_t info_code = 0;
  std::string extra_text;
};
// FormErr if shorter than the 2-byte INFO-CODE.
Result<ExtendedError> parseExtendedError(WireView data);
// The registry's purpose ("Stale Answer", "Prohibited", ...); empty for an unassigned code.
std::string_view extendedErrorName(uint16_t info_code) noexcept;

// The option's name as dig prints it ("NSID", "CLIENT-SUBNET", "COOKIE", "TCP-KEEPALIVE",
// "PADDING", "EDE", ...); empty for a code without a name.
std::string_view ednsOptionName(uint16_t code) noexcept;

}  // namespace dotproxy::dns
