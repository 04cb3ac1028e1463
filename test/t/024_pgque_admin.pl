# A pgque_admin member is not PgQue's owner. PgQue's install gives
# pgque_admin every privilege on PgQue's tables (TRIGGER and UPDATE among
# them), and the workers run PgQue as its owner (here a superuser). Two
# ways that turned pgque_admin into a superuser through the workers (found
# by a hostile-tenant review):
#  1. a trigger on a PgQue table, whose function then ran as the owner when
#     the ticker wrote the table;
#  2. a queue's storage names (queue_data_pfx) pointed at views of its own,
#     whose functions ran as the owner when the dispatcher read a batch.
# Both must gain nothing, and the database must be served again once they
# are undone.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $node = tenant_node('pgqueadmin', conf => "pgque_worker.maint_interval = '1s'");
$node->safe_psql('app', q{
create role admin1 login;
grant pgque_admin to admin1;
create table got (payload text);
grant select, insert on got to tenant;
grant create on schema public to admin1;
create table pwned (who text);
grant select, insert on pwned to public;
-- what each attack runs: notes who runs it, tries to make admin1 a superuser
create function public.pwn() returns void language plpgsql as $$
begin
  insert into public.pwned values (current_user);
  begin
    execute 'alter role admin1 superuser';
  exception when others then null;
  end;
end $$;
alter function public.pwn() owner to admin1;
select pgque.create_queue('qv');
select pgque.set_queue_config('qv', 'ticker_max_count', '1');
select pgque.set_queue_config('qv', 'ticker_max_lag', '10 ms');
});
$node->safe_psql('app', q{
set role tenant;
create function hv(m pgque.message) returns void language plpgsql as $$
begin
  insert into public.got values (m.payload);
end $$;
select pgque_worker.register_handler('qv', 'v', 'hv(pgque.message)');
});
my $super = sub {
	$node->safe_psql('app', q{select rolsuper from pg_roles where rolname = 'admin1'});
};
# Waits until the query $refused is true (the attack refused), then checks
# that it gained nothing: no row of pwned written as another role than
# admin1, and admin1 no superuser.
my $gained_nothing = sub {
	my ($refused, $what) = @_;
	wait_until($node, 'app', $refused, 't', $what);
	is($node->safe_psql('app', q{select count(*) from pwned where who <> 'admin1'}), '0',
		"$what: nothing ran as another role");
	is($super->(), 'f', "$what: admin1 is not a superuser");
};
$node->safe_psql('app', q{select pgque.send('qv', 'v1')});
wait_until($node, 'app', q{select count(*) from got where payload = 'v1'}, '1', 'v1');

# ---------------------------------------------------------------------
# 1. a trigger on pgque.tick (real PgQue: a table the ticker writes)
# ---------------------------------------------------------------------
$node->safe_psql('app', q{
set role admin1;
create function public.pwn_trg() returns trigger language plpgsql as $$
begin
  perform public.pwn();
  return null;
end $$;
create trigger zz_pwn after insert on pgque.tick for each statement execute function public.pwn_trg();
});
$node->safe_psql('app', q{select pgque.send('qv', 'v2')});
$gained_nothing->(
	q{select state = 'untrusted pgque' from pgque_worker.status() where kind = 'ticker' and datname = 'app'},
	'a trigger of another role on a PgQue table refuses PgQue');
like($node->safe_psql('app',
		q{select last_error from pgque_worker.status() where kind = 'ticker' and datname = 'app'}),
	qr/has trigger zz_pwn/, 'status() says which trigger');
# undone (by PgQue's owner: only a table's owner may drop its triggers,
# though TRIGGER lets others create them): served again, v2 once
$node->safe_psql('app', q{drop trigger zz_pwn on pgque.tick});
wait_until($node, 'app', q{select count(*) from got where payload = 'v2'}, '1',
	'v2, once the trigger is gone');

# ---------------------------------------------------------------------
# 2. the queue's event tables redirected to views of admin1
# ---------------------------------------------------------------------
# two events ticked into a batch while the handler is off
$node->safe_psql('app', q{
set role tenant;
select pgque_worker.register_handler('qv', 'v', 'hv(pgque.message)', enabled => false);
});
my $ticks0 = $node->safe_psql('app', q{select count(*) from pgque.tick t join pgque.queue q on q.queue_id = t.tick_queue where q.queue_name = 'qv'});
$node->safe_psql('app', q{select pgque.send('qv', p) from unnest(array['v3', 'v4']) p});
wait_until($node, 'app',
	qq{select count(*) > $ticks0 from pgque.tick t join pgque.queue q on q.queue_id = t.tick_queue where q.queue_name = 'qv'},
	't', 'the tick of v3 and v4');
my ($pfx, $ntables, $cur) = split /\|/, $node->safe_psql('app',
	q{select queue_data_pfx, queue_ntables, queue_cur_table from pgque.queue where queue_name = 'qv'});
# views shaped like the event tables, each calling a function of admin1's
# (made by the superuser here for brevity, then given to admin1)
$node->safe_psql('app', qq{
create function public.evilrows() returns setof ${pfx}_$cur language plpgsql as \$\$
begin
  perform public.pwn();
  return;
end \$\$;
alter function public.evilrows() owner to admin1;
create function public.imm_probe(int) returns boolean language plpgsql immutable as \$\$
begin
  raise exception 'imm_probe ran as %', current_user;
end \$\$;
alter function public.imm_probe(int) owner to admin1;
});
# ... and an IMMUTABLE one in their quals, which the planner folds (found
# by a review: checked only at executor start, such a function ran as
# PgQue's owner and put what it read in last_error)
for my $i (0 .. $ntables - 1)
{
	$node->safe_psql('app', qq{
create view public.evil_$i as select * from public.evilrows() where public.imm_probe(1);
alter view public.evil_$i owner to admin1;
});
}
# the redirect: admin1 may UPDATE pgque.queue in real PgQue; the fixture's
# pgque.queue is a view over PgQ's table, so there the superuser does it
my ($ret) = $node->psql('app',
	q{set role admin1; update pgque.queue set queue_data_pfx = 'public.evil' where queue_name = 'qv'});
my $by_admin = $ret == 0;
$node->safe_psql('app', q{update pgq.queue set queue_data_pfx = 'public.evil' where queue_name = 'qv'})
  unless $by_admin;
note($by_admin ? 'redirected by admin1' : 'redirected by the superuser (the fixture)');
$node->safe_psql('app', q{
set role tenant;
select pgque_worker.register_handler('qv', 'v', 'hv(pgque.message)', enabled => true);
});
$gained_nothing->(
	q{select last_error ~ 'would read relation "evil_' from pgque_worker.handler_stats where queue_name = 'qv'},
	"the dispatcher refusing to read admin1's views as PgQue's owner");
is($node->safe_psql('app', q{select count(*) from pgque_worker.handler_stats where last_error ~ 'imm_probe ran'}), '0',
	'  before the planner could fold their IMMUTABLE function');
is($node->safe_psql('app', q{select count(*) from got where payload in ('v3', 'v4')}), '0',
	'nothing delivered from the redirected storage');
# undone: v3 and v4 delivered once
if ($by_admin)
{
	$node->safe_psql('app',
		qq{set role admin1; update pgque.queue set queue_data_pfx = '$pfx' where queue_name = 'qv'});
}
else
{
	$node->safe_psql('app', qq{update pgq.queue set queue_data_pfx = '$pfx' where queue_name = 'qv'});
}
wait_until($node, 'app', q{select count(*) from got where payload in ('v3', 'v4')}, '2',
	'v3 and v4, once the storage names are PgQue\'s again');
is($node->safe_psql('app', q{select count(*) from (select payload from got group by 1 having count(*) > 1) d}),
	'0', 'every message once');

# ---------------------------------------------------------------------
# 2b. a queue's rotation redirected to tables of admin1 with a TRUNCATE
# trigger (LOCK and TRUNCATE are utility statements: no executor check)
# ---------------------------------------------------------------------
$node->safe_psql('app', q{
select pgque.create_queue('qr');
set role admin1;
create table public.t_0 (x int);
create table public.t_1 (x int);
create table public.t_2 (x int);
create trigger zz before truncate on public.t_0 for each statement execute function public.pwn_trg();
create trigger zz before truncate on public.t_1 for each statement execute function public.pwn_trg();
create trigger zz before truncate on public.t_2 for each statement execute function public.pwn_trg();
});
my ($qr_pfx, $qr_period) = split /\|/, $node->safe_psql('app',
	q{select queue_data_pfx, queue_rotation_period from pgque.queue where queue_name = 'qr'});
my $rotate = q{set queue_data_pfx = 'public.t', queue_rotation_period = '1 second',
  queue_switch_time = now() - interval '1 hour',
  queue_switch_step2 = coalesce(queue_switch_step2, queue_switch_step1) where queue_name = 'qr'};
($ret) = $node->psql('app', "set role admin1; update pgque.queue $rotate");
$node->safe_psql('app', "update pgq.queue $rotate") unless $ret == 0;
$gained_nothing->(
	q{select last_error ~ 'would read relation "t_' from pgque_worker.status() where kind = 'ticker' and datname = 'app'},
	"the ticker's maintenance refusing to lock and truncate admin1's table");
# undone: the ticker's maintenance works again
my $restore = qq{set queue_data_pfx = '$qr_pfx', queue_rotation_period = '$qr_period' where queue_name = 'qr'};
($ret) = $node->psql('app', "set role admin1; update pgque.queue $restore");
$node->safe_psql('app', "update pgq.queue $restore") unless $ret == 0;
my $maint0 = $node->safe_psql('app', q{select maint_runs from pgque_worker.status() where kind = 'ticker' and datname = 'app'});
wait_until($node, 'app',
	qq{select maint_runs > $maint0 from pgque_worker.status() where kind = 'ticker' and datname = 'app'},
	't', "the ticker's maintenance, once the queue's storage is PgQue's again");

# ---------------------------------------------------------------------
# 3. a superuser's handler whose function another role can replace
# ---------------------------------------------------------------------
# registering a function of another role as a superuser's handler is refused
$node->safe_psql('app', q{
select pgque.create_queue('qs');
select pgque.set_queue_config('qs', 'ticker_max_count', '1');
create function public.hs_admin(m pgque.message) returns void language sql as 'select';
alter function public.hs_admin(pgque.message) owner to admin1;
});
my ($r3, $o3, $e3) = $node->psql('app',
	q{select pgque_worker.register_handler('qs', 's', 'public.hs_admin(pgque.message)')});
like($e3, qr/belongs to role admin1, who could replace it and run code as role/,
	"a superuser may not register admin1's function as its handler");
# one of its own, given to admin1 later and replaced: never run as the superuser
$node->safe_psql('app', q{
create function public.hs(m pgque.message) returns void language plpgsql as $$
begin insert into public.got values (m.payload); end $$;
select pgque_worker.register_handler('qs', 's', 'public.hs(pgque.message)');
select pgque.send('qs', 's1');
});
wait_until($node, 'app', q{select count(*) from got where payload = 's1'}, '1', "the superuser's handler");
$node->safe_psql('app', q{alter function public.hs(pgque.message) owner to admin1});
$node->safe_psql('app', q{
set role admin1;
create or replace function public.hs(m pgque.message) returns void language plpgsql as $$
begin
  perform public.pwn();
end $$;
});
$node->safe_psql('app', q{select pgque.send('qs', 's2')});
$gained_nothing->(
	q{select last_error ~ 'belongs to role "admin1", who could replace it' from pgque_worker.handler_stats where queue_name = 'qs'},
	'the dispatcher refusing a handler whose function admin1 owns');

# ---------------------------------------------------------------------
# 4. and 5. the same, committed while a PgQue call of the ticker waits
# for a lock admin1 holds: the trust check ran when the call began, before
# the objects existed (found by a review). 4: the trigger itself; 5: a
# function pgque.nextval(text), which PgQue's ticker, re-planned after the
# lock wait (a foreign key to pgque.tick, which REFERENCES allows, holds
# the lock and invalidates its plans), resolves instead of
# pg_catalog.nextval(regclass). Only with the real PgQue: the
# fixture's pgque.tick is a view over PgQ's table, and PgQ's code resolves
# names in its own schema.
# ---------------------------------------------------------------------
my $tick_is_table = $node->safe_psql('app',
	q{select relkind = 'r' from pg_class where oid = 'pgque.tick'::regclass}) eq 't';
SKIP:
{
	skip "the fixture's pgque.tick is a view: no lock of it holds up the ticker", 6
	  unless $tick_is_table;
	my $race = sub {
		my ($what, $ddl, $refused, $undo) = @_;
		my $bg = $node->background_psql('app');
		$bg->query_safe('set role admin1');
		$bg->query_safe('begin');
		$bg->query_safe($ddl);
		$node->safe_psql('app', qq{select pgque.send('qv', '$what')});
		wait_until($node, 'app',
			q{select count(*) from pg_stat_activity where backend_type = 'pgque_worker ticker'
				and datname = 'app' and wait_event_type = 'Lock'},
			'1', "$what: the ticker's call waits for admin1's lock");
		$bg->query_safe('commit');
		$bg->quit;
		$gained_nothing->($refused, "$what, committed during the wait");
		$node->safe_psql('app', $undo);
		wait_until($node, 'app', qq{select count(*) from got where payload = '$what'}, '1',
			"$what delivered once undone");
	};
	$node->safe_psql('app', q{
	set role tenant;
	select pgque_worker.register_handler('qv', 'v', 'hv(pgque.message)', enabled => true);
	});
	$race->('race-trigger',
		q{create trigger zz_race after insert on pgque.tick for each statement execute function public.pwn_trg()},
		q{select last_error ~ 'zz_race' or exists (select from pwned where who <> 'admin1') from pgque_worker.status() where kind = 'ticker' and datname = 'app'},
		q{drop trigger zz_race on pgque.tick});
	like($node->safe_psql('app', q{select last_error from pgque_worker.status() where kind = 'ticker' and datname = 'app'}),
		qr/zz_race/, '  the error names the trigger');
	$race->('race-function',
		q{create function pgque.nextval(text) returns bigint language plpgsql as $$
		  begin perform public.pwn(); return pg_catalog.nextval($1::regclass); end $$;
		  create table public.fk_hold (q int4, t int8, foreign key (q, t) references pgque.tick (tick_queue, tick_id))},
		q{select last_error ~ 'nextval' or exists (select from pwned where who <> 'admin1') from pgque_worker.status() where kind = 'ticker' and datname = 'app'},
		q{drop function pgque.nextval(text); drop table public.fk_hold});
	like($node->safe_psql('app', q{select last_error from pgque_worker.status() where kind = 'ticker' and datname = 'app'}),
		qr/nextval\(text\)/, '  the error names the function');
}

$node->stop;
done_testing();
