#!/usr/bin/env bash
# replica_lib.sh - what the replication shell tests share, sourced after
# setting TAG (it names the temporary directory): strict bash, the C
# locale, KL_QUIET; K (the binary, from KAPPALOG); die; a temporary
# directory $T removed at exit, with every process listed in PIDS killed;
# and checks of a replica against its source (info, field, same).

set -u
set -o pipefail
export LC_ALL=C
export KL_QUIET=1
: "${KAPPALOG:?set KAPPALOG to the kappalog binary}"
K=$KAPPALOG

die() {
    echo "FAIL: $*" >&2
    exit 1
}
T=$(mktemp -d "${TMPDIR:-/tmp}/kappalog-$TAG.XXXXXX") || exit 1
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT

# start_serve DIR [FLAG...]: `kappalog serve DIR` on a free port of 127.0.0.1
# (its output in $T/serve.out and $T/serve.err, its pid in PIDS); sets PORT
# (HOST:PORT) and KEY once it listens
start_serve() {
    local dir=$1
    shift
    "$K" serve "$dir" --listen 127.0.0.1:0 "$@" >"$T/serve.out" 2>"$T/serve.err" &
    PIDS+=($!)
    for _ in $(seq 1 200); do grep -q '^key ' "$T/serve.out" 2>/dev/null && break; sleep 0.05; done
    PORT=$(sed -n 's/^listening on //p' "$T/serve.out")
    KEY=$(awk '$1 == "key" { print $2 }' "$T/serve.out")
    [ -n "$PORT" ] && [ -n "$KEY" ] || die "kappalog serve did not start: $(cat "$T/serve.err")"
}

# info DIR: `kappalog info --json` on one line; field JSON NAME: one value of it
info() { "$K" info "$1" --json 2>/dev/null | tr -d ' \n'; }
field() { sed -n "s/.*\"$2\":\"\\{0,1\\}\\([^,\"]*\\).*/\\1/p" <<<"$1"; }

# same SRC REPLICA WHAT: the replica equals the source: blocks, and every
# signed fact of the tree; and it verifies
same() {
    local a b f
    a=$(info "$1")
    b=$(info "$2")
    for f in length fork tree_hash signature key; do
        [ "$(field "$a" "$f")" = "$(field "$b" "$f")" ] ||
            die "$3: $f: the source has '$(field "$a" "$f")', the replica '$(field "$b" "$f")'"
    done
    "$K" read "$1" | cmp -s - <("$K" read "$2") || die "$3: the replica's blocks differ from the source's"
    "$K" verify "$2" >/dev/null || die "$3: the replica does not verify"
}
