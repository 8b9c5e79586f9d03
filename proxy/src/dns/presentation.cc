#include "dotproxy/dns/presentation.h"

#include <arpa/inet.h>

#include <fmt/format.h>

#include "dotproxy/dns/name.h"
#include "dotproxy/dns/types.h"
#include "dotproxy/wire/reader.h"
#include "dotproxy/wire/writer.h"

namespace dotproxy::dns {

namespace {

// Leading names in the rdata of the types that may compress them, and the fixed bytes after.
struct NameLayout {
  unsigned prefix = 0;  // fixed bytes before the first name (MX preference)
  unsigned names = 0;
  unsigned suffix = 0;  // fixed bytes after the names (SOA's five counters)
};

std::optional<NameLayout> layoutOf(uint16_t t) noexcept {
  switch (t) {
    case type::NS:
    case type::CNAME:
    case type::PTR:
      return NameLayout{.names = 1};
    case type::MX:
      return NameLayout{.prefix = 2, .names = 1};
    case type::SOA:
      return NameLayout{.names = 2, .suffix = 20};
    default:
      return std::nullopt;
  }
}

std::string unknownText(WireView rdata) {
  std::string out = fmt::format("\\# {}", rdata.size());
  if (!rdata.empty()) out += ' ';
  for (std::byte b : rdata) out += fmt::format("{:02x}", std::to_integer<unsigned>(b));
  return out;
}

std::string quoted(WireView s) {
  std::string out = "\"";
  for (std::byte b : s) {
    const auto c = std::to_integer<unsigned char>(b);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c > 0x7e) {
      out += fmt::format("\\{:03d}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

}  // namespace

Result<PacketBuffer> expandedRdata(WireView message, const Record& rec) {
  if (rec.rdata_offset > message.size() || rec.rdlength > message.size() - rec.rdata_offset) {
    return std::unexpected(Errc::Truncated);
  }
  const auto layout = layoutOf(rec.type);
  if (!layout) return PacketBuffer(message.subspan(rec.rdata_offset, rec.rdlength));
  WireReader r(message);
  r.seek(rec.rdata_offset);
  PacketBuffer out;
  WireWriter w(out);
  w.bytes(r.bytes(layout->prefix));
  for (unsigned i = 0; i < layout->names; ++i) writeName(w, readName(r));
  w.bytes(r.bytes(layout->suffix));
  if (!r.ok()) return std::unexpected(*r.error());
  if (r.pos() != rec.rdata_offset + rec.rdlength || !w.ok()) return std::unexpected(Errc::FormErr);
  return out;
}

std::string rdataText(uint16_t t, WireView rdata) {
  if (t == type::A && rdata.size() == 4) {
    char buf[INET_ADDRSTRLEN];
    if (::inet_ntop(AF_INET, rdata.data(), buf, sizeof(buf))) return buf;
  }
  if (t == type::AAAA && rdata.size() == 16) {
    char buf[INET6_ADDRSTRLEN];
    if (::inet_ntop(AF_INET6, rdata.data(), buf, sizeof(buf))) return buf;
  }
  if (t == type::TXT && !rdata.empty()) {
    WireReader r(rdata);
    std::string out;
    while (r.ok() && !r.atEnd()) {
      WireView s = r.bytes(r.u8());
      if (!out.empty()) out += ' ';
      out += quoted(s);
    }
    if (r.ok()) return out;
  }
  if (const auto layout = layoutOf(t)) {
    WireReader r(rdata);
    std::string out;
    if (layout->prefix == 2) out = fmt::format("{} ", r.u16());
    for (unsigned i = 0; i < layout->names; ++i) {
      if (i > 0) out += ' ';
      out += readName(r).toText();
    }
    for (unsigned i = 0; i < layout->suffix / 4; ++i) out += fmt::format(" {}", r.u32());
    if (r.ok() && r.atEnd()) return out;
  }
  return unknownText(rdata);
}

}  // namespace dotproxy::dns
