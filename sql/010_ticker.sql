-- Messages are delivered with no manual pgque.ticker() call: the worker
-- ticks. The worker is visible in pg_stat_activity and status().
select pgque.create_queue('regress_tick');
select pgque.subscribe('regress_tick', 'c1');
-- one transaction, so both are in one batch
select pgque.send('regress_tick', 'first'::text), pgque.send('regress_tick', 'second'::text);
-- default policy (ticker_max_count 500, max_lag 3 s): the tick comes by lag
select payload from regress_util.receive_wait('regress_tick', 'c1') order by msg_id;

select backend_type, datname = current_database() as this_db
  from pg_stat_activity where backend_type = 'pgque_worker ticker'
   and datname = current_database();

select kind, state, pid is not null as has_pid, tick_calls > 0 as ticking,
       ticks > 0 as ticked, started_at <= now() as started, errors, last_error
  from regress_util.my_ticker;

-- The launcher itself is connected to no database.
select datname is null as no_database from pg_stat_activity
 where backend_type = 'pgque_worker launcher';

-- Maintenance ran once at start.
select regress_util.wait_for($$select maint_runs >= 1 and rotate_runs >= 1 and retry_calls >= 1 from regress_util.my_ticker$$);

-- pgque_worker's status is for monitoring roles only.
select has_function_privilege('public', 'pgque_worker.status()', 'execute') as public_can,
       has_function_privilege('pg_monitor', 'pgque_worker.status()', 'execute') as monitor_can;

select pgque.unsubscribe('regress_tick', 'c1');
select pgque.drop_queue('regress_tick');
