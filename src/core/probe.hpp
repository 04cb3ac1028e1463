// probe.hpp: when the launcher looks again at a database without PgQue.
//
// A database where the ticker found no PgQue is probed again later (a short
// connection: fork, backend start, one catalog check, about 8 ms of CPU).
// Found absent again and again, it is probed less and less often: after
// `absent` probes in a row, one discovery interval times 2^(absent - 1), at
// most kAbsentProbeCapMs (or the interval, if that is longer). A request to
// look (wake_launcher(), a reload, CREATE SCHEMA pgque in that database)
// brings the next probe forward, but never to less than one interval after
// the last probe: whoever asks cannot make probes more frequent than one
// per discovery interval.
//
// PostgreSQL-free.
#pragma once

#include <cstdint>

namespace pqw {

constexpr std::int64_t kAbsentProbeCapMs = 300000;

// Delay before the next probe of a database found without PgQue in `absent`
// probes in a row (absent >= 1).
std::int64_t absent_probe_delay(std::int64_t interval_ms, int absent) noexcept;

// The next probe once a request to look arrives: `planned` (the backed-off
// time), or sooner, but not before `last_probe` + `interval_ms`, nor `now`.
std::int64_t requested_probe_at(std::int64_t planned, std::int64_t last_probe,
                                std::int64_t interval_ms, std::int64_t now) noexcept;

}  // namespace pqw
