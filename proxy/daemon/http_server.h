#pragma once
// The operator's HTTP endpoint (/metrics, /healthz, /readyz) on a thread and event loop of its own,
// so that a slow or hostile scraper never touches a worker. HTTP/1.x, one request per connection,
// GET and HEAD only; every connection has a deadline and their number is capped.

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "dotproxy/net/socket.h"

namespace dotproxy::daemon {

struct HttpReply {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class HttpServer {
 public:
  // Called on the server's thread for every well-formed GET/HEAD: the path, without query.
  using Route = std::function<HttpReply(std::string_view path)>;

  HttpServer(net::Fd listener, Route route);  // starts serving at once
  ~HttpServer();                              // stops and joins
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

}  // namespace dotproxy::daemon
