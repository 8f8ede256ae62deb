#!/usr/bin/env bash
# test_ddi.sh - nobrick-server's hawkBit DDI API (cmd/nobrick-server/ddi.c,
# docs/hawkbit.md) with a real client: SWUpdate's suricatta.
#
# One nobrick-server on 127.0.0.1 (port 0, SQLite, admin and fleet tokens
# by file, the test's own root key as root_pub, poll_seconds 1). Through
# the management API (curl): a signed 1.1.0 package for sim-1, a CMS-signed
# .swu as its extra file fw.swu, devices ddi-swu and ddi-curl, and rollout
# r-1 to hw_rev sim-1 (100 %, always in a window).
#
#   shapes     base poll, deploymentBase, artifact (whole, one range,
#              .MD5SUM) as docs/hawkbit.md says; hashes match the file
#   refusals   no token, a wrong target token, another device's token, a
#              wrong gateway token, a Bearer token, an unknown tenant,
#              action or artifact, wrong methods, bad JSON, bad feedback
#              and configData bodies: 4xx JSON errors, nothing recorded
#   gateway    an unknown controller polling with the fleet token is
#              registered; no offer until its configData says hw_rev
#              sim-1; the gateway token is refused for a device that has
#              its own token
#   swupdate   swupdate -u (suricatta, target token) polls, sends its
#              configData, downloads fw.swu, installs it (the raw handler
#              writes the payload into a device file) and reports
#              proceeding; restarted with -c 2 (as after a reboot into
#              the new image) it posts closed/success: the server records
#              the rollout as confirmed and the device as 1.1.0
#   failure    ddi-curl reports proceeding, then closed/failure: failed
#              with the details; the rollout pauses itself (1 of 3 failed
#              is over 5 %); a later feedback is refused (409); no more
#              deploymentBase for it
#
# Skipped (exit 0, "SKIPPED") only when swupdate is not installed.
# Needs: NOBRICK_BUILD (nobrick, nobrick-server), curl, openssl, cpio,
# python3.
set -euo pipefail

SRC=${NOBRICK_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
BUILD=${NOBRICK_BUILD:-$SRC/build}
NB=$BUILD/nobrick
SRV=$BUILD/nobrick-server
. "$SRC/tests/support/swupdate.sh"

if ! swu_available; then
    echo "test_ddi: SKIPPED: swupdate (with openssl and cpio) is not installed (make deps)"
    exit 0
fi
for b in "$NB" "$SRV"; do
    [ -x "$b" ] || { echo "test_ddi: $b is not built" >&2; exit 1; }
done
for c in curl python3; do
    command -v $c >/dev/null || { echo "test_ddi: needs $c" >&2; exit 1; }
done

T=$(mktemp -d)
SRV_PID=
cleanup() {
    swu_stop
    [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
cd "$T"

checks=0
CASE=setup
fail() {
    echo "FAIL [$CASE]: $*" >&2
    [ -s body ] && echo "  last body: $(head -c 2000 body)" >&2
    for f in srv.err swu.log swu2.log; do
        [ -s "$f" ] && { echo "--- $f (last lines)" >&2; tail -n 25 "$f" >&2; }
    done
    exit 1
}
ok() { checks=$((checks + 1)); }

# Python without a version manager's shim in front (those take seconds).
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
# py EXPR: print a Python expression of j = the JSON in ./body.
py() {
    "$PY" -c 'import json,sys; j=json.load(open("body")); print(eval(sys.argv[1]))' "$1" ||
        fail "cannot evaluate $1 on the body"
}
# checks EXPR...: each a Python condition on j (the JSON in ./body) and
# E (the environment); one interpreter for all (they are slow to start).
checks() {
    local out
    out=$("$PY" -c '
import json, os, sys
E = os.environ
try:
    j = json.load(open("body"))
except Exception as e:
    print("not JSON: %s" % e); sys.exit(1)
bad = 0
for c in sys.argv[1:]:
    try:
        r = eval(c)
    except Exception as e:
        r = "%s: %s" % (type(e).__name__, e)
    if r is not True:
        print("not true: %s (%s)" % (c, r)); bad = 1
sys.exit(bad)' "$@" 2>&1) || fail "$out"
    checks=$((checks + $#))
}
# expect WHAT GOT WANT
expect() { [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"; ok; }
# links: the link names of the base poll answer in ./body ("a,b").
links() { grep -o '"[A-Za-z]*":{"href"' body | cut -d'"' -f2 | sort | paste -sd, -; }

# req METHOD URL [curl args...]: HTTP status into $code, body into ./body.
req() {
    local m=$1 u=$2
    shift 2
    code=$(curl -sS -o body -w '%{http_code}' -X "$m" "$@" "$u") ||
        fail "curl $m $u failed"
}
# admin METHOD PATH [curl args...]
admin() {
    local m=$1 p=$2
    shift 2
    req "$m" "$URL$p" -H "Authorization: Bearer $ADMIN" "$@"
}
# ddi METHOD PATH TOKEN_HEADER [curl args...]: under /DEFAULT/controller/v1.
ddi() {
    local m=$1 p=$2 h=$3
    shift 3
    if [ -n "$h" ]; then
        req "$m" "$URL/DEFAULT/controller/v1$p" -H "Authorization: $h" "$@"
    else
        req "$m" "$URL/DEFAULT/controller/v1$p" "$@"
    fi
}
# refused STATUS METHOD PATH TOKEN_HEADER [curl args...]: a JSON error.
refused() {
    local want=$1
    shift
    ddi "$@"
    [ "$code" = "$want" ] || fail "$2 $3: HTTP $code, expected $want"
    grep -Eq '^\{"error":"[a-z_]+","message":"' body || fail "$2 $3: no JSON error body"
    ok
}
# state DEVICE: its state in rollout r-1 as the management API shows it.
state() {
    admin GET "/api/v1/devices/$1"
    [ "$code" = 200 ] || fail "GET device $1: HTTP $code"
    sed -n 's/.*"rollout":"r-1","state":"\([a-z]*\)".*/\1/p' body
}
# fb ACTION_PATH TOKEN EXECUTION FINISHED [DETAIL]: a feedback, HTTP 200.
fb() {
    ddi POST "$1/feedback" "TargetToken $2" -H 'Content-Type: application/json' \
        --data "{\"id\":${1##*/},\"time\":\"20260101T000000\",\"status\":{\"execution\":\"$3\",\"result\":{\"finished\":\"$4\",\"progress\":{\"cnt\":0,\"of\":1}},\"details\":[\"${5:-step}\"]}}"
    [ "$code" = 200 ] || fail "feedback $3/$4: HTTP $code"
    ok
}

# ------------------------------------------------------------------ setup

# A product's keys and a signed 1.1.0 package for sim-1.
"$NB" key generate --insecure-key-file root.pem >/dev/null 2>&1 || fail "key generate"
"$NB" key generate --insecure-key-file signer.pem >/dev/null 2>&1 || fail "key generate"
"$NB" key export-public --insecure-key-file root.pem --out root.pub.pem >/dev/null 2>&1 ||
    fail "key export-public"
"$NB" key export-public --insecure-key-file signer.pem --out signer.pub.pem >/dev/null 2>&1 ||
    fail "key export-public"
VENDOR=6ba7b810-9dad-11d1-80b4-00c04fd430c8
CLASS=6ba7b811-9dad-11d1-80b4-00c04fd430c8
"$NB" key delegate --insecure-key-file root.pem --key-pub signer.pub.pem \
    --valid-days 30 --vendor $VENDOR --class $CLASS --out root.cose >/dev/null 2>&1 ||
    fail "key delegate"
head -c 50000 /dev/urandom >fw.bin
"$NB" package --insecure-key-file signer.pem --delegation root.cose --in fw.bin \
    --version 1.1.0 --security-version 2 --hw-rev sim-1 --vendor $VENDOR \
    --class $CLASS --out v110.nbpkg >/dev/null 2>&1 || fail "nobrick package"

# The .swu for SWUpdate: its payload goes to device.img (raw handler).
swu_make_cert swu || fail "swu_make_cert"
head -c 20000 /dev/urandom >payload.bin
: >device.img
swu_build fw.swu payload.bin "$T/device.img" 1.0 1.1.0 swu/swu-cert.pem \
    swu/swu-key.pem || fail "swu_build"

ADMIN=admin-$RANDOM$RANDOM$RANDOM
FLEET=fleet-$RANDOM$RANDOM$RANDOM
printf '%s\n' "$ADMIN" >admin.tokens
printf '%s\n' "$FLEET" >fleet.tokens
mkdir art
"$SRV" --listen 127.0.0.1 --port 0 --db "$T/nb.db" --artifacts "$T/art" \
    --admin-token-file "$T/admin.tokens" --fleet-token-file "$T/fleet.tokens" \
    --root-pub "$T/root.pub.pem" --poll-seconds 1 --log-level info \
    >srv.out 2>srv.err &
SRV_PID=$!
PORT=
for _ in $(seq 200); do
    PORT=$(awk 'NR == 1 && $1 == "port" { print $2 }' srv.out)
    [ -n "$PORT" ] && break
    kill -0 "$SRV_PID" 2>/dev/null || fail "nobrick-server exited"
    sleep 0.05
done
[ -n "$PORT" ] || fail "nobrick-server printed no port line"
URL=http://127.0.0.1:$PORT

admin POST /api/v1/packages -H 'Content-Type: application/octet-stream' \
    --data-binary @v110.nbpkg
[ "$code" = 201 ] || fail "upload: HTTP $code"
PKG=$(py 'j["id"]')
admin PUT "/api/v1/packages/$PKG/files/fw.swu" \
    -H 'Content-Type: application/octet-stream' --data-binary @fw.swu
[ "$code" = 201 ] || fail "extra file: HTTP $code"
for d in ddi-swu ddi-curl; do
    admin POST /api/v1/devices -H 'Content-Type: application/json' \
        --data "{\"id\":\"$d\",\"hw_rev\":\"sim-1\"}"
    [ "$code" = 201 ] || fail "register $d: HTTP $code"
    eval "TOK_${d#ddi-}=$(py 'j["token"]')"
done
admin POST /api/v1/rollouts -H 'Content-Type: application/json' \
    --data "{\"package\":\"$PKG\",\"target\":{\"hw_revs\":[\"sim-1\"]},\"policy\":{\"schedule\":[{\"percent\":100}],\"windows\":\"always\"}}"
[ "$code" = 201 ] || fail "rollout: HTTP $code"
expect "rollout ID" "$(py 'j["id"]')" r-1

# ----------------------------------------------------------------- shapes

CASE=shapes
C="/ddi-curl"
export URL PKG
ddi GET "$C" "TargetToken $TOK_curl"
expect "base poll" "$code" 200
checks 'j["config"]["polling"]["sleep"] == "00:00:01"' \
    'j["_links"]["deploymentBase"]["href"] == E["URL"] + "/DEFAULT/controller/v1/ddi-curl/deploymentBase/1"' \
    'j["_links"]["configData"]["href"] == E["URL"] + "/DEFAULT/controller/v1/ddi-curl/configData"' \
    'sorted(j) == ["_links", "config"]'
# The tenant ignores case, as hawkBit's does.
req GET "$URL/default/controller/v1/ddi-curl" -H "Authorization: TargetToken $TOK_curl"
expect "lower-case tenant" "$code" 200
expect "offered" "$(state ddi-curl)" offered

ddi GET "$C/deploymentBase/1" "TargetToken $TOK_curl"
expect "deploymentBase" "$code" 200
export SIZE SHA1 MD5 SHA256
SIZE=$(stat -c %s fw.swu)
SHA1=$(sha1sum fw.swu | cut -d' ' -f1)
MD5=$(md5sum fw.swu | cut -d' ' -f1)
SHA256=$(sha256sum fw.swu | cut -d' ' -f1)
A='j["deployment"]["chunks"][0]["artifacts"][0]'
DL="$URL/DEFAULT/controller/v1/ddi-curl/softwaremodules/1/artifacts/fw.swu"
checks 'j["id"] == "1"' \
    'j["deployment"]["download"] == "forced" and j["deployment"]["update"] == "forced"' \
    'len(j["deployment"]["chunks"]) == 1' \
    '[j["deployment"]["chunks"][0][k] for k in ("part", "version", "name")] == ["os", "1.1.0", E["PKG"]]' \
    "len(j[\"deployment\"][\"chunks\"][0][\"artifacts\"]) == 1" \
    "$A[\"filename\"] == \"fw.swu\"" \
    "$A[\"size\"] == int(E[\"SIZE\"])" \
    "$A[\"hashes\"] == {\"sha1\": E[\"SHA1\"], \"md5\": E[\"MD5\"], \"sha256\": E[\"SHA256\"]}" \
    "$A[\"_links\"] == {\"download-http\": {\"href\": \"$DL\"}, \"md5sum-http\": {\"href\": \"$DL.MD5SUM\"}}"

req GET "$DL" -H "Authorization: TargetToken $TOK_curl"
expect "download" "$code" 200
cmp -s body fw.swu || fail "downloaded bytes differ from fw.swu"
ok
req GET "$DL" -H "Authorization: TargetToken $TOK_curl" -H 'Range: bytes=100-199'
expect "range" "$code" 206
cmp -s body <(dd if=fw.swu bs=1 skip=100 count=100 2>/dev/null) ||
    fail "range bytes differ"
ok
req GET "$DL.MD5SUM" -H "Authorization: TargetToken $TOK_curl"
expect "MD5SUM" "$code/$(cat body)" "200/$MD5  fw.swu"
req HEAD "$DL" -H "Authorization: TargetToken $TOK_curl" -I
expect "HEAD" "$code" 200

# --------------------------------------------------------------- refusals

CASE=refusals
refused 401 GET "$C" ""
refused 401 GET "$C" "TargetToken wrong-token"
refused 401 GET "$C" "TargetToken $TOK_swu"
refused 401 GET "$C" "GatewayToken wrong-token"
refused 401 GET "$C" "Bearer $TOK_curl"
# Downloads: a wrong token is refused; no token at all is fine while
# artifact_auth is off (the same file is public under /api/v1/artifacts).
req GET "$DL" -H "Authorization: TargetToken wrong-token"
expect "download, wrong token" "$code" 401
req GET "$DL"
expect "download, no token (artifact_auth 0)" "$code" 200
req GET "$URL/OTHER/controller/v1/ddi-curl" -H "Authorization: TargetToken $TOK_curl"
expect "unknown tenant" "$code" 404
refused 404 GET "$C/deploymentBase/7" "TargetToken $TOK_curl"
refused 404 GET "$C/deploymentBase/x" "TargetToken $TOK_curl"
refused 404 GET "$C/softwaremodules/1/artifacts/other.swu" "TargetToken $TOK_curl"
refused 404 GET "$C/cancelAction/1" "TargetToken $TOK_curl"
refused 405 POST "$C" "TargetToken $TOK_curl"
refused 405 GET "$C/configData" "TargetToken $TOK_curl"
J=(-H 'Content-Type: application/json')
F="$C/deploymentBase/1/feedback"
refused 400 POST "$F" "TargetToken $TOK_curl" "${J[@]}" --data '{"status":'
refused 400 POST "$F" "TargetToken $TOK_curl" "${J[@]}" --data '[1]'
refused 400 POST "$F" "TargetToken $TOK_curl" "${J[@]}" --data '{}'
refused 400 POST "$F" "TargetToken $TOK_curl" "${J[@]}" \
    --data '{"status":{"execution":"done","result":{"finished":"success"}}}'
refused 400 POST "$F" "TargetToken $TOK_curl" "${J[@]}" \
    --data '{"status":{"execution":"closed","result":{}}}'
refused 400 POST "$F" "TargetToken $TOK_curl" "${J[@]}" \
    --data '{"status":{"execution":"closed","result":{"finished":"maybe"}}}'
refused 400 POST "$F" "TargetToken $TOK_curl" "${J[@]}" \
    --data '{"id":2,"status":{"execution":"closed","result":{"finished":"failure"}}}'
refused 400 POST "$F" "TargetToken $TOK_curl" "${J[@]}" \
    --data '{"status":{"execution":"closed","result":{"finished":"failure"},"details":[1]}}'
refused 400 POST "$F" "TargetToken $TOK_curl" "${J[@]}" \
    --data '{"status":{"execution":"proceeding","result":{"progress":{"cnt":-1}}}}'
refused 401 POST "$F" "TargetToken $TOK_swu" "${J[@]}" \
    --data '{"status":{"execution":"closed","result":{"finished":"failure"}}}'
refused 409 POST "$F" "TargetToken $TOK_curl" "${J[@]}" \
    --data '{"status":{"execution":"canceled","result":{"finished":"success"}}}'
refused 400 PUT "$C/configData" "TargetToken $TOK_curl" "${J[@]}" --data '{"data":{"a":1}}'
refused 400 PUT "$C/configData" "TargetToken $TOK_curl" "${J[@]}" --data '{"mode":"x","data":{}}'
refused 400 PUT "$C/configData" "TargetToken $TOK_curl" "${J[@]}" --data '{"data":{"hw_rev":"bad rev"}}'
refused 400 PUT "$C/configData" "TargetToken $TOK_curl" "${J[@]}" --data 'nope'
# Nothing of that was recorded.
expect "still offered" "$(state ddi-curl)" offered
ddi GET "$C" "TargetToken $TOK_curl"
expect "links" "$(links)" configData,deploymentBase

# configData: stored; the link goes away; hw_rev is the device's.
ddi PUT "$C/configData" "TargetToken $TOK_curl" "${J[@]}" \
    --data '{"mode":"merge","data":{"hw_rev":"sim-1","serial":"A-42"}}'
expect "configData" "$code" 200
ddi GET "$C" "TargetToken $TOK_curl"
expect "configData link gone" "$(links)" deploymentBase

# ---------------------------------------------------------------- gateway

CASE=gateway
G=/ddi-gw
refused 404 GET "$G/deploymentBase/1" "GatewayToken $FLEET"
ddi GET "$G" "GatewayToken $FLEET"
expect "gateway first poll" "$code" 200
expect "no offer without hw_rev" "$(links)" configData
admin GET /api/v1/devices/ddi-gw
expect "registered" "$code" 200
ddi PUT "$G/configData" "GatewayToken $FLEET" "${J[@]}" \
    --data '{"id":"","time":"20260101T000000","status":{"result":{"finished":"success"},"execution":"closed","details":[""]},"data":{"hw_rev":"sim-1"}}'
expect "gateway configData" "$code" 200
ddi GET "$G" "GatewayToken $FLEET"
expect "offer after hw_rev" "$(links)" deploymentBase
grep -q '"href":"[^"]*/ddi-gw/deploymentBase/1"' body || fail "not ddi-gw's action 1"
refused 403 GET "$C" "GatewayToken $FLEET"

# --------------------------------------------------------------- swupdate

CASE=swupdate
swu_config swu.cfg hw_rev=sim-1
swu_start "$T/swu.log" swu.cfg board:1.0 swu/swu-cert.pem DEFAULT "$URL" \
    ddi-swu -k "$TOK_swu" || fail "swupdate did not start"
for _ in $(seq 300); do
    [ "$(state ddi-swu)" = installing ] && cmp -s -n 20000 payload.bin device.img && break
    kill -0 "$SWU_PID" 2>/dev/null || fail "swupdate exited"
    sleep 0.1
done
cmp -s -n 20000 payload.bin device.img || fail "the device file does not hold the payload"
ok
expect "after install" "$(state ddi-swu)" installing
swu_stop
# After the reboot into the new image: confirm (SWUpdate's -c 2).
swu_start "$T/swu2.log" swu.cfg board:1.0 swu/swu-cert.pem DEFAULT "$URL" \
    ddi-swu -k "$TOK_swu" -c 2 || fail "swupdate did not start again"
for _ in $(seq 200); do
    [ "$(state ddi-swu)" = confirmed ] && break
    sleep 0.1
done
expect "closed/success" "$(state ddi-swu)" confirmed
swu_stop
admin GET /api/v1/devices/ddi-swu
checks 'j["version"] == "1.1.0"' 'j["security_version"] == 2' 
grep -q 'path=/DEFAULT/controller/v1/ddi-swu/configData' srv.err ||
    fail "swupdate sent no configData"
ok
ddi GET /ddi-swu "TargetToken $TOK_swu"
expect "no deploymentBase after confirm" "$(links)" ""

# ---------------------------------------------------------------- failure

CASE=failure
fb "$C/deploymentBase/1" "$TOK_curl" proceeding none "Downloading"
expect "proceeding" "$(state ddi-curl)" downloading
fb "$C/deploymentBase/1" "$TOK_curl" closed failure "flash write failed"
expect "closed/failure" "$(state ddi-curl)" failed
admin GET /api/v1/devices/ddi-curl
checks '[(r["reason"], r["detail"]) for r in j["rollouts"] if r["rollout"] == "r-1"] == [("DDI_FAILURE", "flash write failed")]' 
admin GET /api/v1/rollouts/r-1
checks 'j["counts"]["confirmed"] == 1 and j["counts"]["failed"] == 1' \
    'j["state"] == "paused" and j["pause_reason"].startswith("auto:")' 
refused 409 POST "$F" "TargetToken $TOK_curl" "${J[@]}" \
    --data '{"status":{"execution":"closed","result":{"finished":"success"}}}'
fb "$C/deploymentBase/1" "$TOK_curl" closed failure "repeated"
expect "a repeat changes nothing" "$(state ddi-curl)" failed
ddi GET "$C" "TargetToken $TOK_curl"
expect "no deploymentBase after failure" "$(links)" ""

echo "test_ddi: $checks checks passed"
