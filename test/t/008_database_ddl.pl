# Database-level DDL is never blocked by pgque_worker: DROP DATABASE,
# CREATE DATABASE ... TEMPLATE and ALTER DATABASE ... RENAME of a served
# database (ticker and dispatcher connected) succeed, datallowconn = false
# makes the workers leave, and a DDL that fails brings the workers back.
# A copy serves the registrations it copied only after
# serve_copied_handlers(). A DROP DATABASE that PostgreSQL refuses before
# looking for sessions (the
# caller is not the owner, or it runs inside a transaction block) leaves
# the workers alone.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $node = new_node('ddl');
$node->start;
install_pgque($node, 'postgres');

# a served database with a ticker and a dispatcher
sub serve
{
	my ($db) = @_;
	$node->safe_psql('postgres', qq{create database "$db"});
	install_pgque($node, $db);
	$node->safe_psql($db, q{
select pgque.create_queue('q');
select pgque.set_queue_config('q', 'ticker_max_count', '1');
create table got (payload text);
create function h(m pgque.message) returns void language sql as $$ insert into got values (m.payload) $$;
select pgque_worker.register_handler('q', 'c', 'h(pgque.message)');
});
	wait_until($node, 'postgres',
		qq{select count(*) from pg_stat_activity where datname = '$db' and backend_type in ('pgque_worker ticker', 'pgque_worker dispatcher')},
		'2', "ticker and dispatcher in $db");
}

sub workers_in
{
	my ($db) = @_;
	return $node->safe_psql('postgres',
		qq{select count(*) from pg_stat_activity where datname = '$db' and backend_type like 'pgque_worker%'});
}

# --- DROP DATABASE
serve('d1');
my $t0 = time;
my ($ret, $out, $err) = $node->psql('postgres', 'drop database d1');
my $secs = time - $t0;
is($ret, 0, 'plain DROP DATABASE of a served database succeeds') or note $err;
cmp_ok($secs, '<', 5, sprintf('without waiting out the 5 s of PostgreSQL (%.2f s)', $secs));
wait_until($node, 'postgres', q{select count(*) from pgque_worker.status() where datname = 'd1'}, '0',
	'its slots are freed');

# --- CREATE DATABASE ... TEMPLATE of a served database
serve('d2');
# (an event first: PgQ counts a new queue's first event as pending only
# once its sequence has moved past the create-time tick)
$node->safe_psql('d2', q{select pgque.send('q', 'before copy')});
wait_until($node, 'd2', q{select count(*) from got where payload = 'before copy'}, '1',
	'an event before the copy');
my $lpos = log_position($node);
($ret, $out, $err) = $node->psql('postgres', 'create database d2copy template d2');
is($ret, 0, 'CREATE DATABASE ... TEMPLATE of a served database succeeds') or note $err;
wait_until($node, 'postgres', q{select count(*) from pg_stat_activity where datname = 'd2' and backend_type = 'pgque_worker ticker'},
	'1', 'the source is served again after the copy');
wait_until($node, 'postgres', q{select count(*) from pg_stat_activity where datname = 'd2copy' and backend_type = 'pgque_worker ticker'},
	'1', 'the copy has PgQue, so it is served too');
$node->safe_psql('d2', q{select pgque.send('q', 'after copy')});
wait_until($node, 'd2', q{select count(*) from got where payload = 'after copy'}, '1',
	'the source delivers again');
pass('the source delivers again after the copy');
# the copy's registrations (and the events pending at the copy) are not
# served there until someone says so: served in both databases, those
# events would be handled twice (found by a hostile-tenant review)
ok(wait_for_log($node, qr/the handler registrations of database "d2copy" were copied from another database, and are not served here/,
		$lpos), 'the copy says its registrations are not served');
$node->safe_psql('d2copy', q{select pgque.send('q', 'in copy')});
wait_until($node, 'd2copy', q{select count(*) from pgque.get_consumer_info('q', 'c') where pending_events > 0}, '1',
	'the event sent in the copy is ticked');
is($node->safe_psql('postgres', q{select count(*) from pg_stat_activity where datname = 'd2copy' and backend_type = 'pgque_worker dispatcher'}),
	'0', '  no dispatcher in the copy');
is($node->safe_psql('d2copy', q{select count(*) from got where payload = 'in copy'}), '0', '  nor delivery');
$node->safe_psql('d2copy', q{select pgque_worker.serve_copied_handlers()});
wait_until($node, 'd2copy', q{select count(*) from got where payload = 'in copy'}, '1',
	'delivered in the copy after serve_copied_handlers()');
pass('the copy serves its registrations once told to');

# --- ALTER DATABASE ... RENAME
($ret, $out, $err) = $node->psql('postgres', 'alter database d2copy rename to d2renamed');
is($ret, 0, 'ALTER DATABASE ... RENAME of a served database succeeds') or note $err;
wait_until($node, 'postgres', q{select count(*) from pg_stat_activity where datname = 'd2renamed' and backend_type = 'pgque_worker ticker'},
	'1', 'the renamed database is served');
is($node->safe_psql('postgres', q{select count(*) from pgque_worker.status() where datname = 'd2copy'}),
	'0', 'status() shows the new name only');

# --- datallowconn = false: the workers leave; true: they come back
$node->safe_psql('postgres', 'alter database d2 allow_connections false');
wait_until($node, 'postgres', q{select count(*) from pg_stat_activity where datname = 'd2'}, '0',
	'workers leave a database that no longer allows connections');
$node->safe_psql('postgres', 'alter database d2 allow_connections true');
wait_until($node, 'postgres', q{select count(*) from pg_stat_activity where datname = 'd2' and backend_type = 'pgque_worker ticker'},
	'1', 'and come back when it does again');
pass('datallowconn = false and back');

# --- a DROP DATABASE that fails (a client is connected) brings them back
my $client = $node->background_psql('d2');
$client->query_safe('select 1');
($ret, $out, $err) = $node->psql('postgres', 'drop database d2');
isnt($ret, 0, 'DROP DATABASE fails while a client is connected');
like($err, qr/being accessed by other users/, 'with PostgreSQL\'s own reason');
$client->quit;
wait_until($node, 'postgres', q{select count(*) from pg_stat_activity where datname = 'd2' and backend_type = 'pgque_worker ticker'},
	'1', 'the ticker comes back after the failed DROP');
$node->safe_psql('d2', q{select pgque.send('q', 'after failed drop')});
wait_until($node, 'd2', q{select count(*) from got where payload = 'after failed drop'}, '1',
	'delivery after the failed DROP');
pass('delivery goes on after a failed DROP DATABASE');

# --- a DROP DATABASE PostgreSQL refuses on its own leaves the workers alone
serve('d3');
$node->safe_psql('postgres', 'create role nobody login');
my $pid = ticker_pid($node, 'd3');
($ret, $out, $err) = $node->psql('postgres', 'drop database d3', extra_params => [ '-U', 'nobody' ]);
isnt($ret, 0, 'DROP DATABASE by a role that does not own the database fails');
like($err, qr/must be owner of database d3/, 'with PostgreSQL\'s own reason');
is(ticker_pid($node, 'd3'), $pid, 'the ticker was not stopped by the refused DROP');
my $ticks = status_row($node, 'postgres', 'd3', 'ticks');
$node->safe_psql('d3', q{select pgque.send('q', 'after refused drop')});
wait_until($node, 'd3', q{select count(*) from got where payload = 'after refused drop'}, '1',
	'delivery after the refused DROP');
ok($node->poll_query_until('postgres',
		qq{select ticks > $ticks from pgque_worker.status() where kind = 'ticker' and datname = 'd3'}),
	'd3 keeps ticking after the refused DROP');
is(ticker_pid($node, 'd3'), $pid, 'by the same ticker');

($ret, $out, $err) = $node->psql('postgres', "begin;\ndrop database d3;\nrollback;");
isnt($ret, 0, 'DROP DATABASE by the owner inside BEGIN fails');
like($err, qr/DROP DATABASE cannot run inside a transaction block/, 'with PostgreSQL\'s own reason');
is(ticker_pid($node, 'd3'), $pid, 'the ticker was not stopped by the DROP inside BEGIN');

$node->stop;
done_testing();
