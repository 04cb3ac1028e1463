-- Objects of the benchmark database (after PgQue and pgque_worker).
create table public.lat (sent timestamptz not null, handled timestamptz not null);
create table public.sink (payload text, at timestamptz not null default clock_timestamp());
-- latencies of every run, in ms
create table public.lat_all (mode text, rate int, ms float8);

-- latency handler: server clock at send (the payload) and when the handler runs
create function public.bench_lat_handler(m pgque.message) returns void
language plpgsql as $$
begin
  insert into public.lat values (m.payload::timestamptz, clock_timestamp());
end $$;

-- throughput handlers: insert each payload
create function public.bench_sink_msg(m pgque.message) returns void
language plpgsql as $$
begin
  insert into public.sink(payload) values (m.payload);
end $$;

create function public.bench_sink_batch(ms pgque.message[]) returns void
language plpgsql as $$
begin
  insert into public.sink(payload) select x.payload from unnest(ms) x;
end $$;

-- no-op handler of the keep-alive queue (keeps a dispatcher running)
create function public.bench_noop(m pgque.message) returns void
language plpgsql as $$ begin end $$;

-- The ceiling for per-message dispatch: an in-database loop doing receive,
-- the handler in a BEGIN ... EXCEPTION block per message (nack on error),
-- ack, commit per batch.
create procedure public.bench_plpgsql_loop(q text, c text, n bigint)
language plpgsql as $$
declare
  m pgque.message;
  bid bigint;
  got bigint;
  done bigint := 0;
begin
  while done < n loop
    bid := null;
    got := 0;
    for m in select * from pgque.receive(q, c, 2147483647) loop
      bid := m.batch_id;
      got := got + 1;
      begin
        perform public.bench_sink_msg(m);
      exception when others then
        perform pgque.nack(m.batch_id, m, interval '60 seconds', sqlerrm);
      end;
    end loop;
    if bid is not null then
      perform pgque.ack(bid);
    end if;
    done := done + got;
    commit;
    if got = 0 then
      perform pg_sleep(0.001);
    end if;
  end loop;
end $$;

-- A batch handler that only notes each call (one row per call, not per
-- message): the dispatcher's cost of a batch besides its handler.
create table public.marks (n int not null, at timestamptz not null default clock_timestamp());
create function public.bench_mark_batch(ms pgque.message[]) returns void
language plpgsql as $$
begin
  insert into public.marks(n) values (cardinality(ms));
end $$;

-- PgQue's own cost of consuming a batch, which any consumer of it pays:
-- next_batch(), batch_event_sql() and its query run to the last event in
-- ev_id order, ack(); a commit once `commit_every` events were read (and at
-- the end). No handler, no per-event work: the floor under the dispatcher.
-- It counts whole rows (count(e.*)), so the query reads and sorts every
-- column as a consumer must: with count(*) the planner would drop all but
-- ev_id from the sort, and the floor would not read the events at all.
create procedure public.bench_pgque_floor(q text, c text, n bigint, commit_every bigint)
language plpgsql as $$
declare
  bid bigint;
  got bigint;
  done bigint := 0;
  since bigint := 0;
begin
  while done < n loop
    bid := pgque.next_batch(q, c);
    if bid is null then
      commit;
      since := 0;
      perform pg_sleep(0.001);
      continue;
    end if;
    execute 'select count(e.*) from (select * from (' || pgque.batch_event_sql(bid)
            || ') x order by ev_id offset 0) e' into got;
    perform pgque.ack(bid);
    done := done + got;
    since := since + got;
    if since >= commit_every then
      commit;
      since := 0;
    end if;
  end loop;
  commit;
end $$;

-- This backend's CPU (user + system) in seconds, from /proc/self/stat
-- (fields 14 and 15 in clock ticks of `hz` a second): what *PgQue alone*
-- costs its session, beside the dispatcher's CPU read the same way.
create function public.bench_backend_cpu_s(hz int) returns float8
language sql as $$
  select (f[12]::float8 + f[13]::float8) / hz
    from (select string_to_array(split_part(pg_read_file('/proc/self/stat'), ') ', 2), ' ') f) s
$$;

-- low-latency queue policy
create function public.bench_queue(q text) returns void
language plpgsql as $$
begin
  perform pgque.create_queue(q);
  perform pgque.set_queue_config(q, 'ticker_max_count', '1');
  perform pgque.set_queue_config(q, 'ticker_max_lag', '1 ms');
end $$;
