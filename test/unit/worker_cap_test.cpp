// Unit tests of the allotment of workers within pgque_worker.max_workers
// (src/core/worker_cap.*).
#include "core/worker_cap.hpp"

#include <gtest/gtest.h>

#include <vector>

using pqw::allot_workers;
using pqw::DbDemand;
using pqw::served_before;

namespace {

std::vector<int> allot(const std::vector<DbDemand> &dbs, int cap)
{
    std::vector<int> order(dbs.size()), allowed(dbs.size(), -1);

    allot_workers(dbs.data(), static_cast<int>(dbs.size()), cap, order.data(), allowed.data());
    return allowed;
}

}  // namespace

TEST(WorkerCap, EveryoneWithinTheCap)
{
    EXPECT_EQ(allot({{true, 5, 2}, {false, 7, 1}, {false, 9, 2}}, 5), (std::vector<int>{2, 1, 2}));
    EXPECT_EQ(allot({{true, 5, 2}, {false, 7, 1}}, -1), (std::vector<int>{2, 1}));
}

TEST(WorkerCap, SuperuserOwnedFirstThenOlder)
{
    // listed newest first: the tenant's databases 9 and 7, a superuser's 12
    EXPECT_EQ(allot({{false, 9, 1}, {false, 7, 1}, {true, 12, 1}}, 2), (std::vector<int>{0, 1, 1}));
    EXPECT_EQ(allot({{false, 9, 1}, {false, 7, 1}, {true, 12, 1}}, 1), (std::vector<int>{0, 0, 1}));
}

TEST(WorkerCap, ADatabaseGetsAllItWantsBeforeTheNext)
{
    // the older database's dispatcher before the newer one's ticker
    EXPECT_EQ(allot({{false, 7, 2}, {false, 9, 1}}, 2), (std::vector<int>{2, 0}));
    // at the edge: the ticker only (it comes first, and alone ticks)
    EXPECT_EQ(allot({{false, 7, 2}, {false, 9, 1}}, 1), (std::vector<int>{1, 0}));
    EXPECT_EQ(allot({{false, 7, 1}, {false, 9, 2}}, 2), (std::vector<int>{1, 1}));
}

TEST(WorkerCap, NothingWantedTakesNothing)
{
    EXPECT_EQ(allot({{true, 5, 0}, {false, 7, 2}}, 2), (std::vector<int>{0, 2}));
    EXPECT_EQ(allot({{true, 5, -3}, {false, 7, 1}}, 1), (std::vector<int>{0, 1}));
    EXPECT_EQ(allot({{false, 7, 2}}, 0), (std::vector<int>{0}));
    EXPECT_EQ(allot({}, 3), (std::vector<int>{}));
}

TEST(WorkerCap, ServedBefore)
{
    EXPECT_TRUE(served_before(true, 900, false, 5));
    EXPECT_FALSE(served_before(false, 5, true, 900));
    EXPECT_TRUE(served_before(false, 5, false, 900));
    EXPECT_FALSE(served_before(false, 900, false, 5));
    EXPECT_FALSE(served_before(true, 7, true, 7));
}
