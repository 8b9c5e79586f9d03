#include "load.h"

#include "dotproxy/dns/types.h"

namespace dotproxy::dotload {

std::string_view transportName(Transport t) noexcept {
  switch (t) {
    case Transport::Udp:
      return "udp";
    case Transport::Tcp:
      return "tcp";
    case Transport::Tls:
      return "tls";
  }
  return "?";
}

void Counters::add(const Counters& o) noexcept {
  sent += o.sent;
  answered += o.answered;
  lost += o.lost;
  for (size_t i = 0; i < rcodes.size(); ++i) rcodes[i] += o.rcodes[i];
  connections += o.connections;
  handshakes += o.handshakes;
  resumptions += o.resumptions;
  segmented += o.segmented;
  connect += o.connect;
  tls += o.tls;
  mismatch += o.mismatch;
  malformed += o.malformed;
  truncated += o.truncated;
  closed += o.closed;
  send += o.send;
  busy += o.busy;
}

void Shared::fail(std::string message) {
  {
    std::lock_guard lock(mutex_);
    if (!fatal_) fatal_ = std::move(message);
  }
  stop.store(true, std::memory_order_relaxed);
}

std::optional<std::string> Shared::fatal() const {
  std::lock_guard lock(mutex_);
  return fatal_;
}

QueryPicker::QueryPicker(const QuerySource& src, unsigned thread)
    : src_(src), rng_(0x5eed0000ULL + thread * 7919ULL + static_cast<uint64_t>(nowNs())) {
  uint32_t n = static_cast<uint32_t>(src_.set->size());
  cursor_ = static_cast<uint32_t>((uint64_t{thread} * 7919) % n);  // threads start apart
  // The top 12 bits name the thread, so unique labels never collide across threads; the run's
  // random start keeps two runs from asking the same names.
  thread_bits_ = uint64_t{thread} << 52;
  counter_ = rng_.next() & ((uint64_t{1} << 40) - 1);
}

QueryPicker::Pick QueryPicker::next() noexcept {
  if (src_.set->random()) {
    // mix64 is a bijection, so distinct (thread, counter) pairs give distinct labels.
    return {.index = 0, .unique = mix64(thread_bits_ | (counter_++ & ((uint64_t{1} << 52) - 1)))};
  }
  if (src_.zipf) return {.index = src_.zipf->draw(rng_.uniform())};
  Pick p{.index = cursor_};
  if (++cursor_ == src_.set->size()) cursor_ = 0;
  return p;
}

bool handleAnswer(WireView answer, Inflight& table, const QuerySet& set, int64_t now_ns,
                  Counters& c, Histogram& latency) noexcept {
  if (answer.size() < dns::kHeaderSize) {
    ++c.malformed;
    return false;
  }
  uint16_t flags = loadU16(answer.data() + 2);
  if (!(flags & dns::flag::QR)) {
    ++c.malformed;
    return false;
  }
  uint16_t id = loadU16(answer.data());
  const Inflight::Slot* slot = table.find(id);
  if (!slot || !set.questionMatches(answer, slot->query, slot->unique)) {
    ++c.mismatch;  // a spoofed or stray answer leaves the query in flight
    return false;
  }
  int64_t took = now_ns - slot->sent_ns;
  latency.record(took > 0 ? static_cast<uint64_t>(took) : 0);
  ++c.rcodes[flags & 0xf];
  if (flags & dns::flag::TC) ++c.truncated;
  ++c.answered;
  table.release(id);
  return true;
}

}  // namespace dotproxy::dotload
