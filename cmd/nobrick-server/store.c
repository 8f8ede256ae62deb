/* store.c - devices, packages, events and counters over db.h; see store.h
 * (rollouts and device_rollouts are in store_rollouts.c). Every value is
 * a ?N parameter: no caller-supplied text ever becomes SQL. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "store_impl.h"

/* -------------------------------------------------------------- helpers */

void st_text(struct st_fill *f, const struct nb_db_row *row, int col,
             char *dst, size_t cap)
{
    const char *s = nb_db_text(row, col);
    size_t n = s ? strlen(s) : 0;
    if (n >= cap) {
        f->nospc = 1;
        n = cap - 1;
    }
    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
}

void *st_next(struct st_fill *f)
{
    char *p;
    if (f->n == f->cap) {
        unsigned cap = f->cap ? f->cap * 2 : 16;
        if (!f->grow) {
            return NULL;
        }
        p = realloc(f->items, (size_t)cap * f->size);
        if (!p) {
            f->nomem = 1;
            return NULL;
        }
        f->items = p;
        f->cap = cap;
    }
    p = (char *)f->items + (size_t)f->n++ * f->size;
    memset(p, 0, f->size);
    return p;
}

nb_err st_fill_err(const struct st_fill *f, nb_err err)
{
    if (err)
        return err;
    if (f->nomem)
        return NB_ERR_NOMEM;
    return f->nospc ? NB_ERR_NOSPC : NB_OK;
}

int st_list_parse(const char *text, char (*out)[SRV_ST_ID], unsigned cap,
                  unsigned *n)
{
    json_error_t je;
    json_t *j, *v;
    size_t i;
    *n = 0;
    if (!text || !*text)
        return 0;
    j = json_loads(text, 0, &je);
    if (!json_is_array(j) || json_array_size(j) > cap) {
        json_decref(j);
        return -1;
    }
    json_array_foreach(j, i, v) {
        if (!json_is_string(v) || json_string_length(v) >= SRV_ST_ID) {
            json_decref(j);
            return -1;
        }
        memcpy(out[*n], json_string_value(v), json_string_length(v) + 1);
        (*n)++;
    }
    json_decref(j);
    return 0;
}

char *st_list_json(const char *const *items, unsigned n)
{
    json_t *a = json_array();
    char *s;
    for (unsigned i = 0; a && i < n; i++)
        json_array_append_new(a, json_string(items[i]));
    s = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    return s;
}

char *st_list_json2(const char (*items)[SRV_ST_ID], unsigned n)
{
    const char *p[SRV_ST_MAX_TAGS];
    if (n > SRV_ST_MAX_TAGS)
        n = SRV_ST_MAX_TAGS;
    for (unsigned i = 0; i < n; i++)
        p[i] = items[i];
    return st_list_json(p, n);
}

unsigned st_limit(unsigned limit)
{
    if (limit == 0)
        return 100;
    return limit > SRV_ST_LIST_MAX ? SRV_ST_LIST_MAX : limit;
}

static int one_int(void *arg, const struct nb_db_row *row)
{
    *(int64_t *)arg = nb_db_int(row, 0);
    return 1;
}

nb_err srv_store_next(struct nb_db_conn *c, const char *name, int64_t *out)
{
    struct nb_db_val p[1] = {NB_DB_S(name)};
    *out = 0;
    nb_err err = nb_db_exec(c, "INSERT INTO counters (name, value) VALUES "
                            "(?1, 1) ON CONFLICT (name) DO UPDATE SET value "
                            "= counters.value + 1 RETURNING value",
                            p, 1, one_int, out, NULL);
    if (!err && *out <= 0)
        err = NB_ERR_IO;
    return err;
}

static nb_err count(struct nb_db_conn *c, const char *sql, int64_t *n)
{
    *n = 0;
    return nb_db_exec(c, sql, NULL, 0, one_int, n, NULL);
}

/* -------------------------------------------------------------- devices */

#define DEV_COLS "id, token_sha256, enrol_pending, hw_rev, grp, tags, " \
                 "version, security_version, slots, created_at, last_seen"

static int device_row(void *arg, const struct nb_db_row *row)
{
    struct st_fill *f = arg;
    struct srv_device *d = st_next(f);
    char tags[4096];
    if (!d)
        return 1;
    st_text(f, row, 0, d->id, sizeof d->id);
    st_text(f, row, 1, d->token_sha256, sizeof d->token_sha256);
    d->enrol_pending = nb_db_int(row, 2) != 0;
    st_text(f, row, 3, d->hw_rev, sizeof d->hw_rev);
    st_text(f, row, 4, d->group, sizeof d->group);
    st_text(f, row, 5, tags, sizeof tags);
    if (st_list_parse(tags, d->tags, SRV_ST_MAX_TAGS, &d->n_tags))
        f->nospc = 1;
    st_text(f, row, 6, d->version, sizeof d->version);
    d->security_version = nb_db_int(row, 7);
    st_text(f, row, 8, d->slots, sizeof d->slots);
    d->created_at = nb_db_int(row, 9);
    d->last_seen = nb_db_int(row, 10);
    return 0;
}

/* Rewrite device_tags from a list (after deleting the old rows). */
static nb_err put_tags(struct nb_db_conn *c, const char *id,
                       const char *const *tags, unsigned n)
{
    struct nb_db_val p[2] = {NB_DB_S(id), NB_DB_NUL};
    nb_err err = nb_db_exec(c, "DELETE FROM device_tags WHERE device_id = ?1",
                            p, 1, NULL, NULL, NULL);
    for (unsigned i = 0; !err && i < n; i++) {
        p[1] = NB_DB_S(tags[i]);
        err = nb_db_exec(c, "INSERT INTO device_tags (device_id, tag) VALUES "
                         "(?1, ?2) ON CONFLICT (device_id, tag) DO NOTHING",
                         p, 2, NULL, NULL, NULL);
    }
    return err;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted, without duplicates, into out (pointers into tags). */
static unsigned unique_sorted(const char *const *tags, unsigned n,
                              const char **out)
{
    unsigned m = 0;
    if (n > SRV_ST_MAX_TAGS)
        n = SRV_ST_MAX_TAGS;
    memcpy(out, tags, n * sizeof *out);
    qsort(out, n, sizeof *out, cmp_str);
    for (unsigned i = 0; i < n; i++)
        if (m == 0 || strcmp(out[m - 1], out[i]) != 0)
            out[m++] = out[i];
    return m;
}

nb_err srv_store_device_create(struct nb_db_conn *c,
                               const struct srv_device *d)
{
    const char *tags[SRV_ST_MAX_TAGS], *in[SRV_ST_MAX_TAGS];
    unsigned n_in = d->n_tags > SRV_ST_MAX_TAGS ? SRV_ST_MAX_TAGS : d->n_tags;
    for (unsigned i = 0; i < n_in; i++)
        in[i] = d->tags[i];
    unsigned n = unique_sorted(in, n_in, tags);
    char *tj = st_list_json(tags, n);
    if (!tj)
        return NB_ERR_NOMEM;
    struct nb_db_val p[11] = {
        NB_DB_S(d->id), NB_DB_S(d->token_sha256[0] ? d->token_sha256 : NULL),
        NB_DB_I(d->enrol_pending), NB_DB_S(d->hw_rev),
        NB_DB_S(d->group[0] ? d->group : NULL), NB_DB_S(tj),
        NB_DB_S(d->version), NB_DB_I(d->security_version), NB_DB_S(d->slots),
        NB_DB_I(d->created_at), NB_DB_I(d->last_seen)};
    nb_err err = nb_db_exec(c, "INSERT INTO devices (" DEV_COLS ") VALUES "
                            "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                            p, 11, NULL, NULL, NULL);
    free(tj);
    if (!err)
        err = put_tags(c, d->id, tags, n);
    return err;
}

static nb_err device_one(struct nb_db_conn *c, const char *sql,
                         const char *key, struct srv_device *out)
{
    struct st_fill f = {out, sizeof *out, 0, 1, 0, 0, 0};
    struct nb_db_val p[1] = {NB_DB_S(key)};
    nb_err err = nb_db_exec(c, sql, p, 1, device_row, &f, NULL);
    if (!err && f.n == 0)
        return NB_ERR_NOENT;
    return st_fill_err(&f, err);
}

nb_err srv_store_device_get(struct nb_db_conn *c, const char *id,
                            struct srv_device *out)
{
    return device_one(c, "SELECT " DEV_COLS " FROM devices WHERE id = ?1",
                      id, out);
}

nb_err srv_store_device_by_token(struct nb_db_conn *c,
                                 const char *token_sha256,
                                 struct srv_device *out)
{
    return device_one(c, "SELECT " DEV_COLS " FROM devices WHERE "
                      "token_sha256 = ?1", token_sha256, out);
}

nb_err srv_store_device_list(struct nb_db_conn *c,
                             const struct srv_device_filter *f,
                             struct srv_device **out, unsigned *n, int *more)
{
    /* The SQL is assembled from constant fragments only; the values are
     * parameters. */
    char sql[1024];
    struct nb_db_val p[6];
    unsigned np = 0, limit = st_limit(f->limit);
    size_t len;
    struct st_fill fill = {NULL, sizeof(struct srv_device), 0, 0, 1, 0, 0};
    nb_err err;
    len = (size_t)snprintf(sql, sizeof sql, "SELECT " DEV_COLS
                           " FROM devices d WHERE 1 = 1");
#define ADD(cond, frag, val)                                                 \
    if (cond) {                                                              \
        p[np] = NB_DB_S(val);                                                \
        np++;                                                                \
        len += (size_t)snprintf(sql + len, sizeof sql - len, frag, np);      \
    }
    ADD(f->tag, " AND EXISTS (SELECT 1 FROM device_tags t WHERE "
        "t.device_id = d.id AND t.tag = ?%u)", f->tag)
    ADD(f->group, " AND d.grp = ?%u", f->group)
    ADD(f->hw_rev, " AND d.hw_rev = ?%u", f->hw_rev)
    ADD(f->version, " AND d.version = ?%u", f->version)
    ADD(f->after, " AND d.id > ?%u", f->after)
#undef ADD
    p[np++] = NB_DB_I(limit + 1);
    snprintf(sql + len, sizeof sql - len, " ORDER BY d.id LIMIT ?%u", np);
    *out = NULL;
    *n = 0;
    *more = 0;
    err = nb_db_exec(c, sql, p, np, device_row, &fill, NULL);
    err = st_fill_err(&fill, err);
    if (err) {
        free(fill.items);
        return err;
    }
    if (fill.n > limit) {
        fill.n = limit;
        *more = 1;
    }
    *out = fill.items;
    *n = fill.n;
    return NB_OK;
}

nb_err srv_store_device_set_tags(struct nb_db_conn *c, const char *id,
                                 const char *const *tags, unsigned n_tags)
{
    const char *sorted[SRV_ST_MAX_TAGS];
    unsigned n = unique_sorted(tags, n_tags, sorted);
    char *tj = st_list_json(sorted, n);
    int64_t changed = 0;
    nb_err err;
    if (!tj)
        return NB_ERR_NOMEM;
    struct nb_db_val p[2] = {NB_DB_S(id), NB_DB_S(tj)};
    err = nb_db_exec(c, "UPDATE devices SET tags = ?2 WHERE id = ?1", p, 2,
                     NULL, NULL, &changed);
    free(tj);
    if (!err && changed == 0)
        return NB_ERR_NOENT;
    if (!err)
        err = put_tags(c, id, sorted, n);
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

nb_err srv_store_device_set_group(struct nb_db_conn *c, const char *id,
                                  const char *group)
{
    struct nb_db_val p[2] = {NB_DB_S(id),
                             NB_DB_S(group && *group ? group : NULL)};
    return update_one(c, "UPDATE devices SET grp = ?2 WHERE id = ?1", p, 2);
}

nb_err srv_store_device_set_token(struct nb_db_conn *c, const char *id,
                                  const char *token_sha256, int enrol_pending)
{
    struct nb_db_val p[3] = {NB_DB_S(id), NB_DB_S(token_sha256),
                             NB_DB_I(enrol_pending != 0)};
    return update_one(c, "UPDATE devices SET token_sha256 = ?2, "
                      "enrol_pending = ?3 WHERE id = ?1", p, 3);
}

nb_err srv_store_device_seen(struct nb_db_conn *c, const char *id,
                             const char *hw_rev, const char *version,
                             int64_t security_version, const char *slots,
                             int64_t now)
{
    struct nb_db_val p[6] = {NB_DB_S(id), NB_DB_S(hw_rev), NB_DB_S(version),
                             NB_DB_I(security_version),
                             NB_DB_S(slots ? slots : ""), NB_DB_I(now)};
    return update_one(c, "UPDATE devices SET hw_rev = ?2, version = ?3, "
                      "security_version = ?4, slots = ?5, last_seen = ?6 "
                      "WHERE id = ?1", p, 6);
}

int srv_device_seen_due(const struct srv_device *d, const char *hw_rev,
                        const char *version, int64_t security_version,
                        const char *slots, int64_t now)
{
    return strcmp(d->hw_rev, hw_rev) || strcmp(d->version, version) ||
           d->security_version != security_version ||
           strcmp(d->slots, slots ? slots : "") || d->last_seen > now ||
           now - d->last_seen >= SRV_SEEN_INTERVAL;
}

nb_err srv_store_device_count(struct nb_db_conn *c, int64_t *n)
{
    return count(c, "SELECT COUNT(*) FROM devices", n);
}

/* ------------------------------------------------------------- packages */

#define PKG_COLS "id, version, security_version, channel, vendor, class, " \
                 "hw_revs, size, payload_offset, payload_size, sha256, "   \
                 "file, manifest_file, created_at"

static int package_row(void *arg, const struct nb_db_row *row)
{
    struct st_fill *f = arg;
    struct srv_package *p = st_next(f);
    char hw[4096];
    if (!p)
        return 1;
    st_text(f, row, 0, p->id, sizeof p->id);
    st_text(f, row, 1, p->version, sizeof p->version);
    p->security_version = nb_db_int(row, 2);
    st_text(f, row, 3, p->channel, sizeof p->channel);
    st_text(f, row, 4, p->vendor, sizeof p->vendor);
    st_text(f, row, 5, p->class_id, sizeof p->class_id);
    st_text(f, row, 6, hw, sizeof hw);
    if (st_list_parse(hw, p->hw_revs, SRV_ST_MAX_HW, &p->n_hw_revs))
        f->nospc = 1;
    p->size = nb_db_int(row, 7);
    p->payload_offset = nb_db_int(row, 8);
    p->payload_size = nb_db_int(row, 9);
    st_text(f, row, 10, p->sha256, sizeof p->sha256);
    st_text(f, row, 11, p->file, sizeof p->file);
    st_text(f, row, 12, p->manifest_file, sizeof p->manifest_file);
    p->created_at = nb_db_int(row, 13);
    return 0;
}

nb_err srv_store_package_insert(struct nb_db_conn *c,
                                const struct srv_package *pk)
{
    char *hw = st_list_json2(pk->hw_revs, pk->n_hw_revs);
    nb_err err;
    if (!hw)
        return NB_ERR_NOMEM;
    struct nb_db_val p[14] = {
        NB_DB_S(pk->id), NB_DB_S(pk->version), NB_DB_I(pk->security_version),
        NB_DB_S(pk->channel), NB_DB_S(pk->vendor), NB_DB_S(pk->class_id),
        NB_DB_S(hw), NB_DB_I(pk->size), NB_DB_I(pk->payload_offset),
        NB_DB_I(pk->payload_size), NB_DB_S(pk->sha256), NB_DB_S(pk->file),
        NB_DB_S(pk->manifest_file), NB_DB_I(pk->created_at)};
    err = nb_db_exec(c, "INSERT INTO packages (" PKG_COLS ") VALUES (?1, ?2, "
                     "?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                     p, 14, NULL, NULL, NULL);
    free(hw);
    return err;
}

static nb_err package_one(struct nb_db_conn *c, const char *sql,
                          const char *key, struct srv_package *out)
{
    struct st_fill f = {out, sizeof *out, 0, 1, 0, 0, 0};
    struct nb_db_val p[1] = {NB_DB_S(key)};
    nb_err err = nb_db_exec(c, sql, p, 1, package_row, &f, NULL);
    if (!err && f.n == 0)
        return NB_ERR_NOENT;
    return st_fill_err(&f, err);
}

nb_err srv_store_package_get(struct nb_db_conn *c, const char *id,
                             struct srv_package *out)
{
    return package_one(c, "SELECT " PKG_COLS " FROM packages WHERE id = ?1",
                       id, out);
}

nb_err srv_store_package_by_sha256(struct nb_db_conn *c, const char *sha256,
                                   struct srv_package *out)
{
    return package_one(c, "SELECT " PKG_COLS " FROM packages WHERE "
                       "sha256 = ?1", sha256, out);
}

nb_err srv_store_package_list(struct nb_db_conn *c, const char *after,
                              unsigned limit, struct srv_package **out,
                              unsigned *n, int *more)
{
    struct st_fill f = {NULL, sizeof(struct srv_package), 0, 0, 1, 0, 0};
    struct nb_db_val p[2] = {NB_DB_S(after ? after : ""), NB_DB_I(0)};
    nb_err err;
    limit = st_limit(limit);
    p[1] = NB_DB_I(limit + 1);
    *out = NULL;
    *n = 0;
    *more = 0;
    err = nb_db_exec(c, "SELECT " PKG_COLS " FROM packages WHERE id > ?1 "
                     "ORDER BY id LIMIT ?2", p, 2, package_row, &f, NULL);
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

struct max_svn {
    int64_t svn;
    int found;
};

static int max_svn_row(void *arg, const struct nb_db_row *row)
{
    struct max_svn *m = arg;
    m->found = !nb_db_is_null(row, 0);
    m->svn = m->found ? nb_db_int(row, 0) : 0;
    return 1;
}

nb_err srv_store_package_max_svn(struct nb_db_conn *c, const char *channel,
                                 int64_t *svn, int *found)
{
    struct max_svn m = {0, 0};
    struct nb_db_val p[1] = {NB_DB_S(channel)};
    nb_err err = nb_db_exec(c, "SELECT MAX(security_version) FROM packages "
                            "WHERE channel = ?1", p, 1, max_svn_row, &m, NULL);
    *svn = m.svn;
    *found = m.found;
    return err;
}

#define FILE_COLS "package_id, name, file, size, sha256, sha1, md5, created_at"

static int file_row(void *arg, const struct nb_db_row *row)
{
    struct st_fill *f = arg;
    struct srv_package_file *pf = st_next(f);
    if (!pf)
        return 1;
    st_text(f, row, 0, pf->package_id, sizeof pf->package_id);
    st_text(f, row, 1, pf->name, sizeof pf->name);
    st_text(f, row, 2, pf->file, sizeof pf->file);
    pf->size = nb_db_int(row, 3);
    st_text(f, row, 4, pf->sha256, sizeof pf->sha256);
    st_text(f, row, 5, pf->sha1, sizeof pf->sha1);
    st_text(f, row, 6, pf->md5, sizeof pf->md5);
    pf->created_at = nb_db_int(row, 7);
    return 0;
}

nb_err srv_store_package_file_put(struct nb_db_conn *c,
                                  const struct srv_package_file *pf)
{
    struct nb_db_val p[8] = {
        NB_DB_S(pf->package_id), NB_DB_S(pf->name), NB_DB_S(pf->file),
        NB_DB_I(pf->size), NB_DB_S(pf->sha256), NB_DB_S(pf->sha1),
        NB_DB_S(pf->md5), NB_DB_I(pf->created_at)};
    return nb_db_exec(c, "INSERT INTO package_files (" FILE_COLS ") VALUES "
                      "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT "
                      "(package_id, name) DO UPDATE SET file = excluded.file, "
                      "size = excluded.size, sha256 = excluded.sha256, "
                      "sha1 = excluded.sha1, md5 = excluded.md5, "
                      "created_at = excluded.created_at", p, 8, NULL, NULL,
                      NULL);
}

nb_err srv_store_package_files(struct nb_db_conn *c, const char *package_id,
                               struct srv_package_file *out, unsigned cap,
                               unsigned *n)
{
    struct st_fill f = {out, sizeof *out, 0, cap, 0, 0, 0};
    struct nb_db_val p[1] = {NB_DB_S(package_id)};
    nb_err err = nb_db_exec(c, "SELECT " FILE_COLS " FROM package_files "
                            "WHERE package_id = ?1 ORDER BY name", p, 1,
                            file_row, &f, NULL);
    *n = f.n;
    return st_fill_err(&f, err);
}

/* --------------------------------------------------------------- events */

nb_err srv_store_event_append(struct nb_db_conn *c, int64_t at,
                              const char *device_id, const char *rollout_id,
                              const char *kind, const char *body)
{
    struct nb_db_val p[5] = {
        NB_DB_I(at), NB_DB_S(device_id),
        NB_DB_S(rollout_id && *rollout_id ? rollout_id : NULL),
        NB_DB_S(kind), NB_DB_S(body ? body : "{}")};
    return nb_db_exec(c, "INSERT INTO events (at, device_id, rollout_id, "
                      "kind, body) VALUES (?1, ?2, ?3, ?4, ?5)", p, 5, NULL,
                      NULL, NULL);
}

static int event_row(void *arg, const struct nb_db_row *row)
{
    struct st_fill *f = arg;
    struct srv_event *e = st_next(f);
    int nospc = f->nospc;
    if (!e)
        return 1;
    e->id = nb_db_int(row, 0);
    e->at = nb_db_int(row, 1);
    st_text(f, row, 2, e->device_id, sizeof e->device_id);
    st_text(f, row, 3, e->rollout_id, sizeof e->rollout_id);
    st_text(f, row, 4, e->kind, sizeof e->kind);
    st_text(f, row, 5, e->body, sizeof e->body);
    f->nospc = nospc; /* a long body is cut on purpose (store.h) */
    return 0;
}

nb_err srv_store_events_of_device(struct nb_db_conn *c, const char *device_id,
                                  const char *kind, struct srv_event *out,
                                  unsigned cap, unsigned *n)
{
    struct st_fill f = {out, sizeof *out, 0, cap, 0, 0, 0};
    struct nb_db_val p[3] = {NB_DB_S(device_id), NB_DB_I(cap),
                             NB_DB_S(kind)};
    nb_err err;
    if (kind)
        err = nb_db_exec(c, "SELECT id, at, device_id, rollout_id, kind, body "
                         "FROM events WHERE device_id = ?1 AND kind = ?3 "
                         "ORDER BY id DESC LIMIT ?2", p, 3, event_row, &f,
                         NULL);
    else
        err = nb_db_exec(c, "SELECT id, at, device_id, rollout_id, kind, body "
                         "FROM events WHERE device_id = ?1 "
                         "ORDER BY id DESC LIMIT ?2", p, 2, event_row, &f,
                         NULL);
    *n = f.n;
    return st_fill_err(&f, err);
}

nb_err srv_store_event_count(struct nb_db_conn *c, int64_t *n)
{
    return count(c, "SELECT COUNT(*) FROM events", n);
}
