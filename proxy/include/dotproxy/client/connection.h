#pragma once
// A blocking DNS client connection over UDP, TCP or DoT with a deadline on every call: connect
// (and handshake) once, send any number of queries (pipelined on streams), receive whole messages
// in arrival order. Polls the core's non-blocking sockets and tls::Stream; used by the Python
// module. Not thread-safe; one owner.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dotproxy/net/socket.h"
#include "dotproxy/tls/tls.h"
#include "dotproxy/util/result.h"
#include "dotproxy/wire/buffer.h"

namespace dotproxy::client {

using Clock = std::chrono::steady_clock;

enum class Transport : uint8_t { Udp, Tcp, Tls };

struct ConnectionSettings {
  net::SocketAddress server;
  Transport transport = Transport::Udp;
  std::string tls_name;            // SNI and the verified name; empty = verify the IP address
  std::string ca_file;             // PEM bundle; empty = the system trust store
  std::vector<tls::SpkiPin> pins;  // if given, the leaf's SPKI must match one
  bool insecure = false;           // no chain or name verification (pins still apply)
  std::chrono::milliseconds timeout{2000};  // connect + handshake
};

struct TlsInfo {
  std::string version, cipher;
  bool resumed = false;
};

class Connection {
 public:
  // Connects (and for Tls handshakes) before the settings' timeout. Errors: Timeout, Reset
  // (refused), IoError, TlsVerifyFailed, PinMismatch, TlsError, BadText (unusable CA file);
  // `why` (if given) gets one line saying what failed.
  static Result<Connection> open(const ConnectionSettings& settings, std::string* why = nullptr);

  Connection(Connection&&) noexcept;
  Connection& operator=(Connection&&) noexcept;
  ~Connection();

  // Sends one message (framed on streams) before the deadline. TooLarge over 65535 bytes.
  Result<void> send(WireView message, Clock::time_point deadline);
  // The next whole message from the server (UDP: the next datagram from it). Timeout at the
  // deadline; Closed when a stream ends (mid-frame or not), Reset, IoError, TlsError.
  Result<PacketBuffer> receive(Clock::time_point deadline);

  std::chrono::microseconds connectTime() const noexcept;
  std::chrono::microseconds handshakeTime() const noexcept;  // 0 unless Tls
  const TlsInfo& tlsInfo() const noexcept;                   // empty unless Tls
  Transport transport() const noexcept;
  // Why the last failed call failed, in words; empty if nothing failed.
  const std::string& failure() const noexcept;

 private:
  Connection() = default;
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace dotproxy::client
