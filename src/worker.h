/*
 * worker.h: the skeleton every database worker (ticker, dispatcher) shares.
 *
 * Start: connect as the launcher said, pin the session (spi_txn.h), attach
 * to the slot, keep freed memory for the next transaction, set work_mem
 * from pgque_worker.work_mem. Each loop pass: reset the pass's memory,
 * take interrupts, reload on SIGHUP (work_mem again; and leave when
 * pgque_worker.role changed: the launcher starts the worker again as the
 * new role), and wait instead of working
 * while pgque_worker.enabled is off, the database is paused
 * (pgque_worker.pause()) or the server is a standby.
 */
#pragma once

#include "pg.h"
#include "shmem.h"

typedef struct PqwWorker
{
	int			slot;
	PqwKind		kind;
	char		dbname[NAMEDATALEN];
	char		start_role[NAMEDATALEN];
	MemoryContext loop_cxt;
	bool		waiting;		/* the last pass waited */
} PqwWorker;

/* Connects, attaches to the slot in `state`, logs nothing yet. */
void		pqw_worker_start(PqwWorker *w, Datum main_arg, PqwKind kind, PqwState state);

typedef enum PqwPass
{
	PQW_PASS_WORK,				/* go on with the pass */
	PQW_PASS_RESUMED,			/* go on, after passes that waited */
	PQW_PASS_WAITED				/* paused or standby: waited, start the next pass */
} PqwPass;

/* The top of a loop pass; *reloaded says a SIGHUP was taken. */
PqwPass		pqw_worker_pass(PqwWorker *w, bool *reloaded);

/* Sleeps on the latch (or until it is set), exits with the postmaster. */
void		pqw_worker_wait(long ms);

/* When the last pqw_worker_wait returned (for the DEBUG1 step logs). */
extern TimestampTz pqw_worker_woke_at;

/* The slot's state, written only when it changes. */
void		pqw_worker_set_state(PqwWorker *w, PqwState state);
