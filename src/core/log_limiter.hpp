// log_limiter.hpp: keeps a failing call from flooding the server log.
//
// PostgreSQL-free. The first failure of a kind is logged in full; the same
// failure again within the quiet interval is counted, not logged; after the
// interval one line says how many were suppressed; a success after failures
// is reported once as a recovery.
#pragma once

#include <cstdint>

namespace pqw {

enum class LogDecision {
    kLog,          // log this error in full
    kSuppress,     // count it silently
    kLogRepeated,  // log it with the number suppressed since the last line
};

class LogLimiter {
public:
    explicit LogLimiter(std::int64_t quiet_ms = 60000) noexcept : quiet_ms_(quiet_ms) {}

    // An error with fingerprint `key` happened at `now`.
    LogDecision on_error(std::uint64_t key, std::int64_t now) noexcept;
    // Errors suppressed since the last line logged (valid after on_error).
    std::int64_t suppressed() const noexcept { return reported_suppressed_; }

    // A success at `now`: returns true once after a run of failures, with
    // failures_in_run() telling how many there were.
    bool on_success() noexcept;
    std::int64_t failures_in_run() const noexcept { return run_reported_; }

    void set_quiet_ms(std::int64_t ms) noexcept { quiet_ms_ = ms; }

private:
    std::int64_t quiet_ms_;
    std::uint64_t last_key_ = 0;
    bool have_key_ = false;
    std::int64_t last_logged_at_ = 0;
    std::int64_t pending_suppressed_ = 0;
    std::int64_t reported_suppressed_ = 0;
    std::int64_t run_failures_ = 0;
    std::int64_t run_reported_ = 0;
};

// FNV-1a over a NUL-terminated string, for fingerprints.
std::uint64_t fingerprint(const char *s, std::uint64_t seed = 1469598103934665603ull) noexcept;

}  // namespace pqw
