# Tenants sharing a dispatcher do not share compiled functions. PL/pgSQL
# compiles a function once per process, looking the types of its variables
# up under the search_path of its first call, and keeps that for every
# later caller. One dispatcher serves every tenant of a database: tenant
# ta's handler, under a path naming ta's schema before pg_catalog, called
# tenant tb's function first, so that function was compiled with ta's
# domain "text", whose CHECK then ran as tb in tb's own handler (found by a
# review; in README's Limitations until this test). During a handler call
# another role's PL/pgSQL function now runs with its owner's search_path.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $node = tenant_node('tenantcompile');
$node->safe_psql('app', q{
create role ta login;
create role tb login;
grant pgque_reader to ta, tb;
create schema ta authorization ta;
create schema tb authorization tb;
create table public.spied (who text, what text);
grant insert, select on public.spied to public;
select pgque.create_queue('qa');
select pgque.set_queue_config('qa', 'ticker_max_count', '1');
select pgque.create_queue('qb');
select pgque.set_queue_config('qb', 'ticker_max_count', '1');
});
# tb: a function with no search_path of its own (as most are), usable by
# others, and tb's handler calling it
$node->safe_psql('app', q{
set role tb;
grant usage on schema tb to public;
create table tb.got (payload text);
create function tb.norm(p text) returns text language plpgsql as $$
declare
  v text := p;
begin
  return v;
end $$;
create function tb.path() returns text language plpgsql as $$
begin
  return pg_catalog.current_setting('search_path');
end $$;
create function tb.h(m pgque.message) returns void language plpgsql
set search_path = tb, pg_catalog as $$
begin
  insert into tb.got values (tb.norm(m.payload));
end $$;
select pgque_worker.register_handler('qb', 'c', 'tb.h(pgque.message)');
});
# ta: a domain "text" whose CHECK notes who runs it, and a handler that
# calls tb's function first, with ta's schema before pg_catalog
$node->safe_psql('app', q{
set role ta;
grant usage on schema ta to public;
create function ta.spy(x pg_catalog.text) returns boolean language plpgsql as $$
begin
  insert into public.spied values (current_user, x);
  return true;
end $$;
create domain ta.text as pg_catalog.text check (ta.spy(value));
create table ta.done (payload pg_catalog.text, callee_path pg_catalog.text);
create function ta.h(m pgque.message) returns void language plpgsql
set search_path = ta, pg_catalog as $$
begin
  perform tb.norm(m.payload);
  insert into ta.done values (m.payload, tb.path());
end $$;
select pgque_worker.register_handler('qa', 'c', 'ta.h(pgque.message)');
});

$node->safe_psql('app', q{select pgque.send('qa', 'from-a'::pg_catalog.text)});
wait_until($node, 'app', q{select count(*) from ta.done}, '1', "ta's handler ran, calling tb's function first");
is($node->safe_psql('app', q{select callee_path from ta.done}), 'tb, public, pg_temp',
	"tb's function ran with tb's search_path (\"\$user\" spelled as tb, pg_temp last), not ta's");

$node->safe_psql('app', q{select pgque.send('qb', 'from-b'::pg_catalog.text)});
wait_until($node, 'app', q{select count(*) from tb.got}, '1', "tb's handler delivered its message");
is($node->safe_psql('app', q{select count(*) from public.spied where who = 'tb'}), '0',
	"ta's domain CHECK never ran as tb");
is($node->safe_psql('app', q{select count(*) from public.spied}), '0',
	"tb's function was never compiled with ta's domain");

# a handler function of another role than the registering one (one it may
# register: here the superuser's) gets its owner's path too
$node->safe_psql('app', q{
create table public.paths (who text, path text);
grant insert, select on public.paths to public;
select pgque.create_queue('qc');
select pgque.set_queue_config('qc', 'ticker_max_count', '1');
create function public.h2(m pgque.message) returns void language plpgsql as $$
begin
  insert into public.paths values (current_user, pg_catalog.current_setting('search_path'));
end $$;
set role tb;
select pgque_worker.register_handler('qc', 'c', 'public.h2(pgque.message)');
});
$node->safe_psql('app', q{select pgque.send('qc', 'from-c'::pg_catalog.text)});
wait_until($node, 'app', q{select count(*) from public.paths}, '1', "tb's handler written by the superuser ran");
my $su = $node->safe_psql('app', q{select pg_catalog.quote_ident(current_user)});
is($node->safe_psql('app', q{select who || ': ' || path from public.paths}), "tb: $su, public, pg_temp",
	"as tb, with its owner's search_path");

$node->stop;
done_testing();
