#pragma once
// Domain names in uncompressed wire form (RFC 1035 3.1), at most 255 bytes, case preserved.
// Reading follows compression pointers only backwards, with a hop limit.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "dotproxy/util/result.h"
#include "dotproxy/wire/reader.h"
#include "dotproxy/wire/writer.h"

namespace dotproxy::dns {

class Name {
 public:
  Name() noexcept;  // the root
  // Presentation form: "example.com", "example.com.", "." ; \DDD and \X escapes. Relative names
  // are taken as absolute. Empty input or an empty label ("a..b"): BadText; LabelTooLong,
  // NameTooLong.
  static Result<Name> fromText(std::string_view text) noexcept;
  // From uncompressed wire bytes (must be exactly one valid name; TrailingData if bytes follow it).
  static Result<Name> fromWire(WireView wire) noexcept;

  WireView wire() const noexcept { return {bytes_.data(), len_}; }
  size_t wireSize() const noexcept { return len_; }
  unsigned labelCount() const noexcept;
  bool isRoot() const noexcept { return len_ == 1; }
  // "example.com." with \DDD escapes for non-printables; "." for the root.
  std::string toText() const;

  // Case-insensitive (ASCII) comparison, as DNS names compare (RFC 4343).
  bool equalsIgnoreCase(const Name& other) const noexcept;
  bool operator==(const Name& other) const noexcept;  // exact bytes, case-sensitive
  // Lower-cased copy (for cache and coalescing keys).
  Name lowered() const noexcept;
  // True if this name is `zone` or below it (case-insensitive).
  bool isSubdomainOf(const Name& zone) const noexcept;
  // The first label without its length byte ("www" for www.example.com); empty for the root.
  std::string_view firstLabel() const noexcept;

 private:
  friend Name readName(WireReader& r) noexcept;
  std::array<std::byte, 255> bytes_{};
  uint8_t len_ = 1;
};

// Reads a possibly compressed name at r.pos() and leaves r after it (after the first pointer, if
// any). Pointers must point strictly before the start of the label sequence that holds them, and
// not into the 12-byte message header (no encoder does that, and a pointer there would change
// meaning when a proxy rewrites the ID or flags); at most 126 hops.
// Errors: Truncated, BadPointer, PointerLoop, LabelTooLong, NameTooLong, BadLabelType.
// On error r carries the error and the returned name is the root.
Name readName(WireReader& r) noexcept;
// Same checks, without building the name.
void skipName(WireReader& r) noexcept;
// Writes uncompressed.
void writeName(WireWriter& w, const Name& n);

}  // namespace dotproxy::dns
