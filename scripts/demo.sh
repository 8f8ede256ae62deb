#!/usr/bin/env bash
# demo.sh - `make demo`: a whole release through a faulty simulated fleet.
#
#   1. a SoftHSM2 token with a root key and a signing key (the root
#      certifies the signing key; neither private key leaves the token)
#   2. firmware v1.0.0 and v1.1.0 (healthy) and v1.2.0 (crashes on boot on
#      hardware revision sim-2), signed into packages in the token
#   3. nobrick-server on 127.0.0.1 with SQLite; the packages uploaded
#      (the server checks each against the root public key)
#   4. DEVICES simulated devices (nobrick-sim fleet: real bootloader code,
#      real agent, simulated NOR flash), confirmed on v1.0.0, trusting only
#      the demo root; faults on: power cuts at random flash operations,
#      torn writes, dropped and stalled connections, bit flips in transit,
#      resets during install, bad flash blocks
#   5. a staged rollout of v1.1.0 (5 %, 25 %, then everyone)
#   6. a staged rollout of v1.2.0 that pauses itself when its trials
#      revert on sim-2 devices
#   7. the summary, and where to look; everything started is stopped
#
# Usage: bash scripts/demo.sh [BUILD_DIR]   (make demo builds first)
# Environment: DEMO_DEVICES (default 1000), DEMO_SEED (default 1),
# DEMO_DIR (default BUILD_DIR/demo; wiped at start).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$SRC/build}" && pwd)
N=${DEMO_DEVICES:-1000}
SEED=${DEMO_SEED:-1}
DIR=${DEMO_DIR:-$BUILD/demo}
TOOL=$BUILD/nobrick
SIM=$BUILD/nobrick-sim
SRV=$BUILD/nobrick-server

for b in "$TOOL" "$SIM" "$SRV"; do
    [ -x "$b" ] || { echo "demo: $b is not built (run make demo)" >&2; exit 1; }
done
# The demo's devices must trust the demo's own root key (in the token).
"$SIM" fleet --help 2>/dev/null | grep -c -- '--root-pub' >/dev/null ||
    { echo "demo: not finished: nobrick-sim fleet cannot yet trust a product root (--root-pub); see README.md, Status" >&2; exit 1; }
[ -r /usr/lib/softhsm/libsofthsm2.so ] ||
    { echo "demo: SoftHSM2 is missing (make deps installs softhsm2)" >&2; exit 1; }

PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo "demo: interrupted" >&2; exit 130' INT TERM

say() { printf '\n== %s\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

rm -rf "$DIR"
mkdir -p "$DIR/tokens" "$DIR/artifacts" "$DIR/fleet"
cd "$DIR"

# ------------------------------------------------------------------ keys
say "1. keys in a SoftHSM2 token ($DIR/tokens)"
cat >softhsm2.conf <<EOF
directories.tokendir = $DIR/tokens
objectstore.backend = file
log.level = ERROR
EOF
export SOFTHSM2_CONF=$DIR/softhsm2.conf
# Fresh PINs for this run; a real token's PINs never sit in a file.
NOBRICK_PIN=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
NOBRICK_SO_PIN=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
export NOBRICK_PIN NOBRICK_SO_PIN
VENDOR=6e6f6272-6963-4b00-8000-64656d6f0001
CLASS=6e6f6272-6963-4b00-8000-64656d6f0002
T=(--token nobrick-demo)
"$TOOL" "${T[@]}" key init-token
"$TOOL" "${T[@]}" key generate --label demo-root
"$TOOL" "${T[@]}" key generate --label demo-signer
"$TOOL" "${T[@]}" key export-public --label demo-root --out root.pub.pem >/dev/null
"$TOOL" "${T[@]}" key delegate --root demo-root --key demo-signer \
    --valid-days 365 --vendor "$VENDOR" --class "$CLASS" --out signer.cose
echo "root public key: $DIR/root.pub.pem (what devices and the server trust)"

# ------------------------------------------------------------- firmware
say "2. firmware v1.0.0, v1.1.0 (healthy) and v1.2.0 (crashes on sim-2)"
# The simulated firmware's behaviour is the first 64 bytes of its payload
# (docs/simulator.md): the simulated device reads it after booting it.
firmware() { # VERSION SVN BEHAVIOUR
    { printf 'NBSIMFW1 %s\n' "$3"; head -c $((64 - 10 - ${#3})) /dev/zero
      head -c 36000 /dev/urandom; } >"fw-$1.bin"
    "$TOOL" "${T[@]}" package --key demo-signer --delegation signer.cose \
        --in "fw-$1.bin" --version "$1" --security-version "$2" \
        --hw-rev sim-1,sim-2 --vendor "$VENDOR" --class "$CLASS" \
        --out "fw-$1.nbpkg" >/dev/null
    echo "signed fw-$1.nbpkg ($3, security version $2)"
}
firmware 1.0.0 1 healthy
firmware 1.1.0 2 healthy
firmware 1.2.0 3 crash-on-hw:sim-2

# --------------------------------------------------------------- server
say "3. nobrick-server on 127.0.0.1 (SQLite: $DIR/nobrick.db)"
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >admin.token
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >fleet.token
chmod 600 admin.token fleet.token
cat >server.conf <<EOF
listen = 127.0.0.1
port = 0
db = $DIR/nobrick.db
artifacts = $DIR/artifacts
admin_token_file = $DIR/admin.token
fleet_token_file = $DIR/fleet.token
root_pub = $DIR/root.pub.pem
poll_seconds = 5
EOF
"$SRV" --config server.conf --quiet >server.out 2>server.log &
SRV_PID=$!
PIDS+=("$SRV_PID")
PORT=
for _ in $(seq 200); do
    PORT=$(awk 'NR == 1 && $1 == "port" { print $2 }' server.out)
    [ -n "$PORT" ] && break
    kill -0 "$SRV_PID" 2>/dev/null || die "nobrick-server exited: $(tail -n 3 server.log)"
    sleep 0.05
done
[ -n "$PORT" ] || die "nobrick-server printed no port"
URL=http://127.0.0.1:$PORT
export NOBRICK_SERVER=$URL
NOBRICK_ADMIN_TOKEN=$(cat admin.token)
export NOBRICK_ADMIN_TOKEN
echo "server: $URL"
for v in 1.0.0 1.1.0 1.2.0; do
    id=$("$TOOL" server upload "fw-$v.nbpkg")
    printf -v "PKG_${v//./_}" '%s' "$id"
    echo "uploaded fw-$v.nbpkg as $id"
done

# ---------------------------------------------------------------- fleet
FLEET=(--server "$URL" --enrol-token "$(cat fleet.token)" --devices "$N"
    --dir fleet --hw-revs sim-1:80,sim-2:20 --root-pub root.pub.pem
    --vendor "$VENDOR" --class "$CLASS" --seed "$SEED" --threads 4
    --poll 2 --image fw-1.0.0.nbpkg --admin-token "$NOBRICK_ADMIN_TOKEN"
    --server-pid "$SRV_PID")
say "4. $N simulated devices confirmed on v1.0.0 (80 % sim-1, 20 % sim-2)"
"$SIM" fleet init --dir fleet --devices "$N" --hw-revs sim-1:80,sim-2:20 \
    --image fw-1.0.0.nbpkg --root-pub root.pub.pem --vendor "$VENDOR" \
    --class "$CLASS" --seed "$SEED"

# The demo's rollouts run at any hour: the default windows keep Friday
# afternoons out (docs/rollouts.md), and this demo may run on one.
say "5. rollout of v1.1.0: 5 %, 25 %, 100 %, with faults on"
R1=$("$TOOL" server rollouts create --package "$PKG_1_1_0" --all-devices \
    --steps 5%:20s,25%:20s,100% --windows always --threshold 10% \
    --min-attempted 20 --silent-timeout 120s)
echo "rollout $R1"
set +e
"$SIM" fleet "${FLEET[@]}" --faults default --until version=1.1.0:90% \
    --duration 300 --report report-1.1.0.json
RC1=$?
set -e
"$TOOL" server rollouts show "$R1"

say "6. rollout of v1.2.0 (crashes on sim-2): it must pause itself"
R2=$("$TOOL" server rollouts create --package "$PKG_1_2_0" --all-devices \
    --steps 10%:40s,50%:40s,100% --windows always --threshold 5% \
    --min-attempted 10 --silent-timeout 120s)
echo "rollout $R2"
set +e
# No --until: the devices run while the first step's trials revert on
# sim-2 and the server judges them.
"$SIM" fleet "${FLEET[@]}" --faults default --duration 90 \
    --report report-1.2.0.json
RC2=$?
set -e
"$TOOL" server rollouts show "$R2"
STATE2=$("$TOOL" server rollouts show "$R2" --json |
    sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p' | head -n 1)

# -------------------------------------------------------------- summary
say "7. summary"
echo "v1.1.0 rollout $R1: fleet exit $RC1; report $DIR/report-1.1.0.json"
echo "v1.2.0 rollout $R2: $STATE2; fleet exit $RC2; report $DIR/report-1.2.0.json"
cat <<EOF

Where to look:
  server database   $DIR/nobrick.db (sqlite3), log $DIR/server.log
  reports           $DIR/report-1.1.0.json, $DIR/report-1.2.0.json
  browse again      $SRV --config $DIR/server.conf   (then, in another shell,
                    NOBRICK_SERVER=http://127.0.0.1:PORT NOBRICK_ADMIN_TOKEN=\$(cat $DIR/admin.token) \\
                    $TOOL server rollouts list)
EOF
bad=0
[ "$RC1" = 0 ] || { echo "demo: the v1.1.0 fleet run failed (exit $RC1)" >&2; bad=1; }
[ "$RC2" = 0 ] || { echo "demo: the v1.2.0 fleet run failed (exit $RC2)" >&2; bad=1; }
[ "$STATE2" = paused ] || { echo "demo: rollout $R2 is $STATE2, not paused" >&2; bad=1; }
exit $bad
