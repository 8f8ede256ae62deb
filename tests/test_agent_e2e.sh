#!/usr/bin/env bash
# test_agent_e2e.sh - nobrick-agent end to end, real programs on 127.0.0.1.
#
# nb-testserver (tests/support/agentd) serves the device API and the
# packages; nobrick-sim makes the flash files and the signed test
# packages; nobrick-agent runs once per case (--once) against a flash
# file, and the server's event log (JSON lines) says what it reported.
#
#   update        1.0.0 -> 1.1.0 over HTTP: downloading .. confirmed, the
#                 device boots 1.1.0 CONFIRMED; the next run has nothing
#                 to do; the same over the file transport
#   bad signature a bit flipped in the manifest's signature: failed
#                 (NB_ERR_SIGNATURE), the flash file byte for byte as
#                 before, one artifact request, not retried
#   wrong hw rev  a package for hardware revision sim-9: likewise
#                 (NB_ERR_HW_REV)
#   health fails  the health check exits 3: no confirm, reverted, 1.0.0
#   ack lost      the server drops the health acknowledgement: no
#                 confirm, reverted
#   reset in trial the agent is killed while it waits for the ack; the
#                 next start (power-on) finds the trial and reverts it
#   404 / 403     one artifact request, reported, no loop (and none at the
#                 next run)
#   503 / away    bounded retries with backoff, then a clear final state
#   mqtt          the update over MQTT: mosquitto and tests/mqtt's
#                 responder serving the packages (skipped without
#                 mosquitto)
#   killed        the agent is killed (SIGKILL) in the middle of a 1 MiB
#                 download; the next start resumes from the journal's
#                 progress, not from zero
#   faulty link   through nb-faultproxy: a 1 MiB download dropped about
#                 ten times completes with at most 1.1x its bytes; bits
#                 flipped in transit are caught per block and re-fetched
#
# Needs: NOBRICK_BUILD (the build tree: nobrick-agent, nobrick-sim,
# tests/nb-testserver, tests/nb-faultproxy, tests/test_agent,
# tests/mqtt_responder), curl, cmp, od, dd; mosquitto for the MQTT case.
set -euo pipefail

BUILD=${NOBRICK_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
AGENT=$BUILD/nobrick-agent
SIM=${NOBRICK_SIM:-$BUILD/nobrick-sim}
[ -n "$SIM" ] || SIM=$BUILD/nobrick-sim
SRV=$BUILD/tests/nb-testserver
MK=$BUILD/tests/test_agent
PX=$BUILD/tests/nb-faultproxy
for b in "$AGENT" "$SIM" "$SRV" "$MK" "$PX"; do
    [ -x "$b" ] || { echo "test_agent_e2e: $b is not built" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "test_agent_e2e: needs curl" >&2; exit 1; }

T=$(mktemp -d)
chmod 755 "$T" # mosquitto, started as root, reads its config as "mosquitto"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
cd "$T"
mkdir art

checks=0
CASE=-
fail() {
    echo "FAIL [$CASE]: $*" >&2
    for f in srv.err agent.err; do
        [ -f "$f" ] && { echo "--- $f (last lines)" >&2; tail -n 25 "$f" >&2; }
    done
    exit 1
}
ok() { checks=$((checks + 1)); }

# ------------------------------------------------------------- the server

"$SRV" --artifacts art --log events.jsonl --quiet \
    --device dev-ok:tok-ok --device dev-file:tok-file \
    --device dev-bad:tok-bad --device dev-hw:tok-hw \
    --device dev-sick:tok-sick --device dev-noack:tok-noack \
    --device dev-reset:tok-reset --device dev-404:tok-404 \
    --device dev-403:tok-403 --device dev-503:tok-503 \
    --device dev-drop:tok-drop --device dev-flip:tok-flip \
    --device dev-resume:tok-resume --device dev-mqtt:tok-mqtt \
    >srv.out 2>srv.err &
PIDS+=($!)
SRV_PID=$!
PORT=
for _ in $(seq 100); do
    PORT=$(awk 'NR == 1 && $1 == "port" { print $2 }' srv.out)
    [ -n "$PORT" ] && break
    kill -0 "$SRV_PID" 2>/dev/null || fail "nb-testserver exited: $(cat srv.err)"
    sleep 0.05
done
[ -n "$PORT" ] || fail "nb-testserver printed no port line"
URL=http://127.0.0.1:$PORT

# ctl PATH JSON: POST to the server's test control API.
ctl() {
    local code
    code=$(curl -sS -o ctl.out -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' --data "$2" "$URL/test/$1") ||
        fail "control $1 failed"
    [ "$code" = 200 ] || fail "control $1 $2: HTTP $code: $(cat ctl.out)"
}
# offer DEVICE ARTIFACT [EXTRA_JSON_MEMBERS]
offer() {
    ctl offer "{\"device\":\"$1\",\"offer\":{\"rollout\":\"r-$1\",\"version\":\"1.1.0\",\"security_version\":2,\"artifact\":\"$2\"${3:+,$3}}}"
}
# artifact_requests: the server's artifact request counter.
artifact_requests() {
    curl -sS "$URL/test/stats" | sed -n 's/.*"artifact_requests": *\([0-9]*\).*/\1/p'
}
# reports DEVICE: the states it reported, repeats folded: "a,b,c".
reports() {
    grep "\"device\":\"$1\"" events.jsonl | grep '"kind":"report"' |
        sed -n 's/.*"state":"\([a-z]*\)".*/\1/p' | uniq | paste -sd, -
}
# reason DEVICE: the reason of its failed report(s).
reason() {
    grep "\"device\":\"$1\"" events.jsonl | grep '"state":"failed"' |
        sed -n 's/.*"reason":"\([A-Z_]*\)".*/\1/p' | paste -sd, -
}
# boots FLASH: "version state" the bootloader boots now.
boots() {
    local j
    j=$("$SIM" boot --flash "$1") || fail "nobrick-sim boot $1: $j"
    echo "$(echo "$j" | sed -n 's/.*"version":"\([0-9.]*\)".*/\1/p') $(echo "$j" | sed -n 's/.*"state":"\([A-Z]*\)".*/\1/p')"
}
# newflash NAME [SLOT_SIZE]: a device running 1.0.0 CONFIRMED.
newflash() {
    "$SIM" init --flash "$1.flash" --layout ab --slot-size "${2:-262144}" \
        --image v100.nbpkg >/dev/null || fail "nobrick-sim init $1"
}
# agent DEVICE [--key value ...]: one cycle; sets RC and OUT (its JSON).
agent() {
    local dev=$1
    shift
    set +e
    OUT=$("$AGENT" --once --flash "$dev.flash" --device-id "$dev" \
        --device-token "tok-${dev#dev-}" --server-url "$URL" \
        --transport http --state-file "$dev.state" \
        --retry-base-ms 100 --retry-max-ms 400 --retry-attempts 3 \
        --ack-timeout-ms 2000 --progress-interval-ms 50 \
        --connect-timeout-ms 2000 --request-timeout-ms 5000 \
        --stall-timeout-ms 5000 --log-level debug "$@" 2>>agent.err)
    RC=$?
    set -e
    echo "$OUT" >>agent.out
}
expect_rc() { [ "$RC" = "$1" ] || fail "agent exit $RC, expected $1 ($OUT)"; ok; }
expect_eq() { [ "$1" = "$2" ] || fail "${3:-value}: got '$1', expected '$2'"; ok; }
json_field() { echo "$OUT" | sed -n "s/.*\"$1\":\"*\\([^,\"}]*\\).*/\\1/p"; }

# -------------------------------------------------------------- packages

"$SIM" make-image --version 1.0.0 --security-version 1 --size 100000 \
    --out v100.nbpkg >/dev/null || fail "make-image 1.0.0"
"$SIM" make-image --version 1.1.0 --security-version 2 --size 200000 \
    --out art/v110.nbpkg >/dev/null || fail "make-image 1.1.0"
# The detached manifest (.nbman): the COSE_Sign1 bytes after the header.
mlen=$(od -An -tu4 -j8 -N4 art/v110.nbpkg | tr -d ' ')
dd if=art/v110.nbpkg of=art/v110.nbman bs=1 skip=12 count="$mlen" 2>/dev/null
# Bad signature: one bit of the manifest's signature (its last 64 bytes).
cp art/v110.nbpkg art/bad.nbpkg
off=$((12 + mlen - 5))
byte=$(od -An -tu1 -j"$off" -N1 art/bad.nbpkg | tr -d ' ')
printf "$(printf '\\%03o' $((byte ^ 16)))" |
    dd of=art/bad.nbpkg bs=1 seek="$off" conv=notrunc 2>/dev/null
cmp -s art/v110.nbpkg art/bad.nbpkg && fail "the bit flip did not happen"
# A larger one for the faulty link.
"$SIM" make-image --version 1.1.0 --security-version 2 --size 1048576 \
    --out art/big.nbpkg >/dev/null || fail "make-image 1.1.0 (1 MiB)"
# Another hardware revision (make-image only makes sim-1 packages).
"$MK" make-package art/hw9.nbpkg 1.1.0 2 200000 5 sim-9 ||
    fail "test_agent make-package"

# ---------------------------------------------------------------- update

CASE=update
newflash dev-ok
offer dev-ok v110.nbpkg '"manifest":"v110.nbman"'
agent dev-ok
expect_rc 0
expect_eq "$(json_field outcome)" updated outcome
expect_eq "$(json_field bytes)" 200000 "bytes transferred"
expect_eq "$(reports dev-ok)" "downloading,verified,installing,trial,confirmed" reports
grep '"device":"dev-ok"' events.jsonl | grep -q '"kind":"health".*"healthy":true' ||
    fail "no healthy health report"
ok
expect_eq "$(boots dev-ok.flash)" "1.1.0 CONFIRMED" boot
# Nothing to do next time (the server sees 1.1.0).
agent dev-ok
expect_rc 0
expect_eq "$(json_field outcome)" up-to-date outcome

CASE=update-file
newflash dev-file
offer dev-file v110.nbpkg
agent dev-file --transport file --file-dir art
expect_rc 0
expect_eq "$(reports dev-file)" "downloading,verified,installing,trial,confirmed" reports
expect_eq "$(boots dev-file.flash)" "1.1.0 CONFIRMED" boot

# ----------------------------------------------------------- refusals

# refused DEVICE ARTIFACT REASON [agent args]
refused() {
    local dev=$1 before after
    newflash "$dev"
    offer "$dev" "$2"
    cp "$dev.flash" "$dev.before"
    before=$(artifact_requests)
    agent "$dev" "${@:4}"
    expect_rc 1
    expect_eq "$(reports "$dev")" failed reports
    expect_eq "$(reason "$dev")" "$3" reason
    after=$(artifact_requests)
    expect_eq $((after - before)) 1 "artifact requests"
    cmp -s "$dev.flash" "$dev.before" || fail "the flash changed"
    ok
    # Offered again: not tried again.
    agent "$dev" "${@:4}"
    expect_rc 1
    expect_eq "$(artifact_requests)" "$after" "artifact requests (2nd run)"
    cmp -s "$dev.flash" "$dev.before" || fail "the flash changed (2nd run)"
    ok
    expect_eq "$(boots "$dev.flash")" "1.0.0 CONFIRMED" boot
}

CASE=bad-signature
refused dev-bad bad.nbpkg NB_ERR_SIGNATURE
CASE=wrong-hw-rev
refused dev-hw hw9.nbpkg NB_ERR_HW_REV

# ---------------------------------------------------- health and acks

CASE=health-fails
newflash dev-sick
offer dev-sick v110.nbpkg
agent dev-sick --health-cmd 'test "$NOBRICK_VERSION" = 1.1.0 && exit 3'
expect_rc 2
expect_eq "$(json_field outcome)" reverted outcome
expect_eq "$(reports dev-sick)" "downloading,verified,installing,trial,failed,reverted" reports
expect_eq "$(reason dev-sick)" NB_ERR_STATE reason
grep '"device":"dev-sick"' events.jsonl | grep -q '"kind":"health".*"healthy":false' ||
    fail "no unhealthy health report"
ok
expect_eq "$(boots dev-sick.flash)" "1.0.0 CONFIRMED" boot

CASE=ack-lost
newflash dev-noack
offer dev-noack v110.nbpkg
ctl mode '{"drop_health_ack":true}'
agent dev-noack --health-cmd true
ctl mode '{"drop_health_ack":false}'
expect_rc 2
expect_eq "$(reports dev-noack)" "downloading,verified,installing,trial,failed,reverted" reports
expect_eq "$(reason dev-noack)" NB_ERR_IO reason
n=$(grep '"device":"dev-noack"' events.jsonl | grep -c '"kind":"health"')
[ "$n" -ge 1 ] || fail "no health report recorded"
ok
expect_eq "$(boots dev-noack.flash)" "1.0.0 CONFIRMED" boot

CASE=reset-in-trial
newflash dev-reset
offer dev-reset v110.nbpkg
ctl mode '{"drop_health_ack":true}'
"$AGENT" --once --flash dev-reset.flash --device-id dev-reset \
    --device-token tok-reset --server-url "$URL" --transport http \
    --state-file dev-reset.state --ack-timeout-ms 60000 \
    --retry-base-ms 200 --retry-max-ms 400 --log-level debug \
    >>agent.out 2>>agent.err &
APID=$!
PIDS+=("$APID")
for _ in $(seq 200); do
    grep '"device":"dev-reset"' events.jsonl | grep -q '"kind":"health"' && break
    sleep 0.05
done
grep '"device":"dev-reset"' events.jsonl | grep -q '"kind":"health"' ||
    fail "the agent sent no health report"
kill -KILL "$APID"          # the power goes, the trial is unconfirmed
wait "$APID" 2>/dev/null || true
ctl mode '{"drop_health_ack":false}'
agent dev-reset --health-cmd true
expect_rc 2
expect_eq "$(reports dev-reset)" "downloading,verified,installing,trial,failed,reverted" reports
expect_eq "$(reason dev-reset)" NB_ERR_STATE reason
expect_eq "$(boots dev-reset.flash)" "1.0.0 CONFIRMED" boot

# ------------------------------------------------------ 4xx, 5xx, away

# http_error DEVICE STATUS REASON
http_error() {
    local dev=$1 before
    newflash "$dev"
    offer "$dev" v110.nbpkg
    ctl mode "{\"status_artifacts\":$2}"
    before=$(artifact_requests)
    agent "$dev"
    expect_rc 1
    expect_eq "$(reason "$dev")" "$3" reason
    expect_eq $(($(artifact_requests) - before)) 1 "artifact requests"
    agent "$dev"
    ctl mode '{"status_artifacts":0}'
    expect_rc 1
    expect_eq $(($(artifact_requests) - before)) 1 "artifact requests (2nd run)"
    expect_eq "$(boots "$dev.flash")" "1.0.0 CONFIRMED" boot
}
CASE=404
http_error dev-404 404 NB_ERR_NOENT
CASE=403
http_error dev-403 403 NB_ERR_DENIED

CASE=503
newflash dev-503
offer dev-503 v110.nbpkg
ctl mode '{"status_artifacts":503}'
before=$(artifact_requests)
agent dev-503
ctl mode '{"status_artifacts":0}'
expect_rc 1
expect_eq "$(reason dev-503)" NB_ERR_IO reason
expect_eq $(($(artifact_requests) - before)) 3 "artifact requests (retry_attempts)"
grep -q 'next in' agent.err || fail "no backoff logged"
ok
# Not for good: the server is back, the next run updates.
agent dev-503
expect_rc 0
expect_eq "$(boots dev-503.flash)" "1.1.0 CONFIRMED" boot

# ---------------------------------------------------------- faulty link

# proxy ARGS...: an nb-faultproxy in front of the server; sets PXPORT.
proxy() {
    "$PX" --listen 0 --to "127.0.0.1:$PORT" --quiet "$@" >px.out 2>px.err &
    PX_PID=$!
    PIDS+=("$PX_PID")
    PXPORT=
    for _ in $(seq 100); do
        PXPORT=$(awk 'NR == 1 && $1 == "port" { print $2 }' px.out)
        [ -n "$PXPORT" ] && return 0
        kill -0 "$PX_PID" 2>/dev/null || fail "nb-faultproxy exited: $(cat px.err)"
        sleep 0.05
    done
    fail "nb-faultproxy printed no port line"
}
proxy_stop() {
    kill -TERM "$PX_PID"
    wait "$PX_PID" || true
}
# offer_via DEVICE ARTIFACT: the artifact through the proxy.
offer_via() {
    local size
    size=$(wc -c <"art/$2")
    ctl offer "{\"device\":\"$1\",\"offer\":{\"rollout\":\"r-$1\",\"version\":\"1.1.0\",\"security_version\":2,\"package_size\":$size,\"artifacts\":{\"http\":\"http://127.0.0.1:$PXPORT/api/v1/artifacts/$2\"}}}"
}

CASE=drops
newflash dev-drop 2097152
proxy --seed 11 --drop-every-bytes 100000
offer_via dev-drop big.nbpkg
agent dev-drop --retry-attempts 5
proxy_stop
expect_rc 0
expect_eq "$(boots dev-drop.flash)" "1.1.0 CONFIRMED" boot
drops=$(sed -n 's/.*drops=\([0-9]*\).*/\1/p' px.out)
bytes=$(json_field bytes)
reopens=$(json_field reopens)
echo "test_agent_e2e: 1 MiB through $drops drops: $bytes bytes, $reopens reopens"
[ "$drops" -ge 5 ] || fail "only $drops drops happened"
[ "$reopens" -ge 5 ] || fail "only $reopens reopens"
[ $((bytes * 10)) -le $((1048576 * 11)) ] || fail "$bytes bytes: more than 1.1x"
ok

CASE=mqtt
export PATH="$PATH:/usr/sbin:/sbin"
RESPONDER=$BUILD/tests/mqtt_responder
if command -v mosquitto >/dev/null && [ -x "$RESPONDER" ]; then
    port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
    MQ=
    for _ in 1 2 3 4 5; do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        port_busy "$p" && continue
        printf '%s\n' "persistence false" "listener $p 127.0.0.1" \
            "allow_anonymous true" >mosq.conf
        chmod 644 mosq.conf
        mosquitto -c mosq.conf >mosq.log 2>&1 &
        MQ_PID=$!
        PIDS+=("$MQ_PID")
        for _ in $(seq 100); do
            port_busy "$p" && { MQ=$p; break; }
            kill -0 "$MQ_PID" 2>/dev/null || break
            sleep 0.05
        done
        [ -n "$MQ" ] && break
        kill "$MQ_PID" 2>/dev/null || true
    done
    [ -n "$MQ" ] || fail "mosquitto did not start: $(cat mosq.log)"
    "$RESPONDER" --port "$MQ" --dir art --ready mqtt.ready --log 0 \
        >responder.out 2>responder.err &
    PIDS+=($!)
    for _ in $(seq 200); do
        [ -e mqtt.ready ] && break
        sleep 0.05
    done
    [ -e mqtt.ready ] || fail "the MQTT responder is not ready: $(cat responder.err)"
    newflash dev-mqtt
    ctl offer '{"device":"dev-mqtt","offer":{"rollout":"r-dev-mqtt","version":"1.1.0","security_version":2,"artifacts":{"mqtt":{"artifact":"v110.nbpkg"}}}}'
    agent dev-mqtt --transport mqtt --mqtt-port "$MQ"
    expect_rc 0
    expect_eq "$(reports dev-mqtt)" "downloading,verified,installing,trial,confirmed" reports
    expect_eq "$(boots dev-mqtt.flash)" "1.1.0 CONFIRMED" boot
else
    echo "test_agent_e2e: mosquitto or the MQTT responder missing: MQTT case skipped"
fi

CASE=killed
# One drop at a random byte of the first 900 KB, then a long backoff, in
# which the agent is killed: the journal has the progress.
newflash dev-resume 2097152
proxy --seed 3 --drop-every-bytes 900000
offer_via dev-resume big.nbpkg
: >agent-bg.err
"$AGENT" --once --flash dev-resume.flash --device-id dev-resume \
    --device-token tok-resume --server-url "$URL" --transport http \
    --state-file dev-resume.state --retry-base-ms 4000 --retry-max-ms 4000 \
    --log-level debug >>agent.out 2>agent-bg.err &
APID=$!
PIDS+=("$APID")
for _ in $(seq 200); do
    grep -q 'download: NB_ERR_IO; attempt 2' agent-bg.err && break
    kill -0 "$APID" 2>/dev/null || break
    sleep 0.05
done
grep -q 'download: NB_ERR_IO; attempt 2' agent-bg.err ||
    { cat agent-bg.err >>agent.err; fail "no dropped download to interrupt"; }
kill -KILL "$APID"
wait "$APID" 2>/dev/null || true
cat agent-bg.err >>agent.err
proxy_stop
offer dev-resume big.nbpkg  # the same rollout and version, direct
agent dev-resume
expect_rc 0
expect_eq "$(json_field resumed)" 1 resumed
off=$(json_field resume_offset)
bytes=$(json_field bytes)
echo "test_agent_e2e: killed mid-download; resumed at payload byte $off, $bytes bytes fetched after the restart"
[ "$off" -gt 0 ] || fail "resumed from zero"
[ $((bytes + off)) -le $((1048576 + 8192)) ] || fail "re-fetched $bytes bytes after $off"
ok
expect_eq "$(boots dev-resume.flash)" "1.1.0 CONFIRMED" boot

CASE=bit-flips
# A flip can also hit an HTTP header (a Content-Range digit): the transport
# then refuses the range (NB_ERR_RANGE) and the attempt ends for good, by
# design. Which bytes are hit depends on timing (bytes in flight when a
# range is dropped count too), so a run that ends that way is repeated
# with another seed; a corrupt image is never confirmed in any run.
done_flip=0
for seed in 5 6 7 8; do
    rm -f dev-flip.state
    newflash dev-flip
    proxy --seed "$seed" --flip-every-bytes 40000
    offer_via dev-flip v110.nbpkg
    agent dev-flip --retry-attempts 5
    proxy_stop
    if [ "$RC" != 0 ]; then
        r=$(grep '"device":"dev-flip"' events.jsonl | grep '"state":"failed"' |
            tail -n 1 | sed -n 's/.*"reason":"\([A-Z_]*\)".*/\1/p')
        case $r in
        NB_ERR_RANGE|NB_ERR_DENIED|NB_ERR_IO) ;;
        *) fail "flips (seed $seed): agent exit $RC, reason '$r' ($OUT)" ;;
        esac
        expect_eq "$(boots dev-flip.flash)" "1.0.0 CONFIRMED" "boot (seed $seed)"
        echo "test_agent_e2e: seed $seed: a flip hit a header ($r); again"
        continue
    fi
    expect_eq "$(boots dev-flip.flash)" "1.1.0 CONFIRMED" boot
    flips=$(sed -n 's/.*flips=\([0-9]*\).*/\1/p' px.out)
    bad=$(json_field bad_blocks)
    echo "test_agent_e2e: $flips bits flipped in transit: $bad bad blocks re-fetched"
    [ "$flips" -ge 1 ] || fail "no bit was flipped"
    [ "$bad" -ge 1 ] || fail "no bad block seen"
    ok
    done_flip=1
    break
done
[ "$done_flip" = 1 ] || fail "no run with bit flips completed"

CASE=server-away
newflash dev-away
# A port nobody listens on: take the server's, after stopping it.
kill "$SRV_PID"
wait "$SRV_PID" 2>/dev/null || true
start=$(date +%s)
agent dev-away
expect_rc 3
expect_eq "$(json_field outcome)" offline outcome
[ $(($(date +%s) - start)) -lt 10 ] || fail "giving up took too long"
ok
expect_eq "$(boots dev-away.flash)" "1.0.0 CONFIRMED" boot

echo "test_agent_e2e: $checks checks passed"
