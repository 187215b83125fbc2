#!/usr/bin/env bash
# test_clone_follow.sh - a clone whose source grows while it downloads.
#
# A block request carries `nodes`, the levels of the block's path the
# clone lacks; it counts the roots of the signed length it holds as held.
# When the source appends, the clone verifies the upgrade to the new
# length, and a block asked for before that upgrade may be answered after
# it: its proof stops at a root of the old length, which is an inner node
# of the new tree. The clone must still hold that node (it used to forget
# the old roots and failed with "proof reaches node N, which the receiver
# does not hold", e.g. after about 10,000 blocks of a 20,000-line append
# under `clone --follow`).
#
# 1. Deterministic: tests/tool_evilpeer's honest `grow` server serves a
#    core at L1 (a copy of the log) and then at L2 (the log itself), in the
#    order that makes the clone ask for the upgrade to L2 first and for the
#    blocks under L1 right after it, with L1's `nodes` (see the tool). For
#    several (L1, L2) the clone must finish and equal the source: the block
#    path tops are a leaf root (L1 odd), roots of a few levels, and the
#    256-block root of a full request window.
# 2. Live: `kappalog serve` and `kappalog clone --follow` while a writer
#    appends 5,000 lines in commits of 5; the follower must reach the
#    source's length and equal it (blocks, length, fork, tree hash,
#    signature; `kappalog verify` passes).
#
# Environment: KAPPALOG, KL_BUILD_DIR (set by ctest).

TAG=clone-follow
# shellcheck source=tests/replica_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/replica_lib.sh"
: "${KL_BUILD_DIR:?set KL_BUILD_DIR to the build tree}"
EVIL="$KL_BUILD_DIR/tests/tool_evilpeer"
[ -x "$EVIL" ] || die "$EVIL is not built"

lines() { # N FIRST TAG: N lines, numbered from FIRST
    awk -v n="$1" -v f="$2" -v t="$3" 'BEGIN { srand(f); for (i = 0; i < n; i++) { s = sprintf("{\"tag\":\"%s\",\"i\":%d,\"s\":\"", t, f + i); m = int(rand() * 80); for (j = 0; j < m; j++) s = s sprintf("%c", 97 + int(rand() * 26)); print s "\"}" } }'
}

# ---- 1. the upgrade verified between a block's request and its answer
for pair in 1:2 5:8 21:37 300:1000; do
    l1=${pair%%:*}
    l2=${pair#*:}
    d="$T/grow-$l1"
    "$K" init "$d" --fsync never >/dev/null || die "init"
    lines "$l1" 0 a | "$K" append "$d" >/dev/null || die "append $l1"
    cp -r "$d" "$d.at-l1" || die "copy at $l1"
    lines $((l2 - l1)) "$l1" b | "$K" append "$d" >/dev/null || die "append to $l2"
    key=$(field "$(info "$d")" key)
    "$EVIL" serve grow "$d.at-l1" "$d" >"$d.evil.out" 2>"$d.evil.err" &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 200); do grep -q '^listening' "$d.evil.out" 2>/dev/null && break; sleep 0.05; done
    port=$(sed -n 's/^listening on //p' "$d.evil.out")
    [ -n "$port" ] || die "grow $l1 -> $l2: the server did not start: $(cat "$d.evil.err")"
    "$K" clone "$port" "$key" "$d.rep" --fsync never --stall-ms 10000 2>"$d.clone.err" ||
        die "grow $l1 -> $l2: the clone failed: $(cat "$d.clone.err")"
    same "$d" "$d.rep" "grow $l1 -> $l2"
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    echo "grow $l1 -> $l2: blocks asked for with the roots of $l1, verified after the upgrade to $l2: the replica equals the source"
done

# ---- 2. a follower of a source that keeps appending
N=5000
"$K" init "$T/src" --fsync never >/dev/null || die "init"
lines 1 0 c | "$K" append "$T/src" >/dev/null || die "append"
start_serve "$T/src"
"$K" clone "$PORT" "$KEY" "$T/follow" --follow --fsync never 2>"$T/follow.err" &
FOLLOW=$!
PIDS+=("$FOLLOW")
for _ in $(seq 1 200); do [ "$(field "$(info "$T/follow")" length)" = 1 ] && break; sleep 0.05; done
[ "$(field "$(info "$T/follow")" length)" = 1 ] || die "the follower did not start: $(cat "$T/follow.err")"
lines "$N" 1 d | "$K" append "$T/src" --batch 5 >/dev/null || die "append $N lines"
want=$((N + 1))
for _ in $(seq 1 1200); do # up to 60 s on a loaded machine; about 1 s otherwise
    [ "$(field "$(info "$T/follow")" length)" = "$want" ] && break
    kill -0 "$FOLLOW" 2>/dev/null || break
    sleep 0.05
done
kill -0 "$FOLLOW" 2>/dev/null ||
    die "the follower ended at length $(field "$(info "$T/follow")" length) of $want: $(cat "$T/follow.err")"
[ "$(field "$(info "$T/follow")" length)" = "$want" ] ||
    die "the follower is at length $(field "$(info "$T/follow")" length), not $want, after 60 s: $(cat "$T/follow.err")"
kill -INT "$FOLLOW"
wait "$FOLLOW" || die "the follower did not end cleanly on SIGINT: $(cat "$T/follow.err")"
same "$T/src" "$T/follow" "follow"
echo "follow: the follower took $N appends in commits of 5 as they came (length $want)"
echo "test_clone_follow: blocks asked for before an upgrade and verified after it are accepted"
