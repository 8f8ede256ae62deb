/* sweep.c - the exhaustive power-cut proof.
 *
 * A round is a full update cycle on one simulated device: stage an
 * upgrade, trial boot, confirm, boot; stage another image, trial boot,
 * reset without confirming until the trial is rejected and the confirmed
 * image is back (single layout: until recovery, then re-fetch and
 * confirm). A fault-free reference run records the flash operation count
 * and a snapshot at the start of every step. Then, for every operation
 * index of the round, the sweep restores the snapshot of the step it falls
 * in, cuts power there (or tears the operation), powers on and checks:
 *   1. the next boot runs a verified image, byte for byte one of the
 *      images the device may hold at that point (single layout: or stays
 *      in recovery);
 *   2. resetting without ever confirming settles on a confirmed image,
 *      and it is the last confirmed one (or the new one if the cut came
 *      during the confirm): the confirmed image is never lost;
 *   3. the device still takes an update afterwards;
 *   4. the flash never saw a strict-NOR violation.
 * With --double, the first boot after the cut is itself cut at every one
 * of its operations. Round 0 is swept, then fault-free rounds run until
 * one compacts the journal, and that round is swept too.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sweep.h"
#include "simdev.h"

#define MAX_STEPS 16
#define MAX_REPORTED 20
#define MAX_ROUNDS 20000
#define CACHE 8

enum step_kind { ST_STAGE, ST_BOOT, ST_CONFIRM };
enum step_img { IMG_U, IMG_X };

struct step {
    uint8_t kind;
    uint8_t img; /* ST_STAGE: which image */
};

/* A/B layouts: upgrade and confirm, then an upgrade whose trial fails. */
static const struct step script_ab[] = {
    {ST_STAGE, IMG_U}, {ST_BOOT, 0}, {ST_CONFIRM, 0}, {ST_BOOT, 0},
    {ST_STAGE, IMG_X}, {ST_BOOT, 0}, {ST_BOOT, 0},    {ST_BOOT, 0},
    {ST_BOOT, 0},      {ST_BOOT, 0},
};

/* Single slot: the failed trial ends in recovery, which re-fetches. */
static const struct step script_single[] = {
    {ST_STAGE, IMG_U}, {ST_BOOT, 0}, {ST_CONFIRM, 0}, {ST_BOOT, 0},
    {ST_STAGE, IMG_X}, {ST_BOOT, 0}, {ST_BOOT, 0},    {ST_BOOT, 0},
    {ST_BOOT, 0},      {ST_STAGE, IMG_X}, {ST_BOOT, 0}, {ST_CONFIRM, 0},
    {ST_BOOT, 0},
};

struct params {
    uint8_t kind;
    char shape[16];
    uint32_t ws;
    uint8_t ev;
    uint8_t lifecycle;
    int torn;
    int dbl;
    uint64_t seed;
    int verbose;
};

struct image {
    uint32_t version;
    uint32_t len;
    uint8_t *bytes;
};

struct world {
    struct params p;
    struct simdev sd;
    struct nb_simflash *snap[MAX_STEPS + 1];
    const struct step *script;
    unsigned steps;
    int bound; /* simdev_bind done */
    uint32_t capacity;
    uint64_t start_op[MAX_STEPS + 1]; /* ops before step s; [steps] = total */
    uint32_t confirmed[MAX_STEPS + 1]; /* confirmed version before step s */
    uint32_t inflight[MAX_STEPS];      /* latest staged version at step s */
    struct image cache[CACHE];
    unsigned cache_next;
    /* results */
    uint64_t points, recovered, bricked, reported;
};

/* ---- images: a pure function of the version ---- */

static uint32_t version_of(unsigned round, unsigned img)
{
    uint32_t v = 0;
    nb_version_pack(2, 0, 2 * round + img, &v);
    return v;
}

static uint32_t v_initial(void) { return 1u << 24; }        /* 1.0.0 */
static uint32_t v_live(void) { return 9u << 24; }           /* 9.0.0 */
static uint32_t v_factory(void) { return 9u << 16; }        /* 0.9.0 */

static uint32_t svn_of(uint32_t version)
{
    if (version == v_live())
        return 1000;
    if (version == v_factory())
        return 0;
    if (nb_version_major(version) == 1)
        return 1;
    return 2 + nb_version_patch(version) / 2;
}

/* Payload sizes vary so that swaps meet old > new, new > old and odd
 * tails; the package (container, manifest with one digest per 4 KiB
 * block, payload) must fit the slot. */
static uint32_t payload_of(const struct world *w, uint32_t version)
{
    static const uint16_t permille[] = {700, 550, 850, 400, 910, 620};
    if (version == v_live())
        return 1000;
    uint32_t room = w->capacity - 1024 - 32 * (w->capacity / 4096 + 1);
    uint32_t k = nb_version_patch(version) + nb_version_minor(version);
    return (uint32_t)((uint64_t)room * permille[k % 6] / 1000) + k % 29;
}

static const struct image *image(struct world *w, uint32_t version)
{
    for (unsigned i = 0; i < CACHE; i++)
        if (w->cache[i].bytes && w->cache[i].version == version)
            return &w->cache[i];
    struct image *im = &w->cache[w->cache_next++ % CACHE];
    struct nb_buf b = {0};
    free(im->bytes);
    memset(im, 0, sizeof(*im));
    nb_err err = simdev_make_package(&w->sd, version, svn_of(version),
                                     payload_of(w, version), version, &b);
    if (err || b.len > w->capacity) {
        fprintf(stderr, "nobrick-sim: cannot make test package: %s\n",
                err ? nb_err_name(err) : "larger than the slot");
        exit(1);
    }
    im->bytes = b.p;
    im->len = (uint32_t)b.len;
    im->version = version;
    return im;
}

static void fmt_version(uint32_t v, char *out, size_t n)
{
    snprintf(out, n, "%" PRIu32 ".%" PRIu32 ".%" PRIu32, nb_version_major(v),
             nb_version_minor(v), nb_version_patch(v));
}

/* ---- the device ---- */

static nb_err stage(struct world *w, uint32_t version)
{
    const struct image *im = image(w, version);
    return simdev_stage(&w->sd, im->bytes, im->len, NULL);
}

static nb_err run_step(struct world *w, unsigned round, unsigned s,
                       struct nb_boot_result *res)
{
    const struct step *st = &w->script[s];
    memset(res, 0, sizeof(*res));
    switch (st->kind) {
    case ST_STAGE: return stage(w, version_of(round, st->img));
    case ST_BOOT: return simdev_boot(&w->sd, res);
    case ST_CONFIRM: return simdev_confirm(&w->sd);
    }
    return NB_ERR_INVAL;
}

static uint32_t current_confirmed(struct world *w)
{
    if (simdev_open(&w->sd))
        return 0;
    const struct nb_state *st = &w->sd.dev.state;
    return st->slot[st->active].state == NB_SLOT_CONFIRMED
               ? st->slot[st->active].version
               : 0;
}

static uint64_t ops(const struct world *w)
{
    struct nb_simflash_stats s;
    nb_simflash_stats(w->sd.sim, &s);
    return s.ops;
}

static uint64_t journal_erases(const struct world *w)
{
    const struct nb_area *j = &w->sd.board.layout.journal;
    uint64_t n = 0;
    uint32_t sector = 0, a = 0, start, size;
    while (nb_flash_sector(&w->sd.flash, a, &start, &size) == NB_OK) {
        if (start >= j->off && start < j->off + j->size)
            n += nb_simflash_erase_count(w->sd.sim, sector);
        a = start + size;
        sector++;
    }
    return n;
}

/* ---- checks ---- */

struct verdict {
    char why[160];
};

static int fail(struct verdict *v, const char *why, const char *detail)
{
    snprintf(v->why, sizeof(v->why), "%s%s%s", why, detail ? ": " : "",
             detail ? detail : "");
    return 0;
}

/* The bytes the bootloader would jump to are exactly a known image. */
static int content_ok(struct world *w, const struct nb_boot_result *res)
{
    const struct image *im = image(w, res->image.version);
    uint8_t buf[4096];
    if (res->image.size != im->len)
        return 0;
    for (uint32_t done = 0; done < im->len;) {
        uint32_t n = im->len - done < sizeof(buf) ? im->len - done
                                                  : (uint32_t)sizeof(buf);
        if (w->sd.flash.read(w->sd.flash.ctx, res->addr + done, buf, n))
            return 0;
        if (memcmp(buf, im->bytes + done, n))
            return 0;
        done += n;
    }
    return 1;
}

static int allowed(const uint32_t *set, unsigned n, uint32_t v)
{
    for (unsigned i = 0; i < n; i++)
        if (set[i] && set[i] == v)
            return 1;
    return 0;
}

/* One boot after a fault: a verified, known, allowed image, or recovery
 * where the layout permits it. */
static int check_boot(struct world *w, const uint32_t *set, unsigned n,
                      struct nb_boot_result *res, struct verdict *v)
{
    char vs[32];
    nb_err err = simdev_boot(&w->sd, res);
    if (err)
        return fail(v, "boot failed", nb_err_name(err));
    if (res->outcome == NB_BOOT_RECOVERY)
        return w->p.kind == NB_LAYOUT_SINGLE ? 1
                                             : fail(v, "recovery", NULL);
    fmt_version(res->image.version, vs, sizeof(vs));
    if (!allowed(set, n, res->image.version))
        return fail(v, "booted an unexpected image", vs);
    if (!content_ok(w, res))
        return fail(v, "booted bytes differ from the image", vs);
    return 1;
}

/* The device after a fault at step s: checks 1 to 4 of the file comment. */
static int check_device(struct world *w, unsigned round, unsigned s,
                        struct verdict *v)
{
    struct nb_boot_result res;
    struct nb_simflash_stats fs;
    uint32_t set[3] = {w->confirmed[s], w->inflight[s], w->confirmed[s + 1]};
    nb_err err;
    char vs[32];
    if (!check_boot(w, set, 3, &res, v))
        return 0;
    /* Reset without confirming until a confirmed image runs. */
    for (unsigned k = 0; res.outcome == NB_BOOT_IMAGE &&
                         res.state != NB_SLOT_CONFIRMED;
         k++) {
        if (k > w->sd.dev.state.attempt_limit + 3u)
            return fail(v, "trial never settled", NULL);
        if (!check_boot(w, set, 3, &res, v))
            return 0;
    }
    if (res.outcome == NB_BOOT_IMAGE) {
        uint32_t c[2] = {w->confirmed[s], w->confirmed[s + 1]};
        fmt_version(res.image.version, vs, sizeof(vs));
        if (!allowed(c, 2, res.image.version))
            return fail(v, "confirmed image lost; settled on", vs);
    } else {
        /* Single slot in recovery: the loader re-fetches the image. */
        uint32_t want = w->inflight[s] ? w->inflight[s] : w->confirmed[s];
        uint32_t one[1] = {want};
        err = stage(w, want);
        if (err)
            return fail(v, "recovery re-fetch failed", nb_err_name(err));
        if (!check_boot(w, one, 1, &res, v))
            return 0;
        err = simdev_confirm(&w->sd);
        if (err)
            return fail(v, "recovery confirm failed", nb_err_name(err));
    }
    (void)round;
    /* Still updatable. */
    uint32_t live[1] = {v_live()};
    err = stage(w, v_live());
    if (err)
        return fail(v, "device no longer takes an update", nb_err_name(err));
    if (!check_boot(w, live, 1, &res, v))
        return 0;
    if (res.outcome != NB_BOOT_IMAGE || res.state != NB_SLOT_TRIAL)
        return fail(v, "update after recovery did not start a trial", NULL);
    err = simdev_confirm(&w->sd);
    if (err)
        return fail(v, "confirm after recovery failed", nb_err_name(err));
    if (!check_boot(w, live, 1, &res, v) || res.state != NB_SLOT_CONFIRMED)
        return fail(v, "update after recovery not confirmed", NULL);
    nb_simflash_stats(w->sd.sim, &fs);
    if (fs.violations)
        return fail(v, "strict-NOR violation (programmed an unerased unit)",
                    NULL);
    return 1;
}

/* ---- replay IDs ---- */

static void replay_id(const struct world *w, unsigned round, uint64_t cut,
                      int64_t cut2, char *out, size_t n)
{
    int k = snprintf(out, n, "nbr1:%s:%s:w%" PRIu32 ":e%02x:%s:s%" PRIu64
                     ":r%u:c%" PRIu64 ":t%d",
                     nb_layout_name(w->p.kind), w->p.shape, w->p.ws, w->p.ev,
                     nb_lifecycle_name(w->p.lifecycle), w->p.seed, round, cut,
                     w->p.torn);
    if (cut2 >= 0 && k > 0 && (size_t)k < n)
        snprintf(out + k, n - (size_t)k, ":d%" PRId64, cut2);
}

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t x = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    return x ^ (x >> 29);
}

/* ---- setup, reference rounds, points ---- */

static uint8_t kind_of(const char *name)
{
    for (uint8_t k = NB_LAYOUT_AB; k <= NB_LAYOUT_SINGLE; k++)
        if (strcmp(nb_layout_name(k), name) == 0)
            return k;
    return 0;
}

static uint32_t slot_size_for(const char *shape)
{
    if (strcmp(shape, "128k") == 0)
        return 262144;
    if (strcmp(shape, "mixed") == 0)
        return 65536;
    return 32768;
}

static int setup(struct world *w)
{
    struct nb_simflash_geometry g;
    memset(&g, 0, sizeof(g));
    uint32_t slot = slot_size_for(w->p.shape);
    if (!simdev_shape(w->p.shape, slot * 6, &g)) {
        fprintf(stderr, "nobrick-sim: unknown flash shape '%s'\n", w->p.shape);
        return 0;
    }
    g.write_size = w->p.ws;
    g.erase_value = w->p.ev;
    if (nb_simflash_create_mem(&w->sd.sim, &g)) {
        fprintf(stderr, "nobrick-sim: bad geometry (write size %" PRIu32
                ")\n", w->p.ws);
        return 0;
    }
    nb_simflash_interface(w->sd.sim, &w->sd.flash);
    nb_err err = nb_layout_plan(&w->sd.board.layout, &w->sd.flash, w->p.kind,
                                slot, 0);
    if (err) {
        fprintf(stderr, "nobrick-sim: cannot plan layout: %s\n",
                nb_err_name(err));
        return 0;
    }
    if ((err = simdev_bind(&w->sd))) {
        fprintf(stderr, "nobrick-sim: cannot set up crypto and test keys: "
                "%s\n", nb_err_name(err));
        return 0;
    }
    w->bound = 1;
    /* Images must fit whichever slot an update lands in. */
    w->capacity = nb_layout_capacity(&w->sd.board.layout, 0);
    if (w->p.kind == NB_LAYOUT_AB || w->p.kind == NB_LAYOUT_AB_FACTORY) {
        uint32_t b = nb_layout_capacity(&w->sd.board.layout, 1);
        w->capacity = b < w->capacity ? b : w->capacity;
    }
    w->script = w->p.kind == NB_LAYOUT_SINGLE ? script_single : script_ab;
    w->steps = w->p.kind == NB_LAYOUT_SINGLE
                   ? sizeof(script_single) / sizeof(script_single[0])
                   : sizeof(script_ab) / sizeof(script_ab[0]);
    for (unsigned i = 0; i <= w->steps; i++)
        if (nb_simflash_create_mem(&w->snap[i], &g))
            return 0;
    err = nb_device_provision(&w->sd.dev, &w->sd.cfg, w->p.lifecycle, 0);
    if (!err && w->p.kind == NB_LAYOUT_AB_FACTORY) {
        const struct image *f = image(w, v_factory());
        err = simdev_factory(&w->sd, f->bytes, f->len);
    }
    struct nb_boot_result res;
    if (!err)
        err = stage(w, v_initial());
    if (!err)
        err = simdev_boot(&w->sd, &res);
    if (!err)
        err = simdev_confirm(&w->sd);
    if (err || current_confirmed(w) != v_initial()) {
        fprintf(stderr, "nobrick-sim: sweep setup failed: %s\n",
                nb_err_name(err));
        return 0;
    }
    return 1;
}

/* Run round `round` without faults from the live device, recording the
 * snapshots and counts every point of it needs. Returns 0 on a harness
 * or core failure (a fault-free round must always work). */
static int reference_round(struct world *w, unsigned round)
{
    struct nb_boot_result res;
    uint32_t staged = 0;
    nb_simflash_reset_stats(w->sd.sim);
    for (unsigned s = 0; s < w->steps; s++) {
        w->confirmed[s] = current_confirmed(w);
        nb_simflash_copy_from(w->snap[s], w->sd.sim);
        w->start_op[s] = ops(w);
        if (w->script[s].kind == ST_STAGE)
            staged = version_of(round, w->script[s].img);
        w->inflight[s] = staged;
        nb_err err = run_step(w, round, s, &res);
        if (err) {
            fprintf(stderr, "nobrick-sim: fault-free round %u step %u "
                    "failed: %s\n", round, s, nb_err_name(err));
            return 0;
        }
    }
    w->confirmed[w->steps] = current_confirmed(w);
    w->start_op[w->steps] = ops(w);
    nb_simflash_copy_from(w->snap[w->steps], w->sd.sim);
    return 1;
}

/* Put the device where it stood at the start of step s and run that step
 * with power cut at its operation `at`. */
static nb_err cut_in_step(struct world *w, unsigned round, unsigned s,
                          uint64_t at, uint64_t seed)
{
    struct nb_boot_result res;
    nb_simflash_copy_from(w->sd.sim, w->snap[s]);
    nb_simflash_reset_stats(w->sd.sim);
    nb_simflash_seed(w->sd.sim, seed);
    nb_simflash_cut_at(w->sd.sim, at, w->p.torn);
    nb_err err = run_step(w, round, s, &res);
    nb_simflash_power_on(w->sd.sim);
    return err;
}

static void record(struct world *w, int ok, unsigned round, uint64_t cut,
                   int64_t cut2, const struct verdict *v)
{
    w->points++;
    if (ok) {
        w->recovered++;
        return;
    }
    w->bricked++;
    if (w->reported++ < MAX_REPORTED) {
        char id[160];
        replay_id(w, round, cut, cut2, id, sizeof(id));
        printf("FAIL %s: %s\n", id, v->why);
    }
}

static unsigned step_of(const struct world *w, uint64_t cut)
{
    unsigned s = 0;
    while (s + 1 < w->steps && w->start_op[s + 1] <= cut)
        s++;
    return s;
}

/* One fault point: cut at global op `cut` of the round (and, with
 * cut2 >= 0, at op cut2 of the first boot after it). */
static int point(struct world *w, unsigned round, uint64_t cut, int64_t cut2,
                 struct verdict *v)
{
    unsigned s = step_of(w, cut);
    uint64_t seed = mix(mix(w->p.seed, round), cut);
    nb_err err = cut_in_step(w, round, s, cut - w->start_op[s], seed);
    if (err != NB_ERR_POWER)
        return fail(v, "the cut did not happen in its step",
                    nb_err_name(err));
    if (cut2 >= 0) {
        struct nb_boot_result res;
        nb_simflash_seed(w->sd.sim, mix(seed, (uint64_t)cut2));
        nb_simflash_reset_stats(w->sd.sim);
        nb_simflash_cut_at(w->sd.sim, (uint64_t)cut2, w->p.torn);
        err = simdev_boot(&w->sd, &res);
        nb_simflash_power_on(w->sd.sim);
        if (err && err != NB_ERR_POWER)
            return fail(v, "boot under the second cut failed",
                        nb_err_name(err));
    }
    return check_device(w, round, s, v);
}

/* Sweep every op of the round just referenced. */
static void sweep_round(struct world *w, unsigned round)
{
    uint64_t total = w->start_op[w->steps];
    for (uint64_t cut = 0; cut < total; cut++) {
        struct verdict v = {{0}};
        if (!w->p.dbl) {
            record(w, point(w, round, cut, -1, &v), round, cut, -1, &v);
            continue;
        }
        /* Count the first boot's ops after this cut, then cut each. */
        unsigned s = step_of(w, cut);
        uint64_t seed = mix(mix(w->p.seed, round), cut);
        struct nb_boot_result res;
        if (cut_in_step(w, round, s, cut - w->start_op[s], seed) !=
            NB_ERR_POWER) {
            record(w, fail(&v, "the cut did not happen in its step", NULL),
                   round, cut, -1, &v);
            continue;
        }
        nb_simflash_reset_stats(w->sd.sim);
        simdev_boot(&w->sd, &res);
        uint64_t n = ops(w);
        for (uint64_t c2 = 0; c2 <= n; c2++) {
            struct verdict v2 = {{0}};
            record(w, point(w, round, cut, (int64_t)c2, &v2), round, cut,
                   (int64_t)c2, &v2);
        }
    }
}

/* Bring the live device to the end of round `round` (from snap[steps]). */
static void finish_round(struct world *w)
{
    nb_simflash_copy_from(w->sd.sim, w->snap[w->steps]);
}

static void world_free(struct world *w)
{
    for (unsigned i = 0; i <= MAX_STEPS; i++)
        nb_simflash_close(w->snap[i]);
    nb_simflash_close(w->sd.sim);
    for (unsigned i = 0; i < CACHE; i++)
        free(w->cache[i].bytes);
    if (w->bound)
        simdev_unbind(&w->sd);
}

/* ---- command line ---- */

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-')
        return 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (*end)
        return 0;
    *out = v;
    return 1;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: nobrick-sim sweep --layout ab|ab-swap|ab-factory|single\n"
        "         [--shape 4k|128k|mixed] [--write-size N] [--erase-value "
        "0xff|0x00]\n"
        "         [--lifecycle development|production] [--torn] [--double]"
        " [--seed S]\n"
        "Cuts power at every flash operation of a full update cycle (and "
        "of the cycle\nthat compacts the journal) and checks the device "
        "recovers. Last line:\n"
        "  fault points: N, recovered: N, bricked: N\n"
        "Exit 0 only when nothing bricked. A failure prints a replay ID for\n"
        "  nobrick-sim replay ID\n");
}

static int parse(int argc, char **argv, struct params *p)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->shape, sizeof(p->shape), "4k");
    p->ws = 8;
    p->ev = 0xFF;
    p->lifecycle = NB_LIFECYCLE_PRODUCTION;
    p->seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--torn") == 0) {
            p->torn = 1;
        } else if (strcmp(a, "--double") == 0) {
            p->dbl = 1;
        } else if (strcmp(a, "--verbose") == 0) {
            p->verbose = 1;
        } else if (!val) {
            fprintf(stderr, "nobrick-sim: %s needs a value or is unknown\n", a);
            return 0;
        } else if (strcmp(a, "--layout") == 0) {
            p->kind = kind_of(val);
            if (!p->kind) {
                fprintf(stderr, "nobrick-sim: unknown layout '%s'\n", val);
                return 0;
            }
            i++;
        } else if (strcmp(a, "--shape") == 0) {
            if (strlen(val) >= sizeof(p->shape)) {
                fprintf(stderr, "nobrick-sim: unknown flash shape '%s'\n", val);
                return 0;
            }
            snprintf(p->shape, sizeof(p->shape), "%s", val);
            i++;
        } else if (strcmp(a, "--write-size") == 0) {
            if (!parse_u64(val, &n) || n == 0 || n > 32 || (n & (n - 1))) {
                fprintf(stderr, "nobrick-sim: write size must be 1, 2, 4, 8, "
                        "16 or 32, not '%s'\n", val);
                return 0;
            }
            p->ws = (uint32_t)n;
            i++;
        } else if (strcmp(a, "--erase-value") == 0) {
            if (!parse_u64(val, &n) || (n != 0xFF && n != 0)) {
                fprintf(stderr, "nobrick-sim: erase value must be 0xff or "
                        "0x00\n");
                return 0;
            }
            p->ev = (uint8_t)n;
            i++;
        } else if (strcmp(a, "--lifecycle") == 0) {
            if (strcmp(val, "development") == 0)
                p->lifecycle = NB_LIFECYCLE_DEVELOPMENT;
            else if (strcmp(val, "production") == 0)
                p->lifecycle = NB_LIFECYCLE_PRODUCTION;
            else {
                fprintf(stderr, "nobrick-sim: unknown lifecycle '%s'\n", val);
                return 0;
            }
            i++;
        } else if (strcmp(a, "--seed") == 0) {
            if (!parse_u64(val, &p->seed)) {
                fprintf(stderr, "nobrick-sim: bad seed '%s'\n", val);
                return 0;
            }
            i++;
        } else {
            fprintf(stderr, "nobrick-sim: unknown option '%s'\n", a);
            return 0;
        }
    }
    if (!p->kind) {
        fprintf(stderr, "nobrick-sim: sweep needs --layout\n");
        return 0;
    }
    return 1;
}

/* Fill the journal's current sector with copies of the current record
 * until about half a round of appends is left in it, so that the next
 * round compacts: the journal then looks as it would after many rounds,
 * without running them (on 128 KiB sectors that is over a hundred). */
static int age_journal(struct world *w, uint32_t per_round)
{
    if (simdev_open(&w->sd))
        return 0;
    struct nb_journal *j = &w->sd.dev.journal;
    uint32_t start, size;
    if (nb_flash_sector(&w->sd.flash, j->cur_sector, &start, &size))
        return 0;
    uint32_t left = (start + size - j->next) / j->rec_size;
    uint32_t keep = per_round / 2 ? per_round / 2 : 1;
    for (; left > keep; left--)
        if (nb_device_commit(&w->sd.dev))
            return 0;
    return 1;
}

/* Advance fault-free until the round that compacts the journal; returns
 * that round's number with its reference recorded, or -1. */
static long find_compacting_round(struct world *w, unsigned from)
{
    for (unsigned r = from; r < MAX_ROUNDS; r++) {
        uint64_t before = journal_erases(w);
        if (!reference_round(w, r))
            return -1;
        if (journal_erases(w) != before)
            return (long)r;
    }
    fprintf(stderr, "nobrick-sim: journal never compacted in %d rounds\n",
            MAX_ROUNDS);
    return -1;
}

static uint32_t journal_seq(struct world *w)
{
    return simdev_open(&w->sd) ? 0 : w->sd.dev.state.seq;
}

int sweep_main(int argc, char **argv)
{
    static struct world w;
    memset(&w, 0, sizeof(w));
    if (!parse(argc, argv, &w.p))
        return 1;
    if (!setup(&w)) {
        world_free(&w);
        return 1;
    }
    int ok = 1;
    uint64_t before = journal_erases(&w);
    uint32_t seq0 = journal_seq(&w);
    if (!reference_round(&w, 0)) {
        ok = 0;
    } else {
        int compacted = journal_erases(&w) != before;
        uint64_t ops0 = w.start_op[w.steps];
        sweep_round(&w, 0);
        printf("sweep %s %s w%" PRIu32 " e%02x %s%s%s: round 0: %" PRIu64
               " ops", nb_layout_name(w.p.kind), w.p.shape, w.p.ws, w.p.ev,
               w.p.torn ? "torn" : "cut", w.p.dbl ? " double" : "",
               compacted ? " (compacts)" : "", ops0);
        if (!compacted) {
            finish_round(&w);
            long r = -1;
            if (age_journal(&w, journal_seq(&w) - seq0))
                r = find_compacting_round(&w, 1);
            if (r < 0) {
                ok = 0;
            } else {
                sweep_round(&w, (unsigned)r);
                printf("; compaction in round %ld: %" PRIu64 " ops", r,
                       w.start_op[w.steps]);
            }
        }
        printf("\n");
    }
    printf("fault points: %" PRIu64 ", recovered: %" PRIu64
           ", bricked: %" PRIu64 "\n", w.points, w.recovered, w.bricked);
    world_free(&w);
    return ok && w.bricked == 0 && w.points > 0 ? 0 : 1;
}

/* nbr1:<layout>:<shape>:w<ws>:e<ev>:<lifecycle>:s<seed>:r<round>:c<cut>:t<torn>[:d<cut2>] */
static int parse_id(const char *id, struct params *p, unsigned *round,
                    uint64_t *cut, int64_t *cut2)
{
    char lay[16], shape[16], lc[16];
    unsigned ws, ev, torn;
    unsigned long long seed, c, d;
    int n = 0;
    memset(p, 0, sizeof(*p));
    if (sscanf(id, "nbr1:%15[^:]:%15[^:]:w%u:e%x:%15[^:]:s%llu:r%u:c%llu:t%u%n",
               lay, shape, &ws, &ev, lc, &seed, round, &c, &torn, &n) != 9)
        return 0;
    *cut2 = -1;
    if (id[n] == ':' && sscanf(id + n, ":d%llu", &d) == 1)
        *cut2 = (int64_t)d;
    else if (id[n])
        return 0;
    p->kind = kind_of(lay);
    snprintf(p->shape, sizeof(p->shape), "%s", shape);
    p->ws = ws;
    p->ev = (uint8_t)ev;
    p->lifecycle = strcmp(lc, "production") == 0 ? NB_LIFECYCLE_PRODUCTION
                                                  : NB_LIFECYCLE_DEVELOPMENT;
    p->torn = torn != 0;
    p->dbl = *cut2 >= 0;
    p->seed = seed;
    p->verbose = 1;
    *cut = c;
    return p->kind && (ws == 1 || ws == 2 || ws == 4 || ws == 8 || ws == 16 ||
                       ws == 32) && (ev == 0xFF || ev == 0);
}

int replay_main(int argc, char **argv)
{
    static struct world w;
    unsigned round;
    uint64_t cut;
    int64_t cut2;
    memset(&w, 0, sizeof(w));
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 ||
                      strcmp(argv[1], "-h") == 0)) {
        printf("usage: nobrick-sim replay ID\n"
               "Re-runs exactly one fault point printed by a failed sweep.\n");
        return 0;
    }
    if (argc != 2 || !parse_id(argv[1], &w.p, &round, &cut, &cut2)) {
        fprintf(stderr, "nobrick-sim: replay needs one replay ID "
                "(nbr1:...), as printed by a failed sweep\n");
        return 1;
    }
    if (!setup(&w)) {
        world_free(&w);
        return 1;
    }
    /* Reach the round exactly as the sweep did, journal ageing included. */
    int ok = 1;
    for (unsigned r = 0; ok && r < round; r++) {
        uint64_t before = journal_erases(&w);
        uint32_t seq0 = journal_seq(&w);
        ok = reference_round(&w, r);
        finish_round(&w);
        if (ok && r == 0 && journal_erases(&w) == before)
            ok = age_journal(&w, journal_seq(&w) - seq0);
    }
    ok = ok && reference_round(&w, round);
    if (ok && cut >= w.start_op[w.steps]) {
        fprintf(stderr, "nobrick-sim: round %u has only %" PRIu64 " ops\n",
                round, w.start_op[w.steps]);
        ok = 0;
    }
    if (ok) {
        struct verdict v = {{0}};
        unsigned s = step_of(&w, cut);
        ok = point(&w, round, cut, cut2, &v);
        printf("{\"replay\":\"%s\",\"step\":%u,\"ok\":%s,\"why\":\"%s\"}\n",
               argv[1], s, ok ? "true" : "false", ok ? "" : v.why);
    }
    world_free(&w);
    return ok ? 0 : 1;
}
