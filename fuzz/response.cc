// Target 5: upstream answer matching and validation. dns::parseResponse on arbitrary bytes, then
// answerMatches against a fixed query (ID 0x1234, example.com. A IN) and against the answer's own
// question, and, for an answer that matches a client's query, the reply the daemon builds from it.

#include <cstddef>
#include <cstdint>

#include "check.h"
#include "dotproxy/dns/message.h"
#include "dotproxy/dns/query.h"
#include "names.h"

namespace {

using namespace dotproxy;

// The client's query for a question: its own ID and spelling, with or without EDNS and DO.
PacketBuffer clientQuery(const dns::Name& name, uint16_t type, uint16_t klass, uint8_t variant) {
  PacketBuffer out;
  dns::MessageBuilder b(out);
  b.header({.id = 0x4242, .flags = static_cast<uint16_t>(variant & 1 ? dns::flag::RD : 0)});
  b.question(name, type, klass);
  if (variant & 2) b.opt({.udp_size = 1232, .do_bit = (variant & 4) != 0});
  FUZZ_CHECK(b.finish().has_value());
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const WireView wire(reinterpret_cast<const std::byte*>(data), size);
  auto r = dns::parseResponse(wire);
  if (!r) return 0;
  FUZZ_CHECK(r->header.qr() && r->header.qdcount == 1);
  FUZZ_CHECK(r->question_end >= dns::kHeaderSize + 5 && r->question_end <= r->end);
  FUZZ_CHECK(r->end <= size);
  if (r->opt_offset != 0) {
    FUZZ_CHECK(r->opt_offset >= r->question_end && r->opt_offset + r->opt_size == r->end);
  }
  // A validated answer is also a message the general parser takes.
  auto m = dns::parseMessage(wire);
  FUZZ_CHECK(m.has_value());
  FUZZ_CHECK(m->edns.has_value() == (r->opt_offset != 0));
  FUZZ_CHECK(m->questions.size() == 1 && m->questions[0].name == r->qname);

  static const dns::Name fixed = *dns::Name::fromText("example.com.");
  const bool fixed_match = dns::answerMatches(*r, 0x1234, fixed, dns::type::A, dns::klass::IN);
  FUZZ_CHECK(fixed_match == (r->header.id == 0x1234 && r->qname.equalsIgnoreCase(fixed) &&
                             r->qtype == dns::type::A && r->qclass == dns::klass::IN));
  FUZZ_CHECK(dns::answerMatches(*r, r->header.id, r->qname, r->qtype, r->qclass));
  FUZZ_CHECK(dns::answerMatches(*r, r->header.id, fuzz::flipCase(r->qname), r->qtype, r->qclass));
  FUZZ_CHECK(!dns::answerMatches(*r, r->header.id ^ 1, r->qname, r->qtype, r->qclass));
  FUZZ_CHECK(!dns::answerMatches(*r, r->header.id, r->qname, r->qtype ^ 1, r->qclass));

  // The client's reply, as the daemon builds it for a matching answer.
  const uint8_t variant = size > 0 ? data[size - 1] : 0;
  PacketBuffer query = clientQuery(fuzz::flipCase(r->qname), r->qtype, r->qclass, variant);
  auto q = dns::parseQuery(query);
  FUZZ_CHECK(q.has_value());
  for (size_t limit : {size_t{512}, q->maxUdpReply(1232), dns::kMaxMessage}) {
    PacketBuffer out;
    dns::buildClientReply(wire, *r, *q, query, limit, 1232, out);
    auto reply = dns::parseMessage(out);
    FUZZ_CHECK(reply.has_value());
    FUZZ_CHECK(out.size() <= limit);
    FUZZ_CHECK(reply->header.id == 0x4242 && reply->header.qr());
    FUZZ_CHECK(reply->questions.size() == 1 && reply->questions[0].name == q->qname);
    FUZZ_CHECK(reply->edns.has_value() == q->edns.present);
    FUZZ_CHECK(reply->rcode() == (r->rcode() & (q->edns.present ? 0xfff : 0xf)));
    // Untruncated, the reply holds every record the upstream sent, without its OPT.
    if (!reply->header.tc()) {
      FUZZ_CHECK(reply->answer.size() == m->answer.size() &&
                 reply->authority.size() == m->authority.size() &&
                 reply->additional.size() == m->additional.size());
    }
  }
  return 0;
}
