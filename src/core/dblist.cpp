// dblist.cpp: parser for the pgque_worker.databases setting.
#include "dblist.hpp"

#include <algorithm>

namespace pqw {

namespace {

constexpr std::size_t kMaxNameBytes = 63;  // NAMEDATALEN - 1

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

}  // namespace

bool DbList::contains(const std::string &db) const
{
    if (all)
        return true;
    return std::find(names.begin(), names.end(), db) != names.end();
}

bool parse_db_list(const std::string &text, DbList &out, std::string &error)
{
    DbList result;
    std::size_t i = 0;
    const std::size_t n = text.size();
    bool saw_star = false;

    while (i < n && is_blank(text[i]))
        ++i;
    if (i == n) {
        error = "list of databases is empty";
        return false;
    }

    for (;;) {
        while (i < n && is_blank(text[i]))
            ++i;
        std::string name;
        bool quoted = false;
        if (i < n && text[i] == '"') {
            quoted = true;
            ++i;
            for (;;) {
                if (i >= n) {
                    error = "unterminated quoted database name";
                    return false;
                }
                if (text[i] == '"') {
                    if (i + 1 < n && text[i + 1] == '"') {
                        name.push_back('"');
                        i += 2;
                        continue;
                    }
                    ++i;
                    break;
                }
                name.push_back(text[i++]);
            }
            while (i < n && is_blank(text[i]))
                ++i;
        } else {
            std::size_t start = i;
            while (i < n && text[i] != ',')
                ++i;
            std::size_t end = i;
            while (end > start && is_blank(text[end - 1]))
                --end;
            name = text.substr(start, end - start);
            if (name.find('"') != std::string::npos) {
                error = "database name \"" + name + "\" has a misplaced double quote";
                return false;
            }
        }
        if (name.empty()) {
            error = quoted ? "quoted database name is empty" : "empty entry in list of databases";
            return false;
        }
        if (name.size() > kMaxNameBytes) {
            // Cut the quoted prefix on a UTF-8 character boundary.
            std::size_t cut = 20;
            while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80)
                --cut;
            error = "database name \"" + name.substr(0, cut) + "...\" is longer than 63 bytes";
            return false;
        }
        if (!quoted && name == "*")
            saw_star = true;
        else if (std::find(result.names.begin(), result.names.end(), name) == result.names.end())
            result.names.push_back(name);

        if (i >= n)
            break;
        if (text[i] != ',') {
            error = "expected a comma after database name \"" + name + "\"";
            return false;
        }
        ++i;
        std::size_t j = i;
        while (j < n && is_blank(text[j]))
            ++j;
        if (j >= n) {
            error = "empty entry in list of databases";
            return false;
        }
    }

    if (saw_star && !result.names.empty()) {
        error = "\"*\" cannot be combined with database names";
        return false;
    }
    result.all = saw_star;
    out = std::move(result);
    return true;
}

}  // namespace pqw
