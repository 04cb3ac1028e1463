# pgque_worker.max_workers caps the tickers and dispatchers of all
# databases, and says which databases get them: those a superuser owns
# first, then those the launcher has known longer (not by OID: a role with
# CREATEDB may choose one). Before, every database with a schema pgque got a
# ticker up to max_worker_processes, so a role with CREATEDB could create
# databases until the workers of other databases (and parallel query) had
# no slot left, and a database created after its ones got none.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

# (database postgres left out: its probes, brief, are not counted, but
# would show in pg_stat_activity)
my $node = new_node('maxworkers', conf => q{
pgque_worker.max_workers = 3
pgque_worker.databases = 'app, t1, t2, s1, evil'
});
$node->start;

# app, a superuser's: a ticker and a dispatcher
$node->safe_psql('postgres', 'create database app');
install_pgque($node, 'app');
got_handler($node, 'app');
my $send = got_sender($node, 'app');
$send->('first', 'app serves a first message');

my $state = sub {
	my ($db, $kind) = @_;
	return qq{select coalesce((select state from pgque_worker.status()
	  where datname = '$db' and kind = '} . ($kind // 'ticker') . q{'), 'none')};
};
my $workers = q{select count(*) from pg_stat_activity
  where backend_type in ('pgque_worker ticker', 'pgque_worker dispatcher')};

# a tenant with CREATEDB makes two databases with PgQue in them
$node->safe_psql('postgres', q{create role tenant login createdb});
my $pos = log_position($node);
for my $db (qw(t1 t2))
{
	$node->safe_psql('postgres', qq{set role tenant; create database $db});
	install_pgque($node, $db);
}
$node->safe_psql('app', 'select pgque_worker.wake_launcher()');
wait_until($node, 'app', $state->('t1'), 'running', 't1 gets the third worker');
wait_until($node, 'app', $state->('t2'), 'over max_workers', 't2 waits');
pass('the older of the tenant databases is served, the newer waits');
wait_for_log($node, qr/WARNING:  pgque_worker: no ticker for database "t2": pgque_worker.max_workers \(3\) are taken/, $pos);
pass('a WARNING names the database left without a ticker');
wait_until($node, 'postgres', $workers, '3', 'three workers');
pass('three workers run: the cap');
is($node->safe_psql('app', $state->('app', 'dispatcher')), 'running',
	"app keeps its dispatcher: the tenant's databases are newer");
$send->('beside t1', 'app still serves');

# the tenant picks an OID below t1's (CREATE DATABASE ... OID): its
# database is still newer to the launcher, and waits (found by a review:
# ranked by OID, it took t1's ticker)
my $low = $node->safe_psql('postgres', q{select min(g) from generate_series(16384, 20000) g
  where not exists (select 1 from pg_database d where d.oid = g)});
cmp_ok($low, '<', $node->safe_psql('postgres', q{select oid from pg_database where datname = 't1'}),
	"an OID below t1's is free ($low)");
$node->safe_psql('postgres', qq{set role tenant; create database evil oid = $low});
install_pgque($node, 'evil');
$node->safe_psql('app', 'select pgque_worker.wake_launcher()');
wait_until($node, 'app', $state->('evil'), 'over max_workers', 'evil waits');
is($node->safe_psql('app', $state->('t1')), 'running', 't1 keeps its ticker');

# a database a superuser makes later comes before the tenant's (made
# empty, found without PgQue first: probes are not held by the cap)
$node->safe_psql('postgres', 'create database s1');
$node->safe_psql('app', 'select pgque_worker.wake_launcher()');
wait_until($node, 'app', $state->('s1'), 'no pgque', 's1 probed');
install_pgque($node, 's1');
$node->safe_psql('app', 'select pgque_worker.wake_launcher()');
wait_until($node, 'app', $state->('s1'), 'running', "s1, a superuser's, gets a ticker");
wait_until($node, 'app', $state->('t1'), 'over max_workers', "t1 gives its ticker up to s1");
pass("a superuser's database, newer, comes before the tenant's");
wait_until($node, 'postgres', $workers, '3', 'still three workers');
$send->('beside s1', 'app still serves');

# the cap raised: everyone served
$node->safe_psql('postgres', q{alter system set pgque_worker.max_workers = 10});
$node->reload;
wait_until($node, 'app', $state->('t1'), 'running', 't1 served once the cap is raised');
wait_until($node, 'app', $state->('t2'), 'running', 't2 served once the cap is raised');
wait_until($node, 'app', $state->('evil'), 'running', 'evil served once the cap is raised');
wait_until($node, 'postgres', $workers, '6', 'six workers');
pass('raised to 10: every database served (six workers)');

# the cap lowered: the newest of the tenant's goes first
$node->safe_psql('postgres', q{alter system set pgque_worker.max_workers = 4});
$node->reload;
wait_until($node, 'app', $state->('t2'), 'over max_workers', 't2 leaves when the cap goes down');
wait_until($node, 'app', $state->('evil'), 'over max_workers', 'and evil');
wait_until($node, 'postgres', $workers, '4', 'four workers');
is($node->safe_psql('app', $state->('t1')), 'running', 't1 (older) keeps its ticker');
$send->('after the cap went down', 'app still serves');

$node->stop;

# The launcher's own slots (one per max_worker_processes) go the same way:
# a role with CREATEDB that makes more databases than there are slots (empty
# ones: each is probed) does not leave a superuser's later database
# without a ticker or its dispatcher. Before, the slots went in the order
# of pg_database, and the later database got none.
my $small = new_node('fewslots', conf => q{
max_worker_processes = 6
});
$small->start;
$small->safe_psql('postgres', q{create role tenant login createdb});
$small->safe_psql('postgres', qq{set role tenant; create database e$_}) for 1 .. 6;
$small->safe_psql('postgres', 'create database late');
install_pgque($small, 'late');
got_handler($small, 'late');
$small->safe_psql('late', 'select pgque_worker.wake_launcher()');
wait_until($small, 'late', q{select count(*) from pgque_worker.status()
  where datname = 'late' and state = 'running'}, '2',
	"the superuser's later database gets a ticker and a dispatcher");
got_sender($small, 'late')->('late one', 'and its message is handled');
pass("six empty databases of a CREATEDB role beside six slots: the superuser's database served");
$small->stop;

done_testing();
