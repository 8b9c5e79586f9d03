#include "mock_server.h"

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <utility>

#include <fmt/format.h>

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
// UDP: batches in, batches out (the core's recvmmsg/sendmmsg). Delayed replies wait on a timer
// with the peer's address.
class MockServer::UdpListener final : public net::EventLoop::Handler {
 public:
  UdpListener(MockServer& server, net::Fd fd) : server_(server), fd_(std::move(fd)) {
    server_.loop_.add(fd_.get(), EPOLLIN, this);
  }
  ~UdpListener() { server_.loop_.remove(fd_.get()); }

  int fd() const noexcept { return fd_.get(); }

  void onEvents(uint32_t /*epoll_events*/) override {
    for (int round = 0; round < kUdpRounds; ++round) {
      const size_t n = rx_.receive(fd_.get());
      for (size_t i = 0; i < n; ++i) {
        const net::Datagram d = rx_[i];
        Reply reply = server_.responder_.respond(d.bytes, Transport::Udp);
        if (reply.wire.empty()) continue;
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
        tx_.flush(fd_.get());
      });
    }
  }

  MockServer& server_;
  net::Fd fd_;
  net::UdpReceiver rx_{32, 4096};
  net::UdpSender tx_;
  bool flush_scheduled_ = false;
};

// ---------------------------------------------------------------------------------------------
class MockServer::StreamListener final : public net::EventLoop::Handler {
 public:
  StreamListener(MockServer& server, net::Fd fd, Transport transport)
      : server_(server), fd_(std::move(fd)), transport_(transport) {
    server_.loop_.add(fd_.get(), EPOLLIN, this);
  }
  ~StreamListener() { server_.loop_.remove(fd_.get()); }

  int fd() const noexcept { return fd_.get(); }

  void onEvents(uint32_t /*epoll_events*/) override {
    for (int i = 0; i < kAcceptBatch; ++i) {
      auto fd = net::tcpAccept(fd_.get(), nullptr);
      if (!fd) {
        if (fd.error() != Errc::WantRead) {
          log::warn("dotmock: {} accept: {}", transportName(transport_), errcName(fd.error()));
        }
        return;
      }
      server_.accepted(std::move(*fd), transport_);
    }
  }

 private:
  MockServer& server_;
  net::Fd fd_;
  Transport transport_;
};

// ---------------------------------------------------------------------------------------------
// One DoT or TCP client. Explicit states; every event ends in updateInterest(), which asks the loop
// for exactly what the connection waits on next.
class MockServer::Connection final : public net::EventLoop::Handler {
 public:
  enum class State : uint8_t { Handshaking, Open, Closed };

  Connection(MockServer& server, net::Fd fd, Transport transport, std::optional<tls::Stream> stream)
      : server_(server),
        fd_(std::move(fd)),
        stream_(std::move(stream)),
        transport_(transport),
        state_(stream_ ? State::Handshaking : State::Open) {}

  ~Connection() {
    // close() did this already unless the whole server is being torn down.
    cancelTimers();
    if (state_ != State::Closed) server_.loop_.remove(fd_.get());
  }

  void start() {
    last_activity_ = server_.loop_.now();
    server_.loop_.add(fd_.get(), EPOLLIN, this);
    interest_ = EPOLLIN;
    if (server_.idle_timeout_.count() > 0) armIdleTimer(server_.idle_timeout_);
  }

  void onEvents(uint32_t /*epoll_events*/) override {
    if (state_ == State::Closed) return;
    last_activity_ = server_.loop_.now();
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

  // False if the connection was closed (the client sent garbage).
  bool answer(const PacketBuffer& query) {
    Reply reply = server_.responder_.respond(query, transport_);
    if (reply.garbage) {
      close("garbage");
      return false;
    }
    if (reply.wire.empty()) return true;
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
      server_.loop_.modify(fd_.get(), want, this);
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
      const bool busy = !timers_.empty() || out_pos_ < out_.size();
      if (!busy && idle >= server_.idle_timeout_) {
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
  if (settings.udp) {
    udp_ = std::make_unique<UdpListener>(*this, bindOrThrow("--udp", *settings.udp, true));
  }
  if (settings.tcp) {
    tcp_ = std::make_unique<StreamListener>(*this, bindOrThrow("--tcp", *settings.tcp, false),
                                            Transport::Tcp);
  }
}

MockServer::~MockServer() = default;

net::SocketAddress MockServer::dotAddress() const {
  return net::localAddress(dot_->fd());
}
std::optional<net::SocketAddress> MockServer::udpAddress() const {
  if (!udp_) return std::nullopt;
  return net::localAddress(udp_->fd());
}
std::optional<net::SocketAddress> MockServer::tcpAddress() const {
  if (!tcp_) return std::nullopt;
  return net::localAddress(tcp_->fd());
}

void MockServer::accepted(net::Fd fd, Transport transport) {
  std::optional<tls::Stream> stream;
  if (transport == Transport::Dot) {
    ++responder_.counters().connections;
    auto s = tls::Stream::server(tls_, fd.get());
    if (!s) {
      log::warn("dotmock: TLS stream: {}", errcName(s.error()));
      return;
    }
    stream.emplace(std::move(*s));
  }
  auto conn = std::make_unique<Connection>(*this, std::move(fd), transport, std::move(stream));
  Connection* raw = conn.get();
  connections_.emplace(raw, std::move(conn));
  raw->start();
}

void MockServer::release(Connection* c) {
  loop_.defer([this, c] { connections_.erase(c); });
}

}  // namespace dotproxy::dotmock
