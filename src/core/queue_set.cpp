// queue_set.cpp: see queue_set.hpp.
#include "core/queue_set.hpp"

namespace pqw {

int QueueSet::residues(std::int32_t *out, int max) const noexcept
{
    int n = 0;
    for (int i = 0; i < kWords; i++)
        for (int b = 0; b < 64; b++)
            if (words[i] & (std::uint64_t{1} << b)) {
                if (n < max)
                    out[n] = i * 64 + b;
                n++;
            }
    return n;
}

// Digits from *p; advances p. -1 if none or too many.
static std::int64_t parse_digits(const char *&p) noexcept
{
    std::int64_t v = 0;
    int n = 0;
    while (*p >= '0' && *p <= '9') {
        if (++n > 18)
            return -1;
        v = v * 10 + (*p - '0');
        p++;
    }
    return n > 0 ? v : -1;
}

std::int64_t event_table_queue_id(const char *relname) noexcept
{
    static const char prefix[] = "event_";
    const char *p = relname;
    if (p == nullptr)
        return -1;
    for (const char *q = prefix; *q; q++, p++)
        if (*p != *q)
            return -1;
    std::int64_t id = parse_digits(p);
    if (id < 0)
        return -1;
    if (*p == '\0')
        return id;
    if (*p != '_')
        return -1;
    p++;
    if (parse_digits(p) < 0 || *p != '\0')
        return -1;
    return id;
}

}  // namespace pqw
