/* rollout.c - the rollout rules (rollout.h): windows in local time, step
 * advance, the automatic pause, the target (parsing, canonical JSON,
 * matching) and cohort reach; the policy's JSON is in rollout_policy.c.
 * Pure functions: no clock, no globals, no allocation except the jansson
 * values they return.
 */
#include "rollout.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "nb_cohort.h"
#include "rollout_priv.h"

#define DAY_S 86400
#define WEEK_S (7 * DAY_S)

/* ------------------------------------------------------------ errors */

nb_err nb_ro_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return NB_ERR_INVAL;
}

/* Refuse any key of object `o` not in the NULL-terminated list. */
nb_err nb_ro_check_keys(const json_t *o, const char *path,
                        const char *const *known, char *err, size_t errlen)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)o, key, v) {
        const char *const *k;
        (void)v;
        for (k = known; *k; k++)
            if (strcmp(key, *k) == 0)
                break;
        if (!*k)
            return nb_ro_fail(err, errlen, "%s: unknown key \"%.64s\"", path,
                              key);
    }
    return NB_OK;
}

/* An integer 0..max. */
nb_err nb_ro_parse_uint(const json_t *v, const char *path, uint32_t max,
                        uint32_t *out, char *err, size_t errlen)
{
    json_int_t i;

    if (!json_is_integer(v))
        return nb_ro_fail(err, errlen, "%s: expected an integer", path);
    i = json_integer_value(v);
    if (i < 0)
        return nb_ro_fail(err, errlen, "%s: must not be negative", path);
    if ((uint64_t)i > max)
        return nb_ro_fail(err, errlen, "%s: at most %lu", path,
                          (unsigned long)max);
    *out = (uint32_t)i;
    return NB_OK;
}

char *nb_ro_ppm_str(uint32_t ppm, char *buf, size_t len)
{
    unsigned frac = ppm % 10000u;
    int digits = 4;

    if (frac == 0) {
        snprintf(buf, len, "%u%%", (unsigned)(ppm / 10000u));
        return buf;
    }
    while (frac % 10u == 0) {
        frac /= 10u;
        digits--;
    }
    snprintf(buf, len, "%u.%0*u%%", (unsigned)(ppm / 10000u), digits, frac);
    return buf;
}

/* Set o[key] = v, taking v's reference; 0 on success. */
static int put(json_t *o, const char *key, json_t *v)
{
    return v ? json_object_set_new(o, key, v) : -1;
}

/* ------------------------------------------------------------ target */

/* 1..64 bytes; `id_chars`: only [A-Za-z0-9._-], else printable ASCII. */
static int name_ok(const char *s, int id_chars)
{
    size_t n = strlen(s), i;

    if (n == 0 || n >= NB_RO_NAME_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (id_chars ? !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                         c == '-')
                     : (c < 0x20 || c > 0x7e))
            return 0;
    }
    return 1;
}

static nb_err parse_list(const json_t *v, const char *key, int id_chars,
                         char list[][NB_RO_NAME_MAX], unsigned *count,
                         char *err, size_t errlen)
{
    size_t i, k, n;

    if (!json_is_array(v))
        return nb_ro_fail(err, errlen, "target.%s: expected a list of strings",
                          key);
    n = json_array_size(v);
    if (n == 0)
        return nb_ro_fail(err, errlen,
                          "target.%s: empty (leave the key out to match all)",
                          key);
    if (n > NB_RO_MAX_LIST)
        return nb_ro_fail(err, errlen, "target.%s: more than %u values", key,
                          (unsigned)NB_RO_MAX_LIST);
    for (i = 0; i < n; i++) {
        json_t *x = json_array_get(v, i);
        const char *s = json_is_string(x) ? json_string_value(x) : NULL;
        if (!s || !name_ok(s, id_chars) ||
            strlen(s) != json_string_length(x))
            return nb_ro_fail(err, errlen,
                              id_chars ? "target.%s[%u]: expected 1 to 64 of "
                                         "A-Z a-z 0-9 . _ -"
                                       : "target.%s[%u]: expected 1 to 64 "
                                         "printable ASCII characters",
                              key, (unsigned)i);
        for (k = 0; k < i; k++)
            if (strcmp(list[k], s) == 0)
                return nb_ro_fail(err, errlen,
                                  "target.%s[%u]: \"%s\" given twice", key,
                                  (unsigned)i, s);
        memcpy(list[i], s, strlen(s) + 1);
    }
    *count = (unsigned)n;
    return NB_OK;
}

static nb_err parse_modulo(const json_t *v, struct nb_ro_target *t,
                           char *err, size_t errlen)
{
    static const char *const keys[] = {"n", "residues", NULL};
    json_t *n = json_object_get(v, "n"), *r = json_object_get(v, "residues");
    uint32_t mod, res;
    size_t i, k, count;
    nb_err e;

    if (!json_is_object(v))
        return nb_ro_fail(err, errlen,
                          "target.modulo: expected {\"n\", \"residues\"}");
    e = nb_ro_check_keys(v, "target.modulo", keys, err, errlen);
    if (e)
        return e;
    if (!n)
        return nb_ro_fail(err, errlen, "target.modulo.n: missing");
    e = nb_ro_parse_uint(n, "target.modulo.n", 256, &mod, err, errlen);
    if (e)
        return e;
    if (mod < 2)
        return nb_ro_fail(err, errlen, "target.modulo.n: at least 2");
    if (!r)
        return nb_ro_fail(err, errlen, "target.modulo.residues: missing");
    if (!json_is_array(r) || json_array_size(r) == 0)
        return nb_ro_fail(err, errlen,
                          "target.modulo.residues: expected a non-empty list");
    count = json_array_size(r);
    if (count > NB_RO_MAX_LIST)
        return nb_ro_fail(err, errlen,
                          "target.modulo.residues: more than %u values",
                          (unsigned)NB_RO_MAX_LIST);
    for (i = 0; i < count; i++) {
        char path[48];
        snprintf(path, sizeof(path), "target.modulo.residues[%u]",
                 (unsigned)i);
        e = nb_ro_parse_uint(json_array_get(r, i), path, mod - 1, &res, err,
                             errlen);
        if (e)
            return e;
        for (k = 0; k < i; k++)
            if (t->residues[k] == res)
                return nb_ro_fail(err, errlen, "%s: %lu given twice", path,
                                  (unsigned long)res);
        t->residues[i] = (uint8_t)res;
    }
    t->modulo = mod;
    t->n_residues = (unsigned)count;
    return NB_OK;
}

nb_err nb_ro_target_parse(const json_t *j, struct nb_ro_target *t,
                          char *err, size_t errlen)
{
    static const char *const keys[] = {"hw_revs", "tags", "groups",
                                       "modulo", "devices", NULL};
    json_t *v;
    nb_err e;

    if (err && errlen > 0)
        err[0] = '\0';
    memset(t, 0, sizeof(*t));
    if (!j || json_is_null(j))
        return NB_OK;
    if (!json_is_object(j))
        return nb_ro_fail(err, errlen, "target: expected an object");
    e = nb_ro_check_keys(j, "target", keys, err, errlen);
    if (e)
        return e;
    if ((v = json_object_get(j, "hw_revs")) != NULL &&
        (e = parse_list(v, "hw_revs", 0, t->hw_revs, &t->n_hw_revs, err,
                        errlen)) != NB_OK)
        return e;
    if ((v = json_object_get(j, "tags")) != NULL &&
        (e = parse_list(v, "tags", 1, t->tags, &t->n_tags, err, errlen)) !=
            NB_OK)
        return e;
    if ((v = json_object_get(j, "groups")) != NULL &&
        (e = parse_list(v, "groups", 1, t->groups, &t->n_groups, err,
                        errlen)) != NB_OK)
        return e;
    if ((v = json_object_get(j, "devices")) != NULL &&
        (e = parse_list(v, "devices", 1, t->devices, &t->n_devices, err,
                        errlen)) != NB_OK)
        return e;
    if ((v = json_object_get(j, "modulo")) != NULL &&
        (e = parse_modulo(v, t, err, errlen)) != NB_OK)
        return e;
    return NB_OK;
}

static int put_list(json_t *o, const char *key,
                    const char list[][NB_RO_NAME_MAX], unsigned n)
{
    json_t *a;
    unsigned i;
    int bad = 0;

    if (n == 0)
        return 0;
    a = json_array();
    for (i = 0; a && i < n; i++)
        bad |= json_array_append_new(a, json_string(list[i]));
    return put(o, key, a) | bad;
}

json_t *nb_ro_target_json(const struct nb_ro_target *t)
{
    json_t *o = json_object();
    int bad = !o;

    if (bad)
        return NULL;
    bad |= put_list(o, "hw_revs", t->hw_revs, t->n_hw_revs);
    bad |= put_list(o, "tags", t->tags, t->n_tags);
    bad |= put_list(o, "groups", t->groups, t->n_groups);
    if (t->modulo) {
        json_t *m = json_object(), *r = json_array();
        unsigned i;
        bad |= !m || !r;
        for (i = 0; r && i < t->n_residues; i++)
            bad |= json_array_append_new(r, json_integer(t->residues[i]));
        bad |= put(m, "n", json_integer(t->modulo));
        bad |= put(m, "residues", r);
        bad |= put(o, "modulo", m);
    }
    bad |= put_list(o, "devices", t->devices, t->n_devices);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---------------------------------------------------- windows, steps */

static int64_t floor_mod(int64_t a, int64_t m)
{
    int64_t r = a % m;
    return r < 0 ? r + m : r;
}

/* Seconds since local Monday 00:00, 0..WEEK_S-1, without overflow for any
 * t. Unix time 0 was a Thursday, 3 days after a Monday. */
static int64_t week_phase(const struct nb_ro_policy *p, int64_t t)
{
    return floor_mod(floor_mod(t, WEEK_S) + 3 * DAY_S + p->utc_offset_s,
                     WEEK_S);
}

static int phase_in_window(const struct nb_ro_policy *p, int64_t ph)
{
    unsigned day = (unsigned)(ph / DAY_S), i;
    int64_t sod = ph % DAY_S;

    for (i = 0; i < p->n_windows && i < NB_RO_MAX_WINDOWS; i++) {
        const struct nb_ro_window *w = &p->windows[i];
        if ((w->days & (1u << day)) && sod >= (int64_t)w->from_min * 60 &&
            sod < (int64_t)w->to_min * 60)
            return 1;
    }
    return 0;
}

int nb_ro_in_window(const struct nb_ro_policy *p, int64_t now)
{
    return p->n_windows == 0 || phase_in_window(p, week_phase(p, now));
}

int64_t nb_ro_window_next(const struct nb_ro_policy *p, int64_t t)
{
    int64_t ph, best = NB_RO_NEVER;
    unsigned i, d;

    if (nb_ro_in_window(p, t))
        return t;
    /* Outside every window, the next in-window moment is the start of a
     * window: the nearest start ahead on the weekly circle. */
    ph = week_phase(p, t);
    for (i = 0; i < p->n_windows && i < NB_RO_MAX_WINDOWS; i++) {
        const struct nb_ro_window *w = &p->windows[i];
        if (w->from_min >= w->to_min)
            continue; /* empty: never open */
        for (d = 0; d < 7; d++) {
            int64_t delta;
            if (!(w->days & (1u << d)))
                continue;
            delta = floor_mod((int64_t)d * DAY_S +
                                  (int64_t)w->from_min * 60 - ph,
                              WEEK_S);
            if (delta < best)
                best = delta;
        }
    }
    if (best == NB_RO_NEVER || t > NB_RO_NEVER - best)
        return NB_RO_NEVER;
    return t + best;
}

unsigned nb_ro_advance(const struct nb_ro_policy *p, unsigned step,
                       int64_t step_started, int64_t now, int64_t *started)
{
    unsigned n = p->n_steps < NB_RO_MAX_STEPS ? p->n_steps : NB_RO_MAX_STEPS;

    if (n == 0)
        n = 1;
    if (step >= n)
        step = n - 1;
    while (step + 1 < n && step_started <= now) {
        uint32_t hold = p->steps[step].hold_s;
        int64_t next;
        /* now - step_started without overflow: both are int64, the true
         * difference is in [0, 2^64). */
        if ((uint64_t)now - (uint64_t)step_started < hold)
            break;
        next = nb_ro_window_next(p, step_started + (int64_t)hold);
        if (next == NB_RO_NEVER || next > now)
            break;
        step++;
        step_started = next;
    }
    if (started)
        *started = step_started;
    return step;
}

uint32_t nb_ro_step_ppm(const struct nb_ro_policy *p, unsigned step)
{
    unsigned n = p->n_steps < NB_RO_MAX_STEPS ? p->n_steps : NB_RO_MAX_STEPS;

    if (n == 0 || step >= n)
        return NB_RO_PPM;
    return p->steps[step].ppm;
}

/* -------------------------------------------------------------- pause */

int nb_ro_should_pause(const struct nb_ro_policy *p,
                       const struct nb_ro_counts *c)
{
    uint64_t bad = (uint64_t)c->failed + c->reverted + c->silent;
    uint64_t base = c->attempted > p->min_attempted ? c->attempted
                                                    : p->min_attempted;

    return bad * NB_RO_PPM > (uint64_t)p->fail_ppm * base;
}

char *nb_ro_pause_reason(const struct nb_ro_policy *p,
                         const struct nb_ro_counts *c, char *buf,
                         size_t len)
{
    uint64_t bad = (uint64_t)c->failed + c->reverted + c->silent;
    char share[24], limit[24];

    if (!buf || len == 0)
        return buf;
    buf[0] = '\0';
    if (!nb_ro_should_pause(p, c))
        return buf;
    nb_ro_ppm_str(p->fail_ppm, limit, sizeof(limit));
    if (c->attempted >= p->min_attempted && c->attempted > 0) {
        /* bad / attempted in ppm, rounded down, capped at 100 %. */
        uint64_t ppm = bad * NB_RO_PPM / c->attempted;
        nb_ro_ppm_str(ppm > NB_RO_PPM ? NB_RO_PPM : (uint32_t)ppm, share,
                      sizeof(share));
        snprintf(buf, len,
                 "auto: %llu of %lu attempted failed, reverted or went "
                 "silent (%s > %s)", (unsigned long long)bad,
                 (unsigned long)c->attempted, share, limit);
    } else {
        snprintf(buf, len,
                 "auto: %llu of %lu attempted failed, reverted or went "
                 "silent (already over %s of min_attempted %lu)",
                 (unsigned long long)bad, (unsigned long)c->attempted,
                 limit, (unsigned long)p->min_attempted);
    }
    return buf;
}

/* ------------------------------------------------------------- match */

static int in_list(const char list[][NB_RO_NAME_MAX], unsigned n,
                   const char *s)
{
    unsigned i;

    if (!s)
        return 0;
    for (i = 0; i < n && i < NB_RO_MAX_LIST; i++)
        if (strcmp(list[i], s) == 0)
            return 1;
    return 0;
}

int nb_ro_target_match(const struct nb_ro_target *t, const char *device_id,
                       const char *hw_rev, const char *group,
                       const char *const *tags, unsigned n_tags)
{
    if (t->n_hw_revs && !in_list(t->hw_revs, t->n_hw_revs, hw_rev))
        return 0;
    if (t->n_groups && !in_list(t->groups, t->n_groups, group))
        return 0;
    if (t->n_devices && !in_list(t->devices, t->n_devices, device_id))
        return 0;
    if (t->n_tags) {
        unsigned i;
        for (i = 0; tags && i < n_tags; i++)
            if (in_list(t->tags, t->n_tags, tags[i]))
                break;
        if (!tags || i == n_tags)
            return 0;
    }
    if (t->modulo) {
        uint32_t r;
        unsigned i;
        if (!device_id)
            return 0;
        r = nb_cohort_fixed(device_id, t->modulo);
        for (i = 0; i < t->n_residues && i < NB_RO_MAX_LIST; i++)
            if (t->residues[i] == r)
                break;
        if (i == t->n_residues || i == NB_RO_MAX_LIST)
            return 0;
    }
    return 1;
}

int nb_ro_device_reached(const struct nb_ro_policy *p, unsigned step,
                         const char *rollout_id, const char *device_id)
{
    return nb_cohort_in(rollout_id, device_id, nb_ro_step_ppm(p, step));
}
