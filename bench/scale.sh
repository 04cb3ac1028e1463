#!/usr/bin/env bash
# pgque_worker scale benchmark (issue 15, item 3). Run as root:
#
#   sudo PGQUE_SQL=/path/to/pgque.sql bench/scale.sh    # ~5 min; BENCH_QUICK=1 halves the windows
#
# Starts its own temporary cluster (/tmp/pgque_worker-scale, port 5478,
# max_worker_processes 64, pgque_worker preloaded), installs the real PgQue
# (PGQUE_SQL, required) and measures:
#  (a) one database with 1, 100, 1000 idle queues (PgQue's default policy)
#      plus one busy queue (ticker_max_count 1, ticker_max_lag 1 ms) with a
#      message handler recording clock_timestamp(): end-to-end latency of the
#      busy queue at SCALE_RATE events/s for SCALE_LOAD_SECONDS (payload =
#      server clock at send, bench/pgq_client.c send), then, with no traffic,
#      CPU of all pgque_worker processes (bench/cpu_sample.pl) and WAL
#      bytes/s over SCALE_IDLE_SECONDS, and the mean ticker() call from
#      pgque_worker.status() (tick_seconds_total / tick_calls, deltas).
#  (a2) the largest count again under the same load, while an unprivileged
#      role runs CREATE TEMP TABLE / DROP TABLE back to back in the same
#      database (every such statement invalidates catalog caches, which the
#      workers' per-statement checks read): latency, CPU of the workers and
#      their ticker() mean over the load window (SCALE_CHURN=0 skips it).
#  (b) 1, 5, 20 idle databases, each with PgQue, one idle queue (default
#      policy) and one registered handler (a ticker and a dispatcher each):
#      CPU of all pgque_worker processes and WAL bytes/s over SCALE_IDLE_SECONDS.
# Prints a markdown table and writes bench/results/scale.md.
#
#   SCALE_QUEUES ("1 100 1000"), SCALE_DBS ("1 5 20"), SCALE_RATE (100)
#   SCALE_LOAD_SECONDS (10), SCALE_IDLE_SECONDS (20: (a)), SCALE_PORT (5478),
#   SCALE_SETTLE_SECONDS (40: (b) waits this long after the workers start, so
#   each new process's first calls (a full tick, its dispatcher's first batch,
#   the first maintenance calls at 30 s) are not counted as idle),
#   SCALE_DB_IDLE_SECONDS (60: (b)'s window),
#   SCALE_DIR (/tmp/pgque_worker-scale), BENCH_KEEP=1 keeps the cluster
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bench=$here/bench
out=${BENCH_OUT:-$bench/results}
bin=/usr/lib/postgresql/15/bin
dir=${SCALE_DIR:-/tmp/pgque_worker-scale}
port=${SCALE_PORT:-5478}
QUEUES=${SCALE_QUEUES:-1 100 1000}
DBS=${SCALE_DBS:-1 5 20}
RATE=${SCALE_RATE:-100}
LOAD_SECONDS=${SCALE_LOAD_SECONDS:-10}
IDLE_SECONDS=${SCALE_IDLE_SECONDS:-20}
DB_IDLE_SECONDS=${SCALE_DB_IDLE_SECONDS:-60}
SETTLE_SECONDS=${SCALE_SETTLE_SECONDS:-40}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  LOAD_SECONDS=$((LOAD_SECONDS / 2)); IDLE_SECONDS=$((IDLE_SECONDS / 2))
fi

[ "$(id -u)" = 0 ] || { echo "run as root (runs the cluster as postgres)"; exit 1; }
[ -x "$bin/postgres" ] || { echo "PostgreSQL 15 server not found in $bin"; exit 1; }
[ -f /usr/lib/postgresql/15/lib/pgque_worker.so ] || { echo "pgque_worker is not installed (make install)"; exit 1; }
[ -n "${PGQUE_SQL:-}" ] && [ -f "$PGQUE_SQL" ] || { echo "PGQUE_SQL (the real PgQue's pgque.sql) is required"; exit 1; }

need=()
[ -f "$($bin/pg_config --includedir)/libpq-fe.h" ] || need+=(libpq-dev)
command -v cc >/dev/null || need+=(gcc libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# shellcheck source=bench/lib.sh
. "$bench/lib.sh"
mkdir -p "$out"
raw=$out/scale-raw.log
client=$dir/pgq_client

cluster_start "max_worker_processes = 64"
cc -O2 -Wall -o "$client" "$bench/pgq_client.c" -I"$($bin/pg_config --includedir)" -lpq -lpthread
: > "$raw"
SO_SHA=$(sha256sum /usr/lib/postgresql/15/lib/pgque_worker.so | cut -c1-12)
log "scale benchmark (PgQue: $PGQUE_SQL; pgque_worker.so $SO_SHA; load ${LOAD_SECONDS}s, idle ${IDLE_SECONDS}s)"
# results live in postgres (plain tables); status() is read in a database with the extension ($sdb)
r() { q postgres "$@"; }
r "create table res_a (idle_queues int, sent int, delivered int, p50 float8, p99 float8, load_calls bigint,
                       load_tick_ms text, direct_tick_ms text, idle_cpu_pct float8, ticker_s float8, dispatcher_s float8,
                       launcher_s float8, idle_wal_bps float8, idle_calls bigint, idle_tick_ms text)"
r "create table res_churn (idle_queues int, sent int, delivered int, p50 float8, p99 float8, load_calls bigint,
                           load_tick_ms text, cpu_pct float8, ticker_s float8, dispatcher_s float8, churn_tables bigint,
                           quiet_cpu_pct float8)"
r "create table res_b (dbs int, workers int, idle_cpu_pct float8, ticker_s float8, dispatcher_s float8, launcher_s float8,
                       idle_wal_bps float8, tick_calls bigint, maint_calls bigint, tick_s float8)"
set_conf() { # name value: ALTER SYSTEM + reload
  r "alter system set $1 = '$2'" >/dev/null
  r "select pg_reload_conf()" >/dev/null
  sleep 0.5
}

# ticker counters of database $1: "tick_calls tick_seconds_total"
tick_counters() {
  q "$sdb" "select coalesce(sum(tick_calls), 0), coalesce(sum(tick_seconds_total), 0)
              from pgque_worker.status() where kind = 'ticker' and datname = '$1'" | tr '|' ' '
}
mean_ms() { # calls0 secs0 calls1 secs1
  awk -v c0="$1" -v s0="$2" -v c1="$3" -v s1="$4" \
    'BEGIN { if (c1 > c0) printf "%.2f", 1000 * (s1 - s0) / (c1 - c0); else printf "-" }'
}
# mean of 10 direct "select pgque.ticker()" calls (own transactions) in database $1, the worker paused
direct_ticker_ms() {
  set_conf pgque_worker.enabled off
  sleep 1
  for _ in 1 2 3 4 5 6 7 8 9 10; do echo 'select pgque.ticker();'; done |
    $bin/psql -X -At -h "$dir" -p "$port" -U postgres -d "$1" -c '\timing on' -f - 2>&1 |
    awk '/^Time:/ { s += $2; n++ } END { if (n) printf "%.2f", s / n; else printf "-" }'
  set_conf pgque_worker.enabled on
}

# ============================================================ (a) queues in one database
log "(a) queues in one database"
sdb=scale
install_pgque scale
q scale "create extension pgque_worker" >/dev/null
$psql_base -d scale -f "$bench/sql/setup.sql" >/dev/null
q scale "select public.bench_queue('busy')" >/dev/null
q scale "select pgque_worker.register_handler('busy', 'h', 'public.bench_lat_handler(pgque.message)')" >/dev/null
q scale "select pgque_worker.wake_launcher()" >/dev/null
wait_for 30 scale "select count(*) from pgque_worker.status() where datname = 'scale' and state = 'running'" 2

have=0
for n in $QUEUES; do
  t=$SECONDS
  seq $((have + 1)) "$n" | sed "s/.*/select pgque.create_queue('idle&');/" | $psql_base -d scale >/dev/null
  have=$n
  log "  $n idle queues (created in $((SECONDS - t)) s)"
  q scale "vacuum analyze" >/dev/null   # so autovacuum's first pass does not land in the idle window
  sleep 3
  # busy queue at RATE/s
  q scale "truncate lat"
  read -r a0 b0 <<<"$(tick_counters scale)"
  res=$("$client" send "$conninfo dbname=scale" busy "$RATE" "$LOAD_SECONDS" 1)
  sent=$(awk '{print $2}' <<<"$res")
  deadline=$((SECONDS + 15))
  while got=$(q scale "select count(*) from lat"); [ "$got" -lt "$sent" ] && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  read -r a1 b1 <<<"$(tick_counters scale)"
  load_ms=$(mean_ms "$a0" "$b0" "$a1" "$b1")
  echo "queues $n: $res delivered $got" >> "$raw"
  sleep 2
  # idle: no traffic
  read -r c0 s0 <<<"$(tick_counters scale)"
  l0=$(lsn)
  echo "queues $n idle CPU:" >> "$raw"
  read -r cpu pct tk ds la <<<"$(cpu_workers "$IDLE_SECONDS")"
  l1=$(lsn)
  read -r c1 s1 <<<"$(tick_counters scale)"
  idle_ms=$(mean_ms "$c0" "$s0" "$c1" "$s1")
  direct=$(direct_ticker_ms scale)
  r "insert into res_a values ($n, $sent, $got, null, null, $a1 - $a0, '$load_ms', '$direct', $pct, $tk, $ds, $la,
                               $(wal_diff "$l0" "$l1")::float8 / $IDLE_SECONDS, $c1 - $c0, '$idle_ms')" >/dev/null
  read -r p50 p99 <<<"$(q scale "select percentile_disc(0.5) within group (order by ms), percentile_disc(0.99) within group (order by ms)
                                  from (select extract(epoch from handled - sent) * 1000 ms from lat) l" | tr '|' ' ')"
  r "update res_a set p50 = $p50, p99 = $p99 where idle_queues = $n" >/dev/null
  log "  $(r "select format('p50 %s ms p99 %s ms, ticker() %s ms under load, %s ms direct; idle %s %% CPU (ticker %s s) %s B/s WAL, ticker() %s ms idle (%s calls)',
                          round(p50::numeric, 2), round(p99::numeric, 2), load_tick_ms, direct_tick_ms, idle_cpu_pct, ticker_s,
                          round(idle_wal_bps::numeric), idle_tick_ms, idle_calls)
                   from res_a where idle_queues = $n")"
done
q scale "select datname, kind, state, tick_calls, ticks, tick_seconds_total, tick_seconds_max, errors, last_error from pgque_worker.status()" >> "$raw"

# ============================================================ (a2) catalog churn
# The largest count again: the same load alone (CPU of the workers over
# the window), then with an unprivileged role creating and dropping a temp
# table back to back in the same database.
if [ "${SCALE_CHURN:-1}" = 1 ]; then
  log "(a2) $n idle queues, an unprivileged role churning the catalog"
  q scale "create role scale_churner login" >/dev/null
  churn_load() { # with_churn: "sent delivered calls tick_ms cpu_pct ticker_s dispatcher_s tables"
    local cpid="" t0 t1 res sent got a0 b0 a1 b1 cpu pct tk ds la
    q scale "truncate lat"
    t0=$(q scale "select pg_catalog.pg_stat_get_tuples_inserted('pg_catalog.pg_class'::regclass)")
    if [ "$1" = 1 ]; then
      yes 'create temp table churn (a int); drop table churn;' | head -n 2000000 |
        $bin/psql -X -q -h "$dir" -p "$port" -U scale_churner -d scale >/dev/null 2>&1 &
      cpid=$!; bg_pids+=("$cpid")
      sleep 1
    fi
    read -r a0 b0 <<<"$(tick_counters scale)"
    cpu_workers "$LOAD_SECONDS" > "$dir/churn_cpu" &
    local cpu_pid=$!
    res=$("$client" send "$conninfo dbname=scale" busy "$RATE" "$LOAD_SECONDS" 1)
    wait "$cpu_pid"
    read -r a1 b1 <<<"$(tick_counters scale)"
    [ -z "$cpid" ] || { kill "$cpid" 2>/dev/null || true; wait "$cpid" 2>/dev/null || true; }
    sent=$(awk '{print $2}' <<<"$res")
    local deadline=$((SECONDS + 15))
    while got=$(q scale "select count(*) from lat"); [ "$got" -lt "$sent" ] && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    sleep 1.5   # the churner's statistics flushed
    t1=$(q scale "select pg_catalog.pg_stat_get_tuples_inserted('pg_catalog.pg_class'::regclass)")
    read -r cpu pct tk ds la < "$dir/churn_cpu"
    echo "queues $n churn $1: $res delivered $got" >> "$raw"
    echo "$sent $got $((a1 - a0)) $(mean_ms "$a0" "$b0" "$a1" "$b1") $pct $tk $ds $((t1 - t0))"
  }
  read -r _ _ _ _ quiet_pct _ _ _ <<<"$(churn_load 0)"
  read -r sent got calls tick_ms pct tk ds tables <<<"$(churn_load 1)"
  read -r p50 p99 <<<"$(q scale "select percentile_disc(0.5) within group (order by ms), percentile_disc(0.99) within group (order by ms)
                                  from (select extract(epoch from handled - sent) * 1000 ms from lat) l" | tr '|' ' ')"
  r "insert into res_churn values ($n, $sent, $got, $p50, $p99, $calls, '$tick_ms', $pct, $tk, $ds, $tables, $quiet_pct)" >/dev/null
  log "  p50 $p50 ms p99 $p99 ms, $got / $sent delivered, ticker() $tick_ms ms ($calls calls), workers $pct % of a core ($quiet_pct % without the churn), $tables temp tables made"
fi

# ============================================================ (b) idle databases
log "(b) idle databases"
# the scale database goes (its autovacuum would count in the WAL)
set_conf pgque_worker.databases none
r "drop database scale" >/dev/null
have=0
for n in $DBS; do
  t=$SECONDS
  for i in $(seq $((have + 1)) "$n"); do
    install_pgque "idle$i"
    $psql_base -d "idle$i" >/dev/null <<'SQL'
create extension pgque_worker;
create function public.bench_noop(m pgque.message) returns void language plpgsql as $$ begin end $$;
select pgque.create_queue('q1');
select pgque_worker.register_handler('q1', 'h', 'public.bench_noop(pgque.message)');
vacuum analyze;
SQL
  done
  have=$n
  sdb=idle1
  # serve only the idle databases
  set_conf pgque_worker.databases "$(seq -s, -f 'idle%g' 1 "$n")"
  q idle1 "select pgque_worker.wake_launcher()" >/dev/null
  wait_for 60 postgres "select count(*) from pg_stat_activity where backend_type in ('pgque_worker ticker', 'pgque_worker dispatcher')" $((2 * n)) || true
  log "  $n idle databases (set up in $((SECONDS - t)) s)"
  sleep "$SETTLE_SECONDS"
  workers=$(q postgres "select count(*) from pg_stat_activity where backend_type like 'pgque_worker%'")
  jobs="select coalesce(sum(tick_calls), 0), coalesce(sum(retry_calls + maint_runs + rotate_runs), 0), coalesce(sum(tick_seconds_total), 0)
          from pgque_worker.status() where kind = 'ticker' and datname like 'idle%'"
  read -r c0 m0 s0 <<<"$(q idle1 "$jobs" | tr '|' ' ')"
  l0=$(lsn)
  echo "$n databases idle CPU:" >> "$raw"
  read -r cpu pct tk ds la <<<"$(cpu_workers "$DB_IDLE_SECONDS")"
  l1=$(lsn)
  read -r c1 m1 s1 <<<"$(q idle1 "$jobs" | tr '|' ' ')"
  r "insert into res_b values ($n, $workers, $pct, $tk, $ds, $la, $(wal_diff "$l0" "$l1")::float8 / $DB_IDLE_SECONDS,
                               $c1 - $c0, $m1 - $m0, $s1 - $s0)"
  log "  $n databases: $workers pgque_worker processes, $pct % of a core (ticker $tk s, dispatcher $ds s, launcher $la s), $(( $(wal_diff "$l0" "$l1") / DB_IDLE_SECONDS )) B/s WAL, $((c1 - c0)) ticker() calls, $((m1 - m0)) maintenance calls"
done
q idle1 "select datname, kind, state, tick_calls, ticks, retry_calls, maint_runs, rotate_runs, errors, last_error from pgque_worker.status() order by 1, 2" >> "$raw"

# ============================================================ report
md=$out/scale.md
first_p50=$(r "select p50 from res_a order by idle_queues limit 1")
last_p50=$(r "select p50 from res_a order by idle_queues desc limit 1")
last_q=$(r "select max(idle_queues) from res_a")
last_cpu=$(r "select idle_cpu_pct from res_b order by dbs desc limit 1")
last_db=$(r "select max(dbs) from res_b")
verdict_a=$(awk -v a="$first_p50" -v b="$last_p50" 'BEGIN { r = b / a; printf "%.1f x: %s", r, (r <= 2 ? "**met**" : "**missed**") }')
verdict_b=$(awk -v c="$last_cpu" 'BEGIN { printf "%s", (c < 1 ? "**met**" : "**missed**") }')
{
echo "# pgque_worker scale benchmark"
echo
echo "Made by \`sudo PGQUE_SQL=/tmp/pgque.sql bench/scale.sh\`${BENCH_QUICK:+ (BENCH_QUICK=$BENCH_QUICK)} on $(date -u '+%Y-%m-%d %H:%M UTC'):"
echo "$(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}'), $(nproc) cores (shared machine, nothing else heavy running),"
echo "PostgreSQL $(r 'show server_version'), fsync on, shared_buffers 256MB,"
pgver=$(grep -m1 -oiE "pgque[ ._-]*v?[0-9]+\.[0-9]+(\.[0-9]+)?" "$PGQUE_SQL" || true)
echo "real PgQue \`$(basename "$PGQUE_SQL")\` ${pgver:+($pgver) }sha256 $(sha256sum "$PGQUE_SQL" | cut -c1-12),"
echo "pgque_worker.so sha256 $SO_SHA, pgque_worker defaults (wake on commit)."
echo
echo "## (a) queues in one database"
echo
echo "Idle queues at PgQue's default policy plus one busy queue (\`ticker_max_count = 1\`,"
echo "\`ticker_max_lag = 1 ms\`, message handler inserting \`clock_timestamp()\`)."
echo "Latency: server clock at send to server clock in the handler, $RATE events/s"
echo "for ${LOAD_SECONDS} s, each send its own transaction. Idle: ${IDLE_SECONDS} s"
echo "without traffic (the queues were just created and vacuumed: their idle ticks"
echo "are still backing off, not yet at one per \`ticker_idle_period\`), CPU of all pgque_worker processes (launcher, ticker,"
echo "dispatcher; the ticker's share in brackets), WAL of the whole server."
echo "Worker ticker() ms: mean duration of the ticker's tick job (\`tick_seconds_total / tick_calls\`"
echo "of \`pgque_worker.status()\`, deltas over the window). Direct: mean of 10"
echo "\`select pgque.ticker()\` from psql (\`\\timing\`), worker paused."
echo
echo "| idle queues | busy p50 ms | busy p99 ms | delivered / sent | ticker() calls under load | worker ticker() ms under load | direct ticker() ms | idle CPU % of a core (ticker s) | idle WAL B/s | ticker() calls idle | worker ticker() ms idle |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
r "select format('| %s | %s | %s | %s / %s | %s | %s | %s | %s (%s) | %s | %s | %s |', idle_queues, round(p50::numeric, 1), round(p99::numeric, 1),
                  delivered, sent, load_calls, load_tick_ms, direct_tick_ms, round(idle_cpu_pct::numeric, 2), round(ticker_s::numeric, 2),
                  round(idle_wal_bps::numeric), idle_calls, idle_tick_ms)
       from res_a order by idle_queues"
echo
echo "Target: with $last_q idle queues the busy queue's p50 within 2 x of the $(r "select min(idle_queues) from res_a")-queue case: $verdict_a."
echo
if [ "$(r "select count(*) from res_churn")" -gt 0 ]; then
echo "## (a2) the largest count while a role churns the catalog"
echo
echo "The same load with $last_q idle queues, while an unprivileged role (no"
echo "grant beyond PUBLIC's) runs \`create temp table churn (a int); drop table churn;\`"
echo "back to back in the same database: every such statement invalidates the"
echo "catalog caches from which the workers check, per statement, whose objects"
echo "PgQue's statements use. The churner itself takes up to one of the cores."
echo "CPU: all pgque_worker processes over the load window, and over the same"
echo "window of the same load without the churn just before."
echo
echo "| idle queues | busy p50 ms | busy p99 ms | delivered / sent | ticker() calls | worker ticker() ms | workers' CPU % of a core (without the churn) | ticker / dispatcher s | temp tables made |"
echo "|---:|---:|---:|---:|---:|---:|---:|---|---:|"
r "select format('| %s | %s | %s | %s / %s | %s | %s | %s (%s) | %s / %s | %s |', idle_queues, round(p50::numeric, 1), round(p99::numeric, 1),
                  delivered, sent, load_calls, load_tick_ms, round(cpu_pct::numeric, 2), round(quiet_cpu_pct::numeric, 2),
                  round(ticker_s::numeric, 2), round(dispatcher_s::numeric, 2), churn_tables)
       from res_churn"
echo
fi
echo "## (b) idle databases"
echo
echo "Each database: PgQue, one idle queue (default policy), one registered"
echo "message handler (so a ticker and a dispatcher). \`pgque_worker.databases\`"
echo "lists only these databases (the database of (a) is dropped first; each new"
echo "database is vacuumed and analyzed at setup, so autovacuum's first pass stays out of the window);"
echo "${SETTLE_SECONDS} s after the workers run (each new process's first calls, which fill its"
echo "caches, are not idle cost), ${DB_IDLE_SECONDS} s without traffic, CPU from \`/proc/<pid>/schedstat\`. Maintenance calls:"
echo "\`retry_calls + maint_runs + rotate_runs\` of all tickers in the window."
echo
echo "| databases | pgque_worker processes | idle CPU % of a core (all processes) | ticker / dispatcher / launcher s | idle WAL B/s | ticker() calls | maintenance calls |"
echo "|---:|---:|---:|---|---:|---:|---:|"
r "select format('| %s | %s | %s | %s / %s / %s | %s | %s | %s |', dbs, workers, round(idle_cpu_pct::numeric, 2),
                  round(ticker_s::numeric, 2), round(dispatcher_s::numeric, 2), round(launcher_s::numeric, 2),
                  round(idle_wal_bps::numeric), tick_calls, maint_calls)
       from res_b order by dbs"
echo
echo "Target: $last_db idle databases < 1 % of a core in all: $verdict_b ($last_cpu %)."
} > "$md"
cat "$md"
log "done"
