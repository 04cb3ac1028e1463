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
is($node->safe_psql('app', q{select callee_path from ta.done}), 'tb, pg_temp',
	"tb's function ran with tb's search_path (\"\$user\" spelled as tb; public, where tenants may create, left out; pg_temp last), not ta's");

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
is($node->safe_psql('app', q{select who || ': ' || path from public.paths}), "tb: pg_temp",
	"as tb, with its owner's search_path (\"\$user\" = $su: no such schema; public left out)");

# Found by a review of the above (each worked before it too):
# (f1) a function's own SET search_path naming "$user", which PostgreSQL
# reads as the caller: ta's call compiled tb's function with ta's domain;
# (f2) the owner's path naming a schema the caller may not use, which
# PostgreSQL skips: the type came from a later schema (public) where the
# caller may create one; (f3) inside a SECURITY DEFINER function of tb,
# ta's own function was called by tb, not by the handler's role ta, and
# compiled under tb's path; (f4) another role's recursive function was
# refused past 64 levels in a handler.
$node->safe_psql('app', q{
create role tc login;
grant pgque_reader to tc;
create schema tc authorization tc;
grant create on schema public to ta, tb, tc;
grant create on database app to tb;
select pgque.create_queue(q), pgque.set_queue_config(q, 'ticker_max_count', '1')
  from unnest(array['qa1', 'qb1', 'qa2', 'qc2', 'qa3', 'qb4']) q;
create function public.su_rec(n int) returns int language plpgsql as $$
begin
  if n <= 0 then return 0; end if;
  return 1 + public.su_rec(n - 1);
end $$;
});
$node->safe_psql('app', q{
set role tb;
create domain tb.amount as pg_catalog.text;
create function tb.norm1(p pg_catalog.text) returns pg_catalog.text language plpgsql
set search_path = "$user", public as $$
declare
  v amount := p;
begin
  return v;
end $$;
create table tb.got1 (payload pg_catalog.text);
create function tb.h1(m pgque.message) returns void language plpgsql
set search_path = tb, pg_catalog as $$
begin
  insert into tb.got1 values (tb.norm1(m.payload));
end $$;
select pgque_worker.register_handler('qb1', 'c', 'tb.h1(pgque.message)');
create schema tb3;
grant usage on schema tb3 to public;
create function tb3.spy(x pg_catalog.text) returns boolean language plpgsql as $$
begin
  insert into public.spied values (current_user, x);
  return true;
end $$;
create domain tb3.text as pg_catalog.text check (tb3.spy(value));
create function tb3.api(p pg_catalog.text) returns void language plpgsql security definer
set search_path = tb3, pg_catalog as $$
begin
  perform ta.k(p);
end $$;
grant execute on function tb3.api(pg_catalog.text) to public;
create table tb.got4 (r int);
create function tb.h4(m pgque.message) returns void language plpgsql
set search_path = tb, pg_catalog as $$
begin
  insert into tb.got4 values (public.su_rec(m.payload::int));
end $$;
select pgque_worker.register_handler('qb4', 'c', 'tb.h4(pgque.message)');
});
$node->safe_psql('app', q{
set role tc;
create domain tc.camount as pg_catalog.text;
create function public.tc_norm(p pg_catalog.text) returns pg_catalog.text language plpgsql as $$
declare
  v camount := p;
begin
  return v;
end $$;
create table tc.got2 (payload pg_catalog.text);
create function tc.h2(m pgque.message) returns void language plpgsql as $$
begin
  insert into tc.got2 values (public.tc_norm(m.payload));
end $$;
select pgque_worker.register_handler('qc2', 'c', 'tc.h2(pgque.message)');
});
$node->safe_psql('app', q{
set role ta;
create domain ta.amount as pg_catalog.text check (ta.spy(value));
create domain public.camount as pg_catalog.text check (ta.spy(value));
create function ta.h1(m pgque.message) returns void language plpgsql
set search_path = ta, pg_catalog as $$
begin
  perform tb.norm1(m.payload);
  insert into ta.done values (m.payload, null);
end $$;
select pgque_worker.register_handler('qa1', 'c', 'ta.h1(pgque.message)');
create function ta.h2(m pgque.message) returns void language plpgsql
set search_path = ta, pg_catalog as $$
begin
  perform public.tc_norm(m.payload);
  insert into ta.done values (m.payload, null);
end $$;
select pgque_worker.register_handler('qa2', 'c', 'ta.h2(pgque.message)');
create function ta.k(p pg_catalog.text) returns pg_catalog.text language plpgsql as $$
declare
  v text := p;
begin
  return v;
end $$;
create function ta.h3(m pgque.message) returns void language plpgsql
set search_path = ta, pg_catalog as $$
begin
  perform tb3.api(m.payload);
  insert into ta.done values (ta.k(m.payload), null);
end $$;
select pgque_worker.register_handler('qa3', 'c', 'ta.h3(pgque.message)');
});

# f1: ta first, then tb
$node->safe_psql('app', q{select pgque.send('qa1', 'f1-a'::pg_catalog.text)});
wait_until($node, 'app', q{select count(*) from ta.done where payload = 'f1-a'}, '1', "f1: ta's handler ran");
$node->safe_psql('app', q{select pgque.send('qb1', 'f1-b'::pg_catalog.text)});
wait_until($node, 'app', q{select count(*) from tb.got1}, '1', "f1: tb's handler ran");
is($node->safe_psql('app', q{select count(*) from public.spied where what like 'f1%'}), '0',
	'f1: a function SET search_path = "$user", ... called by ta first: ta\'s domain never ran (as ta, nor as tb)');

# f2: ta's call fails (tc's schema is tc's: the path stops there, and
# camount is not found); nothing is compiled, and tc's own call is tc's
$node->safe_psql('app', q{select pgque.send('qa2', 'f2-a'::pg_catalog.text)});
wait_until($node, 'app',
	q{select count(*) > 0 from pgque_worker.handler_stats where queue_name = 'qa2' and last_error like '%camount%'},
	't', "f2: ta's call of tc's function failed: camount not found without tc's schema");
$node->safe_psql('app', q{select pgque.send('qc2', 'f2-c'::pg_catalog.text)});
wait_until($node, 'app', q{select count(*) from tc.got2}, '1', "f2: tc's handler ran");
is($node->safe_psql('app', q{select count(*) from public.spied where what like 'f2%'}), '0',
	"f2: ta's public.camount never ran (as ta, nor as tc)");

# f3: tb's SECURITY DEFINER function calls ta's function first
$node->safe_psql('app', q{select pgque.send('qa3', 'f3-a'::pg_catalog.text)});
wait_until($node, 'app', q{select count(*) from ta.done where payload = 'f3-a'}, '1', "f3: ta's handler ran");
is($node->safe_psql('app', q{select count(*) from public.spied where what like 'f3%'}), '0',
	"f3: ta's function, first called by tb's SECURITY DEFINER function, was not compiled with tb's domain");

# f4: recursion 70 deep into another role's function
$node->safe_psql('app', q{select pgque.send('qb4', '70'::pg_catalog.text)});
wait_until($node, 'app', q{select count(*) from tb.got4}, '1', 'f4: handled');
is($node->safe_psql('app', q{select r from tb.got4}), '70', "f4: another role's function recursing 70 deep");

# From a third review, of the owner's path: (g1, a regression of the
# first version of this rule) tb's handler calls a helper owned by group
# role tg, of which tb is a member: it ran under tg's default path
# "tg", public, where ta had made a domain amount_g, so ta's CHECK ran as
# tb without ta calling anything; (g2) tb's own helper, relying on its
# handler's path (tb, ext), called by ta first, was compiled under tb's
# default path "tb", public with ta's public.money2. A member of the
# owning role now counts as the owner, and a schema where a role the
# owner does not trust may create objects (here public) is left out.
$node->safe_psql('app', q{
create role tg nologin;
grant tg to tb;
grant usage, create on schema tb to tg;
create schema ext;
grant usage on schema ext to public;
create domain ext.money2 as pg_catalog.text;
select pgque.create_queue(q), pgque.set_queue_config(q, 'ticker_max_count', '1')
  from unnest(array['qg1', 'qg2a', 'qg2b']) q;
set role tb;
create domain tb.amount_g as pg_catalog.text;
create table tb.gotg (v pg_catalog.text);
grant insert on tb.gotg to tg;
set role tg;
set search_path = tb, pg_catalog;
create function tb.gnorm(p pg_catalog.text) returns pg_catalog.text language plpgsql as $$
declare
  v amount_g := p;
begin
  return v;
end $$;
set role tb;
create function tb.hg1(m pgque.message) returns void language plpgsql
set search_path = tb, pg_catalog as $$
begin
  insert into tb.gotg values (tb.gnorm(m.payload));
end $$;
select pgque_worker.register_handler('qg1', 'c', 'tb.hg1(pgque.message)');
set search_path = tb, ext, pg_catalog;
create function tb.n2(p pg_catalog.text) returns pg_catalog.text language plpgsql as $$
declare
  v money2 := p;
begin
  return v;
end $$;
create function tb.hg2(m pgque.message) returns void language plpgsql
set search_path = tb, ext, pg_catalog as $$
begin
  insert into tb.gotg values (tb.n2(m.payload));
end $$;
select pgque_worker.register_handler('qg2b', 'c', 'tb.hg2(pgque.message)');
reset search_path;
set role ta;
create domain public.amount_g as pg_catalog.text check (ta.spy(value));
create domain public.money2 as pg_catalog.text check (ta.spy(value));
create function ta.hg2(m pgque.message) returns void language plpgsql
set search_path = ta, pg_catalog as $$
begin
  perform tb.n2(m.payload);
end $$;
select pgque_worker.register_handler('qg2a', 'c', 'ta.hg2(pgque.message)');
});
$node->safe_psql('app', q{select pgque.send('qg1', 'g1-b'::pg_catalog.text)});
wait_until($node, 'app', q{select count(*) from tb.gotg where v = 'g1-b'}, '1',
	"g1: tb's handler with its group role's helper delivered");
is($node->safe_psql('app', q{select count(*) from public.spied where what like 'g1%'}), '0',
	"g1: ta's public.amount_g never ran in tb's handler");
$node->safe_psql('app', q{select pgque.send('qg2a', 'g2-a'::pg_catalog.text)});
wait_until($node, 'app',
	q{select count(*) > 0 from pgque_worker.handler_stats where queue_name = 'qg2a' and last_error like '%money2%'},
	't', "g2: ta's call of tb's helper failed: money2 is not in tb's path without public");
$node->safe_psql('app', q{select pgque.send('qg2b', 'g2-b'::pg_catalog.text)});
wait_until($node, 'app', q{select count(*) from tb.gotg where v = 'g2-b'}, '1', "g2: tb's handler delivered");
is($node->safe_psql('app', q{select count(*) from public.spied where what like 'g2%'}), '0',
	"g2: ta's public.money2 never ran (as ta, nor as tb)");

$node->stop;
done_testing();
