// Unit tests of the bound on commit-time failures (src/core/commit_retry.*).
#include "core/commit_retry.hpp"

#include <gtest/gtest.h>

using pqw::CommitRetry;
using pqw::commit_failed;
using pqw::commit_retry_fetch;
using pqw::commit_retry_nacks;
using pqw::commit_succeeded;

TEST(CommitRetry, NothingFailedMeansConfiguredChunks)
{
    CommitRetry r;
    EXPECT_EQ(commit_retry_fetch(r, 100), 100);
    EXPECT_FALSE(commit_retry_nacks(r, 0));
    EXPECT_FALSE(commit_retry_nacks(r, 1));
}

TEST(CommitRetry, SameChunkIsRetriedBeforeNarrowing)
{
    CommitRetry r;
    for (int i = 1; i < CommitRetry::kTries; i++) {
        commit_failed(r, 1, 100, 100);
        EXPECT_EQ(commit_retry_fetch(r, 100), 100) << "after " << i << " failures";
    }
    EXPECT_TRUE(commit_failed(r, 1, 100, 100));
    EXPECT_EQ(commit_retry_fetch(r, 100), 50);
}

TEST(CommitRetry, ASuccessInBetweenRestartsTheCount)
{
    CommitRetry r;
    for (int round = 0; round < 3; round++) {
        for (int i = 1; i < CommitRetry::kTries; i++)
            commit_failed(r, 1, 100, 100);
        commit_succeeded(r, 0, false);  // the chunk went through this time
    }
    EXPECT_EQ(commit_retry_fetch(r, 100), 100);
}

TEST(CommitRetry, AnotherChunkStartsItsOwnCount)
{
    CommitRetry r;
    for (int i = 1; i < CommitRetry::kTries; i++)
        commit_failed(r, 1, 100, 100);
    commit_failed(r, 101, 200, 100);  // a different chunk
    EXPECT_EQ(commit_retry_fetch(r, 100), 100);
}

// Event 7 of 1..10 makes every commit that handled it fail: the chunks
// narrow down to it, it alone is nacked, every other event commits once.
TEST(CommitRetry, NarrowsDownToOneEventAndNacksIt)
{
    CommitRetry r;
    const int chunk = 10;
    const std::int64_t bad = 7;
    std::int64_t next = 1;       // first event not committed yet
    int committed = 0, nacked = 0, attempts = 0;
    while (next <= 10 && attempts < 100) {
        attempts++;
        int want = commit_retry_fetch(r, chunk);
        std::int64_t last = next + want - 1;
        if (last > 10)
            last = 10;
        int n = static_cast<int>(last - next + 1);
        bool handled_bad = false;
        for (std::int64_t id = next; id <= last; id++)
            if (id == bad && !commit_retry_nacks(r, id))
                handled_bad = true;
        if (handled_bad) {
            commit_failed(r, next, last, n);
            continue;
        }
        for (std::int64_t id = next; id <= last; id++)
            commit_retry_nacks(r, id) ? nacked++ : committed++;
        bool finished = last == 10;
        commit_succeeded(r, last, finished);
        next = last + 1;
    }
    EXPECT_EQ(committed, 9);
    EXPECT_EQ(nacked, 1);
    EXPECT_LT(attempts, 25);
    // afterwards: back to configured chunks, nothing nacked
    EXPECT_EQ(commit_retry_fetch(r, chunk), chunk);
    EXPECT_FALSE(commit_retry_nacks(r, bad));
}

TEST(CommitRetry, EmptyChunkChangesNothing)
{
    CommitRetry r;
    for (int i = 0; i < 10; i++)
        commit_failed(r, 5, 4, 0);
    EXPECT_EQ(commit_retry_fetch(r, 100), 100);
}

TEST(CommitRetry, NarrowingEndsOncePastTheFailedChunk)
{
    CommitRetry r;
    for (int i = 0; i < CommitRetry::kTries; i++)
        commit_failed(r, 1, 100, 100);
    EXPECT_EQ(commit_retry_fetch(r, 100), 50);
    commit_succeeded(r, 50, false);
    EXPECT_EQ(commit_retry_fetch(r, 100), 50);  // the second half still narrowed
    commit_succeeded(r, 100, false);
    EXPECT_EQ(commit_retry_fetch(r, 100), 100);
}

// A chunk cut short by the isolation budget ends after a different number
// of messages on each try: it is still the same chunk, counted towards
// narrowing, which starts from its smallest size.
TEST(CommitRetry, ACutChunkOfVaryingSizeIsStillNarrowed)
{
    CommitRetry r;
    const int sizes[] = {40, 37, 45};
    static_assert(sizeof(sizes) / sizeof(sizes[0]) == CommitRetry::kTries, "one size a try");
    bool narrowed = false;
    for (int n : sizes)
        narrowed = commit_failed(r, 1, n, n);
    EXPECT_TRUE(narrowed);
    EXPECT_EQ(commit_retry_fetch(r, 100), 19);  // half of 37, rounded up
}

// A cut chunk that came down to one event on one of its tries: that event
// gets tries of its own before it is nacked (the failures of the larger
// tries may have been another event's).
TEST(CommitRetry, ACutChunkDownToOneEventTriesItAloneFirst)
{
    CommitRetry r;
    commit_failed(r, 5, 9, 5);
    commit_failed(r, 5, 5, 1);
    EXPECT_TRUE(commit_failed(r, 5, 7, 3));
    EXPECT_FALSE(commit_retry_nacks(r, 5));
    EXPECT_EQ(commit_retry_fetch(r, 100), 1);
    for (int i = 1; i < CommitRetry::kTries; i++) {
        commit_failed(r, 5, 5, 1);
        EXPECT_FALSE(commit_retry_nacks(r, 5));
    }
    commit_failed(r, 5, 5, 1);
    EXPECT_TRUE(commit_retry_nacks(r, 5));
    EXPECT_FALSE(commit_retry_nacks(r, 6));
}
