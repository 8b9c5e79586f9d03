#pragma once
// The message target's serialiser (through the core's MessageBuilder) and its structure-aware
// mutator: a message that parses is edited as records, names, counts and EDNS options, then written
// back (sometimes with its owner names compressed), so that mutations keep reaching the code behind
// the parser instead of dying in it. Messages that do not parse get libFuzzer's byte mutations.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "dotproxy/dns/message.h"
#include "dotproxy/wire/writer.h"

namespace dotproxy::fuzz {

// Writes m (parsed from `wire`) back through MessageBuilder: names uncompressed, rdata as it was,
// the OPT last. False if the result would exceed 64 KiB.
inline bool serialise(const dns::Message& m, WireView wire, PacketBuffer& out) {
  out.clear();
  dns::MessageBuilder b(out);
  b.header(m.header);
  for (const auto& q : m.questions) b.question(q.name, q.type, q.klass);
  const std::vector<dns::Record>* sections[3] = {&m.answer, &m.authority, &m.additional};
  for (int s = 0; s < 3; ++s) {
    for (const auto& r : *sections[s]) {
      b.record(static_cast<dns::Section>(s), r.name, r.type, r.klass, r.ttl,
               wire.subspan(r.rdata_offset, r.rdlength));
    }
  }
  if (m.edns) b.opt(*m.edns);
  return b.finish().has_value();
}

// An editable copy of a parsed message: every record owns its rdata.
struct OwnedRecord {
  dns::Name name;
  uint16_t type = 0, klass = 0;
  uint32_t ttl = 0;
  std::vector<std::byte> rdata;
};

struct Model {
  dns::Header header;
  std::vector<dns::Question> questions;
  std::array<std::vector<OwnedRecord>, 3> sections;
  std::optional<dns::Edns> edns;
};

inline Model toModel(const dns::Message& m, WireView wire) {
  Model model{.header = m.header, .questions = m.questions, .sections = {}, .edns = m.edns};
  const std::vector<dns::Record>* sections[3] = {&m.answer, &m.authority, &m.additional};
  for (int s = 0; s < 3; ++s) {
    for (const auto& r : *sections[s]) {
      const WireView rd = wire.subspan(r.rdata_offset, r.rdlength);
      model.sections[s].push_back(
          {r.name, r.type, r.klass, r.ttl, std::vector<std::byte>(rd.begin(), rd.end())});
    }
  }
  return model;
}

// Writes the model with a WireWriter of its own (MessageBuilder never compresses): with `compress`,
// an owner name equal to one written before becomes a pointer to it. `count_delta` is added to one
// header count afterwards (counts that lie about the records are what parsers trip on).
inline PacketBuffer fromModel(const Model& m, bool compress, int count_index, int count_delta) {
  PacketBuffer out;
  WireWriter w(out, 65535);
  std::vector<std::pair<dns::Name, size_t>> written;
  auto name = [&](const dns::Name& n) {
    if (compress) {
      for (const auto& [prev, at] : written) {
        if (prev == n && at < 0x3fff) {
          w.u16(static_cast<uint16_t>(0xc000 | at));
          return;
        }
      }
      if (!n.isRoot()) written.emplace_back(n, out.size());
    }
    w.bytes(n.wire());
  };
  dns::Header h = m.header;
  h.qdcount = static_cast<uint16_t>(m.questions.size());
  h.ancount = static_cast<uint16_t>(m.sections[0].size());
  h.nscount = static_cast<uint16_t>(m.sections[1].size());
  h.arcount = static_cast<uint16_t>(m.sections[2].size() + (m.edns ? 1 : 0));
  dns::writeHeader(w, h);
  for (const auto& q : m.questions) {
    name(q.name);
    w.u16(q.type);
    w.u16(q.klass);
  }
  for (const auto& section : m.sections) {
    for (const auto& r : section) {
      name(r.name);
      w.u16(r.type);
      w.u16(r.klass);
      w.u32(r.ttl);
      w.u16(static_cast<uint16_t>(std::min<size_t>(r.rdata.size(), 0xffff)));
      w.bytes(WireView(r.rdata).first(std::min<size_t>(r.rdata.size(), 0xffff)));
    }
  }
  if (m.edns) {
    size_t rdlength = 0;
    for (const auto& o : m.edns->options) rdlength += 4 + o.data.size();
    w.u8(0);
    w.u16(dns::type::OPT);
    w.u16(m.edns->udp_size);
    w.u32((uint32_t{m.edns->ext_rcode} << 24) | (uint32_t{m.edns->version} << 16) |
          (m.edns->do_bit ? dns::kEdnsDo : 0u));
    w.u16(static_cast<uint16_t>(std::min<size_t>(rdlength, 0xffff)));
    for (const auto& o : m.edns->options) {
      w.u16(o.code);
      w.u16(static_cast<uint16_t>(o.data.size()));
      w.bytes(o.data);
    }
  }
  if (out.size() >= dns::kHeaderSize && count_index >= 0 && count_index < 4) {
    const size_t at = 4 + 2 * static_cast<size_t>(count_index);
    storeU16(out.data() + at, static_cast<uint16_t>(loadU16(out.data() + at) + count_delta));
  }
  return out;
}

// Types whose rdata the core and ldns look into, and a few others.
inline constexpr uint16_t kInterestingTypes[] = {dns::type::A,
                                                 dns::type::NS,
                                                 dns::type::CNAME,
                                                 dns::type::SOA,
                                                 dns::type::PTR,
                                                 dns::type::MX,
                                                 dns::type::TXT,
                                                 dns::type::AAAA,
                                                 dns::type::SRV,
                                                 dns::type::DS,
                                                 dns::type::OPT,
                                                 dns::type::RRSIG,
                                                 dns::type::NSEC,
                                                 dns::type::DNSKEY,
                                                 dns::type::HTTPS,
                                                 0,
                                                 255,
                                                 65535};
inline constexpr const char* kNames[] = {".",
                                         "example.com.",
                                         "EXAMPLE.com.",
                                         "a.b.c.d.e.f.",
                                         "xn--bcher-kva.example.",
                                         "*.example.com.",
                                         "_srv._tcp."};

// `mutate_bytes` is libFuzzer's byte mutator (LLVMFuzzerMutate). Returns the new size.
template <typename ByteMutator>
size_t mutateMessage(uint8_t* data, size_t size, size_t max_size, unsigned seed,
                     ByteMutator mutate_bytes) {
  auto parsed = dns::parseMessage(WireView(reinterpret_cast<const std::byte*>(data), size));
  std::minstd_rand rng(seed);
  if (!parsed || rng() % 8 == 0) return mutate_bytes(data, size, max_size);
  Model m = toModel(*parsed, WireView(reinterpret_cast<const std::byte*>(data), size));
  auto pick = [&](size_t n) { return n == 0 ? 0 : rng() % n; };
  auto anyRecord = [&]() -> OwnedRecord* {
    std::vector<OwnedRecord*> all;
    for (auto& s : m.sections)
      for (auto& r : s) all.push_back(&r);
    return all.empty() ? nullptr : all[pick(all.size())];
  };
  auto someName = [&]() -> dns::Name {
    if (rng() % 2 == 0) {
      if (auto n = dns::Name::fromText(kNames[pick(std::size(kNames))])) return *n;
    }
    // A longer or shorter version of a name already in the message.
    dns::Name base = m.questions.empty() ? dns::Name() : m.questions[0].name;
    if (OwnedRecord* r = anyRecord(); r && rng() % 2) base = r->name;
    std::string text = base.toText();
    if (rng() % 2 && text != ".") {
      text = text.substr(text.find('.') + 1);  // drop the first label
      if (text.empty()) text = ".";
    } else {
      text = std::string(1 + pick(63), 'a' + static_cast<char>(pick(26))) + "." +
             (text == "." ? "" : text);
    }
    auto n = dns::Name::fromText(text);
    return n ? *n : base;
  };

  int count_index = -1, count_delta = 0;
  switch (rng() % 10) {
    case 0:  // rename an owner or the question
      if (OwnedRecord* r = anyRecord(); r && rng() % 3) {
        r->name = someName();
      } else if (!m.questions.empty()) {
        m.questions[pick(m.questions.size())].name = someName();
      }
      break;
    case 1:  // another type (the rdata stays: mismatched rdata is the point)
      if (OwnedRecord* r = anyRecord())
        r->type = kInterestingTypes[pick(std::size(kInterestingTypes))];
      break;
    case 2: {  // duplicate a record, possibly into another section
      if (OwnedRecord* r = anyRecord()) {
        OwnedRecord copy = *r;
        m.sections[pick(3)].push_back(std::move(copy));
      }
      break;
    }
    case 3: {  // delete a record
      auto& s = m.sections[pick(3)];
      if (!s.empty()) s.erase(s.begin() + static_cast<std::ptrdiff_t>(pick(s.size())));
      break;
    }
    case 4:  // rdata bytes through libFuzzer's mutator
      if (OwnedRecord* r = anyRecord()) {
        std::vector<uint8_t> rd(r->rdata.size() + 64);
        std::transform(r->rdata.begin(), r->rdata.end(), rd.begin(),
                       [](std::byte b) { return std::to_integer<uint8_t>(b); });
        rd.resize(mutate_bytes(rd.data(), r->rdata.size(), rd.size()));
        r->rdata.assign(reinterpret_cast<const std::byte*>(rd.data()),
                        reinterpret_cast<const std::byte*>(rd.data()) + rd.size());
      }
      break;
    case 5:  // TTLs at the edges (RFC 2181 8: the top bit)
      if (OwnedRecord* r = anyRecord()) {
        constexpr uint32_t ttls[] = {0, 1, 29, 30, 86400, 0x7fffffff, 0x80000000, 0xffffffff};
        r->ttl = ttls[pick(std::size(ttls))];
      }
      break;
    case 6:  // EDNS: add or drop the OPT, add or drop an option, other version/size/rcode
      if (!m.edns || rng() % 4 == 0) {
        m.edns = m.edns ? std::nullopt : std::optional<dns::Edns>(dns::Edns{.udp_size = 1232});
      } else {
        constexpr uint16_t codes[] = {3, 8, 10, 11, 12, 15, 65535};
        switch (rng() % 4) {
          case 0:
            m.edns->options.push_back(
                {codes[pick(std::size(codes))], std::vector<std::byte>(pick(40), std::byte{0})});
            break;
          case 1:
            if (!m.edns->options.empty()) m.edns->options.pop_back();
            break;
          case 2:
            m.edns->version = static_cast<uint8_t>(pick(3));
            m.edns->ext_rcode = static_cast<uint8_t>(pick(2));
            break;
          default:
            m.edns->udp_size = static_cast<uint16_t>(rng());
            m.edns->do_bit = !m.edns->do_bit;
        }
      }
      break;
    case 7:  // header flags, opcode, rcode
      m.header.flags ^= static_cast<uint16_t>(1u << pick(16));
      break;
    case 8:  // a count that lies
      count_index = static_cast<int>(pick(4));
      count_delta = rng() % 2 ? 1 : -1;
      break;
    default:  // add or drop a question
      if (m.questions.empty() || rng() % 2) {
        m.questions.push_back(
            {someName(), kInterestingTypes[pick(std::size(kInterestingTypes))], dns::klass::IN});
      } else {
        m.questions.pop_back();
      }
  }
  PacketBuffer out = fromModel(m, rng() % 2 == 0, count_index, count_delta);
  if (out.size() > max_size) return mutate_bytes(data, size, max_size);
  std::memcpy(data, out.data(), out.size());
  return out.size();
}

}  // namespace dotproxy::fuzz
