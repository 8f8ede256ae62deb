/* srvfixture.h - the fixture of the request-handling tests
 * (tests/test_srv_dispatch.c, tests/test_srv_artifacts.c): a struct srv
 * over the test database (dbtest.h: SQLite, then PostgreSQL when
 * NB_TEST_DB says so) with a simulated clock, admin token ADMIN, fleet
 * token FLEET and an artifact directory holding v.bin (1000 bytes);
 * requests built as struct srv_req and dispatched without a socket; a
 * dump of every table, to show that a refused request changed nothing;
 * and builders for devices, rollouts, check-ins and reports.
 *
 * Header only (static inline functions), like dbtest.h.
 */
#ifndef NB_SRVFIXTURE_H
#define NB_SRVFIXTURE_H

#include <fcntl.h>
#include <sys/stat.h>

#include "srvtest.h"

#define ADMIN "admin-token-1"
#define FLEET "fleet-token-1"

static int64_t g_now __attribute__((unused));
static struct srv_config g_cfg __attribute__((unused));
static struct srv g_srv __attribute__((unused));
static char g_art[300] __attribute__((unused));

static inline int64_t fake_now(void *ctx)
{
    (void)ctx;
    return g_now;
}

static inline void hex_bytes(const char *tok, uint8_t out[32])
{
    char hex[65];
    srv_token_sha256_hex(tok, hex);
    for (int i = 0; i < 32; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static inline int reset(void **state)
{
    struct fx *f = *state;
    char path[400];
    srvtest_reset_db(f->db);
    srv_config_defaults(&g_cfg);
    g_cfg.poll_seconds = 300;
    memset(&g_srv, 0, sizeof g_srv);
    g_srv.cfg = &g_cfg;
    g_srv.db = f->db;
    g_srv.log.fd = -1;
    g_srv.now = fake_now;
    hex_bytes(ADMIN, g_srv.admin_sha[g_srv.n_admin++]);
    hex_bytes(FLEET, g_srv.fleet_sha[g_srv.n_fleet++]);
    snprintf(g_art, sizeof g_art, "%s/art", g_dir);
    mkdir(g_art, 0755);
    snprintf(g_cfg.artifacts, sizeof g_cfg.artifacts, "%s", g_art);
    g_srv.artifacts_fd = open(g_art, O_RDONLY | O_DIRECTORY);
    assert_true(g_srv.artifacts_fd >= 0);
    srv_set_public_url(&g_srv, "http://127.0.0.1:8080");
    snprintf(path, sizeof path, "%s/v.bin", g_art);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    for (int i = 0; i < 1000; i++)
        fputc('a' + i % 26, fp);
    fclose(fp);
    g_now = 100000;
    return 0;
}

static inline int teardown(void **state)
{
    (void)state;
    close(g_srv.artifacts_fd);
    return 0;
}

/* ------------------------------------------------------------ requests */

struct answer {
    int status;
    json_t *j;          /* parsed JSON body, or NULL */
    char *text;         /* the body as text (JSON, metrics) */
    struct srv_resp r;  /* for artifact answers (fd closed) */
};

static inline void answer_free(struct answer *a)
{
    json_decref(a->j);
    free(a->text);
    srv_resp_free(&a->r);
}

static inline struct answer call_h(const char *method, const char *path,
                            const char *token, const char *range,
                            const char *body)
{
    struct srv_kv h[2];
    struct srv_req r;
    struct answer a;
    char auth[400];
    unsigned nh = 0;
    memset(&r, 0, sizeof r);
    memset(&a, 0, sizeof a);
    if (token) {
        snprintf(auth, sizeof auth, "Bearer %s", token);
        h[nh++] = (struct srv_kv){"authorization", auth};
    }
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

static inline struct answer post(const char *dev, const char *what,
                          const char *token, const char *body)
{
    char path[200];
    snprintf(path, sizeof path, "/api/v1/devices/%s/%s", dev, what);
    return call_h("POST", path, token, NULL, body);
}

static inline const char *jstr(const struct answer *a, const char *key)
{
    json_t *v = json_object_get(a->j, key);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* A 4xx with {"error", "message"}. */
static inline void expect_error(struct answer *a, int status, const char *code)
{
    if (a->status != status)
        fail_msg("status %d, expected %d: %s", a->status, status,
                 a->text ? a->text : "");
    assert_non_null(a->j);
    assert_string_equal(jstr(a, "error"), code);
    assert_true(strlen(jstr(a, "message")) > 0);
    answer_free(a);
}

/* ------------------------------------------------------- the database */

/* Every row of every table, as text: "nothing changed" is equality. */
static inline int dump_row(void *arg, const struct nb_db_row *row)
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

static inline char *dump(void)
{
    static const char *const q[] = {
        "SELECT * FROM devices ORDER BY id",
        "SELECT * FROM device_tags ORDER BY device_id, tag",
        "SELECT * FROM packages ORDER BY id",
        "SELECT * FROM package_files ORDER BY package_id, name",
        "SELECT * FROM rollouts ORDER BY id",
        "SELECT * FROM device_rollouts ORDER BY device_id, rollout_id",
        "SELECT * FROM events ORDER BY id",
        "SELECT * FROM counters ORDER BY name"};
    struct nb_db_conn *c = nb_db_acquire(g_srv.db);
    char *s = calloc(1, 2);
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
        exec_ok(c, q[i], NULL, 0, dump_row, &s, NULL);
    nb_db_release(g_srv.db, c);
    return s;
}

static inline void dev_add(const char *id, const char *token, const char *hw,
                    const char *tag)
{
    struct nb_db_conn *c = nb_db_acquire(g_srv.db);
    struct srv_device d;
    memset(&d, 0, sizeof d);
    snprintf(d.id, sizeof d.id, "%s", id);
    snprintf(d.hw_rev, sizeof d.hw_rev, "%s", hw);
    if (tag) {
        snprintf(d.tags[0], SRV_ST_ID, "%s", tag);
        d.n_tags = 1;
    }
    srv_token_sha256_hex(token, d.token_sha256);
    d.created_at = g_now;
    assert_int_equal(srv_store_device_create(c, &d), NB_OK);
    nb_db_release(g_srv.db, c);
}

static inline void rollout_add(const char *pkg, const char *version,
                        const char *target, const char *policy,
                        char id[SRV_ST_ID])
{
    struct nb_db_conn *c = nb_db_acquire(g_srv.db);
    struct srv_package p;
    if (srv_store_package_get(c, pkg, &p) == NB_ERR_NOENT)
        srvtest_package(c, pkg, version, 2, "production");
    srvtest_rollout(c, pkg, target, policy, g_now, id);
    nb_db_release(g_srv.db, c);
}

static inline void devro_state(const char *dev, const char *ro, char out[16])
{
    struct nb_db_conn *c = nb_db_acquire(g_srv.db);
    struct srv_devro d;
    out[0] = '\0';
    if (srv_store_devro_get(c, dev, ro, &d) == NB_OK)
        snprintf(out, 16, "%s", d.state);
    nb_db_release(g_srv.db, c);
}

static inline void set_state(const char *ro, const char *state)
{
    struct nb_db_conn *c = nb_db_acquire(g_srv.db);
    assert_int_equal(srv_store_rollout_set_state(c, ro, state, "manual", g_now),
                     NB_OK);
    nb_db_release(g_srv.db, c);
}

static inline const char *checkin_body(const char *version)
{
    static char b[400];
    snprintf(b, sizeof b, "{\"hw_rev\": \"sim-1\", \"version\": \"%s\", "
             "\"security_version\": 1, \"slots\": [{\"slot\": 0, \"state\": "
             "\"CONFIRMED\", \"version\": \"%s\", \"security_version\": 1}, "
             "{\"slot\": 1, \"state\": \"EMPTY\"}]}", version, version);
    return b;
}

/* Check-in of dev (token "tok-" + dev) at version; its action. */
static inline const char *checkin(const char *dev, const char *version, char ro[SRV_ST_ID])
{
    static char action[16];
    char tok[80];
    snprintf(tok, sizeof tok, "tok-%s", dev);
    struct answer a = post(dev, "checkin", tok, checkin_body(version));
    if (a.status != 200)
        fail_msg("check-in %s: %d %s", dev, a.status, a.text ? a.text : "");
    snprintf(action, sizeof action, "%s", jstr(&a, "action"));
    if (ro)
        snprintf(ro, SRV_ST_ID, "%s", jstr(&a, "rollout"));
    answer_free(&a);
    return action;
}

static inline int report(const char *dev, const char *ro, const char *state,
                  const char *extra)
{
    char tok[80], body[600];
    snprintf(tok, sizeof tok, "tok-%s", dev);
    snprintf(body, sizeof body, "{\"rollout\": \"%s\", \"version\": \"1.1.0\", "
             "\"state\": \"%s\"%s%s}", ro, state, extra ? ", " : "",
             extra ? extra : "");
    struct answer a = post(dev, "reports", tok, body);
    int st = a.status;
    answer_free(&a);
    return st;
}

#define FAST "{\"schedule\": [{\"percent\": 50, \"hold\": \"60s\"}," \
             " {\"percent\": 100}], \"windows\": \"always\"}"

#endif /* NB_SRVFIXTURE_H */
