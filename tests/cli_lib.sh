# cli_lib.sh - what the shell tests of the `kappalog` command line share
# (sourced by tests/test_cli*.sh, not a test itself): a temporary directory
# $T removed on exit, check counters, running kappalog with its stdout,
# stderr and exit status captured, and the state of a log.
#
# Needs KAPPALOG (the kappalog binary; K from here on). Every check either
# counts as passed (ok) or prints "FAIL: ..." and counts a failure; finish()
# reports and exits.

# shellcheck shell=bash
# SC2162: `run read ...` runs `kappalog read`, not the shell's read builtin.
# shellcheck disable=SC2162

set -u
set -o pipefail

: "${KAPPALOG:?set KAPPALOG to the kappalog binary}"
K=$KAPPALOG
export KL_QUIET=1
export LC_ALL=C

T=$(mktemp -d "${TMPDIR:-/tmp}/kappalog-cli.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT

FAILS=0
CHECKS=0
fail() {
    echo "FAIL: $*" >&2
    FAILS=$((FAILS + 1))
}
ok() {
    CHECKS=$((CHECKS + 1))
}
# assert_eq ACTUAL EXPECTED WHAT
assert_eq() {
    if [ "$1" == "$2" ]; then ok; else fail "$3: got '$1', expected '$2'"; fi
}
# check WHAT COMMAND...: the command succeeds.
check() {
    local what=$1
    shift
    if "$@"; then ok; else fail "$what"; fi
}
# assert_same_file A B WHAT
assert_same_file() {
    if cmp -s "$1" "$2"; then ok; else fail "$3: $1 and $2 differ"; fi
}

# run ARGS...: runs kappalog, stdout in $T/out, stderr in $T/err, status in $STATUS.
run() {
    "$K" "$@" >"$T/out" 2>"$T/err"
    STATUS=$?
}
# run_in INPUT ARGS...: as run, with stdin from INPUT.
run_in() {
    local input=$1
    shift
    "$K" "$@" <"$input" >"$T/out" 2>"$T/err"
    STATUS=$?
}
# expect_ok WHAT: the last run succeeded with nothing on stderr.
expect_ok() {
    assert_eq "$STATUS" 0 "$1: exit status (stderr: $(head -c 300 "$T/err"))"
    assert_eq "$(wc -c <"$T/err")" 0 "$1: stderr is empty"
}
# expect_error STATUS PATTERN WHAT: the last run failed with exactly one
# line on stderr, "kappalog: " then something matching PATTERN (grep -E).
expect_error() {
    assert_eq "$STATUS" "$1" "$3: exit status (stderr: $(head -c 300 "$T/err"))"
    assert_eq "$(wc -l <"$T/err")" 1 "$3: one line on stderr"
    assert_eq "$(wc -c <"$T/out")" 0 "$3: nothing on stdout"
    if head -n 1 "$T/err" | grep -qE "^kappalog: .*$2"; then ok; else
        fail "$3: stderr '$(cat "$T/err")' does not match 'kappalog: .*$2'"
    fi
}

# The state of a log: its length and a checksum of all of its blocks (len32 framed).
state() {
    local len sum
    len=$(length "$1")
    sum=$("$K" read "$1" --format len32 | cksum)
    echo "$len $sum"
}
# expect_unchanged LOG BEFORE WHAT
expect_unchanged() {
    assert_eq "$(state "$1")" "$2" "$3: the log is unchanged"
}

# le32 N: N as 4 little-endian bytes.
le32() {
    # shellcheck disable=SC2059 # the format is the escapes being made
    printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) \
        $((($1 >> 16) & 255)) $((($1 >> 24) & 255)))"
}
# frame FILE...: each file as a len32 record.
frame() {
    local f
    for f in "$@"; do
        le32 "$(wc -c <"$f")"
        cat "$f"
    done
}
# bytes256: every byte value 0..255 once.
bytes256() {
    local i
    # shellcheck disable=SC2059 # the format is the escape being made
    for i in $(seq 0 255); do printf "\\x$(printf %02x "$i")"; done
}
# length LOG
length() {
    "$K" info "$1" --json | grep -oE '"length":[0-9]+' | cut -d: -f2
}

# finish NAME: print the counts; exit 1 if anything failed.
finish() {
    if [ "$FAILS" -gt 0 ]; then
        echo "$1: $FAILS of $((CHECKS + FAILS)) checks failed" >&2
        exit 1
    fi
    echo "$1: all $CHECKS checks passed"
    exit 0
}
