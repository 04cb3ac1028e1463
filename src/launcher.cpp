/*
 * launcher.cpp: the launcher, a static background worker connected to no
 * database (it reads only the shared catalog pg_database).
 *
 * A launcher that starts again (terminated, or an ERROR: the postmaster
 * restarts it) has no handle for the workers its predecessor left running,
 * so it cannot watch or stop them: it terminates them and waits until their
 * slots are free before starting any worker. Slots keep their counters; a
 * generation stamped per registration lets only the worker registered last
 * attach to a slot.
 *
 * Every pgque_worker.discovery_interval, and when asked (wake_launcher(),
 * a reload), it lists the databases that allow connections, are not
 * templates and are selected by pgque_worker.databases; on every pass
 * (also when its latch is set because a worker started or stopped) it
 * keeps one ticker worker per such database, and a dispatcher worker where
 * the ticker reports enabled handlers:
 *
 *   (none) --start--> running --exit, "no pgque"--> probe again after
 *                                                   discovery_interval,
 *                                                   doubling while absent
 *                                                   (core/probe.hpp)
 *                             --clean exit--------> start again at once
 *                             --crash / no slot---> start again with backoff
 *   database dropped, renamed away or deselected: worker terminated, slot freed
 *
 * A worker leaves a database without PgQue at once, so such databases are
 * only touched by a short probe connection: one discovery interval after
 * the first, then less and less often while PgQue stays absent (at most
 * every 5 minutes), sooner when asked (wake_launcher(), a reload, CREATE
 * SCHEMA pgque there), but never more than once per discovery interval.
 *
 * The shared slots are shmem.cpp's: the launcher allocates, frees, renames
 * and reads them through its verbs (pqw_slot_alloc, pqw_slot_free,
 * pqw_slot_rename, pqw_slot_info) and keeps what only it needs (the
 * worker's handle, when to start it next) in lslot[], one per slot.
 */
#include "launcher.h"

extern "C" {
#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
}

#include "guc.h"
#include "shmem.h"
#include "spi_txn.h"

#include "core/backoff.hpp"
#include "core/clock.hpp"
#include "core/probe.hpp"
#include "core/worker_cap.hpp"

/* Launcher-local view of each shared slot. */
typedef struct LauncherSlot
{
	BackgroundWorkerHandle *handle;
	pqw::Millis next_start;
	pqw::Millis last_start;		/* when its worker was last registered */
	int			failures;
	int			absent;			/* probes in a row that found no PgQue */
	bool		seen;			/* still a candidate in this pass */
	/* dispatcher slot found at start: kept while its ticker comes back */
	bool		inherited;
	bool		owner_is_superuser; /* of its database, as last scanned */
	bool		capped;			/* this pass: over pgque_worker.max_workers */
	bool		probing;		/* ticker: has not found PgQue yet (slot_probing) */
} LauncherSlot;

typedef struct Candidate
{
	Oid			oid;
	char		name[NAMEDATALEN];
	bool		owner_is_superuser;
} Candidate;

static LauncherSlot *lslot = NULL;

/* pg_database as last read: kept between passes, read again every
 * discovery_interval or on request (wake_launcher, a reload). Other latch
 * wake-ups (a worker started or stopped, catch-up signals) only manage
 * workers. */
static MemoryContext cand_cxt = NULL;
static Candidate *cands = NULL;
static int	ncands = 0;
static Oid	cand_roleoid = InvalidOid;
static bool cand_role_ok = true;
static pqw::Millis next_scan = 0;
static bool warned_no_slot = false;
static char warned_role[NAMEDATALEN] = "";

void
pqw_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* Never on a standby: starts at promotion. */
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "pgque_worker", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "pqw_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "pgque_worker launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "pgque_worker launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

static int
candidate_cmp(const void *a, const void *b)
{
	const Candidate *x = (const Candidate *) a;
	const Candidate *y = (const Candidate *) b;

	if (pqw::served_before(x->owner_is_superuser, x->oid, y->owner_is_superuser, y->oid))
		return -1;
	return pqw::served_before(y->owner_is_superuser, y->oid, x->owner_is_superuser, x->oid) ? 1 : 0;
}

/*
 * Reads pg_database into `out` (allocated in the current memory context):
 * databases that allow connections, are not templates, and are selected.
 * Also resolves pgque_worker.role. Runs in a transaction of its own.
 */
static int
scan_databases(Candidate **out, Oid *roleoid, bool *role_ok)
{
	MemoryContext cxt = CurrentMemoryContext;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	int			n = 0;
	int			cap = 16;
	Candidate  *c = (Candidate *) palloc(sizeof(Candidate) * cap);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (!db->datallowconn || db->datistemplate)
			continue;
		if (!pqw_database_selected(NameStr(db->datname)))
			continue;
		if (n == cap)
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			cap *= 2;
			c = (Candidate *) repalloc(c, sizeof(Candidate) * cap);
			MemoryContextSwitchTo(old);
		}
		c[n].oid = db->oid;
		strlcpy(c[n].name, NameStr(db->datname), NAMEDATALEN);
		c[n].owner_is_superuser = superuser_arg(db->datdba);
		n++;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	/* in the order they are served: slots go to the first */
	if (n > 1)
		qsort(c, n, sizeof(Candidate), candidate_cmp);

	*roleoid = InvalidOid;
	*role_ok = true;
	if (pqw_role && pqw_role[0] != '\0')
	{
		*roleoid = get_role_oid(pqw_role, true);
		*role_ok = OidIsValid(*roleoid);
	}
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	*out = c;
	return n;
}

static int
find_slot(Oid dboid, PqwKind kind)
{
	int			i;

	LWLockAcquire(pqw_shared->lock, LW_SHARED);
	i = pqw_find_slot(dboid, kind);
	LWLockRelease(pqw_shared->lock);
	return i;
}

/* A shared slot for (database, kind) and a fresh local one: due to start
 * now. -1 if every slot is taken. */
static int
alloc_slot(Oid dboid, const char *dbname, PqwKind kind)
{
	int			found = pqw_slot_alloc(dboid, dbname, kind);

	if (found >= 0)
	{
		memset(&lslot[found], 0, sizeof(LauncherSlot));
		lslot[found].next_start = pqw::monotonic_ms();
		lslot[found].probing = kind == PQW_KIND_TICKER;
	}
	return found;
}

/* Frees slot i, shared and local (no worker of ours runs in it). */
static void
free_slot(int i)
{
	pqw_slot_free(i);
	if (lslot[i].handle)
		pfree(lslot[i].handle);
	memset(&lslot[i], 0, sizeof(LauncherSlot));
}

/* Does a worker run in slot i (ours, or a previous launcher's)? */
static bool
slot_occupied(int i)
{
	PqwSlotInfo s;

	return lslot[i].handle != NULL || !pqw_slot_info(i, &s) || s.pid != 0;
}

/*
 * Every shared slot taken, and a database needs one (owned by a superuser
 * or not, of that seniority: PG_UINT64_MAX for one new to the launcher,
 * served after every database it knows of the same kind): frees the slots
 * of the database served last, after it, with no worker running (a ticker between probes,
 * or over max_workers), and says whether it did. A slot no candidate
 * claimed this pass (a database dropped or deselected) goes first.
 * Otherwise a role with CREATEDB could take every slot with empty
 * databases of its own.
 */
static bool
free_slot_served_after(bool owner_is_superuser, uint64 seniority)
{
	int			victim = -1;
	int			vdisp = -1;
	PqwSlotInfo v;

	memset(&v, 0, sizeof(v));
	for (int i = 0; i < pqw_shared->nslots; i++)
	{
		PqwSlotInfo t;
		int			d;

		if (!pqw_slot_info(i, &t) || t.kind != PQW_KIND_TICKER || slot_occupied(i))
			continue;
		if (lslot[i].seen &&
			!pqw::served_before(owner_is_superuser, seniority, lslot[i].owner_is_superuser, t.seniority))
			continue;
		d = find_slot(t.dboid, PQW_KIND_DISPATCHER);
		if (d >= 0 && slot_occupied(d))
			continue;
		/* the unclaimed first, then the one served last */
		if (victim < 0 ||
			(lslot[victim].seen &&
			 (!lslot[i].seen ||
			  pqw::served_before(lslot[victim].owner_is_superuser, v.seniority,
								 lslot[i].owner_is_superuser, t.seniority))))
		{
			victim = i;
			vdisp = d;
			v = t;
		}
	}
	if (victim < 0)
		return false;
	if (vdisp >= 0)
		free_slot(vdisp);
	free_slot(victim);
	return true;
}

/* The worker of slot i is gone: decide when to start it again. */
static void
plan_restart(int i, pqw::Millis now)
{
	PqwState	state = pqw_slot_state(i);

	if (state == PQW_STATE_NO_HANDLERS)
	{
		/* started again when the ticker sees enabled handlers */
		lslot[i].failures = 0;
		lslot[i].next_start = -1;
	}
	else if (state == PQW_STATE_NO_PGQUE)
	{
		lslot[i].failures = 0;
		lslot[i].absent++;
		lslot[i].next_start = now + pqw::absent_probe_delay(pqw_discovery_interval_ms,
															 lslot[i].absent);
	}
	else if (state == PQW_STATE_STOPPED)
	{
		lslot[i].failures = 0;
		lslot[i].absent = 0;
		lslot[i].next_start = now;
	}
	else
	{
		pqw::BackoffPolicy p;

		/* Died without cleaning up: a crash or a FATAL error. */
		p.base_ms = 1000;
		p.cap_ms = 60000;
		lslot[i].failures++;
		lslot[i].next_start = now + pqw::backoff_delay(p, lslot[i].failures, (uint32) random());
		pqw_slot_set_state(i, PQW_STATE_STOPPED);
	}
}

/* True while the slot's worker is registered or running; when it has just
 * stopped, plans its restart. */
static bool
worker_alive(int i, pqw::Millis now)
{
	pid_t		pid;

	if (lslot[i].handle == NULL)
		return false;
	if (GetBackgroundWorkerPid(lslot[i].handle, &pid) != BGWH_STOPPED)
		return true;
	pfree(lslot[i].handle);
	lslot[i].handle = NULL;
	plan_restart(i, now);
	return false;
}

static void
start_worker(int i, Oid roleoid, pqw::Millis now)
{
	BackgroundWorker worker;
	PqwWorkerArgs args;
	PqwSlotInfo s;
	MemoryContext old_cxt;
	bool		registered;

	(void) pqw_slot_info(i, &s);
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;	/* the launcher decides */
	worker.bgw_notify_pid = MyProcPid;
	worker.bgw_main_arg = ObjectIdGetDatum(s.dboid);
	strlcpy(worker.bgw_library_name, "pgque_worker", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name,
			s.kind == PQW_KIND_TICKER ? "pqw_ticker_main" : "pqw_dispatcher_main",
			BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "pgque_worker %s %s",
			 pqw_kind_name(s.kind), s.dbname);
	snprintf(worker.bgw_type, BGW_MAXLEN, "pgque_worker %s", pqw_kind_name(s.kind));
	args.slot = i;
	args.roleoid = roleoid;
	args.generation = pqw_slot_new_generation(i);
	memcpy(worker.bgw_extra, &args, sizeof(args));

	lslot[i].last_start = now;
	/* The handle outlives this pass's memory context. */
	old_cxt = MemoryContextSwitchTo(TopMemoryContext);
	registered = RegisterDynamicBackgroundWorker(&worker, &lslot[i].handle);
	MemoryContextSwitchTo(old_cxt);
	if (!registered)
	{
		pqw::BackoffPolicy p;

		lslot[i].handle = NULL;
		lslot[i].failures++;
		p.base_ms = 1000;
		p.cap_ms = 60000;
		lslot[i].next_start = now + pqw::backoff_delay(p, lslot[i].failures, (uint32) random());
		pqw_slot_set_state(i, PQW_STATE_NO_SLOT);
		if (!warned_no_slot)
		{
			int			wanted = 1 + pqw_slots_in_use();

			ereport(WARNING,
					(errmsg("pgque_worker: no background worker slot for database \"%s\"", s.dbname),
					 errdetail("pgque_worker needs %d background workers (the launcher and one per served database); max_worker_processes is %d and other users take some.",
							   wanted, max_worker_processes),
					 errhint("Raise max_worker_processes and restart the server; the launcher retries with backoff.")));
			warned_no_slot = true;
		}
		return;
	}
	warned_no_slot = false;
}

/*
 * Databases found without PgQue whose probe was asked for (wake_launcher()
 * or a reload: all; CREATE SCHEMA pgque committed there: that one) are
 * probed again from the first backoff step, as soon as core/probe.hpp
 * allows.
 */
static void
take_probe_requests(bool all, pqw::Millis now)
{
	bool	   *requested = (bool *) palloc(sizeof(bool) * pqw_shared->nslots);

	if (pqw_take_probe_requests(requested))
		all = true;
	for (int i = 0; i < pqw_shared->nslots; i++)
	{
		if (!(all || requested[i]) || !pqw_slot_in_use(i) || lslot[i].handle != NULL ||
			lslot[i].absent == 0 || lslot[i].next_start < 0 ||
			pqw_slot_state(i) != PQW_STATE_NO_PGQUE)
			continue;
		lslot[i].absent = 0;
		lslot[i].next_start = pqw::requested_probe_at(lslot[i].next_start, lslot[i].last_start,
													  pqw_discovery_interval_ms, now);
	}
	pfree(requested);
}

/* Does slot i's worker run, or want to? */
static bool
slot_wants_worker(int i)
{
	return lslot[i].handle != NULL || lslot[i].next_start >= 0;
}

/* Is slot i a ticker that has not found PgQue in its database yet (never
 * ran, or found none last time)? Its probes, a few milliseconds each, are
 * not counted against the cap (see core/worker_cap.hpp): a database where
 * PgQue is installed later is found, whatever the cap. */
static bool
slot_probing(int i)
{
	switch (pqw_slot_state(i))
	{
		case PQW_STATE_NO_PGQUE:
			lslot[i].probing = true;
			break;
		case PQW_STATE_STARTING:
		case PQW_STATE_STOPPED:
		case PQW_STATE_NO_SLOT:
		case PQW_STATE_CAPPED:
			break;				/* not known from these */
		default:
			lslot[i].probing = false;
			break;
	}
	return lslot[i].probing;
}

static int
max_workers(void)
{
	return pqw_max_workers < 0 ? max_worker_processes - 1 : pqw_max_workers;
}

/* Marks slot i over the cap: its worker, if any, is asked to leave. */
static void
cap_slot(int i)
{
	lslot[i].capped = true;
	if (lslot[i].handle != NULL)
		TerminateBackgroundWorker(lslot[i].handle);
}

/*
 * pgque_worker.max_workers: which of the databases' tickers and
 * dispatchers (wanted this pass, seen) may run. The others are marked
 * capped; those running are asked to leave (a database of a higher
 * priority came, or the cap went down).
 */
static void
apply_cap(void)
{
	int			n = pqw_shared->nslots;
	pqw::DbDemand *dem = (pqw::DbDemand *) palloc(sizeof(pqw::DbDemand) * n);
	int		   *tick = (int *) palloc(sizeof(int) * n);
	int		   *disp = (int *) palloc(sizeof(int) * n);
	int		   *order = (int *) palloc(sizeof(int) * n);
	int		   *allowed = (int *) palloc(sizeof(int) * n);
	int			ndb = 0;

	for (int i = 0; i < n; i++)
		lslot[i].capped = false;
	for (int i = 0; i < n; i++)
	{
		PqwSlotInfo t;
		int			d;

		if (!lslot[i].seen || !pqw_slot_info(i, &t) || t.kind != PQW_KIND_TICKER ||
			slot_probing(i))
			continue;
		d = find_slot(t.dboid, PQW_KIND_DISPATCHER);
		if (d >= 0 && !(lslot[d].seen && slot_wants_worker(d)))
			d = -1;
		dem[ndb].owner_is_superuser = lslot[i].owner_is_superuser;
		dem[ndb].seniority = t.seniority;
		dem[ndb].wanted = (slot_wants_worker(i) ? 1 : 0) + (d >= 0 ? 1 : 0);
		tick[ndb] = i;
		disp[ndb] = d;
		ndb++;
	}
	pqw::allot_workers(dem, ndb, max_workers(), order, allowed);
	for (int k = 0; k < ndb; k++)
	{
		int			left = allowed[k];

		/* the ticker first: it alone ticks; a dispatcher needs it */
		if (slot_wants_worker(tick[k]))
		{
			if (left > 0)
				left--;
			else
				cap_slot(tick[k]);
		}
		if (disp[k] >= 0 && left == 0)
			cap_slot(disp[k]);
	}
	pfree(dem);
	pfree(tick);
	pfree(disp);
	pfree(order);
	pfree(allowed);
}

/* Slot i may not start: over the cap. Says so once per database. */
static void
hold_capped(int i)
{
	PqwSlotInfo s;

	if (!pqw_slot_info(i, &s) || s.state == PQW_STATE_CAPPED)
		return;
	pqw_slot_set_state(i, PQW_STATE_CAPPED);
	ereport(WARNING,
			(errmsg("pgque_worker: no %s for database \"%s\": pgque_worker.max_workers (%d) are taken",
					pqw_kind_name(s.kind), s.dbname, max_workers()),
			 errdetail("Databases a superuser owns come first, then those pgque_worker has served longer; a database gets its ticker and dispatcher before the next gets any."),
			 errhint("Raise pgque_worker.max_workers (and max_worker_processes), or leave databases out with pgque_worker.databases.")));
}

static void
launcher_pass(bool force_scan)
{
	int			ncand;
	Oid			roleoid;
	bool		role_ok;
	pqw::Millis now = pqw::monotonic_ms();
	bool		requested;

	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	requested = pqw_shared->rescan_requested;
	pqw_shared->rescan_requested = false;
	LWLockRelease(pqw_shared->lock);
	if (force_scan || requested || now >= next_scan || cands == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(cand_cxt);

		MemoryContextReset(cand_cxt);
		ncands = scan_databases(&cands, &cand_roleoid, &cand_role_ok);
		MemoryContextSwitchTo(old);
		next_scan = now + pqw_discovery_interval_ms;
	}
	ncand = ncands;
	roleoid = cand_roleoid;
	role_ok = cand_role_ok;
	take_probe_requests(force_scan, now);
	if (!role_ok)
	{
		if (strcmp(warned_role, pqw_role) != 0)
		{
			ereport(WARNING,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("pgque_worker: role \"%s\" named by pgque_worker.role does not exist", pqw_role),
					 errhint("Create the role and grant it pgque_admin, or change pgque_worker.role; no worker starts until then.")));
			strlcpy(warned_role, pqw_role, sizeof(warned_role));
		}
	}
	else
		warned_role[0] = '\0';

	for (int i = 0; i < pqw_shared->nslots; i++)
		lslot[i].seen = false;

	/* Tickers: one per candidate database; first those that have a slot,
	 * so that a slot left unclaimed after this is one no candidate has */
	for (int pass = 0; pass < 2; pass++)
		for (int c = 0; c < ncand; c++)
		{
			int			i = find_slot(cands[c].oid, PQW_KIND_TICKER);

			if (pass == 1 && i >= 0)
				continue;
			if (pass == 1)
				i = alloc_slot(cands[c].oid, cands[c].name, PQW_KIND_TICKER);
			if (pass == 1 && i < 0 &&
				free_slot_served_after(cands[c].owner_is_superuser, PG_UINT64_MAX))
				i = alloc_slot(cands[c].oid, cands[c].name, PQW_KIND_TICKER);
			if (i < 0)
				continue;		/* pass 0: none yet; pass 1: more databases than slots */
			lslot[i].seen = true;
			lslot[i].owner_is_superuser = cands[c].owner_is_superuser;
			pqw_slot_rename(i, cands[c].name);
		}

	/* Dispatchers: where the database's ticker runs and reports handlers. */
	for (int i = 0; i < pqw_shared->nslots; i++)
	{
		PqwSlotInfo t;
		int			d;
		bool		want;

		/* seen first: no lock for the slots this pass left out */
		if (!lslot[i].seen || !pqw_slot_info(i, &t) || t.kind != PQW_KIND_TICKER)
			continue;
		want = t.want_dispatcher && t.pid != 0;
		d = find_slot(t.dboid, PQW_KIND_DISPATCHER);
		if (d < 0 && want)
			d = alloc_slot(t.dboid, t.dbname, PQW_KIND_DISPATCHER);
		if (d < 0 && want && free_slot_served_after(lslot[i].owner_is_superuser, t.seniority))
			d = alloc_slot(t.dboid, t.dbname, PQW_KIND_DISPATCHER);
		if (d < 0)
			continue;
		pqw_slot_rename(d, t.dbname);
		if (t.pid != 0 || t.state == PQW_STATE_NO_PGQUE)
			lslot[d].inherited = false;
		/* A dispatcher without handlers leaves by itself; keep its slot
		 * (and counters) while it is wanted or still running, or after a
		 * launcher restart until its ticker is back to say whether. */
		lslot[d].seen = want || lslot[d].handle != NULL ||
			pqw_slot_state(d) == PQW_STATE_NO_HANDLERS ||
			(lslot[d].inherited && t.want_dispatcher);
		if (!want && lslot[d].handle == NULL)
			lslot[d].next_start = -1;	/* not now */
		else if (want && lslot[d].next_start < 0)
			lslot[d].next_start = now;
	}

	apply_cap();
	for (int i = 0; i < pqw_shared->nslots; i++)
	{
		PqwSlotInfo s;

		if (!pqw_slot_in_use(i))
			continue;
		if (!lslot[i].seen)
		{
			/* Dropped, renamed out of the list, deselected or closed. */
			if (worker_alive(i, now))
				TerminateBackgroundWorker(lslot[i].handle);
			else
				free_slot(i);
			continue;
		}
		if (worker_alive(i, now))
			continue;
		if (!pqw_enabled || !role_ok || lslot[i].next_start < 0)
			continue;
		/* a previous launcher's worker, still leaving: it would refuse */
		if (!pqw_slot_info(i, &s) || s.pid != 0)
			continue;
		{
			TimestampTz ts = GetCurrentTimestamp();

			if (s.hold_until > ts)
			{
				/* DROP/RENAME/TEMPLATE of it in progress: come back after */
				lslot[i].next_start = now + (s.hold_until - ts) / 1000 + 1;
				continue;
			}
		}
		if (lslot[i].capped)
		{
			hold_capped(i);
			continue;
		}
		if (now >= lslot[i].next_start)
			start_worker(i, roleoid, now);
	}
}

/* SIGTERM of a database worker: PostgreSQL's, noting that the process was
 * asked to end (an error ending it otherwise is the handler's or a fault:
 * see slot_detach). */
static void
worker_sigterm(SIGNAL_ARGS)
{
	/* not when it comes while the process is already exiting (an error
	 * ending it is what counts then) */
	if (!proc_exit_inprogress)
		pqw_termination_requested = true;
	die(postgres_signal_arg);
}

int
pqw_worker_connect(Datum main_arg, const char *appname)
{
	PqwWorkerArgs args;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, worker_sigterm);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(main_arg), args.roleoid, 0);
	pqw_worker_session_init();
	pgstat_report_appname(appname);
	return args.slot;
}

uint64
pqw_worker_generation(void)
{
	PqwWorkerArgs args;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	return args.generation;
}

/* How long a starting launcher waits for its predecessor's workers. */
#define PREVIOUS_WORKERS_WAIT_MS 10000

/*
 * Launcher start: terminates the workers a previous launcher left in the
 * slots and waits (bounded) until they have released them. Their batches in
 * flight are safe to interrupt: each chunk commits with its progress.
 */
static void
stop_previous_workers(void)
{
	int			held = pqw_slots_stop_holders();
	pqw::Millis deadline = pqw::monotonic_ms() + PREVIOUS_WORKERS_WAIT_MS;

	if (held == 0)
		return;
	ereport(LOG,
			(errmsg_plural("pgque_worker: launcher stops %d worker left running by a previous launcher",
						   "pgque_worker: launcher stops %d workers left running by a previous launcher",
						   held, held)));
	while ((held = pqw_slots_held()) > 0 && pqw::monotonic_ms() < deadline)
	{
		/* nobody sets our latch when they exit: poll */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 50, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	if (held > 0)
		ereport(WARNING,
				(errmsg_plural("pgque_worker: %d worker of a previous launcher still runs after %d s",
							   "pgque_worker: %d workers of a previous launcher still run after %d s",
							   held, held, PREVIOUS_WORKERS_WAIT_MS / 1000),
				 errdetail("Their slots get a new worker once they exit.")));
}

/* Exit handler: forget the launcher's latch. */
static void
launcher_on_exit(int code, Datum arg)
{
	(void) code;
	(void) arg;
	if (pqw_shared == NULL)
		return;
	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	pqw_shared->launcher_pid = 0;
	pqw_shared->launcher_latch = NULL;
	LWLockRelease(pqw_shared->lock);
}

PQW_EXPORT void
pqw_launcher_main(Datum main_arg)
{
	MemoryContext loop_cxt;

	(void) main_arg;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("pgque_worker launcher");

	lslot = (LauncherSlot *) MemoryContextAllocZero(TopMemoryContext,
													sizeof(LauncherSlot) * pqw_shared->nslots);

	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	pqw_shared->launcher_pid = MyProcPid;
	pqw_shared->launcher_latch = MyLatch;
	LWLockRelease(pqw_shared->lock);
	before_shmem_exit(launcher_on_exit, (Datum) 0);

	/* Slots from a previous launcher (restarted) have no handles. */
	stop_previous_workers();
	for (int i = 0; i < pqw_shared->nslots; i++)
	{
		PqwSlotInfo s;

		lslot[i].inherited = pqw_slot_info(i, &s) && s.kind == PQW_KIND_DISPATCHER;
	}

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pgque_worker launcher loop",
									 ALLOCSET_DEFAULT_SIZES);
	cand_cxt = AllocSetContextCreate(TopMemoryContext, "pgque_worker databases",
									 ALLOCSET_DEFAULT_SIZES);
	ereport(LOG, (errmsg("pgque_worker: launcher started")));

	for (;;)
	{
		pqw::Millis now;
		long		wait;
		bool		reloaded;

		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		CHECK_FOR_INTERRUPTS();
		reloaded = false;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			reloaded = true;
		}

		launcher_pass(reloaded);

		now = pqw::monotonic_ms();
		wait = next_scan - now;
		for (int i = 0; i < pqw_shared->nslots; i++)
		{
			PqwSlotInfo s;

			if (pqw_slot_in_use(i) && lslot[i].handle == NULL &&
				lslot[i].next_start >= 0 && lslot[i].next_start - now < wait &&
				pqw_slot_info(i, &s) && s.pid == 0)
				wait = lslot[i].next_start - now > 0 ? (long) (lslot[i].next_start - now) : 0;
		}
		if (wait < 10)
			wait = 10;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
