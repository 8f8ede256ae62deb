#!/usr/bin/env bash
# One cell of the power-cut sweep matrix: a layout, a flash shape and a cut
# mode, over write sizes 1, 8 and 32 (erase value 0xFF, and 0x00 once).
#   matrix.sh LAYOUT SHAPE cut|torn
# NOBRICK_SANITIZE=1 (ASan build) runs write size 8 only; NOBRICK_SOAK=1
# adds --double (a second cut at every point of the recovery) and more
# seeds.
set -euo pipefail
layout=$1 shape=$2 mode=$3
sim=${NOBRICK_SIM:?NOBRICK_SIM must name the nobrick-sim binary}
flags=()
[ "$mode" = torn ] && flags+=(--torn)
sizes=(1 8 32)
seeds=(1)
[ "${NOBRICK_SANITIZE:-0}" = 1 ] && sizes=(8)
if [ "${NOBRICK_SOAK:-0}" = 1 ]; then
    flags+=(--double)
    seeds=(1 2 3 4 5)
fi
status=0
run() {
    local out
    if ! out=$("$sim" sweep "$@" 2>&1); then
        status=1
    fi
    printf '%s\n' "$out"
}
for seed in "${seeds[@]}"; do
    for ws in "${sizes[@]}"; do
        run --layout "$layout" --shape "$shape" --write-size "$ws" \
            --seed "$seed" "${flags[@]}"
    done
    # Erased value 0x00 (some NOR and most eMMC-style parts).
    run --layout "$layout" --shape "$shape" --write-size 8 \
        --erase-value 0x00 --seed "$seed" "${flags[@]}"
done
exit $status
