#include "dotproxy/net/socket.h"

#include <gtest/gtest.h>

#include <thread>

#include "dotproxy/net/event_loop.h"

namespace dotproxy::net {
namespace {

TEST(SocketAddress, ParsesIpv4WithAndWithoutPort) {
  auto a = SocketAddress::parse("192.0.2.1:5353", 53);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->toString(), "192.0.2.1:5353");
  auto b = SocketAddress::parse("192.0.2.1", 53);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->port(), 53);
  EXPECT_EQ(b->family(), AF_INET);
}

TEST(SocketAddress, ParsesIpv6Forms) {
  auto a = SocketAddress::parse("[::1]:853", 53);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->toString(), "[::1]:853");
  auto b = SocketAddress::parse("2001:db8::1", 853);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->port(), 853);
  EXPECT_EQ(b->family(), AF_INET6);
}

TEST(SocketAddress, RejectsNamesAndBadPorts) {
  EXPECT_FALSE(SocketAddress::parse("localhost:53", 53));
  EXPECT_FALSE(SocketAddress::parse("1.2.3.4:65536", 53));
  EXPECT_FALSE(SocketAddress::parse("1.2.3.4:", 53));
  EXPECT_FALSE(SocketAddress::parse("[::1", 53));
  EXPECT_FALSE(SocketAddress::parse("[::1]x", 53));
  EXPECT_FALSE(SocketAddress::parse("", 53));
}

TEST(Sockets, TcpConnectAcceptAndEofOverLoopback) {
  auto addr = SocketAddress::parse("127.0.0.1:0", 0);
  auto listener = tcpListener(*addr, false);
  ASSERT_TRUE(listener);
  auto bound = localAddress(listener->get());
  ASSERT_NE(bound.port(), 0);
  auto client = tcpConnect(bound);
  ASSERT_TRUE(client);
  EventLoop loop;
  struct Accepter : EventLoop::Handler {
    int listen_fd;
    Fd accepted;
    EventLoop* loop;
    void onEvents(uint32_t) override {
      auto fd = tcpAccept(listen_fd, nullptr);
      if (fd) {
        accepted = std::move(*fd);
        loop->stop();
      }
    }
  } acc;
  acc.listen_fd = listener->get();
  acc.loop = &loop;
  ASSERT_TRUE(loop.add(listener->get(), EPOLLIN, &acc));
  bool timed_out = false;
  loop.after(std::chrono::seconds(5), [&] {
    timed_out = true;
    loop.stop();
  });
  loop.run();
  ASSERT_FALSE(timed_out);
  ASSERT_TRUE(acc.accepted);
  client->reset();
  std::byte buf[16];
  // The peer closed: read reports Closed once the FIN is in (bounded retries on WantRead).
  Result<size_t> r = std::unexpected(Errc::WantRead);
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (!r && r.error() == Errc::WantRead && Clock::now() < deadline) {
    r = readSome(acc.accepted.get(), buf);
  }
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::Closed);
}

TEST(EventLoop, TimersFireInOrderAndCancelledOnesDoNot) {
  EventLoop loop;
  std::vector<int> fired;
  loop.after(std::chrono::milliseconds(20), [&] { fired.push_back(2); });
  auto id = loop.after(std::chrono::milliseconds(10), [&] { fired.push_back(99); });
  loop.after(std::chrono::milliseconds(5), [&] { fired.push_back(1); });
  loop.after(std::chrono::milliseconds(30), [&] { loop.stop(); });
  loop.cancel(id);
  loop.run();
  EXPECT_EQ(fired, (std::vector<int>{1, 2}));
}

TEST(EventLoop, PostFromAnotherThreadRunsOnLoop) {
  EventLoop loop;
  std::thread::id ran_on;
  std::thread t([&] {
    loop.post([&] {
      ran_on = std::this_thread::get_id();
      loop.stop();
    });
  });
  auto guard = loop.after(std::chrono::seconds(5), [&] { loop.stop(); });
  loop.run();
  t.join();
  loop.cancel(guard);
  EXPECT_EQ(ran_on, std::this_thread::get_id());
}

}  // namespace
}  // namespace dotproxy::net
