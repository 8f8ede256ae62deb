#!/usr/bin/env bash
# test_nobrick_tool.sh - end-to-end test of the nobrick tool with keys in a
# SoftHSM2 token that the test sets up in a temporary directory.
#
# Round trip: init token, generate a root and a signing key, export the
# root's public key, delegate, package a random 10 KiB payload, inspect
# (text and JSON), verify (package and detached). Then every rejection,
# each checked for its exact nb_err name in a one-line error and exit 1:
# wrong root key, expired delegation, revoked key, wrong vendor/class,
# hardware revision not listed, a bit flip in the payload, in the manifest
# signature and in the delegation signature, truncation, bytes appended,
# padding not zero; what `package` refuses to sign; PIN errors (none and no
# terminal, wrong PIN); plain key files (warning); usage errors (exit 64).
#
# Needs: NOBRICK_BUILD (the binary is $NOBRICK_BUILD/nobrick), SoftHSM2
# (/usr/lib/softhsm/libsofthsm2.so; skipped, exit 0, only when missing),
# od, dd, head, truncate.
set -euo pipefail

MODULE=/usr/lib/softhsm/libsofthsm2.so
NB=${NOBRICK_BUILD:-}/nobrick
if [ -z "${NOBRICK_BUILD:-}" ] || [ ! -x "$NB" ]; then
    echo "test_nobrick_tool: NOBRICK_BUILD does not hold a built nobrick" >&2
    exit 1
fi
if [ ! -e "$MODULE" ]; then
    echo "test_nobrick_tool: SKIPPED: $MODULE is missing (install softhsm2: make deps)"
    exit 0
fi

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
mkdir tokens
cat > softhsm2.conf <<EOF
directories.tokendir = $T/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOF
export SOFTHSM2_CONF=$T/softhsm2.conf
unset NOBRICK_PIN NOBRICK_SO_PIN

VENDOR=6ba7b810-9dad-11d1-80b4-00c04fd430c8
CLASS=6ba7b811-9dad-11d1-80b4-00c04fd430c8
OTHER=00000000-0000-4000-8000-000000000001
NOW=$(date +%s)
DAY=86400

checks=0
fail() {
    echo "FAIL: $*" >&2
    echo "  command: ${last_cmd:-}" >&2
    echo "  exit: ${rc:-}" >&2
    echo "  stdout: $(head -c 2000 out 2>/dev/null)" >&2
    echo "  stderr: $(cat err 2>/dev/null)" >&2
    exit 1
}

# run ARGS...: run nobrick (stdin from /dev/null: never a terminal), keep
# the exit status in $rc, stdout in ./out, stderr in ./err.
run() {
    last_cmd="nobrick $*"
    rc=0
    "$NB" "$@" </dev/null >out 2>err || rc=$?
}

ok() {
    run "$@"
    [ "$rc" -eq 0 ] || fail "expected success"
    checks=$((checks + 1))
}

# rejected CODE ARGS...: exit 1 and exactly one line on stderr holding the
# nb_err name CODE (after any warning lines).
rejected() {
    local code=$1
    shift
    run "$@"
    [ "$rc" -eq 1 ] || fail "expected exit 1 ($code)"
    local lines
    lines=$(grep -vc '^nobrick: warning: ' err || true)
    [ "$lines" -eq 1 ] || fail "expected one error line, got $lines"
    grep -v '^nobrick: warning: ' err | grep -q "^nobrick: .*: $code: " ||
        fail "expected $code in the error"
    checks=$((checks + 1))
}

# failed REGEX ARGS...: exit 1 and a one-line error (after any warning
# lines) matching REGEX.
failed() {
    local re=$1
    shift
    run "$@"
    [ "$rc" -eq 1 ] || fail "expected exit 1"
    [ "$(grep -vc '^nobrick: warning: ' err || true)" -eq 1 ] ||
        fail "expected one error line on stderr"
    grep -v '^nobrick: warning: ' err | grep -Eq "$re" ||
        fail "expected stderr to match: $re"
    checks=$((checks + 1))
}

usage() {
    run "$@"
    [ "$rc" -eq 64 ] || fail "expected exit 64 (usage)"
    [ "$(wc -l <err)" -eq 1 ] || fail "expected one line on stderr"
    checks=$((checks + 1))
}

# flip FILE OFFSET BIT: flip one bit in place.
flip() {
    local b
    b=$(od -An -tu1 -j"$2" -N1 "$1" | tr -d ' ')
    # shellcheck disable=SC2059
    printf "$(printf '\\%03o' $((b ^ (1 << $3))))" |
        dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# u32le FILE OFFSET
u32le() {
    local b
    read -r -a b <<<"$(od -An -tu1 -j"$2" -N4 "$1")"
    echo $((b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24))
}

# json_get KEY FILE: the string value of "KEY":"..." (first match).
json_get() {
    sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" "$2" | head -n 1
}

# ----------------------------------------------------------- help, usage
for c in "--help" "key --help" "key init-token --help" "key generate --help" \
    "key export-public --help" "key delegate --help" "key revoke --help" \
    "package --help" "inspect --help" "verify --help"; do
    # shellcheck disable=SC2086
    ok $c
    grep -q '^usage: nobrick' out || fail "no usage text"
done
usage frobnicate
usage key frobnicate
usage inspect --bogus x.nbpkg
usage package --key k --delegation d --in f --version 1.2 \
    --security-version 1 --hw-rev a --vendor "$VENDOR" --class "$CLASS" \
    --out o
usage package --key k --delegation d --in f --version 1.2.3 \
    --security-version 1 --hw-rev a --vendor not-a-uuid --class "$CLASS" \
    --out o
usage verify fw.nbpkg
usage --pin

# ------------------------------------------------------------ the token
# No PIN and no terminal: one clear line, nothing else done.
failed '^nobrick: no SO PIN: pass --so-pin, set NOBRICK_SO_PIN, or run on a terminal$' \
    key init-token
failed '^nobrick: no PIN: pass --pin, set NOBRICK_PIN, or run on a terminal$' \
    key init-token --so-pin 87654321
NOBRICK_SO_PIN=87654321 NOBRICK_PIN=12345678 ok key init-token
grep -q "initialised token 'nobrick'" out || fail "init-token output"
failed "exists already" key init-token --so-pin 87654321 --pin 12345678

failed '^nobrick: no PIN: pass --pin, set NOBRICK_PIN, or run on a terminal$' \
    key generate --label root
failed 'C_Login: CKR_PIN_INCORRECT' key generate --label root --pin 00000000
failed "no token labelled 'other'" --token other key generate --label root \
    --pin 12345678

export NOBRICK_PIN=12345678
ok key generate --label root
ok key generate --label signer
SIGNER_KID=$(sed -n 's/.*key ID \([0-9a-f]\{16\}\)$/\1/p' out)
[ ${#SIGNER_KID} -eq 16 ] || fail "no key ID in: $(cat out)"
ok key generate --label other-root
ok key generate --label other-signer
failed "exists already" key generate --label signer

# Public keys need no PIN.
(unset NOBRICK_PIN; ok key export-public --label root --out root.pem)
grep -q 'BEGIN PUBLIC KEY' root.pem || fail "root.pem is not a PEM public key"
ok key export-public --label other-root --out other-root.pem
ok key export-public --label root
cmp -s out root.pem || fail "export to stdout differs from --out"
if command -v openssl >/dev/null; then
    openssl pkey -pubin -in root.pem -noout 2>/dev/null ||
        fail "openssl cannot read root.pem"
fi
failed "no EC public key labelled 'nope'" key export-public --label nope

# ----------------------------------------------------------- round trip
ok key delegate --root root --key signer --valid-days 30 --vendor "$VENDOR" \
    --class "$CLASS" --out d.cose
failed "root key itself" key delegate --root root --key root --valid-days 1 \
    --vendor "$VENDOR" --out x.cose

head -c 10240 /dev/urandom >fw.bin
ok package --key signer --delegation d.cose --in fw.bin --version 1.2.3 \
    --security-version 7 --hw-rev revA,revB --vendor "$VENDOR" \
    --class "$CLASS" --out fw.nbpkg --manifest-out fw.nbman

ok inspect fw.nbpkg
grep -q 'NOT VERIFIED' out || fail "inspect does not say it does not verify"
for want in "version  *1.2.3" "security version  *7" "payload size  *10240 bytes" \
    "vendor ID  *$VENDOR" "class ID  *$CLASS" "hardware revisions  *revA, revB" \
    "block count  *3" "payload format  *raw" \
    "created  *[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z" \
    "signer key ID  *$SIGNER_KID" "payload SHA-256  *[0-9a-f]{64}"; do
    grep -Eq "$want" out || fail "inspect: no line matching '$want'"
done
ok inspect fw.nbpkg --json
[ "$(wc -l <out)" -eq 1 ] || fail "inspect --json: not one line"
grep -q '"verified":false' out || fail "inspect --json: no verified:false"
[ "$(json_get version out)" = 1.2.3 ] || fail "inspect --json: version"
[ "$(json_get signer_key_id out)" = "$SIGNER_KID" ] || fail "json: key ID"
if command -v python3 >/dev/null; then
    python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["manifest"]["payload_size"] == 10240' <out ||
        fail "inspect --json is not the JSON expected"
fi
ok inspect fw.nbman

ok verify --root-pub root.pem fw.nbpkg
grep -q '^fw.nbpkg: valid: version 1.2.3' out || fail "verify output"
ok verify --root-pub other-root.pem --root-pub root.pem --hw-rev revB \
    --vendor "$VENDOR" --class "$CLASS" fw.nbpkg
ok verify --root-pub root.pem --manifest fw.nbman --payload fw.bin

# ------------------------------------------------------------ rejections
rejected NB_ERR_UNKNOWN_KEY verify --root-pub other-root.pem fw.nbpkg
rejected NB_ERR_VENDOR verify --root-pub root.pem --vendor "$OTHER" fw.nbpkg
rejected NB_ERR_CLASS verify --root-pub root.pem --class "$OTHER" fw.nbpkg
rejected NB_ERR_HW_REV verify --root-pub root.pem --hw-rev revC fw.nbpkg

# Revoked: a list signed by the root naming the signing key.
ok key revoke --root root --seq 1 --key-id "$SIGNER_KID" --out r.cose
rejected NB_ERR_REVOKED verify --root-pub root.pem --revocations r.cose fw.nbpkg
grep -q "$SIGNER_KID" err || fail "the revoked key ID is not named"
ok key revoke --root root --seq 2 --key-id 0011223344556677 --out r2.cose
ok verify --root-pub root.pem --revocations r2.cose fw.nbpkg
ok key revoke --root other-root --seq 3 --key-id "$SIGNER_KID" --out r3.cose
rejected NB_ERR_UNKNOWN_KEY verify --root-pub root.pem --revocations r3.cose \
    fw.nbpkg

# Expired: package refuses a delegation that has expired...
ok key delegate --root root --key signer --not-before $((NOW - 10 * DAY)) \
    --valid-days 1 --vendor "$VENDOR" --out old.cose
rejected NB_ERR_EXPIRED package --key signer --delegation old.cose --in fw.bin \
    --version 1.2.3 --security-version 7 --hw-rev revA --vendor "$VENDOR" \
    --class "$CLASS" --out x.nbpkg
[ ! -e x.nbpkg ] || fail "a refused package was written"
# ... and verifiers refuse a manifest created outside its delegation (made
# with the testing-only --created, from a delegation valid now). This needs
# lib/nb_pkgbuild.c's nb_build_package to wrap a manifest whose creation
# time is outside its delegation (it only has to find the payload offset).
ok key delegate --root root --key signer --not-before $((NOW - DAY)) \
    --valid-days 2 --vendor "$VENDOR" --out short.cose
ok package --key signer --delegation short.cose --in fw.bin --version 1.2.3 \
    --security-version 7 --hw-rev revA --vendor "$VENDOR" --class "$CLASS" \
    --created $((NOW + 30 * DAY)) --out late.nbpkg
grep -q 'warning: --created is for testing' err || fail "no --created warning"
rejected NB_ERR_EXPIRED verify --root-pub root.pem late.nbpkg
grep -q 'the delegation was not valid when the manifest was created' err ||
    fail "expired: not the expected sentence"
ok package --key signer --delegation short.cose --in fw.bin --version 1.2.3 \
    --security-version 7 --hw-rev revA --vendor "$VENDOR" --class "$CLASS" \
    --created $((NOW - 30 * DAY)) --out early.nbpkg
rejected NB_ERR_EXPIRED verify --root-pub root.pem early.nbpkg
ok inspect late.nbpkg
grep -q '^problem: NB_ERR_EXPIRED' out || fail "inspect does not note the problem"

# What package refuses to sign: another key's delegation, a vendor or a
# class the delegation does not allow. Checked before any PIN is asked.
(
    unset NOBRICK_PIN
    rejected NB_ERR_UNKNOWN_KEY package --key other-signer --delegation d.cose \
        --in fw.bin --version 1.0.0 --security-version 1 --hw-rev revA \
        --vendor "$VENDOR" --class "$CLASS" --out x.nbpkg
)
rejected NB_ERR_VENDOR package --key signer --delegation d.cose --in fw.bin \
    --version 1.0.0 --security-version 1 --hw-rev revA --vendor "$OTHER" \
    --class "$CLASS" --out x.nbpkg
rejected NB_ERR_CLASS package --key signer --delegation d.cose --in fw.bin \
    --version 1.0.0 --security-version 1 --hw-rev revA --vendor "$VENDOR" \
    --class "$OTHER" --out x.nbpkg
[ ! -e x.nbpkg ] || fail "a refused package was written"

# Damage: payload, manifest signature, delegation signature, length,
# padding. The manifest is at 12 .. 12 + M; its signature is its last 64
# bytes; the payload starts at 1024 here (the first multiple of 512 after
# the manifest, as inspect shows).
M=$(u32le fw.nbpkg 8)
run inspect fw.nbpkg --json
OFF=$(sed -n 's/.*"payload_offset":\([0-9]*\).*/\1/p' out | head -n 1)
[ -n "$OFF" ] && [ "$OFF" -ge $((12 + M)) ] || fail "payload offset $OFF"
SIZE=$(stat -c %s fw.nbpkg)

cp fw.nbpkg t.nbpkg
flip t.nbpkg $((OFF + 5000)) 3
rejected NB_ERR_DIGEST verify --root-pub root.pem t.nbpkg
cp fw.nbpkg t.nbpkg
flip t.nbpkg $((SIZE - 1)) 0
rejected NB_ERR_DIGEST verify --root-pub root.pem t.nbpkg
cp fw.bin t.bin
flip t.bin 0 7
rejected NB_ERR_DIGEST verify --root-pub root.pem --manifest fw.nbman \
    --payload t.bin

cp fw.nbpkg t.nbpkg
flip t.nbpkg $((12 + M - 20)) 4
rejected NB_ERR_SIGNATURE verify --root-pub root.pem t.nbpkg
cp fw.nbman t.nbman
flip t.nbman $((M - 40)) 1
rejected NB_ERR_SIGNATURE verify --root-pub root.pem --manifest t.nbman \
    --payload fw.bin
# The delegation's own signature: the last 64 bytes of d.cose, found
# inside the manifest.
DLEN=$(stat -c %s d.cose)
DPOS=""
for ((p = 12; p < 12 + M - DLEN; p++)); do
    if cmp -s -n "$DLEN" -i "$p:0" fw.nbpkg d.cose; then
        DPOS=$p
        break
    fi
done
[ -n "$DPOS" ] || fail "the delegation is not inside the package"
cp fw.nbpkg t.nbpkg
flip t.nbpkg $((DPOS + DLEN - 10)) 2
rejected NB_ERR_SIGNATURE verify --root-pub root.pem t.nbpkg

for len in 0 5 11 12 $((12 + M / 2)) $((12 + M)) $OFF $((SIZE - 1)); do
    head -c "$len" fw.nbpkg >t.nbpkg
    rejected NB_ERR_TRUNCATED verify --root-pub root.pem t.nbpkg
done
head -c 5000 fw.bin >t.bin
rejected NB_ERR_TRUNCATED verify --root-pub root.pem --manifest fw.nbman \
    --payload t.bin
cp fw.nbpkg t.nbpkg
printf '\377' >>t.nbpkg
rejected NB_ERR_TRAILING verify --root-pub root.pem t.nbpkg
cp fw.nbpkg t.nbpkg
flip t.nbpkg $((12 + M + 3)) 0
rejected NB_ERR_MALFORMED verify --root-pub root.pem t.nbpkg
grep -q 'padding' err || fail "padding: not said"
cp fw.nbpkg t.nbpkg
flip t.nbpkg 0 1
rejected NB_ERR_MALFORMED verify --root-pub root.pem t.nbpkg

# ------------------------------------------------------ plain key files
ok key generate --insecure-key-file plain.pem
grep -q 'warning: signing with a plain key file; keys belong in an HSM' err ||
    fail "no warning for a plain key file"
[ "$(stat -c %a plain.pem)" = 600 ] || fail "plain.pem is not mode 0600"
failed "exists already" key generate --insecure-key-file plain.pem
ok key export-public --insecure-key-file plain.pem --out plain.pub.pem
ok key delegate --root root --key-pub plain.pub.pem --valid-days 1 \
    --vendor "$VENDOR" --out plain.cose
ok package --insecure-key-file plain.pem --delegation plain.cose --in fw.bin \
    --version 2.0.0 --security-version 8 --hw-rev revA --vendor "$VENDOR" \
    --class "$OTHER" --block-size 1024 --payload-offset 4096 --out plain.nbpkg
grep -q 'warning: signing with a plain key file; keys belong in an HSM' err ||
    fail "no warning when signing with a plain key file"
ok verify --root-pub root.pem plain.nbpkg
ok inspect plain.nbpkg
grep -Eq 'block count  *10$' out || fail "block size 1024: not 10 blocks"
grep -Eq 'payload offset  *4096$' out || fail "payload offset 4096"
# A plain root key signing a revocation list.
ok key generate --insecure-key-file plain-root.pem
ok key export-public --insecure-key-file plain-root.pem --out plain-root.pub
ok key revoke --insecure-key-file plain-root.pem --seq 1 --out empty.cose
rejected NB_ERR_UNKNOWN_KEY verify --root-pub plain.pub.pem --root-pub root.pem \
    --revocations empty.cose plain.nbpkg
usage key generate --label x --insecure-key-file y.pem

echo "test_nobrick_tool: $checks checks passed"
