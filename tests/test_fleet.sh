#!/usr/bin/env bash
# test_fleet.sh - nobrick-sim fleet against nb-testserver on 127.0.0.1.
#
# One fleet in a directory (so it lives on from run to run), faults on:
#
#   good release  1.1.0 (healthy) offered to every device: the fleet
#                 settles with every device on a verified bootable image
#                 and no device bricked; almost all on 1.1.0 (a fault may
#                 keep a few on 1.0.0: a bad flash block, a reset during
#                 the trial); enrolment gave every device its own token;
#                 ten flash files agree with 'nobrick-sim boot' on a copy
#   bad release   1.2.0, whose firmware crashes at boot: every device
#                 that took it crashed its trial boots, the bootloader
#                 rejected it and the device runs what it ran before; no
#                 device runs or confirmed 1.2.0, none bricked
#   behaviours    1.3.0 as no-server, health-fail and crash-on-hw:sim-2 to
#                 three groups of devices: each reverted (sim-1 devices
#                 take crash-on-hw:sim-2 and keep it)
#
# 100 devices (30 under ASan: NOBRICK_SANITIZE=1; 10,000 in make soak:
# NOBRICK_SOAK=1, the behaviours then on the first 300), default fault
# mix.
# Needs: NOBRICK_BUILD (nobrick-sim, tests/nb-testserver), curl, python3.
set -euo pipefail

BUILD=${NOBRICK_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
SIM=${NOBRICK_SIM:-$BUILD/nobrick-sim}
[ -n "$SIM" ] || SIM=$BUILD/nobrick-sim
SRV=$BUILD/tests/nb-testserver
for b in "$SIM" "$SRV"; do
    [ -x "$b" ] || { echo "test_fleet: $b is not built" >&2; exit 1; }
done
for c in curl python3; do
    command -v $c >/dev/null || { echo "test_fleet: needs $c" >&2; exit 1; }
done

N=100
DURATION=80
if [ "${NOBRICK_SANITIZE:-0}" = 1 ]; then
    N=30
    DURATION=150
elif [ "${NOBRICK_SOAK:-0}" = 1 ]; then
    N=10000
    DURATION=1200
fi
SEED=${NOBRICK_FLEET_SEED:-7}

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
    for f in fleet.out fleet.err srv.err; do
        [ -s "$f" ] && { echo "--- $f (last lines)" >&2; tail -n 30 "$f" >&2; }
    done
    exit 1
}
ok() { checks=$((checks + 1)); }

# ---------------------------------------------------------------- images
img() { # VERSION SVN BEHAVIOUR OUT
    "$SIM" make-image --version "$1" --security-version "$2" --size 40000 \
        --hw-revs sim-1,sim-2 --behaviour "$3" --out "$4" >/dev/null ||
        fail "make-image $1 $3"
}
img 1.1.0 2 healthy art/v110.nbpkg
img 1.2.0 3 crash-on-boot art/v120.nbpkg
img 1.3.0 3 no-server art/v130-ns.nbpkg
img 1.3.0 3 health-fail art/v130-hf.nbpkg
img 1.3.0 3 crash-on-hw:sim-2 art/v130-hw.nbpkg

CASE=cli
"$SIM" fleet --help >help.out || fail "fleet --help"
grep -q 'devices: N, updated: U, reverted: R, bricked: B' help.out ||
    fail "--help does not describe the summary line"
set +e
"$SIM" fleet --devices 1 --bogus 2>err.out >/dev/null
rc=$?
set -e
[ "$rc" = 64 ] || fail "an unknown option: exit $rc, not 64"
ok

# ------------------------------------------------------------- the server
"$SRV" --artifacts art --fleet-token fleet-secret --log events.jsonl \
    --quiet >srv.out 2>srv.err &
PIDS+=($!)
SRV_PID=$!
PORT=
for _ in $(seq 100); do
    PORT=$(awk 'NR == 1 && $1 == "port" { print $2 }' srv.out)
    [ -n "$PORT" ] && break
    kill -0 "$SRV_PID" 2>/dev/null || fail "nb-testserver exited"
    sleep 0.05
done
[ -n "$PORT" ] || fail "nb-testserver printed no port line"
URL=http://127.0.0.1:$PORT

# offer DEVICE ROLLOUT VERSION SVN ARTIFACT
offer() {
    local code
    code=$(curl -sS -o ctl.out -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' \
        --data "{\"device\":\"$1\",\"offer\":{\"rollout\":\"$2\",\"version\":\"$3\",\"security_version\":$4,\"artifact\":\"$5\"}}" \
        "$URL/test/offer") || fail "control offer failed"
    [ "$code" = 200 ] || fail "offer $*: HTTP $code: $(cat ctl.out)"
}

# fleet REPORT [DEVICES]: one run of the fleet (its first DEVICES, default
# all) until it settles.
fleet() {
    set +e
    "$SIM" fleet --server "$URL" --enrol-token fleet-secret \
        --devices "${2:-$N}" --dir fleet --hw-revs sim-1:80,sim-2:20 \
        --seed "$SEED" --faults default --until settled \
        --duration "$DURATION" --threads 4 \
        --poll "$([ "$N" -gt 1000 ] && echo 20 || echo 1)" \
        --report "$1" --server-pid "$SRV_PID" >fleet.out 2>fleet.err
    RC=$?
    set -e
}

# check PHASE REPORT: the report's assertions for one phase (one python
# run: starting python is slow on some machines). Prints what is wrong.
check() {
    python3 - "$1" "$2" "$N" <<'PY'
import json, sys
phase, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = json.load(open(path))
devs, tot = r["devices"], r["totals"]
bad = []
def need(cond, what):
    if not cond:
        bad.append(what)
need(tot["devices"] == n and len(devs) == n, "device count")
need(tot["bricked"] == 0, "%d bricked" % tot["bricked"])
# Every device boots a verified image and keeps a confirmed one.
for d in devs:
    if d["bricked"] or d["running"] is None or d["confirmed"] is None or d["violations"]:
        bad.append("%s: no verified bootable image (%s)" % (d["id"], d.get("why", "")))
if phase == "good":
    up = [d for d in devs if d["confirmed"] == "1.1.0"]
    need(len(up) * 100 >= n * 85, "only %d of %d on 1.1.0" % (len(up), n))
    # Those left on 1.0.0 had a fault that explains it.
    for d in devs:
        if d["confirmed"] != "1.1.0" and not (d["faults"]["bad_block"] or d["reverts"]):
            bad.append("%s: left on %s without a reason" % (d["id"], d["confirmed"]))
    need(sum(tot["faults"].values()) > 0, "no fault fired")
    hw2 = sum(1 for d in devs if d["hw_rev"] == "sim-2")
    need(0 < hw2 < n, "hardware revisions: %d sim-2" % hw2)
elif phase == "bad":
    need(tot["updated"] == 0, "updated to the bad release")
    took = [d for d in devs if d["crashes"]]
    need(len(took) * 100 >= n * 80, "only %d of %d took 1.2.0" % (len(took), n))
    for d in devs:
        if "1.2.0" in (d["running"], d["confirmed"]):
            bad.append("%s: runs or confirmed 1.2.0" % d["id"])
        if d["crashes"] and not (d["reverts"] and d["running"] == d["started_on"]):
            bad.append("%s: took 1.2.0, did not revert cleanly" % d["id"])
elif phase == "behaviours":
    third = n // 3
    for d in devs:
        k = int(d["id"][4:])
        group = "ns" if k <= third else "hf" if k <= 2 * third else "hw"
        may = group == "hw" and d["hw_rev"] == "sim-1"
        if not may and "1.3.0" in (d["running"], d["confirmed"]):
            bad.append("%s (%s, %s): runs 1.3.0" % (d["id"], group, d["hw_rev"]))
        if d["attempts"] and not may and not d["faults"]["bad_block"] and not d["reverts"]:
            bad.append("%s (%s): tried 1.3.0, no revert" % (d["id"], group))
    need(any(d["confirmed"] == "1.3.0" for d in devs), "no sim-1 device kept crash-on-hw:sim-2")
    need(tot["reverted"] > third, "only %d reverted" % tot["reverted"])
# id and version, for the flash files
with open(path + ".running", "w") as f:
    for d in devs:
        f.write("%s %s\n" % (d["id"], d["running"]))
print("\n".join(bad[:20]))
PY
}

# ------------------------------------------------------------ good release
CASE=good-release
offer '*' r-good 1.1.0 2 v110.nbpkg
fleet good.json
[ "$RC" = 0 ] || fail "fleet exit $RC (0 expected)"
tail -n 1 fleet.out | grep -Eq "^devices: $N, updated: [0-9]+, reverted: [0-9]+, bricked: 0$" ||
    fail "summary line: $(tail -n 1 fleet.out)"
grep -q '^until: met' fleet.out || fail "the fleet did not settle"
out=$(check good good.json) || fail "cannot read the report"
[ -z "$out" ] || fail "$out"
# Enrolment: every device holds its own token, not the fleet's.
for f in fleet/*.agent; do
    grep -q '^token=[0-9a-f]\{32\}$' "$f" || fail "$f: no device token"
done
grep -q '"kind":"report".*"state":"confirmed"' events.jsonl ||
    fail "the server heard no confirmed report"
# The flash files as the CLI sees them (on copies: boot writes), for ten
# devices: the bootloader boots what the report says runs.
while read -r id want; do
    cp "fleet/$id.flash" copy.flash
    j=$("$SIM" boot --flash copy.flash) || fail "nobrick-sim boot $id: $j"
    echo "$j" | grep -q "\"outcome\":\"image\".*\"version\":\"$want\"" ||
        fail "$id: boot says $j, the report $want"
done < <(awk -v k=$((N / 10)) 'NR % k == 1' good.json.running)
ok

# ------------------------------------------------------------- bad release
CASE=bad-release
offer '*' r-bad 1.2.0 3 v120.nbpkg
fleet bad.json
[ "$RC" = 0 ] || fail "fleet exit $RC (0 expected)"
tail -n 1 fleet.out | grep -Eq "^devices: $N, updated: 0, reverted: [0-9]+, bricked: 0$" ||
    fail "summary line: $(tail -n 1 fleet.out)"
out=$(check bad bad.json) || fail "cannot read the report"
[ -z "$out" ] || fail "$out"
grep -Eq '"kind":"report".*"version":"1.2.0","state":"reverted"' \
    events.jsonl || fail "the server heard no reverted report of 1.2.0"
ok

# -------------------------------------------------------------- behaviours
CASE=behaviours
NB=$((N < 300 ? N : 300))
third=$((NB / 3))
for i in $(seq 1 "$NB"); do
    id=$(printf 'sim-%06d' "$i")
    if [ "$i" -le "$third" ]; then
        offer "$id" r-ns 1.3.0 3 v130-ns.nbpkg
    elif [ "$i" -le $((2 * third)) ]; then
        offer "$id" r-hf 1.3.0 3 v130-hf.nbpkg
    else
        offer "$id" r-hw 1.3.0 3 v130-hw.nbpkg
    fi
done
fleet beh.json "$NB"
[ "$RC" = 0 ] || fail "fleet exit $RC (0 expected)"
tail -n 1 fleet.out | grep -Eq "^devices: $NB, updated: [0-9]+, reverted: [0-9]+, bricked: 0$" ||
    fail "summary line: $(tail -n 1 fleet.out)"
out=$(N=$NB check behaviours beh.json) || fail "cannot read the report"
[ -z "$out" ] || fail "$out"
ok

grep -q "server $SRV_PID: .* ms per check-in" fleet.out ||
    fail "no server measurement"
echo "test_fleet: $checks checks passed ($N devices)"
