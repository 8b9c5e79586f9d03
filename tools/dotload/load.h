#pragma once
// What a run is told (RunSettings), what each worker thread counts (Counters, a Histogram) and the
// little they share (Shared: the stop flag, the first fatal error, counters published for the
// progress line). A worker owns its sockets, slot tables and counters; nothing on the per-query
// path is shared between threads.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "dotproxy/net/socket.h"
#include "dotproxy/tls/tls.h"
#include "histogram.h"
#include "inflight.h"
#include "query_set.h"
#include "zipf.h"

namespace dotproxy::dotload {

enum class Transport : uint8_t { Udp, Tcp, Tls };
std::string_view transportName(Transport t) noexcept;  // "udp", "tcp", "tls"

struct RunSettings {
  Transport transport = Transport::Udp;
  net::SocketAddress server;
  std::string server_text;  // as given, for messages and the default TLS name
  unsigned threads = 1;
  unsigned connections = 4;              // sockets (UDP) or connections (TCP/TLS) per thread
  unsigned outstanding = 100;            // closed loop: in flight per socket/connection
  double qps = 0;                        // open loop when > 0: total rate
  std::chrono::nanoseconds duration{0};  // 0 = until `queries` are sent
  uint64_t queries = 0;                  // 0 = until `duration` ends
  std::chrono::nanoseconds timeout = std::chrono::seconds(2);
  uint64_t reconnect_every = 0;  // TCP/TLS: a new connection after this many queries; 0 = never
  std::string tls_name;
  std::vector<tls::SpkiPin> pins;
  std::vector<int> cpus;  // thread i runs on cpus[i % size]; empty = not pinned
  size_t batch = 64;      // datagrams per sendmmsg/recvmmsg
  bool spin = false;      // UDP: poll without sleeping while queries are in flight
  bool gso = true;        // UDP: equal-sized queries leave with UDP_SEGMENT where the kernel can
};

// Where a worker takes its next query from.
struct QuerySource {
  const QuerySet* set = nullptr;
  const ZipfSampler* zipf = nullptr;  // draw ranks (set holds the ranked names)
};

struct Counters {
  uint64_t sent = 0, answered = 0, lost = 0;
  std::array<uint64_t, 16> rcodes{};  // by the header's 4-bit RCODE
  uint64_t connections = 0, handshakes = 0, resumptions = 0;
  uint64_t segmented = 0;  // UDP: datagrams that left in a message of several (UDP_SEGMENT)
  // errors
  uint64_t connect = 0;    // connections refused or failed; ICMP port unreachable on UDP
  uint64_t tls = 0;        // TLS handshakes failed
  uint64_t mismatch = 0;   // ID not in flight (late, duplicate, foreign) or another question
  uint64_t malformed = 0;  // shorter than a header, QR=0, or an empty frame
  uint64_t truncated = 0;  // TC=1 answers (counted as answered too)
  uint64_t closed = 0;     // connections closed or reset by the server with queries in flight
  uint64_t send = 0;       // sends the kernel refused (buffer full), queries not sent
  uint64_t busy = 0;       // open loop: query due but every ID of its socket in flight

  void add(const Counters& o) noexcept;
};

struct WorkerResult {
  Counters counters;
  Histogram latency;  // nanoseconds
};

// Counters copied out by each worker as it goes (plain stores of its own values), read by the
// progress line.
struct Published {
  std::atomic<uint64_t> sent{0}, answered{0}, lost{0};
};

class Shared {
 public:
  std::atomic<bool> stop{false};
  std::atomic<bool> any_ready{false};  // some connection (or answer) has succeeded
  // Records the first fatal error (target unusable) and stops the run.
  void fail(std::string message);
  std::optional<std::string> fatal() const;

 private:
  mutable std::mutex mutex_;
  std::optional<std::string> fatal_;
};

// Nanoseconds on the steady clock.
inline int64_t nowNs() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct WorkerContext {
  unsigned index = 0;
  const RunSettings* settings = nullptr;
  QuerySource source;
  const tls::ClientContext* tls = nullptr;  // TLS only
  Shared* shared = nullptr;
  Published* published = nullptr;
  uint64_t queries = 0;  // this thread's share of -n (0 = unbounded)
  double qps = 0;        // this thread's share of -Q
  int64_t start_ns = 0;
  int64_t end_ns = 0;  // INT64_MAX when bounded by -n only
};

// Per-thread query picking: file order (from a per-thread offset), Zipf ranks or unique names.
class QueryPicker {
 public:
  QueryPicker(const QuerySource& src, unsigned thread);
  struct Pick {
    uint32_t index = 0;   // into the QuerySet
    uint64_t unique = 0;  // the random label's value (random sets only)
  };
  Pick next() noexcept;

 private:
  QuerySource src_;
  Rng rng_;
  uint32_t cursor_ = 0;
  uint64_t thread_bits_ = 0;
  uint64_t counter_ = 0;
};

WorkerResult runUdpWorker(const WorkerContext& ctx);
WorkerResult runStreamWorker(const WorkerContext& ctx);

// Checks one answer against the slots of its socket/connection and counts it: malformed (short,
// QR=0), mismatch (ID not in flight, other question), else answered with its RCODE and latency
// (now_ns - the slot's send time) and the slot freed. Returns true if it was answered.
bool handleAnswer(WireView answer, Inflight& table, const QuerySet& set, int64_t now_ns,
                  Counters& c, Histogram& latency) noexcept;

}  // namespace dotproxy::dotload
