/*
 * spi_txn.h: the SPI/transaction boundary. Every call pgque_worker makes
 * into SQL goes through here: its own transaction, a pushed snapshot, an
 * armed timeout, a pg_stat_activity entry, and an error that aborts the
 * transaction and comes back as data instead of a longjmp.
 */
#pragma once

#include "pg.h"

#define PQW_MAX_COLS 4

typedef struct PqwCallResult
{
	bool		ok;
	bool		has_row;
	bool		isnull[PQW_MAX_COLS];
	int64		value[PQW_MAX_COLS];	/* integer columns of the first row */
	int			sqlerrcode;				/* on failure */
	char		message[512];			/* on failure: the error message */
	char		detail[512];			/* on failure: detail and context */
} PqwCallResult;

/*
 * Runs `sql` (constant text, never built from user input; values go in
 * `values`) in a transaction of its own under a timeout of `timeout_ms`,
 * and reads up to PQW_MAX_COLS integer columns of the first row. Returns
 * result->ok. Never throws and never longjmps, except for FATAL errors
 * (e.g. SIGTERM), which end the process as they should.
 */
bool		pqw_call(const char *sql, int nargs, Oid *argtypes, Datum *values,
					 int timeout_ms, PqwCallResult *result);

/* Runs `fn(arg)` in a transaction of its own with SPI connected, under the
 * same rules as pqw_call. `fn` may raise errors. */
typedef void (*PqwTxnFn) (void *arg);
bool		pqw_in_transaction(const char *activity, PqwTxnFn fn, void *arg,
							   int timeout_ms, PqwCallResult *result);

/*
 * Inside a connected SPI: runs `sql` (a static string: plans are cached by
 * its address, prepared once per process and kept) with parameters. Use it
 * for statements run on every tick or chunk; parameter types must be fixed.
 */
int			pqw_exec_cached(const char *sql, int nargs, Oid *argtypes, Datum *values,
							const char *nulls, bool read_only, long tcount);

/* The same cache for a cursor (e.g. CURSOR_OPT_HOLD). */
Portal		pqw_cursor_open_cached(const char *name, const char *sql, int nargs,
								   Oid *argtypes, Datum *values, int cursor_options);

/* Copies the current error into `result` and cleans up after it: used by
 * PG_CATCH blocks that handle an error without rethrowing. */
void		pqw_capture_error(MemoryContext keep, PqwCallResult *result);
