/* fleet.c - nobrick-sim fleet: the command. Parses the options, builds the
 * fleet (fleet_dev.c), runs it (fleet_run.c), checks every device and
 * prints the tables, the summary line and the report (fleet_check.c).
 *
 * Output: a progress line on stderr while it runs; on stdout the tables
 * and, last, exactly "devices: N, updated: U, reverted: R, bricked: B".
 * Exit status: 0 all good; 1 a device is bricked, the flash saw a
 * strict-NOR violation, or --check-server found a device the server
 * knows wrong; 3 --until was not met before --duration; 64 bad command
 * line. `fleet init` only makes the devices (in --dir) and prints one
 * JSON line.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "fleet.h"
#include "nb_num.h"
#include "nb_sign_openssl.h"

#define EXIT_BAD 1
#define EXIT_UNTIL 3
#define EXIT_USAGE 64

static volatile int stop_flag; /* the only global: set by a signal */

static const char usage[] =
    "usage: nobrick-sim fleet --server URL --devices N [OPTIONS]\n"
    "       nobrick-sim fleet init --dir DIR --devices N [OPTIONS]\n"
    "       nobrick-sim fleet root-pub\n"
    "\n"
    "Runs N simulated devices in one process against a real update server\n"
    "on this machine. Each device has its own simulated flash, the real\n"
    "bootloader core and the real update agent (nb_agent, its HTTP device\n"
    "API client, the curl transport). Devices enrol with the fleet token\n"
    "at their first check-in and keep the token they are given. Faults are\n"
    "injected per device from --seed. At the end every device's flash is\n"
    "checked: the bootloader must boot a verified image, and resets must\n"
    "reach a verified confirmed one. See docs/simulator.md, \"fleet\".\n"
    "'fleet init' makes the devices in --dir and exits. 'fleet root-pub'\n"
    "prints the PEM public key of the TEST root the devices trust, for a\n"
    "server's root_pub (so that it accepts make-image packages).\n"
    "\n"
    "the fleet:\n"
    "  --server URL        device API server, e.g. http://127.0.0.1:8080\n"
    "  --enrol-token T     fleet enrolment token (first check-in); needed\n"
    "                      for devices that have no device token yet\n"
    "  --devices N         number of devices, 1 to 100000\n"
    "  --first-id K        number of the first device (default 1); IDs are\n"
    "                      PREFIX + six digits\n"
    "  --id-prefix P       device ID prefix (default sim-)\n"
    "  --dir DIR           keep each device in DIR: ID.flash (a flash file\n"
    "                      nobrick-sim status reads) and ID.agent (token,\n"
    "                      agent memo); existing devices are reused, so a\n"
    "                      fleet lives on from run to run. Default: memory\n"
    "  --fresh             re-create the devices of --dir from scratch\n"
    "  --hw-revs LIST      hardware revisions and weights, e.g.\n"
    "                      sim-1:90,sim-2:10 (default sim-1)\n"
    "  --tags LIST         tags and weights, e.g. eu:50,us:50: set on each\n"
    "                      device through the management API after it\n"
    "                      enrolled (needs --admin-token)\n"
    "  --image PKG         initial firmware, installed and confirmed on\n"
    "                      every new device (default: 1.0.0, security\n"
    "                      version 1, healthy, for every --hw-revs\n"
    "                      revision)\n"
    "  --image-size BYTES  payload of the default initial image (16384)\n"
    "  --layout L          ab (default), ab-swap or ab-factory\n"
    "  --slot-size BYTES   bytes per slot, 8192 to 16 MiB (default 65536)\n"
    "  --lifecycle L       production (default) or development\n"
    "  --attempts N        trial boots before a trial is rejected (3)\n"
    "\n"
    "faults (per device, from --seed; see docs/simulator.md):\n"
    "  --seed S            seed of every random choice (default 1)\n"
    "  --faults SPEC       none, default or heavy, then CLASS=RATE\n"
    "                      overrides of: power, torn, reset, trial-reset,\n"
    "                      drop, stall, flip, bad-block; e.g.\n"
    "                      default,power=0.3,drop=0\n"
    "\n"
    "time:\n"
    "  --threads J         worker threads (default 4)\n"
    "  --time-scale X      device clocks run X times faster than the wall\n"
    "                      (poll intervals, backoffs, ack timeout;\n"
    "                      default 10)\n"
    "  --poll SECONDS      an idle device checks in again after SECONDS/2 to\n"
    "                      SECONDS of wall time, whatever interval the\n"
    "                      server gave it (default max(2, N/500))\n"
    "  --ramp SECONDS      power the devices on over this time (default:\n"
    "                      --poll)\n"
    "  --until COND        stop when: settled (every device idle with\n"
    "                      nothing left to do, for --settle); or\n"
    "                      version=V[:P%] (P% of devices, default 100, run V\n"
    "                      confirmed and idle)\n"
    "  --settle SECONDS    how long 'settled' must hold (default 2 x --poll)\n"
    "  --duration SECONDS  stop after this long at the latest\n"
    "\n"
    "trust (default: the simulator's TEST root, vendor and class):\n"
    "  --root-pub PEM      the product's root public key: devices trust it\n"
    "                      instead of the TEST root (give it to 'fleet init'\n"
    "                      and to every run on the same --dir)\n"
    "  --vendor UUID       the devices' vendor ID\n"
    "  --class UUID        the devices' class ID\n"
    "\n"
    "output:\n"
    "  --report FILE       JSON: totals and every device's final state\n"
    "  --check-server      compare each device's version with what the\n"
    "                      server last heard (GET /api/v1/devices/ID with\n"
    "                      --admin-token)\n"
    "  --admin-token T     management API token (--tags, --check-server)\n"
    "  --server-pid PID    measure the server process: CPU per check-in,\n"
    "                      RSS (from /proc/PID)\n"
    "  --log FILE          the agents' log lines\n"
    "  --log-level L       error, warn, info (default) or debug\n"
    "  --quiet             no progress line\n"
    "\n"
    "stdout: a table per firmware version (running, confirmed), per agent\n"
    "state and last outcome, the faults fired, then exactly the line\n"
    "'devices: N, updated: U, reverted: R, bricked: B' (updated: the\n"
    "confirmed version changed in this run; reverted: at least one trial\n"
    "reverted; bricked: the flash check failed).\n"
    "exit status: 0 all good; 1 a device bricked, a flash violation, or a\n"
    "server mismatch (--check-server); 3 --until not met before --duration;\n"
    "64 bad command line.\n";

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...)
{
    va_list ap;
    fputs("nobrick-sim fleet: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (see nobrick-sim fleet --help)\n", stderr);
    return EXIT_USAGE;
}

static int num(const char *opt, const char *s, uint64_t min, uint64_t max,
               uint64_t *out)
{
    char msg[256];
    enum nb_num_status st = nb_parse_u64(s, min, max, out);
    if (st == NB_NUM_OK)
        return 0;
    nb_num_message(st, opt, s, min, max, msg, sizeof(msg));
    return bad("%s", msg);
}

static int real(const char *opt, const char *s, double min, double max,
                double *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (!s[0] || *end || !isfinite(v) || v < min || v > max)
        return bad("%s: '%s' is not a number from %g to %g", opt, s, min,
                   max);
    *out = v;
    return 0;
}

/* "name:weight,..." (weight 1 to 1000000, default 1). */
static int weighted(const char *opt, const char *s, struct fleet_weighted *w,
                    unsigned max, unsigned *count)
{
    char buf[1024];
    *count = 0;
    if (strlen(s) >= sizeof(buf))
        return bad("%s: too long", opt);
    memcpy(buf, s, strlen(s) + 1);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(t, ':');
        uint64_t wt = 1;
        if (colon) {
            *colon = '\0';
            if (num(opt, colon + 1, 1, 1000000, &wt))
                return EXIT_USAGE;
        }
        size_t n = strlen(t);
        int ok = n > 0 && n < FLEET_TAG_NAME_MAX && n <= NB_HW_REV_MAX;
        for (size_t i = 0; ok && i < n; i++)
            ok = t[i] > ' ' && t[i] <= '~' && t[i] != '"' && t[i] != '\\';
        if (!ok || *count == max)
            return bad("%s: '%s': at most %u names of 1 to 32 printable "
                       "characters, each with an optional :WEIGHT", opt, s,
                       max);
        for (unsigned i = 0; i < *count; i++)
            if (strcmp(w[i].name, t) == 0)
                return bad("%s: '%s' is given twice", opt, t);
        memcpy(w[*count].name, t, n + 1);
        w[*count].weight = (unsigned)wt;
        (*count)++;
    }
    return *count ? 0 : bad("%s: empty list", opt);
}

enum {
    O_SERVER, O_ENROL, O_DEVICES, O_FIRST, O_PREFIX, O_DIR, O_FRESH, O_HW,
    O_TAGS, O_IMAGE, O_IMAGE_SIZE, O_LAYOUT, O_SLOT, O_LIFECYCLE, O_ATTEMPTS,
    O_SEED, O_FAULTS, O_THREADS, O_SCALE, O_POLL, O_RAMP, O_UNTIL, O_SETTLE,
    O_DURATION, O_REPORT, O_CHECK, O_ADMIN, O_PID, O_LOG, O_LEVEL, O_QUIET,
    O_ROOT, O_VENDOR, O_CLASS, O_COUNT
};

static const struct {
    const char *name;
    int value;
} opts[O_COUNT] = {
    {"--server", 1},    {"--enrol-token", 1}, {"--devices", 1},
    {"--first-id", 1},  {"--id-prefix", 1},   {"--dir", 1},
    {"--fresh", 0},     {"--hw-revs", 1},     {"--tags", 1},
    {"--image", 1},     {"--image-size", 1},  {"--layout", 1},
    {"--slot-size", 1}, {"--lifecycle", 1},   {"--attempts", 1},
    {"--seed", 1},      {"--faults", 1},      {"--threads", 1},
    {"--time-scale", 1}, {"--poll", 1},       {"--ramp", 1},
    {"--until", 1},     {"--settle", 1},      {"--duration", 1},
    {"--report", 1},    {"--check-server", 0}, {"--admin-token", 1},
    {"--server-pid", 1}, {"--log", 1},        {"--log-level", 1},
    {"--quiet", 0},     {"--root-pub", 1},    {"--vendor", 1},
    {"--class", 1},
};

/* Returns 0, 1 for --help, or EXIT_USAGE. */
static int parse_argv(int argc, char **argv, const char *val[O_COUNT])
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        int k = 0;
        while (k < O_COUNT && !(strlen(opts[k].name) == n &&
                                strncmp(opts[k].name, a, n) == 0))
            k++;
        if (k == O_COUNT)
            return bad("unknown option or argument '%s'", a);
        if (val[k])
            return bad("%s is given twice", opts[k].name);
        if (!opts[k].value) {
            if (eq)
                return bad("%s takes no value", opts[k].name);
            val[k] = "1";
        } else if (eq) {
            val[k] = eq + 1;
        } else if (i + 1 < argc) {
            val[k] = argv[++i];
        } else {
            return bad("%s needs a value", opts[k].name);
        }
    }
    return 0;
}

static int parse_until(const char *s, struct fleet_opts *o)
{
    if (strcmp(s, "settled") == 0) {
        o->until = FLEET_UNTIL_SETTLED;
        return 0;
    }
    if (strcmp(s, "none") == 0)
        return 0;
    if (strncmp(s, "version=", 8) != 0)
        return bad("--until '%s': settled, or version=V[:P%%]", s);
    char v[32];
    const char *colon = strchr(s + 8, ':');
    size_t n = colon ? (size_t)(colon - s - 8) : strlen(s + 8);
    o->until_share = 1.0;
    if (n >= sizeof(v))
        return bad("--until '%s': bad version", s);
    memcpy(v, s + 8, n);
    v[n] = '\0';
    if (!nb_agent_version_parse(v, &o->until_version))
        return bad("--until '%s': bad version (M.m.p)", s);
    if (colon) {
        char pct[16];
        size_t pl = strlen(colon + 1);
        double p;
        if (pl == 0 || pl >= sizeof(pct) || colon[pl] != '%')
            return bad("--until '%s': the share is P%% (0 to 100)", s);
        memcpy(pct, colon + 1, pl - 1);
        pct[pl - 1] = '\0';
        if (real("--until", pct, 0, 100, &p))
            return EXIT_USAGE;
        o->until_share = p / 100.0;
    }
    o->until = FLEET_UNTIL_VERSION;
    return 0;
}

static int parse_opts(const char *v[O_COUNT], struct fleet_opts *o, int init)
{
    uint64_t x;
    double d;
    char err[256];
    memset(o, 0, sizeof(*o));
    o->init_only = init;
    o->server = v[O_SERVER];
    o->enrol_token = v[O_ENROL];
    o->admin_token = v[O_ADMIN];
    o->dir = v[O_DIR];
    o->image = v[O_IMAGE];
    o->report = v[O_REPORT];
    o->log = v[O_LOG];
    o->id_prefix = v[O_PREFIX] ? v[O_PREFIX] : "sim-";
    o->fresh = v[O_FRESH] != NULL;
    o->check_server = v[O_CHECK] != NULL;
    o->quiet = v[O_QUIET] != NULL;
    o->root_pub = v[O_ROOT];
    o->vendor = v[O_VENDOR];
    o->class_id = v[O_CLASS];
    if (!v[O_DEVICES])
        return bad("--devices is required");
    if (num("--devices", v[O_DEVICES], 1, FLEET_MAX_DEVICES, &x))
        return EXIT_USAGE;
    o->devices = (uint32_t)x;
    x = 1;
    if (v[O_FIRST] && num("--first-id", v[O_FIRST], 0, 99999999, &x))
        return EXIT_USAGE;
    o->first_id = (uint32_t)x;
    if ((uint64_t)o->first_id + o->devices - 1 > 999999999)
        return bad("--first-id + --devices is too large");
    if (strlen(o->id_prefix) > 40)
        return bad("--id-prefix: at most 40 characters");
    x = 4;
    if (v[O_THREADS] && num("--threads", v[O_THREADS], 1, 256, &x))
        return EXIT_USAGE;
    o->threads = (uint32_t)(x > o->devices ? o->devices : x);
    x = 16384;
    if (v[O_IMAGE_SIZE] &&
        num("--image-size", v[O_IMAGE_SIZE], FLEET_TAG_SIZE, 16u << 20, &x))
        return EXIT_USAGE;
    o->image_size = (uint32_t)x;
    x = 65536;
    if (v[O_SLOT] && num("--slot-size", v[O_SLOT], 8192, 16u << 20, &x))
        return EXIT_USAGE;
    o->slot_size = (uint32_t)x;
    const char *lay = v[O_LAYOUT] ? v[O_LAYOUT] : "ab";
    o->layout = strcmp(lay, "ab") == 0          ? NB_LAYOUT_AB
                : strcmp(lay, "ab-swap") == 0    ? NB_LAYOUT_AB_SWAP
                : strcmp(lay, "ab-factory") == 0 ? NB_LAYOUT_AB_FACTORY
                                                 : 0;
    if (!o->layout)
        return bad("--layout '%s': ab, ab-swap or ab-factory", lay);
    o->lifecycle = NB_LIFECYCLE_PRODUCTION;
    if (v[O_LIFECYCLE] && !(o->lifecycle = cli_lifecycle(v[O_LIFECYCLE])))
        return bad("--lifecycle '%s': production or development",
                   v[O_LIFECYCLE]);
    x = NB_DEFAULT_ATTEMPT_LIMIT;
    if (v[O_ATTEMPTS] && num("--attempts", v[O_ATTEMPTS], 1, 255, &x))
        return EXIT_USAGE;
    o->attempts = (uint8_t)x;
    if (weighted("--hw-revs", v[O_HW] ? v[O_HW] : "sim-1", o->hw,
                 FLEET_MAX_HW, &o->hw_count))
        return EXIT_USAGE;
    if (v[O_TAGS] && weighted("--tags", v[O_TAGS], o->tags, FLEET_MAX_TAGS,
                              &o->tag_count))
        return EXIT_USAGE;
    if (o->tag_count && !o->admin_token)
        return bad("--tags needs --admin-token (tags are set through the "
                   "management API)");
    if (o->check_server && !o->admin_token)
        return bad("--check-server needs --admin-token");
    o->seed = 1;
    if (v[O_SEED] && num("--seed", v[O_SEED], 0, UINT64_MAX, &o->seed))
        return EXIT_USAGE;
    snprintf(o->faults_spec, sizeof(o->faults_spec), "%s",
             v[O_FAULTS] ? v[O_FAULTS] : "default");
    if (fleet_faults_parse(o->faults_spec, &o->faults, err, sizeof(err)))
        return bad("%s", err);
    o->time_scale = 10;
    if (v[O_SCALE] && real("--time-scale", v[O_SCALE], 0.01, 100000,
                           &o->time_scale))
        return EXIT_USAGE;
    d = o->devices / 500.0 > 2 ? o->devices / 500.0 : 2;
    if (v[O_POLL] && real("--poll", v[O_POLL], 0.05, 86400, &d))
        return EXIT_USAGE;
    o->poll_ms = (uint32_t)(d * 1000);
    if (v[O_RAMP] && real("--ramp", v[O_RAMP], 0, 86400, &d))
        return EXIT_USAGE;
    o->ramp_ms = (uint32_t)(d * 1000);
    d = 2.0 * o->poll_ms / 1000.0;
    if (v[O_SETTLE] && real("--settle", v[O_SETTLE], 0, 86400, &d))
        return EXIT_USAGE;
    o->settle_ms = (uint32_t)(d * 1000);
    d = 0;
    if (v[O_DURATION] && real("--duration", v[O_DURATION], 0.1, 1e7, &d))
        return EXIT_USAGE;
    o->duration_ms = (uint64_t)(d * 1000);
    if (v[O_UNTIL] && parse_until(v[O_UNTIL], o))
        return EXIT_USAGE;
    x = 0;
    if (v[O_PID] && num("--server-pid", v[O_PID], 1, 4194304, &x))
        return EXIT_USAGE;
    o->server_pid = (long)x;
    const char *lv = v[O_LEVEL] ? v[O_LEVEL] : "info";
    o->log_level = strcmp(lv, "error") == 0  ? NB_AGENT_LOG_ERROR
                   : strcmp(lv, "warn") == 0 ? NB_AGENT_LOG_WARN
                   : strcmp(lv, "info") == 0 ? NB_AGENT_LOG_INFO
                   : strcmp(lv, "debug") == 0 ? NB_AGENT_LOG_DEBUG
                                              : -1;
    if (o->log_level < 0)
        return bad("--log-level '%s': error, warn, info or debug", lv);
    if (o->init_only) {
        if (!o->dir)
            return bad("fleet init needs --dir (the devices are kept there)");
        return 0;
    }
    if (!o->server)
        return bad("--server is required");
    if (strncmp(o->server, "http://", 7) != 0 &&
        strncmp(o->server, "https://", 8) != 0)
        return bad("--server '%s': an http:// or https:// URL", o->server);
    if (!o->enrol_token && !o->dir)
        return bad("--enrol-token is required (devices in memory have no "
                   "token yet)");
    if (o->until == FLEET_UNTIL_NONE && !o->duration_ms)
        return bad("give --until or --duration (or both)");
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

/* Room for a socket per busy device and a flash file each. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int init_only(struct fleet *f)
{
    struct json j;
    json_init(&j);
    json_bool(&j, "ok", 1);
    json_str(&j, "command", "fleet init");
    json_str(&j, "dir", f->o.dir);
    json_u64(&j, "devices", f->n);
    json_version(&j, "image", f->initial_version);
    json_str(&j, "layout", nb_layout_name(f->layout.kind));
    json_u64(&j, "slot_size", f->o.slot_size);
    json_emit(&j);
    return 0;
}

/* fleet root-pub: the TEST root's public key as PEM on stdout. */
static int root_pub(void)
{
    struct nb_openssl_crypto oc;
    struct nb_crypto c;
    struct nb_testkeys k;
    char pem[NB_OPENSSL_PUB_PEM_MAX];
    int rc = EXIT_BAD;
    if (nb_crypto_openssl_init(&c, &oc) != NB_OK)
        return EXIT_BAD;
    if (nb_testkeys_init(&k, &c) == NB_OK) {
        if (nb_openssl_pub_to_pem(k.root.pub, pem, sizeof(pem), NULL) ==
            NB_OK) {
            fputs(pem, stdout);
            rc = 0;
        }
        nb_testkeys_free(&k);
    }
    nb_crypto_openssl_free(&c, &oc);
    if (rc)
        fprintf(stderr, "nobrick-sim fleet: cannot derive the TEST root\n");
    return rc;
}

int fleet_main(int argc, char **argv)
{
    const char *val[O_COUNT] = {0};
    if (argc == 2 && strcmp(argv[1], "root-pub") == 0)
        return root_pub();
    static struct fleet f; /* large; one per process */
    int init = argc > 1 && strcmp(argv[1], "init") == 0;
    int rc = parse_argv(argc - init, argv + init, val);
    if (rc == 1) {
        fputs(usage, stdout);
        return 0;
    }
    if (rc)
        return rc;
    memset(&f, 0, sizeof(f));
    f.stop = &stop_flag;
    if ((rc = parse_opts(val, &f.o, init)) != 0)
        return rc;
    if (!val[O_RAMP])
        f.o.ramp_ms = f.o.poll_ms;
    json_object_seed(0);
    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&f.log_lock, NULL);
    rc = EXIT_BAD;
    if (nb_curl_global_init() != NB_OK ||
        nb_crypto_openssl_init(&f.crypto, &f.oc) != NB_OK ||
        nb_testkeys_init(&f.keys, &f.crypto) != NB_OK) {
        fprintf(stderr, "nobrick-sim fleet: cannot set up libcurl, the "
                "crypto port or the test keys\n");
        goto out;
    }
    f.keys_ok = 1;
    if (f.o.root_pub && fleet_trust_root(&f))
        goto out;
    if (f.o.log && !(f.log = fopen(f.o.log, "a"))) {
        fprintf(stderr, "nobrick-sim fleet: %s: cannot open the log\n",
                f.o.log);
        goto out;
    }
    if (fleet_devices_create(&f))
        goto out;
    if (init) {
        rc = init_only(&f);
        goto out;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; /* a second ^C ends the process at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (!f.o.quiet) {
        char spec[200];
        fleet_faults_str(&f.o.faults, spec, sizeof(spec));
        fprintf(stderr, "fleet: %u devices %s%06u.., %u threads, time x%g, "
                "poll <= %.1f s; faults %s\n", (unsigned)f.n, f.o.id_prefix,
                (unsigned)f.o.first_id, (unsigned)f.o.threads,
                f.o.time_scale, f.o.poll_ms / 1000.0, spec);
    }
    if (fleet_run(&f))
        goto out;
    if (f.o.check_server)
        fleet_check_server(&f);
    uint32_t inv = 0, bricked = fleet_summary(&f, &inv);
    if (f.o.report && fleet_report_write(&f, f.o.report))
        goto out;
    rc = bricked || inv ? EXIT_BAD
         : f.o.until != FLEET_UNTIL_NONE && !f.until_met ? EXIT_UNTIL
                                                          : 0;
out:
    fleet_devices_free(&f);
    fleet_workers_free(&f);
    if (f.log)
        fclose(f.log);
    if (f.keys_ok)
        nb_testkeys_free(&f.keys);
    nb_crypto_openssl_free(&f.crypto, &f.oc);
    nb_curl_global_cleanup();
    pthread_mutex_destroy(&f.log_lock);
    return rc;
}
