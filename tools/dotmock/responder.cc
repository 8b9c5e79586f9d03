#include "responder.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <optional>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "dotproxy/dns/message.h"
#include "dotproxy/dns/query.h"
#include "dotproxy/dns/types.h"
#include "dotproxy/wire/reader.h"
#include "dotproxy/wire/writer.h"

namespace dotproxy::dotmock {

namespace {

constexpr std::array<std::byte, 4> kAddressV4 = {std::byte{192}, std::byte{0}, std::byte{2},
                                                 std::byte{1}};
constexpr std::array<std::byte, 16> kAddressV6 = {
    std::byte{0x20}, std::byte{0x01}, std::byte{0x0d}, std::byte{0xb8}, std::byte{0}, std::byte{0},
    std::byte{0},    std::byte{0},    std::byte{0},    std::byte{0},    std::byte{0}, std::byte{0},
    std::byte{0},    std::byte{0},    std::byte{0},    std::byte{1}};
constexpr size_t kOptionHeader = 4;
// Larger TXT texts cannot fit a 64 KiB message with their header, question and RR overhead.
constexpr size_t kMaxTxtSize = 65000;  // option code + option length (RFC 6891 6.1.2)

bool equalsIgnoreCase(std::string_view a, std::string_view b) noexcept {
  return std::ranges::equal(a, b, [](char x, char y) {
    auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; };
    return lower(x) == lower(y);
  });
}

// The N of a first label "PREFIX-N" (prefix matched case-insensitively); nullopt otherwise.
std::optional<uint64_t> labelNumber(std::string_view label, std::string_view prefix) noexcept {
  if (label.size() <= prefix.size() || !equalsIgnoreCase(label.substr(0, prefix.size()), prefix)) {
    return std::nullopt;
  }
  const std::string_view digits = label.substr(prefix.size());
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return n;
}

// Deterministic TXT text: the alphabet over and over, so tests can predict every byte.
std::string txtText(size_t size) {
  std::string text(size, 'a');
  for (size_t i = 0; i < size; ++i) text[i] = static_cast<char>('a' + i % 26);
  return text;
}

PacketBuffer soaRdata(const dns::Name& zone, uint32_t minimum) {
  const std::string origin = zone.isRoot() ? std::string() : zone.toText();
  PacketBuffer out;
  WireWriter w(out);
  dns::writeName(w, dns::Name::fromText("ns." + origin).value_or(zone));
  dns::writeName(w, dns::Name::fromText("hostmaster." + origin).value_or(zone));
  w.u32(1);      // serial
  w.u32(3600);   // refresh
  w.u32(600);    // retry
  w.u32(86400);  // expire
  w.u32(minimum);
  return out;
}

struct Rr {
  dns::Section section;
  const dns::Name* name;
  uint16_t type;
  uint16_t klass;
  uint32_t ttl;
  PacketBuffer rdata;
};

// What to answer, before it is encoded for a transport.
struct Plan {
  dns::Rcode rcode = dns::Rcode::NoError;
  std::vector<Rr> records{};
  std::chrono::milliseconds delay{0};
};

struct Encoding {
  std::optional<size_t> padding{};  // length of the Padding option's data, if one is added
  bool truncated = false;           // TC=1, no records
};

Result<PacketBuffer> encode(const dns::Message& q, const Plan& plan, const Encoding& enc) {
  const dns::Question& question = q.questions.front();
  dns::Header h;
  h.id = q.header.id;
  h.flags = dns::flag::QR | dns::flag::AA | dns::flag::RA;
  h.set(dns::flag::RD, q.header.rd());
  h.set(dns::flag::CD, q.header.cd());
  h.set(dns::flag::TC, enc.truncated);
  h.setRcode(static_cast<uint8_t>(plan.rcode));

  PacketBuffer out;
  dns::MessageBuilder b(out);
  b.header(h);
  b.question(question.name, question.type, question.klass);
  if (!enc.truncated) {
    for (const Rr& rr : plan.records)
      b.record(rr.section, *rr.name, rr.type, rr.klass, rr.ttl, rr.rdata);
  }
  if (q.edns) {
    dns::Edns edns;
    edns.udp_size = dns::kDefaultEdnsUdpSize;
    edns.do_bit = q.edns->do_bit;
    if (enc.padding) {
      edns.options.push_back({.code = dns::edns_option::Padding,
                              .data = std::vector<std::byte>(*enc.padding, std::byte{0})});
    }
    b.opt(edns);
  }
  if (auto done = b.finish(); !done) return std::unexpected(done.error());
  return out;
}

bool hasPadding(const dns::Message& q) noexcept {
  return q.edns && std::ranges::any_of(q.edns->options, [](const dns::EdnsOption& o) {
           return o.code == dns::edns_option::Padding;
         });
}

// RFC 1035 4.2.1 / RFC 6891 6.2.5: 512 without EDNS, else the advertised size (at least 512),
// capped by our own buffer size.
size_t udpLimit(const dns::Message& q) noexcept {
  if (!q.edns) return dns::kClassicUdpSize;
  return std::clamp<size_t>(q.edns->udp_size, dns::kClassicUdpSize, kMaxUdpReply);
}

// Encodes the plan for the transport: padded to a multiple of kResponsePaddingBlock if the query
// was padded (RFC 8467), truncated over UDP when too large. Padding is never what makes a UDP reply
// truncated (RFC 7830 3: padding must not push a message over the limit).
PacketBuffer encodeFor(const dns::Message& q, const Plan& plan, Transport transport) {
  const size_t limit = transport == Transport::Udp ? udpLimit(q) : dns::kMaxMessage;
  auto plain = encode(q, plan, {});
  if (plain && plain->size() <= limit) {
    if (!hasPadding(q)) return std::move(*plain);
    const size_t with_header = plain->size() + kOptionHeader;
    const size_t pad =
        (kResponsePaddingBlock - with_header % kResponsePaddingBlock) % kResponsePaddingBlock;
    auto padded = encode(q, plan, {.padding = pad});
    if (padded && padded->size() <= limit) return std::move(*padded);
    return std::move(*plain);
  }
  if (transport == Transport::Udp) {
    if (auto truncated = encode(q, plan, {.truncated = true})) return std::move(*truncated);
    return {};
  }
  // Too large even for a stream (txt-N beyond 64 KiB): say so rather than go silent.
  Plan failed{.rcode = dns::Rcode::ServFail};
  if (auto servfail = encode(q, failed, {})) return std::move(*servfail);
  return {};
}

}  // namespace

std::string countersJson(const Counters& c) {
  std::string out = "{";
  c.forEach([&out](std::string_view name, uint64_t value) {
    if (out.size() > 1) out += ',';
    out += fmt::format("\"{}\":{}", name, value);
  });
  out += '}';
  return out;
}

Responder::Responder(ResponderSettings settings) : settings_(std::move(settings)) {
  if (settings_.zones.empty()) settings_.zones.push_back(dns::Name::fromText("test.").value());
  for (const dns::Name& z : settings_.zones) {
    zones_.push_back({.name = z, .soa_rdata = soaRdata(z, settings_.negative_ttl)});
  }
  // Most specific zone first, so that a name under two zones gets the deeper one's SOA.
  std::ranges::stable_sort(zones_, std::greater<>(),
                           [](const Zone& z) { return z.name.labelCount(); });
  stats_name_ = dns::Name::fromText("stats.dotmock.").value();
}

const Responder::Zone* Responder::findZone(const dns::Name& qname) const noexcept {
  for (const Zone& z : zones_) {
    if (qname.isSubdomainOf(z.name)) return &z;
  }
  return nullptr;
}

Reply Responder::respond(WireView query, Transport transport) {
  auto parsed = dns::parseMessage(query);

  auto count = [&](bool padded) {
    ++counters_.queries;
    switch (transport) {
      case Transport::Udp:
        ++counters_.udp_queries;
        break;
      case Transport::Tcp:
        ++counters_.tcp_queries;
        break;
      case Transport::Dot:
        ++counters_.dot_queries;
        break;
    }
    if (padded && query.size() % kQueryPaddingBlock == 0) ++counters_.padded_queries;
  };

  if (!parsed) {
    // Unparsable: FORMERR if the header is readable and it is a query; garbage is dropped.
    WireReader r(query);
    const dns::Header h = dns::readHeader(r);
    if (!r.ok()) return {.garbage = true};
    if (h.qr()) return {};
    count(false);
    ++counters_.formerr;
    return {.wire = dns::buildErrorReply(query, dns::Rcode::FormErr)};
  }
  const dns::Message& q = *parsed;
  if (q.header.qr()) return {};  // never answer a response

  const bool one_question = q.questions.size() == 1;
  if (one_question && q.header.opcode() == 0 && q.questions.front().klass == dns::klass::CH &&
      q.questions.front().type == dns::type::TXT &&
      q.questions.front().name.equalsIgnoreCase(stats_name_)) {
    std::vector<std::string> strings;
    counters_.forEach([&strings](std::string_view name, uint64_t value) {
      strings.push_back(fmt::format("{}={}", name, value));
    });
    Plan plan;
    plan.records.push_back({.section = dns::Section::Answer,
                            .name = &q.questions.front().name,
                            .type = dns::type::TXT,
                            .klass = dns::klass::CH,
                            .ttl = 0,
                            .rdata = dns::txtRdata(strings)});
    return {.wire = encodeFor(q, plan, transport), .counted = false};
  }

  count(hasPadding(q));
  if (q.header.opcode() != 0) {
    return {.wire = dns::buildErrorReply(query, dns::Rcode::NotImp), .delay = settings_.delay};
  }
  if (!one_question) {
    ++counters_.formerr;
    return {.wire = dns::buildErrorReply(query, dns::Rcode::FormErr), .delay = settings_.delay};
  }
  if (q.edns && q.edns->version > 0) {  // RFC 6891 6.1.3
    return {.wire = dns::buildErrorReply(query, dns::Rcode::BadVers), .delay = settings_.delay};
  }

  const dns::Question& question = q.questions.front();
  Plan plan;
  plan.delay = settings_.delay;
  const Zone* zone = question.klass == dns::klass::IN ? findZone(question.name) : nullptr;
  if (!zone) {
    plan.rcode = dns::Rcode::Refused;
    return {.wire = encodeFor(q, plan, transport), .delay = plan.delay};
  }

  const std::string_view label = question.name.firstLabel();
  size_t txt_size = settings_.txt_size;
  if (auto n = labelNumber(label, "delay-")) {
    plan.delay += std::chrono::milliseconds(std::min<uint64_t>(*n, 24 * 3600 * 1000));
  } else if (auto size = labelNumber(label, "txt-")) {
    txt_size = static_cast<size_t>(std::min<uint64_t>(*size, dns::kMaxMessage + 1));
  } else if (equalsIgnoreCase(label, "servfail")) {
    plan.rcode = dns::Rcode::ServFail;
  } else if (equalsIgnoreCase(label, "refused")) {
    plan.rcode = dns::Rcode::Refused;
  } else if (question.name != zone->name && equalsIgnoreCase(label, settings_.nxdomain_label)) {
    plan.rcode = dns::Rcode::NxDomain;
  }

  auto negative = [&] {
    plan.records.push_back({.section = dns::Section::Authority,
                            .name = &zone->name,
                            .type = dns::type::SOA,
                            .klass = dns::klass::IN,
                            .ttl = std::min(settings_.ttl, settings_.negative_ttl),
                            .rdata = zone->soa_rdata.clone()});
  };
  auto positive = [&](uint16_t type, PacketBuffer rdata) {
    plan.records.push_back({.section = dns::Section::Answer,
                            .name = &question.name,
                            .type = type,
                            .klass = dns::klass::IN,
                            .ttl = settings_.ttl,
                            .rdata = std::move(rdata)});
  };

  if (plan.rcode == dns::Rcode::NxDomain) {
    negative();
  } else if (plan.rcode == dns::Rcode::NoError) {
    switch (question.type) {
      case dns::type::A:
        positive(dns::type::A, PacketBuffer(kAddressV4));
        break;
      case dns::type::AAAA:
        positive(dns::type::AAAA, PacketBuffer(kAddressV6));
        break;
      case dns::type::TXT:
        if (txt_size > kMaxTxtSize) {
          plan.rcode = dns::Rcode::ServFail;  // cannot fit in any message
        } else {
          // A TXT rdata holds at least one (possibly empty) character-string (RFC 1035 3.3.14).
          positive(dns::type::TXT, txt_size == 0
                                       ? dns::txtRdata(std::vector<std::string>{std::string()})
                                       : dns::txtRdata(txtText(txt_size)));
        }
        break;
      default:
        negative();
        break;  // NODATA (RFC 2308 2.2)
    }
  }
  return {.wire = encodeFor(q, plan, transport), .delay = plan.delay};
}

}  // namespace dotproxy::dotmock
