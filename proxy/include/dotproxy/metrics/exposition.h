#pragma once
// The Prometheus text exposition format (version 0.0.4): `# HELP` and `# TYPE` once per family,
// then its samples, label values escaped. Bytes out, no I/O.

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "dotproxy/metrics/histogram.h"

namespace dotproxy::metrics {

using Label = std::pair<std::string_view, std::string_view>;

class Exposition {
 public:
  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

  // type: "counter", "gauge" or "histogram". A counter family's name ends in _total.
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, std::initializer_list<Label> labels, uint64_t value);
  void sample(std::string_view name, std::initializer_list<Label> labels, double value);
  // name_bucket{le=...} (cumulative), name_sum (seconds) and name_count, with `labels` on each.
  void histogram(std::string_view name, std::initializer_list<Label> labels,
                 const HistogramSnapshot& h);
  const std::string& text() const noexcept { return out_; }

 private:
  void labels(std::initializer_list<Label> labels, Label extra = {});
  std::string out_;
};

}  // namespace dotproxy::metrics
