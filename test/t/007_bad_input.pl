# Bad input: every setting's invalid values (negative, zero, too large,
# malformed lists, unknown database names) are rejected or replaced with a
# clear message and never crash the server; registration rejects bad queue
# names, wrong function signatures and NULLs; queue, consumer and database
# names with quotes, spaces and unicode work end to end; a handler that runs
# forever is cut off by handler_timeout and its message retried; handler
# privileges (EXECUTE, SECURITY DEFINER, a dropped and recreated function);
# a non-superuser worker role ticks and dispatches.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $node = new_node('badinput', extra => [ '--encoding=UTF8', '--locale=C' ], conf => qq{
pgque_worker.retry_interval = '500ms'
pgque_worker.dispatch_poll_interval = '100ms'
});
$node->start;
$node->safe_psql('postgres', 'create database app');
install_pgque($node, 'app');
wait_until($node, 'app',
	"select state from pgque_worker.status() where datname = 'app' and kind = 'ticker'",
	'running', 'ticker for app');

# Server is up and never restarted by a crash so far.
sub no_crash
{
	my ($what) = @_;
	my $log = slurp_file($node->logfile);
	unlike($log, qr/terminated by signal|server process .* was terminated|PANIC|TRAP:|all server processes terminated/,
		"no crash in the server log ($what)");
	is($node->safe_psql('postgres', 'select 1'), '1', "server answers ($what)");
}

# ======================================================================
# Settings
# ======================================================================

# ALTER SYSTEM with an invalid value fails naming the setting and keeps the
# old value (002 covers databases 'a,,b' / '*, app' / '', tick_period -1 and
# 70000, discovery_interval 0, retry_max_calls 0, enabled 'maybe').
my $range = sub {
	my ($v, $name, $lo, $hi, $unit) = @_;
	$unit = defined $unit ? " $unit" : '';
	# PostgreSQL 18 names the unit on both ends of the range too
	return qr/\Q$v$unit\E is outside the valid range for parameter "pgque_worker\.$name" \(\Q$lo\E(?:\Q$unit\E)? \.\. \Q$hi\E(?:\Q$unit\E)?\)/;
};
my $invalid = sub {
	my ($name, $v) = @_;
	return qr/invalid value for parameter "pgque_worker\.$name": "\Q$v\E"/;
};
my $dbl = sub { my ($m) = @_; return qr/invalid value for pgque_worker\.databases: \Q$m\E/ };
my $long63 = 'd' x 64;
my @bad = (
	# times: negative, zero / below the floor, above the ceiling, not a time
	[ discovery_interval => '-1', $range->('-1', 'discovery_interval', 100, 3600000, 'ms') ],
	[ discovery_interval => '99', $range->('99', 'discovery_interval', 100, 3600000, 'ms') ],
	[ discovery_interval => '2h', $range->('7200000', 'discovery_interval', 100, 3600000, 'ms') ],
	[ tick_period => 'fast', $invalid->('tick_period', 'fast') ],
	[ tick_period => '5 parsecs', $invalid->('tick_period', '5 parsecs') ],
	[ ticker_timeout => '0', $range->('0', 'ticker_timeout', 10, 600000, 'ms') ],
	[ ticker_timeout => '-5', $range->('-5', 'ticker_timeout', 10, 600000, 'ms') ],
	[ ticker_timeout => '11min', $range->('660000', 'ticker_timeout', 10, 600000, 'ms') ],
	[ retry_interval => '0', $range->('0', 'retry_interval', 10, 86400000, 'ms') ],
	[ retry_interval => '-1s', $range->('-1000', 'retry_interval', 10, 86400000, 'ms') ],
	[ retry_interval => '2d', $range->('172800000', 'retry_interval', 10, 86400000, 'ms') ],
	[ retry_max_calls => '-3', $range->('-3', 'retry_max_calls', 1, 100000) ],
	[ retry_max_calls => '100001', $range->('100001', 'retry_max_calls', 1, 100000) ],
	[ retry_max_calls => 'many', $invalid->('retry_max_calls', 'many') ],
	[ retry_max_calls => '99999999999', $invalid->('retry_max_calls', '99999999999') ],
	[ maint_interval => '0', $range->('0', 'maint_interval', 10, 86400000, 'ms') ],
	[ maint_interval => '-1', $range->('-1', 'maint_interval', 10, 86400000, 'ms') ],
	[ maint_interval => '25h', $range->('90000000', 'maint_interval', 10, 86400000, 'ms') ],
	[ rotate_interval => '0', $range->('0', 'rotate_interval', 10, 86400000, 'ms') ],
	[ rotate_interval => '86400001', $range->('86400001', 'rotate_interval', 10, 86400000, 'ms') ],
	[ statement_timeout => '0', $range->('0', 'statement_timeout', 100, 3600000, 'ms') ],
	[ statement_timeout => '99ms', $range->('99', 'statement_timeout', 100, 3600000, 'ms') ],
	[ statement_timeout => '3601s', $range->('3601000', 'statement_timeout', 100, 3600000, 'ms') ],
	[ lock_timeout => '-1', $range->('-1', 'lock_timeout', 0, 600000, 'ms') ],
	[ lock_timeout => '601s', $range->('601000', 'lock_timeout', 0, 600000, 'ms') ],
	[ log_quiet_interval => '-1', $range->('-1', 'log_quiet_interval', 0, 86400000, 'ms') ],
	[ log_quiet_interval => '1 year', $invalid->('log_quiet_interval', '1 year') ],
	[ chunk_messages => '0', $range->('0', 'chunk_messages', 1, 1000000) ],
	[ chunk_messages => '-1', $range->('-1', 'chunk_messages', 1, 1000000) ],
	[ chunk_messages => '1000001', $range->('1000001', 'chunk_messages', 1, 1000000) ],
	[ chunk_messages => '1.5e', $invalid->('chunk_messages', '1.5e') ],
	[ work_mem => '0', qr/invalid value for parameter "pgque_worker\.work_mem": 0\n.*DETAIL:  pgque_worker\.work_mem is -1 \(the server's work_mem\) or at least 64 kB\./s ],
	[ work_mem => '63kB', qr/invalid value for parameter "pgque_worker\.work_mem": 63\n.*DETAIL:  pgque_worker\.work_mem is -1/s ],
	[ work_mem => '-2', $range->('-2', 'work_mem', -1, 2147483647, 'kB') ],
	[ work_mem => 'lots', $invalid->('work_mem', 'lots') ],
	[ handler_timeout => '0', $range->('0', 'handler_timeout', 10, 3600000, 'ms') ],
	[ handler_timeout => '9', $range->('9', 'handler_timeout', 10, 3600000, 'ms') ],
	[ handler_timeout => '2h', $range->('7200000', 'handler_timeout', 10, 3600000, 'ms') ],
	[ dispatch_poll_interval => '-1', $range->('-1', 'dispatch_poll_interval', 0, 3600000, 'ms') ],
	[ dispatch_poll_interval => '-100ms', $range->('-100', 'dispatch_poll_interval', 0, 3600000, 'ms') ],
	[ dispatch_poll_interval => '61min', $range->('3660000', 'dispatch_poll_interval', 0, 3600000, 'ms') ],
	[ enabled => '2', qr/parameter "pgque_worker\.enabled" requires a Boolean value/ ],
	[ role => 'r' x 64, qr/role name is too long/ ],
	# malformed database lists
	[ databases => '"app', $dbl->('unterminated quoted database name') ],
	[ databases => '""', $dbl->('quoted database name is empty') ],
	[ databases => 'app,', $dbl->('empty entry in list of databases') ],
	[ databases => ',app', $dbl->('empty entry in list of databases') ],
	[ databases => ' , ', $dbl->('empty entry in list of databases') ],
	[ databases => 'a"b', $dbl->('database name "a"b" has a misplaced double quote') ],
	[ databases => '"app" x', $dbl->('expected a comma after database name "app"') ],
	[ databases => '*, "*"', $dbl->('"*" cannot be combined with database names') ],
	[ databases => $long63, qr/invalid value for pgque_worker\.databases: database name "d{20}\.\.\." is longer than 63 bytes/ ],
);
for my $b (@bad)
{
	my ($name, $value, $re) = @$b;
	my $before = $node->safe_psql('postgres', "show pgque_worker.$name");
	my $lit = $value =~ s/'/''/gr;
	my ($ret, $out, $err) = $node->psql('postgres',
		"alter system set pgque_worker.$name = '$lit'");
	my $shown = length($value) > 20 ? substr($value, 0, 20) . '...' : $value;
	isnt($ret, 0, "ALTER SYSTEM SET pgque_worker.$name = '$shown' fails");
	like($err, $re, "  with a clear message: $re") or note $err;
	$node->safe_psql('postgres', 'select pg_reload_conf()');
	is($node->safe_psql('postgres', "show pgque_worker.$name"), $before,
		"  pgque_worker.$name keeps '$before'");
}

# A too long name made of multibyte characters: the message quotes its
# first 20 bytes, which may end inside a character.
{
	my $mb = 'a' . ("\xd1\x8f" x 40);    # 'a' and 40 x U+044F in UTF-8 (81 bytes)
	my ($ret, $out, $err) = $node->psql('postgres',
		"alter system set pgque_worker.databases = '$mb'");
	isnt($ret, 0, 'a too long name of multibyte characters is rejected');
	like($err, qr/invalid value for pgque_worker\.databases: database name "a.*" is longer than 63 bytes/,
		'  naming the setting (UTF-8 client)');
	my $copy = $err;
	ok(utf8::decode($copy), '  the message is valid UTF-8');
	local $ENV{PGCLIENTENCODING} = 'WIN1251';
	my $w = 'a' . ("\xff" x 40);    # the same name in WIN1251
	($ret, $out, $err) = $node->psql('postgres',
		"alter system set pgque_worker.databases = '$w'");
	like($err, qr/invalid value for pgque_worker\.databases/,
		'  a WIN1251 client gets the message too');
	isnt($ret, 0, '  (it is rejected for the WIN1251 client too)');
}

is($node->safe_psql('postgres',
		q{select count(*) from pg_file_settings where name like 'pgque_worker.%' and sourcefile like '%postgresql.auto.conf'}),
	'0', 'none of the bad values reached postgresql.auto.conf');

# Session-level SET of a server-wide setting is refused, not ignored.
my ($ret, $out, $err) = $node->psql('postgres', "set pgque_worker.chunk_messages = 10");
isnt($ret, 0, 'SET pgque_worker.chunk_messages in a session fails');
like($err, qr/parameter "pgque_worker\.chunk_messages" cannot be changed now/, '  because it is server-wide');

# An unknown name in the reserved prefix is refused.
($ret, $out, $err) = $node->psql('postgres', "alter system set pgque_worker.tick_perod = '10ms'");
isnt($ret, 0, 'ALTER SYSTEM SET of a misspelt pgque_worker setting fails');
like($err, qr/(unrecognized configuration parameter|invalid configuration parameter name) "pgque_worker\.tick_perod"/, '  naming it');

# Invalid values in postgresql.conf at server start: the server starts, each
# is reported with a WARNING and the default is used.
my $conf_file = $node->data_dir . '/postgresql.conf';
my $conf_saved = slurp_file($conf_file);
$node->append_conf('postgresql.conf', q{
pgque_worker.chunk_messages = 0
pgque_worker.handler_timeout = -5
pgque_worker.statement_timeout = 'soon'
pgque_worker.databases = 'app,,'
pgque_worker.dispatch_poll_interval = 99999999
});
my $pos = log_position($node);
$node->restart;
for my $re (
	qr/0 is outside the valid range for parameter "pgque_worker\.chunk_messages"/,
	qr/-5 ms is outside the valid range for parameter "pgque_worker\.handler_timeout"/,
	qr/invalid value for parameter "pgque_worker\.statement_timeout": "soon"/,
	qr/invalid value for pgque_worker\.databases: empty entry in list of databases/,
	qr/99999999 ms is outside the valid range for parameter "pgque_worker\.dispatch_poll_interval"/)
{
	wait_for_log($node, $re, $pos);
	pass("bad value in postgresql.conf at start is reported: $re");
}
is($node->safe_psql('postgres',
		q{select string_agg(current_setting(n), ',') from unnest(array['pgque_worker.chunk_messages', 'pgque_worker.handler_timeout', 'pgque_worker.statement_timeout', 'pgque_worker.databases', 'pgque_worker.dispatch_poll_interval']) n}),
	'1000,30s,25s,*,0', 'the server started with the built-in defaults for the bad values');
wait_until($node, 'app',
	"select state from pgque_worker.status() where datname = 'app' and kind = 'ticker'",
	'running', 'ticker for app after a start with bad settings');
open(my $fh, '>', $conf_file) or die "cannot write $conf_file: $!";
print $fh $conf_saved;
close $fh;
$node->restart;
no_crash('after bad settings');

# ---- a message handler helper for the end-to-end checks below
$node->safe_psql('app', q{
create table got (consumer text, payload text, retry_count int);
create function h_msg(m pgque.message) returns void language plpgsql as $$
begin
  insert into got values ('msg', m.payload, m.retry_count);
end $$;
create function h_batch(ms pgque.message[]) returns void language plpgsql as $$
begin
  insert into got select 'batch', m.payload, m.retry_count from unnest(ms) m;
end $$;
});

# ---- pgque_worker.databases naming a database that does not exist:
# accepted, nothing harmful logged, simply unserved; app keeps its ticker.
$pos = log_position($node);
set_worker_conf($node, databases => 'app, no_such_db, "нет такой базы"');
is($node->safe_psql('postgres', 'show pgque_worker.databases'), 'app, no_such_db, "нет такой базы"',
	'databases naming missing databases is accepted');
usleep(1_500_000);    # several discovery intervals: showing nothing goes wrong
is($node->safe_psql('app',
		q{select count(*) from pgque_worker.status() where datname in ('no_such_db', 'нет такой базы')}),
	'0', 'the missing databases have no status row');
is($node->safe_psql('app',
		q{select state from pgque_worker.status() where datname = 'app' and kind = 'ticker'}),
	'running', 'app is still served');
unlike(log_since($node, $pos), qr/(WARNING|ERROR|FATAL|PANIC).*(no_such_db|нет такой базы)|database "no_such_db" does not exist/,
	'nothing about the missing databases in the log');
$node->safe_psql('app', q{
select pgque.create_queue('qplain');
select pgque.set_queue_config('qplain', 'ticker_max_count', '1');
select pgque_worker.register_handler('qplain', 'c', 'h_msg(pgque.message)');
select pgque.send('qplain', 'plain1'::text)
});
wait_until($node, 'app', q{select count(*) from got where payload = 'plain1'}, '1',
	'delivery in app with missing databases listed');
pass('app delivers with missing databases in the list');
set_worker_conf($node, databases => undef);

# ======================================================================
# Registration
# ======================================================================

$node->safe_psql('app', q{
create procedure p_handler(m pgque.message) language plpgsql as $$ begin null; end $$;
create function srf_handler(m pgque.message) returns setof int language sql as $$ select 1 $$;
create function two_args(m pgque.message, n int) returns void language sql as $$ select $$;
create function msg_state(s int, m pgque.message) returns int language sql as $$ select s + 1 $$;
create aggregate agg_handler(pgque.message) (sfunc = msg_state, stype = int, initcond = '0');
create function no_args() returns void language sql as $$ select $$;
create function text_handler(t text) returns void language sql as $$ select $$;
});
my $nullmsg = qr/queue, consumer, handler, batch and retry_after must not be null/;
my $sig = sub { my ($f, $k) = @_; return qr/function (public\.)?\Q$f\E cannot be a $k handler/ };
my @reg_bad = (
	[ q{select pgque_worker.register_handler(null, 'c', 'h_msg(pgque.message)')}, $nullmsg, 'NULL queue' ],
	[ q{select pgque_worker.register_handler('qplain', null, 'h_msg(pgque.message)')}, $nullmsg, 'NULL consumer' ],
	[ q{select pgque_worker.register_handler('qplain', 'c2', null)}, $nullmsg, 'NULL handler' ],
	[ q{select pgque_worker.register_handler('qplain', 'c2', 'h_msg(pgque.message)', batch => null)}, $nullmsg, 'NULL batch' ],
	[ q{select pgque_worker.register_handler('qplain', 'c2', 'h_msg(pgque.message)', retry_after => null)}, $nullmsg, 'NULL retry_after' ],
	[ q{select pgque_worker.register_handler('qplain', 'c2', 'h_msg(pgque.message)', enabled => null)}, qr/enabled must not be null/, 'NULL enabled' ],
	[ q{select pgque_worker.register_handler('qplain', 'c2', 'h_msg(pgque.message)', retry_after => '-1 second')}, qr/retry_after must not be negative/, 'negative retry_after' ],
	[ q{select pgque_worker.register_handler('', 'c2', 'h_msg(pgque.message)')}, qr/queue "" does not exist/, 'empty queue name' ],
	[ q{select pgque_worker.register_handler(' qplain', 'c2', 'h_msg(pgque.message)')}, qr/queue " qplain" does not exist/, 'queue name with a leading blank' ],
	[ q{select pgque_worker.register_handler('QPLAIN', 'c2', 'h_msg(pgque.message)')}, qr/queue "QPLAIN" does not exist/, 'queue name in another case' ],
	[ q{select pgque_worker.register_handler('qplain''; drop table got; --', 'c2', 'h_msg(pgque.message)')}, qr/queue "qplain'; drop table got; --" does not exist/, 'queue name with SQL in it' ],
	[ q{select pgque_worker.register_handler('qplain', 'c2', 'p_handler(pgque.message)')}, $sig->('p_handler(pgque.message)', 'message'), 'a procedure' ],
	[ q{select pgque_worker.register_handler('qplain', 'c2', 'srf_handler(pgque.message)')}, $sig->('srf_handler(pgque.message)', 'message'), 'a set-returning function' ],
	[ q{select pgque_worker.register_handler('qplain', 'c2', 'two_args(pgque.message,integer)')}, $sig->('two_args(pgque.message,integer)', 'message'), 'a function of two arguments' ],
	[ q{select pgque_worker.register_handler('qplain', 'c2', 'agg_handler(pgque.message)')}, $sig->('agg_handler(pgque.message)', 'message'), 'an aggregate' ],
	[ q{select pgque_worker.register_handler('qplain', 'c2', 'no_args()')}, $sig->('no_args()', 'message'), 'a function of no arguments' ],
	[ q{select pgque_worker.register_handler('qplain', 'c2', 'text_handler(text)')}, $sig->('text_handler(text)', 'message'), 'a function of text' ],
	[ q{select pgque_worker.register_handler('qplain', 'c2', 'h_batch(pgque.message[])')}, $sig->('h_batch(pgque.message[])', 'message'), 'a batch function as message handler' ],
	[ q{select pgque_worker.register_handler('qplain', 'c2', 'h_msg(pgque.message)', batch => true)}, $sig->('h_msg(pgque.message)', 'batch'), 'a message function as batch handler' ],
	[ q{select pgque_worker.register_handler('qplain', 'c2', 'no_such_fn(pgque.message)')}, qr/function "no_such_fn\(pgque\.message\)" does not exist/, 'a missing function' ],
	[ q{select pgque_worker.register_handler('qplain', 'c2', 'h_msg')}, qr/(expected a left parenthesis|invalid input syntax|does not exist)/, 'a function name without signature' ],
	[ q{insert into pgque_worker.handler (queue_name, consumer_name, handler) values ('qplain', 'c2', 'srf_handler(pgque.message)')}, $sig->('srf_handler(pgque.message)', 'message'), 'a direct insert of a set-returning function' ],
	[ q{insert into pgque_worker.handler (queue_name, consumer_name, handler) values ('no_such_queue', 'c2', 'h_msg(pgque.message)')}, qr/queue "no_such_queue" does not exist/, 'a direct insert for a missing queue' ],
	[ q{update pgque_worker.handler set handler = 'agg_handler(pgque.message)' where queue_name = 'qplain'}, $sig->('agg_handler(pgque.message)', 'message'), 'an update to an aggregate' ],
);
for my $r (@reg_bad)
{
	my ($sql, $re, $what) = @$r;
	my ($ret, $out, $err) = $node->psql('app', $sql);
	isnt($ret, 0, "registration refused: $what");
	like($err, $re, "  message: $re") or note $err;
}
# unregistering with NULLs is refused too (9bbf602 had let it return
# silently), and takes nothing away
my $unreg_null = qr/queue, consumer and unsubscribe must not be null/;
for my $r (
	[ q{select pgque_worker.unregister_handler(null, 'c')}, 'NULL queue' ],
	[ q{select pgque_worker.unregister_handler('qplain', null)}, 'NULL consumer' ],
	[ q{select pgque_worker.unregister_handler('qplain', 'c', unsubscribe => null)}, 'NULL unsubscribe' ])
{
	my ($ret, $out, $err) = $node->psql('app', $r->[0]);
	isnt($ret, 0, "unregistering refused: $r->[1]");
	like($err, $unreg_null, "  message: $unreg_null") or note $err;
}
is($node->safe_psql('app', q{select string_agg(queue_name || '/' || consumer_name || '=' || handler::text, ',') from pgque_worker.handler}),
	'qplain/c=h_msg(pgque.message)', 'only the valid registration exists');
is($node->safe_psql('app', q{select count(*) from got}), '1', 'table got survived the queue name with SQL in it');
no_crash('after bad registrations');

# ======================================================================
# Names with quotes, blanks, unicode and SQL
# ======================================================================

my @qnames = (q{it's a "queue"}, 'спасибо очередь', 'q; drop table x; --');
my @cnames = (q{it's "c"}, 'потребитель 1', 'c; drop table x; --');
$node->safe_psql('app', 'create table x (v int); insert into x values (42)');
sub lit { my ($s) = @_; return q{'} . ($s =~ s/'/''/gr) . q{'}; }
for my $i (0 .. $#qnames)
{
	my ($q, $c) = (lit($qnames[$i]), lit($cnames[$i]));
	$node->safe_psql('app', qq{
select pgque.create_queue($q);
select pgque.set_queue_config($q, 'ticker_max_count', '1');
select pgque_worker.register_handler($q, $c, 'h_msg(pgque.message)', retry_after => '0 seconds');
select pgque_worker.register_handler($q, $c || ' (batch)', 'h_batch(pgque.message[])', batch => true);
});
}
for my $i (0 .. $#qnames)
{
	my $q = lit($qnames[$i]);
	$node->safe_psql('app', qq{
select pgque.send($q, 'n$i-' || g) from generate_series(1, 5) g});
}
wait_until($node, 'app', q{select count(*) from got where payload like 'n%'}, '30',
	'messages of the oddly named queues handled');
is($node->safe_psql('app', q{
select count(*) from (select consumer, payload from got where payload like 'n%'
  group by 1, 2 having count(*) = 1) s}), '30',
	'each payload handled once by each of the two consumers of each queue');
for my $i (0 .. $#qnames)
{
	my $q = lit($qnames[$i]);
	is($node->safe_psql('app', qq{select count(*) from got where payload like 'n$i-%'}),
		'10', "queue $qnames[$i]: 5 messages x 2 consumers");
	is($node->safe_psql('app', qq{select string_agg(consumer_name || ':' || messages_ok, ',' order by consumer_name) from pgque_worker.handler_stats where queue_name = $q}),
		"$cnames[$i]:5,$cnames[$i] (batch):5", "queue $qnames[$i]: stats under the consumer names as given");
}
is($node->safe_psql('app', 'select v from x'), '42', 'table x still exists: no SQL was built from names');

# ---- a database named with a quote, a blank and unicode
my $odd_db = q{it's "my" база};
$node->safe_psql('postgres', 'select format(\'create database %s\', quote_ident(' . lit($odd_db) . q{)) \gexec});
install_pgque($node, $odd_db);
wait_until($node, 'app',
	'select state from pgque_worker.status() where kind = \'ticker\' and datname = ' . lit($odd_db),
	'running', 'ticker for the oddly named database');
pass(qq{database $odd_db gets a ticker (status().datname shows it)});
$node->safe_psql($odd_db, q{
create table got (payload text);
create function h(m pgque.message) returns void language sql as $$ insert into got values (m.payload) $$;
select pgque.create_queue('q');
select pgque.set_queue_config('q', 'ticker_max_count', '1');
select pgque_worker.register_handler('q', 'c', 'h(pgque.message)');
select pgque.send('q', 'hello');
});
wait_until($node, $odd_db, q{select count(*) from got where payload = 'hello'}, '1',
	'delivery in the oddly named database');
is($node->safe_psql('app',
		'select count(*) from pgque_worker.status() where kind = \'dispatcher\' and datname = ' . lit($odd_db)),
	'1', 'and it has a dispatcher');
# it can be selected by a quoted entry in pgque_worker.databases
my $quoted = '"' . ($odd_db =~ s/"/""/gr) . '"';
# (set_worker_conf does not quote; the value has a single quote)
$node->safe_psql('postgres', 'alter system set pgque_worker.databases = ' . lit("app, $quoted"));
$node->safe_psql('postgres', 'select pg_reload_conf()');
is($node->safe_psql('postgres', 'show pgque_worker.databases'), "app, $quoted",
	'a quoted database name with a quote, blank and unicode is a valid list entry');
$node->safe_psql($odd_db, q{select pgque.send('q', 'selected')});
wait_until($node, $odd_db, q{select count(*) from got where payload = 'selected'}, '1',
	'delivery with the database selected by its quoted name');
pass('the oddly named database is served when selected by its quoted name');
set_worker_conf($node, databases => undef);
no_crash('after odd names');

# ======================================================================
# handler_timeout cuts off a handler that runs forever
# ======================================================================

set_worker_conf($node, handler_timeout => '500ms');
$node->safe_psql('app', q{
create table hang_got (payload text, retry_count int);
create function h_hang(m pgque.message) returns void language plpgsql as $$
begin
  if m.payload = 'hang' and coalesce(m.retry_count, 0) < 1 then
    perform pg_sleep(3600);
  end if;
  insert into hang_got values (m.payload, m.retry_count);
end $$;
select pgque.create_queue('qhang');
select pgque.set_queue_config('qhang', 'ticker_max_count', '1');
select pgque_worker.register_handler('qhang', 'c', 'h_hang(pgque.message)', retry_after => '0 seconds');
});
my $t0 = time;
$node->safe_psql('app', q{select pgque.send_batch('qhang', array['a', 'hang', 'b'])});
wait_until($node, 'app', q{select count(*) from hang_got where payload in ('a', 'b')}, '2',
	'a and b handled past the hanging message');
wait_until($node, 'app', q{select count(*) from hang_got where payload = 'hang'}, '1',
	'the hanging message handled on its retry');
my $hang_secs = time - $t0;
note sprintf('a, hang, b: all handled %.1f s after sending (handler_timeout 500ms)', $hang_secs);
cmp_ok($hang_secs, '<', 60, 'long before the handler could have finished sleeping');
is($node->safe_psql('app', q{select string_agg(payload || ':' || coalesce(retry_count, 0), ',' order by payload) from hang_got}),
	'a:0,b:0,hang:1', 'a and b once on the first attempt; hang once, with retry_count 1');
my ($nacked, $lasterr) = split /\|/, $node->safe_psql('app',
	q{select messages_nacked, last_error from pgque_worker.handler_stats where queue_name = 'qhang'});
cmp_ok($nacked, '>=', 1, "the hanging message was nacked ($nacked)");
like($lasterr, qr/statement timeout|canceling statement/, "last_error: $lasterr");
set_worker_conf($node, handler_timeout => undef);
no_crash('after handler_timeout');

# ======================================================================
# Privileges
# ======================================================================

$node->safe_psql('app', q{
create role carol login;
grant pgque_reader to carol;
create table secret (who text, payload text);
revoke all on secret from public;
create function h_private(m pgque.message) returns void language sql as $$ select $$;
revoke execute on function h_private(pgque.message) from public;
create function h_definer(m pgque.message) returns void language plpgsql security definer
  set search_path = pg_catalog, public as $$
begin
  insert into public.secret values (current_user, m.payload);
end $$;
revoke execute on function h_definer(pgque.message) from public;
grant execute on function h_definer(pgque.message) to carol;
select pgque.create_queue('qpriv');
select pgque.set_queue_config('qpriv', 'ticker_max_count', '1');
select pgque.set_queue_config('qpriv', 'max_retries', '0');
});
($ret, $out, $err) = $node->psql('app', q{
set role carol;
select pgque_worker.register_handler('qpriv', 'private', 'h_private(pgque.message)')});
isnt($ret, 0, 'carol cannot register a function she may not execute');
like($err, qr/role "carol" may not execute function (public\.)?h_private\(pgque\.message\)/, '  with a clear message');
($ret, $out, $err) = $node->psql('app', q{
set role carol;
select pgque_worker.register_handler('qpriv', 'definer', 'h_definer(pgque.message)', retry_after => '0 seconds')});
is($ret, 0, 'carol registers a SECURITY DEFINER function of the superuser she may execute') or note $err;
is($node->safe_psql('app', q{select run_as from pgque_worker.handler where queue_name = 'qpriv'}),
	'carol', 'the registration runs as carol');
$node->safe_psql('app', q{select pgque.send('qpriv', 'via definer')});
wait_until($node, 'app', q{select count(*) from secret}, '1', 'the definer handler ran');
my $super = $node->safe_psql('app', 'select rolname from pg_roles where oid = 10');
is($node->safe_psql('app', q{select who || ':' || payload from secret}), "$super:via definer",
	'a SECURITY DEFINER handler runs with its owner\'s rights');
note 'PostgreSQL rule: a SECURITY DEFINER function runs as its owner whoever calls it; '
  . 'granting EXECUTE on a superuser-owned SECURITY DEFINER function to a role lets that role\'s '
  . 'handler act as the superuser. The dispatcher calls it as the registering role (carol), '
  . 'so only a role that may EXECUTE it can register it.';

# ---- a dropped and recreated function: the stored oid no longer resolves
$node->safe_psql('app', q{
create table re_got (payload text);
create function h_re(m pgque.message) returns void language sql as $$ insert into re_got values (m.payload) $$;
select pgque.create_queue('qre');
select pgque.set_queue_config('qre', 'ticker_max_count', '1');
select pgque_worker.register_handler('qre', 'c', 'h_re(pgque.message)');
select pgque.send('qre', 'r1');
});
wait_until($node, 'app', q{select count(*) from re_got}, '1', 'r1 handled');
my $oid_before = $node->safe_psql('app', q{select 'h_re(pgque.message)'::regprocedure::oid});
$node->safe_psql('app', q{
drop function h_re(pgque.message);
create function h_re(m pgque.message) returns void language sql as $$ insert into re_got values (m.payload) $$;
select pgque.send('qre', 'r2');
});
isnt($node->safe_psql('app', q{select 'h_re(pgque.message)'::regprocedure::oid}), $oid_before,
	'the recreated function has a new oid');
is($node->safe_psql('app', q{select handler::oid from pgque_worker.handler where queue_name = 'qre'}),
	$oid_before, 'the registration still holds the old oid');
wait_until($node, 'app',
	q{select errors > 0 and last_error like '%no longer exists%' from pgque_worker.handler_stats where queue_name = 'qre'},
	't', 'the dispatcher records the missing function');
like($node->safe_psql('app', q{select last_error from pgque_worker.status() where datname = 'app' and kind = 'dispatcher'}),
	qr/qre\/c: handler function \d+ of queue "qre", consumer "c" no longer exists/,
	'status() shows the error');
wait_until($node, 'app',
	q{select pending_events > 0 or current_batch is not null from pgque.get_consumer_info('qre', 'c')},
	't', 'r2 pending for the consumer');
# other queues keep flowing meanwhile
$node->safe_psql('app', q{select pgque.send('qplain', 'plain2'::text)});
wait_until($node, 'app', q{select count(*) from got where payload = 'plain2'}, '1',
	'another handler of the same dispatcher still delivers');
usleep(1_000_000);    # showing that r2 is not consumed
is($node->safe_psql('app', q{select count(*) from re_got where payload = 'r2'}), '0',
	'r2 is not handled by anything');
is($node->safe_psql('app', q{select pending_events > 0 or current_batch is not null from pgque.get_consumer_info('qre', 'c')}),
	't', 'and not consumed: still pending for the consumer');
$node->safe_psql('app', q{select pgque_worker.register_handler('qre', 'c', 'h_re(pgque.message)')});
wait_until($node, 'app', q{select count(*) from re_got where payload = 'r2'}, '1',
	'r2 handled after re-registering');
is($node->safe_psql('app', q{select string_agg(payload, ',' order by payload) from re_got}), 'r1,r2',
	're-registering fixes it: r1 and r2 once each');

# ---- a non-superuser worker role (member of pgque_admin) ticks and dispatches
$node->safe_psql('postgres', 'create role pqw_worker login; grant pgque_admin to pqw_worker');
set_worker_conf($node, role => 'pqw_worker');
wait_until($node, 'postgres',
	q{select count(*) from pg_stat_activity where datname = 'app' and backend_type = 'pgque_worker ticker' and usename = 'pqw_worker'},
	'1', 'ticker running as pqw_worker');
is($node->safe_psql('postgres', q{select rolsuper from pg_roles where rolname = 'pqw_worker'}), 'f',
	'pqw_worker is not a superuser');
my $tc = $node->safe_psql('app', q{select tick_calls from pgque_worker.status() where datname = 'app' and kind = 'ticker'});
wait_until($node, 'app',
	"select tick_calls > $tc + 5 from pgque_worker.status() where datname = 'app' and kind = 'ticker'",
	't', 'ticking as pqw_worker');
pass('the ticker ticks as pqw_worker');
my $disp_user = q{select coalesce(string_agg(distinct usename, ','), '') from pg_stat_activity
	where datname = 'app' and backend_type = 'pgque_worker dispatcher'};
my $deadline = time + 30;
my $u = '';
while (time < $deadline)
{
	$u = $node->safe_psql('postgres', $disp_user);
	last if $u eq 'pqw_worker';
	usleep(100_000);
}
is($u, 'pqw_worker', 'the dispatcher restarts as pqw_worker after the role change (30 s)');
# (a no-op now that the dispatcher restarts by itself)
$node->safe_psql('postgres', q{select pg_terminate_backend(pid) from pg_stat_activity
	where datname = 'app' and backend_type = 'pgque_worker dispatcher' and usename <> 'pqw_worker'});
wait_until($node, 'postgres', $disp_user, 'pqw_worker', 'dispatcher running as pqw_worker');
pass('a dispatcher started with role = pqw_worker runs as pqw_worker');
$node->safe_psql('app', q{select pgque.send('qplain', 'as-worker'::text)});
wait_until($node, 'app', q{select count(*) from got where payload = 'as-worker'}, '1',
	'delivery with the workers running as pqw_worker');
pass('the dispatcher running as pqw_worker delivers to a message handler');
is($node->safe_psql('postgres', $disp_user), 'pqw_worker', 'still running as pqw_worker');
is($node->safe_psql('app', q{select errors from pgque_worker.handler_stats where queue_name = 'qplain'}),
	'0', 'with no handler error');
set_worker_conf($node, role => undef);

# ---- an error text longer than its buffers, with two-byte characters
# where it is cut: what is kept ends at a character boundary, in
# handler_stats.last_error and in the nack's reason in PgQue's dead-letter
# table (cut inside a character before: text no dump could restore)
$node->safe_psql('app', q{
create function h_mb(m pgque.message) returns void language plpgsql as $$
begin
  raise exception '%', repeat('a', 200) || repeat('é', 300);
end $$;
select pgque.create_queue('qmb');
select pgque.set_queue_config('qmb', 'ticker_max_count', '1');
select pgque.set_queue_config('qmb', 'max_retries', '0');
select pgque_worker.register_handler('qmb', 'cmb', 'h_mb(pgque.message)');
select pgque.send('qmb', 'mb'::text);
});
wait_until($node, 'app', q{select messages_nacked from pgque_worker.handler_stats where queue_name = 'qmb'},
	'1', 'a message whose error text is long and multibyte, nacked');
wait_until($node, 'app', q{select count(*) from pgque.dead_letter where ev_data = 'mb'}, '1', '  into the dead-letter table');
for my $t ([ 'handler_stats.last_error', q{select last_error from pgque_worker.handler_stats where queue_name = 'qmb'} ],
	[ 'the dead letter\'s reason', q{select dl_reason from pgque.dead_letter where ev_data = 'mb'} ])
{
	my ($what, $sql) = @$t;
	my ($rc, $out, $err) = $node->psql('app',
		"select convert_from(convert_to(x, 'UTF8'), 'UTF8') = x and x like '%aaaé%' from ($sql) s(x)");
	is($rc, 0, "  $what is valid UTF-8") or diag($err);
	is($out, 't', "  $what keeps the text up to a character boundary");
}

no_crash('at the end');
$node->stop;
done_testing();
