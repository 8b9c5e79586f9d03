#include "dotproxy/dns/query.h"

#include <algorithm>
#include <cstring>

#include "dotproxy/dns/message.h"

namespace dotproxy::dns {

namespace {

constexpr size_t kMinRecord = 11;  // root owner + type, class, TTL, rdlength
constexpr size_t kAdditional = 2;  // section index: answer 0, authority 1, additional 2
constexpr uint16_t kOpcodeMask = 0x7800;
constexpr size_t kOptFixed = 11;  // root owner + type, class, TTL, rdlength

// The owner was already walked successfully; a pointer to a root label also counts as the root.
bool ownerIsRoot(WireView msg, size_t start) noexcept {
  WireReader r(msg);
  r.seek(start);
  const Name n = readName(r);
  return r.ok() && n.isRoot();
}

WireView rdataOf(WireView msg, const RecordHead& h) noexcept {
  return msg.subspan(h.rdata_offset, h.rdlength);
}

// True if the option list in an OPT rdata is well formed (RFC 6891 6.1.2).
bool optionsWellFormed(WireView rdata) noexcept {
  WireReader o(rdata);
  while (o.ok() && !o.atEnd()) {
    o.u16();
    o.skip(o.u16());
  }
  return o.ok();
}

// The offsets of the labels of the names read so far in an upstream answer. A compression pointer
// stands for "a prior occurrence of the same name" (RFC 1035 4.1.4), so it must land on one of
// them. A pointer that lands anywhere else builds its name out of bytes that are not a name, such
// as TTL fields (which the cache rewrites as the entry ages), the upstream's OPT or bytes after the
// last record (which the client's reply drops): the name the client would read is then not the
// name we validated, and may not even parse. Pointers hold 14-bit offsets, so 16384 bits suffice.
class LabelStarts {
 public:
  explicit LabelStarts(size_t message_size) noexcept
      : words_(std::min(kWords, (message_size + 63) / 64)) {
    std::fill_n(bits_, words_, uint64_t{0});
  }
  void add(size_t at) noexcept {
    if (at / 64 < words_) bits_[at / 64] |= uint64_t{1} << (at % 64);
  }
  bool has(size_t at) const noexcept {
    return at / 64 < words_ && ((bits_[at / 64] >> (at % 64)) & 1);
  }

 private:
  static constexpr size_t kWords = 16384 / 64;
  size_t words_;
  uint64_t bits_[kWords];
};

// Reads the name at r.pos() (skipName's checks), records its own labels and, if it ends in a
// pointer, checks that the pointer lands on a label recorded before: BadPointer otherwise.
void skipNameFromLabels(WireReader& r, LabelStarts& seen) noexcept {
  const size_t start = r.pos();
  skipName(r);
  if (!r.ok()) return;
  WireReader c(r.message());
  c.seek(start);
  while (c.ok()) {
    const size_t at = c.pos();
    const uint8_t len = c.u8();
    if ((len & 0xC0) == 0xC0) {
      const size_t target = (size_t{len & 0x3fu} << 8) | c.u8();
      if (c.ok() && !seen.has(target)) r.fail(Errc::BadPointer);
      return;
    }
    seen.add(at);
    if (len == 0) return;
    c.skip(len);
  }
}

// The names inside the rdata of the types that may compress them (RFC 3597 4) must be readable,
// point only to earlier names, and end exactly at the end of the rdata.
std::optional<Errc> checkRdataNames(WireView msg, const RecordHead& h, LabelStarts& seen) noexcept {
  WireReader r(msg);
  r.seek(h.rdata_offset);
  switch (h.type) {
    case type::NS:
    case type::CNAME:
    case type::PTR:
      skipNameFromLabels(r, seen);
      break;
    case type::MX:
      r.skip(2);
      skipNameFromLabels(r, seen);
      break;
    case type::SOA:
      skipNameFromLabels(r, seen);
      skipNameFromLabels(r, seen);
      r.skip(20);
      break;
    default:
      return std::nullopt;
  }
  if (!r.ok()) return r.error();
  if (r.pos() != h.rdata_offset + h.rdlength) return Errc::FormErr;
  return std::nullopt;
}

uint16_t sectionCount(const Header& h, size_t s) noexcept {
  return s == 0 ? h.ancount : s == 1 ? h.nscount : h.arcount;
}

}  // namespace

RecordHead readRecordHead(WireReader& r) noexcept {
  RecordHead h;
  h.start = r.pos();
  skipName(r);
  h.type = r.u16();
  h.klass = r.u16();
  h.ttl = r.u32();
  h.rdlength = r.u16();
  h.rdata_offset = r.pos();
  r.skip(h.rdlength);
  return h;
}

size_t QueryInfo::maxUdpReply(size_t cap) const noexcept {
  if (!edns.present) return kClassicUdpSize;
  return std::max<size_t>(kClassicUdpSize, std::min<size_t>(edns.udp_size, cap));
}

Result<QueryInfo> parseQuery(WireView wire) noexcept {
  if (wire.size() < kHeaderSize) return std::unexpected(Errc::Truncated);
  WireReader r(wire);
  QueryInfo q;
  q.header = readHeader(r);
  if (q.header.qr()) return std::unexpected(Errc::NotQuery);
  if (q.header.opcode() != static_cast<uint8_t>(Opcode::Query)) {
    return std::unexpected(Errc::NotImp);
  }
  if (q.header.qdcount != 1) return std::unexpected(Errc::FormErr);

  q.qname = readName(r);
  q.qtype = r.u16();
  q.qclass = r.u16();
  if (!r.ok()) return std::unexpected(Errc::FormErr);
  q.question_end = r.pos();

  const size_t records = size_t{q.header.ancount} + q.header.nscount + q.header.arcount;
  if (records > r.remaining() / kMinRecord) return std::unexpected(Errc::FormErr);

  for (size_t s = 0; s < 3; ++s) {
    for (unsigned i = 0, n = sectionCount(q.header, s); i < n; ++i) {
      const RecordHead h = readRecordHead(r);
      if (!r.ok()) return std::unexpected(Errc::FormErr);
      if (h.type != type::OPT) continue;
      // RFC 6891 6.1.1: at most one OPT, in the additional section, owned by the root.
      if (s != kAdditional || q.edns.present || !ownerIsRoot(wire, h.start)) {
        return std::unexpected(Errc::FormErr);
      }
      EdnsInfo& e = q.edns;
      e.present = true;
      e.udp_size = h.klass;
      e.ext_rcode = static_cast<uint8_t>(h.ttl >> 24);
      e.version = static_cast<uint8_t>(h.ttl >> 16);
      e.do_bit = (h.ttl & kEdnsDo) != 0;
      WireReader o(rdataOf(wire, h));
      while (!o.atEnd()) {
        const size_t at = o.pos();
        const uint16_t code = o.u16();
        const uint16_t len = o.u16();
        o.skip(len);
        if (!o.ok()) return std::unexpected(Errc::FormErr);
        if (code == edns_option::ClientSubnet && e.ecs_len == 0) {
          e.ecs_offset = h.rdata_offset + at;
          e.ecs_len = static_cast<uint16_t>(4 + len);  // fits: the option lies inside rdata
        }
      }
    }
  }
  if (!r.atEnd()) return std::unexpected(Errc::FormErr);  // trailing bytes: not one message
  // RFC 6891 6.1.3: a version we do not implement gets BADVERS, once the message is known good.
  if (q.edns.present && q.edns.version > 0) return std::unexpected(Errc::BadVers);
  return q;
}

PacketBuffer buildErrorReply(WireView query, Rcode rcode) {
  PacketBuffer out;
  if (query.size() < kHeaderSize) return out;
  WireReader r(query);
  const Header qh = readHeader(r);
  const auto code = static_cast<uint16_t>(rcode);

  Header h;
  h.id = qh.id;
  h.flags = static_cast<uint16_t>(flag::QR | (qh.flags & (kOpcodeMask | flag::RD | flag::CD)));
  h.setRcode(static_cast<uint8_t>(code & 0xf));

  // Lenient: whatever can be read before the first problem is used, the rest ignored.
  bool have_question = false;
  Name qname;
  uint16_t qtype = 0, qclass = 0;
  if (qh.qdcount == 1) {
    qname = readName(r);
    qtype = r.u16();
    qclass = r.u16();
    have_question = r.ok();
  }
  bool have_opt = false;
  bool do_bit = false;
  if (have_question) {
    for (size_t s = 0; s < 3 && r.ok() && !have_opt; ++s) {
      for (unsigned i = 0, n = sectionCount(qh, s); i < n; ++i) {
        const RecordHead rec = readRecordHead(r);
        if (!r.ok()) break;
        if (rec.type == type::OPT && s == kAdditional) {
          have_opt = true;
          do_bit = (rec.ttl & kEdnsDo) != 0;
          break;
        }
      }
    }
  }
  // An extended RCODE cannot be sent without an OPT.
  if (code > 0xf) have_opt = true;

  MessageBuilder b(out, kMaxMessage);
  b.header(h);
  if (have_question) b.question(qname, qtype, qclass);
  if (have_opt) {
    Edns e;
    e.udp_size = kDefaultEdnsUdpSize;
    e.ext_rcode = static_cast<uint8_t>(code >> 4);
    e.do_bit = do_bit;
    b.opt(e);
  }
  if (!b.finish()) out.clear();
  return out;
}

PacketBuffer buildUpstreamQuery(const QueryInfo& q, WireView raw, uint16_t id,
                                const UpstreamQueryOptions& opts) {
  PacketBuffer out;
  out.reserve(opts.padding_block > 0 && opts.padding_block <= 4096 ? 2 * opts.padding_block : 512);
  WireWriter w(out);
  Header h;
  h.id = id;
  h.flags = static_cast<uint16_t>(q.header.flags & (flag::RD | flag::CD | flag::AD));
  h.qdcount = 1;
  h.arcount = 1;
  writeHeader(w, h);
  // Same bytes as raw[12, question_end): a question at offset 12 cannot hold a pointer (readName
  // refuses pointers into the header), so q.qname is exactly the client's spelling.
  writeName(w, q.qname);
  w.u16(q.qtype);
  w.u16(q.qclass);

  w.u8(0);
  w.u16(type::OPT);
  w.u16(opts.udp_size);
  w.u32(q.edns.do_bit ? kEdnsDo : 0u);
  const size_t rdlength_at = out.size();
  w.u16(0);
  if (opts.forward_ecs && q.edns.ecs_len > 0 && q.edns.ecs_offset <= raw.size() &&
      q.edns.ecs_len <= raw.size() - q.edns.ecs_offset) {
    w.bytes(raw.subspan(q.edns.ecs_offset, q.edns.ecs_len));
  }
  // RFC 7830 / RFC 8467 4.1: pad the whole message to a multiple of the block size.
  if (opts.padding_block > 0) {
    const size_t with_option = out.size() + 4;
    const size_t pad = (opts.padding_block - with_option % opts.padding_block) % opts.padding_block;
    if (with_option + pad <= kMaxMessage) {
      w.u16(edns_option::Padding);
      w.u16(static_cast<uint16_t>(pad));
      w.zeros(pad);
    }
  }
  w.patchU16(rdlength_at, static_cast<uint16_t>(out.size() - rdlength_at - 2));
  return out;
}

Result<ResponseInfo> parseResponse(WireView wire) noexcept {
  if (wire.size() < kHeaderSize) return std::unexpected(Errc::Truncated);
  WireReader r(wire);
  ResponseInfo info;
  info.header = readHeader(r);
  if (!info.header.qr()) return std::unexpected(Errc::NotResponse);
  if (info.header.qdcount != 1) return std::unexpected(Errc::FormErr);
  LabelStarts seen(wire.size());
  info.qname = readName(r);
  r.seek(kHeaderSize);
  skipNameFromLabels(r, seen);  // a question cannot hold a pointer: this records its labels
  info.qtype = r.u16();
  info.qclass = r.u16();
  if (!r.ok()) return std::unexpected(*r.error());
  info.question_end = r.pos();

  const size_t records = size_t{info.header.ancount} + info.header.nscount + info.header.arcount;
  if (records > r.remaining() / kMinRecord) return std::unexpected(Errc::Truncated);

  bool have_ttl = false;
  for (size_t s = 0; s < 3; ++s) {
    for (unsigned i = 0, n = sectionCount(info.header, s); i < n; ++i) {
      if (info.opt_offset != 0) return std::unexpected(Errc::FormErr);  // OPT must be last
      const RecordHead h = readRecordHead(r);
      if (!r.ok()) return std::unexpected(*r.error());
      if (h.type != type::OPT) {  // the OPT's owner is checked below, and never reaches a client
        WireReader owner(wire);
        owner.seek(h.start);
        skipNameFromLabels(owner, seen);
        if (!owner.ok()) return std::unexpected(*owner.error());
      }
      if (h.type == type::OPT) {
        if (s != kAdditional || !ownerIsRoot(wire, h.start) ||
            !optionsWellFormed(rdataOf(wire, h))) {
          return std::unexpected(Errc::FormErr);
        }
        info.opt_offset = h.start;
        info.opt_size = r.pos() - h.start;
        info.ext_rcode = static_cast<uint8_t>(h.ttl >> 24);
        continue;
      }
      if (auto err = checkRdataNames(wire, h, seen)) return std::unexpected(*err);
      if (s == 1 && h.type == type::SOA) info.authority_soa = true;
      const uint32_t ttl = (h.ttl & 0x80000000u) ? 0 : h.ttl;  // RFC 2181 8
      info.min_ttl = have_ttl ? std::min(info.min_ttl, ttl) : ttl;
      have_ttl = true;
    }
  }
  info.end = r.pos();
  return info;
}

bool answerMatches(const ResponseInfo& r, uint16_t id, const Name& qname, uint16_t qtype,
                   uint16_t qclass) noexcept {
  return r.header.id == id && r.qtype == qtype && r.qclass == qclass &&
         r.qname.equalsIgnoreCase(qname);
}

uint16_t clientFlags(uint16_t answer_flags, const QueryInfo& q) noexcept {
  Header h{.flags = answer_flags};
  h.set(flag::RD, q.header.rd());
  if (!q.header.ad() && !q.edns.do_bit) h.set(flag::AD, false);
  return h.flags;
}

void buildClientReply(WireView upstream, const ResponseInfo& r, const QueryInfo& q,
                      WireView raw_query, size_t max_size, uint16_t our_udp_size,
                      PacketBuffer& out) {
  out.clear();
  const size_t limit = std::min(max_size, kMaxMessage);
  const bool upstream_opt = r.opt_offset != 0;
  const size_t body_end = upstream_opt ? r.opt_offset : r.end;
  if (r.question_end < kHeaderSize || r.question_end > body_end || body_end > upstream.size()) {
    return;  // not a ResponseInfo parsed from this upstream message
  }

  // The client's question spelling. Both questions are uncompressed (no pointer can reach the
  // header), so equal names ignoring case have equal lengths and every offset after the question
  // stays valid. If they differ, the upstream's own question keeps the message consistent.
  WireView question = upstream.subspan(kHeaderSize, r.question_end - kHeaderSize);
  if (q.question_end == r.question_end && q.question_end <= raw_query.size()) {
    question = raw_query.subspan(kHeaderSize, q.question_end - kHeaderSize);
  }

  Header h = r.header;
  h.id = q.header.id;
  h.flags = clientFlags(h.flags, q);
  h.qdcount = 1;
  h.arcount = static_cast<uint16_t>(h.arcount - (upstream_opt ? 1 : 0) + (q.edns.present ? 1 : 0));

  out.reserve(std::min(body_end + kOptFixed, limit + kOptFixed));
  WireWriter w(out, SIZE_MAX);
  writeHeader(w, h);
  w.bytes(question);
  w.bytes(upstream.subspan(r.question_end, body_end - r.question_end));

  size_t opt_start = 0;
  if (q.edns.present) {
    opt_start = out.size();
    appendClientOpt(out, upstream, r, our_udp_size, q.edns.do_bit);
  }
  truncateClientReply(out, kHeaderSize + question.size(), opt_start, limit);
}

uint32_t ttlCap(const ResponseInfo& r, const TtlCaps& caps) noexcept {
  const uint16_t rcode = r.rcode();
  const bool negative = rcode == static_cast<uint16_t>(Rcode::NxDomain) ||
                        (rcode == static_cast<uint16_t>(Rcode::NoError) && r.authority_soa);
  return negative ? std::min(caps.max_ttl, caps.negative_max_ttl) : caps.max_ttl;
}

void capClientTtls(std::span<std::byte> reply, uint32_t cap) noexcept {
  WireReader r(reply);
  const Header h = readHeader(r);
  for (unsigned i = 0; i < h.qdcount && r.ok(); ++i) {
    skipName(r);
    r.skip(4);
  }
  const size_t records = size_t{h.ancount} + h.nscount + h.arcount;
  for (size_t i = 0; i < records && r.ok(); ++i) {
    const RecordHead rr = readRecordHead(r);
    if (!r.ok()) return;
    if (rr.type == type::OPT) continue;  // its TTL field holds EDNS flags, not a TTL
    std::byte* at = reply.data() + rr.rdata_offset - 6;
    storeU32(at, clientTtl(loadU32(at), cap));
  }
}

void appendClientOpt(PacketBuffer& out, WireView upstream, const ResponseInfo& r, uint16_t udp_size,
                     bool do_bit) {
  WireWriter w(out, SIZE_MAX);
  w.u8(0);
  w.u16(type::OPT);
  w.u16(udp_size);
  w.u32((uint32_t{r.ext_rcode} << 24) | (do_bit ? kEdnsDo : 0u));
  const size_t rdlength_at = out.size();
  w.u16(0);
  if (r.opt_offset != 0) {
    // Only end-to-end options survive: Extended DNS Errors (RFC 8914). Padding, keepalive and
    // cookies are hop-by-hop; ECS scope belongs to the upstream hop.
    WireReader u(upstream);
    u.seek(r.opt_offset);
    skipName(u);
    u.skip(8);
    WireReader o(u.bytes(u.u16()));
    while (u.ok() && o.ok() && !o.atEnd()) {
      const size_t at = o.pos();
      const uint16_t code = o.u16();
      const uint16_t len = o.u16();
      o.skip(len);
      if (o.ok() && code == edns_option::ExtendedError) {
        w.bytes(o.message().subspan(at, 4u + len));
      }
    }
  }
  w.patchU16(rdlength_at, static_cast<uint16_t>(out.size() - rdlength_at - 2));
}

void setClientOpt(std::span<std::byte> opt, uint16_t udp_size, bool do_bit) noexcept {
  if (opt.size() < kOptFixed) return;
  storeU16(opt.data() + 3, udp_size);              // CLASS
  const uint16_t flags = loadU16(opt.data() + 7);  // low half of the TTL: DO and Z
  storeU16(opt.data() + 7, static_cast<uint16_t>(do_bit ? (flags | kEdnsDo) : (flags & ~kEdnsDo)));
}

void truncateClientReply(PacketBuffer& out, size_t question_end, size_t opt_start,
                         size_t max_size) {
  if (out.size() <= max_size || question_end < kHeaderSize || question_end > out.size()) return;
  // Too large for the client: header + question (+ OPT) with TC=1 (RFC 1035 4.2.1, RFC 6891 7).
  size_t opt_len = 0;
  if (opt_start != 0 && opt_start >= question_end && opt_start + kOptFixed <= out.size()) {
    opt_len = out.size() - opt_start;
    std::memmove(out.data() + question_end, out.data() + opt_start, opt_len);
    if (question_end + opt_len > max_size) {  // drop the EDE options rather than the OPT itself
      opt_len = kOptFixed;
      storeU16(out.data() + question_end + kOptFixed - 2, 0);
    }
  }
  out.resize(question_end + opt_len);
  storeU16(out.data() + 2, static_cast<uint16_t>(loadU16(out.data() + 2) | flag::TC));
  storeU16(out.data() + 6, 0);
  storeU16(out.data() + 8, 0);
  storeU16(out.data() + 10, opt_len != 0 ? 1 : 0);
}

}  // namespace dotproxy::dns
