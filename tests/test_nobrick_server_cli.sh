#!/usr/bin/env bash
# test_nobrick_server_cli.sh - `nobrick server ...` (cmd/nobrick/server*.c),
# the command-line client of nobrick-server's management API.
#
# Part 1 needs no server: every command's --help, the command-line
# checks (exit 64, one line naming the command, nothing sent: the server
# URL points at a closed port, so anything sent would fail differently),
# no server or token given, a server that is not there (exit 1, one line
# saying so).
#
# Part 2 runs every command against a real build/nobrick-server on
# 127.0.0.1 (port 0, SQLite in a temporary directory, an admin token by
# file, the test's own root key as root_pub): upload (ID printed, same
# bytes same ID, --json, extra files, rollback and signature refusals,
# the progress bar on a terminal), packages list/show, devices
# add/list/show/tag/group (the token once, --token-out 0600), rollouts
# create/list/show/pause/resume/abort/wait, https with --cacert, and the
# failures: a bad admin token, unknown IDs, the server killed. It is skipped, with a
# message, only when nobrick-server is not built or has no management
# API yet.
#
# Needs: NOBRICK_BUILD (nobrick; nobrick-server for part 2), head, stat;
# script(1) for the terminal case and openssl(1) for the https case
# (each skipped without it).
set -euo pipefail

BUILD=${NOBRICK_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
NB=$BUILD/nobrick
SRV=$BUILD/nobrick-server
[ -x "$NB" ] || { echo "test_nobrick_server_cli: $NB is not built" >&2; exit 1; }

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
unset NOBRICK_SERVER NOBRICK_ADMIN_TOKEN NOBRICK_PIN

checks=0
fail() {
    echo "FAIL: $*" >&2
    echo "  command: ${last_cmd:-}" >&2
    echo "  exit: ${rc:-}" >&2
    echo "  stdout: $(head -c 3000 out 2>/dev/null)" >&2
    echo "  stderr: $(head -c 3000 err 2>/dev/null)" >&2
    [ -f srv.err ] && { echo "--- srv.err (last lines)" >&2; tail -n 20 srv.err >&2; }
    exit 1
}

# run ARGS...: nobrick server ARGS (stdin not a terminal); $rc, ./out, ./err.
run() {
    last_cmd="nobrick server $*"
    rc=0
    "$NB" server "$@" </dev/null >out 2>err || rc=$?
}
ok() {
    run "$@"
    [ "$rc" -eq 0 ] || fail "expected success"
    checks=$((checks + 1))
}
# errors: the lines of ./err that are not warnings.
errors() { grep -v '^nobrick: warning: ' err || true; }
# failed REGEX ARGS...: exit 1, one error line (after any warnings)
# matching REGEX.
failed() {
    local re=$1
    shift
    run "$@"
    [ "$rc" -eq 1 ] || fail "expected exit 1"
    [ "$(errors | wc -l)" -eq 1 ] || fail "expected one error line on stderr"
    errors | grep -Eq "^nobrick: .*$re" || fail "expected stderr to match: $re"
    checks=$((checks + 1))
}
# usage REGEX ARGS...: exit 64, one line naming the command and its help.
usage() {
    local re=$1
    shift
    run "$@"
    [ "$rc" -eq 64 ] || fail "expected exit 64 (usage)"
    [ "$(wc -l <err)" -eq 1 ] || fail "expected one line on stderr"
    grep -Eq "^nobrick: server.*$re" err || fail "expected stderr to match: $re"
    grep -q "(see 'nobrick server" err || fail "no pointer to --help"
    [ ! -s out ] || fail "a usage error printed on stdout"
    checks=$((checks + 1))
}
has() { grep -Eq -- "$1" "${2:-out}" || fail "expected ${2:-out} to match: $1"; }
hasnt() { ! grep -Eq -- "$1" "${2:-out}" || fail "expected ${2:-out} not to match: $1"; }
json_ok() {
    if command -v python3 >/dev/null; then
        python3 -c 'import json,sys; [json.loads(l) for l in sys.stdin]' <out ||
            fail "not JSON lines"
    fi
}

# ================================================ part 1: no server needed

for c in "--help" "upload --help" "packages --help" "packages list --help" \
    "packages show --help" "devices --help" "devices list --help" \
    "devices show --help" "devices add --help" "devices tag --help" \
    "devices group --help" "rollouts --help" "rollouts create --help" \
    "rollouts list --help" "rollouts show --help" "rollouts pause --help" \
    "rollouts resume --help" "rollouts abort --help" "rollouts wait --help"; do
    # shellcheck disable=SC2086
    ok $c
    has '^usage: nobrick server'
done
"$NB" --help | grep -q '^  server' || fail "nobrick --help does not list server"
checks=$((checks + 1))

# A closed port: a command that got past its checks fails with exit 1.
export NOBRICK_SERVER=http://127.0.0.1:1 NOBRICK_ADMIN_TOKEN=never-sent
printf 'NBPK-not-really' >fake.nbpkg

usage "which command"
usage "unknown command 'frob'" frob
usage "devices: unknown command 'frob'" devices frob
usage "unknown option '--bogus' before the command" --bogus devices list
usage "unknown option '--bogus'" devices list --bogus
usage "--json takes no value" devices list --json=1
usage "--server needs a value" devices list --server
usage "--server given twice" --server http://a devices list --server http://b
usage "--pin has no use" devices list --pin 1234
usage "--module has no use" packages --module /x.so
usage "--server: 'ftp://x' is not an http:// or https:// URL" --server ftp://x packages
usage "which package\\? give PKG.nbpkg" upload
usage "unexpected argument 'b.nbpkg'" upload a.nbpkg b.nbpkg
usage "--channel: 'beta' is not production or development" upload fake.nbpkg --channel beta
usage "--file: 'fw.swu' is not NAME=PATH" upload fake.nbpkg --file fw.swu
usage "--file: 'a/b' is not 1 to 64" upload fake.nbpkg --file a/b=fake.nbpkg
usage "--file: name 'x' given twice" upload fake.nbpkg --file x=fake.nbpkg --file x=fake.nbpkg
usage "--limit: '-1'" packages list --limit -1
usage "--limit: '10x'" devices --limit 10x
usage "which package\\? give its ID" packages show
usage "package '\\.\\.' is not an ID" packages show ..
usage "devices: unknown command 'remove'" devices remove d-1
usage "--hw-rev is required" devices add d-1
usage "device ID: 'd 1' is not 1 to 64" devices add "d 1" --hw-rev sim-1
usage "--tag: 'eu!' is not 1 to 64" devices add d-1 --hw-rev sim-1 --tag eu!
usage "--tag: 'eu' given twice" devices add d-1 --hw-rev sim-1 --tag eu,beta --tag eu
usage "--hw-rev: .* is not a hardware revision" devices add d-1 --hw-rev "$(printf 'a\tb')"
usage "--group: 'a,b' is not 1 to 64" devices add d-1 --hw-rev sim-1 --group a,b
usage "give the tags, or --none" devices tag d-1
usage "give tags or --none, not both" devices tag d-1 eu --none
usage "give the group, or --none" devices group d-1
usage "give the group, or --none" devices group d-1 g --none
usage "--package is required" rollouts create --all-devices
usage "which devices\\?" rollouts create --package p-1
usage "--all-devices and target options" rollouts create --package p-1 --all-devices --tag eu
usage "--target-json or target options" rollouts create --package p-1 --target-json t.json --tag eu
usage "--policy-json or policy options" rollouts create --package p-1 --all-devices --policy-json p.json --threshold 5%
usage "--steps or --ramp" rollouts create --package p-1 --all-devices --steps 100% --ramp 1%:1d
usage "--steps: the last step must be 100%" rollouts create --package p-1 --all-devices --steps 1%:1d,10%:1d
usage "--steps: the percentages must rise" rollouts create --package p-1 --all-devices --steps 10%:1d,5%:1d,100%
usage "--steps: '0%' is not a percentage" rollouts create --package p-1 --all-devices --steps 0%:1d,100%
usage "--steps: '101%' is not a percentage" rollouts create --package p-1 --all-devices --steps 101%
usage "--steps: '1.00001%' is not a percentage" rollouts create --package p-1 --all-devices --steps 1.00001%:1d,100%
usage "--steps: the last step holds for ever" rollouts create --package p-1 --all-devices --steps 1%:1d,100%:1d
usage "--steps: '1x' is not a duration" rollouts create --package p-1 --all-devices --steps 1%:1x,100%
usage "--ramp: '1%' is not P%:EVERY" rollouts create --package p-1 --all-devices --ramp 1%
usage "--windows: 'mon 09:00' is not DAYS" rollouts create --package p-1 --all-devices --windows "mon 09:00"
usage "--windows: 'mon 10:00-09:00' is not DAYS" rollouts create --package p-1 --all-devices --windows "mon 10:00-09:00"
usage "--windows: 'xyz 00:00-01:00' is not DAYS" rollouts create --package p-1 --all-devices --windows "xyz 00:00-01:00"
usage "--windows: 'mon 00:00-24:01' is not DAYS" rollouts create --package p-1 --all-devices --windows "mon 00:00-24:01"
usage "--utc-offset: '\\+15:00'" rollouts create --package p-1 --all-devices --utc-offset +15:00
usage "--threshold: '105%'" rollouts create --package p-1 --all-devices --threshold 105%
usage "--threshold: '1.5'" rollouts create --package p-1 --all-devices --threshold 1.5
usage "--min-attempted: 'many'" rollouts create --package p-1 --all-devices --min-attempted many
usage "--silent-timeout: '400d' is not a duration" rollouts create --package p-1 --all-devices --silent-timeout 400d
usage "--modulo: '10' is not N:R1,R2" rollouts create --package p-1 --modulo 10
usage "--modulo: residue '10' is not a number from 0 to 9" rollouts create --package p-1 --modulo 10:1,10
usage "--modulo: residue 1 given twice" rollouts create --package p-1 --modulo 10:1,1
usage "--modulo: '1' is too small" rollouts create --package p-1 --modulo 1:0
usage "which rollout\\? give its ID" rollouts show
usage "--until is required" rollouts wait r-1
usage "--until: 'done' is not running" rollouts wait r-1 --until "done"
usage "--until: 'percent>=101'" rollouts wait r-1 --until 'percent>=101'
usage "--interval: at least 100ms" rollouts wait r-1 --until paused --interval 10ms
usage "--timeout: '5 s' is not a duration" rollouts wait r-1 --until paused --timeout "5 s"
usage "--reason: no control characters" rollouts pause r-1 --reason "$(printf 'a\nb')"
usage "--reason" rollouts resume r-1 --reason x

# Files are checked before anything is sent.
failed "nosuch.nbpkg: No such file or directory" upload nosuch.nbpkg
printf 'not a package' >notpkg.bin
failed "notpkg.bin: not a nobrick package" upload notpkg.bin
failed "missing.swu: No such file or directory" upload fake.nbpkg --file fw.swu=missing.swu
failed "t.json: No such file" rollouts create --package p-1 --target-json t.json
echo '[1' >bad.json
failed "--policy-json: bad.json: not JSON" rollouts create --package p-1 --all-devices --policy-json bad.json
echo '[1]' >arr.json
failed "--target-json: arr.json: not a JSON object" rollouts create --package p-1 --target-json arr.json

# No server, no token.
unset NOBRICK_SERVER
failed "server packages list: no server: pass --server URL or set NOBRICK_SERVER" packages
export NOBRICK_SERVER=http://127.0.0.1:1
NOBRICK_SERVER=gopher://x failed "NOBRICK_SERVER: 'gopher://x' is not an http" packages
unset NOBRICK_ADMIN_TOKEN
failed "no admin token: pass --token-file FILE or set NOBRICK_ADMIN_TOKEN" devices
failed "nosuch.tok: No such file or directory" devices --token-file nosuch.tok
printf 'two words\n' >spaced.tok
chmod 600 spaced.tok
failed "the admin token from spaced.tok is not 1 to 4096 printable" devices --token-file spaced.tok
usage "give --token-file or --token, not both" devices --token-file spaced.tok --token abc
export NOBRICK_ADMIN_TOKEN=never-sent
# The server is not there: every command that asks it fails in one line.
failed "server devices list: cannot reach the server at http://127.0.0.1:1: .*is nobrick-server running there" devices
for c in "upload fake.nbpkg" "packages" "packages show p-1" "devices show d-1" \
    "devices add d-1 --hw-rev sim-1" "devices tag d-1 eu" "devices group d-1 g" \
    "rollouts" "rollouts show r-1" "rollouts pause r-1" "rollouts resume r-1" \
    "rollouts abort r-1" "rollouts create --package p-1 --all-devices" \
    "rollouts wait r-1 --until completed"; do
    # shellcheck disable=SC2086
    failed "cannot reach the server" $c
    # shellcheck disable=SC2086
    NOBRICK_SERVER='' failed "no server: pass --server URL" $c
done
# --token works, but warns: argv is public.
failed "cannot reach" --token abc devices list
grep -q "^nobrick: warning: --token is visible to other users" err || fail "no --token warning"
# A plain http:// server that is not this machine: the token goes in clear.
failed "cannot reach" --server http://192.0.2.1:1/ devices list --json
grep -q "^nobrick: warning: the admin token goes in clear to http://192.0.2.1:1: use https" err ||
    fail "no clear-text warning"

echo "test_nobrick_server_cli: part 1: $checks checks passed"

# ================================================ part 2: a real server

skip() {
    echo "test_nobrick_server_cli: SKIPPED part 2 (real server): $*"
    echo "test_nobrick_server_cli: $checks checks passed"
    exit 0
}
[ -x "$SRV" ] || skip "$SRV is not built"

# A product's keys: packages under our root, and one under another root.
"$NB" key generate --insecure-key-file root.pem >/dev/null 2>&1
"$NB" key generate --insecure-key-file signer.pem >/dev/null 2>&1
"$NB" key generate --insecure-key-file other-root.pem >/dev/null 2>&1
"$NB" key export-public --insecure-key-file root.pem --out root.pub.pem >/dev/null 2>&1
"$NB" key export-public --insecure-key-file signer.pem --out signer.pub.pem >/dev/null 2>&1
VENDOR=6ba7b810-9dad-11d1-80b4-00c04fd430c8
CLASS=6ba7b811-9dad-11d1-80b4-00c04fd430c8
for r in root other-root; do
    "$NB" key delegate --insecure-key-file $r.pem --key-pub signer.pub.pem \
        --valid-days 30 --vendor $VENDOR --class $CLASS --out $r.cose >/dev/null 2>&1 ||
        fail "key delegate ($r)"
done
pkg() { # VERSION SVN SIZE DELEGATION OUT
    head -c "$3" /dev/urandom >fw.bin
    "$NB" package --insecure-key-file signer.pem --delegation "$4" --in fw.bin \
        --version "$1" --security-version "$2" --hw-rev sim-1 \
        --vendor $VENDOR --class $CLASS --out "$5" >/dev/null 2>&1 ||
        fail "package $1"
}
pkg 1.1.0 2 3000000 root.cose v110.nbpkg
pkg 1.0.0 1 50000 root.cose v100.nbpkg
pkg 1.2.0 3 50000 other-root.cose other.nbpkg
head -c 4000 /dev/urandom >fw.swu

# The server: an admin token in a file (plain, one a line), SQLite.
ADMIN=admin-$RANDOM$RANDOM$RANDOM
printf '%s\n' "$ADMIN" >admin.tokens
printf '%s\n' "$ADMIN" >admin.tok
chmod 600 admin.tok admin.tokens
# start_server NAME [FLAGS...]: a server with its own database and
# artifacts; sets PORT and SRV_PID.
start_server() {
    local name=$1
    shift
    mkdir "art-$name"
    "$SRV" --listen 127.0.0.1 --port 0 --db "$T/$name.db" \
        --artifacts "$T/art-$name" --admin-token-file "$T/admin.tokens" \
        --root-pub "$T/root.pub.pem" --log-level warn "$@" \
        >"$name.out" 2>>srv.err &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    PORT=
    for _ in $(seq 200); do
        PORT=$(awk 'NR == 1 && $1 == "port" { print $2 }' "$name.out")
        [ -n "$PORT" ] && return 0
        kill -0 "$SRV_PID" 2>/dev/null || fail "nobrick-server exited: $(cat srv.err)"
        sleep 0.05
    done
    fail "nobrick-server printed no port line"
}
start_server main
export NOBRICK_SERVER=http://127.0.0.1:$PORT
unset NOBRICK_ADMIN_TOKEN
TF=(--token-file admin.tok)

run packages "${TF[@]}"
if [ "$rc" -ne 0 ] && grep -q "HTTP 501" err; then
    skip "this nobrick-server has no management API yet ($(cat err))"
fi

# ------------------------------------------------------------ packages
ok upload v110.nbpkg "${TF[@]}"
P=$(cat out)
[[ "$P" =~ ^[A-Za-z0-9._-]+$ ]] || fail "upload printed '$P', not one ID"
has "^v110.nbpkg: 2.9 MiB \\(3000000 bytes\\)|^v110.nbpkg: .* sent in" err
# The same bytes again: the same package.
ok upload "${TF[@]}" v110.nbpkg
[ "$(cat out)" = "$P" ] || fail "a second upload gave $(cat out), not $P"
NOBRICK_ADMIN_TOKEN=$ADMIN ok upload v110.nbpkg --json
json_ok
has "\"id\":\"$P\""
has '"version":"1.1.0"'
# Production refuses to go back; development takes it.
failed "server upload: .*\\(HTTP 409 rollback\\)$" upload v100.nbpkg "${TF[@]}"
ok upload v100.nbpkg --channel development "${TF[@]}"
P100=$(cat out)
# Another root: the server's root_pub does not sign it.
failed "server upload: .*root_pub.*\\(HTTP 422 signature\\)$" upload other.nbpkg "${TF[@]}"
# Extra files for DDI clients.
ok upload v110.nbpkg --file fw.swu=fw.swu "${TF[@]}"
[ "$(cat out)" = "$P" ] || fail "upload with --file gave another ID"
has "^fw.swu: 3.9 KiB \\(4000 bytes\\) sent" err

ok packages "${TF[@]}"
has '^ID +VERSION +SECURITY +CHANNEL'
has "^$P +1\\.1\\.0 +2 +production +sim-1 +[0-9]+ "
has "^$P100 +1\\.0\\.0 +1 +development"
ok packages list --limit 1 "${TF[@]}"
[ "$(wc -l <out)" -eq 2 ] || fail "--limit 1 showed more than one package"
has "warning: showing the first 1 packages" err
ok packages list --json "${TF[@]}"
json_ok
has "\"id\":\"$P\""
ok packages show "$P" "${TF[@]}"
has '^version +1\.1\.0$'
has '^security version +2$'
has 'name fw\.swu, .*size 4000'
ok --json packages show "$P" "${TF[@]}"
json_ok
failed "server packages show pkg-000000000000: .*\\(HTTP 404 not_found\\)$" packages show pkg-000000000000 "${TF[@]}"

# -------------------------------------------------------------- devices
ok devices add d-1 --hw-rev sim-1 --tag eu --group line-3 "${TF[@]}"
{ [ "$(wc -l <out)" -eq 1 ] && [ -n "$(cat out)" ]; } || fail "no token printed"
TOK1=$(cat out)
ok devices add d-2 --hw-rev sim-1 --tag eu,beta --token-out tok2 "${TF[@]}"
has "^added device d-2; its token is in tok2 \\(mode 0600\\)$"
[ "$(stat -c %a tok2)" = 600 ] || fail "tok2 is mode $(stat -c %a tok2)"
{ [ -n "$(head -n 1 tok2)" ] && [ "$(head -n 1 tok2)" != "$TOK1" ]; } ||
    fail "tok2 holds no new token"
failed "tok2 exists already: not overwritten" devices add d-3 --hw-rev sim-1 --token-out tok2 "${TF[@]}"
ok devices add d-3 --hw-rev sim-2 --json "${TF[@]}"
json_ok
has '"token":"[^"]+"'
failed "server devices add d-1: .*\\(HTTP 409 conflict\\)$" devices add d-1 --hw-rev sim-1 "${TF[@]}"

ok devices "${TF[@]}"
has '^ID +HW REV +VERSION +GROUP +TAGS +LAST SEEN'
has '^d-1 +sim-1 +- +line-3 +eu '
has '^d-2 +sim-1 +- +- +beta, eu |^d-2 +sim-1 +- +- +eu, beta '
ok devices list --tag beta "${TF[@]}"
has '^d-2 '
hasnt '^d-1 '
ok devices list --group line-3 "${TF[@]}"
has '^d-1 '
hasnt '^d-2 '
ok devices list --hw-rev sim-2 "${TF[@]}"
has '^d-3 '
hasnt '^d-1 '
ok devices list --limit 2 "${TF[@]}"
[ "$(wc -l <out)" -eq 3 ] || fail "--limit 2 did not show 2 devices"
has "warning: showing the first 2 devices" err
ok devices list --json "${TF[@]}"
json_ok
ok devices show d-1 "${TF[@]}"
has '^hw rev +sim-1$'
has '^group +line-3$'
failed "server devices show nosuch: .*\\(HTTP 404 not_found\\)$" devices show nosuch "${TF[@]}"
ok devices tag d-1 x y "${TF[@]}"
has '^device d-1: tags x, y$'
ok devices show d-1 "${TF[@]}"
has '^tags +x, y$'
ok devices tag d-1 --none "${TF[@]}"
has '^device d-1: no tags$'
ok devices group d-1 line-4 "${TF[@]}"
has '^device d-1: group line-4$'
ok devices group d-1 --none "${TF[@]}"
has '^device d-1: no group$'
ok devices group d-1 line-3 --json "${TF[@]}"
json_ok
failed "server devices tag nosuch: .*\\(HTTP 404 not_found\\)$" devices tag nosuch eu "${TF[@]}"

# ------------------------------------------------------------- rollouts
ok rollouts create --package "$P" --hw-rev sim-1 --tag eu \
    --steps 50%:1s,100% --windows always --threshold 20% --min-attempted 1 \
    --silent-timeout 6h "${TF[@]}"
R=$(cat out)
[[ "$R" =~ ^[A-Za-z0-9._-]+$ ]] || fail "create printed '$R', not one ID"
ok rollouts "${TF[@]}"
has '^ID +PACKAGE +VERSION +STATE +STEP +REACH +CREATED'
has "^$R +$P +1\\.1\\.0 +(running|completed) "
ok rollouts show "$R" "${TF[@]}"
has "^rollout +$R$"
has '^reach +\[[#-]+\] +[0-9.]+% of the target$'
has '^devices by state$'
has '^  total +[0-9]+$'
ok rollouts show "$R" --json "${TF[@]}"
json_ok
# Pause with a reason, wait for it, resume.
ok rollouts pause "$R" --reason "checking the logs" "${TF[@]}"
has "^rollout $R: paused at step .*checking the logs"
ok rollouts wait "$R" --until paused --timeout 5s --interval 100ms "${TF[@]}"
has "^rollout $R: paused"
ok rollouts show "$R" "${TF[@]}"
has '^pause reason +.*checking the logs'
failed "timed out after [0-9]+ s waiting for running" rollouts wait "$R" --until running --timeout 1s --interval 200ms "${TF[@]}"
ok rollouts resume "$R" "${TF[@]}"
has "^rollout $R: running"
# The first step holds 1 s; then 100 %.
ok rollouts wait "$R" --until 'percent>=100' --timeout 20s --interval 200ms "${TF[@]}"
has "^rollout $R: .*100\\.0% of the target$"
ok rollouts abort "$R" "${TF[@]}"
has "^rollout $R: aborted"
failed "it has ended without reaching completed" rollouts wait "$R" --until completed --timeout 5s "${TF[@]}"
failed "server rollouts resume $R: .*\\(HTTP 409 conflict\\)$" rollouts resume "$R" "${TF[@]}"
# From JSON files, and the failures.
printf '{"devices":["d-2"]}' >target.json
printf '{"schedule":[{"percent":100}],"windows":"always"}' >policy.json
ok rollouts create --package "$P" --target-json target.json --policy-json policy.json --json "${TF[@]}"
json_ok
has '"devices":\["d-2"\]'
failed "HTTP 404" rollouts create --package pkg-000000000000 --all-devices "${TF[@]}"
failed "server rollouts show r-999999: .*\\(HTTP 404 not_found\\)$" rollouts show r-999999 "${TF[@]}"
failed "HTTP 404" rollouts pause r-999999 "${TF[@]}"

# ----------------------------------------------------- tokens, terminal
printf 'wrong-token\n' >wrong.tok
chmod 600 wrong.tok
failed "the server refused the admin token \\(HTTP 401.*check --token-file or NOBRICK_ADMIN_TOKEN" \
    packages --token-file wrong.tok
failed "refused the admin token" upload v110.nbpkg --token-file wrong.tok
NOBRICK_ADMIN_TOKEN=wrong failed "refused the admin token" rollouts list
# A token file others can read works, with a warning.
chmod 644 admin.tok
ok devices "${TF[@]}"
grep -q "^nobrick: warning: admin.tok can be read by other users (mode 0644): chmod 600 it" err ||
    fail "no warning about the token file's mode"
chmod 600 admin.tok
ok --token "$ADMIN" devices
grep -q "^nobrick: warning: --token is visible" err || fail "no --token warning"
# On a terminal: a progress bar with a percentage, redrawn in place.
if command -v script >/dev/null; then
    NOBRICK_ADMIN_TOKEN=$ADMIN script -qec "stty cols 100; '$NB' server upload v110.nbpkg" \
        /dev/null </dev/null >tty.out 2>&1 || fail "upload on a terminal: $(cat tty.out)"
    grep -q $'\r''v110\.nbpkg \[[#-]*\] *[0-9]*%' tty.out || fail "no progress bar: $(cat -A tty.out | head -c 2000)"
    grep -q "$P" tty.out || fail "no package ID on the terminal"
    checks=$((checks + 1))
fi

# ---------------------------------------------------------------- https
if command -v openssl >/dev/null; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout tls.key -out tls.crt -days 2 -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1 ||
        fail "openssl req (a self-signed certificate)"
    HTTP_PID=$SRV_PID HTTP_PORT=$PORT
    start_server tls --tls-cert "$T/tls.crt" --tls-key "$T/tls.key"
    S=https://127.0.0.1:$PORT
    failed "server packages list: TLS with $S failed: .*pass the server's CA certificate with --cacert FILE" \
        --server "$S" packages "${TF[@]}"
    ok --server "$S" upload v110.nbpkg --cacert tls.crt "${TF[@]}"
    [ "$(cat out)" = "$P" ] || fail "the upload over https gave $(cat out), not $P"
    ok --server "$S/api/v1/" --cacert tls.crt packages "${TF[@]}"
    has "^$P "
    failed "nosuch.crt: No such file or directory" --server "$S" --cacert nosuch.crt packages "${TF[@]}"
    kill "$SRV_PID"
    SRV_PID=$HTTP_PID PORT=$HTTP_PORT
fi

# -------------------------------------------------------- server down
kill "$SRV_PID"
wait "$SRV_PID" 2>/dev/null || true
failed "cannot reach the server at http://127.0.0.1:$PORT: .*is nobrick-server running there" \
    devices "${TF[@]}"
failed "cannot reach the server" upload v110.nbpkg "${TF[@]}"

echo "test_nobrick_server_cli: $checks checks passed"
