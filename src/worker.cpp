/*
 * worker.cpp: the database workers' shared skeleton (see worker.h).
 */
#include "worker.h"

#include "guc.h"
#include "launcher.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

/*
 * A worker runs the same transactions over and over. glibc's malloc gives
 * the top of the heap back to the kernel once more than its trim threshold
 * is free (about 256 KB at first) and serves large requests with their own
 * mmap, so every chunk transaction (its executor, its tuples, a batch
 * handler's array) faulted fresh pages in again: about 200 page faults a
 * chunk of 1,000 events, and twice the system CPU on a drain.
 * Freed memory is kept instead, up to PQW_KEEP_FREED bytes at the top of
 * the heap, and requests up to half that come from the heap. What a
 * worker holds stays bounded by its largest transaction.
 */
#define PQW_KEEP_FREED (32 * 1024 * 1024)

static void
keep_freed_memory(void)
{
#ifdef __GLIBC__
	if (mallopt(M_MMAP_THRESHOLD, PQW_KEEP_FREED / 2) != 1 ||
		mallopt(M_TRIM_THRESHOLD, PQW_KEEP_FREED) != 1)
		elog(DEBUG1, "pgque_worker: mallopt refused the trim and mmap thresholds");
#endif
}

/*
 * work_mem from pgque_worker.work_mem, at session level (above a database's
 * or role's default; a handler's own SET is undone when it returns), or
 * the server's at -1. Outside a transaction: not undone by an abort.
 */
static void
apply_work_mem(void)
{
	char		kb[32];

	if (pqw_work_mem_kb < 0)
	{
		(void) set_config_option("work_mem", NULL, PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_SET, true, WARNING, false);
		return;
	}
	snprintf(kb, sizeof(kb), "%dkB", pqw_work_mem_kb);
	(void) set_config_option("work_mem", kb, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SET, true, WARNING, false);
}

void
pqw_worker_start(PqwWorker *w, Datum main_arg, PqwKind kind, PqwState state)
{
	memset(w, 0, sizeof(*w));
	w->kind = kind;
	w->slot = pqw_worker_connect(main_arg, kind == PQW_KIND_TICKER ?
								 "pgque_worker ticker" : "pgque_worker dispatcher");
	strlcpy(w->start_role, pqw_role ? pqw_role : "", sizeof(w->start_role));
	pqw_slot_attach(w->slot, pqw_worker_generation(), state, w->dbname);
	w->loop_cxt = AllocSetContextCreate(TopMemoryContext, "pgque_worker loop pass",
										ALLOCSET_DEFAULT_SIZES);
	keep_freed_memory();
	apply_work_mem();
}

TimestampTz pqw_worker_woke_at = 0;

void
pqw_worker_wait(long ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 ms, PG_WAIT_EXTENSION);
	pqw_worker_woke_at = GetCurrentTimestamp();
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

void
pqw_worker_set_state(PqwWorker *w, PqwState state)
{
	if (pqw_slot_state(w->slot) != state)
		pqw_slot_set_state(w->slot, state);
}

PqwPass
pqw_worker_pass(PqwWorker *w, bool *reloaded)
{
	bool		was_waiting = w->waiting;

	MemoryContextReset(w->loop_cxt);
	MemoryContextSwitchTo(w->loop_cxt);
	CHECK_FOR_INTERRUPTS();

	*reloaded = false;
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		apply_work_mem();
		*reloaded = true;
		if (strcmp(w->start_role, pqw_role ? pqw_role : "") != 0)
		{
			ereport(LOG,
					(errmsg("pgque_worker: pgque_worker.role changed, %s for database \"%s\" restarts",
							pqw_kind_name(w->kind), w->dbname)));
			proc_exit(0);
		}
	}

	w->waiting = true;
	if (!pqw_enabled || pqw_database_paused)
	{
		pqw_worker_set_state(w, PQW_STATE_PAUSED);
		pqw_worker_wait(pqw_discovery_interval_ms);
		return PQW_PASS_WAITED;
	}
	if (RecoveryInProgress())
	{
		/* never call anything on a standby */
		pqw_worker_set_state(w, PQW_STATE_STANDBY);
		pqw_worker_wait(1000);
		return PQW_PASS_WAITED;
	}
	w->waiting = false;
	return was_waiting ? PQW_PASS_RESUMED : PQW_PASS_WORK;
}
