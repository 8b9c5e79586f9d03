#include "dotproxy/metrics/exposition.h"

#include <fmt/format.h>

namespace dotproxy::metrics {

namespace {

// HELP text escapes backslash and newline; label values also escape the double quote.
void appendEscaped(std::string& out, std::string_view s, bool quote) {
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

}  // namespace

void Exposition::family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += fmt::format("# HELP {} ", name);
  appendEscaped(out_, help, false);
  out_ += fmt::format("\n# TYPE {} {}\n", name, type);
}

void Exposition::labels(std::initializer_list<Label> labels, Label extra) {
  if (labels.size() == 0 && extra.first.empty()) return;
  out_ += '{';
  bool first = true;
  auto one = [&](const Label& l) {
    if (!first) out_ += ',';
    first = false;
    out_ += l.first;
    out_ += "=\"";
    appendEscaped(out_, l.second, true);
    out_ += '"';
  };
  for (const Label& l : labels) one(l);
  if (!extra.first.empty()) one(extra);
  out_ += '}';
}

void Exposition::sample(std::string_view name, std::initializer_list<Label> l, uint64_t value) {
  out_ += name;
  labels(l);
  out_ += fmt::format(" {}\n", value);
}

void Exposition::sample(std::string_view name, std::initializer_list<Label> l, double value) {
  out_ += name;
  labels(l);
  out_ += fmt::format(" {}\n", value);
}

void Exposition::histogram(std::string_view name, std::initializer_list<Label> l,
                           const HistogramSnapshot& h) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.buckets.size(); ++i) {
    cumulative += h.buckets[i];
    std::string le = i < kLatencyBucketsUs.size()
                         ? fmt::format("{}", static_cast<double>(kLatencyBucketsUs[i]) / 1e6)
                         : std::string("+Inf");
    out_ += name;
    out_ += "_bucket";
    labels(l, {"le", le});
    out_ += fmt::format(" {}\n", cumulative);
  }
  out_ += name;
  out_ += "_sum";
  labels(l);
  out_ += fmt::format(" {}\n", static_cast<double>(h.sum_ns) / 1e9);
  out_ += name;
  out_ += "_count";
  labels(l);
  out_ += fmt::format(" {}\n", h.count);
}

}  // namespace dotproxy::metrics
