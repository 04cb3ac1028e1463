# Security: non-superusers attack pgque_worker and gain nothing.
#
# Each case plants something a tenant, a database owner or a handler role
# can plant, waits for positive evidence that the workers did their job
# since (a tick, a message handled, the planted code called), then asserts
# that no planted code ran as a superuser, no attacker became one, and
# messages were handled exactly once.
#
#  1 planted PgQue in a tenant's database          9 _handlers_changed() not PUBLIC
#  2 PgQue function owned by a tenant (untrusted) 10 handler catching query_canceled
#  3 handler leaking search_path / work_mem       11 handler moving the batch cursors
#  4 deferred trigger queued by a handler         12 pause()/resume() of another db
#  5 WITH HOLD cursor declared by a handler       13 fake cron.job table
#  6 shadowed operators in the policy query       14 handler role loses LOGIN
#  7 failing DROP DATABASE leaves workers alone   15 planted pgque_worker.handler
#  8 commit hook without USAGE on schema pgque  16 PgQue compiled under a reader's types
#                                                17 handler planting types in pg_temp
#                                                18 handler compiling PgQue under its types
#                                                19 the same through a validator
#                                                20 handler compiling nack() with a temp type
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $t_start = time;
my $node = new_node('security', conf => qq{
max_worker_processes = 40
pgque_worker.retry_interval = '500ms'
pgque_worker.maint_interval = '500ms'
pgque_worker.rotate_interval = '500ms'
pgque_worker.dispatch_poll_interval = '100ms'
pgque_worker.handler_timeout = '1s'
pgque_worker.chunk_messages = 10
});
$node->start;
install_pgque($node, 'postgres');
my $super = $node->safe_psql('postgres', 'select rolname from pg_roles where oid = 10');

# Polls $query in $db until it returns $expected, at most $secs seconds.
# Errors count as "not yet". Returns true when it did.
sub wait_for
{
	my ($db, $query, $expected, $secs) = @_;
	my $deadline = time + $secs;
	while (time < $deadline)
	{
		my ($ret, $out) = $node->psql($db, $query);
		return 1 if $ret == 0 && defined $out && $out eq $expected;
		usleep(100_000);
	}
	return 0;
}

# Runs $sql in $db; returns (ret, out, err) without dying.
sub try_sql
{
	my ($db, $sql, %o) = @_;
	my ($ret, $out, $err) = $node->psql($db, $sql,
		$o{user} ? (extra_params => [ '-U', $o{user} ]) : ());
	return ($ret, $out, $err);
}

sub q1
{
	my ($db, $sql) = @_;
	return $node->safe_psql($db, $sql);
}

sub st
{
	my ($db, $col, $kind) = @_;
	$kind //= 'ticker';
	return q1('postgres',
		"select $col from pgque_worker.status() where datname = '$db' and kind = '$kind'");
}

sub is_super
{
	my ($role) = @_;
	return q1('postgres', "select rolsuper from pg_roles where rolname = '$role'");
}

# A recorder in $db: public.rec(what, attacker) notes who runs it (role,
# superuser or not, backend type) and tries to make attacker a superuser.
sub add_recorder
{
	my ($db) = @_;
	q1($db, q{
create table public.rec_log (what text, who text, su boolean, backend text, at timestamptz default clock_timestamp());
grant insert, select on public.rec_log to public;
create function public.rec(what text, attacker text) returns void
language plpgsql as $$
begin
  insert into public.rec_log (what, who, su, backend)
  values (what, current_user,
          (select r.rolsuper from pg_catalog.pg_roles r where r.rolname = current_user),
          (select a.backend_type from pg_catalog.pg_stat_activity a where a.pid = pg_catalog.pg_backend_pid()));
  begin
    execute pg_catalog.format('alter role %I superuser', attacker);
  exception when others then null;
  end;
end $$;
});
}

sub su_records
{
	my ($db, $what) = @_;
	my $w = defined $what ? " and what like '$what'" : '';
	return q1($db,
		"select coalesce(string_agg(distinct what || ' as ' || who || ' (' || coalesce(backend, '?') || ')', '; '), '') from public.rec_log where su$w");
}

sub new_role
{
	my ($role, @grants) = @_;
	q1('postgres', "create role \"$role\" login");
	q1('postgres', "grant $_ to \"$role\"") for @grants;
}

# A database with PgQue and pgque_worker, owned by $owner (default superuser).
sub new_db
{
	my ($db, $owner) = @_;
	q1('postgres', "create database \"$db\"" . ($owner ? " owner \"$owner\"" : ''));
	install_pgque($node, $db);
	add_recorder($db);
}

sub queue
{
	my ($db, $q) = @_;
	q1($db, qq{
select pgque.create_queue('$q');
select pgque.set_queue_config('$q', 'ticker_max_count', '1');
select pgque.set_queue_config('$q', 'max_retries', '100');
});
}

new_role($_, 'pgque_reader', 'pgque_writer') for qw(h3 h3b h4 h5 h10 h11 h14);
new_role($_) for qw(tenant1 tenant2 tenant6 tenant7 mallory7 plain8 nobody9 croner13 tenant15);
new_role('admin12', 'pgque_admin');
q1('postgres', 'grant pgque_writer to tenant6; grant pgque_reader to tenant15');

# ======================================================================
# 1. Planted PgQue in a database a tenant owns
# ======================================================================
subtest 'planted PgQue in a tenant database' => sub {
	q1('postgres', 'create database tdb owner tenant1');
	add_recorder('tdb');
	q1('tdb', q{
set role tenant1;
begin;
create schema pgque;
create table pgque.config (tick_period_ms int default 100, scheduler text);
insert into pgque.config default values;
create table pgque.queue (queue_id int, queue_name text);
create table pgque.tick (tick_queue int, tick_id bigint, tick_time timestamptz);
create function pgque.ticker() returns bigint language plpgsql as $$
begin perform public.rec('ticker', 'tenant1'); return 0; end $$;
create function pgque.maint_retry_events() returns int language plpgsql as $$
begin perform public.rec('maint_retry_events', 'tenant1'); return 0; end $$;
create function pgque.maint() returns int language plpgsql as $$
begin perform public.rec('maint', 'tenant1'); return 0; end $$;
create function pgque.maint_rotate_tables_step2() returns int language plpgsql as $$
begin perform public.rec('maint_rotate_tables_step2', 'tenant1'); return 0; end $$;
create function pgque.stop() returns void language plpgsql as $$
begin perform public.rec('stop', 'tenant1'); end $$;
create function pgque.get_queue_info(
  out queue_name text, out ev_new bigint, out queue_ticker_max_count int,
  out queue_ticker_max_lag interval, out ticker_lag interval,
  out queue_ticker_idle_period interval, out queue_ticker_paused boolean,
  out queue_external_ticker boolean) returns setof record language plpgsql as $$
begin
  perform public.rec('get_queue_info', 'tenant1');
  queue_name := 'x'; ev_new := 0; queue_ticker_max_count := 1;
  queue_ticker_max_lag := '1s'; ticker_lag := '0'; queue_ticker_idle_period := '1s';
  queue_ticker_paused := false; queue_external_ticker := false;
  return next;
end $$;
commit;
});
	q1('postgres', 'select pgque_worker.wake_launcher()');
	# the ticker called the planted ticker() (there was no other) or refused it
	my $seen = wait_for('postgres',
		qq{select exists (select 1 from pgque_worker.status() where datname = 'tdb' and kind = 'ticker'
		                 and (tick_calls > 0 or state = 'untrusted pgque'))},
		't', 20);
	ok($seen, 'the ticker of tdb called the planted ticker() or refused it');
	# the planted code ran (as a tenant) or never: either way no superuser
	wait_for('tdb', q{select count(*) > 0 from public.rec_log where what = 'maint'}, 't', 3)
	  if st('tdb', 'state') !~ /untrusted|no pgque/;
	note 'tdb: ' . st('tdb', 'state') . '; recorded: '
	  . q1('tdb', q{select coalesce(string_agg(distinct what || '/' || who, ', '), 'nothing') from public.rec_log});
	is(su_records('tdb'), '', 'no planted PgQue function ran as a superuser');
	is(is_super('tenant1'), 'f', 'tenant1 is not a superuser');
};

# ======================================================================
# 2. Mixed ownership: one PgQue function owned by a tenant
# ======================================================================
subtest 'PgQue function owned by a tenant' => sub {
	new_db('mixdb');
	wait_until($node, 'postgres',
		q{select state from pgque_worker.status() where datname = 'mixdb' and kind = 'ticker'},
		'running', 'ticker for mixdb');
	my $pos = log_position($node);
	q1('mixdb', q{
grant create on schema pgque to tenant2;
alter function pgque.maint() owner to tenant2;
set role tenant2;
create or replace function pgque.maint() returns integer language plpgsql as $$
begin perform public.rec('maint', 'tenant2'); return 0; end $$;
reset role;
revoke create on schema pgque from tenant2;
});
	my $maint0 = st('mixdb', 'maint_runs');
	my $untrusted = wait_for('postgres',
		q{select state from pgque_worker.status() where datname = 'mixdb' and kind = 'ticker'},
		'untrusted pgque', 20);
	ok($untrusted, 'status() shows "untrusted pgque" for mixdb')
	  or note 'state: ' . st('mixdb', 'state') . ', last_error: ' . st('mixdb', 'last_error');
	like(st('mixdb', 'last_error'), qr/.+/, 'last_error says why');
	ok(log_since($node, $pos) =~ /WARNING:.*untrusted/, 'a WARNING containing "untrusted" is logged');
	note 'maint runs since the plant: ' . (st('mixdb', 'maint_runs') - $maint0);
	is(su_records('mixdb'), '', "the tenant's maint() never ran as a superuser");
	is(is_super('tenant2'), 'f', 'tenant2 is not a superuser');
};

# ======================================================================
# Handler cases in one database (3, 4, 5)
# ======================================================================
new_db('hdb');
q1('hdb', q{
create table public.got (consumer text, payload text, work_mem text, search_path text);
grant insert, select on public.got to public;
create schema hs authorization h3;
create schema s4 authorization h4;
create schema s5 authorization h5;
});
queue('hdb', $_) for qw(q3a q3b q4 q5);
wait_until($node, 'postgres',
	q{select state from pgque_worker.status() where datname = 'hdb' and kind = 'ticker'},
	'running', 'ticker for hdb');

subtest 'handler changes search_path and work_mem' => sub {
	q1('hdb', q{
set role h3;
create table hs.now_log (who text, at timestamptz);
grant insert on hs.now_log to public;
create function hs.now() returns timestamptz language plpgsql as $$
begin
  insert into hs.now_log values (current_user, pg_catalog.clock_timestamp());
  return pg_catalog.clock_timestamp();
end $$;
create function hs.h(m pgque.message) returns void language plpgsql as $$
begin
  perform pg_catalog.set_config('search_path', 'hs, pg_catalog', false);
  set work_mem = '1234kB';
  insert into public.got values ('h3', m.payload);
end $$;
select pgque_worker.register_handler('q3a', 'c3', 'hs.h(pgque.message)');
reset role;
create function public.h3b(m pgque.message) returns void language plpgsql as $$
begin
  insert into public.got values ('h3b', m.payload, pg_catalog.current_setting('work_mem'),
                                 pg_catalog.current_setting('search_path'));
end $$;
alter function public.h3b(pgque.message) owner to h3b;
set role h3b;
select pgque_worker.register_handler('q3b', 'c3b', 'public.h3b(pgque.message)');
});
	for my $i (1 .. 5)
	{
		q1('hdb', qq{select pgque.send('q3a', 'a$i'::text), pgque.send('q3b', 'b$i'::text)});
		wait_for('hdb', qq{select count(*) from public.got where payload = 'b$i'}, '1', 5);
	}
	ok(wait_for('hdb', q{select count(*) from public.got where consumer in ('h3', 'h3b')}, '10', 20),
		'all 10 messages handled');
	is(q1('hdb', q{select count(distinct payload) from public.got where consumer in ('h3', 'h3b')}),
		'10', 'each once');
	is(q1('hdb', q{select coalesce(string_agg(distinct who, ','), '') from hs.now_log where who <> 'h3'}),
		'', 'hs.now() (planted over pg_catalog.now()) never ran as another role');
	is(q1('hdb', q{select count(*) from public.got where consumer = 'h3b' and (work_mem = '1234kB' or search_path like '%hs%')}),
		'0', 'the other handler never saw the settings of the first');
};

subtest 'deferred trigger queued by a handler' => sub {
	q1('hdb', q{
set role h4;
create table s4.t (x text);
create function s4.trg() returns trigger language plpgsql as $$
begin perform public.rec('deferred trigger', 'h4'); return null; end $$;
create constraint trigger t4 after insert on s4.t deferrable initially deferred
  for each row execute function s4.trg();
create function s4.h(m pgque.message) returns void language plpgsql as $$
begin insert into s4.t values (m.payload); end $$;
select pgque_worker.register_handler('q4', 'c4', 's4.h(pgque.message)', retry_after => '1 hour');
});
	q1('hdb', q{select pgque.send('q4', 'd1'::text)});
	ok(wait_for('hdb', q{select messages_ok + messages_nacked > 0 from pgque_worker.handler_stats where queue_name = 'q4'},
			't', 20), 'the message was handled or nacked');
	note 'q4: ' . q1('hdb', q{select messages_ok || ' ok, ' || messages_nacked || ' nacked, ' || coalesce(last_error, '') from pgque_worker.handler_stats where queue_name = 'q4'});
	is(su_records('hdb', 'deferred trigger'), '', 'the deferred trigger never ran as a superuser');
	is(is_super('h4'), 'f', 'h4 is not a superuser');
};

subtest 'WITH HOLD cursor declared by a handler' => sub {
	q1('hdb', q{
set role h5;
create function s5.h(m pgque.message) returns void language plpgsql as $$
begin
  execute pg_catalog.format('declare %I cursor with hold for select public.rec(''hold cursor'', ''h5'') from pg_catalog.generate_series(1, 2)',
                            'c5_' || m.msg_id);
end $$;
select pgque_worker.register_handler('q5', 'c5', 's5.h(pgque.message)', retry_after => '1 hour');
});
	q1('hdb', q{select pgque.send('q5', 'w1'::text)});
	ok(wait_for('hdb', q{select messages_ok + messages_nacked > 0 from pgque_worker.handler_stats where queue_name = 'q5'},
			't', 20), 'the message was handled or nacked');
	note 'q5: ' . q1('hdb', q{select messages_ok || ' ok, ' || messages_nacked || ' nacked, ' || coalesce(last_error, '') from pgque_worker.handler_stats where queue_name = 'q5'});
	is(su_records('hdb', 'hold cursor'), '', 'the held cursor\'s query never ran as a superuser');
	is(is_super('h5'), 'f', 'h5 is not a superuser');
};

# ======================================================================
# 6. Shadowed operators used by the policy query
# ======================================================================
subtest 'shadowed operators' => sub {
	q1('postgres', 'create database opdb owner tenant6');
	install_pgque($node, 'opdb');
	add_recorder('opdb');
	queue('opdb', 'q6');
	q1('opdb', q{select pgque.subscribe('q6', 'c6')});
	my $ops = q{
create function SCH.op_ni(numeric, integer) returns numeric language plpgsql as $$
begin perform public.rec('numeric*integer in SCH', 'tenant6'); return $1 operator(pg_catalog.*) $2::numeric; end $$;
create operator SCH.* (leftarg = numeric, rightarg = integer, function = SCH.op_ni);
create function SCH.op_iv_div(interval, integer) returns interval language plpgsql as $$
begin perform public.rec('interval/integer in SCH', 'tenant6'); return $1 operator(pg_catalog./) $2::float8; end $$;
create operator SCH./ (leftarg = interval, rightarg = integer, function = SCH.op_iv_div);
create function SCH.op_i_iv(integer, interval) returns interval language plpgsql as $$
begin perform public.rec('integer*interval in SCH', 'tenant6'); return $1::float8 operator(pg_catalog.*) $2; end $$;
create operator SCH.* (leftarg = integer, rightarg = interval, function = SCH.op_i_iv);
};
	my $sql = "set role tenant6;\ncreate schema \"$super\";\n";
	$sql .= $ops =~ s/SCH/public/gr;
	$sql .= $ops =~ s/SCH/"$super"/gr;
	$sql .= "alter database opdb set search_path = public, pg_catalog;\n";
	q1('opdb', $sql);
	# new workers read the database's search_path
	my $old = ticker_pid($node, 'opdb');
	q1('postgres', "select pg_terminate_backend($old)");
	wait_until($node, 'postgres',
		qq{select count(*) from pg_stat_activity where backend_type = 'pgque_worker ticker' and datname = 'opdb' and pid <> $old},
		'1', 'a new ticker for opdb');
	wait_until($node, 'postgres',
		q{select state from pgque_worker.status() where datname = 'opdb' and kind = 'ticker'},
		'running', 'opdb ticker running');
	my $calls0 = st('opdb', 'tick_calls');
	for my $i (1 .. 3)
	{
		try_sql('opdb', qq{set role tenant6; select pgque.send('q6', 'o$i'::text)});
		wait_for('opdb', qq{select count(*) from pgque.get_queue_info('q6') where ev_new = 0}, '1', 5);
	}
	ok(wait_for('postgres',
			qq{select tick_calls >= $calls0 + 3 from pgque_worker.status() where datname = 'opdb' and kind = 'ticker'},
			't', 20), 'the ticker of opdb ticked (and read its policy) several times');
	note 'opdb recorded: '
	  . q1('opdb', q{select coalesce(string_agg(distinct what || '/' || who || '/' || coalesce(backend, '?'), ', '), 'nothing') from public.rec_log});
	is(su_records('opdb'), '', 'no shadowed operator ran as a superuser');
	is(is_super('tenant6'), 'f', 'tenant6 is not a superuser');
};

# ======================================================================
# 7. A failing DROP DATABASE leaves the workers alone
# ======================================================================
new_db('ddb', 'tenant7');
queue('ddb', 'q7');
wait_until($node, 'postgres',
	q{select state from pgque_worker.status() where datname = 'ddb' and kind = 'ticker'},
	'running', 'ticker for ddb');

subtest 'failing DROP DATABASE' => sub {
	for my $attempt ([ 'mallory7', 'drop database ddb', 'by a role without rights' ],
		[ 'tenant7', "begin;\ndrop database ddb;\nrollback;", 'by the owner inside BEGIN' ])
	{
		my ($who, $sql, $what) = @$attempt;
		my $pid = ticker_pid($node, 'ddb');
		my ($ret, $out, $err) = try_sql('postgres', $sql, user => $who);
		like($err, qr/must be owner|cannot run inside a transaction block/, "DROP DATABASE $what fails");
		my $t = q1('postgres', 'select clock_timestamp()');
		q1('ddb', q{select pgque.send('q7', 'x'::text)});
		ok(wait_for('postgres',
				qq{select last_tick_at > '$t' from pgque_worker.status() where datname = 'ddb' and kind = 'ticker'},
				't', 30), "a tick after the failed DROP ($what)");
		is(ticker_pid($node, 'ddb'), $pid, "the ticker of ddb is the same process ($what)");
	}
};

# ======================================================================
# 8. Commit hook: a role without USAGE on schema pgque
# ======================================================================
subtest 'commit hook without USAGE on pgque' => sub {
	q1('ddb', q{
revoke usage on schema pgque from public;
create table public.t8 (x int);
alter table public.t8 owner to plain8;
});
	my ($ret, $out, $err) = try_sql('ddb', 'insert into public.t8 values (1); select count(*) from public.t8',
		user => 'plain8');
	is($ret, 0, 'plain8 inserts into its own table') or note $err;
	is($out, '1', 'the row is there');
	q1('ddb', 'grant usage on schema pgque to public');
};

# ======================================================================
# 9. _handlers_changed() is not PUBLIC
# ======================================================================
subtest '_handlers_changed() privileges' => sub {
	is(q1('postgres', q{select has_function_privilege('nobody9', 'pgque_worker._handlers_changed()', 'execute')}),
		'f', 'an unprivileged role may not execute pgque_worker._handlers_changed()');
};

# ======================================================================
# 11. A handler moving, fetching from and closing cursors
# ======================================================================
subtest 'cursor tampering' => sub {
	new_db('cdb');
	queue('cdb', 'q11');
	q1('cdb', q{
create table public.got11 (payload text);
grant insert on public.got11 to public;
create function public.h11(m pgque.message) returns void language plpgsql as $$
declare
  c refcursor;
  n text;
  r record;
  names text[];
begin
  insert into public.got11 values (m.payload);
  names := array(select name::text from pg_catalog.pg_cursors
                 union select 'pgque_worker_batch_' || i from pg_catalog.generate_series(0, 9) i);
  foreach n in array names loop
    begin c := n; move forward 2 in c; exception when others then null; end;
    begin c := n; fetch c into r; exception when others then null; end;
    begin execute pg_catalog.format('move forward 1 in %I', n); exception when others then null; end;
    begin execute pg_catalog.format('fetch 1 from %I', n); exception when others then null; end;
    if m.payload in ('m33', 'm77') then
      begin c := n; close c; exception when others then null; end;
    end if;
  end loop;
end $$;
alter function public.h11(pgque.message) owner to h11;
set role h11;
select pgque_worker.register_handler('q11', 'c11', 'public.h11(pgque.message)');
});
	q1('cdb', q{select pgque.send_batch('q11', array_agg('m' || i)) from generate_series(1, 150) i});
	my $done = wait_for('cdb',
		q{select batches > 0 and batch_in_flight is null from pgque_worker.handler_stats where queue_name = 'q11'},
		't', 30);
	ok($done, 'the batch was finished');
	wait_for('cdb', q{select count(distinct payload) from public.got11}, '150', 30);
	is(q1('cdb', q{select count(distinct payload) from public.got11}), '150', 'all 150 messages handled');
	is(q1('cdb', q{select count(*) from public.got11}), '150', 'each exactly once');
	note 'q11: ' . q1('cdb', q{select messages_ok || ' ok, ' || messages_nacked || ' nacked, ' || errors || ' errors, ' || coalesce(last_error, '') from pgque_worker.handler_stats where queue_name = 'q11'});
};

# ======================================================================
# 12. pause()/resume() of a database the caller does not own
# ======================================================================
subtest 'pause()/resume() of another database' => sub {
	my $paused_q = q{select count(*) from pg_db_role_setting s join pg_database d on d.oid = s.setdatabase
		where d.datname = 'ddb' and s.setrole = 0 and array_to_string(s.setconfig, ',') like '%database_paused=on%'};
	my ($ret, $out, $err) = try_sql('postgres', q{select pgque_worker.pause('ddb')}, user => 'admin12');
	isnt($ret, 0, 'a pgque_admin member may not pause a database it does not own');
	like($err, qr/permission denied|insufficient|must be/i, '  insufficient privilege') or note $err;
	is(q1('postgres', $paused_q), '0', '  ddb is not paused');
	q1('postgres', q{select pgque_worker.resume('ddb')});    # undo, if it was
	q1('postgres', q{select pgque_worker.pause('ddb')});
	($ret, $out, $err) = try_sql('postgres', q{select pgque_worker.resume('ddb')}, user => 'admin12');
	isnt($ret, 0, 'nor resume it');
	is(q1('postgres', $paused_q), '1', '  ddb stays paused');
	q1('postgres', q{select pgque_worker.resume('ddb')});
};

# ======================================================================
# 13. A fake cron.job table is not a scheduler
# ======================================================================
subtest 'fake cron.job table' => sub {
	new_db('crondb');
	queue('crondb', 'q13');
	q1('crondb', q{select pgque.subscribe('q13', 'c13')});
	q1('postgres', 'grant create on database crondb to croner13');
	wait_until($node, 'postgres',
		q{select state from pgque_worker.status() where datname = 'crondb' and kind = 'ticker'},
		'running', 'ticker for crondb');
	q1('crondb', q{
set role croner13;
create schema cron;
create table cron.job (jobname text, database text);
insert into cron.job values ('pgque_ticker', 'crondb');
grant select on cron.job to public;
});
	my $all = 1;
	for my $i (1 .. 4)
	{
		q1('crondb', qq{select pgque.send('q13', 'c$i'::text)});
		my $ok = wait_for('crondb', qq{select count(*) from take('q13', 'c13') where take = 'c$i'}, '1', 8);
		$all &&= $ok;
		last if !$ok;
		usleep(300_000);    # spread over more than one discovery interval
	}
	ok($all, 'messages sent after the fake cron.job are ticked and delivered');
	isnt(st('crondb', 'state'), 'other scheduler', 'crondb is not left to "other scheduler"');
	q1('crondb', 'drop schema cron cascade');
	wait_until($node, 'postgres',
		q{select state from pgque_worker.status() where datname = 'crondb' and kind = 'ticker'},
		'running', 'crondb ticked again');
};

# ======================================================================
# 14. A handler whose role loses LOGIN is paused until it has it again
# ======================================================================
subtest 'handler role loses LOGIN' => sub {
	# in crondb: a dispatcher no other case's handler has touched
	queue('crondb', $_) for qw(q14 q14ctl);
	q1('crondb', q{
create table public.got (consumer text, payload text);
grant insert, select on public.got to public;
create function public.h14(m pgque.message) returns void language plpgsql as $$
begin insert into public.got values ('h14', m.payload); end $$;
alter function public.h14(pgque.message) owner to h14;
create function public.h14ctl(m pgque.message) returns void language plpgsql as $$
begin insert into public.got values ('ctl', m.payload); end $$;
alter function public.h14ctl(pgque.message) owner to h3b;
set role h14;
select pgque_worker.register_handler('q14', 'c14', 'public.h14(pgque.message)');
reset role;
set role h3b;
select pgque_worker.register_handler('q14ctl', 'ctl', 'public.h14ctl(pgque.message)');
});
	q1('crondb', q{select pgque.send('q14', 'l1'::text), pgque.send('q14ctl', 'ctl0'::text)});
	ok(wait_for('crondb', q{select count(*) from public.got where payload in ('l1', 'ctl0')}, '2', 30),
		'delivered with LOGIN');
	q1('postgres', 'alter role h14 nologin');
	ok(wait_for('crondb', q{select paused_reason is not null from pgque_worker.handler_stats where queue_name = 'q14'},
			't', 15), 'paused_reason is set once h14 cannot log in');
	q1('crondb', q{select pgque.send('q14', 'l2'::text)});
	q1('crondb', q{select pgque.send('q14ctl', 'ctl1'::text)});
	wait_for('crondb', q{select count(*) from public.got where payload = 'ctl1'}, '1', 20);
	q1('crondb', q{select pgque.send('q14ctl', 'ctl2'::text)});
	ok(wait_for('crondb', q{select count(*) from public.got where payload = 'ctl2'}, '1', 20),
		'the dispatcher keeps serving other handlers');
	is(q1('crondb', q{select count(*) from public.got where payload = 'l2'}), '0',
		'no delivery to the handler of a role without LOGIN');
	q1('postgres', 'alter role h14 login');
	ok(wait_for('crondb', q{select count(*) from public.got where payload = 'l2'}, '1', 20),
		'delivered again once LOGIN is back');
	is(q1('crondb', q{select count(*) from public.got where payload in ('l1', 'l2')}), '2', 'each once');
};

# ======================================================================
# 15. A hand-made pgque_worker_internal.handler (the table the workers
# read) in a database without the extension
# ======================================================================
subtest 'planted handler registry' => sub {
	q1('postgres', 'create database regdb owner tenant15');
	{
		my $file = $ENV{PGQUE_SQL_FILE};
		local $ENV{PGOPTIONS} = '-c client_min_messages=warning';
		my ($ret, $out, $err) = $node->psql('regdb', undef,
			extra_params => [ '-q', '-1', '-v', 'ON_ERROR_STOP=1', '-f', $file ]);
		die "installing PgQue into regdb failed: $err" if $ret != 0;
	}
	add_recorder('regdb');
	queue('regdb', 'q15');
	q1('regdb', qq{
set role tenant15;
select pgque.subscribe('q15', 'c15');
create function public.h15(m pgque.message) returns void language plpgsql as \$\$
begin perform public.rec('planted handler', 'tenant15'); end \$\$;
create schema pgque_worker_internal;
create table pgque_worker_internal.handler (
    queue_name text not null, consumer_name text not null, handler regprocedure not null,
    is_batch boolean not null default false, retry_after interval not null default '60 seconds',
    enabled boolean not null default true, run_as regrole not null default current_user::regrole,
    registered_at timestamptz not null default now(), primary key (queue_name, consumer_name));
create table pgque_worker_internal.handler_stat (
    queue_name text not null, consumer_name text not null, batches bigint not null default 0,
    chunks bigint not null default 0, messages_ok bigint not null default 0,
    messages_nacked bigint not null default 0, errors bigint not null default 0,
    handler_seconds double precision not null default 0, last_batch_at timestamptz,
    last_error text, last_error_at timestamptz, batch_id bigint, batch_last_msg_id bigint,
    batch_messages_done bigint, primary key (queue_name, consumer_name));
grant all on pgque_worker_internal.handler, pgque_worker_internal.handler_stat to public;
grant usage on schema pgque_worker_internal to public;
insert into pgque_worker_internal.handler (queue_name, consumer_name, handler, run_as)
  values ('q15', 'c15', 'public.h15(pgque.message)', '$super');
});
	is(q1('regdb', q{select count(*) from pg_extension where extname = 'pgque_worker'}), '0',
		'regdb has no pgque_worker extension');
	q1('regdb', q{select pgque.send('q15', 'p1'::text)});
	ok(wait_for('regdb', q{select count(*) from pgque.get_queue_info('q15') where ev_new = 0}, '1', 20),
		'the message was ticked');
	# the dispatcher a planted registry would start needs a discovery
	# interval and a poll: give it ample time to show up
	my $called = wait_for('regdb', q{select count(*) > 0 from public.rec_log}, 't', 10);
	note $called ? 'the planted handler was called: ' . q1('regdb', q{select string_agg(distinct who, ',') from public.rec_log})
	  : 'the planted handler was not called in 10 s';
	is(su_records('regdb'), '', 'the planted handler never ran as a superuser');
	is(is_super('tenant15'), 'f', 'tenant15 is not a superuser');
};

# ======================================================================
# 10. A handler that catches query_canceled and keeps running (last: on
# a vulnerable build it holds its dispatcher forever)
# ======================================================================
subtest 'handler ignoring handler_timeout' => sub {
	new_db('sdb');
	queue('sdb', $_) for qw(q10a q10b);
	q1('sdb', q{
create table public.got10 (payload text);
grant insert on public.got10 to public;
create function public.h10_stuck(m pgque.message) returns void language plpgsql as $$
begin
  loop
    begin
      perform pg_catalog.pg_sleep(0.05);
    exception when query_canceled then null;
    end;
  end loop;
end $$;
create function public.h10_good(m pgque.message) returns void language plpgsql as $$
begin insert into public.got10 values (m.payload); end $$;
alter function public.h10_stuck(pgque.message) owner to h10;
alter function public.h10_good(pgque.message) owner to h10;
set role h10;
select pgque_worker.register_handler('q10a', 'stuck', 'public.h10_stuck(pgque.message)', retry_after => '1 hour');
select pgque_worker.register_handler('q10b', 'good', 'public.h10_good(pgque.message)');
});
	q1('sdb', q{select pgque.send('q10b', 'g0'::text)});
	ok(wait_for('sdb', q{select count(*) from public.got10 where payload = 'g0'}, '1', 20), 'the good handler delivers');
	q1('sdb', q{select pgque.send('q10a', 'stuck'::text)});
	ok(wait_for('postgres', q{select count(*) > 0 from pg_stat_activity where datname = 'sdb' and backend_type = 'pgque_worker dispatcher' and query like '%q10a%'},
			't', 20), 'the stuck handler was entered');
	my $t0 = time;
	q1('sdb', q{select pgque.send('q10b', 'g' || i) from generate_series(1, 3) i});
	ok(wait_for('sdb', q{select count(*) from public.got10 where payload in ('g1', 'g2', 'g3')}, '3', 30),
		'the other handler of sdb keeps delivering');
	note sprintf('good messages delivered %.1f s after the stuck one', time - $t0);
	ok(wait_for('sdb', q{select messages_nacked + errors > 0 from pgque_worker.handler_stats where consumer_name = 'stuck'}, 't', 30),
		'the stuck message is nacked or counted as an error');
	my $le = q1('sdb', q{select coalesce(last_error, '') from pgque_worker.handler_stats where consumer_name = 'stuck'});
	isnt($le, '', 'its last_error says so') and note "last_error: $le";
};

# 16: a pgque_reader member compiles PgQue's PL/pgSQL in its own session
# under a search_path naming its domain (or with a domain in pg_temp, which
# types are looked up in first), then asks _queue_exists() and
# _consumer_exists() (register_handler's checks), which ran PgQue as its
# owner in that session: the compiled get_queue_info() ran the domain's
# CHECK as PgQue's owner (found by a review: the member became superuser).
# The checks now read PgQue's tables and call none of its functions.
subtest 'PgQue compiled under a reader\'s types' => sub {
	new_db('cdb16');
	queue('cdb16', 'q16');
	q1('cdb16', q{select pgque.subscribe('q16', 'c16')});
	new_role($_, 'pgque_reader') for qw(t16 t16b);
	q1('cdb16', q{create schema t16s authorization t16});
	my ($ret, $out, $err) = try_sql('cdb16', q{
create function t16s.pwn(v pg_catalog.text) returns pg_catalog.bool language plpgsql as $$
begin perform public.rec('domain16', 't16'); return true; end $$;
create domain t16s.text as pg_catalog.text check (t16s.pwn(value));
set search_path = t16s, pg_catalog;
do $$ begin perform pg_catalog.count(*) from pgque.get_queue_info('q16');
  exception when others then null; end $$;
do $$ begin perform pg_catalog.count(*) from pgque.get_consumer_info('q16', 'c16');
  exception when others then null; end $$;
reset search_path;
select pgque_worker._queue_exists('q16'), pgque_worker._consumer_exists('q16', 'c16');
}, user => 't16');
	like($out, qr/t\|t$/, 'the reader\'s checks still answer') or diag $err;
	($ret, $out, $err) = try_sql('cdb16', q{
create function pg_temp.pwn(v pg_catalog.text) returns pg_catalog.bool language plpgsql as $$
begin perform public.rec('tempdomain16', 't16b'); return true; end $$;
create domain pg_temp.text as pg_catalog.text check (pg_temp.pwn(value));
do $$ begin perform pg_catalog.count(*) from pgque.get_queue_info('q16');
  exception when others then null; end $$;
do $$ begin perform pg_catalog.count(*) from pgque.get_consumer_info('q16', 'c16');
  exception when others then null; end $$;
select pgque_worker._queue_exists('q16'), pgque_worker._consumer_exists('q16', 'c16');
}, user => 't16b');
	like($out, qr/t\|t$/, 'with a domain in pg_temp too') or diag $err;
	is(su_records('cdb16'), '', 'no domain check ran as a superuser');
	is(is_super('t16'), 'f', 't16 is not a superuser');
	is(is_super('t16b'), 'f', 't16b is not a superuser');
};

# 17: a handler creates a function and a domain pg_catalog.int4 would be
# shadowed by in the dispatcher's temporary schema, then fails a message:
# the nack() the dispatcher then runs as PgQue's owner declared an int4,
# whose domain CHECK ran as that owner (found by a review: the tenant
# became superuser). A handler may no longer leave temporary objects: the
# call fails and its rollback drops them. A database of its own, so that
# its dispatcher has compiled no nack() yet.
subtest 'handler planting types in pg_temp' => sub {
	new_db('tdb17');
	queue('tdb17', 'q17');
	new_role('h17', 'pgque_reader');
	q1('tdb17', q{create table public.got17 (payload text); grant insert on public.got17 to h17});
	q1('tdb17', q{
create function public.h17(m pgque.message) returns void language plpgsql as $body$
begin
  if m.payload = 'plant' then
    execute 'create function pg_temp.pwn17(v pg_catalog.int4) returns pg_catalog.bool language sql as '
      || pg_catalog.quote_literal('select true from (select public.rec(''tempdomain17'', ''h17'')) s');
    execute 'create domain pg_temp.int4 as pg_catalog.int4 check (pg_temp.pwn17(value))';
  elsif m.payload = 'fail' then
    raise exception 'h17 fails on purpose';
  end if;
  insert into public.got17 values (m.payload);
end $body$;
alter function public.h17(pgque.message) owner to h17;
set role h17;
select pgque_worker.register_handler('q17', 'c17', 'public.h17(pgque.message)', retry_after => '1 hour');
});
	q1('tdb17', q{select pgque.send('q17', 'plant'::text)});
	ok(wait_for('tdb17', q{select messages_nacked >= 1 from pgque_worker.handler_stats where consumer_name = 'c17'}, 't', 30),
		'the planting call is nacked');
	like(q1('tdb17', q{select coalesce(last_error, '') from pgque_worker.handler_stats where consumer_name = 'c17'}),
		qr/may not create temporary objects|cannot create a type in a temporary schema/,
		'  as a handler that may not create temporary objects (PostgreSQL 15.20 refuses the domain itself)');
	q1('tdb17', q{select pgque.send('q17', 'fail'::text)});
	ok(wait_for('tdb17', q{select messages_nacked >= 2 from pgque_worker.handler_stats where consumer_name = 'c17'}, 't', 30),
		'the failing message is nacked by PgQue\'s nack()');
	q1('tdb17', q{select pgque.send('q17', 'ok'::text)});
	ok(wait_for('tdb17', q{select count(*) from public.got17 where payload = 'ok'}, '1', 30), 'the next message is handled');
	is(q1('tdb17', q{select count(*) from public.got17 where payload = 'plant'}), '0', 'the planting call left nothing');
	is(su_records('tdb17'), '', 'no domain check ran as a superuser');
	is(is_super('h17'), 'f', 'h17 is not a superuser');
};

# 18: a handler running under its own search_path calls one of PgQue's
# functions that sets none (get_batch_events()), so PL/pgSQL compiles it
# in the dispatcher with the handler's domain for "text"; the nack() the
# dispatcher then ran as PgQue's owner calls that compiled form (found by
# a review: every nack in the database refused from then on, and a CHECK
# run as the owner). In the workers such a function now runs with the
# pinned search_path, whoever calls it.
subtest 'handler compiling PgQue under its types' => sub {
	new_db('tdb18');
	queue('tdb18', 'q18');
	new_role('h18', 'pgque_reader');
	q1('tdb18', q{
create schema h18s authorization h18;
create table public.got18 (payload text); grant insert on public.got18 to h18;
set role h18;
create function h18s.pwn(v pg_catalog.text) returns pg_catalog.bool language plpgsql as $$
begin perform public.rec('domain18', 'h18'); return true; end $$;
create domain h18s.text as pg_catalog.text check (h18s.pwn(value));
create function h18s.h(m pgque.message) returns void language plpgsql
set search_path = h18s, pg_catalog as $body$
begin
  begin
    perform * from pgque.get_batch_events(-1);
  exception when others then null;
  end;
  if m.payload = 'fail' then
    raise exception 'h18 fails on purpose';
  end if;
  insert into public.got18 values (m.payload);
end $body$;
select pgque_worker.register_handler('q18', 'c18', 'h18s.h(pgque.message)', retry_after => '1 hour');
});
	q1('tdb18', q{select pgque.send('q18', 'first'::text)});
	ok(wait_for('tdb18', q{select count(*) from public.got18 where payload = 'first'}, '1', 30), 'the handler ran');
	q1('tdb18', q{select pgque.send('q18', 'fail'::text)});
	ok(wait_for('tdb18', q{select messages_nacked from pgque_worker.handler_stats where consumer_name = 'c18'}, '1', 30),
		'its failing message is nacked');
	q1('tdb18', q{select pgque.send('q18', 'after'::text)});
	ok(wait_for('tdb18', q{select count(*) from public.got18 where payload = 'after'}, '1', 30), 'the next message is handled');
	is(q1('tdb18', q{select errors from pgque_worker.handler_stats where consumer_name = 'c18'}), '0',
		'no chunk failed (PgQue\'s nack() was not refused)');
	is(su_records('tdb18'), '', 'no domain check ran as a superuser');
	is(is_super('h18'), 'f', 'h18 is not a superuser');
};

# 19: the same through plpgsql_validator(), which compiles the function it
# is given under the caller's search_path and keeps it (found by a second
# review: the domain's CHECK ran COPY ... TO PROGRAM as PgQue's owner at
# the next nack). A handler may not call a language's validator.
subtest 'handler compiling PgQue through a validator' => sub {
	new_db('tdb19');
	queue('tdb19', 'q19');
	new_role('h19', 'pgque_reader');
	q1('tdb19', q{
create schema h19s authorization h19;
create table public.got19 (payload text, refused boolean); grant insert on public.got19 to h19;
set role h19;
create function h19s.pwn(v pg_catalog.text) returns pg_catalog.bool language plpgsql as $$
begin perform public.rec('domain19', 'h19'); return true; end $$;
create domain h19s.text as pg_catalog.text check (h19s.pwn(value));
create function h19s.h(m pgque.message) returns void language plpgsql
set search_path = h19s, pg_catalog as $body$
declare
  refused boolean := false;
begin
  begin
    perform pg_catalog.plpgsql_validator('pgque.get_batch_events(bigint)'::pg_catalog.regprocedure);
  exception when insufficient_privilege then refused := true;
  end;
  if m.payload = 'fail' then
    raise exception 'h19 fails on purpose';
  end if;
  insert into public.got19 values (m.payload, refused);
end $body$;
select pgque_worker.register_handler('q19', 'c19', 'h19s.h(pgque.message)', retry_after => '1 hour');
});
	q1('tdb19', q{select pgque.send('q19', 'first'::text)});
	ok(wait_for('tdb19', q{select count(*) from public.got19 where payload = 'first'}, '1', 30), 'the handler ran');
	is(q1('tdb19', q{select refused from public.got19 where payload = 'first'}), 't', '  its validator call was refused');
	q1('tdb19', q{select pgque.send('q19', 'fail'::text)});
	ok(wait_for('tdb19', q{select messages_nacked from pgque_worker.handler_stats where consumer_name = 'c19'}, '1', 30),
		'its failing message is nacked');
	q1('tdb19', q{select pgque.send('q19', 'after'::text)});
	ok(wait_for('tdb19', q{select count(*) from public.got19 where payload = 'after'}, '1', 30), 'the next message is handled');
	is(q1('tdb19', q{select errors from pgque_worker.handler_stats where consumer_name = 'c19'}), '0',
		'no chunk failed');
	is(su_records('tdb19'), '', 'no domain check ran as a superuser');
	is(is_super('h19'), 'f', 'h19 is not a superuser');
};

# 20: a handler creates a domain pg_temp.int4 and calls nack() itself in
# that call: PgQue's SECURITY DEFINER functions set search_path = pgque,
# pg_catalog, which leaves pg_temp first for types, so nack() was compiled
# with the temporary domain, which the call's refusal then rolled back:
# every later nack in the database failed (cache lookup failed for type)
# until the dispatcher restarted (found by the second review). PgQue's
# functions now run with pg_temp named last in the workers. (PostgreSQL
# 15.20 refuses the domain in a handler itself.)
subtest 'handler compiling nack() with a temporary type' => sub {
	new_db('tdb20');
	queue('tdb20', 'q20');
	new_role('h20', 'pgque_reader');
	q1('tdb20', q{
create table public.got20 (payload text); grant insert on public.got20 to h20;
create function public.h20(m pgque.message) returns void language plpgsql as $body$
begin
  if m.payload = 'plant' then
    execute 'create domain pg_temp.int4 as pg_catalog.int4 check (value is null or value > 0)';
    begin
      perform pgque.nack(-1, m, interval '1 hour', 'x'::text);
    exception when others then null;
    end;
  elsif m.payload = 'fail' then
    raise exception 'h20 fails on purpose';
  end if;
  insert into public.got20 values (m.payload);
end $body$;
alter function public.h20(pgque.message) owner to h20;
set role h20;
select pgque_worker.register_handler('q20', 'c20', 'public.h20(pgque.message)', retry_after => '1 hour');
});
	q1('tdb20', q{select pgque.send('q20', 'plant'::text)});
	ok(wait_for('tdb20', q{select messages_nacked from pgque_worker.handler_stats where consumer_name = 'c20'}, '1', 30),
		'the planting call is nacked');
	q1('tdb20', q{select pgque.send('q20', 'fail'::text)});
	ok(wait_for('tdb20', q{select messages_nacked from pgque_worker.handler_stats where consumer_name = 'c20'}, '2', 30),
		'a later failing message is nacked too');
	q1('tdb20', q{select pgque.send('q20', 'after'::text)});
	ok(wait_for('tdb20', q{select count(*) from public.got20 where payload = 'after'}, '1', 30), 'the next message is handled');
	is(q1('tdb20', q{select errors from pgque_worker.handler_stats where consumer_name = 'c20'}), '0',
		'no chunk failed');
	is(is_super('h20'), 'f', 'h20 is not a superuser');
};

note sprintf('test took %.0f s', time - $t_start);
$node->stop('immediate');
done_testing();
