/*
 * shmem.h: the shared-memory state of pgque_worker.
 *
 * One PqwShared block holds the launcher's identity and an array of slots,
 * one per (database, kind of worker) the launcher serves. shmem.cpp owns
 * them: no other file reads or writes a slot's fields. Workers, hooks and
 * SQL functions use the verbs below, the launcher allocates, frees,
 * renames and reads slots through its own (pqw_slot_alloc and the rest),
 * and status() gets a copy (pqw_slots_status). One LWLock protects them
 * (a few updates per tick); the commit path of users' backends takes it
 * shared only and sets an atomic flag (pqw_notify_ticker).
 */
#pragma once

#include "pg.h"

#include "core/queue_set.hpp"

#define PQW_ERRLEN 256

typedef enum PqwKind
{
	PQW_KIND_TICKER = 0,
	PQW_KIND_DISPATCHER = 1
} PqwKind;

typedef enum PqwState
{
	PQW_STATE_STARTING = 0,	/* registered, not yet connected */
	PQW_STATE_RUNNING,		/* serving the database */
	PQW_STATE_PAUSED,		/* pgque_worker.enabled = off */
	PQW_STATE_STANDBY,		/* server in recovery: calls nothing */
	PQW_STATE_NO_PGQUE,		/* database has no pgque schema; worker left */
	PQW_STATE_BACKOFF,		/* last call failed, waiting to retry */
	PQW_STATE_STOPPED,		/* worker exited; launcher decides what next */
	PQW_STATE_NO_SLOT,		/* no background worker slot available */
	PQW_STATE_NO_HANDLERS,	/* dispatcher: no enabled handler left */
	PQW_STATE_YIELDING,		/* ticker: another scheduler owns PgQue here */
	PQW_STATE_UNTRUSTED,	/* PgQue objects of other owners: nothing called */
	PQW_STATE_CAPPED		/* not started: pgque_worker.max_workers */
} PqwState;

/* Room for the error that ended a handler's call (see PqwDispatcherPart). */
#define PQW_CALL_ERROR_LEN 256

/* A handler call: which handler, which batch, which events. */
typedef struct PqwHandlerCall
{
	char		queue[NAMEDATALEN];
	char		consumer[NAMEDATALEN];
	int64		batch_id;
	int64		first_id;
	int64		last_id;
} PqwHandlerCall;

/*
 * A wake-up and the queues it names, posted by any backend and taken by the
 * slot's worker. Atomic, so posters hold the shared lock only (which keeps
 * the slot from being reused) and the worker takes it with exchanges:
 * `queues` (a pqw::QueueSet, queue_id % 1024, merged with atomic ORs) and
 * `all` (a wake-up that named no queue: every queue) are set before
 * `pending`. Initialised with the slot (shmem.cpp).
 */
typedef struct PqwWakeSet
{
	pg_atomic_uint32 pending;
	pg_atomic_uint64 queues[pqw::QueueSet::kWords];
	pg_atomic_uint32 all;
} PqwWakeSet;

/* The fields of a ticker's slot. */
typedef struct PqwTickerPart
{
	TimestampTz last_tick_at;	/* last ticker() call that materialized one */
	int64		tick_calls;
	int64		ticks;
	int64		retry_calls;
	int64		retry_moved;
	int64		retry_drain_moved;	/* moved so far by the drain in progress */
	int64		retry_last_drain;	/* moved by the last complete drain */
	int64		maint_runs;
	int64		rotate_runs;
	/* the database has enabled handlers, wants a dispatcher */
	bool		want_dispatcher;
	/* commits that enqueued events (or changed the tick policy) since the
	 * ticker last looked, and the queues they enqueued into */
	PqwWakeSet	wake;
	int64		wakeups;		/* commit wake-ups taken */
	int64		tick_us_sum;	/* time in successful ticker() calls */
	int64		tick_us_max;
} PqwTickerPart;

/* The fields of a dispatcher's slot. */
typedef struct PqwDispatcherPart
{
	/* handler registrations changed, reload them */
	bool		reload_handlers;
	/* woken (a tick, a registration) since it last looked, and the queues
	 * that were ticked: a wait inside its work (a lock, a standby) may have
	 * reset the latch itself */
	PqwWakeSet	wake;
	int64		batches;		/* batches finished */
	int64		messages_ok;	/* messages handled */
	int64		messages_nacked;	/* messages nacked */
	int			max_subxids;	/* most subxact XIDs in one chunk */
	int64		subxid_overflows;	/* chunks that overflowed the cache */

	/*
	 * The handler call in progress (written by the dispatcher alone, before
	 * each call), and whether the hard limit ended the process during it;
	 * read by the next dispatcher of the slot.
	 */
	PqwHandlerCall call;
	bool		call_hung;

	/*
	 * The process ended with an error during the call (FATAL: a handler
	 * that set exit_on_error, or a transaction_timeout), not at the hard
	 * limit; the error, and how many such calls in a row (for the
	 * handler's backoff). Written at exit, read by the next dispatcher.
	 */
	bool		call_fatal;
	int			call_fatal_streak;
	char		call_error[PQW_CALL_ERROR_LEN];
} PqwDispatcherPart;

/*
 * A slot: what every worker has, then the part of its kind. The parts are
 * two members, not a union: a slot's worker may outlive the slot (a
 * previous launcher's worker still leaving when its slot is freed and
 * reused for the other kind), and some writes take no lock (note_call,
 * mark_hung from a signal handler), so neither may land on the other
 * kind's fields, the atomic above among them.
 */
typedef struct PqwSlot
{
	bool		in_use;
	PqwKind		kind;
	Oid			dboid;
	char		dbname[NAMEDATALEN];
	/* stamped by the launcher for each worker it registers: only the worker
	 * started with this number may attach (a restarted launcher's
	 * predecessor may have registered others) */
	uint64		generation;
	/* when the launcher gave the slot out (a count): a database's place in
	 * line for workers (core/worker_cap.hpp), which no role can choose as it
	 * can an OID */
	uint64		seniority;
	pid_t		pid;			/* the attached worker, 0 if none */
	PqwState	state;
	Latch	   *latch;			/* worker's latch while it runs */
	TimestampTz started_at;
	/* last successful ticker() call, or dispatcher chunk */
	TimestampTz last_call_at;
	int64		errors;
	char		last_error[PQW_ERRLEN];
	TimestampTz last_error_at;
	/* no (re)start before this: database-level DDL is running */
	TimestampTz hold_until;
	/* PgQue may have been installed here: probe again (pqw_request_probe) */
	bool		probe_requested;

	PqwTickerPart ticker;
	PqwDispatcherPart dispatcher;
} PqwSlot;

typedef struct PqwShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	bool		rescan_requested;	/* read pg_database now, not at the next interval */
	bool		probe_all_requested;	/* probe every database without PgQue again */
	uint64		last_generation;	/* last slot generation handed out */
	uint64		last_seniority; /* last slot seniority handed out */
	int			nslots;
	PqwSlot		slots[FLEXIBLE_ARRAY_MEMBER];
} PqwShared;

extern PqwShared *pqw_shared;

/* Called from _PG_init: hooks shared memory requests and startup. */
void		pqw_shmem_install_hooks(void);

/* Wakes the launcher and asks it to read pg_database now. */
void		pqw_wake_launcher(void);
/* Asks the launcher to probe again, as soon as core/probe.hpp allows, the
 * database `dboid` (InvalidOid: every database) where the ticker found no
 * PgQue. Takes the lock; never raises. */
void		pqw_request_probe(Oid dboid);
/* The launcher: takes (and clears) the probe requests, one flag per slot
 * into requested[nslots]; true if every database was asked for. */
bool		pqw_take_probe_requests(bool *requested);

/* Text for a state, as shown by pgque_worker.status(). */
const char *pqw_state_name(PqwState state);
const char *pqw_kind_name(PqwKind kind);

/* Slot index of (database, kind), or -1. Caller holds the lock. */
int			pqw_find_slot(Oid dboid, PqwKind kind);

/* Wakes the ticker of a database, if one runs, to call ticker() at once:
 * a commit enqueued into `queues` (NULL: it cannot say, or it changed the
 * tick policy; every queue is ticked). Shared lock and atomics only: this
 * runs at the commit of user transactions. */
void		pqw_notify_ticker(Oid dboid, const pqw::QueueSet *queues);

/* Wakes the dispatcher of a database, if one runs: after a tick of
 * `queues` (NULL: of any queue, or a registration change), to look for
 * batches of the handlers of those queues. */
void		pqw_wake_dispatcher(Oid dboid, bool reload_handlers, const pqw::QueueSet *queues);

/* Worker start: claim `slot` (pid, latch, start time, `state` unless the
 * slot says "no pgque"), copy its database name into dbname[NAMEDATALEN],
 * and arrange for the slot to be released at exit (state "stopped" unless
 * the worker left on purpose: "no pgque", "no handlers"). A worker whose
 * `generation` is not the slot's, or whose slot another live process holds,
 * exits at once (code 0, one LOG line) and leaves the slot alone. */
void		pqw_slot_attach(int slot, uint64 generation, PqwState state, char *dbname);

/*
 * The launcher's verbs: it alone allocates, frees and renames slots, so it
 * may read in_use, kind, dboid and dbname without the lock.
 */

/* What the launcher reads of a slot in use. */
typedef struct PqwSlotInfo
{
	PqwKind		kind;
	Oid			dboid;
	char		dbname[NAMEDATALEN];
	pid_t		pid;			/* the attached worker, 0 if none */
	PqwState	state;
	TimestampTz hold_until;		/* no (re)start before this */
	bool		want_dispatcher;	/* ticker: enabled handlers seen */
	uint64		seniority;
} PqwSlotInfo;

/* Takes a free slot for (database, kind), reset (state "stopped", counters
 * 0); its index, or -1 if every slot is in use. */
int			pqw_slot_alloc(Oid dboid, const char *dbname, PqwKind kind);
/* Frees a slot (reset: a free slot is all zeros). */
void		pqw_slot_free(int slot);
/* The slot's database is now called `dbname` (a rename). */
void		pqw_slot_rename(int slot, const char *dbname);
/* Is the slot allocated? */
bool		pqw_slot_in_use(int slot);
/* Copies the slot into *info (under the shared lock); false, info
 * zeroed, if the slot is free. */
bool		pqw_slot_info(int slot, PqwSlotInfo *info);
/* How many slots are allocated. */
int			pqw_slots_in_use(void);

/* Launcher, before registering a worker for `slot`: a new generation for it
 * (to pass to the worker) and state "starting". */
uint64		pqw_slot_new_generation(int slot);

/* Launcher start: gives every slot a new generation, so workers a previous
 * launcher registered cannot attach, and sends SIGTERM to every worker that
 * holds a slot (it has no handle for them). Returns how many it signalled. */
int			pqw_slots_stop_holders(void);

/* How many slots a worker holds (attached, not yet exited). */
int			pqw_slots_held(void);

/* Dispatcher: the handler call about to start (no lock: only this process
 * writes it, only its successor reads it). */
void		pqw_slot_note_call(int slot, const PqwHandlerCall *call);
/* Dispatcher, from the hard-limit timeout handler: the call hung. */
void		pqw_slot_mark_hung(int slot);
/* Dispatcher start: the call a predecessor was ended in, if any (and
 * forgets it); *fatal: it ended with an error, not at the hard limit (then
 * *streak such calls in a row, and the error in `error`, if it was logged). */
bool		pqw_slot_take_hung_call(int slot, PqwHandlerCall *call, bool *fatal, int *streak,
									char *error, size_t error_size);
/* Dispatcher: the call a predecessor was ended in is settled. */
void		pqw_slot_clear_fatal_streak(int slot);
/* Dispatcher, from its emit_log_hook: the FATAL error ending the process
 * during a handler call. Kept in this process (no lock, no shared memory
 * while an error is reported); the slot takes it at exit, if still ours. */
void		pqw_note_exit_error(const char *message);

/*
 * Set by the dispatcher around each handler call. A process that exits
 * with an error meanwhile, unless a SIGTERM asked it to end, was ended by
 * the handler: its slot records the call, so that the next dispatcher
 * narrows it down (as after the hard limit) instead of dying in it again.
 */
extern volatile sig_atomic_t pqw_handler_call_active;
/* A SIGTERM asked this worker to end (its SIGTERM handler sets it). */
extern volatile sig_atomic_t pqw_termination_requested;

/*
 * The verbs every other file uses on slots; only shmem.cpp reads or writes
 * slot fields.
 */

/* Ticker: one successful call of `job` (0 tick, 1 retry, 2 maint, 3
 * rotate) returned `value` and took `call_us`; drain_done ends a retry
 * drain. */
typedef enum PqwJob
{
	PQW_JOB_TICK = 0,
	PQW_JOB_RETRY,
	PQW_JOB_MAINT,
	PQW_JOB_ROTATE,
	PQW_NUM_JOBS
} PqwJob;
void		pqw_ticker_counted(int slot, PqwJob job, int64 value, bool drain_done, int64 call_us);
/* Ticker: did a commit enqueue since it last looked? Takes the wake-up and
 * what the commits named: the queues (merged into *queues), or *all. */
bool		pqw_ticker_take_wakeup(int slot, pqw::QueueSet *queues, bool *all);
/* Ticker, before it sleeps: is a wake-up waiting (its latch may have been
 * reset by a wait inside a call)? */
bool		pqw_ticker_wakeup_pending(int slot);
/* Ticker: whether its database has enabled handlers (a change wakes the
 * launcher). */
void		pqw_ticker_set_want_dispatcher(int slot, bool want);

/* Dispatcher: what one committed chunk did. */
void		pqw_dispatcher_counted(int slot, int batches_finished, int64 ok, int64 nacked,
								   int subxids, bool overflowed);
/* Dispatcher: were handler registrations changed since it last looked? */
bool		pqw_dispatcher_take_reload(int slot);
/* Dispatcher: takes the wake-up at the start of a pass, with the queues
 * ticked since (merged into *queues) or *all; and, before it sleeps,
 * whether one came since. */
bool		pqw_dispatcher_take_wake(int slot, pqw::QueueSet *queues, bool *all);
bool		pqw_dispatcher_wake_pending(int slot);
/* Dispatcher: no enabled handler left; it leaves (state "no handlers") and
 * the launcher starts none until registrations change. */
void		pqw_dispatcher_leave(int slot);

/* Any backend, at the commit of a registration change in `dboid`. */
void		pqw_handlers_changed(Oid dboid);
/* Any backend: SIGTERM every worker of `dboid` (holding off its restart
 * until `hold_until`, if not 0); returns how many were running. */
int			pqw_signal_workers(Oid dboid, TimestampTz hold_until);

/* A slot in use as pgque_worker.status() shows it. */
typedef struct PqwSlotStatus
{
	PqwKind		kind;
	char		dbname[NAMEDATALEN];
	pid_t		pid;
	PqwState	state;
	TimestampTz started_at;
	TimestampTz last_call_at;
	int64		errors;
	char		last_error[PQW_ERRLEN];
	TimestampTz last_error_at;
	/* ticker: 0 in a dispatcher's row */
	TimestampTz last_tick_at;
	int64		tick_calls;
	int64		ticks;
	int64		retry_calls;
	int64		retry_moved;
	int64		retry_last_drain;
	int64		maint_runs;
	int64		rotate_runs;
	int64		wakeups;
	int64		tick_us_sum;
	int64		tick_us_max;
	/* dispatcher: 0 in a ticker's row */
	int64		batches;
	int64		messages_ok;
	int64		messages_nacked;
	int			max_subxids;
	int64		subxid_overflows;
} PqwSlotStatus;

/* status(): a palloc'd copy of every slot in use, taken under the shared
 * lock; *n is how many. */
PqwSlotStatus *pqw_slots_status(int *n);

/* Reads of a slot. */
PqwState	pqw_slot_state(int slot);
int64		pqw_slot_tick_calls(int slot);

/* Worker-side helpers: update own slot under the lock. */
void		pqw_slot_set_state(int slot, PqwState state);
void		pqw_slot_set_error(int slot, const char *message);
