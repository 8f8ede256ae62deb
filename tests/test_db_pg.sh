#!/usr/bin/env bash
# test_db_pg.sh - the server's SQL suites against a real PostgreSQL.
#
# Starts one private PostgreSQL cluster (tests/support/pg.sh: 127.0.0.1, a
# free port, a temporary directory, removed on exit) and runs, each on a
# fresh database of its own, with NB_TEST_DB set to its URL:
#   build/tests/test_db            (always: the SQL layer's statements)
#   build/tests/test_db_pool       (always: its pool, threads, connections)
#   build/tests/test_store         (if built: the server's store)
#   build/tests/test_srv_dispatch  (if built: the request handlers)
#   build/tests/test_srv_artifacts, test_srv_mgmt, test_ddi_api (if built:
#                                  artifacts, management API, hawkBit DDI)
# Those programs run their suite on SQLite and, when NB_TEST_DB holds a
# postgresql:// URL, again on PostgreSQL: so the same tests cover both
# backends. Skipped (exit 0, a SKIPPED line) when PostgreSQL's server
# binaries are not installed.
#
# Needs: NOBRICK_BUILD, NOBRICK_SRC (ctest sets both), postgresql, psql.
set -euo pipefail

SRC=${NOBRICK_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
BUILD=${NOBRICK_BUILD:-}
for prog in test_db test_db_pool; do
    if [ -z "$BUILD" ] || [ ! -x "$BUILD/tests/$prog" ]; then
        echo "test_db_pg: $BUILD/tests/$prog is not built (NOBRICK_BUILD=$BUILD)" >&2
        exit 1
    fi
done

# shellcheck source=tests/support/pg.sh
source "$SRC/tests/support/pg.sh"
nb_pg_require test_db_pg
nb_pg_start

failed=()
for prog in test_db test_db_pool test_store test_srv_dispatch \
    test_srv_artifacts test_srv_mgmt test_ddi_api; do
    exe=$BUILD/tests/$prog
    if [ ! -x "$exe" ]; then
        echo "test_db_pg: $prog not built: not run"
        continue
    fi
    url=$(nb_pg_createdb "nb_$prog")
    echo "test_db_pg: $prog with NB_TEST_DB=$url"
    if ! NB_TEST_DB=$url "$exe"; then
        failed+=("$prog")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "test_db_pg: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "test_db_pg: all passed"
