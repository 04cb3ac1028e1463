-- Wake on commit: with a 10 s tick period, a message is handled well before
-- the period, because the commit that enqueued it wakes the ticker. And no
-- idle busywork: an idle database gets no ticker() call between the ticks
-- its queues' idle policy asks for.
alter system set pgque_worker.tick_period = '10s';
alter system set pgque_worker.dispatch_poll_interval = '10s';
select pg_reload_conf();
select pgque.create_queue('regress_wake');
select pgque.set_queue_config('regress_wake', 'ticker_max_count', '1');
create table regress_wake_got (payload text, sent_at timestamptz, handled_at timestamptz);
create function regress_wake_handler(m pgque.message) returns void language plpgsql as $$
begin
  insert into regress_wake_got values (m.payload, m.created_at, clock_timestamp());
end $$;
select pgque_worker.register_handler('regress_wake', 'w', 'regress_wake_handler(pgque.message)');
select regress_util.wait_for($$select count(*) = 1 from pgque_worker.status()
                               where datname = current_database() and kind = 'dispatcher' and state = 'running'$$);
-- the queue's first event does not count for ticker_max_count (PgQ): a
-- warm-up, ticked by the lag policy, so that the one measured is ticked by
-- its commit's wake-up alone
select pgque.send('regress_wake', 'warm-up');
select regress_util.wait_for($$select count(*) = 1 from regress_wake_got$$, '30 seconds');
-- let the settings and the first ticks settle
select pg_sleep(0.5);
select wakeups as wakeups_before from regress_util.my_ticker \gset

select pgque.send('regress_wake', 'hello');
select regress_util.wait_for($$select count(*) = 1 from regress_wake_got where payload = 'hello'$$, '5 seconds');
select payload, handled_at - sent_at < interval '5 seconds' as well_before_the_period
  from regress_wake_got where payload = 'hello';
select wakeups > :wakeups_before as woken_by_commit from regress_util.my_ticker;

-- idle: a queue whose policy wants a tick at most every 30 min (max_lag / 2)
select pgque_worker.unregister_handler('regress_wake', 'w');
select pgque.set_queue_config('regress_wake', 'ticker_max_lag', '1 hour');
select pgque.set_queue_config('regress_wake', 'ticker_idle_period', '1 hour');
alter system set pgque_worker.tick_period = '50ms';
select pg_reload_conf();
-- settled: no call for a whole second (the policy changes above each
-- asked for a full call, spaced by what the last one cost)
do $$
declare
  a bigint;
  b bigint;
  deadline timestamptz := clock_timestamp() + interval '30 seconds';
begin
  loop
    select tick_calls into a from regress_util.my_ticker;
    perform pg_sleep(1);
    select tick_calls into b from regress_util.my_ticker;
    exit when a = b or clock_timestamp() > deadline;
  end loop;
end $$;
select tick_calls as calls_before from regress_util.my_ticker \gset
select pg_sleep(2);
select tick_calls - :calls_before as idle_calls_with_wake_on_commit from regress_util.my_ticker;

-- without wake on commit the period holds: about 40 calls in 2 s
alter system set pgque_worker.wake_on_commit = off;
select pg_reload_conf();
select pg_sleep(0.5);
select tick_calls as calls_before from regress_util.my_ticker \gset
select pg_sleep(2);
select tick_calls - :calls_before between 20 and 45 as period_calls_without from regress_util.my_ticker;

select pgque.drop_queue('regress_wake', true);
drop table regress_wake_got;
drop function regress_wake_handler(pgque.message);
alter system reset pgque_worker.tick_period;
alter system reset pgque_worker.dispatch_poll_interval;
alter system reset pgque_worker.wake_on_commit;
select pg_reload_conf();
