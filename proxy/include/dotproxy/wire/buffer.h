#pragma once
// PacketBuffer owns bytes; WireView borrows them and is never stored past the call that got it.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

namespace dotproxy {

using WireView = std::span<const std::byte>;

inline WireView asWire(std::string_view s) noexcept {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
inline std::string_view asChars(WireView w) noexcept {
  return {reinterpret_cast<const char*>(w.data()), w.size()};
}

// An owned, growable DNS message or frame. Moves are cheap; copies are explicit via clone().
class PacketBuffer {
 public:
  PacketBuffer() = default;
  explicit PacketBuffer(WireView bytes) : bytes_(bytes.begin(), bytes.end()) {}
  PacketBuffer(PacketBuffer&&) noexcept = default;
  PacketBuffer& operator=(PacketBuffer&&) noexcept = default;
  PacketBuffer(const PacketBuffer&) = delete;
  PacketBuffer& operator=(const PacketBuffer&) = delete;

  PacketBuffer clone() const { return PacketBuffer(view()); }

  std::byte* data() noexcept { return bytes_.data(); }
  const std::byte* data() const noexcept { return bytes_.data(); }
  size_t size() const noexcept { return bytes_.size(); }
  bool empty() const noexcept { return bytes_.empty(); }
  WireView view() const noexcept { return {bytes_.data(), bytes_.size()}; }
  std::span<std::byte> mutableView() noexcept { return {bytes_.data(), bytes_.size()}; }
  operator WireView() const noexcept { return view(); }  // NOLINT(google-explicit-constructor)

  void resize(size_t n) { bytes_.resize(n); }
  void reserve(size_t n) { bytes_.reserve(n); }
  void clear() noexcept { bytes_.clear(); }
  void append(WireView more) { bytes_.insert(bytes_.end(), more.begin(), more.end()); }
  void push(std::byte b) { bytes_.push_back(b); }
  std::byte operator[](size_t i) const noexcept { return bytes_[i]; }
  std::byte& operator[](size_t i) noexcept { return bytes_[i]; }
  size_t capacity() const noexcept { return bytes_.capacity(); }

 private:
  std::vector<std::byte> bytes_;
};

// Big-endian helpers for code that already owns a bounds-checked span (writers, patches).
inline uint16_t loadU16(const std::byte* p) noexcept {
  return static_cast<uint16_t>((std::to_integer<unsigned>(p[0]) << 8) |
                               std::to_integer<unsigned>(p[1]));
}
inline void storeU16(std::byte* p, uint16_t v) noexcept {
  p[0] = static_cast<std::byte>(v >> 8);
  p[1] = static_cast<std::byte>(v & 0xff);
}
inline uint32_t loadU32(const std::byte* p) noexcept {
  return (uint32_t{loadU16(p)} << 16) | loadU16(p + 2);
}
inline void storeU32(std::byte* p, uint32_t v) noexcept {
  storeU16(p, static_cast<uint16_t>(v >> 16));
  storeU16(p + 2, static_cast<uint16_t>(v & 0xffff));
}

}  // namespace dotproxy
