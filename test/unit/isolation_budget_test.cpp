// Unit tests of the time a chunk may spend finding its failures
// (src/core/isolation_budget.*).
#include "core/isolation_budget.hpp"

#include <gtest/gtest.h>

using pqw::IsolationBudget;
using pqw::isolation_chunk_done;
using pqw::isolation_cut;
using pqw::isolation_fetch;
using pqw::isolation_may_call;

TEST(IsolationBudget, CallsWithinTheBudget)
{
    EXPECT_TRUE(isolation_may_call(1000, 1000, 500, 0));
    EXPECT_TRUE(isolation_may_call(1000, 1000, 500, 3));
    EXPECT_TRUE(isolation_may_call(1000, 1499, 500, 3));
    EXPECT_FALSE(isolation_may_call(1000, 1500, 500, 3));
    EXPECT_FALSE(isolation_may_call(1000, 90000, 500, 1));
}

TEST(IsolationBudget, EveryChunkSettlesOneMessage)
{
    // Past the budget with nothing settled: the chunk must still move on.
    EXPECT_TRUE(isolation_may_call(1000, 90000, 500, 0));
}

TEST(IsolationBudget, NothingCutMeansConfiguredChunks)
{
    IsolationBudget b;
    EXPECT_EQ(isolation_fetch(b, 1000), 1000);
    isolation_chunk_done(b, true, 1000);
    EXPECT_EQ(isolation_fetch(b, 1000), 1000);
    isolation_chunk_done(b, false, 1000);
    EXPECT_EQ(isolation_fetch(b, 1000), 1000);
}

TEST(IsolationBudget, ACutChunkSizesTheNext)
{
    IsolationBudget b;
    isolation_cut(b, 151);
    EXPECT_EQ(isolation_fetch(b, 1000), 151);
    // never more than the caller would fetch anyway (commit narrowing)
    EXPECT_EQ(isolation_fetch(b, 40), 40);
    isolation_cut(b, 0);
    EXPECT_EQ(isolation_fetch(b, 1000), 1);
}

TEST(IsolationBudget, StaysSmallWhileCallsTimeOut)
{
    IsolationBudget b;
    isolation_cut(b, 1);
    for (int i = 0; i < 10; i++) {
        isolation_chunk_done(b, true, 1000);
        EXPECT_EQ(isolation_fetch(b, 1000), 1);
    }
}

TEST(IsolationBudget, GrowsBackByDoubling)
{
    IsolationBudget b;
    isolation_cut(b, 100);
    isolation_chunk_done(b, false, 1000);
    EXPECT_EQ(isolation_fetch(b, 1000), 200);
    isolation_chunk_done(b, false, 1000);
    EXPECT_EQ(isolation_fetch(b, 1000), 400);
    isolation_chunk_done(b, false, 1000);
    EXPECT_EQ(isolation_fetch(b, 1000), 800);
    isolation_chunk_done(b, false, 1000);
    EXPECT_EQ(b.limit, 0);
    EXPECT_EQ(isolation_fetch(b, 1000), 1000);
}
