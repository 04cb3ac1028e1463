-- pgque_worker 0.1: SQL objects of the in-server PgQue scheduler.
\echo Use "CREATE EXTENSION pgque_worker" to load this file. \quit

-- One row per worker slot, read from shared memory.
create function pgque_worker.status(
    out datname text,
    out kind text,
    out pid integer,
    out state text,
    out started_at timestamptz,
    out last_tick_at timestamptz,
    out tick_calls bigint,
    out ticks bigint,
    out retry_calls bigint,
    out retry_events_moved bigint,
    out retry_last_drain bigint,
    out maint_runs bigint,
    out rotate_runs bigint,
    out errors bigint,
    out last_error text,
    out last_error_at timestamptz,
    out last_call_at timestamptz)
returns setof record
language c strict volatile
as 'MODULE_PATHNAME', 'pqw_status';

comment on function pgque_worker.status() is
  'pgque_worker workers per database: state, counters and last error';

-- Ask the launcher to rescan databases now instead of at the next
-- discovery interval (e.g. right after installing PgQue).
create function pgque_worker.wake_launcher()
returns void
language c strict volatile
as 'MODULE_PATHNAME', 'pqw_wake';

revoke all on function pgque_worker.status() from public;
revoke all on function pgque_worker.wake_launcher() from public;
grant execute on function pgque_worker.status() to pg_monitor;
