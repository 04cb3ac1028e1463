// backoff.cpp: capped exponential backoff with jitter.
#include "backoff.hpp"

namespace pqw {

std::int64_t backoff_delay(const BackoffPolicy &p, int failures, std::uint32_t rnd) noexcept
{
    std::int64_t base = p.base_ms > 0 ? p.base_ms : 1;
    std::int64_t cap = p.cap_ms >= base ? p.cap_ms : base;
    if (failures < 1)
        failures = 1;
    std::int64_t d = base;
    for (int i = 1; i < failures && d < cap; ++i)
        d *= 2;
    if (d > cap)
        d = cap;
    int pct = p.jitter_pct < 0 ? 0 : (p.jitter_pct > 100 ? 100 : p.jitter_pct);
    // Map rnd to [-pct, +pct] percent of d.
    std::int64_t span = d * pct / 100;
    if (span > 0) {
        std::int64_t off = static_cast<std::int64_t>(rnd % static_cast<std::uint32_t>(2 * span + 1)) - span;
        if (rnd == 0x80000000u)
            off = 0;
        d += off;
    }
    if (d > cap)
        d = cap;
    return d < 1 ? 1 : d;
}

}  // namespace pqw
