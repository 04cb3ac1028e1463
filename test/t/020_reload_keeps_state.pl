# A reload of the registrations keeps what a handler in the middle of a
# batch has: its cursor over the batch, and so PgQue's query is not run
# again for the rest of the batch. Any pgque_reader member may ask for a
# reload (pgque_worker._handlers_changed()); before, each one closed every
# batch cursor, so a tenant calling it in a loop made every other tenant's
# large batch re-run PgQue's query once per chunk (a batch of 200,000
# drained 85x slower). Counted here in calls of pgque.next_batch(), which
# a chunk that reopens the batch makes and a chunk that goes on does not
# (track_functions).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $node = tenant_node('reload', conf => q{
track_functions = 'all'
pgque_worker.chunk_messages = 200
});
$node->safe_psql('app', q{
create table got (payload text);
create table attack_stop (stop bool);
insert into attack_stop values (false);
grant select on attack_stop, got to tenant;
create function h(m pgque.message) returns void language plpgsql as $$
begin
  insert into got values (m.payload);
end $$;
select pgque.create_queue('big');
select pgque_worker.register_handler('big', 'c', 'h(pgque.message)', enabled => false);
});

sub sq { return $node->safe_psql('app', $_[0]); }

# one batch of 8,000 (one enqueuing commit, one tick): 40 chunks at
# chunk_messages 200
sq(q{select pgque.send_batch('big', array(select 'm' || g from generate_series(1, 8000) g))});

# the tenant asks for a reload every millisecond while the batch drains
my $attack = $node->background_psql('app', on_error_stop => 0,
	extra_params => [ '-U', 'tenant' ]);
$attack->query_until(qr/started/, q{
\echo started
do $$
begin
  for i in 1 .. 60000 loop
    perform pgque_worker._handlers_changed();
    commit;  -- it takes effect at commit
    perform pg_sleep(0.001);
    exit when (select stop from public.attack_stop) or (select count(*) from public.got) >= 8000;
  end loop;
end $$;
\echo done
});
sq(q{update pgque_worker.handler set enabled = true where consumer_name = 'c'});
wait_until($node, 'app', q{select count(*) from got}, '8000',
	'the handler gets every message while the tenant asks for reloads');
sq(q{update attack_stop set stop = true});
$attack->query_until(qr/done/, '');
$attack->quit;

my $chunks = sq(q{select chunks from pgque_worker_internal.handler_stat where consumer_name = 'c'});
cmp_ok($chunks, '>=', 40, "the batch took $chunks chunks");
is(sq(q{select count(*) from (select distinct payload from got) s}), '8000', 'each message once');

# the dispatcher leaves with no handler enabled; its function counts are
# flushed as it exits
sq(q{update pgque_worker.handler set enabled = false where consumer_name = 'c'});
wait_until($node, 'app',
	q{select count(*) from pg_stat_activity where datname = 'app' and backend_type = 'pgque_worker dispatcher'},
	'0', 'the dispatcher leaves');
my $calls = sq(q{select coalesce(sum(calls), 0) from pg_stat_user_functions
	where funcid = 'pgque.next_batch(text, text)'::regprocedure});
cmp_ok($calls, '<=', 10,
	"pgque.next_batch() called $calls times for one batch of $chunks chunks: reloads did not reopen it");

# ---- no handler enabled: a tenant's requests start no processes. The
# dispatcher that found none waits for a registration a while before it
# leaves; before, each committed request started one that found none and
# left.
my $log = log_position($node);
$node->safe_psql('app', q{
do $$
begin
  for i in 1 .. 300 loop
    perform pgque_worker._handlers_changed();
    commit;
    perform pg_sleep(0.005);
  end loop;
end $$}, extra_params => [ '-U', 'tenant' ]);
my $starts = () = log_since($node, $log) =~ /no enabled handlers in database "app", dispatcher stops/g;
cmp_ok($starts, '<=', 1,
	"300 committed requests with no handler enabled: $starts dispatchers started, found none and left");
wait_until($node, 'app',
	q{select count(*) from pg_stat_activity where datname = 'app' and backend_type = 'pgque_worker dispatcher'},
	'0', 'and the one that waited for a registration leaves');

# each message below is ticked at its commit, not after PgQ's lag of 3 s
sq(q{select pgque.set_queue_config('big', 'ticker_max_count', '1')});

# ---- a registration during that wait: the same dispatcher takes it up
# and delivers, without leaving and a new one starting
sq(q{update pgque_worker.handler set enabled = true where consumer_name = 'c'});
sq(q{select pgque.send('big', 'x1')});
wait_until($node, 'app', q{select count(*) from got where payload = 'x1'}, '1',
	'a dispatcher serves the enabled handler');
my $pid = sq(q{select pid from pgque_worker.status() where datname = 'app' and kind = 'dispatcher'});
$log = log_position($node);
sq(q{update pgque_worker.handler set enabled = false where consumer_name = 'c'});
wait_until($node, 'app', q{select state from pgque_worker.status() where datname = 'app' and kind = 'dispatcher'},
	'no handlers', 'with the handler disabled, the dispatcher waits for a registration');
sq(q{update pgque_worker.handler set enabled = true where consumer_name = 'c'});
sq(q{select pgque.send('big', 'x2')});
wait_until($node, 'app', q{select count(*) from got where payload = 'x2'}, '1',
	'enabled again during the wait, the handler delivers');
is(sq(q{select pid from pgque_worker.status() where datname = 'app' and kind = 'dispatcher'}), $pid,
	'by the same dispatcher process');
unlike(log_since($node, $log), qr/dispatcher stops/, 'which did not leave in between');

# ---- no tenant may lock the registry table against the workers' reads.
# LOCK TABLE in a mode above ROW EXCLUSIVE asks for table-level UPDATE,
# DELETE or TRUNCATE; PUBLIC had UPDATE and DELETE on it (for its own rows),
# so any role could hold ACCESS EXCLUSIVE in an open transaction, and a
# dispatcher starting meanwhile had no handlers until it was gone. Now
# PUBLIC has UPDATE on the columns and unregister_handler() deletes.
for my $mode ('share update exclusive', 'share', 'share row exclusive', 'exclusive',
	'access exclusive')
{
	my ($ret, $out, $err) = $node->psql('app',
		"begin; lock table pgque_worker.handler in $mode mode; rollback;",
		extra_params => [ '-U', 'tenant' ]);
	like($err, qr/permission denied for (table|view) handler/,
		"a tenant may not lock the registry table in $mode mode");
}

# Sends one message to 'big' and watches the workers for $secs seconds:
# was it delivered, and did any pgque_worker process wait for a lock
# (polled every 50 ms)?
sub deliver_watching_locks
{
	my ($payload, $secs) = @_;
	sq(qq{select pgque.send('big', '$payload')});
	my $t0 = time;
	my ($delivered, $lock_waits) = (0, 0);
	while (time - $t0 < $secs)
	{
		$delivered ||= sq(qq{select count(*) from got where payload = '$payload'}) eq '1';
		$lock_waits += $node->safe_psql('postgres', q{select count(*) from pg_stat_activity
			where backend_type like 'pgque_worker%' and wait_event_type = 'Lock'});
		usleep(50_000);
	}
	return ($delivered, $lock_waits);
}

# ---- a lock on the registry table holds up no worker: an administrator's
# (the owner, a superuser, the database's owner by VACUUM FULL; from
# PostgreSQL 17, pg_maintain or MAINTAIN). Before, the dispatcher's read of
# it waited for the lock until its statement_timeout (25 s), and the
# ticker's look at it every discovery_interval until its lock_timeout
# (1 s), ticks waiting meanwhile; before 0d8b634 the failed read also left
# the dispatcher with no handler. Now neither waits: the read fails at
# once, the handlers are kept as they were and read again a second later.
$log = log_position($node);
my $locker = $node->background_psql('app', on_error_stop => 1);
$locker->query_safe(q{begin; lock table pgque_worker_internal.handler in access exclusive mode});
$node->safe_psql('app', q{select pgque_worker._handlers_changed()}, extra_params => [ '-U', 'tenant' ]);
my ($delivered, $lock_waits) = deliver_watching_locks('x3', 4);
ok($delivered, 'the handler delivers within 4 s while the lock is held');
is($lock_waits, 0, 'no pgque_worker process waited for the lock (polled every 50 ms for 4 s)');
my $lines = () = log_since($node, $log) =~ /could not load handlers in database "app": another session holds a lock on table pgque_worker_internal.handler/g;
is($lines, 1, 'the reload fails, logged once though it was tried again every second');
$locker->query_safe('commit');
$locker->quit;
sq(q{select pgque.send('big', 'x4')});
wait_until($node, 'app', q{select count(*) from got where payload = 'x4'}, '1',
	'and delivers after the lock is gone');

# ---- nor may a tenant queue a lock on the workers' tables. CREATE RULE,
# CREATE TABLE ... PARTITION OF and ATTACH PARTITION take ACCESS EXCLUSIVE
# before they check ownership: behind the tenant's own open transaction
# reading the registrations, such a request waited, and every later reader
# behind it (a hostile review of 9bbf602: the ticker and the dispatcher
# waited, failed reloads, a restarted dispatcher found no handler). The
# workers' tables are in a schema PUBLIC may not use, so naming them fails
# before any lock.
for my $case (
	[ 'a rule on the registry table', q{create rule r as on insert to pgque_worker_internal.handler do instead nothing} ],
	[ 'a rule on its index', q{create rule r as on insert to pgque_worker_internal.handler_pkey do instead nothing} ],
	[ 'a rule on the counters', q{create rule r as on insert to pgque_worker_internal.handler_stat do instead nothing} ],
	[ 'a partition of the registry table', q{create temp table p partition of pgque_worker_internal.handler for values in ('x')} ])
{
	my ($ret, $out, $err) = $node->psql('app', $case->[1], extra_params => [ '-U', 'tenant' ]);
	like($err, qr/permission denied for schema pgque_worker_internal/,
		"a tenant's $case->[0] is refused before it locks");
}
# The view tenants use can be held up so: that holds up no worker. The
# dispatcher restarted meanwhile reads the registrations and delivers.
$log = log_position($node);
my $reader = $node->background_psql('app', on_error_stop => 1, extra_params => [ '-U', 'tenant' ]);
$reader->query_safe(q{begin; select count(*) from pgque_worker.handler});
my $ruler = $node->background_psql('app', on_error_stop => 0, extra_params => [ '-U', 'tenant' ]);
$ruler->query_until(qr/queued/, q{
\echo queued
create rule r as on insert to pgque_worker.handler do instead nothing;
});
wait_until($node, 'app', q{select count(*) from pg_locks where relation = 'pgque_worker.handler'::regclass
	and mode = 'AccessExclusiveLock' and not granted}, '1', 'the tenant\'s rule waits for its lock on the view');
my $dpid = sq(q{select pid from pgque_worker.status() where datname = 'app' and kind = 'dispatcher'});
$node->safe_psql('postgres', "select pg_terminate_backend($dpid)");
wait_until($node, 'app', qq{select count(*) from pgque_worker.status()
	where datname = 'app' and kind = 'dispatcher' and pid is not null and pid <> $dpid}, '1',
	'a new dispatcher starts');
$node->safe_psql('app', q{select pgque_worker._handlers_changed()}, extra_params => [ '-U', 'tenant' ]);
($delivered, $lock_waits) = deliver_watching_locks('x3b', 4);
ok($delivered, 'the new dispatcher delivers within 4 s while the tenant\'s lock request waits');
is($lock_waits, 0, 'no pgque_worker process waited for a lock');
unlike(log_since($node, $log), qr/could not load handlers|dispatcher started for database "app" with 0 handlers/,
	'every read of the registrations succeeded');
$reader->query_safe('rollback');
$reader->quit;
$ruler->quit;

# The same trick on a system catalog, which every role can name: pg_depend
# says whose the registry table is, and it is scanned without a cache.
# Before, the dispatcher's reads and the ticker's looks waited for it
# (lock_timeout, every second); now they do not wait (a restarted
# dispatcher has no handlers until the lock goes: see README).
$log = log_position($node);
$reader = $node->background_psql('app', on_error_stop => 1, extra_params => [ '-U', 'tenant' ]);
$reader->query_safe(q{begin; select count(*) from pg_catalog.pg_depend});
$ruler = $node->background_psql('app', on_error_stop => 0, extra_params => [ '-U', 'tenant' ]);
$ruler->query_until(qr/queued/, q{
\echo queued
create rule r as on insert to pg_catalog.pg_depend do instead nothing;
});
wait_until($node, 'app', q{select count(*) from pg_locks where relation = 'pg_catalog.pg_depend'::regclass
	and mode = 'AccessExclusiveLock' and not granted}, '1', 'the tenant\'s rule waits for its lock on pg_depend');
$node->safe_psql('app', q{select pgque_worker._handlers_changed()}, extra_params => [ '-U', 'tenant' ]);
($delivered, $lock_waits) = deliver_watching_locks('x3c', 4);
ok($delivered, 'the dispatcher delivers within 4 s while the lock request on pg_depend waits');
is($lock_waits, 0, 'no pgque_worker process waited for a lock');
like(log_since($node, $log), qr/could not load handlers in database "app": another session holds a lock on catalog pg_depend/,
	'the reload is put off');
$reader->query_safe('rollback');
$reader->quit;
$ruler->quit;

# ---- a tenant's own registration, for the next two parts
sq(q{create function public.t_noop(m pgque.message) returns void language sql as 'select null::void';
select pgque.create_queue('tq')});
$node->safe_psql('app', q{select pgque_worker.register_handler('tq', 'tc', 'public.t_noop(pgque.message)')},
	extra_params => [ '-U', 'tenant' ]);
sq(q{select pgque.send('tq', 'warm')});
wait_until($node, 'app', q{select messages_ok from pgque_worker.handler_stats where queue_name = 'tq'}, '1',
	'the tenant\'s handler has counters');

# ---- a tenant changes its own registrations, and no other role's: it
# updates them (column privileges) and removes them with
# unregister_handler(), not with DELETE
sq(q{create role tenant2 login; grant pgque_reader to tenant2;});
my ($ret, $out, $err) = $node->psql('app', q{delete from pgque_worker.handler where queue_name = 'tq'},
	extra_params => [ '-U', 'tenant' ]);
like($err, qr/permission denied for (table|view) handler/, 'a tenant may not DELETE from the registry table');
($ret, $out, $err) = $node->psql('app', q{select pgque_worker.unregister_handler('tq', 'tc')},
	extra_params => [ '-U', 'tenant2' ]);
like($err, qr/no handler is registered for queue "tq", consumer "tc"/,
	'another tenant may not unregister it');
is($node->safe_psql('app', q{update pgque_worker.handler set enabled = false where queue_name = 'tq' returning enabled},
		extra_params => [ '-U', 'tenant2' ]), '', '  nor update it');
is($node->safe_psql('app', q{update pgque_worker.handler set enabled = true where queue_name = 'tq' returning enabled},
		extra_params => [ '-U', 'tenant' ]), 't', 'its own role updates it');
is(sq(q{select count(*) from pgque_worker.handler where queue_name = 'tq'}), '1', '  and it is still registered');

# ---- a tenant's open transaction removing its own registration locks that
# handler's counters (the delete trigger resets them). The dispatcher's own
# writes of them wait at most pgque_worker.lock_timeout (1 s). Before, the
# chunk's counters waited statement_timeout (25 s) and recording its error
# 25 s more, every retry, while the database's other handlers waited.
my $deleter = $node->background_psql('app', on_error_stop => 1, extra_params => [ '-U', 'tenant' ]);
$deleter->query_safe(q{begin; select pgque_worker.unregister_handler('tq', 'tc')});
sq(q{select pgque.send('tq', 't1')});
wait_until($node, 'postgres', q{select count(*) > 0 from pg_stat_activity
	where backend_type = 'pgque_worker dispatcher' and wait_event_type = 'Lock'},
	't', 'the chunk of the tenant\'s handler waits for its counters\' row');
sq(q{select pgque.send('big', 'x5')});
my $t0 = time;
$delivered = 0;
while (!$delivered && time - $t0 < 10)
{
	$delivered = sq(q{select count(*) from got where payload = 'x5'}) eq '1';
	usleep(100_000);
}
ok($delivered, sprintf('another handler delivers meanwhile (%.1f s; the row stays locked)', time - $t0));
$deleter->query_safe('rollback');
$deleter->quit;
$node->safe_psql('app', q{select pgque_worker.unregister_handler('tq', 'tc')},
	extra_params => [ '-U', 'tenant' ]);
is(sq(q{select count(*) from pgque_worker.handler where queue_name = 'tq'}), '0',
	'the tenant unregisters its own handler');

done_testing();
