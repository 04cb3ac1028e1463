/*
 * ticker.cpp: the database worker that schedules PgQue.
 *
 * One per served database. Each pass of its loop runs at most one call of
 * each due job, in this order, each in its own transaction:
 *   tick    select pgque.ticker()                        every tick period
 *   retry   select pgque.maint_retry_events()            every retry_interval,
 *           repeated (one call per pass) until it returns 0 or the drain
 *           reaches retry_max_calls, so ticking goes on during a flood
 *   maint   select pgque.maint()                         every maint_interval
 *   rotate  select pgque.maint_rotate_tables_step2()     every rotate_interval
 * A failed call is logged (rate-limited), recorded in the slot, and the job
 * backs off; the loop never ends on an error. The worker leaves (exit 0)
 * when the database has no PgQue, so it never holds such a database open.
 */
#include "ticker.h"

#include "guc.h"
#include "launcher.h"
#include "worker.h"
#include "shmem.h"
#include "spi_txn.h"
#include "trust.h"

#include "core/backoff.hpp"
#include "core/clock.hpp"
#include "core/log_limiter.hpp"
#include "core/schedule.hpp"
#include "core/tick_scope.hpp"

/* the jobs, as shmem.h counts them */
typedef PqwJob JobId;
#define JOB_TICK PQW_JOB_TICK
#define JOB_RETRY PQW_JOB_RETRY
#define JOB_MAINT PQW_JOB_MAINT
#define JOB_ROTATE PQW_JOB_ROTATE
#define NUM_JOBS PQW_NUM_JOBS

typedef struct Job
{
	const char *name;
	PqwStatement *stmt;
	pqw::PeriodicJob timer;
	pqw::LogLimiter limiter;
	int			drain_calls;	/* retry: calls in the current drain */
} Job;

static PqwStatement tick_sql = PQW_STATEMENT("select pgque.ticker()");
static PqwStatement tick_config_sql = PQW_STATEMENT(
	"select pgque.ticker(), (select c.tick_period_ms from pgque.config c limit 1)");

static pqw::PeriodicJob handlers_check;	/* handlers? another scheduler? */

static PqwWorker me;
#define my_slot (me.slot)
#define my_dbname (me.dbname)
static Job	jobs[NUM_JOBS];
static int	config_tick_period_ms = 100;	/* last read of pgque.config */
static pqw::Millis last_tick_call = 0;	/* end of the last ticker() call */
static pqw::LogLimiter policy_limiter;
/*
 * A commit woke us and no tick has materialized since. An event whose
 * sequence value was taken before a tick but which committed after it is
 * not "new" to PgQ's next ticker() call; it waits for the queue's idle
 * tick. While this is set, idle ticks follow PgQue's policy alone instead
 * of the tick-period grid, so such an event is not held back a period.
 */
static bool commit_since_tick = false;

/*
 * With wake_on_commit: when could the next tick be due, by PgQue's own
 * policy (pgque.ticker(queue)): a queue with new events ticks once it has
 * ticker_max_count of them or its last tick is ticker_max_lag old; an idle
 * queue once its last tick is older than max(ticker_max_lag / 2,
 * min(2 * previous gap, ticker_idle_period)), or at once if it has fewer
 * than two ticks. Returns milliseconds from now, for queues with pending
 * events and for idle queues (NULL when there are none), the queues with
 * pending events (a pqw::QueueSet) and how many queues it read.
 *
 * Run as PgQue's owner; every operator has an exact built-in match
 * (numeric * numeric, interval / float8, float8 * interval), so no operator
 * created in a schema on some search_path could be picked instead.
 */
#define POLICY_SELECT \
	"select pg_catalog.ceil(extract(epoch from pg_catalog.min(d) filter (where pending)) * 1000::numeric)::int8," \
	"       pg_catalog.ceil(extract(epoch from pg_catalog.min(d) filter (where not pending)) * 1000::numeric)::int8" \
	PENDING_WORDS ", pg_catalog.count(*)" \
	"  from (select coalesce(q.ev_new, 0) > 0 as pending," \
	"         q0.queue_id::int4 operator(pg_catalog.%) 1024 as r," \
	"         greatest(case" \
	"           when q.ev_new >= q.queue_ticker_max_count then interval '0'" \
	"           when q.ev_new > 0 then q.queue_ticker_max_lag - q.ticker_lag" \
	"           when g.gap is null then interval '0'" \
	"           else greatest(q.queue_ticker_max_lag / 2::float8," \
	"                         least(2::float8 * g.gap, q.queue_ticker_idle_period)) - q.ticker_lag" \
	"         end, interval '0') as d" \
	"    from " POLICY_SOURCE \
	"    left join lateral (" \
	"      select t1.tick_time - t2.tick_time as gap" \
	"        from pgque.queue qq" \
	"        cross join lateral (select t.tick_id, t.tick_time from pgque.tick t" \
	"                             where t.tick_queue = qq.queue_id" \
	"                             order by t.tick_id desc limit 1) t1" \
	"        cross join lateral (select t.tick_time from pgque.tick t" \
	"                             where t.tick_queue = qq.queue_id and t.tick_id < t1.tick_id" \
	"                             order by t.tick_id desc limit 1) t2" \
	"       where qq.queue_name = q.queue_name) g on true" \
	"   where " POLICY_FILTER " not q.queue_ticker_paused and not q.queue_external_ticker) s"

/* The queues with pending events, as the 16 words of a pqw::QueueSet. */
#define PENDING_WORD(w) \
	", pg_catalog.bit_or(1::int8 operator(pg_catalog.<<) (r operator(pg_catalog.%) 64))" \
	" filter (where pending and r operator(pg_catalog./) 64 operator(pg_catalog.=) " #w ")"
#define PENDING_WORDS \
	PENDING_WORD(0) PENDING_WORD(1) PENDING_WORD(2) PENDING_WORD(3) \
	PENDING_WORD(4) PENDING_WORD(5) PENDING_WORD(6) PENDING_WORD(7) \
	PENDING_WORD(8) PENDING_WORD(9) PENDING_WORD(10) PENDING_WORD(11) \
	PENDING_WORD(12) PENDING_WORD(13) PENDING_WORD(14) PENDING_WORD(15)

/* Queues named by their queue_id % 1024 in $1 (core/queue_set.hpp). */
#define QUEUE_IN_SET(alias) \
	"(" alias ".queue_id::int4 operator(pg_catalog.%) 1024) operator(pg_catalog.=) any ($1::int4[])"

/* Every queue; */
#define POLICY_SOURCE \
	"pgque.get_queue_info() q join pgque.queue q0 on q0.queue_name operator(pg_catalog.=) q.queue_name"
#define POLICY_FILTER ""
static PqwStatement policy_sql = PQW_STATEMENT(POLICY_SELECT);
#undef POLICY_SOURCE
#undef POLICY_FILTER
/* or the queues a commit named (TickScope). */
#define POLICY_SOURCE \
	"(select qz.queue_id, qz.queue_name from pgque.queue qz where " QUEUE_IN_SET("qz") " offset 0) q0" \
	" cross join lateral pgque.get_queue_info(q0.queue_name) q"
#define POLICY_FILTER ""
static PqwStatement policy_some_sql = PQW_STATEMENT(POLICY_SELECT);
#undef POLICY_SOURCE
#undef POLICY_FILTER

/* The targeted tick: pgque.ticker(queue) (PgQue's per-queue policy) for
 * the queues a commit named, or for a slice of a full call; returns how
 * many ticked, as ticker() does. */
/* (OFFSET 0 keeps the planner from evaluating ticker() before the filter:
 * a view or an inlined function could move it first.) */
#define TICK_SOME_FROM \
	" from (select q.queue_name from pgque.queue q" \
	"   where " QUEUE_IN_SET("q") \
	"     and not q.queue_ticker_paused and not q.queue_external_ticker offset 0) s" \
	" where pgque.ticker(s.queue_name) operator(pg_catalog.>) 0"
static PqwStatement tick_some_sql = PQW_STATEMENT("select pg_catalog.count(*)" TICK_SOME_FROM);
/* A slice of a full call, also reading the tick period as tick_config_sql */
static PqwStatement tick_some_config_sql = PQW_STATEMENT(
	"select pg_catalog.count(*), (select c.tick_period_ms from pgque.config c limit 1)" TICK_SOME_FROM);

static pqw::TickScope tick_scope;	/* full or targeted tick */
static int64 last_full_call_us = 0;	/* the last full ticker() call took */
static pqw::Millis last_full_done = 0;	/* when it (its last slice) ended */
static int64 full_call_queues = 0;	/* the queues the last full call read */
static int64 slices_call_us = 0;	/* the slices of the full call so far took */

static int
tick_period_ms(void)
{
	return pqw_tick_period_ms > 0 ? pqw_tick_period_ms : config_tick_period_ms;
}

static int
job_period_ms(JobId id)
{
	switch (id)
	{
		case JOB_TICK:
			return tick_period_ms();
		case JOB_RETRY:
			return pqw_retry_interval_ms;
		case JOB_MAINT:
			return pqw_maint_interval_ms;
		case JOB_ROTATE:
			return pqw_rotate_interval_ms;
		default:
			return 1000;
	}
}

static int
job_timeout_ms(JobId id)
{
	return id == JOB_TICK ? pqw_ticker_timeout_ms : pqw_statement_timeout_ms;
}

static void
trust_fn(void *arg)
{
	*(PqwTrust *) arg = pqw_pgque_trust();
}

/* Is PgQue here, and may we call it? Leaving on a transient error would be
 * wrong, so an error counts as "trusted" (the calls then report it). */
static PqwTrust
pgque_trust(void)
{
	PqwCallResult r;
	PqwTrust	t = PQW_TRUST_OK;

	if (!pqw_in_transaction("pgque_worker: checking PgQue", PQW_AS_WORKER, trust_fn, &t,
							pqw_statement_timeout_ms, NULL, &r))
		return PQW_TRUST_OK;
	return t;
}

static void
leave_no_pgque(void)
{
	/* Probes of a database that had no PgQue before stay quiet. */
	bool		was_absent = pqw_slot_state(my_slot) == PQW_STATE_NO_PGQUE ||
		pqw_slot_tick_calls(my_slot) == 0;

	ereport(was_absent ? DEBUG1 : LOG,
			(errmsg("pgque_worker: database \"%s\" has no PgQue, ticker leaves it", my_dbname),
			 errhint("The launcher looks again after pgque_worker.discovery_interval, less often while PgQue stays absent, and sooner when schema pgque is created here.")));
	pqw_slot_set_state(my_slot, PQW_STATE_NO_PGQUE);
	proc_exit(0);
}

static bool
is_missing_object_error(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_UNDEFINED_FUNCTION ||
		sqlerrcode == ERRCODE_UNDEFINED_TABLE ||
		sqlerrcode == ERRCODE_INVALID_SCHEMA_NAME;
}

static char untrusted_reason[256] = "";	/* "" while PgQue here is trusted */

/* PgQue here has objects of other owners: call nothing, say so once. */
static void
enter_untrusted(void)
{
	/* whole here, cut at a character boundary by the slot */
	char		line[sizeof(untrusted_reason) + 16];

	if (strcmp(untrusted_reason, pqw_pgque_refusal()) != 0)
	{
		pqw_strlcpy_text(untrusted_reason, pqw_pgque_refusal(), sizeof(untrusted_reason));
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("pgque_worker: PgQue in database \"%s\" is untrusted, nothing is called there",
						my_dbname),
				 errdetail("%s; schema pgque belongs to role %s.", untrusted_reason,
						   pqw_pgque_owner_name()),
				 errhint("pgque_worker runs PgQue as the owner of schema pgque; give every object in it to that owner (or a superuser).")));
		snprintf(line, sizeof(line), "untrusted: %s", untrusted_reason);
		pqw_slot_set_error(my_slot, line);
	}
	pqw_slot_set_state(my_slot, PQW_STATE_UNTRUSTED);
}

/* After a failed call: was it PgQue going away or becoming untrusted? */
static void
check_trust_after_failure(int sqlerrcode)
{
	PqwTrust	t;

	if (!is_missing_object_error(sqlerrcode) && sqlerrcode != ERRCODE_INSUFFICIENT_PRIVILEGE)
		return;
	t = pgque_trust();
	if (t == PQW_TRUST_NO_PGQUE)
		leave_no_pgque();
	if (t == PQW_TRUST_REFUSED)
		enter_untrusted();
}

static void
report_failure(Job *job, const PqwCallResult *r, pqw::Millis now)
{
	/* whole here, cut at a character boundary by the slot */
	char		line[64 + sizeof(r->message)];
	pqw::LogDecision d;

	d = job->limiter.on_error(pqw::fingerprint(r->message, (uint64) r->sqlerrcode), now);
	snprintf(line, sizeof(line), "%s: %s", job->name, r->message);
	pqw_slot_set_error(my_slot, line);
	if (d == pqw::LogDecision::kSuppress)
		return;
	ereport(WARNING,
			(errcode(r->sqlerrcode),
			 errmsg("pgque_worker: %s failed in database \"%s\": %s",
					job->stmt->sql, my_dbname, r->message),
			 r->detail[0] ? errdetail_internal("%s", r->detail) : 0,
			 d == pqw::LogDecision::kLogRepeated ?
			 errhint("The same error happened %lld more times since it was last logged.",
					 (long long) job->limiter.suppressed()) :
			 errhint("It is retried with backoff; identical errors are logged at most once per pgque_worker.log_quiet_interval.")));
}

static void
report_recovery(Job *job)
{
	if (job->limiter.on_success())
		ereport(LOG,
				(errmsg("pgque_worker: %s works again in database \"%s\" after %lld failures",
						job->stmt->sql, my_dbname, (long long) job->limiter.failures_in_run())));
}

static pqw::Millis
backoff_ms(JobId id, int failures)
{
	pqw::BackoffPolicy p;
	int			period = job_period_ms(id);

	if (id == JOB_TICK)
	{
		p.base_ms = period > 100 ? period : 100;
		p.cap_ms = 10000;
	}
	else
	{
		p.base_ms = 1000;
		p.cap_ms = period > 1000 ? period : 1000;
	}
	return pqw::backoff_delay(p, failures, (uint32) random());
}

/* Counters of a successful call go to the slot. */
static void
account(JobId id, const PqwCallResult *r, bool drain_done, int64 call_us)
{
	pqw_ticker_counted(my_slot, id, (r->has_row && !r->isnull[0]) ? r->value[0] : 0,
					   drain_done, call_us);
}

/*
 * After a ticker() call with wake_on_commit: when PgQue's policy can first
 * want a tick (commits wake us earlier). `pending`: the queues with new
 * events, at their max_lag but never closer than min_tick_interval; they
 * get targeted calls. `idle`: idle ticks, on the tick-period grid (or at
 * once after a commit, see commit_since_tick), a full call spaced by what
 * it costs; never later than max_idle_interval.
 */
typedef struct PolicyDue
{
	bool		ok;
	pqw::Millis pending;
	pqw::Millis idle;
	pqw::QueueSet pending_set;	/* queues with new events */
} PolicyDue;

static void
policy_due(const PqwCallResult *r, pqw::Millis now, pqw::Millis grid_next, bool targeted,
		   PolicyDue *due)
{
	due->ok = r->ok;
	due->pending = due->idle = now + pqw_max_idle_interval_ms;
	due->pending_set.clear();
	if (!r->ok)
	{
		/* keep ticking every period, and say so once */
		if (policy_limiter.on_error(pqw::fingerprint(r->message), now) != pqw::LogDecision::kSuppress)
			ereport(LOG,
					(errmsg("pgque_worker: could not read the tick policy of database \"%s\", ticking every period: %s",
							my_dbname, r->message)));
		return;
	}
	policy_limiter.on_success();
	if (!r->isnull[0])
	{
		pqw::Millis d = r->value[0] > pqw_min_tick_interval_ms ? r->value[0] : pqw_min_tick_interval_ms;

		if (now + d < due->pending)
			due->pending = now + d;
	}
	if (!r->isnull[1])
	{
		pqw::Millis t = now + r->value[1];

		if (commit_since_tick)
		{
			if (t < now + pqw_min_tick_interval_ms)
				t = now + pqw_min_tick_interval_ms;
		}
		else if (t < grid_next)
			t = grid_next;
		/* a full call for idle ticks alone: spaced by what it costs (queues
		 * with events get targeted calls meanwhile) */
		if (!targeted &&
			t < now + pqw::TickScope::idle_spacing(last_full_call_us, 0))
			t = now + pqw::TickScope::idle_spacing(last_full_call_us, 0);
		if (t < due->idle)
			due->idle = t;
	}
	for (int w = 0; w < pqw::QueueSet::kWords; w++)
		if (!r->isnull[2 + w])
			due->pending_set.words[w] = (uint64) r->value[2 + w];
}

/* Sets the tick job's next call after a successful one: targeted at the
 * queues with events while the full call's idle ticks are not due; between
 * the slices of a full call, the next slice at once. */
static void
schedule_by_policy(Job *job, pqw::Millis now, const PqwCallResult *r, bool targeted,
				   pqw::Millis grid_next)
{
	PolicyDue	due;
	pqw::Millis next;

	policy_due(r, now, grid_next, targeted, &due);
	if (!due.ok)
	{
		/* every period, full calls */
		if (!targeted)
			tick_scope.after_full(NULL, 0);
		else
			(void) tick_scope.after_targeted(job->timer.next_due());
	}
	else
	{
		next = due.pending < due.idle ? due.pending : due.idle;
		if (targeted)
			next = tick_scope.after_targeted(next);
		else
			tick_scope.after_full(&due.pending_set, due.idle);
		job->timer.set_next_due(next);
	}
	if (tick_scope.slicing())
		job->timer.run_now(now);
}

/*
 * After a slice of a full call: the next slice on the next pass (a due
 * targeted tick goes first); after the last one, the next call by what all
 * of them found, as after a full call (at once if a wake-up named no queue
 * meanwhile). A slice whose policy could not be read counts as due again
 * in a tick period (as a full call whose read failed ticks every period),
 * and the other slices go on.
 */
static void
schedule_after_slice(Job *job, pqw::Millis now, const PqwCallResult *policy, int64 call_us)
{
	PolicyDue	due;
	pqw::Millis next;

	slices_call_us += call_us;
	policy_due(policy, now, job->timer.next_due(), false, &due);
	if (!due.ok)
	{
		due.pending = due.idle = job->timer.next_due();
		due.pending_set.clear();
	}
	if (!tick_scope.after_slice(&due.pending_set, due.pending, due.idle,
								policy->isnull[18] ? 0 : policy->value[18]))
	{
		job->timer.run_now(now);
		return;
	}
	last_full_call_us = slices_call_us;
	last_full_done = now;
	slices_call_us = 0;
	full_call_queues = tick_scope.full_queues();
	next = tick_scope.full_pending_due() < tick_scope.full_idle_due() ?
		tick_scope.full_pending_due() : tick_scope.full_idle_due();
	if (tick_scope.full_next())
	{
		/* a wake-up named no queue meanwhile: the next full call, spaced
		 * by what this one cost (see take_commit_wakeup) */
		pqw::Millis not_before = now + pqw::TickScope::idle_spacing(last_full_call_us, 0);

		tick_scope.defer_full(not_before);
		if (not_before < next)
			next = not_before;
	}
	if (next < now)
		next = now;
	job->timer.set_next_due(next);
}

/* Queues as an int4[] of queue_id % 1024. */
static Datum
residues_array(const pqw::QueueSet &set)
{
	int32		r[pqw::QueueSet::kBits];
	Datum		d[pqw::QueueSet::kBits];
	int			n = set.residues(r, pqw::QueueSet::kBits);

	for (int i = 0; i < n; i++)
		d[i] = Int32GetDatum(r[i]);
	return PointerGetDatum(construct_array(d, n, INT4OID, 4, true, TYPALIGN_INT));
}

/* A commit enqueued events: tick now, or once min_tick_interval allows. */
static void
take_commit_wakeup(void)
{
	pqw::Millis t;
	pqw::QueueSet queues;
	bool		all;

	if (!pqw_ticker_take_wakeup(my_slot, &queues, &all))
		return;
	/* a commit that set its queues after our last take, before its flag:
	 * those queues were ticked then already */
	if (!all && queues.empty())
		return;
	commit_since_tick = true;
	/*
	 * A wake-up naming no queue (a policy change, COMMIT PREPARED) asks for
	 * a full call, over every queue. Any pgque_reader member can make one
	 * (subscribe and unsubscribe in a loop): such calls are spaced as the
	 * full call's idle ticks are, by what the last one cost (none for a
	 * call under 5 ms; with 1,000 queues about a second). Commits that
	 * name queues get targeted calls meanwhile.
	 */
	tick_scope.on_wake(all ? NULL : &queues, jobs[JOB_TICK].timer.next_due(),
					   last_full_done + pqw::TickScope::idle_spacing(last_full_call_us, 0));
	t = last_tick_call + pqw_min_tick_interval_ms;
	if (all && tick_scope.full_owed() && tick_scope.full_not_before() > t)
		t = tick_scope.full_not_before();
	jobs[JOB_TICK].timer.run_at(t > pqw::monotonic_ms() ? t : pqw::monotonic_ms());
}

/* Where a tick's time went, at DEBUG1: from the wake-up to the call, the
 * ticker() transaction (the dispatcher is woken at its end, `at`, in
 * microseconds since 2000-01-01), the policy read; which slice of a full
 * call it was (`slice 0 of 0`: a targeted call; `1 of 1`: a full one). */
static void
log_tick_steps(bool targeted, int slice, int slices, const PqwCallResult *r, TimestampTz t0,
			   TimestampTz t_tick)
{
	TimestampTz done;

	if (!message_level_is_interesting(DEBUG1))
		return;
	done = GetCurrentTimestamp();
	ereport(DEBUG1,
			(errmsg_internal("pgque_worker tick: targeted %d ticks %lld woke_ms %.3f tick_ms %.3f"
							 " policy_ms %.3f at " INT64_FORMAT " slice %d of %d",
							 targeted ? 1 : 0,
							 (long long) (r->ok && r->has_row && !r->isnull[0] ? r->value[0] : 0),
							 pqw_worker_woke_at > 0 && pqw_worker_woke_at <= t0 ?
							 (double) (t0 - pqw_worker_woke_at) / 1000.0 : -1.0,
							 (double) (t_tick - t0) / 1000.0, (double) (done - t_tick) / 1000.0,
							 (int64) t_tick, slice, slices)));
}

/*
 * The policy read after a targeted tick waits POLICY_DELAY_MS: on a small
 * machine the dispatcher the tick woke was measured to wait ~1 ms for the
 * CPU the ticker held with that read. A tick due meanwhile goes first; a
 * read owed POLICY_MAX_DEFER_MS goes before the next tick. The read after a
 * full call is not deferred (it says which queues the next, targeted calls
 * are for).
 */
#define POLICY_DELAY_MS 2
#define POLICY_MAX_DEFER_MS 20
static bool policy_owed = false;
static pqw::Millis policy_owed_since;	/* the first tick it is owed for */
static pqw::Millis policy_at;	/* when it is read */
static pqw::Millis policy_grid;	/* the tick-period grid after that tick */

/* Reads the owed policy of the targeted queues and schedules by it. */
static void
read_owed_policy(void)
{
	Job		   *job = &jobs[JOB_TICK];
	PqwCallResult policy;
	Oid			argtype = INT4ARRAYOID;
	Datum		arg;
	bool		was_due = job->timer.due(pqw::monotonic_ms());

	policy_owed = false;
	/* a full call since, nothing to read, or a failing tick backing off */
	if (tick_scope.targets().empty() || job->timer.failures() > 0)
		return;
	arg = residues_array(tick_scope.targets());
	(void) pqw_call(&policy_some_sql, PQW_AS_PGQUE_OWNER, 1, &argtype, &arg,
					job_timeout_ms(JOB_TICK), &policy);
	schedule_by_policy(job, pqw::monotonic_ms(), &policy, true, policy_grid);
	/* a tick a commit asked for stays due */
	if (was_due)
		job->timer.run_now(pqw::monotonic_ms());
}

static void
run_job(JobId id)
{
	Job		   *job = &jobs[id];
	PqwCallResult r;
	PqwCallResult policy;
	PqwStatement *stmt = job->stmt;
	pqw::Millis now;
	TimestampTz t0;
	TimestampTz t_tick = 0;
	int64		call_us;
	bool		targeted = false;
	bool		sliced = false;
	int			slice = 0;
	int			slices = 0;

	if (id == JOB_TICK && pqw_tick_period_ms == 0)
		stmt = &tick_config_sql;

	memset(&policy, 0, sizeof(policy));
	t0 = GetCurrentTimestamp();
	if (id == JOB_TICK)
	{
		Oid			argtype = INT4ARRAYOID;
		Datum		arg = (Datum) 0;
		int			nargs = 0;
		pqw::QueueSet ticked;	/* the queues this call may tick */

		targeted = pqw_wake_on_commit && tick_scope.targeted(pqw::monotonic_ms());
		if (targeted)
		{
			/* only the queues the commits named: PgQue's per-queue policy */
			ticked = tick_scope.targets();
			tick_scope.took_targets();
			arg = residues_array(ticked);
			stmt = &tick_some_sql;
			nargs = 1;
		}
		else if (pqw_wake_on_commit &&
				 tick_scope.begin_full(pqw::TickScope::slices_for(full_call_queues)))
		{
			/* a slice of the full call (see core/tick_scope.hpp) */
			sliced = true;
			slice = tick_scope.slice() + 1;
			slices = tick_scope.slices();
			ticked = tick_scope.slice_set();
			arg = residues_array(ticked);
			stmt = pqw_tick_period_ms == 0 ? &tick_some_config_sql : &tick_some_sql;
			nargs = 1;
		}
		else
			slice = slices = 1;
		/* Like every PgQue call of this loop, the tick's commit does not
		 * wait for its WAL flush (see pqw_call_async_commit). */
		(void) pqw_call_async_commit(stmt, PQW_AS_PGQUE_OWNER, nargs, &argtype, &arg,
									 job_timeout_ms(id), &r);
		t_tick = GetCurrentTimestamp();

		/* A materialized tick: the dispatcher, if one runs, has a batch to
		 * take (not only when want_dispatcher says so: that flag is set by a
		 * periodic check that may lag a registration), for the handlers of
		 * the queues ticked. Woken before the policy read, which is not on
		 * a message's way. */
		if (r.ok && r.has_row && !r.isnull[0] && r.value[0] > 0)
			pqw_wake_dispatcher(MyDatabaseId, false, targeted || sliced ? &ticked : NULL);

		/* With wake_on_commit, PgQue's tick policy read after the tick, in
		 * a read-only transaction of its own (no WAL flush at its commit):
		 * its failure leaves the tick alone. After a targeted tick it is
		 * owed (see read_owed_policy). */
		if (r.ok && pqw_wake_on_commit && !targeted)
			(void) pqw_call(sliced ? &policy_some_sql : &policy_sql, PQW_AS_PGQUE_OWNER, nargs,
							&argtype, &arg, job_timeout_ms(id), &policy);
		log_tick_steps(targeted, slice, slices, &r, t0, t_tick);
	}
	else
		(void) pqw_call_async_commit(stmt, PQW_AS_PGQUE_OWNER, 0, NULL, NULL, job_timeout_ms(id), &r);
	call_us = GetCurrentTimestamp() - t0;
	now = pqw::monotonic_ms();

	if (!r.ok)
	{
		check_trust_after_failure(r.sqlerrcode);
		if (untrusted_reason[0] != '\0')
			return;
		report_failure(job, &r, now);
		job->drain_calls = 0;
		/* the retry ticks all (after the sliced call under way, if one is) */
		if (targeted)
			tick_scope.on_wake(NULL, job->timer.next_due());
		if (sliced)
		{
			tick_scope.abort_slices();	/* the retry starts over */
			slices_call_us = 0;
		}
		job->timer.failed(now, backoff_ms(id, job->timer.failures() + 1));
		return;
	}

	report_recovery(job);

	if (id == JOB_TICK && !targeted && pqw_tick_period_ms == 0 && !r.isnull[1] &&
		r.value[1] >= 1 && r.value[1] <= 60000)
		config_tick_period_ms = (int) r.value[1];

	if (id == JOB_TICK)
	{
		if (r.has_row && !r.isnull[0] && r.value[0] > 0)
			commit_since_tick = false;
		account(id, &r, true, call_us);
		last_tick_call = now;
		if (!targeted && !sliced)
		{
			last_full_call_us = call_us;
			last_full_done = now;
		}
		job->timer.completed(now, job_period_ms(id));
		if (pqw_wake_on_commit && targeted)
		{
			if (!policy_owed)
				policy_owed_since = now;
			policy_owed = true;
			policy_at = now + POLICY_DELAY_MS;
			policy_grid = job->timer.next_due();
			/* between slices: the next slice goes on (its read waits) */
			if (tick_scope.slicing())
				job->timer.run_now(now);
		}
		else if (pqw_wake_on_commit && sliced)
			schedule_after_slice(job, now, &policy, call_us);
		else if (pqw_wake_on_commit)
		{
			policy_owed = false;	/* the full read covers it */
			if (policy.ok && !policy.isnull[18])
				full_call_queues = policy.value[18];
			schedule_by_policy(job, now, &policy, targeted, job->timer.next_due());
		}
		else
			tick_scope.after_full(NULL, 0);
		return;
	}

	if (id == JOB_RETRY && r.has_row && !r.isnull[0] && r.value[0] > 0 &&
		++job->drain_calls < pqw_retry_max_calls)
	{
		/* More may be waiting: call again on the next pass. */
		account(id, &r, false, 0);
		job->timer.run_now(now);
		return;
	}
	account(id, &r, true, 0);
	job->drain_calls = 0;
	job->timer.completed(now, job_period_ms(id));
}

/* What the periodic look at the database found. */
typedef struct DbCheck
{
	bool		want_dispatcher;	/* enabled rows in pgque_worker.handler */
	bool		copied;			/* enabled rows, copied from another database */
	bool		registry_locked;	/* another session locks it: not read */
	char		other[64];		/* another scheduler owning PgQue here, or "" */
} DbCheck;

static bool
spi_bool(const char *sql)
{
	bool		isnull;
	Datum		d;

	if (SPI_execute(sql, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		return false;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return !isnull && DatumGetBool(d);
}

/*
 * In a transaction: are there enabled handlers, and does another scheduler
 * own PgQue here (pgque.config.scheduler set by pgque.start(), or pg_cron
 * jobs named pgque* for this database)?
 */
static void
db_check_fn(void *arg)
{
	DbCheck    *c = (DbCheck *) arg;

	Oid			registry;

	c->want_dispatcher = false;
	c->copied = false;
	c->registry_locked = false;
	c->other[0] = '\0';
	/* Registrations count only where our extension made the table; one
	 * that another session locks is looked at next time (see
	 * pqw_lock_registry), not waited for while ticks are due. */
	c->registry_locked = pqw_lock_registry(&registry) != NULL;
	if (!c->registry_locked && OidIsValid(registry) &&
		spi_bool("select exists (select 1 from pgque_worker_internal.handler where enabled)"))
	{
		/* in a copy made by CREATE DATABASE ... TEMPLATE: not served until
		 * serve_copied_handlers() (see pgque_worker_internal.home) */
		c->copied = !spi_bool(PQW_HOME_IS_HERE_SQL);
		c->want_dispatcher = !c->copied;
	}

	if (pqw_pgque_trust() == PQW_TRUST_OK)
	{
		PqwAs		as;

		pqw_begin_as(PQW_AS_PGQUE_OWNER, PQW_PINNED_SEARCH_PATH, &as);
		if (SPI_execute("select scheduler from pgque.config where scheduler is not null limit 1",
						true, 1) == SPI_OK_SELECT && SPI_processed == 1)
		{
			char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

			if (v)
				pqw_strlcpy_text(c->other, v, sizeof(c->other));
		}
		pqw_end_as(&as);
	}
	/* pg_cron's table only where pg_cron is installed: anyone with CREATE
	 * could make a schema "cron" with a table "job". (Not while pg_depend,
	 * which says so, could not be locked without waiting: next time.) */
	if (c->other[0] == '\0' && !c->registry_locked &&
		OidIsValid(pqw_extension_relation("pg_cron", "cron", "job")) &&
		spi_bool("select exists (select 1 from cron.job where jobname like 'pgque%'"
				 " and database = pg_catalog.current_database())"))
		strlcpy(c->other, "pg_cron jobs", sizeof(c->other));
}

static char other_scheduler[64] = "";	/* as last seen */
static pqw::LogLimiter takeover_limiter;
static bool copied_logged = false;	/* this process said the registrations are a copy's */

static void
check_database(void)
{
	DbCheck		c;
	PqwCallResult r;

	if (pqw_in_transaction("pgque_worker: looking at the database", PQW_AS_WORKER, db_check_fn, &c,
						   pqw_statement_timeout_ms, NULL, &r))
	{
		if (!c.registry_locked)
			pqw_ticker_set_want_dispatcher(my_slot, c.want_dispatcher);
		if (c.copied && !copied_logged)
			ereport(WARNING,
					(errmsg("pgque_worker: the handler registrations of database \"%s\" were copied from another database, and are not served here",
							my_dbname),
					 errdetail("CREATE DATABASE ... TEMPLATE copied them with the events pending then: served in both databases, those events would be handled twice."),
					 errhint("To serve them here, run select pgque_worker.serve_copied_handlers(); in database \"%s\".",
							 my_dbname)));
		copied_logged = c.copied;
		if (c.other[0] != '\0' && pqw_takeover)
		{
			static PqwStatement stop_sql = PQW_STATEMENT("select pgque.stop()");
			PqwCallResult r2;

			if (pqw_call(&stop_sql, PQW_AS_PGQUE_OWNER, 0, NULL, NULL,
						 pqw_statement_timeout_ms, &r2))
			{
				ereport(LOG,
						(errmsg("pgque_worker: took over ticking of database \"%s\" from %s (pgque.stop() called)",
								my_dbname, c.other)));
				c.other[0] = '\0';
			}
			else if (takeover_limiter.on_error(pqw::fingerprint(r2.message), pqw::monotonic_ms()) !=
					 pqw::LogDecision::kSuppress)
				ereport(WARNING,
						(errmsg("pgque_worker: could not take over database \"%s\" from %s: %s",
								my_dbname, c.other, r2.message),
						 errhint("pgque.stop() failed; stop the other scheduler by hand.")));
		}
		if (c.other[0] != '\0' && strcmp(other_scheduler, c.other) != 0)
		{
			char		line[PQW_ERRLEN];

			ereport(WARNING,
					(errmsg("pgque_worker: database \"%s\" is ticked by %s, pgque_worker leaves it alone",
							my_dbname, c.other),
					 errdetail("Two tickers on one database contend."),
					 errhint("Run \"select pgque.stop()\" in that database to switch to pgque_worker, or set pgque_worker.takeover = on.")));
			snprintf(line, sizeof(line), "yielding to %s", c.other);
			pqw_slot_set_error(my_slot, line);
		}
		else if (c.other[0] == '\0' && other_scheduler[0] != '\0')
			ereport(LOG,
					(errmsg("pgque_worker: %s no longer ticks database \"%s\", pgque_worker does",
							other_scheduler, my_dbname)));
		strlcpy(other_scheduler, c.other, sizeof(other_scheduler));
	}
	handlers_check.completed(pqw::monotonic_ms(), pqw_discovery_interval_ms);
}

static bool
any_job_failing(void)
{
	for (int i = 0; i < NUM_JOBS; i++)
		if (jobs[i].timer.failures() > 0)
			return true;
	return false;
}

static void
init_jobs(pqw::Millis now)
{
	static const char *const names[NUM_JOBS] = {"tick", "retry", "maint", "rotate"};
	static PqwStatement retry_sql = PQW_STATEMENT("select pgque.maint_retry_events()");
	static PqwStatement maint_sql = PQW_STATEMENT("select pgque.maint()");
	static PqwStatement rotate_sql = PQW_STATEMENT("select pgque.maint_rotate_tables_step2()");
	PqwStatement *const stmts[NUM_JOBS] = {&tick_sql, &retry_sql, &maint_sql, &rotate_sql};

	tick_scope = pqw::TickScope();	/* the first call is a full one */
	policy_owed = false;

	for (int i = 0; i < NUM_JOBS; i++)
	{
		jobs[i].name = names[i];
		jobs[i].stmt = stmts[i];
		jobs[i].timer.start(now);
		jobs[i].limiter.set_quiet_ms(pqw_log_quiet_interval_ms);
		jobs[i].drain_calls = 0;
	}
}

/* The worker's session lock_timeout: a maintenance call blocked on a lock
 * gives up soon and is retried, instead of holding up the ticks. */
static void
set_lock_timeout(void)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), "%d", pqw_lock_timeout_ms);
	(void) set_config_option("lock_timeout", buf, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SET, true, 0, false);
}

/* After a reload: new periods apply from now. */
static void
apply_reload(void)
{
	pqw::Millis now = pqw::monotonic_ms();

	set_lock_timeout();
	for (int i = 0; i < NUM_JOBS; i++)
	{
		jobs[i].timer.reschedule(now, job_period_ms((JobId) i));
		jobs[i].limiter.set_quiet_ms(pqw_log_quiet_interval_ms);
	}
}

PQW_EXPORT void
pqw_ticker_main(Datum main_arg)
{
	bool		yielding = false;

	pqw_worker_start(&me, main_arg, PQW_KIND_TICKER, PQW_STATE_STARTING);


	switch (pgque_trust())
	{
		case PQW_TRUST_NO_PGQUE:
			leave_no_pgque();
			break;
		case PQW_TRUST_REFUSED:
			enter_untrusted();
			break;
		case PQW_TRUST_OK:
			pqw_slot_set_state(my_slot, PQW_STATE_RUNNING);
			break;
	}

	ereport(LOG, (errmsg("pgque_worker: ticker started for database \"%s\"", my_dbname)));

	init_jobs(pqw::monotonic_ms());
	handlers_check.start(pqw::monotonic_ms());
	set_lock_timeout();
	if (pqw_database_paused)
		ereport(LOG, (errmsg("pgque_worker: database \"%s\" is paused (pgque_worker.pause())", my_dbname)));

	for (;;)
	{
		pqw::Millis now;
		pqw::Millis due[NUM_JOBS + 2];
		bool		reloaded;

		switch (pqw_worker_pass(&me, &reloaded))
		{
			case PQW_PASS_WAITED:
				continue;
			case PQW_PASS_RESUMED:
				/* resumed: everything is due now, as after a start */
				init_jobs(pqw::monotonic_ms());
				set_lock_timeout();
				break;
			case PQW_PASS_WORK:
				break;
		}
		if (reloaded)
			apply_reload();

		if (untrusted_reason[0] != '\0')
		{
			/* looked at again after every discovery interval */
			PqwTrust	t = pgque_trust();

			if (t == PQW_TRUST_NO_PGQUE)
				leave_no_pgque();
			if (t == PQW_TRUST_REFUSED)
			{
				enter_untrusted();
				pqw_worker_wait(pqw_discovery_interval_ms);
				continue;
			}
			ereport(LOG,
					(errmsg("pgque_worker: PgQue in database \"%s\" is trusted again, ticking resumes",
							my_dbname)));
			untrusted_reason[0] = '\0';
			init_jobs(pqw::monotonic_ms());
		}
		if (handlers_check.due(pqw::monotonic_ms()))
			check_database();
		if (other_scheduler[0] != '\0')
		{
			/* another ticker owns this database */
			pqw_worker_set_state(&me, PQW_STATE_YIELDING);
			pqw_worker_wait(pqw_discovery_interval_ms);
			yielding = true;
			continue;
		}
		if (yielding)
		{
			init_jobs(pqw::monotonic_ms());
			yielding = false;
		}
		if (pqw_wake_on_commit)
			take_commit_wakeup();
		if (policy_owed)
		{
			now = pqw::monotonic_ms();
			/* a tick due goes first, unless the read waited too long */
			if (!pqw_wake_on_commit ||
				(now >= policy_at && !jobs[JOB_TICK].timer.due(now)) ||
				now - policy_owed_since >= POLICY_MAX_DEFER_MS)
				read_owed_policy();
		}
		for (int i = 0; i < NUM_JOBS; i++)
		{
			if (jobs[i].timer.due(pqw::monotonic_ms()))
				run_job((JobId) i);
			CHECK_FOR_INTERRUPTS();
			if (untrusted_reason[0] != '\0')
				break;
		}
		if (untrusted_reason[0] != '\0')
			continue;
		pqw_worker_set_state(&me, any_job_failing() ? PQW_STATE_BACKOFF : PQW_STATE_RUNNING);

		now = pqw::monotonic_ms();
		for (int i = 0; i < NUM_JOBS; i++)
			due[i] = jobs[i].timer.next_due();
		due[NUM_JOBS] = handlers_check.next_due();
		due[NUM_JOBS + 1] = policy_owed ? policy_at : now + 60000;
		{
			pqw::Millis w = pqw::wait_until_earliest(now, due, NUM_JOBS + 2, 60000);

			/* a commit's wake-up during the calls (a lock wait inside one
			 * may have reset the latch) means another pass, not a sleep */
			if (w > 0 && !(pqw_wake_on_commit && pqw_ticker_wakeup_pending(my_slot)))
				pqw_worker_wait((long) w);
		}
	}
}
