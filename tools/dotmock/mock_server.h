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

 private:
  class UdpListener;
  class StreamListener;
  class Connection;

  void accepted(net::Fd fd, Transport transport);
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
};

}  // namespace dotproxy::dotmock
