#include "dotproxy/net/udp.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace dotproxy::net {

namespace {

constexpr size_t kControlSize = CMSG_SPACE(sizeof(in6_pktinfo));

bool isWildcard(const SocketAddress& a) {
  if (a.family() == AF_INET6) {
    return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(a.sa())->sin6_addr);
  }
  return reinterpret_cast<const sockaddr_in*>(a.sa())->sin_addr.s_addr == htonl(INADDR_ANY);
}

PacketInfo readPacketInfo(msghdr& h) {
  PacketInfo info;
  for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      in_pktinfo pi;
      std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
      info.family = AF_INET;
      info.ifindex = static_cast<unsigned>(pi.ipi_ifindex);
      info.addr.v4 = pi.ipi_addr;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      in6_pktinfo pi;
      std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
      info.family = AF_INET6;
      info.ifindex = pi.ipi6_ifindex;
      info.addr.v6 = pi.ipi6_addr;
    }
  }
  return info;
}

// Writes the source-address control message for a reply; returns its length (0 if none).
size_t writePacketInfo(const PacketInfo& info, std::byte* control) {
  if (info.family == AF_UNSPEC) return 0;
  msghdr h{};
  h.msg_control = control;
  h.msg_controllen = kControlSize;
  cmsghdr* c = CMSG_FIRSTHDR(&h);
  if (info.family == AF_INET) {
    in_pktinfo pi{};
    pi.ipi_spec_dst = info.addr.v4;  // source address; the route picks the interface
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof pi);
    std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
    return CMSG_SPACE(sizeof pi);
  }
  in6_pktinfo pi{};
  pi.ipi6_addr = info.addr.v6;
  pi.ipi6_ifindex = info.ifindex;  // needed for link-local clients
  c->cmsg_level = IPPROTO_IPV6;
  c->cmsg_type = IPV6_PKTINFO;
  c->cmsg_len = CMSG_LEN(sizeof pi);
  std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
  return CMSG_SPACE(sizeof pi);
}

}  // namespace

void enablePacketInfo(int fd, const SocketAddress& bound) noexcept {
  if (!isWildcard(bound)) return;
  int on = 1;
  if (bound.family() == AF_INET6) {
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on);
  } else {
    ::setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on);
  }
}

struct UdpReceiver::Slot {
  iovec iov;
  sockaddr_storage peer;
  alignas(cmsghdr) std::byte control[kControlSize];
};

UdpReceiver::UdpReceiver(size_t batch, size_t max_datagram)
    : batch_(batch),
      max_datagram_(max_datagram),
      buffers_(batch * max_datagram),
      slots_(std::make_unique<Slot[]>(batch)),
      msgs_(std::make_unique<mmsghdr[]>(batch)) {
  for (size_t i = 0; i < batch_; ++i) {
    slots_[i].iov = {buffers_.data() + i * max_datagram_, max_datagram_};
    msgs_[i] = {};
    msgs_[i].msg_hdr.msg_iov = &slots_[i].iov;
    msgs_[i].msg_hdr.msg_iovlen = 1;
    msgs_[i].msg_hdr.msg_name = &slots_[i].peer;
  }
}

UdpReceiver::~UdpReceiver() = default;

size_t UdpReceiver::receive(int fd) noexcept {
  for (size_t i = 0; i < batch_; ++i) {
    msghdr& h = msgs_[i].msg_hdr;
    h.msg_namelen = sizeof slots_[i].peer;
    h.msg_control = slots_[i].control;
    h.msg_controllen = sizeof slots_[i].control;
    h.msg_flags = 0;
  }
  int got = ::recvmmsg(fd, msgs_.get(), static_cast<unsigned>(batch_), MSG_DONTWAIT, nullptr);
  return got > 0 ? static_cast<size_t>(got) : 0;
}

Datagram UdpReceiver::operator[](size_t i) const noexcept {
  msghdr& h = msgs_[i].msg_hdr;
  return Datagram{.bytes = {buffers_.data() + i * max_datagram_,
                            std::min<size_t>(msgs_[i].msg_len, max_datagram_)},
                  .peer = SocketAddress::fromSockaddr(
                      reinterpret_cast<const sockaddr*>(&slots_[i].peer), h.msg_namelen),
                  .local = readPacketInfo(h),
                  .truncated = (h.msg_flags & MSG_TRUNC) != 0};
}

void UdpSender::queue(const SocketAddress& peer, const PacketInfo& local, WireView wire) {
  if (wire.empty()) return;
  if (used_ == out_.size()) out_.emplace_back();
  Outgoing& o = out_[used_++];
  o.peer = peer;
  o.local = local;
  o.wire.resize(wire.size());
  std::memcpy(o.wire.data(), wire.data(), wire.size());
}

size_t UdpSender::flush(int fd) noexcept {
  constexpr size_t kBatch = 32;
  size_t dropped = 0;
  size_t done = 0;
  while (done < used_) {
    mmsghdr msgs[kBatch];
    iovec iov[kBatch];
    alignas(cmsghdr) std::byte control[kBatch][kControlSize];
    size_t n = std::min(kBatch, used_ - done);
    for (size_t i = 0; i < n; ++i) {
      Outgoing& o = out_[done + i];
      iov[i] = {o.wire.data(), o.wire.size()};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = o.peer.sa();
      msgs[i].msg_hdr.msg_namelen = o.peer.len();
      if (size_t len = writePacketInfo(o.local, control[i]); len > 0) {
        msgs[i].msg_hdr.msg_control = control[i];
        msgs[i].msg_hdr.msg_controllen = len;
      }
    }
    int sent = ::sendmmsg(fd, msgs, static_cast<unsigned>(n), MSG_DONTWAIT);
    if (sent <= 0) {
      ++dropped;  // the first one is refused: skip it and keep the rest going
      ++done;
      continue;
    }
    done += static_cast<size_t>(sent);
  }
  used_ = 0;
  return dropped;
}

}  // namespace dotproxy::net
