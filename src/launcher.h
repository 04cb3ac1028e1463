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
} PqwWorkerArgs;

/* Registers the static launcher worker; called from _PG_init. */
void		pqw_register_launcher(void);

PQW_EXPORT void pqw_launcher_main(Datum main_arg);
