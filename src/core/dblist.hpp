// dblist.hpp: parsing of pgque_worker.databases ("*" or a list of names).
//
// PostgreSQL-free. Names follow SQL identifier rules for the list syntax:
// entries are separated by commas, surrounding blanks are ignored, and an
// entry in double quotes may hold commas, blanks and "" for a quote. Names
// are compared exactly (database names are case-sensitive).
#pragma once

#include <string>
#include <vector>

namespace pqw {

struct DbList {
    bool all = false;                 // "*": every database with PgQue
    std::vector<std::string> names;   // otherwise these, deduplicated

    bool contains(const std::string &db) const;
};

// Parses `text` into `out`. On bad input returns false and sets `error` to a
// message in PostgreSQL style (lower case, no trailing period).
bool parse_db_list(const std::string &text, DbList &out, std::string &error);

}  // namespace pqw
