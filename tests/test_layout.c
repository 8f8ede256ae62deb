/* test_layout.c - planning and checking layouts (ab, ab-swap, ab-factory,
 * single) on uniform 4 KiB sectors, large sectors and mixed sectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "nb_layout.h"
#include "testlib.h"

static const uint8_t kinds[] = {NB_LAYOUT_AB, NB_LAYOUT_AB_SWAP,
                                NB_LAYOUT_AB_FACTORY, NB_LAYOUT_SINGLE};

struct fl {
    struct nb_simflash *sim;
    struct nb_flash f;
};

static struct fl mkflash(const struct nb_simflash_geometry *g)
{
    struct fl x;
    assert_int_equal(nb_simflash_create_mem(&x.sim, g), NB_OK);
    nb_simflash_interface(x.sim, &x.f);
    return x;
}

static int overlaps(const struct nb_area *a, const struct nb_area *b)
{
    return a->off < b->off + b->size && b->off < a->off + a->size;
}

/* What every planned layout must satisfy, independent of where the
 * planner put things. */
static void expect_sane(const struct nb_layout *l, const struct nb_flash *f,
                        uint8_t kind, uint32_t slot_size, uint32_t jmin)
{
    unsigned n = nb_layout_slot_count(kind);
    uint32_t total = nb_flash_size(f);
    struct nb_layout copy = *l;
    assert_int_equal(l->kind, kind);
    assert_int_equal(nb_layout_check(&copy, f), NB_OK);
    assert_int_equal(copy.swap_unit, l->swap_unit);
    assert_int_equal(l->journal.off, 0);
    assert_true(nb_flash_aligned(f, l->journal.off, l->journal.size));
    assert_true(nb_flash_sector_count(f, 0, l->journal.size) >= 2);
    assert_true(l->journal.size >= jmin);
    for (unsigned i = 0; i < n; i++) {
        const struct nb_area *a = &l->slot[i];
        assert_true(a->size > 0);
        assert_true((uint64_t)a->off + a->size <= total);
        assert_true(nb_flash_aligned(f, a->off, a->size));
        assert_false(overlaps(a, &l->journal));
        for (unsigned k = 0; k < i; k++)
            assert_false(overlaps(a, &l->slot[k]));
        assert_true(nb_layout_capacity(l, i) >= slot_size);
    }
    for (unsigned i = n; i < NB_MAX_SLOTS; i++) {
        assert_int_equal(l->slot[i].size, 0);
        assert_int_equal(nb_layout_capacity(l, i), 0);
    }
    if (kind == NB_LAYOUT_AB_SWAP) {
        uint32_t u = l->swap_unit;
        assert_true(u > 0);
        assert_int_equal(l->slot[0].size % u, 0);
        assert_int_equal(l->slot[1].size % u, 0);
        assert_true(l->slot[1].size >= l->slot[0].size + u);
        for (unsigned i = 0; i < 2; i++)
            for (uint32_t o = 0; o < l->slot[i].size; o += u)
                assert_true(nb_flash_aligned(f, l->slot[i].off + o, u));
        assert_int_equal(nb_layout_capacity(l, 0), l->slot[0].size);
        assert_int_equal(nb_layout_capacity(l, 1), l->slot[0].size);
    } else {
        assert_int_equal(l->swap_unit, 0);
        for (unsigned i = 0; i < n; i++)
            assert_int_equal(nb_layout_capacity(l, i), l->slot[i].size);
    }
}

static void slot_counts(void **state)
{
    (void)state;
    assert_int_equal(nb_layout_slot_count(NB_LAYOUT_AB), 2);
    assert_int_equal(nb_layout_slot_count(NB_LAYOUT_AB_SWAP), 2);
    assert_int_equal(nb_layout_slot_count(NB_LAYOUT_AB_FACTORY), 3);
    assert_int_equal(nb_layout_slot_count(NB_LAYOUT_SINGLE), 1);
    assert_int_equal(nb_layout_slot_count(0), 0);
    assert_int_equal(nb_layout_slot_count(5), 0);
}

static void plan_uniform_4k(void **state)
{
    (void)state;
    struct nb_simflash_geometry g = tl_geo(8, 0xFF, 64, 4096);
    struct fl x = mkflash(&g);
    struct nb_layout l;

    assert_int_equal(nb_layout_plan(&l, &x.f, NB_LAYOUT_AB, 32768, 0), NB_OK);
    expect_sane(&l, &x.f, NB_LAYOUT_AB, 32768, 0);
    assert_int_equal(l.journal.size, 8192);
    assert_int_equal(l.slot[0].off, 8192);
    assert_int_equal(l.slot[0].size, 32768);
    assert_int_equal(l.slot[1].off, 40960);
    assert_int_equal(l.slot[1].size, 32768);

    assert_int_equal(nb_layout_plan(&l, &x.f, NB_LAYOUT_AB_FACTORY, 32768, 0),
                     NB_OK);
    expect_sane(&l, &x.f, NB_LAYOUT_AB_FACTORY, 32768, 0);
    assert_int_equal(l.slot[2].off, 73728);
    assert_int_equal(l.slot[2].size, 32768);

    assert_int_equal(nb_layout_plan(&l, &x.f, NB_LAYOUT_SINGLE, 32768, 0),
                     NB_OK);
    expect_sane(&l, &x.f, NB_LAYOUT_SINGLE, 32768, 0);
    assert_int_equal(l.slot[0].off, 8192);
    assert_int_equal(l.slot[0].size, 32768);

    assert_int_equal(nb_layout_plan(&l, &x.f, NB_LAYOUT_AB_SWAP, 32768, 0),
                     NB_OK);
    expect_sane(&l, &x.f, NB_LAYOUT_AB_SWAP, 32768, 0);
    assert_int_equal(l.swap_unit, 4096);
    assert_int_equal(l.slot[0].off, 8192);
    assert_int_equal(l.slot[0].size, 32768);
    assert_int_equal(l.slot[1].off, 40960);
    assert_int_equal(l.slot[1].size, 32768 + 4096);
    assert_int_equal(nb_layout_capacity(&l, 1), 32768);

    /* Sizes round up to whole sectors; journal_min grows the journal. */
    for (unsigned k = 0; k < 4; k++) {
        assert_int_equal(nb_layout_plan(&l, &x.f, kinds[k], 10000, 20000),
                         NB_OK);
        expect_sane(&l, &x.f, kinds[k], 10000, 20000);
        assert_int_equal(l.journal.size, 20480);
        assert_int_equal(l.slot[0].off, 20480);
        assert_int_equal(l.slot[0].size, 12288);
    }
    /* Too big, bad arguments. */
    assert_int_equal(nb_layout_plan(&l, &x.f, NB_LAYOUT_AB, 200000, 0),
                     NB_ERR_NOSPC);
    assert_int_equal(nb_layout_plan(&l, &x.f, NB_LAYOUT_AB_SWAP, 130000, 0),
                     NB_ERR_NOSPC);
    assert_int_equal(nb_layout_plan(&l, &x.f, NB_LAYOUT_SINGLE, 4096, 300000),
                     NB_ERR_NOSPC);
    assert_int_equal(nb_layout_plan(&l, &x.f, NB_LAYOUT_AB, 0, 0),
                     NB_ERR_INVAL);
    assert_int_equal(nb_layout_plan(&l, &x.f, 0, 4096, 0), NB_ERR_INVAL);
    assert_int_equal(nb_layout_plan(&l, &x.f, 9, 4096, 0), NB_ERR_INVAL);
    /* Exactly full. */
    assert_int_equal(nb_layout_plan(&l, &x.f, NB_LAYOUT_SINGLE,
                                    62 * 4096, 0),
                     NB_OK);
    expect_sane(&l, &x.f, NB_LAYOUT_SINGLE, 62 * 4096, 0);
    nb_simflash_close(x.sim);
}

static void plan_large_sectors(void **state)
{
    (void)state;
    struct nb_simflash_geometry g = tl_geo(32, 0x00, 8, 131072);
    struct fl x = mkflash(&g);
    struct nb_layout l;
    for (unsigned k = 0; k < 4; k++) {
        assert_int_equal(nb_layout_plan(&l, &x.f, kinds[k], 100000, 0),
                         NB_OK);
        expect_sane(&l, &x.f, kinds[k], 100000, 0);
        assert_int_equal(l.journal.size, 2 * 131072);
    }
    assert_int_equal(nb_layout_plan(&l, &x.f, NB_LAYOUT_AB_SWAP, 100000, 0),
                     NB_OK);
    assert_int_equal(l.swap_unit, 131072);
    assert_int_equal(l.slot[1].size, 2 * 131072);
    nb_simflash_close(x.sim);
}

static struct nb_simflash_geometry mixed_geo(void)
{
    struct nb_simflash_geometry g = tl_geo(8, 0xFF, 4, 4096);
    tl_geo_add(&g, 2, 16384);
    tl_geo_add(&g, 3, 65536);
    return g;
}

static void plan_mixed(void **state)
{
    (void)state;
    struct nb_simflash_geometry g = mixed_geo();
    struct fl x = mkflash(&g);
    struct nb_layout l;
    static const uint32_t sizes[] = {4096, 8192, 12288, 16384, 65536};
    static const uint32_t jmins[] = {0, 16384, 49152};
    for (unsigned k = 0; k < 4; k++)
        for (unsigned s = 0; s < 5; s++)
            for (unsigned j = 0; j < 3; j++) {
                nb_err err = nb_layout_plan(&l, &x.f, kinds[k], sizes[s],
                                            jmins[j]);
                if (err != NB_OK)
                    fail_msg("%s slot %u jmin %u: %s",
                             nb_layout_name(kinds[k]), sizes[s], jmins[j],
                             nb_err_name(err));
                expect_sane(&l, &x.f, kinds[k], sizes[s], jmins[j]);
            }
    /* The journal of two 4 KiB sectors, slots after it. */
    assert_int_equal(nb_layout_plan(&l, &x.f, NB_LAYOUT_AB, 8192, 0), NB_OK);
    assert_int_equal(l.journal.size, 8192);
    assert_int_equal(l.slot[0].off, 8192);
    assert_int_equal(l.slot[0].size, 8192);
    assert_int_equal(l.slot[1].off, 16384);
    assert_int_equal(l.slot[1].size, 16384);
    /* Swap needs equal units: here the 64 KiB sectors. */
    assert_int_equal(nb_layout_plan(&l, &x.f, NB_LAYOUT_AB_SWAP, 8192, 0),
                     NB_OK);
    assert_int_equal(l.swap_unit, 65536);
    /* Too big for what is left. */
    assert_int_equal(nb_layout_plan(&l, &x.f, NB_LAYOUT_AB_SWAP, 65537, 0),
                     NB_ERR_NOSPC);
    assert_int_equal(nb_layout_plan(&l, &x.f, NB_LAYOUT_AB_FACTORY, 131072, 0),
                     NB_ERR_NOSPC);

    /* A mixed part where swap can use 16 KiB units. */
    struct nb_simflash_geometry g2 = tl_geo(8, 0xFF, 4, 4096);
    tl_geo_add(&g2, 6, 16384);
    struct fl y = mkflash(&g2);
    assert_int_equal(nb_layout_plan(&l, &y.f, NB_LAYOUT_AB_SWAP, 32768, 0),
                     NB_OK);
    expect_sane(&l, &y.f, NB_LAYOUT_AB_SWAP, 32768, 0);
    assert_int_equal(l.swap_unit, 16384);
    assert_int_equal(l.slot[0].size, 32768);
    assert_int_equal(l.slot[1].size, 49152);
    nb_simflash_close(y.sim);
    nb_simflash_close(x.sim);
}

/* A valid layout to break in one way at a time. */
static struct nb_layout base(uint8_t kind)
{
    struct nb_layout l;
    memset(&l, 0, sizeof(l));
    l.kind = kind;
    l.journal = (struct nb_area){0, 8192};
    l.slot[0] = (struct nb_area){8192, 16384};
    l.slot[1] = (struct nb_area){24576, kind == NB_LAYOUT_AB_SWAP ? 20480
                                                                 : 16384};
    if (kind == NB_LAYOUT_AB_FACTORY)
        l.slot[2] = (struct nb_area){49152, 16384};
    if (kind == NB_LAYOUT_SINGLE)
        l.slot[1] = (struct nb_area){0, 0};
    return l;
}

static void check_rejects(void **state)
{
    (void)state;
    struct nb_simflash_geometry g = tl_geo(8, 0xFF, 32, 4096);
    struct fl x = mkflash(&g);
    struct nb_layout l;
    for (unsigned k = 0; k < 4; k++) {
        l = base(kinds[k]);
        assert_int_equal(nb_layout_check(&l, &x.f), NB_OK);
        assert_int_equal(l.swap_unit,
                         kinds[k] == NB_LAYOUT_AB_SWAP ? 4096u : 0u);
        /* one-sector journal, empty journal */
        l = base(kinds[k]), l.journal.size = 4096;
        assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
        l = base(kinds[k]), l.journal.size = 0;
        assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
        /* misaligned journal and slot */
        l = base(kinds[k]), l.journal.size = 6000;
        assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
        l = base(kinds[k]), l.slot[0].off += 512;
        assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
        l = base(kinds[k]), l.slot[0].size -= 512;
        assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
        /* slot overlapping the journal */
        l = base(kinds[k]), l.slot[0].off = 4096;
        assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
        /* empty slot, slot past the end */
        l = base(kinds[k]), l.slot[0].size = 0;
        assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
        l = base(kinds[k]), l.slot[0].off = 31 * 4096, l.slot[0].size = 8192;
        assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
        l = base(kinds[k]), l.slot[0].off = 32 * 4096;
        assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
    }
    /* slots overlapping each other */
    l = base(NB_LAYOUT_AB), l.slot[1].off = 20480;
    assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
    l = base(NB_LAYOUT_AB), l.slot[1] = l.slot[0];
    assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
    l = base(NB_LAYOUT_AB_FACTORY), l.slot[2].off = 36864;
    assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
    l = base(NB_LAYOUT_AB_FACTORY), l.slot[2] = (struct nb_area){4096, 8192};
    assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
    /* a slot the kind does not have */
    l = base(NB_LAYOUT_AB), l.slot[2] = (struct nb_area){49152, 16384};
    assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
    l = base(NB_LAYOUT_SINGLE), l.slot[1] = (struct nb_area){24576, 16384};
    assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
    /* unknown kind */
    l = base(NB_LAYOUT_AB), l.kind = 0;
    assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
    l = base(NB_LAYOUT_AB), l.kind = 7;
    assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
    /* swap: B without its spare unit */
    l = base(NB_LAYOUT_AB_SWAP), l.slot[1].size = 16384;
    assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
    l = base(NB_LAYOUT_AB_SWAP), l.slot[1].size = 12288;
    assert_int_equal(nb_layout_check(&l, &x.f), NB_ERR_INVAL);
    nb_simflash_close(x.sim);

    /* swap on mixed sectors: A of 4 KiB sectors, B with a 16 KiB one: the
     * unit is 16 KiB and A is not made of whole units. */
    struct nb_simflash_geometry g2 = tl_geo(8, 0xFF, 8, 4096);
    tl_geo_add(&g2, 4, 16384);
    struct fl y = mkflash(&g2);
    memset(&l, 0, sizeof(l));
    l.kind = NB_LAYOUT_AB_SWAP;
    l.journal = (struct nb_area){0, 8192};
    l.slot[0] = (struct nb_area){16384, 16384}; /* 4 x 4 KiB */
    l.slot[1] = (struct nb_area){32768, 32768}; /* 2 x 16 KiB */
    assert_int_equal(nb_layout_check(&l, &y.f), NB_OK);
    assert_int_equal(l.swap_unit, 16384);
    l.slot[0] = (struct nb_area){20480, 12288}; /* 3 x 4 KiB */
    assert_int_equal(nb_layout_check(&l, &y.f), NB_ERR_INVAL);
    l.slot[0] = (struct nb_area){16384, 16384};
    l.slot[1] = (struct nb_area){32768, 16384}; /* no spare unit */
    assert_int_equal(nb_layout_check(&l, &y.f), NB_ERR_INVAL);
    /* A journal spanning two sectors of different sizes is fine. */
    memset(&l, 0, sizeof(l));
    l.kind = NB_LAYOUT_SINGLE;
    l.journal = (struct nb_area){28672, 4096 + 16384};
    l.slot[0] = (struct nb_area){0, 28672};
    assert_int_equal(nb_layout_check(&l, &y.f), NB_OK);
    nb_simflash_close(y.sim);
}

static void capacity(void **state)
{
    (void)state;
    struct nb_layout l = base(NB_LAYOUT_AB_FACTORY);
    assert_int_equal(nb_layout_capacity(&l, 0), 16384);
    assert_int_equal(nb_layout_capacity(&l, 2), 16384);
    assert_int_equal(nb_layout_capacity(&l, 3), 0);
    l = base(NB_LAYOUT_AB_SWAP);
    assert_int_equal(nb_layout_capacity(&l, 0), 16384);
    assert_int_equal(nb_layout_capacity(&l, 1), 16384);
    assert_int_equal(nb_layout_capacity(&l, 2), 0);
    l = base(NB_LAYOUT_SINGLE);
    assert_int_equal(nb_layout_capacity(&l, 0), 16384);
    assert_int_equal(nb_layout_capacity(&l, 1), 0);
    l.kind = 0;
    assert_int_equal(nb_layout_capacity(&l, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(slot_counts),
        cmocka_unit_test(plan_uniform_4k),
        cmocka_unit_test(plan_large_sectors),
        cmocka_unit_test(plan_mixed),
        cmocka_unit_test(check_rejects),
        cmocka_unit_test(capacity),
    };
    return cmocka_run_group_tests_name("layout", tests, NULL, NULL);
}
