#include "dotproxy/tls/tls.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <stdexcept>

namespace dotproxy::tls {

void CtxDeleter::operator()(ssl_ctx_st* p) const noexcept {
  SSL_CTX_free(p);
}
void SslDeleter::operator()(ssl_st* p) const noexcept {
  SSL_free(p);
}
void SessionDeleter::operator()(ssl_session_st* p) const noexcept {
  SSL_SESSION_free(p);
}

Session Session::adopt(ssl_session_st* s) {
  Session out;
  if (s != nullptr) out.s_ = std::shared_ptr<ssl_session_st>(s, SessionDeleter{});
  return out;
}

namespace {

template <auto F>
struct Free {
  template <class T>
  void operator()(T* p) const noexcept {
    F(p);
  }
};
using BioPtr = std::unique_ptr<BIO, Free<BIO_free_all>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Free<EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Free<X509_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Free<X509_EXTENSION_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Free<BN_free>>;

// ---- base64 (RFC 4648, standard alphabet, padded), for SPKI pins ----

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int b64Value(char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// ---- OpenSSL error text ----

// The oldest queued OpenSSL error as "library: reason (data)", and clears the queue.
std::string opensslReason(std::string_view fallback = "unknown TLS error") {
  const char* data = nullptr;
  int flags = 0;
  unsigned long e = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags);
  std::string out;
  if (e == 0) {
    out = fallback;
  } else {
    const char* lib = ERR_lib_error_string(e);
    const char* reason = ERR_reason_error_string(e);
    if (ERR_SYSTEM_ERROR(e)) {
      out = std::strerror(ERR_GET_REASON(e));
    } else {
      out = fmt::format("{}: {}", lib ? lib : "OpenSSL",
                        reason ? std::string(reason) : fmt::format("error {:#x}", e));
    }
    if (data != nullptr && (flags & ERR_TXT_STRING) != 0 && *data != '\0')
      out += fmt::format(" ({})", data);
  }
  ERR_clear_error();
  return out;
}

[[noreturn]] void fail(std::string_view what) {
  throw std::runtime_error(fmt::format("{}: {}", what, opensslReason()));
}

bool isIpLiteral(const std::string& s) noexcept {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// SHA-256 of the DER SubjectPublicKeyInfo (RFC 7469 section 2.4).
std::optional<SpkiPin> spkiOf(X509* cert) noexcept {
  EVP_PKEY* key = cert ? X509_get0_pubkey(cert) : nullptr;
  if (key == nullptr) return std::nullopt;
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(key, &der);
  if (len <= 0) return std::nullopt;
  SpkiPin pin{};
  unsigned int out_len = 0;
  const int ok =
      EVP_Digest(der, static_cast<size_t>(len), pin.data(), &out_len, EVP_sha256(), nullptr);
  OPENSSL_free(der);
  if (ok != 1 || out_len != pin.size()) return std::nullopt;
  return pin;
}

std::string pemOf(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) fail("cannot encode certificate");
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

// ---- a socket BIO that never raises SIGPIPE and remembers errno ----
// OpenSSL's socket BIO uses write(2), which kills a process that does not ignore SIGPIPE when the
// peer has gone; a library must not depend on every program's signal setup. This one uses
// send(MSG_NOSIGNAL) and keeps the errno of the last failed call, so errors map to Reset/IoError
// without relying on errno surviving until SSL_get_error.

struct FdBioData {
  int fd = -1;
  int last_errno = 0;
  bool eof = false;
};

FdBioData* fdData(BIO* b) noexcept {
  return static_cast<FdBioData*>(BIO_get_data(b));
}

bool retryable(int err) noexcept {
  return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

int fdBioWrite(BIO* b, const char* buf, size_t len, size_t* written) {
  FdBioData* d = fdData(b);
  BIO_clear_retry_flags(b);
  const ssize_t n = ::send(d->fd, buf, len, MSG_NOSIGNAL);
  if (n >= 0) {
    *written = static_cast<size_t>(n);
    return 1;
  }
  d->last_errno = errno;
  if (retryable(d->last_errno)) BIO_set_retry_write(b);
  return 0;
}

int fdBioRead(BIO* b, char* buf, size_t len, size_t* readbytes) {
  FdBioData* d = fdData(b);
  BIO_clear_retry_flags(b);
  const ssize_t n = ::recv(d->fd, buf, len, 0);
  if (n > 0) {
    *readbytes = static_cast<size_t>(n);
    return 1;
  }
  if (n == 0) {
    d->eof = true;
    d->last_errno = 0;
    return 0;
  }
  d->last_errno = errno;
  if (retryable(d->last_errno)) BIO_set_retry_read(b);
  return 0;
}

long fdBioCtrl(BIO* b, int cmd, long /*num*/, void* ptr) {
  FdBioData* d = fdData(b);
  switch (cmd) {
    case BIO_C_GET_FD:
      if (d == nullptr) return -1;
      if (ptr != nullptr) *static_cast<int*>(ptr) = d->fd;
      return d->fd;
    case BIO_CTRL_EOF:
      return d != nullptr && d->eof ? 1 : 0;
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_GET_CLOSE:
      return BIO_NOCLOSE;
    case BIO_CTRL_SET_CLOSE:
      return 1;
    default:
      return 0;
  }
}

int fdBioDestroy(BIO* b) {
  delete fdData(b);  // never closes the fd: the caller owns it
  BIO_set_data(b, nullptr);
  BIO_set_init(b, 0);
  return 1;
}

const BIO_METHOD* fdBioMethod() noexcept {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "dotproxy fd");
    if (m == nullptr) return m;
    BIO_meth_set_write_ex(m, fdBioWrite);
    BIO_meth_set_read_ex(m, fdBioRead);
    BIO_meth_set_ctrl(m, fdBioCtrl);
    BIO_meth_set_destroy(m, fdBioDestroy);
    return m;
  }();
  return method;
}

BIO* newFdBio(int fd) noexcept {
  const BIO_METHOD* method = fdBioMethod();
  if (method == nullptr) return nullptr;
  auto* d = new (std::nothrow) FdBioData{.fd = fd};
  if (d == nullptr) return nullptr;
  BIO* b = BIO_new(method);
  if (b == nullptr) {
    delete d;
    return nullptr;
  }
  BIO_set_data(b, d);
  BIO_set_init(b, 1);
  return b;
}

int streamIndex() noexcept {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

}  // namespace

// ---- pins ----

std::optional<SpkiPin> decodePin(std::string_view text) noexcept {
  // 32 bytes are 44 characters: 42 full sextets, one with 2 unused (zero) bits, one '='.
  if (text.size() != 44 || text[43] != '=') return std::nullopt;
  SpkiPin pin{};
  uint32_t acc = 0;
  int bits = 0;
  size_t out = 0;
  for (size_t i = 0; i < 43; ++i) {
    const int v = b64Value(text[i]);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      pin[out++] = static_cast<uint8_t>((acc >> bits) & 0xff);
    }
  }
  if (out != pin.size() || (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return pin;
}

std::string encodePin(const SpkiPin& pin) {
  std::string out;
  out.reserve(44);
  size_t i = 0;
  for (; i + 3 <= pin.size(); i += 3) {
    const uint32_t v = (uint32_t{pin[i]} << 16) | (uint32_t{pin[i + 1]} << 8) | pin[i + 2];
    for (int shift = 18; shift >= 0; shift -= 6) out += kB64[(v >> shift) & 0x3f];
  }
  // 32 = 10 * 3 + 2: two bytes left, three characters and one '='.
  const uint32_t v = (uint32_t{pin[i]} << 16) | (uint32_t{pin[i + 1]} << 8);
  out += kB64[(v >> 18) & 0x3f];
  out += kB64[(v >> 12) & 0x3f];
  out += kB64[(v >> 6) & 0x3f];
  out += '=';
  return out;
}

// ---- contexts ----

namespace {

// Keeps the newest session on the Stream that owns the SSL (TLS 1.3 tickets arrive after the
// handshake, inside SSL_read). Returning 1 takes the reference OpenSSL passes us.
int onNewSession(SSL* ssl, SSL_SESSION* session);

}  // namespace

ClientContext::ClientContext(const ClientContextSettings& settings) : insecure_(settings.insecure) {
  ERR_clear_error();
  ctx_.reset(SSL_CTX_new(TLS_client_method()));
  if (!ctx_) fail("cannot create TLS client context");
  if (SSL_CTX_set_min_proto_version(ctx_.get(), TLS1_2_VERSION) != 1)
    fail("cannot set minimum TLS version");
  // A TLS 1.2 upstream asking to renegotiate gets a no_renegotiation alert: nothing a DoT client
  // needs, and a known source of bugs and CPU exhaustion (RFC 7858 section 3.4 only asks for
  // TLS 1.2 or later; TLS 1.3 has no renegotiation at all).
  SSL_CTX_set_options(ctx_.get(), SSL_OP_NO_RENEGOTIATION);
  if (!settings.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx_.get(), settings.ca_file.c_str(), nullptr) != 1)
      fail(fmt::format("cannot load CA file '{}'", settings.ca_file));
  } else if (!insecure_ && SSL_CTX_set_default_verify_paths(ctx_.get()) != 1) {
    fail("cannot load the system trust store");
  }
  SSL_CTX_set_verify(ctx_.get(), insecure_ ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_session_cache_mode(ctx_.get(),
                                 SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx_.get(), onNewSession);
}

namespace {

std::unique_ptr<ssl_ctx_st, CtxDeleter> newServerCtx() {
  std::unique_ptr<ssl_ctx_st, CtxDeleter> ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) fail("cannot create TLS server context");
  if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1)
    fail("cannot set minimum TLS version");
  // Resumption: stateless tickets (OpenSSL's default) plus the server-side cache for TLS 1.2
  // session IDs; the ID context is required once any verify mode is set.
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_SERVER);
  static constexpr unsigned char kSidCtx[] = "dotproxy";
  SSL_CTX_set_session_id_context(ctx.get(), kSidCtx, sizeof(kSidCtx) - 1);
  return ctx;
}

void addExtension(X509* cert, X509V3_CTX* v3, int nid, const std::string& value) {
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, v3, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1)
    fail(fmt::format("cannot add certificate extension {}={}", OBJ_nid2sn(nid), value));
}

}  // namespace

ServerContext ServerContext::fromFiles(const std::string& cert_file, const std::string& key_file) {
  ERR_clear_error();
  ServerContext out;
  out.ctx_ = newServerCtx();
  if (SSL_CTX_use_certificate_chain_file(out.ctx_.get(), cert_file.c_str()) != 1)
    fail(fmt::format("cannot load certificate file '{}'", cert_file));
  if (SSL_CTX_use_PrivateKey_file(out.ctx_.get(), key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    fail(fmt::format("cannot load private key file '{}'", key_file));
  if (SSL_CTX_check_private_key(out.ctx_.get()) != 1)
    fail(fmt::format("key '{}' does not match certificate '{}'", key_file, cert_file));
  X509* leaf = SSL_CTX_get0_certificate(out.ctx_.get());
  auto pin = spkiOf(leaf);
  if (!pin) fail(fmt::format("cannot hash the public key of '{}'", cert_file));
  out.pin_ = *pin;
  out.cert_pem_ = pemOf(leaf);
  return out;
}

ServerContext ServerContext::selfSigned(const ServerCertificateSettings& settings) {
  ERR_clear_error();
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) fail("cannot generate a P-256 key");

  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) fail("cannot create certificate");

  // RFC 5280 4.1.2.2: positive serial, at most 20 bytes.
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) fail("cannot draw a serial number");
  serial[0] &= 0x7f;
  BnPtr bn(BN_bin2bn(serial, sizeof serial, nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())) == nullptr)
    fail("cannot set serial number");

  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), settings.not_before.count()) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), settings.not_after.count()) == nullptr)
    fail("cannot set validity");

  const std::string cn = settings.names.empty() ? "dotproxy" : settings.names.front();
  X509_NAME* subject = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                 0) != 1 ||
      X509_set_issuer_name(cert.get(), subject) != 1)
    fail("cannot set certificate name");
  if (X509_set_pubkey(cert.get(), key.get()) != 1) fail("cannot set public key");

  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, cert.get(), cert.get(), nullptr, nullptr, 0);
  // Its own CA, so the PEM alone serves as a client's CA file.
  addExtension(cert.get(), &v3, NID_basic_constraints, "critical,CA:TRUE");
  addExtension(cert.get(), &v3, NID_key_usage, "critical,digitalSignature,keyCertSign");
  addExtension(cert.get(), &v3, NID_ext_key_usage, "serverAuth");
  addExtension(cert.get(), &v3, NID_subject_key_identifier, "hash");
  if (!settings.names.empty()) {
    std::string san;
    for (const auto& name : settings.names) {
      if (!san.empty()) san += ',';
      san += fmt::format("{}:{}", isIpLiteral(name) ? "IP" : "DNS", name);
    }
    addExtension(cert.get(), &v3, NID_subject_alt_name, san);
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) fail("cannot sign certificate");

  ServerContext out;
  out.ctx_ = newServerCtx();
  if (SSL_CTX_use_certificate(out.ctx_.get(), cert.get()) != 1 ||
      SSL_CTX_use_PrivateKey(out.ctx_.get(), key.get()) != 1 ||
      SSL_CTX_check_private_key(out.ctx_.get()) != 1)
    fail("cannot install the self-signed certificate");
  auto pin = spkiOf(cert.get());
  if (!pin) fail("cannot hash the public key");
  out.pin_ = *pin;
  out.cert_pem_ = pemOf(cert.get());
  return out;
}

// ---- stream ----

namespace {

// Everything a Stream owns. File-local so that helpers here can use it; Stream::State derives
// from it only to give the header's private name a definition.
struct StreamCore {
  std::unique_ptr<ssl_st, SslDeleter> ssl;
  BIO* bio = nullptr;  // owned by ssl
  bool client = false;
  bool verify = false;  // chain and name verification on (client, secure context)
  bool done = false;
  std::optional<Errc> fatal;  // sticky: once a stream failed, every call returns this
  std::string server_name;
  std::vector<SpkiPin> pins;
  std::string failure;
  Session session;
};

}  // namespace

struct Stream::State : StreamCore {};

namespace {

int onNewSession(SSL* ssl, SSL_SESSION* session) {
  auto* state = static_cast<StreamCore*>(SSL_get_ex_data(ssl, streamIndex()));
  if (state == nullptr) return 0;
  try {
    state->session = Session::adopt(session);
  } catch (const std::bad_alloc&) {
    // shared_ptr's constructor already released the reference through the deleter; the stream
    // keeps its previous session.
    return 1;
  }
  return 1;
}

Result<void> makeStream(ssl_ctx_st* ctx, int fd, StreamCore* state) {
  ERR_clear_error();
  state->ssl.reset(SSL_new(ctx));
  if (!state->ssl) {
    state->failure = opensslReason();
    return std::unexpected(Errc::TlsError);
  }
  SSL* ssl = state->ssl.get();
  state->bio = newFdBio(fd);
  if (state->bio == nullptr) {
    ERR_clear_error();
    return std::unexpected(Errc::TlsError);
  }
  SSL_set_bio(ssl, state->bio, state->bio);  // one reference, taken by ssl
  SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_set_ex_data(ssl, streamIndex(), state) != 1) {
    ERR_clear_error();
    return std::unexpected(Errc::TlsError);
  }
  return {};
}

}  // namespace

Result<Stream> Stream::client(const ClientContext& ctx, int fd, const ClientStreamOptions& opts) {
  auto state = std::make_unique<State>();
  state->client = true;
  state->verify = !ctx.insecure();
  state->server_name = opts.server_name;
  state->pins = opts.pins;
  // With verification on and no pin, an empty name would accept any valid certificate.
  if (state->verify && opts.server_name.empty() && opts.pins.empty())
    return std::unexpected(Errc::TlsVerifyFailed);
  if (auto r = makeStream(ctx.get(), fd, state.get()); !r) return std::unexpected(r.error());
  SSL* ssl = state->ssl.get();

  const bool ip = isIpLiteral(opts.server_name);
  bool ok = true;
  // RFC 6066 section 3: SNI carries host names only, never IP literals.
  if (!opts.server_name.empty() && !ip)
    ok = ok && SSL_set_tlsext_host_name(ssl, opts.server_name.c_str()) == 1;
  if (state->verify && !opts.server_name.empty()) {
    if (ip) {
      ok = ok && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), opts.server_name.c_str()) == 1;
    } else {
      // The name must be a subjectAltName (RFC 6125 section 6.4.4, RFC 8310 section 8.1): a
      // certificate that names it only in its subject CN is refused.
      SSL_set_hostflags(ssl,
                        X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
      ok = ok && SSL_set1_host(ssl, opts.server_name.c_str()) == 1;
    }
  }
  if (ok && opts.resume) ok = SSL_set_session(ssl, opts.resume.get()) == 1;
  if (!ok) {
    ERR_clear_error();
    return std::unexpected(Errc::TlsError);
  }
  SSL_set_connect_state(ssl);
  Stream out;
  out.state_ = std::move(state);
  return out;
}

Result<Stream> Stream::server(const ServerContext& ctx, int fd) {
  auto state = std::make_unique<State>();
  if (auto r = makeStream(ctx.get(), fd, state.get()); !r) return std::unexpected(r.error());
  SSL_set_accept_state(state->ssl.get());
  Stream out;
  out.state_ = std::move(state);
  return out;
}

Stream::Stream(Stream&&) noexcept = default;
Stream& Stream::operator=(Stream&&) noexcept = default;
Stream::~Stream() = default;

namespace {

enum class Op : uint8_t { Handshake, Read, Write };

// Maps a failed SSL_* call to an Errc; records a reason and makes fatal errors sticky.
Errc classify(StreamCore& st, int ret, Op op) noexcept {
  SSL* ssl = st.ssl.get();
  const int saved_errno = fdData(st.bio)->last_errno;
  const int code = SSL_get_error(ssl, ret);
  Errc e = Errc::TlsError;
  try {
    switch (code) {
      case SSL_ERROR_WANT_READ:
        ERR_clear_error();
        return Errc::WantRead;
      case SSL_ERROR_WANT_WRITE:
        ERR_clear_error();
        return Errc::WantWrite;
      case SSL_ERROR_ZERO_RETURN:
        e = Errc::Closed;
        st.failure = "peer closed the TLS connection (close_notify)";
        break;
      case SSL_ERROR_SYSCALL:
        if (saved_errno == ECONNRESET || saved_errno == EPIPE) {
          e = Errc::Reset;
          st.failure = fmt::format("connection reset: {}", std::strerror(saved_errno));
        } else if (ERR_peek_error() != 0) {
          e = Errc::TlsError;
          st.failure = opensslReason();
        } else if (saved_errno == 0) {
          e = Errc::Closed;
          st.failure = "peer closed the connection without close_notify";
        } else {
          e = Errc::IoError;
          st.failure = fmt::format("socket error: {}", std::strerror(saved_errno));
        }
        break;
      case SSL_ERROR_SSL: {
        const unsigned long err = ERR_peek_error();
        const long verify = SSL_get_verify_result(ssl);
        if (ERR_GET_LIB(err) == ERR_LIB_SSL &&
            ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
          e = saved_errno == ECONNRESET ? Errc::Reset : Errc::Closed;
          st.failure = "peer closed the connection without close_notify";
          ERR_clear_error();
        } else if (op == Op::Handshake && st.verify && verify != X509_V_OK) {
          e = Errc::TlsVerifyFailed;
          st.failure = fmt::format("certificate verification failed: {} (expected name '{}')",
                                   X509_verify_cert_error_string(verify), st.server_name);
          ERR_clear_error();
        } else {
          e = Errc::TlsError;
          st.failure = opensslReason();
        }
        break;
      }
      default:
        e = Errc::TlsError;
        st.failure = opensslReason(fmt::format("SSL_get_error {}", code));
        break;
    }
  } catch (...) {  // formatting ran out of memory: keep the code, lose the words
    ERR_clear_error();
  }
  st.fatal = e;
  return e;
}

// Before each SSL_* call: no stale OpenSSL error or errno from an earlier call or connection.
void beginCall(StreamCore& st) noexcept {
  ERR_clear_error();
  fdData(st.bio)->last_errno = 0;
}

// Called once the handshake completed: RFC 7858 section 4.2 / RFC 8310 out-of-band key pinning.
Result<void> checkPins(StreamCore& st) noexcept {
  if (!st.client || st.pins.empty()) return {};
  const auto got = spkiOf(SSL_get0_peer_certificate(st.ssl.get()));
  ERR_clear_error();
  if (got) {
    for (const auto& pin : st.pins)
      if (pin == *got) return {};
  }
  try {
    st.failure = got ? fmt::format("SPKI pin mismatch: server key pin is {}", encodePin(*got))
                     : "SPKI pin mismatch: server presented no usable certificate";
  } catch (const std::bad_alloc&) {
    st.failure.clear();  // out of memory for the words; the error code still says it all
  }
  st.fatal = Errc::PinMismatch;
  return std::unexpected(Errc::PinMismatch);
}

}  // namespace

Result<void> Stream::handshake() noexcept {
  if (!state_) return std::unexpected(Errc::Closed);
  State& st = *state_;
  if (st.fatal) return std::unexpected(*st.fatal);
  if (st.done) return {};
  beginCall(st);
  const int r = SSL_do_handshake(st.ssl.get());
  if (r != 1) return std::unexpected(classify(st, r, Op::Handshake));
  if (auto pinned = checkPins(st); !pinned) return pinned;
  st.done = true;
  return {};
}

bool Stream::handshakeDone() const noexcept {
  return state_ && state_->done;
}

Result<size_t> Stream::read(std::span<std::byte> out) noexcept {
  if (!state_) return std::unexpected(Errc::Closed);
  State& st = *state_;
  if (st.fatal) return std::unexpected(*st.fatal);
  if (!st.done) {
    if (auto h = handshake(); !h) return std::unexpected(h.error());
  }
  if (out.empty()) return 0;
  beginCall(st);
  size_t n = 0;
  const int r = SSL_read_ex(st.ssl.get(), out.data(), out.size(), &n);
  if (r != 1) return std::unexpected(classify(st, r, Op::Read));
  return n;
}

Result<size_t> Stream::write(WireView data) noexcept {
  if (!state_) return std::unexpected(Errc::Closed);
  State& st = *state_;
  if (st.fatal) return std::unexpected(*st.fatal);
  if (!st.done) {
    if (auto h = handshake(); !h) return std::unexpected(h.error());
  }
  if (data.empty()) return 0;
  beginCall(st);
  size_t n = 0;
  const int r = SSL_write_ex(st.ssl.get(), data.data(), data.size(), &n);
  if (r != 1) return std::unexpected(classify(st, r, Op::Write));
  return n;
}

void Stream::shutdown() noexcept {
  // After the peer's close_notify (Closed from SSL_ERROR_ZERO_RETURN) answering with ours is
  // still allowed, and it matters: OpenSSL marks the session of a connection freed without a sent
  // close_notify as not resumable. After any other failure SSL_shutdown must not be called.
  if (!state_ || !state_->done) return;
  if (state_->fatal && !(*state_->fatal == Errc::Closed &&
                         (SSL_get_shutdown(state_->ssl.get()) & SSL_RECEIVED_SHUTDOWN))) {
    return;
  }
  ERR_clear_error();
  SSL_shutdown(state_->ssl.get());  // queues and tries to send close_notify; never waits
  ERR_clear_error();
}

Session Stream::session() const {
  if (!state_) return {};
  return state_->session;
}

bool Stream::resumed() const noexcept {
  return state_ && state_->done && SSL_session_reused(state_->ssl.get()) == 1;
}

std::string_view Stream::version() const noexcept {
  if (!state_ || !state_->done) return {};
  return SSL_get_version(state_->ssl.get());
}

std::string_view Stream::cipher() const noexcept {
  if (!state_ || !state_->done) return {};
  const SSL_CIPHER* c = SSL_get_current_cipher(state_->ssl.get());
  return c ? SSL_CIPHER_get_name(c) : std::string_view{};
}

const std::string& Stream::failure() const noexcept {
  static const std::string kEmpty;
  return state_ ? state_->failure : kEmpty;
}

}  // namespace dotproxy::tls
