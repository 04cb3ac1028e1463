// tick_scope.cpp: see tick_scope.hpp.
#include "core/tick_scope.hpp"

namespace pqw {

void TickScope::on_wake(const QueueSet *queues, Millis full_due, Millis full_not_before) noexcept
{
    if (!saved_) {
        full_due_ = full_due;
        saved_ = true;
    }
    if (queues == nullptr && slices_ > 0)
        all_since_ = true;  // its queue may be in a slice done already: a
                            // full call again once this one is complete
    else if (queues == nullptr) {
        if (!all_)
            all_not_before_ = full_not_before;
        all_ = true;
    }
    else {
        targets_.merge(*queues);
        if (slices_ > 0)
            fresh_ = true;  // ticked before the next slice
    }
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
    if (slices_ > 0) {
        // between slices: the targets stay, and join what the slices found
        if (!acc_started_ || next < acc_pending_due_)
            acc_pending_due_ = next;
        acc_started_ = true;
        return next;
    }
    Millis due = next;
    if (next >= full_due_) {
        targets_.clear();  // the full call comes next
        due = full_due_;
    }
    if (all_ && all_not_before_ < due)
        due = all_not_before_;
    return due;
}

int TickScope::slices_for(std::int64_t queues) noexcept
{
    if (queues <= kQueuesPerSlice)
        return 1;
    std::int64_t n = (queues + kQueuesPerSlice - 1) / kQueuesPerSlice;
    return n > kMaxSlices ? kMaxSlices : static_cast<int>(n);
}

bool TickScope::begin_full(int n) noexcept
{
    if (slices_ > 0)
        return true;
    if (n <= 1)
        return false;
    slices_ = n > kMaxSlices ? kMaxSlices : n;
    slice_ = 0;
    all_ = false;  // this call covers every queue
    all_since_ = false;
    fresh_ = false;
    acc_started_ = false;
    acc_pending_.clear();
    acc_pending_due_ = acc_idle_due_ = 0;
    acc_queues_ = 0;
    return true;
}

QueueSet TickScope::slice_set() const noexcept
{
    QueueSet s;
    for (int r = slice_; slices_ > 0 && r < QueueSet::kBits; r += slices_)
        s.add(r);
    return s;
}

bool TickScope::after_slice(const QueueSet *pending, Millis pending_due, Millis idle_due,
                            std::int64_t queues) noexcept
{
    if (slices_ == 0)
        return false;
    if (pending != nullptr)
        acc_pending_.merge(*pending);
    if (!acc_started_ || pending_due < acc_pending_due_)
        acc_pending_due_ = pending_due;
    if (slice_ == 0 || idle_due < acc_idle_due_)
        acc_idle_due_ = idle_due;
    acc_started_ = true;
    acc_queues_ += queues;
    if (++slice_ < slices_)
        return false;
    bool all = all_since_;
    slices_ = 0;
    all_since_ = false;
    fresh_ = false;
    // queues commits named meanwhile stay targets until their policy says
    // otherwise (a slice that ran before their events did not see them)
    acc_pending_.merge(targets_);
    after_full(&acc_pending_, acc_idle_due_);
    if (all) {
        all_ = true;  // a full call again (the caller may defer it)
        all_not_before_ = 0;
    }
    return true;
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
