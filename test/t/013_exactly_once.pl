# Exactly once across the control plane's edges: a handler unregistered and
# registered again in the middle of a multi-chunk batch resumes after its
# last committed chunk; a batch finished by another session, or a consumer
# removed, in the middle of a batch rolls the dispatcher's chunk back; an
# existing consumer is not taken over by register_handler() unless asked.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $node = new_node('once', conf => q{
pgque_worker.chunk_messages = 10
pgque_worker.dispatch_poll_interval = '100ms'
});
$node->start;
$node->safe_psql('postgres', 'create database app');
install_pgque($node, 'app');
$node->safe_psql('app', q{
create table got (consumer text, payload text);
-- 50 ms a message: a 10-message chunk takes half a second
create function h_slow(m pgque.message) returns void language plpgsql as $$
begin
  insert into got values (m.batch_id::text, m.payload);
  perform pg_sleep(0.05);
end $$;
create function h_fast(m pgque.message) returns void language plpgsql as $$
begin
  insert into got values ('fast', m.payload);
end $$;
});

sub sq { return $node->safe_psql('app', $_[0]); }

# one transaction: one tick, one batch of $n events on queue $q
sub send_batch_of
{
	my ($q, $prefix, $n) = @_;
	sq(qq{select pgque.send_batch('$q', array_agg('$prefix' || i)) from generate_series(1, $n) i});
	return;
}

sub handled { return sq(qq{select count(*) from got where payload like '$_[0]%'}); }
sub distinct_handled { return sq(qq{select count(distinct payload) from got where payload like '$_[0]%'}); }

for my $qn (qw(qa qb qc qd qf))
{
	sq(qq{select pgque.create_queue('$qn'); select pgque.set_queue_config('$qn', 'ticker_max_count', '1')});
}

# ---- unregister and register again in the middle of a batch
sq(q{select pgque_worker.register_handler('qa', 'ca', 'h_slow(pgque.message)')});
send_batch_of('qa', 'a', 200);
wait_until($node, 'app', q{select count(*) >= 30 from got where payload like 'a%'}, 't',
	'three chunks of the batch handled');
sq(q{select pgque_worker.unregister_handler('qa', 'ca')});
my ($ret, $out, $err) = $node->psql('app',
	q{select pgque_worker.register_handler('qa', 'ca', 'h_slow(pgque.message)')});
isnt($ret, 0, 'registering a consumer that exists without a handler is refused');
like($err, qr/consumer "ca" of queue "qa" already exists/, '  with a clear error');
sq(q{select pgque_worker.register_handler('qa', 'ca', 'h_slow(pgque.message)', takeover => true)});
wait_until($node, 'app', q{select count(distinct payload) from got where payload like 'a%'}, '200',
	'every event of the batch handled after registering again');
# give a replay of the committed chunks the time it would take to show
wait_until($node, 'app',
	q{select batch_in_flight is null and batches >= 1 from pgque_worker.handler_stats where consumer_name = 'ca'},
	't', 'the batch finished');
is(handled('a'), '200', 're-registered in the middle of a batch: each event handled once');

# ---- an external client's consumer is not taken over silently
sq(q{select pgque.subscribe('qb', 'ext')});
($ret, $out, $err) = $node->psql('app',
	q{select pgque_worker.register_handler('qb', 'ext', 'h_fast(pgque.message)')});
isnt($ret, 0, 'register_handler on an existing consumer is refused');
like($err, qr/already exists.*\n.*DETAIL:.*\n.*HINT:.*takeover => true/s, '  with a detail and a hint');
is(sq(q{select count(*) from pgque_worker.handler where consumer_name = 'ext'}), '0',
	'  and nothing is registered');
sq(q{select pgque_worker.register_handler('qb', 'ext', 'h_fast(pgque.message)', takeover => true)});
sq(q{select pgque.send('qb', 'b1'::text)});
wait_until($node, 'app', q{select count(*) from got where payload = 'b1'}, '1',
	'takeover => true: the handler consumes it');

# ---- a batch finished by another session in the middle
sq(q{select pgque_worker.register_handler('qc', 'cc', 'h_slow(pgque.message)')});
# a second handler in the same database keeps being served throughout
sq(q{select pgque_worker.register_handler('qf', 'cf', 'h_fast(pgque.message)')});
send_batch_of('qc', 'c', 100);
wait_until($node, 'app', q{select count(*) >= 20 from got where payload like 'c%'}, 't',
	'two chunks of the batch handled');
my $batch = sq(q{select batch_in_flight from pgque_worker.handler_stats where consumer_name = 'cc'});
ok($batch ne '', "batch $batch is in flight");
is(sq(qq{select pgque.ack($batch)}), '1', 'another session finishes it');
my $at_ack = handled('c');
# The next chunk reads the subscription row before its handler runs and
# finds the batch closed: "not open any more", and the chunk is rolled back.
# (Until the check was a plain read it called pgque.next_batch(), whose
# SELECT ... FOR UPDATE in real PgQue 0.2 could raise "does not see tick"
# instead.)
wait_until($node, 'app',
	q{select last_error like '%is not open any more%' from pgque_worker.handler_stats where consumer_name = 'cc'},
	't', 'the dispatcher notices');
sq(q{select pgque.send('qf', 'f1'::text)});
wait_until($node, 'app', q{select count(*) from got where payload = 'f1'}, '1',
	'the other handler of the database is still served');
my $after = handled('c');
# at most the chunk in flight at the ack committed after it
cmp_ok($after, '<=', $at_ack + 10, "no chunk of the finished batch commits later ($at_ack at the ack, $after now)");
cmp_ok($after, '<', 100, 'the rest of the batch was not handled by the dispatcher');
is(distinct_handled('c'), $after, '  and nothing twice');

# ---- the consumer removed in the middle of a batch
sq(q{select pgque_worker.register_handler('qd', 'cd', 'h_slow(pgque.message)')});
send_batch_of('qd', 'd', 100);
wait_until($node, 'app', q{select count(*) >= 20 from got where payload like 'd%'}, 't',
	'two chunks of the batch handled');
sq(q{select pgque.unsubscribe('qd', 'cd')});
my $at_unsub = handled('d');
wait_until($node, 'app',
	q{select last_error is not null and errors > 0 from pgque_worker.handler_stats where consumer_name = 'cd'},
	't', 'the dispatcher notices the consumer is gone');
sq(q{select pgque.send('qf', 'f2'::text)});
wait_until($node, 'app', q{select count(*) from got where payload = 'f2'}, '1',
	'the other handler is still served');
cmp_ok(handled('d'), '<=', $at_unsub + 10, 'no chunk commits for a removed consumer after the chunk in flight');
is(distinct_handled('d'), handled('d'), '  and nothing twice');
is(sq(q{select count(*) from pg_stat_activity where datname = 'app' and backend_type = 'pgque_worker dispatcher'}),
	'1', 'one dispatcher, still running');

# ---- a chunk that keeps failing at COMMIT: retried a bounded number of
# times, narrowed by halves, and the one event whose handling makes the
# commit fail is nacked without calling the handler; every other event is
# handled once. The failure is injected in the real commit path
# (pgque_worker.debug_fail_commit_event: a pre-commit callback raises).
sq(q{select pgque.create_queue('qe'); select pgque.set_queue_config('qe', 'ticker_max_count', '1')});
# an event before the consumer exists: gives the id the next ones follow
my $probe = sq(q{select pgque.send('qe', 'probe'::text)});
my $bad = $probe + 7;
set_worker_conf($node, debug_fail_commit_event => $bad);
wait_until($node, 'app', q{select current_setting('pgque_worker.debug_fail_commit_event')}, $bad,
	'the injected failure is set');
sq(q{select pgque_worker.register_handler('qe', 'ce', 'h_fast(pgque.message)')});
is(sq(q{select string_agg(pgque.send('qe', 'e' || i)::text, ',' order by i) from generate_series(1, 10) i}),
	join(',', map { $probe + $_ } 1 .. 10), "events e1 .. e10 are $probe + 1 .. 10 (e7 is $bad)");
wait_until($node, 'app',
	q{select messages_nacked = 1 and batch_in_flight is null from pgque_worker.handler_stats where consumer_name = 'ce'},
	't', 'the batch finishes with one message nacked');
is(sq(q{select string_agg(payload, ',' order by substr(payload, 2)::int) from got where payload like 'e%'}),
	'e1,e2,e3,e4,e5,e6,e8,e9,e10', 'every other event handled exactly once');
like(sq(q{select last_error from pgque_worker.handler_stats where consumer_name = 'ce'}),
	qr/failed at commit 3 times/, 'the nack says why');
cmp_ok(sq(q{select errors from pgque_worker.handler_stats where consumer_name = 'ce'}), '>=', 3,
	'the commit failures were counted');
is(sq(qq{select count(*) from pgque.retry_queue where ev_id = $bad}) , '1', 'e7 waits in the retry queue');
set_worker_conf($node, debug_fail_commit_event => undef);

$node->stop;
done_testing();
