#!/usr/bin/env bash
# pgque_worker benchmark suite. Run as root:
#
#   sudo PGQUE_SQL=/path/to/pgque.sql bench/run.sh   # real PgQue (the reported numbers)
#   sudo bench/run.sh                                # the test fixture
#   sudo BENCH_QUICK=1 bench/run.sh                  # short trial run (< 5 min)
#
# Installs what it needs from Debian (gnuplot-nox, libpq-dev), compiles
# bench/pgq_client.c, starts a temporary cluster (/tmp/pgque_worker-bench,
# port 5477) with the installed pgque_worker preloaded, installs PgQue, runs
# every measurement, prints a markdown table, writes bench/results/results.md
# and bench/results/*.png, and stops the cluster.
#
# Durations (seconds unless said):
#   BENCH_FLOOR_MESSAGES (1000)    deliveries of the latency floor (one client, 100/s)
#   BENCH_LOAD_SECONDS (10)        each latency run (per mode and rate)
#   BENCH_RATES ("100 1000")       events/s of the latency runs
#   BENCH_TICK_IDLE_SECONDS (10)   idle window per mode for ticks/s and WAL/s
#   BENCH_IDLE_SECONDS (60)        each idle-CPU measurement
#   BENCH_DISPATCH_MESSAGES (50000), BENCH_DISPATCH_BATCH (1000 per batch)
#   BENCH_WIDE_CHUNK (10000)       pgque_worker.chunk_messages of the second handler run
#                                  (the first runs at the default, 1000)
#   BENCH_DISPATCH_ROUNDS (3)      rounds of the external consumer, the PL/pgSQL loop and
#                                  the handlers, interleaved; the report takes medians
#   BENCH_PGBENCH_SECONDS (10), BENCH_PGBENCH_ROUNDS (8), BENCH_PGBENCH_SCALE (10): each
#                                  round runs both settings back to back (orders alternate);
#                                  the report takes the median of the rounds' ratios
#   BENCH_EXTRA_CONF               lines added to postgresql.conf (e.g. a pgque_worker setting)
#   BENCH_MODES ("woc p100 p10 p1 wocx cron100 cron10 cron1"; wocx = the worker ticking
#                with wake on commit, consumed by the external 1 ms poller: the
#                ticker alone, without the dispatcher)
#   BENCH_PORT (5477), BENCH_DIR (/tmp/pgque_worker-bench), BENCH_KEEP=1 keeps the cluster
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bench=$here/bench
out=${BENCH_OUT:-$bench/results}
bin=/usr/lib/postgresql/15/bin
dir=${BENCH_DIR:-/tmp/pgque_worker-bench}
port=${BENCH_PORT:-5477}

if [ "${BENCH_QUICK:-0}" = 1 ]; then
  : "${BENCH_LOAD_SECONDS:=3}" "${BENCH_TICK_IDLE_SECONDS:=3}" "${BENCH_IDLE_SECONDS:=10}"
  : "${BENCH_DISPATCH_MESSAGES:=10000}" "${BENCH_PGBENCH_SECONDS:=5}" "${BENCH_PGBENCH_ROUNDS:=1}"
  : "${BENCH_PGBENCH_SCALE:=2}" "${BENCH_FLOOR_MESSAGES:=300}" "${BENCH_DISPATCH_ROUNDS:=1}"
fi
FLOOR_MESSAGES=${BENCH_FLOOR_MESSAGES:-1000}
LOAD_SECONDS=${BENCH_LOAD_SECONDS:-10}
RATES=${BENCH_RATES:-100 1000}
TICK_IDLE_SECONDS=${BENCH_TICK_IDLE_SECONDS:-10}
IDLE_SECONDS=${BENCH_IDLE_SECONDS:-60}
DISPATCH_MESSAGES=${BENCH_DISPATCH_MESSAGES:-50000}
DISPATCH_BATCH=${BENCH_DISPATCH_BATCH:-1000}
WIDE_CHUNK=${BENCH_WIDE_CHUNK:-10000}
DISPATCH_ROUNDS=${BENCH_DISPATCH_ROUNDS:-3}
PGBENCH_SECONDS=${BENCH_PGBENCH_SECONDS:-10}
PGBENCH_ROUNDS=${BENCH_PGBENCH_ROUNDS:-8}
PGBENCH_SCALE=${BENCH_PGBENCH_SCALE:-10}
MODES=${BENCH_MODES:-woc p100 p10 p1 wocx cron100 cron10 cron1}
PGQUE_SQL=${PGQUE_SQL:-$here/test/fixtures/pgque_fixture.sql}

[ "$(id -u)" = 0 ] || { echo "run as root (installs packages, runs the cluster as postgres)"; exit 1; }
[ -x "$bin/postgres" ] || { echo "PostgreSQL 15 server not found in $bin"; exit 1; }
[ -f /usr/lib/postgresql/15/lib/pgque_worker.so ] || { echo "pgque_worker is not installed (make install)"; exit 1; }
[ -f "$PGQUE_SQL" ] || { echo "PGQUE_SQL=$PGQUE_SQL not found"; exit 1; }

# log, as_pg, q, cluster_start, install_pgque, lsn, wal_diff, wait_for,
# cpu_workers: shared with scale.sh
# shellcheck source=bench/lib.sh
. "$bench/lib.sh"

# ---------------------------------------------------------------- packages
need=()
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
[ -f "$($bin/pg_config --includedir)/libpq-fe.h" ] || need+=(libpq-dev)
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v valgrind >/dev/null || need+=(valgrind)
[ -x "$bin/pgbench" ] || need+=(postgresql-contrib-15)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# ---------------------------------------------------------------- cluster
client=$dir/pgq_client
raw=$out/raw.log
mkdir -p "$out"
: > "$raw"
cluster_start "max_worker_processes = 24
include_if_exists = 'bench.conf'
${BENCH_EXTRA_CONF:-}"
touch "$dir/data/bench.conf"
chown postgres "$dir/data/bench.conf"
cc -O2 -Wall -o "$client" "$bench/pgq_client.c" -I"$($bin/pg_config --includedir)" -lpq -lpthread

# Settings of the run: bench.conf, rewritten and reloaded. Names that the
# installed build does not know are ignored by the server (a log line).
declare -A CONF=()
apply_conf() {
  local f=$dir/data/bench.conf k
  : > "$f"
  for k in "${!CONF[@]}"; do echo "$k = '${CONF[$k]}'" >> "$f"; done
  q postgres "select pg_reload_conf()" >/dev/null
  sleep 0.5
}
has_setting() { [ "$(q postgres "select count(*) from pg_settings where name = '$1'")" = 1 ]; }

CLK_TCK=$(getconf CLK_TCK)
SO_SHA=$(sha256sum /usr/lib/postgresql/15/lib/pgque_worker.so | cut -c1-12)
log "setting up (PgQue: $PGQUE_SQL; pgque_worker.so $SO_SHA)"
install_pgque bench
q bench "create extension pgque_worker" >/dev/null
$psql_base -d bench -f "$bench/sql/setup.sql" >/dev/null
q bench "create table res_lat (mode text, rate int, sent int, delivered int, seconds float8, ticks bigint, wal bigint, max_late_ms float8, load1 float8)"
q bench "create table res_idle (mode text, seconds float8, ticks bigint, wal bigint)"
q bench "create table res_thr (method text, round int, messages int, seconds float8, steady_seconds float8)"
q bench "create table res_hsec (method text, round int, handler_seconds float8, batches bigint, messages bigint, disp_cpu_s float8, disp_minflt bigint)"
q bench "create table res_steps (consumer text, events int, batch_end int, next_batch_ms float8, progress_ms float8, cursor_ms float8, fetch_ms float8, handler_ms float8, ack_ms float8, stats_ms float8, commit_ms float8, part int, parts int)"
q bench "create table res_pgbench (round int, woc text, tps float8)"
q bench "create table res_cpu (what text, dbs int, seconds float8, cpu_seconds float8, pct float8, detail text)"
q bench "create table res_pgbench_load (round int, woc text, load1 float8)"
q bench "create table res_hook_ir (setting text, ir_per_tx bigint)"
q bench "select pgque_worker.wake_launcher()" >/dev/null
HAS_WOC=0; has_setting pgque_worker.wake_on_commit && HAS_WOC=1
HAS_MTI=0; has_setting pgque_worker.min_tick_interval && HAS_MTI=1
HAS_DSC=0; has_setting pgque_worker.dispatch_synchronous_commit && HAS_DSC=1
log "wake_on_commit in the installed build: $HAS_WOC; min_tick_interval: $HAS_MTI"

# ticks materialized so far on queue $2 of db $1, and the WAL position
ticks() { q "$1" "select coalesce(sum(last_tick_id), 0) from pgque.get_queue_info() where queue_name = '$2'"; }

cron_pid=
start_cron_ticker() { # db: a session calling CALL pgque.ticker_loop() back to back
  PGAPPNAME=bench_cron_ticker $psql_base -d "$1" -f <(yes 'CALL pgque.ticker_loop();') >/dev/null 2>>"$raw" &
  cron_pid=$!
  bg_pids+=("$cron_pid")
  wait_for 10 postgres "select count(*) > 0 from pg_stat_activity where application_name = 'bench_cron_ticker'" t
}
stop_cron_ticker() {
  q postgres "select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = 'bench_cron_ticker'" >/dev/null
  kill "$cron_pid" 2>/dev/null || true
  wait "$cron_pid" 2>/dev/null || true
}

poll_pid=
start_poll() { # file: external consumer polling receive every 1 ms
  "$client" poll "$conninfo dbname=bench" lat ext 1000 > "$1" 2>>"$raw" &
  poll_pid=$!
  bg_pids+=("$poll_pid")
}
stop_poll() { kill -TERM "$poll_pid" 2>/dev/null || true; wait "$poll_pid" 2>/dev/null || true; }

# ============================================================ 0. the floor
# What a delivery costs with nobody waiting on anything: one client runs the
# three transactions (send, pgque.ticker(queue), receive + ack) back to back.
log "latency floor: $FLOOR_MESSAGES deliveries by one client, no scheduler"
CONF=([pgque_worker.enabled]=off); apply_conf
q bench "select public.bench_queue('floor')" >/dev/null
q bench "select pgque.subscribe('floor', 'fc')" >/dev/null
"$client" floor "$conninfo dbname=bench" floor fc "$FLOOR_MESSAGES" > "$dir/floor.txt" 2>>"$raw"
$psql_base -d bench -c "\\copy lat_all(ms) from '$dir/floor.txt'"
q bench "update lat_all set mode = 'floor', rate = 100 where mode is null"
q bench "select pgque.drop_queue('floor', true)" >/dev/null
log "  floor p50 $(q bench "select round(percentile_disc(0.5) within group (order by ms)::numeric, 2) from lat_all where mode = 'floor'") ms"

# ============================================================ 1. latency, ticks, WAL
q bench "select public.bench_queue('lat')" >/dev/null
q bench "select pgque_worker.register_handler('lat', 'h', 'public.bench_lat_handler(pgque.message)')" >/dev/null
ext_subscribed=0

ext_mode() { [[ $1 == cron* || $1 == wocx ]]; }

configure_mode() {
  local m=$1
  CONF=()
  case $m in
    woc|wocx) CONF[pgque_worker.enabled]=on;  CONF[pgque_worker.wake_on_commit]=on;  CONF[pgque_worker.tick_period]=0 ;;
    p*)     CONF[pgque_worker.enabled]=on;  CONF[pgque_worker.wake_on_commit]=off; CONF[pgque_worker.tick_period]=${m#p} ;;
    cron*)  CONF[pgque_worker.enabled]=off; CONF[pgque_worker.wake_on_commit]=off ;;
  esac
  apply_conf
}

run_rate() { # mode rate
  local m=$1 rate=$2 l0 l1 t0 t1 res sent late got nconn=1 f=$dir/poll.$1.$2 start
  [ "$rate" -ge 500 ] && nconn=4
  q bench "truncate lat"
  ext_mode "$m" && start_poll "$f"
  sleep 0.3
  t0=$(ticks bench lat); l0=$(lsn); start=$(date +%s.%N)
  res=$("$client" send "$conninfo dbname=bench" lat "$rate" "$LOAD_SECONDS" "$nconn")
  sent=$(awk '{print $2}' <<<"$res"); late=$(awk '{print $6}' <<<"$res")
  # wait until every event was delivered (or 15 s)
  local deadline=$((SECONDS + 15))
  while :; do
    if ext_mode "$m"; then got=$(wc -l < "$f"); else got=$(q bench "select count(*) from lat"); fi
    [ "$got" -ge "$sent" ] || [ $SECONDS -ge $deadline ] && break
    sleep 0.05
  done
  t1=$(ticks bench lat); l1=$(lsn)
  local secs; secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.3f", b - a}')
  if ext_mode "$m"; then
    stop_poll
    $psql_base -d bench -c "\\copy lat_all(ms) from '$f'"
    q bench "update lat_all set mode = '$m', rate = $rate where mode is null"
  else
    q bench "insert into lat_all select '$m', $rate, extract(epoch from handled - sent) * 1000 from lat"
    # the tail, with when each was sent: scattered or in one burst?
    log "  $m $rate/s slowest: $(q bench "select string_agg(format('%s ms at +%s s', round(ms::numeric, 1), round(off::numeric, 2)), ', ' order by ms desc) from (select ms, off from (select extract(epoch from handled - sent) * 1000 ms, extract(epoch from sent - min(sent) over ()) off from lat) x order by ms desc limit 10) s")"
  fi
  q bench "insert into res_lat values ('$m', $rate, $sent, $got, $secs, $t1 - $t0, $(wal_diff "$l0" "$l1"), $late, $(cut -d' ' -f1 /proc/loadavg))"
  log "  $m $rate/s: sent $sent delivered $got ticks $((t1 - t0)) (sender max late ${late} ms)"
}

for m in $MODES; do
  if [[ $m == woc* ]] && [ $HAS_WOC = 0 ]; then
    log "mode woc skipped: pgque_worker.wake_on_commit is not in the installed build"
    continue
  fi
  log "latency mode $m"
  configure_mode "$m"
  if ext_mode "$m" && [ $ext_subscribed = 0 ]; then
      q bench "select pgque_worker.unregister_handler('lat', 'h', unsubscribe => true)" >/dev/null
      q bench "select pgque.subscribe('lat', 'ext')" >/dev/null
      ext_subscribed=1
  fi
  if [[ $m == cron* ]]; then
    q bench "select pgque.set_tick_period_ms(${m#cron})" >/dev/null
    start_cron_ticker bench
  fi
  sleep 2
  # idle window: no traffic (the pg_cron path's consumer keeps polling)
  ext_mode "$m" && start_poll /dev/null
  t0=$(ticks bench lat); l0=$(lsn)
  sleep "$TICK_IDLE_SECONDS"
  t1=$(ticks bench lat); l1=$(lsn)
  ext_mode "$m" && stop_poll
  q bench "insert into res_idle values ('$m', $TICK_IDLE_SECONDS, $t1 - $t0, $(wal_diff "$l0" "$l1"))"
  for r in $RATES; do run_rate "$m" "$r"; done
  if [[ $m == cron* ]]; then
    stop_cron_ticker
    q bench "select pgque.set_tick_period_ms(100)" >/dev/null
  else
    q bench "select datname, kind, state, tick_calls, ticks, errors, last_error from pgque_worker.status()" >> "$raw"
  fi
done

# ============================================================ 2. dispatch throughput
log "dispatch throughput: $DISPATCH_MESSAGES messages in batches of $DISPATCH_BATCH"
CONF=(); apply_conf
q bench "select public.bench_queue('keep')" >/dev/null
q bench "select pgque_worker.register_handler('keep', 'k', 'public.bench_noop(pgque.message)')" >/dev/null
q bench "select public.bench_queue('thr')" >/dev/null
q bench "select public.bench_queue('thr1')" >/dev/null
# per stream: a message and a batch handler, and the same pair again for the
# run that logs where each chunk's time goes (log_min_messages = debug1);
# all of that twice: at the default chunk_messages and at WIDE_CHUNK (w).
# Every round has its own consumers (round 1 without a suffix, round r with
# _r), so each one reads the same events.
rsfx() { [ "$1" = 1 ] || echo "_$1"; }
register_handlers() { # consumer-name suffix: msg, msgw, bat, batw on thr and thr1
  local c
  for c in msg msgw; do
    q bench "select pgque_worker.register_handler('thr', '$c$1', 'public.bench_sink_msg(pgque.message)', enabled => false)" >/dev/null
    q bench "select pgque_worker.register_handler('thr1', '${c/msg/msg1}$1', 'public.bench_sink_msg(pgque.message)', enabled => false)" >/dev/null
  done
  for c in bat batw; do
    q bench "select pgque_worker.register_handler('thr', '$c$1', 'public.bench_sink_batch(pgque.message[])', batch => true, enabled => false)" >/dev/null
    q bench "select pgque_worker.register_handler('thr1', '${c/bat/bat1}$1', 'public.bench_sink_batch(pgque.message[])', batch => true, enabled => false)" >/dev/null
  done
  # the dispatcher's own cost (a batch handler that only notes its calls),
  # and PgQue's (bench_pgque_floor: no handler, no dispatcher)
  for c in nop nopw; do
    q bench "select pgque_worker.register_handler('thr', '$c$1', 'public.bench_mark_batch(pgque.message[])', batch => true, enabled => false)" >/dev/null
    q bench "select pgque_worker.register_handler('thr1', '${c/nop/nop1}$1', 'public.bench_mark_batch(pgque.message[])', batch => true, enabled => false)" >/dev/null
  done
  # stream A at chunk_messages 1000 with dispatch_synchronous_commit = off
  if [ "$HAS_DSC" = 1 ]; then
    q bench "select pgque_worker.register_handler('thr', 'msga$1', 'public.bench_sink_msg(pgque.message)', enabled => false)" >/dev/null
    q bench "select pgque_worker.register_handler('thr', 'bata$1', 'public.bench_sink_batch(pgque.message[])', batch => true, enabled => false)" >/dev/null
  fi
  for c in flo flow; do
    q bench "select pgque.subscribe('thr', '$c$1')" >/dev/null
    q bench "select pgque.subscribe('thr1', '${c/flo/flo1}$1')" >/dev/null
  done
}
for r in $(seq 1 "$DISPATCH_ROUNDS"); do
  x=$(rsfx "$r")
  register_handlers "$x"
  q bench "select pgque.subscribe('thr', 'ext$x')" >/dev/null
  q bench "select pgque.subscribe('thr', 'plp$x')" >/dev/null
done
register_handlers _s
q bench "select pgque.subscribe('thr', 'ext_tcp')" >/dev/null
q bench "select pgque.subscribe('thr', 'ext_each')" >/dev/null
sleep 1
nb=$(( (DISPATCH_MESSAGES + DISPATCH_BATCH - 1) / DISPATCH_BATCH ))
for i in $(seq 1 "$nb"); do
  echo "select pgque.send_batch('thr', array(select 'msg-' || lpad(g::text, 8, '0') || '-' || repeat('x', 64) from generate_series(($i - 1) * $DISPATCH_BATCH + 1, least($i * $DISPATCH_BATCH, $DISPATCH_MESSAGES)) g));"
  echo "select pgque.ticker();"
done | $psql_base -d bench >/dev/null
# the second stream: all of it in one transaction, so one batch
echo "select pgque.send_batch('thr1', array(select 'msg-' || lpad(g::text, 8, '0') || '-' || repeat('x', 64) from generate_series(1, $DISPATCH_MESSAGES) g));
select pgque.ticker();" | $psql_base -d bench >/dev/null
wait_for 30 bench "select sum(ev_new) from pgque.get_queue_info() where queue_name in ('thr', 'thr1')" 0
sleep 0.5

thr_worker() { # queue consumer [method round]: no method, no record
  # the sink: a row per message, or (bench_mark_batch) a row per call
  local rows="select 1 n, at from sink"
  [[ $2 != nop* ]] || rows="select n, at from marks"
  q bench "truncate sink, marks"
  local ds0; ds0=$(disp_stat)
  # the clock starts with the enabling statement (not before a psql start)
  local t0; t0=$(q bench "update pgque_worker.handler set enabled = true where queue_name = '$1' and consumer_name = '$2' returning clock_timestamp()")
  wait_for 600 bench "select coalesce(sum(n), 0) from ($rows) s" "$DISPATCH_MESSAGES" || true
  # the dispatcher's CPU and minor page faults over the run (it usually
  # starts with the run: with no handler enabled it leaves)
  local ds; ds=$(disp_delta "$ds0" "$(disp_stat)")
  q bench "update pgque_worker.handler set enabled = false where queue_name = '$1' and consumer_name = '$2'"
  [ -n "${3:-}" ] || return 0
  q bench "insert into res_thr select '$3', $4, sum(n), extract(epoch from max(at) - '$t0'), extract(epoch from max(at) - min(at)) from ($rows) s"
  q bench "insert into res_hsec select '$3', $4, handler_seconds, batches, messages_ok, ${ds% *}, ${ds#* } from pgque_worker.handler_stats where queue_name = '$1' and consumer_name = '$2'"
}
disp_stat() { # "pid cpu_seconds minflt" of database bench's dispatcher since its start, or "0 0 0"
  local pid; pid=$(q bench "select pid from pg_stat_activity where backend_type = 'pgque_worker dispatcher' and datname = 'bench' limit 1")
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || { echo "0 0 0"; return; }
  # fields after the command name: 10 minflt, 14 utime, 15 stime (clock ticks)
  awk -v hz="$CLK_TCK" -v pid="$pid" '{ sub(/^.*\) /, ""); print pid, ($12 + $13) / hz, $8 }' "/proc/$pid/stat"
}
disp_delta() { # "cpu_seconds minflt" between two disp_stat results (the second from a new process: all of it)
  local a=($1) b=($2)
  [ "${b[0]}" != 0 ] || { echo "null null"; return; }
  [ "${a[0]}" = "${b[0]}" ] || a=(0 0 0)
  echo "$(awk -v x="${b[1]}" -v y="${a[1]}" 'BEGIN { print x - y }') $(( b[2] - a[2] ))"
}
thr_floor() { # queue consumer commit_every method round: PgQue alone, timed inside one session
  # (its CPU as the dispatcher's: the session's own /proc/self/stat, in res_hsec)
  $psql_base -d bench -v ON_ERROR_STOP=1 -q >/dev/null <<SQL
select clock_timestamp() t0, public.bench_backend_cpu_s($CLK_TCK) c0 \gset
call public.bench_pgque_floor('$1', '$2', $DISPATCH_MESSAGES, $3);
insert into res_thr values ('$4', $5, $DISPATCH_MESSAGES, extract(epoch from clock_timestamp() - :'t0'), null);
insert into res_hsec values ('$4', $5, null, null, $DISPATCH_MESSAGES, public.bench_backend_cpu_s($CLK_TCK) - :c0, null);
SQL
}
thr_client() { # method round command...
  local c=$1 r=$2; shift 2
  q bench "truncate sink"
  local t0; t0=$(q bench "select clock_timestamp()")
  "$@" >> "$raw"
  q bench "insert into res_thr select '$c', $r, count(*), extract(epoch from max(at) - '$t0'), extract(epoch from max(at) - min(at)) from sink"
}
thr_client ext_tcp 1 timeout 900 "$client" drain "host=127.0.0.1 port=$port user=postgres dbname=bench" thr ext_tcp "$DISPATCH_MESSAGES"
thr_client ext_each 1 timeout 1800 "$client" drain "$conninfo dbname=bench" thr ext_each "$DISPATCH_MESSAGES" each
log "  external libpq consumer variants done"
thr_async() { # consumer suffix, round: stream A at dispatch_synchronous_commit = off
  [ "$HAS_DSC" = 1 ] || return 0
  CONF=([pgque_worker.dispatch_synchronous_commit]=off); apply_conf
  thr_worker thr "msga$1" msga "$2"
  thr_worker thr "bata$1" bata "$2"
  CONF=(); apply_conf
}
# the rounds: each method once per round, in the same order
for r in $(seq 1 "$DISPATCH_ROUNDS"); do
  x=$(rsfx "$r")
  thr_client ext "$r" timeout 900 "$client" drain "$conninfo dbname=bench" thr "ext$x" "$DISPATCH_MESSAGES"
  thr_client plp "$r" timeout 900 $psql_base -d bench -c "call public.bench_plpgsql_loop('thr', 'plp$x', $DISPATCH_MESSAGES)"
  # the handlers at dispatch_synchronous_commit = off: first in even
  # rounds, last in odd ones
  if [ $((r % 2)) = 0 ]; then thr_async "$x" "$r"; fi
  for w in "" w; do
    if [ -z "$w" ]; then CONF=(); ce=1000; else CONF=([pgque_worker.chunk_messages]=$WIDE_CHUNK); ce=$WIDE_CHUNK; fi
    apply_conf
    thr_worker thr "msg$w$x" "msg$w" "$r"
    thr_worker thr "bat$w$x" "bat$w" "$r"
    thr_worker thr "nop$w$x" "nop$w" "$r"
    thr_floor thr "flo$w$x" "$ce" "flo$w" "$r"
    thr_worker thr1 "msg1$w$x" "msg1$w" "$r"
    thr_worker thr1 "bat1$w$x" "bat1$w" "$r"
    thr_worker thr1 "nop1$w$x" "nop1$w" "$r"
    thr_floor thr1 "flo1$w$x" "$ce" "flo1$w" "$r"
  done
  if [ $((r % 2)) = 1 ]; then thr_async "$x" "$r"; fi
  log "  round $r of $DISPATCH_ROUNDS done (external consumer, PL/pgSQL loop, handlers at chunk_messages 1000 and $WIDE_CHUNK)"
done
CONF=(); apply_conf
log "  message and batch handlers done (chunk_messages 1000 and $WIDE_CHUNK)"
# where a chunk's time goes: the dispatcher logs each chunk's steps at DEBUG1
# (a line per batch in it: "part i of n")
logpos=$(stat -c %s "$dir/server.log")
for w in "" w; do
  CONF=([log_min_messages]=debug1); [ -z "$w" ] || CONF[pgque_worker.chunk_messages]=$WIDE_CHUNK; apply_conf
  for c in "thr msg${w}_s" "thr bat${w}_s" "thr1 msg1${w}_s" "thr1 bat1${w}_s"; do thr_worker $c; done
done
CONF=(); apply_conf
tail -c +$((logpos + 1)) "$dir/server.log" | awk '
  /pgque_worker chunk: / {
    delete f; for (i = 1; i < NF; i++) f[$i] = $(i + 1)
    c = f["consumer"]; gsub(/"/, "", c)
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c, f["events"], f["batch_end"], f["next_batch_ms"],
           f["progress_ms"], f["cursor_ms"], f["fetch_ms"], f["handler_ms"], f["ack_ms"], f["stats_ms"], f["commit_ms"],
           f["part"] == "" ? 1 : f["part"], f["of"] == "" ? 1 : f["of"] }' |
  $psql_base -d bench -c "copy res_steps from stdin"
log "  chunk steps logged"
q bench "select * from pgque_worker.handler_stats" >> "$raw"

# ============================================================ 3. commit hook cost
log "pgbench: $PGBENCH_ROUNDS rounds x ${PGBENCH_SECONDS}s, wake_on_commit off/on"
$bin/pgbench -q -i -s "$PGBENCH_SCALE" -h "$dir" -p "$port" -U postgres bench >/dev/null 2>&1
q bench "vacuum analyze" >/dev/null
for r in $(seq 1 "$PGBENCH_ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="off on"; else order="on off"; fi
  for w in $order; do
    CONF=([pgque_worker.wake_on_commit]=$w); apply_conf
    tps=$(PGOPTIONS='-c synchronous_commit=off' $bin/pgbench -n -M prepared -c 2 -j 2 -T "$PGBENCH_SECONDS" \
            -h "$dir" -p "$port" -U postgres bench 2>>"$raw" | awk '/^tps = / {print $3; exit}')
    q bench "insert into res_pgbench values ($r, '$w', ${tps:-0})"
    q bench "insert into res_pgbench_load values ($r, '$w', $(cut -d' ' -f1 /proc/loadavg))"
    log "  round $r wake_on_commit=$w: $tps tps"
  done
done
# the same transactions counted in instructions, which the machine does not move
log "commit hook in instructions (bench/hook_cost.sh: callgrind, single-user backend)"
PGQUE_SQL=$PGQUE_SQL BENCH_HOOK_PORT=$((port + 1)) "$bench/hook_cost.sh" 2>>"$raw" |
  while read -r s n; do q bench "insert into res_hook_ir values ('$s', $n)"; log "  $s: $n instructions a transaction"; done

# ============================================================ 4. idle CPU
log "idle CPU: ${IDLE_SECONDS}s per measurement"
# a fresh server: the extension script must match the library in memory
# (the installed build may have been replaced since the start)
as_pg "$bin/pg_ctl -D $dir/data -l $dir/server.log -w -m fast restart >/dev/null"
echo "library sha256 at idle phase: $(sha256sum /usr/lib/postgresql/15/lib/pgque_worker.so | cut -c1-12)" >> "$raw"
for i in 1 2 3 4 5; do
  install_pgque "idle$i"
  $psql_base -d "idle$i" -f "$bench/sql/idle_setup.sql" >/dev/null
done
worker_sql="select pid, backend_type from pg_stat_activity where backend_type like 'pgque_worker%'"
measure_cpu() { # what dbs sql
  local res total pct detail
  res=$("$bench/cpu_sample.pl" "$IDLE_SECONDS" "$3" $psql_base -d postgres)
  echo "$1 $2: $res" >> "$raw"
  total=$(awk -F'\t' '$1 == "total" {print $2}' <<<"$res")
  pct=$(awk -F'\t' '$1 == "total" {print $3}' <<<"$res")
  detail=$(awk -F'\t' '$1 != "total" {printf "%s%s: %s s (%s)", sep, $1, $2, $3; sep="; "}' <<<"$res")
  q bench "insert into res_cpu values ('$1', $2, $IDLE_SECONDS, $total, $pct, '$detail')"
  log "  $1, $2 db: $pct % of a core ($detail)"
}
for n in 1 5; do
  CONF=([pgque_worker.databases]=$(seq -s, -f 'idle%g' 1 $n)); apply_conf
  q idle1 "select pgque_worker.wake_launcher()" >/dev/null
  wait_for 30 postgres "select count(*) from pg_stat_activity where backend_type in ('pgque_worker ticker', 'pgque_worker dispatcher')" $((2 * n)) || true
  sleep 5
  q postgres "select backend_type, datname from pg_stat_activity where backend_type like 'pgque_worker%' order by 1, 2" >> "$raw"
  measure_cpu "pgque_worker (all processes)" $n "$worker_sql"
done
CONF=([pgque_worker.databases]=idle1 [pgque_worker.enabled]=off); apply_conf
for p in 100 10 1; do
  q idle1 "select pgque.set_tick_period_ms($p)" >/dev/null
  start_cron_ticker idle1
  sleep 2
  measure_cpu "pg_cron path ticker session, ${p} ms" 1 \
    "select pid, 'ticker_loop session' from pg_stat_activity where application_name = 'bench_cron_ticker'"
  stop_cron_ticker
done
CONF=(); apply_conf

# ============================================================ report
log "writing $out/results.md and plots"
q bench "select * from res_lat" >> "$raw"
q bench "select * from res_idle" >> "$raw"
q bench "select * from res_thr" >> "$raw"
q bench "select * from res_hsec" >> "$raw"
q bench "select consumer, count(*), sum(batch_end) from res_steps group by 1" >> "$raw"
export BENCH_PSQL="$psql_base -d bench" BENCH_OUT="$out" BENCH_HAS_WOC=$HAS_WOC BENCH_HAS_MTI=$HAS_MTI \
       BENCH_PGQUE_SQL="$PGQUE_SQL" BENCH_HERE="$here" LOAD_SECONDS TICK_IDLE_SECONDS IDLE_SECONDS \
       DISPATCH_MESSAGES DISPATCH_BATCH DISPATCH_ROUNDS PGBENCH_SECONDS PGBENCH_ROUNDS PGBENCH_SCALE
BENCH_WIDE_CHUNK=$WIDE_CHUNK BENCH_SO_SHA=$SO_SHA BENCH_SO_SHA_END=$(sha256sum /usr/lib/postgresql/15/lib/pgque_worker.so | cut -c1-12) "$bench/report.sh"
cat "$out/results.md"
log "done"
