#include "dotproxy/cache/packet_cache.h"

#include <sys/random.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <new>

#include "dotproxy/util/guarded.h"
#include "dotproxy/wire/reader.h"

// Layout and policy, in short:
//
// - Eviction is SIEVE (Zhang et al., "SIEVE is Simpler than LRU", NSDI 2024): one FIFO queue per
//   shard, a visited bit per entry set by hits (no list move, so a hit only writes a bit it
//   already owns), and a hand that walks from the oldest entry towards the newest, clearing
//   visited bits and evicting the first entry that was not visited since the hand last passed.
//   New entries start unvisited, so a sweep of names seen once is evicted as the hand meets it
//   while the popular set, hit between two passes of the hand, stays: scan resistance that LRU
//   lacks, with LRU's hit ratio or better on web/DNS traces, and no second queue or ghost list to
//   size as S3-FIFO has.
// - Each entry is one malloc: the Entry fields, then its blob (see Entry). The budget counts the
//   malloc chunk (glibc: size + 8 rounded up to 16, at least 32) of every entry plus each shard's
//   index arrays; the fixed per-shard structs (a few hundred bytes in all) are not counted.
// - The index is an open-addressing table per shard (linear probing, backward-shift deletion, at
//   most 3/4 full) of entry pointers with a parallel array of 1-byte tags (7 hash bits), so a
//   probe rarely touches an entry that does not match. The first insert creates it; it doubles only
//   while the budget allows; when it may not grow, the insert evicts instead.
// - Lookup holds the shard lock to find the entry, update its visited bit and hit count, and
//   memcpy its blob into `out`. ID, RD, question spelling, TTLs, OPT and truncation are patched
//   afterwards, outside the lock, into `out` only.

namespace dotproxy::cache {

namespace {

constexpr size_t kTtlFieldBack = 6;          // a TTL field starts 6 bytes before the rdata
constexpr size_t kMinShardBytes = 16 << 10;  // smaller budgets use fewer shards
constexpr size_t kMaxShards = 1024;
constexpr size_t kInitialSlots = 16;
constexpr uint8_t kOpcodeQuery = 0;

uint64_t fmix64(uint64_t h) noexcept {  // MurmurHash3 finalizer
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

// A fast multiply-rotate hash over the name, eight bytes at a time, finished with an avalanche;
// a process-local value (byte order does not matter).
// A secret per process: names crafted offline to share a slot (long probe chains under the shard
// lock) collide only by chance here.
uint64_t processSeed() noexcept {
  uint64_t seed = 0;
  if (::getrandom(&seed, sizeof seed, 0) != sizeof seed) {
    seed = static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  }
  return seed | 1;
}
const uint64_t kSeed = processSeed();

uint64_t hashKey(WireView name, uint16_t qtype, uint16_t qclass, bool do_bit, bool cd) noexcept {
  constexpr uint64_t kMul = 0x9e3779b97f4a7c15ULL;
  uint64_t h = kSeed ^ name.size();
  const std::byte* p = name.data();
  size_t n = name.size();
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    h = std::rotl((h ^ v) * kMul, 29);
  }
  uint64_t tail = 0;
  if (n > 0) std::memcpy(&tail, p, n);
  h = std::rotl((h ^ tail) * kMul, 29);
  h ^= (uint64_t{qtype} << 32) | (uint64_t{qclass} << 16) | (uint64_t{do_bit} << 1) | uint64_t{cd};
  return fmix64((h * kMul) ^ kSeed);
}

// glibc malloc's chunk for a request of n bytes: n + 8 rounded up to 16, at least 32.
size_t mallocCost(size_t n) noexcept {
  return std::max<size_t>(32, (n + 8 + 15) & ~size_t{15});
}

uint32_t wireTtl(uint32_t ttl) noexcept {
  return (ttl & 0x80000000u) ? 0 : ttl;
}  // RFC 2181 8

uint32_t toSeconds(seconds s) noexcept {
  return static_cast<uint32_t>(std::clamp<seconds::rep>(s.count(), 0, UINT32_MAX));
}

// One cached answer: these fields, then in the same allocation its blob:
//   [0, body_len)              the upstream answer without its OPT: header (ARCOUNT not counting
//                              the OPT), question in lower case, answer/authority/additional
//                              records at their upstream offsets (compression pointers stay valid)
//   [body_len, +opt_len)       our OPT for the reply (dns::appendClientOpt: the upstream's
//                              extended RCODE and EDE options); udp size and DO are set per hit
//   [.., +2 * ttl_count)       big-endian offsets of every TTL field in the body (never OPT's);
//                              the original TTLs are the body's own
struct Entry {
  Entry* newer = nullptr;  // SIEVE queue: towards the head (most recent insert)
  Entry* older = nullptr;  // towards the tail
  uint64_t hash = 0;
  Clock::rep inserted = 0;
  uint32_t lifetime = 0;  // seconds
  uint16_t qtype = 0;
  uint16_t qclass = 0;
  uint16_t body_len = 0;
  uint16_t opt_len = 0;
  uint16_t ttl_count = 0;
  uint8_t name_len = 0;
  bool do_bit = false;
  bool cd = false;
  bool visited = false;
  bool prefetched = false;
  uint8_t hits = 0;  // saturating

  std::byte* blob() noexcept { return reinterpret_cast<std::byte*>(this + 1); }
  const std::byte* blob() const noexcept { return reinterpret_cast<const std::byte*>(this + 1); }
  size_t blobSize() const noexcept { return size_t{body_len} + opt_len + 2 * size_t{ttl_count}; }
  size_t cost() const noexcept { return mallocCost(sizeof(Entry) + blobSize()); }
  size_t questionEnd() const noexcept { return dns::kHeaderSize + name_len + 4; }

  bool matches(const Key& k) const noexcept {
    return hash == k.hash && qtype == k.qtype && qclass == k.qclass && do_bit == k.do_bit &&
           cd == k.cd && name_len == k.name.wireSize() &&
           std::memcmp(blob() + dns::kHeaderSize, k.name.wire().data(), name_len) == 0;
  }
};

void freeEntry(Entry* e) noexcept {
  if (e == nullptr) return;
  e->~Entry();
  std::free(e);
}

// Open addressing with linear probing over entry pointers, plus a tag byte per slot: 0 = empty,
// else 0x80 | 7 bits of the hash. Positions use the low hash bits, shards the high ones.
class Index {
 public:
  static constexpr size_t kNone = SIZE_MAX;
  static constexpr size_t kSlotBytes = sizeof(Entry*) + 1;

  bool init(size_t slots) noexcept {
    tags_.reset(new (std::nothrow) uint8_t[slots]());
    slots_.reset(new (std::nothrow) Entry*[slots]());
    if (!tags_ || !slots_) {
      tags_.reset();
      slots_.reset();
      mask_ = 0;
      return false;
    }
    mask_ = slots - 1;
    count_ = 0;
    return true;
  }

  size_t capacity() const noexcept { return slots_ ? mask_ + 1 : 0; }
  size_t bytes() const noexcept { return capacity() * kSlotBytes; }
  size_t size() const noexcept { return count_; }
  bool full() const noexcept { return (count_ + 1) * 4 > capacity() * 3; }
  Entry* at(size_t i) const noexcept { return slots_[i]; }

  size_t find(const Key& k) const noexcept {
    if (!slots_) return kNone;
    const uint8_t tag = tagOf(k.hash);
    for (size_t i = k.hash & mask_;; i = (i + 1) & mask_) {
      const uint8_t t = tags_[i];
      if (t == 0) return kNone;
      if (t == tag && slots_[i]->matches(k)) return i;
    }
  }

  size_t slotOf(const Entry* e) const noexcept {
    for (size_t i = e->hash & mask_;; i = (i + 1) & mask_) {
      if (slots_[i] == e) return i;
      if (tags_[i] == 0) return kNone;
    }
  }

  // The caller ensures !full().
  void insert(Entry* e) noexcept {
    size_t i = e->hash & mask_;
    while (tags_[i] != 0) i = (i + 1) & mask_;
    tags_[i] = tagOf(e->hash);
    slots_[i] = e;
    ++count_;
  }

  // Backward-shift deletion: later members of the probe run move up so no tombstones remain.
  void eraseAt(size_t i) noexcept {
    for (size_t j = (i + 1) & mask_; tags_[j] != 0; j = (j + 1) & mask_) {
      const size_t home = slots_[j]->hash & mask_;
      if (((j - home) & mask_) >= ((j - i) & mask_)) {
        tags_[i] = tags_[j];
        slots_[i] = slots_[j];
        i = j;
      }
    }
    tags_[i] = 0;
    slots_[i] = nullptr;
    --count_;
  }

  size_t nextCapacity() const noexcept { return slots_ ? 2 * capacity() : kInitialSlots; }
  size_t growthBytes() const noexcept { return (nextCapacity() - capacity()) * kSlotBytes; }

  // Creates or doubles the table; false (table unchanged) if memory is short.
  bool grow() noexcept {
    Index bigger;
    if (!bigger.init(nextCapacity())) return false;
    for (size_t i = 0; i < capacity(); ++i) {
      if (tags_[i] != 0) bigger.insert(slots_[i]);
    }
    *this = std::move(bigger);
    return true;
  }

 private:
  static uint8_t tagOf(uint64_t hash) noexcept {
    return static_cast<uint8_t>(0x80 | ((hash >> 24) & 0x7f));
  }

  std::unique_ptr<uint8_t[]> tags_;
  std::unique_ptr<Entry*[]> slots_;
  size_t mask_ = 0;
  size_t count_ = 0;
};

// What lookup copies out of an entry under the lock.
struct EntryView {
  size_t body_len = 0;
  size_t opt_len = 0;
  size_t ttl_count = 0;
  size_t question_end = 0;
};

}  // namespace

bool Key::operator==(const Key& o) const noexcept {
  return hash == o.hash && qtype == o.qtype && qclass == o.qclass && do_bit == o.do_bit &&
         cd == o.cd && name == o.name;
}

Key makeKey(const dns::QueryInfo& q) noexcept {
  Key k{.name = q.qname.lowered(),  // built in place: a Name is 256 bytes
        .qtype = q.qtype,
        .qclass = q.qclass,
        .do_bit = q.edns.present && q.edns.do_bit,
        .cd = q.header.cd()};
  k.hash = hashKey(k.name.wire(), k.qtype, k.qclass, k.do_bit, k.cd);
  return k;
}

struct PacketCache::Shard {
  Index index;
  Entry* head = nullptr;  // newest
  Entry* tail = nullptr;  // oldest
  Entry* hand = nullptr;  // SIEVE hand; null = start at the tail
  size_t entry_bytes = 0;
  uint64_t evictions = 0;

  Shard() = default;
  ~Shard() {
    for (Entry* e = head; e != nullptr;) {
      Entry* next = e->older;
      freeEntry(e);
      e = next;
    }
  }
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  size_t bytes() const noexcept { return entry_bytes + index.bytes(); }

  void pushHead(Entry* e) noexcept {
    e->older = head;
    e->newer = nullptr;
    if (head != nullptr) head->newer = e;
    head = e;
    if (tail == nullptr) tail = e;
  }

  // Unlinks e from the queue and the index (slot = its index slot, or kNone to search for it).
  void remove(Entry* e, size_t slot) noexcept {
    if (hand == e) hand = e->newer;
    (e->newer != nullptr ? e->newer->older : head) = e->older;
    (e->older != nullptr ? e->older->newer : tail) = e->newer;
    if (slot == Index::kNone) slot = index.slotOf(e);
    if (slot != Index::kNone) index.eraseAt(slot);
    entry_bytes -= e->cost();
  }

  // SIEVE: from the hand towards the head (wrapping to the tail), clear visited bits until an
  // unvisited entry turns up; evict it and leave the hand at its newer neighbour.
  void evictOne() noexcept {
    Entry* e = hand != nullptr ? hand : tail;
    if (e == nullptr) return;
    while (e->visited) {
      e->visited = false;
      e = e->newer != nullptr ? e->newer : tail;
    }
    remove(e, Index::kNone);  // moves the hand to e->newer
    hand = e->newer;
    ++evictions;
    freeEntry(e);
  }
};

struct PacketCache::Impl {
  struct alignas(64) PaddedShard {  // a cache line per lock: no false sharing between shards
    Guarded<Shard> shard;
  };

  CacheSettings settings;
  size_t shard_budget = 0;
  size_t shard_count = 0;
  std::unique_ptr<PaddedShard[]> shards;

  Guarded<Shard>& shardFor(uint64_t hash) noexcept {
    return shards[((hash >> 32) * shard_count) >> 32].shard;
  }

  // How long an answer may live, in seconds; 0 = not cacheable.
  uint32_t lifetime(const dns::ResponseInfo& info, uint32_t min_ttl, uint32_t answer_min_ttl,
                    std::optional<uint32_t> soa_negative) const noexcept;
};

PacketCache::PacketCache(const CacheSettings& settings) {
  if (settings.max_bytes == 0) return;
  impl_ = std::make_unique<Impl>();
  impl_->settings = settings;
  size_t n = std::clamp<size_t>(settings.shards, 1, kMaxShards);
  n = std::min(n, std::max<size_t>(1, settings.max_bytes / kMinShardBytes));
  impl_->shard_count = n;
  impl_->shard_budget = settings.max_bytes / n;
  impl_->shards = std::make_unique<Impl::PaddedShard[]>(n);
}

PacketCache::~PacketCache() = default;

bool PacketCache::enabled() const noexcept {
  return impl_ != nullptr;
}

uint32_t PacketCache::Impl::lifetime(const dns::ResponseInfo& info, uint32_t min_ttl,
                                     uint32_t answer_min_ttl,
                                     std::optional<uint32_t> soa_negative) const noexcept {
  const CacheSettings& s = settings;
  const uint32_t floor = toSeconds(s.min_ttl);
  const uint32_t cap = toSeconds(s.max_ttl);
  const uint16_t rcode = info.rcode();
  uint32_t life = 0;
  if (rcode == static_cast<uint16_t>(dns::Rcode::ServFail)) {
    life = toSeconds(s.servfail_ttl);  // RFC 2308 7.1: briefly, whatever the clamps say
  } else if (rcode == static_cast<uint16_t>(dns::Rcode::NoError) && info.header.ancount > 0) {
    life = std::min(min_ttl, cap);
    // An SOA in the authority section makes part of the answer negative (a CNAME to a name
    // without the type): the SOA rule bounds it too (RFC 2308 section 5).
    if (soa_negative) life = std::min({life, *soa_negative, toSeconds(s.negative_max_ttl)});
    life = std::max(life, floor);
  } else if (rcode == static_cast<uint16_t>(dns::Rcode::NxDomain) ||
             rcode == static_cast<uint16_t>(dns::Rcode::NoError)) {
    // RFC 2308 5: min(SOA TTL, SOA MINIMUM). Without an SOA there is nothing to say how long the
    // negative answer holds: not cached (RFC 2308 5 "SHOULD NOT be cached"). A CNAME chain in
    // front of an NXDOMAIN must not outlive its own TTLs either.
    if (!soa_negative) return 0;
    life = std::min(*soa_negative, answer_min_ttl);
    life = std::min({life, toSeconds(s.negative_max_ttl), cap});
    life = std::max(life, floor);
  }
  return life;
}

bool PacketCache::insert(const Key& key, WireView answer, const dns::ResponseInfo& info,
                         Clock::time_point now) {
  if (!impl_) return false;
  const dns::Header& h = info.header;
  if (h.tc() || h.opcode() != kOpcodeQuery || !h.qr()) return false;
  if (info.qtype != key.qtype || info.qclass != key.qclass ||
      !info.qname.equalsIgnoreCase(key.name))
    return false;
  const size_t body_end = info.opt_offset != 0 ? info.opt_offset : info.end;
  const size_t qend = dns::kHeaderSize + key.name.wireSize() + 4;
  if (info.question_end != qend || body_end < qend || info.end > answer.size() ||
      body_end > UINT16_MAX) {
    return false;
  }

  // One walk: TTL offsets, the smallest TTLs, the SOA for negative answers.
  PacketBuffer blob;
  blob.reserve(body_end + 64 + 2 * (size_t{h.ancount} + h.nscount + h.arcount));
  blob.append(answer.first(body_end));
  uint32_t min_ttl = UINT32_MAX;
  uint32_t answer_min_ttl = UINT32_MAX;
  std::optional<uint32_t> soa_negative;
  PacketBuffer offsets;
  WireReader r(answer.first(info.end));
  r.seek(info.question_end);
  const uint16_t counts[3] = {h.ancount, h.nscount, h.arcount};
  for (size_t s = 0; s < 3; ++s) {
    for (unsigned i = 0; i < counts[s]; ++i) {
      const dns::RecordHead rr = dns::readRecordHead(r);
      if (!r.ok()) return false;
      if (rr.type == dns::type::OPT) continue;  // the upstream's; ours is built separately
      const uint32_t ttl = wireTtl(rr.ttl);
      min_ttl = std::min(min_ttl, ttl);
      if (s == 0) answer_min_ttl = std::min(answer_min_ttl, ttl);
      // SOA rdata ends with MINIMUM (parseResponse checked that its names end 20 bytes before).
      if (s == 1 && rr.type == dns::type::SOA && !soa_negative && rr.rdlength >= 22) {
        const uint32_t minimum =
            wireTtl(loadU32(answer.data() + rr.rdata_offset + rr.rdlength - 4));
        soa_negative = std::min(ttl, minimum);
      }
      const size_t at = rr.rdata_offset - kTtlFieldBack;
      if (at >= body_end) return false;
      const std::byte be[2] = {static_cast<std::byte>(at >> 8), static_cast<std::byte>(at & 0xff)};
      offsets.append(be);
    }
  }
  if (r.pos() != info.end) return false;
  const uint32_t life = impl_->lifetime(info, min_ttl, answer_min_ttl, soa_negative);
  if (life == 0) return false;
  // The caps bind what clients are told too, not only how long we keep the entry: the stored copy
  // holds the TTLs a fresh reply gives (dns::clientTtl, the same rule as the worker's).
  const uint32_t ttl_cap =
      dns::ttlCap(info, {.max_ttl = toSeconds(impl_->settings.max_ttl),
                         .negative_max_ttl = toSeconds(impl_->settings.negative_max_ttl)});
  for (size_t i = 0; i + 1 < offsets.size(); i += 2) {
    std::byte* ttl_at = blob.data() + loadU16(offsets.data() + i);
    storeU32(ttl_at, dns::clientTtl(loadU32(ttl_at), ttl_cap));
  }

  // Canonical body: question in lower case (every hit writes the client's spelling over it),
  // ARCOUNT without the upstream's OPT.
  std::memcpy(blob.data() + dns::kHeaderSize, key.name.wire().data(), key.name.wireSize());
  if (info.opt_offset != 0) storeU16(blob.data() + 10, static_cast<uint16_t>(h.arcount - 1));
  const size_t body_len = blob.size();
  dns::appendClientOpt(blob, answer, info, 0, false);
  const size_t opt_len = blob.size() - body_len;
  const size_t ttl_count = offsets.size() / 2;
  blob.append(offsets);
  if (opt_len > UINT16_MAX || ttl_count > UINT16_MAX) return false;

  void* mem = std::malloc(sizeof(Entry) + blob.size());
  if (mem == nullptr) return false;
  Entry* e = new (mem) Entry;
  e->hash = key.hash;
  e->inserted = now.time_since_epoch().count();
  e->lifetime = life;
  e->qtype = key.qtype;
  e->qclass = key.qclass;
  e->body_len = static_cast<uint16_t>(body_len);
  e->opt_len = static_cast<uint16_t>(opt_len);
  e->ttl_count = static_cast<uint16_t>(ttl_count);
  e->name_len = static_cast<uint8_t>(key.name.wireSize());
  e->do_bit = key.do_bit;
  e->cd = key.cd;
  std::memcpy(e->blob(), blob.data(), blob.size());
  const size_t cost = e->cost();

  Entry* replaced = nullptr;
  bool stored = false;
  {
    auto shard = impl_->shardFor(key.hash).lock();
    const size_t budget = impl_->shard_budget;
    // An answer too large for the shard leaves the entry it would have replaced in place.
    if (cost + shard->index.bytes() <= budget) {
      if (const size_t slot = shard->index.find(key); slot != Index::kNone) {
        replaced = shard->index.at(slot);
        shard->remove(replaced, slot);
      }
      if (shard->index.full()) {
        const size_t growth = shard->index.growthBytes();
        if (shard->bytes() + growth + cost > budget || !shard->index.grow()) {
          shard->evictOne();  // keep the table as it is: make room in it instead
        }
      }
      while (shard->bytes() + cost > budget && shard->tail != nullptr) shard->evictOne();
      if (shard->bytes() + cost <= budget && !shard->index.full()) {
        shard->pushHead(e);
        shard->index.insert(e);
        shard->entry_bytes += cost;
        stored = true;
      }
    }
  }
  freeEntry(replaced);
  if (!stored) freeEntry(e);
  return stored;
}

std::optional<Hit> PacketCache::lookup(const Key& key, const dns::QueryInfo& q, WireView raw_query,
                                       size_t max_size, uint16_t our_udp_size,
                                       Clock::time_point now, Stale stale, PacketBuffer& out) {
  if (!impl_) return std::nullopt;
  const CacheSettings& s = impl_->settings;
  Hit hit;
  EntryView v;
  Clock::duration age{};
  Entry* dead = nullptr;
  {
    auto shard = impl_->shardFor(key.hash).lock();
    const size_t slot = shard->index.find(key);
    if (slot == Index::kNone) return std::nullopt;
    Entry* e = shard->index.at(slot);
    age = std::max(now - Clock::time_point(Clock::duration(e->inserted)), Clock::duration::zero());
    const Clock::duration life = seconds(e->lifetime);
    if (age >= life) {
      if (age - life >= s.stale_max_age) {  // of no further use: drop it now
        shard->remove(e, slot);
        dead = e;
      } else if (stale == Stale::Refuse ||
                 (loadU16(e->blob() + 2) & 0xf) == static_cast<uint16_t>(dns::Rcode::ServFail)) {
        return std::nullopt;  // an old SERVFAIL is no better than a new one
      } else {
        hit.stale = true;
      }
    }
    if (dead == nullptr) {
      e->visited = true;
      if (e->hits < UINT8_MAX) ++e->hits;
      if (!hit.stale && s.prefetch_percent > 0 && e->hits >= 2 && !e->prefetched &&
          (life - age) * 100 < life * s.prefetch_percent) {
        hit.prefetch = true;
        e->prefetched = true;
      }
      v = {e->body_len, e->opt_len, e->ttl_count, e->questionEnd()};
      out.resize(e->blobSize());
      std::memcpy(out.data(), e->blob(), e->blobSize());
    }
  }
  if (dead != nullptr) {
    freeEntry(dead);
    return std::nullopt;
  }

  // Outside the lock, in `out` only: what buildClientReply would write for this client.
  std::byte* p = out.data();
  storeU16(p, q.header.id);
  storeU16(p + 2, dns::clientFlags(loadU16(p + 2), q));
  if (q.question_end == v.question_end && q.question_end <= raw_query.size()) {
    std::memcpy(p + dns::kHeaderSize, raw_query.data() + dns::kHeaderSize,
                v.question_end - dns::kHeaderSize);
  }
  const bool edns = q.edns.present;
  if (edns) {
    storeU16(p + 10, static_cast<uint16_t>(loadU16(p + 10) + 1));
    dns::setClientOpt({p + v.body_len, v.opt_len}, our_udp_size, q.edns.do_bit);
  }
  const size_t reply_len = v.body_len + (edns ? v.opt_len : 0);
  const size_t limit = std::min(max_size, dns::kMaxMessage);
  if (reply_len <= limit) {  // a reply about to be truncated keeps no records to patch
    const uint32_t age_s = static_cast<uint32_t>(
        std::min<int64_t>(std::chrono::duration_cast<seconds>(age).count(), UINT32_MAX));
    const uint32_t stale_ttl = toSeconds(s.stale_ttl);
    const std::byte* offsets = p + v.body_len + v.opt_len;
    for (size_t i = 0; i < v.ttl_count; ++i) {
      std::byte* ttl_at = p + loadU16(offsets + 2 * i);
      const uint32_t ttl = wireTtl(loadU32(ttl_at));
      storeU32(ttl_at, hit.stale ? stale_ttl : (ttl > age_s ? ttl - age_s : 0));
    }
  }
  out.resize(reply_len);
  dns::truncateClientReply(out, v.question_end, edns ? v.body_len : 0, limit);
  return hit;
}

void PacketCache::prefetchFailed(const Key& key) {
  if (!impl_) return;
  auto shard = impl_->shardFor(key.hash).lock();
  if (const size_t slot = shard->index.find(key); slot != Index::kNone) {
    shard->index.at(slot)->prefetched = false;
  }
}

CacheStats PacketCache::stats() const {
  CacheStats st;
  if (!impl_) return st;
  for (size_t i = 0; i < impl_->shard_count; ++i) {
    auto shard = impl_->shards[i].shard.lock();
    st.entries += shard->index.size();
    st.bytes += shard->bytes();
    st.evictions += shard->evictions;
  }
  return st;
}

}  // namespace dotproxy::cache
