// Smoke test of the real dotmock binary: start it on port 0, read the ready line, query it over
// UDP, TCP and DoT, read the stats, stop it with SIGTERM. No sleeps: every wait has a deadline.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "dotproxy/dns/message.h"
#include "dotproxy/net/socket.h"
#include "dotproxy/tls/framer.h"
#include "dotproxy/tls/tls.h"

namespace dotproxy::dotmock {
namespace {

using namespace std::chrono_literals;
using Deadline = std::chrono::steady_clock::time_point;

Deadline deadlineIn(std::chrono::milliseconds d) {
  return std::chrono::steady_clock::now() + d;
}

// Waits for `events` on fd until the deadline; false on timeout.
bool waitFor(int fd, short events, Deadline deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{.fd = fd, .events = events, .revents = 0};
    const int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

// The string value of "key" in a flat JSON object line (enough for the ready line).
std::string jsonField(const std::string& line, const std::string& key) {
  const std::string marker = "\"" + key + "\":\"";
  const size_t at = line.find(marker);
  if (at == std::string::npos) return {};
  const size_t start = at + marker.size();
  return line.substr(start, line.find('"', start) - start);
}

class DotmockProcess {
 public:
  explicit DotmockProcess(std::vector<std::string> args) {
    args.insert(args.begin(), DOTMOCK_BINARY);
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) std::abort();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    out_ = net::Fd(out[0]);
    err_ = net::Fd(err[0]);
  }
  ~DotmockProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // The next stdout line, or nullopt at EOF or after the deadline.
  std::optional<std::string> readLine(Deadline deadline) {
    for (;;) {
      if (size_t nl = buffered_.find('\n'); nl != std::string::npos) {
        std::string line = buffered_.substr(0, nl);
        buffered_.erase(0, nl + 1);
        return line;
      }
      if (!waitFor(out_.get(), POLLIN, deadline)) return std::nullopt;
      char buf[4096];
      const ssize_t n = ::read(out_.get(), buf, sizeof(buf));
      if (n <= 0) return std::nullopt;
      buffered_.append(buf, static_cast<size_t>(n));
    }
  }

  std::string readStderr(Deadline deadline) {
    std::string all;
    char buf[4096];
    while (waitFor(err_.get(), POLLIN, deadline)) {
      const ssize_t n = ::read(err_.get(), buf, sizeof(buf));
      if (n <= 0) break;
      all.append(buf, static_cast<size_t>(n));
    }
    return all;
  }

  // Exit status after SIGTERM (or on its own), -1 on timeout.
  int wait(Deadline deadline) {
    for (;;) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (std::chrono::steady_clock::now() > deadline) return -1;
      // Wait on the stdout pipe's EOF rather than sleeping; it closes when the process exits.
      pollfd p{.fd = out_.get(), .events = POLLIN, .revents = 0};
      ::poll(&p, 1, 10);
    }
  }

  void terminate() { ::kill(pid_, SIGTERM); }

 private:
  pid_t pid_ = -1;
  net::Fd out_, err_;
  std::string buffered_;
};

PacketBuffer makeQuery(const std::string& name, uint16_t type, uint16_t id,
                       uint16_t klass = dns::klass::IN) {
  PacketBuffer out;
  dns::MessageBuilder b(out);
  dns::Header h;
  h.id = id;
  h.set(dns::flag::RD, true);
  b.header(h);
  b.question(dns::Name::fromText(name).value(), type, klass);
  EXPECT_TRUE(b.finish());
  return out;
}

std::optional<dns::Message> udpExchange(const net::SocketAddress& to, const PacketBuffer& q) {
  auto fd = net::udpSocket(net::SocketAddress::parse("127.0.0.1:0", 0).value(), false);
  if (!fd) return std::nullopt;
  if (::sendto(fd->get(), q.data(), q.size(), 0, to.sa(), to.len()) < 0) return std::nullopt;
  if (!waitFor(fd->get(), POLLIN, deadlineIn(5s))) return std::nullopt;
  std::byte buf[65536];
  const ssize_t n = ::recv(fd->get(), buf, sizeof(buf), 0);
  if (n <= 0) return std::nullopt;
  auto m = dns::parseMessage(WireView(buf, static_cast<size_t>(n)));
  if (!m) return std::nullopt;
  return *m;
}

// A blocking-with-deadline stream client over TCP or DoT, driven by poll.
class StreamClient {
 public:
  StreamClient(const net::SocketAddress& to, const tls::ClientContext* ctx) {
    auto fd = net::tcpConnect(to);
    if (!fd) return;
    fd_ = std::move(*fd);
    if (!waitFor(fd_.get(), POLLOUT, deadlineIn(5s)) || net::socketError(fd_.get()) != 0) return;
    if (ctx) {
      tls::ClientStreamOptions options;
      options.server_name = "dotmock.test";
      auto s = tls::Stream::client(*ctx, fd_.get(), options);
      if (!s) return;
      stream_.emplace(std::move(*s));
      for (;;) {
        auto r = stream_->handshake();
        if (r) break;
        if (r.error() != Errc::WantRead && r.error() != Errc::WantWrite) return;
        if (!waitFor(fd_.get(), r.error() == Errc::WantRead ? POLLIN : POLLOUT, deadlineIn(5s))) {
          return;
        }
      }
    }
    ok_ = true;
  }
  bool ok() const { return ok_; }

  bool send(std::initializer_list<WireView> queries) {
    PacketBuffer out;
    for (const auto& q : queries) {
      if (!tls::appendFrame(out, q)) return false;
    }
    return sendRaw(out);
  }

  bool sendRaw(const PacketBuffer& out) {
    size_t done = 0;
    while (done < out.size()) {
      WireView rest(out.data() + done, out.size() - done);
      auto n = stream_ ? stream_->write(rest) : net::writeSome(fd_.get(), rest);
      if (n) {
        done += *n;
      } else if (n.error() == Errc::WantWrite || n.error() == Errc::WantRead) {
        if (!waitFor(fd_.get(), n.error() == Errc::WantRead ? POLLIN : POLLOUT, deadlineIn(5s))) {
          return false;
        }
      } else {
        return false;
      }
    }
    return true;
  }

  // The next whole message, or nullopt on error/timeout.
  std::optional<PacketBuffer> receive() {
    const Deadline deadline = deadlineIn(5s);
    for (;;) {
      if (auto m = framer_.next()) return m;
      std::byte buf[16384];
      auto n = stream_ ? stream_->read(buf) : net::readSome(fd_.get(), buf);
      if (n) {
        framer_.feed(WireView(buf, *n));
      } else if (n.error() == Errc::WantRead || n.error() == Errc::WantWrite) {
        if (!waitFor(fd_.get(), n.error() == Errc::WantRead ? POLLIN : POLLOUT, deadline)) {
          return std::nullopt;
        }
      } else {
        return std::nullopt;
      }
    }
  }

 private:
  net::Fd fd_;
  std::optional<tls::Stream> stream_;
  tls::DotFramer framer_;
  bool ok_ = false;
};

uint16_t idOf(const PacketBuffer& m) {
  return m.size() >= 2 ? loadU16(m.data()) : 0;
}

class DotmockBinary : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_file_ = ::testing::TempDir() + "dotmock_ca_" + std::to_string(::getpid()) + ".pem";
    proc_.emplace(std::vector<std::string>{"--udp", "127.0.0.1:0", "--tcp", "127.0.0.1:0",
                                           "--write-ca", ca_file_, "--idle-timeout-ms", "5000"});
    auto line = proc_->readLine(deadlineIn(10s));
    ASSERT_TRUE(line) << proc_->readStderr(deadlineIn(1s));
    ready_ = *line;
    ASSERT_NE(ready_.find("\"ready\":true"), std::string::npos) << ready_;
    dot_ = net::SocketAddress::parse(jsonField(ready_, "dot"), 0).value();
    udp_ = net::SocketAddress::parse(jsonField(ready_, "udp"), 0).value();
    tcp_ = net::SocketAddress::parse(jsonField(ready_, "tcp"), 0).value();
  }
  void TearDown() override { ::unlink(ca_file_.c_str()); }

  std::string ca_file_;
  std::optional<DotmockProcess> proc_;
  std::string ready_;
  net::SocketAddress dot_, udp_, tcp_;
};

TEST_F(DotmockBinary, ReadyLineNamesEveryListener) {
  EXPECT_NE(dot_.port(), 0);
  EXPECT_NE(udp_.port(), 0);
  EXPECT_NE(tcp_.port(), 0);
  EXPECT_EQ(jsonField(ready_, "ca_file"), ca_file_);
  EXPECT_TRUE(tls::decodePin(jsonField(ready_, "pin")).has_value()) << ready_;
}

TEST_F(DotmockBinary, AnswersUdp) {
  auto m = udpExchange(udp_, makeQuery("a.test", dns::type::A, 7));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->header.id, 7);
  EXPECT_EQ(m->answer.size(), 1u);
}

TEST_F(DotmockBinary, TcpPipelinedAnswersOutOfOrder) {
  StreamClient c(tcp_, nullptr);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(
      c.send({makeQuery("delay-300.test", dns::type::A, 1), makeQuery("a.test", dns::type::A, 2)}));
  auto first = c.receive();
  auto second = c.receive();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(idOf(*first), 2);
  EXPECT_EQ(idOf(*second), 1);
}

TEST_F(DotmockBinary, DotWithCaFileAndStatsAndCleanExit) {
  tls::ClientContext ctx({.ca_file = ca_file_, .insecure = false});
  StreamClient c(dot_, &ctx);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.send({makeQuery("delay-200.test", dns::type::A, 1),
                      makeQuery("txt-3000.test", dns::type::TXT, 2),
                      makeQuery("nx.test", dns::type::A, 3)}));
  std::vector<uint16_t> ids;
  for (int i = 0; i < 3; ++i) {
    auto m = c.receive();
    ASSERT_TRUE(m);
    ids.push_back(idOf(*m));
  }
  EXPECT_EQ(ids.back(), 1);

  auto stats = udpExchange(udp_, makeQuery("stats.dotmock", dns::type::TXT, 9, dns::klass::CH));
  ASSERT_TRUE(stats);
  ASSERT_EQ(stats->answer.size(), 1u);

  proc_->terminate();
  auto line = proc_->readLine(deadlineIn(5s));
  ASSERT_TRUE(line);
  EXPECT_NE(line->find("\"stats\":{"), std::string::npos) << *line;
  EXPECT_NE(line->find("\"connections\":1,\"handshakes\":1,"), std::string::npos) << *line;
  EXPECT_NE(line->find("\"queries\":3,\"dot_queries\":3,"), std::string::npos) << *line;
  EXPECT_NE(line->find("\"answers\":3,"), std::string::npos) << *line;
  EXPECT_EQ(proc_->wait(deadlineIn(5s)), 0);
}

// A client that pipelines many large answers before reading any: dotmock stops reading while its
// output is backlogged, then resumes (over DoT, with the queries already inside TLS buffers).
TEST_F(DotmockBinary, BackloggedOutputPausesAndResumes) {
  tls::ClientContext ctx({.ca_file = ca_file_, .insecure = false});
  const std::vector<const tls::ClientContext*> clients = {nullptr, &ctx};
  for (const tls::ClientContext* c : clients) {
    StreamClient client(c ? dot_ : tcp_, c);
    ASSERT_TRUE(client.ok());
    PacketBuffer all;
    constexpr uint16_t kQueries = 60;
    for (uint16_t id = 1; id <= kQueries; ++id) {
      ASSERT_TRUE(tls::appendFrame(all, makeQuery("txt-60000.test", dns::type::TXT, id)));
    }
    // One write of already-framed bytes: send() frames again, so send them as raw bytes.
    ASSERT_TRUE(client.sendRaw(all));
    std::vector<bool> seen(kQueries + 1, false);
    for (int i = 0; i < kQueries; ++i) {
      auto m = client.receive();
      ASSERT_TRUE(m) << "answer " << i;
      EXPECT_GT(m->size(), 60000u);
      seen[idOf(*m)] = true;
    }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), true), kQueries);
  }
}

TEST(DotmockFlags, BadFlagIsOneLineAndExit2) {
  DotmockProcess p({"--no-such-flag"});
  const std::string err = p.readStderr(deadlineIn(5s));
  EXPECT_EQ(p.wait(deadlineIn(5s)), 2);
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

TEST(DotmockFlags, BadAddressIsExit2) {
  DotmockProcess p({"--udp", "localhost:53"});
  EXPECT_EQ(p.wait(deadlineIn(5s)), 2);
}

TEST(DotmockFlags, BadFaultScriptIsOneLineNamingTheLineAndExit2) {
  const std::string path = ::testing::TempDir() + "dotmock-bad.faults";
  {
    std::ofstream out(path);
    out << "query 1 drop\nlabel x explode\n";
  }
  DotmockProcess p({"--faults", path});
  const std::string err = p.readStderr(deadlineIn(5s));
  EXPECT_EQ(p.wait(deadlineIn(5s)), 2);
  EXPECT_NE(err.find("line 2: unknown action 'explode'"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

TEST(DotmockFlags, MissingFaultScriptIsExit2) {
  DotmockProcess p({"--faults", "/nonexistent/dotmock.faults"});
  EXPECT_EQ(p.wait(deadlineIn(5s)), 2);
}

}  // namespace
}  // namespace dotproxy::dotmock
