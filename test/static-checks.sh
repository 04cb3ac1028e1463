#!/usr/bin/env bash
# Static and dynamic checks of pgque_worker's C++ code. Run from anywhere
# in the repository, as any user; needs what test/install-deps.sh installs
# (g++, make, PostgreSQL 15 server headers, cmake, GoogleTest, clang-tidy,
# cppcheck).
#
#   1. build:      every object of the extension rebuilt with the Makefile's
#                  flags (-Wall -Wextra -Werror), after proving that those
#                  flags turn a warning into a failed build;
#   2. clang-tidy: .clang-tidy's checks over src/*.cpp and src/core/*.cpp
#                  (compiled exactly as the Makefile compiles them) and over
#                  test/unit/*.cpp (as CMake compiles them); any finding fails;
#   3. cppcheck:   src/ and test/unit/ (warning, performance, portability);
#   4. sanitizers: the GoogleTest suite built with AddressSanitizer (and
#                  LeakSanitizer) and UndefinedBehaviorSanitizer, after
#                  checking the binary is really instrumented; any report
#                  fails its test.
#
# Every check runs even if an earlier one failed; the exit status is 1 if
# any failed. Scratch output goes to build-static/ and build-asan/.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PATH="/usr/lib/postgresql/15/bin:$PATH"
PG_CONFIG=${PG_CONFIG:-pg_config}
CLANG_TIDY=${CLANG_TIDY:-clang-tidy}
CPPCHECK=${CPPCHECK:-cppcheck}
jobs=$(nproc 2>/dev/null || echo 2)
scratch=build-static
asan=build-asan
start=$SECONDS
failed=()

fail() { echo "FAILED: $1: $2"; failed+=("$1"); }  # fail <check> <why>
need() {
  command -v "$1" >/dev/null || { echo "static-checks: $1 not found (run test/install-deps.sh as root)" >&2; exit 2; }
}
need make; need g++; need "$PG_CONFIG"; need cmake; need ctest; need nm
need "$CLANG_TIDY"; need "$CPPCHECK"

rm -rf "$scratch"
mkdir -p "$scratch"

# The command PGXS compiles every src/**/*.cpp with (make's built-in
# %.o: %.cpp rule is `$(COMPILE.cc) -o $@ $<`), read from the Makefile
# itself so this script cannot drift from it.
printf 'pqw-print-compile:\n\t@echo $(COMPILE.cc)\n' > "$scratch/print.mk"
compile=$(make -s --no-print-directory -f Makefile -f "$scratch/print.mk" \
  PG_CONFIG="$PG_CONFIG" pqw-print-compile)

# ---------------------------------------------------------------- 1. build
echo "=== static 1/4: build with -Wall -Wextra -Werror"
ok=1
for flag in -std=c++17 -Wall -Wextra -Werror; do
  case " $compile " in
    *" $flag "*) ;;
    *) fail build "the Makefile's compile command lacks $flag"; ok=0 ;;
  esac
done
# The same command must refuse code that only has a warning.
printf 'int pqw_werror_probe(int x)\n{\n\tint unused;\n\treturn x;\n}\n' > "$scratch/werror_probe.cpp"
# shellcheck disable=SC2086 # $compile is a word list
if $compile -o "$scratch/werror_probe.o" "$scratch/werror_probe.cpp" 2>/dev/null; then
  fail build "a warning (unused variable) did not fail the compile"; ok=0
fi
# Every object, not only those out of date, so no warning hides in an old .o.
if ! make -s -B -j"$jobs" PG_CONFIG="$PG_CONFIG"; then
  fail build "make failed"; ok=0
fi
[ $ok = 1 ] && echo "ok: every object compiles warning-free under -Werror"

# ------------------------------------------------------------ 2. clang-tidy
echo "=== static 2/4: clang-tidy ($("$CLANG_TIDY" --version | sed -n 's/.*LLVM version \([0-9.]*\).*/\1/p'))"
# compile_commands.json for the extension sources, with the Makefile's
# command; -Wno-unknown-warning-option because clang does not know some of
# GCC's warning flags in PostgreSQL's CXXFLAGS (-Wimplicit-fallthrough=3).
json_escape() { local s=${1//\\/\\\\}; printf '%s' "${s//\"/\\\"}"; }
pg_srcs=(src/*.cpp src/core/*.cpp)
{
  echo "["
  sep=""
  for f in "${pg_srcs[@]}"; do
    printf '%s  {"directory": "%s", "file": "%s", "command": "%s"}' "$sep" \
      "$(json_escape "$here")" "$(json_escape "$here/$f")" \
      "$(json_escape "$compile -o ${f%.cpp}.o $f")"
    sep=$',\n'
  done
  printf '\n]\n'
} > "$scratch/compile_commands.json"
# The unit tests are compiled as CMake compiles them (build-asan's database).
cmake -S . -B "$asan" -DPQW_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >"$scratch/cmake-configure.log" 2>&1 ||
  { cat "$scratch/cmake-configure.log"; fail sanitizers "cmake configure failed"; }

tidy() {  # tidy <build dir with compile_commands.json> <files...>
  local db=$1; shift
  printf '%s\n' "$@" | xargs -P"$jobs" -n1 "$CLANG_TIDY" -quiet -p "$db" \
    --warnings-as-errors='*' --extra-arg=-Wno-unknown-warning-option
}
status=0
{
  tidy "$scratch" "${pg_srcs[@]}" || status=1
  if [ -f "$asan/compile_commands.json" ]; then
    tidy "$asan" test/unit/*.cpp || status=1
  else
    status=1
  fi
} >"$scratch/clang-tidy.log" 2>&1
# Drop clang-tidy's "N warnings generated." chatter (PostgreSQL's headers).
grep -Ev '^[0-9]+ (warnings?|errors?)( and [0-9]+ errors?)? generated\.$' "$scratch/clang-tidy.log" || true
if [ $status = 0 ]; then
  echo "ok: clang-tidy clean on ${#pg_srcs[@]} source files and $(ls test/unit/*.cpp | wc -l) test files"
else
  fail clang-tidy "findings above (checks and the reasons for disabled ones: .clang-tidy)"
fi

# -------------------------------------------------------------- 3. cppcheck
echo "=== static 3/4: cppcheck ($("$CPPCHECK" --version))"
# PostgreSQL's headers are deliberately not given to cppcheck: with them a
# run takes minutes and finds nothing more (checked with 2.10), and nothing
# in them is ours to fix. Suppressed:
#   missingInclude, missingIncludeSystem: postgres.h & co. are not passed.
#   memsetClassFloat: "memset() on a struct with a double" is a portability
#     note about non-IEEE-754 floats; PostgreSQL requires IEEE 754 and relies
#     on all-zero bits being 0.0 everywhere (palloc0, MemSet).
if "$CPPCHECK" --std=c++17 --language=c++ --enable=warning,performance,portability \
     --error-exitcode=1 --inline-suppr --quiet -j"$jobs" -I src \
     --suppress=missingInclude --suppress=missingIncludeSystem \
     --suppress=memsetClassFloat \
     src test/unit; then
  echo "ok: cppcheck clean on src/ and test/unit/"
else
  fail cppcheck "findings above"
fi

# ------------------------------------------------------------ 4. sanitizers
echo "=== static 4/4: GoogleTest suite under AddressSanitizer + UndefinedBehaviorSanitizer"
if [ -f "$asan/CMakeCache.txt" ] && cmake --build "$asan" -j"$jobs" >"$scratch/asan-build.log" 2>&1; then
  bin="$asan/pqw_unit_tests"
  # Instrumented for real: the binary calls into both runtimes, and so does
  # the core library under test (not only the test code).
  for obj in "$bin" "$asan/libpqw_core.a"; do
    nm "$obj" >"$scratch/nm.txt" 2>/dev/null || true
    for sym in __asan_report_load __ubsan_handle_; do
      grep -q "$sym" "$scratch/nm.txt" || fail sanitizers "$obj has no $sym* calls: not instrumented"
    done
  done
  # Errors abort the test (-fno-sanitize-recover=all in CMakeLists.txt);
  # leaks are checked at exit.
  export ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:abort_on_error=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  if ctest --test-dir "$asan" --output-on-failure -j"$jobs" >"$scratch/asan-ctest.log" 2>&1; then
    tail -n 3 "$scratch/asan-ctest.log"
  else
    cat "$scratch/asan-ctest.log"
    fail sanitizers "unit tests failed under ASan/UBSan"
  fi
else
  cat "$scratch/asan-build.log" 2>/dev/null || true
  fail sanitizers "build failed"
fi

echo "=== static checks took $((SECONDS - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "=== static checks FAILED: ${failed[*]}"
  exit 1
fi
echo "=== static checks passed"
