#include "inflight.h"

#include <algorithm>
#include <bit>
#include <limits>

namespace dotproxy::dotload {

Inflight::Inflight(size_t capacity) {
  capacity = std::bit_ceil(std::clamp<size_t>(capacity, 1, 65536));
  slots_.resize(capacity);
  mask_ = static_cast<uint16_t>(capacity - 1);
  bits_ = static_cast<unsigned>(std::countr_zero(capacity));
  free_.reserve(capacity);
  for (size_t i = capacity; i-- > 0;) free_.push_back(static_cast<uint16_t>(i));
  // Start every slot's generation somewhere different, so IDs do not all begin at 0.
  for (size_t i = 0; i < capacity; ++i) {
    slots_[i].id = static_cast<uint16_t>((i * 0x9e37u) << bits_ | i);
  }
  fifo_.resize(std::bit_ceil(capacity * 2));
}

uint16_t Inflight::acquire(int64_t sent_ns, uint32_t query, uint64_t unique) noexcept {
  uint16_t index = free_.back();
  free_.pop_back();
  Slot& s = slots_[index];
  // Next generation in the high bits (wraps within 16 bits); the low bits stay the index.
  uint32_t gen = (static_cast<uint32_t>(s.id) >> bits_) + 1;
  s.id = static_cast<uint16_t>((gen << bits_) | index);
  s.sent_ns = sent_ns;
  s.query = query;
  s.unique = unique;
  s.busy = true;
  ++in_flight_;
  push(s.id);
  return s.id;
}

void Inflight::push(uint16_t id) {
  if (count_ == fifo_.size()) dropStaleHead();
  if (count_ == fifo_.size()) {
    std::vector<uint16_t> bigger(fifo_.size() * 2);
    for (size_t i = 0; i < count_; ++i) bigger[i] = fifo_[(head_ + i) & (fifo_.size() - 1)];
    fifo_ = std::move(bigger);
    head_ = 0;
  }
  fifo_[(head_ + count_) & (fifo_.size() - 1)] = id;
  ++count_;
}

void Inflight::release(uint16_t id) noexcept {
  Slot& s = slots_[id & mask_];
  if (!s.busy || s.id != id) return;
  s.busy = false;
  --in_flight_;
  free_.push_back(static_cast<uint16_t>(id & mask_));
  dropStaleHead();
}

void Inflight::dropStaleHead() noexcept {
  while (count_ > 0 && !find(fifo_[head_])) {
    head_ = (head_ + 1) & (fifo_.size() - 1);
    --count_;
  }
}

size_t Inflight::expire(int64_t deadline_ns) noexcept {
  size_t n = 0;
  dropStaleHead();
  while (count_ > 0) {
    const Slot* s = find(fifo_[head_]);
    if (s && s->sent_ns >= deadline_ns) break;
    if (s) {
      release(fifo_[head_]);  // also drops it (and any stale entries after it) from the head
      ++n;
    } else {
      dropStaleHead();
    }
  }
  return n;
}

size_t Inflight::releaseAll() noexcept {
  size_t n = in_flight_;
  for (auto& s : slots_) {
    if (s.busy) {
      s.busy = false;
      free_.push_back(static_cast<uint16_t>(s.id & mask_));
    }
  }
  in_flight_ = 0;
  head_ = count_ = 0;
  return n;
}

int64_t Inflight::oldest() noexcept {
  dropStaleHead();
  if (count_ == 0) return std::numeric_limits<int64_t>::max();
  return find(fifo_[head_])->sent_ns;
}

}  // namespace dotproxy::dotload
