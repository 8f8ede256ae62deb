/* db_sqlite.c - the SQLite backend of db.h: one sqlite3 handle per pool
 * connection, WAL + synchronous=FULL (an acknowledged write survives a
 * crash of the process or of the machine), writers of one pool queued at
 * the write gate (db_impl.h) and a busy timeout for writers of other
 * processes, so concurrent writers wait for each other instead of
 * failing, and a small cache of
 * prepared statements per connection (the server runs the same few dozen
 * statements over and over).
 */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db_impl.h"

#define SQ_CACHE 32            /* prepared statements kept per connection */
#define SQ_BUSY_TIMEOUT_MS NB_DB_WAIT_MS /* another process's writer */
#define SQ_BUSY_RETRIES 50     /* extra tries when SQLITE_BUSY comes anyway */

struct sq_entry {
    char *sql;          /* NULL: free slot */
    sqlite3_stmt *st;
    unsigned long used; /* tick of the last use, for eviction */
    int busy;           /* running now (a row callback may nest a query) */
};

struct sq_conn {
    sqlite3 *db;
    unsigned long tick;
    struct sq_entry cache[SQ_CACHE];
};

static struct sq_conn *SQ(const struct nb_db_conn *c)
{
    return c->be;
}

/* SQLite's result code -> nb_err, with the message into c->err. */
static nb_err sq_fail(struct nb_db_conn *c, int rc, const char *sql)
{
    sqlite3 *db = SQ(c)->db;
    nb_err err;
    switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
        err = NB_ERR_DUPLICATE;
        break;
    case SQLITE_NOMEM:
        err = NB_ERR_NOMEM;
        break;
    default:
        switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
        case SQLITE_IOERR:
        case SQLITE_FULL:
        case SQLITE_CANTOPEN:
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
        case SQLITE_READONLY:
        case SQLITE_PROTOCOL:
            err = NB_ERR_IO;
            break;
        default:
            err = NB_ERR_INVAL; /* SQL errors, other constraints, misuse */
            break;
        }
    }
    if (sql)
        return nb_db_fail(c, err, "sqlite: %s (%s): %.200s", sqlite3_errmsg(db),
                          sqlite3_errstr(rc), sql);
    return nb_db_fail(c, err, "sqlite: %s (%s)", sqlite3_errmsg(db),
                      sqlite3_errstr(rc));
}

static void sq_disconnect(struct nb_db_conn *c)
{
    struct sq_conn *s = SQ(c);
    if (!s)
        return;
    for (int i = 0; i < SQ_CACHE; i++) {
        sqlite3_finalize(s->cache[i].st);
        free(s->cache[i].sql);
    }
    sqlite3_close(s->db);
    free(s);
    c->be = NULL;
}

/* Runs one PRAGMA; `want`, if given, is the value it must answer (the
 * journal mode: SQLite silently keeps another one when WAL is not
 * possible, and then our durability promise would not hold). */
static nb_err sq_pragma(struct nb_db_conn *c, const char *sql, const char *want)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(SQ(c)->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sq_fail(c, rc, sql);
    rc = sqlite3_step(st);
    nb_err err = NB_OK;
    if (rc == SQLITE_ROW && want) {
        const char *got = (const char *)sqlite3_column_text(st, 0);
        if (!got || strcmp(got, want))
            err = nb_db_fail(c, NB_ERR_IO, "sqlite: %s answered %s, not %s", sql,
                             got ? got : "nothing", want);
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        err = sq_fail(c, rc, sql);
    }
    sqlite3_finalize(st);
    return err;
}

static nb_err sq_connect(struct nb_db_conn *c, const char *path)
{
    /* The pool hands connections from thread to thread: SQLite must be
     * built thread-safe (Debian's is; SQLITE_THREADSAFE=0 is not). */
    if (!sqlite3_threadsafe())
        return nb_db_fail(c, NB_ERR_INVAL, "sqlite: library built without threads");
    struct sq_conn *s = calloc(1, sizeof *s);
    if (!s)
        return nb_db_fail(c, NB_ERR_NOMEM, "out of memory");
    c->be = s;
    /* NOMUTEX: a connection is used by one thread at a time (the pool
     * guarantees it), so SQLite's own per-connection mutex is not needed. */
    int rc = sqlite3_open_v2(path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                 SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        nb_db_fail(c, NB_ERR_IO, "sqlite: cannot open %s: %s", path,
                   s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        sq_disconnect(c);
        return NB_ERR_IO;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, SQ_BUSY_TIMEOUT_MS);
    int mem = !strcmp(path, ":memory:");
    nb_err err = sq_pragma(c, "PRAGMA journal_mode=WAL", mem ? "memory" : "wal");
    if (!err)
        err = sq_pragma(c, "PRAGMA synchronous=FULL", NULL);
    if (!err)
        err = sq_pragma(c, "PRAGMA foreign_keys=ON", NULL);
    if (err) {
        /* Keep the message: it says which pragma failed. */
        char keep[NB_DB_ERRLEN];
        memcpy(keep, c->err, sizeof keep);
        sq_disconnect(c);
        memcpy(c->err, keep, sizeof keep);
        return err;
    }
    return NB_OK;
}

static void sq_check(struct nb_db_conn *c)
{
    (void)c; /* a file does not go away between two statements */
}

/* Only blank space and semicolons after the statement. */
static int tail_is_empty(const char *tail)
{
    for (; tail && *tail; tail++)
        if (*tail != ' ' && *tail != '\t' && *tail != '\n' && *tail != '\r' &&
            *tail != ';')
            return 0;
    return 1;
}

/* A prepared statement for sql: from the cache, or prepared now and put
 * there (evicting the least recently used idle entry). *entry is NULL
 * when the statement is not cached (the caller finalizes it). */
static nb_err sq_prepare(struct nb_db_conn *c, const char *sql,
                         sqlite3_stmt **st, struct sq_entry **entry)
{
    struct sq_conn *s = SQ(c);
    struct sq_entry *victim = NULL;
    *entry = NULL;
    for (int i = 0; i < SQ_CACHE; i++) {
        struct sq_entry *e = &s->cache[i];
        if (e->sql && !e->busy && !strcmp(e->sql, sql)) {
            e->used = ++s->tick;
            e->busy = 1;
            *st = e->st;
            *entry = e;
            return NB_OK;
        }
        if (!e->busy && (!victim || !e->sql || (victim->sql && e->used < victim->used)))
            victim = e;
    }

    const char *tail = NULL;
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, &tail);
    if (rc != SQLITE_OK)
        return sq_fail(c, rc, sql);
    if (!*st)
        return nb_db_fail(c, NB_ERR_INVAL, "sqlite: no statement in: %.200s", sql);
    if (!tail_is_empty(tail)) {
        sqlite3_finalize(*st);
        return nb_db_fail(c, NB_ERR_INVAL,
                          "sqlite: more than one statement (use nb_db_exec_script): %.200s",
                          sql);
    }
    char *copy = victim ? strdup(sql) : NULL;
    if (!copy)
        return NB_OK; /* all entries busy, or no memory: run it uncached */
    sqlite3_finalize(victim->st);
    free(victim->sql);
    victim->sql = copy;
    victim->st = *st;
    victim->used = ++s->tick;
    victim->busy = 1;
    *entry = victim;
    return NB_OK;
}

static void sq_pause(void)
{
    struct timespec ts = {0, 2 * 1000 * 1000}; /* 2 ms */
    nanosleep(&ts, NULL);
}

static nb_err sq_exec(struct nb_db_conn *c, const char *sql,
                      const struct nb_db_val *params, unsigned n_params,
                      nb_db_row_fn fn, void *arg, int64_t *changes)
{
    struct sq_conn *s = SQ(c);
    sqlite3_stmt *st;
    struct sq_entry *entry;
    nb_err err = sq_prepare(c, sql, &st, &entry);
    if (err)
        return err;

    for (unsigned i = 0; i < n_params && !err; i++) {
        int rc;
        const struct nb_db_val *v = &params[i];
        if (v->type == NB_DB_INT)
            rc = sqlite3_bind_int64(st, (int)i + 1, v->i);
        else if (v->type == NB_DB_TEXT)
            rc = sqlite3_bind_text(st, (int)i + 1, v->s, -1, SQLITE_STATIC);
        else
            rc = sqlite3_bind_null(st, (int)i + 1);
        if (rc != SQLITE_OK)
            err = sq_fail(c, rc, sql);
    }

    /* total_changes moves only when this statement changed rows; then
     * sqlite3_changes is its count (without trigger or cascade rows). A
     * SELECT or a CREATE leaves both as they were: report 0, not the
     * count of some earlier statement. */
    sqlite3_int64 total = sqlite3_total_changes64(s->db);
    int rows = 0, retries = 0, gated = 0;
    /* A write outside a transaction waits at the gate like a transaction
     * does (BEGIN, COMMIT and SELECT are read-only to SQLite). */
    if (!err && c->gate && !c->gated && sqlite3_get_autocommit(s->db) &&
        !sqlite3_stmt_readonly(st)) {
        err = nb_db_gate_enter(c);
        gated = !err;
    }
    while (!err) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            rows++;
            struct nb_db_row row = {&nb_db_sqlite_ops, st, 0};
            if (fn && fn(arg, &row))
                break; /* reset below; RETURNING has done its writes already */
            continue;
        }
        if (rc == SQLITE_DONE)
            break;
        /* The busy handler waits for a lock, but a few cases return
         * SQLITE_BUSY at once (WAL recovery, a snapshot moved under a
         * reader). Outside a transaction and before the first row nothing
         * has happened yet, so running the statement again is safe. */
        if ((rc & 0xff) == SQLITE_BUSY && rows == 0 && sqlite3_get_autocommit(s->db) &&
            retries++ < SQ_BUSY_RETRIES) {
            sqlite3_reset(st);
            sq_pause();
            continue;
        }
        err = sq_fail(c, rc, sql);
    }
    sqlite3_reset(st);
    if (gated)
        nb_db_gate_leave(c);
    if (!err && changes && sqlite3_total_changes64(s->db) != total)
        *changes = sqlite3_changes64(s->db);

    if (entry) {
        sqlite3_clear_bindings(st); /* the TEXT values were not copied */
        entry->busy = 0;
    } else {
        sqlite3_finalize(st);
    }
    return err;
}

static nb_err sq_script(struct nb_db_conn *c, const char *sql)
{
    char *msg = NULL;
    /* A script outside a transaction (a migration step) may write: it
     * waits at the gate. */
    int gated = c->gate && !c->gated;
    if (gated) {
        nb_err err = nb_db_gate_enter(c);
        if (err)
            return err;
    }
    int rc = sqlite3_exec(SQ(c)->db, sql, NULL, NULL, &msg);
    if (gated)
        nb_db_gate_leave(c);
    sqlite3_free(msg); /* sqlite3_errmsg still has it */
    if (rc != SQLITE_OK)
        return sq_fail(c, sqlite3_extended_errcode(SQ(c)->db), NULL);
    return NB_OK;
}

static int sq_columns(const struct nb_db_row *row)
{
    return sqlite3_data_count(row->h);
}

static int sq_is_null(const struct nb_db_row *row, int col)
{
    return sqlite3_column_type(row->h, col) == SQLITE_NULL;
}

static int64_t sq_int(const struct nb_db_row *row, int col)
{
    return sqlite3_column_int64(row->h, col);
}

static const char *sq_text(const struct nb_db_row *row, int col)
{
    return (const char *)sqlite3_column_text(row->h, col);
}

const struct nb_db_ops nb_db_sqlite_ops = {
    .name = "sqlite",
    .begin_sql = "BEGIN IMMEDIATE",
    .advisory_locks = 0,
    .one_writer = 1,
    .connect = sq_connect,
    .disconnect = sq_disconnect,
    .check = sq_check,
    .exec = sq_exec,
    .script = sq_script,
    .columns = sq_columns,
    .is_null = sq_is_null,
    .get_int = sq_int,
    .get_text = sq_text,
};
