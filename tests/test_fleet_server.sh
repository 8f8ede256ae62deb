#!/usr/bin/env bash
# test_fleet_server.sh - nobrick-sim fleet against the real nobrick-server
# (SQLite, port 0, on 127.0.0.1), packages and rollouts through its
# management API. The server trusts the TEST root of the simulated devices
# (root_pub from 'nobrick-sim fleet root-pub'). One fleet in a directory,
# default fault mix, tags set through the management API (--tags),
# --check-server at the end of each run.
#
#   staged     1.1.0 (healthy) in a rollout of two steps, 10 % held 8 s
#              then 100 %: the rollout reaches its last step, the fleet
#              settles with no device bricked, almost all on 1.1.0, every
#              device's version as the server last heard it, tags set
#   bad        1.2.0, whose firmware crashes at boot, in a rollout whose
#              first step is 30 % for an hour: the devices offered it
#              crash, revert and report it; the rollout pauses itself
#              ("auto: ..."); no device runs 1.2.0, none bricked, and no
#              device beyond the first step was offered it
#
# 100 devices (30 under ASan). Skipped (exit 0 with a message) when
# nobrick-server is not built. Needs: NOBRICK_BUILD (nobrick-server,
# nobrick-sim), curl, python3.
set -euo pipefail

BUILD=${NOBRICK_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
SIM=${NOBRICK_SIM:-$BUILD/nobrick-sim}
[ -n "$SIM" ] || SIM=$BUILD/nobrick-sim
SRV=$BUILD/nobrick-server
[ -x "$SIM" ] || { echo "test_fleet_server: $SIM is not built" >&2; exit 1; }
if [ ! -x "$SRV" ]; then
    echo "test_fleet_server: SKIPPED: $SRV is not built"
    exit 0
fi
for c in curl python3; do
    command -v $c >/dev/null || { echo "test_fleet_server: needs $c" >&2; exit 1; }
done
unset http_proxy https_proxy all_proxy HTTPS_PROXY ALL_PROXY no_proxy NO_PROXY

N=100
DURATION=90
if [ "${NOBRICK_SANITIZE:-0}" = 1 ]; then
    N=30
    DURATION=150
fi

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
CASE=setup
fail() {
    echo "FAIL [$CASE]: $*" >&2
    for f in fleet.out fleet.err srv.err; do
        [ -s "$f" ] && { echo "--- $f (last lines)" >&2; tail -n 30 "$f" >&2; }
    done
    exit 1
}
ok() { checks=$((checks + 1)); }

for a in "1.1.0 2 healthy v110" "1.2.0 3 crash-on-boot v120"; do
    set -- $a
    "$SIM" make-image --version "$1" --security-version "$2" --size 40000 \
        --hw-revs sim-1,sim-2 --behaviour "$3" --out "$4.nbpkg" >/dev/null ||
        fail "make-image $1"
done
"$SIM" fleet root-pub >root.pem || fail "fleet root-pub"
grep -q 'BEGIN PUBLIC KEY' root.pem || fail "root-pub printed no PEM"
echo admin-secret >admin.tok
echo fleet-secret >fleet.tok
cat >srv.conf <<EOF
port = 0
db = $T/nb.db
artifacts = $T/art
admin_token_file = $T/admin.tok
fleet_token_file = $T/fleet.tok
root_pub = $T/root.pem
EOF
"$SRV" --config srv.conf --quiet >srv.out 2>srv.err &
PIDS+=($!)
SRV_PID=$!
PORT=
for _ in $(seq 100); do
    PORT=$(awk 'NR == 1 && $1 == "port" { print $2 }' srv.out)
    [ -n "$PORT" ] && break
    kill -0 "$SRV_PID" 2>/dev/null || fail "nobrick-server exited"
    sleep 0.05
done
[ -n "$PORT" ] || fail "nobrick-server printed no port line"
URL=http://127.0.0.1:$PORT

# api METHOD PATH [BODY|@FILE]: the management API; the answer in api.out.
api() {
    local code args=()
    case ${3:-} in
    @*) args=(-H 'Content-Type: application/octet-stream' --data-binary "$3") ;;
    ?*) args=(-H 'Content-Type: application/json' --data "$3") ;;
    esac
    code=$(curl -sS -o api.out -w '%{http_code}' -X "$1" \
        -H 'Authorization: Bearer admin-secret' "${args[@]}" "$URL$2") ||
        fail "$1 $2: no answer"
    case $code in
    2??) ;;
    *) fail "$1 $2: HTTP $code: $(cat api.out)" ;;
    esac
}
jget() { # KEY: the first field KEY of api.out (a string or a number)
    grep -o "\"$1\":\(\"[^\"]*\"\|[^,}]*\)" api.out |
        sed -n "1{s/^\"$1\"://; s/^\"//; s/\"\$//; p}"
}

fleet() { # REPORT SETTLE
    set +e
    "$SIM" fleet --server "$URL" --enrol-token fleet-secret --devices "$N" \
        --dir fleet --hw-revs sim-1:80,sim-2:20 --tags eu:50,us:50 \
        --admin-token admin-secret --check-server --seed 11 \
        --faults default --until settled --settle "$2" \
        --duration "$DURATION" --poll 1 --report "$1" \
        --server-pid "$SRV_PID" >fleet.out 2>fleet.err
    RC=$?
    set -e
}

# ------------------------------------------------------------------ staged
CASE=staged
api POST '/api/v1/packages?channel=production' @v110.nbpkg
PKG=$(jget id)
api POST /api/v1/rollouts "{\"package\":\"$PKG\",\"target\":{},\"policy\":{\"schedule\":[{\"percent\":10,\"hold\":\"8s\"},{\"percent\":100}],\"windows\":\"always\",\"failure_threshold\":\"30%\",\"min_attempted\":10}}"
R1=$(jget id)
fleet staged.json 20
[ "$RC" = 0 ] || fail "fleet exit $RC (0 expected)"
tail -n 1 fleet.out | grep -Eq "^devices: $N, updated: [0-9]+, reverted: [0-9]+, bricked: 0$" ||
    fail "summary line: $(tail -n 1 fleet.out)"
api GET "/api/v1/rollouts/$R1"
[ "$(jget step)" = 1 ] || fail "rollout $R1 did not reach its last step: $(cat api.out)"
out=$(python3 - staged.json "$N" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); n = int(sys.argv[2])
devs, bad = r["devices"], []
up = sum(1 for d in devs if d["confirmed"] == "1.1.0")
if up * 100 < n * 85:
    bad.append("only %d of %d on 1.1.0" % (up, n))
for d in devs:
    if d["bricked"] or d["running"] is None or d["violations"]:
        bad.append("%s: no verified bootable image" % d["id"])
    if d.get("server_version") != d["running"]:
        bad.append("%s: runs %s, server heard %s" % (d["id"], d["running"], d.get("server_version")))
print("\n".join(bad[:20]))
PY
) || fail "cannot read the report"
[ -z "$out" ] || fail "$out"
api GET /api/v1/devices/sim-000001
grep -Eq '"tags":\["(eu|us)"\]' api.out ||
    fail "sim-000001 has no tag from --tags: $(cat api.out)"
ok

# --------------------------------------------------------------------- bad
CASE=bad
api POST '/api/v1/packages?channel=production' @v120.nbpkg
PKG=$(jget id)
api POST /api/v1/rollouts "{\"package\":\"$PKG\",\"target\":{},\"policy\":{\"schedule\":[{\"percent\":30,\"hold\":\"1h\"},{\"percent\":100}],\"windows\":\"always\"}}"
R2=$(jget id)
fleet bad.json 10
[ "$RC" = 0 ] || fail "fleet exit $RC (0 expected)"
tail -n 1 fleet.out | grep -Eq "^devices: $N, updated: 0, reverted: [1-9][0-9]*, bricked: 0$" ||
    fail "summary line: $(tail -n 1 fleet.out)"
api GET "/api/v1/rollouts/$R2"
[ "$(jget state)" = paused ] || fail "rollout $R2 did not pause: $(cat api.out)"
jget pause_reason | grep -q '^auto: ' || fail "not an automatic pause: $(cat api.out)"
[ "$(jget step)" = 0 ] || fail "rollout $R2 went past its first step"
out=$(python3 - bad.json "$N" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); n = int(sys.argv[2])
devs, bad = r["devices"], []
took = [d for d in devs if d["crashes"]]
if not took:
    bad.append("no device took 1.2.0")
if len(took) * 100 > n * 45:
    bad.append("%d of %d took 1.2.0: beyond the first step (30 %%)" % (len(took), n))
for d in devs:
    if d["bricked"] or "1.2.0" in (d["running"], d["confirmed"]):
        bad.append("%s: bricked or on 1.2.0" % d["id"])
    if d["crashes"] and not (d["reverts"] and d["running"] == d["started_on"]):
        bad.append("%s: took 1.2.0, did not revert cleanly" % d["id"])
    if d.get("server_version") != d["running"]:
        bad.append("%s: runs %s, server heard %s" % (d["id"], d["running"], d.get("server_version")))
print("\n".join(bad[:20]))
PY
) || fail "cannot read the report"
[ -z "$out" ] || fail "$out"
ok

echo "test_fleet_server: $checks checks passed ($N devices)"
