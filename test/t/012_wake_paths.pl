# Which writes wake the ticker: every way PgQue enqueues or changes its tick
# policy must get a ticker() call within 5 s (a few ms as a rule: the
# latencies are noted), although the ticker's own plan would wait a minute. The queues tick only every hour when idle
# (ticker_max_lag and ticker_idle_period 1 hour) and max_idle_interval is
# 1 min, so within 5 s only a commit wake-up can produce a tick; max_count 1
# makes the first event due at once. Each path's latency (commit to tick
# visible, or to the ticker() call) is noted; README quotes them. A
# subtransaction that enqueued and was rolled back must not wake it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $node = new_node('wake', conf => q{
pgque_worker.max_idle_interval = '1min'
pgque_worker.retry_interval = '1h'
pgque_worker.maint_interval = '1h'
pgque_worker.rotate_interval = '1h'
max_prepared_transactions = 4
});
$node->start;
$node->safe_psql('postgres', 'create database app');
install_pgque($node, 'app');

# Long idle policy for a queue: only a wake-up ticks it within a second.
sub quiet_policy
{
	my ($q, $max_count) = @_;
	return qq{
select pgque.set_queue_config('$q', 'ticker_max_count', '$max_count');
select pgque.set_queue_config('$q', 'ticker_max_lag', '1 hour');
select pgque.set_queue_config('$q', 'ticker_idle_period', '1 hour');};
}

$node->safe_psql('app', q{
create function tick_count(qn text) returns bigint language sql as $$
  select count(*) from pgque.tick t join pgque.queue q on q.queue_id = t.tick_queue
   where q.queue_name = qn $$;
create function my_ticker(col text) returns bigint language plpgsql as $$
declare v bigint;
begin
  execute format('select %I from pgque_worker.status() where kind = ''ticker'' and datname = current_database()', col)
    into v;
  return v;
end $$;
-- ms until queue qn has more than `before` ticks; -1 after max_ms
create function wait_tick(qn text, before bigint, max_ms int) returns int language plpgsql as $$
declare t0 timestamptz := clock_timestamp();
begin
  loop
    if tick_count(qn) > before then
      return ceil(extract(epoch from clock_timestamp() - t0) * 1000);
    end if;
    exit when clock_timestamp() - t0 > max_ms * interval '1 ms';
    perform pg_sleep(0.002);
  end loop;
  return -1;
end $$;
-- ms until the ticker made more than `before` ticker() calls; -1 after max_ms
create function wait_calls(before bigint, max_ms int) returns int language plpgsql as $$
declare t0 timestamptz := clock_timestamp();
begin
  loop
    if my_ticker('tick_calls') > before then
      return ceil(extract(epoch from clock_timestamp() - t0) * 1000);
    end if;
    exit when clock_timestamp() - t0 > max_ms * interval '1 ms';
    perform pg_sleep(0.002);
  end loop;
  return -1;
end $$;
-- every batch ready for consumer c of qn (take() gets one per call)
create function take_all(qn text) returns setof text language plpgsql as $$
begin
  for i in 1 .. 20 loop
    return query select * from take(qn, 'c');
  end loop;
end $$;
create table src (id int primary key, v text);
select pgque.create_queue('q');
select pgque.subscribe('q', 'c');
select pgque.create_queue('q3');
} . quiet_policy('q', 1) . quiet_policy('q3', 1000));
wait_until($node, 'app', q{select state from pgque_worker.status() where kind = 'ticker' and datname = 'app'},
	'running', 'the ticker');
# PgQ counts new events from the event sequence's last value, which does
# not move on a fresh sequence's first nextval(): a first event per queue
# makes the next one count. Then a send (a path that has always woken the
# ticker) ticks both queues again: from then on their idle policy knows
# the gap between ticks and waits.
$node->safe_psql('app', q{select pgque.send('q', 'warm'::text); select pgque.send('q3', 'warm'::text)});
send_and_take($node, 'app', 'setup');
wait_until($node, 'app', q{select tick_count('q3') >= 2}, 't', 'q3 ticked twice');

# trigger functions: PgQue's, or PgQ's under the fixture (same path: an
# INSERT into the event table from the trigger)
my $trig = $node->safe_psql('app',
	q{select coalesce(to_regproc('pgque.jsontriga')::text, to_regproc('pgq.jsontriga')::text, '')});
if ($trig ne '')
{
	$node->safe_psql('app', "create trigger src_q after insert on src for each row execute function $trig('q')");
}
my $evtable = $node->safe_psql('app', q{select pgque.current_event_table('q')});

my %ms;

# Runs $sql (its first statement opens a new session) and waits up to 5 s
# for a new tick of queue $q. Returns the ms, or -1.
sub path_tick
{
	my ($name, $q, $sql, $before) = @_;
	$before //= $node->safe_psql('app', "select tick_count('$q')");
	my @out = split /\n/, $node->safe_psql('app', "$sql\nselect wait_tick('$q', $before, 5000);");
	my $ms = $out[-1];
	ok($ms >= 0 && $ms <= 5000, "$name wakes the ticker: a tick within 5 s")
	  or diag("$name: no tick within 5 s");
	note("$name: tick after $ms ms");
	$ms{$name} = $ms;
	if ($ms < 0)
	{
		# let a send (known to wake) tick what the path left pending
		my $b = $node->safe_psql('app', "select tick_count('$q')");
		$node->safe_psql('app', "select pgque.send('$q', 'flush'::text); select wait_tick('$q', $b, 5000)");
	}
	return $ms;
}

# Drops every batch ready for consumer c of queue q.
sub drain
{
	$node->safe_psql('app', q{select count(*) from take_all('q')});
	return;
}

# An enqueueing path: a tick within 5 s, then the payload is delivered.
sub path_event
{
	my ($name, $sql, $payload) = @_;
	path_tick($name, 'q', $sql);
	is($node->safe_psql('app', "select count(*) > 0 from take_all('q') where take_all like '%$payload%'"),
		't', "$name: delivered");
	return;
}

# A policy change: a ticker() call within 5 s.
sub path_call
{
	my ($name, $sql) = @_;
	my $before = $node->safe_psql('app', "select my_ticker('tick_calls')");
	my @out = split /\n/, $node->safe_psql('app', "$sql\nselect wait_calls($before, 5000);");
	my $ms = $out[-1];
	ok($ms >= 0 && $ms <= 5000, "$name wakes the ticker: a ticker() call within 5 s")
	  or diag("$name: no ticker() call within 5 s");
	note("$name: ticker() call after $ms ms");
	$ms{$name} = $ms;
	return;
}

path_event('send', q{select pgque.send('q', 'p_send'::text);}, 'p_send');
path_event('send_batch', q{select pgque.send_batch('q', array['p_batch1', 'p_batch2']::text[]);}, 'p_batch');
path_event('insert_event', q{select pgque.insert_event('q', 'default', 'p_ie');}, 'p_ie');
SKIP:
{
	skip 'the PgQue in use has no trigger function (jsontriga)', 2 if $trig eq '';
	path_event("trigger $trig", q{insert into src values (1, 'p_trig');}, 'p_trig');
}
path_event('INSERT into the event table',
	"insert into $evtable (ev_time, ev_type, ev_data) values (now(), 'default', 'p_insert');", 'p_insert');
path_event('COPY into the event table',
	"copy $evtable (ev_time, ev_type, ev_data) from stdin;\n2025-01-01 00:00:00+00\tdefault\tp_copy\n\\.",
	'p_copy');
# The hook remembers what each written table is. A table this session
# wrote while it was an ordinary one, then moved into schema pgque and
# renamed to an event table's name, wakes the ticker like any event table:
# the move's invalidation drops the remembered answer. (Its ev_id default
# draws from q's event sequence, so PgQue's ticker sees a new event.)
my $qid = $node->safe_psql('app', q{select queue_id from pgque.queue where queue_name = 'q'});
path_tick('INSERT into a table moved and renamed into an event table', 'q', qq{
create table public.moved (like $evtable including defaults);
insert into public.moved (ev_time, ev_type, ev_data) values (now(), 'default', 'before');
alter table public.moved set schema pgque;
alter table pgque.moved rename to event_${qid}_9;
insert into pgque.event_${qid}_9 (ev_time, ev_type, ev_data) values (now(), 'default', 'after');
});
$node->safe_psql('app', "drop table pgque.event_${qid}_9");
drain();
path_tick('force_tick (first statement)', 'q', q{select pgque.force_tick('q');});
path_tick('force_next_tick (first statement)', 'q', q{select pgque.force_next_tick('q');});

drain();

# COMMIT PREPARED: prepared in one session, committed in another
$node->safe_psql('app', q{begin; select pgque.send('q', 'p_2pc'::text); prepare transaction 'pqw_wake';});
path_event('COMMIT PREPARED', q{commit prepared 'pqw_wake';}, 'p_2pc');

# a fresh queue, set to the quiet policy in the creating transaction: its
# second tick comes from the wake (the policy ticks a queue with one tick;
# create_queue made the first)
path_tick('create_queue + set_queue_config', 'q2',
	"begin;\nselect pgque.create_queue('q2');" . quiet_policy('q2', 1) . "\ncommit;", 1);

# set_queue_config re-plans: q3 has an event its policy (max_count 1000,
# max_lag 1 hour) holds back; max_count 1 makes it due now
$node->safe_psql('app', q{select pgque.send('q3', 'p_q3'::text)});
usleep(300_000);
path_tick('set_queue_config', 'q3', q{select pgque.set_queue_config('q3', 'ticker_max_count', '1');});

path_call('set_tick_period_ms', q{select pgque.set_tick_period_ms(50);});
path_call('subscribe', q{select pgque.subscribe('q', 'c2');});
path_call('unsubscribe', q{select pgque.unsubscribe('q', 'c2');});

# ---- subtransactions: what was rolled back does not wake the ticker
sub no_wake
{
	my ($name, $sql) = @_;
	usleep(300_000);
	my $before = $node->safe_psql('app', "select my_ticker('wakeups')");
	$node->safe_psql('app', $sql);
	usleep(500_000);
	is($node->safe_psql('app', "select my_ticker('wakeups')"), $before, "$name: no wake-up");
	return;
}
no_wake('rolled-back savepoint', q{
begin;
savepoint a;
select pgque.send('q', 'p_rb'::text);
rollback to savepoint a;
commit;});
no_wake('released inside a rolled-back savepoint', q{
begin;
savepoint a;
savepoint b;
select pgque.send('q', 'p_rb2'::text);
release savepoint b;
rollback to savepoint a;
commit;});
no_wake('PL/pgSQL exception block', q{
do $$
begin
  begin
    perform pgque.send('q', 'p_rb3'::text);
    raise exception 'undo';
  exception when others then
    null;
  end;
end $$;});
path_event('released savepoint', q{
begin;
savepoint a;
select pgque.send('q', 'p_rel'::text);
release savepoint a;
commit;}, 'p_rel');
is($node->safe_psql('app', q{select count(*) from take_all('q') where take_all like 'p_rb%'}), '0',
	'rolled-back events were never enqueued');

note('wake latency (ms): ' . join(', ', map { "$_ = $ms{$_}" } sort keys %ms));

$node->stop;
done_testing();
