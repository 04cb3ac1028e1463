#!/usr/bin/env bash
# Installs, from Debian 12's packages, everything pgque_worker needs to
# build and test. Run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  build-essential g++ make cmake libgtest-dev \
  postgresql-15 postgresql-server-dev-15 postgresql-15-pgq3 \
  postgresql-15-cron libipc-run-perl perl \
  clang-tidy libclang-common-14-dev cppcheck binutils \
  libreadline-dev zlib1g-dev bison flex libicu-dev pkg-config \
  debhelper postgresql-server-dev-all dpkg-dev >/dev/null
# The second-to-last line builds PostgreSQL 18 (test/build-pg.sh), the last
# the Debian package (test/deb-check.sh).
# test/static-checks.sh: clang-tidy 14 finds stddef.h & co. in
# libclang-common-14-dev (a dependency of clang-tidy-14, named for clarity)
# and libstdc++'s headers through g++; cppcheck 2.10; nm from binutils.
# AddressSanitizer/UBSan runtimes (libasan8, libubsan1) come with g++.
# The package starts a default cluster on port 5432; nothing here needs it.
if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q '^15 *main .*online'; then
  pg_ctlcluster 15 main stop || true
fi
