// hung_call.cpp: see hung_call.hpp.
#include "core/hung_call.hpp"

namespace pqw {

HungPlan hung_plan_for(const HungRange &r, std::int64_t id) noexcept
{
    if (r.empty() || !r.contains(id))
        return HungPlan::kNormal;
    return r.single() ? HungPlan::kNackAlone : HungPlan::kIsolate;
}

HungChunk hung_chunk_plan(int first, int last, int n) noexcept
{
    if (first < 0 || first >= n)
        return {n, false};
    if (first > 0)
        return {first, false};
    int keep = last < n ? last + 1 : n;
    return {keep, keep > 1};
}

bool hung_range_done(const HungRange &r, bool touched, std::int64_t chunk_first_id,
                     std::int64_t chunk_last_id, bool batch_finished) noexcept
{
    if (r.empty())
        return false;
    if (touched)
        return batch_finished || chunk_last_id >= r.last_id;
    return batch_finished && chunk_first_id > r.last_id;
}

}  // namespace pqw
