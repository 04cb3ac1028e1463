/*
 * launcher.h: the launcher background worker (one per cluster) that starts
 * and stops a ticker worker per served database.
 */
#pragma once

#include "pg.h"

/* What the launcher hands a database worker in bgw_extra. */
typedef struct PqwWorkerArgs
{
	int			slot;			/* index in pqw_shared->slots */
	Oid			roleoid;		/* role to connect as; InvalidOid: bootstrap superuser */
	uint64		generation;		/* the slot's generation when registered */
} PqwWorkerArgs;

/* Start of a database worker: reads its PqwWorkerArgs, sets up SIGHUP
 * (reload) and SIGTERM (die), connects to the database as the given role
 * and names itself `appname`. Returns its slot. */
int			pqw_worker_connect(Datum main_arg, const char *appname);

/* The slot generation the launcher gave this worker, for pqw_slot_attach. */
uint64		pqw_worker_generation(void);

/* Registers the static launcher worker; called from _PG_init. */
void		pqw_register_launcher(void);

PQW_EXPORT void pqw_launcher_main(Datum main_arg);
