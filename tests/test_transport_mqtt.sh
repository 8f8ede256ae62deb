#!/usr/bin/env bash
# test_transport_mqtt.sh - the MQTT transport (ports/mqtt) and its serving
# side (lib/nb_mqtt_serve.c) against real mosquitto brokers on 127.0.0.1,
# started here:
#   broker 1: a plain listener, a TLS one (a certificate for 127.0.0.1
#             made here by openssl, and an unrelated one playing a wrong
#             CA), and one with user names, passwords and an ACL;
#             build/tests/mqtt_responder serves a temporary directory on
#             the plain one;
#   broker 2: plain; the test program kills it in the middle of a range.
# Then it runs build/tests/mqtt_transport_test
# (tests/mqtt/mqtt_transport_test.c), which also plays misbehaving servers
# in-process. Then broker 1 restarts, the responder must reconnect by
# itself and serve again; finally the responder is stopped and its
# counters checked.
#
# Ports: random high ports, checked free; a broker that still fails to
# start is retried on other ports. Everything started here is killed on
# exit (trap).
#
# Needs (make deps): mosquitto, libmosquitto-dev, libjansson-dev, openssl.
set -euo pipefail

BUILD=${NOBRICK_BUILD:-}
PROG=$BUILD/tests/mqtt_transport_test
RESPONDER=$BUILD/tests/mqtt_responder
for p in "$PROG" "$RESPONDER"; do
    if [ -z "$BUILD" ] || [ ! -x "$p" ]; then
        echo "test_transport_mqtt: $p is not built (NOBRICK_BUILD=$BUILD)" >&2
        exit 1
    fi
done
export PATH="$PATH:/usr/sbin:/sbin"
for tool in mosquitto openssl; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "test_transport_mqtt: $tool not found (run make deps)" >&2
        exit 1
    fi
done

T=$(mktemp -d)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run as root, mosquitto drops to the user "mosquitto": it must be able to
# read its configuration and the certificates.
mkdir -p "$T/www"
chmod 755 "$T"

for name in server other; do
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
        -keyout "$T/$name.key" -out "$T/$name.pem" \
        -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
        >"$T/openssl.log" 2>&1 || { cat "$T/openssl.log" >&2; exit 1; }
done
chmod 644 "$T"/*.key "$T"/*.pem

port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_port() {
    local p
    while :; do
        p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
        if ! port_busy "$p" && ! port_busy $((p + 1)); then
            echo "$p"
            return
        fi
    done
}

# Wait until `pid` listens on every port given; 1 if it died or took
# more than 10 s.
wait_ready() {
    local pid=$1 port
    shift
    for _ in $(seq 1 200); do
        kill -0 "$pid" 2>/dev/null || return 1
        local all=1
        for port in "$@"; do
            port_busy "$port" || { all=0; break; }
        done
        [ $all -eq 1 ] && return 0
        sleep 0.05
    done
    return 1
}

# Users of the authenticating listener: "dev" may use every device topic,
# "noreq" may not publish requests, "nodata" may not read data.
mosquitto_passwd -c -b "$T/passwd" dev secret >/dev/null
mosquitto_passwd -b "$T/passwd" noreq secret >/dev/null
mosquitto_passwd -b "$T/passwd" nodata secret >/dev/null
printf '%s\n' "user dev" "topic readwrite nobrick/#" \
    "user noreq" "topic read nobrick/#" \
    "user nodata" "topic write nobrick/+/req" >"$T/acl"
chmod 644 "$T/passwd" "$T/acl"

# start_broker NAME PORT [TLS_PORT AUTH_PORT]: sets BROKER_PID. Broker 1
# also has a TLS listener and one that wants a user name and password.
start_broker() {
    local name=$1 port=$2 tls=${3:-} auth=${4:-}
    {
        echo "per_listener_settings true"
        echo "persistence false"
        echo "listener $port 127.0.0.1"
        echo "allow_anonymous true"
        if [ -n "$tls" ]; then
            echo "listener $tls 127.0.0.1"
            echo "allow_anonymous true"
            echo "certfile $T/server.pem"
            echo "keyfile $T/server.key"
            echo "listener $auth 127.0.0.1"
            echo "allow_anonymous false"
            echo "password_file $T/passwd"
            echo "acl_file $T/acl"
        fi
    } >"$T/$name.conf"
    chmod 644 "$T/$name.conf"
    mosquitto -c "$T/$name.conf" >"$T/$name.log" 2>&1 &
    BROKER_PID=$!
    PIDS+=("$BROKER_PID")
    if [ -n "$tls" ]; then
        wait_ready "$BROKER_PID" "$port" "$tls" "$auth"
    else
        wait_ready "$BROKER_PID" "$port"
    fi
}

started=0
for attempt in 1 2 3 4 5; do
    P1=$(pick_port)
    P1TLS=$((P1 + 1))
    P1AUTH=$(pick_port)
    P2=$(pick_port)
    if start_broker b1 "$P1" "$P1TLS" "$P1AUTH" && B1=$BROKER_PID &&
       start_broker b2 "$P2" && B2=$BROKER_PID; then
        started=1
        break
    fi
    echo "test_transport_mqtt: brokers did not start (attempt $attempt)," \
         "retrying on other ports" >&2
    for f in b1.log b2.log; do
        [ -s "$T/$f" ] && sed "s|^|  $f: |" "$T/$f" >&2
    done
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
done
if [ $started -ne 1 ]; then
    echo "test_transport_mqtt: could not start mosquitto" >&2
    exit 1
fi
: "$B1"

# A port nothing listens on (picked, then left alone).
DEAD=$(pick_port)

"$RESPONDER" --port "$P1" --dir "$T/www" --ready "$T/ready" --log 1 \
    >"$T/responder.out" 2>"$T/responder.err" &
RESP_PID=$!
PIDS+=("$RESP_PID")
for _ in $(seq 1 200); do
    [ -e "$T/ready" ] && break
    kill -0 "$RESP_PID" 2>/dev/null || break
    sleep 0.05
done
if [ ! -e "$T/ready" ]; then
    echo "test_transport_mqtt: the responder did not subscribe" >&2
    sed 's|^|  responder: |' "$T/responder.err" >&2
    exit 1
fi

rc=0
echo "(broker 2 is killed by the test program on purpose; bash says 'Killed')"
NB_MQTT_PORT=$P1 NB_MQTT_TLS_PORT=$P1TLS NB_MQTT_AUTH_PORT=$P1AUTH \
NB_MQTT_PORT2=$P2 NB_MQTT_PID2=$B2 \
NB_MQTT_DEAD_PORT=$DEAD NB_MQTT_DIR=$T/www NB_MQTT_CA=$T/server.pem \
NB_MQTT_OTHER_CA=$T/other.pem \
    "$PROG" || rc=$?
{ wait "$B2"; } 2>/dev/null || true # killed by the program

# Broker 1 restarts: the responder reconnects by itself and serves again.
rm -f "$T/ready"
kill "$B1"
wait "$B1" 2>/dev/null || true
mosquitto -c "$T/b1.conf" >>"$T/b1.log" 2>&1 &
B1=$!
PIDS+=("$B1")
if ! wait_ready "$B1" "$P1" "$P1TLS" "$P1AUTH"; then
    echo "test_transport_mqtt: broker 1 did not restart" >&2
    rc=1
else
    for _ in $(seq 1 200); do
        [ -e "$T/ready" ] && break
        sleep 0.05
    done
    if [ ! -e "$T/ready" ]; then
        echo "test_transport_mqtt: the responder did not reconnect" >&2
        rc=1
    else
        NB_MQTT_ONLY=ranges \
        NB_MQTT_PORT=$P1 NB_MQTT_TLS_PORT=$P1TLS NB_MQTT_AUTH_PORT=$P1AUTH \
        NB_MQTT_PORT2=$P2 \
        NB_MQTT_PID2=0 NB_MQTT_DEAD_PORT=$DEAD NB_MQTT_DIR=$T/www \
        NB_MQTT_CA=$T/server.pem NB_MQTT_OTHER_CA=$T/other.pem \
            "$PROG" || rc=$?
    fi
fi

# The responder ends cleanly on SIGTERM and reports what it did: it
# refused malformed requests, replaced abandoned streams, reconnected.
kill -TERM "$RESP_PID"
wait "$RESP_PID" || { echo "test_transport_mqtt: responder exit $?" >&2; rc=1; }
stats=$(cat "$T/responder.out")
echo "responder: $stats"
case $stats in
    *'"malformed":'[1-9]*'"replaced":'[1-9]*'"connects":'[2-9]*) ;;
    *) echo "test_transport_mqtt: responder counters: $stats" >&2; rc=1 ;;
esac
if [ $rc -ne 0 ]; then
    for f in responder.err b1.log b2.log; do
        [ -s "$T/$f" ] && tail -n 40 "$T/$f" | sed "s|^|  $f: |" >&2
    done
fi
exit $rc
