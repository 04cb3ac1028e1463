// commit_retry.hpp: what to do with a chunk whose transaction fails at commit.
//
// A chunk's handler calls succeeded, its nacks, progress and stats were
// written, and then COMMIT raised (a holdable cursor's materialization, a
// full NOTIFY queue, a disk error). Nothing was acked; the dispatcher
// retries with backoff. This bounds those retries: after kTries failures of
// the same chunk it is narrowed by halves (smaller transactions), and a
// single event whose chunk still fails at commit is nacked without calling
// the handler, as a handler failure would be. Chunks are keyed by their
// first event id, not the batch id: a failed first chunk rolls back
// next_batch(), so the same events come back in a batch of another id.
// Not by their size either: a chunk whose narrowing-down of handler
// failures ran out of time (isolation_budget.hpp) ends after a number of
// messages that can differ between tries; the smallest counts.
//
// PostgreSQL-free.
#pragma once

#include <cstdint>

namespace pqw {

struct CommitRetry {
    static constexpr int kTries = 3;  // commit failures of one chunk before narrowing

    std::int64_t first_id = 0;    // first event of the chunk that failed
    int size = 0;                 // its messages (the fewest of its tries)
    int fails = 0;                // its commit failures in a row
    int limit = 0;                // messages per chunk while narrowing; 0 = as configured
    std::int64_t scope_last = 0;  // narrowing lasts until a chunk commits past this event
    std::int64_t nack_id = -1;    // nack this event without calling the handler
};

// The chunk [first_id, last_id] of n messages failed at commit. True if
// this narrowed the chunks: a new, smaller chunk gets its own tries, so the
// caller starts its backoff over (kTries failures per level, not a backoff
// that doubles across all levels).
bool commit_failed(CommitRetry &r, std::int64_t first_id, std::int64_t last_id, int n) noexcept;

// A chunk ending at last_id committed (finished: it acked the batch).
void commit_succeeded(CommitRetry &r, std::int64_t last_id, bool finished) noexcept;

// How many messages the next chunk fetches.
int commit_retry_fetch(const CommitRetry &r, int chunk_messages) noexcept;

// Whether event `id` is nacked without calling the handler.
inline bool commit_retry_nacks(const CommitRetry &r, std::int64_t id) noexcept
{
    return r.nack_id >= 0 && r.nack_id == id;
}

}  // namespace pqw
