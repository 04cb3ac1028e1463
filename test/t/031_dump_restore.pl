# pg_dump and pg_restore of a database with PgQue and pgque_worker. The
# dump creates the extension before PgQue's schema (PgQue is no
# extension); the extension's install check refused a database without
# PgQue, and its registrations were not dumped. Now the check looks only
# for PgQue's roles (the cluster's), and the registrations and the
# progress through batches are dumped with PgQue's consumers: the restored
# database serves its handlers from the events pending at the dump.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $node = tenant_node('dumprestore');
got_handler($node, 'app', 'tenant');
got_sender($node, 'app')->('before', 'a first message');

# two events the handler has not had yet (registration disabled)
$node->safe_psql('app', q{
set role tenant;
select pgque_worker.register_handler('q', 'c', 'public.h(pgque.message)', enabled => false);
});
$node->safe_psql('app', q{select pgque.send('q', p) from unnest(array['p1', 'p2']) p});

my $dump = $node->basedir . '/app.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('app') ], 'pg_dump');
$node->safe_psql('postgres', 'create database app2');
my ($out, $err) = ('', '');
my $ok = IPC::Run::run([ 'pg_restore', '--single-transaction', '--exit-on-error',
		'-d', $node->connstr('app2'), $dump ], '>', \$out, '2>', \$err);
ok($ok, 'pg_restore --single-transaction: no error') or diag($err);

is($node->safe_psql('app2', q{select queue_name || '/' || consumer_name || ' '
  || (handler = 'public.h(pgque.message)'::regprocedure) || ' as ' || run_as::text
  || ' enabled ' || enabled from pgque_worker.handler}),
	'q/c true as tenant enabled false', 'the registration is restored');
is($node->safe_psql('app2', q{select string_agg(p, ',' order by p) from public.got}), 'before',
	'the handled message is in the copy of public.got');

# enabled in the copy: the two pending events, once each
$node->safe_psql('app2', q{
set role tenant;
select pgque_worker.register_handler('q', 'c', 'public.h(pgque.message)', enabled => true);
});
wait_until($node, 'app2', q{select string_agg(p, ',' order by p) from public.got}, 'before,p1,p2',
	'the restored database delivers the events pending at the dump');
got_sender($node, 'app2')->('after', 'and a new one');
is($node->safe_psql('app2', q{select count(*) from public.got}), '4', 'each once');
is($node->safe_psql('app', q{select count(*) from public.got}), '1',
	'the source (handler disabled) delivered nothing meanwhile');

# the extension before PgQue (as a restore makes it): registering a
# handler says what is missing
$node->safe_psql('postgres', 'create database nopgque');
$node->safe_psql('nopgque', q{create extension pgque_worker;
create function public.f(i int) returns void language sql as ''});
my ($rc, $o, $e) = $node->psql('nopgque', q{select pgque_worker.register_handler('q', 'c', 'public.f(int)')});
like($e, qr/ERROR:  schema "pgque" does not exist/,
	'the extension in a database without PgQue: register_handler() says PgQue is missing');

$node->stop;
done_testing();
