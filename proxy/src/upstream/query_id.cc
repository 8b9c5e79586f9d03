#include "dotproxy/upstream/query_id.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace dotproxy::upstream {

uint16_t QueryIdSource::next() noexcept {
  if (left_ == 0) {
    auto* p = reinterpret_cast<unsigned char*>(buf_);
    size_t got = 0;
    while (got < sizeof buf_) {
      ssize_t n = ::getrandom(p + got, sizeof buf_ - got, 0);
      if (n > 0) {
        got += static_cast<size_t>(n);
      } else if (n < 0 && errno != EINTR) {
        // No CSPRNG: query IDs would be guessable. arc4random aborts the same way.
        std::fputs("dotproxy: getrandom failed; cannot pick query IDs\n", stderr);
        std::abort();
      }
    }
    left_ = kBlock;
  }
  return buf_[--left_];
}

std::optional<uint16_t> pickQueryId(QueryIdSource& ids,
                                    const std::function<bool(uint16_t)>& in_use) noexcept {
  // With the connection's limit far below 65536 the first draw is nearly always free; a few more
  // draws keep the IDs random when it is busy.
  for (int i = 0; i < 8; ++i) {
    uint16_t id = ids.next();
    if (!in_use(id)) return id;
  }
  // Crowded: the next free ID after a random one. Deterministic, so it ends.
  const uint16_t start = ids.next();
  for (uint32_t k = 0; k < 65536; ++k) {
    auto id = static_cast<uint16_t>(start + k);
    if (!in_use(id)) return id;
  }
  return std::nullopt;
}

}  // namespace dotproxy::upstream
