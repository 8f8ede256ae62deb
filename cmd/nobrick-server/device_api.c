/* device_api.c - the device API of docs/device-api.md: check-in (with
 * fleet enrolment and the offer decision), reports, and health reports
 * with their acknowledgement.
 *
 * Every request is one database transaction: authenticate, validate,
 * change, commit, and only then answer, so whatever a device was told has
 * been committed (kill -9 loses nothing acknowledged), and a refused
 * request (4xx) is rolled back whole: nothing changes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "store.h"

#define MAX_ACTIVE 64       /* rollouts considered at one check-in */
#define MAX_SLOTS 8
#define NONCE_MAX 128
#define OFFER_POLL_MAX 60   /* an offer asks for a check-in within a minute */

/* A handler's verdict: commit and answer, or roll back and answer. */
enum verdict { V_COMMIT = 0, V_REFUSE = 1, V_DBERR = 2 };

struct dctx {
    struct srv *s;
    struct nb_db_conn *c;
    const char *id;
    json_t *body;
    int64_t now;
    struct srv_device dev;
    int exists;
    char issued[65];       /* a token issued by enrolment, or "" */
    nb_err dberr;          /* with V_DBERR */
    int report_state;      /* srv_report_state() of a report, for metrics */
    int offered;           /* a check-in answered with an offer */
};

/* ----------------------------------------------------------- validation */

static const char *str_of(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A string that holds no NUL byte (jansson allows \u0000). */
static int clean_str(json_t *o, const char *key, size_t max)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) && json_string_length(v) <= max &&
           strlen(json_string_value(v)) == json_string_length(v);
}

static int int_in(json_t *o, const char *key, int64_t lo, int64_t hi,
                  int64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo ||
        json_integer_value(v) > hi)
        return 0;
    if (out)
        *out = json_integer_value(v);
    return 1;
}

/* Copy at most cap-1 bytes, cut at a UTF-8 character boundary. */
static void copy_cut(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

/* The slots array, re-encoded with only the keys docs/device-api.md
 * names, so what is stored is bounded and well-formed. */
static int slots_json(json_t *a, char out[SRV_ST_SLOTS])
{
    json_t *norm = json_array(), *e;
    size_t i;
    char *text;
    int ok = 0;
    if (!norm || !json_is_array(a) || json_array_size(a) > MAX_SLOTS)
        goto out;
    json_array_foreach(a, i, e) {
        json_t *n;
        int64_t slot, svn;
        if (!json_is_object(e) || !int_in(e, "slot", 0, 255, &slot) ||
            !clean_str(e, "state", 16))
            goto out;
        n = json_pack("{s:I, s:s}", "slot", (json_int_t)slot, "state",
                      str_of(e, "state"));
        if (json_object_get(e, "version")) {
            uint64_t v[3];
            if (!clean_str(e, "version", 32) ||
                !srv_version_parse(str_of(e, "version"), v)) {
                json_decref(n);
                goto out;
            }
            json_object_set_new(n, "version", json_string(str_of(e, "version")));
        }
        if (json_object_get(e, "security_version")) {
            if (!int_in(e, "security_version", 0, UINT32_MAX, &svn)) {
                json_decref(n);
                goto out;
            }
            json_object_set_new(n, "security_version", json_integer(svn));
        }
        json_array_append_new(norm, n);
    }
    text = json_dumps(norm, JSON_COMPACT);
    if (text && strlen(text) < SRV_ST_SLOTS) {
        memcpy(out, text, strlen(text) + 1);
        ok = 1;
    }
    free(text);
out:
    json_decref(norm);
    return ok;
}

static int valid_version(json_t *o, const char *key)
{
    uint64_t v[3];
    return clean_str(o, key, SRV_ST_VERSION - 1) &&
           srv_version_parse(str_of(o, key), v);
}

static int validate_checkin(json_t *b, char slots[SRV_ST_SLOTS],
                            char *msg, size_t len)
{
    json_t *u = json_object_get(b, "update");
    if (!clean_str(b, "hw_rev", SRV_ID_MAX) || !srv_valid_id(str_of(b, "hw_rev")))
        snprintf(msg, len, "hw_rev must be 1 to 64 of A-Z a-z 0-9 . _ -");
    else if (!valid_version(b, "version"))
        snprintf(msg, len, "version must be a string \"M.m.p\"");
    else if (!int_in(b, "security_version", 0, UINT32_MAX, NULL))
        snprintf(msg, len, "security_version must be an integer 0..4294967295");
    else if (!slots_json(json_object_get(b, "slots"), slots))
        snprintf(msg, len, "slots must be an array of at most %d slot objects "
                 "({\"slot\", \"state\", \"version\", \"security_version\"})",
                 MAX_SLOTS);
    else if (u && !json_is_null(u) &&
             (!json_is_object(u) || !clean_str(u, "rollout", SRV_ID_MAX) ||
              !srv_valid_id(str_of(u, "rollout")) ||
              (json_object_get(u, "bytes") &&
               !int_in(u, "bytes", 0, INT64_MAX, NULL))))
        snprintf(msg, len, "update must be {\"rollout\": ID, \"state\": ..., "
                 "\"bytes\": N}");
    else
        return 1;
    return 0;
}

static int validate_report(json_t *b, char *msg, size_t len)
{
    const char *st = str_of(b, "state");
    int k = srv_report_state(st);
    if (!clean_str(b, "rollout", SRV_ID_MAX) || !srv_valid_id(str_of(b, "rollout")))
        snprintf(msg, len, "rollout must be a rollout ID");
    else if (!valid_version(b, "version"))
        snprintf(msg, len, "version must be a string \"M.m.p\"");
    else if (k < 0 || !clean_str(b, "state", 16))
        snprintf(msg, len, "state must be one of downloading, verified, "
                 "installing, trial, confirmed, failed, reverted");
    else if (k == 0 && (!int_in(b, "bytes", 0, INT64_MAX, NULL) ||
                        !int_in(b, "total", 0, INT64_MAX, NULL)))
        snprintf(msg, len, "downloading needs integer bytes and total >= 0");
    else if (k == 5 && (!clean_str(b, "reason", 63) || !str_of(b, "reason")[0]))
        snprintf(msg, len, "failed needs a reason (an NB_ERR_... name)");
    else if (json_object_get(b, "detail") &&
             !clean_str(b, "detail", SRV_JSON_MAX))
        snprintf(msg, len, "detail must be a string");
    else
        return 1;
    return 0;
}

static int validate_health(json_t *b, char *msg, size_t len)
{
    if (!clean_str(b, "rollout", SRV_ID_MAX) || !srv_valid_id(str_of(b, "rollout")))
        snprintf(msg, len, "rollout must be a rollout ID");
    else if (!valid_version(b, "version"))
        snprintf(msg, len, "version must be a string \"M.m.p\"");
    else if (!json_is_boolean(json_object_get(b, "healthy")))
        snprintf(msg, len, "healthy must be true or false");
    else if (!clean_str(b, "nonce", NONCE_MAX) || !str_of(b, "nonce")[0])
        snprintf(msg, len, "nonce must be a string of 1 to %d bytes",
                 NONCE_MAX);
    else if (json_object_get(b, "detail") &&
             !clean_str(b, "detail", SRV_JSON_MAX))
        snprintf(msg, len, "detail must be a string");
    else
        return 1;
    return 0;
}

/* ------------------------------------------------------- authentication */

static enum verdict dberr(struct dctx *x, nb_err err)
{
    x->dberr = err;
    return V_DBERR;
}

/* The device's own token, or (check-in only) a fleet enrolment token for
 * a device not registered yet, or enrolled but whose token was never
 * used (the answer that carried it may have been lost). */
static enum verdict authenticate(struct dctx *x, const char *token,
                                 int checkin, struct srv_resp *resp)
{
    char hash[65];
    nb_err err = srv_store_device_get(x->c, x->id, &x->dev);
    if (err && err != NB_ERR_NOENT)
        return dberr(x, err);
    x->exists = err == NB_OK;
    srv_token_sha256_hex(token, hash);
    if (x->exists && x->dev.token_sha256[0] &&
        srv_hex_eq(x->dev.token_sha256, hash)) {
        if (x->dev.enrol_pending) {
            err = srv_store_device_set_token(x->c, x->id, hash, 0);
            if (err)
                return dberr(x, err);
            x->dev.enrol_pending = 0;
        }
        return V_COMMIT;
    }
    if (checkin && srv_auth_fleet(x->s, token) &&
        (!x->exists || x->dev.enrol_pending)) {
        char th[65];
        if (srv_new_token(x->issued) != NB_OK) {
            srv_resp_error(resp, 500, "cannot make a token");
            return V_REFUSE;
        }
        srv_token_sha256_hex(x->issued, th);
        if (x->exists) {
            err = srv_store_device_set_token(x->c, x->id, th, 1);
        } else {
            memset(&x->dev, 0, sizeof x->dev);
            snprintf(x->dev.id, sizeof x->dev.id, "%s", x->id);
            snprintf(x->dev.hw_rev, sizeof x->dev.hw_rev, "%s",
                     str_of(x->body, "hw_rev"));
            memcpy(x->dev.token_sha256, th, sizeof th);
            x->dev.enrol_pending = 1;
            x->dev.created_at = x->now;
            err = srv_store_device_create(x->c, &x->dev);
            x->exists = 1;
        }
        if (!err)
            err = srv_store_event_append(x->c, x->now, x->id, NULL, "enrol",
                                         NULL);
        return err ? dberr(x, err) : V_COMMIT;
    }
    srv_resp_error(resp, 401, "missing or wrong token for device %s", x->id);
    return V_REFUSE;
}

/* ---------------------------------------------------------------- offers */

/* Append `name` percent-encoded (all but unreserved characters). */
static void url_name(char *dst, size_t cap, const char *base,
                     const char *name)
{
    size_t pos = (size_t)snprintf(dst, cap, "%s/", base);
    for (const unsigned char *p = (const unsigned char *)name;
         *p && pos + 4 < cap; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' ||
            *p == '~')
            dst[pos++] = (char)*p;
        else
            pos += (size_t)snprintf(dst + pos, cap - pos, "%%%02X", *p);
    }
    dst[pos < cap ? pos : cap - 1] = '\0';
}

static json_t *offer_json(struct srv *s, const struct srv_rollout *r,
                          const struct srv_package *p)
{
    char url[SRV_URL_MAX + 3 * SRV_ST_NAME + 8];
    int64_t poll = (int64_t)s->cfg->poll_seconds;
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}",
                          "action", "update", "rollout", r->id,
                          "version", p->version,
                          "security_version", (json_int_t)p->security_version,
                          "package_size", (json_int_t)p->size,
                          "payload_offset", (json_int_t)p->payload_offset,
                          "payload_size", (json_int_t)p->payload_size);
    json_t *arts = json_object();
    if (!o || !arts) {
        json_decref(o);
        json_decref(arts);
        return NULL;
    }
    if (p->manifest_file[0]) {
        url_name(url, sizeof url, s->artifact_base, p->manifest_file);
        json_object_set_new(o, "manifest_url", json_string(url));
    }
    url_name(url, sizeof url, s->artifact_base, p->file);
    json_object_set_new(arts, "http", json_string(url));
    if (s->cfg->ftp_base_url[0]) {
        char base[SRV_STR_MAX];
        size_t n;
        snprintf(base, sizeof base, "%s", s->cfg->ftp_base_url);
        n = strlen(base);
        while (n && base[n - 1] == '/')
            base[--n] = '\0';
        url_name(url, sizeof url, base, p->file);
        json_object_set_new(arts, "ftp", json_string(url));
    }
    if (s->mqtt_enabled)
        json_object_set_new(arts, "mqtt", json_pack("{s:s}", "artifact",
                                                    p->file));
    json_object_set_new(o, "artifacts", arts);
    json_object_set_new(o, "poll_seconds",
                        json_integer(poll < OFFER_POLL_MAX ? poll
                                                           : OFFER_POLL_MAX));
    return o;
}

static int listed(const char (*list)[SRV_ST_ID], unsigned n, const char *s)
{
    for (unsigned i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return 1;
    return 0;
}

/* Parse the rollout's stored JSON (written by us after parsing). */
static int parse_rules(const struct srv_rollout *r, struct nb_ro_target *t,
                       struct nb_ro_policy *p)
{
    json_error_t je;
    char msg[128];
    json_t *jt = json_loads(r->target, 0, &je);
    json_t *jp = json_loads(r->policy, 0, &je);
    int ok = jt && jp && nb_ro_target_parse(jt, t, msg, sizeof msg) == NB_OK &&
             nb_ro_policy_parse(jp, p, msg, sizeof msg) == NB_OK;
    json_decref(jt);
    json_decref(jp);
    return ok;
}

/* A new offer of rollout r to the device? 1 yes (r refreshed), 0 no. */
static nb_err consider(struct dctx *x, struct srv_rollout *r,
                       struct srv_package *pkg, struct nb_ro_target *t,
                       struct nb_ro_policy *pol, int *yes)
{
    const char *tags[SRV_ST_MAX_TAGS];
    nb_err err;
    *yes = 0;
    if (strcmp(r->state, SRV_RO_RUNNING) && strcmp(r->state, SRV_RO_COMPLETED))
        return NB_OK;
    if (!parse_rules(r, t, pol))
        return NB_OK;
    for (unsigned i = 0; i < x->dev.n_tags; i++)
        tags[i] = x->dev.tags[i];
    if (!nb_ro_target_match(t, x->id, x->dev.hw_rev,
                            x->dev.group[0] ? x->dev.group : NULL, tags,
                            x->dev.n_tags))
        return NB_OK;
    err = srv_store_package_get(x->c, r->package_id, pkg);
    if (err)
        return err == NB_ERR_NOENT ? NB_OK : err;
    if (pkg->n_hw_revs && !listed(pkg->hw_revs, pkg->n_hw_revs, x->dev.hw_rev))
        return NB_OK;
    if (srv_version_cmp(pkg->version, x->dev.version) <= 0)
        return NB_OK;
    /* The rollout as it stands now: its step may have moved on, or its
     * failures may call for a pause before anyone else is offered it. */
    err = srv_store_rollout_refresh(x->c, r->id, x->now,
                                    SRV_RF_STEP | SRV_RF_PAUSE, NULL, r);
    if (err)
        return err;
    if (strcmp(r->state, SRV_RO_RUNNING) && strcmp(r->state, SRV_RO_COMPLETED))
        return NB_OK;
    if (!nb_ro_in_window(pol, x->now) ||
        !nb_ro_device_reached(pol, (unsigned)r->step, r->id, x->id))
        return NB_OK;
    *yes = 1;
    return NB_OK;
}

/* The offer for this check-in, or NULL (*ans untouched). */
static nb_err decide(struct dctx *x, json_t **ans)
{
    static const unsigned cap = MAX_ACTIVE;
    char (*ids)[SRV_ST_ID] = malloc(cap * sizeof *ids);
    struct srv_devro *rows = malloc(cap * sizeof *rows);
    struct srv_rollout *r = malloc(sizeof *r);
    struct srv_package *pkg = malloc(sizeof *pkg);
    struct nb_ro_target *t = malloc(sizeof *t);
    struct nb_ro_policy *pol = malloc(sizeof *pol);
    unsigned n_ids = 0, n_rows = 0, i, k;
    const char *cont = NULL;
    nb_err err = NB_OK;

    if (!ids || !rows || !r || !pkg || !t || !pol) {
        err = NB_ERR_NOMEM;
        goto out;
    }
    err = srv_store_rollout_active(x->c, ids, cap, &n_ids);
    if (!err)
        err = srv_store_devro_of_device(x->c, x->id, rows, cap, &n_rows);
    if (err)
        goto out;
    /* Work in progress first: the newest rollout the device is in and has
     * not finished is offered again, whatever its state (paused and
     * aborted rollouts make no new offers, but a device mid-update may
     * finish), so it can resume, or report that it already runs the
     * version. Rows come newest offer first. */
    for (k = 0; k < n_rows && !cont; k++) {
        if (srv_devro_final(rows[k].state))
            continue;
        err = srv_store_rollout_get(x->c, rows[k].rollout_id, r);
        if (err == NB_ERR_NOENT)
            continue;
        if (!err)
            err = srv_store_package_get(x->c, r->package_id, pkg);
        if (err == NB_ERR_NOENT)
            continue;
        if (err)
            goto out;
        /* A device that runs something newer by now is never sent back. */
        if (srv_version_cmp(pkg->version, x->dev.version) < 0)
            continue;
        cont = r->id;
    }
    if (cont) {
        if (!(*ans = offer_json(x->s, r, pkg)))
            err = NB_ERR_NOMEM;
        goto out;
    }
    /* A new offer: the newest rollout that reaches this device now. A
     * device that finished a rollout (confirmed, failed, reverted) is not
     * offered it again. */
    for (i = 0; i < n_ids; i++) {
        struct srv_devro d;
        int yes = 0, created = 0, seen = 0;
        for (k = 0; k < n_rows; k++)
            seen |= !strcmp(rows[k].rollout_id, ids[i]);
        if (seen)
            continue;
        err = srv_store_rollout_get(x->c, ids[i], r);
        if (!err)
            err = consider(x, r, pkg, t, pol, &yes);
        if (err)
            goto out;
        if (!yes)
            continue;
        memset(&d, 0, sizeof d);
        snprintf(d.device_id, sizeof d.device_id, "%s", x->id);
        snprintf(d.rollout_id, sizeof d.rollout_id, "%s", r->id);
        snprintf(d.state, sizeof d.state, "offered");
        d.step = r->step;
        d.offered_at = d.updated_at = x->now;
        d.healthy = -1;
        err = srv_store_devro_offer(x->c, &d, &created);
        if (!err && created)
            err = srv_store_event_append(x->c, x->now, x->id, r->id, "offer",
                                         NULL);
        /* A completed rollout with a new device is running again. */
        if (!err && !strcmp(r->state, SRV_RO_COMPLETED))
            err = srv_store_rollout_refresh(x->c, r->id, x->now,
                                            SRV_RF_COMPLETE, NULL, NULL);
        if (!err && !(*ans = offer_json(x->s, r, pkg)))
            err = NB_ERR_NOMEM;
        x->offered = created;
        break;
    }
out:
    free(ids);
    free(rows);
    free(r);
    free(pkg);
    free(t);
    free(pol);
    return err;
}

/* -------------------------------------------------------------- handlers */

static enum verdict do_checkin(struct dctx *x, const char *slots,
                               struct srv_resp *resp)
{
    json_t *b = x->body, *u = json_object_get(b, "update"), *ans = NULL;
    int64_t svn = json_integer_value(json_object_get(b, "security_version"));
    nb_err err = NB_OK;
    /* Only news is written (see SRV_SEEN_INTERVAL): a check-in that
     * changes nothing commits a read-only transaction, which costs no
     * fsync. A device enrolled just now has no row in x->dev yet. */
    int due = !x->exists || x->issued[0] ||
              srv_device_seen_due(&x->dev, str_of(b, "hw_rev"),
                                  str_of(b, "version"), svn, slots, x->now);
    snprintf(x->dev.version, sizeof x->dev.version, "%s", str_of(b, "version"));
    snprintf(x->dev.hw_rev, sizeof x->dev.hw_rev, "%s", str_of(b, "hw_rev"));
    if (due)
        err = srv_store_device_seen(x->c, x->id, x->dev.hw_rev, x->dev.version,
                                    svn, slots, x->now);
    if (err)
        return dberr(x, err);
    /* Progress told at check-in: the device is not silent. */
    if (json_is_object(u)) {
        struct srv_devro d;
        err = srv_store_devro_get(x->c, x->id, str_of(u, "rollout"), &d);
        if (err == NB_OK && !srv_devro_final(d.state)) {
            d.updated_at = x->now;
            if (json_is_integer(json_object_get(u, "bytes")))
                d.bytes = json_integer_value(json_object_get(u, "bytes"));
            err = srv_store_devro_upsert(x->c, &d);
        }
        if (err && err != NB_ERR_NOENT)
            return dberr(x, err);
    }
    err = decide(x, &ans);
    if (err) {
        json_decref(ans);
        return dberr(x, err);
    }
    if (!ans)
        ans = json_pack("{s:s, s:I}", "action", "none", "poll_seconds",
                        (json_int_t)x->s->cfg->poll_seconds);
    if (ans && x->s->cfg->revocations[0]) {
        char url[SRV_URL_MAX + 3 * SRV_ST_NAME + 8];
        url_name(url, sizeof url, x->s->artifact_base, x->s->cfg->revocations);
        json_object_set_new(ans, "revocations",
                            json_pack("{s:s, s:I}", "url", url, "seq",
                                      (json_int_t)x->s->cfg->revocations_seq));
    }
    if (ans && x->issued[0])
        json_object_set_new(ans, "device_token", json_string(x->issued));
    srv_resp_json(resp, 200, ans);
    return V_COMMIT;
}

/* The device's row in the report's rollout, or 409. */
static enum verdict member(struct dctx *x, const char *rollout,
                           struct srv_devro *d, struct srv_resp *resp)
{
    nb_err err = srv_store_devro_get(x->c, x->id, rollout, d);
    if (err == NB_ERR_NOENT) {
        srv_resp_error(resp, 409, "device %s is not in rollout %s", x->id,
                       rollout);
        return V_REFUSE;
    }
    return err ? dberr(x, err) : V_COMMIT;
}

static nb_err log_event(struct dctx *x, const char *rollout, const char *kind)
{
    char *text = json_dumps(x->body, JSON_COMPACT);
    nb_err err;
    if (!text)
        return NB_ERR_NOMEM;
    err = srv_store_event_append(x->c, x->now, x->id, rollout, kind, text);
    free(text);
    return err;
}

static enum verdict do_report(struct dctx *x, struct srv_resp *resp)
{
    json_t *b = x->body;
    const char *rollout = str_of(b, "rollout"), *state = str_of(b, "state");
    struct srv_devro d;
    enum verdict v = member(x, rollout, &d, resp);
    nb_err err;
    if (v != V_COMMIT)
        return v;
    /* A final state stays final: a late or repeated report must not undo
     * it (and make the device offered again). Only a revert may follow
     * (a trial that failed, or a confirm record cut by power). The report
     * is still logged. */
    if (srv_devro_final(d.state) && strcmp(state, "reverted") != 0) {
        err = log_event(x, rollout, "report");
        if (err)
            return dberr(x, err);
        srv_resp_json(resp, 200, json_pack("{s:b}", "ok", 1));
        return V_COMMIT;
    }
    snprintf(d.state, sizeof d.state, "%s", state);
    d.updated_at = x->now;
    if (json_is_integer(json_object_get(b, "bytes")))
        d.bytes = json_integer_value(json_object_get(b, "bytes"));
    if (json_is_integer(json_object_get(b, "total")))
        d.total = json_integer_value(json_object_get(b, "total"));
    if (str_of(b, "reason"))
        copy_cut(d.reason, sizeof d.reason, str_of(b, "reason"));
    if (str_of(b, "detail"))
        copy_cut(d.detail, sizeof d.detail, str_of(b, "detail"));
    err = srv_store_devro_upsert(x->c, &d);
    if (!err)
        err = log_event(x, rollout, "report");
    /* Failures may pause the rollout; a final state may complete it. */
    if (!err && srv_devro_final(state))
        err = srv_store_rollout_refresh(x->c, rollout, x->now,
                                        SRV_RF_PAUSE | SRV_RF_COMPLETE, NULL,
                                        NULL);
    if (err)
        return dberr(x, err);
    x->report_state = srv_report_state(state);
    srv_resp_json(resp, 200, json_pack("{s:b}", "ok", 1));
    return V_COMMIT;
}

static enum verdict do_health(struct dctx *x, struct srv_resp *resp)
{
    json_t *b = x->body;
    const char *rollout = str_of(b, "rollout"), *nonce = str_of(b, "nonce");
    struct srv_devro d;
    enum verdict v = member(x, rollout, &d, resp);
    nb_err err;
    if (v != V_COMMIT)
        return v;
    d.healthy = json_is_true(json_object_get(b, "healthy"));
    snprintf(d.health_nonce, sizeof d.health_nonce, "%s", nonce);
    if (str_of(b, "detail"))
        copy_cut(d.detail, sizeof d.detail, str_of(b, "detail"));
    d.updated_at = x->now;
    err = srv_store_devro_upsert(x->c, &d);
    if (!err)
        err = log_event(x, rollout, "health");
    if (err)
        return dberr(x, err);
    srv_resp_json(resp, 200, json_pack("{s:b, s:s}", "ack", 1, "nonce", nonce));
    return V_COMMIT;
}

/* ------------------------------------------------------------ the route */

static json_t *parse_body(const struct srv_req *req, struct srv_resp *resp)
{
    json_error_t je;
    json_t *j;
    if (!req->body || req->body_len == 0) {
        srv_resp_error(resp, 400, "empty body: a JSON object is expected");
        return NULL;
    }
    j = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        srv_resp_error(resp, 400, "invalid JSON at line %d: %s", je.line,
                       je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        srv_resp_error(resp, 400, "the body is not a JSON object");
        return NULL;
    }
    return j;
}

static void count_metrics(struct srv *s, const struct dctx *x, char what)
{
    if (what == 'c') {
        __atomic_add_fetch(&s->m.checkins, 1, __ATOMIC_RELAXED);
        if (x->offered)
            __atomic_add_fetch(&s->m.offers, 1, __ATOMIC_RELAXED);
        if (x->issued[0])
            __atomic_add_fetch(&s->m.enrolments, 1, __ATOMIC_RELAXED);
    } else if (what == 'r' && x->report_state >= 0) {
        __atomic_add_fetch(&s->m.reports[x->report_state], 1, __ATOMIC_RELAXED);
    } else if (what == 'h') {
        __atomic_add_fetch(&s->m.health, 1, __ATOMIC_RELAXED);
        if (!json_is_true(json_object_get(x->body, "healthy")))
            __atomic_add_fetch(&s->m.health_unhealthy, 1, __ATOMIC_RELAXED);
    }
}

void srv_device_handle(struct srv *s, const struct srv_req *req,
                       const char *device_id, const char *what,
                       struct srv_resp *resp)
{
    struct dctx *x;
    char msg[200], slots[SRV_ST_SLOTS];
    const char *token = srv_bearer(req);
    int ok;
    enum verdict v;
    nb_err err;

    snprintf(resp->device, sizeof resp->device, "%s", device_id);
    if (!srv_valid_id(device_id)) {
        resp->device[0] = '\0';
        srv_resp_error(resp, 400, "bad device ID: 1 to 64 of A-Z a-z 0-9 . _ -");
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        srv_resp_error(resp, 405, "use POST");
        srv_resp_header(resp, "Allow", "POST");
        return;
    }
    if (!token) {
        srv_resp_error(resp, 401, "missing bearer token");
        return;
    }
    x = calloc(1, sizeof *x);
    if (!x) {
        srv_resp_error(resp, 500, "out of memory");
        return;
    }
    x->s = s;
    x->id = device_id;
    x->now = srv_now(s);
    x->report_state = -1;
    x->body = parse_body(req, resp);
    if (!x->body)
        goto done;
    ok = what[0] == 'c' ? validate_checkin(x->body, slots, msg, sizeof msg)
         : what[0] == 'r' ? validate_report(x->body, msg, sizeof msg)
                          : validate_health(x->body, msg, sizeof msg);
    if (!ok) {
        srv_resp_error(resp, 400, "%s", msg);
        goto done;
    }
    x->c = nb_db_acquire(s->db);
    err = nb_db_begin(x->c);
    v = err ? dberr(x, err) : authenticate(x, token, what[0] == 'c', resp);
    if (v == V_COMMIT)
        v = what[0] == 'c' ? do_checkin(x, slots, resp)
            : what[0] == 'r' ? do_report(x, resp) : do_health(x, resp);
    if (v == V_COMMIT && (err = nb_db_commit(x->c)) != NB_OK)
        v = dberr(x, err);
    if (v != V_COMMIT)
        nb_db_rollback(x->c);
    if (v == V_DBERR) {
        srv_log_kv(&s->log, SRV_LOG_ERROR, "database error", "device",
                   device_id, "error", nb_err_name(x->dberr), "detail",
                   nb_db_errmsg(x->c), (const char *)NULL);
        /* Busy, unreachable, or a concurrent request got there first (two
         * enrolments of one device): worth a retry. */
        if (x->dberr == NB_ERR_IO || x->dberr == NB_ERR_STATE ||
            x->dberr == NB_ERR_DUPLICATE)
            srv_resp_error(resp, 503, "the database is busy or unreachable: "
                           "retry later");
        else
            srv_resp_error(resp, 500, "database error");
    }
    nb_db_release(s->db, x->c);
    if (v == V_COMMIT)
        count_metrics(s, x, what[0]);
done:
    json_decref(x->body);
    memset(x->issued, 0, sizeof x->issued);
    free(x);
}
