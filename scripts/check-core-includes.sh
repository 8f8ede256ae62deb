#!/usr/bin/env bash
# check-core-includes.sh - the core is freestanding C99: fail if any
# core/*.c or core/*.h includes a header other than the few allowed libc
# ones (<stdint.h>, <stddef.h>, <string.h> for mem*) or a core header
# "nb_*.h" that exists in core/ (so a port header cannot sneak in).
#
# usage: scripts/check-core-includes.sh [CORE_DIR]   (default: core)
set -euo pipefail

core_dir=${1:-"$(cd "$(dirname "$0")/.." && pwd)/core"}
# The one list of libc headers the core may use.
allowed_system="stdint.h stddef.h string.h"

bad=0
shopt -s nullglob
for f in "$core_dir"/*.c "$core_dir"/*.h; do
    lineno=0
    while IFS= read -r line || [ -n "$line" ]; do
        lineno=$((lineno + 1))
        # Directives may have blanks around '#'.
        [[ $line =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*(.*)$ ]] || continue
        arg=${BASH_REMATCH[1]}
        if [[ $arg =~ ^\<([^>]+)\> ]]; then
            hdr=${BASH_REMATCH[1]}
            case " $allowed_system " in
                *" $hdr "*) continue ;;
            esac
            echo "$f:$lineno: core may not include <$hdr> (allowed: $allowed_system)" >&2
            bad=1
        elif [[ $arg =~ ^\"([^\"]+)\" ]]; then
            hdr=${BASH_REMATCH[1]}
            if [[ $hdr =~ ^nb_[A-Za-z0-9_]*\.h$ ]] && [ -f "$core_dir/$hdr" ]; then
                continue
            fi
            echo "$f:$lineno: core may include only its own \"nb_*.h\" headers, not \"$hdr\"" >&2
            bad=1
        else
            echo "$f:$lineno: core include must be a literal <...> or \"...\": $arg" >&2
            bad=1
        fi
    done < "$f"
done

if [ "$bad" -ne 0 ]; then
    echo "core include check FAILED: core/ must stay freestanding (see DESIGN.md)" >&2
    exit 1
fi
echo "core include check: ok"
