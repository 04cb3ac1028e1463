# A tick of one queue concerns the handlers of that queue alone: the
# dispatcher does not ask PgQue for a batch (next_batch) for handlers of
# queues that were not ticked, and those handlers still get their messages
# when their own queue ticks.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $nother = 10;
my $nsend = 20;
my $node = new_node('idleh', conf => q{
track_functions = 'all'
});
$node->start;
$node->safe_psql('postgres', 'create database app');
install_pgque($node, 'app');

sub sq { return $node->safe_psql('app', $_[0]); }

sq(qq{
create table got (queue text, payload text);
create function h(m pgque.message) returns void language plpgsql as \$\$
begin
  insert into got values (m.type, m.payload);
end \$\$;
select pgque.create_queue('other_' || i) from generate_series(1, $nother) i;
-- no idle ticks of the other queues during the test
select pgque.set_queue_config('other_' || i, 'ticker_max_lag', '1 hour') from generate_series(1, $nother) i;
select pgque.set_queue_config('other_' || i, 'ticker_idle_period', '1 hour') from generate_series(1, $nother) i;
select pgque.set_queue_config('other_' || i, 'ticker_max_count', '1') from generate_series(1, $nother) i;
select pgque_worker.register_handler('other_' || i, 'c', 'h(pgque.message)') from generate_series(1, $nother) i;
select pgque.create_queue('busy');
select pgque.set_queue_config('busy', 'ticker_max_count', '1');
select pgque.set_queue_config('busy', 'ticker_idle_period', '1 hour');
select pgque_worker.register_handler('busy', 'c', 'h(pgque.message)');
});
# the queue sequence's first event does not count for ticker_max_count
sq(q{select pgque.send('busy', 'busy', 'warm-up'::text)});
wait_until($node, 'app', q{select count(*) from got}, '1', 'the first message is handled');
# and now no lag ticks of it either (PgQ's default: one 3 s after the last;
# each is a full call, which wakes every handler of the slice it ticks):
# the calls counted below are the sends' own, however slow the machine
sq(q{select pgque.set_queue_config('busy', 'ticker_max_lag', '1 hour')});

# next_batch() calls, as the dispatcher has reported them
sub next_batch_calls
{
	return sq(q{select coalesce(sum(calls), 0) from pg_stat_user_functions
		where funcid = 'pgque.next_batch(text, text)'::regprocedure});
}
sub settled_calls
{
	# statistics are flushed at most once a second per backend
	my $prev = -1;
	for (1 .. 50)
	{
		usleep(1_200_000);
		my $now = next_batch_calls();
		return $now if $now == $prev;
		$prev = $now;
	}
	return $prev;
}

my $before = settled_calls();
for my $i (1 .. $nsend)
{
	sq(qq{select pgque.send('busy', 'busy', 'm$i'::text)});
	wait_until($node, 'app', qq{select count(*) from got where payload = 'm$i'}, '1', "message m$i handled");
}
my $calls = settled_calls() - $before;
is(sq(q{select count(*) from got where payload like 'm%'}), $nsend, "$nsend messages, each handled once");
# one or two per message for the busy queue's handler (its batch, then
# nothing); asking every handler would be over ($nother + 1) x $nsend
cmp_ok($calls, '<', 4 * $nsend,
	"next_batch() calls for $nsend ticks of one queue beside $nother idle handlers: $calls (every handler each time would be over "
	  . (($nother + 1) * $nsend) . ')');

# the other handlers still get their messages when their queue ticks
for my $i (1, 5, $nother)
{
	sq(qq{select pgque.send('other_$i', 'other_$i', 'first'::text)});
	sq(qq{select pgque.send('other_$i', 'other_$i', 'o$i'::text)});
	wait_until($node, 'app', qq{select count(*) from got where queue = 'other_$i' and payload = 'o$i'}, '1',
		"a message of other_$i is handled");
}

$node->stop;
done_testing();
