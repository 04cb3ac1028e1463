// Unit tests of the commit hook's per-relation memo (src/core/rel_memo.hpp).
#include "core/rel_memo.hpp"

#include <gtest/gtest.h>

using pqw::RelMemo;

TEST(RelMemo, KeepsAnswersOfSeveralRelations)
{
    RelMemo<int, 64> m;
    int v = 0;
    EXPECT_FALSE(m.get(16384, &v));
    // a TPC-B transaction's four tables stay remembered together
    m.put(16384, 1);
    m.put(16390, 2);
    m.put(16396, 3);
    m.put(16401, 4);
    EXPECT_TRUE(m.get(16384, &v));
    EXPECT_EQ(v, 1);
    EXPECT_TRUE(m.get(16390, &v));
    EXPECT_EQ(v, 2);
    EXPECT_TRUE(m.get(16396, &v));
    EXPECT_EQ(v, 3);
    EXPECT_TRUE(m.get(16401, &v));
    EXPECT_EQ(v, 4);
    m.put(16390, 5);  // answered again
    EXPECT_TRUE(m.get(16390, &v));
    EXPECT_EQ(v, 5);
}

TEST(RelMemo, CollisionReplacesAndNeverAnswersForAnother)
{
    RelMemo<int, 64> m;
    int v = 0;
    m.put(100, 1);
    m.put(164, 2);  // same slot (100 % 64 == 164 % 64)
    EXPECT_FALSE(m.get(100, &v));
    EXPECT_TRUE(m.get(164, &v));
    EXPECT_EQ(v, 2);
}

TEST(RelMemo, InvalidOidIsNeverStored)
{
    RelMemo<int, 64> m;
    int v = 7;
    m.put(0, 1);
    EXPECT_FALSE(m.get(0, &v));
    EXPECT_EQ(v, 7);
}

TEST(RelMemo, ForgetOneOrAll)
{
    RelMemo<int, 64> m;
    int v = 0;
    m.put(100, 1);
    m.put(101, 2);
    m.forget(164);  // another relation of the same slot: 100 stays
    EXPECT_TRUE(m.get(100, &v));
    m.forget(100);
    EXPECT_FALSE(m.get(100, &v));
    EXPECT_TRUE(m.get(101, &v));
    m.clear();
    EXPECT_FALSE(m.get(101, &v));
}
