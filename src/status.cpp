/*
 * status.cpp: SQL-callable functions that read shared memory:
 * pgque_worker.status() and pgque_worker.wake_launcher().
 */
#include "pg.h"
#include "shmem.h"

extern "C" {
PG_FUNCTION_INFO_V1(pqw_status);
PG_FUNCTION_INFO_V1(pqw_wake);
}

#define STATUS_COLS 25

static Datum
ts_or_null(TimestampTz t, bool *isnull)
{
	*isnull = (t == 0);
	return TimestampTzGetDatum(t);
}

/* One row per slot in use: a copy is taken under the lock, then emitted. */
PQW_EXPORT Datum
pqw_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PqwSlotStatus *copy;
	int			n = 0;

	if (pqw_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pgque_worker is not loaded"),
				 errhint("Add pgque_worker to shared_preload_libraries and restart the server.")));

	InitMaterializedSRF(fcinfo, 0);
	copy = pqw_slots_status(&n);

	for (int i = 0; i < n; i++)
	{
		Datum		values[STATUS_COLS];
		bool		nulls[STATUS_COLS];
		const PqwSlotStatus *s = &copy[i];
		int			c = 0;

		memset(nulls, 0, sizeof(nulls));
		values[c++] = CStringGetTextDatum(s->dbname);
		values[c++] = CStringGetTextDatum(pqw_kind_name(s->kind));
		nulls[c] = (s->pid == 0);
		values[c++] = Int32GetDatum(s->pid);
		values[c++] = CStringGetTextDatum(pqw_state_name(s->state));
		values[c] = ts_or_null(s->started_at, &nulls[c]);
		c++;
		values[c] = ts_or_null(s->last_tick_at, &nulls[c]);
		c++;
		values[c++] = Int64GetDatum(s->tick_calls);
		values[c++] = Int64GetDatum(s->ticks);
		values[c++] = Int64GetDatum(s->retry_calls);
		values[c++] = Int64GetDatum(s->retry_moved);
		values[c++] = Int64GetDatum(s->retry_last_drain);
		values[c++] = Int64GetDatum(s->maint_runs);
		values[c++] = Int64GetDatum(s->rotate_runs);
		values[c++] = Int64GetDatum(s->errors);
		nulls[c] = (s->last_error[0] == '\0');
		values[c++] = CStringGetTextDatum(s->last_error);
		values[c] = ts_or_null(s->last_error_at, &nulls[c]);
		c++;
		values[c] = ts_or_null(s->last_call_at, &nulls[c]);
		c++;
		values[c++] = Int64GetDatum(s->batches);
		values[c++] = Int64GetDatum(s->messages_ok);
		values[c++] = Int64GetDatum(s->messages_nacked);
		values[c++] = Int32GetDatum(s->max_subxids);
		values[c++] = Int64GetDatum(s->subxid_overflows);
		values[c++] = Int64GetDatum(s->wakeups);
		values[c++] = Float8GetDatum((double) s->tick_us_sum / 1000000.0);
		values[c++] = Float8GetDatum((double) s->tick_us_max / 1000000.0);
		Assert(c == STATUS_COLS);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* Asks the launcher to look at databases and workers now, and to probe
 * the databases found without PgQue again (not sooner than one
 * discovery_interval after their last probe). */
PQW_EXPORT Datum
pqw_wake(PG_FUNCTION_ARGS)
{
	(void) fcinfo;
	pqw_request_probe(InvalidOid);
	pqw_wake_launcher();
	PG_RETURN_VOID();
}
