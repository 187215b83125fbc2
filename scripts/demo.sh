#!/usr/bin/env bash
# demo.sh - the main job, as `make demo` runs it, on embedded defaults: the
# whole Kappa loop. Install what is missing, build, create a log, ingest a
# generated stream of JSON events (1,000,000 by default) with progress, read
# some back, build a `count` view and a `kv` view from the log and query
# them, consume from a named cursor, rebuild a view beside the live one and
# switch to it, print the log's facts and verify it, with the rates.
#   KL_DEMO_EVENTS  number of events (default 1000000)
#   KL_DEMO_DIR     where the log goes (default ./demo-data/events; replaced)
set -euo pipefail
cd "$(dirname "$0")/.."
events=${KL_DEMO_EVENTS:-1000000}
dir=${KL_DEMO_DIR:-$PWD/demo-data/events}

echo "== installing what is missing and building"
scripts/deps.sh build
# A build/ already configured (by `make test`, say) keeps its settings, tests included.
if [[ -f build/CMakeCache.txt ]]; then
  cmake -S . -B build >/dev/null
else
  cmake -S . -B build -DKL_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
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

echo "== materialized views: the log is the source of truth, the views are derived"
echo "-- a count view (events per type), a kv view (each user's latest event), a sum view (spend per user)"
"$kl" view create "$dir" events-by-type --kind count --key type
"$kl" view create "$dir" last-by-user --kind kv --key user
"$kl" view create "$dir" spend-by-user --kind sum --key user --value amount
for v in events-by-type last-by-user spend-by-user; do
  echo "-- view update $v"
  "$kl" view update "$dir" "$v" --progress
done
echo "-- how many events of each type (view scan events-by-type):"
"$kl" view scan "$dir" events-by-type
echo "-- the latest event of user-0042 (view get last-by-user user-0042):"
"$kl" view get "$dir" last-by-user user-0042
echo "-- what user-0042 spent (view get spend-by-user user-0042):"
"$kl" view get "$dir" spend-by-user user-0042
echo "-- more events arrive; the views catch up from where they stopped"
awk -v n="$events" 'BEGIN {
  for (i = 0; i < 1000; i++)
    printf "{\"seq\":%d,\"ts\":%.0f,\"user\":\"user-0042\",\"type\":\"purchase\",\"amount\":5}\n",
           n + i, 1764072000000 + (n + i) * 3;
}' | "$kl" append "$dir" --batch 1000
"$kl" view update "$dir" spend-by-user
"$kl" view get "$dir" spend-by-user user-0042
echo "-- rebuild events-by-type beside the live version (--shadow), then switch"
"$kl" view rebuild "$dir" events-by-type --shadow --progress
"$kl" view list "$dir"

echo "== a consumer: the first five events from cursor 'mailer', then where it stands"
"$kl" consume "$dir" --cursor mailer --max 5
"$kl" cursors "$dir"

echo "== the log"
"$kl" info "$dir"

echo "== checking every block against the signed Merkle tree (verify)"
"$kl" verify "$dir"
