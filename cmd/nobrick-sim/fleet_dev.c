/* fleet_dev.c - one simulated device of the fleet at run time: the wiring
 * of its nb_agent (clock, random source, log, memo, health check), one
 * scheduled step and what follows it. Its making is in fleet_setup.c.
 *
 * A power cycle (a power cut that fired, a planned reset, a crash of the
 * simulated firmware) drops the agent's RAM: nb_agent_free, power on the
 * flash, nb_agent_init; the new agent's first step runs the bootloader on
 * the flash as it is. What survives is what a device keeps outside RAM:
 * the flash, its device token and the agent's memo (a state file; in
 * --dir, DIR/ID.agent).
 *
 * Time: a device's clock is the fleet's wall time since the start times
 * --time-scale, plus a skew of its own. When the agent is IDLE, its sleep
 * until the next check-in lasts --poll/2 to --poll of wall time: its
 * clock is set to reach the wake time then (a device that slept); a
 * simulated stall moves it on by the timeout the device waited. When a
 * busy worker steps a device late, the lateness is taken out of the
 * device's clock: a real device is never late for its own timers (an ack
 * deadline, a backoff), so the simulator's lag must not expire them. The
 * clock never goes back from what the device has seen.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "fleet.h"

uint64_t fleet_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t fleet_elapsed(const struct fleet *f)
{
    return fleet_wall_ms() - f->t0;
}

void fleet_version_str(uint32_t packed, char *out)
{
    nb_agent_version_str(packed, out);
}

void fleet_log(struct fleet *f, const char *id, int level, const char *fmt,
               ...)
{
    static const char *const lv[] = {"error", "warn", "info", "debug"};
    char line[600];
    va_list ap;
    if (!f->log || level > f->o.log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    uint64_t t = fleet_elapsed(f);
    pthread_mutex_lock(&f->log_lock);
    fprintf(f->log, "%" PRIu64 ".%03u %s %s: %s\n", t / 1000,
            (unsigned)(t % 1000), id, lv[level & 3], line);
    pthread_mutex_unlock(&f->log_lock);
}

/* ------------------------------------------------------------ platform */

static int64_t scaled(const struct fleet *f, uint64_t wall)
{
    return (int64_t)((double)wall * f->o.time_scale);
}

uint64_t fleet_dev_now(struct fleet_dev *d)
{
    int64_t t = (int64_t)FLEET_CLOCK_BASE + scaled(d->f, fleet_elapsed(d->f)) +
                d->skew_ms;
    if ((uint64_t)t < d->last_now)
        return d->last_now;
    d->last_now = (uint64_t)t;
    return (uint64_t)t;
}

/* Wall ms since the start at which device time `t` comes. */
static uint64_t dev_to_wall(const struct fleet_dev *d, uint64_t t)
{
    int64_t zero = (int64_t)FLEET_CLOCK_BASE + d->skew_ms;
    if ((int64_t)t <= zero)
        return 0;
    double w = (double)((int64_t)t - zero) / d->f->o.time_scale;
    return (uint64_t)w + 1;
}

/* The worker comes late to this device's step: take the lateness out of
 * its clock (not below what it has seen). */
static void catch_up(struct fleet_dev *d)
{
    uint64_t now = fleet_elapsed(d->f);
    if (now <= d->wall_wake)
        return;
    uint64_t lag = now - d->wall_wake;
    struct fleet_worker *w = d->w;
    w->lag_sum += lag;
    if (lag > w->lag_max)
        w->lag_max = lag;
    if (lag > __atomic_load_n(&w->lag_ms, __ATOMIC_RELAXED))
        __atomic_store_n(&w->lag_ms, lag, __ATOMIC_RELAXED);
    int64_t sk = d->skew_ms - scaled(d->f, lag);
    int64_t floor = (int64_t)d->last_now - (int64_t)FLEET_CLOCK_BASE -
                    scaled(d->f, now);
    d->skew_ms = sk > floor ? sk : floor;
}

static uint64_t p_now(void *ctx)
{
    return fleet_dev_now(ctx);
}

static uint32_t p_random(void *ctx)
{
    struct fleet_dev *d = ctx;
    return (uint32_t)(fleet_rng(&d->rng_agent) >> 32);
}

static void p_log(void *ctx, int level, const char *line)
{
    struct fleet_dev *d = ctx;
    fleet_log(d->f, d->id, level, "%s", line);
}

/* ------------------------------------------------------ memo and token */

static nb_err st_load(void *ctx, struct nb_agent_memo *m)
{
    struct fleet_dev *d = ctx;
    if (!d->have_memo)
        return NB_ERR_NOENT;
    *m = d->memo;
    return NB_OK;
}

static nb_err st_save(void *ctx, const struct nb_agent_memo *m)
{
    struct fleet_dev *d = ctx;
    d->memo = *m;
    d->have_memo = 1;
    fleet_dev_save(d);
    return NB_OK;
}

void fleet_dev_path(const struct fleet_dev *d, char *out, size_t cap,
                    const char *ext)
{
    snprintf(out, cap, "%s/%s.%s", d->f->o.dir, d->id, ext);
}

void fleet_dev_save(struct fleet_dev *d)
{
    char path[4096], tmp[4200];
    if (!d->f->o.dir)
        return;
    fleet_dev_path(d, path, sizeof(path), "agent");
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        goto fail;
    fprintf(f, "hw_rev=%s\ntoken=%s\nrollout=%s\nversion=%s\n"
            "failed_rollout=%s\nfailed_version=%s\n",
            d->f->o.hw[d->hw].name, d->token, d->memo.rollout,
            d->memo.version, d->memo.failed_rollout, d->memo.failed_version);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        goto fail;
    return;
fail:
    unlink(tmp);
    fleet_log(d->f, d->id, NB_AGENT_LOG_ERROR, "%s: cannot save: %s", path,
              strerror(errno));
}

/* ---------------------------------------------------------- firmware */

void fleet_dev_read_behaviour(const struct nb_flash *fl, uint32_t addr,
                              uint8_t *scratch, const struct nb_crypto *c,
                              struct fleet_behaviour *b, int *known)
{
    uint8_t hdr[NB_PKG_HDR_SIZE], tag[FLEET_TAG_SIZE];
    struct nb_manifest m;
    uint32_t mlen;
    memset(b, 0, sizeof(*b));
    *known = 1;
    /* The bootloader verified this image before it started it; this only
     * finds where its payload begins. */
    if (fl->read(fl->ctx, addr, hdr, sizeof(hdr)) != NB_OK ||
        nb_pkg_parse_header(hdr, &mlen) != NB_OK || mlen > NB_MANIFEST_MAX ||
        fl->read(fl->ctx, addr + NB_PKG_HDR_SIZE, scratch, mlen) != NB_OK ||
        nb_manifest_parse_unverified(c, scratch, mlen, &m) != NB_OK ||
        m.payload_size < FLEET_TAG_SIZE ||
        fl->read(fl->ctx, addr + m.payload_offset, tag, sizeof(tag)) != NB_OK)
        return;
    fleet_tag_decode(tag, b, known);
}

static nb_err health_run(void *ctx, const char *version, uint32_t timeout_ms,
                         int *healthy, char *detail, size_t cap)
{
    struct fleet_dev *d = ctx;
    (void)timeout_ms;
    *healthy = d->beh.kind != FLEET_BEH_HEALTH_FAIL;
    snprintf(detail, cap, "simulated firmware %s: %s", version,
             *healthy ? "healthy" : "health check fails (health-fail)");
    return NB_OK;
}

/* ------------------------------------------------------------- running */

static void publish(struct fleet_dev *d)
{
    const struct nb_agent *a = &d->agent;
    const struct nb_state *st = &a->dev.state;
    const struct nb_slot_info *s = &st->slot[st->active];
    /* Settled: between check-ins (a check-in waiting out a backoff
     * included), and the last cycle left nothing to do: up to date, or an
     * offer it will not try again. A device with a bad block keeps trying
     * an update its hardware may not take (and meets the faults of every
     * attempt): settled unless its update verified (INSTALLING on). */
    uint8_t settled = 0;
    int polling = a->state == NB_AGENT_IDLE || a->state == NB_AGENT_CHECKIN;
    if (polling && a->cycles > 0)
        settled = a->outcome == NB_AGENT_UP_TO_DATE ||
                  (a->outcome == NB_AGENT_FAILED_OUTCOME &&
                   strcmp(a->memo.failed_rollout, a->offer.rollout) == 0 &&
                   strcmp(a->memo.failed_version, a->offer.version) == 0);
    if (d->bad_flags)
        settled |= a->state <= NB_AGENT_VERIFYING ||
                   a->state == NB_AGENT_FAILED;
    __atomic_store_n(&d->pub.state, a->state, __ATOMIC_RELAXED);
    __atomic_store_n(&d->pub.outcome, a->outcome, __ATOMIC_RELAXED);
    __atomic_store_n(&d->pub.settled, settled, __ATOMIC_RELAXED);
    __atomic_store_n(&d->pub.running, a->running_version, __ATOMIC_RELAXED);
    __atomic_store_n(&d->pub.confirmed,
                     s->state == NB_SLOT_CONFIRMED ? s->version : 0,
                     __ATOMIC_RELAXED);
}

/* Power on: a new agent (nothing of the old one's RAM), the flash as it
 * is. Its first step runs the bootloader. */
static void power_on(struct fleet_dev *d)
{
    struct nb_simflash_stats st;
    nb_simflash_power_on(d->sim);
    nb_simflash_stats(d->sim, &st);
    d->ops_at_on = st.ops;
    d->cut_armed = 0;
    d->reset_now = 0;
    d->boots_seen = 0;
    memset(&d->beh, 0, sizeof(d->beh));
    if (nb_agent_init(&d->agent, &d->acfg) != NB_OK)
        fleet_log(d->f, d->id, NB_AGENT_LOG_ERROR, "internal error: agent "
                  "config refused");
}

/* A power cycle: the cut that fired, a reset, a crash. */
static void reboot(struct fleet_dev *d, const char *why)
{
    fleet_log(d->f, d->id, NB_AGENT_LOG_INFO, "power cycle: %s (in %s)", why,
              nb_agent_state_name(d->agent.state));
    if (d->cut_armed) /* not fired: power_on disarms it */
        d->cuts_left++;
    nb_agent_free(&d->agent);
    fleet_api_close(d);
    d->power_cycles++;
    power_on(d);
    publish(d);
    d->wall_wake = fleet_elapsed(d->f) + 1;
}

void fleet_dev_start(struct fleet_dev *d, struct fleet_worker *w,
                     uint64_t wall)
{
    struct fleet *f = d->f;
    struct nb_agent_config *c = &d->acfg;
    d->w = w;
    memset(c, 0, sizeof(*c));
    c->boot.flash = &d->flash;
    c->boot.crypto = &w->crypto;
    c->boot.keystore = &f->keys.keystore;
    c->boot.identity = &f->ids[d->hw];
    c->boot.layout = f->layout;
    c->boot.buf = d->buf;
    c->boot.buf_size = FLEET_BUF;
    c->boot.mbuf = d->mbuf;
    c->boot.mbuf_size = NB_MANIFEST_MAX;
    c->hw_rev = f->o.hw[d->hw].name;
    fleet_fault_api(d, &c->api);
    fleet_fault_transports(d, &c->transports);
    c->health.ctx = d;
    c->health.run = health_run;
    c->platform.ctx = d;
    c->platform.now_ms = p_now;
    c->platform.random = p_random;
    c->platform.log = f->log ? p_log : NULL;
    c->platform.log_level = f->o.log_level;
    c->store.ctx = d;
    c->store.load = st_load;
    c->store.save = st_save;
    c->prefer[0] = NB_AGENT_TR_HTTP;
    c->prefer[1] = NB_AGENT_TR_HTTPS;
    c->prefer_count = 2;
    c->rxbuf = w->rxbuf;
    c->rxbuf_size = FLEET_RXBUF;
    power_on(d);
    publish(d);
    d->wall_wake = wall;
}

void fleet_dev_stop(struct fleet_dev *d)
{
    if (d->w)
        nb_agent_free(&d->agent);
    fleet_api_close(d);
}

/* When the next step is due, in wall time. An IDLE device sleeps until
 * its next check-in for --poll/2 to --poll of wall time, whatever poll
 * interval it was given: its clock is set so that it reaches the wake
 * time then (it may stand still meanwhile; nothing looks at it). */
static void schedule(struct fleet_dev *d)
{
    struct fleet *f = d->f;
    uint64_t now = fleet_elapsed(f);
    uint64_t due = dev_to_wall(d, nb_agent_wake_ms(&d->agent));
    if (d->agent.state == NB_AGENT_IDLE) {
        uint64_t half = f->o.poll_ms / 2;
        uint64_t at = now + half + fleet_rng(&d->rng_agent) % (half + 1);
        uint64_t t = nb_agent_wake_ms(&d->agent);
        d->skew_ms = (int64_t)t - (int64_t)FLEET_CLOCK_BASE - scaled(f, at);
        due = dev_to_wall(d, t);
    }
    /* The connection goes with the step: a device waiting for its turn
     * must not hold one (a busy fleet would pile up idle connections at
     * the server; nb-testserver takes 512). */
    fleet_api_close(d);
    d->wall_wake = due;
}

static void cycle_ended(struct fleet_dev *d)
{
    const struct nb_agent *a = &d->agent;
    switch (a->outcome) {
    case NB_AGENT_UPDATED: d->updates++; break;
    case NB_AGENT_REVERTED_OUTCOME: d->reverts++; break;
    case NB_AGENT_FAILED_OUTCOME: d->failures++; break;
    case NB_AGENT_OFFLINE: d->offline++; break;
    default: break;
    }
    if (d->cut_armed) { /* the attempt ended before the cut */
        nb_simflash_disarm(d->sim);
        d->cut_armed = 0;
        d->cuts_left++;
    }
    d->reset_state = 0;
    d->reset_at_bytes = UINT64_MAX;
    if (d->f->o.tag_count && !d->tagged && d->token[0] &&
        fleet_server_put_tags(d->f, d) == 0)
        d->tagged = 1;
}

void fleet_dev_step(struct fleet_dev *d)
{
    struct nb_agent *a = &d->agent;
    __atomic_add_fetch(&d->w->steps, 1, __ATOMIC_RELAXED);
    catch_up(d);
    if (d->reset_state && a->state == d->reset_state) {
        int trial = d->reset_state == NB_AGENT_AWAIT_ACK;
        d->reset_state = 0;
        fleet_fault_count(d, trial ? FLEET_F_TRIAL_RESET : FLEET_F_RESET);
        reboot(d, trial ? "reset during the trial" : "reset");
        return;
    }
    uint8_t before = a->state;
    uint32_t cycles = a->cycles;
    nb_err err = nb_agent_step(a);
    if (err == NB_ERR_POWER || nb_simflash_power_lost(d->sim)) {
        int torn = d->cut_torn;
        if (d->cut_armed) {
            fleet_fault_count(d, FLEET_F_POWER);
            if (torn)
                fleet_fault_count(d, FLEET_F_TORN);
        }
        d->cut_armed = 0;
        reboot(d, torn ? "power cut (torn operation)" : "power cut");
        fleet_fault_after_cut(d);
        return;
    }
    if (d->reset_now) {
        fleet_fault_count(d, FLEET_F_RESET);
        reboot(d, "reset during the download");
        return;
    }
    if (a->stats.boots != d->boots_seen) {
        /* The bootloader ran: which firmware does the device run now? */
        int known = 1;
        d->boots_seen = a->stats.boots;
        memset(&d->beh, 0, sizeof(d->beh));
        if (a->boot.outcome == NB_BOOT_IMAGE)
            fleet_dev_read_behaviour(&d->flash, a->boot.addr, d->w->scratch,
                                     &d->w->crypto, &d->beh, &known);
        d->unknown_beh |= !known;
        if (a->boot.outcome == NB_BOOT_IMAGE &&
            fleet_behaviour_crashes(&d->beh, d->f->o.hw[d->hw].name)) {
            d->crashes++;
            __atomic_add_fetch(&d->w->crashes, 1, __ATOMIC_RELAXED);
            reboot(d, "the firmware crashed at boot");
            return;
        }
    }
    if (before == NB_AGENT_CHECKIN && a->state == NB_AGENT_FETCH_MANIFEST) {
        d->attempts++;
        fleet_fault_plan_attempt(d);
    }
    if (a->cycles != cycles)
        cycle_ended(d);
    publish(d);
    schedule(d);
}
