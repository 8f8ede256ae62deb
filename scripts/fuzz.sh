#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan + UBSan) and run each for a
# while. Any crash, leak or trap fails the run; the reproducer is left in
# the build directory (crash-*).
#   scripts/fuzz.sh BUILD_DIR SECONDS_MANIFEST [SECONDS_CBOR [SECONDS_SERVER]]
# SECONDS_SERVER (nobrick-server's request dispatch) defaults to a third of
# SECONDS_MANIFEST, like the CBOR reader's share in make fuzz.
set -euo pipefail
out=${1:-build-fuzz}
secs=${2:-60}
secs_cbor=${3:-20}
secs_server=${4:-$((secs / 3))}
here=$(cd "$(dirname "$0")/.." && pwd)
cc=$(command -v clang-14 || command -v clang || true)
if [ -z "$cc" ]; then
    echo "fuzz: clang not found (make deps installs it)" >&2
    exit 1
fi
mkdir -p "$out/corpus-manifest" "$out/corpus-cbor" "$out/corpus-server"
flags=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -I"$here/core" -I"$here/ports/mbedtls")
core=("$here"/core/*.c)
"$cc" "${flags[@]}" "$here/fuzz/fuzz_manifest.c" "${core[@]}" \
    "$here/ports/mbedtls/nb_crypto_mbedtls.c" -lmbedcrypto \
    -o "$out/fuzz_manifest"
"$cc" "${flags[@]}" "$here/fuzz/fuzz_cbor.c" "${core[@]}" \
    -o "$out/fuzz_cbor"
# nobrick-server's srv_dispatch (fuzz/fuzz_server.c): all of the server but
# main.c, against SQLite in memory, no socket.
server_srcs=()
for f in "$here"/cmd/nobrick-server/*.c; do
    [ "$(basename "$f")" = main.c ] || server_srcs+=("$f")
done
"$cc" "${flags[@]}" -I"$here/cmd/nobrick-server" \
    -I"$(pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)" \
    "$here/fuzz/fuzz_server.c" "${server_srcs[@]}" "${core[@]}" \
    "$here/ports/mbedtls/nb_crypto_mbedtls.c" -lmbedcrypto -ljansson \
    -lsqlite3 -lpq -lmicrohttpd -lpthread -o "$out/fuzz_server"
# Its seeds: one request of each kind, with the fixture's tokens.
seed() { printf '%b' "$2" >"$out/corpus-server/$1"; }
seed checkin 'POST /api/v1/devices/d-1/checkin\nAuthorization: Bearer tok-1\n\n{"hw_rev":"sim-1","version":"1.0.0","security_version":1,"slots":[{"slot":0,"state":"CONFIRMED","version":"1.0.0","security_version":1}]}'
seed enrol 'POST /api/v1/devices/d-9/checkin\nAuthorization: Bearer fleet\n\n{"hw_rev":"sim-1","version":"1.0.0","security_version":1,"slots":[]}'
seed report 'POST /api/v1/devices/d-1/reports\nAuthorization: Bearer tok-1\n\n{"rollout":"r-1","version":"1.1.0","state":"failed","reason":"NB_ERR_IO","detail":"x"}'
seed health 'POST /api/v1/devices/d-1/health\nAuthorization: Bearer tok-1\n\n{"rollout":"r-1","version":"1.1.0","healthy":true,"nonce":"abc"}'
seed range 'GET /api/v1/artifacts/a.bin\nRange: bytes=0-10,20-30,-5\n\n'
seed rollout 'POST /api/v1/rollouts\nAuthorization: Bearer admin\n\n{"package":"pkg-1","target":{"tags":["eu"]},"policy":{"schedule":[{"percent":10,"hold":"1m"},{"percent":100}]}}'
seed devices 'GET /api/v1/devices?tag=eu&limit=5\nAuthorization: Bearer admin\n\n'
seed ddi 'GET /DEFAULT/controller/v1/d-1\nAuthorization: TargetToken tok-1\n\n'
seed metrics 'GET /metrics\n\n'

# Seeds: the manifest of a real (test-signed) package, if nobrick-sim is
# built; the fuzzer finds its way from there.
sim=${NOBRICK_SIM:-$here/build/nobrick-sim}
if [ -x "$sim" ]; then
    "$sim" make-image --version 1.2.3 --security-version 4 --size 5000 \
        --out "$out/seed.nbpkg" >/dev/null
    mlen=$(od -An -tu4 -j8 -N4 "$out/seed.nbpkg" | tr -d ' ')
    dd if="$out/seed.nbpkg" of="$out/corpus-manifest/seed" bs=1 skip=12 \
        count="$mlen" status=none
    cp "$out/corpus-manifest/seed" "$out/corpus-cbor/seed"
    { printf 'POST /api/v1/packages?channel=development\nAuthorization: Bearer admin\n\n'
      cat "$out/seed.nbpkg"; } >"$out/corpus-server/upload"
fi
cd "$out"
echo "fuzz: manifest parser for ${secs}s"
./fuzz_manifest -max_total_time="$secs" -print_final_stats=1 \
    corpus-manifest 2>&1 | tail -n 12
echo "fuzz: CBOR reader for ${secs_cbor}s"
./fuzz_cbor -max_total_time="$secs_cbor" -print_final_stats=1 \
    corpus-cbor 2>&1 | tail -n 12
echo "fuzz: server request dispatch for ${secs_server}s"
./fuzz_server -max_total_time="$secs_server" -print_final_stats=1 \
    -rss_limit_mb=4096 corpus-server 2>&1 | tail -n 12
echo "fuzz: no crash"
