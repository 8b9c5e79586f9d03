// Target 6: the configuration loader, config::applyToml, on arbitrary text. A ConfigError (with a
// message naming the origin) is the expected answer to bad input; any other exception, a crash or a
// hang is a bug. Settings that load must be usable: a second load of the same text over them
// agrees.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "check.h"
#include "dotproxy/config/settings.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dotproxy;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  config::Settings s = config::defaults();
  try {
    config::applyToml(s, text, "fuzz.toml");
  } catch (const config::ConfigError& e) {
    FUZZ_CHECK(std::string_view(e.what()).starts_with("fuzz.toml"));
    return 0;
  }
  // Anything else propagates out of the harness: libFuzzer reports it as a crash (uncaught
  // exception), and so does the replay main.
  FUZZ_CHECK(s.workers <= 256);
  FUZZ_CHECK(s.max_udp_size >= 512 && s.max_udp_size <= 4096);
  FUZZ_CHECK(s.attempt_timeout <= s.query_timeout);
  FUZZ_CHECK(s.backoff_initial <= s.backoff_max);
  return 0;
}
