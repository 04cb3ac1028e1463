// worker_cap.hpp: which databases get workers when there are fewer than
// they want (pgque_worker.max_workers).
//
// Databases are served in order of priority: those a superuser owns first,
// then older ones (lower OID) first. A database gets all the workers it
// wants (its ticker, then its dispatcher) before the next one gets any,
// within the cap. So a role that may create databases (CREATEDB) and puts
// a schema pgque in each can take the workers left over, never those of a
// database that was there before, nor of one a superuser owns. Probes of
// databases without PgQue are not planned here: one starts only while
// fewer workers than the cap run.
//
// PostgreSQL-free, no allocation.
#pragma once

#include <cstdint>

namespace pqw {

struct DbDemand
{
    bool owner_is_superuser;
    std::uint32_t oid;
    int wanted;   // workers it wants now: running, or to start (0..2)
};

// Is database a served before database b? (a superuser's first, then the
// older)
bool served_before(bool a_owner_is_superuser, std::uint32_t a_oid,
                   bool b_owner_is_superuser, std::uint32_t b_oid) noexcept;

// Into allowed[i]: how many of its wanted workers database i may have
// (0..wanted), within `cap` in all (cap < 0: no cap). order[n] is scratch.
void allot_workers(const DbDemand *dbs, int n, int cap, int *order, int *allowed) noexcept;

}  // namespace pqw
