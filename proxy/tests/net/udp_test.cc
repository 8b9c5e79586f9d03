#include "dotproxy/net/udp.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <string>

namespace dotproxy::net {
namespace {

// Waits (bounded) until fd is readable.
bool readable(int fd) {
  pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
  return ::poll(&p, 1, 5000) == 1;
}

TEST(Udp, ReceivesABatchAndFlagsOversizedDatagrams) {
  auto addr = SocketAddress::parse("127.0.0.1:0", 0);
  auto server = udpSocket(*addr, false);
  auto client = udpSocket(*addr, false);
  ASSERT_TRUE(server && client);
  SocketAddress to = localAddress(server->get());
  std::string big(100, 'x');
  for (std::string msg : {std::string("one"), std::string("two"), big}) {
    ASSERT_EQ(::sendto(client->get(), msg.data(), msg.size(), 0, to.sa(), to.len()),
              static_cast<ssize_t>(msg.size()));
  }
  UdpReceiver rx(8, 16);
  size_t got = 0;
  std::vector<std::string> texts;
  std::vector<bool> truncated;
  while (got < 3 && readable(server->get())) {
    size_t n = rx.receive(server->get());
    for (size_t i = 0; i < n; ++i) {
      texts.emplace_back(asChars(rx[i].bytes));
      truncated.push_back(rx[i].truncated);
      EXPECT_EQ(rx[i].peer, localAddress(client->get()));
      EXPECT_EQ(rx[i].local.family, AF_UNSPEC);  // specific bind: no packet info
    }
    got += n;
  }
  ASSERT_EQ(got, 3u);
  EXPECT_EQ(texts[0], "one");
  EXPECT_EQ(texts[1], "two");
  EXPECT_EQ(texts[2], std::string(16, 'x'));
  EXPECT_EQ(truncated, (std::vector<bool>{false, false, true}));
}

TEST(Udp, WildcardSocketRepliesFromTheAddressAsked) {
  auto any = SocketAddress::parse("0.0.0.0:0", 0);
  auto server = udpSocket(*any, false);
  ASSERT_TRUE(server);
  SocketAddress bound = localAddress(server->get());
  enablePacketInfo(server->get(), bound);
  auto client = udpSocket(*SocketAddress::parse("127.0.0.1:0", 0), false);
  ASSERT_TRUE(client);
  auto to = SocketAddress::parse("127.0.0.3", bound.port());
  ASSERT_EQ(::sendto(client->get(), "q", 1, 0, to->sa(), to->len()), 1);
  ASSERT_TRUE(readable(server->get()));
  UdpReceiver rx;
  ASSERT_EQ(rx.receive(server->get()), 1u);
  Datagram d = rx[0];
  ASSERT_EQ(d.local.family, AF_INET);
  UdpSender tx;
  tx.queue(d.peer, d.local, asWire("a"));
  EXPECT_EQ(tx.flush(server->get()), 0u);
  ASSERT_TRUE(readable(client->get()));
  sockaddr_storage from{};
  socklen_t len = sizeof from;
  char buf[4];
  ASSERT_EQ(::recvfrom(client->get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len),
            1);
  EXPECT_EQ(SocketAddress::fromSockaddr(reinterpret_cast<sockaddr*>(&from), len).host(),
            "127.0.0.3");
}

}  // namespace
}  // namespace dotproxy::net
