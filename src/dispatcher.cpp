/*
 * dispatcher.cpp: runs registered SQL handlers on PgQue batches.
 *
 * One per database with enabled rows in pgque_worker.handler, started by the
 * launcher, woken by the ticker when a tick is materialized (fallback poll:
 * pgque_worker.dispatch_poll_interval). Handlers are served round robin, a
 * chunk at a time. For one handler (queue, consumer):
 *
 *   txn 1   next_batch(queue, consumer); open a holdable cursor over the
 *           batch's events after the recorded progress, ordered by event id;
 *           fetch chunk_messages; run the chunk; nack the failures; record
 *           progress (or ack if the batch is done) and stats; commit
 *   txn 2.. fetch the next chunk from the cursor, same as above
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
 */
#include "dispatcher.h"

#include "guc.h"
#include "launcher.h"
#include "shmem.h"
#include "spi_txn.h"

#include "core/backoff.hpp"
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
	char		portal[NAMEDATALEN];
	bool		cursor_open;	/* holdable cursor over the batch in flight */
	bool		needs_close;	/* a failed transaction left it mispositioned */
	int64		batch_id;
	pqw::Millis next_try;
	int			failures;
	pqw::LogLimiter limiter;
} Handler;

/* What one chunk transaction did. */
typedef struct ChunkResult
{
	Handler    *h;
	bool		no_batch;		/* no batch was ready */
	int64		n;				/* messages in the chunk */
	int64		nok;
	int64		nfail;
	bool		finished;		/* batch acked */
	double		handler_secs;
	int			max_subxids;	/* subtransaction XIDs at commit */
	bool		overflowed;
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
	Failure    *fails;
	int			nfail;
	bool		timed_out;
	MemoryContext call_cxt;
} ChunkRun;

static int	my_slot = -1;
static char my_dbname[NAMEDATALEN];
static Handler *handlers = NULL;
static int	nhandlers = 0;
static MemoryContext handlers_cxt = NULL;
static Oid	msg_typoid = InvalidOid;
static Oid	msg_array_typoid = InvalidOid;
static Oid	reader_roleoid = InvalidOid;

/* Handlers run with this search_path, whatever the worker's is. */
static const char *const handler_search_path = "\"$user\", public";

static const char *const batch_cursor_sql =
	"select (e.ev_id, $1::int8, e.ev_type, e.ev_data, e.ev_retry, e.ev_time,"
	" e.ev_extra1, e.ev_extra2, e.ev_extra3, e.ev_extra4)::pgque.message, e.ev_id"
	" from pgque.get_batch_events($1) e where e.ev_id > $2 order by e.ev_id";

static const char *const next_batch_sql = "select pgque.next_batch($1, $2)";
static const char *const ack_sql = "select pgque.ack($1)";
static const char *const progress_sql =
	"select batch_id, batch_last_msg_id from pgque_worker.handler_stat"
	" where queue_name = $1 and consumer_name = $2";

static const char *const stat_sql =
	"insert into pgque_worker.handler_stat as s (queue_name, consumer_name, batches, chunks,"
	" messages_ok, messages_nacked, handler_seconds, last_batch_at, batch_id,"
	" batch_last_msg_id, batch_messages_done, last_error, last_error_at)"
	" values ($1, $2, $3, 1, $4, $5, $6, case when $3 > 0 then now() end, $7, $8, $9,"
	" $10, case when $10 is not null then now() end)"
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
	" last_error_at = coalesce(excluded.last_error_at, s.last_error_at)";

static const char *const stat_error_sql =
	"insert into pgque_worker.handler_stat as s (queue_name, consumer_name, errors, last_error, last_error_at)"
	" values ($1, $2, 1, $3, now())"
	" on conflict (queue_name, consumer_name) do update set"
	" errors = s.errors + 1, last_error = excluded.last_error, last_error_at = now()";

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

static void
load_handlers_fn(void *arg)
{
	Oid			nsp = get_namespace_oid("pgque", true);
	MemoryContext old;

	(void) arg;
	for (int i = 0; i < nhandlers; i++)
		if (handlers[i].cursor_open || handlers[i].needs_close)
			close_cursor_if_open(handlers[i].portal);
	MemoryContextReset(handlers_cxt);
	handlers = NULL;
	nhandlers = 0;

	msg_typoid = OidIsValid(nsp) ?
		GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid, CStringGetDatum("message"),
						ObjectIdGetDatum(nsp)) : InvalidOid;
	msg_array_typoid = OidIsValid(msg_typoid) ? get_array_type(msg_typoid) : InvalidOid;
	reader_roleoid = get_role_oid("pgque_reader", true);

	nsp = get_namespace_oid("pgque_worker", true);
	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("handler", nsp)) ||
		!OidIsValid(msg_typoid))
		return;

	if (SPI_execute("select queue_name, consumer_name, handler::oid, is_batch,"
					" retry_after, run_as::oid from pgque_worker.handler"
					" where enabled order by queue_name, consumer_name",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pgque_worker.handler");

	old = MemoryContextSwitchTo(handlers_cxt);
	handlers = (Handler *) palloc0(sizeof(Handler) * (SPI_processed > 0 ? SPI_processed : 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Handler    *h = &handlers[nhandlers++];
		bool		isnull;

		h->queue = SPI_getvalue(tup, desc, 1);
		h->consumer = SPI_getvalue(tup, desc, 2);
		h->func = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
		h->is_batch = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		h->retry_after = *DatumGetIntervalP(SPI_getbinval(tup, desc, 5, &isnull));
		h->run_as = DatumGetObjectId(SPI_getbinval(tup, desc, 6, &isnull));
		snprintf(h->portal, sizeof(h->portal), "pgque_worker_batch_%d", (int) i);
		h->limiter = pqw::LogLimiter(pqw_log_quiet_interval_ms);
	}
	MemoryContextSwitchTo(old);
}

static void
load_handlers(void)
{
	PqwCallResult r;

	if (!pqw_in_transaction("pgque_worker: loading handlers", load_handlers_fn, NULL,
							pqw_statement_timeout_ms, &r))
	{
		ereport(WARNING,
				(errcode(r.sqlerrcode),
				 errmsg("pgque_worker: could not load handlers in database \"%s\": %s",
						my_dbname, r.message)));
		pqw_slot_set_error(my_slot, r.message);
		nhandlers = 0;
		handlers = NULL;
	}
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
	ReleaseSysCache(tup);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("handler of queue \"%s\", consumer \"%s\" must take one argument of type %s",
						h->queue, h->consumer, h->is_batch ? "pgque.message[]" : "pgque.message")));
	if (pg_proc_aclcheck(h->func, h->run_as, ACL_EXECUTE) != ACLCHECK_OK)
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

/* Calls the handler on msgs[lo, hi) as its role, with search_path pinned. */
static void
call_handler(ChunkRun *run, int lo, int hi)
{
	Handler    *h = run->h;
	Oid			save_uid;
	int			save_sec;
	int			nest;
	LOCAL_FCINFO(fcinfo, 1);

	GetUserIdAndSecContext(&save_uid, &save_sec);
	/* LOCAL_USERID_CHANGE: the handler cannot SET ROLE back to the worker's. */
	SetUserIdAndSecContext(h->run_as, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", handler_search_path, PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);

	if (h->is_batch)
	{
		ArrayType  *arr = construct_array(run->msgs + lo, hi - lo, run->msg_type,
										  run->typlen, run->typbyval, run->typalign);

		InitFunctionCallInfoData(*fcinfo, &run->flinfo, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = PointerGetDatum(arr);
		fcinfo->args[0].isnull = false;
		(void) FunctionCallInvoke(fcinfo);
	}
	else
	{
		for (int i = lo; i < hi; i++)
		{
			MemoryContext old = MemoryContextSwitchTo(run->call_cxt);

			InitFunctionCallInfoData(*fcinfo, &run->flinfo, 1, InvalidOid, NULL, NULL);
			fcinfo->args[0].value = run->msgs[i];
			fcinfo->args[0].isnull = false;
			(void) FunctionCallInvoke(fcinfo);
			MemoryContextSwitchTo(old);
			MemoryContextReset(run->call_cxt);
		}
	}

	AtEOXact_GUC(true, nest);
	SetUserIdAndSecContext(save_uid, save_sec);
}

/*
 * Runs msgs[lo, hi) in one subtransaction under handler_timeout. On error
 * rolls the subtransaction back and returns false with the error text.
 */
static bool
try_range(ChunkRun *run, int lo, int hi, char **reason)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		enable_timeout_after(STATEMENT_TIMEOUT, pqw_handler_timeout_ms);
		call_handler(run, lo, hi);
		disable_timeout(STATEMENT_TIMEOUT, false);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		disable_timeout(STATEMENT_TIMEOUT, false);
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			run->timed_out = true;
		*reason = pstrdup(edata->message ? edata->message : "handler failed");
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return ok;
}

static void
add_failure(ChunkRun *run, int index, char *reason)
{
	run->fails[run->nfail].index = index;
	run->fails[run->nfail].reason = reason;
	run->nfail++;
}

/* Finds the failing messages of a failed range by bisection (per message
 * once a timeout was seen: halving a hung handler costs a timeout a level). */
static void
isolate(ChunkRun *run, int lo, int hi, char *reason)
{
	if (hi - lo == 1)
	{
		add_failure(run, lo, reason);
		return;
	}
	if (run->timed_out && !run->h->is_batch)
	{
		for (int i = lo; i < hi; i++)
		{
			char	   *why;

			if (!try_range(run, i, i + 1, &why))
				add_failure(run, i, why);
		}
		return;
	}
	{
		int			mid = lo + (hi - lo) / 2;
		char	   *why;

		if (!try_range(run, lo, mid, &why))
			isolate(run, lo, mid, why);
		if (!try_range(run, mid, hi, &why))
			isolate(run, mid, hi, why);
	}
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

static void
open_batch(Handler *h, ChunkResult *res)
{
	Datum		args[2];
	Oid			types[2] = {TEXTOID, TEXTOID};
	Oid			ctypes[2] = {INT8OID, INT8OID};
	bool		isnull;
	int64		batch_id;
	int64		after = 0;
	Portal		portal;

	args[0] = CStringGetTextDatum(h->queue);
	args[1] = CStringGetTextDatum(h->consumer);
	arm();
	if (pqw_exec_cached(next_batch_sql, 2, types, args, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "pgque.next_batch() returned no row");
	batch_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
	{
		disarm();
		res->no_batch = true;
		return;
	}

	/* Progress recorded by a chunk of this batch that committed earlier. */
	if (pqw_exec_cached(progress_sql, 2, types, args, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		bool		n1,
					n2;
		int64		b = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &n1));
		int64		last = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &n2));

		if (!n1 && !n2 && b == batch_id)
			after = last;
	}

	args[0] = Int64GetDatum(batch_id);
	args[1] = Int64GetDatum(after);
	close_cursor_if_open(h->portal);
	portal = pqw_cursor_open_cached(h->portal, batch_cursor_sql, 2, ctypes, args,
									CURSOR_OPT_HOLD | CURSOR_OPT_NO_SCROLL);
	if (portal == NULL)
		elog(ERROR, "could not open a cursor over batch " INT64_FORMAT, batch_id);
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

static void
chunk_fn(void *arg)
{
	ChunkResult *res = (ChunkResult *) arg;
	Handler    *h = res->h;
	ChunkRun	run;
	Portal		portal;
	SPITupleTable *tt;
	int64		last_id = 0;
	TimestampTz t0;
	Datum		sargs[10];
	char		snulls[10];
	Oid			stypes[10] = {TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID, FLOAT8OID,
		INT8OID, INT8OID, INT8OID, TEXTOID};

	if (h->needs_close)
	{
		close_cursor_if_open(h->portal);
		h->needs_close = false;
	}
	check_handler_usable(h);

	if (!h->cursor_open)
	{
		open_batch(h, res);
		if (res->no_batch)
			return;
	}

	portal = SPI_cursor_find(h->portal);
	if (portal == NULL)
		elog(ERROR, "cursor over batch " INT64_FORMAT " is gone", h->batch_id);
	SPI_cursor_fetch(portal, true, pqw_chunk_messages);
	tt = SPI_tuptable;
	res->n = (int64) SPI_processed;

	memset(&run, 0, sizeof(run));
	run.h = h;
	run.n = (int) res->n;
	run.msgs = (Datum *) palloc(sizeof(Datum) * (run.n > 0 ? run.n : 1));
	run.fails = (Failure *) palloc(sizeof(Failure) * (run.n > 0 ? run.n : 1));
	run.msg_type = msg_typoid;
	get_typlenbyvalalign(msg_typoid, &run.typlen, &run.typbyval, &run.typalign);
	for (int i = 0; i < run.n; i++)
	{
		bool		isnull;

		run.msgs[i] = SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull);
		last_id = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull));
	}

	t0 = GetCurrentTimestamp();
	if (run.n > 0)
	{
		char	   *why;

		fmgr_info(h->func, &run.flinfo);
		run.call_cxt = AllocSetContextCreate(CurrentMemoryContext, "pgque_worker handler call",
											 ALLOCSET_SMALL_SIZES);
		if (!try_range(&run, 0, run.n, &why))
			isolate(&run, 0, run.n, why);
	}
	res->handler_secs = (double) (GetCurrentTimestamp() - t0) / 1000000.0;
	res->nfail = run.nfail;
	res->nok = run.n - run.nfail;

	if (run.nfail > 0)
		nack_failures(&run, h->batch_id);

	res->finished = res->n < pqw_chunk_messages;
	arm();
	if (res->finished)
	{
		Datum		a = Int64GetDatum(h->batch_id);
		Oid			t = INT8OID;

		if (pqw_exec_cached(ack_sql, 1, &t, &a, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "pgque.ack() failed");
		SPI_cursor_close(portal);
	}

	/* Stats and progress, in the same transaction as the chunk's effects. */
	memset(snulls, ' ', sizeof(snulls));
	sargs[0] = CStringGetTextDatum(h->queue);
	sargs[1] = CStringGetTextDatum(h->consumer);
	sargs[2] = Int64GetDatum(res->finished ? 1 : 0);
	sargs[3] = Int64GetDatum(res->nok);
	sargs[4] = Int64GetDatum(res->nfail);
	sargs[5] = Float8GetDatum(res->handler_secs);
	sargs[6] = Int64GetDatum(h->batch_id);
	sargs[7] = Int64GetDatum(last_id);
	sargs[8] = Int64GetDatum(res->n);
	sargs[9] = run.nfail > 0 ? CStringGetTextDatum(run.fails[0].reason) : (Datum) 0;
	if (res->finished)
		snulls[6] = snulls[7] = snulls[8] = 'n';
	if (run.nfail == 0)
		snulls[9] = 'n';
	if (pqw_exec_cached(stat_sql, 10, stypes, sargs, snulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record handler progress");
	disarm();

	/* What the subtransaction cache of this backend holds at commit. */
	res->max_subxids = MyProc->subxidStatus.count;
	res->overflowed = MyProc->subxidStatus.overflowed;

	if (res->finished)
		h->cursor_open = false;
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
	char		line[PQW_ERRLEN];
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
	(void) pqw_call(stat_error_sql, 3, types, args, pqw_statement_timeout_ms, &r2);
}

static void
account(const ChunkResult *res)
{
	PqwSlot    *s = &pqw_shared->slots[my_slot];

	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	s->batches += res->finished ? 1 : 0;
	s->messages_ok += res->nok;
	s->messages_nacked += res->nfail;
	/* the happy path's figure: isolating failures needs more, by design */
	if (res->nfail == 0 && res->max_subxids > s->max_subxids)
		s->max_subxids = res->max_subxids;
	if (res->overflowed)
		s->subxid_overflows++;
	s->last_call_at = GetCurrentTimestamp();
	LWLockRelease(pqw_shared->lock);
}

/* One chunk of one handler. Returns true if it did some work. */
static bool
dispatch_one(Handler *h)
{
	ChunkResult res;
	PqwCallResult r;
	char		activity[256];
	pqw::Millis now = pqw::monotonic_ms();

	if (now < h->next_try)
		return false;
	memset(&res, 0, sizeof(res));
	res.h = h;
	snprintf(activity, sizeof(activity), "pgque_worker: dispatching queue %s to %s",
			 h->queue, h->consumer);
	/* timeouts are armed inside, per step */
	if (!pqw_in_transaction(activity, chunk_fn, &res, 0, &r))
	{
		if (h->cursor_open)
			h->needs_close = true;
		h->cursor_open = false;
		h->failures++;
		{
			pqw::BackoffPolicy p;

			p.base_ms = 1000;
			p.cap_ms = 60000;
			h->next_try = pqw::monotonic_ms() + pqw::backoff_delay(p, h->failures, (uint32) random());
		}
		record_error(h, &r);
		return false;
	}
	if (h->failures > 0 && h->limiter.on_success())
		ereport(LOG,
				(errmsg("pgque_worker: dispatching queue \"%s\" to consumer \"%s\" works again in database \"%s\"",
						h->queue, h->consumer, my_dbname)));
	h->failures = 0;
	if (res.no_batch)
		return false;
	account(&res);
	return true;
}

static bool
reload_requested(void)
{
	bool		reload;

	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	reload = pqw_shared->slots[my_slot].reload_handlers;
	pqw_shared->slots[my_slot].reload_handlers = false;
	LWLockRelease(pqw_shared->lock);
	return reload;
}

static void
leave_no_handlers(void)
{
	int			t;

	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	pqw_shared->slots[my_slot].state = PQW_STATE_NO_HANDLERS;
	t = pqw_find_slot(MyDatabaseId, PQW_KIND_TICKER);
	if (t >= 0)
		pqw_shared->slots[t].want_dispatcher = false;
	LWLockRelease(pqw_shared->lock);
	ereport(LOG, (errmsg("pgque_worker: no enabled handlers in database \"%s\", dispatcher stops",
						 my_dbname)));
	proc_exit(0);
}

PQW_EXPORT void
pqw_dispatcher_main(Datum main_arg)
{
	MemoryContext loop_cxt;
	PqwSlot    *s;
	pqw::Millis last_load;
	char		start_role[NAMEDATALEN];

	my_slot = pqw_worker_connect(main_arg, "pgque_worker dispatcher");
	strlcpy(start_role, pqw_role ? pqw_role : "", sizeof(start_role));

	s = &pqw_shared->slots[my_slot];
	pqw_slot_attach(my_slot, PQW_STATE_RUNNING, my_dbname);

	handlers_cxt = AllocSetContextCreate(TopMemoryContext, "pgque_worker handlers",
										 ALLOCSET_DEFAULT_SIZES);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pgque_worker dispatcher loop",
									 ALLOCSET_DEFAULT_SIZES);
	load_handlers();
	last_load = pqw::monotonic_ms();
	if (nhandlers == 0)
		leave_no_handlers();
	ereport(LOG, (errmsg("pgque_worker: dispatcher started for database \"%s\" with %d handlers",
						 my_dbname, nhandlers)));

	for (;;)
	{
		bool		worked = false;

		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (strcmp(start_role, pqw_role ? pqw_role : "") != 0)
			{
				/* the launcher starts us again as the new role */
				ereport(LOG,
						(errmsg("pgque_worker: pgque_worker.role changed, dispatcher for database \"%s\" restarts",
								my_dbname)));
				proc_exit(0);
			}
		}
		if (!pqw_enabled || pqw_database_paused)
		{
			if (s->state != PQW_STATE_PAUSED)
				pqw_slot_set_state(my_slot, PQW_STATE_PAUSED);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 pqw_discovery_interval_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}
		if (RecoveryInProgress())
		{
			pqw_slot_set_state(my_slot, PQW_STATE_STANDBY);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 1000, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}
		if (reload_requested() || pqw::monotonic_ms() - last_load > 60000)
		{
			load_handlers();
			last_load = pqw::monotonic_ms();
			if (nhandlers == 0)
				leave_no_handlers();
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
			if (s->state != (failing ? PQW_STATE_BACKOFF : PQW_STATE_RUNNING))
				pqw_slot_set_state(my_slot, failing ? PQW_STATE_BACKOFF : PQW_STATE_RUNNING);
		}
		if (worked)
			continue;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 pqw_dispatch_poll_interval_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
