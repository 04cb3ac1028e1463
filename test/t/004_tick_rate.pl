# Tick rate: with only the library preloaded, pgque.set_tick_period_ms(10)
# and a queue configured to tick on every ticker() call, the worker calls
# ticker() on a 10 ms grid and every call materializes a tick.
#
# The grid is a ceiling (never more than 100 calls/s), and load cannot break
# a ceiling, so the upper bound is tight.  Load can make a call (which
# commits a tick, so flushes WAL) outlast its slot, and the next call then
# takes the next free slot: the floor is only that the 10 ms period is in
# force, well above the 10 calls/s the default 100 ms allows.  How fast the
# worker ticks on an unloaded machine is bench/run.sh's business.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

# No tuning beyond the preload (and fast discovery, so the test is quick).
my $node = PostgreSQL::Test::Cluster->new('rate');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pgque_worker'
pgque_worker.discovery_interval = '300ms'
});
$node->start;
$node->safe_psql('postgres', 'create database app');
install_pgque($node, 'app');
wait_until($node, 'app',
	"select state from pgque_worker.status() where datname = 'app'",
	'running', 'ticker for app');

# ticker_max_lag and ticker_idle_period are intervals: with both at 1 ms,
# every ticker() call (10 ms apart) materializes a tick of the queue.
$node->safe_psql('app', q{
	select pgque.set_tick_period_ms(10);
	select pgque.create_queue('q');
	select pgque.set_queue_config('q', 'ticker_max_count', '1');
	select pgque.set_queue_config('q', 'ticker_max_lag', '1 ms');
	select pgque.set_queue_config('q', 'ticker_idle_period', '1 ms');
});
my $ticks0 = status_row($node, 'app', 'app', 'ticks');
wait_until($node, 'app',
	"select ticks > $ticks0 + 20 from pgque_worker.status() where datname = 'app'",
	't', 'ticks increasing');
pass('the worker materializes ticks');
usleep(500_000);    # the 10 ms period is in force (read on every tick)

my ($dt, $tick_rate, $call_rate) = measure_rates($node, 'app', 'app', 5, 'ticks', 'tick_calls');
note sprintf('over %.2f s: %.1f ticks/s, %.1f ticker() calls/s', $dt, $tick_rate, $call_rate);
cmp_ok($call_rate, '<=', 105,
	sprintf('ticker() calls keep to the 10 ms grid: at most 100/s (%.1f/s)', $call_rate));
# (a tick and its policy read are two transactions a slot: on a machine
# where they take over 10 ms, calls fall to every other slot, 50/s)
cmp_ok($call_rate, '>=', 25,
	sprintf('the 10 ms period is in force: far above the default 10 calls/s (%.1f/s)', $call_rate));
cmp_ok($tick_rate, '>=', 0.95 * $call_rate,
	'(nearly) every ticker() call materializes a tick');

# and the ticks carry messages: a consumer subscribed now receives one
# batch per tick, so each poll takes up to 500 batches
$node->safe_psql('app', q{
	create function take_many(q text, c text, n int) returns setof text
	language plpgsql as $f$
	begin
	  for i in 1 .. n loop
	    return query select * from take(q, c);
	  end loop;
	end $f$;
	select pgque.subscribe('q', 'c');
});
$node->safe_psql('app', q{select pgque.send('q', 'fast'::text)});
wait_until($node, 'app',
	q{select count(*) from take_many('q', 'c', 500) where take_many = 'fast'},
	'1', 'message delivered');
pass('a message is delivered at 100 ticks/s');

$node->stop;
done_testing();
