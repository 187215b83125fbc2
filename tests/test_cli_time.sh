#!/usr/bin/env bash
# test_cli_time.sh - `kappalog read --since TIME`: the first block appended
# at or after TIME, given as Unix milliseconds or RFC 3339 (Z, offsets east
# and west, milliseconds, more digits rounding up, 't' and a space for 'T'),
# equal to what a scan of the records' timestamps (read --format json)
# says, over several segments, alone, with --to and with --format json;
# the same after every .tix file is deleted; and every bad TIME, and
# --since with --from, refused with exit 2 and one line, the log unchanged.
#
# Run by ctest with KAPPALOG=<the binary>. The timestamps are the real
# clock's: batches are appended with pauses between them, then read back.

# SC2162: `run read ...` runs `kappalog read`, not the shell's read builtin.
# shellcheck disable=SC2162
# shellcheck source=tests/cli_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"

LOG=$T/log

# lines PREFIX N SIZE: N lines "PREFIX-i-" padded with x to SIZE bytes.
lines() {
    awk -v p="$1" -v n="$2" -v s="$3" 'BEGIN {
        pad = sprintf("%" s "s", ""); gsub(/ /, "x", pad)
        for (i = 0; i < n; i++) print substr(p "-" i "-" pad, 1, s) }'
}

# A log of several segments: batches appended 30 ms apart, so their times differ.
make_log() {
    "$K" init "$LOG" --fsync never --segment-bytes 64K >/dev/null || exit 1
    local g
    for g in a b c d e; do
        lines "$g" 700 200 | "$K" append "$LOG" --batch 350 || exit 1
        sleep 0.03
    done
    # "index timestamp_ms" of every block
    "$K" read "$LOG" --format json |
        sed -E 's/^\{"index":([0-9]+),"timestamp_ms":([0-9]+),.*/\1 \2/' >"$T/ts"
    assert_eq "$(wc -l <"$T/ts")" 3500 "every block has a timestamp"
    local segs
    segs=$(find "$LOG/segments" -name '*.log' | wc -l)
    check "the log spans several segments ($segs)" [ "$segs" -ge 5 ]
}

# first_at MS: the first block whose timestamp is >= MS, by a scan (the length if none).
first_at() {
    awk -v t="$1" '$2 >= t { print $1; found = 1; exit } END { if (!found) print NR }' "$T/ts"
}

# rfc MS OFFSET_MIN [FRACTION]: MS as RFC 3339 in the zone OFFSET_MIN east of UTC.
rfc() {
    local ms=$1 off=$2 frac=${3-} s zone sign=+ a
    s=$(date -u -d "@$((ms / 1000 + off * 60))" +%Y-%m-%dT%H:%M:%S) || exit 1
    [ -n "$frac" ] || frac=$(printf '.%03d' $((ms % 1000)))
    if [ "$off" -eq 0 ]; then
        zone=Z
    else
        a=$off
        [ "$a" -lt 0 ] && sign=- && a=$((-a))
        zone=$(printf '%s%02d:%02d' "$sign" $((a / 60)) $((a % 60)))
    fi
    echo "$s$frac$zone"
}

# expect_since TIME FROM WHAT: read --since TIME writes exactly blocks FROM.. (as --from does).
expect_since() {
    run read "$LOG" --since "$1"
    expect_ok "$3"
    "$K" read "$LOG" --from "$2" >"$T/want" || fail "$3: read --from $2"
    assert_same_file "$T/out" "$T/want" "$3: read --since '$1' starts at block $2"
}

test_since_forms() {
    local times t want n
    times=$(cut -d' ' -f2 "$T/ts" | uniq)
    n=$(wc -l <"$T/ts")
    check "several batch times" [ "$(echo "$times" | wc -l)" -ge 5 ]
    for t in 0 1 $times 99999999999999; do
        for d in -1 0 1; do
            [ $((t + d)) -lt 0 ] && continue
            want=$(first_at $((t + d)))
            expect_since $((t + d)) "$want" "ms $((t + d))"
        done
    done
    for t in $times; do
        want=$(first_at "$t")
        expect_since "$(rfc "$t" 0)" "$want" "RFC 3339 Z of $t"
        expect_since "$(rfc "$t" 60)" "$want" "RFC 3339 +01:00 of $t"
        expect_since "$(rfc "$t" -330)" "$want" "RFC 3339 -05:30 of $t"
        # a microsecond past it: the next millisecond
        expect_since "$(rfc "$t" 0 "$(printf '.%03d001' $((t % 1000)))")" \
            "$(first_at $((t + 1)))" "RFC 3339 with microseconds past $t"
    done
    t=$(echo "$times" | sed -n 3p)
    want=$(first_at "$t")
    # whole seconds, lower-case letters, a space for T
    expect_since "$(date -u -d "@$((t / 1000))" +%Y-%m-%dT%H:%M:%SZ)" \
        "$(first_at $((t / 1000 * 1000)))" "RFC 3339 without a fraction"
    expect_since "$(rfc "$t" 0 | tr 'TZ' 'tz')" "$want" "RFC 3339 in lower case"
    expect_since "$(rfc "$t" 0 | tr 'T' ' ')" "$want" "RFC 3339 with a space"
    # with --to, and as JSON
    run read "$LOG" --since "$t" --to $((want + 5))
    expect_ok "--since with --to"
    "$K" read "$LOG" --from "$want" --to $((want + 5)) >"$T/want"
    assert_same_file "$T/out" "$T/want" "--since with --to"
    run read "$LOG" --since "$t" --to $((want - 1))
    expect_ok "--since past --to"
    assert_eq "$(wc -c <"$T/out")" 0 "--since past --to is empty"
    run read "$LOG" --since "$(rfc "$t" 0)" --format json --to $((want + 1))
    expect_ok "--since --format json"
    assert_eq "$(grep -oE '^\{"index":[0-9]+' "$T/out" | cut -d: -f2)" "$want" "--since --format json"
    run read "$LOG" --since 99999999999999
    expect_ok "--since after every batch"
    assert_eq "$(wc -c <"$T/out")" 0 "--since after every batch is empty"
    assert_eq "$n" 3500 "length"
}

# Without the .tix files a reader (read-only: it writes nothing) answers the same.
test_since_without_time_index() {
    local t want
    find "$LOG/segments" -name '*.tix' -delete
    for t in $(cut -d' ' -f2 "$T/ts" | uniq); do
        want=$(first_at "$t")
        expect_since "$t" "$want" "no .tix: $t"
    done
    assert_eq "$(find "$LOG/segments" -name '*.tix' | wc -l)" 0 "a reader writes no .tix"
}

test_since_errors() {
    local before bad
    before=$(state "$LOG")
    run read "$LOG" --since 0 --from 1
    expect_error 2 "read: --since and --from both" "--since with --from"
    run read "$LOG" --since
    expect_error 2 "read: --since needs a value" "--since without a value"
    for bad in "" "yesterday" "-5" "12e3" "+5" "99999999999999999999" \
        "2026-12-03" "2026-12-03T10:00" "2026-12-03T10:00:00" "2026-12-03T10:00:00.Z" \
        "2026-12-03T10:00:00.5" "2026-13-03T10:00:00Z" "2026-00-03T10:00:00Z" \
        "2026-02-29T10:00:00Z" "2026-04-31T10:00:00Z" "2026-12-03T24:00:00Z" \
        "2026-12-03T10:60:00Z" "2026-12-03T10:00:61Z" "2026-12-03T10:00:00+24:00" \
        "2026-12-03T10:00:00+01:60" "2026-12-03T10:00:00+0100" "2026-12-03T10:00:00+01:00 " \
        "2026-12-03X10:00:00Z" "2026/12/03T10:00:00Z" " 2026-12-03T10:00:00Z" \
        "2026-12-03T10:00:00ZZ"; do
        run read "$LOG" --since "$bad"
        expect_error 2 "read: --since: '.*' is not a time: " "--since '$bad'"
    done
    run read "$LOG" --since "2028-02-29T10:00:00Z"
    expect_ok "a leap day is a time"
    run read "$T/nothing-here" --since 0
    expect_error 1 "no such directory" "--since on a missing log"
    expect_unchanged "$LOG" "$before" "bad --since"
}

make_log
test_since_forms
test_since_errors
test_since_without_time_index
finish test_cli_time.sh
