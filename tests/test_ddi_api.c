/* test_ddi_api.c - nobrick-server's hawkBit DDI API (cmd/nobrick-server/ddi.c)
 * without a socket: srv_dispatch() on SQLite (and PostgreSQL when
 * NB_TEST_DB says so) with a simulated clock. tests/test_ddi.sh runs the
 * real SWUpdate client; this covers what a client does not show:
 *
 *   paths      tenants, controller IDs, action IDs, unknown routes and
 *              methods: 404 / 405 JSON errors
 *   hashes     a DDI file uploaded without sha1/md5: computed from the
 *              file (checked against the FIPS 180 / RFC 1321 vectors of
 *              "abc") and stored once
 *   feedback   every execution value to its report state, states never
 *              going back, repeats, closed actions, bad bodies leaving
 *              the database byte for byte unchanged
 *   configData merge, replace, remove; hw_rev / hwRevision and an M.m.p
 *              version becoming the device's; limits
 *   offers     a package without DDI files is not offered; paused rollouts
 *              keep work in progress, aborted ones do not; a device's
 *              enrolment token taken into use
 *   files      ranges (one, several, suffix, unsatisfiable), HEAD,
 *              downloads without a token only while artifact_auth is off
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "srvtest.h"

#define FLEET "fleet-token-1"
#define BASE "/DEFAULT/controller/v1"
#define FAST "{\"schedule\": [{\"percent\": 100}], \"windows\": \"always\"}"

static int64_t g_now;
static struct srv_config g_cfg;
static struct srv g_srv;
static char g_art[300];

static int64_t fake_now(void *ctx)
{
    (void)ctx;
    return g_now;
}

static void put_file(const char *name, const char *text)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", g_art, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static int reset(void **state)
{
    struct fx *f = *state;
    char hex[65];
    srvtest_reset_db(f->db);
    srv_config_defaults(&g_cfg);
    g_cfg.poll_seconds = 300;
    memset(&g_srv, 0, sizeof g_srv);
    g_srv.cfg = &g_cfg;
    g_srv.db = f->db;
    g_srv.log.fd = -1;
    g_srv.now = fake_now;
    srv_token_sha256_hex(FLEET, hex);
    for (int i = 0; i < 32; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        g_srv.fleet_sha[0][i] = (uint8_t)v;
    }
    g_srv.n_fleet = 1;
    snprintf(g_art, sizeof g_art, "%s/ddi-art-XXXXXX",
             getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(g_art));
    g_srv.artifacts_fd = open(g_art, O_RDONLY | O_DIRECTORY);
    assert_true(g_srv.artifacts_fd >= 0);
    srv_set_public_url(&g_srv, "http://127.0.0.1:8080");
    put_file("abc.swu", "abc");
    g_now = 100000;
    return 0;
}

static int teardown(void **state)
{
    char path[600];
    (void)state;
    close(g_srv.artifacts_fd);
    snprintf(path, sizeof path, "%s/abc.swu", g_art);
    unlink(path);
    rmdir(g_art);
    return 0;
}

/* ------------------------------------------------------------ requests */

struct answer {
    int status;
    json_t *j;
    char *text;
    struct srv_resp r;
};

static void answer_free(struct answer *a)
{
    json_decref(a->j);
    free(a->text);
    srv_resp_free(&a->r);
}

/* auth: a whole Authorization value ("TargetToken x") or NULL. */
static struct answer call(const char *method, const char *path,
                          const char *auth, const char *range,
                          const char *body)
{
    struct srv_kv h[2];
    struct srv_req r;
    struct answer a;
    unsigned nh = 0;
    memset(&r, 0, sizeof r);
    memset(&a, 0, sizeof a);
    if (auth)
        h[nh++] = (struct srv_kv){"Authorization", auth};
    if (range)
        h[nh++] = (struct srv_kv){"Range", range};
    r.method = method;
    r.path = path;
    r.headers = h;
    r.n_headers = nh;
    r.body = body;
    r.body_len = body ? strlen(body) : 0;
    r.remote = "test";
    srv_resp_init(&a.r);
    srv_dispatch(&g_srv, &r, &a.r);
    a.status = a.r.status;
    if (a.r.kind == SRV_BODY_BUF) {
        a.text = a.r.body;
        a.r.body = NULL;
        if (a.r.content_type && !strcmp(a.r.content_type, "application/json"))
            a.j = json_loads(a.text, 0, NULL);
    }
    return a;
}

static void expect_status(struct answer *a, int status)
{
    if (a->status != status)
        fail_msg("status %d, expected %d: %s", a->status, status,
                 a->text ? a->text : "");
}

static void expect_error(struct answer a, int status)
{
    expect_status(&a, status);
    assert_non_null(a.j);
    assert_true(json_is_string(json_object_get(a.j, "error")));
    assert_true(json_is_string(json_object_get(a.j, "message")));
    answer_free(&a);
}

static void expect_ok(struct answer a)
{
    expect_status(&a, 200);
    answer_free(&a);
}

#define TT "TargetToken tok-d-1"

static struct answer poll_d1(void)
{
    return call("GET", BASE "/d-1", TT, NULL, NULL);
}

static int has_link(const struct answer *a, const char *name)
{
    return json_object_get(json_object_get(a->j, "_links"), name) != NULL;
}

static struct answer feedback(const char *body)
{
    return call("POST", BASE "/d-1/deploymentBase/1/feedback", TT, NULL, body);
}

static struct answer config(const char *body)
{
    return call("PUT", BASE "/d-1/configData", TT, NULL, body);
}

/* ------------------------------------------------------- the database */

static int dump_row(void *arg, const struct nb_db_row *row)
{
    char **s = arg;
    for (int i = 0; i < nb_db_columns(row); i++) {
        const char *t = nb_db_text(row, i);
        size_t n = strlen(*s), m = t ? strlen(t) : 4;
        *s = realloc(*s, n + m + 3);
        snprintf(*s + n, m + 3, "%s|", t ? t : "NULL");
    }
    strcat(*s, "\n");
    return 0;
}

static char *dump(void)
{
    static const char *const q[] = {
        "SELECT * FROM devices ORDER BY id",
        "SELECT * FROM package_files ORDER BY package_id, name",
        "SELECT * FROM rollouts ORDER BY id",
        "SELECT * FROM device_rollouts ORDER BY device_id, rollout_id",
        "SELECT * FROM events ORDER BY id"};
    struct nb_db_conn *c = nb_db_acquire(g_srv.db);
    char *s = calloc(1, 2);
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
        exec_ok(c, q[i], NULL, 0, dump_row, &s, NULL);
    nb_db_release(g_srv.db, c);
    return s;
}

static void dev_add(const char *id, const char *token, const char *hw)
{
    struct nb_db_conn *c = nb_db_acquire(g_srv.db);
    struct srv_device d;
    memset(&d, 0, sizeof d);
    snprintf(d.id, sizeof d.id, "%s", id);
    snprintf(d.hw_rev, sizeof d.hw_rev, "%s", hw);
    if (token)
        srv_token_sha256_hex(token, d.token_sha256);
    d.created_at = g_now;
    assert_int_equal(srv_store_device_create(c, &d), NB_OK);
    nb_db_release(g_srv.db, c);
}

/* Package pkg-1 (1.1.0, sim-1), with abc.swu as DDI file unless
 * !with_file (hashes left empty: the server computes them), and rollout
 * r-1 of it to every device. */
static void setup_rollout(int with_file)
{
    struct nb_db_conn *c = nb_db_acquire(g_srv.db);
    char id[SRV_ST_ID];
    srvtest_package(c, "pkg-1", "1.1.0", 2, "production");
    if (with_file) {
        struct srv_package_file f;
        memset(&f, 0, sizeof f);
        snprintf(f.package_id, sizeof f.package_id, "pkg-1");
        snprintf(f.name, sizeof f.name, "fw.swu");
        snprintf(f.file, sizeof f.file, "abc.swu");
        f.size = 3;
        assert_int_equal(srv_store_package_file_put(c, &f), NB_OK);
    }
    srvtest_rollout(c, "pkg-1", NULL, FAST, g_now, id);
    assert_string_equal(id, "r-1");
    nb_db_release(g_srv.db, c);
}

static void devro(const char *dev, struct srv_devro *d)
{
    struct nb_db_conn *c = nb_db_acquire(g_srv.db);
    memset(d, 0, sizeof *d);
    assert_int_equal(srv_store_devro_get(c, dev, "r-1", d), NB_OK);
    nb_db_release(g_srv.db, c);
}

static const char *state_of(const char *dev)
{
    static struct srv_devro d;
    devro(dev, &d);
    return d.state;
}

static void device(const char *id, struct srv_device *d)
{
    struct nb_db_conn *c = nb_db_acquire(g_srv.db);
    assert_int_equal(srv_store_device_get(c, id, d), NB_OK);
    nb_db_release(g_srv.db, c);
}

/* ---------------------------------------------------------------- paths */

static void test_paths(void **state)
{
    (void)state;
    dev_add("d-1", "tok-d-1", "sim-1");
    setup_rollout(1);
    expect_ok(poll_d1());
    expect_ok(call("GET", "/default/controller/v1/d-1", TT, NULL, NULL));
    expect_error(call("GET", "/other/controller/v1/d-1", TT, NULL, NULL), 404);
    expect_error(call("GET", BASE, TT, NULL, NULL), 404);
    expect_error(call("GET", BASE "/", TT, NULL, NULL), 404);
    expect_error(call("GET", BASE "/d-1/", TT, NULL, NULL), 404);
    expect_error(call("GET", BASE "//d-1", TT, NULL, NULL), 404);
    expect_error(call("GET", BASE "/d 1", TT, NULL, NULL), 404);
    expect_error(call("GET", BASE "/d-1/deploymentBase/0", TT, NULL, NULL), 404);
    expect_error(call("GET", BASE "/d-1/deploymentBase/01", TT, NULL, NULL), 404);
    expect_error(call("GET", BASE "/d-1/deploymentBase/2147483648", TT, NULL,
                      NULL), 404);
    expect_error(call("GET", BASE "/d-1/deploymentBase/-1", TT, NULL, NULL), 404);
    expect_error(call("GET", BASE "/d-1/deploymentBase/1/x", TT, NULL, NULL), 404);
    expect_error(call("GET", BASE "/d-1/installedBase/1", TT, NULL, NULL), 404);
    expect_error(call("GET", BASE "/d-1/softwaremodules/1/artifacts", TT, NULL,
                      NULL), 404);
    expect_error(call("GET", BASE "/d-1/softwaremodules/1/artifacts/a/b", TT,
                      NULL, NULL), 404);
    expect_error(call("DELETE", BASE "/d-1", TT, NULL, NULL), 405);
    expect_error(call("GET", BASE "/d-1/deploymentBase/1/feedback", TT, NULL,
                      NULL), 405);
    expect_error(call("POST", BASE "/d-1/configData", TT, NULL, "{}"), 405);
    expect_error(call("PUT", BASE "/d-1/softwaremodules/1/artifacts/fw.swu",
                      TT, NULL, NULL), 405);
    /* Authentication schemes. */
    expect_error(call("GET", BASE "/d-1", "Bearer tok-d-1", NULL, NULL), 401);
    expect_error(call("GET", BASE "/d-1", "TargetToken", NULL, NULL), 401);
    expect_ok(call("GET", BASE "/d-1", "targettoken  tok-d-1", NULL, NULL));
    expect_error(call("GET", BASE "/d-1", "TargetToken tok-d-1 x", NULL, NULL),
                 401);
}

/* --------------------------------------------------------------- hashes */

static void test_hashes(void **state)
{
    (void)state;
    dev_add("d-1", "tok-d-1", "sim-1");
    setup_rollout(1);
    struct answer a = poll_d1();
    expect_status(&a, 200);
    assert_true(has_link(&a, "deploymentBase"));
    answer_free(&a);
    a = call("GET", BASE "/d-1/deploymentBase/1", TT, NULL, NULL);
    expect_status(&a, 200);
    json_t *art = json_array_get(json_object_get(json_array_get(json_object_get(
        json_object_get(a.j, "deployment"), "chunks"), 0), "artifacts"), 0);
    json_t *h = json_object_get(art, "hashes");
    /* FIPS 180-2 and RFC 1321 test vectors of "abc". */
    assert_string_equal(json_string_value(json_object_get(h, "sha1")),
                        "a9993e364706816aba3e25717850c26c9cd0d89d");
    assert_string_equal(json_string_value(json_object_get(h, "md5")),
                        "900150983cd24fb0d6963f7d28e17f72");
    assert_string_equal(json_string_value(json_object_get(h, "sha256")),
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    answer_free(&a);
    /* Stored: the next answer needs no file. */
    struct nb_db_conn *c = nb_db_acquire(g_srv.db);
    struct srv_package_file f[2];
    unsigned n = 0;
    assert_int_equal(srv_store_package_files(c, "pkg-1", f, 2, &n), NB_OK);
    nb_db_release(g_srv.db, c);
    assert_int_equal(n, 1);
    assert_string_equal(f[0].md5, "900150983cd24fb0d6963f7d28e17f72");
    a = call("GET", BASE "/d-1/softwaremodules/1/artifacts/fw.swu.MD5SUM", TT,
             NULL, NULL);
    expect_status(&a, 200);
    assert_string_equal(a.text, "900150983cd24fb0d6963f7d28e17f72  fw.swu\n");
    answer_free(&a);
}

/* ------------------------------------------------------------- feedback */

#define FB(exec, extra) "{\"status\": {\"execution\": \"" exec "\"" extra "}}"

static void test_feedback(void **state)
{
    (void)state;
    struct srv_devro d;
    struct srv_device dv;
    dev_add("d-1", "tok-d-1", "sim-1");
    setup_rollout(1);
    expect_ok(poll_d1());
    assert_string_equal(state_of("d-1"), "offered");

    /* Bad bodies: 400, nothing changed. */
    static const char *const bad[] = {
        "", "x", "[]", "{\"status\": 1}", FB("closed", ""), FB("nope", ""),
        FB("closed", ", \"result\": {\"finished\": \"yes\"}"),
        FB("proceeding", ", \"result\": []"),
        FB("proceeding", ", \"result\": {\"progress\": {\"of\": \"1\"}}"),
        FB("proceeding", ", \"details\": \"x\""),
        "{\"id\": \"2\", \"status\": {\"execution\": \"proceeding\"}}",
        "{\"id\": 1.5, \"status\": {\"execution\": \"proceeding\"}}",
        "{\"status\": {\"execution\": \"proceeding\"}, \"status\": {}}",
    };
    char *before = dump();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_error(feedback(bad[i]), 400);
    expect_error(feedback(FB("canceled", "")), 409);
    expect_error(call("POST", BASE "/d-1/deploymentBase/2/feedback", TT, NULL,
                      FB("proceeding", "")), 404);
    char *after = dump();
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* States only go forward; every word keeps the device from silence. */
    expect_ok(feedback(FB("proceeding", "")));
    assert_string_equal(state_of("d-1"), "downloading");
    expect_ok(feedback(FB("downloaded", "")));
    assert_string_equal(state_of("d-1"), "verified");
    expect_ok(feedback("{\"id\": \"1\", \"status\": {\"execution\": "
                       "\"proceeding\", \"result\": {\"progress\": {\"cnt\": 1,"
                       " \"of\": 1}}, \"details\": [\"a\", \"\", \"b\"]}}"));
    assert_string_equal(state_of("d-1"), "installing");
    devro("d-1", &d);
    assert_string_equal(d.detail, "a; b");
    expect_ok(feedback(FB("scheduled", "")));
    assert_string_equal(state_of("d-1"), "installing");
    g_now += 50;
    expect_ok(feedback(FB("rejected", "")));
    devro("d-1", &d);
    assert_string_equal(d.state, "installing");
    assert_int_equal(d.updated_at, g_now);
    /* closed/none is a success, as hawkBit counts it. */
    expect_ok(feedback("{\"id\": 1, \"status\": {\"execution\": \"closed\", "
                       "\"result\": {\"finished\": \"none\"}}}"));
    assert_string_equal(state_of("d-1"), "confirmed");
    device("d-1", &dv);
    assert_string_equal(dv.version, "1.1.0");
    assert_int_equal(dv.security_version, 2);
    before = dump();
    expect_ok(feedback(FB("closed", ", \"result\": {\"finished\": \"success\"}")));
    expect_error(feedback(FB("closed", ", \"result\": {\"finished\": \"failure\"}")),
                 409);
    expect_error(feedback(FB("proceeding", "")), 409);
    after = dump();
    assert_string_equal(before, after);
    free(before);
    free(after);
    struct answer a = poll_d1();
    assert_false(has_link(&a, "deploymentBase"));
    answer_free(&a);
}

/* ----------------------------------------------------------- configData */

static void test_config(void **state)
{
    (void)state;
    struct srv_device dv;
    struct srv_event ev;
    unsigned n;
    dev_add("d-1", "tok-d-1", "");
    setup_rollout(1);
    struct answer a = poll_d1();
    assert_true(has_link(&a, "configData"));
    assert_false(has_link(&a, "deploymentBase")); /* hw_rev unknown */
    answer_free(&a);

    char *before = dump();
    expect_error(config("{}"), 400);
    expect_error(config("{\"data\": []}"), 400);
    expect_error(config("{\"data\": {\"a\": 1}}"), 400);
    expect_error(config("{\"data\": {\"a\": \"\"}}"), 400);
    expect_error(config("{\"data\": {\"a\": \"x\\ny\"}}"), 400);
    expect_error(config("{\"mode\": \"add\", \"data\": {}}"), 400);
    expect_error(config("{\"data\": {\"hwRevision\": \"a/b\"}}"), 400);
    char big[3000];
    int pos = snprintf(big, sizeof big, "{\"data\": {");
    for (int i = 0; i < 20; i++)
        pos += snprintf(big + pos, sizeof big - (size_t)pos,
                        "%s\"key%02d\": \"%0120d\"", i ? ", " : "", i, i);
    snprintf(big + pos, sizeof big - (size_t)pos, "}}");
    expect_error(config(big), 400); /* over 2000 bytes stored */
    char *after = dump();
    assert_string_equal(before, after);
    free(before);
    free(after);

    expect_ok(config("{\"data\": {\"hwRevision\": \"sim-1\", \"serial\": \"7\"}}"));
    device("d-1", &dv);
    assert_string_equal(dv.hw_rev, "sim-1");
    a = poll_d1();
    assert_false(has_link(&a, "configData"));
    assert_true(has_link(&a, "deploymentBase"));
    answer_free(&a);
    expect_ok(config("{\"mode\": \"merge\", \"data\": {\"mac\": \"00:11\"}}"));
    expect_ok(config("{\"mode\": \"remove\", \"data\": {\"serial\": \"x\"}}"));
    struct nb_db_conn *c = nb_db_acquire(g_srv.db);
    assert_int_equal(srv_store_events_of_device(c, "d-1", "ddi_attributes", &ev,
                                                1, &n), NB_OK);
    nb_db_release(g_srv.db, c);
    assert_int_equal(n, 1);
    assert_string_equal(ev.body, "{\"hwRevision\":\"sim-1\",\"mac\":\"00:11\"}");
    expect_ok(config("{\"mode\": \"replace\", \"data\": {\"hw_rev\": \"sim-2\", "
                     "\"version\": \"2.0\"}}"));
    device("d-1", &dv);
    assert_string_equal(dv.hw_rev, "sim-2");
    assert_string_equal(dv.version, ""); /* "2.0" is not M.m.p: ignored */
    /* A device that says it runs 1.1.0 is not offered 1.1.0. */
    dev_add("d-2", "tok-d-2", "sim-1");
    expect_ok(call("PUT", BASE "/d-2/configData", "TargetToken tok-d-2", NULL,
                   "{\"data\": {\"version\": \"1.1.0\"}}"));
    a = call("GET", BASE "/d-2", "TargetToken tok-d-2", NULL, NULL);
    expect_status(&a, 200);
    assert_false(has_link(&a, "deploymentBase"));
    answer_free(&a);
}

/* --------------------------------------------------------------- offers */

static void test_offers(void **state)
{
    (void)state;
    struct srv_device dv;
    dev_add("d-1", "tok-d-1", "sim-1");
    setup_rollout(0);
    struct answer a = poll_d1(); /* no DDI file: nothing for DDI clients */
    assert_false(has_link(&a, "deploymentBase"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(
        json_object_get(a.j, "config"), "polling"), "sleep")), "00:05:00");
    answer_free(&a);

    /* A device enrolled through the device API (token not used yet). */
    struct nb_db_conn *c = nb_db_acquire(g_srv.db);
    char hash[65];
    srv_token_sha256_hex("tok-d-1", hash);
    assert_int_equal(srv_store_device_set_token(c, "d-1", hash, 1), NB_OK);
    struct srv_package_file f;
    memset(&f, 0, sizeof f);
    snprintf(f.package_id, sizeof f.package_id, "pkg-1");
    snprintf(f.name, sizeof f.name, "fw.swu");
    snprintf(f.file, sizeof f.file, "abc.swu");
    f.size = 3;
    assert_int_equal(srv_store_package_file_put(c, &f), NB_OK);
    nb_db_release(g_srv.db, c);
    a = poll_d1();
    assert_true(has_link(&a, "deploymentBase"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(
        json_object_get(a.j, "config"), "polling"), "sleep")), "00:01:00");
    answer_free(&a);
    device("d-1", &dv);
    assert_int_equal(dv.enrol_pending, 0);
    assert_int_equal(g_srv.m.offers, 1);

    /* Paused: work in progress goes on, a new device is not offered. */
    dev_add("d-2", "tok-d-2", "sim-1");
    c = nb_db_acquire(g_srv.db);
    assert_int_equal(srv_store_rollout_set_state(c, "r-1", SRV_RO_PAUSED, "x",
                                                 g_now), NB_OK);
    nb_db_release(g_srv.db, c);
    a = poll_d1();
    assert_true(has_link(&a, "deploymentBase"));
    answer_free(&a);
    a = call("GET", BASE "/d-2", "TargetToken tok-d-2", NULL, NULL);
    assert_false(has_link(&a, "deploymentBase"));
    answer_free(&a);
    /* Aborted: no action shown; feedback for it is still recorded. */
    c = nb_db_acquire(g_srv.db);
    assert_int_equal(srv_store_rollout_set_state(c, "r-1", SRV_RO_ABORTED, NULL,
                                                 g_now), NB_OK);
    nb_db_release(g_srv.db, c);
    a = poll_d1();
    assert_false(has_link(&a, "deploymentBase"));
    answer_free(&a);
    expect_ok(feedback(FB("closed", ", \"result\": {\"finished\": \"failure\"}")));
    assert_string_equal(state_of("d-1"), "failed");

    /* Gateway: registers at a base poll only; never for a device with a
     * token of its own. */
    expect_error(call("GET", BASE "/gw-1/configData", "GatewayToken " FLEET,
                      NULL, NULL), 405);
    expect_error(call("GET", BASE "/gw-1/deploymentBase/1",
                      "GatewayToken " FLEET, NULL, NULL), 404);
    expect_ok(call("GET", BASE "/gw-1", "GatewayToken " FLEET, NULL, NULL));
    expect_ok(call("GET", BASE "/gw-1", "GatewayToken " FLEET, NULL, NULL));
    assert_int_equal(g_srv.m.enrolments, 1);
    expect_error(call("GET", BASE "/gw-1", "TargetToken " FLEET, NULL, NULL), 401);
    expect_error(call("GET", BASE "/d-2", "GatewayToken " FLEET, NULL, NULL), 403);
    expect_error(call("GET", BASE "/gw-2", "GatewayToken nope", NULL, NULL), 401);
}

/* ---------------------------------------------------------------- files */

static void test_files(void **state)
{
    (void)state;
    const char *p = BASE "/d-1/softwaremodules/1/artifacts/fw.swu";
    dev_add("d-1", "tok-d-1", "sim-1");
    dev_add("d-2", "tok-d-2", "sim-1");
    setup_rollout(1);
    /* Before the device is in the action: 404. */
    expect_error(call("GET", p, TT, NULL, NULL), 404);
    expect_ok(poll_d1());
    struct answer a = call("GET", p, TT, "bytes=1-", NULL);
    expect_status(&a, 206);
    assert_int_equal(a.r.kind, SRV_BODY_FILE);
    assert_int_equal(a.r.offset, 1);
    assert_int_equal(a.r.length, 2);
    answer_free(&a);
    a = call("GET", p, TT, "bytes=-1", NULL);
    expect_status(&a, 206);
    assert_int_equal(a.r.offset, 2);
    answer_free(&a);
    a = call("GET", p, TT, "bytes=0-0,2-2", NULL); /* several: the whole */
    expect_status(&a, 200);
    assert_int_equal(a.r.length, 3);
    answer_free(&a);
    a = call("HEAD", p, TT, NULL, NULL);
    expect_status(&a, 200);
    answer_free(&a);
    expect_error(call("GET", p, TT, "bytes=3-", NULL), 416);
    /* d-2 is not in action 1 yet. */
    expect_error(call("GET", BASE "/d-2/softwaremodules/1/artifacts/fw.swu",
                      "TargetToken tok-d-2", NULL, NULL), 404);
    expect_error(call("GET", p, "TargetToken tok-d-2", NULL, NULL), 401);
    /* Without a token: only while artifact_auth is off. */
    expect_ok(call("GET", p, NULL, NULL, NULL));
    g_cfg.artifact_auth = 1;
    expect_error(call("GET", p, NULL, NULL, NULL), 401);
    expect_ok(call("GET", p, TT, NULL, NULL));
    /* The file gone from the artifact directory. */
    char path[600];
    snprintf(path, sizeof path, "%s/abc.swu", g_art);
    unlink(path);
    expect_error(call("GET", p, TT, NULL, NULL), 404);
    put_file("abc.swu", "abc");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, reset, teardown)
    const struct CMUnitTest tests[] = {
        T(test_paths), T(test_hashes), T(test_feedback), T(test_config),
        T(test_offers), T(test_files),
    };
    return dbtest_main("test_ddi_api", tests, sizeof tests / sizeof tests[0]);
}
