/* db.h - the server's SQL layer: one interface, two backends.
 *
 * nobrick-server keeps everything in SQL: SQLite (default: one file, WAL)
 * or PostgreSQL (libpq; several stateless server processes may share one
 * database). Both run the same SQL text, written in the subset the two
 * share: BIGINT and TEXT columns, INSERT ... ON CONFLICT ... DO UPDATE,
 * RETURNING, no backend-specific functions. Placeholders are numbered
 * ?1, ?2, ... (SQLite's own syntax; the PostgreSQL backend rewrites them
 * to $1, $2, ... outside string literals).
 *
 * A struct nb_db is a pool of connections, safe to share between threads;
 * a thread takes one with nb_db_acquire() and gives it back with
 * nb_db_release(). A connection is used by one thread at a time.
 *
 * Durability: a call that returns NB_OK after a write (outside a
 * transaction) or nb_db_commit() has committed; SQLite runs with
 * journal_mode=WAL and synchronous=FULL, PostgreSQL with its defaults
 * (synchronous_commit on). So what the server acknowledged survives a
 * kill -9 of the server.
 */
#ifndef NB_DB_H
#define NB_DB_H

#include <stddef.h>
#include <stdint.h>

#include "nb_err.h"

enum nb_db_type { NB_DB_NULL = 0, NB_DB_INT, NB_DB_TEXT };

/* A parameter. TEXT values are NUL-terminated UTF-8, bound as they are
 * (never spliced into SQL text). */
struct nb_db_val {
    enum nb_db_type type;
    int64_t i;
    const char *s;
};

#define NB_DB_I(x) ((struct nb_db_val){NB_DB_INT, (int64_t)(x), NULL})
#define NB_DB_S(x) ((struct nb_db_val){(x) ? NB_DB_TEXT : NB_DB_NULL, 0, (x)})
#define NB_DB_NUL ((struct nb_db_val){NB_DB_NULL, 0, NULL})

struct nb_db;
struct nb_db_conn;
struct nb_db_row;

/* Open a pool of `pool_size` connections (at least 1). `url`:
 *   "sqlite:PATH" or a plain PATH        SQLite file (created if missing)
 *   "postgresql://..." or "postgres://..." or a libpq key=value string
 *                                        ("host=... dbname=...")
 * On failure returns an error and writes one line into msg (if given):
 * NB_ERR_INVAL for a URL it cannot use, NB_ERR_IO when the database does
 * not open or answer. */
nb_err nb_db_open(const char *url, unsigned pool_size, struct nb_db **out,
                  char *msg, size_t msglen);
void nb_db_close(struct nb_db *db);

/* "sqlite" or "postgresql". */
const char *nb_db_backend(const struct nb_db *db);

/* Take a free connection, waiting for one if all are in use (never
 * NULL); give it back when done (with no transaction open: release rolls
 * an open one back). A PostgreSQL connection found broken is reset on
 * acquire (if the database is still away, its statements return
 * NB_ERR_IO). */
struct nb_db_conn *nb_db_acquire(struct nb_db *db);
void nb_db_release(struct nb_db *db, struct nb_db_conn *c);

/* Transactions. begin is BEGIN IMMEDIATE on SQLite (takes the write lock
 * at once, so two writers never deadlock on an upgrade); NB_ERR_STATE if
 * one is already open.
 *
 * A statement that fails inside a transaction fails the transaction, on
 * both backends (PostgreSQL's rule, enforced on SQLite too so the two
 * behave alike): every later nb_db_exec/nb_db_exec_script returns
 * NB_ERR_STATE without running, and nb_db_commit rolls back and returns
 * NB_ERR_STATE. So "insert, and on NB_ERR_DUPLICATE update instead" inside
 * a transaction does not work: use INSERT ... ON CONFLICT.
 * commit returns NB_OK only when the transaction committed; on any error
 * it has been rolled back. rollback never fails (no transaction: no-op). */
nb_err nb_db_begin(struct nb_db_conn *c);
nb_err nb_db_commit(struct nb_db_conn *c);
void nb_db_rollback(struct nb_db_conn *c);

/* Called once per result row; return non-zero to stop early (nb_db_exec
 * then still returns NB_OK; the statement's writes, e.g. those of an
 * INSERT ... RETURNING, are all done). Column values are valid during the
 * call only. Columns count from 0; an out-of-range column reads as NULL.
 * nb_db_int reads an integer column; on PostgreSQL also a boolean
 * ("t" -> 1, "f" -> 0). */
typedef int (*nb_db_row_fn)(void *arg, const struct nb_db_row *row);

int nb_db_columns(const struct nb_db_row *row);
int nb_db_is_null(const struct nb_db_row *row, int col);
int64_t nb_db_int(const struct nb_db_row *row, int col);      /* NULL -> 0 */
const char *nb_db_text(const struct nb_db_row *row, int col); /* NULL -> NULL */

/* Run one statement with its parameters; `fn` (may be NULL) sees every
 * row; `changes` (may be NULL) gets the number of rows inserted, updated
 * or deleted (0 for a SELECT or DDL). The statement must use exactly
 * ?1 .. ?n_params (each any number of times, in any order); INT parameters
 * are typed bigint on PostgreSQL, TEXT and NULL ones take the type their
 * place in the SQL gives them. Errors: NB_ERR_DUPLICATE for a unique or
 * primary key violation, NB_ERR_INVAL for an SQL error or any other
 * constraint (a bug: the message says which), NB_ERR_IO for a busy or
 * lost database, NB_ERR_STATE in a failed transaction (see above).
 * nb_db_errmsg() gives the message of the last error on this connection
 * ("" if none). */
nb_err nb_db_exec(struct nb_db_conn *c, const char *sql,
                  const struct nb_db_val *params, unsigned n_params,
                  nb_db_row_fn fn, void *arg, int64_t *changes);
const char *nb_db_errmsg(const struct nb_db_conn *c);

/* Run a script of several statements without parameters (schema
 * migrations); "?" in it is not a placeholder. Errors as nb_db_exec. Not
 * atomic by itself on SQLite (each statement commits on its own): wrap it
 * in nb_db_begin/nb_db_commit for all or nothing. */
nb_err nb_db_exec_script(struct nb_db_conn *c, const char *sql);

/* Serialise schema migrations between server processes that share one
 * database: on PostgreSQL a session advisory lock (pg_advisory_lock on a
 * fixed key), waited for without a timeout and dropped by the server if
 * the connection dies; a no-op on SQLite, whose writers are serialised by
 * BEGIN IMMEDIATE anyway. Take it on one connection, run the migrations
 * (on the same connection), unlock, then release the connection. lock
 * returns NB_ERR_IO when the database does not answer. */
nb_err nb_db_migration_lock(struct nb_db_conn *c);
void nb_db_migration_unlock(struct nb_db_conn *c);

#endif /* NB_DB_H */
