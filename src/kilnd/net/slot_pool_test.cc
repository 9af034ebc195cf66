#include "kilnd/net/slot_pool.h"

#include <gtest/gtest.h>

namespace kiln::kilnd::net {
namespace {

TEST(SlotPoolTest, HandsOutEverySlotOnceThenRunsOut) {
  SlotPool pool(3);
  EXPECT_EQ(pool.Acquire(), 0u);
  EXPECT_EQ(pool.Acquire(), 1u);
  EXPECT_EQ(pool.Acquire(), 2u);
  EXPECT_EQ(pool.Acquire(), std::nullopt);
  EXPECT_EQ(pool.in_use(), 3u);
}

TEST(SlotPoolTest, ReusesAFreedSlotOnlyAfterGoingRound) {
  SlotPool pool(4);
  ASSERT_EQ(pool.Acquire(), 0u);
  ASSERT_EQ(pool.Acquire(), 1u);
  pool.Release(0);
  EXPECT_EQ(pool.Acquire(), 2u);  // not 0: its veth may still be going away
  EXPECT_EQ(pool.Acquire(), 3u);
  EXPECT_EQ(pool.Acquire(), 0u);
  EXPECT_EQ(pool.Acquire(), std::nullopt);
}

TEST(SlotPoolTest, ReleaseOfAFreeSlotIsHarmless) {
  SlotPool pool(2);
  pool.Release(1);
  pool.Release(7);
  EXPECT_EQ(pool.in_use(), 0u);
  EXPECT_EQ(pool.Acquire(), 0u);
  EXPECT_EQ(pool.in_use(), 1u);
}

}  // namespace
}  // namespace kiln::kilnd::net
