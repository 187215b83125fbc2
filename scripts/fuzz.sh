#!/usr/bin/env bash
# fuzz.sh [SECONDS] - build every libFuzzer target of tests/fuzz/ and run each
# for SECONDS (default 30) from a fresh seed corpus, one target per core at a
# time. fuzz.sh --build-only builds them and stops (scripts/test.sh builds
# them beside the first test run).
#
#   - builds with clang, -DKL_FUZZ=ON (ASan + UBSan + libFuzzer), into
#     $KL_FUZZ_BUILD (default build-fuzz/ under the repo root); only the
#     fuzz_* targets are built, so a half-edited CLI or bench cannot stop it;
#   - runs whatever tests/fuzz/fuzz_*.c exist. Seeds: a target that
#     implements it writes its own into the corpus when run with
#     KL_FUZZ_SEEDS=DIR (ours do; see tests/fuzz/README.md), plus any files
#     in tests/fuzz/seeds/<target>/; a target with neither starts empty;
#   - UBSan findings count as crashes (halt_on_error), as ASan's do;
#   - prints one line per target (runs, runs/s, corpus size), keeps each log
#     and any crash input under $KL_FUZZ_BUILD/fuzz-out/<target>/, and exits
#     non-zero if any target crashed, timed out, ran out of memory or did
#     not build;
#   - KL_FUZZ_JOBS sets how many build and run at a time (default: the cores).
set -euo pipefail
build_only=0
if [[ "${1:-}" == --build-only ]]; then
  build_only=1
  shift
fi
seconds=${1:-30}
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -lt 1 ]]; then
  echo "usage: $0 [SECONDS]   (a whole number >= 1; default 30)" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
build=${KL_FUZZ_BUILD:-$root/build-fuzz}
jobs=${KL_FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}

shopt -s nullglob
sources=("$root"/tests/fuzz/fuzz_*.c)
if [[ ${#sources[@]} -eq 0 ]]; then
  echo "fuzz.sh: no tests/fuzz/fuzz_*.c targets" >&2
  exit 1
fi
targets=()
for src in "${sources[@]}"; do
  name=$(basename "$src" .c)
  targets+=("$name")
done

echo "fuzz.sh: building ${targets[*]} in $build"
mkdir -p "$build"
CC=${CC_FUZZ:-clang} cmake -S "$root" -B "$build" -DKL_FUZZ=ON -DKL_TESTS=ON -DKL_BENCH=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/configure.log" 2>&1 || {
  cat "$build/configure.log" >&2
  echo "fuzz.sh: configuring $build failed" >&2
  exit 1
}
cmake --build "$build" -j "$jobs" --target "${targets[@]}"
if [[ $build_only -eq 1 ]]; then
  exit 0
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
out="$build/fuzz-out"
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/kl-fuzz-corpus.XXXXXX")
trap 'rm -rf "$work"' EXIT

# One target: seeds, then the run; its summary line goes to $out/NAME/summary
# and its status (0 ok) to $out/NAME/status.
run_one() {
  local name=$1 bin corpus seeds log rc runs secs rate corpus_now status
  rm -f "$out/$name/summary" "$out/$name/status"
  mkdir -p "$out/$name"
  bin=$(find "$build" -type f -name "$name" -perm -u+x | head -n 1)
  if [[ -z "$bin" ]]; then
    printf '%-16s NOT BUILT\n' "$name" >"$out/$name/summary"
    echo 1 >"$out/$name/status"
    return
  fi
  corpus="$work/$name"
  mkdir -p "$corpus"
  # Seeds: the target's own seed mode (with -runs=0 a target without one
  # does nothing), then any checked-in seed files.
  KL_FUZZ_SEEDS="$corpus" "$bin" -runs=0 >"$out/$name/seeds.log" 2>&1 || true
  if [[ -d "$root/tests/fuzz/seeds/$name" ]]; then
    cp -r "$root/tests/fuzz/seeds/$name/." "$corpus/"
  fi
  seeds=$(find "$corpus" -type f | wc -l)
  log="$out/$name/fuzz.log"
  echo "fuzz.sh: $name for ${seconds}s from $seeds seeds (log: $log)"
  set +e
  "$bin" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/$name/" "$corpus" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  [[ -z "$runs" ]] && runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
  runs=${runs:-0}
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
  secs=${secs:-$seconds}
  rate=$((runs / (secs > 0 ? secs : 1)))
  corpus_now=$(find "$corpus" -type f | wc -l)
  if [[ $rc -eq 0 ]]; then
    status=ok
  else
    status="CRASHED (exit $rc)"
    grep -m 1 -E 'ERROR: |runtime error|deadly signal|internal assertion|timeout' "$log" >&2 || true
    ls "$out/$name"/crash-* "$out/$name"/timeout-* "$out/$name"/oom-* 2>/dev/null >&2 || true
  fi
  printf '%-16s %-18s %10s runs in %3ss (%s/s), corpus %s -> %s\n' \
    "$name" "$status" "$runs" "$secs" "$rate" "$seeds" "$corpus_now" >"$out/$name/summary"
  echo "$rc" >"$out/$name/status"
}

# One target per core at a time: each is single-threaded, and the suite's
# time budget is shared with everything else.
running=0
for name in "${targets[@]}"; do
  if [[ $running -ge $jobs ]]; then
    wait -n || true
    running=$((running - 1))
  fi
  run_one "$name" &
  running=$((running + 1))
done
wait || true

failed=0
summary=()
for name in "${targets[@]}"; do
  summary+=("$(cat "$out/$name/summary" 2>/dev/null || printf '%-16s NO RESULT' "$name")")
  [[ "$(cat "$out/$name/status" 2>/dev/null || echo 1)" == 0 ]] || failed=1
done

echo
echo "fuzz summary (${seconds}s per target):"
printf '  %s\n' "${summary[@]}"
exit $failed
