# Operations: never double-tick beside another scheduler (pg_cron jobs or
# pgque.config.scheduler, with and without takeover), pause and resume
# persisted across a restart and who may use them, Prometheus metrics, and running out of
# background worker slots. Also follows README's "Adopting pgque_worker"
# (from pg_cron) on a fresh cluster.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

# pg_cron, where the server under test has it (Debian's PostgreSQL 15 does;
# the PostgreSQL 18 that test/build-pg.sh builds does not): its part is
# skipped without it, the rest of the file runs.
my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
my $has_cron = -f "$pkglibdir/pg_cron.so";
my $node = new_node('ops', conf => $has_cron ? qq{
shared_preload_libraries = 'pg_cron,pgque_worker'
cron.database_name = 'app'
} : '');
$node->start;
$node->safe_psql('postgres', 'create database app');
install_pgque($node, 'app');
$node->safe_psql('app', q{
select pgque.create_queue('q');
select pgque.set_queue_config('q', 'ticker_max_count', '1');
select pgque.subscribe('q', 'c');
});

sub st
{
	my ($col) = @_;
	return $node->safe_psql('app',
		"select $col from pgque_worker.status() where datname = 'app' and kind = 'ticker'");
}

sub delivered
{
	my ($payload) = @_;
	send_and_take($node, 'app', $payload);
	pass("delivered: $payload");
}

sub not_delivered
{
	my ($payload, $why) = @_;
	$node->safe_psql('app', qq{select pgque.send('q', '$payload'::text)});
	my $n = 0;
	for (1 .. 15)
	{
		$n += $node->safe_psql('app', q{select count(*) from pgque.get_queue_info('q') where ev_new = 0 and ticker_lag < interval '200 ms'}) ;
		usleep(100_000);
	}
	my $calls0 = st('tick_calls');
	usleep(500_000);
	is(st('tick_calls'), $calls0, "no ticker() call while $why");
}

delivered('first');

# --- adopting from pg_cron: the jobs pgque.start() makes (Debian's pg_cron
# 1.4 rejects PgQue's '1 second' schedule, so they are made by hand with a
# schedule it accepts, as pgque.start() would name them)
my $pos;
SKIP:
{
	skip "pg_cron is not installed for this server ($pkglibdir)", 1 unless $has_cron;
	$node->safe_psql('app', 'create extension pg_cron');
	$pos = log_position($node);
	$node->safe_psql('app', q{
	select cron.schedule_in_database('pgque_ticker', '* * * * *', 'select 1', 'app');
	select cron.schedule_in_database('pgque_maint', '* * * * *', 'select 1', 'app');
	});
	wait_until($node, 'app', q{select state from pgque_worker.status() where datname = 'app' and kind = 'ticker'},
		'other scheduler', 'yielding to pg_cron jobs');
	wait_for_log($node, qr/database "app" is ticked by pg_cron jobs, pgque_worker leaves it alone.*\n.*DETAIL.*\n.*HINT:  Run "select pgque.stop\(\)"/, $pos);
	pass('one WARNING with a hint');
	not_delivered('while-cron', 'pg_cron jobs own the database');
	# the README's adoption step: remove the other scheduler
	$node->safe_psql('app', q{select cron.unschedule('pgque_ticker'); select cron.unschedule('pgque_maint')});
	wait_until($node, 'app', q{select state from pgque_worker.status() where datname = 'app' and kind = 'ticker'},
		'running', 'ticking again once the jobs are gone');
	wait_until($node, 'app', q{select count(*) from take('q', 'c') where take = 'while-cron'}, '1',
		'the message sent meanwhile is delivered');
	pass('started by itself within the discovery interval after the jobs went');
}

# --- pgque.config.scheduler set (pgque.start() ran): yield, then takeover
$node->safe_psql('app', q{update pgque.config set scheduler = 'pg_timetable'});
wait_until($node, 'app', q{select state from pgque_worker.status() where datname = 'app' and kind = 'ticker'},
	'other scheduler', 'yielding to pgque.config.scheduler');
like(st('last_error'), qr/yielding to pg_timetable/, 'status() says why');
$node->safe_psql('app', q{update pgque.config set scheduler = null});
wait_until($node, 'app', q{select state from pgque_worker.status() where datname = 'app' and kind = 'ticker'},
	'running', 'back once the scheduler is cleared');
$node->safe_psql('app', q{update pgque.config set scheduler = 'pg_cron'});
$pos = log_position($node);
$node->safe_psql('postgres', q{alter system set pgque_worker.takeover = on; select pg_reload_conf()});
wait_for_log($node, qr/took over ticking of database "app" from pg_cron \(pgque.stop\(\) called\)/, $pos);
is($node->safe_psql('app', q{select scheduler is null from pgque.config}), 't',
	'takeover = on: pgque.stop() cleared the other scheduler');
delivered('after-takeover');
$node->safe_psql('postgres', q{alter system reset pgque_worker.takeover; select pg_reload_conf()});

# --- pause and resume, persisted across a restart
$node->safe_psql('app', q{select pgque_worker.pause()});
wait_until($node, 'app', q{select state from pgque_worker.status() where datname = 'app' and kind = 'ticker'},
	'paused', 'pause() pauses the database');
not_delivered('while-paused', 'paused');
$node->restart;
wait_until($node, 'app', q{select state from pgque_worker.status() where datname = 'app' and kind = 'ticker'},
	'paused', 'still paused after a restart');
$node->safe_psql('app', q{select pgque_worker.resume()});
wait_until($node, 'app', q{select count(*) from take('q', 'c') where take = 'while-paused'}, '1',
	'resume() delivers what waited');
pass('resume() resumes');
my ($ret, $out, $err) = $node->psql('app', q{select pgque_worker.pause('no_such_db')});
like($err, qr/database "no_such_db" does not exist/, 'pause() of a missing database: clear error');

# --- who may pause: superusers, the database's owner, pgque_admin members
# for the current database only
sub paused_setting
{
	my ($db) = @_;
	return $node->safe_psql('app', qq{
select count(*) from pg_db_role_setting s join pg_database d on d.oid = s.setdatabase
 where d.datname = '$db' and s.setrole = 0
   and 'pgque_worker.database_paused=on' = any (s.setconfig)});
}
$node->safe_psql('postgres', q{
create role ops login;
grant pgque_admin to ops;
create database other;
});
my @as_ops = (extra_params => [ '-U', 'ops' ]);
($ret, $out, $err) = $node->psql('app', q{select pgque_worker.pause('other')}, @as_ops);
isnt($ret, 0, 'a pgque_admin member may not pause a database it does not own');
like($err, qr/permission denied to pause database "other"/, 'with a clear error');
like($err, qr/HINT:  Only superusers, the owner of the database, and members of pgque_admin connected to that database/,
	'and a hint saying who may');
($ret, $out, $err) = $node->psql('app', q{select pgque_worker.resume('other')}, @as_ops);
like($err, qr/permission denied to resume database "other"/, 'nor resume it');
is(paused_setting('other'), '0', 'the refused pause() stored nothing');
($ret, $out, $err) = $node->psql('app', q{select pgque_worker._set_paused('other', true)}, @as_ops);
like($err, qr/permission denied to pause database "other"/, 'nor through _set_paused() directly');

$node->safe_psql('app', q{select pgque_worker.pause()}, @as_ops);
is(paused_setting('app'), '1', 'a pgque_admin member may pause the database it is connected to');
$node->safe_psql('app', q{select pgque_worker.resume()}, @as_ops);
is(paused_setting('app'), '0', 'and resume it');

$node->safe_psql('postgres', q{alter database other owner to ops});
$node->safe_psql('app', q{select pgque_worker.pause('other')}, @as_ops);
is(paused_setting('other'), '1', 'the owner of another database may pause it');
$node->safe_psql('app', q{select pgque_worker.resume('other')}, @as_ops);
is(paused_setting('other'), '0', 'and resume it');

$node->safe_psql('postgres', q{alter database other owner to current_user});
$node->safe_psql('app', q{select pgque_worker.pause('other')});
is(paused_setting('other'), '1', 'a superuser may pause any database');
$node->safe_psql('app', q{select pgque_worker.resume('other')});
is(paused_setting('other'), '0', 'and resume it');
wait_until($node, 'app', q{select state from pgque_worker.status() where datname = 'app' and kind = 'ticker'},
	'running', 'app runs again after the pause and resume by ops');

# --- metrics
my $m = $node->safe_psql('app', q{select pgque_worker.metrics()});
like($m, qr/^# TYPE pgque_worker_ticks_total counter$/m, 'metrics: TYPE lines');
like($m, qr/^pgque_worker_ticks_total\{database="app"\} [1-9][0-9]*$/m, 'metrics: ticks of app');
like($m, qr/^pgque_worker_queue_ticker_lag_seconds\{database="app",queue="q"\} [0-9.e+-]+$/m,
	'metrics: per-queue ticker lag');
my @bad = grep { !/^# (HELP|TYPE) / && !/^[a-z_]+(\{[^}]*\})? (NaN|-?[0-9.]+(e[+-]?[0-9]+)?)$/ } split /\n/, $m;
is(scalar(@bad), 0, 'every line is valid exposition format') or note join("\n", @bad);
is($node->safe_psql('app', q{select count(distinct metric) >= 15 from pgque_worker.metrics_view}), 't',
	'metrics_view has the same numbers as rows');

$node->stop;

# --- running out of background worker slots
my $small = new_node('small', conf => 'max_worker_processes = 3');
$small->start;
for my $db (qw(s1 s2 s3))
{
	$small->safe_psql('postgres', "create database $db");
	install_pgque($small, $db);
}
$pos = 0;
wait_for_log($small, qr/no background worker slot for database "[^"]+".*\n.*DETAIL:  pgque_worker needs \d+ background workers/, $pos);
pass('one clear WARNING with the number needed');
wait_until($small, 's1', q{select count(*) > 0 from pgque_worker.status() where state = 'no worker slot'}, 't',
	'status() shows unserved databases');
wait_until($small, 's1', q{select count(*) > 0 from pgque_worker.status() where state = 'running'}, 't',
	'and serves the databases it can');
my $log = slurp_file($small->logfile);
my $warnings = () = $log =~ /no background worker slot/g;
cmp_ok($warnings, '<=', 3, "the WARNING is not repeated on every retry ($warnings)");
$small->stop;

done_testing();
