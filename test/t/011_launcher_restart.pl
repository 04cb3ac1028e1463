# A restarted launcher (pg_terminate_backend, or an ERROR in it) while a
# batch is being dispatched: the postmaster starts it again 5 s later, and
# it must not start a second ticker or dispatcher beside the ones a previous
# launcher left running; every message is still handled exactly once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

# Deadlines for this test's waits (the launcher comes back after 5 s).
$PostgreSQL::Test::Utils::timeout_default = 30 unless $ENV{PG_TEST_TIMEOUT_DEFAULT};

my $node = new_node('restart', conf => qq{
pgque_worker.chunk_messages = 10
pgque_worker.dispatch_poll_interval = '100ms'
});
$node->start;
$node->safe_psql('postgres', 'create database app');
install_pgque($node, 'app');

# A slow message handler: 300 messages take ~25 s, so the batch is in
# flight across two launcher restarts.
$node->safe_psql('app', q{
create table got (payload text, pid int default pg_backend_pid());
create function h_slow(m pgque.message) returns void language plpgsql as $$
begin
  perform pg_sleep(0.08);
  insert into got (payload) values (m.payload);
end $$;
select pgque.create_queue('q');
select pgque_worker.register_handler('q', 'slow', 'h_slow(pgque.message)');
});

my $workers = q{
select count(*) filter (where backend_type = 'pgque_worker ticker')
       || ' ' || count(*) filter (where backend_type = 'pgque_worker dispatcher')
  from pg_stat_activity where datname = 'app'};
ok($node->poll_query_until('postgres', $workers, '1 1'),
	'one ticker and one dispatcher serve app');

sub launcher_pid
{
	return $node->safe_psql('postgres',
		"select coalesce((select pid from pg_stat_activity where backend_type = 'pgque_worker launcher'), 0)"
	);
}

# The launcher is back (another pid than $old) and app's workers are
# exactly one ticker and one dispatcher, both started after it.
sub settled_query
{
	my ($old) = @_;
	return qq{
with l as (select pid, backend_start from pg_stat_activity
            where backend_type = 'pgque_worker launcher' and pid <> $old),
     w as (select backend_type, backend_start from pg_stat_activity
            where datname = 'app' and backend_type in ('pgque_worker ticker', 'pgque_worker dispatcher'))
select (select count(*) from l) = 1
   and (select count(*) from w where backend_type = 'pgque_worker ticker') = 1
   and (select count(*) from w where backend_type = 'pgque_worker dispatcher') = 1
   and not exists (select from w, l where w.backend_start < l.backend_start)};
}

# Over ~3 s, app never has more or fewer than one ticker and one dispatcher.
sub steady_workers
{
	my ($what) = @_;
	my @bad;
	for (1 .. 30)
	{
		my $w = $node->safe_psql('postgres', $workers);
		push @bad, $w if $w ne '1 1';
		usleep(100_000);
	}
	is(scalar(@bad), 0,
		"$what: one ticker and one dispatcher for 3 s (other samples: "
		  . join(', ', @bad) . ')');
	return;
}

my $handled = q{select count(*) from got};

# --- 300 messages in one transaction: one batch of 30 chunks
$node->safe_psql('app',
	q{select pgque.send('q', 'm' || i) from generate_series(1, 300) i});
ok($node->poll_query_until('app', 'select count(*) > 0 from got'), 'the dispatcher took the batch');

# --- the launcher is terminated mid-batch
my $lpid = launcher_pid();
ok($lpid > 0, 'the launcher runs');
my $before = $node->safe_psql('app', $handled);
$node->safe_psql('postgres', "select pg_terminate_backend($lpid)");
note "launcher terminated after $before of 300 messages";
ok($node->poll_query_until('postgres', settled_query($lpid)),
	'after pg_terminate_backend the launcher is back with one ticker and one dispatcher');
steady_workers('after pg_terminate_backend');

# --- an ERROR in the launcher: a query cancel (SIGINT) makes its main
# loop's CHECK_FOR_INTERRUPTS raise "canceling statement due to user request"
my $log = log_position($node);
$lpid = launcher_pid();
my $mid = $node->safe_psql('app', "select count(distinct payload) from got");
cmp_ok($mid, '<', 300, "the batch is still in flight ($mid of 300 handled)");
$node->safe_psql('postgres', "select pg_cancel_backend($lpid)");
wait_for_log($node, qr/canceling statement due to user request/, $log);
pass('the launcher raised an ERROR');
ok($node->poll_query_until('postgres', settled_query($lpid)),
	'after an ERROR the launcher is back with one ticker and one dispatcher');
steady_workers('after an ERROR in the launcher');

# --- every message handled exactly once
ok($node->poll_query_until('app', "select count(distinct payload) from got", '300'),
	'all 300 messages handled');
# a duplicate dispatcher would still be adding rows: let it show
my $prev = -1;
for (1 .. 20)
{
	my $n = $node->safe_psql('app', $handled);
	last if $n == $prev;
	$prev = $n;
	usleep(500_000);
}
is($node->safe_psql('app', 'select count(*) || \' \' || count(distinct payload) from got'),
	'300 300', 'each message handled exactly once');
note 'handled by dispatcher pids: '
  . $node->safe_psql('app', q{select string_agg(pid || ':' || n, ' ') from (select pid, count(*) n from got group by pid order by pid) s});

$node->stop;
done_testing();
