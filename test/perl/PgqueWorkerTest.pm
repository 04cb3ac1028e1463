# PgqueWorkerTest: helpers shared by the TAP tests of pgque_worker.
#
# new_node() makes a cluster with the library preloaded; install_pgque()
# installs the PgQue the tests run against: the fixture, or the real
# pgque.sql named by PGQUE_SQL (the Makefile passes PGQUE_SQL_FILE).
package PgqueWorkerTest;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use Exporter 'import';

our @EXPORT = qw(new_node tenant_node install_pgque ticker_pid wait_until status_row
  log_position log_since wait_for_log send_and_take);

# A cluster with pgque_worker preloaded and fast discovery for tests.
sub new_node
{
	my ($name, %opts) = @_;
	my $conf = delete $opts{conf} // '';
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%opts);
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pgque_worker'
pgque_worker.discovery_interval = '300ms'
max_worker_processes = 16
log_min_messages = info
restart_after_crash = on
$conf
});
	return $node;
}

# A started node (new_node's options) with database app, PgQue and the
# extension in it, and a tenant: role tenant (LOGIN, pgque_reader, CREATE
# on schema public), the usual attacker or handler owner of a test.
sub tenant_node
{
	my ($name, %opts) = @_;
	my $node = new_node($name, %opts);
	$node->start;
	$node->safe_psql('postgres', 'create database app');
	install_pgque($node, 'app');
	$node->safe_psql('app', q{
create role tenant login;
grant pgque_reader to tenant;
grant create on schema public to tenant;
});
	return $node;
}

# Installs PgQue and the extension into $db.
sub install_pgque
{
	my ($node, $db) = @_;
	my $file = $ENV{PGQUE_SQL_FILE} or die "PGQUE_SQL_FILE is not set";
	local $ENV{PGOPTIONS} = '-c client_min_messages=warning';
	my ($ret, $out, $err) = $node->psql($db, undef,
		extra_params => [ '-q', '-1', '-v', 'ON_ERROR_STOP=1', '-f', $file ]);
	die "installing $file into $db failed: $err" if $ret != 0;
	$node->safe_psql($db, 'create extension if not exists pgque_worker');
	# take(queue, consumer): receive the next batch, ack it, return payloads
	$node->safe_psql($db, q{
create or replace function public.take(q text, c text) returns setof text
language plpgsql as $f$
declare
  r pgque.message;
  b bigint;
begin
  for r in select * from pgque.receive(q, c, 2147483647) loop
    b := r.batch_id;
    return next r.payload;
  end loop;
  if b is not null then
    perform pgque.ack(b);
  end if;
end $f$});
	return;
}

# Polls $query (returning one value) until it equals $expected; dies after
# the test timeout. Returns the elapsed seconds.
sub wait_until
{
	my ($node, $db, $query, $expected, $what) = @_;
	my $start = time;
	my $deadline = $start + $PostgreSQL::Test::Utils::timeout_default;
	while (1)
	{
		# While the server restarts after a crash, psql can exit before it
		# reads its query and IPC::Run dies on the broken pipe: ask again.
		my $ok = eval { $node->poll_query_until($db, $query, $expected) };
		return time - $start if $ok;
		die "timed out waiting for $what" if defined $ok;
		die "waiting for $what: $@" if time > $deadline;
		usleep(100_000);
	}
}

# The ticker's pid for $db, or '' when none runs.
sub ticker_pid
{
	my ($node, $db) = @_;
	return $node->safe_psql('postgres',
		"select coalesce((select pid from pg_stat_activity where backend_type = 'pgque_worker ticker' and datname = '$db'), 0)"
	);
}

# One column of $db's ticker row in pgque_worker.status(), read from $from.
sub status_row
{
	my ($node, $from, $db, $col) = @_;
	return $node->safe_psql($from,
		"select $col from pgque_worker.status() where kind = 'ticker' and datname = '$db'");
}

# Sends $payload to queue q of $db and waits until consumer c takes it
# (with take(), which acks).
sub send_and_take
{
	my ($node, $db, $payload) = @_;
	$node->safe_psql($db, qq{select pgque.send('q', '$payload'::text)});
	wait_until($node, $db,
		qq{select count(*) from take('q', 'c') where take = '$payload'},
		'1', "delivery of $payload");
	return;
}

sub log_position
{
	my ($node) = @_;
	return -s $node->logfile;
}

sub log_since
{
	my ($node, $pos) = @_;
	return slurp_file($node->logfile, $pos);
}

# Waits until the server log after $pos matches $re.
sub wait_for_log
{
	my ($node, $re, $pos) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		return 1 if log_since($node, $pos) =~ $re;
		usleep(50_000);
	}
	die "timed out waiting for log line matching $re";
}

# --- a queue served by a handler that keeps what it got

push @EXPORT, qw(got_handler got_sender);

# In $db: queue q (a tick per event) and consumer c, handled by
# public.h(pgque.message), which inserts each payload into public.got;
# made and registered by $role (undef: the caller).
sub got_handler
{
	my ($node, $db, $role) = @_;
	my $as = defined $role ? qq{grant insert on public.got to $role; set role $role;} : '';
	$node->safe_psql($db, qq{
create table public.got (p text);
select pgque.create_queue('q');
select pgque.set_queue_config('q', 'ticker_max_count', '1');
$as
create function public.h(m pgque.message) returns void language plpgsql as \$\$
begin
  insert into public.got values (m.payload);
end \$\$;
select pgque_worker.register_handler('q', 'c', 'public.h(pgque.message)');
});
	return;
}

# A sub($payload, $what) that sends $payload to q of $db and waits until
# public.got has one more row.
sub got_sender
{
	my ($node, $db) = @_;
	my $handled = $node->safe_psql($db, 'select count(*) from public.got');
	return sub {
		my ($p, $what) = @_;
		$node->safe_psql($db, qq{select pgque.send('q', '$p'::text)});
		$handled++;
		wait_until($node, $db, q{select count(*) from public.got}, $handled, $what);
	};
}

# --- helpers of the reload, standby and tick rate tests

push @EXPORT, qw(set_worker_conf sample_status measure_rates);

# Sets pgque_worker.* settings with ALTER SYSTEM (a value of undef resets
# one) and reloads the configuration.
sub set_worker_conf
{
	my ($node, %set) = @_;
	for my $k (sort keys %set)
	{
		my $v = $set{$k};
		$node->safe_psql('postgres',
			defined $v
			? "alter system set pgque_worker.$k = '$v'"
			: "alter system reset pgque_worker.$k");
	}
	$node->safe_psql('postgres', 'select pg_reload_conf()');
	return;
}

# The server clock (epoch seconds, key _t) and status() columns @cols of
# $db's ticker, read from database $from in one query.
sub sample_status
{
	my ($node, $from, $db, @cols) = @_;
	my $row = $node->safe_psql($from,
		'select extract(epoch from clock_timestamp()), ' . join(', ', @cols)
		  . " from pgque_worker.status() where kind = 'ticker' and datname = '$db'");
	die "no status row for the ticker of $db" if $row eq '';
	my ($t, @v) = split /\|/, $row;
	my %h;
	@h{@cols} = @v;
	$h{_t} = $t;
	return \%h;
}

# Measures, over a window of $secs seconds, how fast status() columns @cols
# of $db's ticker grow. Returns the window's real length and the rates per
# second, in the order of @cols.
sub measure_rates
{
	my ($node, $from, $db, $secs, @cols) = @_;
	my $a = sample_status($node, $from, $db, @cols);
	usleep(int($secs * 1_000_000));
	my $b = sample_status($node, $from, $db, @cols);
	my $dt = $b->{_t} - $a->{_t};
	return ($dt, map { ($b->{$_} - $a->{$_}) / $dt } @cols);
}

1;
