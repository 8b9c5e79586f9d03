#pragma once
// Small helpers for the dns tests: raw byte literals and message construction.

#include <gtest/gtest.h>

#include <initializer_list>
#include <string_view>
#include <vector>

#include "dotproxy/dns/message.h"
#include "dotproxy/dns/name.h"
#include "dotproxy/wire/buffer.h"

namespace dotproxy::dns::testing {

using Bytes = std::vector<std::byte>;

inline Bytes bytes(std::initializer_list<int> v) {
  Bytes out;
  for (int b : v) out.push_back(static_cast<std::byte>(b));
  return out;
}

inline void append(Bytes& out, std::initializer_list<int> v) {
  for (int b : v) out.push_back(static_cast<std::byte>(b));
}

inline void append(Bytes& out, WireView v) {
  out.insert(out.end(), v.begin(), v.end());
}

// Appends a label of `n` copies of `c`.
inline void appendLabel(Bytes& out, size_t n, char c) {
  out.push_back(static_cast<std::byte>(n));
  for (size_t i = 0; i < n; ++i) out.push_back(static_cast<std::byte>(c));
}

// A 12-byte header with the given counts.
inline Bytes header(uint16_t id, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns,
                    uint16_t ar) {
  return bytes({id >> 8, id & 0xff, flags >> 8, flags & 0xff, qd >> 8, qd & 0xff, an >> 8,
                an & 0xff, ns >> 8, ns & 0xff, ar >> 8, ar & 0xff});
}

inline Name name(std::string_view text) {
  auto n = Name::fromText(text);
  EXPECT_TRUE(n.has_value()) << text;
  return n.value_or(Name{});
}

inline WireView view(const Bytes& b) {
  return {b.data(), b.size()};
}

inline EdnsOption option(uint16_t code, std::string_view data) {
  EdnsOption o;
  o.code = code;
  WireView w = asWire(data);
  o.data.assign(w.begin(), w.end());
  return o;
}

struct QuerySpec {
  uint16_t id = 0x1234;
  uint16_t flags = flag::RD;
  std::string_view qname = "example.com.";
  uint16_t qtype = type::A;
  uint16_t qclass = klass::IN;
  bool edns = false;
  uint16_t udp_size = 4096;
  bool do_bit = false;
  uint8_t version = 0;
  std::vector<EdnsOption> options = {};
};

inline PacketBuffer makeQuery(const QuerySpec& s) {
  PacketBuffer out;
  MessageBuilder b(out);
  Header h;
  h.id = s.id;
  h.flags = s.flags;
  b.header(h);
  b.question(name(s.qname), s.qtype, s.qclass);
  if (s.edns) {
    Edns e;
    e.udp_size = s.udp_size;
    e.do_bit = s.do_bit;
    e.version = s.version;
    e.options = s.options;
    b.opt(e);
  }
  EXPECT_TRUE(b.finish().has_value());
  return out;
}

inline std::vector<uint16_t> optionCodes(const Edns& e) {
  std::vector<uint16_t> codes;
  for (const auto& o : e.options) codes.push_back(o.code);
  return codes;
}

}  // namespace dotproxy::dns::testing
