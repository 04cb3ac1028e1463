# An idle dispatcher sleeps on its latch: with the default
# pgque_worker.dispatch_poll_interval (0) it runs no transaction while no
# tick is made, and a tick made by anyone (here by hand, while pgque_worker's
# ticker yields to another scheduler) wakes it at commit.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $node = new_node('idle');
$node->start;
$node->safe_psql('postgres', 'create database app');
install_pgque($node, 'app');
$node->safe_psql('app', q{
create table got (payload text, at timestamptz default clock_timestamp());
create function h(m pgque.message) returns void language plpgsql as $$
begin
  insert into got (payload) values (m.payload);
end $$;
select pgque.create_queue('qi');
-- no idle ticks during the test: only enqueues make ticks
select pgque.set_queue_config('qi', 'ticker_idle_period', '1 hour');
select pgque.set_queue_config('qi', 'ticker_max_count', '1');
select pgque_worker.register_handler('qi', 'ci', 'h(pgque.message)');
});
is($node->safe_psql('app', q{select current_setting('pgque_worker.dispatch_poll_interval')}), '0',
	'no dispatcher poll by default');

sub sq { return $node->safe_psql('app', $_[0]); }

# the dispatcher's last state change (every transaction it runs ends with one)
sub dispatcher_activity
{
	return sq(q{select state_change from pg_stat_activity
		where datname = 'app' and backend_type = 'pgque_worker dispatcher'});
}

sq(q{select pgque.send('qi', 'first'::text)});
wait_until($node, 'app', q{select count(*) from got where payload = 'first'}, '1',
	'the dispatcher handles a message');

# ---- idle: nothing runs
# no tick by lag either from now on (the first event's queue sequence quirk
# needed it above)
sq(q{select pgque.set_queue_config('qi', 'ticker_max_lag', '1 hour')});
# settle: the batch's last chunk and the ticker's next plan
usleep(1_500_000);
my $before = dispatcher_activity();
ok($before ne '', "the dispatcher runs (last activity $before)");
usleep(3_000_000);
is(dispatcher_activity(), $before, 'an idle dispatcher ran no transaction for 3 s');

# ---- a tick made by someone else wakes it
my $sched = sq(q{select coalesce(scheduler, '') from pgque.config});
sq(q{update pgque.config set scheduler = 'pg_timetable'});
wait_until($node, 'app', q{select state from pgque_worker.status() where datname = 'app' and kind = 'ticker'},
	'other scheduler', 'our ticker yields to another scheduler');
sq(q{select pgque.send('qi', 'by-hand'::text)});
usleep(500_000);
is(sq(q{select count(*) from got where payload = 'by-hand'}), '0',
	'no tick, no delivery, while our ticker yields');
my $t0 = time;
sq(q{select pgque.ticker()});
wait_until($node, 'app', q{select count(*) from got where payload = 'by-hand'}, '1',
	'a tick made by hand is dispatched');
my $took = time - $t0;
# without the commit-time wake only the dispatcher's periodic reload
# (1 min) would find the batch
cmp_ok($took, '<', 20, sprintf('  woken by the tick\'s commit (%.2f s)', $took));

if ($sched eq '') { sq(q{update pgque.config set scheduler = null}); }
else { sq(qq{update pgque.config set scheduler = '$sched'}); }
wait_until($node, 'app', q{select state from pgque_worker.status() where datname = 'app' and kind = 'ticker'},
	'running', 'our ticker is back');
sq(q{select pgque.send('qi', 'after'::text)});
wait_until($node, 'app', q{select count(*) from got where payload = 'after'}, '1',
	'our own ticks wake it again');
is(sq(q{select count(*) from got}), '3', 'each message handled once');

$node->stop;
done_testing();
