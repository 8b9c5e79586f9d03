#pragma once
// Record data out of its message, and a simple presentation form of it (RFC 1035 5.1, RFC 3597),
// for tools and the Python module. Not used on the daemon's per-query path.

#include <cstdint>
#include <string>

#include "dotproxy/dns/message.h"
#include "dotproxy/util/result.h"
#include "dotproxy/wire/buffer.h"

namespace dotproxy::dns {

// The rdata of `rec` (parsed from `message`) with compression pointers expanded for the types
// whose rdata may hold compressed names (NS, CNAME, PTR, MX, SOA: RFC 3597 4); other types as on
// the wire. Errors as readName's, or FormErr when the fields do not fill the rdata exactly.
Result<PacketBuffer> expandedRdata(WireView message, const Record& rec);

// Presentation form of uncompressed rdata: A, AAAA, NS, CNAME, PTR, MX, TXT and SOA in their
// usual text; anything else (or rdata that does not parse as its type) as RFC 3597 "\# LEN HEX".
std::string rdataText(uint16_t type, WireView rdata);

}  // namespace dotproxy::dns
