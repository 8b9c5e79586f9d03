#include "http_server.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <chrono>
#include <span>
#include <unordered_map>

#include "dotproxy/net/event_loop.h"
#include "dotproxy/net/http.h"
#include "dotproxy/util/log.h"

namespace dotproxy::daemon {

namespace {

constexpr auto kDeadline = std::chrono::seconds(5);  // whole request and response
constexpr size_t kMaxConnections = 64;

}  // namespace

class HttpServer::Impl final : public net::EventLoop::Handler {
 public:
  Impl(net::Fd listener, Route route) : listener_(std::move(listener)), route_(std::move(route)) {
    loop_.add(listener_.get(), EPOLLIN, this);
  }
  ~Impl() {
    for (auto& [id, c] : conns_) {
      loop_.cancel(c->deadline);
      loop_.remove(c->fd.get());
    }
  }
  net::EventLoop& loop() noexcept { return loop_; }

  void onEvents(uint32_t) override {
    for (int i = 0; i < 16; ++i) {
      auto fd = net::tcpAccept(listener_.get(), nullptr);
      if (!fd) break;
      if (conns_.size() >= kMaxConnections) continue;  // closed at once; scrapers retry
      uint64_t id = next_id_++;
      auto c = std::make_unique<Conn>(*this, id, std::move(*fd));
      loop_.add(c->fd.get(), EPOLLIN, c.get());
      c->deadline = loop_.after(kDeadline, [this, id] { close(id); });
      conns_.emplace(id, std::move(c));
    }
  }

 private:
  struct Conn final : net::EventLoop::Handler {
    Conn(Impl& s, uint64_t i, net::Fd f) : server(s), id(i), fd(std::move(f)) {}
    void onEvents(uint32_t) override { server.onConn(*this); }
    Impl& server;
    uint64_t id;
    net::Fd fd;
    std::string in;
    std::string out;
    size_t written = 0;
    bool responding = false;
    net::EventLoop::TimerId deadline = 0;
  };

  void onConn(Conn& c) {
    if (!c.responding && !readRequest(c)) return;
    while (c.written < c.out.size()) {
      auto n = net::writeSome(c.fd.get(), std::as_bytes(std::span(c.out).subspan(c.written)));
      if (!n) {
        if (n.error() == Errc::WantWrite) return;
        close(c.id);
        return;
      }
      c.written += *n;
    }
    close(c.id);
  }

  // Reads what has arrived; false while the request is incomplete (or the connection is gone).
  bool readRequest(Conn& c) {
    std::byte chunk[2048];
    for (;;) {
      auto n = net::readSome(c.fd.get(), chunk);
      if (!n) {
        if (n.error() == Errc::WantRead) break;
        close(c.id);
        return false;
      }
      if (*n == 0) {  // the peer closed before a whole request
        close(c.id);
        return false;
      }
      c.in.append(reinterpret_cast<const char*>(chunk), *n);
      if (c.in.size() > net::kMaxHttpHead) break;
    }
    net::HttpRequest req;
    HttpReply reply;
    bool head = false;
    switch (net::parseHttpRequest(c.in, req)) {
      case net::HttpParse::Incomplete:
        return false;
      case net::HttpParse::Bad:
        reply = {.status = 400, .body = "bad request\n"};
        break;
      case net::HttpParse::TooLarge:
        reply = {.status = 431, .body = "request head too large\n"};
        break;
      case net::HttpParse::Done:
        head = req.method == "HEAD";
        if (req.method != "GET" && !head) {
          reply = {.status = 405, .body = "GET or HEAD only\n"};
        } else {
          reply = route_(req.path);
        }
        break;
    }
    c.out = net::httpResponse(reply.status, reply.content_type, reply.body, head);
    c.responding = true;
    loop_.modify(c.fd.get(), EPOLLOUT, &c);
    return true;
  }

  void close(uint64_t id) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    loop_.cancel(it->second->deadline);
    loop_.remove(it->second->fd.get());
    ::shutdown(it->second->fd.get(), SHUT_WR);
    // Events for this connection may still be queued in the current batch: free it afterwards.
    auto conn = std::move(it->second);
    conns_.erase(it);
    loop_.defer([c = std::move(conn)] {});
  }

  net::EventLoop loop_;
  net::Fd listener_;
  Route route_;
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns_;
  uint64_t next_id_ = 1;
};

HttpServer::HttpServer(net::Fd listener, Route route)
    : impl_(std::make_unique<Impl>(std::move(listener), std::move(route))),
      thread_([this] { impl_->loop().run(); }) {}

HttpServer::~HttpServer() {
  impl_->loop().stop();
  thread_.join();
}

}  // namespace dotproxy::daemon
