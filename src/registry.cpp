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
}

/* Runs `sql` (returning one boolean) with `nargs` text arguments as the
 * owner of schema pgque, security-restricted. `sql` reads PgQue's tables
 * and calls none of its PL/pgSQL: this runs in the caller's backend, where
 * the caller may have compiled PgQue's functions first, under a
 * search_path naming its own types (a domain whose CHECK would then run
 * as PgQue's owner; found by a review). */
static bool
ask_pgque(const char *sql, int nargs, Datum *args)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	PqwAs		as;
	volatile bool answer = false;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* raises when PgQue here is missing or untrusted */
	pqw_begin_as(PQW_AS_PGQUE_OWNER, PQW_PINNED_SEARCH_PATH, &as);
	PG_TRY();
	{
		bool		isnull;

		if (SPI_execute_with_args(sql, nargs, argtypes, args, NULL, true, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "could not ask PgQue: %s", sql);
		answer = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) &&
			!isnull;
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
