/* test_rollout.c - the rollout forms (cmd/nobrick-server/rollout.h):
 * parsing of every key of the policy and target JSON, the defaults and
 * every refusal (each must name its key, on one line); the canonical JSON
 * round trip (fixed cases, golden texts, 2000 random policies). The
 * running rules (windows, advance, pause, matching) are in
 * test_rollout_run.c.
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

/* Policy JSON must be refused, with one line that contains `key`. */
static void policy_bad(const char *text, const char *key)
{
    static struct nb_ro_policy p;
    char err[200];
    nb_err e = policy_str(text, &p, err, sizeof(err));
    CHECK(e == NB_ERR_INVAL, "policy %s accepted (%d)", text, (int)e);
    CHECK(strstr(err, key) != NULL, "policy %s: error \"%s\" lacks \"%s\"",
          text, err, key);
    CHECK(strchr(err, '\n') == NULL, "policy %s: two lines", text);
}

static void target_bad(const char *text, const char *key)
{
    static struct nb_ro_target t;
    char err[200];
    nb_err e = target_str(text, &t, err, sizeof(err));
    CHECK(e == NB_ERR_INVAL, "target %s accepted (%d)", text, (int)e);
    CHECK(strstr(err, key) != NULL, "target %s: error \"%s\" lacks \"%s\"",
          text, err, key);
}

/* parse(json(p)) == p, also through the text form. */
static void round_trip(const struct nb_ro_policy *p, const char *what)
{
    static struct nb_ro_policy q, r;
    char err[200];
    json_t *j = nb_ro_policy_json(p), *k;
    char *text;

    CHECK(j != NULL, "%s: no JSON", what);
    CHECK(nb_ro_policy_parse(j, &q, err, sizeof(err)) == NB_OK,
          "%s: canonical JSON refused: %s", what, err);
    CHECK(memcmp(p, &q, sizeof(q)) == 0, "%s: round trip differs", what);
    text = json_dumps(j, JSON_COMPACT);
    k = json_loads(text, 0, NULL);
    CHECK(k && nb_ro_policy_parse(k, &r, err, sizeof(err)) == NB_OK &&
              memcmp(p, &r, sizeof(r)) == 0,
          "%s: text round trip differs: %s", what, text);
    free(text);
    json_decref(j);
    json_decref(k);
}

/* ------------------------------------------------------------ parsing */

static void test_policy_defaults(void **state)
{
    static struct nb_ro_policy a, b, c;
    json_t *null = json_null();

    (void)state;
    assert_int_equal(nb_ro_policy_parse(NULL, &a, NULL, 0), NB_OK);
    assert_int_equal(nb_ro_policy_parse(null, &b, NULL, 0), NB_OK);
    policy_ok("{}", &c);
    json_decref(null);
    assert_memory_equal(&a, &b, sizeof(a));
    assert_memory_equal(&a, &c, sizeof(a));
    assert_int_equal(a.n_steps, 4);
    assert_int_equal(a.steps[0].ppm, 10000);
    assert_int_equal(a.steps[1].ppm, 100000);
    assert_int_equal(a.steps[2].ppm, 500000);
    assert_int_equal(a.steps[3].ppm, 1000000);
    assert_int_equal(a.steps[0].hold_s, DAY);
    assert_int_equal(a.steps[2].hold_s, DAY);
    assert_int_equal(a.steps[3].hold_s, 0);
    assert_int_equal(a.n_windows, 3);
    assert_int_equal(a.utc_offset_s, 0);
    assert_int_equal(a.fail_ppm, 50000);
    assert_int_equal(a.min_attempted, 10);
    assert_int_equal(a.silent_s, 6 * HOUR);
}

static void test_policy_every_key(void **state)
{
    static struct nb_ro_policy p;

    (void)state;
    policy_ok("{\"schedule\": [{\"percent\": 0.5, \"hold\": \"90s\"},"
              " {\"percent\": \"2.25%\", \"hold\": \"30m\"},"
              " {\"percent\": 5, \"hold\": \"6h\"},"
              " {\"percent\": \"10%\", \"hold\": \"1w\"},"
              " {\"percent\": 20, \"hold\": 7200},"
              " {\"percent\": 30},"
              " {\"percent\": 100, \"hold\": \"3d\"}],"
              " \"windows\": [{\"days\": \"mon-thu\", \"from\": \"08:00\","
              " \"to\": \"17:30\"}, {\"days\": \"sat, sun\"},"
              " {\"days\": \"fri-mon\", \"to\": \"06:00\"}, {}],"
              " \"utc_offset\": \"-05:30\", \"failure_threshold\": 0.025,"
              " \"min_attempted\": 50, \"silent_timeout\": \"2d\"}",
              &p);
    assert_int_equal(p.n_steps, 7);
    assert_int_equal(p.steps[0].ppm, 5000);
    assert_int_equal(p.steps[0].hold_s, 90);
    assert_int_equal(p.steps[1].ppm, 22500);
    assert_int_equal(p.steps[1].hold_s, 1800);
    assert_int_equal(p.steps[2].hold_s, 6 * HOUR);
    assert_int_equal(p.steps[3].hold_s, 7 * DAY);
    assert_int_equal(p.steps[4].hold_s, 7200);
    assert_int_equal(p.steps[5].hold_s, DAY); /* default hold */
    assert_int_equal(p.steps[6].hold_s, 0);   /* last: ignored */
    assert_int_equal(p.n_windows, 4);
    assert_int_equal(p.windows[0].days, 0x0f);
    assert_int_equal(p.windows[0].from_min, 480);
    assert_int_equal(p.windows[0].to_min, 1050);
    assert_int_equal(p.windows[1].days, 0x60);
    assert_int_equal(p.windows[1].from_min, 0);
    assert_int_equal(p.windows[1].to_min, 1440);
    assert_int_equal(p.windows[2].days, 0x71); /* fri sat sun mon */
    assert_int_equal(p.windows[2].to_min, 360);
    assert_int_equal(p.windows[3].days, 0x7f);
    assert_int_equal(p.utc_offset_s, -(5 * HOUR + 30 * 60));
    assert_int_equal(p.fail_ppm, 25000);
    assert_int_equal(p.min_attempted, 50);
    assert_int_equal(p.silent_s, 2 * DAY);
    round_trip(&p, "every key");

    policy_ok("{\"windows\": \"always\", \"utc_offset\": \"+14:00\","
              " \"failure_threshold\": \"0.0001%\", \"min_attempted\": 0,"
              " \"silent_timeout\": 1, \"schedule\": [{\"percent\": 100}]}",
              &p);
    assert_int_equal(p.n_windows, 0);
    assert_int_equal(p.utc_offset_s, 14 * HOUR);
    assert_int_equal(p.fail_ppm, 1);
    assert_int_equal(p.min_attempted, 0);
    assert_int_equal(p.silent_s, 1);
    assert_int_equal(p.n_steps, 1);
    round_trip(&p, "always");
    policy_ok("{\"failure_threshold\": 1, \"utc_offset\": \"-00:00\"}", &p);
    assert_int_equal(p.fail_ppm, 1000000);
    assert_int_equal(p.utc_offset_s, 0);
    policy_ok("{\"failure_threshold\": \"0%\"}", &p);
    assert_int_equal(p.fail_ppm, 0);
}

static void test_ramp(void **state)
{
    static struct nb_ro_policy p;
    unsigned i;

    (void)state;
    policy_ok("{\"schedule\": {\"ramp_percent\": 1, \"every\": \"1d\"}}", &p);
    assert_int_equal(p.n_steps, 100);
    for (i = 0; i < 100; i++) {
        CHECK(p.steps[i].ppm == (i + 1) * 10000u, "step %u", i);
        CHECK(p.steps[i].hold_s == (i < 99 ? DAY : 0u), "hold %u", i);
    }
    round_trip(&p, "ramp 1");
    policy_ok("{\"schedule\": {\"ramp_percent\": \"30%\", \"every\": 60}}",
              &p);
    assert_int_equal(p.n_steps, 4);
    assert_int_equal(p.steps[2].ppm, 900000);
    assert_int_equal(p.steps[3].ppm, 1000000);
    policy_ok("{\"schedule\": {\"ramp_percent\": 3, \"every\": \"1h\"}}", &p);
    assert_int_equal(p.n_steps, 34);
    assert_int_equal(p.steps[32].ppm, 990000);
    policy_ok("{\"schedule\": {\"ramp_percent\": 100, \"every\": \"1h\"}}",
              &p);
    assert_int_equal(p.n_steps, 1);
    policy_ok("{\"schedule\": {\"ramp_percent\": 0.7813, \"every\": \"1h\"}}",
              &p);
    assert_int_equal(p.n_steps, NB_RO_MAX_STEPS);
    round_trip(&p, "ramp 0.7813");
    policy_bad("{\"schedule\": {\"ramp_percent\": 0.78, \"every\": \"1h\"}}",
               "policy.schedule.ramp_percent");
    policy_bad("{\"schedule\": {\"ramp_percent\": 0, \"every\": \"1h\"}}",
               "policy.schedule.ramp_percent");
    policy_bad("{\"schedule\": {\"ramp_percent\": 1}}",
               "policy.schedule.every");
    policy_bad("{\"schedule\": {\"every\": \"1d\"}}",
               "policy.schedule.ramp_percent");
    policy_bad("{\"schedule\": {\"ramp_percent\": 1, \"every\": 0}}",
               "policy.schedule.every");
    policy_bad("{\"schedule\": {\"ramp_percent\": 1, \"every\": \"1d\","
               " \"start\": 1}}", "unknown key \"start\"");
}

static void test_durations_and_percents(void **state)
{
    static const struct { const char *v; uint32_t s; } dur[] = {
        {"\"90s\"", 90}, {"\"30m\"", 1800}, {"\"6h\"", 21600},
        {"\"1d\"", 86400}, {"\"1w\"", 604800}, {"3600", 3600},
        {"\"0s\"", 0}, {"0", 0}, {"\"007m\"", 420}, {"\"366d\"", 31622400},
        {"31622400", 31622400}};
    static const char *const bad_dur[] = {
        "-1", "\"-1s\"", "\"1.5h\"", "\"6 h\"", "\"h\"", "\"6x\"", "\"\"",
        "\"6hh\"", "3600.0", "\"367d\"", "31622401", "99999999999999",
        "\"1000000000000s\"", "\"53w\"", "true", "null", "[1]"};
    static const struct { const char *v; uint32_t ppm; } pct[] = {
        {"5", 50000}, {"0.5", 5000}, {"\"5%\"", 50000}, {"\"0.5%\"", 5000},
        {"\"0.0001%\"", 1}, {"0.0001", 1}, {"\"100%\"", 1000000},
        {"100", 1000000}, {"100.0", 1000000}, {"\"12.3400%\"", 123400},
        {"33.3333", 333333}};
    static const char *const bad_pct[] = {
        "0", "\"0%\"", "-1", "-0.5", "101", "100.0001", "\"101%\"",
        "\"100.0001%\"", "\"5\"", "\"5 %\"", "\"%\"", "\"0.00001%\"",
        "0.00001", "1e300", "-1e300", "\"abc\"", "true", "null",
        "\"-5%\"", "\"5.%\"", "\".5%\"", "\"+5%\"", "\"5%%\"", "\"1000%\""};
    static struct nb_ro_policy p;
    char text[160];
    unsigned i;

    (void)state;
    for (i = 0; i < sizeof(dur) / sizeof(dur[0]); i++) {
        snprintf(text, sizeof(text),
                 "{\"schedule\": [{\"percent\": 1, \"hold\": %s},"
                 " {\"percent\": 100}]}", dur[i].v);
        policy_ok(text, &p);
        CHECK(p.steps[0].hold_s == dur[i].s, "hold %s: %u", dur[i].v,
              p.steps[0].hold_s);
    }
    for (i = 0; i < sizeof(bad_dur) / sizeof(bad_dur[0]); i++) {
        snprintf(text, sizeof(text),
                 "{\"schedule\": [{\"percent\": 1, \"hold\": %s},"
                 " {\"percent\": 100}]}", bad_dur[i]);
        policy_bad(text, "policy.schedule[0].hold");
        snprintf(text, sizeof(text), "{\"silent_timeout\": %s}", bad_dur[i]);
        policy_bad(text, "policy.silent_timeout");
    }
    policy_bad("{\"silent_timeout\": 0}", "policy.silent_timeout");
    policy_bad("{\"silent_timeout\": -1}",
               "policy.silent_timeout: must not be negative");
    policy_bad("{\"silent_timeout\": \"0h\"}", "policy.silent_timeout");
    for (i = 0; i < sizeof(pct) / sizeof(pct[0]); i++) {
        snprintf(text, sizeof(text),
                 "{\"schedule\": [{\"percent\": %s}, {\"percent\": 100}]}",
                 pct[i].v);
        if (pct[i].ppm == 1000000)
            snprintf(text, sizeof(text),
                     "{\"schedule\": [{\"percent\": %s}]}", pct[i].v);
        policy_ok(text, &p);
        CHECK(p.steps[0].ppm == pct[i].ppm, "percent %s: %u", pct[i].v,
              p.steps[0].ppm);
    }
    for (i = 0; i < sizeof(bad_pct) / sizeof(bad_pct[0]); i++) {
        snprintf(text, sizeof(text),
                 "{\"schedule\": [{\"percent\": %s}, {\"percent\": 100}]}",
                 bad_pct[i]);
        policy_bad(text, "policy.schedule[0].percent");
    }
    /* failure_threshold: fraction or percent string. */
    policy_ok("{\"failure_threshold\": 0.05}", &p);
    assert_int_equal(p.fail_ppm, 50000);
    policy_ok("{\"failure_threshold\": \"2.5%\"}", &p);
    assert_int_equal(p.fail_ppm, 25000);
    policy_bad("{\"failure_threshold\": 5}", "policy.failure_threshold");
    policy_bad("{\"failure_threshold\": -0.01}", "policy.failure_threshold");
    policy_bad("{\"failure_threshold\": \"150%\"}",
               "policy.failure_threshold");
    policy_bad("{\"failure_threshold\": 0.0000001}",
               "policy.failure_threshold");
    policy_bad("{\"failure_threshold\": 1e300}", "policy.failure_threshold");
    policy_bad("{\"min_attempted\": -1}", "policy.min_attempted");
    policy_bad("{\"min_attempted\": 1.5}", "policy.min_attempted");
    policy_bad("{\"min_attempted\": \"10\"}", "policy.min_attempted");
    policy_bad("{\"min_attempted\": 1000001}", "policy.min_attempted");
    policy_bad("{\"min_attempted\": 9223372036854775807}",
               "policy.min_attempted");
}

static void test_policy_errors(void **state)
{
    static struct nb_ro_policy p;
    char text[4096], err[16];
    size_t at;
    unsigned i;

    (void)state;
    policy_bad("[]", "policy");
    policy_bad("\"always\"", "policy");
    policy_bad("{\"foo\": 1}", "policy: unknown key \"foo\"");
    policy_bad("{\"schedule\": [{\"percent\": 100, \"hodl\": \"1d\"}]}",
               "policy.schedule[0]: unknown key \"hodl\"");
    policy_bad("{\"schedule\": []}", "policy.schedule");
    policy_bad("{\"schedule\": \"fast\"}", "policy.schedule");
    policy_bad("{\"schedule\": [5, 100]}", "policy.schedule[0]");
    policy_bad("{\"schedule\": [{\"hold\": \"1d\"}, {\"percent\": 100}]}",
               "policy.schedule[0].percent: missing");
    policy_bad("{\"schedule\": [{\"percent\": 10}, {\"percent\": 5},"
               " {\"percent\": 100}]}", "policy.schedule[1].percent");
    policy_bad("{\"schedule\": [{\"percent\": 10}, {\"percent\": 10},"
               " {\"percent\": 100}]}", "policy.schedule[1].percent");
    policy_bad("{\"schedule\": [{\"percent\": 10}, {\"percent\": 50}]}",
               "policy.schedule[1].percent");
    policy_bad("{\"schedule\": [{\"percent\": 100}, {\"percent\": 100}]}",
               "policy.schedule[1].percent");
    /* 129 steps (0.7 %, 1.4 %, ... 89.6 %, 100 %); 128 are fine. */
    at = (size_t)snprintf(text, sizeof(text), "{\"schedule\": [");
    for (i = 1; i <= 128; i++)
        at += (size_t)snprintf(text + at, sizeof(text) - at,
                               "{\"percent\": \"%u.%04u%%\"}, ",
                               i * 7000 / 10000, i * 7000 % 10000);
    snprintf(text + at, sizeof(text) - at, "{\"percent\": 100}]}");
    policy_bad(text, "policy.schedule: more than 128 steps");
    at = (size_t)snprintf(text, sizeof(text), "{\"schedule\": [");
    for (i = 1; i <= 127; i++)
        at += (size_t)snprintf(text + at, sizeof(text) - at,
                               "{\"percent\": \"%u.%04u%%\"}, ",
                               i * 7000 / 10000, i * 7000 % 10000);
    snprintf(text + at, sizeof(text) - at, "{\"percent\": 100}]}");
    policy_ok(text, &p);
    assert_int_equal(p.n_steps, 128);
    /* Windows. */
    policy_bad("{\"windows\": []}", "policy.windows");
    policy_bad("{\"windows\": \"never\"}", "policy.windows");
    policy_bad("{\"windows\": [{\"days\": \"mon\", \"at\": \"1\"}]}",
               "policy.windows[0]: unknown key \"at\"");
    policy_bad("{\"windows\": [{\"from\": \"12:00\", \"to\": \"12:00\"}]}",
               "policy.windows[0].to");
    policy_bad("{\"windows\": [{\"from\": \"22:00\", \"to\": \"06:00\"}]}",
               "policy.windows[0].to");
    policy_bad("{\"windows\": [{\"from\": \"24:00\"}]}",
               "policy.windows[0].from");
    policy_bad("{\"windows\": [{}, {\"to\": \"25:00\"}]}",
               "policy.windows[1].to");
    policy_bad("{\"windows\": [{\"to\": \"12:60\"}]}", "policy.windows[0].to");
    policy_bad("{\"windows\": [{\"to\": \"24:01\"}]}", "policy.windows[0].to");
    policy_bad("{\"windows\": [{\"from\": \"9:00\"}]}",
               "policy.windows[0].from");
    policy_bad("{\"windows\": [{\"from\": 900}]}", "policy.windows[0].from");
    policy_bad("{\"windows\": [{\"days\": \"monday\"}]}",
               "policy.windows[0].days");
    policy_bad("{\"windows\": [{\"days\": \"Mon\"}]}",
               "policy.windows[0].days");
    policy_bad("{\"windows\": [{\"days\": \"mon-\"}]}",
               "policy.windows[0].days");
    policy_bad("{\"windows\": [{\"days\": \"mon,\"}]}",
               "policy.windows[0].days");
    policy_bad("{\"windows\": [{\"days\": \"\"}]}", "policy.windows[0].days");
    policy_bad("{\"windows\": [{\"days\": \"mon,mon\"}]}",
               "policy.windows[0].days: mon given twice");
    policy_bad("{\"windows\": [{\"days\": \"mon-wed,tue\"}]}",
               "policy.windows[0].days: tue given twice");
    policy_bad("{\"windows\": [{\"days\": [\"mon\"]}]}",
               "policy.windows[0].days");
    policy_bad("{\"windows\": [{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {},"
               " {}, {}, {}, {}, {}, {}]}", "policy.windows");
    policy_ok("{\"windows\": [{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {},"
              " {}, {}, {}, {}, {}]}", &p);
    /* Offsets. */
    policy_bad("{\"utc_offset\": \"+1:00\"}", "policy.utc_offset");
    policy_bad("{\"utc_offset\": \"01:00\"}", "policy.utc_offset");
    policy_bad("{\"utc_offset\": \"+15:00\"}", "policy.utc_offset");
    policy_bad("{\"utc_offset\": \"+14:01\"}", "policy.utc_offset");
    policy_bad("{\"utc_offset\": \"+01:60\"}", "policy.utc_offset");
    policy_bad("{\"utc_offset\": 3600}", "policy.utc_offset");
    policy_bad("{\"utc_offset\": \"UTC\"}", "policy.utc_offset");
    /* One line, cut to the buffer; NULL buffer allowed. */
    assert_int_equal(policy_str("{\"foo\": 1}", &p, err, sizeof(err)),
                     NB_ERR_INVAL);
    assert_int_equal(strlen(err), sizeof(err) - 1);
    assert_int_equal(policy_str("{\"foo\": 1}", &p, NULL, 0), NB_ERR_INVAL);
    /* Success clears an old message. */
    policy_ok("{}", &p);
    strcpy(err, "old");
    assert_int_equal(policy_str("{}", &p, err, sizeof(err)), NB_OK);
    assert_string_equal(err, "");
}

static void test_canonical(void **state)
{
    static struct nb_ro_policy p, q;
    static const char golden[] =
        "{\"schedule\":[{\"percent\":1,\"hold\":\"1d\"},{\"percent\":10,"
        "\"hold\":\"1d\"},{\"percent\":50,\"hold\":\"1d\"},{\"percent\":100}],"
        "\"windows\":[{\"days\":\"mon-thu\",\"from\":\"00:00\",\"to\":"
        "\"24:00\"},{\"days\":\"fri\",\"from\":\"00:00\",\"to\":\"12:00\"},"
        "{\"days\":\"sat,sun\",\"from\":\"00:00\",\"to\":\"24:00\"}],"
        "\"utc_offset\":\"+00:00\",\"failure_threshold\":\"5%\","
        "\"min_attempted\":10,\"silent_timeout\":\"6h\"}";
    uint64_t seed = seed_base();
    json_t *j;
    char *text;
    unsigned n, i;

    (void)state;
    policy_ok("{}", &p);
    j = nb_ro_policy_json(&p);
    text = json_dumps(j, JSON_COMPACT);
    assert_string_equal(text, golden);
    free(text);
    json_decref(j);
    round_trip(&p, "defaults");
    policy_ok("{\"schedule\": [{\"percent\": 0.5, \"hold\": 5400},"
              " {\"percent\": \"12.34%\", \"hold\": 45}, {\"percent\": 100}],"
              " \"windows\": [{\"days\": \"sun,mon,wed-fri\","
              " \"from\": \"07:05\", \"to\": \"23:59\"}],"
              " \"utc_offset\": \"-09:30\", \"failure_threshold\": 0.001234}",
              &p);
    j = nb_ro_policy_json(&p);
    text = json_dumps(j, JSON_COMPACT);
    assert_string_equal(
        text,
        "{\"schedule\":[{\"percent\":\"0.5%\",\"hold\":\"90m\"},{\"percent\":"
        "\"12.34%\",\"hold\":\"45s\"},{\"percent\":100}],\"windows\":[{"
        "\"days\":\"mon,wed-fri,sun\",\"from\":\"07:05\",\"to\":\"23:59\"}],"
        "\"utc_offset\":\"-09:30\",\"failure_threshold\":\"0.1234%\","
        "\"min_attempted\":10,\"silent_timeout\":\"6h\"}");
    free(text);
    json_decref(j);
    round_trip(&p, "odd");
    /* Random valid policies: parse(json(p)) == p. */
    for (n = 0; n < 2000; n++) {
        char what[64];
        uint64_t s = seed + n;
        memset(&p, 0, sizeof(p));
        p.n_steps = 1 + rnd(&s, NB_RO_MAX_STEPS);
        for (i = 0; i + 1 < p.n_steps; i++) {
            p.steps[i].ppm = (i ? p.steps[i - 1].ppm : 0) + 1 + rnd(&s, 7000);
            p.steps[i].hold_s = rnd(&s, 4) ? rnd(&s, NB_RO_MAX_DURATION_S + 1)
                                           : rnd(&s, 8) * 3600u;
        }
        p.steps[i].ppm = NB_RO_PPM;
        p.n_windows = rnd(&s, NB_RO_MAX_WINDOWS + 1);
        for (i = 0; i < p.n_windows; i++) {
            uint16_t a = (uint16_t)rnd(&s, 1440), b = (uint16_t)rnd(&s, 1441);
            if (a == b)
                b = (uint16_t)(a + 1);
            p.windows[i].days = (uint8_t)(1 + rnd(&s, 127));
            p.windows[i].from_min = a < b ? a : b;
            p.windows[i].to_min = a < b ? b : a;
        }
        p.utc_offset_s = ((int32_t)rnd(&s, 1681) - 840) * 60;
        p.fail_ppm =
            rnd(&s, 2) ? rnd(&s, NB_RO_PPM + 1) : rnd(&s, 101) * 10000;
        p.min_attempted = rnd(&s, NB_RO_PPM + 1);
        p.silent_s = 1 + rnd(&s, NB_RO_MAX_DURATION_S);
        snprintf(what, sizeof(what), "seed %llu case %u",
                 (unsigned long long)seed, n);
        round_trip(&p, what);
        /* Canonical is a fixed point: json(parse(json(p))) == json(p). */
        j = nb_ro_policy_json(&p);
        assert_int_equal(nb_ro_policy_parse(j, &q, NULL, 0), NB_OK);
        {
            json_t *k = nb_ro_policy_json(&q);
            CHECK(json_equal(j, k), "%s: canonical JSON not stable", what);
            json_decref(k);
        }
        json_decref(j);
    }
}

static void test_target_parse(void **state)
{
    static struct nb_ro_target t, u;
    char err[200], text[4096];
    json_t *j;
    char *s;
    size_t at;
    unsigned i;

    (void)state;
    assert_int_equal(nb_ro_target_parse(NULL, &t, err, sizeof(err)), NB_OK);
    memset(&u, 0, sizeof(u));
    assert_memory_equal(&t, &u, sizeof(t));
    j = nb_ro_target_json(&t);
    s = json_dumps(j, JSON_COMPACT);
    assert_string_equal(s, "{}");
    free(s);
    json_decref(j);
    assert_int_equal(target_str("{\"hw_revs\": [\"sim-1\", \"rev B/2\"],"
                                " \"tags\": [\"eu\", \"beta\"], \"groups\":"
                                " [\"line-3\"], \"modulo\": {\"n\": 10,"
                                " \"residues\": [0, 9]}, \"devices\":"
                                " [\"d-1\", \"D_2.x\"]}", &t, err,
                                sizeof(err)),
                     NB_OK);
    assert_int_equal(t.n_hw_revs, 2);
    assert_string_equal(t.hw_revs[1], "rev B/2");
    assert_int_equal(t.n_tags, 2);
    assert_string_equal(t.tags[1], "beta");
    assert_int_equal(t.n_groups, 1);
    assert_int_equal(t.modulo, 10);
    assert_int_equal(t.n_residues, 2);
    assert_int_equal(t.residues[1], 9);
    assert_int_equal(t.n_devices, 2);
    assert_string_equal(t.devices[1], "D_2.x");
    j = nb_ro_target_json(&t);
    assert_int_equal(nb_ro_target_parse(j, &u, err, sizeof(err)), NB_OK);
    assert_memory_equal(&t, &u, sizeof(t));
    json_decref(j);
    /* 32 values of 64 characters each are the limit. */
    at = (size_t)snprintf(text, sizeof(text), "{\"devices\": [");
    for (i = 0; i < 32; i++)
        at += (size_t)snprintf(text + at, sizeof(text) - at,
                               "\"%060u-%03u\"%s", 0, i, i < 31 ? "," : "");
    snprintf(text + at, sizeof(text) - at, "]}");
    assert_int_equal(target_str(text, &t, err, sizeof(err)), NB_OK);
    assert_int_equal(strlen(t.devices[31]), 64);
    snprintf(text + at, sizeof(text) - at, ",\"x\"]}");
    target_bad(text, "target.devices: more than 32");

    target_bad("[]", "target");
    target_bad("{\"hw_rev\": [\"a\"]}", "target: unknown key \"hw_rev\"");
    target_bad("{\"tags\": []}", "target.tags");
    target_bad("{\"tags\": \"eu\"}", "target.tags");
    target_bad("{\"tags\": [1]}", "target.tags[0]");
    target_bad("{\"tags\": [\"eu\", \"e u\"]}", "target.tags[1]");
    target_bad("{\"groups\": [\"\"]}", "target.groups[0]");
    target_bad("{\"devices\": [\"a\", \"a\"]}", "target.devices[1]");
    /* An embedded NUL (jansson keeps it with JSON_ALLOW_NUL). */
    j = json_pack("{s:[o]}", "devices", json_stringn("d\0x", 3));
    assert_int_equal(nb_ro_target_parse(j, &t, err, sizeof(err)),
                     NB_ERR_INVAL);
    assert_non_null(strstr(err, "target.devices[0]"));
    json_decref(j);
    target_bad("{\"hw_revs\": [\"tab\\there\"]}", "target.hw_revs[0]");
    target_bad("{\"hw_revs\": [\"" /* 65 characters */
               "0123456789012345678901234567890123456789"
               "0123456789012345678901234"
               "\"]}", "target.hw_revs[0]");
    target_bad("{\"modulo\": 10}", "target.modulo");
    target_bad("{\"modulo\": {\"n\": 1, \"residues\": [0]}}",
               "target.modulo.n");
    target_bad("{\"modulo\": {\"n\": 257, \"residues\": [0]}}",
               "target.modulo.n");
    target_bad("{\"modulo\": {\"n\": 2.0, \"residues\": [0]}}",
               "target.modulo.n");
    target_bad("{\"modulo\": {\"residues\": [0]}}", "target.modulo.n");
    target_bad("{\"modulo\": {\"n\": 4}}", "target.modulo.residues");
    target_bad("{\"modulo\": {\"n\": 4, \"residues\": []}}",
               "target.modulo.residues");
    target_bad("{\"modulo\": {\"n\": 4, \"residues\": [4]}}",
               "target.modulo.residues[0]");
    target_bad("{\"modulo\": {\"n\": 4, \"residues\": [1, -1]}}",
               "target.modulo.residues[1]");
    target_bad("{\"modulo\": {\"n\": 4, \"residues\": [1, 1]}}",
               "target.modulo.residues[1]");
    target_bad("{\"modulo\": {\"n\": 4, \"residues\": [1], \"m\": 2}}",
               "target.modulo: unknown key \"m\"");
    assert_int_equal(target_str("{\"modulo\": {\"n\": 256, \"residues\":"
                                " [255, 0]}}", &t, err, sizeof(err)),
                     NB_OK);
    assert_int_equal(t.residues[0], 255);
}

static void test_ppm_str(void **state)
{
    static const struct { uint32_t ppm; const char *s; } v[] = {
        {0, "0%"}, {1, "0.0001%"}, {10, "0.001%"}, {5000, "0.5%"},
        {50000, "5%"}, {123400, "12.34%"}, {333333, "33.3333%"},
        {1000000, "100%"}};
    char buf[16];
    unsigned i;

    (void)state;
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        assert_string_equal(nb_ro_ppm_str(v[i].ppm, buf, sizeof(buf)),
                            v[i].s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_defaults),
        cmocka_unit_test(test_policy_every_key),
        cmocka_unit_test(test_ramp),
        cmocka_unit_test(test_durations_and_percents),
        cmocka_unit_test(test_policy_errors),
        cmocka_unit_test(test_canonical),
        cmocka_unit_test(test_target_parse),
        cmocka_unit_test(test_ppm_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
