// Unit tests of the capped exponential backoff (src/core/backoff.*).
#include "core/backoff.hpp"

#include <gtest/gtest.h>

using pqw::backoff_delay;
using pqw::BackoffPolicy;

static constexpr std::uint32_t kNoJitter = 0x80000000u;

TEST(Backoff, DoublesUntilCap)
{
    BackoffPolicy p;
    p.base_ms = 100;
    p.cap_ms = 1000;
    p.jitter_pct = 0;
    EXPECT_EQ(backoff_delay(p, 1, 7), 100);
    EXPECT_EQ(backoff_delay(p, 2, 7), 200);
    EXPECT_EQ(backoff_delay(p, 3, 7), 400);
    EXPECT_EQ(backoff_delay(p, 4, 7), 800);
    EXPECT_EQ(backoff_delay(p, 5, 7), 1000);
    EXPECT_EQ(backoff_delay(p, 1000000, 7), 1000);
}

TEST(Backoff, JitterStaysWithinBoundsAndCap)
{
    BackoffPolicy p;
    p.base_ms = 1000;
    p.cap_ms = 60000;
    p.jitter_pct = 20;
    for (std::uint32_t r = 0; r < 5000; r += 7) {
        auto d = backoff_delay(p, 1, r);
        EXPECT_GE(d, 800);
        EXPECT_LE(d, 1200);
        auto c = backoff_delay(p, 30, r);
        EXPECT_GE(c, 48000);
        EXPECT_LE(c, 60000);
    }
    EXPECT_EQ(backoff_delay(p, 1, kNoJitter), 1000);
}

TEST(Backoff, BadPolicyStillGivesPositiveDelay)
{
    BackoffPolicy p;
    p.base_ms = 0;
    p.cap_ms = -5;
    p.jitter_pct = 500;
    EXPECT_GE(backoff_delay(p, 0, 3), 1);
    EXPECT_GE(backoff_delay(p, -4, 3), 1);
}
