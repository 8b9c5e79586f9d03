#pragma once
// DNS query IDs for upstream queries: unpredictable (a CSPRNG, RFC 5452 section 9.2) and never one
// that is still in flight on the same connection.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>

namespace dotproxy::upstream {

// Random 16-bit IDs from the kernel's CSPRNG (getrandom), read in blocks so that one system call
// serves many queries. Not thread-safe: one per thread. Aborts if the kernel has no getrandom
// (Linux < 3.17), as running with predictable IDs would be worse.
class QueryIdSource {
 public:
  uint16_t next() noexcept;

 private:
  static constexpr size_t kBlock = 128;  // IDs per getrandom call
  uint16_t buf_[kBlock] = {};
  size_t left_ = 0;
};

// A query ID for which in_use(id) is false: a few random draws, then (when the connection is
// nearly full) a scan from a random point, so that a free ID is always found while there is one and
// a live one is never handed out. nullopt if all 65536 IDs are in use.
std::optional<uint16_t> pickQueryId(QueryIdSource& ids,
                                    const std::function<bool(uint16_t)>& in_use) noexcept;

}  // namespace dotproxy::upstream
