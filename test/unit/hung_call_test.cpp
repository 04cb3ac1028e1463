// Unit tests of the hard-limit decision (src/core/hung_call.*).
#include "core/hung_call.hpp"

#include <gtest/gtest.h>

#include <utility>
#include <vector>

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

// A chunk without the range's events runs as usual.
TEST(HungCall, AChunkWithoutTheRangeIsKeptWhole)
{
    auto c = pqw::hung_chunk_plan(-1, -1, 10);
    EXPECT_EQ(c.keep, 10);
    EXPECT_FALSE(c.narrow);
}

// Events before the range make a chunk of their own, handled as usual.
TEST(HungCall, EventsBeforeTheRangeGoFirstAlone)
{
    auto c = pqw::hung_chunk_plan(3, 6, 10);
    EXPECT_EQ(c.keep, 3);
    EXPECT_FALSE(c.narrow);
}

// A chunk starting with the range ends with it and narrows it down at once:
// each half it calls is strictly smaller than the call that hung.
TEST(HungCall, AChunkStartingWithTheRangeEndsWithIt)
{
    auto c = pqw::hung_chunk_plan(0, 3, 10);
    EXPECT_EQ(c.keep, 4);
    EXPECT_TRUE(c.narrow);
    c = pqw::hung_chunk_plan(0, 9, 10);  // the range goes on past the chunk
    EXPECT_EQ(c.keep, 10);
    EXPECT_TRUE(c.narrow);
}

// One event of the range (alone, or the range's part in a short chunk):
// kept alone, called once (or nacked, if the call hung on it alone), never
// narrowed down without a call.
TEST(HungCall, OneEventOfTheRangeIsKeptAloneAndCalled)
{
    auto c = pqw::hung_chunk_plan(0, 0, 10);
    EXPECT_EQ(c.keep, 1);
    EXPECT_FALSE(c.narrow);
    c = pqw::hung_chunk_plan(0, 0, 1);
    EXPECT_EQ(c.keep, 1);
    EXPECT_FALSE(c.narrow);
}

// The dispatcher is stopped in [1, 9] of the chunk [0, 9] (a batch call)
// every time it calls 7 together with anything: each stop shrinks the range
// or commits progress, until 7 alone is nacked. Simulated: ranges, chunks
// and restarts, the narrowing of run_part by halves.
TEST(HungCall, AnEventThatAlwaysHangsEndsNackedAlone)
{
    const int kEvents = 10, kBad = 7;
    pqw::HungRange r{1, 9};
    int next = 0;  // first event not committed
    int restarts = 0;
    bool nacked = false;
    while (next < kEvents && restarts < 100) {
        int n = kEvents - next;
        int first = -1, last = -1;
        for (int i = 0; i < n; i++)
            if (pqw::hung_plan_for(r, next + i) != pqw::HungPlan::kNormal) {
                if (first < 0)
                    first = i;
                last = i;
            }
        auto c = pqw::hung_chunk_plan(first, last, n);
        int lo = next, hi = next + c.keep;  // events [lo, hi) of this chunk
        // the calls this chunk makes, in order: one whole try, or halves
        std::vector<std::pair<int, int>> calls;
        if (first == 0 && pqw::hung_plan_for(r, lo) == pqw::HungPlan::kNackAlone) {
            nacked = nacked || lo == kBad;
        } else if (!c.narrow) {
            calls.emplace_back(lo, hi);
        } else {
            int mid = lo + (hi - lo) / 2;
            calls.emplace_back(lo, mid);
            calls.emplace_back(mid, hi);
        }
        bool hung = false;
        for (auto [a, b] : calls)
            if (kBad >= a && kBad < b) {
                r = pqw::HungRange{a, b - 1};  // stopped in this call
                hung = true;
                break;
            }
        if (hung) {
            restarts++;
            continue;  // nothing committed
        }
        if (pqw::hung_range_done(r, first == 0, lo, hi - 1, hi == kEvents))
            r = pqw::HungRange();
        next = hi;  // committed
    }
    EXPECT_TRUE(nacked);
    EXPECT_EQ(next, kEvents);
    EXPECT_LE(restarts, 6);
}
