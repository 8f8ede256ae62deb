# tests/support/swupdate.sh - drive a real SWUpdate (suricatta, hawkBit
# mode) from a test script. Sourced, not run: `. tests/support/swupdate.sh`.
#
# What it gives (every function returns non-zero and says why on stderr
# when something fails; nothing here kills a process it did not start):
#
#   swu_available               0 when swupdate, openssl and cpio exist
#   swu_make_cert DIR           DIR/swu-cert.pem + DIR/swu-key.pem: a
#                               throwaway self-signed P-256 certificate
#                               (no CA) with extendedKeyUsage
#                               emailProtection, the purpose SWUpdate
#                               checks by default
#   swu_build OUT PAYLOAD DEVICE REV VERSION CERT KEY
#                               OUT: a CMS-signed .swu (cpio -H crc of
#                               sw-description, sw-description.sig,
#                               payload.bin) whose one image goes through
#                               the `raw` handler into DEVICE (a path that
#                               must exist when SWUpdate installs), for
#                               hardware revision REV
#   swu_config CFG [IDENTIFY...]
#                               a swupdate configuration file: logging,
#                               bootloader "none" (environment in RAM) and
#                               an `identify` list sent by suricatta as
#                               hawkBit configData; each IDENTIFY is
#                               NAME=VALUE
#   swu_start LOG CFG BOARD:REV CERT TENANT URL DEVICE [SURICATTA_ARGS...]
#                               starts swupdate in the background with its
#                               hawkBit client: -u "-t TENANT -u URL -i
#                               DEVICE -p 2 SURICATTA_ARGS" (pass
#                               `-k TOKEN` for a target token, `-g TOKEN`
#                               for a gateway token, `-c 2` to confirm a
#                               finished update at start); output to LOG,
#                               PID in SWU_PID; TMPDIR is a private
#                               directory next to LOG so several instances
#                               do not share IPC sockets
#   swu_stop                    stops the instance in SWU_PID and its
#                               helper processes (its process group: TERM,
#                               then KILL after 5 s) and waits for it
#
# SWUpdate refuses an unsigned or wrongly signed .swu, one whose
# hardware-compatibility does not list its -H revision, and one whose
# image has no sha256 (docs/hawkbit.md; /work/shared/ENVIRONMENT.md).

swu_available() {
    command -v swupdate >/dev/null 2>&1 &&
        command -v openssl >/dev/null 2>&1 &&
        command -v cpio >/dev/null 2>&1
}

swu_make_cert() {
    local dir=$1
    mkdir -p "$dir" || return 1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -nodes -days 2 -subj "/CN=nobrick swu test signer" \
        -addext "extendedKeyUsage=emailProtection" \
        -addext "keyUsage=digitalSignature" \
        -keyout "$dir/swu-key.pem" -out "$dir/swu-cert.pem" \
        >"$dir/swu-cert.log" 2>&1 || {
        echo "swu_make_cert: openssl failed:" >&2
        cat "$dir/swu-cert.log" >&2
        return 1
    }
}

swu_build() {
    local out=$1 payload=$2 device=$3 rev=$4 version=$5 cert=$6 key=$7
    local work sha
    work=$(mktemp -d "${out}.work.XXXXXX") || return 1
    cp "$payload" "$work/payload.bin" || return 1
    sha=$(sha256sum "$work/payload.bin" | cut -d' ' -f1)
    cat >"$work/sw-description" <<EOF
software =
{
	version = "$version";
	description = "nobrick test image";
	hardware-compatibility: [ "$rev" ];
	images: (
		{
			filename = "payload.bin";
			type = "raw";
			device = "$device";
			sha256 = "$sha";
		}
	);
}
EOF
    openssl cms -sign -in "$work/sw-description" \
        -out "$work/sw-description.sig" -signer "$cert" -inkey "$key" \
        -outform DER -nosmimecap -binary 2>"$work/sign.log" || {
        echo "swu_build: signing failed:" >&2
        cat "$work/sign.log" >&2
        return 1
    }
    # sw-description must be first and its signature second.
    (cd "$work" &&
        printf '%s\n' sw-description sw-description.sig payload.bin |
        cpio -o -H crc --quiet) >"$out" || {
        echo "swu_build: cpio failed" >&2
        return 1
    }
    rm -rf "$work"
}

swu_config() {
    local cfg=$1 first=1 kv
    shift
    {
        printf 'globals :\n{\n\tverbose = true;\n\tloglevel = 6;\n'
        printf '\tsyslog = false;\n\tbootloader = "none";\n};\n'
        if [ $# -gt 0 ]; then
            printf 'identify : (\n'
            for kv in "$@"; do
                [ $first -eq 1 ] || printf ',\n'
                first=0
                printf '\t{ name = "%s"; value = "%s"; }' "${kv%%=*}" "${kv#*=}"
            done
            printf '\n);\n'
        fi
    } >"$cfg"
}

SWU_PID=

swu_start() {
    local log=$1 cfg=$2 hw=$3 cert=$4 tenant=$5 url=$6 device=$7
    shift 7
    local tmp
    tmp="$(dirname "$log")/swu-tmp.$device"
    mkdir -p "$tmp" || return 1
    # setsid: its own process group, so swu_stop can end swupdate's
    # helper processes (suricatta, downloader) with it. Started from a
    # non-interactive shell, setsid execs swupdate in place: $! is its PID.
    TMPDIR=$tmp setsid swupdate -f "$cfg" -H "$hw" -k "$cert" -v \
        -u "-t $tenant -u $url -i $device -p 2 $*" \
        </dev/null >"$log" 2>&1 &
    SWU_PID=$!
    sleep 0.3
    if ! kill -0 "$SWU_PID" 2>/dev/null; then
        echo "swu_start: swupdate exited at once:" >&2
        tail -n 30 "$log" >&2
        SWU_PID=
        return 1
    fi
}

swu_stop() {
    local pid=$SWU_PID i
    [ -n "$pid" ] || return 0
    SWU_PID=
    # The group led by the swupdate we started (see swu_start).
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null ||
        return 0
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
