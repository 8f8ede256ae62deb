#!/usr/bin/env bash
# arm-core-check.sh - build core/ for Cortex-M4 as the bootloader would
# (-Os, freestanding), check that it needs nothing from outside but the
# mem* functions (the port interfaces are function pointers, not symbols),
# and print its code size.
#
# usage: scripts/arm-core-check.sh [OUT_DIR]   (default: build-arm)
# env:   ARM_PREFIX (default arm-none-eabi-), ARM_EXTRA_CFLAGS
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-"$root/build-arm"}
prefix=${ARM_PREFIX:-arm-none-eabi-}
cc=${prefix}gcc
ld=${prefix}ld
nm=${prefix}nm
size=${prefix}size

allowed_undef="memcpy memset memcmp memmove"
cflags=(-Os -ffreestanding -mcpu=cortex-m4 -mthumb -std=c99
        -Wall -Wextra -Werror -fdata-sections -ffunction-sections
        -fstack-usage -I"$root/core")
# shellcheck disable=SC2206
extra=(${ARM_EXTRA_CFLAGS:-})

for tool in "$cc" "$ld" "$nm" "$size"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "arm-core-check: $tool not found; run 'make deps' (package gcc-arm-none-eabi)" >&2
        exit 1
    fi
done

shopt -s nullglob
srcs=("$root"/core/*.c)
if [ ${#srcs[@]} -eq 0 ]; then
    echo "arm-core-check: no core/*.c yet; nothing to check"
    exit 0
fi

rm -rf "$out"
mkdir -p "$out"

objs=()
for src in "${srcs[@]}"; do
    obj="$out/$(basename "${src%.c}").o"
    "$cc" "${cflags[@]}" "${extra[@]}" -c "$src" -o "$obj"
    objs+=("$obj")
done

core="$out/nb_core.o"
"$ld" -r -o "$core" "${objs[@]}"

# Undefined symbols of the whole core, after its objects resolved each other.
bad=()
while read -r _ sym; do
    case " $allowed_undef " in
        *" $sym "*) ;;
        *) bad+=("$sym") ;;
    esac
done < <("$nm" -u "$core")
if [ ${#bad[@]} -ne 0 ]; then
    echo "arm-core-check: FAILED: core needs symbols a bare-metal target does not have:" >&2
    for sym in "${bad[@]}"; do
        users=$("$nm" -u -A "${objs[@]}" | awk -v s="$sym" '$NF == s { sub(/:.*/, "", $1); n = split($1, p, "/"); print p[n] }' | sort -u | tr '\n' ' ')
        echo "  $sym  (used by: ${users% })" >&2
    done
    echo "  allowed: $allowed_undef" >&2
    exit 1
fi

# Sum of the .text* sections (one per function with -ffunction-sections).
text_of() {
    "$size" -A "$1" | awk '$1 ~ /^\.text/ { t += $2 } END { print t + 0 }'
}
rodata_of() {
    "$size" -A "$1" | awk '$1 ~ /^\.rodata/ { t += $2 } END { print t + 0 }'
}

echo "core objects (cortex-m4, -Os):"
printf '  %-24s %8s %8s\n' object .text .rodata
for obj in "${objs[@]}"; do
    printf '  %-24s %8d %8d\n' "$(basename "$obj")" "$(text_of "$obj")" "$(rodata_of "$obj")"
done
total=$(text_of "$core")
rodata=$(rodata_of "$core")
echo "core .text (cortex-m4, -Os): $total bytes (+ $rodata bytes .rodata)"

# Largest single stack frame (not the call-graph depth).
if compgen -G "$out/*.su" >/dev/null; then
    cat "$out"/*.su | sort -t$'\t' -k2,2n | tail -1 |
        awk -F'\t' '{ n = split($1, a, ":"); printf "core largest stack frame: %s bytes (%s, %s)\n", $2, a[n], $3 }'
fi
echo "arm-core-check: ok (undefined symbols only: ${allowed_undef// /, })"
