# A role creating and dropping functions, types, operators and schemas of
# its own does not make the workers run the full trust check of schema pgque.
# Any role can do that at will (a function in pg_temp, a domain or an
# operator in a schema it may create in), and every such change reaches
# every process of the database; before, each meant the full check in the
# ticker and the dispatcher (15 ms with a thousand queues, mostly
# pg_class). Now a function, type or operator change means a scan of that
# one catalog for objects of schema pgque, and a schema change matters
# only if it is schema pgque's. Counted with pg_stat_statements (the full
# check's query, in database app).
#
# The narrower check must still see what the full one saw: a function, a
# type or an operator that a member of pgque_admin (CREATE on schema
# pgque) makes there refuses PgQue, and a renamed ticker() means no PgQue.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $node = tenant_node('objchurn', conf => q{
shared_preload_libraries = 'pg_stat_statements, pgque_worker'
pg_stat_statements.track = all
});
$node->safe_psql('app', q{
create extension pg_stat_statements;
create role admin1 login;
grant create on database app to tenant;
grant pgque_admin to admin1;
});
got_handler($node, 'app', 'tenant');

my $checks = q{select coalesce(sum(s.calls), 0) from pg_stat_statements s
  join pg_database d on d.oid = s.dbid
 where d.datname = 'app' and s.query like '%nspowner from pg_catalog.pg_namespace%'};
my $send = got_sender($node, 'app');
my $state = q{select state from pgque_worker.status() where kind = 'ticker' and datname = 'app'};

$send->('warm', 'a first message handled');
my $before = $node->safe_psql('app', $checks);
ok($before > 0, "the full check is counted ($before so far)");

# the tenant makes and drops a function, a type, an operator and a schema
# of its own, and each time a message goes through the ticker and the dispatcher
for my $i (1 .. 20)
{
	$node->safe_psql('app', qq{
set role tenant;
create function pg_temp.f$i() returns int language sql as 'select $i';
create domain public.d$i as int check (value > 0);
create operator public.### (function = pg_catalog.int4pl, leftarg = int, rightarg = int);
drop operator public.### (int, int);
drop domain public.d$i;
create schema s$i;
drop schema s$i;
});
	$send->("m$i", "message $i handled");
}
my $after = $node->safe_psql('app', $checks);
cmp_ok($after - $before, '<', 5,
	"20 rounds of a tenant's functions, types, operators and schemas: " . ($after - $before)
	  . " full checks (at least one per round before)");

# What a member of pgque_admin makes in schema pgque, it owns: PgQue's code
# could pick it (an overload, a type or an operator of a name it uses), so
# PgQue is refused until it is gone.
my @made = (
	[ 'a function',
	  q{create function pgque.maint(x int) returns int language sql as 'select 1'},
	  q{drop function pgque.maint(int)} ],
	[ 'a type',
	  q{create domain pgque.int4 as pg_catalog.int4 check (value is not null)},
	  q{drop domain pgque.int4} ],
	[ 'an operator',
	  q{create operator pgque.=== (function = pg_catalog.int4eq, leftarg = int, rightarg = int)},
	  q{drop operator pgque.=== (int, int)} ]);
for my $m (@made)
{
	my ($what, $make, $drop) = @$m;
	$node->safe_psql('app', "set role admin1; $make");
	wait_until($node, 'app', $state, 'untrusted pgque', "$what of admin1 in schema pgque");
	like($node->safe_psql('app',
			q{select last_error from pgque_worker.status() where kind = 'ticker' and datname = 'app'}),
		qr/owned by role admin1/, "$what of admin1 in schema pgque: refused, and status() says why");
	$node->safe_psql('app', "set role admin1; $drop");
	wait_until($node, 'app', $state, 'running', "$what dropped: trusted again");
	$send->("after $what", "a message after $what is gone");
}

# what we call, renamed: no PgQue here (the ticker leaves)
my $pos = log_position($node);
$node->safe_psql('app', q{alter function pgque.maint_rotate_tables_step2() rename to step2_away});
wait_for_log($node, qr/database "app" has no PgQue, ticker leaves it/, $pos);
pass('maint_rotate_tables_step2() renamed: no PgQue, the ticker leaves');
$node->safe_psql('app', q{alter function pgque.step2_away() rename to maint_rotate_tables_step2});
$node->safe_psql('app', q{select pgque_worker.wake_launcher()});
wait_until($node, 'app', $state, 'running', 'named again: a ticker again');
$send->('back', 'a message once the ticker is back');

# A narrow check that fails is made again. Any role can queue an ACCESS
# EXCLUSIVE lock on pg_proc (CREATE RULE asks for it before it checks
# ownership) behind a reader; the ticker's scan of pg_proc then waits for
# it and its lock_timeout cancels the call. Found by a review: the first
# version had already forgotten the change, and went on calling PgQue
# beside admin1's new function. (A discovery interval of 10 s: the
# ticker's own look at its database every interval reads pg_proc too, and
# would otherwise often be what waits.)
$node->safe_psql('app', q{alter system set pgque_worker.discovery_interval = '10s'});
$node->reload;
my $reader = $node->background_psql('app');
$reader->query_safe('set role tenant');
$reader->query_safe('begin');
$reader->query_safe('select count(*) from pg_catalog.pg_proc');
$reader->query_safe('reset role');	# to see the others in pg_stat_activity
my $maker = $node->background_psql('app');
$maker->query_safe('set role admin1');
$maker->query_safe('begin');
$maker->query_safe(q{create function pgque.maint(x int) returns int language sql as 'select 1'});
my $queuer = $node->background_psql('app', on_error_stop => 0);
$queuer->query_safe('set role tenant');
$queuer->query_until(qr/queued/,
	"\\echo queued\ncreate rule r as on insert to pg_catalog.pg_proc do instead nothing;\n");
# (asked from the reader: it holds its lock on pg_proc, new sessions wait)
my $ask = sub {
	my ($sql, $expected, $what) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (1)
	{
		my $got = $reader->query_safe($sql);
		return if $got eq $expected;
		die "timed out waiting for $what (last: $got)" if time > $deadline;
		select(undef, undef, undef, 0.1);
	}
};
$ask->(q{select count(*) from pg_stat_activity where query like 'create rule r %' and wait_event_type = 'Lock'},
	'1', 'the rule waits for its lock on pg_proc');
my $errors = $reader->query_safe(
	q{select errors from pgque_worker.status() where kind = 'ticker' and datname = 'app'});
$maker->query_safe('commit');
$ask->(qq{select errors > $errors from pgque_worker.status() where kind = 'ticker' and datname = 'app'},
	't', "the ticker's check timed out behind the queued lock");
$reader->query_safe('rollback');
$reader->quit;
$queuer->quit;
$maker->quit;
wait_until($node, 'app', $state, 'untrusted pgque', "admin1's function, seen once the lock is gone");
pass('a check that timed out is made again: PgQue refused');
$node->safe_psql('app', 'drop function pgque.maint(int)');
wait_until($node, 'app', $state, 'running', 'the function dropped: trusted again');

$node->stop;
done_testing();
