#!/usr/bin/env bash
# deps.sh - install what kappalog needs on Debian 12, only what is missing.
#   scripts/deps.sh build   the build: compiler, cmake, pkg-config, -dev libraries
#   scripts/deps.sh test    the build plus what the test suite uses (cmocka, clang
#                           and its fuzzer/sanitizer runtime, clang-format, and
#                           Node.js + npm unless a `node` is already on PATH), the
#                           libraries the benchmark links (SQLite, hiredis, the
#                           NATS C client), so all of its code is built with
#                           -Werror, redis-server for the compare harness test,
#                           and locales (the de_DE source test_view builds a
#                           comma-decimal locale from with localedef)
#   scripts/deps.sh bench   the build plus the peers of `kappalog-bench compare`:
#                           SQLite, hiredis and the NATS client to link,
#                           redis-server, nats-server and fio to run, gnuplot to
#                           plot the report
# Runs apt-get as root (or through sudo). Everything comes from Debian's packages.
set -euo pipefail

what=${1:-build}
build_pkgs=(build-essential cmake pkg-config liburing-dev libsodium-dev libzstd-dev libxxhash-dev libyajl-dev liblmdb-dev)
test_pkgs=(libcmocka-dev libjansson-dev clang libclang-rt-14-dev clang-format locales)
bench_libs=(libsqlite3-dev libhiredis-dev libnats-dev)
bench_pkgs=("${bench_libs[@]}" redis-server nats-server fio gnuplot-nox)

pkgs=("${build_pkgs[@]}")
case "$what" in
build) ;;
test)
  pkgs+=("${test_pkgs[@]}" "${bench_libs[@]}" redis-server)
  # tests/test_hc_live.sh runs the real JavaScript hypercore; keep a Node already on PATH.
  command -v node >/dev/null || pkgs+=(nodejs npm)
  ;;
bench) pkgs+=("${bench_pkgs[@]}") ;;
*) echo "usage: scripts/deps.sh build|test|bench" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; then
  "${sudo[@]}" apt-get update >/dev/null
  "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi
