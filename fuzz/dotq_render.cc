// Target 7: dotq's presentation of an arbitrary reply (tools/dotq/render.cc): a reply that the core
// parses is rendered dig-style, as +short and as +json, over each transport's wording. ldns may
// refuse what the core accepts (an error line); neither may crash.

#include <cstddef>
#include <cstdint>

#include "check.h"
#include "dotproxy/dns/message.h"
#include "render.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dotproxy;
  const WireView wire(reinterpret_cast<const std::byte*>(data), size);
  auto m = dns::parseMessage(wire);
  if (!m) return 0;
  dotq::Reply reply;
  reply.wire = PacketBuffer(wire);
  reply.message = std::move(*m);
  reply.transport = size % 3 == 0   ? dotq::Transport::Udp
                    : size % 3 == 1 ? dotq::Transport::Tcp
                                    : dotq::Transport::Tls;
  reply.truncated_udp = size % 2 == 0;
  reply.tls_version = "TLSv1.3";
  reply.tls_cipher = "TLS_AES_128_GCM_SHA256";
  for (dotq::Output output : {dotq::Output::Full, dotq::Output::Short, dotq::Output::Json}) {
    dotq::Options options;
    options.output = output;
    const dotq::RenderContext ctx{.options = options, .command_line = "fuzz", .server = "fuzz#53"};
    auto text = dotq::render(ctx, reply);
    if (text && output == dotq::Output::Json) {
      FUZZ_CHECK(text->starts_with("{") && text->ends_with("}\n"));
    } else if (text && output == dotq::Output::Full) {
      FUZZ_CHECK(text->ends_with("\n"));
    } else if (!text) {
      FUZZ_CHECK(!text.error().empty());
    }
  }
  return 0;
}
