// Unit tests of the choice between a full and a targeted tick
// (src/core/tick_scope.*).
#include "core/tick_scope.hpp"

#include <gtest/gtest.h>

using pqw::QueueSet;
using pqw::TickScope;

static QueueSet of(std::int64_t id)
{
    QueueSet s;
    s.add(id);
    return s;
}

TEST(TickScope, NoWakeMeansFull)
{
    TickScope t;
    EXPECT_FALSE(t.targeted(0));
}

TEST(TickScope, NamedQueuesAreTicked)
{
    TickScope t;
    QueueSet a = of(5), b = of(9);
    t.on_wake(&a, 1000);
    t.on_wake(&b, 2000);  // the first full due time is kept
    EXPECT_TRUE(t.targeted(10));
    std::int32_t r[4];
    ASSERT_EQ(t.targets().residues(r, 4), 2);
    EXPECT_EQ(r[0], 5);
    EXPECT_EQ(r[1], 9);
    // the policy of queue 5 wants a tick in 3000 ms: the full call comes first
    EXPECT_EQ(t.after_targeted(3010), 1000);
    EXPECT_FALSE(t.targeted(20));  // nothing named any more
}

TEST(TickScope, EarlierPolicyWins)
{
    TickScope t;
    QueueSet a = of(5);
    t.on_wake(&a, 60000);
    EXPECT_EQ(t.after_targeted(150), 150);
    // queue 5 is due before the full call: it stays the target
    EXPECT_TRUE(t.targeted(150));
    // the next wake keeps the full call's time
    t.on_wake(&a, 150);
    EXPECT_TRUE(t.targeted(200));
    EXPECT_EQ(t.after_targeted(70000), 60000);
    EXPECT_FALSE(t.targeted(300));
}

TEST(TickScope, IdleSpacing)
{
    EXPECT_EQ(TickScope::idle_spacing(0, 100), 100);        // nothing measured: the grid
    EXPECT_EQ(TickScope::idle_spacing(1000, 100), 100);     // 1 ms calls: the grid
    EXPECT_EQ(TickScope::idle_spacing(4999, 0), 0);         // cheap: the policy's times
    EXPECT_EQ(TickScope::idle_spacing(5000, 0), 100);       // 5 ms: 100 ms
    EXPECT_EQ(TickScope::idle_spacing(70000, 100), 1400);   // 70 ms calls: 1.4 s
    EXPECT_EQ(TickScope::idle_spacing(5000000, 100), 10000);  // capped
}

TEST(TickScope, UnnamedWakeMakesItFull)
{
    TickScope t;
    QueueSet a = of(5);
    t.on_wake(&a, 1000);
    t.on_wake(nullptr, 1000);
    EXPECT_FALSE(t.targeted(10));
    t.after_full(nullptr, 0);
    t.on_wake(&a, 5000);
    EXPECT_TRUE(t.targeted(10));
}

TEST(TickScope, AnUnnamedWakeCanWaitForItsFullCall)
{
    // a policy change asks for a full call no sooner than 1000; a commit
    // naming a queue meanwhile gets a targeted call
    TickScope t;
    QueueSet a = of(5);
    t.on_wake(nullptr, 60000, 1000);
    EXPECT_TRUE(t.full_owed());
    EXPECT_EQ(t.full_not_before(), 1000);
    EXPECT_FALSE(t.targeted(10));  // nothing named: a call now would be full
    t.on_wake(&a, 60000);
    EXPECT_TRUE(t.targeted(10));
    t.took_targets();
    // its policy wants it again later: the owed full call comes first
    EXPECT_EQ(t.after_targeted(5000), 1000);
    EXPECT_EQ(t.after_targeted(500), 500);
    EXPECT_FALSE(t.targeted(1000));
    // a second unnamed wake does not move the owed call later
    t.on_wake(nullptr, 60000, 3000);
    EXPECT_EQ(t.full_not_before(), 1000);
    t.after_full(nullptr, 0);
    EXPECT_FALSE(t.full_owed());
    t.on_wake(&a, 5000);
    EXPECT_TRUE(t.targeted(10));
}

TEST(TickScope, AFullCallOwedAfterSlicesCanBeDeferred)
{
    TickScope t;
    QueueSet a = of(3);
    ASSERT_TRUE(t.begin_full(2));
    t.on_wake(nullptr, 60000, 0);  // during the slices
    EXPECT_FALSE(t.after_slice(nullptr, 100, 200, 8));
    EXPECT_TRUE(t.after_slice(nullptr, 100, 200, 8));
    EXPECT_TRUE(t.full_next());
    t.defer_full(900);
    EXPECT_EQ(t.full_not_before(), 900);
    t.on_wake(&a, 60000);
    EXPECT_TRUE(t.targeted(10));
    EXPECT_FALSE(t.targeted(900));
}

TEST(TickScope, FullDueMeansFull)
{
    TickScope t;
    QueueSet a = of(5);
    t.on_wake(&a, 1000);
    EXPECT_TRUE(t.targeted(999));
    EXPECT_FALSE(t.targeted(1000));
    t.after_full(nullptr, 0);
    EXPECT_FALSE(t.targeted(0));
}

TEST(TickScope, PendingQueuesOfAFullCallGetTargetedCalls)
{
    TickScope t;
    QueueSet p = of(7);
    t.after_full(&p, 5000);  // queue 7 has events; idle ticks at 5000
    EXPECT_TRUE(t.targeted(100));
    std::int32_t r[2];
    ASSERT_EQ(t.targets().residues(r, 2), 1);
    EXPECT_EQ(r[0], 7);
    EXPECT_FALSE(t.targeted(5000));  // then the full call
    QueueSet none;
    t.after_full(&none, 9000);
    EXPECT_FALSE(t.targeted(100));
}

TEST(TickScope, SlicesPerQueues)
{
    const std::int64_t q = TickScope::kQueuesPerSlice;
    EXPECT_EQ(TickScope::slices_for(0), 1);
    EXPECT_EQ(TickScope::slices_for(q), 1);
    EXPECT_EQ(TickScope::slices_for(q + 1), 2);
    EXPECT_EQ(TickScope::slices_for(10 * q), 10);
    EXPECT_EQ(TickScope::slices_for(10 * q + 1), 11);
    EXPECT_EQ(TickScope::slices_for(1000000), TickScope::kMaxSlices);
}

TEST(TickScope, FewQueuesMeanOneFullCall)
{
    TickScope t;
    EXPECT_FALSE(t.begin_full(1));
    EXPECT_FALSE(t.slicing());
}

TEST(TickScope, SlicesCoverEveryQueueOnce)
{
    TickScope t;
    QueueSet seen;
    int count = 0;
    ASSERT_TRUE(t.begin_full(3));
    for (int i = 0; i < 3; i++) {
        ASSERT_TRUE(t.slicing());
        EXPECT_EQ(t.slice(), i);
        QueueSet s = t.slice_set();
        std::int32_t r[QueueSet::kBits];
        int n = s.residues(r, QueueSet::kBits);
        for (int k = 0; k < n; k++) {
            EXPECT_FALSE(seen.has_residue(r[k])) << r[k];
            seen.add(r[k]);
        }
        count += n;
        EXPECT_EQ(t.after_slice(nullptr, 1000, 2000, 10), i == 2);
    }
    EXPECT_EQ(count, QueueSet::kBits);
    EXPECT_FALSE(t.slicing());
    EXPECT_EQ(t.full_queues(), 30);
}

TEST(TickScope, SlicesFindTheEarliestDueAndAllPending)
{
    TickScope t;
    QueueSet a = of(5), b = of(700);
    ASSERT_TRUE(t.begin_full(2));
    EXPECT_TRUE(t.begin_full(8));  // under way: it goes on, in 2
    EXPECT_EQ(t.slices(), 2);
    EXPECT_FALSE(t.after_slice(&a, 300, 900, 64));
    EXPECT_TRUE(t.after_slice(&b, 200, 1000, 60));
    EXPECT_EQ(t.full_pending_due(), 200);
    EXPECT_EQ(t.full_idle_due(), 900);
    EXPECT_EQ(t.full_queues(), 124);
    // the queues with events get targeted calls until the idle ticks are due
    EXPECT_TRUE(t.targeted(100));
    std::int32_t r[4];
    ASSERT_EQ(t.targets().residues(r, 4), 2);
    EXPECT_EQ(r[0], 5);
    EXPECT_EQ(r[1], 700);
    EXPECT_FALSE(t.targeted(900));
}

TEST(TickScope, CommitsAreTickedBetweenSlices)
{
    TickScope t;
    QueueSet a = of(5);
    ASSERT_TRUE(t.begin_full(4));
    EXPECT_FALSE(t.after_slice(nullptr, 1000, 1000, 64));
    // a commit on queue 5, with the full call overdue: ticked first, once
    t.on_wake(&a, 0);
    EXPECT_TRUE(t.targeted(50));
    t.took_targets();
    EXPECT_FALSE(t.targeted(51));  // then the slices go on
    EXPECT_EQ(t.after_targeted(5000), 5000);
    EXPECT_FALSE(t.targeted(52));  // its policy read does not stop them
    EXPECT_TRUE(t.slicing());
    EXPECT_EQ(t.slice(), 1);
    // another commit: ticked before the next slice again
    t.on_wake(&a, 0);
    EXPECT_TRUE(t.targeted(60));
}

// A queue a commit named between slices whose tick is not due yet (events
// short of ticker_max_count) keeps its deadline after the sliced call,
// though the slice holding it ran before its events.
TEST(TickScope, CommitBetweenSlicesKeepsItsDeadline)
{
    TickScope t;
    QueueSet a = of(5);
    ASSERT_TRUE(t.begin_full(2));
    EXPECT_FALSE(t.after_slice(nullptr, 9000, 9000, 64));  // queue 5's slice
    t.on_wake(&a, 0);
    t.took_targets();
    EXPECT_EQ(t.after_targeted(300), 300);  // its max_lag: in 300 ms
    EXPECT_TRUE(t.after_slice(nullptr, 9000, 9000, 64));
    EXPECT_EQ(t.full_pending_due(), 300);
    EXPECT_FALSE(t.full_next());
    EXPECT_TRUE(t.targeted(100));  // then a targeted call for it
    std::int32_t r[4];
    ASSERT_EQ(t.targets().residues(r, 4), 1);
    EXPECT_EQ(r[0], 5);
}

TEST(TickScope, UnnamedWakeWhileSlicingMeansAnotherFullCall)
{
    TickScope t;
    QueueSet a = of(5);
    ASSERT_TRUE(t.begin_full(2));
    EXPECT_FALSE(t.after_slice(nullptr, 1000, 1000, 64));
    t.on_wake(nullptr, 0);
    t.on_wake(&a, 0);
    EXPECT_TRUE(t.targeted(10));  // named commits still go between slices
    t.took_targets();
    (void) t.after_targeted(5000);
    EXPECT_TRUE(t.after_slice(nullptr, 1000, 1000, 64));
    EXPECT_TRUE(t.full_next());    // at once
    EXPECT_FALSE(t.targeted(10));  // a full call next
    EXPECT_TRUE(t.begin_full(2));
    EXPECT_FALSE(t.full_next());
    t.on_wake(&a, 0);
    EXPECT_TRUE(t.targeted(20));  // and commits go between its slices
}

TEST(TickScope, FailedSliceStartsOver)
{
    TickScope t;
    ASSERT_TRUE(t.begin_full(4));
    EXPECT_FALSE(t.after_slice(nullptr, 1000, 1000, 64));
    t.abort_slices();
    EXPECT_FALSE(t.slicing());
    ASSERT_TRUE(t.begin_full(4));
    EXPECT_EQ(t.slice(), 0);
}
