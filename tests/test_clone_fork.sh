#!/usr/bin/env bash
# test_clone_fork.sh - a replica follows its source through truncations.
#
# kappalog serve serves a log of 3,000 blocks; `kappalog clone --follow`
# copies it. The writer then truncates the log by 10 blocks and appends 25
# new ones: the follower sees the new fork, keeps the blocks under the new
# tree's roots it already holds, cuts the rest and downloads the new ones,
# and ends equal to the source (same blocks, length, fork, tree hash and
# signature; `kappalog verify` passes). Then the replica is left behind
# (no follower) while the source is truncated to 100 blocks and grows to
# 180: a plain `kappalog clone` rerun on the old replica brings it to the
# source's new fork and equals it again. Last, a fresh clone of the source
# (now at fork 2) creates its replica at fork 2 and equals the source. And a
# source that lost signed blocks and signed others at the same fork (what a
# power loss under `never` can do) is refused by a rerun, with the reason.
#
# Before the truncation the source stays quiet for 12 s, longer than the
# server's --stall-ms (8 s) and the clone's (10 s): each side's keepalive
# (an empty message after 5 s of quiet) keeps the connection open.
#
# Environment: KAPPALOG (set by ctest).

TAG=clone-fork
# shellcheck source=tests/replica_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/replica_lib.sh"

lines() { # N FIRST TAG: N lines, numbered from FIRST
    awk -v n="$1" -v f="$2" -v t="$3" 'BEGIN { srand(f); for (i = 0; i < n; i++) { s = sprintf("%s-%06d:", t, f + i); m = int(rand() * 120); for (j = 0; j < m; j++) s = s sprintf("%c", 97 + int(rand() * 26)); print s } }'
}
wait_for() { # DIR LENGTH FORK SECONDS
    local i n
    for i in $(seq 1 $(($4 * 20))); do
        n=$(info "$1")
        [ "$(field "$n" length)" = "$2" ] && [ "$(field "$n" fork)" = "$3" ] && return 0
        sleep 0.05
    done
    return 1
}

lines 3000 0 a >"$T/src.txt"
"$K" init "$T/src" --fsync never >/dev/null || die "init"
"$K" append "$T/src" --batch 100 <"$T/src.txt" >/dev/null || die "append"
start_serve "$T/src" --stall-ms 8000

# ---- a follower through a truncation
"$K" clone "$PORT" "$KEY" "$T/follow" --follow --fsync never 2>"$T/follow.err" &
FOLLOW=$!
PIDS+=("$FOLLOW")
wait_for "$T/follow" 3000 0 20 || die "the follower did not reach 3000 blocks: $(cat "$T/follow.err")"
sleep 12
kill -0 "$FOLLOW" 2>/dev/null || die "the follower of a quiet source ended: $(cat "$T/follow.err")"
grep -q 'closed' "$T/serve.err" && die "the server dropped the quiet follower: $(cat "$T/serve.err")"
echo "quiet: the follower and the server kept a connection open through 12 s without appends"
"$K" truncate "$T/src" 2990 >/dev/null || die "truncate to 2990"
lines 25 2990 b | "$K" append "$T/src" --batch 5 >/dev/null || die "append after the truncation"
wait_for "$T/follow" 3015 1 20 || {
    cat "$T/follow.err" "$T/serve.err" >&2
    die "the follower did not follow the truncation to length 3015 at fork 1 (it is at $(field "$(info "$T/follow")" length), fork $(field "$(info "$T/follow")" fork))"
}
kill -INT "$FOLLOW"
wait "$FOLLOW" || die "the follower did not end cleanly on SIGINT: $(cat "$T/follow.err")"
same "$T/src" "$T/follow" "follow"
echo "follow: the replica followed a truncation by 10 blocks and 25 appends (length 3015, fork 1)"

# ---- a replica left behind, brought up to date by a rerun
"$K" truncate "$T/src" 100 >/dev/null || die "truncate to 100"
lines 80 100 c | "$K" append "$T/src" >/dev/null || die "append after the second truncation"
"$K" clone "$PORT" "$KEY" "$T/follow" --fsync never 2>"$T/rerun.err" ||
    die "the rerun on the old replica failed: $(cat "$T/rerun.err")"
same "$T/src" "$T/follow" "rerun"
echo "rerun: the replica at fork 1 was brought to the source's fork 2 (length 180)"

# ---- a fresh clone of a core above fork 0: the replica is created at the proven fork
"$K" clone "$PORT" "$KEY" "$T/fresh" --fsync never 2>"$T/fresh.err" ||
    die "a fresh clone of the source at fork 2 failed: $(cat "$T/fresh.err")"
same "$T/src" "$T/fresh" "fresh"
[ ! -e "$T/fresh.creating" ] || die "fresh: the clone left $T/fresh.creating behind"
echo "fresh: a new replica of the source at fork 2 (length 180) equals it"

# ---- a writer that lost signed blocks: a power loss under `never` can take back a length
# a peer already holds (docs/DURABILITY.md), and the writer then signs other blocks at the
# same fork. Modelled by a copy of the source from before its last appends, appended to
# differently and served: a rerun of the replica refuses it, saying why, and keeps its own.
cp -R "$T/src" "$T/lost"
lines 40 180 d | "$K" append "$T/src" >/dev/null || die "append before the loss"
"$K" clone "$PORT" "$KEY" "$T/fresh" --fsync never 2>"$T/ahead.err" ||
    die "the replica did not take the 40 blocks to be lost: $(cat "$T/ahead.err")"
lines 60 180 e | "$K" append "$T/lost" >/dev/null || die "append after the loss"
start_serve "$T/lost"
if "$K" clone "$PORT" "$KEY" "$T/fresh" --fsync never 2>"$T/lost.err"; then
    die "a rerun took a tree that does not extend the 220 blocks it holds"
fi
grep -q "does not extend the signed 220 blocks this replica holds" "$T/lost.err" ||
    die "the refusal does not say why: $(cat "$T/lost.err")"
[ "$(field "$(info "$T/fresh")" length)" = 220 ] || die "the refused replica lost blocks"
"$K" verify "$T/fresh" >/dev/null || die "the refused replica does not verify"
echo "lost: a source that signed other blocks at a length the replica holds is refused, with the reason"
echo "test_clone_fork: a replica follows truncations live and on a rerun, clones fresh at fork 2, and refuses a tree that does not extend its own"
