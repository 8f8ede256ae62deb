/* ddi.c - a subset of Eclipse hawkBit's Direct Device Integration API
 * (DDI), so that existing hawkBit clients (SWUpdate's suricatta, ...) can
 * use nobrick-server. docs/hawkbit.md is the contract; in short:
 *
 *   GET  /{tenant}/controller/v1/{cid}                          base poll
 *   GET  .../{cid}/deploymentBase/{action}                      the offer
 *   POST .../{cid}/deploymentBase/{action}/feedback             progress
 *   PUT  .../{cid}/configData                                   attributes
 *   GET  .../{cid}/softwaremodules/{action}/artifacts/{name}    a file
 *   GET  .../{cid}/softwaremodules/{action}/artifacts/{name}.MD5SUM
 *
 * A controller is a nobrick device (cid = device ID). The offer is the
 * one the device API would make (the same rules: work in progress first,
 * then the newest rollout that reaches the device), restricted to
 * packages that carry extra files (PUT /api/v1/packages/{id}/files/...):
 * those files are the DDI artifacts. The action ID is the rollout's
 * number (r-N -> N), so one device has one action per rollout. Feedback
 * becomes a report of docs/device-api.md in device_rollouts and events,
 * so rollout counts and the automatic pause see DDI devices too.
 *
 * Every request is one transaction (authenticate, check, change, commit,
 * then answer); a refused request (4xx) is rolled back whole. Files are
 * hashed and served after the commit, never with a transaction open.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pkgverify.h"
#include "server.h"
#include "store.h"

/* The tenant clients must name (compared ignoring case, as hawkBit
 * does). nobrick has one tenant. */
#define DDI_TENANT "DEFAULT" /* when the config names none */
#define DDI_MAX_ACTIVE 64     /* rollouts considered at one poll */
#define DDI_MAX_FILES 16      /* artifacts of one deployment */
#define DDI_POLL_ACTIVE 60    /* poll at least this often during an action */
#define DDI_ATTR_KEYS 64      /* attributes kept per controller */
#define DDI_ATTR_LEN 128      /* bytes of a key or value */
#define DDI_ATTR_JSON 2000    /* stored JSON of all attributes (events.body) */
#define DDI_ACTION_MAX 2147483647  /* clients keep action IDs in an int */
#define EV_ATTRS "ddi_attributes"

enum route { R_BASE, R_DEPLOY, R_FEEDBACK, R_CONFIG, R_FILE };
enum verdict { V_COMMIT = 0, V_REFUSE = 1, V_DBERR = 2 };

/* One feedback body, checked. */
struct fb {
    const char *exec;         /* status.execution */
    const char *finished;     /* status.result.finished, or NULL */
    int64_t cnt, of;          /* status.result.progress, -1 if absent */
    char detail[SRV_ST_TEXT]; /* status.details joined */
};

struct ddi {
    struct srv *s;
    const struct srv_req *req;
    struct srv_resp *resp;
    struct nb_db_conn *c;
    const char *tenant;
    char cid[SRV_ID_MAX + 1];
    enum route route;
    int64_t action;                 /* 0 when the path has none */
    char name[SRV_NAME_MAX + 1];    /* artifacts/{name} */
    int md5sum;                     /* {name} ended with .MD5SUM */
    json_t *body;
    struct fb fb;
    int64_t now;
    struct srv_device dev;
    const char *token;              /* from Authorization, or NULL */
    int gateway;                    /* ... a GatewayToken */
    nb_err dberr;
    int enrolled, offered, report;  /* for /metrics; report: state index */
    /* What an answer is made of (read in the transaction). */
    int have_offer, have_attrs;
    struct srv_rollout ro;
    struct srv_package pkg;
    struct srv_package_file files[DDI_MAX_FILES];
    unsigned n_files;
    struct nb_ro_target target;
    struct nb_ro_policy policy;
};

static enum verdict dberr(struct ddi *x, nb_err err)
{
    x->dberr = err;
    return V_DBERR;
}

static const char *str_of(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Copy at most cap-1 bytes, cut at a UTF-8 character boundary. */
static void copy_cut(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ------------------------------------------------------------------ path */

/* 1..DDI_ACTION_MAX in plain decimal, else 0. */
static int64_t action_id(const char *s)
{
    int64_t v = 0;
    if (!*s || *s == '0' || strlen(s) > 10)
        return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return 0;
        v = v * 10 + (*s - '0');
    }
    return v <= DDI_ACTION_MAX ? v : 0;
}

/* Split rest ("/cid/...") and pick the route; 0, or an HTTP status after
 * answering. */
static int parse_path(struct ddi *x, const char *rest)
{
    char seg[5][SRV_NAME_MAX + 1];
    const char *p = rest, *m = x->req->method, *allow;
    unsigned n = 0;
    size_t len;
    while (*p == '/' && n < 5) {
        const char *e = strchr(p + 1, '/');
        len = e ? (size_t)(e - p - 1) : strlen(p + 1);
        if (len == 0 || len > SRV_NAME_MAX)
            goto nf;
        memcpy(seg[n], p + 1, len);
        seg[n++][len] = '\0';
        p += 1 + len;
    }
    if (*p || n == 0)
        goto nf;
    if (strlen(seg[0]) > SRV_ID_MAX || !srv_valid_id(seg[0])) {
        srv_resp_error(x->resp, 404, "unknown controller: IDs are 1 to 64 "
                       "of A-Z a-z 0-9 . _ -");
        return 404;
    }
    memcpy(x->cid, seg[0], strlen(seg[0]) + 1);
    snprintf(x->resp->device, sizeof x->resp->device, "%s", x->cid);
    if (n == 1) {
        x->route = R_BASE, allow = "GET";
    } else if (n == 2 && !strcmp(seg[1], "configData")) {
        x->route = R_CONFIG, allow = "PUT";
    } else if ((n == 3 || (n == 4 && !strcmp(seg[3], "feedback"))) &&
               !strcmp(seg[1], "deploymentBase")) {
        x->route = n == 3 ? R_DEPLOY : R_FEEDBACK;
        allow = n == 3 ? "GET" : "POST";
        x->action = action_id(seg[2]);
    } else if (n == 5 && !strcmp(seg[1], "softwaremodules") &&
               !strcmp(seg[3], "artifacts")) {
        x->route = R_FILE, allow = "GET, HEAD";
        x->action = action_id(seg[2]);
        memcpy(x->name, seg[4], strlen(seg[4]) + 1);
    } else {
        goto nf;
    }
    if (x->route != R_BASE && x->route != R_CONFIG && !x->action) {
        srv_resp_error(x->resp, 404, "no such action: action IDs are "
                       "integers 1..%d", DDI_ACTION_MAX);
        return 404;
    }
    if (x->route == R_FILE ? strcmp(m, "GET") && strcmp(m, "HEAD")
                           : strcmp(m, allow) != 0) {
        srv_resp_error(x->resp, 405, "use %s", allow);
        srv_resp_header(x->resp, "Allow", allow);
        return 405;
    }
    return 0;
nf:
    srv_resp_error(x->resp, 404, "no such DDI endpoint (docs/hawkbit.md)");
    return 404;
}

/* ---------------------------------------------------------------- bodies */

static json_t *parse_body(struct ddi *x)
{
    json_error_t je;
    json_t *j;
    if (!x->req->body || !x->req->body_len) {
        srv_resp_error(x->resp, 400, "empty body: a JSON object is expected");
        return NULL;
    }
    j = json_loadb(x->req->body, x->req->body_len, JSON_REJECT_DUPLICATES,
                   &je);
    if (!j || !json_is_object(j)) {
        srv_resp_error(x->resp, 400, j ? "the body is not a JSON object"
                       : "invalid JSON at line %d: %s", je.line, je.text);
        json_decref(j);
        return NULL;
    }
    return j;
}

static int one_of(const char *s, const char *const *set)
{
    for (; s && *set; set++)
        if (!strcmp(s, *set))
            return 1;
    return 0;
}

/* A feedback body: {"id"?, "time"?, "status": {"execution", "result":
 * {"finished", "progress": {"cnt", "of"}}, "details": [...]}}. Unknown
 * keys are ignored (clients differ); what is there must be well-typed. */
static const char *check_feedback(struct ddi *x)
{
    static const char *const execs[] = {"closed", "proceeding", "scheduled",
        "resumed", "download", "downloaded", "rejected", "canceled", NULL};
    static const char *const fins[] = {"success", "failure", "none", NULL};
    json_t *st = json_object_get(x->body, "status"), *id, *res, *pr, *d, *e;
    struct fb *f = &x->fb;
    size_t i, pos = 0;
    f->cnt = f->of = -1;
    id = json_object_get(x->body, "id");
    if (id && !(json_is_integer(id) && json_integer_value(id) == x->action) &&
        !(json_is_string(id) && (!json_string_value(id)[0] ||
                                 action_id(json_string_value(id)) == x->action)))
        return "id does not name the action of the path";
    if (!json_is_object(st))
        return "status must be an object";
    f->exec = str_of(st, "execution");
    if (!one_of(f->exec, execs))
        return "status.execution must be closed, proceeding, scheduled, "
               "resumed, download, downloaded, rejected or canceled";
    res = json_object_get(st, "result");
    if (res && !json_is_object(res))
        return "status.result must be an object";
    f->finished = str_of(res, "finished");
    if (json_object_get(res, "finished") && !one_of(f->finished, fins))
        return "status.result.finished must be success, failure or none";
    if (!strcmp(f->exec, "closed") && !f->finished)
        return "a closed action needs status.result.finished";
    pr = json_object_get(res, "progress");
    if (pr && !json_is_object(pr))
        return "status.result.progress must be an object";
    for (i = 0; pr && i < 2; i++) {
        json_t *v = json_object_get(pr, i ? "of" : "cnt");
        if (v && (!json_is_integer(v) || json_integer_value(v) < 0))
            return "progress cnt and of must be integers >= 0";
        if (v)
            *(i ? &f->of : &f->cnt) = json_integer_value(v);
    }
    d = json_object_get(st, "details");
    if (d && !json_is_array(d))
        return "status.details must be an array of strings";
    json_array_foreach(d, i, e) {
        if (!json_is_string(e))
            return "status.details must be an array of strings";
        if (pos + 3 < sizeof f->detail && json_string_value(e)[0]) {
            if (pos)
                pos += (size_t)snprintf(f->detail + pos,
                                        sizeof f->detail - pos, "; ");
            copy_cut(f->detail + pos, sizeof f->detail - pos,
                     json_string_value(e));
            pos += strlen(f->detail + pos);
        }
    }
    return NULL;
}

/* A printable string of 1..DDI_ATTR_LEN bytes (UTF-8 allowed). */
static int attr_text(const char *s, size_t len)
{
    if (len == 0 || len > DDI_ATTR_LEN || strlen(s) != len)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* {"mode"?: "merge"|"replace"|"remove", "data": {key: "value", ...}}
 * ("id", "time", "status" as SWUpdate sends them are ignored). */
static const char *check_config(struct ddi *x)
{
    static const char *const modes[] = {"merge", "replace", "remove", NULL};
    json_t *data = json_object_get(x->body, "data"), *v;
    const char *k;
    if (json_object_get(x->body, "mode") &&
        !one_of(str_of(x->body, "mode"), modes))
        return "mode must be merge, replace or remove";
    if (!json_is_object(data))
        return "data must be an object of string attributes";
    if (json_object_size(data) > DDI_ATTR_KEYS)
        return "too many attributes";
    json_object_foreach(data, k, v) {
        if (!attr_text(k, strlen(k)) || !json_is_string(v) ||
            !attr_text(json_string_value(v), json_string_length(v)))
            return "attribute names and values must be strings of 1 to 128 "
                   "printable bytes";
    }
    return NULL;
}

/* -------------------------------------------------------- authentication */

/* "Authorization: TargetToken X" or "GatewayToken X". */
static void auth_token(struct ddi *x)
{
    const char *h = srv_req_header(x->req, "Authorization");
    size_t n;
    if (!h)
        return;
    if (!strncasecmp(h, "TargetToken ", 12))
        h += 12;
    else if (!strncasecmp(h, "GatewayToken ", 13))
        h += 13, x->gateway = 1;
    else
        return;
    while (*h == ' ')
        h++;
    n = strcspn(h, " \t");
    if (n && n <= SRV_TOKEN_MAX && !h[n])
        x->token = h;
}

/* The controller's own token (TargetToken); or the fleet enrolment token
 * (GatewayToken) for a controller without a token of its own, which
 * registers an unknown one at its first base poll. Downloads without a
 * token are allowed when artifact_auth is off, as /api/v1/artifacts. */
static enum verdict authenticate(struct ddi *x)
{
    char hash[65];
    nb_err err = srv_store_device_get(x->c, x->cid, &x->dev);
    int exists = err == NB_OK;
    if (err && err != NB_ERR_NOENT)
        return dberr(x, err);
    if (!x->token && x->route == R_FILE && !x->s->cfg->artifact_auth &&
        exists && !srv_req_header(x->req, "Authorization"))
        return V_COMMIT;
    if (!x->token) {
        srv_resp_error(x->resp, 401, "an Authorization: TargetToken or "
                       "GatewayToken header is required");
        return V_REFUSE;
    }
    if (!x->gateway) {
        srv_token_sha256_hex(x->token, hash);
        if (!exists || !x->dev.token_sha256[0] ||
            !srv_hex_eq(x->dev.token_sha256, hash)) {
            srv_resp_error(x->resp, 401, "wrong target token for controller "
                           "%s", x->cid);
            return V_REFUSE;
        }
        if (x->dev.enrol_pending) { /* its token is in use now */
            x->dev.enrol_pending = 0;
            err = srv_store_device_set_token(x->c, x->cid, hash, 0);
        }
        return err ? dberr(x, err) : V_COMMIT;
    }
    if (!srv_auth_fleet(x->s, x->token)) {
        srv_resp_error(x->resp, 401, "wrong gateway token");
        return V_REFUSE;
    }
    if (exists && x->dev.token_sha256[0]) {
        srv_resp_error(x->resp, 403, "controller %s has a token of its own: "
                       "use TargetToken", x->cid);
        return V_REFUSE;
    }
    if (exists)
        return V_COMMIT;
    if (x->route != R_BASE) {
        srv_resp_error(x->resp, 404, "unknown controller %s", x->cid);
        return V_REFUSE;
    }
    memset(&x->dev, 0, sizeof x->dev);
    memcpy(x->dev.id, x->cid, sizeof x->cid);
    x->dev.created_at = x->now;
    err = srv_store_device_create(x->c, &x->dev);
    if (!err)
        err = srv_store_event_append(x->c, x->now, x->cid, NULL, "enrol",
                                     "{\"via\":\"ddi-gateway\"}");
    x->enrolled = 1;
    return err ? dberr(x, err) : V_COMMIT;
}

/* ---------------------------------------------------------------- offers */

static int parse_rules(struct ddi *x)
{
    json_error_t je;
    char msg[128];
    json_t *jt = json_loads(x->ro.target, 0, &je);
    json_t *jp = json_loads(x->ro.policy, 0, &je);
    int ok = jt && jp &&
             nb_ro_target_parse(jt, &x->target, msg, sizeof msg) == NB_OK &&
             nb_ro_policy_parse(jp, &x->policy, msg, sizeof msg) == NB_OK;
    json_decref(jt);
    json_decref(jp);
    return ok;
}

static int live(const char *state)
{
    return !strcmp(state, SRV_RO_RUNNING) || !strcmp(state, SRV_RO_COMPLETED);
}

/* Rollout x->ro's package and its DDI files into x->pkg / x->files. */
static nb_err load_package(struct ddi *x)
{
    nb_err err = srv_store_package_get(x->c, x->ro.package_id, &x->pkg);
    if (!err)
        err = srv_store_package_files(x->c, x->pkg.id, x->files,
                                      DDI_MAX_FILES, &x->n_files);
    return err;
}

/* May rollout x->ro make a new offer to the device now? The device API's
 * rules (device_api.c), plus: the package has DDI files. */
static nb_err consider(struct ddi *x, int *yes)
{
    const char *tags[SRV_ST_MAX_TAGS];
    nb_err err;
    int listed = 0;
    *yes = 0;
    if (!live(x->ro.state) || !parse_rules(x))
        return NB_OK;
    for (unsigned i = 0; i < x->dev.n_tags; i++)
        tags[i] = x->dev.tags[i];
    if (!nb_ro_target_match(&x->target, x->cid, x->dev.hw_rev,
                            x->dev.group[0] ? x->dev.group : NULL, tags,
                            x->dev.n_tags))
        return NB_OK;
    err = load_package(x);
    if (err)
        return err == NB_ERR_NOENT ? NB_OK : err;
    for (unsigned i = 0; i < x->pkg.n_hw_revs; i++)
        listed |= !strcmp(x->pkg.hw_revs[i], x->dev.hw_rev);
    if ((x->pkg.n_hw_revs && !listed) || !x->n_files ||
        srv_version_cmp(x->pkg.version, x->dev.version) <= 0)
        return NB_OK;
    err = srv_store_rollout_refresh(x->c, x->ro.id, x->now,
                                    SRV_RF_STEP | SRV_RF_PAUSE, NULL, &x->ro);
    if (err || !live(x->ro.state) || !nb_ro_in_window(&x->policy, x->now) ||
        !nb_ro_device_reached(&x->policy, (unsigned)x->ro.step, x->ro.id,
                              x->cid))
        return err;
    *yes = 1;
    return NB_OK;
}

/* The action to show at a base poll, into x->ro / x->pkg (x->have_offer):
 * the newest active rollout the device works on (not final), else a new
 * offer, recorded as device API check-ins record it. */
static nb_err decide(struct ddi *x)
{
    char (*ids)[SRV_ST_ID] = malloc(DDI_MAX_ACTIVE * sizeof *ids);
    struct srv_devro *rows = malloc(DDI_MAX_ACTIVE * sizeof *rows);
    unsigned n_ids = 0, n_rows = 0, i, k;
    int cont = -1;
    nb_err err = NB_ERR_NOMEM;
    if (!ids || !rows)
        goto out;
    err = srv_store_rollout_active(x->c, ids, DDI_MAX_ACTIVE, &n_ids);
    if (!err)
        err = srv_store_devro_of_device(x->c, x->cid, rows, DDI_MAX_ACTIVE,
                                        &n_rows);
    for (i = 0; !err && i < n_ids && cont < 0; i++)
        for (k = 0; k < n_rows && cont < 0; k++)
            if (!strcmp(rows[k].rollout_id, ids[i]) &&
                !srv_devro_final(rows[k].state))
                cont = (int)i;
    if (!err && cont >= 0) {
        err = srv_store_rollout_get(x->c, ids[cont], &x->ro);
        if (!err)
            err = load_package(x);
        x->have_offer = !err && x->n_files > 0;
        goto out;
    }
    for (i = 0; !err && i < n_ids; i++) {
        struct srv_devro d;
        int yes = 0, seen = 0;
        for (k = 0; k < n_rows; k++)
            seen |= !strcmp(rows[k].rollout_id, ids[i]);
        if (seen)
            continue; /* finished: never offered again */
        err = srv_store_rollout_get(x->c, ids[i], &x->ro);
        if (!err)
            err = consider(x, &yes);
        if (err || !yes)
            continue;
        memset(&d, 0, sizeof d);
        memcpy(d.device_id, x->cid, sizeof x->cid);
        memcpy(d.rollout_id, x->ro.id, sizeof d.rollout_id);
        memcpy(d.state, "offered", 8);
        d.step = x->ro.step;
        d.offered_at = d.updated_at = x->now;
        d.healthy = -1;
        err = srv_store_devro_offer(x->c, &d, &x->offered);
        if (!err && x->offered)
            err = srv_store_event_append(x->c, x->now, x->cid, x->ro.id,
                                         "offer", "{\"via\":\"ddi\"}");
        if (!err && !strcmp(x->ro.state, SRV_RO_COMPLETED))
            err = srv_store_rollout_refresh(x->c, x->ro.id, x->now,
                                            SRV_RF_COMPLETE, NULL, NULL);
        x->have_offer = !err;
        break;
    }
out:
    free(ids);
    free(rows);
    return err;
}

/* The device's row of the path's action, its rollout and package. */
static enum verdict load_action(struct ddi *x, struct srv_devro *d)
{
    char rid[SRV_ST_ID];
    nb_err err;
    snprintf(rid, sizeof rid, "r-%" PRId64, x->action);
    err = srv_store_devro_get(x->c, x->cid, rid, d);
    if (!err)
        err = srv_store_rollout_get(x->c, rid, &x->ro);
    if (!err)
        err = load_package(x);
    if (err == NB_ERR_NOENT) {
        srv_resp_error(x->resp, 404, "no action %" PRId64 " for controller "
                       "%s", x->action, x->cid);
        return V_REFUSE;
    }
    return err ? dberr(x, err) : V_COMMIT;
}

/* --------------------------------------------------------------- answers */

/* The URL of this controller's resources + "/" + path (percent-encoded
 * but for unreserved characters and '/'). */
static void url_of(struct ddi *x, char *out, size_t cap, const char *path)
{
    size_t pos = (size_t)snprintf(out, cap, "%s/%s/controller/v1/%s/",
                                  x->s->public_url, x->tenant, x->cid);
    for (const unsigned char *p = (const unsigned char *)path;
         *p && pos + 4 < cap; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            (*p >= '0' && *p <= '9') || strchr("-._~/", *p))
            out[pos++] = (char)*p;
        else
            pos += (size_t)snprintf(out + pos, cap - pos, "%%%02X", *p);
    }
    out[pos < cap ? pos : cap - 1] = '\0';
}

static json_t *href_of(struct ddi *x, const char *path)
{
    char url[SRV_URL_MAX + 3 * SRV_NAME_MAX + 160];
    url_of(x, url, sizeof url, path);
    return json_pack("{s:s}", "href", url);
}

static void answer_base(struct ddi *x)
{
    uint64_t poll = x->s->cfg->poll_seconds;
    char sleep[16], path[64];
    json_t *links = json_object();
    if (x->have_offer && poll > DDI_POLL_ACTIVE)
        poll = DDI_POLL_ACTIVE;
    if (poll > 359999)
        poll = 359999; /* 99:59:59 */
    snprintf(sleep, sizeof sleep, "%02u:%02u:%02u", (unsigned)(poll / 3600),
             (unsigned)(poll / 60 % 60), (unsigned)(poll % 60));
    if (links && x->have_offer) {
        snprintf(path, sizeof path, "deploymentBase/%" PRId64,
                 x->ro.seq);
        json_object_set_new(links, "deploymentBase", href_of(x, path));
    }
    if (links && !x->have_attrs)
        json_object_set_new(links, "configData", href_of(x, "configData"));
    srv_resp_json(x->resp, 200, links ? json_pack("{s:{s:{s:s}}, s:o}",
                  "config", "polling", "sleep", sleep, "_links", links) : NULL);
}

/* Hashes an extra file lacks (stored by other means than the management
 * API, which records all three): computed from the file after the
 * transaction, and stored, so once per file. */
static void complete_hashes(struct ddi *x)
{
    for (unsigned i = 0; i < x->n_files; i++) {
        struct srv_package_file *f = &x->files[i];
        struct srv_file_hashes h;
        struct nb_db_conn *c;
        int fd;
        if (f->sha1[0] && f->md5[0] && f->sha256[0])
            continue;
        fd = openat(x->s->artifacts_fd, f->file,
                    O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0 || srv_file_hashes(fd, &h) != NB_OK) {
            srv_log_kv(&x->s->log, SRV_LOG_WARN, "DDI: cannot hash an "
                       "artifact", "file", f->file, (const char *)NULL);
            if (fd >= 0)
                close(fd);
            continue;
        }
        close(fd);
        memcpy(f->sha1, h.sha1, sizeof f->sha1);
        memcpy(f->md5, h.md5, sizeof f->md5);
        memcpy(f->sha256, h.sha256, sizeof f->sha256);
        c = nb_db_acquire(x->s->db);
        if (nb_db_begin(c) == NB_OK) {
            if (srv_store_package_file_put(c, f) == NB_OK)
                nb_db_commit(c);
            else
                nb_db_rollback(c);
        }
        nb_db_release(x->s->db, c);
    }
}

static void answer_deployment(struct ddi *x)
{
    const char *dl = strncmp(x->s->public_url, "https:", 6) ? "download-http"
                                                            : "download";
    const char *sum = dl[8] ? "md5sum-http" : "md5sum";
    char id[24], path[SRV_NAME_MAX + 64];
    json_t *arts = json_array(), *a;
    complete_hashes(x);
    for (unsigned i = 0; arts && i < x->n_files; i++) {
        const struct srv_package_file *f = &x->files[i];
        snprintf(path, sizeof path, "softwaremodules/%" PRId64 "/artifacts/%s",
                 x->action, f->name);
        a = json_pack("{s:s, s:{s:s, s:s, s:s}, s:I, s:{s:o}}", "filename",
                      f->name, "hashes", "sha1", f->sha1, "md5", f->md5,
                      "sha256", f->sha256, "size", (json_int_t)f->size,
                      "_links", dl, href_of(x, path));
        strcat(path, ".MD5SUM");
        if (a)
            json_object_set_new(json_object_get(a, "_links"), sum,
                                href_of(x, path));
        json_array_append_new(arts, a);
    }
    snprintf(id, sizeof id, "%" PRId64, x->action);
    srv_resp_json(x->resp, 200, arts ? json_pack(
        "{s:s, s:{s:s, s:s, s:[{s:s, s:s, s:s, s:o}]}}", "id", id,
        "deployment", "download", "forced", "update", "forced", "chunks",
        "part", "os", "version", x->pkg.version, "name", x->pkg.id,
        "artifacts", arts) : NULL);
}

/* The file (whole, or one range), or its MD5SUM line. */
static void answer_file(struct ddi *x, const struct srv_package_file *f)
{
    struct srv_range rg[SRV_MAX_RANGES];
    struct srv_resp *resp = x->resp;
    struct stat st;
    char cr[96];
    int fd, n;
    if (x->md5sum) {
        char line[SRV_NAME_MAX + 40];
        if (!f->md5[0])
            complete_hashes(x);
        n = snprintf(line, sizeof line, "%s  %s\n", f->md5, f->name);
        srv_resp_text(resp, 200, "text/plain", line, (size_t)n);
        return;
    }
    fd = openat(x->s->artifacts_fd, f->file,
                O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        srv_resp_error(resp, 404, "artifact %s is missing on the server",
                       f->name);
        return;
    }
    n = srv_parse_ranges(srv_req_header(x->req, "Range"),
                         (uint64_t)st.st_size, rg, SRV_MAX_RANGES);
    if (n < 0) {
        close(fd);
        srv_resp_error(resp, 416, "range not satisfiable");
        snprintf(cr, sizeof cr, "bytes */%" PRIu64, (uint64_t)st.st_size);
        srv_resp_header(resp, "Content-Range", cr);
        return;
    }
    srv_resp_free(resp);
    resp->fd = fd;
    resp->kind = SRV_BODY_FILE;
    resp->file_size = (uint64_t)st.st_size;
    resp->content_type = "application/octet-stream";
    srv_resp_header(resp, "Accept-Ranges", "bytes");
    resp->status = n == 1 ? 206 : 200; /* several ranges: the whole file */
    resp->offset = n == 1 ? rg[0].first : 0;
    resp->length = n == 1 ? rg[0].last - rg[0].first + 1 : resp->file_size;
    if (n == 1) {
        snprintf(cr, sizeof cr, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64,
                 rg[0].first, rg[0].last, resp->file_size);
        srv_resp_header(resp, "Content-Range", cr);
    }
    if (!strcmp(x->req->method, "GET")) {
        resp->download = 1;
        __atomic_add_fetch(&x->s->m.downloads, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&x->s->m.download_bytes, resp->length,
                           __ATOMIC_RELAXED);
    }
}

/* -------------------------------------------------------------- handlers */

static enum verdict do_base(struct ddi *x)
{
    struct srv_event *ev = malloc(sizeof *ev);
    unsigned n = 0;
    nb_err err = ev ? NB_OK : NB_ERR_NOMEM;
    if (!err)
        err = srv_store_device_seen(x->c, x->cid, x->dev.hw_rev,
                                    x->dev.version, x->dev.security_version,
                                    x->dev.slots, x->now);
    if (!err)
        err = srv_store_events_of_device(x->c, x->cid, EV_ATTRS, ev, 1, &n);
    free(ev);
    x->have_attrs = n > 0;
    if (!err)
        err = decide(x);
    return err ? dberr(x, err) : V_COMMIT;
}

static int state_rank(const char *s)
{
    static const char *const order[] = {"offered", "downloading", "verified",
                                        "installing", "trial"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, order[i]))
            return i;
    return 5; /* final */
}

/* The report state a feedback means; NULL: no change (rejected). */
static const char *fb_state(const struct fb *f)
{
    if (!strcmp(f->exec, "closed"))
        return strcmp(f->finished, "failure") ? "confirmed" : "failed";
    if (!strcmp(f->exec, "rejected"))
        return NULL;
    if (!strcmp(f->exec, "downloaded"))
        return "verified";
    return f->of > 0 && f->cnt >= f->of ? "installing" : "downloading";
}

static enum verdict do_feedback(struct ddi *x)
{
    struct srv_devro d;
    const char *to = fb_state(&x->fb);
    enum verdict v = load_action(x, &d);
    json_t *ev;
    char *text;
    nb_err err;
    if (v != V_COMMIT)
        return v;
    if (srv_devro_final(d.state)) {
        if (to && !strcmp(to, d.state)) { /* a repeat: answered, no change */
            srv_resp_text(x->resp, 200, NULL, "", 0);
            return V_COMMIT;
        }
        srv_resp_error(x->resp, 409, "action %" PRId64 " is closed (%s)",
                       x->action, d.state);
        return V_REFUSE;
    }
    if (!strcmp(x->fb.exec, "canceled")) {
        srv_resp_error(x->resp, 409, "action %" PRId64 " was not canceled",
                       x->action);
        return V_REFUSE;
    }
    if (to && state_rank(to) > state_rank(d.state)) {
        memcpy(d.state, to, strlen(to) + 1);
        x->report = srv_report_state(to);
    }
    if (to && !strcmp(to, "failed"))
        snprintf(d.reason, sizeof d.reason, "DDI_FAILURE");
    if (x->fb.detail[0])
        memcpy(d.detail, x->fb.detail, sizeof d.detail);
    d.updated_at = x->now;
    err = srv_store_devro_upsert(x->c, &d);
    ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:s}", "via", "ddi",
                   "rollout", d.rollout_id, "version", x->pkg.version, "state",
                   d.state, "execution", x->fb.exec, "finished",
                   x->fb.finished, "detail", x->fb.detail);
    text = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    if (!err)
        err = text ? srv_store_event_append(x->c, x->now, x->cid, d.rollout_id,
                                            "report", text)
                   : NB_ERR_NOMEM;
    free(text);
    /* A confirmed device runs the package's version from now on. */
    if (!err && !strcmp(d.state, "confirmed"))
        err = srv_store_device_seen(x->c, x->cid, x->dev.hw_rev,
                                    x->pkg.version, x->pkg.security_version,
                                    x->dev.slots, x->now);
    if (!err && srv_devro_final(d.state))
        err = srv_store_rollout_refresh(x->c, d.rollout_id, x->now,
                                        SRV_RF_PAUSE | SRV_RF_COMPLETE, NULL,
                                        NULL);
    if (err)
        return dberr(x, err);
    srv_resp_text(x->resp, 200, NULL, "", 0);
    return V_COMMIT;
}

static enum verdict do_config(struct ddi *x)
{
    struct srv_event *ev = malloc(sizeof *ev);
    const char *mode = str_of(x->body, "mode"), *k, *hw, *ver;
    json_t *attrs = NULL, *data = json_object_get(x->body, "data"), *v;
    char *text = NULL;
    uint64_t vv[3];
    unsigned n = 0;
    nb_err err = ev ? NB_OK : NB_ERR_NOMEM;
    enum verdict res = V_COMMIT;
    if (!err)
        err = srv_store_events_of_device(x->c, x->cid, EV_ATTRS, ev, 1, &n);
    if (!err && n && (!mode || strcmp(mode, "replace")))
        attrs = json_loads(ev->body, 0, NULL);
    if (!json_is_object(attrs)) {
        json_decref(attrs);
        attrs = json_object();
    }
    json_object_foreach(data, k, v) {
        if (mode && !strcmp(mode, "remove"))
            json_object_del(attrs, k);
        else
            json_object_set(attrs, k, v);
    }
    hw = str_of(attrs, "hw_rev");
    hw = hw ? hw : str_of(attrs, "hwRevision");
    hw = hw ? hw : str_of(attrs, "hw_revision");
    ver = str_of(attrs, "version");
    if (!err && !(text = json_dumps(attrs, JSON_COMPACT | JSON_SORT_KEYS)))
        err = NB_ERR_NOMEM;
    if (err) {
        res = dberr(x, err);
    } else if (json_object_size(attrs) > DDI_ATTR_KEYS ||
               strlen(text) > DDI_ATTR_JSON) {
        srv_resp_error(x->resp, 400, "attributes over %d keys or %d bytes",
                       DDI_ATTR_KEYS, DDI_ATTR_JSON);
        res = V_REFUSE;
    } else if (hw && !srv_valid_id(hw)) {
        srv_resp_error(x->resp, 400, "hw_rev must be 1 to 64 of A-Z a-z 0-9 "
                       ". _ -");
        res = V_REFUSE;
    } else {
        /* The hardware revision (and an "M.m.p" version) the device
         * declares count as a check-in would. */
        int setv = ver && srv_version_parse(ver, vv) &&
                   strlen(ver) < sizeof x->dev.version;
        err = srv_store_event_append(x->c, x->now, x->cid, NULL, EV_ATTRS,
                                     text);
        if (!err && (hw || setv))
            err = srv_store_device_seen(
                x->c, x->cid, hw ? hw : x->dev.hw_rev,
                setv ? ver : x->dev.version,
                x->dev.security_version, x->dev.slots, x->now);
        if (err)
            res = dberr(x, err);
        else
            srv_resp_text(x->resp, 200, NULL, "", 0);
    }
    free(text);
    json_decref(attrs);
    free(ev);
    return res;
}

static enum verdict do_file(struct ddi *x, const struct srv_package_file **f)
{
    struct srv_devro d;
    enum verdict v = load_action(x, &d);
    size_t n = strlen(x->name);
    *f = NULL;
    for (int pass = 0; v == V_COMMIT && pass < 2 && !*f; pass++) {
        if (pass == 1) { /* NAME.MD5SUM of a file NAME */
            if (n <= 7 || strcmp(x->name + n - 7, ".MD5SUM"))
                break;
            x->name[n - 7] = '\0';
            x->md5sum = 1;
        }
        for (unsigned i = 0; i < x->n_files && !*f; i++)
            if (!strcmp(x->files[i].name, x->name))
                *f = &x->files[i];
    }
    if (v == V_COMMIT && !*f) {
        srv_resp_error(x->resp, 404, "no artifact %s in action %" PRId64,
                       x->name, x->action);
        return V_REFUSE;
    }
    return v;
}

/* ------------------------------------------------------------- the route */

static void count_metrics(struct ddi *x)
{
    struct srv_metrics *m = &x->s->m;
    if (x->route == R_BASE)
        __atomic_add_fetch(&m->checkins, 1, __ATOMIC_RELAXED);
    if (x->offered)
        __atomic_add_fetch(&m->offers, 1, __ATOMIC_RELAXED);
    if (x->enrolled)
        __atomic_add_fetch(&m->enrolments, 1, __ATOMIC_RELAXED);
    if (x->report >= 0)
        __atomic_add_fetch(&m->reports[x->report], 1, __ATOMIC_RELAXED);
}

/* Everything but the file bytes happens in one transaction. */
static void run(struct ddi *x)
{
    const struct srv_package_file *f = NULL;
    nb_err err;
    enum verdict v;
    x->c = nb_db_acquire(x->s->db);
    err = nb_db_begin(x->c);
    v = err ? dberr(x, err) : authenticate(x);
    if (v == V_COMMIT) {
        switch (x->route) {
        case R_BASE: v = do_base(x); break;
        case R_DEPLOY: { struct srv_devro d; v = load_action(x, &d); break; }
        case R_FEEDBACK: v = do_feedback(x); break;
        case R_CONFIG: v = do_config(x); break;
        case R_FILE: v = do_file(x, &f); break;
        }
    }
    if (v == V_COMMIT && (err = nb_db_commit(x->c)) != NB_OK)
        v = dberr(x, err);
    if (v != V_COMMIT)
        nb_db_rollback(x->c);
    if (v == V_DBERR) {
        srv_log_kv(&x->s->log, SRV_LOG_ERROR, "database error", "device",
                   x->cid, "error", nb_err_name(x->dberr), "detail",
                   nb_db_errmsg(x->c), (const char *)NULL);
        if (x->dberr == NB_ERR_IO || x->dberr == NB_ERR_STATE)
            srv_resp_error(x->resp, 503, "the database is busy or "
                           "unreachable: retry later");
        else
            srv_resp_error(x->resp, 500, "database error");
    }
    nb_db_release(x->s->db, x->c);
    x->c = NULL;
    if (v != V_COMMIT)
        return;
    count_metrics(x);
    if (x->route == R_BASE)
        answer_base(x);
    else if (x->route == R_DEPLOY)
        answer_deployment(x);
    else if (x->route == R_FILE)
        answer_file(x, f);
}

void srv_ddi_handle(struct srv *s, const struct srv_req *req,
                    const char *tenant, const char *rest,
                    struct srv_resp *resp)
{
    struct ddi *x;
    const char *bad = NULL;
    const char *want = s->cfg->ddi_tenant[0] ? s->cfg->ddi_tenant : DDI_TENANT;
    if (strcasecmp(tenant, want)) {
        srv_resp_error(resp, 404, "unknown tenant %s", tenant);
        return;
    }
    x = calloc(1, sizeof *x);
    if (!x) {
        srv_resp_error(resp, 500, "out of memory");
        return;
    }
    x->s = s;
    x->req = req;
    x->resp = resp;
    x->tenant = tenant;
    x->now = srv_now(s);
    x->report = -1;
    if (parse_path(x, rest))
        goto done;
    auth_token(x);
    if (x->route == R_FEEDBACK || x->route == R_CONFIG) {
        if (!(x->body = parse_body(x)))
            goto done;
        bad = x->route == R_FEEDBACK ? check_feedback(x) : check_config(x);
        if (bad) {
            srv_resp_error(resp, 400, "%s", bad);
            goto done;
        }
    }
    run(x);
done:
    json_decref(x->body);
    free(x);
}
