/* test_flash.c - the flash helpers of core/flash.c: the struct check,
 * geometry (uniform and mixed sectors), erase_range, copy, is_erased. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "nb_flash.h"
#include "testlib.h"

/* ------------------------------------------------------ nb_flash_check */

static nb_err dummy_read(void *c, uint32_t a, void *b, uint32_t n)
{
    (void)c, (void)a, (void)b, (void)n;
    return NB_OK;
}
static nb_err dummy_prog(void *c, uint32_t a, const void *b, uint32_t n)
{
    (void)c, (void)a, (void)b, (void)n;
    return NB_OK;
}
static nb_err dummy_erase(void *c, uint32_t a)
{
    (void)c, (void)a;
    return NB_OK;
}

static struct nb_flash good_flash(void)
{
    struct nb_flash f;
    memset(&f, 0, sizeof(f));
    f.read = dummy_read;
    f.prog = dummy_prog;
    f.erase = dummy_erase;
    f.write_size = 8;
    f.erase_value = 0xFF;
    f.region_count = 1;
    f.regions[0].count = 16;
    f.regions[0].size = 4096;
    return f;
}

static void check_accepts_good(void **state)
{
    (void)state;
    static const uint32_t ws[] = {1, 2, 4, 8, 16, 32};
    for (unsigned i = 0; i < 6; i++) {
        struct nb_flash f = good_flash();
        f.write_size = ws[i];
        assert_int_equal(nb_flash_check(&f), NB_OK);
        f.erase_value = 0x00;
        assert_int_equal(nb_flash_check(&f), NB_OK);
    }
    struct nb_flash f = good_flash();
    f.region_count = 3;
    f.regions[0] = (struct nb_flash_region){4, 4096};
    f.regions[1] = (struct nb_flash_region){2, 16384};
    f.regions[2] = (struct nb_flash_region){3, 65536};
    assert_int_equal(nb_flash_check(&f), NB_OK);
}

static void check_rejects_bad(void **state)
{
    (void)state;
    struct nb_flash f;
    assert_int_equal(nb_flash_check(NULL), NB_ERR_INVAL);
    f = good_flash(), f.read = NULL;
    assert_int_equal(nb_flash_check(&f), NB_ERR_INVAL);
    f = good_flash(), f.prog = NULL;
    assert_int_equal(nb_flash_check(&f), NB_ERR_INVAL);
    f = good_flash(), f.erase = NULL;
    assert_int_equal(nb_flash_check(&f), NB_ERR_INVAL);
    static const uint32_t bad_ws[] = {0, 3, 6, 12, 64, 128};
    for (unsigned i = 0; i < 6; i++) {
        f = good_flash(), f.write_size = bad_ws[i];
        assert_int_equal(nb_flash_check(&f), NB_ERR_INVAL);
    }
    f = good_flash(), f.erase_value = 0x7F;
    assert_int_equal(nb_flash_check(&f), NB_ERR_INVAL);
    f = good_flash(), f.erase_value = 0xFE;
    assert_int_equal(nb_flash_check(&f), NB_ERR_INVAL);
    f = good_flash(), f.region_count = 0;
    assert_int_equal(nb_flash_check(&f), NB_ERR_INVAL);
    f = good_flash(), f.region_count = NB_FLASH_MAX_REGIONS + 1;
    assert_int_equal(nb_flash_check(&f), NB_ERR_INVAL);
    f = good_flash(), f.regions[0].count = 0;
    assert_int_equal(nb_flash_check(&f), NB_ERR_INVAL);
    f = good_flash(), f.regions[0].size = 0;
    assert_int_equal(nb_flash_check(&f), NB_ERR_INVAL);
    /* Sector not a multiple of the write size. */
    f = good_flash(), f.write_size = 8, f.regions[0].size = 4100;
    assert_int_equal(nb_flash_check(&f), NB_ERR_INVAL);
    f = good_flash(), f.write_size = 32, f.regions[0].size = 48;
    assert_int_equal(nb_flash_check(&f), NB_ERR_INVAL);
    f = good_flash(), f.region_count = 2;
    f.regions[1] = (struct nb_flash_region){1, 1004};
    assert_int_equal(nb_flash_check(&f), NB_ERR_INVAL);
    /* Past 4 GiB. */
    f = good_flash(), f.regions[0] = (struct nb_flash_region){65536, 65536};
    assert_int_equal(nb_flash_check(&f), NB_ERR_INVAL);
}

/* ------------------------------------------------------------ geometry */

static struct nb_flash mixed_flash(void)
{
    struct nb_flash f = good_flash();
    f.region_count = 3;
    f.regions[0] = (struct nb_flash_region){4, 4096};
    f.regions[1] = (struct nb_flash_region){2, 16384};
    f.regions[2] = (struct nb_flash_region){3, 65536};
    return f;
}

#define MIXED_SIZE (4u * 4096 + 2u * 16384 + 3u * 65536)

static void expect_sector(const struct nb_flash *f, uint32_t addr,
                          uint32_t start, uint32_t size)
{
    uint32_t s = 0xDEAD, z = 0xBEEF;
    assert_int_equal(nb_flash_sector(f, addr, &s, &z), NB_OK);
    assert_int_equal(s, start);
    assert_int_equal(z, size);
}

static void geometry_uniform(void **state)
{
    (void)state;
    struct nb_flash f = good_flash(); /* 16 x 4096 */
    uint32_t s, z;
    assert_int_equal(nb_flash_size(&f), 65536u);
    expect_sector(&f, 0, 0, 4096);
    expect_sector(&f, 4095, 0, 4096);
    expect_sector(&f, 4096, 4096, 4096);
    expect_sector(&f, 65535, 61440, 4096);
    assert_int_equal(nb_flash_sector(&f, 65536, &s, &z), NB_ERR_RANGE);
    assert_int_equal(nb_flash_sector(&f, 0xFFFFFFFFu, &s, &z), NB_ERR_RANGE);

    assert_int_equal(nb_flash_max_sector(&f, 0, 65536), 4096u);
    assert_int_equal(nb_flash_max_sector(&f, 100, 1), 4096u);
    assert_int_equal(nb_flash_max_sector(&f, 0, 0), 0u);
    assert_int_equal(nb_flash_max_sector(&f, 0, 65537), 0u);
    assert_int_equal(nb_flash_max_sector(&f, 65536, 1), 0u);

    assert_int_equal(nb_flash_sector_count(&f, 0, 65536), 16u);
    assert_int_equal(nb_flash_sector_count(&f, 0, 1), 1u);
    assert_int_equal(nb_flash_sector_count(&f, 4095, 2), 2u);
    assert_int_equal(nb_flash_sector_count(&f, 4096, 4096), 1u);
    assert_int_equal(nb_flash_sector_count(&f, 4096, 4097), 2u);
    assert_int_equal(nb_flash_sector_count(&f, 0, 0), 0u);
    assert_int_equal(nb_flash_sector_count(&f, 61440, 4097), 0u);

    assert_true(nb_flash_aligned(&f, 0, 4096));
    assert_true(nb_flash_aligned(&f, 0, 65536));
    assert_true(nb_flash_aligned(&f, 8192, 12288));
    assert_false(nb_flash_aligned(&f, 0, 4095));
    assert_false(nb_flash_aligned(&f, 1, 4096));
    assert_false(nb_flash_aligned(&f, 4096, 6000));
    assert_false(nb_flash_aligned(&f, 61440, 8192));
}

static void geometry_mixed(void **state)
{
    (void)state;
    struct nb_flash f = mixed_flash();
    uint32_t s, z;
    assert_int_equal(nb_flash_check(&f), NB_OK);
    assert_int_equal(nb_flash_size(&f), MIXED_SIZE);
    expect_sector(&f, 0, 0, 4096);
    expect_sector(&f, 12288, 12288, 4096);
    expect_sector(&f, 16383, 12288, 4096);
    expect_sector(&f, 16384, 16384, 16384);
    expect_sector(&f, 32767, 16384, 16384);
    expect_sector(&f, 32768, 32768, 16384);
    expect_sector(&f, 49151, 32768, 16384);
    expect_sector(&f, 49152, 49152, 65536);
    expect_sector(&f, 114688, 114688, 65536);
    expect_sector(&f, MIXED_SIZE - 1, 180224, 65536);
    assert_int_equal(nb_flash_sector(&f, MIXED_SIZE, &s, &z), NB_ERR_RANGE);

    assert_int_equal(nb_flash_max_sector(&f, 0, 16384), 4096u);
    assert_int_equal(nb_flash_max_sector(&f, 0, 16385), 16384u);
    assert_int_equal(nb_flash_max_sector(&f, 16384, 32768), 16384u);
    assert_int_equal(nb_flash_max_sector(&f, 40000, 10000), 65536u);
    assert_int_equal(nb_flash_max_sector(&f, 0, MIXED_SIZE), 65536u);
    assert_int_equal(nb_flash_max_sector(&f, 12000, 500), 4096u);
    assert_int_equal(nb_flash_max_sector(&f, 0, MIXED_SIZE + 1), 0u);

    assert_int_equal(nb_flash_sector_count(&f, 0, MIXED_SIZE), 9u);
    assert_int_equal(nb_flash_sector_count(&f, 0, 16384), 4u);
    assert_int_equal(nb_flash_sector_count(&f, 8192, 16384), 3u);
    assert_int_equal(nb_flash_sector_count(&f, 16383, 2), 2u);
    assert_int_equal(nb_flash_sector_count(&f, 49151, 65537), 2u);
    assert_int_equal(nb_flash_sector_count(&f, 49151, 65538), 3u);
    assert_int_equal(nb_flash_sector_count(&f, 180224, 65537), 0u);

    assert_true(nb_flash_aligned(&f, 0, 16384));
    assert_true(nb_flash_aligned(&f, 12288, 4096 + 16384));
    assert_true(nb_flash_aligned(&f, 16384, 32768));
    assert_true(nb_flash_aligned(&f, 49152, 3 * 65536));
    assert_true(nb_flash_aligned(&f, 0, MIXED_SIZE));
    assert_false(nb_flash_aligned(&f, 16384, 8192));
    assert_false(nb_flash_aligned(&f, 8192, 16384));
    assert_false(nb_flash_aligned(&f, 20480, 4096));
    assert_false(nb_flash_aligned(&f, 49152, 4096));
    assert_false(nb_flash_aligned(&f, 49152, 3 * 65536 + 1));
}

/* ------------------------------------------- erase_range, copy, erased */

static struct tl_dev *mixed_dev(uint32_t ws, uint8_t ev)
{
    struct nb_simflash_geometry g = tl_geo(ws, ev, 4, 4096);
    tl_geo_add(&g, 2, 16384);
    tl_geo_add(&g, 3, 65536);
    return tl_dev_bare(&g);
}

static void program_pattern(struct tl_dev *t, uint32_t off, uint32_t len,
                            uint64_t seed)
{
    uint8_t *p = malloc(len);
    assert_non_null(p);
    tl_fill(p, len, seed);
    assert_int_equal(t->flash.prog(t->flash.ctx, off, p, len), NB_OK);
    free(p);
}

static int region_is(struct tl_dev *t, uint32_t off, uint32_t len, uint8_t v)
{
    const uint8_t *d = nb_simflash_data(t->sim);
    for (uint32_t i = 0; i < len; i++)
        if (d[off + i] != v)
            return 0;
    return 1;
}

static void erase_range_mixed(void **state)
{
    (void)state;
    static const uint8_t evs[] = {0xFF, 0x00};
    for (unsigned e = 0; e < 2; e++) {
        struct tl_dev *t = mixed_dev(8, evs[e]);
        program_pattern(t, 0, MIXED_SIZE, 1);
        nb_simflash_reset_stats(t->sim);
        /* sectors 3 (4 KiB), 4 and 5 (16 KiB) */
        assert_int_equal(nb_flash_erase_range(&t->flash, 12288, 4096 + 32768),
                         NB_OK);
        struct nb_simflash_stats st;
        nb_simflash_stats(t->sim, &st);
        assert_int_equal(st.erase_ops, 3);
        assert_true(region_is(t, 12288, 4096 + 32768, evs[e]));
        assert_false(region_is(t, 12288 - 16, 16, evs[e]));
        assert_false(region_is(t, 49152, 16, evs[e]));
        assert_int_equal(nb_simflash_erase_count(t->sim, 2), 0);
        assert_int_equal(nb_simflash_erase_count(t->sim, 3), 1);
        assert_int_equal(nb_simflash_erase_count(t->sim, 5), 1);
        assert_int_equal(nb_simflash_erase_count(t->sim, 6), 0);
        /* Not sector aligned: refused before any erase. */
        assert_int_equal(nb_flash_erase_range(&t->flash, 16384, 8192),
                         NB_ERR_INVAL);
        assert_int_equal(nb_flash_erase_range(&t->flash, 100, 4096),
                         NB_ERR_INVAL);
        assert_int_equal(nb_flash_erase_range(&t->flash, 180224, 131072),
                         NB_ERR_INVAL);
        nb_simflash_stats(t->sim, &st);
        assert_int_equal(st.erase_ops, 3);
        /* The whole device. */
        assert_int_equal(nb_flash_erase_range(&t->flash, 0, MIXED_SIZE),
                         NB_OK);
        assert_true(region_is(t, 0, MIXED_SIZE, evs[e]));
        /* A failing erase is reported, not ignored. */
        assert_int_equal(nb_simflash_set_bad(t->sim, 16384,
                                             NB_SIMFLASH_BAD_ERASE),
                         NB_OK);
        assert_int_equal(nb_flash_erase_range(&t->flash, 0, 32768),
                         NB_ERR_IO);
        nb_simflash_stats(t->sim, &st);
        assert_int_equal(st.violations, 0);
        tl_dev_free(t);
    }
}

static void copy_between_regions(void **state)
{
    (void)state;
    static const uint32_t wss[] = {1, 8, 32};
    static const uint32_t lens[] = {1, 31, 32, 100, 4096, 5000, 20000};
    uint8_t buf[96];
    for (unsigned w = 0; w < 3; w++) {
        for (unsigned e = 0; e < 2; e++) {
            uint32_t ws = wss[w];
            struct tl_dev *t = mixed_dev(ws, e ? 0x00 : 0xFF);
            uint8_t *src = malloc(32768);
            assert_non_null(src);
            tl_fill(src, 32768, 7 + w);
            assert_int_equal(t->flash.prog(t->flash.ctx, 16384, src, 32768),
                             NB_OK);
            uint32_t dst = 49152;
            for (unsigned k = 0; k < 7; k++) {
                uint32_t len = lens[k];
                /* buffer not a multiple of the copy length, smaller than
                 * it, a multiple of the write size */
                uint32_t bs = ws == 32 ? 64 : 40 / ws * ws;
                assert_int_equal(nb_flash_copy(&t->flash, dst, 16384, len,
                                               buf, bs),
                                 NB_OK);
                uint32_t rl = (len + ws - 1) / ws * ws;
                assert_memory_equal(nb_simflash_data(t->sim) + dst, src, rl);
                dst += (rl + 31) / 32 * 32;
            }
            /* A buffer smaller than one write unit cannot copy. */
            if (ws > 1)
                assert_int_equal(nb_flash_copy(&t->flash, 180224, 16384, 64,
                                               buf, ws - 1),
                                 NB_ERR_NOMEM);
            /* Copying onto programmed flash is an error the flash
             * reports (and the simulator counts as a violation). */
            assert_int_not_equal(
                nb_flash_copy(&t->flash, 16384, 16384, 64, buf, 64), NB_OK);
            struct nb_simflash_stats st;
            nb_simflash_stats(t->sim, &st);
            assert_int_equal(st.violations, 1);
            free(src);
            tl_dev_free(t);
        }
    }
}

static void is_erased_checks(void **state)
{
    (void)state;
    for (unsigned e = 0; e < 2; e++) {
        uint8_t ev = e ? 0x00 : 0xFF;
        struct tl_dev *t = mixed_dev(1, ev);
        uint8_t buf[100];
        int er = -1;
        assert_int_equal(
            nb_flash_is_erased(&t->flash, 0, MIXED_SIZE, buf, 100, &er),
            NB_OK);
        assert_int_equal(er, 1);
        uint8_t v = (uint8_t)~ev;
        assert_int_equal(t->flash.prog(t->flash.ctx, 20000, &v, 1), NB_OK);
        assert_int_equal(
            nb_flash_is_erased(&t->flash, 16384, 16384, buf, 100, &er),
            NB_OK);
        assert_int_equal(er, 0);
        /* Right before and right after the programmed byte. */
        assert_int_equal(
            nb_flash_is_erased(&t->flash, 16384, 3616, buf, 100, &er), NB_OK);
        assert_int_equal(er, 1);
        assert_int_equal(
            nb_flash_is_erased(&t->flash, 20001, 1000, buf, 7, &er), NB_OK);
        assert_int_equal(er, 1);
        assert_int_equal(
            nb_flash_is_erased(&t->flash, 19999, 2, buf, 7, &er), NB_OK);
        assert_int_equal(er, 0);
        /* A byte that differs from the erased value in one bit only. */
        v = ev ^ 0x80;
        assert_int_equal(t->flash.prog(t->flash.ctx, 30000, &v, 1), NB_OK);
        assert_int_equal(
            nb_flash_is_erased(&t->flash, 29000, 2000, buf, 100, &er), NB_OK);
        assert_int_equal(er, 0);
        assert_int_equal(nb_flash_is_erased(&t->flash, 0, 10, buf, 0, &er),
                         NB_ERR_NOMEM);
        /* Past the end: the flash error comes through. */
        assert_int_equal(nb_flash_is_erased(&t->flash, MIXED_SIZE - 10, 20,
                                            buf, 100, &er),
                         NB_ERR_RANGE);
        tl_dev_free(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(check_accepts_good),
        cmocka_unit_test(check_rejects_bad),
        cmocka_unit_test(geometry_uniform),
        cmocka_unit_test(geometry_mixed),
        cmocka_unit_test(erase_range_mixed),
        cmocka_unit_test(copy_between_regions),
        cmocka_unit_test(is_erased_checks),
    };
    return cmocka_run_group_tests_name("flash", tests, NULL, NULL);
}
