#include "options.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <sys/socket.h>

#include <charconv>
#include <string_view>

#include "dotproxy/dns/types.h"

namespace dotproxy::dotq {
namespace {

using Error = std::unexpected<std::string>;

template <class T>
std::optional<T> parseNumber(std::string_view text, T max) {
  unsigned long long v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || v > max) {
    return std::nullopt;
  }
  return static_cast<T>(v);
}

bool equalsUpper(std::string_view a, std::string_view upper) {
  if (a.size() != upper.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c != upper[i]) return false;
  }
  return true;
}

// IN, CH, HS, NONE, ANY or CLASSnnn (RFC 3597).
std::optional<uint16_t> parseClass(std::string_view text) {
  if (equalsUpper(text, "IN")) return dns::klass::IN;
  if (equalsUpper(text, "CH")) return dns::klass::CH;
  if (equalsUpper(text, "HS")) return uint16_t{4};
  if (equalsUpper(text, "NONE")) return uint16_t{254};
  if (equalsUpper(text, "ANY")) return dns::klass::ANY;
  if (text.size() > 5 && equalsUpper(text.substr(0, 5), "CLASS")) {
    return parseNumber<uint16_t>(text.substr(5), 65535);
  }
  return std::nullopt;
}

// "+name" or "+name=value": the value after '=' if `arg` is that option.
std::optional<std::string_view> plusValue(std::string_view arg, std::string_view name) {
  if (arg.size() > name.size() + 1 && arg.substr(0, name.size()) == name &&
      arg[name.size()] == '=') {
    return arg.substr(name.size() + 1);
  }
  return std::nullopt;
}

// An even number of hex digits as bytes; nullopt otherwise.
std::optional<std::vector<std::byte>> parseHex(std::string_view text) {
  if (text.size() % 2 != 0) return std::nullopt;
  std::vector<std::byte> out;
  for (size_t i = 0; i < text.size(); i += 2) {
    uint8_t b = 0;
    auto [end, ec] = std::from_chars(text.data() + i, text.data() + i + 2, b, 16);
    if (ec != std::errc{} || end != text.data() + i + 2) return std::nullopt;
    out.push_back(std::byte{b});
  }
  return out;
}

}  // namespace

std::optional<std::string> reverseName(const std::string& address) {
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) {
    const auto* b = reinterpret_cast<const uint8_t*>(&v4);
    return fmt::format("{}.{}.{}.{}.in-addr.arpa.", b[3], b[2], b[1], b[0]);
  }
  if (inet_pton(AF_INET6, address.c_str(), &v6) == 1) {
    std::string out;
    for (int i = 15; i >= 0; --i) {
      out += fmt::format("{:x}.{:x}.", v6.s6_addr[i] & 0xf, v6.s6_addr[i] >> 4);
    }
    return out + "ip6.arpa.";
  }
  return std::nullopt;
}

std::expected<Options, std::string> parseArgs(std::span<const std::string> args) {
  Options o;
  std::optional<std::string> name;
  uint16_t type = dns::type::A, klass = 1;
  bool have_type = false, have_class = false;
  // A second name starts the next question; its type and class start again from A and IN.
  auto finish = [&]() -> std::optional<std::string> {
    auto n = dns::Name::fromText(*name);
    if (!n) return fmt::format("bad name '{}': {}", *name, errcName(n.error()));
    o.questions.push_back({.name = *n, .type = type, .klass = klass});
    name.reset();
    type = dns::type::A;
    klass = 1;
    have_type = have_class = false;
    return std::nullopt;
  };

  // Options taking a value accept it attached ("-p5353") or as the next argument ("-p 5353").
  auto valueOf = [&](size_t& i, std::string_view flag) -> std::optional<std::string> {
    const std::string& a = args[i];
    if (a.size() > flag.size()) return a.substr(flag.size());
    if (i + 1 < args.size()) return args[++i];
    return std::nullopt;
  };

  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string_view s = a;
    if (s == "-h" || s == "--help" || s == "+help") {
      o.help = true;
    } else if (s.starts_with('@')) {
      if (s.size() == 1) return Error("'@' needs a server address");
      o.server = a.substr(1);
    } else if (s.starts_with("-p")) {
      auto v = valueOf(i, "-p");
      auto p = v ? parseNumber<uint16_t>(*v, 65535) : std::nullopt;
      if (!p) return Error(fmt::format("bad port for -p: '{}'", v.value_or("")));
      o.port = *p;
    } else if (s.starts_with("-t")) {
      auto v = valueOf(i, "-t");
      auto t = v ? dns::parseType(*v) : std::nullopt;
      if (!t) return Error(fmt::format("unknown type for -t: '{}'", v.value_or("")));
      type = *t;
      have_type = true;
    } else if (s.starts_with("-c")) {
      auto v = valueOf(i, "-c");
      auto c = v ? parseClass(*v) : std::nullopt;
      if (!c) return Error(fmt::format("unknown class for -c: '{}'", v.value_or("")));
      klass = *c;
      have_class = true;
    } else if (s.starts_with("-x")) {
      auto v = valueOf(i, "-x");
      auto r = v ? reverseName(*v) : std::nullopt;
      if (!r) return Error(fmt::format("not an IP address for -x: '{}'", v.value_or("")));
      if (name) {
        if (auto e = finish()) return Error(*e);
      }
      name = *r;
      if (!have_type) type = dns::type::PTR;
    } else if (s == "-4") {
      o.family = AF_INET;
    } else if (s == "-6") {
      o.family = AF_INET6;
    } else if (s == "+tcp" || s == "+vc") {
      if (o.transport == Transport::Udp) o.transport = Transport::Tcp;
    } else if (s == "+notcp" || s == "+novc") {
      if (o.transport == Transport::Tcp) o.transport = Transport::Udp;
    } else if (s == "+tls") {
      o.transport = Transport::Tls;
    } else if (auto v = plusValue(s, "+tls-ca")) {
      o.tls.ca_file = std::string(*v);
      o.transport = Transport::Tls;
    } else if (auto v = plusValue(s, "+tls-hostname")) {
      o.tls.hostname = std::string(*v);
      o.transport = Transport::Tls;
    } else if (auto v = plusValue(s, "+tls-pin")) {
      auto pin = tls::decodePin(*v);
      if (!pin) return Error(fmt::format("+tls-pin: not a base64 SHA-256 SPKI pin: '{}'", *v));
      o.tls.pins.push_back(*pin);
      o.transport = Transport::Tls;
    } else if (s == "+tls-insecure") {
      o.tls.insecure = true;
      o.transport = Transport::Tls;
    } else if (s == "+short") {
      o.output = Output::Short;
    } else if (s == "+noshort" || s == "+nojson") {
      o.output = Output::Full;
    } else if (s == "+json") {
      o.output = Output::Json;
    } else if (s == "+dnssec") {
      o.dnssec = true;
    } else if (s == "+nodnssec") {
      o.dnssec = false;
    } else if (s == "+cd" || s == "+cdflag") {
      o.cd = true;
    } else if (s == "+nocd" || s == "+nocdflag") {
      o.cd = false;
    } else if (s == "+rd" || s == "+recurse") {
      o.rd = true;
    } else if (s == "+nord" || s == "+norecurse") {
      o.rd = false;
    } else if (s == "+adflag") {
      o.ad = true;
    } else if (s == "+noadflag") {
      o.ad = false;
    } else if (s == "+nsid") {
      o.nsid = true;
    } else if (s == "+nonsid") {
      o.nsid = false;
    } else if (auto v = plusValue(s, "+subnet")) {
      auto subnet = dns::parseClientSubnetText(*v);
      if (!subnet) {
        return Error(fmt::format("+subnet: not ADDR/PREFIX (e.g. 192.0.2.0/24, 0/0): '{}'", *v));
      }
      o.subnet = *subnet;
    } else if (s == "+subnet") {
      return Error("+subnet needs a value: +subnet=ADDR/PREFIX (e.g. 192.0.2.0/24, 0/0)");
    } else if (s == "+nosubnet") {
      o.subnet.reset();
    } else if (s == "+padding") {
      o.padding_block = Options::kDefaultPaddingBlock;
    } else if (auto v = plusValue(s, "+padding")) {
      auto n = parseNumber<size_t>(*v, Options::kMaxPaddingBlock);
      if (!n || *n == 0) {
        return Error(fmt::format("+padding: not a block size from 1 to {}: '{}'",
                                 Options::kMaxPaddingBlock, *v));
      }
      o.padding_block = *n;
    } else if (s == "+nopadding") {
      o.padding_block = 0;
    } else if (s == "+cookie") {
      o.cookie = std::vector<std::byte>{};
    } else if (auto v = plusValue(s, "+cookie")) {
      auto bytes = parseHex(*v);
      if (!bytes || !dns::parseCookie(*bytes)) {
        return Error(fmt::format(
            "+cookie: not a cookie in hex (8-byte client cookie, optionally followed by an "
            "8 to 32-byte server cookie): '{}'",
            *v));
      }
      o.cookie = std::move(*bytes);
    } else if (s == "+nocookie") {
      o.cookie.reset();
    } else if (s == "+keepopen") {
      o.keepopen = true;
    } else if (s == "+nokeepopen") {
      o.keepopen = false;
    } else if (s == "+stats") {
      o.stats = true;
    } else if (s == "+nostats") {
      o.stats = false;
    } else if (s == "+https" || s.starts_with("+https=") || s.starts_with("+https-")) {
      return Error(
          fmt::format("{}: DNS-over-HTTPS is not supported yet (it comes with the DoH issue)", a));
    } else if (s == "+edns") {
      o.edns = true;
    } else if (s == "+noedns") {
      o.edns = false;
    } else if (auto v = plusValue(s, "+bufsize")) {
      auto n = parseNumber<uint16_t>(*v, 65535);
      if (!n) return Error(fmt::format("+bufsize: not a number from 0 to 65535: '{}'", *v));
      o.bufsize = *n;
    } else if (auto v = plusValue(s, "+timeout")) {
      auto n = parseNumber<unsigned>(*v, 3600);
      if (!n || *n == 0) return Error(fmt::format("+timeout: not a number of seconds: '{}'", *v));
      o.timeout = std::chrono::seconds(*n);
    } else if (auto v = plusValue(s, "+retry")) {
      auto n = parseNumber<unsigned>(*v, 100);
      if (!n) return Error(fmt::format("+retry: not a number: '{}'", *v));
      o.retry = *n;
    } else if (auto v = plusValue(s, "+tries")) {
      auto n = parseNumber<unsigned>(*v, 101);
      if (!n || *n == 0) return Error(fmt::format("+tries: not a positive number: '{}'", *v));
      o.retry = *n - 1;
    } else if (s.starts_with('+') || (s.starts_with('-') && s.size() > 1)) {
      return Error(fmt::format("unknown option '{}'", a));
    } else if (!have_type && name && dns::parseType(s)) {
      // dig's rule: after the name, a word that names a type is the type ("example.com MX")...
      type = *dns::parseType(s);
      have_type = true;
    } else if (!have_class && name && parseClass(s)) {
      klass = *parseClass(s);
      have_class = true;
    } else if (!name) {
      // ...and before the name too, unless it is the only word left ("MX example.com").
      if (!have_type && dns::parseType(s) && i + 1 < args.size() && !args[i + 1].starts_with('+') &&
          !args[i + 1].starts_with('@') && !args[i + 1].starts_with('-')) {
        type = *dns::parseType(s);
        have_type = true;
      } else {
        name = a;
      }
    } else {
      if (auto e = finish()) return Error(*e);
      name = a;
    }
  }
  if (o.help) return o;
  if (name) {
    if (auto e = finish()) return Error(*e);
  }
  if (o.questions.empty()) return Error("no name to query (see dotq --help)");
  if (!o.tls.hostname.empty() || !o.tls.ca_file.empty() || !o.tls.pins.empty() || o.tls.insecure) {
    o.transport = Transport::Tls;
  }
  // +keepopen pipelines over a stream: over UDP it means TCP, as in dig.
  if (o.keepopen && o.transport == Transport::Udp) o.transport = Transport::Tcp;
  return o;
}

std::string_view usage() {
  return R"(Usage: dotq [@server] [-p PORT] [-t TYPE] [-c CLASS] [-4|-6] [-x ADDR] name [type] [class]
            [+options]

A dig-style DNS client over UDP, TCP and DNS-over-TLS, built on dotproxy's core.
Arguments come in any order; a name and a type in either order. Several names are asked in
turn, each with the type and class that follow it ("dotq a.test b.test AAAA").

  @server             server IP address or host name (default 127.0.0.1; resolv.conf is not read)
  -p PORT             server port (default 53; 853 with +tls)
  -t TYPE             query type (A, AAAA, MX, TXT, ..., TYPEnnn); default A
  -c CLASS            query class (IN, CH, HS, ANY, CLASSnnn); default IN
  -4, -6              use IPv4 or IPv6 only when resolving the server's name
  -x ADDR             reverse lookup (PTR) of an IPv4 or IPv6 address
  +tcp                use TCP (UDP answers with TC=1 are retried over TCP automatically)
  +tls                use DNS-over-TLS (RFC 7858); the certificate is verified
  +tls-ca=FILE        verify against this PEM bundle instead of the system trust store
  +tls-hostname=NAME  name for SNI and verification (default: the server as given)
  +tls-pin=BASE64     require this SHA-256 SPKI pin (repeatable)
  +tls-insecure       do not verify the certificate chain or name (pins still apply)
  +https              not supported yet: DNS-over-HTTPS comes with the DoH issue
  +short              print only the rdata of the answer section
  +json               print the reply as one JSON object (RFC 8427 names, "dotq..." extras)
  +keepopen           send every query over one TCP (or, with +tls, DoT) connection, all
                      written before any reply is read; replies print as they arrive, each
                      with ";; answer N of M, query #K" (implies +tcp unless +tls)
  +stats              timing breakdown per query: connect, TLS handshake, first byte, total
  +dnssec             set the DO bit          +cd      set the CD bit
  +adflag             set the AD bit (+noadflag: clear it, the default)
  +rd / +norecurse    set / clear RD (default set)
  +bufsize=N          EDNS UDP payload size (default 1232)
  +noedns             send no OPT record (and so none of the EDNS options below)
  +nsid               ask for the server's name server identifier (RFC 5001)
  +subnet=ADDR/PREFIX send an EDNS Client Subnet (RFC 7871); +subnet=0/0 asks for none
  +padding[=BLOCK]    pad queries to a multiple of BLOCK bytes (RFC 7830/8467; default 128);
                      on by default over TLS with 128, +nopadding turns it off
  +cookie[=HEX]       send a DNS cookie (RFC 7873): a random 8-byte client cookie, or HEX
                      (client cookie, optionally followed by a server cookie)
  +timeout=SECONDS    per try (default 5)
  +retry=N            UDP retries after the first try (default 2); +tries=N is N-1 retries
  -h, --help          this text

Exit status: 0 a reply was received (whatever its RCODE), 9 no reply (timeout, connection or TLS
failure), 10 usage error.
)";
}

}  // namespace dotproxy::dotq
