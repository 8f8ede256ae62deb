#!/usr/bin/env bash
# test_cli.sh - end-to-end test of the nobrick-sim command line.
#
# For every layout: provision, install and confirm an image, stage an
# update, let its trial run out and check the device reverts (single slot:
# recovery), power cuts during stage and boot, anti-rollback and lifecycle.
# Then every kind of bad input: each must exit non-zero with one line on
# stderr and one JSON line on stdout, and leave the flash file
# byte-for-byte unchanged (sha256sum before and after): files that are not
# whole packages, altered signatures, packages signed with other keys (by
# the nobrick tool, when it is built). The one exception, by design: a
# payload block that does not match its digest in the signed manifest is
# found when it arrives, after the manifest was written (as on a device);
# the slot then stays RECEIVING and never boots, which is checked too.
#
# Images are signed test packages (.nbpkg) from make-image: the simulated
# device trusts only the simulator's test root.
#
# Needs: NOBRICK_SIM (path of nobrick-sim), awk, sha256sum, dd, od.
# Uses NOBRICK_BUILD/nobrick when it exists.
set -euo pipefail

SIM=${NOBRICK_SIM:-}
if [ -z "$SIM" ] || [ ! -x "$SIM" ]; then
    echo "test_cli: NOBRICK_SIM is not set to a built nobrick-sim" >&2
    exit 1
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"

checks=0
fail() {
    echo "FAIL: $*" >&2
    echo "  command: ${last_cmd:-}" >&2
    echo "  exit: ${rc:-} stdout: $(cat out 2>/dev/null)" >&2
    echo "  stderr: $(cat err 2>/dev/null)" >&2
    exit 1
}

# Flatten one line of JSON into "path=value" lines (keys "a.b.0.c",
# booleans true/false); exit 2 unless the input is exactly one line
# holding one JSON value. In awk rather than python3 because it runs once
# per command, and an interpreter start-up each time would triple this
# test's run time.
FLAT_AWK=$(cat <<'EOF_AWK'
BEGIN { RS = "\001" }
{ text = text $0 }
END {
    n = length(text)
    if (n == 0 || substr(text, n, 1) != "\n")
        exit 2
    s = substr(text, 1, n - 1)
    if (index(s, "\n"))
        exit 2
    pos = 1
    len = length(s)
    if (!value(""))
        exit 2
    skipws()
    if (pos <= len)
        exit 2
    for (i = 1; i <= nout; i++)
        print out[i]
}
function skipws() {
    while (pos <= len && index(" \t\r", substr(s, pos, 1)))
        pos++
}
function emit(path, v) { out[++nout] = path "=" v }
function join(path, k) { return path == "" ? k : path "." k }
function value(path,    c) {
    skipws()
    c = substr(s, pos, 1)
    if (c == "{")
        return object(path)
    if (c == "[")
        return array(path)
    if (c == "\"") {
        if (!str())
            return 0
        emit(path, sval)
        return 1
    }
    if (substr(s, pos, 4) == "true") { pos += 4; emit(path, "true"); return 1 }
    if (substr(s, pos, 5) == "false") { pos += 5; emit(path, "false"); return 1 }
    if (substr(s, pos, 4) == "null") { pos += 4; emit(path, "null"); return 1 }
    if (match(substr(s, pos), /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?/)) {
        emit(path, substr(s, pos, RLENGTH))
        pos += RLENGTH
        return 1
    }
    return 0
}
function object(path,    k, c) {
    pos++
    skipws()
    if (substr(s, pos, 1) == "}") { pos++; return 1 }
    while (1) {
        skipws()
        if (substr(s, pos, 1) != "\"" || !str())
            return 0
        k = sval
        skipws()
        if (substr(s, pos, 1) != ":")
            return 0
        pos++
        if (!value(join(path, k)))
            return 0
        skipws()
        c = substr(s, pos, 1)
        pos++
        if (c == "}")
            return 1
        if (c != ",")
            return 0
    }
}
function array(path,    i, c) {
    pos++
    skipws()
    if (substr(s, pos, 1) == "]") { pos++; return 1 }
    for (i = 0; ; i++) {
        if (!value(join(path, i)))
            return 0
        skipws()
        c = substr(s, pos, 1)
        pos++
        if (c == "]")
            return 1
        if (c != ",")
            return 0
    }
}
function str(    c) {
    pos++
    sval = ""
    while (pos <= len) {
        c = substr(s, pos, 1)
        if (c == "\"") { pos++; return 1 }
        if (c == "\\") {
            c = substr(s, pos + 1, 1)
            if (c == "u") { sval = sval "?"; pos += 6; continue }
            sval = sval (index("bfnrt", c) ? " " : c)
            pos += 2
            continue
        }
        sval = sval c
        pos++
    }
    return 0
}
EOF_AWK
)

# run ARGS...: run nobrick-sim; rc, files out and err hold the result;
# the JSON on stdout is flattened into J and json_ok says whether stdout
# was one line of JSON.
declare -A J
run() {
    last_cmd="nobrick-sim $*"
    rc=0
    "$SIM" "$@" >out 2>err || rc=$?
    J=()
    json_ok=1
    awk "$FLAT_AWK" <out >kv || json_ok=0
    local k v
    while IFS='=' read -r k v; do
        J[$k]=$v
    done <kv
}


# One line of valid JSON on stdout.
one_json_line() {
    [ "$json_ok" = 1 ] || fail "stdout is not exactly one line of JSON"
}

# ok ARGS...: must succeed.
ok() {
    run "$@"
    [ "$rc" -eq 0 ] || fail "expected success"
    one_json_line
    [ "${J[ok]:-}" = true ] || fail "ok is not true"
    checks=$((checks + 1))
}

# bad CODE ERROR ARGS...: must exit CODE with error ERROR, one error line.
bad() {
    local code=$1 error=$2
    shift 2
    run "$@"
    [ "$rc" -eq "$code" ] || fail "expected exit $code"
    one_json_line
    [ "${J[ok]:-}" = false ] || fail "ok is not false"
    [ "${J[error]:-}" = "$error" ] || fail "expected $error"
    local line n=0
    while IFS= read -r line; do
        case $line in "nobrick-sim: "*) n=$((n + 1)) ;; esac
    done <err
    [ "$n" -eq 1 ] || fail "expected one 'nobrick-sim: ' line on stderr"
    checks=$((checks + 1))
}

# is PATH VALUE: a field of the last output.
is() {
    local v=${J[$1]:-}
    [ "$v" = "$2" ] || fail "$1 is '$v', expected '$2'"
    checks=$((checks + 1))
}

# same FILE CODE ERROR ARGS...: fails as `bad` and FILE is unchanged.
same() {
    local file=$1 before after
    shift
    before=$(sha256sum "$file")
    bad "$@"
    after=$(sha256sum "$file")
    [ "$before" = "$after" ] || fail "$file changed"
}

# ------------------------------------------------------------------ help
for c in "" init stage boot confirm status lifecycle make-image; do
    "$SIM" $c --help >out 2>err || fail "--help of '$c' failed"
    grep -q '^usage: nobrick-sim' out || fail "--help of '$c'"
done
"$SIM" --help >out
grep -q 'trusts' out && grep -q 'NB_ERR_UNKNOWN_KEY' out ||
    fail "--help does not say which keys the device trusts"
"$SIM" make-image --help >out
grep -q 'NEVER for real devices' out || fail "make-image --help: test keys"

# -------------------------------------------------------------- packages
ok make-image --version 1.0.0 --security-version 1 --size 50000 --out v1.img
is payload_size 50000
is keys test
grep -q 'never for real devices' out || fail "no test-key warning in the JSON"
V1_SIZE=${J[size]}
M=${J[manifest_size]}
POFF=${J[payload_offset]}
[ "$((POFF + 50000))" -eq "$V1_SIZE" ] ||
    fail "size is not payload offset + payload size"
[ "$((12 + M))" -le "$POFF" ] || fail "payload offset inside the manifest"
[ "$(stat -c %s v1.img)" -eq "$V1_SIZE" ] || fail "v1.img is not 'size' bytes"
[ "${J[file_sha256]:-}" = "$(sha256sum v1.img | cut -d' ' -f1)" ] ||
    fail "file_sha256 differs from sha256sum"
[ "${J[sha256]:-}" = "$(tail -c 50000 v1.img | sha256sum | cut -d' ' -f1)" ] ||
    fail "sha256 is not the payload's SHA-256"
[ "$(head -c 4 v1.img)" = NBPK ] || fail "no NBPK magic"
# Deterministic: the same arguments give the same bytes.
ok make-image --version 1.0.0 --security-version 1 --size 50000 --out v1b.img
cmp -s v1.img v1b.img || fail "make-image is not reproducible"
ok make-image --version 1.1.0 --security-version 2 --size 70001 --out v2.img
is version 1.1.0
ok make-image --version 0.9.0 --security-version 0 --size 30000 --out fac.img
ok make-image --version 0.5.0 --security-version 0 --size 1000 --out low.img
ok make-image --version 9.0.0 --security-version 9 --size 131072 --out big.img

# --------------------------------------------------- the cycle per layout
for L in ab ab-swap ab-factory single; do
    F=$L.flash
    extra=()
    [ $L = ab-factory ] && extra=(--factory fac.img)
    ok init --flash $F --layout $L "${extra[@]}"
    is layout $L
    is lifecycle development
    is attempt_limit 3
    ok stage --flash $F --image v1.img
    is state PENDING
    is version 1.0.0
    is downgrade false
    ok boot --flash $F
    is outcome image
    is version 1.0.0
    is state TRIAL
    is attempts 1
    ok confirm --flash $F
    is changed true
    is floor 1
    ok status --flash $F
    is slots.${J[active]:-}.state CONFIRMED
    is slots.${J[active]:-}.version 1.0.0
    is floor 1
    is op none

    # Update that is never confirmed: three trial boots, then revert.
    ok stage --flash $F --image v2.img
    is version 1.1.0
    for n in 1 2 3; do
        ok boot --flash $F
        is version 1.1.0
        is state TRIAL
        is attempts $n
    done
    ok boot --flash $F
    if [ $L = single ]; then
        is outcome recovery # one slot: the update overwrote the old image
        ok init --flash $F --layout $L --force --image v1.img
        is image.state CONFIRMED
    else
        is outcome image
        is version 1.0.0
        is state CONFIRMED
        ok status --flash $F
        is floor 1
    fi

    # Power cut during stage, plain and torn: the confirmed image boots.
    for cut in 0 1 2 5 9 17; do
        torn=()
        [ $((cut % 2)) = 1 ] && torn=(--torn --seed $cut)
        run stage --flash $F --image v2.img --cut-at-op $cut "${torn[@]}"
        [ "$rc" -eq 2 ] || fail "stage cut at $cut: expected exit 2"
        one_json_line
        is power_cut true
        is op $cut
        is error NB_ERR_POWER
        ok boot --flash $F
        if [ $L = single ] && [ "${J[outcome]:-}" = recovery ]; then
            # The slot was being overwritten: recovery, never a partial
            # image. Put the confirmed image back for the next round.
            ok init --flash $F --layout $L --force --image v1.img
            continue
        fi
        is outcome image
        is version 1.0.0
        is state CONFIRMED
    done

    # Power cut during the first trial boot (ab-swap: mid-swap): the next
    # boot finishes the job and runs the update or the old image.
    ok stage --flash $F --image v2.img
    run boot --flash $F --cut-at-op 7 --torn --seed 3
    [ "$rc" -eq 2 ] || [ "$rc" -eq 0 ] || fail "boot cut: exit $rc"
    ok boot --flash $F
    is outcome image
    v=${J[version]:-}
    [ "$v" = 1.1.0 ] || [ "$v" = 1.0.0 ] || fail "booted $v after a cut"

    # A cut past the last operation is no cut.
    ok status --flash $F
    ok boot --flash $F --cut-at-op 100000
    is power_cut false
done

# ---------------------------------------- downgrade and lifecycle (ab)
ok init --flash lc.flash --layout ab --image v1.img
is image.security_version 1
run stage --flash lc.flash --image low.img
[ "$rc" -eq 0 ] || fail "development downgrade refused"
is downgrade true
w='warning: security version 0 is below the floor 1 (allowed in development)'
grep -qx "$w" err ||
    fail "no downgrade warning"
ok boot --flash lc.flash
is version 0.5.0
is downgrade true
ok init --flash lc.flash --layout ab --image v1.img --force
ok lifecycle --flash lc.flash --set production
is lifecycle production
is changed true
same lc.flash 1 NB_ERR_ROLLBACK stage --flash lc.flash --image low.img
grep -q 'refused in production' err || fail "no production message"
same lc.flash 1 NB_ERR_DENIED lifecycle --flash lc.flash --set development
grep -q 'never goes back' err || fail "no lifecycle message"
ok lifecycle --flash lc.flash --set production
is changed false
ok init --flash prod.flash --layout ab-swap --lifecycle production \
    --attempts 1 --image v1.img
is lifecycle production
is attempt_limit 1
same prod.flash 1 NB_ERR_ROLLBACK stage --flash prod.flash --image low.img

# State refusals write nothing either.
ok stage --flash lc.flash --image v2.img
ok boot --flash lc.flash
is state TRIAL
same lc.flash 1 NB_ERR_STATE stage --flash lc.flash --image v2.img
ok init --flash fresh.flash --layout ab
same fresh.flash 1 NB_ERR_STATE confirm --flash fresh.flash
ok boot --flash fresh.flash
is outcome recovery

# --------------------------------------------------------------- bad input
ok init --flash good.flash --layout ab --image v1.img
G=good.flash

# Files that are not whole packages: refused before anything is written.
same $G 1 NB_ERR_NOSPC stage --flash $G --image big.img
head -c $((V1_SIZE - 1)) v1.img >trunc.img
same $G 1 NB_ERR_TRUNCATED stage --flash $G --image trunc.img
head -c 10 v1.img >short.img
same $G 1 NB_ERR_TRUNCATED stage --flash $G --image short.img
head -c $((12 + M - 1)) v1.img >mtrunc.img # the manifest cut short
same $G 1 NB_ERR_TRUNCATED stage --flash $G --image mtrunc.img
: >empty.img
same $G 1 NB_ERR_TRUNCATED stage --flash $G --image empty.img
{ cat v1.img; printf x; } >padded.img
same $G 1 NB_ERR_TRAILING stage --flash $G --image padded.img
# poke FILE OFFSET OCTAL: overwrite one byte.
poke() { printf "\\$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
cp v1.img magic.img
poke magic.img 0 130 # 'X'
same $G 1 NB_ERR_MALFORMED stage --flash $G --image magic.img
cp v1.img reserved.img
poke reserved.img 5 001
same $G 1 NB_ERR_MALFORMED stage --flash $G --image reserved.img
cp v1.img cversion.img
poke cversion.img 4 002
same $G 1 NB_ERR_UNSUPPORTED stage --flash $G --image cversion.img
cp v1.img mlen.img
poke mlen.img 10 001 # manifest length above 16 KiB
same $G 1 NB_ERR_MALFORMED stage --flash $G --image mlen.img
cp v1.img shape.img
poke shape.img 12 000 # the COSE_Sign1 tag
same $G 1 NB_ERR_MALFORMED stage --flash $G --image shape.img
if [ "$POFF" -gt $((12 + M)) ]; then
    cp v1.img pad.img
    poke pad.img $((12 + M)) 001
    same $G 1 NB_ERR_MALFORMED stage --flash $G --image pad.img
    grep -q 'padding' err || fail "padding message"
fi
same $G 1 NB_ERR_NOENT stage --flash $G --image missing.img
same $G 1 NB_ERR_MALFORMED stage --flash $G --image $G # not a package

# Whole packages the device refuses before it writes anything.
# flip FILE OFFSET: invert one byte.
flip() {
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    poke "$1" "$2" "$(printf '%03o' $((b ^ 255)))"
}
cp v1.img sig.img
flip sig.img $((12 + M - 5)) # inside the manifest's signature
same $G 1 NB_ERR_SIGNATURE stage --flash $G --image sig.img
grep -q 'signature does not verify' err || fail "signature message"
grep -q 'nothing written' err || fail "signature: nothing written not said"
cp v1.img field.img
flip field.img $((12 + M - 80)) # a signed manifest field
run stage --flash $G --image field.img
[ "$rc" -eq 1 ] && [ "${J[ok]:-}" = false ] || fail "altered manifest accepted"
same $G 1 NB_ERR_SIGNATURE init --flash $G --layout ab --force --image sig.img
ls ./*.tmp >/dev/null 2>&1 && fail "init left a temporary file"

# A package signed with other keys by the real tool: the simulated device
# trusts only the simulator's test root.
NB=${NOBRICK_BUILD:-}/nobrick
if [ -n "${NOBRICK_BUILD:-}" ] && [ -x "$NB" ]; then
    VENDOR=6e622d74-6573-742d-7665-6e646f720001 # nb-test-vendor
    CLASS=6e622d74-6573-742d-636c-617373000001  # nb-test-class
    "$NB" key generate --insecure-key-file root.pem >/dev/null 2>&1 &&
        "$NB" key generate --insecure-key-file sign.pem >/dev/null 2>&1 &&
        "$NB" key export-public --insecure-key-file sign.pem \
            --out sign.pub >/dev/null 2>&1 &&
        "$NB" key delegate --insecure-key-file root.pem --key-pub sign.pub \
            --valid-days 1 --vendor $VENDOR --out deleg.cose >/dev/null 2>&1 &&
        head -c 20000 v2.img >fw.bin &&
        "$NB" package --insecure-key-file sign.pem --delegation deleg.cose \
            --in fw.bin --version 3.0.0 --security-version 3 --hw-rev sim-1 \
            --vendor $VENDOR --class $CLASS --out other.nbpkg >/dev/null 2>&1 ||
        fail "the nobrick tool could not make a package"
    same $G 1 NB_ERR_UNKNOWN_KEY stage --flash $G --image other.nbpkg
    grep -q 'trusts only' err || fail "unknown key message"
    checks=$((checks + 1))
else
    echo "test_cli: nobrick not built; the other-key case is skipped" >&2
fi

# A bad block is found when it arrives: the slot stays RECEIVING, never
# boots, and the confirmed image still does.
cp $G digest.flash
cp v1.img digest.img
flip digest.img $((POFF + 30000))
bad 1 NB_ERR_DIGEST stage --flash digest.flash --image digest.img
grep -q 'left RECEIVING and never boots' err || fail "digest message"
ok status --flash digest.flash
is slots.1.state RECEIVING
ok boot --flash digest.flash
is version 1.0.0
is state CONFIRMED
# And the good package goes in over it.
ok stage --flash digest.flash --image v2.img
is state PENDING

# Broken flash files: every command fails and writes nothing.
head -c 100000 $G >trunc.flash
head -c 20000 /dev/urandom >random.flash
: >empty.flash
cp $G nojournal.flash
ok status --flash $G
joff=${J[areas.journal.off]:-}
jsize=${J[areas.journal.size]:-}
dd if=/dev/zero of=nojournal.flash bs=1 seek=$((4096 + joff)) count=$jsize \
    conv=notrunc status=none
for c in status boot confirm "stage --image v1.img" \
    "lifecycle --set production"; do
    same nojournal.flash 1 NB_ERR_NOENT $c --flash nojournal.flash
    grep -q 'no valid boot journal' err || fail "journal message"
    same trunc.flash 1 NB_ERR_CORRUPT $c --flash trunc.flash
    grep -q 'truncated' err || fail "truncated message"
    for f in random.flash empty.flash v1.img; do
        same $f 1 NB_ERR_CORRUPT $c --flash $f
        grep -q 'not a nobrick-sim flash file' err || fail "not-flash message"
    done
    bad 1 NB_ERR_NOENT $c --flash missing.flash
    [ ! -e missing.flash ] || fail "missing.flash was created"
done
same $G 1 NB_ERR_DENIED init --flash $G --layout ab # exists, no --force
same $G 1 NB_ERR_NOSPC init --flash $G --layout ab --force --image big.img

# Bad command lines: exit 64, nothing created.
usage() { bad 64 NB_ERR_INVAL "$@"; [ ! -e new.flash ] || fail "created"; }
usage init --flash new.flash --layout abc
usage init --flash new.flash
usage init --layout ab
usage init --flash new.flash --layout ab --write-size 3
usage init --flash new.flash --layout ab --write-size 64
usage init --flash new.flash --layout ab --sector-size 4100
usage init --flash new.flash --layout ab --sector-size 4100 --write-size 8
usage init --flash new.flash --layout ab --sector-size 128
usage init --flash new.flash --layout ab --sector-size 33554432
usage init --flash new.flash --layout ab --sector-size 4096 --shape 4k
usage init --flash new.flash --layout ab --shape 2k
usage init --flash new.flash --layout ab --slot-size 0
usage init --flash new.flash --layout ab --slot-size 268435457
usage init --flash new.flash --layout ab --erase-value 0x7f
usage init --flash new.flash --layout ab --lifecycle beta
usage init --flash new.flash --layout ab --attempts 0
usage init --flash new.flash --layout ab --factory fac.img
usage make-image --version 1.0.0 --security-version 1 --size 0 \
    --out new.flash
usage make-image --version 1.0.0 --security-version 1 --size 268435457 \
    --out new.flash
for n in 12abc -5 99999999999999999999999 "" " 12" +12 0x 1e3 4096.0; do
    usage init --flash new.flash --layout ab --sector-size "$n"
    same $G 64 NB_ERR_INVAL boot --flash $G --cut-at-op "$n"
    usage make-image --version 1.0.0 --security-version 1 --size "$n" \
        --out new.flash
done
usage make-image --version 1.0 --security-version 1 --size 1 --out new.flash
usage make-image --version 256.0.0 --security-version 1 --size 1 \
    --out new.flash
usage make-image --version 1.0.0 --security-version 4294967296 --size 1 \
    --out new.flash
usage make-image --version 1.0.0 --security-version 1 --size 1
same $G 64 NB_ERR_INVAL boot --flash $G --torn
same $G 64 NB_ERR_INVAL boot --flash $G --bogus
same $G 64 NB_ERR_INVAL boot --flash $G extra
same $G 64 NB_ERR_INVAL boot --flash
same $G 64 NB_ERR_INVAL boot --flash $G --flash $G
same $G 64 NB_ERR_INVAL stage --flash $G
same $G 64 NB_ERR_INVAL lifecycle --flash $G --set beta
same $G 64 NB_ERR_INVAL status --flash $G --cut-at-op 1
usage frobnicate
usage

echo "test_cli: $checks checks passed"
