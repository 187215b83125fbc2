#!/usr/bin/env bash
# test_cli.sh - the `kappalog` command line: init, append (lines, len32,
# batches, --acks), get, read (lines, len32, json), info, help, and every
# error path: one line "kappalog: ..." on stderr, the documented exit status
# (2 usage, 1 runtime), and the log's length and content unchanged.
#
# Run by ctest with KAPPALOG=<the binary>. Test data is made here, from
# fixed patterns (no randomness), in a temporary directory removed on exit.

# SC2162: `run read ...` runs `kappalog read`, not the shell's read builtin.
# shellcheck disable=SC2162
# shellcheck source=tests/cli_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"

# ---------------------------------------------------------------- help, version
test_help() {
    run --help
    expect_ok "--help"
    cp "$T/out" "$T/help"
    check "--help prints the usage" grep -q "^usage: kappalog" "$T/help"
    for c in init append get read info; do
        check "--help lists $c" grep -qE "^  $c " "$T/help"
        run help "$c"
        expect_ok "help $c"
        check "help $c prints its usage" grep -q "^usage: kappalog $c" "$T/out"
        run "$c" --help
        expect_ok "$c --help"
        check "$c --help prints its usage" grep -q "^usage: kappalog $c" "$T/out"
    done
    run --version
    expect_ok "--version"
    check "--version: $(cat "$T/out")" grep -qE '^kappalog [0-9]+\.[0-9]+\.[0-9]+$' "$T/out"
}

# ---------------------------------------------------------------- init and info
test_init_info() {
    local log=$T/init
    run init "$log" --fsync interval:250 --segment-bytes 64K --compression zstd:3
    expect_ok "init with flags"
    run info "$log" --json
    expect_ok "info --json"
    local j
    j=$(cat "$T/out")
    for kv in '"length":0' '"byte_length":0' '"fork":0' '"fsync":"interval:250"' \
        '"segment_bytes":65536' '"compression":"zstd:3"' '"format_version":3'; do
        case "$j" in *"$kv"*) ok ;; *) fail "info --json has $kv: $j" ;; esac
    done
    for k in segments disk_bytes io_backend created_ms created last_commit_ms last_commit; do
        case "$j" in *"\"$k\":"*) ok ;; *) fail "info --json has key $k: $j" ;; esac
    done
    local rfc3339='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z'
    check "info --json created is RFC 3339 with ms: $j" grep -qE "\"created\":\"$rfc3339\"" <<<"$j"
    run info "$log"
    expect_ok "info"
    check "info: length line: $(cat "$T/out")" grep -qE '^length: +0$' "$T/out"
    check "info: compression line" grep -qE '^compression: +zstd:3$' "$T/out"
    check "info: created is RFC 3339" grep -qE "^created: +$rfc3339\$" "$T/out"
    # Aligned: every value starts in the same column.
    local columns
    columns=$(sed -E 's/^([a-z_]+: +).*/\1/' "$T/out" | awk '{print length($0)}' | sort -u | wc -l)
    assert_eq "$columns" 1 "info: values aligned"
    run init "$T/defaults"
    expect_ok "init with defaults"
    run info "$T/defaults" --json
    for kv in '"fsync":"always"' '"compression":"none"' '"segment_bytes":268435456'; do
        check "default init: info has $kv" grep -qF "$kv" "$T/out"
    done
    run init "$T/sizes" --segment-bytes 1G --fsync never --compression zstd
    expect_ok "init --segment-bytes 1G"
    run info "$T/sizes" --json
    for kv in '"segment_bytes":1073741824' '"fsync":"never"' '"compression":"zstd"'; do
        check "init 1G/never/zstd: info has $kv" grep -qF "$kv" "$T/out"
    done
}

# ---------------------------------------------------------------- lines round trip
test_lines_round_trip() {
    local log=$T/lines
    run init "$log" --fsync never
    expect_ok "init lines log"
    # Empty lines, a line with tabs and a NUL-free binary-ish tail, no final newline.
    printf 'first\n\n\nfourth line\twith tab\n\n{"json":"ish"}\nlast without newline' >"$T/lines.in"
    run_in "$T/lines.in" append "$log"
    expect_ok "append lines"
    assert_eq "$(length "$log")" 7 "lines: length"
    run read "$log"
    expect_ok "read lines"
    { cat "$T/lines.in"; printf '\n'; } >"$T/lines.expect"
    assert_same_file "$T/out" "$T/lines.expect" "read --format lines equals the input"
    local i=0
    while IFS= read -r line || [ -n "$line" ]; do
        run get "$log" "$i"
        expect_ok "get $i"
        assert_eq "$(cat "$T/out"; echo x)" "${line}x" "get $i equals line $i"
        i=$((i + 1))
    done <"$T/lines.in"
    # An empty block gives no bytes at all.
    run get "$log" 1
    assert_eq "$(wc -c <"$T/out")" 0 "get of an empty block writes nothing"
    # A range.
    run read "$log" --from 3 --to 6
    expect_ok "read --from 3 --to 6"
    printf 'fourth line\twith tab\n\n{"json":"ish"}\n' >"$T/range.expect"
    assert_same_file "$T/out" "$T/range.expect" "read --from 3 --to 6"
    run read "$log" --from 7
    expect_ok "read --from length"
    assert_eq "$(wc -c <"$T/out")" 0 "read --from length is empty"
    run read "$log" --from 6 --to 100
    expect_ok "read --to past the end"
    assert_eq "$(cat "$T/out")" "last without newline" "read --to past the end is cut"
    # A 2 MiB line: longer than the first read buffer, so it grows.
    head -c 2097152 /dev/zero | tr '\0' 'L' >"$T/long"
    { cat "$T/long"; printf '\nafter\n'; } >"$T/long.in"
    run_in "$T/long.in" append "$log"
    expect_ok "append a 2 MiB line"
    run get "$log" 7
    assert_same_file "$T/out" "$T/long" "get of the 2 MiB line"
    run get "$log" 8
    assert_eq "$(cat "$T/out")" "after" "the line after the 2 MiB line"
}

# ---------------------------------------------------------------- len32 round trip
test_len32_round_trip() {
    local log=$T/len32 d=$T/blocks
    mkdir "$d"
    : >"$d/0"                                                # empty
    bytes256 >"$d/1"                                         # every byte value
    printf 'text\nwith\nnewlines' >"$d/2"
    cp "$d/1" "$d/3"                                         # 1 MiB of binary: 256 B
    for _ in $(seq 12); do cat "$d/3" "$d/3" >"$d/3.x" && mv "$d/3.x" "$d/3"; done # x 2^12
    : >"$d/4"                                                # empty again
    head -c 5000000 /dev/zero | tr '\0' '\377' >"$d/5"       # 5 MB, larger than the buffer
    printf '\000' >"$d/6"
    frame "$d/0" "$d/1" "$d/2" "$d/3" "$d/4" "$d/5" "$d/6" >"$T/len32.in"
    run init "$log" --fsync never --segment-bytes 1M
    expect_ok "init len32 log"
    run_in "$T/len32.in" append "$log" --format len32
    expect_ok "append len32"
    assert_eq "$(length "$log")" 7 "len32: length"
    run read "$log" --format len32
    expect_ok "read --format len32"
    assert_same_file "$T/out" "$T/len32.in" "read --format len32 equals the input byte for byte"
    for i in 0 1 2 3 4 5 6; do
        run get "$log" "$i"
        expect_ok "get $i (len32)"
        assert_same_file "$T/out" "$d/$i" "get $i equals block $i"
    done
    local bytes=$((256 + 18 + 1048576 + 5000000 + 1))
    run info "$log" --json
    check "len32: byte_length $bytes: $(cat "$T/out")" grep -qF "\"byte_length\":$bytes," "$T/out"
    check "len32: several segments" grep -qE '"segments":([2-9]|[1-9][0-9]+),' "$T/out"
    # Through a pipe, in small pieces: records span every read.
    local log2=$T/len32pipe
    run init "$log2" --fsync never --compression zstd
    # shellcheck disable=SC2002 # a pipe, not a file: reads return what the pipe holds
    cat "$T/len32.in" | "$K" append "$log2" --format len32 --batch 3 2>"$T/err"
    assert_eq "$?" 0 "append len32 from a pipe"
    run read "$log2" --format len32
    assert_same_file "$T/out" "$T/len32.in" "len32 through a pipe, compressed, batch 3"
}

# ---------------------------------------------------------------- json
test_json() {
    local log=$T/json
    run init "$log" --fsync never
    {
        printf '\000\000\000\000'                               # empty
        printf '\012\000\000\000say "hi"\\\n'                    # quote, backslash, newline
        printf '\006\000\000\000\001\037tab\t'                    # control chars
        printf '\006\000\000\000h\303\251llo'                    # UTF-8 (e acute)
        printf '\003\000\000\000\377\376\000'                    # not UTF-8
        printf '\002\000\000\000\300\200'                        # overlong NUL: not UTF-8
        printf '\003\000\000\000\355\240\200'                    # a surrogate: not UTF-8
        printf '\004\000\000\000\360\237\230\200'                # U+1F600: UTF-8
    } >"$T/json.in"
    run_in "$T/json.in" append "$log" --format len32
    expect_ok "append json test blocks"
    run read "$log" --format json
    expect_ok "read --format json"
    assert_eq "$(wc -l <"$T/out")" 8 "json: one line per block"
    check "json: index and timestamp_ms" grep -qF '{"index":1,"timestamp_ms":' "$T/out"
    check "json: escapes: $(sed -n 2p "$T/out")" \
        grep -qF '"size":10,"data":"say \"hi\"\\\u000a"}' "$T/out"
    check "json: control chars as \\u00XX" grep -qF '"data":"\u0001\u001ftab\u0009"' "$T/out"
    check "json: binary as base64" grep -qF '"data_base64":"//4A"' "$T/out"
    check "json: overlong form as base64" grep -qF '"data_base64":"wIA="' "$T/out"
    check "json: surrogate as base64" grep -qF '"data_base64":"7aCA"' "$T/out"
    check "json: empty block" grep -qF '"data":""}' "$T/out"
    # A real parser, where there is one: every line parses and gives back the bytes.
    local checker='
import base64, json, sys
blocks = open(sys.argv[1], "rb").read()
want, i = [], 0
while i < len(blocks):
    n = int.from_bytes(blocks[i:i + 4], "little"); want.append(blocks[i + 4:i + 4 + n]); i += 4 + n
for k, line in enumerate(open(sys.argv[2], "rb").read().splitlines()):
    o = json.loads(line)
    got = o["data"].encode("utf-8") if "data" in o else base64.b64decode(o["data_base64"])
    assert o["index"] == k and o["size"] == len(want[k]) and got == want[k], (k, o)
    assert isinstance(o["timestamp_ms"], int) and o["timestamp_ms"] > 1500000000000
print("ok")'
    if command -v python3 >/dev/null 2>&1; then
        assert_eq "$(python3 -c "$checker" "$T/json.in" "$T/out" 2>&1)" ok "json parses (python3)"
    elif command -v node >/dev/null 2>&1; then
        check "json parses (node)" node -e \
            'for (const l of require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n"))
                 JSON.parse(l)' "$T/out"
    fi
    run info "$log" --json
    if command -v python3 >/dev/null 2>&1; then
        check "info --json parses (python3)" python3 -c \
            'import json,sys; o=json.load(open(sys.argv[1])); assert o["length"] == 8' "$T/out"
    fi
}

# ---------------------------------------------------------------- batches and acks
test_acks() {
    local log=$T/acks
    run init "$log" --fsync never
    seq 1 10000 >"$T/seq.in"
    run_in "$T/seq.in" append "$log" --batch 100 --acks
    expect_ok "append --acks"
    # A file is always ready, so every batch is full: 100, 200, ..., 10000.
    assert_eq "$(wc -l <"$T/out")" 100 "acks: one line per batch of 100"
    seq 100 100 10000 >"$T/acks.expect"
    assert_same_file "$T/out" "$T/acks.expect" "acks: increasing lengths ending at the total"
    # Appending more continues from the length.
    printf 'x\ny\n' | "$K" append "$log" --acks >"$T/out" 2>"$T/err"
    assert_eq "$(cat "$T/out")" 10002 "acks continue from the log's length"
    run read "$log" --to 10000
    assert_same_file "$T/out" "$T/seq.in" "acks: content"
    # A partial batch is committed as soon as stdin has nothing more ready, even
    # inside a record that is still being written.
    # (each piece is one write: cat of a small file; the printf builtin may write in parts)
    printf 'a\nb' >"$T/ab.in"
    printf 'c\nd\n' >"$T/cd.in"
    { cat "$T/ab.in"; sleep 0.5; cat "$T/cd.in"; } | "$K" append "$log" --acks >"$T/out" 2>"$T/err"
    assert_eq "$(tr '\n' ' ' <"$T/out")" "10003 10005 " "a partial batch does not wait for --batch"
    run get "$log" 10003
    assert_eq "$(cat "$T/out")" "bc" "a record split across reads"
}

# ---------------------------------------------------------------- crash: acks are durable
test_acks_survive_kill() {
    local log=$T/kill
    run init "$log" --fsync always
    expect_ok "init a log to kill its writer"
    mkfifo "$T/fifo"
    (seq 1 1000000 >"$T/fifo") 2>/dev/null &
    local producer=$!
    # The ack file exists before the writer starts: the shell opens the fifo
    # first and waits there for the producer.
    : >"$T/kill.acks"
    "$K" append "$log" --acks --batch 10 <"$T/fifo" >>"$T/kill.acks" 2>"$T/kill.err" &
    local writer=$!
    local n=0
    while [ "$(wc -l <"$T/kill.acks")" -lt 5 ] && [ $n -lt 200 ]; do
        sleep 0.05
        n=$((n + 1))
    done
    kill -9 "$writer" 2>/dev/null
    wait "$writer" 2>/dev/null
    kill "$producer" 2>/dev/null
    wait "$producer" 2>/dev/null
    local acked
    acked=$(tail -n 1 "$T/kill.acks")
    check "the writer printed acks before it was killed: $(head -c 300 "$T/kill.err")" \
        [ -n "$acked" ]
    local len
    len=$(length "$log")
    check "killed writer: length $len < last ack $acked" [ "${len:-0}" -ge "${acked:-1}" ]
    "$K" read "$log" >"$T/out"
    seq 1 "$len" >"$T/kill.expect"
    assert_same_file "$T/out" "$T/kill.expect" "killed writer: the log is a prefix of the input"
}

# ---------------------------------------------------------------- readers beside a writer
test_readers_beside_writer() {
    local log=$T/busy
    run init "$log" --fsync never
    seq 1 5 | "$K" append "$log"
    # A writer holding the log open (waiting on stdin) does not stop readers.
    mkfifo "$T/hold"
    "$K" append "$log" <"$T/hold" >/dev/null 2>&1 &
    local writer=$!
    exec 9>"$T/hold"
    printf '6\n' >&9
    sleep 0.3
    run info "$log" --json
    expect_ok "info beside a writer"
    run get "$log" 0
    assert_eq "$(cat "$T/out")" 1 "get beside a writer"
    run read "$log" --to 5
    expect_ok "read beside a writer"
    printf '7\n' | "$K" append "$log" >"$T/out" 2>"$T/err"
    STATUS=$?
    expect_error 1 "open for writing" "a second writer"
    exec 9>&-
    wait "$writer"
    assert_eq "$?" 0 "the writer finishes when its input ends"
    run read "$log"
    assert_eq "$(tr '\n' ' ' <"$T/out")" "1 2 3 4 5 6 " "the second writer appended nothing"
}

# ---------------------------------------------------------------- stdout closed early
test_epipe() {
    local log=$T/lines
    "$K" read "$log" --format len32 2>"$T/err" | head -c 10 >/dev/null
    assert_eq "${PIPESTATUS[0]}" 141 "read into a closed pipe: exit 141"
    assert_eq "$(wc -c <"$T/err")" 0 "read into a closed pipe: quiet"
}

# ---------------------------------------------------------------- usage errors (status 2)
test_usage_errors() {
    local log=$T/lines before
    before=$(state "$log")
    run
    expect_error 2 "missing command" "no command"
    run frobnicate "$log"
    expect_error 2 "unknown command" "unknown command"
    run --frobnicate
    expect_error 2 "unknown flag" "unknown global flag"
    run help frobnicate
    expect_error 2 "unknown command" "help of an unknown command"
    run_in /dev/null append "$log" --bogus
    expect_error 2 "unknown flag '--bogus'" "append --bogus"
    run read "$log" -x
    expect_error 2 "unknown flag '-x'" "read -x"
    run info "$log" --json=yes
    expect_error 2 "takes no value" "a switch with a value"
    run init "$T/never" --seed 00
    expect_error 2 "'00' is not 64 hex digits" "init --seed with too few digits"
    [[ ! -e "$T/never" ]] || fail "init --seed 00 created $T/never"
    run init "$T/never" --seed "$(printf 'g%.0s' {1..64})"
    expect_error 2 "is not 64 hex digits" "init --seed with a non-hex digit"
    run get
    expect_error 2 "missing DIR" "get without DIR"
    run get "$log"
    expect_error 2 "missing INDEX" "get without INDEX"
    run info "$log" extra
    expect_error 2 "unexpected argument 'extra'" "info with an extra argument"
    for idx in abc 1x '' 99999999999999999999999 +1 ' 1' 0x10; do
        run get "$log" "$idx"
        expect_error 2 "is not a block index" "get INDEX '$idx'"
    done
    run get "$log" -1
    expect_error 2 "unknown flag" "get -1"
    for b in 0 abc -5 16777217 1.5; do
        run_in "$T/seq.in" append "$log" --batch "$b"
        expect_error 2 "--batch" "append --batch $b"
    done
    run_in "$T/seq.in" append "$log" --batch
    expect_error 2 "needs a value" "append --batch without a value"
    run_in "$T/seq.in" append "$log" --format csv
    expect_error 2 "--format 'csv'" "append --format csv"
    run read "$log" --format xml
    expect_error 2 "--format 'xml'" "read --format xml"
    run read "$log" --from abc
    expect_error 2 "--from 'abc'" "read --from abc"
    run read "$log" --to -3
    expect_error 2 "--to '-3'" "read --to -3"
    run read "$log" --from 5 --to 3
    expect_error 2 "--from 5 is past --to 3" "read --from > --to"
    expect_unchanged "$log" "$before" "after the usage errors"
    # init: bad settings create nothing.
    for args in "--segment-bytes 1K" "--segment-bytes 65535" "--segment-bytes 2G" \
        "--segment-bytes 12X" "--segment-bytes -1" "--fsync sometimes" "--fsync interval:0" \
        "--fsync interval:" "--compression lz4" "--compression zstd:99" "--compression zstd:"; do
        # shellcheck disable=SC2086
        run init "$T/bad-init" $args
        expect_error 2 "${args%% *}" "init $args"
        check "init $args created $T/bad-init" [ ! -e "$T/bad-init" ]
    done
}

# ---------------------------------------------------------------- runtime errors (status 1)
# clone and serve: bad arguments and unreachable peers give one line, and change nothing
test_replication_errors() {
    local log=$T/lines before
    before=$(state "$log")
    run clone 127.0.0.1:1 abc "$T/rep"
    expect_error 2 "KEY: 'abc' is not 64 hex digits" "clone with a short key"
    run clone 127.0.0.1:1 "$(printf 'g%.0s' $(seq 64))" "$T/rep"
    expect_error 2 "is not 64 hex digits" "clone with a key that is not hex"
    run clone 127.0.0.1:1 "$(printf '0%.0s' $(seq 64))" "$T/rep" --fsync sometimes
    expect_error 2 "--fsync" "clone with a bad --fsync"
    run clone 127.0.0.1:1 "$(printf '0%.0s' $(seq 64))" "$T/rep"
    expect_error 1 "connecting to 127.0.0.1:1" "clone from a port nobody listens on"
    run clone nohost "$(printf '0%.0s' $(seq 64))" "$T/rep"
    expect_error 2 "'nohost' is not HOST:PORT" "clone from an address without a port"
    run clone 127.0.0.1:65536 "$(printf '0%.0s' $(seq 64))" "$T/rep"
    expect_error 2 "port 65536 is out of range" "clone from a port out of range"
    check "a failed clone created nothing" [ ! -e "$T/rep" ]
    run serve "$log"
    expect_error 2 "--listen HOST:PORT is required" "serve without --listen"
    run serve "$T/missing" --listen 127.0.0.1:0
    expect_error 1 "no such directory" "serve a missing directory"
    run serve "$log" "$log" --listen 127.0.0.1:0
    expect_error 2 "are the same core" "serve the same log twice"
    run serve "$log" --listen 127.0.0.1:99999
    expect_error 2 "port 99999 is out of range" "serve on a port out of range"
    run serve "$log" --listen 127.0.0.1:http
    expect_error 2 "is not HOST:PORT" "serve on a port that is not a number"
    assert_eq "$(state "$log")" "$before" "failed clone and serve commands left the log alone"
}

test_runtime_errors() {
    local log=$T/lines before
    before=$(state "$log")
    mkdir "$T/empty"
    for c in "info %s" "get %s 0" "read %s"; do
        # shellcheck disable=SC2086,SC2059
        run $(printf "$c" "$T/missing")
        expect_error 1 "no such directory" "$c on a missing directory"
        # shellcheck disable=SC2086,SC2059
        run $(printf "$c" "$T/empty")
        expect_error 1 "is not a kappalog log" "$c on a directory that is not a log"
    done
    run_in "$T/seq.in" append "$T/missing"
    expect_error 1 "no such directory" "append to a missing directory"
    check "append created a directory" [ ! -e "$T/missing" ]
    run_in "$T/seq.in" append "$T/empty"
    expect_error 1 "is not a kappalog log" "append to a directory that is not a log"
    run init "$log"
    expect_error 1 "already a kappalog log" "init on an existing log"
    echo hi >"$T/empty/file"
    run init "$T/empty"
    expect_error 1 "not empty" "init on a non-empty directory"
    run get "$log" 9
    expect_error 1 "block 9 is past the end \(length 9\)" "get past the end"
    run get "$log" 18446744073709551615
    expect_error 1 "past the end" "get of the largest index"
    run read "$log" --from 10
    expect_error 1 "--from 10 is past the end \(length 9\)" "read --from past the end"
    expect_unchanged "$log" "$before" "after the runtime errors"
}

# ---------------------------------------------------------------- malformed input
# mk_good: three valid len32 records ("abc", "", "de"), 17 bytes.
mk_good() {
    le32 3
    printf 'abc'
    le32 0
    le32 2
    printf 'de'
}
test_malformed_input() {
    local log=$T/bad
    run init "$log" --fsync never
    printf 'one\ntwo\n' | "$K" append "$log"
    # Truncated length prefix: 2 of 4 bytes.
    { mk_good; printf '\001\000'; } >"$T/bad1"
    run_in "$T/bad1" append "$log" --format len32
    local three='\(3 records appended before it\)$'
    local prefix='truncated length prefix \(2 of 4 bytes\)'
    expect_error 1 "append: malformed len32 input at byte 17: $prefix $three" "truncated prefix"
    # Truncated payload: length 10, 4 bytes present.
    { mk_good; le32 10; printf 'wxyz'; } >"$T/bad2"
    run_in "$T/bad2" append "$log" --format len32
    expect_error 1 \
        "malformed len32 input at byte 17: truncated record \(length 10, 4 bytes present\) $three" \
        "truncated payload"
    # Oversized lengths; the valid record after them is not appended.
    { mk_good; printf '\377\377\377\377'; le32 1; printf 'z'; } >"$T/bad3"
    run_in "$T/bad3" append "$log" --format len32
    expect_error 1 "at byte 17: length 4294967295 exceeds the 67108864-byte block limit $three" \
        "length 2^32-1"
    { mk_good; le32 67108865; le32 1; printf 'z'; } >"$T/bad4"
    run_in "$T/bad4" append "$log" --format len32
    expect_error 1 "at byte 17: length 67108865 exceeds" "length 64 MiB + 1"
    # Malformed from the first byte: nothing appended.
    printf '\001\000\000' >"$T/bad5"
    run_in "$T/bad5" append "$log" --format len32
    expect_error 1 "at byte 0: truncated length prefix \(3 of 4 bytes\) \(0 records appended" \
        "nothing before the bad point"
    # The complete records before each bad point were appended, once each; nothing after.
    assert_eq "$(length "$log")" $((2 + 4 * 3)) "malformed: only the complete records were appended"
    run read "$log" --format len32 --from 2
    {
        for _ in 1 2 3 4; do mk_good; done
    } >"$T/bad.expect"
    assert_same_file "$T/out" "$T/bad.expect" "malformed: the records before the bad point"
    run read "$log" --to 2
    assert_eq "$(cat "$T/out")" "$(printf 'one\ntwo')" "malformed: committed data untouched"
    # --acks shows what was committed before the failure.
    run_in "$T/bad2" append "$log" --format len32 --acks
    assert_eq "$STATUS" 1 "malformed with --acks: exit status"
    assert_eq "$(cat "$T/out")" 17 "malformed with --acks: the records before it are acknowledged"
    # A line longer than a block may be.
    local before
    before=$(state "$log")
    { printf 'ok\n'; head -c 67108865 /dev/zero | tr '\0' 'x'; printf '\nnever\n'; } >"$T/bad6"
    run_in "$T/bad6" append "$log"
    local limit='line longer than the 67108864-byte block limit'
    expect_error 1 "malformed lines input at byte 3: $limit \(1 records appended before it\)$" \
        "a line over 64 MiB"
    assert_eq "$(length "$log")" 18 "over-long line: the line before it was appended"
    rm -f "$T/bad6"
    # stdin that cannot be read (a directory): a clear error, nothing appended
    run_in "$T" append "$log"
    expect_error 1 "append: reading stdin: Is a directory \(0 records appended before it\)$" \
        "unreadable stdin"
    assert_eq "$(length "$log")" 18 "unreadable stdin: nothing appended"
}

# ---------------------------------------------------------------- one atomic append's limit
# big_lines: exactly KL_MAX_APPEND_BYTES (256 MiB) of lines input, streamed, never
# stored: four lines of 64 MiB - 1 bytes (a, b, c, d), each with its '\n'. A line is
# one block of at most KL_MAX_BLOCK_BYTES (64 MiB) without its '\n', so the blocks
# are legal; 64 MiB blocks in len32 would be 4 bytes each over, with their prefixes.
big_lines() {
    local c
    for c in a b c d; do
        head -c $((64 * 1024 * 1024 - 1)) /dev/zero | tr '\0' "$c"
        printf '\n'
    done
}
test_expect_length_limit() {
    local log=$T/limit max=$((256 * 1024 * 1024)) block=$((64 * 1024 * 1024 - 1)) before
    run init "$log" --fsync never
    before=$(state "$log")
    # One byte more than one append may hold: refused, nothing appended.
    run_in <(big_lines && printf 'e') append "$log" --expect-length 0
    local why="larger than one atomic append can be \\($max bytes\\); nothing was appended$"
    expect_error 1 "append: --expect-length: the input is $why" \
        "--expect-length with 256 MiB + 1 bytes of input"
    expect_unchanged "$log" "$before" "input over the limit"
    # Exactly the limit: appended, as one batch of four blocks.
    run_in <(big_lines) append "$log" --expect-length 0 --acks
    assert_eq "$STATUS" 0 "--expect-length with exactly 256 MiB of input (stderr: $(cat "$T/err"))"
    assert_eq "$(cat "$T/out")" 4 "256 MiB input: the ack is the new length"
    run info "$log" --json
    check "256 MiB input: byte_length $((4 * block)): $(head -c 40 "$T/out")" \
        grep -q "\"byte_length\":$((4 * block))," "$T/out"
    assert_eq "$("$K" get "$log" 3 | cksum)" "$(head -c "$block" /dev/zero | tr '\0' d | cksum)" \
        "256 MiB input: the last block"
    rm -rf "$log"
}

# ---------------------------------------------------------------- a million lines
test_million_lines() {
    local log=$T/million
    run init "$log" --fsync never
    seq 1 1000000 >"$T/million.in"
    "$K" append "$log" --batch 1000 --progress <"$T/million.in" >"$T/out" 2>"$T/err"
    assert_eq "$?" 0 "append 1M lines"
    local summary
    summary=$(tail -n 1 "$T/err")
    local want='^appended 1000000 records \(5888896 bytes\) in [0-9.]+ s: '
    want+='[0-9]+ records/s, [0-9.]+ MB/s$'
    check "1M lines: summary line: $summary" grep -qE "$want" <<<"$summary"
    echo "    1M lines, --fsync never, --batch 1000: $summary"
    assert_eq "$(length "$log")" 1000000 "1M lines: length"
    run read "$log"
    assert_same_file "$T/out" "$T/million.in" "1M lines: read back"
    run read "$log" --format json --from 999999
    assert_eq "$(grep -oE '"data":"[0-9]+"' "$T/out")" '"data":"1000000"' "1M lines: last as json"
}

# ---------------------------------------------------------------- the signed core
# json_field NAME: the value of "NAME" in the one-line JSON object in $T/out (strings unquoted).
json_field() {
    grep -oE "\"$1\":(\"[^\"]*\"|[0-9]+)" "$T/out" | head -n 1 | cut -d: -f2- | tr -d '"'
}
# signed_state LOG: its length, fork, tree hash and signature, and every block.
signed_state() {
    run info "$1" --json
    echo "$(json_field length) $(json_field fork) $(json_field tree_hash) $(json_field signature)"
    "$K" read "$1" --format len32 | cksum
}
# flip_byte FILE OFFSET: xor the byte at OFFSET with 0x01.
flip_byte() {
    local b
    b=$(od -An -tu1 -j "$2" -N 1 "$1" | tr -d ' ')
    # shellcheck disable=SC2059 # the format is the escape being made
    printf "$(printf '\\%03o' $((b ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
test_signed_core() {
    local log=$T/core seed5 before
    seed5=$(printf '05%.0s' {1..32})
    # info --json: the keys, the tree hash and the signature as hex of their sizes.
    run init "$log" --seed "$seed5" --segment-bytes 64K
    expect_ok "init --seed"
    seq 1 2000 >"$T/core.in"
    run_in "$T/core.in" append "$log" --batch 7
    expect_ok "append to the seeded log"
    run info "$log" --json
    expect_ok "info --json of a signed core"
    local k n
    for k in key:64 discovery_key:64 public_key:64 tree_hash:64 signature:136; do
        n=$(json_field "${k%%:*}" | tr -d '0-9a-f' | wc -c)
        assert_eq "$n" 1 "info --json ${k%%:*} is lowercase hex"
        assert_eq "$(json_field "${k%%:*}" | tr -d '\n' | wc -c)" "${k##*:}" \
            "info --json ${k%%:*} has ${k##*:} hex digits"
    done
    assert_eq "$(json_field core)" default "info --json core of a default core"
    assert_eq "$(json_field writable)" yes "info --json writable with the secret"
    # The seed makes Hypercore's keys (tests/data/hypercore/fork.json has seed 32 x 05).
    local vec=${KL_TEST_DATA:-}/hypercore/fork.json
    if [ -f "$vec" ]; then
        for k in public_key key discovery_key; do
            assert_eq "$(json_field "$k")" \
                "$(grep -oE "^ \"$k\": \"[0-9a-f]+\"" "$vec" | cut -d'"' -f4)" \
                "init --seed: $k is hypercore's"
        done
    fi
    run init "$T/compat" --compat
    run info "$T/compat" --json
    assert_eq "$(json_field signature | tr -d '\n' | wc -c)" 128 "compat: a raw signature"
    assert_eq "$(json_field core)" compat "info --json core of a compat core"
    assert_eq "$(json_field key)" "$(json_field public_key)" "compat: the key is the public key"
    run init "$T/never" --seed "${seed5}0"
    expect_error 2 "is not 64 hex digits" "init --seed with 65 digits"
    check "init --seed with 65 digits created nothing" [ ! -e "$T/never" ]
    # verify: an intact log, a damaged one.
    run verify "$log"
    expect_ok "verify an intact log"
    check "verify: $(cat "$T/out")" grep -qE \
        ': 2000 blocks \([0-9]+ bytes\), fork 0: every block, tree node and the signature hold' \
        "$T/out"
    cp -R "$log" "$T/core-bad"
    # the tree file's first node is node 15, over blocks 0..15 (docs/FORMAT.md, "tree"); the
    # second is node 47, over blocks 16..31
    flip_byte "$T/core-bad/tree" $((64 + 40 + 3))
    run verify "$T/core-bad"
    expect_error 1 "first bad block 16: blocks 16..31 do not match the tree: node 47" \
        "verify a log with a damaged tree node"
    # --repair: the node is rebuilt from the blocks, and the file is the intact one again;
    # zeroed nodes are refused by a proof, then rebuilt; a damaged block stops the repair
    run verify "$T/core-bad" --repair
    expect_ok "verify --repair of a damaged tree node"
    check "verify --repair: $(cat "$T/out")" grep -q \
        'rebuilt 1 tree node from the blocks, which make the signed tree' "$T/out"
    check "verify --repair then verified" grep -q 'every block, tree node and the signature hold' \
        "$T/out"
    check "verify --repair: the tree file is the intact one" cmp -s "$log/tree" "$T/core-bad/tree"
    # every node zeroed (the file keeps its 64-byte header, then 40-byte nodes)
    nodes=$((($(stat -c %s "$T/core-bad/tree") - 64) / 40))
    dd if=/dev/zero of="$T/core-bad/tree" bs=8 seek=8 count=$((nodes * 5)) conv=notrunc \
        2>/dev/null
    run proof "$T/core-bad" --upgrade 0:2000
    expect_error 1 "is all zeros: lost, or not written yet .damage: .kappalog verify --repair. rebuilds" \
        "a proof over zeroed tree nodes"
    run verify "$T/core-bad" --repair
    expect_ok "verify --repair of zeroed nodes"
    check "verify --repair: $(cat "$T/out")" grep -q "rebuilt $nodes tree nodes" "$T/out"
    run verify "$T/core-bad" --repair
    check "verify --repair again: $(cat "$T/out")" grep -q 'the tree file held; nothing to rebuild' \
        "$T/out"
    flip_byte "$T/core-bad/segments/00000000000000000000.log" 200
    dd if=/dev/zero of="$T/core-bad/tree" bs=8 seek=8 count=5 conv=notrunc 2>/dev/null
    cp "$T/core-bad/tree" "$T/core-bad.tree"
    run verify "$T/core-bad" --repair
    expect_error 1 "the tree file cannot be rebuilt from the blocks: .*checksum" \
        "verify --repair over a damaged block"
    check "verify --repair over a damaged block left the tree file" \
        cmp -s "$T/core-bad/tree" "$T/core-bad.tree"
    # truncate: refusals change nothing.
    before=$(signed_state "$log")
    run truncate "$log" 2001
    expect_error 2 "cannot truncate .* to 2001 blocks: it has 2000" "truncate past the length"
    run truncate "$log" abc
    expect_error 2 "LENGTH 'abc' is not a number of blocks" "truncate abc"
    run truncate "$log"
    expect_error 2 "missing LENGTH" "truncate without LENGTH"
    assert_eq "$(signed_state "$log")" "$before" "refused truncations: the log is unchanged"
    # No usable secret: truncate and append refuse (exit 1, the reason), nothing changes.
    printf 'x\n' >"$T/x.in"
    mv "$log/secret" "$T/core.secret"
    run truncate "$log" 3
    expect_error 1 "secret is missing" "truncate without the secret"
    run_in "$T/x.in" append "$log"
    expect_error 1 "cannot append .*secret is missing" "append without the secret"
    run info "$log" --json
    check "info --json: not writable without the secret" grep -qF '"writable":"no' "$T/out"
    head -c 63 "$T/core.secret" >"$log/secret"
    run_in "$T/x.in" append "$log"
    expect_error 1 "secret is not a secret key \(63 bytes, not 64\)" "append, a 63-byte secret"
    run init "$T/other"
    cp "$T/other/secret" "$log/secret"
    run_in "$T/x.in" append "$log"
    expect_error 1 "not the secret key of this log" "append with another log's secret"
    run truncate "$log" 3
    expect_error 1 "not the secret key of this log" "truncate with another log's secret"
    assert_eq "$(signed_state "$log")" "$before" "no usable secret: the log is unchanged"
    # A secret others can read still signs, with a warning from append.
    cp "$T/core.secret" "$log/secret"
    chmod 0644 "$log/secret"
    run info "$log" --json
    assert_eq "$(json_field writable)" yes "info --json writable with a 0644 secret"
    run_in "$T/x.in" append "$log"
    assert_eq "$STATUS" 0 "append with a 0644 secret"
    check "append warns about a 0644 secret: $(cat "$T/err")" \
        grep -qE '^kappalog: warning: .*secret is readable by other users' "$T/err"
    chmod 0600 "$log/secret"
    run_in "$T/x.in" append "$log"
    expect_ok "append with a 0600 secret: no warning"
    # truncate: a new fork, the first LENGTH blocks, verified.
    run truncate "$log" 1500
    expect_ok "truncate to 1500"
    run info "$log" --json
    assert_eq "$(json_field length) $(json_field fork)" "1500 1" "truncate: length and fork"
    run read "$log"
    assert_same_file "$T/out" <(seq 1 1500) "truncate: the first 1500 blocks"
    run verify "$log"
    expect_ok "verify after truncate"
    run truncate "$log" 1500
    expect_ok "truncate to the length"
    run info "$log" --json
    assert_eq "$(json_field length) $(json_field fork)" "1500 2" "truncate to the length: fork"
}

# proof: what a Hypercore peer would get; bad requests are clear errors that change nothing.
test_proof_cli() {
    local log="$T/proof" before
    "$K" init "$log" --seed "$(printf '06%.0s' {1..32})" >/dev/null
    seq 1 11 | "$K" append "$log" --batch 1 >/dev/null
    before=$(state "$log")
    run proof "$log" --upgrade 0:11 --manifest
    expect_ok "proof --upgrade 0:11"
    assert_eq "$(wc -l <"$T/out")" 1 "proof --upgrade 0:11: one line"
    check "proof --upgrade 0:11 prints hex" grep -qxE '([0-9a-f]{2})+' "$T/out"
    run proof "$log" --block 3 --upgrade 0:11
    expect_ok "proof --block 3 --upgrade 0:11"
    run proof "$log" --block 5 --nodes 3
    expect_ok "proof --block 5 --nodes 3"
    run proof "$log"
    expect_error 2 "ask for a --block, an --upgrade, or both" "proof without a request"
    run proof "$log" --nodes 2
    expect_error 2 "--nodes needs --block" "proof --nodes alone"
    run proof "$log" --block x
    expect_error 2 "--block: 'x' is not a block index" "proof --block x"
    run proof "$log" --upgrade 5
    expect_error 2 "--upgrade: '5' is not START:LENGTH" "proof --upgrade without a colon"
    run proof "$log" --upgrade :3
    expect_error 2 "is not START:LENGTH" "proof --upgrade without START"
    run proof "$log" --block 11 --upgrade 0:11
    expect_error 2 "" "proof of a block past the length"
    run proof "$log" --upgrade 0:12
    expect_error 2 "" "proof of an upgrade past the length"
    run proof "$log" --block 5 --nodes 40
    expect_error 2 "" "proof with more path levels than the block has"
    run proof "$T/nothing-here" --upgrade 0:1
    expect_error 1 "no such directory" "proof of a missing log"
    expect_unchanged "$log" "$before" "bad proof requests"
}

test_help
test_init_info
test_lines_round_trip
test_len32_round_trip
test_json
test_acks
test_acks_survive_kill
test_readers_beside_writer
test_epipe
test_usage_errors
test_runtime_errors
test_replication_errors
test_malformed_input
test_expect_length_limit
test_million_lines
test_signed_core
test_proof_cli

echo "test_cli.sh: $CHECKS checks passed, $FAILS failed"
[ "$FAILS" -eq 0 ]
