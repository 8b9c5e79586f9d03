#pragma once
// The answer cache: sharded, bounded by a byte budget, scan-resistant eviction, RFC 2308 negative
// caching, RFC 8767 serve-stale, and prefetch of popular entries near expiry. Thread-safe: one lock
// per shard, held only to find an entry and copy its bytes out (Guarded<Shard>: no unlocked
// access).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "dotproxy/dns/name.h"
#include "dotproxy/dns/query.h"
#include "dotproxy/wire/buffer.h"

namespace dotproxy::cache {

using Clock = std::chrono::steady_clock;
using std::chrono::seconds;

struct CacheSettings {
  size_t max_bytes = size_t{64} << 20;  // entry bytes plus index overhead; 0 turns the cache off
  unsigned shards = 16;
  seconds min_ttl{0};  // clamps on the TTL an entry lives for
  seconds max_ttl{86400};
  seconds negative_max_ttl{3600};  // cap for NXDOMAIN / NODATA (RFC 2308 section 5)
  seconds servfail_ttl{5};         // upstream SERVFAIL, cached briefly (RFC 2308 section 7)
  seconds stale_max_age{86400};    // RFC 8767: serve an expired entry up to this long; 0 = never
  seconds stale_ttl{30};           // TTL of a stale answer (RFC 8767 section 4)
  unsigned prefetch_percent = 10;  // refresh a popular entry in the last N% of its TTL; 0 = off
};

// (case-folded qname, qtype, qclass, DO, CD): answers for DNSSEC-aware and plain clients, and
// for checking and non-checking ones, never mix.
struct Key {
  dns::Name name;  // lower-cased
  uint16_t qtype = 0;
  uint16_t qclass = 0;
  bool do_bit = false;
  bool cd = false;
  uint64_t hash = 0;
  bool operator==(const Key& o) const noexcept;
};
Key makeKey(const dns::QueryInfo& q) noexcept;

enum class Stale : bool { Refuse, Serve };

struct Hit {
  bool stale = false;     // served past its expiry (RFC 8767)
  bool prefetch = false;  // popular and in the last prefetch_percent of its TTL: refresh it now
                          // (reported once per entry until it is replaced)
};

struct CacheStats {
  size_t entries = 0;
  size_t bytes = 0;
  uint64_t evictions = 0;
};

class PacketCache {
 public:
  explicit PacketCache(const CacheSettings& settings);
  ~PacketCache();
  PacketCache(const PacketCache&) = delete;
  PacketCache& operator=(const PacketCache&) = delete;

  bool enabled() const noexcept;

  // Stores a validated upstream answer for key (info is what dns::parseResponse said of it).
  // Decides itself what may be cached and for how long: not TC answers, not opcodes other than
  // QUERY, not RCODEs other than NOERROR / NXDOMAIN / SERVFAIL; positive answers for their smallest
  // TTL, negative ones per RFC 2308 (SOA TTL and MINIMUM), all within the clamps. Returns whether
  // it was stored.
  bool insert(const Key& key, WireView answer, const dns::ResponseInfo& info,
              Clock::time_point now);

  // On a hit, writes the client's reply into `out` (reusing its capacity: no allocation once warm):
  // the client's ID, RD and question spelling, every TTL reduced by the time spent in the cache
  // (never below 0; OPT untouched as an RR), our OPT when the client sent EDNS (udp size
  // our_udp_size, DO as the client's), truncated with TC=1 past max_size — exactly what
  // dns::buildClientReply makes of a fresh answer. An expired entry is a miss unless stale ==
  // Stale::Serve and it expired less than stale_max_age ago; then its TTLs are stale_ttl.
  std::optional<Hit> lookup(const Key& key, const dns::QueryInfo& q, WireView raw_query,
                            size_t max_size, uint16_t our_udp_size, Clock::time_point now,
                            Stale stale, PacketBuffer& out);

  // A refresh that Hit.prefetch asked for did not bring a new answer: the next hit in the window
  // may ask again.
  void prefetchFailed(const Key& key);

  CacheStats stats() const;

 private:
  struct Shard;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dotproxy::cache
