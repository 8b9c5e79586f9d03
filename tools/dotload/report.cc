#include "report.h"

#include <fmt/format.h>

#include "dotproxy/dns/types.h"
#include "dotproxy/util/json.h"

namespace dotproxy::dotload {
namespace {

double qps(const Report& r) {
  return r.duration_s > 0 ? static_cast<double>(r.counters.answered) / r.duration_s : 0.0;
}

double us(double ns) {
  return ns / 1000.0;
}

}  // namespace

std::string rcodeLabel(unsigned rcode) {
  auto name = dns::rcodeName(static_cast<uint16_t>(rcode));
  return name.empty() ? fmt::format("RCODE{}", rcode) : std::string(name);
}

std::string reportJson(const Report& r) {
  const Counters& c = r.counters;
  const Histogram& h = *r.latency;
  std::string rcodes;
  for (unsigned i = 0; i < c.rcodes.size(); ++i) {
    if (c.rcodes[i] == 0 && i != 0) continue;
    if (!rcodes.empty()) rcodes += ',';
    rcodes += fmt::format("{}:{}", jsonString(rcodeLabel(i)), c.rcodes[i]);
  }
  return fmt::format(
      "{{\"transport\":\"{}\",\"duration_s\":{:.3f},\"sent\":{},\"answered\":{},\"lost\":{},"
      "\"qps\":{:.1f},\"truncated\":{},\"rcodes\":{{{}}},"
      "\"latency_us\":{{\"min\":{:.1f},\"p50\":{:.1f},\"p90\":{:.1f},\"p99\":{:.1f},"
      "\"p999\":{:.1f},\"max\":{:.1f},\"mean\":{:.1f}}},"
      "\"connections\":{},\"handshakes\":{},\"resumptions\":{},\"segmented\":{},"
      "\"errors\":{{\"connect\":{},\"tls\":{},\"mismatch\":{},\"malformed\":{},\"closed\":{},"
      "\"send\":{},\"busy\":{}}}}}",
      transportName(r.transport), r.duration_s, c.sent, c.answered, c.lost, qps(r), c.truncated,
      rcodes, us(static_cast<double>(h.min())), us(h.quantile(0.5)), us(h.quantile(0.9)),
      us(h.quantile(0.99)), us(h.quantile(0.999)), us(static_cast<double>(h.max())), us(h.mean()),
      c.connections, c.handshakes, c.resumptions, c.segmented, c.connect, c.tls, c.mismatch,
      c.malformed, c.closed, c.send, c.busy);
}

std::string reportText(const Report& r) {
  const Counters& c = r.counters;
  const Histogram& h = *r.latency;
  std::string out = fmt::format(
      "transport      {}\nduration       {:.3f} s\nqueries sent   {}\nanswered       {} "
      "({:.2f}%)\nlost           {}\nqueries/s      {:.1f}\n",
      transportName(r.transport), r.duration_s, c.sent, c.answered,
      c.sent ? 100.0 * static_cast<double>(c.answered) / static_cast<double>(c.sent) : 0.0, c.lost,
      qps(r));
  out += "rcodes        ";
  for (unsigned i = 0; i < c.rcodes.size(); ++i) {
    if (c.rcodes[i] || i == 0) out += fmt::format(" {} {}", rcodeLabel(i), c.rcodes[i]);
  }
  out += fmt::format(
      "\nlatency (us)   min {:.1f} p50 {:.1f} p90 {:.1f} p99 {:.1f} p99.9 {:.1f} max {:.1f} "
      "mean {:.1f}\n",
      us(static_cast<double>(h.min())), us(h.quantile(0.5)), us(h.quantile(0.9)),
      us(h.quantile(0.99)), us(h.quantile(0.999)), us(static_cast<double>(h.max())), us(h.mean()));
  if (r.transport != Transport::Udp) {
    out += fmt::format("connections    {} (handshakes {}, resumptions {})\n", c.connections,
                       c.handshakes, c.resumptions);
  }
  out += fmt::format(
      "errors         connect {} tls {} mismatch {} malformed {} closed {} send {} busy {}\n",
      c.connect, c.tls, c.mismatch, c.malformed, c.closed, c.send, c.busy);
  if (c.truncated) out += fmt::format("truncated      {} (TC=1)\n", c.truncated);
  return out;
}

}  // namespace dotproxy::dotload
