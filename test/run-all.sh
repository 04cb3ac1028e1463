#!/usr/bin/env bash
# Runs every test suite of pgque_worker: static checks (warnings, clang-tidy,
# cppcheck) and the unit tests under ASan/UBSan (test/static-checks.sh),
# GoogleTest unit tests of the core, then pg_regress and TAP (make
# installcheck) against the installed build.
#
#   sudo test/run-all.sh                       # with the PgQue test fixture
#   sudo PGQUE_SQL=/path/to/pgque.sql test/run-all.sh   # with a real PgQue
#   sudo test/run-all.sh --other-versions      # PostgreSQL 17 compile, 18 suites
#
# As root it builds and installs the extension, then runs the server tests
# as the `postgres` user (initdb refuses root) in a copy of the tree.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

# The other server versions: a -Werror compile against 17's headers, and
# pg_regress plus every TAP file on a PostgreSQL 18 built
# under /var/cache/pgque_worker (the first run builds it: ~5 min).
if [ "${1:-}" = --other-versions ]; then
  echo "=== PostgreSQL 17: compile (test/compile-pg17.sh)"
  test/compile-pg17.sh
  echo "=== PostgreSQL 18: pg_regress and TAP (test/run-pg18.sh)"
  test/run-pg18.sh
  echo "=== other versions passed"
  exit 0
fi
export PATH="/usr/lib/postgresql/15/bin:$PATH"
jobs=$(nproc 2>/dev/null || echo 2)

echo "=== static and sanitizer checks (test/static-checks.sh)"
test/static-checks.sh

echo "=== build"
make -s -j"$jobs" PG_CONFIG=pg_config

echo "=== unit tests (GoogleTest)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build -j"$jobs" >/dev/null
ctest --test-dir build --output-on-failure | tail -n 3

if [ "$(id -u)" = 0 ]; then
  echo "=== install"
  make -s install
  runner=postgres
  work=$(mktemp -d /tmp/pgque_worker-check.XXXXXX)
  # copy the tree (sources and built objects) for the unprivileged runner
  tar -C "$here" --exclude=./build --exclude=./build-asan --exclude=./build-static --exclude=./.git -cf - . | tar -C "$work" -xf -
  if [ -n "${PGQUE_SQL:-}" ]; then
    cp "$PGQUE_SQL" "$work/test/pgque-real.sql.tmp"
    export PGQUE_SQL="$work/test/pgque-real.sql.tmp"
  fi
  chown -R "$runner" "$work"
  echo "=== pg_regress and TAP (make installcheck) as $runner in $work"
  status=0
  su "$runner" -s /bin/bash -c "cd '$work' && PATH='$PATH' PGQUE_SQL='${PGQUE_SQL:-}' PROVE_FLAGS='${PROVE_FLAGS:-}' make installcheck" || status=$?
  if [ $status -ne 0 ]; then
    for f in "$work/regression.diffs" "$work"/tmp_check/log/regress_log_*; do
      [ -f "$f" ] && { echo "----- $f"; tail -n 80 "$f"; }
    done
    echo "=== FAILED (logs kept in $work)"
    exit $status
  fi
  rm -rf "$work"
else
  echo "=== pg_regress and TAP (make installcheck); the build must be installed"
  make installcheck
fi
echo "=== all suites passed"
