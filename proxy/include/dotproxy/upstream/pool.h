#pragma once
// The upstream side of one worker: persistent, pipelined DoT connections to a list of upstreams,
// answers matched by ID and question in any order, retry on another connection or upstream, health
// with backoff. Single-threaded: every call and callback runs on the worker's event loop.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "dotproxy/dns/name.h"
#include "dotproxy/dns/query.h"
#include "dotproxy/metrics/counters.h"
#include "dotproxy/net/event_loop.h"
#include "dotproxy/net/socket.h"
#include "dotproxy/tls/tls.h"
#include "dotproxy/util/result.h"
#include "dotproxy/wire/buffer.h"

namespace dotproxy::upstream {

using std::chrono::milliseconds;

struct Upstream {
  net::SocketAddress address;
  std::string tls_name;                     // SNI and verified name; empty = verify the IP address
  std::vector<tls::SpkiPin> pins;           // empty = no pinning
  const tls::ClientContext* ctx = nullptr;  // not owned; outlives the pool
  std::string label() const;                // "1.1.1.1:853#cloudflare-dns.com"
};

struct PoolSettings {
  milliseconds attempt_timeout{700};
  milliseconds connect_timeout{1'000};
  milliseconds idle_timeout{10'000};
  unsigned connections_per_upstream = 1;
  unsigned max_inflight_per_connection = 100;
  milliseconds backoff_initial{250};
  milliseconds backoff_max{10'000};
};

// What the pool sends and how it recognises the answer. `wire` is the complete upstream query; the
// pool patches a fresh random ID into it for every send.
struct Question {
  PacketBuffer wire;
  dns::Name qname;
  uint16_t qtype = 0;
  uint16_t qclass = 0;
};

struct Answer {
  PacketBuffer wire;  // validated: parses, matches the question
  dns::ResponseInfo info;
};

// Called exactly once, on the loop: the answer, or Timeout / NoUpstream.
using Completion = std::move_only_function<void(Result<Answer>)>;

class Pool {
 public:
  // Sizes counters.upstreams to the upstream list (per-upstream counters, in the same order).
  Pool(net::EventLoop& loop, std::vector<Upstream> upstreams, const PoolSettings& settings,
       metrics::Counters& counters);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Resolves q before `deadline`: sends it on the best connection, retries once elsewhere after an
  // attempt timeout or a connection failure, then gives up with Timeout (or NoUpstream when every
  // upstream is backing off).
  void resolve(Question q, net::Clock::time_point deadline, Completion done);

  // Opens one connection to every upstream that has none, so that the first query does not wait
  // for a handshake and readiness (metrics::Counters::upstreams_usable) is known before traffic.
  void preconnect();

  // Closes every connection; outstanding requests complete with Timeout. For shutdown.
  void close();
  size_t inflight() const noexcept { return requests_.size(); }

  struct Request;
  class Connection;
  struct Health;

 private:
  friend class Connection;
  void attempt(uint64_t request_id);
  void onAttemptTimeout(uint64_t request_id, uint64_t conn_id, uint16_t qid);
  void onAnswer(Connection& c, uint64_t request_id, Answer answer);
  void onAttemptFailed(uint64_t request_id, uint64_t conn_id, uint16_t qid, Errc why);
  void finish(uint64_t request_id, Result<Answer> result);
  void onConnectionUp(Connection& c);
  void onConnectionDown(Connection& c, Errc why, bool was_up, bool lost_queries);
  // Takes the upstream out of rotation for backoff_initial * 2^(strikes-1) (capped), and logs it
  // once: a failed connection attempt, or connections broken one after another.
  void backOff(size_t upstream, unsigned strikes, Errc why, const std::string& failure);
  Connection* pickConnection(size_t upstream_index, const Request& r);
  Connection* open(size_t upstream_index);  // nullptr if the socket could not be created
  metrics::UpstreamCounters& perUpstream(size_t i) noexcept { return counters_.upstreams[i]; }
  int pickUpstream(const Request& r);
  void drainWaiting();

  net::EventLoop& loop_;
  std::vector<Upstream> upstreams_;
  std::vector<Health> health_;
  PoolSettings settings_;
  metrics::Counters& counters_;
  std::unordered_map<uint64_t, std::unique_ptr<Request>> requests_;
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections_;
  std::vector<tls::Session> sessions_;  // per upstream, for resumption
  std::deque<uint64_t> waiting_;        // request ids waiting for room on a connection
  bool draining_waiting_ = false;
  uint64_t next_request_ = 1;
  uint64_t next_connection_ = 1;
  size_t rr_ = 0;
};

}  // namespace dotproxy::upstream
