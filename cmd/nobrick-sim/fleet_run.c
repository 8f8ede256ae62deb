/* fleet_run.c - running the fleet: J worker threads, each stepping its own
 * devices in order of their next due time (a binary heap per worker),
 * the progress line, and the end of the run (--until, --duration, a
 * signal).
 *
 * A worker sleeps only when none of its devices is due (at most 50 ms at
 * a time, so a stop is seen quickly). A step may block for as long as a
 * request to the server takes; the other workers go on meanwhile.
 *
 * --until settled: every device is settled, continuously for --settle:
 * it is IDLE after at least one check-in, and its last cycle ended with
 * nothing to do (up to date), or with an offer it will not try again
 * (failed for good: refused, reverted), or it has a bad flash block (its
 * hardware keeps it from updating, and it keeps trying).
 * --until version=V[:P%]: at least P % (default 100) of the devices run
 * V confirmed and are IDLE.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fleet.h"

#define PROGRESS_TTY_MS 1000
#define PROGRESS_LOG_MS 5000

static int stopped(const struct fleet *f)
{
    return __atomic_load_n(f->stop, __ATOMIC_RELAXED) != 0;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ----------------------------------------------------------------- heap */

static int earlier(const struct fleet_dev *a, const struct fleet_dev *b)
{
    return a->wall_wake < b->wall_wake ||
           (a->wall_wake == b->wall_wake && a->index < b->index);
}

static void heap_set(struct fleet_worker *w, uint32_t i, struct fleet_dev *d)
{
    w->heap[i] = d;
    d->heap_pos = i;
}

static void heap_up(struct fleet_worker *w, uint32_t i)
{
    struct fleet_dev *d = w->heap[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!earlier(d, w->heap[p]))
            break;
        heap_set(w, i, w->heap[p]);
        i = p;
    }
    heap_set(w, i, d);
}

static void heap_down(struct fleet_worker *w, uint32_t i)
{
    struct fleet_dev *d = w->heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= w->n)
            break;
        if (c + 1 < w->n && earlier(w->heap[c + 1], w->heap[c]))
            c++;
        if (!earlier(w->heap[c], d))
            break;
        heap_set(w, i, w->heap[c]);
        i = c;
    }
    heap_set(w, i, d);
}

static void heap_push(struct fleet_worker *w, struct fleet_dev *d)
{
    w->heap[w->n] = d;
    d->heap_pos = w->n;
    w->n++;
    heap_up(w, w->n - 1);
}

/* --------------------------------------------------------------- worker */

static void *worker_main(void *arg)
{
    struct fleet_worker *w = arg;
    struct fleet *f = w->f;
    while (!stopped(f) && w->n) {
        struct fleet_dev *d = w->heap[0];
        uint64_t now = fleet_elapsed(f);
        if (d->wall_wake > now) {
            uint64_t gap = d->wall_wake - now;
            sleep_ms(gap < 50 ? gap : 50);
            continue;
        }
        fleet_dev_step(d);
        heap_down(w, d->heap_pos);
        heap_up(w, d->heap_pos);
    }
    /* Power off: every device stops where it is, then its flash is
     * checked (in parallel, one worker per share of the fleet). */
    for (uint32_t i = 0; i < w->n; i++)
        fleet_dev_stop(w->heap[i]);
    for (uint32_t i = 0; i < w->n; i++)
        fleet_check_device(w, w->heap[i]);
    return NULL;
}

static int workers_create(struct fleet *f)
{
    uint32_t j = f->o.threads;
    f->workers = calloc(j, sizeof(*f->workers));
    if (!f->workers)
        return -1;
    for (uint32_t i = 0; i < j; i++) {
        struct fleet_worker *w = &f->workers[i];
        w->f = f;
        w->idx = i;
        w->cap = f->n / j + 1;
        w->heap = calloc(w->cap, sizeof(*w->heap));
        if (!w->heap || nb_crypto_openssl_init(&w->crypto, &w->oc) != NB_OK ||
            nb_simflash_create_mem(&w->check, &f->geo) != NB_OK)
            return -1;
    }
    for (uint32_t i = 0; i < f->n; i++) {
        struct fleet_dev *d = f->devs[i];
        struct fleet_worker *w = &f->workers[i % j];
        fleet_dev_start(d, w, d->wall_wake);
        heap_push(w, d);
    }
    return 0;
}

void fleet_workers_free(struct fleet *f)
{
    for (uint32_t i = 0; f->workers && i < f->o.threads; i++) {
        struct fleet_worker *w = &f->workers[i];
        free(w->heap);
        nb_crypto_openssl_free(&w->crypto, &w->oc);
        nb_simflash_close(w->check);
    }
    free(f->workers);
    f->workers = NULL;
}

/* ------------------------------------------------------------- progress */

struct census {
    uint32_t group[7];   /* idle checkin download install trial fail off */
    uint32_t settled, enrolled, at_version;
    uint32_t nver;
    uint32_t ver[8], vcount[8], vother;
    uint64_t fired, crashes, requests, checkins;
};

/* The largest step lateness since the last call. */
static uint64_t take_lag(struct fleet *f)
{
    uint64_t lag = 0;
    for (uint32_t i = 0; i < f->o.threads; i++) {
        uint64_t l = __atomic_exchange_n(&f->workers[i].lag_ms, 0,
                                         __ATOMIC_RELAXED);
        lag = l > lag ? l : lag;
    }
    return lag;
}

static int state_group(uint8_t s)
{
    switch (s) {
    case NB_AGENT_POWER_ON:
    case NB_AGENT_IDLE:
        return 0;
    case NB_AGENT_CHECKIN:
        return 1;
    case NB_AGENT_FETCH_MANIFEST:
    case NB_AGENT_DOWNLOADING:
        return 2;
    case NB_AGENT_VERIFYING:
    case NB_AGENT_INSTALLING:
        return 3;
    case NB_AGENT_TRIAL_BOOTED:
    case NB_AGENT_HEALTH_CHECK:
    case NB_AGENT_AWAIT_ACK:
    case NB_AGENT_CONFIRMED:
        return 4;
    case NB_AGENT_FAILED:
    case NB_AGENT_REVERTING:
    case NB_AGENT_REVERTED:
        return 5;
    default:
        return 6;
    }
}

static void count(struct fleet *f, struct census *c)
{
    memset(c, 0, sizeof(*c));
    for (uint32_t i = 0; i < f->n; i++) {
        const struct fleet_dev *d = f->devs[i];
        uint8_t st = __atomic_load_n(&d->pub.state, __ATOMIC_RELAXED);
        uint32_t run = __atomic_load_n(&d->pub.running, __ATOMIC_RELAXED);
        uint32_t conf = __atomic_load_n(&d->pub.confirmed, __ATOMIC_RELAXED);
        c->group[state_group(st)]++;
        c->settled += __atomic_load_n(&d->pub.settled, __ATOMIC_RELAXED);
        c->enrolled += __atomic_load_n(&d->pub.enrolled, __ATOMIC_RELAXED);
        if (conf == f->o.until_version && st == NB_AGENT_IDLE)
            c->at_version++;
        uint32_t k = 0;
        while (k < c->nver && c->ver[k] != run)
            k++;
        if (k == c->nver && c->nver < 8) {
            c->ver[c->nver] = run;
            c->vcount[c->nver++] = 0;
        }
        if (k < c->nver)
            c->vcount[k]++;
        else
            c->vother++;
    }
    for (uint32_t i = 0; i < f->o.threads; i++) {
        const struct fleet_worker *w = &f->workers[i];
        for (unsigned k = 0; k < FLEET_F_COUNT; k++)
            if (k != FLEET_F_TORN && k != FLEET_F_BAD_BLOCK)
                c->fired += __atomic_load_n(&w->fired[k], __ATOMIC_RELAXED);
        c->crashes += __atomic_load_n(&w->crashes, __ATOMIC_RELAXED);
        c->requests += __atomic_load_n(&w->requests, __ATOMIC_RELAXED);
        c->checkins += __atomic_load_n(&w->checkins, __ATOMIC_RELAXED);
    }
    /* versions in ascending order, for a stable line */
    for (uint32_t a = 1; a < c->nver; a++)
        for (uint32_t b = a; b > 0 && c->ver[b - 1] > c->ver[b]; b--) {
            uint32_t t = c->ver[b];
            c->ver[b] = c->ver[b - 1];
            c->ver[b - 1] = t;
            t = c->vcount[b];
            c->vcount[b] = c->vcount[b - 1];
            c->vcount[b - 1] = t;
        }
}

static void progress(struct fleet *f, const struct census *c, int tty,
                     uint64_t *last_req, uint64_t *last_t)
{
    static const char *const g[7] = {"idle",  "checkin", "download",
                                     "install", "trial", "fail", "off"};
    char line[512];
    size_t n = 0;
    uint64_t t = fleet_elapsed(f);
    double rate = t > *last_t ? (double)(c->requests - *last_req) * 1000.0 /
                                    (double)(t - *last_t)
                              : 0;
    *last_req = c->requests;
    *last_t = t;
    n += (size_t)snprintf(line + n, sizeof(line) - n, "fleet %3" PRIu64
                          ".%" PRIu64 "s %u dev:", t / 1000, t % 1000 / 100,
                          (unsigned)f->n);
    for (int i = 0; i < 7 && n < sizeof(line); i++)
        if (c->group[i] || i == 0)
            n += (size_t)snprintf(line + n, sizeof(line) - n, " %s %u", g[i],
                                  (unsigned)c->group[i]);
    n += (size_t)snprintf(line + n, sizeof(line) - n, " |");
    for (uint32_t k = 0; k < c->nver && n < sizeof(line); k++) {
        char v[NB_AGENT_VERSION_MAX];
        fleet_version_str(c->ver[k], v);
        n += (size_t)snprintf(line + n, sizeof(line) - n, " %s %u",
                              c->ver[k] ? v : "none",
                              (unsigned)c->vcount[k]);
    }
    if (n < sizeof(line) && f->o.until == FLEET_UNTIL_SETTLED)
        n += (size_t)snprintf(line + n, sizeof(line) - n, " | settled %u",
                              (unsigned)c->settled);
    if (n < sizeof(line))
        snprintf(line + n, sizeof(line) - n, " | faults %" PRIu64 " crashes %"
                 PRIu64 " | %.0f req/s, lag %" PRIu64 " ms", c->fired,
                 c->crashes, rate, take_lag(f));
    if (tty)
        fprintf(stderr, "\r%s\033[K", line);
    else
        fprintf(stderr, "%s\n", line);
}

int fleet_run(struct fleet *f)
{
    struct census c;
    uint64_t settled_since = 0, last_progress = 0, last_req = 0, last_t = 0;
    int tty = isatty(2);
    f->t0 = fleet_wall_ms(); /* device clocks start with their agents */
    if (workers_create(f)) {
        fprintf(stderr, "nobrick-sim fleet: cannot set up %u workers (out "
                "of memory?)\n", (unsigned)f->o.threads);
        return -1;
    }
    fleet_server_sample(f, 0);
    for (uint32_t i = 0; i < f->o.threads; i++) {
        struct fleet_worker *w = &f->workers[i];
        if (pthread_create(&w->th, NULL, worker_main, w) != 0) {
            fprintf(stderr, "nobrick-sim fleet: cannot start a thread\n");
            __atomic_store_n(f->stop, 1, __ATOMIC_RELAXED);
            break;
        }
        w->started = 1;
    }
    while (!stopped(f)) {
        sleep_ms(100);
        uint64_t t = fleet_elapsed(f);
        if (f->o.duration_ms && t >= f->o.duration_ms)
            break;
        count(f, &c);
        if (!f->o.quiet &&
            t - last_progress >= (tty ? PROGRESS_TTY_MS : PROGRESS_LOG_MS)) {
            progress(f, &c, tty, &last_req, &last_t);
            last_progress = t;
        }
        if (f->o.until == FLEET_UNTIL_SETTLED) {
            if (c.settled < f->n)
                settled_since = 0;
            else if (!settled_since)
                settled_since = t ? t : 1;
            else if (t - settled_since >= f->o.settle_ms)
                f->until_met = 1;
        } else if (f->o.until == FLEET_UNTIL_VERSION) {
            f->until_met = (double)c.at_version >=
                           f->o.until_share * (double)f->n - 1e-9;
        }
        if (f->until_met)
            break;
    }
    f->stopped_at = fleet_elapsed(f);
    count(f, &c);
    if (!f->o.quiet) {
        progress(f, &c, tty, &last_req, &last_t);
        if (tty)
            fputc('\n', stderr);
    }
    fleet_server_sample(f, 1);
    __atomic_store_n(f->stop, 1, __ATOMIC_RELAXED);
    for (uint32_t i = 0; i < f->o.threads; i++)
        if (f->workers[i].started)
            pthread_join(f->workers[i].th, NULL);
    return 0;
}
