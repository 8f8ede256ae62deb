/* test_boot.c - the device: provisioning, install, the boot decision,
 * trial and attempt limit, confirmation, anti-rollback and lifecycle,
 * corrupted images, bad installs; each for every layout (ab, ab-swap,
 * ab-factory, single) unless the case exists for one layout only. The
 * power cuts at every operation of an update cycle are in
 * test_boot_sweep.c; the fixture is bootfix.h.
 *
 * Device: 32 x 4 KiB sectors, 8-byte writes, slots of 16 KiB, signed
 * test packages (testlib.h) of about 10 and 12 KiB. Every test ends with
 * no strict-NOR violation. A failure names its case ("layout/...").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testlib.h"
#include "bootfix.h"

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
    struct tl_image hi = tl_image_make(b->t, 5000, 0x03000000, 5, 1);
    struct tl_image lo = tl_image_make(b->t, 5000, 0x04000000, 4, 2);
    struct nb_install in;
    update(b, &hi);
    CHECK(b, st_of(b)->floor == 5);
    CHECK(b, tl_open(b->t) == NB_OK);
    uint8_t *snap = tl_snapshot(b->t);
    uint64_t ops = tl_ops(b->t);
    CHECK(b, begin(b, &in, &lo, NB_TARGET_UPDATE) == NB_ERR_ROLLBACK);
    CHECK(b, tl_same(b->t, snap) && tl_ops(b->t) == ops);
    CHECK(b, tl_open(b->t) == NB_OK &&
                 nb_install_set_pending(&b->t->dev) == NB_ERR_STATE);
    boot_expect(b, &hi, NB_SLOT_CONFIRMED, 0);
    free(snap);
    /* The same security version is fine. */
    struct tl_image same = tl_image_make(b->t, 6000, 0x03000001, 5, 3);
    update(b, &same);
    tl_image_free(&same);
    tl_image_free(&hi);
    tl_image_free(&lo);
    bfx_free(b);
}

static void downgrade_allowed_in_development(void **state)
{
    struct bfx *b = bfx_new(state, DEV, 3);
    struct tl_image hi = tl_image_make(b->t, 5000, 0x03000000, 5, 1);
    struct tl_image lo = tl_image_make(b->t, 5000, 0x02000000, 3, 2);
    struct nb_install in;
    update(b, &hi);
    CHECK(b, tl_open(b->t) == NB_OK);
    CHECK(b, begin(b, &in, &lo, NB_TARGET_UPDATE) ==
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
                 begin(b, &in, &lo, NB_TARGET_UPDATE) == NB_ERR_ROLLBACK);
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
    struct tl_image v3 = tl_image_make(b->t, 3000, 0x03000000, 3, 9);
    struct nb_install in;
    update(b, &b->v1);
    stage(b, &b->v2);
    for (uint8_t a = 1; a <= 2; a++) {
        boot_expect(b, &b->v2, NB_SLOT_TRIAL, a);
        CHECK(b, tl_open(b->t) == NB_OK);
        uint8_t *snap = tl_snapshot(b->t);
        CHECK(b, begin(b, &in, &v3, NB_TARGET_UPDATE) == NB_ERR_STATE);
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
    struct tl_image big = tl_image_sized(b->t, cap + 1, 7, 1, 5);
    struct tl_image fit = tl_image_sized(b->t, cap, 8, 1, 6);
    CHECK(b, tl_open(b->t) == NB_OK);
    uint8_t *snap = tl_snapshot(b->t);
    CHECK(b, begin(b, &in, &big, NB_TARGET_UPDATE) == NB_ERR_NOSPC);
    CHECK(b, tl_same(b->t, snap));
    free(snap);
    /* Exactly the capacity fits, and boots. */
    update(b, &fit);
    update(b, &b->v1);
    tl_image_free(&big);
    tl_image_free(&fit);
    bfx_free(b);
}

/* What the installer finds, each leaving the slot RECEIVING (never
 * booted) and the confirmed image in charge: a payload bit rotting on
 * flash after it was written (finish: NB_ERR_DIGEST), the manifest
 * rotting on flash (finish: refused), a block that arrives wrong
 * (write: NB_ERR_DIGEST, never written). */
static void finish_detects_corruption(void **state)
{
    struct bfx *b = bfx_new(state, DEV, 3);
    struct nb_install in;
    update(b, &b->v1);
    for (int how = 0; how < 3; how++) {
        struct tl_image im = tl_image_make(b->t, 11000, tl_ver(2, 0, 0), 2,
                                           202);
        const uint8_t *payload = im.data + im.poff;
        nb_err want = NB_ERR_DIGEST;
        CHECK(b, tl_open(b->t) == NB_OK);
        CHECK(b, begin(b, &in, &im, NB_TARGET_UPDATE) == NB_OK);
        if (how == 2) {
            /* The second block arrives with one bit wrong. */
            uint8_t *bad = malloc(im.psize);
            assert_non_null(bad);
            memcpy(bad, payload, im.psize);
            bad[4096 + 1234] ^= 0x40;
            CHECK(b, nb_install_write(&in, bad, im.psize) == NB_ERR_DIGEST);
            CHECK(b, nb_install_offset(&in) == 4096);
            free(bad);
            CHECK(b, nb_install_finish(&in) == NB_ERR_STATE);
        } else {
            CHECK(b, nb_install_write(&in, payload, im.psize) == NB_OK);
            CHECK(b, nb_install_write(&in, payload, 1) == NB_ERR_RANGE);
            uint32_t at = how == 0 ? im.poff + 100 : NB_PKG_HDR_SIZE + 40;
            assert_int_equal(nb_simflash_flip_bit(b->t->sim, in.base + at,
                                                  2),
                             NB_OK);
            nb_err err = nb_install_finish(&in);
            if (how == 0)
                CHECK(b, err == want);
            else
                CHECK(b, err != NB_OK);
        }
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
    CHECK(b, begin(b, &in, &b->v2, NB_TARGET_UPDATE) == NB_OK);
    CHECK(b, nb_install_write(&in, b->v2.data + b->v2.poff, 5000) == NB_OK);
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
        CHECK(b, begin(b, &in, &b->fac, NB_TARGET_FACTORY) == NB_ERR_DENIED);
        bfx_free(b);
        return;
    }
    CHECK(b, begin(b, &in, &b->fac, 7) ==
                 NB_ERR_INVAL);
    CHECK(b, tl_install(b->t, &b->fac, NB_TARGET_FACTORY) == NB_OK);
    struct nb_boot_result r = boot(b);
    expect_boot(b, &r, &b->fac, NB_SLOT_CONFIRMED, 0);
    CHECK(b, r.slot == 2 && r.addr == b->t->cfg.layout.slot[2].off);
    CHECK(b, st_of(b)->floor == 0);
    /* Written once. */
    CHECK(b, begin(b, &in, &b->v1, NB_TARGET_FACTORY) == NB_ERR_DENIED);
    /* Updates never go to the factory slot. */
    update(b, &b->v1);
    update(b, &b->v2);
    struct tl_image v3 = tl_image_make(b->t, 3000, 0x03000000, 3, 9);
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
    struct tl_image good = tl_image_make(b->t, 3000, 0x10000, 1, 99);
    update(b, &good);
    for (uint32_t c = 0; c < 24; c++) {
        snprintf(b->id, sizeof(b->id), "%s/cycle=%u",
                 nb_layout_name(b->kind), c);
        struct tl_image n = tl_image_make(b->t, 4000 + 300 * c,
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

/* ---------------------------------------------------------------- main */

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
    };
    return cmocka_run_group_tests_name("boot", tests, NULL, NULL);
}

