// Unit tests of the error log rate limiter (src/core/log_limiter.*).
#include "core/log_limiter.hpp"

#include <gtest/gtest.h>

using pqw::LogDecision;
using pqw::LogLimiter;

TEST(LogLimiter, FirstErrorLoggedRepeatsSuppressedThenSummarised)
{
    LogLimiter l(60000);
    EXPECT_EQ(l.on_error(1, 0), LogDecision::kLog);
    for (std::int64_t i = 1; i <= 100; ++i)
        EXPECT_EQ(l.on_error(1, i * 100), LogDecision::kSuppress);
    EXPECT_EQ(l.on_error(1, 60000), LogDecision::kLogRepeated);
    EXPECT_EQ(l.suppressed(), 100);
    EXPECT_EQ(l.on_error(1, 60001), LogDecision::kSuppress);
}

TEST(LogLimiter, ADifferentErrorIsLoggedAtOnce)
{
    LogLimiter l(60000);
    EXPECT_EQ(l.on_error(1, 0), LogDecision::kLog);
    EXPECT_EQ(l.on_error(1, 10), LogDecision::kSuppress);
    EXPECT_EQ(l.on_error(2, 20), LogDecision::kLog);
}

TEST(LogLimiter, RecoveryReportedOnceWithCount)
{
    LogLimiter l(60000);
    EXPECT_FALSE(l.on_success());
    l.on_error(7, 0);
    l.on_error(7, 1);
    l.on_error(7, 2);
    EXPECT_TRUE(l.on_success());
    EXPECT_EQ(l.failures_in_run(), 3);
    EXPECT_FALSE(l.on_success());
    // After recovery the same error is news again.
    EXPECT_EQ(l.on_error(7, 3), LogDecision::kLog);
}

TEST(LogLimiter, ZeroQuietIntervalLogsEverything)
{
    LogLimiter l(0);
    EXPECT_EQ(l.on_error(1, 0), LogDecision::kLog);
    EXPECT_EQ(l.on_error(1, 0), LogDecision::kLogRepeated);
}

TEST(Fingerprint, StableAndDistinguishing)
{
    EXPECT_EQ(pqw::fingerprint("abc"), pqw::fingerprint("abc"));
    EXPECT_NE(pqw::fingerprint("abc"), pqw::fingerprint("abd"));
    EXPECT_NE(pqw::fingerprint("abc", 1), pqw::fingerprint("abc", 2));
    EXPECT_EQ(pqw::fingerprint(nullptr, 5), 5u);
}
