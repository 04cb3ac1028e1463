// tick_scope.hpp: tick every queue, or only the queues a commit woke us for.
//
// pgque.ticker() visits every queue of the database (PgQue's own loop, and
// our policy read after it): with a thousand idle queues that is tens of
// milliseconds per call, paid on every enqueuing commit. A commit that names
// its queues (see queue_set.hpp) is served by ticking those alone
// (pgque.ticker(queue) applies the same per-queue policy) and reading their
// policy alone; the full call keeps its own schedule (the idle ticks of all
// queues, from the last full policy read), which targeted calls never move
// later. A wake-up that names no queue, or a full call falling due, makes
// the next call a full one.
//
// PostgreSQL-free.
#pragma once

#include "core/clock.hpp"
#include "core/queue_set.hpp"

namespace pqw {

class TickScope {
public:
    // A commit woke the ticker: `queues` (nullptr: it could not say which)
    // while the next full call was due at `full_due`.
    void on_wake(const QueueSet *queues, Millis full_due) noexcept;

    // Is the call about to run at `now` a targeted one?
    bool targeted(Millis now) const noexcept
    {
        return !all_ && saved_ && !targets_.empty() && now < full_due_;
    }
    const QueueSet &targets() const noexcept { return targets_; }

    // A full call ran: everything is ticked. Its policy read found
    // `pending` queues with events short of a tick (nullptr or empty: none):
    // the calls for those are targeted at them until the full call's idle
    // ticks fall due at `full_due`.
    void after_full(const QueueSet *pending, Millis full_due) noexcept;

    // A targeted call ran and its policy read wants the next call at
    // `next`: the next call is due at the earlier of that and the full
    // call's own due time. If it is the targeted queues' turn first (events
    // still short of ticker_max_count, an idle tick soon), they stay the
    // targets of that call; otherwise the full call comes next.
    Millis after_targeted(Millis next) noexcept;

    // How long a full call waits for idle ticks alone after the last one,
    // which took `last_call_us`: a call under 5 ms is cheap, the policy's
    // own times stand (`floor`); a slower one waits 20 times what it took
    // (its share of a core stays near 5 %), at most 10 s. Idle ticks are
    // never urgent; with a thousand queues their phases would otherwise make
    // every grid slot a full call.
    static Millis idle_spacing(std::int64_t last_call_us, Millis floor) noexcept;

private:
    QueueSet targets_;
    bool all_ = false;
    bool saved_ = false;   // full_due_ holds the full call's due time
    Millis full_due_ = 0;
};

}  // namespace pqw
