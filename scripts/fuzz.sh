#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan + UBSan) and run each for a
# while. Any crash, leak or trap fails the run; the reproducer is left in
# the build directory (crash-*).
#   scripts/fuzz.sh BUILD_DIR SECONDS_MANIFEST [SECONDS_CBOR]
set -euo pipefail
out=${1:-build-fuzz}
secs=${2:-60}
secs_cbor=${3:-20}
here=$(cd "$(dirname "$0")/.." && pwd)
cc=$(command -v clang-14 || command -v clang || true)
if [ -z "$cc" ]; then
    echo "fuzz: clang not found (make deps installs it)" >&2
    exit 1
fi
mkdir -p "$out/corpus-manifest" "$out/corpus-cbor"
flags=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -I"$here/core" -I"$here/ports/mbedtls")
core=("$here"/core/*.c)
"$cc" "${flags[@]}" "$here/fuzz/fuzz_manifest.c" "${core[@]}" \
    "$here/ports/mbedtls/nb_crypto_mbedtls.c" -lmbedcrypto \
    -o "$out/fuzz_manifest"
"$cc" "${flags[@]}" "$here/fuzz/fuzz_cbor.c" "${core[@]}" \
    -o "$out/fuzz_cbor"
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
fi
cd "$out"
echo "fuzz: manifest parser for ${secs}s"
./fuzz_manifest -max_total_time="$secs" -print_final_stats=1 \
    corpus-manifest 2>&1 | tail -n 12
echo "fuzz: CBOR reader for ${secs_cbor}s"
./fuzz_cbor -max_total_time="$secs_cbor" -print_final_stats=1 \
    corpus-cbor 2>&1 | tail -n 12
echo "fuzz: no crash"
