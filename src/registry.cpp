/*
 * registry.cpp: SQL-callable helpers of handler registration.
 *
 * pgque_worker._queue_exists(queue) and _consumer_exists(queue, consumer):
 * register_handler() checks the queue and the consumer before it subscribes. The caller (a pgque_reader member) may not be
 * allowed to run PgQue's get_queue_info() itself, and running PgQue's code
 * as this function's owner (a superuser) would hand a tenant who owns
 * schema pgque a superuser's rights. So it runs as the owner of schema
 * pgque, security-restricted, like every other PgQue call (spi_txn.h).
 */
#include "pg.h"
#include "spi_txn.h"

extern "C" {
PG_FUNCTION_INFO_V1(pqw_queue_exists);
PG_FUNCTION_INFO_V1(pqw_consumer_exists);
}

/* Runs `sql` (returning one boolean) with `nargs` text arguments as the
 * owner of schema pgque, security-restricted. */
static bool
ask_pgque(const char *sql, int nargs, Datum *args)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	PqwAs		as;
	bool		answer;
	bool		isnull;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* raises when PgQue here is missing or untrusted */
	pqw_begin_as(PQW_AS_PGQUE_OWNER, PQW_PINNED_SEARCH_PATH, &as);
	if (SPI_execute_with_args(sql, nargs, argtypes, args, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not ask PgQue: %s", sql);
	answer = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	pqw_end_as(&as);
	SPI_finish();
	return answer && !isnull;
}

PQW_EXPORT Datum
pqw_queue_exists(PG_FUNCTION_ARGS)
{
	Datum		args[1] = {PG_GETARG_DATUM(0)};

	PG_RETURN_BOOL(ask_pgque("select exists (select 1 from pgque.get_queue_info() q"
							 " where q.queue_name = $1)", 1, args));
}

PQW_EXPORT Datum
pqw_consumer_exists(PG_FUNCTION_ARGS)
{
	Datum		args[2] = {PG_GETARG_DATUM(0), PG_GETARG_DATUM(1)};

	PG_RETURN_BOOL(ask_pgque("select exists (select 1 from pgque.get_consumer_info($1, $2))",
							 2, args));
}
