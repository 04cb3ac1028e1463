# pgque_worker.dispatch_synchronous_commit: the synchronous_commit of a
# dispatched chunk's transaction. Made visible with a synchronous standby
# that never connects: a commit that waits for it never ends (its effects
# stay invisible, the dispatcher waits on SyncRep), one at 'local' does not.
# A tenant handler's own SET synchronous_commit ends with the handler and
# never reaches the chunk's commit or a later one.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

# (allows_streaming: with max_wal_senders 0 no commit waits for a standby)
my $node = tenant_node('synccommit', allows_streaming => 1);
$node->safe_psql('app', q{
create table got (payload text, sync text);
grant select, insert on got to tenant;
select pgque.create_queue('qs');
select pgque.set_queue_config('qs', 'ticker_max_count', '1');
select pgque.set_queue_config('qs', 'ticker_max_lag', '10 ms');
});
# A tenant's handler: records the setting it runs with, then asks, for the
# session, for the strictest commit there is. Neither this chunk's commit
# nor any later one may follow it.
$node->safe_psql('app', q{
create function h(m pgque.message) returns void language plpgsql as $$
begin
  insert into public.got values (m.payload, current_setting('synchronous_commit'));
  perform set_config('synchronous_commit', 'remote_apply', false);
end $$;
select pgque_worker.register_handler('qs', 'cs', 'h(pgque.message)');
}, extra_params => [ '-U', 'tenant' ]);

sub sq { return $node->safe_psql('app', $_[0]); }

# sends from a session that does not wait for a standby
sub send_local
{
	my ($payload) = @_;
	sq(qq{set synchronous_commit = local; select pgque.send('qs', '$payload'::text)});
	return;
}

is(sq(q{select current_setting('pgque_worker.dispatch_synchronous_commit')}), 'default',
	'dispatch_synchronous_commit is "default" unless set');
my ($ret, $out, $err) = $node->psql('postgres',
	q{alter system set pgque_worker.dispatch_synchronous_commit = 'sometimes'});
isnt($ret, 0, 'an unknown value is refused');
like($err, qr/invalid value for parameter "pgque_worker.dispatch_synchronous_commit": "sometimes"/,
	'  with a message naming the setting');

send_local('first');
wait_until($node, 'app', q{select count(*) from got where payload = 'first'}, '1',
	'delivery at the default');
is(sq(q{select sync from got where payload = 'first'}), 'on',
	'  the handler runs with the server\'s synchronous_commit');

# Sends probes until the handler runs with synchronous_commit = $want: the
# dispatcher has read the setting (a reload reaches it when it next wakes).
my $probes = 0;
sub probe_until
{
	my ($want) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		$probes++;
		send_local("probe $probes");
		wait_until($node, 'app', qq{select count(*) from got where payload = 'probe $probes'}, '1',
			"probe $probes");
		return 1 if sq(qq{select sync from got where payload = 'probe $probes'}) eq $want;
	}
	return 0;
}

# Each value reaches the chunk's transaction (a misspelt one would fail
# every chunk).
for my $v (qw(off remote_write local))
{
	set_worker_conf($node, dispatch_synchronous_commit => $v);
	ok(probe_until($v), "at dispatch_synchronous_commit = $v the handler runs with $v");
}

# A synchronous standby that never comes. The chunks commit at 'local',
# which the dispatcher has read (above): they do not wait for it.
$node->safe_psql('postgres', q{alter system set synchronous_standby_names = 'nosuch'});
$node->safe_psql('postgres', q{select pg_reload_conf()});
send_local('second');
wait_until($node, 'app', q{select count(*) from got where payload = 'second'}, '1',
	'with dispatch_synchronous_commit = local, a chunk commits without the standby (the tenant handler\'s SET remote_apply ended with it)');
is(sq(q{select sync from got where payload = 'second'}), 'local', '  the handler runs with local');

# The default again: a chunk's commit waits for the standby. Until the
# dispatcher and the checkpointer have both read their settings a chunk
# may still commit at once; so send until one waits.
set_worker_conf($node, dispatch_synchronous_commit => undef);
my $waited = 0;
my $last;
for my $i (1 .. 50)
{
	$last = "fourth $i";
	send_local($last);
	my $deadline = time + 5;
	while (time < $deadline)
	{
		$waited = sq(q{select count(*) from pg_stat_activity
			where backend_type = 'pgque_worker dispatcher' and datname = 'app' and wait_event = 'SyncRep'});
		last if $waited;
		last if sq(qq{select count(*) from got where payload = '$last'}) eq '1';
		usleep(50_000);
	}
	last if $waited;
}
ok($waited, "at the default, the dispatcher waits for the standby at commit ($last)");
is(sq(qq{select count(*) from got where payload = '$last'}), '0',
	'  and the chunk is not visible meanwhile');
$node->safe_psql('postgres', q{alter system reset synchronous_standby_names});
$node->safe_psql('postgres', q{select pg_reload_conf()});
wait_until($node, 'app', qq{select count(*) from got where payload = '$last'}, '1',
	'  it commits once the standby is no longer required');
is(sq(q{select count(*) from got where payload = 'second'}) . ' ' .
   sq(q{select count(*) from (select payload from got group by payload having count(*) > 1) d}),
	'1 0', 'each message was handled once');

$node->stop;
done_testing();
