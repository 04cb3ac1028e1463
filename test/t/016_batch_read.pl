# How the dispatcher reads a batch: a batch that ends on a chunk boundary is
# acked by its last chunk (one event read ahead), not by an extra empty
# transaction; events are read through PgQue's own query text
# (batch_event_sql), and through get_batch_events() when that text cannot
# be read directly, with the same result: every event once, in order (also
# a batch across a table rotation, whose text reads two tables; planned on
# its own, our filter outside it, sorted once; a held cursor stores only
# the rows left); small
# batches share a chunk transaction; and with log_min_messages = debug1,
# ticks and chunks log their steps.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $node = new_node('bread', conf => q{
pgque_worker.chunk_messages = 10
shared_preload_libraries = 'pgque_worker,auto_explain'
});
$node->start;
$node->safe_psql('postgres', 'create database app');
install_pgque($node, 'app');
$node->safe_psql('app', q{
create table got (payload text, n bigserial);
create function h(m pgque.message) returns void language plpgsql as $$
begin
  insert into got (payload) values (m.payload);
end $$;
create function hb(ms pgque.message[]) returns void language plpgsql as $$
begin
  insert into got (payload) select x.payload from unnest(ms) x;
end $$;
select pgque.create_queue('qb');
select pgque.set_queue_config('qb', 'ticker_max_count', '1');
});

sub sq { return $node->safe_psql('app', $_[0]); }

# chunks of the handler so far that did not ack a batch
sub extra_chunks
{
	my ($consumer) = @_;
	return sq(qq{select coalesce(sum(chunks - batches), 0) from pgque_worker_internal.handler_stat
		where queue_name = 'qb' and consumer_name = '$consumer'});
}

# Registers a handler and lets it take a first message: PgQ counts the
# first event of a new queue as "new" only once its sequence has moved past
# the create-time tick, and a consumer's first batch may hold events sent
# before it subscribed. Returns its extra chunks after that.
sub register_warm
{
	my ($consumer, $fn, $batch) = @_;
	sq(qq{select pgque_worker.register_handler('qb', '$consumer', '$fn', batch => $batch)});
	sq(qq{select pgque.send('qb', 'warm-$consumer'::text)});
	wait_until($node, 'app', qq{select count(*) from got where payload = 'warm-$consumer'}, '1',
		"$consumer: a first message is handled");
	wait_until($node, 'app', qq{select count(*) from pgque.get_consumer_info('qb', '$consumer')
		where pending_events = 0 and current_batch is null}, '1', '  its batch is acked');
	return extra_chunks($consumer);
}

# one transaction: one batch of $n events
sub send_batch
{
	my ($tag, $n) = @_;
	sq(qq{select pgque.send_batch('qb', array(select '$tag-' || lpad(g::text, 3, '0')
		from generate_series(1, $n) g))});
}

# every event of $tag once, in order
sub all_once_in_order
{
	my ($tag, $n, $what) = @_;
	wait_until($node, 'app', qq{select count(*) from got where payload like '$tag-%'}, $n,
		"$what: $n events handled");
	is(sq(qq{select count(distinct payload) = $n
		and bool_and(payload = '$tag-' || lpad(r::text, 3, '0'))
		from (select payload, row_number() over (order by n) r from got
		      where payload like '$tag-%') s}), 't', "  once each, in order");
}

# ---- message handler
my $base = register_warm('cm', 'h(pgque.message)', 'false');
send_batch('m10', 10);
all_once_in_order('m10', 10, 'a batch of exactly one chunk');
wait_until($node, 'app', q{select count(*) from pgque.get_consumer_info('qb', 'cm')
	where pending_events = 0 and current_batch is null}, '1', '  its batch is acked');
is(extra_chunks('cm') - $base, 0, '  acked by the chunk that handled it: no extra transaction');

send_batch('m25', 25);
all_once_in_order('m25', 25, 'a batch of two and a half chunks');
wait_until($node, 'app', q{select count(*) from pgque.get_consumer_info('qb', 'cm')
	where pending_events = 0 and current_batch is null}, '1', '  its batch is acked');
is(extra_chunks('cm') - $base, 2, '  in 3 chunks');

send_batch('m30', 30);
all_once_in_order('m30', 30, 'a batch of exactly three chunks');
wait_until($node, 'app', q{select count(*) from pgque.get_consumer_info('qb', 'cm')
	where pending_events = 0 and current_batch is null}, '1', '  its batch is acked');
is(extra_chunks('cm') - $base, 4, '  in 3 chunks, the last one acking');
sq(q{select pgque_worker.unregister_handler('qb', 'cm')});
sq(q{truncate got});

# ---- batch handler, the same batches
$base = register_warm('cb', 'hb(pgque.message[])', 'true');
send_batch('b10', 10);
all_once_in_order('b10', 10, 'batch handler, one chunk');
wait_until($node, 'app', q{select count(*) from pgque.get_consumer_info('qb', 'cb')
	where pending_events = 0 and current_batch is null}, '1', '  its batch is acked');
is(extra_chunks('cb') - $base, 0, '  by that chunk');
send_batch('b20', 20);
all_once_in_order('b20', 20, 'batch handler, two chunks');
wait_until($node, 'app', q{select count(*) from pgque.get_consumer_info('qb', 'cb')
	where pending_events = 0 and current_batch is null}, '1', '  its batch is acked');
is(extra_chunks('cb') - $base, 1, '  by the second chunk');

# ---- small batches: once a chunk acks one, it goes on to the next ones,
# up to chunk_messages (10) messages, each batch acked with its own chunk
# part and a failing message nacked in its own batch
sq(q{
create table gs (payload text, n bigserial);
create function hs(m pgque.message) returns void language plpgsql as $$
begin
  if m.payload = 's4-2' then
    raise exception 'bad message %', m.payload;
  end if;
  insert into gs (payload) values (m.payload);
end $$;
select pgque.create_queue('qs');
select pgque.set_queue_config('qs', 'ticker_max_count', '1');
select pgque_worker.register_handler('qs', 'cs', 'hs(pgque.message)', enabled => false);
});
for my $b (1 .. 8)
{
	sq(qq{select pgque.send_batch('qs', array['s$b-1', 's$b-2', 's$b-3'])});
	sq(q{select pgque.ticker()});
}
sq(q{update pgque_worker.handler set enabled = true where queue_name = 'qs'});
wait_until($node, 'app', q{select count(*) from gs}, '23', 'small batches: 23 events handled');
wait_until($node, 'app', q{select count(*) from pgque.get_consumer_info('qs', 'cs')
	where pending_events = 0 and current_batch is null}, '1', '  every batch acked');
is(sq(q{select string_agg(payload, ',' order by n) from gs}),
	join(',', grep { $_ ne 's4-2' } map { my $b = $_; map { "s$b-$_" } 1 .. 3 } 1 .. 8),
	'  each once, in order, but the failing one');
my ($batches, $chunks, $nacked) = split /\|/, sq(q{select batches, chunks, messages_nacked
	from pgque_worker_internal.handler_stat where queue_name = 'qs' and consumer_name = 'cs'});
is($nacked, '1', '  the failing message nacked');
# 8 ticks of 3 events, behind: taken 2 ticks a batch (the first tick that
# reaches half a chunk, 5 events), in batches that share chunks
cmp_ok($batches, '>=', 2, "  in $batches batches");
cmp_ok($batches, '<=', 6, '  of several ticks each (8 ticks)');
cmp_ok($chunks, '<', $batches, "  taken by $chunks chunk transactions, fewer than the batches");
is(sq(q{select count(*) from pgque_worker_internal.handler_stat where errors > 0}), '0', '  no chunk failed');
sq(q{select pgque_worker.unregister_handler('qs', 'cs')});

# ---- a consumer behind by many ticks of one event takes several ticks a
# batch (next_batch_custom() with a minimum count of half a chunk): 40
# ticks in about 8 batches, not 40 (40 before), each event once, in order;
# a batch handler's array then holds events of several ticks
sq(q{
create table gt (payload text, batch_len int, n bigserial);
create function ht(ms pgque.message[]) returns void language plpgsql as $$
begin
  insert into gt (payload, batch_len) select x.payload, cardinality(ms) from unnest(ms) x;
end $$;
select pgque.create_queue('qt');
select pgque.set_queue_config('qt', 'ticker_max_count', '1');
select pgque_worker.register_handler('qt', 'ct', 'ht(pgque.message[])', batch => true, enabled => false);
});
for my $i (1 .. 40)
{
	sq(sprintf(q{select pgque.send('qt', 't-%03d'::text)}, $i));
	sq(q{select pgque.ticker('qt')});
}
my $ticks = sq(q{select count(*) from pgque.tick t join pgque.queue q on q.queue_id = t.tick_queue
	where q.queue_name = 'qt'});
cmp_ok($ticks, '>=', 40, "behind by many ticks: $ticks ticks of queue qt");
sq(q{update pgque_worker.handler set enabled = true where queue_name = 'qt'});
wait_until($node, 'app', q{select count(*) from gt}, '40', '  40 events handled');
is(sq(q{select count(distinct payload) = 40 and bool_and(payload = 't-' || lpad(r::text, 3, '0'))
	from (select payload, row_number() over (order by n) r from gt) s}), 't', '  once each, in order');
wait_until($node, 'app', q{select count(*) from pgque.get_consumer_info('qt', 'ct')
	where pending_events = 0 and current_batch is null}, '1', '  every batch acked');
my $tbatches = sq(q{select batches from pgque_worker_internal.handler_stat
	where queue_name = 'qt' and consumer_name = 'ct'});
cmp_ok($tbatches, '<=', 10, "  in $tbatches batches, not one per tick");
cmp_ok(sq(q{select max(batch_len) from gt}), '>=', 5, '  a handler call holds events of several ticks');
sq(q{select pgque_worker.unregister_handler('qt', 'ct')});

# ---- but not while the handler nacks: PgQue's nack() reads the whole
# batch per message, so after a chunk with a nack the consumer takes one
# tick a batch again. 40 ticks of one failing event: only the batches of
# the first chunk (10 events at most) merge ticks, so at least 30 batches
# follow (31 seen; 7 batches in all when failures merged too).
sq(q{
create function hn(m pgque.message) returns void language plpgsql as $$
begin
  raise exception 'refused %', m.payload;
end $$;
select pgque.create_queue('qn');
select pgque.set_queue_config('qn', 'ticker_max_count', '1');
select pgque_worker.register_handler('qn', 'cn', 'hn(pgque.message)', retry_after => '1 hour',
  enabled => false);
});
for my $i (1 .. 40)
{
	sq(sprintf(q{select pgque.send('qn', 'n-%03d'::text)}, $i));
	sq(q{select pgque.ticker('qn')});
}
sq(q{update pgque_worker.handler set enabled = true where queue_name = 'qn'});
wait_until($node, 'app', q{select messages_nacked from pgque_worker_internal.handler_stat
	where queue_name = 'qn' and consumer_name = 'cn'}, '40', 'a handler nacking every event: 40 nacked');
wait_until($node, 'app', q{select count(*) from pgque.get_consumer_info('qn', 'cn')
	where pending_events = 0 and current_batch is null}, '1', '  every batch acked');
my $nbatches = sq(q{select batches from pgque_worker_internal.handler_stat
	where queue_name = 'qn' and consumer_name = 'cn'});
cmp_ok($nbatches, '>=', 30, "  in $nbatches batches: ticks stop merging once a chunk nacks");
sq(q{select pgque_worker.unregister_handler('qn', 'cn')});

# ---- with log_min_messages = debug1 the worker logs where a tick's and a
# chunk's time went (bench/run.sh reads these lines)
$node->safe_psql('postgres', q{alter system set log_min_messages = debug1});
$node->safe_psql('postgres', 'select pg_reload_conf()');
my $lpos = log_position($node);
send_batch('d10', 10);
all_once_in_order('d10', 10, 'with the step logs on');
ok(wait_for_log($node,
		qr/pgque_worker chunk: queue "qb" consumer "cb" events 10 batch_end 1 next_batch_ms [0-9.]+ progress_ms [0-9.]+ cursor_ms [0-9.]+ fetch_ms [0-9.]+ handler_ms [0-9.]+ ack_ms [0-9.]+ stats_ms [0-9.]+ commit_ms [0-9.]+ woke_ms -?[0-9.]+ start [0-9]+ part 1 of 1/,
		$lpos), '  the chunk logs its steps');
ok(wait_for_log($node,
		qr/pgque_worker tick: targeted [01] ticks [0-9]+ woke_ms -?[0-9.]+ tick_ms [0-9.]+ policy_ms [0-9.]+ at [0-9]+/,
		$lpos), '  the tick logs its steps');
$node->safe_psql('postgres', q{alter system reset log_min_messages});
$node->safe_psql('postgres', 'select pg_reload_conf()');
wait_until($node, 'app', q{select count(*) from pgque.get_consumer_info('qb', 'cb')
	where pending_events = 0 and current_batch is null}, '1', '  its batch is acked');
$base = extra_chunks('cb');

# ---- a batch across a table rotation: PgQue's query text reads both event
# tables (UNION ALL), and the cursor reads it directly all the same
{
	my $rpos = log_position($node);
	sq(q{
	create table gr (payload text, batch_len int, n bigserial);
	create function hr(ms pgque.message[]) returns void language plpgsql as $$
	begin
	  insert into gr (payload, batch_len) select x.payload, cardinality(ms) from unnest(ms) x;
	end $$;
	select pgque.create_queue('qr');
	select pgque.set_queue_config('qr', 'ticker_max_count', '100000');
	select pgque.set_queue_config('qr', 'ticker_max_lag', '1 hour');
	select pgque.set_queue_config('qr', 'ticker_idle_period', '1 hour');
	});
	# PgQ rotates only once every consumer's last tick is newer than the
	# last switch: one subscribed at the queue's first tick (made by
	# create_queue, before the switch it records) holds rotation off until
	# it consumes. So the consumer subscribes after the ticker's own first
	# ticks of the new queue (under load, it had come first: no rotation).
	wait_until($node, 'app',
		q{select count(*) >= 2 from pgque.tick t join pgque.queue q on q.queue_id = t.tick_queue where q.queue_name = 'qr'},
		't', 'the new queue has ticks of its own');
	sq(q{
	select pgque_worker.register_handler('qr', 'cr', 'hr(pgque.message[])', batch => true, enabled => false);
	select pgque.send_batch('qr', array['r-1', 'r-2', 'r-3']);
	});
	my $switched = sq(q{select queue_switch_time from pgque.get_queue_info('qr')});
	$node->safe_psql('postgres', q{alter system set pgque_worker.maint_interval = '200ms'});
	$node->safe_psql('postgres', q{alter system set pgque_worker.rotate_interval = '100ms'});
	$node->safe_psql('postgres', 'select pg_reload_conf()');
	sq(q{select pgque.set_queue_config('qr', 'rotation_period', '1 second')});
	wait_until($node, 'app', qq{select queue_switch_time <> '$switched' from pgque.get_queue_info('qr')},
		't', 'rotation: the queue switched to its next table');
	sq(q{select pgque.set_queue_config('qr', 'rotation_period', '1 day')});
	$node->safe_psql('postgres', q{alter system reset pgque_worker.maint_interval});
	$node->safe_psql('postgres', q{alter system reset pgque_worker.rotate_interval});
	$node->safe_psql('postgres', 'select pg_reload_conf()');
	sq(q{select pgque.send_batch('qr', array['r-4', 'r-5', 'r-6'])});
	sq(q{select pgque.force_next_tick('qr')});
	sq(q{select pgque.ticker('qr')});
	# open the consumer's batch here: the handler then takes the same one
	my $b = sq(q{select pgque.next_batch('qr', 'cr')});
	isnt($b, '', '  one batch holds the events sent before and after the switch');
	like(sq(qq{select pgque.batch_event_sql($b)}), qr/union all/i, '  and its query reads both tables');
	sq(q{update pgque_worker.handler set enabled = true where queue_name = 'qr'});
	wait_until($node, 'app', q{select count(*) from gr}, '6', '  the handler gets its 6 events');
	is(sq(q{select string_agg(payload || ':' || batch_len, ',' order by n) from gr}),
		'r-1:6,r-2:6,r-3:6,r-4:6,r-5:6,r-6:6', '  once each, in order, in one call');
	wait_until($node, 'app', q{select count(*) from pgque.get_consumer_info('qr', 'cr')
		where pending_events = 0 and current_batch is null}, '1', '  its batch is acked');
	unlike(log_since($node, $rpos), qr/reading batches through pgque\.get_batch_events\(\)/,
		'  read directly, not through get_batch_events()');
	sq(q{select pgque_worker.unregister_handler('qr', 'cr')});
}

# ---- the batch cursor plans PgQue's query on its own, as get_batch_events()
# would: our filter (events after the batch's progress) stays outside it,
# where it cannot change the plan of PgQue's scan, and PgQue's ORDER BY is
# the only sort (auto_explain logs the cursor's plan when it closes)
{
	$node->safe_psql('postgres', q{alter system set auto_explain.log_min_duration = 0});
	$node->safe_psql('postgres', q{alter system set auto_explain.log_nested_statements = on});
	$node->safe_psql('postgres', 'select pg_reload_conf()');
	# the dispatcher picks the settings up at its next pass after SIGHUP:
	# batches until one's cursor plan is logged, up to the deadline
	my ($ppos, $logged, $round) = (undef, 0, 0);
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (!$logged && time < $deadline)
	{
		$round++;
		$ppos = log_position($node);
		send_batch("p$round", 10);
		wait_until($node, 'app', qq{select count(*) from got where payload like 'p$round-%'}, '10',
			"with the cursor plans logged ($round): 10 events handled");
		wait_until($node, 'app', q{select count(*) from pgque.get_consumer_info('qb', 'cb')
			where pending_events = 0 and current_batch is null}, '1', '  its batch is acked');
		$logged = log_since($node, $ppos) =~ /Query Text: select \(e\.ev_id, \$1::int8/;
	}
	ok($logged, '  the cursor\'s plan is logged');
	$node->safe_psql('postgres', q{alter system reset auto_explain.log_min_duration});
	$node->safe_psql('postgres', q{alter system reset auto_explain.log_nested_statements});
	$node->safe_psql('postgres', 'select pg_reload_conf()');
	my ($plan) = log_since($node, $ppos) =~
		/Query Text: select \(e\.ev_id, \$1::int8[^\n]*\n(.*?)(?=\n\S|\z)/s;
	$plan //= '';
	# (PostgreSQL 18 logs the parameters first)
	like($plan, qr/\A(?:\s*Query Parameters:[^\n]*\n)?\s*Subquery Scan on e\b[^\n]*\n\s*Filter: \(e\.ev_id > /,
		'  our filter applies to the fenced query\'s rows') or diag($plan);
	my @pushed = grep { /Filter:.*ev_id >/ && !/Filter: \(e\.ev_id > / } split /\n/, $plan;
	is(scalar(@pushed), 0, '  and is not pushed into PgQue\'s scan') or diag($plan);
	my @sorts = grep { /(?:^|->)\s*Sort\s+\(/ } split /\n/, $plan;
	is(scalar(@sorts), 1, '  one sort: PgQue\'s') or diag($plan);
}

# ---- a batch longer than a chunk: at the first chunk's commit PostgreSQL
# stores the cursor's rows not yet read, not the whole batch (a NO SCROLL
# cursor), and sorts without random access. With pgque_worker.work_mem at
# its minimum both spill (the server's work_mem stays at its 4 MB default,
# in which they would not), and log_temp_files shows their sizes when they
# go: first the sort's (all 2,000 events), then the stored rows' (999 of
# them, once the batch is acked; a scrollable cursor stored all 2,000,
# about 1.15 x the sort's file).
{
	$node->safe_psql('postgres', q{alter system set log_temp_files = 0});
	set_worker_conf($node, chunk_messages => 1000, work_mem => '64kB');
	my $dpid = sq(q{select pid from pg_stat_activity where backend_type = 'pgque_worker dispatcher' and datname = 'app'});
	my $round = 0;

	# the dispatcher takes the settings at its next pass after SIGHUP:
	# batches of 2,000 until one is taken in two chunks of 1,000, up to the
	# deadline. Returns the log position before that batch.
	my $two_chunk_batch = sub {
		my ($what) = @_;
		my ($tpos, $two) = (undef, 0);
		my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
		while (!$two && time < $deadline)
		{
			$round++;
			$tpos = log_position($node);
			my $chunks0 = sq(q{select chunks from pgque_worker_internal.handler_stat where queue_name = 'qb' and consumer_name = 'cb'});
			sq(qq{select pgque.send_batch('qb', array(select 't$round-' || g || '-' || repeat('x', 200)
				from generate_series(1, 2000) g))});
			wait_until($node, 'app', qq{select count(*) from got where payload like 't$round-%'}, '2000',
				"$what ($round): handled");
			wait_until($node, 'app', q{select count(*) from pgque.get_consumer_info('qb', 'cb')
				where pending_events = 0 and current_batch is null}, '1', '  its batch is acked');
			$two = sq(q{select chunks from pgque_worker_internal.handler_stat where queue_name = 'qb' and consumer_name = 'cb'})
			  - $chunks0 == 2;
		}
		return ($tpos, $two);
	};

	my ($tpos, $two) = $two_chunk_batch->('a batch of 2,000 at chunk_messages 1,000, pgque_worker.work_mem 64kB');
	ok($two, '  in two chunks');
	# the cursor's files: logged under the dispatcher's own statement, not
	# in the context of the handler's (whose unnest() spills too)
	my $cursor_file = qr/\[$dpid\] LOG:  temporary file: path "[^"]*", size (\d+)\n[^\n]*\[$dpid\] STATEMENT:  pgque_worker: dispatching queue qb to cb\n/;
	ok(wait_for_log($node, qr/$cursor_file(?:.*\n)*?[^\n]*$cursor_file/, $tpos),
		'  the sort and the stored rows spilled');
	my @sizes = log_since($node, $tpos) =~ /$cursor_file/g;
	note "temporary files of the batch cursor: @sizes";
	cmp_ok($sizes[1], '<', 0.85 * $sizes[0],
		"  the stored rows are the 999 not yet read, not all 2,000 ($sizes[1] against the sort's $sizes[0] bytes)");

	# at its default (16 MB) nothing of the dispatcher spills, though the
	# server's work_mem is at its minimum: every temporary file goes before
	# the chunk that acks the batch commits, so the log has them all by
	# then. A batch may still meet the old setting (the reload reaches the
	# dispatcher through the postmaster): up to three batches.
	$node->safe_psql('postgres', q{alter system set work_mem = '64kB'});
	set_worker_conf($node, work_mem => undef);
	my @files;
	for my $try (1 .. 3)
	{
		($tpos, $two) = $two_chunk_batch->('the same at the server\'s work_mem 64kB, pgque_worker.work_mem at its default');
		@files = log_since($node, $tpos) =~ /\[$dpid\] LOG:  temporary file: path "[^"]*", size (\d+)/g;
		last if !@files;
		note "batch $try: temporary files of sizes @files";
	}
	ok($two, '  in two chunks');
	is(scalar(@files), 0, '  the dispatcher wrote no temporary file') or diag("sizes: @files");
	$node->safe_psql('postgres', q{alter system reset work_mem});
	$node->safe_psql('postgres', q{alter system reset log_temp_files});
	set_worker_conf($node, chunk_messages => undef);
	$base = extra_chunks('cb');
}

# ---- PgQue's query text cannot be read directly (here: its columns renamed,
# which get_batch_events() does not mind, as it reads them by position)
my $pos = log_position($node);
sq(q{
alter function pgque.batch_event_sql(bigint) rename to batch_event_sql_orig;
create function pgque.batch_event_sql(x_batch_id bigint) returns text
language sql as $$
  select 'select * from (' || pgque.batch_event_sql_orig($1) || ') s (c1, c2, c3, c4, c5, c6, c7, c8, c9, c10)'
$$;
});
send_batch('f25', 25);
all_once_in_order('f25', 25, 'through get_batch_events()');
ok(wait_for_log($node, qr/reading batches through pgque\.get_batch_events\(\) in database "app"/, $pos),
	'  which the log says once');
wait_until($node, 'app', q{select count(*) from pgque.get_consumer_info('qb', 'cb')
	where pending_events = 0 and current_batch is null}, '1', '  its batch is acked');
is(extra_chunks('cb') - $base, 2, '  in 3 chunks');
is(sq(q{select count(*) from pgque_worker_internal.handler_stat where errors > 0}), '0', 'no chunk failed');

$node->stop;
done_testing();
