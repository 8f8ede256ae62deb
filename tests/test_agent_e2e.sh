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
# in a chosen way. Each case has its own nb-testserver, so that the cases
# run in parallel. nobrick-sim makes the flash files and the signed test
# packages; nobrick-agent runs once per step (--once), and the server's
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
#                 attempts with backoff, then outcome offline (exit 3);
#                 not for good either
#   silent        check-ins held unanswered: each attempt ends after
#                 request_timeout_ms, then outcome offline (exit 3)
#
# Needs: NOBRICK_BUILD (the build tree: nobrick-agent, nobrick-sim,
# tests/nb-testserver, tests/test_agent), curl, cmp.
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
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT
cd "$T"
mkdir art

# W: the case running; its server, files and devices are W.*, dev-W.
W=main
checks=0
CASE=-
fail() {
    echo "FAIL [$CASE]: $*" >&2
    for f in "$W.srv.err" "$W.agent.err"; do
        [ -f "$f" ] && { echo "--- $f (last lines)" >&2; tail -n 25 "$f" >&2; }
    done
    exit 1
}
ok() { checks=$((checks + 1)); }
expect_rc() { [ "$RC" = "$1" ] || fail "agent exit $RC, expected $1 ($OUT)"; ok; }
expect_eq() { [ "$1" = "$2" ] || fail "${3:-value}: got '$1', expected '$2'"; ok; }

# ------------------------------------------------------------ the servers

declare -A SPORT
# start_server NAME: an nb-testserver for case NAME, device dev-NAME with
# token tok-NAME, the packages of art/, its event log NAME.events.jsonl.
start_server() {
    : >"$1.srv.out"
    "$SRV" --artifacts art --log "$1.events.jsonl" --quiet \
        --device "dev-$1:tok-$1" >"$1.srv.out" 2>"$1.srv.err" &
    local pid=$! l=
    PIDS+=("$pid")
    for ((i = 0; i < 500; i++)); do
        read -r l <"$1.srv.out" || true
        [[ $l =~ ^port\ ([0-9]+)$ ]] && { SPORT[$1]=${BASH_REMATCH[1]}; return 0; }
        kill -0 "$pid" 2>/dev/null || fail "nb-testserver exited: $(<"$1.srv.err")"
        sleep 0.02
    done
    fail "nb-testserver printed no port line"
}
# url: the server of the case running.
url() { echo "http://127.0.0.1:${SPORT[$W]}"; }

# ctl PATH JSON: POST to the server's test control API.
ctl() {
    local code
    code=$(curl -sS -o "$W.ctl.out" -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' --data "$2" "$(url)/test/$1") ||
        fail "control $1 failed"
    [ "$code" = 200 ] || fail "control $1 $2: HTTP $code: $(<"$W.ctl.out")"
}
# offer ARTIFACT: the offer of 1.1.0 in ARTIFACT to dev-W.
offer() {
    ctl offer "{\"device\":\"dev-$W\",\"offer\":{\"rollout\":\"r-$W\",\"version\":\"1.1.0\",\"security_version\":2,\"artifact\":\"$1\"}}"
}
# counter NAME: one of the server's counters (artifact_requests, dropped).
counter() {
    local s
    s=$(curl -sS "$(url)/test/stats") || fail "stats"
    [[ $s =~ \"$1\":\ *([0-9]+) ]] || fail "no $1 in $s"
    echo "${BASH_REMATCH[1]}"
}
# reports: the states dev-W reported, repeats folded: "a,b,c".
reports() {
    grep '"kind":"report"' "$W.events.jsonl" |
        sed -n 's/.*"state":"\([a-z]*\)".*/\1/p' | uniq | paste -sd, -
}
# reason: the reason of its failed report(s).
reason() {
    grep '"state":"failed"' "$W.events.jsonl" |
        sed -n 's/.*"reason":"\([A-Z_]*\)".*/\1/p' | paste -sd, -
}
# boots: "version state" the bootloader boots now on dev-W.
boots() {
    local j
    j=$("$SIM" boot --flash "dev-$W.flash") || fail "nobrick-sim boot: $j"
    [[ $j =~ \"version\":\"([0-9.]*)\".*\"state\":\"([A-Z]*)\" ]] ||
        fail "nobrick-sim boot: $j"
    echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
}
# newflash: dev-W running 1.0.0 CONFIRMED.
newflash() {
    "$SIM" init --flash "dev-$W.flash" --layout ab --slot-size 262144 \
        --image v100.nbpkg >/dev/null || fail "nobrick-sim init"
}
# agent [--key value ...]: one cycle of dev-W; sets RC and OUT (its JSON).
agent() {
    set +e
    OUT=$("$AGENT" --once --flash "dev-$W.flash" --device-id "dev-$W" \
        --device-token "tok-$W" --server-url "$(url)" \
        --transport http --state-file "dev-$W.state" \
        --retry-base-ms 50 --retry-max-ms 200 --retry-attempts 3 \
        --ack-timeout-ms 2000 --progress-interval-ms 50 \
        --connect-timeout-ms 2000 --request-timeout-ms 5000 \
        --stall-timeout-ms 5000 --log-level debug "$@" 2>>"$W.agent.err")
    RC=$?
    set -e
    echo "$OUT" >>"$W.agent.out"
}
# outcome: the agent's outcome.
outcome() { [[ $OUT =~ \"outcome\":\"([a-z-]*)\" ]] && echo "${BASH_REMATCH[1]}"; }

# bg NAME: run case_NAME in the background (with its own server), its
# output in NAME.log; bg_wait: wait for them all, fail if one failed.
BG=()
bg() {
    start_server "$1"
    (W=$1 CASE=$1 checks=0
     "case_$1"
     echo "$checks" >"$1.checks") >"$1.log" 2>&1 &
    PIDS+=($!)
    BG+=("$1:$!")
}
bg_wait() {
    local b bad=
    for b in "${BG[@]}"; do
        if wait "${b#*:}"; then
            checks=$((checks + $(<"${b%%:*}.checks")))
        else
            cat "${b%%:*}.log" >&2
            bad="$bad ${b%%:*}"
        fi
    done
    BG=()
    [ -z "$bad" ] || { CASE=$bad; fail "failed:$bad"; }
}

# -------------------------------------------------------------- packages

"$SIM" make-image --version 1.0.0 --security-version 1 --size 100000 \
    --out v100.nbpkg >/dev/null || fail "make-image 1.0.0"
"$SIM" make-image --version 1.1.0 --security-version 2 --size 200000 \
    --out art/v110.nbpkg >/dev/null || fail "make-image 1.1.0"
# Another hardware revision (make-image only makes sim-1 packages).
"$MK" make-package art/hw9.nbpkg 1.1.0 2 200000 5 sim-9 ||
    fail "test_agent make-package"

# ----------------------------------------------------------------- cases

case_hw() {
    # An offer the real server never makes: a package for sim-9.
    newflash
    offer hw9.nbpkg
    cp "dev-$W.flash" "$W.before"
    agent
    expect_rc 1
    expect_eq "$(reports)" failed reports
    expect_eq "$(reason)" NB_ERR_HW_REV reason
    expect_eq "$(counter artifact_requests)" 1 "artifact requests"
    cmp -s "dev-$W.flash" "$W.before" || fail "the flash changed"
    ok
    # Offered again: not tried again.
    agent
    expect_rc 1
    expect_eq "$(counter artifact_requests)" 1 "artifact requests (2nd run)"
    cmp -s "dev-$W.flash" "$W.before" || fail "the flash changed (2nd run)"
    ok
    expect_eq "$(boots)" "1.0.0 CONFIRMED" boot
}

case_noack() {
    newflash
    offer v110.nbpkg
    ctl mode '{"drop_health_ack":true}'
    agent --health-cmd true --ack-timeout-ms 600
    expect_rc 2
    expect_eq "$(reports)" "downloading,verified,installing,trial,failed,reverted" reports
    expect_eq "$(reason)" NB_ERR_IO reason
    local n
    n=$(grep -c '"kind":"health"' "$W.events.jsonl")
    [ "$n" -ge 2 ] || fail "the health report was sent $n times, not again"
    ok
    expect_eq "$(boots)" "1.0.0 CONFIRMED" boot
}

# http_error STATUS REASON: every artifact request answered STATUS.
http_error() {
    newflash
    offer v110.nbpkg
    ctl mode "{\"status_artifacts\":$1}"
    agent
    expect_rc 1
    expect_eq "$(reason)" "$2" reason
    expect_eq "$(counter artifact_requests)" 1 "artifact requests"
    agent
    expect_rc 1
    expect_eq "$(counter artifact_requests)" 1 "artifact requests (2nd run)"
    expect_eq "$(boots)" "1.0.0 CONFIRMED" boot
}
case_404() { http_error 404 NB_ERR_NOENT; }
case_403() { http_error 403 NB_ERR_DENIED; }

case_503() {
    newflash
    offer v110.nbpkg
    ctl mode '{"status_artifacts":503}'
    agent
    ctl mode '{"status_artifacts":0}'
    expect_rc 1
    expect_eq "$(reason)" NB_ERR_IO reason
    expect_eq "$(counter artifact_requests)" 3 "artifact requests (retry_attempts)"
    grep -q 'next in' "$W.agent.err" || fail "no backoff logged"
    ok
    # Not for good: the server is back, the next run updates.
    agent
    expect_rc 0
    expect_eq "$(boots)" "1.1.0 CONFIRMED" boot
}

case_drop() {
    newflash
    offer v110.nbpkg
    ctl mode '{"drop_checkins":true}'
    agent
    ctl mode '{"drop_checkins":false}'
    expect_rc 3
    expect_eq "$(outcome)" offline outcome
    expect_eq "$(counter dropped)" 3 "check-ins dropped (retry_attempts)"
    expect_eq "$(boots)" "1.0.0 CONFIRMED" boot
    # Not for good either.
    agent
    expect_rc 0
    expect_eq "$(boots)" "1.1.0 CONFIRMED" boot
}

case_silent() {
    newflash
    offer v110.nbpkg
    ctl mode '{"silent":true}'
    local start ms
    start=$(date +%s%N)
    agent --request-timeout-ms 200
    ms=$((($(date +%s%N) - start) / 1000000))
    ctl mode '{"silent":false}'
    expect_rc 3
    expect_eq "$(outcome)" offline outcome
    # Three attempts of 200 ms each (and backoffs between them), no more.
    [ "$ms" -ge 600 ] && [ "$ms" -lt 5000 ] || fail "giving up took $ms ms"
    ok
    expect_eq "$(boots)" "1.0.0 CONFIRMED" boot
}

for c in hw noack 404 403 503 drop silent; do
    bg "$c"
done
bg_wait

echo "test_agent_e2e: $checks checks passed"
