/* db_pg.c - the PostgreSQL backend of db.h, over libpq.
 *
 * Every statement is one PQexecParams round trip with parameters sent as
 * text, apart from the SQL (never spliced into it). The shared SQL's ?N
 * placeholders become $N (db.c's scanner, which leaves quoted text and
 * comments alone). Errors are told apart by SQLSTATE, not by message
 * text: 23505 is a duplicate key, class 42 (syntax, unknown table...) and
 * the other data errors are bugs (NB_ERR_INVAL), and a connection that
 * failed is NB_ERR_IO; a broken connection is reset when next acquired.
 */
#include <inttypes.h>
#include <stdint.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_impl.h"

#define PG_INT8OID 20 /* pg_type.oid of bigint (catalog/pg_type_d.h) */

static PGconn *PG(const struct nb_db_conn *c)
{
    return c->be;
}

/* libpq prints NOTICEs ("relation already exists, skipping") to stderr;
 * they are not errors and would only clutter the server's log. */
static void pg_quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* One line: libpq's messages end with a newline and may hold several. */
static void one_line(char *msg)
{
    char *s = msg;
    for (; *s; s++)
        if (*s == '\n' || *s == '\r')
            *s = ' ';
    while (s > msg && s[-1] == ' ')
        *--s = '\0';
}

static nb_err pg_connect(struct nb_db_conn *c, const char *conninfo)
{
    PGconn *pg = PQconnectdb(conninfo);
    if (!pg)
        return nb_db_fail(c, NB_ERR_NOMEM, "postgresql: out of memory");
    c->be = pg;
    if (PQstatus(pg) != CONNECTION_OK) {
        nb_db_fail(c, NB_ERR_IO, "postgresql: cannot connect: %s", PQerrorMessage(pg));
        one_line(c->err);
        PQfinish(pg);
        c->be = NULL;
        return NB_ERR_IO;
    }
    PQsetNoticeProcessor(pg, pg_quiet, NULL);
    if (PQsetClientEncoding(pg, "UTF8")) {
        nb_db_fail(c, NB_ERR_IO, "postgresql: cannot set client encoding UTF8: %s",
                   PQerrorMessage(pg));
        one_line(c->err);
        PQfinish(pg);
        c->be = NULL;
        return NB_ERR_IO;
    }
    return NB_OK;
}

static void pg_disconnect(struct nb_db_conn *c)
{
    if (c->be)
        PQfinish(PG(c));
    c->be = NULL;
}

/* A connection that failed (server restarted, network cut) stays
 * CONNECTION_BAD; reset it now rather than fail the next request too. If
 * the server is still away, the reset fails and so will the statements,
 * with NB_ERR_IO; the next acquire tries again. */
static void pg_check(struct nb_db_conn *c)
{
    if (PQstatus(PG(c)) == CONNECTION_BAD) {
        PQreset(PG(c));
        if (PQstatus(PG(c)) == CONNECTION_OK)
            PQsetClientEncoding(PG(c), "UTF8");
    }
}

/* The error of a failed result (or of the connection when res is NULL):
 * SQLSTATE -> nb_err. */
static nb_err pg_fail(struct nb_db_conn *c, const PGresult *res, const char *sql)
{
    PGconn *pg = PG(c);
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *text = res ? PQresultErrorMessage(res) : PQerrorMessage(pg);
    nb_err err;
    if (PQstatus(pg) == CONNECTION_BAD || !state)
        err = NB_ERR_IO; /* no SQLSTATE: libpq's own error, the link */
    else if (!strcmp(state, "23505"))
        err = NB_ERR_DUPLICATE;
    else if (!strncmp(state, "08", 2) || /* connection exception */
             !strncmp(state, "40", 2) || /* serialization failure, deadlock */
             !strncmp(state, "53", 2) || /* insufficient resources */
             !strncmp(state, "57", 2) || /* shutdown, cancel */
             !strncmp(state, "58", 2) || /* system error (I/O) */
             !strncmp(state, "XX", 2))   /* internal error */
        err = NB_ERR_IO;
    else
        err = NB_ERR_INVAL; /* 42 syntax/unknown, 22 data, 23 constraint, ... */
    nb_db_fail(c, err, "postgresql: %s%s%s: %.200s", state ? state : "",
               state ? " " : "", text && *text ? text : "no answer", sql ? sql : "");
    one_line(c->err);
    return err;
}

static nb_err pg_exec(struct nb_db_conn *c, const char *sql,
                      const struct nb_db_val *params, unsigned n_params,
                      nb_db_row_fn fn, void *arg, int64_t *changes)
{
    size_t len = strlen(sql);
    /* One allocation: the rewritten SQL, then per parameter its value
     * pointer, type and the text of an integer (20 digits, sign, NUL). */
    size_t need = len + 1 + n_params * (sizeof(char *) + sizeof(Oid) + 24);
    char *mem = malloc(need + sizeof(char *)); /* slack for alignment */
    if (!mem)
        return nb_db_fail(c, NB_ERR_NOMEM, "postgresql: out of memory");
    char *q = mem;
    nb_db_scan_params(sql, q); /* db.c has checked it: ?N -> $N */
    uintptr_t at = (uintptr_t)(q + len + 1);
    at = (at + sizeof(char *) - 1) & ~(uintptr_t)(sizeof(char *) - 1);
    const char **values = (const char **)at;
    Oid *types = (Oid *)(values + n_params);
    char *ints = (char *)(types + n_params);

    for (unsigned i = 0; i < n_params; i++) {
        const struct nb_db_val *v = &params[i];
        types[i] = 0; /* the server infers it from where ?N stands */
        values[i] = NULL;
        if (v->type == NB_DB_INT) {
            /* bigint, so "?1 IS NULL", "?1 + 1" or COALESCE(?1, 0) have a
             * type to work with, as they do on SQLite. */
            types[i] = PG_INT8OID;
            snprintf(ints + 24 * i, 24, "%" PRId64, v->i);
            values[i] = ints + 24 * i;
        } else if (v->type == NB_DB_TEXT) {
            values[i] = v->s;
        }
    }

    PGresult *res = PQexecParams(PG(c), q, (int)n_params, types, values, NULL, NULL, 0);
    nb_err err = NB_OK;
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        if (fn) {
            int n = PQntuples(res);
            for (int r = 0; r < n; r++) {
                struct nb_db_row row = {&nb_db_pg_ops, res, r};
                if (fn(arg, &row))
                    break;
            }
        }
        /* PQcmdTuples also counts the rows of a SELECT; db.h's `changes`
         * is rows written, so only for the statements that write. */
        const char *tag = PQcmdStatus(res);
        if (changes && (!strncmp(tag, "INSERT", 6) || !strncmp(tag, "UPDATE", 6) ||
                        !strncmp(tag, "DELETE", 6) || !strncmp(tag, "MERGE", 5)))
            *changes = strtoll(PQcmdTuples(res), NULL, 10);
    } else if (st == PGRES_EMPTY_QUERY) {
        err = nb_db_fail(c, NB_ERR_INVAL, "postgresql: no statement in: %.200s", sql);
    } else {
        err = pg_fail(c, res, sql);
    }
    PQclear(res);
    free(mem);
    return err;
}

static nb_err pg_script(struct nb_db_conn *c, const char *sql)
{
    /* PQexec takes several statements (the simple query protocol). */
    PGresult *res = PQexec(PG(c), sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    nb_err err = NB_OK;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY)
        err = pg_fail(c, res, NULL);
    PQclear(res);
    return err;
}

static int pg_columns(const struct nb_db_row *row)
{
    return PQnfields(row->h);
}

static int pg_is_null(const struct nb_db_row *row, int col)
{
    return PQgetisnull(row->h, row->r, col);
}

static int64_t pg_int(const struct nb_db_row *row, int col)
{
    const char *v = PQgetvalue(row->h, row->r, col);
    if (!strcmp(v, "t")) /* boolean results, as SQLite's 1 and 0 */
        return 1;
    if (!strcmp(v, "f"))
        return 0;
    return strtoll(v, NULL, 10);
}

static const char *pg_text(const struct nb_db_row *row, int col)
{
    return PQgetvalue(row->h, row->r, col);
}

const struct nb_db_ops nb_db_pg_ops = {
    .name = "postgresql",
    .begin_sql = "BEGIN",
    .advisory_locks = 1,
    .connect = pg_connect,
    .disconnect = pg_disconnect,
    .check = pg_check,
    .exec = pg_exec,
    .script = pg_script,
    .columns = pg_columns,
    .is_null = pg_is_null,
    .get_int = pg_int,
    .get_text = pg_text,
};
