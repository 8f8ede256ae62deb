/* main.c - nobrick-agent: the update agent of one device, as a program.
 *
 * A thin main over agent.c: it reads the settings (config.c), opens the
 * device's flash (a simulated flash file, through cmd/nobrick-sim's
 * simdev.c; or an MTD or block device, through ports/posix's
 * nb_flash_dev.c, with the layout planned from the settings), wires the
 * ports into a struct nb_agent_config - the device API over libcurl +
 * jansson (api_http.c), the transports (ports/curl, ports/mqtt,
 * ports/posix's file transport), the health check command (health.c),
 * the clock, the random source, the log - and runs the step loop,
 * sleeping until the next step is due.
 *
 * The simulated device trusts the TEST root of lib/nb_testpkg.h (keys
 * anyone can recompute): it is a simulator. A real device has its own
 * keystore port (root public keys in a secure element or OTP) and its own
 * flash port; only this wiring changes, not agent.c. The MTD and block
 * backends are that flash port for Linux-class devices; the keystore here
 * is the test root unless root_pub names the product's root keys.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "agent.h"
#include "api_http.h"
#include "config.h"
#include "health.h"
#include "nb_flash_dev.h"
#include "nb_sign_openssl.h"
#include "nb_transport_file.h"
#include "simdev.h"

#ifdef NB_AGENT_HAVE_CURL
#include "nb_transport_curl.h"
#endif
#ifdef NB_AGENT_HAVE_MQTT
#include "nb_transport_mqtt.h"
#endif

#define EXIT_OK 0
#define EXIT_FAILED 1
#define EXIT_REVERTED 2
#define EXIT_OFFLINE 3
#define EXIT_USAGE 64

#define RXBUF_SIZE 16384u

static volatile sig_atomic_t stop_signal; /* the only global: a signal */

static const char usage[] =
    "usage: nobrick-agent [--config FILE] [--once] [--KEY VALUE ...]\n"
    "       nobrick-agent --provision [--config FILE] [--KEY VALUE ...]\n"
    "\n"
    "The update agent of one device: checks in with the update server,\n"
    "downloads an offered package block by block into the inactive slot of\n"
    "the device's flash (resuming where it stopped), verifies it, reboots\n"
    "into the bootloader (simulated: the bootloader core runs on the same\n"
    "flash), runs the health check of the trial image and confirms it only\n"
    "when the server has acknowledged the health report; otherwise the\n"
    "trial is reverted. See docs/agent.md.\n"
    "\n"
    "  --config FILE   settings, one 'key = value' per line ('#' comments)\n"
    "  --once          run one update cycle (power-on, check-in, and the\n"
    "                  update if one is offered), then exit\n"
    "  --provision     flash_type mtd or block: write the boot journal on\n"
    "                  a device that has none (layout from the settings,\n"
    "                  every slot empty, lifecycle production), then exit;\n"
    "                  a device that has one is left alone. The agent\n"
    "                  refuses to start on a device without a journal.\n"
    "  --KEY VALUE     any key below (also --KEY=VALUE; '-' or '_'): wins\n"
    "                  over the config file\n"
    "  --sim-power-cut P[:torn]\n"
    "                  tests, flash_type sim only: cut the simulated\n"
    "                  flash's power at its first operation after P %\n"
    "                  (0 to 99) of the payload has arrived (torn: that\n"
    "                  operation is torn); the agent stops as a device\n"
    "                  without power does, and the next start is the\n"
    "                  power-on\n"
    "  --help          this text\n"
    "\n"
    "keys:\n";

static const char usage_tail[] =
    "\n"
    "The flash is a simulated flash file ('nobrick-sim init'), or with\n"
    "flash_type mtd or block an MTD or block device (or a plain file); the\n"
    "device trusts the TEST root of lib/nb_testpkg.h, as nobrick-sim does.\n"
    "Real devices use their own keystore port.\n"
    "\n"
    "Output: log lines on stderr; when the agent exits, one JSON line on\n"
    "stdout: outcome, state, version running, and the download statistics\n"
    "(bytes, opens, reopens, bad_blocks, attempts, retries, times in ms).\n"
    "\n"
    "exit status (--once): 0 updated or up to date; 1 the update failed\n"
    "(refused, not found, server away, not verified); 2 the trial was not\n"
    "confirmed and was reverted; 3 the server could not be reached; 64 bad\n"
    "command line or config. Without --once the agent runs until SIGTERM\n"
    "or SIGINT and exits 0.\n";

/* ------------------------------------------------------------ platform */

struct plat {
    const char *device_id;
    uint64_t t0;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t p_now(void *ctx)
{
    (void)ctx;
    return mono_ms();
}

static uint32_t p_random(void *ctx)
{
    uint32_t r;
    (void)ctx;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        /* No entropy source at all: time, so jitter still spreads. */
        r = (uint32_t)(mono_ms() * 2654435761u) ^ (uint32_t)getpid();
    }
    return r;
}

static void p_log(void *ctx, int level, const char *line)
{
    struct plat *p = ctx;
    static const char *const names[] = {"error", "warn", "info", "debug"};
    uint64_t t = mono_ms() - p->t0;
    fprintf(stderr, "nobrick-agent[%s] %llu.%03llu %s: %s\n", p->device_id,
            (unsigned long long)(t / 1000), (unsigned long long)(t % 1000),
            names[level & 3], line);
}

/* ----------------------------------------------------------- transports */

struct transports {
    const struct agent_opts *o;
    struct power_cut *cut; /* --sim-power-cut, or NULL */
    uint8_t kind; /* of the open one */
    int open;
#ifdef NB_AGENT_HAVE_CURL
    struct nb_curl curl;
#endif
#ifdef NB_AGENT_HAVE_MQTT
    struct nb_mqtt_transport *mqtt;
#endif
    struct nb_transport_file file;
};

/* --sim-power-cut P[:torn] (tests; flash_type sim): the transport of the
 * payload is wrapped so that once the payload has arrived up to P % (a
 * position in the payload, so a resumed download is cut at the same
 * place), a power cut is armed before the simulated flash's next
 * operation: the program of the block that holds that byte, or torn,
 * that program torn (nb_simflash_cut_at). The agent then sees
 * NB_ERR_POWER and stops (state OFF); the flash file keeps what the cut
 * left, as after nobrick-sim's --cut-at-op. */
struct power_cut {
    int pct; /* -1: none */
    int torn, fired;
    struct nb_simflash *sim;
    uint64_t ops_at_on; /* the flash's operations at the agent's power-on */
    const struct nb_agent *agent;
    struct nb_transport inner; /* the wrapped transport */
    uint64_t pos;              /* package offset of the next byte */
};

/* "P" or "P:torn", P 0 to 99. Returns 0 or -1. */
static int power_cut_parse(struct power_cut *c, const char *v)
{
    char *end;
    errno = 0;
    long p = strtol(v, &end, 10);
    if (errno || end == v || v[0] < '0' || v[0] > '9' || p < 0 || p > 99)
        return -1;
    if (*end && strcmp(end, ":torn") != 0)
        return -1;
    c->pct = (int)p;
    c->torn = *end != '\0';
    return 0;
}

static void power_cut_check(struct power_cut *c)
{
    const struct nb_manifest *m = &c->agent->dev.manifest;
    uint64_t at = (uint64_t)m->payload_offset +
                  (uint64_t)m->payload_size * (uint64_t)c->pct / 100u;
    if (c->fired || m->payload_size == 0 || c->pos <= at)
        return;
    struct nb_simflash_stats st;
    nb_simflash_stats(c->sim, &st);
    nb_simflash_cut_at(c->sim, st.ops - c->ops_at_on, c->torn);
    c->fired = 1;
    fprintf(stderr, "nobrick-agent: sim-power-cut: payload byte %llu of %u "
            "(%d %%) arrived: power cut%s at the next flash operation\n",
            (unsigned long long)(at - m->payload_offset),
            (unsigned)m->payload_size, c->pct, c->torn ? " (torn)" : "");
}

static nb_err cut_open(void *ctx, uint32_t offset, uint32_t len)
{
    struct power_cut *c = ctx;
    c->pos = offset;
    return c->inner.open(c->inner.ctx, offset, len);
}

static nb_err cut_read(void *ctx, uint8_t *buf, uint32_t cap, uint32_t *got)
{
    struct power_cut *c = ctx;
    nb_err err = c->inner.read(c->inner.ctx, buf, cap, got);
    if (!err && *got) {
        c->pos += *got;
        power_cut_check(c);
    }
    return err;
}

static void cut_close(void *ctx)
{
    struct power_cut *c = ctx;
    c->inner.close(c->inner.ctx);
}

/* Is `url` on our server (the token may go there)? */
static int on_server(const struct agent_opts *o, const char *url)
{
    size_t n = strlen(o->server_url);
    while (n && o->server_url[n - 1] == '/')
        n--;
    return strncmp(url, o->server_url, n) == 0 &&
           (url[n] == '/' || url[n] == '\0');
}

static nb_err tr_open(void *ctx, uint8_t kind, const char *where,
                      struct nb_transport *out)
{
    struct transports *t = ctx;
    const struct agent_opts *o = t->o;
    nb_err err = NB_ERR_UNSUPPORTED;
    if (t->open)
        return NB_ERR_STATE;
    switch (kind) {
    case NB_AGENT_TR_HTTP:
    case NB_AGENT_TR_HTTPS:
    case NB_AGENT_TR_FTP:
    case NB_AGENT_TR_FTPS: {
#ifdef NB_AGENT_HAVE_CURL
        struct nb_curl_config cc;
        memset(&cc, 0, sizeof(cc));
        cc.url = where;
        cc.ca_file = o->ca_file[0] ? o->ca_file : NULL;
        cc.bearer_token = o->device_token[0] && on_server(o, where)
                              ? o->device_token
                              : NULL;
        cc.connect_timeout_ms = (uint32_t)o->connect_timeout_ms;
        cc.stall_timeout_ms = (uint32_t)o->stall_timeout_ms;
        err = nb_curl_init(&t->curl, &cc, out);
        if (err)
            fprintf(stderr, "nobrick-agent: transport %s: %s\n", where,
                    nb_curl_detail(&t->curl));
#endif
        break;
    }
    case NB_AGENT_TR_MQTT: {
#ifdef NB_AGENT_HAVE_MQTT
        struct nb_mqtt_config mc;
        memset(&mc, 0, sizeof(mc));
        mc.host = o->mqtt_host;
        mc.port = (int)o->mqtt_port;
        mc.device_id = o->device_id;
        mc.artifact = where;
        mc.cafile = o->ca_file[0] ? o->ca_file : NULL;
        mc.connect_timeout_ms = (uint32_t)o->connect_timeout_ms;
        mc.stall_timeout_ms = (uint32_t)o->stall_timeout_ms;
        err = nb_mqtt_transport_new(&t->mqtt, &mc, out);
#endif
        break;
    }
    case NB_AGENT_TR_FILE: {
        char path[NB_TRANSPORT_FILE_PATH_MAX];
        /* Only file_dir is read: the artifact's file name (the last
         * component of whatever the server named) is looked up there. */
        const char *name = strrchr(where, '/');
        name = name ? name + 1 : where;
        if (!name[0] || strcmp(name, "..") == 0 || strcmp(name, ".") == 0)
            return NB_ERR_NOENT;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", o->file_dir,
                             name) >= sizeof(path))
            return NB_ERR_INVAL;
        err = nb_transport_file_init(&t->file, path, out);
        break;
    }
    default:
        break;
    }
    if (!err) {
        t->open = 1;
        t->kind = kind;
        if (t->cut && !t->cut->fired) {
            t->cut->inner = *out;
            out->ctx = t->cut;
            out->open = cut_open;
            out->read = cut_read;
            out->close = cut_close;
        }
    }
    return err;
}

static void tr_release(void *ctx, struct nb_transport *tr)
{
    struct transports *t = ctx;
    (void)tr;
    if (!t->open)
        return;
    switch (t->kind) {
#ifdef NB_AGENT_HAVE_CURL
    case NB_AGENT_TR_HTTP:
    case NB_AGENT_TR_HTTPS:
    case NB_AGENT_TR_FTP:
    case NB_AGENT_TR_FTPS:
        nb_curl_free(&t->curl);
        break;
#endif
#ifdef NB_AGENT_HAVE_MQTT
    case NB_AGENT_TR_MQTT:
        nb_mqtt_transport_free(t->mqtt);
        t->mqtt = NULL;
        break;
#endif
    case NB_AGENT_TR_FILE:
        nb_transport_file_free(&t->file);
        break;
    default:
        break;
    }
    t->open = 0;
}

/* ---------------------------------------------------------- memo store */

/* The state file: "key=value" lines, replaced atomically (tmp + rename). */
struct store {
    const char *path;
};

static nb_err st_load(void *ctx, struct nb_agent_memo *m)
{
    struct store *s = ctx;
    char line[256];
    FILE *f = fopen(s->path, "r");
    memset(m, 0, sizeof(*m));
    if (!f)
        return errno == ENOENT ? NB_ERR_NOENT : NB_ERR_IO;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        const char *v = eq + 1;
#define FIELD(name)                                                       \
    if (strcmp(line, #name) == 0 && strlen(v) < sizeof(m->name))          \
        memcpy(m->name, v, strlen(v) + 1);
        FIELD(rollout)
        FIELD(version)
        FIELD(failed_rollout)
        FIELD(failed_version)
#undef FIELD
    }
    fclose(f);
    return NB_OK;
}

static nb_err st_save(void *ctx, const struct nb_agent_memo *m)
{
    struct store *s = ctx;
    char tmp[AGENT_STR_MAX + 16];
    snprintf(tmp, sizeof(tmp), "%s.tmp", s->path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return NB_ERR_IO;
    fprintf(f, "rollout=%s\nversion=%s\nfailed_rollout=%s\n"
            "failed_version=%s\n", m->rollout, m->version, m->failed_rollout,
            m->failed_version);
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, s->path) != 0) {
        unlink(tmp);
        return NB_ERR_IO;
    }
    return NB_OK;
}

/* ------------------------------------------------------------- tokens */

static void token_issued(void *ctx, const char *token)
{
    const struct agent_opts *o = ctx;
    if (!o->token_file[0]) {
        fprintf(stderr, "nobrick-agent: the server issued this device a "
                "token; set token_file to keep it across restarts\n");
        return;
    }
    char tmp[AGENT_STR_MAX + 16];
    snprintf(tmp, sizeof(tmp), "%s.tmp", o->token_file);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f || fprintf(f, "%s\n", token) < 0 || fclose(f) != 0 ||
        rename(tmp, o->token_file) != 0) {
        fprintf(stderr, "nobrick-agent: %s: cannot store the device token: "
                "%s\n", o->token_file, strerror(errno));
        if (f == NULL && fd >= 0)
            close(fd);
        unlink(tmp);
    }
}

static int read_token(struct agent_opts *o)
{
    FILE *f = fopen(o->token_file, "r");
    if (!f)
        return errno == ENOENT ? 0 : -1;
    char line[AGENT_STR_MAX];
    int rc = 0;
    if (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        memcpy(o->device_token, line, strlen(line) + 1);
    }
    if (ferror(f))
        rc = -1;
    fclose(f);
    return rc;
}

/* ---------------------------------------------------------------- flash */

/* The device: crypto, test keys, identity and boot config in a struct
 * simdev; the flash is the simulated flash file of sd.sim (flash_type
 * sim) or the MTD / block device of fdev (sd.sim NULL). */
#define MAX_ROOTS 4

struct device {
    struct simdev sd;
    struct nb_flash_dev fdev;
    /* root_pub: the product's trust anchors, replacing the test root. */
    unsigned roots;
    uint8_t root_pub[MAX_ROOTS][NB_PUBKEY_LEN];
    uint8_t root_kid[MAX_ROOTS][NB_KEY_ID_LEN];
    struct nb_keystore keystore;
};

static nb_err roots_key(void *ctx, const uint8_t kid[NB_KEY_ID_LEN],
                        uint8_t pub[NB_PUBKEY_LEN])
{
    const struct device *d = ctx;
    for (unsigned i = 0; i < d->roots; i++)
        if (memcmp(d->root_kid[i], kid, NB_KEY_ID_LEN) == 0) {
            memcpy(pub, d->root_pub[i], NB_PUBKEY_LEN);
            return NB_OK;
        }
    return NB_ERR_UNKNOWN_KEY;
}

/* Load the root_pub PEM files. Returns 0 or -1 after a message. */
static int load_roots(struct device *d, const char *list)
{
    char names[AGENT_STR_MAX];
    snprintf(names, sizeof(names), "%s", list);
    for (char *save = NULL, *n = strtok_r(names, ",", &save); n;
         n = strtok_r(NULL, ",", &save)) {
        char pem[4096];
        FILE *f = fopen(n, "rb");
        size_t len = f ? fread(pem, 1, sizeof(pem) - 1, f) : 0;
        if (f)
            fclose(f);
        if (!f || d->roots == MAX_ROOTS ||
            nb_openssl_pub_from_pem(pem, len, d->root_pub[d->roots]) ||
            nb_key_id(&d->sd.crypto, d->root_pub[d->roots],
                      d->root_kid[d->roots])) {
            fprintf(stderr, "nobrick-agent: root_pub %s: %s\n", n,
                    !f ? "cannot read it"
                       : d->roots == MAX_ROOTS ? "more than 4 root keys"
                                               : "not a P-256 public key "
                                                 "PEM");
            return -1;
        }
        d->roots++;
    }
    d->keystore.ctx = d;
    d->keystore.root_key = roots_key;
    d->sd.cfg.keystore = &d->keystore;
    return 0;
}

/* A UUID, 8-4-4-4-12 hex digits, into 16 bytes. */
static int parse_uuid(const char *s, uint8_t out[NB_UUID_LEN])
{
    unsigned n = 0;
    for (; *s && n < 2 * NB_UUID_LEN; s++) {
        int v = *s >= '0' && *s <= '9'   ? *s - '0'
                : *s >= 'a' && *s <= 'f' ? *s - 'a' + 10
                : *s >= 'A' && *s <= 'F' ? *s - 'A' + 10
                                         : -1;
        if (v < 0) {
            if (*s == '-' && (n == 8 || n == 12 || n == 16 || n == 20))
                continue;
            return -1;
        }
        out[n / 2] = (uint8_t)(n % 2 ? out[n / 2] | v : v << 4);
        n++;
    }
    return *s || n != 2 * NB_UUID_LEN ? -1 : 0;
}

/* simdev_bind for a flash that is not a simulated one (sd->flash filled
 * in): the same crypto port, test keys, identity and buffers. */
/* flash_type mtd or block: open the device, plan the layout over its
 * geometry, bind. Returns 0 or -1 after a message. */
static int open_real(struct device *d, const struct agent_opts *o)
{
    struct simdev *sd = &d->sd;
    struct nb_flash_dev_config fc;
    memset(&fc, 0, sizeof(fc));
    fc.path = o->flash;
    if (strcmp(o->flash_type, "mtd") == 0) {
        fc.type = NB_FLASH_DEV_MTD;
    } else {
        fc.type = NB_FLASH_DEV_BLOCK;
        fc.sector_size = (uint32_t)o->flash_sector_size;
        fc.write_size = (uint32_t)o->flash_write_size;
        fc.erased_zero = agent_opts_erase_value(o->flash_erase_value) == 0;
    }
    nb_err err = nb_flash_dev_open(&d->fdev, &fc, &sd->flash);
    if (err) {
        fprintf(stderr, "nobrick-agent: %s: cannot open it as flash_type %s: "
                "%s (%s)\n", o->flash, o->flash_type,
                nb_flash_dev_why(&d->fdev), nb_err_name(err));
        return -1;
    }
    uint8_t kind = (uint8_t)agent_opts_layout_kind(o->layout);
    err = nb_layout_plan(&sd->board.layout, &sd->flash, kind,
                         (uint32_t)o->slot_size, 0);
    if (err) {
        fprintf(stderr, "nobrick-agent: %s: layout %s with %llu-byte slots "
                "does not fit its %u bytes (%s)\n", o->flash, o->layout,
                (unsigned long long)o->slot_size,
                (unsigned)nb_flash_size(&sd->flash), nb_err_name(err));
        nb_flash_dev_close(&d->fdev);
        return -1;
    }
    if ((err = simdev_bind(sd)) != NB_OK) {
        fprintf(stderr, "nobrick-agent: cannot set up crypto and the test "
                "keys: %s\n", nb_err_name(err));
        nb_flash_dev_close(&d->fdev);
        return -1;
    }
    return 0;
}

/* flash_type sim: a flash file made by nobrick-sim init, which carries
 * its layout. Returns 0 or -1 after a message. */
static int open_sim(struct simdev *sd, const struct agent_opts *o)
{
    nb_err err = nb_simflash_open_file(&sd->sim, o->flash);
    if (err) {
        fprintf(stderr, "nobrick-agent: %s: %s (create one with: "
                "nobrick-sim init --flash %s --layout ab ...)\n", o->flash,
                err == NB_ERR_NOENT     ? "no such flash file"
                : err == NB_ERR_CORRUPT ? "not a simulated flash file, or "
                                          "damaged"
                                        : "cannot open it read-write",
                o->flash);
        return -1;
    }
    size_t blen;
    const void *blob = nb_simflash_user(sd->sim, &blen);
    if (simdev_board_decode(blob, blen, &sd->board) != NB_OK) {
        fprintf(stderr, "nobrick-agent: %s: no board description (not made "
                "by nobrick-sim init)\n", o->flash);
        nb_simflash_close(sd->sim);
        return -1;
    }
    if ((err = simdev_bind(sd)) != NB_OK) {
        fprintf(stderr, "nobrick-agent: cannot set up crypto and the test "
                "keys: %s\n", nb_err_name(err));
        nb_simflash_close(sd->sim);
        return -1;
    }
    return 0;
}

static struct device *flash_open(const struct agent_opts *o)
{
    struct device *d = calloc(1, sizeof(*d));
    if (!d) {
        fprintf(stderr, "nobrick-agent: out of memory\n");
        return NULL;
    }
    d->fdev.fd = -1;
    struct simdev *sd = &d->sd;
    if ((strcmp(o->flash_type, "sim") == 0 ? open_sim(sd, o)
                                           : open_real(d, o)) != 0) {
        free(d);
        return NULL;
    }
    struct nb_layout l = sd->board.layout;
    if (nb_layout_check(&l, &sd->flash) != NB_OK) {
        fprintf(stderr, "nobrick-agent: %s: its layout does not fit its "
                "geometry\n", o->flash);
        simdev_unbind(sd);
        nb_simflash_close(sd->sim);
        nb_flash_dev_close(&d->fdev);
        free(d);
        return NULL;
    }
    /* A product's trust anchors and identity, when configured. */
    if ((o->root_pub[0] && load_roots(d, o->root_pub)) ||
        (o->vendor[0] && parse_uuid(o->vendor, sd->identity.vendor)) ||
        (o->class_id[0] && parse_uuid(o->class_id, sd->identity.class_id))) {
        if (!o->root_pub[0] || d->keystore.root_key)
            fprintf(stderr, "nobrick-agent: vendor and class must be UUIDs "
                    "(8-4-4-4-12 hex digits)\n");
        simdev_unbind(sd);
        nb_simflash_close(sd->sim);
        nb_flash_dev_close(&d->fdev);
        free(d);
        return NULL;
    }
    /* This device's hardware revision (the simulated identity otherwise
     * stays the test vendor and class). agent_opts_check bounds it; the
     * --provision path does not check it, and does not need it. */
    size_t n = strlen(o->hw_rev);
    if (n > sizeof(sd->identity.hw_rev))
        n = sizeof(sd->identity.hw_rev);
    memcpy(sd->identity.hw_rev, o->hw_rev, n);
    sd->identity.hw_rev_len = (uint8_t)n;
    return d;
}

static void flash_close(struct device *d)
{
    if (!d)
        return;
    simdev_unbind(&d->sd);
    nb_simflash_close(d->sd.sim);
    nb_flash_dev_close(&d->fdev);
    free(d);
}

/* mtd/block: is there a boot journal for this layout? Returns 0, or -1
 * after a message (none: provision first; another layout). */
static int flash_ready(struct device *d, const struct agent_opts *o)
{
    nb_err err = nb_device_open(&d->sd.dev, &d->sd.cfg);
    if (!err)
        return 0;
    if (err == NB_ERR_NOENT)
        fprintf(stderr, "nobrick-agent: %s: no boot journal: the device is "
                "not provisioned (run nobrick-agent --provision once, with "
                "the same flash and layout keys)\n", o->flash);
    else if (err == NB_ERR_INVAL)
        fprintf(stderr, "nobrick-agent: %s: its boot journal was written for "
                "another layout (layout, slot_size and the geometry keys "
                "must not change after provisioning)\n", o->flash);
    else
        fprintf(stderr, "nobrick-agent: %s: cannot read the boot journal: "
                "%s\n", o->flash, nb_err_name(err));
    return -1;
}

/* --provision: write the first journal record on a device without one.
 * One JSON line on stdout. Returns the exit status. */
static int provision(struct device *d, const struct agent_opts *o)
{
    struct simdev *sd = &d->sd;
    const struct nb_layout *l = &sd->cfg.layout;
    nb_err err = nb_device_open(&sd->dev, &sd->cfg);
    const char *outcome = "already-provisioned";
    if (err == NB_ERR_NOENT) {
        err = nb_device_provision(&sd->dev, &sd->cfg, NB_LIFECYCLE_PRODUCTION,
                                  NB_DEFAULT_ATTEMPT_LIMIT);
        if (!err)
            err = nb_device_open(&sd->dev, &sd->cfg);
        outcome = "provisioned";
    } else if (err == NB_ERR_INVAL) {
        flash_ready(d, o);
        return EXIT_FAILED;
    }
    if (err) {
        fprintf(stderr, "nobrick-agent: %s: provisioning failed: %s\n",
                o->flash, nb_err_name(err));
        return EXIT_FAILED;
    }
    fprintf(stderr, "nobrick-agent: %s: %s (%s, %s layout)\n", o->flash,
            strcmp(outcome, "provisioned") == 0
                ? "provisioned"
                : "already has a boot journal; left alone",
            nb_flash_dev_type_name(&d->fdev), nb_layout_name(l->kind));
    json_t *slots = json_array();
    for (unsigned i = 0; slots && i < nb_layout_slot_count(l->kind); i++)
        json_array_append_new(slots, json_pack("{s:I, s:I}", "off",
                                               (json_int_t)l->slot[i].off,
                                               "size",
                                               (json_int_t)l->slot[i].size));
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:{s:I, s:I}, s:o}",
                          "outcome", outcome, "flash", o->flash, "type",
                          nb_flash_dev_type_name(&d->fdev), "layout",
                          nb_layout_name(l->kind), "size",
                          (json_int_t)nb_flash_size(&sd->flash), "journal",
                          "off", (json_int_t)l->journal.off, "size",
                          (json_int_t)l->journal.size, "slots", slots);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (text)
        printf("%s\n", text);
    free(text);
    json_decref(j);
    fflush(stdout);
    return EXIT_OK;
}

/* ---------------------------------------------------------------- output */

static void print_result(const struct nb_agent *a)
{
    const struct nb_agent_stats *s = &a->stats;
    char v[NB_AGENT_VERSION_MAX];
    nb_agent_version_str(a->running_version, v);
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
        " s:I, s:I, s:I, s:I, s:I, s:I}",
        "outcome", nb_agent_outcome_name(a->outcome),
        "state", nb_agent_state_name(a->state),
        "running", v,
        "running_state", a->boot.outcome == NB_BOOT_IMAGE
                             ? nb_slot_state_name(a->boot.state)
                             : "recovery",
        "bytes", (json_int_t)s->bytes,
        "payload", (json_int_t)s->payload,
        "manifest_bytes", (json_int_t)s->manifest_bytes,
        "opens", (json_int_t)s->opens,
        "reopens", (json_int_t)s->reopens,
        "bad_blocks", (json_int_t)s->bad_blocks,
        "attempts", (json_int_t)s->attempts,
        "retries", (json_int_t)s->retries,
        "resumed", (json_int_t)s->resumed,
        "resume_offset", (json_int_t)s->resume_offset,
        "reports", (json_int_t)s->reports,
        "reports_failed", (json_int_t)s->reports_failed,
        "boots", (json_int_t)s->boots,
        "download_ms", (json_int_t)s->download_ms,
        "update_ms", (json_int_t)s->update_ms);
    if (j) {
        json_object_set_new(j, "verify_ms", json_integer((json_int_t)
                                                         s->verify_ms));
        char *text = json_dumps(j, JSON_COMPACT);
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(j);
    }
    fflush(stdout);
}

static int exit_code(uint8_t outcome)
{
    switch (outcome) {
    case NB_AGENT_UP_TO_DATE:
    case NB_AGENT_UPDATED:
        return EXIT_OK;
    case NB_AGENT_REVERTED_OUTCOME:
        return EXIT_REVERTED;
    case NB_AGENT_OFFLINE:
        return EXIT_OFFLINE;
    default:
        return EXIT_FAILED;
    }
}

static void on_signal(int sig)
{
    stop_signal = sig;
}

/* ------------------------------------------------------------------ main */

struct cli_set {
    const char *key, *value;
};

int main(int argc, char **argv)
{
    static struct agent_opts o;
    const char *config = NULL;
    int once = 0, prov = 0, nset = 0;
    static struct power_cut cut = {.pct = -1};
    struct cli_set *sets = calloc((size_t)argc + 1, sizeof(*sets));
    if (!sets)
        return EXIT_FAILED;
    /* Command line first (the file is read before it is applied). */
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(usage, stdout);
            agent_opts_help(stdout);
            fputs(usage_tail, stdout);
            free(sets);
            return EXIT_OK;
        }
        if (strcmp(arg, "--once") == 0) {
            once = 1;
            continue;
        }
        if (strcmp(arg, "--provision") == 0) {
            prov = 1;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "nobrick-agent: unexpected argument '%s' (see "
                    "--help)\n", arg);
            free(sets);
            return EXIT_USAGE;
        }
        const char *val = NULL, *eq = strchr(arg + 2, '=');
        size_t n = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        if (n >= 64) {
            fprintf(stderr, "nobrick-agent: unknown option '%s'\n", arg);
            free(sets);
            return EXIT_USAGE;
        }
        if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            fprintf(stderr, "nobrick-agent: %s needs a value\n", arg);
            free(sets);
            return EXIT_USAGE;
        }
        char nm[64];
        memcpy(nm, arg + 2, n);
        nm[n] = '\0';
        if (strcmp(nm, "config") == 0) {
            config = val;
            continue;
        }
        if (strcmp(nm, "sim-power-cut") == 0 ||
            strcmp(nm, "sim_power_cut") == 0) {
            if (power_cut_parse(&cut, val)) {
                fprintf(stderr, "nobrick-agent: --sim-power-cut: '%s' is "
                        "not P or P:torn (P 0 to 99)\n", val);
                free(sets);
                return EXIT_USAGE;
            }
            continue;
        }
        if (!agent_opts_is_key(nm)) {
            fprintf(stderr, "nobrick-agent: unknown option '--%s' (see "
                    "--help)\n", nm);
            free(sets);
            return EXIT_USAGE;
        }
        /* The key name must outlive this loop: it points into argv. */
        sets[nset].key = arg + 2;
        sets[nset].value = val;
        nset++;
    }
    agent_opts_defaults(&o);
    if (config && agent_opts_load(&o, config, stderr)) {
        free(sets);
        return EXIT_USAGE;
    }
    for (int i = 0; i < nset; i++) {
        char nm[64], where[80];
        size_t n = strcspn(sets[i].key, "=");
        memcpy(nm, sets[i].key, n);
        nm[n] = '\0';
        snprintf(where, sizeof(where), "--%s", nm);
        if (agent_opts_set(&o, nm, sets[i].value, where, 1, stderr)) {
            free(sets);
            return EXIT_USAGE;
        }
    }
    free(sets);
    if (!o.device_token[0] && o.token_file[0] && read_token(&o)) {
        fprintf(stderr, "nobrick-agent: %s: cannot read the token: %s\n",
                o.token_file, strerror(errno));
        return EXIT_USAGE;
    }
    if (prov) {
        if (agent_opts_check_flash(&o, stderr))
            return EXIT_USAGE;
        if (strcmp(o.flash_type, "sim") == 0) {
            fprintf(stderr, "nobrick-agent: --provision is for flash_type mtd "
                    "or block (a simulated flash file is provisioned by "
                    "nobrick-sim init)\n");
            return EXIT_USAGE;
        }
        struct device *pd = flash_open(&o);
        int prc = pd ? provision(pd, &o) : EXIT_FAILED;
        flash_close(pd);
        return prc;
    }
    if (agent_opts_check(&o, stderr))
        return EXIT_USAGE;
    if (cut.pct >= 0 && strcmp(o.flash_type, "sim") != 0) {
        fprintf(stderr, "nobrick-agent: --sim-power-cut needs flash_type "
                "sim (a simulated flash file)\n");
        return EXIT_USAGE;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

#ifdef NB_AGENT_HAVE_CURL
    if (nb_curl_global_init() != NB_OK) {
#else
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
#endif
        fprintf(stderr, "nobrick-agent: libcurl cannot initialise\n");
        return EXIT_FAILED;
    }

    int rc = EXIT_FAILED;
    struct device *dv = flash_open(&o);
    struct simdev *sd = dv ? &dv->sd : NULL;
    struct nb_api_http *api = NULL;
    struct nb_agent *a = calloc(1, sizeof(*a));
    struct transports *tr = calloc(1, sizeof(*tr));
    uint8_t *rxbuf = malloc(RXBUF_SIZE);
    struct plat plat = {o.device_id, mono_ms()};
    struct store store = {o.state_file};
    struct nb_health_cmd hc = {o.health_cmd};
    if (!sd || !a || !tr || !rxbuf)
        goto out;
    /* mtd/block: refuse a device without a journal (the simulated flash
     * keeps today's behaviour: the agent reports it and idles). */
    if (!sd->sim && flash_ready(dv, &o))
        goto out;
    struct nb_api_http_config hcfg;
    memset(&hcfg, 0, sizeof(hcfg));
    hcfg.server_url = o.server_url;
    hcfg.device_id = o.device_id;
    hcfg.token = o.device_token;
    hcfg.ca_file = o.ca_file[0] ? o.ca_file : NULL;
    hcfg.connect_timeout_ms = (uint32_t)o.connect_timeout_ms;
    hcfg.timeout_ms = (uint32_t)o.request_timeout_ms;
    hcfg.token_issued = token_issued;
    hcfg.token_ctx = &o;
    if (nb_api_http_new(&api, &hcfg) != NB_OK) {
        fprintf(stderr, "nobrick-agent: server_url or token too long\n");
        rc = EXIT_USAGE;
        goto out;
    }
    tr->o = &o;
    if (cut.pct >= 0) {
        cut.sim = sd->sim;
        cut.agent = a;
        tr->cut = &cut;
    }

    struct nb_agent_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.boot = sd->cfg;
    cfg.hw_rev = o.hw_rev;
    nb_api_http_interface(api, &cfg.api);
    cfg.transports.ctx = tr;
    cfg.transports.open = tr_open;
    cfg.transports.release = tr_release;
    nb_health_cmd_interface(&hc, &cfg.health);
    cfg.platform.ctx = &plat;
    cfg.platform.now_ms = p_now;
    cfg.platform.random = p_random;
    cfg.platform.log = p_log;
    cfg.platform.log_level = strcmp(o.log_level, "error") == 0  ? 0
                             : strcmp(o.log_level, "warn") == 0 ? 1
                             : strcmp(o.log_level, "info") == 0 ? 2
                                                                : 3;
    if (o.state_file[0]) {
        cfg.store.ctx = &store;
        cfg.store.load = st_load;
        cfg.store.save = st_save;
    }
    cfg.prefer_count = (unsigned)agent_opts_prefer(o.transport, cfg.prefer,
                                                   NB_AGENT_MAX_PREFER);
    cfg.rxbuf = rxbuf;
    cfg.rxbuf_size = RXBUF_SIZE;
    cfg.retry_base_ms = (uint32_t)o.retry_base_ms;
    cfg.retry_max_ms = (uint32_t)o.retry_max_ms;
    cfg.retry_attempts = (uint32_t)o.retry_attempts;
    cfg.progress_interval_ms = (uint32_t)o.progress_interval_ms;
    cfg.health_timeout_ms = (uint32_t)o.health_timeout_ms;
    cfg.ack_timeout_ms = (uint32_t)o.ack_timeout_ms;
    cfg.poll_ms = (uint32_t)o.poll_ms;
    if (nb_agent_init(a, &cfg) != NB_OK) {
        fprintf(stderr, "nobrick-agent: internal error: agent config\n");
        goto out;
    }
    if (sd->sim) {
        nb_simflash_power_on(sd->sim);
        struct nb_simflash_stats st;
        nb_simflash_stats(sd->sim, &st);
        cut.ops_at_on = st.ops;
    }

    while (!stop_signal) {
        nb_err err = nb_agent_step(a);
        if (err == NB_ERR_POWER) {
            fprintf(stderr, "nobrick-agent: the flash lost power\n");
            break;
        }
        if (once && a->cycles > 0)
            break;
        /* Sleep until the next step, waking for signals. */
        for (;;) {
            uint64_t t = mono_ms(), w = nb_agent_wake_ms(a);
            if (t >= w || stop_signal)
                break;
            uint64_t d = w - t > 200 ? 200 : w - t;
            struct timespec ts = {(time_t)(d / 1000),
                                  (long)(d % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    print_result(a);
    rc = once ? exit_code(a->outcome) : EXIT_OK;
    if (stop_signal && once && a->cycles == 0)
        rc = EXIT_FAILED;
out:
    if (a)
        nb_agent_free(a);
    if (tr)
        tr_release(tr, NULL);
    free(a);
    free(tr);
    free(rxbuf);
    nb_api_http_free(api);
    flash_close(dv);
#ifdef NB_AGENT_HAVE_CURL
    nb_curl_global_cleanup();
#else
    curl_global_cleanup();
#endif
    return rc;
}
