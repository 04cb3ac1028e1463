# Life cycle of pgque_worker: refusing to load without preload, discovery of
# databases and of PgQue installed after start, leaving databases without
# PgQue, DROP DATABASE, SIGTERM and kill -9 of workers.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

# --- not preloaded: a clear refusal
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;
my ($ret, $out, $err) = $plain->psql('postgres', 'create extension pgque_worker');
isnt($ret, 0, 'create extension fails without shared_preload_libraries');
like($err, qr/pgque_worker must be loaded via shared_preload_libraries/, 'with a clear message');
like($err, qr/HINT:.*shared_preload_libraries/, 'and a hint');
$plain->stop;

my $node = new_node('main');
$node->start;

# --- databases without PgQue: probed, never kept connected
$node->safe_psql('postgres', 'create database nopgque');
install_pgque($node, 'postgres');    # for pgque_worker.status()
wait_until($node, 'postgres',
	"select state from pgque_worker.status() where datname = 'nopgque'",
	'no pgque', 'nopgque probed');
my $held = 0;
for (1 .. 40)
{
	$held += $node->safe_psql('postgres',
		"select count(*) > 0 from pg_stat_activity where datname = 'nopgque'") eq 't' ? 1 : 0;
	usleep(25_000);
}
cmp_ok($held, '<', 10, "a database without PgQue is only probed briefly (seen connected in $held of 40 samples)");
$node->safe_psql('postgres', 'drop database nopgque');
pass('DROP DATABASE of a database without PgQue is not blocked');
wait_until($node, 'postgres',
	"select count(*) from pgque_worker.status() where datname = 'nopgque'",
	'0', 'slot of dropped database freed');

# --- PgQue installed after start is found within the discovery interval
$node->safe_psql('postgres', 'create database app');
wait_until($node, 'postgres',
	"select state from pgque_worker.status() where datname = 'app'",
	'no pgque', 'app probed before install');
install_pgque($node, 'app');
my $found = wait_until($node, 'postgres',
	"select state from pgque_worker.status() where datname = 'app'",
	'running', 'ticker for app');
note sprintf('ticker started %.2f s after install', $found);

$node->safe_psql('app', q{
	select pgque.create_queue('q');
	select pgque.set_queue_config('q', 'ticker_max_count', '1');
	select pgque.subscribe('q', 'c');
});
$node->safe_psql('app', q{select pgque.send('q', 'one'::text)});
wait_until($node, 'app',
	q{select count(*) from take('q', 'c') where take = 'one'},
	'1', 'message delivered without a manual tick');
pass('a message sent is received with no manual ticker call');

# helper: send one payload and wait until it is received
my $n = 0;
sub delivered
{
	my ($label) = @_;
	$n++;
	send_and_take($node, 'app', "msg$n");
	pass("delivery works $label");
}

# --- SIGTERM: the worker exits promptly and the launcher starts a new one
my $pid = ticker_pid($node, 'app');
ok($pid > 0, 'ticker runs for app');
my $t0 = time;
$node->safe_psql('postgres', "select pg_terminate_backend($pid)");
wait_until($node, 'postgres',
	"select count(*) from pg_stat_activity where pid = $pid", '0', 'ticker exit');
my $exit_s = time - $t0;
cmp_ok($exit_s, '<', 5, sprintf('SIGTERM exits promptly (%.2f s)', $exit_s));
wait_until($node, 'postgres',
	"select count(*) from pg_stat_activity where backend_type = 'pgque_worker ticker' and datname = 'app' and pid <> $pid",
	'1', 'ticker restarted after SIGTERM');
delivered('after SIGTERM');

# --- kill -9 of the ticker: the postmaster restarts the server, the
# launcher comes back and starts the ticker again
$pid = ticker_pid($node, 'app');
kill 'KILL', $pid;
wait_until($node, 'postgres',
	"select count(*) from pg_stat_activity where backend_type = 'pgque_worker ticker' and datname = 'app' and pid <> $pid",
	'1', 'ticker back after kill -9');
delivered('after kill -9 of the ticker');

# --- kill -9 of the launcher
my $lpid = $node->safe_psql('postgres',
	"select pid from pg_stat_activity where backend_type = 'pgque_worker launcher'");
kill 'KILL', $lpid;
wait_until($node, 'postgres',
	"select count(*) from pg_stat_activity where backend_type = 'pgque_worker launcher' and pid <> $lpid",
	'1', 'launcher back after kill -9');
delivered('after kill -9 of the launcher');

# --- PgQue dropped: the worker leaves the database
$node->safe_psql('app', 'drop extension pgque_worker');
$node->safe_psql('app', 'drop schema pgque cascade');
wait_until($node, 'postgres',
	"select state from pgque_worker.status() where datname = 'app'",
	'no pgque', 'ticker left app after PgQue was dropped');
is(ticker_pid($node, 'app'), '0', 'no ticker connected to app any more');

# --- log: no per-tick lines (the log grows with events, not with ticks)
my $log = slurp_file($node->logfile);
my $lines = () = $log =~ /pgque_worker: /g;
cmp_ok($lines, '<', 40, "no per-tick log rows ($lines pgque_worker lines in the log)");

$node->stop;
done_testing();
