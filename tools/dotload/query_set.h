#pragma once
// The queries dotload sends, built once at start-up: each distinct query is formatted to wire
// bytes (dns::MessageBuilder) into one arena, and a send copies it and patches the ID. Random names
// (--random-names) use one template whose first label (16 hex digits) is patched per send with a
// value unique to the run, so every query misses a cache without being built from scratch.

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "dotproxy/dns/name.h"
#include "dotproxy/wire/buffer.h"

namespace dotproxy::dotload {

struct QuerySpec {
  dns::Name name;
  uint16_t type = 0;
};

// dnsperf's query file format: one `name TYPE` per line (TYPE defaults to A when absent); blank
// lines and lines starting with '#' or ';' are skipped. Errors name the file and line:
// "queries.txt:3: unknown type 'AAA'".
std::expected<std::vector<QuerySpec>, std::string> parseQueryFile(std::string_view text,
                                                                  std::string_view filename);
std::expected<std::vector<QuerySpec>, std::string> readQueryFile(const std::string& path);

// N names n0.ZONE .. n{N-1}.ZONE of one type (the --zipf set; rank k is n{k}).
std::vector<QuerySpec> rankedNames(uint32_t n, const dns::Name& zone, uint16_t type);

struct WireOptions {
  bool edns = true;
  uint16_t udp_size = 1232;
  bool do_bit = false;
  bool rd = true;
};

class QuerySet {
 public:
  static constexpr size_t kMaxWire = 512;  // a query: header, one name, type, class, OPT
  static constexpr size_t kRandomLabel = 16;

  static std::expected<QuerySet, std::string> fromSpecs(const std::vector<QuerySpec>& specs,
                                                        const WireOptions& opts);
  // One template: <16 hex digits>.zone
  static std::expected<QuerySet, std::string> randomNames(const dns::Name& zone, uint16_t type,
                                                          const WireOptions& opts);

  size_t size() const noexcept { return entries_.size(); }
  bool random() const noexcept { return random_; }

  // Writes query `index` with `id` (and, for a random set, the label for `unique`) to out, which
  // holds kMaxWire bytes; returns the length.
  size_t write(std::byte* out, uint32_t index, uint64_t unique, uint16_t id) const noexcept;
  // True if `answer` (at least a header) carries exactly the question of that query, the name
  // compared case-insensitively (RFC 4343).
  bool questionMatches(WireView answer, uint32_t index, uint64_t unique) const noexcept;

 private:
  struct Entry {
    uint32_t offset = 0;
    uint16_t length = 0;
    uint16_t question = 0;  // bytes of the question section (name, type, class)
  };
  std::vector<std::byte> arena_;
  std::vector<Entry> entries_;
  bool random_ = false;
};

}  // namespace dotproxy::dotload
