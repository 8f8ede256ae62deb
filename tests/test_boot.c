/* test_boot.c - the device: provisioning, install, the boot decision,
 * trial and attempt limit, confirmation, anti-rollback and lifecycle,
 * corrupted images, bad installs, and power cuts at every operation of a
 * full update cycle; each for every layout (ab, ab-swap, ab-factory,
 * single) unless the case exists for one layout only.
 *
 * Device: 32 x 4 KiB sectors, 8-byte writes, slots of 16 KiB, images of
 * about 9 and 11 KiB. Every test ends with no strict-NOR violation. A
 * sweep failure names its case as "layout/phase/cut/torn/seed".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "testlib.h"

#define SLOT 16384u
#define DEV NB_LIFECYCLE_DEVELOPMENT
#define PROD NB_LIFECYCLE_PRODUCTION

struct bfx {
    uint8_t kind;
    struct tl_dev *t;
    struct nb_simflash *snap, *pre;
    struct tl_image v1, v2, fac;
    char id[96];
};

#define CHECK(b, cond)                                                     \
    do {                                                                   \
        if (!(cond))                                                       \
            fail_msg("case %s: %s (line %d)", (b)->id, #cond, __LINE__);   \
    } while (0)

/* The fixture of the running test, freed by the teardown when a failed
 * check leaves the test early. */
static struct bfx *live;

static struct bfx *bfx_new(void **state, uint8_t lifecycle, uint8_t limit)
{
    struct bfx *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    b->kind = *(const uint8_t *)*state;
    struct nb_simflash_geometry g = tl_geo(8, 0xFF, 32, 4096);
    b->t = tl_dev_new(&g, b->kind, SLOT, 0);
    assert_int_equal(nb_simflash_create_mem(&b->snap, &g), NB_OK);
    assert_int_equal(nb_simflash_create_mem(&b->pre, &g), NB_OK);
    b->v1 = tl_image_make(&b->t->crypto, 9000, tl_ver(1, 0, 0), 1, 101);
    b->v2 = tl_image_make(&b->t->crypto, 11000, tl_ver(2, 0, 0), 2, 202);
    b->fac = tl_image_make(&b->t->crypto, 7000, tl_ver(0, 9, 0), 0, 303);
    snprintf(b->id, sizeof(b->id), "%s", nb_layout_name(b->kind));
    tl_provision(b->t, lifecycle, limit);
    live = b;
    return b;
}

static void bfx_release(struct bfx *b)
{
    live = NULL;
    tl_image_free(&b->v1);
    tl_image_free(&b->v2);
    tl_image_free(&b->fac);
    nb_simflash_close(b->snap);
    nb_simflash_close(b->pre);
    tl_dev_free(b->t);
    free(b);
}

static void bfx_free(struct bfx *b)
{
    uint64_t v = tl_violations(b->t);
    bfx_release(b);
    assert_int_equal(v, 0);
}

/* Frees the fixture when a failed check left the test early. */
static int teardown(void **state)
{
    (void)state;
    if (live)
        bfx_release(live);
    return 0;
}

static struct nb_state *st_of(struct bfx *b) { return &b->t->dev.state; }
static int two_slot_ab(const struct bfx *b)
{
    return b->kind == NB_LAYOUT_AB || b->kind == NB_LAYOUT_AB_FACTORY;
}

/* The booted image is `im`, bit-exact at res->addr, in `state`. */
static void expect_boot(struct bfx *b, const struct nb_boot_result *r,
                        const struct tl_image *im, uint8_t state,
                        uint8_t attempts)
{
    if (r->outcome != NB_BOOT_IMAGE || r->image.version != im->version ||
        r->state != state || r->attempts != attempts)
        fail_msg("case %s: booted %s slot %u version %08x %s attempts %u; "
                 "expected version %08x %s attempts %u",
                 b->id, r->outcome == NB_BOOT_IMAGE ? "image" : "recovery",
                 r->slot, r->image.version, nb_slot_state_name(r->state),
                 r->attempts, im->version, nb_slot_state_name(state),
                 attempts);
    CHECK(b, r->image.svn == im->svn && r->image.size == im->size);
    CHECK(b, r->addr == nb_device_image_addr(&b->t->dev, r->slot));
    CHECK(b, tl_holds(b->t, r->addr, im));
    if (b->kind == NB_LAYOUT_AB_SWAP || b->kind == NB_LAYOUT_SINGLE)
        CHECK(b, r->slot == 0 && r->addr == b->t->cfg.layout.slot[0].off);
}

static struct nb_boot_result boot(struct bfx *b)
{
    struct nb_boot_result r;
    nb_err err = tl_boot(b->t, &r);
    if (err)
        fail_msg("case %s: boot: %s", b->id, nb_err_name(err));
    return r;
}

static void boot_expect(struct bfx *b, const struct tl_image *im,
                        uint8_t state, uint8_t attempts)
{
    struct nb_boot_result r = boot(b);
    expect_boot(b, &r, im, state, attempts);
}

static void boot_recovery(struct bfx *b)
{
    struct nb_boot_result r = boot(b);
    CHECK(b, r.outcome == NB_BOOT_RECOVERY);
}

static void stage(struct bfx *b, const struct tl_image *im)
{
    nb_err err = tl_stage(b->t, im);
    if (err)
        fail_msg("case %s: stage: %s", b->id, nb_err_name(err));
}

static void confirm(struct bfx *b)
{
    CHECK(b, tl_open(b->t) == NB_OK && nb_confirm(&b->t->dev) == NB_OK);
}

/* Stage, trial boot, confirm, confirmed boot. */
static void update(struct bfx *b, const struct tl_image *im)
{
    stage(b, im);
    boot_expect(b, im, NB_SLOT_TRIAL, 1);
    confirm(b);
    boot_expect(b, im, NB_SLOT_CONFIRMED, 0);
}

static int find_slot(struct bfx *b, uint8_t state)
{
    for (unsigned i = 0; i < nb_layout_slot_count(b->kind); i++)
        if (st_of(b)->slot[i].state == state)
            return (int)i;
    return -1;
}

/* Flip one bit of the image in slot i (its payload, past the header). */
static void rot_slot(struct bfx *b, unsigned i)
{
    uint32_t a = nb_device_image_addr(&b->t->dev, i) + NB_IMAGE_HDR_SIZE + 77;
    assert_int_equal(nb_simflash_flip_bit(b->t->sim, a, 5), NB_OK);
}

/* -------------------------------------------------------------- cases */

static void blank_device(void **state)
{
    (void)state;
    struct nb_simflash_geometry g = tl_geo(8, 0xFF, 32, 4096);
    struct tl_dev *t = tl_dev_new(&g, NB_LAYOUT_AB, SLOT, 0);
    struct nb_boot_result r;
    assert_int_equal(tl_open(t), NB_ERR_NOENT);
    assert_int_equal(tl_boot(t, &r), NB_ERR_NOENT);
    /* Bad provisioning arguments. */
    assert_int_equal(nb_device_provision(&t->dev, &t->cfg, 0, 3),
                     NB_ERR_INVAL);
    assert_int_equal(nb_device_provision(&t->dev, &t->cfg, 3, 3),
                     NB_ERR_INVAL);
    struct nb_boot_config bad = t->cfg;
    bad.buf_size = 100; /* not a multiple of the write size */
    assert_int_equal(nb_device_provision(&t->dev, &bad, DEV, 3),
                     NB_ERR_INVAL);
    bad = t->cfg, bad.buf = NULL;
    assert_int_equal(nb_device_open(&t->dev, &bad), NB_ERR_INVAL);
    assert_int_equal(tl_ops(t), 0);
    /* Provisioned: default attempt limit, nothing to boot. */
    tl_provision(t, DEV, 0);
    assert_int_equal(tl_open(t), NB_OK);
    assert_int_equal(t->dev.state.attempt_limit, NB_DEFAULT_ATTEMPT_LIMIT);
    assert_int_equal(tl_boot(t, &r), NB_OK);
    assert_int_equal(r.outcome, NB_BOOT_RECOVERY);
    /* A journal written for another layout is refused. */
    struct nb_boot_config other = t->cfg;
    assert_int_equal(nb_layout_plan(&other.layout, &t->flash,
                                    NB_LAYOUT_AB_FACTORY, SLOT, 0),
                     NB_OK);
    assert_int_equal(nb_device_open(&t->dev, &other), NB_ERR_INVAL);
    assert_int_equal(tl_violations(t), 0);
    tl_dev_free(t);
}

/* Install, trial, confirm; a second image rejected after the attempt
 * limit; the first comes back. */
static void update_and_revert(void **state)
{
    struct bfx *b = bfx_new(state, DEV, 0);
    boot_recovery(b);
    stage(b, &b->v1);
    boot_expect(b, &b->v1, NB_SLOT_TRIAL, 1);
    CHECK(b, st_of(b)->floor == 0);
    confirm(b);
    CHECK(b, st_of(b)->floor == 1);
    boot_expect(b, &b->v1, NB_SLOT_CONFIRMED, 0);

    stage(b, &b->v2);
    struct nb_boot_result r = boot(b);
    expect_boot(b, &r, &b->v2, NB_SLOT_TRIAL, 1);
    if (two_slot_ab(b))
        CHECK(b, r.slot == 1);
    CHECK(b, st_of(b)->floor == 1);
    boot_expect(b, &b->v2, NB_SLOT_TRIAL, 2);
    boot_expect(b, &b->v2, NB_SLOT_TRIAL, 3);
    if (b->kind == NB_LAYOUT_SINGLE) {
        boot_recovery(b);
        CHECK(b, st_of(b)->slot[0].state == NB_SLOT_REJECTED);
    } else {
        boot_expect(b, &b->v1, NB_SLOT_CONFIRMED, 0);
        CHECK(b, st_of(b)->slot[1].state == NB_SLOT_REJECTED);
        CHECK(b, st_of(b)->slot[0].state == NB_SLOT_CONFIRMED);
        CHECK(b, st_of(b)->active == 0);
        if (b->kind == NB_LAYOUT_AB_SWAP) /* v2 back in B, shifted */
            CHECK(b, tl_holds(b->t, b->t->cfg.layout.slot[1].off +
                                        b->t->cfg.layout.swap_unit,
                              &b->v2));
    }
    CHECK(b, st_of(b)->floor == 1);
    /* A steady boot writes nothing. */
    uint64_t ops = tl_ops(b->t);
    if (b->kind == NB_LAYOUT_SINGLE)
        boot_recovery(b);
    else
        boot_expect(b, &b->v1, NB_SLOT_CONFIRMED, 0);
    CHECK(b, tl_ops(b->t) == ops);
    /* The rejected image can be sent again and confirmed. */
    update(b, &b->v2);
    CHECK(b, st_of(b)->floor == 2);
    bfx_free(b);
}

static void attempt_limit_one(void **state)
{
    struct bfx *b = bfx_new(state, PROD, 1);
    update(b, &b->v1);
    stage(b, &b->v2);
    boot_expect(b, &b->v2, NB_SLOT_TRIAL, 1);
    if (b->kind == NB_LAYOUT_SINGLE)
        boot_recovery(b);
    else
        boot_expect(b, &b->v1, NB_SLOT_CONFIRMED, 0);
    bfx_free(b);
}

static void floor_rises_on_confirm_only(void **state)
{
    struct bfx *b = bfx_new(state, PROD, 3);
    update(b, &b->v1);
    stage(b, &b->v2);
    boot_expect(b, &b->v2, NB_SLOT_TRIAL, 1);
    CHECK(b, tl_open(b->t) == NB_OK && st_of(b)->floor == 1);
    boot_expect(b, &b->v2, NB_SLOT_TRIAL, 2);
    CHECK(b, st_of(b)->floor == 1);
    confirm(b);
    CHECK(b, st_of(b)->floor == 2);
    CHECK(b, tl_open(b->t) == NB_OK && st_of(b)->floor == 2);
    boot_expect(b, &b->v2, NB_SLOT_CONFIRMED, 0);
    /* Confirming again is a no-op that writes nothing. */
    uint64_t ops = tl_ops(b->t);
    confirm(b);
    CHECK(b, tl_ops(b->t) == ops);
    boot_expect(b, &b->v2, NB_SLOT_CONFIRMED, 0);
    bfx_free(b);
}

static void rollback_refused_in_production(void **state)
{
    struct bfx *b = bfx_new(state, PROD, 3);
    struct tl_image hi = tl_image_make(&b->t->crypto, 5000, 0x03000000, 5, 1);
    struct tl_image lo = tl_image_make(&b->t->crypto, 5000, 0x04000000, 4, 2);
    struct nb_install in;
    update(b, &hi);
    CHECK(b, st_of(b)->floor == 5);
    CHECK(b, tl_open(b->t) == NB_OK);
    uint8_t *snap = tl_snapshot(b->t);
    uint64_t ops = tl_ops(b->t);
    CHECK(b, nb_install_begin(&in, &b->t->dev, lo.data, NB_TARGET_UPDATE) ==
                 NB_ERR_DENIED);
    CHECK(b, tl_same(b->t, snap) && tl_ops(b->t) == ops);
    CHECK(b, tl_open(b->t) == NB_OK &&
                 nb_install_set_pending(&b->t->dev) == NB_ERR_STATE);
    boot_expect(b, &hi, NB_SLOT_CONFIRMED, 0);
    free(snap);
    /* The same security version is fine. */
    struct tl_image same = tl_image_make(&b->t->crypto, 6000, 0x03000001, 5, 3);
    update(b, &same);
    tl_image_free(&same);
    tl_image_free(&hi);
    tl_image_free(&lo);
    bfx_free(b);
}

static void downgrade_allowed_in_development(void **state)
{
    struct bfx *b = bfx_new(state, DEV, 3);
    struct tl_image hi = tl_image_make(&b->t->crypto, 5000, 0x03000000, 5, 1);
    struct tl_image lo = tl_image_make(&b->t->crypto, 5000, 0x02000000, 3, 2);
    struct nb_install in;
    update(b, &hi);
    CHECK(b, tl_open(b->t) == NB_OK);
    CHECK(b, nb_install_begin(&in, &b->t->dev, lo.data, NB_TARGET_UPDATE) ==
                 NB_OK);
    CHECK(b, in.downgrade == 1);
    stage(b, &lo); /* from scratch: RECEIVING -> RECEIVING */
    struct nb_boot_result r = boot(b);
    expect_boot(b, &r, &lo, NB_SLOT_TRIAL, 1);
    CHECK(b, r.downgrade == 1);
    confirm(b);
    CHECK(b, st_of(b)->floor == 5); /* never lowered */
    r = boot(b);
    expect_boot(b, &r, &lo, NB_SLOT_CONFIRMED, 0);
    CHECK(b, r.downgrade == 1);
    /* Production from here: the floor holds, lower images are refused. */
    CHECK(b, nb_device_set_lifecycle(&b->t->dev, PROD) == NB_OK);
    CHECK(b, tl_open(b->t) == NB_OK &&
                 nb_install_begin(&in, &b->t->dev, lo.data,
                                  NB_TARGET_UPDATE) == NB_ERR_DENIED);
    tl_image_free(&hi);
    tl_image_free(&lo);
    bfx_free(b);
}

static void lifecycle_one_way(void **state)
{
    struct bfx *b = bfx_new(state, DEV, 3);
    CHECK(b, tl_open(b->t) == NB_OK);
    CHECK(b, nb_device_set_lifecycle(&b->t->dev, DEV) == NB_OK);
    CHECK(b, nb_device_set_lifecycle(&b->t->dev, PROD) == NB_OK);
    CHECK(b, tl_open(b->t) == NB_OK && st_of(b)->lifecycle == PROD);
    CHECK(b, nb_device_set_lifecycle(&b->t->dev, DEV) == NB_ERR_DENIED);
    CHECK(b, st_of(b)->lifecycle == PROD);
    CHECK(b, nb_device_set_lifecycle(&b->t->dev, 9) == NB_ERR_INVAL);
    CHECK(b, tl_open(b->t) == NB_OK && st_of(b)->lifecycle == PROD);
    CHECK(b, nb_device_set_lifecycle(&b->t->dev, PROD) == NB_OK);
    bfx_free(b);
}

/* The confirmed image rots: the previous confirmed image, else the
 * factory image, else recovery. Never the rotten one. */
static void corrupted_confirmed(void **state)
{
    struct bfx *b = bfx_new(state, DEV, 3);
    uint8_t k = b->kind;
    if (k == NB_LAYOUT_AB_FACTORY) {
        CHECK(b, tl_open(b->t) == NB_OK &&
                     tl_install(b->t, &b->fac, NB_TARGET_FACTORY) == NB_OK);
        boot_expect(b, &b->fac, NB_SLOT_CONFIRMED, 0);
    }
    /* Only one image. */
    update(b, &b->v1);
    CHECK(b, tl_open(b->t) == NB_OK);
    rot_slot(b, 0);
    if (k == NB_LAYOUT_AB_FACTORY) {
        boot_expect(b, &b->fac, NB_SLOT_CONFIRMED, 0);
    } else {
        boot_recovery(b);
        boot_recovery(b);
    }
    CHECK(b, st_of(b)->slot[0].state == NB_SLOT_REJECTED);
    if (k == NB_LAYOUT_SINGLE) {
        bfx_free(b);
        return;
    }
    /* Two confirmed images, the newer rots. */
    update(b, &b->v1);
    update(b, &b->v2);
    CHECK(b, tl_open(b->t) == NB_OK);
    unsigned act = st_of(b)->active;
    rot_slot(b, act);
    strcat(b->id, "/previous");
    struct nb_boot_result r = boot(b);
    expect_boot(b, &r, &b->v1, NB_SLOT_CONFIRMED, 0);
    CHECK(b, r.downgrade == 1); /* v1 is below the floor v2 raised */
    CHECK(b, st_of(b)->slot[k == NB_LAYOUT_AB_SWAP ? 1 : act].state ==
                 NB_SLOT_REJECTED);
    boot_expect(b, &b->v1, NB_SLOT_CONFIRMED, 0);
    /* Then the previous one rots too. */
    CHECK(b, tl_open(b->t) == NB_OK);
    rot_slot(b, st_of(b)->active);
    if (k == NB_LAYOUT_AB_FACTORY)
        boot_expect(b, &b->fac, NB_SLOT_CONFIRMED, 0);
    else
        boot_recovery(b);
    bfx_free(b);
}

/* In production the previous image is below the floor: not booted. */
static void previous_below_floor_in_production(void **state)
{
    struct bfx *b = bfx_new(state, PROD, 3);
    update(b, &b->v1);
    update(b, &b->v2);
    CHECK(b, tl_open(b->t) == NB_OK);
    rot_slot(b, st_of(b)->active);
    struct nb_boot_result r = boot(b);
    CHECK(b, r.outcome == NB_BOOT_RECOVERY);
    bfx_free(b);
}

static void pending_that_fails_verification(void **state)
{
    struct bfx *b = bfx_new(state, DEV, 3);
    update(b, &b->v1);
    stage(b, &b->v2);
    int p = find_slot(b, NB_SLOT_PENDING);
    CHECK(b, p >= 0);
    rot_slot(b, (unsigned)p);
    for (int i = 0; i < 3; i++) {
        if (b->kind == NB_LAYOUT_SINGLE)
            boot_recovery(b);
        else
            boot_expect(b, &b->v1, NB_SLOT_CONFIRMED, 0);
        CHECK(b, st_of(b)->slot[p].state == NB_SLOT_REJECTED);
    }
    bfx_free(b);
}

static void install_refused_during_trial(void **state)
{
    struct bfx *b = bfx_new(state, DEV, 3);
    struct tl_image v3 = tl_image_make(&b->t->crypto, 3000, 0x03000000, 3, 9);
    struct nb_install in;
    update(b, &b->v1);
    stage(b, &b->v2);
    for (uint8_t a = 1; a <= 2; a++) {
        boot_expect(b, &b->v2, NB_SLOT_TRIAL, a);
        CHECK(b, tl_open(b->t) == NB_OK);
        uint8_t *snap = tl_snapshot(b->t);
        CHECK(b, nb_install_begin(&in, &b->t->dev, v3.data,
                                  NB_TARGET_UPDATE) == NB_ERR_STATE);
        CHECK(b, tl_same(b->t, snap));
        free(snap);
    }
    confirm(b);
    update(b, &v3);
    tl_image_free(&v3);
    bfx_free(b);
}

static void image_larger_than_slot(void **state)
{
    struct bfx *b = bfx_new(state, DEV, 3);
    struct nb_install in;
    uint32_t cap = nb_layout_capacity(&b->t->cfg.layout, 0);
    struct tl_image big = tl_image_make(&b->t->crypto, cap - 63, 7, 1, 5);
    struct tl_image fit = tl_image_make(&b->t->crypto, cap - 64, 8, 1, 6);
    CHECK(b, tl_open(b->t) == NB_OK);
    uint8_t *snap = tl_snapshot(b->t);
    CHECK(b, nb_install_begin(&in, &b->t->dev, big.data, NB_TARGET_UPDATE) ==
                 NB_ERR_NOSPC);
    CHECK(b, tl_same(b->t, snap));
    free(snap);
    /* Exactly the capacity fits, and boots. */
    update(b, &fit);
    update(b, &b->v1);
    tl_image_free(&big);
    tl_image_free(&fit);
    bfx_free(b);
}

static void finish_detects_corruption(void **state)
{
    struct bfx *b = bfx_new(state, DEV, 3);
    struct nb_install in;
    update(b, &b->v1);
    for (int how = 0; how < 2; how++) {
        struct tl_image im = tl_image_make(&b->t->crypto, 11000,
                                           tl_ver(2, 0, 0), 2, 202);
        if (how == 1)
            im.data[40] ^= 0x10; /* a wrong digest in the header */
        CHECK(b, tl_open(b->t) == NB_OK);
        CHECK(b, nb_install_begin(&in, &b->t->dev, im.data,
                                  NB_TARGET_UPDATE) == NB_OK);
        CHECK(b, nb_install_write(&in, im.data, im.size) == NB_OK);
        CHECK(b, nb_install_write(&in, im.data, 1) == NB_ERR_RANGE);
        if (how == 0) /* rot in what is already on flash */
            assert_int_equal(nb_simflash_flip_bit(b->t->sim,
                                                  in.base + 100, 2),
                             NB_OK);
        CHECK(b, nb_install_finish(&in) == NB_ERR_CORRUPT);
        CHECK(b, st_of(b)->slot[in.slot].state == NB_SLOT_RECEIVING);
        CHECK(b, nb_install_set_pending(&b->t->dev) == NB_ERR_STATE);
        for (int i = 0; i < 2; i++) {
            if (b->kind == NB_LAYOUT_SINGLE)
                boot_recovery(b);
            else
                boot_expect(b, &b->v1, NB_SLOT_CONFIRMED, 0);
        }
        tl_image_free(&im);
    }
    /* A short install cannot finish. */
    CHECK(b, tl_open(b->t) == NB_OK);
    CHECK(b, nb_install_begin(&in, &b->t->dev, b->v2.data,
                              NB_TARGET_UPDATE) == NB_OK);
    CHECK(b, nb_install_write(&in, b->v2.data, 5000) == NB_OK);
    CHECK(b, nb_install_finish(&in) == NB_ERR_STATE);
    /* A good install afterwards. */
    update(b, &b->v2);
    bfx_free(b);
}

static void factory_target(void **state)
{
    struct bfx *b = bfx_new(state, PROD, 3);
    struct nb_install in;
    CHECK(b, tl_open(b->t) == NB_OK);
    if (b->kind != NB_LAYOUT_AB_FACTORY) {
        CHECK(b, nb_install_begin(&in, &b->t->dev, b->fac.data,
                                  NB_TARGET_FACTORY) == NB_ERR_DENIED);
        bfx_free(b);
        return;
    }
    CHECK(b, nb_install_begin(&in, &b->t->dev, b->fac.data, 7) ==
                 NB_ERR_INVAL);
    CHECK(b, tl_install(b->t, &b->fac, NB_TARGET_FACTORY) == NB_OK);
    struct nb_boot_result r = boot(b);
    expect_boot(b, &r, &b->fac, NB_SLOT_CONFIRMED, 0);
    CHECK(b, r.slot == 2 && r.addr == b->t->cfg.layout.slot[2].off);
    CHECK(b, st_of(b)->floor == 0);
    /* Written once. */
    CHECK(b, nb_install_begin(&in, &b->t->dev, b->v1.data,
                              NB_TARGET_FACTORY) == NB_ERR_DENIED);
    /* Updates never go to the factory slot. */
    update(b, &b->v1);
    update(b, &b->v2);
    struct tl_image v3 = tl_image_make(&b->t->crypto, 3000, 0x03000000, 3, 9);
    update(b, &v3);
    CHECK(b, tl_holds(b->t, b->t->cfg.layout.slot[2].off, &b->fac));
    CHECK(b, st_of(b)->slot[2].state == NB_SLOT_CONFIRMED);
    tl_image_free(&v3);
    bfx_free(b);
}

/* The image on trial rots: rejected at once, the old image boots. */
static void trial_image_rots(void **state)
{
    struct bfx *b = bfx_new(state, DEV, 3);
    update(b, &b->v1);
    stage(b, &b->v2);
    boot_expect(b, &b->v2, NB_SLOT_TRIAL, 1);
    CHECK(b, tl_open(b->t) == NB_OK);
    int t = find_slot(b, NB_SLOT_TRIAL);
    CHECK(b, t >= 0);
    rot_slot(b, (unsigned)t);
    if (b->kind == NB_LAYOUT_SINGLE)
        boot_recovery(b);
    else
        boot_expect(b, &b->v1, NB_SLOT_CONFIRMED, 0);
    CHECK(b, find_slot(b, NB_SLOT_TRIAL) < 0);
    bfx_free(b);
}

/* Nothing confirmed, a complete image VERIFIED but never marked pending
 * (power lost right after finish): it gets its trial. Confirming with
 * nothing on trial and nothing confirmed is refused. */
static void verified_gets_a_trial(void **state)
{
    struct bfx *b = bfx_new(state, DEV, 3);
    CHECK(b, tl_open(b->t) == NB_OK);
    CHECK(b, nb_confirm(&b->t->dev) == NB_ERR_STATE);
    CHECK(b, tl_install(b->t, &b->v1, NB_TARGET_UPDATE) == NB_OK);
    boot_expect(b, &b->v1, NB_SLOT_TRIAL, 1);
    confirm(b);
    /* With a confirmed image, a VERIFIED one waits to be asked for. */
    CHECK(b, tl_open(b->t) == NB_OK &&
                 tl_install(b->t, &b->v2, NB_TARGET_UPDATE) == NB_OK);
    if (b->kind == NB_LAYOUT_SINGLE) {
        boot_expect(b, &b->v2, NB_SLOT_TRIAL, 1);
    } else {
        boot_expect(b, &b->v1, NB_SLOT_CONFIRMED, 0);
        CHECK(b, tl_open(b->t) == NB_OK &&
                     nb_install_set_pending(&b->t->dev) == NB_OK);
        boot_expect(b, &b->v2, NB_SLOT_TRIAL, 1);
    }
    bfx_free(b);
}

/* Many cycles, alternately confirmed and reverted: the journal compacts
 * several times and every boot is the expected image. */
static void many_cycles(void **state)
{
    struct bfx *b = bfx_new(state, PROD, 2);
    struct tl_image good = tl_image_make(&b->t->crypto, 3000, 0x10000, 1, 99);
    update(b, &good);
    for (uint32_t c = 0; c < 24; c++) {
        snprintf(b->id, sizeof(b->id), "%s/cycle=%u",
                 nb_layout_name(b->kind), c);
        struct tl_image n = tl_image_make(&b->t->crypto, 4000 + 300 * c,
                                          0x10001 + c, 1 + c / 2, 1000 + c);
        stage(b, &n);
        boot_expect(b, &n, NB_SLOT_TRIAL, 1);
        boot_expect(b, &n, NB_SLOT_TRIAL, 2);
        if (c % 2) {
            confirm(b);
            boot_expect(b, &n, NB_SLOT_CONFIRMED, 0);
            tl_image_free(&good);
            good = n;
            continue;
        }
        if (b->kind == NB_LAYOUT_SINGLE) {
            boot_recovery(b);
            update(b, &good); /* the recovery loader re-fetches */
        } else {
            boot_expect(b, &good, NB_SLOT_CONFIRMED, 0);
        }
        tl_image_free(&n);
    }
    CHECK(b, tl_open(b->t) == NB_OK && st_of(b)->floor == 12);
    CHECK(b, b->t->dev.journal.seq > 2 * 4096 / b->t->dev.journal.rec_size);
    tl_image_free(&good);
    bfx_free(b);
}

/* ------------------------------------------------- power-cut sweeps */

enum { PH_STAGE, PH_TRIAL, PH_CONFIRM, PH_REVERT };
static const char *const ph_name[] = {"stage", "trial", "confirm", "revert"};
static unsigned long sweep_cases;

/* Run phase `ph` (from the snapshot) with a cut at op k. NB_OK when it
 * ran to the end without the cut firing. */
static nb_err run_phase(struct bfx *b, int ph)
{
    struct nb_boot_result r;
    switch (ph) {
    case PH_STAGE: return tl_stage(b->t, &b->v2);
    case PH_CONFIRM:
        return tl_open(b->t) ? NB_ERR_IO : nb_confirm(&b->t->dev);
    default: return tl_boot(b->t, &r);
    }
}

/* After the cut: what may the device boot? */
static void check_after(struct bfx *b, int ph)
{
    struct nb_boot_result r = boot(b);
    int single = b->kind == NB_LAYOUT_SINGLE;
    if (r.outcome == NB_BOOT_RECOVERY) {
        /* Only the single slot, only once the old image was given up. */
        CHECK(b, single && (ph == PH_STAGE || ph == PH_REVERT));
        return;
    }
    int is_v1 = r.image.version == b->v1.version;
    CHECK(b, is_v1 || r.image.version == b->v2.version);
    CHECK(b, tl_holds(b->t, r.addr, is_v1 ? &b->v1 : &b->v2));
    switch (ph) {
    case PH_STAGE: /* old, or the new one if the pending record landed */
        CHECK(b, is_v1 ? r.state == NB_SLOT_CONFIRMED
                       : r.state == NB_SLOT_TRIAL && r.attempts == 1);
        break;
    case PH_TRIAL:
        CHECK(b, !is_v1 && r.state == NB_SLOT_TRIAL && r.attempts <= 2);
        break;
    case PH_CONFIRM:
        CHECK(b, !is_v1 && (r.state == NB_SLOT_CONFIRMED ||
                            (r.state == NB_SLOT_TRIAL && r.attempts == 2)));
        break;
    case PH_REVERT:
        CHECK(b, is_v1 && r.state == NB_SLOT_CONFIRMED);
        break;
    }
    if (is_v1 || r.state == NB_SLOT_CONFIRMED)
        return;
    /* The trial never confirms: the old image must come back. */
    for (int i = 0; i < 4 && r.state == NB_SLOT_TRIAL; i++)
        r = boot(b);
    if (single) {
        CHECK(b, r.outcome == NB_BOOT_RECOVERY);
    } else {
        expect_boot(b, &r, &b->v1, NB_SLOT_CONFIRMED, 0);
    }
}

/* Append copies of the current state until the journal's current sector
 * has exactly `left` free record slots, so that the phase's (left+1)-th
 * record compacts the journal. */
static void pad_journal(struct bfx *b, uint32_t left)
{
    struct nb_journal *j = &b->t->dev.journal;
    uint32_t start, size;
    CHECK(b, tl_open(b->t) == NB_OK);
    for (;;) {
        assert_int_equal(nb_flash_sector(&b->t->flash, j->cur_sector, &start,
                                         &size),
                         NB_OK);
        if ((start + size - j->next) / j->rec_size == left)
            break;
        CHECK(b, nb_device_commit(&b->t->dev) == NB_OK);
    }
}

/* Sweep every cut point of phase `ph`, as it is and with the journal
 * padded so that each of its first records compacts; then run it. */
static void sweep_phase(struct bfx *b, int ph)
{
    assert_int_equal(nb_simflash_copy_from(b->pre, b->t->sim), NB_OK);
    for (int pad = -1; pad < 3; pad++) {
        assert_int_equal(nb_simflash_copy_from(b->t->sim, b->pre), NB_OK);
        if (pad >= 0)
            pad_journal(b, (uint32_t)pad);
        assert_int_equal(nb_simflash_copy_from(b->snap, b->t->sim), NB_OK);
        for (int torn = 0; torn <= 1; torn++)
            for (unsigned seed = 0; seed < (torn ? 5u : 1u); seed++)
                for (uint64_t k = 0;; k++) {
                    snprintf(b->id, sizeof(b->id),
                             "%s/%s/pad=%d/cut=%u/torn=%d/seed=%u",
                             nb_layout_name(b->kind), ph_name[ph], pad,
                             (unsigned)k, torn, seed);
                    assert_int_equal(
                        nb_simflash_copy_from(b->t->sim, b->snap), NB_OK);
                    nb_simflash_seed(b->t->sim, seed * 131 + k);
                    nb_simflash_cut_at(b->t->sim, k, torn);
                    nb_err err = run_phase(b, ph);
                    if (!nb_simflash_power_lost(b->t->sim)) {
                        CHECK(b, err == NB_OK);
                        nb_simflash_disarm(b->t->sim);
                        break;
                    }
                    CHECK(b, err == NB_ERR_POWER);
                    nb_simflash_power_on(b->t->sim);
                    sweep_cases++;
                    check_after(b, ph);
                }
    }
    assert_int_equal(nb_simflash_copy_from(b->t->sim, b->pre), NB_OK);
    CHECK(b, run_phase(b, ph) == NB_OK);
    snprintf(b->id, sizeof(b->id), "%s", nb_layout_name(b->kind));
}

/* Cut power at every operation of each step of an update cycle. */
static void power_cut_every_step(void **state)
{
    struct bfx *b = bfx_new(state, PROD, 3);
    update(b, &b->v1);
    sweep_phase(b, PH_STAGE);   /* ends with v2 pending */
    sweep_phase(b, PH_TRIAL);   /* ends with v2 on trial */
    sweep_phase(b, PH_CONFIRM); /* ends with v2 confirmed */
    boot_expect(b, &b->v2, NB_SLOT_CONFIRMED, 0);
    /* And the revert: v3 on its last trial boot, then the boot that
     * rejects it. The check above names v1 as "old": rename. */
    struct tl_image v1 = b->v1, v2 = b->v2;
    b->v1 = v2;
    b->v2 = tl_image_make(&b->t->crypto, 8000, tl_ver(3, 0, 0), 3, 33);
    stage(b, &b->v2);
    boot_expect(b, &b->v2, NB_SLOT_TRIAL, 1);
    boot_expect(b, &b->v2, NB_SLOT_TRIAL, 2);
    boot_expect(b, &b->v2, NB_SLOT_TRIAL, 3);
    sweep_phase(b, PH_REVERT);
    if (b->kind == NB_LAYOUT_SINGLE)
        boot_recovery(b);
    else
        boot_expect(b, &b->v1, NB_SLOT_CONFIRMED, 0);
    tl_image_free(&v1);
    print_message("%s: %lu power-cut cases so far\n",
                  nb_layout_name(b->kind), sweep_cases);
    bfx_free(b);
}

/* ---------------------------------------------------------------- main */

static const uint8_t k_ab = NB_LAYOUT_AB, k_swap = NB_LAYOUT_AB_SWAP,
                     k_fac = NB_LAYOUT_AB_FACTORY, k_single = NB_LAYOUT_SINGLE;

#define PER_KIND(fn)                                                        \
    {#fn " ab", fn, NULL, teardown, (void *)&k_ab},                         \
        {#fn " ab-swap", fn, NULL, teardown, (void *)&k_swap},              \
        {#fn " ab-factory", fn, NULL, teardown, (void *)&k_fac},            \
        {#fn " single", fn, NULL, teardown, (void *)&k_single}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(blank_device),
        PER_KIND(update_and_revert),
        PER_KIND(attempt_limit_one),
        PER_KIND(floor_rises_on_confirm_only),
        PER_KIND(rollback_refused_in_production),
        PER_KIND(downgrade_allowed_in_development),
        PER_KIND(lifecycle_one_way),
        PER_KIND(corrupted_confirmed),
        {"previous_below_floor_in_production ab",
         previous_below_floor_in_production, NULL, teardown, (void *)&k_ab},
        PER_KIND(pending_that_fails_verification),
        PER_KIND(install_refused_during_trial),
        PER_KIND(image_larger_than_slot),
        PER_KIND(finish_detects_corruption),
        PER_KIND(factory_target),
        PER_KIND(trial_image_rots),
        PER_KIND(verified_gets_a_trial),
        PER_KIND(many_cycles),
        PER_KIND(power_cut_every_step),
    };
    return cmocka_run_group_tests_name("boot", tests, NULL, NULL);
}
