#include "dotproxy/metrics/exposition.h"

#include <gtest/gtest.h>

#include <chrono>

namespace dotproxy::metrics {
namespace {

using namespace std::chrono_literals;

TEST(Exposition, FamiliesAndEscapedLabels) {
  Exposition e;
  e.family("dotproxy_queries_total", "counter", "Queries received.\nBy transport \\ kind");
  e.sample("dotproxy_queries_total", {{"transport", "udp"}}, uint64_t{3});
  e.sample("dotproxy_queries_total", {{"transport", "a\"b\\c\nd"}}, uint64_t{0});
  e.sample("dotproxy_up", {}, 1.5);
  EXPECT_EQ(e.text(),
            "# HELP dotproxy_queries_total Queries received.\\nBy transport \\\\ kind\n"
            "# TYPE dotproxy_queries_total counter\n"
            "dotproxy_queries_total{transport=\"udp\"} 3\n"
            "dotproxy_queries_total{transport=\"a\\\"b\\\\c\\nd\"} 0\n"
            "dotproxy_up 1.5\n");
}

TEST(Histogram, BucketsAreCumulativeAndInfEqualsCount) {
  Histogram h;
  h.observe(10us);  // <= 50 us
  h.observe(50us);  // on a bound: `le`, so still the first bucket
  h.observe(2ms);   // <= 2.5 ms
  h.observe(10s);   // +Inf
  h.observe(-5us);  // a clock step backwards counts as zero
  HistogramSnapshot s = h.snapshot();
  EXPECT_EQ(s.count, 5u);
  EXPECT_EQ(s.buckets[0], 3u);
  EXPECT_EQ(s.buckets.back(), 1u);
  Exposition e;
  e.histogram("lat_seconds", {{"source", "cache"}}, s);
  const std::string& t = e.text();
  EXPECT_NE(t.find("lat_seconds_bucket{source=\"cache\",le=\"5e-05\"} 3\n"), std::string::npos)
      << t;
  EXPECT_NE(t.find("lat_seconds_bucket{source=\"cache\",le=\"0.0025\"} 4\n"), std::string::npos)
      << t;
  EXPECT_NE(t.find("lat_seconds_bucket{source=\"cache\",le=\"+Inf\"} 5\n"), std::string::npos) << t;
  EXPECT_NE(t.find("lat_seconds_count{source=\"cache\"} 5\n"), std::string::npos) << t;
  EXPECT_NE(t.find("lat_seconds_sum{source=\"cache\"} 10.00206\n"), std::string::npos) << t;
  HistogramSnapshot twice = s;
  twice.add(s);
  EXPECT_EQ(twice.count, 10u);
  EXPECT_EQ(twice.sum_ns, 2 * s.sum_ns);
}

}  // namespace
}  // namespace dotproxy::metrics
