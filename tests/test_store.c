/* test_store.c - the server's store (cmd/nobrick-server/store.h) on
 * SQLite, and on PostgreSQL when NB_TEST_DB holds a postgresql:// URL
 * (tests/test_db_pg.sh): the schema and its migrations, every store
 * function, unique constraints, SQL metacharacters stored as plain text,
 * the lazy rollout evaluation (step advance, automatic pause,
 * completion), and that a rollout to 100,000 devices creates no
 * per-device row until a device is offered it. Each test starts from an
 * empty, freshly migrated schema.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "srvtest.h"

#define EVIL "x'); DROP TABLE devices; --\"\\%_*?"

static int reset(void **state)
{
    struct fx *f = *state;
    srvtest_reset_db(f->db);
    return 0;
}

#define OK(call)                                                           \
    do {                                                                   \
        nb_err e_ = (call);                                                \
        if (e_)                                                            \
            fail_msg("%s: %s: %s", #call, nb_err_name(e_),                 \
                     nb_db_errmsg(c));                                     \
    } while (0)

static struct nb_db_conn *conn(void **state)
{
    struct fx *f = *state;
    return nb_db_acquire(f->db);
}

static void done(void **state, struct nb_db_conn *c)
{
    struct fx *f = *state;
    nb_db_release(f->db, c);
}

static void device(struct srv_device *d, const char *id, const char *hw)
{
    memset(d, 0, sizeof *d);
    snprintf(d->id, sizeof d->id, "%s", id);
    snprintf(d->hw_rev, sizeof d->hw_rev, "%s", hw);
    d->created_at = 100;
}

static struct nb_db *f_db(void **state)
{
    return ((struct fx *)*state)->db;
}

/* EXPLAIN QUERY PLAN's details, one after the other. */
static int plan_row(void *arg, const struct nb_db_row *row)
{
    char *plan = arg;
    const char *d = nb_db_text(row, 3);
    size_t n = strlen(plan);
    snprintf(plan + n, 512 - n, "%s; ", d ? d : "");
    return 0;
}

/* ------------------------------------------------------------- schema */

static void test_schema(void **state)
{
    struct fx *f = *state;
    struct nb_db_conn *c = conn(state);
    int64_t v = 0;
    OK(srv_schema_version(c, &v));
    assert_int_equal(v, SRV_SCHEMA_VERSION);
    /* Again: nothing to do, nothing breaks. */
    OK(srv_schema_migrate(c, nb_db_backend(f->db)));
    OK(srv_schema_version(c, &v));
    assert_int_equal(v, SRV_SCHEMA_VERSION);
    assert_int_equal(query_int(c, "SELECT COUNT(*) FROM schema_version", NULL, 0),
                     SRV_SCHEMA_VERSION);
    /* A database from a newer server is refused. */
    exec_ok(c, "INSERT INTO schema_version (version, applied_at) VALUES (999, 0)",
            NULL, 0, NULL, NULL, NULL);
    assert_int_equal(srv_schema_migrate(c, nb_db_backend(f->db)), NB_ERR_STATE);
    done(state, c);
}

static void test_counters(void **state)
{
    struct nb_db_conn *c = conn(state);
    int64_t a, b, x;
    OK(srv_store_next(c, "a", &a));
    OK(srv_store_next(c, "a", &b));
    OK(srv_store_next(c, EVIL, &x));
    assert_int_equal(a, 1);
    assert_int_equal(b, 2);
    assert_int_equal(x, 1);
    done(state, c);
}

/* ------------------------------------------------------------ devices */

static void test_device_create_get(void **state)
{
    struct nb_db_conn *c = conn(state);
    struct srv_device d, g;
    device(&d, "d-1", "sim-1");
    snprintf(d.group, sizeof d.group, "line-3");
    snprintf(d.tags[0], SRV_ST_ID, "eu");
    snprintf(d.tags[1], SRV_ST_ID, "beta");
    snprintf(d.tags[2], SRV_ST_ID, "eu");
    d.n_tags = 3;
    srv_token_sha256_hex("secret-1", d.token_sha256);
    d.enrol_pending = 1;
    OK(srv_store_device_create(c, &d));
    OK(srv_store_device_get(c, "d-1", &g));
    assert_string_equal(g.id, "d-1");
    assert_string_equal(g.hw_rev, "sim-1");
    assert_string_equal(g.group, "line-3");
    assert_int_equal(g.n_tags, 2);            /* sorted, unique */
    assert_string_equal(g.tags[0], "beta");
    assert_string_equal(g.tags[1], "eu");
    assert_string_equal(g.token_sha256, d.token_sha256);
    assert_int_equal(g.enrol_pending, 1);
    assert_int_equal(g.created_at, 100);
    assert_int_equal(g.last_seen, 0);
    assert_int_equal(srv_store_device_get(c, "d-2", &g), NB_ERR_NOENT);
    /* Unique: the ID, and the token hash. */
    assert_int_equal(srv_store_device_create(c, &d), NB_ERR_DUPLICATE);
    device(&d, "d-2", "sim-1");
    srv_token_sha256_hex("secret-1", d.token_sha256);
    assert_int_equal(srv_store_device_create(c, &d), NB_ERR_DUPLICATE);
    /* By token. */
    OK(srv_store_device_by_token(c, g.token_sha256, &g));
    assert_string_equal(g.id, "d-1");
    char h[65];
    srv_token_sha256_hex("other", h);
    assert_int_equal(srv_store_device_by_token(c, h, &g), NB_ERR_NOENT);
    /* Devices without a token: no clash on NULL. */
    device(&d, "d-3", "sim-1");
    OK(srv_store_device_create(c, &d));
    device(&d, "d-4", "sim-1");
    OK(srv_store_device_create(c, &d));
    int64_t n;
    OK(srv_store_device_count(c, &n));
    assert_int_equal(n, 3);
    done(state, c);
}

static void test_device_updates(void **state)
{
    struct nb_db_conn *c = conn(state);
    struct srv_device d, g;
    const char *tags[] = {"z", "a", "m", "a"};
    char h[65];
    device(&d, "d-1", "sim-1");
    OK(srv_store_device_create(c, &d));
    OK(srv_store_device_set_tags(c, "d-1", tags, 4));
    OK(srv_store_device_get(c, "d-1", &g));
    assert_int_equal(g.n_tags, 3);
    assert_string_equal(g.tags[0], "a");
    assert_string_equal(g.tags[2], "z");
    assert_int_equal(query_int(c, "SELECT COUNT(*) FROM device_tags", NULL, 0), 3);
    OK(srv_store_device_set_tags(c, "d-1", tags, 1));
    assert_int_equal(query_int(c, "SELECT COUNT(*) FROM device_tags", NULL, 0), 1);
    assert_int_equal(srv_store_device_set_tags(c, "nope", tags, 1), NB_ERR_NOENT);
    OK(srv_store_device_set_group(c, "d-1", "g-1"));
    OK(srv_store_device_get(c, "d-1", &g));
    assert_string_equal(g.group, "g-1");
    OK(srv_store_device_set_group(c, "d-1", NULL));
    OK(srv_store_device_get(c, "d-1", &g));
    assert_string_equal(g.group, "");
    assert_int_equal(srv_store_device_set_group(c, "nope", "g"), NB_ERR_NOENT);
    srv_token_sha256_hex("t", h);
    OK(srv_store_device_set_token(c, "d-1", h, 1));
    OK(srv_store_device_get(c, "d-1", &g));
    assert_string_equal(g.token_sha256, h);
    assert_int_equal(g.enrol_pending, 1);
    OK(srv_store_device_seen(c, "d-1", "sim-2", "1.2.3", 7,
                             "[{\"slot\":0,\"state\":\"CONFIRMED\"}]", 555));
    OK(srv_store_device_get(c, "d-1", &g));
    assert_string_equal(g.hw_rev, "sim-2");
    assert_string_equal(g.version, "1.2.3");
    assert_int_equal(g.security_version, 7);
    assert_int_equal(g.last_seen, 555);
    assert_string_equal(g.slots, "[{\"slot\":0,\"state\":\"CONFIRMED\"}]");
    assert_int_equal(srv_store_device_seen(c, "nope", "a", "1.0.0", 0, "", 1),
                     NB_ERR_NOENT);
    done(state, c);
}

static void test_device_list(void **state)
{
    struct nb_db_conn *c = conn(state);
    struct srv_device d, *items = NULL;
    struct srv_device_filter f;
    unsigned n = 0;
    int more = 0;
    char id[16];
    for (int i = 0; i < 25; i++) {
        snprintf(id, sizeof id, "d-%02d", i);
        device(&d, id, i % 2 ? "sim-1" : "sim-2");
        if (i % 3 == 0) {
            snprintf(d.tags[0], SRV_ST_ID, "eu");
            d.n_tags = 1;
        }
        if (i % 5 == 0)
            snprintf(d.group, sizeof d.group, "line-5");
        OK(srv_store_device_create(c, &d));
    }
    memset(&f, 0, sizeof f);
    f.limit = 10;
    OK(srv_store_device_list(c, &f, &items, &n, &more));
    assert_int_equal(n, 10);
    assert_true(more);
    assert_string_equal(items[0].id, "d-00");
    assert_string_equal(items[9].id, "d-09");
    f.after = "d-09";
    free(items);
    OK(srv_store_device_list(c, &f, &items, &n, &more));
    assert_string_equal(items[0].id, "d-10");
    free(items);
    f.after = "d-19";
    OK(srv_store_device_list(c, &f, &items, &n, &more));
    assert_int_equal(n, 5);
    assert_false(more);
    free(items);
    /* Filters, and all of them together. */
    memset(&f, 0, sizeof f);
    f.tag = "eu";
    OK(srv_store_device_list(c, &f, &items, &n, &more));
    assert_int_equal(n, 9); /* 0, 3, ..., 24 */
    free(items);
    f.hw_rev = "sim-2";
    OK(srv_store_device_list(c, &f, &items, &n, &more));
    assert_int_equal(n, 5); /* 0, 6, 12, 18, 24 */
    free(items);
    f.group = "line-5";
    OK(srv_store_device_list(c, &f, &items, &n, &more));
    assert_int_equal(n, 1); /* 0 */
    assert_string_equal(items[0].id, "d-00");
    free(items);
    f.version = "";
    OK(srv_store_device_list(c, &f, &items, &n, &more));
    assert_int_equal(n, 1);
    free(items);
    /* Metacharacters are values, never SQL. */
    memset(&f, 0, sizeof f);
    f.tag = EVIL;
    f.group = EVIL;
    f.after = EVIL;
    OK(srv_store_device_list(c, &f, &items, &n, &more));
    assert_int_equal(n, 0);
    free(items);
    assert_int_equal(count_rows(c, "devices"), 25);
    done(state, c);
}

static void test_metacharacters(void **state)
{
    struct nb_db_conn *c = conn(state);
    struct srv_device d, g;
    const char *tags[] = {EVIL};
    device(&d, EVIL, EVIL);
    snprintf(d.group, sizeof d.group, "%s", EVIL);
    snprintf(d.version, sizeof d.version, "%s", "1'--");
    OK(srv_store_device_create(c, &d));
    OK(srv_store_device_set_tags(c, EVIL, tags, 1));
    OK(srv_store_device_get(c, EVIL, &g));
    assert_string_equal(g.hw_rev, EVIL);
    assert_string_equal(g.group, EVIL);
    assert_string_equal(g.tags[0], EVIL);
    assert_string_equal(g.version, "1'--");
    OK(srv_store_event_append(c, 1, EVIL, EVIL, "report", "{\"x\":\"'\"}"));
    assert_int_equal(count_rows(c, "devices"), 1);
    assert_int_equal(count_rows(c, "events"), 1);
    done(state, c);
}

/* ----------------------------------------------------------- packages */

static void test_packages(void **state)
{
    struct nb_db_conn *c = conn(state);
    struct srv_package p, g, *items = NULL;
    unsigned n = 0;
    int more = 0, found = 1;
    int64_t svn = -1;
    OK(srv_store_package_max_svn(c, "production", &svn, &found));
    assert_int_equal(found, 0);
    assert_int_equal(svn, 0);
    srvtest_package(c, "pkg-a", "1.0.0", 1, "production");
    srvtest_package(c, "pkg-b", "1.1.0", 3, "production");
    srvtest_package(c, "pkg-c", "2.0.0", 9, "development");
    OK(srv_store_package_get(c, "pkg-b", &g));
    assert_string_equal(g.version, "1.1.0");
    assert_int_equal(g.security_version, 3);
    assert_int_equal(g.n_hw_revs, 1);
    assert_string_equal(g.hw_revs[0], "sim-1");
    assert_string_equal(g.file, "pkg-b.nbpkg");
    assert_string_equal(g.manifest_file, "pkg-b.nbman");
    assert_int_equal(g.payload_offset, 512);
    OK(srv_store_package_by_sha256(c, g.sha256, &p));
    assert_string_equal(p.id, "pkg-b");
    assert_int_equal(srv_store_package_get(c, "pkg-x", &g), NB_ERR_NOENT);
    /* Unique: ID and sha256. */
    OK(srv_store_package_get(c, "pkg-a", &p));
    assert_int_equal(srv_store_package_insert(c, &p), NB_ERR_DUPLICATE);
    snprintf(p.id, sizeof p.id, "pkg-z");
    assert_int_equal(srv_store_package_insert(c, &p), NB_ERR_DUPLICATE);
    OK(srv_store_package_max_svn(c, "production", &svn, &found));
    assert_int_equal(found, 1);
    assert_int_equal(svn, 3);
    OK(srv_store_package_max_svn(c, "development", &svn, &found));
    assert_int_equal(svn, 9);
    OK(srv_store_package_list(c, NULL, 2, &items, &n, &more));
    assert_int_equal(n, 2);
    assert_true(more);
    assert_string_equal(items[1].id, "pkg-b");
    free(items);
    OK(srv_store_package_list(c, "pkg-b", 2, &items, &n, &more));
    assert_int_equal(n, 1);
    assert_false(more);
    assert_string_equal(items[0].id, "pkg-c");
    free(items);
    /* Extra files: put, replace, list. */
    struct srv_package_file pf, fl[4];
    memset(&pf, 0, sizeof pf);
    snprintf(pf.package_id, sizeof pf.package_id, "pkg-a");
    snprintf(pf.name, sizeof pf.name, "fw.swu");
    snprintf(pf.file, sizeof pf.file, "pkg-a.fw.swu");
    pf.size = 10;
    OK(srv_store_package_file_put(c, &pf));
    pf.size = 20;
    snprintf(pf.md5, sizeof pf.md5, "abc");
    OK(srv_store_package_file_put(c, &pf));
    snprintf(pf.name, sizeof pf.name, "a.txt");
    OK(srv_store_package_file_put(c, &pf));
    OK(srv_store_package_files(c, "pkg-a", fl, 4, &n));
    assert_int_equal(n, 2);
    assert_string_equal(fl[0].name, "a.txt");
    assert_string_equal(fl[1].name, "fw.swu");
    assert_int_equal(fl[1].size, 20);
    assert_string_equal(fl[1].md5, "abc");
    OK(srv_store_package_files(c, "pkg-b", fl, 4, &n));
    assert_int_equal(n, 0);
    done(state, c);
}

/* ----------------------------------------------------------- rollouts */

static void test_rollouts(void **state)
{
    struct nb_db_conn *c = conn(state);
    struct srv_rollout *r = calloc(1, sizeof *r), *items = NULL;
    char id1[SRV_ST_ID], id2[SRV_ST_ID], id3[SRV_ST_ID], ids[8][SRV_ST_ID];
    unsigned n = 0;
    int more = 0;
    assert_non_null(r);
    srvtest_package(c, "pkg-a", "1.1.0", 2, "production");
    srvtest_rollout(c, "pkg-a", NULL, NULL, 1000, id1);
    srvtest_rollout(c, "pkg-a", "{\"tags\": [\"eu\"]}", NULL, 1001, id2);
    srvtest_rollout(c, "pkg-a", NULL, NULL, 1002, id3);
    assert_string_equal(id1, "r-1");
    assert_string_equal(id3, "r-3");
    OK(srv_store_rollout_get(c, "r-2", r));
    assert_string_equal(r->state, "running");
    assert_int_equal(r->seq, 2);
    assert_int_equal(r->step, 0);
    assert_int_equal(r->step_started_at, 1001);
    assert_non_null(strstr(r->target, "\"eu\""));
    assert_int_equal(srv_store_rollout_get(c, "r-9", r), NB_ERR_NOENT);
    OK(srv_store_rollout_set_state(c, "r-3", SRV_RO_ABORTED, NULL, 2000));
    OK(srv_store_rollout_set_state(c, "r-1", SRV_RO_PAUSED, "manual: " EVIL, 2000));
    OK(srv_store_rollout_get(c, "r-1", r));
    assert_string_equal(r->pause_reason, "manual: " EVIL);
    assert_int_equal(r->updated_at, 2000);
    OK(srv_store_rollout_set_step(c, "r-2", 2, 3000, 3001));
    OK(srv_store_rollout_get(c, "r-2", r));
    assert_int_equal(r->step, 2);
    assert_int_equal(r->step_started_at, 3000);
    assert_int_equal(srv_store_rollout_set_step(c, "r-9", 1, 1, 1), NB_ERR_NOENT);
    OK(srv_store_rollout_active(c, ids, 8, &n));
    assert_int_equal(n, 2); /* not the aborted one, newest first */
    assert_string_equal(ids[0], "r-2");
    assert_string_equal(ids[1], "r-1");
    if (!strcmp(nb_db_backend(f_db(state)), "sqlite")) {
        /* Every check-in runs it: from the partial index, no sorting. */
        char plan[512] = "";
        struct nb_db_val lim = NB_DB_I(8);
        exec_ok(c, "EXPLAIN QUERY PLAN SELECT id FROM rollouts WHERE state IN "
                "('running', 'paused', 'completed') ORDER BY seq DESC LIMIT ?1",
                &lim, 1, plan_row, plan, NULL);
        assert_non_null(strstr(plan, "rollouts_active"));
        assert_null(strstr(plan, "TEMP B-TREE"));
    }
    OK(srv_store_rollout_list(c, NULL, 0, 2, &items, &n, &more));
    assert_int_equal(n, 2);
    assert_true(more);
    assert_string_equal(items[0].id, "r-3");
    int64_t last = items[1].seq;
    free(items);
    OK(srv_store_rollout_list(c, NULL, last, 2, &items, &n, &more));
    assert_int_equal(n, 1);
    assert_false(more);
    assert_string_equal(items[0].id, "r-1");
    free(items);
    OK(srv_store_rollout_list(c, "aborted", 0, 10, &items, &n, &more));
    assert_int_equal(n, 1);
    free(items);
    free(r);
    done(state, c);
}

static void devro(struct srv_devro *d, const char *dev, const char *ro,
                  const char *state, int64_t step, int64_t t)
{
    memset(d, 0, sizeof *d);
    snprintf(d->device_id, sizeof d->device_id, "%s", dev);
    snprintf(d->rollout_id, sizeof d->rollout_id, "%s", ro);
    snprintf(d->state, sizeof d->state, "%s", state);
    d->step = step;
    d->offered_at = d->updated_at = t;
    d->healthy = -1;
}

static void test_device_rollouts(void **state)
{
    struct nb_db_conn *c = conn(state);
    struct srv_devro d, g, rows[4], *items = NULL;
    struct srv_rollout_counts k;
    struct nb_ro_counts sc;
    char id[SRV_ST_ID];
    unsigned n;
    int created = 0, more;
    srvtest_package(c, "pkg-a", "1.1.0", 2, "production");
    srvtest_rollout(c, "pkg-a", NULL, NULL, 1000, id);
    devro(&d, "d-1", id, "offered", 0, 1000);
    OK(srv_store_devro_offer(c, &d, &created));
    assert_true(created);
    d.step = 5;
    OK(srv_store_devro_offer(c, &d, &created)); /* there already: unchanged */
    assert_false(created);
    OK(srv_store_devro_get(c, "d-1", id, &g));
    assert_int_equal(g.step, 0);
    assert_int_equal(g.healthy, -1);
    snprintf(g.state, sizeof g.state, "failed");
    snprintf(g.reason, sizeof g.reason, "NB_ERR_SIGNATURE");
    snprintf(g.detail, sizeof g.detail, "%s", EVIL);
    g.updated_at = 1100;
    OK(srv_store_devro_upsert(c, &g));
    OK(srv_store_devro_get(c, "d-1", id, &g));
    assert_string_equal(g.state, "failed");
    assert_string_equal(g.detail, EVIL);
    assert_int_equal(srv_store_devro_get(c, "d-2", id, &g), NB_ERR_NOENT);
    devro(&d, "d-2", id, "downloading", 0, 1000);
    OK(srv_store_devro_upsert(c, &d));
    devro(&d, "d-3", id, "confirmed", 1, 1000);
    OK(srv_store_devro_upsert(c, &d));
    devro(&d, "d-4", id, "trial", 1, 5000);
    OK(srv_store_devro_upsert(c, &d));
    OK(srv_store_devro_of_device(c, "d-1", rows, 4, &n));
    assert_int_equal(n, 1);
    OK(srv_store_devro_of_rollout(c, id, NULL, 2, &items, &n, &more));
    assert_int_equal(n, 2);
    assert_true(more);
    assert_string_equal(items[1].device_id, "d-2");
    free(items);
    OK(srv_store_devro_of_rollout(c, id, "d-2", 2, &items, &n, &more));
    assert_int_equal(n, 2);
    assert_false(more);
    free(items);
    /* At 4000 with silent_s 2000: d-2 (heard at 1000, not final) is silent. */
    OK(srv_store_rollout_counts(c, id, 4000, 2000, &k));
    assert_int_equal(k.total, 4);
    assert_int_equal(k.failed, 1);
    assert_int_equal(k.downloading, 1);
    assert_int_equal(k.confirmed, 1);
    assert_int_equal(k.trial, 1);
    assert_int_equal(k.silent, 1);
    OK(srv_store_rollout_step_counts(c, id, 0, 4000, 2000, &sc));
    assert_int_equal(sc.attempted, 2);
    assert_int_equal(sc.failed, 1);
    assert_int_equal(sc.silent, 1);
    OK(srv_store_rollout_step_counts(c, id, 1, 4000, 2000, &sc));
    assert_int_equal(sc.attempted, 2);
    assert_int_equal(sc.failed + sc.silent + sc.reverted, 0);
    int64_t total;
    OK(srv_store_devro_count(c, &total));
    assert_int_equal(total, 4);
    done(state, c);
}

/* ------------------------------------------------------------ refresh */

/* Package pkg-a and a rollout of it created at 1000: 10 % and 50 % held
 * 60 s each, then 100 %; pause above 20 % from 2 attempts on. */
static void three_step_rollout(struct nb_db_conn *c, char id[SRV_ST_ID])
{
    srvtest_package(c, "pkg-a", "1.1.0", 2, "production");
    srvtest_rollout(c, "pkg-a", NULL,
                    "{\"schedule\": [{\"percent\": 10, \"hold\": \"60s\"},"
                    " {\"percent\": 50, \"hold\": \"60s\"}, {\"percent\": 100}],"
                    " \"windows\": \"always\", \"failure_threshold\": \"20%\","
                    " \"min_attempted\": 2, \"silent_timeout\": \"1h\"}",
                    1000, id);
}

static void test_refresh_advance_pause(void **state)
{
    struct nb_db_conn *c = conn(state);
    struct srv_rollout *r = calloc(1, sizeof *r);
    struct srv_devro d;
    char id[SRV_ST_ID];
    int changed = 0;
    assert_non_null(r);
    three_step_rollout(c, id);
    OK(srv_store_rollout_refresh(c, id, 1030, SRV_RF_ALL, &changed, r));
    assert_false(changed);
    assert_int_equal(r->step, 0);
    OK(srv_store_rollout_refresh(c, id, 1061, SRV_RF_ALL, &changed, r));
    assert_true(changed);
    assert_int_equal(r->step, 1);
    assert_int_equal(r->step_started_at, 1060);
    /* Step 1: 4 attempted, 1 failed = 25 % > 20 %: paused. */
    for (int i = 0; i < 4; i++) {
        char dev[16];
        snprintf(dev, sizeof dev, "d-%d", i);
        devro(&d, dev, id, i ? "downloading" : "failed", 1, 1070);
        OK(srv_store_devro_upsert(c, &d));
    }
    /* Only stepping asked for: no pause yet. */
    OK(srv_store_rollout_refresh(c, id, 1080, SRV_RF_STEP, &changed, r));
    assert_string_equal(r->state, "running");
    OK(srv_store_rollout_refresh(c, id, 1080, SRV_RF_ALL, &changed, r));
    assert_true(changed);
    assert_string_equal(r->state, "paused");
    assert_true(strncmp(r->pause_reason, "auto: ", 6) == 0);
    /* Paused: no step moves, whatever the time. */
    OK(srv_store_rollout_refresh(c, id, 99999, SRV_RF_ALL, &changed, r));
    assert_false(changed);
    assert_int_equal(r->step, 1);
    assert_string_equal(r->state, "paused");
    assert_int_equal(srv_store_rollout_refresh(c, "r-99", 1, SRV_RF_ALL, NULL,
                                               NULL), NB_ERR_NOENT);
    free(r);
    done(state, c);
}

/* Regression: the refresh once advanced before judging, so a step whose
 * hold ended while its failures were over the threshold moved on with
 * fresh counts instead of pausing; and a device of the previous step that
 * failed after the next step began was never judged. */
static void test_refresh_judges_before_advancing(void **state)
{
    struct nb_db_conn *c = conn(state);
    struct srv_rollout *r = calloc(1, sizeof *r);
    struct srv_devro d;
    char id[SRV_ST_ID];
    int changed = 0;
    assert_non_null(r);
    three_step_rollout(c, id);
    /* Step 0 goes bad; nobody looks until its hold is long over. */
    for (int i = 0; i < 4; i++) {
        char dev[16];
        snprintf(dev, sizeof dev, "a-%d", i);
        devro(&d, dev, id, i ? "confirmed" : "failed", 0, 1010);
        OK(srv_store_devro_upsert(c, &d));
    }
    OK(srv_store_rollout_refresh(c, id, 1100, SRV_RF_ALL, &changed, r));
    assert_true(changed);
    assert_string_equal(r->state, "paused");
    assert_int_equal(r->step, 0);
    free(r);
    done(state, c);
}

static void test_refresh_judges_previous_step(void **state)
{
    struct nb_db_conn *c = conn(state);
    struct srv_rollout *r = calloc(1, sizeof *r);
    struct srv_devro d;
    char id[SRV_ST_ID];
    int changed = 0;
    assert_non_null(r);
    three_step_rollout(c, id);
    for (int i = 0; i < 4; i++) {
        char dev[16];
        snprintf(dev, sizeof dev, "a-%d", i);
        devro(&d, dev, id, "trial", 0, 1010);
        OK(srv_store_devro_upsert(c, &d));
    }
    OK(srv_store_rollout_refresh(c, id, 1061, SRV_RF_ALL, &changed, r));
    assert_int_equal(r->step, 1);
    assert_string_equal(r->state, "running");
    /* Two of step 0's trials revert during step 1. */
    devro(&d, "a-0", id, "reverted", 0, 1070);
    OK(srv_store_devro_upsert(c, &d));
    devro(&d, "a-1", id, "reverted", 0, 1070);
    OK(srv_store_devro_upsert(c, &d));
    OK(srv_store_rollout_refresh(c, id, 1075, SRV_RF_ALL, &changed, r));
    assert_true(changed);
    assert_string_equal(r->state, "paused");
    assert_int_equal(r->step, 1);
    free(r);
    done(state, c);
}

static void test_refresh_silent_and_complete(void **state)
{
    struct nb_db_conn *c = conn(state);
    struct srv_rollout *r = calloc(1, sizeof *r);
    struct srv_devro d;
    char id[SRV_ST_ID];
    int changed;
    assert_non_null(r);
    srvtest_package(c, "pkg-a", "1.1.0", 2, "production");
    srvtest_rollout(c, "pkg-a", NULL,
                    "{\"schedule\": [{\"percent\": 100}], \"windows\": \"always\","
                    " \"failure_threshold\": \"50%\", \"min_attempted\": 1,"
                    " \"silent_timeout\": \"100s\"}", 1000, id);
    /* Nobody offered yet: not completed. */
    OK(srv_store_rollout_refresh(c, id, 1001, SRV_RF_ALL, &changed, r));
    assert_string_equal(r->state, "running");
    devro(&d, "d-1", id, "confirmed", 0, 1000);
    OK(srv_store_devro_upsert(c, &d));
    devro(&d, "d-2", id, "offered", 0, 1000);
    OK(srv_store_devro_upsert(c, &d));
    OK(srv_store_rollout_refresh(c, id, 1050, SRV_RF_ALL, &changed, r));
    assert_string_equal(r->state, "running");
    devro(&d, "d-2", id, "confirmed", 0, 1060);
    OK(srv_store_devro_upsert(c, &d));
    OK(srv_store_rollout_refresh(c, id, 1070, SRV_RF_ALL, &changed, r));
    assert_true(changed);
    assert_string_equal(r->state, "completed");
    /* A straggler offered later: running again. */
    devro(&d, "d-3", id, "offered", 0, 1080);
    OK(srv_store_devro_upsert(c, &d));
    OK(srv_store_rollout_refresh(c, id, 1081, SRV_RF_COMPLETE, &changed, r));
    assert_string_equal(r->state, "running");
    /* ... which then goes silent (1 of 3 > 50 %? no: 33 %); two silent
     * are 2 of 4 = 50 %, not over; three of five are. */
    for (int i = 4; i < 6; i++) {
        char dev[16];
        snprintf(dev, sizeof dev, "d-%d", i);
        devro(&d, dev, id, "downloading", 0, 1080);
        OK(srv_store_devro_upsert(c, &d));
    }
    OK(srv_store_rollout_refresh(c, id, 1150, SRV_RF_ALL, &changed, r));
    assert_string_equal(r->state, "running");
    OK(srv_store_rollout_refresh(c, id, 1181, SRV_RF_ALL, &changed, r));
    assert_string_equal(r->state, "paused");
    assert_non_null(strstr(r->pause_reason, "silent"));
    free(r);
    done(state, c);
}

/* A rollout to 100,000 devices: no per-device row until one is offered. */
static void test_big_rollout_no_rows(void **state)
{
    struct nb_db_conn *c = conn(state);
    struct srv_rollout_counts k;
    struct srv_devro d;
    char id[SRV_ST_ID];
    int created;
    OK(nb_db_begin(c));
    exec_ok(c, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
            "WHERE i < 100000) INSERT INTO devices (id, hw_rev, created_at) "
            "SELECT 'dev-' || i, 'sim-1', 0 FROM n", NULL, 0, NULL, NULL, NULL);
    OK(nb_db_commit(c));
    assert_int_equal(count_rows(c, "devices"), 100000);
    srvtest_package(c, "pkg-a", "1.1.0", 2, "production");
    srvtest_rollout(c, "pkg-a", "{\"hw_revs\": [\"sim-1\"]}",
                    "{\"schedule\": [{\"percent\": 100}], \"windows\": \"always\"}",
                    1000, id);
    OK(srv_store_rollout_refresh(c, id, 5000, SRV_RF_ALL, NULL, NULL));
    OK(srv_store_rollout_counts(c, id, 5000, 3600, &k));
    assert_int_equal(k.total, 0);
    assert_int_equal(count_rows(c, "device_rollouts"), 0);
    devro(&d, "dev-42", id, "offered", 0, 5000);
    OK(srv_store_devro_offer(c, &d, &created));
    assert_int_equal(count_rows(c, "device_rollouts"), 1);
    done(state, c);
}

/* ------------------------------------------------------------- events */

static void test_events(void **state)
{
    struct nb_db_conn *c = conn(state);
    struct srv_event *ev = calloc(4, sizeof *ev);
    char *big = malloc(5000);
    unsigned n;
    assert_non_null(ev);
    assert_non_null(big);
    OK(srv_store_event_append(c, 10, "d-1", "r-1", "report", "{\"a\":1}"));
    OK(srv_store_event_append(c, 11, "d-1", NULL, "enrol", NULL));
    OK(srv_store_event_append(c, 12, "d-2", "r-1", "report", "{}"));
    memset(big, 'x', 4999);
    big[4999] = '\0';
    OK(srv_store_event_append(c, 13, "d-1", "r-1", "health", big));
    OK(srv_store_events_of_device(c, "d-1", NULL, ev, 4, &n));
    assert_int_equal(n, 3);
    assert_string_equal(ev[0].kind, "health");     /* newest first */
    assert_int_equal(strlen(ev[0].body), sizeof ev[0].body - 1); /* cut */
    assert_string_equal(ev[1].kind, "enrol");
    assert_string_equal(ev[1].body, "{}");
    assert_string_equal(ev[1].rollout_id, "");
    assert_true(ev[0].id > ev[1].id);
    OK(srv_store_events_of_device(c, "d-1", "report", ev, 4, &n));
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].body, "{\"a\":1}");
    assert_int_equal(ev[0].at, 10);
    int64_t total;
    OK(srv_store_event_count(c, &total));
    assert_int_equal(total, 4);
    free(big);
    free(ev);
    done(state, c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_schema, reset),
        cmocka_unit_test_setup(test_counters, reset),
        cmocka_unit_test_setup(test_device_create_get, reset),
        cmocka_unit_test_setup(test_device_updates, reset),
        cmocka_unit_test_setup(test_device_list, reset),
        cmocka_unit_test_setup(test_metacharacters, reset),
        cmocka_unit_test_setup(test_packages, reset),
        cmocka_unit_test_setup(test_rollouts, reset),
        cmocka_unit_test_setup(test_device_rollouts, reset),
        cmocka_unit_test_setup(test_refresh_advance_pause, reset),
        cmocka_unit_test_setup(test_refresh_judges_before_advancing, reset),
        cmocka_unit_test_setup(test_refresh_judges_previous_step, reset),
        cmocka_unit_test_setup(test_refresh_silent_and_complete, reset),
        cmocka_unit_test_setup(test_big_rollout_no_rows, reset),
        cmocka_unit_test_setup(test_events, reset),
    };
    return dbtest_main("test_store", tests, sizeof tests / sizeof tests[0]);
}
