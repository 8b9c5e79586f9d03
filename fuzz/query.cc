// Target 2: the daemon's per-query fast path on a client's bytes: dns::parseQuery (header,
// question, OPT), the error replies the daemon sends for what it refuses, the query it sends
// upstream, and the client's reply built from an upstream answer to that query.

#include <cstddef>
#include <cstdint>

#include "check.h"
#include "dotproxy/dns/message.h"
#include "dotproxy/dns/query.h"

namespace {

using namespace dotproxy;

// Any reply we build must parse, answer the client's ID, and carry QR.
void checkReply(WireView reply, WireView query) {
  auto m = dns::parseMessage(reply);
  FUZZ_CHECK(m.has_value());
  FUZZ_CHECK(m->header.qr());
  FUZZ_CHECK(loadU16(reply.data()) == loadU16(query.data()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const WireView raw(reinterpret_cast<const std::byte*>(data), size);
  auto q = dns::parseQuery(raw);

  // The daemon's reply to what it refuses: what onQuery sends for each error, and SERVFAIL.
  for (dns::Rcode rc : {dns::Rcode::FormErr, dns::Rcode::NotImp, dns::Rcode::BadVers,
                        dns::Rcode::ServFail, dns::Rcode::Refused}) {
    PacketBuffer reply = dns::buildErrorReply(raw, rc);
    if (size < dns::kHeaderSize) {
      FUZZ_CHECK(reply.empty());
      continue;
    }
    checkReply(reply, raw);
    auto m = dns::parseMessage(reply);
    FUZZ_CHECK(m->rcode() == static_cast<uint16_t>(rc) || !m->edns);
  }
  if (!q) {
    FUZZ_CHECK(size >= dns::kHeaderSize || q.error() == Errc::Truncated);
    return 0;
  }

  FUZZ_CHECK(q->question_end <= size);
  // One message, nothing after it: the same bytes with one more are FORMERR (RFC 1035 4.2).
  {
    PacketBuffer longer(raw);
    longer.push(std::byte{0});
    auto lq = dns::parseQuery(longer);
    FUZZ_CHECK(!lq && lq.error() == Errc::FormErr);
  }
  FUZZ_CHECK(q->edns.ecs_offset + q->edns.ecs_len <= size);
  const size_t max_udp = q->maxUdpReply(1232);
  FUZZ_CHECK(max_udp >= 512 && max_udp <= 1232);

  // The query sent upstream is a well-formed query for the same question, padded to the block.
  for (size_t block : {size_t{0}, size_t{128}, size_t{468}}) {
    PacketBuffer up = dns::buildUpstreamQuery(
        *q, raw, 0xbeef, {.udp_size = 1232, .padding_block = block, .forward_ecs = block == 468});
    auto uq = dns::parseQuery(up);
    FUZZ_CHECK(uq.has_value());
    FUZZ_CHECK(uq->header.id == 0xbeef);
    FUZZ_CHECK(uq->qname == q->qname && uq->qtype == q->qtype && uq->qclass == q->qclass);
    FUZZ_CHECK(uq->edns.present && uq->edns.do_bit == q->edns.do_bit);
  }

  // An upstream answer to that query (a TXT record, which parseResponse accepts whatever the
  // question's type, and an OPT with an EDE and a padding option), then the client's reply from
  // it, within the client's UDP limit.
  PacketBuffer answer;
  dns::MessageBuilder b(answer);
  dns::Header h{.id = 0xbeef, .flags = dns::flag::QR | dns::flag::RA | dns::flag::AD};
  b.header(h);
  b.question(q->qname.lowered(), q->qtype, q->qclass);
  b.record(dns::Section::Answer, q->qname.lowered(), dns::type::TXT, q->qclass, 300,
           dns::txtRdata("fuzz"));
  dns::Edns e{.udp_size = 4096};
  e.options.push_back({dns::edns_option::ExtendedError, {std::byte{0}, std::byte{3}}});
  e.options.push_back({dns::edns_option::Padding, std::vector<std::byte>(20)});
  b.opt(e);
  FUZZ_CHECK(b.finish().has_value());
  auto info = dns::parseResponse(answer);
  FUZZ_CHECK(info.has_value());
  FUZZ_CHECK(dns::answerMatches(*info, 0xbeef, q->qname, q->qtype, q->qclass));
  for (size_t limit : {max_udp, size_t{512}, dns::kMaxMessage}) {
    PacketBuffer out;
    dns::buildClientReply(answer, *info, *q, raw, limit, 1232, out);
    checkReply(out, raw);
    FUZZ_CHECK(out.size() <= limit);
    auto m = dns::parseMessage(out);
    FUZZ_CHECK(m->questions.size() == 1 && m->questions[0].name == q->qname);
    FUZZ_CHECK(m->edns.has_value() == q->edns.present);
  }
  return 0;
}
