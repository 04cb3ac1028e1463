/*
 * module.cpp: library entry point. Defines the pgque_worker.* settings,
 * installs the shared-memory hooks and registers the launcher. Refuses to
 * load other than through shared_preload_libraries.
 */
#include "pg.h"
#include "guc.h"
#include "launcher.h"
#include "shmem.h"
#include "wakeup.h"
#include "ddl_hook.h"
#include "trust.h"

#include "core/dblist.hpp"

extern "C" {
PG_MODULE_MAGIC;
}

bool		pqw_enabled = true;
char	   *pqw_databases = NULL;
char	   *pqw_role = NULL;
int			pqw_discovery_interval_ms = 10000;
int			pqw_max_workers = -1;
int			pqw_tick_period_ms = 0;
int			pqw_ticker_timeout_ms = 1000;
int			pqw_retry_interval_ms = 30000;
int			pqw_retry_max_calls = 100;
int			pqw_maint_interval_ms = 30000;
int			pqw_rotate_interval_ms = 30000;
int			pqw_statement_timeout_ms = 25000;
int			pqw_lock_timeout_ms = 1000;
int			pqw_log_quiet_interval_ms = 60000;
int			pqw_chunk_messages = 1000;
int			pqw_work_mem_kb = 16384;
bool		pqw_wake_on_commit = true;
bool		pqw_takeover = false;
bool		pqw_database_paused = false;
int			pqw_min_tick_interval_ms = 2;
int			pqw_max_idle_interval_ms = 60000;
int			pqw_handler_timeout_ms = 30000;
int			pqw_dispatch_poll_interval_ms = 0;
int			pqw_debug_fail_commit_event = 0;

/* pgque_worker.dispatch_synchronous_commit: "default" keeps the worker
 * session's synchronous_commit (the server's, or what ALTER DATABASE or
 * ALTER ROLE set); the others are its values. */
enum
{
	PQW_SYNC_DEFAULT = 0, PQW_SYNC_OFF, PQW_SYNC_LOCAL, PQW_SYNC_REMOTE_WRITE, PQW_SYNC_ON,
	PQW_SYNC_REMOTE_APPLY
};
static const struct config_enum_entry sync_commit_options[] = {
	{"default", PQW_SYNC_DEFAULT, false},
	{"off", PQW_SYNC_OFF, false},
	{"local", PQW_SYNC_LOCAL, false},
	{"remote_write", PQW_SYNC_REMOTE_WRITE, false},
	{"on", PQW_SYNC_ON, false},
	{"remote_apply", PQW_SYNC_REMOTE_APPLY, false},
	{NULL, 0, false}
};
int			pqw_dispatch_synchronous_commit = PQW_SYNC_DEFAULT;

const char *
pqw_dispatch_synchronous_commit_value(void)
{
	if (pqw_dispatch_synchronous_commit == PQW_SYNC_DEFAULT)
		return NULL;
	for (const struct config_enum_entry *e = sync_commit_options; e->name != NULL; e++)
		if (e->val == pqw_dispatch_synchronous_commit)
			return e->name;
	return NULL;
}

/*
 * Whether the database list parses; false with a message in `err`
 * (caller-owned buffer). Its C++ objects live and die inside: the caller
 * may ereport. Catches every C++ exception: called from PostgreSQL code.
 */
static bool
check_db_list_safe(const char *text, char *err, size_t errlen)
{
	try
	{
		pqw::DbList list;
		std::string message;

		if (pqw::parse_db_list(text ? text : "", list, message))
			return true;
		strlcpy(err, message.c_str(), errlen);
	}
	catch (const std::exception &e)
	{
		strlcpy(err, e.what(), errlen);
	}
	catch (...)
	{
		strlcpy(err, "unexpected error parsing the list", errlen);
	}
	return false;
}

static bool
check_databases(char **newval, void **extra, GucSource source)
{
	char		err[256];

	(void) extra;
	(void) source;
	if (!check_db_list_safe(*newval, err, sizeof(err)))
	{
		GUC_check_errmsg("invalid value for pgque_worker.databases: %s", err);
		GUC_check_errhint("Use \"*\" for every database with PgQue, or a comma-separated list of database names.");
		return false;
	}
	return true;
}

static bool
check_role(char **newval, void **extra, GucSource source)
{
	(void) extra;
	(void) source;
	if (*newval && strlen(*newval) >= NAMEDATALEN)
	{
		GUC_check_errmsg("role name is too long");
		GUC_check_errdetail("Role names are at most %d bytes.", NAMEDATALEN - 1);
		return false;
	}
	return true;
}

/* -1 (the server's work_mem) or what work_mem itself accepts. The
 * non-const newval is GucIntCheckHook's signature. */
static bool
pqw_check_work_mem(int *newval, void **extra, GucSource source)	/* NOLINT(readability-non-const-parameter) */
{
	(void) extra;
	(void) source;
	if (*newval == -1 || *newval >= 64)
		return true;
	GUC_check_errdetail("pgque_worker.work_mem is -1 (the server's work_mem) or at least 64 kB.");
	return false;
}

bool
pqw_database_selected(const char *dbname)
{
	bool		selected = false;

	try
	{
		pqw::DbList list;
		std::string message;

		if (pqw::parse_db_list(pqw_databases ? pqw_databases : "*", list, message))
			selected = list.contains(dbname);
	}
	catch (...)
	{
		selected = false;
	}
	return selected;
}

static void
define_settings(void)
{
	DefineCustomBoolVariable("pgque_worker.enabled",
							 "Turns all pgque_worker calls on or off (applies on reload).",
							 NULL, &pqw_enabled, true, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("pgque_worker.databases",
							   "Databases served: \"*\" (every database with PgQue) or a comma-separated list.",
							   NULL, &pqw_databases, "*", PGC_SIGHUP, 0,
							   check_databases, NULL, NULL);
	DefineCustomStringVariable("pgque_worker.role",
							   "Role the ticker and maintenance calls run as; empty means the bootstrap superuser.",
							   "A non-superuser member of pgque_admin works too.",
							   &pqw_role, "", PGC_SIGHUP, 0,
							   check_role, NULL, NULL);
	DefineCustomIntVariable("pgque_worker.discovery_interval",
							"How often the launcher looks for databases and PgQue installs (100 ms .. 1 h).",
							NULL, &pqw_discovery_interval_ms, 10000, 100, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pgque_worker.max_workers",
							"Most tickers and dispatchers running at once, in all databases; -1: max_worker_processes - 1.",
							"Databases a superuser owns come first, then those served longer.",
							&pqw_max_workers, -1, -1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgque_worker.tick_period",
							"Period of pgque.ticker() calls (1 .. 60000 ms); 0 reads pgque.config.tick_period_ms.",
							NULL, &pqw_tick_period_ms, 0, 0, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pgque_worker.ticker_timeout",
							"Timeout of one pgque.ticker() call (10 ms .. 10 min).",
							NULL, &pqw_ticker_timeout_ms, 1000, 10, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pgque_worker.retry_interval",
							"How often pgque.maint_retry_events() is drained (10 ms .. 1 day).",
							NULL, &pqw_retry_interval_ms, 30000, 10, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pgque_worker.retry_max_calls",
							"Most pgque.maint_retry_events() calls in one drain (1 .. 100000).",
							"Each call moves at most 10 events and runs in its own transaction.",
							&pqw_retry_max_calls, 100, 1, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgque_worker.maint_interval",
							"How often pgque.maint() runs (10 ms .. 1 day).",
							NULL, &pqw_maint_interval_ms, 30000, 10, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pgque_worker.rotate_interval",
							"How often pgque.maint_rotate_tables_step2() runs (10 ms .. 1 day).",
							NULL, &pqw_rotate_interval_ms, 30000, 10, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pgque_worker.statement_timeout",
							"Timeout of each maintenance call (100 ms .. 1 h).",
							NULL, &pqw_statement_timeout_ms, 25000, 100, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pgque_worker.lock_timeout",
							"Longest lock wait of a ticker or maintenance call (0 = none .. 10 min).",
							"Calls run one after another, so a maintenance call waiting on a lock would delay ticks.",
							&pqw_lock_timeout_ms, 1000, 0, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pgque_worker.log_quiet_interval",
							"A repeated identical error is logged at most once per this interval (0 .. 1 day).",
							NULL, &pqw_log_quiet_interval_ms, 60000, 0, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomBoolVariable("pgque_worker.takeover",
							 "Take over databases another scheduler (pg_cron, pg_timetable) ticks, by calling pgque.stop().",
							 "Off: such a database is left alone, with a WARNING, until the other scheduler is gone.",
							 &pqw_takeover, false, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("pgque_worker.database_paused",
							 "Set per database by pgque_worker.pause() and resume(); do not set it by hand.",
							 NULL, &pqw_database_paused, false, PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("pgque_worker.wake_on_commit",
							 "Wake the ticker when a transaction that enqueued events commits, and skip idle ticker calls.",
							 "Off: pgque.ticker() is called every tick period.",
							 &pqw_wake_on_commit, true, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("pgque_worker.min_tick_interval",
							"Shortest time between ticker calls caused by commits (0 .. 1000 ms).",
							NULL, &pqw_min_tick_interval_ms, 2, 0, 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pgque_worker.max_idle_interval",
							"With wake_on_commit, the longest an idle database goes without a ticker call (100 ms .. 1 h).",
							"Bounds the delay of events the commit hook cannot see (COPY, logical replication).",
							&pqw_max_idle_interval_ms, 60000, 100, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pgque_worker.chunk_messages",
							"Messages a dispatcher handles per transaction (1 .. 1000000).",
							"A batch larger than this commits chunk by chunk, recording its progress.",
							&pqw_chunk_messages, 1000, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgque_worker.work_mem",
							"work_mem of pgque_worker's workers (-1: the server's work_mem).",
							"A dispatcher sorts each batch's events in ev_id order and, when the batch takes more than one chunk transaction, holds the rest across the commit: within this much memory, neither goes to a temporary file. Handlers run with it too.",
							&pqw_work_mem_kb, 16384, -1, MAX_KILOBYTES,
							PGC_SIGHUP, GUC_UNIT_KB, pqw_check_work_mem, NULL, NULL);
	DefineCustomEnumVariable("pgque_worker.dispatch_synchronous_commit",
							 "synchronous_commit of the dispatcher's chunk transactions (default: the worker session's own).",
							 "off: a chunk's commit (the handler's writes, the ack, the recorded progress) does not wait for its WAL flush; a crash can lose the last chunks committed, all of a chunk or none of it, and their batches are delivered again.",
							 &pqw_dispatch_synchronous_commit, PQW_SYNC_DEFAULT, sync_commit_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgque_worker.handler_timeout",
							"Timeout of one attempt at handling a chunk (10 ms .. 1 h).",
							NULL, &pqw_handler_timeout_ms, 30000, 10, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pgque_worker.dispatch_poll_interval",
							"How often an idle dispatcher looks for batches when no tick wakes it (0 = never, only a tick wakes it; up to 1 h).",
							"Every committed tick wakes the dispatcher; a poll is only a safety net.",
							&pqw_dispatch_poll_interval_ms, 0, 0, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pgque_worker.debug_fail_commit_event",
							"For tests: the commit of a dispatched chunk that handed this event id to its handler fails (0: off).",
							NULL, &pqw_debug_fail_commit_event, 0, 0, INT_MAX,
							PGC_SIGHUP, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
	MarkGUCPrefixReserved("pgque_worker");
}

PQW_EXPORT void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pgque_worker must be loaded via shared_preload_libraries"),
				 errhint("Add pgque_worker to shared_preload_libraries in postgresql.conf and restart the server.")));

	define_settings();
	pqw_shmem_install_hooks();
	pqw_wakeup_install();
	pqw_trust_install();
	pqw_ddl_hook_install();
	pqw_register_launcher();
}
