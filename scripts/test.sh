#!/usr/bin/env bash
# test.sh - the whole test suite, as `make test` and CI run it:
#   1. install what is missing (scripts/deps.sh test)
#   2. formatting check (clang-format)
#   3. build with -Wall -Wextra -Werror and run every test (ctest: unit tests on
#      the io_uring and the posix backend, crash tests, power-loss and fault
#      tests, CLI tests)
#   4. the same build and tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   5. every libFuzzer target for KL_FUZZ_SECONDS (default 30) seconds
# Build directories: build/, build-asan/, build-fuzz/ (under the repo root).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { printf '\n== %s (%ds)\n' "$*" $(( $(date +%s) - start )); }

step "dependencies"
scripts/deps.sh test

step "format"
scripts/check-format.sh

jobs=$(nproc)
step "build (gcc, -Werror)"
cmake -S . -B build -DKL_WERROR=ON -DKL_TESTS=ON -DKL_BENCH=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs"
step "tests"
ctest --test-dir build --output-on-failure -j "$jobs"

step "build (ASan + UBSan)"
cmake -S . -B build-asan -DKL_WERROR=ON -DKL_SANITIZE=ON -DKL_TESTS=ON -DKL_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j "$jobs"
step "tests under ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs"

step "fuzzers"
scripts/fuzz.sh "${KL_FUZZ_SECONDS:-30}"

step "all passed"
