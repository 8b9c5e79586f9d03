#pragma once
// The little HTTP/1.x the metrics endpoint needs: parse a request head, build a response. Bytes in,
// bytes out, no I/O. Anything but a well-formed request line with a bounded head is Bad.

#include <cstddef>
#include <string>
#include <string_view>

namespace dotproxy::net {

struct HttpRequest {
  std::string_view method;  // views into the parsed buffer
  std::string_view path;    // the target without its query string
};

enum class HttpParse : uint8_t { Incomplete, Done, Bad, TooLarge };

inline constexpr size_t kMaxHttpHead = 8192;

// Parses the request head at the start of `buf` (through the blank line). Incomplete until the
// blank line has arrived; TooLarge when it has not within kMaxHttpHead bytes.
HttpParse parseHttpRequest(std::string_view buf, HttpRequest& out) noexcept;

// A complete HTTP/1.1 response with Content-Length and `Connection: close`; a HEAD response
// carries the headers only.
std::string httpResponse(int status, std::string_view content_type, std::string_view body,
                         bool head_only = false);

}  // namespace dotproxy::net
