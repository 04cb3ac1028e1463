#!/usr/bin/env bash
# Runs pgque_worker's server suites on PostgreSQL 18: builds PostgreSQL 18
# and PgQ for it if missing (test/build-pg.sh, cached in
# /var/cache/pgque_worker), builds pgque_worker against it in a copy of the
# tree, installs it into that prefix (never /usr), then runs pg_regress and
# the TAP files that cover the hooks and workers as the postgres user.
#
#   sudo test/run-pg18.sh                            # fixture PgQue
#   sudo PGQUE_SQL=/path/to/pgque.sql test/run-pg18.sh
#   sudo PG18_TAP=short test/run-pg18.sh             # only the TAP files of the hooks and workers
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "run as root (builds into /var/cache, runs tests as postgres)"; exit 1; }
major=${PQW_MAJOR:-18}

echo "=== PostgreSQL $major (test/build-pg.sh $major; cached after the first build)"
prefix=$("$here/test/build-pg.sh" "$major" | tail -n1)
pgc=$prefix/bin/pg_config
echo "using $("$pgc" --version) in $prefix"

# every TAP file; "short": those of the hooks and workers (life cycle,
# dispatch, database DDL, security, the wake-up / launcher tests, exactly
# once, the idle dispatcher, many queues)
if [ "${PG18_TAP:-all}" = all ]; then
  tests="test/t/*.pl"
else
  tests=$(cd "$here" && for f in test/t/001_*.pl test/t/005_*.pl test/t/008_*.pl test/t/010_*.pl \
            test/t/*wake*.pl test/t/*launcher*.pl test/t/013_*.pl test/t/014_*.pl test/t/015_*.pl test/t/016_*.pl test/t/018_*.pl test/t/019_*.pl; do [ ! -f "$f" ] || echo "$f"; done | sort -u | tr '\n' ' ')
fi

work=$(mktemp -d /tmp/pgque_worker-pg$major.XXXXXX)
chmod 755 "$work"
# sources only: the tree's objects belong to the PostgreSQL 15 build
(cd "$here" && { git ls-files -co --exclude-standard 2>/dev/null || find . -path ./.git -prune -o -type f -print; }) |
  grep -Ev '(^|/)(build[^/]*|tmp_check[^/]*)/|\.(o|so|bc)$' | (cd "$here" && tar -cf - -T -) | tar -C "$work" -xf -
echo "=== build against $major (in $work) and install into $prefix"
nice -n 19 make -s -C "$work" -j2 PG_CONFIG="$pgc"
make -s -C "$work" install PG_CONFIG="$pgc"
if [ -n "${PGQUE_SQL:-}" ]; then
  cp "$PGQUE_SQL" "$work/test/pgque-real.sql.tmp"
  PGQUE_SQL="$work/test/pgque-real.sql.tmp"
fi
chown -R postgres "$work"
echo "=== pg_regress and TAP ($tests) on $major as postgres"
status=0
su postgres -s /bin/bash -c "cd '$work' && PATH='$prefix/bin:/usr/bin:/bin' PGQUE_SQL='${PGQUE_SQL:-}' PROVE_FLAGS='${PROVE_FLAGS:-}' make installcheck PG_CONFIG='$pgc' PROVE_TESTS='$tests'" || status=$?
if [ $status -ne 0 ]; then
  for f in "$work/regression.diffs" "$work"/tmp_check/log/regress_log_*; do
    [ -f "$f" ] && { echo "----- $f"; tail -n 80 "$f"; }
  done
  echo "=== PostgreSQL $major: FAILED (logs kept in $work)"
  exit $status
fi
rm -rf "$work"
echo "=== PostgreSQL $major: pg_regress and TAP passed"
