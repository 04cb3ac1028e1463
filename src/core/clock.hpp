// clock.hpp: the monotonic clock the schedules run on.
//
// PostgreSQL-free. Wall-clock jumps (NTP, DST) never shift a schedule.
#pragma once

#include <chrono>
#include <cstdint>

namespace pqw {

using Millis = std::int64_t;

inline std::int64_t monotonic_ms() noexcept
{
    using namespace std::chrono;
    return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace pqw
