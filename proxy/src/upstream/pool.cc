#include "dotproxy/upstream/pool.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "dotproxy/tls/framer.h"
#include "dotproxy/upstream/query_id.h"
#include "dotproxy/util/log.h"

namespace dotproxy::upstream {

using net::Clock;

std::string Upstream::label() const {
  return tls_name.empty() ? address.toString() : address.toString() + "#" + tls_name;
}

namespace {

// Query IDs from the kernel's CSPRNG, one buffer per worker thread (query_id.h).
thread_local QueryIdSource t_ids;

// A query is sent at most twice: once, and once more on another connection or upstream.
constexpr unsigned kMaxAttempts = 2;
// Requests waiting for a free slot on a full connection, per worker; beyond this, SERVFAIL.
constexpr size_t kMaxWaiting = 16384;

}  // namespace

struct Pool::Health {
  bool usable = false;    // the last connection attempt worked (counted in upstreams_usable)
  unsigned failures = 0;  // consecutive failed connection attempts
  unsigned broken = 0;    // working connections lost with queries on them since the last answer
  Clock::time_point down_until{};
};

struct Pool::Request {
  Question q;
  Clock::time_point deadline;
  Completion done;
  unsigned attempts = 0;
  int last_upstream = -1;
  bool queued = false;  // in waiting_
  Errc last_error = Errc::Timeout;
  net::EventLoop::TimerId deadline_timer = 0;
  net::EventLoop::TimerId attempt_timer = 0;
  struct Outstanding {
    uint64_t conn;
    uint16_t qid;
  };
  std::vector<Outstanding> outstanding;  // attempts that may still answer
  std::vector<uint64_t> tried;           // connections used by earlier attempts
};

// One DoT connection: Connecting -> Handshaking -> Ready -> Closed (an explicit state machine).
// Many queries in flight, matched by ID and question in any order.
class Pool::Connection final : public net::EventLoop::Handler {
 public:
  enum class State : uint8_t { Connecting, Handshaking, Ready, Closed };

  Connection(Pool& pool, uint64_t id, size_t upstream)
      : pool_(pool), id_(id), upstream_(upstream) {}
  ~Connection() { cancelTimers(); }

  uint64_t id() const noexcept { return id_; }
  size_t upstream() const noexcept { return upstream_; }
  State state() const noexcept { return state_; }
  // Queries whose requests still wait for them. Orphans (requests answered elsewhere or timed
  // out) keep their IDs reserved, so that a late answer is recognised, but hold no slot: an
  // upstream that drops a few answers must not fill the connection for good.
  size_t pending() const noexcept { return live_; }
  bool hasRoom() const noexcept {
    return state_ != State::Closed && live_ < pool_.settings_.max_inflight_per_connection &&
           pending_.size() < kMaxIds;
  }
  const std::string& failure() const noexcept { return failure_; }
  bool resumed() const noexcept { return stream_ && stream_->resumed(); }

  // Starts the TCP connect; false if the socket could not even be created.
  bool start() {
    const Upstream& up = pool_.upstreams_[upstream_];
    int err = 0;
    auto fd = net::tcpConnect(up.address, &err);
    pool_.counters_.upstream_connects.inc();
    pool_.perUpstream(upstream_).connects.inc();
    started_ = pool_.loop_.now();
    if (!fd) {
      failure_ = fmt::format("connect: {}", std::strerror(err));
      return false;
    }
    fd_ = std::move(*fd);
    events_ = EPOLLIN | EPOLLOUT;
    if (!pool_.loop_.add(fd_.get(), events_, this, &err)) {
      failure_ = fmt::format("epoll: {}", std::strerror(err));
      fd_.reset();
      return false;
    }
    connect_timer_ = pool_.loop_.after(pool_.settings_.connect_timeout, [this] {
      connect_timer_ = 0;
      failure_ = state_ == State::Connecting ? "TCP connect timed out" : "TLS handshake timed out";
      fail(Errc::Timeout);
    });
    return true;
  }

  // Queues the query with a fresh ID (one not in flight here); nullopt if none is free (only
  // when hasRoom() is false). Queries sent in one round of the loop leave in one TLS write (one
  // record, one syscall).
  std::optional<uint16_t> send(uint64_t request_id, const Question& q) {
    if (pending_.size() >= pool_.settings_.max_inflight_per_connection) dropOldOrphans();
    auto picked = pickQueryId(t_ids, [this](uint16_t id) { return pending_.contains(id); });
    if (!picked) return std::nullopt;
    const uint16_t qid = *picked;
    size_t at = out_.size() + 2;
    (void)tls::appendFrame(out_, q.wire);  // the pool never builds a query over 64 KiB
    storeU16(out_.data() + at, qid);
    const auto now = pool_.loop_.now();
    pending_.emplace(qid, Pending{request_id, q.qname, q.qtype, q.qclass, now});
    ++live_;
    unwritten_.push_back(qid);
    last_used_ = now;
    if (state_ == State::Ready && !flush_scheduled_) {
      flush_scheduled_ = true;
      pool_.loop_.defer([pool = &pool_, id = id_] {
        auto it = pool->connections_.find(id);
        if (it == pool->connections_.end()) return;
        Connection& c = *it->second;
        c.flush_scheduled_ = false;
        if (c.state_ != State::Ready) return;
        c.flush();
        if (c.state_ == State::Ready) c.updateInterest();
      });
    }
    return qid;
  }

  // The request behind this query is gone (answered elsewhere, timed out). The query may still be
  // in flight at the upstream, so it keeps its ID until its answer comes (counted as late) or it
  // is swept (dropOldOrphans, idle close), but it frees its slot at once: a full connection would
  // otherwise never be sent to again, and never reach the sweep.
  void orphan(uint16_t qid) {
    auto it = pending_.find(qid);
    if (it == pending_.end() || it->second.request_id == 0) return;
    it->second.request_id = 0;
    --live_;
  }

  std::optional<Clock::time_point> sentAt(uint16_t qid) const {
    auto it = pending_.find(qid);
    if (it == pending_.end()) return std::nullopt;
    return it->second.sent;
  }

  // An attempt timed out. That alone may be a slow answer (a cold cache upstream); if nothing at
  // all arrives on the connection for two attempt timeouts after the newest query that timed out
  // was written, it is stalled, and it is abandoned so every query on it moves on at once. Each
  // timeout moves the mark forward: one early check that saw an answer must not clear the
  // connection for good.
  void suspectStall(Clock::time_point sent) {
    if (state_ == State::Closed) return;
    if (state_ != State::Ready) {
      // Timed out while still queued behind the handshake (the connect timer covers that): the
      // check starts when the query is actually written.
      suspect_when_ready_ = true;
      return;
    }
    stall_mark_ = std::max(stall_mark_, sent);
    armStallCheck();
  }

  void onEvents(uint32_t ev) override {
    if (state_ == State::Closed) return;
    if (state_ == State::Connecting) {
      if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      if (int err = net::socketError(fd_.get()); err != 0) {
        failure_ = fmt::format("connect: {}", std::strerror(err));
        fail(Errc::IoError);
        return;
      }
      const Upstream& up = pool_.upstreams_[upstream_];
      tls::ClientStreamOptions opts{
          .server_name = up.tls_name.empty() ? up.address.host() : up.tls_name,
          .pins = up.pins,
          .resume = pool_.sessions_[upstream_]};
      auto stream = tls::Stream::client(*up.ctx, fd_.get(), opts);
      if (!stream) {
        failure_ = "TLS setup failed";
        fail(stream.error());
        return;
      }
      stream_.emplace(std::move(*stream));
      state_ = State::Handshaking;
    }
    if (state_ == State::Handshaking) {
      auto r = stream_->handshake();
      if (!r) {
        if (r.error() == Errc::WantRead || r.error() == Errc::WantWrite) {
          watch(EPOLLIN | (r.error() == Errc::WantWrite ? EPOLLOUT : 0u));
          return;
        }
        failure_ = stream_->failure();
        fail(r.error());
        return;
      }
      state_ = State::Ready;
      ready_at_ = pool_.loop_.now();
      pool_.counters_.upstream_connections_open.add(1);
      pool_.perUpstream(upstream_).connections_open.add(1);
      pool_.counters_.handshake_latency.observe(pool_.loop_.now() - started_);
      pool_.loop_.cancel(connect_timer_);
      connect_timer_ = 0;
      last_rx_ = last_used_ = pool_.loop_.now();
      armIdle();
      pool_.onConnectionUp(*this);
      if (state_ != State::Ready) return;
      if (suspect_when_ready_) {
        stall_mark_ = pool_.loop_.now();  // the queued queries are written just below
        armStallCheck();
      }
    }
    // Always read until OpenSSL says WantRead: records it has already decrypted would otherwise
    // wait for a readiness event that epoll never sends.
    readAll();
    if (state_ != State::Ready) return;
    flush();
    if (state_ != State::Ready) return;
    updateInterest();
  }

  // Graceful close (idle, shutdown): close_notify, no failure accounting.
  void closeQuietly() {
    if (state_ == State::Closed) return;
    saveSession();
    if (stream_ && state_ == State::Ready) stream_->shutdown();
    teardown();
  }

  // Breaks the connection: every query on it fails over to a retry.
  void fail(Errc why) {
    if (state_ == State::Closed) return;
    bool was_up = state_ == State::Ready;
    if (was_up) saveSession();
    auto pending = std::move(pending_);
    pending_.clear();
    live_ = 0;
    unwritten_.clear();
    bool lost_queries = std::ranges::any_of(pending, [](auto& kv) { return kv.second.request_id; });
    teardown();
    pool_.onConnectionDown(*this, why, was_up, lost_queries);
    for (auto& [qid, p] : pending) {
      if (p.request_id) pool_.onAttemptFailed(p.request_id, id_, qid, why);
    }
  }

 private:
  struct Pending {
    uint64_t request_id;  // 0: orphaned, the request is gone
    dns::Name qname;
    uint16_t qtype;
    uint16_t qclass;
    Clock::time_point sent;
  };

  // The stall check runs two attempt timeouts after stall_mark_ (the newest timed-out query's
  // write); a later timeout has moved the mark when it finds bytes received in between.
  void armStallCheck() {
    if (stall_timer_ || stall_mark_ == Clock::time_point{}) return;
    const auto window = 2 * pool_.settings_.attempt_timeout;
    auto wait = std::max<Clock::duration>(stall_mark_ + window - pool_.loop_.now(),
                                          Clock::duration::zero());
    stall_timer_ =
        pool_.loop_.after(std::chrono::duration_cast<milliseconds>(wait) + milliseconds(1), [this] {
          stall_timer_ = 0;
          checkStall();
        });
  }

  void checkStall() {
    if (state_ != State::Ready) return;
    // Strictly later: the handshake's last read and the first write share the loop's time.
    if (last_rx_ > stall_mark_) {
      stall_mark_ = {};  // it answered after the newest suspect went out
      return;
    }
    if (pool_.loop_.now() - stall_mark_ < 2 * pool_.settings_.attempt_timeout) {
      armStallCheck();
      return;
    }
    pool_.counters_.upstream_stalls.inc();
    pool_.perUpstream(upstream_).stalls.inc();
    failure_ = fmt::format("no answer for {} ms, abandoning the connection",
                           2 * pool_.settings_.attempt_timeout.count());
    fail(Errc::Timeout);
  }

  void cancelTimers() {
    pool_.loop_.cancel(connect_timer_);
    pool_.loop_.cancel(idle_timer_);
    pool_.loop_.cancel(stall_timer_);
    connect_timer_ = idle_timer_ = stall_timer_ = 0;
  }

  void teardown() {
    if (state_ == State::Ready) {
      pool_.counters_.upstream_connections_open.add(-1);
      metrics::UpstreamCounters& uc = pool_.perUpstream(upstream_);
      uc.connections_open.add(-1);
      uc.closes.inc();
      uc.lifetime_ms.inc(static_cast<uint64_t>(
          std::chrono::duration_cast<milliseconds>(pool_.loop_.now() - ready_at_).count()));
    }
    state_ = State::Closed;
    cancelTimers();
    if (fd_) pool_.loop_.remove(fd_.get());
    stream_.reset();
    fd_.reset();
    pool_.loop_.defer([pool = &pool_, id = id_] { pool->connections_.erase(id); });
  }

  // A resumed TLS 1.2 connection may bring no new session: keep the one we have.
  void saveSession() {
    if (!stream_) return;
    if (tls::Session s = stream_->session()) pool_.sessions_[upstream_] = std::move(s);
  }

  void watch(uint32_t ev) {
    if (ev != events_) {
      if (!pool_.loop_.modify(fd_.get(), ev, this)) {
        failure_ = "epoll: cannot change what the connection waits for";
        fail(Errc::IoError);  // this connection only; its queries are retried elsewhere
        return;
      }
      events_ = ev;
    }
  }

  // EPOLLIN always (answers, and the peer closing); EPOLLOUT only while something waits to be
  // written and TLS is not waiting for input to write it, or a read needs the socket writable.
  void updateInterest() {
    bool out = (out_off_ < out_.size() && !write_wants_read_) || read_wants_write_;
    watch(EPOLLIN | (out ? EPOLLOUT : 0u));
  }

  // One timer for the connection's life: closes it once nothing is in flight and nothing was sent
  // for idle_timeout.
  void armIdle() {
    if (idle_timer_ || state_ != State::Ready) return;
    auto idle_for = pool_.loop_.now() - last_used_;
    auto wait = pool_.settings_.idle_timeout -
                std::min<Clock::duration>(idle_for, pool_.settings_.idle_timeout);
    idle_timer_ = pool_.loop_.after(wait, [this] {
      idle_timer_ = 0;
      // Orphans alone do not keep a connection open: their answers may never come.
      if (live_ == 0 && pool_.loop_.now() - last_used_ >= pool_.settings_.idle_timeout) {
        pool_.counters_.upstream_idle_closes.inc();
        pool_.perUpstream(upstream_).idle_closes.inc();
        closeQuietly();
        return;
      }
      if (live_ == 0) {
        armIdle();
      } else {
        last_used_ = pool_.loop_.now();  // busy: look again a whole timeout later
        armIdle();
      }
    });
  }

  // Orphans whose answers never came (the upstream dropped them) must not hold slots for ever.
  void dropOldOrphans() {
    auto cutoff = pool_.loop_.now() - 4 * pool_.settings_.attempt_timeout;
    std::erase_if(pending_,
                  [&](auto& kv) { return kv.second.request_id == 0 && kv.second.sent < cutoff; });
  }

  void readAll() {
    std::byte buf[16384];
    read_wants_write_ = false;
    for (bool got = false;; got = true) {
      auto n = stream_->read(buf);
      if (!n) {
        if (n.error() == Errc::WantRead) {
          if (got) net::quickAck(fd_.get());  // see net/socket.cc: Nagle upstreams, 40 ms stalls
          break;
        }
        if (n.error() == Errc::WantWrite) {
          read_wants_write_ = true;
          break;
        }
        // The peer closed or broke the connection. With nothing outstanding this is the ordinary
        // end of an idle connection (servers close them too), not a failure.
        bool waiting = std::ranges::any_of(pending_, [](auto& kv) { return kv.second.request_id; });
        if (!waiting && n.error() == Errc::Closed) {
          closeQuietly();
        } else {
          failure_ = n.error() == Errc::Closed ? "closed by upstream" : stream_->failure();
          fail(n.error() == Errc::Closed ? Errc::Reset : n.error());
        }
        return;
      }
      last_rx_ = pool_.loop_.now();
      framer_.feed({buf, *n});
      while (auto msg = framer_.next()) {
        onMessage(std::move(*msg));
        if (state_ != State::Ready) return;
      }
    }
  }

  void onMessage(PacketBuffer msg) {
    auto info = dns::parseResponse(msg);
    // A frame that is not exactly one whole message: the upstream's length prefix may be wrong
    // and the stream out of step. Longer than its message, the frame swallowed the start of the
    // next answers; shorter, the message's tail is read as the next length prefix. Neither can
    // be told from a garbled message, and nothing more read from the stream can be trusted:
    // every query on it moves on (RFC 7858 section 3.3 frames every message).
    if (!info || info->end != msg.size()) {
      pool_.counters_.upstream_malformed.inc();
      pool_.perUpstream(upstream_).malformed.inc();
      failure_ = info ? fmt::format("a {}-byte frame holds a {}-byte message: framing out of step",
                                    msg.size(), info->end)
                      : fmt::format("a {}-byte frame is not a DNS message: framing out of step",
                                    msg.size());
      fail(Errc::FormErr);
      return;
    }
    auto it = pending_.find(loadU16(msg.data()));
    if (it == pending_.end()) {
      pool_.counters_.upstream_mismatch.inc();
      pool_.perUpstream(upstream_).mismatch.inc();
      return;
    }
    uint16_t qid = it->first;
    Pending p = it->second;
    pending_.erase(it);
    last_used_ = pool_.loop_.now();
    if (p.request_id == 0) {
      pool_.counters_.upstream_late.inc();
      return;
    }
    --live_;
    if (!dns::answerMatches(*info, qid, p.qname, p.qtype, p.qclass)) {
      pool_.counters_.upstream_mismatch.inc();
      pool_.perUpstream(upstream_).mismatch.inc();
      pool_.onAttemptFailed(p.request_id, id_, qid, Errc::Mismatch);
      return;
    }
    if (info->rcode() == static_cast<uint16_t>(dns::Rcode::Refused)) {
      // REFUSED is the upstream's policy towards us, not an answer for the client (RFC 1035
      // 4.1.1): ask another upstream; the client gets SERVFAIL if none answers.
      pool_.counters_.upstream_refused.inc();
      pool_.perUpstream(upstream_).refused.inc();
      pool_.onAttemptFailed(p.request_id, id_, qid, Errc::NoUpstream);
      return;
    }
    pool_.counters_.upstream_answers.inc();
    pool_.perUpstream(upstream_).answers.inc();
    pool_.counters_.upstream_latency.observe(pool_.loop_.now() - p.sent);
    pool_.onAnswer(*this, p.request_id, Answer{std::move(msg), std::move(*info)});
  }

  // Queries are stamped `sent` when they are first handed to TLS, not when queued: those queued
  // during the handshake would otherwise look older than they are, and their latency too long.
  void flush() {
    write_wants_read_ = false;
    if (!unwritten_.empty()) {
      const auto now = pool_.loop_.now();
      for (uint16_t qid : unwritten_) {
        if (auto it = pending_.find(qid); it != pending_.end()) it->second.sent = now;
      }
      unwritten_.clear();
    }
    while (out_off_ < out_.size()) {
      auto n = stream_->write(WireView(out_).subspan(out_off_));
      if (!n) {
        if (n.error() == Errc::WantWrite) return;
        if (n.error() == Errc::WantRead) {
          write_wants_read_ = true;
          return;
        }
        failure_ =
            stream_->failure().empty() ? std::string(errcName(n.error())) : stream_->failure();
        fail(n.error());
        return;
      }
      out_off_ += *n;
    }
    out_.clear();
    out_off_ = 0;
  }

  Pool& pool_;
  uint64_t id_;
  size_t upstream_;
  State state_ = State::Connecting;
  net::Fd fd_;  // declared before stream_: the stream dies first
  std::optional<tls::Stream> stream_;
  uint32_t events_ = 0;
  bool read_wants_write_ = false;
  bool write_wants_read_ = false;
  bool flush_scheduled_ = false;
  tls::DotFramer framer_;
  PacketBuffer out_;
  size_t out_off_ = 0;
  // pending_ (live and orphans) never exceeds the ID space.
  static constexpr size_t kMaxIds = 65536;
  std::unordered_map<uint16_t, Pending> pending_;
  size_t live_ = 0;                  // entries of pending_ with a request
  std::vector<uint16_t> unwritten_;  // queued in out_, not yet handed to TLS (stamped in flush)
  Clock::time_point stall_mark_{};   // newest timed-out query's write; {} = no suspicion
  bool suspect_when_ready_ = false;  // a query timed out during the handshake
  Clock::time_point started_{};
  Clock::time_point ready_at_{};
  Clock::time_point last_rx_{};
  Clock::time_point last_used_{};
  net::EventLoop::TimerId connect_timer_ = 0;
  net::EventLoop::TimerId idle_timer_ = 0;
  net::EventLoop::TimerId stall_timer_ = 0;
  std::string failure_;
};

Pool::Pool(net::EventLoop& loop, std::vector<Upstream> upstreams, const PoolSettings& settings,
           metrics::Counters& counters)
    : loop_(loop),
      upstreams_(std::move(upstreams)),
      health_(upstreams_.size()),
      settings_(settings),
      counters_(counters),
      sessions_(upstreams_.size()) {
  counters_.upstreams = std::make_unique<metrics::UpstreamCounters[]>(upstreams_.size());
  counters_.upstream_count = upstreams_.size();
}

Pool::~Pool() {
  close();
}

void Pool::preconnect() {
  for (size_t u = 0; u < upstreams_.size(); ++u) {
    bool have = std::ranges::any_of(connections_, [u](const auto& kv) {
      return kv.second->upstream() == u && kv.second->state() != Connection::State::Closed;
    });
    if (!have) open(u);
  }
}

void Pool::close() {
  waiting_.clear();
  while (!requests_.empty()) finish(requests_.begin()->first, std::unexpected(Errc::Timeout));
  for (auto& [id, c] : connections_) c->closeQuietly();
  connections_.clear();
}

void Pool::resolve(Question q, Clock::time_point deadline, Completion done) {
  uint64_t id = next_request_++;
  auto r = std::make_unique<Request>();
  r->q = std::move(q);
  r->deadline = deadline;
  r->done = std::move(done);
  auto wait = std::max(deadline - loop_.now(), Clock::duration::zero());
  r->deadline_timer = loop_.after(wait, [this, id] {
    if (auto it = requests_.find(id); it != requests_.end()) {
      it->second->deadline_timer = 0;
      finish(id, std::unexpected(it->second->last_error));
    }
  });
  requests_.emplace(id, std::move(r));
  counters_.upstream_inflight.add(1);
  attempt(id);
}

int Pool::pickUpstream(const Request& r) {
  const auto now = loop_.now();
  size_t n = upstreams_.size();
  int fallback = -1;
  for (size_t k = 0; k < n; ++k) {
    size_t i = (rr_ + k) % n;
    if (health_[i].down_until > now) continue;
    // On a retry, prefer another upstream when one is healthy.
    if (static_cast<int>(i) == r.last_upstream && n > 1) {
      fallback = static_cast<int>(i);
      continue;
    }
    rr_ = (i + 1) % n;
    return static_cast<int>(i);
  }
  return fallback;
}

Pool::Connection* Pool::pickConnection(size_t upstream, const Request& r) {
  Connection* best = nullptr;
  unsigned count = 0;
  auto rank = [](const Connection& x) {
    return std::pair{x.state() != Connection::State::Ready, x.pending()};
  };
  for (auto& [id, c] : connections_) {
    if (c->upstream() != upstream || c->state() == Connection::State::Closed) continue;
    ++count;
    // A retry goes to another connection than the attempt still outstanding.
    if (std::ranges::find(r.tried, id) != r.tried.end() || !c->hasRoom()) continue;
    if (!best || rank(*c) < rank(*best)) best = c.get();
  }
  // A new connection only when every open (or opening) one is full; a retry may open one more.
  unsigned limit = settings_.connections_per_upstream * (r.attempts > 0 ? 2 : 1);
  if (best || count >= limit) return best;
  return open(upstream);
}

Pool::Connection* Pool::open(size_t upstream) {
  uint64_t id = next_connection_++;
  auto c = std::make_unique<Connection>(*this, id, upstream);
  if (!c->start()) {
    // socket() or connect() failed at once (ENETUNREACH, EMFILE, EADDRNOTAVAIL, EPERM, EINVAL):
    // the same failed connection attempt as one refused later, so the same backoff; the caller
    // moves the query to another upstream at once.
    counters_.upstream_connect_failures.inc();
    perUpstream(upstream).connect_failures.inc();
    backOff(upstream, ++health_[upstream].failures, Errc::IoError, c->failure());
    return nullptr;
  }
  Connection* raw = c.get();
  connections_.emplace(id, std::move(c));
  return raw;
}

void Pool::attempt(uint64_t request_id) {
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return;
  Request& r = *it->second;
  if (r.attempts >= kMaxAttempts) {
    if (r.outstanding.empty()) finish(request_id, std::unexpected(r.last_error));
    return;
  }
  int up = -1;
  Connection* c = nullptr;
  // An upstream whose connection failed at once is backing off now: the next one, at once.
  for (size_t tries = 0; tries <= upstreams_.size() && !c; ++tries) {
    up = pickUpstream(r);
    if (up < 0) break;
    c = pickConnection(static_cast<size_t>(up), r);
    if (!c && health_[static_cast<size_t>(up)].down_until <= loop_.now()) break;
  }
  if (up < 0) {
    if (r.outstanding.empty()) {
      counters_.upstream_no_upstream.inc();
      finish(request_id, std::unexpected(Errc::NoUpstream));
    }
    return;
  }
  std::optional<uint16_t> sent = c ? c->send(request_id, r.q) : std::nullopt;
  if (!sent) {
    // Every connection to a healthy upstream is full: wait for a free slot (bounded queue).
    if (!r.queued && waiting_.size() < kMaxWaiting) {
      r.queued = true;
      waiting_.push_back(request_id);
    } else if (r.outstanding.empty() && !r.queued) {
      finish(request_id, std::unexpected(Errc::Overloaded));
    }
    return;
  }
  ++r.attempts;
  r.last_upstream = up;
  counters_.upstream_queries.inc();
  perUpstream(static_cast<size_t>(up)).queries.inc();
  uint64_t conn_id = c->id();
  uint16_t qid = *sent;
  r.outstanding.push_back({conn_id, qid});
  r.tried.push_back(conn_id);
  loop_.cancel(r.attempt_timer);
  r.attempt_timer = loop_.after(settings_.attempt_timeout, [this, request_id, conn_id, qid] {
    onAttemptTimeout(request_id, conn_id, qid);
  });
}

void Pool::onAttemptTimeout(uint64_t request_id, uint64_t conn_id, uint16_t qid) {
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return;
  Request& r = *it->second;
  r.attempt_timer = 0;
  counters_.upstream_timeouts.inc();
  if (r.last_upstream >= 0) perUpstream(static_cast<size_t>(r.last_upstream)).timeouts.inc();
  if (auto c = connections_.find(conn_id); c != connections_.end()) {
    auto sent = c->second->sentAt(qid);
    if (sent) c->second->suspectStall(*sent);
  }
  // The first attempt stays outstanding and may still answer; race a second one elsewhere. The
  // first valid answer wins.
  if (r.attempts < kMaxAttempts) {
    counters_.upstream_retries.inc();
    attempt(request_id);
  }
}

void Pool::onAttemptFailed(uint64_t request_id, uint64_t conn_id, uint16_t qid, Errc why) {
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return;
  Request& r = *it->second;
  r.last_error = why == Errc::Timeout ? Errc::Timeout : Errc::NoUpstream;
  std::erase_if(r.outstanding, [&](const Request::Outstanding& o) {
    if (o.conn == conn_id && o.qid == qid) return true;
    auto c = connections_.find(o.conn);
    return c == connections_.end() || c->second->state() == Connection::State::Closed;
  });
  if (!r.outstanding.empty() || r.queued) return;  // another attempt may still answer
  loop_.cancel(r.attempt_timer);
  r.attempt_timer = 0;
  if (r.attempts < kMaxAttempts && loop_.now() < r.deadline) {
    counters_.upstream_retries.inc();
    attempt(request_id);
    return;
  }
  finish(request_id, std::unexpected(r.last_error));
}

void Pool::onAnswer(Connection& c, uint64_t request_id, Answer answer) {
  health_[c.upstream()].failures = 0;
  health_[c.upstream()].broken = 0;
  finish(request_id, std::move(answer));
}

void Pool::finish(uint64_t request_id, Result<Answer> result) {
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return;
  std::unique_ptr<Request> r = std::move(it->second);
  requests_.erase(it);
  counters_.upstream_inflight.add(-1);
  loop_.cancel(r->deadline_timer);
  loop_.cancel(r->attempt_timer);
  for (auto& o : r->outstanding) {
    if (auto c = connections_.find(o.conn); c != connections_.end()) c->second->orphan(o.qid);
  }
  r->done(std::move(result));
  drainWaiting();
}

void Pool::drainWaiting() {
  if (draining_waiting_ || waiting_.empty()) return;
  draining_waiting_ = true;
  for (size_t n = waiting_.size(); n > 0 && !waiting_.empty(); --n) {
    uint64_t id = waiting_.front();
    waiting_.pop_front();
    auto it = requests_.find(id);
    if (it == requests_.end()) continue;  // finished by its deadline meanwhile
    it->second->queued = false;
    attempt(id);
    it = requests_.find(id);
    if (it != requests_.end() && it->second->queued) break;  // still no room anywhere
  }
  draining_waiting_ = false;
}

void Pool::onConnectionUp(Connection& c) {
  Health& h = health_[c.upstream()];
  if (h.failures > 0 && log::enabled(log::Level::Info)) {
    const std::string label = upstreams_[c.upstream()].label();
    log::event(log::Level::Info, "upstream_recovered",
               fmt::format("upstream {}: connected again", label),
               {log::field("upstream", label), log::field("failures", h.failures)});
  }
  h.failures = 0;
  h.down_until = {};
  if (!h.usable) {
    h.usable = true;
    counters_.upstreams_usable.add(1);
    perUpstream(c.upstream()).usable.add(1);
  }
  counters_.upstream_handshakes.inc();
  perUpstream(c.upstream()).handshakes.inc();
  if (c.resumed()) counters_.upstream_resumed.inc();
  if (c.resumed()) perUpstream(c.upstream()).resumed.inc();
  loop_.defer([this] { drainWaiting(); });
}

void Pool::onConnectionDown(Connection& c, Errc why, bool was_up, bool lost_queries) {
  const Upstream& up = upstreams_[c.upstream()];
  switch (why) {
    case Errc::TlsVerifyFailed:
    case Errc::PinMismatch:
      counters_.upstream_verify_failures.inc();
      perUpstream(c.upstream()).verify_failures.inc();
      break;
    case Errc::TlsError:
      counters_.upstream_tls_failures.inc();
      perUpstream(c.upstream()).tls_failures.inc();
      break;
    case Errc::Reset:
    case Errc::Closed:
      counters_.upstream_resets.inc();
      perUpstream(c.upstream()).resets.inc();
      break;
    default:
      if (!was_up) {
        counters_.upstream_connect_failures.inc();
        perUpstream(c.upstream()).connect_failures.inc();
      }
      break;
  }
  Health& h = health_[c.upstream()];
  unsigned strikes = 0;
  if (was_up) {
    // One working connection that broke says little about the next: its queries retry on a fresh
    // connection at once. An upstream that breaks connection after connection (stalls, resets)
    // without answering in between is avoided like one that cannot be reached.
    if (lost_queries) ++h.broken;
    if (h.broken < 2) {
      if (log::enabled(log::Level::Info)) {
        std::string error = c.failure().empty() ? std::string(errcName(why)) : c.failure();
        log::event(log::Level::Info, "upstream_connection_lost",
                   fmt::format("upstream {}: connection lost: {}", up.label(), error),
                   {log::field("upstream", up.label()), log::field("error", error),
                    log::field("cause", errcName(why))});
      }
      return;
    }
    strikes = h.broken - 1;
  } else {
    // A failed attempt while another connection to the same upstream is up and answering says
    // the path failed once, not that the upstream is gone: backing the upstream off would turn
    // away queries the live connection can serve.
    bool live = std::ranges::any_of(connections_, [&](const auto& kv) {
      return kv.first != c.id() && kv.second->upstream() == c.upstream() &&
             kv.second->state() == Connection::State::Ready;
    });
    if (live) {
      if (log::enabled(log::Level::Info)) {
        std::string error = c.failure().empty() ? std::string(errcName(why)) : c.failure();
        log::event(log::Level::Info, "upstream_connection_lost",
                   fmt::format("upstream {}: connection attempt failed: {}", up.label(), error),
                   {log::field("upstream", up.label()), log::field("error", error),
                    log::field("cause", errcName(why))});
      }
      return;
    }
    strikes = ++h.failures;
  }
  backOff(c.upstream(), strikes, why, c.failure());
}

void Pool::backOff(size_t upstream, unsigned strikes, Errc why, const std::string& failure) {
  const Upstream& up = upstreams_[upstream];
  Health& h = health_[upstream];
  if (h.usable) {
    h.usable = false;
    counters_.upstreams_usable.add(-1);
    perUpstream(upstream).usable.add(-1);
  }
  auto backoff = settings_.backoff_initial * (1u << std::min(strikes - 1, 16u));
  if (backoff > settings_.backoff_max) backoff = settings_.backoff_max;
  h.down_until = loop_.now() + backoff;
  if (log::enabled(log::Level::Warn)) {
    std::string error = failure.empty() ? std::string(errcName(why)) : failure;
    auto ms = std::chrono::duration_cast<milliseconds>(backoff).count();
    log::event(log::Level::Warn, "upstream_backoff",
               fmt::format("upstream {}: {} ({}); backing off {} ms", up.label(), error,
                           errcName(why), ms),
               {log::field("upstream", up.label()), log::field("error", error),
                log::field("cause", errcName(why)), log::field("backoff_ms", ms)});
  }
}

}  // namespace dotproxy::upstream
