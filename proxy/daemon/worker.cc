#include "worker.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <system_error>

#include "dotproxy/tls/framer.h"
#include "dotproxy/util/log.h"

namespace dotproxy::daemon {

using net::Clock;

namespace {

// Start-up only (the listeners, built before the worker runs): a socket the loop cannot watch
// fails the start with a message.
void watchOrThrow(net::EventLoop& loop, int fd, net::EventLoop::Handler* h) {
  int err = 0;
  if (!loop.add(fd, EPOLLIN, h, &err)) {
    throw std::system_error(err, std::generic_category(), "epoll_ctl (listener)");
  }
}

}  // namespace

// ---- UDP
// ------------------------------------------------------------------------------------------

class UdpListener final : public net::EventLoop::Handler {
 public:
  // Start-up: throws std::system_error if the socket cannot be watched.
  UdpListener(Worker& w, net::Fd fd) : w_(w), fd_(std::move(fd)) {
    watchOrThrow(w_.loop(), fd_.get(), this);
  }

  void stopReading() { w_.loop().remove(fd_.get()); }

  void onEvents(uint32_t) override {
    // A bounded number of batches per wake-up keeps TCP clients and upstreams served under flood.
    for (int round = 0; round < 8; ++round) {
      size_t n = rx_.receive(fd_.get());
      for (size_t i = 0; i < n; ++i) {
        net::Datagram d = rx_[i];
        ClientRef client{
            .udp = this, .peer = d.peer, .local = d.local, .received = w_.loop().now()};
        if (d.truncated) {
          // Larger than any query we take: FORMERR from the header we have (never to a response,
          // NOTIMP for an opcode we do not serve, as for any other query).
          w_.counters().udp_queries.inc();
          WireReader r(d.bytes);
          dns::Header h = dns::readHeader(r);
          if (h.qr()) {
            w_.counters().dropped_response.inc();
          } else if (h.opcode() != static_cast<uint8_t>(dns::Opcode::Query)) {
            w_.counters().notimp.inc();
            send(client, dns::buildErrorReply(d.bytes, dns::Rcode::NotImp).view());
          } else {
            w_.counters().formerr.inc();
            send(client, dns::buildErrorReply(d.bytes, dns::Rcode::FormErr).view());
          }
          continue;
        }
        w_.onQuery(d.bytes, client);
      }
      if (n < rx_.batch()) break;
    }
  }

  // Replies are batched and sent with sendmmsg once the current round of events is done.
  void send(const ClientRef& client, WireView reply) {
    if (reply.empty()) return;
    tx_.queue(client.peer, client.local, reply);
    if (!flush_scheduled_) {
      flush_scheduled_ = true;
      w_.loop().defer([this] {
        flush_scheduled_ = false;
        w_.counters().udp_send_failures.inc(tx_.flush(fd_.get()));
      });
    }
  }

 private:
  Worker& w_;
  net::Fd fd_;
  net::UdpReceiver rx_{32, dns::kMaxQuery};  // a larger datagram arrives truncated: FORMERR
  net::UdpSender tx_;
  bool flush_scheduled_ = false;
};

// ---- TCP
// ------------------------------------------------------------------------------------------

// RFC 7766: many queries per connection, answered as they complete (any order); idle and slow
// clients closed after the idle timeout; a half-closed client still gets its answers.
//
// Limits (each bounds memory per client, whatever the client sends or fails to read):
// - A query is taken from the framer only while the client has fewer than tcp_max_inflight
//   queries unanswered and fewer than tcp_max_output unsent answer bytes. Frames that arrived
//   meanwhile wait in the framer (at most one 16 KiB read and one partial message), and no more
//   bytes are read until they are taken: when an answer is written or completes, takeFrames()
//   resumes them without waiting for EPOLLIN (which will not come for bytes already read).
// - Unsent answers are thus at most tcp_max_output plus the answers to the queries in flight
//   (tcp_max_inflight of them; a cache hit is answered before the next frame is taken).
// - A client whose unsent answers make no progress for tcp_idle_timeout is closed (reason slow).
class TcpClient final : public net::EventLoop::Handler {
 public:
  TcpClient(Worker& w, uint64_t id, net::Fd fd, net::SocketAddress peer)
      : w_(w), id_(id), fd_(std::move(fd)), peer_(peer) {
    last_activity_ = w_.loop().now();
    last_progress_ = last_activity_;
  }
  // Watches the socket and arms the idle timer; false (and nothing armed) if the loop refused the
  // socket: the caller drops this client, and only it.
  bool start() {
    if (!w_.loop().add(fd_.get(), EPOLLIN, this)) return false;
    events_ = EPOLLIN;
    armIdle(w_.settings().tcp_idle_timeout);
    return true;
  }
  ~TcpClient() { w_.loop().cancel(idle_timer_); }

  void onEvents(uint32_t ev) override {
    if (closed_) return;
    if (ev & EPOLLIN) readAll();
    if (closed_) return;
    if (ev & (EPOLLERR | EPOLLHUP) && !(ev & EPOLLIN)) {
      close(Closing::Error);
      return;
    }
    if (ev & EPOLLOUT) {
      flush();
      if (closed_) return;
      readAll();  // room may have freed up for the frames already read
      if (closed_) return;
    }
    updateInterest();
    maybeClose();
  }

  // Answers are collected and written once the current round of events is done: the answers to a
  // pipelined burst of queries (cache hits come back synchronously) leave in one write and a few
  // segments, not a write and a segment each.
  void reply(WireView wire) {
    if (inflight_ > 0) --inflight_;
    if (closed_) return;
    if (!wire.empty()) {
      if (unsent() == 0) last_progress_ = w_.loop().now();  // the stall clock starts now
      (void)tls::appendFrame(out_, wire);
      last_activity_ = w_.loop().now();
    }
    if (!flush_scheduled_) {
      flush_scheduled_ = true;
      w_.scheduleTcpFlush(id_);
    }
  }

  // The deferred half of reply(): write, then take the frames that waited for room.
  void flushScheduled() {
    flush_scheduled_ = false;
    if (closed_) return;
    flush();
    if (closed_) return;
    readAll();
    if (closed_) return;
    updateInterest();
    maybeClose();
  }

  // Drain: no new queries; close once the answers in flight are out.
  void stopReading() {
    read_closed_ = true;
    updateInterest();
    maybeClose();
  }

 private:
  size_t unsent() const noexcept { return out_.size() - out_off_; }

  // Room for one more query: below both per-client limits.
  bool hasRoom() const noexcept {
    return inflight_ < w_.settings().tcp_max_inflight && unsent() < w_.settings().tcp_max_output;
  }

  // Takes the frames already read while there is room, then reads more only if none is left
  // waiting: bytes stay in the socket (and the client's sends block) while the limits hold.
  void readAll() {
    std::byte buf[16384];
    for (;;) {
      takeFrames();
      if (closed_) return;
      if (!wantsInput()) break;
      auto n = net::readSome(fd_.get(), buf);
      if (!n) {
        if (n.error() == Errc::WantRead) break;
        if (n.error() == Errc::Closed) {
          read_closed_ = true;  // half-close: still answer what was asked
          break;
        }
        close(Closing::Error);
        return;
      }
      framer_.feed({buf, *n});
    }
    updateInterest();
  }

  void takeFrames() {
    while (!closed_ && !read_closed_ && framer_.hasMessage()) {
      if (!hasRoom()) {
        if (!paused_) w_.counters().tcp_paused.inc();  // once per pause, not per attempt
        paused_ = true;
        return;
      }
      paused_ = false;
      std::optional<PacketBuffer> msg = framer_.next();
      last_activity_ = w_.loop().now();
      if (msg->empty()) {  // a zero-length frame is not a DNS message
        w_.counters().dropped_short.inc();
        close(Closing::Error);
        return;
      }
      ++inflight_;
      w_.onQuery(*msg, ClientRef{.peer = peer_, .tcp_id = id_, .received = w_.loop().now()});
    }
  }

  // Backpressure: a client with a query waiting in the framer, or at a limit, gets no more bytes
  // read, so neither its queries in flight nor its unsent answers grow without bound.
  bool wantsInput() const noexcept { return !read_closed_ && hasRoom() && !framer_.hasMessage(); }

  void flush() {
    const size_t before = out_off_;
    while (out_off_ < out_.size()) {
      auto n = net::writeSome(fd_.get(), WireView(out_).subspan(out_off_));
      if (!n) {
        if (n.error() == Errc::WantWrite) break;
        close(Closing::Error);
        return;
      }
      out_off_ += *n;
    }
    if (out_off_ != before) last_progress_ = w_.loop().now();
    if (out_off_ == out_.size()) {
      out_.clear();
      out_off_ = 0;
    }
  }

  void updateInterest() {
    if (closed_) return;
    uint32_t ev = wantsInput() ? EPOLLIN : 0u;
    if (out_off_ < out_.size()) ev |= EPOLLOUT;
    if (ev != events_) {
      if (!w_.loop().modify(fd_.get(), ev, this)) {
        close(Closing::Error);
        return;
      }
      events_ = ev;
    }
  }

  void maybeClose() {
    if (!closed_ && read_closed_ && inflight_ == 0 && out_.empty()) close(Closing::Orderly);
  }

  void armIdle(Clock::duration d) {
    idle_timer_ = w_.loop().after(d, [this] {
      idle_timer_ = 0;
      const auto now = w_.loop().now();
      const auto limit = w_.settings().tcp_idle_timeout;
      if (unsent() > 0) {
        // Answers waiting and none taken for the whole period: the client does not read.
        const auto stalled = now - last_progress_;
        if (stalled >= limit) {
          close(Closing::Slow);
          return;
        }
        armIdle(limit - stalled);
        return;
      }
      const auto idle_for = now - last_activity_;
      if (inflight_ == 0 && idle_for >= limit) {
        close(Closing::Idle);
        return;
      }
      armIdle(inflight_ > 0 ? limit : limit - idle_for);
    });
  }

  // Orderly: the client closed its side (or we drained) and every answer went out. Slow: its
  // answers made no progress for the idle timeout.
  enum class Closing : uint8_t { Orderly, Idle, Slow, Error };
  void close(Closing why) {
    if (closed_) return;
    closed_ = true;
    switch (why) {
      case Closing::Orderly:
        w_.counters().tcp_closed_client.inc();
        break;
      case Closing::Idle:
        w_.counters().tcp_closed_idle.inc();
        break;
      case Closing::Slow:
        w_.counters().tcp_closed_slow.inc();
        break;
      case Closing::Error:
        w_.counters().tcp_closed_error.inc();
        break;
    }
    w_.loop().remove(fd_.get());
    w_.loop().cancel(idle_timer_);
    idle_timer_ = 0;
    fd_.reset();
    w_.removeTcpClient(id_);
  }

  Worker& w_;
  uint64_t id_;
  net::Fd fd_;
  net::SocketAddress peer_;  // for the query log
  tls::DotFramer framer_;
  PacketBuffer out_;
  size_t out_off_ = 0;
  unsigned inflight_ = 0;
  uint32_t events_ = 0;
  bool read_closed_ = false;
  bool closed_ = false;
  bool flush_scheduled_ = false;
  bool paused_ = false;  // a frame waits for room (counted once per pause)
  Clock::time_point last_activity_;
  Clock::time_point last_progress_;  // last write that took bytes, or when output became pending
  net::EventLoop::TimerId idle_timer_ = 0;
};

class TcpListener final : public net::EventLoop::Handler {
 public:
  // Start-up: throws std::system_error if the socket cannot be watched.
  TcpListener(Worker& w, net::Fd fd) : w_(w), fd_(std::move(fd)) {
    watchOrThrow(w_.loop(), fd_.get(), this);
  }
  ~TcpListener() { w_.loop().cancel(resume_timer_); }
  void stop() {
    if (!paused_) w_.loop().remove(fd_.get());
    w_.loop().cancel(resume_timer_);
    resume_timer_ = 0;
    fd_.reset();
  }
  void onEvents(uint32_t) override {
    for (int i = 0; i < 64 && fd_; ++i) {
      net::SocketAddress peer;
      auto fd = net::tcpAccept(fd_.get(), &peer);
      if (!fd) {
        if (fd.error() == Errc::Overloaded) pause();
        break;
      }
      w_.addTcpClient(std::move(*fd), peer);
    }
  }

 private:
  // Out of file descriptors: the connection stays in the backlog and the level-triggered listener
  // would fire again at once. Stop listening for a moment instead of spinning.
  void pause() {
    w_.counters().tcp_refused_overload.inc();
    w_.loop().remove(fd_.get());
    paused_ = true;
    resume_timer_ = w_.loop().after(std::chrono::milliseconds(100), [this] {
      resume_timer_ = 0;
      paused_ = false;
      if (fd_ && !w_.loop().add(fd_.get(), EPOLLIN, this)) pause();  // try again later
    });
  }

  Worker& w_;
  net::Fd fd_;
  bool paused_ = false;
  net::EventLoop::TimerId resume_timer_ = 0;
};

// ---- Worker
// ---------------------------------------------------------------------------------------

namespace {

upstream::PoolSettings poolSettings(const config::Settings& s) {
  return {.attempt_timeout = s.attempt_timeout,
          .connect_timeout = s.connect_timeout,
          .idle_timeout = s.idle_timeout,
          .connections_per_upstream = s.connections_per_upstream,
          .max_inflight_per_connection = s.max_inflight_per_connection,
          .backoff_initial = s.backoff_initial,
          .backoff_max = s.backoff_max};
}

// The cache's caps on the TTLs clients are told (config validation keeps them within 7 days).
dns::TtlCaps ttlCaps(const config::Settings& s) {
  return {.max_ttl = static_cast<uint32_t>(s.cache_max_ttl.count()),
          .negative_max_ttl = static_cast<uint32_t>(s.cache_negative_max_ttl.count())};
}

// Clients waiting on one question in flight, per worker.
constexpr size_t kMaxWaitersPerQuestion = 1024;

// Answers differ by name (case-folded), type, class, and the DO, CD and RD bits.
std::string coalesceKey(const dns::QueryInfo& q, WireView raw, bool with_ecs) {
  dns::Name lower = q.qname.lowered();
  std::string key(asChars(lower.wire()));
  key.push_back(static_cast<char>(q.qtype >> 8));
  key.push_back(static_cast<char>(q.qtype & 0xff));
  key.push_back(static_cast<char>(q.qclass >> 8));
  key.push_back(static_cast<char>(q.qclass & 0xff));
  key.push_back(static_cast<char>((q.edns.do_bit ? 1 : 0) | (q.header.cd() ? 2 : 0) |
                                  (q.header.rd() ? 4 : 0)));
  if (with_ecs && q.edns.ecs_len > 0)
    key.append(asChars(raw.subspan(q.edns.ecs_offset, q.edns.ecs_len)));
  return key;
}

}  // namespace

Worker::Worker(const config::Settings& settings, std::vector<upstream::Upstream> upstreams,
               std::vector<ListenSockets> sockets, std::atomic<unsigned>& tcp_clients,
               cache::PacketCache* cache)
    : settings_(settings),
      pool_(loop_, std::move(upstreams), poolSettings(settings), counters_),
      cache_(cache),
      tcp_client_count_(tcp_clients) {
  for (auto& s : sockets) {
    udp_.push_back(std::make_unique<UdpListener>(*this, std::move(s.udp)));
    tcp_listeners_.push_back(std::make_unique<TcpListener>(*this, std::move(s.tcp)));
  }
}

Worker::~Worker() {
  pool_.close();
}

void Worker::run() {
  pool_.preconnect();
  loop_.run();
}

void Worker::drain() {
  loop_.post([this] {
    if (draining_) return;
    draining_ = true;
    for (auto& u : udp_) u->stopReading();
    for (auto& t : tcp_listeners_) t->stop();
    std::vector<TcpClient*> clients;
    for (auto& [id, c] : tcp_clients_) clients.push_back(c.get());
    for (TcpClient* c : clients) c->stopReading();
    loop_.after(settings_.shutdown_grace, [this] { loop_.stop(); });
    maybeFinishDrain();
  });
}

void Worker::maybeFinishDrain() {
  if (draining_ && inflight_.empty() && tcp_clients_.empty()) {
    // Let the batched UDP replies go out first.
    loop_.defer([this] { loop_.stop(); });
  }
}

void Worker::addTcpClient(net::Fd fd, const net::SocketAddress& peer) {
  if (draining_) return;
  unsigned now_open = tcp_client_count_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (now_open > settings_.tcp_max_clients) {
    tcp_client_count_.fetch_sub(1, std::memory_order_relaxed);
    counters_.tcp_refused_overload.inc();
    return;  // fd closes here
  }
  counters_.tcp_connections.inc();
  uint64_t id = next_tcp_id_++;
  auto client = std::make_unique<TcpClient>(*this, id, std::move(fd), peer);
  if (!client->start()) {  // the loop refused the socket: this client closes, nothing else
    tcp_client_count_.fetch_sub(1, std::memory_order_relaxed);
    counters_.tcp_closed_error.inc();
    return;
  }
  tcp_clients_.emplace(id, std::move(client));
}

void Worker::removeTcpClient(uint64_t id) {
  auto it = tcp_clients_.find(id);
  if (it == tcp_clients_.end()) return;
  tcp_client_count_.fetch_sub(1, std::memory_order_relaxed);
  // Events for this client may still be queued in the current batch: free it afterwards.
  loop_.defer([this, id] {
    tcp_clients_.erase(id);
    maybeFinishDrain();
  });
}

void Worker::scheduleTcpFlush(uint64_t id) {
  // By id, not by pointer: a client closed in the same round is freed by an earlier deferred task.
  loop_.defer([this, id] {
    auto it = tcp_clients_.find(id);
    if (it != tcp_clients_.end()) it->second->flushScheduled();
  });
}

void Worker::deliver(const ClientRef& client, WireView reply, metrics::AnswerSource source) {
  if (reply.size() >= dns::kHeaderSize) {
    counters_.responses_by_rcode[loadU16(reply.data() + 2) & 0xf].inc();
    counters_.answer_latency[static_cast<size_t>(source)].observe(loop_.now() - client.received);
    if (settings_.query_log && ++query_log_seq_ % settings_.query_log == 0) {
      logQuery(client, reply, source);
    }
  }
  if (client.udp) {
    client.udp->send(client, reply);
    return;
  }
  auto it = tcp_clients_.find(client.tcp_id);
  if (it != tcp_clients_.end()) it->second->reply(reply);
}

void Worker::onQuery(WireView raw, const ClientRef& client) {
  (client.udp ? counters_.udp_queries : counters_.tcp_queries).inc();
  if (raw.size() < dns::kHeaderSize) {
    counters_.dropped_short.inc();
    deliver(client, WireView{});
    return;
  }
  // No query is this large (dns::kMaxQuery): over TCP (a frame may hold 64 KiB) it would be kept
  // whole while it waits for its answer. UDP never gets here with one (see UdpListener).
  auto q = raw.size() > dns::kMaxQuery ? Result<dns::QueryInfo>(std::unexpected(Errc::FormErr))
                                       : dns::parseQuery(raw);
  if (!q) {
    dns::Rcode rcode = dns::Rcode::FormErr;
    switch (q.error()) {
      case Errc::NotQuery:
        counters_.dropped_response.inc();  // never answer a response: no reflection loops
        deliver(client, WireView{});
        return;
      case Errc::NotImp:
        counters_.notimp.inc();
        rcode = dns::Rcode::NotImp;
        break;
      case Errc::BadVers:
        counters_.badvers.inc();
        rcode = dns::Rcode::BadVers;
        break;
      default:
        counters_.formerr.inc();
        break;
    }
    deliver(client, dns::buildErrorReply(raw, rcode).view());
    return;
  }

  counters_.queries_by_qtype[metrics::qtypeSlot(q->qtype)].inc();
  if (answerFromCache(*q, raw, client, cache::Stale::Refuse)) return;
  forward(*q, raw, &client);
}

void Worker::logQuery(const ClientRef& client, WireView reply, metrics::AnswerSource source) {
  WireReader r(reply);
  dns::Header h = dns::readHeader(r);
  std::string name;
  uint16_t type = 0;
  if (h.qdcount > 0) {
    dns::Name n = dns::readName(r);
    type = r.u16();
    if (!r.error()) name = n.toText();
  }
  std::string rcode(dns::rcodeName(h.rcode()));
  if (rcode.empty()) rcode = fmt::format("RCODE{}", h.rcode());
  std::string qtype(dns::typeName(type));
  if (qtype.empty()) qtype = fmt::format("TYPE{}", type);
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(loop_.now() - client.received);
  std::string peer = client.peer.toString();
  std::string_view from = metrics::kAnswerSources[static_cast<size_t>(source)];
  log::event(log::Level::Info, "query",
             fmt::format("query {} {} {} {} {} {} {}us", peer, client.udp ? "udp" : "tcp", name,
                         qtype, rcode, from, us.count()),
             {log::field("client", peer), log::field("transport", client.udp ? "udp" : "tcp"),
              log::field("name", name), log::field("type", qtype), log::field("rcode", rcode),
              log::field("source", from), log::field("latency_us", us.count())});
}

bool Worker::cacheable(const dns::QueryInfo& q) const noexcept {
  // An answer tailored to the client's subnet (ECS forwarded) is not everyone's answer.
  return cache_ && cache_->enabled() && !(settings_.forward_ecs && q.edns.ecs_len > 0);
}

bool Worker::answerFromCache(const dns::QueryInfo& q, WireView raw, const ClientRef& client,
                             cache::Stale stale) {
  if (!cacheable(q)) return false;
  size_t limit = client.udp ? q.maxUdpReply(settings_.max_udp_size) : dns::kMaxMessage;
  auto hit =
      cache_->lookup(cache::makeKey(q), q, raw, limit,
                     static_cast<uint16_t>(settings_.max_udp_size), loop_.now(), stale, scratch_);
  if (!hit) {
    if (stale == cache::Stale::Refuse) counters_.cache_misses.inc();
    return false;
  }
  (hit->stale ? counters_.cache_stale : counters_.cache_hits).inc();
  counters_.answers.inc();
  deliver(client, scratch_.view(),
          hit->stale ? metrics::AnswerSource::Stale : metrics::AnswerSource::Cache);
  // RFC 8767-style refresh ahead of expiry: a popular entry near its end goes upstream once, in
  // the background, so that it never misses.
  // (Not from an RD=0 query, whose answer would replace everyone's; not while draining.)
  if (hit->prefetch && !hit->stale && q.header.rd() && !draining_ && forward(q, raw, nullptr)) {
    counters_.cache_prefetches.inc();
  }
  return true;
}

bool Worker::forward(const dns::QueryInfo& q, WireView raw, const ClientRef* client) {
  std::string key = coalesceKey(q, raw, settings_.forward_ecs);
  auto [it, fresh] = inflight_.try_emplace(key);
  if (!client) {
    if (!fresh) return false;  // already being refreshed or asked
  } else if (!fresh && it->second.waiters.size() >= kMaxWaitersPerQuestion) {
    // One question flooded while the upstream is slow must not grow without bound.
    counters_.coalesce_overflow.inc();
    counters_.servfail.inc();
    deliver(*client, dns::buildErrorReply(raw, dns::Rcode::ServFail).view());
    return false;
  }
  // raw is exactly the parsed message (parseQuery refuses trailing bytes), at most kMaxQuery.
  if (client) it->second.waiters.push_back(Waiter{*client, PacketBuffer(raw), q});
  if (!fresh) {
    counters_.coalesced.inc();
    return false;
  }
  it->second.cache_key = cache::makeKey(q);
  // Only answers to recursive questions are everyone's answers (an RD=0 answer may be partial).
  it->second.cacheable = cacheable(q) && q.header.rd();
  upstream::Question uq{
      .wire = dns::buildUpstreamQuery(q, raw, 0,
                                      {.udp_size = static_cast<uint16_t>(settings_.max_udp_size),
                                       .padding_block = settings_.padding_block,
                                       .forward_ecs = settings_.forward_ecs}),
      .qname = q.qname,
      .qtype = q.qtype,
      .qclass = q.qclass};
  if (settings_.padding_block > 0) counters_.padded_queries.inc();
  pool_.resolve(
      std::move(uq), loop_.now() + settings_.query_timeout,
      [this, key = std::move(key)](Result<upstream::Answer> a) { complete(key, std::move(a)); });
  return true;
}

void Worker::complete(const std::string& key, Result<upstream::Answer> answer) {
  auto it = inflight_.find(key);
  if (it == inflight_.end()) return;
  Inflight entry = std::move(it->second);
  inflight_.erase(it);
  bool caching = entry.cacheable;
  // RFC 8767: when the upstreams fail (no answer in time, or SERVFAIL), an expired answer beats
  // none.
  bool failed = !answer || answer->info.rcode() == static_cast<uint16_t>(dns::Rcode::ServFail);
  bool try_stale = failed && caching && settings_.serve_stale;
  bool served_stale = false;
  PacketBuffer out;
  // The TTLs a fresh reply carries are the ones the cache would serve (RFC 2181 8, the caps).
  const uint32_t ttl_cap =
      answer ? dns::ttlCap(answer->info, ttlCaps(settings_)) : std::numeric_limits<uint32_t>::max();
  for (Waiter& w : entry.waiters) {
    if (try_stale && answerFromCache(w.info, w.raw, w.client, cache::Stale::Serve)) {
      served_stale = true;
      continue;
    }
    if (answer) {
      size_t limit = w.client.udp ? w.info.maxUdpReply(settings_.max_udp_size) : dns::kMaxMessage;
      dns::buildClientReply(answer->wire, answer->info, w.info, w.raw, limit,
                            static_cast<uint16_t>(settings_.max_udp_size), out);
      dns::capClientTtls(out.mutableView(), ttl_cap);
      counters_.answers.inc();
      if (out.size() >= dns::kHeaderSize && (loadU16(out.data() + 2) & dns::flag::TC) &&
          !answer->info.header.tc()) {
        counters_.truncated.inc();
      }
    } else {
      counters_.servfail.inc();
      out = dns::buildErrorReply(w.raw, dns::Rcode::ServFail);
    }
    deliver(w.client, out.view(),
            answer ? metrics::AnswerSource::Upstream : metrics::AnswerSource::Local);
  }
  // A SERVFAIL never replaces an entry that is still good for serving stale, nor one a prefetch
  // (no waiters) was refreshing.
  bool keep_old = failed && (served_stale || entry.waiters.empty());
  if (answer && caching && !keep_old &&
      cache_->insert(entry.cache_key, answer->wire, answer->info, loop_.now())) {
    counters_.cache_inserts.inc();
  } else if (caching && entry.waiters.empty()) {
    cache_->prefetchFailed(entry.cache_key);  // a later hit in the window tries again
  }
  maybeFinishDrain();
}

}  // namespace dotproxy::daemon
