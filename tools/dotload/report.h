#pragma once
// The results of a run, as one JSON object (--json) or a few lines of text.

#include <string>

#include "load.h"

namespace dotproxy::dotload {

struct Report {
  Transport transport = Transport::Udp;
  double duration_s = 0;
  Counters counters;
  const Histogram* latency = nullptr;  // nanoseconds
};

std::string reportJson(const Report& r);
std::string reportText(const Report& r);
// "NOERROR", "NXDOMAIN", ... or "RCODE11".
std::string rcodeLabel(unsigned rcode);

}  // namespace dotproxy::dotload
