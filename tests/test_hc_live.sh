#!/usr/bin/env bash
# test_hc_live.sh - kappalog against the real JavaScript hypercore 11.37.1,
# live: for random cases, the JS core and kappalog must end with the same key,
# discovery key, public key, length, byte length, fork, tree hash and stored
# signature, kappalog's proofs must be byte for byte the data messages a JS
# peer sends, hypercore's own verifier must accept them, and it must reject
# them with one hex digit flipped (a node hash, the signature, the block value,
# the manifest key).
#
# Steps:
#  1. Node and npm must be on PATH (scripts/deps.sh test installs them); a
#     missing node is a failure, never a skip. tests/js/package.json and
#     package-lock.json (hypercore 11.37.1 and its helpers, exact versions) are
#     installed with `npm ci` into $KL_BUILD_DIR/hc-js, once per lock file
#     (kept while the lock file is unchanged); NODE_PATH points there.
#  2. tests/js/hc_case.mjs --self-test and tests/js/verify_proof.mjs
#     --self-test check the JS side itself against the golden vectors
#     ($KL_TEST_DATA/hypercore) and JS-made proofs, genuine and tampered.
#  3. A probe checks that kappalog has the commands this test drives.
#  4. Cases 0..N-1 (N = KL_HC_CASES, default 50, 20 under the sanitizers;
#     run KL_HC_JOBS at a time, default 2). hc_case.mjs --generate makes
#     case i of base seed KL_HC_SEED (printed; the same seed and index give
#     the same case): a random 32-byte seed, default or compat core,
#     1..2000 blocks of 0..10000 random bytes (some empty) in random
#     batches, in half the cases one or two
#     truncations mid-way with appends after them; it builds the JS core and
#     the JS data messages for four requests. kappalog replays the plan:
#         kappalog init LOG --seed HEX64 [--compat]
#         kappalog append LOG --format len32 --batch N < op-K.len32   (one append call per op)
#         kappalog truncate LOG LENGTH
#         kappalog proof LOG --upgrade 0:L [--manifest]                      (manifest unless compat)
#         kappalog proof LOG --block I --upgrade 0:L [--manifest]
#         kappalog proof LOG --block I --upgrade 0:S [--manifest]   (S < L: additional nodes)
#         kappalog proof LOG --block J --nodes K    (K = depth of leaf J below its root)
#         kappalog info LOG --json
#     hc_case.mjs --compare checks info and the proof bytes against JS;
#     verify_proof.mjs --tamper --expect feeds each proof to a fresh JS core
#     (the last one after the upgrade proof) and requires the JS core state.
#
# Environment: KAPPALOG, KL_BUILD_DIR, KL_SOURCE_DIR, KL_TEST_DATA (set by
# ctest); KL_HC_SEED (base seed, any string), KL_HC_CASES (count),
# KL_HC_CASE (run only that case index), KL_HC_JOBS (parallel cases),
# KL_HC_MAX_BLOCKS / KL_HC_MAX_SIZE (case limits, default 2000 / 10000),
# KL_HC_JS_ONLY=1 (steps 1, 2 and the JS half of the cases, no kappalog).
# A failing case's files are kept in $KL_BUILD_DIR/hc-live-failed/case-I
# with a replay line.

set -u
set -o pipefail
export LC_ALL=C
export KL_QUIET=1

: "${KL_SOURCE_DIR:?set KL_SOURCE_DIR to the source tree}"
: "${KL_BUILD_DIR:?set KL_BUILD_DIR to the build tree}"
JS_ONLY=${KL_HC_JS_ONLY:-0}
if [ "$JS_ONLY" != 1 ]; then
    : "${KAPPALOG:?set KAPPALOG to the kappalog binary}"
fi
K=${KAPPALOG:-}
JS="$KL_SOURCE_DIR/tests/js"
VECTORS="${KL_TEST_DATA:-$KL_SOURCE_DIR/tests/data}/hypercore"
HCJS="$KL_BUILD_DIR/hc-js"
BASE=${KL_HC_SEED:-kappalog-hc-live-1}
# Under the sanitizers (KL_SANITIZE=1) the first 20 cases: most of a case's
# time is the JavaScript side, which they do not check; the normal build runs
# all 50.
if [ "${KL_SANITIZE:-0}" = 1 ]; then
    CASES=${KL_HC_CASES:-20}
else
    CASES=${KL_HC_CASES:-50}
fi
JOBS=${KL_HC_JOBS:-2}
MAX_BLOCKS=${KL_HC_MAX_BLOCKS:-2000}
MAX_SIZE=${KL_HC_MAX_SIZE:-10000}
ONLY=${KL_HC_CASE:-}

die() {
    echo "FAIL: $*" >&2
    exit 1
}
for v in CASES JOBS MAX_BLOCKS MAX_SIZE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "KL_HC_$v must be a number, got '${!v}'"
done
[[ -z $ONLY || $ONLY =~ ^[0-9]+$ ]] || die "KL_HC_CASE must be a case index, got '$ONLY'"
[ "$JOBS" -ge 1 ] || JOBS=1

T=$(mktemp -d "${TMPDIR:-/tmp}/kappalog-hc-live.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT

# ---------------------------------------------------------------- 1. Node, npm, packages

# shellcheck source=tests/hc_js.sh
. "$KL_SOURCE_DIR/tests/hc_js.sh"
hc_js_install

# ---------------------------------------------------------------- 2. the JS side checks itself

node "$JS/hc_case.mjs" --self-test "$VECTORS" >"$T/self1" 2>&1 || {
    cat "$T/self1" >&2
    die "hc_case.mjs --self-test: the JS core does not reproduce the golden vectors"
}
node "$JS/verify_proof.mjs" --self-test "$VECTORS" >"$T/self2" 2>&1 || {
    grep -v '^ok' "$T/self2" >&2
    die "verify_proof.mjs --self-test: the verifier misjudged JS-made proofs"
}
echo "test_hc_live: $(tail -n 1 "$T/self1"); $(tail -n 1 "$T/self2")"

# ---------------------------------------------------------------- 3. probe the CLI

if [ "$JS_ONLY" != 1 ]; then
    [ -x "$K" ] || die "KAPPALOG=$K is not an executable"
    P="$T/probe"
    printf '\001\000\000\000a' >"$T/probe.len32"
    probe() {
        local what=$1
        shift
        "$@" >"$T/probe.out" 2>"$T/probe.err" ||
            die "kappalog lacks what this test drives: \`$what\` failed: $(head -c 400 "$T/probe.err")"
    }
    probe "kappalog init DIR --seed HEX64" "$K" init "$P" --seed 0101010101010101010101010101010101010101010101010101010101010101
    probe "kappalog append DIR --format len32 --batch 1" "$K" append "$P" --format len32 --batch 1 <"$T/probe.len32"
    probe "kappalog info DIR --json" "$K" info "$P" --json
    grep -q '"tree_hash"' "$T/probe.out" || die "kappalog info --json prints no tree_hash: $(head -c 400 "$T/probe.out")"
    probe "kappalog proof DIR --upgrade 0:1 --manifest" "$K" proof "$P" --upgrade 0:1 --manifest
    probe "kappalog truncate DIR 0" "$K" truncate "$P" 0
fi

# ---------------------------------------------------------------- 4. the cases

# run_case I: case I in $T/case-I; its verdict in $T/case-I/result, its story in .../log.
run_case() {
    local i=$1
    local C="$T/case-$i"
    local LOG="$C/log.kl"
    mkdir -p "$C"
    exec >>"$C/log" 2>&1
    verdict() {
        echo "$1" >"$C/result"
    }
    if ! node "$JS/hc_case.mjs" --generate --base-seed "$BASE" --index "$i" --out "$C" \
        --max-blocks "$MAX_BLOCKS" --max-size "$MAX_SIZE" --run >"$C/js.json"; then
        echo "hc_case.mjs could not build the JS core"
        verdict FAIL
        return
    fi
    if [ "$JS_ONLY" = 1 ]; then
        verdict PASS
        return
    fi

    local compat=0 fails=0 w groups=() args
    while read -r -a w; do
        case ${w[0]} in
        init)
            args=(init "$LOG" --seed "${w[1]}")
            if [ "${w[2]}" = compat ]; then
                compat=1
                args+=(--compat)
            fi
            ;;
        append) args=(append "$LOG" --format len32 --batch "${w[2]}") ;;
        truncate) args=(truncate "$LOG" "${w[1]}") ;;
        proof) args=(proof "$LOG" "${w[@]:2}") ;;
        verify)
            groups+=("${w[1]}")
            continue
            ;;
        *)
            echo "unknown plan step: ${w[*]}"
            verdict FAIL
            return
            ;;
        esac
        echo "+ kappalog ${args[*]}$([ "${w[0]}" = append ] && echo " < ${w[1]}")"
        if [ "${w[0]}" = append ]; then
            "$K" "${args[@]}" <"$C/${w[1]}" >/dev/null
        elif [ "${w[0]}" = proof ]; then
            "$K" "${args[@]}" >"$C/proof-${w[1]}.hex"
        else
            "$K" "${args[@]}" >/dev/null
        fi
        local st=$?
        if [ $st -ne 0 ]; then
            echo "kappalog ${args[0]} exited with status $st"
            # a failed proof is reported by the comparison; anything else stops the case
            if [ "${w[0]}" != proof ]; then
                verdict FAIL
                return
            fi
            fails=$((fails + 1))
        fi
    done <"$C/plan.txt"

    echo "+ kappalog info $LOG --json"
    if ! "$K" info "$LOG" --json >"$C/kl.json"; then
        echo "kappalog info exited with an error"
        verdict FAIL
        return
    fi
    echo "+ compare with JS (hc_case.mjs --compare)"
    node "$JS/hc_case.mjs" --compare "$C" || fails=$((fails + 1))

    local key vargs=() g p list
    key=$(sed -n 's/^{"key":"\([0-9a-f]*\)".*/\1/p' "$C/js.json")
    for g in "${groups[@]}"; do
        list=""
        for p in ${g//,/ }; do
            list+="${list:+,}@$C/proof-$p.hex"
        done
        vargs+=("$list")
    done
    set --
    if [ $compat = 1 ]; then set -- --compat; fi
    echo "+ verify_proof.mjs $* --tamper --expect js.json KEY ${groups[*]}"
    node "$JS/verify_proof.mjs" "$@" --tamper --expect "$C/js.json" "$key" "${vargs[@]}" || fails=$((fails + 1))
    if [ $fails -eq 0 ]; then verdict PASS; else verdict FAIL; fi
}

if [ -n "$ONLY" ]; then
    list=("$ONLY")
    echo "test_hc_live: base seed '$BASE' (KL_HC_SEED), case $ONLY only (KL_HC_CASE)"
else
    mapfile -t list < <(seq 0 $((CASES - 1)))
    echo "test_hc_live: base seed '$BASE' (KL_HC_SEED), $CASES cases (KL_HC_CASES), $JOBS at a time (KL_HC_JOBS)"
fi
[ ${#list[@]} -gt 0 ] || die "no cases to run"

start=$SECONDS
for i in "${list[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
        wait -n
    done
    run_case "$i" &
done
wait

passed=0
failed=()
for i in "${list[@]}"; do
    C="$T/case-$i"
    r=$(cat "$C/result" 2>/dev/null || echo FAIL)
    kind=$(sed -n '1s/^init [0-9a-f]* //p' "$C/plan.txt" 2>/dev/null)
    length=$(sed -n 's/.*"length":\([0-9]*\).*/\1/p' "$C/js.json" 2>/dev/null)
    fork=$(sed -n 's/.*"fork":\([0-9]*\).*/\1/p' "$C/js.json" 2>/dev/null)
    appends=$(grep -c '^append' "$C/plan.txt" 2>/dev/null)
    truncs=$(grep -c '^truncate' "$C/plan.txt" 2>/dev/null)
    echo "case $i: $r (${kind:-?} core, ${appends:-?} appends, ${truncs:-?} truncations, final length ${length:-?}, fork ${fork:-?})"
    if [ "$r" = PASS ]; then
        passed=$((passed + 1))
    else
        failed+=("$i")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    keep="$KL_BUILD_DIR/hc-live-failed"
    mkdir -p "$keep"
    n=0
    for i in "${failed[@]}"; do
        echo "---- case $i failed; its log:" >&2
        grep -v '^ok ' "$T/case-$i/log" | tail -n 80 >&2
        if [ $n -lt 5 ]; then
            rm -rf "${keep:?}/case-$i"
            mv "$T/case-$i" "$keep/case-$i" &&
                echo "     kept in $keep/case-$i; replay: KL_HC_SEED='$BASE' KL_HC_CASE=$i ctest -R test_hc_live --output-on-failure" >&2
        fi
        n=$((n + 1))
    done
    echo "FAIL: test_hc_live: ${#failed[@]} of ${#list[@]} cases failed (${failed[*]}), base seed '$BASE', $((SECONDS - start)) s" >&2
    exit 1
fi
echo "test_hc_live: all ${passed} cases passed, base seed '$BASE', $((SECONDS - start)) s"
exit 0
