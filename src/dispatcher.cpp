/*
 * dispatcher.cpp: runs registered SQL handlers on PgQue batches.
 *
 * One per database with enabled rows in pgque_worker.handler, started by the
 * launcher, woken by the ticker when it made a tick, and at the commit of a
 * tick anyone else made (wakeup.cpp); an idle dispatcher sleeps on its latch
 * (pgque_worker.dispatch_poll_interval adds a poll). Handlers are served
 * round robin, a chunk at a time. For one handler (queue, consumer):
 *
 *   txn 1   next_batch(queue, consumer); open a holdable cursor over the
 *           batch's events after the recorded progress, ordered by event id
 *           (PgQue's own event query, see open_events); fetch
 *           chunk_messages and read one event ahead (kept for the next
 *           chunk); run the chunk; nack the
 *           failures; record progress (or ack if the batch ends with this
 *           chunk) and stats; commit
 *   txn 2.. fetch the next chunk from the cursor, same as above
 *
 * A chunk that acked its batch with room left goes on in the same
 * transaction to the consumer's next batches (each acked, or its progress
 * recorded, like the first), up to chunk_messages messages: small batches
 * share one commit.
 *
 * So a chunk's effects, its nacks, its progress and the final ack commit
 * together: in-database effects happen exactly once, even after a crash
 * (the reopened batch resumes after the recorded event). The cursor is
 * materialized by PostgreSQL (work_mem, then a temporary file), so memory
 * is bounded by the chunk, not the batch.
 *
 * A chunk runs as the registering role in ONE subtransaction (a message
 * handler called per message, a batch handler once); only if that fails is
 * it rolled back and bisected to find the failing messages (per message
 * after a timeout), which are nacked with the handler's retry_after and the
 * error text. The happy path never opens a subtransaction per message.
 *
 * Whose rights (see README, Security model): the chunk transaction runs as
 * the owner of schema pgque, security-restricted, commit included (PgQue's
 * next_batch, the cursor, nack and ack are that owner's code); the handler
 * runs as its registering role, security-restricted, and every setting it
 * changes is undone when it returns; our own bookkeeping runs as the
 * worker's role. The batch cursor has an unguessable name and is hidden
 * from pg_cursors; a handler that still moves or closes it is caught and
 * its chunk rolled back. A handler that ignores cancellation is stopped
 * at 2 x handler_timeout by ending this process; the next dispatcher nacks
 * the message it hung on without calling the handler again.
 */
#include "dispatcher.h"

#include "guc.h"
#include "launcher.h"
#include "worker.h"
#include "shmem.h"
#include "spi_txn.h"
#include "trust.h"

extern "C" {
#include "common/pg_prng.h"
#include "utils/fmgrprotos.h"
#include "storage/lock.h"
#include "utils/datum.h"
#include "utils/portal.h"
}

#include "core/backoff.hpp"
#include "core/commit_retry.hpp"
#include "core/hung_call.hpp"
#include "core/isolation_budget.hpp"
#include "core/clock.hpp"
#include "core/log_limiter.hpp"

typedef struct Handler
{
	char	   *queue;
	char	   *consumer;
	Oid			func;
	bool		is_batch;
	Interval	retry_after;
	Oid			run_as;
	char	   *search_path;	/* what run_as's sessions here get (load) */
	bool		nacked_last;	/* its last committed chunk nacked some: no merged ticks */
	char		portal[NAMEDATALEN];	/* random per batch: unguessable */
	bool		cursor_open;	/* holdable cursor over the batch in flight */
	bool		needs_close;	/* a failed transaction left it mispositioned */
	/* the cursor as we left it: a handler that moved it is caught */
	Portal		portal_ptr;
	TimestampTz portal_created;
	uint64		portal_pos;
	int64		batch_id;
	/*
	 * The batch's next message, read past the end of the last chunk so that
	 * the chunk knew the batch goes on (NULL: none). A copy in handlers_cxt:
	 * it outlives the chunk's transaction. It belongs to the open cursor and
	 * goes with it (drop_ahead).
	 */
	Datum		ahead;
	int64		ahead_id;
	pqw::Millis next_try;
	int			failures;
	pqw::LogLimiter limiter;
	char		paused_reason[128];	/* role may not log in / connect: skipped */
	/* events a predecessor was stopped in (hard limit); by event id, not
	 * batch id: the stopped transaction's next_batch() was rolled back, so
	 * the same events come back in a batch of another id */
	pqw::HungRange hung;
	/* chunks failing at COMMIT: retried, then narrowed, then nacked */
	pqw::CommitRetry commit;
	/* smaller chunks after one ran out of time narrowing down failures */
	pqw::IsolationBudget budget;
	/*
	 * Whether the handler may have a batch: set by a wake-up that names its
	 * queue (or every queue), by a reload, and while it has work or fails;
	 * cleared when next_batch() finds nothing. A tick of one queue then
	 * costs the handlers of other queues nothing. `residue` is its queue's
	 * id % 1024 as the last next_batch() found it (-1: not known yet, any
	 * wake-up counts).
	 */
	bool		ready;
	int32		residue;
	/*
	 * The batch whose progress pgque_worker_internal.handler_stat records (0: none),
	 * as this process's last committed chunk left it; unknown after a
	 * (re)load or a failed chunk. A batch that is not it starts at its
	 * beginning without reading the table.
	 */
	bool		progress_known;
	int64		progress_batch;
} Handler;

/* One batch's share of a chunk transaction (see chunk_fn). */
typedef struct ChunkPart
{
	bool		no_batch;		/* next_batch() found none */
	int64		n;				/* messages */
	int64		nok;
	int64		nfail;
	bool		finished;		/* batch acked */
	int64		first_id;		/* its events */
	int64		last_id;
	char	   *first_error;	/* the first nacked message's reason, or NULL */
	bool		touched_hung;	/* held events of the call a predecessor hung in */
	bool		cut;			/* ended early: narrowing down failures ran out of time */
	bool		timed_out;		/* a handler call timed out */
	/* when each step ended (log_chunk_steps) */
	TimestampTz t_start;
	TimestampTz t_batch;		/* next_batch (a later chunk: the open check) */
	TimestampTz t_progress;		/* the recorded progress read, if it was */
	TimestampTz t_cursor;		/* cursor opened */
	TimestampTz t_fetch;		/* events fetched, one read ahead */
	TimestampTz t_handler;
	TimestampTz t_finish;		/* nacks and ack */
	TimestampTz t_stats;		/* on the last part: stats and progress written */
} ChunkPart;

/* Batches one chunk transaction takes at most; and it takes no further one
 * once its subtransaction XIDs fill half of PostgreSQL's per-backend cache
 * (64: each part's handler call is a subtransaction). */
#define MAX_PARTS 32

/* What one chunk transaction did. */
typedef struct ChunkResult
{
	Handler    *h;
	bool		no_batch;		/* no batch was ready */
	bool		drained;		/* after some, no further batch was ready */
	int64		n;				/* messages in the chunk, all parts */
	int64		nok;
	int64		nfail;
	int			batches;		/* batches acked */
	bool		finished;		/* the last part acked its batch */
	const char *paused;			/* the handler's role may not run it now */
	bool		hung_done;		/* the chunk a predecessor hung in is done */
	bool		at_commit;		/* chunk_fn returned: a failure now is COMMIT's */
	bool		cut;			/* its last part ended early (ChunkPart.cut) */
	bool		timed_out;		/* a handler call in it timed out */
	int64		first_id;		/* the first part's events */
	int64		last_id;
	double		handler_secs;
	int			max_subxids;	/* subtransaction XIDs at commit */
	bool		overflowed;
	int			nparts;
	ChunkPart	parts[MAX_PARTS];
} ChunkResult;

/* One failed message of a chunk. */
typedef struct Failure
{
	int			index;
	char	   *reason;
} Failure;

/* State of running one chunk through the handler. */
typedef struct ChunkRun
{
	Handler    *h;
	Datum	   *msgs;
	int			n;
	FmgrInfo	flinfo;
	Oid			msg_type;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int64	   *ids;			/* event ids of msgs */
	bool	   *skip;			/* not to be handed to the handler again */
	Failure    *fails;
	int			nfail;
	bool		timed_out;
	/* narrowing down failures (isolate): its start, the messages settled
	 * so far (a prefix: ranges are tried in order), and whether its budget
	 * ran out before all were (core/isolation_budget.hpp) */
	pqw::Millis iso_start;
	int			settled;
	bool		cut;
	MemoryContext call_cxt;
	PqwHandlerCall call;		/* what the hard limit would name */
} ChunkRun;

static PqwWorker me;
#define my_slot (me.slot)
#define my_dbname (me.dbname)
static Handler *handlers = NULL;
static int	nhandlers = 0;
static MemoryContext handlers_cxt = NULL;
static MemoryContext loading_cxt = NULL;	/* the set a load is building */
static Oid	msg_typoid = InvalidOid;
static Oid	msg_array_typoid = InvalidOid;
static Oid	reader_roleoid = InvalidOid;
static bool pgque_untrusted = false;	/* as the last load found */
static TimeoutId hard_limit_timeout;


/* The batch cursor: messages built from a batch's events ($1 the batch, $2
 * the recorded progress), read from `src`. */
#define BATCH_MESSAGES_FROM(src) \
	"select (e.ev_id, $1::int8, e.ev_type, e.ev_data, e.ev_retry, e.ev_time," \
	" e.ev_extra1, e.ev_extra2, e.ev_extra3, e.ev_extra4)::pgque.message, e.ev_id" \
	" from " src " e where e.ev_id > $2 order by e.ev_id"

/* Through PgQue's set-returning function: a PL/pgSQL loop that runs the
 * query of batch_event_sql() and returns its rows one at a time. */
static PqwStatement batch_cursor_sql = PQW_STATEMENT(BATCH_MESSAGES_FROM("pgque.get_batch_events($1)"));

/* The same query read directly: PgQue's own text, as get_batch_events()
 * would run it, under the same identity (see open_events). */
static PqwStatement batch_event_sql_sql = PQW_STATEMENT("select pgque.batch_event_sql($1)");

/* false once PgQue's query text could not be read directly in this
 * process: get_batch_events() it is, until the next load. */
static bool events_direct = true;

/*
 * The consumer's open batch, or the next one, and its queue's id, for the
 * wake-ups that name the queues ticked (see Handler.residue).
 *
 * A consumer that is behind by several ticks takes them as one batch, as
 * PgQ's own consumers can: next_batch_custom() with a minimum count of
 * events ends the batch at the last tick when it has at most twice that
 * many events since the consumer's last tick, else at the first tick that
 * reaches the count. The count asked is what the last tick holds (every
 * tick there is), capped at $3 (half a chunk, at most MERGE_MAX_EVENTS):
 * a batch then ends inside one chunk unless a single tick is bigger, and
 * each tick's next_batch, query text, plan and ack are paid once for all
 * of them. A consumer that is not behind gets the next tick, as from
 * next_batch(). Without a count (no tick read, a batch already open, the
 * sequence behind, $3 = 0) it is next_batch(); if the count finds nothing
 * although the last tick has events (another session moved the consumer
 * in between), so is the retry.
 *
 * $3 is 0 (one tick a batch) while the handler fails, nacked messages in
 * its last chunk or is being narrowed down (see may_take_more): PgQue's nack() reads the whole batch for each
 * message it nacks, so a failing handler's merged batches made nacking
 * cost events x batch size, and a chunk of 8,000 failing events timed
 * out and was retried the same way forever (found by a review); and a
 * restarted dispatcher narrowing down a stopped call gets the same
 * single-tick batches the call was in.
 */
#define MERGE_MAX_EVENTS 500
static PqwStatement next_batch_sql = PQW_STATEMENT(
	"select coalesce("
	"   (select b.batch_id from pgque.next_batch_custom($1, $2, null, m.n, null) b),"
	"   case when m.n operator(pg_catalog.>) 0 then"
	"     (select b.batch_id from pgque.next_batch_custom($1, $2, null, null, null) b) end),"
	" (select q.queue_id::int8 from pgque.queue q where q.queue_name operator(pg_catalog.=) $1)"
	" from (select (select case when d.n operator(pg_catalog.>=) 0 and $3 operator(pg_catalog.>) 0"
	"                 then least(d.n, $3)::int4 end"
	"          from (select lt.tick_event_seq operator(pg_catalog.-) pt.tick_event_seq as n"
	"                  from pgque.queue q, pgque.consumer c, pgque.subscription s, pgque.tick pt,"
	"                       lateral (select t.tick_event_seq from pgque.tick t"
	"                                 where t.tick_queue operator(pg_catalog.=) q.queue_id"
	"                                 order by t.tick_queue desc, t.tick_id desc limit 1) lt"
	"                 where q.queue_name operator(pg_catalog.=) $1 and c.co_name operator(pg_catalog.=) $2"
	"                   and s.sub_queue operator(pg_catalog.=) q.queue_id"
	"                   and s.sub_consumer operator(pg_catalog.=) c.co_id and s.sub_batch is null"
	"                   and pt.tick_queue operator(pg_catalog.=) q.queue_id"
	"                   and pt.tick_id operator(pg_catalog.=) s.sub_last_tick) d) as n) m");
/* The consumer's open batch, without opening one (no row: the consumer
 * or the queue is gone). */
static PqwStatement still_open_sql = PQW_STATEMENT(
	"select s.sub_batch from pgque.subscription s, pgque.queue q, pgque.consumer c"
	" where q.queue_name operator(pg_catalog.=) $1 and c.co_name operator(pg_catalog.=) $2"
	" and s.sub_queue operator(pg_catalog.=) q.queue_id"
	" and s.sub_consumer operator(pg_catalog.=) c.co_id");
static PqwStatement ack_sql = PQW_STATEMENT("select pgque.ack($1)");
static PqwStatement progress_sql = PQW_STATEMENT(
	"select batch_id, batch_last_msg_id from pgque_worker_internal.handler_stat"
	" where queue_name = $1 and consumer_name = $2");
static PqwStatement paused_sql = PQW_STATEMENT(
	"insert into pgque_worker_internal.handler_stat as s (queue_name, consumer_name, paused_reason)"
	" values ($1, $2, $3) on conflict (queue_name, consumer_name) do update set"
	" paused_reason = excluded.paused_reason");

static PqwStatement stat_sql = PQW_STATEMENT(
	"insert into pgque_worker_internal.handler_stat as s (queue_name, consumer_name, batches, chunks,"
	" messages_ok, messages_nacked, handler_seconds, last_batch_at, batch_id,"
	" batch_last_msg_id, batch_messages_done, last_error, last_error_at)"
	" values ($1, $2, $3, 1, $4, $5, $6, case when $3 > 0 then pg_catalog.now() end, $7, $8, $9,"
	" $10, case when $10 is not null then pg_catalog.now() end)"
	" on conflict (queue_name, consumer_name) do update set"
	" batches = s.batches + excluded.batches, chunks = s.chunks + 1,"
	" messages_ok = s.messages_ok + excluded.messages_ok,"
	" messages_nacked = s.messages_nacked + excluded.messages_nacked,"
	" handler_seconds = s.handler_seconds + excluded.handler_seconds,"
	" last_batch_at = coalesce(excluded.last_batch_at, s.last_batch_at),"
	" batch_id = excluded.batch_id, batch_last_msg_id = excluded.batch_last_msg_id,"
	" batch_messages_done = case when excluded.batch_id is null then null"
	"   when s.batch_id = excluded.batch_id then coalesce(s.batch_messages_done, 0) + excluded.batch_messages_done"
	"   else excluded.batch_messages_done end,"
	" last_error = coalesce(excluded.last_error, s.last_error),"
	" last_error_at = coalesce(excluded.last_error_at, s.last_error_at), paused_reason = null");

static PqwStatement stat_error_sql = PQW_STATEMENT(
	"insert into pgque_worker_internal.handler_stat as s (queue_name, consumer_name, errors, last_error, last_error_at)"
	" values ($1, $2, 1, $3, pg_catalog.now())"
	" on conflict (queue_name, consumer_name) do update set"
	" errors = s.errors + 1, last_error = excluded.last_error, last_error_at = pg_catalog.now()");

/* ---------------------------------------------------------------------
 * Loading the registrations
 * --------------------------------------------------------------------- */

static void
close_cursor_if_open(const char *name)
{
	Portal		p = SPI_cursor_find(name);

	if (p != NULL)
		SPI_cursor_close(p);
}

/*
 * Whether a registration read again is the handler this process runs: the
 * same queue, consumer, function, kind and role, and the same message type.
 * Its state then carries over a reload: the open batch cursor and the
 * message read ahead, the known progress, backoff, pauses and what commit
 * failures and stopped calls got to. A reload is what any pgque_reader
 * member can ask for (pgque_worker._handlers_changed()), so it must cost a
 * handler in the middle of a batch nothing: reopening its cursor re-runs
 * PgQue's query for the rest of the batch.
 */
static bool
same_registration(const Handler *h, const char *queue, const char *consumer, Oid func,
				  bool is_batch, Oid run_as)
{
	return strcmp(h->queue, queue) == 0 && strcmp(h->consumer, consumer) == 0 &&
		h->func == func && h->is_batch == is_batch && h->run_as == run_as;
}

static void
load_handlers_fn(void *arg)
{
	Oid			nsp = get_namespace_oid("pgque", true);
	Oid			new_msg_typoid;
	Oid			new_msg_array_typoid;
	Oid			new_reader_roleoid;
	bool		new_untrusted;
	MemoryContext old;
	MemoryContext cxt;
	Handler    *fresh;
	int			nfresh = 0;
	/* what became of each handler of the last load: 0 gone, 1 carried
	 * over (its cursor too), 2 replaced (only its commit retries kept) */
	char	   *fate = (char *) palloc0(nhandlers > 0 ? nhandlers : 1);
	bool		look_all = *(bool *) arg;
	uint64		nrows = 0;
	Oid			registry;
	const char *locked;
	int			hint = 0;		/* where the last load's handlers are searched from */

	/* Before anything is changed: a failed read keeps it all as it was. */
	locked = pqw_lock_registry(&registry);
	if (locked != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("another session holds a lock on %s", locked),
				 errdetail("The handlers are kept as they were and read again soon.")));
	/* What this load finds, kept apart until nothing can fail (a handler
	 * carried over must keep the type its cursor and read-ahead have). */
	new_msg_typoid = OidIsValid(nsp) ?
		GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid, CStringGetDatum("message"),
						ObjectIdGetDatum(nsp)) : InvalidOid;
	new_msg_array_typoid = OidIsValid(new_msg_typoid) ? get_array_type(new_msg_typoid) : InvalidOid;
	new_reader_roleoid = get_role_oid("pgque_reader", true);
	new_untrusted = pqw_pgque_trust() == PQW_TRUST_REFUSED;

	/* Registrations count only in a table our extension made. */
	if (OidIsValid(registry) && OidIsValid(new_msg_typoid))
	{
		/*
		 * A handler runs with the search_path its role's sessions get in
		 * this database (ALTER ROLE ... IN DATABASE, ALTER ROLE, ALTER
		 * DATABASE, ALTER ROLE ALL, in PostgreSQL's order), else
		 * PostgreSQL's default, whatever the worker's own is. A role that
		 * hardened its search_path against schemas others can create in (a
		 * database owner's schema named after it) keeps that here.
		 */
		if (SPI_execute("select h.queue_name, h.consumer_name, h.handler::oid, h.is_batch,"
						" h.retry_after, h.run_as::oid,"
						" coalesce((select pg_catalog.substr(c, 13)"
						"  from pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) c"
						"  where c operator(pg_catalog.~~) 'search_path=%'"
						"  and s.setrole operator(pg_catalog.=) any (array[h.run_as::oid, 0::oid])"
						"  and s.setdatabase operator(pg_catalog.=) any (array[d.oid, 0::oid])"
						"  order by s.setrole operator(pg_catalog.=) 0::oid, s.setdatabase operator(pg_catalog.=) 0::oid"
						"  limit 1), '\"$user\", public')"
						" from pgque_worker_internal.handler h,"
						" pg_catalog.pg_database d where d.datname operator(pg_catalog.=) pg_catalog.current_database()"
						" and h.enabled and " PQW_HOME_IS("d.oid")
						" order by h.queue_name, h.consumer_name",
						true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read pgque_worker_internal.handler");
		nrows = SPI_processed;
	}

	/* The new set in a context of its own: the old one holds what carries
	 * over until it is copied. */
	cxt = AllocSetContextCreate(TopMemoryContext, "pgque_worker handlers", ALLOCSET_DEFAULT_SIZES);
	loading_cxt = cxt;
	old = MemoryContextSwitchTo(cxt);
	fresh = (Handler *) palloc0(sizeof(Handler) * (nrows > 0 ? nrows : 1));
	for (uint64 i = 0; i < nrows; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Handler    *h = &fresh[nfresh++];
		char	   *queue = SPI_getvalue(tup, desc, 1);
		char	   *consumer = SPI_getvalue(tup, desc, 2);
		bool		isnull;
		Oid			func = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
		bool		is_batch = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		Interval	retry_after = *DatumGetIntervalP(SPI_getbinval(tup, desc, 5, &isnull));
		Oid			run_as = DatumGetObjectId(SPI_getbinval(tup, desc, 6, &isnull));
		char	   *search_path = SPI_getvalue(tup, desc, 7);
		int			k = nhandlers;

		/* the last load read the rows in the same order: its next handler
		 * is the one, as a rule (any role may register many) */
		CHECK_FOR_INTERRUPTS();
		for (int step = 0; step < nhandlers; step++)
		{
			int			j = (hint + step) % nhandlers;

			if (fate[j] == 0 && strcmp(handlers[j].queue, queue) == 0 &&
				strcmp(handlers[j].consumer, consumer) == 0)
			{
				k = j;
				hint = j + 1;
				break;
			}
		}
		if (k < nhandlers && new_msg_typoid == msg_typoid &&
			same_registration(&handlers[k], queue, consumer, func, is_batch, run_as))
		{
			*h = handlers[k];
			fate[k] = 1;
			if (h->ahead != (Datum) 0)
				h->ahead = datumCopy(h->ahead, false, -1);
			/* the periodic reload: every handler looks once, whatever
			 * wake-ups it had */
			if (look_all)
				h->ready = true;
		}
		else
		{
			h->func = func;
			h->is_batch = is_batch;
			h->run_as = run_as;
			h->limiter = pqw::LogLimiter(pqw_log_quiet_interval_ms);
			h->ready = true;
			h->residue = -1;
			h->hung = pqw::HungRange();
			h->commit = pqw::CommitRetry();
			h->budget = pqw::IsolationBudget();
			/* what its chunks failing at COMMIT got to survives (narrowing
			 * a large chunk can outlast the minute between reloads) */
			if (k < nhandlers)
			{
				h->commit = handlers[k].commit;
				fate[k] = 2;
			}
		}
		h->queue = queue;
		h->consumer = consumer;
		h->retry_after = retry_after;
		h->search_path = search_path;
	}
	MemoryContextSwitchTo(old);

	/* Nothing below fails: the old set goes, with the cursors not carried. */
	for (int k = 0; k < nhandlers; k++)
		if (fate[k] != 1 && (handlers[k].cursor_open || handlers[k].needs_close))
			close_cursor_if_open(handlers[k].portal);
	MemoryContextDelete(handlers_cxt);
	handlers_cxt = cxt;
	loading_cxt = NULL;
	handlers = fresh;
	nhandlers = nfresh;
	msg_typoid = new_msg_typoid;
	msg_array_typoid = new_msg_array_typoid;
	reader_roleoid = new_reader_roleoid;
	pgque_untrusted = new_untrusted;
	events_direct = true;
}

static pqw::LogLimiter load_limiter;

/* Reads the registrations again; `look_all`: every handler, carried over
 * or not, looks for a batch once. False if that failed: the handlers are
 * kept as they were. */
static bool
load_handlers(bool look_all)
{
	PqwCallResult r;

	if (pqw_in_transaction("pgque_worker: loading handlers", PQW_AS_WORKER, load_handlers_fn, &look_all,
						   pqw_statement_timeout_ms, NULL, &r))
	{
		if (load_limiter.on_success())
			ereport(LOG,
					(errmsg("pgque_worker: handlers of database \"%s\" read again", my_dbname)));
		return true;
	}
	load_limiter.set_quiet_ms(pqw_log_quiet_interval_ms);
	if (load_limiter.on_error(pqw::fingerprint(r.message), pqw::monotonic_ms()) !=
		pqw::LogDecision::kSuppress)
		ereport(WARNING,
				(errcode(r.sqlerrcode),
				 errmsg("pgque_worker: could not load handlers in database \"%s\": %s",
						my_dbname, r.message),
				 r.detail[0] != '\0' ? errdetail("%s", r.detail) : 0));
	pqw_slot_set_error(my_slot, r.message);
	/* The set being built goes; the old one is kept as it was, with its
	 * open batch cursors (forgetting them would leave them open for good:
	 * an administrator's lock on the registry table makes a load fail). It
	 * is read again a second later (load_registrations). */
	if (loading_cxt != NULL)
		MemoryContextDelete(loading_cxt);
	loading_cxt = NULL;
	return false;
}

/* ---------------------------------------------------------------------
 * Running a chunk through a handler
 * --------------------------------------------------------------------- */

/* Refuses (ERROR) to run a handler its role may not run any more. */
static void
check_handler_usable(Handler *h)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	Oid			want = h->is_batch ? msg_array_typoid : msg_typoid;
	bool		ok;
	Oid			owner;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(h->func));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("handler function %u of queue \"%s\", consumer \"%s\" no longer exists",
						h->func, h->queue, h->consumer),
				 errhint("Register the handler again with pgque_worker.register_handler().")));
	proc = (Form_pg_proc) GETSTRUCT(tup);
	ok = proc->pronargs == 1 && proc->proargtypes.values[0] == want &&
		proc->prokind == PROKIND_FUNCTION && !proc->proretset;
	owner = proc->proowner;
	ReleaseSysCache(tup);
	/* Whoever owns the function can replace it: it runs as run_as only if
	 * its owner has run_as's rights anyway (or is a superuser). */
	if (owner != h->run_as && !superuser_arg(owner) && !has_privs_of_role(owner, h->run_as))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("handler of queue \"%s\", consumer \"%s\" belongs to role \"%s\", who could replace it and run code as role \"%s\"",
						h->queue, h->consumer,
						GetUserNameFromId(owner, true) ? GetUserNameFromId(owner, true) : "?",
						GetUserNameFromId(h->run_as, true) ? GetUserNameFromId(h->run_as, true) : "?"),
				 errhint("A handler's function must belong to the role it runs as, to a role with that role's rights, or to a superuser.")));
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("handler of queue \"%s\", consumer \"%s\" must take one argument of type %s",
						h->queue, h->consumer, h->is_batch ? "pgque.message[]" : "pgque.message")));
	if (pqw_object_aclcheck(ProcedureRelationId, h->func, h->run_as, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not execute the handler of queue \"%s\", consumer \"%s\"",
						GetUserNameFromId(h->run_as, true) ? GetUserNameFromId(h->run_as, true) : "?",
						h->queue, h->consumer)));
	if (!OidIsValid(reader_roleoid) || !has_privs_of_role(h->run_as, reader_roleoid))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" is no longer a member of pgque_reader; handler of queue \"%s\", consumer \"%s\" skipped",
						GetUserNameFromId(h->run_as, true) ? GetUserNameFromId(h->run_as, true) : "?",
						h->queue, h->consumer)));
}

/*
 * Why the handler's role may not run it now, or NULL. The rule: a handler
 * runs only as a role that could run it in a session of its own here, i.e.
 * one that exists, may log in and has CONNECT on this database. Otherwise
 * the handler is paused (the reason shows in handler_stats) and resumes by
 * itself once that is so again.
 */
static const char *
role_unusable(Handler *h)
{
	HeapTuple	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(h->run_as));
	bool		can_login;

	if (!HeapTupleIsValid(tup))
		return "its role no longer exists";
	can_login = ((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin;
	ReleaseSysCache(tup);
	if (!can_login)
		return "its role may not log in (NOLOGIN)";
	if (pqw_object_aclcheck(DatabaseRelationId, MyDatabaseId, h->run_as, ACL_CONNECT) != ACLCHECK_OK)
		return "its role has no CONNECT privilege on this database";
	return NULL;
}

/* What the hard limit would report if the next handler call hung. */
static void
note_call(ChunkRun *run, int lo, int hi)
{
	run->call.first_id = run->ids[lo];
	run->call.last_id = run->ids[hi - 1];
	pqw_slot_note_call(my_slot, &run->call);
}

/*
 * Calls the handler on msgs[lo, hi) (less the skipped ones) as its role,
 * security-restricted, search_path pinned; undoes every setting it made
 * and drops any session-level advisory lock it took before returning.
 */
static void
call_handler(ChunkRun *run, int lo, int hi)
{
	Handler    *h = run->h;
	PqwAs		as;
	LOCAL_FCINFO(fcinfo, 1);

	pqw_begin_as(h->run_as, h->search_path, &as);
	if (h->is_batch)
	{
		Datum	   *elems = (Datum *) palloc(sizeof(Datum) * (hi - lo));
		int			n = 0;

		for (int i = lo; i < hi; i++)
			if (!run->skip[i])
				elems[n++] = run->msgs[i];
		if (n > 0)
		{
			ArrayType  *arr = construct_array(elems, n, run->msg_type,
											  run->typlen, run->typbyval, run->typalign);

			note_call(run, lo, hi);
			InitFunctionCallInfoData(*fcinfo, &run->flinfo, 1, InvalidOid, NULL, NULL);
			fcinfo->args[0].value = PointerGetDatum(arr);
			fcinfo->args[0].isnull = false;
			(void) FunctionCallInvoke(fcinfo);
		}
	}
	else
	{
		for (int i = lo; i < hi; i++)
		{
			MemoryContext old;

			if (run->skip[i])
				continue;
			note_call(run, i, i + 1);
			old = MemoryContextSwitchTo(run->call_cxt);
			InitFunctionCallInfoData(*fcinfo, &run->flinfo, 1, InvalidOid, NULL, NULL);
			fcinfo->args[0].value = run->msgs[i];
			fcinfo->args[0].isnull = false;
			(void) FunctionCallInvoke(fcinfo);
			MemoryContextSwitchTo(old);
			MemoryContextReset(run->call_cxt);
		}
	}
	pqw_end_as(&as);
	/* The dispatcher takes none: any held now is the handler's. */
	LockReleaseSession(USER_LOCKMETHOD);
}

/* The hard limit: the handler ignored its timeout's cancel. Ends the
 * process (FATAL at the next interrupt check cannot be caught by the
 * handler); the next dispatcher reads which call it was. */
static void
hard_limit_reached(void)
{
	if (my_slot >= 0)
		pqw_slot_mark_hung(my_slot);
	InterruptPending = true;
	ProcDiePending = true;
	SetLatch(MyLatch);
}

typedef struct RangeCall
{
	ChunkRun   *run;
	int			lo;
	int			hi;
} RangeCall;

/*
 * A handler may leave nothing in this process's temporary schema (a
 * function, a domain, a type: the temporary tables PostgreSQL refuses
 * itself in a security-restricted operation). PgQue's functions run here
 * as their owner, and PostgreSQL looks type names up in the temporary
 * schema before the search_path they set (`pgque, pg_catalog`): a domain
 * `pg_temp.int4` whose CHECK a later nack() ran as PgQue's owner made a
 * tenant superuser (found by a review). The call fails, and its
 * subtransaction's rollback takes the schema and its objects with it.
 */
static void
refuse_temp_objects(void)
{
	Oid			temp_ns;
	Oid			temp_toast_ns;

	GetTempNamespaceState(&temp_ns, &temp_toast_ns);
	if (OidIsValid(temp_ns))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("a handler may not create temporary objects"),
				 errdetail("The dispatcher runs PgQue as its owner in the same process, and PostgreSQL looks up type names in the temporary schema first."),
				 errhint("Create them in a schema of the handler's role.")));
}

static void
range_fn(void *arg)
{
	RangeCall  *c = (RangeCall *) arg;

	enable_timeout_after(STATEMENT_TIMEOUT, pqw_handler_timeout_ms);
	enable_timeout_after(hard_limit_timeout, 2 * pqw_handler_timeout_ms);
	pqw_handler_call_active = true;
	pqw_handler_call_role = c->run->h->run_as;
	call_handler(c->run, c->lo, c->hi);
	refuse_temp_objects();
	/* disarmed first: the hard limit firing after the flag went down
	 * would end the process as if outside a call */
	disable_timeout(hard_limit_timeout, false);
	disable_timeout(STATEMENT_TIMEOUT, false);
	pqw_handler_call_active = false;
	pqw_handler_call_role = InvalidOid;
}

static void
range_disarm(void *arg)
{
	(void) arg;
	disable_timeout(hard_limit_timeout, false);
	disable_timeout(STATEMENT_TIMEOUT, false);
	pqw_handler_call_active = false;
	pqw_handler_call_role = InvalidOid;
}

/*
 * Runs msgs[lo, hi) in one subtransaction under handler_timeout. On error
 * rolls the subtransaction back and returns false with the error text.
 */
static bool
try_range(ChunkRun *run, int lo, int hi, char **reason)
{
	RangeCall	c = {run, lo, hi};
	PqwCallResult r;

	if (pqw_in_subtransaction(range_fn, &c, range_disarm, &r))
		return true;
	/* Session-level advisory locks belong to no subtransaction: the
	 * handler's go with its failed call, as with one that returns. */
	LockReleaseSession(USER_LOCKMETHOD);
	if (r.sqlerrcode == ERRCODE_QUERY_CANCELED)
		run->timed_out = true;
	*reason = pstrdup(r.message);
	return false;
}

static void
add_failure(ChunkRun *run, int index, char *reason)
{
	if (run->skip[index])
		return;					/* already failed */
	run->skip[index] = true;
	run->fails[run->nfail].index = index;
	run->fails[run->nfail].reason = reason;
	run->nfail++;
}

/* Whether narrowing down may call the handler again; if not, the chunk
 * ends after the messages settled so far. */
static bool
may_call_again(ChunkRun *run)
{
	if (run->cut)
		return false;
	if (pqw::isolation_may_call(run->iso_start, pqw::monotonic_ms(), pqw_handler_timeout_ms,
								run->settled))
		return true;
	run->cut = true;
	return false;
}

static void
settle_failure(ChunkRun *run, int index, char *reason)
{
	add_failure(run, index, reason);
	run->settled = index + 1;
}

/*
 * Finds the failing messages of a failed range by bisection (per message
 * once a timeout was seen: halving a hung handler costs a timeout a level),
 * left to right, within the chunk's time budget: once narrowing has taken
 * handler_timeout and settled a message, it stops (run->cut) and the chunk
 * ends after run->settled messages.
 */
static void
isolate(ChunkRun *run, int lo, int hi, char *reason)
{
	if (hi - lo == 1)
	{
		settle_failure(run, lo, reason);
		return;
	}
	if (run->timed_out && !run->h->is_batch)
	{
		for (int i = lo; i < hi && may_call_again(run); i++)
		{
			char	   *why;

			if (!try_range(run, i, i + 1, &why))
				add_failure(run, i, why);
			run->settled = i + 1;
		}
		return;
	}
	{
		int			mid = lo + (hi - lo) / 2;
		char	   *why;

		if (!may_call_again(run))
			return;
		if (try_range(run, lo, mid, &why))
			run->settled = mid;
		else
			isolate(run, lo, mid, why);
		if (!may_call_again(run))
			return;
		if (try_range(run, mid, hi, &why))
			run->settled = hi;
		else
			isolate(run, mid, hi, why);
	}
}

static void drop_ahead(Handler *h);

/*
 * The chunk ends after its first run->settled messages (handled, or failed
 * and to be nacked): narrowing down failures ran out of time, or it ends
 * before or with the events of a call a predecessor was stopped in. The
 * cursor has read past them, so it is closed with the message
 * read ahead: the next chunk opens the batch again after the progress this
 * one records.
 */
static void
end_chunk_early(ChunkRun *run, ChunkPart *part, Portal portal)
{
	int			kept = 0;

	for (int i = 0; i < run->nfail; i++)
		if (run->fails[i].index < run->settled)
			run->fails[kept++] = run->fails[i];
	run->nfail = kept;
	run->n = run->settled;
	part->n = run->settled;
	part->finished = false;
	part->last_id = run->ids[run->settled - 1];
	SPI_cursor_close(portal);
	run->h->cursor_open = false;
	drop_ahead(run->h);
}

/* Sets a statement timeout around the worker's own calls in a chunk. */
static void
arm(void)
{
	enable_timeout_after(STATEMENT_TIMEOUT, pqw_statement_timeout_ms);
}

static void
disarm(void)
{
	disable_timeout(STATEMENT_TIMEOUT, false);
}

/* A fresh cursor name nobody can guess (a handler could otherwise FETCH
 * from it by name; pg_cursors does not list it either). */
static void
new_portal_name(Handler *h)
{
	snprintf(h->portal, sizeof(h->portal), "pgque_worker_%016llx%016llx",
			 (unsigned long long) pg_prng_uint64(&pg_global_prng_state),
			 (unsigned long long) pg_prng_uint64(&pg_global_prng_state));
}

/* Remembers where the batch cursor stands after our own fetch. */
static void
note_cursor(Handler *h, Portal p)
{
	h->portal_ptr = p;
	h->portal_created = p->creation_time;
	h->portal_pos = p->portalPos;
}

/* The batch cursor as we left it, or ERROR (the chunk rolls back and the
 * batch is read again from its recorded progress). */
static Portal
cursor_as_left(Handler *h)
{
	Portal		p = SPI_cursor_find(h->portal);

	if (p == NULL || p != h->portal_ptr || p->creation_time != h->portal_created ||
		p->portalPos != h->portal_pos)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_CURSOR_STATE),
				 errmsg("the batch cursor of queue \"%s\", consumer \"%s\" was moved or closed by its handler",
						h->queue, h->consumer),
				 errdetail("The chunk is rolled back and the batch is read again from its recorded progress.")));
	return p;
}

/*
 * A later chunk of a batch: is the batch still the consumer's open one?
 * Someone may have finished it (pgque.ack) or removed the consumer or the
 * queue since the last chunk; then this chunk's effects must not commit.
 * Read from the subscription row, as batch_event_sql() and finish_batch()
 * find a batch. next_batch() answers the same through a chain of PL/pgSQL
 * calls, and opens the next batch if there is none: on the smoke cluster
 * the check took 0.33-0.38 ms a chunk that way, 0.06-0.13 ms this way.
 */
static void
check_batch_still_ours(Handler *h)
{
	Datum		args[2];
	Oid			types[2] = {TEXTOID, TEXTOID};
	PqwCallResult r;

	args[0] = CStringGetTextDatum(h->queue);
	args[1] = CStringGetTextDatum(h->consumer);
	arm();
	pqw_exec_into(&still_open_sql, 2, types, args, &r);
	disarm();
	if (r.isnull[0] || r.value[0] != h->batch_id)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("batch " INT64_FORMAT " of queue \"%s\", consumer \"%s\" is not open any more",
						h->batch_id, h->queue, h->consumer),
				 errdetail("Another session finished it, or the consumer or the queue was removed; the chunk is rolled back.")));
}

/*
 * The batch cursor: holdable (it outlives the chunk's transaction) and
 * NO SCROLL (without either option SPI makes a cursor scrollable whenever
 * its plan can run backward, as ours can). A chunk reads one message past
 * its end to know whether the batch ends with it, and keeps that one for
 * the next chunk (Handler.ahead) rather than stepping back. A scrollable
 * cursor would make PostgreSQL sort for random access and, at the first
 * chunk's commit, rewind the query and store every row from the first, not
 * only the rows left.
 */
#define BATCH_CURSOR_OPTIONS (CURSOR_OPT_HOLD | CURSOR_OPT_NO_SCROLL)

/* Forgets the message read ahead (the cursor it came from is gone or will
 * be reopened). */
static void
drop_ahead(Handler *h)
{
	if (h->ahead != (Datum) 0)
		pfree(DatumGetPointer(h->ahead));
	h->ahead = (Datum) 0;
	h->ahead_id = 0;
}

typedef struct OpenEvents
{
	Handler    *h;
	Datum	   *args;			/* the batch, the recorded progress */
	Portal		portal;
} OpenEvents;

static void
open_events_direct_fn(void *arg)
{
	OpenEvents *o = (OpenEvents *) arg;
	Oid			t = INT8OID;
	Oid			ctypes[2] = {INT8OID, INT8OID};
	bool		isnull;
	Datum		query;

	if (pqw_exec_cached(&batch_event_sql_sql, 1, &t, o->args, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "pgque.batch_event_sql() returned no row");
	query = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		elog(ERROR, "pgque.batch_event_sql() returned null");
	o->portal = SPI_cursor_open_with_args(o->h->portal,
										  psprintf(BATCH_MESSAGES_FROM("(select * from (%s) pgque_events order by ev_id offset 0)"),
												   TextDatumGetCString(query)),
										  2, ctypes, o->args, NULL, false,
										  BATCH_CURSOR_OPTIONS);
}

/*
 * Opens the batch cursor. PgQue's get_batch_events() runs the query text of
 * batch_event_sql() in a PL/pgSQL loop returning one row at a time, which
 * costs 4 us per event (measured: 200 ms for a batch of 50,000 against 25 ms
 * for the same query read directly). So the cursor reads that text itself:
 * as the owner of schema pgque, security-restricted, with the pinned
 * search_path (the identity get_batch_events() runs it under when we call
 * it), so it can do nothing that calling get_batch_events() could not.
 * The text is PgQue's, never a user's: a batch id goes in, PgQue builds it
 * from its own tables. If the text cannot be used (a PgQue whose text
 * differs), the function it is.
 *
 * The text is fenced (OFFSET 0) so that it is planned on its own, as
 * get_batch_events() plans it: pushed into it, our "ev_id > progress"
 * lowered the event scan's estimate until the planner looked the batch's
 * first tick up once per event (1,000 index scans a batch: 2.1 ms against
 * 0.8 ms for a batch of 1,000 on a table of 200,000 events). The fence
 * orders by ev_id itself, so the order of its rows is known outside it and
 * ours costs no second sort.
 */
static Portal
open_events(Handler *h, Datum *args)
{
	Oid			ctypes[2] = {INT8OID, INT8OID};
	OpenEvents	o = {h, args, NULL};
	PqwCallResult r;

	if (events_direct)
	{
		pqw_pgque_guard_reset();
		if (pqw_in_subtransaction(open_events_direct_fn, &o, NULL, &r))
			return o.portal;
		/* a timeout, or a relation PgQue may not read as its owner (see
		 * spi_txn.cpp): get_batch_events() would meet the same */
		if (r.sqlerrcode == ERRCODE_QUERY_CANCELED || pqw_pgque_guard_refused())
			ereport(ERROR, (errcode(r.sqlerrcode), errmsg("%s", r.message),
							r.detail[0] ? errdetail("%s", r.detail) : 0));
		events_direct = false;
		ereport(LOG,
				(errmsg("pgque_worker: reading batches through pgque.get_batch_events() in database \"%s\"",
						my_dbname),
				 errdetail("The query text of pgque.batch_event_sql() could not be read directly: %s",
						   r.message)));
	}
	return pqw_cursor_open_cached(h->portal, &batch_cursor_sql, 2, ctypes, args,
								  BATCH_CURSOR_OPTIONS);
}

/*
 * The last event of batch_id that a chunk committed earlier handled (0:
 * none), from our table (read as the worker); `args` are the handler's
 * queue and consumer. Not read when this process knows the table records
 * no progress of that batch.
 */
static int64
recorded_progress(Handler *h, int64 batch_id, Datum *args)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	int64		after = 0;
	PqwAs		as;

	if (h->progress_known && h->progress_batch != batch_id)
		return 0;
	pqw_begin_as(PQW_AS_WORKER, PQW_PINNED_SEARCH_PATH, &as);
	if (pqw_exec_cached(&progress_sql, 2, types, args, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		bool		n1,
					n2;
		int64		b = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &n1));
		int64		last = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &n2));

		if (!n1 && !n2 && b == batch_id)
			after = last;
	}
	pqw_end_as(&as);
	return after;
}

static bool may_take_more(const Handler *h);

static void
open_batch(Handler *h, ChunkPart *res)
{
	Datum		args[3];
	Oid			types[3] = {TEXTOID, TEXTOID, INT8OID};
	bool		isnull;
	int64		batch_id;
	int64		after;
	Portal		portal;

	args[0] = CStringGetTextDatum(h->queue);
	args[1] = CStringGetTextDatum(h->consumer);
	args[2] = Int64GetDatum(may_take_more(h) && !h->nacked_last ?
							Min(MERGE_MAX_EVENTS, Max(1, pqw_chunk_messages / 2)) : 0);
	arm();
	if (pqw_exec_cached(&next_batch_sql, 3, types, args, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "pgque.next_batch() returned no row");
	batch_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	res->t_batch = GetCurrentTimestamp();
	{
		bool		qnull;
		int64		qid = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2,
													  &qnull));

		h->residue = qnull || qid < 0 ? -1 : (int32) (qid % pqw::QueueSet::kBits);
	}
	if (isnull)
	{
		disarm();
		res->no_batch = true;
		return;
	}

	after = recorded_progress(h, batch_id, args);
	res->t_progress = GetCurrentTimestamp();

	args[0] = Int64GetDatum(batch_id);
	args[1] = Int64GetDatum(after);
	close_cursor_if_open(h->portal);
	drop_ahead(h);
	new_portal_name(h);
	portal = open_events(h, args);
	if (portal == NULL)
		elog(ERROR, "could not open a cursor over batch " INT64_FORMAT, batch_id);
	portal->visible = false;
	note_cursor(h, portal);
	disarm();
	h->cursor_open = true;
	h->batch_id = batch_id;
}

static void
nack_failures(ChunkRun *run, int64 batch_id)
{
	Oid			types[4] = {INT8OID, msg_typoid, INTERVALOID, TEXTOID};
	Datum		args[4];

	args[0] = Int64GetDatum(batch_id);
	args[2] = IntervalPGetDatum(&run->h->retry_after);
	arm();
	for (int i = 0; i < run->nfail; i++)
	{
		args[1] = run->msgs[run->fails[i].index];
		args[3] = CStringGetTextDatum(run->fails[i].reason);
		if (SPI_execute_with_args("select pgque.nack($1, $2, $3, $4)", 4, types, args,
								  NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "pgque.nack() failed");
	}
	disarm();
}

/* pgque_worker.debug_fail_commit_event (tests only): the commit of a chunk
 * that handed that event to its handler fails, as a full NOTIFY queue or a
 * disk error would make it. Raised from the pre-commit callback, so the
 * real commit path is the one that fails. */
static bool fail_this_commit = false;

static void
pqw_debug_commit_fault(const ChunkRun *run)
{
	if (pqw_debug_fail_commit_event <= 0)
		return;
	for (int i = 0; i < run->n; i++)
		if (run->ids[i] == pqw_debug_fail_commit_event && !run->skip[i])
			fail_this_commit = true;
}

static void
commit_fault_callback(XactEvent event, void *arg)
{
	(void) arg;
	if (event == XACT_EVENT_PRE_COMMIT && fail_this_commit)
	{
		fail_this_commit = false;
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("commit failure injected for event %d (pgque_worker.debug_fail_commit_event)",
						pqw_debug_fail_commit_event)));
	}
	else if (event == XACT_EVENT_ABORT)
		fail_this_commit = false;
}

/* The handler call a predecessor was stopped in, until its chunk is done;
 * whether an error ended it (not the hard limit). */
static PqwHandlerCall hung_call;
static bool have_hung = false;
static bool hung_fatal = false;
static char hung_error[PQW_CALL_ERROR_LEN];	/* the error that ended it, if logged */
/* The handler whose calls ended the process in a row (the slot counts
 * them for its backoff): the count is cleared only once a call of it
 * returns, not when the event it ended on is nacked, or a handler ending
 * the process on every message would be restarted into once a second. */
static PqwHandlerCall fatal_streak_of;
static bool fatal_streak_open = false;
static int	hung_streak = 0;	/* such calls in a row, as the slot counted */
static bool hung_unreported = false;	/* its handler not loaded yet */
static void report_hung_call(Handler *h);

/* Why an event of that call is nacked without calling the handler. */
static char *
hung_nack_reason(void)
{
	if (hung_fatal)
		return psprintf("its handler call ended the dispatcher's process: %s",
						hung_error[0] != '\0' ? hung_error : "an error PostgreSQL made FATAL");
	return psprintf("handler ignored cancellation for %d ms (2 x pgque_worker.handler_timeout) and was stopped",
					2 * pqw_handler_timeout_ms);
}

/*
 * One part of a chunk: up to `fetch` messages of the handler's open batch
 * (or of the next one), through the handler, failures nacked, the batch
 * acked if it ends with them.
 */
static void
run_part(Handler *h, ChunkPart *part, int fetch)
{
	ChunkRun	run;
	Portal		portal;
	SPITupleTable *tt;
	bool		narrow = false;
	bool		shortened = false;
	int			have_ahead;
	int64		total;

	part->t_start = GetCurrentTimestamp();
	if (!h->cursor_open)
	{
		open_batch(h, part);
		if (part->no_batch)
			return;
	}
	else
	{
		check_batch_still_ours(h);
		part->t_batch = GetCurrentTimestamp();
		part->t_progress = part->t_batch;
	}
	part->t_cursor = GetCurrentTimestamp();

	/* The message read ahead by the last chunk comes first; one more than
	 * the chunk takes is read, to know whether the batch ends with it. */
	have_ahead = h->ahead != (Datum) 0 ? 1 : 0;
	portal = cursor_as_left(h);
	SPI_cursor_fetch(portal, true, fetch + 1 - have_ahead);
	tt = SPI_tuptable;
	total = have_ahead + (int64) SPI_processed;
	/* A batch that ends with this chunk is acked with it. */
	part->finished = total <= fetch;
	part->n = part->finished ? total : fetch;
	note_cursor(h, portal);
	part->t_fetch = GetCurrentTimestamp();

	memset(&run, 0, sizeof(run));
	run.h = h;
	run.n = (int) part->n;
	run.msgs = (Datum *) palloc(sizeof(Datum) * (run.n > 0 ? run.n : 1));
	run.ids = (int64 *) palloc(sizeof(int64) * (run.n > 0 ? run.n : 1));
	run.skip = (bool *) palloc0(sizeof(bool) * (run.n > 0 ? run.n : 1));
	run.fails = (Failure *) palloc(sizeof(Failure) * (run.n > 0 ? run.n : 1));
	run.msg_type = msg_typoid;
	strlcpy(run.call.queue, h->queue, NAMEDATALEN);
	strlcpy(run.call.consumer, h->consumer, NAMEDATALEN);
	run.call.batch_id = h->batch_id;
	get_typlenbyvalalign(msg_typoid, &run.typlen, &run.typbyval, &run.typalign);
	if (have_ahead)
	{
		run.msgs[0] = datumCopy(h->ahead, run.typbyval, run.typlen);
		run.ids[0] = h->ahead_id;
		drop_ahead(h);
	}
	for (int i = have_ahead; i < run.n; i++)
	{
		bool		isnull;

		run.msgs[i] = SPI_getbinval(tt->vals[i - have_ahead], tt->tupdesc, 1, &isnull);
		run.ids[i] = DatumGetInt64(SPI_getbinval(tt->vals[i - have_ahead], tt->tupdesc, 2, &isnull));
	}
	if (!part->finished)
	{
		HeapTuple	next = tt->vals[run.n - have_ahead];
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(handlers_cxt);

		h->ahead = datumCopy(SPI_getbinval(next, tt->tupdesc, 1, &isnull), run.typbyval, run.typlen);
		h->ahead_id = DatumGetInt64(SPI_getbinval(next, tt->tupdesc, 2, &isnull));
		MemoryContextSwitchTo(old);
	}
	/* A predecessor was stopped at the hard limit in a call of some of
	 * these events: the events before them make a chunk of their own; a
	 * chunk starting with them ends with them, one event of the call
	 * nacked without calling the handler again, several narrowed down (see
	 * core/hung_call.hpp). */
	{
		int			first = -1,
					last = -1;
		pqw::HungChunk hc;

		for (int i = 0; !h->hung.empty() && i < run.n; i++)
			if (pqw::hung_plan_for(h->hung, run.ids[i]) != pqw::HungPlan::kNormal)
			{
				if (first < 0)
					first = i;
				last = i;
			}
		hc = pqw::hung_chunk_plan(first, last, run.n);
		shortened = hc.keep < run.n;
		run.n = hc.keep;
		narrow = hc.narrow;
		part->touched_hung = first == 0;
	}
	part->first_id = run.n > 0 ? run.ids[0] : 0;
	part->last_id = run.n > 0 ? run.ids[run.n - 1] : 0;

	/* This event alone failed at COMMIT CommitRetry::kTries times: nacked
	 * without calling the handler (see core/commit_retry.hpp). */
	for (int i = 0; i < run.n; i++)
		if (pqw::commit_retry_nacks(h->commit, run.ids[i]))
			add_failure(&run, i,
						psprintf("the transaction handling it failed at commit %d times",
								 pqw::CommitRetry::kTries));
	if (part->touched_hung && pqw::hung_plan_for(h->hung, run.ids[0]) == pqw::HungPlan::kNackAlone)
		add_failure(&run, 0, hung_nack_reason());

	if (run.n > 0)
	{
		char	   *why;

		pqw_handler_fmgr_info(h->func, h->run_as, &run.flinfo);
		run.call_cxt = AllocSetContextCreate(CurrentMemoryContext, "pgque_worker handler call",
											 ALLOCSET_SMALL_SIZES);
		if (narrow)
		{
			run.timed_out = true;
			run.iso_start = pqw::monotonic_ms();
			isolate(&run, 0, run.n, pstrdup(hung_fatal ?
											"its handler call ended the dispatcher's process" :
											"handler ignored cancellation and was stopped"));
		}
		else if (!try_range(&run, 0, run.n, &why))
		{
			run.iso_start = pqw::monotonic_ms();
			isolate(&run, 0, run.n, why);
		}
		MemoryContextDelete(run.call_cxt);
	}
	part->t_handler = GetCurrentTimestamp();
	part->timed_out = run.timed_out;

	/* Nothing a handler did may have moved our cursor. */
	portal = cursor_as_left(h);
	if (run.cut)
	{
		end_chunk_early(&run, part, portal);
		part->cut = true;
	}
	else if (shortened)
	{
		run.settled = run.n;
		end_chunk_early(&run, part, portal);
	}
	part->nfail = run.nfail;
	part->nok = run.n - run.nfail;
	part->first_error = run.nfail > 0 ? run.fails[0].reason : NULL;

	if (run.nfail > 0)
		nack_failures(&run, h->batch_id);

	if (part->finished)
	{
		Datum		a = Int64GetDatum(h->batch_id);
		Oid			t = INT8OID;
		PqwCallResult acked;

		/* 1: we finished it. Anything else: someone else finished it, or
		 * the consumer or queue went away; the chunk's effects must not
		 * commit then. */
		arm();
		pqw_exec_into(&ack_sql, 1, &t, &a, &acked);
		disarm();
		if (acked.isnull[0] || acked.value[0] != 1)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("batch " INT64_FORMAT " of queue \"%s\", consumer \"%s\" is not open any more",
							h->batch_id, h->queue, h->consumer),
					 errdetail("Another session finished it, or the consumer or the queue was removed; the chunk is rolled back.")));
		SPI_cursor_close(portal);
		h->cursor_open = false;
	}
	pqw_debug_commit_fault(&run);
	SPI_freetuptable(tt);
	part->t_finish = GetCurrentTimestamp();
}

/*
 * Whether a chunk may go on to the handler's next batch once one is acked:
 * only while nothing about the handler is being narrowed down (a commit
 * failure, a predecessor's hung call) and its last chunk did not fail, so
 * that a failure is always retried on one batch alone.
 */
static bool
may_take_more(const Handler *h)
{
	return h->failures == 0 && h->hung.empty() && h->commit.limit == 0 &&
		h->commit.fails == 0 && h->commit.nack_id < 0;
}

/*
 * A chunk transaction. Its first part continues the handler's open batch
 * or takes the next one; once a part acks its batch, further parts take
 * the next batches, until the chunk has pgque_worker.chunk_messages
 * messages, no batch is ready or MAX_PARTS batches were taken. So a stream
 * of small batches costs one commit per chunk_messages messages, not one
 * per batch. Each batch's failures are its own: nacked in it, acked with it.
 */
/*
 * random()'s state belongs to the process, not to a call: a handler's
 * setseed() would fix what the next chunks' handlers (other roles') draw.
 * Each chunk, one handler's, starts from a seed of its own.
 */
static void
reseed_random(void)
{
	uint64		r;

	if (!pg_strong_random(&r, sizeof(r)))
		return;
	(void) DirectFunctionCall1(setseed,
							   Float8GetDatum((double) (r >> 11) / (double) (UINT64CONST(1) << 52) - 1.0));
}

static void
chunk_fn(void *arg)
{
	ChunkResult *res = (ChunkResult *) arg;
	Handler    *h = res->h;
	ChunkPart  *last = NULL;
	int			fetch;
	bool		more;
	PqwAs		as;
	Datum		sargs[10];
	char		snulls[10];
	Oid			stypes[10] = {TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID, FLOAT8OID,
		INT8OID, INT8OID, INT8OID, TEXTOID};
	const char *first_error = NULL;

	fail_this_commit = false;
	reseed_random();
	if (h->needs_close)
	{
		close_cursor_if_open(h->portal);
		h->needs_close = false;
	}
	res->paused = role_unusable(h);
	if (res->paused)
		return;
	check_handler_usable(h);

	fetch = pqw::isolation_fetch(h->budget, pqw::commit_retry_fetch(h->commit, pqw_chunk_messages));
	more = may_take_more(h);
	do
	{
		ChunkPart  *part = &res->parts[res->nparts];

		run_part(h, part, (int) (fetch - res->n));
		if (part->no_batch)
		{
			res->no_batch = res->nparts == 0;
			res->drained = res->nparts > 0;
			break;
		}
		res->nparts++;
		last = part;
		res->n += part->n;
		res->nok += part->nok;
		res->nfail += part->nfail;
		res->batches += part->finished ? 1 : 0;
		res->handler_secs += (double) (part->t_handler - part->t_fetch) / 1000000.0;
		res->timed_out |= part->timed_out;
		res->cut = part->cut;
		if (first_error == NULL)
			first_error = part->first_error;
	} while (more && last->finished && !last->timed_out && res->n < fetch && res->nparts < MAX_PARTS &&
			 MyProc->subxidStatus.count < PGPROC_MAX_CACHED_SUBXIDS / 2);
	if (last == NULL)
		return;
	res->first_id = res->parts[0].first_id;
	res->last_id = last->last_id;
	res->finished = last->finished;

	/* Stats, and the progress of a batch the chunk ends inside, in the
	 * same transaction as the chunk's effects (our table: written as the
	 * worker). */
	memset(snulls, ' ', sizeof(snulls));
	sargs[0] = CStringGetTextDatum(h->queue);
	sargs[1] = CStringGetTextDatum(h->consumer);
	sargs[2] = Int64GetDatum(res->batches);
	sargs[3] = Int64GetDatum(res->nok);
	sargs[4] = Int64GetDatum(res->nfail);
	sargs[5] = Float8GetDatum(res->handler_secs);
	sargs[6] = Int64GetDatum(h->batch_id);
	sargs[7] = Int64GetDatum(last->last_id);
	sargs[8] = Int64GetDatum(last->n);
	sargs[9] = first_error != NULL ? CStringGetTextDatum(first_error) : (Datum) 0;
	if (last->finished)
		snulls[6] = snulls[7] = snulls[8] = 'n';
	if (first_error == NULL)
		snulls[9] = 'n';
	arm();
	pqw_begin_as(PQW_AS_WORKER, PQW_PINNED_SEARCH_PATH, &as);
	if (pqw_exec_cached(&stat_sql, 10, stypes, sargs, snulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record handler progress");
	pqw_end_as(&as);
	disarm();
	last->t_stats = GetCurrentTimestamp();

	/* What the subtransaction cache of this backend holds at commit. */
	res->max_subxids = MyProc->subxidStatus.count;
	res->overflowed = MyProc->subxidStatus.overflowed;

	/* once this commits, the stopped call is behind us */
	res->hung_done = pqw::hung_range_done(h->hung, last->touched_hung, last->first_id,
										   last->last_id, last->finished);
	res->at_commit = true;
}

/* ---------------------------------------------------------------------
 * The loop
 * --------------------------------------------------------------------- */

static void
record_error(Handler *h, const PqwCallResult *r)
{
	PqwCallResult r2;
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		args[3];
	/* whole here (no message is longer than its buffer), cut to the slot's
	 * size there, at a character boundary */
	char		line[NAMEDATALEN + NAMEDATALEN + sizeof(r->message) + 8];
	pqw::LogDecision d;

	snprintf(line, sizeof(line), "%s/%s: %s", h->queue, h->consumer, r->message);
	pqw_slot_set_error(my_slot, line);
	d = h->limiter.on_error(pqw::fingerprint(r->message, (uint64) r->sqlerrcode),
							pqw::monotonic_ms());
	if (d != pqw::LogDecision::kSuppress)
		ereport(WARNING,
				(errcode(r->sqlerrcode),
				 errmsg("pgque_worker: dispatching queue \"%s\" to consumer \"%s\" failed in database \"%s\": %s",
						h->queue, h->consumer, my_dbname, r->message),
				 r->detail[0] ? errdetail_internal("%s", r->detail) : 0,
				 errhint("Nothing was acked; the batch is retried with backoff.")));

	args[0] = CStringGetTextDatum(h->queue);
	args[1] = CStringGetTextDatum(h->consumer);
	args[2] = CStringGetTextDatum(r->message);
	(void) pqw_call(&stat_error_sql, PQW_AS_WORKER, 3, types, args, pqw_statement_timeout_ms, &r2);
}

/* Gives the stopped call to its handler (again after every reload). */
static void
apply_hung_call(void)
{
	for (int i = 0; have_hung && i < nhandlers; i++)
		if (strcmp(handlers[i].queue, hung_call.queue) == 0 &&
			strcmp(handlers[i].consumer, hung_call.consumer) == 0)
		{
			handlers[i].hung.first_id = hung_call.first_id;
			handlers[i].hung.last_id = hung_call.last_id;
			if (hung_unreported)
			{
				hung_unreported = false;
				report_hung_call(&handlers[i]);
			}
		}
}

/* Start: did the hard limit, or an error in a handler call, end our
 * predecessor? Count it against the handler, once. */
static void
take_hung_call(void)
{
	if (!pqw_slot_take_hung_call(my_slot, &hung_call, &hung_fatal, &hung_streak, hung_error,
								 sizeof(hung_error)))
		return;
	have_hung = true;
	hung_unreported = true;
	if (hung_fatal)
	{
		fatal_streak_of = hung_call;
		fatal_streak_open = true;
	}
}

/* The stopped call, against its handler (once it is loaded: a first load
 * that failed leaves it for the next). */
static void
report_hung_call(Handler *h)
{
	PqwCallResult r;

	memset(&r, 0, sizeof(r));
	if (hung_fatal)
	{
		r.sqlerrcode = ERRCODE_ADMIN_SHUTDOWN;
		snprintf(r.message, sizeof(r.message),
				 "handler call ended the dispatcher's process: %s; the dispatcher was restarted",
				 hung_error[0] != '\0' ? hung_error : "an error PostgreSQL made FATAL");
	}
	else
	{
		r.sqlerrcode = ERRCODE_QUERY_CANCELED;
		snprintf(r.message, sizeof(r.message),
				 "handler ignored cancellation for %d ms (2 x pgque_worker.handler_timeout); the dispatcher was restarted",
				 2 * pqw_handler_timeout_ms);
	}
	snprintf(r.detail, sizeof(r.detail), "Batch " INT64_FORMAT ", events " INT64_FORMAT " to " INT64_FORMAT
			 " are handled again: the events before them first, then these by halves; an event it %s on alone is nacked without calling it.",
			 hung_call.batch_id, hung_call.first_id, hung_call.last_id, hung_fatal ? "fails" : "hangs");
	record_error(h, &r);
	if (hung_fatal)
	{
		pqw::BackoffPolicy p;

		/* Its next try waits, longer each time in a row (this process
		 * started at once), so that the other handlers are served first and
		 * a handler failing so on every event costs a restart a backoff,
		 * not a loop of them. */
		p.base_ms = 1000;
		p.cap_ms = 60000;
		h->failures = hung_streak > 0 ? hung_streak : 1;
		h->next_try = pqw::monotonic_ms() + pqw::backoff_delay(p, h->failures, (uint32) random());
	}
}

/* The FATAL error that ends this process during a handler call, kept for
 * the next dispatcher (it names it in the handler's last_error). */
static emit_log_hook_type prev_emit_log_hook = NULL;

static void
note_fatal_in_call(ErrorData *edata)
{
	if (edata->elevel >= FATAL && pqw_handler_call_active && edata->message != NULL)
		pqw_note_exit_error(edata->message);
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* The handler's role may not run it (role_unusable): skip it, say why. */
static void
pause_handler(Handler *h, const char *why)
{
	PqwCallResult r;
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		args[3];

	h->next_try = pqw::monotonic_ms() + 5000;	/* looked at again */
	if (strcmp(h->paused_reason, why) == 0)
		return;
	pqw_strlcpy_text(h->paused_reason, why, sizeof(h->paused_reason));
	ereport(LOG,
			(errmsg("pgque_worker: handler of queue \"%s\", consumer \"%s\" in database \"%s\" is paused: %s",
					h->queue, h->consumer, my_dbname, why),
			 errhint("It resumes by itself once its role may log in and connect again.")));
	args[0] = CStringGetTextDatum(h->queue);
	args[1] = CStringGetTextDatum(h->consumer);
	args[2] = CStringGetTextDatum(why);
	(void) pqw_call(&paused_sql, PQW_AS_WORKER, 3, types, args, pqw_statement_timeout_ms, &r);
}

static void
account(const ChunkResult *res)
{
	pqw_dispatcher_counted(my_slot, res->batches, res->nok, res->nfail, res->max_subxids,
						   res->overflowed);
}

static double
ms_between(TimestampTz from, TimestampTz to)
{
	return (double) (to - from) / 1000.0;
}

/* Where a committed chunk's time went, a line per batch part, at DEBUG1
 * (bench/run.sh sums it per batch). The chunk's stats row and its commit
 * count on its last part. */
static void
log_chunk_steps(const Handler *h, const ChunkResult *res)
{
	TimestampTz done;

	if (!message_level_is_interesting(DEBUG1))
		return;
	done = GetCurrentTimestamp();
	for (int i = 0; i < res->nparts; i++)
	{
		const ChunkPart *p = &res->parts[i];
		bool		last = i == res->nparts - 1;

		ereport(DEBUG1,
				(errmsg_internal("pgque_worker chunk: queue \"%s\" consumer \"%s\" events %d batch_end %d"
								 " next_batch_ms %.3f progress_ms %.3f cursor_ms %.3f fetch_ms %.3f"
								 " handler_ms %.3f ack_ms %.3f stats_ms %.3f commit_ms %.3f woke_ms %.3f"
								 " start " INT64_FORMAT " part %d of %d",
								 h->queue, h->consumer, (int) p->n, p->finished ? 1 : 0,
								 ms_between(p->t_start, p->t_batch),
								 ms_between(p->t_batch, p->t_progress),
								 ms_between(p->t_progress, p->t_cursor),
								 ms_between(p->t_cursor, p->t_fetch),
								 ms_between(p->t_fetch, p->t_handler),
								 ms_between(p->t_handler, p->t_finish),
								 last ? ms_between(p->t_finish, p->t_stats) : 0.0,
								 last ? ms_between(p->t_stats, done) : 0.0,
								 i == 0 && pqw_worker_woke_at > 0 && pqw_worker_woke_at <= p->t_start ?
								 ms_between(pqw_worker_woke_at, p->t_start) : -1.0,
								 (int64) p->t_start, i + 1, res->nparts)));
	}
}

/* The dispatcher's poll, if any: pgque_worker.dispatch_poll_interval; and
 * without wake_on_commit, when no commit hook sees ticks made elsewhere,
 * every second. */
static long
poll_interval_ms(void)
{
	if (pqw_dispatch_poll_interval_ms > 0)
		return pqw_dispatch_poll_interval_ms;
	return pqw_wake_on_commit ? 0 : 1000;
}

/*
 * Marks the handlers a wake-up concerns as ready: those of the queues it
 * names (all of them for a wake-up that names none, or whose queue is not
 * known yet), and every handler once per poll interval when polling.
 */
static void
take_wake(pqw::Millis *last_poll)
{
	pqw::QueueSet queues;
	bool		all = false;
	pqw::Millis now = pqw::monotonic_ms();
	long		poll = poll_interval_ms();

	(void) pqw_dispatcher_take_wake(my_slot, &queues, &all);
	if ((poll > 0 && now - *last_poll >= poll) || *last_poll == 0)
	{
		all = true;
		*last_poll = now;
	}
	for (int i = 0; i < nhandlers; i++)
		if (all || handlers[i].residue < 0 || queues.has_residue(handlers[i].residue))
			handlers[i].ready = true;
}

/* One chunk of one handler. Returns true if it did some work. */
static bool
dispatch_one(Handler *h)
{
	ChunkResult res;
	PqwCallResult r;
	char		activity[256];
	pqw::Millis now = pqw::monotonic_ms();

	if (!h->ready || now < h->next_try)
		return false;
	memset(&res, 0, sizeof(res));
	res.h = h;
	snprintf(activity, sizeof(activity), "pgque_worker: dispatching queue %s to %s",
			 h->queue, h->consumer);
	/* timeouts are armed inside, per step; PgQue's owner runs the chunk */
	if (!pqw_in_transaction(activity, PQW_AS_PGQUE_OWNER, chunk_fn, &res, 0,
							pqw_dispatch_synchronous_commit_value(), &r))
	{
		if (res.at_commit && res.nparts == 1)
		{
			/* the handler calls went through; COMMIT did not */
			if (pqw::commit_failed(h->commit, res.first_id, res.last_id, (int) res.n))
				h->failures = 0;	/* a smaller chunk: its tries start over */
			if (r.detail[0] == '\0')
				snprintf(r.detail, sizeof(r.detail),
						 "The chunk of events " INT64_FORMAT " to " INT64_FORMAT " failed at commit; after %d failures in a row it is split, and an event failing alone is nacked without calling the handler.",
						 res.first_id, res.last_id, pqw::CommitRetry::kTries);
		}
		else if (res.at_commit && r.detail[0] == '\0')
			snprintf(r.detail, sizeof(r.detail),
					 "A chunk of %d batches failed at commit; it is retried on its first batch alone.",
					 res.nparts);
		if (h->cursor_open)
			h->needs_close = true;
		h->cursor_open = false;
		drop_ahead(h);
		h->progress_known = false;
		h->failures++;
		{
			pqw::BackoffPolicy p;

			p.base_ms = 1000;
			p.cap_ms = 60000;
			h->next_try = pqw::monotonic_ms() + pqw::backoff_delay(p, h->failures, (uint32) random());
		}
		record_error(h, &r);
		/* PgQue here stopped being trusted: stop calling it at all */
		if (pqw_pgque_refusal()[0] != '\0')
			pgque_untrusted = true;
		return false;
	}
	if (h->failures > 0 && h->limiter.on_success())
		ereport(LOG,
				(errmsg("pgque_worker: dispatching queue \"%s\" to consumer \"%s\" works again in database \"%s\"",
						h->queue, h->consumer, my_dbname)));
	h->failures = 0;
	if (res.paused)
	{
		pause_handler(h, res.paused);
		return false;
	}
	if (h->paused_reason[0] != '\0')
	{
		ereport(LOG,
				(errmsg("pgque_worker: handler of queue \"%s\", consumer \"%s\" in database \"%s\" resumes",
						h->queue, h->consumer, my_dbname)));
		h->paused_reason[0] = '\0';
	}
	if (res.hung_done)
	{
		h->hung = pqw::HungRange();
		have_hung = false;
		hung_fatal = false;
	}
	if (fatal_streak_open && res.nok > 0 && strcmp(h->queue, fatal_streak_of.queue) == 0 &&
		strcmp(h->consumer, fatal_streak_of.consumer) == 0)
	{
		pqw_slot_clear_fatal_streak(my_slot);
		fatal_streak_open = false;
	}
	if (res.no_batch || res.drained)
		h->ready = false;		/* until a tick of its queue */
	if (res.no_batch)
		return false;
	pqw::commit_succeeded(h->commit, res.last_id, res.finished);
	h->nacked_last = res.nfail > 0;
	if (res.cut)
	{
		if (h->budget.limit == 0)
			ereport(LOG,
					(errmsg("pgque_worker: handler of queue \"%s\", consumer \"%s\" in database \"%s\" timed out; its chunk ended after %d messages",
							h->queue, h->consumer, my_dbname, (int) res.parts[res.nparts - 1].n),
					 errdetail("Finding which messages fail took longer than pgque_worker.handler_timeout (%d ms).",
							   pqw_handler_timeout_ms),
					 errhint("Its next chunks are that small until one runs without a timeout, so that the other handlers of the database are not held.")));
		pqw::isolation_cut(h->budget, (int) res.parts[res.nparts - 1].n);
	}
	else
		pqw::isolation_chunk_done(h->budget, res.timed_out, pqw_chunk_messages);
	/* what the chunk's stats left in handler_stat */
	h->progress_known = true;
	h->progress_batch = res.finished ? 0 : h->batch_id;
	account(&res);
	if (res.n > 0)
		log_chunk_steps(h, &res);
	return true;
}

static bool
reload_requested(void)
{
	return pqw_dispatcher_take_reload(my_slot);
}

static void
leave_no_handlers(void)
{
	pqw_dispatcher_leave(my_slot);
	ereport(LOG, (errmsg("pgque_worker: no enabled handlers in database \"%s\", dispatcher stops",
						 my_dbname)));
	proc_exit(0);
}

/* Registrations are read again at least this often. */
#define RELOAD_INTERVAL_MS 60000
/* ... and this soon after a read that failed (a lock on the table). */
#define LOAD_RETRY_MS 1000

/*
 * How long a dispatcher without enabled handlers waits for one before it
 * leaves. Any pgque_reader member can commit _handlers_changed() (or flip
 * its own registration); where no handler is enabled, each commit used to
 * start a dispatcher process that found none and left. Waiting, it costs
 * such a commit one read of the registrations, as where handlers run.
 */
#define NO_HANDLERS_LINGER_MS 10000

/* No enabled handler: waits NO_HANDLERS_LINGER_MS for a registration
 * (returns with handlers loaded), then leaves. */
static void
linger_without_handlers(void)
{
	pqw::Millis until = pqw::monotonic_ms() + NO_HANDLERS_LINGER_MS;
	bool		retry = false;	/* the last read failed: again soon, and stay */

	pqw_worker_set_state(&me, PQW_STATE_NO_HANDLERS);
	for (;;)
	{
		pqw::Millis now = pqw::monotonic_ms();
		bool		reloaded;

		if (now >= until && !retry)
			leave_no_handlers();
		pqw_worker_wait(retry ? LOAD_RETRY_MS : (long) (until - now));
		if (pqw_worker_pass(&me, &reloaded) == PQW_PASS_WAITED)
			continue;			/* paused, or a standby: nothing is read */
		if (!reload_requested() && !retry)
			continue;
		retry = !load_handlers(true);
		if (nhandlers > 0)
			return;
		pqw_worker_set_state(&me, PQW_STATE_NO_HANDLERS);
	}
}

/* How long an idle dispatcher sleeps: until its latch is set (a tick was
 * made, registrations changed), a handler's backoff or pause ends, or the
 * periodic reload is due; with pgque_worker.dispatch_poll_interval set, no
 * longer than that. */
static long
idle_wait_ms(pqw::Millis last_load, pqw::Millis last_poll)
{
	pqw::Millis now = pqw::monotonic_ms();
	pqw::Millis due = last_load + RELOAD_INTERVAL_MS;
	long		poll = poll_interval_ms();

	if (poll > 0 && last_poll + poll < due)
		due = last_poll + poll;
	for (int i = 0; i < nhandlers; i++)
		if (handlers[i].ready && handlers[i].next_try > now && handlers[i].next_try < due)
			due = handlers[i].next_try;
	return due > now ? (long) (due - now) : 0;
}

/* Reads the registrations (and, where none is enabled, waits for one or
 * leaves); returns the time the periodic reload counts from: a read that
 * failed is due again in LOAD_RETRY_MS, not taken for "no handlers". */
static pqw::Millis
load_registrations(bool look_all)
{
	bool		loaded = load_handlers(look_all);

	if (loaded && nhandlers == 0)
		linger_without_handlers();
	if (!loaded)
		return pqw::monotonic_ms() - (RELOAD_INTERVAL_MS - LOAD_RETRY_MS);
	return pqw::monotonic_ms();
}

PQW_EXPORT void
pqw_dispatcher_main(Datum main_arg)
{
	pqw::Millis last_load;
	pqw::Millis last_poll;

	pqw_worker_start(&me, main_arg, PQW_KIND_DISPATCHER, PQW_STATE_RUNNING);
	handlers_cxt = AllocSetContextCreate(TopMemoryContext, "pgque_worker handlers",
										 ALLOCSET_DEFAULT_SIZES);
	hard_limit_timeout = RegisterTimeout(USER_TIMEOUT, hard_limit_reached);
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = note_fatal_in_call;
	RegisterXactCallback(commit_fault_callback, NULL);
	last_load = load_registrations(true);
	last_poll = pqw::monotonic_ms();
	take_hung_call();
	apply_hung_call();
	ereport(LOG, (errmsg("pgque_worker: dispatcher started for database \"%s\" with %d handlers",
						 my_dbname, nhandlers)));

	for (;;)
	{
		bool		worked = false;
		bool		reloaded;

		PqwPass		pass = pqw_worker_pass(&me, &reloaded);

		if (pass == PQW_PASS_WAITED)
			continue;
		/* back from a pause or a standby: every handler looks once */
		if (pass == PQW_PASS_RESUMED)
			last_poll = 0;
		take_wake(&last_poll);
		bool		requested = reload_requested();
		bool		periodic = pqw::monotonic_ms() - last_load >= RELOAD_INTERVAL_MS;

		if (requested || periodic ||
			(pgque_untrusted && pqw::monotonic_ms() - last_load >= pqw_discovery_interval_ms))
		{
			last_load = load_registrations(periodic || !requested);
			apply_hung_call();
		}
		if (pgque_untrusted)
		{
			/* the ticker says why, once; nothing is called here */
			pqw_worker_set_state(&me, PQW_STATE_UNTRUSTED);
			pqw_worker_wait(pqw_discovery_interval_ms);
			continue;
		}

		/* Round robin: one chunk per handler per pass. */
		for (int i = 0; i < nhandlers; i++)
		{
			worked |= dispatch_one(&handlers[i]);
			CHECK_FOR_INTERRUPTS();
		}
		{
			bool		failing = false;

			for (int i = 0; i < nhandlers; i++)
				failing |= handlers[i].failures > 0;
			pqw_worker_set_state(&me, failing ? PQW_STATE_BACKOFF : PQW_STATE_RUNNING);
		}
		/* a wake-up during this pass (its latch may have been reset by a
		 * lock wait inside it) means another pass, not a sleep */
		if (!worked && !pqw_dispatcher_wake_pending(my_slot))
			pqw_worker_wait(idle_wait_ms(last_load, last_poll));
	}
}
