// backoff.hpp: capped exponential backoff with jitter for failing calls.
//
// PostgreSQL-free. The random source is passed in so tests are exact.
#pragma once

#include <cstdint>

namespace pqw {

struct BackoffPolicy {
    std::int64_t base_ms = 1000;  // delay after the first failure
    std::int64_t cap_ms = 60000;  // never wait longer than this
    int jitter_pct = 20;          // +- this percentage of the delay
};

// Delay before attempt number `failures` + 1 (failures >= 1).
// `rnd` is any 32-bit random value; 0x80000000 means "no jitter".
std::int64_t backoff_delay(const BackoffPolicy &p, int failures, std::uint32_t rnd) noexcept;

}  // namespace pqw
