/*
 * wakeup.cpp: commit-time wake-ups, in every backend.
 *
 * 1. Handler registrations: pgque_worker.register_handler() and
 *    unregister_handler() call pgque_worker._handlers_changed(), which only
 *    notes the fact; when (and only if) the transaction commits, the
 *    database's dispatcher reloads its handlers and the launcher starts one
 *    if none runs. Waking before the commit would show the old rows.
 *
 * 2. Wake on commit (pgque_worker.wake_on_commit): when a transaction that
 *    enqueued events or changed the tick policy commits, the database's
 *    ticker calls ticker() at once (and so re-reads the policy). Noted:
 *    - any statement whose result relations -- top-level or in a
 *      data-modifying CTE, as PgQue's send_batch() writes -- include an
 *      event table (schema pgque or pgq, table event_*): send(),
 *      send_batch(), insert_event(), triggers, plain INSERTs;
 *    - writes to the policy tables queue and config (create_queue,
 *      set_queue_config, set_tick_period_ms) and inserts into or deletes
 *      from subscription (subscribe, unsubscribe; the UPDATEs of every
 *      next_batch()/finish_batch() are not policy changes), except in
 *      pgque_worker's own ticker, whose rotation updates pgq(ue).queue;
 *    - calls of pgque.force_tick()/force_next_tick() (they only setval);
 *    - COPY FROM into an event table (no executor start: the utility hook
 *      calls pqw_wakeup_after_utility());
 *    - COMMIT PREPARED in a database with PgQue: what the prepared
 *      transaction did is not known here, and a needless wake costs one
 *      ticker() call.
 *    Writes into event tables also name their queue (event_<queue_id>_<n>),
 *    so the ticker ticks those queues alone (core/tick_scope.hpp); any
 *    other wake-up asks for a full ticker() call.
 *    What a subtransaction noted is forgotten when it aborts.
 *
 * 3. Ticks made by anyone but pgque_worker's own ticker (a user calling
 *    pgque.ticker(), pg_cron or pgqd while our ticker yields to it): an
 *    INSERT into the tick table (schema pgque or pgq) wakes the database's
 *    dispatcher at commit. Our ticker wakes it itself after each tick it
 *    made, so an idle dispatcher needs no periodic poll.
 * Statements
 *    without result relations pay a comparison; the others one syscache
 *    look-up per result relation they have not written before (the answers
 *    are kept: core/rel_memo.hpp). Not seen: rows
 *    applied by logical replication; for those the ticker's idle policy and
 *    pgque_worker.max_idle_interval bound the delay.
 */
#include "wakeup.h"
#include "spi_txn.h"

extern "C" {
#include "executor/executor.h"
#include "nodes/plannodes.h"
#include "parser/parsetree.h"
#include "utils/inval.h"
}

#include "guc.h"
#include "shmem.h"

#include "core/queue_set.hpp"
#include "core/rel_memo.hpp"

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
	for (int j = 0; j < nrestart; j++)
		(void) pqw_signal_workers(restart_dbs[j], 0);
}

static bool handlers_changed = false;

/* Whom a commit wakes. */
typedef enum WakeTarget
{
	WAKE_TICKER = 0,			/* events enqueued, tick policy changed */
	WAKE_DISPATCHER,			/* a tick made by someone else */
	WAKE_LAUNCHER,				/* schema pgque created: probe this database */
	NUM_WAKE_TARGETS
} WakeTarget;

/*
 * Per target, the (sub)transaction nesting level at which this transaction
 * first did something that wakes it at commit; 0: nothing yet. A level,
 * not a flag, so that the abort of that subtransaction forgets it and the
 * commit of a subtransaction hands it to the parent.
 */
static int	wake_level[NUM_WAKE_TARGETS] = {0, 0, 0};

/*
 * The queues whose event tables this transaction wrote (statements and
 * COPY), so that the ticker ticks those alone; wake_all: a wake-up it
 * cannot attribute to a queue (force_tick(), COMMIT PREPARED, a policy
 * change), for which the
 * ticker calls pgque.ticker() for every queue. Kept for the whole
 * transaction: a queue noted in a subtransaction that aborted costs one
 * needless pgque.ticker(queue) call, if anything else wakes the ticker.
 */
static pqw::QueueSet woken_queues;
static bool wake_all = false;

/* Will the commit wake the ticker for every queue already? (wake_all
 * outlives the abort of the subtransaction that set it, the level not.) */
static inline bool
ticker_fully_noted(void)
{
	return wake_all && wake_level[WAKE_TICKER] != 0;
}

/* Has this transaction noted every wake-up there is to note? */
static inline bool
all_noted(void)
{
	return ticker_fully_noted() && wake_level[WAKE_DISPATCHER] != 0;
}

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

/* What a written relation means to the ticker. */
typedef enum RelRole
{
	REL_OTHER = 0,
	REL_EVENTS,					/* event_*: events enqueued */
	REL_POLICY,					/* queue, config: tick policy changed */
	REL_SUBSCRIPTION,			/* policy change on INSERT / DELETE only */
	REL_TICK					/* tick: a tick was made (INSERT) */
} RelRole;

/* What classify_rel() answered, per relation (core/rel_memo.hpp). */
typedef struct RelClass
{
	RelRole		role;
	int64		queue_id;		/* REL_EVENTS: its queue, -1 if unknown */
} RelClass;
static pqw::RelMemo<RelClass> rel_memo;

static void
invalidate_cache(Datum arg, int cacheid, uint32 hashvalue)
{
	(void) arg;
	(void) cacheid;
	(void) hashvalue;
	cache_valid = false;
	cache_inval_count++;
	/* the memo was computed against the namespaces now in doubt */
	rel_memo.clear();
}

/* A renamed, moved or dropped relation may be in the memo. */
static void
invalidate_memo(Datum arg, Oid relid)
{
	(void) arg;
	if (!OidIsValid(relid))
		rel_memo.clear();
	else
		rel_memo.forget(relid);
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

/* The cache is usable and this database has a PgQue (or PgQ) schema. */
static bool
database_has_pgque(void)
{
	return ensure_cache() && (OidIsValid(pgque_nsp) || OidIsValid(pgq_nsp));
}

static void note_wake_level(WakeTarget target);

/* Notes a wake-up of `target` for the commit, at the current nesting
 * level; for the ticker, one it cannot attribute to a queue (every queue
 * is ticked). */
static void
note_wake(WakeTarget target)
{
	if (target == WAKE_TICKER)
		wake_all = true;
	note_wake_level(target);
}

/* Notes events enqueued into queue_id (-1: a queue not known, so all). */
static void
note_events(int64 queue_id)
{
	if (queue_id >= 0)
		woken_queues.add(queue_id);
	else
		wake_all = true;
	note_wake_level(WAKE_TICKER);
}

static void
note_wake_level(WakeTarget target)
{
	if (wake_level[target] == 0)
	{
		int			level = GetCurrentTransactionNestLevel();

		wake_level[target] = level > 0 ? level : 1;
	}
}

/* pgque_worker's own ticker: its rotation calls update PgQue's queue table
 * every rotate_interval, which is no tick-policy change, and it re-plans
 * after every ticker() call anyway. (Handlers in the dispatcher may change
 * the policy like any session.) */
static bool
in_own_ticker(void)
{
	return MyBgworkerEntry != NULL &&
		strcmp(MyBgworkerEntry->bgw_library_name, "pgque_worker") == 0 &&
		strcmp(MyBgworkerEntry->bgw_type, "pgque_worker ticker") == 0;
}

/* Syscache look-ups only (no privilege check, missing = InvalidOid). */
static RelClass
classify_rel(Oid relid)
{
	Oid			nsp;
	char	   *name;
	RelRole		role = REL_OTHER;
	int64		queue_id = -1;
	RelClass	c;
	uint64		inval_before = cache_inval_count;

	if (rel_memo.get(relid, &c))
		return c;
	nsp = get_rel_namespace(relid);
	if (OidIsValid(nsp) && (nsp == pgque_nsp || nsp == pgq_nsp))
	{
		name = get_rel_name(relid);
		if (name == NULL)
			role = REL_OTHER;
		else if (strncmp(name, "event_", 6) == 0)
		{
			role = REL_EVENTS;
			queue_id = pqw::event_table_queue_id(name);
		}
		else if (strcmp(name, "queue") == 0 || strcmp(name, "config") == 0)
			role = REL_POLICY;
		else if (strcmp(name, "subscription") == 0)
			role = REL_SUBSCRIPTION;
		else if (strcmp(name, "tick") == 0)
			role = REL_TICK;
		if (name)
			pfree(name);
	}
	c.role = role;
	c.queue_id = queue_id;
	/* an invalidation since the cache was filled, or during the look-ups
	 * (which can take them), may have moved schema pgque or pgq: the
	 * answer stands for this statement, it is not kept */
	if (cache_valid && cache_inval_count == inval_before)
		rel_memo.put(relid, c);
	return c;
}

/* The operation of the ModifyTable (top-level, or a data-modifying CTE's)
 * that writes range-table entry `rti`; CMD_UNKNOWN if none is found. */
static CmdType
operation_on(PlannedStmt *ps, int rti)
{
	ListCell   *lc;

	if (ps->planTree != NULL && IsA(ps->planTree, ModifyTable) &&
		list_member_int(((ModifyTable *) ps->planTree)->resultRelations, rti))
		return ((ModifyTable *) ps->planTree)->operation;
	foreach(lc, ps->subplans)
	{
		Plan	   *p = (Plan *) lfirst(lc);

		if (p != NULL && IsA(p, ModifyTable) &&
			list_member_int(((ModifyTable *) p)->resultRelations, rti))
			return ((ModifyTable *) p)->operation;
	}
	return CMD_UNKNOWN;
}

/* Notes whom a statement with these result relations wakes. */
static void
note_statement_wakes(PlannedStmt *ps)
{
	ListCell   *lc;

	foreach(lc, ps->resultRelations)
	{
		int			rti = lfirst_int(lc);
		RangeTblEntry *rte = rt_fetch(rti, ps->rtable);
		CmdType		op;
		RelClass	c;

		if (rte->rtekind != RTE_RELATION)
			continue;
		c = classify_rel(rte->relid);
		switch (c.role)
		{
			case REL_EVENTS:
				note_events(c.queue_id);
				break;
			case REL_POLICY:
				if (!in_own_ticker())
					note_wake(WAKE_TICKER);
				break;
			case REL_SUBSCRIPTION:
				op = operation_on(ps, rti);
				/* not found: a needless wake is cheap, a missed one is not */
				if ((op == CMD_INSERT || op == CMD_DELETE || op == CMD_UNKNOWN) &&
					!in_own_ticker())
					note_wake(WAKE_TICKER);
				break;
			case REL_TICK:
				op = operation_on(ps, rti);
				if ((op == CMD_INSERT || op == CMD_UNKNOWN) && !in_own_ticker())
					note_wake(WAKE_DISPATCHER);
				break;
			default:
				break;
		}
	}
}

static void
pqw_executor_start(QueryDesc *queryDesc, int eflags)
{
	PlannedStmt *ps = queryDesc->plannedstmt;

	/* cheap tests first: most statements have no result relation */
	if (pqw_wake_on_commit && !all_noted() && ps != NULL && ps->resultRelations != NIL &&
		(eflags & EXEC_FLAG_EXPLAIN_ONLY) == 0 && database_has_pgque())
		note_statement_wakes(ps);
	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

/* pgque.force_tick() and force_next_tick() get the fmgr hook. */
static bool
pqw_needs_fmgr_hook(Oid fn_oid)
{
	if (prev_needs_fmgr_hook && prev_needs_fmgr_hook(fn_oid))
		return true;
	if (pqw_pgque_fn_needs_path(fn_oid))
		return true;
	if (!pqw_wake_on_commit || !ensure_cache())
		return false;
	return fn_oid == force_fn[0] || fn_oid == force_fn[1];
}

/*
 * Called at the start of every SECURITY DEFINER or SET function, which
 * never asks pqw_needs_fmgr_hook (PostgreSQL 15's fmgr_info_cxt_security
 * picks fmgr_security_definer for them first): PgQue's force_tick() is
 * one. So the cache is filled here too, or force_tick() as a session's
 * first statement would not be recognised.
 */
static void
pqw_fmgr_hook(FmgrHookEventType event, FmgrInfo *flinfo, Datum *arg)
{
	if (event == FHET_START && pqw_wake_on_commit && !ticker_fully_noted() &&
		ensure_cache() && OidIsValid(flinfo->fn_oid) &&
		(flinfo->fn_oid == force_fn[0] || flinfo->fn_oid == force_fn[1]))
		note_wake(WAKE_TICKER);
	/* nested inside the previous hook's start and end: a start that
	 * raises gets no end, so ours goes last at the start, first after */
	if (event == FHET_START)
	{
		if (prev_fmgr_hook)
			prev_fmgr_hook(event, flinfo, arg);
		pqw_pgque_fn_path(event, flinfo);
	}
	else
	{
		pqw_pgque_fn_path(event, flinfo);
		if (prev_fmgr_hook)
			prev_fmgr_hook(event, flinfo, arg);
	}
}

/*
 * The table a successful COPY FROM wrote, without privilege checks or
 * errors. The COPY itself resolved the same name (and refused a catalog
 * name other than this database's), so the catalog name is ignored.
 */
static Oid
copy_target(const RangeVar *rv)
{
	Oid			nsp;

	if (rv->schemaname == NULL)
		return RelnameGetRelid(rv->relname);
	nsp = get_namespace_oid(rv->schemaname, true);
	if (!OidIsValid(nsp) || (nsp != pgque_nsp && nsp != pgq_nsp))
		return InvalidOid;
	return get_relname_relid(rv->relname, nsp);
}

void
pqw_wakeup_after_utility(Node *stmt, const QueryCompletion *qc)
{
	/* PgQue being installed (its script starts with CREATE SCHEMA, also
	 * IF NOT EXISTS): the launcher probes this database again at commit,
	 * without waiting for the backed-off probe (core/probe.hpp) */
	if (stmt != NULL && IsA(stmt, CreateSchemaStmt) &&
		((CreateSchemaStmt *) stmt)->schemaname != NULL &&
		strcmp(((CreateSchemaStmt *) stmt)->schemaname, "pgque") == 0)
		note_wake_level(WAKE_LAUNCHER);
	if (!pqw_wake_on_commit || ticker_fully_noted() || stmt == NULL)
		return;
	if (IsA(stmt, CopyStmt))
	{
		CopyStmt   *c = (CopyStmt *) stmt;
		Oid			relid;
		RelClass	rc;

		if (!c->is_from || c->relation == NULL ||
			(qc != NULL && qc->commandTag == CMDTAG_COPY && qc->nprocessed == 0) ||
			!database_has_pgque())
			return;
		relid = copy_target(c->relation);
		if (!OidIsValid(relid))
			return;
		rc = classify_rel(relid);
		if (rc.role == REL_EVENTS)
			note_events(rc.queue_id);
	}
	else if (IsA(stmt, TransactionStmt) &&
			 ((TransactionStmt *) stmt)->kind == TRANS_STMT_COMMIT_PREPARED)
	{
		/* runs in the statement's own transaction, which commits next */
		if (database_has_pgque())
			note_wake(WAKE_TICKER);
	}
}

static void
on_xact_event(XactEvent event, void *arg)
{
	(void) arg;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_level[WAKE_TICKER] != 0)
				pqw_notify_ticker(MyDatabaseId, wake_all ? NULL : &woken_queues);
			if (wake_level[WAKE_DISPATCHER] != 0)
				pqw_wake_dispatcher(MyDatabaseId, false, NULL);
			if (handlers_changed)
				pqw_handlers_changed(MyDatabaseId);
			if (wake_level[WAKE_LAUNCHER] != 0)
				pqw_request_probe(MyDatabaseId);
			restart_noted_workers();
			nrestart = 0;
			handlers_changed = false;
			wake_level[WAKE_TICKER] = wake_level[WAKE_DISPATCHER] = wake_level[WAKE_LAUNCHER] = 0;
			woken_queues.clear();
			wake_all = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction takes effect at COMMIT PREPARED, which
			 * wakes the ticker itself; nothing carries into the session's
			 * next transaction */
			nrestart = 0;
			handlers_changed = false;
			wake_level[WAKE_TICKER] = wake_level[WAKE_DISPATCHER] = wake_level[WAKE_LAUNCHER] = 0;
			woken_queues.clear();
			wake_all = false;
			break;
		default:
			break;
	}
}

/* What an aborted subtransaction noted is forgotten; what a committed one
 * noted belongs to its parent from now on. */
static void
on_subxact_event(SubXactEvent event, SubTransactionId mySubid,
				 SubTransactionId parentSubid, void *arg)
{
	int			level;

	(void) mySubid;
	(void) parentSubid;
	(void) arg;
	if (wake_level[WAKE_TICKER] == 0 && wake_level[WAKE_DISPATCHER] == 0 &&
		wake_level[WAKE_LAUNCHER] == 0)
		return;
	/* still the level of the subtransaction that ends */
	level = GetCurrentTransactionNestLevel();
	for (int t = 0; t < NUM_WAKE_TARGETS; t++)
	{
		if (wake_level[t] < level)
			continue;
		if (event == SUBXACT_EVENT_ABORT_SUB)
			wake_level[t] = 0;
		else if (event == SUBXACT_EVENT_COMMIT_SUB)
			wake_level[t] = level - 1;
	}
}

void
pqw_wakeup_install(void)
{
	RegisterXactCallback(on_xact_event, NULL);
	RegisterSubXactCallback(on_subxact_event, NULL);
	/* registered in the postmaster, inherited by every backend */
	CacheRegisterSyscacheCallback(NAMESPACEOID, invalidate_cache, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, invalidate_cache, (Datum) 0);
	CacheRegisterRelcacheCallback(invalidate_memo, (Datum) 0);
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
