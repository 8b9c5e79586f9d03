#pragma once
// One DNS exchange over UDP (retried on timeout, and over TCP when the answer is truncated), TCP or
// DoT, or several queries pipelined over one TCP or DoT connection (+keepopen): a blocking client
// with a deadline per try, polling the core's non-blocking sockets.

#include <chrono>
#include <expected>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "dotproxy/dns/message.h"
#include "dotproxy/net/socket.h"
#include "dotproxy/wire/buffer.h"
#include "options.h"

namespace dotproxy::dotq {

struct ExchangeSettings {
  net::SocketAddress server;
  std::string server_text;  // as the user gave it; the default TLS name
  Transport transport = Transport::Udp;
  TlsOptions tls;
  std::chrono::milliseconds timeout{5000};
  unsigned retry = 2;
};

// +stats: where the time of one exchange went, measured with steady_clock around the socket steps.
// connect: from connect() to the socket being writable (0 over UDP); tls_handshake: from then to
// the end of the handshake (0 without TLS); first_byte: from the query's last byte written to the
// first byte of its reply read; total: from the first step to the whole reply read. So
// connect + tls_handshake + first_byte <= total.
struct Timings {
  std::chrono::microseconds connect{0}, tls_handshake{0}, first_byte{0}, total{0};
};

// +keepopen: where a reply came in the stream of replies on one connection.
struct PipelineSlot {
  size_t query = 0;   // 1-based position of the query on the command line (and on the wire)
  size_t answer = 0;  // 1-based position of this reply in arrival order
  size_t of = 0;      // queries sent on the connection
};

struct Reply {
  PacketBuffer wire;
  dns::Message message;
  Transport transport = Transport::Udp;  // the one that carried the reply (TCP after TC=1)
  bool truncated_udp = false;            // a UDP reply with TC=1 came first
  std::chrono::microseconds elapsed{0};  // of the exchange that gave the reply
  std::string tls_version, tls_cipher;
  bool tls_resumed = false;
  Timings timings;
  std::optional<PipelineSlot> pipeline;  // set for +keepopen replies
};

enum class Failure : uint8_t { Timeout, NoReply, Usage };
struct ExchangeError {
  Failure kind = Failure::NoReply;
  std::string what;  // one line
};

// Sends `query` (whose ID and question the reply must match) and waits for the reply.
std::expected<Reply, ExchangeError> exchange(const ExchangeSettings& settings,
                                             const PacketBuffer& query);

// +keepopen: opens one TCP or DoT connection (settings.transport; UDP means TCP), writes every
// query before reading, and calls on_result(i, reply) for each reply as it arrives (matched to
// query i by ID and question, in whatever order the server answers). Queries left unanswered at
// the deadline, or when the connection fails, get on_result(i, error) once each, in query order.
using PipelineResult = std::function<void(size_t, std::expected<Reply, ExchangeError>)>;
void exchangePipelined(const ExchangeSettings& settings, std::span<const PacketBuffer> queries,
                       const PipelineResult& on_result);

// The server's address: an IP literal, or a host name through getaddrinfo (family AF_UNSPEC,
// AF_INET or AF_INET6).
std::expected<net::SocketAddress, std::string> resolveServer(const std::string& server,
                                                             uint16_t port, int family);

std::string_view transportName(Transport t);

}  // namespace dotproxy::dotq
