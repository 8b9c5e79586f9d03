#include "dotproxy/tls/framer.h"

#include <algorithm>
#include <limits>

namespace dotproxy::tls {

namespace {
// Consumed bytes are dropped once they are at least this many and at least half of the buffer, so
// the buffer stays bounded by roughly two messages plus one read, and compaction is amortised O(1).
constexpr size_t kCompactThreshold = 4096;
}  // namespace

void DotFramer::feed(WireView bytes) {
  if (head_ == buf_.size()) {
    buf_.clear();
    head_ = 0;
  } else if (head_ >= kCompactThreshold && head_ * 2 >= buf_.size()) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
}

std::optional<PacketBuffer> DotFramer::next() {
  const size_t avail = buf_.size() - head_;
  if (avail < 2) return std::nullopt;
  const size_t len = loadU16(buf_.data() + head_);
  if (avail - 2 < len) return std::nullopt;
  PacketBuffer msg(WireView(buf_.data() + head_ + 2, len));
  head_ += 2 + len;
  if (head_ == buf_.size()) {
    buf_.clear();
    head_ = 0;
  }
  return msg;
}

Result<void> appendFrame(PacketBuffer& out, WireView message) {
  if (message.size() > std::numeric_limits<uint16_t>::max()) return std::unexpected(Errc::TooLarge);
  std::byte prefix[2];
  storeU16(prefix, static_cast<uint16_t>(message.size()));
  out.append(WireView(prefix, 2));
  out.append(message);
  return {};
}

}  // namespace dotproxy::tls
