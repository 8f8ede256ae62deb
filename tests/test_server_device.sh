#!/usr/bin/env bash
# test_server_device.sh - nobrick-server's device side end to end: the real
# binary on 127.0.0.1 (port 0, a temporary SQLite database and artifact
# directory), driven with curl, then the real agent through one update.
#
#   start-up     plain HTTP refused off loopback without --insecure-http;
#                --help
#   enrolment    a fleet token registers a device and returns its token
#   offer        a rollout (inserted with the sqlite3 CLI: the management
#                API is another part's test) is offered with its URLs
#   reports      downloading .. trial, health with the nonce echoed,
#                409 for a rollout the device is not in
#   refusals     bad and missing tokens, malformed JSON, oversize bodies
#                and uploads, traversal in artifact names, symlinks,
#                management calls with a device token: 4xx with a JSON error and
#                the database unchanged (.dump before and after)
#   artifacts    Range: single (206), several (multipart/byteranges),
#                suffix, unsatisfiable (416), HEAD, unknown (404)
#   kill -9      after acknowledged writes; restarted, they are there
#   agent        build/nobrick-agent enrols with the fleet token and
#                updates a simulated device 1.0.0 -> 1.1.0 to CONFIRMED;
#                again with the payload over MQTT (mosquitto; skipped
#                when it is not installed) and artifact_auth on
#   TLS          HTTPS with a self-signed certificate, a range over it
#
# Needs: NOBRICK_BUILD (nobrick-server, nobrick-agent, nobrick-sim), curl,
# sqlite3, openssl, sha256sum, od, dd, cmp; mosquitto for the MQTT case.
set -euo pipefail

BUILD=${NOBRICK_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
SRV=$BUILD/nobrick-server
AGENT=$BUILD/nobrick-agent
SIM=${NOBRICK_SIM:-$BUILD/nobrick-sim}
[ -n "$SIM" ] || SIM=$BUILD/nobrick-sim
for b in "$SRV" "$AGENT" "$SIM"; do
    [ -x "$b" ] || { echo "test_server_device: $b is not built" >&2; exit 1; }
done
for t in curl sqlite3 openssl sha256sum; do
    command -v "$t" >/dev/null || { echo "test_server_device: needs $t" >&2; exit 1; }
done

T=$(mktemp -d)
chmod 755 "$T" # mosquitto, started as root, reads its config as "mosquitto"
SRV_PID=
cleanup() {
    [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null || true
    [ -n "${TLS_PID:-}" ] && kill "$TLS_PID" 2>/dev/null || true
    [ -n "${MQ_PID:-}" ] && kill "$MQ_PID" 2>/dev/null || true
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
        [ -f "$f" ] && { echo "--- $f (last lines)" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}
ok() { checks=$((checks + 1)); }
expect_eq() { [ "$1" = "$2" ] || fail "${3:-value}: got '$1', expected '$2'"; ok; }
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }

FLEET=fleet-secret-1
ADMIN=admin-secret-1
DB=$T/db.sqlite

# start [extra args]: the server in the background; sets PORT, URL.
start() {
    : >srv.out
    "$SRV" --listen 127.0.0.1 --port 0 --db "$DB" --artifacts "$T/art" \
        --fleet-token-sha256 "$(sha "$FLEET")" \
        --admin-token-sha256 "$(sha "$ADMIN")" --threads 2 \
        --max-package-size 300000 "$@" \
        >srv.out 2>>srv.err &
    SRV_PID=$!
    PORT=
    for _ in $(seq 200); do
        PORT=$(awk 'NR == 1 && $1 == "port" { print $2 }' srv.out)
        [ -n "$PORT" ] && break
        kill -0 "$SRV_PID" 2>/dev/null || fail "nobrick-server exited: $(tail -3 srv.err)"
        sleep 0.05
    done
    [ -n "$PORT" ] || fail "nobrick-server printed no port line"
    URL=http://127.0.0.1:$PORT
}

# req METHOD PATH TOKEN [BODY]: status into CODE, body into resp.json.
req() {
    local auth=()
    [ -n "$3" ] && auth=(-H "Authorization: Bearer $3")
    CODE=$(curl -sS -o resp.json -w '%{http_code}' -X "$1" "${auth[@]}" \
        -H 'Content-Type: application/json' ${4+--data-binary "$4"} \
        "$URL$2") || fail "curl $1 $2"
}
field() { sed -n "s/.*\"$1\": *\"\\{0,1\\}\\([^,\"}]*\\).*/\\1/p" resp.json | head -1; }
expect_code() { [ "$CODE" = "$1" ] || fail "HTTP $CODE, expected $1: $(cat resp.json)"; ok; }
expect_json_error() {
    expect_code "$1"
    grep -q "\"error\":\"$2\"" resp.json || fail "no error $2 in $(cat resp.json)"
    grep -q '"message":"' resp.json || fail "no message in $(cat resp.json)"
    ok
}
dbdump() { sqlite3 "$DB" .dump; }

# ------------------------------------------------------------- start-up

CASE=start-up
"$SRV" --help | grep -q 'admin_token_sha256' || fail "--help lacks the keys"
ok
set +e
"$SRV" --listen 0.0.0.0 --port 0 --db "$DB" --artifacts art >/dev/null 2>plain.err
rc=$?
set -e
expect_eq "$rc" 1 "exit status of plain HTTP on 0.0.0.0"
expect_eq "$(wc -l <plain.err)" 1 "lines of its error"
grep -q -- '--insecure-http' plain.err || fail "the error does not say what to do"
ok

# --------------------------------------------------------------- packages

"$SIM" make-image --version 1.0.0 --security-version 1 --size 100000 \
    --out v100.nbpkg >/dev/null || fail "make-image 1.0.0"
"$SIM" make-image --version 1.1.0 --security-version 2 --size 200000 \
    --out art/v110.nbpkg >/dev/null || fail "make-image 1.1.0"
mlen=$(od -An -tu4 -j8 -N4 art/v110.nbpkg | tr -d ' ')
dd if=art/v110.nbpkg of=art/v110.nbman bs=1 skip=12 count="$mlen" 2>/dev/null
size=$(stat -c %s art/v110.nbpkg)
poff=$((size - 200000))
psha=$(sha256sum art/v110.nbpkg | cut -d' ' -f1)
head -c 1000 /dev/urandom >art/blob.bin

start
NOW=$(date +%s)
# The package and a rollout to every device at once (100 %, any time).
sqlite3 "$DB" <<EOF
INSERT INTO packages (id, version, security_version, channel, vendor, class,
  hw_revs, size, payload_offset, payload_size, sha256, file, manifest_file,
  created_at) VALUES ('pkg-v110', '1.1.0', 2, 'production', '', '',
  '["sim-1"]', $size, $poff, 200000, '$psha', 'v110.nbpkg', 'v110.nbman',
  $NOW);
INSERT INTO counters (name, value) VALUES ('rollout', 1);
INSERT INTO rollouts (id, seq, package_id, state, pause_reason, step,
  step_started_at, target, policy, created_at, updated_at) VALUES ('r-1', 1,
  'pkg-v110', 'running', NULL, 0, $NOW, '{}',
  '{"schedule":[{"percent":100}],"windows":"always"}', $NOW, $NOW);
EOF

# ------------------------------------------------------------ enrolment

CASE=enrolment
CHECKIN='{"hw_rev":"sim-1","version":"1.0.0","security_version":1,"slots":[{"slot":0,"state":"CONFIRMED","version":"1.0.0","security_version":1},{"slot":1,"state":"EMPTY"}]}'
req POST /api/v1/devices/dev-c1/checkin "$FLEET" "$CHECKIN"
expect_code 200
TOK=$(field device_token)
expect_eq "${#TOK}" 64 "length of the issued token"
expect_eq "$(field action)" update "action at enrolment"
stored=$(sqlite3 "$DB" "SELECT token_sha256 FROM devices WHERE id = 'dev-c1'")
expect_eq "$stored" "$(sha "$TOK")" "stored token hash"

CASE=offer
req POST /api/v1/devices/dev-c1/checkin "$TOK" "$CHECKIN"
expect_code 200
expect_eq "$(field action)" update action
expect_eq "$(field rollout)" r-1 rollout
expect_eq "$(field version)" 1.1.0 version
expect_eq "$(field payload_offset)" "$poff" payload_offset
expect_eq "$(field manifest_url)" "$URL/api/v1/artifacts/v110.nbman" manifest_url
expect_eq "$(field http)" "$URL/api/v1/artifacts/v110.nbpkg" artifacts.http
curl -sS -o got.nbman "$(field manifest_url)"
cmp -s got.nbman art/v110.nbman || fail "the manifest URL does not serve the manifest"
ok

# ------------------------------------------------------------- refusals

CASE=refusals
before=$(dbdump)
req POST /api/v1/devices/dev-c1/checkin "" "$CHECKIN"
expect_json_error 401 unauthorized
req POST /api/v1/devices/dev-c1/checkin "wrong-token" "$CHECKIN"
expect_json_error 401 unauthorized
req POST /api/v1/devices/dev-c1/checkin "$FLEET" "$CHECKIN"
expect_json_error 401 unauthorized
req POST /api/v1/devices/dev-c1/checkin "$TOK" '{"hw_rev": "sim-1", "version": '
expect_json_error 400 bad_request
req POST /api/v1/devices/dev-c1/checkin "$TOK" "{\"hw_rev\":\"x'; DROP TABLE devices; --\",\"version\":\"1.0.0\",\"security_version\":1,\"slots\":[]}"
expect_json_error 400 bad_request
req POST /api/v1/devices/dev-c1/reports "$TOK" '{"rollout":"r-99","version":"1.1.0","state":"verified"}'
expect_json_error 409 conflict
req POST /api/v1/devices/dev-c1/health "$TOK" '{"rollout":"r-99","version":"1.1.0","healthy":true,"nonce":"n1"}'
expect_json_error 409 conflict
big=$(head -c 70000 /dev/zero | tr '\0' 'x')
req POST /api/v1/devices/dev-c1/reports "$TOK" "{\"rollout\":\"r-1\",\"version\":\"1.1.0\",\"state\":\"failed\",\"reason\":\"NB_ERR_IO\",\"detail\":\"$big\"}"
expect_json_error 413 too_large
for p in '../db.sqlite' '..%2Fdb.sqlite' '%2e%2e%2fdb.sqlite' '.upload-x' 'a%5Cb'; do
    CODE=$(curl -sS --path-as-is -o resp.json -w '%{http_code}' "$URL/api/v1/artifacts/$p")
    case $CODE in 400|404) ok ;; *) fail "artifact $p: HTTP $CODE" ;; esac
done
ln -s "$DB" art/db-link
CODE=$(curl -sS -o resp.json -w '%{http_code}' "$URL/api/v1/artifacts/db-link")
expect_json_error 404 not_found
req GET /api/v1/rollouts "$TOK"
expect_json_error 401 unauthorized
# Uploads: refused before the body is read (wrong token, Content-Length
# over max_package_size), or once it passes the limit (chunked); no
# temporary file is left behind.
head -c 400000 /dev/urandom >big.bin
up() { curl -sS -o resp.json -w '%{http_code}' -X POST "$@" \
       -H 'Content-Type: application/octet-stream' "$URL/api/v1/packages"; }
CODE=$(up -H "Authorization: Bearer $TOK" --data-binary @big.bin)
expect_json_error 401 unauthorized
CODE=$(up -H "Authorization: Bearer $ADMIN" --data-binary @big.bin)
expect_json_error 413 too_large
CODE=$(up -H "Authorization: Bearer $ADMIN" -H 'Transfer-Encoding: chunked' \
       --data-binary @big.bin)
expect_json_error 413 too_large
expect_eq "$(ls -A art | grep -c '^\.upload' || true)" 0 "upload files left"
after=$(dbdump)
[ "$before" = "$after" ] || fail "a refused request changed the database"
ok

# ------------------------------------------------------------ artifacts

CASE=artifacts
hdr() { curl -sS -D hdr.txt -o body.bin "$@" || fail "curl $*"; }
hdr -H 'Range: bytes=10-19' "$URL/api/v1/artifacts/blob.bin"
grep -q '^HTTP/1.1 206' hdr.txt || fail "single range: $(head -1 hdr.txt)"
grep -qi '^Content-Range: bytes 10-19/1000' hdr.txt || fail "no Content-Range"
cmp -s body.bin <(dd if=art/blob.bin bs=1 skip=10 count=10 2>/dev/null) || fail "range bytes"
ok
hdr -H 'Range: bytes=-5' "$URL/api/v1/artifacts/blob.bin"
cmp -s body.bin <(tail -c 5 art/blob.bin) || fail "suffix range bytes"
ok
hdr -H 'Range: bytes=0-3,996-' "$URL/api/v1/artifacts/blob.bin"
grep -q '^HTTP/1.1 206' hdr.txt || fail "multi range status"
grep -qi '^Content-Type: multipart/byteranges; boundary=' hdr.txt || fail "multi range type"
b=$(sed -n 's/^Content-Type: multipart\/byteranges; boundary=\([^\r]*\)\r*$/\1/Ip' hdr.txt)
[ -n "$b" ] || fail "no boundary"
part() { printf '\r\n--%s\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes %s/1000\r\n\r\n' "$b" "$1"; }
{ part 0-3; head -c 4 art/blob.bin; part 996-999; tail -c 4 art/blob.bin
  printf '\r\n--%s--\r\n' "$b"; } >expect.bin
cmp -s body.bin expect.bin || fail "the multipart/byteranges body"
ok
hdr -H 'Range: bytes=1000-' "$URL/api/v1/artifacts/blob.bin"
grep -q '^HTTP/1.1 416' hdr.txt || fail "416: $(head -1 hdr.txt)"
grep -qi '^Content-Range: bytes \*/1000' hdr.txt || fail "416 without Content-Range"
ok
curl -sS -I "$URL/api/v1/artifacts/blob.bin" >hdr.txt
grep -qi '^Content-Length: 1000' hdr.txt || fail "HEAD Content-Length"
ok
CODE=$(curl -sS -o resp.json -w '%{http_code}' "$URL/api/v1/artifacts/nope.bin")
expect_json_error 404 not_found

# ------------------------------------------------------ reports, kill -9

CASE=reports
req POST /api/v1/devices/dev-c1/reports "$TOK" '{"rollout":"r-1","version":"1.1.0","state":"downloading","bytes":4096,"total":200000}'
expect_code 200
req POST /api/v1/devices/dev-c1/reports "$TOK" '{"rollout":"r-1","version":"1.1.0","state":"verified"}'
expect_code 200
req POST /api/v1/devices/dev-c1/health "$TOK" '{"rollout":"r-1","version":"1.1.0","healthy":true,"nonce":"5f1c0e9a2b7d4c31","detail":"ok"}'
expect_code 200
expect_eq "$(field nonce)" 5f1c0e9a2b7d4c31 "nonce echo"
grep -q '"ack":true' resp.json || fail "no ack"
ok

CASE=kill-9
kill -9 "$SRV_PID"
wait "$SRV_PID" 2>/dev/null || true
SRV_PID=
expect_eq "$(sqlite3 "$DB" "SELECT state || ',' || healthy || ',' || health_nonce FROM device_rollouts WHERE device_id = 'dev-c1'")" \
    "verified,1,5f1c0e9a2b7d4c31" "row after kill -9"
expect_eq "$(sqlite3 "$DB" "SELECT COUNT(*) FROM events WHERE device_id = 'dev-c1' AND kind IN ('report', 'health')")" 3 "events after kill -9"
start
req POST /api/v1/devices/dev-c1/reports "$TOK" '{"rollout":"r-1","version":"1.1.0","state":"confirmed"}'
expect_code 200
curl -sS "$URL/metrics" >metrics.txt
grep -q '^nobrick_reports_total{state="confirmed"} 1$' metrics.txt || fail "metrics: $(grep reports metrics.txt)"
grep -q '^nobrick_rollout_devices{rollout="r-1",state="confirmed"} 1$' metrics.txt || fail "rollout metrics"
ok

# ---------------------------------------------------------------- agent

CASE=agent
"$SIM" init --flash dev-a1.flash --layout ab --slot-size 262144 \
    --image v100.nbpkg >/dev/null || fail "nobrick-sim init"
printf '%s\n' "$FLEET" >dev-a1.token
set +e
OUT=$("$AGENT" --once --flash dev-a1.flash --device-id dev-a1 \
    --token-file dev-a1.token --server-url "$URL" --transport http \
    --state-file dev-a1.state --retry-base-ms 100 --retry-max-ms 400 \
    --retry-attempts 3 --ack-timeout-ms 5000 --progress-interval-ms 50 \
    --connect-timeout-ms 2000 --request-timeout-ms 10000 \
    --log-level info 2>agent.err)
rc=$?
set -e
expect_eq "$rc" 0 "agent exit status ($OUT)"
echo "$OUT" | grep -q '"outcome":"updated"' || fail "agent outcome: $OUT"
ok
j=$("$SIM" boot --flash dev-a1.flash)
echo "$j" | grep -q '"version":"1.1.0"' || fail "boots: $j"
echo "$j" | grep -q '"state":"CONFIRMED"' || fail "boots: $j"
ok
[ "$(cat dev-a1.token)" != "$FLEET" ] || fail "the agent did not keep its issued token"
ok
expect_eq "$(sqlite3 "$DB" "SELECT state || ',' || healthy FROM device_rollouts WHERE device_id = 'dev-a1'")" \
    "confirmed,1" "the agent's row"
expect_eq "$(sqlite3 "$DB" "SELECT group_concat(json_extract(body, '\$.state'), ',') FROM (SELECT body FROM events WHERE device_id = 'dev-a1' AND kind = 'report' ORDER BY id)" | tr ',' '\n' | uniq | paste -sd, -)" \
    "downloading,verified,installing,trial,confirmed" "the agent's reports"
# Up to date now.
set +e
OUT=$("$AGENT" --once --flash dev-a1.flash --device-id dev-a1 \
    --token-file dev-a1.token --server-url "$URL" --transport http \
    --state-file dev-a1.state --log-level info 2>>agent.err)
set -e
echo "$OUT" | grep -q '"outcome":"up-to-date"' || fail "second run: $OUT"
ok

# ----------------------------------------------------------------- mqtt

# The same update with the payload over MQTT: the server answers block
# requests for its artifacts (lib/nb_mqtt_serve.c) through mosquitto.
CASE=mqtt
if command -v mosquitto >/dev/null; then
    MQ_PORT=$(awk 'BEGIN { srand(); print 20000 + int(rand() * 20000) }')
    printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$MQ_PORT" >mosq.conf
    mosquitto -c mosq.conf >mosq.log 2>&1 &
    MQ_PID=$!
    kill -TERM "$SRV_PID"
    wait "$SRV_PID" 2>/dev/null || true
    start --mqtt "127.0.0.1:$MQ_PORT" --artifact-auth 1
    # (and artifact_auth: artifacts need a device token now)
    req GET /api/v1/artifacts/blob.bin ""
    expect_json_error 401 unauthorized
    CODE=$(curl -sS -o got.bin -w '%{http_code}' -H "Authorization: Bearer $TOK" \
        "$URL/api/v1/artifacts/blob.bin")
    expect_eq "$CODE" 200 "artifact with a device token"
    "$SIM" init --flash dev-a2.flash --layout ab --slot-size 262144 \
        --image v100.nbpkg >/dev/null || fail "nobrick-sim init"
    printf '%s\n' "$FLEET" >dev-a2.token
    sleep 0.3 # the server's subscription
    set +e
    OUT=$("$AGENT" --once --flash dev-a2.flash --device-id dev-a2 \
        --token-file dev-a2.token --server-url "$URL" --transport mqtt \
        --mqtt-host 127.0.0.1 --mqtt-port "$MQ_PORT" \
        --state-file dev-a2.state --retry-base-ms 200 --retry-max-ms 1000 \
        --retry-attempts 5 --ack-timeout-ms 5000 --log-level info 2>>agent.err)
    rc=$?
    set -e
    expect_eq "$rc" 0 "agent exit status over MQTT ($OUT)"
    j=$("$SIM" boot --flash dev-a2.flash)
    echo "$j" | grep -q '"version":"1.1.0".*"state":"CONFIRMED"\|"state":"CONFIRMED".*"version":"1.1.0"' ||
        fail "boots after the MQTT update: $j"
    ok
else
    echo "test_server_device: mosquitto not installed: MQTT case skipped"
fi

# ------------------------------------------------------------------ TLS

CASE=tls
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout key.pem -out cert.pem -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 2>/dev/null || fail "openssl req"
: >tls.out
"$SRV" --listen 127.0.0.1 --port 0 --db "$T/tls.sqlite" --artifacts "$T/art" \
    --tls-cert cert.pem --tls-key key.pem --quiet >tls.out 2>>srv.err &
TLS_PID=$!
TPORT=
for _ in $(seq 200); do
    TPORT=$(awk 'NR == 1 && $1 == "port" { print $2 }' tls.out)
    [ -n "$TPORT" ] && break
    kill -0 "$TLS_PID" 2>/dev/null || fail "TLS server exited: $(tail -3 srv.err)"
    sleep 0.05
done
[ -n "$TPORT" ] || fail "TLS server printed no port line"
CODE=$(curl -sS --cacert cert.pem -o resp.json -w '%{http_code}' \
    "https://127.0.0.1:$TPORT/api/v1/artifacts/blob.bin")
expect_eq "$CODE" 200 "HTTPS artifact"
cmp -s resp.json art/blob.bin || fail "HTTPS bytes"
ok
hdr --cacert cert.pem -H 'Range: bytes=100-199' "https://127.0.0.1:$TPORT/api/v1/artifacts/blob.bin"
cmp -s body.bin <(dd if=art/blob.bin bs=1 skip=100 count=100 2>/dev/null) || fail "HTTPS range"
ok
kill -TERM "$TLS_PID"
set +e
wait "$TLS_PID"
rc=$?
set -e
TLS_PID=
expect_eq "$rc" 0 "exit status of the TLS server after SIGTERM"

# The request log: one logfmt line per request.
grep -q 'method=POST path=/api/v1/devices/dev-c1/reports status=200 bytes=[0-9]* ms=[0-9.]* device=dev-c1' srv.err ||
    fail "no request log line"
ok

# A clean stop: exit status 0, and (under ASan/UBSan) no report.
CASE=stop
kill -TERM "$SRV_PID"
set +e
wait "$SRV_PID"
rc=$?
set -e
SRV_PID=
expect_eq "$rc" 0 "exit status after SIGTERM"
if grep -E 'Sanitizer|runtime error' srv.err >&2; then
    fail "sanitizer report in the server's log"
fi
ok

echo "test_server_device: $checks checks passed"
