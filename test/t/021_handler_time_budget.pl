# A handler that times out on every message holds its database's dispatcher
# no longer than about three handler_timeouts a chunk. Before, after a
# chunk's call timed out the dispatcher tried each of its messages alone
# under the full timeout, all in one turn: a tenant's handler that sleeps
# made every other handler of the database wait handler_timeout x the
# chunk's messages (20 messages at 3 s: 61 s). Now narrowing down a chunk's
# failures stops once it has taken handler_timeout and settled a message;
# the chunk commits what it settled and the rest comes in later, smaller
# chunks, with the other handlers served in between. Counted here in what
# the slow handler had nacked when another queue's message was delivered:
# the whole chunk before, one or two messages now.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $node = new_node('budget', conf => q{
pgque_worker.handler_timeout = 300
});
$node->start;
$node->safe_psql('postgres', 'create database app');
install_pgque($node, 'app');
$node->safe_psql('app', q{
create table fast_got (payload text, slow_nacked bigint, at timestamptz default clock_timestamp());
create function h_fast(m pgque.message) returns void language sql as $$
  insert into fast_got (payload, slow_nacked)
  select m.payload, coalesce(sum(messages_nacked), 0) from pgque_worker.handler_stats
   where queue_name in ('slow', 'slowb') $$;
create function h_sleep(m pgque.message) returns void language plpgsql as $$
begin
  perform pg_sleep(3600);
end $$;
create function h_sleep_batch(ms pgque.message[]) returns void language plpgsql as $$
begin
  perform pg_sleep(3600);
end $$;
select pgque.create_queue('fast');
select pgque.set_queue_config('fast', 'ticker_max_count', '1');
select pgque_worker.register_handler('fast', 'c', 'h_fast(pgque.message)');
select pgque.create_queue('slow');
select pgque.create_queue('slowb');
});

sub sq { return $node->safe_psql('app', $_[0]); }

# A queue's first event does not count toward ticker_max_count (PgQue
# reads its event sequence's last value, the same before and after the
# first nextval): it waits for an idle tick. One first, out of the way.
sq(q{select pgque.send('fast', 'first')});
wait_until($node, 'app', q{select count(*) from fast_got}, '1', 'queue fast delivers');

# Registers $handler for $queue, sends it $n messages (one batch), waits until its handler is in
# its first chunk, then sends one message to queue fast and returns what
# the slow handlers had nacked when it was delivered, and how long it took.
sub fast_while_slow
{
	my ($queue, $n, $handler, $batch) = @_;
	sq(qq{select pgque_worker.register_handler('$queue', 'c', '$handler', batch => $batch,
		retry_after => '1 hour')});
	sq(qq{select pgque.send_batch('$queue', array(select 'm' || g from generate_series(1, $n) g))});
	wait_until($node, 'app', qq{select count(*) > 0 from pg_stat_activity
		where query like 'pgque_worker: dispatching queue $queue %' and state = 'active'},
		't', "the handler of $queue is in a chunk");
	my $t0 = time;
	sq(qq{select pgque.send('fast', 'while $queue')});
	wait_until($node, 'app', qq{select count(*) from fast_got where payload = 'while $queue'}, '1',
		"the message of queue fast is delivered while the handler of $queue times out");
	my $secs = time - $t0;
	return (sq(qq{select slow_nacked from fast_got where payload = 'while $queue'}), $secs);
}

# What PgQue holds for retry of $queue (one row an event: a second nack of
# one is not seen here): rows / distinct payloads / of
# them the test's (m1, m2, ...).
sub nacked_payloads
{
	my ($queue) = @_;
	return sq(qq{select count(*) || '/' || count(distinct r.ev_data) || '/' ||
		count(distinct r.ev_data) filter (where r.ev_data in (select 'm' || g from generate_series(1, 1000) g))
		from pgque.retry_queue r join pgque.queue q on q.queue_id = r.ev_queue
		where q.queue_name = '$queue'});
}

my $log = log_position($node);

# ---- a message handler: 40 messages, each timing out
my ($nacked, $secs) = fast_while_slow('slow', 40, 'h_sleep(pgque.message)', 'false');
note sprintf('queue fast delivered %.1f s after sending, with %d of 40 slow messages nacked', $secs, $nacked);
# (one or two as a rule; each more is a 300 ms chunk the fast message's tick
# or chunk came after: 10 leaves a slow machine its margin, the whole
# chunk of 40 still fails)
cmp_ok($nacked, '<=', 10,
	"another queue's message waited for $nacked of the 40 timing-out messages, not the whole chunk");
wait_until($node, 'app', q{select messages_nacked || '/' || messages_ok from pgque_worker.handler_stats
	where queue_name = 'slow'}, '40/0', 'every message of the slow handler is nacked, once');
is(nacked_payloads('slow'), '40/40/40', 'PgQue holds each of the 40 payloads for retry (how often each was nacked: the counters above)');
cmp_ok(sq(q{select chunks from pgque_worker_internal.handler_stat where queue_name = 'slow'}), '>=', 20,
	'in small chunks once the first ran out of time');
like(log_since($node, $log),
	qr/handler of queue "slow", consumer "c" in database "app" timed out; its chunk ended after \d+ messages/,
	'the log says the chunk was cut short');

# ---- a batch handler: 20 messages, every call timing out
($nacked, $secs) = fast_while_slow('slowb', 20, 'h_sleep_batch(pgque.message[])', 'true');
note sprintf('queue fast delivered %.1f s after sending, with %d of 20 slowb messages nacked', $secs, $nacked - 40);
cmp_ok($nacked - 40, '<=', 10,
	'another queue\'s message waited for ' . ($nacked - 40) . ' of the 20 messages of a timing-out batch handler');
wait_until($node, 'app', q{select messages_nacked || '/' || messages_ok from pgque_worker.handler_stats
	where queue_name = 'slowb'}, '20/0', 'every message of the slow batch handler is nacked, once');
is(nacked_payloads('slowb'), '20/20/20', 'PgQue holds each of the 20 payloads for retry');

# ---- a handler that recovers gets its chunks back to full size (doubling)
my $chunks0 = sq(q{select chunks from pgque_worker_internal.handler_stat where queue_name = 'slow'});
sq(q{create or replace function h_sleep(m pgque.message) returns void language plpgsql as $$
begin
  if m.payload = 'm3' then
    perform pg_sleep(3600);
  end if;
end $$});
sq(q{select pgque.send_batch('slow', array(select 'm' || g from generate_series(1, 500) g))});
wait_until($node, 'app', q{select messages_nacked || '/' || messages_ok from pgque_worker.handler_stats
	where queue_name = 'slow'}, '41/499', 'one hung message among 500: it alone is nacked');
my $chunks = sq(q{select chunks from pgque_worker_internal.handler_stat where queue_name = 'slow'}) - $chunks0;
cmp_ok($chunks, '<=', 20, "500 messages in $chunks chunks: the chunks grew back");

# ---- a batch handler stopped at the hard limit: the events of its call
# are narrowed down again by the next dispatcher, and once the budget has
# cut its chunks to one message, each is still called, not nacked unheard.
# The call of 9 events hangs once (ignoring its cancel, on 'hang'); 'slow'
# times out on every call. Before the fix, 'a' (alone in the chunk after
# the cut) was nacked without a call: 2 nacked, 'a' not delivered.
sq(q{
create function ignore_cancel_forever() returns void language plpgsql as $$
begin
  loop
    begin
      perform pg_sleep(0.05);
    exception when query_canceled then null;
    end;
  end loop;
end $$;
create sequence hang_once;
create table hb_got (payload text);
create function h_hang_batch(ms pgque.message[]) returns void language plpgsql as $$
begin
  if exists (select 1 from unnest(ms) m where m.payload = 'hang') and nextval('hang_once') = 1 then
    perform ignore_cancel_forever();
  end if;
  if exists (select 1 from unnest(ms) m where m.payload = 'slow') then
    perform pg_sleep(3600);
  end if;
  insert into hb_got select m.payload from unnest(ms) m;
end $$;
select pgque.create_queue('hq');
select pgque_worker.register_handler('hq', 'c', 'h_hang_batch(pgque.message[])', batch => true,
	retry_after => '1 hour');
});
$log = log_position($node);
sq(q{select pgque.send_batch('hq', array['slow', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'hang'])});
wait_until($node, 'app', q{select string_agg(payload, ',' order by payload) from hb_got},
	'a,b,c,d,e,f,g,hang', 'every event of the stopped call but the slow one is handled');
like(log_since($node, $log), qr/handler ignored cancellation/,
	'the call was stopped at the hard limit');
wait_until($node, 'app', q{select messages_nacked || '/' || messages_ok from pgque_worker.handler_stats
	where queue_name = 'hq'}, '1/8', 'only the slow event is nacked');
is(sq(q{select count(*) from hb_got}), '8', 'each handled once');

is(nacked_payloads('hq'), '1/1/0', 'PgQue holds the slow one alone for retry');

# ---- handlers that hang on some events every time (ignoring the cancel):
# each is nacked alone after the dispatcher was stopped in calls that held
# it, and every other event is handled. Before, a batch handler's stops
# repeated the same call (the chunk was narrowed down from its start again,
# calling the half that hung again), and a message handler's went back and
# forth between two events that hang (the nack of one was not committed
# when the dispatcher was stopped on the other): restarts for good, nothing
# of the queue handled.
sq(q{
create table hang_got (queue text, payload text);
create function h_hang_always(ms pgque.message[]) returns void language plpgsql as $$
begin
  if exists (select 1 from unnest(ms) m where m.payload like 'hang%') then
    perform ignore_cancel_forever();
  end if;
  insert into hang_got select 'hb', m.payload from unnest(ms) m;
end $$;
create function h_hang_always_msg(m pgque.message) returns void language plpgsql as $$
begin
  if m.payload like 'hang%' then
    perform ignore_cancel_forever();
  end if;
  insert into hang_got values ('hm', m.payload);
end $$;
select pgque.create_queue('hb');
select pgque.create_queue('hm');
select pgque_worker.register_handler('hb', 'c', 'h_hang_always(pgque.message[])', batch => true,
	retry_after => '1 hour');
select pgque_worker.register_handler('hm', 'c', 'h_hang_always_msg(pgque.message)',
	retry_after => '1 hour');
});
sq(q{select pgque.send_batch('hb', array['a', 'b', 'hang', 'c'])});
wait_until($node, 'app', q{select string_agg(payload, ',' order by payload) from hang_got where queue = 'hb'},
	'a,b,c', 'a batch handler hanging on one event every time: the others are handled');
wait_until($node, 'app', q{select messages_nacked || '/' || messages_ok from pgque_worker.handler_stats
	where queue_name = 'hb'}, '1/3', 'the event it hangs on is nacked');
is(nacked_payloads('hb'), '1/1/0', 'PgQue holds that one for retry');
sq(q{select pgque.send_batch('hm', array['x', 'hang1', 'hang2', 'y'])});
wait_until($node, 'app', q{select string_agg(payload, ',' order by payload) from hang_got where queue = 'hm'},
	'x,y', 'a message handler hanging on two events every time: the others are handled');
wait_until($node, 'app', q{select messages_nacked || '/' || messages_ok from pgque_worker.handler_stats
	where queue_name = 'hm'}, '2/2', 'the two it hangs on are nacked');
my $restarts = () = log_since($node, $log) =~ /handler ignored cancellation for \d+ ms \(2 x pgque_worker.handler_timeout\); the dispatcher was restarted/g;
note "dispatcher restarts by the hard limit in this part and the one before: $restarts";
is(sq(q{select count(*) || '/' || count(distinct (queue, payload)) from hang_got}), '5/5', 'each handled once');

$node->stop;
done_testing();
