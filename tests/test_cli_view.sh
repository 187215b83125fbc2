#!/usr/bin/env bash
# test_cli_view.sh - `kappalog view`: every action (create, update, get,
# scan, list, drop, rebuild plain and --shadow, update --follow and --max),
# their values against a fold of the same input computed here by python3
# (count, kv, sum; malformed records counted, not fatal), the --json
# outputs parsed by python3, `view get` from other processes during a
# `rebuild --shadow` answering the old value (never a half-built one) until
# the switch, and every refusal: unknown actions and flags,
# flags of another action, missing or extra arguments, bad names, kinds and
# fields, a view that exists or does not, a log that was truncated, a log
# that lost blocks a view had applied (past its end, then diverged). A
# refusal is one line "kappalog: view ACTION: ..." with exit 2 (usage) or 1,
# and changes nothing; `view get` of an absent key prints nothing, exit 1.
#
# Run by ctest with KAPPALOG=<the binary>. The input is made here by awk
# from a fixed pattern.

# shellcheck source=tests/cli_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"

command -v python3 >/dev/null || { echo "skipped: python3 is needed for the fold" >&2; exit 77; }

LOG=$T/log

# events FROM TO: JSON events FROM..TO-1, with malformed ones at fixed places.
events() {
    awk -v from="$1" -v to="$2" 'BEGIN {
        for (i = from; i < to; i++) {
            if (i % 17 == 3) { printf "not json %d\n", i; continue }
            if (i % 23 == 5) { printf "{\"i\":%d,\"amount\":4}\n", i; continue }
            if (i % 29 == 7) { printf "{\"user\":\"u%d\",\"amount\":\"x\"}\n", i % 13; continue }
            if (i % 31 == 9) { printf "{\"user\":null,\"amount\":1}\n"; continue }
            if (i % 37 == 11) { printf "{\"user\":%d,\"amount\":%d}\n", 700 + i % 3, i % 5; continue }
            printf "{\"i\":%d,\"user\":\"u%d\",\"ctx\":{\"region\":\"r%d\"},\"amount\":%d}\n",
                   i, (i * 7) % 13, i % 4, (i % 11) - 5
        }
    }'
}

# fold KIND FILE: the view of KIND (count, kv, sum) over the records of FILE,
# as "KEY<tab>VALUE" lines in byte order of the keys.
fold() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
kind, path = sys.argv[1], sys.argv[2]
view = {}
for line in open(path, "rb").read().split(b"\n")[:-1]:
    try:
        d = json.loads(line)
    except ValueError:
        continue
    if not isinstance(d, dict) or "user" not in d:
        continue
    k = d["user"]
    if isinstance(k, bool) or k is None or isinstance(k, (dict, list)):
        continue
    key = k if isinstance(k, str) else str(k)
    if kind == "count":
        view[key] = view.get(key, 0) + 1
    elif kind == "kv":
        view[key] = line.decode()
    else:
        v = d.get("amount")
        if isinstance(v, bool) or not isinstance(v, int):
            continue
        view[key] = view.get(key, 0) + v
for key in sorted(view, key=lambda s: s.encode()):
    print("%s\t%s" % (key, view[key]))
EOF
}

# skipped_json NAME: the view's skip counters from `view list --json`, as "a b c d e".
view_field() {
    "$K" view list "$LOG" --json | python3 -c '
import json, sys
name, field = sys.argv[1], sys.argv[2]
for v in json.load(sys.stdin):
    if v["name"] == name:
        print(v[field] if not isinstance(v[field], dict) else " ".join(str(x) for x in v[field].values()))
' "$1" "$2"
}

setup() {
    run init "$LOG"
    expect_ok "init"
    events 0 3000 >"$T/in1"
    run_in "$T/in1" append "$LOG"
    expect_ok "append"
}

# ---------------------------------------------------------------- create, update, get, scan
test_create_update_get_scan() {
    run view create "$LOG" c --kind count --key user
    expect_ok "create count"
    run view create "$LOG" kv --kind kv --key user
    expect_ok "create kv"
    run view create "$LOG" s --kind sum --key user --value amount
    expect_ok "create sum"
    run view create "$LOG" r --kind count --key ctx.region
    expect_ok "create count on a dotted path"
    for v in c kv s r; do
        run view update "$LOG" "$v"
        expect_ok "update $v"
    done
    local pair view kind
    for pair in c:count kv:kv s:sum; do
        view=${pair%%:*}
        kind=${pair#*:}
        set -- "$view" "$kind"
        fold "$2" "$T/in1" >"$T/want.$1"
        run view scan "$LOG" "$1"
        expect_ok "scan $1"
        assert_same_file "$T/out" "$T/want.$1" "scan $1 equals the fold"
        local key want
        key=$(sed -n 5p "$T/want.$1" | cut -f1)
        want=$(sed -n 5p "$T/want.$1" | cut -f2-)
        run view get "$LOG" "$1" "$key"
        expect_ok "get $1 $key"
        assert_eq "$(cat "$T/out")" "$want" "get $1 $key"
    done
    run view get "$LOG" r r2
    expect_ok "get on a dotted path"
    assert_eq "$(cat "$T/out")" "$(events 0 3000 | grep -c '"region":"r2"')" "count of region r2"
    run view get "$LOG" c 700
    expect_ok "a number key"
    # absent keys: exit 1, nothing at all
    run view get "$LOG" c nobody
    assert_eq "$STATUS" 1 "get of an absent key: exit 1"
    assert_eq "$(wc -c <"$T/out")$(wc -c <"$T/err")" "00" "get of an absent key prints nothing"
    run view get "$LOG" c ""
    assert_eq "$STATUS" 1 "get of the empty key: exit 1"
    # skipped records are counted by reason
    assert_eq "$(view_field c skipped)" "$(python3 - "$T/in1" <<'EOF'
import json, sys
nj = miss = bad = 0
for line in open(sys.argv[1], "rb").read().split(b"\n")[:-1]:
    try:
        d = json.loads(line)
    except ValueError:
        nj += 1
        continue
    if "user" not in d:
        miss += 1
    elif d["user"] is None:
        bad += 1
print(nj, miss, 0, bad, 0)
EOF
)" "skip counters of the count view"
    # scan: --prefix, --limit, --json
    run view scan "$LOG" c --prefix u1 --limit 2
    expect_ok "scan --prefix --limit"
    assert_eq "$(cat "$T/out")" "$(grep '^u1' "$T/want.c" | head -2)" "scan --prefix u1 --limit 2"
    run view scan "$LOG" kv --json
    expect_ok "scan kv --json"
    check "scan --json parses" python3 -m json.tool "$T/out" >/dev/null
    assert_eq "$(python3 -c '
import json, sys
for e in json.load(open(sys.argv[1])):
    print("%s\t%s" % (e["key"], json.dumps(e["value"], separators=(",", ":"))))
' "$T/out")" "$(cat "$T/want.kv")" "scan kv --json holds the records"
    run view scan "$LOG" s --json --prefix zzz
    expect_ok "an empty scan --json"
    assert_eq "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])))' "$T/out")" "[]" \
        "an empty scan is []"
}

# ---------------------------------------------------------------- list, --max, lag, --progress
test_list_max_progress() {
    events 3000 3500 >"$T/in2"
    run_in "$T/in2" append "$LOG"
    expect_ok "append more"
    run view update "$LOG" c --max 100
    expect_ok "update --max 100"
    assert_eq "$(view_field c position)" 3100 "--max 100 stops at 3100"
    assert_eq "$(view_field c lag)" 400 "lag after --max"
    assert_eq "$(view_field c version)" 1 "version"
    assert_eq "$(view_field s kind)" sum "kind"
    run view list "$LOG" --json
    expect_ok "list --json"
    check "list --json parses" python3 -m json.tool "$T/out" >/dev/null
    run view list "$LOG"
    expect_ok "list"
    check "list names every view" grep -qE '^c +count +1 +3100 +400 ' "$T/out"
    run view update "$LOG" c --progress
    assert_eq "$STATUS" 0 "update --progress"
    check "--progress ends with the rate" grep -qE "^view c: applied 400 records in .* records/s" \
        "$T/err"
    cat "$T/in1" "$T/in2" >"$T/all"
    fold count "$T/all" >"$T/want.c"
    run view scan "$LOG" c
    assert_same_file "$T/out" "$T/want.c" "count after more appends"
}

# ---------------------------------------------------------------- rebuild, follow
test_rebuild_and_follow() {
    run view rebuild "$LOG" c
    expect_ok "plain rebuild"
    assert_eq "$(view_field c version)" 2 "a rebuild makes version 2"
    run view scan "$LOG" c
    assert_same_file "$T/out" "$T/want.c" "count after a plain rebuild"
    run view rebuild "$LOG" c --shadow
    expect_ok "shadow rebuild"
    assert_eq "$(view_field c version)" 3 "a shadow rebuild makes version 3"
    check "the old versions are gone" test ! -e "$LOG/views/c/v2" -a -d "$LOG/views/c/v3"
    run view scan "$LOG" c
    assert_same_file "$T/out" "$T/want.c" "count after a shadow rebuild"
    # follow: a background update sees new records, and ends cleanly on SIGTERM
    "$K" view update "$LOG" s --follow >"$T/fout" 2>"$T/ferr" &
    local pid=$!
    events 3500 3600 >"$T/in3"
    run_in "$T/in3" append "$LOG"
    cat "$T/in1" "$T/in2" "$T/in3" >"$T/all"
    fold sum "$T/all" >"$T/want.s"
    local _
    for _ in $(seq 1 100); do
        [ "$(view_field s position)" = 3600 ] && break
        sleep 0.05
    done
    assert_eq "$(view_field s position)" 3600 "update --follow applies new records"
    kill -TERM "$pid"
    wait "$pid"
    assert_eq "$?" 0 "update --follow ends with 0 on SIGTERM"
    run view scan "$LOG" s
    assert_same_file "$T/out" "$T/want.s" "sum after following"
}

# ---------------------------------------------------------------- shadow rebuild, across processes
# While `rebuild --shadow` runs (in small transactions, so it takes a while),
# `view get` from other processes answers from the old version: the old
# value, never one of the half-built version's; after the switch, the new.
test_shadow_serves_the_old_version() {
    run view create "$LOG" sh --kind count --key user
    expect_ok "create sh"
    run view update "$LOG" sh --max 1000
    expect_ok "sh at 1000"
    local old new got gets=0 others=0 _
    old=$("$K" view get "$LOG" sh u1)
    new=$(fold count "$T/all" | awk -F'\t' '$1 == "u1" { print $2 }')
    check "the old and the new values differ" test "$old" != "$new"
    KL_VIEW_TXN_RECORDS=1 "$K" view rebuild "$LOG" sh --shadow 2>"$T/rerr" &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        got=$("$K" view get "$LOG" sh u1)
        gets=$((gets + 1))
        [ "$got" = "$old" ] || [ "$got" = "$new" ] || others=$((others + 1))
    done
    wait "$pid"
    assert_eq "$?" 0 "rebuild --shadow (stderr: $(head -c 300 "$T/rerr"))"
    check "view get ran during the rebuild ($gets times)" test "$gets" -ge 1
    assert_eq "$others" 0 "no get saw the half-built version"
    assert_eq "$("$K" view get "$LOG" sh u1)" "$new" "after the switch: the new value"
    assert_eq "$(view_field sh version)" 2 "the new version is live"
}

# ---------------------------------------------------------------- refusals
# expect_refused STATUS PATTERN WHAT ARGS...: refused with one line, and the views unchanged.
expect_refused() {
    local status=$1 pattern=$2 what=$3 before
    shift 3
    before=$("$K" view list "$LOG" --json)
    run "$@"
    expect_error "$status" "$pattern" "$what"
    assert_eq "$("$K" view list "$LOG" --json)" "$before" "$what: nothing changed"
}

test_refusals() {
    expect_refused 2 "view: unknown action 'frob'" "unknown action" view frob "$LOG"
    expect_refused 2 "missing ACTION" "no action" view
    expect_refused 2 "view get: takes DIR NAME KEY" "get without KEY" view get "$LOG" c
    expect_refused 2 "view list: takes DIR" "list with a name" view list "$LOG" c
    expect_refused 2 "view get: takes no --json" "a flag of another action" \
        view get "$LOG" c u1 --json
    expect_refused 2 "view update: takes no --shadow" "--shadow on update" \
        view update "$LOG" c --shadow
    expect_refused 2 "unknown flag '--nope'" "unknown flag" view list "$LOG" --nope
    expect_refused 2 "view update: --max '-1'" "bad --max" view update "$LOG" c --max -1
    expect_refused 2 "view scan: --limit 0 is outside" "--limit 0" view scan "$LOG" c --limit 0
    expect_refused 2 "view create: needs --kind" "create without --kind" \
        view create "$LOG" x --key user
    expect_refused 2 "view create: --kind 'avg'" "bad kind" view create "$LOG" x --kind avg --key u
    expect_refused 2 "view create: needs --key" "create without --key" \
        view create "$LOG" x --kind count
    expect_refused 2 "view create: a sum view needs --value" "sum without --value" \
        view create "$LOG" x --kind sum --key user
    expect_refused 2 "view create: --value is only for a sum" "count with --value" \
        view create "$LOG" x --kind count --key user --value amount
    expect_refused 2 "view create: the key field 'a..b'" "bad field path" \
        view create "$LOG" x --kind count --key a..b
    local name
    for name in .hidden "a b" a/b "$(printf 'x%.0s' $(seq 1 65))"; do
        expect_refused 2 "view create: view name" "bad name '$name'" \
            view create "$LOG" "$name" --kind count --key user
    done
    expect_refused 1 "view create: view 'c' already exists" "a view that exists" \
        view create "$LOG" c --kind kv --key user
    expect_refused 1 "view get: no view 'nope'" "get of a view that does not exist" \
        view get "$LOG" nope k
    expect_refused 1 "view update: no view 'nope'" "update of a view that does not exist" \
        view update "$LOG" nope
    expect_refused 1 "view drop: no view 'nope'" "drop of a view that does not exist" \
        view drop "$LOG" nope
    expect_refused 1 "view rebuild: no view 'nope'" "rebuild of a view that does not exist" \
        view rebuild "$LOG" nope
    run view create "$T/nolog" x --kind count --key user
    expect_error 1 "view create: " "create in a directory without a log"
    check "nothing was made there" test ! -e "$T/nolog/views"
}

# ---------------------------------------------------------------- truncation, drop
test_truncation_and_drop() {
    run view update "$LOG" kv
    expect_ok "kv up to date"
    local before
    before=$("$K" view scan "$LOG" kv)
    run truncate "$LOG" 3200
    expect_ok "truncate"
    run view update "$LOG" kv
    expect_error 1 "view update: .*fork 1 .*fork 0.*rebuild the view" "a truncated log"
    assert_eq "$("$K" view scan "$LOG" kv)" "$before" "the view is unchanged after the refusal"
    run view list "$LOG"
    check "view list says the fork changed" grep -qE '^kv .*fork changed: the log was truncated since' "$T/out"
    check "view list --json gives both forks" eval '"$K" view list "$LOG" --json | grep -qE "\"name\":\"kv\".*\"fork\":0,\"log_fork\":1,"'
    run view rebuild "$LOG" kv --shadow
    expect_ok "a rebuild after the truncation"
    head -n 3200 "$T/all" >"$T/cut"
    fold kv "$T/cut" >"$T/want.kv"
    run view scan "$LOG" kv
    assert_same_file "$T/out" "$T/want.kv" "kv of the truncated log"
    run view drop "$LOG" kv
    expect_ok "drop"
    check "drop removes the directory" test ! -e "$LOG/views/kv"
    run view get "$LOG" kv u1
    expect_error 1 "view get: no view 'kv'" "get after drop"
    run view create "$LOG" kv --kind kv --key user
    expect_ok "create again after drop"
    assert_eq "$(view_field kv position)" 0 "a new view starts at 0"
    # a follower of a view that is dropped and made again under its name stops with an
    # error (its versions start at 1 again: it must not go on feeding the dropped one)
    run view update "$LOG" kv
    expect_ok "kv up to date before following"
    "$K" view update "$LOG" kv --follow >"$T/fout" 2>"$T/ferr" &
    local pid=$! _ status
    sleep 0.3
    run view drop "$LOG" kv
    expect_ok "drop while followed"
    run view create "$LOG" kv --kind kv --key user
    expect_ok "create while the old one is followed"
    events 9000 9010 >"$T/in4"
    run_in "$T/in4" append "$LOG"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        fail "update --follow went on after its view was dropped and created again"
    fi
    wait "$pid"
    status=$?
    assert_eq "$status" 1 "update --follow of a re-created view: exit status"
    # (dropped, or dropped and created again: whichever it saw first)
    check "it says the view was dropped ($(cat "$T/ferr"))" \
        grep -qE "^kappalog: view update: view 'kv' was dropped" "$T/ferr"
    # a damaged view: listed as damaged beside the others, and drop still removes it
    printf 'garbage' | dd of="$LOG/views/kv/view.meta" bs=1 seek=8 conv=notrunc 2>/dev/null
    run view list "$LOG"
    assert_eq "$STATUS" 0 "view list with a damaged view: exit status ($(cat "$T/err"))"
    check "view list names the damaged view" grep -qE "^kv +damaged" "$T/out"
    check "view list still lists the others" grep -qE "^c +count" "$T/out"
    run view list "$LOG" --json
    check "view list --json marks it" python3 -c '
import json, sys
v = {x["name"]: x for x in json.load(open(sys.argv[1]))}
assert v["kv"] == {"name": "kv", "damaged": True}, v["kv"]
assert "damaged" not in v["c"] and v["c"]["kind"] == "count"
' "$T/out"
    run view get "$LOG" kv u1
    expect_error 1 "view get: " "get of a damaged view"
    run view drop "$LOG" kv
    expect_ok "drop of a damaged view"
    check "drop removed the damaged view" test ! -e "$LOG/views/kv"
}

# ---------------------------------------------------------------- a log that lost applied blocks
# Under fsync never, a view (LMDB, synced) can apply blocks the log had not
# synced; a power loss takes them back. Modelled with copies: SNAP is the log
# as the loss leaves it (100 blocks) with the view of the log before it (150).
test_a_log_that_lost_applied_blocks() {
    local full=$T/lost-full snap=$T/lost-snap same=$T/lost-same
    "$K" init "$full" --fsync never >/dev/null
    events 0 100 | "$K" append "$full"
    cp -a "$full" "$snap"
    events 100 150 | "$K" append "$full"
    "$K" view create "$full" c --kind count --key user >/dev/null
    "$K" view update "$full" c >/dev/null
    cp -a "$full/views" "$snap/views"
    run view update "$snap" c
    expect_error 1 "view update: the view is at block 150 of .* but the log has 100 blocks: it lost blocks the view had applied.*rebuild the view" \
        "a view past the end of a log that lost blocks"
    run view list "$snap"
    check "view list says the view is past the log's end" grep -q "past the log's end" "$T/out"
    cp -a "$snap" "$same"
    events 100 150 | "$K" append "$same" # the blocks the view applied, again: it goes on
    events 150 170 | "$K" append "$same"
    run view update "$same" c
    expect_ok "update after the same records came back"
    events 0 170 >"$T/lost-same.in"
    fold count "$T/lost-same.in" >"$T/want.lost-same"
    run view scan "$same" c
    assert_same_file "$T/out" "$T/want.lost-same" "the view of the log the same records came back to"
    events 200 260 | "$K" append "$snap" # others in the lost blocks' places
    run view update "$snap" c
    expect_error 1 "view update: the view applied 150 blocks of .*, but the log's first 150 blocks are not those \(their tree hash differs\).*rebuild the view" \
        "a view whose applied blocks were replaced"
    check "view list --json says diverged" eval '"$K" view list "$snap" --json | grep -q "\"diverged\":true"'
    run view list "$snap"
    check "view list says diverged" grep -q "diverged: the log lost blocks it applied" "$T/out"
    run view rebuild "$snap" c
    expect_ok "rebuild of a diverged view"
    { events 0 100; events 200 260; } >"$T/lost-snap.in"
    fold count "$T/lost-snap.in" >"$T/want.lost-snap"
    run view scan "$snap" c
    assert_same_file "$T/out" "$T/want.lost-snap" "the rebuilt view"
    check "view list --json no longer says diverged" eval '"$K" view list "$snap" --json | grep -q "\"diverged\":false"'
}

test_help() {
    run --help
    check "--help lists view" grep -qE "^  view " "$T/out"
    run view --help
    expect_ok "view --help"
    check "view --help shows every action" grep -q "view rebuild DIR NAME \[--shadow\]" "$T/out"
    run help view
    expect_ok "help view"
}

setup
test_help
test_create_update_get_scan
test_list_max_progress
test_rebuild_and_follow
test_shadow_serves_the_old_version
test_refusals
test_truncation_and_drop
test_a_log_that_lost_applied_blocks
finish test_cli_view
