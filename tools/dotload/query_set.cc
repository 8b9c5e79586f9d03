#include "query_set.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "dotproxy/dns/message.h"
#include "dotproxy/dns/types.h"

namespace dotproxy::dotload {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

std::byte lower(std::byte b) noexcept {
  auto c = std::to_integer<unsigned char>(b);
  return (c >= 'A' && c <= 'Z') ? static_cast<std::byte>(c + 32) : b;
}

constexpr char kHex[] = "0123456789abcdef";

}  // namespace

std::expected<std::vector<QuerySpec>, std::string> parseQueryFile(std::string_view text,
                                                                  std::string_view filename) {
  std::vector<QuerySpec> out;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    auto f = fields(line);
    if (f.size() > 2) {
      return std::unexpected(
          fmt::format("{}:{}: expected 'name TYPE', got {} fields", filename, line_no, f.size()));
    }
    auto name = dns::Name::fromText(f[0]);
    if (!name) {
      return std::unexpected(
          fmt::format("{}:{}: bad name '{}': {}", filename, line_no, f[0], errcName(name.error())));
    }
    uint16_t type = dns::type::A;
    if (f.size() == 2) {
      auto t = dns::parseType(f[1]);
      if (!t)
        return std::unexpected(fmt::format("{}:{}: unknown type '{}'", filename, line_no, f[1]));
      type = *t;
    }
    out.push_back({.name = *name, .type = type});
  }
  if (out.empty()) return std::unexpected(fmt::format("{}: no queries", filename));
  return out;
}

std::expected<std::vector<QuerySpec>, std::string> readQueryFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::unexpected(fmt::format("{}: {}", path, std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  return parseQueryFile(text.str(), path);
}

std::vector<QuerySpec> rankedNames(uint32_t n, const dns::Name& zone, uint16_t type) {
  std::vector<QuerySpec> out;
  out.reserve(n);
  std::string suffix = zone.toText();
  for (uint32_t k = 0; k < n; ++k) {
    auto name = dns::Name::fromText(fmt::format("n{}.{}", k, suffix == "." ? "" : suffix));
    if (name) out.push_back({.name = *name, .type = type});
  }
  return out;
}

std::expected<QuerySet, std::string> QuerySet::fromSpecs(const std::vector<QuerySpec>& specs,
                                                         const WireOptions& opts) {
  QuerySet set;
  PacketBuffer wire;
  for (const auto& s : specs) {
    wire.clear();
    dns::MessageBuilder b(wire, kMaxWire);
    dns::Header h;
    h.set(dns::flag::RD, opts.rd);
    b.header(h);
    b.question(s.name, s.type);
    if (opts.edns) b.opt(dns::Edns{.udp_size = opts.udp_size, .do_bit = opts.do_bit});
    if (!b.finish()) {
      return std::unexpected(
          fmt::format("query for {} does not fit in {} bytes", s.name.toText(), kMaxWire));
    }
    set.entries_.push_back({.offset = static_cast<uint32_t>(set.arena_.size()),
                            .length = static_cast<uint16_t>(wire.size()),
                            .question = static_cast<uint16_t>(s.name.wireSize() + 4)});
    set.arena_.insert(set.arena_.end(), wire.data(), wire.data() + wire.size());
  }
  return set;
}

std::expected<QuerySet, std::string> QuerySet::randomNames(const dns::Name& zone, uint16_t type,
                                                           const WireOptions& opts) {
  std::string suffix = zone.toText();
  auto name = dns::Name::fromText(
      fmt::format("{}.{}", std::string(kRandomLabel, '0'), suffix == "." ? "" : suffix));
  if (!name) {
    return std::unexpected(fmt::format(
        "--random-names: zone '{}' leaves no room for a {}-byte label", suffix, kRandomLabel));
  }
  auto set = fromSpecs({QuerySpec{.name = *name, .type = type}}, opts);
  if (set) set->random_ = true;
  return set;
}

size_t QuerySet::write(std::byte* out, uint32_t index, uint64_t unique,
                       uint16_t id) const noexcept {
  const Entry& e = entries_[index];
  std::memcpy(out, arena_.data() + e.offset, e.length);
  storeU16(out, id);
  if (random_) {
    // The first label's bytes start after the header and its length byte.
    std::byte* label = out + dns::kHeaderSize + 1;
    for (size_t i = 0; i < kRandomLabel; ++i) {
      label[kRandomLabel - 1 - i] = static_cast<std::byte>(kHex[(unique >> (4 * i)) & 0xf]);
    }
  }
  return e.length;
}

bool QuerySet::questionMatches(WireView answer, uint32_t index, uint64_t unique) const noexcept {
  const Entry& e = entries_[index];
  if (answer.size() < dns::kHeaderSize + e.question) return false;
  if (loadU16(answer.data() + 4) != 1) return false;  // QDCOUNT
  std::byte query[kMaxWire];
  write(query, index, unique, 0);
  size_t name_end = dns::kHeaderSize + e.question - 4;  // type and class compare exactly
  for (size_t i = dns::kHeaderSize; i < name_end; ++i) {
    if (lower(query[i]) != lower(answer[i])) return false;
  }
  return std::memcmp(query + name_end, answer.data() + name_end, 4) == 0;
}

}  // namespace dotproxy::dotload
