-- Installs PgQue (the test fixture, or a real pgque.sql when PGQUE_SQL is
-- set) and pgque_worker into the regression database, and the helpers the
-- other tests poll with.
\getenv pgque_sql PGQUE_SQL_FILE
set client_min_messages = warning;
\set ECHO none
\o /dev/null
-- in one transaction, so the worker never sees half a PgQue
begin;
\i :pgque_sql
commit;
\o
\set ECHO all
reset client_min_messages;
create extension pgque_worker;
select pgque_worker.wake_launcher();

create schema regress_util;

-- Polls a boolean query until it is true or `timeout` passes.
create function regress_util.wait_for(cond text, timeout interval default '60 seconds')
returns boolean language plpgsql as $$
declare
  deadline timestamptz := clock_timestamp() + timeout;
  ok boolean;
begin
  loop
    execute cond into ok;
    if ok then
      return true;
    end if;
    if clock_timestamp() > deadline then
      raise warning 'timed out waiting for: %', cond;
      return false;
    end if;
    perform pg_sleep(0.02);
  end loop;
end $$;

-- This database's ticker row of pgque_worker.status().
create function regress_util.ticker()
returns setof record language sql as $$
  select s from pgque_worker.status() s
  where s.datname = current_database() and s.kind = 'ticker'
$$;
create view regress_util.my_ticker as
  select * from pgque_worker.status()
  where datname = current_database() and kind = 'ticker';

-- Receives a batch, waiting for the worker's tick (no manual ticker call).
create function regress_util.receive_wait(q text, c text, timeout interval default '60 seconds')
returns setof pgque.message language plpgsql as $$
declare
  deadline timestamptz := clock_timestamp() + timeout;
  n bigint;
begin
  loop
    return query select * from pgque.receive(q, c, 2147483647);
    get diagnostics n = row_count;
    if n > 0 or clock_timestamp() > deadline then
      return;
    end if;
    perform pg_sleep(0.02);
  end loop;
end $$;

-- Receives and acks batches until n messages came (or timeout): with wake
-- on commit, messages of separate commits may arrive in separate batches.
create function regress_util.receive_n(q text, c text, n int, timeout interval default '60 seconds')
returns setof pgque.message language plpgsql as $$
declare
  deadline timestamptz := clock_timestamp() + timeout;
  got int := 0;
  r pgque.message;
  b bigint;
begin
  while got < n and clock_timestamp() < deadline loop
    b := null;
    for r in select * from pgque.receive(q, c, 2147483647) loop
      b := r.batch_id;
      got := got + 1;
      return next r;
    end loop;
    if b is not null then
      perform pgque.ack(b);
    else
      perform pg_sleep(0.02);
    end if;
  end loop;
end $$;

-- The launcher runs, and the worker for this database comes up.
select count(*) as launchers from pg_stat_activity
 where backend_type = 'pgque_worker launcher';
select regress_util.wait_for($$select exists (select 1 from regress_util.my_ticker where state = 'running')$$);

-- Commits closer together than min_tick_interval share a tick (default 2 ms).
select current_setting('pgque_worker.min_tick_interval') as min_tick_interval;
