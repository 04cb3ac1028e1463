#!/usr/bin/env bash
# Compiles every src/*.cpp against PostgreSQL 17's server headers, with the
# Makefile's flags and -Werror, so a break with 17 shows in CI. The headers
# come from Debian 13's postgresql-server-dev-17 package, downloaded with a
# private sources list and unpacked (dpkg-deb -x) into
# /var/cache/pgque_worker/pg17-dev; nothing is installed over the system.
# Run as root (apt-get update with the private list); cached afterwards.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${PGQW_CACHE:-/var/cache/pgque_worker}
major=17
dest=$cache/pg$major-dev
say() { echo "compile-pg$major: $*" >&2; }

if [ ! -f "$dest/.complete" ]; then
  dir=$cache/apt-trixie
  mkdir -p "$dir/lists/partial" "$dir/archives/partial"
  echo "deb http://deb.debian.org/debian trixie main" > "$dir/sources.list"
  opts=(-o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache"
        -o Dir::State::Status=/dev/null -o APT::Architecture=amd64)
  say "apt-get update (private list: trixie)"
  mkdir -p "$dir/cache/archives/partial"
  apt-get "${opts[@]}" update -qq
  say "apt-get download postgresql-server-dev-$major"
  (cd "$dir/archives" && rm -f ./*.deb && apt-get "${opts[@]}" download -qq "postgresql-server-dev-$major")
  rm -rf "$dest" && mkdir -p "$dest"
  dpkg-deb -x "$dir"/archives/postgresql-server-dev-"$major"_*.deb "$dest"
  touch "$dest/.complete"
fi
inc=$dest/usr/include/postgresql/$major/server
[ -f "$inc/pg_config.h" ] || { say "no headers in $inc"; exit 1; }
# Those headers describe Debian 13's glibc (2.41, which has strlcpy and
# strlcat); Debian 12's (2.36) has not, so let port.h declare them.
sed -i 's/^#define HAVE_DECL_STRLCPY 1/#define HAVE_DECL_STRLCPY 0/; s/^#define HAVE_DECL_STRLCAT 1/#define HAVE_DECL_STRLCAT 0/' "$inc/pg_config.h"
ver=$(sed -n 's/^#define PG_VERSION "\(.*\)"/\1/p' "$inc/pg_config.h")
say "g++ -fsyntax-only -Werror against PostgreSQL $ver headers ($inc)"
cd "$here"
fail=0
for f in src/*.cpp; do
  # the Makefile's flags (PG_CPPFLAGS, PG_CXXFLAGS) plus PGXS's -fPIC
  nice -n 19 g++ -fsyntax-only -fPIC -std=c++17 -Wall -Wextra -Werror -Wno-missing-field-initializers \
    -isystem "$inc" -Isrc "$f" || { say "FAILED: $f"; fail=1; }
done
[ $fail = 0 ] && say "all of src/*.cpp compile against $major" || exit 1
