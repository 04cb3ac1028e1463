#!/usr/bin/env bash
# Demo: build and install pgque_worker, start a throwaway cluster with it
# preloaded, install PgQue (the test fixture, or PGQUE_SQL=/path/to/pgque.sql),
# send a message and receive it with no ticker call from anyone.
#
#   sudo test/demo.sh            # cluster in /tmp/pgque_worker-demo, port 5499
#   sudo test/demo.sh stop       # stop and remove it
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=/tmp/pgque_worker-demo
port=${DEMO_PORT:-5499}
bin=/usr/lib/postgresql/15/bin
as_pg() { su postgres -s /bin/bash -c "$*"; }

if [ "${1:-}" = stop ]; then
  as_pg "$bin/pg_ctl -D $dir/data -m fast stop" || true
  rm -rf "$dir"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "run as root (installs packages and the extension)"; exit 1; }

"$here/test/install-deps.sh"
make -s -C "$here" && make -s -C "$here" install

rm -rf "$dir" && mkdir -p "$dir" && chown postgres "$dir"
sql=${PGQUE_SQL:-$here/test/fixtures/pgque_fixture.sql}
cp "$sql" "$dir/pgque.sql" && chown postgres "$dir/pgque.sql"
as_pg "$bin/initdb -D $dir/data -A trust >/dev/null"
cat >> "$dir/data/postgresql.conf" <<CONF
port = $port
unix_socket_directories = '$dir'
shared_preload_libraries = 'pgque_worker'
CONF
as_pg "$bin/pg_ctl -D $dir/data -l $dir/server.log -w start >/dev/null"
psql="$bin/psql -X -q -h $dir -p $port -U postgres"
as_pg "$psql -c 'create database demo'"
as_pg "PGOPTIONS='-c client_min_messages=warning' $psql -d demo -1 -v ON_ERROR_STOP=1 -f $dir/pgque.sql"
as_pg "$psql -d demo" <<'SQL'
create extension pgque_worker;
select pgque_worker.wake_launcher();
select pgque.create_queue('demo');
select pgque.set_queue_config('demo', 'ticker_max_count', '1');
select pgque.subscribe('demo', 'reader');
select pgque.send('demo', '{"hello": "world"}'::jsonb);
SQL
echo "sent one message; waiting for pgque_worker to tick (nobody calls pgque.ticker())"
for _ in $(seq 1 100); do
  got=$(as_pg "$psql -d demo -At -c \"select payload from pgque.receive('demo', 'reader', 100)\"")
  [ -n "$got" ] && break
  sleep 0.1
done
echo "received: ${got:-nothing}"
as_pg "$psql -d demo -c 'select datname, kind, state, tick_calls, ticks, maint_runs, rotate_runs, errors from pgque_worker.status()'"
echo "cluster left running: psql -h $dir -p $port -U postgres demo   (stop: sudo test/demo.sh stop)"
[ -n "${got:-}" ]
