#!/usr/bin/env bash
# test.sh - the whole test suite, as `make test` and CI run it:
#   1. install what is missing (scripts/deps.sh test)
#   2. formatting check (clang-format)
#   3. build with -Wall -Wextra -Werror and run every test (ctest: unit tests on
#      the io_uring and the posix backend, crash tests, power-loss and fault
#      tests, CLI tests); the builds of steps 4 and 5 run beside these tests
#   4. the same build and tests under AddressSanitizer + UndefinedBehaviorSanitizer
#      (built with clang: its UBSan checks more, e.g. pointer arithmetic on NULL)
#   5. the tests that start the engine's threads (committer, sealer, flusher,
#      followers, replication sessions, view processors), and the fault,
#      truncation and repair tests, under ThreadSanitizer, on both backends
#      (tests/tsan.supp says what it suppresses, and why)
#   6. every libFuzzer target for KL_FUZZ_SECONDS (default 30) seconds
# Build directories: build/, build-asan/, build-tsan/, build-fuzz/ (under the repo root).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { printf '\n== %s (%ds)\n' "$*" $(( $(date +%s) - start )); }

step "dependencies"
scripts/deps.sh test

step "format"
scripts/check-format.sh

jobs=$(nproc)
tsan_tests=(test_log test_follow test_session test_replica test_cursor test_view test_loop test_faults test_truncate test_repair)
step "build (gcc, -Werror)"
cmake -S . -B build -DKL_WERROR=ON -DKL_TESTS=ON -DKL_BENCH=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs"

# The first test run waits on the disk much of the time (about 60% of two
# cores busy, measured): the sanitizer and fuzzer builds go beside it, one
# compiler at a time, their output in build-later.log.
step "tests, with the ASan + UBSan and fuzzer builds beside them"
(
  CC=${CC_SANITIZE:-clang} cmake -S . -B build-asan -DKL_WERROR=ON -DKL_SANITIZE=ON -DKL_TESTS=ON -DKL_BENCH=OFF \
    -DCMAKE_BUILD_TYPE=Debug &&
    cmake --build build-asan -j 1 &&
    cmake -S . -B build-tsan -DKL_WERROR=ON -DKL_TSAN=ON -DKL_TESTS=ON -DKL_BENCH=OFF \
      -DCMAKE_BUILD_TYPE=Debug &&
    cmake --build build-tsan -j 1 --target kappalog_cli "${tsan_tests[@]}" &&
    KL_FUZZ_JOBS=1 scripts/fuzz.sh --build-only
) >build-later.log 2>&1 &
later=$!
trap 'kill "$later" 2>/dev/null || true' EXIT
ctest --test-dir build --output-on-failure -j "$jobs"
step "waiting for the ASan + UBSan and fuzzer builds"
if ! wait "$later"; then
  tail -n 40 build-later.log >&2
  echo "test.sh: the sanitizer or fuzzer build failed (build-later.log)" >&2
  exit 1
fi
trap - EXIT

step "tests under ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs"

step "threaded tests under ThreadSanitizer"
tsan_regex="^($(IFS='|'; echo "${tsan_tests[*]}"))\\."
# Without address randomisation (setarch -R): this ThreadSanitizer runtime
# refuses to start under the wider mmap randomisation some kernels configure.
TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp" \
  setarch "$(uname -m)" -R ctest --test-dir build-tsan -R "$tsan_regex" --output-on-failure -j "$jobs"

step "fuzzers"
scripts/fuzz.sh "${KL_FUZZ_SECONDS:-30}"

step "all passed"
