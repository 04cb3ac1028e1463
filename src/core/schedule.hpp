// schedule.hpp: when each periodic job of a database worker is due.
//
// PostgreSQL-free (no postgres.h): unit-tested with GoogleTest and a fake
// clock. Times are milliseconds on a monotonic clock chosen by the caller.
#pragma once

#include <cstdint>

#include "clock.hpp"

namespace pqw {

// A fixed-rate job: periods are counted from the schedule, not from the end
// of the last run, so the real rate matches the configured one; slots missed
// while a call ran long are dropped, never replayed as a burst.
class PeriodicJob {
public:
    PeriodicJob() noexcept = default;

    // Due at once on the first poll after start(now).
    void start(Millis now) noexcept { next_due_ = now; failures_ = 0; started_ = true; }
    bool started() const noexcept { return started_; }
    bool due(Millis now) const noexcept { return started_ && now >= next_due_; }
    Millis next_due() const noexcept { return next_due_; }

    // A run that was due at next_due() finished at `now`: move to the first
    // grid slot after now.
    void completed(Millis now, Millis period) noexcept;

    // A run failed: retry after `delay` (from a Backoff), off the grid.
    void failed(Millis now, Millis delay) noexcept;

    // Run again immediately (used while draining, and by wake-ups).
    void run_now(Millis now) noexcept { run_at(now); }
    // Run no later than `t` (only ever moves the due time earlier).
    void run_at(Millis t) noexcept { if (next_due_ > t) next_due_ = t; }
    // Replace the due time (a policy computed it); the grid restarts there.
    void set_next_due(Millis t) noexcept { next_due_ = t; }

    // The period changed: keep the phase but never wait longer than the new
    // period from now.
    void reschedule(Millis now, Millis period) noexcept;

    int failures() const noexcept { return failures_; }

private:
    Millis next_due_ = 0;
    int failures_ = 0;
    bool started_ = false;
};

// Milliseconds from `now` until the earliest of the given due times,
// clamped to [0, cap].
Millis wait_until_earliest(Millis now, const Millis *due, int n, Millis cap) noexcept;

}  // namespace pqw
