#include "client.h"

#include <fmt/format.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>

#include "dotproxy/tls/framer.h"
#include "dotproxy/tls/tls.h"

namespace dotproxy::dotq {
namespace {

using Clock = std::chrono::steady_clock;
using Fail = std::unexpected<ExchangeError>;

Fail noReply(std::string what) {
  return Fail(ExchangeError{Failure::NoReply, std::move(what)});
}
Fail timedOut(std::string what) {
  return Fail(ExchangeError{Failure::Timeout, std::move(what)});
}

// Waits for `events` on fd until the deadline; false on timeout.
bool waitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{.fd = fd, .events = events, .revents = 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()) + 1);
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return true;  // let the next call report the error
  }
}

bool waitWant(int fd, Errc want, Clock::time_point deadline) {
  return waitFor(fd, want == Errc::WantWrite ? POLLOUT : POLLIN, deadline);
}

// The reply answers the query: same ID, QR set and the same question (name case-insensitively).
bool matches(const dns::Message& query, const dns::Message& reply) {
  if (!reply.header.qr() || reply.header.id != query.header.id) return false;
  if (reply.questions.size() != query.questions.size()) return reply.questions.empty();
  for (size_t i = 0; i < query.questions.size(); ++i) {
    const auto& q = query.questions[i];
    const auto& r = reply.questions[i];
    if (!q.name.equalsIgnoreCase(r.name) || q.type != r.type || q.klass != r.klass) return false;
  }
  return true;
}

std::string ioError(Errc e, int err_no, const ExchangeSettings& s) {
  std::string where = s.server.toString();
  if (err_no == ECONNREFUSED || e == Errc::Reset)
    return fmt::format("{}: connection refused", where);
  if (err_no != 0) return fmt::format("{}: {}", where, std::strerror(err_no));
  return fmt::format("{}: {}", where, errcName(e));
}

std::expected<Reply, ExchangeError> udpTry(const ExchangeSettings& s, const PacketBuffer& query,
                                           const dns::Message& q) {
  net::SocketAddress any;
  if (auto a = net::SocketAddress::parse(s.server.family() == AF_INET6 ? "::" : "0.0.0.0", 0)) {
    any = *a;
  }
  int err_no = 0;
  auto fd = net::udpSocket(any, false, &err_no);
  if (!fd) return noReply(ioError(fd.error(), err_no, s));
  // Connected, so that only the server's datagrams arrive and an ICMP refusal is reported.
  if (::connect(fd->get(), s.server.sa(), s.server.len()) != 0) {
    return noReply(ioError(Errc::IoError, errno, s));
  }
  auto start = Clock::now();
  auto deadline = start + s.timeout;
  if (auto w = net::writeSome(fd->get(), query); !w) {
    return noReply(ioError(w.error(), errno, s));
  }
  std::vector<std::byte> buf(65535);
  for (;;) {
    if (!waitFor(fd->get(), POLLIN, deadline)) {
      return timedOut(fmt::format("{}: timed out", s.server.toString()));
    }
    auto n = net::readSome(fd->get(), buf);
    if (!n) {
      if (n.error() == Errc::WantRead) continue;
      return noReply(ioError(n.error(), errno, s));
    }
    WireView bytes(buf.data(), *n);
    auto m = dns::parseMessage(bytes);
    if (!m || !matches(q, *m)) continue;  // not ours (or garbage): keep waiting, as dig does
    Reply r{.wire = PacketBuffer(bytes), .message = std::move(*m), .transport = Transport::Udp};
    r.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
    return r;
  }
}

// TCP and DoT: connect, (handshake), one framed query, one framed reply.
std::expected<Reply, ExchangeError> streamExchange(const ExchangeSettings& s, Transport transport,
                                                   const PacketBuffer& query,
                                                   const dns::Message& q) {
  std::optional<tls::ClientContext> ctx;
  if (transport == Transport::Tls) {
    try {
      ctx.emplace(tls::ClientContextSettings{.ca_file = s.tls.ca_file, .insecure = s.tls.insecure});
    } catch (const std::runtime_error& e) {
      return Fail(ExchangeError{Failure::Usage, fmt::format("TLS set-up: {}", e.what())});
    }
  }
  auto start = Clock::now();
  auto deadline = start + s.timeout;
  int err_no = 0;
  auto fd = net::tcpConnect(s.server, &err_no);
  if (!fd) return noReply(ioError(fd.error(), err_no, s));
  if (!waitFor(fd->get(), POLLOUT, deadline)) {
    return timedOut(fmt::format("{}: timed out connecting", s.server.toString()));
  }
  if (int e = net::socketError(fd->get()); e != 0) return noReply(ioError(Errc::IoError, e, s));

  std::optional<tls::Stream> stream;
  Reply reply{.transport = transport};
  if (transport == Transport::Tls) {
    tls::ClientStreamOptions opts{
        .server_name = s.tls.hostname.empty() ? s.server_text : s.tls.hostname,
        .pins = s.tls.pins,
        .resume = {}};
    auto st = tls::Stream::client(*ctx, fd->get(), opts);
    if (!st) return noReply(fmt::format("TLS: {}", errcName(st.error())));
    stream.emplace(std::move(*st));
    for (;;) {
      auto h = stream->handshake();
      if (h) break;
      if (h.error() == Errc::WantRead || h.error() == Errc::WantWrite) {
        if (!waitWant(fd->get(), h.error(), deadline)) {
          return timedOut(fmt::format("{}: timed out in the TLS handshake", s.server.toString()));
        }
        continue;
      }
      std::string why = stream->failure();
      return noReply(fmt::format("{}: TLS handshake failed: {}", s.server.toString(),
                                 why.empty() ? std::string(errcName(h.error())) : why));
    }
    reply.tls_version = stream->version();
    reply.tls_cipher = stream->cipher();
    reply.tls_resumed = stream->resumed();
  }

  auto doRead = [&](std::span<std::byte> out) {
    return stream ? stream->read(out) : net::readSome(fd->get(), out);
  };
  auto doWrite = [&](WireView data) {
    return stream ? stream->write(data) : net::writeSome(fd->get(), data);
  };
  auto streamError = [&](Errc e) {
    if (stream && !stream->failure().empty()) {
      return noReply(fmt::format("{}: TLS: {}", s.server.toString(), stream->failure()));
    }
    if (e == Errc::Closed) {
      return noReply(fmt::format("{}: connection closed before the reply", s.server.toString()));
    }
    return noReply(ioError(e, 0, s));
  };

  PacketBuffer framed;
  if (auto f = tls::appendFrame(framed, query); !f) return noReply("query too large");
  size_t sent = 0;
  while (sent < framed.size()) {
    auto w = doWrite(framed.view().subspan(sent));
    if (w) {
      sent += *w;
    } else if (w.error() == Errc::WantRead || w.error() == Errc::WantWrite) {
      if (!waitWant(fd->get(), w.error(), deadline)) {
        return timedOut(fmt::format("{}: timed out sending", s.server.toString()));
      }
    } else {
      return streamError(w.error());
    }
  }

  tls::DotFramer framer;
  std::vector<std::byte> buf(16384);
  for (;;) {
    while (auto msg = framer.next()) {
      auto m = dns::parseMessage(*msg);
      if (!m) return noReply(fmt::format("malformed reply: {}", errcName(m.error())));
      if (!matches(q, *m)) return noReply("reply does not match the query (ID or question)");
      reply.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
      reply.wire = std::move(*msg);
      reply.message = std::move(*m);
      if (stream) stream->shutdown();
      return reply;
    }
    auto n = doRead(buf);
    if (n) {
      framer.feed(WireView(buf.data(), *n));
    } else if (n.error() == Errc::WantRead || n.error() == Errc::WantWrite) {
      if (!waitWant(fd->get(), n.error(), deadline)) {
        return timedOut(fmt::format("{}: timed out", s.server.toString()));
      }
    } else {
      return streamError(n.error());
    }
  }
}

}  // namespace

std::string_view transportName(Transport t) {
  switch (t) {
    case Transport::Udp:
      return "UDP";
    case Transport::Tcp:
      return "TCP";
    case Transport::Tls:
      return "TLS";
  }
  return "?";
}

std::expected<net::SocketAddress, std::string> resolveServer(const std::string& server,
                                                             uint16_t port, int family) {
  if (auto a = net::SocketAddress::parse(server, port);
      a && (family == 0 || a->family() == family)) {
    a->setPort(port);
    return *a;
  }
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(server.c_str(), nullptr, &hints, &res); rc != 0 || !res) {
    return std::unexpected(fmt::format("cannot resolve server '{}': {}", server,
                                       rc != 0 ? gai_strerror(rc) : "no address"));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owned(res, &::freeaddrinfo);
  auto a = net::SocketAddress::fromSockaddr(res->ai_addr, res->ai_addrlen);
  a.setPort(port);
  return a;
}

std::expected<Reply, ExchangeError> exchange(const ExchangeSettings& s, const PacketBuffer& query) {
  auto q = dns::parseMessage(query);
  if (!q) return Fail(ExchangeError{Failure::Usage, "internal: the query does not parse"});
  if (s.transport != Transport::Udp) return streamExchange(s, s.transport, query, *q);

  std::expected<Reply, ExchangeError> r = noReply("no try made");
  for (unsigned attempt = 0; attempt <= s.retry; ++attempt) {
    r = udpTry(s, query, *q);
    if (r || r.error().kind != Failure::Timeout) break;
  }
  if (!r || !r->message.header.tc()) return r;
  // RFC 7766 / dig: a truncated UDP answer is asked again over TCP.
  auto tcp = streamExchange(s, Transport::Tcp, query, *q);
  if (tcp) tcp->truncated_udp = true;
  return tcp;
}

}  // namespace dotproxy::dotq
