#include "dotproxy/net/event_loop.h"

#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>

namespace dotproxy::net {
namespace {

struct NullHandler final : EventLoop::Handler {
  void onEvents(uint32_t) override {}
};

// A socket pair whose first end the test owns.
Fd socketEnd() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  ::close(sv[1]);
  return Fd(sv[0]);
}

// The per-packet path registers and changes sockets all the time: a failure there must be a value
// the caller handles (closing that one connection), not an exception that ends a worker thread in
// std::terminate.
TEST(EventLoop, AddOfAClosedFdIsAnError) {
  EventLoop loop;
  NullHandler h;
  int fd = socketEnd().release();
  ::close(fd);
  int err = 0;
  auto r = loop.add(fd, EPOLLIN, &h, &err);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::IoError);
  EXPECT_EQ(err, EBADF);
}

TEST(EventLoop, AddTwiceIsAnErrorAndTheFirstRegistrationStays) {
  EventLoop loop;
  NullHandler h;
  Fd fd = socketEnd();
  ASSERT_TRUE(loop.add(fd.get(), EPOLLIN, &h));
  int err = 0;
  EXPECT_FALSE(loop.add(fd.get(), EPOLLIN, &h, &err));
  EXPECT_EQ(err, EEXIST);
  EXPECT_TRUE(loop.modify(fd.get(), EPOLLIN | EPOLLOUT, &h));
  loop.remove(fd.get());
}

TEST(EventLoop, ModifyOfAnUnregisteredFdIsAnError) {
  EventLoop loop;
  NullHandler h;
  Fd fd = socketEnd();
  int err = 0;
  auto r = loop.modify(fd.get(), EPOLLOUT, &h, &err);
  ASSERT_FALSE(r);
  EXPECT_EQ(err, ENOENT);
  loop.remove(fd.get());  // of an unregistered fd: a no-op, never an error
}

}  // namespace
}  // namespace dotproxy::net
