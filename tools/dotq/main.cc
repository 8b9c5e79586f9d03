// dotq: a dig-style DNS client over UDP, TCP and DNS-over-TLS. Exit status as dig: 0 a reply
// arrived (whatever its RCODE), 9 no reply, 10 usage error.

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "client.h"
#include "dotproxy/dns/edns.h"
#include "dotproxy/dns/message.h"
#include "options.h"
#include "render.h"

namespace {

using namespace dotproxy;

constexpr int kExitOk = 0;
constexpr int kExitNoReply = 9;
constexpr int kExitUsage = 10;

// The EDNS options asked for, padding excluded (it goes last, sized once the rest is known).
std::vector<dns::EdnsOption> ednsOptions(const dotq::Options& o,
                                         const std::vector<std::byte>& client_cookie) {
  std::vector<dns::EdnsOption> out;
  if (o.nsid) out.push_back({.code = dns::edns_option::NSID, .data = {}});
  if (o.subnet) out.push_back(dns::clientSubnetOption(*o.subnet));
  if (o.cookie) out.push_back({.code = dns::edns_option::Cookie, .data = client_cookie});
  return out;
}

PacketBuffer buildQuery(const dotq::Options& o, const dotq::Question& q, uint16_t id,
                        const std::vector<std::byte>& client_cookie) {
  dns::Header h;
  h.id = id;
  h.set(dns::flag::RD, o.rd);
  h.set(dns::flag::CD, o.cd);
  h.set(dns::flag::AD, o.ad);
  dns::Edns edns{
      .udp_size = o.bufsize, .do_bit = o.dnssec, .options = ednsOptions(o, client_cookie)};
  auto build = [&](const dns::Edns& e) {
    PacketBuffer out;
    dns::MessageBuilder b(out);
    b.header(h);
    b.question(q.name, q.type, q.klass);
    if (o.edns) b.opt(e);
    (void)b.finish();  // one question and a few small options cannot exceed 65535 bytes
    return out;
  };
  PacketBuffer out = build(edns);
  // RFC 7830 / RFC 8467 4.1: the padding option makes the whole message a multiple of the block.
  if (const size_t block = o.effectivePadding(); o.edns && block > 0) {
    edns.options.push_back(dns::paddingOption(dns::paddingLength(out.size(), block)));
    out = build(edns);
  }
  return out;
}

int run(const std::vector<std::string>& args) {
  auto parsed = dotq::parseArgs(args);
  if (!parsed) {
    fmt::print(stderr, "dotq: {}\n", parsed.error());
    return kExitUsage;
  }
  const dotq::Options& o = *parsed;
  if (o.help) {
    fmt::print("{}", dotq::usage());
    return kExitOk;
  }
  auto server = dotq::resolveServer(o.server, o.effectivePort(), o.family);
  if (!server) {
    fmt::print(stderr, "dotq: {}\n", server.error());
    return kExitUsage;
  }
  dotq::ExchangeSettings settings{.server = *server,
                                  .server_text = o.server,
                                  .transport = o.transport,
                                  .tls = o.tls,
                                  .timeout = o.timeout,
                                  .retry = o.retry};
  std::string command_line;
  for (const auto& a : args) command_line += (command_line.empty() ? "" : " ") + a;
  dotq::RenderContext ctx{
      .options = o,
      .command_line = command_line,
      .server = fmt::format("{}#{}", server->host(), server->port()),
  };
  std::random_device random;
  // RFC 7873 4.1: one client cookie for this run (dotq talks to one server); given, or random.
  std::vector<std::byte> client_cookie;
  if (o.cookie) {
    client_cookie = *o.cookie;
    while (client_cookie.size() < 8) {  // +cookie without a value: 8 random bytes
      client_cookie.push_back(static_cast<std::byte>(random() & 0xff));
    }
  }
  // Distinct IDs, so that replies pipelined on one connection are told apart by ID.
  std::vector<PacketBuffer> queries;
  std::vector<uint16_t> ids;
  for (const auto& q : o.questions) {
    uint16_t id = 0;
    do {
      id = static_cast<uint16_t>(random());
    } while (std::ranges::find(ids, id) != ids.end());
    ids.push_back(id);
    queries.push_back(buildQuery(o, q, id, client_cookie));
  }
  ctx.client_cookie = client_cookie;

  // As dig: each question in turn, a failed one reported on stderr without stopping the rest; the
  // exit status is that of the last failure.
  int status = kExitOk;
  std::string last_error;
  auto show = [&](std::expected<dotq::Reply, dotq::ExchangeError> reply) {
    if (!reply) {
      // A failed +keepopen connection fails every query on it: one line says it once.
      if (!o.keepopen || reply.error().what != last_error) {
        fmt::print(stderr, "dotq: {}\n", reply.error().what);
      }
      last_error = reply.error().what;
      status = reply.error().kind == dotq::Failure::Usage ? kExitUsage : kExitNoReply;
      return;
    }
    auto text = dotq::render(ctx, *reply);
    if (!text) {
      fmt::print(stderr, "dotq: {}\n", text.error());
      status = kExitNoReply;
      return;
    }
    fmt::print("{}", *text);
    std::fflush(stdout);
  };
  if (o.keepopen) {
    dotq::exchangePipelined(
        settings, queries,
        [&](size_t, std::expected<dotq::Reply, dotq::ExchangeError> r) { show(std::move(r)); });
  } else {
    for (const auto& query : queries) show(dotq::exchange(settings, query));
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return run(args);
}
