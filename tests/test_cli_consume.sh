#!/usr/bin/env bash
# test_cli_consume.sh - consumer cursors on the command line: `consume`
# (formats, --max, --follow), `cursors`, `cursor --reset/--delete`, a
# truncation reported as a fork change, every bad flag and name refused
# with one line and nothing changed, `read --follow`, and the crash test:
# `consume` killed with SIGKILL at random moments while another process
# appends never leaves its cursor past a record that was not written out.
#
# Run by ctest with KAPPALOG=<the binary>.
set -u
set -o pipefail

: "${KAPPALOG:?set KAPPALOG to the kappalog binary}"
K=$KAPPALOG
export KL_QUIET=1
export LC_ALL=C
# shellcheck source=tests/cli_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"

# records FROM TO: lines "rec-NNNNNN-end" for FROM..TO-1 (self-delimiting, so a
# line torn by a kill and glued to the next one still shows the next record whole)
records() {
    awk -v a="$1" -v b="$2" 'BEGIN { for (i = a; i < b; i++) printf "rec-%06d-end\n", i }'
}
# position LOG NAME: the cursor's position (cursors --json)
position() {
    "$K" cursors "$1" --json | grep -oE "\"name\":\"$2\",\"position\":[0-9]+" | grep -oE '[0-9]+$'
}
# seen FILE BELOW: how many distinct records below BELOW the file shows whole
seen() {
    grep -oE 'rec-[0-9]{6}-end' "$1" | sort -u | awk -F- -v p="$2" '$2 + 0 < p' | wc -l
}

test_consume_basics() {
    local log=$T/basic
    "$K" init "$log" --fsync never >/dev/null
    records 0 10 | "$K" append "$log"
    run consume "$log" --cursor a --max 3
    expect_ok "consume --max 3"
    assert_eq "$(tr '\n' ' ' <"$T/out")" "rec-000000-end rec-000001-end rec-000002-end " \
        "the first three records"
    run consume "$log" --cursor a --max 2 --format json
    expect_ok "consume --format json"
    check "json record 3" grep -q '^{"index":3,"timestamp_ms":[0-9]*,"size":14,"data":"rec-000003-end"}$' "$T/out"
    assert_eq "$(wc -l <"$T/out")" 2 "two json records"
    run consume "$log" --cursor a --format len32
    expect_ok "consume --format len32"
    assert_eq "$(wc -c <"$T/out")" $((5 * 18)) "five len32 records"
    run consume "$log" --cursor a
    expect_ok "consume at the end"
    assert_eq "$(wc -c <"$T/out")" 0 "nothing left to consume"
    run cursors "$log"
    expect_ok "cursors"
    check "cursors lists a at 10 with lag 0" grep -qE '^a +10 +0 +0$' "$T/out"
    records 10 15 | "$K" append "$log"
    run cursors "$log" --json
    expect_ok "cursors --json"
    assert_eq "$(cat "$T/out")" '[{"name":"a","position":10,"fork":0,"lag":5,"state":"ok"}]' \
        "cursors --json"
    run cursor "$log" b --reset 12
    expect_ok "cursor --reset creates"
    run consume "$log" --cursor b
    expect_ok "consume b"
    assert_eq "$(tr '\n' ' ' <"$T/out")" "rec-000012-end rec-000013-end rec-000014-end " "b from 12"
    run cursor "$log" b --delete
    expect_ok "cursor --delete"
    assert_eq "$(position "$log" b)" "" "b is gone"
}

test_consume_errors() {
    local log=$T/errors before
    "$K" init "$log" --fsync never >/dev/null
    records 0 20 | "$K" append "$log"
    "$K" cursor "$log" c --reset 5 >/dev/null
    before=$(state "$log")
    run consume "$log"
    expect_error 2 "--cursor NAME is required" "consume without --cursor"
    run consume "$log" --cursor c --max 0
    expect_error 2 "--max" "consume --max 0"
    run consume "$log" --cursor c --max x
    expect_error 2 "--max" "consume --max x"
    run consume "$log" --cursor c --format xml
    expect_error 2 "is not lines, len32 or json" "consume --format xml"
    run consume "$log" --cursor "../up"
    expect_error 2 "is not 1..64 characters" "a cursor name with a slash"
    run consume "$log" --cursor ".hidden"
    expect_error 2 "is not 1..64 characters" "a cursor name starting with a dot"
    run consume "$T/missing" --cursor c
    expect_error 1 "no such directory" "consume of a missing log"
    run cursor "$log" c
    expect_error 2 "exactly one of --reset INDEX and --delete" "cursor without an action"
    run cursor "$log" c --reset 1 --delete
    expect_error 2 "exactly one of --reset INDEX and --delete" "cursor with both actions"
    run cursor "$log" c --reset 21
    expect_error 1 "--reset 21 is past the end of the log \(length 20\)" "reset past the end"
    run cursor "$log" nobody --delete
    expect_error 1 "no cursor 'nobody'" "delete of an absent cursor"
    assert_eq "$(position "$log" c)" 5 "the refused commands left the cursor where it was"
    expect_unchanged "$log" "$before" "bad consume and cursor commands"
    # a cursor file that is garbage: a clear error, the log untouched
    head -c 1024 /dev/urandom >"$log/consumers/junk.cursor"
    run consume "$log" --cursor junk
    expect_error 1 "neither slot checks out" "a damaged cursor file"
    run cursors "$log"
    check "cursors names the damaged cursor" grep -qE '^junk .*damaged' "$T/out"
    # a truncation below a cursor: reported, and a reset takes the new fork
    "$K" cursor "$log" c --reset 18 >/dev/null
    "$K" truncate "$log" 10 >/dev/null
    run consume "$log" --cursor c
    expect_error 1 "cursor 'c' is at block 18 of fork 0, but the log is at fork 1.*--reset INDEX" \
        "consume after a truncation"
    run cursors "$log" --json
    check "cursors --json shows the fork change" grep -q '"name":"c","position":18,"fork":0,"lag":null,"state":"fork changed"' "$T/out"
    run cursor "$log" c --reset 10
    expect_ok "reset after a truncation"
    run consume "$log" --cursor c
    expect_ok "consume after the reset"
    assert_eq "$(wc -c <"$T/out")" 0 "nothing past the new end"
}

# wait_lines FILE N: wait up to 5 s for FILE to have N lines
wait_lines() {
    local i
    for i in $(seq 1 500); do
        [ "$(wc -l <"$1")" -ge "$2" ] && return 0
        sleep 0.01
    done
    return 1
}

test_follow() {
    local log=$T/follow
    "$K" init "$log" --fsync never >/dev/null
    records 0 3 | "$K" append "$log"
    "$K" consume "$log" --cursor f --follow >"$T/follow.out" 2>"$T/follow.err" &
    local cpid=$!
    "$K" read "$log" --follow --from 1 --to 8 >"$T/read.out" 2>"$T/read.err" &
    local rpid=$!
    check "consume --follow prints the first records" wait_lines "$T/follow.out" 3
    records 3 5 | "$K" append "$log"
    check "consume --follow sees an append" wait_lines "$T/follow.out" 5
    records 5 9 | "$K" append "$log"
    check "consume --follow sees a second append" wait_lines "$T/follow.out" 9
    wait "$rpid"
    assert_eq "$?" 0 "read --follow --to 8 ends at block 8"
    assert_eq "$(cat "$T/read.out")" "$(records 1 8)" "read --follow wrote blocks 1..7"
    kill "$cpid"
    wait "$cpid" 2>/dev/null
    assert_eq "$(cat "$T/follow.out")" "$(records 0 9)" "consume --follow wrote every record once"
    assert_eq "$(position "$log" f)" 9 "consume --follow committed its cursor"
}

# slow_copy: copy whole lines from stdin to stdout, slowly (a reader that
# lags: about 10,000 lines/s, slower than consume writes and the appender adds)
slow_copy() {
    local line n=0
    while IFS= read -r line; do
        printf '%s\n' "$line"
        n=$((n + 1))
        [ $((n % 50)) -eq 0 ] && sleep 0.005
    done
}

# kill -9 during `consume --follow` (writing a backlog, or waiting at the
# end), while another process appends: the cursor never passes a record
# that was not written out (every record below it is in the output, whole),
# and in the end every record is there.
test_consume_crash() {
    local log=$T/crash out=$T/crash.out kills=${KL_CONSUME_KILLS:-40} i p total killed=0
    "$K" init "$log" --fsync never >/dev/null
    records 0 20000 | "$K" append "$log" --batch 100
    (
        for i in $(seq 20000 500 39500); do
            records "$i" $((i + 500)) | "$K" append "$log" --batch 50 || exit 1
            sleep 0.1
        done
    ) &
    local apid=$!
    : >"$out"
    mkfifo "$T/fifo"
    for i in $(seq 1 "$kills"); do
        # now and then send the cursor back, so there is a backlog to be killed in
        if [ $((i % 4)) -eq 0 ]; then
            p=$(position "$log" c)
            "$K" cursor "$log" c --reset $((${p:-0} / 2)) >/dev/null
        fi
        # through a slow reader: consume spends most of its time blocked writing a
        # chunk out, which is where a cursor committed too early would show
        slow_copy <"$T/fifo" >>"$out" &
        local rpid=$!
        "$K" consume "$log" --cursor c --follow >"$T/fifo" 2>>"$T/crash.err" &
        local cpid=$!
        sleep "0.$((RANDOM % 5))$((RANDOM % 10))"
        kill -9 "$cpid" 2>/dev/null
        wait "$cpid" 2>/dev/null
        [ $? -eq 137 ] && killed=$((killed + 1))
        wait "$rpid"
        p=$(position "$log" c)
        p=${p:-0}
        total=$(seen "$out" "$p")
        assert_eq "$total" "$p" "kill $i: every record below the cursor ($p) was written out"
    done
    wait "$apid"
    assert_eq "$?" 0 "the appender finished"
    run consume "$log" --cursor c
    cat "$T/out" >>"$out"
    assert_eq "$STATUS" 0 "the last consume"
    assert_eq "$(position "$log" c)" 40000 "the cursor reached the end"
    assert_eq "$(seen "$out" 40000)" 40000 "every record was written out at least once"
    echo "consume crash test: $killed of $kills runs were killed by SIGKILL"
    check "most kills landed inside a consume run ($killed of $kills)" test "$killed" -ge $((kills / 2))
}

test_consume_basics
test_consume_errors
test_follow
test_consume_crash
finish test_cli_consume.sh
