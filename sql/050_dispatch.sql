-- Handler dispatch: batches consumed inside the server by registered SQL
-- functions, acked in the same transaction as the handler's work.
alter system set pgque_worker.retry_interval = '500ms';
alter system set pgque_worker.dispatch_poll_interval = '100ms';
select pg_reload_conf();

select pgque.create_queue('regress_disp');
select pgque.set_queue_config('regress_disp', 'ticker_max_count', '1');
select pgque.set_queue_config('regress_disp', 'max_retries', '1');

create table regress_got (consumer text, payload text, msg_id bigint, retry_count int);

-- a message handler: fails for payloads starting with 'bad'
create function regress_msg_handler(m pgque.message) returns void
language plpgsql as $$
begin
  if m.payload like 'bad%' then
    raise exception 'refusing %', m.payload;
  end if;
  insert into regress_got values ('msg', m.payload, m.msg_id, m.retry_count);
end $$;

-- a batch handler: one call per chunk
create function regress_batch_handler(ms pgque.message[]) returns void
language plpgsql as $$
begin
  insert into regress_got select 'batch', m.payload, m.msg_id, m.retry_count from unnest(ms) m;
end $$;

select pgque_worker.register_handler('regress_disp', 'msg', 'regress_msg_handler(pgque.message)',
                                     retry_after => '0 seconds');
select pgque_worker.register_handler('regress_disp', 'batch', 'regress_batch_handler(pgque.message[])',
                                     batch => true);
select queue_name, consumer_name, handler, is_batch, retry_after, enabled,
       run_as = current_user::regrole as runs_as_me
  from pgque_worker.handler order by consumer_name;

-- 100 messages, 10 of them bad, with no client consuming
select count(*) from (
  select pgque.send('regress_disp', case when i % 10 = 0 then 'bad' else 'ok' end || i)
    from generate_series(1, 100) i) s;

select regress_util.wait_for($$select count(*) = 100 from regress_got where consumer = 'batch'$$);
select regress_util.wait_for($$select count(*) = 90 from regress_got where consumer = 'msg'$$);
-- the bad ones are retried once (max_retries 1), then dead-lettered
select regress_util.wait_for($$select count(*) = 10 from pgque.dlq_inspect('regress_disp')$$);

-- exactly once each, nothing lost
select consumer, count(*) as rows, count(distinct payload) as distinct_payloads,
       count(*) filter (where payload like 'bad%') as bad
  from regress_got group by consumer order by consumer;

select consumer_name, batches > 0 as has_batches, messages_ok, messages_nacked,
       last_error like 'refusing bad%' as error_kept, batch_in_flight
  from pgque_worker.handler_stats order by consumer_name;

-- the dispatcher is visible and used one subtransaction per chunk
select kind, state, messages_ok >= 190 as handled, max_subxids <= 2 as few_subxids,
       subxid_overflows
  from pgque_worker.status() where datname = current_database() and kind = 'dispatcher';
select count(*) as dispatchers from pg_stat_activity
 where backend_type = 'pgque_worker dispatcher' and datname = current_database();

-- disabling keeps the position; unregistering stops delivery
select pgque_worker.register_handler('regress_disp', 'batch', 'regress_batch_handler(pgque.message[])',
                                     batch => true, enabled => false);
select pgque_worker.unregister_handler('regress_disp', 'msg', unsubscribe => true);
select pgque.send('regress_disp', 'after');
select pg_sleep(1);
select count(*) as after_rows from regress_got where payload = 'after';
-- re-enabled: the batch consumer gets what arrived meanwhile
select pgque_worker.register_handler('regress_disp', 'batch', 'regress_batch_handler(pgque.message[])',
                                     batch => true);
select regress_util.wait_for($$select count(*) = 1 from regress_got where payload = 'after'$$);

-- registration errors
select pgque_worker.register_handler('no_such_queue', 'c', 'regress_msg_handler(pgque.message)');
select pgque_worker.register_handler('regress_disp', 'c', 'regress_batch_handler(pgque.message[])');
select pgque_worker.register_handler('regress_disp', 'c', 'regress_msg_handler(pgque.message)', batch => true);
select pgque_worker.register_handler('regress_disp', 'c', 'length(text)');
select pgque_worker.register_handler('regress_disp', null, 'regress_msg_handler(pgque.message)');
select pgque_worker.register_handler('regress_disp', 'c', 'regress_msg_handler(pgque.message)', retry_after => '-1 second');
select pgque_worker.register_handler('regress_disp', repeat('c', 64), 'regress_msg_handler(pgque.message)');
select pgque_worker.register_handler('regress_disp', repeat('é', 32), 'regress_msg_handler(pgque.message)');
create role regress_fowner;
create function regress_owned_h(m pgque.message) returns void language sql as 'select';
alter function regress_owned_h(pgque.message) owner to regress_fowner;
select pgque_worker.register_handler('regress_disp', 'c', 'regress_owned_h(pgque.message)');
drop function regress_owned_h(pgque.message);
drop role regress_fowner;
select pgque_worker.unregister_handler('regress_disp', 'nobody');
create role regress_nobody;
set role regress_nobody;
select pgque_worker.register_handler('regress_disp', 'c', 'regress_msg_handler(pgque.message)');
reset role;
drop role regress_nobody;

-- the dispatcher stops when the last handler goes
select pgque_worker.unregister_handler('regress_disp', 'batch', unsubscribe => true);
select regress_util.wait_for($$select state = 'no handlers' from pgque_worker.status()
                                where datname = current_database() and kind = 'dispatcher'$$);

select pgque.drop_queue('regress_disp');
drop table regress_got;
drop function regress_msg_handler(pgque.message);
drop function regress_batch_handler(pgque.message[]);
alter system reset pgque_worker.retry_interval;
alter system reset pgque_worker.dispatch_poll_interval;
select pg_reload_conf();
