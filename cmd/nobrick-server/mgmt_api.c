/* mgmt_api.c - the management API of docs/server-api.md: srv_mgmt_handle
 * routes /api/v1/packages..., /api/v1/devices... and /api/v1/rollouts...
 * (dispatch.c calls it only with a valid admin token) to mgmt_packages.c,
 * mgmt_devices.c and mgmt_rollouts.c, and holds what they share: strict
 * input checks, transactions, error answers, paging and the JSON forms
 * of stored rows (mgmt_priv.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt_priv.h"

/* ------------------------------------------------------------- checks */

char *mg_clean(const char *in, char *out, size_t cap)
{
    size_t i = 0;
    if (!cap)
        return out;
    for (; in && in[i] && i + 1 < cap; i++) {
        unsigned char c = (unsigned char)in[i];
        out[i] = (c < 0x20 || c > 0x7e) ? '?' : (char)c;
    }
    out[i] = '\0';
    return out;
}

void mg_not_allowed(struct mg *m, const char *allow)
{
    srv_resp_error(m->resp, 405, "method %s not allowed here: use %s",
                   m->req->method, allow);
    srv_resp_header(m->resp, "Allow", allow);
}

int mg_method(struct mg *m, const char *method, const char *allow)
{
    if (strcmp(m->req->method, method) == 0)
        return 1;
    mg_not_allowed(m, allow);
    return 0;
}

json_t *mg_body(struct mg *m, int optional)
{
    const struct srv_req *r = m->req;
    json_error_t je;
    json_t *j;
    if (!r->body || r->body_len == 0) {
        if (optional)
            return json_object();
        srv_resp_error(m->resp, 400, "empty body: a JSON object is expected");
        return NULL;
    }
    /* Duplicate keys are refused; so is "\u0000" in a string (jansson
     * without JSON_ALLOW_NUL), so every string is a C string. */
    j = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        char t[160];
        srv_resp_error(m->resp, 400, "invalid JSON at line %d column %d: %s",
                       je.line, je.column, mg_clean(je.text, t, sizeof t));
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        srv_resp_error(m->resp, 400, "the body is not a JSON object");
        return NULL;
    }
    return j;
}

static int in_list(const char *const *keys, const char *k)
{
    for (; *keys; keys++)
        if (strcmp(*keys, k) == 0)
            return 1;
    return 0;
}

int mg_keys(struct mg *m, json_t *o, const char *const *keys)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (!in_list(keys, k)) {
            char t[80];
            srv_resp_error(m->resp, 400, "unknown key \"%s\"",
                           mg_clean(k, t, sizeof t));
            return 0;
        }
    }
    return 1;
}

int mg_query_keys(struct mg *m, const char *const *keys)
{
    const struct srv_req *r = m->req;
    for (unsigned i = 0; i < r->n_query; i++) {
        char t[80];
        const char *k = r->query[i].key ? r->query[i].key : "";
        if (!in_list(keys, k)) {
            srv_resp_error(m->resp, 400, "unknown query argument \"%s\"",
                           mg_clean(k, t, sizeof t));
            return 0;
        }
        for (unsigned j = 0; j < i; j++)
            if (r->query[j].key && strcmp(r->query[j].key, k) == 0) {
                srv_resp_error(m->resp, 400, "query argument \"%s\" given "
                               "twice", mg_clean(k, t, sizeof t));
                return 0;
            }
    }
    return 1;
}

int mg_limit(struct mg *m, unsigned *limit)
{
    const char *v = srv_req_query(m->req, "limit");
    unsigned n = 0;
    *limit = 100;
    if (!v)
        return 1;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9' || p - v >= 5) {
            n = 0;
            break;
        }
        n = n * 10 + (unsigned)(*p - '0');
    }
    if (n < 1 || n > SRV_ST_LIST_MAX) {
        srv_resp_error(m->resp, 400, "limit must be an integer 1..%d",
                       SRV_ST_LIST_MAX);
        return 0;
    }
    *limit = n;
    return 1;
}

int mg_str(struct mg *m, json_t *o, const char *key, int required,
           int (*check)(const char *), const char *what, const char **out)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || (json_is_null(v) && !required)) {
        if (!required)
            return 1;
        srv_resp_error(m->resp, 400, "%s is required: %s", key, what);
        return 0;
    }
    if (!json_is_string(v) || (check && !check(json_string_value(v)))) {
        srv_resp_error(m->resp, 400, "%s must be %s", key, what);
        return 0;
    }
    *out = json_string_value(v);
    return 1;
}

int mg_valid_hw_rev(const char *s)
{
    return srv_valid_id(s);
}

int mg_valid_text(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MG_REASON_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

/* --------------------------------------------------------- transactions */

void mg_db_error(struct mg *m, nb_err err, const char *what)
{
    switch (err) {
    case NB_ERR_NOENT:
        srv_resp_error(m->resp, 404, "no such %s", what);
        return;
    case NB_ERR_DUPLICATE:
        srv_resp_error(m->resp, 409, "%s exists already", what);
        return;
    case NB_ERR_IO:
        srv_resp_error(m->resp, 503, "the database is busy or unavailable: "
                       "retry");
        srv_resp_header(m->resp, "Retry-After", "1");
        return;
    default:
        srv_logf(&m->s->log, SRV_LOG_ERROR, "management API %s %s: %s (%s)",
                 m->req->method, m->req->path, nb_err_name(err),
                 m->c ? nb_db_errmsg(m->c) : "");
        srv_resp_error(m->resp, 500, "database error (%s): see the server's "
                       "log", nb_err_name(err));
        return;
    }
}

int mg_begin(struct mg *m)
{
    nb_err err;
    m->c = nb_db_acquire(m->s->db);
    err = nb_db_begin(m->c);
    if (err) {
        mg_db_error(m, err, "transaction");
        nb_db_release(m->s->db, m->c);
        m->c = NULL;
        return 0;
    }
    return 1;
}

nb_err mg_end(struct mg *m, int ok)
{
    nb_err err = NB_OK;
    if (!m->c)
        return NB_ERR_STATE;
    if (ok) {
        err = nb_db_commit(m->c);
        if (err)
            mg_db_error(m, err == NB_ERR_STATE ? NB_ERR_IO : err,
                        "transaction");
    } else {
        nb_db_rollback(m->c);
    }
    nb_db_release(m->s->db, m->c);
    m->c = NULL;
    return err;
}

/* ---------------------------------------------------------------- JSON */

json_t *mg_page(json_t *items, const char *next_id)
{
    if (!items)
        return NULL;
    return json_pack("{s:o, s:o}", "items", items, "next",
                     next_id ? json_string(next_id) : json_null());
}

json_t *mg_stored_json(const char *text)
{
    json_error_t je;
    json_t *j = text && *text ? json_loads(text, 0, &je) : NULL;
    return j ? j : json_null();
}

static json_t *str_list(const char (*items)[SRV_ST_ID], unsigned n)
{
    json_t *a = json_array();
    for (unsigned i = 0; a && i < n; i++)
        json_array_append_new(a, json_string(items[i]));
    return a;
}

json_t *mg_file_json(const struct srv_package_file *f)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:I}", "name", f->name,
                     "file", f->file, "size", (json_int_t)f->size, "sha256",
                     f->sha256, "sha1", f->sha1, "md5", f->md5, "created_at",
                     (json_int_t)f->created_at);
}

json_t *mg_package_json(const struct srv_package *p,
                        const struct srv_package_file *files, unsigned n)
{
    json_t *fl = json_array();
    for (unsigned i = 0; fl && i < n; i++)
        json_array_append_new(fl, mg_file_json(&files[i]));
    return json_pack(
        "{s:s, s:s, s:I, s:s, s:s, s:s, s:o, s:I, s:I, s:I, s:s, s:s, s:o, "
        "s:I, s:o}",
        "id", p->id, "version", p->version, "security_version",
        (json_int_t)p->security_version, "channel", p->channel, "vendor",
        p->vendor, "class", p->class_id, "hw_revs",
        str_list(p->hw_revs, p->n_hw_revs), "size", (json_int_t)p->size,
        "payload_offset", (json_int_t)p->payload_offset, "payload_size",
        (json_int_t)p->payload_size, "sha256", p->sha256, "file", p->file,
        "manifest_file",
        p->manifest_file[0] ? json_string(p->manifest_file) : json_null(),
        "created_at", (json_int_t)p->created_at, "files", fl);
}

json_t *mg_device_json(const struct srv_device *d)
{
    return json_pack(
        "{s:s, s:s, s:o, s:o, s:o, s:I, s:o, s:b, s:b, s:I, s:o}", "id",
        d->id, "hw_rev", d->hw_rev, "group",
        d->group[0] ? json_string(d->group) : json_null(), "tags",
        str_list(d->tags, d->n_tags), "version",
        d->version[0] ? json_string(d->version) : json_null(),
        "security_version", (json_int_t)d->security_version, "slots",
        mg_stored_json(d->slots), "has_token", d->token_sha256[0] != '\0',
        "enrol_pending", d->enrol_pending != 0, "created_at",
        (json_int_t)d->created_at, "last_seen",
        d->last_seen ? json_integer(d->last_seen) : json_null());
}

/* ------------------------------------------------------------- routing */

/* Split what follows /api/v1/ at '/': 1, or 0 for an empty segment (a
 * double or trailing slash), too many or too long segments. */
static int split(struct mg *m, const char *rest)
{
    m->n_seg = 0;
    for (;;) {
        const char *slash = strchr(rest, '/');
        size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
        if (n == 0 || n > MG_SEG_MAX || m->n_seg == MG_MAX_SEGS)
            return 0;
        memcpy(m->seg[m->n_seg], rest, n);
        m->seg[m->n_seg][n] = '\0';
        m->n_seg++;
        if (!slash)
            return 1;
        rest = slash + 1;
    }
}

void srv_mgmt_handle(struct srv *s, const struct srv_req *req,
                     struct srv_resp *resp)
{
    struct mg *m = calloc(1, sizeof *m);
    const char *api = "/api/v1/";
    if (!m) {
        srv_resp_error(resp, 500, "out of memory");
        return;
    }
    m->s = s;
    m->req = req;
    m->resp = resp;
    m->now = srv_now(s);
    if (strncmp(req->path, api, strlen(api)) != 0 ||
        !split(m, req->path + strlen(api))) {
        srv_resp_error(resp, 404, "no such endpoint");
    } else if (strcmp(m->seg[0], "packages") == 0) {
        mg_packages(m);
    } else if (strcmp(m->seg[0], "devices") == 0) {
        mg_devices(m);
    } else if (strcmp(m->seg[0], "rollouts") == 0) {
        mg_rollouts(m);
    } else {
        srv_resp_error(resp, 404, "no such endpoint");
    }
    if (m->c) /* a handler returned with a transaction open: a bug */
        mg_end(m, 0);
    if (!resp->status)
        srv_resp_error(resp, 500, "the management handler gave no answer");
    free(m);
}
