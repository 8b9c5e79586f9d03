#include "dotproxy/dns/edns.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>

#include "dotproxy/wire/reader.h"

namespace dotproxy::dns {
namespace {

constexpr uint16_t kFamilyV4 = 1, kFamilyV6 = 2;  // RFC 7871 6, IANA address family numbers
constexpr size_t kOptionHeader = 4;
constexpr size_t kCookieClient = 8, kCookieServerMin = 8, kCookieServerMax = 32;

unsigned familyBits(uint16_t family) noexcept {
  return family == kFamilyV4 ? 32 : family == kFamilyV6 ? 128 : 0;
}

size_t prefixBytes(unsigned prefix) noexcept {
  return (prefix + 7) / 8;
}

// Clears every bit of `a` past `prefix`; true if one was set.
bool clearPast(std::array<std::byte, 16>& a, unsigned prefix) noexcept {
  bool was_set = false;
  for (size_t i = 0; i < a.size(); ++i) {
    const unsigned first_bit = static_cast<unsigned>(i * 8);
    std::byte keep{0};
    if (prefix >= first_bit + 8) {
      keep = std::byte{0xff};
    } else if (prefix > first_bit) {
      keep = std::byte{static_cast<uint8_t>(0xff << (8 - (prefix - first_bit)))};
    }
    if ((a[i] & ~keep) != std::byte{0}) was_set = true;
    a[i] &= keep;
  }
  return was_set;
}

}  // namespace

std::string ClientSubnet::toText() const {
  char buf[INET6_ADDRSTRLEN] = {};
  const char* text =
      ::inet_ntop(family == kFamilyV6 ? AF_INET6 : AF_INET, address.data(), buf, sizeof buf);
  return fmt::format("{}/{}/{}", text ? text : "?", source_prefix, scope_prefix);
}

Result<ClientSubnet> parseClientSubnetText(std::string_view text) {
  const size_t slash = text.find('/');
  const std::string addr(text.substr(0, slash));
  ClientSubnet s;
  if (addr == "0") {  // dig's shorthand, as in "0/0"
    s.family = kFamilyV4;
  } else if (::inet_pton(AF_INET, addr.c_str(), s.address.data()) == 1) {
    s.family = kFamilyV4;
  } else if (::inet_pton(AF_INET6, addr.c_str(), s.address.data()) == 1) {
    s.family = kFamilyV6;
  } else {
    return std::unexpected(Errc::BadText);
  }
  unsigned prefix = familyBits(s.family);
  if (slash != std::string_view::npos) {
    const std::string_view p = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (p.empty() || ec != std::errc{} || end != p.data() + p.size()) {
      return std::unexpected(Errc::BadText);
    }
  } else if (addr == "0") {
    prefix = 0;
  }
  if (prefix > familyBits(s.family)) return std::unexpected(Errc::BadText);
  s.source_prefix = static_cast<uint8_t>(prefix);
  clearPast(s.address, prefix);
  return s;
}

EdnsOption clientSubnetOption(const ClientSubnet& subnet) {
  PacketBuffer data;
  WireWriter w(data);
  w.u16(subnet.family);
  w.u8(subnet.source_prefix);
  w.u8(subnet.scope_prefix);
  const size_t n = std::min(prefixBytes(subnet.source_prefix), subnet.address.size());
  w.bytes(WireView(subnet.address.data(), n));
  const WireView v = data.view();
  return {.code = edns_option::ClientSubnet, .data = std::vector<std::byte>(v.begin(), v.end())};
}

Result<ClientSubnet> parseClientSubnet(WireView data) noexcept {
  WireReader r(data);
  ClientSubnet s;
  s.family = r.u16();
  s.source_prefix = r.u8();
  s.scope_prefix = r.u8();
  if (!r.ok()) return std::unexpected(Errc::FormErr);
  const unsigned bits = familyBits(s.family);
  // RFC 7871 6: the address is exactly ceil(SOURCE PREFIX-LENGTH / 8) bytes, trailing bits zero.
  if (bits == 0 || s.source_prefix > bits || s.scope_prefix > bits ||
      r.remaining() != prefixBytes(s.source_prefix)) {
    return std::unexpected(Errc::FormErr);
  }
  const WireView addr = r.bytes(r.remaining());
  std::copy(addr.begin(), addr.end(), s.address.begin());
  if (clearPast(s.address, s.source_prefix)) return std::unexpected(Errc::FormErr);
  return s;
}

Result<Cookie> parseCookie(WireView data) {
  const size_t server = data.size() >= kCookieClient ? data.size() - kCookieClient : 0;
  if (data.size() < kCookieClient ||
      (server != 0 && (server < kCookieServerMin || server > kCookieServerMax))) {
    return std::unexpected(Errc::FormErr);
  }
  Cookie c;
  c.client.assign(data.begin(), data.begin() + kCookieClient);
  c.server.assign(data.begin() + kCookieClient, data.end());
  return c;
}

EdnsOption cookieOption(const Cookie& cookie) {
  EdnsOption o{.code = edns_option::Cookie, .data = cookie.client};
  o.data.insert(o.data.end(), cookie.server.begin(), cookie.server.end());
  return o;
}

size_t paddingLength(size_t unpadded_size, size_t block) noexcept {
  if (block == 0) return 0;
  const size_t with_header = unpadded_size + kOptionHeader;
  return (block - with_header % block) % block;
}

EdnsOption paddingOption(size_t length) {
  return {.code = edns_option::Padding, .data = std::vector<std::byte>(length, std::byte{0})};
}

Result<ExtendedError> parseExtendedError(WireView data) {
  WireReader r(data);
  ExtendedError e;
  e.info_code = r.u16();
  if (!r.ok()) return std::unexpected(Errc::FormErr);
  const WireView text = r.bytes(r.remaining());
  e.extra_text.assign(reinterpret_cast<const char*>(text.data()), text.size());
  return e;
}

std::string_view extendedErrorName(uint16_t info_code) noexcept {
  // IANA "Extended DNS Error Codes" registry (RFC 8914 5.2 and later additions).
  static constexpr std::string_view kNames[] = {
      "Other Error",
      "Unsupported DNSKEY Algorithm",
      "Unsupported DS Digest Type",
      "Stale Answer",
      "Forged Answer",
      "DNSSEC Indeterminate",
      "DNSSEC Bogus",
      "Signature Expired",
      "Signature Not Yet Valid",
      "DNSKEY Missing",
      "RRSIGs Missing",
      "No Zone Key Bit Set",
      "NSEC Missing",
      "Cached Error",
      "Not Ready",
      "Blocked",
      "Censored",
      "Filtered",
      "Prohibited",
      "Stale NXDOMAIN Answer",
      "Not Authoritative",
      "Not Supported",
      "No Reachable Authority",
      "Network Error",
      "Invalid Data",
      "Signature Expired before Valid",
      "Too Early",
      "Unsupported NSEC3 Iterations Value",
      "Unable to conform to policy",
      "Synthesized",
      "Invalid Query Type",
  };
  return info_code < std::size(kNames) ? kNames[info_code] : std::string_view();
}

std::string_view ednsOptionName(uint16_t code) noexcept {
  switch (code) {
    case 1:
      return "LLQ";
    case 2:
      return "UPDATE-LEASE";
    case edns_option::NSID:
      return "NSID";
    case 5:
      return "DAU";
    case 6:
      return "DHU";
    case 7:
      return "N3U";
    case edns_option::ClientSubnet:
      return "CLIENT-SUBNET";
    case 9:
      return "EXPIRE";
    case edns_option::Cookie:
      return "COOKIE";
    case edns_option::TcpKeepalive:
      return "TCP-KEEPALIVE";
    case edns_option::Padding:
      return "PADDING";
    case 13:
      return "CHAIN";
    case 14:
      return "KEY-TAG";
    case edns_option::ExtendedError:
      return "EDE";
    case 16:
      return "CLIENT-TAG";
    case 17:
      return "SERVER-TAG";
    case 18:
      return "REPORT-CHANNEL";
    case 19:
      return "ZONEVERSION";
  }
  return {};
}

}  // namespace dotproxy::dns
