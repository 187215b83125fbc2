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
# lines of random length in one append. Then `kappalog clone` of JS cores
# (default, compat, and 10,000 blocks of mixed sizes with empty blocks and
# one of 1 MiB, and 400 blocks of 64 KiB, more than JS would answer in one
# 4 MiB frame were they all asked for at once): the replica's blocks, key, tree hash and signature equal
# the JS core's, and `kappalog verify` passes on it; and `clone --follow`
# against a JS core that keeps appending must show each new block within a
# second, take the JS writer's truncation (a new fork) and the appends after
# it, then end cleanly on SIGINT with a replica that verifies. Then `kappalog serve` of kappalog
# logs (default, compat, the mixed 10,000-block one, and the replica of the
# JS mixed core: a replica can itself be served): the JS
# tests/js/peer/clone.mjs clones each and verifies every block and the
# signature with its own code (its blocks, tree hash, signature and key
# equal the log's), `kappalog clone` of the same server gives the same
# blocks, and the JS follow.mjs sees each append a kappalog writer makes in
# another process within a second; when the writer truncates the log and
# appends past the old length, the JS follower sees the new fork and
# follows it (verified). And a core the server does not have:
# the tool must report the channel rejected and fail.
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
    [ -n "${SERVE_PID:-}" ] && kill "$SERVE_PID" 2>/dev/null
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

# `kappalog clone` of a JS core: the replica's blocks, key, tree hash and
# signature are the JS core's, and `kappalog verify` passes on it.
clone_core() {
    local name=$1 seed=$2 file=$3 format=$4
    shift 4
    serve "$name" "$seed" "$file" --format "$format" "$@"
    local js rep="$T/$name.replica"
    js=$(grep '"listen"' "$T/$name.err" | head -n 1)
    "$K" clone "$PORT" "$JS_KEY" "$rep" --fsync never 2>"$T/$name.clone.err" || {
        cat "$T/$name.clone.err" >&2
        die "$name: kappalog clone failed"
    }
    stop
    "$K" read "$rep" --format "$format" | cmp -s - "$file" ||
        die "$name: the replica's blocks are not the JS core's"
    local own
    own=$("$K" info "$rep" --json | tr -d ' \n')
    for f in key length byte_length tree_hash signature public_key; do
        [ -n "$(field "$own" "$f")" ] && [ "$(field "$own" "$f")" = "$(field "$js" "$f")" ] ||
            die "$name: $f: the replica has '$(field "$own" "$f")', the JS core '$(field "$js" "$f")'"
    done
    "$K" verify "$rep" >/dev/null 2>"$T/$name.verify.err" || {
        cat "$T/$name.verify.err" >&2
        die "$name: kappalog verify fails on the replica"
    }
    CASES=$((CASES + 1))
}

clone_core abc-clone 0101010101010101010101010101010101010101010101010101010101010101 \
    "$T/abc.txt" lines
clone_core abc-compat-clone 0404040404040404040404040404040404040404040404040404040404040404 \
    "$T/abc.txt" lines --compat
# 10,000 blocks of mixed sizes, some empty, one of 1 MiB, as len32
node -e '
let seed = 12345
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648
const parts = []
for (let i = 0; i < 10000; i++) {
  const n = i === 4321 ? 1 << 20 : (i % 97 === 0 ? 0 : Math.floor(rnd() * 2000))
  const h = Buffer.alloc(4); h.writeUInt32LE(n)
  const b = Buffer.alloc(n); for (let k = 0; k < n; k++) b[k] = Math.floor(rnd() * 256)
  parts.push(h, b)
}
process.stdout.write(Buffer.concat(parts))' >"$T/mixed.len32" || die "cannot make the mixed core"
clone_core mixed-clone 0505050505050505050505050505050505050505050505050505050505050505 \
    "$T/mixed.len32" len32
# 400 blocks of 64 KiB: JS answers the requests it holds in one corked batch (protomux
# sends up to 8 MiB in a frame); the clone asks for no more than fits in one 4 MiB frame
node -e '
const crypto = require("crypto")
const parts = []
for (let i = 0; i < 400; i++) {
  const h = Buffer.alloc(4); h.writeUInt32LE(65536)
  parts.push(h, crypto.randomBytes(65536))
}
process.stdout.write(Buffer.concat(parts))' >"$T/big.len32" || die "cannot make the big core"
clone_core big-clone 0606060606060606060606060606060606060606060606060606060606060606 \
    "$T/big.len32" len32

# live: `kappalog clone --follow` sees each new JS append within a second, and a truncation
mkfifo "$T/feed"
node "$PEER" --seed 0606060606060606060606060606060606060606060606060606060606060606 \
    --blocks-file "$T/abc.txt" --append-stdin <"$T/feed" >"$T/live.out" 2>"$T/live.err" &
SERVER_PID=$!
exec 7>"$T/feed"
for _ in $(seq 1 200); do grep -q '^ready$' "$T/live.out" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/.*"listen":"\([^"]*\)".*/\1/p' "$T/live.err" | head -n 1)
"$K" clone "$PORT" "$(head -n 1 "$T/live.out")" "$T/live.replica" --follow --fsync never \
    2>"$T/live.clone.err" &
CLONE_PID=$!
length_of() { "$K" info "$1" --json 2>/dev/null | tr -d ' \n' | sed -n 's/.*"length":\([0-9]*\).*/\1/p'; }
for want in 3 4 5 6; do
    [ "$want" -gt 3 ] && echo "live-$want" >&7
    ok=0
    for _ in $(seq 1 50); do # 50 x 20 ms: one second
        [ "$(length_of "$T/live.replica")" = "$want" ] && ok=1 && break
        sleep 0.02
    done
    [ $ok = 1 ] || {
        cat "$T/live.clone.err" >&2
        die "live: the replica did not reach length $want within a second of the append"
    }
done
# the JS writer truncates to 4 blocks and appends 2: the follower takes the new fork
printf '!truncate 4\nlive-7\nlive-8\n' >&7
ok=0
for _ in $(seq 1 100); do # 100 x 20 ms: two seconds
    info=$("$K" info "$T/live.replica" --json 2>/dev/null | tr -d ' \n')
    case $info in *'"length":6,'*'"fork":1,'*) ok=1 && break ;; esac
    sleep 0.02
done
[ $ok = 1 ] || {
    cat "$T/live.clone.err" >&2
    die "live: the follower did not take the JS core's truncation (length 6, fork 1): $info"
}
# a burst of appends while it follows: blocks are asked for against one signed length and
# proved after the next upgrade (the clone must keep what the older states proved)
seq 1 3000 | awk '{ print "burst-" $1 }' >&7
ok=0
for _ in $(seq 1 600); do # 600 x 50 ms: 30 seconds
    [ "$(length_of "$T/live.replica")" = 3006 ] && ok=1 && break
    kill -0 "$CLONE_PID" 2>/dev/null || break
    sleep 0.05
done
[ $ok = 1 ] || {
    cat "$T/live.clone.err" >&2
    die "live: the follower stopped at length $(length_of "$T/live.replica") of 3006 during a burst of appends"
}
kill -INT "$CLONE_PID"
wait "$CLONE_PID" || die "live: kappalog clone --follow did not end cleanly on SIGINT"
exec 7>&-
stop
"$K" read "$T/live.replica" --to 6 | tr '\n' ' ' | grep -q '^a b c live-4 live-7 live-8 $' ||
    die "live: the replica's blocks are $("$K" read "$T/live.replica" --to 6 | tr '\n' ' ')"
[ "$("$K" read "$T/live.replica" --from 6 | tr '\n' ' ')" = "$(seq 1 3000 | awk '{ printf "burst-%d ", $1 }')" ] ||
    die "live: the burst's blocks in the replica are not the ones appended"
"$K" verify "$T/live.replica" >/dev/null || die "live: the replica does not verify after the truncation"
CASES=$((CASES + 1))

# `kappalog serve`: a JavaScript hypercore clones kappalog logs (default,
# compat, the mixed 10,000-block one) and verifies every block and the
# signature with its own code; `kappalog clone` of the same served logs
# gives the same blocks; a JS follower sees each new append by a kappalog
# writer in another process within a second.
SERVE_PID=
start_kappalog_serve() {
    "$K" serve "$@" --listen 127.0.0.1:0 --quiet >"$T/kserve.out" 2>"$T/kserve.err" &
    SERVE_PID=$!
    for _ in $(seq 1 100); do
        [ "$(grep -c '^key ' "$T/kserve.out" 2>/dev/null)" -ge $# ] && break
        sleep 0.05
    done
    KPORT=$(sed -n 's/^listening on //p' "$T/kserve.out")
    [ -n "$KPORT" ] || {
        cat "$T/kserve.err" >&2
        die "kappalog serve did not start"
    }
}
key_of() { awk -v d="$1" '$1 == "key" && $3 == d { print $2 }' "$T/kserve.out"; }

"$K" init "$T/k-lines" --fsync never --seed 0707070707070707070707070707070707070707070707070707070707070707 >/dev/null
"$K" append "$T/k-lines" <"$T/lines.txt" >/dev/null
"$K" init "$T/k-compat" --compat --seed 0808080808080808080808080808080808080808080808080808080808080808 >/dev/null
"$K" append "$T/k-compat" <"$T/abc.txt" >/dev/null
"$K" init "$T/k-mixed" --fsync never >/dev/null
"$K" append "$T/k-mixed" --format len32 --batch 500 <"$T/mixed.len32" >/dev/null
# the replica cloned from the JS mixed core above is served too: a replica can itself be served
start_kappalog_serve "$T/k-lines" "$T/k-compat" "$T/k-mixed" "$T/mixed-clone.replica"
for spec in "k-lines lines $T/lines.txt" "k-compat lines $T/abc.txt" "k-mixed len32 $T/mixed.len32" \
    "mixed-clone.replica len32 $T/mixed.len32"; do
    read -r name format file <<<"$spec"
    key=$(key_of "$T/$name")
    want=$("$K" info "$T/$name" --json | tr -d ' \n')
    node "$KL_SOURCE_DIR/tests/js/peer/clone.mjs" "$KPORT" "$key" \
        --expect-length "$(field "$want" length)" --timeout 60 --out "$T/$name.js-out" \
        --out-format "$format" >"$T/$name.js.json" 2>"$T/$name.js.err" || {
        cat "$T/$name.js.err" "$T/kserve.err" >&2
        die "$name: the JavaScript hypercore could not clone it from kappalog serve"
    }
    cmp -s "$T/$name.js-out" "$file" || die "$name: the JS clone's blocks differ from the log's"
    js=$(tr -d ' \n' <"$T/$name.js.json")
    for c in tree_hash_recomputed signature_verified length_ok; do
        grep -q "\"$c\":true" <<<"$js" || die "$name: the JS clone reports $c false"
    done
    for f in length tree_hash signature public_key; do
        [ "$(field "$js" "$f")" = "$(field "$want" "$f")" ] ||
            die "$name: $f: JS cloned '$(field "$js" "$f")', the log has '$(field "$want" "$f")'"
    done
    "$K" clone "$KPORT" "$key" "$T/$name.c-clone" --fsync never 2>"$T/$name.c.err" || {
        cat "$T/$name.c.err" >&2
        die "$name: kappalog clone from kappalog serve failed"
    }
    "$K" read "$T/$name.c-clone" --format "$format" | cmp -s - "$file" ||
        die "$name: kappalog's clone of kappalog serve differs"
    CASES=$((CASES + 2))
done
# live: a JS follower of kappalog serve, while kappalog appends in another process
key=$(key_of "$T/k-lines")
base=$(field "$("$K" info "$T/k-lines" --json | tr -d ' \n')" length)
node "$KL_SOURCE_DIR/tests/js/peer/follow.mjs" "$KPORT" "$key" --until-length $((base + 3)) \
    --timeout 30 >"$T/follow.out" 2>"$T/follow.err" &
FOLLOW_PID=$!
for _ in $(seq 1 200); do grep -q "\"length\":$base" "$T/follow.out" 2>/dev/null && break; sleep 0.05; done
for i in 1 2 3; do
    echo "appended-$i" | "$K" append "$T/k-lines" >/dev/null
    ok=0
    for _ in $(seq 1 50); do
        grep -q "\"length\":$((base + i))," "$T/follow.out" && ok=1 && break
        sleep 0.02
    done
    [ $ok = 1 ] || {
        cat "$T/follow.err" "$T/kserve.err" >&2
        die "follow: the JS follower did not see length $((base + i)) within a second"
    }
done
wait "$FOLLOW_PID" || die "follow: the JS follower failed"
CASES=$((CASES + 1))
# live truncation: kappalog truncates the served log by 5 blocks and appends 6; the JS
# follower sees the new fork (its hash requests find the fork point) and follows on to
# the new length, with every block verified against the new signed tree
len=$((base + 3))
node "$KL_SOURCE_DIR/tests/js/peer/follow.mjs" "$KPORT" "$key" --until-length $((len + 1)) \
    --timeout 30 >"$T/reorg.out" 2>"$T/reorg.err" &
FOLLOW_PID=$!
for _ in $(seq 1 200); do grep -q "\"length\":$len," "$T/reorg.out" 2>/dev/null && break; sleep 0.05; done
grep -q "\"length\":$len," "$T/reorg.out" || die "truncate: the JS follower did not reach length $len"
"$K" truncate "$T/k-lines" $((len - 5)) >/dev/null || die "truncate: kappalog truncate failed"
for i in 1 2 3 4 5 6; do echo "after-fork-$i" | "$K" append "$T/k-lines" >/dev/null; done
wait "$FOLLOW_PID" || {
    cat "$T/reorg.err" "$T/kserve.err" >&2
    die "truncate: the JS follower did not follow the truncated log to length $((len + 1))"
}
# JS finds the fork point by asking for tree hashes: the ancestor it reports is a subtree
# boundary at or below the length truncated to
ancestor=$(sed -n 's/^{"truncated":\([0-9]*\),"fork":1}$/\1/p' "$T/reorg.out")
[ -n "$ancestor" ] && [ "$ancestor" -le $((len - 5)) ] ||
    die "truncate: the JS follower did not see the truncation to $((len - 5)) (fork 1): $(cat "$T/reorg.out")"
grep -q "\"length\":$((len + 1)),\"fork\":1," "$T/reorg.out" ||
    die "truncate: the JS follower did not reach length $((len + 1)) at fork 1: $(cat "$T/reorg.out")"
kill -INT "$SERVE_PID"
wait "$SERVE_PID" || die "kappalog serve did not end cleanly on SIGINT"
SERVE_PID=
CASES=$((CASES + 1))

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

echo "test_hc_wire_live: $CASES cases against hypercore 11.37.1 (upgrades verified; kappalog clones of JS cores and JS clones of kappalog serve equal their sources; live follow both ways, a truncation followed by JS), and a missing core rejected"
