// Target 1: the general message parser (dns::parseMessage) and a round trip through the core's
// serialiser (dns::MessageBuilder). The builder writes names uncompressed and rdata as opaque
// bytes, so the round trip is: parse, rebuild every field, parse again; the two parses must be
// equal, and rebuilding the second parse must give the same bytes again (the builder's output is a
// fixed point). message_mutator.cc adds an opt-in structure-aware mutator to the libFuzzer binary.

#include <cstddef>
#include <cstdint>

#include "check.h"
#include "dotproxy/dns/message.h"
#include "message_mutator.h"

namespace {

using namespace dotproxy;
using dns::Message;
using dns::Record;

WireView rdataOf(WireView wire, const Record& r) {
  return wire.subspan(r.rdata_offset, r.rdlength);
}

bool sameRecords(const std::vector<Record>& a, WireView wa, const std::vector<Record>& b,
                 WireView wb) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const WireView ra = rdataOf(wa, a[i]), rb = rdataOf(wb, b[i]);
    if (!(a[i].name == b[i].name) || a[i].type != b[i].type || a[i].klass != b[i].klass ||
        a[i].ttl != b[i].ttl || a[i].rdlength != b[i].rdlength ||
        !std::equal(ra.begin(), ra.end(), rb.begin(), rb.end())) {
      return false;
    }
  }
  return true;
}

bool sameEdns(const std::optional<dns::Edns>& a, const std::optional<dns::Edns>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a) return true;
  if (a->udp_size != b->udp_size || a->ext_rcode != b->ext_rcode || a->version != b->version ||
      a->do_bit != b->do_bit || a->options.size() != b->options.size()) {
    return false;
  }
  for (size_t i = 0; i < a->options.size(); ++i) {
    if (a->options[i].code != b->options[i].code || a->options[i].data != b->options[i].data) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const WireView wire(reinterpret_cast<const std::byte*>(data), size);
  auto first = dns::parseMessage(wire);
  if (!first) return 0;
  const Message& m = *first;
  // Every record's rdata lies inside the message.
  for (const auto* section : {&m.answer, &m.authority, &m.additional}) {
    for (const Record& r : *section) FUZZ_CHECK(r.rdata_offset + r.rdlength <= size);
  }

  PacketBuffer again;
  // Rebuilding can only fail by growing past 64 KiB: compressed names are written out in full.
  if (!fuzz::serialise(m, wire, again)) return 0;
  auto second = dns::parseMessage(again);
  FUZZ_CHECK(second.has_value());
  const Message& m2 = *second;
  // The header round-trips except its counts, which the builder writes from what it holds: the
  // records that parsed, which is what the counts said.
  FUZZ_CHECK(m2.header.id == m.header.id && m2.header.flags == m.header.flags);
  FUZZ_CHECK(m2.header.qdcount == m.header.qdcount && m2.header.ancount == m.header.ancount &&
             m2.header.nscount == m.header.nscount && m2.header.arcount == m.header.arcount);
  FUZZ_CHECK(m2.questions.size() == m.questions.size());
  for (size_t i = 0; i < m.questions.size(); ++i) {
    FUZZ_CHECK(m2.questions[i].name == m.questions[i].name);
    FUZZ_CHECK(m2.questions[i].type == m.questions[i].type &&
               m2.questions[i].klass == m.questions[i].klass);
  }
  FUZZ_CHECK(sameRecords(m.answer, wire, m2.answer, again));
  FUZZ_CHECK(sameRecords(m.authority, wire, m2.authority, again));
  FUZZ_CHECK(sameRecords(m.additional, wire, m2.additional, again));
  FUZZ_CHECK(sameEdns(m.edns, m2.edns));
  FUZZ_CHECK(m2.rcode() == m.rcode());

  PacketBuffer third;
  FUZZ_CHECK(fuzz::serialise(m2, again, third));
  FUZZ_CHECK(third.size() == again.size() &&
             std::equal(third.view().begin(), third.view().end(), again.view().begin()));
  return 0;
}
