# Helpers shared by the benchmark scripts (sourced, not run). The caller sets
# bin, dir, port and bench before sourcing, and runs as root.
#   cluster_start EXTRA_CONF  initdb + start a cluster in $dir/data on $port
#                             (pgque_worker preloaded), cleanup on exit
#   q DB SQL                  one statement, unaligned tuples-only output
#   install_pgque DB          create DB and run $dir/pgque.sql in it
#   lsn / wal_diff A B        WAL position, bytes between two positions
#   wait_for SECS DB SQL VAL  poll SQL until it returns VAL
#   cpu_workers SECS          CPU of all pgque_worker processes over SECS
#                             (bench/cpu_sample.pl): "cpu_seconds pct"

log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
as_pg() { su postgres -s /bin/bash -c "$*"; }

conninfo="host=$dir port=$port user=postgres"
psql_base="$bin/psql -X -q -At -v ON_ERROR_STOP=1 -h $dir -p $port -U postgres"
q() { local db=$1; shift; $psql_base -d "$db" -c "$*"; }
bg_pids=()

cleanup() {
  local rc=$?
  for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl -D $dir/data -m fast stop >/dev/null" || true
  fi
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$dir"
  exit $rc
}

cluster_start() { # extra postgresql.conf lines
  trap cleanup EXIT
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl -D $dir/data -m fast stop >/dev/null" || true
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  chown postgres "$dir"
  cp "$PGQUE_SQL" "$dir/pgque.sql"
  chown postgres "$dir/pgque.sql"
  as_pg "$bin/initdb -D $dir/data -A trust >/dev/null"
  cat >> "$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
shared_preload_libraries = 'pgque_worker'
shared_buffers = 256MB
log_min_messages = warning
$1
CONF
  as_pg "$bin/pg_ctl -D $dir/data -l $dir/server.log -w start >/dev/null"
}

install_pgque() {
  q postgres "create database $1"
  as_pg "PGOPTIONS='-c client_min_messages=warning' $psql_base -d $1 -1 -f $dir/pgque.sql" >/dev/null
}

lsn() { q postgres "select pg_current_wal_lsn()"; }
wal_diff() { q postgres "select pg_wal_lsn_diff('$2', '$1')::bigint"; }

wait_for() { # wait_for SECONDS DB SQL EXPECTED
  local deadline=$((SECONDS + $1)) v
  while :; do
    v=$(q "$2" "$3")
    [ "$v" = "$4" ] && return 0
    [ $SECONDS -ge $deadline ] && { log "timeout waiting for $3 = $4 (got $v)"; return 1; }
    sleep 0.05
  done
}

cpu_workers() { # seconds -> "cpu_seconds pct ticker_s dispatcher_s launcher_s" (raw output appended to $raw)
  local res
  res=$("$bench/cpu_sample.pl" "$1" \
        "select pid, backend_type from pg_stat_activity where backend_type like 'pgque_worker%'" \
        $psql_base -d postgres)
  printf '%s\n' "$res" >> "${raw:-/dev/null}"
  awk -F'\t' '{ v[$1] = $2; p[$1] = $3 }
    END { printf "%s %s %s %s %s\n", v["total"], p["total"], v["pgque_worker ticker"] + 0,
                 v["pgque_worker dispatcher"] + 0, v["pgque_worker launcher"] + 0 }' <<<"$res"
}
