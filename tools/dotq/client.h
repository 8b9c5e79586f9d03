#pragma once
// One DNS exchange over UDP (retried on timeout, and over TCP when the answer is truncated), TCP or
// DoT: a blocking client with a deadline per try, polling the core's non-blocking sockets.

#include <chrono>
#include <expected>
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

struct Reply {
  PacketBuffer wire;
  dns::Message message;
  Transport transport = Transport::Udp;  // the one that carried the reply (TCP after TC=1)
  bool truncated_udp = false;            // a UDP reply with TC=1 came first
  std::chrono::microseconds elapsed{0};  // of the exchange that gave the reply
  std::string tls_version, tls_cipher;
  bool tls_resumed = false;
};

enum class Failure : uint8_t { Timeout, NoReply, Usage };
struct ExchangeError {
  Failure kind = Failure::NoReply;
  std::string what;  // one line
};

// Sends `query` (whose ID and question the reply must match) and waits for the reply.
std::expected<Reply, ExchangeError> exchange(const ExchangeSettings& settings,
                                             const PacketBuffer& query);

// The server's address: an IP literal, or a host name through getaddrinfo (family AF_UNSPEC,
// AF_INET or AF_INET6).
std::expected<net::SocketAddress, std::string> resolveServer(const std::string& server,
                                                             uint16_t port, int family);

std::string_view transportName(Transport t);

}  // namespace dotproxy::dotq
