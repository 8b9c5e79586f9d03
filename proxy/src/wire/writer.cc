#include "dotproxy/wire/writer.h"

namespace dotproxy {

bool WireWriter::room(size_t n) noexcept {
  if (error_) return false;
  if (n > limit_ || out_.size() > limit_ - n) {
    error_ = Errc::TooLarge;
    return false;
  }
  return true;
}

void WireWriter::u8(uint8_t v) {
  if (room(1)) out_.push(static_cast<std::byte>(v));
}

void WireWriter::u16(uint16_t v) {
  if (!room(2)) return;
  std::byte b[2];
  storeU16(b, v);
  out_.append(b);
}

void WireWriter::u32(uint32_t v) {
  if (!room(4)) return;
  std::byte b[4];
  storeU32(b, v);
  out_.append(b);
}

void WireWriter::bytes(WireView v) {
  if (room(v.size())) out_.append(v);
}

void WireWriter::zeros(size_t n) {
  if (room(n)) out_.resize(out_.size() + n);
}

void WireWriter::patchU16(size_t offset, uint16_t v) noexcept {
  if (error_) return;
  if (offset + 2 > out_.size()) {
    error_ = Errc::Truncated;
    return;
  }
  storeU16(out_.data() + offset, v);
}

}  // namespace dotproxy
