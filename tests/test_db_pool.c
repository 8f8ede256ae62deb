/* test_db_pool.c - the connection side of the server's SQL layer
 * (cmd/nobrick-server/db.h), on SQLite always and on PostgreSQL when
 * NB_TEST_DB holds a postgresql:// URL (as test_db.c).
 *
 * Covered: a full pool makes acquire wait; 4 threads x 200 writes through
 * a pool of 3 (no SQLITE_BUSY surfacing as an error, no lost update of a
 * counter, every value handed out once); the migration lock (waits on
 * PostgreSQL, a no-op on SQLite); a PostgreSQL connection killed by the
 * server fails with NB_ERR_IO and is reset on the next acquire; open
 * errors and the spellings of a database URL.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>

#include "db.h"
#include "db_impl.h" /* NB_DB_ERRLEN */
#include "dbtest.h"

struct waiter {
    struct nb_db *db;
    volatile int got; /* read after join, or polled: a flag, not a count */
    pthread_mutex_t mu;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    struct nb_db_conn *c = nb_db_acquire(w->db);
    pthread_mutex_lock(&w->mu);
    w->got = 1;
    pthread_mutex_unlock(&w->mu);
    nb_db_release(w->db, c);
    return NULL;
}

static int waiter_got(struct waiter *w)
{
    pthread_mutex_lock(&w->mu);
    int g = w->got;
    pthread_mutex_unlock(&w->mu);
    return g;
}

static void test_pool_exhaustion(void **state)
{
    struct fx *f = *state;
    struct nb_db *db;
    char msg[256];
    assert_int_equal(nb_db_open(f->url, 2, &db, msg, sizeof msg), NB_OK);
    struct nb_db_conn *a = nb_db_acquire(db);
    struct nb_db_conn *b = nb_db_acquire(db);
    assert_ptr_not_equal(a, b);
    struct waiter w = {.db = db};
    pthread_mutex_init(&w.mu, NULL);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, waiter_main, &w), 0);
    msleep(150);
    assert_false(waiter_got(&w)); /* blocked: both connections are out */
    nb_db_release(db, b);
    pthread_join(t, NULL);
    assert_true(waiter_got(&w));
    nb_db_release(db, a);
    pthread_mutex_destroy(&w.mu);
    nb_db_close(db);
}

#define HAMMER_THREADS 4
#define HAMMER_WRITES 200

struct hammer {
    struct nb_db *db;
    int id;
    int errors;
    char err[NB_DB_ERRLEN + 32];
    int64_t seen[HAMMER_WRITES]; /* counter values this thread got */
    int n_seen;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    for (int i = 0; i < HAMMER_WRITES; i++) {
        struct nb_db_conn *c = nb_db_acquire(h->db);
        struct nb_db_val p[] = {NB_DB_I(h->id * 100000 + i), NB_DB_S("payload 'x'")};
        const char *ins = "INSERT INTO tdb_hammer (id, s) VALUES (?1, ?2)";
        nb_err err;
        if (i % 2) {
            err = nb_db_exec(c, ins, p, 2, NULL, NULL, NULL);
        } else {
            /* Read-modify-write in a transaction: the counter must end at
             * exactly the number of these, each value handed out once. */
            struct one o = {0};
            err = nb_db_begin(c);
            if (!err)
                err = nb_db_exec(c, "UPDATE tdb_counter SET n = n + 1 WHERE id = 1 "
                                    "RETURNING n",
                                 NULL, 0, one_fn, &o, NULL);
            if (!err)
                err = nb_db_exec(c, ins, p, 2, NULL, NULL, NULL);
            if (!err)
                err = nb_db_commit(c);
            else
                nb_db_rollback(c);
            if (!err && h->n_seen < HAMMER_WRITES)
                h->seen[h->n_seen++] = o.i;
        }
        if (err && h->errors++ == 0)
            snprintf(h->err, sizeof h->err, "%s: %s", nb_err_name(err), nb_db_errmsg(c));
        nb_db_release(h->db, c);
    }
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    struct fx *f = *state;
    struct nb_db *db;
    char msg[256];
    /* Fewer connections than threads: the pool's waiting is part of it. */
    assert_int_equal(nb_db_open(f->url, HAMMER_THREADS - 1, &db, msg, sizeof msg), NB_OK);
    struct nb_db_conn *c = nb_db_acquire(db);
    script(c, "DROP TABLE IF EXISTS tdb_hammer; DROP TABLE IF EXISTS tdb_counter;"
              "CREATE TABLE tdb_hammer (id BIGINT PRIMARY KEY, s TEXT);"
              "CREATE TABLE tdb_counter (id BIGINT PRIMARY KEY, n BIGINT NOT NULL);"
              "INSERT INTO tdb_counter (id, n) VALUES (1, 0);");
    nb_db_release(db, c);

    static struct hammer h[HAMMER_THREADS];
    pthread_t t[HAMMER_THREADS];
    for (int i = 0; i < HAMMER_THREADS; i++) {
        memset(&h[i], 0, sizeof h[i]);
        h[i].db = db;
        h[i].id = i;
        assert_int_equal(pthread_create(&t[i], NULL, hammer_main, &h[i]), 0);
    }
    for (int i = 0; i < HAMMER_THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < HAMMER_THREADS; i++)
        if (h[i].errors)
            fail_msg("thread %d: %d errors, first: %s", i, h[i].errors, h[i].err);

    c = nb_db_acquire(db);
    const int64_t total = HAMMER_THREADS * HAMMER_WRITES, txs = total / 2;
    assert_int_equal(count_rows(c, "tdb_hammer"), total);
    assert_int_equal(query_int(c, "SELECT n FROM tdb_counter", NULL, 0), txs);
    nb_db_release(db, c);
    /* Every counter value 1..txs handed out exactly once. */
    static char seen[HAMMER_THREADS * HAMMER_WRITES + 1];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < HAMMER_THREADS; i++)
        for (int j = 0; j < h[i].n_seen; j++) {
            int64_t v = h[i].seen[j];
            assert_true(v >= 1 && v <= txs);
            assert_false(seen[v]);
            seen[v] = 1;
        }
    nb_db_close(db);
}

struct locker {
    struct nb_db *db;
    pthread_mutex_t mu;
    int locked;
    nb_err err;
};

static void *locker_main(void *arg)
{
    struct locker *l = arg;
    struct nb_db_conn *c = nb_db_acquire(l->db);
    nb_err err = nb_db_migration_lock(c);
    pthread_mutex_lock(&l->mu);
    l->locked = 1;
    l->err = err;
    pthread_mutex_unlock(&l->mu);
    nb_db_migration_unlock(c);
    nb_db_release(l->db, c);
    return NULL;
}

static void test_migration_lock(void **state)
{
    struct fx *f = *state;
    struct nb_db_conn *c = nb_db_acquire(f->db);
    assert_int_equal(nb_db_migration_lock(c), NB_OK);
    struct locker l = {.db = f->db};
    pthread_mutex_init(&l.mu, NULL);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, locker_main, &l), 0);
    msleep(150);
    pthread_mutex_lock(&l.mu);
    int early = l.locked;
    pthread_mutex_unlock(&l.mu);
    /* PostgreSQL: the second taker waits; SQLite: a no-op, it does not. */
    assert_int_equal(early, f->pg ? 0 : 1);
    nb_db_migration_unlock(c);
    pthread_join(t, NULL);
    assert_int_equal(l.locked, 1);
    assert_int_equal(l.err, NB_OK);
    pthread_mutex_destroy(&l.mu);
    /* Taken and given back again: not left held. */
    assert_int_equal(nb_db_migration_lock(c), NB_OK);
    nb_db_migration_unlock(c);
    nb_db_release(f->db, c);
}

/* PostgreSQL: the server kills a connection (as a restart would); the
 * statement fails with NB_ERR_IO, and the next acquire resets it. */
static void test_pg_reset(void **state)
{
    struct fx *f = *state;
    if (!f->pg)
        skip();
    struct nb_db_conn *a = nb_db_acquire(f->db);
    struct nb_db_conn *b = nb_db_acquire(f->db);
    int64_t pid = query_int(a, "SELECT pg_backend_pid()", NULL, 0);
    struct nb_db_val p = NB_DB_I(pid);
    assert_int_equal(query_int(b, "SELECT pg_terminate_backend(?1::integer)", &p, 1), 1);
    msleep(100);
    assert_int_equal(nb_db_exec(a, "SELECT 1", NULL, 0, NULL, NULL, NULL), NB_ERR_IO);
    assert_true(strlen(nb_db_errmsg(a)) > 0);
    nb_db_release(f->db, b);
    nb_db_release(f->db, a);
    struct nb_db_conn *c = nb_db_acquire(f->db); /* the pool hands out a again */
    assert_ptr_equal(c, a);
    int64_t pid2 = query_int(c, "SELECT pg_backend_pid()", NULL, 0);
    assert_true(pid2 != pid);
    nb_db_release(f->db, c);
}

static void test_open_errors(void **state)
{
    (void)state;
    struct nb_db *db = (struct nb_db *)&db; /* must be set to NULL */
    char msg[256] = "";
    assert_int_equal(nb_db_open("", 1, &db, msg, sizeof msg), NB_ERR_INVAL);
    assert_null(db);
    assert_true(strlen(msg) > 0);
    assert_int_equal(nb_db_open("sqlite:", 1, &db, msg, sizeof msg), NB_ERR_INVAL);
    assert_int_equal(nb_db_open(g_sqlite_url, 0, &db, msg, sizeof msg), NB_ERR_INVAL);
    assert_int_equal(nb_db_open(":memory:", 2, &db, msg, sizeof msg), NB_ERR_INVAL);
    msg[0] = '\0';
    assert_int_equal(nb_db_open("sqlite:/nonexistent-dir/x/y.db", 1, &db, msg, sizeof msg),
                     NB_ERR_IO);
    assert_non_null(strstr(msg, "/nonexistent-dir/x/y.db"));
    /* Nothing listens on port 1 of 127.0.0.1: refused at once. */
    msg[0] = '\0';
    assert_int_equal(nb_db_open("postgresql://nb@127.0.0.1:1/x?connect_timeout=2", 1, &db,
                                msg, sizeof msg),
                     NB_ERR_IO);
    assert_true(strlen(msg) > 0);
    assert_null(strchr(msg, '\n'));
    assert_int_equal(nb_db_open("host=127.0.0.1 port=1 connect_timeout=2", 1, &db, msg,
                                sizeof msg),
                     NB_ERR_IO);
    /* The other spellings of a SQLite URL. */
    char url[320];
    snprintf(url, sizeof url, "%s/plain.db", g_dir);
    assert_int_equal(nb_db_open(url, 1, &db, msg, sizeof msg), NB_OK);
    assert_string_equal(nb_db_backend(db), "sqlite");
    nb_db_close(db);
    snprintf(url, sizeof url, "sqlite://%s/slashes.db", g_dir);
    assert_int_equal(nb_db_open(url, 1, &db, msg, sizeof msg), NB_OK);
    nb_db_close(db);
    snprintf(url, sizeof url, "%s/slashes.db", g_dir);
    assert_int_equal(access(url, F_OK), 0);
    assert_int_equal(nb_db_open(":memory:", 1, &db, msg, sizeof msg), NB_OK);
    nb_db_close(db);
    nb_db_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_exhaustion),
        cmocka_unit_test(test_concurrent_writers),
        cmocka_unit_test(test_migration_lock),
        cmocka_unit_test(test_pg_reset),
        cmocka_unit_test(test_open_errors),
    };
    return dbtest_main("test_db_pool", tests, sizeof tests / sizeof tests[0]);
}
