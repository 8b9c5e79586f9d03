#pragma once
// RFC 1035 4.2.2 / RFC 7766 / RFC 7858 framing: each message carries a 2-byte length prefix.
// Bytes in, whole messages out; no I/O. The daemon (TCP and DoT), dotq, dotmock and a fuzzer drive
// it.

#include <cstddef>
#include <optional>
#include <vector>

#include "dotproxy/util/result.h"
#include "dotproxy/wire/buffer.h"

namespace dotproxy::tls {

class DotFramer {
 public:
  DotFramer() = default;
  // Appends received bytes (any chunking: a split prefix, several messages in one call).
  void feed(WireView bytes);
  // The next whole message without its prefix, or nullopt until one has fully arrived. A
  // zero-length frame is returned as an empty buffer (callers treat it as malformed).
  std::optional<PacketBuffer> next();
  // Bytes received but not yet returned by next().
  size_t buffered() const noexcept { return buf_.size() - head_; }
  // True if next() would return a message (a reader that stops taking messages at a limit leaves
  // them here, and reads no more bytes while this holds).
  bool hasMessage() const noexcept {
    return buffered() >= 2 && buffered() - 2 >= loadU16(buf_.data() + head_);
  }
  // True if a message has started arriving (prefix or part of the body) but is not complete.
  bool midMessage() const noexcept { return buffered() > 0; }
  // Bytes allocated for the receive buffer; stays bounded (consumed bytes are compacted away).
  size_t capacity() const noexcept { return buf_.capacity(); }

 private:
  std::vector<std::byte> buf_;
  size_t head_ = 0;
};

// Appends the 2-byte big-endian length and the message to out. TooLarge above 65535 bytes.
Result<void> appendFrame(PacketBuffer& out, WireView message);

}  // namespace dotproxy::tls
