// isolation_budget.hpp: how long one chunk may spend finding its failures.
//
// When a chunk's handler call fails, the dispatcher finds the failing
// messages by calling the handler again on parts of the chunk (halves; one
// message at a time once a call timed out). Each call may take
// pgque_worker.handler_timeout, so a message handler that times out on every
// message held its database's dispatcher, and every other handler in that
// database, for handler_timeout times the chunk's messages. The budget ends
// that: once narrowing has run for its budget and settled at least one
// message, the chunk stops, commits what it settled, and ends at the last
// settled message; the rest of the batch is read again from there by a
// later chunk, after the other handlers had their turn. A handler whose
// chunk was cut takes smaller chunks (what the cut chunk settled) until a
// chunk runs without a timeout; then they double back to the configured
// size.
//
// PostgreSQL-free.
#pragma once

#include "core/clock.hpp"

namespace pqw {

struct IsolationBudget {
    int limit = 0;  // messages per chunk after a cut; 0 = as configured
};

// Whether narrowing, started at `start`, may make another handler call at
// `now`, having settled the first `settled` messages of the chunk: always
// until one is settled (every chunk moves the batch on), then only within
// budget_ms.
bool isolation_may_call(Millis start, Millis now, long budget_ms, int settled) noexcept;

// A chunk was cut short after settling `settled` messages.
void isolation_cut(IsolationBudget &b, int settled) noexcept;

// A chunk committed without being cut; `timed_out`: a handler call in it
// timed out.
void isolation_chunk_done(IsolationBudget &b, bool timed_out, int chunk_messages) noexcept;

// How many messages the next chunk fetches, of `fetch`.
int isolation_fetch(const IsolationBudget &b, int fetch) noexcept;

}  // namespace pqw
