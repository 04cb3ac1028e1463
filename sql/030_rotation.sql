-- Rotation needs maint() (step 1) and maint_rotate_tables_step2(), forever:
-- a queue with a short rotation period keeps rotating, several in a row.
alter system set pgque_worker.maint_interval = '200ms';
alter system set pgque_worker.rotate_interval = '100ms';
select pg_reload_conf();
select pgque.create_queue('regress_rot');
select pgque.set_queue_config('regress_rot', 'rotation_period', '1 second');

create function pg_temp.rotations(q text, want int, timeout interval) returns int
language plpgsql as $$
declare
  deadline timestamptz := clock_timestamp() + timeout;
  last timestamptz;
  cur timestamptz;
  n int := 0;
begin
  select queue_switch_time into last from pgque.get_queue_info(q);
  while n < want and clock_timestamp() < deadline loop
    perform pg_sleep(0.05);
    select queue_switch_time into cur from pgque.get_queue_info(q);
    if cur <> last then
      n := n + 1;
      last := cur;
    end if;
  end loop;
  return n;
end $$;

select pg_temp.rotations('regress_rot', 3, '60 seconds') as rotations_seen;

select pgque.drop_queue('regress_rot');
alter system reset pgque_worker.maint_interval;
alter system reset pgque_worker.rotate_interval;
select pg_reload_conf();
