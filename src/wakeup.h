/*
 * wakeup.h: wake-ups that must wait for the commit of the transaction that
 * causes them (events enqueued, the tick policy changed, a handler
 * registered, ...).
 */
#pragma once

#include "pg.h"

extern "C" {
#include "tcop/cmdtag.h"
}

/* Registers the transaction callback; called from _PG_init. */
void		pqw_wakeup_install(void);

/* After a utility statement succeeded: notes a wake-up of the ticker for
 * COPY FROM into a PgQue event table and for COMMIT PREPARED. Never
 * raises. */
void		pqw_wakeup_after_utility(Node *stmt, const QueryCompletion *qc);

/* Restarts the workers of a database when this transaction commits. */
void		pqw_restart_workers_at_commit(Oid dboid);
