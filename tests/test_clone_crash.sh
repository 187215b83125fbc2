#!/usr/bin/env bash
# test_clone_crash.sh - replica crash safety: `kappalog clone` is killed with
# SIGKILL at random moments, at least 50 times, while it downloads a log of
# 20,000 blocks from `kappalog serve`; each restart resumes from what the
# replica holds (a clone that finishes between two kills is checked against
# the source and removed, and the kills go on). After every kill the replica (if it exists yet) opens, is
# a prefix of the source block for block, and is never longer than the
# source; at the end a clone completes, `kappalog verify` passes on the
# replica, and its blocks, key, tree hash and signature equal the source's.
#
# Environment: KAPPALOG (set by ctest); KL_CLONE_KILLS (default 50).

TAG=clone-crash
# shellcheck source=tests/replica_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/replica_lib.sh"
KILLS=${KL_CLONE_KILLS:-50}

# the source: 20,000 lines of 1..200 bytes
awk 'BEGIN { srand(11); for (i = 0; i < 20000; i++) { n = 1 + int(rand() * 200); s = sprintf("%06d:", i); for (j = 0; j < n; j++) s = s sprintf("%c", 97 + int(rand() * 26)); print s } }' >"$T/src.txt"
"$K" init "$T/src" --fsync never >/dev/null || die "init"
"$K" append "$T/src" --batch 100 <"$T/src.txt" >/dev/null || die "append"

start_serve "$T/src" --quiet

length_of() { "$K" info "$1" --json 2>/dev/null | tr -d ' \n' | sed -n 's/.*"length":\([0-9]*\).*/\1/p'; }

R="$T/replica"
kills=0
finished=0
resumed_partial=0
prev=0
RANDOM=4242
while [ $kills -lt "$KILLS" ]; do
    "$K" clone "$PORT" "$KEY" "$R" 2>"$T/clone.err" &
    pid=$!
    sleep "0.$(printf '%03d' $((20 + RANDOM % 130)))"
    if ! kill -0 "$pid" 2>/dev/null; then
        # it finished before the kill: check it, then start over for more kills
        wait "$pid" || die "a clone failed on its own: $(cat "$T/clone.err")"
        "$K" read "$R" | cmp -s - "$T/src.txt" || die "a finished clone differs from the source"
        rm -rf "$R"
        prev=0
        finished=$((finished + 1))
        continue
    fi
    kill -9 "$pid"
    wait "$pid" 2>/dev/null
    kills=$((kills + 1))
    [ -d "$R" ] || continue # killed before the replica was created
    now=$(length_of "$R")
    [ -n "$now" ] || die "kill $kills: the replica does not open: $("$K" info "$R" 2>&1)"
    [ "$now" -ge "$prev" ] || die "kill $kills: the replica went back from $prev to $now blocks"
    [ "$now" -le 20000 ] || die "kill $kills: the replica has $now blocks"
    # block for block a prefix of the source
    "$K" read "$R" | cmp -s - <(head -n "$now" "$T/src.txt") ||
        die "kill $kills: the replica's $now blocks are not the source's first $now"
    [ "$now" -gt 0 ] && [ "$now" -lt 20000 ] && resumed_partial=$((resumed_partial + 1))
    prev=$now
done
"$K" clone "$PORT" "$KEY" "$R" 2>"$T/clone.err" || die "the last clone failed: $(cat "$T/clone.err")"
"$K" read "$R" | cmp -s - "$T/src.txt" || die "the replica's blocks differ from the source's"
same "$T/src" "$R" "the final clone"
[ $resumed_partial -ge 10 ] || die "only $resumed_partial kills left a partial replica"
echo "test_clone_crash: $kills kills during clone ($resumed_partial left a partial replica that resumed, $finished clones finished between kills and were checked); the final replica verifies and equals the source"
