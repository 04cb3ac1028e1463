#!/usr/bin/env bash
# Builds the Debian package (dpkg-buildpackage -us -uc -b, in a copy of the
# tree), installs it with dpkg -i (this REPLACES a `make install` of
# pgque_worker in /usr/lib/postgresql/15: run it last, and not while other
# test runs use that install), then starts a throwaway cluster with the
# library preloaded, installs PgQue (fixture, or PGQUE_SQL=...), creates a
# queue with ticker_max_count 1, sends, and waits (30 s deadline) for the
# message to be ticked and received, nobody calling pgque.ticker().
#
#   sudo test/deb-check.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "run as root (dpkg -i)"; exit 1; }
port=${DEB_CHECK_PORT:-5497}
bin=/usr/lib/postgresql/15/bin
work=$(mktemp -d /tmp/pgque_worker-deb.XXXXXX)
chmod 755 "$work"
as_pg() { su postgres -s /bin/bash -c "$*"; }
cleanup() {
  [ -d "$work/data" ] && as_pg "$bin/pg_ctl -D $work/data -m immediate stop" >/dev/null 2>&1 || true
  [ "${keep:-}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

for p in debhelper postgresql-server-dev-all dpkg-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need="${need:-} $p"
done
if [ -n "${need:-}" ]; then
  echo "=== deb: installing$need"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

echo "=== deb: dpkg-buildpackage -us -uc -b in $work/src"
mkdir "$work/src"
# the tracked and new files, no build products
(cd "$here" && git ls-files -co --exclude-standard 2>/dev/null || find . -path ./.git -prune -o -type f -print) |
  grep -Ev '(^|/)(build[^/]*|tmp_check[^/]*)/|\.(o|so|bc)$' | (cd "$here" && tar -cf - -T -) | tar -C "$work/src" -xf -
start=$(date +%s)
(cd "$work/src" && nice -n 19 dpkg-buildpackage -us -uc -b -j2 >"$work/build.log" 2>&1) ||
  { tail -n 40 "$work/build.log"; keep=1; echo "=== deb: build FAILED (log: $work/build.log)"; exit 1; }
deb=$(ls "$work"/postgresql-15-pgque-worker_*.deb)
echo "built $(basename "$deb") in $(( $(date +%s) - start )) s"

echo "=== deb: dpkg -i"
dpkg -i "$deb" >/dev/null
dpkg -s postgresql-15-pgque-worker | grep -E '^(Status|Version)'

echo "=== deb: throwaway cluster on port $port with the packaged library preloaded"
chown postgres "$work"
sql=${PGQUE_SQL:-$here/test/fixtures/pgque_fixture.sql}
cp "$sql" "$work/pgque.sql" && chown postgres "$work/pgque.sql"
as_pg "$bin/initdb -D $work/data -A trust >/dev/null"
cat >> "$work/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$work'
shared_preload_libraries = 'pgque_worker'
CONF
as_pg "$bin/pg_ctl -D $work/data -l $work/server.log -w start >/dev/null"
psql="$bin/psql -X -q -h $work -p $port -U postgres"
as_pg "$psql -c 'create database debcheck'"
as_pg "PGOPTIONS='-c client_min_messages=warning' $psql -d debcheck -1 -v ON_ERROR_STOP=1 -f $work/pgque.sql"
as_pg "$psql -d debcheck -v ON_ERROR_STOP=1" >/dev/null <<'SQL'
create extension pgque_worker;
select pgque_worker.wake_launcher();
select pgque.create_queue('debcheck');
select pgque.set_queue_config('debcheck', 'ticker_max_count', '1');
select pgque.subscribe('debcheck', 'reader');
select pgque.send('debcheck', '{"from": "the package"}'::jsonb);
SQL
got=
deadline=$(( $(date +%s) + 30 ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  got=$(as_pg "$psql -d debcheck -At -c \"select payload from pgque.receive('debcheck', 'reader', 100)\"")
  [ -n "$got" ] && break
  sleep 0.2
done
as_pg "$psql -d debcheck -c 'select datname, kind, state, ticks from pgque_worker.status()'"
if [ -z "$got" ]; then
  keep=1
  tail -n 30 "$work/server.log"
  echo "=== deb: FAILED: nothing ticked within 30 s (kept: $work)"
  exit 1
fi
echo "received: $got"
echo "=== deb: the installed package ticks"
