# A database without PgQue is probed (a short ticker start) less and less
# often while PgQue stays absent, so many such databases cost little; a
# request brings the probe forward (CREATE SCHEMA pgque committed there,
# wake_launcher()), but nobody can make probes more frequent than one per
# discovery_interval.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $node = new_node('absent', conf => "pgque_worker.discovery_interval = '1s'");
$node->start;
install_pgque($node, 'postgres');    # for pgque_worker.status()
$node->safe_psql('postgres', q{
create database absent1;
create database absent2;
create role tenant login;
grant create on database absent2 to tenant;
});

# The probes of $db seen while polling status() for $secs seconds: each
# probe starts a ticker, which stamps started_at (probes are >= 1 s apart,
# polls 0.1 s). Returns the count.
sub probes_over
{
	my ($db, $secs) = @_;
	my %seen;
	my $end = time + $secs;
	while (time < $end)
	{
		my $t = $node->safe_psql('postgres',
			"select started_at from pgque_worker.status() where kind = 'ticker' and datname = '$db'");
		$seen{$t} = 1 if $t ne '';
		usleep(100_000);
	}
	return scalar keys %seen;
}

wait_until($node, 'postgres',
	"select state from pgque_worker.status() where kind = 'ticker' and datname = 'absent1'",
	'no pgque', 'absent1 probed');

# 1. Backoff: probes at 0, 1, 3, 7, 15 s... (one interval, doubling), not
# one a second.
my $n = probes_over('absent1', 9);
note "absent1: $n probes in 9 s at discovery_interval 1s";
cmp_ok($n, '<=', 5, 'a database without PgQue is probed less and less often (one a second before)');
cmp_ok($n, '>=', 2, 'and still probed');

# 2. Installing PgQue there (CREATE SCHEMA pgque at its commit) is found
# at once, not at the next backed-off probe (8 s or more away by now).
my $t0 = time;
install_pgque($node, 'absent1');
my $s = wait_until($node, 'postgres',
	"select state from pgque_worker.status() where kind = 'ticker' and datname = 'absent1'",
	'running', 'a ticker for absent1 after installing PgQue');
my $found = time - $t0;
note sprintf('absent1: ticker running %.2f s after the install started', $found);
cmp_ok($found, '<', 5, 'installing PgQue is found without waiting for the backed-off probe');

# 3. Attack: a tenant with CREATE on absent2 commits CREATE SCHEMA pgque
# (and drops it) in a loop, to make the launcher fork a probe each time.
# Probes stay at most one per discovery_interval.
wait_until($node, 'postgres',
	"select state from pgque_worker.status() where kind = 'ticker' and datname = 'absent2'",
	'no pgque', 'absent2 probed');
my %seen;
my $t_start = time;
my $end = $t_start + 5;
while (time < $end)
{
	$node->safe_psql('absent2',
		'set role tenant; create schema if not exists pgque; drop schema pgque');
	my $st = $node->safe_psql('postgres',
		"select started_at from pgque_worker.status() where kind = 'ticker' and datname = 'absent2'");
	$seen{$st} = 1 if $st ne '';
}
my $storm = scalar keys %seen;
# the loop's last round ends past its 5 s, the longer the slower the
# machine: one probe a second of what it really took, and the one running
# when it began
my $allowed = int(time - $t_start) + 2;
note "absent2: $storm probes in 5 s of CREATE SCHEMA pgque commits";
cmp_ok($storm, '<=', $allowed, "a storm of CREATE SCHEMA pgque gets at most one probe per discovery_interval (at most $allowed)");
ok($node->safe_psql('postgres', "select rolsuper from pg_roles where rolname = 'tenant'") eq 'f',
	'the tenant is still no superuser');

# 4. wake_launcher() probes the backed-off databases again (after one
# interval since their last probe), then the backoff starts over.
probes_over('absent2', 8);    # let absent2 back off again
my $before = $node->safe_psql('postgres',
	"select started_at from pgque_worker.status() where kind = 'ticker' and datname = 'absent2'");
$node->safe_psql('postgres', 'select pgque_worker.wake_launcher()');
$s = wait_until($node, 'postgres',
	"select started_at <> '$before' from pgque_worker.status() where kind = 'ticker' and datname = 'absent2'",
	't', 'a probe of absent2 after wake_launcher()');
note sprintf('absent2 probed %.2f s after wake_launcher()', $s);
cmp_ok($s, '<', 3, 'wake_launcher() brings the probe of a database without PgQue forward');

ok($node->safe_psql('postgres', 'select 1') eq '1', 'server still up');
$node->stop;
done_testing();
