#!/usr/bin/env bash
# test_server_mgmt.sh - nobrick-server's management API end to end
# (docs/server-api.md): the real binary on 127.0.0.1 (port 0, a temporary
# SQLite database and artifact directory), driven with curl.
#
#   trust        the server trusts the simulator's TEST root: its public
#                key is embedded below as PEM and checked against the key
#                ID docs/keys.md gives (0d0ba0a0d446ceae)
#   packages     a package from `nobrick-sim make-image` uploaded (201),
#                its files in the artifact directory and served, the same
#                bytes again (200); a flipped payload byte (422), a cut
#                file (400), a rollback in production (409) refused with
#                nothing stored; an extra file with its digests
#   auth         no token, a wrong one, a device token: 401, no change
#   devices      registered through the API (token shown once, only its
#                SHA-256 in the database), listed with filters
#   rollouts     created, status counts as devices check in and report
#                through the device API, automatic pause when failures in
#                the step pass the threshold, manual pause, resume, abort;
#                a device silent for the silent timeout ("3s") is counted
#   scale        a rollout to 100,000 devices creates no device_rollouts
#                rows (counted by the API and by the sqlite3 CLI)
#   bad input    malformed JSON, unknown keys, SQL metacharacters: 4xx
#                JSON errors and the database unchanged (.dump)
#   kill -9      right after an acknowledged upload and rollout creation;
#                restarted, both are there
#
# Needs: NOBRICK_BUILD (nobrick-server, nobrick-sim), curl, sqlite3,
# openssl, sha256sum, od, dd, cmp.
set -euo pipefail

BUILD=${NOBRICK_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
SRV=$BUILD/nobrick-server
SIM=${NOBRICK_SIM:-$BUILD/nobrick-sim}
[ -n "$SIM" ] || SIM=$BUILD/nobrick-sim
for b in "$SRV" "$SIM"; do
    [ -x "$b" ] || { echo "test_server_mgmt: $b is not built" >&2; exit 1; }
done
for t in curl sqlite3 openssl sha256sum od dd cmp; do
    command -v "$t" >/dev/null || { echo "test_server_mgmt: needs $t" >&2; exit 1; }
done

T=$(mktemp -d)
SRV_PID=
cleanup() {
    [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null || true
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
    [ -f srv.err ] && { echo "--- srv.err (last lines)" >&2; tail -n 20 srv.err >&2; }
    exit 1
}
ok() { checks=$((checks + 1)); }
expect_eq() { [ "$1" = "$2" ] || fail "${3:-value}: got '$1', expected '$2'"; ok; }
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
filesha() { sha256sum "$1" | cut -d' ' -f1; }

ADMIN=admin-secret-mgmt
DB=$T/db.sqlite

# The simulator's TEST root public key (lib/nb_testpkg.h, seed 1): public
# by design, so it is simply written here.
cat >test-root.pem <<'EOF'
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsa4LdrhywN1+aOPk2y9m8ZBVSIze
ih5tUEorIMm6DClyEB6QsM+fKXcbnAUhVS7qY9hTmemLGXDSy06wBWgqWA==
-----END PUBLIC KEY-----
EOF

# start: the server in the background; sets PORT, URL.
start() {
    : >srv.out
    "$SRV" --listen 127.0.0.1 --port 0 --db "$DB" --artifacts "$T/art" \
        --admin-token-sha256 "$(sha "$ADMIN")" --root-pub test-root.pem \
        --threads 2 >srv.out 2>>srv.err &
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
adm() { req "$1" "$2" "$ADMIN" "${@:3}"; }
# upload FILE [QUERY] [TOKEN]: POST /api/v1/packages with the raw bytes.
upload() {
    CODE=$(curl -sS -o resp.json -w '%{http_code}' -X POST \
        -H "Authorization: Bearer ${3-$ADMIN}" \
        -H 'Content-Type: application/octet-stream' --data-binary "@$1" \
        "$URL/api/v1/packages${2:+?$2}") || fail "curl upload $1"
}
# jget KEY [FILE]: the first value of "KEY" in compact JSON, unquoted.
jget() {
    { grep -o "\"$1\":\(\"[^\"]*\"\|[^,}]*\)" "${2:-resp.json}" || true; } |
        head -1 | sed "s/^\"$1\"://; s/^\"//; s/\"\$//"
}
# jnum KEY: the first numeric value of "KEY".
jnum() {
    { grep -o "\"$1\":-\{0,1\}[0-9][0-9]*" resp.json || true; } | head -1 |
        sed "s/^\"$1\"://"
}
# jsub OBJ KEY: KEY inside the flat object "OBJ":{...}.
jsub() {
    { grep -o "\"$1\":{[^}]*}" resp.json || true; } | head -1 >sub.json
    jget "$2" sub.json
}
expect_code() { [ "$CODE" = "$1" ] || fail "HTTP $CODE, expected $1: $(cat resp.json)"; ok; }
expect_json_error() {
    expect_code "$1"
    grep -q "\"error\":\"$2\"" resp.json || fail "no error $2 in $(cat resp.json)"
    grep -q '"message":"' resp.json || fail "no message in $(cat resp.json)"
    ok
}
dbdump() { sqlite3 "$DB" .dump; ls art; }
snapshot() { dbdump >before.dump; }
unchanged() { dbdump >after.dump; cmp -s before.dump after.dump || fail "$1 changed the database or artifacts: $(diff before.dump after.dump | head -5)"; ok; }

# Device API calls: checkin ID TOKEN; report ID TOKEN ROLLOUT STATE.
checkin() {
    req POST "/api/v1/devices/$1/checkin" "$2" \
        '{"hw_rev": "sim-1", "version": "1.0.0", "security_version": 1, "slots": []}'
    expect_code 200
}
report() {
    req POST "/api/v1/devices/$1/reports" "$2" \
        "{\"rollout\": \"$3\", \"version\": \"1.1.0\", \"state\": \"$4\", \"bytes\": 10, \"total\": 100, \"reason\": \"NB_ERR_DIGEST\", \"detail\": \"test\"}"
    expect_code 200
}

# ---------------------------------------------------------------- trust

CASE=trust
kid=$(openssl pkey -pubin -in test-root.pem -outform DER | tail -c 65 |
    sha256sum | cut -c1-16)
expect_eq "$kid" 0d0ba0a0d446ceae "key ID of the embedded TEST root"
start

# ------------------------------------------------------------- packages

CASE=packages
"$SIM" make-image --version 1.1.0 --security-version 2 --size 70000 \
    --out fw-1.1.0.nbpkg >/dev/null
PKG=pkg-$(filesha fw-1.1.0.nbpkg | cut -c1-12)
upload fw-1.1.0.nbpkg channel=production
expect_code 201
expect_eq "$(jget id)" "$PKG" "package ID"
expect_eq "$(jget version)" 1.1.0 "version"
expect_eq "$(jget security_version)" 2 "security version"
expect_eq "$(jget payload_size)" 70000 "payload size"
expect_eq "$(jget size)" "$(stat -c %s fw-1.1.0.nbpkg)" "size"
cmp -s fw-1.1.0.nbpkg "art/$PKG.nbpkg" || fail "the stored package differs"
ok
# The manifest alone: bytes 12 .. 12 + M of the package, and served.
mlen=$(od -An -t u4 -j 8 -N 4 fw-1.1.0.nbpkg | tr -d ' ')
dd if=fw-1.1.0.nbpkg of=man.want bs=1 skip=12 count="$mlen" status=none
cmp -s man.want "art/$PKG.nbman" || fail "the stored manifest differs"
ok
curl -sS -o man.got "$URL/api/v1/artifacts/$PKG.nbman" || fail "GET manifest"
cmp -s man.want man.got || fail "the served manifest differs"
ok
# The same bytes again: 200, the same package.
snapshot
upload fw-1.1.0.nbpkg channel=production
expect_code 200
expect_eq "$(jget id)" "$PKG" "package ID of the repeated upload"
unchanged "a repeated upload"
# A flipped payload byte, a cut file, garbage, a rollback: refused, nothing kept.
cp fw-1.1.0.nbpkg flip.nbpkg
size=$(stat -c %s flip.nbpkg)
printf '\x5a' | dd of=flip.nbpkg bs=1 seek=$((size - 100)) conv=notrunc status=none
cmp -s flip.nbpkg fw-1.1.0.nbpkg && fail "the flip did not change the file"
head -c $((size - 1)) fw-1.1.0.nbpkg >cut.nbpkg
printf 'this is not a package' >junk.nbpkg
"$SIM" make-image --version 1.0.9 --security-version 1 --size 5000 \
    --out old.nbpkg >/dev/null
snapshot
upload flip.nbpkg
expect_json_error 422 signature
grep -q NB_ERR_DIGEST resp.json || fail "no NB_ERR_DIGEST: $(cat resp.json)"
upload cut.nbpkg
expect_json_error 400 bad_request
grep -q NB_ERR_TRUNCATED resp.json || fail "no NB_ERR_TRUNCATED: $(cat resp.json)"
upload junk.nbpkg
expect_json_error 400 bad_request
upload old.nbpkg channel=production
expect_json_error 409 rollback
upload fw-1.1.0.nbpkg channel=staging
expect_json_error 400 bad_request
unchanged "refused uploads"
ls -A art | grep -q '^\.upload' && fail "an upload file was left behind"
ok
upload old.nbpkg channel=development
expect_code 201
expect_eq "$(jget channel)" development "channel"
# An extra file for hawkBit clients.
printf 'hello world' >fw.swu
CODE=$(curl -sS -o resp.json -w '%{http_code}' -X PUT \
    -H "Authorization: Bearer $ADMIN" --data-binary @fw.swu \
    "$URL/api/v1/packages/$PKG/files/fw.swu") || fail "curl PUT file"
expect_code 201
expect_eq "$(jget md5)" 5eb63bbbe01eeed093cb22bb8f5acdc3 "md5"
expect_eq "$(jget sha1)" 2aae6c35c94fcfb415dbe95f408b9ce91ee846ed "sha1"
expect_eq "$(jget sha256)" "$(filesha fw.swu)" "sha256"
xfile=$(grep -o '"file":"[^"]*"' resp.json | head -1 | cut -d'"' -f4)
cmp -s fw.swu "art/$xfile" || fail "the stored extra file differs"
ok
adm GET "/api/v1/packages/$PKG"
expect_code 200
expect_eq "$(jget name)" fw.swu "extra file in the package"
adm GET /api/v1/packages
expect_code 200
expect_eq "$(grep -o '"id":"pkg-' resp.json | wc -l)" 2 "packages listed"

# ------------------------------------------------------------------ auth

CASE=auth
adm POST /api/v1/devices '{"id": "d-1", "hw_rev": "sim-1", "tags": ["eu"]}'
expect_code 201
TOK1=$(jget token)
expect_eq "${#TOK1}" 64 "token length"
expect_eq "$(sqlite3 "$DB" "SELECT token_sha256 FROM devices WHERE id = 'd-1'")" \
    "$(sha "$TOK1")" "stored token hash"
sqlite3 "$DB" .dump | grep -q "$TOK1" && fail "the token itself is stored"
ok
snapshot
for tok in "" wrong "$TOK1"; do
    req GET /api/v1/devices "$tok"
    expect_json_error 401 unauthorized
    req POST /api/v1/devices "$tok" '{"id": "d-x"}'
    expect_json_error 401 unauthorized
    upload fw-1.1.0.nbpkg "" "$tok"
    expect_json_error 401 unauthorized
done
unchanged "unauthorised requests"

# --------------------------------------------------------------- devices

CASE=devices
declare -A TOK
TOK[d-1]=$TOK1
for i in 2 3 4 5 6; do
    adm POST /api/v1/devices "{\"id\": \"d-$i\", \"hw_rev\": \"sim-1\", \"group\": \"line-$((i % 2))\"}"
    expect_code 201
    TOK[d-$i]=$(jget token)
done
adm GET '/api/v1/devices?group=line-0&limit=2'
expect_code 200
expect_eq "$(grep -o '"id":"d-[0-9]"' resp.json | tr '\n' ' ')" '"id":"d-2" "id":"d-4" ' "group filter, first page"
expect_eq "$(jget next)" d-4 "next"
adm GET '/api/v1/devices?group=line-0&limit=2&after=d-4'
expect_eq "$(grep -o '"id":"d-[0-9]"' resp.json | tr '\n' ' ')" '"id":"d-6" ' "second page"
expect_eq "$(jget next)" null "no next"
adm PUT /api/v1/devices/d-2/tags '{"tags": ["beta", "eu"]}'
expect_code 200
adm GET '/api/v1/devices?tag=eu'
expect_eq "$(grep -o '"id":"d-[0-9]"' resp.json | tr '\n' ' ')" '"id":"d-1" "id":"d-2" ' "tag filter"

# -------------------------------------------------------------- rollouts

CASE=rollouts
adm POST /api/v1/rollouts "{\"package\": \"$PKG\", \"target\": {\"devices\": [\"d-1\", \"d-2\", \"d-3\", \"d-4\", \"d-5\"]}, \"policy\": {\"schedule\": [{\"percent\": 100}], \"windows\": \"always\", \"failure_threshold\": \"20%\", \"min_attempted\": 5, \"silent_timeout\": \"1h\"}}"
expect_code 201
RO=$(jget id)
expect_eq "$RO" r-1 "rollout ID"
expect_eq "$(jget state)" running "state"
expect_eq "$(jnum devices)" 0 "devices of a new rollout"
for i in 1 2 3 4 5; do
    checkin "d-$i" "${TOK[d-$i]}"
    expect_eq "$(jget rollout)" "$RO" "offer to d-$i"
done
adm GET "/api/v1/rollouts/$RO"
expect_eq "$(jsub counts offered)" 5 "offered"
expect_eq "$(jsub step_counts attempted)" 5 "attempted"
report d-1 "${TOK[d-1]}" "$RO" downloading
report d-2 "${TOK[d-2]}" "$RO" confirmed
adm GET "/api/v1/rollouts/$RO"
expect_eq "$(jsub counts downloading)" 1 "downloading"
expect_eq "$(jsub counts confirmed)" 1 "confirmed"
expect_eq "$(jsub counts offered)" 3 "offered"
# 1 of 5 failed is 20 %: not over the threshold; 2 of 5 is.
report d-3 "${TOK[d-3]}" "$RO" failed
adm GET "/api/v1/rollouts/$RO"
expect_eq "$(jget state)" running "state after one failure"
report d-4 "${TOK[d-4]}" "$RO" reverted
adm GET "/api/v1/rollouts/$RO"
expect_eq "$(jget state)" paused "state after two failures"
case "$(jget pause_reason)" in auto:*) ok ;; *) fail "pause reason: $(jget pause_reason)" ;; esac
expect_eq "$(jsub step_counts failed)" 1 "step failed"
expect_eq "$(jsub step_counts reverted)" 1 "step reverted"
adm GET "/api/v1/rollouts/$RO/devices"
expect_code 200
expect_eq "$(grep -o '"device":"' resp.json | wc -l)" 5 "devices of the rollout"
# Resume: the step starts again; pause by hand; abort.
adm POST "/api/v1/rollouts/$RO/resume"
expect_code 200
expect_eq "$(jget state)" running "resumed"
expect_eq "$(jsub step_counts attempted)" 0 "step counts restart"
expect_eq "$(jsub counts failed)" 1 "overall counts stay"
adm POST "/api/v1/rollouts/$RO/pause" '{"reason": "it'"'"'s; DROP TABLE rollouts; --"}'
expect_code 200
expect_eq "$(jget state)" paused "paused by hand"
expect_eq "$(jget pause_reason)" "manual: it's; DROP TABLE rollouts; --" "reason"
adm POST "/api/v1/rollouts/$RO/abort"
expect_code 200
expect_eq "$(jget state)" aborted "aborted"
snapshot
adm POST "/api/v1/rollouts/$RO/resume"
expect_json_error 409 conflict
unchanged "resuming an aborted rollout"

# A silent device: no word for longer than the silent timeout.
adm POST /api/v1/rollouts "{\"package\": \"$PKG\", \"target\": {\"devices\": [\"d-6\"]}, \"policy\": {\"schedule\": [{\"percent\": 100}], \"windows\": \"always\", \"failure_threshold\": \"100%\", \"silent_timeout\": \"3s\"}}"
expect_code 201
RO2=$(jget id)
checkin d-6 "${TOK[d-6]}"
expect_eq "$(jget rollout)" "$RO2" "offer to d-6"
report d-6 "${TOK[d-6]}" "$RO2" downloading
adm GET "/api/v1/rollouts/$RO2"
expect_eq "$(jsub counts silent)" 0 "silent at once"
sleep 4.5
adm GET "/api/v1/rollouts/$RO2"
expect_eq "$(jsub counts silent)" 1 "silent after the timeout"
expect_eq "$(jsub step_counts silent)" 1 "silent in the step"
expect_eq "$(jsub counts downloading)" 1 "and still downloading"

# ------------------------------------------------------------------ scale

CASE=scale
sqlite3 "$DB" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) INSERT INTO devices (id, hw_rev, created_at) SELECT 'bulk-' || i, 'bulk-hw', 1 FROM n" ||
    fail "inserting 100,000 devices"
adm POST /api/v1/rollouts "{\"package\": \"$PKG\", \"target\": {\"hw_revs\": [\"bulk-hw\"]}, \"policy\": {\"schedule\": [{\"percent\": 100}], \"windows\": \"always\"}}"
expect_code 201
RO3=$(jget id)
adm GET "/api/v1/rollouts/$RO3"
expect_code 200
expect_eq "$(jnum devices)" 0 "devices offered the 100,000-device rollout"
expect_eq "$(sqlite3 "$DB" "SELECT COUNT(*) FROM device_rollouts WHERE rollout_id = '$RO3'")" 0 "its device_rollouts rows"
adm GET '/api/v1/devices?hw_rev=bulk-hw&limit=1000'
expect_code 200
expect_eq "$(grep -o '"id":"bulk-' resp.json | wc -l)" 1000 "a page of bulk devices"

# -------------------------------------------------------------- bad input

CASE=bad-input
snapshot
while IFS='|' read -r method path body want; do
    [ -z "$method" ] && continue
    adm "$method" "$path" "$body"
    [ "$CODE" = "$want" ] || fail "$method $path $body: HTTP $CODE, expected $want: $(cat resp.json)"
    grep -q '"error":"' resp.json || fail "$method $path: no JSON error: $(cat resp.json)"
    ok
done <<'EOF'
POST|/api/v1/devices|not json|400
POST|/api/v1/devices|{"id": "d-9", "id": "d-8"}|400
POST|/api/v1/devices|{"id": "d-9", "admin": true}|400
POST|/api/v1/devices|{"id": 9}|400
POST|/api/v1/devices|{"id": "d-9'; DROP TABLE devices; --"}|400
POST|/api/v1/devices|{"id": "d-9", "tags": ["a' OR '1'='1"]}|400
POST|/api/v1/devices|{"id": "d-1"}|409
PUT|/api/v1/devices/d-1/group|{"group": "x; DELETE FROM devices"}|400
PUT|/api/v1/devices/nope/tags|{"tags": []}|404
POST|/api/v1/rollouts|{"package": "pkg-000000000000"}|404
POST|/api/v1/rollouts|{"package": "x'--"}|400
POST|/api/v1/rollouts|{"package": "p", "policy": {"schedule": [{"percent": 50}]}}|400
POST|/api/v1/rollouts|{"package": "p", "target": {"groups": ["a;b"]}}|400
POST|/api/v1/rollouts/r-1/pause|{"reason": 1}|400
POST|/api/v1/rollouts/r-99/pause||404
DELETE|/api/v1/rollouts/r-1||405
GET|/api/v1/nothing||404
EOF
big=$(head -c 70000 /dev/zero | tr '\0' 'a')
adm POST /api/v1/devices "{\"id\": \"d-9\", \"x\": \"$big\"}"
expect_json_error 413 too_large
unchanged "bad requests"

# ---------------------------------------------------------------- kill -9

CASE=kill-9
"$SIM" make-image --version 1.3.0 --security-version 3 --size 40000 \
    --out fw-1.3.0.nbpkg >/dev/null
PKG3=pkg-$(filesha fw-1.3.0.nbpkg | cut -c1-12)
upload fw-1.3.0.nbpkg
expect_code 201
adm POST /api/v1/rollouts "{\"package\": \"$PKG3\", \"policy\": {\"windows\": \"always\"}}"
expect_code 201
RO4=$(jget id)
{ kill -9 "$SRV_PID" && wait "$SRV_PID"; } 2>/dev/null || true
SRV_PID=
start
adm GET "/api/v1/packages/$PKG3"
expect_code 200
cmp -s fw-1.3.0.nbpkg "art/$PKG3.nbpkg" || fail "the package file after kill -9"
ok
adm GET "/api/v1/rollouts/$RO4"
expect_code 200
expect_eq "$(jget package)" "$PKG3" "the rollout after kill -9"

kill "$SRV_PID"
wait "$SRV_PID" 2>/dev/null || true
SRV_PID=
# In a sanitizer build, the server's reports (leaks at exit included).
if grep -q -E 'ERROR: [A-Za-z]+Sanitizer|runtime error:' srv.err; then
    CASE=sanitizer
    fail "the server's log has sanitizer reports"
fi
ok
echo "test_server_mgmt: $checks checks passed"
