# Fault soak: producers send N messages to 3 queues, each consumed by a
# message handler and a batch handler that record every payload in a table,
# while the harness kill -9s ticker and dispatcher workers at random and
# restarts the server with an immediate shutdown; a deterministic subset of
# payloads (id % 97 = 0) always fails and ends in the dead-letter table.
# At the end every committed payload is, per consumer, handled exactly once
# or dead-lettered: none missing, none twice.
#
# Bounded to a few minutes by default; longer with
#   PQW_SOAK_MESSAGES  messages to send (default 20000)
#   PQW_SOAK_SECONDS   length of the fault phase in seconds (default 45)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use POSIX ();
use IPC::Run;
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $nmsg = $ENV{PQW_SOAK_MESSAGES} // 20_000;
my $fault_secs = $ENV{PQW_SOAK_SECONDS} // 45;
my @queues = qw(q1 q2 q3);
my $fail_mod = 97;

my $node = new_node('soak', conf => qq{
pgque_worker.retry_interval = '500ms'
pgque_worker.dispatch_poll_interval = '100ms'
pgque_worker.chunk_messages = 50
pgque_worker.log_quiet_interval = '10s'
});
$node->start;
$node->safe_psql('postgres', 'create database app');
install_pgque($node, 'app');

# Producer side: sent holds exactly the ids whose send committed (same
# transaction as pgque.send / send_batch). Consumer side: got, written only
# by the handlers.
$node->safe_psql('app', qq{
create table sent (id bigint primary key, queue text not null);
create table got (consumer text not null, id bigint not null, retry_count int);
create function h_msg(m pgque.message) returns void language plpgsql as \$\$
begin
  if m.payload::bigint % $fail_mod = 0 then
    raise exception 'm handler refuses %', m.payload;
  end if;
  insert into got values ('m', m.payload::bigint, m.retry_count);
end \$\$;
create function h_batch(ms pgque.message[]) returns void language plpgsql as \$\$
declare
  bad text;
begin
  select m.payload into bad from unnest(ms) m where m.payload::bigint % $fail_mod = 0 limit 1;
  if bad is not null then
    raise exception 'b handler refuses %', bad;
  end if;
  insert into got select 'b', m.payload::bigint, m.retry_count from unnest(ms) m;
end \$\$;
});
for my $q (@queues)
{
	$node->safe_psql('app', qq{
select pgque.create_queue('$q');
select pgque.set_queue_config('$q', 'ticker_max_count', '1');
select pgque.set_queue_config('$q', 'max_retries', '1');
select pgque_worker.register_handler('$q', 'm', 'h_msg(pgque.message)', retry_after => '0 seconds');
select pgque_worker.register_handler('$q', 'b', 'h_batch(pgque.message[])', batch => true, retry_after => '0 seconds');
});
}
wait_until($node, 'postgres',
	q{select count(*) from pg_stat_activity where datname = 'app' and backend_type in ('pgque_worker ticker', 'pgque_worker dispatcher')},
	'2', 'ticker and dispatcher running');

# Runs $sql in $db, retrying while the server is down or restarting.
sub sql_retry
{
	my ($db, $sql) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		my ($ret, $out, $err) = $node->psql($db, $sql);
		return $out if $ret == 0;
		usleep(200_000);
	}
	die "timed out running $sql";
}

# --- producers: one per queue, forked; each transaction inserts its ids
# into sent and sends them. A send whose outcome is unknown (connection
# lost) is retried with the same ids: a duplicate key error then proves it
# had committed.
my $connstr = $node->connstr('app');
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $t_start = time;
my $send_target = $fault_secs * 0.7;    # spread the sends over the faults
my %producers;
for my $k (0 .. $#queues)
{
	my $q = $queues[$k];
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid)
	{
		$producers{$pid} = $q;
		next;
	}
	# child: no Test::More, no END blocks (they would stop the node)
	srand($$ ^ time);
	my @ids = grep { $_ % 3 == $k } 1 .. $nmsg;
	my $total = @ids;
	my ($done, $retries) = (0, 0);
	while (@ids)
	{
		my $n = 1 + int(rand(40));
		my @b = splice(@ids, 0, $n);
		my $list = join(',', @b);
		my $send = @b == 1
		  ? "select pgque.send('$q', '$b[0]'::text)"
		  : "select pgque.send_batch('$q', '{$list}'::text[])";
		my $sql = "insert into sent select unnest('{$list}'::bigint[]), '$q'; $send";
		for (;;)
		{
			my $err = '';
			my $ok = IPC::Run::run(
				[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $connstr, '-c', $sql ],
				'>', \my $out, '2>', \$err);
			last if $ok;
			last if $err =~ /duplicate key value violates unique constraint "sent_pkey"/;
			$retries++;
			usleep(100_000 + int(rand(200_000)));
		}
		$done += @b;
		my $due = $t_start + $send_target * $done / $total;
		my $ahead = $due - time;
		usleep(int($ahead * 1_000_000)) if $ahead > 0;
	}
	open(my $fh, '>', "$tmp/producer_$q") or POSIX::_exit(1);
	print $fh "$total $retries\n";
	close $fh;
	POSIX::_exit(0);
}

# --- faults until the fault phase is over
my ($kills_ticker, $kills_dispatcher, $restarts) = (0, 0, 0);
sub worker_pid
{
	my ($type) = @_;
	return sql_retry('postgres',
		"select coalesce((select pid from pg_stat_activity where backend_type = 'pgque_worker $type' and datname = 'app' limit 1), 0)"
	);
}
sub wait_back
{
	wait_until($node, 'postgres',
		q{select count(*) from pg_stat_activity where datname = 'app' and backend_type in ('pgque_worker ticker', 'pgque_worker dispatcher')},
		'2', 'ticker and dispatcher back');
}
while (time < $t_start + $fault_secs)
{
	usleep(300_000 + int(rand(2_000_000)));
	my $r = rand();
	if ($r < 0.8)
	{
		my $type = $r < 0.4 ? 'ticker' : 'dispatcher';
		my $pid = worker_pid($type);
		next unless $pid;
		if (kill 'KILL', $pid)
		{
			$type eq 'ticker' ? $kills_ticker++ : $kills_dispatcher++;
			note sprintf('%.1f s: kill -9 %s %d', time - $t_start, $type, $pid);
		}
	}
	else
	{
		note sprintf('%.1f s: immediate restart', time - $t_start);
		$node->stop('immediate');
		$node->start;
		$restarts++;
	}
	# let the postmaster's crash restart begin before polling
	usleep(200_000);
	wait_back();
}
note sprintf('fault phase over after %.1f s', time - $t_start);

# --- producers finish
my $deadline = time + 600;
while (%producers && time < $deadline)
{
	my $pid = waitpid(-1, POSIX::WNOHANG());
	if ($pid > 0)
	{
		my $q = $producers{$pid};
		is($? >> 8, 0, "producer for $q exited cleanly");
		my ($total, $retries) = split ' ', slurp_file("$tmp/producer_$q");
		note "producer for $q: $total ids sent, $retries sends retried after a lost connection";
		delete $producers{$pid};
	}
	else
	{
		usleep(100_000);
	}
}
die 'producers did not finish' if %producers;
my $send_secs = time - $t_start;

# --- quiescence: for each consumer, handled + dead-lettered covers all sent
my $dead_sql = join(' union all ', map {
	"select '$_'::text as queue, substr(d.dl_reason, 1, 1) as consumer, d.ev_data::bigint as id from pgque.dlq_inspect('$_', 100000000) d"
} @queues);
my $cover_sql = qq{
with c(consumer) as (values ('m'), ('b')),
 dead as ($dead_sql)
select bool_and(n_cov = n_sent) from (
  select c.consumer,
    (select count(*) from sent) as n_sent,
    (select count(distinct s.id) from sent s
      where exists (select 1 from got g where g.consumer = c.consumer and g.id = s.id)
         or exists (select 1 from dead d where d.consumer = c.consumer and d.id = s.id)) as n_cov
  from c) x};
my $q_secs = wait_until($node, 'app', $cover_sql, 't', 'every sent payload handled or dead-lettered');
wait_until($node, 'app', q{select count(*) from pgque.retry_queue}, '0', 'retry queue empty');
wait_until($node, 'app',
	q{select count(*) from pgque_worker.handler_stats where batch_in_flight is not null}, '0',
	'no batch in flight');
usleep(2_000_000);    # showing that nothing more arrives (no late duplicate)

# --- the counts, per consumer
my $sent = $node->safe_psql('app', 'select count(*) from sent');
is($sent, $nmsg, "all $nmsg sends eventually committed");
my %total = (handled => 0, dead => 0, dup => 0, missing => 0);
for my $c (qw(m b))
{
	my $row = $node->safe_psql('app', qq{
with dead as (select * from ($dead_sql) d where consumer = '$c'),
 g as (select * from got where consumer = '$c')
select
  (select count(*) from g),
  (select count(distinct id) from g),
  (select count(*) from g) - (select count(distinct id) from g),
  (select count(*) from dead),
  (select count(*) from dead) - (select count(distinct id) from dead),
  (select count(*) from sent s where s.id % $fail_mod <> 0
     and not exists (select 1 from g where g.id = s.id)),
  (select count(*) from sent s where s.id % $fail_mod = 0
     and not exists (select 1 from dead d where d.id = s.id)),
  (select count(*) from g where g.id % $fail_mod = 0
     or not exists (select 1 from sent s where s.id = g.id)),
  (select count(*) from dead d where d.id % $fail_mod <> 0
     or not exists (select 1 from sent s where s.id = d.id)),
  (select count(*) from g where g.retry_count > 0)});
	my ($rows, $distinct, $dup, $dead, $dead_dup, $miss_ok, $miss_dead, $bad_got, $bad_dead, $retried)
	  = split /\|/, $row;
	my $name = $c eq 'm' ? 'message handler' : 'batch handler';
	note "$name: sent $sent, handled $distinct ($rows rows, $dup duplicates, $retried after a retry), "
	  . "dead-lettered $dead ($dead_dup duplicates), missing $miss_ok handled + $miss_dead dead";
	is($dup, 0, "$name: no payload handled twice");
	is($miss_ok, 0, "$name: every good payload handled");
	is($miss_dead, 0, "$name: every failing payload dead-lettered");
	is($dead_dup, 0, "$name: no payload dead-lettered twice");
	is($bad_got, 0, "$name: nothing handled that was not sent or always fails");
	is($bad_dead, 0, "$name: nothing dead-lettered that was not sent or can succeed");
	is($distinct + $dead, $sent, "$name: handled + dead-lettered = sent");
	$total{handled} += $distinct;
	$total{dead} += $dead;
	$total{dup} += $dup + $dead_dup;
	$total{missing} += $miss_ok + $miss_dead;
}
my $nacked = $node->safe_psql('app', 'select sum(messages_nacked) from pgque_worker.handler_stats');
is($nacked, 2 * $total{dead},
	'messages_nacked counts each failing payload exactly twice (max_retries 1): stats commit with the chunk');
note sprintf('soak: %d messages sent in %.1f s, quiescent %.1f s later; per consumer sum over 2 consumers: '
	  . 'handled %d, dead-lettered %d, duplicates %d, missing %d; nacks %s; '
	  . 'kills %d (ticker %d, dispatcher %d), immediate restarts %d',
	$sent, $send_secs, $q_secs, $total{handled}, $total{dead}, $total{dup}, $total{missing},
	$nacked, $kills_ticker + $kills_dispatcher, $kills_ticker, $kills_dispatcher, $restarts);
cmp_ok($kills_ticker + $kills_dispatcher + $restarts, '>', 0, 'faults were injected');

my $log = slurp_file($node->logfile);
my $segv = () = $log =~ /was terminated by signal (?!9)\d+/g;
is($segv, 0, 'no worker died of a signal other than our kill -9');

$node->stop;
done_testing();
