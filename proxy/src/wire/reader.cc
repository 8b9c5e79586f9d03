#include "dotproxy/wire/reader.h"

namespace dotproxy {

bool WireReader::need(size_t n) noexcept {
  if (error_) return false;
  if (n > msg_.size() - pos_) {
    error_ = Errc::Truncated;
    return false;
  }
  return true;
}

uint8_t WireReader::u8() noexcept {
  if (!need(1)) return 0;
  return std::to_integer<uint8_t>(msg_[pos_++]);
}

uint16_t WireReader::u16() noexcept {
  if (!need(2)) return 0;
  uint16_t v = loadU16(msg_.data() + pos_);
  pos_ += 2;
  return v;
}

uint32_t WireReader::u32() noexcept {
  if (!need(4)) return 0;
  uint32_t v = loadU32(msg_.data() + pos_);
  pos_ += 4;
  return v;
}

WireView WireReader::bytes(size_t n) noexcept {
  if (!need(n)) return {};
  WireView v = msg_.subspan(pos_, n);
  pos_ += n;
  return v;
}

void WireReader::skip(size_t n) noexcept {
  if (need(n)) pos_ += n;
}

void WireReader::seek(size_t offset) noexcept {
  if (error_) return;
  if (offset > msg_.size()) {
    error_ = Errc::Truncated;
    return;
  }
  pos_ = offset;
}

}  // namespace dotproxy
