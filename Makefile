# pgque_worker: PGXS build. `make`, `make install`, `make installcheck`
# (pg_regress in a temporary instance with the library preloaded, then the
# TAP tests). Unit tests of the PostgreSQL-free core: CMakeLists.txt.

EXTENSION = pgque_worker
MODULE_big = pgque_worker
DATA = sql/pgque_worker--0.1.sql
PGFILEDESC = "pgque_worker - in-server scheduler and consumer for PgQue"

CORE_SRCS = $(wildcard src/core/*.cpp)
PG_SRCS = $(wildcard src/*.cpp)
OBJS = $(PG_SRCS:.cpp=.o) $(CORE_SRCS:.cpp=.o)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
INCLUDEDIR_SERVER := $(shell $(PG_CONFIG) --includedir-server)

# PostgreSQL headers as system headers: our own code is held to -Werror,
# theirs is not ours to fix.
PG_CPPFLAGS = -isystem $(INCLUDEDIR_SERVER) -I$(srcdir)/src
PG_CXXFLAGS = -std=c++17 -Wall -Wextra -Werror -Wno-missing-field-initializers
SHLIB_LINK = -lstdc++

# No LLVM bitcode for the JIT: nothing here is worth inlining into queries.
override with_llvm = no

# Every sql/*.sql but the extension script is a regression test.
REGRESS = $(filter-out pgque_worker--%,$(patsubst sql/%.sql,%,$(wildcard sql/*.sql)))
REGRESS_OPTS = --temp-config=$(srcdir)/test/regress.conf --temp-instance=$(CURDIR)/tmp_check_regress

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

# Tests install PgQue from here: the fixture, or a real pgque.sql.
PGQUE_SQL ?=
export PGQUE_SQL_FILE = $(if $(PGQUE_SQL),$(abspath $(PGQUE_SQL)),$(abspath $(srcdir)/test/fixtures/pgque_fixture.sql))

EXTRA_CLEAN = tmp_check_regress

include $(PGXS)

# PGXS tracks no header dependencies: rebuild everything when one changes.
$(OBJS): $(wildcard $(srcdir)/src/*.h $(srcdir)/src/core/*.hpp)
