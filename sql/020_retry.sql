-- 50 nacked events with retry_after 0 are all back in the queue after one
-- retry cycle: maint_retry_events() moves at most 10 per call, so the worker
-- must call it until it returns 0 (one call per cycle would take 5 cycles).
alter system set pgque_worker.retry_interval = '3s';
select pg_reload_conf();
select pgque.create_queue('regress_retry');
select pgque.set_queue_config('regress_retry', 'ticker_max_count', '1');
select pgque.subscribe('regress_retry', 'c1');
select count(*) from (select pgque.send('regress_retry', 'm' || i) from generate_series(1, 50) i) s;

create temp table got as select * from regress_util.receive_wait('regress_retry', 'c1');
select count(*) as received, min(retry_count) is null or min(retry_count) = 0 as fresh from got;
-- nack all 50 in one transaction, then finish the batch
select sum(pgque.nack(g.batch_id, row(g.*)::pgque.message, '0 seconds'::interval, 'regress')) >= 0 as nacked from got g;
select pgque.ack((select max(batch_id) from got));
select count(*) as waiting_retry from pgque.retry_queue;

select retry_events_moved as moved_before from regress_util.my_ticker \gset
select regress_util.wait_for($$select (select count(*) from pgque.retry_queue) = 0
                                 and (select retry_last_drain > 0 from regress_util.my_ticker)$$);
-- one drain (one retry cycle) moved all of them
select retry_events_moved - :moved_before as moved_by_worker, retry_last_drain
  from regress_util.my_ticker;

-- they come back with retry_count 1
create temp table again as select * from regress_util.receive_n('regress_retry', 'c1', 50);
select count(*) as redelivered, count(distinct msg_id) as distinct_msgs,
       min(retry_count) as min_retry, max(retry_count) as max_retry from again;

select pgque.unsubscribe('regress_retry', 'c1');
select pgque.drop_queue('regress_retry');
alter system reset pgque_worker.retry_interval;
select pg_reload_conf();
