#include "query_set.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "dotproxy/dns/message.h"
#include "dotproxy/dns/types.h"

namespace dotproxy::dotload {
namespace {

TEST(QueryFile, ReadsNamesAndTypesSkippingCommentsAndBlanks) {
  auto q = parseQueryFile(
      "# comment\nwww.example.com A\n\n  mail.example.org\tMX  \n"
      "; also a comment\nexample.net\r\nx.test TYPE65\n",
      "q.txt");
  ASSERT_TRUE(q) << q.error();
  ASSERT_EQ(q->size(), 4u);
  EXPECT_EQ((*q)[0].name.toText(), "www.example.com.");
  EXPECT_EQ((*q)[0].type, dns::type::A);
  EXPECT_EQ((*q)[1].type, dns::type::MX);
  EXPECT_EQ((*q)[2].type, dns::type::A);  // no type: A, as dnsperf
  EXPECT_EQ((*q)[3].type, 65);
}

TEST(QueryFile, BadLinesNameTheFileAndLine) {
  EXPECT_EQ(parseQueryFile("a.test A\nb.test AAA\n", "q.txt").error(),
            "q.txt:2: unknown type 'AAA'");
  EXPECT_EQ(parseQueryFile("a.test A\n\n# c\na..b A\n", "q.txt").error(),
            "q.txt:4: bad name 'a..b': bad-text");
  EXPECT_EQ(parseQueryFile("a.test A extra\n", "q.txt").error(),
            "q.txt:1: expected 'name TYPE', got 3 fields");
  std::string long_label(64, 'x');
  auto e = parseQueryFile(long_label + ".test A\n", "f");
  ASSERT_FALSE(e);
  EXPECT_TRUE(e.error().starts_with("f:1: bad name")) << e.error();
  EXPECT_EQ(parseQueryFile("# nothing\n\n", "empty.txt").error(), "empty.txt: no queries");
  EXPECT_FALSE(readQueryFile("/nonexistent/queries.txt"));
}

TEST(QuerySet, WritesThePreformattedQueryWithTheId) {
  auto specs = parseQueryFile("a.test A\nb.test AAAA\n", "q");
  ASSERT_TRUE(specs);
  auto set = QuerySet::fromSpecs(*specs, WireOptions{.do_bit = true});
  ASSERT_TRUE(set) << set.error();
  std::byte buf[QuerySet::kMaxWire];
  size_t n = set->write(buf, 1, 0, 0xbeef);
  auto m = dns::parseMessage(WireView(buf, n));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->header.id, 0xbeef);
  EXPECT_TRUE(m->header.rd());
  ASSERT_EQ(m->questions.size(), 1u);
  EXPECT_EQ(m->questions[0].name.toText(), "b.test.");
  EXPECT_EQ(m->questions[0].type, dns::type::AAAA);
  ASSERT_TRUE(m->edns);
  EXPECT_EQ(m->edns->udp_size, 1232);
  EXPECT_TRUE(m->edns->do_bit);
  auto plain = QuerySet::fromSpecs(*specs, WireOptions{.edns = false});
  n = plain->write(buf, 0, 0, 1);
  m = dns::parseMessage(WireView(buf, n));
  ASSERT_TRUE(m);
  EXPECT_FALSE(m->edns);
}

TEST(QuerySet, QuestionMatchingIgnoresCaseButNotTypeOrName) {
  auto specs = parseQueryFile("Www.Test A\n", "q");
  auto set = QuerySet::fromSpecs(*specs, WireOptions{});
  std::byte buf[QuerySet::kMaxWire];
  size_t n = set->write(buf, 0, 0, 7);
  EXPECT_TRUE(set->questionMatches(WireView(buf, n), 0, 0));
  buf[13] = std::byte{'w'};  // different case
  EXPECT_TRUE(set->questionMatches(WireView(buf, n), 0, 0));
  buf[14] = std::byte{'x'};
  EXPECT_FALSE(set->questionMatches(WireView(buf, n), 0, 0));
  n = set->write(buf, 0, 0, 7);
  buf[12 + 10 + 1] = std::byte{28};  // type A -> AAAA
  EXPECT_FALSE(set->questionMatches(WireView(buf, n), 0, 0));
  EXPECT_FALSE(set->questionMatches(WireView(buf, 12), 0, 0));  // no question
}

TEST(QuerySet, RandomNamesAreUniquePerValueAndMatchOnlyTheirOwn) {
  auto zone = dns::Name::fromText("example.");
  auto set = QuerySet::randomNames(*zone, dns::type::A, WireOptions{});
  ASSERT_TRUE(set);
  EXPECT_TRUE(set->random());
  std::set<std::string> names;
  std::byte buf[QuerySet::kMaxWire];
  for (uint64_t u = 0; u < 1000; ++u) {
    size_t n = set->write(buf, 0, u * 0x123456789ULL, 1);
    auto m = dns::parseMessage(WireView(buf, n));
    ASSERT_TRUE(m);
    std::string name = m->questions[0].name.toText();
    EXPECT_TRUE(name.ends_with(".example.")) << name;
    EXPECT_EQ(name.size(), 16 + 1 + 8u);
    names.insert(name);
    EXPECT_TRUE(set->questionMatches(WireView(buf, n), 0, u * 0x123456789ULL));
    EXPECT_FALSE(set->questionMatches(WireView(buf, n), 0, u * 0x123456789ULL + 1));
  }
  EXPECT_EQ(names.size(), 1000u);
}

TEST(QuerySet, RankedNamesAreDistinct) {
  auto zone = dns::Name::fromText("test.");
  auto names = rankedNames(3, *zone, dns::type::AAAA);
  ASSERT_EQ(names.size(), 3u);
  EXPECT_EQ(names[0].name.toText(), "n0.test.");
  EXPECT_EQ(names[2].name.toText(), "n2.test.");
  EXPECT_EQ(names[1].type, dns::type::AAAA);
}

}  // namespace
}  // namespace dotproxy::dotload
