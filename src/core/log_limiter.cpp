// log_limiter.cpp: rate limiting of repeated error log lines.
#include "log_limiter.hpp"

namespace pqw {

LogDecision LogLimiter::on_error(std::uint64_t key, std::int64_t now) noexcept
{
    ++run_failures_;
    if (!have_key_ || key != last_key_) {
        have_key_ = true;
        last_key_ = key;
        last_logged_at_ = now;
        reported_suppressed_ = pending_suppressed_;
        pending_suppressed_ = 0;
        return LogDecision::kLog;
    }
    if (now - last_logged_at_ < quiet_ms_) {
        ++pending_suppressed_;
        return LogDecision::kSuppress;
    }
    last_logged_at_ = now;
    reported_suppressed_ = pending_suppressed_;
    pending_suppressed_ = 0;
    return LogDecision::kLogRepeated;
}

bool LogLimiter::on_success() noexcept
{
    if (run_failures_ == 0)
        return false;
    run_reported_ = run_failures_;
    run_failures_ = 0;
    have_key_ = false;
    pending_suppressed_ = 0;
    return true;
}

std::uint64_t fingerprint(const char *s, std::uint64_t seed) noexcept
{
    std::uint64_t h = seed;
    if (s == nullptr)
        return h;
    for (; *s; ++s) {
        h ^= static_cast<unsigned char>(*s);
        h *= 1099511628211ull;
    }
    return h;
}

}  // namespace pqw
