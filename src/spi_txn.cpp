/*
 * spi_txn.cpp: transactions around SPI calls, with timeouts, activity
 * reporting and error capture (see spi_txn.h).
 *
 * Plain C-style code on purpose: these functions contain PG_TRY blocks and
 * call functions that longjmp, so no C++ object with a destructor may live
 * in their frames.
 */
#include "spi_txn.h"

void
pqw_capture_error(MemoryContext keep, PqwCallResult *result)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(keep);
	edata = CopyErrorData();
	FlushErrorState();

	result->ok = false;
	result->sqlerrcode = edata->sqlerrcode;
	strlcpy(result->message, edata->message ? edata->message : "unknown error",
			sizeof(result->message));
	result->detail[0] = '\0';
	if (edata->detail)
		strlcpy(result->detail, edata->detail, sizeof(result->detail));
	if (edata->context)
	{
		size_t		len = strlen(result->detail);

		if (len > 0 && len + 2 < sizeof(result->detail))
		{
			strlcat(result->detail, "; ", sizeof(result->detail));
		}
		strlcat(result->detail, edata->context, sizeof(result->detail));
	}
	FreeErrorData(edata);
}

/* Integer value of a result column; false for other types (void, ...). */
static bool
datum_to_int64(Datum d, Oid type, int64 *out)
{
	switch (type)
	{
		case INT8OID:
			*out = DatumGetInt64(d);
			return true;
		case INT4OID:
			*out = DatumGetInt32(d);
			return true;
		case INT2OID:
			*out = DatumGetInt16(d);
			return true;
		case BOOLOID:
			*out = DatumGetBool(d) ? 1 : 0;
			return true;
		default:
			*out = 0;
			return false;
	}
}

typedef struct CallArgs
{
	const char *sql;
	int			nargs;
	Oid		   *argtypes;
	Datum	   *values;
	PqwCallResult *result;
} CallArgs;

static void
call_fn(void *arg)
{
	CallArgs   *a = (CallArgs *) arg;
	int			rc;

	rc = SPI_execute_with_args(a->sql, a->nargs, a->argtypes, a->values,
							   NULL, false, 1);
	if (rc < 0)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0 && SPI_tuptable != NULL)
	{
		TupleDesc	desc = SPI_tuptable->tupdesc;
		HeapTuple	tup = SPI_tuptable->vals[0];
		int			n = desc->natts < PQW_MAX_COLS ? desc->natts : PQW_MAX_COLS;

		a->result->has_row = true;
		for (int i = 0; i < n; i++)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(tup, desc, i + 1, &isnull);

			a->result->value[i] = 0;
			/* a column of another type (e.g. void) reads as NULL */
			a->result->isnull[i] = isnull ||
				!datum_to_int64(d, TupleDescAttr(desc, i)->atttypid, &a->result->value[i]);
		}
	}
}

bool
pqw_call(const char *sql, int nargs, Oid *argtypes, Datum *values,
		 int timeout_ms, PqwCallResult *result)
{
	CallArgs	args;

	args.sql = sql;
	args.nargs = nargs;
	args.argtypes = argtypes;
	args.values = values;
	args.result = result;
	return pqw_in_transaction(sql, call_fn, &args, timeout_ms, result);
}

bool
pqw_in_transaction(const char *activity, PqwTxnFn fn, void *arg,
				   int timeout_ms, PqwCallResult *result)
{
	MemoryContext volatile keep = CurrentMemoryContext;
	volatile bool ok = false;

	memset(result, 0, sizeof(*result));
	for (int i = 0; i < PQW_MAX_COLS; i++)
		result->isnull[i] = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, activity);
		debug_query_string = activity;
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		/* SPI does not arm statement_timeout in a background worker. */
		if (timeout_ms > 0)
			enable_timeout_after(STATEMENT_TIMEOUT, timeout_ms);
		fn(arg);
		disable_timeout(STATEMENT_TIMEOUT, false);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		ok = true;
	}
	PG_CATCH();
	{
		HOLD_INTERRUPTS();
		disable_timeout(STATEMENT_TIMEOUT, false);
		pqw_capture_error(keep, result);
		AbortCurrentTransaction();
		RESUME_INTERRUPTS();
	}
	PG_END_TRY();

	MemoryContextSwitchTo(keep);
	debug_query_string = NULL;
	pgstat_report_activity(STATE_IDLE, NULL);
	pgstat_report_stat(false);
	result->ok = ok;
	return ok;
}
