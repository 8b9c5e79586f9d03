#include "mock_server.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dotproxy/dns/message.h"
#include "dotproxy/net/udp.h"
#include "dotproxy/tls/framer.h"
#include "dotproxy/util/log.h"

namespace dotproxy::dotmock {

namespace {

constexpr int kAcceptBatch = 64;  // connections accepted per wake-up
constexpr int kUdpRounds = 4;  // recvmmsg batches per wake-up (level-triggered: the rest come next)
constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kCompactOutput = 64 * 1024;
// A client that sends queries but does not read answers stops being read from beyond this much
// pending output (TCP flow control then holds it back).
constexpr size_t kMaxPendingOutput = 1024 * 1024;

std::string_view transportName(Transport t) noexcept {
  switch (t) {
    case Transport::Udp:
      return "udp";
    case Transport::Tcp:
      return "tcp";
    case Transport::Dot:
      return "dot";
  }
  return "?";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// A listening socket (UDP, or TCP/DoT accepting). The `down` fault closes it and later reopens it
// on the same port; the object stays for the timers that refer to it.
class MockServer::Listener : public net::EventLoop::Handler {
 public:
  // Start-up: throws std::runtime_error if the socket cannot be watched.
  Listener(MockServer& server, net::Fd fd) : server_(server), fd_(std::move(fd)) {
    int err = 0;
    if (!server_.loop_.add(fd_.get(), EPOLLIN, this, &err)) {
      throw std::runtime_error(fmt::format("epoll_ctl (listener): {}", std::strerror(err)));
    }
  }

  int fd() const noexcept { return fd_.get(); }
  void close() {
    if (!fd_) return;
    server_.loop_.remove(fd_.get());
    fd_.reset();
  }
  // After `down`: a socket the loop refuses stays closed (logged), the mock goes on without it.
  void reopen(net::Fd fd) {
    fd_ = std::move(fd);
    int err = 0;
    if (!server_.loop_.add(fd_.get(), EPOLLIN, this, &err)) {
      log::warn("dotmock: cannot watch the reopened listener: {}", std::strerror(err));
      fd_.reset();
    }
  }

 protected:
  ~Listener() { close(); }

  MockServer& server_;
  net::Fd fd_;
};

// UDP: batches in, batches out (the core's recvmmsg/sendmmsg). Delayed replies wait on a timer
// with the peer's address. After `down`, replies still pending are dropped.
class MockServer::UdpListener final : public Listener {
 public:
  using Listener::Listener;

  void onEvents(uint32_t /*epoll_events*/) override {
    for (int round = 0; round < kUdpRounds; ++round) {
      const size_t n = rx_.receive(fd_.get());
      for (size_t i = 0; i < n; ++i) {
        const net::Datagram d = rx_[i];
        Reply reply = server_.responder_.respond(d.bytes, Transport::Udp);
        if (reply.wire.empty()) continue;
        if (reply.counted) {
          const Outcome outcome = server_.applyFaults(d.bytes, reply, 0);
          if (outcome == Outcome::Drop || outcome == Outcome::Close ||
              outcome == Outcome::CloseMid) {
            continue;
          }
          // Larger than any client allows without TC: trailing bytes up to 4096.
          if (outcome == Outcome::Oversized)
            reply.wire.resize(std::max<size_t>(reply.wire.size(), 4096));
          if (outcome == Outcome::Undersized) reply.wire.resize(reply.wire.size() - 1);
        }
        if (!fd_) continue;
        if (reply.delay.count() > 0) {
          server_.loop_.after(reply.delay,
                              [this, peer = d.peer, local = d.local, counted = reply.counted,
                               wire = std::move(reply.wire)]() mutable {
                                send(peer, local, std::move(wire), counted);
                              });
        } else {
          send(d.peer, d.local, std::move(reply.wire), reply.counted);
        }
      }
      if (n < rx_.batch()) break;
    }
  }

 private:
  // Queued and sent together once this round of the loop is done. A full socket buffer drops the
  // reply, as it would on the network.
  void send(const net::SocketAddress& peer, const net::PacketInfo& local, PacketBuffer wire,
            bool counted) {
    if (counted) ++server_.responder_.counters().answers;
    tx_.queue(peer, local, wire);
    if (!flush_scheduled_) {
      flush_scheduled_ = true;
      server_.loop_.defer([this] {
        flush_scheduled_ = false;
        tx_.flush(fd_.get());  // after `down`: fd -1, every datagram dropped
      });
    }
  }

  net::UdpReceiver rx_{32, 4096};
  net::UdpSender tx_;
  bool flush_scheduled_ = false;
};

// ---------------------------------------------------------------------------------------------
class MockServer::StreamListener final : public Listener {
 public:
  StreamListener(MockServer& server, net::Fd fd, Transport transport)
      : Listener(server, std::move(fd)), transport_(transport) {}

  ~StreamListener() { server_.loop_.cancel(resume_); }

  void onEvents(uint32_t /*epoll_events*/) override {
    for (int i = 0; i < kAcceptBatch && fd_ && !resume_; ++i) {
      auto fd = net::tcpAccept(fd_.get(), nullptr);
      if (!fd) {
        if (fd.error() != Errc::WantRead) {
          log::warn("dotmock: {} accept: {}", transportName(transport_), errcName(fd.error()));
          pause();
        }
        return;
      }
      server_.accepted(std::move(*fd), transport_);
    }
  }

  void close() {
    server_.loop_.cancel(resume_);
    resume_ = 0;
    Listener::close();
  }
  void reopen(net::Fd fd) {
    server_.loop_.cancel(resume_);
    resume_ = 0;
    Listener::reopen(std::move(fd));
  }

 private:
  // Out of descriptors (EMFILE) the connection stays in the backlog and the level-triggered
  // listener fires again at once: stop listening for a moment instead of spinning on accept.
  void pause() {
    server_.loop_.remove(fd_.get());
    resume_ = server_.loop_.after(std::chrono::milliseconds(200), [this] {
      resume_ = 0;
      if (fd_ && !server_.loop_.add(fd_.get(), EPOLLIN, this)) pause();  // try again later
    });
  }

  Transport transport_;
  net::EventLoop::TimerId resume_ = 0;
};

// ---------------------------------------------------------------------------------------------
// One DoT or TCP client. Explicit states; every event ends in updateInterest(), which asks the loop
// for exactly what the connection waits on next.
class MockServer::Connection final : public net::EventLoop::Handler {
 public:
  // Stalled: the stall-handshake fault (never read, closed when idle). Draining: a close fault
  // sent FIN after its last bytes; input is read and dropped until the peer closes, so that the
  // close is not a reset that could destroy those bytes in flight.
  enum class State : uint8_t { Handshaking, Open, Stalled, Draining, Closed };

  Connection(MockServer& server, net::Fd fd, Transport transport, std::optional<tls::Stream> stream,
             uint64_t number, bool stalled)
      : server_(server),
        fd_(std::move(fd)),
        stream_(std::move(stream)),
        transport_(transport),
        state_(stalled   ? State::Stalled
               : stream_ ? State::Handshaking
                         : State::Open),
        number_(number) {}

  ~Connection() {
    // close() did this already unless the whole server is being torn down.
    cancelTimers();
    if (state_ != State::Closed) server_.loop_.remove(fd_.get());
  }

  void start() {
    last_activity_ = server_.loop_.now();
    // A stalled connection is registered with no interest: its bytes stay unread.
    interest_ = state_ == State::Stalled ? 0u : static_cast<uint32_t>(EPOLLIN);
    if (!server_.loop_.add(fd_.get(), interest_, this)) {
      close("epoll refused the socket");
      return;
    }
    if (server_.idle_timeout_.count() > 0) armIdleTimer(server_.idle_timeout_);
  }

  // Closes now, without draining (the `down` fault).
  void abort() { close("down"); }

  void onEvents(uint32_t epoll_events) override {
    if (state_ == State::Closed) return;
    if (state_ == State::Stalled) {  // registered for nothing; only a hang-up or error arrives
      if (epoll_events & (EPOLLHUP | EPOLLERR)) close("stalled connection gone");
      return;
    }
    last_activity_ = server_.loop_.now();
    if (state_ == State::Draining) {
      drain();
      return;
    }
    if (state_ == State::Handshaking && !handshake()) return;
    // After the handshake too: its last read may have pulled application data into TLS buffers,
    // which would never make the socket readable again.
    pump();
  }

 private:
  // False if the connection was closed or is still handshaking.
  bool handshake() {
    auto r = stream_->handshake();
    if (!r) {
      if (r.error() == Errc::WantRead || r.error() == Errc::WantWrite) {
        want_write_ = r.error() == Errc::WantWrite;
        updateInterest();
        return false;
      }
      close(fmt::format("handshake: {} {}", errcName(r.error()), stream_->failure()));
      return false;
    }
    want_write_ = false;
    state_ = State::Open;
    auto& counters = server_.responder_.counters();
    ++counters.handshakes;
    if (stream_->resumed()) ++counters.resumptions;
    return true;
  }

  Result<size_t> readSome(std::span<std::byte> out) {
    return stream_ ? stream_->read(out) : net::readSome(fd_.get(), out);
  }
  Result<size_t> writeSome(WireView data) {
    return stream_ ? stream_->write(data) : net::writeSome(fd_.get(), data);
  }

  // Reads, answers and writes until the socket waits (or the client stops reading our answers).
  void pump() {
    for (;;) {
      if (!readAll() || !flush()) return;
      // Paused with TLS-buffered input that will not wake us again: go on once output drained.
      if (!paused_ || backlogged()) break;
    }
    updateInterest();
  }

  bool backlogged() const noexcept { return out_.size() - out_pos_ > kMaxPendingOutput; }

  // Reads until the socket (and TLS) has nothing more, answering every whole message, or until
  // output is backlogged (paused_). False if the connection was closed.
  bool readAll() {
    std::array<std::byte, kReadChunk> buf;
    paused_ = false;
    for (;;) {
      while (!backlogged()) {
        auto msg = framer_.next();
        if (!msg) break;
        if (!answer(*msg)) return false;
      }
      if (backlogged()) {
        paused_ = true;
        return true;
      }
      auto n = readSome(buf);
      if (!n) {
        if (n.error() == Errc::WantRead) return true;
        if (n.error() == Errc::WantWrite) {  // TLS wants to write before it can read
          read_wants_write_ = true;
          return true;
        }
        close(n.error() == Errc::Closed ? std::string("eof") : std::string(errcName(n.error())));
        return false;
      }
      read_wants_write_ = false;
      framer_.feed(WireView(buf.data(), *n));
    }
  }

  // False if the connection was closed (the client sent garbage, or a fault closed it).
  bool answer(const PacketBuffer& query) {
    Reply reply = server_.responder_.respond(query, transport_);
    if (reply.garbage) {
      close("garbage");
      return false;
    }
    if (reply.wire.empty()) return true;
    if (reply.counted) {
      switch (server_.applyFaults(query, reply, number_)) {
        case Outcome::Send:
          break;
        case Outcome::Drop:
          return true;
        case Outcome::Close:
          closeAfterWrite(PacketBuffer());
          return false;
        case Outcome::CloseMid: {
          PacketBuffer half;
          (void)tls::appendFrame(half, reply.wire);
          half.resize(2 + reply.wire.size() / 2);
          closeAfterWrite(std::move(half));
          return false;
        }
        case Outcome::Oversized: {
          // The length prefix announces 256 bytes more than the message: the client's framer
          // takes the next answer's bytes as the rest, or waits for bytes that never come.
          PacketBuffer framed;
          (void)tls::appendFrame(framed, reply.wire);
          storeU16(framed.data(),
                   static_cast<uint16_t>(std::min<size_t>(reply.wire.size() + 256, 65535)));
          out_.append(framed);
          ++server_.responder_.counters().answers;
          return true;
        }
        case Outcome::Undersized: {
          // The length prefix announces one byte less than the message, and the whole message
          // follows: the client's framer ends the message early and reads its last byte and the
          // next answer's first as the next prefix. (A cut inside the padding would let the
          // framer fall back in step: zero bytes read as empty frames.)
          PacketBuffer framed;
          (void)tls::appendFrame(framed, reply.wire);
          storeU16(framed.data(), static_cast<uint16_t>(reply.wire.size() - 1));
          out_.append(framed);
          ++server_.responder_.counters().answers;
          return true;
        }
      }
    }
    if (reply.delay.count() <= 0) {
      queue(reply.wire, reply.counted);
      return true;
    }
    const uint64_t key = next_timer_key_++;
    const net::EventLoop::TimerId id = server_.loop_.after(
        reply.delay, [this, key, counted = reply.counted, wire = std::move(reply.wire)]() {
          timers_.erase(key);
          if (state_ == State::Closed) return;
          queue(wire, counted);
          pump();
        });
    timers_.emplace(key, id);
    return true;
  }

  void queue(WireView wire, bool counted) {
    if (!tls::appendFrame(out_, wire)) return;  // the responder never builds more than 64 KiB
    if (counted) ++server_.responder_.counters().answers;
  }

  // Writes as much pending output as the socket takes. False if the connection was closed.
  bool flush() {
    write_blocked_ = false;
    write_wants_read_ = false;
    while (out_pos_ < out_.size()) {
      auto n = writeSome(WireView(out_.data() + out_pos_, out_.size() - out_pos_));
      if (!n) {
        if (n.error() == Errc::WantWrite) {
          write_blocked_ = true;
          break;
        }
        if (n.error() == Errc::WantRead) {  // TLS: retried on the next readable event
          write_wants_read_ = true;
          break;
        }
        close(fmt::format("write: {}", errcName(n.error())));
        return false;
      }
      out_pos_ += *n;
    }
    if (out_pos_ == out_.size()) {
      out_.clear();
      out_pos_ = 0;
    } else if (out_pos_ >= kCompactOutput && out_pos_ * 2 >= out_.size()) {
      PacketBuffer rest(WireView(out_.data() + out_pos_, out_.size() - out_pos_));
      out_ = std::move(rest);
      out_pos_ = 0;
    }
    return true;
  }

  void updateInterest() {
    if (state_ == State::Closed) return;
    uint32_t want = (paused_ && !write_wants_read_) ? 0u : static_cast<uint32_t>(EPOLLIN);
    if (state_ == State::Handshaking ? want_write_ : (write_blocked_ || read_wants_write_)) {
      want |= EPOLLOUT;
    }
    if (want != interest_) {
      if (!server_.loop_.modify(fd_.get(), want, this)) {
        close("epoll refused the change");
        return;
      }
      interest_ = want;
    }
  }

  // One timer per connection, re-armed lazily: activity only moves last_activity_.
  void armIdleTimer(std::chrono::milliseconds after) {
    idle_timer_ = server_.loop_.after(after, [this] {
      idle_timer_ = 0;
      if (state_ == State::Closed) return;
      const auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(server_.loop_.now() -
                                                                              last_activity_);
      const bool busy = state_ != State::Draining && (!timers_.empty() || out_pos_ < out_.size());
      if (state_ == State::Draining || (!busy && idle >= server_.idle_timeout_)) {
        close("idle");
        return;
      }
      armIdleTimer(busy ? server_.idle_timeout_ : server_.idle_timeout_ - idle);
    });
  }

  void cancelTimers() {
    for (const auto& [key, id] : timers_) server_.loop_.cancel(id);
    timers_.clear();
    if (idle_timer_ != 0) server_.loop_.cancel(idle_timer_);
    idle_timer_ = 0;
  }

  // Writes `last` (whatever of it the socket takes now), sends FIN and drains input until the
  // peer closes or the idle timer ends it. No close_notify: the peer sees the TLS stream end.
  void closeAfterWrite(PacketBuffer last) {
    if (state_ == State::Closed) return;
    if (!last.empty()) {
      out_.clear();
      out_pos_ = 0;
      out_.append(last);
      (void)flush();
      if (state_ == State::Closed) return;
    }
    cancelTimers();
    ::shutdown(fd_.get(), SHUT_WR);
    state_ = State::Draining;
    if (interest_ != EPOLLIN) {
      if (!server_.loop_.modify(fd_.get(), EPOLLIN, this)) {
        close("epoll refused the change");
        return;
      }
      interest_ = EPOLLIN;
    }
    armIdleTimer(std::chrono::milliseconds(2000));
  }

  void drain() {
    std::array<std::byte, kReadChunk> buf;
    for (int i = 0; i < 64; ++i) {
      auto n = net::readSome(fd_.get(), buf);
      if (n) continue;
      if (n.error() != Errc::WantRead) close("drained");
      return;
    }
  }

  void close(std::string_view why) {
    if (state_ == State::Closed) return;
    log::debug("dotmock: {} connection closed: {}", transportName(transport_), why);
    state_ = State::Closed;
    cancelTimers();
    if (stream_ && stream_->handshakeDone()) stream_->shutdown();
    server_.loop_.remove(fd_.get());
    server_.release(this);
  }

  MockServer& server_;
  net::Fd fd_;
  std::optional<tls::Stream> stream_;  // DoT only; destroyed before fd_ closes
  Transport transport_;
  State state_;
  uint64_t number_;  // 1-based among stream connections, for `connection N` faults
  tls::DotFramer framer_;
  PacketBuffer out_;  // framed answers not yet written; out_pos_ bytes of it are
  size_t out_pos_ = 0;
  bool want_write_ = false;        // handshake waits for writability
  bool write_blocked_ = false;     // output waits for writability
  bool write_wants_read_ = false;  // TLS write waits for readability
  bool paused_ = false;            // not reading: too much output pending
  bool read_wants_write_ = false;  // TLS read waits for writability
  uint32_t interest_ = 0;
  net::Clock::time_point last_activity_{};
  net::EventLoop::TimerId idle_timer_ = 0;
  std::unordered_map<uint64_t, net::EventLoop::TimerId> timers_;  // delayed answers in flight
  uint64_t next_timer_key_ = 1;
};

// ---------------------------------------------------------------------------------------------
namespace {

net::Fd bindOrThrow(std::string_view flag, const net::SocketAddress& addr, bool udp) {
  int err = 0;
  auto fd = udp ? net::udpSocket(addr, false, &err) : net::tcpListener(addr, false, 1024, &err);
  if (!fd) {
    throw std::runtime_error(fmt::format("{} {}: {}", flag, addr.toString(),
                                         err != 0 ? std::strerror(err) : errcName(fd.error())));
  }
  return std::move(*fd);
}

}  // namespace

MockServer::MockServer(net::EventLoop& loop, const tls::ServerContext& tls, Responder& responder,
                       const ServerSettings& settings)
    : loop_(loop), tls_(tls), responder_(responder), idle_timeout_(settings.idle_timeout) {
  dot_ = std::make_unique<StreamListener>(*this, bindOrThrow("--dot", settings.dot, false),
                                          Transport::Dot);
  dot_addr_ = net::localAddress(dot_->fd());
  if (settings.udp) {
    udp_ = std::make_unique<UdpListener>(*this, bindOrThrow("--udp", *settings.udp, true));
    udp_addr_ = net::localAddress(udp_->fd());
  }
  if (settings.tcp) {
    tcp_ = std::make_unique<StreamListener>(*this, bindOrThrow("--tcp", *settings.tcp, false),
                                            Transport::Tcp);
    tcp_addr_ = net::localAddress(tcp_->fd());
  }
}

MockServer::~MockServer() = default;

net::SocketAddress MockServer::dotAddress() const {
  return dot_addr_;
}
std::optional<net::SocketAddress> MockServer::udpAddress() const {
  return udp_addr_;
}
std::optional<net::SocketAddress> MockServer::tcpAddress() const {
  return tcp_addr_;
}

void MockServer::accepted(net::Fd fd, Transport transport) {
  const uint64_t number = ++stream_connections_;
  const FaultRule* rule = faults_.forConnection(number);
  const bool stalled = rule && rule->action == FaultAction::StallHandshake;
  const tls::ServerContext* ctx = &tls_;
  if (rule && rule->action == FaultAction::ExpiredCert && expired_tls_) ctx = expired_tls_;
  if (rule && rule->action == FaultAction::WrongNameCert && wrong_name_tls_) ctx = wrong_name_tls_;
  std::optional<tls::Stream> stream;
  if (transport == Transport::Dot) {
    ++responder_.counters().connections;
    auto s = tls::Stream::server(*ctx, fd.get());
    if (!s) {
      log::warn("dotmock: TLS stream: {}", errcName(s.error()));
      return;
    }
    stream.emplace(std::move(*s));
  }
  auto conn = std::make_unique<Connection>(*this, std::move(fd), transport, std::move(stream),
                                           number, stalled);
  Connection* raw = conn.get();
  connections_.emplace(raw, std::move(conn));
  raw->start();
}

void MockServer::release(Connection* c) {
  loop_.defer([this, c] { connections_.erase(c); });
}

MockServer::Outcome MockServer::applyFaults(WireView query, Reply& reply, uint64_t connection) {
  if (faults_.empty() || down_) return down_ ? Outcome::Drop : Outcome::Send;
  auto parsed = dns::parseMessage(query);
  if (!parsed || parsed->questions.empty()) return Outcome::Send;
  const FaultRule* rule =
      faults_.forQuery(responder_.counters().queries, parsed->questions[0].name, connection);
  if (!rule) return Outcome::Send;
  log::debug("dotmock: fault line {}: {}", rule->line, faultActionName(rule->action));
  switch (rule->action) {
    case FaultAction::Delay:
      reply.delay += std::chrono::milliseconds(rule->ms);
      return Outcome::Send;
    case FaultAction::Drop:
      return Outcome::Drop;
    case FaultAction::Close:
      return Outcome::Close;
    case FaultAction::CloseMid:
      return Outcome::CloseMid;
    case FaultAction::Oversized:
      return Outcome::Oversized;
    case FaultAction::Undersized:
      return Outcome::Undersized;
    case FaultAction::Down:
      down_ = true;
      loop_.defer([this, ms = std::chrono::milliseconds(rule->ms)] { goDown(ms); });
      return Outcome::Drop;
    default:
      reply.wire = alterAnswer(rule->action, query, reply.wire);
      return Outcome::Send;
  }
}

void MockServer::goDown(std::chrono::milliseconds ms) {
  log::info("dotmock: going down for {} ms", ms.count());
  dot_->close();
  if (udp_) udp_->close();
  if (tcp_) tcp_->close();
  std::vector<Connection*> open;
  for (const auto& [raw, conn] : connections_) open.push_back(raw);
  for (Connection* c : open) c->abort();
  loop_.after(ms, [this] { comeBack(0); });
}

// Binds the same addresses again; a port taken meanwhile is retried for a while (bounded).
void MockServer::comeBack(unsigned attempt) {
  constexpr unsigned kAttempts = 100;
  auto rebind = [](const net::SocketAddress& a, bool udp) {
    return udp ? net::udpSocket(a, false) : net::tcpListener(a, false, 1024);
  };
  auto dot = rebind(dot_addr_, false);
  auto udp = udp_addr_ ? rebind(*udp_addr_, true) : Result<net::Fd>(net::Fd());
  auto tcp = tcp_addr_ ? rebind(*tcp_addr_, false) : Result<net::Fd>(net::Fd());
  if (!dot || !udp || !tcp) {
    if (attempt + 1 >= kAttempts) {
      log::error("dotmock: cannot listen again after down; staying down");
      return;
    }
    loop_.after(std::chrono::milliseconds(50), [this, attempt] { comeBack(attempt + 1); });
    return;
  }
  dot_->reopen(std::move(*dot));
  if (udp_) udp_->reopen(std::move(*udp));
  if (tcp_) tcp_->reopen(std::move(*tcp));
  down_ = false;
  log::info("dotmock: back up");
}

}  // namespace dotproxy::dotmock
