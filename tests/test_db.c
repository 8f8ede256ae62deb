/* test_db.c - the statements of the server's SQL layer
 * (cmd/nobrick-server/db.h), the same suite on SQLite (a temporary file)
 * always and on PostgreSQL when NB_TEST_DB holds a postgresql:// URL
 * (tests/test_db_pg.sh starts a private cluster for it). The pool,
 * threads and connection handling are in test_db_pool.c.
 *
 * Covered: parameters of every type and NULL, SQL metacharacters and
 * unicode stored and read back verbatim, ?N reused and out of order, "?"
 * inside literals, identifiers and comments left alone (and the scanner
 * on its own), duplicate key, other constraints, bad SQL, transactions
 * (commit, rollback, the failed-transaction rule, release rolling back,
 * isolation from another connection), change counts, RETURNING, ON
 * CONFLICT DO UPDATE / DO NOTHING, early stop of the row callback, a
 * query nested in a row callback, scripts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "db.h"
#include "db_impl.h" /* nb_db_scan_params, tested directly */
#include "dbtest.h"

static void test_backend(void **state)
{
    struct fx *f = *state;
    const char *want = strncmp(f->url, "postgres", 8) ? "sqlite" : "postgresql";
    assert_string_equal(nb_db_backend(f->db), want);
}

static void test_param_types(void **state)
{
    struct fx *f = *state;
    struct nb_db_conn *c = nb_db_acquire(f->db);
    script(c, "DROP TABLE IF EXISTS tdb_vals;"
              "CREATE TABLE tdb_vals (id BIGINT PRIMARY KEY, n BIGINT, s TEXT)");
    const char *ins = "INSERT INTO tdb_vals (id, n, s) VALUES (?1, ?2, ?3)";
    struct nb_db_val p1[] = {NB_DB_I(1), NB_DB_I(42), NB_DB_S("forty-two")};
    struct nb_db_val p2[] = {NB_DB_I(2), NB_DB_NUL, NB_DB_S(NULL)};
    struct nb_db_val p3[] = {NB_DB_I(3), NB_DB_I(INT64_MIN), NB_DB_S("")};
    struct nb_db_val p4[] = {NB_DB_I(4), NB_DB_I(INT64_MAX), NB_DB_S("x")};
    struct nb_db_val p5[] = {NB_DB_I(5), NB_DB_I(-1), NB_DB_NUL};
    exec_ok(c, ins, p1, 3, NULL, NULL, NULL);
    exec_ok(c, ins, p2, 3, NULL, NULL, NULL);
    exec_ok(c, ins, p3, 3, NULL, NULL, NULL);
    exec_ok(c, ins, p4, 3, NULL, NULL, NULL);
    exec_ok(c, ins, p5, 3, NULL, NULL, NULL);

    const char *sel_n = "SELECT n FROM tdb_vals WHERE id = ?1";
    const char *sel_s = "SELECT s FROM tdb_vals WHERE id = ?1";
    struct nb_db_val id;
    struct one o;
    id = NB_DB_I(1);
    o = query_one(c, sel_n, &id, 1);
    assert_false(o.null);
    assert_int_equal(o.i, 42);
    assert_string_equal(o.s, "42"); /* an integer read as text */
    o = query_one(c, sel_s, &id, 1);
    assert_string_equal(o.s, "forty-two");
    id = NB_DB_I(2);
    o = query_one(c, sel_n, &id, 1);
    assert_true(o.null);
    assert_int_equal(o.i, 0);
    o = query_one(c, sel_s, &id, 1);
    assert_true(o.null);
    id = NB_DB_I(3);
    assert_true(query_int(c, sel_n, &id, 1) == INT64_MIN);
    o = query_one(c, sel_s, &id, 1);
    assert_false(o.null); /* an empty string is not NULL */
    assert_string_equal(o.s, "");
    id = NB_DB_I(4);
    assert_true(query_int(c, sel_n, &id, 1) == INT64_MAX);
    id = NB_DB_I(5);
    assert_int_equal(query_int(c, sel_n, &id, 1), -1);

    /* WHERE ... IS NULL with a NULL parameter in a typed place. */
    struct nb_db_val nul = NB_DB_NUL;
    assert_int_equal(query_int(c, "SELECT COUNT(*) FROM tdb_vals WHERE s IS NOT DISTINCT FROM ?1",
                               &nul, 1), 2);
    /* An INT parameter where nothing else gives the type (typed bigint). */
    struct nb_db_val seven = NB_DB_I(7);
    assert_int_equal(query_int(c, "SELECT ?1 + 1", &seven, 1), 8);
    assert_int_equal(query_int(c, "SELECT COALESCE(?1, 0)", &seven, 1), 7);
    assert_int_equal(query_int(c, "SELECT CASE WHEN ?1 IS NULL THEN 1 ELSE 0 END",
                               &seven, 1), 0);
    nb_db_release(f->db, c);
}


struct rowinfo {
    int cols;
    int null_beyond;
    int64_t int_beyond;
    const char *text_beyond;
    int64_t b_true, b_false;
    char text[64];
};

static int rowinfo_fn(void *arg, const struct nb_db_row *row)
{
    struct rowinfo *r = arg;
    r->cols = nb_db_columns(row);
    r->null_beyond = nb_db_is_null(row, r->cols) && nb_db_is_null(row, -1);
    r->int_beyond = nb_db_int(row, r->cols);
    r->text_beyond = nb_db_text(row, 99);
    r->b_true = nb_db_int(row, 0);
    r->b_false = nb_db_int(row, 1);
    snprintf(r->text, sizeof r->text, "%s", nb_db_text(row, 2));
    return 0;
}

static void test_row_access(void **state)
{
    struct fx *f = *state;
    struct nb_db_conn *c = nb_db_acquire(f->db);
    struct rowinfo r = {0};
    struct nb_db_val p[] = {NB_DB_I(3), NB_DB_S("abc")};
    /* Comparisons come back as 1/0 on both (PostgreSQL's "t"/"f"). */
    exec_ok(c, "SELECT ?1 > 2, ?1 < 2, ?2", p, 2, rowinfo_fn, &r, NULL);
    assert_int_equal(r.cols, 3);
    assert_true(r.null_beyond);
    assert_int_equal(r.int_beyond, 0);
    assert_null(r.text_beyond);
    assert_int_equal(r.b_true, 1);
    assert_int_equal(r.b_false, 0);
    assert_string_equal(r.text, "abc");
    nb_db_release(f->db, c);
}

/* Text that would do damage if it were ever spliced into SQL, or mangled
 * by an escaping layer: it must come back byte for byte. */
static const char *const nasty[] = {
    "'; DROP TABLE tdb_meta; --",
    "Robert'); DROP TABLE tdb_meta;--",
    "it's",
    "''",
    "\"double\" \"\"quotes\"\"",
    "back\\slash \\' \\\\ \\n",
    "E'\\x41'",
    "?1 ?2 $1 $$ $tag$ :name @p",
    "-- not a comment /* nor this */",
    "%s %n %d",
    "line\nbreak\ttab\rcr",
    "unicode: \xc3\xa9\xc3\xbc \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x9a\x80 \xe2\x80\x8f",
    "",
    " ",
    ";",
};

static void test_metacharacters(void **state)
{
    struct fx *f = *state;
    struct nb_db_conn *c = nb_db_acquire(f->db);
    script(c, "DROP TABLE IF EXISTS tdb_meta;"
              "CREATE TABLE tdb_meta (id BIGINT PRIMARY KEY, s TEXT NOT NULL)");
    size_t n = sizeof nasty / sizeof nasty[0];
    for (size_t i = 0; i < n; i++) {
        struct nb_db_val p[] = {NB_DB_I(i), NB_DB_S(nasty[i])};
        exec_ok(c, "INSERT INTO tdb_meta (id, s) VALUES (?1, ?2)", p, 2, NULL, NULL, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        struct nb_db_val id = NB_DB_I(i);
        struct one o = query_one(c, "SELECT s FROM tdb_meta WHERE id = ?1", &id, 1);
        assert_string_equal(o.s, nasty[i]);
        /* ... and it finds itself when used as a key. */
        struct nb_db_val s = NB_DB_S(nasty[i]);
        assert_int_equal(query_int(c, "SELECT id FROM tdb_meta WHERE s = ?1", &s, 1),
                         (int64_t)i);
    }
    assert_int_equal(query_int(c, "SELECT COUNT(*) FROM tdb_meta", NULL, 0), (int64_t)n);
    nb_db_release(f->db, c);
}

static void test_param_reuse(void **state)
{
    struct fx *f = *state;
    struct nb_db_conn *c = nb_db_acquire(f->db);
    struct nb_db_val ab[] = {NB_DB_S("a"), NB_DB_S("b")};
    struct one o = query_one(c, "SELECT ?2 || '-' || ?1 || '-' || ?2", ab, 2);
    assert_string_equal(o.s, "b-a-b");
    struct nb_db_val nums[] = {NB_DB_I(10), NB_DB_I(3)};
    assert_int_equal(query_int(c, "SELECT ?2 - ?1 + ?2 * 100", nums, 2), 293);

    script(c, "DROP TABLE IF EXISTS tdb_reuse;"
              "CREATE TABLE tdb_reuse (id BIGINT PRIMARY KEY, a TEXT, b TEXT, n BIGINT)");
    struct nb_db_val p[] = {NB_DB_S("first"), NB_DB_I(7), NB_DB_S("third")};
    exec_ok(c, "INSERT INTO tdb_reuse (id, a, b, n) VALUES (?2, ?3, ?1, ?2)", p, 3, NULL,
            NULL, NULL);
    struct nb_db_val id = NB_DB_I(7);
    o = query_one(c, "SELECT a || '/' || b || '/' || n FROM tdb_reuse WHERE id = ?1", &id, 1);
    assert_string_equal(o.s, "third/first/7");
    nb_db_release(f->db, c);
}

static void test_question_marks(void **state)
{
    struct fx *f = *state;
    struct nb_db_conn *c = nb_db_acquire(f->db);
    struct nb_db_val x = NB_DB_S("x");
    struct one o = query_one(c, "SELECT '?1 and ?2 stay' || ?1", &x, 1);
    assert_string_equal(o.s, "?1 and ?2 stayx");
    o = query_one(c, "SELECT 'it''s ?2' -- ?3 in a comment\n || ?1", &x, 1);
    assert_string_equal(o.s, "it's ?2x");
    o = query_one(c, "SELECT /* ?9 */ 'what?' || ?1", &x, 1);
    assert_string_equal(o.s, "what?x");
    script(c, "DROP TABLE IF EXISTS tdb_q; CREATE TABLE tdb_q (\"a?1\" TEXT)");
    exec_ok(c, "INSERT INTO tdb_q (\"a?1\") VALUES (?1)", &x, 1, NULL, NULL, NULL);
    o = query_one(c, "SELECT \"a?1\" FROM tdb_q", NULL, 0);
    assert_string_equal(o.s, "x");

    /* Placeholders that are not ?1..?N, or a count that does not match. */
    assert_int_equal(nb_db_exec(c, "SELECT ?", &x, 1, NULL, NULL, NULL), NB_ERR_INVAL);
    assert_int_equal(nb_db_exec(c, "SELECT ?0", &x, 1, NULL, NULL, NULL), NB_ERR_INVAL);
    assert_int_equal(nb_db_exec(c, "SELECT ?1000", &x, 1, NULL, NULL, NULL), NB_ERR_INVAL);
    assert_int_equal(nb_db_exec(c, "SELECT ?1, ?2", &x, 1, NULL, NULL, NULL), NB_ERR_INVAL);
    assert_non_null(strstr(nb_db_errmsg(c), "?2"));
    assert_int_equal(nb_db_exec(c, "SELECT 1", &x, 1, NULL, NULL, NULL), NB_ERR_INVAL);
    nb_db_release(f->db, c);
}

/* The scanner on its own, on what only PostgreSQL would parse. */
static void test_scan_params(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
        int max;
    } v[] = {
        {"SELECT 1", "SELECT 1", 0},
        {"?1", "$1", 1},
        {"?2 ?1 ?2", "$2 $1 $2", 2},
        {"?12,?3", "$12,$3", 12},
        {"'?1' ?1", "'?1' $1", 1},
        {"'a''?1' ?2", "'a''?1' $2", 2},
        {"E'\\'?1' ?1", "E'\\'?1' $1", 1},
        {"\"x?1\"\"?2\" ?3", "\"x?1\"\"?2\" $3", 3},
        {"$$ ?1 $$ ?2", "$$ ?1 $$ $2", 2},
        {"$t$ ?1 $x$ ?1 $t$ ?2", "$t$ ?1 $x$ ?1 $t$ $2", 2},
        {"$1 ?1", "$1 $1", 1},
        {"-- ?5\n?1", "-- ?5\n$1", 1},
        {"/* /* ?5 */ ?6 */ ?1", "/* /* ?5 */ ?6 */ $1", 1},
        {"'unterminated ?1", "'unterminated ?1", 0},
        {"?999", "$999", 999},
        {"?", NULL, -1},
        {"?a", NULL, -1},
        {"?0", NULL, -1},
        {"?1000", NULL, -1},
        {"?99999999999999999999", NULL, -1},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char out[64];
        int max = nb_db_scan_params(v[i].in, out);
        if (max != v[i].max)
            fail_msg("scan %s: %d, want %d", v[i].in, max, v[i].max);
        if (v[i].out)
            assert_string_equal(out, v[i].out);
    }
}

static void test_duplicate(void **state)
{
    struct fx *f = *state;
    struct nb_db_conn *c = nb_db_acquire(f->db);
    script(c, "DROP TABLE IF EXISTS tdb_dup;"
              "CREATE TABLE tdb_dup (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE)");
    const char *ins = "INSERT INTO tdb_dup (id, name) VALUES (?1, ?2)";
    struct nb_db_val p[] = {NB_DB_I(1), NB_DB_S("one")};
    exec_ok(c, ins, p, 2, NULL, NULL, NULL);
    assert_int_equal(nb_db_exec(c, ins, p, 2, NULL, NULL, NULL), NB_ERR_DUPLICATE);
    assert_true(strlen(nb_db_errmsg(c)) > 0);
    struct nb_db_val q[] = {NB_DB_I(2), NB_DB_S("one")}; /* unique column */
    assert_int_equal(nb_db_exec(c, ins, q, 2, NULL, NULL, NULL), NB_ERR_DUPLICATE);
    /* Other constraints are bugs, not duplicates. */
    struct nb_db_val r[] = {NB_DB_I(3), NB_DB_NUL};
    assert_int_equal(nb_db_exec(c, ins, r, 2, NULL, NULL, NULL), NB_ERR_INVAL);
    /* The connection is still fine. */
    assert_int_equal(query_int(c, "SELECT COUNT(*) FROM tdb_dup", NULL, 0), 1);
    nb_db_release(f->db, c);
}

static void test_bad_sql(void **state)
{
    struct fx *f = *state;
    struct nb_db_conn *c = nb_db_acquire(f->db);
    assert_int_equal(nb_db_exec(c, "SELEC 1", NULL, 0, NULL, NULL, NULL), NB_ERR_INVAL);
    assert_non_null(strstr(nb_db_errmsg(c), "syntax"));
    assert_int_equal(nb_db_exec(c, "SELECT * FROM tdb_no_such_table", NULL, 0, NULL, NULL,
                                NULL),
                     NB_ERR_INVAL);
    assert_non_null(strstr(nb_db_errmsg(c), "tdb_no_such_table"));
    assert_null(strchr(nb_db_errmsg(c), '\n')); /* one line, for the log */
    assert_int_equal(nb_db_exec(c, "SELECT 1; SELECT 2", NULL, 0, NULL, NULL, NULL),
                     NB_ERR_INVAL);
    assert_int_equal(nb_db_exec(c, "", NULL, 0, NULL, NULL, NULL), NB_ERR_INVAL);
    assert_int_equal(nb_db_exec_script(c, "SELECT 1; SELEC 2"), NB_ERR_INVAL);
    assert_non_null(strstr(nb_db_errmsg(c), "syntax"));
    assert_int_equal(query_int(c, "SELECT 5", NULL, 0), 5);
    nb_db_release(f->db, c);
}

static void test_transactions(void **state)
{
    struct fx *f = *state;
    struct nb_db_conn *c = nb_db_acquire(f->db);
    struct nb_db_conn *other = nb_db_acquire(f->db);
    script(c, "DROP TABLE IF EXISTS tdb_tx;"
              "CREATE TABLE tdb_tx (id BIGINT PRIMARY KEY)");
    const char *ins = "INSERT INTO tdb_tx (id) VALUES (?1)";
    struct nb_db_val one = NB_DB_I(1), two = NB_DB_I(2), three = NB_DB_I(3);

    /* Rollback. */
    assert_int_equal(nb_db_begin(c), NB_OK);
    exec_ok(c, ins, &one, 1, NULL, NULL, NULL);
    assert_int_equal(count_rows(c, "tdb_tx"), 1);
    nb_db_rollback(c);
    assert_int_equal(count_rows(c, "tdb_tx"), 0);

    /* Commit; not visible to another connection before. */
    assert_int_equal(nb_db_begin(c), NB_OK);
    assert_int_equal(nb_db_begin(c), NB_ERR_STATE);
    exec_ok(c, ins, &one, 1, NULL, NULL, NULL);
    assert_int_equal(count_rows(other, "tdb_tx"), 0);
    assert_int_equal(nb_db_commit(c), NB_OK);
    assert_int_equal(count_rows(other, "tdb_tx"), 1);
    assert_int_equal(nb_db_commit(c), NB_ERR_STATE);
    nb_db_rollback(c); /* no transaction: nothing happens */

    /* A failed statement fails the transaction, on both backends. */
    assert_int_equal(nb_db_begin(c), NB_OK);
    exec_ok(c, ins, &two, 1, NULL, NULL, NULL);
    assert_int_equal(nb_db_exec(c, ins, &one, 1, NULL, NULL, NULL), NB_ERR_DUPLICATE);
    assert_int_equal(nb_db_exec(c, ins, &three, 1, NULL, NULL, NULL), NB_ERR_STATE);
    assert_int_equal(nb_db_exec_script(c, "SELECT 1"), NB_ERR_STATE);
    assert_int_equal(nb_db_commit(c), NB_ERR_STATE);
    assert_int_equal(count_rows(c, "tdb_tx"), 1); /* 2 rolled back */
    /* ... and rollback clears it. */
    assert_int_equal(nb_db_begin(c), NB_OK);
    assert_int_equal(nb_db_exec(c, "SELEC", NULL, 0, NULL, NULL, NULL), NB_ERR_INVAL);
    nb_db_rollback(c);
    assert_int_equal(nb_db_begin(c), NB_OK);
    exec_ok(c, ins, &two, 1, NULL, NULL, NULL);
    assert_int_equal(nb_db_commit(c), NB_OK);
    assert_int_equal(count_rows(c, "tdb_tx"), 2);

    /* Release rolls an open transaction back. */
    nb_db_release(f->db, other);
    assert_int_equal(nb_db_begin(c), NB_OK);
    exec_ok(c, ins, &three, 1, NULL, NULL, NULL);
    nb_db_release(f->db, c);
    c = nb_db_acquire(f->db);
    assert_int_equal(count_rows(c, "tdb_tx"), 2);
    assert_int_equal(nb_db_begin(c), NB_OK); /* clean: no transaction left */
    nb_db_rollback(c);
    nb_db_release(f->db, c);
}

static void test_changes(void **state)
{
    struct fx *f = *state;
    struct nb_db_conn *c = nb_db_acquire(f->db);
    int64_t n = -1;
    script(c, "DROP TABLE IF EXISTS tdb_ch;"
              "CREATE TABLE tdb_ch (id BIGINT PRIMARY KEY, v BIGINT)");
    exec_ok(c, "INSERT INTO tdb_ch (id, v) VALUES (1, 0), (2, 0), (3, 0)", NULL, 0, NULL,
            NULL, &n);
    assert_int_equal(n, 3);
    struct nb_db_val v = NB_DB_I(5);
    exec_ok(c, "UPDATE tdb_ch SET v = ?1", &v, 1, NULL, NULL, &n);
    assert_int_equal(n, 3);
    exec_ok(c, "UPDATE tdb_ch SET v = ?1 WHERE id = 2", &v, 1, NULL, NULL, &n);
    assert_int_equal(n, 1);
    exec_ok(c, "DELETE FROM tdb_ch WHERE id = 99", NULL, 0, NULL, NULL, &n);
    assert_int_equal(n, 0);
    exec_ok(c, "SELECT * FROM tdb_ch", NULL, 0, NULL, NULL, &n);
    assert_int_equal(n, 0); /* a SELECT writes nothing */
    exec_ok(c, "CREATE TABLE IF NOT EXISTS tdb_ch (id BIGINT)", NULL, 0, NULL, NULL, &n);
    assert_int_equal(n, 0);
    exec_ok(c, "DELETE FROM tdb_ch WHERE id >= 2", NULL, 0, NULL, NULL, &n);
    assert_int_equal(n, 2);
    /* changes is 0 after an error too. */
    n = -1;
    assert_int_equal(nb_db_exec(c, "SELEC", NULL, 0, NULL, NULL, &n), NB_ERR_INVAL);
    assert_int_equal(n, 0);
    nb_db_release(f->db, c);
}

struct collect {
    int rows;
    int stop_after; /* 0: all */
    int64_t ids[16];
    char names[16][32];
};

static int collect_fn(void *arg, const struct nb_db_row *row)
{
    struct collect *k = arg;
    if (k->rows < 16) {
        k->ids[k->rows] = nb_db_int(row, 0);
        const char *s = nb_db_columns(row) > 1 ? nb_db_text(row, 1) : NULL;
        snprintf(k->names[k->rows], sizeof k->names[0], "%s", s ? s : "(null)");
    }
    k->rows++;
    return k->stop_after && k->rows >= k->stop_after;
}

static void test_returning_upsert(void **state)
{
    struct fx *f = *state;
    struct nb_db_conn *c = nb_db_acquire(f->db);
    script(c, "DROP TABLE IF EXISTS tdb_up;"
              "CREATE TABLE tdb_up (name TEXT PRIMARY KEY, hits BIGINT NOT NULL, note TEXT)");
    const char *up = "INSERT INTO tdb_up (name, hits, note) VALUES (?1, ?2, ?3) "
                     "ON CONFLICT (name) DO UPDATE SET hits = tdb_up.hits + excluded.hits, "
                     "note = excluded.note RETURNING hits, note";
    struct collect k = {0};
    int64_t n = -1;
    struct nb_db_val p[] = {NB_DB_S("dev-1"), NB_DB_I(2), NB_DB_S("first")};
    exec_ok(c, up, p, 3, collect_fn, &k, &n);
    assert_int_equal(k.rows, 1);
    assert_int_equal(k.ids[0], 2);
    assert_string_equal(k.names[0], "first");
    assert_int_equal(n, 1);
    struct nb_db_val q[] = {NB_DB_S("dev-1"), NB_DB_I(5), NB_DB_S("second")};
    memset(&k, 0, sizeof k);
    exec_ok(c, up, q, 3, collect_fn, &k, &n);
    assert_int_equal(k.rows, 1);
    assert_int_equal(k.ids[0], 7);
    assert_string_equal(k.names[0], "second");
    assert_int_equal(n, 1);
    assert_int_equal(count_rows(c, "tdb_up"), 1);

    /* DO NOTHING returns no row for the conflicting one. */
    memset(&k, 0, sizeof k);
    exec_ok(c, "INSERT INTO tdb_up (name, hits) VALUES (?1, 1) ON CONFLICT DO NOTHING "
               "RETURNING hits",
            p, 1, collect_fn, &k, &n);
    assert_int_equal(k.rows, 0);
    assert_int_equal(n, 0);

    /* UPDATE ... RETURNING, and a NULL through RETURNING. */
    memset(&k, 0, sizeof k);
    exec_ok(c, "UPDATE tdb_up SET note = NULL WHERE name = ?1 RETURNING hits, note", p, 1,
            collect_fn, &k, &n);
    assert_int_equal(k.rows, 1);
    assert_string_equal(k.names[0], "(null)");
    nb_db_release(f->db, c);
}

static void test_early_stop(void **state)
{
    struct fx *f = *state;
    struct nb_db_conn *c = nb_db_acquire(f->db);
    script(c, "DROP TABLE IF EXISTS tdb_stop;"
              "CREATE TABLE tdb_stop (id BIGINT PRIMARY KEY, name TEXT)");
    for (int i = 1; i <= 10; i++) {
        struct nb_db_val p = NB_DB_I(i);
        exec_ok(c, "INSERT INTO tdb_stop (id, name) VALUES (?1, 'n')", &p, 1, NULL, NULL,
                NULL);
    }
    const char *sel = "SELECT id, name FROM tdb_stop ORDER BY id";
    struct collect k = {.stop_after = 3};
    exec_ok(c, sel, NULL, 0, collect_fn, &k, NULL);
    assert_int_equal(k.rows, 3);
    assert_int_equal(k.ids[2], 3);
    /* The same (cached) statement again, to the end. */
    memset(&k, 0, sizeof k);
    exec_ok(c, sel, NULL, 0, collect_fn, &k, NULL);
    assert_int_equal(k.rows, 10);
    assert_int_equal(k.ids[9], 10);

    /* Stopping early in a RETURNING does not stop the writes. */
    memset(&k, 0, sizeof k);
    k.stop_after = 1;
    int64_t n = -1;
    exec_ok(c, "INSERT INTO tdb_stop (id, name) VALUES (11, 'a'), (12, 'b'), (13, 'c') "
               "RETURNING id",
            NULL, 0, collect_fn, &k, &n);
    assert_int_equal(k.rows, 1);
    assert_int_equal(n, 3);
    assert_int_equal(count_rows(c, "tdb_stop"), 13);
    nb_db_release(f->db, c);
}

/* A row callback that runs another statement on the same connection. */
struct nested {
    struct nb_db_conn *c;
    int64_t sum;
};

static int nested_fn(void *arg, const struct nb_db_row *row)
{
    struct nested *x = arg;
    struct nb_db_val id = NB_DB_I(nb_db_int(row, 0));
    struct one o = {0};
    if (nb_db_exec(x->c, "SELECT id FROM tdb_stop WHERE id = ?1", &id, 1, one_fn, &o, NULL))
        return 1;
    x->sum += o.i;
    return 0;
}

static void test_nested_query(void **state)
{
    struct fx *f = *state;
    struct nb_db_conn *c = nb_db_acquire(f->db);
    struct nested x = {c, 0};
    /* The inner statement is the outer's text: the cache must not hand
     * out the statement that is still running. */
    struct nb_db_val lim = NB_DB_I(4);
    exec_ok(c, "SELECT id FROM tdb_stop WHERE id <= ?1", &lim, 1, nested_fn, &x, NULL);
    assert_int_equal(x.sum, 1 + 2 + 3 + 4);
    x.sum = 0;
    exec_ok(c, "SELECT id FROM tdb_stop WHERE id = ?1", &lim, 1, nested_fn, &x, NULL);
    assert_int_equal(x.sum, 4);
    nb_db_release(f->db, c);
}

static void test_exec_script(void **state)
{
    struct fx *f = *state;
    struct nb_db_conn *c = nb_db_acquire(f->db);
    script(c, "DROP TABLE IF EXISTS tdb_s1;\n"
              "DROP TABLE IF EXISTS tdb_s2;\n"
              "-- a comment; with a semicolon\n"
              "CREATE TABLE tdb_s1 (id BIGINT PRIMARY KEY, s TEXT);\n"
              "CREATE TABLE tdb_s2 (id BIGINT PRIMARY KEY REFERENCES tdb_s1 (id));\n"
              "INSERT INTO tdb_s1 (id, s) VALUES (1, 'semi; colon ?1 ''q''');\n"
              "INSERT INTO tdb_s2 (id) VALUES (1);\n");
    struct one o = query_one(c, "SELECT s FROM tdb_s1", NULL, 0);
    assert_string_equal(o.s, "semi; colon ?1 'q'");
    /* Foreign keys are enforced (SQLite: PRAGMA foreign_keys=ON). */
    assert_int_equal(nb_db_exec(c, "INSERT INTO tdb_s2 (id) VALUES (2)", NULL, 0, NULL,
                                NULL, NULL),
                     NB_ERR_INVAL);
    /* A script inside a transaction is all or nothing. */
    assert_int_equal(nb_db_begin(c), NB_OK);
    assert_int_equal(nb_db_exec_script(c, "INSERT INTO tdb_s1 (id) VALUES (2);"
                                          "INSERT INTO tdb_s1 (id) VALUES (1);"),
                     NB_ERR_DUPLICATE);
    assert_int_equal(nb_db_commit(c), NB_ERR_STATE);
    assert_int_equal(count_rows(c, "tdb_s1"), 1);
    assert_int_equal(nb_db_exec_script(c, ""), NB_OK);
    nb_db_release(f->db, c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend),
        cmocka_unit_test(test_param_types),
        cmocka_unit_test(test_row_access),
        cmocka_unit_test(test_metacharacters),
        cmocka_unit_test(test_param_reuse),
        cmocka_unit_test(test_question_marks),
        cmocka_unit_test(test_scan_params),
        cmocka_unit_test(test_duplicate),
        cmocka_unit_test(test_bad_sql),
        cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_changes),
        cmocka_unit_test(test_returning_upsert),
        cmocka_unit_test(test_early_stop),
        cmocka_unit_test(test_nested_query),
        cmocka_unit_test(test_exec_script),
    };
    return dbtest_main("test_db", tests, sizeof tests / sizeof tests[0]);
}
