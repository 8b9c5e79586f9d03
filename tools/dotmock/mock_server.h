#pragma once
// The mock's listeners and connections on one net::EventLoop: DoT, and optionally plain UDP and
// TCP. Stream connections are persistent and pipelined; each query is answered on its own (after
// its delay), so answers may leave out of order. Loop thread only.

#include <chrono>
#include <memory>
#include <optional>
#include <unordered_map>

#include "dotproxy/net/event_loop.h"
#include "dotproxy/net/socket.h"
#include "dotproxy/tls/tls.h"
#include "faults.h"
#include "responder.h"

namespace dotproxy::dotmock {

struct ServerSettings {
  net::SocketAddress dot{};                 // port 0 = ephemeral
  std::optional<net::SocketAddress> udp{};  // plain DNS listeners, if enabled
  std::optional<net::SocketAddress> tcp{};
  std::chrono::milliseconds idle_timeout{30'000};  // DoT/TCP connections with nothing to do
};

class MockServer {
 public:
  // Binds and registers every listener. Throws std::runtime_error naming the listener that failed
  // (start-up only). loop, tls and responder must outlive the server.
  MockServer(net::EventLoop& loop, const tls::ServerContext& tls, Responder& responder,
             const ServerSettings& settings);
  ~MockServer();
  MockServer(const MockServer&) = delete;
  MockServer& operator=(const MockServer&) = delete;

  // The bound addresses (ephemeral ports resolved).
  net::SocketAddress dotAddress() const;
  std::optional<net::SocketAddress> udpAddress() const;
  std::optional<net::SocketAddress> tcpAddress() const;

  size_t openConnections() const noexcept { return connections_.size(); }

  // Replaces the fault script (faults.h); connections already open keep their certificate.
  void setFaults(FaultScript script) { faults_ = std::move(script); }
  // The certificates presented by the expired-cert and wrong-name-cert faults (must outlive the
  // server); without them those faults present the normal certificate.
  void setFaultCertificates(const tls::ServerContext* expired,
                            const tls::ServerContext* wrong_name) {
    expired_tls_ = expired;
    wrong_name_tls_ = wrong_name;
  }

 private:
  class Listener;
  class UdpListener;
  class StreamListener;
  class Connection;

  void accepted(net::Fd fd, Transport transport);
  // What the fault script does to one query's reply (already altered in place); `connection` is
  // the stream connection's number, 0 for UDP.
  enum class Outcome : uint8_t { Send, Drop, Close, CloseMid, Oversized, Undersized };
  Outcome applyFaults(WireView query, Reply& reply, uint64_t connection);
  // The `down MS` fault: every listener and connection closed, listeners reopened on the same
  // addresses after `ms`.
  void goDown(std::chrono::milliseconds ms);
  void comeBack(unsigned attempt);
  // Unregisters and frees the connection after the current batch of events.
  void release(Connection* c);

  net::EventLoop& loop_;
  const tls::ServerContext& tls_;
  Responder& responder_;
  std::chrono::milliseconds idle_timeout_;
  std::unique_ptr<StreamListener> dot_;
  std::unique_ptr<UdpListener> udp_;
  std::unique_ptr<StreamListener> tcp_;
  std::unordered_map<Connection*, std::unique_ptr<Connection>> connections_;
  FaultScript faults_;
  const tls::ServerContext* expired_tls_ = nullptr;
  const tls::ServerContext* wrong_name_tls_ = nullptr;
  uint64_t stream_connections_ = 0;  // accepted so far (DoT and TCP), for `connection N`
  net::SocketAddress dot_addr_{};    // bound addresses, for coming back after `down`
  std::optional<net::SocketAddress> udp_addr_, tcp_addr_;
  bool down_ = false;
};

}  // namespace dotproxy::dotmock
