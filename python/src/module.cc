// _dotproxy: the Python face of dotproxy::core. Messages (build, parse, serialise) go through
// dns::MessageBuilder/parseMessage; the client through client::Connection. Nothing here parses
// or frames DNS bytes itself. The GIL is released during every blocking call.

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dotproxy/client/connection.h"
#include "dotproxy/dns/message.h"
#include "dotproxy/dns/name.h"
#include "dotproxy/dns/presentation.h"
#include "dotproxy/dns/types.h"
#include "dotproxy/net/socket.h"
#include "dotproxy/tls/tls.h"

namespace py = pybind11;

namespace dotproxy::python {
namespace {

using client::Clock;

// ---- Python-side value types (plain data; the binding converts to and from the core's types).

struct PyQuestion {
  std::string name;
  uint16_t type = dns::type::A;
  uint16_t cls = dns::klass::IN;
};

struct PyRecord {
  std::string name;
  uint16_t type = 0;
  uint16_t cls = dns::klass::IN;
  uint32_t ttl = 0;
  py::bytes rdata;  // uncompressed
  std::string text;
};

struct PyEdns {
  uint8_t version = 0;
  uint16_t udp_size = dns::kDefaultEdnsUdpSize;
  bool do_bit = false;
  uint8_t ext_rcode = 0;
  std::vector<std::pair<uint16_t, py::bytes>> options;
};

struct PyMessage {
  uint16_t id = 0;
  uint16_t flags = 0;
  std::vector<PyQuestion> questions;
  std::vector<PyRecord> answer, authority, additional;
  std::optional<PyEdns> edns;
  size_t size = 0;  // bytes of the message it was parsed from; 0 if built in Python

  bool flag(uint16_t bit) const { return (flags & bit) != 0; }
  void setFlag(uint16_t bit, bool on) {
    flags = static_cast<uint16_t>(on ? (flags | bit) : (flags & ~bit));
  }
  uint16_t rcode() const {
    return static_cast<uint16_t>((flags & 0xf) | (edns ? edns->ext_rcode << 4 : 0));
  }
};

struct PyAnswer {
  PyMessage message;
  py::bytes wire;
  double connect = 0, handshake = 0, total = 0;  // seconds
  std::string transport;
  std::string tls_version, tls_cipher;
  bool tls_resumed = false;
};

// dotproxy.ParseError and dotproxy.QueryError, created at import and owned by the module (raw
// pointers: a py::object here would be released after the interpreter is gone).
PyObject* g_parse_error = nullptr;
PyObject* g_query_error = nullptr;

[[noreturn]] void raise(PyObject* type, const std::string& what) {
  PyErr_SetString(type, what.c_str());
  throw py::error_already_set();
}

std::string_view bytesView(const py::bytes& b) {
  char* data = nullptr;
  Py_ssize_t len = 0;
  if (PyBytes_AsStringAndSize(b.ptr(), &data, &len) != 0) throw py::error_already_set();
  return {data, static_cast<size_t>(len)};
}

py::bytes toBytes(WireView w) {
  return py::bytes(reinterpret_cast<const char*>(w.data()), w.size());
}

uint16_t typeCode(const py::object& t) {
  if (py::isinstance<py::int_>(t)) return t.cast<uint16_t>();
  auto text = t.cast<std::string>();
  auto v = dns::parseType(text);
  if (!v) throw py::value_error(fmt::format("unknown record type '{}'", text));
  return *v;
}

uint16_t classCode(const py::object& c) {
  if (py::isinstance<py::int_>(c)) return c.cast<uint16_t>();
  auto text = c.cast<std::string>();
  if (text == "IN") return dns::klass::IN;
  if (text == "CH") return dns::klass::CH;
  if (text == "ANY") return dns::klass::ANY;
  if (text.starts_with("CLASS")) {
    unsigned long v = 0;
    try {
      v = std::stoul(text.substr(5));
    } catch (const std::exception&) {
      v = 65536;
    }
    if (v <= 65535) return static_cast<uint16_t>(v);
  }
  throw py::value_error(fmt::format("unknown class '{}'", text));
}

std::string typeText(uint16_t t) {
  auto n = dns::typeName(t);
  return n.empty() ? fmt::format("TYPE{}", t) : std::string(n);
}

std::string classText(uint16_t c) {
  switch (c) {
    case dns::klass::IN:
      return "IN";
    case dns::klass::CH:
      return "CH";
    case dns::klass::ANY:
      return "ANY";
    default:
      return fmt::format("CLASS{}", c);
  }
}

dns::Name nameFrom(const std::string& text) {
  auto n = dns::Name::fromText(text);
  if (!n)
    throw py::value_error(fmt::format("'{}': not a domain name ({})", text, errcName(n.error())));
  return *n;
}

// ---- parse / to_wire

PyMessage convert(WireView wire, const dns::Message& m) {
  PyMessage out;
  out.id = m.header.id;
  out.flags = m.header.flags;
  out.size = wire.size();
  for (const auto& q : m.questions) out.questions.push_back({q.name.toText(), q.type, q.klass});
  const std::vector<dns::Record>* from[3] = {&m.answer, &m.authority, &m.additional};
  std::vector<PyRecord>* to[3] = {&out.answer, &out.authority, &out.additional};
  const char* names[3] = {"answer", "authority", "additional"};
  for (int s = 0; s < 3; ++s) {
    for (size_t i = 0; i < from[s]->size(); ++i) {
      const dns::Record& r = (*from[s])[i];
      auto rdata = dns::expandedRdata(wire, r);
      if (!rdata) {
        raise(g_parse_error, fmt::format("{}: rdata of {} record {} at offset {}",
                                         errcName(rdata.error()), names[s], i, r.rdata_offset));
      }
      to[s]->push_back({r.name.toText(), r.type, r.klass, r.ttl, toBytes(*rdata),
                        dns::rdataText(r.type, *rdata)});
    }
  }
  if (m.edns) {
    PyEdns e{.version = m.edns->version,
             .udp_size = m.edns->udp_size,
             .do_bit = m.edns->do_bit,
             .ext_rcode = m.edns->ext_rcode};
    for (const auto& o : m.edns->options) e.options.emplace_back(o.code, toBytes(o.data));
    out.edns = std::move(e);
  }
  return out;
}

PyMessage parseWire(WireView wire) {
  dns::ParseFailure failure;
  auto m = dns::parseMessage(wire, &failure);
  if (!m) {
    raise(g_parse_error, failure.offset == 0 && std::string_view(failure.element) == "header"
                             ? fmt::format("{}: header ({} bytes, 12 needed)",
                                           errcName(failure.error), wire.size())
                             : fmt::format("{}: {} {} at offset {}", errcName(failure.error),
                                           failure.element, failure.index, failure.offset));
  }
  return convert(wire, *m);
}

py::bytes toWire(const PyMessage& m) {
  PacketBuffer out;
  dns::MessageBuilder b(out);
  b.header({.id = m.id, .flags = m.flags});
  for (const auto& q : m.questions) b.question(nameFrom(q.name), q.type, q.cls);
  const std::vector<PyRecord>* sections[3] = {&m.answer, &m.authority, &m.additional};
  const dns::Section kinds[3] = {dns::Section::Answer, dns::Section::Authority,
                                 dns::Section::Additional};
  for (int s = 0; s < 3; ++s) {
    for (const auto& r : *sections[s]) {
      b.record(kinds[s], nameFrom(r.name), r.type, r.cls, r.ttl, asWire(bytesView(r.rdata)));
    }
  }
  if (m.edns) {
    dns::Edns e{.udp_size = m.edns->udp_size,
                .ext_rcode = m.edns->ext_rcode,
                .version = m.edns->version,
                .do_bit = m.edns->do_bit};
    for (const auto& [code, data] : m.edns->options) {
      auto v = asWire(bytesView(data));
      e.options.push_back({code, std::vector<std::byte>(v.begin(), v.end())});
    }
    b.opt(e);
  }
  if (auto ok = b.finish(); !ok) {
    throw py::value_error(fmt::format("message cannot be encoded: {}", errcName(ok.error())));
  }
  return toBytes(out);
}

uint16_t randomId() {
  static std::mt19937 rng{std::random_device{}()};
  return static_cast<uint16_t>(rng());
}

py::bytes buildQuery(const std::string& name, const py::object& type, const py::object& cls,
                     bool rd, bool do_bit, bool cd, bool edns, uint16_t bufsize,
                     const std::vector<std::pair<uint16_t, py::bytes>>& options,
                     std::optional<uint16_t> id) {
  PyMessage m;
  m.id = id.value_or(randomId());
  m.setFlag(dns::flag::RD, rd);
  m.setFlag(dns::flag::CD, cd);
  m.questions.push_back({name, typeCode(type), classCode(cls)});
  if (!edns && (do_bit || !options.empty())) {
    throw py::value_error("do=True and options need edns=True");
  }
  if (edns) m.edns = PyEdns{.udp_size = bufsize, .do_bit = do_bit, .options = options};
  return toWire(m);
}

// ---- client

struct Target {
  client::ConnectionSettings settings;
};

client::Transport transportFrom(const std::string& t) {
  if (t == "udp") return client::Transport::Udp;
  if (t == "tcp") return client::Transport::Tcp;
  if (t == "tls" || t == "dot") return client::Transport::Tls;
  throw py::value_error(fmt::format("transport must be udp, tcp or tls, not '{}'", t));
}

std::string transportText(client::Transport t) {
  switch (t) {
    case client::Transport::Udp:
      return "udp";
    case client::Transport::Tcp:
      return "tcp";
    case client::Transport::Tls:
      return "tls";
  }
  return "?";
}

client::ConnectionSettings settingsFrom(const std::string& server, const std::string& transport,
                                        std::optional<uint16_t> port,
                                        std::optional<std::string> tls_name,
                                        std::optional<std::string> ca, const py::object& pin,
                                        bool insecure, double timeout) {
  client::ConnectionSettings s;
  s.transport = transportFrom(transport);
  const uint16_t default_port = s.transport == client::Transport::Tls ? 853 : 53;
  auto addr = net::SocketAddress::parse(server, port.value_or(default_port));
  if (!addr) {
    throw py::value_error(fmt::format("server must be an IP address[:port], not '{}'", server));
  }
  if (port) addr->setPort(*port);
  s.server = *addr;
  s.tls_name = tls_name.value_or(std::string());
  s.ca_file = ca.value_or(std::string());
  s.insecure = insecure;
  std::vector<std::string> pins;
  if (!pin.is_none()) {
    if (py::isinstance<py::str>(pin)) {
      pins.push_back(pin.cast<std::string>());
    } else {
      pins = pin.cast<std::vector<std::string>>();
    }
  }
  for (const auto& p : pins) {
    auto decoded = tls::decodePin(p);
    if (!decoded) throw py::value_error(fmt::format("pin '{}' is not base64 of 32 bytes", p));
    s.pins.push_back(*decoded);
  }
  if (s.transport == client::Transport::Tls && s.tls_name.empty() && s.pins.empty() && !insecure) {
    s.tls_name = s.server.host();  // verify the IP address
  }
  if (!(timeout > 0)) throw py::value_error("timeout must be positive");
  s.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout * 1000));
  return s;
}

Clock::time_point deadlineAfter(double seconds) {
  return Clock::now() + std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
}

[[noreturn]] void raiseIo(Errc e, const std::string& why) {
  if (e == Errc::Timeout) raise(PyExc_TimeoutError, why);
  raise(g_query_error, why.empty() ? std::string(errcName(e)) : why);
}

// A Python-owned connection: the core's, plus replies that arrived before they were asked for.
class PyConnection {
 public:
  PyConnection(const std::string& server, const std::string& transport,
               std::optional<uint16_t> port, std::optional<std::string> tls_name,
               std::optional<std::string> ca, const py::object& pin, bool insecure, double timeout)
      : settings_(settingsFrom(server, transport, port, tls_name, ca, pin, insecure, timeout)),
        timeout_(timeout) {
    std::string why;
    Result<client::Connection> c = std::unexpected(Errc::IoError);
    {
      py::gil_scoped_release nogil;
      c = client::Connection::open(settings_, &why);
    }
    if (!c) raiseIo(c.error(), why);
    conn_.emplace(std::move(*c));
  }

  // Sends one query (bytes) or several; returns their IDs.
  std::vector<uint16_t> send(const py::object& queries) {
    std::vector<std::string> wires;
    if (py::isinstance<py::bytes>(queries)) {
      wires.push_back(queries.cast<std::string>());
    } else {
      for (auto q : queries) wires.push_back(q.cast<std::string>());
    }
    std::vector<uint16_t> ids;
    for (const auto& w : wires) {
      if (w.size() < 2) throw py::value_error("a query is at least 2 bytes (the ID)");
      ids.push_back(loadU16(reinterpret_cast<const std::byte*>(w.data())));
    }
    auto& c = open();
    Result<void> r;
    {
      py::gil_scoped_release nogil;
      const auto deadline = deadlineAfter(timeout_);
      for (const auto& w : wires) {
        r = c.send(asWire(w), deadline);
        if (!r) break;
      }
    }
    if (!r) raiseIo(r.error(), c.failure());
    return ids;
  }

  // The next reply (id None) or the reply with this ID; replies for other IDs are kept for later.
  PyAnswer receive(std::optional<uint16_t> id, std::optional<double> timeout) {
    if (id) {
      if (auto it = early_.find(*id); it != early_.end()) {
        PacketBuffer wire = std::move(it->second);
        early_.erase(it);
        return answer(wire);
      }
    } else if (!early_.empty()) {
      auto it = early_.begin();
      PacketBuffer wire = std::move(it->second);
      early_.erase(it);
      return answer(wire);
    }
    auto& c = open();
    const auto deadline = deadlineAfter(timeout.value_or(timeout_));
    for (;;) {
      Result<PacketBuffer> r = std::unexpected(Errc::IoError);
      {
        py::gil_scoped_release nogil;
        r = c.receive(deadline);
      }
      if (!r) raiseIo(r.error(), c.failure());
      if (r->size() < 2) raise(g_parse_error, fmt::format("truncated: {}-byte reply", r->size()));
      const uint16_t got = loadU16(r->data());
      if (!id || got == *id) return answer(*r);
      early_.insert_or_assign(got, std::move(*r));
    }
  }

  void close() { conn_.reset(); }
  bool closed() const { return !conn_; }
  std::string tlsVersion() const { return conn_ ? conn_->tlsInfo().version : std::string(); }
  std::string tlsCipher() const { return conn_ ? conn_->tlsInfo().cipher : std::string(); }
  bool tlsResumed() const { return conn_ && conn_->tlsInfo().resumed; }

  PyAnswer answer(const PacketBuffer& wire) {
    PyAnswer a;
    a.message = parseWire(wire);
    a.wire = toBytes(wire);
    a.transport = transportText(settings_.transport);
    if (conn_) {
      a.connect = std::chrono::duration<double>(conn_->connectTime()).count();
      a.handshake = std::chrono::duration<double>(conn_->handshakeTime()).count();
      a.tls_version = conn_->tlsInfo().version;
      a.tls_cipher = conn_->tlsInfo().cipher;
      a.tls_resumed = conn_->tlsInfo().resumed;
    }
    return a;
  }

 private:
  client::Connection& open() {
    if (!conn_) raise(g_query_error, "the connection is closed");
    return *conn_;
  }

  client::ConnectionSettings settings_;
  double timeout_;
  std::optional<client::Connection> conn_;
  std::unordered_map<uint16_t, PacketBuffer> early_;
};

bool sameQuestion(const PyMessage& a, const PyMessage& b) {
  if (a.questions.size() != b.questions.size()) return false;
  for (size_t i = 0; i < a.questions.size(); ++i) {
    const auto& x = a.questions[i];
    const auto& y = b.questions[i];
    auto nx = dns::Name::fromText(x.name), ny = dns::Name::fromText(y.name);
    if (!nx || !ny || !nx->equalsIgnoreCase(*ny) || x.type != y.type || x.cls != y.cls)
      return false;
  }
  return true;
}

PyAnswer query(const std::string& server, const std::string& name, const py::object& type,
               const std::string& transport, std::optional<uint16_t> port,
               std::optional<std::string> tls_name, std::optional<std::string> ca,
               const py::object& pin, double timeout, const py::object& cls, bool rd, bool do_bit,
               bool cd, bool insecure) {
  const auto start = Clock::now();
  py::bytes q =
      buildQuery(name, type, cls, rd, do_bit, cd, true, dns::kDefaultEdnsUdpSize, {}, std::nullopt);
  PyMessage asked = parseWire(asWire(bytesView(q)));
  PyConnection conn(server, transport, port, tls_name, ca, pin, insecure, timeout);
  conn.send(q);
  const auto deadline = start + std::chrono::microseconds(static_cast<int64_t>(timeout * 1e6));
  for (;;) {
    const double left = std::chrono::duration<double>(deadline - Clock::now()).count();
    if (left <= 0) raiseIo(Errc::Timeout, fmt::format("{}: timed out waiting for a reply", server));
    PyAnswer a = conn.receive(std::nullopt, left);
    // RFC 5452 9: a reply with another ID or question is not ours; keep waiting.
    if (a.message.id != asked.id || !a.message.flag(dns::flag::QR) ||
        !sameQuestion(a.message, asked)) {
      continue;
    }
    a.total = std::chrono::duration<double>(Clock::now() - start).count();
    return a;
  }
}

std::string messageRepr(const PyMessage& m) {
  std::string q = m.questions.empty()
                      ? std::string("-")
                      : fmt::format("{} {} {}", m.questions[0].name, classText(m.questions[0].cls),
                                    typeText(m.questions[0].type));
  auto rc = dns::rcodeName(m.rcode());
  return fmt::format("<Message id={} {} {} answer={} authority={} additional={}{}>", m.id,
                     rc.empty() ? fmt::format("RCODE{}", m.rcode()) : std::string(rc), q,
                     m.answer.size(), m.authority.size(), m.additional.size(),
                     m.edns ? fmt::format(" edns udp_size={}", m.edns->udp_size) : std::string());
}

}  // namespace
}  // namespace dotproxy::python

PYBIND11_MODULE(_dotproxy, m) {
  using namespace dotproxy;
  using namespace dotproxy::python;
  m.doc() = "dotproxy's core (DNS messages and a UDP/TCP/DoT client) for Python.";

  g_parse_error = PyErr_NewExceptionWithDoc(
      "dotproxy.ParseError",
      "A DNS message that does not parse; the text names what is wrong and the byte offset.",
      PyExc_ValueError, nullptr);
  if (!g_parse_error) throw py::error_already_set();
  m.attr("ParseError") = py::handle(g_parse_error);  // the module keeps a reference too
  g_query_error = PyErr_NewExceptionWithDoc(
      "dotproxy.QueryError",
      "A query that got no usable reply: refused, reset, closed, TLS verification failed...",
      PyExc_OSError, nullptr);
  if (!g_query_error) throw py::error_already_set();
  m.attr("QueryError") = py::handle(g_query_error);

  py::class_<PyQuestion>(m, "Question", "One question: name, type and class (numbers).")
      .def(py::init([](const std::string& name, const py::object& type, const py::object& cls) {
             return PyQuestion{name, typeCode(type), classCode(cls)};
           }),
           py::arg("name"), py::arg("type") = "A", py::arg("cls") = "IN")
      .def_readwrite("name", &PyQuestion::name, "Presentation form, absolute (ends with '.').")
      .def_readwrite("type", &PyQuestion::type)
      .def_readwrite("cls", &PyQuestion::cls)
      .def_property_readonly("type_text", [](const PyQuestion& q) { return typeText(q.type); })
      .def("__repr__", [](const PyQuestion& q) {
        return fmt::format("<Question {} {} {}>", q.name, classText(q.cls), typeText(q.type));
      });

  py::class_<PyRecord>(m, "Record",
                       "One resource record. rdata is uncompressed wire data; text its "
                       "presentation form (RFC 3597 \\# form for types without one).")
      .def(py::init([](const std::string& name, const py::object& type, const py::object& cls,
                       uint32_t ttl, const py::bytes& rdata) {
             auto t = typeCode(type);
             return PyRecord{name, t,     classCode(cls),
                             ttl,  rdata, dns::rdataText(t, asWire(bytesView(rdata)))};
           }),
           py::arg("name"), py::arg("type"), py::arg("cls") = "IN", py::arg("ttl") = 0,
           py::arg("rdata") = py::bytes())
      .def_readwrite("name", &PyRecord::name)
      .def_readwrite("type", &PyRecord::type)
      .def_readwrite("cls", &PyRecord::cls)
      .def_readwrite("ttl", &PyRecord::ttl)
      .def_readwrite("rdata", &PyRecord::rdata)
      .def_readonly("text", &PyRecord::text)
      .def_property_readonly("type_text", [](const PyRecord& r) { return typeText(r.type); })
      .def("__repr__", [](const PyRecord& r) {
        return fmt::format("<Record {} {} {} {} {}>", r.name, r.ttl, classText(r.cls),
                           typeText(r.type), r.text);
      });

  py::class_<PyEdns>(m, "Edns", "The OPT pseudo-record (RFC 6891).")
      .def(py::init<>())
      .def_readwrite("version", &PyEdns::version)
      .def_readwrite("udp_size", &PyEdns::udp_size)
      .def_readwrite("do", &PyEdns::do_bit, "The DNSSEC OK bit.")
      .def_readwrite("ext_rcode", &PyEdns::ext_rcode, "Upper 8 bits of the 12-bit RCODE.")
      .def_readwrite("options", &PyEdns::options, "List of (code, data) pairs, in wire order.")
      .def("__repr__", [](const PyEdns& e) {
        return fmt::format("<Edns version={} udp_size={} do={} options={}>", e.version, e.udp_size,
                           e.do_bit ? "True" : "False", e.options.size());
      });

  auto flagProperty = [](py::class_<PyMessage>& c, const char* name, uint16_t bit) {
    c.def_property(
        name, [bit](const PyMessage& msg) { return msg.flag(bit); },
        [bit](PyMessage& msg, bool on) { msg.setFlag(bit, on); });
  };
  py::class_<PyMessage> msg(m, "Message",
                            "A parsed DNS message: header, flags, questions, the three sections "
                            "(OPT excluded) and edns. Fields are writable; to_wire() serialises.");
  msg.def(py::init<>())
      .def_readwrite("id", &PyMessage::id)
      .def_readwrite("flags", &PyMessage::flags, "The header's second 16-bit word.")
      .def_property_readonly("opcode", [](const PyMessage& x) { return (x.flags >> 11) & 0xf; })
      .def_property_readonly("rcode", &PyMessage::rcode,
                             "The full 12-bit RCODE (header and OPT extended bits).")
      .def_property_readonly("rcode_text",
                             [](const PyMessage& x) {
                               auto n = dns::rcodeName(x.rcode());
                               return n.empty() ? fmt::format("RCODE{}", x.rcode())
                                                : std::string(n);
                             })
      .def_readwrite("questions", &PyMessage::questions)
      .def_readwrite("answer", &PyMessage::answer)
      .def_readwrite("authority", &PyMessage::authority)
      .def_readwrite("additional", &PyMessage::additional)
      .def_readwrite("edns", &PyMessage::edns)
      .def_readonly("size", &PyMessage::size, "Bytes of the wire form it was parsed from.")
      .def("to_wire", &toWire, "Serialises the message (names uncompressed).")
      .def("__repr__", &messageRepr);
  flagProperty(msg, "qr", dns::flag::QR);
  flagProperty(msg, "aa", dns::flag::AA);
  flagProperty(msg, "tc", dns::flag::TC);
  flagProperty(msg, "rd", dns::flag::RD);
  flagProperty(msg, "ra", dns::flag::RA);
  flagProperty(msg, "ad", dns::flag::AD);
  flagProperty(msg, "cd", dns::flag::CD);

  py::class_<PyAnswer>(m, "Answer",
                       "A reply and how it came: timings in seconds, transport, TLS details.")
      .def_readonly("message", &PyAnswer::message)
      .def_readonly("wire", &PyAnswer::wire)
      .def_readonly("connect", &PyAnswer::connect, "TCP connect (0 for UDP's connect()).")
      .def_readonly("handshake", &PyAnswer::handshake, "TLS handshake; 0 unless tls.")
      .def_readonly("total", &PyAnswer::total, "From the call to the reply (query() only).")
      .def_readonly("transport", &PyAnswer::transport)
      .def_readonly("tls_version", &PyAnswer::tls_version)
      .def_readonly("tls_cipher", &PyAnswer::tls_cipher)
      .def_readonly("tls_resumed", &PyAnswer::tls_resumed)
      .def_property_readonly("rcode", [](const PyAnswer& a) { return a.message.rcode(); })
      .def("__repr__", [](const PyAnswer& a) {
        return fmt::format("<Answer {} via {} in {:.1f} ms>", messageRepr(a.message), a.transport,
                           a.total * 1000);
      });

  m.def("build_query", &buildQuery,
        "Builds a query: one question, RD/DO/CD as given, an OPT record unless edns=False "
        "(udp size bufsize, options as (code, bytes) pairs). A random ID unless id is given.",
        py::arg("name"), py::arg("type") = "A", py::arg("cls") = "IN", py::arg("rd") = true,
        py::arg("do") = false, py::arg("cd") = false, py::arg("edns") = true,
        py::arg("bufsize") = dns::kDefaultEdnsUdpSize,
        py::arg("options") = std::vector<std::pair<uint16_t, py::bytes>>{},
        py::arg("id") = py::none());
  m.def(
      "parse", [](const py::bytes& wire) { return parseWire(asWire(bytesView(wire))); },
      "Parses any DNS message. Raises ParseError naming what is wrong and its byte offset.",
      py::arg("wire"));

  m.def("query", &query,
        "Asks one question over udp, tcp or tls and returns the Answer (replies with another ID "
        "or question are ignored). Raises TimeoutError after `timeout` seconds, QueryError when "
        "the server refuses, resets, closes or fails TLS verification. For tls the certificate "
        "is verified for tls_name (default: the server's IP address) against ca (default: the "
        "system store) and/or pinned. The GIL is released while waiting.",
        py::arg("server"), py::arg("name"), py::arg("type") = "A", py::arg("transport") = "udp",
        py::arg("port") = py::none(), py::arg("tls_name") = py::none(), py::arg("ca") = py::none(),
        py::arg("pin") = py::none(), py::arg("timeout") = 2.0, py::arg("cls") = "IN",
        py::arg("rd") = true, py::arg("do") = false, py::arg("cd") = false,
        py::arg("insecure") = false);

  py::class_<PyConnection>(m, "Connection",
                           "One client connection (udp, tcp or tls), opened by the constructor. "
                           "send() pipelines queries; receive() returns replies matched by ID. "
                           "A context manager; the GIL is released while waiting.")
      .def(py::init<const std::string&, const std::string&, std::optional<uint16_t>,
                    std::optional<std::string>, std::optional<std::string>, const py::object&, bool,
                    double>(),
           py::arg("server"), py::arg("transport") = "tcp", py::arg("port") = py::none(),
           py::arg("tls_name") = py::none(), py::arg("ca") = py::none(),
           py::arg("pin") = py::none(), py::arg("insecure") = false, py::arg("timeout") = 2.0)
      .def("send", &PyConnection::send,
           "Sends one query (bytes) or a list of them back to back; returns their IDs.",
           py::arg("queries"))
      .def("receive", &PyConnection::receive,
           "The reply with this ID (others that arrive first are kept), or the next reply if id "
           "is None, as an Answer. TimeoutError, QueryError (closed, reset), ParseError.",
           py::arg("id") = py::none(), py::arg("timeout") = py::none())
      .def("close", &PyConnection::close)
      .def_property_readonly("closed", &PyConnection::closed)
      .def_property_readonly("tls_version", &PyConnection::tlsVersion)
      .def_property_readonly("tls_cipher", &PyConnection::tlsCipher)
      .def_property_readonly("tls_resumed", &PyConnection::tlsResumed)
      .def(
          "__enter__", [](PyConnection& c) -> PyConnection& { return c; },
          py::return_value_policy::reference)
      .def("__exit__", [](PyConnection& c, const py::args&) { c.close(); });
}
