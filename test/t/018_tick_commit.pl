# The ticker's PgQue calls (ticks, maintenance) commit without waiting for
# their WAL flush, nor for a synchronous standby: with synchronous
# replication to a standby that never answers (every synchronous commit
# waits for ever), the worker still ticks, and a consumer that commits with
# synchronous_commit = local gets its events. Before, the tick's
# transaction waited for the standby and stayed invisible: no batch was
# ever ready. The dispatcher's chunks still commit synchronously.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

# (max_wal_senders > 0: synchronous replication is possible)
my $node = new_node('tickcommit', allows_streaming => 1);
$node->start;
$node->safe_psql('postgres', 'create database app');
install_pgque($node, 'app');

# Every session of this test's own commits locally.
$ENV{PGOPTIONS} = '-c synchronous_commit=local';
sub sq { return $node->safe_psql('app', $_[0]); }

sq(q{create table rcv (p text);
create table got (payload text);
create function h(m pgque.message) returns void language plpgsql as $$
begin insert into got values (m.payload); end $$;
select pgque.create_queue('q');
select pgque.set_queue_config('q', 'ticker_max_count', '1');
select pgque.subscribe('q', 'c');
select pgque.create_queue('qh');
select pgque.set_queue_config('qh', 'ticker_max_count', '1');
select pgque_worker.register_handler('qh', 'ch', 'h(pgque.message)');});

# From the start of the server on (the checkpointer applies the setting at
# its start, before anything else commits; a reload would leave a moment in
# which commits do not wait yet), a synchronous commit waits for a standby
# that never comes.
$node->append_conf('postgresql.conf', q{synchronous_standby_names = 'phantom'});
$node->restart;
wait_until($node, 'app',
	q{select count(*) from pg_stat_activity where backend_type in ('pgque_worker ticker', 'pgque_worker dispatcher')},
	'2', 'the ticker and the dispatcher');

for my $i (1 .. 3)
{
	sq(qq{select pgque.send('q', 'm$i')});
	# receive (and ack) batches until the event is in
	wait_until($node, 'app', qq{with i as (insert into rcv select p from public.take('q', 'c') p returning p)
		select count(*) from (select p from rcv union all select p from i) x where p = 'm$i'},
		'1', "the event of send $i");
	pass("send $i ticked and delivered with a synchronous standby that never answers");
}
is(sq(q{select string_agg(p, ',' order by p) from rcv}), 'm1,m2,m3', 'each event once');

# The chunk that consumes a tick still commits synchronously: a handler's
# work and its ack wait for the standby like any other commit.
sq(q{select pgque.send('qh', 'h1')});
eval {
	wait_until($node, 'app',
		q{select count(*) from pg_stat_activity where backend_type = 'pgque_worker dispatcher' and wait_event = 'SyncRep'},
		'1', 'the chunk waiting for the standby');
	1;
} or do {
	diag($node->safe_psql('postgres', q{select backend_type, wait_event, state, query from pg_stat_activity where backend_type like 'pgque_worker%'}));
	diag(sq(q{select * from pgque_worker.handler_stats}));
	die $@;
};
pass('the chunk waits for the standby');
is(sq(q{select count(*) from got}), '0', "the handler's work is not visible while its commit waits");

# No standby required any more: the waiting commit goes through.
$node->safe_psql('postgres', q{alter system set synchronous_standby_names = ''});
$node->safe_psql('postgres', 'select pg_reload_conf()');
wait_until($node, 'app', q{select string_agg(payload, ',') from got}, 'h1',
	'the chunk committed once the standby is no longer required');
pass('the chunk committed once the standby is no longer required');

$node->stop;
done_testing();
