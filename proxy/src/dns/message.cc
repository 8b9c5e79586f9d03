#include "dotproxy/dns/message.h"

#include <algorithm>

namespace dotproxy::dns {

namespace {

// Smallest encodings: a question is root + type + class; a record adds TTL and RDLENGTH.
constexpr size_t kMinQuestion = 5;
constexpr size_t kMinRecord = 11;

// OPT TTL field layout (RFC 6891 6.1.3): EXTENDED-RCODE(8) VERSION(8) DO(1) Z(15).
Edns ednsFromFixed(uint16_t klass, uint32_t ttl) {
  Edns e;
  e.udp_size = klass;
  e.ext_rcode = static_cast<uint8_t>(ttl >> 24);
  e.version = static_cast<uint8_t>(ttl >> 16);
  e.do_bit = (ttl & kEdnsDo) != 0;
  return e;
}

// Options of one OPT rdata; FormErr if an option overruns it.
Result<void> readOptions(WireView rdata, Edns& e) {
  WireReader o(rdata);
  while (!o.atEnd()) {
    EdnsOption opt;
    opt.code = o.u16();
    const uint16_t len = o.u16();
    WireView data = o.bytes(len);
    if (!o.ok()) return std::unexpected(Errc::FormErr);
    opt.data.assign(data.begin(), data.end());
    e.options.push_back(std::move(opt));
  }
  return {};
}

}  // namespace

Result<Message> parseMessage(WireView wire) noexcept {
  return parseMessage(wire, nullptr);
}

Result<Message> parseMessage(WireView wire, ParseFailure* failure) noexcept {
  // The element being read, for the failure report: "header", "question", "answer record"...
  const char* what = "header";
  unsigned index = 0;
  size_t start = 0;
  auto fail = [&](Errc e) -> Result<Message> {
    if (failure) *failure = {.error = e, .element = what, .index = index, .offset = start};
    return std::unexpected(e);
  };
  // Allocation failure is the one exception left here; treat it as a message too large to hold.
  try {
    WireReader r(wire);
    Message m;
    m.header = readHeader(r);
    if (!r.ok()) return fail(*r.error());

    m.questions.reserve(std::min<size_t>(m.header.qdcount, r.remaining() / kMinQuestion));
    what = "question";
    for (unsigned i = 0; i < m.header.qdcount; ++i) {
      index = i;
      start = r.pos();
      Question q;
      q.name = readName(r);
      q.type = r.u16();
      q.klass = r.u16();
      if (!r.ok()) return fail(*r.error());
      m.questions.push_back(q);
    }

    const uint16_t counts[3] = {m.header.ancount, m.header.nscount, m.header.arcount};
    std::vector<Record>* sections[3] = {&m.answer, &m.authority, &m.additional};
    const char* names[3] = {"answer record", "authority record", "additional record"};
    for (int s = 0; s < 3; ++s) {
      sections[s]->reserve(std::min<size_t>(counts[s], r.remaining() / kMinRecord));
      what = names[s];
      for (unsigned i = 0; i < counts[s]; ++i) {
        index = i;
        start = r.pos();
        Record rec;
        rec.name = readName(r);
        rec.type = r.u16();
        rec.klass = r.u16();
        rec.ttl = r.u32();
        rec.rdlength = r.u16();
        rec.rdata_offset = r.pos();
        WireView rdata = r.bytes(rec.rdlength);
        if (!r.ok()) return fail(*r.error());
        if (rec.type != type::OPT) {
          sections[s]->push_back(rec);
          continue;
        }
        what = "OPT record";
        // RFC 6891 6.1.1: one OPT at most, in the additional section, owned by the root.
        if (s != 2 || m.edns || !rec.name.isRoot()) return fail(Errc::FormErr);
        m.edns = ednsFromFixed(rec.klass, rec.ttl);
        if (auto ok = readOptions(rdata, *m.edns); !ok) return fail(ok.error());
        what = names[s];
      }
    }
    return m;
  } catch (const std::bad_alloc&) {
    return fail(Errc::TooLarge);
  }
}

MessageBuilder::MessageBuilder(PacketBuffer& out, size_t limit)
    : out_(out),
      w_(out, limit > SIZE_MAX - out.size() ? SIZE_MAX : out.size() + limit),
      start_(out.size()) {}

void MessageBuilder::header(const Header& h) {
  Header copy = h;
  copy.qdcount = copy.ancount = copy.nscount = copy.arcount = 0;
  writeHeader(w_, copy);
}

void MessageBuilder::question(const Name& name, uint16_t type, uint16_t klass) {
  writeName(w_, name);
  w_.u16(type);
  w_.u16(klass);
  ++counts_[0];
}

void MessageBuilder::record(Section s, const Name& name, uint16_t type, uint16_t klass,
                            uint32_t ttl, WireView rdata) {
  if (rdata.size() > 0xffff) {
    if (!error_) error_ = Errc::TooLarge;
    return;
  }
  writeName(w_, name);
  w_.u16(type);
  w_.u16(klass);
  w_.u32(ttl);
  w_.u16(static_cast<uint16_t>(rdata.size()));
  w_.bytes(rdata);
  ++counts_[1 + static_cast<int>(s)];
}

void MessageBuilder::opt(const Edns& edns) {
  size_t rdlength = 0;
  for (const auto& o : edns.options) rdlength += 4 + o.data.size();
  if (rdlength > 0xffff) {
    if (!error_) error_ = Errc::TooLarge;
    return;
  }
  w_.u8(0);  // root
  w_.u16(type::OPT);
  w_.u16(edns.udp_size);
  w_.u32((uint32_t{edns.ext_rcode} << 24) | (uint32_t{edns.version} << 16) |
         (edns.do_bit ? kEdnsDo : 0u));
  w_.u16(static_cast<uint16_t>(rdlength));
  for (const auto& o : edns.options) {
    w_.u16(o.code);
    w_.u16(static_cast<uint16_t>(o.data.size()));
    w_.bytes(o.data);
  }
  ++counts_[3];
}

Result<void> MessageBuilder::finish() {
  if (error_) return std::unexpected(*error_);
  if (!w_.ok()) return std::unexpected(*w_.error());
  if (out_.size() - start_ < kHeaderSize) return std::unexpected(Errc::Truncated);  // no header()
  for (size_t i = 0; i < 4; ++i) w_.patchU16(start_ + 4 + 2 * i, counts_[i]);
  if (!w_.ok()) return std::unexpected(*w_.error());
  return {};
}

PacketBuffer txtRdata(std::string_view text) {
  PacketBuffer out;
  out.reserve(text.size() + text.size() / 255 + 1);
  // RFC 1035 3.3.14: one or more <character-string>s; an empty text is one empty string.
  do {
    const size_t n = std::min<size_t>(text.size(), 255);
    out.push(static_cast<std::byte>(n));
    out.append(asWire(text.substr(0, n)));
    text.remove_prefix(n);
  } while (!text.empty());
  return out;
}

PacketBuffer txtRdata(std::span<const std::string> strings) {
  PacketBuffer out;
  WireWriter w(out);
  for (const std::string& s : strings) {
    const std::string_view part = std::string_view(s).substr(0, 255);
    w.u8(static_cast<uint8_t>(part.size()));
    w.bytes(asWire(part));
  }
  return out;
}

}  // namespace dotproxy::dns
