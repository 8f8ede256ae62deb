/* mgmt_rollouts.c - /api/v1/rollouts of the management API: create a
 * rollout (target and policy parsed by rollout.h, stored in canonical
 * form), list, show with status, pause, resume, abort, and the devices of
 * a rollout.
 *
 * A rollout has no background timer: before any answer about it, its
 * step, automatic pause and completion are brought up to date with
 * srv_store_rollout_refresh inside the request's transaction, so what an
 * operator sees is what a device checking in at that moment would find.
 *
 * States: running -> paused (pause, or automatically) -> running (resume)
 * -> ...; running <-> completed (the store decides); anything -> aborted,
 * which is final. Pausing a paused rollout, resuming a running one or
 * aborting an aborted one changes nothing and answers 200. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt_priv.h"
#include "store_mgmt.h"

#define ROLLOUT_ID_RULE "a rollout ID \"r-N\""

/* A stored policy (written by us after parsing): 1, or 0 when it does not
 * parse any more (a bug; the answer then says so). */
static int stored_policy(const struct srv_rollout *r, struct nb_ro_policy *p)
{
    json_error_t je;
    char msg[160];
    json_t *j = json_loads(r->policy, 0, &je);
    int ok = j && nb_ro_policy_parse(j, p, msg, sizeof msg) == NB_OK;
    json_decref(j);
    return ok;
}

static json_t *counts_json(const struct srv_rollout_counts *k)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                     "offered", (json_int_t)k->offered, "downloading",
                     (json_int_t)k->downloading, "verified",
                     (json_int_t)k->verified, "installing",
                     (json_int_t)k->installing, "trial", (json_int_t)k->trial,
                     "confirmed", (json_int_t)k->confirmed, "failed",
                     (json_int_t)k->failed, "reverted",
                     (json_int_t)k->reverted, "silent",
                     (json_int_t)k->silent);
}

/* The rollout object of docs/server-api.md; with `status`, also the
 * device counts (two indexed counting queries). */
static nb_err rollout_json(struct mg *m, const struct srv_rollout *r,
                           int status, json_t **out)
{
    struct nb_ro_policy *pol = malloc(sizeof *pol);
    struct srv_package *pkg = malloc(sizeof *pkg);
    struct srv_rollout_counts k;
    struct nb_ro_counts sc;
    json_t *j = NULL;
    json_t *next = json_null();
    nb_err err = (pol && pkg) ? NB_OK : NB_ERR_NOMEM;
    int have_pol = 0, have_pkg = 0;

    *out = NULL;
    if (!err) {
        have_pol = stored_policy(r, pol);
        err = srv_store_package_get(m->c, r->package_id, pkg);
        have_pkg = err == NB_OK;
        if (err == NB_ERR_NOENT)
            err = NB_OK;
    }
    if (err)
        goto out;
    if (have_pol && strcmp(r->state, SRV_RO_RUNNING) == 0 &&
        r->step + 1 < (int64_t)pol->n_steps && r->step >= 0) {
        int64_t end = r->step_started_at + pol->steps[r->step].hold_s;
        int64_t at = nb_ro_window_next(pol, end);
        if (at != NB_RO_NEVER)
            next = json_integer(at);
    }
    j = json_pack(
        "{s:s, s:s, s:o, s:s, s:o, s:I, s:I, s:f, s:I, s:o, s:o, s:o, s:o, "
        "s:I, s:I}",
        "id", r->id, "package", r->package_id, "version",
        have_pkg ? json_string(pkg->version) : json_null(), "state", r->state,
        "pause_reason",
        r->pause_reason[0] ? json_string(r->pause_reason) : json_null(),
        "step", (json_int_t)r->step, "steps",
        (json_int_t)(have_pol ? pol->n_steps : 0), "percent",
        have_pol ? nb_ro_step_ppm(pol, (unsigned)r->step) / 10000.0 : 0.0,
        "step_started_at", (json_int_t)r->step_started_at, "next_step_at",
        next, "in_window",
        json_boolean(have_pol && nb_ro_in_window(pol, m->now)), "target",
        mg_stored_json(r->target), "policy", mg_stored_json(r->policy),
        "created_at", (json_int_t)r->created_at, "updated_at",
        (json_int_t)r->updated_at);
    next = NULL;
    if (!j) {
        err = NB_ERR_NOMEM;
        goto out;
    }
    if (status) {
        err = srv_store_rollout_counts(m->c, r->id, m->now,
                                       have_pol ? pol->silent_s : 0, &k);
        if (!err)
            err = srv_store_rollout_step_counts(m->c, r->id, r->step, m->now,
                                                have_pol ? pol->silent_s : 0,
                                                &sc);
        if (err)
            goto out;
        json_object_set_new(j, "devices", json_integer(k.total));
        json_object_set_new(j, "counts", counts_json(&k));
        json_object_set_new(j, "step_counts",
                            json_pack("{s:I, s:I, s:I, s:I}", "attempted",
                                      (json_int_t)sc.attempted, "failed",
                                      (json_int_t)sc.failed, "reverted",
                                      (json_int_t)sc.reverted, "silent",
                                      (json_int_t)sc.silent));
    }
out:
    json_decref(next);
    if (err)
        json_decref(j);
    else
        *out = j;
    free(pol);
    free(pkg);
    return err;
}

/* Refresh rollout `id` and answer it with its status: 1, or 0 after
 * answering the error. */
static int answer_rollout(struct mg *m, int status, const char *id)
{
    struct srv_rollout *r = malloc(sizeof *r);
    json_t *j = NULL;
    nb_err err = r ? srv_store_rollout_refresh(m->c, id, m->now, SRV_RF_ALL,
                                               NULL, r)
                   : NB_ERR_NOMEM;
    if (!err)
        err = rollout_json(m, r, 1, &j);
    free(r);
    if (err) {
        mg_db_error(m, err, "rollout");
        return 0;
    }
    srv_resp_json(m->resp, status, j);
    return m->resp->status == status;
}

/* --------------------------------------------------------------- create */

/* Parse and re-encode one of target / policy: the canonical JSON text
 * (malloc'ed), or NULL after answering. */
static char *canonical(struct mg *m, json_t *b, int is_policy,
                       struct nb_ro_policy *pol)
{
    struct nb_ro_target *t = NULL;
    json_t *v = json_object_get(b, is_policy ? "policy" : "target"), *c;
    char msg[256], *text;
    nb_err err;
    if (is_policy) {
        err = nb_ro_policy_parse(v, pol, msg, sizeof msg);
        c = err ? NULL : nb_ro_policy_json(pol);
    } else {
        t = malloc(sizeof *t);
        err = t ? nb_ro_target_parse(v, t, msg, sizeof msg) : NB_ERR_NOMEM;
        if (err == NB_ERR_NOMEM)
            snprintf(msg, sizeof msg, "out of memory");
        c = err ? NULL : nb_ro_target_json(t);
        free(t);
    }
    if (err) {
        char clean[256];
        srv_resp_error(m->resp, err == NB_ERR_NOMEM ? 500 : 400, "%s",
                       mg_clean(msg, clean, sizeof clean));
        return NULL;
    }
    text = c ? json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(c);
    if (!text) {
        srv_resp_error(m->resp, 500, "out of memory");
        return NULL;
    }
    if (strlen(text) >= SRV_ST_JSON) {
        srv_resp_error(m->resp, 400, "%s is too large: at most %d bytes in "
                       "canonical form", is_policy ? "policy" : "target",
                       SRV_ST_JSON - 1);
        free(text);
        return NULL;
    }
    return text;
}

static void create(struct mg *m)
{
    static const char *const keys[] = {"package", "target", "policy", NULL};
    static const char *const qk[] = {NULL};
    struct nb_ro_policy *pol = malloc(sizeof *pol);
    struct srv_rollout *r = calloc(1, sizeof *r);
    struct srv_package *pkg = malloc(sizeof *pkg);
    char *target = NULL, *policy = NULL, loc[SRV_ST_ID + 32];
    const char *package;
    int ok = 0;
    int64_t started;
    json_t *b = NULL;
    nb_err err;

    if (!pol || !r || !pkg) {
        srv_resp_error(m->resp, 500, "out of memory");
        goto out;
    }
    if (!mg_query_keys(m, qk) || !(b = mg_body(m, 0)) ||
        !mg_keys(m, b, keys) ||
        !mg_str(m, b, "package", 1, srv_valid_id, "a package ID", &package) ||
        !(target = canonical(m, b, 0, NULL)) ||
        !(policy = canonical(m, b, 1, pol)))
        goto out;
    snprintf(r->package_id, sizeof r->package_id, "%s", package);
    snprintf(r->target, sizeof r->target, "%s", target);
    snprintf(r->policy, sizeof r->policy, "%s", policy);
    r->created_at = r->updated_at = m->now;
    /* The first hold counts from when offers can be made. */
    started = nb_ro_window_next(pol, m->now);
    r->step_started_at = started == NB_RO_NEVER ? m->now : started;
    if (!mg_begin(m))
        goto out;
    err = srv_store_package_get(m->c, package, pkg);
    if (err == NB_ERR_NOENT) {
        char t[80];
        srv_resp_error(m->resp, 404, "no package %s: upload it first",
                       mg_clean(package, t, sizeof t));
    } else if (err) {
        mg_db_error(m, err, "package");
    } else if ((err = srv_store_rollout_insert(m->c, r)) != NB_OK) {
        mg_db_error(m, err, "rollout");
    } else {
        ok = answer_rollout(m, 201, r->id);
    }
    if (mg_end(m, ok) == NB_OK && ok) {
        snprintf(loc, sizeof loc, "/api/v1/rollouts/%s", r->id);
        srv_resp_header(m->resp, "Location", loc);
        srv_log_kv(&m->s->log, SRV_LOG_INFO, "rollout created", "id", r->id,
                   "package", r->package_id, NULL);
    }
out:
    json_decref(b);
    free(target);
    free(policy);
    free(pol);
    free(r);
    free(pkg);
}

/* ----------------------------------------------------------------- list */

static int seq_of(const char *id, int64_t *seq)
{
    int64_t v = 0;
    if (strncmp(id, "r-", 2) != 0 || !id[2] || strlen(id) > 20)
        return 0;
    for (const char *p = id + 2; *p; p++) {
        if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10)
            return 0;
        v = v * 10 + (*p - '0');
    }
    *seq = v;
    return v > 0;
}

static void list(struct mg *m)
{
    static const char *const qk[] = {"state", "limit", "after", NULL};
    const char *state = srv_req_query(m->req, "state");
    const char *after = srv_req_query(m->req, "after");
    struct srv_rollout *items = NULL, *r = malloc(sizeof *r);
    unsigned limit, n = 0;
    int more = 0, ok = 0;
    int64_t seq = 0;
    json_t *a = NULL;
    nb_err err;

    if (!r) {
        srv_resp_error(m->resp, 500, "out of memory");
        return;
    }
    if (!mg_query_keys(m, qk) || !mg_limit(m, &limit))
        goto out;
    if (state && strcmp(state, SRV_RO_RUNNING) &&
        strcmp(state, SRV_RO_PAUSED) && strcmp(state, SRV_RO_ABORTED) &&
        strcmp(state, SRV_RO_COMPLETED)) {
        srv_resp_error(m->resp, 400, "state must be running, paused, "
                       "aborted or completed");
        goto out;
    }
    if (after && !seq_of(after, &seq)) {
        srv_resp_error(m->resp, 400, "after must be " ROLLOUT_ID_RULE);
        goto out;
    }
    if (!mg_begin(m))
        goto out;
    /* Newest first. The state filter sees stored states: a rollout that
     * the refresh below moves on may still be listed under its old one. */
    err = srv_store_rollout_list(m->c, state, seq, limit, &items, &n, &more);
    a = json_array();
    for (unsigned i = 0; !err && i < n; i++) {
        json_t *j = NULL;
        err = srv_store_rollout_refresh(m->c, items[i].id, m->now,
                                        SRV_RF_ALL, NULL, r);
        if (!err)
            err = rollout_json(m, r, 0, &j);
        if (!err && a)
            json_array_append_new(a, j);
        else
            json_decref(j);
    }
    if (err) {
        json_decref(a);
        mg_db_error(m, err, "rollout");
    } else {
        srv_resp_json(m->resp, 200,
                      mg_page(a, more && n ? items[n - 1].id : NULL));
        ok = 1;
    }
    mg_end(m, ok);
out:
    free(items);
    free(r);
}

/* ----------------------------------------------------- devices of one */

static void devices(struct mg *m, const char *id)
{
    static const char *const qk[] = {"limit", "after", NULL};
    const char *after = srv_req_query(m->req, "after");
    struct srv_rollout *r = malloc(sizeof *r);
    struct srv_devro *items = NULL;
    unsigned limit, n = 0;
    int more = 0, ok = 0;
    nb_err err;

    if (!r) {
        srv_resp_error(m->resp, 500, "out of memory");
        return;
    }
    if (!mg_query_keys(m, qk) || !mg_limit(m, &limit))
        goto out;
    if (after && !srv_valid_id(after)) {
        srv_resp_error(m->resp, 400, "after must be a device ID");
        goto out;
    }
    if (!mg_begin(m))
        goto out;
    err = srv_store_rollout_get(m->c, id, r);
    if (!err)
        err = srv_store_devro_of_rollout(m->c, id, after, limit, &items, &n,
                                         &more);
    if (err) {
        mg_db_error(m, err, "rollout");
    } else {
        json_t *a = json_array();
        for (unsigned i = 0; a && i < n; i++) {
            const struct srv_devro *d = &items[i];
            int64_t step = d->step < 0 ? -1 - d->step : d->step;
            json_array_append_new(
                a, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:o, s:o}",
                             "device", d->device_id, "state", d->state,
                             "step", (json_int_t)step, "offered_at",
                             (json_int_t)d->offered_at, "updated_at",
                             (json_int_t)d->updated_at, "bytes",
                             (json_int_t)d->bytes, "total",
                             (json_int_t)d->total, "reason",
                             d->reason[0] ? json_string(d->reason)
                                          : json_null(),
                             "healthy", d->healthy < 0
                                            ? json_null()
                                            : json_boolean(d->healthy)));
        }
        srv_resp_json(m->resp, 200,
                      mg_page(a, more && n ? items[n - 1].device_id : NULL));
        ok = 1;
    }
    mg_end(m, ok);
out:
    free(items);
    free(r);
}

/* ------------------------------------------------- pause, resume, abort */

static void act(struct mg *m, const char *id, const char *what)
{
    static const char *const reason_keys[] = {"reason", NULL};
    static const char *const no_keys[] = {NULL};
    static const char *const qk[] = {NULL};
    struct srv_rollout *r = malloc(sizeof *r);
    struct nb_ro_policy *pol = malloc(sizeof *pol);
    const char *reason = NULL;
    char text[SRV_ST_TEXT];
    int ok = 0, resume = !strcmp(what, "resume"), abort_ = !strcmp(what,
                                                                   "abort");
    json_t *b = NULL;
    nb_err err;

    if (!r || !pol) {
        srv_resp_error(m->resp, 500, "out of memory");
        goto out;
    }
    if (!mg_query_keys(m, qk) || !(b = mg_body(m, 1)) ||
        !mg_keys(m, b, resume ? no_keys : reason_keys) ||
        !mg_str(m, b, "reason", 0, mg_valid_text,
                "a line of text (1 to 400 bytes, no control characters)",
                &reason) ||
        !mg_begin(m))
        goto out;
    err = srv_store_rollout_refresh(m->c, id, m->now, SRV_RF_ALL, NULL, r);
    if (err) {
        mg_db_error(m, err, "rollout");
        goto end;
    }
    if (!strcmp(r->state, SRV_RO_ABORTED) && !abort_) {
        srv_resp_error(m->resp, 409, "rollout %s is aborted: that is final "
                       "(create a new rollout)", id);
        goto end;
    }
    if (reason)
        snprintf(text, sizeof text, "manual: %s", reason);
    else
        snprintf(text, sizeof text, "%s", abort_ ? r->pause_reason : "manual");
    err = NB_OK;
    if (abort_ && strcmp(r->state, SRV_RO_ABORTED)) {
        err = srv_store_rollout_set_state(m->c, id, SRV_RO_ABORTED, text,
                                          m->now);
    } else if (!strcmp(what, "pause") && strcmp(r->state, SRV_RO_PAUSED)) {
        err = srv_store_rollout_set_state(m->c, id, SRV_RO_PAUSED, text,
                                          m->now);
    } else if (resume && !strcmp(r->state, SRV_RO_PAUSED)) {
        int64_t started;
        if (!stored_policy(r, pol)) {
            mg_db_error(m, NB_ERR_CORRUPT, "rollout");
            goto end;
        }
        /* The step starts again: its hold, and its counts. */
        started = nb_ro_window_next(pol, m->now);
        err = srv_store_rollout_resume(m->c, id, r->step,
                                       started == NB_RO_NEVER ? m->now
                                                              : started,
                                       m->now);
    } else {
        what = NULL; /* nothing to do: answer the rollout as it is */
    }
    if (err) {
        mg_db_error(m, err, "rollout");
        goto end;
    }
    ok = answer_rollout(m, 200, id);
end:
    if (mg_end(m, ok) == NB_OK && ok && what)
        srv_log_kv(&m->s->log, SRV_LOG_INFO, "rollout changed", "id", id,
                   "action", what, "reason", reason, NULL);
out:
    json_decref(b);
    free(r);
    free(pol);
}

void mg_rollouts(struct mg *m)
{
    const char *method = m->req->method;
    if (m->n_seg == 1) {
        if (strcmp(method, "GET") == 0)
            list(m);
        else if (strcmp(method, "POST") == 0)
            create(m);
        else
            mg_not_allowed(m, "GET, POST");
        return;
    }
    if (!srv_valid_id(m->seg[1])) {
        srv_resp_error(m->resp, 400, "bad rollout ID");
        return;
    }
    if (m->n_seg == 2) {
        static const char *const qk[] = {NULL};
        if (!mg_method(m, "GET", "GET") || !mg_query_keys(m, qk) ||
            !mg_begin(m))
            return;
        mg_end(m, answer_rollout(m, 200, m->seg[1]));
        return;
    }
    if (m->n_seg == 3 && (!strcmp(m->seg[2], "pause") ||
                          !strcmp(m->seg[2], "resume") ||
                          !strcmp(m->seg[2], "abort"))) {
        if (mg_method(m, "POST", "POST"))
            act(m, m->seg[1], m->seg[2]);
        return;
    }
    if (m->n_seg == 3 && !strcmp(m->seg[2], "devices")) {
        if (mg_method(m, "GET", "GET"))
            devices(m, m->seg[1]);
        return;
    }
    srv_resp_error(m->resp, 404, "no such endpoint");
}
