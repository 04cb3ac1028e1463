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

void TickScope::after_full() noexcept
{
    targets_.clear();
    all_ = false;
    saved_ = false;
}

Millis TickScope::after_targeted(Millis next) noexcept
{
    targets_.clear();
    return next < full_due_ ? next : full_due_;
}

}  // namespace pqw
