#pragma once
// dotload's command line. parseOptions() either returns the settings or a one-line usage error
// (exit 2); --help text is returned as `help` (exit 0).

#include <optional>
#include <string>
#include <vector>

#include "load.h"

namespace dotproxy::dotload {

// --zipf N: every name is built up front (query wire and bookkeeping, a few hundred bytes each),
// so N is capped where that stays in the hundreds of megabytes.
inline constexpr uint32_t kMaxZipfNames = 1'000'000;
inline constexpr double kMaxSeconds = 365.0 * 86400;  // -l: one year
inline constexpr double kMaxQps = 1e9;                // -Q

struct Options {
  RunSettings run;
  std::string query_file;   // -d
  std::string random_zone;  // --random-names
  uint32_t zipf_names = 0;  // --zipf N[,EXPONENT]
  double zipf_exponent = 1.0;
  std::string zone = "test.";  // --zone (for --zipf)
  uint16_t qtype = 1;          // --type, for generated names
  WireOptions wire;
  std::string ca_file;
  bool insecure = false;
  bool json = false;
  std::optional<bool> progress;  // unset: on when stderr is a terminal
};

struct ParseOutcome {
  std::optional<Options> options;
  std::string error;  // usage error, one line
  std::string help;   // --help was given
};

ParseOutcome parseOptions(int argc, char** argv);

// "0,2-3" -> {0, 2, 3}; nullopt on bad text.
std::optional<std::vector<int>> parseCpuList(const std::string& text);

}  // namespace dotproxy::dotload
