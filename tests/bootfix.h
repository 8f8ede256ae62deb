/* bootfix.h - the fixture of the device tests (test_boot.c and
 * test_boot_sweep.c): a simulated device of one layout (from the cmocka
 * state), three signed test packages, and the boot/stage/confirm steps
 * with checks that name the failing case ("layout/phase/...").
 *
 * Device: 32 x 4 KiB sectors, 8-byte writes, slots of 16 KiB, signed
 * test packages (testlib.h) of about 10 and 12 KiB. Header only; include
 * after testlib.h.
 */
#ifndef NB_BOOTFIX_H
#define NB_BOOTFIX_H

#include <stdio.h>
#include <string.h>

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

static inline struct bfx *bfx_new(void **state, uint8_t lifecycle,
                                  uint8_t limit)
{
    struct bfx *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    b->kind = *(const uint8_t *)*state;
    struct nb_simflash_geometry g = tl_geo(8, 0xFF, 32, 4096);
    b->t = tl_dev_new(&g, b->kind, SLOT, 0);
    assert_int_equal(nb_simflash_create_mem(&b->snap, &g), NB_OK);
    assert_int_equal(nb_simflash_create_mem(&b->pre, &g), NB_OK);
    b->v1 = tl_image_make(b->t, 9000, tl_ver(1, 0, 0), 1, 101);
    b->v2 = tl_image_make(b->t, 11000, tl_ver(2, 0, 0), 2, 202);
    b->fac = tl_image_make(b->t, 7000, tl_ver(0, 9, 0), 0, 303);
    snprintf(b->id, sizeof(b->id), "%s", nb_layout_name(b->kind));
    tl_provision(b->t, lifecycle, limit);
    live = b;
    return b;
}

static inline void bfx_release(struct bfx *b)
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

static inline void bfx_free(struct bfx *b)
{
    uint64_t v = tl_violations(b->t);
    bfx_release(b);
    assert_int_equal(v, 0);
}

/* Frees the fixture when a failed check left the test early. */
static inline int teardown(void **state)
{
    (void)state;
    if (live)
        bfx_release(live);
    return 0;
}

static inline struct nb_state *st_of(struct bfx *b)
{
    return &b->t->dev.state;
}
static inline int two_slot_ab(const struct bfx *b)
{
    return b->kind == NB_LAYOUT_AB || b->kind == NB_LAYOUT_AB_FACTORY;
}

/* The booted image is `im`, bit-exact at res->addr, in `state`. */
static inline void expect_boot(struct bfx *b, const struct nb_boot_result *r,
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

static inline struct nb_boot_result boot(struct bfx *b)
{
    struct nb_boot_result r;
    nb_err err = tl_boot(b->t, &r);
    if (err)
        fail_msg("case %s: boot: %s", b->id, nb_err_name(err));
    return r;
}

static inline void boot_expect(struct bfx *b, const struct tl_image *im,
                               uint8_t state, uint8_t attempts)
{
    struct nb_boot_result r = boot(b);
    expect_boot(b, &r, im, state, attempts);
}

static inline void boot_recovery(struct bfx *b)
{
    struct nb_boot_result r = boot(b);
    CHECK(b, r.outcome == NB_BOOT_RECOVERY);
}

static inline void stage(struct bfx *b, const struct tl_image *im)
{
    nb_err err = tl_stage(b->t, im);
    if (err)
        fail_msg("case %s: stage: %s", b->id, nb_err_name(err));
}

static inline void confirm(struct bfx *b)
{
    CHECK(b, tl_open(b->t) == NB_OK && nb_confirm(&b->t->dev) == NB_OK);
}

/* Stage, trial boot, confirm, confirmed boot. */
static inline void update(struct bfx *b, const struct tl_image *im)
{
    stage(b, im);
    boot_expect(b, im, NB_SLOT_TRIAL, 1);
    confirm(b);
    boot_expect(b, im, NB_SLOT_CONFIRMED, 0);
}

static inline int find_slot(struct bfx *b, uint8_t state)
{
    for (unsigned i = 0; i < nb_layout_slot_count(b->kind); i++)
        if (st_of(b)->slot[i].state == state)
            return (int)i;
    return -1;
}

/* Flip one bit of the package in slot i (its payload, past the signed
 * manifest). */
static inline void rot_slot(struct bfx *b, unsigned i)
{
    uint32_t a = nb_device_image_addr(&b->t->dev, i);
    a += tl_payload_offset(b->t, a) + 77;
    assert_int_equal(nb_simflash_flip_bit(b->t->sim, a, 5), NB_OK);
}

/* nb_install_begin with the manifest of `im`. */
static inline nb_err begin(struct bfx *b, struct nb_install *in,
                           const struct tl_image *im, uint8_t target)
{
    return nb_install_begin(in, &b->t->dev, im->data + NB_PKG_HDR_SIZE,
                            im->mlen, target);
}

/* The layouts every PER_KIND case runs on (the cmocka state). */
static const uint8_t k_ab = NB_LAYOUT_AB, k_swap = NB_LAYOUT_AB_SWAP,
                     k_fac = NB_LAYOUT_AB_FACTORY, k_single = NB_LAYOUT_SINGLE;

#define PER_KIND(fn)                                                        \
    {#fn " ab", fn, NULL, teardown, (void *)&k_ab},                         \
        {#fn " ab-swap", fn, NULL, teardown, (void *)&k_swap},              \
        {#fn " ab-factory", fn, NULL, teardown, (void *)&k_fac},            \
        {#fn " single", fn, NULL, teardown, (void *)&k_single}

#endif
