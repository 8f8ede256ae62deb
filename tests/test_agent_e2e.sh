#!/usr/bin/env bash
# test_agent_e2e.sh - nobrick-agent end to end against a server that
# misbehaves, real programs on 127.0.0.1.
#
# Everything a correct server does (updates over HTTP, the file transport
# and MQTT, refusals of corrupted packages and manifests, failing health,
# lost acknowledgements, resets in the trial, paused and aborted rollouts,
# power cuts, a killed agent, drops and bit flips on the link, no server at
# all) is tested against the real nobrick-server in test_agent_server.sh.
# What is left here needs a server that does what nobrick-server never
# does, on purpose: nb-testserver (tests/support/agentd), whose test
# control API (/test/offer, /test/mode) makes it offer anything and fail
# in a chosen way. nobrick-sim makes the flash files and the signed test
# packages; nobrick-agent runs once per case (--once), and the server's
# event log (JSON lines) says what it reported.
#
#   wrong hw rev  an offer of a package for hardware revision sim-9 (the
#                 real server offers only packages that list the device's
#                 revision): failed (NB_ERR_HW_REV) before a byte is
#                 written, the flash file byte for byte as before, one
#                 artifact request, not tried again
#   ack dropped   the server records the health report and closes the
#                 connection without an answer, every time: the agent
#                 sends it again within ack_timeout_ms, then does not
#                 confirm; reverted
#   404 / 403     every artifact request answered 404 / 403: one request,
#                 reported, no loop (and none at the next run)
#   503           every artifact request answered 503: bounded retries with
#                 backoff, a clear final state, not for good (the next run
#                 updates)
#   dropped       check-ins closed without an answer: retry_attempts
#                 attempts with backoff, then outcome offline (exit 3)
#   silent        check-ins held unanswered: each attempt ends after
#                 request_timeout_ms, then outcome offline (exit 3)
#
# Needs: NOBRICK_BUILD (the build tree: nobrick-agent, nobrick-sim,
# tests/nb-testserver, tests/test_agent), curl, cmp, od, dd.
set -euo pipefail

BUILD=${NOBRICK_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
AGENT=$BUILD/nobrick-agent
SIM=${NOBRICK_SIM:-$BUILD/nobrick-sim}
[ -n "$SIM" ] || SIM=$BUILD/nobrick-sim
SRV=$BUILD/tests/nb-testserver
MK=$BUILD/tests/test_agent
for b in "$AGENT" "$SIM" "$SRV" "$MK"; do
    [ -x "$b" ] || { echo "test_agent_e2e: $b is not built" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "test_agent_e2e: needs curl" >&2; exit 1; }
unset http_proxy https_proxy all_proxy HTTPS_PROXY ALL_PROXY no_proxy NO_PROXY

T=$(mktemp -d)
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
    --device dev-hw:tok-hw --device dev-noack:tok-noack \
    --device dev-404:tok-404 --device dev-403:tok-403 \
    --device dev-503:tok-503 --device dev-drop:tok-drop \
    --device dev-silent:tok-silent \
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
# counter NAME: one of the server's counters (artifact_requests, dropped).
counter() {
    curl -sS "$URL/test/stats" | sed -n "s/.*\"$1\": *\\([0-9]*\\).*/\\1/p"
}
artifact_requests() { counter artifact_requests; }
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
# newflash NAME: a device running 1.0.0 CONFIRMED.
newflash() {
    "$SIM" init --flash "$1.flash" --layout ab --slot-size 262144 \
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
# Another hardware revision (make-image only makes sim-1 packages).
"$MK" make-package art/hw9.nbpkg 1.1.0 2 200000 5 sim-9 ||
    fail "test_agent make-package"

# ---------------------------------------------------------- wrong hw rev

CASE=wrong-hw-rev
newflash dev-hw
offer dev-hw hw9.nbpkg
cp dev-hw.flash dev-hw.before
before=$(artifact_requests)
agent dev-hw
expect_rc 1
expect_eq "$(reports dev-hw)" failed reports
expect_eq "$(reason dev-hw)" NB_ERR_HW_REV reason
after=$(artifact_requests)
expect_eq $((after - before)) 1 "artifact requests"
cmp -s dev-hw.flash dev-hw.before || fail "the flash changed"
ok
# Offered again: not tried again.
agent dev-hw
expect_rc 1
expect_eq "$(artifact_requests)" "$after" "artifact requests (2nd run)"
cmp -s dev-hw.flash dev-hw.before || fail "the flash changed (2nd run)"
ok
expect_eq "$(boots dev-hw.flash)" "1.0.0 CONFIRMED" boot

# ----------------------------------------------------------- ack dropped

CASE=ack-dropped
newflash dev-noack
offer dev-noack v110.nbpkg
ctl mode '{"drop_health_ack":true}'
agent dev-noack --health-cmd true
ctl mode '{"drop_health_ack":false}'
expect_rc 2
expect_eq "$(reports dev-noack)" "downloading,verified,installing,trial,failed,reverted" reports
expect_eq "$(reason dev-noack)" NB_ERR_IO reason
n=$(grep '"device":"dev-noack"' events.jsonl | grep -c '"kind":"health"')
[ "$n" -ge 2 ] || fail "the health report was sent $n times, not again"
ok
expect_eq "$(boots dev-noack.flash)" "1.0.0 CONFIRMED" boot

# ------------------------------------------------------ 4xx, 5xx

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

# ------------------------------------------------- dropped and held check-ins

CASE=dropped-checkins
newflash dev-drop
offer dev-drop v110.nbpkg
ctl mode '{"drop_checkins":true}'
before=$(counter dropped)
agent dev-drop
ctl mode '{"drop_checkins":false}'
expect_rc 3
expect_eq "$(json_field outcome)" offline outcome
expect_eq $(($(counter dropped) - before)) 3 "check-ins dropped (retry_attempts)"
expect_eq "$(boots dev-drop.flash)" "1.0.0 CONFIRMED" boot
# Not for good either.
agent dev-drop
expect_rc 0
expect_eq "$(boots dev-drop.flash)" "1.1.0 CONFIRMED" boot

CASE=silent
newflash dev-silent
offer dev-silent v110.nbpkg
ctl mode '{"silent":true}'
start=$(date +%s%N)
agent dev-silent --request-timeout-ms 300
ms=$((($(date +%s%N) - start) / 1000000))
ctl mode '{"silent":false}'
expect_rc 3
expect_eq "$(json_field outcome)" offline outcome
# Three attempts of 300 ms each (and backoffs between them), no more.
[ "$ms" -ge 900 ] && [ "$ms" -lt 5000 ] || fail "giving up took $ms ms"
ok
expect_eq "$(boots dev-silent.flash)" "1.0.0 CONFIRMED" boot

echo "test_agent_e2e: $checks checks passed"
