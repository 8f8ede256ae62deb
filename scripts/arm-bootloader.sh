#!/usr/bin/env bash
# arm-bootloader.sh - build the minimal Cortex-M bootloader of
# ports/cortex-m/ (core + mbedTLS 2.28 crypto port + a board port for
# QEMU's mps2 boards), say what the signature check costs in flash, and
# run it under QEMU when qemu-system-arm is installed.
#
# usage: scripts/arm-bootloader.sh [OUT_DIR]   (default: build-arm-boot;
#        not build-arm, which scripts/arm-core-check.sh deletes each run)
# env:   ARM_PREFIX (default arm-none-eabi-), CC (host compiler, default
#        cc), NB_MBEDTLS_POOL (bytes of mbedTLS' static pool, default
#        4096), NB_UPDATE_TEST_ROOT=1 (rewrite ports/cortex-m/test_root.h
#        when lib/nb_testpkg.c's test root changed).
#
# Steps:
#  1. mbedTLS 2.28 source from Debian's source packages (apt-get with a
#     private deb-src list in OUT_DIR/apt, 'source --download-only
#     mbedtls', dpkg-source -x) into OUT_DIR/mbedtls-src; reused when
#     present. Needs Debian's archive only. The source and the objects
#     stay in OUT_DIR: never commit them.
#  2. Host: builds OUT_DIR/host/mkflash (ports/cortex-m/mkflash.c over
#     core/, lib/ and the host's libmbedcrypto), checks that
#     ports/cortex-m/test_root.h matches lib/nb_testpkg.c's TEST root, and
#     writes three flash images: slot A = test package 1.0.0 CONFIRMED,
#     slot B = 1.1.0 PENDING; intact, with one bit of B's manifest
#     signature flipped, and with one bit of B's payload flipped.
#  3. Cortex-M4 (the figures) and Cortex-M3 (QEMU's mps2-an385), each:
#     arm-none-eabi-gcc -Os -mthumb -ffunction-sections -fdata-sections,
#     core/*.c, the mbedTLS files below with ports/cortex-m/
#     mbedtls_config_nb.h, ports/mbedtls/nb_crypto_mbedtls.c and the board
#     port, linked with mps2.ld, --gc-sections, newlib-nano's mem*, libgcc.
#  4. QEMU (if installed): the M4 image on mps2-an386 with each flash
#     image, the M3 image on mps2-an385 with the intact one; the expected
#     lines are checked.
#
# What it prints (Cortex-M4 unless said; ".text" is code only, .rodata
# is counted apart; "objects" = the .o files as compiled, "linked" = what
# the ELF keeps after --gc-sections, read from the linker map):
#   - a table of every group with objects and linked sizes:
#       core without manifest/package/cbor   (what the foundation needed)
#       core manifest + package + cbor       (the signed-manifest parser)
#       core, all of it
#       mbedTLS ECDSA verify (bignum, ecp, ecp_curves, ecdsa, asn1parse,
#         asn1write, constant_time, platform, platform_util,
#         memory_buffer_alloc), mbedTLS SHA-256, each object on its own line
#       the crypto port, the board port, libc/libgcc members, and the
#       strings (the linker merges them across objects, so they get one
#       line of their own)
#   - arm-none-eabi-size of the linked ELF (text/data/bss; bss includes
#     the mbedTLS pool and the stack) and its sections;
#   - "mbedTLS static memory pool: N bytes" (and the peak QEMU measured);
#   - "added .text for the signature check: N bytes", which is the linked
#     .text of manifest.o + package.o + cbor.o + the port's
#     ecdsa_p256_verify + the mbedTLS ECDSA objects + any libgcc/libc
#     helper only they pulled in; SHA-256 is listed but not added (the
#     foundation's image digest already needed it);
#   - the QEMU runs' semihosting output ("nobrick: booting slot 1 version
#     1.1.0" ...) and measured stack and pool use.
# Exit status: 0 when everything built and every QEMU run that ran
# printed what it should; 1 otherwise.

# The awk conditions passed to linked() are single-quoted on purpose.
# shellcheck disable=SC2016
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-"$root/build-arm-boot"}
mkdir -p "$out"
out=$(cd "$out" && pwd)
prefix=${ARM_PREFIX:-arm-none-eabi-}
cc=${prefix}gcc
size=${prefix}size
host_cc=${CC:-cc}
pool=${NB_MBEDTLS_POOL:-4096}
port="$root/ports/cortex-m"
src="$out/mbedtls-src"

mbedtls_sig="bignum ecp ecp_curves ecdsa asn1parse asn1write constant_time platform platform_util memory_buffer_alloc"
mbedtls_hash="sha256"
core_sig="manifest package cbor"
board="boot_main startup_mps2 semihost nb_flash_mem"

die() {
    echo "arm-bootloader: $*" >&2
    exit 1
}

for tool in "$cc" "$size" "$host_cc"; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool not found; run 'make deps' (packages gcc-arm-none-eabi, libnewlib-arm-none-eabi, build-essential)"
done
case "$pool" in
    '' | *[!0-9]*) die "NB_MBEDTLS_POOL must be a number of bytes, not '$pool'" ;;
esac

# ---------------------------------------------------------------------
# 1. mbedTLS 2.28 from Debian's source packages.
# ---------------------------------------------------------------------
mbedtls_version() {
    sed -n 's/^#define MBEDTLS_VERSION_STRING *"\([^"]*\)".*/\1/p' \
        "$1/include/mbedtls/version.h" 2>/dev/null || true
}

fetch_mbedtls() {
    local v
    v=$(mbedtls_version "$src")
    if [ -f "$src/library/ecdsa.c" ] && [ "${v%.*}" = "2.28" ]; then
        echo "mbedTLS source: $src ($v, reused)"
        return
    fi
    for tool in apt-get dpkg-source; do
        command -v "$tool" >/dev/null 2>&1 ||
            die "$tool not found: the mbedTLS source comes from Debian's source packages (packages apt, dpkg-dev)"
    done
    local apt="$out/apt" sources=/etc/apt/sources.list.d/debian.sources
    rm -rf "$apt" "$src"
    mkdir -p "$apt/sources.list.d" "$apt/lists/partial" \
        "$apt/cache/archives/partial" "$apt/dl" "$apt/x"
    # A private copy of Debian's sources that asks for deb-src.
    if [ -f "$sources" ]; then
        sed 's/^Types:.*/Types: deb-src/' "$sources" \
            >"$apt/sources.list.d/debian.sources"
    elif [ -f /etc/apt/sources.list ]; then
        sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list \
            >"$apt/sources.list.d/debian.list"
    else
        die "no Debian apt sources found ($sources or /etc/apt/sources.list)"
    fi
    local opts=(-q -o Dir::Etc::SourceList=/dev/null
                -o "Dir::Etc::SourceParts=$apt/sources.list.d"
                -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
    [ "$(id -u)" = 0 ] && opts+=(-o APT::Sandbox::User=root)
    echo "mbedTLS source: fetching Debian's source package (log: $apt/apt.log)"
    apt-get "${opts[@]}" update >"$apt/apt.log" 2>&1 ||
        die "apt-get update of the deb-src lists failed; see $apt/apt.log"
    (cd "$apt/dl" && apt-get "${opts[@]}" source --download-only mbedtls) \
        >>"$apt/apt.log" 2>&1 ||
        die "apt-get source --download-only mbedtls failed; see $apt/apt.log"
    local dscs=("$apt"/dl/mbedtls_*.dsc) dsc
    dsc=${dscs[0]}
    [ -f "$dsc" ] || die "no mbedtls .dsc downloaded; see $apt/apt.log"
    # apt checked the files against the signed Sources index; dpkg-source
    # may warn that it cannot check the .dsc's own signature.
    # (Into a directory of its own: dpkg-source leaves a copy of the
    # upstream tarball beside the tree it extracts.)
    dpkg-source -x "$dsc" "$apt/x/mbedtls-src" >>"$apt/apt.log" 2>&1 ||
        die "dpkg-source -x $dsc failed; see $apt/apt.log"
    v=$(mbedtls_version "$apt/x/mbedtls-src")
    [ "${v%.*}" = "2.28" ] ||
        die "Debian's mbedtls source is version '$v'; this build needs 2.28 (the crypto port uses the 2.x *_ret API)"
    mv "$apt/x/mbedtls-src" "$src"
    rm -rf "$apt/dl" "$apt/cache" "$apt/lists" "$apt/x"
    echo "mbedTLS source: $src ($v, from $(basename "$dsc"))"
}
fetch_mbedtls

# ---------------------------------------------------------------------
# 2. Host: the test root header and the flash images.
# ---------------------------------------------------------------------
host="$out/host"
mkdir -p "$host"
"$host_cc" -std=c99 -O1 -Wall -Wextra -I"$root/core" -I"$root/lib" \
    -I"$root/ports/mbedtls" -I"$port" -o "$host/mkflash" \
    "$port/mkflash.c" "$port/nb_flash_mem.c" "$root/lib/nb_testpkg.c" \
    "$root/lib/nb_pkgbuild.c" "$root/ports/mbedtls/nb_crypto_mbedtls.c" \
    "$root"/core/*.c -lmbedcrypto ||
    die "building the host tool mkflash failed (needs libmbedtls-dev: run 'make deps')"
"$host/mkflash" --root-header "$host/test_root.h" >/dev/null
if ! cmp -s "$host/test_root.h" "$port/test_root.h"; then
    if [ "${NB_UPDATE_TEST_ROOT:-}" = 1 ]; then
        cp "$host/test_root.h" "$port/test_root.h"
        echo "ports/cortex-m/test_root.h: rewritten from lib/nb_testpkg.c"
    else
        die "ports/cortex-m/test_root.h does not match lib/nb_testpkg.c's test root; run again with NB_UPDATE_TEST_ROOT=1 to rewrite it"
    fi
fi
for t in none signature payload; do
    "$host/mkflash" --flash "$host/flash-$t.bin" --tamper "$t" \
        >"$host/flash-$t.log" || die "mkflash --tamper $t failed"
done
echo "flash images ($host):"
sed 's/^/  /' "$host/flash-none.log"
grep -h tampered "$host"/flash-signature.log "$host"/flash-payload.log |
    sed 's/^/  /'

# ---------------------------------------------------------------------
# 3. Cross-compile and link, once per CPU.
# ---------------------------------------------------------------------
# Run commands in the background, at most $jobs at once; fail if any did.
jobs=$(nproc 2>/dev/null || echo 2)
pids=()
bg() {
    "$@" &
    pids+=($!)
    if [ ${#pids[@]} -ge "$jobs" ]; then
        wait "${pids[0]}" || die "compiling failed: ${*: -1}"
        pids=("${pids[@]:1}")
    fi
}
bg_wait() {
    local p
    for p in "${pids[@]}"; do
        wait "$p" || die "compiling failed (see above)"
    done
    pids=()
}

build_cpu() {
    local cpu=$1 d="$out/$1" f
    rm -rf "$d"
    mkdir -p "$d/obj/core" "$d/obj/mbedtls" "$d/obj/port"
    local common=(-Os -mcpu="$cpu" -mthumb -ffunction-sections
                  -fdata-sections -std=c99)
    local mbed=(-I"$port" -I"$src/include"
                -DMBEDTLS_CONFIG_FILE='"mbedtls_config_nb.h"')
    for f in "$root"/core/*.c; do
        bg "$cc" "${common[@]}" -ffreestanding -Wall -Wextra -I"$root/core" \
            -c "$f" -o "$d/obj/core/$(basename "${f%.c}").o"
    done
    for f in $mbedtls_sig $mbedtls_hash; do
        bg "$cc" "${common[@]}" "${mbed[@]}" \
            -c "$src/library/$f.c" -o "$d/obj/mbedtls/$f.o"
    done
    local portflags=("${common[@]}" "${mbed[@]}" -Wall -Wextra
                     -I"$root/core" -I"$root/ports/mbedtls"
                     -DNB_MBEDTLS_POOL="${pool}u")
    bg "$cc" "${portflags[@]}" -c "$root/ports/mbedtls/nb_crypto_mbedtls.c" \
        -o "$d/obj/port/nb_crypto_mbedtls.o"
    for f in $board; do
        bg "$cc" "${portflags[@]}" -Werror -c "$port/$f.c" \
            -o "$d/obj/port/$f.o"
    done
    bg_wait
    # Core first, then the ports, then mbedTLS: a libc/libgcc member is
    # reported as pulled in by mbedTLS only when nothing before asked.
    "$cc" -mcpu="$cpu" -mthumb -nostdlib -T "$port/mps2.ld" \
        -Wl,--gc-sections -Wl,-Map="$d/nobrick-boot.map" \
        -o "$d/nobrick-boot.elf" "$d"/obj/core/*.o "$d"/obj/port/*.o \
        "$d"/obj/mbedtls/*.o -Wl,--start-group -lc_nano -lgcc \
        -Wl,--end-group ||
        die "linking the $cpu bootloader failed"
}
build_cpu cortex-m4
build_cpu cortex-m3

# ---------------------------------------------------------------------
# 4. Figures (Cortex-M4).
# ---------------------------------------------------------------------
m4="$out/cortex-m4"

# Object files: sum of .text* and of .rodata* sections (one per function
# or object with -ffunction-sections / -fdata-sections).
obj_sizes() { # FILE... -> "text rodata"
    local t=0 r=0 f a b
    for f in "$@"; do
        read -r a b < <("$size" -A "$f" | awk '
            $1 ~ /^\.text/ { t += $2 } $1 ~ /^\.rodata/ { r += $2 }
            END { print t + 0, r + 0 }')
        t=$((t + a))
        r=$((r + b))
    done
    echo "$t $r"
}

# The linker map, per kept input section: group, object, output section
# kind (text, rodata, data, bss) and size. Groups:
#   base  core/ minus manifest, package, cbor     sig  the signature check
#   hash  SHA-256 (mbedTLS and the port's hash)   board  ports/cortex-m
#   rt    libc/libgcc members not pulled in by the signature check
map_rows() {
    awk -v core_sig=" $core_sig " -v mb_hash=" $mbedtls_hash " '
    function hex(s,   i, c, v) {
        s = tolower(s); sub(/^0x/, "", s); v = 0
        for (i = 1; i <= length(s); i++) {
            c = index("0123456789abcdef", substr(s, i, 1)) - 1
            v = v * 16 + c
        }
        return v
    }
    function base(p) { sub(/.*\//, "", p); return p }
    function stem(p) { p = base(p); sub(/\.o$/, "", p); return p }
    # Group of an input section.
    function group(file, sec,   s) {
        if (file ~ /\/obj\/core\//)
            return index(core_sig, " " stem(file) " ") ? "sig" : "base"
        if (file ~ /\/obj\/mbedtls\//)
            return index(mb_hash, " " stem(file) " ") ? "hash" : "sig"
        if (file ~ /\/obj\/port\/nb_crypto_mbedtls\.o$/)
            return sec ~ /ecdsa_p256_verify/ ? "sig" : "hash"
        if (file ~ /\/obj\/port\//)
            return "board"
        if (file ~ /\.a\(/)
            return (file in sigref) ? "sig" : "rt"
        return "other"
    }
    function name(file, sec) {
        if (file ~ /\/obj\/(core|mbedtls|port)\//) {
            n = file; sub(/.*\/obj\//, "", n)
            if (n == "port/nb_crypto_mbedtls.o")
                n = n (sec ~ /ecdsa_p256_verify/ ? ":ecdsa_p256_verify" : ":sha256,init")
            return n
        }
        return base(file)
    }
    function kind(o) {
        if (o == ".text") return "text"
        if (o == ".rodata" || o == ".ARM.exidx") return "rodata"
        if (o == ".data") return "data"
        if (o == ".bss") return "bss"
        return ""
    }
    # Strings (.rodata.*.str1.N) are merged across objects by the linker
    # and the map cannot say whose bytes survived: they get the group
    # "str-" plus their object'"'"'s group, and their pre-merge size.
    function emit(sec, sz, file,   k, g) {
        k = kind(out)
        if (k == "" || sz <= 0)
            return
        g = group(file, sec)
        if (sec ~ /\.str[0-9]/)
            g = "str-" g
        print g, name(file, sec), k, sz
    }
    /^Archive member included/ { arch = 1; next }
    /^(Discarded input sections|Memory Configuration)/ { arch = 0 }
    arch && /^[^ ]/ {
        member = $1
        if (NF >= 2) { ref = $2; resolve() } else want = 1
        next
    }
    arch && want && /^ +[^ ]/ { ref = $1; want = 0; resolve(); next }
    /^Linker script and memory map/ { m = 1; next }
    !m { next }
    /^[^ ]/ { out = $1; next }
    /^ \*fill\*/ { emit("", hex($3), "(fill)"); next }
    /^ [^ *]/ {
        sec = $1
        if (NF >= 4) { emit(sec, hex($3), $4); next }
        if (NF == 1 && (getline line) > 0) {
            split(line, f, " ")
            if (f[3] != "") emit(sec, hex(f[2]), f[3])
        }
    }
    # A member of libc/libgcc counts for the signature check when the
    # object that first asked for it does.
    function resolve(   g) {
        g = group(ref, "")
        if (g == "sig") sigref[member] = 1
    }' "$1"
}

rows="$m4/nobrick-boot.rows"
map_rows "$m4/nobrick-boot.map" >"$rows"

# Linked size of the rows matching an awk condition on $1 (group) and $2
# (object), strings left out: "text rodata".
linked() {
    awk "\$1 !~ /^str-/ && ($1) {
             if (\$3 == \"text\") t += \$4; else if (\$3 == \"rodata\") r += \$4 }
         END { print t + 0, r + 0 }" "$rows"
}

line() { # LABEL "objtext objrodata" "linktext linkrodata"
    local a b c d
    read -r a b <<<"$2"
    read -r c d <<<"$3"
    printf '  %-44s %7s %7s   %7s %7s\n' "$1" "$a" "$b" "$c" "$d"
}

core_objs_base=()
core_objs_sig=()
for f in "$m4"/obj/core/*.o; do
    case " $core_sig " in
        *" $(basename "${f%.o}") "*) core_objs_sig+=("$f") ;;
        *) core_objs_base+=("$f") ;;
    esac
done

echo
echo "Cortex-M4 bootloader (ports/cortex-m, arm-none-eabi-gcc -Os -mcpu=cortex-m4 -mthumb"
echo "-ffunction-sections -fdata-sections; linked with --gc-sections). Bytes; .text is code."
printf '  %-44s %15s   %15s\n' "" "objects" "linked ELF"
printf '  %-44s %7s %7s   %7s %7s\n' "" ".text" ".rodata" ".text" ".rodata"
line "core without manifest/package/cbor" "$(obj_sizes "${core_objs_base[@]}")" \
    "$(linked '$1 == "base"')"
line "core manifest + package + cbor" "$(obj_sizes "${core_objs_sig[@]}")" \
    "$(linked '$2 ~ /^core\// && $1 == "sig"')"
line "core, all" "$(obj_sizes "$m4"/obj/core/*.o)" "$(linked '$2 ~ /^core\//')"
sig_mbed_objs=()
for f in $mbedtls_sig; do
    sig_mbed_objs+=("$m4/obj/mbedtls/$f.o")
    line "  mbedTLS $f.o" "$(obj_sizes "$m4/obj/mbedtls/$f.o")" \
        "$(linked "\$2 == \"mbedtls/$f.o\"")"
done
line "mbedTLS ECDSA verify (the objects above)" "$(obj_sizes "${sig_mbed_objs[@]}")" \
    "$(linked '$2 ~ /^mbedtls\// && $1 == "sig"')"
line "mbedTLS SHA-256 (sha256.o)" "$(obj_sizes "$m4/obj/mbedtls/sha256.o")" \
    "$(linked '$2 == "mbedtls/sha256.o"')"
line "mbedTLS, all" "$(obj_sizes "$m4"/obj/mbedtls/*.o)" "$(linked '$2 ~ /^mbedtls\//')"
line "crypto port: ecdsa_p256_verify" "- -" "$(linked '$2 ~ /ecdsa_p256_verify/')"
line "crypto port: sha256, init, free" "- -" "$(linked '$2 ~ /nb_crypto_mbedtls.o:sha256/')"
line "crypto port (nb_crypto_mbedtls.o)" "$(obj_sizes "$m4/obj/port/nb_crypto_mbedtls.o")" \
    "$(linked '$2 ~ /^port\/nb_crypto_mbedtls/')"
board_objs=()
for f in $board; do board_objs+=("$m4/obj/port/$f.o"); done
line "board port (ports/cortex-m)" "$(obj_sizes "${board_objs[@]}")" \
    "$(linked '$1 == "board"')"
while read -r g obj; do
    label=$obj
    [ "$g" = sig ] && label="$obj, for the signature check"
    line "$label" "- -" "$(linked "\$2 == \"$obj\"")"
done < <(awk '$2 ~ /\.a\(/ { print $1, $2 }' "$rows" | sort -u -k2)
line "alignment fill" "- -" "$(linked '$2 == "(fill)"')"
read -r _ ro_rows < <(linked '1')
ro_sig_str=$(awk '$1 == "str-sig" { t += $4 } END { print t + 0 }' "$rows")
ro_elf=$("$size" -A "$m4/nobrick-boot.elf" |
    awk '$1 == ".rodata" || $1 == ".ARM.exidx" { t += $2 } END { print t + 0 }')
line "strings, merged across objects" "- -" "- $((ro_elf - ro_rows))"
echo "  (the rows above leave strings out of .rodata: the linker merges identical"
echo "  strings across objects, so whose they are is not known after linking)"

echo
echo "linked bootloader, cortex-m4 (${m4#"$root"/}/nobrick-boot.elf):"
"$size" "$m4/nobrick-boot.elf" | sed "s|$root/||; s/^/  /"
"$size" -A "$m4/nobrick-boot.elf" |
    awk '$1 ~ /^\.(text|rodata|ARM\.exidx|data|bss|stack)$/ { printf "    %-12s %7d\n", $1, $2 }'
stack=$("$size" -A "$m4/nobrick-boot.elf" | awk '$1 == ".stack" { print $2 }')
echo "  (bss = .bss + .stack: the mbedTLS pool ($pool), the device state and buffers,"
echo "  and the stack ($stack, mps2.ld))"
m3="$out/cortex-m3"
echo "linked bootloader, cortex-m3 (${m3#"$root"/}/nobrick-boot.elf, for mps2-an385):"
"$size" "$m3/nobrick-boot.elf" | sed "s|$root/||; s/^/  /"
echo
echo "mbedTLS static memory pool: $pool bytes (memory_buffer_alloc; NB_MBEDTLS_POOL)"

read -r sig_text sig_ro < <(linked '$1 == "sig"')
[ "$ro_sig_str" -eq 0 ] ||
    echo "  (strings of the signature-check objects, at most $ro_sig_str bytes, are in the merged strings)"
read -r hash_text hash_ro < <(linked '$1 == "hash"')
echo "added .text for the signature check: $sig_text bytes"
echo "  (+ $sig_ro bytes .rodata = $((sig_text + sig_ro)) bytes of flash; linked, cortex-m4: core"
echo "  manifest/package/cbor, the port's ecdsa_p256_verify, mbedTLS bignum/ecp/ecdsa/asn1/"
echo "  platform/memory_buffer_alloc and the libgcc/libc helpers only they need. SHA-256,"
echo "  which the foundation already needed, is not in it: $hash_text bytes .text + $hash_ro .rodata.)"

# ---------------------------------------------------------------------
# 5. QEMU.
# ---------------------------------------------------------------------
echo
if ! command -v qemu-system-arm >/dev/null 2>&1; then
    echo "QEMU: qemu-system-arm not found (package qemu-system-arm): not run"
    exit 0
fi
machines=$(qemu-system-arm -M help 2>/dev/null || true)
failed=0
# run MACHINE ELF FLASH NAME EXPECTED-LINE...
run() {
    local mach=$1 elf=$2 flash=$3 name=$4 log rc=0 want
    shift 4
    if ! grep -q "^$mach " <<<"$machines"; then
        echo "QEMU: machine $mach not available: $name not run"
        return
    fi
    log="$out/qemu-$name.log"
    echo "QEMU $mach, $name:"
    timeout 120 qemu-system-arm -M "$mach" -nographic -monitor none \
        -serial none -semihosting-config enable=on,target=native \
        -kernel "$elf" \
        -device loader,file="$flash",addr=0x00100000,force-raw=on \
        >"$log" 2>&1 || rc=$?
    sed 's/^/  /' "$log"
    for want in "$@"; do
        if ! grep -qxF "$want" "$log"; then
            echo "  FAILED: expected the line '$want' (exit status $rc)"
            failed=1
            return
        fi
    done
    [ "$rc" -eq 0 ] || { echo "  FAILED: exit status $rc"; failed=1; }
}
run mps2-an386 "$m4/nobrick-boot.elf" "$host/flash-none.bin" cortex-m4-intact \
    "nobrick: slot 1 TRIAL version 1.1.0" \
    "nobrick: booting slot 1 version 1.1.0"
run mps2-an386 "$m4/nobrick-boot.elf" "$host/flash-signature.bin" cortex-m4-bad-signature \
    "nobrick: slot 1 REJECTED version 1.1.0: NB_ERR_SIGNATURE" \
    "nobrick: booting slot 0 version 1.0.0"
run mps2-an386 "$m4/nobrick-boot.elf" "$host/flash-payload.bin" cortex-m4-bad-payload \
    "nobrick: slot 1 REJECTED version 1.1.0: NB_ERR_DIGEST" \
    "nobrick: booting slot 0 version 1.0.0"
run mps2-an385 "$m3/nobrick-boot.elf" "$host/flash-none.bin" cortex-m3-intact \
    "nobrick: slot 1 TRIAL version 1.1.0" \
    "nobrick: booting slot 1 version 1.1.0"
if [ "$failed" -ne 0 ]; then
    echo "arm-bootloader: FAILED: a QEMU run did not print what it should" >&2
    exit 1
fi
peak=$(sed -n 's/.*mbedTLS pool used \([0-9]*\) of.*/\1/p' \
    "$out/qemu-cortex-m4-intact.log" 2>/dev/null | head -1)
[ -n "$peak" ] && echo "mbedTLS pool peak in QEMU (cortex-m4): $peak of $pool bytes"
echo "arm-bootloader: ok"
