-- An idle PgQue database: 4 low-latency queues, one of them with a handler
-- (so a dispatcher serves it too), no traffic.
create extension pgque_worker;
create function public.bench_noop(m pgque.message) returns void
language plpgsql as $$ begin end $$;
do $$
declare q text;
begin
  for q in select 'q' || i from generate_series(1, 4) i loop
    perform pgque.create_queue(q);
    perform pgque.set_queue_config(q, 'ticker_max_count', '1');
    perform pgque.set_queue_config(q, 'ticker_max_lag', '1 ms');
  end loop;
end $$;
select pgque_worker.register_handler('q1', 'h', 'public.bench_noop(pgque.message)');
