// Unit tests of the probes of databases without PgQue (src/core/probe.*).
#include "core/probe.hpp"

#include <gtest/gtest.h>

using pqw::absent_probe_delay;
using pqw::kAbsentProbeCapMs;
using pqw::requested_probe_at;

TEST(AbsentProbe, DoublesFromTheIntervalUpToTheCap)
{
    EXPECT_EQ(absent_probe_delay(10000, 1), 10000);
    EXPECT_EQ(absent_probe_delay(10000, 2), 20000);
    EXPECT_EQ(absent_probe_delay(10000, 3), 40000);
    EXPECT_EQ(absent_probe_delay(10000, 5), 160000);
    EXPECT_EQ(absent_probe_delay(10000, 6), kAbsentProbeCapMs);
    EXPECT_EQ(absent_probe_delay(10000, 1000000), kAbsentProbeCapMs);
}

TEST(AbsentProbe, NeverSoonerThanTheInterval)
{
    // an interval above the cap is kept as it is: the cap never shortens it
    EXPECT_EQ(absent_probe_delay(3600000, 1), 3600000);
    EXPECT_EQ(absent_probe_delay(3600000, 9), 3600000);
    // nonsense in, at least 1 ms out
    EXPECT_EQ(absent_probe_delay(0, 1), 1);
    EXPECT_EQ(absent_probe_delay(100, 0), 100);
}

TEST(AbsentProbe, RequestBringsTheProbeForwardToOneIntervalAfterTheLast)
{
    // last probe at 1000, backed off to 161000: a request at 5000 makes it 11000
    EXPECT_EQ(requested_probe_at(161000, 1000, 10000, 5000), 11000);
    // a request more than an interval after the last probe: at once
    EXPECT_EQ(requested_probe_at(161000, 1000, 10000, 50000), 50000);
}

TEST(AbsentProbe, RequestNeverDelaysAndNeverSpeedsUpPastOnePerInterval)
{
    // already due sooner than a request would make it: kept
    EXPECT_EQ(requested_probe_at(3000, 1000, 10000, 2000), 3000);
    // a storm of requests right after a probe: still one interval apart
    for (std::int64_t now = 1001; now < 11000; now += 7)
        EXPECT_EQ(requested_probe_at(161000, 1000, 10000, now), 11000);
}
