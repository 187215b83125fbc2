#!/usr/bin/env bash
# test_hostile.sh - replication against hostile peers (tests/tool_evilpeer).
#
# kappalog clone against a hostile server, one misbehaviour each: garbage
# instead of the handshake, an oversized frame, a garbage frame after the
# handshake, a stream header of junk, each of the ten hypercore message
# types in a form that does not decode, block proofs with a flipped node
# hash, an upgrade with a flipped signature bit, a block nobody asked for,
# a server that stalls, one that signs 300 blocks but announces none (and
# sends keepalives). Each time the clone must fail within 3 seconds (the
# stall: past --stall-ms 1000) with a reason naming the offence, and leave
# nothing behind: no replica, not even the empty one the honest upgrade
# created. A server that answers every upgrade request with noData (and
# sends keepalives) ends the clone after --stall-ms (2.5 s), not before and
# not never. And a server that sends 60 blocks of 200 KB but never block 0: the
# clone gives up naming block 0, leaves no replica, and its peak resident
# memory stays within 8 MiB of an honest clone's of the same log (it keeps
# at most 4 MiB of blocks ahead of a missing one).
#
# kappalog serve against hostile clients, while a good `kappalog clone`
# downloads a 30,000-block log from the same server: garbage instead of the
# handshake, an oversized frame, a garbage frame, a stream header of junk,
# each message type undecodable, a data message to a server, and a flood
# of requests from a client that never reads. Each connection must be
# closed within 1 s of the offence (the flood: when more than 2 MiB of its
# answers stay unread for a second, the server's rule) with the reason on
# the server's stderr; and the good clone must finish, verify and equal
# the source.
#
# Memory per connection: 8 clients at once each send all but the last byte
# of a frame of the largest size (4 MiB) and go silent. The server's
# resident memory, sampled until it dropped them as stalled, may grow by at
# most "4 MiB plus one frame" (8 MiB) per connection; and every connection
# the server closed in this test (the flood's included) reports holding at
# most that much.
#
# Out of descriptors: a server under `ulimit -n 64` with 80 idle
# connections refuses what its descriptors do not allow (logged), uses at
# most 0.2 s of CPU in 2 s (no spin on a listening socket it cannot
# accept from), and serves a good clone afterwards.
#
# --max-peers 2: a third connection is accepted and closed at once (it
# reads end of file, the refusal is logged) while the first two stay open,
# and once one of them goes a new connection is kept; --max-peers 0, -1
# and abc are one-line usage errors.
#
# Environment: KAPPALOG, KL_BUILD_DIR (set by ctest).

TAG=hostile
# shellcheck source=tests/replica_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/replica_lib.sh"
: "${KL_BUILD_DIR:?set KL_BUILD_DIR to the build tree}"
EVIL="$KL_BUILD_DIR/tests/tool_evilpeer"
[ -x "$EVIL" ] || die "$EVIL is not built"

length_of() { "$K" info "$1" --json 2>/dev/null | tr -d ' \n' | sed -n 's/.*"length":\([0-9]*\).*/\1/p'; }
key_of() { "$K" info "$1" --json | tr -d ' \n' | sed -n 's/.*"key":"\([0-9a-f]*\)".*/\1/p'; }

awk 'BEGIN { srand(5); for (i = 0; i < 300; i++) { n = 1 + int(rand() * 100); s = ""; for (j = 0; j < n; j++) s = s sprintf("%c", 97 + int(rand() * 26)); print s } }' >"$T/small.txt"
"$K" init "$T/small" >/dev/null && "$K" append "$T/small" <"$T/small.txt" >/dev/null || die "small log"
SMALL_KEY=$(key_of "$T/small")

# ---- hostile servers
# the ten hypercore message types, by number, as the decoders name them
MSG_NAMES=(sync request cancel data noData want unwant bitfield range extension)
SERVER_SPECS=("garbage-handshake:handshake" "oversize:more than the"
    "garbage-frame:authenticate" "garbage-header:stream header" "bad-proof:block"
    "bad-signature:upgrade" "unsolicited:not asked for" "stall:sent nothing"
    "no-range:signed length 300 but offers blocks only up to 0")
for t in "${!MSG_NAMES[@]}"; do SERVER_SPECS+=("garbage-msg-$t:${MSG_NAMES[$t]} message"); done
for spec in "${SERVER_SPECS[@]}"; do
    mode=${spec%%:*}
    words=${spec#*:}
    "$EVIL" serve "$mode" "$T/small" >"$T/evil-$mode.out" 2>"$T/evil-$mode.err" &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 100); do grep -q '^listening' "$T/evil-$mode.out" 2>/dev/null && break; sleep 0.05; done
    port=$(sed -n 's/^listening on //p' "$T/evil-$mode.out")
    [ -n "$port" ] || die "$mode: the hostile server did not start"
    start=$(date +%s%N)
    if "$K" clone "$port" "$SMALL_KEY" "$T/rep-$mode" --stall-ms 1000 2>"$T/clone-$mode.err"; then
        die "$mode: kappalog clone succeeded against a hostile server"
    fi
    ms=$((($(date +%s%N) - start) / 1000000))
    [ $ms -lt 3000 ] || die "$mode: the clone took $ms ms to give up"
    grep -qi "$words" "$T/clone-$mode.err" || die "$mode: the error does not say '$words': $(cat "$T/clone-$mode.err")"
    # a fresh clone that failed leaves nothing: no replica (not even an empty one), no temporary
    [ ! -e "$T/rep-$mode" ] && [ ! -e "$T/rep-$mode.creating" ] ||
        die "$mode: the failed clone left $(ls -d "$T/rep-$mode"* | tr '\n' ' ')behind"
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    echo "hostile server $mode: clone refused it after $ms ms ($(head -c 120 "$T/clone-$mode.err"))"
done

# wait_listening NAME OUT: the port a background server printed as "listening on ..." in OUT
wait_listening() {
    for _ in $(seq 1 100); do grep -q '^listening' "$2" 2>/dev/null && break; sleep 0.05; done
    port=$(sed -n 's/^listening on //p' "$2")
    [ -n "$port" ] || die "$1: the server did not start"
}
# clone_gives_up NAME STALL_MS MAX_MS PATTERN: a clone from $port with --stall-ms STALL_MS
# fails after at least STALL_MS - 100 and under MAX_MS ms, saying PATTERN, and leaves no
# replica; then the server ($pid) is stopped
clone_gives_up() {
    local name=$1 stall=$2 max=$3 pattern=$4 start ms err="$T/clone-$1.err"
    start=$(date +%s%N)
    "$K" clone "$port" "$SMALL_KEY" "$T/rep-$name" --stall-ms "$stall" 2>"$err" &&
        die "$name: kappalog clone succeeded"
    ms=$((($(date +%s%N) - start) / 1000000))
    [ $ms -ge $((stall - 100)) ] && [ $ms -lt "$max" ] ||
        die "$name: the clone gave up after $ms ms, not after its --stall-ms of $stall: $(cat "$err")"
    grep -q "$pattern" "$err" || die "$name: the error does not say '$pattern': $(cat "$err")"
    [ ! -e "$T/rep-$name" ] || die "$name: the failed clone left a replica"
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    echo "$name: clone gave up after $ms ms ($(head -c 120 "$err"))"
}

# ---- a server that refuses every upgrade (noData) and keeps the connection alive: the clone
# asks again each second, and gives up after --stall-ms (2500 here), not at the first re-ask
"$EVIL" serve nodata-upgrade "$T/small" >"$T/evil-nodata-upgrade.out" 2>&1 &
pid=$!
PIDS+=("$pid")
wait_listening nodata-upgrade "$T/evil-nodata-upgrade.out"
clone_gives_up nodata-upgrade 2500 5000 "announced length 300 at fork 0 but gave no upgrade"

# ---- an address that never answers a connect (a listener whose accept queue is full drops
# the SYNs, as a host that drops packets does): the clone gives up after --stall-ms, where a
# blocking connect waited for the kernel's SYN timeout of about two minutes
python3 -c '
import socket, sys, time
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(0)
fill = []
for _ in range(4):  # fill the accept queue (never accepted); later connects hang in SYN_SENT
    c = socket.socket(); c.setblocking(False); c.connect_ex(l.getsockname()); fill.append(c)
time.sleep(0.3)
print("listening on 127.0.0.1:%d" % l.getsockname()[1], flush=True)
time.sleep(60)
' >"$T/silent.out" 2>&1 &
pid=$!
PIDS+=("$pid")
wait_listening silent "$T/silent.out"
clone_gives_up silent 1500 4000 "connecting to $port: .*no answer within --stall-ms"

# ---- a server that holds back block 0 of big blocks while it sends the rest: the clone
# keeps at most 4 MiB of blocks ahead of a missing one (asks for the others again later),
# so its peak resident memory stays within 8 MiB of an honest clone's; and it gives up
# once block 0 has been asked for --stall-ms ago
for i in $(seq 1 60); do head -c 150000 /dev/urandom | base64 -w0; echo; done >"$T/fat.txt"
"$K" init "$T/fat" --fsync never >/dev/null && "$K" append "$T/fat" <"$T/fat.txt" >/dev/null || die "fat log"
FAT_KEY=$(key_of "$T/fat")
hwm_of_clone() { # MODE: the clone's peak resident KiB; its status in $T/hwm-rc
    "$EVIL" serve "$1" "$T/fat" >"$T/evil-$1.out" 2>&1 &
    local epid=$! port hwm=0 h cpid
    PIDS+=("$epid")
    for _ in $(seq 1 100); do grep -q '^listening' "$T/evil-$1.out" 2>/dev/null && break; sleep 0.05; done
    port=$(sed -n 's/^listening on //p' "$T/evil-$1.out")
    "$K" clone "$port" "$FAT_KEY" "$T/rep-$1" --stall-ms 1000 --fsync never 2>"$T/clone-$1.err" &
    cpid=$!
    while kill -0 "$cpid" 2>/dev/null; do
        h=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB$/\1/p' "/proc/$cpid/status" 2>/dev/null)
        [ -n "$h" ] && hwm=$h
        sleep 0.02
    done
    wait "$cpid"
    echo $? >"$T/hwm-rc"
    kill "$epid" 2>/dev/null
    wait "$epid" 2>/dev/null
    echo "$hwm"
}
honest=$(hwm_of_clone honest)
[ "$(cat "$T/hwm-rc")" = 0 ] || die "honest: the clone of the fat log failed: $(cat "$T/clone-honest.err")"
"$K" read "$T/rep-honest" | cmp -s - "$T/fat.txt" || die "honest: the clone of the fat log differs"
held=$(hwm_of_clone hold-back)
[ "$(cat "$T/hwm-rc")" != 0 ] || die "hold-back: the clone succeeded without block 0"
grep -q "did not send block 0" "$T/clone-hold-back.err" ||
    die "hold-back: the error does not name the missing block: $(cat "$T/clone-hold-back.err")"
[ ! -e "$T/rep-hold-back" ] || die "hold-back: the failed clone left a replica behind"
echo "hostile server hold-back: peak resident memory $held KiB, an honest clone's $honest KiB ($(head -c 100 "$T/clone-hold-back.err"))"
if [ "${KL_SANITIZE:-0}" != 1 ]; then
    [ $((held - honest)) -le 8192 ] || die "hold-back: the clone held $((held - honest)) KiB more than an honest one (limit 8192)"
fi

# ---- hostile clients, beside a good one
awk 'BEGIN { srand(6); for (i = 0; i < 30000; i++) { n = 1 + int(rand() * 150); s = ""; for (j = 0; j < n; j++) s = s sprintf("%c", 97 + int(rand() * 26)); print s } }' >"$T/big.txt"
"$K" init "$T/big" --fsync never >/dev/null && "$K" append "$T/big" <"$T/big.txt" >/dev/null || die "big log"
BIG_KEY=$(key_of "$T/big")
"$K" serve "$T/big" --listen 127.0.0.1:0 --stall-ms 1000 >"$T/serve.out" 2>"$T/serve.err" &
SERVE_PID=$!
PIDS+=("$SERVE_PID")
for _ in $(seq 1 100); do grep -q '^key ' "$T/serve.out" 2>/dev/null && break; sleep 0.05; done
PORT=$(sed -n 's/^listening on //p' "$T/serve.out")
[ -n "$PORT" ] || die "kappalog serve did not start"
"$K" clone "$PORT" "$BIG_KEY" "$T/good" 2>"$T/good.err" &
GOOD_PID=$!
PIDS+=("$GOOD_PID")
CLIENT_SPECS=("garbage-handshake:handshake" "oversize:more than the" "garbage-frame:authenticate"
    "garbage-header:stream header" "bad-data:asked for none" "flood:answers unread"
    "slow-handshake:handshake did not finish")
for t in "${!MSG_NAMES[@]}"; do CLIENT_SPECS+=("garbage-msg-$t:${MSG_NAMES[$t]} message"); done
for spec in "${CLIENT_SPECS[@]}"; do
    mode=${spec%%:*}
    words=${spec#*:}
    out=$("$EVIL" attack "$mode" "$PORT" "$BIG_KEY" 2>&1) || die "$mode: the server did not close the connection ($out)"
    ms=$(sed -n 's/^closed after \([0-9]*\) ms$/\1/p' <<<"$out")
    # the flood's offence is leaving answers unread, the slow handshake's taking longer than
    # --stall-ms (1 s): the server sees each a second after it began
    if [ "$mode" != flood ] && [ "$mode" != slow-handshake ]; then
        [ -n "$ms" ] && [ "$ms" -le 1000 ] || die "$mode: closed after ${ms:-?} ms (limit 1000): $out"
    fi
    for _ in $(seq 1 20); do grep -q "closed: .*$words" "$T/serve.err" && break; sleep 0.05; done
    grep -q "closed: .*$words" "$T/serve.err" ||
        die "$mode: the server did not log the reason '$words': $(tail -3 "$T/serve.err")"
    echo "hostile client $mode: $(tr '\n' ' ' <<<"$out")"
done
wait "$GOOD_PID" || die "the good clone failed beside the hostile clients: $(cat "$T/good.err")"
"$K" verify "$T/good" >/dev/null || die "the good clone does not verify"
"$K" read "$T/good" | cmp -s - "$T/big.txt" || die "the good clone differs from the source"
closes=$(grep -c 'closed:' "$T/serve.err")
[ "$closes" -ge ${#CLIENT_SPECS[@]} ] ||
    die "the server logged $closes closed connections, expected a reason for each attack"

# ---- memory per connection: 8 peers each hold all but the last byte of a 4 MiB frame
rss_kib() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB$/\1/p' "/proc/$SERVE_PID/status"; }
LIMIT_KIB=$((8 * 1024)) # 4 MiB plus one frame of 4 MiB
HOLDERS=8
base=$(rss_kib)
hold_pids=()
for i in $(seq 1 $HOLDERS); do
    "$EVIL" attack hold-frame "$PORT" "$BIG_KEY" >"$T/hold-$i.out" 2>&1 &
    hold_pids+=($!)
done
peak=$base
for _ in $(seq 1 60); do # until the server dropped them as stalled (1 s after the last byte)
    r=$(rss_kib)
    [ "${r:-0}" -gt "$peak" ] && peak=$r
    sleep 0.05
done
for p in "${hold_pids[@]}"; do wait "$p" || die "hold-frame: the server did not close a holder: $(cat "$T"/hold-*.out)"; done
held=$(grep -c "holding" "$T"/hold-*.out | awk -F: '{ s += $2 } END { print s }')
[ "$held" = $HOLDERS ] || die "hold-frame: only $held of $HOLDERS holders sent their frame"
per=$(((peak - base) / HOLDERS))
echo "memory: $HOLDERS peers holding a 4 MiB frame each grew the server from $base to $peak KiB ($per KiB per connection, limit $LIMIT_KIB)"
if [ "${KL_SANITIZE:-0}" = 1 ]; then
    # AddressSanitizer adds shadow memory and redzones to every allocation and keeps freed
    # memory in quarantine: resident memory is not the program's own there. The accounting
    # check below still runs; the resident-memory bound is checked in the normal build.
    echo "memory: resident-memory bound not checked under AddressSanitizer (its shadow and quarantine count too)"
else
    [ "$per" -le "$LIMIT_KIB" ] || die "memory per connection: $per KiB, above $LIMIT_KIB"
fi
most=$(sed -n 's/.*(it held at most \([0-9]*\) KiB)$/\1/p' "$T/serve.err" | sort -n | tail -1)
[ -n "$most" ] || die "the server did not report the memory its connections held"
[ "$most" -le "$LIMIT_KIB" ] || die "a connection held $most KiB, above $LIMIT_KIB"
[ "$most" -ge 4096 ] || die "the holders' 4 MiB frames are not in the server's accounting (most $most KiB)"
echo "memory: the most any connection held was $most KiB (limit $LIMIT_KIB)"
kill -INT "$SERVE_PID"
wait "$SERVE_PID" || die "kappalog serve did not end cleanly"

# ---- out of file descriptors: a server under `ulimit -n 64` and 80 idle connections takes
# the peers its descriptors allow and refuses the rest (accepted and closed): it must not spin
# (at most 0.2 s of CPU in 2 s, from /proc/PID/stat) and still serves a good clone afterwards
(
    ulimit -n 64
    exec "$K" serve "$T/small" --listen 127.0.0.1:0 --stall-ms 2000 >"$T/fd.out" 2>"$T/fd.err"
) &
FD_PID=$!
PIDS+=("$FD_PID")
for _ in $(seq 1 100); do grep -q '^key ' "$T/fd.out" 2>/dev/null && break; sleep 0.05; done
FD_PORT=$(sed -n 's/^listening on //p' "$T/fd.out")
[ -n "$FD_PORT" ] || die "fds: kappalog serve under ulimit -n 64 did not start: $(cat "$T/fd.err")"
(
    for _ in $(seq 1 80); do exec {c}<>"/dev/tcp/127.0.0.1/${FD_PORT##*:}" || break; done
    sleep 3
) 2>/dev/null &
IDLE_PID=$!
PIDS+=("$IDLE_PID")
ticks() { awk '{ print $14 + $15 }' "/proc/$FD_PID/stat"; }
sleep 0.5
t0=$(ticks)
sleep 2
t1=$(ticks)
[ $((t1 - t0)) -le 20 ] ||
    die "fds: the server used $((t1 - t0)) ticks of CPU in 2 s with 80 idle connections (it spins)"
grep -q "at most [0-9]* peers at once" "$T/fd.err" || die "fds: the server did not say its peer cap"
grep -q "refused [0-9]* connection" "$T/fd.err" || die "fds: the server did not log a refusal: $(tail -3 "$T/fd.err")"
wait "$IDLE_PID"
"$K" clone "$FD_PORT" "$SMALL_KEY" "$T/fd-good" --stall-ms 5000 2>"$T/fd-good.err" ||
    die "fds: the good clone failed after the idle connections: $(cat "$T/fd-good.err")"
"$K" read "$T/fd-good" | cmp -s - "$T/small.txt" || die "fds: the good clone differs from the source"
kill -INT "$FD_PID"
wait "$FD_PID" || die "fds: kappalog serve did not end cleanly"
echo "fds: under ulimit -n 64, 80 idle connections cost the server $((t1 - t0)) ticks in 2 s ($(grep -m1 'at most' "$T/fd.err" | sed 's/^kappalog serve: //'); $(grep -m1 refused "$T/fd.err" | sed 's/^kappalog serve: //')); a good clone then succeeded"
# ---- --max-peers 2: two connections are kept, the third is accepted and closed at once (it
# reads end of file) while the two stay open; once one of them goes, a new one is kept again.
# A bad value is one line on stderr and exit status 2.
"$K" serve "$T/small" --listen 127.0.0.1:0 --stall-ms 20000 --max-peers 2 >"$T/cap.out" 2>"$T/cap.err" &
pid=$!
PIDS+=("$pid")
wait_listening max-peers "$T/cap.out"
grep -q "at most 2 peers at once (as asked)" "$T/cap.err" ||
    die "max-peers: the server did not say its cap of 2: $(cat "$T/cap.err")"
# connected COUNT: wait until the server has logged COUNT connections
connected() {
    for _ in $(seq 1 100); do
        [ "$(grep -c ' connected$' "$T/cap.err")" -ge "$1" ] && return 0
        sleep 0.02
    done
    die "max-peers: the server did not log connection $1: $(cat "$T/cap.err")"
}
# still_open FD WHAT: nothing to read from FD within 0.5 s, and not its end
still_open() {
    read -r -t 0.5 -u "$1" _
    [ $? -gt 128 ] || die "max-peers: $2 was closed by the server: $(cat "$T/cap.err")"
}
exec {c1}<>"/dev/tcp/127.0.0.1/${port##*:}" || die "max-peers: connection 1"
connected 1
exec {c2}<>"/dev/tcp/127.0.0.1/${port##*:}" || die "max-peers: connection 2"
connected 2
exec {c3}<>"/dev/tcp/127.0.0.1/${port##*:}" || die "max-peers: connection 3 was not accepted"
read -r -t 5 -u "$c3" _
st=$?
[ $st -eq 1 ] || die "max-peers: the third connection did not read end of file (read status $st)"
still_open "$c1" "the first connection"
still_open "$c2" "the second connection"
grep -q "refused 1 connection(s): 2 peers connected, the most this server takes" "$T/cap.err" ||
    die "max-peers: the refusal was not logged: $(cat "$T/cap.err")"
[ "$(grep -c ' connected$' "$T/cap.err")" -eq 2 ] || die "max-peers: the third became a peer"
exec {c3}>&-
exec {c1}>&-
for _ in $(seq 1 100); do grep -q ' closed: ' "$T/cap.err" && break; sleep 0.02; done
grep -q ' closed: ' "$T/cap.err" || die "max-peers: the server did not see connection 1 go"
exec {c4}<>"/dev/tcp/127.0.0.1/${port##*:}" || die "max-peers: connection 4"
connected 3
still_open "$c4" "a connection after one of the two went"
still_open "$c2" "the second connection"
exec {c2}>&- {c4}>&-
kill -INT "$pid"
wait "$pid" || die "max-peers: kappalog serve did not end cleanly"
for v in 0 -1 abc; do
    "$K" serve "$T/small" --listen 127.0.0.1:0 --max-peers "$v" >"$T/cap-bad.out" 2>"$T/cap-bad.err"
    st=$?
    [ $st -eq 2 ] || die "max-peers $v: exit status $st, not 2"
    [ "$(wc -l <"$T/cap-bad.err")" -eq 1 ] && [ ! -s "$T/cap-bad.out" ] ||
        die "max-peers $v: not one line on stderr and nothing on stdout: $(cat "$T/cap-bad.err")"
    grep -qE "^kappalog: serve: --max-peers ($v is outside 1\.\.|'$v' is not a non-negative)" \
        "$T/cap-bad.err" || die "max-peers $v: $(cat "$T/cap-bad.err")"
done
echo "max-peers: with --max-peers 2 the third connection read end of file while two stayed open; 0, -1 and abc refused"
echo "test_hostile: ${#SERVER_SPECS[@]} hostile servers refused, ${#CLIENT_SPECS[@]} hostile clients closed, the good clone finished, memory per connection within $LIMIT_KIB KiB, no spin out of descriptors, --max-peers kept"
