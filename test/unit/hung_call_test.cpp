// Unit tests of the hard-limit decision (src/core/hung_call.*).
#include "core/hung_call.hpp"

#include <gtest/gtest.h>

using pqw::hung_plan_for;
using pqw::hung_range_done;
using pqw::HungPlan;
using pqw::HungRange;

TEST(HungCall, NoRangeMeansNormal)
{
    HungRange r;
    EXPECT_TRUE(r.empty());
    EXPECT_EQ(hung_plan_for(r, 0), HungPlan::kNormal);
    EXPECT_EQ(hung_plan_for(r, 42), HungPlan::kNormal);
    EXPECT_FALSE(hung_range_done(r, true, 1, 100, true));
}

TEST(HungCall, OneEventIsNackedAloneOthersNormal)
{
    HungRange r{17, 17};
    EXPECT_EQ(hung_plan_for(r, 16), HungPlan::kNormal);
    EXPECT_EQ(hung_plan_for(r, 17), HungPlan::kNackAlone);
    EXPECT_EQ(hung_plan_for(r, 18), HungPlan::kNormal);
}

TEST(HungCall, RangeIsIsolatedNotNacked)
{
    HungRange r{10, 20};
    EXPECT_EQ(hung_plan_for(r, 9), HungPlan::kNormal);
    EXPECT_EQ(hung_plan_for(r, 10), HungPlan::kIsolate);
    EXPECT_EQ(hung_plan_for(r, 15), HungPlan::kIsolate);
    EXPECT_EQ(hung_plan_for(r, 20), HungPlan::kIsolate);
    EXPECT_EQ(hung_plan_for(r, 21), HungPlan::kNormal);
}

TEST(HungCall, DoneOnceTheChunkPassedTheRangeOrTheBatchEnded)
{
    HungRange r{10, 20};
    EXPECT_FALSE(hung_range_done(r, true, 10, 15, false));
    EXPECT_TRUE(hung_range_done(r, true, 10, 20, false));
    EXPECT_TRUE(hung_range_done(r, true, 12, 25, false));
    EXPECT_TRUE(hung_range_done(r, true, 5, 12, true));
}

// The stopped transaction may have taken earlier batches along (a chunk
// goes on to the next batches): those, handled again first, hold none of
// the range, and finishing them does not end it, whatever their ids.
TEST(HungCall, NotDoneByABatchWithoutTheRange)
{
    HungRange r{10, 20};
    EXPECT_FALSE(hung_range_done(r, false, 1, 5, true));
    EXPECT_FALSE(hung_range_done(r, false, 5, 30, true));   // around it, without it
    EXPECT_FALSE(hung_range_done(r, false, 30, 40, false)); // a batch not finished
    EXPECT_FALSE(hung_range_done(r, false, 0, 0, true));    // an empty batch
}

// A finished batch wholly after the range: the range's events are not
// coming back (their batch was finished elsewhere), forget it.
TEST(HungCall, DoneByAFinishedBatchAfterTheRange)
{
    HungRange r{10, 20};
    EXPECT_TRUE(hung_range_done(r, false, 21, 40, true));
}

// A chunk of several events of a stopped batch call skips its whole-chunk
// try (it would hang again); a chunk of one of them is called, not nacked.
TEST(HungCall, AOneEventChunkOfARangeIsCalled)
{
    EXPECT_TRUE(pqw::hung_isolate_at_once(2));
    EXPECT_TRUE(pqw::hung_isolate_at_once(1000));
    EXPECT_FALSE(pqw::hung_isolate_at_once(1));
    EXPECT_FALSE(pqw::hung_isolate_at_once(0));
}
