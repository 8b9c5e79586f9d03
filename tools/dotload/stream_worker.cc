// The TCP and DoT worker: several pipelined connections in one epoll, each a small state machine
// (Connecting -> Handshaking (TLS) -> Ready -> Draining -> reopened or Done). Queries are framed
// with tls::appendFrame into the connection's output buffer, answers come out of tls::DotFramer in
// any order and are matched through the connection's slot table. --reconnect-every N drains a
// connection after N queries and opens a new one, offering the last TLS session for resumption.

#include <fmt/format.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <limits>
#include <memory>
#include <optional>

#include "dotproxy/tls/framer.h"
#include "load.h"
#include "rate.h"

namespace dotproxy::dotload {
namespace {

constexpr int64_t kMaxWaitNs = 100'000'000;
constexpr int64_t kRetryNs = 100'000'000;  // a broken connection is reopened after this

enum class State : uint8_t { Idle, Connecting, Handshaking, Ready, Draining, Done };

struct Conn {
  State state = State::Idle;
  net::Fd fd;
  std::optional<tls::Stream> stream;
  tls::Session session;  // the last one the server gave us, offered on the next connection
  Inflight table;
  tls::DotFramer framer;
  PacketBuffer out;
  size_t out_sent = 0;
  uint64_t sent_here = 0;  // queries sent on this connection
  int64_t since_ns = 0;    // when the current state began (connect/handshake deadlines)
  int64_t retry_ns = 0;    // Idle: reopen at this time
  uint32_t interest = 0;
  bool want_write = false;  // TLS: the stream asked for writability

  explicit Conn(size_t capacity) : table(capacity) {}
};

class StreamWorker {
 public:
  explicit StreamWorker(const WorkerContext& ctx)
      : ctx_(ctx),
        s_(*ctx.settings),
        picker_(ctx.source, ctx.index),
        tls_(s_.transport == Transport::Tls) {}
  WorkerResult run();

 private:
  void open(size_t i, int64_t now);
  void close(Conn& c, bool broken);
  void fail(Conn& c, std::string why, bool handshake);
  void onEvents(size_t i, uint32_t events);
  void handshake(Conn& c);
  void ready(Conn& c);
  void readAnswers(Conn& c);
  bool flushOut(Conn& c);
  void queue(Conn& c, int64_t sent_ns);
  void refill(Conn& c);
  bool paced(int64_t now);  // false when due queries wait for a connection
  void updateInterest(size_t i);
  bool sending(int64_t now) const {
    return budget_ > 0 && now < ctx_.end_ns && !ctx_.shared->stop.load(std::memory_order_relaxed);
  }
  // After connection `self` used up its --reconnect-every share: is a new one needed, or can the
  // others still send everything that is left of -n?
  bool needAnother(size_t self) const {
    if (budget_ == std::numeric_limits<uint64_t>::max()) return true;
    uint64_t room = 0;
    for (size_t j = 0; j < conns_.size(); ++j) {
      const Conn& c = *conns_[j];
      if (j == self || c.state == State::Draining || c.state == State::Done) continue;
      room += c.state == State::Ready
                  ? s_.reconnect_every - std::min(c.sent_here, s_.reconnect_every)
                  : s_.reconnect_every;
    }
    return room < budget_;
  }
  bool mayQueue(const Conn& c) const {
    return c.state == State::Ready && !c.table.full() &&
           (s_.reconnect_every == 0 || c.sent_here < s_.reconnect_every);
  }
  void publish() {
    ctx_.published->sent.store(r_.counters.sent, std::memory_order_relaxed);
    ctx_.published->answered.store(r_.counters.answered, std::memory_order_relaxed);
    ctx_.published->lost.store(r_.counters.lost, std::memory_order_relaxed);
  }
  std::string where() const { return s_.server.toString(); }

  const WorkerContext& ctx_;
  const RunSettings& s_;
  QueryPicker picker_;
  bool tls_;
  WorkerResult r_;
  std::vector<std::unique_ptr<Conn>> conns_;
  net::Fd epoll_;
  std::optional<RateScheduler> sched_;
  size_t rr_ = 0;
  uint64_t budget_ = std::numeric_limits<uint64_t>::max();
  std::vector<std::byte> in_ = std::vector<std::byte>(65536);
  std::byte scratch_[QuerySet::kMaxWire];
};

void StreamWorker::open(size_t i, int64_t now) {
  Conn& c = *conns_[i];
  int err = 0;
  auto fd = net::tcpConnect(s_.server, &err);
  ++r_.counters.connections;
  c.since_ns = now;
  c.sent_here = 0;
  c.out.clear();
  c.out_sent = 0;
  c.framer = tls::DotFramer();
  if (!fd) {
    fail(c,
         fmt::format("{}: {}", where(),
                     err == ECONNREFUSED ? "connection refused" : std::strerror(err)),
         false);
    return;
  }
  c.fd = std::move(*fd);
  c.state = State::Connecting;
  c.interest = EPOLLOUT;
  epoll_event ev{.events = EPOLLOUT, .data = {.u64 = i}};
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c.fd.get(), &ev);
}

void StreamWorker::close(Conn& c, bool broken) {
  if (c.stream) {
    if (auto s = c.stream->session()) c.session = s;
    if (!broken) c.stream->shutdown();
    c.stream.reset();
  }
  if (c.fd) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);
  c.fd.reset();
  size_t lost = c.table.releaseAll();
  r_.counters.lost += lost;
  if (broken && lost > 0) ++r_.counters.closed;
  c.interest = 0;
  c.state = State::Idle;
}

// A connection could not be set up. Before anything has worked, the target is unusable and the run
// stops with `why`; afterwards the connection is retried shortly.
void StreamWorker::fail(Conn& c, std::string why, bool handshake) {
  ++(handshake ? r_.counters.tls : r_.counters.connect);
  close(c, true);
  c.retry_ns = nowNs() + kRetryNs;
  if (!ctx_.shared->any_ready.load(std::memory_order_relaxed)) ctx_.shared->fail(std::move(why));
}

void StreamWorker::updateInterest(size_t i) {
  Conn& c = *conns_[i];
  if (!c.fd) return;
  uint32_t want = 0;
  switch (c.state) {
    case State::Connecting:
      want = EPOLLOUT;
      break;
    case State::Handshaking:
      want = c.want_write ? EPOLLOUT : EPOLLIN;
      break;
    case State::Ready:
    case State::Draining:
      want = EPOLLIN;
      if (c.out_sent < c.out.size() || c.want_write) want |= EPOLLOUT;
      break;
    default:
      break;
  }
  if (want != c.interest) {
    epoll_event ev{.events = want, .data = {.u64 = i}};
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev);
    c.interest = want;
  }
}

void StreamWorker::handshake(Conn& c) {
  auto h = c.stream->handshake();
  if (!h) {
    if (h.error() == Errc::WantRead || h.error() == Errc::WantWrite) {
      c.want_write = h.error() == Errc::WantWrite;
      return;
    }
    std::string why = c.stream->failure();
    fail(c,
         fmt::format("{}: TLS handshake failed: {}", where(),
                     why.empty() ? std::string(errcName(h.error())) : why),
         true);
    return;
  }
  c.want_write = false;
  ++r_.counters.handshakes;
  if (c.stream->resumed()) ++r_.counters.resumptions;
  ready(c);
}

void StreamWorker::ready(Conn& c) {
  c.state = State::Ready;
  c.since_ns = nowNs();
  ctx_.shared->any_ready.store(true, std::memory_order_relaxed);
}

void StreamWorker::queue(Conn& c, int64_t sent_ns) {
  auto [index, unique] = picker_.next();
  uint16_t id = c.table.acquire(sent_ns, index, unique);
  size_t len = ctx_.source.set->write(scratch_, index, unique, id);
  (void)tls::appendFrame(c.out, WireView(scratch_, len));  // at most 514 bytes: never TooLarge
  ++c.sent_here;
  ++r_.counters.sent;
  --budget_;
}

void StreamWorker::refill(Conn& c) {
  if (c.state != State::Ready) return;
  int64_t now = nowNs();
  while (budget_ > 0 && mayQueue(c) && c.table.inFlight() < s_.outstanding) queue(c, now);
}

bool StreamWorker::paced(int64_t now) {
  // A query due while no connection can take it (connecting, draining for --reconnect-every, all
  // IDs in flight) waits for one; its latency still counts from its scheduled time.
  uint64_t due = sched_->due(now, std::min<uint64_t>(budget_, 4096));
  for (uint64_t n = 0; n < due; ++n) {
    Conn* target = nullptr;
    for (size_t tries = 0; tries < conns_.size() && !target; ++tries) {
      Conn& c = *conns_[rr_];
      rr_ = (rr_ + 1) % conns_.size();
      if (mayQueue(c)) target = &c;
    }
    if (!target) return false;
    queue(*target, sched_->timeOf(sched_->take(1)));
  }
  return true;
}

// Writes what is queued; false if the connection broke (and was closed).
bool StreamWorker::flushOut(Conn& c) {
  c.want_write = false;
  while (c.out_sent < c.out.size()) {
    WireView rest = c.out.view().subspan(c.out_sent);
    auto w = c.stream ? c.stream->write(rest) : net::writeSome(c.fd.get(), rest);
    if (w) {
      c.out_sent += *w;
      continue;
    }
    if (w.error() == Errc::WantWrite || w.error() == Errc::WantRead) {
      c.want_write = w.error() == Errc::WantWrite;
      return true;
    }
    close(c, true);
    c.retry_ns = nowNs() + kRetryNs;
    return false;
  }
  c.out.clear();
  c.out_sent = 0;
  return true;
}

void StreamWorker::readAnswers(Conn& c) {
  for (int round = 0; round < 16; ++round) {
    auto n = c.stream ? c.stream->read(in_) : net::readSome(c.fd.get(), in_);
    if (!n) {
      if (n.error() == Errc::WantRead) return;
      if (n.error() == Errc::WantWrite) {
        c.want_write = true;
        return;
      }
      // Closed or reset by the server.
      close(c, true);
      c.retry_ns = nowNs() + kRetryNs;
      return;
    }
    c.framer.feed(WireView(in_.data(), *n));
    int64_t now = nowNs();
    while (auto msg = c.framer.next()) {
      handleAnswer(*msg, c.table, *ctx_.source.set, now, r_.counters, r_.latency);
    }
    if (*n < in_.size()) return;
  }
}

void StreamWorker::onEvents(size_t i, uint32_t events) {
  Conn& c = *conns_[i];
  if (c.state == State::Connecting) {
    int err = net::socketError(c.fd.get());
    if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
      if (err == 0) err = ECONNREFUSED;
      fail(c,
           fmt::format("{}: {}", where(),
                       err == ECONNREFUSED ? "connection refused" : std::strerror(err)),
           false);
      return;
    }
    if (!tls_) {
      ++r_.counters.handshakes;
      ready(c);
    } else {
      tls::ClientStreamOptions opts{
          .server_name = s_.tls_name.empty() ? s_.server_text : s_.tls_name,
          .pins = s_.pins,
          .resume = c.session};
      auto st = tls::Stream::client(*ctx_.tls, c.fd.get(), opts);
      if (!st) {
        fail(c, fmt::format("{}: TLS: {}", where(), errcName(st.error())), true);
        return;
      }
      c.stream.emplace(std::move(*st));
      c.state = State::Handshaking;
      c.since_ns = nowNs();
      handshake(c);
    }
    return;
  }
  if (c.state == State::Handshaking) {
    handshake(c);
    return;
  }
  if (c.state != State::Ready && c.state != State::Draining) return;
  if (events & EPOLLIN || c.want_write) readAnswers(c);
  if (c.fd && (events & EPOLLOUT)) flushOut(c);
}

WorkerResult StreamWorker::run() {
  if (ctx_.queries > 0) budget_ = ctx_.queries;
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) {
    ctx_.shared->fail(fmt::format("epoll: {}", std::strerror(errno)));
    return std::move(r_);
  }
  size_t capacity = s_.outstanding;
  if (ctx_.qps > 0) {
    double per_conn = ctx_.qps / s_.connections;
    capacity =
        static_cast<size_t>(per_conn * std::chrono::duration<double>(s_.timeout).count() * 1.25) +
        64;
  }
  if (ctx_.qps > 0) sched_.emplace(ctx_.qps, ctx_.start_ns);
  for (unsigned i = 0; i < s_.connections; ++i) conns_.push_back(std::make_unique<Conn>(capacity));
  int64_t start = nowNs();
  for (size_t i = 0; i < conns_.size(); ++i) open(i, start);

  std::vector<epoll_event> events(conns_.size());
  for (;;) {
    int64_t now = nowNs();
    bool active = sending(now);
    bool stopping = ctx_.shared->stop.load(std::memory_order_relaxed);
    int64_t expired_before = now - s_.timeout.count();
    int64_t wake = now + kMaxWaitNs;
    size_t busy_conns = 0;
    for (size_t i = 0; i < conns_.size(); ++i) {
      Conn& c = *conns_[i];
      switch (c.state) {
        case State::Idle:
          if (stopping || !active) {
            c.state = State::Done;
          } else if (now >= c.retry_ns) {
            open(i, now);
          } else {
            wake = std::min(wake, c.retry_ns);
          }
          break;
        case State::Connecting:
        case State::Handshaking:
          if (stopping) {
            close(c, true);
            c.state = State::Done;
          } else if (now - c.since_ns > s_.timeout.count()) {
            fail(c,
                 fmt::format("{}: timed out {}", where(),
                             c.state == State::Connecting ? "connecting" : "in the TLS handshake"),
                 c.state == State::Handshaking);
          } else {
            wake = std::min(wake, c.since_ns + s_.timeout.count() + 1);
          }
          break;
        case State::Ready:
        case State::Draining: {
          r_.counters.lost += c.table.expire(expired_before);
          bool exhausted = s_.reconnect_every > 0 && c.sent_here >= s_.reconnect_every;
          if (stopping || !active || exhausted) c.state = State::Draining;
          if (c.state == State::Draining && c.table.inFlight() == 0 && c.out_sent >= c.out.size()) {
            close(c, false);
            // A new connection only if there is more to send.
            c.retry_ns = now;
            c.state = (exhausted && active && needAnother(i)) ? State::Idle : State::Done;
            if (c.state == State::Idle) open(i, now);
          }
          break;
        }
        case State::Done:
          break;
      }
      if (conns_[i]->state != State::Done) ++busy_conns;
    }
    if (busy_conns == 0 || (stopping && ctx_.shared->fatal())) break;
    if (active) {
      if (sched_) {
        // Blocked: the connection's own events (connected, answers) wake the loop instead.
        if (paced(now)) wake = std::min(wake, sched_->nextTime());
      } else {
        for (auto& c : conns_) refill(*c);
      }
      wake = std::min(wake, ctx_.end_ns);
    }
    for (size_t i = 0; i < conns_.size(); ++i) {
      Conn& c = *conns_[i];
      if ((c.state == State::Ready || c.state == State::Draining) && c.out_sent < c.out.size()) {
        flushOut(c);
      }
      if (c.state == State::Ready || c.state == State::Draining) {
        int64_t oldest = c.table.oldest();
        if (oldest != std::numeric_limits<int64_t>::max()) {
          wake = std::min(wake, oldest + static_cast<int64_t>(s_.timeout.count()) + 1);
        }
      }
      updateInterest(i);
    }
    publish();

    int64_t wait = std::max<int64_t>(0, wake - nowNs());
    timespec ts{.tv_sec = static_cast<time_t>(wait / 1'000'000'000),
                .tv_nsec = static_cast<long>(wait % 1'000'000'000)};
    int n =
        ::epoll_pwait2(epoll_.get(), events.data(), static_cast<int>(events.size()), &ts, nullptr);
    for (int k = 0; k < n; ++k) {
      size_t i = events[k].data.u64;
      onEvents(i, events[k].events);
      Conn& c = *conns_[i];
      if (!sched_ && sending(nowNs())) refill(c);
      if ((c.state == State::Ready || c.state == State::Draining) && c.out_sent < c.out.size()) {
        flushOut(c);
      }
      updateInterest(i);
    }
  }
  for (auto& c : conns_) {
    if (c->fd) close(*c, false);
  }
  publish();
  return std::move(r_);
}

}  // namespace

WorkerResult runStreamWorker(const WorkerContext& ctx) {
  return StreamWorker(ctx).run();
}

}  // namespace dotproxy::dotload
