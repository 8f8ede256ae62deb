#!/usr/bin/env bash
# bench/fleet.sh - how fast nobrick-sim fleet simulates devices, and what
# the server pays per device.
#
#   bash bench/fleet.sh [N ...]          (default: 100 1000)
#
# For each fleet size N, against a fresh nb-testserver on 127.0.0.1:
#   rollout   every device is offered 1.1.0 (a 40,000-byte payload) and
#             powers on at once (--ramp 0, no faults): the wall time until
#             every device runs it confirmed (check-in, manifest,
#             download, verify, trial boot, health report and ack,
#             confirm), as devices updated per second, and the
#             simulator's peak RSS;
#   faults    the same with the default fault mix, until settled;
#   idle      nothing to offer, --duration 10: check-ins only, so the
#             server's CPU time per check-in and its RSS (from
#             /proc/PID) are the cost of a polling fleet.
# Environment: NOBRICK_BUILD (default build), THREADS (4), POLL (seconds
# between check-ins of an idle device; default the fleet's own),
# SERVER=nobrick-server to measure the real server (SQLite, a fresh
# database per run; the update is a rollout of one step, 100 %, through
# its management API) instead of nb-testserver.
set -euo pipefail

BUILD=${NOBRICK_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
SIM=$BUILD/nobrick-sim
SERVER=${SERVER:-nb-testserver}
case $SERVER in
nb-testserver) SRV=$BUILD/tests/nb-testserver ;;
nobrick-server) SRV=$BUILD/nobrick-server ;;
*) echo "bench/fleet: SERVER is nb-testserver or nobrick-server" >&2; exit 1 ;;
esac
THREADS=${THREADS:-4}
for b in "$SIM" "$SRV"; do
    [ -x "$b" ] || { echo "bench/fleet: $b is not built (make)" >&2; exit 1; }
done
command -v python3 >/dev/null || { echo "bench/fleet: needs python3" >&2; exit 1; }
SIZES=${*:-100 1000}

T=$(mktemp -d)
SRV_PID=
cleanup() {
    [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
cd "$T"
mkdir art
"$SIM" make-image --version 1.1.0 --security-version 2 --size 40000 \
    --behaviour healthy --out art/v110.nbpkg >/dev/null
cp art/v110.nbpkg v110.nbpkg
"$SIM" fleet root-pub >root.pem
echo bench >fleet.tok
echo bench-admin >admin.tok

start_server() {
    [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null && wait "$SRV_PID" 2>/dev/null
    : >srv.out
    if [ "$SERVER" = nobrick-server ]; then
        rm -rf db.sqlite* sart && mkdir sart
        "$SRV" --port 0 --db "$T/db.sqlite" --artifacts "$T/sart" \
            --fleet_token_file "$T/fleet.tok" \
            --admin_token_file "$T/admin.tok" --root_pub "$T/root.pem" \
            --quiet >srv.out 2>srv.err &
    else
        "$SRV" --artifacts art --fleet-token bench --quiet >srv.out \
            2>srv.err &
    fi
    SRV_PID=$!
    PORT=
    for _ in $(seq 100); do
        PORT=$(awk 'NR == 1 && $1 == "port" { print $2 }' srv.out)
        [ -n "$PORT" ] && break
        sleep 0.05
    done
    [ -n "$PORT" ] || { echo "bench/fleet: $SERVER did not start:" >&2; cat srv.err >&2; exit 1; }
    URL=http://127.0.0.1:$PORT
}
offer() {
    if [ "$SERVER" = nobrick-server ]; then
        local pkg
        pkg=$(curl -sS -X POST -H 'Authorization: Bearer bench-admin' \
            -H 'Content-Type: application/octet-stream' \
            --data-binary @v110.nbpkg "$URL/api/v1/packages" |
            sed -n 's/^{"id":"\([^"]*\)".*/\1/p')
        [ -n "$pkg" ] || { echo "bench/fleet: upload failed" >&2; exit 1; }
        curl -sS -o /dev/null -X POST -H 'Authorization: Bearer bench-admin' \
            -H 'Content-Type: application/json' \
            --data "{\"package\":\"$pkg\",\"policy\":{\"schedule\":[{\"percent\":100}],\"windows\":\"always\",\"failure_threshold\":\"100%\"}}" \
            "$URL/api/v1/rollouts"
    else
        curl -sS -o /dev/null -X POST -H 'Content-Type: application/json' \
            --data '{"device":"*","offer":{"rollout":"r1","version":"1.1.0","security_version":2,"artifact":"v110.nbpkg"}}' \
            "$URL/test/offer"
    fi
}
# run NAME N ARGS...: one fleet run; its report in NAME.json
run() {
    local name=$1 n=$2
    shift 2
    "$SIM" fleet --server "$URL" --enrol-token bench --devices "$n" \
        --threads "$THREADS" ${POLL:+--poll "$POLL"} --quiet \
        --report "$name.json" --server-pid "$SRV_PID" "$@" >"$name.out" \
        2>"$name.err" || {
        echo "bench/fleet: $name failed (exit $?):" >&2
        tail -n 5 "$name.out" "$name.err" >&2
        exit 1
    }
}

echo "nobrick-sim fleet vs $SERVER; 40,000-byte update, layout ab,"
echo "64 KiB slots, $THREADS threads, $(nproc) CPUs"
printf "%-7s %-8s %8s %10s %11s %9s %10s %12s %9s\n" devices run wall_s \
    devices/s checkins/s rss_MiB lag_ms srv_ms/chk srv_MiB
for n in $SIZES; do
    for kind in rollout faults idle; do
        start_server
        case $kind in
        rollout)
            offer
            run "$kind-$n" "$n" --faults none --ramp 0 \
                --until version=1.1.0 --duration 900 ;;
        faults)
            offer
            run "$kind-$n" "$n" --faults default --ramp 0 \
                --until settled --duration 900 ;;
        idle)
            run "$kind-$n" "$n" --faults none --duration 10 ;;
        esac
        r=$kind-$n.json
        python3 - "$r" "$n" "$kind" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t, n, kind = r["totals"], int(sys.argv[2]), sys.argv[3]
wall = t["elapsed_s"]
rate = t["updated"] / wall if kind != "idle" and wall else 0
print("%-7d %-8s %8.1f %10.1f %11.0f %9.1f %10.1f %12.3f %9.1f" % (
    n, kind, wall, rate, t["checkins_per_s"], t["peak_rss_kb"] / 1024.0,
    t["step_lag_ms_mean"], t.get("server_cpu_ms_per_checkin", 0),
    t.get("server_rss_kb", 0) / 1024.0))
if t["bricked"]:
    print("  BRICKED: %d" % t["bricked"])
PY
    done
done
echo "devices/s: devices updated per second of wall time (rollout, faults);"
echo "srv_ms/chk: the server's CPU time over the check-ins of the run (in"
echo "'idle', check-ins only; otherwise downloads and reports included)."
