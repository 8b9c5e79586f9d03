#pragma once
// One worker: an event loop on its own thread with its own UDP sockets and TCP listeners
// (SO_REUSEPORT), its own TCP clients and its own upstream pool. Nothing is shared with other
// workers on the per-query path but the TCP client count (one atomic).

#include <atomic>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "dotproxy/cache/packet_cache.h"
#include "dotproxy/config/settings.h"
#include "dotproxy/dns/query.h"
#include "dotproxy/metrics/counters.h"
#include "dotproxy/net/event_loop.h"
#include "dotproxy/net/udp.h"
#include "dotproxy/upstream/pool.h"

namespace dotproxy::daemon {

struct ListenSockets {
  net::Fd udp;
  net::Fd tcp;
};

class UdpListener;
class TcpListener;
class TcpClient;

// Who asked: where the answer goes.
struct ClientRef {
  UdpListener* udp = nullptr;  // UDP: the socket the query came in on, and the peer
  net::SocketAddress peer;
  net::PacketInfo local;              // UDP on a wildcard address: where to answer from
  uint64_t tcp_id = 0;                // TCP: the client connection's id (it may be gone by then)
  net::Clock::time_point received{};  // for the answer latency histogram
};

class Worker {
 public:
  // `cache` is shared by all workers (nullptr or disabled: no cache) and outlives them.
  Worker(const config::Settings& settings, std::vector<upstream::Upstream> upstreams,
         std::vector<ListenSockets> sockets, std::atomic<unsigned>& tcp_clients,
         cache::PacketCache* cache);
  ~Worker();

  void run();    // the thread body; returns after drain() completes
  void drain();  // thread-safe: stop accepting, finish in-flight queries within the grace period
  const metrics::Counters& counters() const noexcept { return counters_; }

  // Called by the listeners and clients, on the loop.
  void onQuery(WireView raw, const ClientRef& client);
  // Sends the reply (empty = no answer, a drop) and counts its RCODE and latency.
  void deliver(const ClientRef& client, WireView reply,
               metrics::AnswerSource source = metrics::AnswerSource::Local);
  net::EventLoop& loop() noexcept { return loop_; }
  metrics::Counters& counters() noexcept { return counters_; }
  const config::Settings& settings() const noexcept { return settings_; }
  void addTcpClient(net::Fd fd, const net::SocketAddress& peer);
  void removeTcpClient(uint64_t id);
  // Writes the answers client `id` collected in this round once the round is done.
  void scheduleTcpFlush(uint64_t id);
  bool draining() const noexcept { return draining_; }

 private:
  struct Waiter {
    ClientRef client;
    PacketBuffer raw;
    dns::QueryInfo info;
  };
  struct Inflight {
    std::vector<Waiter> waiters;  // empty for a prefetch
    cache::Key cache_key;
    bool cacheable = false;
  };
  void complete(const std::string& key, Result<upstream::Answer> answer);
  // Sends q upstream unless the same question is in flight; `client` null for a prefetch.
  // Returns whether a query went upstream (false: joined one in flight, or refused).
  bool forward(const dns::QueryInfo& q, WireView raw, const ClientRef* client);
  bool cacheable(const dns::QueryInfo& q) const noexcept;
  bool answerFromCache(const dns::QueryInfo& q, WireView raw, const ClientRef& client,
                       cache::Stale stale);
  void maybeFinishDrain();
  void logQuery(const ClientRef& client, WireView reply, metrics::AnswerSource source);

  config::Settings settings_;
  net::EventLoop loop_;
  metrics::Counters counters_;
  upstream::Pool pool_;
  cache::PacketCache* cache_;
  PacketBuffer scratch_;  // reused for every cache hit: a hit does not allocate
  std::vector<std::unique_ptr<UdpListener>> udp_;
  std::vector<std::unique_ptr<TcpListener>> tcp_listeners_;
  std::unordered_map<uint64_t, std::unique_ptr<TcpClient>> tcp_clients_;
  std::atomic<unsigned>& tcp_client_count_;
  uint64_t next_tcp_id_ = 1;
  uint64_t query_log_seq_ = 0;
  // Identical questions in flight share one upstream query (key: lower-cased name, type, class and
  // the flags that change the answer).
  std::unordered_map<std::string, Inflight> inflight_;
  bool draining_ = false;
};

}  // namespace dotproxy::daemon
