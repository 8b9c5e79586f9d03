#include "inflight.h"

#include <gtest/gtest.h>

#include <set>

namespace dotproxy::dotload {
namespace {

TEST(Inflight, AcquireFindReleaseAndFull) {
  Inflight t(4);
  EXPECT_EQ(t.capacity(), 4u);
  std::set<uint16_t> ids;
  for (int i = 0; i < 4; ++i) ids.insert(t.acquire(100 + i, static_cast<uint32_t>(i), 0));
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_TRUE(t.full());
  EXPECT_EQ(t.inFlight(), 4u);
  uint16_t id = *ids.begin();
  ASSERT_NE(t.find(id), nullptr);
  t.release(id);
  EXPECT_EQ(t.find(id), nullptr);
  t.release(id);  // twice: no-op
  EXPECT_EQ(t.inFlight(), 3u);
  EXPECT_FALSE(t.full());
}

TEST(Inflight, AReusedSlotGetsANewIdSoALateAnswerDoesNotMatch) {
  Inflight t(1);
  uint16_t first = t.acquire(0, 0, 0);
  t.release(first);
  uint16_t second = t.acquire(1, 0, 0);
  EXPECT_NE(first, second);
  EXPECT_EQ(t.find(first), nullptr);
  EXPECT_NE(t.find(second), nullptr);
}

TEST(Inflight, ExpiresOnlyWhatIsOlderThanTheDeadlineInSendOrder) {
  Inflight t(8);
  uint16_t a = t.acquire(10, 0, 0);
  uint16_t b = t.acquire(20, 0, 0);
  uint16_t c = t.acquire(30, 0, 0);
  t.release(a);  // answered: not expired
  EXPECT_EQ(t.oldest(), 20);
  EXPECT_EQ(t.expire(25), 1u);  // b
  EXPECT_EQ(t.find(b), nullptr);
  EXPECT_NE(t.find(c), nullptr);
  EXPECT_EQ(t.oldest(), 30);
  EXPECT_EQ(t.releaseAll(), 1u);
  EXPECT_EQ(t.inFlight(), 0u);
  EXPECT_EQ(t.oldest(), INT64_MAX);
}

TEST(Inflight, FifoGrowsWhenOneOldQueryHoldsTheHead) {
  Inflight t(4);
  uint16_t stuck = t.acquire(0, 0, 0);
  // Many more sent and answered behind the unanswered one.
  for (int i = 1; i < 1000; ++i) t.release(t.acquire(i, 0, 0));
  EXPECT_EQ(t.inFlight(), 1u);
  EXPECT_EQ(t.expire(1), 1u);
  EXPECT_EQ(t.find(stuck), nullptr);
  EXPECT_EQ(t.oldest(), INT64_MAX);
}

TEST(Inflight, CapacityIsClampedToTheIdSpace) {
  Inflight t(100000);
  EXPECT_EQ(t.capacity(), 65536u);
  std::set<uint16_t> ids;
  for (int i = 0; i < 65536; ++i) ids.insert(t.acquire(i, 0, 0));
  EXPECT_EQ(ids.size(), 65536u);
  EXPECT_TRUE(t.full());
}

}  // namespace
}  // namespace dotproxy::dotload
