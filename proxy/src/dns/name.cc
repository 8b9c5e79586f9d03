#include "dotproxy/dns/name.h"

#include <algorithm>
#include <cstring>

#include "dotproxy/dns/types.h"

namespace dotproxy::dns {

namespace {

// RFC 1035 4.1.4 sets no limit; 126 is the most a 255-byte name could need if every label were
// reached through its own pointer, so more hops can only be a loop or an attack.
constexpr unsigned kMaxHops = 126;

constexpr std::byte asciiLower(std::byte b) noexcept {
  return (b >= std::byte{'A'} && b <= std::byte{'Z'}) ? (b | std::byte{0x20}) : b;
}

bool equalIgnoreCase(const std::byte* a, const std::byte* b, size_t n) noexcept {
  for (size_t i = 0; i < n; ++i) {
    if (asciiLower(a[i]) != asciiLower(b[i])) return false;
  }
  return true;
}

// Walks the name at r.pos() and leaves r just after it. When `out` is set, the uncompressed name is
// written there (room for kMaxNameWire bytes). Returns the uncompressed length, 0 on error (the
// error is set on r). All reads go through a second cursor over the same message, so following a
// pointer never moves r itself.
size_t walkName(WireReader& r, std::byte* out) noexcept {
  if (!r.ok()) return 0;
  WireReader c(r.message());
  c.seek(r.pos());
  size_t seq_start = r.pos();  // start of the label sequence being read
  size_t resume = 0;           // where r continues: after the first pointer or the root label
  bool jumped = false;
  size_t len = 0;
  unsigned hops = 0;
  for (;;) {
    const uint8_t b = c.u8();
    if (!c.ok()) break;
    if ((b & 0xC0) == 0xC0) {
      const uint8_t lo = c.u8();
      if (!c.ok()) break;
      const size_t target = (size_t{b & 0x3fu} << 8) | lo;
      if (target >= seq_start || target < kHeaderSize) {
        c.fail(Errc::BadPointer);
        break;
      }
      if (++hops > kMaxHops) {
        c.fail(Errc::PointerLoop);
        break;
      }
      if (!jumped) {
        resume = c.pos();
        jumped = true;
      }
      c.seek(target);
      seq_start = target;
      continue;
    }
    if ((b & 0xC0) != 0) {  // 0x40 extended (RFC 6891 5), 0x80 reserved
      c.fail(Errc::BadLabelType);
      break;
    }
    if (b == 0) {
      if (out) out[len] = std::byte{0};
      ++len;
      if (!jumped) resume = c.pos();
      break;
    }
    // The label plus at least the root byte after it must fit in 255.
    if (len + 1 + b + 1 > kMaxNameWire) {
      c.fail(Errc::NameTooLong);
      break;
    }
    WireView label = c.bytes(b);
    if (!c.ok()) break;
    if (out) {
      out[len] = std::byte{b};
      std::memcpy(out + len + 1, label.data(), b);
    }
    len += 1 + b;
  }
  if (!c.ok()) {
    r.fail(*c.error());
    return 0;
  }
  r.seek(resume);
  return len;
}

}  // namespace

Name::Name() noexcept = default;

Name readName(WireReader& r) noexcept {
  Name n;
  std::array<std::byte, kMaxNameWire> buf;
  const size_t len = walkName(r, buf.data());
  if (len == 0) return Name{};
  std::memcpy(n.bytes_.data(), buf.data(), len);
  n.len_ = static_cast<uint8_t>(len);
  return n;
}

void skipName(WireReader& r) noexcept {
  walkName(r, nullptr);
}

void writeName(WireWriter& w, const Name& n) {
  w.bytes(n.wire());
}

Result<Name> Name::fromWire(WireView wire) noexcept {
  WireReader r(wire);
  Name n = readName(r);
  if (!r.ok()) return std::unexpected(*r.error());
  if (!r.atEnd()) return std::unexpected(Errc::TrailingData);
  return n;
}

Result<Name> Name::fromText(std::string_view text) noexcept {
  if (text.empty()) return std::unexpected(Errc::BadText);
  Name n;
  if (text == ".") return n;
  auto isDigit = [](char ch) { return ch >= '0' && ch <= '9'; };
  size_t pos = 0;  // where the next label's length byte goes
  size_t i = 0;
  while (i < text.size()) {
    size_t label_len = 0;
    while (i < text.size() && text[i] != '.') {
      uint8_t ch = 0;
      if (text[i] == '\\') {
        if (i + 1 >= text.size()) return std::unexpected(Errc::BadText);
        if (isDigit(text[i + 1])) {
          if (i + 3 >= text.size() || !isDigit(text[i + 2]) || !isDigit(text[i + 3])) {
            return std::unexpected(Errc::BadText);
          }
          const unsigned v = (text[i + 1] - '0') * 100u + (text[i + 2] - '0') * 10u +
                             static_cast<unsigned>(text[i + 3] - '0');
          if (v > 255) return std::unexpected(Errc::BadText);
          ch = static_cast<uint8_t>(v);
          i += 4;
        } else {
          ch = static_cast<uint8_t>(text[i + 1]);
          i += 2;
        }
      } else {
        ch = static_cast<uint8_t>(text[i]);
        ++i;
      }
      if (label_len == kMaxLabel) return std::unexpected(Errc::LabelTooLong);
      // length byte + label so far + this byte + the root byte
      if (pos + 1 + label_len + 1 + 1 > kMaxNameWire) return std::unexpected(Errc::NameTooLong);
      n.bytes_[pos + 1 + label_len] = std::byte{ch};
      ++label_len;
    }
    if (label_len == 0) return std::unexpected(Errc::BadText);  // "..", leading '.'
    n.bytes_[pos] = static_cast<std::byte>(label_len);
    pos += 1 + label_len;
    if (i < text.size()) ++i;  // the '.'; a trailing one ends the loop
  }
  n.bytes_[pos] = std::byte{0};
  n.len_ = static_cast<uint8_t>(pos + 1);
  return n;
}

unsigned Name::labelCount() const noexcept {
  unsigned count = 0;
  for (size_t o = 0; o < len_ && bytes_[o] != std::byte{0};
       o += 1 + std::to_integer<size_t>(bytes_[o])) {
    ++count;
  }
  return count;
}

std::string Name::toText() const {
  if (isRoot()) return ".";
  std::string s;
  s.reserve(len_ + 8);
  size_t o = 0;
  while (o < len_ && bytes_[o] != std::byte{0}) {
    const size_t n = std::to_integer<size_t>(bytes_[o]);
    for (size_t k = o + 1; k <= o + n; ++k) {
      const auto ch = std::to_integer<unsigned char>(bytes_[k]);
      switch (ch) {
        case '.':
        case '\\':
        case '"':
        case '(':
        case ')':
        case ';':
        case '@':
        case '$':
          s.push_back('\\');
          s.push_back(static_cast<char>(ch));
          break;
        default:
          if (ch <= 0x20 || ch >= 0x7f) {
            s.push_back('\\');
            s.push_back(static_cast<char>('0' + ch / 100));
            s.push_back(static_cast<char>('0' + ch / 10 % 10));
            s.push_back(static_cast<char>('0' + ch % 10));
          } else {
            s.push_back(static_cast<char>(ch));
          }
      }
    }
    s.push_back('.');
    o += 1 + n;
  }
  return s;
}

// Length bytes are at most 63, below 'A', so folding the whole wire form only touches letters.
bool Name::equalsIgnoreCase(const Name& other) const noexcept {
  return len_ == other.len_ && equalIgnoreCase(bytes_.data(), other.bytes_.data(), len_);
}

bool Name::operator==(const Name& other) const noexcept {
  return len_ == other.len_ && std::memcmp(bytes_.data(), other.bytes_.data(), len_) == 0;
}

Name Name::lowered() const noexcept {
  Name n = *this;
  for (size_t i = 0; i < len_; ++i) n.bytes_[i] = asciiLower(bytes_[i]);
  return n;
}

bool Name::isSubdomainOf(const Name& zone) const noexcept {
  if (zone.len_ > len_) return false;
  size_t o = 0;
  for (;;) {
    if (len_ - o == zone.len_) {
      return equalIgnoreCase(bytes_.data() + o, zone.bytes_.data(), zone.len_);
    }
    if (o >= len_ || bytes_[o] == std::byte{0}) return false;
    o += 1 + std::to_integer<size_t>(bytes_[o]);
  }
}

std::string_view Name::firstLabel() const noexcept {
  const size_t n = std::to_integer<size_t>(bytes_[0]);
  return asChars(wire().subspan(1, n));
}

}  // namespace dotproxy::dns
