#!/usr/bin/env bash
# test_hc_wire_live.sh - kappalog's replication layers against a live
# JavaScript Hypercore server (hypercore 11.37.1 through Node, over TCP on
# 127.0.0.1): tests/tool_hcpeer connects as the Noise initiator, runs the
# handshake, the secret stream and Protomux (replication/session.c), opens
# the core's channel with its capability, syncs as a new clone, asks for
# the upgrade from 0 (with the manifest for a default core) and verifies
# the data message it gets (engine/proof.c). For each core:
#   - the JS server is tests/js/peer/serve.mjs (the team's peer script);
#   - what the tool verified (length, tree hash, stored signature, the
#     public key learned from the manifest) must equal what the JS server
#     reports about its core, and what kappalog itself makes of the same
#     seed and blocks (`kappalog init --seed`, `append`, `info --json`);
#   - the server's range message must announce the whole core.
# Cores: 3 one-byte blocks (default), the same as a compat core, and 2,000
# lines of random length in one append. And a core the server does not
# have: the tool must report the channel rejected and fail.
#
# Environment: KAPPALOG, KL_BUILD_DIR, KL_SOURCE_DIR (set by ctest).

set -u
set -o pipefail
export LC_ALL=C
export KL_QUIET=1
: "${KAPPALOG:?set KAPPALOG to the kappalog binary}"
: "${KL_SOURCE_DIR:?set KL_SOURCE_DIR to the source tree}"
: "${KL_BUILD_DIR:?set KL_BUILD_DIR to the build tree}"
K=$KAPPALOG
TOOL="$KL_BUILD_DIR/tests/tool_hcpeer"
PEER="$KL_SOURCE_DIR/tests/js/peer/serve.mjs"

die() {
    echo "FAIL: $*" >&2
    exit 1
}
[ -x "$TOOL" ] || die "$TOOL is not built"
T=$(mktemp -d "${TMPDIR:-/tmp}/kappalog-hc-wire.XXXXXX") || exit 1
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

# shellcheck source=tests/hc_js.sh
. "$KL_SOURCE_DIR/tests/hc_js.sh"
hc_js_install

# serve NAME SEEDHEX BLOCKS_FILE [--compat]: start the JS server; sets PORT, JS_KEY
serve() {
    local name=$1 seed=$2 file=$3
    shift 3
    node "$PEER" --seed "$seed" --blocks-file "$file" "$@" >"$T/$name.out" 2>"$T/$name.err" &
    SERVER_PID=$!
    for _ in $(seq 1 200); do
        grep -q '^ready$' "$T/$name.out" 2>/dev/null && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    grep -q '^ready$' "$T/$name.out" || {
        cat "$T/$name.err" >&2
        die "$name: the JS server did not start"
    }
    JS_KEY=$(head -n 1 "$T/$name.out")
    PORT=$(sed -n 's/.*"listen":"\([^"]*\)".*/\1/p' "$T/$name.err" | head -n 1)
    [ -n "$PORT" ] || die "$name: no listen address from the JS server"
}

stop() {
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
}

# field JSON NAME: the value of a string or number field of a one-line JSON object
field() {
    sed -n "s/.*\"$2\":\"\\{0,1\\}\\([0-9a-f]*\\)\"\\{0,1\\}[,}].*/\\1/p" <<<"$1"
}

CASES=0
check_core() {
    local name=$1 seed=$2 file=$3 compat=${4:-}
    serve "$name" "$seed" "$file" $compat
    local got js
    got=$("$TOOL" "$PORT" "$JS_KEY" $compat --timeout 20 2>"$T/$name.tool.err") || {
        cat "$T/$name.tool.err" "$T/$name.err" >&2
        die "$name: the kappalog client failed against the JS server"
    }
    js=$(grep '"listen"' "$T/$name.err" | head -n 1)
    stop
    # what kappalog makes of the same seed and blocks
    "$K" init "$T/$name.log" --seed "$seed" $compat --fsync never >/dev/null ||
        die "$name: kappalog init"
    "$K" append "$T/$name.log" <"$file" >/dev/null || die "$name: kappalog append"
    local own
    own=$("$K" info "$T/$name.log" --json | tr -d ' \n') || die "$name: kappalog info"
    for f in length tree_hash signature public_key; do
        local a b c
        a=$(field "$got" "$f")
        b=$(field "$js" "$f")
        c=$(field "$own" "$f")
        [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" = "$c" ] ||
            die "$name: $f: verified over the wire '$a', the JS server '$b', kappalog '$c'"
    done
    [ "$(field "$got" range)" = "$(field "$got" length)" ] ||
        die "$name: the server announced range $(field "$got" range) of $(field "$got" length)"
    CASES=$((CASES + 1))
}

printf 'a\nb\nc\n' >"$T/abc.txt"
check_core abc 0101010101010101010101010101010101010101010101010101010101010101 "$T/abc.txt"
check_core abc-compat 0404040404040404040404040404040404040404040404040404040404040404 \
    "$T/abc.txt" --compat
awk 'BEGIN { srand(7); for (i = 0; i < 2000; i++) { n = 1 + int(rand() * 300); s = ""; for (j = 0; j < n; j++) s = s sprintf("%c", 97 + int(rand() * 26)); print s } }' \
    >"$T/lines.txt"
check_core lines 0909090909090909090909090909090909090909090909090909090909090909 "$T/lines.txt"

# a core the server does not hold: rejected, and the client says so
serve missing 0101010101010101010101010101010101010101010101010101010101010101 "$T/abc.txt"
if "$TOOL" "$PORT" 0000000000000000000000000000000000000000000000000000000000000001 \
    --timeout 10 >/dev/null 2>"$T/missing.tool.err"; then
    die "missing: the client succeeded for a core the server does not have"
fi
grep -q "rejected" "$T/missing.tool.err" || {
    cat "$T/missing.tool.err" >&2
    die "missing: the client did not report the rejected channel"
}
stop

echo "test_hc_wire_live: $CASES cores verified over the wire against hypercore 11.37.1, and a missing core rejected"
