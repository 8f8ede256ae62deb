#!/usr/bin/env bash
# test_testserver.sh - the agent's test peers work, and their faults happen.
#
# Starts nb-testserver and nb-faultproxy (tests/support/agentd and
# tests/support/faultproxy) on 127.0.0.1 and checks them with curl:
# check-in, offer, reports, health ack, fleet enrolment, artifacts with
# Range through a proxy that injects nothing; the test modes (lost health
# ack, forced 403/410, silence); then each fault of the proxy: bit flips
# change bytes (the same ones again for the same seed), drops cut
# transfers (and curl's Range resume still assembles the exact file),
# stalls delay without corrupting. Each proxy's summary line is checked
# against what the transfer saw.
#
# Needs: NOBRICK_BUILD (the build tree), curl, cmp, awk, head.
set -euo pipefail

BUILD=${NOBRICK_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
SRV=$BUILD/tests/nb-testserver
PX=$BUILD/tests/nb-faultproxy
for b in "$SRV" "$PX"; do
    [ -x "$b" ] || { echo "test_testserver: $b is not built" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "test_testserver: needs curl" >&2; exit 1; }

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

checks=0
fail() {
    echo "FAIL: $*" >&2
    for f in srv.err px*.err; do
        [ -f "$f" ] && { echo "--- $f (last lines)" >&2; tail -n 15 "$f" >&2; }
    done
    exit 1
}
ok() { checks=$((checks + 1)); }

# start NAME CMD...: runs CMD in the background (stdout NAME.out, stderr
# NAME.err), waits for its "port N" line; sets PORT and LASTPID.
start() {
    local name=$1 i
    shift
    "$@" >"$name.out" 2>"$name.err" &
    LASTPID=$!
    PIDS+=("$LASTPID")
    for i in $(seq 100); do
        PORT=$(awk 'NR == 1 && $1 == "port" { print $2 }' "$name.out")
        [ -n "$PORT" ] && return 0
        kill -0 "$LASTPID" 2>/dev/null || fail "$name exited: $(cat "$name.err")"
        sleep 0.05
    done
    fail "$name printed no port line"
}

# stop_proxy PID NAME: SIGTERM, wait, and put its summary line in SUMMARY.
stop_proxy() {
    kill -TERM "$1"
    wait "$1" || fail "$2 exited $? after SIGTERM"
    SUMMARY=$(grep '^summary ' "$2.out" || true)
    [ -n "$SUMMARY" ] || fail "$2 printed no summary"
}
# field NAME: the value of NAME=... in SUMMARY.
field() { printf '%s\n' "$SUMMARY" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }

# req EXPECTED_STATUS CURL_ARGS...: the answer goes to file $OUT (default
# body) and, when that is body, into BODY; fails on another status.
req() {
    local want=$1 code out=${OUT:-body}
    shift
    code=$(curl -sS -o "$out" -w '%{http_code}' "$@") || fail "curl $* failed"
    BODY=
    [ "$out" != body ] || BODY=$(cat body)
    [ "$code" = "$want" ] || fail "curl $*: status $code, wanted $want: $BODY"
    ok
}
has() { printf '%s' "$BODY" | grep -qF -- "$1" || fail "answer lacks $1: $BODY"; ok; }

# ------------------------------------------------------------------ setup
mkdir art
SIZE=300000
head -c $SIZE /dev/urandom >art/fw-1.1.0.nbpkg
CHECKIN='{"hw_rev":"sim-1","version":"1.0.0","security_version":1,"slots":[{"slot":0,"state":"CONFIRMED","version":"1.0.0","security_version":1},{"slot":1,"state":"EMPTY"}]}'
AUTH=(-H 'Authorization: Bearer tok-1')

start srv "$SRV" --port 0 --artifacts art --device dev-1:tok-1 \
    --fleet-token fleet-secret --log events.jsonl
SRVPORT=$PORT
SRVPID=$LASTPID
CTL=http://127.0.0.1:$SRVPORT/test

start px0 "$PX" --listen 0 --to 127.0.0.1:$SRVPORT
PX0=$LASTPID
U=http://127.0.0.1:$PORT/api/v1
req 200 -d "{\"public_url\":\"http://127.0.0.1:$PORT\"}" $CTL/mode

# --------------------------------------------------- device API, no faults
req 200 "${AUTH[@]}" -d "$CHECKIN" $U/devices/dev-1/checkin
has '"action":"none"'
req 401 -d "$CHECKIN" $U/devices/dev-1/checkin
has '"error":"unauthorized"'
req 401 -H 'Authorization: Bearer wrong' -d "$CHECKIN" $U/devices/dev-1/checkin
req 400 "${AUTH[@]}" -d '{"hw_rev":"sim-1"}' $U/devices/dev-1/checkin
req 400 "${AUTH[@]}" -d 'not json' $U/devices/dev-1/checkin
has '"error":"bad_request"'
head -c 70000 /dev/zero | tr '\0' ' ' >big.json
req 413 "${AUTH[@]}" --data-binary @big.json $U/devices/dev-1/checkin
has '"error":"too_large"'

req 200 -d '{"device":"*","offer":{"rollout":"r-7","version":"1.1.0","security_version":2,"payload_offset":1024,"payload_size":298976,"artifact":"fw-1.1.0.nbpkg"}}' $CTL/offer
req 200 "${AUTH[@]}" -d "$CHECKIN" $U/devices/dev-1/checkin
has '"action":"update"'
has '"rollout":"r-7"'
has "\"package_size\":$SIZE"
ART=$(printf '%s' "$BODY" | sed -n 's/.*"http":"\([^"]*\)".*/\1/p')
[ "$ART" = "$U/artifacts/fw-1.1.0.nbpkg" ] || fail "offered artifact URL $ART"
ok
req 200 "${AUTH[@]}" -d "${CHECKIN//1.0.0/1.1.0}" $U/devices/dev-1/checkin
has '"action":"none"'

req 200 "${AUTH[@]}" -d '{"rollout":"r-7","version":"1.1.0","state":"downloading","bytes":40960,"total":298976}' $U/devices/dev-1/reports
has '"ok":true'
req 200 "${AUTH[@]}" -d '{"rollout":"r-7","version":"1.1.0","state":"failed","reason":"NB_ERR_CORRUPT","detail":"block 3"}' $U/devices/dev-1/reports
req 400 "${AUTH[@]}" -d '{"rollout":"r-7","version":"1.1.0","state":"sleeping"}' $U/devices/dev-1/reports
req 400 "${AUTH[@]}" -d '{"rollout":"r-7","version":"1.1.0","state":"downloading"}' $U/devices/dev-1/reports
req 409 "${AUTH[@]}" -d '{"rollout":"r-8","version":"1.1.0","state":"verified"}' $U/devices/dev-1/reports
has '"error":"conflict"'
grep -q '"device":"dev-1","kind":"report","rollout":"r-7","version":"1.1.0","state":"downloading","bytes":40960' events.jsonl \
    || fail "report not in the event log: $(cat events.jsonl)"
ok
[ "$(grep -c '"kind":"report"' events.jsonl)" = 2 ] || fail "refused reports were logged"
ok

req 200 "${AUTH[@]}" -d '{"rollout":"r-7","version":"1.1.0","healthy":true,"nonce":"5f1c0e9a2b7d4c31","detail":"exit 0"}' $U/devices/dev-1/health
[ "$BODY" = '{"ack":true,"nonce":"5f1c0e9a2b7d4c31"}' ] || fail "health ack $BODY"
ok

# Fleet enrolment: the first check-in gets a device token, used from then on.
req 200 -H 'Authorization: Bearer fleet-secret' -d "$CHECKIN" $U/devices/dev-2/checkin
TOK2=$(printf '%s' "$BODY" | sed -n 's/.*"device_token":"\([0-9a-f]*\)".*/\1/p')
[ ${#TOK2} = 32 ] || fail "no device_token in $BODY"
ok
req 200 -H "Authorization: Bearer $TOK2" -d '{"rollout":"r-7","version":"1.1.0","state":"verified"}' $U/devices/dev-2/reports
req 401 -H 'Authorization: Bearer fleet-secret' -d "$CHECKIN" $U/devices/dev-2/checkin
req 401 -H 'Authorization: Bearer fleet-secret' -d '{"rollout":"r-7","version":"1.1.0","state":"verified"}' $U/devices/dev-3/reports

# Artifacts: whole, ranges, errors.
OUT=whole req 200 "$ART"
cmp -s whole art/fw-1.1.0.nbpkg || fail "whole artifact differs"
ok
OUT=part req 206 -D hdr -r 1000-1999 "$ART"
tr -d '\r' <hdr | grep -qx "Content-Range: bytes 1000-1999/$SIZE" || fail "Content-Range: $(cat hdr)"
cmp -s part <(tail -c +1001 art/fw-1.1.0.nbpkg | head -c 1000) || fail "range bytes differ"
ok
OUT=part req 206 -D hdr -r 299900- "$ART"
cmp -s part <(tail -c 100 art/fw-1.1.0.nbpkg) || fail "open range differs"
ok
OUT=part req 206 -D hdr -r -100 "$ART"
tr -d '\r' <hdr | grep -qx "Content-Range: bytes 299900-299999/$SIZE" || fail "suffix Content-Range: $(cat hdr)"
ok
req 416 -D hdr -r $SIZE- "$ART"
tr -d '\r' <hdr | grep -qx "Content-Range: bytes \*/$SIZE" || fail "416 Content-Range: $(cat hdr)"
ok
req 404 $U/artifacts/fw-9.nbpkg
has '"error":"not_found"'
req 400 --path-as-is "$U/artifacts/..%2Fevents.jsonl"
req 400 --path-as-is "$U/artifacts/../../etc/passwd"
req 400 "$U/artifacts/.hidden"

# Test modes.
req 200 -d '{"drop_health_ack":true}' $CTL/mode
has '"drop_health_ack":true'
n0=$(grep -c '"kind":"health"' events.jsonl)
rc=0; curl -sS -o /dev/null "${AUTH[@]}" -d '{"rollout":"r-7","version":"1.1.0","healthy":true,"nonce":"n2"}' $U/devices/dev-1/health 2>/dev/null || rc=$?
[ $rc = 52 ] || [ $rc = 56 ] || fail "lost health ack: curl exit $rc, wanted 52 or 56"
[ "$(grep -c '"kind":"health"' events.jsonl)" = $((n0 + 1)) ] || fail "health report with a lost ack not recorded"
ok
req 200 -d '{"drop_health_ack":false,"status_artifacts":403,"status_reports":410}' $CTL/mode
req 403 "$ART"
has '"error":"forbidden"'
req 410 "${AUTH[@]}" -d '{"rollout":"r-7","version":"1.1.0","state":"verified"}' $U/devices/dev-1/reports
req 200 -d '{"status_artifacts":0,"status_reports":0,"silent":true}' $CTL/mode
rc=0; curl -sS -o /dev/null --max-time 1 "${AUTH[@]}" -d "$CHECKIN" $U/devices/dev-1/checkin 2>/dev/null || rc=$?
[ $rc = 28 ] || fail "silent server: curl exit $rc, wanted 28 (timeout)"
ok
req 200 -d '{"silent":false}' $CTL/mode
req 400 -d '{"no_such_mode":1}' $CTL/mode
req 200 "${AUTH[@]}" -d "$CHECKIN" $U/devices/dev-1/checkin
req 200 $CTL/stats
has '"dropped":1'

stop_proxy $PX0 px0
[ "$(field drops)" = 0 ] && [ "$(field flips)" = 0 ] && [ "$(field stalls)" = 0 ] \
    || fail "a proxy without faults made some: $SUMMARY"
# one whole artifact + 1200 bytes of ranges + headers and JSON
[ "$(field bytes_down)" -gt $((SIZE + 1200)) ] || fail "proxy counted too few bytes: $SUMMARY"
ok

A=/api/v1/artifacts/fw-1.1.0.nbpkg

# ------------------------------------------------------------------ flips
# One bit in every 20000 bytes from the server: ~15 in the file. A fixed
# seed makes the same flips, so two runs give the same wrong bytes.
flip_run() {
    start "px$1" "$PX" --listen 0 --to 127.0.0.1:$SRVPORT --seed 7 --flip-every-bytes 20000
    local pid=$LASTPID
    curl -sS -o "flip$1" "http://127.0.0.1:$PORT$A" || fail "curl through the flipping proxy failed"
    stop_proxy $pid "px$1"
}
flip_run 1
FLIPS=$(field flips)
flip_run 2
[ "$(field flips)" = "$FLIPS" ] || fail "flips differ between runs with one seed"
[ "$FLIPS" -ge 10 ] || fail "too few flips: $SUMMARY"
[ "$(wc -c <flip1)" = $SIZE ] || fail "flipped transfer has the wrong length"
! cmp -s flip1 art/fw-1.1.0.nbpkg || fail "bytes were not changed by --flip-every-bytes"
ndiff=$( (cmp -l flip1 art/fw-1.1.0.nbpkg || true) | wc -l)
[ "$ndiff" -ge 1 ] && [ "$ndiff" -le "$FLIPS" ] || fail "$ndiff bytes differ for $FLIPS flips"
cmp -s flip1 flip2 || fail "the same seed flipped different bytes"
ok

# ------------------------------------------------------------------ drops
start px3 "$PX" --listen 0 --to 127.0.0.1:$SRVPORT --seed 11 --drop-every-bytes 40000
PX3=$LASTPID
rc=0; curl -sS -o cut "http://127.0.0.1:$PORT$A" 2>/dev/null || rc=$?
[ $rc = 18 ] || [ $rc = 56 ] || fail "a dropped transfer: curl exit $rc, wanted 18 or 56"
got=$(wc -c <cut)
[ "$got" -lt $SIZE ] || fail "the transfer was not cut ($got bytes)"
ok
# Resume with Range until complete: the result is exact, despite the drops.
rm -f resumed
for i in $(seq 60); do
    [ -f resumed ] && [ "$(wc -c <resumed)" -ge $SIZE ] && break
    curl -sS -C - -o resumed "http://127.0.0.1:$PORT$A" 2>/dev/null || true
done
cmp -s resumed art/fw-1.1.0.nbpkg || fail "resumed download differs after $i tries"
ok
stop_proxy $PX3 px3
[ "$(field drops)" -ge 7 ] || fail "too few drops: $SUMMARY"
ok

start px4 "$PX" --listen 0 --to 127.0.0.1:$SRVPORT --seed 5 --drop-random 0.0001
PX4=$LASTPID
for i in 1 2 3; do curl -sS -o /dev/null "http://127.0.0.1:$PORT$A" 2>/dev/null || true; done
stop_proxy $PX4 px4
[ "$(field drops)" -ge 1 ] || fail "--drop-random 0.0001 dropped nothing in 900 kB: $SUMMARY"
ok

# ----------------------------------------------------------------- stalls
start px5 "$PX" --listen 0 --to 127.0.0.1:$SRVPORT --seed 3 --stall-ms 200 --stall-every-bytes 100000
PX5=$LASTPID
t0=$(date +%s%N)
curl -sS -o stalled "http://127.0.0.1:$PORT$A" || fail "curl through the stalling proxy failed"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
cmp -s stalled art/fw-1.1.0.nbpkg || fail "a stalled transfer changed bytes"
stop_proxy $PX5 px5
[ "$(field stalls)" -ge 2 ] || fail "too few stalls: $SUMMARY"
[ $ms -ge 390 ] || fail "stalls of 200 ms did not delay the transfer (${ms} ms): $SUMMARY"
ok

# Both directions: a flipped request reaches the server (which then fails
# to parse it or answers about a wrong name): it does not arrive intact.
start px6 "$PX" --listen 0 --to 127.0.0.1:$SRVPORT --seed 1 --flip-every-bytes 50 --direction up
PX6=$LASTPID
curl -sS -o /dev/null "${AUTH[@]}" -d "$CHECKIN" "http://127.0.0.1:$PORT/api/v1/devices/dev-1/checkin" 2>/dev/null || true
stop_proxy $PX6 px6
[ "$(field flips)" -ge 2 ] || fail "--direction up flipped nothing: $SUMMARY"
ok

# The server stops cleanly on SIGTERM (in an ASan build: no leak, no error).
kill -TERM $SRVPID
rc=0; wait $SRVPID || rc=$?
[ $rc = 0 ] || fail "nb-testserver exited $rc after SIGTERM"
! grep -l 'Sanitizer\|runtime error' ./*.err || fail "sanitizer reports above"
ok

echo "test_testserver: $checks checks passed (server log: $(wc -l <srv.err) lines)"
