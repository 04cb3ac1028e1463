// commit_retry.cpp: see commit_retry.hpp.
#include "core/commit_retry.hpp"

namespace pqw {

bool commit_failed(CommitRetry &r, std::int64_t first_id, std::int64_t last_id, int n) noexcept
{
    if (n <= 0)
        return false;
    if (r.fails == 0 || r.first_id != first_id) {
        r.first_id = first_id;
        r.size = n;
        r.fails = 0;
    } else if (n < r.size) {
        r.size = n;  // the same chunk, cut shorter this time (isolation budget)
    }
    if (++r.fails < CommitRetry::kTries)
        return false;  // the same chunk again, after the backoff
    r.fails = 0;
    if (last_id > r.scope_last)
        r.scope_last = last_id;
    if (n == 1) {
        r.nack_id = first_id;  // this event, alone, failed kTries times
        return false;
    }
    r.limit = r.size - r.size / 2;  // the first half (rounded up) of its fewest; 1: the event alone
    return true;
}

void commit_succeeded(CommitRetry &r, std::int64_t last_id, bool finished) noexcept
{
    r.fails = 0;
    if (r.nack_id >= 0 && (finished || last_id >= r.nack_id))
        r.nack_id = -1;
    if (r.limit > 0 && (finished || last_id >= r.scope_last)) {
        r.limit = 0;
        r.scope_last = 0;
    }
}

int commit_retry_fetch(const CommitRetry &r, int chunk_messages) noexcept
{
    return r.limit > 0 && r.limit < chunk_messages ? r.limit : chunk_messages;
}

}  // namespace pqw
