#include "dotproxy/net/http.h"

#include <fmt/format.h>

namespace dotproxy::net {

namespace {

bool isTokenChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '!' || c == '#' || c == '$' || c == '%' || c == '&' ||
         c == '\'' || c == '*' || c == '+' || c == '^' || c == '`' || c == '|' || c == '~';
}

std::string_view reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

}  // namespace

HttpParse parseHttpRequest(std::string_view buf, HttpRequest& out) noexcept {
  size_t end = buf.find("\r\n\r\n");
  size_t lf_end = buf.find("\n\n");  // bare-LF clients (RFC 9112 2.2 allows accepting them)
  if (lf_end != std::string_view::npos && (end == std::string_view::npos || lf_end < end)) {
    end = lf_end;
  }
  if (end == std::string_view::npos) {
    return buf.size() >= kMaxHttpHead ? HttpParse::TooLarge : HttpParse::Incomplete;
  }
  if (end > kMaxHttpHead) return HttpParse::TooLarge;
  std::string_view line = buf.substr(0, buf.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // request-line = method SP request-target SP HTTP-version (RFC 9112 3)
  size_t sp1 = line.find(' ');
  if (sp1 == 0 || sp1 == std::string_view::npos) return HttpParse::Bad;
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return HttpParse::Bad;
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  for (char c : method) {
    if (!isTokenChar(c)) return HttpParse::Bad;
  }
  if (target.front() != '/' || target.find(' ') != std::string_view::npos) return HttpParse::Bad;
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return HttpParse::Bad;
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return HttpParse::Bad;
  out.method = method;
  out.path = target.substr(0, target.find('?'));
  return HttpParse::Done;
}

std::string httpResponse(int status, std::string_view content_type, std::string_view body,
                         bool head_only) {
  std::string r = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n"
      "Connection: close\r\n\r\n",
      status, reason(status), content_type, body.size());
  if (!head_only) r += body;
  return r;
}

}  // namespace dotproxy::net
