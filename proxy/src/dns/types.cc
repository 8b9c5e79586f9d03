#include "dotproxy/dns/types.h"

#include <array>
#include <charconv>
#include <utility>

namespace dotproxy::dns {

namespace {

struct TypeMnemonic {
  uint16_t value;
  std::string_view name;
};

constexpr std::array<TypeMnemonic, 36> kTypes{{
    {1, "A"},      {2, "NS"},     {5, "CNAME"},    {6, "SOA"},    {12, "PTR"},
    {13, "HINFO"}, {15, "MX"},    {16, "TXT"},     {17, "RP"},    {18, "AFSDB"},
    {24, "SIG"},   {25, "KEY"},   {28, "AAAA"},    {29, "LOC"},   {33, "SRV"},
    {35, "NAPTR"}, {39, "DNAME"}, {41, "OPT"},     {43, "DS"},    {44, "SSHFP"},
    {46, "RRSIG"}, {47, "NSEC"},  {48, "DNSKEY"},  {50, "NSEC3"}, {51, "NSEC3PARAM"},
    {52, "TLSA"},  {59, "CDS"},   {60, "CDNSKEY"}, {64, "SVCB"},  {65, "HTTPS"},
    {99, "SPF"},   {251, "IXFR"}, {252, "AXFR"},   {255, "ANY"},  {256, "URI"},
    {257, "CAA"},
}};

char asciiUpper(char c) noexcept {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c;
}

bool equalsUpper(std::string_view text, std::string_view upper) noexcept {
  if (text.size() != upper.size()) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (asciiUpper(text[i]) != upper[i]) return false;
  }
  return true;
}

}  // namespace

Header readHeader(WireReader& r) noexcept {
  Header h;
  h.id = r.u16();
  h.flags = r.u16();
  h.qdcount = r.u16();
  h.ancount = r.u16();
  h.nscount = r.u16();
  h.arcount = r.u16();
  if (!r.ok()) return Header{};
  return h;
}

void writeHeader(WireWriter& w, const Header& h) {
  w.u16(h.id);
  w.u16(h.flags);
  w.u16(h.qdcount);
  w.u16(h.ancount);
  w.u16(h.nscount);
  w.u16(h.arcount);
}

std::string_view typeName(uint16_t type) noexcept {
  for (const auto& t : kTypes) {
    if (t.value == type) return t.name;
  }
  return {};
}

std::optional<uint16_t> parseType(std::string_view text) noexcept {
  for (const auto& t : kTypes) {
    if (equalsUpper(text, t.name)) return t.value;
  }
  // RFC 3597 section 5: TYPEnnn for any type, with or without a mnemonic.
  if (text.size() > 4 && equalsUpper(text.substr(0, 4), "TYPE")) {
    std::string_view digits = text.substr(4);
    if (digits.size() > 5) return std::nullopt;
    unsigned v = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (ec != std::errc{} || end != digits.data() + digits.size() || v > 65535) {
      return std::nullopt;
    }
    return static_cast<uint16_t>(v);
  }
  return std::nullopt;
}

std::string_view rcodeName(uint16_t rcode) noexcept {
  switch (rcode) {
    case 0:
      return "NOERROR";
    case 1:
      return "FORMERR";
    case 2:
      return "SERVFAIL";
    case 3:
      return "NXDOMAIN";
    case 4:
      return "NOTIMP";
    case 5:
      return "REFUSED";
    case 6:
      return "YXDOMAIN";
    case 7:
      return "YXRRSET";
    case 8:
      return "NXRRSET";
    case 9:
      return "NOTAUTH";
    case 10:
      return "NOTZONE";
    case 11:
      return "DSOTYPENI";
    case 16:
      return "BADVERS";
    case 17:
      return "BADKEY";
    case 18:
      return "BADTIME";
    case 19:
      return "BADMODE";
    case 20:
      return "BADNAME";
    case 21:
      return "BADALG";
    case 22:
      return "BADTRUNC";
    case 23:
      return "BADCOOKIE";
    default:
      return {};
  }
}

}  // namespace dotproxy::dns
