// tick_scope.cpp: see tick_scope.hpp.
#include "core/tick_scope.hpp"

namespace pqw {

void TickScope::on_wake(const QueueSet *queues, Millis full_due) noexcept
{
    if (!saved_) {
        full_due_ = full_due;
        saved_ = true;
    }
    if (queues == nullptr)
        all_ = true;
    else
        targets_.merge(*queues);
}

void TickScope::after_full(const QueueSet *pending, Millis full_due) noexcept
{
    targets_.clear();
    all_ = false;
    saved_ = false;
    if (pending != nullptr && !pending->empty()) {
        targets_ = *pending;
        saved_ = true;
        full_due_ = full_due;
    }
}

Millis TickScope::after_targeted(Millis next) noexcept
{
    if (next < full_due_)
        return next;  // the same queues again, before the full call
    targets_.clear();
    return full_due_;
}

Millis TickScope::idle_spacing(std::int64_t last_call_us, Millis floor) noexcept
{
    const Millis cap = 10000;
    const std::int64_t cheap_us = 5000;
    Millis s = last_call_us >= cheap_us ? static_cast<Millis>(last_call_us / 1000 * 20) : 0;
    if (s > cap)
        s = cap;
    return s > floor ? s : floor;
}

}  // namespace pqw
