/* test_rollout_run.c - the rules of a running rollout
 * (cmd/nobrick-server/rollout.h): windows against an independent calendar
 * (civil date from days and Sakamoto's weekday, not the code's week
 * arithmetic) for every minute of several weeks, offsets and eras; step
 * advance over simulated time (a Monday 09:00 walk, the Friday-afternoon
 * wait, late calls, a 100-step ramp, and "one late call equals calls at
 * every tick" for random policies); the pause rule against the two rules
 * the header states; target matching; cohort reach monotone in the step.
 *
 * Random cases print "seed S case N" on failure: set ROLLOUT_SEED=S to
 * replay them (the default seed is fixed, so runs are reproducible).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "rollout.h"
#include "nb_cohort.h"

#define DAY 86400
#define HOUR 3600

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            print_error("failed: %s: ", #cond);                             \
            print_error(__VA_ARGS__);                                       \
            print_error("\n");                                              \
            fail();                                                         \
        }                                                                   \
    } while (0)

/* ------------------------------------------------------------ helpers */

static uint64_t seed_base(void)
{
    const char *s = getenv("ROLLOUT_SEED");
    return s ? strtoull(s, NULL, 0) : 20251114u;
}

static uint64_t rng(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static unsigned rnd(uint64_t *s, unsigned n)
{
    return (unsigned)(rng(s) % n);
}

/* Unix time of a UTC civil date (H. Hinnant's days_from_civil). */
static int64_t utc(int64_t y, unsigned m, unsigned d, unsigned hh,
                   unsigned mm)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (era * 146097 + (int64_t)doe - 719468) * DAY + hh * HOUR + mm * 60;
}

/* Weekday (0 = Monday) of a day count since 1970-01-01, through the civil
 * date and Sakamoto's method: independent of the code's mod-7 phase. */
static unsigned ref_weekday(int64_t z)
{
    static const int t[] = {0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4};
    int64_t era, y, doe, yoe, doy, mp, d, m;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    if (m < 3)
        y -= 1;
    /* Sakamoto: 0 = Sunday; y >= 0 for the dates used here. */
    return (unsigned)((y + y / 4 - y / 100 + y / 400 + t[m - 1] + d + 6) %
                      7);
}

static int ref_in_window(const struct nb_ro_policy *p, int64_t t)
{
    int64_t local = t + p->utc_offset_s, days, sod;
    unsigned wd, i;

    if (p->n_windows == 0)
        return 1;
    days = local >= 0 ? local / DAY : -((-local + DAY - 1) / DAY);
    sod = local - days * DAY;
    wd = ref_weekday(days);
    for (i = 0; i < p->n_windows; i++)
        if ((p->windows[i].days >> wd & 1) &&
            sod >= p->windows[i].from_min * 60 &&
            sod < p->windows[i].to_min * 60)
            return 1;
    return 0;
}

static nb_err policy_str(const char *text, struct nb_ro_policy *p,
                         char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
    nb_err e;

    if (!j) {
        print_error("bad test JSON %s: %s\n", text, je.text);
        fail();
    }
    e = nb_ro_policy_parse(j, p, err, errlen);
    json_decref(j);
    return e;
}

static nb_err target_str(const char *text, struct nb_ro_target *t,
                         char *err, size_t errlen)
{
    json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
    nb_err e;

    CHECK(j != NULL, "bad test JSON %s", text);
    e = nb_ro_target_parse(j, t, err, errlen);
    json_decref(j);
    return e;
}

static void policy_ok(const char *text, struct nb_ro_policy *p)
{
    char err[200];
    nb_err e = policy_str(text, p, err, sizeof(err));
    CHECK(e == NB_OK, "policy %s refused: %s", text, err);
}

/* ------------------------------------------------------------ windows */

static void test_windows_fixed_points(void **state)
{
    static struct nb_ro_policy p;
    int64_t fri = utc(2025, 11, 14, 0, 0); /* a Friday */

    (void)state;
    /* 1970-01-01 was a Thursday; the day before a Wednesday. */
    policy_ok("{\"windows\": [{\"days\": \"thu\"}]}", &p);
    assert_true(nb_ro_in_window(&p, 0));
    assert_true(nb_ro_in_window(&p, DAY - 1));
    assert_false(nb_ro_in_window(&p, -1));
    assert_false(nb_ro_in_window(&p, DAY));
    assert_true(nb_ro_in_window(&p, 7 * DAY));
    assert_true(nb_ro_in_window(&p, -7 * DAY));
    assert_int_equal(nb_ro_window_next(&p, -1), 0);
    /* Default windows: no new step from Friday 12:00 to Saturday 00:00. */
    policy_ok("{}", &p);
    assert_true(nb_ro_in_window(&p, fri - 1));             /* Thu 23:59:59 */
    assert_true(nb_ro_in_window(&p, fri + 12 * HOUR - 1)); /* Fri 11:59:59 */
    assert_false(nb_ro_in_window(&p, fri + 12 * HOUR));
    assert_false(nb_ro_in_window(&p, fri + 14 * HOUR));
    assert_false(nb_ro_in_window(&p, fri + DAY - 1));
    assert_true(nb_ro_in_window(&p, fri + DAY));           /* Sat 00:00 */
    assert_true(nb_ro_in_window(&p, fri + 3 * DAY));       /* Mon 00:00 */
    assert_int_equal(nb_ro_window_next(&p, fri + 14 * HOUR), fri + DAY);
    assert_int_equal(nb_ro_window_next(&p, fri + 9 * HOUR), fri + 9 * HOUR);
    /* +01:00: Friday 11:30 UTC is 12:30 local. */
    policy_ok("{\"utc_offset\": \"+01:00\"}", &p);
    assert_false(nb_ro_in_window(&p, fri + 11 * HOUR + 1800));
    assert_true(nb_ro_in_window(&p, fri + 10 * HOUR + 59 * 60));
    assert_int_equal(nb_ro_window_next(&p, fri + 11 * HOUR), fri + 23 * HOUR);
    /* -05:30: Friday 17:29 UTC is 11:59 local, 17:30 is 12:00. */
    policy_ok("{\"utc_offset\": \"-05:30\"}", &p);
    assert_true(nb_ro_in_window(&p, fri + 17 * HOUR + 29 * 60));
    assert_false(nb_ro_in_window(&p, fri + 17 * HOUR + 30 * 60));
    assert_int_equal(nb_ro_window_next(&p, fri + 18 * HOUR),
                     fri + DAY + 5 * HOUR + 1800);
    /* +02:00 moves the day: Thursday 23:00 UTC is Friday 01:00 local. */
    policy_ok("{\"utc_offset\": \"+02:00\", \"windows\": [{\"days\":"
              " \"fri\"}]}", &p);
    assert_true(nb_ro_in_window(&p, fri - HOUR));
    assert_false(nb_ro_in_window(&p, fri + 22 * HOUR));
    /* A night window across midnight, as two joined windows. */
    policy_ok("{\"windows\": [{\"days\": \"mon\", \"from\": \"22:00\"},"
              " {\"days\": \"tue\", \"to\": \"06:00\"}]}", &p);
    {
        int64_t mon = fri + 3 * DAY;
        assert_false(nb_ro_in_window(&p, mon + 22 * HOUR - 1));
        assert_true(nb_ro_in_window(&p, mon + 22 * HOUR));
        assert_true(nb_ro_in_window(&p, mon + DAY - 1));
        assert_true(nb_ro_in_window(&p, mon + DAY));
        assert_true(nb_ro_in_window(&p, mon + DAY + 6 * HOUR - 1));
        assert_false(nb_ro_in_window(&p, mon + DAY + 6 * HOUR));
        assert_int_equal(nb_ro_window_next(&p, mon + 12 * HOUR),
                         mon + 22 * HOUR);
        assert_int_equal(nb_ro_window_next(&p, mon + DAY + 6 * HOUR),
                         mon + 7 * DAY + 22 * HOUR);
    }
    /* "always": every time, even the extremes. */
    policy_ok("{\"windows\": \"always\"}", &p);
    assert_true(nb_ro_in_window(&p, INT64_MIN));
    assert_true(nb_ro_in_window(&p, INT64_MAX));
    assert_int_equal(nb_ro_window_next(&p, INT64_MAX), INT64_MAX);
    /* Extremes with windows: no overflow; an opening beyond int64. */
    policy_ok("{\"utc_offset\": \"-14:00\", \"windows\": [{\"days\":"
              " \"wed\", \"from\": \"23:59\"}]}", &p);
    (void)nb_ro_in_window(&p, INT64_MIN);
    assert_true(nb_ro_window_next(&p, INT64_MIN) < INT64_MIN + 8 * DAY);
    /* INT64_MAX - 60 is not in this one-minute window, and the next
     * opening is beyond int64. */
    assert_false(nb_ro_in_window(&p, INT64_MAX - 60));
    assert_int_equal(nb_ro_window_next(&p, INT64_MAX - 60), NB_RO_NEVER);
    /* A hand-built window with no days never opens. */
    memset(&p, 0, sizeof(p));
    p.n_steps = 1;
    p.steps[0].ppm = NB_RO_PPM;
    p.n_windows = 1;
    p.windows[0].to_min = 1440;
    assert_false(nb_ro_in_window(&p, 0));
    assert_int_equal(nb_ro_window_next(&p, 0), NB_RO_NEVER);
}

/* Every minute (and a few seconds past it) of a week, against the
 * independent calendar and a brute-force search for the next opening. */
static void test_windows_sweep(void **state)
{
    static const char *const policies[] = {
        "{}",
        "{\"utc_offset\": \"+05:45\"}",
        ("{\"utc_offset\": \"-09:30\", \"windows\": [{\"days\": \"sat-mon\","
         " \"from\": \"01:15\", \"to\": \"02:00\"}, {\"days\": \"wed\","
         " \"from\": \"23:00\"}, {\"days\": \"thu\", \"to\": \"00:30\"}]}"),
        ("{\"utc_offset\": \"+14:00\", \"windows\": [{\"days\": \"sun\","
         " \"from\": \"23:59\"}]}"),
    };
    static const int64_t weeks[] = {0, 1763078400 /* 2025-11-14 */,
                                    -310521600 /* 1960-02-29 */,
                                    4107542400 /* 2100-03-01 */};
    static struct nb_ro_policy p;
    unsigned pi, wi;

    (void)state;
    for (pi = 0; pi < sizeof(policies) / sizeof(policies[0]); pi++) {
        policy_ok(policies[pi], &p);
        for (wi = 0; wi < sizeof(weeks) / sizeof(weeks[0]); wi++) {
            int64_t base = weeks[wi], t, next = INT64_MAX;
            /* Walk backwards so `next` is the next in-window minute. */
            for (t = base + 8 * 7 * DAY; t >= base; t -= 60) {
                int in = ref_in_window(&p, t);
                if (in)
                    next = t;
                CHECK(nb_ro_in_window(&p, t) == in, "policy %u t %lld", pi,
                      (long long)t);
                if (t < base + 7 * DAY) {
                    CHECK(nb_ro_window_next(&p, t) == next,
                          "policy %u next(%lld) = %lld, want %lld", pi,
                          (long long)t, (long long)nb_ro_window_next(&p, t),
                          (long long)next);
                    if (!ref_in_window(&p, t + 17))
                        CHECK(nb_ro_window_next(&p, t + 17) ==
                                  (in ? t + 17 : next),
                              "policy %u next(%lld + 17)", pi, (long long)t);
                }
            }
        }
    }
}

/* ------------------------------------------------------------ advance */

static void test_advance_walk(void **state)
{
    static struct nb_ro_policy p;
    int64_t mon = utc(2024, 1, 1, 9, 0), started = 0, t, st;
    unsigned step = 0, s;

    (void)state;
    policy_ok("{\"schedule\": [{\"percent\": 1, \"hold\": \"1d\"},"
              " {\"percent\": 10, \"hold\": \"1d\"}, {\"percent\": 100}]}",
              &p);
    assert_true(nb_ro_in_window(&p, mon));
    /* Ten-minute ticks over a week, state carried like a server. */
    started = mon;
    for (t = mon; t < mon + 7 * DAY; t += 600) {
        step = nb_ro_advance(&p, step, started, t, &started);
        s = t < mon + DAY ? 0 : t < mon + 2 * DAY ? 1 : 2;
        CHECK(step == s, "t %lld: step %u want %u", (long long)t, step, s);
        CHECK(started == mon + (int64_t)s * DAY, "t %lld: started %lld",
              (long long)t, (long long)started);
        /* One call from the start gives the same. */
        CHECK(nb_ro_advance(&p, 0, mon, t, &st) == step && st == started,
              "t %lld: jump differs", (long long)t);
    }
    assert_int_equal(nb_ro_step_ppm(&p, step), 1000000);
    /* Just before the hold ends. */
    assert_int_equal(nb_ro_advance(&p, 0, mon, mon + DAY - 1, &st), 0);
    assert_int_equal(st, mon);
    assert_int_equal(nb_ro_advance(&p, 0, mon, mon + DAY, NULL), 1);
}

static void test_advance_friday(void **state)
{
    static struct nb_ro_policy p;
    int64_t thu = utc(2025, 11, 13, 14, 0), sat = utc(2025, 11, 15, 0, 0);
    int64_t st;

    (void)state;
    /* A hold ending Friday 14:00 waits until Saturday 00:00. */
    policy_ok("{\"schedule\": [{\"percent\": 1, \"hold\": \"1d\"},"
              " {\"percent\": 5, \"hold\": \"1d\"},"
              " {\"percent\": 100}]}", &p);
    assert_int_equal(nb_ro_advance(&p, 0, thu, thu + DAY, &st), 0);
    assert_int_equal(st, thu);
    assert_int_equal(nb_ro_advance(&p, 0, thu, sat - 1, &st), 0);
    assert_int_equal(nb_ro_advance(&p, 0, thu, sat, &st), 1);
    assert_int_equal(st, sat);
    /* A late call (Sunday 10:00): step 1 began Saturday 00:00, computed,
     * and its hold ran out Sunday 00:00, so step 2 began then. */
    assert_int_equal(nb_ro_advance(&p, 0, thu, sat + DAY + 10 * HOUR, &st),
                     2);
    assert_int_equal(st, sat + DAY);
    /* Same with an offset: 14:00 local at +02:00 is 12:00 UTC. */
    policy_ok("{\"utc_offset\": \"+02:00\", \"schedule\": [{\"percent\": 1,"
              " \"hold\": \"1d\"}, {\"percent\": 100}]}", &p);
    assert_int_equal(nb_ro_advance(&p, 0, thu - 2 * HOUR, sat, &st), 1);
    assert_int_equal(st, sat - 2 * HOUR);
    /* Started in the future (at a coming window): no move. */
    assert_int_equal(nb_ro_advance(&p, 0, sat, sat - 1, &st), 0);
    assert_int_equal(st, sat);
}

static void test_advance_edges(void **state)
{
    static struct nb_ro_policy p;
    int64_t st, t0 = utc(2024, 1, 2, 0, 0);

    (void)state;
    /* Zero holds chain in one call; beyond the last is the last. */
    policy_ok("{\"windows\": \"always\", \"schedule\": [{\"percent\": 1,"
              " \"hold\": 0}, {\"percent\": 2, \"hold\": 0}, {\"percent\": 3,"
              " \"hold\": \"1h\"}, {\"percent\": 100}]}", &p);
    assert_int_equal(nb_ro_advance(&p, 0, t0, t0, &st), 2);
    assert_int_equal(st, t0);
    assert_int_equal(nb_ro_advance(&p, 3, t0, t0 + 100 * DAY, &st), 3);
    assert_int_equal(nb_ro_advance(&p, 99, t0, t0, &st), 3);
    assert_int_equal(nb_ro_step_ppm(&p, 99), 1000000);
    assert_int_equal(nb_ro_step_ppm(&p, 2), 30000);
    /* Extremes do not overflow. */
    assert_int_equal(nb_ro_advance(&p, 2, INT64_MIN, INT64_MAX, &st), 3);
    assert_int_equal(st, INT64_MIN + HOUR);
    assert_int_equal(nb_ro_advance(&p, 2, INT64_MAX, INT64_MAX, &st), 2);
    policy_ok("{}", &p);
    (void)nb_ro_advance(&p, 0, INT64_MAX - DAY, INT64_MAX, &st);
    (void)nb_ro_advance(&p, 0, INT64_MIN, INT64_MIN + 5 * DAY, &st);
    /* "ramp 1 every 1d" from a Monday, windows always: step k on day k. */
    policy_ok("{\"windows\": \"always\", \"schedule\": {\"ramp_percent\": 1,"
              " \"every\": \"1d\"}}", &p);
    {
        int64_t started = t0, t;
        unsigned step = 0;
        for (t = t0; t <= t0 + 120 * DAY; t += 6 * HOUR) {
            unsigned want = (unsigned)((t - t0) / DAY);
            step = nb_ro_advance(&p, step, started, t, &started);
            if (want > 99)
                want = 99;
            CHECK(step == want, "ramp day %lld: step %u",
                  (long long)((t - t0) / DAY), step);
            CHECK(nb_ro_step_ppm(&p, step) == (step + 1) * 10000u,
                  "ramp ppm %u", step);
        }
    }
}

/* The rule is memoryless: a call late by any amount gives the state that
 * calls at every tick would have reached, for random policies. */
static void test_advance_late_equals_ticks(void **state)
{
    static struct nb_ro_policy p;
    uint64_t seed = seed_base();
    unsigned n, i;

    (void)state;
    for (n = 0; n < 300; n++) {
        uint64_t s = seed * 7919u + n;
        int64_t start = utc(2024, 1, 1, 0, 0) + (int64_t)rnd(&s, 14 * DAY);
        int64_t started = start, t, st;
        unsigned step = 0;
        memset(&p, 0, sizeof(p));
        p.n_steps = 2 + rnd(&s, 6);
        for (i = 0; i < p.n_steps; i++) {
            p.steps[i].ppm = (i + 1) * (NB_RO_PPM / p.n_steps);
            p.steps[i].hold_s = rnd(&s, 3) ? rnd(&s, 3 * DAY) : 0;
        }
        p.steps[p.n_steps - 1].ppm = NB_RO_PPM;
        p.n_windows = rnd(&s, 4);
        for (i = 0; i < p.n_windows; i++) {
            uint16_t a = (uint16_t)rnd(&s, 1439);
            p.windows[i].days = (uint8_t)(1 + rnd(&s, 127));
            p.windows[i].from_min = a;
            p.windows[i].to_min = (uint16_t)(a + 1 + rnd(&s, 1440 - a));
        }
        p.utc_offset_s = ((int32_t)rnd(&s, 1681) - 840) * 60;
        for (t = start; t < start + 30 * DAY; t += 1 + rnd(&s, 4 * HOUR)) {
            unsigned prev = step;
            int64_t prev_started = started;
            step = nb_ro_advance(&p, step, started, t, &started);
            CHECK(step >= prev, "seed %llu case %u: step went back",
                  (unsigned long long)seed, n);
            /* Each new step starts in a window, not after now, and not
             * before the hold of the step before it ended. */
            if (step != prev) {
                CHECK(ref_in_window(&p, started) && started <= t &&
                          started >= prev_started +
                                         (int64_t)p.steps[prev].hold_s,
                      "seed %llu case %u: step %u started %lld",
                      (unsigned long long)seed, n, step,
                      (long long)started);
            }
            CHECK(nb_ro_advance(&p, 0, start, t, &st) == step &&
                      st == started,
                  "seed %llu case %u t %lld: one late call differs",
                  (unsigned long long)seed, n, (long long)t);
        }
    }
}

/* -------------------------------------------------------------- pause */

/* The two rules as the header states them: from min_attempted on,
 * bad/attempted > threshold; before, bad/min_attempted > threshold. */
static int ref_pause(uint32_t fail_ppm, uint32_t min, uint32_t att,
                     uint32_t bad)
{
    if (att >= min)
        return (uint64_t)bad * 1000000u > (uint64_t)fail_ppm * att;
    return (uint64_t)bad * 1000000u > (uint64_t)fail_ppm * min;
}

static void test_should_pause(void **state)
{
    static struct nb_ro_policy p;
    static const uint32_t thr[] = {0, 1, 10000, 50000, 333333, 1000000};
    static const uint32_t mins[] = {0, 1, 10, 100};
    struct nb_ro_counts c;
    char why[160];
    unsigned a, b, ti, mi;

    (void)state;
    policy_ok("{}", &p); /* 5 %, min_attempted 10 */
#define C(att, f, r, s) (c = (struct nb_ro_counts){att, f, r, s}, &c)
    assert_false(nb_ro_should_pause(&p, C(0, 0, 0, 0)));
    assert_false(nb_ro_should_pause(&p, C(9, 0, 0, 0)));
    /* Early: 1 bad of at least 10 is already 10 % > 5 %. */
    assert_true(nb_ro_should_pause(&p, C(1, 1, 0, 0)));
    assert_true(nb_ro_should_pause(&p, C(3, 0, 1, 0)));
    assert_true(nb_ro_should_pause(&p, C(5, 0, 0, 1)));
    assert_true(nb_ro_should_pause(&p, C(19, 1, 0, 0)));
    assert_false(nb_ro_should_pause(&p, C(20, 1, 0, 0))); /* exactly 5 % */
    assert_false(nb_ro_should_pause(&p, C(40, 2, 0, 0)));
    assert_true(nb_ro_should_pause(&p, C(40, 3, 0, 0)));
    assert_false(nb_ro_should_pause(&p, C(100, 5, 0, 0)));
    /* Silent devices count like failures. */
    assert_true(nb_ro_should_pause(&p, C(100, 0, 0, 6)));
    assert_true(nb_ro_should_pause(&p, C(100, 2, 2, 2)));
    assert_false(nb_ro_should_pause(&p, C(100, 2, 2, 1)));
    /* Per step: 3 failures of the 20 devices of this step pause (15 %),
     * though over the 120 devices of both steps it is 2.5 %; a new step
     * starts with fresh counts. */
    assert_true(nb_ro_should_pause(&p, C(20, 3, 0, 0)));
    assert_false(nb_ro_should_pause(&p, C(120, 3, 0, 0)));
    assert_false(nb_ro_should_pause(&p, C(0, 0, 0, 0)));
    assert_string_equal(nb_ro_pause_reason(&p, C(20, 1, 1, 1), why,
                                           sizeof(why)),
                        "auto: 3 of 20 attempted failed, reverted or went "
                        "silent (15% > 5%)");
    assert_string_equal(nb_ro_pause_reason(&p, C(4, 2, 0, 0), why,
                                           sizeof(why)),
                        "auto: 2 of 4 attempted failed, reverted or went "
                        "silent (already over 5% of min_attempted 10)");
    assert_string_equal(nb_ro_pause_reason(&p, C(20, 1, 0, 0), why,
                                           sizeof(why)), "");
    /* The early rule at its edge: 5 % of min 100 is 5 devices. */
    p.min_attempted = 100;
    assert_false(nb_ro_should_pause(&p, C(5, 5, 0, 0)));
    assert_true(nb_ro_should_pause(&p, C(6, 6, 0, 0)));
    /* Threshold 0: any failure; 100 %: never. */
    policy_ok("{\"failure_threshold\": 0}", &p);
    assert_false(nb_ro_should_pause(&p, C(1000, 0, 0, 0)));
    assert_true(nb_ro_should_pause(&p, C(1000, 0, 0, 1)));
    policy_ok("{\"failure_threshold\": \"100%\"}", &p);
    assert_false(nb_ro_should_pause(&p, C(10, 10, 0, 0)));
    assert_false(nb_ro_should_pause(&p, C(4000000000u, 4000000000u, 0, 0)));
    /* No overflow with huge counts. */
    policy_ok("{}", &p);
    assert_true(nb_ro_should_pause(&p, C(4000000000u, 4000000000u,
                                         4000000000u, 4000000000u)));
    /* Against the rational reference. */
    for (ti = 0; ti < sizeof(thr) / sizeof(thr[0]); ti++)
        for (mi = 0; mi < sizeof(mins) / sizeof(mins[0]); mi++) {
            p.fail_ppm = thr[ti];
            p.min_attempted = mins[mi];
            for (a = 0; a <= 150; a++)
                for (b = 0; b <= a; b++) {
                    int got = nb_ro_should_pause(&p, C(a, b / 3, b / 3,
                                                       b - 2 * (b / 3)));
                    CHECK(got == ref_pause(thr[ti], mins[mi], a, b),
                          "thr %u min %u attempted %u bad %u", thr[ti],
                          mins[mi], a, b);
                    CHECK(got == (nb_ro_pause_reason(&p, &c, why,
                                                     sizeof(why))[0] != 0),
                          "reason vs pause");
                }
        }
#undef C
}

/* ------------------------------------------------------------- match */

static void test_target_match(void **state)
{
    static struct nb_ro_target t;
    const char *eu[] = {"eu"}, *beta_eu[] = {"beta", "eu"}, *us[] = {"us"};
    const char *us_beta[] = {"us", "beta"};

    (void)state;
    assert_int_equal(target_str("{}", &t, NULL, 0), NB_OK);
    assert_true(nb_ro_target_match(&t, "d-1", NULL, NULL, NULL, 0));
    assert_int_equal(target_str("{\"hw_revs\": [\"sim-1\", \"sim-2\"]}", &t,
                                NULL, 0), NB_OK);
    assert_true(nb_ro_target_match(&t, "d-1", "sim-2", NULL, NULL, 0));
    assert_false(nb_ro_target_match(&t, "d-1", "sim-3", NULL, NULL, 0));
    assert_false(nb_ro_target_match(&t, "d-1", "SIM-1", NULL, NULL, 0));
    assert_false(nb_ro_target_match(&t, "d-1", NULL, NULL, NULL, 0));
    assert_int_equal(target_str("{\"tags\": [\"eu\"]}", &t, NULL, 0), NB_OK);
    assert_true(nb_ro_target_match(&t, "d-1", NULL, NULL, eu, 1));
    assert_true(nb_ro_target_match(&t, "d-1", NULL, NULL, beta_eu, 2));
    assert_false(nb_ro_target_match(&t, "d-1", NULL, NULL, us, 1));
    assert_false(nb_ro_target_match(&t, "d-1", NULL, NULL, us_beta, 2));
    assert_false(nb_ro_target_match(&t, "d-1", NULL, NULL, NULL, 0));
    assert_false(nb_ro_target_match(&t, "d-1", NULL, NULL, beta_eu, 1));
    assert_int_equal(target_str("{\"groups\": [\"line-3\"]}", &t, NULL, 0),
                     NB_OK);
    assert_true(nb_ro_target_match(&t, "d-1", NULL, "line-3", NULL, 0));
    assert_false(nb_ro_target_match(&t, "d-1", NULL, "line-4", NULL, 0));
    assert_false(nb_ro_target_match(&t, "d-1", NULL, NULL, NULL, 0));
    assert_int_equal(target_str("{\"devices\": [\"d-1\", \"d-7\"]}", &t,
                                NULL, 0), NB_OK);
    assert_true(nb_ro_target_match(&t, "d-7", NULL, NULL, NULL, 0));
    assert_false(nb_ro_target_match(&t, "d-71", NULL, NULL, NULL, 0));
    assert_false(nb_ro_target_match(&t, NULL, NULL, NULL, NULL, 0));
    /* Modulo: the trailing number, else the ID's SipHash (nb_cohort_fixed:
     * "abc" mod 10 is 6, see test_cohort.c). */
    assert_int_equal(target_str("{\"modulo\": {\"n\": 10, \"residues\":"
                                " [2, 6]}}", &t, NULL, 0), NB_OK);
    assert_true(nb_ro_target_match(&t, "dev-0042", NULL, NULL, NULL, 0));
    assert_true(nb_ro_target_match(&t, "dev-0046", NULL, NULL, NULL, 0));
    assert_false(nb_ro_target_match(&t, "dev-0043", NULL, NULL, NULL, 0));
    assert_true(nb_ro_target_match(&t, "abc", NULL, NULL, NULL, 0));
    assert_false(nb_ro_target_match(&t, "sensor-x", NULL, NULL, NULL, 0));
    assert_false(nb_ro_target_match(&t, NULL, NULL, NULL, NULL, 0));
    /* Every key at once: each must match. */
    assert_int_equal(target_str("{\"hw_revs\": [\"sim-1\"], \"tags\":"
                                " [\"eu\"], \"groups\": [\"line-3\"],"
                                " \"modulo\": {\"n\": 2, \"residues\": [0]},"
                                " \"devices\": [\"d-2\", \"d-3\"]}", &t,
                                NULL, 0), NB_OK);
    assert_true(nb_ro_target_match(&t, "d-2", "sim-1", "line-3", eu, 1));
    assert_false(nb_ro_target_match(&t, "d-3", "sim-1", "line-3", eu, 1));
    assert_false(nb_ro_target_match(&t, "d-2", "sim-2", "line-3", eu, 1));
    assert_false(nb_ro_target_match(&t, "d-2", "sim-1", "line-4", eu, 1));
    assert_false(nb_ro_target_match(&t, "d-2", "sim-1", "line-3", us, 1));
    assert_false(nb_ro_target_match(&t, "d-4", "sim-1", "line-3", eu, 1));
}

static void test_device_reached(void **state)
{
    static struct nb_ro_policy p;
    static const char *const policies[] = {
        "{}", "{\"schedule\": {\"ramp_percent\": 1, \"every\": \"1d\"}}",
        ("{\"schedule\": [{\"percent\": \"0.0001%\"}, {\"percent\": 0.5},"
         " {\"percent\": 100}]}")};
    unsigned pi, i, k, reached[NB_RO_MAX_STEPS];
    char id[32];

    (void)state;
    for (pi = 0; pi < sizeof(policies) / sizeof(policies[0]); pi++) {
        policy_ok(policies[pi], &p);
        memset(reached, 0, sizeof(reached));
        for (i = 0; i < 20000; i++) {
            snprintf(id, sizeof(id), "dev-%05u", i);
            for (k = 0; k < p.n_steps; k++) {
                int r = nb_ro_device_reached(&p, k, "r-9", id);
                reached[k] += (unsigned)r;
                CHECK(r == nb_cohort_in("r-9", id, p.steps[k].ppm),
                      "%s step %u", id, k);
                if (k + 1 < p.n_steps)
                    CHECK(!r || nb_ro_device_reached(&p, k + 1, "r-9", id),
                          "policy %u: %s reached at step %u, not %u", pi, id,
                          k, k + 1);
            }
            CHECK(nb_ro_device_reached(&p, p.n_steps - 1, "r-9", id) &&
                      nb_ro_device_reached(&p, 1000, "r-9", id),
                  "%s not reached at the end", id);
        }
        /* Shares near the steps' (20,000 devices; within 4 sd, plus 3
         * devices for the tiny steps). */
        for (k = 0; k < p.n_steps; k++) {
            double want = 20000.0 * p.steps[k].ppm / 1e6;
            double var = want * (1 - p.steps[k].ppm / 1e6);
            CHECK((reached[k] - want) * (reached[k] - want) <= 16 * var + 9,
                  "policy %u step %u: %u reached, want about %.0f", pi, k,
                  reached[k], want);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_windows_fixed_points),
        cmocka_unit_test(test_windows_sweep),
        cmocka_unit_test(test_advance_walk),
        cmocka_unit_test(test_advance_friday),
        cmocka_unit_test(test_advance_edges),
        cmocka_unit_test(test_advance_late_equals_ticks),
        cmocka_unit_test(test_should_pause),
        cmocka_unit_test(test_target_match),
        cmocka_unit_test(test_device_reached),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
