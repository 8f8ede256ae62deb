/* test_boot_sweep.c - power cuts at every flash operation of a full
 * update cycle, for every layout (ab, ab-swap, ab-factory, single): the
 * stage, the first trial boot, the confirmation and the boot that
 * rejects a trial and reverts, each clean and torn (several seeds) and
 * with the journal padded so that each of the phase's first records
 * compacts it. After every cut the device must boot the old or the new
 * image, bit-exact and in an allowed state, and a trial that never
 * confirms must give the old image back (single slot: recovery).
 *
 * Fixture: bootfix.h (32 x 4 KiB sectors, 8-byte writes, 16 KiB slots,
 * signed test packages). A failure names its case as
 * "layout/phase/pad/cut/torn/seed".
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
    b->v2 = tl_image_make(b->t, 8000, tl_ver(3, 0, 0), 3, 33);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        PER_KIND(power_cut_every_step),
    };
    return cmocka_run_group_tests_name("boot_sweep", tests, NULL, NULL);
}
