#include "options.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <vector>

namespace dotproxy::dotload {
namespace {

ParseOutcome parse(std::initializer_list<const char*> args) {
  std::vector<std::string> words{"dotload"};
  words.insert(words.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  return parseOptions(static_cast<int>(argv.size()), argv.data());
}

// --zipf N builds every name up front: a huge N was accepted and allocated tens of gigabytes.
TEST(DotloadOptions, ZipfNamesAreCapped) {
  EXPECT_TRUE(parse({"--zipf", "1000000"}).options);
  auto big = parse({"--zipf", "1000001"});
  EXPECT_FALSE(big.options);
  EXPECT_NE(big.error.find("--zipf"), std::string::npos) << big.error;
  EXPECT_FALSE(parse({"--zipf", "100000000"}).options);
}

// -l went through an unchecked double -> int64 conversion (undefined for 1e10 s, inf, nan).
TEST(DotloadOptions, DurationsAndRatesOutOfRangeAreUsageErrors) {
  for (const char* l : {"1e10", "inf", "nan", "-1"}) {
    auto out = parse({"-l", l});
    EXPECT_FALSE(out.options) << l;
    EXPECT_FALSE(out.error.empty()) << l;
  }
  EXPECT_TRUE(parse({"-l", "31536000"}).options);  // one year is still fine
  for (const char* q : {"inf", "nan", "1e300"}) EXPECT_FALSE(parse({"-Q", q}).options) << q;
  EXPECT_FALSE(parse({"--timeout-ms", "nan"}).options);
}

}  // namespace
}  // namespace dotproxy::dotload
