// rel_memo.hpp: what the commit hook decided about each relation it saw.
//
// The hook classifies every relation a statement writes (wakeup.cpp): two
// syscache look-ups, about 470 instructions, each time. A pgbench TPC-B
// transaction writes four tables, and remembering only the last answer
// looked all four up again in every transaction: most of the hook's cost
// (bench/hook_cost.sh). This memo keeps kSlots answers, direct-mapped by
// relation OID: a collision only means a look-up again. Relcache
// invalidation drops one entry, or all of them.
//
// PostgreSQL-free: an OID is a uint32, 0 (InvalidOid) is never stored.
#pragma once

#include <cstdint>

namespace pqw {

template <typename Value, int kSlots = 64>
class RelMemo {
  public:
    // The answer kept for relid, if any.
    bool get(std::uint32_t relid, Value *out) const noexcept
    {
        const Slot &s = slots_[relid % kSlots];
        if (relid == 0 || s.relid != relid)
            return false;
        *out = s.value;
        return true;
    }
    void put(std::uint32_t relid, const Value &value) noexcept
    {
        if (relid == 0)
            return;
        Slot &s = slots_[relid % kSlots];
        s.relid = relid;
        s.value = value;
    }
    // The relation was renamed, moved or dropped: its answer goes.
    void forget(std::uint32_t relid) noexcept
    {
        Slot &s = slots_[relid % kSlots];
        if (s.relid == relid)
            s.relid = 0;
    }
    void clear() noexcept
    {
        for (Slot &s : slots_)
            s.relid = 0;
    }

  private:
    struct Slot {
        std::uint32_t relid = 0;
        Value value{};
    };
    Slot slots_[kSlots];
};

}  // namespace pqw
