/* test_srv_mgmt.c - the management API of nobrick-server
 * (docs/server-api.md, cmd/nobrick-server/mgmt_*.c, pkgverify.c), driven
 * through srv_dispatch with constructed requests against a real store: a
 * temporary SQLite file always, and a fresh PostgreSQL database per test
 * when NB_TEST_DB holds a postgresql:// URL (tests/test_db_pg.sh or
 * tests/support/pg.sh set one up). The clock is the test's.
 *
 * Packages are the deterministic TEST-key packages of lib/nb_testpkg.h
 * (the server trusts the TEST root, written as a PEM file); a package
 * under another root, a flipped byte in the payload or the signature, a
 * cut or extended file, a revoked signing key are refused and leave
 * nothing behind. Every bad input (malformed JSON, unknown keys, wrong
 * types, SQL metacharacters, bad IDs, oversized bodies, missing or wrong
 * or device tokens) is checked to change nothing: a fingerprint of every
 * table and of the artifact directory is taken before and after.
 */
#include <dirent.h>
#include <errno.h>
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
#include <mbedtls/sha256.h>

#include "nb_crypto_mbedtls.h"
#include "nb_image.h"
#include "nb_sign_openssl.h"
#include "nb_testpkg.h"
#include "server.h"
#include "store.h"

#define ADMIN "admin-secret-for-tests"
#define T0 1767225600 /* 2026-01-01T00:00:00Z, a Thursday */

static int g_pg;                 /* this group runs on PostgreSQL */
static const char *g_pg_url;     /* NB_TEST_DB */
static unsigned g_dbn;

struct fx {
    char dir[256];
    char art[300];
    char root_pem[300];
    char dburl[600];
    char pgdb[64];
    struct srv_config cfg;
    struct srv s;
    int64_t now;
    struct nb_mbedtls_crypto mc;
    struct nb_crypto crypto;
    struct nb_testkeys keys;
    char location[160];          /* Location header of the last answer */
    unsigned uploads;
};

/* ------------------------------------------------------------ helpers */

static int64_t fx_clock(void *ctx)
{
    return ((struct fx *)ctx)->now;
}

static void hexs(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

static void sha256_hex(const void *p, size_t n, char out[65])
{
    uint8_t d[32];
    mbedtls_sha256_ret(p, n, d, 0);
    hexs(d, 32, out);
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(p, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

/* The whole file, or NULL (and *n 0) when it does not exist. */
static uint8_t *read_art(struct fx *f, const char *name, size_t *n)
{
    char path[600];
    struct stat st;
    uint8_t *b;
    FILE *fp;
    snprintf(path, sizeof path, "%s/%s", f->art, name);
    *n = 0;
    if (stat(path, &st))
        return NULL;
    b = malloc((size_t)st.st_size + 1);
    fp = fopen(path, "rb");
    assert_non_null(fp);
    *n = fread(b, 1, (size_t)st.st_size, fp);
    fclose(fp);
    return b;
}

static int art_exists(struct fx *f, const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", f->art, name);
    return access(path, F_OK) == 0;
}

/* "a=b&c=d" (no decoding) into kv (at most 8). */
static unsigned parse_query(char *q, struct srv_kv *kv)
{
    unsigned n = 0;
    char *save = NULL;
    for (char *t = q ? strtok_r(q, "&", &save) : NULL; t && n < 8;
         t = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(t, '=');
        if (eq)
            *eq = '\0';
        kv[n].key = t;
        kv[n].value = eq ? eq + 1 : "";
        n++;
    }
    return n;
}

struct call {
    const char *token;        /* NULL: no Authorization header */
    const char *method, *path, *query;
    const char *body;         /* JSON */
    const void *upload;       /* upload bytes (with upload_len) */
    size_t upload_len;
    int no_upload;            /* an upload request without a body file */
    int too_large;
};

/* Dispatch one request; returns the status, *out the JSON answer (or
 * NULL), and leaves the upload file cleaned up as http.c would. */
static int dispatch(struct fx *f, const struct call *c, json_t **out)
{
    struct srv_kv hdr[2], q[8];
    char qbuf[512], auth[300], upath[600] = "";
    struct srv_req req;
    struct srv_resp resp;
    json_error_t je;
    int status;
    memset(&req, 0, sizeof req);
    req.method = c->method;
    req.path = c->path;
    if (c->token) {
        snprintf(auth, sizeof auth, "Bearer %s", c->token);
        hdr[0].key = "Authorization";
        hdr[0].value = auth;
        req.headers = hdr;
        req.n_headers = 1;
    }
    snprintf(qbuf, sizeof qbuf, "%s", c->query ? c->query : "");
    req.n_query = parse_query(c->query ? qbuf : NULL, q);
    req.query = q;
    if (c->body) {
        req.body = c->body;
        req.body_len = strlen(c->body);
    }
    req.body_too_large = c->too_large;
    if (srv_is_upload(c->method, c->path) && !c->no_upload) {
        snprintf(upath, sizeof upath, "%s/.upload-%u", f->art, f->uploads++);
        write_file(upath, c->upload ? c->upload : "", c->upload_len);
        req.upload_path = upath;
        req.upload_size = c->upload_len;
    }
    req.remote = "127.0.0.1:1";
    srv_resp_init(&resp);
    srv_dispatch(&f->s, &req, &resp);
    if (upath[0])
        unlink(upath); /* what http.c does with a leftover upload */
    status = resp.status;
    f->location[0] = '\0';
    for (unsigned i = 0; i < resp.n_hdrs; i++)
        if (!strcmp(resp.hdrs[i].name, "Location"))
            snprintf(f->location, sizeof f->location, "%s",
                     resp.hdrs[i].value);
    if (out) {
        *out = NULL;
        if (resp.kind == SRV_BODY_BUF && resp.body)
            *out = json_loadb(resp.body, resp.body_len, 0, &je);
    }
    srv_resp_free(&resp);
    return status;
}

static int api(struct fx *f, const char *method, const char *path,
               const char *query, const char *body, json_t **out)
{
    struct call c = {ADMIN, method, path, query, body, NULL, 0, 0, 0};
    return dispatch(f, &c, out);
}

static int upload(struct fx *f, const char *query, const void *p, size_t n,
                  json_t **out)
{
    struct call c = {ADMIN, "POST", "/api/v1/packages", query, NULL, p, n,
                     0, 0};
    return dispatch(f, &c, out);
}

static const char *jstr(json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    return s ? s : "";
}

static int64_t jint(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

/* An error answer with this code and a one-line message. */
static void is_error(json_t *j, const char *code)
{
    assert_non_null(j);
    assert_string_equal(jstr(j, "error"), code);
    assert_true(strlen(jstr(j, "message")) > 0);
    assert_null(strchr(jstr(j, "message"), '\n'));
}

/* ------------------------------------------------------- fingerprint */

struct sbuf {
    char *p;
    size_t len, cap;
};

static void sb_add(struct sbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

static int fp_row(void *arg, const struct nb_db_row *row)
{
    struct sbuf *b = arg;
    for (int i = 0; i < nb_db_columns(row); i++) {
        const char *t = nb_db_text(row, i);
        sb_add(b, t ? t : "<null>");
        sb_add(b, "|");
    }
    sb_add(b, "\n");
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every row of every table, and the artifact directory's names. */
static char *fingerprint(struct fx *f)
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
    struct sbuf b = {NULL, 0, 0};
    struct nb_db_conn *c = nb_db_acquire(f->s.db);
    char *names[256];
    unsigned n = 0;
    struct dirent *e;
    DIR *d;
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        sb_add(&b, q[i]);
        sb_add(&b, "\n");
        assert_int_equal(nb_db_exec(c, q[i], NULL, 0, fp_row, &b, NULL),
                         NB_OK);
    }
    nb_db_release(f->s.db, c);
    d = opendir(f->art);
    assert_non_null(d);
    while ((e = readdir(d)) && n < 256)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_names);
    sb_add(&b, "artifacts:\n");
    for (unsigned i = 0; i < n; i++) {
        sb_add(&b, names[i]);
        sb_add(&b, "\n");
        free(names[i]);
    }
    return b.p;
}

static int64_t count(struct fx *f, const char *sql)
{
    struct sbuf b = {NULL, 0, 0};
    struct nb_db_conn *c = nb_db_acquire(f->s.db);
    int64_t v;
    assert_int_equal(nb_db_exec(c, sql, NULL, 0, fp_row, &b, NULL), NB_OK);
    nb_db_release(f->s.db, c);
    assert_non_null(b.p);
    v = strtoll(b.p, NULL, 10);
    free(b.p);
    return v;
}

/* ------------------------------------------------------------ set-up */

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[700];
    struct stat st;
    if (!d)
        return;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (!lstat(p, &st) && S_ISDIR(st.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* The URL of database `name` on the server of `url` (same host, user,
 * options). */
static void pg_url_with_db(const char *url, const char *name, char *out,
                           size_t cap)
{
    const char *host = strstr(url, "://");
    const char *slash = host ? strchr(host + 3, '/') : NULL;
    const char *qm = strchr(url, '?');
    size_t n = slash ? (size_t)(slash - url)
                     : qm ? (size_t)(qm - url) : strlen(url);
    snprintf(out, cap, "%.*s/%s%s", (int)n, url, name, qm ? qm : "");
}

static void pg_admin(const char *sql)
{
    struct nb_db *db;
    struct nb_db_conn *c;
    char msg[256];
    assert_int_equal(nb_db_open(g_pg_url, 1, &db, msg, sizeof msg), NB_OK);
    c = nb_db_acquire(db);
    if (nb_db_exec_script(c, sql))
        fail_msg("%s: %s", sql, nb_db_errmsg(c));
    nb_db_release(db, c);
    nb_db_close(db);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    char pem[NB_OPENSSL_PUB_PEM_MAX], msg[256], sql[128];
    size_t len;
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "%s/nb-mgmt-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->art, sizeof f->art, "%s/art", f->dir);
    assert_int_equal(mkdir(f->art, 0755), 0);
    nb_crypto_mbedtls_init(&f->crypto, &f->mc);
    assert_int_equal(nb_testkeys_init(&f->keys, &f->crypto), NB_OK);
    assert_int_equal(nb_openssl_pub_to_pem(f->keys.root.pub, pem, sizeof pem,
                                           &len), NB_OK);
    snprintf(f->root_pem, sizeof f->root_pem, "%s/test-root.pem", f->dir);
    write_file(f->root_pem, pem, len);

    if (g_pg) {
        snprintf(f->pgdb, sizeof f->pgdb, "nbmgmt_%d_%u", (int)getpid(),
                 g_dbn++);
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", f->pgdb);
        pg_admin(sql);
        pg_url_with_db(g_pg_url, f->pgdb, f->dburl, sizeof f->dburl);
    } else {
        snprintf(f->dburl, sizeof f->dburl, "sqlite:%s/server.db", f->dir);
    }
    srv_config_defaults(&f->cfg);
    snprintf(f->cfg.db, sizeof f->cfg.db, "%s", f->dburl);
    snprintf(f->cfg.artifacts, sizeof f->cfg.artifacts, "%s", f->art);
    snprintf(f->cfg.root_pub[0], sizeof f->cfg.root_pub[0], "%s",
             f->root_pem);
    f->cfg.n_root_pub = 1;
    srv_token_sha256_hex(ADMIN, f->cfg.admin_token_sha256[0]);
    f->cfg.n_admin_token_sha256 = 1;
    f->cfg.threads = 2;
    f->cfg.quiet = 1;
    if (srv_init(&f->s, &f->cfg, msg, sizeof msg) != NB_OK)
        fail_msg("srv_init: %s", msg);
    f->s.log.fd = -1; /* quiet */
    f->s.now = fx_clock;
    f->s.now_ctx = f;
    f->now = T0;
    srv_set_public_url(&f->s, "http://127.0.0.1:8080");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char sql[128];
    srv_fini(&f->s);
    if (g_pg) {
        snprintf(sql, sizeof sql, "DROP DATABASE %s", f->pgdb);
        pg_admin(sql);
    }
    nb_testkeys_free(&f->keys);
    nb_crypto_mbedtls_free(&f->crypto, &f->mc);
    rm_tree(f->dir);
    free(f);
    return 0;
}

/* ---------------------------------------------------------- packages */

static void make_pkg(struct fx *f, const char *version, uint32_t svn,
                     uint32_t size, uint64_t seed, struct nb_buf *out)
{
    uint32_t v[3], packed = 0;
    assert_int_equal(sscanf(version, "%u.%u.%u", &v[0], &v[1], &v[2]), 3);
    assert_true(nb_version_pack(v[0], v[1], v[2], &packed));
    memset(out, 0, sizeof *out);
    assert_int_equal(nb_testpkg_make(&f->keys, &f->crypto, packed, svn, size,
                                     seed, out), NB_OK);
}

static uint32_t mlen_of(const struct nb_buf *b)
{
    return (uint32_t)b->p[8] | (uint32_t)b->p[9] << 8 |
           (uint32_t)b->p[10] << 16 | (uint32_t)b->p[11] << 24;
}

/* Upload a good package; returns its ID (static buffer). */
static const char *put_pkg(struct fx *f, const char *channel,
                           const char *version, uint32_t svn)
{
    static char id[SRV_ID_MAX + 1];
    char q[64];
    struct nb_buf b;
    json_t *j;
    make_pkg(f, version, svn, 3000, svn * 7 + 1, &b);
    snprintf(q, sizeof q, "channel=%s", channel);
    assert_int_equal(upload(f, q, b.p, b.len, &j), 201);
    snprintf(id, sizeof id, "%s", jstr(j, "id"));
    json_decref(j);
    nb_buf_free(&b);
    return id;
}

static void test_upload(void **state)
{
    struct fx *f = *state;
    struct nb_buf b;
    json_t *j, *j2;
    char sha[65], id[32], name[64];
    uint8_t *got;
    size_t n;

    make_pkg(f, "1.1.0", 2, 5000, 42, &b);
    sha256_hex(b.p, b.len, sha);
    snprintf(id, sizeof id, "pkg-%.12s", sha);

    assert_int_equal(upload(f, "channel=production", b.p, b.len, &j), 201);
    assert_string_equal(jstr(j, "id"), id);
    assert_string_equal(jstr(j, "version"), "1.1.0");
    assert_int_equal(jint(j, "security_version"), 2);
    assert_string_equal(jstr(j, "channel"), "production");
    assert_string_equal(jstr(j, "vendor"),
                        "6e622d74-6573-742d-7665-6e646f720001");
    assert_string_equal(jstr(j, "class"),
                        "6e622d74-6573-742d-636c-617373000001");
    assert_int_equal(json_array_size(json_object_get(j, "hw_revs")), 1);
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(j, "hw_revs"), 0)), "sim-1");
    assert_int_equal(jint(j, "size"), (int64_t)b.len);
    assert_int_equal(jint(j, "payload_size"), 5000);
    assert_int_equal(jint(j, "payload_offset"), (int64_t)b.len - 5000);
    assert_string_equal(jstr(j, "sha256"), sha);
    snprintf(name, sizeof name, "%s.nbpkg", id);
    assert_string_equal(jstr(j, "file"), name);
    snprintf(name, sizeof name, "%s.nbman", id);
    assert_string_equal(jstr(j, "manifest_file"), name);
    assert_int_equal(jint(j, "created_at"), T0);
    assert_int_equal(json_array_size(json_object_get(j, "files")), 0);
    snprintf(name, sizeof name, "/api/v1/packages/%s", id);
    assert_string_equal(f->location, name);
    json_decref(j);

    /* The files: the package as uploaded, its manifest alone. */
    snprintf(name, sizeof name, "%s.nbpkg", id);
    got = read_art(f, name, &n);
    assert_non_null(got);
    assert_int_equal(n, b.len);
    assert_memory_equal(got, b.p, n);
    free(got);
    snprintf(name, sizeof name, "%s.nbman", id);
    got = read_art(f, name, &n);
    assert_non_null(got);
    assert_int_equal(n, mlen_of(&b));
    assert_memory_equal(got, b.p + NB_PKG_HDR_SIZE, n);
    free(got);

    /* The same bytes again: 200, the same package, nothing new. */
    char *before = fingerprint(f);
    f->now += 100;
    assert_int_equal(upload(f, "channel=development", b.p, b.len, &j), 200);
    assert_string_equal(jstr(j, "id"), id);
    assert_string_equal(jstr(j, "channel"), "production");
    assert_int_equal(jint(j, "created_at"), T0);
    json_decref(j);
    char *after = fingerprint(f);
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* Show and list. */
    snprintf(name, sizeof name, "/api/v1/packages/%s", id);
    assert_int_equal(api(f, "GET", name, NULL, NULL, &j), 200);
    assert_string_equal(jstr(j, "id"), id);
    assert_int_equal(api(f, "GET", "/api/v1/packages", NULL, NULL, &j2), 200);
    assert_int_equal(json_array_size(json_object_get(j2, "items")), 1);
    assert_true(json_equal(json_array_get(json_object_get(j2, "items"), 0),
                           j));
    assert_true(json_is_null(json_object_get(j2, "next")));
    json_decref(j);
    json_decref(j2);
    assert_int_equal(api(f, "GET", "/api/v1/packages/pkg-000000000000", NULL,
                         NULL, &j), 404);
    is_error(j, "not_found");
    json_decref(j);
    nb_buf_free(&b);
}

static void test_package_paging(void **state)
{
    struct fx *f = *state;
    json_t *j;
    char ids[3][SRV_ID_MAX + 1], q[80];
    for (int i = 0; i < 3; i++) {
        char v[16];
        snprintf(v, sizeof v, "1.%d.0", i);
        snprintf(ids[i], sizeof ids[i], "%s", put_pkg(f, "development", v,
                                                      (uint32_t)i + 1));
    }
    qsort(ids, 3, sizeof ids[0], (int (*)(const void *, const void *))strcmp);
    assert_int_equal(api(f, "GET", "/api/v1/packages", "limit=2", NULL, &j),
                     200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 2);
    assert_string_equal(jstr(j, "next"), ids[1]);
    json_decref(j);
    snprintf(q, sizeof q, "limit=2&after=%s", ids[1]);
    assert_int_equal(api(f, "GET", "/api/v1/packages", q, NULL, &j), 200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 1);
    assert_string_equal(jstr(json_array_get(json_object_get(j, "items"), 0),
                             "id"), ids[2]);
    assert_true(json_is_null(json_object_get(j, "next")));
    json_decref(j);
}

/* Another root: the TEST signing key delegated by a root the server does
 * not trust. */
static void other_root_pkg(struct fx *f, struct nb_buf *out)
{
    struct nb_testkeys o;
    struct nb_delegation_req req;
    uint32_t packed = 0;
    assert_int_equal(nb_testkeys_init(&o, &f->crypto), NB_OK);
    nb_test_key_free(&o.root);
    assert_int_equal(nb_test_key_init(&o.root, 99), NB_OK);
    memcpy(o.root_signer.pub, o.root.pub, NB_PUBKEY_LEN);
    nb_buf_free(&o.delegation);
    memset(&o.delegation, 0, sizeof o.delegation);
    memset(&req, 0, sizeof req);
    memcpy(req.pub, o.sign.pub, NB_PUBKEY_LEN);
    req.not_before = 946684800u;
    req.not_after = 4102444800u;
    nb_testpkg_vendor(req.vendor);
    assert_int_equal(nb_build_delegation(&f->crypto, &o.root_signer, &req,
                                         &o.delegation), NB_OK);
    assert_true(nb_version_pack(9, 9, 9, &packed));
    memset(out, 0, sizeof *out);
    assert_int_equal(nb_testpkg_make(&o, &f->crypto, packed, 9, 2000, 5,
                                     out), NB_OK);
    nb_testkeys_free(&o);
}

/* Upload `p`; expect `status` and `code` with `errname` in the message,
 * and no change at all. */
static void refused(struct fx *f, const void *p, size_t n, int status,
                    const char *code, const char *errname)
{
    char *before = fingerprint(f), *after;
    json_t *j;
    assert_int_equal(upload(f, "channel=production", p, n, &j), status);
    is_error(j, code);
    if (errname && !strstr(jstr(j, "message"), errname))
        fail_msg("message \"%s\" does not name %s", jstr(j, "message"),
                 errname);
    json_decref(j);
    after = fingerprint(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void test_upload_refused(void **state)
{
    struct fx *f = *state;
    struct nb_buf good, other, b;
    uint32_t ml;
    make_pkg(f, "1.1.0", 2, 9000, 3, &good);
    ml = mlen_of(&good);
    b.p = malloc(good.len + 1);
    b.len = good.len;

    other_root_pkg(f, &other);
    refused(f, other.p, other.len, 422, "signature", "NB_ERR_UNKNOWN_KEY");
    nb_buf_free(&other);

    /* A flipped byte in the payload (first block, then the last). */
    memcpy(b.p, good.p, good.len);
    b.p[good.len - 9000 + 10] ^= 1;
    refused(f, b.p, b.len, 422, "signature", "NB_ERR_DIGEST");
    memcpy(b.p, good.p, good.len);
    b.p[good.len - 1] ^= 0x80;
    refused(f, b.p, b.len, 422, "signature", "NB_ERR_DIGEST");
    /* In the manifest's signature (its last bytes). */
    memcpy(b.p, good.p, good.len);
    b.p[NB_PKG_HDR_SIZE + ml - 1] ^= 1;
    refused(f, b.p, b.len, 422, "signature", "NB_ERR_SIGNATURE");
    /* Form: cut, extended, padding, header, not a package, empty. */
    refused(f, good.p, good.len - 1, 400, "bad_request", "NB_ERR_TRUNCATED");
    refused(f, good.p, NB_PKG_HDR_SIZE + ml / 2, 400, "bad_request",
            "NB_ERR_TRUNCATED");
    memcpy(b.p, good.p, good.len);
    b.p[good.len] = 0;
    refused(f, b.p, good.len + 1, 400, "bad_request", "NB_ERR_TRAILING");
    memcpy(b.p, good.p, good.len);
    b.p[NB_PKG_HDR_SIZE + ml] = 0x55;
    refused(f, b.p, b.len, 400, "bad_request", "NB_ERR_MALFORMED");
    memcpy(b.p, good.p, good.len);
    b.p[4] = 2;
    refused(f, b.p, b.len, 400, "bad_request", "NB_ERR_UNSUPPORTED");
    refused(f, "hello, world", 12, 400, "bad_request", "NB_ERR_MALFORMED");
    refused(f, "NBPK", 4, 400, "bad_request", "NB_ERR_TRUNCATED");
    refused(f, "", 0, 400, "bad_request", NULL);

    /* Bad channel, unknown argument, no body file. */
    char *before = fingerprint(f), *after;
    json_t *j;
    assert_int_equal(upload(f, "channel=beta", good.p, good.len, &j), 400);
    is_error(j, "bad_request");
    json_decref(j);
    assert_int_equal(upload(f, "channel=production&x=1", good.p, good.len,
                            &j), 400);
    json_decref(j);
    assert_int_equal(upload(f, "channel=production&channel=development",
                            good.p, good.len, &j), 400);
    json_decref(j);
    struct call c = {ADMIN, "POST", "/api/v1/packages", NULL, NULL, NULL, 0,
                     1, 0};
    assert_int_equal(dispatch(f, &c, &j), 400);
    json_decref(j);
    after = fingerprint(f);
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* And the good one still goes in. */
    assert_int_equal(upload(f, NULL, good.p, good.len, &j), 201);
    assert_string_equal(jstr(j, "channel"), "production");
    json_decref(j);
    free(b.p);
    nb_buf_free(&good);
}

static void test_rollback(void **state)
{
    struct fx *f = *state;
    struct nb_buf b;
    json_t *j;
    put_pkg(f, "production", "1.3.0", 3);
    make_pkg(f, "1.2.0", 2, 3000, 77, &b);
    refused(f, b.p, b.len, 409, "rollback", NULL);
    /* Development takes it (to test a downgrade). */
    assert_int_equal(upload(f, "channel=development", b.p, b.len, &j), 201);
    assert_string_equal(jstr(j, "channel"), "development");
    json_decref(j);
    nb_buf_free(&b);
    /* The same security version again is no rollback. */
    put_pkg(f, "production", "1.3.1", 3);
    put_pkg(f, "production", "1.4.0", 4);
    /* A development package with a high one does not raise production's
     * floor. */
    put_pkg(f, "development", "2.0.0", 9);
    put_pkg(f, "production", "1.4.1", 4);
}

static void test_revoked_and_trust_config(void **state)
{
    struct fx *f = *state;
    struct nb_buf b, rev;
    uint8_t kid[1][NB_KEY_ID_LEN];
    char path[600];
    json_t *j;
    make_pkg(f, "1.1.0", 1, 2000, 1, &b);
    assert_int_equal(nb_key_id(&f->crypto, f->keys.sign.pub, kid[0]), NB_OK);
    memset(&rev, 0, sizeof rev);
    assert_int_equal(nb_build_revocation(&f->crypto, &f->keys.root_signer, 1,
                                         1, (const uint8_t(*)[8])kid, &rev),
                     NB_OK);
    snprintf(path, sizeof path, "%s/rev-1.cose", f->art);
    write_file(path, rev.p, rev.len);
    snprintf(f->cfg.revocations, sizeof f->cfg.revocations, "rev-1.cose");
    f->cfg.revocations_seq = 1;
    refused(f, b.p, b.len, 422, "signature", "NB_ERR_REVOKED");

    /* A revocation list that does not verify: fail closed (500). */
    write_file(path, "garbage", 7);
    refused(f, b.p, b.len, 500, "internal", NULL);
    f->cfg.revocations[0] = '\0';

    /* No root_pub, or one that is not a key: 500, nothing stored. */
    f->cfg.n_root_pub = 0;
    refused(f, b.p, b.len, 500, "internal", NULL);
    f->cfg.n_root_pub = 1;
    snprintf(path, sizeof path, "%s/not-a-key.pem", f->dir);
    write_file(path, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC "
               "KEY-----\n", 55);
    snprintf(f->cfg.root_pub[0], sizeof f->cfg.root_pub[0], "%s", path);
    refused(f, b.p, b.len, 500, "internal", NULL);
    snprintf(f->cfg.root_pub[0], sizeof f->cfg.root_pub[0], "%s",
             f->root_pem);
    assert_int_equal(upload(f, NULL, b.p, b.len, &j), 201);
    json_decref(j);
    nb_buf_free(&b);
    nb_buf_free(&rev);
}

static int put_file(struct fx *f, const char *id, const char *name,
                    const char *bytes, json_t **out)
{
    char path[400];
    snprintf(path, sizeof path, "/api/v1/packages/%s/files/%s", id, name);
    struct call c = {ADMIN, "PUT", path, NULL, NULL, bytes, strlen(bytes), 0,
                     0};
    return dispatch(f, &c, out);
}

static void test_extra_files(void **state)
{
    struct fx *f = *state;
    char id[SRV_ID_MAX + 1], name[300], path[300], old[300];
    json_t *j, *fl;
    size_t n;
    uint8_t *got;
    snprintf(id, sizeof id, "%s", put_pkg(f, "production", "1.1.0", 1));

    assert_int_equal(put_file(f, id, "fw.swu", "hello world", &j), 201);
    fl = json_object_get(j, "file");
    assert_string_equal(jstr(j, "package"), id);
    assert_string_equal(jstr(fl, "name"), "fw.swu");
    assert_int_equal(jint(fl, "size"), 11);
    assert_string_equal(jstr(fl, "sha256"), "b94d27b9934d3e08a52e52d7da7dab"
                        "fac484efe37a5380ee9088f7ace2efcde9");
    assert_string_equal(jstr(fl, "sha1"),
                        "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed");
    assert_string_equal(jstr(fl, "md5"), "5eb63bbbe01eeed093cb22bb8f5acdc3");
    snprintf(name, sizeof name, "%s--b94d27b9934d--fw.swu", id);
    assert_string_equal(jstr(fl, "file"), name);
    got = read_art(f, name, &n);
    assert_int_equal(n, 11);
    assert_memory_equal(got, "hello world", 11);
    free(got);
    snprintf(old, sizeof old, "%s", name);
    json_decref(j);

    /* Replaced: 200, the old bytes gone, the package lists the new. */
    assert_int_equal(put_file(f, id, "fw.swu", "hello world!", &j), 200);
    snprintf(name, sizeof name, "%s", jstr(json_object_get(j, "file"),
                                           "file"));
    json_decref(j);
    assert_true(art_exists(f, name));
    assert_false(art_exists(f, old));
    assert_int_equal(put_file(f, id, "a+b~c_1.2-x.bin", "x", &j), 201);
    json_decref(j);
    snprintf(path, sizeof path, "/api/v1/packages/%s", id);
    assert_int_equal(api(f, "GET", path, NULL, NULL, &j), 200);
    fl = json_object_get(j, "files");
    assert_int_equal(json_array_size(fl), 2);
    assert_string_equal(jstr(json_array_get(fl, 1), "name"), "fw.swu");
    assert_int_equal(jint(json_array_get(fl, 1), "size"), 12);
    json_decref(j);

    /* Refused, changing nothing: bad names, no package, empty body. */
    static const char *const bad[] = {".hidden", "a b", "x..y", "a%b",
                                      "q?x", "\x01", "\xc3\xa9t\xc3\xa9"};
    char *before = fingerprint(f), *after;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(put_file(f, id, bad[i], "data", &j), 400);
        is_error(j, "bad_request");
        json_decref(j);
    }
    char longname[260];
    memset(longname, 'a', 201);
    longname[201] = '\0';
    assert_int_equal(put_file(f, id, longname, "data", &j), 400);
    json_decref(j);
    assert_int_equal(put_file(f, "pkg-000000000000", "fw.swu", "data", &j),
                     404);
    is_error(j, "not_found");
    json_decref(j);
    assert_int_equal(put_file(f, id, "fw.swu", "", &j), 400);
    json_decref(j);
    assert_int_equal(put_file(f, "bad id!", "fw.swu", "data", &j), 400);
    json_decref(j);
    snprintf(path, sizeof path, "/api/v1/packages/%s/files/fw.swu", id);
    assert_int_equal(api(f, "GET", path, NULL, NULL, &j), 405);
    json_decref(j);
    after = fingerprint(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* ----------------------------------------------------------- devices */

static void register_device(struct fx *f, const char *body, char token[65])
{
    json_t *j;
    assert_int_equal(api(f, "POST", "/api/v1/devices", NULL, body, &j), 201);
    assert_int_equal(strlen(jstr(j, "token")), 64);
    if (token)
        snprintf(token, 65, "%s", jstr(j, "token"));
    json_decref(j);
}

static int checkin(struct fx *f, const char *id, const char *token,
                   const char *version, json_t **out)
{
    char path[128], body[256];
    snprintf(path, sizeof path, "/api/v1/devices/%s/checkin", id);
    snprintf(body, sizeof body, "{\"hw_rev\": \"sim-1\", \"version\": "
             "\"%s\", \"security_version\": 1, \"slots\": []}", version);
    struct call c = {token, "POST", path, NULL, body, NULL, 0, 0, 0};
    return dispatch(f, &c, out);
}

static int report(struct fx *f, const char *id, const char *token,
                  const char *rollout, const char *state)
{
    char path[128], body[300];
    json_t *j;
    int st;
    snprintf(path, sizeof path, "/api/v1/devices/%s/reports", id);
    snprintf(body, sizeof body, "{\"rollout\": \"%s\", \"version\": "
             "\"1.1.0\", \"state\": \"%s\", \"bytes\": 0, \"total\": 100, "
             "\"reason\": \"NB_ERR_DIGEST\"}", rollout, state);
    struct call c = {token, "POST", path, NULL, body, NULL, 0, 0, 0};
    st = dispatch(f, &c, &j);
    json_decref(j);
    return st;
}

static void test_auth(void **state)
{
    struct fx *f = *state;
    char token[65], *before, *after;
    json_t *j;
    struct nb_buf b;
    register_device(f, "{\"id\": \"d-1\", \"hw_rev\": \"sim-1\"}", token);
    make_pkg(f, "1.1.0", 1, 1000, 1, &b);
    before = fingerprint(f);
    static const struct {
        const char *method, *path, *body;
    } reqs[] = {
        {"GET", "/api/v1/devices", NULL},
        {"POST", "/api/v1/devices", "{\"id\": \"d-2\"}"},
        {"GET", "/api/v1/devices/d-1", NULL},
        {"PUT", "/api/v1/devices/d-1/tags", "{\"tags\": [\"x\"]}"},
        {"GET", "/api/v1/packages", NULL},
        {"POST", "/api/v1/packages", NULL},
        {"POST", "/api/v1/rollouts", "{\"package\": \"pkg-x\"}"},
        {"GET", "/api/v1/rollouts", NULL},
    };
    const char *tokens[] = {NULL, "", "wrong", token, ADMIN "x"};
    for (size_t t = 0; t < sizeof tokens / sizeof tokens[0]; t++)
        for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
            struct call c = {tokens[t], reqs[i].method, reqs[i].path, NULL,
                             reqs[i].body, b.p, b.len, 0, 0};
            assert_int_equal(dispatch(f, &c, &j), 401);
            is_error(j, "unauthorized");
            json_decref(j);
        }
    after = fingerprint(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
    /* The device token still works on the device API. */
    assert_int_equal(checkin(f, "d-1", token, "1.0.0", &j), 200);
    json_decref(j);
    /* An admin token is no device token. */
    assert_int_equal(checkin(f, "d-1", ADMIN, "1.0.0", &j), 401);
    json_decref(j);
    nb_buf_free(&b);
}

static void test_devices(void **state)
{
    struct fx *f = *state;
    char token[65], hash[65], *before, *after;
    json_t *j, *items;
    register_device(f, "{\"id\": \"d-1\", \"hw_rev\": \"sim-1\", \"tags\": "
                    "[\"eu\", \"beta\", \"eu\"], \"group\": \"line-3\"}",
                    token);
    assert_string_equal(f->location, "/api/v1/devices/d-1");
    /* Only the token's SHA-256 is kept. */
    srv_token_sha256_hex(token, hash);
    before = fingerprint(f);
    assert_null(strstr(before, token));
    assert_non_null(strstr(before, hash));
    free(before);
    register_device(f, "{\"id\": \"d-2\", \"hw_rev\": \"sim-2\", \"tags\": "
                    "[\"us\"]}", NULL);
    register_device(f, "{\"id\": \"d-3\", \"group\": \"line-3\", \"hw_rev\":"
                    " null}", NULL);
    assert_int_equal(api(f, "POST", "/api/v1/devices", NULL,
                         "{\"id\": \"d-1\"}", &j), 409);
    is_error(j, "conflict");
    json_decref(j);

    assert_int_equal(api(f, "GET", "/api/v1/devices/d-1", NULL, NULL, &j),
                     200);
    assert_string_equal(jstr(j, "hw_rev"), "sim-1");
    assert_string_equal(jstr(j, "group"), "line-3");
    assert_int_equal(json_array_size(json_object_get(j, "tags")), 2);
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(j, "tags"), 0)), "beta");
    assert_true(json_is_null(json_object_get(j, "version")));
    assert_true(json_is_null(json_object_get(j, "last_seen")));
    assert_null(json_object_get(j, "token"));
    assert_null(json_object_get(j, "token_sha256"));
    assert_int_equal(json_array_size(json_object_get(j, "rollouts")), 0);
    assert_string_equal(jstr(json_array_get(json_object_get(j, "events"), 0),
                             "kind"), "register");
    json_decref(j);

    f->now += 10;
    assert_int_equal(checkin(f, "d-1", token, "1.0.0", &j), 200);
    json_decref(j);
    assert_int_equal(api(f, "GET", "/api/v1/devices/d-1", NULL, NULL, &j),
                     200);
    assert_string_equal(jstr(j, "version"), "1.0.0");
    assert_int_equal(jint(j, "last_seen"), T0 + 10);
    json_decref(j);

    /* Filters and paging. */
    static const struct {
        const char *q, *ids, *next;
    } lists[] = {
        {NULL, "d-1 d-2 d-3", NULL},
        {"tag=eu", "d-1", NULL},
        {"tag=us", "d-2", NULL},
        {"tag=none", "", NULL},
        {"group=line-3", "d-1 d-3", NULL},
        {"hw_rev=sim-2", "d-2", NULL},
        {"version=1.0.0", "d-1", NULL},
        {"group=line-3&tag=beta&hw_rev=sim-1&version=1.0.0", "d-1", NULL},
        {"limit=2", "d-1 d-2", "d-2"},
        {"limit=2&after=d-2", "d-3", NULL},
        {"after=d-3", "", NULL},
    };
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        char got[128] = "";
        size_t k;
        json_t *it;
        assert_int_equal(api(f, "GET", "/api/v1/devices", lists[i].q, NULL,
                             &j), 200);
        items = json_object_get(j, "items");
        json_array_foreach(items, k, it) {
            if (k)
                strcat(got, " ");
            strcat(got, jstr(it, "id"));
        }
        if (strcmp(got, lists[i].ids))
            fail_msg("?%s: got [%s], want [%s]", lists[i].q, got,
                     lists[i].ids);
        if (lists[i].next)
            assert_string_equal(jstr(j, "next"), lists[i].next);
        else
            assert_true(json_is_null(json_object_get(j, "next")));
        json_decref(j);
    }

    /* Tags and group. */
    assert_int_equal(api(f, "PUT", "/api/v1/devices/d-2/tags", NULL,
                         "{\"tags\": [\"z\", \"a\"]}", &j), 200);
    assert_int_equal(json_array_size(json_object_get(j, "tags")), 2);
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(j, "tags"), 0)), "a");
    json_decref(j);
    assert_int_equal(api(f, "GET", "/api/v1/devices", "tag=us", NULL, &j),
                     200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 0);
    json_decref(j);
    assert_int_equal(api(f, "PUT", "/api/v1/devices/d-2/tags", NULL,
                         "{\"tags\": []}", &j), 200);
    assert_int_equal(json_array_size(json_object_get(j, "tags")), 0);
    json_decref(j);
    assert_int_equal(api(f, "PUT", "/api/v1/devices/d-2/group", NULL,
                         "{\"group\": \"line-9\"}", &j), 200);
    assert_string_equal(jstr(j, "group"), "line-9");
    json_decref(j);
    assert_int_equal(api(f, "PUT", "/api/v1/devices/d-1/group", NULL,
                         "{\"group\": null}", &j), 200);
    assert_true(json_is_null(json_object_get(j, "group")));
    json_decref(j);

    before = fingerprint(f);
    assert_int_equal(api(f, "GET", "/api/v1/devices/d-9", NULL, NULL, &j),
                     404);
    json_decref(j);
    assert_int_equal(api(f, "PUT", "/api/v1/devices/d-9/tags", NULL,
                         "{\"tags\": [\"a\"]}", &j), 404);
    json_decref(j);
    assert_int_equal(api(f, "PUT", "/api/v1/devices/d-9/group", NULL,
                         "{\"group\": \"a\"}", &j), 404);
    json_decref(j);
    after = fingerprint(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* ---------------------------------------------------------- rollouts */

static void create_rollout(struct fx *f, const char *pkg, const char *rest,
                           char id[SRV_ID_MAX + 1])
{
    char body[2048];
    json_t *j;
    snprintf(body, sizeof body, "{\"package\": \"%s\"%s%s}", pkg,
             rest ? ", " : "", rest ? rest : "");
    if (api(f, "POST", "/api/v1/rollouts", NULL, body, &j) != 201)
        fail_msg("create rollout %s: %s", body, jstr(j, "message"));
    snprintf(id, SRV_ID_MAX + 1, "%s", jstr(j, "id"));
    json_decref(j);
}

static json_t *rollout(struct fx *f, const char *id)
{
    char path[128];
    json_t *j;
    snprintf(path, sizeof path, "/api/v1/rollouts/%s", id);
    assert_int_equal(api(f, "GET", path, NULL, NULL, &j), 200);
    return j;
}

static int64_t cnt(json_t *r, const char *obj, const char *key)
{
    return jint(json_object_get(r, obj), key);
}

static int act(struct fx *f, const char *id, const char *what,
               const char *body, json_t **out)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/rollouts/%s/%s", id, what);
    return api(f, "POST", path, NULL, body, out);
}

static void test_rollout_lifecycle(void **state)
{
    struct fx *f = *state;
    char pkg[SRV_ID_MAX + 1], ro[SRV_ID_MAX + 1], tok[4][65], url[200];
    json_t *j;
    snprintf(pkg, sizeof pkg, "%s", put_pkg(f, "production", "1.1.0", 1));
    for (int i = 0; i < 4; i++) {
        char body[80];
        snprintf(body, sizeof body, "{\"id\": \"d-%d\", \"hw_rev\": "
                 "\"sim-1\"}", i + 1);
        register_device(f, body, tok[i]);
    }
    create_rollout(f, pkg, "\"policy\": {\"schedule\": [{\"percent\": 100}],"
                   " \"windows\": \"always\", \"failure_threshold\": \"30%\","
                   " \"min_attempted\": 2, \"silent_timeout\": \"2h\"}", ro);
    assert_string_equal(ro, "r-1");
    assert_string_equal(f->location, "/api/v1/rollouts/r-1");
    j = rollout(f, ro);
    assert_string_equal(jstr(j, "package"), pkg);
    assert_string_equal(jstr(j, "version"), "1.1.0");
    assert_string_equal(jstr(j, "state"), "running");
    assert_true(json_is_null(json_object_get(j, "pause_reason")));
    assert_int_equal(jint(j, "step"), 0);
    assert_int_equal(jint(j, "steps"), 1);
    assert_true(json_real_value(json_object_get(j, "percent")) == 100.0);
    assert_int_equal(jint(j, "step_started_at"), T0);
    assert_true(json_is_null(json_object_get(j, "next_step_at")));
    assert_true(json_is_true(json_object_get(j, "in_window")));
    assert_int_equal(jint(j, "devices"), 0);
    assert_int_equal(cnt(j, "counts", "offered"), 0);
    assert_int_equal(cnt(j, "step_counts", "attempted"), 0);
    assert_string_equal(jstr(json_object_get(j, "policy"),
                             "failure_threshold"), "30%");
    assert_true(json_is_object(json_object_get(j, "target")));
    json_decref(j);

    /* An offer, with the manifest the upload stored. */
    f->now += 5;
    assert_int_equal(checkin(f, "d-1", tok[0], "1.0.0", &j), 200);
    assert_string_equal(jstr(j, "action"), "update");
    assert_string_equal(jstr(j, "rollout"), ro);
    snprintf(url, sizeof url, "http://127.0.0.1:8080/api/v1/artifacts/%s."
             "nbman", pkg);
    assert_string_equal(jstr(j, "manifest_url"), url);
    json_decref(j);
    j = rollout(f, ro);
    assert_int_equal(cnt(j, "counts", "offered"), 1);
    assert_int_equal(jint(j, "devices"), 1);
    json_decref(j);
    assert_int_equal(report(f, "d-1", tok[0], ro, "downloading"), 200);
    j = rollout(f, ro);
    assert_int_equal(cnt(j, "counts", "downloading"), 1);
    json_decref(j);
    assert_int_equal(report(f, "d-1", tok[0], ro, "confirmed"), 200);

    /* Manual pause: no new offers. */
    assert_int_equal(act(f, ro, "pause", "{\"reason\": \"x'); DROP TABLE "
                         "rollouts; --\"}", &j), 200);
    assert_string_equal(jstr(j, "state"), "paused");
    assert_string_equal(jstr(j, "pause_reason"),
                        "manual: x'); DROP TABLE rollouts; --");
    assert_int_equal(cnt(j, "counts", "confirmed"), 1);
    json_decref(j);
    assert_int_equal(checkin(f, "d-2", tok[1], "1.0.0", &j), 200);
    assert_string_equal(jstr(j, "action"), "none");
    json_decref(j);
    /* Pausing again changes nothing. */
    char *before = fingerprint(f), *after;
    assert_int_equal(act(f, ro, "pause", NULL, &j), 200);
    assert_string_equal(jstr(j, "state"), "paused");
    json_decref(j);
    after = fingerprint(f);
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* Resume: the step starts again. Its last step reached and every
     * device offered it final (d-1 confirmed), the rollout counts as
     * completed until a device is offered it again. */
    f->now += 100;
    assert_int_equal(act(f, ro, "resume", "", &j), 200);
    assert_string_equal(jstr(j, "state"), "completed");
    assert_true(json_is_null(json_object_get(j, "pause_reason")));
    assert_int_equal(jint(j, "step_started_at"), f->now);
    assert_int_equal(cnt(j, "step_counts", "attempted"), 0);
    assert_int_equal(cnt(j, "counts", "confirmed"), 1);
    json_decref(j);

    /* One failure of one attempted (min_attempted 2, 30 %): auto-pause. */
    assert_int_equal(checkin(f, "d-2", tok[1], "1.0.0", &j), 200);
    assert_string_equal(jstr(j, "action"), "update");
    json_decref(j);
    assert_int_equal(report(f, "d-2", tok[1], ro, "failed"), 200);
    j = rollout(f, ro);
    assert_string_equal(jstr(j, "state"), "paused");
    assert_true(strncmp(jstr(j, "pause_reason"), "auto: ", 6) == 0);
    assert_int_equal(cnt(j, "step_counts", "attempted"), 1);
    assert_int_equal(cnt(j, "step_counts", "failed"), 1);
    assert_int_equal(cnt(j, "counts", "failed"), 1);
    json_decref(j);
    assert_int_equal(checkin(f, "d-3", tok[2], "1.0.0", &j), 200);
    assert_string_equal(jstr(j, "action"), "none");
    json_decref(j);
    /* The device shows its rollouts. */
    assert_int_equal(api(f, "GET", "/api/v1/devices/d-2", NULL, NULL, &j),
                     200);
    assert_string_equal(jstr(json_array_get(json_object_get(j, "rollouts"),
                                            0), "state"), "failed");
    assert_int_equal(jint(json_array_get(json_object_get(j, "rollouts"), 0),
                          "step"), 0);
    json_decref(j);
    assert_int_equal(api(f, "GET", "/api/v1/rollouts/r-1/devices", NULL,
                         NULL, &j), 200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 2);
    json_decref(j);

    /* Resume (every device offered is final: completed), then abort:
     * final. */
    assert_int_equal(act(f, ro, "resume", NULL, &j), 200);
    assert_string_equal(jstr(j, "state"), "completed");
    json_decref(j);
    assert_int_equal(act(f, ro, "abort", NULL, &j), 200);
    assert_string_equal(jstr(j, "state"), "aborted");
    json_decref(j);
    assert_int_equal(checkin(f, "d-4", tok[3], "1.0.0", &j), 200);
    assert_string_equal(jstr(j, "action"), "none");
    json_decref(j);
    before = fingerprint(f);
    assert_int_equal(act(f, ro, "resume", NULL, &j), 409);
    is_error(j, "conflict");
    json_decref(j);
    assert_int_equal(act(f, ro, "pause", NULL, &j), 409);
    json_decref(j);
    assert_int_equal(act(f, ro, "abort", NULL, &j), 200);
    json_decref(j);
    assert_int_equal(act(f, "r-77", "pause", NULL, &j), 404);
    json_decref(j);
    after = fingerprint(f);
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* List, newest first. */
    create_rollout(f, pkg, NULL, ro);
    assert_string_equal(ro, "r-2");
    assert_int_equal(api(f, "GET", "/api/v1/rollouts", NULL, NULL, &j), 200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 2);
    assert_string_equal(jstr(json_array_get(json_object_get(j, "items"), 0),
                             "id"), "r-2");
    json_decref(j);
    assert_int_equal(api(f, "GET", "/api/v1/rollouts", "limit=1", NULL, &j),
                     200);
    assert_string_equal(jstr(j, "next"), "r-2");
    json_decref(j);
    assert_int_equal(api(f, "GET", "/api/v1/rollouts", "after=r-2", NULL,
                         &j), 200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 1);
    assert_string_equal(jstr(json_array_get(json_object_get(j, "items"), 0),
                             "state"), "aborted");
    json_decref(j);
    assert_int_equal(api(f, "GET", "/api/v1/rollouts", "state=aborted", NULL,
                         &j), 200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 1);
    json_decref(j);
}

static void test_steps_and_silence(void **state)
{
    struct fx *f = *state;
    char pkg[SRV_ID_MAX + 1], ro[SRV_ID_MAX + 1], tok[65];
    json_t *j;
    snprintf(pkg, sizeof pkg, "%s", put_pkg(f, "production", "1.1.0", 1));
    register_device(f, "{\"id\": \"d-1\", \"hw_rev\": \"sim-1\"}", tok);
    create_rollout(f, pkg, "\"policy\": {\"schedule\": [{\"percent\": 0.0001,"
                   " \"hold\": \"1h\"}, {\"percent\": 100}], \"windows\": "
                   "\"always\", \"failure_threshold\": \"100%\", "
                   "\"silent_timeout\": \"2s\"}, \"target\": {\"hw_revs\": "
                   "[\"sim-1\"]}", ro);
    j = rollout(f, ro);
    assert_int_equal(jint(j, "step"), 0);
    assert_int_equal(jint(j, "steps"), 2);
    assert_int_equal(jint(j, "next_step_at"), T0 + 3600);
    json_decref(j);
    /* The step advances when someone looks, at its computed time. */
    f->now = T0 + 3601;
    j = rollout(f, ro);
    assert_int_equal(jint(j, "step"), 1);
    assert_true(json_real_value(json_object_get(j, "percent")) == 100.0);
    assert_int_equal(jint(j, "step_started_at"), T0 + 3600);
    assert_true(json_is_null(json_object_get(j, "next_step_at")));
    json_decref(j);

    assert_int_equal(checkin(f, "d-1", tok, "1.0.0", &j), 200);
    assert_string_equal(jstr(j, "action"), "update");
    json_decref(j);
    assert_int_equal(report(f, "d-1", tok, ro, "downloading"), 200);
    f->now += 1;
    j = rollout(f, ro);
    assert_int_equal(cnt(j, "counts", "silent"), 0);
    json_decref(j);
    f->now += 5;
    j = rollout(f, ro);
    assert_int_equal(cnt(j, "counts", "silent"), 1);
    assert_int_equal(cnt(j, "counts", "downloading"), 1);
    assert_int_equal(cnt(j, "step_counts", "silent"), 1);
    assert_string_equal(jstr(j, "state"), "running"); /* 100 %: no pause */
    json_decref(j);

    /* Silence alone pauses a rollout with a threshold. */
    register_device(f, "{\"id\": \"e-1\", \"hw_rev\": \"sim-1\"}", tok);
    create_rollout(f, put_pkg(f, "production", "1.2.0", 1),
                   "\"policy\": {\"schedule\": [{\"percent\": 100}], "
                   "\"windows\": \"always\", \"min_attempted\": 1, "
                   "\"silent_timeout\": \"2s\"}, \"target\": {\"devices\": "
                   "[\"e-1\"]}", ro);
    assert_int_equal(checkin(f, "e-1", tok, "1.0.0", &j), 200);
    assert_string_equal(jstr(j, "rollout"), ro);
    json_decref(j);
    j = rollout(f, ro);
    assert_string_equal(jstr(j, "state"), "running");
    json_decref(j);
    f->now += 3;
    j = rollout(f, ro);
    assert_string_equal(jstr(j, "state"), "paused");
    assert_int_equal(cnt(j, "step_counts", "silent"), 1);
    json_decref(j);
    /* Resumed, the silent device no longer counts against the step. */
    assert_int_equal(act(f, ro, "resume", NULL, &j), 200);
    json_decref(j);
    f->now += 1;
    j = rollout(f, ro);
    assert_string_equal(jstr(j, "state"), "running");
    assert_int_equal(cnt(j, "step_counts", "silent"), 0);
    assert_int_equal(cnt(j, "counts", "silent"), 1);
    json_decref(j);
}

/* Windows: a rollout created outside its window starts at the opening. */
static void test_window(void **state)
{
    struct fx *f = *state;
    char ro[SRV_ID_MAX + 1];
    json_t *j;
    /* T0 is Thursday 00:00 UTC; the window opens Friday 00:00. */
    create_rollout(f, put_pkg(f, "production", "1.1.0", 1),
                   "\"policy\": {\"windows\": [{\"days\": \"fri\"}]}", ro);
    j = rollout(f, ro);
    assert_false(json_is_true(json_object_get(j, "in_window")));
    assert_int_equal(jint(j, "step_started_at"), T0 + 86400);
    json_decref(j);
}

/* ----------------------------------------------------- bad input */

static void test_bad_input(void **state)
{
    struct fx *f = *state;
    char pkg[SRV_ID_MAX + 1], ro[SRV_ID_MAX + 1], *before, *after;
    json_t *j;
    char tags33[1024] = "{\"id\": \"d-9\", \"tags\": [";
    char deep[4096] = "";
    snprintf(pkg, sizeof pkg, "%s", put_pkg(f, "production", "1.1.0", 1));
    register_device(f, "{\"id\": \"d-1\", \"hw_rev\": \"sim-1\"}", NULL);
    create_rollout(f, pkg, NULL, ro);
    for (int i = 0; i < 33; i++)
        sprintf(tags33 + strlen(tags33), "%s\"t%d\"", i ? ", " : "", i);
    strcat(tags33, "]}");
    for (int i = 0; i < 1000; i++)
        strcat(deep, "[");
    char pol[512];
    snprintf(pol, sizeof pol, "{\"package\": \"%s\", \"policy\": "
             "{\"schedule\": [{\"percent\": 200}]}}", pkg);
    char pol2[512];
    snprintf(pol2, sizeof pol2, "{\"package\": \"%s\", \"policy\": "
             "{\"failure_threshold\": \"5%%; DELETE FROM devices\"}}", pkg);
    char tgt[512];
    snprintf(tgt, sizeof tgt, "{\"package\": \"%s\", \"target\": {\"tags\": "
             "[\"x'; DROP TABLE rollouts;--\"]}}", pkg);
    char tgt2[512];
    snprintf(tgt2, sizeof tgt2, "{\"package\": \"%s\", \"target\": \"all\"}",
             pkg);
    char unk[512];
    snprintf(unk, sizeof unk, "{\"package\": \"%s\", \"policy\": {\"speed\":"
             " 1}}", pkg);
    char unk2[512];
    snprintf(unk2, sizeof unk2, "{\"package\": \"%s\", \"state\": "
             "\"paused\"}", pkg);

    const struct {
        const char *method, *path, *query, *body;
        int status;
    } bad[] = {
        /* malformed or not an object */
        {"POST", "/api/v1/devices", NULL, NULL, 400},
        {"POST", "/api/v1/devices", NULL, "", 400},
        {"POST", "/api/v1/devices", NULL, "not json", 400},
        {"POST", "/api/v1/devices", NULL, "{\"id\": \"d-9\"", 400},
        {"POST", "/api/v1/devices", NULL, "[]", 400},
        {"POST", "/api/v1/devices", NULL, "\"d-9\"", 400},
        {"POST", "/api/v1/devices", NULL, deep, 400},
        {"POST", "/api/v1/devices", NULL, "{\"id\": \"d-9\", \"id\": \"d-8\"}",
         400},
        /* unknown keys, wrong types, bad values */
        {"POST", "/api/v1/devices", NULL, "{}", 400},
        {"POST", "/api/v1/devices", NULL, "{\"id\": \"d-9\", \"x\": 1}", 400},
        {"POST", "/api/v1/devices", NULL, "{\"id\": \"d-9\", \"token\": "
         "\"mine\"}", 400},
        {"POST", "/api/v1/devices", NULL, "{\"id\": 5}", 400},
        {"POST", "/api/v1/devices", NULL, "{\"id\": null}", 400},
        {"POST", "/api/v1/devices", NULL, "{\"id\": \"\"}", 400},
        {"POST", "/api/v1/devices", NULL, "{\"id\": \"..\"}", 400},
        {"POST", "/api/v1/devices", NULL, "{\"id\": \"d\\u0000x\"}", 400},
        {"POST", "/api/v1/devices", NULL, "{\"id\": \"d-1'; DROP TABLE "
         "devices;--\"}", 400},
        {"POST", "/api/v1/devices", NULL, "{\"id\": \"d-9\", \"hw_rev\": "
         "\"x' OR '1'='1\"}", 400},
        {"POST", "/api/v1/devices", NULL, "{\"id\": \"d-9\", \"hw_rev\": 1}",
         400},
        {"POST", "/api/v1/devices", NULL, "{\"id\": \"d-9\", \"tags\": "
         "\"eu\"}", 400},
        {"POST", "/api/v1/devices", NULL, "{\"id\": \"d-9\", \"tags\": "
         "[\"ok\", \"bad tag\"]}", 400},
        {"POST", "/api/v1/devices", NULL, "{\"id\": \"d-9\", \"tags\": "
         "[\"ok\", 1]}", 400},
        {"POST", "/api/v1/devices", NULL, "{\"id\": \"d-9\", \"tags\": null}",
         400},
        {"POST", "/api/v1/devices", NULL, tags33, 400},
        {"POST", "/api/v1/devices", NULL, "{\"id\": \"d-9\", \"group\": 5}",
         400},
        {"POST", "/api/v1/devices", NULL, "{\"id\": \"d-9\", \"group\": "
         "\"g; DELETE FROM devices\"}", 400},
        {"POST", "/api/v1/devices", "x=1", "{\"id\": \"d-9\"}", 400},
        {"PUT", "/api/v1/devices/d-1/tags", NULL, "{}", 400},
        {"PUT", "/api/v1/devices/d-1/tags", NULL, "{\"tags\": null}", 400},
        {"PUT", "/api/v1/devices/d-1/tags", NULL, "{\"tags\": [\"a\"], "
         "\"x\": 1}", 400},
        {"PUT", "/api/v1/devices/d-1/tags", NULL, "{\"tags\": [\"a'--\"]}",
         400},
        {"PUT", "/api/v1/devices/d-1/group", NULL, "{}", 400},
        {"PUT", "/api/v1/devices/d-1/group", NULL, "{\"group\": [\"x\"]}",
         400},
        {"PUT", "/api/v1/devices/d-1/group", NULL, "{\"group\": \"a b\"}",
         400},
        {"PUT", "/api/v1/devices/d'1/group", NULL, "{\"group\": \"a\"}", 400},
        {"PUT", "/api/v1/devices/d-1", NULL, "{}", 405},
        {"DELETE", "/api/v1/devices", NULL, NULL, 405},
        {"DELETE", "/api/v1/devices/d-1", NULL, NULL, 405},
        {"GET", "/api/v1/devices/d-1/tags", NULL, NULL, 405},
        {"GET", "/api/v1/devices/d-1/other", NULL, NULL, 404},
        {"GET", "/api/v1/devices/", NULL, NULL, 404},
        {"GET", "/api/v1/devices//x", NULL, NULL, 404},
        {"GET", "/api/v1/devicesx", NULL, NULL, 404},
        {"GET", "/api/v1/devices", "tag=bad%20tag", NULL, 400},
        {"GET", "/api/v1/devices", "tag=a b", NULL, 400},
        {"GET", "/api/v1/devices", "tag=", NULL, 400},
        {"GET", "/api/v1/devices", "tag=a&tag=b", NULL, 400},
        {"GET", "/api/v1/devices", "version=1.0", NULL, 400},
        {"GET", "/api/v1/devices", "hw_rev=x'--", NULL, 400},
        {"GET", "/api/v1/devices", "limit=0", NULL, 400},
        {"GET", "/api/v1/devices", "limit=1001", NULL, 400},
        {"GET", "/api/v1/devices", "limit=-1", NULL, 400},
        {"GET", "/api/v1/devices", "limit=10x", NULL, 400},
        {"GET", "/api/v1/devices", "limit=99999999999999999999", NULL, 400},
        {"GET", "/api/v1/devices", "after=a/b", NULL, 400},
        {"GET", "/api/v1/devices", "sort=id", NULL, 400},
        {"GET", "/api/v1/devices/d-1", "x=1", NULL, 400},
        /* packages */
        {"GET", "/api/v1/packages", "after=x'y", NULL, 400},
        {"GET", "/api/v1/packages/pkg-1/x", NULL, NULL, 404},
        {"DELETE", "/api/v1/packages", NULL, NULL, 405},
        {"POST", "/api/v1/packages/pkg-1", NULL, NULL, 405},
        /* rollouts */
        {"POST", "/api/v1/rollouts", NULL, "{}", 400},
        {"POST", "/api/v1/rollouts", NULL, "{\"package\": 1}", 400},
        {"POST", "/api/v1/rollouts", NULL, "{\"package\": \"pkg-nope\"}",
         404},
        {"POST", "/api/v1/rollouts", NULL, "{\"package\": \"p'--\"}", 400},
        {"POST", "/api/v1/rollouts", NULL, pol, 400},
        {"POST", "/api/v1/rollouts", NULL, pol2, 400},
        {"POST", "/api/v1/rollouts", NULL, tgt, 400},
        {"POST", "/api/v1/rollouts", NULL, tgt2, 400},
        {"POST", "/api/v1/rollouts", NULL, unk, 400},
        {"POST", "/api/v1/rollouts", NULL, unk2, 400},
        {"POST", "/api/v1/rollouts/r-1/pause", NULL, "{\"reason\": 5}", 400},
        {"POST", "/api/v1/rollouts/r-1/pause", NULL, "{\"reason\": \"\"}",
         400},
        {"POST", "/api/v1/rollouts/r-1/pause", NULL, "{\"reason\": \"a\\nb\"}",
         400},
        {"POST", "/api/v1/rollouts/r-1/pause", NULL, "{\"reason\": \"a\", "
         "\"x\": 1}", 400},
        {"POST", "/api/v1/rollouts/r-1/pause", NULL, "[]", 400},
        {"POST", "/api/v1/rollouts/r-1/resume", NULL, "{\"reason\": \"a\"}",
         400},
        {"POST", "/api/v1/rollouts/r-1/abort", NULL, "{\"why\": \"a\"}", 400},
        {"POST", "/api/v1/rollouts/r-1/stop", NULL, NULL, 404},
        {"GET", "/api/v1/rollouts/r-1/pause", NULL, NULL, 405},
        {"POST", "/api/v1/rollouts/r-2/pause", NULL, NULL, 404},
        {"POST", "/api/v1/rollouts/r'1/pause", NULL, NULL, 400},
        {"GET", "/api/v1/rollouts/r-9", NULL, NULL, 404},
        {"GET", "/api/v1/rollouts", "after=x", NULL, 400},
        {"GET", "/api/v1/rollouts", "after=r-", NULL, 400},
        {"GET", "/api/v1/rollouts", "after=r-99999999999999999999", NULL,
         400},
        {"GET", "/api/v1/rollouts", "state=weird", NULL, 400},
        {"PUT", "/api/v1/rollouts/r-1", NULL, "{}", 405},
        {"GET", "/api/v1/other", NULL, NULL, 404},
    };
    before = fingerprint(f);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = api(f, bad[i].method, bad[i].path, bad[i].query, bad[i].body,
                     &j);
        if (st != bad[i].status)
            fail_msg("#%zu %s %s?%s %.60s: %d, want %d (%s)", i,
                     bad[i].method, bad[i].path,
                     bad[i].query ? bad[i].query : "",
                     bad[i].body ? bad[i].body : "", st, bad[i].status,
                     jstr(j, "message"));
        assert_non_null(j);
        assert_true(strlen(jstr(j, "error")) > 0);
        assert_null(strchr(jstr(j, "message"), '\n'));
        json_decref(j);
    }
    /* A body over 64 KiB never reaches the handler: 413. */
    struct call c = {ADMIN, "POST", "/api/v1/devices", NULL, "{}", NULL, 0,
                     0, 1};
    assert_int_equal(dispatch(f, &c, &j), 413);
    is_error(j, "too_large");
    json_decref(j);
    after = fingerprint(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* ------------------------------------------------ scale and restart */

static void test_large_target_no_rows(void **state)
{
    struct fx *f = *state;
    struct nb_db_conn *c = nb_db_acquire(f->s.db);
    char ro[SRV_ID_MAX + 1];
    json_t *j;
    /* 100,000 devices, straight into the table (the API would take
     * minutes), then a rollout to all of them. */
    assert_int_equal(nb_db_exec_script(
                         c, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                            "SELECT i + 1 FROM n WHERE i < 100000) "
                            "INSERT INTO devices (id, hw_rev, created_at) "
                            "SELECT 'bulk-' || i, 'sim-1', 1 FROM n"),
                     NB_OK);
    nb_db_release(f->s.db, c);
    assert_int_equal(count(f, "SELECT COUNT(*) FROM devices"), 100000);
    create_rollout(f, put_pkg(f, "production", "1.1.0", 1),
                   "\"target\": {\"hw_revs\": [\"sim-1\"]}, \"policy\": "
                   "{\"schedule\": [{\"percent\": 100}], \"windows\": "
                   "\"always\"}", ro);
    j = rollout(f, ro);
    assert_int_equal(jint(j, "devices"), 0);
    json_decref(j);
    assert_int_equal(count(f, "SELECT COUNT(*) FROM device_rollouts"), 0);
    assert_int_equal(api(f, "GET", "/api/v1/devices", "limit=1000", NULL, &j),
                     200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 1000);
    json_decref(j);
}

static void test_restart_keeps_everything(void **state)
{
    struct fx *f = *state;
    char ro[SRV_ID_MAX + 1], pkg[SRV_ID_MAX + 1], msg[256], path[128];
    json_t *j;
    snprintf(pkg, sizeof pkg, "%s", put_pkg(f, "production", "1.1.0", 1));
    create_rollout(f, pkg, NULL, ro);
    register_device(f, "{\"id\": \"d-1\"}", NULL);
    char *before = fingerprint(f), *after;
    srv_fini(&f->s);
    assert_int_equal(srv_init(&f->s, &f->cfg, msg, sizeof msg), NB_OK);
    f->s.log.fd = -1;
    f->s.now = fx_clock;
    f->s.now_ctx = f;
    after = fingerprint(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
    snprintf(path, sizeof path, "/api/v1/packages/%s", pkg);
    assert_int_equal(api(f, "GET", path, NULL, NULL, &j), 200);
    json_decref(j);
    j = rollout(f, ro);
    json_decref(j);
}

/* ---------------------------------------------------------------- main */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_upload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_package_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoked_and_trust_config, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_extra_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollout_lifecycle, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_steps_and_silence, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_target_no_rows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_restart_keeps_everything, setup,
                                        teardown),
    };
    int failed;
    g_pg = 0;
    failed = _cmocka_run_group_tests("test_srv_mgmt_sqlite", tests,
                                     sizeof tests / sizeof tests[0], NULL,
                                     NULL);
    g_pg_url = getenv("NB_TEST_DB");
    if (g_pg_url && (!strncmp(g_pg_url, "postgresql://", 13) ||
                     !strncmp(g_pg_url, "postgres://", 11))) {
        g_pg = 1;
        failed += _cmocka_run_group_tests("test_srv_mgmt_postgresql", tests,
                                          sizeof tests / sizeof tests[0],
                                          NULL, NULL);
    } else {
        printf("test_srv_mgmt: NB_TEST_DB holds no postgresql:// URL: "
               "PostgreSQL not tested here\n");
    }
    return failed ? 1 : 0;
}
