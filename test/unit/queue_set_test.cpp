// Unit tests of the set of woken queues (src/core/queue_set.*).
#include "core/queue_set.hpp"

#include <gtest/gtest.h>

using pqw::event_table_queue_id;
using pqw::QueueSet;

TEST(QueueSet, EventTableNames)
{
    EXPECT_EQ(event_table_queue_id("event_7_0"), 7);
    EXPECT_EQ(event_table_queue_id("event_12_2"), 12);
    EXPECT_EQ(event_table_queue_id("event_3"), 3);  // the parent table
    EXPECT_EQ(event_table_queue_id("event_1000000_1"), 1000000);
    EXPECT_EQ(event_table_queue_id("event_"), -1);
    EXPECT_EQ(event_table_queue_id("event_x_1"), -1);
    EXPECT_EQ(event_table_queue_id("event_5_"), -1);
    EXPECT_EQ(event_table_queue_id("event_5_1_2"), -1);
    EXPECT_EQ(event_table_queue_id("event_5_id_seq"), -1);
    EXPECT_EQ(event_table_queue_id("event_template"), -1);
    EXPECT_EQ(event_table_queue_id("events_5_1"), -1);
    EXPECT_EQ(event_table_queue_id("event_99999999999999999999_1"), -1);
    EXPECT_EQ(event_table_queue_id(""), -1);
    EXPECT_EQ(event_table_queue_id(nullptr), -1);
}

TEST(QueueSet, AddMergeResidues)
{
    QueueSet a, b;
    EXPECT_TRUE(a.empty());
    a.add(3);
    a.add(64);
    b.add(1023);
    b.add(1024 + 3);  // collides with 3
    a.merge(b);
    EXPECT_FALSE(a.empty());
    std::int32_t out[8];
    ASSERT_EQ(a.residues(out, 8), 3);
    EXPECT_EQ(out[0], 3);
    EXPECT_EQ(out[1], 64);
    EXPECT_EQ(out[2], 1023);
    a.clear();
    EXPECT_TRUE(a.empty());
}

TEST(QueueSet, ResiduesCountsBeyondMax)
{
    QueueSet a;
    for (std::int64_t i = 0; i < 100; i++)
        a.add(i * 3);
    std::int32_t out[10];
    EXPECT_EQ(a.residues(out, 10), 100);
    EXPECT_EQ(out[9], 27);
}

// The dispatcher asks whether a wake-up names a handler's queue by residue.
TEST(QueueSet, HasResidue)
{
    QueueSet a;
    a.add(5);
    a.add(1024 + 700);
    EXPECT_TRUE(a.has_residue(5));
    EXPECT_TRUE(a.has_residue(700));
    EXPECT_FALSE(a.has_residue(6));
    EXPECT_FALSE(a.has_residue(0));
    EXPECT_FALSE(a.has_residue(-1));    // unknown: callers treat it apart
    EXPECT_FALSE(a.has_residue(1024));  // out of range, not a bit
    std::int32_t out[4];
    ASSERT_EQ(a.residues(out, 4), 2);
    for (int i = 0; i < 2; i++)
        EXPECT_TRUE(a.has_residue(out[i]));
}
