#!/usr/bin/env bash
# bench/server.sh - nobrick-server under load (issue 5's numbers): device
# check-ins per second and their latency for a fleet of 100,000 registered
# devices, on SQLite and on PostgreSQL, next to nginx serving a static file
# of the size of a check-in answer from the same machine in the same run
# (the practical ceiling of an HTTP server here), and the database size
# per device.
#
#   bash bench/server.sh [BUILD_DIR]      (default: build; builds nothing)
#
# For each backend it starts BUILD_DIR/nobrick-server on 127.0.0.1 (port
# 0; SQLite in a temporary directory, PostgreSQL in a private cluster of
# tests/support/pg.sh), registers the fleet, and runs wrk with
# bench/server_checkin.lua: POST /api/v1/devices/{id}/checkin, every
# device with its own token, walking through the fleet (each run goes on
# where the one before stopped):
#   - "no rollout": plain check-ins, answered {"action":"none",...};
#   - "rollout start": the same right after a rollout of a signed 1.1.0
#     package (made with BUILD_DIR/nobrick) to the whole fleet started, at
#     its first step of 10 % (held a week, always in window): about one
#     device in ten gets its first offer (a device_rollouts row and an
#     "offer" event written);
#   - "rollout mid": the same rollout later in that step: every device the
#     step reaches (the server's cohort order, computed here the same way)
#     has been offered it, 19 in 20 of them confirmed, the rest
#     downloading (rows inserted by SQL before the run); the other 90 %
#     are checked against the rollout at each check-in.
# Then nginx (nginx-light, its own configuration in the temporary
# directory, loopback, access_log off) answers the same requests with a
# static file holding the server's "none" answer, with the same wrk
# parameters.
#
# Registration: through the management API (POST /api/v1/devices with an
# admin token, 8 in parallel with curl) for the first NB_BENCH_API_DEVICES
# devices; the rest through the API too when that would take less than
# NB_BENCH_API_BUDGET seconds at the rate just measured, otherwise by one
# SQL transaction into the schema the server created: the same rows the
# API writes (devices, and a "register" event), with a token known to the
# bench (SHA-256 kept, as the server does). The script says which it did.
#
# Printed: a table (requests/s, p50, p99, answers other than 200, socket
# errors and timeouts, offers, server CPU time per check-in, database CPU
# time per check-in for PostgreSQL, the server's peak RSS), the database
# size per device (SQLite: file + WAL after a checkpoint; PostgreSQL:
# pg_database_size) right after registration and after the runs, and the
# registration rate through the API. Like the other benches it asserts
# nothing about timings; it exits non-zero only when it cannot run.
#
# Environment (defaults in brackets):
#   NB_BENCH_DEVICES [100000]   fleet size
#   NB_BENCH_WRK_THREADS [2]  NB_BENCH_CONNECTIONS [32]
#   NB_BENCH_DURATION [10s]   NB_BENCH_WRK_TIMEOUT [5s]   wrk's -t -c -d --timeout
#   NB_BENCH_SERVER_THREADS [4]  nobrick-server --threads
#   NB_BENCH_BACKENDS ["sqlite postgresql"]
#   NB_BENCH_ROLLOUT [both]     none (no rollout runs) | both | only (no "no rollout" run)
#   NB_BENCH_REGISTER [auto]    auto | api (all through the API) | sql
#   NB_BENCH_API_DEVICES [1000] NB_BENCH_API_BUDGET [30]   see above
#   NB_BENCH_NGINX [1]          0: no nginx line
#   NB_BENCH_SERVER_LOG [0]     1: the server logs every request (no --quiet)
#   NB_BENCH_PG_SET []          e.g. "synchronous_commit=off": ALTER DATABASE
#                               ... SET for the server's sessions (diagnosis)
#   NB_BENCH_TMPDIR [$TMPDIR or /tmp]  where the SQLite file lives (its
#                               disk's fsync speed matters: see docs/benchmarks.md)
#   NB_BENCH_KEEP [0]           1: keep the temporary directory (logs, databases)
#
# Needs: wrk, curl, sqlite3, perl (Digest::SHA), sha256sum; PostgreSQL
# server binaries (else the PostgreSQL lines are skipped); nginx (else no
# nginx line); BUILD_DIR/nobrick for the rollout runs (else skipped).
# Everything it starts it stops by PID, and it listens on 127.0.0.1 only.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || { echo "server.sh: no directory ${1:-$SRC/build}" >&2; exit 1; }
SRV=$BUILD/nobrick-server
NB=$BUILD/nobrick
LUA=$SRC/bench/server_checkin.lua

DEVICES=${NB_BENCH_DEVICES:-100000}
WRK_THREADS=${NB_BENCH_WRK_THREADS:-2}
CONNS=${NB_BENCH_CONNECTIONS:-32}
DURATION=${NB_BENCH_DURATION:-10s}
WRK_TIMEOUT=${NB_BENCH_WRK_TIMEOUT:-5s}
SRV_THREADS=${NB_BENCH_SERVER_THREADS:-4}
BACKENDS=${NB_BENCH_BACKENDS:-sqlite postgresql}
ROLLOUT=${NB_BENCH_ROLLOUT:-both}
REGISTER=${NB_BENCH_REGISTER:-auto}
API_SAMPLE=${NB_BENCH_API_DEVICES:-1000}
API_BUDGET=${NB_BENCH_API_BUDGET:-30}
WITH_NGINX=${NB_BENCH_NGINX:-1}
SRV_LOG=${NB_BENCH_SERVER_LOG:-0}
TMPBASE=${NB_BENCH_TMPDIR:-${TMPDIR:-/tmp}}

log() { echo "server.sh: $*" >&2; }
die() { log "$*"; exit 1; }

case $ROLLOUT in none | both | only) ;; *) die "NB_BENCH_ROLLOUT: none, both or only" ;; esac
case $REGISTER in auto | api | sql) ;; *) die "NB_BENCH_REGISTER: auto, api or sql" ;; esac
[[ $DEVICES =~ ^[1-9][0-9]*$ ]] || die "NB_BENCH_DEVICES: a positive number"
[[ $API_SAMPLE =~ ^[0-9]+$ ]] || die "NB_BENCH_API_DEVICES: a number"
[ -x "$SRV" ] || die "$SRV is not built (make, or give the build directory)"
for t in wrk curl sqlite3 perl sha256sum awk; do
    command -v "$t" >/dev/null || die "needs $t (make deps)"
done
perl -MDigest::SHA -e1 2>/dev/null || die "needs perl's Digest::SHA"

T=$(mktemp -d "$TMPBASE/nb-bench-server.XXXXXX")
# nginx's workers (user nobody when started as root) read the static file.
chmod 711 "$T"
SRV_PID=
NGINX_PID=
PG_UP=0
cleanup() {
    [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null && wait "$SRV_PID" 2>/dev/null
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
    [ "$PG_UP" = 1 ] && nb_pg_stop
    if [ "${NB_BENCH_KEEP:-0}" = 1 ]; then
        log "kept $T"
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T0=$(date +%s.%N)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }'; }
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
HZ=$(getconf CLK_TCK)

ADMIN=bench-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
ADMIN_SHA=$(sha "$ADMIN")
POLL=300   # the server's default poll_seconds

# ------------------------------------------------------------ the fleet

# bench-000001 ...: each with a token known to the bench (64 hex digits,
# like the server's own) and the SHA-256 the server keeps: id,token,sha.
log "generating $DEVICES device IDs and tokens"
WIDTH=${#DEVICES}
[ "$WIDTH" -lt 6 ] && WIDTH=6
perl -MDigest::SHA=sha256_hex -e '
    my ($n, $w, $salt) = @ARGV;
    for my $i (1 .. $n) {
        my $id = sprintf("bench-%0${w}d", $i);
        my $tok = sha256_hex("$salt $id");
        print "$id,$tok,", sha256_hex($tok), "\n";
    }' "$DEVICES" "$WIDTH" "$ADMIN" >"$T/fleet.csv"
DEV1=$(head -1 "$T/fleet.csv" | cut -d, -f1)

# ------------------------------------------------------------- measures

# CPU ticks (user + system, all threads) of process $1 and of its
# children (nginx's workers; the PostgreSQL postmaster's backends, WAL
# writer, checkpointer, ...).
cpu_ticks() {
    local p
    for p in "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        cat "/proc/$p/stat" 2>/dev/null || true
    done | awk '{ s += $14 + $15 } END { print s + 0 }'
}
pg_ticks() {
    local pm
    pm=$(head -1 "$NB_PG_DIR/data/postmaster.pid" 2>/dev/null) || { echo 0; return; }
    cpu_ticks "$pm"
}
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
fsize() { stat -c %s "$1" 2>/dev/null || echo 0; }

# --------------------------------------------------------------- server

# start_server LABEL DB: nobrick-server on 127.0.0.1, port 0; sets
# SRV_PID, URL.
start_server() {
    local label=$1 db=$2 port='' extra=()
    mkdir -p "$T/$label/art"
    [ -f "$T/keys/root.pub.pem" ] && extra+=(--root-pub "$T/keys/root.pub.pem")
    [ "$SRV_LOG" = 1 ] || extra+=(--quiet --log-level warn)
    "$SRV" --listen 127.0.0.1 --port 0 --db "$db" --artifacts "$T/$label/art" \
        --admin-token-sha256 "$ADMIN_SHA" --threads "$SRV_THREADS" \
        "${extra[@]}" >"$T/$label/srv.out" 2>"$T/$label/srv.err" &
    SRV_PID=$!
    for _ in $(seq 400); do
        port=$(awk 'NR == 1 && $1 == "port" { print $2 }' "$T/$label/srv.out")
        [ -n "$port" ] && break
        kill -0 "$SRV_PID" 2>/dev/null ||
            die "nobrick-server ($label) exited: $(tail -3 "$T/$label/srv.err")"
        sleep 0.05
    done
    [ -n "$port" ] || die "nobrick-server ($label) printed no port line"
    URL=http://127.0.0.1:$port
}

stop_server() {
    if [ -n "$SRV_PID" ]; then
        kill "$SRV_PID" 2>/dev/null || true
        wait "$SRV_PID" 2>/dev/null || true
        SRV_PID=
    fi
}

alive() { kill -0 "$SRV_PID" 2>/dev/null; }

# --------------------------------------------------------- registration

# api_register LABEL FIRST LAST: devices FIRST..LAST (1-based lines of
# fleet.csv) through POST /api/v1/devices, 8 at a time; their tokens (the
# server's) go to LABEL/tokens. Sets API_OK (201 answers) and API_SECS.
api_register() {
    local label=$1 first=$2 last=$3 t1
    sed -n "${first},${last}p" "$T/fleet.csv" | URL=$URL ADMIN=$ADMIN perl -F, -lane '
        print q{next} if $. > 1;
        print q{silent};
        print q{show-error};
        print qq{url = "$ENV{URL}/api/v1/devices"};
        print qq{header = "Authorization: Bearer $ENV{ADMIN}"};
        print q{header = "Content-Type: application/json"};
        print qq{data = "{\\"id\\":\\"$F[0]\\",\\"hw_rev\\":\\"sim-1\\"}"};
        print q{write-out = "\nHTTP %{http_code}\n"};' >"$T/$label/register.curl"
    t1=$(date +%s.%N)
    curl -sS --no-progress-meter --parallel --parallel-max 8 \
        -K "$T/$label/register.curl" >"$T/$label/register.out" 2>>"$T/$label/register.err" || true
    API_SECS=$(awk -v a="$t1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    perl -ne 'while (/"id":"([^"]+)"[^{}]*?"token":"([0-9a-f]{64})"/g) { print "$1 $2\n" }' \
        "$T/$label/register.out" >>"$T/$label/tokens"
    API_OK=$( (grep -o 'HTTP 201' "$T/$label/register.out" || true) | wc -l)
}

# sql_register LABEL FIRST LAST DB MODE: devices FIRST..LAST of fleet.csv
# by one transaction, with the rows the API writes (devices, and a
# "register" event). MODE new: as registered (no check-in yet); seen: as
# after a check-in one poll interval ago, with the version, slots and
# security version the server stored for device 1's check-in (a fleet in
# its steady state, which the server sees again and again).
sql_register() {
    local label=$1 first=$2 last=$3 db=$4 mode=$5 now sel
    now=$(date +%s)
    sed -n "${first},${last}p" "$T/fleet.csv" >"$T/$label/bulk.csv"
    awk -F, '{ print $1, $2 }' "$T/$label/bulk.csv" >>"$T/$label/tokens"
    if [ "$mode" = new ]; then
        sel="SELECT b.id, b.sha, 0, 'sim-1', NULL, '[]', '', 0, '', $now, 0 FROM bulk b"
    else
        sel="SELECT b.id, b.sha, 0, t.hw_rev, NULL, '[]', t.version, t.security_version,
  t.slots, $now, $((now - POLL)) FROM bulk b, devices t WHERE t.id = '$DEV1'"
    fi
    local ins="INSERT INTO devices (id, token_sha256, enrol_pending, hw_rev, grp, tags,
  version, security_version, slots, created_at, last_seen)
  $sel ORDER BY b.id;
INSERT INTO events (at, device_id, rollout_id, kind, body)
  SELECT $now, id, NULL, 'register', '{}' FROM bulk ORDER BY id;"
    if [ "$label" = sqlite ]; then
        sqlite3 "$db" >/dev/null <<EOF
.bail on
.timeout 30000
CREATE TEMP TABLE bulk (id TEXT, token TEXT, sha TEXT);
.import --csv --schema temp $T/$label/bulk.csv bulk
BEGIN IMMEDIATE;
$ins
COMMIT;
EOF
    else
        "$PSQL" -X -q -v ON_ERROR_STOP=1 "$db" >/dev/null <<EOF
CREATE TEMP TABLE bulk (id TEXT, token TEXT, sha TEXT);
\\copy bulk FROM '$T/$label/bulk.csv' WITH (FORMAT csv)
BEGIN;
$ins
COMMIT;
EOF
    fi
}

# probe LABEL: one check-in of device 1: it must answer 200; the answer
# is kept (nginx serves one of that size) and device 1's row is then the
# template of the "seen" rows.
probe() {
    local label=$1 id tok code
    read -r id tok <"$T/$label/tokens"
    code=$(curl -sS -o "$T/$label/checkin.json" -w '%{http_code}' -X POST \
        -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
        --data-binary '{"hw_rev":"sim-1","version":"1.0.0","security_version":1,"slots":[{"slot":0,"state":"CONFIRMED","version":"1.0.0","security_version":1},{"slot":1,"state":"EMPTY"}]}' \
        "$URL/api/v1/devices/$id/checkin" || echo 000)
    [ "$code" = 200 ] || die "$label: a check-in answered $code: $(head -c 300 "$T/$label/checkin.json")"
    [ -s "$ANSWER" ] || cp "$T/$label/checkin.json" "$ANSWER"
}

# register LABEL DB: the whole fleet; sets REG_NOTE.
register() {
    local label=$1 db=$2 n_api=0 rate=- code want
    : >"$T/$label/tokens"
    REG_NOTE=
    if [ "$REGISTER" != sql ]; then
        # Device 1 first: is there a management API?
        code=$(curl -sS -o "$T/$label/register1.json" -w '%{http_code}' \
            -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
            --data-binary "{\"id\":\"$DEV1\",\"hw_rev\":\"sim-1\"}" \
            "$URL/api/v1/devices" || echo 000)
        if [ "$code" = 201 ]; then
            perl -ne 'print "$1 $2\n" if /"id":"([^"]+)".*"token":"([0-9a-f]{64})"/' \
                "$T/$label/register1.json" >>"$T/$label/tokens"
            n_api=1
        elif [ "$REGISTER" = api ]; then
            die "$label: POST /api/v1/devices answered $code: $(head -c 200 "$T/$label/register1.json")"
        else
            log "$label: the management API answered $code to POST /api/v1/devices: registering by SQL"
            REG_NOTE="$label: no management API (POST /api/v1/devices: HTTP $code): all by SQL"
        fi
    else
        REG_NOTE="$label: all by SQL (NB_BENCH_REGISTER=sql)"
    fi
    [ "$n_api" = 1 ] || sql_register "$label" 1 1 "$db" new
    probe "$label"
    if [ "$n_api" = 1 ]; then
        want=$API_SAMPLE
        [ "$REGISTER" = api ] && want=$DEVICES
        [ "$want" -gt "$DEVICES" ] && want=$DEVICES
        if [ "$want" -gt 1 ]; then
            api_register "$label" 2 "$want"
            [ "$API_OK" = $((want - 1)) ] ||
                die "$label: $((want - 1 - API_OK)) of $((want - 1)) registrations not answered 201: $(grep -o 'HTTP [0-9]*' "$T/$label/register.out" | sort | uniq -c | tr '\n' ' ') $(head -c 300 "$T/$label/register.err")"
            n_api=$want
            local secs=$API_SECS rest=$((DEVICES - want)) proj
            rate=$(awk -v n="$API_OK" -v s="$API_SECS" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
            proj=$(awk -v n="$rest" -v r="$rate" 'BEGIN { printf "%.0f", (r > 0 ? n / r : 1e9) }')
            if [ "$rest" -gt 0 ] && [ "$REGISTER" = auto ] && [ "$proj" -le "$API_BUDGET" ]; then
                api_register "$label" $((want + 1)) "$DEVICES"
                [ "$API_OK" = "$rest" ] ||
                    die "$label: $((rest - API_OK)) registrations not answered 201"
                n_api=$DEVICES
                secs=$(awk -v a="$secs" -v b="$API_SECS" 'BEGIN { printf "%.2f", a + b }')
                rate=$(awk -v n="$((n_api - 1))" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
            fi
            REG_NOTE="$label: POST /api/v1/devices: $rate devices/s (8 in parallel; $((n_api - 1)) in $secs s)"
            if [ "$n_api" -lt "$DEVICES" ]; then
                REG_NOTE+="; the fleet would take ~$(awk -v n="$DEVICES" -v r="$rate" 'BEGIN { printf "%.0f", n / r }') s that way, so the other $((DEVICES - n_api)) were inserted by SQL"
            fi
        fi
    fi
    if [ "$n_api" -lt "$DEVICES" ] && [ "$DEVICES" -gt 1 ]; then
        # Devices registered this way are in their steady state (one
        # check-in a poll interval ago); those of the API have never
        # checked in (their first check-in stores the version).
        sql_register "$label" $((n_api > 1 ? n_api + 1 : 2)) "$DEVICES" "$db" seen
        REG_NOTE+=" (SQL rows as after a check-in ${POLL} s ago)"
    fi
    [ "$(wc -l <"$T/$label/tokens")" = "$DEVICES" ] ||
        die "$label: $(wc -l <"$T/$label/tokens") tokens for $DEVICES devices"
    log "$REG_NOTE"
}

# ----------------------------------------------------- package, rollout

make_package() {
    [ "$ROLLOUT" != none ] || return 0
    if [ ! -x "$NB" ]; then
        log "no $NB: no rollout runs"
        ROLLOUT=none
        return 0
    fi
    local k=$T/keys v=6ba7b810-9dad-11d1-80b4-00c04fd430c8 c=6ba7b811-9dad-11d1-80b4-00c04fd430c8
    mkdir -p "$k"
    if ! {
        "$NB" key generate --insecure-key-file "$k/root.pem" &&
        "$NB" key generate --insecure-key-file "$k/signer.pem" &&
        "$NB" key export-public --insecure-key-file "$k/root.pem" --out "$k/root.pub.pem" &&
        "$NB" key export-public --insecure-key-file "$k/signer.pem" --out "$k/signer.pub.pem" &&
        "$NB" key delegate --insecure-key-file "$k/root.pem" --key-pub "$k/signer.pub.pem" \
            --valid-days 30 --vendor $v --class $c --out "$k/root.cose" &&
        head -c 65536 /dev/urandom >"$k/fw.bin" &&
        "$NB" package --insecure-key-file "$k/signer.pem" --delegation "$k/root.cose" \
            --in "$k/fw.bin" --version 1.1.0 --security-version 2 --hw-rev sim-1 \
            --vendor $v --class $c --out "$k/v110.nbpkg"
    } >"$k/log" 2>&1; then
        log "cannot make the package ($(tail -1 "$k/log")): no rollout runs"
        rm -f "$k/root.pub.pem"
        ROLLOUT=none
    fi
}

# start_rollout LABEL: upload the package, one running rollout, step 1 at
# 10 % (held a week), always in window. Returns 1 (with a message) when
# the management API cannot.
start_rollout() {
    local label=$1 code pkg
    code=$(curl -sS -o "$T/$label/pkg.json" -w '%{http_code}' \
        -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/octet-stream' \
        --data-binary @"$T/keys/v110.nbpkg" "$URL/api/v1/packages?channel=production" || echo 000)
    if [ "$code" != 201 ] && [ "$code" != 200 ]; then
        log "$label: package upload answered $code: $(head -c 200 "$T/$label/pkg.json"): no rollout run"
        return 1
    fi
    pkg=$(perl -ne 'print $1 if /"id":"([^"]+)"/' "$T/$label/pkg.json")
    code=$(curl -sS -o "$T/$label/rollout.json" -w '%{http_code}' \
        -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
        --data-binary "{\"package\":\"$pkg\",\"target\":{\"hw_revs\":[\"sim-1\"]},\"policy\":{\"schedule\":[{\"percent\":10,\"hold\":\"1w\"},{\"percent\":100}],\"windows\":\"always\",\"failure_threshold\":\"100%\"}}" \
        "$URL/api/v1/rollouts" || echo 000)
    if [ "$code" != 201 ]; then
        log "$label: POST /api/v1/rollouts answered $code: $(head -c 200 "$T/$label/rollout.json"): no rollout run"
        return 1
    fi
    RID=$(perl -ne 'print $1 if /"id":"([^"]+)"/' "$T/$label/rollout.json")
}

# The devices a rollout's step at PPM reaches, as the server decides it
# (core/nb_cohort.h: the high 32 bits of SipHash-2-4 under the key
# "nobrick cohort 1" of len(rollout) || rollout || device; reached when
# point * 10^6 < ppm * 2^32). Reads device IDs, prints those reached.
cohort_filter() {
    perl -e '
        use strict; use warnings; no warnings "portable";
        my ($rid, $ppm) = @ARGV;
        my $M = 0xFFFFFFFFFFFFFFFF;
        my ($k0, $k1) = unpack("Q<Q<", "nobrick cohort 1");
        my ($v0, $v1, $v2, $v3);
        sub add { use integer; return $_[0] + $_[1]; }
        sub rotl { return (($_[0] << $_[1]) | ($_[0] >> (64 - $_[1]))) & $M; }
        sub round {
            $v0 = add($v0, $v1) & $M; $v1 = rotl($v1, 13); $v1 ^= $v0; $v0 = rotl($v0, 32);
            $v2 = add($v2, $v3) & $M; $v3 = rotl($v3, 16); $v3 ^= $v2;
            $v0 = add($v0, $v3) & $M; $v3 = rotl($v3, 21); $v3 ^= $v0;
            $v2 = add($v2, $v1) & $M; $v1 = rotl($v1, 17); $v1 ^= $v2; $v2 = rotl($v2, 32);
        }
        sub sip {
            my ($data) = @_;
            ($v0, $v1, $v2, $v3) = ($k0 ^ 0x736f6d6570736575, $k1 ^ 0x646f72616e646f6d,
                                    $k0 ^ 0x6c7967656e657261, $k1 ^ 0x7465646279746573);
            my $len = length $data;
            my $full = $len - $len % 8;
            for (my $i = 0; $i < $full; $i += 8) {
                my $m = unpack("Q<", substr($data, $i, 8));
                $v3 ^= $m; round(); round(); $v0 ^= $m;
            }
            my $b = unpack("Q<", substr($data, $full) . ("\0" x (8 - ($len - $full))));
            $b = ($b | (($len & 0xff) << 56)) & $M;
            $v3 ^= $b; round(); round(); $v0 ^= $b;
            $v2 ^= 0xff; round() for 1 .. 4;
            return ($v0 ^ $v1 ^ $v2 ^ $v3) & $M;
        }
        my $limit = $ppm * 4294967296;
        while (my $d = <STDIN>) {
            chomp $d;
            my $point = sip(chr(length $rid) . $rid . $d) >> 32;
            print "$d\n" if $point * 1000000 < $limit;
        }' "$@"
}

# seed_rollout LABEL DB: the rollout as it is some time into its first
# step: every device the step reaches has been offered it (a day ago, with
# its "offer" event); 19 in 20 of them have confirmed the update, the
# others are downloading (heard from a minute ago). Devices offered during
# the previous run keep their rows.
seed_rollout() {
    local label=$1 db=$2 now n
    now=$(date +%s)
    # The same rollout ID on both backends (a new database each): once.
    [ -f "$T/reached-$RID" ] ||
        cut -d, -f1 "$T/fleet.csv" | cohort_filter "$RID" 100000 >"$T/reached-$RID"
    awk -v r="$RID" '{ print $1 "," r "," (NR % 20 ? "confirmed" : "downloading") }' \
        "$T/reached-$RID" >"$T/$label/reached.csv"
    n=$(wc -l <"$T/$label/reached.csv")
    local ins="INSERT INTO device_rollouts (device_id, rollout_id, state, step,
  offered_at, updated_at, bytes, total)
  SELECT id, rid, st, 0, $((now - 86400)), CASE WHEN st = 'confirmed' THEN $((now - 3600)) ELSE $((now - 60)) END,
    CASE WHEN st = 'confirmed' THEN 65536 ELSE 16384 END, 65536
  FROM reached ORDER BY id ON CONFLICT (device_id, rollout_id) DO NOTHING;
INSERT INTO events (at, device_id, rollout_id, kind, body)
  SELECT $((now - 86400)), id, rid, 'offer', '{}' FROM reached r
  WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.device_id = r.id AND e.kind = 'offer')
  ORDER BY id;"
    if [ "$label" = sqlite ]; then
        sqlite3 "$db" >/dev/null <<EOF
.bail on
.timeout 30000
CREATE TEMP TABLE reached (id TEXT, rid TEXT, st TEXT);
.import --csv --schema temp $T/$label/reached.csv reached
BEGIN IMMEDIATE;
$ins
COMMIT;
EOF
    else
        "$PSQL" -X -q -v ON_ERROR_STOP=1 "$db" >/dev/null <<EOF
CREATE TEMP TABLE reached (id TEXT, rid TEXT, st TEXT);
\\copy reached FROM '$T/$label/reached.csv' WITH (FORMAT csv)
BEGIN;
$ins
COMMIT;
ANALYZE device_rollouts;
EOF
    fi
    log "$label: $n devices reached by the 10 % step of $RID marked as offered"
}

# ------------------------------------------------------------------ wrk

ROWS=()
declare -A WALKED   # check-ins made so far, per backend: where the next run starts
# run_wrk LABEL SCENARIO URL TOKENS [PID]: one wrk run; appends a row.
run_wrk() {
    local label=$1 scen=$2 url=$3 tokens=$4 pid=${5:-} c0=0 c1 p0=0 p1 out line
    local -A r
    out=$T/wrk-$label-${scen// /_}.txt
    [ -n "$pid" ] && c0=$(cpu_ticks "$pid")
    [ "$label" = postgresql ] && p0=$(pg_ticks)
    log "$label, $scen: wrk -t$WRK_THREADS -c$CONNS -d$DURATION ($(elapsed) s so far)"
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --timeout "$WRK_TIMEOUT" --latency \
        -s "$LUA" "$url" -- "$tokens" "$WRK_THREADS" "${WALKED[$label]:-0}" >"$out" 2>&1 ||
        die "wrk failed: $(tail -5 "$out")"
    line=$(grep '^NBRESULT ' "$out") || die "wrk printed no result: $(tail -5 "$out")"
    for kv in ${line#NBRESULT }; do r[${kv%%=*}]=${kv#*=}; done
    WALKED[$label]=$(( ${WALKED[$label]:-0} + r[requests] ))
    local cpu=- dbcpu=- rss=-
    if [ -n "$pid" ]; then
        c1=$(cpu_ticks "$pid")
        if [ "${r[requests]}" -gt 0 ]; then
            cpu=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v n="${r[requests]}" \
                'BEGIN { printf "%.3f", d / hz * 1000 / n }')
        fi
        [ "$label" = nginx ] || rss=$(( $(hwm_kib "$pid") / 1024 ))
    fi
    if [ "$label" = postgresql ] && [ "${r[requests]}" -gt 0 ]; then
        p1=$(pg_ticks)
        dbcpu=$(awk -v d=$((p1 - p0)) -v hz="$HZ" -v n="${r[requests]}" \
            'BEGIN { printf "%.3f", d / hz * 1000 / n }')
    fi
    ROWS+=("$(printf '%-11s %-13s %9s %9s %9s %8s %8s %8s %7s %7s %6s' \
        "$label" "$scen" "${r[rps]}" "$(ms "${r[p50_us]}")" "$(ms "${r[p99_us]}")" \
        "${r[non200]}" "$((r[connect] + r[read] + r[write]))/${r[timeout]}" \
        "${r[offers]}" "$cpu" "$dbcpu" "$rss")")
    if [ "${r[non200]}" != 0 ]; then
        NOTES+=("$label, $scen: ${r[non200]} answers not 200 (status:count ${r[codes]}); first: $(sed -n 's/^NBFIRSTBAD //p' "$out" | head -c 200)")
    fi
    if [ $((r[connect] + r[read] + r[write] + r[timeout])) != 0 ]; then
        NOTES+=("$label, $scen: socket errors connect ${r[connect]}, read ${r[read]}, write ${r[write]}, timeouts ${r[timeout]} (over $WRK_TIMEOUT: not in the latencies)")
    fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
        NOTES+=("$label, $scen: THE SERVER DIED during the run: $(tail -3 "$T/$label/srv.err" 2>/dev/null)")
    fi
}
NOTES=()
SIZES=()
ANSWER=$T/answer.json

db_size() {
    local label=$1 db=$2
    if [ "$label" = sqlite ]; then
        sqlite3 "$db" ".timeout 30000" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
        echo $(( $(fsize "$db") + $(fsize "$db-wal") ))
    else
        "$PSQL" -X -qAt "$db" -c "SELECT pg_database_size(current_database())"
    fi
}

ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
per_dev() { awk -v b="$1" -v n="$DEVICES" 'BEGIN { printf "%.0f", b / n }'; }

# bench_backend LABEL DB
bench_backend() {
    local label=$1 db=$2 size_empty size0 size1 t1
    mkdir -p "$T/$label"
    start_server "$label" "$db"
    log "$label: nobrick-server PID $SRV_PID at $URL"
    size_empty=$(db_size "$label" "$db")
    t1=$(date +%s)
    register "$label" "$db"
    REG_NOTES+=("$REG_NOTE (registration took $(($(date +%s) - t1)) s)")
    if [ "$label" = postgresql ]; then
        # What autovacuum would soon do after 100,000 new rows; done now so
        # it does not run in the middle of a measurement.
        "$PSQL" -X -q "$db" -c "VACUUM ANALYZE" >/dev/null
    fi
    size0=$(db_size "$label" "$db")
    if [ "$ROLLOUT" != only ]; then
        run_wrk "$label" "no rollout" "$URL" "$T/$label/tokens" "$SRV_PID"
    fi
    if [ "$ROLLOUT" != none ] && alive; then
        if start_rollout "$label"; then
            # Its first hours: every device the step reaches is offered
            # it at its next check-in (one write more, and an event).
            run_wrk "$label" "rollout start" "$URL" "$T/$label/tokens" "$SRV_PID"
            # Later: the step's devices were offered and most confirmed;
            # the others are checked against the rollout at every check-in.
            if alive; then
                seed_rollout "$label" "$db"
                run_wrk "$label" "rollout mid" "$URL" "$T/$label/tokens" "$SRV_PID"
            fi
        else
            NOTES+=("$label: no rollout run (the management API could not start one; see above)")
        fi
    fi
    local errs
    errs=$(grep -c 'level=error' "$T/$label/srv.err" || true)
    if [ "$errs" != 0 ]; then
        NOTES+=("$label: the server logged $errs errors, e.g. $(grep 'level=error' "$T/$label/srv.err" | head -1 | cut -c1-300)")
    fi
    stop_server
    size1=$(db_size "$label" "$db")
    SIZES+=("$(printf '%-11s %6s B/device registered (%s MB; %s B/device over the empty database)' \
        "$label" "$(per_dev "$size0")" "$(mb "$size0")" "$(per_dev $((size0 - size_empty)))")")
    SIZES+=("$(printf '%-11s %6s B/device after the runs (%s MB; %s B/device over the empty database)' \
        "" "$(per_dev "$size1")" "$(mb "$size1")" "$(per_dev $((size1 - size_empty)))")")
}
REG_NOTES=()

# ---------------------------------------------------------------- nginx

free_port() {
    local p
    for _ in $(seq 50); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

bench_nginx() {
    local d=$T/nginx port code
    command -v nginx >/dev/null || { NOTES+=("no nginx installed: no ceiling line"); return 0; }
    [ -s "$ANSWER" ] || printf '{"action":"none","poll_seconds":300}' >"$ANSWER"
    mkdir -p "$d/www" "$d/tmp"
    chmod 755 "$d" "$d/www"
    cp "$ANSWER" "$d/www/checkin.json"
    chmod 644 "$d/www/checkin.json"
    for _ in 1 2 3 4 5; do
        port=$(free_port) || die "no free port for nginx"
        cat >"$d/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/json;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$port;
        root $d/www;
        # Every check-in (a POST) gets the static file: the static module
        # answers POST with 405, which becomes a 200 with the file.
        location / {
            rewrite ^ /checkin.json break;
            error_page 405 =200 /checkin.json;
        }
    }
}
EOF
        nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" >"$d/stdout" 2>&1 &
        NGINX_PID=$!
        code=000
        for _ in $(seq 100); do
            kill -0 "$NGINX_PID" 2>/dev/null || break
            code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary '{}' \
                "http://127.0.0.1:$port/api/v1/devices/x/checkin" || true)
            [ "$code" = 200 ] && break
            sleep 0.05
        done
        [ "$code" = 200 ] && break
        kill "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
        NGINX_PID=
    done
    [ -n "$NGINX_PID" ] || die "nginx did not come up: $(tail -3 "$d/error.log" 2>/dev/null)"
    # The same requests; the tokens of whichever backend ran (nginx
    # ignores them) or of the fleet file.
    local tokens
    tokens=$( (ls "$T"/*/tokens 2>/dev/null || true) | head -1)
    if [ -z "$tokens" ]; then
        tokens=$T/fleet.tokens
        awk -F, '{ print $1, $2 }' "$T/fleet.csv" >"$tokens"
    fi
    run_wrk nginx "static $(fsize "$d/www/checkin.json") B" "http://127.0.0.1:$port" "$tokens" "$NGINX_PID"
    kill "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=
}

# ----------------------------------------------------------------- main

make_package
PSQL=psql
for b in $BACKENDS; do
    case $b in
    sqlite)
        bench_backend sqlite "$T/sqlite.db"
        ;;
    postgresql)
        # shellcheck source=tests/support/pg.sh
        source "$SRC/tests/support/pg.sh"
        if ! nb_pg__find_bin; then
            NOTES+=("postgresql: skipped: PostgreSQL server binaries not found (make deps)")
            continue
        fi
        if [ "$(id -u)" = 0 ] && ! id -u postgres >/dev/null 2>&1; then
            NOTES+=("postgresql: skipped: running as root without a user postgres")
            continue
        fi
        log "starting a private PostgreSQL cluster"
        PG_UP=1                    # nb_pg_stop may run at any time
        nb_pg_start || { trap cleanup EXIT; die "PostgreSQL did not start"; }
        trap cleanup EXIT          # pg.sh set its own
        trap 'exit 130' INT TERM
        [ -x "$NB_PG_BIN/psql" ] && PSQL=$NB_PG_BIN/psql
        for kv in ${NB_BENCH_PG_SET:-}; do
            "$PSQL" -X -q "$NB_TEST_DB" -c "ALTER DATABASE nobrick SET ${kv%%=*} = '${kv#*=}'" >/dev/null ||
                die "NB_BENCH_PG_SET: cannot set $kv"
            NOTES+=("postgresql: $kv for the server's sessions (NB_BENCH_PG_SET)")
        done
        bench_backend postgresql "$NB_TEST_DB"
        nb_pg_stop
        PG_UP=0
        ;;
    *) die "NB_BENCH_BACKENDS: sqlite and/or postgresql, not '$b'" ;;
    esac
done
[ "$WITH_NGINX" = 1 ] && bench_nginx

# --------------------------------------------------------------- report

cpus=$(nproc)
model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo
echo "nobrick-server check-ins, $(date -u '+%Y-%m-%d %H:%M UTC'), $cpus CPUs (${model:-?}), $(uname -sr)"
rev=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo '?')
[ -n "$(git -C "$SRC" status --porcelain -- cmd/nobrick-server 2>/dev/null)" ] && rev+=" + uncommitted changes to cmd/nobrick-server"
echo "nobrick-server: $SRV (source $rev)"
echo "fleet $DEVICES devices; wrk -t$WRK_THREADS -c$CONNS -d$DURATION --timeout $WRK_TIMEOUT on the same machine; server --threads $SRV_THREADS$([ "$SRV_LOG" = 1 ] || echo ', --quiet')"
echo "database directory (SQLite): $(df -T "$TMPBASE" | awk 'NR == 2 { print $2 }') at $TMPBASE"
echo "load average before: $LOAD0, after: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the figures)"
echo
printf '%-11s %-13s %9s %9s %9s %8s %8s %8s %7s %7s %6s\n' backend scenario "req/s" "p50 ms" "p99 ms" non-200 "sock/to" offers "srv ms" "db ms" "RSS MB"
for r in "${ROWS[@]}"; do echo "$r"; done
echo
echo "srv ms / db ms: CPU time (user + system) per request of the server (nginx: its"
echo "master and workers) / of the PostgreSQL cluster (postmaster and its children);"
echo "RSS MB: the server's peak resident set (VmHWM). sock/to: socket errors / timeouts."
echo
echo "database size per device (SQLite: file + WAL after a checkpoint; PostgreSQL: pg_database_size):"
for s in "${SIZES[@]}"; do echo "  $s"; done
echo
echo "registration:"
for s in "${REG_NOTES[@]}"; do echo "  $s"; done
if [ "${#NOTES[@]}" -gt 0 ]; then
    echo
    echo "notes:"
    for s in "${NOTES[@]}"; do echo "  $s"; done
fi
echo
echo "total $(elapsed) s"
