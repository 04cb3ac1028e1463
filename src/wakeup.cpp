/*
 * wakeup.cpp: commit-time wake-ups.
 *
 * pgque_worker.register_handler() and unregister_handler() call
 * pgque_worker._handlers_changed(), which only notes the fact; when (and
 * only if) the transaction commits, the database's dispatcher is told to
 * reload its handlers and the launcher to start one if none runs. Waking
 * before the commit would let the dispatcher read the old registrations.
 */
#include "wakeup.h"

#include "shmem.h"

extern "C" {
PG_FUNCTION_INFO_V1(pqw_handlers_changed);
}

static bool handlers_changed = false;

static void
on_xact_event(XactEvent event, void *arg)
{
	(void) arg;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
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
			handlers_changed = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			handlers_changed = false;
			break;
		default:
			break;
	}
}

void
pqw_wakeup_install(void)
{
	RegisterXactCallback(on_xact_event, NULL);
}

/* Notes that this transaction changed handler registrations. */
PQW_EXPORT Datum
pqw_handlers_changed(PG_FUNCTION_ARGS)
{
	(void) fcinfo;
	handlers_changed = true;
	PG_RETURN_VOID();
}
