#include "dotproxy/net/http.h"

#include <gtest/gtest.h>

#include <string>

namespace dotproxy::net {
namespace {

TEST(HttpRequest, ParsesMethodAndPathWithoutQuery) {
  HttpRequest r;
  ASSERT_EQ(parseHttpRequest("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", r), HttpParse::Done);
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/metrics");
}

TEST(HttpRequest, IncompleteUntilTheBlankLine) {
  HttpRequest r;
  EXPECT_EQ(parseHttpRequest("GET /healthz HTTP/1.1\r\nHost: a\r\n", r), HttpParse::Incomplete);
  EXPECT_EQ(parseHttpRequest("", r), HttpParse::Incomplete);
  EXPECT_EQ(parseHttpRequest("GET /healthz HTTP/1.0\n\n", r), HttpParse::Done);
}

TEST(HttpRequest, RejectsMalformedRequestLines) {
  HttpRequest r;
  for (const char* bad :
       {"\r\n\r\n", "GET\r\n\r\n", "GET /x\r\n\r\n", "GET  /x HTTP/1.1\r\n\r\n",
        "GET x HTTP/1.1\r\n\r\n", "GET /x HTTP/2\r\n\r\n", "G(T /x HTTP/1.1\r\n\r\n",
        "GET /x\x01y HTTP/1.1\r\n\r\n", " GET /x HTTP/1.1\r\n\r\n"}) {
    EXPECT_EQ(parseHttpRequest(bad, r), HttpParse::Bad) << bad;
  }
}

TEST(HttpRequest, HeadBeyondTheLimitIsTooLarge) {
  HttpRequest r;
  std::string big = "GET / HTTP/1.1\r\nX: " + std::string(kMaxHttpHead, 'a');
  EXPECT_EQ(parseHttpRequest(big, r), HttpParse::TooLarge);
  EXPECT_EQ(parseHttpRequest(big + "\r\n\r\n", r), HttpParse::TooLarge);
}

TEST(HttpResponse, CarriesLengthAndClosesTheConnection) {
  std::string r = httpResponse(503, "text/plain", "draining\n");
  EXPECT_EQ(r,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\ndraining\n");
  EXPECT_EQ(httpResponse(200, "text/plain", "ok", true).find("ok"), std::string::npos);
}

}  // namespace
}  // namespace dotproxy::net
