/*
 * shmem.cpp: allocation of and small accessors for pgque_worker's shared
 * memory (see shmem.h for the layout).
 */
#include "shmem.h"

PqwShared  *pqw_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* One slot per possible background worker: we can never run more. */
static int
pqw_nslots(void)
{
	return max_worker_processes > 0 ? max_worker_processes : 1;
}

static Size
pqw_shmem_size(void)
{
	return add_size(offsetof(PqwShared, slots),
					mul_size(sizeof(PqwSlot), pqw_nslots()));
}

/* PG 15: space and LWLocks must be requested from shmem_request_hook. */
static void
pqw_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(pqw_shmem_size());
	RequestNamedLWLockTranche("pgque_worker", 1);
}

static void
wake_set_init(PqwWakeSet *ws)
{
	pg_atomic_init_u32(&ws->pending, 0);
	for (int w = 0; w < pqw::QueueSet::kWords; w++)
		pg_atomic_init_u64(&ws->queues[w], 0);
	pg_atomic_init_u32(&ws->all, 0);
}

/* Posts a wake-up naming `queues` (NULL: all). Full barriers: what, then
 * that there is one. */
static void
wake_set_post(PqwWakeSet *ws, const pqw::QueueSet *queues)
{
	if (queues == NULL)
		pg_atomic_exchange_u32(&ws->all, 1);
	else
		for (int w = 0; w < pqw::QueueSet::kWords; w++)
			if (queues->words[w] != 0)
				pg_atomic_fetch_or_u64(&ws->queues[w], queues->words[w]);
	pg_atomic_write_u32(&ws->pending, 1);
}

/* Takes a posted wake-up: false if none; else what it named, merged into
 * *queues, or *all. */
static bool
wake_set_take(PqwWakeSet *ws, pqw::QueueSet *queues, bool *all)
{
	*all = false;
	/* a plain read first: the exchange's cache-line write is for a wake */
	if (pg_atomic_read_u32(&ws->pending) == 0 ||
		pg_atomic_exchange_u32(&ws->pending, 0) == 0)
		return false;
	/* after the flag: a poster sets these before it */
	*all = pg_atomic_exchange_u32(&ws->all, 0) != 0;
	for (int w = 0; w < pqw::QueueSet::kWords; w++)
		if (pg_atomic_read_u64(&ws->queues[w]) != 0)
			queues->words[w] |= pg_atomic_exchange_u64(&ws->queues[w], 0);
	return true;
}

/* Resets a slot to all zeros, free, with its atomics initialised. Caller
 * holds the lock exclusively (or is the startup hook). */
static void
slot_reset(PqwSlot *s)
{
	memset(s, 0, sizeof(*s));
	wake_set_init(&s->ticker.wake);
	wake_set_init(&s->dispatcher.wake);
}

static void
pqw_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pqw_shared = (PqwShared *) ShmemInitStruct("pgque_worker", pqw_shmem_size(), &found);
	if (!found)
	{
		memset(pqw_shared, 0, pqw_shmem_size());
		pqw_shared->lock = &(GetNamedLWLockTranche("pgque_worker"))->lock;
		pqw_shared->nslots = pqw_nslots();
		for (int i = 0; i < pqw_shared->nslots; i++)
			slot_reset(&pqw_shared->slots[i]);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
pqw_shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pqw_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pqw_shmem_startup;
}

void
pqw_wake_launcher(void)
{
	Latch	   *latch = NULL;

	if (pqw_shared == NULL)
		return;
	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	pqw_shared->rescan_requested = true;
	latch = pqw_shared->launcher_latch;
	if (latch)
		SetLatch(latch);
	LWLockRelease(pqw_shared->lock);
}

void
pqw_request_probe(Oid dboid)
{
	Latch	   *latch;

	if (pqw_shared == NULL)
		return;
	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	if (!OidIsValid(dboid))
		pqw_shared->probe_all_requested = true;
	else
	{
		int			t = pqw_find_slot(dboid, PQW_KIND_TICKER);

		if (t >= 0)
			pqw_shared->slots[t].probe_requested = true;
	}
	latch = pqw_shared->launcher_latch;
	if (latch)
		SetLatch(latch);
	LWLockRelease(pqw_shared->lock);
}

bool
pqw_take_probe_requests(bool *requested)
{
	bool		all;

	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	all = pqw_shared->probe_all_requested;
	pqw_shared->probe_all_requested = false;
	for (int i = 0; i < pqw_shared->nslots; i++)
	{
		requested[i] = pqw_shared->slots[i].probe_requested;
		pqw_shared->slots[i].probe_requested = false;
	}
	LWLockRelease(pqw_shared->lock);
	return all;
}

const char *
pqw_state_name(PqwState state)
{
	switch (state)
	{
		case PQW_STATE_STARTING:
			return "starting";
		case PQW_STATE_RUNNING:
			return "running";
		case PQW_STATE_PAUSED:
			return "paused";
		case PQW_STATE_STANDBY:
			return "standby";
		case PQW_STATE_NO_PGQUE:
			return "no pgque";
		case PQW_STATE_BACKOFF:
			return "backoff";
		case PQW_STATE_STOPPED:
			return "stopped";
		case PQW_STATE_NO_SLOT:
			return "no worker slot";
		case PQW_STATE_NO_HANDLERS:
			return "no handlers";
		case PQW_STATE_YIELDING:
			return "other scheduler";
		case PQW_STATE_UNTRUSTED:
			return "untrusted pgque";
		case PQW_STATE_CAPPED:
			return "over max_workers";
	}
	return "unknown";
}

const char *
pqw_kind_name(PqwKind kind)
{
	return kind == PQW_KIND_TICKER ? "ticker" : "dispatcher";
}

void
pqw_slot_set_state(int slot, PqwState state)
{
	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	pqw_shared->slots[slot].state = state;
	LWLockRelease(pqw_shared->lock);
}

void
pqw_slot_set_error(int slot, const char *message)
{
	PqwSlot    *s = &pqw_shared->slots[slot];

	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	pqw_strlcpy_text(s->last_error, message, sizeof(s->last_error));
	s->last_error_at = GetCurrentTimestamp();
	s->errors++;
	LWLockRelease(pqw_shared->lock);
}

int
pqw_find_slot(Oid dboid, PqwKind kind)
{
	for (int i = 0; i < pqw_shared->nslots; i++)
		if (pqw_shared->slots[i].in_use && pqw_shared->slots[i].dboid == dboid &&
			pqw_shared->slots[i].kind == kind)
			return i;
	return -1;
}

void
pqw_notify_ticker(Oid dboid, const pqw::QueueSet *queues)
{
	int			t;
	Latch	   *latch = NULL;

	if (pqw_shared == NULL)
		return;
	LWLockAcquire(pqw_shared->lock, LW_SHARED);
	t = pqw_find_slot(dboid, PQW_KIND_TICKER);
	if (t >= 0)
	{
		wake_set_post(&pqw_shared->slots[t].ticker.wake, queues);
		latch = pqw_shared->slots[t].latch;
	}
	LWLockRelease(pqw_shared->lock);
	/* a PGPROC latch: still valid memory if the ticker just exited;
	 * SetLatch's barrier orders the flag before the wake */
	if (latch)
		SetLatch(latch);
}

void
pqw_wake_dispatcher(Oid dboid, bool reload_handlers, const pqw::QueueSet *queues)
{
	int			i;

	if (pqw_shared == NULL)
		return;
	LWLockAcquire(pqw_shared->lock, reload_handlers ? LW_EXCLUSIVE : LW_SHARED);
	i = pqw_find_slot(dboid, PQW_KIND_DISPATCHER);
	if (i >= 0)
	{
		if (reload_handlers)
			pqw_shared->slots[i].dispatcher.reload_handlers = true;
		wake_set_post(&pqw_shared->slots[i].dispatcher.wake, queues);
		if (pqw_shared->slots[i].latch)
			SetLatch(pqw_shared->slots[i].latch);
	}
	LWLockRelease(pqw_shared->lock);
}

/* The error that ends this process during a handler call (see
 * pqw_note_exit_error). */
static char exit_error[PQW_CALL_ERROR_LEN];

volatile sig_atomic_t pqw_handler_call_active = false;
volatile sig_atomic_t pqw_termination_requested = false;

static void
slot_detach(int code, Datum arg)
{
	PqwSlot    *s;

	if (pqw_shared == NULL)
		return;
	s = &pqw_shared->slots[DatumGetInt32(arg)];
	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	/* the launcher may have freed and reused the slot since */
	if (s->pid == MyProcPid)
	{
		bool		ended_by_error = code != 0 && !pqw_termination_requested;

		s->pid = 0;
		s->latch = NULL;
		/* An error ended a handler's call (the hard limit marked its own):
		 * the next dispatcher narrows the call down, so it starts at once. */
		if (ended_by_error && s->kind == PQW_KIND_DISPATCHER && pqw_handler_call_active &&
			!s->dispatcher.call_hung)
		{
			s->dispatcher.call_hung = true;
			s->dispatcher.call_fatal = true;
			s->dispatcher.call_fatal_streak++;
			pqw_strlcpy_text(s->dispatcher.call_error, exit_error, sizeof(s->dispatcher.call_error));
		}
		else if (ended_by_error && !pqw_handler_call_active)
		{
			/* any other error that ended the process: the state stays, so
			 * the launcher restarts it after a backoff (plan_restart) */
			LWLockRelease(pqw_shared->lock);
			return;
		}
		if (s->state != PQW_STATE_NO_PGQUE && s->state != PQW_STATE_NO_HANDLERS)
			s->state = PQW_STATE_STOPPED;
	}
	LWLockRelease(pqw_shared->lock);
}

/* Is the slot held by a process other than this one? */
static bool
slot_held_by_other(const PqwSlot *s)
{
	if (s->pid == 0 || s->pid == MyProcPid)
		return false;
	/* a holder that died without detaching crashed the server, which
	 * clears shared memory; ESRCH is only a safety net */
	return kill(s->pid, 0) == 0 || errno != ESRCH;
}

void
pqw_slot_attach(int slot, uint64 generation, PqwState state, char *dbname)
{
	PqwSlot    *s = &pqw_shared->slots[slot];
	bool		ours;
	pid_t		holder;
	char		name[NAMEDATALEN];
	PqwKind		kind;

	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	ours = s->in_use && s->generation == generation && !slot_held_by_other(s);
	if (!ours)
	{
		holder = s->pid;
		kind = s->kind;
		strlcpy(name, s->dbname, sizeof(name));
		LWLockRelease(pqw_shared->lock);
		/* not registered by the slot's current launcher: exit, unrestarted */
		ereport(LOG,
				(errmsg("pgque_worker: %s for database \"%s\" exits: its slot belongs to another worker",
						pqw_kind_name(kind), name),
				 holder != 0 && holder != MyProcPid ?
				 errdetail("Process %d holds the slot.", (int) holder) :
				 errdetail("It was started by a previous launcher.")));
		proc_exit(0);
	}
	strlcpy(dbname, s->dbname, NAMEDATALEN);
	s->pid = MyProcPid;
	s->latch = MyLatch;
	s->started_at = GetCurrentTimestamp();
	s->dispatcher.reload_handlers = false;
	if (s->state != PQW_STATE_NO_PGQUE)
		s->state = state;
	LWLockRelease(pqw_shared->lock);
	before_shmem_exit(slot_detach, Int32GetDatum(slot));
}

void
pqw_slot_note_call(int slot, const PqwHandlerCall *call)
{
	pqw_shared->slots[slot].dispatcher.call = *call;
}

void
pqw_slot_mark_hung(int slot)
{
	/* signal context: a plain store */
	pqw_shared->slots[slot].dispatcher.call_hung = true;
}

bool
pqw_slot_take_hung_call(int slot, PqwHandlerCall *call, bool *fatal, int *streak,
						char *error, size_t error_size)
{
	PqwSlot    *s = &pqw_shared->slots[slot];
	bool		hung;

	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	hung = s->dispatcher.call_hung;
	*fatal = hung && s->dispatcher.call_fatal;
	*streak = s->dispatcher.call_fatal_streak;
	if (hung)
	{
		*call = s->dispatcher.call;
		pqw_strlcpy_text(error, s->dispatcher.call_error, error_size);
	}
	s->dispatcher.call_hung = false;
	s->dispatcher.call_fatal = false;
	s->dispatcher.call_error[0] = '\0';
	LWLockRelease(pqw_shared->lock);
	return hung;
}

void
pqw_slot_clear_fatal_streak(int slot)
{
	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	pqw_shared->slots[slot].dispatcher.call_fatal_streak = 0;
	LWLockRelease(pqw_shared->lock);
}

void
pqw_note_exit_error(const char *message)
{
	pqw_strlcpy_text(exit_error, message, sizeof(exit_error));
}

int
pqw_slot_alloc(Oid dboid, const char *dbname, PqwKind kind)
{
	int			found = -1;

	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < pqw_shared->nslots; i++)
	{
		PqwSlot    *s = &pqw_shared->slots[i];

		if (s->in_use)
			continue;
		slot_reset(s);
		s->in_use = true;
		s->kind = kind;
		s->dboid = dboid;
		strlcpy(s->dbname, dbname, NAMEDATALEN);
		s->state = PQW_STATE_STOPPED;
		s->seniority = ++pqw_shared->last_seniority;
		found = i;
		break;
	}
	LWLockRelease(pqw_shared->lock);
	return found;
}

void
pqw_slot_free(int slot)
{
	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	slot_reset(&pqw_shared->slots[slot]);
	LWLockRelease(pqw_shared->lock);
}

void
pqw_slot_rename(int slot, const char *dbname)
{
	PqwSlot    *s = &pqw_shared->slots[slot];

	/* only the launcher writes names: compare without the lock */
	if (strcmp(s->dbname, dbname) == 0)
		return;
	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	strlcpy(s->dbname, dbname, NAMEDATALEN);
	LWLockRelease(pqw_shared->lock);
}

bool
pqw_slot_in_use(int slot)
{
	/* only the launcher allocates and frees: no lock */
	return pqw_shared->slots[slot].in_use;
}

bool
pqw_slot_info(int slot, PqwSlotInfo *info)
{
	const PqwSlot *s = &pqw_shared->slots[slot];
	bool		in_use;

	memset(info, 0, sizeof(*info));
	LWLockAcquire(pqw_shared->lock, LW_SHARED);
	in_use = s->in_use;
	if (in_use)
	{
		info->kind = s->kind;
		info->dboid = s->dboid;
		strlcpy(info->dbname, s->dbname, NAMEDATALEN);
		info->pid = s->pid;
		info->state = s->state;
		info->hold_until = s->hold_until;
		info->want_dispatcher = s->ticker.want_dispatcher;
		info->seniority = s->seniority;
	}
	LWLockRelease(pqw_shared->lock);
	return in_use;
}

int
pqw_slots_in_use(void)
{
	int			n = 0;

	/* only the launcher allocates and frees: no lock */
	for (int i = 0; i < pqw_shared->nslots; i++)
		if (pqw_shared->slots[i].in_use)
			n++;
	return n;
}

PqwSlotStatus *
pqw_slots_status(int *n)
{
	/* allocated before the lock is taken: palloc may throw */
	PqwSlotStatus *out = (PqwSlotStatus *) palloc(sizeof(PqwSlotStatus) * pqw_shared->nslots);

	*n = 0;
	LWLockAcquire(pqw_shared->lock, LW_SHARED);
	for (int i = 0; i < pqw_shared->nslots; i++)
	{
		const PqwSlot *s = &pqw_shared->slots[i];
		PqwSlotStatus *o;

		if (!s->in_use)
			continue;
		o = &out[(*n)++];
		o->kind = s->kind;
		strlcpy(o->dbname, s->dbname, NAMEDATALEN);
		o->pid = s->pid;
		o->state = s->state;
		o->started_at = s->started_at;
		o->last_call_at = s->last_call_at;
		o->errors = s->errors;
		pqw_strlcpy_text(o->last_error, s->last_error, PQW_ERRLEN);
		o->last_error_at = s->last_error_at;
		o->last_tick_at = s->ticker.last_tick_at;
		o->tick_calls = s->ticker.tick_calls;
		o->ticks = s->ticker.ticks;
		o->retry_calls = s->ticker.retry_calls;
		o->retry_moved = s->ticker.retry_moved;
		o->retry_last_drain = s->ticker.retry_last_drain;
		o->maint_runs = s->ticker.maint_runs;
		o->rotate_runs = s->ticker.rotate_runs;
		o->wakeups = s->ticker.wakeups;
		o->tick_us_sum = s->ticker.tick_us_sum;
		o->tick_us_max = s->ticker.tick_us_max;
		o->batches = s->dispatcher.batches;
		o->messages_ok = s->dispatcher.messages_ok;
		o->messages_nacked = s->dispatcher.messages_nacked;
		o->max_subxids = s->dispatcher.max_subxids;
		o->subxid_overflows = s->dispatcher.subxid_overflows;
	}
	LWLockRelease(pqw_shared->lock);
	return out;
}

uint64
pqw_slot_new_generation(int slot)
{
	uint64		generation;

	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	generation = ++pqw_shared->last_generation;
	pqw_shared->slots[slot].generation = generation;
	pqw_shared->slots[slot].state = PQW_STATE_STARTING;
	LWLockRelease(pqw_shared->lock);
	return generation;
}

int
pqw_slots_stop_holders(void)
{
	int			n = 0;

	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < pqw_shared->nslots; i++)
	{
		PqwSlot    *s = &pqw_shared->slots[i];

		if (!s->in_use)
			continue;
		s->generation = ++pqw_shared->last_generation;
		if (s->pid != 0)
		{
			(void) kill(s->pid, SIGTERM);
			n++;
		}
	}
	LWLockRelease(pqw_shared->lock);
	return n;
}

int
pqw_slots_held(void)
{
	int			n = 0;

	LWLockAcquire(pqw_shared->lock, LW_SHARED);
	for (int i = 0; i < pqw_shared->nslots; i++)
		if (pqw_shared->slots[i].in_use && pqw_shared->slots[i].pid != 0)
			n++;
	LWLockRelease(pqw_shared->lock);
	return n;
}

void
pqw_ticker_counted(int slot, PqwJob job, int64 value, bool drain_done, int64 call_us)
{
	PqwSlot    *s = &pqw_shared->slots[slot];
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	switch (job)
	{
		case PQW_JOB_TICK:
			s->ticker.tick_calls++;
			s->ticker.ticks += value;
			s->last_call_at = now;
			if (value > 0)
				s->ticker.last_tick_at = now;
			s->ticker.tick_us_sum += call_us;
			if (call_us > s->ticker.tick_us_max)
				s->ticker.tick_us_max = call_us;
			break;
		case PQW_JOB_RETRY:
			s->ticker.retry_calls++;
			s->ticker.retry_moved += value;
			s->ticker.retry_drain_moved += value;
			if (drain_done)
			{
				s->ticker.retry_last_drain = s->ticker.retry_drain_moved;
				s->ticker.retry_drain_moved = 0;
			}
			break;
		case PQW_JOB_MAINT:
			s->ticker.maint_runs++;
			break;
		case PQW_JOB_ROTATE:
			s->ticker.rotate_runs++;
			break;
		case PQW_NUM_JOBS:
			break;
	}
	LWLockRelease(pqw_shared->lock);
}

bool
pqw_ticker_take_wakeup(int slot, pqw::QueueSet *queues, bool *all)
{
	PqwSlot    *s = &pqw_shared->slots[slot];

	if (!wake_set_take(&s->ticker.wake, queues, all))
		return false;
	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	s->ticker.wakeups++;
	LWLockRelease(pqw_shared->lock);
	return true;
}

void
pqw_ticker_set_want_dispatcher(int slot, bool want)
{
	bool		changed;

	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	changed = pqw_shared->slots[slot].ticker.want_dispatcher != want;
	pqw_shared->slots[slot].ticker.want_dispatcher = want;
	LWLockRelease(pqw_shared->lock);
	if (changed)
		pqw_wake_launcher();
}

void
pqw_dispatcher_counted(int slot, int batches_finished, int64 ok, int64 nacked,
					   int subxids, bool overflowed)
{
	PqwSlot    *s = &pqw_shared->slots[slot];

	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	s->dispatcher.batches += batches_finished;
	s->dispatcher.messages_ok += ok;
	s->dispatcher.messages_nacked += nacked;
	/* the happy path's figure: isolating failures needs more, by design */
	if (nacked == 0 && subxids > s->dispatcher.max_subxids)
		s->dispatcher.max_subxids = subxids;
	if (overflowed)
		s->dispatcher.subxid_overflows++;
	s->last_call_at = GetCurrentTimestamp();
	LWLockRelease(pqw_shared->lock);
}

bool
pqw_dispatcher_take_reload(int slot)
{
	bool		reload;

	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	reload = pqw_shared->slots[slot].dispatcher.reload_handlers;
	pqw_shared->slots[slot].dispatcher.reload_handlers = false;
	LWLockRelease(pqw_shared->lock);
	return reload;
}

bool
pqw_dispatcher_take_wake(int slot, pqw::QueueSet *queues, bool *all)
{
	return wake_set_take(&pqw_shared->slots[slot].dispatcher.wake, queues, all);
}

bool
pqw_dispatcher_wake_pending(int slot)
{
	return pg_atomic_read_u32(&pqw_shared->slots[slot].dispatcher.wake.pending) != 0;
}

bool
pqw_ticker_wakeup_pending(int slot)
{
	return pg_atomic_read_u32(&pqw_shared->slots[slot].ticker.wake.pending) != 0;
}

void
pqw_dispatcher_leave(int slot)
{
	int			t;

	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	pqw_shared->slots[slot].state = PQW_STATE_NO_HANDLERS;
	t = pqw_find_slot(pqw_shared->slots[slot].dboid, PQW_KIND_TICKER);
	if (t >= 0)
		pqw_shared->slots[t].ticker.want_dispatcher = false;
	LWLockRelease(pqw_shared->lock);
}

void
pqw_handlers_changed(Oid dboid)
{
	int			t;

	if (pqw_shared == NULL)
		return;
	LWLockAcquire(pqw_shared->lock, LW_EXCLUSIVE);
	t = pqw_find_slot(dboid, PQW_KIND_TICKER);
	if (t >= 0)
		pqw_shared->slots[t].ticker.want_dispatcher = true;
	LWLockRelease(pqw_shared->lock);
	{
		/* a reload, naming no queue: the reload itself has the handlers
		 * it adds or changes look for a batch, and the others keep what
		 * they were doing (any pgque_reader member can ask for this) */
		pqw::QueueSet none;

		none.clear();
		pqw_wake_dispatcher(dboid, true, &none);
	}
	pqw_wake_launcher();
}

int
pqw_signal_workers(Oid dboid, TimestampTz hold_until)
{
	int			alive = 0;

	if (pqw_shared == NULL)
		return 0;
	LWLockAcquire(pqw_shared->lock, hold_until != 0 ? LW_EXCLUSIVE : LW_SHARED);
	for (int i = 0; i < pqw_shared->nslots; i++)
	{
		PqwSlot    *s = &pqw_shared->slots[i];

		if (!s->in_use || s->dboid != dboid)
			continue;
		if (hold_until != 0)
			s->hold_until = hold_until;
		if (s->pid != 0)
		{
			alive++;
			(void) kill(s->pid, SIGTERM);
		}
	}
	LWLockRelease(pqw_shared->lock);
	return alive;
}

PqwState
pqw_slot_state(int slot)
{
	return pqw_shared->slots[slot].state;
}

int64
pqw_slot_tick_calls(int slot)
{
	return pqw_shared->slots[slot].ticker.tick_calls;
}
