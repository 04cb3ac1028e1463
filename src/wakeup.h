/*
 * wakeup.h: wake-ups that must wait for the commit of the transaction that
 * causes them (a handler registered, ...).
 */
#pragma once

#include "pg.h"

/* Registers the transaction callback; called from _PG_init. */
void		pqw_wakeup_install(void);

/* Restarts the workers of a database when this transaction commits. */
void		pqw_restart_workers_at_commit(Oid dboid);
