# metrics() and metrics_view read PgQue's queue figures from its tables as
# the owner of schema pgque, security-restricted, and run none of PgQue's
# code. Before, metrics_view called pgque.get_queue_info() and
# get_consumer_info() with the caller's rights: a monitoring superuser
# scraping a database where another role owned one of those functions ran
# that role's code as a superuser.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use PgqueWorkerTest;

my $node = tenant_node('metricsrights');
got_handler($node, 'app', 'tenant');
my $send = got_sender($node, 'app');
$send->('one', 'a first message');
$node->safe_psql('app', q{create role mon login; grant pg_monitor to mon});

# the figures, read by a pg_monitor member, as PgQue itself gives them
my $m = $node->safe_psql('app', q{set role mon; select pgque_worker.metrics()});
like($m, qr/^pgque_worker_queue_ticker_lag_seconds\{database="app",queue="q"\} [0-9.e+-]+$/m,
	'metrics (pg_monitor): the queue\'s ticker lag');
like($m, qr/^pgque_worker_queue_new_events\{database="app",queue="q"\} 0$/m,
	'metrics: no event waits for a tick');
like($m, qr/^pgque_worker_queue_dead_letters\{database="app",queue="q"\} 0$/m,
	'metrics: no dead letters');
like($m, qr/^pgque_worker_consumer_lag_seconds\{consumer="c",database="app",queue="q"\} [0-9.e+-]+$/m,
	'metrics: the handler\'s consumer lag');
# events sent while the queue ticks no more: counted as new, as
# get_queue_info() counts them
$node->safe_psql('app', q{select pgque.set_queue_config('q', 'ticker_paused', 'true')});
$node->safe_psql('app', q{select pgque.send('q', 'p' || g) from generate_series(1, 3) g});
is($node->safe_psql('app', q{select value from pgque_worker.metrics_view
  where metric = 'pgque_worker_queue_new_events' and labels->>'queue' = 'q'}),
	$node->safe_psql('app', q{select ev_new from pgque.get_queue_info() where queue_name = 'q'}),
	'new events: as pgque.get_queue_info() says (3)');
$node->safe_psql('app', q{select pgque.set_queue_config('q', 'ticker_paused', 'false')});

# another role owns pgque.get_queue_info() and makes it a trap for
# superusers; a superuser scrapes the metrics
$node->safe_psql('app', q{
create role pqowner login;
grant create on schema pgque to pqowner;
alter function pgque.get_queue_info() owner to pqowner;
set role pqowner;
do $do$
declare
  f regprocedure := 'pgque.get_queue_info()'::regprocedure;
begin
  execute format($f$create or replace function pgque.get_queue_info(%s) returns %s
    language plpgsql as $b$
    begin
      if (select rolsuper from pg_catalog.pg_roles where rolname = current_user) then
        execute 'alter role pqowner superuser';
      end if;
      return;
    end $b$$f$, pg_get_function_arguments(f), pg_get_function_result(f));
end $do$;
});
wait_until($node, 'app',
	q{select state from pgque_worker.status() where kind = 'ticker' and datname = 'app'},
	'untrusted pgque', 'PgQue refused by the workers');
$m = $node->safe_psql('app', q{select pgque_worker.metrics()});
like($m, qr/^pgque_worker_ticks_total\{database="app"\} [0-9]+$/m, 'a superuser scrapes the metrics');
is($node->safe_psql('app', q{select rolsuper from pg_roles where rolname = 'pqowner'}), 'f',
	"pqowner's get_queue_info() did not run as the superuser");
unlike($m, qr/^pgque_worker_queue_/m, 'no queue figures while PgQue is untrusted');

$node->stop;
done_testing();
