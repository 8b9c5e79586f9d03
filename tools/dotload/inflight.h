#pragma once
// The queries in flight on one socket or connection: a fixed table of slots indexed by the low
// bits of the DNS ID (the high bits count the slot's reuses, so a late answer to an expired query
// does not match the query that reused its slot), a free list, and a FIFO of IDs in send order for
// expiry. Sized once; nothing allocates per query (the FIFO only grows while warming up, when more
// queries are sent within one timeout than it held).

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dotproxy::dotload {

class Inflight {
 public:
  struct Slot {
    int64_t sent_ns = 0;  // scheduled (open loop) or actual (closed loop) send time
    uint64_t unique = 0;  // random-name label value
    uint32_t query = 0;   // index into the QuerySet
    uint16_t id = 0;      // the DNS ID it went out with
    bool busy = false;
  };

  // capacity: queries in flight at once, rounded up to a power of two, at most 65536.
  explicit Inflight(size_t capacity);

  size_t capacity() const noexcept { return slots_.size(); }
  size_t inFlight() const noexcept { return in_flight_; }
  bool full() const noexcept { return free_.empty(); }

  // Takes a free slot (the table must not be full) and returns the ID to send.
  uint16_t acquire(int64_t sent_ns, uint32_t query, uint64_t unique) noexcept;
  // The in-flight slot an answer with this ID belongs to, or nullptr (late, foreign, duplicate).
  const Slot* find(uint16_t id) const noexcept {
    const Slot& s = slots_[id & mask_];
    return s.busy && s.id == id ? &s : nullptr;
  }
  // Frees the slot of an in-flight ID (answered, or given up); a no-op if not in flight.
  void release(uint16_t id) noexcept;
  // Gives up every query sent before deadline_ns; returns how many.
  size_t expire(int64_t deadline_ns) noexcept;
  // Gives up everything in flight (connection closed); returns how many.
  size_t releaseAll() noexcept;
  // Send time of the oldest query in flight, or INT64_MAX if none.
  int64_t oldest() noexcept;

 private:
  void dropStaleHead() noexcept;
  void push(uint16_t id);

  std::vector<Slot> slots_;
  std::vector<uint16_t> free_;  // a stack of free slot indices
  uint16_t mask_ = 0;
  unsigned bits_ = 0;
  size_t in_flight_ = 0;
  // FIFO of IDs in send order (a ring; entries whose slot was answered are skipped at the head).
  std::vector<uint16_t> fifo_;
  size_t head_ = 0, count_ = 0;
};

}  // namespace dotproxy::dotload
