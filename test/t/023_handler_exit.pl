# A tenant's handler that ends the dispatcher's process: it sets
# exit_on_error (any role may) and raises, so PostgreSQL makes its error
# FATAL, which no subtransaction catches. The next dispatcher must narrow
# the call down and nack the event it ends on, as after the hard limit,
# back the handler off so the other handlers (after it in the round robin)
# are served, and not restart in a loop. Also: a handler's session-level
# advisory lock goes with its failed call; and, from PostgreSQL 17, a
# database's transaction_timeout does not end the workers' transactions.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $node = tenant_node('handlerexit', conf => "pgque_worker.dispatch_poll_interval = '200ms'");
my $pg17 = $node->safe_psql('app', q{select current_setting('server_version_num')::int >= 170000});
$node->safe_psql('app', q{
create table got (q text, payload text);
grant select, insert on got to tenant;
select pgque.create_queue(q) from unnest(array['qa', 'qb', 'qc']) q;
select pgque.set_queue_config(q, 'ticker_max_count', '1') from unnest(array['qa', 'qb', 'qc']) q;
select pgque.set_queue_config(q, 'ticker_max_lag', '10 ms') from unnest(array['qa', 'qb', 'qc']) q;
});
# The tenant's handlers. qa's ends the process on 'boom' (and, from 17, on
# 'ttl', with a transaction_timeout of its own); it is first in the round
# robin (handlers go by queue name). qb's records everything. qc's takes a
# session-level advisory lock and fails.
$node->safe_psql('app', q{
set role tenant;
create function ha(m pgque.message) returns void language plpgsql as $$
begin
  if m.payload = 'boom' then
    perform set_config('exit_on_error', 'on', true);
    perform 1 / 0;
  elsif m.payload = 'ttl' then
    perform set_config('transaction_timeout', '100ms', true);
    perform pg_sleep(1);
  elsif m.payload = 'slow' then
    perform pg_sleep(1.5);
  end if;
  insert into public.got values ('qa', m.payload);
end $$;
create function hb(m pgque.message) returns void language plpgsql as $$
begin
  insert into public.got values ('qb', m.payload);
end $$;
create function hc(m pgque.message) returns void language plpgsql as $$
begin
  perform pg_advisory_lock(4242);
  raise exception 'downstream is down';
end $$;
select pgque_worker.register_handler('qa', 'a', 'ha(pgque.message)', retry_after => '1 hour');
select pgque_worker.register_handler('qb', 'b', 'hb(pgque.message)');
});

my $dispatcher_starts = sub {
	my $log = slurp_file($node->logfile);
	my @n = ($log =~ /dispatcher started for database "app"/g);
	return scalar @n;
};
wait_until($node, 'postgres',
	q{select count(*) from pg_stat_activity where backend_type = 'pgque_worker dispatcher' and datname = 'app'},
	'1', 'the dispatcher');
my $starts_before = $dispatcher_starts->();

# 1. exit_on_error: qa's 'boom' between two good messages, qb's five after
$node->safe_psql('app', q{
select pgque.send('qa', p) from unnest(array['a1', 'boom', 'a2']) p;
select pgque.send('qb', 'b' || i) from generate_series(1, 5) i;
});
wait_until($node, 'app', q{select count(*) from got where q = 'qb'}, '5',
	"qb's five messages, although qa's handler ends the dispatcher");
wait_until($node, 'app', q{select string_agg(payload, ',' order by payload) from got where q = 'qa'},
	'a1,a2', "qa's good messages");
wait_until($node, 'app',
	q{select messages_nacked from pgque_worker.handler_stats where queue_name = 'qa'}, '1',
	"'boom' nacked");
is($node->safe_psql('app', q{select count(*) from got where payload = 'boom'}), '0',
	'the event that ends the process is never handled');
like($node->safe_psql('app', q{select last_error from pgque_worker.handler_stats where queue_name = 'qa'}),
	qr/ended the dispatcher's process: division by zero/,
	'last_error names the call and its error');
is($node->safe_psql('app', q{select count(*) from (select payload from got group by payload having count(*) > 1) d}),
	'0', 'every message once');
my $restarts = $dispatcher_starts->() - $starts_before;
cmp_ok($restarts, '>=', 1, "the dispatcher was ended and restarted ($restarts)");
cmp_ok($restarts, '<=', 3, 'and not in a loop');
# the process that came back serves everyone
$node->safe_psql('app', q{select pgque.send('qb', 'b6'); select pgque.send('qa', 'a3')});
wait_until($node, 'app', q{select count(*) from got where payload in ('b6', 'a3')}, '2',
	'later messages of both queues');

# 2. a session-level advisory lock taken by a failing handler is released
$node->safe_psql('app', q{
set role tenant;
select pgque_worker.register_handler('qc', 'c', 'hc(pgque.message)', retry_after => '1 hour');
});
$node->safe_psql('app', q{select pgque.send('qc', 'c1')});
wait_until($node, 'app',
	q{select errors > 0 or messages_nacked > 0 from pgque_worker.handler_stats where queue_name = 'qc'},
	't', "qc's handler failing");
wait_until($node, 'app', q{select pg_try_advisory_lock(4242)}, 't',
	"the failed handler's advisory lock released");
$node->safe_psql('app', q{select pgque_worker.unregister_handler('qc', 'c')});

# 2b. random()'s seed, set by one tenant's handler, does not reach the
# next handler's chunk (another tenant's, here the same role for brevity)
$node->safe_psql('app', q{
create table draws (v float8);
grant insert on draws to tenant;
select pgque.create_queue(q) from unnest(array['qd', 'qe']) q;
select pgque.set_queue_config(q, 'ticker_max_count', '1') from unnest(array['qd', 'qe']) q;
create function public.seeded() returns float8 language plpgsql as $$
begin perform setseed(0.42); return random(); end $$;
set role tenant;
create function hd(m pgque.message) returns void language plpgsql as $$
begin perform setseed(0.42); end $$;
create function he(m pgque.message) returns void language plpgsql as $$
begin insert into public.draws values (random()); end $$;
select pgque_worker.register_handler('qd', 'd', 'hd(pgque.message)');
select pgque_worker.register_handler('qe', 'e', 'he(pgque.message)');
});
for my $i (1 .. 5)
{
	# one commit, one tick of both queues: qd's chunk, then qe's, in one pass
	$node->safe_psql('app', qq{select pgque.send('qd', 'd$i'), pgque.send('qe', 'e$i')});
	wait_until($node, 'app', q{select count(*) from draws}, $i, "draw $i");
}
my $seeded = $node->safe_psql('app', q{select public.seeded()});
is($node->safe_psql('app', qq{select count(*) from draws where v = $seeded}), '0',
	"no draw is the one after the other handler's setseed(0.42) ($seeded)");

# 3. transaction_timeout (PostgreSQL 17 and later)
SKIP:
{
	skip 'transaction_timeout is new in PostgreSQL 17', 3 unless $pg17 eq 't';
	# a database's setting does not reach the workers' transactions
	$node->safe_psql('postgres', q{alter database app set transaction_timeout = '1s'});
	$node->safe_psql('app', q{select pgque_worker.wake_launcher()});
	# workers that read the setting: ended and started again
	$node->safe_psql('postgres', q{select pg_terminate_backend(pid) from pg_stat_activity
		where datname = 'app' and backend_type like 'pgque_worker%'});
	wait_until($node, 'postgres',
		q{select count(*) from pg_stat_activity where backend_type = 'pgque_worker dispatcher' and datname = 'app'},
		'1', 'the dispatcher, started again');
	my $nacked = $node->safe_psql('app',
		q{select messages_nacked from pgque_worker.handler_stats where queue_name = 'qa'});
	$node->safe_psql('app', q{select pgque.send('qa', 'slow')});
	wait_until($node, 'app', q{select count(*) from got where payload = 'slow'}, '1',
		'a 1.5 s handler call with the database at transaction_timeout 1s');
	is($node->safe_psql('app',
		q{select messages_nacked from pgque_worker.handler_stats where queue_name = 'qa'}),
		$nacked, 'the database at transaction_timeout 1s: a 1.5 s call handled, not nacked');
	# a handler's own transaction_timeout ends the process: nacked, the rest goes on
	$node->safe_psql('app', q{select pgque.send('qa', p) from unnest(array['ttl', 'a4']) p});
	wait_until($node, 'app', q{select count(*) from got where payload = 'a4'}, '1',
		'the message after one whose handler set transaction_timeout');
	is($node->safe_psql('app', q{select count(*) from got where payload = 'ttl'}), '0',
		"the handler's own transaction_timeout: that event not handled");
	like($node->safe_psql('app', q{select last_error from pgque_worker.handler_stats where queue_name = 'qa'}),
		qr/ended the dispatcher's process: terminating connection due to transaction timeout/,
		'and named in last_error');
}

# 5. a handler that ends the process on every message: its backoff doubles
# from one such call to the next (1, 2, 4, 8 s), not restarting at 1 s each
# time because the event it ended on was nacked (found by a review: 12
# events, 12 restarts in 14 s)
{
	$node->safe_psql('app', q{
	select pgque.create_queue('qe');
	select pgque.set_queue_config('qe', 'ticker_max_count', '1');
	set role tenant;
	create function h_every(m pgque.message) returns void language plpgsql as $$
	begin
	  perform set_config('exit_on_error', 'on', true);
	  raise exception 'always %', m.payload;
	end $$;
	select pgque_worker.register_handler('qe', 'e', 'h_every(pgque.message)', retry_after => '1 hour');
	});
	# one event at a time: each call ends the process once, then its event
	# is nacked after the handler's backoff
	my $took;
	for my $i (1 .. 4)
	{
		$node->safe_psql('app', qq{select pgque.send('qe', 'e$i')});
		$took = wait_until($node, 'app',
			q{select coalesce((select messages_nacked from pgque_worker.handler_stats where queue_name = 'qe'), 0)},
			$i, "event e$i, ending the process, nacked");
	}
	# the fourth in a row waits 8 s (+-20 %); about 1 s before
	cmp_ok($took, '>=', 4, "  the fourth after $took s: the backoff grew from one call to the next");
}

$node->stop;
done_testing();
