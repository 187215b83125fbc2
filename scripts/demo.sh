#!/usr/bin/env bash
# demo.sh - the main job, as `make demo` runs it, on embedded defaults:
# install what is missing, build, create a log, ingest a generated stream of
# JSON events (1,000,000 by default) with progress, read some back, and print
# the log's facts and the ingest rate.
#   KL_DEMO_EVENTS  number of events (default 1000000)
#   KL_DEMO_DIR     where the log goes (default ./demo-data/events; replaced)
set -euo pipefail
cd "$(dirname "$0")/.."
events=${KL_DEMO_EVENTS:-1000000}
dir=${KL_DEMO_DIR:-$PWD/demo-data/events}

echo "== installing what is missing and building"
scripts/deps.sh build
cmake -S . -B build -DKL_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
kl=build/kappalog

echo "== creating the log $dir (default settings: fsync always, 256 MiB segments)"
rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
"$kl" init "$dir"

echo "== ingesting $events JSON events, 1000 per atomic batch"
# The event stream: users clicking, viewing and buying; a few fields to build views on later.
awk -v n="$events" 'BEGIN {
  srand(7); split("click view purchase signup", kinds, " ");
  t = 1764072000000;
  for (i = 0; i < n; i++) {
    k = kinds[1 + int(rand() * 4)];
    printf "{\"seq\":%d,\"ts\":%.0f,\"user\":\"user-%04d\",\"type\":\"%s\",\"amount\":%d}\n",
           i, t + i * 3, int(rand() * 5000), k, (k == "purchase") ? 1 + int(rand() * 200) : 0;
  }
}' | "$kl" append "$dir" --batch 1000 --progress

echo "== reading some back"
echo "-- the first three events (read --from 0 --to 3):"
"$kl" read "$dir" --from 0 --to 3
last=$((events - 1))
echo "-- event $last (get):"
"$kl" get "$dir" "$last"; echo
echo "-- two events in the middle as JSON records (read --format json):"
"$kl" read "$dir" --from $((events / 2)) --to $((events / 2 + 2)) --format json

echo "== the log"
"$kl" info "$dir"

echo "== checking every block against the signed Merkle tree (verify)"
"$kl" verify "$dir"
