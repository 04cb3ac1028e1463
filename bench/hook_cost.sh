#!/usr/bin/env bash
# What pgque_worker's hooks cost a user's transaction, in instructions: the
# same pgbench TPC-B-like transactions run by a single-user backend under
# valgrind's callgrind, from the same copy of a data directory, with
# pgque_worker not loaded, loaded with wake_on_commit off, and loaded with it
# on. Instruction counts do not depend on what else the machine runs (the
# pgbench TPS ratio does, by several percent), and from the same starting
# state they repeat to within a few thousand instructions.
#
#   sudo PGQUE_SQL=/path/to/pgque.sql bench/hook_cost.sh   # prints a table
#
# Called by bench/run.sh (which stores the figures in its results); it can
# run alone. As root: the cluster runs as postgres.
#   BENCH_HOOK_TX (400)   measured transactions, after 50 warm-up ones
#   BENCH_HOOK_DIR (/tmp/pgque_worker-hookcost), BENCH_HOOK_PORT (5478)
# Output: one line per setting, "setting instructions_per_transaction".
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=/usr/lib/postgresql/15/bin
dir=${BENCH_HOOK_DIR:-/tmp/pgque_worker-hookcost}
port=${BENCH_HOOK_PORT:-5478}
tx=${BENCH_HOOK_TX:-400}
warm=50
PGQUE_SQL=${PGQUE_SQL:-$here/test/fixtures/pgque_fixture.sql}
bench=$here/bench

[ "$(id -u)" = 0 ] || { echo "run as root (runs the cluster as postgres)"; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)"; exit 1; }

# log, as_pg, q, cluster_start (cleanup on exit), install_pgque
# shellcheck source=bench/lib.sh
. "$bench/lib.sh"

log "hook cost: a PgQue database with pgbench's tables (scale 1)"
cluster_start "fsync = off"
install_pgque hb
q hb "create extension pgque_worker" >/dev/null
as_pg "$bin/pgbench -q -i -s 1 -h $dir -p $port hb" >/dev/null 2>&1
as_pg "$bin/pg_ctl -D $dir/data -m fast -w stop >/dev/null"
tar -C "$dir" -cf "$dir/data.tar" data

# pgbench's TPC-B-like script with fixed pseudo-random values (the same for
# every setting): $warm transactions, then the warm-up and $tx more
script() { # transactions file
  awk -v n="$1" 'BEGIN {
    srand(7)
    for (i = 0; i < n; i++) {
      aid = 1 + int(rand() * 100000); tid = 1 + int(rand() * 10); d = int(rand() * 10001) - 5000
      print "BEGIN"
      printf "UPDATE pgbench_accounts SET abalance = abalance + %d WHERE aid = %d\n", d, aid
      printf "SELECT abalance FROM pgbench_accounts WHERE aid = %d\n", aid
      printf "UPDATE pgbench_tellers SET tbalance = tbalance + %d WHERE tid = %d\n", d, tid
      printf "UPDATE pgbench_branches SET bbalance = bbalance + %d WHERE bid = 1\n", d
      printf "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (%d, 1, %d, %d, CURRENT_TIMESTAMP)\n", tid, aid, d
      print "END"
    } }' > "$2"
}
script "$warm" "$dir/warm.sql"
script "$((warm + tx))" "$dir/all.sql"
chown postgres "$dir"/*.sql

ir() { # setting file: instructions of a single-user backend running file
  local opts="-c shared_preload_libraries=pgque_worker -c pgque_worker.wake_on_commit=$1"
  [ "$1" != none ] || opts="-c shared_preload_libraries="
  rm -rf "$dir/data"
  tar -C "$dir" -xf "$dir/data.tar"
  as_pg "valgrind --tool=callgrind --callgrind-out-file=$dir/cg.out $bin/postgres --single -D $dir/data $opts -c synchronous_commit=off hb < $2 > $dir/single.log 2> $dir/valgrind.log"
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$dir/valgrind.log"
}

for s in none off on; do
  a=$(ir "$s" "$dir/warm.sql")
  b=$(ir "$s" "$dir/all.sql")
  [ -n "$a" ] && [ -n "$b" ] || { log "callgrind gave no count for $s (see $dir/valgrind.log)"; exit 1; }
  echo "$s $(( (b - a) / tx ))"
done
