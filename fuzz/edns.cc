// Target 8: the EDNS option payload codecs of dns/edns.h (Client Subnet, Cookie, Extended DNS
// Error) that dotq uses on every answer it prints. The first byte picks the codec, the rest is the
// option's data (or, for 3, ECS text as typed after +subnet=). Whatever a codec accepts must come
// back the same: the parsers take only canonical payloads, so re-encoding gives the input's bytes.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "check.h"
#include "dotproxy/dns/edns.h"

namespace {

using namespace dotproxy;

bool sameBytes(const std::vector<std::byte>& a, WireView b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

bool sameSubnet(const dns::ClientSubnet& a, const dns::ClientSubnet& b) {
  return a.family == b.family && a.source_prefix == b.source_prefix &&
         a.scope_prefix == b.scope_prefix && a.address == b.address;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const WireView payload(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  switch (data[0] % 5) {
    case 0: {
      auto ecs = dns::parseClientSubnet(payload);
      if (!ecs) break;
      FUZZ_CHECK(ecs->family == 1 || ecs->family == 2);
      FUZZ_CHECK(ecs->source_prefix <= (ecs->family == 1 ? 32 : 128));
      dns::EdnsOption o = dns::clientSubnetOption(*ecs);
      FUZZ_CHECK(o.code == 8);
      FUZZ_CHECK(sameBytes(o.data, payload));
      FUZZ_CHECK(!ecs->toText().empty());
      break;
    }
    case 1: {
      auto cookie = dns::parseCookie(payload);
      if (!cookie) break;
      FUZZ_CHECK(cookie->client.size() == 8);
      FUZZ_CHECK(cookie->server.empty() ||
                 (cookie->server.size() >= 8 && cookie->server.size() <= 32));
      FUZZ_CHECK(sameBytes(dns::cookieOption(*cookie).data, payload));
      break;
    }
    case 2: {
      auto ede = dns::parseExtendedError(payload);
      if (!ede) {
        FUZZ_CHECK(payload.size() < 2);
        break;
      }
      FUZZ_CHECK(ede->info_code == ((data[1] << 8) | data[2]));
      FUZZ_CHECK(ede->extra_text.size() == payload.size() - 2);
      (void)dns::extendedErrorName(ede->info_code);
      break;
    }
    case 3: {
      const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
      auto ecs = dns::parseClientSubnetText(text);
      if (!ecs) break;
      // What +subnet= accepts goes on the wire in a form the decoder takes back unchanged.
      dns::EdnsOption o = dns::clientSubnetOption(*ecs);
      auto back = dns::parseClientSubnet(WireView(o.data.data(), o.data.size()));
      FUZZ_CHECK(back.has_value());
      FUZZ_CHECK(sameSubnet(*back, *ecs));
      break;
    }
    case 4: {
      // Padding to a block: the padded size is a multiple of it, and never a whole block more.
      if (payload.size() < 4) break;
      const size_t unpadded = (size_t{data[1]} << 8) | data[2];
      const size_t block = data[3];
      const size_t pad = dns::paddingLength(unpadded, block);
      if (block == 0) {
        FUZZ_CHECK(pad == 0);
      } else {
        FUZZ_CHECK((unpadded + 4 + pad) % block == 0);
        FUZZ_CHECK(pad < block);
      }
      FUZZ_CHECK(dns::paddingOption(pad).data.size() == pad);
      (void)dns::ednsOptionName(static_cast<uint16_t>((data[3] << 8) | data[4]));
      break;
    }
  }
  return 0;
}
