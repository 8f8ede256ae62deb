/* server_rollouts.c - `nobrick server rollouts ...`: list, show (state,
 * reach as a bar, devices per state), pause, resume, abort, and wait
 * (poll until a state or a percentage, for scripts and demos); create is
 * in server_policy.c. See server.h and docs/server-api.md#rollouts. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

static const char usage_rollouts[] =
    "usage: nobrick server rollouts create --package ID ... (see create --help)\n"
    "       nobrick server rollouts [list] [--limit N]\n"
    "       nobrick server rollouts show ID\n"
    "       nobrick server rollouts pause ID [--reason TEXT]\n"
    "       nobrick server rollouts resume ID\n"
    "       nobrick server rollouts abort ID\n"
    "       nobrick server rollouts wait ID --until COND [--timeout DUR]\n"
    "         [--interval DUR]\n"
    "\n"
    "create  offer a package to a target, in steps; prints the rollout ID\n"
    "list    the rollouts: package, state, step and share of the target\n"
    "        reached; --limit N shows at most N (default 100; 0: all)\n"
    "show    one rollout: state, pause reason, step, reach, devices per\n"
    "        state, this step's failures, target and policy\n"
    "pause   stop new offers (devices updating go on); --reason says why\n"
    "resume  run again: the current step starts over (its hold and counts)\n"
    "abort   end the rollout for good: no new offers; devices mid-update\n"
    "        finish or revert\n"
    "wait    ask every --interval (default 2s) until COND holds: a state\n"
    "        (running, paused, aborted, completed) or percent>=X (the share\n"
    "        of the target reached). Exit 1 when --timeout passes first or\n"
    "        the rollout ends without reaching it (e.g. aborted while\n"
    "        waiting for completed). Default: no timeout.\n"
    "\n"
    "Durations: seconds, or a number with ms, s, m, h, d or w.\n"
    "\n"
    "server options: --server URL, --token-file FILE, --cacert FILE, --json\n"
    "(see 'nobrick server --help').\n";

/* The step as people count: the API's step is 0-based (step 1 of
 * the default 1%, 10%, 50%, 100% is 10%). */
static void step_text(const json_t *r, char *out, size_t cap)
{
    int64_t step, steps;
    if (js_int(r, "step", &step) && js_int(r, "steps", &steps))
        snprintf(out, cap, "%" PRId64 " of %" PRId64, step + 1, steps);
    else
        snprintf(out, cap, "-");
}

/* "rollout r-3: running, step 2 of 4, 10.0% of the target" */
static void summary(const json_t *r, const char *id, char *out, size_t cap)
{
    char st[128], state[32], reason[512], step[48];
    double pct = 0;
    js_text(NULL, json_object_get(r, "state"), state, sizeof(state));
    js_text(NULL, json_object_get(r, "pause_reason"), reason, sizeof(reason));
    step_text(r, step, sizeof(step));
    js_num(r, "percent", &pct);
    snprintf(st, sizeof(st), "step %s, %.1f%% of the target", step, pct);
    char rid[SRV_ID_MAX + 1];
    if (json_object_get(r, "id"))
        js_text(NULL, json_object_get(r, "id"), rid, sizeof(rid));
    else
        snprintf(rid, sizeof(rid), "%s", id);
    if (strcmp(state, "paused") == 0 && strcmp(reason, "-") != 0)
        snprintf(out, cap, "rollout %s: paused at %s: %s", rid, st, reason);
    else
        snprintf(out, cap, "rollout %s: %s, %s", rid, state, st);
}

#define HELP_SHOWN (-1)

/* The command line of a command on one rollout, then the session:
 * 0, HELP_SHOWN (usage printed), or an exit status after reporting. */
static int one_id(struct srv *s, int argc, char **argv, struct opt *o,
                  size_t n, char **id)
{
    char *pos[1];
    size_t npos;
    int rc = srv_parse(s, argc, argv, o, n, pos, 1, &npos);
    if (rc == 1)
        return fputs(usage_rollouts, stdout), HELP_SHOWN;
    if (rc)
        return rc;
    if (npos != 1)
        return usage_err(s->cmd, "which rollout? give its ID");
    if (srv_check_id(s, "rollout", pos[0]))
        return EXIT_USAGE;
    *id = pos[0];
    srv_about(s, pos[0]);
    return srv_open(s);
}

static int rollout_path(struct srv *s, const char *id, const char *tail,
                        char *out, size_t cap)
{
    char *e = srv_esc(s, id);
    if (!e)
        return EXIT_FAIL;
    snprintf(out, cap, "/rollouts/%s%s", e, tail);
    curl_free(e);
    return 0;
}

static int get(struct srv *s, const char *id, json_t **r)
{
    char path[SRV_ID_MAX * 3 + 32];
    if (rollout_path(s, id, "", path, sizeof(path)))
        return EXIT_FAIL;
    return srv_json(s, "GET", path, NULL, r);
}

/* ------------------------------------------------------------- list */

static int list(struct srv *s, int argc, char **argv)
{
    struct opt o[] = {{.name = "--limit", .kind = OPT_VALUE}};
    size_t npos;
    int rc = srv_parse(s, argc, argv, o, NOPTS(o), NULL, 0, &npos);
    if (rc == 1)
        return fputs(usage_rollouts, stdout), EXIT_OK;
    if (rc)
        return rc;
    uint64_t limit = 100;
    if (o[0].set && parse_u64(s->cmd, "--limit", o[0].value, 0, 100000000,
                              &limit))
        return EXIT_USAGE;
    if ((rc = srv_open(s)))
        return rc;
    json_t *items;
    int more;
    if (srv_list(s, "/rollouts", NULL, limit, &items, &more))
        return EXIT_FAIL;
    if (s->json) {
        json_t *doc = json_pack("{s:O,s:b}", "items", items, "more", more);
        srv_print_json(doc);
        json_decref(doc);
        json_decref(items);
        return EXIT_OK;
    }
    static const char *const hdr[] = {"ID",   "PACKAGE", "VERSION", "STATE",
                                      "STEP", "REACH",   "CREATED"};
    struct table t;
    table_init(&t, 7, hdr);
    size_t i;
    json_t *it;
    rc = 0;
    json_array_foreach(items, i, it)
    {
        char c[7][128];
        const char *cells[7];
        double pct;
        js_text("id", json_object_get(it, "id"), c[0], sizeof(c[0]));
        js_text("package", json_object_get(it, "package"), c[1], sizeof(c[1]));
        js_text("version", json_object_get(it, "version"), c[2], sizeof(c[2]));
        js_text("state", json_object_get(it, "state"), c[3], sizeof(c[3]));
        step_text(it, c[4], sizeof(c[4]));
        if (js_num(it, "percent", &pct))
            snprintf(c[5], sizeof(c[5]), "%.1f%%", pct);
        else
            snprintf(c[5], sizeof(c[5]), "-");
        js_text("created_at", json_object_get(it, "created_at"), c[6],
                sizeof(c[6]));
        for (int k = 0; k < 7; k++)
            cells[k] = c[k];
        if ((rc = table_row(&t, cells)))
            break;
    }
    if (!rc)
        table_print(&t);
    table_free(&t);
    if (!rc && more)
        warn("showing the first %" PRIu64 " rollouts; --limit N shows more "
             "(0: all)", limit);
    json_decref(items);
    return rc;
}

/* ------------------------------------------------------------- show */

static void show_text(const json_t *r)
{
    char v[1024], a[256], b[256];
    double pct = 0;
    int64_t x;
    js_text(NULL, json_object_get(r, "id"), v, sizeof(v));
    print_kv(0, "rollout", v);
    js_text(NULL, json_object_get(r, "state"), v, sizeof(v));
    print_kv(0, "state", v);
    if (json_is_string(json_object_get(r, "pause_reason"))) {
        js_text(NULL, json_object_get(r, "pause_reason"), v, sizeof(v));
        print_kv(0, "pause reason", v);
    }
    js_text(NULL, json_object_get(r, "package"), a, sizeof(a));
    js_text(NULL, json_object_get(r, "version"), b, sizeof(b));
    snprintf(v, sizeof(v), "%s (version %s)", a, b);
    print_kv(0, "package", v);
    step_text(r, a, sizeof(a));
    size_t vl = (size_t)snprintf(v, sizeof(v), "%s", a);
    if (js_int(r, "step_started_at", &x) && x > 0) {
        fmt_time((uint64_t)x, b);
        vl += (size_t)snprintf(v + vl, sizeof(v) - vl, ", since %s", b);
    }
    if (js_int(r, "next_step_at", &x) && x > 0 && vl < sizeof(v)) {
        fmt_time((uint64_t)x, b);
        snprintf(v + vl, sizeof(v) - vl, "; the next from %s", b);
    }
    print_kv(0, "step", v);
    if (js_num(r, "percent", &pct)) {
        fmt_bar(pct, 32, a, sizeof(a));
        snprintf(v, sizeof(v), "%s %5.1f%% of the target", a, pct);
        print_kv(0, "reach", v);
    }
    json_t *w = json_object_get(r, "in_window");
    if (json_is_boolean(w))
        print_kv(0, "window", json_is_true(w)
                                  ? "open now"
                                  : "closed now (no new offers, no steps)");
    json_t *counts = json_object_get(r, "counts");
    if (json_is_object(counts)) {
        const char *k;
        json_t *n;
        int64_t total = 0;
        print_kv(0, "devices by state", "");
        json_object_foreach(counts, k, n)
        {
            js_text(k, n, v, sizeof(v));
            print_kv(2, k, v);
            if (json_is_integer(n))
                total += (int64_t)json_integer_value(n);
        }
        snprintf(v, sizeof(v), "%" PRId64, total);
        print_kv(2, "total", v);
    }
    json_t *sc = json_object_get(r, "step_counts");
    if (json_is_object(sc)) {
        print_kv(0, "this step", "");
        print_object(sc, 2, NULL);
    }
    static const char *const rest[][2] = {{"target", "target"},
                                          {"policy", "policy"},
                                          {"created_at", "created"},
                                          {"updated_at", "updated"}};
    for (size_t i = 0; i < NOPTS(rest); i++) {
        json_t *m = json_object_get(r, rest[i][0]);
        if (!m)
            continue;
        js_text(rest[i][0], m, v, sizeof(v));
        print_kv(0, rest[i][1], v);
    }
    /* Members this version does not know of, as they are. */
    static const char *const known[] = {
        "id",        "state",        "pause_reason", "package",
        "version",   "step",         "steps",        "step_started_at",
        "percent",   "next_step_at", "in_window",    "devices",
        "counts",    "step_counts",  "target",       "policy",
        "created_at", "updated_at",  NULL};
    print_object(r, 0, known);
    fflush(stdout);
}

static int show(struct srv *s, int argc, char **argv)
{
    char *id;
    int rc = one_id(s, argc, argv, NULL, 0, &id);
    if (rc)
        return rc == HELP_SHOWN ? EXIT_OK : rc;
    json_t *r;
    if (get(s, id, &r))
        return EXIT_FAIL;
    if (s->json)
        srv_print_json(r);
    else
        show_text(r);
    json_decref(r);
    return EXIT_OK;
}

/* ------------------------------------------- pause, resume, abort */

static int action(struct srv *s, int argc, char **argv, const char *verb)
{
    struct opt o[] = {{.name = "--reason", .kind = OPT_VALUE}};
    int pause = strcmp(verb, "pause") == 0;
    char *id;
    int rc = one_id(s, argc, argv, o, pause ? 1 : 0, &id);
    if (rc)
        return rc == HELP_SHOWN ? EXIT_OK : rc;
    json_t *body = NULL, *r = NULL;
    if (o[0].set) {
        size_t n = strlen(o[0].value);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)o[0].value[i] < 0x20 || o[0].value[i] == 0x7F)
                return usage_err(s->cmd, "--reason: no control characters");
        if (n > 400) /* the server's bound */
            return usage_err(s->cmd, "--reason: at most 400 bytes");
        body = json_pack("{s:s}", "reason", o[0].value);
        if (!body)
            return fail("%s: --reason is not valid UTF-8", s->cmd);
    }
    char path[SRV_ID_MAX * 3 + 32], tail[16];
    snprintf(tail, sizeof(tail), "/%s", verb);
    if (!(rc = rollout_path(s, id, tail, path, sizeof(path))))
        rc = srv_json(s, "POST", path, body, &r);
    json_decref(body);
    if (rc)
        return rc;
    if (s->json) {
        srv_print_json(r);
    } else {
        char line[1024];
        summary(r, id, line, sizeof(line));
        puts(line);
        fflush(stdout);
    }
    json_decref(r);
    return EXIT_OK;
}

static int pause_(struct srv *s, int argc, char **argv)
{
    return action(s, argc, argv, "pause");
}

static int resume(struct srv *s, int argc, char **argv)
{
    return action(s, argc, argv, "resume");
}

static int abort_(struct srv *s, int argc, char **argv)
{
    return action(s, argc, argv, "abort");
}

/* ------------------------------------------------------------- wait */

struct until {
    char state[16]; /* "" for a percentage */
    double percent;
};

static int parse_until(struct srv *s, const char *v, struct until *u)
{
    static const char *const states[] = {"running", "paused", "aborted",
                                         "completed"};
    memset(u, 0, sizeof(*u));
    for (size_t i = 0; i < NOPTS(states); i++)
        if (strcmp(v, states[i]) == 0) {
            snprintf(u->state, sizeof(u->state), "%s", v);
            return 0;
        }
    if (strncmp(v, "percent>=", 9) == 0) {
        const char *x = v + 9;
        size_t n = strlen(x);
        if (n && x[n - 1] == '%')
            n--;
        size_t d = strspn(x, "0123456789");
        int ok = d > 0 && d <= 3;
        if (ok && d < n)
            ok = x[d] == '.' && d + 1 < n && n - d - 1 <= 4 &&
                 strspn(x + d + 1, "0123456789") == n - d - 1;
        if (ok) {
            char t[16];
            snprintf(t, sizeof(t), "%.*s", (int)n, x);
            u->percent = strtod(t, NULL);
            if (u->percent <= 100)
                return 0;
        }
    }
    return usage_err(s->cmd, "--until: '%s' is not running, paused, aborted, "
                     "completed or percent>=X (X from 0 to 100)", v);
}

/* 1 when the rollout is there; -1 when it never will be (it ended). */
static int reached(const struct until *u, const json_t *r)
{
    const char *st = js_str(r, "state");
    double pct = 0;
    js_num(r, "percent", &pct);
    if (!st)
        st = "";
    int ended = strcmp(st, "aborted") == 0 || strcmp(st, "completed") == 0;
    if (u->state[0]) {
        if (strcmp(st, u->state) == 0)
            return 1;
        return ended ? -1 : 0;
    }
    if (pct + 1e-9 >= u->percent)
        return 1;
    return ended ? -1 : 0;
}

static void sleep_s(double s)
{
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int wait_(struct srv *s, int argc, char **argv)
{
    enum { UNTIL, TIMEOUT, INTERVAL };
    struct opt o[] = {[UNTIL] = {.name = "--until", .kind = OPT_VALUE},
                      [TIMEOUT] = {.name = "--timeout", .kind = OPT_VALUE},
                      [INTERVAL] = {.name = "--interval", .kind = OPT_VALUE}};
    char *pos[1];
    size_t npos;
    int rc = srv_parse(s, argc, argv, o, NOPTS(o), pos, 1, &npos);
    if (rc == 1)
        return fputs(usage_rollouts, stdout), EXIT_OK;
    if (rc)
        return rc;
    if (npos != 1)
        return usage_err(s->cmd, "which rollout? give its ID");
    if (!o[UNTIL].set)
        return usage_err(s->cmd, "--until is required (e.g. completed, "
                                 "paused or percent>=10)");
    struct until u;
    uint64_t timeout_ms = 0, interval_ms = 2000;
    if (srv_check_id(s, "rollout", pos[0]) ||
        parse_until(s, o[UNTIL].value, &u) ||
        (o[TIMEOUT].set && srv_duration(s, "--timeout", o[TIMEOUT].value,
                                        366ull * 86400, &timeout_ms)) ||
        (o[INTERVAL].set && srv_duration(s, "--interval", o[INTERVAL].value,
                                         86400, &interval_ms)))
        return EXIT_USAGE;
    if (interval_ms < 100)
        return usage_err(s->cmd, "--interval: at least 100ms");
    srv_about(s, pos[0]);
    if ((rc = srv_open(s)))
        return rc;
    int tty = isatty(STDERR_FILENO), drawn = 0;
    double t0 = now_s(), deadline = t0 + (double)timeout_ms / 1000.0;
    json_t *r = NULL;
    char line[1024];
    for (;;) {
        json_decref(r);
        r = NULL;
        if (get(s, pos[0], &r)) {
            rc = EXIT_FAIL;
            break;
        }
        int k = reached(&u, r);
        summary(r, pos[0], line, sizeof(line));
        if (drawn)
            fputs("\r\033[K", stderr);
        drawn = 0;
        if (k > 0) {
            rc = EXIT_OK;
            break;
        }
        if (k < 0) {
            rc = fail("%s: %s: it has ended without reaching %s", s->cmd,
                      line, o[UNTIL].value);
            break;
        }
        double now = now_s();
        if (timeout_ms && now >= deadline) {
            rc = fail("%s: timed out after %.0f s waiting for %s: %s",
                      s->cmd, now - t0, o[UNTIL].value, line);
            break;
        }
        if (tty) {
            fprintf(stderr, "waiting for %s (%.0f s): %s\033[K",
                    o[UNTIL].value, now - t0, line);
            fflush(stderr);
            drawn = 1;
        }
        double nap = (double)interval_ms / 1000.0;
        if (timeout_ms && now + nap > deadline)
            nap = deadline - now;
        sleep_s(nap > 0 ? nap : 0);
    }
    if (drawn)
        fputs("\r\033[K", stderr);
    if (rc == EXIT_OK) {
        if (s->json)
            srv_print_json(r);
        else
            puts(line);
        fflush(stdout);
    }
    json_decref(r);
    return rc;
}

int srv_rollouts(struct srv *s, int argc, char **argv)
{
    static const struct srv_sub subs[] = {
        {"list", list},     {"create", srv_rollouts_create},
        {"show", show},     {"pause", pause_},
        {"resume", resume}, {"abort", abort_},
        {"wait", wait_},
    };
    return srv_group(s, "rollouts", subs, NOPTS(subs), usage_rollouts, argc,
                     argv);
}
