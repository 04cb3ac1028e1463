// Unit tests of the pgque_worker.databases parser (src/core/dblist.*).
#include "core/dblist.hpp"

#include <gtest/gtest.h>

using pqw::DbList;
using pqw::parse_db_list;

static DbList ok(const std::string &text)
{
    DbList l;
    std::string err;
    EXPECT_TRUE(parse_db_list(text, l, err)) << text << ": " << err;
    return l;
}

static std::string bad(const std::string &text)
{
    DbList l;
    std::string err;
    EXPECT_FALSE(parse_db_list(text, l, err)) << text;
    return err;
}

TEST(DbList, StarMeansAll)
{
    DbList l = ok("*");
    EXPECT_TRUE(l.all);
    EXPECT_TRUE(l.contains("anything"));
    EXPECT_TRUE(ok("  *  ").all);
}

TEST(DbList, PlainNamesTrimmedAndDeduplicated)
{
    DbList l = ok(" app , billing,app ");
    EXPECT_FALSE(l.all);
    ASSERT_EQ(l.names.size(), 2u);
    EXPECT_EQ(l.names[0], "app");
    EXPECT_EQ(l.names[1], "billing");
    EXPECT_TRUE(l.contains("billing"));
    EXPECT_FALSE(l.contains("App"));  // case-sensitive, like database names
    EXPECT_FALSE(l.contains("bill"));
}

TEST(DbList, QuotedNamesKeepCommasBlanksQuotesAndUnicode)
{
    DbList l = ok("\"my db\", \"a,b\" ,\"say \"\"hi\"\"\", \"*\", \"bäckerei\"");
    ASSERT_EQ(l.names.size(), 5u);
    EXPECT_EQ(l.names[0], "my db");
    EXPECT_EQ(l.names[1], "a,b");
    EXPECT_EQ(l.names[2], "say \"hi\"");
    EXPECT_EQ(l.names[3], "*");  // a database really called *
    EXPECT_EQ(l.names[4], "bäckerei");
    EXPECT_FALSE(l.all);
}

TEST(DbList, RejectsMalformedLists)
{
    EXPECT_EQ(bad(""), "list of databases is empty");
    EXPECT_EQ(bad("   "), "list of databases is empty");
    EXPECT_EQ(bad("a,,b"), "empty entry in list of databases");
    EXPECT_EQ(bad("a,"), "empty entry in list of databases");
    EXPECT_EQ(bad(",a"), "empty entry in list of databases");
    EXPECT_EQ(bad("\"abc"), "unterminated quoted database name");
    EXPECT_EQ(bad("\"\""), "quoted database name is empty");
    EXPECT_EQ(bad("\"a\" b"), "expected a comma after database name \"a\"");
    EXPECT_EQ(bad("a\"b"), "database name \"a\"b\" has a misplaced double quote");
    EXPECT_EQ(bad("*, app"), "\"*\" cannot be combined with database names");
    EXPECT_NE(bad(std::string(64, 'x')).find("longer than 63 bytes"), std::string::npos);
    ok(std::string(63, 'x'));
}

TEST(DbList, FailedParseLeavesOutputUntouched)
{
    DbList l = ok("keep");
    std::string err;
    EXPECT_FALSE(parse_db_list("x,,y", l, err));
    ASSERT_EQ(l.names.size(), 1u);
    EXPECT_EQ(l.names[0], "keep");
}

TEST(DbList, TooLongNameMessageKeepsUtf8Whole)
{
    std::string name = "a";
    for (int i = 0; i < 40; ++i)
        name += "\xd1\x8f";  // CYRILLIC SMALL LETTER YA, 2 bytes
    std::string err = bad(name);
    // the prefix quoted is "a" + 9 whole letters (19 bytes), never half of one
    EXPECT_EQ(err, "database name \"a" + name.substr(1, 18) + "...\" is longer than 63 bytes");
}
