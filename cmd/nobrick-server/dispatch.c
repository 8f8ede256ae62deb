/* dispatch.c - the server context (srv_init), the request and response
 * helpers, and srv_dispatch: the one router every request goes through,
 * whether it came from libmicrohttpd (http.c), a unit test or the fuzzer.
 * Nothing here touches MHD. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "server.h"
#include "store.h"

#define API "/api/v1"

const char *const srv_report_states[7] = {
    "downloading", "verified", "installing", "trial",
    "confirmed", "failed", "reverted"};

int srv_report_state(const char *state)
{
    for (int i = 0; state && i < 7; i++)
        if (strcmp(state, srv_report_states[i]) == 0)
            return i;
    return -1;
}

/* ------------------------------------------------------------- requests */

const char *srv_req_header(const struct srv_req *r, const char *name)
{
    for (unsigned i = 0; i < r->n_headers; i++)
        if (r->headers[i].key && strcasecmp(r->headers[i].key, name) == 0)
            return r->headers[i].value ? r->headers[i].value : "";
    return NULL;
}

const char *srv_req_query(const struct srv_req *r, const char *key)
{
    for (unsigned i = 0; i < r->n_query; i++)
        if (r->query[i].key && strcmp(r->query[i].key, key) == 0)
            return r->query[i].value ? r->query[i].value : "";
    return NULL;
}

/* "/api/v1/X" exactly, or followed by '/'. */
static int under(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

int srv_is_upload(const char *method, const char *path)
{
    const char *p;
    if (!method || !path)
        return 0;
    if (strcmp(method, "POST") == 0 && strcmp(path, API "/packages") == 0)
        return 1;
    /* PUT /api/v1/packages/{id}/files/{name} */
    if (strcmp(method, "PUT") != 0 || strncmp(path, API "/packages/", 17) != 0)
        return 0;
    p = strchr(path + 17, '/');
    return p && strncmp(p, "/files/", 7) == 0 && p[7] && !strchr(p + 7, '/');
}

/* ------------------------------------------------------------ responses */

void srv_resp_init(struct srv_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    resp->fd = -1;
}

void srv_resp_free(struct srv_resp *resp)
{
    free(resp->body);
    resp->body = NULL;
    if (resp->fd >= 0)
        close(resp->fd);
    resp->fd = -1;
}

void srv_resp_header(struct srv_resp *resp, const char *name,
                     const char *value)
{
    if (resp->n_hdrs >= sizeof resp->hdrs / sizeof resp->hdrs[0])
        return;
    snprintf(resp->hdrs[resp->n_hdrs].name, sizeof resp->hdrs[0].name, "%s",
             name);
    snprintf(resp->hdrs[resp->n_hdrs].value, sizeof resp->hdrs[0].value, "%s",
             value);
    resp->n_hdrs++;
}

/* Replace whatever body the response had. */
static void set_body(struct srv_resp *resp, int status, const char *type,
                     char *body, size_t len)
{
    free(resp->body);
    if (resp->fd >= 0)
        close(resp->fd);
    resp->fd = -1;
    resp->kind = SRV_BODY_BUF;
    resp->body = body;
    resp->body_len = len;
    resp->content_type = type;
    resp->status = status;
    resp->download = 0;
}

static const char oom_json[] =
    "{\"error\":\"internal\",\"message\":\"out of memory\"}";

void srv_resp_json(struct srv_resp *resp, int status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        text = strdup(oom_json);
        status = 500;
        if (!text) {
            set_body(resp, 500, NULL, NULL, 0);
            resp->kind = SRV_BODY_NONE;
            return;
        }
    }
    set_body(resp, status, "application/json", text, strlen(text));
}

static const char *code_for(int status)
{
    switch (status) {
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 409: return "conflict";
    case 413: return "too_large";
    default: return status >= 500 ? "internal" : "bad_request";
    }
}

static void verror(struct srv_resp *resp, int status, const char *code,
                   const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    srv_resp_json(resp, status, json_pack("{s:s, s:s}", "error", code,
                                          "message", msg));
    if (status == 401)
        srv_resp_header(resp, "WWW-Authenticate", "Bearer");
}

void srv_resp_error(struct srv_resp *resp, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(resp, status, code_for(status), fmt, ap);
    va_end(ap);
}

void srv_resp_error_code(struct srv_resp *resp, int status, const char *code,
                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(resp, status, code, fmt, ap);
    va_end(ap);
}

void srv_resp_text(struct srv_resp *resp, int status, const char *type,
                   const char *text, size_t len)
{
    char *b = malloc(len + 1);
    if (!b) {
        srv_resp_json(resp, 500, NULL);
        return;
    }
    memcpy(b, text, len);
    b[len] = '\0';
    set_body(resp, status, type, b, len);
}

/* ------------------------------------------------------------- helpers */

int srv_valid_id(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > SRV_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

int srv_valid_artifact_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > SRV_NAME_MAX || s[0] == '.' || strstr(s, ".."))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '/' || c == '\\' || c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

int srv_version_parse(const char *s, uint64_t out[3])
{
    for (int part = 0; part < 3; part++) {
        uint64_t v = 0;
        int digits = 0;
        while (*s >= '0' && *s <= '9') {
            v = v * 10 + (uint64_t)(*s++ - '0');
            if (++digits > 10 || v > 0xFFFFFFFFu)
                return 0;
        }
        if (!digits || *s != (part < 2 ? '.' : '\0'))
            return 0;
        out[part] = v;
        if (part < 2)
            s++;
    }
    return 1;
}

int srv_version_cmp(const char *a, const char *b)
{
    uint64_t x[3] = {0, 0, 0}, y[3] = {0, 0, 0};
    srv_version_parse(a, x);
    srv_version_parse(b, y);
    for (int i = 0; i < 3; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

int64_t srv_now(const struct srv *s)
{
    if (s->now)
        return s->now(s->now_ctx);
    return (int64_t)time(NULL);
}

/* ------------------------------------------------------ server context */

static int hex_to_bytes(const char *hex, uint8_t out[32])
{
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    return 0;
}

/* Tokens from a file, one a line ('#' comments, blanks trimmed). */
static nb_err load_tokens(const char *path, uint8_t (*set)[32], unsigned *n,
                          char *msg, size_t msglen)
{
    char line[SRV_TOKEN_MAX + 8], hex[65];
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(msg, msglen, "%s: %s", path, strerror(errno));
        return NB_ERR_NOENT;
    }
    while (fgets(line, sizeof line, f)) {
        char *s = line;
        size_t len;
        while (*s == ' ' || *s == '\t')
            s++;
        len = strlen(s);
        while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' ||
                       s[len - 1] == ' ' || s[len - 1] == '\t'))
            s[--len] = '\0';
        if (!len || *s == '#')
            continue;
        if (*n >= SRV_MAX_TOKENS) {
            snprintf(msg, msglen, "%s: more than %d tokens", path,
                     SRV_MAX_TOKENS);
            fclose(f);
            return NB_ERR_INVAL;
        }
        srv_token_sha256_hex(s, hex);
        hex_to_bytes(hex, set[(*n)++]);
        memset(line, 0, sizeof line);
    }
    fclose(f);
    return NB_OK;
}

static void strip_slash(char *s)
{
    size_t n = strlen(s);
    while (n && s[n - 1] == '/')
        s[--n] = '\0';
}

void srv_set_public_url(struct srv *s, const char *fallback)
{
    const struct srv_config *c = s->cfg;
    snprintf(s->public_url, sizeof s->public_url, "%s",
             c->public_url[0] ? c->public_url : fallback ? fallback : "");
    strip_slash(s->public_url);
    if (c->artifact_base_url[0])
        snprintf(s->artifact_base, sizeof s->artifact_base, "%s",
                 c->artifact_base_url);
    else
        snprintf(s->artifact_base, sizeof s->artifact_base,
                 "%.900s" API "/artifacts", s->public_url);
    strip_slash(s->artifact_base);
}

nb_err srv_init(struct srv *s, const struct srv_config *cfg, char *msg,
                size_t msglen)
{
    struct nb_db_conn *c;
    nb_err err;
    int lv = srv_log_level_parse(cfg->log_level);
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->artifacts_fd = -1;
    s->log.fd = 2;
    s->log.level = lv < 0 ? SRV_LOG_INFO : (enum srv_log_level)lv;
    s->log.requests = !cfg->quiet;
    for (unsigned i = 0; i < cfg->n_admin_token_sha256; i++)
        hex_to_bytes(cfg->admin_token_sha256[i], s->admin_sha[s->n_admin++]);
    for (unsigned i = 0; i < cfg->n_fleet_token_sha256; i++)
        hex_to_bytes(cfg->fleet_token_sha256[i], s->fleet_sha[s->n_fleet++]);
    if (cfg->admin_token_file[0] &&
        (err = load_tokens(cfg->admin_token_file, s->admin_sha, &s->n_admin,
                           msg, msglen)) != NB_OK)
        return err;
    if (cfg->fleet_token_file[0] &&
        (err = load_tokens(cfg->fleet_token_file, s->fleet_sha, &s->n_fleet,
                           msg, msglen)) != NB_OK)
        return err;
    s->artifacts_fd = open(cfg->artifacts, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->artifacts_fd < 0) {
        snprintf(msg, msglen, "artifacts %s: %s (create the directory)",
                 cfg->artifacts, strerror(errno));
        return NB_ERR_NOENT;
    }
    s->mqtt_enabled = cfg->mqtt[0] != '\0';
    err = nb_db_open(cfg->db, (unsigned)cfg->threads + 1, &s->db, msg, msglen);
    if (err) {
        srv_fini(s);
        return err;
    }
    c = nb_db_acquire(s->db);
    err = nb_db_migration_lock(c);
    if (!err) {
        err = srv_schema_migrate(c, nb_db_backend(s->db));
        if (err == NB_ERR_STATE)
            snprintf(msg, msglen, "database %s: its schema is newer than this "
                     "server knows (version %d): upgrade the server",
                     cfg->db, SRV_SCHEMA_VERSION);
        else if (err)
            snprintf(msg, msglen, "database %s: schema migration failed: %s",
                     nb_db_backend(s->db), nb_db_errmsg(c));
        nb_db_migration_unlock(c);
    } else {
        snprintf(msg, msglen, "database: cannot take the migration lock: %s",
                 nb_db_errmsg(c));
    }
    nb_db_release(s->db, c);
    if (err) {
        srv_fini(s);
        return err;
    }
    srv_set_public_url(s, "");
    return NB_OK;
}

void srv_fini(struct srv *s)
{
    if (s->db)
        nb_db_close(s->db);
    s->db = NULL;
    if (s->artifacts_fd >= 0)
        close(s->artifacts_fd);
    s->artifacts_fd = -1;
}

/* ------------------------------------------------------------ dispatch */

static void healthz(struct srv *s, struct srv_resp *resp)
{
    struct nb_db_conn *c = nb_db_acquire(s->db);
    nb_err err = nb_db_exec(c, "SELECT 1", NULL, 0, NULL, NULL, NULL);
    nb_db_release(s->db, c);
    if (err)
        srv_resp_error(resp, 503, "database does not answer");
    else
        srv_resp_json(resp, 200, json_pack("{s:b}", "ok", 1));
}

/* "/{tenant}/controller/v1" [ "/..." ]: hand it to the DDI handler. */
static int ddi_route(struct srv *s, const struct srv_req *req,
                     struct srv_resp *resp)
{
    char tenant[SRV_ID_MAX + 1];
    const char *p = req->path + 1, *slash = strchr(p, '/');
    size_t n;
    if (!slash || strncmp(slash, "/controller/v1", 14) != 0 ||
        (slash[14] != '\0' && slash[14] != '/'))
        return 0;
    n = (size_t)(slash - p);
    if (n == 0 || n > SRV_ID_MAX)
        return 0;
    memcpy(tenant, p, n);
    tenant[n] = '\0';
    if (!srv_valid_id(tenant))
        return 0;
    srv_ddi_handle(s, req, tenant, slash + 14, resp);
    return 1;
}

/* /api/v1/devices/{id}/{checkin|reports|health}: 1 and the parts (an ID
 * too long to be one comes out as "", which the handler refuses). */
static int device_route(const char *rest, char id[SRV_ID_MAX + 1],
                        const char **what)
{
    const char *slash = strchr(rest, '/');
    size_t n;
    if (!slash || strchr(slash + 1, '/'))
        return 0;
    if (strcmp(slash + 1, "checkin") && strcmp(slash + 1, "reports") &&
        strcmp(slash + 1, "health"))
        return 0;
    n = (size_t)(slash - rest);
    if (n > SRV_ID_MAX)
        n = 0;
    memcpy(id, rest, n);
    id[n] = '\0';
    *what = slash + 1;
    return 1;
}

static void route(struct srv *s, const struct srv_req *req,
                  struct srv_resp *resp)
{
    const char *path = req->path, *what;
    char id[SRV_ID_MAX + 1];

    if (!req->method || !path || path[0] != '/') {
        srv_resp_error(resp, 400, "bad request line");
        return;
    }
    if (req->body_too_large) {
        srv_resp_error(resp, 413, "body over %d bytes", SRV_JSON_MAX);
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        srv_metrics_handle(s, req, resp);
        return;
    }
    if (strcmp(path, "/healthz") == 0) {
        healthz(s, resp);
        return;
    }
    if (strncmp(path, API "/artifacts/", 18) == 0) {
        srv_artifact_handle(s, req, path + 18, resp);
        return;
    }
    if (strncmp(path, API "/devices/", 16) == 0 &&
        device_route(path + 16, id, &what)) {
        srv_device_handle(s, req, id, what, resp);
        return;
    }
    if (under(path, API "/devices") || under(path, API "/packages") ||
        under(path, API "/rollouts")) {
        if (s->n_admin == 0) {
            srv_resp_error(resp, 401, "the management API is disabled: no "
                           "admin token is configured (admin_token_sha256)");
            return;
        }
        if (!srv_auth_admin(s, req)) {
            srv_resp_error(resp, 401, "missing or wrong admin token");
            return;
        }
        srv_mgmt_handle(s, req, resp);
        if (!resp->status)
            srv_resp_error(resp, 500, "the management handler gave no answer");
        return;
    }
    if (ddi_route(s, req, resp)) {
        if (!resp->status)
            srv_resp_error(resp, 500, "the DDI handler gave no answer");
        return;
    }
    srv_resp_error(resp, 404, "no such endpoint");
}

void srv_dispatch(struct srv *s, const struct srv_req *req,
                  struct srv_resp *resp)
{
    int st;
    route(s, req, resp);
    if (!resp->status)
        srv_resp_error(resp, 500, "no answer");
    st = resp->status;
    __atomic_add_fetch(&s->m.http[st >= 100 && st < 600 ? st / 100 : 0], 1,
                       __ATOMIC_RELAXED);
    if (st >= 100 && st < 600)
        __atomic_add_fetch(&s->m.http_code[st], 1, __ATOMIC_RELAXED);
}
