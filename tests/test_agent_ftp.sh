#!/usr/bin/env bash
# test_agent_ftp.sh - nobrick-agent end to end with the package served over
# FTP and FTPS by vsftpd, real programs on 127.0.0.1.
#
# nb-testserver (tests/support/agentd) serves the device API; vsftpd (two
# instances, started here as in test_transport_curl.sh: anonymous and
# read-only, one plain, one implicit FTPS with a certificate made here by
# openssl) serves the packages; nobrick-sim makes the flash files and the
# signed test packages; nobrick-agent runs once per case (--once).
#
#   ftp           1.0.0 -> 1.1.0: the offer carries an http and an ftp
#                 URL, the agent prefers ftp (transport ftp,http): reports
#                 downloading .. confirmed, the device boots 1.1.0
#                 CONFIRMED, the HTTP server saw no artifact request and
#                 vsftpd sent the file (REST + RETR); the next run has
#                 nothing to do
#   ftps          the same over implicit FTPS (ftps://, TLS from the first
#                 byte), the server's certificate checked against ca_file
#   ftp-resume    the agent is killed (SIGKILL) in the middle of a 1 MiB
#                 download (vsftpd's anon_max_rate keeps it slow enough to
#                 catch); the next start resumes from the journal with a
#                 REST at the resume offset, not from zero
#   ftp-missing   the ftp URL names no file (550): failed with
#                 NB_ERR_NOENT after one attempt, no retry loop, 1.0.0
#                 still CONFIRMED
#
# Needs: NOBRICK_BUILD (nobrick-agent, nobrick-sim, tests/nb-testserver),
# vsftpd, openssl, curl (make deps).
set -euo pipefail

BUILD=${NOBRICK_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
AGENT=$BUILD/nobrick-agent
SIM=${NOBRICK_SIM:-$BUILD/nobrick-sim}
[ -n "$SIM" ] || SIM=$BUILD/nobrick-sim
SRV=$BUILD/tests/nb-testserver
for b in "$AGENT" "$SIM" "$SRV"; do
    [ -x "$b" ] || { echo "test_agent_ftp: $b is not built" >&2; exit 1; }
done
export PATH="$PATH:/usr/sbin:/sbin"
for tool in vsftpd openssl curl; do
    command -v "$tool" >/dev/null ||
        { echo "test_agent_ftp: $tool not found (run make deps)" >&2; exit 1; }
done
# Every peer is on 127.0.0.1: no proxy from the environment may intervene.
unset http_proxy https_proxy ftp_proxy all_proxy HTTPS_PROXY FTP_PROXY \
    ALL_PROXY no_proxy NO_PROXY

SERVER_LIFETIME=300 # no server outlives a killed test by more than this
RUN_LIMIT=60        # seconds for one program run (agent, nobrick-sim, curl)
WATCHDOG=240        # the whole test gives up (and says where) after this
T=$(mktemp -d)
chmod 755 "$T"
PIDS=()
CASE=setup
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'echo "test_agent_ftp: stopped in case $CASE" >&2; exit 130' INT TERM
# Nothing here may wait forever: each program run is bounded by timeout,
# and a watchdog ends the whole test (naming the case) if one still does.
(
    trap 'kill "$sp" 2>/dev/null; exit 0' TERM
    sleep "$WATCHDOG" &
    sp=$!
    wait "$sp" && kill -TERM $$
) >/dev/null 2>&1 &
PIDS+=($!)
cd "$T"
mkdir art empty
chmod 755 art

checks=0
fail() {
    echo "FAIL [$CASE]: $*" >&2
    for f in srv.err agent.err ftp.log ftps.log ftp.out ftps.out; do
        [ -s "$f" ] && { echo "--- $f (last lines)" >&2; tail -n 25 "$f" >&2; }
    done
    exit 1
}
ok() { checks=$((checks + 1)); }

# ------------------------------------------------------------- packages

"$SIM" make-image --version 1.0.0 --security-version 1 --size 100000 \
    --out v100.nbpkg >/dev/null || fail "make-image 1.0.0"
"$SIM" make-image --version 1.1.0 --security-version 2 --size 200000 \
    --out art/v110.nbpkg >/dev/null || fail "make-image 1.1.0"
"$SIM" make-image --version 1.1.0 --security-version 2 --size 1048576 \
    --out art/big.nbpkg >/dev/null || fail "make-image 1.1.0 (1 MiB)"
chmod 644 art/*.nbpkg
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout server.key \
    -out server.pem -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
    >openssl.log 2>&1 || fail "openssl: $(cat openssl.log)"

# ------------------------------------------------------------- the servers

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
    local p
    while :; do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        port_busy "$p" || { echo "$p"; return; }
    done
}
wait_ready() { # PID PORT: 1 if it died or took more than 10 s
    for _ in $(seq 200); do
        kill -0 "$1" 2>/dev/null || return 1
        port_busy "$2" && return 0
        sleep 0.05
    done
    return 1
}

# start_vsftpd NAME PORT PASV_MIN TLS(0|1): anonymous, read-only, art/ as
# its root, at most RATE bytes/s per session; TLS: implicit FTPS.
RATE=1000000
start_vsftpd() {
    local name=$1 port=$2 pasv=$3 tls=$4
    cat >"$name.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$port
background=NO
anonymous_enable=YES
local_enable=NO
write_enable=NO
anon_root=$T/art
no_anon_password=YES
anon_max_rate=$RATE
run_as_launching_user=YES
secure_chroot_dir=$T/empty
pasv_enable=YES
pasv_address=127.0.0.1
pasv_min_port=$pasv
pasv_max_port=$((pasv + 99))
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
xferlog_enable=YES
xferlog_std_format=NO
log_ftp_protocol=YES
syslog_enable=NO
vsftpd_log_file=$T/$name.log
EOF
    if [ "$tls" = 1 ]; then
        cat >>"$name.conf" <<EOF
ssl_enable=YES
implicit_ssl=YES
allow_anon_ssl=YES
force_anon_logins_ssl=YES
force_anon_data_ssl=YES
rsa_cert_file=$T/server.pem
rsa_private_key_file=$T/server.key
EOF
    fi
    timeout "$SERVER_LIFETIME" vsftpd "$name.conf" >"$name.out" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_ready "$pid" "$port"
}

started=0
for attempt in 1 2 3 4 5; do
    FTP_PORT=$(pick_port)
    FTPS_PORT=$(pick_port)
    PASV=$((20000 + (RANDOM % 400) * 100))
    if start_vsftpd ftp "$FTP_PORT" "$PASV" 0 &&
        start_vsftpd ftps "$FTPS_PORT" $((PASV + 100)) 1; then
        started=1
        break
    fi
    echo "test_agent_ftp: vsftpd did not start (attempt $attempt), again" >&2
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
done
[ "$started" = 1 ] || fail "could not start vsftpd: $(cat ftp.out ftps.out 2>/dev/null)"
FTP=ftp://127.0.0.1:$FTP_PORT
FTPS=ftps://127.0.0.1:$FTPS_PORT

"$SRV" --artifacts art --log events.jsonl --quiet \
    --device dev-ftp:tok-ftp --device dev-ftps:tok-ftps \
    --device dev-resume:tok-resume --device dev-missing:tok-missing \
    >srv.out 2>srv.err &
SRV_PID=$!
PIDS+=("$SRV_PID")
PORT=
for _ in $(seq 100); do
    PORT=$(awk 'NR == 1 && $1 == "port" { print $2 }' srv.out)
    [ -n "$PORT" ] && break
    kill -0 "$SRV_PID" 2>/dev/null || fail "nb-testserver exited: $(cat srv.err)"
    sleep 0.05
done
[ -n "$PORT" ] || fail "nb-testserver printed no port line"
URL=http://127.0.0.1:$PORT
echo "test_agent_ftp: device API $URL, vsftpd $FTP and $FTPS"

# ctl PATH JSON: POST to the server's test control API.
ctl() {
    local code
    code=$(curl -sS --max-time 10 -o ctl.out -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' --data "$2" "$URL/test/$1") ||
        fail "control $1 failed"
    [ "$code" = 200 ] || fail "control $1 $2: HTTP $code: $(cat ctl.out)"
}
# offer DEVICE ARTIFACT FTP_BASE: artifacts.http on the test server and
# artifacts.ftp on vsftpd, for the same file.
offer() {
    local size
    size=$(wc -c <"art/$2")
    ctl offer "{\"device\":\"$1\",\"offer\":{\"rollout\":\"r-$1\",\"version\":\"1.1.0\",\"security_version\":2,\"package_size\":$size,\"artifacts\":{\"http\":\"$URL/api/v1/artifacts/$2\",\"ftp\":\"$3/$2\"}}}"
}
artifact_requests() {
    curl -sS --max-time 10 "$URL/test/stats" | sed -n 's/.*"artifact_requests": *\([0-9]*\).*/\1/p'
}
reports() {
    grep "\"device\":\"$1\"" events.jsonl | grep '"kind":"report"' |
        sed -n 's/.*"state":"\([a-z]*\)".*/\1/p' | uniq | paste -sd, -
}
reason() {
    grep "\"device\":\"$1\"" events.jsonl | grep '"state":"failed"' |
        sed -n 's/.*"reason":"\([A-Z_]*\)".*/\1/p' | paste -sd, -
}
boots() {
    local j
    j=$(timeout "$RUN_LIMIT" "$SIM" boot --flash "$1") || fail "nobrick-sim boot $1: $j"
    echo "$(echo "$j" | sed -n 's/.*"version":"\([0-9.]*\)".*/\1/p') $(echo "$j" | sed -n 's/.*"state":"\([A-Z]*\)".*/\1/p')"
}
newflash() {
    "$SIM" init --flash "$1.flash" --layout ab --slot-size "${2:-262144}" \
        --image v100.nbpkg >/dev/null || fail "nobrick-sim init $1"
}
# agent DEVICE [--key value ...]: one cycle; sets RC and OUT (its JSON).
agent() {
    local dev=$1
    shift
    set +e
    OUT=$(timeout -k 5 "$RUN_LIMIT" "$AGENT" --once --flash "$dev.flash" --device-id "$dev" \
        --device-token "tok-${dev#dev-}" --server-url "$URL" \
        --transport ftp,http --state-file "$dev.state" \
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
# transport_used DEVICE: the transport line of the device's last run.
transport_used() {
    grep "nobrick-agent\[$1\].*transport [a-z]*:" agent.err | tail -n 1 |
        sed -n 's/.*transport \([a-z]*\): .*/\1/p'
}

# update DEVICE FTP_BASE KIND [agent args]: the whole update over KIND.
update() {
    local dev=$1 base=$2 kind=$3 before
    shift 3
    newflash "$dev"
    offer "$dev" v110.nbpkg "$base"
    before=$(artifact_requests)
    agent "$dev" "$@"
    expect_rc 0
    expect_eq "$(json_field outcome)" updated outcome
    expect_eq "$(transport_used "$dev")" "$kind" "transport used"
    expect_eq "$(json_field bytes)" 200000 "payload bytes transferred"
    expect_eq "$(reports "$dev")" "downloading,verified,installing,trial,confirmed" reports
    expect_eq $(($(artifact_requests) - before)) 0 "HTTP artifact requests"
    expect_eq "$(boots "$dev.flash")" "1.1.0 CONFIRMED" boot
    # Nothing to do next time.
    agent "$dev" "$@"
    expect_rc 0
    expect_eq "$(json_field outcome)" up-to-date outcome
}

# -------------------------------------------------------------------- ftp

CASE=ftp
echo "test_agent_ftp: case $CASE"
update dev-ftp "$FTP" ftp
# vsftpd sent it: the manifest prefix from 0, then the payload after a REST.
grep -q 'RETR /v110.nbpkg\|RETR v110.nbpkg' ftp.log || fail "no RETR in vsftpd's log"
grep -q '"REST [1-9][0-9]*"' ftp.log || fail "no REST to the payload in vsftpd's log"
ok

# ------------------------------------------------------------------- ftps

CASE=ftps
echo "test_agent_ftp: case $CASE"
update dev-ftps "$FTPS" ftps --transport ftps,http --ca-file "$T/server.pem"
grep -q 'RETR' ftps.log || fail "no RETR in the FTPS vsftpd's log"
ok

# ------------------------------------------------------------- ftp-resume

CASE=ftp-resume
echo "test_agent_ftp: case $CASE"
newflash dev-resume 2097152
offer dev-resume big.nbpkg "$FTP"
: >agent-bg.err
"$AGENT" --once --flash dev-resume.flash --device-id dev-resume \
    --device-token tok-resume --server-url "$URL" --transport ftp,http \
    --state-file dev-resume.state --progress-interval-ms 20 \
    --log-level debug >>agent.out 2>agent-bg.err &
APID=$!
PIDS+=("$APID")
# Kill it once it reports a third of the payload (vsftpd sends at most
# RATE bytes/s, so the download takes about a second).
got=0
for _ in $(seq 400); do
    got=$( { grep '"device":"dev-resume"' events.jsonl 2>/dev/null || true; } |
        { grep '"state":"downloading"' || true; } |
        sed -n 's/.*"bytes":\([0-9]*\).*/\1/p' | sort -n | tail -n 1)
    [ "${got:-0}" -ge 350000 ] && break
    kill -0 "$APID" 2>/dev/null || break
    sleep 0.02
done
kill -KILL "$APID" 2>/dev/null || true
wait "$APID" 2>/dev/null || true
cat agent-bg.err >>agent.err
[ "${got:-0}" -ge 350000 ] || fail "no download in progress to interrupt (${got:-0} bytes)"
[ "${got:-0}" -lt 1048576 ] || fail "the download finished before the kill"
ok
agent dev-resume
expect_rc 0
expect_eq "$(json_field resumed)" 1 resumed
off=$(json_field resume_offset)
bytes=$(json_field bytes)
echo "test_agent_ftp: killed at ~$got bytes; resumed at payload byte $off," \
    "$bytes bytes fetched after the restart"
[ "$off" -gt 0 ] || fail "resumed from zero"
[ $((bytes + off)) -le $((1048576 + 8192)) ] || fail "re-fetched $bytes bytes after $off"
ok
# The resumed RETR started after a REST beyond the first one's.
rest=$(grep -o '"REST [0-9]*"' ftp.log | tr -dc '0-9\n' | sort -n | tail -n 1)
[ "${rest:-0}" -gt "$off" ] || fail "no REST at the resume offset ($off) in vsftpd's log"
ok
expect_eq "$(boots dev-resume.flash)" "1.1.0 CONFIRMED" boot

# ------------------------------------------------------------ ftp-missing

CASE=ftp-missing
echo "test_agent_ftp: case $CASE"
newflash dev-missing
size=$(wc -c <art/v110.nbpkg)
ctl offer "{\"device\":\"dev-missing\",\"offer\":{\"rollout\":\"r-dev-missing\",\"version\":\"1.1.0\",\"security_version\":2,\"package_size\":$size,\"artifacts\":{\"ftp\":\"$FTP/nosuch.nbpkg\"}}}"
retr_before=$(grep -c 'nosuch' ftp.log || true)
agent dev-missing
expect_rc 1
expect_eq "$(reason dev-missing)" NB_ERR_NOENT reason
expect_eq "$(json_field retries)" 0 retries
retr_after=$(grep -c '"RETR /nosuch.nbpkg"\|"RETR nosuch.nbpkg"' ftp.log || true)
[ "$retr_after" -le 1 ] || fail "$retr_after RETRs of the missing file (before: $retr_before)"
ok
expect_eq "$(boots dev-missing.flash)" "1.0.0 CONFIRMED" boot

echo "test_agent_ftp: $checks checks passed"
