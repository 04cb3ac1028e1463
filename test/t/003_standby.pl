# On a streaming standby nothing runs (the launcher starts only after
# recovery); after promotion the launcher and the ticker start by themselves
# and deliver what was committed on the old primary, and new messages too.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

# Period mode, so the primary's idle ticker visibly keeps calling.
my $primary = new_node('primary', allows_streaming => 1,
	conf => "pgque_worker.wake_on_commit = off");
$primary->start;
$primary->safe_psql('postgres', 'create database app');
install_pgque($primary, 'app');
$primary->safe_psql('app', q{
	select pgque.create_queue('q');
	select pgque.set_queue_config('q', 'ticker_max_count', '1');
	select pgque.subscribe('q', 'c');
});
wait_until($primary, 'app',
	"select state from pgque_worker.status() where datname = 'app'",
	'running', 'ticker on the primary');

$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'show shared_preload_libraries'), 'pgque_worker',
	'the standby preloads pgque_worker');
is($standby->safe_psql('postgres', 'select pg_is_in_recovery()'), 't', 'the standby is in recovery');

# --- nothing runs on the standby while the primary keeps ticking
my $workers_q = q{select count(*) from pg_stat_activity where backend_type like 'pgque_worker%'};
my $calls0 = status_row($primary, 'app', 'app', 'tick_calls');
my %seen;
my $samples = 0;
my $end = time + 2;
while (time < $end)
{
	$seen{ $standby->safe_psql('postgres', $workers_q) } = 1;
	$samples++;
	usleep(50_000);
}
my $calls1 = status_row($primary, 'app', 'app', 'tick_calls');
is(join(',', sort keys %seen), '0',
	"no pgque_worker process on the standby ($samples samples over 2 s)");
note 'primary ticker() calls meanwhile: ' . ($calls1 - $calls0);
cmp_ok($calls1 - $calls0, '>', 5, 'while the primary keeps ticking');
is($standby->safe_psql('app', 'select count(*) from pgque_worker.status()'), '0',
	'status() on the standby shows nothing');

# --- a message committed on the primary, replayed, then the primary dies
$primary->safe_psql('app', q{select pgque.send('q', 'before-promotion'::text)});
$primary->wait_for_catchup($standby);
is($standby->safe_psql('app', q{select count(*) from pgque.queue where queue_name = 'q'}), '1',
	'the queue is on the standby');
$primary->stop('immediate');

my $t0 = time;
$standby->promote;
wait_until($standby, 'postgres',
	q{select count(*) from pg_stat_activity where backend_type = 'pgque_worker launcher'},
	'1', 'launcher after promotion');
wait_until($standby, 'postgres',
	q{select count(*) from pg_stat_activity where backend_type = 'pgque_worker ticker' and datname = 'app'},
	'1', 'ticker after promotion');
note sprintf('launcher and ticker running %.2f s after promote', time - $t0);
pass('after promotion the launcher and the ticker start by themselves');
wait_until($standby, 'app',
	"select state from pgque_worker.status() where datname = 'app'",
	'running', 'ticker state running after promotion');

wait_until($standby, 'app',
	q{select count(*) from take('q', 'c') where take = 'before-promotion'},
	'1', 'message from the old primary delivered');
pass('a message committed on the old primary is delivered after promotion');

$standby->safe_psql('app', q{select pgque.send('q', 'after-promotion'::text)});
wait_until($standby, 'app',
	q{select count(*) from take('q', 'c') where take = 'after-promotion'},
	'1', 'message sent after promotion delivered');
pass('a message sent after promotion is delivered');
cmp_ok(status_row($standby, 'app', 'app', 'ticks'), '>', 0, 'the promoted node materializes ticks');

$standby->stop;
done_testing();
