// The UDP worker: several connected sockets in one epoll, queries sent in sendmmsg batches from
// preformatted wire (copy, patch the ID), answers taken in recvmmsg batches and matched through
// each socket's slot table. Connected sockets receive only the server's datagrams and learn of an
// ICMP port unreachable as ECONNREFUSED.
//
// Runs of equal-sized queries leave with UDP generic segmentation offload (UDP_SEGMENT): one
// message carries up to 64 datagrams, built and routed once, so the kernel's per-datagram send
// cost (most of what a UDP load generator spends) is paid once per run. The server still receives
// separate datagrams. A kernel or route that refuses it turns it off for the run (--no-gso: never).

#include <fmt/format.h>
#include <linux/udp.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <limits>
#include <memory>
#include <optional>

#include "load.h"
#include "rate.h"

namespace dotproxy::dotload {
namespace {

constexpr size_t kMaxAnswer = 4096;  // larger answers are counted from their header (MSG_TRUNC)
constexpr int64_t kMaxWaitNs = 100'000'000;  // the loop looks at the stop flag at least this often

constexpr size_t kMaxSegments = 64;  // UDP_MAX_SEGMENTS on every kernel that has UDP_SEGMENT

// One UDP_SEGMENT control message, aligned for its header.
union SegmentControl {
  cmsghdr header;
  std::byte space[CMSG_SPACE(sizeof(uint16_t))];
};

struct UdpSocket {
  net::Fd fd;
  Inflight table;
  std::vector<std::byte> out;  // batch * QuerySet::kMaxWire
  std::vector<iovec> iov;      // one per queued query
  std::vector<mmsghdr> msgs;   // one per queued query
  std::vector<uint16_t> ids;
  size_t queued = 0;
  // Segmented sends: message m carries queries first[m] .. first[m] + count[m] - 1.
  std::vector<mmsghdr> runs;
  std::vector<size_t> first;
  std::vector<size_t> count;
  std::vector<SegmentControl> control;

  UdpSocket(size_t capacity, size_t batch)
      : table(capacity),
        out(batch * QuerySet::kMaxWire),
        iov(batch),
        msgs(batch),
        ids(batch),
        runs(batch),
        first(batch),
        count(batch),
        control(batch) {}
};

class UdpWorker {
 public:
  explicit UdpWorker(const WorkerContext& ctx)
      : ctx_(ctx), s_(*ctx.settings), picker_(ctx.source, ctx.index), gso_(s_.gso) {}

  WorkerResult run();

 private:
  bool openSockets();
  void queue(UdpSocket& sock, int64_t sent_ns);
  void flush(UdpSocket& sock);
  void flushPlain(UdpSocket& sock, size_t from);
  void flushSegmented(UdpSocket& sock);
  void unsent(UdpSocket& sock, size_t from, int err);
  void refill(UdpSocket& sock);
  void paced(int64_t now);
  void receive(UdpSocket& sock);
  void refused();
  void publish() {
    ctx_.published->sent.store(r_.counters.sent, std::memory_order_relaxed);
    ctx_.published->answered.store(r_.counters.answered, std::memory_order_relaxed);
    ctx_.published->lost.store(r_.counters.lost, std::memory_order_relaxed);
  }
  bool sending(int64_t now) const {
    return budget_ > 0 && now < ctx_.end_ns && !ctx_.shared->stop.load(std::memory_order_relaxed);
  }

  const WorkerContext& ctx_;
  const RunSettings& s_;
  QueryPicker picker_;
  bool gso_;  // segmented sends: unless --no-gso, until the kernel refuses one
  WorkerResult r_;
  std::vector<std::unique_ptr<UdpSocket>> socks_;
  net::Fd epoll_;
  std::optional<RateScheduler> sched_;
  size_t rr_ = 0;
  uint64_t budget_ = std::numeric_limits<uint64_t>::max();
  bool answered_once_ = false;
  // receive batch
  std::vector<std::byte> in_;
  std::vector<iovec> in_iov_;
  std::vector<mmsghdr> in_msgs_;
};

bool UdpWorker::openSockets() {
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) {
    ctx_.shared->fail(fmt::format("epoll: {}", std::strerror(errno)));
    return false;
  }
  size_t capacity = s_.outstanding;
  if (ctx_.qps > 0) {
    // Open loop: room for everything one socket may have in flight within one timeout.
    double per_socket = ctx_.qps / s_.connections;
    capacity =
        static_cast<size_t>(per_socket * std::chrono::duration<double>(s_.timeout).count() * 1.25) +
        64;
  }
  for (unsigned i = 0; i < s_.connections; ++i) {
    auto sock = std::make_unique<UdpSocket>(capacity, s_.batch);
    sock->fd.reset(::socket(s_.server.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!sock->fd || ::connect(sock->fd.get(), s_.server.sa(), s_.server.len()) != 0) {
      ctx_.shared->fail(fmt::format("{}: {}", s_.server.toString(), std::strerror(errno)));
      return false;
    }
    int size = 4 << 20;  // deep kernel queues: a burst of answers must not overflow them
    ::setsockopt(sock->fd.get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    ::setsockopt(sock->fd.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    epoll_event ev{.events = EPOLLIN, .data = {.u32 = i}};
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, sock->fd.get(), &ev);
    for (size_t b = 0; b < s_.batch; ++b) {
      sock->iov[b].iov_base = sock->out.data() + b * QuerySet::kMaxWire;
      sock->msgs[b].msg_hdr = msghdr{};
      sock->msgs[b].msg_hdr.msg_iov = &sock->iov[b];
      sock->msgs[b].msg_hdr.msg_iovlen = 1;
    }
    socks_.push_back(std::move(sock));
    ++r_.counters.connections;
  }
  in_.resize(s_.batch * kMaxAnswer);
  in_iov_.resize(s_.batch);
  in_msgs_.resize(s_.batch);
  for (size_t b = 0; b < s_.batch; ++b) {
    in_iov_[b] = iovec{.iov_base = in_.data() + b * kMaxAnswer, .iov_len = kMaxAnswer};
    in_msgs_[b].msg_hdr = msghdr{};
    in_msgs_[b].msg_hdr.msg_iov = &in_iov_[b];
    in_msgs_[b].msg_hdr.msg_iovlen = 1;
  }
  return true;
}

void UdpWorker::queue(UdpSocket& sock, int64_t sent_ns) {
  auto [index, unique] = picker_.next();
  uint16_t id = sock.table.acquire(sent_ns, index, unique);
  size_t b = sock.queued++;
  sock.iov[b].iov_len =
      ctx_.source.set->write(sock.out.data() + b * QuerySet::kMaxWire, index, unique, id);
  sock.ids[b] = id;
  --budget_;
  if (sock.queued == s_.batch) flush(sock);
}

void UdpWorker::flush(UdpSocket& sock) {
  if (gso_ && sock.queued > 1) {
    flushSegmented(sock);
  } else {
    flushPlain(sock, 0);
  }
  sock.queued = 0;
}

// Queries from..queued-1, a datagram per message.
void UdpWorker::flushPlain(UdpSocket& sock, size_t from) {
  size_t done = from;
  while (done < sock.queued) {
    int n = ::sendmmsg(sock.fd.get(), sock.msgs.data() + done,
                       static_cast<unsigned>(sock.queued - done), MSG_DONTWAIT);
    if (n > 0) {
      done += static_cast<size_t>(n);
      r_.counters.sent += static_cast<uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    unsent(sock, done, n < 0 ? errno : EAGAIN);
    return;
  }
}

void UdpWorker::flushSegmented(UdpSocket& sock) {
  size_t m = 0;
  for (size_t b = 0; b < sock.queued; ++m) {
    size_t len = sock.iov[b].iov_len;
    size_t e = b + 1;
    while (e < sock.queued && e - b < kMaxSegments && sock.iov[e].iov_len == len) ++e;
    msghdr& h = sock.runs[m].msg_hdr;
    h = msghdr{};
    h.msg_iov = &sock.iov[b];
    h.msg_iovlen = e - b;
    if (e - b > 1) {
      h.msg_control = &sock.control[m];
      h.msg_controllen = sizeof(SegmentControl);
      cmsghdr* c = CMSG_FIRSTHDR(&h);
      c->cmsg_level = IPPROTO_UDP;  // SOL_UDP
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      auto size = static_cast<uint16_t>(len);
      std::memcpy(CMSG_DATA(c), &size, sizeof size);
    }
    sock.first[m] = b;
    sock.count[m] = e - b;
    b = e;
  }
  size_t done = 0;
  while (done < m) {
    int n = ::sendmmsg(sock.fd.get(), sock.runs.data() + done, static_cast<unsigned>(m - done),
                       MSG_DONTWAIT);
    if (n > 0) {
      for (size_t k = done; k < done + static_cast<size_t>(n); ++k) {
        r_.counters.sent += sock.count[k];
        if (sock.count[k] > 1) r_.counters.segmented += sock.count[k];
      }
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    int err = n < 0 ? errno : EAGAIN;
    if (err == EIO || err == EINVAL || err == ENOPROTOOPT || err == EOPNOTSUPP) {
      // No segmentation offload here (an old kernel, a route through IPsec): never again.
      gso_ = false;
      flushPlain(sock, sock.first[done]);
      return;
    }
    unsent(sock, sock.first[done], err);
    return;
  }
}

// Queries from..queued-1 were not sent: free their slots and put them back in the budget.
void UdpWorker::unsent(UdpSocket& sock, size_t from, int err) {
  for (size_t i = from; i < sock.queued; ++i) sock.table.release(sock.ids[i]);
  budget_ += sock.queued - from;
  if (err == ECONNREFUSED) {
    ++r_.counters.connect;
    refused();
  } else {
    r_.counters.send += sock.queued - from;
  }
}

void UdpWorker::refused() {
  if (!ctx_.shared->any_ready.load(std::memory_order_relaxed)) {
    ctx_.shared->fail(
        fmt::format("{}: connection refused (ICMP port unreachable)", s_.server.toString()));
  }
}

void UdpWorker::refill(UdpSocket& sock) {
  int64_t now = nowNs();
  while (budget_ > 0 && sock.table.inFlight() < s_.outstanding && !sock.table.full()) {
    queue(sock, now);
  }
  if (sock.queued) flush(sock);
}

void UdpWorker::paced(int64_t now) {
  // Everything due now, as one batch per socket; latency counts from each scheduled time.
  uint64_t due = sched_->due(now, std::min<uint64_t>(budget_, s_.batch * socks_.size() * 4));
  uint64_t first = sched_->take(due);
  for (uint64_t k = first; k < first + due; ++k) {
    UdpSocket& sock = *socks_[rr_];
    rr_ = (rr_ + 1) % socks_.size();
    if (sock.table.full()) {
      ++r_.counters.busy;
      --budget_;
      continue;
    }
    queue(sock, sched_->timeOf(k));
  }
  for (auto& sock : socks_) {
    if (sock->queued) flush(*sock);
  }
}

void UdpWorker::receive(UdpSocket& sock) {
  for (int round = 0; round < 8; ++round) {
    for (auto& m : in_msgs_) m.msg_hdr.msg_flags = 0;
    int n = ::recvmmsg(sock.fd.get(), in_msgs_.data(), static_cast<unsigned>(s_.batch),
                       MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno == ECONNREFUSED) {
        ++r_.counters.connect;
        refused();
        continue;
      }
      return;  // EAGAIN (or a transient error): wait for the next readiness
    }
    int64_t now = nowNs();
    for (int i = 0; i < n; ++i) {
      size_t len = std::min<size_t>(in_msgs_[i].msg_len, kMaxAnswer);
      WireView answer(in_.data() + static_cast<size_t>(i) * kMaxAnswer, len);
      if (handleAnswer(answer, sock.table, *ctx_.source.set, now, r_.counters, r_.latency) &&
          !answered_once_) {
        answered_once_ = true;
        ctx_.shared->any_ready.store(true, std::memory_order_relaxed);
      }
    }
    if (static_cast<size_t>(n) < s_.batch) return;
  }
}

WorkerResult UdpWorker::run() {
  if (ctx_.queries > 0) budget_ = ctx_.queries;
  if (!openSockets()) return std::move(r_);
  if (ctx_.qps > 0) sched_.emplace(ctx_.qps, ctx_.start_ns);
  std::vector<epoll_event> events(socks_.size());
  for (;;) {
    int64_t now = nowNs();
    bool active = sending(now);
    int64_t expired_before = now - s_.timeout.count();
    for (auto& sock : socks_) r_.counters.lost += sock->table.expire(expired_before);
    if (active) {
      if (sched_) {
        paced(now);
      } else {
        for (auto& sock : socks_) refill(*sock);
      }
    } else {
      size_t left = 0;
      for (auto& sock : socks_) left += sock->table.inFlight();
      if (left == 0 || ctx_.shared->stop.load(std::memory_order_relaxed)) break;
    }
    publish();

    int64_t wake = now + kMaxWaitNs;
    if (active) {
      wake = std::min(wake, ctx_.end_ns);
      if (sched_) wake = std::min(wake, sched_->nextTime());
    }
    size_t in_flight = 0;
    for (auto& sock : socks_) {
      in_flight += sock->table.inFlight();
      int64_t oldest = sock->table.oldest();
      if (oldest != std::numeric_limits<int64_t>::max()) {
        wake = std::min(wake, oldest + static_cast<int64_t>(s_.timeout.count()) + 1);
      }
    }
    int64_t wait = std::max<int64_t>(0, wake - nowNs());
    // --spin: never sleep while answers are due; a woken thread costs the target a wake-up per
    // batch and the loop a scheduler round trip.
    if (s_.spin && in_flight > 0) wait = 0;
    timespec ts{.tv_sec = static_cast<time_t>(wait / 1'000'000'000),
                .tv_nsec = static_cast<long>(wait % 1'000'000'000)};
    int n =
        ::epoll_pwait2(epoll_.get(), events.data(), static_cast<int>(events.size()), &ts, nullptr);
    for (int i = 0; i < n; ++i) {
      UdpSocket& sock = *socks_[events[i].data.u32];
      receive(sock);
      // Closed loop: the freed slots go straight back out, keeping the socket's window full.
      if (!sched_ && sending(nowNs())) refill(sock);
    }
  }
  // Stopped early (fatal error or signal): what is still in flight is lost.
  for (auto& sock : socks_) r_.counters.lost += sock->table.releaseAll();
  publish();
  return std::move(r_);
}

}  // namespace

WorkerResult runUdpWorker(const WorkerContext& ctx) {
  return UdpWorker(ctx).run();
}

}  // namespace dotproxy::dotload
