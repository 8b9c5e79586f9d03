#include "http_server.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <chrono>
#include <map>
#include <span>
#include <string>
#include <system_error>
#include <unordered_map>

#include "dotproxy/net/event_loop.h"
#include "dotproxy/net/http.h"
#include "dotproxy/util/log.h"

namespace dotproxy::daemon {

namespace {

// Limits that keep the endpoint answering /healthz while idle or slow sockets are held open (a
// Kubernetes liveness probe that fails restarts the pod): a client that has not sent its whole
// request head soon is cut off, no address holds more than a few connections, and a new connection
// at either cap evicts the oldest one still waiting for its head rather than being refused.
constexpr auto kHeadDeadline = std::chrono::seconds(2);  // accept to the end of the request head
constexpr auto kDeadline = std::chrono::seconds(5);      // whole request and response
constexpr size_t kMaxConnections = 64;
constexpr size_t kMaxPerClient = 8;  // per client IP address
// Out of descriptors (EMFILE): the pending connection stays in the backlog and the level-triggered
// listener would fire at once again. Stop accepting for this long instead of spinning.
constexpr auto kAcceptPause = std::chrono::milliseconds(200);

}  // namespace

class HttpServer::Impl final : public net::EventLoop::Handler {
 public:
  // Start-up: throws std::system_error if the listener cannot be watched.
  Impl(net::Fd listener, Route route) : listener_(std::move(listener)), route_(std::move(route)) {
    int err = 0;
    if (!loop_.add(listener_.get(), EPOLLIN, this, &err)) {
      throw std::system_error(err, std::generic_category(), "metrics endpoint: epoll_ctl");
    }
  }
  ~Impl() {
    loop_.cancel(resume_timer_);
    for (auto& [id, c] : conns_) {
      loop_.cancel(c->head_deadline);
      loop_.cancel(c->deadline);
      loop_.remove(c->fd.get());
    }
  }
  net::EventLoop& loop() noexcept { return loop_; }

  void onEvents(uint32_t) override {
    for (int i = 0; i < 16 && !paused_; ++i) {
      net::SocketAddress peer;
      auto fd = net::tcpAccept(listener_.get(), &peer);
      if (!fd) {
        if (fd.error() != Errc::WantRead) pauseAccepting();
        break;
      }
      std::string host = peer.host();
      if (clientConnections(host) >= kMaxPerClient && !evictWaiting(&host)) {
        continue;  // closed at once: this client's connections are all being answered
      }
      if (conns_.size() >= kMaxConnections && !evictWaiting(nullptr)) {
        continue;  // closed at once; scrapers retry
      }
      uint64_t id = next_id_++;
      auto c = std::make_unique<Conn>(*this, id, std::move(*fd), host);
      if (!loop_.add(c->fd.get(), EPOLLIN, c.get())) continue;  // this connection closes here
      ++per_client_[host];
      c->head_deadline = loop_.after(kHeadDeadline, [this, id] { close(id); });
      c->deadline = loop_.after(kDeadline, [this, id] { close(id); });
      conns_.emplace(id, std::move(c));
    }
  }

 private:
  struct Conn final : net::EventLoop::Handler {
    Conn(Impl& s, uint64_t i, net::Fd f, std::string h)
        : server(s), id(i), fd(std::move(f)), host(std::move(h)) {}
    void onEvents(uint32_t) override { server.onConn(*this); }
    Impl& server;
    uint64_t id;
    net::Fd fd;
    std::string host;  // the client's IP address, for the per-client cap
    std::string in;
    std::string out;
    size_t written = 0;
    bool responding = false;  // the whole head has arrived
    net::EventLoop::TimerId head_deadline = 0;
    net::EventLoop::TimerId deadline = 0;
  };

  // Closes the oldest connection (of `host`, or of anyone when null) that has not sent its whole
  // request head yet. False if there is none: every connection is being answered.
  bool evictWaiting(const std::string* host) {
    for (auto& [id, c] : conns_) {  // ordered by id: oldest first
      if (c->responding || (host && c->host != *host)) continue;
      close(id);
      return true;
    }
    return false;
  }

  size_t clientConnections(const std::string& host) const {
    auto it = per_client_.find(host);
    return it == per_client_.end() ? 0 : it->second;
  }

  void release(const std::string& host) {
    auto it = per_client_.find(host);
    if (it != per_client_.end() && it->second > 0 && --it->second == 0) per_client_.erase(it);
  }

  void pauseAccepting() {
    paused_ = true;
    loop_.remove(listener_.get());
    auto now = std::chrono::steady_clock::now();
    if (now - last_pause_log_ >= std::chrono::seconds(10)) {
      last_pause_log_ = now;
      log::event(log::Level::Warn, "metrics_accept_paused",
                 "metrics endpoint: cannot accept a connection (out of file descriptors?); "
                 "pausing accepts briefly");
    }
    resume_timer_ = loop_.after(kAcceptPause, [this] {
      resume_timer_ = 0;
      paused_ = false;
      if (!loop_.add(listener_.get(), EPOLLIN, this)) pauseAccepting();  // try again later
    });
  }

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
    loop_.cancel(c.head_deadline);
    c.head_deadline = 0;
    if (!loop_.modify(c.fd.get(), EPOLLOUT, &c)) {
      close(c.id);
      return false;
    }
    return true;
  }

  void close(uint64_t id) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    loop_.cancel(it->second->head_deadline);
    loop_.cancel(it->second->deadline);
    release(it->second->host);
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
  std::map<uint64_t, std::unique_ptr<Conn>> conns_;  // by id: oldest first
  std::unordered_map<std::string, size_t> per_client_;
  uint64_t next_id_ = 1;
  bool paused_ = false;
  net::EventLoop::TimerId resume_timer_ = 0;
  std::chrono::steady_clock::time_point last_pause_log_{};
};

HttpServer::HttpServer(net::Fd listener, Route route)
    : impl_(std::make_unique<Impl>(std::move(listener), std::move(route))),
      thread_([this] { impl_->loop().run(); }) {}

HttpServer::~HttpServer() {
  impl_->loop().stop();
  thread_.join();
}

}  // namespace dotproxy::daemon
