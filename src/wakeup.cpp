/*
 * wakeup.cpp: commit-time wake-ups, in every backend.
 *
 * 1. Handler registrations: pgque_worker.register_handler() and
 *    unregister_handler() call pgque_worker._handlers_changed(), which only
 *    notes the fact; when (and only if) the transaction commits, the
 *    database's dispatcher reloads its handlers and the launcher starts one
 *    if none runs. Waking before the commit would show the old rows.
 *
 * 2. Wake on commit (pgque_worker.wake_on_commit): an INSERT into a PgQue
 *    event table (schema pgque or pgq, table event_*) -- whether through
 *    pgque.send(), send_batch(), insert_event(), a trigger or a direct
 *    INSERT -- or a call of pgque.force_tick()/force_next_tick() marks the
 *    transaction; when it commits, the database's ticker is woken at once.
 *    Statements that insert elsewhere pay one syscache lookup per result
 *    relation; other statements pay a comparison. Not seen: COPY into an
 *    event table and rows applied by logical replication (no executor
 *    start); for those the ticker's idle policy and
 *    pgque_worker.max_idle_interval bound the delay.
 */
#include "wakeup.h"

extern "C" {
#include "executor/executor.h"
#include "parser/parsetree.h"
#include "utils/inval.h"
}

#include "guc.h"
#include "shmem.h"

extern "C" {
PG_FUNCTION_INFO_V1(pqw_handlers_changed);
}

/* Databases whose workers restart when this transaction commits. */
#define MAX_RESTARTS 8
static Oid	restart_dbs[MAX_RESTARTS];
static int	nrestart = 0;

/* Ends the workers of the noted databases; the launcher starts them again
 * and they read their per-database settings anew. */
static void
restart_noted_workers(void)
{
	if (pqw_shared == NULL || nrestart == 0)
		return;
	LWLockAcquire(pqw_shared->lock, LW_SHARED);
	for (int i = 0; i < pqw_shared->nslots; i++)
		for (int j = 0; j < nrestart; j++)
			if (pqw_shared->slots[i].in_use && pqw_shared->slots[i].dboid == restart_dbs[j] &&
				pqw_shared->slots[i].pid != 0)
				(void) kill(pqw_shared->slots[i].pid, SIGTERM);
	LWLockRelease(pqw_shared->lock);
}

static bool handlers_changed = false;
static bool events_enqueued = false;

static ExecutorStart_hook_type prev_executor_start = NULL;
static needs_fmgr_hook_type prev_needs_fmgr_hook = NULL;
static fmgr_hook_type prev_fmgr_hook = NULL;

/*
 * Per-backend cache of the catalog objects we recognise. It is filled from
 * hooks that run in every user's statements, so the fill looks up catalogs
 * directly, without privilege checks (a role without USAGE on schema pgque
 * must not get an error on an unrelated INSERT), and anything not found
 * just means "no wake-up".
 */
static bool cache_valid = false;
static bool cache_filling = false;
/* Bumped by every invalidation: a fill that saw one mid-way is not kept. */
static uint64 cache_inval_count = 0;
static Oid	pgque_nsp = InvalidOid;
static Oid	pgq_nsp = InvalidOid;
static Oid	force_fn[2] = {InvalidOid, InvalidOid};

static void
invalidate_cache(Datum arg, int cacheid, uint32 hashvalue)
{
	(void) arg;
	(void) cacheid;
	(void) hashvalue;
	cache_valid = false;
	cache_inval_count++;
}

/* pgque.<name>(text) by its catalog key; LookupFuncName() would check
 * USAGE on the schema as the current user. */
static Oid
lookup_force_fn(Oid nsp, const char *name)
{
	Oid			argtypes[1] = {TEXTOID};
	oidvector  *args;
	Oid			fn;

	if (!OidIsValid(nsp))
		return InvalidOid;
	args = buildoidvector(argtypes, 1);
	fn = GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid, CStringGetDatum(name),
						 PointerGetDatum(args), ObjectIdGetDatum(nsp));
	pfree(args);
	return fn;
}

/*
 * Fills the cache; only inside a transaction, never recursively (a catalog
 * look-up can reach our own hooks). Only syscache look-ups run here: they
 * report a missing object as InvalidOid and check no privileges, so what
 * can still raise is what any catalog access can (out of memory, a corrupt
 * catalog), which ends the transaction anyway; PG_FINALLY then clears
 * cache_filling, which would otherwise stay set and switch this backend's
 * wake-ups off for good.
 */
static bool
ensure_cache(void)
{
	uint64		inval_before;

	if (cache_valid)
		return true;
	if (cache_filling || !IsTransactionState() || !OidIsValid(MyDatabaseId))
		return false;
	inval_before = cache_inval_count;
	cache_filling = true;
	PG_TRY();
	{
		/* a syscache look-up, no privilege check */
		pgque_nsp = get_namespace_oid("pgque", true);
		pgq_nsp = get_namespace_oid("pgq", true);
		force_fn[0] = lookup_force_fn(pgque_nsp, "force_tick");
		force_fn[1] = lookup_force_fn(pgque_nsp, "force_next_tick");
	}
	PG_FINALLY();
	{
		cache_filling = false;
	}
	PG_END_TRY();
	/* the values serve this call either way; an invalidation during the
	 * fill makes the next call fill again */
	cache_valid = (cache_inval_count == inval_before);
	return true;
}

static bool
is_event_table(Oid relid)
{
	Oid			nsp = get_rel_namespace(relid);
	char	   *name;
	bool		result;

	if (!OidIsValid(nsp) || (nsp != pgque_nsp && nsp != pgq_nsp))
		return false;
	name = get_rel_name(relid);
	result = name != NULL && strncmp(name, "event_", 6) == 0;
	if (name)
		pfree(name);
	return result;
}

static void
pqw_executor_start(QueryDesc *queryDesc, int eflags)
{
	if (pqw_wake_on_commit && !events_enqueued &&
		queryDesc->operation == CMD_INSERT && queryDesc->plannedstmt != NULL &&
		ensure_cache() && (OidIsValid(pgque_nsp) || OidIsValid(pgq_nsp)))
	{
		ListCell   *lc;

		foreach(lc, queryDesc->plannedstmt->resultRelations)
		{
			RangeTblEntry *rte = rt_fetch(lfirst_int(lc), queryDesc->plannedstmt->rtable);

			if (rte->rtekind == RTE_RELATION && is_event_table(rte->relid))
			{
				events_enqueued = true;
				break;
			}
		}
	}
	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

/* Only pgque.force_tick() and force_next_tick() get the fmgr hook. */
static bool
pqw_needs_fmgr_hook(Oid fn_oid)
{
	if (prev_needs_fmgr_hook && prev_needs_fmgr_hook(fn_oid))
		return true;
	if (!pqw_wake_on_commit || !ensure_cache())
		return false;
	return fn_oid == force_fn[0] || fn_oid == force_fn[1];
}

static void
pqw_fmgr_hook(FmgrHookEventType event, FmgrInfo *flinfo, Datum *arg)
{
	if (event == FHET_START &&
		(flinfo->fn_oid == force_fn[0] || flinfo->fn_oid == force_fn[1]))
		events_enqueued = true;
	if (prev_fmgr_hook)
		prev_fmgr_hook(event, flinfo, arg);
}

/* Commit of a transaction that enqueued: wake this database's ticker. */
static void
wake_ticker(void)
{
	int			t;
	Latch	   *latch = NULL;

	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	t = pqw_find_slot(MyDatabaseId, PQW_KIND_TICKER);
	if (t >= 0)
	{
		pqw_shared->slots[t].events_pending = true;
		latch = pqw_shared->slots[t].latch;
	}
	LWLockRelease(pqw_shared->lock);
	if (latch)
		SetLatch(latch);
}

static void
on_xact_event(XactEvent event, void *arg)
{
	(void) arg;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (events_enqueued && pqw_shared != NULL)
				wake_ticker();
			if (handlers_changed && pqw_shared != NULL)
			{
				int			t;

				LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
				t = pqw_find_slot(MyDatabaseId, PQW_KIND_TICKER);
				if (t >= 0)
					pqw_shared->slots[t].want_dispatcher = true;
				LWLockRelease(pqw_shared->lock);
				pqw_wake_dispatcher(MyDatabaseId, true);
				pqw_wake_launcher();
			}
			restart_noted_workers();
			nrestart = 0;
			handlers_changed = false;
			events_enqueued = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			nrestart = 0;
			handlers_changed = false;
			events_enqueued = false;
			break;
		default:
			break;
	}
}

void
pqw_wakeup_install(void)
{
	RegisterXactCallback(on_xact_event, NULL);
	/* registered in the postmaster, inherited by every backend */
	CacheRegisterSyscacheCallback(NAMESPACEOID, invalidate_cache, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, invalidate_cache, (Datum) 0);
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = pqw_executor_start;
	prev_needs_fmgr_hook = needs_fmgr_hook;
	needs_fmgr_hook = pqw_needs_fmgr_hook;
	prev_fmgr_hook = fmgr_hook;
	fmgr_hook = pqw_fmgr_hook;
}

/* Notes that this transaction changed handler registrations. */
PQW_EXPORT Datum
pqw_handlers_changed(PG_FUNCTION_ARGS)
{
	(void) fcinfo;
	handlers_changed = true;
	PG_RETURN_VOID();
}

/* Restarts the workers of `dboid` when this transaction commits (after
 * pause() / resume(), so they read the database's settings anew). */
void
pqw_restart_workers_at_commit(Oid dboid)
{
	for (int j = 0; j < nrestart; j++)
		if (restart_dbs[j] == dboid)
			return;
	if (nrestart < MAX_RESTARTS)
		restart_dbs[nrestart++] = dboid;
}
