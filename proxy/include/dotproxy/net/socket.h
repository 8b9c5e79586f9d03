#pragma once
// Addresses, owned file descriptors and the non-blocking socket calls the loop-driven code uses.

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "dotproxy/util/result.h"
#include "dotproxy/wire/buffer.h"

namespace dotproxy::net {

// An owned file descriptor; closes on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// An IPv4 or IPv6 socket address.
class SocketAddress {
 public:
  SocketAddress() noexcept;
  // "192.0.2.1", "192.0.2.1:53", "[2001:db8::1]:53", "2001:db8::1" (no port); IP literals only.
  static Result<SocketAddress> parse(std::string_view text, uint16_t default_port) noexcept;
  static SocketAddress fromSockaddr(const sockaddr* sa, socklen_t len) noexcept;

  const sockaddr* sa() const noexcept { return reinterpret_cast<const sockaddr*>(&ss_); }
  sockaddr* sa() noexcept { return reinterpret_cast<sockaddr*>(&ss_); }
  socklen_t len() const noexcept { return len_; }
  int family() const noexcept { return ss_.ss_family; }
  uint16_t port() const noexcept;
  void setPort(uint16_t port) noexcept;
  // "192.0.2.1:53", "[::1]:53"; host() without the port.
  std::string toString() const;
  std::string host() const;
  bool operator==(const SocketAddress& o) const noexcept;

 private:
  sockaddr_storage ss_;
  socklen_t len_;
};

// Non-blocking, close-on-exec sockets. Errors carry errno in *err_no when given.
Result<Fd> udpSocket(const SocketAddress& bind_to, bool reuse_port, int* err_no = nullptr);
Result<Fd> tcpListener(const SocketAddress& bind_to, bool reuse_port, int backlog = 1024,
                       int* err_no = nullptr);
// Starts a connect (EINPROGRESS is success); TCP_NODELAY set.
Result<Fd> tcpConnect(const SocketAddress& to, int* err_no = nullptr);
// Accepts one connection, non-blocking with TCP_NODELAY; WantRead when none is pending.
Result<Fd> tcpAccept(int listen_fd, SocketAddress* peer) noexcept;
// Acknowledges what a TCP socket has received now instead of after the delayed-ACK timer, and
// keeps acknowledging at once until the kernel switches back to delayed ACKs on its own (it does
// when we send soon after receiving), so call it again after every read that got data.
void quickAck(int fd) noexcept;
// The pending error of a connecting socket (SO_ERROR), 0 if connected.
int socketError(int fd) noexcept;
SocketAddress localAddress(int fd) noexcept;

// read/write mapped to Result: WantRead/WantWrite on EAGAIN, Closed on EOF, Reset on
// ECONNRESET/EPIPE, IoError otherwise.
Result<size_t> readSome(int fd, std::span<std::byte> out) noexcept;
Result<size_t> writeSome(int fd, WireView data) noexcept;

}  // namespace dotproxy::net
