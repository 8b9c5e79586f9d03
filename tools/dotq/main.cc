// dotq: a dig-style DNS client over UDP, TCP and DNS-over-TLS. Exit status as dig: 0 a reply
// arrived (whatever its RCODE), 9 no reply, 10 usage error.

#include <fmt/format.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "client.h"
#include "dotproxy/dns/message.h"
#include "options.h"
#include "render.h"

namespace {

using namespace dotproxy;

constexpr int kExitOk = 0;
constexpr int kExitNoReply = 9;
constexpr int kExitUsage = 10;

PacketBuffer buildQuery(const dotq::Options& o, const dotq::Question& q) {
  dns::Header h;
  h.id = static_cast<uint16_t>(std::random_device{}());
  h.set(dns::flag::RD, o.rd);
  h.set(dns::flag::CD, o.cd);
  PacketBuffer out;
  dns::MessageBuilder b(out);
  b.header(h);
  b.question(q.name, q.type, q.klass);
  if (o.edns) b.opt(dns::Edns{.udp_size = o.bufsize, .do_bit = o.dnssec});
  (void)b.finish();  // one question and an OPT record cannot exceed 65535 bytes
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
  // As dig: each question in turn, a failed one reported on stderr without stopping the rest; the
  // exit status is that of the last failure.
  int status = kExitOk;
  for (const auto& q : o.questions) {
    auto reply = dotq::exchange(settings, buildQuery(o, q));
    if (!reply) {
      fmt::print(stderr, "dotq: {}\n", reply.error().what);
      status = reply.error().kind == dotq::Failure::Usage ? kExitUsage : kExitNoReply;
      continue;
    }
    auto text = dotq::render(ctx, *reply);
    if (!text) {
      fmt::print(stderr, "dotq: {}\n", text.error());
      status = kExitNoReply;
      continue;
    }
    fmt::print("{}", *text);
    std::fflush(stdout);
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return run(args);
}
