#!/usr/bin/env bash
# test_fleet_trust.sh - nobrick-sim fleet with a product's own root key,
# vendor and class (--root-pub, --vendor, --class), as make demo uses it:
# devices made from a package signed under that root; a TEST package, or
# one for another vendor, is refused before any device exists.
set -euo pipefail
BUILD=${NOBRICK_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
SIM=$BUILD/nobrick-sim
TOOL=$BUILD/nobrick
for b in "$SIM" "$TOOL"; do
    [ -x "$b" ] || { echo "test_fleet_trust: $b is not built" >&2; exit 1; }
done
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
fail() { echo "FAIL: $*" >&2; cat err 2>/dev/null >&2; exit 1; }

V=6e6f6272-6963-4b00-8000-64656d6f0001
C=6e6f6272-6963-4b00-8000-64656d6f0002
"$TOOL" key generate --insecure-key-file root.pem >/dev/null 2>&1
"$TOOL" key generate --insecure-key-file signer.pem >/dev/null 2>&1
"$TOOL" key export-public --insecure-key-file root.pem --out root.pub.pem >/dev/null 2>&1
"$TOOL" key export-public --insecure-key-file signer.pem --out signer.pub.pem >/dev/null 2>&1
"$TOOL" key delegate --insecure-key-file root.pem --key-pub signer.pub.pem \
    --valid-days 30 --vendor "$V" --class "$C" --out d.cose >/dev/null 2>&1
{ printf 'NBSIMFW1 healthy\n'; head -c 47 /dev/zero; head -c 20000 /dev/urandom; } >fw.bin
"$TOOL" package --insecure-key-file signer.pem --delegation d.cose --in fw.bin \
    --version 1.0.0 --security-version 1 --hw-rev sim-1 --vendor "$V" \
    --class "$C" --out fw.nbpkg >/dev/null 2>&1 || fail "package"
"$SIM" make-image --version 1.0.0 --security-version 1 --size 20000 \
    --out test.nbpkg >/dev/null

init() { # DIR IMAGE [OPTIONS...]
    local d=$1 img=$2
    shift 2
    "$SIM" fleet init --dir "$d" --devices 3 --image "$img" "$@" >out 2>err
}
init a fw.nbpkg --root-pub root.pub.pem --vendor "$V" --class "$C" ||
    fail "devices from a package under the product root"
[ "$(ls a/*.flash | wc -l)" = 3 ] || fail "3 flash files expected"
"$SIM" status --flash a/sim-000001.flash >st 2>&1 || fail "status"
grep -q "1.0.0" st || fail "device 1 does not run 1.0.0: $(cat st)"
if init b test.nbpkg --root-pub root.pub.pem --vendor "$V" --class "$C"; then
    fail "a TEST package was accepted by devices trusting the product root"
fi
grep -q NB_ERR_UNKNOWN_KEY err || fail "expected NB_ERR_UNKNOWN_KEY: $(cat err)"
if init c fw.nbpkg --root-pub root.pub.pem; then
    fail "a package for another vendor was accepted"
fi
grep -q NB_ERR_VENDOR err || fail "expected NB_ERR_VENDOR: $(cat err)"
if init d fw.nbpkg --root-pub root.pub.pem --vendor nope; then
    fail "a malformed --vendor was accepted"
fi
grep -q "not a UUID" err || fail "expected a UUID error: $(cat err)"
if init e fw.nbpkg --root-pub /nonexistent.pem; then
    fail "a missing --root-pub file was accepted"
fi
grep -q "cannot read it" err || fail "expected a read error: $(cat err)"
echo "test_fleet_trust: all passed"
