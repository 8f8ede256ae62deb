/* db_impl.h - what db.c (the pool, transactions, URL parsing) and the two
 * backends (db_sqlite.c, db_pg.c) share. Private to the SQL layer: the rest
 * of the server sees only db.h.
 *
 * One struct nb_db_ops per backend (MCUboot's swap_*.c behind one header):
 * db.c does everything that is the same for both (pool, transaction state,
 * the "a failed transaction stays failed" rule) and calls the backend only
 * for what differs.
 */
#ifndef NB_DB_IMPL_H
#define NB_DB_IMPL_H

#include <pthread.h>
#include <stdarg.h>

#include "db.h"

#define NB_DB_ERRLEN 512u     /* room for one backend error message */
#define NB_DB_MAX_PARAMS 999u /* ?1 .. ?999 (SQLite's historic limit) */

struct nb_db_ops;

/* How long a writer waits for the database (SQLite's busy timeout, and
 * the write gate below). */
#define NB_DB_WAIT_MS 30000

/* The write gate: one writer at a time, per pool, for a backend that
 * allows only one anyway (SQLite). Without it, writers queue in SQLite's
 * busy handler, which polls in sleeps of up to 100 ms and is not woken
 * when the lock is free: with a handful of concurrent writers the unlucky
 * ones waited seconds (p99 2.9 s in bench/server.sh). Here a waiter is
 * woken as soon as the writer before it is done. A flag and a condition
 * variable, not a bare mutex, so the wait can time out. */
struct nb_db_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC */
    int held;
};

/* Enter the gate (wait at most NB_DB_WAIT_MS; NB_ERR_IO with a message
 * in c->err when that is not enough) and leave it. */
nb_err nb_db_gate_enter(struct nb_db_conn *c);
void nb_db_gate_leave(struct nb_db_conn *c);

/* One connection. `be` is the backend's own state (sqlite3 * and its
 * statement cache, or PGconn *). */
struct nb_db_conn {
    const struct nb_db_ops *ops;
    void *be;
    int in_tx;     /* between nb_db_begin and commit/rollback */
    int tx_failed; /* a statement failed inside the open transaction */
    struct nb_db_gate *gate; /* the pool's write gate, or NULL: none */
    int gated;               /* this connection is in the gate now */
    char err[NB_DB_ERRLEN];
};

/* The row handed to a row callback: a backend handle and a row index
 * (PostgreSQL has all rows in one PGresult; SQLite ignores `r`). */
struct nb_db_row {
    const struct nb_db_ops *ops;
    void *h;
    int r;
};

struct nb_db_ops {
    const char *name;      /* "sqlite" or "postgresql" */
    const char *begin_sql; /* what nb_db_begin runs */
    int advisory_locks;    /* 1: nb_db_migration_lock takes a real lock */
    /* 1: one writer at a time (struct nb_db_gate): transactions enter the
     * gate in nb_db_begin, and the backend's exec and script enter it for
     * a write outside a transaction. */
    int one_writer;

    /* Open one connection to `target` (a path, or a libpq conninfo) and
     * set c->be. On failure writes a message into c->err. */
    nb_err (*connect)(struct nb_db_conn *c, const char *target);
    void (*disconnect)(struct nb_db_conn *c);
    /* On nb_db_acquire: make a connection found broken usable again. */
    void (*check)(struct nb_db_conn *c);
    nb_err (*exec)(struct nb_db_conn *c, const char *sql,
                   const struct nb_db_val *params, unsigned n_params,
                   nb_db_row_fn fn, void *arg, int64_t *changes);
    nb_err (*script)(struct nb_db_conn *c, const char *sql);

    int (*columns)(const struct nb_db_row *row);
    int (*is_null)(const struct nb_db_row *row, int col);
    int64_t (*get_int)(const struct nb_db_row *row, int col);
    const char *(*get_text)(const struct nb_db_row *row, int col);
};

extern const struct nb_db_ops nb_db_sqlite_ops;
extern const struct nb_db_ops nb_db_pg_ops;

/* Format a message into c->err (truncated to fit) and return err. */
nb_err nb_db_fail(struct nb_db_conn *c, nb_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Highest ?N in `sql` outside quoted text ('...', E'...', "...",
 * $tag$...$tag$) and comments (-- and nested C-style), 0 when there is none,
 * or -1 when a placeholder is malformed (a bare "?", "?0", or above
 * NB_DB_MAX_PARAMS). If `out` is not NULL it receives a copy of sql with
 * every ?N turned into $N: the same length, so out must hold
 * strlen(sql) + 1 bytes. */
int nb_db_scan_params(const char *sql, char *out);

#endif /* NB_DB_IMPL_H */
