#pragma once
// Batched datagram I/O: recvmmsg into a reusable batch, sendmmsg of queued replies. A socket bound
// to a wildcard address (0.0.0.0, ::) learns each datagram's destination address (IP_PKTINFO /
// IPV6_PKTINFO) so that the reply leaves from the address the client asked, as a client expects on
// a host with several addresses.

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "dotproxy/net/socket.h"
#include "dotproxy/wire/buffer.h"

namespace dotproxy::net {

// The local address a datagram arrived on; family AF_UNSPEC when not known (specific bind).
struct PacketInfo {
  sa_family_t family = AF_UNSPEC;
  unsigned ifindex = 0;
  union {
    in_addr v4;
    in6_addr v6;
  } addr{};
};

// Turns on destination-address reporting for a socket bound to a wildcard address; a no-op for a
// specific address. Call once after binding.
void enablePacketInfo(int fd, const SocketAddress& bound) noexcept;

struct Datagram {
  WireView bytes;  // borrowed from the batch until the next receive()
  SocketAddress peer;
  PacketInfo local;
  bool truncated;  // larger than the batch's datagram size (MSG_TRUNC)
};

class UdpReceiver {
 public:
  explicit UdpReceiver(size_t batch = 32, size_t max_datagram = 4096);
  ~UdpReceiver();
  // Receives up to batch() datagrams without blocking; 0 when none is waiting.
  size_t receive(int fd) noexcept;
  Datagram operator[](size_t i) const noexcept;
  size_t batch() const noexcept { return batch_; }

 private:
  struct Slot;
  size_t batch_;
  size_t max_datagram_;
  std::vector<std::byte> buffers_;
  std::unique_ptr<Slot[]> slots_;
  std::unique_ptr<mmsghdr[]> msgs_;  // contiguous, as recvmmsg wants them
};

// Queues replies and sends them in sendmmsg batches. Queued bytes are copied into buffers that are
// kept from batch to batch, so a warm sender does not allocate.
class UdpSender {
 public:
  void queue(const SocketAddress& peer, const PacketInfo& local, WireView wire);
  bool empty() const noexcept { return used_ == 0; }
  // Sends everything queued; a datagram the kernel refuses (buffer full, unreachable) is dropped
  // and counted in the return value.
  size_t flush(int fd) noexcept;

 private:
  struct Outgoing {
    SocketAddress peer;
    PacketInfo local;
    PacketBuffer wire;
  };
  std::vector<Outgoing> out_;  // out_[0, used_) are queued; the rest keep their capacity
  size_t used_ = 0;
};

}  // namespace dotproxy::net
