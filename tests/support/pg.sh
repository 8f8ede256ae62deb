# shellcheck shell=bash
# tests/support/pg.sh - a private PostgreSQL cluster for a test script.
# Sourced (not run, and not named test_*.sh so ctest does not run it):
#
#   source "$NOBRICK_SRC/tests/support/pg.sh"
#   nb_pg_require          # no PostgreSQL here: print SKIPPED, exit 0
#   nb_pg_start            # cluster up; exports NB_TEST_DB (database "nobrick")
#   url=$(nb_pg_createdb other)   # a further, empty database; prints its URL
#   ...                    # nb_pg_stop runs on exit (EXIT trap)
#
# The cluster lives in a temporary directory, listens on 127.0.0.1 only on
# a free high port (and a Unix socket inside that directory), trusts local
# connections for the superuser "nb", and is stopped (immediate) and
# removed on exit. PostgreSQL refuses to run as root: as root, the
# directory is given to the user "postgres" and the server commands run
# through runuser; as anyone else they run as that user.
#
# nb_pg_start sets `trap nb_pg_stop EXIT` (and makes INT/TERM exit, so the
# trap runs). A script that needs an EXIT trap of its own calls nb_pg_stop
# from it: nb_pg_stop may be called any number of times.
#
# Environment: NB_PG_BIN overrides the directory of initdb/pg_ctl
# (default: /usr/lib/postgresql/15/bin, else the newest
# /usr/lib/postgresql/*/bin, else pg_config --bindir).

NB_PG_DIR=        # temporary directory: data/, the socket, log
NB_PG_PORT=
NB_PG_STARTED=0

nb_pg__log() {
    echo "pg.sh: $*" >&2
}

# Finds initdb and pg_ctl; sets NB_PG_BIN. Returns 1 if they are missing.
nb_pg__find_bin() {
    local d
    if [ -n "${NB_PG_BIN:-}" ]; then
        [ -x "$NB_PG_BIN/initdb" ] && [ -x "$NB_PG_BIN/pg_ctl" ]
        return
    fi
    for d in /usr/lib/postgresql/15/bin \
             $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) \
             "$(pg_config --bindir 2>/dev/null)"; do
        if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            NB_PG_BIN=$d
            return 0
        fi
    done
    return 1
}

# Runs a server command as the cluster's owner.
nb_pg__as_owner() {
    if [ "$(id -u)" = 0 ]; then
        (cd "$NB_PG_DIR" && runuser -u postgres -- "$@")
    else
        (cd "$NB_PG_DIR" && "$@")
    fi
}

# Skips the calling script (exit 0, one SKIPPED line, as the other
# scripts of tests/ do) when PostgreSQL cannot be run here.
nb_pg_require() {
    local who=${1:-$(basename "$0" .sh)}
    if ! nb_pg__find_bin; then
        echo "$who: SKIPPED: PostgreSQL server binaries (initdb, pg_ctl) not found" \
             "(install postgresql: make deps, or set NB_PG_BIN)"
        exit 0
    fi
    if [ "$(id -u)" = 0 ] && ! id -u postgres >/dev/null 2>&1; then
        echo "$who: SKIPPED: running as root and there is no user 'postgres'" \
             "to run the server as"
        exit 0
    fi
    if [ "$(id -u)" = 0 ] && ! command -v runuser >/dev/null 2>&1; then
        echo "$who: SKIPPED: running as root without runuser"
        exit 0
    fi
}

# 0 if nothing accepts connections on 127.0.0.1:$1.
nb_pg__port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

nb_pg_stop() {
    if [ "$NB_PG_STARTED" = 1 ] && [ -n "$NB_PG_DIR" ]; then
        nb_pg__as_owner "$NB_PG_BIN/pg_ctl" -D "$NB_PG_DIR/data" -m immediate \
            -w -t 30 stop >/dev/null 2>&1 || true
        NB_PG_STARTED=0
    fi
    if [ -n "$NB_PG_DIR" ] && [ -d "$NB_PG_DIR" ]; then
        rm -rf "$NB_PG_DIR"
    fi
    NB_PG_DIR=
}

# Starts the cluster and creates the database "nobrick"; exports
# NB_TEST_DB, NB_PG_PORT and NB_PG_DIR. Returns 1 (with the server's log
# on stderr) if it does not come up.
nb_pg_start() {
    nb_pg__find_bin || { nb_pg__log "PostgreSQL binaries not found"; return 1; }
    NB_PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/nb-pg.XXXXXX") || return 1
    trap nb_pg_stop EXIT
    trap 'exit 130' INT TERM
    if [ "$(id -u)" = 0 ]; then
        # The server runs as postgres: it must own its directory, and
        # reach it (mktemp's directory is 0700).
        chown postgres: "$NB_PG_DIR"
        chmod 0700 "$NB_PG_DIR"
    fi

    if ! nb_pg__as_owner "$NB_PG_BIN/initdb" -D "$NB_PG_DIR/data" -A trust -U nb \
            -E UTF8 --locale=C >"$NB_PG_DIR/initdb.log" 2>&1; then
        nb_pg__log "initdb failed:"
        cat "$NB_PG_DIR/initdb.log" >&2
        return 1
    fi

    # A free port; a port taken between the check and the start (another
    # test) makes pg_ctl fail: try a few.
    local port
    for _ in 1 2 3 4 5 6 7 8; do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        nb_pg__port_free "$port" || continue
        if nb_pg__as_owner "$NB_PG_BIN/pg_ctl" -D "$NB_PG_DIR/data" -w -t 60 \
                -l "$NB_PG_DIR/log" \
                -o "-p $port -k $NB_PG_DIR -c listen_addresses=127.0.0.1" \
                start >/dev/null 2>&1; then
            NB_PG_STARTED=1
            NB_PG_PORT=$port
            break
        fi
    done
    if [ "$NB_PG_STARTED" != 1 ]; then
        nb_pg__log "the server did not start; its log:"
        tail -n 30 "$NB_PG_DIR/log" >&2 2>/dev/null
        return 1
    fi
    export NB_PG_DIR NB_PG_PORT
    NB_TEST_DB=$(nb_pg_createdb nobrick) || return 1
    export NB_TEST_DB
}

# Creates database $1 (dropped first if it exists) and prints its URL.
nb_pg_createdb() {
    local name=$1
    local psql=$NB_PG_BIN/psql
    [ -x "$psql" ] || psql=psql
    # As nb, over TCP: the way the tests will connect, whoever we are.
    if ! "$psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$NB_PG_PORT" -U nb \
            -d postgres -c "SET client_min_messages = warning" \
            -c "DROP DATABASE IF EXISTS \"$name\"" \
            -c "CREATE DATABASE \"$name\"" >&2; then
        nb_pg__log "cannot create database $name"
        return 1
    fi
    echo "postgresql://nb@127.0.0.1:$NB_PG_PORT/$name?sslmode=disable"
}
