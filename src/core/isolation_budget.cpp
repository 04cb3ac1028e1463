// isolation_budget.cpp: see isolation_budget.hpp.
#include "core/isolation_budget.hpp"

namespace pqw {

bool isolation_may_call(Millis start, Millis now, long budget_ms, int settled) noexcept
{
    return settled <= 0 || now - start < budget_ms;
}

void isolation_cut(IsolationBudget &b, int settled) noexcept
{
    b.limit = settled > 1 ? settled : 1;
}

void isolation_chunk_done(IsolationBudget &b, bool timed_out, int chunk_messages) noexcept
{
    if (b.limit == 0 || timed_out)
        return;  // smaller chunks while calls still time out
    b.limit = b.limit >= chunk_messages / 2 ? 0 : b.limit * 2;
}

int isolation_fetch(const IsolationBudget &b, int fetch) noexcept
{
    return b.limit > 0 && b.limit < fetch ? b.limit : fetch;
}

}  // namespace pqw
