/* test_agent_power.c - the update agent (cmd/nobrick-agent/agent.c) under
 * power cuts, in-process: the agent core against a test double of the
 * device API, a fake clock, a memory transport and a memory simulated
 * flash whose power is cut at a chosen flash operation (nb_simflash_cut_at,
 * before the operation or torn in the middle of it).
 *
 *   cut_download_*   power cut at 10 %, 50 % and 90 % of a download's
 *                    flash operations: after power-on the agent resumes
 *                    from the journal (far fewer payload bytes requested
 *                    than the payload) and the update is confirmed.
 *   sweep_*          power cut at EVERY flash operation of a whole update
 *                    cycle (download, finish, pending, the boot that starts
 *                    the trial, the confirmation), A/B and swap layouts,
 *                    cut-before and torn: right after the cut the device is
 *                    never a brick (the bootloader, reset again and again on
 *                    a copy of the flash with nobody confirming, always
 *                    boots a verified image, v1 or v2, and reaches a
 *                    confirmed one); after power-on the agent either
 *                    finishes (v2 CONFIRMED) or the device boots v1
 *                    CONFIRMED; a cut before the slot is PENDING always
 *                    finishes. Write size 8, plus write size 1 (A/B) and
 *                    32 (swap) torn (sweep_shapes).
 *   cycles_*         500 power cycles (seeded) during trial boots and
 *                    during confirmed boots, each cut at a random flash
 *                    operation or reset after a random number of agent
 *                    steps: the journal always holds v1 CONFIRMED and it
 *                    always boots (checked on a copy), only a TRIAL slot
 *                    ever has a non-zero attempt counter, a trial's count
 *                    never goes back or past the limit, and a confirmed
 *                    boot writes nothing (so nothing can reject it).
 *
 * Every failure names its case; NB_POWER_CASE=<that name> re-runs only it
 * (e.g. NB_POWER_CASE=sweep:swap:torn:57, NB_POWER_CASE=cycles:ab:12345),
 * AGENT_TEST_LOG=1 prints the agent's log, and NB_POWER_VERBOSE=1 names
 * the sweep's cuts that end with 1.0.0 kept (and the state they fell in).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent.h"
#include "nb_crypto_openssl.h"
#include "nb_simflash.h"
#include "nb_testpkg.h"

#define BUF 4096u
#define RX 3000u /* odd: reads straddle blocks */
#define V100 0x01000000u
#define V110 0x01010000u
#define SECTOR 4096u
#define LIMIT 3 /* trial boots before a trial is rejected */

/* ------------------------------------------------------- case selection */

/* NB_POWER_CASE: run only the case of that name (see the top). */
static int selected(const char *name)
{
    const char *only = getenv("NB_POWER_CASE");
    return !only || !only[0] || strcmp(only, name) == 0;
}

/* A test that runs a case family only when NB_POWER_CASE is unset or
 * names one of its cases ("sweep:ab:" selects every cut of sweep:ab:*). */
static int family_selected(const char *prefix)
{
    const char *only = getenv("NB_POWER_CASE");
    return !only || !only[0] || strncmp(only, prefix, strlen(prefix)) == 0;
}

/* ----------------------------------------------------------- the double */

enum ack_mode { ACK_OK, ACK_NONE };

struct fake_api {
    int offer;               /* offer 1.1.0 to a device not running it */
    struct nb_agent_offer o;
    enum ack_mode ack;
    unsigned checkins, reports, health_reports;
    unsigned confirmed, failed, reverted;
};

static nb_err f_checkin(void *ctx, const struct nb_agent_checkin *in,
                        struct nb_agent_checkin_reply *out)
{
    struct fake_api *f = ctx;
    f->checkins++;
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
    f->reports++;
    f->confirmed += strcmp(r->state, "confirmed") == 0;
    f->failed += strcmp(r->state, "failed") == 0;
    f->reverted += strcmp(r->state, "reverted") == 0;
    return NB_OK;
}

static nb_err f_health(void *ctx, const struct nb_agent_health_report *h,
                       uint32_t timeout_ms, struct nb_agent_health_ack *ack)
{
    struct fake_api *f = ctx;
    (void)timeout_ms;
    f->health_reports++;
    memset(ack, 0, sizeof(*ack));
    if (f->ack == ACK_OK) {
        ack->ack = 1;
        snprintf(ack->nonce, sizeof(ack->nonce), "%s", h->nonce);
    }
    return NB_OK;
}

/* ------------------------------------------------------ memory transport */

/* Serves the package from memory and counts what is asked of it. */
struct memtr {
    const uint8_t *data;
    uint32_t size;
    uint32_t payload_offset; /* ranges from here on are payload */
    uint32_t pos, left;
    int made;
    unsigned opens;
    uint64_t payload_requested; /* bytes of payload ranges opened */
};

static nb_err mt_open(void *ctx, uint32_t off, uint32_t len)
{
    struct memtr *m = ctx;
    m->opens++;
    if (off > m->size || len > m->size - off)
        return NB_ERR_RANGE;
    if (off >= m->payload_offset)
        m->payload_requested += len;
    m->pos = off;
    m->left = len;
    return NB_OK;
}

static nb_err mt_read(void *ctx, uint8_t *buf, uint32_t cap, uint32_t *got)
{
    struct memtr *m = ctx;
    uint32_t n = cap < m->left ? cap : m->left;
    if (n > 5000)
        n = 5000; /* a link delivers in pieces */
    memcpy(buf, m->data + m->pos, n);
    m->pos += n;
    m->left -= n;
    *got = n;
    return NB_OK;
}

static void mt_close(void *ctx)
{
    struct memtr *m = ctx;
    m->left = 0;
}

static nb_err mt_make(void *ctx, uint8_t kind, const char *where,
                      struct nb_transport *out)
{
    struct memtr *m = ctx;
    (void)where;
    assert_int_equal(kind, NB_AGENT_TR_FILE);
    assert_false(m->made);
    m->made = 1;
    out->ctx = m;
    out->open = mt_open;
    out->read = mt_read;
    out->close = mt_close;
    return NB_OK;
}

static void mt_release(void *ctx, struct nb_transport *t)
{
    struct memtr *m = ctx;
    (void)t;
    assert_true(m->made);
    m->made = 0;
}

/* ------------------------------------------------------------- the rig */

struct rig {
    uint8_t kind;
    char kname[16];    /* "ab", "swap", "ab-ws1": layout, write size */
    uint32_t payload;
    struct nb_simflash *sim, *snap, *scratch;
    struct nb_flash flash, scratch_flash;
    struct nb_openssl_crypto oc;
    struct nb_crypto crypto;
    struct nb_testkeys keys;
    struct nb_identity id;
    struct nb_boot_config boot, scratch_boot;
    struct nb_device dev, scratch_dev;
    uint8_t buf[BUF], scratch_buf[BUF];
    uint8_t mbuf[NB_MANIFEST_MAX], scratch_mbuf[NB_MANIFEST_MAX];
    uint8_t rx[RX];
    struct fake_api api;
    struct memtr tr;
    uint64_t t;   /* the fake clock */
    uint32_t rnd; /* the agent's random source */
    struct nb_agent_config cfg;
    struct nb_agent a;
    struct nb_buf v1, pkg; /* 1.0.0 (factory), 1.1.0 (the offer) */
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

static uint32_t manifest_len(const struct nb_buf *pkg)
{
    return (uint32_t)(pkg->p[8] | pkg->p[9] << 8 | pkg->p[10] << 16 |
                      (uint32_t)pkg->p[11] << 24);
}

/* Install `pkg` into the inactive slot and mark it PENDING (no power
 * cut: the factory, or a trial staged by the test). */
static void stage_pending(struct rig *r, const struct nb_buf *pkg)
{
    struct nb_install in;
    assert_int_equal(nb_device_open(&r->dev, &r->boot), NB_OK);
    assert_int_equal(nb_install_begin(&in, &r->dev, pkg->p + NB_PKG_HDR_SIZE,
                                      manifest_len(pkg), NB_TARGET_UPDATE),
                     NB_OK);
    const struct nb_manifest *m = &r->dev.manifest;
    assert_int_equal(nb_install_write(&in, pkg->p + m->payload_offset,
                                      m->payload_size),
                     NB_OK);
    assert_int_equal(nb_install_finish(&in), NB_OK);
    assert_int_equal(nb_install_set_pending(&r->dev), NB_OK);
}

/* A provisioned device running 1.0.0 CONFIRMED (the snapshot keeps this
 * state), an offer of 1.1.0 with a `payload`-byte payload, and an agent
 * configuration wired to the doubles. */
static struct rig *rig_new(uint8_t kind, uint32_t payload, uint32_t ws)
{
    struct nb_simflash_geometry g;
    struct nb_boot_result res;
    struct rig *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->kind = kind;
    snprintf(r->kname, sizeof(r->kname), "%s",
             kind == NB_LAYOUT_AB_SWAP ? "swap" : "ab");
    if (ws != 8)
        snprintf(r->kname + strlen(r->kname),
                 sizeof(r->kname) - strlen(r->kname), "-ws%u",
                 (unsigned)ws);
    r->payload = payload;
    memset(&g, 0, sizeof(g));
    g.write_size = ws;
    g.erase_value = 0xFF;
    g.region_count = 1;
    g.regions[0].size = SECTOR;
    g.regions[0].count = 3 * (payload + 8192) / SECTOR + 8;
    assert_int_equal(nb_simflash_create_mem(&r->sim, &g), NB_OK);
    assert_int_equal(nb_simflash_create_mem(&r->snap, &g), NB_OK);
    assert_int_equal(nb_simflash_create_mem(&r->scratch, &g), NB_OK);
    nb_simflash_interface(r->sim, &r->flash);
    nb_simflash_interface(r->scratch, &r->scratch_flash);
    assert_int_equal(nb_crypto_openssl_init(&r->crypto, &r->oc), NB_OK);
    assert_int_equal(nb_testkeys_init(&r->keys, &r->crypto), NB_OK);
    nb_testpkg_identity(&r->id);
    r->boot.flash = &r->flash;
    r->boot.crypto = &r->crypto;
    r->boot.keystore = &r->keys.keystore;
    r->boot.identity = &r->id;
    assert_int_equal(nb_layout_plan(&r->boot.layout, &r->flash, kind,
                                    payload + 8192, 0),
                     NB_OK);
    r->boot.buf = r->buf;
    r->boot.buf_size = BUF;
    r->boot.mbuf = r->mbuf;
    r->boot.mbuf_size = NB_MANIFEST_MAX;
    r->scratch_boot = r->boot;
    r->scratch_boot.flash = &r->scratch_flash;
    r->scratch_boot.buf = r->scratch_buf;
    r->scratch_boot.mbuf = r->scratch_mbuf;
    assert_int_equal(nb_device_provision(&r->dev, &r->boot,
                                         NB_LIFECYCLE_DEVELOPMENT, LIMIT),
                     NB_OK);
    /* The factory image: 1.0.0, confirmed. */
    assert_int_equal(nb_testpkg_make(&r->keys, &r->crypto, V100, 1,
                                     payload * 3 / 4, 7, &r->v1),
                     NB_OK);
    stage_pending(r, &r->v1);
    assert_int_equal(nb_boot(&r->dev, &res), NB_OK);
    assert_int_equal(nb_confirm(&r->dev), NB_OK);
    assert_int_equal(nb_simflash_copy_from(r->snap, r->sim), NB_OK);

    assert_int_equal(nb_testpkg_make(&r->keys, &r->crypto, V110, 2, payload,
                                     11, &r->pkg),
                     NB_OK);
    r->mlen = manifest_len(&r->pkg);
    r->tr.data = r->pkg.p;
    r->tr.size = (uint32_t)r->pkg.len;
    {
        struct nb_manifest m;
        assert_int_equal(nb_manifest_parse_unverified(
                             &r->crypto, r->pkg.p + NB_PKG_HDR_SIZE, r->mlen,
                             &m),
                         NB_OK);
        r->tr.payload_offset = m.payload_offset;
    }

    struct nb_agent_offer *o = &r->api.o;
    snprintf(o->rollout, sizeof(o->rollout), "r-power");
    snprintf(o->version, sizeof(o->version), "1.1.0");
    o->svn = 2;
    o->package_size = (uint32_t)r->pkg.len;
    snprintf(o->file_path, sizeof(o->file_path), "mem:v110.nbpkg");

    struct nb_agent_config *c = &r->cfg;
    c->boot = r->boot;
    c->hw_rev = NB_TEST_HW_REV;
    c->api.ctx = &r->api;
    c->api.checkin = f_checkin;
    c->api.report = f_report;
    c->api.health = f_health;
    c->transports.ctx = &r->tr;
    c->transports.open = mt_make;
    c->transports.release = mt_release;
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
    c->retry_max_ms = 8000;
    c->retry_attempts = 4;
    c->ack_timeout_ms = 5000;
    return r;
}

static void rig_free(struct rig *r)
{
    nb_agent_free(&r->a);
    nb_buf_free(&r->pkg);
    nb_buf_free(&r->v1);
    nb_testkeys_free(&r->keys);
    nb_crypto_openssl_free(&r->crypto, &r->oc);
    nb_simflash_close(r->sim);
    nb_simflash_close(r->snap);
    nb_simflash_close(r->scratch);
    free(r);
}

/* Back to the factory state (1.0.0 CONFIRMED), power on, the operation
 * counter and the statistics at zero, the doubles reset, the server
 * offering 1.1.0 and acknowledging health. */
static void rig_reset(struct rig *r, uint64_t seed)
{
    assert_int_equal(nb_simflash_copy_from(r->sim, r->snap), NB_OK);
    nb_simflash_power_on(r->sim);
    nb_simflash_reset_stats(r->sim);
    nb_simflash_seed(r->sim, seed);
    struct nb_agent_offer o = r->api.o;
    memset(&r->api, 0, sizeof(r->api));
    r->api.o = o;
    r->api.offer = 1;
    r->api.ack = ACK_OK;
    r->tr.opens = 0;
    r->tr.payload_requested = 0;
    r->t = 1000000;
    r->rnd = 12345;
}

/* Power on: a new agent (RAM is gone; the flash stays). */
static void power_up(struct rig *r)
{
    nb_agent_free(&r->a);
    assert_int_equal(nb_agent_init(&r->a, &r->cfg), NB_OK);
}

/* One agent step, the fake clock jumping to its wake time. */
static nb_err step(struct rig *r)
{
    uint64_t w = nb_agent_wake_ms(&r->a);
    if (w > r->t)
        r->t = w;
    return nb_agent_step(&r->a);
}

/* Run until `cycles` update cycles have ended or a step fails (a power
 * cut: NB_ERR_POWER). */
static nb_err run(struct rig *r, uint32_t cycles, const char *id)
{
    for (unsigned n = 0; n < 20000; n++) {
        if (r->a.cycles >= cycles)
            return NB_OK;
        nb_err err = step(r);
        if (err)
            return err;
    }
    fail_msg("%s: the agent did not end its cycle in 20000 steps (state "
             "%s)", id, nb_agent_state_name(r->a.state));
    return NB_ERR_STATE;
}

static uint64_t flash_ops(const struct rig *r)
{
    struct nb_simflash_stats st;
    nb_simflash_stats(r->sim, &st);
    return st.ops;
}

static void no_violations(const struct rig *r, const char *id)
{
    struct nb_simflash_stats st;
    nb_simflash_stats(r->sim, &st);
    if (st.violations)
        fail_msg("%s: %llu NOR violations (programs over unerased units)",
                 id, (unsigned long long)st.violations);
}

/* What the bootloader boots now on the device itself (a fresh reset). */
static void expect_boot(struct rig *r, uint32_t version, uint8_t state,
                        const char *id)
{
    struct nb_boot_result res;
    nb_err err = nb_device_open(&r->dev, &r->boot);
    if (!err)
        err = nb_boot(&r->dev, &res);
    if (err)
        fail_msg("%s: boot: %s", id, nb_err_name(err));
    if (res.outcome != NB_BOOT_IMAGE || res.image.version != version ||
        res.state != state)
        fail_msg("%s: boots outcome %u version %08x %s, expected %08x %s",
                 id, res.outcome, (unsigned)res.image.version,
                 nb_slot_state_name(res.state), (unsigned)version,
                 nb_slot_state_name(state));
}

/* The device is not a brick: on a copy of its flash the bootloader is
 * reset again and again with nobody confirming anything. Every boot must
 * give a verified image (nb_boot verifies before it chooses), 1.0.0 or
 * 1.1.0, and within the attempt limit (and a swap back) a CONFIRMED one,
 * whose version is returned. */
static uint32_t never_bricked(struct rig *r, const char *id)
{
    struct nb_boot_result res;
    assert_int_equal(nb_simflash_copy_from(r->scratch, r->sim), NB_OK);
    for (unsigned i = 0; i < LIMIT + 3; i++) {
        nb_err err = nb_device_open(&r->scratch_dev, &r->scratch_boot);
        if (!err)
            err = nb_boot(&r->scratch_dev, &res);
        if (err)
            fail_msg("%s: reset %u (on a copy): the bootloader fails: %s",
                     id, i, nb_err_name(err));
        if (res.outcome != NB_BOOT_IMAGE)
            fail_msg("%s: BRICK: reset %u (on a copy) finds nothing "
                     "bootable", id, i);
        if (res.image.version != V100 && res.image.version != V110)
            fail_msg("%s: reset %u boots version %08x", id, i,
                     (unsigned)res.image.version);
        if (res.state == NB_SLOT_CONFIRMED)
            return res.image.version;
        if (res.state != NB_SLOT_TRIAL)
            fail_msg("%s: reset %u boots a %s image", id, i,
                     nb_slot_state_name(res.state));
    }
    fail_msg("%s: no confirmed image boots after %u resets", id, LIMIT + 3);
    return 0;
}

/* ------------------------------------------- (a) cuts during a download */

/* The flash operations of one uninterrupted update, by state: ops[s] is
 * the operation count when state s was first entered, end[s] when it was
 * last left (UINT64_MAX: never). Total: all of the cycle's. */
struct profile {
    uint64_t enter[NB_AGENT_STATE_COUNT], leave[NB_AGENT_STATE_COUNT];
    uint64_t total;
};

static void profile_update(struct rig *r, struct profile *p)
{
    for (unsigned s = 0; s < NB_AGENT_STATE_COUNT; s++)
        p->enter[s] = p->leave[s] = UINT64_MAX;
    rig_reset(r, 1);
    power_up(r);
    while (r->a.cycles == 0) {
        uint8_t s = r->a.state;
        uint64_t before = flash_ops(r);
        if (p->enter[s] == UINT64_MAX)
            p->enter[s] = before;
        assert_int_equal(step(r), NB_OK);
        p->leave[s] = flash_ops(r);
    }
    assert_int_equal(r->a.outcome, NB_AGENT_UPDATED);
    p->total = flash_ops(r);
    no_violations(r, "profile");
}

static void cut_download(uint8_t kind)
{
    struct rig *r = rig_new(kind, 200000, 8);
    struct profile p;
    char id[64];
    profile_update(r, &p);
    uint64_t d0 = p.enter[NB_AGENT_DOWNLOADING];
    uint64_t d1 = p.leave[NB_AGENT_DOWNLOADING];
    assert_true(d1 > d0 + 20);
    static const unsigned pct[] = {10, 50, 90};
    for (int torn = 0; torn <= 1; torn++) {
        for (unsigned k = 0; k < 3; k++) {
            snprintf(id, sizeof(id), "cut:%s:%s:%u", r->kname,
                     torn ? "torn" : "before", pct[k]);
            if (!selected(id))
                continue;
            uint64_t cut = d0 + (d1 - d0) * pct[k] / 100;
            rig_reset(r, 100 + pct[k]);
            nb_simflash_cut_at(r->sim, cut, torn);
            power_up(r);
            nb_err err = run(r, 1, id);
            if (err != NB_ERR_POWER)
                fail_msg("%s: the cut at operation %llu did not fire (%s)",
                         id, (unsigned long long)cut, nb_err_name(err));
            if (r->a.state != NB_AGENT_OFF)
                fail_msg("%s: state %s after the cut", id,
                         nb_agent_state_name(r->a.state));
            /* Power comes back. */
            nb_simflash_power_on(r->sim);
            r->tr.payload_requested = 0;
            power_up(r);
            err = run(r, 1, id);
            if (err)
                fail_msg("%s: after power-on: %s", id, nb_err_name(err));
            if (r->a.outcome != NB_AGENT_UPDATED)
                fail_msg("%s: outcome %s after power-on", id,
                         nb_agent_outcome_name(r->a.outcome));
            const struct nb_agent_stats *s = &r->a.stats;
            uint32_t P = r->payload;
            uint64_t asked = r->tr.payload_requested;
            print_message("%-18s cut at op %5llu of %llu..%llu: resumed at "
                          "%6u, %6llu of %u payload bytes requested after "
                          "power-on (%.2fx), received %llu\n", id,
                          (unsigned long long)cut, (unsigned long long)d0,
                          (unsigned long long)d1, (unsigned)s->resume_offset,
                          (unsigned long long)asked, P, (double)asked / P,
                          (unsigned long long)s->bytes);
            if (s->resumed != 1 || s->resume_offset == 0)
                fail_msg("%s: not resumed (resumed %u, offset %u): started "
                         "from zero", id, s->resumed,
                         (unsigned)s->resume_offset);
            /* Progress is journalled once per sector, and a resume backs
             * up to the start of the sector holding that point (it may be
             * torn): what is fetched again is at most about two sectors;
             * three allow for operations not being spread evenly over the
             * payload's bytes. */
            uint64_t lost_max = 3 * SECTOR;
            if ((uint64_t)s->resume_offset + lost_max <
                (uint64_t)P * pct[k] / 100)
                fail_msg("%s: resumed at %u, the cut fell at ~%u%% of %u",
                         id, (unsigned)s->resume_offset, pct[k], P);
            if (asked != P - s->resume_offset || s->bytes != asked)
                fail_msg("%s: %llu bytes requested, %llu received after "
                         "resuming at %u of %u", id,
                         (unsigned long long)asked,
                         (unsigned long long)s->bytes,
                         (unsigned)s->resume_offset, P);
            if (asked > (uint64_t)P * (100 - pct[k]) / 100 + lost_max)
                fail_msg("%s: %llu payload bytes requested after a cut at "
                         "%u%%", id, (unsigned long long)asked, pct[k]);
            no_violations(r, id);
            expect_boot(r, V110, NB_SLOT_CONFIRMED, id);
        }
    }
    rig_free(r);
}

static void cut_download_ab(void **s)
{
    (void)s;
    if (family_selected("cut:ab:"))
        cut_download(NB_LAYOUT_AB);
}

static void cut_download_swap(void **s)
{
    (void)s;
    if (family_selected("cut:swap:"))
        cut_download(NB_LAYOUT_AB_SWAP);
}

/* ------------------------------- (b) a cut at every operation of an update */

static void sweep(uint8_t kind, uint32_t ws, int torn)
{
    struct rig *r = rig_new(kind, 40000, ws);
    struct profile p;
    char id[64], prefix[32];
    unsigned updated = 0, kept = 0, cases = 0;
    snprintf(prefix, sizeof(prefix), "sweep:%s:%s:", r->kname,
             torn ? "torn" : "before");
    if (!family_selected(prefix)) {
        rig_free(r);
        return;
    }
    profile_update(r, &p);
    /* Up to here nothing is PENDING yet: a cut must not cost the update. */
    uint64_t pending_at = p.enter[NB_AGENT_INSTALLING];
    assert_true(pending_at != UINT64_MAX && pending_at < p.total);
    for (uint64_t cut = 0; cut < p.total; cut++) {
        snprintf(id, sizeof(id), "%s%llu", prefix, (unsigned long long)cut);
        if (!selected(id))
            continue;
        cases++;
        rig_reset(r, cut * 7 + 1);
        nb_simflash_cut_at(r->sim, cut, torn);
        power_up(r);
        nb_err err = run(r, 1, id);
        if (err != NB_ERR_POWER)
            fail_msg("%s: the cut did not fire (%s, outcome %s)", id,
                     nb_err_name(err), nb_agent_outcome_name(r->a.outcome));
        uint8_t cut_in = 0;
        for (unsigned s = 0; s < NB_AGENT_STATE_COUNT; s++)
            if (p.enter[s] != UINT64_MAX && cut >= p.enter[s] &&
                cut < p.leave[s])
                cut_in = (uint8_t)s;
        nb_simflash_power_on(r->sim);
        /* Right after the cut: not a brick, the confirmed image kept (or
         * 1.1.0, when a torn confirmation record happened to land whole). */
        uint32_t conf = never_bricked(r, id);
        if (conf != V100 && !(conf == V110 && torn &&
                              cut_in == NB_AGENT_AWAIT_ACK))
            fail_msg("%s: after a cut in %s the confirmed image is %08x",
                     id, nb_agent_state_name(cut_in), (unsigned)conf);
        /* Power comes back: the agent runs one cycle without cuts. */
        power_up(r);
        err = run(r, 1, id);
        if (err)
            fail_msg("%s: after power-on: %s", id, nb_err_name(err));
        no_violations(r, id);
        switch (r->a.outcome) {
        case NB_AGENT_UPDATED:
            updated++;
            expect_boot(r, V110, NB_SLOT_CONFIRMED, id);
            break;
        case NB_AGENT_UP_TO_DATE:
            /* Only if the confirmation itself had landed. */
            updated++;
            expect_boot(r, V110, NB_SLOT_CONFIRMED, id);
            break;
        case NB_AGENT_REVERTED_OUTCOME:
        case NB_AGENT_FAILED_OUTCOME:
            kept++;
            if (getenv("NB_POWER_VERBOSE"))
                print_message("%s: cut in %s: %s, 1.0.0 kept\n", id,
                              nb_agent_state_name(cut_in),
                              nb_agent_outcome_name(r->a.outcome));
            if (cut < pending_at)
                fail_msg("%s: a cut in %s (before PENDING) ended the update "
                         "as %s instead of resuming", id,
                         nb_agent_state_name(cut_in),
                         nb_agent_outcome_name(r->a.outcome));
            expect_boot(r, V100, NB_SLOT_CONFIRMED, id);
            break;
        default:
            fail_msg("%s: outcome %s after power-on", id,
                     nb_agent_outcome_name(r->a.outcome));
        }
        /* And the bootloader agrees from here on. */
        uint32_t now_conf = never_bricked(r, id);
        if (now_conf != (r->a.outcome == NB_AGENT_UPDATED ||
                                 r->a.outcome == NB_AGENT_UP_TO_DATE
                             ? V110
                             : V100))
            fail_msg("%s: confirmed %08x after outcome %s", id,
                     (unsigned)now_conf,
                     nb_agent_outcome_name(r->a.outcome));
    }
    print_message("%s* %u cuts of %llu operations (pending at op %llu): "
                  "%u updated, %u kept 1.0.0 (reverted or failed), no "
                  "brick\n", prefix, cases, (unsigned long long)p.total,
                  (unsigned long long)pending_at, updated, kept);
    rig_free(r);
}

static void sweep_ab(void **s)
{
    (void)s;
    sweep(NB_LAYOUT_AB, 8, 0);
    sweep(NB_LAYOUT_AB, 8, 1);
}

static void sweep_swap(void **s)
{
    (void)s;
    sweep(NB_LAYOUT_AB_SWAP, 8, 0);
    sweep(NB_LAYOUT_AB_SWAP, 8, 1);
}

/* Other write sizes (torn programs leave other partial units). */
static void sweep_shapes(void **s)
{
    (void)s;
    sweep(NB_LAYOUT_AB, 1, 1);
    sweep(NB_LAYOUT_AB_SWAP, 32, 1);
}

/* --------------------------------------- (c) power cycled again and again */

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* The slot holding a version in a state, or -1. */
static int slot_with(const struct nb_state *st, unsigned n, uint32_t version,
                     uint8_t state)
{
    for (unsigned i = 0; i < n; i++)
        if (st->slot[i].version == version && st->slot[i].state == state)
            return (int)i;
    return -1;
}

static void cycles(uint8_t kind, uint64_t seed, unsigned count)
{
    struct rig *r = rig_new(kind, 40000, 8);
    char id[64];
    uint64_t x = seed ? seed : 1;
    unsigned n = nb_layout_slot_count(kind);
    unsigned trial_cycles = 0, confirmed_cycles = 0, cuts_fired = 0,
             staged = 0, rejected = 0, counted = 0;
    snprintf(id, sizeof(id), "cycles:%s:%llu", r->kname,
             (unsigned long long)seed);
    if (!selected(id)) {
        rig_free(r);
        return;
    }
    rig_reset(r, seed);
    r->api.offer = 0;       /* nothing offered: boots are just boots */
    r->api.ack = ACK_NONE;  /* a trial is never acknowledged */
    struct nb_state prev;
    assert_int_equal(nb_device_open(&r->dev, &r->boot), NB_OK);
    prev = r->dev.state;
    for (unsigned c = 0; c < count; c++) {
        /* Between cycles, sometimes, a new trial is staged (1.1.0
         * PENDING), as the agent leaves it before its own reboot. */
        int busy = prev.op != NB_OP_NONE ||
                   slot_with(&prev, n, V110, NB_SLOT_PENDING) >= 0 ||
                   slot_with(&prev, n, V110, NB_SLOT_TRIAL) >= 0;
        if (!busy && xorshift(&x) % 3 == 0) {
            stage_pending(r, &r->pkg);
            staged++;
            busy = 1;
            prev = r->dev.state;
        }
        int trial = busy;
        trial_cycles += trial;
        confirmed_cycles += !trial;
        /* A random moment: a cut at a random flash operation of this
         * power-on (before it or torn), or a reset after a random number
         * of agent steps, whichever comes first. */
        /* Mostly early: a trial's boot writes one record (A/B) or swaps
         * (tens of operations), and the agent reverts an unacknowledged
         * trial within a few steps. */
        uint64_t cut = xorshift(&x) % (xorshift(&x) % 2 ? 8 : 96);
        int torn = (int)(xorshift(&x) % 2);
        unsigned steps = 1 + (unsigned)(xorshift(&x) % (xorshift(&x) % 4
                                                            ? 6
                                                            : 40));
        nb_simflash_seed(r->sim, xorshift(&x));
        nb_simflash_power_on(r->sim);
        nb_simflash_cut_at(r->sim, cut, torn);
        power_up(r);
        for (unsigned k = 0; k < steps && r->a.cycles == 0; k++) {
            if (step(r) == NB_ERR_POWER) {
                cuts_fired++;
                break;
            }
        }
        nb_agent_free(&r->a);
        nb_simflash_disarm(r->sim);
        nb_simflash_power_on(r->sim);
        /* A confirmed boot: the power-on boot ran the confirmed 1.0.0,
         * attempts 0, and wrote nothing at all. */
        if (!trial && r->a.stats.boots) {
            const struct nb_boot_result *b = &r->a.boot;
            if (b->outcome != NB_BOOT_IMAGE || b->state != NB_SLOT_CONFIRMED ||
                b->image.version != V100 || b->attempts != 0)
                fail_msg("%s: cycle %u: a confirmed boot gave outcome %u, "
                         "%s %08x, attempts %u", id, c, b->outcome,
                         nb_slot_state_name(b->state),
                         (unsigned)b->image.version, b->attempts);
        }
        /* The journal: 1.0.0 stays CONFIRMED; attempt counters move only
         * for a trial. */
        nb_err err = nb_device_open(&r->dev, &r->boot);
        if (err)
            fail_msg("%s: cycle %u: the journal does not mount: %s", id, c,
                     nb_err_name(err));
        const struct nb_state *st = &r->dev.state;
        if (slot_with(st, n, V100, NB_SLOT_CONFIRMED) < 0)
            fail_msg("%s: cycle %u (%s, cut %llu%s, %u steps): 1.0.0 is no "
                     "longer CONFIRMED", id, c, trial ? "trial" : "confirmed",
                     (unsigned long long)cut, torn ? " torn" : "", steps);
        if (!trial && st->seq != prev.seq)
            fail_msg("%s: cycle %u: a confirmed boot wrote the journal "
                     "(seq %u -> %u)", id, c, (unsigned)prev.seq,
                     (unsigned)st->seq);
        for (unsigned i = 0; i < n; i++) {
            const struct nb_slot_info *si = &st->slot[i];
            if (si->state != NB_SLOT_TRIAL && si->attempts != 0)
                fail_msg("%s: cycle %u: slot %u is %s with attempts %u", id,
                         c, i, nb_slot_state_name(si->state), si->attempts);
            if (si->state == NB_SLOT_TRIAL &&
                (si->attempts < 1 || si->attempts > LIMIT))
                fail_msg("%s: cycle %u: trial attempts %u (limit %u)", id, c,
                         si->attempts, LIMIT);
        }
        int pt = slot_with(&prev, n, V110, NB_SLOT_TRIAL);
        int nt = slot_with(st, n, V110, NB_SLOT_TRIAL);
        if (pt >= 0 && nt >= 0 &&
            st->slot[nt].attempts < prev.slot[pt].attempts)
            fail_msg("%s: cycle %u: trial attempts went back %u -> %u", id,
                     c, prev.slot[pt].attempts, st->slot[nt].attempts);
        if (pt >= 0 && nt >= 0 &&
            st->slot[nt].attempts > prev.slot[pt].attempts)
            counted++;
        if (trial && slot_with(st, n, V110, NB_SLOT_REJECTED) >= 0 &&
            slot_with(&prev, n, V110, NB_SLOT_REJECTED) < 0)
            rejected++;
        /* And it boots: on a copy, reset until a confirmed image runs. */
        uint32_t conf = never_bricked(r, id);
        if (conf != V100)
            fail_msg("%s: cycle %u: confirmed %08x", id, c, (unsigned)conf);
        prev = r->dev.state;
    }
    print_message("%s: %u power cycles (%u during a trial, %u confirmed), "
                  "%u cut mid-operation, %u trials staged, %u trial boots "
                  "counted, %u trials rejected; 1.0.0 always CONFIRMED and "
                  "bootable\n", id, count, trial_cycles, confirmed_cycles,
                  cuts_fired, staged, counted, rejected);
    if (trial_cycles < count / 5 || confirmed_cycles < count / 10 ||
        cuts_fired < count / 10 || rejected < 5 || counted < 5)
        fail_msg("%s: too little coverage", id);
    rig_free(r);
}

static uint64_t seed_env(uint64_t dflt)
{
    const char *only = getenv("NB_POWER_CASE");
    if (only && strncmp(only, "cycles:", 7) == 0) {
        const char *colon = strrchr(only, ':');
        return strtoull(colon + 1, NULL, 10);
    }
    return dflt;
}

static void cycles_ab(void **s)
{
    (void)s;
    cycles(NB_LAYOUT_AB, seed_env(20260101), 500);
}

static void cycles_swap(void **s)
{
    (void)s;
    cycles(NB_LAYOUT_AB_SWAP, seed_env(20260102), 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cut_download_ab),
        cmocka_unit_test(cut_download_swap),
        cmocka_unit_test(sweep_ab),
        cmocka_unit_test(sweep_swap),
        cmocka_unit_test(sweep_shapes),
        cmocka_unit_test(cycles_ab),
        cmocka_unit_test(cycles_swap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
