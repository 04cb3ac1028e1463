# A handler runs with the search_path its role's sessions get in the
# database (ALTER ROLE ... IN DATABASE / ALTER ROLE / ALTER DATABASE ...
# SET search_path), else PostgreSQL's default. Found by a hostile-tenant
# review: handlers always ran with "$user", public, so the tenant's own
# hardening was ignored, and a database owner (not a superuser) who made a
# schema named after the tenant took the tenant's unqualified names: the
# handler's INSERT went to the owner's table, whose trigger ran as the
# tenant (the tenant's password could be changed that way).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $node = tenant_node('searchpath');
$node->safe_psql('app', q{
create role dbo login;
alter database app owner to dbo;
create table public.spied (who text);
grant insert, select on public.spied to public;
});
# the tenant's table and handler, written as README's example is: an
# unqualified name, meant to be its own table in public
$node->safe_psql('app', q{
set role tenant;
create table public.got (payload text);
create function public.h(m pgque.message) returns void language plpgsql as $$
begin
  insert into got values (m.payload);
end $$;
});
# the database owner's schema named after the tenant, with a table of the
# same name whose trigger notes who runs it
$node->safe_psql('app', q{
set role dbo;
create schema tenant;
grant usage on schema tenant to public;
create table tenant.got (payload text);
grant insert on tenant.got to public;
create function tenant.spy() returns trigger language plpgsql as $$
begin
  insert into public.spied values (current_user);
  return null;
end $$;
create trigger spy after insert on tenant.got for each row execute function tenant.spy();
});
# the tenant's hardening, as PostgreSQL's documentation advises
$node->safe_psql('app', q{
set role tenant;
alter role tenant in database app set search_path = public;
});
$node->safe_psql('app', q{
select pgque.create_queue('qp');
select pgque.set_queue_config('qp', 'ticker_max_count', '1');
set role tenant;
select pgque_worker.register_handler('qp', 'c', 'public.h(pgque.message)');
});
$node->safe_psql('app', q{select pgque.send('qp', 'p1'::text)});
my $either = q{select count(*) from (select payload from public.got union all select payload from tenant.got) s where payload = };
wait_until($node, 'app', $either . q{'p1'}, '1', 'the message handled');
is($node->safe_psql('app', q{select count(*) from public.got where payload = 'p1'}), '1',
	"in the tenant's own table");
is($node->safe_psql('app', q{select count(*) from tenant.got}), '0', "none in the database owner's table");
is($node->safe_psql('app', q{select count(*) from public.spied}), '0', "the owner's trigger never ran as the tenant");

# a role-wide setting counts too, below the per-database one: with the
# per-database one gone the role's own decides
$node->safe_psql('app', q{
set role tenant;
alter role tenant in database app reset search_path;
alter role tenant set search_path = public, pg_catalog;
select pgque_worker.register_handler('qp', 'c', 'public.h(pgque.message)');
});
$node->safe_psql('app', q{select pgque.send('qp', 'p2'::text)});
wait_until($node, 'app', $either . q{'p2'}, '1', "with the role's own search_path: the message handled");
is($node->safe_psql('app', q{select count(*) from public.got where payload = 'p2'}), '1',
	"  in the tenant's own table");
is($node->safe_psql('app', q{select count(*) from public.spied}), '0', "  the owner's trigger never ran");

# with no setting the default applies: "$user" first, as in any session of
# the tenant (README says why to set one)
$node->safe_psql('app', q{
set role tenant;
alter role tenant reset search_path;
select pgque_worker.register_handler('qp', 'c', 'public.h(pgque.message)');
});
$node->safe_psql('app', q{select pgque.send('qp', 'p3'::text)});
wait_until($node, 'app', q{select count(*) from tenant.got where payload = 'p3'}, '1',
	'without a setting: "$user", public, as a session of the tenant gets');

$node->stop;
done_testing();
