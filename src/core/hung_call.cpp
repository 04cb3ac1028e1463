// hung_call.cpp: see hung_call.hpp.
#include "core/hung_call.hpp"

namespace pqw {

HungPlan hung_plan_for(const HungRange &r, std::int64_t id) noexcept
{
    if (r.empty() || !r.contains(id))
        return HungPlan::kNormal;
    return r.single() ? HungPlan::kNackAlone : HungPlan::kIsolate;
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
