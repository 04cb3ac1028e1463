// Unit tests of the fixed-rate schedule (src/core/schedule.*), driven by a
// fake clock: plain integers of milliseconds.
#include "core/schedule.hpp"

#include <gtest/gtest.h>

using pqw::Millis;
using pqw::PeriodicJob;

TEST(PeriodicJob, DueImmediatelyAfterStart)
{
    PeriodicJob j;
    EXPECT_FALSE(j.due(0));
    j.start(1000);
    EXPECT_TRUE(j.due(1000));
    EXPECT_FALSE(j.due(999));
}

TEST(PeriodicJob, PeriodCountsFromScheduleNotFromEndOfCall)
{
    PeriodicJob j;
    j.start(0);
    // The call due at 0 took 30 ms: the next is due at 100, not 130.
    j.completed(30, 100);
    EXPECT_EQ(j.next_due(), 100);
    j.completed(170, 100);
    EXPECT_EQ(j.next_due(), 200);
}

TEST(PeriodicJob, RateMatchesPeriodOverManyCalls)
{
    PeriodicJob j;
    j.start(0);
    int calls = 0;
    // Simulate 10 s at a 10 ms period with calls of 3 ms and a loop that
    // wakes exactly when due.
    Millis now = 0;
    while (now < 10000) {
        if (j.due(now)) {
            ++calls;
            j.completed(now + 3, 10);
        }
        now = j.next_due();
    }
    EXPECT_EQ(calls, 1000);
}

TEST(PeriodicJob, MissedSlotsAreDroppedNotReplayed)
{
    PeriodicJob j;
    j.start(0);
    // A call that took 1050 ms at a 100 ms period: no burst of 10 catch-up
    // calls, the next one is on the next grid slot after now.
    j.completed(1050, 100);
    EXPECT_EQ(j.next_due(), 1100);
    EXPECT_FALSE(j.due(1099));
    EXPECT_TRUE(j.due(1100));
    // Exactly on a slot boundary: the next slot, not this one again.
    j.completed(1200, 100);
    EXPECT_EQ(j.next_due(), 1300);
}

TEST(PeriodicJob, FailureBacksOffOffGridAndSuccessResets)
{
    PeriodicJob j;
    j.start(0);
    j.failed(5, 400);
    EXPECT_EQ(j.failures(), 1);
    EXPECT_EQ(j.next_due(), 405);
    j.failed(405, 800);
    EXPECT_EQ(j.failures(), 2);
    EXPECT_EQ(j.next_due(), 1205);
    j.completed(1206, 100);
    EXPECT_EQ(j.failures(), 0);
    EXPECT_EQ(j.next_due(), 1305);
}

TEST(PeriodicJob, RunNowOnlyMovesEarlier)
{
    PeriodicJob j;
    j.start(0);
    j.completed(1, 1000);
    j.run_now(50);
    EXPECT_TRUE(j.due(50));
    j.run_now(10);
    EXPECT_EQ(j.next_due(), 10);
}

TEST(PeriodicJob, ShorterPeriodAppliesAtOnce)
{
    PeriodicJob j;
    j.start(0);
    j.completed(1, 60000);
    EXPECT_EQ(j.next_due(), 60000);
    j.reschedule(100, 10);
    EXPECT_EQ(j.next_due(), 110);
    // A longer period does not postpone what is already planned.
    j.reschedule(100, 100000);
    EXPECT_EQ(j.next_due(), 110);
}

TEST(PeriodicJob, NonPositivePeriodIsTreatedAsOneMillisecond)
{
    PeriodicJob j;
    j.start(0);
    j.completed(0, 0);
    EXPECT_EQ(j.next_due(), 1);
}

TEST(WaitUntilEarliest, PicksEarliestAndClamps)
{
    Millis due[] = {500, 120, 900};
    EXPECT_EQ(pqw::wait_until_earliest(100, due, 3, 60000), 20);
    EXPECT_EQ(pqw::wait_until_earliest(200, due, 3, 60000), 0);
    EXPECT_EQ(pqw::wait_until_earliest(0, due, 3, 50), 50);
    EXPECT_EQ(pqw::wait_until_earliest(0, due, 0, 50), 50);
}

TEST(PeriodicJob, RunAtOnlyMovesEarlierAndSetNextDueReplaces)
{
    PeriodicJob j;
    j.start(0);
    j.completed(0, 1000);
    j.run_at(1500);
    EXPECT_EQ(j.next_due(), 1000);
    j.run_at(400);
    EXPECT_EQ(j.next_due(), 400);
    j.set_next_due(5000);
    EXPECT_EQ(j.next_due(), 5000);
    // the grid continues from the new due time
    j.completed(5001, 1000);
    EXPECT_EQ(j.next_due(), 6000);
}
