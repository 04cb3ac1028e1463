# Many queues: a commit that enqueued into one queue makes the ticker tick
# that queue alone (pgque.ticker(queue)), not every queue of the database;
# the idle queues still get their idle ticks from the full call, which with
# more than 64 queues is cut into slices (targeted calls over part of the
# queues, commits ticked between them), so no call runs PgQue's loop over
# every queue; and a wake-up that names no queue (force_tick) still ticks
# all.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $nidle = 100;
my $nsend = 20;
my $node = new_node('many', conf => q{
track_functions = 'pl'
});
$node->start;
$node->safe_psql('postgres', 'create database app');
install_pgque($node, 'app');

sub sq { return $node->safe_psql('app', $_[0]); }

sq(qq{
create table got (payload text);
create function h(m pgque.message) returns void language plpgsql as \$\$
begin
  insert into got values (m.payload);
end \$\$;
select pgque.create_queue('idle_' || i) from generate_series(1, $nidle) i;
-- idle ticks far apart: the calls counted below are the sends' own
select pgque.set_queue_config('idle_' || i, 'ticker_max_lag', '1 hour') from generate_series(1, $nidle) i;
select pgque.set_queue_config('idle_' || i, 'ticker_idle_period', '1 hour') from generate_series(1, $nidle) i;
select pgque.create_queue('busy');
select pgque.set_queue_config('busy', 'ticker_max_count', '1');
-- and the busy queue's own lag and idle ticks as far: no full call falls
-- due while the sends are counted, however slow the machine (with PgQue's
-- defaults, one every few seconds, of $nidle calls and more each)
select pgque.set_queue_config('busy', 'ticker_max_lag', '1 hour');
select pgque.set_queue_config('busy', 'ticker_idle_period', '1 hour');
select pgque_worker.register_handler('busy', 'c', 'h(pgque.message)');
});
# the queue sequence's first event does not count for ticker_max_count
sq(q{select pgque.send('busy', 'warm-up'::text)});
wait_until($node, 'app', q{select count(*) from got}, '1', 'the first message is handled');
# a new queue gets idle ticks at once until it has two
wait_until($node, 'app',
	q{select bool_and(n >= 2) from (select count(t.tick_id) n from pgque.queue q left join pgque.tick t on t.tick_queue = q.queue_id group by q.queue_id) x},
	't', 'every queue has two ticks');

# calls of every ticker function (pgque's and, under the fixture, PgQ's),
# as the workers have reported them
sub ticker_calls
{
	return sq(q{select coalesce(sum(calls), 0) from pg_stat_user_functions where funcname = 'ticker'});
}
# calls of the full pgque.ticker(), over every queue
sub full_calls
{
	return sq(q{select coalesce(sum(calls), 0) from pg_stat_user_functions where funcid = 'pgque.ticker()'::regprocedure});
}
sub settled_ticker_calls
{
	# statistics are flushed at most once a second per backend
	my $prev = -1;
	for (1 .. 50)
	{
		usleep(1_200_000);
		my $now = ticker_calls();
		return $now if $now == $prev;
		$prev = $now;
	}
	return $prev;
}

$node->safe_psql('postgres', q{alter system set log_min_messages = debug1});
$node->safe_psql('postgres', 'select pg_reload_conf()');
my $lpos = log_position($node);
my $before = settled_ticker_calls();
my $full_before = full_calls();
for my $i (1 .. $nsend)
{
	sq(qq{select pgque.send('busy', 'm$i'::text)});
	wait_until($node, 'app', qq{select count(*) from got where payload = 'm$i'}, '1', "message m$i handled");
}
my $calls = settled_ticker_calls() - $before;
my $full = full_calls() - $full_before;
is(sq(q{select count(*) from got where payload like 'm%'}), $nsend, "$nsend messages, each handled once");
# Full calls are sliced: with 102 queues, in 13 (8 queues a slice).
is($full, 0, "no pgque.ticker() call over every queue during $nsend enqueuing commits");
# a targeted call costs one or two (the fixture's pgque.ticker(queue)
# calls PgQ's); a full ticker() call one per queue ($nidle + 1) and more
cmp_ok($calls, '<=', $nsend * 4,
	"ticker function calls for $nsend enqueuing commits: $calls (a full tick each would be over " . ($nsend * ($nidle + 1)) . ')');

# the idle queues still get ticks: the full call keeps its schedule, its
# slices each tick their share of the queues (idle_1 and idle_2 have
# consecutive queue ids: they are in different slices)
sub ticks_of
{
	return sq(qq{select count(*) from pgque.tick t join pgque.queue q on q.queue_id = t.tick_queue where q.queue_name = '$_[0]'});
}
for my $q ('idle_1', 'idle_2')
{
	my $idle_ticks = ticks_of($q);
	sq(qq{select pgque.set_queue_config('$q', 'ticker_idle_period', '1 second')});
	sq(qq{select pgque.set_queue_config('$q', 'ticker_max_lag', '1 second')});
	wait_until($node, 'app',
		qq{select count(*) > $idle_ticks from pgque.tick t join pgque.queue q on q.queue_id = t.tick_queue where q.queue_name = '$q'},
		't', "idle queue $q gets its idle tick");
}
ok(wait_for_log($node, qr/pgque_worker tick: targeted 0 ticks [0-9]+ .* slice 1 of 13\n/, $lpos)
	&& wait_for_log($node, qr/pgque_worker tick: targeted 0 ticks [0-9]+ .* slice 13 of 13\n/, $lpos),
	'  from a full call in 13 slices');
unlike(log_since($node, $lpos), qr/pgque_worker tick: .* slice 1 of 1\n/, '  never one over every queue');
$node->safe_psql('postgres', q{alter system reset log_min_messages});
$node->safe_psql('postgres', 'select pg_reload_conf()');

# force_tick names no queue to the commit hook: a full call follows
sq(q{select pgque.create_queue('forced')});
sq(q{select pgque.subscribe('forced', 'fc')});
my $ft = sq(q{select count(*) from pgque.tick t join pgque.queue q on q.queue_id = t.tick_queue where q.queue_name = 'forced'});
sq(q{select pgque.force_tick('forced')});
wait_until($node, 'app',
	qq{select count(*) > $ft from pgque.tick t join pgque.queue q on q.queue_id = t.tick_queue where q.queue_name = 'forced'},
	't', 'force_tick() is ticked');

# A policy change names no queue either (subscribe, unsubscribe), and any
# pgque_reader member can make one: a role doing so in a loop kept the
# ticker in full calls back to back (with 1,000 queues and real PgQue, a
# whole core against 5 % idle). The full calls such wake-ups ask for are
# spaced by what the last one cost (20 times it, as idle full calls are),
# so the slices take a small share of the time however fast the loop goes.
sq(q{create role tenant login; grant pgque_reader to tenant;});
$node->safe_psql('postgres', q{alter system set log_min_messages = debug1});
$node->safe_psql('postgres', 'select pg_reload_conf()');
$lpos = log_position($node);
my $t0 = Time::HiRes::time();
my $pairs = $node->safe_psql('app', q{
do $$
declare
  t0 timestamptz := clock_timestamp();
  n int := 0;
begin
  while clock_timestamp() < t0 + interval '4 seconds' loop
    perform pgque.subscribe('forced', 'loop');
    commit;
    perform pgque.unsubscribe('forced', 'loop');
    commit;
    n := n + 1;
  end loop;
  raise notice 'pairs %', n;
end $$}, extra_params => [ '-U', 'tenant' ]);
my $window_ms = (Time::HiRes::time() - $t0) * 1000;
$node->safe_psql('postgres', q{alter system reset log_min_messages});
$node->safe_psql('postgres', 'select pg_reload_conf()');
my ($slices, $full_starts, $slice_ms) = (0, 0, 0);
for my $line (split /\n/, log_since($node, $lpos))
{
	next unless $line =~ /pgque_worker tick: targeted 0 ticks \d+ woke_ms \S+ tick_ms (\S+) policy_ms (\S+) .* slice (\d+) of \d+$/;
	$slices++;
	$full_starts++ if $3 == 1;
	$slice_ms += $1 + $2;
}
note sprintf('subscribe/unsubscribe loop for %.0f ms: %d full calls (%d slices, %.0f ms)',
	$window_ms, $full_starts, $slices, $slice_ms);
cmp_ok($full_starts, '>=', 1, 'the policy changes are still ticked');
cmp_ok($slice_ms, '<', $window_ms / 4,
	sprintf('a subscribe loop keeps full calls to %.0f of %.0f ms', $slice_ms, $window_ms));

$node->stop;
done_testing();
