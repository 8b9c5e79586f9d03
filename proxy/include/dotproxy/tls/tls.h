#pragma once
// OpenSSL wrappers: client and server contexts, and a non-blocking TLS stream over a socket the
// caller owns. No OpenSSL header leaks from here; OpenSSL objects live in unique_ptrs with
// deleters.

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dotproxy/util/result.h"
#include "dotproxy/wire/buffer.h"

struct ssl_ctx_st;
struct ssl_st;
struct ssl_session_st;

namespace dotproxy::tls {

using SpkiPin = std::array<uint8_t, 32>;  // SHA-256 of the DER SubjectPublicKeyInfo (RFC 7469)

// Decodes a base64 SHA-256 SPKI pin (as stubby and kdig take it); nullopt if not 32 bytes of
// base64.
std::optional<SpkiPin> decodePin(std::string_view base64) noexcept;
std::string encodePin(const SpkiPin& pin);

struct CtxDeleter {
  void operator()(ssl_ctx_st* p) const noexcept;
};
struct SslDeleter {
  void operator()(ssl_st* p) const noexcept;
};
struct SessionDeleter {
  void operator()(ssl_session_st* p) const noexcept;
};

// A TLS session kept for resumption. Copyable (reference counted). Empty if none.
class Session {
 public:
  Session() = default;
  explicit operator bool() const noexcept { return static_cast<bool>(s_); }
  ssl_session_st* get() const noexcept { return s_.get(); }
  static Session adopt(ssl_session_st* s);  // takes one reference
 private:
  std::shared_ptr<ssl_session_st> s_;
};

struct ClientContextSettings {
  std::string ca_file;    // PEM bundle; empty = the system trust store
  bool insecure = false;  // no chain or name verification (pins still apply if given)
};

// TLS 1.2 minimum, 1.3 preferred; verification on unless insecure.
class ClientContext {
 public:
  // Throws std::runtime_error with OpenSSL's reason (start-up only).
  explicit ClientContext(const ClientContextSettings& settings);
  ssl_ctx_st* get() const noexcept { return ctx_.get(); }
  bool insecure() const noexcept { return insecure_; }

 private:
  std::unique_ptr<ssl_ctx_st, CtxDeleter> ctx_;
  bool insecure_ = false;
};

struct ServerCertificateSettings {
  std::vector<std::string> names = {"dotmock.test"};  // subjectAltName DNS entries
  // Validity window relative to now; a negative not_after makes an expired certificate.
  std::chrono::seconds not_before = std::chrono::hours(-1);
  std::chrono::seconds not_after = std::chrono::hours(24 * 365);
};

class ServerContext {
 public:
  // Throws std::runtime_error (start-up only).
  static ServerContext fromFiles(const std::string& cert_file, const std::string& key_file);
  // A fresh P-256 key and a self-signed certificate that is its own CA (usable as a client's CA
  // file) for the given names.
  static ServerContext selfSigned(const ServerCertificateSettings& settings);

  ssl_ctx_st* get() const noexcept { return ctx_.get(); }
  SpkiPin spkiPin() const noexcept { return pin_; }
  const std::string& certificatePem() const noexcept { return cert_pem_; }

 private:
  ServerContext() = default;
  std::unique_ptr<ssl_ctx_st, CtxDeleter> ctx_;
  SpkiPin pin_{};
  std::string cert_pem_;
};

struct ClientStreamOptions {
  // SNI (host names only, not IP literals) and the name verified (unless the context is insecure);
  // an IP literal is matched against IP subjectAltNames. Empty is refused (TlsVerifyFailed) by a
  // verifying context unless pins are given: there would be nothing to check the certificate for.
  std::string server_name;
  std::vector<SpkiPin> pins;  // if non-empty, the leaf's SPKI must match one of them
  Session resume;             // offered for resumption if set
};

// A TLS connection over a non-blocking socket that the caller owns and polls (the stream never
// closes it). Every call returns WantRead/WantWrite when it must wait. Writes use MSG_NOSIGNAL, so
// a vanished peer is Reset, never SIGPIPE. Failures other than WantRead/WantWrite are sticky: every
// later call returns the same error. IoError may come from any call on a socket error other than
// reset. Not thread-safe; one owner.
class Stream {
 public:
  static Result<Stream> client(const ClientContext& ctx, int fd, const ClientStreamOptions& opts);
  static Result<Stream> server(const ServerContext& ctx, int fd);

  Stream(Stream&&) noexcept;
  Stream& operator=(Stream&&) noexcept;
  ~Stream();

  // Drives the handshake: ok once complete; WantRead/WantWrite; TlsVerifyFailed (chain or name),
  // PinMismatch, Closed/Reset (peer went away), TlsError (anything else, e.g. not TLS).
  Result<void> handshake() noexcept;
  bool handshakeDone() const noexcept;
  // Reads decrypted bytes; WantRead/WantWrite, Closed (close_notify or EOF), Reset, TlsError.
  Result<size_t> read(std::span<std::byte> out) noexcept;
  // Writes some or all of `data` (partial writes allowed; retry the rest with the same or a
  // moved buffer).
  Result<size_t> write(WireView data) noexcept;
  // Sends close_notify, best effort, never blocks.
  void shutdown() noexcept;

  // The newest session the peer gave us (TLS 1.3 tickets arrive after the handshake).
  Session session() const;
  bool resumed() const noexcept;
  std::string_view version() const noexcept;  // "TLSv1.3"
  std::string_view cipher() const noexcept;
  // Why the handshake (or a later read/write) failed, in words (verification error and the name
  // expected, the server's pin, OpenSSL's reason); empty while nothing has failed.
  const std::string& failure() const noexcept;

 private:
  Stream() = default;
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace dotproxy::tls
