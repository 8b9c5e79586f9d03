#include "dotproxy/tls/tls.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>

// GCC 12 warns on designated initializers that leave members to their defaults (fixed in GCC 13);
// the settings structs are meant to be used exactly that way.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace dotproxy::tls {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kDeadline = std::chrono::seconds(10);

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    reset();
    fd_ = std::exchange(o.fd_, -1);
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

struct SocketPair {
  Fd client, server;
};

SocketPair nonBlockingPair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0)
    throw std::runtime_error("socketpair failed");
  return {Fd(fds[0]), Fd(fds[1])};
}

short eventsFor(Errc want) {
  return want == Errc::WantWrite ? POLLOUT : POLLIN;
}

// Waits until one of the fds is ready or the deadline passes; false on timeout.
bool waitFor(std::span<pollfd> fds, Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) return false;
  return ::poll(fds.data(), fds.size(), static_cast<int>(left.count())) > 0;
}

bool isWant(Errc e) {
  return e == Errc::WantRead || e == Errc::WantWrite;
}

struct Handshakes {
  std::optional<Result<void>> client, server;  // nullopt: still in progress when the loop ended
};

// Drives both handshakes until both finish or either fails, within the deadline.
Handshakes handshakeBoth(Stream& c, int cfd, Stream& s, int sfd) {
  const auto deadline = Clock::now() + kDeadline;
  Handshakes out;
  for (;;) {
    pollfd fds[2] = {{cfd, 0, 0}, {sfd, 0, 0}};
    if (!out.client) {
      auto r = c.handshake();
      if (r || !isWant(r.error()))
        out.client = r;
      else
        fds[0].events = eventsFor(r.error());
    }
    if (!out.server) {
      auto r = s.handshake();
      if (r || !isWant(r.error()))
        out.server = r;
      else
        fds[1].events = eventsFor(r.error());
    }
    const bool client_failed = out.client && !*out.client;
    const bool server_failed = out.server && !*out.server;
    if ((out.client && out.server) || client_failed || server_failed) return out;
    if (out.client) fds[0].fd = -1;
    if (out.server) fds[1].fd = -1;
    if (!waitFor(fds, deadline)) return out;
  }
}

Result<void> writeAll(Stream& s, int fd, std::string_view data) {
  const auto deadline = Clock::now() + kDeadline;
  while (!data.empty()) {
    auto r = s.write(asWire(data));
    if (r) {
      data.remove_prefix(*r);
      continue;
    }
    if (!isWant(r.error())) return std::unexpected(r.error());
    pollfd p{fd, eventsFor(r.error()), 0};
    if (!waitFor({&p, 1}, deadline)) return std::unexpected(Errc::Timeout);
  }
  return {};
}

Result<std::string> readExactly(Stream& s, int fd, size_t n) {
  const auto deadline = Clock::now() + kDeadline;
  std::string out;
  std::byte buf[4096];
  while (out.size() < n) {
    auto r = s.read(std::span(buf, std::min(sizeof buf, n - out.size())));
    if (r) {
      out.append(reinterpret_cast<const char*>(buf), *r);
      continue;
    }
    if (!isWant(r.error())) return std::unexpected(r.error());
    pollfd p{fd, eventsFor(r.error()), 0};
    if (!waitFor({&p, 1}, deadline)) return std::unexpected(Errc::Timeout);
  }
  return out;
}

class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    std::random_device rd;
    path_ =
        std::filesystem::temp_directory_path() /
        ("dotproxy-tls-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()) + ".pem");
    std::ofstream(path_) << contents;
  }
  ~TempFile() {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

struct Conn {
  SocketPair fds;
  Stream client, server;
  Handshakes result;
};

// A client and a server stream over a fresh socket pair, handshakes driven to the end.
Conn connect(const ClientContext& cctx, const ServerContext& sctx,
             const ClientStreamOptions& opts) {
  SocketPair fds = nonBlockingPair();
  auto c = Stream::client(cctx, fds.client.get(), opts);
  auto s = Stream::server(sctx, fds.server.get());
  if (!c || !s) throw std::runtime_error("cannot create streams");
  Conn conn{std::move(fds), std::move(*c), std::move(*s), {}};
  conn.result =
      handshakeBoth(conn.client, conn.fds.client.get(), conn.server, conn.fds.server.get());
  return conn;
}

// A server certificate for dotmock.test and a client context trusting it through a CA file.
class TlsTest : public ::testing::Test {
 protected:
  ServerContext server_ = ServerContext::selfSigned({});
  TempFile ca_{server_.certificatePem()};
  ClientContext client_{{.ca_file = ca_.path()}};
};

TEST(Pin, RoundTrip) {
  SpkiPin pin;
  for (size_t i = 0; i < pin.size(); ++i) pin[i] = static_cast<uint8_t>(i * 7 + 3);
  const std::string text = encodePin(pin);
  EXPECT_EQ(text.size(), 44u);
  auto back = decodePin(text);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, pin);
}

TEST(Pin, KnownValue) {
  // SHA-256 of the empty string, base64 (as `openssl dgst -sha256 -binary | base64` prints it).
  auto pin = decodePin("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
  ASSERT_TRUE(pin);
  EXPECT_EQ((*pin)[0], 0xe3);
  EXPECT_EQ((*pin)[31], 0x55);
  EXPECT_EQ(encodePin(*pin), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
}

TEST(Pin, RejectsAnythingElse) {
  EXPECT_FALSE(decodePin(""));
  EXPECT_FALSE(decodePin("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"));     // no padding
  EXPECT_FALSE(decodePin("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=="));   // too long
  EXPECT_FALSE(decodePin("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuF=="));    // 31 bytes
  EXPECT_FALSE(decodePin("47DEQpj8HBSa-_TImW+5JCeuQeRkm5NMpJWZG3hSuFU="));    // url alphabet
  EXPECT_FALSE(decodePin("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"));  // whitespace
  EXPECT_FALSE(decodePin("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV="));    // stray low bits
  EXPECT_FALSE(decodePin("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
}

TEST(TlsContext, MissingCaFileThrowsNamingTheFile) {
  try {
    ClientContext ctx({.ca_file = "/nonexistent/dotproxy-ca.pem"});
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dotproxy-ca.pem"), std::string::npos)
        << e.what();
  }
}

TEST(TlsContext, CaFileWithoutCertificatesThrows) {
  TempFile junk("not a certificate\n");
  EXPECT_THROW(ClientContext({.ca_file = junk.path()}), std::runtime_error);
}

TEST(TlsContext, FromFilesMissingFileNamesIt) {
  try {
    (void)ServerContext::fromFiles("/nonexistent/cert.pem", "/nonexistent/key.pem");
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/cert.pem"), std::string::npos) << e.what();
  }
}

std::string privateKeyPem(const ServerContext& ctx) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  EXPECT_EQ(PEM_write_bio_PrivateKey(bio.get(), SSL_CTX_get0_privatekey(ctx.get()), nullptr,
                                     nullptr, 0, nullptr, nullptr),
            1);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

TEST(TlsContext, FromFilesLoadsWhatSelfSignedMade) {
  auto made = ServerContext::selfSigned({});
  TempFile cert(made.certificatePem());
  TempFile key(privateKeyPem(made));
  auto loaded = ServerContext::fromFiles(cert.path(), key.path());
  EXPECT_EQ(loaded.spkiPin(), made.spkiPin());
  EXPECT_EQ(loaded.certificatePem(), made.certificatePem());
  ClientContext client({.ca_file = cert.path()});
  auto conn = connect(client, loaded, {.server_name = "dotmock.test", .pins = {made.spkiPin()}});
  ASSERT_TRUE(conn.result.client && *conn.result.client) << conn.client.failure();
  // A key that does not belong to the certificate is refused.
  auto other = ServerContext::selfSigned({});
  TempFile other_key(privateKeyPem(other));
  EXPECT_THROW((void)ServerContext::fromFiles(cert.path(), other_key.path()), std::runtime_error);
}

TEST_F(TlsTest, VerifiedHandshakeExchangesBytesBothWays) {
  auto conn = connect(client_, server_, {.server_name = "dotmock.test"});
  ASSERT_TRUE(conn.result.client && *conn.result.client) << conn.client.failure();
  ASSERT_TRUE(conn.result.server && *conn.result.server) << conn.server.failure();
  EXPECT_TRUE(conn.client.handshakeDone());
  EXPECT_EQ(conn.client.version(), "TLSv1.3");
  EXPECT_FALSE(conn.client.cipher().empty());
  EXPECT_FALSE(conn.client.resumed());
  EXPECT_TRUE(conn.client.failure().empty());

  const int cfd = conn.fds.client.get(), sfd = conn.fds.server.get();
  ASSERT_TRUE(writeAll(conn.client, cfd, "ping from client"));
  EXPECT_EQ(readExactly(conn.server, sfd, 16).value_or("?"), "ping from client");
  const std::string big(200 * 1024, 'b');  // larger than the socket buffer: partial writes
  {
    // The writer fills the socket, so the reader drains concurrently.
    const auto deadline = Clock::now() + kDeadline;
    std::string_view rest = big;
    std::string received;
    std::byte buf[16384];
    while ((!rest.empty() || received.size() < big.size()) && Clock::now() < deadline) {
      pollfd fds[2] = {{sfd, 0, 0}, {cfd, 0, 0}};
      bool progress = false;
      if (!rest.empty()) {
        auto w = conn.server.write(asWire(rest));
        if (w) {
          rest.remove_prefix(*w);
          progress = true;
        } else {
          ASSERT_TRUE(isWant(w.error())) << errcName(w.error());
          fds[0].events = eventsFor(w.error());
        }
      }
      auto r = conn.client.read(buf);
      if (r) {
        received.append(reinterpret_cast<const char*>(buf), *r);
        progress = true;
      } else {
        ASSERT_TRUE(isWant(r.error())) << errcName(r.error());
        fds[1].events = eventsFor(r.error());
      }
      if (!progress) waitFor(fds, deadline);
    }
    EXPECT_TRUE(rest.empty());
    EXPECT_EQ(received, big);
  }
  conn.client.shutdown();
  std::byte b[1];
  const auto deadline = Clock::now() + kDeadline;
  Result<size_t> r = conn.server.read(b);
  while (!r && isWant(r.error()) && Clock::now() < deadline) {
    pollfd p{sfd, eventsFor(r.error()), 0};
    waitFor({&p, 1}, deadline);
    r = conn.server.read(b);
  }
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::Closed);
}

TEST_F(TlsTest, WrongNameFailsVerificationNamingTheName) {
  auto conn = connect(client_, server_, {.server_name = "other.example"});
  ASSERT_TRUE(conn.result.client);
  ASSERT_FALSE(*conn.result.client);
  EXPECT_EQ(conn.result.client->error(), Errc::TlsVerifyFailed);
  EXPECT_NE(conn.client.failure().find("other.example"), std::string::npos)
      << conn.client.failure();
  EXPECT_NE(conn.client.failure().find("mismatch"), std::string::npos) << conn.client.failure();
  // Sticky: later calls report the same failure.
  EXPECT_EQ(conn.client.handshake().error(), Errc::TlsVerifyFailed);
  std::byte b[4];
  EXPECT_EQ(conn.client.read(b).error(), Errc::TlsVerifyFailed);
}

TEST_F(TlsTest, IpLiteralNameIsVerifiedAgainstIpSan) {
  auto server = ServerContext::selfSigned({.names = {"dotmock.test", "127.0.0.1", "::1"}});
  TempFile ca(server.certificatePem());
  ClientContext client({.ca_file = ca.path()});
  for (const char* ip : {"127.0.0.1", "::1"}) {
    auto conn = connect(client, server, {.server_name = ip});
    ASSERT_TRUE(conn.result.client && *conn.result.client) << ip << ": " << conn.client.failure();
  }
  auto conn = connect(client, server, {.server_name = "127.0.0.2"});
  ASSERT_TRUE(conn.result.client);
  ASSERT_FALSE(*conn.result.client);
  EXPECT_EQ(conn.result.client->error(), Errc::TlsVerifyFailed);
  EXPECT_NE(conn.client.failure().find("127.0.0.2"), std::string::npos) << conn.client.failure();
}

// Regression (hardening B11): a TLS 1.2 upstream could renegotiate; nothing a DoT client needs.
TEST(TlsContext, ClientRefusesRenegotiation) {
  for (bool insecure : {false, true}) {
    ClientContext ctx({.insecure = insecure});
    EXPECT_NE(SSL_CTX_get_options(ctx.get()) & SSL_OP_NO_RENEGOTIATION, 0u) << insecure;
  }
}

// The same, on the wire: a TLS 1.2 server (raw OpenSSL, so that it can ask) requests a
// renegotiation; the client declines, and the server's renegotiation never completes.
TEST_F(TlsTest, ServerRequestedRenegotiationIsDeclined) {
  ASSERT_EQ(SSL_CTX_set_max_proto_version(server_.get(), TLS1_2_VERSION), 1);
  SocketPair fds = nonBlockingPair();
  auto c = Stream::client(client_, fds.client.get(), {.server_name = "dotmock.test"});
  ASSERT_TRUE(c);
  std::unique_ptr<SSL, void (*)(SSL*)> s(SSL_new(server_.get()), SSL_free);
  ASSERT_TRUE(s);
  SSL_set_fd(s.get(), fds.server.get());
  SSL_set_accept_state(s.get());
  const auto deadline = Clock::now() + kDeadline;
  bool server_done = false;
  bool client_done = false;
  while (!(server_done && client_done) && Clock::now() < deadline) {
    if (!client_done) {
      auto r = c->handshake();
      ASSERT_TRUE(r || isWant(r.error())) << c->failure();
      client_done = r.has_value();
    }
    if (!server_done) {
      int rc = SSL_do_handshake(s.get());
      server_done = rc == 1;
      ASSERT_TRUE(rc == 1 || SSL_get_error(s.get(), rc) == SSL_ERROR_WANT_READ ||
                  SSL_get_error(s.get(), rc) == SSL_ERROR_WANT_WRITE);
    }
  }
  ASSERT_TRUE(server_done && client_done);
  EXPECT_EQ(c->version(), "TLSv1.2");
  ASSERT_EQ(SSL_renegotiate(s.get()), 1);
  (void)SSL_do_handshake(s.get());  // sends the HelloRequest
  // Both sides keep reading for a while: the client answers the request (declining it or,
  // without SSL_OP_NO_RENEGOTIATION, renegotiating), the server processes the answer.
  bool server_failed = false;
  for (int i = 0; i < 50 && SSL_renegotiate_pending(s.get()) == 1 && !server_failed; ++i) {
    std::byte b[64];
    (void)c->read(b);
    char sb[64];
    int n = SSL_read(s.get(), sb, sizeof sb);
    if (n <= 0) {
      int e = SSL_get_error(s.get(), n);
      server_failed = e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE;
    }
    pollfd p{fds.server.get(), POLLIN, 0};
    (void)::poll(&p, 1, 10);
  }
  EXPECT_TRUE(server_failed || SSL_renegotiate_pending(s.get()) == 1) << "the client renegotiated";
  EXPECT_EQ(SSL_num_renegotiations(s.get()), 1);  // requested once, never completed
}

TEST_F(TlsTest, EmptyNameWithVerificationAndNoPinIsRefused) {
  SocketPair fds = nonBlockingPair();
  auto c = Stream::client(client_, fds.client.get(), {});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), Errc::TlsVerifyFailed);
}

TEST_F(TlsTest, RightPinPasses) {
  auto conn =
      connect(client_, server_, {.server_name = "dotmock.test", .pins = {server_.spkiPin()}});
  ASSERT_TRUE(conn.result.client && *conn.result.client) << conn.client.failure();
}

TEST_F(TlsTest, WrongPinIsPinMismatch) {
  SpkiPin wrong = server_.spkiPin();
  wrong[0] ^= 1;
  auto conn = connect(client_, server_, {.server_name = "dotmock.test", .pins = {wrong}});
  ASSERT_TRUE(conn.result.client);
  ASSERT_FALSE(*conn.result.client);
  EXPECT_EQ(conn.result.client->error(), Errc::PinMismatch);
  EXPECT_NE(conn.client.failure().find(encodePin(server_.spkiPin())), std::string::npos)
      << conn.client.failure();
  EXPECT_FALSE(conn.client.handshakeDone());
  EXPECT_EQ(conn.client.write(asWire("x")).error(), Errc::PinMismatch);
}

TEST_F(TlsTest, RightPinWithInsecureContextPasses) {
  ClientContext insecure({.insecure = true});
  // Any name: with an insecure context only the pin authenticates the server.
  auto conn =
      connect(insecure, server_, {.server_name = "whatever.example", .pins = {server_.spkiPin()}});
  ASSERT_TRUE(conn.result.client && *conn.result.client) << conn.client.failure();
  SpkiPin wrong{};
  auto bad = connect(insecure, server_, {.server_name = "whatever.example", .pins = {wrong}});
  ASSERT_TRUE(bad.result.client);
  ASSERT_FALSE(*bad.result.client);
  EXPECT_EQ(bad.result.client->error(), Errc::PinMismatch);
}

TEST_F(TlsTest, ExpiredCertificateFailsVerification) {
  auto expired = ServerContext::selfSigned(
      {.not_before = std::chrono::hours(-48), .not_after = std::chrono::hours(-24)});
  TempFile ca(expired.certificatePem());
  ClientContext client({.ca_file = ca.path()});
  auto conn = connect(client, expired, {.server_name = "dotmock.test"});
  ASSERT_TRUE(conn.result.client);
  ASSERT_FALSE(*conn.result.client);
  EXPECT_EQ(conn.result.client->error(), Errc::TlsVerifyFailed);
  EXPECT_NE(conn.client.failure().find("expired"), std::string::npos) << conn.client.failure();
}

TEST_F(TlsTest, UntrustedSelfSignedFailsAgainstSystemStore) {
  ClientContext system({});
  auto conn = connect(system, server_, {.server_name = "dotmock.test"});
  ASSERT_TRUE(conn.result.client);
  ASSERT_FALSE(*conn.result.client);
  EXPECT_EQ(conn.result.client->error(), Errc::TlsVerifyFailed);
  EXPECT_FALSE(conn.client.failure().empty());
}

TEST_F(TlsTest, PeerThatDoesNotSpeakTlsFailsWithoutHanging) {
  SocketPair fds = nonBlockingPair();
  auto c = Stream::client(client_, fds.client.get(), {.server_name = "dotmock.test"});
  ASSERT_TRUE(c);
  auto first = c->handshake();  // sends the ClientHello
  ASSERT_FALSE(first);
  ASSERT_EQ(first.error(), Errc::WantRead);
  char hello[4096];
  ASSERT_GT(::read(fds.server.get(), hello, sizeof hello), 0);
  const std::string_view garbage = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
  ASSERT_EQ(::write(fds.server.get(), garbage.data(), garbage.size()),
            static_cast<ssize_t>(garbage.size()));
  fds.server.reset();

  const auto deadline = Clock::now() + kDeadline;
  Result<void> r = c->handshake();
  while (!r && isWant(r.error()) && Clock::now() < deadline) {
    pollfd p{fds.client.get(), eventsFor(r.error()), 0};
    waitFor({&p, 1}, deadline);
    r = c->handshake();
  }
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error() == Errc::TlsError || r.error() == Errc::Closed) << errcName(r.error());
  EXPECT_FALSE(c->failure().empty());
}

TEST_F(TlsTest, PeerClosingDuringHandshakeIsClosed) {
  SocketPair fds = nonBlockingPair();
  auto c = Stream::client(client_, fds.client.get(), {.server_name = "dotmock.test"});
  ASSERT_TRUE(c);
  ASSERT_EQ(c->handshake().error(), Errc::WantRead);
  fds.server.reset();
  const auto deadline = Clock::now() + kDeadline;
  Result<void> r = c->handshake();
  while (!r && isWant(r.error()) && Clock::now() < deadline) {
    pollfd p{fds.client.get(), eventsFor(r.error()), 0};
    waitFor({&p, 1}, deadline);
    r = c->handshake();
  }
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error() == Errc::Closed || r.error() == Errc::Reset) << errcName(r.error());
}

TEST_F(TlsTest, WriteToVanishedPeerIsResetNotSigpipe) {
  auto conn = connect(client_, server_, {.server_name = "dotmock.test"});
  ASSERT_TRUE(conn.result.client && *conn.result.client) << conn.client.failure();
  conn.fds.server.reset();
  // The first write may still land in the socket buffer on some kernels; the next must fail.
  Result<size_t> w = conn.client.write(asWire("after close"));
  if (w) w = conn.client.write(asWire("after close"));
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error(), Errc::Reset) << errcName(w.error()) << " " << conn.client.failure();
}

// Resumption: a session captured from the first connection is resumed on the second.
void expectResumption(const ClientContext& client, const ServerContext& server,
                      std::string_view expected_version) {
  auto first = connect(client, server, {.server_name = "dotmock.test"});
  ASSERT_TRUE(first.result.client && *first.result.client) << first.client.failure();
  ASSERT_TRUE(first.result.server && *first.result.server) << first.server.failure();
  EXPECT_EQ(first.client.version(), expected_version);
  EXPECT_FALSE(first.client.resumed());
  // TLS 1.3 tickets follow the handshake: read once so the client processes them.
  ASSERT_TRUE(writeAll(first.server, first.fds.server.get(), "hi"));
  EXPECT_EQ(readExactly(first.client, first.fds.client.get(), 2).value_or("?"), "hi");
  Session session = first.client.session();
  ASSERT_TRUE(session);

  SocketPair fds = nonBlockingPair();
  auto c =
      Stream::client(client, fds.client.get(), {.server_name = "dotmock.test", .resume = session});
  auto s = Stream::server(server, fds.server.get());
  ASSERT_TRUE(c && s);
  auto result = handshakeBoth(*c, fds.client.get(), *s, fds.server.get());
  ASSERT_TRUE(result.client && *result.client) << c->failure();
  ASSERT_TRUE(result.server && *result.server) << s->failure();
  EXPECT_TRUE(c->resumed());
  EXPECT_TRUE(s->resumed());
  ASSERT_TRUE(writeAll(*c, fds.client.get(), "again"));
  EXPECT_EQ(readExactly(*s, fds.server.get(), 5).value_or("?"), "again");
}

TEST_F(TlsTest, SecondConnectionResumesTls13) {
  expectResumption(client_, server_, "TLSv1.3");
}

TEST_F(TlsTest, SecondConnectionResumesTls12) {
  ASSERT_EQ(SSL_CTX_set_max_proto_version(server_.get(), TLS1_2_VERSION), 1);
  expectResumption(client_, server_, "TLSv1.2");
}

TEST_F(TlsTest, NoSessionBeforeHandshake) {
  SocketPair fds = nonBlockingPair();
  auto c = Stream::client(client_, fds.client.get(), {.server_name = "dotmock.test"});
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->session());
  EXPECT_FALSE(c->handshakeDone());
  EXPECT_TRUE(c->version().empty());
}

}  // namespace
}  // namespace dotproxy::tls
