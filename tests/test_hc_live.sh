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
#  4. Cases 0..N-1 (N = KL_HC_CASES, default 50, 20 under the sanitizers),
#     split among KL_HC_JOBS parallel jobs (default 2): job j takes cases
#     j, j+JOBS, j+2*JOBS, ... Case i of base seed KL_HC_SEED (printed; the
#     same seed and index give the same case) is a random 32-byte seed,
#     default or compat core, 1..2000 blocks of 0..10000 random bytes (some
#     empty) in random batches, in half the cases one or two truncations
#     mid-way with appends after them, and four proof requests. Each job
#     runs three steps, one Node process for each JS step, so that loading
#     Node and hypercore is paid twice per job rather than three times per
#     case:
#     a. hc_case.mjs --generate-many --indices (the job's cases) --root $T
#        --run writes each case into $T/case-i (as --generate --index i
#        --out $T/case-i would: the case files and plan.txt), builds the JS
#        core and the JS data messages for the four requests, and writes
#        its JSON line to js.json (or its error to gen.err: that case FAILs).
#     b. kappalog replays each case's plan:
#         kappalog init LOG --seed HEX64 [--compat]
#         kappalog append LOG --format len32 --batch N < op-K.len32   (one append call per op)
#         kappalog truncate LOG LENGTH
#         kappalog proof LOG --upgrade 0:L [--manifest]                      (manifest unless compat)
#         kappalog proof LOG --block I --upgrade 0:L [--manifest]
#         kappalog proof LOG --block I --upgrade 0:S [--manifest]   (S < L: additional nodes)
#         kappalog proof LOG --block J --nodes K    (K = depth of leaf J below its root)
#         kappalog info LOG --json
#        A failing step other than a proof FAILs the case (not verified).
#     c. verify_proof.mjs --cases (the job's cases kappalog got through)
#        does for each what hc_case.mjs --compare does (info and the proof
#        bytes against JS) and what verify_proof.mjs --tamper --expect does
#        (feeds each proof to a fresh JS core, the last one after the
#        upgrade proof, and requires the JS core state), writing the case's
#        lines to verify.log and PASS or FAIL to verify.status.
#     A case passes only if all three steps passed for it. Every case gets
#     a summary line; a failing case's log (kappalog calls, mismatches,
#     failed checks) is printed.
#
# Environment: KAPPALOG, KL_BUILD_DIR, KL_SOURCE_DIR, KL_TEST_DATA (set by
# ctest); KL_HC_SEED (base seed, any string), KL_HC_CASES (count),
# KL_HC_CASE (run only that case index), KL_HC_JOBS (parallel jobs),
# KL_HC_MAX_BLOCKS / KL_HC_MAX_SIZE (case limits, default 2000 / 10000),
# KL_HC_JS_ONLY=1 (steps 1, 2 and 4a, no kappalog). A failing case's files
# (the first five) are kept in $KL_BUILD_DIR/hc-live-failed/case-I with a
# replay line and, if kappalog got through, the verify_proof.mjs --cases
# line that checks them again.

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

# Case I lives in $T/case-I: the files hc_case.mjs makes, its story in log,
# its verdict (PASS or FAIL) in result.

# kl_case I: replays case I's plan with kappalog (run with its output going to
# the case's log). A failing step other than a proof writes result FAIL: the
# case is not verified. Failed proof calls are counted in proof-fails (the
# comparison reports what they printed), and the case is left to be verified.
kl_case() {
    local C="$T/case-$1"
    local LOG="$C/log.kl"
    local fails=0 w args st
    while read -r -a w; do
        case ${w[0]} in
        init)
            args=(init "$LOG" --seed "${w[1]}")
            if [ "${w[2]:-}" = compat ]; then
                args+=(--compat)
            fi
            ;;
        append) args=(append "$LOG" --format len32 --batch "${w[2]}") ;;
        truncate) args=(truncate "$LOG" "${w[1]}") ;;
        proof) args=(proof "$LOG" "${w[@]:2}") ;;
        verify) continue ;; # verify_proof.mjs --cases reads these itself
        *)
            echo "unknown plan step: ${w[*]}"
            echo FAIL >"$C/result"
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
        st=$?
        if [ $st -ne 0 ]; then
            echo "kappalog ${args[0]} exited with status $st"
            # a failed proof is reported by the comparison; anything else stops the case
            if [ "${w[0]}" != proof ]; then
                echo FAIL >"$C/result"
                return
            fi
            fails=$((fails + 1))
        fi
    done <"$C/plan.txt"

    echo "+ kappalog info $LOG --json"
    if ! "$K" info "$LOG" --json >"$C/kl.json"; then
        echo "kappalog info exited with an error"
        echo FAIL >"$C/result"
        return
    fi
    echo "$fails" >"$C/proof-fails"
}

# run_job J: the cases list[J], list[J+JOBS], ... in three steps, one Node
# process for each JS step: hc_case.mjs --generate-many makes and runs them
# all, kappalog replays each (kl_case), verify_proof.mjs --cases compares and
# verifies those kappalog got through. Each case ends with a result.
run_job() {
    local j=$1 n i C gst vst mine=() dirs=()
    for ((n = j; n < ${#list[@]}; n += JOBS)); do
        mine+=("${list[n]}")
    done

    local indices
    printf -v indices '%s,' "${mine[@]}"
    indices=${indices%,}
    node "$JS/hc_case.mjs" --generate-many --base-seed "$BASE" --indices "$indices" --root "$T" \
        --max-blocks "$MAX_BLOCKS" --max-size "$MAX_SIZE" --run >"$T/job-$j.gen" 2>&1
    gst=$?
    for i in "${mine[@]}"; do
        C="$T/case-$i"
        mkdir -p "$C"
        {
            echo "+ hc_case.mjs --generate --base-seed '$BASE' --index $i --max-blocks $MAX_BLOCKS --max-size $MAX_SIZE --run (one of --generate-many --indices $indices)"
            if [ -s "$C/js.json" ]; then
                if [ "$JS_ONLY" = 1 ]; then
                    echo PASS >"$C/result"
                else
                    kl_case "$i"
                    [ -f "$C/result" ] || dirs+=("$C")
                fi
            else
                if [ -f "$C/gen.err" ]; then
                    cat "$C/gen.err"
                else
                    echo "hc_case.mjs --generate-many (exit status $gst) ended before this case; its output:"
                    tail -n 40 "$T/job-$j.gen"
                fi
                echo "hc_case.mjs could not build the JS core"
                echo FAIL >"$C/result"
            fi
        } >>"$C/log" 2>&1
    done
    [ ${#dirs[@]} -gt 0 ] || return 0

    node "$JS/verify_proof.mjs" --cases "${dirs[@]}" >"$T/job-$j.verify" 2>&1
    vst=$?
    for C in "${dirs[@]}"; do
        {
            echo "+ compare with JS and verify (one of verify_proof.mjs --cases, job $j)"
            if [ -f "$C/verify.status" ]; then
                cat "$C/verify.log"
                if [ "$(cat "$C/verify.status")" = PASS ] && [ "$(cat "$C/proof-fails")" = 0 ]; then
                    echo PASS >"$C/result"
                else
                    echo FAIL >"$C/result"
                fi
            else
                echo "verify_proof.mjs --cases (exit status $vst) ended before judging this case; its output:"
                tail -n 40 "$T/job-$j.verify"
                echo FAIL >"$C/result"
            fi
        } >>"$C/log" 2>&1
    done
}

if [ -n "$ONLY" ]; then
    list=("$ONLY")
    echo "test_hc_live: base seed '$BASE' (KL_HC_SEED), case $ONLY only (KL_HC_CASE)"
else
    mapfile -t list < <(seq 0 $((CASES - 1)))
    echo "test_hc_live: base seed '$BASE' (KL_HC_SEED), $CASES cases (KL_HC_CASES), in $JOBS parallel jobs (KL_HC_JOBS)"
fi
[ ${#list[@]} -gt 0 ] || die "no cases to run"
[ "$JOBS" -le ${#list[@]} ] || JOBS=${#list[@]}

start=$SECONDS
for ((j = 0; j < JOBS; j++)); do
    run_job "$j" &
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
                echo "     kept in $keep/case-$i; replay: KL_HC_SEED='$BASE' KL_HC_CASE=$i ctest -R test_hc_live --output-on-failure" >&2 &&
                if [ -f "$keep/case-$i/kl.json" ]; then
                    echo "     check its files again: NODE_PATH='$HCJS/node_modules' node '$JS/verify_proof.mjs' --cases '$keep/case-$i'" >&2
                fi
        fi
        n=$((n + 1))
    done
    echo "FAIL: test_hc_live: ${#failed[@]} of ${#list[@]} cases failed (${failed[*]}), base seed '$BASE', $((SECONDS - start)) s" >&2
    exit 1
fi
echo "test_hc_live: all ${passed} cases passed, base seed '$BASE', $((SECONDS - start)) s"
exit 0
