# Every pgque_worker.* setting applies on reload, without a restart:
# enabled, databases, role, tick_period, the maintenance intervals,
# statement_timeout, ticker_timeout with log_quiet_interval, retry_max_calls
# and discovery_interval; invalid values are rejected and the old value kept.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

# Period mode: these tests count ticker() calls per period, which wake on
# commit (tested in sql/060_wake.sql) would skip while idle.
my $node = new_node('reload', conf => "pgque_worker.wake_on_commit = off");
$node->start;
$node->safe_psql('postgres', 'create database app');
install_pgque($node, 'app');
$node->safe_psql('app', q{
	select pgque.create_queue('q');
	select pgque.set_queue_config('q', 'ticker_max_count', '1');
	select pgque.subscribe('q', 'c');
});
wait_until($node, 'app',
	"select state from pgque_worker.status() where datname = 'app'",
	'running', 'ticker for app');

sub st { return status_row($node, 'app', 'app', $_[0]); }

# Polls until a status() column of app's ticker exceeds $min.
sub wait_counter_above
{
	my ($col, $min, $what) = @_;
	return wait_until($node, 'app',
		"select $col > $min from pgque_worker.status() where datname = 'app' and kind = 'ticker'",
		't', $what);
}

# Samples $query every 50 ms for $secs seconds; returns the distinct values.
sub values_over
{
	my ($db, $query, $secs) = @_;
	my %seen;
	my $end = time + $secs;
	while (time < $end)
	{
		$seen{ $node->safe_psql($db, $query) } = 1;
		usleep(50_000);
	}
	return sort keys %seen;
}

my $n = 0;
sub delivered
{
	my ($label) = @_;
	$n++;
	send_and_take($node, 'app', "msg$n");
	pass("a message is delivered $label");
}

my $ticker_q = q{select coalesce(string_agg(usename, ','), '') from pg_stat_activity
	where backend_type = 'pgque_worker ticker' and datname = 'app'};

delivered('at start');

# --- enabled
set_worker_conf($node, enabled => 'off');
wait_until($node, 'app',
	"select state from pgque_worker.status() where datname = 'app'",
	'paused', 'state paused');
pass('enabled = off: state paused');
my $calls = st('tick_calls');
usleep(1_200_000);    # asserting that nothing happens
my $calls2 = st('tick_calls');
is($calls2, $calls, "enabled = off: tick_calls stays at $calls over 1.2 s");
isnt(ticker_pid($node, 'app'), '0', 'enabled = off: the worker stays');
set_worker_conf($node, enabled => 'on');
wait_until($node, 'app',
	"select state from pgque_worker.status() where datname = 'app'",
	'running', 'state running again');
wait_counter_above('tick_calls', $calls2 + 3, 'ticking again');
pass('enabled = on: state running, tick_calls grows again');
delivered('after enabled = on');

# --- databases
for my $list ('otherdb', '"otherdb", "app x"')
{
	set_worker_conf($node, databases => $list);
	wait_until($node, 'postgres',
		"select count(*) from pg_stat_activity where backend_type = 'pgque_worker ticker' and datname = 'app'",
		'0', "ticker gone with databases = $list");
	pass("databases = $list: the ticker for app exits");
	wait_until($node, 'app',
		"select count(*) from pgque_worker.status() where datname = 'app'",
		'0', 'status row gone');
	pass("databases = $list: its status row is gone");
	my @seen = values_over('postgres',
		"select count(*) from pg_stat_activity where backend_type = 'pgque_worker ticker' and datname = 'app'", 1);
	is("@seen", '0', "databases = $list: no ticker comes back over 1 s");

	my $back = $list eq 'otherdb' ? '"app"' : 'otherdb, app';
	set_worker_conf($node, databases => $back);
	wait_until($node, 'app',
		"select state from pgque_worker.status() where datname = 'app'",
		'running', "ticker back with databases = $back");
	pass("databases = $back: the ticker for app is back");
	delivered("with databases = $back");
}
set_worker_conf($node, databases => undef);

# --- invalid values: ALTER SYSTEM rejects them, the old value stays
# (PostgreSQL 18 names the unit on both ends of a range: "(0 ms .. 60000 ms)")
my @bad = (
	[ databases => 'a,,b', qr/invalid value for pgque_worker\.databases: empty entry in list of databases/ ],
	[ databases => '*, app', qr/invalid value for pgque_worker\.databases: "\*" cannot be combined with database names/ ],
	[ databases => '', qr/invalid value for pgque_worker\.databases: list of databases is empty/ ],
	[ tick_period => '-1', qr/-1 ms is outside the valid range for parameter "pgque_worker\.tick_period" \(0( ms)? \.\. 60000( ms)?\)/ ],
	[ tick_period => '70000', qr/70000 ms is outside the valid range for parameter "pgque_worker\.tick_period" \(0( ms)? \.\. 60000( ms)?\)/ ],
	[ discovery_interval => '0', qr/0 ms is outside the valid range for parameter "pgque_worker\.discovery_interval" \(100( ms)? \.\. 3600000( ms)?\)/ ],
	[ retry_max_calls => '0', qr/0 is outside the valid range for parameter "pgque_worker\.retry_max_calls" \(1 \.\. 100000\)/ ],
	[ enabled => 'maybe', qr/parameter "pgque_worker\.enabled" requires a Boolean value/ ],
);
for my $b (@bad)
{
	my ($name, $value, $re) = @$b;
	my $before = $node->safe_psql('postgres', "show pgque_worker.$name");
	my ($ret, $out, $err) = $node->psql('postgres',
		"alter system set pgque_worker.$name = '$value'");
	isnt($ret, 0, "ALTER SYSTEM SET pgque_worker.$name = '$value' fails");
	like($err, $re, "with a message naming the setting: $re");
	$node->safe_psql('postgres', 'select pg_reload_conf()');
	is($node->safe_psql('postgres', "show pgque_worker.$name"), $before,
		"pgque_worker.$name keeps '$before'");
}

# Bad values written into postgresql.conf by hand: logged at reload, the
# server keeps running with the old values, ticking continues.
my $conf_file = $node->data_dir . '/postgresql.conf';
my $conf_saved = slurp_file($conf_file);
my $pos = log_position($node);
$node->append_conf('postgresql.conf', q{
pgque_worker.databases = 'a,,b'
pgque_worker.tick_period = 70000
});
$node->safe_psql('postgres', 'select pg_reload_conf()');
wait_for_log($node, qr/invalid value for pgque_worker\.databases: empty entry in list of databases/, $pos);
wait_for_log($node, qr/70000 ms is outside the valid range for parameter "pgque_worker\.tick_period"/, $pos);
wait_for_log($node, qr/configuration file ".*postgresql\.conf" contains errors/, $pos);
pass('bad values in postgresql.conf are reported in the log');
is($node->safe_psql('postgres', 'show pgque_worker.databases'), '*', 'databases keeps *');
is($node->safe_psql('postgres', 'show pgque_worker.tick_period'), '0', 'tick_period keeps 0');
$calls = st('tick_calls');
wait_counter_above('tick_calls', $calls + 5, 'ticking after a bad reload');
pass('the server runs and ticking continues after a reload with bad values');
delivered('after a reload with bad values');
open(my $fh, '>', $conf_file) or die "cannot write $conf_file: $!";
print $fh $conf_saved;
close $fh;
$node->safe_psql('postgres', 'select pg_reload_conf()');

# --- role
my $super = $node->safe_psql('postgres', 'select rolname from pg_roles where oid = 10');
$node->safe_psql('postgres', 'create role pqw_admin login; grant pgque_admin to pqw_admin');
set_worker_conf($node, role => 'pqw_admin');
wait_until($node, 'postgres', $ticker_q, 'pqw_admin', 'ticker running as pqw_admin');
pass('role = pqw_admin: the ticker restarts as pqw_admin');
delivered('with the ticker running as the non-superuser pqw_admin');

$pos = log_position($node);
set_worker_conf($node, role => 'no_such_role');
wait_for_log($node, qr/role "no_such_role" named by pgque_worker\.role does not exist/, $pos);
pass('role = no_such_role: a WARNING names the missing role');
wait_until($node, 'postgres', $ticker_q, '', 'ticker exit with a missing role');
my @seen = values_over('postgres', $ticker_q, 1.5);
is("@seen", '', 'role = no_such_role: no ticker runs (1.5 s)');
set_worker_conf($node, role => undef);
wait_until($node, 'postgres', $ticker_q, $super, 'ticker back as the bootstrap superuser');
pass("role reset: the ticker runs again as $super");
delivered('after role reset');

# --- tick_period: the rate of ticker() calls follows it at once
# The period is a ceiling that load cannot break, so each upper bound is near
# it; load can only make calls miss slots, so each lower bound only has to
# lie above the next slower period's ceiling.
sub tick_rate
{
	my ($secs) = @_;
	usleep(300_000);    # let the worker pick up the change
	my ($dt, $rate) = measure_rates($node, 'app', 'app', $secs, 'tick_calls');
	return $rate;
}
set_worker_conf($node, tick_period => '50ms');
my $rate = tick_rate(3);
note sprintf('tick_period = 50ms: %.1f ticker() calls/s', $rate);
ok($rate >= 12 && $rate <= 22, sprintf('tick_period = 50ms gives ~20 calls/s (%.1f)', $rate));

set_worker_conf($node, tick_period => '0');
$rate = tick_rate(3);
note sprintf('tick_period = 0, pgque.config 100 ms: %.1f ticker() calls/s', $rate);
ok($rate >= 6 && $rate <= 11, sprintf('tick_period = 0 follows pgque.config (100 ms): ~10 calls/s (%.1f)', $rate));

$node->safe_psql('app', 'select pgque.set_tick_period_ms(20)');
$rate = tick_rate(3);
note sprintf('tick_period = 0, pgque.set_tick_period_ms(20): %.1f ticker() calls/s', $rate);
ok($rate >= 25 && $rate <= 52, sprintf('pgque.set_tick_period_ms(20) gives ~50 calls/s (%.1f)', $rate));
$node->safe_psql('app', 'select pgque.set_tick_period_ms(100)');
set_worker_conf($node, tick_period => undef);

# --- maint_interval, rotate_interval, retry_interval
my %job = (
	maint_interval => 'maint_runs',
	rotate_interval => 'rotate_runs',
	retry_interval => 'retry_calls');
my %before = map { $_ => st($_) } values %job;
usleep(1_500_000);    # asserting that nothing happens at the defaults
for my $set (sort keys %job)
{
	my $col = $job{$set};
	my $d = st($col) - $before{$col};
	note "$col grew by $d in 1.5 s with the default $set";
	cmp_ok($d, '<=', 1, "default $set: $col grows at most once in 1.5 s ($d)");
}
for my $set (sort keys %job)
{
	my $col = $job{$set};
	my $v0 = st($col);
	set_worker_conf($node, $set => '200ms');
	usleep(2_500_000);
	my $d = st($col) - $v0;
	note "$set = 200ms: $col grew by $d in 2.5 s";
	cmp_ok($d, '>=', 5, "$set = 200ms: $col grows by >= 5 in 2.5 s ($d)");
	cmp_ok($d, '<=', 15, "$set = 200ms: and not much faster ($d)");
	set_worker_conf($node, $set => undef);
}

# --- statement_timeout: a maintenance call blocked by a lock is cancelled
set_worker_conf($node, statement_timeout => '300ms', maint_interval => '200ms');
$pos = log_position($node);
my $locker = $node->background_psql('app');
$locker->query_safe('begin; lock table pgque.queue in access exclusive mode;');
my $t0 = time;
wait_for_log($node,
	qr/pgque_worker: select pgque\.maint\(\) failed in database "app": canceling statement due to statement timeout/,
	$pos);
note sprintf('maint() cancelled by statement_timeout after %.2f s', time - $t0);
pass('statement_timeout = 300ms cancels a blocked maint() and logs it');
like(st('last_error'), qr/canceling statement due to statement timeout/,
	'status() last_error shows the timeout');
my $runs = st('maint_runs');
$locker->query_safe('commit');
wait_counter_above('maint_runs', $runs + 2, 'maint runs again after the lock is released');
pass('after the lock is released maint() runs again');
$pos = log_position($node);
set_worker_conf($node, statement_timeout => undef, maint_interval => undef);
# all jobs recover, so the next test starts from a clean log limiter
wait_until($node, 'app',
	"select state from pgque_worker.status() where datname = 'app'",
	'running', 'state running after the lock');

# --- log_quiet_interval: one line per kind of error per interval
sub ticker_lock_episode
{
	my ($hold) = @_;
	my $p = log_position($node);
	my $e0 = st('errors');
	$locker->query_safe('begin; lock table pgque.queue in access exclusive mode;');
	wait_for_log($node, qr/select pgque\.ticker\(\) failed in database "app"/, $p);
	usleep(int($hold * 1_000_000));    # failures accumulate while the lock is held
	my $errors = st('errors') - $e0;
	$locker->query_safe('commit');
	wait_for_log($node, qr/select pgque\.ticker\(\) works again in database "app"/, $p);
	my $log = log_since($node, $p);
	my $warnings = () = $log =~ /WARNING:  pgque_worker: select pgque\.ticker\(\) failed in database "app"/g;
	my $recoveries = () = $log =~ /LOG:  pgque_worker: select pgque\.ticker\(\) works again in database "app"/g;
	return ($errors, $warnings, $recoveries);
}
set_worker_conf($node, ticker_timeout => '100ms');
usleep(300_000);
my ($errors, $warnings, $recoveries) = ticker_lock_episode(3);
note "log_quiet_interval = 1min: $errors failures, $warnings WARNING lines, $recoveries recovery lines";
cmp_ok($errors, '>', 1, "several ticker() failures while locked ($errors)");
is($warnings, 1, 'log_quiet_interval = 1min: exactly one WARNING for the repeated error');
is($recoveries, 1, 'one LOG line when ticker() works again');

set_worker_conf($node, log_quiet_interval => '0');
usleep(300_000);
($errors, $warnings, $recoveries) = ticker_lock_episode(3);
note "log_quiet_interval = 0: $errors failures, $warnings WARNING lines, $recoveries recovery lines";
cmp_ok($errors, '>', 1, "several ticker() failures while locked ($errors)");
cmp_ok($warnings, '>', 1, "log_quiet_interval = 0: each failure is logged ($warnings lines)");
is($recoveries, 1, 'one LOG line when ticker() works again');
$locker->quit;
set_worker_conf($node, ticker_timeout => undef, log_quiet_interval => undef);
delivered('after the lock episodes');

# --- retry_max_calls: how many maint_retry_events() calls one drain makes
$node->safe_psql('app', 'create table got of pgque.message; create table redelivered (payload text)');
# Receives until all 50 events tagged $tag came back (in one or more batches).
sub redelivered
{
	my ($tag) = @_;
	wait_until($node, 'app',
		"with ins as (insert into redelivered select take from take('q', 'c') where take like '$tag%' returning 1)
		 select (select count(*) from redelivered where payload like '$tag%') + (select count(*) from ins)",
		'50', "$tag events redelivered");
	pass("all 50 $tag events are delivered again");
}
sub nack_50
{
	my ($tag) = @_;
	$node->safe_psql('app', "truncate got; select count(*) from (select pgque.send('q', '$tag' || i) from generate_series(1, 50) i) s");
	wait_until($node, 'app',
		"with ins as (insert into got select * from pgque.receive('q', 'c', 1000) returning payload)
		 select (select count(*) from got where payload like '$tag%') + (select count(*) from ins where payload like '$tag%')",
		'50', "receiving 50 $tag events");
	$node->safe_psql('app', q{
		select sum(pgque.nack(g.batch_id, row(g.*)::pgque.message, '0 seconds'::interval, 'x')) from got g;
		select pgque.ack((select max(batch_id) from got));
	});
}
set_worker_conf($node, retry_interval => '1s', retry_max_calls => '1');
wait_until($node, 'app',
	"select retry_last_drain from pgque_worker.status() where datname = 'app'",
	'0', 'an empty drain');
nack_50('r1-');
my $rc0 = st('retry_calls');
wait_counter_above('retry_last_drain', 0, 'a drain moving events');
my $drain = st('retry_last_drain');
note "retry_max_calls = 1: retry_last_drain = $drain";
is($drain, '10', 'retry_max_calls = 1: one drain moves at most 10 events (one call)');
wait_until($node, 'app', 'select count(*) from pgque.retry_queue', '0', 'retry queue emptied');
my $rcalls = st('retry_calls') - $rc0;
note "retry_max_calls = 1: $rcalls retry calls to move 50 events";
cmp_ok($rcalls, '>=', 4, "the 50 events took several drains ($rcalls calls)");
redelivered('r1-');

set_worker_conf($node, retry_max_calls => undef);
wait_until($node, 'app',
	"select retry_last_drain from pgque_worker.status() where datname = 'app'",
	'0', 'an empty drain');
nack_50('r2-');
wait_counter_above('retry_last_drain', 0, 'a drain moving events');
$drain = st('retry_last_drain');
note "retry_max_calls default: retry_last_drain = $drain";
is($drain, '50', 'retry_max_calls default: one drain moves all 50 events');
redelivered('r2-');
set_worker_conf($node, retry_interval => undef);

# --- discovery_interval: a long interval delays finding a new database
# until wake_launcher(), whether the new database gets PgQue from a
# template or by installing it (a big DDL transaction, whose shared
# invalidation catch-up signal sets the launcher's latch: that wake-up must
# not count as a request to look).
$node->safe_psql('postgres', 'create database pgque_tmpl');
install_pgque($node, 'pgque_tmpl');
$node->safe_psql('postgres', 'alter database pgque_tmpl allow_connections false');
wait_until($node, 'postgres',
	"select count(*) from pg_stat_activity where datname = 'pgque_tmpl'",
	'0', 'no session in the template');
my $app_ticker = sub {
	my ($db) = @_;
	return "select count(*) from pg_stat_activity where backend_type = 'pgque_worker ticker' and datname = '$db'";
};
set_worker_conf($node, discovery_interval => '1h');
usleep(1_000_000);    # the launcher applies the reload (it wakes on SIGHUP)
$node->safe_psql('postgres', 'create database app2 template pgque_tmpl');
@seen = values_over('postgres', $app_ticker->('app2'), 2);
is("@seen", '0', 'discovery_interval = 1h: no ticker for a new PgQue database within 2 s');
is($node->safe_psql('app', "select count(*) from pgque_worker.status() where datname = 'app2'"),
	'0', 'and no status row for it');
$node->safe_psql('app', 'select pgque_worker.wake_launcher()');
my $s = wait_until($node, 'app',
	"select state from pgque_worker.status() where datname = 'app2'",
	'running', 'ticker for app2 after wake_launcher()');
note sprintf('ticker for app2 running %.2f s after wake_launcher()', $s);
pass('wake_launcher() finds the new database at once');

usleep(500_000);    # app2's ticker start has woken the launcher; let it settle
$node->safe_psql('postgres', 'create database app3');
install_pgque($node, 'app3');
@seen = values_over('postgres', $app_ticker->('app3'), 2);
is("@seen", '0', 'discovery_interval = 1h: installing PgQue into a new database does not start a ticker within 2 s');
$node->safe_psql('app', 'select pgque_worker.wake_launcher()');
wait_until($node, 'app',
	"select state from pgque_worker.status() where datname = 'app3'",
	'running', 'ticker for app3 after wake_launcher()');
set_worker_conf($node, discovery_interval => undef);

ok($node->safe_psql('postgres', 'select 1') eq '1', 'server still up');
$node->stop;
done_testing();
