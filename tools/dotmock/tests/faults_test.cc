#include "faults.h"

#include <gtest/gtest.h>

#include <string>

#include "dotproxy/dns/message.h"
#include "dotproxy/dns/query.h"
#include "dotproxy/dns/types.h"

namespace dotproxy::dotmock {
namespace {

dns::Name name(std::string_view text) {
  return dns::Name::fromText(text).value();
}

FaultScript parsed(std::string_view text) {
  std::string error;
  auto s = parseFaults(text, &error);
  EXPECT_TRUE(s.has_value()) << error;
  return s.value_or(FaultScript());
}

std::string errorOf(std::string_view text) {
  std::string error;
  EXPECT_FALSE(parseFaults(text, &error).has_value()) << text;
  return error;
}

TEST(FaultScript, ParsesEveryMatchAndAction) {
  auto s = parsed(
      "# comment line\n"
      "\n"
      "query 3 drop\n"
      "qname Slow.Test. delay 250   # trailing comment\n"
      "label cut truncated\n"
      "connection 2 close-mid\n"
      "connection 1 expired-cert\n"
      "any wrong-name-cert\n"
      "query 9 down 400\n"
      "label a close\nlabel b wrong-id\nlabel c wrong-question\nlabel d malformed\n"
      "label e oversized\nlabel f servfail\nlabel g refused\nconnection 4 stall-handshake\n");
  ASSERT_EQ(s.rules().size(), 15u);
  EXPECT_EQ(s.rules()[0].match, FaultMatch::Query);
  EXPECT_EQ(s.rules()[0].number, 3u);
  EXPECT_EQ(s.rules()[0].action, FaultAction::Drop);
  EXPECT_EQ(s.rules()[0].line, 3u);
  EXPECT_EQ(s.rules()[1].action, FaultAction::Delay);
  EXPECT_EQ(s.rules()[1].ms, 250u);
  EXPECT_EQ(s.rules()[6].action, FaultAction::Down);
  EXPECT_EQ(s.rules()[6].ms, 400u);
  EXPECT_EQ(s.rules()[14].action, FaultAction::StallHandshake);
  EXPECT_EQ(s.rules()[2].match, FaultMatch::Label);
  EXPECT_EQ(s.rules()[1].match, FaultMatch::Qname);
}

TEST(FaultScript, FirstMatchingRuleWins) {
  auto s = parsed("query 2 servfail\nqname x.test. drop\nlabel y delay 10\nconnection 3 refused\n");
  EXPECT_EQ(s.forQuery(1, name("a.test."), 0), nullptr);
  ASSERT_NE(s.forQuery(2, name("x.test."), 0), nullptr);
  EXPECT_EQ(s.forQuery(2, name("x.test."), 0)->action, FaultAction::ServFail);
  EXPECT_EQ(s.forQuery(5, name("X.TEST"), 0)->action, FaultAction::Drop);  // case-insensitive
  EXPECT_EQ(s.forQuery(5, name("Y.other."), 0)->action, FaultAction::Delay);
  EXPECT_EQ(s.forQuery(5, name("b.test."), 3)->action, FaultAction::Refused);
  EXPECT_EQ(s.forQuery(5, name("b.test."), 0), nullptr);  // UDP is no connection
  EXPECT_EQ(s.forConnection(3), nullptr);                 // a query action, not a connection one
}

TEST(FaultScript, OnceRulesAreSpentAfterFiring) {
  auto s = parsed("label f drop once\nany expired-cert once\nlabel f delay 5\n");
  EXPECT_TRUE(s.rules()[0].once);
  EXPECT_EQ(s.forQuery(1, name("f.test."), 0)->action, FaultAction::Drop);
  EXPECT_EQ(s.forQuery(2, name("f.test."), 0)->action, FaultAction::Delay);  // the next rule
  EXPECT_EQ(s.forConnection(1)->action, FaultAction::ExpiredCert);
  EXPECT_EQ(s.forConnection(2), nullptr);
}

TEST(FaultScript, ConnectionActionsMatchConnectionsOnly) {
  auto s = parsed("connection 2 stall-handshake\nany expired-cert\n");
  EXPECT_EQ(s.forConnection(2)->action, FaultAction::StallHandshake);
  EXPECT_EQ(s.forConnection(1)->action, FaultAction::ExpiredCert);
  EXPECT_EQ(s.forQuery(1, name("a.test."), 2), nullptr);
}

TEST(FaultScript, ErrorsNameTheLine) {
  EXPECT_EQ(errorOf("query 1 drop\nbogus 1 drop\n"),
            "line 2: unknown match 'bogus' (any, query, qname, label, connection)");
  EXPECT_EQ(errorOf("query 0 drop"), "line 1: 'query' needs a number from 1");
  EXPECT_EQ(errorOf("query x drop"), "line 1: 'query' needs a number from 1");
  EXPECT_EQ(errorOf("connection"), "line 1: 'connection' needs a number from 1");
  EXPECT_EQ(errorOf("any"), "line 1: a rule needs an action");
  EXPECT_EQ(errorOf("any explode"), "line 1: unknown action 'explode'");
  EXPECT_EQ(errorOf("any delay"), "line 1: 'delay' needs milliseconds");
  EXPECT_EQ(errorOf("any down -5"), "line 1: 'down' needs milliseconds");
  EXPECT_EQ(errorOf("any drop now"), "line 1: unexpected 'now'");
  EXPECT_EQ(errorOf("any drop once twice"), "line 1: unexpected 'twice'");
  EXPECT_EQ(errorOf("qname a..b drop"), "line 1: 'qname' needs a domain name");
  EXPECT_EQ(errorOf("label x expired-cert"),
            "line 1: 'expired-cert' applies to connections: use 'any' or 'connection N'");
  EXPECT_TRUE(parsed("").empty());
  EXPECT_TRUE(parsed("  # nothing\n\n").empty());
}

class AlterAnswer : public ::testing::Test {
 protected:
  void SetUp() override {
    dns::MessageBuilder q(query_);
    q.header({.id = 0x1234, .flags = dns::flag::RD});
    q.question(name("a.test."), dns::type::A);
    ASSERT_TRUE(q.finish());
    dns::MessageBuilder a(answer_);
    a.header({.id = 0x1234, .flags = dns::flag::QR | dns::flag::RD});
    a.question(name("a.test."), dns::type::A);
    const std::byte addr[4] = {std::byte{192}, std::byte{0}, std::byte{2}, std::byte{1}};
    a.record(dns::Section::Answer, name("a.test."), dns::type::A, dns::klass::IN, 300, addr);
    ASSERT_TRUE(a.finish());
  }
  PacketBuffer query_, answer_;
};

TEST_F(AlterAnswer, WrongIdAndQuestionStillParseButDoNotMatch) {
  auto q = dns::parseResponse(answer_).value();
  auto id = dns::parseResponse(alterAnswer(FaultAction::WrongId, query_, answer_)).value();
  EXPECT_NE(id.header.id, 0x1234);
  auto wq = dns::parseResponse(alterAnswer(FaultAction::WrongQuestion, query_, answer_)).value();
  EXPECT_EQ(wq.header.id, 0x1234);
  EXPECT_FALSE(dns::answerMatches(wq, 0x1234, q.qname, q.qtype, q.qclass));
  EXPECT_TRUE(dns::answerMatches(q, 0x1234, q.qname, q.qtype, q.qclass));
}

TEST_F(AlterAnswer, MalformedAndTruncatedDoNotParse) {
  EXPECT_EQ(dns::parseResponse(alterAnswer(FaultAction::Malformed, query_, answer_)).error(),
            Errc::BadPointer);
  auto cut = alterAnswer(FaultAction::Truncated, query_, answer_);
  EXPECT_EQ(cut.size(), answer_.size() - 3);
  EXPECT_FALSE(dns::parseResponse(cut).has_value());
}

TEST_F(AlterAnswer, ServFailAndRefusedKeepTheQuestion) {
  auto sf = dns::parseResponse(alterAnswer(FaultAction::ServFail, query_, answer_)).value();
  EXPECT_EQ(sf.rcode(), static_cast<uint16_t>(dns::Rcode::ServFail));
  EXPECT_EQ(sf.header.id, 0x1234);
  auto rf = dns::parseResponse(alterAnswer(FaultAction::Refused, query_, answer_)).value();
  EXPECT_EQ(rf.rcode(), static_cast<uint16_t>(dns::Rcode::Refused));
  EXPECT_EQ(alterAnswer(FaultAction::Delay, query_, answer_).size(), answer_.size());
}

}  // namespace
}  // namespace dotproxy::dotmock
