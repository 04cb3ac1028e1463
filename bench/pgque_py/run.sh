#!/usr/bin/env bash
# Latency of pgque-py's Consumer (PgQue's clients/python) beside pgque_worker,
# by stage (README.md): 1,000 messages at 200/s, one tick per message.  Runs
# (~10 s each), then a table; JSON per run in bench/results/pgque_py/ (PGQUE_PY_OUT):
#   on_orig_1..3       wake_on_commit = on, pgque-py's loop unchanged
#   on_orig_nobl_1..2  the same with psycopg 3.2.0-3.2.3 semantics
#   on_patched_1..2    patched_consumer.py's loop (PGQUE_PY_PATCH)
#   off_orig_1..2      pgque_worker.wake_on_commit = off
# Prerequisites: apt-get install python3-psycopg (psycopg 3.1 for /usr/bin/python3);
# PGQUE_PY_CLIENT=<PgQue checkout>/clients/python (git clone
# https://github.com/NikolayS/PgQue, or a local mirror); a running server at
# PGQUE_PY_DSN (default host=/tmp/pgque_worker-bench port=5477 user=postgres
# dbname=bench), superuser, PgQue and pgque_worker installed in that database,
# track_commit_timestamp = on (else end-to-end figures only).
# Sets pgque_worker.wake_on_commit with ALTER SYSTEM, resets it at exit (also on
# error).  Not part of .ci/run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${PGQUE_PY_OUT:-$here/../results/pgque_py}
py=/usr/bin/python3   # sees Debian's psycopg; a pyenv python on PATH does not
: "${PGQUE_PY_CLIENT:?set it to the clients/python directory of a PgQue checkout}"

sql() { # run each argument as a statement (autocommit) on PGQUE_PY_DSN
  PYTHONPATH=$here "$py" -c '
import sys, psycopg, latency
with psycopg.connect(latency.DSN, autocommit=True) as conn:
    for stmt in sys.argv[1:]:
        conn.execute(stmt)' "$@"
}

wake_on_commit() { # on | off | reset
  if [ "$1" = reset ]; then
    sql "alter system reset pgque_worker.wake_on_commit" "select pg_reload_conf()"
  else
    sql "alter system set pgque_worker.wake_on_commit = $1" "select pg_reload_conf()"
  fi
  sleep 1   # the ticker picks the value up on its next reload
}

runs=()
run() { # LABEL [latency.py options]
  local label=$1; shift
  "$py" "$here/latency.py" --label "$label" --out "$out" "$@"
  runs+=("$out/$label.json")
}

trap 'wake_on_commit reset || echo "could not reset pgque_worker.wake_on_commit" >&2' EXIT
trap 'exit 1' INT TERM

wake_on_commit on
for k in 1 2 3; do run "on_orig_$k"; done
for k in 1 2; do PGQUE_PY_BACKLOG=0 run "on_orig_nobl_$k"; done
for k in 1 2; do run "on_patched_$k" --client patched; done
wake_on_commit off
for k in 1 2; do run "off_orig_$k"; done

echo
"$py" "$here/latency.py" --table "${runs[@]}"
