#!/usr/bin/env bash
# test_agent_roots.sh - nobrick-agent with a product's own trust anchors:
# root_pub (PEM files from `nobrick key export-public`), vendor and class.
# A package signed under that root installs and is confirmed on a blank
# block-device flash provisioned by the agent; a package signed under
# another root (the simulator's test root) is refused with
# NB_ERR_UNKNOWN_KEY before any slot byte is written.
# Plain key files (--insecure-key-file) keep the test free of a token; the
# token path is tested in test_nobrick_tool.sh.
set -euo pipefail

BUILD=${NOBRICK_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
AGENT=$BUILD/nobrick-agent
TOOL=$BUILD/nobrick
SIM=$BUILD/nobrick-sim
SRV=$BUILD/tests/nb-testserver
for b in "$AGENT" "$TOOL" "$SIM" "$SRV"; do
    [ -x "$b" ] || { echo "test_agent_roots: $b is not built" >&2; exit 1; }
done
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
fail() {
    echo "FAIL: $*" >&2
    for f in srv.err agent.err; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}
ok() { checks=$((checks + 1)); }

VENDOR=6ba7b810-9dad-11d1-80b4-00c04fd430c8
CLASS=6ba7b811-9dad-11d1-80b4-00c04fd430c8

# A product's keys and packages.
"$TOOL" key generate --insecure-key-file root.pem >/dev/null 2>&1
"$TOOL" key generate --insecure-key-file signer.pem >/dev/null 2>&1
"$TOOL" key export-public --insecure-key-file root.pem --out root.pub.pem \
    >/dev/null 2>&1
"$TOOL" key export-public --insecure-key-file signer.pem \
    --out signer.pub.pem >/dev/null 2>&1
"$TOOL" key delegate --insecure-key-file root.pem --key-pub signer.pub.pem \
    --valid-days 30 --vendor "$VENDOR" --class "$CLASS" --out d.cose \
    >/dev/null 2>&1
# A second signing key: 1.2.0 is signed with it, so that revoking the
# first one leaves the running image valid.
"$TOOL" key generate --insecure-key-file signer2.pem >/dev/null 2>&1
"$TOOL" key export-public --insecure-key-file signer2.pem \
    --out signer2.pub.pem >/dev/null 2>&1
"$TOOL" key delegate --insecure-key-file root.pem --key-pub signer2.pub.pem \
    --valid-days 30 --vendor "$VENDOR" --class "$CLASS" --out d2.cose \
    >/dev/null 2>&1
head -c 150000 /dev/urandom >fw1.bin
head -c 170000 /dev/urandom >fw2.bin
head -c 90000 /dev/urandom >fw4.bin
pkg() { # VERSION SVN KEY DELEGATION IN OUT
    "$TOOL" package --insecure-key-file "$3" --delegation "$4" --in "$5" \
        --version "$1" --security-version "$2" --hw-rev prod-a \
        --vendor "$VENDOR" --class "$CLASS" --out "$6" >/dev/null 2>&1 ||
        fail "package $1"
}
pkg 1.1.0 1 signer.pem d.cose fw1.bin art/p1.nbpkg
pkg 1.2.0 2 signer2.pem d2.cose fw2.bin art/p2.nbpkg
pkg 1.4.0 4 signer.pem d.cose fw4.bin art/p4.nbpkg
# The root revokes the first signing key.
kid=$("$TOOL" key export-public --insecure-key-file signer.pem \
    --out kid.pem 2>/dev/null | sed -n 's/.*key ID \([0-9a-f]*\).*/\1/p')
[ -n "$kid" ] || fail "no key ID for signer.pem"
"$TOOL" key revoke --insecure-key-file root.pem --seq 1 --key-id "$kid" \
    --out art/rev1.cose >/dev/null 2>&1 || fail "key revoke"
# Signed under the simulator's test root instead.
"$SIM" make-image --version 1.3.0 --security-version 3 --size 10000 \
    --out art/test.nbpkg >/dev/null

"$SRV" --artifacts art --log events.jsonl --quiet --device dev-p:tok-p \
    >srv.out 2>srv.err &
PIDS+=($!)
PORT=
for _ in $(seq 100); do
    PORT=$(awk 'NR == 1 && $1 == "port" { print $2 }' srv.out)
    [ -n "$PORT" ] && break
    sleep 0.05
done
[ -n "$PORT" ] || fail "nb-testserver printed no port line"
URL=http://127.0.0.1:$PORT
offer() { # ROLLOUT VERSION SVN ARTIFACT [EXTRA_JSON_MEMBERS]
    curl -sS -o /dev/null -X POST -H 'Content-Type: application/json' \
        --data "{\"device\":\"dev-p\",\"offer\":{\"rollout\":\"r-$1\",\"version\":\"$2\",\"security_version\":$3,\"artifact\":\"$4\"${5:+,$5}}}" \
        "$URL/test/offer" || fail "offer"
}

# A blank 2 MiB block-device flash (a plain file), provisioned.
head -c $((2 * 1024 * 1024)) /dev/zero | tr '\0' '\377' >dev.img
COMMON=(--flash dev.img --flash-type block --layout ab --slot-size 524288
    --device-id dev-p --device-token tok-p --server-url "$URL"
    --transport http --state-file dev.state --hw-rev prod-a
    --root-pub root.pub.pem --vendor "$VENDOR" --class "$CLASS"
    --ack-timeout-ms 2000 --retry-base-ms 100 --retry-max-ms 400
    --retry-attempts 2)
"$AGENT" "${COMMON[@]}" --provision >/dev/null 2>>agent.err ||
    fail "--provision"
ok
run() {
    set +e
    OUT=$("$AGENT" "${COMMON[@]}" --once 2>>agent.err)
    RC=$?
    set -e
}

# The product's own packages: install and confirm, twice.
for v in 1 2; do
    offer $v 1.$v.0 $v p$v.nbpkg
    run
    [ "$RC" = 0 ] || fail "update to 1.$v.0: exit $RC ($OUT)"
    echo "$OUT" | grep -q "\"running\":\"1.$v.0\",\"running_state\":\"CONFIRMED\"" ||
        fail "1.$v.0 not confirmed: $OUT"
    grep '"kind":"report"' events.jsonl | grep -q "\"rollout\":\"r-$v\".*\"state\":\"confirmed\"\|\"state\":\"confirmed\".*\"rollout\":\"r-$v\"" ||
        fail "no confirmed report for 1.$v.0"
    ok
done

# A package under another root: refused before any slot byte is written.
cp dev.img before.img
offer 3 1.3.0 3 test.nbpkg
run
[ "$RC" != 0 ] || fail "a package under the test root was accepted ($OUT)"
grep '"kind":"report"' events.jsonl | grep '"state":"failed"' |
    grep -q NB_ERR_UNKNOWN_KEY || fail "no NB_ERR_UNKNOWN_KEY report"
ok
# Only the journal (the first two 4 KiB sectors) may have changed: the
# slots are byte for byte the same.
cmp -s <(tail -c +8193 before.img) <(tail -c +8193 dev.img) ||
    fail "slot bytes changed"
ok

# The server hands out the revocation list with the next offer: the
# agent applies it (root-signed, newer), and the offer signed by the
# revoked key is refused; 1.2.0, signed by the other key, still runs.
offer 4 1.4.0 4 p4.nbpkg \
    "\"revocations\":{\"url\":\"$URL/api/v1/artifacts/rev1.cose\",\"seq\":1}"
run
[ "$RC" != 0 ] || fail "a package of a revoked key was accepted ($OUT)"
grep -q "revocation list 1 applied: 1 key" agent.err ||
    fail "revocation list not applied"
grep '"kind":"report"' events.jsonl | grep '"state":"failed"' |
    grep -q NB_ERR_REVOKED || fail "no NB_ERR_REVOKED report"
echo "$OUT" | grep -q '"running":"1.2.0","running_state":"CONFIRMED"' ||
    fail "1.2.0 no longer runs: $OUT"
ok

# A bad root_pub file is one clear line and a non-zero exit.
echo "not a key" >bad.pem
set +e
"$AGENT" "${COMMON[@]}" --root-pub bad.pem --once >/dev/null 2>bad.err
rc=$?
set -e
[ "$rc" != 0 ] && grep -q "root_pub bad.pem" bad.err ||
    fail "bad root_pub: exit $rc: $(cat bad.err)"
ok
echo "test_agent_roots: $checks checks passed"
