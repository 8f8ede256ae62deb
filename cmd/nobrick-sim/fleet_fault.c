/* fleet_fault.c - the faults of a simulated fleet: classes and rates, the
 * seeded per-device plan, and the wrappers that inject them between the
 * agent and its ports (no proxy process).
 *
 * Every random choice about a device comes from its own splitmix64
 * stream, seeded from --seed and the device's number only: the same
 * device (same --first-id offset) gets the same plan whatever the size of
 * the fleet, so one device can be run again alone.
 *
 * Where each class strikes:
 *   power        when the agent starts on an offer (CHECKIN ->
 *                FETCH_MANIFEST), one power cut is armed in the
 *                simulated flash: at about 10 %, 50 % or 90 % of the
 *                install's flash operations, or at any operation of the
 *                install, trial boot and confirmation (a quarter each);
 *                after a cut, the same rate arms another one somewhere in
 *                what follows (the boot at power-on, the resumed install)
 *   torn         the share of those cuts that tear the operation (a
 *                partial program, a half-erased sector)
 *   reset        per update attempt: a reset with no flash damage at
 *                10 %, 50 % or 90 % of the download, or just before the
 *                read-back verification, or just before the install
 *   trial-reset  per update attempt: a reset while the trial waits for
 *                the server's acknowledgement (rule 1: it reverts)
 *   drop         per device-API request: lost before the server (half)
 *                or its answer lost (half); per download range: the
 *                connection drops at a random byte
 *   stall        per request or range: nothing arrives until the port's
 *                timeout; modelled by returning what the port returns
 *                then (NB_ERR_IO) and moving the device's clock on by
 *                that timeout, so no worker thread sleeps
 *   flip         per payload range: one bit flipped at a random byte
 *                (the manifest is not flipped: a manifest that fails its
 *                signature is refused for good, which tests the signature
 *                check, not the link)
 *   bad-block    per device: one sector of its update slot whose
 *                programs (or erases) fail
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet.h"

#define API_STALL_MS 10000u   /* device ms a stalled API request costs */
#define RANGE_STALL_MS 30000u /* device ms a stalled range costs */
#define MAX_CUTS 6            /* power cuts per device per run */

static const char *const names[FLEET_F_COUNT] = {
    "power", "torn", "reset", "trial-reset", "drop", "stall", "flip",
    "bad-block"};

static const double preset_default[FLEET_F_COUNT] = {
    0.10, 0.5, 0.05, 0.02, 0.02, 0.005, 0.02, 0.01};
static const double preset_heavy[FLEET_F_COUNT] = {
    0.40, 0.5, 0.20, 0.05, 0.10, 0.02, 0.10, 0.05};

const char *fleet_fault_name(unsigned f)
{
    return f < FLEET_F_COUNT ? names[f] : "?";
}

uint64_t fleet_rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double fleet_rng_unit(uint64_t *s)
{
    return (double)(fleet_rng(s) >> 11) * (1.0 / 9007199254740992.0);
}

static int chance(struct fleet_dev *d, unsigned f)
{
    double r = d->f->o.faults.rate[f];
    return r > 0 && fleet_rng_unit(&d->rng_fault) < r;
}

static uint64_t below(struct fleet_dev *d, uint64_t n)
{
    return n ? fleet_rng(&d->rng_fault) % n : 0;
}

int fleet_faults_parse(const char *s, struct fleet_faults *out, char *err,
                       size_t cap)
{
    char buf[256];
    memset(out, 0, sizeof(*out));
    if (strlen(s) >= sizeof(buf)) {
        snprintf(err, cap, "--faults: too long");
        return -1;
    }
    memcpy(buf, s, strlen(s) + 1);
    int first = 1;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save), first = 0) {
        char *eq = strchr(t, '=');
        if (!eq) {
            const double *p = strcmp(t, "default") == 0 ? preset_default
                              : strcmp(t, "heavy") == 0 ? preset_heavy
                                                          : NULL;
            if (!first || (!p && strcmp(t, "none") != 0)) {
                snprintf(err, cap, "--faults: '%s' is not a preset (none, "
                         "default, heavy; only first) nor CLASS=RATE", t);
                return -1;
            }
            if (p)
                memcpy(out->rate, p, sizeof(out->rate));
            continue;
        }
        *eq = '\0';
        unsigned f = 0;
        while (f < FLEET_F_COUNT && strcmp(names[f], t) != 0)
            f++;
        char *end = NULL;
        double v = strtod(eq + 1, &end);
        if (f == FLEET_F_COUNT) {
            snprintf(err, cap, "--faults: unknown class '%s' (power, torn, "
                     "reset, trial-reset, drop, stall, flip, bad-block)", t);
            return -1;
        }
        if (end == eq + 1 || *end || !(v >= 0 && v <= 1)) {
            snprintf(err, cap, "--faults: %s=%s: the rate is a number from 0 "
                     "to 1", t, eq + 1);
            return -1;
        }
        out->rate[f] = v;
    }
    return 0;
}

void fleet_faults_str(const struct fleet_faults *f, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < FLEET_F_COUNT && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s=%g", i ? "," : "",
                              names[i], f->rate[i]);
}

void fleet_fault_count(struct fleet_dev *d, unsigned f)
{
    d->faults[f]++;
    __atomic_add_fetch(&d->w->fired[f], 1, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------- the plan */

/* Flash operations of installing `package` bytes into the update slot:
 * per 4 KiB block an erase, a program and a journal record; then the rest
 * of the slot erased, the records of begin, finish and pending. */
static uint64_t install_ops(const struct fleet_dev *d, uint32_t package)
{
    const struct nb_layout *l = &d->f->layout;
    uint32_t slot = l->slot[1].size, sector = 4096;
    if (!package || package > slot)
        package = slot;
    uint64_t blocks = (package + sector - 1) / sector;
    return 3 * blocks + (slot / sector - blocks) + 4;
}

/* Flash operations of the trial boot and the confirmation: a record
 * each, and for ab-swap the swap (an erase and a program per sector of
 * both slots, with a record per step). */
static uint64_t boot_ops(const struct fleet_dev *d)
{
    const struct nb_layout *l = &d->f->layout;
    if (l->kind == NB_LAYOUT_AB_SWAP)
        return 6ull * (l->slot[0].size / 4096) + 4;
    return 3;
}

static uint64_t ops_since_on(const struct fleet_dev *d)
{
    struct nb_simflash_stats st;
    nb_simflash_stats(d->sim, &st);
    return st.ops - d->ops_at_on;
}

static void arm_cut(struct fleet_dev *d, uint64_t ahead)
{
    d->cut_torn = chance(d, FLEET_F_TORN);
    d->cut_armed = 1;
    d->cuts_left--;
    nb_simflash_cut_at(d->sim, ops_since_on(d) + ahead, d->cut_torn);
    fleet_log(d->f, d->id, NB_AGENT_LOG_DEBUG, "fault: power cut armed %llu "
              "operations ahead%s", (unsigned long long)ahead,
              d->cut_torn ? " (torn)" : "");
}

void fleet_fault_plan_attempt(struct fleet_dev *d)
{
    uint64_t inst = install_ops(d, d->agent.offer.package_size);
    d->reset_state = 0;
    d->reset_at_bytes = UINT64_MAX;
    d->dl_bytes = 0;
    if (d->cuts_left && chance(d, FLEET_F_POWER)) {
        static const unsigned pct[3] = {10, 50, 90};
        uint64_t r = below(d, 4);
        arm_cut(d, r < 3 ? inst * pct[r] / 100
                         : below(d, inst + boot_ops(d)));
    }
    if (chance(d, FLEET_F_RESET)) {
        static const unsigned pct[3] = {10, 50, 90};
        uint64_t r = below(d, 5);
        uint32_t size = d->agent.offer.package_size
                            ? d->agent.offer.package_size
                            : d->f->layout.slot[1].size;
        if (r < 3)
            d->reset_at_bytes = (uint64_t)size * pct[r] / 100;
        else
            d->reset_state = r == 3 ? NB_AGENT_VERIFYING
                                    : NB_AGENT_INSTALLING;
    }
    if (!d->reset_state && chance(d, FLEET_F_TRIAL_RESET))
        d->reset_state = NB_AGENT_AWAIT_ACK;
}

void fleet_fault_after_cut(struct fleet_dev *d)
{
    if (d->cuts_left && chance(d, FLEET_F_POWER))
        arm_cut(d, below(d, install_ops(d, 0) / 2 + boot_ops(d)));
}

void fleet_fault_bad_block(struct fleet_dev *d)
{
    const struct nb_layout *l = &d->f->layout;
    /* Slot 1 (B) is where the first update goes in every layout here. */
    uint32_t sectors = l->slot[1].size / 4096;
    if (!chance(d, FLEET_F_BAD_BLOCK) || sectors == 0)
        return;
    d->bad_addr = l->slot[1].off + (uint32_t)below(d, sectors) * 4096u;
    d->bad_flags = below(d, 2) ? NB_SIMFLASH_BAD_ERASE : NB_SIMFLASH_BAD_PROG;
    nb_simflash_set_bad(d->sim, d->bad_addr, d->bad_flags);
    d->faults[FLEET_F_BAD_BLOCK] = 1;
}

/* -------------------------------------------------- the device API */

void fleet_api_close(struct fleet_dev *d)
{
    nb_api_http_free(d->api);
    d->api = NULL;
}

static void token_issued(void *ctx, const char *token)
{
    struct fleet_dev *d = ctx;
    snprintf(d->token, sizeof(d->token), "%s", token);
    __atomic_store_n(&d->pub.enrolled, 1, __ATOMIC_RELAXED);
    fleet_dev_save(d);
}

static nb_err api_open(struct fleet_dev *d)
{
    struct nb_api_http_config c;
    if (d->api)
        return NB_OK;
    memset(&c, 0, sizeof(c));
    c.server_url = d->f->o.server;
    c.device_id = d->id;
    c.token = d->token[0] ? d->token : d->f->o.enrol_token;
    c.connect_timeout_ms = 5000;
    c.timeout_ms = 15000;
    c.token_issued = token_issued;
    c.token_ctx = d;
    nb_err err = nb_api_http_new(&d->api, &c);
    if (!err)
        nb_api_http_interface(d->api, &d->api_if);
    return err;
}

/* Before a request: the firmware that cannot reach the server, a request
 * lost on the way, a stall. Returns NB_OK to send it. *lose_answer: send
 * it, then lose what comes back. */
static nb_err api_pre(struct fleet_dev *d, int *lose_answer)
{
    *lose_answer = 0;
    if (d->beh.kind == FLEET_BEH_NO_SERVER)
        return NB_ERR_IO;
    if (chance(d, FLEET_F_DROP)) {
        fleet_fault_count(d, FLEET_F_DROP);
        if (below(d, 2) == 0)
            return NB_ERR_IO;
        *lose_answer = 1;
    } else if (chance(d, FLEET_F_STALL)) {
        fleet_fault_count(d, FLEET_F_STALL);
        d->skew_ms += API_STALL_MS;
        return NB_ERR_IO;
    }
    d->requests++;
    __atomic_add_fetch(&d->w->requests, 1, __ATOMIC_RELAXED);
    return api_open(d);
}

/* After it: a lost answer is a connection that broke. */
static nb_err api_post(struct fleet_dev *d, nb_err err, int lose_answer)
{
    if (!lose_answer)
        return err;
    fleet_api_close(d);
    return NB_ERR_IO;
}

static nb_err f_checkin(void *ctx, const struct nb_agent_checkin *in,
                        struct nb_agent_checkin_reply *out)
{
    struct fleet_dev *d = ctx;
    int lose;
    nb_err err = api_pre(d, &lose);
    if (err)
        return err;
    char old[sizeof(d->token)];
    memcpy(old, d->token, sizeof(old));
    d->checkins++;
    __atomic_add_fetch(&d->w->checkins, 1, __ATOMIC_RELAXED);
    err = d->api_if.checkin(d->api, in, out);
    if (lose && strcmp(old, d->token) != 0) {
        /* The answer that carried our token never arrived. */
        memcpy(d->token, old, sizeof(old));
        __atomic_store_n(&d->pub.enrolled, d->token[0] != 0,
                         __ATOMIC_RELAXED);
        fleet_dev_save(d);
    }
    return api_post(d, err, lose);
}

static nb_err f_report(void *ctx, const struct nb_agent_report *r)
{
    struct fleet_dev *d = ctx;
    int lose;
    nb_err err = api_pre(d, &lose);
    return err ? err : api_post(d, d->api_if.report(d->api, r), lose);
}

static nb_err f_health(void *ctx, const struct nb_agent_health_report *h,
                       uint32_t timeout_ms, struct nb_agent_health_ack *ack)
{
    struct fleet_dev *d = ctx;
    int lose;
    nb_err err = api_pre(d, &lose);
    if (err)
        return err;
    /* timeout_ms is device time; the request's own bound is wall time. */
    err = d->api_if.health(d->api, h, timeout_ms, ack);
    if (lose)
        memset(ack, 0, sizeof(*ack));
    return api_post(d, err, lose);
}

static nb_err f_fetch_manifest(void *ctx, const char *url, uint8_t *buf,
                               uint32_t cap, uint32_t *len)
{
    struct fleet_dev *d = ctx;
    int lose;
    nb_err err = api_pre(d, &lose);
    if (err) {
        *len = 0;
        return err;
    }
    err = d->api_if.fetch_manifest(d->api, url, buf, cap, len);
    if (lose)
        *len = 0;
    return api_post(d, err, lose);
}

void fleet_fault_api(struct fleet_dev *d, struct nb_agent_api *api)
{
    api->ctx = d;
    api->checkin = f_checkin;
    api->report = f_report;
    api->health = f_health;
    api->fetch_manifest = f_fetch_manifest;
}

/* ------------------------------------------------------- the transport */

static nb_err t_open(void *ctx, uint32_t off, uint32_t len)
{
    struct fleet_dev *d = ctx;
    d->range_pos = 0;
    d->range_len = len;
    d->drop_at = d->stall_at = d->flip_at = UINT64_MAX;
    if (chance(d, FLEET_F_DROP)) {
        d->drop_at = below(d, len);
        if (d->drop_at == 0) { /* refused before the answer began */
            fleet_fault_count(d, FLEET_F_DROP);
            return NB_ERR_IO;
        }
    } else if (chance(d, FLEET_F_STALL)) {
        d->stall_at = below(d, len);
    }
    /* Only payload ranges get flipped bits (see the top of the file). */
    if (off > 0 && chance(d, FLEET_F_FLIP))
        d->flip_at = below(d, len);
    __atomic_add_fetch(&d->w->artifact_opens, 1, __ATOMIC_RELAXED);
    return d->inner.open(d->inner.ctx, off, len);
}

static nb_err t_read(void *ctx, uint8_t *buf, uint32_t cap, uint32_t *got)
{
    struct fleet_dev *d = ctx;
    uint64_t pos = d->range_pos;
    *got = 0;
    if (pos >= d->drop_at) {
        fleet_fault_count(d, FLEET_F_DROP);
        d->drop_at = UINT64_MAX;
        return NB_ERR_IO;
    }
    if (pos >= d->stall_at) {
        fleet_fault_count(d, FLEET_F_STALL);
        d->stall_at = UINT64_MAX;
        d->skew_ms += RANGE_STALL_MS;
        return NB_ERR_IO;
    }
    if (d->dl_bytes >= d->reset_at_bytes) {
        /* The device resets here (fleet_dev.c power-cycles it). */
        d->reset_at_bytes = UINT64_MAX;
        d->reset_now = 1;
        return NB_ERR_IO;
    }
    /* Stop each read at the next fault point so it strikes there. */
    uint64_t stop = d->drop_at < d->stall_at ? d->drop_at : d->stall_at;
    if (d->reset_at_bytes != UINT64_MAX &&
        pos + (d->reset_at_bytes - d->dl_bytes) < stop)
        stop = pos + (d->reset_at_bytes - d->dl_bytes);
    if (stop != UINT64_MAX && stop - pos < cap)
        cap = (uint32_t)(stop - pos);
    nb_err err = d->inner.read(d->inner.ctx, buf, cap, got);
    if (err)
        return err;
    if (d->flip_at >= pos && d->flip_at < pos + *got) {
        buf[d->flip_at - pos] ^= (uint8_t)(1u << below(d, 8));
        fleet_fault_count(d, FLEET_F_FLIP);
        d->flip_at = UINT64_MAX;
    }
    d->range_pos += *got;
    d->dl_bytes += *got;
    return NB_OK;
}

static void t_close(void *ctx)
{
    struct fleet_dev *d = ctx;
    d->inner.close(d->inner.ctx);
}

/* Is `url` on the device API's server (the token may go there)? */
static int on_server(const char *server, const char *url)
{
    size_t n = strlen(server);
    while (n && server[n - 1] == '/')
        n--;
    return strncmp(url, server, n) == 0 && (url[n] == '/' || url[n] == 0);
}

static nb_err tr_open(void *ctx, uint8_t kind, const char *where,
                      struct nb_transport *out)
{
    struct fleet_dev *d = ctx;
    struct nb_curl_config cc;
    if (kind != NB_AGENT_TR_HTTP && kind != NB_AGENT_TR_HTTPS)
        return NB_ERR_UNSUPPORTED;
    if (d->tr_inited)
        return NB_ERR_STATE;
    if (d->beh.kind == FLEET_BEH_NO_SERVER)
        return NB_ERR_IO;
    memset(&cc, 0, sizeof(cc));
    cc.url = where;
    cc.bearer_token = d->token[0] && on_server(d->f->o.server, where)
                          ? d->token
                          : NULL;
    cc.connect_timeout_ms = 5000;
    cc.stall_timeout_ms = 15000;
    nb_err err = nb_curl_init(&d->curl, &cc, &d->inner);
    if (err)
        return err;
    d->tr_inited = 1;
    out->ctx = d;
    out->open = t_open;
    out->read = t_read;
    out->close = t_close;
    return NB_OK;
}

static void tr_release(void *ctx, struct nb_transport *t)
{
    struct fleet_dev *d = ctx;
    (void)t;
    if (!d->tr_inited)
        return;
    nb_curl_free(&d->curl);
    d->tr_inited = 0;
}

void fleet_fault_transports(struct fleet_dev *d,
                            struct nb_agent_transports *t)
{
    t->ctx = d;
    t->open = tr_open;
    t->release = tr_release;
}
