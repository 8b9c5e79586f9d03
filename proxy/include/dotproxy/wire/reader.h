#pragma once
// WireReader: a bounds-checked cursor over one whole message, with a sticky error. After the first
// failure every read returns zero/empty and the position stops moving; check error() once at the
// end. The reader keeps the whole message so that compression pointers (dns/name.h) can be
// followed.

#include <cstddef>
#include <cstdint>
#include <optional>

#include "dotproxy/util/result.h"
#include "dotproxy/wire/buffer.h"

namespace dotproxy {

class WireReader {
 public:
  explicit WireReader(WireView message) noexcept : msg_(message) {}

  uint8_t u8() noexcept;
  uint16_t u16() noexcept;
  uint32_t u32() noexcept;
  // Borrows n bytes of the message; empty on error.
  WireView bytes(size_t n) noexcept;
  void skip(size_t n) noexcept;
  // Moves to an absolute offset (<= size()); sets Truncated otherwise.
  void seek(size_t offset) noexcept;

  size_t pos() const noexcept { return pos_; }
  size_t size() const noexcept { return msg_.size(); }
  size_t remaining() const noexcept { return msg_.size() - pos_; }
  bool atEnd() const noexcept { return pos_ == msg_.size(); }
  WireView message() const noexcept { return msg_; }

  // First error seen, if any. Once set it never changes.
  std::optional<Errc> error() const noexcept { return error_; }
  bool ok() const noexcept { return !error_; }
  void fail(Errc e) noexcept {
    if (!error_) error_ = e;
  }

 private:
  bool need(size_t n) noexcept;

  WireView msg_;
  size_t pos_ = 0;
  std::optional<Errc> error_;
};

}  // namespace dotproxy
