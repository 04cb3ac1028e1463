# A role's ALTER ROLE does not make the workers check all of schema pgque
# again. The trust check (may PgQue here be run as its owner?) depends on
# roles only through which of them are superusers (an object of schema
# pgque may belong to one); before, any role change (a tenant changing
# its own password) meant the full check, reading every relation of
# schema pgque, in the ticker and the dispatcher of every database: a
# review measured p50 going from 13 to 54 ms with 500 queues while a role
# changed its password in a loop. Counted here with pg_stat_statements
# (the check's query, in database app). A superuser losing superuser
# still makes PgQue untrusted where it owns one of PgQue's objects.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $node = new_node('rolechurn', conf => q{
shared_preload_libraries = 'pg_stat_statements, pgque_worker'
pg_stat_statements.track = all
});
$node->start;
$node->safe_psql('postgres', 'create database app');
install_pgque($node, 'app');
$node->safe_psql('app', q{
create extension pg_stat_statements;
create role tenant login;
grant pgque_reader to tenant;
grant create on schema public to tenant;
});
got_handler($node, 'app', 'tenant');

my $checks = q{select coalesce(sum(s.calls), 0) from pg_stat_statements s
  join pg_database d on d.oid = s.dbid
 where d.datname = 'app' and s.query like '%nspowner from pg_catalog.pg_namespace%'};

$node->safe_psql('app', q{select pgque.send('q', 'warm'::text)});
wait_until($node, 'app', q{select count(*) from public.got}, '1', 'a first message handled');
my $before = $node->safe_psql('app', $checks);
ok($before > 0, "the full check is counted ($before so far)");

# the tenant changes its own password, and each time a message goes
# through the ticker and the dispatcher (both run PgQue as its owner)
for my $i (1 .. 20)
{
	$node->safe_psql('app', qq{set role tenant; alter role tenant password 'pw-$i'});
	$node->safe_psql('app', qq{select pgque.send('q', 'm$i'::text)});
	wait_until($node, 'app', q{select count(*) from public.got}, 1 + $i, "message $i handled");
}
my $after = $node->safe_psql('app', $checks);
cmp_ok($after - $before, '<', 5,
	"20 password changes: " . ($after - $before) . " full checks (one or more per change before)");

# a superuser that owns an object of schema pgque, and loses superuser:
# PgQue is untrusted at once (its function would run as PgQue's owner)
$node->safe_psql('app', q{
create role su2 superuser;
create function pgque.extra() returns int language sql as 'select 1';
alter function pgque.extra() owner to su2;
});
$node->safe_psql('app', q{select pgque.send('q', 'still trusted'::text)});
wait_until($node, 'app', q{select count(*) from public.got where p = 'still trusted'}, '1',
	'a function of another superuser in schema pgque: still served');
$node->safe_psql('app', q{alter role su2 nosuperuser});
$node->safe_psql('app', q{select pgque.send('q', 'after'::text)});
wait_until($node, 'app',
	q{select state from pgque_worker.status() where kind = 'ticker' and datname = 'app'},
	'untrusted pgque', 'that superuser losing superuser: PgQue untrusted');
pass('a superuser owning a PgQue function lost superuser: PgQue untrusted');
$node->safe_psql('app', q{alter role su2 superuser});
wait_until($node, 'app',
	q{select state from pgque_worker.status() where kind = 'ticker' and datname = 'app'},
	'running', 'superuser again: trusted again');
pass('superuser again: PgQue trusted again');

$node->stop;
done_testing();
