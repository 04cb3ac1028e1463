// probe.cpp: when the launcher looks again at a database without PgQue.
#include "probe.hpp"

#include "backoff.hpp"

namespace pqw {

std::int64_t absent_probe_delay(std::int64_t interval_ms, int absent) noexcept
{
    BackoffPolicy p;

    p.base_ms = interval_ms > 0 ? interval_ms : 1;
    p.cap_ms = p.base_ms > kAbsentProbeCapMs ? p.base_ms : kAbsentProbeCapMs;
    p.jitter_pct = 0;
    return backoff_delay(p, absent, 0x80000000u);
}

std::int64_t requested_probe_at(std::int64_t planned, std::int64_t last_probe,
                                std::int64_t interval_ms, std::int64_t now) noexcept
{
    std::int64_t earliest = last_probe + (interval_ms > 0 ? interval_ms : 1);

    if (earliest < now)
        earliest = now;
    return planned < earliest ? planned : earliest;
}

}  // namespace pqw
