/* test_agent.c - the update agent's state machine (cmd/nobrick-agent/
 * agent.c) against a test double of the device API, a fake clock, and a
 * memory flash; packages come from the file transport (ports/posix), with
 * a fault layer that drops links and refuses ranges.
 *
 * Checked: the whole update (reports downloading .. confirmed, the device
 * boots the new image CONFIRMED); refusals before a single flash byte
 * changes (bad signature, another hardware revision); a failing health
 * check, a lost or wrong acknowledgement, a reset during the trial: no
 * confirmation, reverted; a 4xx ends the attempt after one request; a
 * server that stays away: bounded retries with growing, jittered backoff,
 * then FAILED; a flaky link and a power cut: resumed, not restarted.
 * Also the helpers: backoff, versions, settings, the health command, the
 * file transport and the check-in parser.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent.h"
#include "api_http.h"
#include "config.h"
#include "health.h"
#include "nb_crypto_openssl.h"
#include "nb_simflash.h"
#include "nb_testpkg.h"
#include "nb_transport_file.h"

#define BUF 4096u
#define RX 3000u /* odd: reads straddle blocks */
#define V100 0x01000000u
#define V110 0x01010000u
#define PAYLOAD 60000u
#define MAX_EVENTS 256

/* ----------------------------------------------------------- the double */

enum ack_mode { ACK_OK, ACK_NONE, ACK_WRONG_NONCE, ACK_IO };

struct event {
    char state[24];
    char reason[32];
    uint64_t bytes;
};

struct fake_api {
    /* behaviour */
    int offer;            /* answer check-ins with the offer */
    struct nb_agent_offer o;
    nb_err checkin_err;   /* returned by check-in when not NB_OK */
    enum ack_mode ack;
    /* record */
    unsigned checkins, health_reports, manifests;
    char nonce[NB_AGENT_NONCE_MAX];
    int healthy;
    unsigned n;
    struct event ev[MAX_EVENTS];
};

static nb_err f_checkin(void *ctx, const struct nb_agent_checkin *in,
                        struct nb_agent_checkin_reply *out)
{
    struct fake_api *f = ctx;
    f->checkins++;
    assert_non_null(in->hw_rev);
    if (f->checkin_err)
        return f->checkin_err;
    memset(out, 0, sizeof(*out));
    out->poll_seconds = 60;
    if (f->offer && strcmp(in->version, f->o.version) != 0) {
        out->action = NB_AGENT_ACTION_UPDATE;
        out->offer = f->o;
    }
    return NB_OK;
}

static nb_err f_report(void *ctx, const struct nb_agent_report *r)
{
    struct fake_api *f = ctx;
    assert_true(f->n < MAX_EVENTS);
    struct event *e = &f->ev[f->n++];
    snprintf(e->state, sizeof(e->state), "%s", r->state);
    snprintf(e->reason, sizeof(e->reason), "%s", r->reason ? r->reason : "");
    e->bytes = r->bytes;
    return NB_OK;
}

static nb_err f_health(void *ctx, const struct nb_agent_health_report *h,
                       uint32_t timeout_ms, struct nb_agent_health_ack *ack)
{
    struct fake_api *f = ctx;
    (void)timeout_ms;
    f->health_reports++;
    f->healthy = h->healthy;
    snprintf(f->nonce, sizeof(f->nonce), "%s", h->nonce);
    assert_int_equal(strlen(h->nonce), 16);
    memset(ack, 0, sizeof(*ack));
    switch (f->ack) {
    case ACK_OK:
        ack->ack = 1;
        snprintf(ack->nonce, sizeof(ack->nonce), "%s", h->nonce);
        return NB_OK;
    case ACK_NONE:
        return NB_OK;
    case ACK_WRONG_NONCE:
        ack->ack = 1;
        snprintf(ack->nonce, sizeof(ack->nonce), "0000000000000000");
        return NB_OK;
    case ACK_IO:
        return NB_ERR_IO;
    }
    return NB_ERR_INVAL;
}

/* Count of reports in `state`. */
static unsigned count(const struct fake_api *f, const char *state)
{
    unsigned c = 0;
    for (unsigned i = 0; i < f->n; i++)
        c += strcmp(f->ev[i].state, state) == 0;
    return c;
}

/* The sequence of distinct report states, "a,b,c" (repeats folded). */
static void sequence(const struct fake_api *f, char *out, size_t cap)
{
    out[0] = '\0';
    for (unsigned i = 0; i < f->n; i++) {
        if (i && strcmp(f->ev[i].state, f->ev[i - 1].state) == 0)
            continue;
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%s", l ? "," : "", f->ev[i].state);
    }
}

/* ------------------------------------------------------ faulty transport */

struct faults {
    struct nb_transport_file file;
    struct nb_transport inner;
    char path[512];
    nb_err open_err;      /* every open fails with this */
    uint32_t drop_after;  /* an open range dies after this many bytes */
    unsigned drops_left;  /* how many times (then no more drops) */
    uint32_t sent;        /* bytes of the current range */
    unsigned opens, transports;
    int open;
};

static nb_err ft_open(void *ctx, uint32_t off, uint32_t len)
{
    struct faults *f = ctx;
    f->opens++;
    f->sent = 0;
    if (f->open_err)
        return f->open_err;
    return f->inner.open(f->inner.ctx, off, len);
}

static nb_err ft_read(void *ctx, uint8_t *buf, uint32_t cap, uint32_t *got)
{
    struct faults *f = ctx;
    if (f->drops_left && f->drop_after) {
        if (f->sent >= f->drop_after) {
            f->drops_left--;
            *got = 0;
            return NB_ERR_IO;
        }
        if (cap > f->drop_after - f->sent)
            cap = f->drop_after - f->sent;
    }
    nb_err err = f->inner.read(f->inner.ctx, buf, cap, got);
    f->sent += *got;
    return err;
}

static void ft_close(void *ctx)
{
    struct faults *f = ctx;
    f->inner.close(f->inner.ctx);
}

static nb_err tf_make(void *ctx, uint8_t kind, const char *where,
                      struct nb_transport *out)
{
    struct faults *f = ctx;
    assert_false(f->open);
    assert_int_equal(kind, NB_AGENT_TR_FILE);
    char path[600];
    snprintf(path, sizeof(path), "%s", f->path);
    (void)where;
    nb_err err = nb_transport_file_init(&f->file, path, &f->inner);
    if (err)
        return err;
    f->transports++;
    f->open = 1;
    out->ctx = f;
    out->open = ft_open;
    out->read = ft_read;
    out->close = ft_close;
    return NB_OK;
}

static void tf_release(void *ctx, struct nb_transport *t)
{
    struct faults *f = ctx;
    (void)t;
    assert_true(f->open);
    nb_transport_file_free(&f->file);
    f->open = 0;
}

/* A test package like nb_testpkg_make's, for hardware revision `hw`. */
static nb_err make_package(struct nb_testkeys *k, const struct nb_crypto *c,
                           uint32_t version, uint32_t svn, uint32_t size,
                           uint64_t seed, const char *hw, struct nb_buf *out)
{
    struct nb_manifest_req req;
    struct nb_buf m = {0};
    uint8_t *payload = malloc(size ? size : 1);
    if (!payload)
        return NB_ERR_NOMEM;
    nb_testpkg_payload(payload, size, seed);
    memset(&req, 0, sizeof(req));
    nb_testpkg_vendor(req.vendor);
    nb_testpkg_class(req.class_id);
    req.hw_count = 1;
    req.hw[0] = hw;
    req.major = nb_version_major(version);
    req.minor = nb_version_minor(version);
    req.patch = nb_version_patch(version);
    req.svn = svn;
    req.created = NB_TEST_CREATED;
    nb_err err = nb_build_manifest(c, &k->signer, k->delegation.p,
                                   k->delegation.len, &req, payload, size,
                                   &m);
    if (!err)
        err = nb_build_package(c, m.p, m.len, payload, size, out);
    nb_buf_free(&m);
    free(payload);
    return err;
}

/* ------------------------------------------------------------- the rig */

struct rig {
    struct nb_simflash *sim;
    struct nb_flash flash;
    struct nb_openssl_crypto oc;
    struct nb_crypto crypto;
    struct nb_testkeys keys;
    struct nb_identity id;
    struct nb_boot_config boot;
    struct nb_device dev;
    uint8_t buf[BUF];
    uint8_t mbuf[NB_MANIFEST_MAX];
    uint8_t rx[RX];
    struct fake_api api;
    struct faults tr;
    uint64_t t;           /* the fake clock */
    uint32_t rnd;
    int healthy;          /* what the health check says */
    unsigned health_runs;
    struct nb_agent_config cfg;
    struct nb_agent a;
    char dir[256];
    struct nb_buf pkg;
    uint32_t mlen;
};

static uint64_t r_now(void *ctx)
{
    return ((struct rig *)ctx)->t;
}

static uint32_t r_random(void *ctx)
{
    struct rig *r = ctx;
    r->rnd = r->rnd * 1103515245u + 12345u;
    return r->rnd >> 1;
}

static void r_log(void *ctx, int level, const char *line)
{
    (void)ctx;
    if (getenv("AGENT_TEST_LOG"))
        fprintf(stderr, "  [%d] %s\n", level, line);
}

static nb_err r_health(void *ctx, const char *version, uint32_t timeout_ms,
                       int *healthy, char *detail, size_t cap)
{
    struct rig *r = ctx;
    (void)timeout_ms;
    assert_string_equal(version, "1.1.0");
    r->health_runs++;
    *healthy = r->healthy;
    snprintf(detail, cap, "fake check: %s", r->healthy ? "ok" : "bad");
    return NB_OK;
}

/* Install and confirm `pkg` directly (the factory's first image). */
static void stage_confirmed(struct rig *r, const struct nb_buf *pkg)
{
    struct nb_install in;
    struct nb_boot_result res;
    uint32_t mlen = (uint32_t)(pkg->p[8] | pkg->p[9] << 8 |
                               pkg->p[10] << 16 | (uint32_t)pkg->p[11] << 24);
    assert_int_equal(nb_device_open(&r->dev, &r->boot), NB_OK);
    assert_int_equal(nb_install_begin(&in, &r->dev, pkg->p + NB_PKG_HDR_SIZE,
                                      mlen, NB_TARGET_UPDATE),
                     NB_OK);
    const struct nb_manifest *m = &r->dev.manifest;
    assert_int_equal(nb_install_write(&in, pkg->p + m->payload_offset,
                                      m->payload_size),
                     NB_OK);
    assert_int_equal(nb_install_finish(&in), NB_OK);
    assert_int_equal(nb_install_set_pending(&r->dev), NB_OK);
    assert_int_equal(nb_boot(&r->dev, &res), NB_OK);
    assert_int_equal(nb_confirm(&r->dev), NB_OK);
}

static void write_file(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* A provisioned device running 1.0.0 CONFIRMED, an offer of 1.1.0 whose
 * package is a file, and an agent wired to the doubles. */
static struct rig *rig_new(uint8_t kind)
{
    struct nb_simflash_geometry g;
    struct rig *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    memset(&g, 0, sizeof(g));
    g.write_size = 8;
    g.erase_value = 0xFF;
    g.region_count = 1;
    g.regions[0].size = 4096;
    g.regions[0].count = 3 * (PAYLOAD + 8192) / 4096 + 8;
    assert_int_equal(nb_simflash_create_mem(&r->sim, &g), NB_OK);
    nb_simflash_interface(r->sim, &r->flash);
    assert_int_equal(nb_crypto_openssl_init(&r->crypto, &r->oc), NB_OK);
    assert_int_equal(nb_testkeys_init(&r->keys, &r->crypto), NB_OK);
    nb_testpkg_identity(&r->id);
    r->boot.flash = &r->flash;
    r->boot.crypto = &r->crypto;
    r->boot.keystore = &r->keys.keystore;
    r->boot.identity = &r->id;
    assert_int_equal(nb_layout_plan(&r->boot.layout, &r->flash, kind,
                                    PAYLOAD + 8192, 0),
                     NB_OK);
    r->boot.buf = r->buf;
    r->boot.buf_size = BUF;
    r->boot.mbuf = r->mbuf;
    r->boot.mbuf_size = NB_MANIFEST_MAX;
    assert_int_equal(nb_device_provision(&r->dev, &r->boot,
                                         NB_LIFECYCLE_DEVELOPMENT, 2),
                     NB_OK);
    struct nb_buf v1 = {0};
    assert_int_equal(nb_testpkg_make(&r->keys, &r->crypto, V100, 1, 30000, 7,
                                     &v1),
                     NB_OK);
    stage_confirmed(r, &v1);
    nb_buf_free(&v1);

    assert_int_equal(nb_testpkg_make(&r->keys, &r->crypto, V110, 2, PAYLOAD,
                                     11, &r->pkg),
                     NB_OK);
    r->mlen = (uint32_t)(r->pkg.p[8] | r->pkg.p[9] << 8 |
                         r->pkg.p[10] << 16 | (uint32_t)r->pkg.p[11] << 24);
    snprintf(r->dir, sizeof(r->dir), "/tmp/nb-test-agent-%ld", (long)getpid());
    snprintf(r->tr.path, sizeof(r->tr.path), "%s.nbpkg", r->dir);
    write_file(r->tr.path, r->pkg.p, r->pkg.len);

    struct nb_agent_offer *o = &r->api.o;
    r->api.offer = 1;
    snprintf(o->rollout, sizeof(o->rollout), "r-7");
    snprintf(o->version, sizeof(o->version), "1.1.0");
    o->svn = 2;
    o->package_size = (uint32_t)r->pkg.len;
    snprintf(o->file_path, sizeof(o->file_path), "%s", r->tr.path);
    r->healthy = 1;

    struct nb_agent_config *c = &r->cfg;
    c->boot = r->boot;
    c->hw_rev = NB_TEST_HW_REV;
    c->api.ctx = &r->api;
    c->api.checkin = f_checkin;
    c->api.report = f_report;
    c->api.health = f_health;
    c->transports.ctx = &r->tr;
    c->transports.open = tf_make;
    c->transports.release = tf_release;
    c->health.ctx = r;
    c->health.run = r_health;
    c->platform.ctx = r;
    c->platform.now_ms = r_now;
    c->platform.random = r_random;
    c->platform.log = r_log;
    c->platform.log_level = NB_AGENT_LOG_DEBUG;
    c->prefer[0] = NB_AGENT_TR_FILE;
    c->prefer_count = 1;
    c->rxbuf = r->rx;
    c->rxbuf_size = RX;
    c->retry_base_ms = 1000;
    c->retry_max_ms = 16000;
    c->retry_attempts = 4;
    c->ack_timeout_ms = 5000;
    r->t = 1000000;
    r->rnd = 12345;
    return r;
}

static void rig_free(struct rig *r)
{
    nb_agent_free(&r->a);
    unlink(r->tr.path);
    nb_buf_free(&r->pkg);
    nb_testkeys_free(&r->keys);
    nb_crypto_openssl_free(&r->crypto, &r->oc);
    nb_simflash_close(r->sim);
    free(r);
}

/* Start the agent (power-on) and run it, jumping the fake clock to each
 * wake time, until `cycles` update cycles have ended. Returns the last
 * step's error (NB_ERR_POWER stops early). */
static nb_err run(struct rig *r, uint32_t cycles)
{
    for (unsigned steps = 0; steps < 10000; steps++) {
        if (r->a.cycles >= cycles)
            return NB_OK;
        uint64_t w = nb_agent_wake_ms(&r->a);
        if (w > r->t)
            r->t = w;
        nb_err err = nb_agent_step(&r->a);
        if (err)
            return err;
    }
    fail_msg("the agent did not finish a cycle in 10000 steps (state %s)",
             nb_agent_state_name(r->a.state));
    return NB_ERR_STATE;
}

static void start(struct rig *r)
{
    assert_int_equal(nb_agent_init(&r->a, &r->cfg), NB_OK);
}

/* What the bootloader boots now (a fresh reset). */
static void expect_boot(struct rig *r, uint32_t version, uint8_t state)
{
    struct nb_boot_result res;
    assert_int_equal(nb_device_open(&r->dev, &r->boot), NB_OK);
    assert_int_equal(nb_boot(&r->dev, &res), NB_OK);
    assert_int_equal(res.outcome, NB_BOOT_IMAGE);
    assert_int_equal(res.image.version, version);
    assert_int_equal(res.state, state);
}

/* ---------------------------------------------------------------- tests */

static void update_confirmed(void **s)
{
    (void)s;
    struct rig *r = rig_new(NB_LAYOUT_AB);
    char seq[256];
    start(r);
    assert_int_equal(run(r, 1), NB_OK);
    assert_int_equal(r->a.outcome, NB_AGENT_UPDATED);
    sequence(&r->api, seq, sizeof(seq));
    assert_string_equal(seq, "downloading,verified,installing,trial,"
                             "confirmed");
    assert_int_equal(r->api.health_reports, 1);
    assert_true(r->api.healthy);
    assert_int_equal(r->health_runs, 1);
    /* The last progress report says: all of it. */
    unsigned last = 0;
    for (unsigned i = 0; i < r->api.n; i++)
        if (strcmp(r->api.ev[i].state, "downloading") == 0)
            last = i;
    assert_int_equal(r->api.ev[last].bytes, PAYLOAD);
    assert_int_equal(r->a.stats.bytes, PAYLOAD);
    assert_int_equal(r->a.stats.opens, 1);
    assert_int_equal(r->a.stats.reopens, 0);
    assert_int_equal(r->a.stats.bad_blocks, 0);
    expect_boot(r, V110, NB_SLOT_CONFIRMED);
    /* The next check-in: nothing to do (the server sees 1.1.0). */
    assert_int_equal(run(r, 2), NB_OK);
    assert_int_equal(r->a.outcome, NB_AGENT_UP_TO_DATE);
    rig_free(r);
}

static void update_confirmed_swap(void **s)
{
    (void)s;
    struct rig *r = rig_new(NB_LAYOUT_AB_SWAP);
    start(r);
    assert_int_equal(run(r, 1), NB_OK);
    assert_int_equal(r->a.outcome, NB_AGENT_UPDATED);
    expect_boot(r, V110, NB_SLOT_CONFIRMED);
    rig_free(r);
}

/* A refusal: the failed report with `reason`, one manifest fetch, no
 * flash byte changed, no retry at the next check-in. */
static void expect_refused(struct rig *r, const char *reason)
{
    uint32_t size = nb_simflash_size(r->sim);
    uint8_t *before = malloc(size);
    assert_non_null(before);
    memcpy(before, nb_simflash_data(r->sim), size);
    start(r);
    assert_int_equal(run(r, 1), NB_OK);
    assert_int_equal(r->a.outcome, NB_AGENT_FAILED_OUTCOME);
    assert_int_equal(r->api.n, 1);
    assert_string_equal(r->api.ev[0].state, "failed");
    assert_string_equal(r->api.ev[0].reason, reason);
    assert_int_equal(r->tr.opens, 1); /* the manifest, once */
    assert_int_equal(r->a.stats.retries, 0);
    assert_memory_equal(before, nb_simflash_data(r->sim), size);
    /* Offered again at the next poll: not tried again. */
    assert_int_equal(run(r, 2), NB_OK);
    assert_int_equal(r->tr.opens, 1);
    assert_int_equal(r->api.n, 1);
    assert_memory_equal(before, nb_simflash_data(r->sim), size);
    free(before);
    expect_boot(r, V100, NB_SLOT_CONFIRMED);
}

static void bad_signature_refused(void **s)
{
    (void)s;
    struct rig *r = rig_new(NB_LAYOUT_AB);
    /* The manifest's signature is its last 64 bytes. */
    r->pkg.p[NB_PKG_HDR_SIZE + r->mlen - 5] ^= 0x10;
    write_file(r->tr.path, r->pkg.p, r->pkg.len);
    expect_refused(r, "NB_ERR_SIGNATURE");
    rig_free(r);
}

static void wrong_hw_rev_refused(void **s)
{
    (void)s;
    struct rig *r = rig_new(NB_LAYOUT_AB);
    struct nb_buf other = {0};
    assert_int_equal(make_package(&r->keys, &r->crypto, V110, 2, PAYLOAD, 11,
                                  "sim-9", &other),
                     NB_OK);
    write_file(r->tr.path, other.p, other.len);
    nb_buf_free(&other);
    expect_refused(r, "NB_ERR_HW_REV");
    rig_free(r);
}

static void health_failing_reverts(void **s)
{
    (void)s;
    struct rig *r = rig_new(NB_LAYOUT_AB);
    char seq[256];
    r->healthy = 0;
    start(r);
    assert_int_equal(run(r, 1), NB_OK);
    assert_int_equal(r->a.outcome, NB_AGENT_REVERTED_OUTCOME);
    sequence(&r->api, seq, sizeof(seq));
    assert_string_equal(seq, "downloading,verified,installing,trial,failed,"
                             "reverted");
    assert_int_equal(r->api.health_reports, 1);
    assert_false(r->api.healthy);
    assert_int_equal(count(&r->api, "confirmed"), 0);
    expect_boot(r, V100, NB_SLOT_CONFIRMED);
    /* Never offered again in a loop. */
    assert_int_equal(run(r, 2), NB_OK);
    assert_int_equal(r->a.outcome, NB_AGENT_FAILED_OUTCOME);
    assert_int_equal(count(&r->api, "downloading") > 0, 1);
    assert_int_equal(count(&r->api, "trial"), 1);
    rig_free(r);
}

static void ack_missing(enum ack_mode mode)
{
    struct rig *r = rig_new(NB_LAYOUT_AB);
    r->api.ack = mode;
    start(r);
    uint64_t t0 = r->t;
    assert_int_equal(run(r, 1), NB_OK);
    assert_int_equal(r->a.outcome, NB_AGENT_REVERTED_OUTCOME);
    assert_int_equal(count(&r->api, "confirmed"), 0);
    assert_int_equal(count(&r->api, "reverted"), 1);
    /* Retried within the time, not beyond it. */
    assert_true(r->api.health_reports >= 2);
    assert_true(r->t - t0 >= r->cfg.ack_timeout_ms);
    expect_boot(r, V100, NB_SLOT_CONFIRMED);
    rig_free(r);
}

static void ack_lost_reverts(void **s)
{
    (void)s;
    ack_missing(ACK_NONE);
}

static void ack_wrong_nonce_reverts(void **s)
{
    (void)s;
    ack_missing(ACK_WRONG_NONCE);
}

static void ack_unreachable_reverts(void **s)
{
    (void)s;
    ack_missing(ACK_IO);
}

static void not_found_one_attempt(nb_err code, const char *name)
{
    struct rig *r = rig_new(NB_LAYOUT_AB);
    r->tr.open_err = code;
    start(r);
    assert_int_equal(run(r, 1), NB_OK);
    assert_int_equal(r->a.outcome, NB_AGENT_FAILED_OUTCOME);
    assert_int_equal(r->tr.opens, 1);
    assert_int_equal(r->a.stats.retries, 0);
    assert_int_equal(r->api.n, 1);
    assert_string_equal(r->api.ev[0].reason, name);
    /* Next poll: the server offers it again; the device does not ask. */
    assert_int_equal(run(r, 3), NB_OK);
    assert_int_equal(r->tr.opens, 1);
    rig_free(r);
}

static void artifact_404_403_416(void **s)
{
    (void)s;
    not_found_one_attempt(NB_ERR_NOENT, "NB_ERR_NOENT");
    not_found_one_attempt(NB_ERR_DENIED, "NB_ERR_DENIED");
    not_found_one_attempt(NB_ERR_RANGE, "NB_ERR_RANGE");
}

static void server_away_backoff(void **s)
{
    (void)s;
    struct rig *r = rig_new(NB_LAYOUT_AB);
    uint64_t waits[8];
    unsigned nw = 0;
    r->tr.open_err = NB_ERR_IO;
    start(r);
    /* Step by hand to see each wait. */
    while (r->a.cycles == 0) {
        uint64_t w = nb_agent_wake_ms(&r->a);
        if (w > r->t) {
            assert_true(nw < 8);
            waits[nw++] = w - r->t;
            r->t = w;
        }
        assert_int_equal(nb_agent_step(&r->a), NB_OK);
    }
    assert_int_equal(r->a.outcome, NB_AGENT_FAILED_OUTCOME);
    assert_int_equal(r->tr.opens, 4); /* retry_attempts, for the manifest */
    assert_int_equal(nw, 3);
    /* 1 s, 2 s, 4 s, each jittered into [d/2, d]. */
    for (unsigned i = 0; i < nw; i++) {
        uint64_t d = 1000u << i;
        assert_true(waits[i] >= d / 2 && waits[i] <= d);
    }
    assert_int_equal(r->api.n, 1);
    assert_string_equal(r->api.ev[0].reason, "NB_ERR_IO");
    /* Not permanent: the next poll tries again. */
    r->tr.open_err = NB_OK;
    assert_int_equal(run(r, 2), NB_OK);
    assert_int_equal(r->a.outcome, NB_AGENT_UPDATED);
    rig_free(r);
}

static void checkin_failures(void **s)
{
    (void)s;
    struct rig *r = rig_new(NB_LAYOUT_AB);
    r->api.checkin_err = NB_ERR_DENIED;
    start(r);
    assert_int_equal(run(r, 1), NB_OK);
    assert_int_equal(r->a.outcome, NB_AGENT_FAILED_OUTCOME);
    assert_int_equal(r->api.checkins, 1);
    r->api.checkin_err = NB_ERR_IO;
    assert_int_equal(run(r, 2), NB_OK);
    assert_int_equal(r->a.outcome, NB_AGENT_OFFLINE);
    assert_int_equal(r->api.checkins, 1 + 4);
    rig_free(r);
}

static void flaky_link_resumes(void **s)
{
    (void)s;
    struct rig *r = rig_new(NB_LAYOUT_AB);
    /* Every range dies after 5000 bytes, ten times (mid-block). */
    r->tr.drop_after = 5000;
    r->tr.drops_left = 10;
    start(r);
    assert_int_equal(run(r, 1), NB_OK);
    assert_int_equal(r->a.outcome, NB_AGENT_UPDATED);
    assert_int_equal(r->a.stats.bad_blocks, 0);
    assert_true(r->a.stats.reopens >= 9);
    print_message("flaky link: %llu bytes for a %u-byte payload (%.3fx), "
                  "%u opens\n", (unsigned long long)r->a.stats.bytes,
                  PAYLOAD, (double)r->a.stats.bytes / PAYLOAD,
                  r->a.stats.opens);
    /* Progress keeps the budget: 10 drops, 4 attempts allowed. */
    expect_boot(r, V110, NB_SLOT_CONFIRMED);
    rig_free(r);
}

static void power_cut_resumes(void **s)
{
    (void)s;
    struct rig *r = rig_new(NB_LAYOUT_AB);
    nb_simflash_reset_stats(r->sim);
    nb_simflash_power_on(r->sim);
    /* Cut the power well into the payload (program 12 from the start). */
    nb_simflash_cut_at(r->sim, 12, 1);
    start(r);
    assert_int_equal(run(r, 1), NB_ERR_POWER);
    assert_int_equal(r->a.state, NB_AGENT_OFF);
    /* Power comes back: a new agent (RAM is gone), the journal stays. */
    nb_simflash_power_on(r->sim);
    nb_agent_free(&r->a);
    start(r);
    assert_int_equal(run(r, 1), NB_OK);
    assert_int_equal(r->a.outcome, NB_AGENT_UPDATED);
    assert_int_equal(r->a.stats.resumed, 1);
    assert_true(r->a.stats.resume_offset > 0);
    assert_true(r->a.stats.bytes < PAYLOAD);
    expect_boot(r, V110, NB_SLOT_CONFIRMED);
    rig_free(r);
}

/* Pending found at power-on: the agent stopped before its own reboot. */
static void power_on_finds_pending(void **s)
{
    (void)s;
    struct rig *r = rig_new(NB_LAYOUT_AB);
    struct nb_install in;
    assert_int_equal(nb_device_open(&r->dev, &r->boot), NB_OK);
    assert_int_equal(nb_install_begin(&in, &r->dev,
                                      r->pkg.p + NB_PKG_HDR_SIZE, r->mlen,
                                      NB_TARGET_UPDATE),
                     NB_OK);
    const struct nb_manifest *m = &r->dev.manifest;
    assert_int_equal(nb_install_write(&in, r->pkg.p + m->payload_offset,
                                      m->payload_size),
                     NB_OK);
    assert_int_equal(nb_install_finish(&in), NB_OK);
    assert_int_equal(nb_install_set_pending(&r->dev), NB_OK);
    start(r);
    assert_int_equal(run(r, 1), NB_OK);
    assert_int_equal(r->a.outcome, NB_AGENT_UPDATED);
    assert_string_equal(r->api.ev[0].state, "trial");
    assert_int_equal(r->api.checkins, 0); /* straight to the health check */
    expect_boot(r, V110, NB_SLOT_CONFIRMED);
    rig_free(r);
}

/* A reset while the trial waits for its acknowledgement: rule 1, the
 * trial is not healthy: reverted at the power-on. */
static void reset_during_trial_reverts(void **s)
{
    (void)s;
    struct rig *r = rig_new(NB_LAYOUT_AB);
    r->api.ack = ACK_NONE;
    start(r);
    while (r->a.state != NB_AGENT_AWAIT_ACK) {
        uint64_t w = nb_agent_wake_ms(&r->a);
        r->t = w > r->t ? w : r->t;
        assert_int_equal(nb_agent_step(&r->a), NB_OK);
    }
    nb_agent_free(&r->a);
    r->api.ack = ACK_OK;
    r->api.n = 0;
    start(r);
    assert_int_equal(run(r, 1), NB_OK);
    assert_int_equal(r->a.outcome, NB_AGENT_REVERTED_OUTCOME);
    char seq[128];
    sequence(&r->api, seq, sizeof(seq));
    assert_string_equal(seq, "failed,reverted");
    assert_string_equal(r->api.ev[0].reason, "NB_ERR_STATE");
    expect_boot(r, V100, NB_SLOT_CONFIRMED);
    rig_free(r);
}

static void no_transport_offered(void **s)
{
    (void)s;
    struct rig *r = rig_new(NB_LAYOUT_AB);
    r->cfg.prefer[0] = NB_AGENT_TR_MQTT;
    start(r);
    assert_int_equal(run(r, 1), NB_OK);
    assert_int_equal(r->a.outcome, NB_AGENT_FAILED_OUTCOME);
    assert_string_equal(r->api.ev[0].reason, "NB_ERR_UNSUPPORTED");
    assert_int_equal(r->tr.transports, 0);
    rig_free(r);
}

/* -------------------------------------------------------------- helpers */

static void backoff_and_versions(void **s)
{
    (void)s;
    for (uint32_t rnd = 0; rnd < 5000; rnd += 7) {
        assert_in_range(nb_agent_backoff_ms(1000, 60000, 1, rnd), 500, 1000);
        assert_in_range(nb_agent_backoff_ms(1000, 60000, 3, rnd), 2000, 4000);
        assert_in_range(nb_agent_backoff_ms(1000, 60000, 40, rnd), 30000,
                        60000);
    }
    uint32_t v;
    char out[NB_AGENT_VERSION_MAX];
    assert_true(nb_agent_version_parse("1.1.0", &v));
    assert_int_equal(v, V110);
    assert_true(nb_agent_version_parse("255.255.65535", &v));
    nb_agent_version_str(v, out);
    assert_string_equal(out, "255.255.65535");
    const char *bad[] = {"", "1", "1.2", "1.2.3.4", "256.0.0", "1.2.65536",
                         "a.b.c", "1..2", "1.2.3 ", "-1.2.3", "1.2.+3",
                         "1.2.0000003"};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(nb_agent_version_parse(bad[i], &v));
    for (unsigned k = 0; k < NB_AGENT_TR_COUNT; k++)
        assert_int_equal(nb_agent_transport_kind(nb_agent_transport_name(
                             (uint8_t)k)),
                         (int)k);
    for (unsigned st = 0; st < NB_AGENT_STATE_COUNT; st++)
        assert_string_not_equal(nb_agent_state_name((uint8_t)st), "?");
}

static void settings(void **s)
{
    (void)s;
    struct agent_opts o;
    char path[64];
    FILE *null = fopen("/dev/null", "w");
    assert_non_null(null);
    snprintf(path, sizeof(path), "/tmp/nb-agent-conf-%ld", (long)getpid());
    FILE *f = fopen(path, "w");
    fputs("# a device\n\n  flash = /tmp/x.flash \nserver_url=http://h:1\n"
          "device_id = dev-1\nretry_base_ms = 250\ntransport = file, http\n"
          "health_cmd = test -e /tmp # keeps the hash\n", f);
    fclose(f);
    agent_opts_defaults(&o);
    assert_int_equal(agent_opts_load(&o, path, null), 0);
    assert_string_equal(o.flash, "/tmp/x.flash");
    assert_string_equal(o.health_cmd, "test -e /tmp # keeps the hash");
    assert_int_equal(o.retry_base_ms, 250);
    assert_int_equal(o.retry_max_ms, 60000);
    assert_int_equal(agent_opts_check(&o, null), 0);
    /* The command line wins. */
    assert_int_equal(agent_opts_set(&o, "retry-base-ms", "300", "--", 1,
                                    null), 0);
    assert_int_equal(o.retry_base_ms, 300);
    uint8_t k[NB_AGENT_MAX_PREFER];
    assert_int_equal(agent_opts_prefer(o.transport, k, NB_AGENT_MAX_PREFER),
                     2);
    assert_int_equal(k[0], NB_AGENT_TR_FILE);
    assert_int_equal(k[1], NB_AGENT_TR_HTTP);
    assert_int_equal(agent_opts_prefer("http,gopher", k, 8), -1);
    assert_int_equal(agent_opts_prefer("http,http", k, 8), -1);
    /* Errors: unknown key, twice, bad number, missing '='. */
    const char *bad[] = {"nosuchkey = 1\n", "flash = a\nflash = b\n",
                         "retry_attempts = 0\n", "retry_attempts = 1x\n",
                         "poll_ms = -5\n", "just words\n"};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        f = fopen(path, "w");
        fputs(bad[i], f);
        fclose(f);
        agent_opts_defaults(&o);
        assert_int_equal(agent_opts_load(&o, path, null), -1);
    }
    agent_opts_defaults(&o);
    assert_int_equal(agent_opts_check(&o, null), -1); /* no flash */
    unlink(path);
    fclose(null);
}

static void health_command(void **s)
{
    (void)s;
    int ok;
    char d[NB_AGENT_DETAIL_MAX];
    assert_int_equal(nb_health_run("exit 0", "1.1.0", 5000, &ok, d,
                                   sizeof(d)), NB_OK);
    assert_true(ok);
    assert_int_equal(nb_health_run("exit 3", "1.1.0", 5000, &ok, d,
                                   sizeof(d)), NB_OK);
    assert_false(ok);
    assert_non_null(strstr(d, "exited 3"));
    assert_int_equal(nb_health_run("test \"$NOBRICK_VERSION\" = 1.1.0",
                                   "1.1.0", 5000, &ok, d, sizeof(d)),
                     NB_OK);
    assert_true(ok);
    /* A hung check is killed (with what it started) at the timeout. */
    assert_int_equal(nb_health_run("sleep 30; exit 0", "1.1.0", 300, &ok, d,
                                   sizeof(d)), NB_OK);
    assert_false(ok);
    assert_non_null(strstr(d, "timed out"));
}

static void file_transport(void **s)
{
    (void)s;
    struct nb_transport_file tf;
    struct nb_transport t;
    uint8_t data[1000], got_buf[1000];
    char path[64];
    uint32_t got;
    for (unsigned i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7);
    snprintf(path, sizeof(path), "/tmp/nb-agent-tf-%ld", (long)getpid());
    write_file(path, data, sizeof(data));
    assert_int_equal(nb_transport_file_init(&tf, path, &t), NB_OK);
    /* Bounded by the range, whatever the buffer. */
    assert_int_equal(t.open(t.ctx, 100, 50), NB_OK);
    assert_int_equal(t.read(t.ctx, got_buf, sizeof(got_buf), &got), NB_OK);
    assert_int_equal(got, 50);
    assert_memory_equal(got_buf, data + 100, 50);
    assert_int_equal(t.read(t.ctx, got_buf, sizeof(got_buf), &got), NB_OK);
    assert_int_equal(got, 0);
    t.close(t.ctx);
    /* Small reads. */
    tf.max_read = 7;
    assert_int_equal(t.open(t.ctx, 990, 10), NB_OK);
    assert_int_equal(t.read(t.ctx, got_buf, 100, &got), NB_OK);
    assert_int_equal(got, 7);
    t.close(t.ctx);
    /* Past the end, and gone. */
    assert_int_equal(t.open(t.ctx, 990, 11), NB_ERR_RANGE);
    assert_int_equal(t.open(t.ctx, 1001, 0), NB_ERR_RANGE);
    unlink(path);
    assert_int_equal(t.open(t.ctx, 0, 1), NB_ERR_NOENT);
    nb_transport_file_free(&tf);
    assert_int_equal(nb_transport_file_init(&tf, "", &t), NB_ERR_INVAL);
}

static void checkin_parser(void **s)
{
    (void)s;
    struct nb_agent_checkin_reply rep;
    const char *offer =
        "{\"action\":\"update\",\"rollout\":\"r-7\",\"version\":\"1.1.0\","
        "\"security_version\":2,\"package_size\":102472,"
        "\"payload_offset\":1024,\"payload_size\":101448,"
        "\"manifest_url\":\"http://h/api/v1/artifacts/fw.nbman\","
        "\"artifacts\":{\"http\":\"http://h/a/fw.nbpkg\","
        "\"ftp\":\"ftp://h:2121/fw.nbpkg\",\"mqtt\":{\"artifact\":"
        "\"fw.nbpkg\"}},\"poll_seconds\":60}";
    assert_int_equal(nb_api_http_parse_checkin(offer, strlen(offer), &rep),
                     NB_OK);
    assert_int_equal(rep.action, NB_AGENT_ACTION_UPDATE);
    assert_string_equal(rep.offer.rollout, "r-7");
    assert_string_equal(rep.offer.version, "1.1.0");
    assert_int_equal(rep.offer.payload_offset, 1024);
    assert_string_equal(rep.offer.ftp_url, "ftp://h:2121/fw.nbpkg");
    assert_string_equal(rep.offer.mqtt_artifact, "fw.nbpkg");
    assert_int_equal(rep.poll_seconds, 60);
    const char *none = "{\"action\":\"none\",\"poll_seconds\":300}";
    assert_int_equal(nb_api_http_parse_checkin(none, strlen(none), &rep),
                     NB_OK);
    assert_int_equal(rep.action, NB_AGENT_ACTION_NONE);
    const char *bad[] = {
        "", "[]", "{\"action\":\"reboot\"}", "{\"action\":\"update\"}",
        "{\"action\":\"update\",\"version\":7}",
        "{\"action\":\"update\",\"version\":\"1.0.0\",\"payload_size\":-1}",
        "{\"action\":\"update\",\"version\":\"1.0.0\",\"payload_size\":"
        "4294967296}",
        "{\"action\":\"update\",\"version\":\"1.0.0\",\"artifacts\":3}"};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(nb_api_http_parse_checkin(bad[i], strlen(bad[i]),
                                                   &rep),
                         NB_ERR_MALFORMED);
    assert_int_equal(nb_api_http_status_err(404), NB_ERR_NOENT);
    assert_int_equal(nb_api_http_status_err(410), NB_ERR_NOENT);
    assert_int_equal(nb_api_http_status_err(403), NB_ERR_DENIED);
    assert_int_equal(nb_api_http_status_err(416), NB_ERR_RANGE);
    assert_int_equal(nb_api_http_status_err(503), NB_ERR_IO);
    assert_int_equal(nb_api_http_status_err(0), NB_ERR_IO);
    assert_int_equal(nb_api_http_status_err(200), NB_OK);
}

/* Helper mode for tests/test_agent_e2e.sh, for the packages that
 * 'nobrick-sim make-image' does not make (another hardware revision):
 *   test_agent make-package OUT M.m.p SVN SIZE SEED HW_REV
 * Signed with the TEST keys, like make-image. */
static int make_package_main(int argc, char **argv)
{
    struct nb_openssl_crypto oc;
    struct nb_crypto crypto;
    struct nb_testkeys keys;
    struct nb_buf pkg = {0};
    uint32_t v;
    if (argc != 8 || !nb_agent_version_parse(argv[3], &v)) {
        fprintf(stderr, "usage: test_agent make-package OUT M.m.p SVN SIZE "
                "SEED HW_REV\n");
        return 64;
    }
    if (nb_crypto_openssl_init(&crypto, &oc) ||
        nb_testkeys_init(&keys, &crypto))
        return 1;
    nb_err err = make_package(&keys, &crypto, v,
                              (uint32_t)strtoul(argv[4], NULL, 10),
                              (uint32_t)strtoul(argv[5], NULL, 10),
                              strtoull(argv[6], NULL, 10), argv[7], &pkg);
    int rc = 1;
    FILE *f = err ? NULL : fopen(argv[2], "wb");
    if (f && fwrite(pkg.p, 1, pkg.len, f) == pkg.len)
        rc = 0;
    if (f && fclose(f) != 0)
        rc = 1;
    if (rc)
        fprintf(stderr, "test_agent make-package: %s failed (%s)\n",
                argv[2], nb_err_name(err));
    nb_buf_free(&pkg);
    nb_testkeys_free(&keys);
    nb_crypto_openssl_free(&crypto, &oc);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "make-package") == 0)
        return make_package_main(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(update_confirmed),
        cmocka_unit_test(update_confirmed_swap),
        cmocka_unit_test(bad_signature_refused),
        cmocka_unit_test(wrong_hw_rev_refused),
        cmocka_unit_test(health_failing_reverts),
        cmocka_unit_test(ack_lost_reverts),
        cmocka_unit_test(ack_wrong_nonce_reverts),
        cmocka_unit_test(ack_unreachable_reverts),
        cmocka_unit_test(artifact_404_403_416),
        cmocka_unit_test(server_away_backoff),
        cmocka_unit_test(checkin_failures),
        cmocka_unit_test(flaky_link_resumes),
        cmocka_unit_test(power_cut_resumes),
        cmocka_unit_test(power_on_finds_pending),
        cmocka_unit_test(reset_during_trial_reverts),
        cmocka_unit_test(no_transport_offered),
        cmocka_unit_test(backoff_and_versions),
        cmocka_unit_test(settings),
        cmocka_unit_test(health_command),
        cmocka_unit_test(file_transport),
        cmocka_unit_test(checkin_parser),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
