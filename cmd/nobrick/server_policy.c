/* server_policy.c - `nobrick server rollouts create`: the rollout's
 * target and policy, as the JSON forms of cmd/nobrick-server/rollout.h,
 * from a file each or from options (--steps 1%:1d,10%:7d,100%,
 * --windows "mon-thu 00:00-24:00,fri 00:00-12:00", ...). The options are
 * checked here as far as their form goes, so a typo is a usage error
 * before anything is sent; the server checks the rest (and says so in
 * one line). See server.h. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nb_num.h"
#include "server.h"

#define LIST_MAX 32   /* values per target key (NB_RO_MAX_LIST) */
#define STEPS_MAX 128 /* NB_RO_MAX_STEPS */
#define WINDOWS_MAX 16
#define PPM 1000000u
#define JSON_FILE_MAX 65536u
#define DURATION_MAX_S (366ull * 86400) /* NB_RO_MAX_DURATION_S */

static const char usage_create[] =
    "usage: nobrick server rollouts create --package ID\n"
    "         (--target-json FILE | [--hw-rev R] [--tag T] [--group G]\n"
    "          [--modulo N:R1,R2...] [--device ID] | --all-devices)\n"
    "         [--policy-json FILE | [--steps P%:HOLD,...,100% | --ramp P%:EVERY]\n"
    "          [--windows always|SPEC] [--utc-offset +HH:MM]\n"
    "          [--threshold P%] [--min-attempted N] [--silent-timeout DUR]]\n"
    "\n"
    "Offer a package to a target, in steps, and print the rollout's ID.\n"
    "Each step reaches a share of the target (in an order of its own per\n"
    "rollout) and holds it before the next; offers are made, and steps\n"
    "advance, only in the allowed windows; the rollout pauses itself when\n"
    "the failures of a step pass the threshold.\n"
    "\n"
    "target (a device must match every option given, any of its values;\n"
    "list options repeat or take commas):\n"
    "  --target-json FILE     the target as JSON (rollout.h's form) instead\n"
    "  --hw-rev R             hardware revisions\n"
    "  --tag T                device tags\n"
    "  --group G              device groups\n"
    "  --modulo N:R1,R2       devices whose ID's number modulo N (2 to 256)\n"
    "                         is one of R1, R2, ...\n"
    "  --device ID            these devices\n"
    "  --all-devices          no target option: every device (required then,\n"
    "                         so that none is forgotten by accident)\n"
    "\n"
    "policy (default: the server's, 1%, 10%, 50% a day each, then 100%):\n"
    "  --policy-json FILE     the policy as JSON (rollout.h's form) instead\n"
    "  --steps LIST           steps PERCENT[:HOLD] (hold default 1d),\n"
    "                         rising, the last 100% with no hold; e.g.\n"
    "                         1%:1d,10%:7d,100%\n"
    "  --ramp P%:EVERY        P% more every EVERY, up to 100%\n"
    "  --windows SPEC         'always', or DAYS FROM-TO, comma-separated:\n"
    "                         'mon-thu 00:00-24:00,fri 00:00-12:00'; DAYS is\n"
    "                         mon..sun, a range, or daily\n"
    "  --utc-offset +HH:MM    the windows' local time (default UTC)\n"
    "  --threshold P%         pause when the failures of a step pass P% of\n"
    "                         the devices attempted in it (or a fraction)\n"
    "  --min-attempted N      no verdict with fewer attempts in the step\n"
    "  --silent-timeout DUR   a device offered and silent this long counts\n"
    "                         as a failure\n"
    "\n"
    "Durations: seconds, or a number with s, m, h, d or w (90s, 6h, 1d), at\n"
    "most 366 days.\n"
    "\n"
    "server options: --server URL, --token-file FILE, --cacert FILE, --json\n"
    "(see 'nobrick server --help').\n";

enum {
    PACKAGE,
    TARGET_JSON,
    HW,
    TAG,
    GROUP,
    MODULO,
    DEVICE,
    ALL,
    POLICY_JSON,
    STEPS,
    RAMP,
    WINDOWS,
    UTC,
    THRESHOLD,
    MIN_ATTEMPTED,
    SILENT,
    NOPT
};

/* ------------------------------------------------------------- values */

int srv_duration(const struct srv *s, const char *opt, const char *v,
                 uint64_t max_s, uint64_t *ms)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000},
                 {"d", 86400000}, {"w", 604800000}, {"", 1000}};
    size_t digits = strspn(v, "0123456789");
    char num[24];
    for (size_t k = 0; digits && digits < sizeof(num) && k < NOPTS(units);
         k++) {
        if (strcmp(v + digits, units[k].unit) != 0)
            continue;
        uint64_t n;
        snprintf(num, sizeof(num), "%.*s", (int)digits, v);
        if (nb_parse_u64(num, 0, UINT64_MAX / 604800000, &n) != NB_NUM_OK ||
            n * units[k].ms > max_s * 1000)
            break;
        *ms = n * units[k].ms;
        return 0;
    }
    return usage_err(s->cmd, "%s: '%s' is not a duration of at most %" PRIu64
                     " s (seconds, or a number with ms, s, m, h, d or w)",
                     opt, v, max_s);
}

/* A hold or timeout as the server takes it: the text with its unit, or
 * a number of seconds. NULL after reporting. */
static json_t *duration_json(const struct srv *s, const char *opt,
                             const char *v)
{
    uint64_t ms;
    if (srv_duration(s, opt, v, DURATION_MAX_S, &ms))
        return NULL;
    const char *unit = v + strspn(v, "0123456789");
    if (*unit && strcmp(unit, "ms") != 0)
        return json_string(v); /* "90s", "6h", "1d": as the user wrote it */
    if (ms % 1000) {
        usage_err(s->cmd, "%s: '%s': whole seconds only", opt, v);
        return NULL;
    }
    return json_integer((json_int_t)(ms / 1000));
}

/* "12.5%" (the '%' optional) as parts per million, 0 to 1000000, with at
 * most 4 decimals. -1 when it is not one. */
static long percent_ppm(const char *v, size_t len)
{
    char t[32];
    if (len && v[len - 1] == '%')
        len--;
    if (!len || len >= sizeof(t))
        return -1;
    memcpy(t, v, len);
    t[len] = '\0';
    char *dot = strchr(t, '.');
    uint64_t whole, frac = 0;
    size_t fl = 0;
    if (dot) {
        *dot = '\0';
        fl = strlen(dot + 1);
        if (fl == 0 || fl > 4 || strspn(dot + 1, "0123456789") != fl ||
            nb_parse_u64(dot + 1, 0, 9999, &frac) != NB_NUM_OK)
            return -1;
        for (size_t k = fl; k < 4; k++)
            frac *= 10;
    }
    if (strspn(t, "0123456789") != strlen(t) ||
        nb_parse_u64(t, 0, 100, &whole) != NB_NUM_OK)
        return -1;
    uint64_t ppm = whole * 10000 + frac;
    return ppm > PPM ? -1 : (long)ppm;
}

static json_t *ppm_json(long ppm)
{
    if (ppm % 10000 == 0)
        return json_integer(ppm / 10000);
    return json_real((double)ppm / 10000.0);
}

/* --------------------------------------------------------------- target */

static int modulo(struct srv *s, const char *v, json_t *target)
{
    const char *colon = strchr(v, ':');
    char num[16];
    uint64_t n, r;
    if (!colon || colon == v || (size_t)(colon - v) >= sizeof(num) ||
        !colon[1])
        return usage_err(s->cmd, "--modulo: '%s' is not N:R1,R2,...", v);
    snprintf(num, sizeof(num), "%.*s", (int)(colon - v), v);
    if (parse_u64(s->cmd, "--modulo", num, 2, 256, &n))
        return EXIT_USAGE;
    json_t *res = json_array();
    uint8_t seen[256] = {0};
    for (const char *p = colon + 1;;) {
        size_t len = strcspn(p, ",");
        snprintf(num, sizeof(num), "%.*s", (int)(len < 15 ? len : 15), p);
        if (len >= 15 || nb_parse_u64(num, 0, n - 1, &r) != NB_NUM_OK) {
            json_decref(res);
            return usage_err(s->cmd, "--modulo: residue '%.*s' is not a "
                             "number from 0 to %" PRIu64,
                             (int)len, p, n - 1);
        }
        if (seen[r]++ || json_array_size(res) >= LIST_MAX) {
            json_decref(res);
            return usage_err(s->cmd, "--modulo: residue %" PRIu64 " given "
                             "twice, or more than %d residues",
                             r, LIST_MAX);
        }
        json_array_append_new(res, json_integer((json_int_t)r));
        if (!p[len])
            break;
        p += len + 1;
    }
    json_object_set_new(target, "modulo",
                        json_pack("{s:I,s:o}", "n", (json_int_t)n,
                                  "residues", res));
    return 0;
}

static json_t *json_file(struct srv *s, const char *opt, const char *path)
{
    uint8_t *buf;
    size_t len;
    if (read_file(path, JSON_FILE_MAX, &buf, &len))
        return NULL;
    json_error_t je;
    json_t *j = json_loadb((const char *)buf, len, 0, &je);
    free(buf);
    if (!j) {
        fail("%s: %s: not JSON: line %d: %s", opt, path, je.line, je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        fail("%s: %s: not a JSON object", opt, path);
        return NULL;
    }
    (void)s;
    return j;
}

/* The target; *rc EXIT_USAGE or EXIT_FAIL when NULL. */
static json_t *target(struct srv *s, struct opt *o, int *rc)
{
    int flags = o[HW].set || o[TAG].set || o[GROUP].set || o[MODULO].set ||
                o[DEVICE].set;
    *rc = EXIT_USAGE;
    if (o[TARGET_JSON].set && (flags || o[ALL].set)) {
        usage_err(s->cmd, "give --target-json or target options, not both");
        return NULL;
    }
    if (o[ALL].set && flags) {
        usage_err(s->cmd, "--all-devices and target options exclude each "
                          "other");
        return NULL;
    }
    if (!o[TARGET_JSON].set && !flags && !o[ALL].set) {
        usage_err(s->cmd, "which devices? give target options (--hw-rev, "
                          "--tag, --group, --modulo, --device), "
                          "--target-json FILE, or --all-devices");
        return NULL;
    }
    if (o[TARGET_JSON].set) {
        *rc = EXIT_FAIL;
        return json_file(s, "--target-json", o[TARGET_JSON].value);
    }
    json_t *t = json_object();
    static const struct {
        int opt;
        const char *key;
        int check;
    } lists[] = {{HW, "hw_revs", 0},
                 {TAG, "tags", 1},
                 {GROUP, "groups", 1},
                 {DEVICE, "devices", 1}};
    for (size_t k = 0; t && k < NOPTS(lists); k++) {
        struct opt *x = &o[lists[k].opt];
        if (!x->set)
            continue;
        json_t *a = srv_name_list(s, x->name, x->values, x->count,
                                  lists[k].check, LIST_MAX);
        if (!a) {
            json_decref(t);
            return NULL;
        }
        json_object_set_new(t, lists[k].key, a);
    }
    if (t && o[MODULO].set && modulo(s, o[MODULO].value, t)) {
        json_decref(t);
        return NULL;
    }
    if (!t)
        *rc = fail("out of memory");
    return t;
}

/* --------------------------------------------------------------- policy */

static int steps(struct srv *s, const char *v, json_t *policy)
{
    json_t *a = json_array();
    long last = 0;
    for (const char *p = v;;) {
        size_t len = strcspn(p, ","), pl = strcspn(p, ":,");
        long ppm = percent_ppm(p, pl);
        int final = !p[len];
        if (ppm <= 0) {
            json_decref(a);
            return usage_err(s->cmd, "--steps: '%.*s' is not a percentage "
                             "above 0 and at most 100 (e.g. 10%% or 0.5%%)",
                             (int)pl, p);
        }
        if (ppm <= last || json_array_size(a) >= STEPS_MAX) {
            json_decref(a);
            return usage_err(s->cmd, "--steps: the percentages must rise, "
                             "at most %d steps ('%.*s')",
                             STEPS_MAX, (int)pl, p);
        }
        if (final && ppm != PPM) {
            json_decref(a);
            return usage_err(s->cmd, "--steps: the last step must be 100%%");
        }
        json_t *step = json_pack("{s:o}", "percent", ppm_json(ppm));
        json_array_append_new(a, step);
        if (pl < len) {
            char hold[32];
            if (final) {
                json_decref(a);
                return usage_err(s->cmd, "--steps: the last step holds for "
                                 "ever: give it no hold ('%.*s')",
                                 (int)len, p);
            }
            snprintf(hold, sizeof(hold), "%.*s",
                     (int)(len - pl - 1 < 31 ? len - pl - 1 : 31), p + pl + 1);
            json_t *h = duration_json(s, "--steps", hold);
            if (!h) {
                json_decref(a);
                return EXIT_USAGE;
            }
            json_object_set_new(step, "hold", h);
        } /* no hold: the server's default, 1d */
        last = ppm;
        if (final)
            break;
        p += len + 1;
    }
    json_object_set_new(policy, "schedule", a);
    return 0;
}

static int ramp(struct srv *s, const char *v, json_t *policy)
{
    const char *colon = strchr(v, ':');
    long ppm = colon ? percent_ppm(v, (size_t)(colon - v)) : -1;
    if (ppm <= 0 || !colon[1])
        return usage_err(s->cmd, "--ramp: '%s' is not P%%:EVERY (e.g. 1%%:1d)",
                         v);
    json_t *every = duration_json(s, "--ramp", colon + 1);
    if (!every)
        return EXIT_USAGE;
    json_object_set_new(policy, "schedule",
                        json_pack("{s:o,s:o}", "ramp_percent", ppm_json(ppm),
                                  "every", every));
    return 0;
}

/* "HH:MM", 00:00 to 24:00, as minutes; -1 when not. */
static int hhmm(const char *p, size_t len)
{
    if (len != 5 || p[2] != ':' || strspn(p, "0123456789") != 2 ||
        strspn(p + 3, "0123456789") < 2)
        return -1;
    int h = (p[0] - '0') * 10 + p[1] - '0', m = (p[3] - '0') * 10 + p[4] - '0';
    if (h > 24 || m > 59 || (h == 24 && m))
        return -1;
    return h * 60 + m;
}

static int day(const char *p, size_t len)
{
    static const char *const d[] = {"mon", "tue", "wed", "thu",
                                    "fri", "sat", "sun"};
    for (int i = 0; i < 7; i++)
        if (len == 3 && strncmp(p, d[i], 3) == 0)
            return i;
    return -1;
}

static int windows(struct srv *s, const char *v, json_t *policy)
{
    if (strcmp(v, "always") == 0) {
        json_object_set_new(policy, "windows", json_string("always"));
        return 0;
    }
    json_t *a = json_array();
    for (const char *p = v;;) {
        size_t len = strcspn(p, ",");
        char w[64], *sp;
        snprintf(w, sizeof(w), "%.*s", (int)(len < 63 ? len : 63), p);
        char *days = w + strspn(w, " ");
        sp = strchr(days, ' ');
        char *times = sp ? sp + strspn(sp, " ") : NULL;
        if (sp)
            *sp = '\0';
        size_t dl = strlen(days), dash = strcspn(days, "-");
        int ok = len < 63 && times && json_array_size(a) < WINDOWS_MAX;
        if (ok && strcmp(days, "daily") == 0)
            days = NULL; /* the server's default: every day */
        else if (ok)
            ok = day(days, dash) >= 0 &&
                 (dash == dl || day(days + dash + 1, dl - dash - 1) >= 0);
        int from = -1, to = -1;
        if (ok) {
            size_t tl = strcspn(times, " "), td = strcspn(times, "-");
            ok = times[tl] == '\0' && td < tl;
            from = ok ? hhmm(times, td) : -1;
            to = ok ? hhmm(times + td + 1, tl - td - 1) : -1;
            ok = from >= 0 && to > from;
        }
        if (!ok) {
            json_decref(a);
            return usage_err(s->cmd, "--windows: '%.*s' is not DAYS "
                             "HH:MM-HH:MM (DAYS mon..sun, a range like "
                             "mon-thu, or daily; FROM before TO, TO up to "
                             "24:00; at most %d windows)",
                             (int)len, p, WINDOWS_MAX);
        }
        char f[16], t[16];
        snprintf(f, sizeof(f), "%02d:%02d", from / 60, from % 60);
        snprintf(t, sizeof(t), "%02d:%02d", to / 60, to % 60);
        json_t *win = json_pack("{s:s,s:s}", "from", f, "to", t);
        if (win && days)
            json_object_set_new(win, "days", json_string(days));
        json_array_append_new(a, win);
        if (!p[len])
            break;
        p += len + 1;
    }
    json_object_set_new(policy, "windows", a);
    return 0;
}

static int utc_offset(struct srv *s, const char *v, json_t *policy)
{
    int m = (v[0] == '+' || v[0] == '-') ? hhmm(v + 1, strlen(v + 1)) : -1;
    if (m < 0 || m > 14 * 60)
        return usage_err(s->cmd, "--utc-offset: '%s' is not +HH:MM or "
                         "-HH:MM (at most 14:00)", v);
    json_object_set_new(policy, "utc_offset", json_string(v));
    return 0;
}

/* "0.05" (a fraction from 0 to 1, at most 6 decimals) as parts per
 * million; -1 when not. */
static long fraction_ppm(const char *v)
{
    if ((v[0] != '0' && v[0] != '1') || (v[1] && v[1] != '.'))
        return -1;
    if (!v[1])
        return v[0] == '1' ? (long)PPM : 0;
    const char *f = v + 2;
    size_t fl = strlen(f);
    if (fl == 0 || fl > 6 || strspn(f, "0123456789") != fl)
        return -1;
    long x = 0;
    for (size_t i = 0; i < 6; i++)
        x = x * 10 + (i < fl ? f[i] - '0' : 0);
    if (v[0] == '1')
        return x == 0 ? (long)PPM : -1;
    return x;
}

static int threshold(struct srv *s, const char *v, json_t *policy)
{
    size_t n = strlen(v);
    if (n && v[n - 1] == '%') {
        if (percent_ppm(v, n) < 0)
            return usage_err(s->cmd, "--threshold: '%s' is not a percentage "
                             "from 0%% to 100%%", v);
        json_object_set_new(policy, "failure_threshold", json_string(v));
        return 0;
    }
    long ppm = fraction_ppm(v);
    if (ppm < 0)
        return usage_err(s->cmd, "--threshold: '%s' is not a percentage "
                         "(5%%) or a fraction from 0 to 1 (0.05)", v);
    json_object_set_new(policy, "failure_threshold",
                        json_real((double)ppm / PPM));
    return 0;
}

static json_t *policy(struct srv *s, struct opt *o, int *rc)
{
    int flags = o[STEPS].set || o[RAMP].set || o[WINDOWS].set ||
                o[UTC].set || o[THRESHOLD].set || o[MIN_ATTEMPTED].set ||
                o[SILENT].set;
    *rc = EXIT_USAGE;
    if (o[POLICY_JSON].set && flags) {
        usage_err(s->cmd, "give --policy-json or policy options, not both");
        return NULL;
    }
    if (o[STEPS].set && o[RAMP].set) {
        usage_err(s->cmd, "give --steps or --ramp, not both");
        return NULL;
    }
    if (o[POLICY_JSON].set) {
        *rc = EXIT_FAIL;
        return json_file(s, "--policy-json", o[POLICY_JSON].value);
    }
    json_t *p = json_object();
    if (!p) {
        *rc = fail("out of memory");
        return NULL;
    }
    uint64_t n;
    if ((o[STEPS].set && steps(s, o[STEPS].value, p)) ||
        (o[RAMP].set && ramp(s, o[RAMP].value, p)) ||
        (o[WINDOWS].set && windows(s, o[WINDOWS].value, p)) ||
        (o[UTC].set && utc_offset(s, o[UTC].value, p)) ||
        (o[THRESHOLD].set && threshold(s, o[THRESHOLD].value, p)) ||
        (o[MIN_ATTEMPTED].set &&
         parse_u64(s->cmd, "--min-attempted", o[MIN_ATTEMPTED].value, 0,
                   1000000000, &n))) {
        json_decref(p);
        return NULL;
    }
    if (o[MIN_ATTEMPTED].set)
        json_object_set_new(p, "min_attempted", json_integer((json_int_t)n));
    if (o[SILENT].set) {
        json_t *d = duration_json(s, "--silent-timeout", o[SILENT].value);
        if (!d) {
            json_decref(p);
            return NULL;
        }
        json_object_set_new(p, "silent_timeout", d);
    }
    return p;
}

/* --------------------------------------------------------------- create */

int srv_rollouts_create(struct srv *s, int argc, char **argv)
{
    struct opt o[NOPT] = {
        [PACKAGE] = {.name = "--package", .kind = OPT_VALUE},
        [TARGET_JSON] = {.name = "--target-json", .kind = OPT_VALUE},
        [HW] = {.name = "--hw-rev", .kind = OPT_MULTI},
        [TAG] = {.name = "--tag", .kind = OPT_MULTI},
        [GROUP] = {.name = "--group", .kind = OPT_MULTI},
        [MODULO] = {.name = "--modulo", .kind = OPT_VALUE},
        [DEVICE] = {.name = "--device", .kind = OPT_MULTI},
        [ALL] = {.name = "--all-devices", .kind = OPT_FLAG},
        [POLICY_JSON] = {.name = "--policy-json", .kind = OPT_VALUE},
        [STEPS] = {.name = "--steps", .kind = OPT_VALUE},
        [RAMP] = {.name = "--ramp", .kind = OPT_VALUE},
        [WINDOWS] = {.name = "--windows", .kind = OPT_VALUE},
        [UTC] = {.name = "--utc-offset", .kind = OPT_VALUE},
        [THRESHOLD] = {.name = "--threshold", .kind = OPT_VALUE},
        [MIN_ATTEMPTED] = {.name = "--min-attempted", .kind = OPT_VALUE},
        [SILENT] = {.name = "--silent-timeout", .kind = OPT_VALUE},
    };
    size_t npos;
    int rc = srv_parse(s, argc, argv, o, NOPT, NULL, 0, &npos);
    if (rc == 1)
        return fputs(usage_create, stdout), EXIT_OK;
    if (rc)
        return rc;
    if (!o[PACKAGE].set)
        return usage_err(s->cmd, "--package is required (an ID from "
                                 "'nobrick server upload')");
    if (srv_check_id(s, "--package", o[PACKAGE].value))
        return EXIT_USAGE;
    json_t *t = target(s, o, &rc), *p = NULL;
    if (!t)
        return rc;
    if (!(p = policy(s, o, &rc))) {
        json_decref(t);
        return rc;
    }
    json_t *body = json_pack("{s:s,s:o}", "package", o[PACKAGE].value,
                             "target", t), *ans = NULL;
    /* No policy option: the server's defaults (rollout.h). */
    if (body && json_object_size(p))
        json_object_set(body, "policy", p);
    json_decref(p);
    if (!body)
        return fail("out of memory");
    if (!(rc = srv_open(s)))
        rc = srv_json(s, "POST", "/rollouts", body, &ans);
    json_decref(body);
    if (rc)
        return rc;
    const char *id = js_str(ans, "id");
    if (s->json)
        srv_print_json(ans);
    else if (id)
        printf("%s\n", id);
    else
        rc = fail("%s: the server's answer has no rollout 'id'", s->cmd);
    fflush(stdout);
    json_decref(ans);
    return rc;
}
