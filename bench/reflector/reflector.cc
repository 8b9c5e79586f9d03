// reflector: the cheapest possible DNS "server", the ceiling for one core in the benchmarks. Each
// thread owns a UDP socket (SO_REUSEPORT when there are several) and loops: recvmmsg a batch, set
// QR on every datagram that has a header and is a query (ID and question untouched, nothing
// added), sendmmsg it back.
//   reflector [--listen 127.0.0.1:0] [--threads 1]
// Prints {"ready":true,"udp":PORT} once bound; exits 0 on SIGTERM/SIGINT; 2 on a bad flag.

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "dotproxy/net/socket.h"

namespace {

using dotproxy::net::Fd;
using dotproxy::net::SocketAddress;

constexpr unsigned kBatch = 64;
constexpr size_t kMaxDatagram = 4096;
std::atomic<bool> g_stop{false};

void reflect(int fd) {
  std::vector<std::byte> buf(kBatch * kMaxDatagram);
  std::vector<iovec> iov(kBatch);
  std::vector<mmsghdr> msgs(kBatch);
  std::vector<sockaddr_storage> peers(kBatch);
  std::vector<mmsghdr> out(kBatch);
  while (!g_stop.load(std::memory_order_relaxed)) {
    for (unsigned i = 0; i < kBatch; ++i) {
      iov[i] = iovec{.iov_base = buf.data() + i * kMaxDatagram, .iov_len = kMaxDatagram};
      msgs[i].msg_hdr = msghdr{.msg_name = &peers[i],
                               .msg_namelen = sizeof peers[i],
                               .msg_iov = &iov[i],
                               .msg_iovlen = 1,
                               .msg_control = nullptr,
                               .msg_controllen = 0,
                               .msg_flags = 0};
    }
    int n = ::recvmmsg(fd, msgs.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) {
      // Idle: wait for the next datagram, looking at the stop flag every 100 ms.
      pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
      ::poll(&p, 1, 100);
      continue;
    }
    unsigned k = 0;
    for (int i = 0; i < n; ++i) {
      size_t len = msgs[i].msg_len;
      auto* d = static_cast<unsigned char*>(iov[i].iov_base);
      if (len < 12 || len > kMaxDatagram || (d[2] & 0x80)) continue;  // no header, or an answer
      d[2] |= 0x80;                                                   // QR
      iov[i].iov_len = len;
      out[k].msg_hdr = msgs[i].msg_hdr;
      ++k;
    }
    unsigned sent = 0;
    while (sent < k) {
      int s = ::sendmmsg(fd, out.data() + sent, k - sent, MSG_DONTWAIT);
      if (s <= 0) break;  // a full socket buffer drops the rest, as a busy server would
      sent += static_cast<unsigned>(s);
    }
  }
}

extern "C" void onSignal(int) {
  g_stop.store(true);
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:0";
  unsigned threads = 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if ((a == "--listen" || a == "--threads") && i + 1 < argc) {
      std::string v = argv[++i];
      if (a == "--listen") {
        listen = v;
      } else {
        char* end = nullptr;
        unsigned long t = std::strtoul(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0' || t == 0 || t > 256) {
          std::fprintf(stderr, "reflector: --threads: expected 1..256, got '%s'\n", v.c_str());
          return 2;
        }
        threads = static_cast<unsigned>(t);
      }
    } else if (a == "--help" || a == "-h") {
      std::printf("reflector [--listen 127.0.0.1:0] [--threads 1]\n");
      return 0;
    } else {
      std::fprintf(stderr, "reflector: unknown or incomplete argument '%s'\n", argv[i]);
      return 2;
    }
  }
  auto addr = SocketAddress::parse(listen, 0);
  if (!addr) {
    std::fprintf(stderr, "reflector: --listen: not an IP address[:port]: '%s'\n", listen.c_str());
    return 2;
  }
  std::vector<Fd> fds;
  for (unsigned t = 0; t < threads; ++t) {
    int err = 0;
    // SO_REUSEPORT only to share the port between our own threads: with it, a bind to a port
    // chosen elsewhere could join another process's group (same user) and split its traffic.
    auto fd = dotproxy::net::udpSocket(*addr, threads > 1, &err);
    if (!fd) {
      std::fprintf(stderr, "reflector: %s: %s\n", addr->toString().c_str(), std::strerror(err));
      return 1;
    }
    int size = 4 << 20;
    ::setsockopt(fd->get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    ::setsockopt(fd->get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    if (t == 0) addr->setPort(dotproxy::net::localAddress(fd->get()).port());  // the rest share it
    fds.push_back(std::move(*fd));
  }
  struct sigaction sa{};
  sa.sa_handler = onSignal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  std::printf("{\"ready\":true,\"udp\":%u}\n", static_cast<unsigned>(addr->port()));
  std::fflush(stdout);
  std::vector<std::thread> workers;
  for (auto& fd : fds) workers.emplace_back(reflect, fd.get());
  for (auto& w : workers) w.join();
  return 0;
}
