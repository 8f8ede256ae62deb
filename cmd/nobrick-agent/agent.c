/* agent.c - the update agent's state machine; see agent.h.
 *
 * One function per state, one switch in nb_agent_step() that calls it.
 * A state function does its work and names the next state with goto_()
 * (or end_cycle(), which goes to IDLE); waiting is a wake time, never a
 * sleep. Failures go through fail(), which records the reason for the
 * FAILED state to report.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"

/* ---------------------------------------------------------------- names */

static const char *const state_names[NB_AGENT_STATE_COUNT] = {
    [NB_AGENT_POWER_ON] = "POWER_ON",
    [NB_AGENT_IDLE] = "IDLE",
    [NB_AGENT_CHECKIN] = "CHECKIN",
    [NB_AGENT_FETCH_MANIFEST] = "FETCH_MANIFEST",
    [NB_AGENT_DOWNLOADING] = "DOWNLOADING",
    [NB_AGENT_VERIFYING] = "VERIFYING",
    [NB_AGENT_INSTALLING] = "INSTALLING",
    [NB_AGENT_TRIAL_BOOTED] = "TRIAL_BOOTED",
    [NB_AGENT_HEALTH_CHECK] = "HEALTH_CHECK",
    [NB_AGENT_AWAIT_ACK] = "AWAIT_ACK",
    [NB_AGENT_CONFIRMED] = "CONFIRMED",
    [NB_AGENT_FAILED] = "FAILED",
    [NB_AGENT_REVERTING] = "REVERTING",
    [NB_AGENT_REVERTED] = "REVERTED",
    [NB_AGENT_OFF] = "OFF",
};

const char *nb_agent_state_name(uint8_t state)
{
    return state < NB_AGENT_STATE_COUNT ? state_names[state] : "?";
}

const char *nb_agent_outcome_name(uint8_t outcome)
{
    switch (outcome) {
    case NB_AGENT_NONE: return "none";
    case NB_AGENT_UP_TO_DATE: return "up-to-date";
    case NB_AGENT_UPDATED: return "updated";
    case NB_AGENT_FAILED_OUTCOME: return "failed";
    case NB_AGENT_REVERTED_OUTCOME: return "reverted";
    case NB_AGENT_OFFLINE: return "offline";
    }
    return "?";
}

static const char *const transport_names[NB_AGENT_TR_COUNT] = {
    "http", "https", "ftp", "ftps", "mqtt", "file"};

const char *nb_agent_transport_name(uint8_t kind)
{
    return kind < NB_AGENT_TR_COUNT ? transport_names[kind] : "?";
}

int nb_agent_transport_kind(const char *name)
{
    for (int i = 0; i < NB_AGENT_TR_COUNT; i++)
        if (strcmp(name, transport_names[i]) == 0)
            return i;
    return -1;
}

void nb_agent_version_str(uint32_t packed, char *out)
{
    snprintf(out, NB_AGENT_VERSION_MAX, "%u.%u.%u",
             (unsigned)nb_version_major(packed),
             (unsigned)nb_version_minor(packed),
             (unsigned)nb_version_patch(packed));
}

int nb_agent_version_parse(const char *s, uint32_t *packed)
{
    uint32_t part[3];
    for (int i = 0; i < 3; i++) {
        uint32_t v = 0;
        int digits = 0;
        while (*s >= '0' && *s <= '9' && digits < 6) {
            v = v * 10 + (uint32_t)(*s++ - '0');
            digits++;
        }
        if (digits == 0 || digits > 5)
            return 0;
        part[i] = v;
        if (i < 2 && *s++ != '.')
            return 0;
    }
    return *s == '\0' && nb_version_pack(part[0], part[1], part[2], packed);
}

uint32_t nb_agent_backoff_ms(uint32_t base, uint32_t max, unsigned attempt,
                             uint32_t rnd)
{
    uint64_t d = base ? base : 1;
    for (unsigned i = 1; i < attempt && d < max; i++)
        d *= 2;
    if (d > max)
        d = max;
    /* "Equal jitter": half fixed, half random, so a fleet that lost its
     * server at the same instant does not come back at the same instant,
     * and no device retries at once. */
    uint64_t half = d / 2;
    return (uint32_t)(d - half + (half ? rnd % (half + 1) : 0));
}

/* ------------------------------------------------------------- helpers */

static uint64_t now(const struct nb_agent *a)
{
    return a->cfg.platform.now_ms(a->cfg.platform.ctx);
}

static void logf_(const struct nb_agent *a, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void logf_(const struct nb_agent *a, int level, const char *fmt, ...)
{
    const struct nb_agent_platform *p = &a->cfg.platform;
    char line[512];
    va_list ap;
    if (!p->log || level > p->log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    p->log(p->ctx, level, line);
}

#define LOG_ERR(a, ...) logf_(a, NB_AGENT_LOG_ERROR, __VA_ARGS__)
#define LOG_WARN(a, ...) logf_(a, NB_AGENT_LOG_WARN, __VA_ARGS__)
#define LOG_INFO(a, ...) logf_(a, NB_AGENT_LOG_INFO, __VA_ARGS__)
#define LOG_DEBUG(a, ...) logf_(a, NB_AGENT_LOG_DEBUG, __VA_ARGS__)

static void goto_(struct nb_agent *a, uint8_t next)
{
    if (next != a->state)
        LOG_DEBUG(a, "state %s -> %s", nb_agent_state_name(a->state),
                  nb_agent_state_name(next));
    a->state = next;
    a->attempt = 0;
    a->wake_ms = now(a);
}

static void save_memo(struct nb_agent *a)
{
    if (a->cfg.store.save && a->cfg.store.save(a->cfg.store.ctx, &a->memo))
        LOG_WARN(a, "could not save the agent's memo (state file)");
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Send one report; a report that does not get through is logged and
 * counted, never retried here: progress goes on, and the next check-in
 * tells the server where the device is. */
static void report(struct nb_agent *a, const char *state, int progress,
                   uint64_t bytes, const char *reason, const char *detail)
{
    struct nb_agent_report r;
    memset(&r, 0, sizeof(r));
    r.rollout = a->offer.rollout[0] ? a->offer.rollout : a->memo.rollout;
    r.version = a->offer.version;
    r.state = state;
    r.has_progress = progress;
    r.bytes = bytes;
    r.total = a->offer.payload_size;
    r.reason = reason;
    r.detail = detail;
    a->stats.reports++;
    nb_err err = a->cfg.api.report(a->cfg.api.ctx, &r);
    if (err) {
        a->stats.reports_failed++;
        LOG_WARN(a, "report '%s' (%s %s) not delivered: %s", state,
                 r.rollout, r.version, nb_err_name(err));
    } else {
        LOG_DEBUG(a, "reported %s", state);
    }
}

/* Record why the update failed and go to FAILED. `permanent`: this offer
 * is not tried again (a refusal, a 4xx, a failed trial). */
static void fail(struct nb_agent *a, nb_err reason, int permanent,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void fail(struct nb_agent *a, nb_err reason, int permanent,
                 const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->detail, sizeof(a->detail), fmt, ap);
    va_end(ap);
    a->reason = reason;
    a->permanent = permanent;
    LOG_ERR(a, "update %s %s failed: %s (%s)",
            a->offer.rollout[0] ? a->offer.rollout : "-",
            a->offer.version[0] ? a->offer.version : "-", a->detail,
            nb_err_name(reason));
    goto_(a, NB_AGENT_FAILED);
}

/* The flash lost power (simulated flash): the device is off. */
static nb_err power_off(struct nb_agent *a)
{
    if (a->tr.close) {
        a->cfg.transports.release(a->cfg.transports.ctx, &a->tr);
        memset(&a->tr, 0, sizeof(a->tr));
    }
    LOG_WARN(a, "power lost in %s", nb_agent_state_name(a->state));
    a->state = NB_AGENT_OFF;
    return NB_ERR_POWER;
}

/* An update cycle is over: back to IDLE until the next poll. */
static void end_cycle(struct nb_agent *a, uint8_t outcome, uint64_t wait_ms)
{
    if (a->started_ms)
        a->stats.update_ms = now(a) - a->started_ms;
    a->outcome = outcome;
    a->cycles++;
    a->have_offer = 0;
    a->trial = 0;
    a->fell_back = 0;
    a->started_ms = 0;
    a->dl_started_ms = 0;
    a->last_progress_ms = 0;
    LOG_INFO(a, "cycle ended: %s", nb_agent_outcome_name(outcome));
    goto_(a, NB_AGENT_IDLE);
    a->wake_ms = now(a) + wait_ms;
}

/* After a failed attempt of the current phase: wait and try again, or
 * give up. Returns 1 when another attempt is scheduled. `deadline` (0:
 * none) caps the wait. */
static int backoff(struct nb_agent *a, nb_err err, const char *what,
                   uint64_t deadline)
{
    a->attempt++;
    if (a->attempt >= a->cfg.retry_attempts && !deadline)
        return 0;
    uint32_t d = nb_agent_backoff_ms(a->cfg.retry_base_ms,
                                     a->cfg.retry_max_ms, a->attempt,
                                     a->cfg.platform.random(
                                         a->cfg.platform.ctx));
    uint64_t t = now(a);
    if (deadline && t >= deadline)
        return 0;
    a->stats.retries++;
    a->wake_ms = deadline && t + d > deadline ? deadline : t + d;
    LOG_WARN(a, "%s: %s; attempt %u, next in %u ms", what, nb_err_name(err),
             a->attempt + 1, (unsigned)(a->wake_ms - t));
    return 1;
}

/* Reset and run the bootloader once (the simulated reboot). */
static nb_err boot_once(struct nb_agent *a)
{
    a->stats.boots++;
    nb_err err = nb_device_open(&a->dev, &a->cfg.boot);
    if (!err)
        err = nb_boot(&a->dev, &a->boot);
    if (err)
        return err;
    if (a->boot.outcome == NB_BOOT_IMAGE) {
        a->running_version = a->boot.image.version;
        a->running_svn = a->boot.image.svn;
    } else {
        a->running_version = 0;
        a->running_svn = 0;
    }
    char v[NB_AGENT_VERSION_MAX];
    nb_agent_version_str(a->boot.image.version, v);
    if (a->boot.outcome == NB_BOOT_IMAGE)
        LOG_INFO(a, "boot: slot %u, %s, %s (attempt %u)", a->boot.slot, v,
                 nb_slot_state_name(a->boot.state), a->boot.attempts);
    else
        LOG_WARN(a, "boot: nothing bootable, recovery");
    return NB_OK;
}

/* The offer as a partial one, from what the journal and memo say (after
 * a reset the server's offer is gone). */
static void offer_from_boot(struct nb_agent *a, uint32_t version)
{
    memset(&a->offer, 0, sizeof(a->offer));
    nb_agent_version_str(version, a->offer.version);
    a->offer.version_packed = version;
    if (strcmp(a->memo.version, a->offer.version) == 0)
        copy_str(a->offer.rollout, sizeof(a->offer.rollout),
                 a->memo.rollout);
    a->have_offer = 1;
}

/* The slot in `state` (first one), or -1. */
static int find_slot(const struct nb_device *d, uint8_t state)
{
    unsigned n = nb_layout_slot_count(d->cfg.layout.kind);
    for (unsigned i = 0; i < n; i++)
        if (d->state.slot[i].state == state)
            return (int)i;
    return -1;
}

/* -------------------------------------------------------------- POWER_ON */

static nb_err st_power_on(struct nb_agent *a)
{
    if (a->cfg.store.load) {
        nb_err e = a->cfg.store.load(a->cfg.store.ctx, &a->memo);
        if (e && e != NB_ERR_NOENT)
            LOG_WARN(a, "could not load the agent's memo: %s", nb_err_name(e));
        if (e)
            memset(&a->memo, 0, sizeof(a->memo));
    }
    nb_err err = nb_device_open(&a->dev, &a->cfg.boot);
    if (err == NB_ERR_POWER)
        return power_off(a);
    if (err) {
        fail(a, err, 0, "cannot mount the boot journal (%s): is the flash "
             "provisioned?", nb_err_name(err));
        return NB_OK;
    }
    /* What was under way before this power-on. */
    uint32_t cand = 0;
    int was_trial = 0, p = find_slot(&a->dev, NB_SLOT_PENDING),
        t = find_slot(&a->dev, NB_SLOT_TRIAL);
    if (t >= 0) {
        cand = a->dev.state.slot[t].version;
        was_trial = 1;
    } else if (p >= 0) {
        cand = a->dev.state.slot[p].version;
    }
    if ((err = boot_once(a)))
        return err == NB_ERR_POWER ? power_off(a)
                                   : (fail(a, err, 0, "bootloader: %s",
                                           nb_err_name(err)),
                                      NB_OK);
    const struct nb_boot_result *r = &a->boot;
    if (r->outcome == NB_BOOT_IMAGE && r->state == NB_SLOT_TRIAL) {
        offer_from_boot(a, r->image.version);
        a->trial = 1;
        if (r->attempts <= 1) {
            /* PENDING became TRIAL at this power-on: the trial's first
             * boot (the agent stopped before its own reboot). */
            LOG_INFO(a, "power-on: %s starts its trial", a->offer.version);
            goto_(a, NB_AGENT_TRIAL_BOOTED);
            return NB_OK;
        }
        /* A reset during the trial, before the server acknowledged the
         * health report: that is not a healthy update (rule 1). */
        fail(a, NB_ERR_STATE, 1, "reset during the trial of %s (boot "
             "attempt %u) before the health report was acknowledged",
             a->offer.version, r->attempts);
        return NB_OK;
    }
    if (cand && !(r->outcome == NB_BOOT_IMAGE && r->image.version == cand)) {
        /* The bootloader fell back at this power-on. */
        offer_from_boot(a, cand);
        a->fell_back = 1;
        if (was_trial)
            fail(a, NB_ERR_STATE, 1, "the bootloader rejected the trial "
                 "of %s after %u boots without confirmation",
                 a->offer.version, a->dev.state.attempt_limit);
        else
            fail(a, NB_ERR_CORRUPT, 1, "the bootloader refused to boot "
                 "pending %s", a->offer.version);
        return NB_OK;
    }
    goto_(a, NB_AGENT_CHECKIN);
    return NB_OK;
}

/* ------------------------------------------------------------------ IDLE */

static nb_err st_idle(struct nb_agent *a)
{
    goto_(a, NB_AGENT_CHECKIN);
    return NB_OK;
}

/* --------------------------------------------------------------- CHECKIN */

/* The transport and resource for the offer: the first preferred kind
 * that the offer carries. 0 when none. */
static int choose_transport(struct nb_agent *a)
{
    const struct nb_agent_offer *o = &a->offer;
    for (unsigned i = 0; i < a->cfg.prefer_count; i++) {
        const char *w = NULL;
        uint8_t k = a->cfg.prefer[i];
        switch (k) {
        case NB_AGENT_TR_HTTP:
            w = strncmp(o->http_url, "http://", 7) == 0 ? o->http_url : NULL;
            break;
        case NB_AGENT_TR_HTTPS:
            w = strncmp(o->http_url, "https://", 8) == 0 ? o->http_url
                                                         : NULL;
            break;
        case NB_AGENT_TR_FTP:
            w = strncmp(o->ftp_url, "ftp://", 6) == 0 ? o->ftp_url : NULL;
            break;
        case NB_AGENT_TR_FTPS:
            w = strncmp(o->ftp_url, "ftps://", 7) == 0 ? o->ftp_url : NULL;
            break;
        case NB_AGENT_TR_MQTT:
            w = o->mqtt_artifact[0] ? o->mqtt_artifact : NULL;
            break;
        case NB_AGENT_TR_FILE: {
            /* A path the server gave, else the artifact's file name (the
             * transport finds it in its directory). */
            const char *src = o->file_path[0]   ? o->file_path
                              : o->http_url[0]  ? o->http_url
                              : o->ftp_url[0]   ? o->ftp_url
                                                : o->mqtt_artifact;
            if (!src[0])
                break;
            if (!o->file_path[0]) {
                const char *slash = strrchr(src, '/');
                src = slash ? slash + 1 : src;
                size_t n = strcspn(src, "?#");
                if (n == 0 || n >= sizeof(a->where))
                    break;
                memcpy(a->where, src, n);
                a->where[n] = '\0';
                a->kind = k;
                return 1;
            }
            w = src;
            break;
        }
        default:
            break;
        }
        if (w) {
            copy_str(a->where, sizeof(a->where), w);
            a->kind = k;
            return 1;
        }
    }
    return 0;
}

/* Fill the check-in from the journal. */
static void make_checkin(struct nb_agent *a, struct nb_agent_checkin *c)
{
    const struct nb_state *st = &a->dev.state;
    memset(c, 0, sizeof(*c));
    c->hw_rev = a->hw_rev;
    nb_agent_version_str(a->running_version, c->version);
    c->svn = a->running_svn;
    c->slot_count = nb_layout_slot_count(a->dev.cfg.layout.kind);
    for (unsigned i = 0; i < c->slot_count; i++)
        c->slots[i] = st->slot[i];
    int r = find_slot(&a->dev, NB_SLOT_RECEIVING);
    if (r >= 0 && a->memo.rollout[0]) {
        char v[NB_AGENT_VERSION_MAX];
        nb_agent_version_str(st->slot[r].version, v);
        if (strcmp(v, a->memo.version) == 0) {
            c->has_update = 1;
            c->update_rollout = a->memo.rollout;
            c->update_state = "downloading";
            c->update_bytes = st->progress;
        }
    }
}

/* Sanity of an offer before anything acts on it (the manifest's signed
 * fields are what counts; these only pick what to fetch). */
static int offer_ok(struct nb_agent *a)
{
    struct nb_agent_offer *o = &a->offer;
    if (!nb_agent_version_parse(o->version, &o->version_packed))
        return 0;
    if (o->payload_offset && o->payload_offset > NB_PAYLOAD_OFFSET_MAX)
        return 0;
    return 1;
}

/* The server names a revocation list newer than the device's: fetch it
 * and hand it to the core, which checks the root's signature and keeps it
 * in the journal. From then on packages of a revoked key are refused. A
 * failure is logged and the next check-in tries again. */
static void apply_revocations(struct nb_agent *a,
                              const struct nb_agent_checkin_reply *rep)
{
    uint8_t buf[4096];
    uint32_t len = 0;
    if (!rep->revocations_url[0] ||
        rep->revocations_seq <= a->dev.state.rev.seq ||
        !a->cfg.api.fetch_manifest)
        return;
    nb_err err = a->cfg.api.fetch_manifest(a->cfg.api.ctx,
                                           rep->revocations_url, buf,
                                           sizeof(buf), &len);
    if (!err)
        err = nb_device_apply_revocations(&a->dev, buf, len);
    if (err)
        LOG_WARN(a, "revocation list %u: %s", (unsigned)rep->revocations_seq,
                 nb_err_name(err));
    else
        LOG_INFO(a, "revocation list %u applied: %u key(s) revoked",
                 (unsigned)a->dev.state.rev.seq,
                 (unsigned)a->dev.state.rev.count);
}

static nb_err st_checkin(struct nb_agent *a)
{
    struct nb_agent_checkin c;
    struct nb_agent_checkin_reply rep;
    nb_err err = nb_device_open(&a->dev, &a->cfg.boot);
    if (err == NB_ERR_POWER)
        return power_off(a);
    if (err) {
        LOG_ERR(a, "cannot mount the boot journal: %s", nb_err_name(err));
        end_cycle(a, NB_AGENT_FAILED_OUTCOME, a->cfg.poll_ms);
        return NB_OK;
    }
    make_checkin(a, &c);
    memset(&rep, 0, sizeof(rep));
    a->stats.checkins++;
    err = a->cfg.api.checkin(a->cfg.api.ctx, &c, &rep);
    if (err == NB_ERR_IO) {
        if (!backoff(a, err, "check-in", 0)) {
            LOG_ERR(a, "check-in: the server stays away after %u attempts",
                    a->attempt);
            end_cycle(a, NB_AGENT_OFFLINE, a->cfg.poll_ms);
        }
        return NB_OK;
    }
    if (err) {
        LOG_ERR(a, "check-in refused: %s (check device_id and the token)",
                nb_err_name(err));
        end_cycle(a, NB_AGENT_FAILED_OUTCOME, a->cfg.poll_ms);
        return NB_OK;
    }
    uint64_t poll = rep.poll_seconds ? (uint64_t)rep.poll_seconds * 1000u
                                     : a->cfg.poll_ms;
    apply_revocations(a, &rep);
    if (rep.action != NB_AGENT_ACTION_UPDATE) {
        LOG_INFO(a, "check-in: nothing to do");
        end_cycle(a, NB_AGENT_UP_TO_DATE, poll);
        return NB_OK;
    }
    a->offer = rep.offer;
    a->have_offer = 1;
    if (!offer_ok(a)) {
        LOG_ERR(a, "check-in: malformed offer (version '%s')",
                a->offer.version);
        end_cycle(a, NB_AGENT_FAILED_OUTCOME, poll);
        return NB_OK;
    }
    LOG_INFO(a, "offer: rollout %s, version %s", a->offer.rollout,
             a->offer.version);
    if (a->boot.outcome == NB_BOOT_IMAGE &&
        a->boot.state == NB_SLOT_CONFIRMED &&
        a->running_version == a->offer.version_packed) {
        /* Already running and confirmed (a lost 'confirmed' report). */
        report(a, "confirmed", 0, 0, NULL, "already running");
        end_cycle(a, NB_AGENT_UP_TO_DATE, poll);
        return NB_OK;
    }
    if (strcmp(a->memo.failed_rollout, a->offer.rollout) == 0 &&
        strcmp(a->memo.failed_version, a->offer.version) == 0) {
        LOG_WARN(a, "offer %s %s failed before on this device: not tried "
                 "again", a->offer.rollout, a->offer.version);
        end_cycle(a, NB_AGENT_FAILED_OUTCOME, poll);
        return NB_OK;
    }
    a->started_ms = now(a);
    if (!choose_transport(a)) {
        fail(a, NB_ERR_UNSUPPORTED, 1, "no transport this device is "
             "configured for is offered");
        return NB_OK;
    }
    LOG_INFO(a, "transport %s: %s", nb_agent_transport_name(a->kind),
             a->where);
    copy_str(a->memo.rollout, sizeof(a->memo.rollout), a->offer.rollout);
    copy_str(a->memo.version, sizeof(a->memo.version), a->offer.version);
    save_memo(a);
    goto_(a, NB_AGENT_FETCH_MANIFEST);
    return NB_OK;
}

/* -------------------------------------------------------- FETCH_MANIFEST */

/* Read exactly `n` bytes of the open range. */
static nb_err read_exact(const struct nb_transport *t, uint8_t *buf,
                         uint32_t n)
{
    while (n) {
        uint32_t got = 0;
        nb_err err = t->read(t->ctx, buf, n, &got);
        if (err)
            return err;
        if (got == 0)
            return NB_ERR_TRUNCATED;
        if (got > n)
            return NB_ERR_RANGE;
        buf += got;
        n -= got;
    }
    return NB_OK;
}

/* The manifest from the package's first bytes: container header, then
 * the manifest, over the chosen transport. Bounded by the manifest
 * buffer, whatever the header claims. */
static nb_err fetch_prefix(struct nb_agent *a, uint32_t *len)
{
    uint8_t hdr[NB_PKG_HDR_SIZE];
    uint8_t *mbuf = a->cfg.boot.mbuf;
    uint32_t mcap = a->cfg.boot.mbuf_size, mlen = 0;
    uint32_t want = NB_PKG_HDR_SIZE + mcap;
    if (a->offer.payload_offset && a->offer.payload_offset < want)
        want = a->offer.payload_offset;
    if (a->offer.package_size && a->offer.package_size < want)
        want = a->offer.package_size;
    if (want <= NB_PKG_HDR_SIZE)
        return NB_ERR_MALFORMED;
    memset(&a->tr, 0, sizeof(a->tr));
    nb_err err = a->cfg.transports.open(a->cfg.transports.ctx, a->kind,
                                        a->where, &a->tr);
    if (err) {
        memset(&a->tr, 0, sizeof(a->tr));
        return err;
    }
    err = a->tr.open(a->tr.ctx, 0, want);
    if (!err)
        err = read_exact(&a->tr, hdr, sizeof(hdr));
    if (!err)
        err = nb_pkg_parse_header(hdr, &mlen);
    if (!err && mlen > mcap)
        err = NB_ERR_NOSPC;
    if (!err && mlen > want - NB_PKG_HDR_SIZE)
        err = NB_ERR_TRUNCATED;
    if (!err)
        err = read_exact(&a->tr, mbuf, mlen);
    a->tr.close(a->tr.ctx);
    a->cfg.transports.release(a->cfg.transports.ctx, &a->tr);
    memset(&a->tr, 0, sizeof(a->tr));
    a->stats.manifest_bytes += err ? 0 : NB_PKG_HDR_SIZE + mlen;
    *len = mlen;
    return err;
}

/* A failed transfer: retry an I/O error with backoff, end the attempt on
 * anything else (4xx: reported, never retried in a loop). */
static void transfer_failed(struct nb_agent *a, nb_err err, const char *what)
{
    if (err == NB_ERR_IO || err == NB_ERR_TRUNCATED || err == NB_ERR_DIGEST) {
        if (!backoff(a, err, what, 0))
            fail(a, err, 0, "%s: %s after %u attempts, giving up", what,
                 nb_err_name(err), a->attempt);
        return;
    }
    const char *why = err == NB_ERR_NOENT    ? "not found (404/410)"
                      : err == NB_ERR_DENIED ? "refused (401/403)"
                      : err == NB_ERR_RANGE  ? "range not satisfiable (416)"
                                             : nb_err_name(err);
    fail(a, err, 1, "%s %s: %s", what, a->where, why);
}

static nb_err st_fetch_manifest(struct nb_agent *a)
{
    struct nb_device *d = &a->dev;
    nb_err err = nb_device_open(d, &a->cfg.boot);
    if (err == NB_ERR_POWER)
        return power_off(a);
    if (err) {
        fail(a, err, 0, "cannot mount the boot journal");
        return NB_OK;
    }
    /* A download of this very package under way: continue it. */
    int r = find_slot(d, NB_SLOT_RECEIVING);
    if (r >= 0 && a->attempt == 0 &&
        d->state.slot[r].version == a->offer.version_packed &&
        d->state.slot[r].svn == a->offer.svn && d->state.progress > 0) {
        err = nb_install_resume(&a->in, d);
        if (err == NB_ERR_POWER)
            return power_off(a);
        if (!err) {
            a->offer.payload_size = d->manifest.payload_size;
            a->stats.payload = d->manifest.payload_size;
            a->stats.resumed++;
            a->stats.resume_offset = nb_install_offset(&a->in);
            LOG_INFO(a, "resuming the download of %s at payload byte %u",
                     a->offer.version, (unsigned)a->stats.resume_offset);
            goto_(a, NB_AGENT_DOWNLOADING);
            return NB_OK;
        }
        LOG_WARN(a, "cannot resume (%s): starting over", nb_err_name(err));
        if ((err = nb_device_open(d, &a->cfg.boot)))
            return err == NB_ERR_POWER ? power_off(a)
                                       : (fail(a, err, 0, "journal"), NB_OK);
    }
    uint32_t len = 0;
    int direct = a->offer.manifest_url[0] && a->cfg.api.fetch_manifest &&
                 (a->kind == NB_AGENT_TR_HTTP || a->kind == NB_AGENT_TR_HTTPS);
    if (direct) {
        err = a->cfg.api.fetch_manifest(a->cfg.api.ctx,
                                        a->offer.manifest_url,
                                        a->cfg.boot.mbuf,
                                        a->cfg.boot.mbuf_size, &len);
        if (!err)
            a->stats.manifest_bytes += len;
    } else {
        err = fetch_prefix(a, &len);
    }
    if (err == NB_ERR_IO || err == NB_ERR_TRUNCATED) {
        transfer_failed(a, err, "manifest");
        return NB_OK;
    }
    if (err) {
        /* A malformed header counts as refused like a bad manifest. */
        if (err == NB_ERR_NOENT || err == NB_ERR_DENIED || err == NB_ERR_RANGE)
            transfer_failed(a, err, "manifest");
        else
            fail(a, err, 1, "manifest of %s not usable: %s",
                 a->offer.version, nb_err_name(err));
        return NB_OK;
    }
    /* Verification happens here: nothing is written unless it passes. */
    err = nb_install_begin(&a->in, d, a->cfg.boot.mbuf, len,
                           NB_TARGET_UPDATE);
    if (err == NB_ERR_POWER)
        return power_off(a);
    if (err) {
        fail(a, err, 1, "package %s refused: %s", a->offer.version,
             err == NB_ERR_SIGNATURE   ? "bad signature"
             : err == NB_ERR_HW_REV    ? "not for this hardware revision"
             : err == NB_ERR_ROLLBACK  ? "security version below the floor"
             : err == NB_ERR_UNKNOWN_KEY ? "signed by an unknown key"
             : err == NB_ERR_REVOKED   ? "signing key revoked"
             : err == NB_ERR_NOSPC     ? "does not fit the slot"
             : err == NB_ERR_STATE     ? "the device is busy (trial or swap)"
                                       : nb_err_name(err));
        return NB_OK;
    }
    /* From here on the signed size is the one reported. */
    a->offer.payload_size = d->manifest.payload_size;
    a->stats.payload = d->manifest.payload_size;
    if (d->manifest.version != a->offer.version_packed)
        LOG_WARN(a, "the signed manifest says version %u.%u.%u, the offer "
                 "%s", (unsigned)nb_version_major(d->manifest.version),
                 (unsigned)nb_version_minor(d->manifest.version),
                 (unsigned)nb_version_patch(d->manifest.version),
                 a->offer.version);
    if (a->in.downgrade)
        LOG_WARN(a, "security version %u is below the floor (development)",
                 (unsigned)d->manifest.svn);
    goto_(a, NB_AGENT_DOWNLOADING);
    return NB_OK;
}

/* ----------------------------------------------------------- DOWNLOADING */

/* The transport the engine sees: the real one, with rate-limited
 * progress reports on the way. */
static nb_err w_open(void *ctx, uint32_t off, uint32_t len)
{
    struct nb_agent *a = ctx;
    return a->tr.open(a->tr.ctx, off, len);
}

static nb_err w_read(void *ctx, uint8_t *buf, uint32_t cap, uint32_t *got)
{
    struct nb_agent *a = ctx;
    nb_err err = a->tr.read(a->tr.ctx, buf, cap, got);
    uint64_t t = now(a);
    if (!err && t - a->last_progress_ms >= a->cfg.progress_interval_ms) {
        a->last_progress_ms = t;
        report(a, "downloading", 1, nb_install_offset(&a->in), NULL, NULL);
    }
    return err;
}

static void w_close(void *ctx)
{
    struct nb_agent *a = ctx;
    a->tr.close(a->tr.ctx);
}

static nb_err st_downloading(struct nb_agent *a)
{
    struct nb_download_stats ds = {0, 0, 0};
    struct nb_transport w = {a, w_open, w_read, w_close};
    uint64_t t0 = now(a);
    if (!a->dl_started_ms) {
        a->dl_started_ms = t0;
        a->last_progress_ms = t0;
        report(a, "downloading", 1, nb_install_offset(&a->in), NULL, NULL);
    }
    /* A previous attempt may have left part of a block in the work
     * buffer: the engine continues after it (nb_install_offset). */
    uint32_t before = nb_install_offset(&a->in);
    memset(&a->tr, 0, sizeof(a->tr));
    nb_err err = a->cfg.transports.open(a->cfg.transports.ctx, a->kind,
                                        a->where, &a->tr);
    if (err) {
        memset(&a->tr, 0, sizeof(a->tr));
    } else {
        err = nb_download_payload(&a->in, &w, a->dev.manifest.payload_offset,
                                  a->cfg.rxbuf, a->cfg.rxbuf_size, &ds);
        a->cfg.transports.release(a->cfg.transports.ctx, &a->tr);
        memset(&a->tr, 0, sizeof(a->tr));
    }
    a->stats.attempts++;
    a->stats.bytes += ds.bytes;
    a->stats.opens += ds.opens;
    a->stats.reopens = a->stats.opens ? a->stats.opens - 1 : 0;
    a->stats.bad_blocks += ds.bad_blocks;
    uint32_t after = nb_install_offset(&a->in);
    LOG_DEBUG(a, "download attempt: %u -> %u of %u (%s)", (unsigned)before,
              (unsigned)after, (unsigned)a->dev.manifest.payload_size,
              nb_err_name(err));
    if (err == NB_ERR_POWER)
        return power_off(a);
    if (!err) {
        a->stats.download_ms = now(a) - a->dl_started_ms;
        report(a, "downloading", 1, after, NULL, NULL);
        goto_(a, NB_AGENT_VERIFYING);
        return NB_OK;
    }
    /* A link that makes progress keeps its budget of attempts: only a
     * server that stays away, or a link that never gets a block through,
     * runs out of it. */
    if (after > before)
        a->attempt = 0;
    transfer_failed(a, err, "download");
    return NB_OK;
}

/* ------------------------------------------------------------- VERIFYING */

static nb_err st_verifying(struct nb_agent *a)
{
    uint64_t t0 = now(a);
    nb_err err = nb_install_finish(&a->in);
    a->stats.verify_ms = now(a) - t0;
    if (err == NB_ERR_POWER)
        return power_off(a);
    if (err) {
        fail(a, err, 0, "the slot does not verify after the download (%s)",
             nb_err_name(err));
        return NB_OK;
    }
    LOG_INFO(a, "%s verified in the slot", a->offer.version);
    report(a, "verified", 0, 0, NULL, NULL);
    goto_(a, NB_AGENT_INSTALLING);
    return NB_OK;
}

/* ------------------------------------------------------------ INSTALLING */

static nb_err st_installing(struct nb_agent *a)
{
    nb_err err = nb_install_set_pending(&a->dev);
    if (err == NB_ERR_POWER)
        return power_off(a);
    if (err) {
        fail(a, err, 0, "cannot mark the slot pending");
        return NB_OK;
    }
    report(a, "installing", 0, 0, NULL, NULL);
    /* The reboot: the bootloader runs on the same flash. */
    err = boot_once(a);
    if (err == NB_ERR_POWER)
        return power_off(a);
    if (err) {
        fail(a, err, 0, "bootloader: %s", nb_err_name(err));
        return NB_OK;
    }
    if (a->boot.outcome == NB_BOOT_IMAGE && a->boot.state == NB_SLOT_TRIAL &&
        a->boot.image.version == a->offer.version_packed) {
        a->trial = 1;
        goto_(a, NB_AGENT_TRIAL_BOOTED);
        return NB_OK;
    }
    a->fell_back = 1;
    fail(a, NB_ERR_CORRUPT, 1, "the bootloader did not boot %s as a trial",
         a->offer.version);
    return NB_OK;
}

/* --------------------------------------------------------- TRIAL_BOOTED */

static nb_err st_trial_booted(struct nb_agent *a)
{
    LOG_INFO(a, "%s runs on trial (boot attempt %u)", a->offer.version,
             a->boot.attempts);
    report(a, "trial", 0, 0, NULL, NULL);
    goto_(a, NB_AGENT_HEALTH_CHECK);
    return NB_OK;
}

/* --------------------------------------------------------- HEALTH_CHECK */

static nb_err st_health_check(struct nb_agent *a)
{
    const struct nb_agent_health_check *h = &a->cfg.health;
    a->healthy = 1;
    copy_str(a->health_detail, sizeof(a->health_detail),
             "no health check configured");
    if (h->run) {
        int ok = 0;
        a->health_detail[0] = '\0';
        nb_err err = h->run(h->ctx, a->offer.version, a->cfg.health_timeout_ms,
                            &ok, a->health_detail, sizeof(a->health_detail));
        if (err) {
            ok = 0;
            if (!a->health_detail[0])
                snprintf(a->health_detail, sizeof(a->health_detail),
                         "health check could not run: %s", nb_err_name(err));
        }
        a->healthy = ok;
    }
    LOG_INFO(a, "health: %s (%s)", a->healthy ? "healthy" : "UNHEALTHY",
             a->health_detail);
    uint32_t r0 = a->cfg.platform.random(a->cfg.platform.ctx);
    uint32_t r1 = a->cfg.platform.random(a->cfg.platform.ctx);
    snprintf(a->nonce, sizeof(a->nonce), "%08x%08x", (unsigned)r0,
             (unsigned)r1);
    goto_(a, NB_AGENT_AWAIT_ACK);
    a->ack_deadline_ms = now(a) + a->cfg.ack_timeout_ms;
    return NB_OK;
}

/* ------------------------------------------------------------ AWAIT_ACK */

static nb_err st_await_ack(struct nb_agent *a)
{
    struct nb_agent_health_report h;
    struct nb_agent_health_ack ack;
    uint64_t t = now(a);
    if (t >= a->ack_deadline_ms) {
        fail(a, NB_ERR_IO, 1, "no acknowledgement of the health report "
             "within %u ms: not confirmed", (unsigned)a->cfg.ack_timeout_ms);
        return NB_OK;
    }
    h.rollout = a->offer.rollout[0] ? a->offer.rollout : a->memo.rollout;
    h.version = a->offer.version;
    h.healthy = a->healthy;
    h.nonce = a->nonce;
    h.detail = a->health_detail;
    memset(&ack, 0, sizeof(ack));
    a->stats.reports++;
    nb_err err = a->cfg.api.health(a->cfg.api.ctx, &h,
                                   (uint32_t)(a->ack_deadline_ms - t), &ack);
    if (err)
        a->stats.reports_failed++;
    if (!a->healthy) {
        /* Reported (acknowledged or not): never confirmed. */
        fail(a, NB_ERR_STATE, 1, "health check failed: %s",
             a->health_detail);
        return NB_OK;
    }
    if (!err && ack.ack && strcmp(ack.nonce, a->nonce) == 0) {
        LOG_INFO(a, "health report acknowledged (nonce %s)", a->nonce);
        err = nb_device_open(&a->dev, &a->cfg.boot);
        if (!err)
            err = nb_confirm(&a->dev);
        if (err == NB_ERR_POWER)
            return power_off(a);
        if (err) {
            fail(a, err, 0, "cannot confirm: %s", nb_err_name(err));
            return NB_OK;
        }
        a->trial = 0;
        a->boot.state = NB_SLOT_CONFIRMED; /* what runs now */
        goto_(a, NB_AGENT_CONFIRMED);
        return NB_OK;
    }
    if (!err) {
        LOG_WARN(a, "health answer without our acknowledgement (ack %d, "
                 "nonce '%s', ours %s)", ack.ack, ack.nonce, a->nonce);
        err = NB_ERR_IO;
    } else if (err != NB_ERR_IO) {
        fail(a, err, 1, "health report refused: %s", nb_err_name(err));
        return NB_OK;
    }
    if (!backoff(a, err, "health report", a->ack_deadline_ms))
        fail(a, NB_ERR_IO, 1, "no acknowledgement of the health report "
             "within %u ms: not confirmed", (unsigned)a->cfg.ack_timeout_ms);
    return NB_OK;
}

/* ------------------------------------------------------------ CONFIRMED */

static nb_err st_confirmed(struct nb_agent *a)
{
    LOG_INFO(a, "%s confirmed", a->offer.version);
    report(a, "confirmed", 0, 0, NULL, NULL);
    a->memo.rollout[0] = a->memo.version[0] = '\0';
    save_memo(a);
    end_cycle(a, NB_AGENT_UPDATED, a->cfg.poll_ms);
    return NB_OK;
}

/* --------------------------------------------------------------- FAILED */

static nb_err st_failed(struct nb_agent *a)
{
    if (a->have_offer)
        report(a, "failed", 0, 0, nb_err_name(a->reason), a->detail);
    if (a->have_offer && a->permanent && a->offer.version[0]) {
        copy_str(a->memo.failed_rollout, sizeof(a->memo.failed_rollout),
                 a->offer.rollout[0] ? a->offer.rollout : a->memo.rollout);
        copy_str(a->memo.failed_version, sizeof(a->memo.failed_version),
                 a->offer.version);
        save_memo(a);
    }
    if (a->trial) {
        goto_(a, NB_AGENT_REVERTING);
    } else if (a->fell_back) {
        goto_(a, NB_AGENT_REVERTED);
    } else {
        end_cycle(a, NB_AGENT_FAILED_OUTCOME, a->cfg.poll_ms);
    }
    return NB_OK;
}

/* ------------------------------------------------------------ REVERTING */

static nb_err st_reverting(struct nb_agent *a)
{
    /* Reset until the bootloader has counted the trial out and boots the
     * confirmed image (or, with nothing confirmed, recovery). */
    for (unsigned i = 0; i < NB_AGENT_MAX_BOOTS; i++) {
        nb_err err = boot_once(a);
        if (err == NB_ERR_POWER)
            return power_off(a);
        if (err) {
            LOG_ERR(a, "bootloader while reverting: %s", nb_err_name(err));
            continue;
        }
        if (a->boot.outcome != NB_BOOT_IMAGE ||
            a->boot.state != NB_SLOT_TRIAL) {
            a->trial = 0;
            goto_(a, NB_AGENT_REVERTED);
            return NB_OK;
        }
    }
    LOG_ERR(a, "the trial is still running after %u resets",
            NB_AGENT_MAX_BOOTS);
    end_cycle(a, NB_AGENT_FAILED_OUTCOME, a->cfg.poll_ms);
    return NB_OK;
}

/* ------------------------------------------------------------- REVERTED */

static nb_err st_reverted(struct nb_agent *a)
{
    char v[NB_AGENT_VERSION_MAX];
    nb_agent_version_str(a->running_version, v);
    LOG_INFO(a, "reverted: %s runs (%s)", v,
             a->boot.outcome == NB_BOOT_IMAGE
                 ? nb_slot_state_name(a->boot.state)
                 : "recovery");
    report(a, "reverted", 0, 0, NULL, v);
    a->memo.rollout[0] = a->memo.version[0] = '\0';
    save_memo(a);
    end_cycle(a, NB_AGENT_REVERTED_OUTCOME, a->cfg.poll_ms);
    return NB_OK;
}

/* ------------------------------------------------------------------ API */

nb_err nb_agent_init(struct nb_agent *a, const struct nb_agent_config *cfg)
{
    memset(a, 0, sizeof(*a));
    const struct nb_agent_config *c = cfg;
    if (!c->boot.flash || !c->boot.crypto || !c->boot.keystore ||
        !c->boot.identity || !c->api.checkin || !c->api.report ||
        !c->api.health || !c->transports.open || !c->transports.release ||
        !c->platform.now_ms || !c->platform.random || !c->rxbuf ||
        c->rxbuf_size == 0 || c->prefer_count > NB_AGENT_MAX_PREFER)
        return NB_ERR_INVAL;
    for (unsigned i = 0; i < c->prefer_count; i++)
        if (c->prefer[i] >= NB_AGENT_TR_COUNT)
            return NB_ERR_INVAL;
    a->cfg = *c;
    struct nb_agent_config *k = &a->cfg;
    if (!k->prefer_count) {
        static const uint8_t def[] = {NB_AGENT_TR_HTTPS, NB_AGENT_TR_HTTP,
                                      NB_AGENT_TR_FTPS,  NB_AGENT_TR_FTP,
                                      NB_AGENT_TR_MQTT,  NB_AGENT_TR_FILE};
        memcpy(k->prefer, def, sizeof(def));
        k->prefer_count = sizeof(def);
    }
    if (k->hw_rev) {
        copy_str(a->hw_rev, sizeof(a->hw_rev), k->hw_rev);
    } else {
        /* The identity's string is not NUL-terminated. */
        const struct nb_identity *id = k->boot.identity;
        size_t n = id->hw_rev_len < NB_HW_REV_MAX ? id->hw_rev_len
                                                  : NB_HW_REV_MAX;
        memcpy(a->hw_rev, id->hw_rev, n);
        a->hw_rev[n] = '\0';
    }
    k->hw_rev = NULL; /* no pointer into the caller's memory is kept */
    k->retry_base_ms = k->retry_base_ms ? k->retry_base_ms : 1000;
    k->retry_max_ms = k->retry_max_ms ? k->retry_max_ms : 60000;
    if (k->retry_max_ms < k->retry_base_ms)
        k->retry_max_ms = k->retry_base_ms;
    k->retry_attempts = k->retry_attempts ? k->retry_attempts : 5;
    k->progress_interval_ms =
        k->progress_interval_ms ? k->progress_interval_ms : 2000;
    k->health_timeout_ms = k->health_timeout_ms ? k->health_timeout_ms : 30000;
    k->ack_timeout_ms = k->ack_timeout_ms ? k->ack_timeout_ms : 30000;
    k->poll_ms = k->poll_ms ? k->poll_ms : 300000;
    a->state = NB_AGENT_POWER_ON;
    a->wake_ms = now(a);
    return NB_OK;
}

nb_err nb_agent_step(struct nb_agent *a)
{
    if (a->state == NB_AGENT_OFF)
        return NB_ERR_POWER;
    if (now(a) < a->wake_ms)
        return NB_OK;
    switch ((enum nb_agent_state)a->state) {
    case NB_AGENT_POWER_ON: return st_power_on(a);
    case NB_AGENT_IDLE: return st_idle(a);
    case NB_AGENT_CHECKIN: return st_checkin(a);
    case NB_AGENT_FETCH_MANIFEST: return st_fetch_manifest(a);
    case NB_AGENT_DOWNLOADING: return st_downloading(a);
    case NB_AGENT_VERIFYING: return st_verifying(a);
    case NB_AGENT_INSTALLING: return st_installing(a);
    case NB_AGENT_TRIAL_BOOTED: return st_trial_booted(a);
    case NB_AGENT_HEALTH_CHECK: return st_health_check(a);
    case NB_AGENT_AWAIT_ACK: return st_await_ack(a);
    case NB_AGENT_CONFIRMED: return st_confirmed(a);
    case NB_AGENT_FAILED: return st_failed(a);
    case NB_AGENT_REVERTING: return st_reverting(a);
    case NB_AGENT_REVERTED: return st_reverted(a);
    case NB_AGENT_OFF:
    case NB_AGENT_STATE_COUNT:
        break;
    }
    return NB_ERR_STATE;
}

uint64_t nb_agent_wake_ms(const struct nb_agent *a)
{
    return a->wake_ms;
}

void nb_agent_free(struct nb_agent *a)
{
    if (a->tr.close && a->cfg.transports.release) {
        a->cfg.transports.release(a->cfg.transports.ctx, &a->tr);
        memset(&a->tr, 0, sizeof(a->tr));
    }
}
