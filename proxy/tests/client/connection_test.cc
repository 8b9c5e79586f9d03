#include "dotproxy/client/connection.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include "dotproxy/net/socket.h"
#include "dotproxy/tls/framer.h"
#include "dotproxy/tls/tls.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace dotproxy::client {
namespace {

using namespace std::chrono_literals;

net::SocketAddress loopback() {
  return net::SocketAddress::parse("127.0.0.1", 0).value();
}

bool waitReadable(int fd, std::chrono::milliseconds timeout) {
  pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
}

PacketBuffer bytes(std::string_view s) {
  return PacketBuffer(asWire(s));
}

TEST(ClientConnection, UdpSendsAndReceivesDatagrams) {
  auto server = net::udpSocket(loopback(), false).value();
  auto addr = net::localAddress(server.get());
  auto c = Connection::open({.server = addr, .transport = Transport::Udp}).value();
  ASSERT_TRUE(c.send(bytes("hello"), Clock::now() + 5s));
  ASSERT_TRUE(waitReadable(server.get(), 5000ms));
  std::byte buf[64];
  sockaddr_storage peer{};
  socklen_t len = sizeof(peer);
  ssize_t n =
      ::recvfrom(server.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&peer), &len);
  ASSERT_EQ(n, 5);
  ASSERT_EQ(::sendto(server.get(), "reply", 5, 0, reinterpret_cast<sockaddr*>(&peer), len), 5);
  auto r = c.receive(Clock::now() + 5s);
  ASSERT_TRUE(r) << c.failure();
  EXPECT_EQ(asChars(*r), "reply");
}

TEST(ClientConnection, ReceiveTimesOutAtTheDeadline) {
  auto server = net::udpSocket(loopback(), false).value();
  auto c =
      Connection::open({.server = net::localAddress(server.get()), .transport = Transport::Udp})
          .value();
  const auto start = Clock::now();
  auto r = c.receive(start + 200ms);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::Timeout);
  EXPECT_GE(Clock::now() - start, 200ms);
  EXPECT_NE(c.failure().find("timed out"), std::string::npos);
}

TEST(ClientConnection, TcpFramesPipelinedMessagesAndReportsAMidFrameClose) {
  auto listener = net::tcpListener(loopback(), false).value();
  auto c =
      Connection::open({.server = net::localAddress(listener.get()), .transport = Transport::Tcp})
          .value();
  ASSERT_TRUE(waitReadable(listener.get(), 5000ms));
  auto peer = net::tcpAccept(listener.get(), nullptr).value();
  ASSERT_TRUE(c.send(bytes("one"), Clock::now() + 5s));
  ASSERT_TRUE(c.send(bytes("two"), Clock::now() + 5s));
  // The server sees both frames; answers two whole frames and half of a third, split oddly.
  PacketBuffer out;
  ASSERT_TRUE(tls::appendFrame(out, bytes("first")));
  ASSERT_TRUE(tls::appendFrame(out, bytes("second")));
  ASSERT_TRUE(tls::appendFrame(out, bytes("never whole")));
  out.resize(out.size() - 4);
  for (size_t i = 0; i < out.size(); i += 3) {
    const size_t n = std::min<size_t>(3, out.size() - i);
    ASSERT_EQ(::send(peer.get(), out.data() + i, n, MSG_NOSIGNAL), static_cast<ssize_t>(n));
  }
  auto first = c.receive(Clock::now() + 5s);
  ASSERT_TRUE(first) << c.failure();
  EXPECT_EQ(asChars(*first), "first");
  auto second = c.receive(Clock::now() + 5s);
  ASSERT_TRUE(second) << c.failure();
  EXPECT_EQ(asChars(*second), "second");
  // Read both queries first: closing with unread input would be a reset, not a close.
  std::byte in[64];
  size_t got = 0;
  while (got < 10 && waitReadable(peer.get(), 5000ms)) {
    ssize_t n = ::recv(peer.get(), in, sizeof(in), 0);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ASSERT_EQ(got, 10u);  // two frames: 2 + 3 bytes each
  peer.reset();
  auto third = c.receive(Clock::now() + 5s);
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error(), Errc::Closed);
  EXPECT_NE(c.failure().find("in the middle of a message"), std::string::npos) << c.failure();
}

TEST(ClientConnection, RefusedConnectIsAnError) {
  net::SocketAddress addr;
  {
    auto listener = net::tcpListener(loopback(), false).value();
    addr = net::localAddress(listener.get());
  }  // closed: nobody listens there now
  std::string why;
  auto c = Connection::open({.server = addr, .transport = Transport::Tcp, .timeout = 5000ms}, &why);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), Errc::Reset);
  EXPECT_FALSE(why.empty());
}

// A DoT server on a thread: one connection, one framed message echoed back.
class EchoTlsServer {
 public:
  explicit EchoTlsServer(const tls::ServerContext& ctx)
      : listener_(net::tcpListener(loopback(), false).value()),
        addr_(net::localAddress(listener_.get())),
        thread_([this, &ctx] { run(ctx); }) {}
  ~EchoTlsServer() { thread_.join(); }
  net::SocketAddress address() const { return addr_; }

 private:
  void run(const tls::ServerContext& ctx) {
    const auto deadline = Clock::now() + 10s;
    auto left = [&] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    };
    if (!waitReadable(listener_.get(), left())) return;
    auto fd = net::tcpAccept(listener_.get(), nullptr);
    if (!fd) return;
    auto stream = tls::Stream::server(ctx, fd->get());
    if (!stream) return;
    tls::DotFramer framer;
    std::byte buf[4096];
    while (Clock::now() < deadline) {
      if (!stream->handshakeDone()) {
        auto h = stream->handshake();
        if (!h && h.error() != Errc::WantRead && h.error() != Errc::WantWrite) return;
        if (!h) {
          pollfd p{.fd = fd->get(),
                   .events = static_cast<short>(h.error() == Errc::WantRead ? POLLIN : POLLOUT),
                   .revents = 0};
          ::poll(&p, 1, 100);
        }
        continue;
      }
      if (auto msg = framer.next()) {
        PacketBuffer out;
        (void)tls::appendFrame(out, *msg);
        size_t sent = 0;
        while (sent < out.size() && Clock::now() < deadline) {
          auto w = stream->write(out.view().subspan(sent));
          if (w)
            sent += *w;
          else if (w.error() != Errc::WantWrite && w.error() != Errc::WantRead)
            return;
        }
        // Wait for the client to close, so that our close is never a reset.
        while (Clock::now() < deadline) {
          auto r = stream->read(buf);
          if (!r && r.error() != Errc::WantRead && r.error() != Errc::WantWrite) return;
          waitReadable(fd->get(), 100ms);
        }
        return;
      }
      auto r = stream->read(buf);
      if (r) {
        framer.feed(WireView(buf, *r));
      } else if (r.error() == Errc::WantRead || r.error() == Errc::WantWrite) {
        waitReadable(fd->get(), 100ms);
      } else {
        return;
      }
    }
  }

  net::Fd listener_;
  net::SocketAddress addr_;
  std::thread thread_;
};

TEST(ClientConnection, TlsVerifiesThePinAndCarriesFrames) {
  auto ctx = tls::ServerContext::selfSigned({.names = {"dotmock.test"}});
  {
    EchoTlsServer server(ctx);
    auto c = Connection::open({.server = server.address(),
                               .transport = Transport::Tls,
                               .tls_name = "dotmock.test",
                               .pins = {ctx.spkiPin()},
                               .insecure = true,
                               .timeout = 5000ms});
    ASSERT_TRUE(c);
    EXPECT_EQ(c->tlsInfo().version, "TLSv1.3");
    ASSERT_TRUE(c->send(bytes("over tls"), Clock::now() + 5s));
    auto r = c->receive(Clock::now() + 5s);
    ASSERT_TRUE(r) << c->failure();
    EXPECT_EQ(asChars(*r), "over tls");
    EXPECT_GE(c->handshakeTime().count(), 0);
  }
}

TEST(ClientConnection, TlsWithAWrongPinFails) {
  auto ctx = tls::ServerContext::selfSigned({.names = {"dotmock.test"}});
  EchoTlsServer server(ctx);
  tls::SpkiPin wrong{};
  std::string why;
  auto c = Connection::open({.server = server.address(),
                             .transport = Transport::Tls,
                             .tls_name = "dotmock.test",
                             .pins = {wrong},
                             .insecure = true,
                             .timeout = 5000ms},
                            &why);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), Errc::PinMismatch);
  EXPECT_NE(why.find("TLS handshake failed"), std::string::npos) << why;
}

}  // namespace
}  // namespace dotproxy::client
