#pragma once
// WireWriter appends big-endian fields to a PacketBuffer, refusing to grow it past a limit (sticky
// TooLarge). patchU16() rewrites a field already written (counts, lengths).

#include <cstddef>
#include <cstdint>
#include <optional>

#include "dotproxy/util/result.h"
#include "dotproxy/wire/buffer.h"

namespace dotproxy {

class WireWriter {
 public:
  // Appends to out (which keeps its current contents). limit caps out.size().
  explicit WireWriter(PacketBuffer& out, size_t limit = 65535) noexcept
      : out_(out), limit_(limit) {}

  void u8(uint8_t v);
  void u16(uint16_t v);
  void u32(uint32_t v);
  void bytes(WireView v);
  void zeros(size_t n);
  void patchU16(size_t offset, uint16_t v) noexcept;

  size_t size() const noexcept { return out_.size(); }
  std::optional<Errc> error() const noexcept { return error_; }
  bool ok() const noexcept { return !error_; }

 private:
  bool room(size_t n) noexcept;

  PacketBuffer& out_;
  size_t limit_;
  std::optional<Errc> error_;
};

}  // namespace dotproxy
