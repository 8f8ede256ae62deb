/* fuzz_server.c - libFuzzer target for nobrick-server's request handling:
 * srv_dispatch() (routing, authentication, the device API, artifacts with
 * Range, the management API and hawkBit DDI when they are built in,
 * metrics) against a SQLite database in memory, with no socket and no
 * libmicrohttpd.
 *
 * Input: an HTTP-like request.
 *   line 1          METHOD SP PATH [?QUERY]
 *   lines           Name: value           (up to an empty line)
 *   the rest        the body (uploads: written to a temporary file in the
 *                   artifact directory, as the HTTP front end does)
 * The fixture holds a device "d-1" with token "tok-1", a package with a
 * rollout to every device, an artifact "a.bin", and the admin token
 * "admin" and fleet token "fleet", so the fuzzer gets past
 * authentication by finding those strings (seed them with -dict or a
 * corpus: scripts/fuzz.sh writes a few seeds).
 *
 * Invariants checked (a trap otherwise): every answer has a status from
 * 100 to 599; a JSON error answer parses and has "error" and "message";
 * a file answer's range lies inside the file.
 *
 * Build: scripts/fuzz.sh (clang, -fsanitize=fuzzer,address,undefined;
 * every .c of cmd/nobrick-server but main.c, the core, the mbedTLS port;
 * -lmbedcrypto -ljansson -lsqlite3 -lpq -lmicrohttpd -lpthread).
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "server.h"
#include "store.h"

#define CHECK(cond)              \
    do {                         \
        if (!(cond))             \
            __builtin_trap();    \
    } while (0)

static struct srv_config g_cfg;
static struct srv g_srv;
static char g_dir[256];
static int64_t g_clock = 1767225600;

static int64_t fuzz_now(void *ctx)
{
    (void)ctx;
    return g_clock;
}

static void hash_bytes(const char *tok, uint8_t out[32])
{
    char hex[65];
    srv_token_sha256_hex(tok, hex);
    for (int i = 0; i < 32; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static void fixture(void)
{
    struct nb_db_conn *c;
    struct srv_device d;
    struct srv_package p;
    struct srv_rollout *r = calloc(1, sizeof *r);
    char path[300], msg[200];
    FILE *f;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/nb-fuzz-server-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!r || !mkdtemp(g_dir))
        abort();
    srv_config_defaults(&g_cfg);
    snprintf(g_cfg.artifacts, sizeof g_cfg.artifacts, "%s", g_dir);
    g_cfg.max_package_size = 1 << 20;
    g_srv.cfg = &g_cfg;
    g_srv.log.fd = -1;
    g_srv.now = fuzz_now;
    hash_bytes("admin", g_srv.admin_sha[g_srv.n_admin++]);
    hash_bytes("fleet", g_srv.fleet_sha[g_srv.n_fleet++]);
    g_srv.artifacts_fd = open(g_dir, O_RDONLY | O_DIRECTORY);
    /* One connection to one in-memory database: nothing touches disk. */
    if (g_srv.artifacts_fd < 0 ||
        nb_db_open("sqlite::memory:", 1, &g_srv.db, msg, sizeof msg) != NB_OK)
        abort();
    srv_set_public_url(&g_srv, "http://127.0.0.1:8080");
    snprintf(path, sizeof path, "%s/a.bin", g_dir);
    f = fopen(path, "wb");
    if (!f)
        abort();
    for (int i = 0; i < 3000; i++)
        fputc(i & 0xff, f);
    fclose(f);

    c = nb_db_acquire(g_srv.db);
    if (srv_schema_migrate(c, nb_db_backend(g_srv.db)) != NB_OK)
        abort();
    memset(&d, 0, sizeof d);
    snprintf(d.id, sizeof d.id, "d-1");
    snprintf(d.hw_rev, sizeof d.hw_rev, "sim-1");
    srv_token_sha256_hex("tok-1", d.token_sha256);
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "pkg-1");
    snprintf(p.version, sizeof p.version, "1.1.0");
    p.security_version = 2;
    snprintf(p.channel, sizeof p.channel, "production");
    snprintf(p.hw_revs[0], sizeof p.hw_revs[0], "sim-1");
    p.n_hw_revs = 1;
    p.size = 3000;
    p.payload_offset = 1000;
    p.payload_size = 2000;
    srv_token_sha256_hex("pkg-1", p.sha256);
    snprintf(p.file, sizeof p.file, "a.bin");
    snprintf(r->package_id, sizeof r->package_id, "pkg-1");
    snprintf(r->target, sizeof r->target, "{}");
    snprintf(r->policy, sizeof r->policy,
             "{\"schedule\":[{\"percent\":50,\"hold\":\"60s\"},"
             "{\"percent\":100}],\"windows\":\"always\","
             "\"min_attempted\":2}");
    r->created_at = g_clock;
    if (srv_store_device_create(c, &d) || srv_store_package_insert(c, &p) ||
        srv_store_rollout_insert(c, r))
        abort();
    nb_db_release(g_srv.db, c);
    free(r);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fixture();
    return 0;
}

/* The next line of [*p, end) (without CR LF), NUL-terminated in place. */
static char *line(char **p, char *end)
{
    char *s = *p, *nl;
    if (s >= end)
        return NULL;
    nl = memchr(s, '\n', (size_t)(end - s));
    if (!nl)
        nl = end;
    *nl = '\0';
    if (nl > s && nl[-1] == '\r')
        nl[-1] = '\0';
    *p = nl < end ? nl + 1 : end;
    return s;
}

static void check_answer(const struct srv_resp *resp)
{
    CHECK(resp->status >= 100 && resp->status <= 599);
    if (resp->kind == SRV_BODY_BUF && resp->status >= 400 && resp->body &&
        resp->content_type && !strcmp(resp->content_type, "application/json")) {
        json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
        CHECK(j != NULL);
        CHECK(json_is_string(json_object_get(j, "error")));
        CHECK(json_is_string(json_object_get(j, "message")));
        json_decref(j);
    }
    if (resp->kind == SRV_BODY_FILE)
        CHECK(resp->offset + resp->length <= resp->file_size);
    if (resp->kind == SRV_BODY_MULTI) {
        char buf[4096];
        uint64_t pos = 0, len = srv_multipart_length(resp);
        for (unsigned i = 0; i < resp->n_ranges; i++)
            CHECK(resp->ranges[i].first <= resp->ranges[i].last &&
                  resp->ranges[i].last < resp->file_size);
        while (pos < len) {
            long n = srv_multipart_read(resp, pos, buf, sizeof buf);
            CHECK(n > 0);
            pos += (uint64_t)n;
        }
        CHECK(srv_multipart_read(resp, pos, buf, sizeof buf) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct srv_kv hdr[SRV_MAX_HDRS], q[SRV_MAX_HDRS];
    struct srv_req r;
    struct srv_resp resp;
    char *buf, *p, *end, *first, *sp, *qs, upload[320] = "";
    unsigned nh = 0, nq = 0;
    if (size > 70000)
        return 0;
    buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    p = buf;
    end = buf + size;
    first = line(&p, end);
    if (!first || !(sp = strchr(first, ' '))) {
        free(buf);
        return 0;
    }
    *sp = '\0';
    memset(&r, 0, sizeof r);
    r.method = first;
    r.path = sp + 1;
    qs = strchr(sp + 1, '?');
    if (qs) {
        /* key=value&key=value, not decoded (MHD would decode) */
        *qs++ = '\0';
        while (qs && *qs && nq < SRV_MAX_HDRS) {
            char *amp = strchr(qs, '&'), *eq;
            if (amp)
                *amp++ = '\0';
            eq = strchr(qs, '=');
            if (eq)
                *eq++ = '\0';
            q[nq++] = (struct srv_kv){qs, eq ? eq : ""};
            qs = amp;
        }
    }
    for (char *l; (l = line(&p, end)) != NULL && *l && nh < SRV_MAX_HDRS;) {
        char *colon = strchr(l, ':');
        if (!colon)
            continue;
        *colon++ = '\0';
        while (*colon == ' ')
            colon++;
        hdr[nh++] = (struct srv_kv){l, colon};
    }
    r.headers = hdr;
    r.n_headers = nh;
    r.query = q;
    r.n_query = nq;
    r.remote = "fuzz";
    if (srv_is_upload(r.method, r.path)) {
        int fd;
        snprintf(upload, sizeof upload, "%s/.upload-XXXXXX", g_dir);
        fd = mkstemp(upload);
        if (fd < 0) {
            free(buf);
            return 0;
        }
        if (write(fd, p, (size_t)(end - p)) != (ssize_t)(end - p)) {
            close(fd);
            unlink(upload);
            free(buf);
            return 0;
        }
        close(fd);
        r.upload_path = upload;
        r.upload_size = (uint64_t)(end - p);
    } else {
        r.body = p;
        r.body_len = (size_t)(end - p);
        r.body_too_large = r.body_len > SRV_JSON_MAX;
    }
    srv_resp_init(&resp);
    srv_dispatch(&g_srv, &r, &resp);
    check_answer(&resp);
    srv_resp_free(&resp);
    if (upload[0])
        unlink(upload);
    g_clock += 7; /* time moves: steps advance, devices fall silent */
    free(buf);
    return 0;
}
