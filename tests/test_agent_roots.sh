#!/usr/bin/env bash
# test_agent_roots.sh - nobrick-agent with a product's own trust anchors:
# root_pub (PEM files from `nobrick key export-public`), vendor and class,
# against the real nobrick-server (port 0, SQLite in a temporary
# directory). The packages are uploaded through the management API, which
# verifies them against the server's root_pub keys: the product's root and
# a second root the device does not trust.
#
#   own root      on a blank block-device flash (a plain file) provisioned
#                 by the agent, 1.1.0 and then 1.2.0 (signed with another
#                 key of the same root) install and are confirmed; the
#                 server records each confirmed
#   other root    a package signed under the second root (the server
#                 accepts it, the device does not) is refused with
#                 NB_ERR_UNKNOWN_KEY before any slot byte is written
#   revocation    the server restarted with a revocation list (revocations,
#                 revocations_seq: the root revokes the first signing key)
#                 names it in every check-in answer; the agent applies it
#                 and refuses 1.4.0, signed by the revoked key, with
#                 NB_ERR_REVOKED; 1.2.0 (the other key) still runs. (1.4.0
#                 was uploaded before the list was configured: the server
#                 refuses uploads signed by a revoked key.)
#   bad root_pub  a root_pub file that is not a key: one clear line, exit
#                 status not 0
# Plain key files (--insecure-key-file) keep the test free of a token; the
# token path is tested in test_nobrick_tool.sh.
#
# Needs: NOBRICK_BUILD (nobrick-server, nobrick-agent, nobrick), curl.
set -euo pipefail

BUILD=${NOBRICK_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
AGENT=$BUILD/nobrick-agent
TOOL=$BUILD/nobrick
SRV=$BUILD/nobrick-server
for b in "$AGENT" "$TOOL" "$SRV"; do
    [ -x "$b" ] || { echo "test_agent_roots: $b is not built" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "test_agent_roots: needs curl" >&2; exit 1; }
unset http_proxy https_proxy all_proxy HTTPS_PROXY ALL_PROXY no_proxy NO_PROXY
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

# A product's keys and packages, made in stages whose steps run together.
key() { "$TOOL" key "$@" >/dev/null 2>>tool.err || fail "nobrick key $1"; }
# together CMD...: the commands (for eval) at once; all must succeed.
together() {
    local c pids=() bad=0
    for c in "$@"; do
        eval "$c" &
        pids+=($!)
    done
    for c in "${pids[@]}"; do wait "$c" || bad=1; done
    [ "$bad" = 0 ] || fail "a step of: $* (tool.err: $(tail -n 3 tool.err))"
}
# Two roots; signer and signer2 (1.2.0 is signed with the second, so that
# revoking the first leaves the running image valid) delegated by root;
# other-signer by the other root (the same vendor and class).
gen() { key generate --insecure-key-file "$1.pem"; }
pub() { key export-public --insecure-key-file "$1.pem" --out "$1.pub.pem"; }
delegate() { # ROOT SIGNER
    key delegate --insecure-key-file "$1.pem" --key-pub "$2.pub.pem" \
        --valid-days 30 --vendor "$VENDOR" --class "$CLASS" --out "$2.cose"
}
together "gen root" "gen other-root" "gen signer" "gen signer2" "gen other-signer"
together "pub root" "pub other-root" "pub signer" "pub signer2" "pub other-signer"
together "delegate root signer" "delegate root signer2" \
    "delegate other-root other-signer"
head -c 150000 /dev/urandom >fw1.bin
head -c 170000 /dev/urandom >fw2.bin
head -c 10000 /dev/urandom >fw3.bin
head -c 90000 /dev/urandom >fw4.bin
pkg() { # VERSION SVN KEY IN OUT
    "$TOOL" package --insecure-key-file "$3.pem" --delegation "$3.cose" \
        --in "$4" --version "$1" --security-version "$2" --hw-rev prod-a \
        --vendor "$VENDOR" --class "$CLASS" --out "$5" >/dev/null 2>>tool.err ||
        fail "package $1"
}
# The root revokes the first signing key.
revoke() {
    local kid
    kid=$("$TOOL" key export-public --insecure-key-file signer.pem \
        --out kid.pem 2>/dev/null | sed -n 's/.*key ID \([0-9a-f]*\).*/\1/p')
    [ -n "$kid" ] || fail "no key ID for signer.pem"
    "$TOOL" key revoke --insecure-key-file root.pem --seq 1 --key-id "$kid" \
        --out art/rev1.cose >/dev/null 2>&1 || fail "key revoke"
}
together "pkg 1.1.0 1 signer fw1.bin p1.nbpkg" "pkg 1.2.0 2 signer2 fw2.bin p2.nbpkg" \
    "pkg 1.3.0 3 other-signer fw3.bin p3.nbpkg" "pkg 1.4.0 4 signer fw4.bin p4.nbpkg" \
    revoke

# ------------------------------------------------------------- the server

ADMIN=admin-$RANDOM$RANDOM
printf '%s\n' "$ADMIN" >admin.tokens
start_server() { # [ARGS...]: sets SRV_PID, URL
    : >srv.out
    "$SRV" --port 0 --db "$T/db.sqlite" --artifacts "$T/art" \
        --admin-token-file admin.tokens --root-pub root.pub.pem \
        --root-pub other-root.pub.pem --threads 2 "$@" >srv.out 2>>srv.err &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    local port=
    for _ in $(seq 200); do
        port=$(awk 'NR == 1 && $1 == "port" { print $2 }' srv.out)
        [ -n "$port" ] && break
        kill -0 "$SRV_PID" 2>/dev/null || fail "nobrick-server exited: $(tail -n 3 srv.err)"
        sleep 0.05
    done
    [ -n "$port" ] || fail "nobrick-server printed no port line"
    URL=http://127.0.0.1:$port
}
start_server
# api METHOD PATH [BODY...]: a management API call (curl arguments for
# the body); the answer in resp.json.
api() {
    local m=$1 p=$2 code
    shift 2
    code=$(curl -sS -o resp.json -w '%{http_code}' -X "$m" \
        -H "Authorization: Bearer $ADMIN" "$@" "$URL/api/v1$p") || fail "curl $m $p"
    case $code in 2??) ;; *) fail "$m $p: HTTP $code: $(cat resp.json)" ;; esac
}
first_id() { sed -n 's/^{"id":"\([^"]*\)".*/\1/p' resp.json; }
for v in 1 2 3 4; do
    api POST /packages -H 'Content-Type: application/octet-stream' \
        --data-binary "@p$v.nbpkg"
    printf -v "P$v" '%s' "$(first_id)"
done
api POST /devices -d '{"id":"dev-p","hw_rev":"prod-a"}'
sed -n 's/.*"token":"\([0-9a-f]*\)".*/\1/p' resp.json >dev.token
# rollout PKG: a rollout of PKG to dev-p (windows always, one step of
# 100 %); R = its ID.
rollout() {
    api POST /rollouts -d "{\"package\":\"$1\",\"target\":{\"devices\":[\"dev-p\"]},\"policy\":{\"schedule\":[{\"percent\":100}],\"windows\":\"always\"}}"
    R=$(first_id)
}
# server_state: "state reason" of dev-p in rollout R, as the server has it.
server_state() {
    api GET "/rollouts/$R/devices"
    sed -n 's/.*"device":"dev-p","state":"\([a-z]*\)".*"reason":\("[A-Z_]*"\|null\).*/\1 \2/p' resp.json |
        tr -d '"'
}

# A blank 2 MiB block-device flash (a plain file), provisioned.
head -c $((2 * 1024 * 1024)) /dev/zero | tr '\0' '\377' >dev.img
common() {
    COMMON=(--flash dev.img --flash-type block --layout ab --slot-size 524288
        --device-id dev-p --token-file dev.token --server-url "$URL"
        --transport http --state-file dev.state --hw-rev prod-a
        --root-pub root.pub.pem --vendor "$VENDOR" --class "$CLASS"
        --ack-timeout-ms 5000 --retry-base-ms 100 --retry-max-ms 400
        --retry-attempts 2)
}
common
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
    pv=P$v
    rollout "${!pv}"
    run
    [ "$RC" = 0 ] || fail "update to 1.$v.0: exit $RC ($OUT)"
    echo "$OUT" | grep -q "\"running\":\"1.$v.0\",\"running_state\":\"CONFIRMED\"" ||
        fail "1.$v.0 not confirmed: $OUT"
    [ "$(server_state)" = "confirmed null" ] ||
        fail "server: 1.$v.0 is '$(server_state)', not confirmed"
    ok
done

# A package under another root: refused before any slot byte is written.
cp dev.img before.img
rollout "$P3"
run
[ "$RC" != 0 ] || fail "a package under another root was accepted ($OUT)"
[ "$(server_state)" = "failed NB_ERR_UNKNOWN_KEY" ] ||
    fail "server: '$(server_state)', not failed with NB_ERR_UNKNOWN_KEY"
ok
# Only the journal (the first two 4 KiB sectors) may have changed: the
# slots are byte for byte the same.
cmp -s <(tail -c +8193 before.img) <(tail -c +8193 dev.img) ||
    fail "slot bytes changed"
ok

# The server, restarted with the revocation list, names it in every
# check-in answer: the agent applies it (root-signed, newer), and the
# offer signed by the revoked key is refused; 1.2.0, signed by the other
# key, still runs.
kill -TERM "$SRV_PID"
wait "$SRV_PID" || fail "nobrick-server exit status $? after SIGTERM"
start_server --revocations rev1.cose --revocations-seq 1
common
rollout "$P4"
run
[ "$RC" != 0 ] || fail "a package of a revoked key was accepted ($OUT)"
grep -q "revocation list 1 applied: 1 key" agent.err ||
    fail "revocation list not applied"
[ "$(server_state)" = "failed NB_ERR_REVOKED" ] ||
    fail "server: '$(server_state)', not failed with NB_ERR_REVOKED"
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
if grep -E 'Sanitizer|runtime error' srv.err >&2; then
    fail "sanitizer report in the server's log"
fi
echo "test_agent_roots: $checks checks passed"
