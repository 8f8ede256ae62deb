/* dbtest.h - what tests/test_db.c and tests/test_db_pool.c share: a
 * fixture with an open struct nb_db, helpers that fail the test with the
 * backend's message, and dbtest_main(), which runs a test table on SQLite
 * (a file in a temporary directory) and then, when NB_TEST_DB holds a
 * postgresql:// URL, on PostgreSQL (tests/test_db_pg.sh sets it up).
 *
 * Header only (static functions), like testlib.h: no build change needed.
 * Tables the tests make are named tdb_* and dropped first, so a
 * PostgreSQL database other suites also use is left alone apart from
 * those.
 */
#ifndef NB_DBTEST_H
#define NB_DBTEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db.h"

struct fx {
    struct nb_db *db;
    const char *url;
    int pg;
};

static const char *g_url;      /* the URL the current group runs on */
static char g_dir[256];        /* SQLite: its temporary directory */
static char g_sqlite_url[300];

/* ------------------------------------------------------------ helpers */

static inline void msleep(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Runs a script and fails the test, with the backend's message, if it
 * does not work. */
static inline void script(struct nb_db_conn *c, const char *sql)
{
    nb_err err = nb_db_exec_script(c, sql);
    if (err)
        fail_msg("script failed (%s): %s\n%s", nb_err_name(err), nb_db_errmsg(c), sql);
}

static inline void exec_ok(struct nb_db_conn *c, const char *sql, const struct nb_db_val *p,
                    unsigned n, nb_db_row_fn fn, void *arg, int64_t *changes)
{
    nb_err err = nb_db_exec(c, sql, p, n, fn, arg, changes);
    if (err)
        fail_msg("exec failed (%s): %s\n%s", nb_err_name(err), nb_db_errmsg(c), sql);
}

/* The first column of the first row, as int and text. */
struct one {
    int rows;
    int null;
    int64_t i;
    char s[512];
};

static inline int one_fn(void *arg, const struct nb_db_row *row)
{
    struct one *o = arg;
    if (o->rows++ == 0) {
        o->null = nb_db_is_null(row, 0);
        o->i = nb_db_int(row, 0);
        const char *t = nb_db_text(row, 0);
        snprintf(o->s, sizeof o->s, "%s", t ? t : "");
    }
    return 0;
}

static inline int64_t query_int(struct nb_db_conn *c, const char *sql,
                         const struct nb_db_val *p, unsigned n)
{
    struct one o = {0};
    exec_ok(c, sql, p, n, one_fn, &o, NULL);
    assert_int_equal(o.rows, 1);
    return o.i;
}

static inline struct one query_one(struct nb_db_conn *c, const char *sql,
                            const struct nb_db_val *p, unsigned n)
{
    struct one o = {0};
    exec_ok(c, sql, p, n, one_fn, &o, NULL);
    assert_int_equal(o.rows, 1);
    return o;
}

/* ------------------------------------------------------------- set-up */

static inline int group_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->url = g_url;
    char msg[256] = "";
    if (nb_db_open(g_url, 4, &f->db, msg, sizeof msg)) {
        fprintf(stderr, "test_db: cannot open %s: %s\n", g_url, msg);
        free(f);
        return -1;
    }
    f->pg = !strcmp(nb_db_backend(f->db), "postgresql");
    *state = f;
    return 0;
}

static inline int group_teardown(void **state)
{
    struct fx *f = *state;
    nb_db_close(f->db);
    free(f);
    return 0;
}


static inline int64_t count_rows(struct nb_db_conn *c, const char *table)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", table);
    return query_int(c, sql, NULL, 0);
}


/* ---------------------------------------------------------------- main */

static inline void rm_sqlite_dir(void)
{
    static const char *const names[] = {"test.db", "test.db-wal", "test.db-shm",
                                        "plain.db", "plain.db-wal", "plain.db-shm",
                                        "slashes.db", "slashes.db-wal",
                                        "slashes.db-shm"};
    char p[320];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", g_dir, names[i]);
        unlink(p);
    }
    rmdir(g_dir);
}


/* Runs `tests` as group "<prog>_sqlite", then "<prog>_postgresql" if
 * NB_TEST_DB says so. Returns main's exit status. */
static inline int dbtest_main(const char *prog, const struct CMUnitTest *tests, size_t n)
{
    char name[128];
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/nb-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", prog);
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(g_sqlite_url, sizeof g_sqlite_url, "sqlite:%s/test.db", g_dir);

    g_url = g_sqlite_url;
    snprintf(name, sizeof name, "%s_sqlite", prog);
    int failed = _cmocka_run_group_tests(name, tests, n, group_setup, group_teardown);

    const char *pg = getenv("NB_TEST_DB");
    if (pg && (!strncmp(pg, "postgresql://", 13) || !strncmp(pg, "postgres://", 11))) {
        g_url = pg;
        snprintf(name, sizeof name, "%s_postgresql", prog);
        failed += _cmocka_run_group_tests(name, tests, n, group_setup, group_teardown);
    } else {
        printf("%s: NB_TEST_DB holds no postgresql:// URL: PostgreSQL not tested "
               "here (tests/test_db_pg.sh does)\n", prog);
    }
    rm_sqlite_dir();
    return failed ? 1 : 0;
}

#endif /* NB_DBTEST_H */
