// hung_call.hpp: what to do with a chunk that a handler hung in before.
//
// A handler that ignores the cancel of its timeout is stopped at the hard
// limit by ending the dispatcher process (src/dispatcher.cpp). The next
// dispatcher knows the events the stopped call had: one event for a message
// handler, a range for a batch handler. This decides, per event of the
// chunk read again, whether it is nacked at once (the handler hung on it
// alone: calling again would hang again), handled one at a time or by
// halves (the range is narrowed down), or handled as usual.
//
// PostgreSQL-free.
#pragma once

#include <cstdint>

namespace pqw {

// The events [first_id, last_id] a stopped handler call had.
struct HungRange {
    std::int64_t first_id = 0;
    std::int64_t last_id = -1;  // empty by default

    bool empty() const noexcept { return last_id < first_id; }
    bool contains(std::int64_t id) const noexcept { return id >= first_id && id <= last_id; }
    bool single() const noexcept { return first_id == last_id; }
};

enum class HungPlan {
    kNormal,     // the chunk holds none of the range: one try, as always
    kNackAlone,  // ids[i] is the one event the handler hung on: nack it
    kIsolate,    // the chunk holds part of a range: skip the whole-chunk try
};

// The plan for the event `id` of a chunk, given the range.
HungPlan hung_plan_for(const HungRange &r, std::int64_t id) noexcept;

// What a chunk does with the range's events it holds, the indices
// [first, last] of its n events (first < 0: none). Events before them make
// a chunk of their own, handled as usual; a chunk that starts with them
// ends with them. So what is settled about them commits before any later
// event is called, and each call that hangs again was on a strict part of
// the range before it (a half): the dispatcher cannot be stopped in the same
// call twice in a row, nor go back and forth between two events that hang.
// `narrow`: skip the whole-chunk try (it would hang again) and narrow down
// at once; not for one event, whose one call is the narrowing's last step
// (narrowing one event down would nack it without a call).
struct HungChunk {
    int keep;     // events the chunk keeps, from its first
    bool narrow;  // narrow the kept events down at once
};

HungChunk hung_chunk_plan(int first, int last, int n) noexcept;

// Whether a chunk leaves the range behind, so it can be forgotten: it held
// some of the range's events (`touched`) and either ends at or past the
// range (`chunk_last_id`) or finished its batch; or it finished a batch
// and held none of them, all its events after the range
// (`chunk_first_id`, 0 for none): the range's batch is behind it. A chunk
// of the batches before the one the call hung in (which its stopped
// transaction may have taken along) does not end it.
bool hung_range_done(const HungRange &r, bool touched, std::int64_t chunk_first_id,
                     std::int64_t chunk_last_id, bool batch_finished) noexcept;

}  // namespace pqw
