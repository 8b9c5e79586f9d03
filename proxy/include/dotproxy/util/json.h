#pragma once
// JSON text helpers shared by the tools' machine-readable output.

#include <string>
#include <string_view>

namespace dotproxy {

// A JSON string literal, quotes included (RFC 8259 section 7): quote, backslash and control
// characters escaped; other bytes pass through.
std::string jsonString(std::string_view s);

}  // namespace dotproxy
