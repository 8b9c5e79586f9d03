#include "dotproxy/metrics/counters.h"

#include <fmt/format.h>

namespace dotproxy::metrics {

std::vector<CounterValue> sum(const std::vector<const Counters*>& workers) {
  std::vector<CounterValue> out;
#define DOTPROXY_COUNTER_SUM(field)                            \
  {                                                            \
    uint64_t total = 0;                                        \
    for (const Counters* c : workers) total += c->field.get(); \
    out.push_back({#field, total});                            \
  }
  DOTPROXY_COUNTERS(DOTPROXY_COUNTER_SUM)
#undef DOTPROXY_COUNTER_SUM
  return out;
}

std::string toJson(const std::vector<CounterValue>& values) {
  std::string s = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    s += fmt::format("{}\"{}\":{}", i ? "," : "", values[i].name, values[i].value);
  }
  s += "}";
  return s;
}

}  // namespace dotproxy::metrics
