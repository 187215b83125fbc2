#!/usr/bin/env bash
# compare.sh - the peer benchmark in one command (`make compare`): installs
# what is missing (scripts/deps.sh bench: SQLite, hiredis and the NATS client,
# redis-server, nats-server, fio, gnuplot; Node.js for hypercore), builds the
# benchmark in Release, runs `kappalog-bench compare` with the arguments given
# (none: the full run, about 40 minutes and 45 GiB of free disk for the
# growth run; `--quick`: a few minutes), and regenerates the compare part of
# docs/BENCHMARKS.md and docs/plots/compare-*.png from its JSON.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh bench
command -v node >/dev/null || scripts/deps.sh test
cmake -S . -B build-bench -DKL_TESTS=OFF -DKL_BENCH=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j "$(nproc)"

out=bench/results
mkdir -p "$out"
before=$(ls "$out"/*-compare.json 2>/dev/null || true)
build-bench/bench/kappalog-bench compare --out "$out" "$@"
json=$(ls -t "$out"/*-compare.json | head -1)
if [[ -n "$before" ]] && grep -qxF "$json" <<<"$before"; then
  echo "compare.sh: the run wrote no new JSON" >&2
  exit 1
fi
scripts/bench-report "$json"
