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
// With many queues a full call is cut into slices, each a targeted call
// over part of the queues (with its policy read), one per pass of the
// ticker's loop: a commit that arrives meanwhile is ticked between two
// slices instead of waiting behind every queue of the database.
//
// PostgreSQL-free.
#pragma once

#include "core/clock.hpp"
#include "core/queue_set.hpp"

namespace pqw {

class TickScope {
public:
    // A commit woke the ticker: `queues` (nullptr: it could not say which)
    // while the next full call was due at `full_due`. The full call a
    // wake-up naming no queue asks for runs no sooner than
    // `full_not_before` (a policy change: any pgque_reader member can make
    // one, subscribing in a loop; see defer_full); commits that name
    // queues are ticked by targeted calls meanwhile.
    void on_wake(const QueueSet *queues, Millis full_due, Millis full_not_before = 0) noexcept;

    // Is the call about to run at `now` a targeted one?
    // (Between the slices of a full call: once after a commit named queues.)
    bool targeted(Millis now) const noexcept
    {
        if (slices_ > 0)
            return fresh_ && !targets_.empty();
        return (!all_ || now < all_not_before_) && saved_ && !targets_.empty() &&
               now < full_due_;
    }
    // A full call is owed to a wake-up that named no queue.
    bool full_owed() const noexcept { return all_; }
    // The full call owed runs no sooner than `not_before`.
    void defer_full(Millis not_before) noexcept
    {
        if (all_)
            all_not_before_ = not_before;
    }
    Millis full_not_before() const noexcept { return all_not_before_; }
    // A targeted call is about to run: the commits so far are its.
    void took_targets() noexcept { fresh_ = false; }
    const QueueSet &targets() const noexcept { return targets_; }

    // A full call ran: everything is ticked. Its policy read found
    // `pending` queues with events short of a tick (nullptr or empty: none):
    // the calls for those are targeted at them until the full call's idle
    // ticks fall due at `full_due`.
    void after_full(const QueueSet *pending, Millis full_due) noexcept;

    // A targeted call ran and its policy read wants the next call at
    // `next`: the next call is due at the earlier of that, the full
    // call's own due time and the full call a wake-up asked for. If it is the targeted queues' turn first (events
    // still short of ticker_max_count, an idle tick soon), they stay the
    // targets of that call; otherwise the full call comes next. Between
    // the slices of a full call the next slice is due at once (the caller
    // sees slicing()); the targets and `next` join what the slices find.
    Millis after_targeted(Millis next) noexcept;

    // How long a full call waits for idle ticks alone after the last one,
    // which took `last_call_us`: a call under 5 ms is cheap, the policy's
    // own times stand (`floor`); a slower one waits 20 times what it took
    // (its share of a core stays near 5 %), at most 10 s. Idle ticks are
    // never urgent; with a thousand queues their phases would otherwise make
    // every grid slot a full call.
    static Millis idle_spacing(std::int64_t last_call_us, Millis floor) noexcept;

    // Slices of a full call over `queues` queues: one per kQueuesPerSlice
    // (rounded up), at most kMaxSlices.
    static constexpr int kQueuesPerSlice = 8;
    static constexpr int kMaxSlices = 256;
    static int slices_for(std::int64_t queues) noexcept;

    // A full call is due: cut it in `n` slices, unless a sliced one is
    // under way already (it goes on). Returns whether the call about to
    // run is a slice (false: n <= 1, one call over every queue).
    bool begin_full(int n) noexcept;
    bool slicing() const noexcept { return slices_ > 0; }
    int slice() const noexcept { return slice_; }  // the next one, from 0
    int slices() const noexcept { return slices_; }
    // The queues of the next slice: residues r with r % slices == slice.
    QueueSet slice_set() const noexcept;

    // The next slice ran, and its policy read found `pending` queues
    // (nullptr: none) with events, the first of them due at `pending_due`,
    // and idle ticks due at `idle_due`, over `queues` queues. Returns true
    // if it was the last: the full call is complete and after_full() is
    // applied to what all the slices found (full_*() say it); the next full
    // call starts from the first slice.
    bool after_slice(const QueueSet *pending, Millis pending_due, Millis idle_due,
                     std::int64_t queues) noexcept;
    // A slice failed: the next full call starts over.
    void abort_slices() noexcept
    {
        slices_ = 0;
        fresh_ = false;
    }
    // After a complete sliced call: a wake-up that named no queue came
    // during it, so another full call is due at once.
    bool full_next() const noexcept { return all_; }
    // What the slices of the last complete sliced call found.
    Millis full_pending_due() const noexcept { return acc_pending_due_; }
    Millis full_idle_due() const noexcept { return acc_idle_due_; }
    std::int64_t full_queues() const noexcept { return acc_queues_; }

private:
    int slices_ = 0;          // a sliced full call under way: in so many
    int slice_ = 0;
    bool all_since_ = false;  // a wake-up named no queue while slicing
    bool fresh_ = false;      // a commit named queues since the last targeted call
    bool acc_started_ = false;
    QueueSet acc_pending_;
    Millis acc_pending_due_ = 0;
    Millis acc_idle_due_ = 0;
    std::int64_t acc_queues_ = 0;

    QueueSet targets_;
    bool all_ = false;
    Millis all_not_before_ = 0;  // the full call all_ asks for, not sooner
    bool saved_ = false;   // full_due_ holds the full call's due time
    Millis full_due_ = 0;
};

}  // namespace pqw
