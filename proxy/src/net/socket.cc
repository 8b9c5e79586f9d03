#include "dotproxy/net/socket.h"

#include <fmt/format.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>

namespace dotproxy::net {

void Fd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

SocketAddress::SocketAddress() noexcept : ss_{}, len_(sizeof(sockaddr_in)) {
  ss_.ss_family = AF_INET;
}

namespace {

std::optional<uint16_t> parsePort(std::string_view s) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty() || v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

}  // namespace

Result<SocketAddress> SocketAddress::parse(std::string_view text, uint16_t default_port) noexcept {
  std::string_view host = text;
  uint16_t port = default_port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) return std::unexpected(Errc::BadText);
    host = text.substr(1, close - 1);
    auto rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::unexpected(Errc::BadText);
      auto p = parsePort(rest.substr(1));
      if (!p) return std::unexpected(Errc::BadText);
      port = *p;
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    auto colon = text.find(':');
    host = text.substr(0, colon);
    auto p = parsePort(text.substr(colon + 1));
    if (!p) return std::unexpected(Errc::BadText);
    port = *p;
  }
  if (host.empty() || host.size() >= INET6_ADDRSTRLEN) return std::unexpected(Errc::BadText);
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, host.data(), host.size());
  buf[host.size()] = '\0';

  SocketAddress a;
  sockaddr_in v4{};
  if (::inet_pton(AF_INET, buf, &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    std::memcpy(&a.ss_, &v4, sizeof v4);
    a.len_ = sizeof v4;
    return a;
  }
  sockaddr_in6 v6{};
  if (::inet_pton(AF_INET6, buf, &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    std::memcpy(&a.ss_, &v6, sizeof v6);
    a.len_ = sizeof v6;
    return a;
  }
  return std::unexpected(Errc::BadText);
}

SocketAddress SocketAddress::fromSockaddr(const sockaddr* sa, socklen_t len) noexcept {
  SocketAddress a;
  if (len > sizeof(a.ss_)) len = sizeof(a.ss_);
  std::memcpy(&a.ss_, sa, len);
  a.len_ = len;
  return a;
}

uint16_t SocketAddress::port() const noexcept {
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_port);
  return ntohs(reinterpret_cast<const sockaddr_in*>(&ss_)->sin_port);
}

void SocketAddress::setPort(uint16_t port) noexcept {
  if (family() == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&ss_)->sin6_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in*>(&ss_)->sin_port = htons(port);
  }
}

std::string SocketAddress::host() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_addr, buf, sizeof buf);
  } else {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss_)->sin_addr, buf, sizeof buf);
  }
  return buf;
}

std::string SocketAddress::toString() const {
  // fmt rather than operator+: GCC 12 at -O3 reports a bogus -Wrestrict on the concatenation.
  if (family() == AF_INET6) return fmt::format("[{}]:{}", host(), port());
  return fmt::format("{}:{}", host(), port());
}

bool SocketAddress::operator==(const SocketAddress& o) const noexcept {
  return len_ == o.len_ && std::memcmp(&ss_, &o.ss_, len_) == 0;
}

namespace {

Result<Fd> fail(int* err_no) {
  if (err_no) *err_no = errno;
  return std::unexpected(Errc::IoError);
}

void setInt(int fd, int level, int opt, int value) {
  ::setsockopt(fd, level, opt, &value, sizeof value);
}

}  // namespace

Result<Fd> udpSocket(const SocketAddress& bind_to, bool reuse_port, int* err_no) {
  Fd fd(::socket(bind_to.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail(err_no);
  if (reuse_port) setInt(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1);
  if (bind_to.family() == AF_INET6) setInt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, 1);
  // Bursts must not overflow the kernel's queue while the worker is busy: ask for 4 MiB (beyond
  // net.core.rmem_max only with CAP_NET_ADMIN; otherwise the kernel caps it).
  constexpr int kBuffer = 4 << 20;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &kBuffer, sizeof kBuffer) != 0) {
    setInt(fd.get(), SOL_SOCKET, SO_RCVBUF, kBuffer);
  }
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUFFORCE, &kBuffer, sizeof kBuffer) != 0) {
    setInt(fd.get(), SOL_SOCKET, SO_SNDBUF, kBuffer);
  }
  if (::bind(fd.get(), bind_to.sa(), bind_to.len()) != 0) return fail(err_no);
  return fd;
}

Result<Fd> tcpListener(const SocketAddress& bind_to, bool reuse_port, int backlog, int* err_no) {
  Fd fd(::socket(bind_to.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail(err_no);
  setInt(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1);
  if (reuse_port) setInt(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1);
  if (bind_to.family() == AF_INET6) setInt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, 1);
  if (::bind(fd.get(), bind_to.sa(), bind_to.len()) != 0) return fail(err_no);
  if (::listen(fd.get(), backlog) != 0) return fail(err_no);
  return fd;
}

Result<Fd> tcpConnect(const SocketAddress& to, int* err_no) {
  Fd fd(::socket(to.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail(err_no);
  setInt(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1);
  if (::connect(fd.get(), to.sa(), to.len()) != 0 && errno != EINPROGRESS) return fail(err_no);
  return fd;
}

Result<Fd> tcpAccept(int listen_fd, SocketAddress* peer) noexcept {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  int fd =
      ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return std::unexpected(Errc::WantRead);
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      return std::unexpected(Errc::Overloaded);
    }
    return std::unexpected(Errc::IoError);
  }
  setInt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  if (peer) *peer = SocketAddress::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  return Fd(fd);
}

void quickAck(int fd) noexcept {
  // An upstream that writes each answer by itself without TCP_NODELAY (Unbound's DoT server) holds
  // its next answers back under Nagle's algorithm until its last small segment is acknowledged. A
  // socket in Linux's delayed-ACK ("pingpong") mode, which ours enters because it sends queries
  // right after reading answers, waits up to 40 ms (TCP_ATO_MIN) for data to piggyback that ACK on;
  // when no query is ready the connection stalls that long. TCP_QUICKACK sends any pending ACK now
  // and leaves pingpong mode; Linux drops back into it by itself, hence one call per read.
  setInt(fd, IPPROTO_TCP, TCP_QUICKACK, 1);
}

int socketError(int fd) noexcept {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

SocketAddress localAddress(int fd) noexcept {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return SocketAddress::fromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

namespace {
Errc mapErrno(int e, Errc would_block) {
  if (e == EAGAIN || e == EWOULDBLOCK) return would_block;
  if (e == ECONNRESET || e == EPIPE || e == ECONNABORTED) return Errc::Reset;
  return Errc::IoError;
}
}  // namespace

Result<size_t> readSome(int fd, std::span<std::byte> out) noexcept {
  for (;;) {
    ssize_t n = ::read(fd, out.data(), out.size());
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0) return std::unexpected(Errc::Closed);
    if (errno == EINTR) continue;
    return std::unexpected(mapErrno(errno, Errc::WantRead));
  }
}

Result<size_t> writeSome(int fd, WireView data) noexcept {
  for (;;) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    return std::unexpected(mapErrno(errno, Errc::WantWrite));
  }
}

}  // namespace dotproxy::net
