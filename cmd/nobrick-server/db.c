/* db.c - the SQL layer's common half: which backend a URL names, the
 * connection pool (a mutex, a condition variable and a stack of free
 * connections), transaction state, and the ?N placeholder scanner both
 * backends use. The backends (db_sqlite.c, db_pg.c) only run statements.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db_impl.h"

struct nb_db {
    const struct nb_db_ops *ops;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned n;              /* connections in the pool */
    unsigned n_free;         /* of which free: idle[0 .. n_free-1] */
    struct nb_db_conn **idle;
    struct nb_db_conn *conns; /* all n of them */
    int gate_ok;              /* gate initialised (ops->one_writer) */
    struct nb_db_gate gate;
};

/* The key of the migration advisory lock: "nbrkmigr" in ASCII, so it is
 * recognisable in pg_locks and unlikely to collide with anyone else's. */
#define NB_DB_MIGRATION_KEY INT64_C(0x6e62726b6d696772)

nb_err nb_db_fail(struct nb_db_conn *c, nb_err err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return err;
}

static void put_msg(char *msg, size_t msglen, const char *text)
{
    if (msg && msglen)
        snprintf(msg, msglen, "%s", text);
}

/* A libpq key=value string starts with a keyword and "=" ("host=...",
 * "dbname = x"); a path never looks like that in practice. */
static int looks_like_conninfo(const char *s)
{
    const char *p = s;
    while (*p == ' ' || *p == '\t')
        p++;
    const char *k = p;
    while ((*p >= 'a' && *p <= 'z') || *p == '_')
        p++;
    if (p == k)
        return 0;
    while (*p == ' ' || *p == '\t')
        p++;
    return *p == '=';
}

/* Which backend, and what to hand it: the SQLite path or the libpq
 * connection string as given. */
static nb_err parse_url(const char *url, const struct nb_db_ops **ops,
                        const char **target)
{
    if (!url || !*url)
        return NB_ERR_INVAL;
    if (!strncmp(url, "postgresql://", 13) || !strncmp(url, "postgres://", 11) ||
        looks_like_conninfo(url)) {
        *ops = &nb_db_pg_ops;
        *target = url;
        return NB_OK;
    }
    *ops = &nb_db_sqlite_ops;
    if (!strncmp(url, "sqlite://", 9))
        *target = url + 9; /* sqlite:///abs/path -> /abs/path */
    else if (!strncmp(url, "sqlite:", 7))
        *target = url + 7;
    else
        *target = url;
    return **target ? NB_OK : NB_ERR_INVAL;
}

/* ------------------------------------------------------ the write gate */

static int gate_init(struct nb_db_gate *g)
{
    pthread_condattr_t a;
    int rc = pthread_condattr_init(&a);
    if (rc)
        return rc;
    /* Monotonic: a clock step must not cut a wait short or stretch it. */
    rc = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (!rc)
        rc = pthread_cond_init(&g->cv, &a);
    pthread_condattr_destroy(&a);
    if (rc)
        return rc;
    rc = pthread_mutex_init(&g->mu, NULL);
    if (rc)
        pthread_cond_destroy(&g->cv);
    g->held = 0;
    return rc;
}

nb_err nb_db_gate_enter(struct nb_db_conn *c)
{
    struct nb_db_gate *g = c->gate;
    struct timespec until;
    int rc = 0;
    if (!g || c->gated)
        return NB_OK;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += NB_DB_WAIT_MS / 1000;
    until.tv_nsec += (long)(NB_DB_WAIT_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&g->mu);
    while (g->held && rc == 0)
        rc = pthread_cond_timedwait(&g->cv, &g->mu, &until);
    if (!g->held) { /* a wake-up may come together with the time-out */
        g->held = 1;
        c->gated = 1;
    }
    pthread_mutex_unlock(&g->mu);
    if (!c->gated)
        return nb_db_fail(c, NB_ERR_IO,
                          "database busy: another writer of this pool held it "
                          "for over %d ms", NB_DB_WAIT_MS);
    return NB_OK;
}

void nb_db_gate_leave(struct nb_db_conn *c)
{
    struct nb_db_gate *g = c->gate;
    if (!g || !c->gated)
        return;
    pthread_mutex_lock(&g->mu);
    g->held = 0;
    c->gated = 0;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

nb_err nb_db_open(const char *url, unsigned pool_size, struct nb_db **out,
                  char *msg, size_t msglen)
{
    const struct nb_db_ops *ops;
    const char *target;
    *out = NULL;
    if (pool_size < 1) {
        put_msg(msg, msglen, "database pool size must be at least 1");
        return NB_ERR_INVAL;
    }
    if (parse_url(url, &ops, &target)) {
        put_msg(msg, msglen, "database URL is empty (want sqlite:PATH, a path, "
                             "or postgresql://...)");
        return NB_ERR_INVAL;
    }
    /* Every connection of ":memory:" would be a database of its own. */
    if (ops == &nb_db_sqlite_ops && !strcmp(target, ":memory:") && pool_size > 1) {
        put_msg(msg, msglen, "sqlite :memory: needs a pool of 1 connection");
        return NB_ERR_INVAL;
    }

    struct nb_db *db = calloc(1, sizeof *db);
    if (!db) {
        put_msg(msg, msglen, "out of memory");
        return NB_ERR_NOMEM;
    }
    db->ops = ops;
    db->conns = calloc(pool_size, sizeof *db->conns);
    db->idle = calloc(pool_size, sizeof *db->idle);
    if (!db->conns || !db->idle || pthread_mutex_init(&db->mu, NULL)) {
        free(db->conns);
        free(db->idle);
        free(db);
        put_msg(msg, msglen, "out of memory");
        return NB_ERR_NOMEM;
    }
    if (pthread_cond_init(&db->cv, NULL)) {
        pthread_mutex_destroy(&db->mu);
        free(db->conns);
        free(db->idle);
        free(db);
        put_msg(msg, msglen, "out of memory");
        return NB_ERR_NOMEM;
    }

    if (ops->one_writer) {
        if (gate_init(&db->gate)) {
            nb_db_close(db);
            put_msg(msg, msglen, "out of memory");
            return NB_ERR_NOMEM;
        }
        db->gate_ok = 1;
    }
    /* Open every connection now: a database that does not answer is an
     * error at start-up, not at the first request. */
    for (unsigned i = 0; i < pool_size; i++) {
        struct nb_db_conn *c = &db->conns[i];
        c->ops = ops;
        c->gate = db->gate_ok ? &db->gate : NULL;
        nb_err err = ops->connect(c, target);
        if (err) {
            put_msg(msg, msglen, c->err);
            nb_db_close(db);
            return err;
        }
        db->n++;
        db->idle[db->n_free++] = c;
    }
    *out = db;
    return NB_OK;
}

void nb_db_close(struct nb_db *db)
{
    if (!db)
        return;
    /* The caller has released every connection; close all we opened. */
    for (unsigned i = 0; i < db->n; i++)
        db->ops->disconnect(&db->conns[i]);
    if (db->gate_ok) {
        pthread_cond_destroy(&db->gate.cv);
        pthread_mutex_destroy(&db->gate.mu);
    }
    pthread_cond_destroy(&db->cv);
    pthread_mutex_destroy(&db->mu);
    free(db->conns);
    free(db->idle);
    free(db);
}

const char *nb_db_backend(const struct nb_db *db)
{
    return db->ops->name;
}

struct nb_db_conn *nb_db_acquire(struct nb_db *db)
{
    if (!db)
        return NULL;
    pthread_mutex_lock(&db->mu);
    while (db->n_free == 0)
        pthread_cond_wait(&db->cv, &db->mu);
    struct nb_db_conn *c = db->idle[--db->n_free];
    pthread_mutex_unlock(&db->mu);
    /* Outside the lock: a PostgreSQL reset is a network round trip. */
    c->err[0] = '\0';
    db->ops->check(c);
    return c;
}

void nb_db_release(struct nb_db *db, struct nb_db_conn *c)
{
    if (!db || !c)
        return;
    if (c->in_tx)
        nb_db_rollback(c);
    pthread_mutex_lock(&db->mu);
    db->idle[db->n_free++] = c;
    pthread_cond_signal(&db->cv);
    pthread_mutex_unlock(&db->mu);
}

/* ------------------------------------------------------- transactions */

static nb_err run(struct nb_db_conn *c, const char *sql)
{
    return c->ops->exec(c, sql, NULL, 0, NULL, NULL, NULL);
}

nb_err nb_db_begin(struct nb_db_conn *c)
{
    if (c->in_tx)
        return nb_db_fail(c, NB_ERR_STATE, "a transaction is already open");
    /* The gate before BEGIN IMMEDIATE: SQLite's lock is then free (unless
     * another process holds it) and BEGIN does not poll for it. */
    nb_err err = nb_db_gate_enter(c);
    if (!err)
        err = run(c, c->ops->begin_sql);
    if (err) {
        nb_db_gate_leave(c);
        return err;
    }
    c->in_tx = 1;
    c->tx_failed = 0;
    return NB_OK;
}

nb_err nb_db_commit(struct nb_db_conn *c)
{
    if (!c->in_tx)
        return nb_db_fail(c, NB_ERR_STATE, "commit without a transaction");
    if (c->tx_failed) {
        nb_db_rollback(c);
        return nb_db_fail(c, NB_ERR_STATE,
                          "commit of a failed transaction: rolled back");
    }
    nb_err err = run(c, "COMMIT");
    if (err) {
        /* A COMMIT that failed may leave SQLite's transaction open (on
         * SQLITE_BUSY); PostgreSQL has ended it. Either way: end it, so the
         * connection is clean, and keep the COMMIT's message. */
        char keep[NB_DB_ERRLEN];
        memcpy(keep, c->err, sizeof keep);
        (void)run(c, "ROLLBACK");
        memcpy(c->err, keep, sizeof keep);
    }
    c->in_tx = 0;
    c->tx_failed = 0;
    nb_db_gate_leave(c);
    return err;
}

void nb_db_rollback(struct nb_db_conn *c)
{
    if (!c->in_tx)
        return;
    /* Errors are of no use here: "no transaction is active" after SQLite
     * rolled back by itself (on an I/O error), or a lost connection,
     * which takes the transaction with it. */
    char keep[NB_DB_ERRLEN];
    memcpy(keep, c->err, sizeof keep);
    (void)run(c, "ROLLBACK");
    memcpy(c->err, keep, sizeof keep);
    c->in_tx = 0;
    c->tx_failed = 0;
    nb_db_gate_leave(c);
}

/* ---------------------------------------------------------- statements */

nb_err nb_db_exec(struct nb_db_conn *c, const char *sql,
                  const struct nb_db_val *params, unsigned n_params,
                  nb_db_row_fn fn, void *arg, int64_t *changes)
{
    if (changes)
        *changes = 0;
    if (c->in_tx && c->tx_failed)
        return nb_db_fail(c, NB_ERR_STATE,
                          "statement in a failed transaction: roll back first");
    if (!sql || (n_params && !params))
        return nb_db_fail(c, NB_ERR_INVAL, "no SQL, or parameters missing");
    /* The same check on both backends, before either sees the SQL: a
     * statement must use ?1 .. ?n_params, no more, no fewer. */
    int max = nb_db_scan_params(sql, NULL);
    if (max < 0)
        return nb_db_fail(c, NB_ERR_INVAL, "bad placeholder (use ?1 .. ?%u): %.200s",
                          NB_DB_MAX_PARAMS, sql);
    if ((unsigned)max != n_params)
        return nb_db_fail(c, NB_ERR_INVAL,
                          "statement uses ?1 .. ?%d but %u parameters given: %.200s",
                          max, n_params, sql);
    for (unsigned i = 0; i < n_params; i++) {
        enum nb_db_type t = params[i].type;
        if (t != NB_DB_NULL && t != NB_DB_INT && t != NB_DB_TEXT)
            return nb_db_fail(c, NB_ERR_INVAL, "parameter ?%u has no valid type", i + 1);
        if (t == NB_DB_TEXT && !params[i].s)
            return nb_db_fail(c, NB_ERR_INVAL, "parameter ?%u: TEXT with NULL", i + 1);
    }
    nb_err err = c->ops->exec(c, sql, params, n_params, fn, arg, changes);
    if (err && c->in_tx)
        c->tx_failed = 1;
    return err;
}

nb_err nb_db_exec_script(struct nb_db_conn *c, const char *sql)
{
    if (c->in_tx && c->tx_failed)
        return nb_db_fail(c, NB_ERR_STATE,
                          "script in a failed transaction: roll back first");
    if (!sql)
        return nb_db_fail(c, NB_ERR_INVAL, "no SQL");
    nb_err err = c->ops->script(c, sql);
    if (err && c->in_tx)
        c->tx_failed = 1;
    return err;
}

const char *nb_db_errmsg(const struct nb_db_conn *c)
{
    return c->err;
}

nb_err nb_db_migration_lock(struct nb_db_conn *c)
{
    if (!c->ops->advisory_locks)
        return NB_OK;
    struct nb_db_val key = NB_DB_I(NB_DB_MIGRATION_KEY);
    return nb_db_exec(c, "SELECT pg_advisory_lock(?1)", &key, 1, NULL, NULL, NULL);
}

void nb_db_migration_unlock(struct nb_db_conn *c)
{
    if (!c->ops->advisory_locks)
        return;
    /* Nothing to do on failure: a lost connection has lost the lock too. */
    struct nb_db_val key = NB_DB_I(NB_DB_MIGRATION_KEY);
    (void)nb_db_exec(c, "SELECT pg_advisory_unlock(?1)", &key, 1, NULL, NULL, NULL);
}

/* --------------------------------------------------------------- rows */

int nb_db_columns(const struct nb_db_row *row)
{
    return row->ops->columns(row);
}

int nb_db_is_null(const struct nb_db_row *row, int col)
{
    if (col < 0 || col >= row->ops->columns(row))
        return 1;
    return row->ops->is_null(row, col);
}

int64_t nb_db_int(const struct nb_db_row *row, int col)
{
    if (nb_db_is_null(row, col))
        return 0;
    return row->ops->get_int(row, col);
}

const char *nb_db_text(const struct nb_db_row *row, int col)
{
    if (nb_db_is_null(row, col))
        return NULL;
    return row->ops->get_text(row, col);
}

/* ---------------------------------------------------- placeholder scan */

/* Length of a $tag$ opener at p (the whole "$tag$"), or 0 if p does not
 * start one. A tag is empty or an identifier not starting with a digit
 * (so "$1" is a positional parameter, never a tag). */
static size_t dollar_tag(const char *p)
{
    if (*p != '$')
        return 0;
    size_t i = 1;
    if (p[i] >= '0' && p[i] <= '9')
        return 0;
    while ((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') ||
           (p[i] >= '0' && p[i] <= '9') || p[i] == '_')
        i++;
    return p[i] == '$' ? i + 1 : 0;
}

int nb_db_scan_params(const char *sql, char *out)
{
    int max = 0;
    size_t i = 0;
    if (out)
        strcpy(out, sql);
    while (sql[i]) {
        char ch = sql[i];
        if (ch == '\'') {
            /* '...' with '' for a quote; E'...' also has backslash escapes
             * (PostgreSQL; the letter before the quote says which). */
            int esc = i > 0 && (sql[i - 1] == 'E' || sql[i - 1] == 'e');
            i++;
            while (sql[i]) {
                if (esc && sql[i] == '\\' && sql[i + 1]) {
                    i += 2;
                } else if (sql[i] == '\'') {
                    if (sql[i + 1] != '\'')
                        break;
                    i += 2;
                } else {
                    i++;
                }
            }
            if (sql[i])
                i++;
        } else if (ch == '"') {
            i++;
            while (sql[i] && !(sql[i] == '"' && sql[i + 1] != '"'))
                i += sql[i] == '"' ? 2 : 1;
            if (sql[i])
                i++;
        } else if (ch == '-' && sql[i + 1] == '-') {
            while (sql[i] && sql[i] != '\n')
                i++;
        } else if (ch == '/' && sql[i + 1] == '*') {
            int depth = 0; /* PostgreSQL nests these */
            do {
                if (sql[i] == '/' && sql[i + 1] == '*') {
                    depth++;
                    i += 2;
                } else if (sql[i] == '*' && sql[i + 1] == '/') {
                    depth--;
                    i += 2;
                } else {
                    i++;
                }
            } while (sql[i] && depth > 0);
        } else if (ch == '$' && dollar_tag(sql + i)) {
            /* $tag$ ... $tag$ (PostgreSQL): up to the same tag again. */
            size_t n = dollar_tag(sql + i);
            size_t j = i + n;
            while (sql[j] && strncmp(sql + j, sql + i, n))
                j++;
            i = sql[j] ? j + n : j;
        } else if (ch == '?') {
            size_t j = i + 1;
            long v = 0;
            while (sql[j] >= '0' && sql[j] <= '9') {
                v = v * 10 + (sql[j] - '0');
                if (v > (long)NB_DB_MAX_PARAMS)
                    return -1;
                j++;
            }
            if (j == i + 1 || v == 0)
                return -1;
            if (v > max)
                max = (int)v;
            if (out)
                out[i] = '$';
            i = j;
        } else {
            i++;
        }
    }
    return max;
}
