#include "dotproxy/util/json.h"

#include <gtest/gtest.h>

namespace dotproxy {
namespace {

TEST(JsonString, EscapesQuotesBackslashesAndControls) {
  EXPECT_EQ(jsonString("plain"), "\"plain\"");
  EXPECT_EQ(jsonString("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(jsonString("l1\nl2\r\t"), "\"l1\\nl2\\r\\t\"");
  EXPECT_EQ(jsonString(std::string_view("\x01", 1)), "\"\\u0001\"");
}

}  // namespace
}  // namespace dotproxy
