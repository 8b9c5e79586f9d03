#include "client.h"

#include <fmt/format.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
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

using Micros = std::chrono::microseconds;

Micros since(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration_cast<Micros>(to - from);
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
// A reply without the question is refused too: with only the 16-bit ID to match, an off-path
// spoofer needs to guess nothing else (RFC 5452 section 4.2 asks for the question as well).
bool matches(const dns::Message& query, const dns::Message& reply) {
  if (!reply.header.qr() || reply.header.id != query.header.id) return false;
  if (reply.questions.size() != query.questions.size()) return false;
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
  auto sent = Clock::now();
  std::vector<std::byte> buf(65535);
  for (;;) {
    if (!waitFor(fd->get(), POLLIN, deadline)) {
      return timedOut(fmt::format("{}: timed out", s.server.toString()));
    }
    auto n = net::readSome(fd->get(), buf);
    auto arrived = Clock::now();
    if (!n) {
      if (n.error() == Errc::WantRead) continue;
      return noReply(ioError(n.error(), errno, s));
    }
    WireView bytes(buf.data(), *n);
    auto m = dns::parseMessage(bytes);
    if (!m || !matches(q, *m)) continue;  // not ours (or garbage): keep waiting, as dig does
    Reply r{.wire = PacketBuffer(bytes), .message = std::move(*m), .transport = Transport::Udp};
    r.elapsed = since(start, Clock::now());
    r.timings.first_byte = since(sent, arrived);
    r.timings.total = r.elapsed;
    return r;
  }
}

// One TCP or DoT connection: connect, handshake, framed writes, and framed reads that remember
// when each message's first byte arrived (+stats first byte, also for pipelined replies).
class StreamConnection {
 public:
  struct Message {
    PacketBuffer wire;
    Clock::time_point first_byte;
  };

  static std::expected<StreamConnection, ExchangeError> open(const ExchangeSettings& s,
                                                             Transport transport,
                                                             Clock::time_point deadline) {
    StreamConnection c(s);
    if (transport == Transport::Tls) {
      try {
        c.ctx_ = std::make_unique<tls::ClientContext>(
            tls::ClientContextSettings{.ca_file = s.tls.ca_file, .insecure = s.tls.insecure});
      } catch (const std::runtime_error& e) {
        return Fail(ExchangeError{Failure::Usage, fmt::format("TLS set-up: {}", e.what())});
      }
    }
    c.start_ = Clock::now();
    int err_no = 0;
    auto fd = net::tcpConnect(s.server, &err_no);
    if (!fd) return noReply(ioError(fd.error(), err_no, s));
    c.fd_ = std::move(*fd);
    if (!waitFor(c.fd_.get(), POLLOUT, deadline)) {
      return timedOut(fmt::format("{}: timed out connecting", s.server.toString()));
    }
    if (int e = net::socketError(c.fd_.get()); e != 0) {
      return noReply(ioError(Errc::IoError, e, s));
    }
    auto connected = Clock::now();
    c.connect_ = since(c.start_, connected);
    if (c.ctx_) {
      if (auto h = c.handshake(deadline); !h) return Fail(h.error());
      c.tls_ = since(connected, Clock::now());
    }
    return c;
  }

  // Writes all of `data`; returns when the last byte was handed to the kernel.
  std::expected<Clock::time_point, ExchangeError> writeAll(WireView data,
                                                           Clock::time_point deadline) {
    size_t sent = 0;
    while (sent < data.size()) {
      auto w = stream_ ? stream_->write(data.subspan(sent))
                       : net::writeSome(fd_.get(), data.subspan(sent));
      if (w) {
        sent += *w;
      } else if (w.error() == Errc::WantRead || w.error() == Errc::WantWrite) {
        if (!waitWant(fd_.get(), w.error(), deadline)) {
          return timedOut(fmt::format("{}: timed out sending", s_.server.toString()));
        }
      } else {
        return Fail(streamError(w.error()));
      }
    }
    return Clock::now();
  }

  // The next whole message (a zero-length frame comes back empty).
  std::expected<Message, ExchangeError> next(Clock::time_point deadline) {
    for (;;) {
      if (auto msg = framer_.next()) {
        // Its first byte is the first one after the messages already returned (2-byte prefix).
        Clock::time_point first = reads_.front().second;
        for (const auto& [offset, at] : reads_) {
          if (offset > consumed_) break;
          first = at;
        }
        consumed_ += msg->size() + 2;
        while (reads_.size() > 1 && reads_[1].first <= consumed_) reads_.erase(reads_.begin());
        return Message{.wire = std::move(*msg), .first_byte = first};
      }
      auto n = stream_ ? stream_->read(buf_) : net::readSome(fd_.get(), buf_);
      if (n) {
        if (*n == 0) return Fail(streamError(Errc::Closed));  // never spin on an empty read
        reads_.emplace_back(received_, Clock::now());
        received_ += *n;
        framer_.feed(WireView(buf_.data(), *n));
      } else if (n.error() == Errc::WantRead || n.error() == Errc::WantWrite) {
        if (!waitWant(fd_.get(), n.error(), deadline)) {
          return timedOut(fmt::format("{}: timed out", s_.server.toString()));
        }
      } else {
        return Fail(streamError(n.error()));
      }
    }
  }

  void close() {
    if (stream_) stream_->shutdown();
  }

  // A reply that arrived on this connection: the message, the connection's TLS facts and its
  // connect and handshake times, and the times of this exchange (query sent at `sent`).
  Reply reply(Transport transport, Clock::time_point sent, Message msg, dns::Message parsed) const {
    Reply r{.transport = transport};
    if (stream_) {
      r.tls_version = stream_->version();
      r.tls_cipher = stream_->cipher();
      r.tls_resumed = stream_->resumed();
    }
    r.timings.connect = connect_;
    r.timings.tls_handshake = tls_;
    r.elapsed = since(start_, Clock::now());
    r.timings.first_byte = since(sent, msg.first_byte);
    r.timings.total = r.elapsed;
    r.wire = std::move(msg.wire);
    r.message = std::move(parsed);
    return r;
  }

 private:
  explicit StreamConnection(const ExchangeSettings& s) : s_(s), buf_(16384) {}

  std::expected<void, ExchangeError> handshake(Clock::time_point deadline) {
    tls::ClientStreamOptions opts{
        .server_name = s_.tls.hostname.empty() ? s_.server_text : s_.tls.hostname,
        .pins = s_.tls.pins,
        .resume = {}};
    auto st = tls::Stream::client(*ctx_, fd_.get(), opts);
    if (!st) return noReply(fmt::format("TLS: {}", errcName(st.error())));
    stream_.emplace(std::move(*st));
    for (;;) {
      auto h = stream_->handshake();
      if (h) return {};
      if (h.error() == Errc::WantRead || h.error() == Errc::WantWrite) {
        if (!waitWant(fd_.get(), h.error(), deadline)) {
          return timedOut(fmt::format("{}: timed out in the TLS handshake", s_.server.toString()));
        }
        continue;
      }
      std::string why = stream_->failure();
      return noReply(fmt::format("{}: TLS handshake failed: {}", s_.server.toString(),
                                 why.empty() ? std::string(errcName(h.error())) : why));
    }
  }

  ExchangeError streamError(Errc e) const {
    if (stream_ && !stream_->failure().empty()) {
      return {Failure::NoReply,
              fmt::format("{}: TLS: {}", s_.server.toString(), stream_->failure())};
    }
    if (e == Errc::Closed) {
      return {Failure::NoReply,
              fmt::format("{}: connection closed before the reply", s_.server.toString())};
    }
    return {Failure::NoReply, ioError(e, 0, s_)};
  }

  const ExchangeSettings& s_;
  std::unique_ptr<tls::ClientContext> ctx_;  // outlives stream_ (declared before it)
  net::Fd fd_;
  std::optional<tls::Stream> stream_;
  tls::DotFramer framer_;
  std::vector<std::byte> buf_;
  uint64_t received_ = 0;  // bytes fed to the framer so far
  uint64_t consumed_ = 0;  // bytes of the messages returned so far, prefixes included
  std::vector<std::pair<uint64_t, Clock::time_point>> reads_;  // (offset of a read, when)
  Clock::time_point start_;
  Micros connect_{0}, tls_{0};
};

// TCP and DoT: connect, (handshake), one framed query, one framed reply.
std::expected<Reply, ExchangeError> streamExchange(const ExchangeSettings& s, Transport transport,
                                                   const PacketBuffer& query,
                                                   const dns::Message& q) {
  auto deadline = Clock::now() + s.timeout;
  auto conn = StreamConnection::open(s, transport, deadline);
  if (!conn) return Fail(conn.error());
  PacketBuffer framed;
  if (auto f = tls::appendFrame(framed, query); !f) return noReply("query too large");
  auto sent = conn->writeAll(framed.view(), deadline);
  if (!sent) return Fail(sent.error());
  auto msg = conn->next(deadline);
  if (!msg) return Fail(msg.error());
  auto m = dns::parseMessage(msg->wire);
  if (!m) return noReply(fmt::format("malformed reply: {}", errcName(m.error())));
  if (!matches(q, *m)) return noReply("reply does not match the query (ID or question)");
  Reply reply = conn->reply(transport, *sent, std::move(*msg), std::move(*m));
  conn->close();
  return reply;
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

void exchangePipelined(const ExchangeSettings& s, std::span<const PacketBuffer> queries,
                       const PipelineResult& on_result) {
  const Transport transport = s.transport == Transport::Udp ? Transport::Tcp : s.transport;
  std::vector<std::optional<dns::Message>> pending;  // nullopt once answered (or failed)
  for (const auto& query : queries) {
    auto q = dns::parseMessage(query);
    if (!q) {
      on_result(pending.size(), Fail(ExchangeError{Failure::Usage, "internal: bad query"}));
      pending.emplace_back();
    } else {
      pending.emplace_back(std::move(*q));
    }
  }
  auto failRest = [&](const ExchangeError& e) {
    for (size_t i = 0; i < pending.size(); ++i) {
      if (pending[i]) on_result(i, Fail(e));
      pending[i].reset();
    }
  };

  // One deadline for the lot: the queries are in flight together.
  auto deadline = Clock::now() + s.timeout;
  auto conn = StreamConnection::open(s, transport, deadline);
  if (!conn) return failRest(conn.error());
  // Every query goes out before any reply is read, in one write where the socket takes it.
  PacketBuffer framed;
  for (const auto& query : queries) {
    if (auto f = tls::appendFrame(framed, query); !f) {
      return failRest({Failure::Usage, "query too large"});
    }
  }
  auto sent = conn->writeAll(framed.view(), deadline);
  if (!sent) return failRest(sent.error());

  size_t answered = 0;
  const size_t expected = static_cast<size_t>(std::ranges::count_if(
      pending, [](const std::optional<dns::Message>& m) { return m.has_value(); }));
  while (answered < expected) {
    auto msg = conn->next(deadline);
    if (!msg) return failRest(msg.error());
    auto m = dns::parseMessage(msg->wire);
    if (!m)
      return failRest({Failure::NoReply, fmt::format("malformed reply: {}", errcName(m.error()))});
    auto it = std::ranges::find_if(
        pending, [&](const std::optional<dns::Message>& q) { return q && matches(*q, *m); });
    if (it == pending.end()) {
      // RFC 7766 7: a reply for no outstanding query on this connection; the stream is not ours.
      return failRest(
          {Failure::NoReply,
           fmt::format("reply with ID {} matches no query on the connection", m->header.id)});
    }
    const size_t index = static_cast<size_t>(it - pending.begin());
    it->reset();
    ++answered;
    Reply reply = conn->reply(transport, *sent, std::move(*msg), std::move(*m));
    reply.pipeline = PipelineSlot{.query = index + 1, .answer = answered, .of = queries.size()};
    on_result(index, std::move(reply));
  }
  conn->close();
}

}  // namespace dotproxy::dotq
