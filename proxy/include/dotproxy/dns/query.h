#pragma once
// The daemon's per-query path: parse a client query (header, question, OPT) without allocating,
// build the query sent upstream, validate and match an upstream answer, and build the client's
// reply. Protocol code only: bytes in, bytes out, no I/O.

#include <cstdint>
#include <span>

#include "dotproxy/dns/name.h"
#include "dotproxy/dns/types.h"
#include "dotproxy/util/result.h"
#include "dotproxy/wire/buffer.h"

namespace dotproxy::dns {

struct EdnsInfo {
  bool present = false;
  uint16_t udp_size = 0;  // as advertised (values below 512 are treated as 512)
  uint8_t version = 0;
  uint8_t ext_rcode = 0;
  bool do_bit = false;
  // Client Subnet option (RFC 7871), as a view position into the parsed message; len 0 if absent.
  // Includes the 4-byte option header.
  size_t ecs_offset = 0;
  uint16_t ecs_len = 0;
};

struct QueryInfo {
  Header header;
  Name qname;  // the client's spelling
  uint16_t qtype = 0;
  uint16_t qclass = 0;
  size_t question_end = 0;  // offset just past the question (header + question bytes)
  EdnsInfo edns;

  // Largest UDP reply this client takes: 512 without EDNS, else its advertised size (at least 512)
  // capped at `cap`.
  size_t maxUdpReply(size_t cap) const noexcept;
};

// Parses a client query. Errors (the caller's action in brackets):
//   Truncated with fewer than 12 bytes          [drop, count]
//   NotQuery   QR=1                             [drop, count; never answer a response]
//   NotImp     opcode other than QUERY          [NOTIMP]
//   BadVers    EDNS version above 0             [BADVERS]
//   anything else (QDCOUNT != 1, bad name, two OPTs, OPT not at root or outside additional,
//   truncated records, ...)                     [FORMERR]
// Every failure after the header is reported as FormErr (never Truncated), so a caller can map
// errors to actions with one switch. Bytes after the last record are FormErr too: a datagram or a
// TCP frame carries exactly one message (RFC 1035 4.2.1, 4.2.2), and junk behind it is not
// ours to carry or to keep while the query waits. BadVers is reported only for an otherwise
// well-formed query.
Result<QueryInfo> parseQuery(WireView wire) noexcept;

// The largest query taken over any transport: one question (at most 4 + 255 bytes of name) and an
// OPT whose options (ECS, cookie, RFC 8467 padding to a 468-byte block) need far less. The UDP
// receive buffer is this size (a larger datagram arrives truncated and gets FORMERR); a larger
// TCP frame gets FORMERR as well, so a query in flight never holds more than this.
inline constexpr size_t kMaxQuery = 4096;

// Builds the reply to a query we refuse or cannot serve (FORMERR, NOTIMP, BADVERS, SERVFAIL,
// REFUSED): echoes the ID, opcode, RD, CD and, when readable, the question; includes an OPT (max
// 1232, DO copied) when the query carried a readable one; BADVERS is sent as extended RCODE 16.
// Returns an empty buffer when the query has no readable header.
PacketBuffer buildErrorReply(WireView query, Rcode rcode);

struct UpstreamQueryOptions {
  uint16_t udp_size = kDefaultEdnsUdpSize;
  size_t padding_block = 128;  // RFC 8467 block padding of the whole message; 0 = no padding
  bool forward_ecs = false;    // copy the client's ECS option upstream
};

// The query sent upstream for q (raw = the client's bytes q was parsed from): fresh `id`, the
// client's RD/CD/AD and question spelling, always an OPT (DO copied), padded.
PacketBuffer buildUpstreamQuery(const QueryInfo& q, WireView raw, uint16_t id,
                                const UpstreamQueryOptions& opts);

struct ResponseInfo {
  Header header;
  Name qname;
  uint16_t qtype = 0;
  uint16_t qclass = 0;
  size_t question_end = 0;
  size_t opt_offset = 0;  // start of the OPT RR; 0 if none
  size_t opt_size = 0;
  uint8_t ext_rcode = 0;
  uint32_t min_ttl = 0;  // smallest TTL over answer+authority (+additional, OPT excluded); 0 if
                         // no records; TTLs with the top bit set count as 0 (RFC 2181 8)
  size_t end = 0;        // offset just past the last record; bytes after it are ignored
  bool authority_soa = false;  // an SOA in the authority section (RFC 2308 5: a negative answer)
  uint16_t rcode() const noexcept { return static_cast<uint16_t>(header.rcode() | ext_rcode << 4); }
};

// Validates an upstream answer: QR=1 (NotResponse), exactly one question (FormErr), every record
// readable with in-bounds names (Truncated/BadPointer/...), at most one OPT, at the root, as the
// last record of the message, with options inside its rdata (FormErr otherwise). The compressed
// names inside NS, CNAME, PTR, MX and SOA rdata are checked too. A compression pointer must land on
// a label of a name read before it (RFC 1035 4.1.4: it replaces a prior occurrence of a name), else
// BadPointer: a name must not be made of TTLs or other bytes that the reply or the cache rewrite
// or drop. Fewer than 12 bytes: Truncated.
Result<ResponseInfo> parseResponse(WireView wire) noexcept;

// True if the answer is for the query with this id and question (name compared case-insensitively).
bool answerMatches(const ResponseInfo& r, uint16_t id, const Name& qname, uint16_t qtype,
                   uint16_t qclass) noexcept;

// The header flags a client gets on an answer: the upstream's, with the client's RD, and AD only
// when the client asked for it with AD or DO (RFC 6840 section 5.8). Shared by the reply built
// from a fresh answer and the one built from the cache, so both say the same.
uint16_t clientFlags(uint16_t answer_flags, const QueryInfo& q) noexcept;

// Builds the client's reply from a validated upstream answer: the client's ID, RD and question
// spelling; upstream sections copied without the upstream's OPT; if the client sent EDNS, our own
// OPT (udp size `our_udp_size`, DO as the client's, extended RCODE kept, no hop-by-hop options:
// padding, keepalive, cookies and ECS are dropped; Extended DNS Errors are kept). If the result
// exceeds max_size it is replaced by header + question (+ OPT) with TC=1.
void buildClientReply(WireView upstream, const ResponseInfo& r, const QueryInfo& q,
                      WireView raw_query, size_t max_size, uint16_t our_udp_size,
                      PacketBuffer& out);

// ---- TTLs as clients are told them, fresh or from the cache (one rule for both paths).

struct TtlCaps {
  uint32_t max_ttl = UINT32_MAX;
  uint32_t negative_max_ttl = UINT32_MAX;  // RFC 2308 5: NXDOMAIN and NODATA
};
// The largest TTL a client is told for a record of answer r: caps.max_ttl, or the lower of it and
// caps.negative_max_ttl for a negative answer (NXDOMAIN, or NOERROR with an SOA in the authority
// section).
uint32_t ttlCap(const ResponseInfo& r, const TtlCaps& caps) noexcept;
// The TTL a client is told for a record whose TTL field holds `wire_ttl`: 0 if its top bit is set
// (RFC 2181 8), at most `cap`.
constexpr uint32_t clientTtl(uint32_t wire_ttl, uint32_t cap) noexcept {
  const uint32_t ttl = (wire_ttl & 0x80000000u) ? 0 : wire_ttl;
  return ttl < cap ? ttl : cap;
}
// Rewrites every TTL of a reply built by buildClientReply (records of all sections, OPT excluded)
// with clientTtl(ttl, cap). Stops at the first record it cannot read.
void capClientTtls(std::span<std::byte> reply, uint32_t cap) noexcept;

// ---- Building blocks of buildClientReply, shared with the cache (which replays stored answers).

// One resource record's owner and fixed fields, as read by readRecordHead.
struct RecordHead {
  size_t start = 0;  // offset of the owner name
  uint16_t type = 0;
  uint16_t klass = 0;
  uint32_t ttl = 0;  // as on the wire; its field starts at rdata_offset - 6
  size_t rdata_offset = 0;
  uint16_t rdlength = 0;
};
// Reads one RR's owner and fixed fields at r.pos() and skips its rdata; errors stay on r.
RecordHead readRecordHead(WireReader& r) noexcept;

// Appends the OPT RR of a client reply: EDNS version 0, udp size `udp_size`, DO as given, the
// upstream's extended RCODE (r.ext_rcode) and, of the options in the upstream's OPT (if any), only
// the end-to-end ones: Extended DNS Errors (RFC 8914).
void appendClientOpt(PacketBuffer& out, WireView upstream, const ResponseInfo& r, uint16_t udp_size,
                     bool do_bit);
// Rewrites the udp size and DO bit of an OPT RR written by appendClientOpt (`opt` starts at it).
void setClientOpt(std::span<std::byte> opt, uint16_t udp_size, bool do_bit) noexcept;
// `out` is a reply: header, question (ending at question_end), sections and, if opt_start != 0,
// our OPT from opt_start to the end. If it is larger than max_size it becomes header + question
// (+ OPT, without its options if even that does not fit) with TC=1 and no records
// (RFC 1035 4.2.1, RFC 6891 7).
void truncateClientReply(PacketBuffer& out, size_t question_end, size_t opt_start, size_t max_size);

}  // namespace dotproxy::dns
