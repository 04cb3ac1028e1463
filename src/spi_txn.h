/*
 * spi_txn.h: the SPI/transaction boundary. Every call pgque_worker makes
 * into SQL goes through here: its own transaction, a pushed snapshot, an
 * armed timeout, a pg_stat_activity entry, and an error that aborts the
 * transaction and comes back as data instead of a longjmp.
 */
#pragma once

#include "pg.h"

#define PQW_MAX_COLS 19	/* the tick policy: 2 dues, a 16-word queue set, a count */

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
 * Whose rights a statement runs with. Every call says it:
 *   PQW_AS_WORKER       the role the worker logged in as: only our own SQL on
 *                       our own tables and the catalogs, never code a
 *                       non-superuser can replace;
 *   PQW_AS_PGQUE_OWNER  the owner of schema pgque, in a security-restricted
 *                       operation: every PgQue call (the owner can replace
 *                       that code, so it runs with the owner's rights and no
 *                       more). Refused with an ERROR while PgQue here is not
 *                       trusted (trust.h).
 * Any other role oid: that role, security-restricted (a handler's role).
 */
#define PQW_AS_WORKER		InvalidOid
#define PQW_AS_PGQUE_OWNER	((Oid) 1)

/* The search_path of every worker session and every call: nothing a
 * database, a role or a tenant creates can shadow the catalog. */
#define PQW_PINNED_SEARCH_PATH "pg_catalog, pg_temp"

/* The role the worker logged in as (set by pqw_worker_session_init). */
extern Oid	pqw_worker_roleid;

/*
 * Called once after a worker connects: pins the settings its session runs
 * with, whatever ALTER DATABASE / ALTER ROLE ... SET say (search_path,
 * read-only and isolation defaults, timeouts, exit_on_error, jit, plpgsql
 * extra checks, role), and records the login role.
 */
void		pqw_worker_session_init(void);

/*
 * In the workers, every function of schema pgque runs with pg_temp named
 * last in its search_path: its own search_path if it sets one (PgQue's
 * SECURITY DEFINER functions set "pgque, pg_catalog", which leaves
 * pg_temp first for types), else PQW_PGQUE_FN_SEARCH_PATH (the one the
 * workers run PgQue as its owner with), whoever calls it, a handler too;
 * and a handler may not call a procedural language's validator. PL/pgSQL
 * compiles a function once per process, looking the types of its
 * variables up under the search_path of its first call (or of a
 * validator's), and keeps that for every later caller: a handler calling
 * get_batch_events() (or plpgsql_validator() on it) under its own
 * search_path made the compiled form name the handler's domain, whose
 * CHECK the next nack() run as PgQue's owner ran (found by reviews).
 * pqw_pgque_fn_needs_path (from needs_fmgr_hook: such a function is also
 * never inlined) and pqw_pgque_fn_path (from fmgr_hook) do it; outside
 * the workers, false and nothing.
 */
#define PQW_PGQUE_FN_SEARCH_PATH PQW_PINNED_SEARCH_PATH

/*
 * The role of the handler call under way in a dispatcher (else
 * InvalidOid). During such a call a function written in a procedural
 * language (PL/pgSQL and the like: not C, internal or SQL) that belongs to
 * a role whose privileges the current user lacks runs with a path made
 * from its owner's (its own SET search_path, else its owner's sessions'
 * path in the database): "$user" spelled as the owner, cut before the
 * first schema the current user or the owner may not use, without the
 * schemas where a role the owner does not trust may create objects,
 * pg_temp last. The dispatcher serves every
 * tenant of the database in one process, and the first caller's
 * search_path would otherwise decide the compiled form every later caller
 * runs (tenant A's domain CHECK run as tenant B; found by reviews).
 */
extern Oid	pqw_handler_call_role;

/* fmgr_info() of a handler function that only `run_as` will call: if
 * run_as owns it, its calls skip the hook above (the common case: a
 * message handler is called once per message). */
void		pqw_handler_fmgr_info(Oid fn, Oid run_as, FmgrInfo *flinfo);
bool		pqw_pgque_fn_needs_path(Oid fn_oid);
void		pqw_pgque_fn_path(FmgrHookEventType event, FmgrInfo *flinfo);

/* A switch of the current user for the statements that follow, inside a
 * transaction: security-restricted, with its own settings nest level so
 * whatever the code run under it SETs is undone by pqw_end_as. */
typedef struct PqwAs
{
	Oid			save_uid;
	int			save_sec;
	int			nest;
	bool		save_guard;		/* was PgQue's call guarded (see spi_txn.cpp) */
	Oid			save_guard_owner;	/* whom it ran PgQue as */
} PqwAs;

/* Switches to `role` (a role oid, PQW_AS_WORKER or PQW_AS_PGQUE_OWNER),
 * with search_path `search_path` for the code run under it. As the
 * worker, a lock is waited for at most pgque_worker.lock_timeout: our own
 * tables' rows can be locked by a tenant's open transaction (deleting its
 * registration locks the counters of that handler, by trigger). */
void		pqw_begin_as(Oid role, const char *search_path, PqwAs *as);
/* Undoes every setting changed since pqw_begin_as, restores the user. */
void		pqw_end_as(PqwAs *as);

/* After an error between pqw_begin_as and pqw_end_as that the caller lets
 * through to code that may catch it (a handler calling our SQL
 * functions): the PgQue guard as it was before pqw_begin_as. A
 * (sub)transaction abort restores the user and the settings by itself. */
void		pqw_restore_guard(const PqwAs *as);

/* Whether PgQue's call, run as its owner, was refused a relation of
 * another role since pqw_pgque_guard_reset() (see spi_txn.cpp). */
bool		pqw_pgque_guard_refused(void);
void		pqw_pgque_guard_reset(void);

/*
 * A statement of ours and its plan, declared static beside its call site
 * (PQW_STATEMENT), as PL/pgSQL keeps an expression's plan: prepared at its
 * first use and kept for the life of the process (PostgreSQL's plan cache
 * revalidates it when what it uses changes). Its text is constant, never
 * built from user input (values go in parameters), and its parameter types
 * are the same at every use.
 */
typedef struct PqwStatement
{
	const char *sql;
	SPIPlanPtr	plan;			/* NULL until first used */
} PqwStatement;
#define PQW_STATEMENT(text) {(text), NULL}

/*
 * Runs `stmt` (values go in `values`) as `run_as` in a transaction of its own under a timeout of
 * `timeout_ms`, and reads up to PQW_MAX_COLS integer columns of the first
 * row. Returns result->ok. Never throws and never longjmps, except for
 * FATAL errors (e.g. SIGTERM), which end the process as they should.
 */
bool		pqw_call(PqwStatement *stmt, Oid run_as, int nargs, Oid *argtypes, Datum *values,
					 int timeout_ms, PqwCallResult *result);

/* Runs `fn(arg)` in a transaction of its own with SPI connected, as
 * `run_as` (for the whole transaction, commit included: a holdable cursor
 * or deferred trigger of that code runs at commit), under the same rules as
 * pqw_call. `fn` may raise errors and may switch users with pqw_begin_as.
 * `synchronous_commit`: that setting for this transaction, commit included
 * (NULL: the worker's own). */
typedef void (*PqwTxnFn) (void *arg);
bool		pqw_in_transaction(const char *activity, Oid run_as, PqwTxnFn fn, void *arg,
							   int timeout_ms, const char *synchronous_commit, PqwCallResult *result);

/*
 * pqw_call whose commit does not wait for its WAL to reach disk (or a
 * synchronous standby): synchronous_commit = off for that transaction
 * alone. Only for PgQue's own bookkeeping whose loss in a crash loses
 * nothing: ticks and maintenance (a tick, retried events moved back into
 * the queue, a rotation step). Its commit record is in WAL before anyone
 * can see its effects, so whatever depends on it (a next_batch, an ack, a
 * chunk, an event written into a rotated-to table) writes its own WAL
 * after it; recovery and standbys keep WAL in order, so if that survives,
 * so does the bookkeeping. One lost in a crash was never consumed and is
 * made again (a lost tick's id may then be handed out again: only a
 * NOTIFY payload outside the database could have seen it).
 */
bool		pqw_call_async_commit(PqwStatement *stmt, Oid run_as, int nargs, Oid *argtypes,
								  Datum *values, int timeout_ms, PqwCallResult *result);

/* Inside a connected SPI: runs `stmt` with parameters. */
int			pqw_exec_cached(PqwStatement *stmt, int nargs, Oid *argtypes, Datum *values,
							const char *nulls, bool read_only, long tcount);

/* Opens a cursor over `stmt` (prepared with `cursor_options`, e.g.
 * CURSOR_OPT_HOLD, at its first use). */
Portal		pqw_cursor_open_cached(const char *name, PqwStatement *stmt, int nargs,
								   Oid *argtypes, Datum *values, int cursor_options);

/* Inside a connected SPI: runs `stmt` and reads up to PQW_MAX_COLS integer columns of its first row into
 * `result`; raises on error. */
void		pqw_exec_into(PqwStatement *stmt, int nargs, Oid *argtypes, Datum *values,
						  PqwCallResult *result);

/* Runs `fn(arg)` in a subtransaction of its own: an error is rolled back
 * and returned in `result` (false), the transaction goes on. `on_error`
 * (may be NULL) runs first on the error path, e.g. to disarm timeouts. */
bool		pqw_in_subtransaction(PqwTxnFn fn, void *arg, PqwTxnFn on_error,
								  PqwCallResult *result);

/* pqw_exec_into in a subtransaction of its own (pqw_in_subtransaction). */
bool		pqw_try_exec_into(PqwStatement *stmt, int nargs, Oid *argtypes, Datum *values,
							  PqwCallResult *result);

/* Copies the current error into `result` and cleans up after it: used by
 * PG_CATCH blocks that handle an error without rethrowing. */
void		pqw_capture_error(MemoryContext keep, PqwCallResult *result);
