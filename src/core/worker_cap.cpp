// worker_cap.cpp: which databases get workers within pgque_worker.max_workers.
#include "worker_cap.hpp"

#include <algorithm>

namespace pqw {

bool served_before(bool a_owner_is_superuser, std::uint64_t a_seniority,
                   bool b_owner_is_superuser, std::uint64_t b_seniority) noexcept
{
    if (a_owner_is_superuser != b_owner_is_superuser)
        return a_owner_is_superuser;
    return a_seniority < b_seniority;
}

void allot_workers(const DbDemand *dbs, int n, int cap, int *order, int *allowed) noexcept
{
    int left = cap;

    for (int i = 0; i < n; i++)
        order[i] = i;
    std::sort(order, order + n, [dbs](int a, int b) {
        return served_before(dbs[a].owner_is_superuser, dbs[a].seniority,
                             dbs[b].owner_is_superuser, dbs[b].seniority);
    });
    for (int k = 0; k < n; k++)
    {
        const int i = order[k];
        const int want = dbs[i].wanted > 0 ? dbs[i].wanted : 0;

        if (cap < 0)
        {
            allowed[i] = want;
            continue;
        }
        allowed[i] = std::min(want, left);
        left -= allowed[i];
    }
}

}  // namespace pqw
