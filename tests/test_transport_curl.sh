#!/usr/bin/env bash
# test_transport_curl.sh - the libcurl transport (ports/curl) against real
# servers on 127.0.0.1, started here: nginx (HTTP and HTTPS, package
# nginx-light) and two vsftpd instances (anonymous read-only FTP, and the
# same with TLS required: explicit FTPS), all serving one temporary
# directory, with a self-signed certificate made here by openssl. Then it
# runs build/tests/curl_transport_test (tests/curl/curl_transport_test.c),
# which also starts its own misbehaving HTTP servers (silent, stalling,
# ignoring Range, endless) in-process.
#
# Ports: random high ports, checked free, and a server that still fails to
# start is retried on other ports. Every server is killed on exit (trap),
# and runs under `timeout` as well, so that none outlives a test killed
# with SIGKILL by more than SERVER_LIFETIME seconds.
#
# Needs (make deps): nginx-light, vsftpd, openssl, libcurl4-openssl-dev.
set -euo pipefail

BUILD=${NOBRICK_BUILD:-}
PROG=$BUILD/tests/curl_transport_test
if [ -z "$BUILD" ] || [ ! -x "$PROG" ]; then
    echo "test_transport_curl: $PROG is not built (NOBRICK_BUILD=$BUILD)" >&2
    exit 1
fi
for tool in nginx vsftpd openssl; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        echo "test_transport_curl: $tool not found (run make deps)" >&2
        exit 1
    fi
done
export PATH="$PATH:/usr/sbin:/sbin"
# Every peer is on 127.0.0.1: no proxy from the environment may intervene.
unset http_proxy https_proxy ftp_proxy all_proxy HTTPS_PROXY FTP_PROXY \
    ALL_PROXY no_proxy NO_PROXY

SERVER_LIFETIME=300
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

mkdir -p "$T/www" "$T/empty" "$T/nginx"
chmod 755 "$T" "$T/www"

# Certificates: the servers' (named 127.0.0.1), and an unrelated one that
# plays a wrong CA.
for name in server other; do
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
        -keyout "$T/$name.key" -out "$T/$name.pem" \
        -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
        >"$T/openssl.log" 2>&1 || { cat "$T/openssl.log" >&2; exit 1; }
done

port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A random port in [20000, 60000) that nothing listens on (and its
# neighbour, for servers that take two).
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

start_nginx() {
    local http=$1 https=$2
    cat >"$T/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $T/nginx/error.log warn;
pid $T/nginx/nginx.pid;
events { worker_connections 128; }
http {
    access_log off;
    client_body_temp_path $T/nginx/body;
    proxy_temp_path $T/nginx/proxy;
    fastcgi_temp_path $T/nginx/fastcgi;
    uwsgi_temp_path $T/nginx/uwsgi;
    scgi_temp_path $T/nginx/scgi;
    default_type application/octet-stream;
    absolute_redirect off;
    server {
        listen 127.0.0.1:$http;
        listen 127.0.0.1:$https ssl;
        ssl_certificate $T/server.pem;
        ssl_certificate_key $T/server.key;
        root $T/www;
        location /denied/ { deny all; }
        location = /gone { return 410; }
        location = /auth { return 401; }
        location = /err { return 500; }
        location = /teapot { return 418; }
        location = /moved { return 302 /big.bin; }
        location /private/ {
            if (\$http_authorization != "Bearer s3cret") { return 401; }
        }
    }
}
EOF
    timeout "$SERVER_LIFETIME" nginx -e "$T/nginx/error.log" -c "$T/nginx/nginx.conf" -p "$T/nginx" \
        >"$T/nginx/out.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_ready "$NGINX_PID" "$http" "$https"
}

# start_vsftpd NAME PORT PASV_MIN TLS(0|1)
start_vsftpd() {
    local name=$1 port=$2 pasv=$3 tls=$4
    cat >"$T/$name.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$port
background=NO
anonymous_enable=YES
local_enable=NO
write_enable=NO
anon_root=$T/www
no_anon_password=YES
run_as_launching_user=YES
secure_chroot_dir=$T/empty
pasv_enable=YES
pasv_address=127.0.0.1
pasv_min_port=$pasv
pasv_max_port=$((pasv + 99))
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
xferlog_enable=NO
syslog_enable=NO
vsftpd_log_file=$T/$name.log
EOF
    if [ "$tls" = 1 ]; then
        cat >>"$T/$name.conf" <<EOF
ssl_enable=YES
allow_anon_ssl=YES
force_anon_logins_ssl=YES
force_anon_data_ssl=YES
rsa_cert_file=$T/server.pem
rsa_private_key_file=$T/server.key
EOF
    fi
    timeout "$SERVER_LIFETIME" vsftpd "$T/$name.conf" >"$T/$name.out" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_ready "$pid" "$port"
}

started=0
for attempt in 1 2 3 4 5; do
    HTTP_PORT=$(pick_port)
    HTTPS_PORT=$((HTTP_PORT + 1))
    FTP_PORT=$(pick_port)
    FTPS_PORT=$((FTP_PORT + 1))
    PASV=$(( 20000 + (RANDOM % 400) * 100 ))
    if start_nginx "$HTTP_PORT" "$HTTPS_PORT" &&
       start_vsftpd ftp "$FTP_PORT" "$PASV" 0 &&
       start_vsftpd ftps "$FTPS_PORT" $((PASV + 100)) 1; then
        started=1
        break
    fi
    echo "test_transport_curl: servers did not start (attempt $attempt)," \
         "retrying on other ports" >&2
    for f in nginx/out.log nginx/error.log ftp.out ftps.out; do
        [ -s "$T/$f" ] && sed "s|^|  $f: |" "$T/$f" >&2
    done
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
done
if [ $started -ne 1 ]; then
    echo "test_transport_curl: could not start nginx and vsftpd" >&2
    exit 1
fi
echo "nginx http :$HTTP_PORT https :$HTTPS_PORT;" \
     "vsftpd ftp :$FTP_PORT ftps :$FTPS_PORT (pasv $PASV-$((PASV + 199)))"

rc=0
NBT_DIR=$T/www \
NBT_HTTP=http://127.0.0.1:$HTTP_PORT \
NBT_HTTPS=https://127.0.0.1:$HTTPS_PORT \
NBT_FTP=ftp://127.0.0.1:$FTP_PORT \
NBT_FTPS=ftp://127.0.0.1:$FTPS_PORT \
NBT_CA=$T/server.pem \
NBT_OTHER_CA=$T/other.pem \
    "$PROG" &
# In the background and waited for, so a TERM reaches the traps at once.
PIDS+=("$!")
wait "$!" || rc=$?
if [ $rc -ne 0 ]; then
    echo "test_transport_curl: FAILED (exit $rc); server logs:" >&2
    for f in nginx/error.log ftp.log ftps.log ftp.out ftps.out; do
        [ -s "$T/$f" ] && tail -n 20 "$T/$f" | sed "s|^|  $f: |" >&2
    done
fi
exit $rc
