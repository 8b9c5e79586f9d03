#include "dotproxy/client/connection.h"

#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <stdexcept>

#include <fmt/format.h>

#include "dotproxy/tls/framer.h"

namespace dotproxy::client {

namespace {

using std::chrono::duration_cast;
using std::chrono::microseconds;

// Waits for `events` on fd until the deadline; false on timeout. A poll error returns true so
// that the next socket call reports it.
bool waitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const auto left = duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{.fd = fd, .events = events, .revents = 0};
    const int n = ::poll(&p, 1, static_cast<int>(left) + 1);
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return true;
  }
}

bool isWant(Errc e) noexcept {
  return e == Errc::WantRead || e == Errc::WantWrite;
}

short eventsFor(Errc want) noexcept {
  return want == Errc::WantWrite ? POLLOUT : POLLIN;
}

}  // namespace

struct Connection::State {
  ConnectionSettings settings;
  net::Fd fd;
  std::optional<tls::ClientContext> ctx;
  std::optional<tls::Stream> stream;  // declared after fd: destroyed first
  tls::DotFramer framer;
  microseconds connect_time{0};
  microseconds handshake_time{0};
  TlsInfo tls_info;
  std::string failure;

  Result<void> fail(Errc e, std::string why) {
    failure = std::move(why);
    return std::unexpected(e);
  }
  std::string where() const { return settings.server.toString(); }

  Result<size_t> readSome(std::span<std::byte> out) {
    return stream ? stream->read(out) : net::readSome(fd.get(), out);
  }
  Result<size_t> writeSome(WireView data) {
    return stream ? stream->write(data) : net::writeSome(fd.get(), data);
  }
  std::string streamFailure(Errc e) const {
    if (stream && !stream->failure().empty())
      return fmt::format("{}: TLS: {}", where(), stream->failure());
    return fmt::format("{}: {}", where(), errcName(e));
  }
};

Result<Connection> Connection::open(const ConnectionSettings& settings, std::string* why) {
  Connection c;
  c.state_ = std::make_unique<State>();
  State& s = *c.state_;
  s.settings = settings;
  auto report = [&](Errc e, std::string text) -> Result<Connection> {
    if (why) *why = std::move(text);
    return std::unexpected(e);
  };
  const auto start = Clock::now();
  const auto deadline = start + settings.timeout;
  int err_no = 0;

  if (settings.transport == Transport::Udp) {
    auto any =
        net::SocketAddress::parse(settings.server.family() == AF_INET6 ? "::" : "0.0.0.0", 0);
    auto fd = net::udpSocket(*any, false, &err_no);
    if (!fd) return report(fd.error(), fmt::format("udp socket: {}", std::strerror(err_no)));
    // Connected: only the server's datagrams arrive, and an ICMP refusal is reported.
    if (::connect(fd->get(), settings.server.sa(), settings.server.len()) != 0) {
      return report(Errc::IoError, fmt::format("{}: {}", s.where(), std::strerror(errno)));
    }
    s.fd = std::move(*fd);
    s.connect_time = duration_cast<microseconds>(Clock::now() - start);
    return c;
  }

  if (settings.transport == Transport::Tls) {
    try {
      s.ctx.emplace(
          tls::ClientContextSettings{.ca_file = settings.ca_file, .insecure = settings.insecure});
    } catch (const std::runtime_error& e) {
      return report(Errc::BadText, fmt::format("TLS set-up: {}", e.what()));
    }
  }
  auto fd = net::tcpConnect(settings.server, &err_no);
  if (!fd) return report(fd.error(), fmt::format("{}: {}", s.where(), std::strerror(err_no)));
  s.fd = std::move(*fd);
  if (!waitFor(s.fd.get(), POLLOUT, deadline)) {
    return report(Errc::Timeout, fmt::format("{}: timed out connecting", s.where()));
  }
  if (int e = net::socketError(s.fd.get()); e != 0) {
    return report(e == ECONNREFUSED ? Errc::Reset : Errc::IoError,
                  fmt::format("{}: {}", s.where(), std::strerror(e)));
  }
  const auto connected = Clock::now();
  s.connect_time = duration_cast<microseconds>(connected - start);
  if (settings.transport == Transport::Tcp) return c;

  auto st = tls::Stream::client(*s.ctx, s.fd.get(),
                                {.server_name = settings.tls_name, .pins = settings.pins});
  if (!st) return report(st.error(), fmt::format("TLS: {}", errcName(st.error())));
  s.stream.emplace(std::move(*st));
  for (;;) {
    auto h = s.stream->handshake();
    if (h) break;
    if (isWant(h.error())) {
      if (!waitFor(s.fd.get(), eventsFor(h.error()), deadline)) {
        return report(Errc::Timeout, fmt::format("{}: timed out in the TLS handshake", s.where()));
      }
      continue;
    }
    const std::string& f = s.stream->failure();
    return report(h.error(), fmt::format("{}: TLS handshake failed: {}", s.where(),
                                         f.empty() ? std::string(errcName(h.error())) : f));
  }
  s.handshake_time = duration_cast<microseconds>(Clock::now() - connected);
  s.tls_info = {.version = std::string(s.stream->version()),
                .cipher = std::string(s.stream->cipher()),
                .resumed = s.stream->resumed()};
  return c;
}

Connection::Connection(Connection&&) noexcept = default;
Connection& Connection::operator=(Connection&&) noexcept = default;
Connection::~Connection() {
  if (state_ && state_->stream && state_->stream->handshakeDone()) state_->stream->shutdown();
}

Result<void> Connection::send(WireView message, Clock::time_point deadline) {
  State& s = *state_;
  s.failure.clear();
  PacketBuffer framed;
  WireView out = message;
  if (s.settings.transport != Transport::Udp) {
    if (!tls::appendFrame(framed, message))
      return s.fail(Errc::TooLarge, "message over 65535 bytes");
    out = framed.view();
  }
  size_t sent = 0;
  while (sent < out.size()) {
    auto w = s.writeSome(out.subspan(sent));
    if (w) {
      sent += *w;
      if (s.settings.transport == Transport::Udp) break;  // one datagram, whole or not at all
      continue;
    }
    if (!isWant(w.error())) return s.fail(w.error(), s.streamFailure(w.error()));
    if (!waitFor(s.fd.get(), eventsFor(w.error()), deadline)) {
      return s.fail(Errc::Timeout, fmt::format("{}: timed out sending", s.where()));
    }
  }
  return {};
}

Result<PacketBuffer> Connection::receive(Clock::time_point deadline) {
  State& s = *state_;
  s.failure.clear();
  std::array<std::byte, 65535> buf;
  for (;;) {
    if (s.settings.transport != Transport::Udp) {
      if (auto msg = s.framer.next()) return std::move(*msg);
    }
    auto n = s.readSome(buf);
    if (n) {
      if (s.settings.transport == Transport::Udp) return PacketBuffer(WireView(buf.data(), *n));
      s.framer.feed(WireView(buf.data(), *n));
      continue;
    }
    if (!isWant(n.error())) {
      std::string why = s.streamFailure(n.error());
      if (n.error() == Errc::Closed) {
        why = s.framer.midMessage()
                  ? fmt::format("{}: connection closed in the middle of a message", s.where())
                  : fmt::format("{}: connection closed", s.where());
      }
      return std::unexpected(s.fail(n.error(), std::move(why)).error());
    }
    if (!waitFor(s.fd.get(), eventsFor(n.error()), deadline)) {
      return std::unexpected(
          s.fail(Errc::Timeout, fmt::format("{}: timed out waiting for a reply", s.where()))
              .error());
    }
  }
}

std::chrono::microseconds Connection::connectTime() const noexcept {
  return state_->connect_time;
}
std::chrono::microseconds Connection::handshakeTime() const noexcept {
  return state_->handshake_time;
}
const TlsInfo& Connection::tlsInfo() const noexcept {
  return state_->tls_info;
}
Transport Connection::transport() const noexcept {
  return state_->settings.transport;
}
const std::string& Connection::failure() const noexcept {
  return state_->failure;
}

}  // namespace dotproxy::client
