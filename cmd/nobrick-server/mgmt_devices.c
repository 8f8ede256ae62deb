/* mgmt_devices.c - /api/v1/devices of the management API: register a
 * device (its token is shown once; only its SHA-256 is kept), list with
 * filters and paging, show (with its rollouts and newest events), replace
 * its tags, set its group. A device's own calls (checkin, reports,
 * health) are device_api.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt_priv.h"

#define ID_RULE "1 to 64 of A-Z a-z 0-9 . _ -"

/* "tags": an array of at most SRV_ST_MAX_TAGS valid IDs: 1 and the list
 * (pointers into the JSON), or 0 after answering 400. */
static int tags_of(struct mg *m, json_t *v, const char **out, unsigned *n)
{
    size_t i;
    json_t *e;
    *n = 0;
    if (!json_is_array(v) || json_array_size(v) > SRV_ST_MAX_TAGS) {
        srv_resp_error(m->resp, 400, "tags must be an array of at most %d "
                       "tags (" ID_RULE ")", SRV_ST_MAX_TAGS);
        return 0;
    }
    json_array_foreach(v, i, e) {
        if (!json_is_string(e) || !srv_valid_id(json_string_value(e))) {
            srv_resp_error(m->resp, 400, "tags[%zu] must be a tag: " ID_RULE,
                           i);
            return 0;
        }
        out[(*n)++] = json_string_value(e);
    }
    return 1;
}

static int device_answer(struct mg *m, int status, const char *id,
                         const char *token)
{
    struct srv_device *d = malloc(sizeof *d);
    nb_err err = d ? srv_store_device_get(m->c, id, d) : NB_ERR_NOMEM;
    json_t *j;
    if (err) {
        mg_db_error(m, err, "device");
        free(d);
        return 0;
    }
    j = mg_device_json(d);
    if (j && token)
        json_object_set_new(j, "token", json_string(token));
    srv_resp_json(m->resp, status, j);
    free(d);
    return m->resp->status == status;
}

/* -------------------------------------------------------------- register */

static void create(struct mg *m)
{
    static const char *const keys[] = {"id", "hw_rev", "tags", "group", NULL};
    static const char *const qk[] = {NULL};
    const char *id, *hw, *group, *tags[SRV_ST_MAX_TAGS];
    struct srv_device *d = NULL;
    char token[65], loc[SRV_ST_ID + 32];
    unsigned n_tags = 0;
    int ok = 0;
    nb_err err;
    json_t *b;

    if (!mg_query_keys(m, qk) || !(b = mg_body(m, 0)))
        return;
    if (!mg_keys(m, b, keys) ||
        !mg_str(m, b, "id", 1, srv_valid_id, "a device ID: " ID_RULE, &id) ||
        !mg_str(m, b, "hw_rev", 0, mg_valid_hw_rev,
                "a hardware revision: " ID_RULE, &hw) ||
        !mg_str(m, b, "group", 0, srv_valid_id,
                "a group (" ID_RULE ") or null", &group) ||
        (json_object_get(b, "tags") &&
         !tags_of(m, json_object_get(b, "tags"), tags, &n_tags)))
        goto out;
    d = calloc(1, sizeof *d);
    if (!d || srv_new_token(token) != NB_OK) {
        srv_resp_error(m->resp, 500, "cannot make a token");
        goto out;
    }
    snprintf(d->id, sizeof d->id, "%s", id);
    snprintf(d->hw_rev, sizeof d->hw_rev, "%s", hw ? hw : "");
    snprintf(d->group, sizeof d->group, "%s", group ? group : "");
    for (unsigned i = 0; i < n_tags; i++)
        snprintf(d->tags[i], SRV_ST_ID, "%s", tags[i]);
    d->n_tags = n_tags;
    srv_token_sha256_hex(token, d->token_sha256);
    d->created_at = m->now;
    if (!mg_begin(m))
        goto out;
    err = srv_store_device_create(m->c, d);
    if (!err)
        err = srv_store_event_append(m->c, m->now, d->id, NULL, "register",
                                     NULL);
    if (err == NB_ERR_DUPLICATE)
        srv_resp_error(m->resp, 409, "device %s exists already", d->id);
    else if (err)
        mg_db_error(m, err, "device");
    else
        ok = device_answer(m, 201, d->id, token);
    if (mg_end(m, ok) == NB_OK && ok) {
        snprintf(loc, sizeof loc, "/api/v1/devices/%s", d->id);
        srv_resp_header(m->resp, "Location", loc);
    }
out:
    memset(token, 0, sizeof token);
    free(d);
    json_decref(b);
}

/* ----------------------------------------------------------------- list */

static int valid_version(const char *s)
{
    uint64_t v[3];
    return srv_version_parse(s, v);
}

static void list(struct mg *m)
{
    static const char *const qk[] = {"tag", "group", "hw_rev", "version",
                                     "limit", "after", NULL};
    static const struct {
        const char *key;
        int (*ok)(const char *);
        const char *what;
    } chk[] = {
        {"tag", srv_valid_id, "a tag: " ID_RULE},
        {"group", srv_valid_id, "a group: " ID_RULE},
        {"hw_rev", mg_valid_hw_rev, "a hardware revision: " ID_RULE},
        {"version", valid_version, "a version \"M.m.p\""},
        {"after", srv_valid_id, "a device ID"},
    };
    struct srv_device_filter f;
    struct srv_device *items = NULL;
    unsigned n = 0;
    int more = 0, ok = 0;
    nb_err err;

    if (!mg_query_keys(m, qk))
        return;
    for (size_t i = 0; i < sizeof chk / sizeof chk[0]; i++) {
        const char *v = srv_req_query(m->req, chk[i].key);
        if (v && !chk[i].ok(v)) {
            srv_resp_error(m->resp, 400, "%s must be %s", chk[i].key,
                           chk[i].what);
            return;
        }
    }
    memset(&f, 0, sizeof f);
    if (!mg_limit(m, &f.limit))
        return;
    f.tag = srv_req_query(m->req, "tag");
    f.group = srv_req_query(m->req, "group");
    f.hw_rev = srv_req_query(m->req, "hw_rev");
    f.version = srv_req_query(m->req, "version");
    f.after = srv_req_query(m->req, "after");
    if (!mg_begin(m))
        return;
    err = srv_store_device_list(m->c, &f, &items, &n, &more);
    if (err) {
        mg_db_error(m, err, "device");
    } else {
        json_t *a = json_array();
        for (unsigned i = 0; a && i < n; i++)
            json_array_append_new(a, mg_device_json(&items[i]));
        srv_resp_json(m->resp, 200,
                      mg_page(a, more && n ? items[n - 1].id : NULL));
        ok = 1;
    }
    mg_end(m, ok);
    free(items);
}

/* ----------------------------------------------------------------- show */

static json_t *devro_json(const struct srv_devro *d)
{
    /* A negative step: offered in step -1 - step, counted out of it by a
     * resume (store_mgmt.h). */
    int64_t step = d->step < 0 ? -1 - d->step : d->step;
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o}",
                     "rollout", d->rollout_id, "state", d->state, "step",
                     (json_int_t)step, "offered_at", (json_int_t)d->offered_at,
                     "updated_at", (json_int_t)d->updated_at, "bytes",
                     (json_int_t)d->bytes, "total", (json_int_t)d->total,
                     "reason", d->reason[0] ? json_string(d->reason)
                                            : json_null(),
                     "detail", d->detail[0] ? json_string(d->detail)
                                            : json_null(),
                     "healthy", d->healthy < 0 ? json_null()
                                               : json_boolean(d->healthy));
}

static json_t *event_json(const struct srv_event *e)
{
    return json_pack("{s:I, s:I, s:s, s:o, s:o}", "id", (json_int_t)e->id,
                     "at", (json_int_t)e->at, "kind", e->kind, "rollout",
                     e->rollout_id[0] ? json_string(e->rollout_id)
                                      : json_null(),
                     "body", mg_stored_json(e->body));
}

static void show(struct mg *m, const char *id)
{
    static const char *const qk[] = {NULL};
    struct srv_device *d = malloc(sizeof *d);
    struct srv_devro *ro = malloc(MG_DEVICE_ROLLOUTS * sizeof *ro);
    struct srv_event *ev = malloc(MG_DEVICE_EVENTS * sizeof *ev);
    unsigned n_ro = 0, n_ev = 0;
    int ok = 0;
    nb_err err;

    if (!mg_query_keys(m, qk))
        goto out;
    if (!d || !ro || !ev) {
        srv_resp_error(m->resp, 500, "out of memory");
        goto out;
    }
    if (!mg_begin(m))
        goto out;
    err = srv_store_device_get(m->c, id, d);
    if (!err)
        err = srv_store_devro_of_device(m->c, id, ro, MG_DEVICE_ROLLOUTS,
                                        &n_ro);
    if (!err)
        err = srv_store_events_of_device(m->c, id, NULL, ev, MG_DEVICE_EVENTS,
                                         &n_ev);
    if (err) {
        mg_db_error(m, err, "device");
    } else {
        json_t *j = mg_device_json(d), *a = json_array(), *e = json_array();
        for (unsigned i = 0; a && i < n_ro; i++)
            json_array_append_new(a, devro_json(&ro[i]));
        for (unsigned i = 0; e && i < n_ev; i++)
            json_array_append_new(e, event_json(&ev[i]));
        if (j) {
            json_object_set_new(j, "rollouts", a ? a : json_null());
            json_object_set_new(j, "events", e ? e : json_null());
        } else {
            json_decref(a);
            json_decref(e);
        }
        srv_resp_json(m->resp, 200, j);
        ok = 1;
    }
    mg_end(m, ok);
out:
    free(d);
    free(ro);
    free(ev);
}

/* ------------------------------------------------------------ tags, group */

static void set_tags(struct mg *m, const char *id)
{
    static const char *const keys[] = {"tags", NULL};
    static const char *const qk[] = {NULL};
    const char *tags[SRV_ST_MAX_TAGS];
    unsigned n = 0;
    int ok = 0;
    nb_err err;
    json_t *b;
    if (!mg_query_keys(m, qk) || !(b = mg_body(m, 0)))
        return;
    if (!mg_keys(m, b, keys))
        goto out;
    if (!json_object_get(b, "tags")) {
        srv_resp_error(m->resp, 400, "tags is required: an array of tags");
        goto out;
    }
    if (!tags_of(m, json_object_get(b, "tags"), tags, &n) || !mg_begin(m))
        goto out;
    err = srv_store_device_set_tags(m->c, id, tags, n);
    if (err)
        mg_db_error(m, err, "device");
    else
        ok = device_answer(m, 200, id, NULL);
    mg_end(m, ok);
out:
    json_decref(b);
}

static void set_group(struct mg *m, const char *id)
{
    static const char *const keys[] = {"group", NULL};
    static const char *const qk[] = {NULL};
    const char *group;
    int ok = 0;
    nb_err err;
    json_t *b;
    if (!mg_query_keys(m, qk) || !(b = mg_body(m, 0)))
        return;
    if (!mg_keys(m, b, keys))
        goto out;
    if (!json_object_get(b, "group")) {
        srv_resp_error(m->resp, 400, "group is required: a group (" ID_RULE
                       ") or null");
        goto out;
    }
    if (!mg_str(m, b, "group", 0, srv_valid_id,
                "a group (" ID_RULE ") or null", &group) ||
        !mg_begin(m))
        goto out;
    err = srv_store_device_set_group(m->c, id, group);
    if (err)
        mg_db_error(m, err, "device");
    else
        ok = device_answer(m, 200, id, NULL);
    mg_end(m, ok);
out:
    json_decref(b);
}

void mg_devices(struct mg *m)
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
        srv_resp_error(m->resp, 400, "bad device ID: " ID_RULE);
        return;
    }
    if (m->n_seg == 2) {
        if (mg_method(m, "GET", "GET"))
            show(m, m->seg[1]);
    } else if (m->n_seg == 3 && strcmp(m->seg[2], "tags") == 0) {
        if (mg_method(m, "PUT", "PUT"))
            set_tags(m, m->seg[1]);
    } else if (m->n_seg == 3 && strcmp(m->seg[2], "group") == 0) {
        if (mg_method(m, "PUT", "PUT"))
            set_group(m, m->seg[1]);
    } else {
        srv_resp_error(m->resp, 404, "no such endpoint");
    }
}
