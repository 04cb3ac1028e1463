// worker_cap.hpp: which databases get workers when there are fewer than
// they want (pgque_worker.max_workers).
//
// Databases are served in order of priority: those a superuser owns first,
// then those the launcher has known longer (its seniority: the order in
// which it gave them a slot; at server start, the order of their OIDs). A
// database gets all the workers it wants (its ticker, then its
// dispatcher) before the next one gets any, within the cap. So a role that
// may create databases (CREATEDB) and puts a schema pgque in each can take
// the workers left over, never those of a database known before, nor of
// one a superuser owns. (Not the OID alone: CREATE DATABASE ... OID lets
// that role choose a low one.) Probes of databases not known to have
// PgQue are not planned here.
//
// PostgreSQL-free, no allocation.
#pragma once

#include <cstdint>

namespace pqw {

struct DbDemand
{
    bool owner_is_superuser;
    std::uint64_t seniority;  // lower: known longer
    int wanted;   // workers it wants now: running, or to start (0..2)
};

// Is database a served before database b? (a superuser's first, then the
// one known longer)
bool served_before(bool a_owner_is_superuser, std::uint64_t a_seniority,
                   bool b_owner_is_superuser, std::uint64_t b_seniority) noexcept;

// Into allowed[i]: how many of its wanted workers database i may have
// (0..wanted), within `cap` in all (cap < 0: no cap). order[n] is scratch.
void allot_workers(const DbDemand *dbs, int n, int cap, int *order, int *allowed) noexcept;

}  // namespace pqw
