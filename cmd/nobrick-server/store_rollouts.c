/* store_rollouts.c - rollouts and device_rollouts over db.h, and the lazy
 * evaluation of a rollout (step advance, automatic pause, completion)
 * that check-ins, reports and the management API share; see store.h.
 *
 * There is no background thread: a rollout's step and state are brought
 * up to date whenever someone looks at it, inside that request's
 * transaction, with conditional UPDATEs, so two server processes doing it
 * at once agree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "store_impl.h"

#define RO_COLS "id, seq, package_id, state, pause_reason, step, " \
                "step_started_at, target, policy, created_at, updated_at"

static int rollout_row(void *arg, const struct nb_db_row *row)
{
    struct st_fill *f = arg;
    struct srv_rollout *r = st_next(f);
    if (!r)
        return 1;
    st_text(f, row, 0, r->id, sizeof r->id);
    r->seq = nb_db_int(row, 1);
    st_text(f, row, 2, r->package_id, sizeof r->package_id);
    st_text(f, row, 3, r->state, sizeof r->state);
    st_text(f, row, 4, r->pause_reason, sizeof r->pause_reason);
    r->step = nb_db_int(row, 5);
    r->step_started_at = nb_db_int(row, 6);
    st_text(f, row, 7, r->target, sizeof r->target);
    st_text(f, row, 8, r->policy, sizeof r->policy);
    r->created_at = nb_db_int(row, 9);
    r->updated_at = nb_db_int(row, 10);
    return 0;
}

nb_err srv_store_rollout_insert(struct nb_db_conn *c, struct srv_rollout *r)
{
    int64_t seq;
    nb_err err = srv_store_next(c, "rollout", &seq);
    if (err)
        return err;
    r->seq = seq;
    snprintf(r->id, sizeof r->id, "r-%lld", (long long)seq);
    if (!r->state[0])
        snprintf(r->state, sizeof r->state, "%s", SRV_RO_RUNNING);
    if (!r->step_started_at)
        r->step_started_at = r->created_at;
    if (!r->updated_at)
        r->updated_at = r->created_at;
    struct nb_db_val p[11] = {
        NB_DB_S(r->id), NB_DB_I(r->seq), NB_DB_S(r->package_id),
        NB_DB_S(r->state), NB_DB_S(r->pause_reason[0] ? r->pause_reason : NULL),
        NB_DB_I(r->step), NB_DB_I(r->step_started_at), NB_DB_S(r->target),
        NB_DB_S(r->policy), NB_DB_I(r->created_at), NB_DB_I(r->updated_at)};
    return nb_db_exec(c, "INSERT INTO rollouts (" RO_COLS ") VALUES (?1, ?2, "
                      "?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)", p, 11, NULL,
                      NULL, NULL);
}

nb_err srv_store_rollout_get(struct nb_db_conn *c, const char *id,
                             struct srv_rollout *out)
{
    struct st_fill f = {out, sizeof *out, 0, 1, 0, 0, 0};
    struct nb_db_val p[1] = {NB_DB_S(id)};
    nb_err err = nb_db_exec(c, "SELECT " RO_COLS " FROM rollouts WHERE "
                            "id = ?1", p, 1, rollout_row, &f, NULL);
    if (!err && f.n == 0)
        return NB_ERR_NOENT;
    return st_fill_err(&f, err);
}

nb_err srv_store_rollout_list(struct nb_db_conn *c, const char *state,
                              int64_t after, unsigned limit,
                              struct srv_rollout **out, unsigned *n,
                              int *more)
{
    struct st_fill f = {NULL, sizeof(struct srv_rollout), 0, 0, 1, 0, 0};
    struct nb_db_val p[3];
    nb_err err;
    limit = st_limit(limit);
    /* Newest first: "after" is the seq of the previous page's last item. */
    p[0] = NB_DB_I(after > 0 ? after : INT64_MAX);
    p[1] = NB_DB_I(limit + 1);
    p[2] = NB_DB_S(state);
    *out = NULL;
    *n = 0;
    *more = 0;
    if (state)
        err = nb_db_exec(c, "SELECT " RO_COLS " FROM rollouts WHERE seq < ?1 "
                         "AND state = ?3 ORDER BY seq DESC LIMIT ?2", p, 3,
                         rollout_row, &f, NULL);
    else
        err = nb_db_exec(c, "SELECT " RO_COLS " FROM rollouts WHERE seq < ?1 "
                         "ORDER BY seq DESC LIMIT ?2", p, 2, rollout_row, &f,
                         NULL);
    err = st_fill_err(&f, err);
    if (err) {
        free(f.items);
        return err;
    }
    if (f.n > limit) {
        f.n = limit;
        *more = 1;
    }
    *out = f.items;
    *n = f.n;
    return NB_OK;
}

struct ids {
    char (*ids)[SRV_ST_ID];
    unsigned n, cap;
};

static int id_row(void *arg, const struct nb_db_row *row)
{
    struct ids *x = arg;
    const char *s = nb_db_text(row, 0);
    if (x->n >= x->cap)
        return 1;
    if (s && strlen(s) < SRV_ST_ID)
        memcpy(x->ids[x->n++], s, strlen(s) + 1);
    return 0;
}

nb_err srv_store_rollout_active(struct nb_db_conn *c, char (*ids)[SRV_ST_ID],
                                unsigned cap, unsigned *n)
{
    struct ids x = {ids, 0, cap};
    struct nb_db_val p[1] = {NB_DB_I(cap)};
    /* Served by the partial index rollouts_active (schema.c, migration 2),
     * whose WHERE this one repeats. */
    nb_err err = nb_db_exec(c, "SELECT id FROM rollouts WHERE state IN "
                            "('running', 'paused', 'completed') ORDER BY "
                            "seq DESC LIMIT ?1", p, 1, id_row, &x, NULL);
    *n = x.n;
    return err;
}

static nb_err update_one(struct nb_db_conn *c, const char *sql,
                         const struct nb_db_val *p, unsigned np)
{
    int64_t changed = 0;
    nb_err err = nb_db_exec(c, sql, p, np, NULL, NULL, &changed);
    if (!err && changed == 0)
        return NB_ERR_NOENT;
    return err;
}

nb_err srv_store_rollout_set_state(struct nb_db_conn *c, const char *id,
                                   const char *state, const char *reason,
                                   int64_t now)
{
    struct nb_db_val p[4] = {NB_DB_S(id), NB_DB_S(state),
                             NB_DB_S(reason && *reason ? reason : NULL),
                             NB_DB_I(now)};
    return update_one(c, "UPDATE rollouts SET state = ?2, pause_reason = ?3, "
                      "updated_at = ?4 WHERE id = ?1", p, 4);
}

nb_err srv_store_rollout_set_step(struct nb_db_conn *c, const char *id,
                                  int64_t step, int64_t started, int64_t now)
{
    struct nb_db_val p[4] = {NB_DB_S(id), NB_DB_I(step), NB_DB_I(started),
                             NB_DB_I(now)};
    return update_one(c, "UPDATE rollouts SET step = ?2, step_started_at = "
                      "?3, updated_at = ?4 WHERE id = ?1", p, 4);
}

/* ----------------------------------------------------------------- counts */

#define FINAL "('confirmed', 'failed', 'reverted')"
#define COUNT_COLS                                                        \
    "COUNT(*), "                                                          \
    "COUNT(CASE WHEN state = 'offered' THEN 1 END), "                     \
    "COUNT(CASE WHEN state = 'downloading' THEN 1 END), "                 \
    "COUNT(CASE WHEN state = 'verified' THEN 1 END), "                    \
    "COUNT(CASE WHEN state = 'installing' THEN 1 END), "                  \
    "COUNT(CASE WHEN state = 'trial' THEN 1 END), "                       \
    "COUNT(CASE WHEN state = 'confirmed' THEN 1 END), "                   \
    "COUNT(CASE WHEN state = 'failed' THEN 1 END), "                      \
    "COUNT(CASE WHEN state = 'reverted' THEN 1 END), "                    \
    "COUNT(CASE WHEN state NOT IN " FINAL " AND updated_at < ?2 THEN 1 END)"

static int counts_row(void *arg, const struct nb_db_row *row)
{
    struct srv_rollout_counts *o = arg;
    o->total = nb_db_int(row, 0);
    o->offered = nb_db_int(row, 1);
    o->downloading = nb_db_int(row, 2);
    o->verified = nb_db_int(row, 3);
    o->installing = nb_db_int(row, 4);
    o->trial = nb_db_int(row, 5);
    o->confirmed = nb_db_int(row, 6);
    o->failed = nb_db_int(row, 7);
    o->reverted = nb_db_int(row, 8);
    o->silent = nb_db_int(row, 9);
    return 1;
}

nb_err srv_store_rollout_counts(struct nb_db_conn *c, const char *id,
                                int64_t now, int64_t silent_s,
                                struct srv_rollout_counts *out)
{
    struct nb_db_val p[2] = {NB_DB_S(id), NB_DB_I(now - silent_s)};
    memset(out, 0, sizeof *out);
    return nb_db_exec(c, "SELECT " COUNT_COLS " FROM device_rollouts WHERE "
                      "rollout_id = ?1", p, 2, counts_row, out, NULL);
}

static uint32_t clamp_u32(int64_t v)
{
    return v < 0 ? 0 : v > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

nb_err srv_store_rollout_step_counts(struct nb_db_conn *c, const char *id,
                                     int64_t step, int64_t now,
                                     int64_t silent_s,
                                     struct nb_ro_counts *out)
{
    struct srv_rollout_counts k;
    struct nb_db_val p[3] = {NB_DB_S(id), NB_DB_I(now - silent_s),
                             NB_DB_I(step)};
    nb_err err;
    memset(&k, 0, sizeof k);
    err = nb_db_exec(c, "SELECT " COUNT_COLS " FROM device_rollouts WHERE "
                     "rollout_id = ?1 AND step = ?3", p, 3, counts_row, &k,
                     NULL);
    out->attempted = clamp_u32(k.total);
    out->failed = clamp_u32(k.failed);
    out->reverted = clamp_u32(k.reverted);
    out->silent = clamp_u32(k.silent);
    return err;
}

/* --------------------------------------------------------------- refresh */

static nb_err parse_policy(const char *text, struct nb_ro_policy *p)
{
    json_error_t je;
    char msg[160];
    json_t *j = json_loads(text, 0, &je);
    nb_err err;
    if (!j)
        return NB_ERR_CORRUPT;
    err = nb_ro_policy_parse(j, p, msg, sizeof msg);
    json_decref(j);
    return err ? NB_ERR_CORRUPT : NB_OK;
}

/* 1 when some device of the rollout is not final: an index probe on
 * (rollout_id, state) for each open state, never a scan. */
static int open_row(void *arg, const struct nb_db_row *row)
{
    (void)row;
    *(int *)arg = 1;
    return 1;
}

static nb_err any_open(struct nb_db_conn *c, const char *id, int *open)
{
    struct nb_db_val p[1] = {NB_DB_S(id)};
    *open = 0;
    return nb_db_exec(c, "SELECT 1 FROM device_rollouts WHERE rollout_id = "
                      "?1 AND state IN ('offered', 'downloading', 'verified', "
                      "'installing', 'trial') LIMIT 1", p, 1, open_row, open,
                      NULL);
}

static nb_err any_row(struct nb_db_conn *c, const char *id, int *some)
{
    struct nb_db_val p[1] = {NB_DB_S(id)};
    *some = 0;
    return nb_db_exec(c, "SELECT 1 FROM device_rollouts WHERE rollout_id = "
                      "?1 LIMIT 1", p, 1, open_row, some, NULL);
}

nb_err srv_store_rollout_refresh(struct nb_db_conn *c, const char *id,
                                 int64_t now, unsigned what, int *changed,
                                 struct srv_rollout *out)
{
    struct srv_rollout *r = malloc(sizeof *r);
    struct nb_ro_policy *pol = malloc(sizeof *pol);
    int64_t started;
    unsigned step;
    int did = 0;
    nb_err err = (!r || !pol) ? NB_ERR_NOMEM : NB_OK;

    if (!err)
        err = srv_store_rollout_get(c, id, r);
    if (err)
        goto out;
    if (strcmp(r->state, SRV_RO_RUNNING) && strcmp(r->state, SRV_RO_COMPLETED))
        goto out; /* paused and aborted rollouts wait for the operator */
    if (parse_policy(r->policy, pol) != NB_OK)
        goto out; /* stored by us after parsing: cannot happen; no change */

    /* Judge before advancing: once the step moves on, its failures would
     * no longer be counted. The previous step is judged too, so failures
     * of devices that were still updating when their step ended (late
     * reverts, devices going silent) still stop the rollout. */
    if ((what & SRV_RF_PAUSE) && strcmp(r->state, SRV_RO_RUNNING) == 0) {
        int64_t judged;
        for (judged = r->step; judged >= 0 && judged >= r->step - 1;
             judged--) {
            struct nb_ro_counts sc;
            char reason[SRV_ST_TEXT];
            err = srv_store_rollout_step_counts(c, id, judged, now,
                                                pol->silent_s, &sc);
            if (err)
                goto out;
            if (!nb_ro_should_pause(pol, &sc))
                continue;
            nb_ro_pause_reason(pol, &sc, reason, sizeof reason);
            err = srv_store_rollout_set_state(c, id, SRV_RO_PAUSED, reason,
                                              now);
            if (!err) {
                snprintf(r->state, sizeof r->state, "%s", SRV_RO_PAUSED);
                snprintf(r->pause_reason, sizeof r->pause_reason, "%s",
                         reason);
                did = 1;
            }
            goto out;
        }
    }
    step = nb_ro_advance(pol, (unsigned)(r->step < 0 ? 0 : r->step),
                         r->step_started_at, now, &started);
    if ((what & SRV_RF_STEP) && (int64_t)step != r->step) {
        err = srv_store_rollout_set_step(c, id, step, started, now);
        if (err)
            goto out;
        r->step = step;
        r->step_started_at = started;
        did = 1;
    }
    /* Completed: the last step is reached and every device offered the
     * rollout is final. A device offered later makes it running again. */
    if (what & SRV_RF_COMPLETE) {
        int open = 0, some = 0;
        int last = r->step + 1 >= (int64_t)pol->n_steps;
        const char *want;
        err = any_open(c, id, &open);
        if (!err)
            err = any_row(c, id, &some);
        if (err)
            goto out;
        want = (last && some && !open) ? SRV_RO_COMPLETED : SRV_RO_RUNNING;
        if (strcmp(want, r->state) != 0) {
            err = srv_store_rollout_set_state(c, id, want, NULL, now);
            if (!err) {
                snprintf(r->state, sizeof r->state, "%s", want);
                r->pause_reason[0] = '\0';
                did = 1;
            }
        }
    }
out:
    if (!err && out && r)
        memcpy(out, r, sizeof *out);
    if (changed)
        *changed = did;
    free(r);
    free(pol);
    return err;
}

/* ------------------------------------------------------- device_rollouts */

int srv_devro_final(const char *state)
{
    return strcmp(state, "confirmed") == 0 || strcmp(state, "failed") == 0 ||
           strcmp(state, "reverted") == 0;
}

#define DR_COLS "device_id, rollout_id, state, step, offered_at, updated_at, " \
                "bytes, total, reason, detail, health_nonce, healthy"

static int devro_row(void *arg, const struct nb_db_row *row)
{
    struct st_fill *f = arg;
    struct srv_devro *d = st_next(f);
    if (!d)
        return 1;
    st_text(f, row, 0, d->device_id, sizeof d->device_id);
    st_text(f, row, 1, d->rollout_id, sizeof d->rollout_id);
    st_text(f, row, 2, d->state, sizeof d->state);
    d->step = nb_db_int(row, 3);
    d->offered_at = nb_db_int(row, 4);
    d->updated_at = nb_db_int(row, 5);
    d->bytes = nb_db_int(row, 6);
    d->total = nb_db_int(row, 7);
    st_text(f, row, 8, d->reason, sizeof d->reason);
    st_text(f, row, 9, d->detail, sizeof d->detail);
    st_text(f, row, 10, d->health_nonce, sizeof d->health_nonce);
    d->healthy = (int)nb_db_int(row, 11);
    return 0;
}

static void devro_params(const struct srv_devro *d, struct nb_db_val p[12])
{
    p[0] = NB_DB_S(d->device_id);
    p[1] = NB_DB_S(d->rollout_id);
    p[2] = NB_DB_S(d->state);
    p[3] = NB_DB_I(d->step);
    p[4] = NB_DB_I(d->offered_at);
    p[5] = NB_DB_I(d->updated_at);
    p[6] = NB_DB_I(d->bytes);
    p[7] = NB_DB_I(d->total);
    p[8] = NB_DB_S(d->reason);
    p[9] = NB_DB_S(d->detail);
    p[10] = NB_DB_S(d->health_nonce);
    p[11] = NB_DB_I(d->healthy);
}

#define DR_VALUES "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"

nb_err srv_store_devro_upsert(struct nb_db_conn *c, const struct srv_devro *d)
{
    struct nb_db_val p[12];
    devro_params(d, p);
    return nb_db_exec(c, "INSERT INTO device_rollouts (" DR_COLS ") VALUES "
                      DR_VALUES " ON CONFLICT (device_id, rollout_id) DO "
                      "UPDATE SET state = excluded.state, step = excluded.step, "
                      "offered_at = excluded.offered_at, updated_at = "
                      "excluded.updated_at, bytes = excluded.bytes, total = "
                      "excluded.total, reason = excluded.reason, detail = "
                      "excluded.detail, health_nonce = excluded.health_nonce, "
                      "healthy = excluded.healthy", p, 12, NULL, NULL, NULL);
}

nb_err srv_store_devro_offer(struct nb_db_conn *c, const struct srv_devro *d,
                             int *created)
{
    struct nb_db_val p[12];
    int64_t n = 0;
    nb_err err;
    devro_params(d, p);
    err = nb_db_exec(c, "INSERT INTO device_rollouts (" DR_COLS ") VALUES "
                     DR_VALUES " ON CONFLICT (device_id, rollout_id) DO "
                     "NOTHING", p, 12, NULL, NULL, &n);
    if (created)
        *created = !err && n > 0;
    return err;
}

nb_err srv_store_devro_get(struct nb_db_conn *c, const char *device_id,
                           const char *rollout_id, struct srv_devro *out)
{
    struct st_fill f = {out, sizeof *out, 0, 1, 0, 0, 0};
    struct nb_db_val p[2] = {NB_DB_S(device_id), NB_DB_S(rollout_id)};
    nb_err err = nb_db_exec(c, "SELECT " DR_COLS " FROM device_rollouts "
                            "WHERE device_id = ?1 AND rollout_id = ?2", p, 2,
                            devro_row, &f, NULL);
    if (!err && f.n == 0)
        return NB_ERR_NOENT;
    return st_fill_err(&f, err);
}

nb_err srv_store_devro_of_device(struct nb_db_conn *c, const char *device_id,
                                 struct srv_devro *out, unsigned cap,
                                 unsigned *n)
{
    struct st_fill f = {out, sizeof *out, 0, cap, 0, 0, 0};
    struct nb_db_val p[2] = {NB_DB_S(device_id), NB_DB_I(cap)};
    nb_err err = nb_db_exec(c, "SELECT " DR_COLS " FROM device_rollouts "
                            "WHERE device_id = ?1 ORDER BY offered_at DESC, "
                            "rollout_id DESC LIMIT ?2", p, 2, devro_row, &f,
                            NULL);
    *n = f.n;
    return st_fill_err(&f, err);
}

nb_err srv_store_devro_of_rollout(struct nb_db_conn *c, const char *rollout_id,
                                  const char *after, unsigned limit,
                                  struct srv_devro **out, unsigned *n,
                                  int *more)
{
    struct st_fill f = {NULL, sizeof(struct srv_devro), 0, 0, 1, 0, 0};
    struct nb_db_val p[3];
    nb_err err;
    limit = st_limit(limit);
    p[0] = NB_DB_S(rollout_id);
    p[1] = NB_DB_S(after ? after : "");
    p[2] = NB_DB_I(limit + 1);
    *out = NULL;
    *n = 0;
    *more = 0;
    err = nb_db_exec(c, "SELECT " DR_COLS " FROM device_rollouts WHERE "
                     "rollout_id = ?1 AND device_id > ?2 ORDER BY device_id "
                     "LIMIT ?3", p, 3, devro_row, &f, NULL);
    err = st_fill_err(&f, err);
    if (err) {
        free(f.items);
        return err;
    }
    if (f.n > limit) {
        f.n = limit;
        *more = 1;
    }
    *out = f.items;
    *n = f.n;
    return NB_OK;
}

static int one_int(void *arg, const struct nb_db_row *row)
{
    *(int64_t *)arg = nb_db_int(row, 0);
    return 1;
}

nb_err srv_store_devro_count(struct nb_db_conn *c, int64_t *n)
{
    *n = 0;
    return nb_db_exec(c, "SELECT COUNT(*) FROM device_rollouts", NULL, 0,
                      one_int, n, NULL);
}
