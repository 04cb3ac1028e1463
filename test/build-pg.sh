#!/usr/bin/env bash
# Builds PostgreSQL <major> (and PgQ for it) from Debian's source packages
# into /var/cache/pgque_worker/pg<major>-<version>, outside the repository
# and outside /usr, for testing pgque_worker against a server Debian 12 does
# not ship. Idempotent: does nothing when that prefix is complete. Run as
# root. Prints the prefix as its last line.
#
#   test/build-pg.sh 18          # PostgreSQL 18 from Debian unstable
#
# Sources come through apt-get source with a private sources list (the
# system's apt configuration is not touched); PostgreSQL from sid, PgQ
# (pgq_3.5.1.orig.tar.gz) from the same list.
set -euo pipefail

major=${1:?usage: test/build-pg.sh MAJOR}
cache=${PGQW_CACHE:-/var/cache/pgque_worker}
src=$cache/src
mkdir -p "$cache" "$src"
say() { echo "build-pg: $*" >&2; }

# apt-get with a private list: $1 = name, rest = sources lines
apt_private() {
  local name=$1; shift
  local dir=$cache/apt-$name
  mkdir -p "$dir/lists/partial"
  printf '%s\n' "$@" > "$dir/sources.list"
  echo "-o Dir::Etc::SourceList=$dir/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$dir/lists"
}
apt_update_private() {   # refreshed at most once a day
  local name=$1 opts=$2
  local stamp=$cache/apt-$name/updated
  if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440)" ]; then
    say "apt-get update (private list $name)"
    # shellcheck disable=SC2086
    apt-get $opts update -qq
    touch "$stamp"
  fi
}

# build dependencies of PostgreSQL (Debian 12 packages)
need=()
for p in build-essential libreadline-dev zlib1g-dev bison flex libicu-dev pkg-config libipc-run-perl; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

suite=sid
opts=$(apt_private "$suite" "deb-src http://deb.debian.org/debian $suite main")
apt_update_private "$suite" "$opts"
# the upstream version of postgresql-<major> in that suite
# shellcheck disable=SC2086
debver=$(apt-cache $opts showsrc "postgresql-$major" 2>/dev/null | awk '/^Version:/ {print $2}' | sort -V | tail -n1)
[ -n "$debver" ] || { say "no source package postgresql-$major in $suite"; exit 1; }
version=${debver%%-*}
prefix=$cache/pg$major-$version
if [ -x "$prefix/bin/pg_config" ] && [ -f "$prefix/.complete" ]; then
  say "PostgreSQL $version already built in $prefix"
  echo "$prefix"
  exit 0
fi

if [ ! -f "$prefix/.pg-built" ]; then
  work=$src/pg$major-$version
  mkdir -p "$work"
  cd "$work"
  if ! ls postgresql-"$major"_"$version".orig.tar.* >/dev/null 2>&1; then
    say "apt-get source --download-only postgresql-$major ($debver, $suite)"
    # shellcheck disable=SC2086
    apt-get $opts source --download-only -qq "postgresql-$major=$debver"
  fi
  tarball=$(ls postgresql-"$major"_"$version".orig.tar.* | head -n1)
  rm -rf "postgresql-$version"
  say "unpacking $tarball"
  tar -xf "$tarball"
  cd "postgresql-$version"
  say "configure --prefix=$prefix --enable-tap-tests"
  nice -n 19 ./configure --prefix="$prefix" --enable-tap-tests --with-icu --without-llvm >configure.log 2>&1 \
    || { tail -n 40 configure.log; exit 1; }
  say "make (nice, -j2); this takes a while"
  start=$(date +%s)
  nice -n 19 make -s -j2 >make.log 2>&1 || { tail -n 60 make.log; exit 1; }
  nice -n 19 make -s -C contrib -j2 >>make.log 2>&1 || { tail -n 60 make.log; exit 1; }
  rm -rf "$prefix"
  nice -n 19 make -s install >>make.log 2>&1
  nice -n 19 make -s -C contrib install >>make.log 2>&1
  say "PostgreSQL $version built in $(( $(date +%s) - start )) s"
  touch "$prefix/.pg-built"
fi

# PgQ for it, with PGXS
# (bookworm's index names pgq 3.5-1, whose files are gone from the pool;
# the same private sid list has 3.5.1)
mkdir -p "$src/pgq"
cd "$src/pgq"
if ! ls pgq_*.orig.tar.gz >/dev/null 2>&1; then
  say "apt-get source --download-only pgq ($suite)"
  # only the upstream tarball is used: a missing .dsc or debian.tar.xz in
  # the mirror does not matter
  # shellcheck disable=SC2086
  apt-get $opts source --download-only -qq pgq || true
fi
pgqtar=$(ls pgq_*.orig.tar.gz 2>/dev/null | sort -V | tail -n1)
[ -n "$pgqtar" ] || { say "no pgq_*.orig.tar.gz could be downloaded"; exit 1; }
rm -rf pgq-build && mkdir pgq-build
tar -C pgq-build -xzf "$pgqtar"
cd pgq-build/*/
say "PgQ ($pgqtar) with PGXS"
nice -n 19 make -s USE_PGXS=1 PG_CONFIG="$prefix/bin/pg_config" >make.log 2>&1 || { tail -n 40 make.log; exit 1; }
make -s USE_PGXS=1 PG_CONFIG="$prefix/bin/pg_config" install >>make.log 2>&1
touch "$prefix/.complete"
# a stable name for the newest build of this major
ln -sfn "$prefix" "$cache/pg$major"
say "done: $prefix"
echo "$prefix"
