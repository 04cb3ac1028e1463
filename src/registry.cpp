/*
 * registry.cpp: SQL-callable helpers of handler registration.
 *
 * pgque_worker._queue_exists(queue) and _consumer_exists(queue, consumer):
 * register_handler() checks the queue and the consumer before it subscribes. The caller (a pgque_reader member) may not be
 * allowed to run PgQue's get_queue_info() itself, and running PgQue's code
 * as this function's owner (a superuser) would hand a tenant who owns
 * schema pgque a superuser's rights. So it runs as the owner of schema
 * pgque, security-restricted, like every other PgQue call (spi_txn.h).
 *
 * pgque_worker._delete_handler(queue, consumer): unregister_handler()'s
 * delete. PUBLIC has no DELETE on the registry table (DELETE would let it
 * LOCK the table), so the row is deleted as the table's owner, and only if
 * the calling role may act as the role the handler runs as: the rule of
 * the table's row policy, checked for the caller, not for the owner.
 */
#include "pg.h"
#include "catalog/pg_class.h"
#include "spi_txn.h"
#include "trust.h"

extern "C" {
PG_FUNCTION_INFO_V1(pqw_queue_exists);
PG_FUNCTION_INFO_V1(pqw_consumer_exists);
PG_FUNCTION_INFO_V1(pqw_delete_handler);
PG_FUNCTION_INFO_V1(pqw_pgque_metrics);
}

/* Runs `sql` (a SELECT) with `nargs` text arguments as the owner of
 * schema pgque, security-restricted, and hands its rows (SPI_tuptable) to
 * read(arg). `sql` reads PgQue's tables and calls none of its PL/pgSQL:
 * this runs in the caller's backend, where the caller may have compiled
 * PgQue's functions first, under a search_path naming its own types (a
 * domain whose CHECK would then run as PgQue's owner; found by a review). */
static void
read_pgque(const char *sql, int nargs, Datum *args, void (*read) (void *arg), void *arg)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	PqwAs		as;

	Assert(nargs <= 2);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* raises when PgQue here is missing or untrusted */
	pqw_begin_as(PQW_AS_PGQUE_OWNER, PQW_PINNED_SEARCH_PATH, &as);
	PG_TRY();
	{
		if (SPI_execute_with_args(sql, nargs, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read PgQue: %s", sql);
		read(arg);
	}
	PG_CATCH();
	{
		/* A handler may catch this error and go on: the abort of its
		 * subtransaction restores the user and the settings, not our
		 * guard, which must not stay on for the handler's own queries. */
		pqw_restore_guard(&as);
		PG_RE_THROW();
	}
	PG_END_TRY();
	pqw_end_as(&as);
	SPI_finish();
}

static void
read_bool(void *arg)
{
	bool		isnull;

	if (SPI_processed != 1)
		elog(ERROR, "could not ask PgQue: %d rows", (int) SPI_processed);
	*(bool *) arg = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) &&
		!isnull;
}

/* `sql` (returning one boolean) as the owner of schema pgque. */
static bool
ask_pgque(const char *sql, int nargs, Datum *args)
{
	bool		answer = false;

	read_pgque(sql, nargs, args, read_bool, &answer);
	return answer;
}

PQW_EXPORT Datum
pqw_queue_exists(PG_FUNCTION_ARGS)
{
	Datum		args[1] = {PG_GETARG_DATUM(0)};

	PG_RETURN_BOOL(ask_pgque("select exists (select 1 from pgque.queue q"
							 " where q.queue_name operator(pg_catalog.=) $1)", 1, args));
}

PQW_EXPORT Datum
pqw_consumer_exists(PG_FUNCTION_ARGS)
{
	Datum		args[2] = {PG_GETARG_DATUM(0), PG_GETARG_DATUM(1)};

	PG_RETURN_BOOL(ask_pgque("select exists (select 1 from pgque.queue q, pgque.consumer c,"
							 " pgque.subscription s where q.queue_name operator(pg_catalog.=) $1"
							 " and c.co_name operator(pg_catalog.=) $2"
							 " and s.sub_queue operator(pg_catalog.=) q.queue_id"
							 " and s.sub_consumer operator(pg_catalog.=) c.co_id)", 2, args));
}

PQW_EXPORT Datum
pqw_delete_handler(PG_FUNCTION_ARGS)
{
	/* the role calling: the session's, or a SECURITY DEFINER caller's owner */
	Oid			caller = GetUserId();
	Oid			rel = pqw_extension_relation("pgque_worker", "pgque_worker_internal", "handler");
	Oid			owner;
	HeapTuple	tup;
	Datum		args[3] = {PG_GETARG_DATUM(0), PG_GETARG_DATUM(1), ObjectIdGetDatum(caller)};
	Oid			argtypes[3] = {TEXTOID, TEXTOID, OIDOID};
	PqwAs		as;
	uint64		deleted;

	if (!OidIsValid(rel))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table pgque_worker_internal.handler of extension pgque_worker does not exist")));
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", rel);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* the delete trigger (ours, SECURITY DEFINER) runs as it would anyway */
	pqw_begin_as(owner, PQW_PINNED_SEARCH_PATH, &as);
	if (SPI_execute_with_args("delete from pgque_worker_internal.handler h"
							  " where h.queue_name = $1 and h.consumer_name = $2"
							  "   and pg_has_role($3, h.run_as::oid, 'member')",
							  3, argtypes, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete from pgque_worker_internal.handler");
	deleted = SPI_processed;
	pqw_end_as(&as);
	SPI_finish();
	PG_RETURN_BOOL(deleted > 0);
}

/*
 * pgque_worker._pgque_metrics(): the queue figures of metrics_view, read
 * from PgQue's tables as the owner of schema pgque (none of PgQue's code
 * runs: before, metrics_view called pgque.get_queue_info() and
 * get_consumer_info() with the caller's rights, so a monitoring superuser
 * scraping it ran code PgQue's owner could replace). Rows of (metric,
 * queue, consumer, value); none where PgQue is missing or untrusted.
 */
static const char *const metrics_sql =
	"with q as (select q.queue_id, q.queue_name, q.queue_event_seq,"
	"  (select t.tick_time from pgque.tick t where t.tick_queue operator(pg_catalog.=) q.queue_id"
	"    order by t.tick_id desc limit 1) as tick_time,"
	"  (select t.tick_event_seq from pgque.tick t where t.tick_queue operator(pg_catalog.=) q.queue_id"
	"    order by t.tick_id desc limit 1) as tick_event_seq"
	"  from pgque.queue q)"
	" select 'ticker_lag'::pg_catalog.text, q.queue_name, null::pg_catalog.text,"
	"  pg_catalog.date_part('epoch', pg_catalog.now() operator(pg_catalog.-) q.tick_time)::pg_catalog.float8"
	" from q"
	" union all"
	" select 'new_events', q.queue_name, null,"
	"  (coalesce(pg_catalog.pg_sequence_last_value(pg_catalog.to_regclass(q.queue_event_seq)),"
	"    q.tick_event_seq) operator(pg_catalog.-) q.tick_event_seq)::pg_catalog.float8"
	" from q"
	" union all"
	" select 'dead_letters', q.queue_name, null,"
	"  (select pg_catalog.count(*) from pgque.dead_letter dl"
	"    where dl.dl_queue_id operator(pg_catalog.=) q.queue_id)::pg_catalog.float8"
	" from q"
	" union all"
	" select 'consumer_lag', q.queue_name, c.co_name,"
	"  pg_catalog.date_part('epoch', pg_catalog.now() operator(pg_catalog.-) t.tick_time)::pg_catalog.float8"
	" from pgque.subscription s"
	" join pgque.queue q on q.queue_id operator(pg_catalog.=) s.sub_queue"
	" join pgque.consumer c on c.co_id operator(pg_catalog.=) s.sub_consumer"
	" left join pgque.tick t on t.tick_queue operator(pg_catalog.=) s.sub_queue"
	"  and t.tick_id operator(pg_catalog.=) s.sub_last_tick";

static void
read_metrics(void *arg)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) arg;

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		Datum		values[4];
		bool		nulls[4];

		for (int c = 0; c < 4; c++)
			values[c] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, c + 1, &nulls[c]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

PQW_EXPORT Datum
pqw_pgque_metrics(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PqwTrust	t;

	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	t = pqw_pgque_trust();
	SPI_finish();
	if (t == PQW_TRUST_OK)
		read_pgque(metrics_sql, 0, NULL, read_metrics, rsinfo);
	return (Datum) 0;
}
