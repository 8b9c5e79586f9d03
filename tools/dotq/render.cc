#include "render.h"

#include <fmt/format.h>
#include <ldns/ldns.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <span>

#include "dotproxy/dns/edns.h"
#include "dotproxy/dns/types.h"
#include "dotproxy/util/json.h"
#include "dotproxy/wire/reader.h"

namespace dotproxy::dotq {
namespace {

struct PktDeleter {
  void operator()(ldns_pkt* p) const noexcept { ldns_pkt_free(p); }
};
struct CharDeleter {
  void operator()(char* p) const noexcept { std::free(p); }  // ldns allocates with malloc
};
using CString = std::unique_ptr<char, CharDeleter>;

std::string take(char* s) {
  CString owned(s);
  return owned ? std::string(owned.get()) : std::string();
}

std::string rrText(const ldns_rr* rr) {
  std::string s = take(ldns_rr2str(rr));
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// The rdata alone, fields separated by one space (+short).
std::string rdataText(const ldns_rr* rr) {
  std::string out;
  for (size_t i = 0; i < ldns_rr_rd_count(rr); ++i) {
    if (i) out += ' ';
    out += take(ldns_rdf2str(ldns_rr_rdf(rr, i)));
  }
  return out;
}

void section(std::string& out, std::string_view title, const ldns_rr_list* list, bool question) {
  if (!list || ldns_rr_list_rr_count(list) == 0) return;
  out += fmt::format("\n;; {} SECTION:\n", title);
  for (size_t i = 0; i < ldns_rr_list_rr_count(list); ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(list, i);
    out += question ? ";" : "";
    out += rrText(rr);
    out += '\n';
  }
}

std::string flagsText(const dns::Header& h) {
  std::string f;
  auto add = [&](bool on, std::string_view n) {
    if (!on) return;
    if (!f.empty()) f += ' ';
    f += n;
  };
  add(h.qr(), "qr");
  add(h.flags & dns::flag::AA, "aa");
  add(h.tc(), "tc");
  add(h.rd(), "rd");
  add(h.flags & dns::flag::RA, "ra");
  add(h.ad(), "ad");
  add(h.cd(), "cd");
  return f;
}

std::string_view opcodeName(uint8_t op) {
  switch (op) {
    case 0:
      return "QUERY";
    case 1:
      return "IQUERY";
    case 2:
      return "STATUS";
    case 4:
      return "NOTIFY";
    case 5:
      return "UPDATE";
  }
  return "RESERVED";
}

std::string rcodeText(uint16_t rcode) {
  auto n = dns::rcodeName(rcode);
  return n.empty() ? fmt::format("RCODE{}", rcode) : std::string(n);
}

std::string hex(std::span<const std::byte> data, std::string_view sep = "") {
  std::string s;
  for (auto b : data) {
    if (!s.empty()) s += sep;
    s += fmt::format("{:02x}", std::to_integer<unsigned>(b));
  }
  return s;
}

// Printable ASCII kept, every other byte shown as '.', as dig shows NSID text.
std::string printable(std::span<const std::byte> data) {
  std::string s;
  for (auto b : data) {
    const auto c = std::to_integer<unsigned char>(b);
    s += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '.';
  }
  return s;
}

std::string_view jsonBool(bool b) {
  return b ? "true" : "false";
}

std::string milliseconds(std::chrono::microseconds us) {
  return fmt::format("{:.3f}", static_cast<double>(us.count()) / 1000.0);
}

// RFC 7873 5.3: "good" when the server echoed our client cookie with a server cookie of its own,
// "echoed" without one, "bad" when the client cookie is not ours.
std::string_view cookieVerdict(const dns::Cookie& c, const std::vector<std::byte>& ours) {
  if (c.client != ours) return "bad";
  return c.server.empty() ? "echoed" : "good";
}

// RFC 7828 3.1: a TCP keepalive option from a server carries a 16-bit timeout in units of 100 ms.
std::optional<unsigned> keepaliveTenths(std::span<const std::byte> data) {
  WireReader r(data);
  const uint16_t v = r.u16();
  if (!r.ok() || !r.atEnd()) return std::nullopt;
  return v;
}

// One option of the reply's OPT record, decoded as dig shows it: text after "; ".
std::string optionText(const dns::EdnsOption& o, const RenderContext& ctx) {
  std::string_view name = dns::ednsOptionName(o.code);
  std::string label = name.empty() ? fmt::format("OPT={}", o.code) : std::string(name);
  const std::span<const std::byte> data = o.data;
  switch (o.code) {
    case dns::edns_option::NSID:
      return fmt::format("{}: {} (\"{}\")", label, hex(data, " "), printable(data));
    case dns::edns_option::ClientSubnet:
      if (auto e = dns::parseClientSubnet(data)) return fmt::format("{}: {}", label, e->toText());
      break;
    case dns::edns_option::Cookie:
      if (auto c = dns::parseCookie(data)) {
        return fmt::format("{}: {} ({})", label, hex(data), cookieVerdict(*c, ctx.client_cookie));
      }
      break;
    case dns::edns_option::TcpKeepalive:  // RFC 7828 3.1: units of 100 ms
      label = "TCP KEEPALIVE";            // dig's spelling
      if (data.empty()) return label;
      if (auto v = keepaliveTenths(data))
        return fmt::format("{}: {}.{} secs", label, *v / 10, *v % 10);
      break;
    case dns::edns_option::Padding:
      return fmt::format("PAD: ({} bytes)", data.size());  // as dig prints it
    case dns::edns_option::ExtendedError:
      if (auto e = dns::parseExtendedError(data)) {
        std::string purpose(dns::extendedErrorName(e->info_code));
        std::string out = fmt::format("{}: {}", label, e->info_code);
        if (!purpose.empty()) out += fmt::format(" ({})", purpose);
        if (!e->extra_text.empty()) {
          out += fmt::format(": ({})", printable(std::as_bytes(std::span(e->extra_text))));
        }
        return out;
      }
      break;
    default:
      if (data.empty()) return label;
      return fmt::format("{}: {} (\"{}\")", label, hex(data, " "), printable(data));
  }
  return fmt::format("{}: {} (malformed)", label, hex(data, " "));
}

void ednsSection(std::string& out, const dns::Edns& e, const RenderContext& ctx) {
  out += "\n;; OPT PSEUDOSECTION:\n";
  out += fmt::format("; EDNS: version: {}, flags:{}; udp: {}\n", e.version, e.do_bit ? " do" : "",
                     e.udp_size);
  for (const auto& o : e.options) out += fmt::format("; {}\n", optionText(o, ctx));
}

// {"code": 10, "name": "COOKIE", "hex": "...", ...decoded fields}
std::string optionJson(const dns::EdnsOption& o, const RenderContext& ctx) {
  std::string_view name = dns::ednsOptionName(o.code);
  const std::span<const std::byte> data = o.data;
  std::string out =
      fmt::format(R"({{"code": {}, "name": {}, "hex": {})", o.code,
                  name.empty() ? std::string("null") : jsonString(name), jsonString(hex(data)));
  bool malformed = false;
  switch (o.code) {
    case dns::edns_option::NSID:
      out += fmt::format(R"(, "text": {})", jsonString(printable(data)));
      break;
    case dns::edns_option::ClientSubnet:
      if (auto e = dns::parseClientSubnet(data)) {
        std::string text = e->toText();
        out += fmt::format(
            R"(, "family": {}, "address": {}, "source_prefix": {}, "scope_prefix": {})", e->family,
            jsonString(text.substr(0, text.find('/'))), e->source_prefix, e->scope_prefix);
      } else {
        malformed = true;
      }
      break;
    case dns::edns_option::Cookie:
      if (auto c = dns::parseCookie(data)) {
        out += fmt::format(R"(, "client": {}, "server": {}, "status": {})",
                           jsonString(hex(c->client)), jsonString(hex(c->server)),
                           jsonString(cookieVerdict(*c, ctx.client_cookie)));
      } else {
        malformed = true;
      }
      break;
    case dns::edns_option::TcpKeepalive:
      if (auto v = keepaliveTenths(data)) {
        out += fmt::format(R"(, "timeout_ms": {})", *v * 100);
      } else if (!data.empty()) {
        malformed = true;
      }
      break;
    case dns::edns_option::Padding:
      out += fmt::format(R"(, "length": {})", data.size());
      break;
    case dns::edns_option::ExtendedError:
      if (auto e = dns::parseExtendedError(data)) {
        std::string_view purpose = dns::extendedErrorName(e->info_code);
        out += fmt::format(R"(, "info_code": {}, "purpose": {}, "extra_text": {})", e->info_code,
                           purpose.empty() ? std::string("null") : jsonString(purpose),
                           jsonString(printable(std::as_bytes(std::span(e->extra_text)))));
      } else {
        malformed = true;
      }
      break;
    default:
      break;
  }
  if (malformed) out += R"(, "malformed": true)";
  out += '}';
  return out;
}

std::string ednsJson(const dns::Edns& e, const RenderContext& ctx) {
  std::string out = fmt::format(
      R"({{"version": {}, "udp_size": {}, "ext_rcode": {}, "flags": {{"do": {}}}, "options": [)",
      e.version, e.udp_size, e.ext_rcode, jsonBool(e.do_bit));
  for (size_t i = 0; i < e.options.size(); ++i) {
    if (i) out += ", ";
    out += optionJson(e.options[i], ctx);
  }
  out += "]}";
  return out;
}

std::string statsText(const Timings& t) {
  return fmt::format(
      ";; STATS: connect {} ms, TLS handshake {} ms, first byte {} ms, total {} ms\n",
      milliseconds(t.connect), milliseconds(t.tls_handshake), milliseconds(t.first_byte),
      milliseconds(t.total));
}

std::string rdataHex(const ldns_rr* rr) {
  std::string s;
  for (size_t i = 0; i < ldns_rr_rd_count(rr); ++i) {
    const ldns_rdf* f = ldns_rr_rdf(rr, i);
    const uint8_t* d = ldns_rdf_data(f);
    for (size_t j = 0; j < ldns_rdf_size(f); ++j) s += fmt::format("{:02X}", d[j]);
  }
  return s;
}

// RFC 8427 section 2.2 names; "data" is the rdata as the plain output prints it.
std::string jsonRrs(const ldns_rr_list* list, bool question) {
  std::string out = "[";
  for (size_t i = 0; list && i < ldns_rr_list_rr_count(list); ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(list, i);
    if (i) out += ", ";
    out += fmt::format(R"({{"NAME": {}, "TYPE": {}, "TYPEname": {}, "CLASS": {}, "CLASSname": {})",
                       jsonString(take(ldns_rdf2str(ldns_rr_owner(rr)))),
                       static_cast<unsigned>(ldns_rr_get_type(rr)),
                       jsonString(take(ldns_rr_type2str(ldns_rr_get_type(rr)))),
                       static_cast<unsigned>(ldns_rr_get_class(rr)),
                       jsonString(take(ldns_rr_class2str(ldns_rr_get_class(rr)))));
    if (!question) {
      out += fmt::format(R"(, "TTL": {}, "RDATAHEX": {}, "data": {})", ldns_rr_ttl(rr),
                         jsonString(rdataHex(rr)), jsonString(rdataText(rr)));
    }
    out += '}';
  }
  out += ']';
  return out;
}

std::string renderJson(const RenderContext& ctx, const Reply& reply, const ldns_pkt* pkt) {
  const dns::Message& m = reply.message;
  const dns::Header& h = m.header;
  std::string out = "{";
  out += fmt::format(R"("ID": {}, "QR": {}, "Opcode": {}, "AA": {}, "TC": {}, "RD": {}, )", h.id,
                     jsonBool(h.qr()), h.opcode(), jsonBool(h.flags & dns::flag::AA),
                     jsonBool(h.tc()), jsonBool(h.rd()));
  out +=
      fmt::format(R"("RA": {}, "AD": {}, "CD": {}, "RCODE": {}, )",
                  jsonBool(h.flags & dns::flag::RA), jsonBool(h.ad()), jsonBool(h.cd()), m.rcode());
  out += fmt::format(R"("QDCOUNT": {}, "ANCOUNT": {}, "NSCOUNT": {}, "ARCOUNT": {}, )", h.qdcount,
                     h.ancount, h.nscount, h.arcount);
  out += fmt::format(R"("questionRRs": {}, )", jsonRrs(ldns_pkt_question(pkt), true));
  out += fmt::format(R"("answerRRs": {}, )", jsonRrs(ldns_pkt_answer(pkt), false));
  out += fmt::format(R"("authorityRRs": {}, )", jsonRrs(ldns_pkt_authority(pkt), false));
  out += fmt::format(R"("additionalRRs": {}, )", jsonRrs(ldns_pkt_additional(pkt), false));
  out += fmt::format(R"("dotqServer": {}, "dotqTransport": {}, "dotqQueryTimeMs": {})",
                     jsonString(ctx.server), jsonString(transportName(reply.transport)),
                     reply.elapsed.count() / 1000);
  if (reply.transport == Transport::Tls) {
    out += fmt::format(R"(, "dotqTlsVersion": {}, "dotqTlsCipher": {}, "dotqTlsResumed": {})",
                       jsonString(reply.tls_version), jsonString(reply.tls_cipher),
                       jsonBool(reply.tls_resumed));
  }
  if (m.edns) out += fmt::format(R"(, "EDNS": {})", ednsJson(*m.edns, ctx));
  if (ctx.options.stats) {
    const Timings& t = reply.timings;
    out += fmt::format(
        R"(, "dotqStats": {{"connect_us": {}, "tls_handshake_us": {}, "first_byte_us": {}, "total_us": {}}})",
        t.connect.count(), t.tls_handshake.count(), t.first_byte.count(), t.total.count());
  }
  if (reply.pipeline) {
    out += fmt::format(R"(, "dotqPipeline": {{"answer": {}, "of": {}, "query": {}}})",
                       reply.pipeline->answer, reply.pipeline->of, reply.pipeline->query);
  }
  out += "}\n";
  return out;
}

}  // namespace

std::expected<std::string, std::string> render(const RenderContext& ctx, const Reply& reply) {
  ldns_pkt* raw = nullptr;
  const auto* data = reinterpret_cast<const uint8_t*>(reply.wire.data());
  if (ldns_status st = ldns_wire2pkt(&raw, data, reply.wire.size()); st != LDNS_STATUS_OK) {
    return std::unexpected(fmt::format("cannot render the reply: {}", ldns_get_errorstr_by_id(st)));
  }
  std::unique_ptr<ldns_pkt, PktDeleter> pkt(raw);

  if (ctx.options.output == Output::Json) return renderJson(ctx, reply, pkt.get());

  std::string out;
  if (ctx.options.output == Output::Short) {
    const ldns_rr_list* an = ldns_pkt_answer(pkt.get());
    for (size_t i = 0; an && i < ldns_rr_list_rr_count(an); ++i) {
      out += rdataText(ldns_rr_list_rr(an, i));
      out += '\n';
    }
    return out;
  }

  const dns::Message& m = reply.message;
  const dns::Header& h = m.header;
  out += fmt::format("\n; <<>> dotq <<>> {}\n", ctx.command_line);
  if (reply.truncated_udp) out += ";; Truncated, retrying in TCP mode.\n";
  out += ";; Got answer:\n";
  if (reply.pipeline) {
    out += fmt::format(";; answer {} of {}, query #{} (pipelined on one connection)\n",
                       reply.pipeline->answer, reply.pipeline->of, reply.pipeline->query);
  }
  out += fmt::format(";; ->>HEADER<<- opcode: {}, status: {}, id: {}\n", opcodeName(h.opcode()),
                     rcodeText(m.rcode()), h.id);
  out += fmt::format(";; flags: {}; QUERY: {}, ANSWER: {}, AUTHORITY: {}, ADDITIONAL: {}\n",
                     flagsText(h), h.qdcount, h.ancount, h.nscount, h.arcount);
  if (m.edns) ednsSection(out, *m.edns, ctx);
  section(out, "QUESTION", ldns_pkt_question(pkt.get()), true);
  section(out, "ANSWER", ldns_pkt_answer(pkt.get()), false);
  section(out, "AUTHORITY", ldns_pkt_authority(pkt.get()), false);
  section(out, "ADDITIONAL", ldns_pkt_additional(pkt.get()), false);
  out += '\n';
  out += fmt::format(";; Query time: {} msec\n", reply.elapsed.count() / 1000);
  out += fmt::format(";; SERVER: {}({})\n", ctx.server, transportName(reply.transport));
  if (reply.transport == Transport::Tls) {
    out += fmt::format(";; TLS: {}, {}, resumed: {}\n", reply.tls_version, reply.tls_cipher,
                       reply.tls_resumed ? "yes" : "no");
  }
  if (ctx.options.stats) out += statsText(reply.timings);
  out += fmt::format(";; MSG SIZE  rcvd: {}\n\n", reply.wire.size());
  return out;
}

}  // namespace dotproxy::dotq
