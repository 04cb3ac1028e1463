-- pgque_worker 0.1: SQL objects of the in-server PgQue scheduler and
-- dispatcher. Install PgQue (schema pgque) first.
\echo Use "CREATE EXTENSION pgque_worker" to load this file. \quit


-- ---------------------------------------------------------------------------
-- Status from shared memory
-- ---------------------------------------------------------------------------

-- One row per worker slot.
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
    out last_call_at timestamptz,
    out batches bigint,
    out messages_ok bigint,
    out messages_nacked bigint,
    out max_subxids integer,
    out subxid_overflows bigint,
    out wakeups bigint,
    out tick_seconds_total double precision,
    out tick_seconds_max double precision)
returns setof record
language c strict volatile
as 'MODULE_PATHNAME', 'pqw_status';

-- (creating the C function above loaded the library: not preloaded fails there)
-- PgQue's roles are the cluster's; its schema may come later in this
-- database: a restore of pg_dump's output creates extensions before the
-- other schemas (register_handler() then says what is missing).
do $check$
begin
  if to_regrole('pgque_reader') is null or to_regrole('pgque_admin') is null then
    raise exception 'PgQue is not installed in this cluster'
      using detail = 'Roles pgque_reader and pgque_admin do not exist.',
            hint = 'Install PgQue (\i pgque.sql) first, then CREATE EXTENSION pgque_worker.';
  end if;
end
$check$;

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
grant execute on function pgque_worker.status() to pg_monitor, pgque_admin;
grant execute on function pgque_worker.wake_launcher() to pgque_admin;

-- ---------------------------------------------------------------------------
-- Handler registrations
-- ---------------------------------------------------------------------------

-- The tables live in a schema of their own, on which PUBLIC has no USAGE:
-- a role that can name a relation can queue a lock on it that every later
-- reader waits behind, whatever its privileges. CREATE RULE, CREATE TABLE
-- ... PARTITION OF and ALTER TABLE ... ATTACH PARTITION take ACCESS
-- EXCLUSIVE before they check ownership; held up behind a tenant's open
-- transaction that reads the table, such a request made every worker's
-- read of the registrations wait (or fail) for as long as the tenant liked.
-- Without USAGE, the name is refused before any lock. Tenants use the view
-- pgque_worker.handler below; only the workers read these tables.
create schema pgque_worker_internal;
revoke all on schema pgque_worker_internal from public;
comment on schema pgque_worker_internal is
  'pgque_worker''s own tables (no USAGE for PUBLIC: use the views in schema pgque_worker)';

-- One row per (queue, consumer) whose batches the dispatcher hands to a
-- SQL function. run_as is the role that registered it: the handler runs
-- as that role, never as the worker's.
create table pgque_worker_internal.handler (
    queue_name    text not null,
    consumer_name text not null,
    handler       regprocedure not null,
    is_batch      boolean not null default false,
    retry_after   interval not null default '60 seconds',
    enabled       boolean not null default true,
    run_as        regrole not null default current_user::regrole,
    registered_at timestamptz not null default now(),
    primary key (queue_name, consumer_name),
    constraint handler_retry_after_check check (retry_after >= interval '0')
);
comment on table pgque_worker_internal.handler is
  'pgque_worker handlers: the dispatcher runs handler(msg) or handler(msgs[]) for each batch of queue/consumer as run_as';

-- Progress and counters per handler, written by the dispatcher in the
-- same transaction as the handler's work.
create table pgque_worker_internal.handler_stat (
    queue_name          text not null,
    consumer_name       text not null,
    batches             bigint not null default 0,
    chunks              bigint not null default 0,
    messages_ok         bigint not null default 0,
    messages_nacked     bigint not null default 0,
    errors              bigint not null default 0,
    handler_seconds     double precision not null default 0,
    last_batch_at       timestamptz,
    last_error          text,
    last_error_at       timestamptz,
    batch_id            bigint,      -- batch in flight (chunked), null when none
    batch_last_msg_id   bigint,      -- last event of it handled and committed
    batch_messages_done bigint,
    paused_reason       text,        -- why the dispatcher skips it now, null when it runs
    primary key (queue_name, consumer_name)
);

-- The database these registrations belong to. CREATE DATABASE ... TEMPLATE
-- copies the tables with their rows (and PgQue's with its pending events):
-- the copy's dispatcher would deliver the same events a second time, their
-- effects outside the database twice. A copy serves its registrations only
-- once pgque_worker.serve_copied_handlers() says so.
create table pgque_worker_internal.home (
    datid    oid not null,
    only_row boolean primary key default true check (only_row)
);
insert into pgque_worker_internal.home (datid)
  select oid from pg_database where datname = current_database();
revoke all on pgque_worker_internal.home from public;

-- pg_dump dumps the registrations and the progress through batches in
-- flight (PgQue's tables, with its consumers' positions, are dumped too),
-- not home: a restore serves its registrations (see README, pg_dump).
select pg_catalog.pg_extension_config_dump('pgque_worker_internal.handler', '');
select pg_catalog.pg_extension_config_dump('pgque_worker_internal.handler_stat', '');

-- Registrations are readable by all (no payloads); a role changes only the
-- rows it registered. The worker reads and writes as superuser or
-- pgque_admin.
--
-- UPDATE is granted on the columns, not the table, and DELETE not at all
-- (unregister_handler() deletes): LOCK TABLE in any mode stronger than ROW
-- EXCLUSIVE asks for table-level UPDATE, DELETE or TRUNCATE, and the view
-- below passes a LOCK on to this table with the caller's rights.
alter table pgque_worker_internal.handler enable row level security;
create policy handler_read on pgque_worker_internal.handler for select using (true);
create policy handler_own on pgque_worker_internal.handler for all
  using (pg_has_role(current_user, run_as, 'member'))
  with check (run_as = current_user::regrole);
grant select, insert on pgque_worker_internal.handler to public;
grant update (queue_name, consumer_name, handler, is_batch, retry_after, enabled, run_as,
              registered_at)
  on pgque_worker_internal.handler to public;
revoke all on pgque_worker_internal.handler_stat from public;
grant usage on schema pgque_worker_internal to pgque_admin;
grant select on pgque_worker_internal.home to pgque_admin;
grant select, insert, update, delete on pgque_worker_internal.handler_stat to pgque_admin;

-- The registrations as tenants read and change them: every statement on
-- the view runs on the table with the caller's rights and row policy
-- (security_invoker). A lock a tenant queues on the view holds up only
-- other sessions using the view, never a worker.
create view pgque_worker.handler with (security_invoker = true) as
select queue_name, consumer_name, handler, is_batch, retry_after, enabled, run_as, registered_at
  from pgque_worker_internal.handler;
comment on view pgque_worker.handler is
  'pgque_worker handlers (register_handler() and unregister_handler() change them; UPDATE changes one''s own)';
grant usage on schema pgque_worker to public;
grant select, insert on pgque_worker.handler to public;
grant update (queue_name, consumer_name, handler, is_batch, retry_after, enabled, run_as,
              registered_at)
  on pgque_worker.handler to public;

-- Validates a registration as the role making it: the queue exists, the
-- function has the handler signature, the role may execute it and may
-- consume (pgque_reader), and the handler will run as that role.
create function pgque_worker._validate_handler(
    queue text, consumer text, handler regprocedure, batch boolean,
    retry_after interval, run_as regrole)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  p pg_proc;
  kind text := case when batch then 'batch' else 'message' end;
  want regtype := case when batch then 'pgque.message[]'::regtype
                       else 'pgque.message'::regtype end;
begin
  if queue is null or consumer is null or handler is null or batch is null
     or retry_after is null or run_as is null then
    raise exception 'queue, consumer, handler, batch and retry_after must not be null';
  end if;
  -- the dispatcher names the handler call it was ended in by queue and
  -- consumer, each in at most 63 bytes (shared memory)
  if octet_length(consumer) > 63 then
    raise exception 'consumer name "%" is too long', consumer
      using errcode = 'name_too_long',
            detail = 'A handler''s consumer name may have at most 63 bytes.';
  end if;
  if retry_after < interval '0' then
    raise exception 'retry_after must not be negative'
      using errcode = 'invalid_parameter_value';
  end if;
  if not pg_has_role(current_user, 'pgque_reader', 'usage') then
    raise exception 'role "%" may not consume queues', current_user
      using errcode = 'insufficient_privilege',
            hint = 'Grant pgque_reader to the role that registers handlers.';
  end if;
  if not pgque_worker._queue_exists(queue) then
    raise exception 'queue "%" does not exist', queue
      using errcode = 'undefined_object',
            hint = 'Create it with pgque.create_queue().';
  end if;
  select * into p from pg_proc where oid = handler;
  if p.pronargs <> 1 or p.proargtypes[0] <> want or p.prokind <> 'f' or p.proretset then
    raise exception 'function % cannot be a % handler', handler::text, kind
      using errcode = 'invalid_function_definition',
            detail = format('A %s handler takes exactly one argument of type %s and returns a single value.',
                            kind, want),
            hint = case when batch then 'Use batch => false for a function taking pgque.message.'
                        else 'Use batch => true for a function taking pgque.message[].' end;
  end if;
  if run_as is distinct from current_user::regrole
     and not (select rolsuper from pg_roles where rolname = current_user) then
    raise exception 'a handler runs as the role that registers it'
      using errcode = 'insufficient_privilege',
            detail = format('run_as is %s, the current role is %s.', run_as, current_user);
  end if;
  -- whoever owns the function can replace it: it may run as run_as only
  -- if that owner has run_as's rights anyway (or is a superuser)
  if p.proowner <> run_as
     and not (select r.rolsuper from pg_roles r where r.oid = p.proowner)
     and not pg_has_role(p.proowner, run_as, 'usage') then
    raise exception 'function % belongs to role %, who could replace it and run code as role %',
                    handler::text, p.proowner::regrole, run_as
      using errcode = 'insufficient_privilege',
            hint = 'A handler''s function must belong to the role it runs as, to a role with that role''s rights, or to a superuser.';
  end if;
  if not has_function_privilege(current_user, handler, 'execute') then
    raise exception 'role "%" may not execute function %', current_user, handler::text
      using errcode = 'insufficient_privilege';
  end if;
  -- a handler runs only as a role that could run it in a session of its own
  if not (select r.rolcanlogin from pg_roles r where r.oid = run_as) then
    raise exception 'role "%" may not log in, so it cannot run a handler', run_as
      using errcode = 'insufficient_privilege',
            hint = 'Register the handler as a role with LOGIN (and CONNECT on this database).';
  end if;
  if not has_database_privilege(run_as::oid, current_database(), 'connect') then
    raise exception 'role "%" may not connect to database "%", so it cannot run a handler',
                    run_as, current_database()
      using errcode = 'insufficient_privilege';
  end if;
end
$$;

-- The same checks for direct writes to the table, and the wake-up.
create function pgque_worker._check_handler() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform pgque_worker._validate_handler(new.queue_name, new.consumer_name, new.handler,
                                         new.is_batch, new.retry_after, new.run_as);
  perform pgque_worker._handlers_changed();
  return new;
end
$$;

create trigger handler_check before insert or update on pgque_worker_internal.handler
  for each row execute function pgque_worker._check_handler();

-- A handler removed: forget its counters, wake the dispatcher. The progress
-- through a batch in flight is kept: registering the consumer again resumes
-- after the last committed chunk instead of handling those events twice.
create function pgque_worker._forget_handler() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  delete from pgque_worker_internal.handler_stat s
   where s.queue_name = old.queue_name and s.consumer_name = old.consumer_name
     and s.batch_id is null;
  update pgque_worker_internal.handler_stat s
     set batches = 0, chunks = 0, messages_ok = 0, messages_nacked = 0, errors = 0,
         handler_seconds = 0, last_batch_at = null, last_error = null,
         last_error_at = null, paused_reason = null
   where s.queue_name = old.queue_name and s.consumer_name = old.consumer_name;
  perform pgque_worker._handlers_changed();
  return old;
end
$$;

create trigger handler_forget after delete on pgque_worker_internal.handler
  for each row execute function pgque_worker._forget_handler();

-- Does the queue exist? Asked of PgQue as the owner of schema pgque,
-- security-restricted (never with the extension owner's rights: whoever
-- owns schema pgque writes that code).
create function pgque_worker._queue_exists(queue text) returns boolean
language c stable strict
as 'MODULE_PATHNAME', 'pqw_queue_exists';

-- Is the consumer subscribed? Asked the same way.
create function pgque_worker._consumer_exists(queue text, consumer text) returns boolean
language c stable strict
as 'MODULE_PATHNAME', 'pqw_consumer_exists';

-- Wakes the dispatcher when the registering transaction commits. Called
-- by _check_handler() as the registering role, which _validate_handler()
-- has just required to be a pgque_reader member, and by _forget_handler()
-- as its definer.
create function pgque_worker._handlers_changed() returns void
language c volatile
as 'MODULE_PATHNAME', 'pqw_handlers_changed';
revoke all on function pgque_worker._handlers_changed() from public;
grant execute on function pgque_worker._handlers_changed() to pgque_reader;

-- Registers (or updates) the handler of queue/consumer, subscribing the
-- consumer if needed. The handler will run as the calling role.
create function pgque_worker.register_handler(
    queue text,
    consumer text,
    handler regprocedure,
    batch boolean default false,
    retry_after interval default '60 seconds',
    enabled boolean default true,
    takeover boolean default false)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform pgque_worker._validate_handler(queue, consumer, handler, batch, retry_after,
                                         current_user::regrole);
  if enabled is null then
    raise exception 'enabled must not be null';
  end if;
  if takeover is null then
    raise exception 'takeover must not be null';
  end if;
  -- a consumer of that name without a handler may be an external client's
  if not takeover
     and not exists (select 1 from pgque_worker.handler h
                      where h.queue_name = queue and h.consumer_name = consumer)
     and pgque_worker._consumer_exists(queue, consumer) then
    raise exception 'consumer "%" of queue "%" already exists', consumer, queue
      using errcode = 'duplicate_object',
            detail = 'Another client may be consuming it: two consumers of one name take each other''s batches.',
            hint = 'Stop that client, then register with takeover => true: the handler continues from the consumer''s position.';
  end if;
  insert into pgque_worker.handler as h
      (queue_name, consumer_name, handler, is_batch, retry_after, enabled, run_as)
  values (queue, consumer, handler, batch, retry_after, enabled, current_user::regrole)
  on conflict (queue_name, consumer_name) do update
     set handler = excluded.handler, is_batch = excluded.is_batch,
         retry_after = excluded.retry_after, enabled = excluded.enabled,
         run_as = excluded.run_as, registered_at = now();
  -- subscribing an existing consumer keeps its position
  perform pgque.subscribe(queue, consumer);
end
$$;

-- Deletes the registration of queue/consumer if the calling role may act
-- as the role it runs as (the same rule as the table's row policy), as the
-- table's owner: PUBLIC has no DELETE on the table (see above). False when
-- there is no such registration the caller may delete.
create function pgque_worker._delete_handler(queue text, consumer text) returns boolean
language c volatile strict
as 'MODULE_PATHNAME', 'pqw_delete_handler';

-- Removes the handler of queue/consumer; with unsubscribe => true also
-- unsubscribes the consumer (its unconsumed events are then lost to it).
create function pgque_worker.unregister_handler(
    queue text,
    consumer text,
    unsubscribe boolean default false)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if queue is null or consumer is null or unsubscribe is null then
    raise exception 'queue, consumer and unsubscribe must not be null';
  end if;
  if not pgque_worker._delete_handler(queue, consumer) then
    raise exception 'no handler is registered for queue "%", consumer "%"', queue, consumer
      using errcode = 'undefined_object';
  end if;
  if unsubscribe then
    perform pgque.unsubscribe(queue, consumer);
  end if;
end
$$;

-- Per handler: registration, counters, last error, batch in flight. A role
-- sees the rows of handlers it registered (or may act as); pgque_admin and
-- superusers see all. Error texts may quote payloads.
create view pgque_worker.handler_stats with (security_barrier) as
select h.queue_name, h.consumer_name, h.handler, h.is_batch, h.enabled, h.run_as,
       coalesce(s.batches, 0) as batches,
       coalesce(s.messages_ok, 0) as messages_ok,
       coalesce(s.messages_nacked, 0) as messages_nacked,
       coalesce(s.errors, 0) as errors,
       coalesce(s.handler_seconds, 0) as handler_seconds,
       s.last_batch_at, s.last_error, s.last_error_at,
       s.batch_id as batch_in_flight, s.batch_messages_done as batch_messages_done,
       s.paused_reason
  from pgque_worker_internal.handler h
  left join pgque_worker_internal.handler_stat s using (queue_name, consumer_name)
 where pg_has_role(current_user, h.run_as, 'member')
    or pg_has_role(current_user, 'pgque_admin', 'member');
grant select on pgque_worker.handler_stats to public;

revoke all on function pgque_worker._queue_exists(text) from public;
grant execute on function pgque_worker._queue_exists(text) to pgque_reader;
revoke all on function pgque_worker._consumer_exists(text, text) from public;
grant execute on function pgque_worker._consumer_exists(text, text) to pgque_reader;

-- ---------------------------------------------------------------------------
-- Pause and resume, per database, persisted across restarts
-- ---------------------------------------------------------------------------

-- Stops ticking, maintenance and dispatch in a database until resume(),
-- also across server restarts (a per-database setting,
-- pgque_worker.database_paused). PgQue's own per-queue ticker_paused is
-- honoured as always.
-- Sets or resets the database's paused setting and restarts its workers
-- (at commit) so they read it. Not security definer: it checks the
-- invoker (a superuser, the database's owner, or a pgque_admin member for
-- the current database) and runs only the ALTER DATABASE as superuser.
create function pgque_worker._set_paused(database name, paused boolean)
returns void
language c volatile
as 'MODULE_PATHNAME', 'pqw_set_paused';
revoke all on function pgque_worker._set_paused(name, boolean) from public;
grant execute on function pgque_worker._set_paused(name, boolean) to pgque_admin;

create function pgque_worker.pause(database name default current_database())
returns void language sql security invoker
set search_path = pg_catalog, pg_temp
as $$ select pgque_worker._set_paused(database, true) $$;

create function pgque_worker.resume(database name default current_database())
returns void language sql security invoker
set search_path = pg_catalog, pg_temp
as $$ select pgque_worker._set_paused(database, false) $$;

revoke all on function pgque_worker.pause(name) from public;
revoke all on function pgque_worker.resume(name) from public;
grant execute on function pgque_worker.pause(name) to pgque_admin;
grant execute on function pgque_worker.resume(name) to pgque_admin;

-- In a database made from another one as TEMPLATE: serve the registrations
-- it copied (see pgque_worker_internal.home), from the events pending now.
create function pgque_worker.serve_copied_handlers()
returns void language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  update pgque_worker_internal.home
     set datid = (select oid from pg_database where datname = current_database());
  perform pgque_worker._handlers_changed();
end $$;
revoke all on function pgque_worker.serve_copied_handlers() from public;
grant execute on function pgque_worker.serve_copied_handlers() to pgque_admin;

-- ---------------------------------------------------------------------------
-- Metrics: the same numbers as rows and as Prometheus text
-- ---------------------------------------------------------------------------

-- The queue figures, read from PgQue's tables as the owner of schema
-- pgque, security-restricted; none of PgQue's code runs, so a superuser
-- scraping the metrics runs nothing PgQue's owner could replace. No rows
-- where PgQue is missing or untrusted.
create function pgque_worker._pgque_metrics(
    out metric text, out queue_name text, out consumer_name text, out value float8)
returns setof record
language c volatile
as 'MODULE_PATHNAME', 'pqw_pgque_metrics';
revoke all on function pgque_worker._pgque_metrics() from public;
grant execute on function pgque_worker._pgque_metrics() to pg_monitor, pgque_admin;

-- Per database (every database, from shared memory), per queue and per
-- handler (this database).
create view pgque_worker.metrics_view as
with st as (select * from pgque_worker.status()),
     pq as (select * from pgque_worker._pgque_metrics()),
     t as (select * from st where kind = 'ticker'),
     d as (select * from st where kind = 'dispatcher')
select 'pgque_worker_ticker_calls_total'::text as metric, 'counter'::text as type,
       'ticker() calls'::text as help, jsonb_build_object('database', datname) as labels,
       tick_calls::float8 as value from t
union all
select 'pgque_worker_ticks_total', 'counter', 'ticks materialized',
       jsonb_build_object('database', datname), ticks::float8 from t
union all
select 'pgque_worker_ticker_wakeups_total', 'counter', 'ticker wake-ups by commits that enqueued',
       jsonb_build_object('database', datname), wakeups::float8 from t
union all
select 'pgque_worker_last_tick_age_seconds', 'gauge', 'seconds since the last materialized tick',
       jsonb_build_object('database', datname),
       extract(epoch from clock_timestamp() - last_tick_at)::float8 from t where last_tick_at is not null
union all
select 'pgque_worker_tick_call_duration_seconds_sum', 'counter', 'time in successful ticker() calls',
       jsonb_build_object('database', datname), tick_seconds_total from t
union all
select 'pgque_worker_tick_call_duration_seconds_count', 'counter', 'successful ticker() calls',
       jsonb_build_object('database', datname), tick_calls::float8 from t
union all
select 'pgque_worker_tick_call_duration_seconds_max', 'gauge', 'longest ticker() call',
       jsonb_build_object('database', datname), tick_seconds_max from t
union all
select 'pgque_worker_retry_events_moved_total', 'counter', 'events moved back from the retry queue',
       jsonb_build_object('database', datname), retry_events_moved::float8 from t
union all
select 'pgque_worker_maint_runs_total', 'counter', 'pgque.maint() runs',
       jsonb_build_object('database', datname), maint_runs::float8 from t
union all
select 'pgque_worker_rotation_runs_total', 'counter', 'pgque.maint_rotate_tables_step2() runs',
       jsonb_build_object('database', datname), rotate_runs::float8 from t
union all
select 'pgque_worker_errors_total', 'counter', 'failed calls',
       jsonb_build_object('database', datname, 'worker', kind), errors::float8 from st
union all
select 'pgque_worker_up', 'gauge', '1 while the worker runs and is not failing',
       jsonb_build_object('database', datname, 'worker', kind, 'state', state),
       case when state = 'running' then 1 else 0 end::float8 from st
union all
select 'pgque_worker_dispatched_messages_total', 'counter', 'messages handled by the dispatcher',
       jsonb_build_object('database', datname), messages_ok::float8 from d
union all
select 'pgque_worker_queue_ticker_lag_seconds', 'gauge', 'age of the queue''s last tick',
       jsonb_build_object('database', current_database(), 'queue', pq.queue_name), pq.value
  from pq where pq.metric = 'ticker_lag'
union all
select 'pgque_worker_queue_new_events', 'gauge', 'events not yet in a tick',
       jsonb_build_object('database', current_database(), 'queue', pq.queue_name), pq.value
  from pq where pq.metric = 'new_events'
union all
select 'pgque_worker_queue_dead_letters', 'gauge', 'events in the dead-letter table',
       jsonb_build_object('database', current_database(), 'queue', pq.queue_name), pq.value
  from pq where pq.metric = 'dead_letters'
union all
select 'pgque_worker_handler_messages_total', 'counter', 'messages handled',
       jsonb_build_object('database', current_database(), 'queue', h.queue_name,
                          'consumer', h.consumer_name, 'result', 'ok'), h.messages_ok::float8
  from pgque_worker.handler_stats h
union all
select 'pgque_worker_handler_messages_total', 'counter', 'messages handled',
       jsonb_build_object('database', current_database(), 'queue', h.queue_name,
                          'consumer', h.consumer_name, 'result', 'nacked'), h.messages_nacked::float8
  from pgque_worker.handler_stats h
union all
select 'pgque_worker_handler_seconds_total', 'counter', 'time spent in the handler',
       jsonb_build_object('database', current_database(), 'queue', h.queue_name,
                          'consumer', h.consumer_name), h.handler_seconds
  from pgque_worker.handler_stats h
union all
select 'pgque_worker_handler_batches_total', 'counter', 'batches finished',
       jsonb_build_object('database', current_database(), 'queue', h.queue_name,
                          'consumer', h.consumer_name), h.batches::float8
  from pgque_worker.handler_stats h
union all
select 'pgque_worker_handler_errors_total', 'counter', 'dispatch failures outside the handler',
       jsonb_build_object('database', current_database(), 'queue', h.queue_name,
                          'consumer', h.consumer_name), h.errors::float8
  from pgque_worker.handler_stats h
union all
select 'pgque_worker_consumer_lag_seconds', 'gauge', 'age of the last tick the consumer finished',
       jsonb_build_object('database', current_database(), 'queue', pq.queue_name,
                          'consumer', pq.consumer_name), pq.value
  from pq
  join pgque_worker_internal.handler h using (queue_name, consumer_name)
 where pq.metric = 'consumer_lag';

-- Prometheus text exposition format (one scrape).
create function pgque_worker.metrics() returns text
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  with m as (select * from pgque_worker.metrics_view),
  lines as (
    select metric, 0 as ord, format('# HELP %s %s', metric, min(help)) as line
      from m group by metric
    union all
    select metric, 1, format('# TYPE %s %s', metric, min(type)) from m group by metric
    union all
    select metric, 2, metric
           || coalesce('{' || (select string_agg(format('%s="%s"', k,
                 replace(replace(replace(v, '\', '\\'), '"', '\"'), E'\n', '\n')), ',' order by k)
                 from jsonb_each_text(labels) as l(k, v)) || '}', '')
           || ' ' || case when value is null then 'NaN' else value::text end
      from m)
  select string_agg(line, E'\n' order by metric, ord, line) || E'\n' from lines
$$;

revoke all on pgque_worker.metrics_view from public;
revoke all on function pgque_worker.metrics() from public;
grant select on pgque_worker.metrics_view to pg_monitor, pgque_admin;
grant execute on function pgque_worker.metrics() to pg_monitor, pgque_admin;
