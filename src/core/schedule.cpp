// schedule.cpp: fixed-rate job timing without catch-up bursts.
#include "schedule.hpp"

namespace pqw {

void PeriodicJob::completed(Millis now, Millis period) noexcept
{
    failures_ = 0;
    if (period <= 0)
        period = 1;
    Millis next = next_due_ + period;
    if (next <= now) {
        // Late: skip the missed slots, stay on the grid.
        Millis missed = (now - next_due_) / period;
        next = next_due_ + (missed + 1) * period;
    }
    next_due_ = next;
}

void PeriodicJob::failed(Millis now, Millis delay) noexcept
{
    ++failures_;
    next_due_ = now + (delay > 0 ? delay : 0);
}

void PeriodicJob::reschedule(Millis now, Millis period) noexcept
{
    if (period <= 0)
        period = 1;
    if (next_due_ > now + period)
        next_due_ = now + period;
}

Millis wait_until_earliest(Millis now, const Millis *due, int n, Millis cap) noexcept
{
    Millis best = cap;
    for (int i = 0; i < n; ++i) {
        Millis d = due[i] - now;
        if (d < best)
            best = d;
    }
    return best < 0 ? 0 : best;
}

}  // namespace pqw
