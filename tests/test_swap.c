/* test_swap.c - the swap strategy of the ab-swap layout (fixed execution
 * slot A, staging slot B one swap unit larger).
 *
 * For images of different sizes (old bigger, new bigger, equal, first
 * install, both at full capacity, tiny): after the swap A holds the new
 * image and B the old one at offset 0; the swap writes at most old + new
 * bytes (rounded to the write size; 2.0x for equal sizes) outside the
 * journal, erases each slot sector at most once and nothing outside the
 * slots; a revert brings the old image back bit-exact. Then power cuts at
 * every operation of the swap and of the revert (clean and torn, several
 * seeds; and every pair of cuts for one shape), each ending in a verified
 * image, old or new, and a revert that restores the old one.
 *
 * Shapes: 4 KiB sectors with write sizes 8, 1 (erased 0x00) and 32, and
 * mixed sectors (4 KiB journal, 16 KiB swap units). A sweep failure
 * names its case as "shape/sizes/phase/cut/torn/seed".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "testlib.h"

struct shape {
    const char *name;
    uint32_t ws;
    uint8_t ev;
    int mixed;
};

static const struct shape shapes[] = {
    {"4k-w8", 8, 0xFF, 0},
    {"4k-w1-00", 1, 0x00, 0},
    {"4k-w32", 32, 0xFF, 0},
    {"mixed-w8", 8, 0xFF, 1},
};
#define NSHAPES 4

/* Image sizes in thousandths of a swap unit (0 = no old image); the
 * capacity of A is 4 units on every shape. */
struct sizes {
    const char *name;
    uint32_t old_m, new_m;
};

static const struct sizes cases[] = {
    {"old>new", 3700, 1200}, {"new>old", 1200, 3900}, {"equal", 2500, 2500},
    {"first", 0, 2500},      {"full", 4000, 4000},    {"tiny", 30, 20},
};
#define NCASES 6

struct sfx {
    struct tl_dev *t;
    struct nb_simflash *snap;
    struct tl_image old, new_;
    int has_old;
    uint32_t unit;
    char id[112];
};

static struct sfx *live;

#define CHECK(x, cond)                                                     \
    do {                                                                   \
        if (!(cond))                                                       \
            fail_msg("case %s: %s (line %d)", (x)->id, #cond, __LINE__);   \
    } while (0)

/* Package bytes in the slot for `milli` thousandths of a unit; at least
 * a little more than the container and manifest (payload offset 1024),
 * and different for different `milli`. */
static uint32_t image_bytes(uint32_t unit, uint32_t milli)
{
    uint32_t n = (uint32_t)((uint64_t)unit * milli / 1000);
    return n < 1100 + milli ? 1100 + milli : n;
}

static struct nb_boot_result sboot(struct sfx *x)
{
    struct nb_boot_result r;
    nb_err err = tl_boot(x->t, &r);
    if (err)
        fail_msg("case %s: boot: %s", x->id, nb_err_name(err));
    return r;
}

static uint32_t a_off(struct sfx *x) { return x->t->cfg.layout.slot[0].off; }
static uint32_t b_off(struct sfx *x) { return x->t->cfg.layout.slot[1].off; }

static void expect(struct sfx *x, const struct nb_boot_result *r,
                   const struct tl_image *im, uint8_t state)
{
    if (r->outcome != NB_BOOT_IMAGE || r->image.version != im->version ||
        r->state != state)
        fail_msg("case %s: booted %s version %08x %s; expected %08x %s",
                 x->id, r->outcome == NB_BOOT_IMAGE ? "image" : "recovery",
                 r->image.version, nb_slot_state_name(r->state), im->version,
                 nb_slot_state_name(state));
    CHECK(x, r->slot == 0 && r->addr == a_off(x));
    CHECK(x, tl_holds(x->t, a_off(x), im));
}

/* A device with the old image confirmed in A (unless "first") and the
 * new one pending in B. */
static struct sfx *sfx_new(const struct shape *s, const struct sizes *c)
{
    struct sfx *x = calloc(1, sizeof(*x));
    struct nb_simflash_geometry g;
    assert_non_null(x);
    live = x;
    if (s->mixed) {
        g = tl_geo(s->ws, s->ev, 4, 4096);
        tl_geo_add(&g, 10, 16384);
        x->t = tl_dev_new(&g, NB_LAYOUT_AB_SWAP, 65536, 0);
    } else {
        g = tl_geo(s->ws, s->ev, 32, 4096);
        x->t = tl_dev_new(&g, NB_LAYOUT_AB_SWAP, 16384, 0);
    }
    assert_int_equal(nb_simflash_create_mem(&x->snap, &g), NB_OK);
    x->unit = x->t->cfg.layout.swap_unit;
    assert_int_equal(x->t->cfg.layout.slot[0].size, 4 * x->unit);
    snprintf(x->id, sizeof(x->id), "%s/%s", s->name, c->name);
    x->has_old = c->old_m != 0;
    x->old = tl_image_sized(x->t,
                            image_bytes(x->unit, c->old_m ? c->old_m : 100),
                            tl_ver(1, 0, 0), 1, 11);
    x->new_ = tl_image_sized(x->t, image_bytes(x->unit, c->new_m),
                             tl_ver(2, 0, 0), 2, 22);
    tl_provision(x->t, NB_LIFECYCLE_DEVELOPMENT, 3);
    if (x->has_old) {
        CHECK(x, tl_stage(x->t, &x->old) == NB_OK);
        struct nb_boot_result r = sboot(x);
        expect(x, &r, &x->old, NB_SLOT_TRIAL);
        CHECK(x, tl_open(x->t) == NB_OK && nb_confirm(&x->t->dev) == NB_OK);
    }
    CHECK(x, tl_stage(x->t, &x->new_) == NB_OK);
    CHECK(x, tl_holds(x->t, b_off(x) + x->unit, &x->new_));
    return x;
}

static void sfx_free(struct sfx *x)
{
    uint64_t v = tl_violations(x->t);
    live = NULL;
    tl_image_free(&x->old);
    tl_image_free(&x->new_);
    nb_simflash_close(x->snap);
    tl_dev_free(x->t);
    free(x);
    assert_int_equal(v, 0);
}

static int teardown(void **state)
{
    (void)state;
    if (live) {
        struct sfx *x = live;
        live = NULL;
        tl_image_free(&x->old);
        tl_image_free(&x->new_);
        nb_simflash_close(x->snap);
        tl_dev_free(x->t);
        free(x);
    }
    return 0;
}

/* Slot bytes written by one boot: flash bytes minus journal records. */
struct cost {
    uint64_t bytes;
    uint32_t max_erases; /* per slot sector */
};

static struct nb_boot_result measured_boot(struct sfx *x, struct cost *c)
{
    struct nb_simflash_stats s0, s1;
    uint32_t n = nb_simflash_sector_count(x->t->sim);
    uint32_t *e0 = calloc(n, sizeof(*e0));
    const struct nb_layout *l = &x->t->cfg.layout;
    assert_non_null(e0);
    for (uint32_t i = 0; i < n; i++)
        e0[i] = nb_simflash_erase_count(x->t->sim, i);
    nb_simflash_stats(x->t->sim, &s0);
    struct nb_boot_result r = sboot(x);
    nb_simflash_stats(x->t->sim, &s1);
    c->bytes = s1.bytes_written - s0.bytes_written -
               (uint64_t)x->t->dev.journal.appends *
                   x->t->dev.journal.rec_size;
    c->max_erases = 0;
    uint32_t start = 0, size;
    for (uint32_t i = 0; i < n; i++, start += size) {
        assert_int_equal(nb_flash_sector(&x->t->flash, start, &start, &size),
                         NB_OK);
        uint32_t d = nb_simflash_erase_count(x->t->sim, i) - e0[i];
        int in_slot = start >= l->slot[0].off &&
                      start < l->slot[1].off + l->slot[1].size;
        int in_journal = start < l->journal.off + l->journal.size;
        if (in_slot && d > c->max_erases)
            c->max_erases = d;
        if (!in_slot && !in_journal)
            CHECK(x, d == 0); /* nothing outside the layout */
    }
    free(e0);
    return r;
}

static uint64_t rnd(uint32_t n, uint32_t ws) { return (n + ws - 1) / ws * ws; }

/* ----------------------------------------------------- swap and revert */

static void swap_sizes_and_cost(void **state)
{
    (void)state;
    for (unsigned si = 0; si < NSHAPES; si++)
        for (unsigned ci = 0; ci < NCASES; ci++) {
            struct sfx *x = sfx_new(&shapes[si], &cases[ci]);
            uint32_t ws = shapes[si].ws;
            struct cost c;
            struct nb_boot_result r = measured_boot(x, &c);
            expect(x, &r, &x->new_, NB_SLOT_TRIAL);
            CHECK(x, r.attempts == 1);
            uint64_t bound = rnd(x->new_.size, ws) +
                             (x->has_old ? rnd(x->old.size, ws) : 0);
            if (c.bytes > bound)
                fail_msg("case %s: swap wrote %u slot bytes, bound %u "
                         "(old %u + new %u)",
                         x->id, (unsigned)c.bytes, (unsigned)bound,
                         x->has_old ? x->old.size : 0, x->new_.size);
            CHECK(x, c.bytes >= x->new_.size);
            CHECK(x, c.max_erases <= 1);
            print_message("%-22s old %6u new %6u: swap wrote %6u bytes "
                          "(%.2fx the new image)\n",
                          x->id, x->has_old ? x->old.size : 0, x->new_.size,
                          (unsigned)c.bytes,
                          (double)c.bytes / x->new_.size);
            if (!strcmp(cases[ci].name, "equal"))
                CHECK(x, c.bytes <= 2 * rnd(x->new_.size, ws));
            /* B holds the old image at offset 0, confirmed. */
            const struct nb_state *st = &x->t->dev.state;
            CHECK(x, st->slot[0].state == NB_SLOT_TRIAL);
            CHECK(x, st->slot[1].shifted == 0);
            if (x->has_old) {
                CHECK(x, tl_holds(x->t, b_off(x), &x->old));
                CHECK(x, st->slot[1].state == NB_SLOT_CONFIRMED);
                CHECK(x, st->active == 1);
                CHECK(x, st->floor == 1);
            }
            /* Two more trial boots, then the revert. */
            r = sboot(x);
            expect(x, &r, &x->new_, NB_SLOT_TRIAL);
            CHECK(x, r.attempts == 2);
            r = sboot(x);
            CHECK(x, r.attempts == 3);
            r = measured_boot(x, &c);
            if (!x->has_old) {
                CHECK(x, r.outcome == NB_BOOT_RECOVERY);
                sfx_free(x);
                continue;
            }
            expect(x, &r, &x->old, NB_SLOT_CONFIRMED);
            CHECK(x, c.bytes <= bound);
            CHECK(x, c.max_erases <= 1);
            CHECK(x, tl_holds(x->t, b_off(x) + x->unit, &x->new_));
            CHECK(x, x->t->dev.state.slot[1].state == NB_SLOT_REJECTED);
            CHECK(x, x->t->dev.state.slot[1].shifted == 1);
            CHECK(x, x->t->dev.state.active == 0);
            /* Steady: no further writes. */
            uint64_t ops = tl_ops(x->t);
            r = sboot(x);
            expect(x, &r, &x->old, NB_SLOT_CONFIRMED);
            CHECK(x, tl_ops(x->t) == ops);
            /* The same update again, confirmed this time; then a third
             * image swaps against it. */
            CHECK(x, tl_stage(x->t, &x->new_) == NB_OK);
            r = sboot(x);
            expect(x, &r, &x->new_, NB_SLOT_TRIAL);
            CHECK(x, tl_open(x->t) == NB_OK &&
                         nb_confirm(&x->t->dev) == NB_OK);
            CHECK(x, x->t->dev.state.active == 0);
            CHECK(x, x->t->dev.state.floor == 2);
            struct tl_image v3 = tl_image_make(x->t, 1000,
                                               tl_ver(3, 0, 0), 3, 33);
            CHECK(x, tl_stage(x->t, &v3) == NB_OK);
            r = measured_boot(x, &c);
            expect(x, &r, &v3, NB_SLOT_TRIAL);
            CHECK(x, c.bytes <= rnd(v3.size, ws) + rnd(x->new_.size, ws));
            CHECK(x, tl_holds(x->t, b_off(x), &x->new_));
            tl_image_free(&v3);
            sfx_free(x);
        }
}

/* The confirmed image in A rots after an update: the previous confirmed
 * image comes back from B. */
static void rotten_a_reverts(void **state)
{
    (void)state;
    struct sfx *x = sfx_new(&shapes[0], &cases[1]);
    struct nb_boot_result r = sboot(x);
    expect(x, &r, &x->new_, NB_SLOT_TRIAL);
    CHECK(x, tl_open(x->t) == NB_OK && nb_confirm(&x->t->dev) == NB_OK);
    assert_int_equal(nb_simflash_flip_bit(x->t->sim, a_off(x) + 5000, 1),
                     NB_OK);
    r = sboot(x);
    expect(x, &r, &x->old, NB_SLOT_CONFIRMED);
    CHECK(x, r.downgrade == 1);
    sfx_free(x);
}

/* ------------------------------------------------------ power cuts */

static unsigned long sweep_cases;

/* After power came back: boot to the end and check, then let the trial
 * fail and check that the old image is back, bit-exact. */
static void settle(struct sfx *x, int revert_phase)
{
    struct nb_boot_result r = sboot(x);
    if (!x->has_old && (revert_phase || r.outcome == NB_BOOT_RECOVERY)) {
        CHECK(x, r.outcome == NB_BOOT_RECOVERY);
        return;
    }
    CHECK(x, r.outcome == NB_BOOT_IMAGE && r.slot == 0);
    int is_new = r.image.version == x->new_.version;
    CHECK(x, is_new || (x->has_old && r.image.version == x->old.version));
    CHECK(x, tl_holds(x->t, a_off(x), is_new ? &x->new_ : &x->old));
    if (revert_phase)
        CHECK(x, !is_new && r.state == NB_SLOT_CONFIRMED);
    for (int i = 0; i < 4 && r.state == NB_SLOT_TRIAL; i++) {
        CHECK(x, is_new && r.attempts <= 3);
        r = sboot(x);
    }
    if (!x->has_old) {
        CHECK(x, r.outcome == NB_BOOT_RECOVERY);
        return;
    }
    expect(x, &r, &x->old, NB_SLOT_CONFIRMED);
    CHECK(x, tl_holds(x->t, b_off(x) + x->unit, &x->new_));
}

/* Sweep every cut of the next boot (swap, or with revert_phase the boot
 * that rejects the trial and reverts). With `twice`, also every cut of
 * the first boot after power returns. */
static void sweep(struct sfx *x, int revert_phase, unsigned seeds, int twice)
{
    char base[64];
    snprintf(base, sizeof(base), "%.40s", x->id);
    assert_int_equal(nb_simflash_copy_from(x->snap, x->t->sim), NB_OK);
    struct nb_boot_result r;
    for (int torn = 0; torn <= 1; torn++)
        for (unsigned seed = 0; seed < (torn ? seeds : 1u); seed++)
            for (uint64_t k = 0;; k++) {
                int fired = 0;
                for (uint64_t k2 = 0;; k2++) {
                    snprintf(x->id, sizeof(x->id),
                             "%s/%s/cut=%u/%s%u/torn=%d/seed=%u", base,
                             revert_phase ? "revert" : "swap", (unsigned)k,
                             twice ? "cut2=" : "", twice ? (unsigned)k2 : 0u,
                             torn, seed);
                    assert_int_equal(
                        nb_simflash_copy_from(x->t->sim, x->snap), NB_OK);
                    nb_simflash_seed(x->t->sim, seed * 7919u + k * 31u + k2);
                    nb_simflash_cut_at(x->t->sim, k, torn);
                    nb_err err = tl_boot(x->t, &r);
                    if (!nb_simflash_power_lost(x->t->sim)) {
                        CHECK(x, err == NB_OK); /* k is past the end */
                        nb_simflash_disarm(x->t->sim);
                        break;
                    }
                    CHECK(x, err == NB_ERR_POWER);
                    nb_simflash_power_on(x->t->sim);
                    fired = 1;
                    int again = 0;
                    if (twice) {
                        nb_simflash_cut_at(x->t->sim, k2, torn);
                        err = tl_boot(x->t, &r);
                        again = nb_simflash_power_lost(x->t->sim);
                        CHECK(x, again ? err == NB_ERR_POWER : err == NB_OK);
                        nb_simflash_power_on(x->t->sim);
                    }
                    sweep_cases++;
                    settle(x, revert_phase);
                    if (!again)
                        break;
                }
                if (!fired)
                    break;
            }
    snprintf(x->id, sizeof(x->id), "%s", base);
    assert_int_equal(nb_simflash_copy_from(x->t->sim, x->snap), NB_OK);
}

static void power_cut_swap_and_revert(void **state)
{
    (void)state;
    for (unsigned si = 0; si < NSHAPES; si++)
        for (unsigned ci = 0; ci < NCASES; ci++) {
            if (!strcmp(cases[ci].name, "full") && si != 0)
                continue;
            struct sfx *x = sfx_new(&shapes[si], &cases[ci]);
            sweep(x, 0, 4, 0);
            /* Run the swap, two more trial boots, then sweep the boot
             * that rejects the trial and reverts. */
            struct nb_boot_result r = sboot(x);
            expect(x, &r, &x->new_, NB_SLOT_TRIAL);
            sboot(x);
            r = sboot(x);
            CHECK(x, r.attempts == 3);
            sweep(x, 1, 4, 0);
            sfx_free(x);
        }
    print_message("swap: %lu power-cut cases\n", sweep_cases);
}

/* Every pair (cut in the swap, cut in the boot after it). */
static void power_cut_twice(void **state)
{
    (void)state;
    unsigned long before = sweep_cases;
    struct sfx *x = sfx_new(&shapes[0], &cases[0]);
    sweep(x, 0, 1, 1);
    struct nb_boot_result r = sboot(x);
    expect(x, &r, &x->new_, NB_SLOT_TRIAL);
    sboot(x);
    sboot(x);
    sweep(x, 1, 1, 1);
    sfx_free(x);
    print_message("swap: %lu double power-cut cases\n", sweep_cases - before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(swap_sizes_and_cost, teardown),
        cmocka_unit_test_teardown(rotten_a_reverts, teardown),
        cmocka_unit_test_teardown(power_cut_swap_and_revert, teardown),
        cmocka_unit_test_teardown(power_cut_twice, teardown),
    };
    return cmocka_run_group_tests_name("swap", tests, NULL, NULL);
}
