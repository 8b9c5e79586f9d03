#include "faults.h"

#include <array>
#include <charconv>
#include <utility>

#include <algorithm>

#include <fmt/format.h>

#include "dotproxy/dns/query.h"
#include "dotproxy/dns/types.h"
#include "dotproxy/wire/writer.h"

namespace dotproxy::dotmock {

namespace {

constexpr std::array<std::pair<std::string_view, FaultAction>, 16> kActions = {{
    {"delay", FaultAction::Delay},
    {"drop", FaultAction::Drop},
    {"close", FaultAction::Close},
    {"close-mid", FaultAction::CloseMid},
    {"wrong-id", FaultAction::WrongId},
    {"wrong-question", FaultAction::WrongQuestion},
    {"malformed", FaultAction::Malformed},
    {"truncated", FaultAction::Truncated},
    {"oversized", FaultAction::Oversized},
    {"undersized", FaultAction::Undersized},
    {"servfail", FaultAction::ServFail},
    {"refused", FaultAction::Refused},
    {"down", FaultAction::Down},
    {"stall-handshake", FaultAction::StallHandshake},
    {"expired-cert", FaultAction::ExpiredCert},
    {"wrong-name-cert", FaultAction::WrongNameCert},
}};

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

std::optional<uint64_t> number(std::string_view w) noexcept {
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(w.data(), w.data() + w.size(), n);
  if (ec != std::errc() || end != w.data() + w.size()) return std::nullopt;
  return n;
}

bool labelEquals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

}  // namespace

bool isConnectionAction(FaultAction a) noexcept {
  return a == FaultAction::StallHandshake || a == FaultAction::ExpiredCert ||
         a == FaultAction::WrongNameCert;
}

std::string_view faultActionName(FaultAction a) noexcept {
  for (const auto& [name, action] : kActions) {
    if (action == a) return name;
  }
  return "?";
}

const FaultRule* FaultScript::forQuery(uint64_t query_number, const dns::Name& qname,
                                       uint64_t connection) noexcept {
  for (size_t i = 0; i < rules_.size(); ++i) {
    const FaultRule& r = rules_[i];
    if (isConnectionAction(r.action) || spent_[i]) continue;
    bool hit = false;
    switch (r.match) {
      case FaultMatch::Any:
        hit = true;
        break;
      case FaultMatch::Query:
        hit = r.number == query_number;
        break;
      case FaultMatch::Qname:
        hit = r.name.equalsIgnoreCase(qname);
        break;
      case FaultMatch::Label:
        hit = labelEquals(r.label, qname.firstLabel());
        break;
      case FaultMatch::Connection:
        hit = connection != 0 && r.number == connection;
        break;
    }
    if (hit) {
      if (r.once) spent_[i] = true;
      return &r;
    }
  }
  return nullptr;
}

const FaultRule* FaultScript::forConnection(uint64_t connection) noexcept {
  for (size_t i = 0; i < rules_.size(); ++i) {
    const FaultRule& r = rules_[i];
    if (!isConnectionAction(r.action) || spent_[i]) continue;
    if (r.match == FaultMatch::Any ||
        (r.match == FaultMatch::Connection && r.number == connection)) {
      if (r.once) spent_[i] = true;
      return &r;
    }
  }
  return nullptr;
}

PacketBuffer alterAnswer(FaultAction action, WireView query, WireView answer) {
  auto r = dns::parseResponse(answer);
  if (!r) return PacketBuffer(answer);  // nothing sensible to alter
  PacketBuffer out(answer);
  switch (action) {
    case FaultAction::WrongId:
      storeU16(out.data(), static_cast<uint16_t>(r->header.id + 1));
      break;
    case FaultAction::WrongQuestion:  // same name, another type: the question's type field
      storeU16(out.data() + r->question_end - 4,
               r->qtype == dns::type::A ? dns::type::AAAA : dns::type::A);
      break;
    case FaultAction::Malformed: {
      // Header and question, then one answer record whose owner is a forward pointer.
      out.resize(r->question_end);
      WireWriter w(out);
      w.u16(static_cast<uint16_t>(0xC000 | (r->question_end + 12)));
      w.u16(dns::type::A);
      w.u16(dns::klass::IN);
      w.u32(300);
      w.u16(4);
      w.u32(0xC0000201);
      dns::Header h = r->header;
      h.ancount = 1;
      h.nscount = h.arcount = 0;
      PacketBuffer head;
      WireWriter hw(head);
      dns::writeHeader(hw, h);
      std::copy(head.view().begin(), head.view().end(), out.data());
      break;
    }
    case FaultAction::Truncated:
      if (r->end > r->question_end + 3) {
        out.resize(r->end - 3);
      } else {  // no record to cut: announce one that is not there
        storeU16(out.data() + 6, static_cast<uint16_t>(r->header.ancount + 1));
      }
      break;
    case FaultAction::ServFail:
      return dns::buildErrorReply(query, dns::Rcode::ServFail);
    case FaultAction::Refused:
      return dns::buildErrorReply(query, dns::Rcode::Refused);
    default:
      break;
  }
  return out;
}

std::optional<FaultScript> parseFaults(std::string_view text, std::string* error) {
  std::vector<FaultRule> rules;
  unsigned line_no = 0;
  auto fail = [&](std::string what) -> std::optional<FaultScript> {
    if (error) *error = fmt::format("line {}: {}", line_no, what);
    return std::nullopt;
  };
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (const size_t hash = line.find('#'); hash != std::string_view::npos)
      line = line.substr(0, hash);
    auto w = words(line);
    if (w.empty()) continue;

    FaultRule rule;
    rule.line = line_no;
    size_t i = 0;
    const std::string_view match = w[i++];
    auto argument = [&]() -> std::optional<std::string_view> {
      if (i >= w.size()) return std::nullopt;
      return w[i++];
    };
    if (match == "any") {
      rule.match = FaultMatch::Any;
    } else if (match == "query" || match == "connection") {
      rule.match = match == "query" ? FaultMatch::Query : FaultMatch::Connection;
      auto arg = argument();
      auto n = arg ? number(*arg) : std::nullopt;
      if (!n || *n == 0) return fail(fmt::format("'{}' needs a number from 1", match));
      rule.number = *n;
    } else if (match == "qname") {
      rule.match = FaultMatch::Qname;
      auto arg = argument();
      Result<dns::Name> name = std::unexpected(Errc::BadText);
      if (arg) name = dns::Name::fromText(*arg);
      if (!name) return fail("'qname' needs a domain name");
      rule.name = *name;
    } else if (match == "label") {
      rule.match = FaultMatch::Label;
      auto arg = argument();
      if (!arg || arg->size() > 63) return fail("'label' needs a label of at most 63 bytes");
      rule.label = std::string(*arg);
    } else {
      return fail(fmt::format("unknown match '{}' (any, query, qname, label, connection)", match));
    }

    auto action = argument();
    if (!action) return fail("a rule needs an action");
    bool known = false;
    for (const auto& [name, a] : kActions) {
      if (name == *action) {
        rule.action = a;
        known = true;
      }
    }
    if (!known) return fail(fmt::format("unknown action '{}'", *action));
    if (rule.action == FaultAction::Delay || rule.action == FaultAction::Down) {
      auto arg = argument();
      auto ms = arg ? number(*arg) : std::nullopt;
      if (!ms || *ms > 3'600'000) return fail(fmt::format("'{}' needs milliseconds", *action));
      rule.ms = static_cast<uint32_t>(*ms);
    }
    if (isConnectionAction(rule.action) && rule.match != FaultMatch::Any &&
        rule.match != FaultMatch::Connection) {
      return fail(fmt::format("'{}' applies to connections: use 'any' or 'connection N'", *action));
    }
    if (i < w.size() && w[i] == "once") {
      rule.once = true;
      ++i;
    }
    if (i != w.size()) return fail(fmt::format("unexpected '{}'", w[i]));
    rules.push_back(std::move(rule));
  }
  return FaultScript(std::move(rules));
}

}  // namespace dotproxy::dotmock
