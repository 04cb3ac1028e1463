-- SPI in a background worker arms no statement_timeout by itself: the
-- worker arms one per call. A ticker call blocked on a lock is cancelled
-- after pgque_worker.ticker_timeout, recorded, and the loop goes on.
-- period mode, so the ticker calls (and reads pgque.config) every cycle
alter system set pgque_worker.wake_on_commit = off;
alter system set pgque_worker.ticker_timeout = '300ms';
select pg_reload_conf();
select errors as errors_before from regress_util.my_ticker \gset

begin;
-- the ticker reads pgque.config every cycle (tick_period = 0)
lock table pgque.config in access exclusive mode;
select regress_util.wait_for($$select errors > $$ || :errors_before || $$ from regress_util.my_ticker$$);
select last_error like 'tick: canceling statement due to statement timeout%' as timed_out,
       last_error_at is not null as has_time
  from regress_util.my_ticker;
rollback;

-- the loop went on: ticker calls succeed again
select tick_calls as calls_after from regress_util.my_ticker \gset
select regress_util.wait_for($$select tick_calls > $$ || :calls_after || $$ and state = 'running' from regress_util.my_ticker$$);

alter system reset pgque_worker.ticker_timeout;
alter system reset pgque_worker.wake_on_commit;
select pg_reload_conf();
