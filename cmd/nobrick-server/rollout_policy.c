/* rollout_policy.c - a rollout's policy (rollout.h): parsing of the JSON
 * form, strictly, and its canonical JSON. Pure functions.
 */
#include "rollout.h"

#include <stdio.h>
#include <string.h>

#include "rollout_priv.h"

#define DAY_S 86400
#define WEEK_S (7 * DAY_S)
#define MAX_OFFSET_S (14 * 3600)

static const char *const day_names[7] = {"mon", "tue", "wed", "thu",
                                         "fri", "sat", "sun"};

/* ---------------------------------------------------- numbers, times */

/* A duration: an integer of seconds, or digits and one unit. */
static nb_err parse_duration(const json_t *v, const char *path, int zero_ok,
                             uint32_t *out, char *err, size_t errlen)
{
    uint64_t n = 0;

    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0)
            return nb_ro_fail(err, errlen, "%s: must not be negative", path);
        if ((uint64_t)i > NB_RO_MAX_DURATION_S)
            return nb_ro_fail(err, errlen, "%s: longer than 366d", path);
        n = (uint64_t)i;
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        unsigned digits = 0;
        uint64_t unit;
        for (; *s >= '0' && *s <= '9'; s++, digits++)
            if (digits < 12)
                n = n * 10u + (uint64_t)(*s - '0');
        switch (*s) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = DAY_S; break;
        case 'w': unit = WEEK_S; break;
        default: unit = 0; break;
        }
        if (digits == 0 || unit == 0 || s[1] != '\0')
            return nb_ro_fail(
                err, errlen,
                "%s: expected seconds or a duration like \"90s\", "
                "\"30m\", \"6h\", \"1d\", \"1w\"",
                path);
        if (digits >= 12 || n * unit > NB_RO_MAX_DURATION_S)
            return nb_ro_fail(err, errlen, "%s: longer than 366d", path);
        n *= unit;
    } else {
        return nb_ro_fail(
            err, errlen,
            "%s: expected an integer of seconds or a string like "
            "\"6h\"",
            path);
    }
    if (n == 0 && !zero_ok)
        return nb_ro_fail(err, errlen, "%s: must be more than 0", path);
    *out = (uint32_t)n;
    return NB_OK;
}

/* A share in ppm, 0..1000000. Strings are "D[.DDDD]%" (exact); numbers
 * are percent (`scale` 1e4: 5 is 5 %) or a fraction (`scale` 1e6: 0.05
 * is 5 %) and must be a whole number of ppm. */
static nb_err parse_share(const json_t *v, const char *path, double scale,
                          uint32_t *ppm, char *err, size_t errlen)
{
    double max = 1e6 / scale;

    if (json_is_number(v)) {
        double x = json_number_value(v), y, d;
        uint32_t r;
        /* No libm: NaN fails x == x, the infinities the range checks. */
        if (x != x)
            return nb_ro_fail(err, errlen, "%s: not a finite number", path);
        if (x < 0)
            return nb_ro_fail(err, errlen, "%s: must not be negative", path);
        if (x > max)
            return nb_ro_fail(err, errlen,
                              scale > 1e5 ? "%s: a fraction is at most 1 "
                                            "(write \"5%%\" for 5 %%)"
                                          : "%s: more than 100 %%",
                              path);
        y = x * scale; /* 0..1000000 */
        r = (uint32_t)(y + 0.5);
        d = y - (double)r;
        if (d > 1e-6 || d < -1e-6)
            return nb_ro_fail(err, errlen, "%s: finer than 0.0001 %%", path);
        *ppm = r;
        return NB_OK;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        uint32_t whole = 0, frac = 0;
        unsigned wd = 0, fd = 0;
        for (; *s >= '0' && *s <= '9'; s++, wd++)
            if (wd < 4)
                whole = whole * 10u + (uint32_t)(*s - '0');
        if (*s == '.') {
            for (s++; *s >= '0' && *s <= '9'; s++, fd++)
                if (fd < 5)
                    frac = frac * 10u + (uint32_t)(*s - '0');
            if (fd == 0)
                wd = 0; /* "5.%": refuse below */
        }
        if (wd == 0 || s[0] != '%' || s[1] != '\0')
            return nb_ro_fail(err, errlen,
                              "%s: expected a number or a string like \"5%%\"",
                              path);
        if (fd > 4)
            return nb_ro_fail(err, errlen, "%s: finer than 0.0001 %%", path);
        while (fd++ < 4)
            frac *= 10u;
        if (wd > 3 || whole * 10000u + frac > NB_RO_PPM)
            return nb_ro_fail(err, errlen, "%s: more than 100 %%", path);
        *ppm = whole * 10000u + frac;
        return NB_OK;
    }
    return nb_ro_fail(err, errlen,
                      "%s: expected a number or a string like \"5%%\"", path);
}

/* "HH:MM", 00:00..24:00, into minutes. */
static int parse_hhmm(const char *s, unsigned *min)
{
    unsigned h, m;

    if (strlen(s) != 5 || s[2] != ':')
        return -1;
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9' ||
        s[3] < '0' || s[3] > '9' || s[4] < '0' || s[4] > '9')
        return -1;
    h = (unsigned)(s[0] - '0') * 10u + (unsigned)(s[1] - '0');
    m = (unsigned)(s[3] - '0') * 10u + (unsigned)(s[4] - '0');
    if (m > 59 || h > 24 || (h == 24 && m != 0))
        return -1;
    *min = h * 60u + m;
    return 0;
}

static int day_index(const char *s, size_t n)
{
    int d;

    if (n != 3)
        return -1;
    for (d = 0; d < 7; d++)
        if (strncmp(s, day_names[d], 3) == 0)
            return d;
    return -1;
}

/* "mon-thu,sat": names and ranges (a range may wrap), no day twice. */
static nb_err parse_days(const char *s, const char *path, uint8_t *mask,
                         char *err, size_t errlen)
{
    uint8_t m = 0;

    for (;;) {
        const char *tok = s, *dash, *end;
        int a, b;
        while (*tok == ' ')
            tok++;
        end = strchr(tok, ',');
        if (!end)
            end = tok + strlen(tok);
        while (end > tok && end[-1] == ' ')
            end--;
        dash = memchr(tok, '-', (size_t)(end - tok));
        if (dash) {
            a = day_index(tok, (size_t)(dash - tok));
            b = day_index(dash + 1, (size_t)(end - dash - 1));
        } else {
            a = b = day_index(tok, (size_t)(end - tok));
        }
        if (a < 0 || b < 0)
            return nb_ro_fail(
                err, errlen,
                "%s: expected days like \"mon-thu\", \"sat,sun\" "
                "or \"fri\"",
                path);
        for (;;) {
            if (m & (1u << a))
                return nb_ro_fail(err, errlen, "%s: %s given twice", path,
                                  day_names[a]);
            m |= (uint8_t)(1u << a);
            if (a == b)
                break;
            a = (a + 1) % 7;
        }
        s = strchr(tok, ',');
        if (!s)
            break;
        s++;
    }
    *mask = m;
    return NB_OK;
}

/* ------------------------------------------------------------ policy */

static void policy_defaults(struct nb_ro_policy *p)
{
    static const uint32_t pct[] = {10000, 100000, 500000, NB_RO_PPM};
    unsigned i;

    memset(p, 0, sizeof(*p));
    for (i = 0; i < 4; i++) {
        p->steps[i].ppm = pct[i];
        p->steps[i].hold_s = i < 3 ? DAY_S : 0;
    }
    p->n_steps = 4;
    /* Every day but Friday afternoon: no release into a weekend. Fields
     * one by one: a struct assignment may copy padding, and parsed
     * policies must compare equal with memcmp. */
    p->windows[0].days = 0x0f; /* mon-thu */
    p->windows[0].to_min = 1440;
    p->windows[1].days = 0x10; /* fri until 12:00 */
    p->windows[1].to_min = 720;
    p->windows[2].days = 0x60; /* sat,sun */
    p->windows[2].to_min = 1440;
    p->n_windows = 3;
    p->utc_offset_s = 0;
    p->fail_ppm = 50000;
    p->min_attempted = 10;
    p->silent_s = 6 * 3600;
}

static nb_err parse_schedule(const json_t *v, struct nb_ro_policy *p,
                             char *err, size_t errlen)
{
    static const char *const step_keys[] = {"percent", "hold", NULL};
    static const char *const ramp_keys[] = {"ramp_percent", "every", NULL};
    char path[64];
    size_t i, n;
    nb_err e;

    memset(p->steps, 0, sizeof(p->steps));
    if (json_is_object(v)) {
        uint32_t r, every;
        json_t *rp = json_object_get(v, "ramp_percent");
        json_t *ev = json_object_get(v, "every");
        e = nb_ro_check_keys(v, "policy.schedule", ramp_keys, err, errlen);
        if (e)
            return e;
        if (!rp)
            return nb_ro_fail(err, errlen,
                              "policy.schedule.ramp_percent: missing");
        if (!ev)
            return nb_ro_fail(err, errlen, "policy.schedule.every: missing");
        e = parse_share(rp, "policy.schedule.ramp_percent", 1e4, &r, err,
                        errlen);
        if (e)
            return e;
        if (r == 0)
            return nb_ro_fail(
                err, errlen,
                "policy.schedule.ramp_percent: must be more than 0");
        if ((NB_RO_PPM + r - 1) / r > NB_RO_MAX_STEPS)
            return nb_ro_fail(
                err, errlen,
                "policy.schedule.ramp_percent: more than %u steps",
                (unsigned)NB_RO_MAX_STEPS);
        e = parse_duration(ev, "policy.schedule.every", 0, &every, err,
                           errlen);
        if (e)
            return e;
        for (n = 0; (uint32_t)(n + 1) * r < NB_RO_PPM; n++) {
            p->steps[n].ppm = (uint32_t)(n + 1) * r;
            p->steps[n].hold_s = every;
        }
        p->steps[n].ppm = NB_RO_PPM;
        p->n_steps = (unsigned)n + 1;
        return NB_OK;
    }
    if (!json_is_array(v))
        return nb_ro_fail(err, errlen,
                          "policy.schedule: expected a list of steps or "
                          "{\"ramp_percent\", \"every\"}");
    n = json_array_size(v);
    if (n == 0)
        return nb_ro_fail(err, errlen, "policy.schedule: no steps");
    if (n > NB_RO_MAX_STEPS)
        return nb_ro_fail(err, errlen, "policy.schedule: more than %u steps",
                          (unsigned)NB_RO_MAX_STEPS);
    for (i = 0; i < n; i++) {
        json_t *st = json_array_get(v, i), *pc, *hd;
        struct nb_ro_step *s = &p->steps[i];
        snprintf(path, sizeof(path), "policy.schedule[%u]", (unsigned)i);
        if (!json_is_object(st))
            return nb_ro_fail(err, errlen,
                              "%s: expected {\"percent\", \"hold\"}", path);
        e = nb_ro_check_keys(st, path, step_keys, err, errlen);
        if (e)
            return e;
        pc = json_object_get(st, "percent");
        hd = json_object_get(st, "hold");
        snprintf(path, sizeof(path), "policy.schedule[%u].percent",
                 (unsigned)i);
        if (!pc)
            return nb_ro_fail(err, errlen, "%s: missing", path);
        e = parse_share(pc, path, 1e4, &s->ppm, err, errlen);
        if (e)
            return e;
        if (s->ppm == 0)
            return nb_ro_fail(err, errlen, "%s: must be more than 0", path);
        if (i > 0 && s->ppm <= p->steps[i - 1].ppm)
            return nb_ro_fail(err, errlen,
                              "%s: must rise above the step before", path);
        if (i + 1 == n && s->ppm != NB_RO_PPM)
            return nb_ro_fail(err, errlen, "%s: the last step must be 100",
                              path);
        snprintf(path, sizeof(path), "policy.schedule[%u].hold",
                 (unsigned)i);
        s->hold_s = DAY_S;
        if (hd) {
            e = parse_duration(hd, path, 1, &s->hold_s, err, errlen);
            if (e)
                return e;
        }
        if (i + 1 == n)
            s->hold_s = 0; /* the last step holds forever */
    }
    p->n_steps = (unsigned)n;
    return NB_OK;
}

static nb_err parse_windows(const json_t *v, struct nb_ro_policy *p,
                            char *err, size_t errlen)
{
    static const char *const keys[] = {"days", "from", "to", NULL};
    char path[64];
    size_t i, n;
    nb_err e;

    memset(p->windows, 0, sizeof(p->windows));
    p->n_windows = 0;
    if (json_is_string(v) && strcmp(json_string_value(v), "always") == 0)
        return NB_OK;
    if (!json_is_array(v))
        return nb_ro_fail(err, errlen,
                          "policy.windows: expected a list of windows or "
                          "\"always\"");
    n = json_array_size(v);
    if (n == 0)
        return nb_ro_fail(
            err, errlen,
            "policy.windows: empty (write \"always\" for no limit)");
    if (n > NB_RO_MAX_WINDOWS)
        return nb_ro_fail(err, errlen, "policy.windows: more than %u windows",
                          (unsigned)NB_RO_MAX_WINDOWS);
    for (i = 0; i < n; i++) {
        json_t *w = json_array_get(v, i), *x;
        struct nb_ro_window *win = &p->windows[i];
        unsigned from = 0, to = 1440;
        snprintf(path, sizeof(path), "policy.windows[%u]", (unsigned)i);
        if (!json_is_object(w))
            return nb_ro_fail(err, errlen,
                              "%s: expected {\"days\", \"from\", \"to\"}",
                              path);
        e = nb_ro_check_keys(w, path, keys, err, errlen);
        if (e)
            return e;
        win->days = 0x7f;
        if ((x = json_object_get(w, "days")) != NULL) {
            snprintf(path, sizeof(path), "policy.windows[%u].days",
                     (unsigned)i);
            if (!json_is_string(x))
                return nb_ro_fail(err, errlen, "%s: expected a string", path);
            e = parse_days(json_string_value(x), path, &win->days, err,
                           errlen);
            if (e)
                return e;
        }
        if ((x = json_object_get(w, "from")) != NULL &&
            (!json_is_string(x) || parse_hhmm(json_string_value(x), &from) ||
             from >= 1440))
            return nb_ro_fail(
                err, errlen,
                "policy.windows[%u].from: expected \"HH:MM\" from "
                "00:00 to 23:59",
                (unsigned)i);
        if ((x = json_object_get(w, "to")) != NULL &&
            (!json_is_string(x) || parse_hhmm(json_string_value(x), &to)))
            return nb_ro_fail(
                err, errlen,
                "policy.windows[%u].to: expected \"HH:MM\" up to "
                "24:00",
                (unsigned)i);
        if (from >= to)
            return nb_ro_fail(err, errlen,
                              "policy.windows[%u].to: must be after from (a "
                              "window ends by 24:00; split a night window in "
                              "two)",
                              (unsigned)i);
        win->from_min = (uint16_t)from;
        win->to_min = (uint16_t)to;
    }
    p->n_windows = (unsigned)n;
    return NB_OK;
}

static nb_err parse_offset(const json_t *v, int32_t *out, char *err,
                           size_t errlen)
{
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    unsigned min;
    int32_t off;

    if ((s[0] != '+' && s[0] != '-') || parse_hhmm(s + 1, &min) ||
        min > MAX_OFFSET_S / 60)
        return nb_ro_fail(
            err, errlen,
            "policy.utc_offset: expected \"+HH:MM\" or \"-HH:MM\", "
            "at most 14:00");
    off = (int32_t)min * 60;
    *out = s[0] == '-' ? -off : off;
    return NB_OK;
}

nb_err nb_ro_policy_parse(const json_t *j, struct nb_ro_policy *p,
                          char *err, size_t errlen)
{
    static const char *const keys[] = {
        "schedule", "windows", "utc_offset", "failure_threshold",
        "min_attempted", "silent_timeout", NULL};
    json_t *v;
    nb_err e;

    if (err && errlen > 0)
        err[0] = '\0';
    policy_defaults(p);
    if (!j || json_is_null(j))
        return NB_OK;
    if (!json_is_object(j))
        return nb_ro_fail(err, errlen, "policy: expected an object");
    e = nb_ro_check_keys(j, "policy", keys, err, errlen);
    if (e)
        return e;
    if ((v = json_object_get(j, "schedule")) != NULL &&
        (e = parse_schedule(v, p, err, errlen)) != NB_OK)
        return e;
    if ((v = json_object_get(j, "windows")) != NULL &&
        (e = parse_windows(v, p, err, errlen)) != NB_OK)
        return e;
    if ((v = json_object_get(j, "utc_offset")) != NULL &&
        (e = parse_offset(v, &p->utc_offset_s, err, errlen)) != NB_OK)
        return e;
    if ((v = json_object_get(j, "failure_threshold")) != NULL &&
        (e = parse_share(v, "policy.failure_threshold", 1e6, &p->fail_ppm,
                         err, errlen)) != NB_OK)
        return e;
    if ((v = json_object_get(j, "min_attempted")) != NULL &&
        (e = nb_ro_parse_uint(v, "policy.min_attempted", NB_RO_PPM,
                              &p->min_attempted, err, errlen)) != NB_OK)
        return e;
    if ((v = json_object_get(j, "silent_timeout")) != NULL &&
        (e = parse_duration(v, "policy.silent_timeout", 0, &p->silent_s,
                            err, errlen)) != NB_OK)
        return e;
    return NB_OK;
}

/* "7d", "6h", "90m", "45s": the largest unit that divides exactly. */
static json_t *duration_json(uint32_t s)
{
    static const struct { uint32_t n; char c; } units[] = {
        {DAY_S, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
    char buf[24];
    unsigned i;

    for (i = 0; i < 3 && (s == 0 || s % units[i].n != 0); i++)
        ;
    snprintf(buf, sizeof(buf), "%lu%c", (unsigned long)(s / units[i].n),
             units[i].c);
    return json_string(buf);
}

/* "mon-thu", "sat,sun", "mon,wed-fri": runs of 3 or more as ranges. */
static void days_str(uint8_t days, char *buf, size_t len)
{
    size_t at = 0;
    int d = 0;

    buf[0] = '\0';
    while (d < 7) {
        int e = d;
        if (!(days & (1u << d))) {
            d++;
            continue;
        }
        while (e + 1 < 7 && (days & (1u << (e + 1))))
            e++;
        if (e - d >= 2)
            at += (size_t)snprintf(buf + at, len - at, "%s%s-%s",
                                   at ? "," : "", day_names[d],
                                   day_names[e]);
        else
            for (int k = d; k <= e; k++)
                at += (size_t)snprintf(buf + at, len - at, "%s%s",
                                       at ? "," : "", day_names[k]);
        d = e + 1;
    }
}

/* Set o[key] = v, taking v's reference; 0 on success. */
static int put(json_t *o, const char *key, json_t *v)
{
    return v ? json_object_set_new(o, key, v) : -1;
}

json_t *nb_ro_policy_json(const struct nb_ro_policy *p)
{
    json_t *o = json_object(), *steps = json_array(), *wins = NULL;
    char buf[64];
    unsigned i;
    int bad = !o || !steps;

    for (i = 0; !bad && i < p->n_steps; i++) {
        json_t *st = json_object();
        uint32_t ppm = p->steps[i].ppm;
        if (ppm % 10000u == 0) {
            bad |= put(st, "percent", json_integer(ppm / 10000u));
        } else {
            nb_ro_ppm_str(ppm, buf, sizeof(buf));
            bad |= put(st, "percent", json_string(buf));
        }
        if (i + 1 < p->n_steps)
            bad |= put(st, "hold", duration_json(p->steps[i].hold_s));
        bad |= json_array_append_new(steps, st);
    }
    bad |= put(o, "schedule", steps);
    steps = NULL;
    if (p->n_windows == 0) {
        bad |= put(o, "windows", json_string("always"));
    } else {
        wins = json_array();
        for (i = 0; wins && i < p->n_windows; i++) {
            const struct nb_ro_window *w = &p->windows[i];
            json_t *wo = json_object();
            days_str(w->days, buf, sizeof(buf));
            bad |= put(wo, "days", json_string(buf));
            snprintf(buf, sizeof(buf), "%02u:%02u", w->from_min / 60u,
                     w->from_min % 60u);
            bad |= put(wo, "from", json_string(buf));
            snprintf(buf, sizeof(buf), "%02u:%02u", w->to_min / 60u,
                     w->to_min % 60u);
            bad |= put(wo, "to", json_string(buf));
            bad |= json_array_append_new(wins, wo);
        }
        bad |= put(o, "windows", wins);
    }
    {
        int32_t off = p->utc_offset_s;
        uint32_t a = off < 0 ? (uint32_t)(-(int64_t)off) : (uint32_t)off;
        snprintf(buf, sizeof(buf), "%c%02lu:%02lu", off < 0 ? '-' : '+',
                 (unsigned long)(a / 3600u), (unsigned long)(a % 3600u / 60u));
        bad |= put(o, "utc_offset", json_string(buf));
    }
    nb_ro_ppm_str(p->fail_ppm, buf, sizeof(buf));
    bad |= put(o, "failure_threshold", json_string(buf));
    bad |= put(o, "min_attempted", json_integer(p->min_attempted));
    bad |= put(o, "silent_timeout", duration_json(p->silent_s));
    if (bad) {
        json_decref(o);
        json_decref(steps);
        return NULL;
    }
    return o;
}
