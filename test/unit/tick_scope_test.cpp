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
