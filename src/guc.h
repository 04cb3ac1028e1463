/*
 * guc.h: pgque_worker.* settings (defined in module.cpp).
 */
#pragma once

#include "pg.h"

extern bool pqw_enabled;
extern char *pqw_databases;
extern char *pqw_role;
extern int	pqw_discovery_interval_ms;
extern int	pqw_max_workers;
extern int	pqw_tick_period_ms;
extern int	pqw_ticker_timeout_ms;
extern int	pqw_retry_interval_ms;
extern int	pqw_retry_max_calls;
extern int	pqw_maint_interval_ms;
extern int	pqw_rotate_interval_ms;
extern int	pqw_statement_timeout_ms;
extern int	pqw_lock_timeout_ms;
extern int	pqw_log_quiet_interval_ms;
extern int	pqw_chunk_messages;
extern int	pqw_work_mem_kb;
extern bool pqw_wake_on_commit;
extern bool pqw_takeover;
extern bool pqw_database_paused;
extern int	pqw_min_tick_interval_ms;
extern int	pqw_max_idle_interval_ms;
extern int	pqw_handler_timeout_ms;
extern int	pqw_dispatch_poll_interval_ms;
extern int	pqw_debug_fail_commit_event;
extern int	pqw_dispatch_synchronous_commit;

/* synchronous_commit for a dispatched chunk's transaction, as
 * pgque_worker.dispatch_synchronous_commit says (NULL: the worker
 * session's own). */
const char *pqw_dispatch_synchronous_commit_value(void);

/* Is `dbname` selected by pgque_worker.databases? */
bool		pqw_database_selected(const char *dbname);
