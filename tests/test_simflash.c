/* test_simflash.c - the simulated NOR flash: geometry, files, NOR rules,
 * power cuts (clean and torn), bad sectors, bit rot, counters, snapshots.
 *
 * Most tests run over several shapes: write sizes 1, 8 and 32, erase
 * values 0xFF and 0x00, and mixed sectors {4 x 4096, 2 x 16384}.
 */
#if !defined(_POSIX_C_SOURCE) && !defined(_DEFAULT_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "nb_flash.h"
#include "nb_simflash.h"

#define SEC_SMALL 4096u
#define SEC_LARGE 16384u
#define DEV_SIZE (4u * SEC_SMALL + 2u * SEC_LARGE)
#define DEV_SECTORS 6u

static const uint32_t write_sizes[] = {1, 8, 32};
static const uint8_t erase_values[] = {0xFF, 0x00};

static char tmpdir[64];

static struct nb_simflash_geometry mixed(uint32_t ws, uint8_t ev)
{
    struct nb_simflash_geometry g;

    memset(&g, 0, sizeof(g));
    g.write_size = ws;
    g.erase_value = ev;
    g.region_count = 2;
    g.regions[0].count = 4;
    g.regions[0].size = SEC_SMALL;
    g.regions[1].count = 2;
    g.regions[1].size = SEC_LARGE;
    return g;
}

/* Start of sector i of the mixed geometry. */
static uint32_t sec_start(uint32_t i)
{
    return i < 4 ? i * SEC_SMALL : 4 * SEC_SMALL + (i - 4) * SEC_LARGE;
}

static struct nb_simflash *mem_dev(uint32_t ws, uint8_t ev,
                                   struct nb_flash *f)
{
    struct nb_simflash_geometry g = mixed(ws, ev);
    struct nb_simflash *s = NULL;

    assert_int_equal(nb_simflash_create_mem(&s, &g), NB_OK);
    assert_non_null(s);
    nb_simflash_interface(s, f);
    return s;
}

/* Deterministic pattern with no byte equal to either erase value, so
 * every programmed byte is visibly not erased. */
static void pattern(uint8_t *buf, uint32_t len, uint32_t salt)
{
    uint32_t i;

    for (i = 0; i < len; i++) {
        uint8_t b = (uint8_t)((i * 131u + salt * 7u + 1u) ^ (i >> 8));
        buf[i] = (b == 0x00 || b == 0xFF) ? 0x5A : b;
    }
}

static int all_equal(const uint8_t *p, uint32_t len, uint8_t v)
{
    uint32_t i;

    for (i = 0; i < len; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

static void path_of(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmpdir, name);
}

static int setup_dir(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/nb_simflash_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static const char *const files[] = {"rt.sim", "bad.sim", "snap.sim"};

static int teardown_dir(void **state)
{
    char p[128];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        path_of(p, sizeof(p), files[i]);
        (void)unlink(p);
    }
    return rmdir(tmpdir);
}

static void test_geometry_validation(void **state)
{
    struct nb_simflash_geometry g;
    struct nb_simflash *s = NULL;
    struct nb_flash f;
    static const uint32_t bad_ws[] = {0, 3, 6, 12, 64};
    static const uint32_t good_ws[] = {1, 2, 4, 8, 16, 32};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad_ws) / sizeof(bad_ws[0]); i++) {
        g = mixed(bad_ws[i], 0xFF);
        assert_int_equal(nb_simflash_create_mem(&s, &g), NB_ERR_INVAL);
        assert_null(s);
    }
    g = mixed(8, 0x7F);
    assert_int_equal(nb_simflash_create_mem(&s, &g), NB_ERR_INVAL);
    g = mixed(8, 0xFF);
    g.region_count = 0;
    assert_int_equal(nb_simflash_create_mem(&s, &g), NB_ERR_INVAL);
    g.region_count = NB_FLASH_MAX_REGIONS + 1;
    assert_int_equal(nb_simflash_create_mem(&s, &g), NB_ERR_INVAL);
    g = mixed(8, 0xFF);
    g.regions[1].size = 0;
    assert_int_equal(nb_simflash_create_mem(&s, &g), NB_ERR_INVAL);
    g = mixed(8, 0xFF);
    g.regions[1].size = 4100; /* not a multiple of 8 */
    assert_int_equal(nb_simflash_create_mem(&s, &g), NB_ERR_INVAL);
    g = mixed(8, 0xFF);
    g.regions[0].count = 0;
    assert_int_equal(nb_simflash_create_mem(&s, &g), NB_ERR_INVAL);
    g = mixed(1, 0xFF);
    g.regions[0].count = NB_SIMFLASH_MAX_SECTORS;
    g.regions[0].size = 1;
    g.regions[1].count = 1;
    g.regions[1].size = 1; /* one sector too many */
    assert_int_equal(nb_simflash_create_mem(&s, &g), NB_ERR_INVAL);
    g = mixed(1, 0xFF);
    g.region_count = 1;
    g.regions[0].count = 65536;
    g.regions[0].size = 65536; /* 4 GiB: past u32 addresses */
    assert_int_equal(nb_simflash_create_mem(&s, &g), NB_ERR_INVAL);
    assert_int_equal(nb_simflash_create_mem(NULL, &g), NB_ERR_INVAL);
    assert_int_equal(nb_simflash_create_mem(&s, NULL), NB_ERR_INVAL);

    for (i = 0; i < sizeof(good_ws) / sizeof(good_ws[0]); i++) {
        s = mem_dev(good_ws[i], erase_values[i % 2], &f);
        assert_int_equal(nb_flash_check(&f), NB_OK);
        assert_int_equal(nb_simflash_size(s), DEV_SIZE);
        assert_int_equal(nb_flash_size(&f), DEV_SIZE);
        assert_int_equal(nb_simflash_sector_count(s), DEV_SECTORS);
        assert_int_equal(f.write_size, good_ws[i]);
        assert_int_equal(f.erase_value, erase_values[i % 2]);
        assert_int_equal(f.region_count, 2);
        assert_int_equal(f.regions[1].size, SEC_LARGE);
        assert_ptr_equal(f.ctx, s);
        assert_int_equal(nb_simflash_geometry(s)->write_size, good_ws[i]);
        assert_true(all_equal(nb_simflash_data(s), DEV_SIZE,
                              erase_values[i % 2]));
        nb_simflash_close(s);
    }
    nb_simflash_close(NULL);
}

static void test_file_round_trip(void **state)
{
    struct nb_simflash_geometry g = mixed(8, 0xFF);
    struct nb_simflash *s = NULL;
    static const char user[] = "board=stm32f4-disco rev=3";
    uint8_t data[256], back[256];
    struct nb_flash f;
    const void *u;
    struct stat st;
    size_t ulen;
    char p[128];

    (void)state;
    path_of(p, sizeof(p), "rt.sim");
    assert_int_equal(nb_simflash_create_file(&s, p, &g, user, sizeof(user)),
                     NB_OK);
    nb_simflash_interface(s, &f);
    pattern(data, sizeof(data), 1);
    assert_int_equal(f.prog(f.ctx, sec_start(4) + 64, data, sizeof(data)),
                     NB_OK);
    assert_int_equal(f.erase(f.ctx, sec_start(1)), NB_OK);
    assert_int_equal(f.erase(f.ctx, sec_start(1)), NB_OK);
    assert_int_equal(f.erase(f.ctx, sec_start(5)), NB_OK);
    assert_int_equal(nb_simflash_set_bad(s, sec_start(4), NB_SIMFLASH_BAD_READ),
                     NB_OK);
    nb_simflash_close(s);

    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 4096 + DEV_SIZE + 4 * DEV_SECTORS);

    s = NULL;
    assert_int_equal(nb_simflash_open_file(&s, p), NB_OK);
    assert_int_equal(nb_simflash_size(s), DEV_SIZE);
    assert_int_equal(nb_simflash_sector_count(s), DEV_SECTORS);
    assert_int_equal(nb_simflash_geometry(s)->write_size, 8);
    assert_int_equal(nb_simflash_geometry(s)->erase_value, 0xFF);
    assert_int_equal(nb_simflash_geometry(s)->region_count, 2);
    assert_int_equal(nb_simflash_geometry(s)->regions[0].count, 4);
    assert_int_equal(nb_simflash_geometry(s)->regions[1].size, SEC_LARGE);
    u = nb_simflash_user(s, &ulen);
    assert_int_equal(ulen, sizeof(user));
    assert_memory_equal(u, user, sizeof(user));
    nb_simflash_interface(s, &f);
    /* Bad flags are runtime only: the reopened read is clean. */
    assert_int_equal(f.read(f.ctx, sec_start(4) + 64, back, sizeof(back)),
                     NB_OK);
    assert_memory_equal(back, data, sizeof(data));
    assert_int_equal(nb_simflash_erase_count(s, 0), 0);
    assert_int_equal(nb_simflash_erase_count(s, 1), 2);
    assert_int_equal(nb_simflash_erase_count(s, 5), 1);
    assert_int_equal(nb_simflash_erase_count(s, DEV_SECTORS), 0);
    nb_simflash_close(s);

    /* User blob limits. */
    assert_int_equal(nb_simflash_create_file(&s, p, &g, user,
                                             NB_SIMFLASH_USER_MAX + 1),
                     NB_ERR_INVAL);
    assert_int_equal(nb_simflash_create_file(&s, p, &g, NULL, 4),
                     NB_ERR_INVAL);
}

/* Write a fresh valid file, let `mutate` damage it, expect `want`. */
static void expect_open(const char *p, nb_err want, long trunc_to,
                        long off, const void *bytes, size_t n)
{
    struct nb_simflash_geometry g = mixed(8, 0xFF);
    struct nb_simflash *s = NULL;
    FILE *fp;

    assert_int_equal(nb_simflash_create_file(&s, p, &g, "x", 1), NB_OK);
    nb_simflash_close(s);
    if (trunc_to >= 0)
        assert_int_equal(truncate(p, trunc_to), 0);
    if (bytes) {
        fp = fopen(p, "r+b");
        assert_non_null(fp);
        assert_int_equal(fseek(fp, off, SEEK_SET), 0);
        assert_int_equal(fwrite(bytes, 1, n, fp), n);
        assert_int_equal(fclose(fp), 0);
    }
    s = NULL;
    assert_int_equal(nb_simflash_open_file(&s, p), want);
    if (want != NB_OK)
        assert_null(s);
    nb_simflash_close(s);
}

static void test_file_errors(void **state)
{
    const long full = 4096 + DEV_SIZE + 4 * DEV_SECTORS;
    static const uint8_t three[4] = {3, 0, 0, 0};
    static const uint8_t ev7f[4] = {0x7F, 0, 0, 0};
    static const uint8_t nine[4] = {9, 0, 0, 0};
    static const uint8_t big[4] = {0x01, 0x10, 0, 0}; /* 4097 > USER_MAX */
    static const uint8_t v2[4] = {2, 0, 0, 0};
    struct nb_simflash *s = NULL;
    uint8_t junk[96];
    char p[128];
    FILE *fp;
    int i;

    (void)state;
    path_of(p, sizeof(p), "nope.sim");
    assert_int_equal(nb_simflash_open_file(&s, p), NB_ERR_NOENT);
    assert_null(s);

    path_of(p, sizeof(p), "bad.sim");
    expect_open(p, NB_OK, -1, 0, NULL, 0);
    expect_open(p, NB_ERR_CORRUPT, full - 1, 0, NULL, 0);   /* truncated */
    expect_open(p, NB_ERR_CORRUPT, full + 1, 0, NULL, 0);   /* padded */
    expect_open(p, NB_ERR_CORRUPT, 4095, 0, NULL, 0);       /* no header */
    expect_open(p, NB_ERR_CORRUPT, 0, 0, NULL, 0);          /* empty */
    expect_open(p, NB_ERR_CORRUPT, -1, 0, "NBSIMFL2", 8);   /* magic */
    expect_open(p, NB_ERR_CORRUPT, -1, 8, v2, 4);           /* version */
    expect_open(p, NB_ERR_CORRUPT, -1, 16, three, 4);       /* write size */
    expect_open(p, NB_ERR_CORRUPT, -1, 20, ev7f, 4);        /* erase value */
    expect_open(p, NB_ERR_CORRUPT, -1, 24, nine, 4);        /* regions */
    expect_open(p, NB_ERR_CORRUPT, -1, 92, big, 4);         /* user len */
    expect_open(p, NB_ERR_CORRUPT, -1, 28, nine, 4);        /* length */

    /* Random header garbage must never crash nor open wrongly sized. */
    for (i = 0; i < 200; i++) {
        uint32_t k;
        expect_open(p, NB_OK, -1, 0, NULL, 0);
        for (k = 0; k < sizeof(junk); k++)
            junk[k] = (uint8_t)((k * 37u + (uint32_t)i * 101u) >> (i % 5));
        fp = fopen(p, "r+b");
        assert_non_null(fp);
        assert_int_equal(fseek(fp, 8 + i % 32, SEEK_SET), 0);
        assert_int_equal(fwrite(junk, 1, 16 + (size_t)i % 64, fp),
                         16 + (size_t)i % 64);
        assert_int_equal(fclose(fp), 0);
        s = NULL;
        nb_err err = nb_simflash_open_file(&s, p);
        assert_true(err == NB_OK || err == NB_ERR_CORRUPT);
        nb_simflash_close(s);
    }
    assert_int_equal(nb_simflash_open_file(&s, tmpdir), NB_ERR_IO);
}

static void test_nor_violations(void **state)
{
    uint8_t data[64], back[64];
    struct nb_simflash_stats st;
    size_t wi, ei;

    (void)state;
    for (wi = 0; wi < 3; wi++) {
        for (ei = 0; ei < 2; ei++) {
            uint32_t ws = write_sizes[wi];
            uint8_t ev = erase_values[ei];
            struct nb_flash f;
            struct nb_simflash *s = mem_dev(ws, ev, &f);
            uint8_t *raw = nb_simflash_data(s);
            uint32_t a = sec_start(2);

            pattern(data, sizeof(data), ws);
            assert_int_equal(f.prog(f.ctx, a, data, 2 * ws), NB_OK);
            /* Same units again: a bug, nothing changes. */
            assert_int_equal(f.prog(f.ctx, a, data + 1, ws), NB_ERR_INVAL);
            assert_memory_equal(raw + a, data, 2 * ws);
            /* First unit erased, second not: refused whole. */
            assert_int_equal(f.prog(f.ctx, a + 4 * ws, data, ws), NB_OK);
            assert_int_equal(f.prog(f.ctx, a + 3 * ws, data, 2 * ws),
                             NB_ERR_INVAL);
            assert_true(all_equal(raw + a + 3 * ws, ws, ev));
            nb_simflash_stats(s, &st);
            assert_int_equal(st.violations, 2);
            if (ws > 1) {
                assert_int_equal(f.prog(f.ctx, a + 8 * ws + 1, data, ws),
                                 NB_ERR_INVAL);
                assert_int_equal(f.prog(f.ctx, a + 8 * ws, data, ws - 1),
                                 NB_ERR_INVAL);
                assert_int_equal(f.prog(f.ctx, a + 8 * ws, data, ws + 1),
                                 NB_ERR_INVAL);
                assert_true(all_equal(raw + a + 8 * ws, 2 * ws, ev));
            }
            assert_int_equal(f.prog(f.ctx, DEV_SIZE - ws, data, 2 * ws),
                             NB_ERR_INVAL);
            assert_int_equal(f.prog(f.ctx, 0xFFFFFFFFu - ws + 1, data, ws),
                             NB_ERR_INVAL);
            assert_int_equal(f.erase(f.ctx, sec_start(4) + 4096),
                             NB_ERR_INVAL);
            assert_int_equal(f.erase(f.ctx, DEV_SIZE), NB_ERR_INVAL);
            nb_simflash_stats(s, &st);
            assert_int_equal(st.violations, ws > 1 ? 9 : 6);
            /* Reads: any alignment inside, NB_ERR_RANGE outside. */
            assert_int_equal(f.read(f.ctx, a + 1, back, 2 * ws - 1), NB_OK);
            assert_memory_equal(back, data + 1, 2 * ws - 1);
            assert_int_equal(f.read(f.ctx, DEV_SIZE - 1, back, 2),
                             NB_ERR_RANGE);
            assert_int_equal(f.read(f.ctx, 0xFFFFFFFFu, back, 2),
                             NB_ERR_RANGE);
            assert_int_equal(f.read(f.ctx, DEV_SIZE - 1, back, 1), NB_OK);
            nb_simflash_close(s);
        }
    }
}

static void test_erase_value(void **state)
{
    uint8_t data[SEC_SMALL], back[SEC_SMALL];
    size_t ei;

    (void)state;
    for (ei = 0; ei < 2; ei++) {
        uint8_t ev = erase_values[ei];
        struct nb_flash f;
        struct nb_simflash *s = mem_dev(8, ev, &f);

        assert_int_equal(f.read(f.ctx, sec_start(3), back, SEC_SMALL), NB_OK);
        assert_true(all_equal(back, SEC_SMALL, ev));
        memset(data, ev ^ 0xA5, sizeof(data)); /* 1->0 or 0->1 moves */
        assert_int_equal(f.prog(f.ctx, sec_start(3), data, SEC_SMALL), NB_OK);
        assert_int_equal(f.read(f.ctx, sec_start(3), back, SEC_SMALL), NB_OK);
        assert_memory_equal(back, data, SEC_SMALL);
        assert_int_equal(f.erase(f.ctx, sec_start(3)), NB_OK);
        assert_int_equal(f.read(f.ctx, sec_start(3), back, SEC_SMALL), NB_OK);
        assert_true(all_equal(back, SEC_SMALL, ev));
        /* Erase is per sector: a large sector erases all of it. */
        assert_int_equal(f.prog(f.ctx, sec_start(5) + SEC_LARGE - 8, data, 8),
                         NB_OK);
        assert_int_equal(f.erase(f.ctx, sec_start(5)), NB_OK);
        assert_true(all_equal(nb_simflash_data(s) + sec_start(5), SEC_LARGE,
                              ev));
        nb_simflash_close(s);
    }
}

static void test_cut_clean(void **state)
{
    uint8_t data[32], back[32];
    struct nb_simflash_stats st;
    struct nb_flash f;
    struct nb_simflash *s = mem_dev(8, 0xFF, &f);
    uint8_t *raw = nb_simflash_data(s);

    (void)state;
    pattern(data, sizeof(data), 3);
    nb_simflash_cut_at(s, 2, 0);
    assert_int_equal(f.prog(f.ctx, 0, data, 8), NB_OK);          /* op 0 */
    assert_int_equal(f.erase(f.ctx, sec_start(1)), NB_OK);       /* op 1 */
    assert_false(nb_simflash_power_lost(s));
    assert_int_equal(f.prog(f.ctx, 8, data, 8), NB_ERR_POWER);   /* op 2 */
    assert_true(nb_simflash_power_lost(s));
    assert_true(all_equal(raw + 8, 8, 0xFF));                    /* no effect */
    assert_int_equal(f.prog(f.ctx, 16, data, 8), NB_ERR_POWER);
    assert_int_equal(f.erase(f.ctx, 0), NB_ERR_POWER);
    assert_int_equal(f.read(f.ctx, 0, back, 8), NB_ERR_POWER);
    assert_memory_equal(raw, data, 8);
    nb_simflash_stats(s, &st);
    assert_int_equal(st.ops, 3); /* calls while off are not counted */

    nb_simflash_power_on(s);
    assert_false(nb_simflash_power_lost(s));
    assert_int_equal(f.read(f.ctx, 0, back, 8), NB_OK);
    assert_memory_equal(back, data, 8);
    /* The op index restarts at 0 after power on. */
    nb_simflash_cut_at(s, 1, 0);
    assert_int_equal(f.prog(f.ctx, 8, data + 8, 8), NB_OK);      /* op 0 */
    assert_int_equal(f.erase(f.ctx, 0), NB_ERR_POWER);           /* op 1 */
    assert_memory_equal(raw, data, 16);
    assert_int_equal(nb_simflash_erase_count(s, 0), 0);
    nb_simflash_power_on(s);

    /* power_on and disarm both disarm. */
    nb_simflash_cut_at(s, 0, 0);
    nb_simflash_power_on(s);
    assert_int_equal(f.prog(f.ctx, 16, data, 8), NB_OK);
    nb_simflash_cut_at(s, 1, 0);
    nb_simflash_disarm(s);
    assert_int_equal(f.prog(f.ctx, 24, data, 8), NB_OK);
    assert_false(nb_simflash_power_lost(s));
    nb_simflash_close(s);
}

/* Check the torn-program shape; return the unit index k of the tear and
 * set *partial when unit k is neither untouched nor complete. */
static uint32_t check_torn_prog(const uint8_t *raw, const uint8_t *src,
                                uint32_t units, uint32_t ws, uint8_t ev,
                                int *partial)
{
    uint32_t k = 0, u, i;

    while (k < units && memcmp(raw + k * ws, src + k * ws, ws) == 0)
        k++;
    if (k == units)
        return k; /* tear in the last unit with every change kept */
    /* Unit k: only intended changes, some subset of them. */
    for (i = 0; i < ws; i++) {
        uint8_t got = (uint8_t)(raw[k * ws + i] ^ ev);
        uint8_t want = (uint8_t)(src[k * ws + i] ^ ev);
        assert_int_equal(got & (uint8_t)~want, 0);
    }
    *partial = !all_equal(raw + k * ws, ws, ev);
    for (u = k + 1; u < units; u++)
        assert_true(all_equal(raw + u * ws, ws, ev));
    return k;
}

static void test_torn_prog(void **state)
{
    uint8_t data[32 * 16];
    size_t wi, ei;

    (void)state;
    for (wi = 0; wi < 3; wi++) {
        for (ei = 0; ei < 2; ei++) {
            uint32_t ws = write_sizes[wi], units = 16, seed;
            uint8_t ev = erase_values[ei];
            uint32_t ks = 0; /* bitmask of tear positions seen (bit 16: none) */
            int partial_seen = 0;

            pattern(data, units * ws, ws + ei);
            for (seed = 0; seed < 64; seed++) {
                struct nb_simflash_stats st;
                struct nb_flash f;
                struct nb_simflash *s = mem_dev(ws, ev, &f);
                uint32_t a = sec_start(4) + 64, k;
                int partial = 0;

                nb_simflash_seed(s, seed);
                nb_simflash_cut_at(s, 0, 1);
                assert_int_equal(f.prog(f.ctx, a, data, units * ws),
                                 NB_ERR_POWER);
                assert_true(nb_simflash_power_lost(s));
                k = check_torn_prog(nb_simflash_data(s) + a, data, units, ws,
                                    ev, &partial);
                ks |= 1u << k;
                partial_seen |= partial;
                /* Nothing outside the programmed range moved. */
                assert_true(all_equal(nb_simflash_data(s) + a - 64, 64, ev));
                assert_true(all_equal(nb_simflash_data(s) + a + units * ws,
                                      64, ev));
                nb_simflash_stats(s, &st);
                assert_int_equal(st.ops, 1);
                assert_int_equal(st.prog_ops, 1);
                assert_int_equal(st.bytes_written, 0);
                nb_simflash_close(s);
            }
            /* The tear lands in different units for different seeds, and
             * some tears leave a strictly partial unit. */
            assert_true(ks != 0 && (ks & (ks - 1)) != 0);
            assert_true(partial_seen);
        }
    }
}

static void test_torn_erase(void **state)
{
    uint8_t data[SEC_SMALL];
    size_t ei;

    (void)state;
    for (ei = 0; ei < 2; ei++) {
        uint8_t ev = erase_values[ei];
        struct nb_flash f;
        struct nb_simflash *s = mem_dev(32, ev, &f);
        const uint8_t *raw = nb_simflash_data(s);
        uint32_t i, n_old = 0, n_ev = 0;

        pattern(data, sizeof(data), 9);
        assert_int_equal(f.prog(f.ctx, sec_start(2), data, SEC_SMALL), NB_OK);
        nb_simflash_seed(s, 42);
        nb_simflash_cut_at(s, 1, 1);
        assert_int_equal(f.erase(f.ctx, sec_start(2)), NB_ERR_POWER);
        assert_true(nb_simflash_power_lost(s));
        assert_int_equal(nb_simflash_erase_count(s, 2), 1);
        for (i = 0; i < SEC_SMALL; i++) {
            n_old += raw[sec_start(2) + i] == data[i];
            n_ev += raw[sec_start(2) + i] == ev;
        }
        /* Some bytes kept, some erased, and the sector as a whole is
         * neither the old content nor erased. */
        assert_true(n_old > 0 && n_old < SEC_SMALL);
        assert_true(n_ev > 0 && n_ev < SEC_SMALL);
        assert_true(all_equal(raw + sec_start(1), SEC_SMALL, ev));
        assert_true(all_equal(raw + sec_start(3), SEC_SMALL, ev));
        nb_simflash_power_on(s);
        assert_int_equal(f.erase(f.ctx, sec_start(2)), NB_OK);
        assert_true(all_equal(raw + sec_start(2), SEC_SMALL, ev));
        assert_int_equal(nb_simflash_erase_count(s, 2), 2);
        nb_simflash_close(s);
    }
}

/* Run a fixed script with a torn program and a torn erase; the device
 * ends in *out (caller closes). */
static void torn_script(uint64_t seed, struct nb_simflash **out)
{
    uint8_t data[SEC_SMALL];
    struct nb_flash f;
    struct nb_simflash *s = mem_dev(8, 0xFF, &f);

    pattern(data, sizeof(data), 5);
    nb_simflash_seed(s, seed);
    assert_int_equal(f.prog(f.ctx, sec_start(0), data, SEC_SMALL), NB_OK);
    nb_simflash_cut_at(s, 1, 1);
    assert_int_equal(f.prog(f.ctx, sec_start(1), data, SEC_SMALL),
                     NB_ERR_POWER);
    nb_simflash_power_on(s);
    nb_simflash_cut_at(s, 0, 1);
    assert_int_equal(f.erase(f.ctx, sec_start(0)), NB_ERR_POWER);
    nb_simflash_power_on(s);
    *out = s;
}

static void test_torn_determinism(void **state)
{
    struct nb_simflash *a, *b, *c;

    (void)state;
    torn_script(7, &a);
    torn_script(7, &b);
    torn_script(8, &c);
    assert_memory_equal(nb_simflash_data(a), nb_simflash_data(b), DEV_SIZE);
    assert_memory_not_equal(nb_simflash_data(a), nb_simflash_data(c),
                            2 * SEC_SMALL);
    nb_simflash_close(a);
    nb_simflash_close(b);
    nb_simflash_close(c);
}

static void test_bad_sectors(void **state)
{
    uint8_t data[64], back[64];
    size_t wi;

    (void)state;
    for (wi = 0; wi < 3; wi++) {
        uint32_t ws = write_sizes[wi];
        struct nb_flash f;
        struct nb_simflash *s = mem_dev(ws, 0xFF, &f);
        uint8_t *raw = nb_simflash_data(s);
        uint32_t s1 = sec_start(1), s2 = sec_start(2);

        pattern(data, sizeof(data), 11);
        /* BAD_PROG: refused, even when the range only touches it. */
        assert_int_equal(nb_simflash_set_bad(s, s1 + 100, NB_SIMFLASH_BAD_PROG),
                         NB_OK);
        assert_int_equal(f.prog(f.ctx, s1, data, ws), NB_ERR_IO);
        assert_int_equal(f.prog(f.ctx, s1 - ws, data, 2 * ws), NB_ERR_IO);
        assert_true(all_equal(raw + s1 - ws, 2 * ws, 0xFF));
        assert_int_equal(f.prog(f.ctx, s1 - ws, data, ws), NB_OK);
        assert_int_equal(f.erase(f.ctx, s1), NB_OK); /* erase still works */

        /* BAD_ERASE: content and wear untouched. */
        assert_int_equal(f.prog(f.ctx, s2, data, 2 * ws), NB_OK);
        assert_int_equal(nb_simflash_set_bad(s, s2, NB_SIMFLASH_BAD_ERASE),
                         NB_OK);
        assert_int_equal(f.erase(f.ctx, s2), NB_ERR_IO);
        assert_memory_equal(raw + s2, data, 2 * ws);
        assert_int_equal(nb_simflash_erase_count(s, 2), 0);
        assert_int_equal(f.prog(f.ctx, s2 + 2 * ws, data, ws), NB_OK);

        /* BAD_READ: bit 0 of the first byte of the overlap, every time;
         * stored data intact. Read spanning sectors 3 (bad) and 4. */
        assert_int_equal(f.prog(f.ctx, sec_start(4) - 32, data, 64), NB_OK);
        assert_int_equal(nb_simflash_set_bad(s, sec_start(3),
                                             NB_SIMFLASH_BAD_READ),
                         NB_OK);
        assert_int_equal(f.read(f.ctx, sec_start(4) - 32, back, 64), NB_OK);
        assert_int_equal(back[0], data[0] ^ 1);
        assert_memory_equal(back + 1, data + 1, 63);
        assert_int_equal(f.read(f.ctx, sec_start(4) - 7, back, 10), NB_OK);
        assert_int_equal(back[0], data[25] ^ 1);
        assert_memory_equal(back + 1, data + 26, 9);
        assert_memory_equal(raw + sec_start(4) - 32, data, 64);
        /* Flags on both sides of a read: each overlap flipped. */
        assert_int_equal(nb_simflash_set_bad(s, sec_start(4),
                                             NB_SIMFLASH_BAD_READ),
                         NB_OK);
        assert_int_equal(f.read(f.ctx, sec_start(4) - 32, back, 64), NB_OK);
        assert_int_equal(back[0], data[0] ^ 1);
        assert_int_equal(back[32], data[32] ^ 1);

        /* GOOD clears; bad arguments. */
        assert_int_equal(nb_simflash_set_bad(s, sec_start(3), NB_SIMFLASH_GOOD),
                         NB_OK);
        assert_int_equal(nb_simflash_set_bad(s, sec_start(4), NB_SIMFLASH_GOOD),
                         NB_OK);
        assert_int_equal(f.read(f.ctx, sec_start(4) - 32, back, 64), NB_OK);
        assert_memory_equal(back, data, 64);
        assert_int_equal(nb_simflash_set_bad(s, DEV_SIZE, NB_SIMFLASH_BAD_READ),
                         NB_ERR_RANGE);
        assert_int_equal(nb_simflash_set_bad(s, 0, 8), NB_ERR_INVAL);
        nb_simflash_close(s);
    }
}

static void test_flip_bit(void **state)
{
    uint8_t b;
    struct nb_flash f;
    struct nb_simflash *s = mem_dev(1, 0xFF, &f);

    (void)state;
    assert_int_equal(nb_simflash_flip_bit(s, 100, 3), NB_OK);
    assert_int_equal(f.read(f.ctx, 100, &b, 1), NB_OK);
    assert_int_equal(b, 0xF7);
    assert_int_equal(nb_simflash_flip_bit(s, DEV_SIZE - 1, 7), NB_OK);
    assert_int_equal(nb_simflash_data(s)[DEV_SIZE - 1], 0x7F);
    assert_int_equal(nb_simflash_flip_bit(s, 100, 3), NB_OK);
    assert_int_equal(f.read(f.ctx, 100, &b, 1), NB_OK);
    assert_int_equal(b, 0xFF);
    assert_int_equal(nb_simflash_flip_bit(s, DEV_SIZE, 0), NB_ERR_RANGE);
    assert_int_equal(nb_simflash_flip_bit(s, 0, 8), NB_ERR_INVAL);
    nb_simflash_close(s);
}

static void test_stats_and_wear(void **state)
{
    uint8_t data[64], back[64];
    struct nb_simflash_stats st;
    struct nb_flash f;
    struct nb_simflash *s = mem_dev(8, 0xFF, &f);
    int i;

    (void)state;
    pattern(data, sizeof(data), 13);
    assert_int_equal(f.prog(f.ctx, 0, data, 64), NB_OK);
    assert_int_equal(f.prog(f.ctx, 64, data, 16), NB_OK);
    assert_int_equal(f.prog(f.ctx, 0, data, 8), NB_ERR_INVAL);
    assert_int_equal(f.read(f.ctx, 0, back, 64), NB_OK);
    for (i = 0; i < 3; i++)
        assert_int_equal(f.erase(f.ctx, sec_start(5)), NB_OK);
    assert_int_equal(f.erase(f.ctx, sec_start(4)), NB_OK);
    nb_simflash_stats(s, &st);
    assert_int_equal(st.ops, 7);
    assert_int_equal(st.prog_ops, 3);
    assert_int_equal(st.erase_ops, 4);
    assert_int_equal(st.bytes_written, 80);
    assert_int_equal(st.violations, 1);
    assert_int_equal(nb_simflash_erase_count(s, 5), 3);
    assert_int_equal(nb_simflash_erase_count(s, 4), 1);
    assert_int_equal(nb_simflash_erase_count(s, 0), 0);

    /* Power cycles keep stats; reset_stats keeps wear. */
    nb_simflash_power_on(s);
    nb_simflash_cut_at(s, 0, 0);
    assert_int_equal(f.erase(f.ctx, 0), NB_ERR_POWER);
    nb_simflash_power_on(s);
    nb_simflash_stats(s, &st);
    assert_int_equal(st.ops, 8);
    assert_int_equal(st.erase_ops, 5);
    nb_simflash_reset_stats(s);
    nb_simflash_stats(s, &st);
    assert_int_equal(st.ops + st.prog_ops + st.erase_ops + st.bytes_written +
                         st.violations,
                     0);
    assert_int_equal(nb_simflash_erase_count(s, 5), 3);
    assert_int_equal(nb_simflash_erase_count(s, 0), 0);
    nb_simflash_close(s);
}

static void test_copy_from(void **state)
{
    struct nb_simflash_geometry g = mixed(8, 0xFF), other = mixed(16, 0xFF);
    struct nb_simflash *src, *dst = NULL, *odd = NULL;
    uint8_t data[256], back[256];
    struct nb_flash f, fd;
    char p[128];
    uint32_t i;

    (void)state;
    src = mem_dev(8, 0xFF, &f);
    pattern(data, sizeof(data), 17);
    assert_int_equal(f.erase(f.ctx, sec_start(4)), NB_OK);
    assert_int_equal(f.erase(f.ctx, sec_start(4)), NB_OK);
    assert_int_equal(f.prog(f.ctx, sec_start(4) + 8, data, sizeof(data)),
                     NB_OK);

    path_of(p, sizeof(p), "snap.sim");
    assert_int_equal(nb_simflash_create_file(&dst, p, &g, NULL, 0), NB_OK);
    nb_simflash_interface(dst, &fd);
    assert_int_equal(fd.prog(fd.ctx, 0, data, 8), NB_OK);
    assert_int_equal(fd.erase(fd.ctx, sec_start(0)), NB_OK);
    assert_int_equal(nb_simflash_set_bad(dst, sec_start(4),
                                         NB_SIMFLASH_BAD_READ),
                     NB_OK);
    nb_simflash_power_on(dst);
    nb_simflash_cut_at(dst, 0, 0);
    assert_int_equal(fd.prog(fd.ctx, 0, data, 8), NB_ERR_POWER);
    nb_simflash_cut_at(dst, 5, 0);

    assert_int_equal(nb_simflash_copy_from(dst, src), NB_OK);
    assert_false(nb_simflash_power_lost(dst));
    assert_memory_equal(nb_simflash_data(dst), nb_simflash_data(src),
                        DEV_SIZE);
    for (i = 0; i < DEV_SECTORS; i++)
        assert_int_equal(nb_simflash_erase_count(dst, i),
                         nb_simflash_erase_count(src, i));
    assert_int_equal(nb_simflash_erase_count(dst, 4), 2);
    /* Bad flags cleared, cut disarmed. */
    assert_int_equal(fd.read(fd.ctx, sec_start(4) + 8, back, sizeof(back)),
                     NB_OK);
    assert_memory_equal(back, data, sizeof(back));
    for (i = 0; i < 8; i++)
        assert_int_equal(fd.erase(fd.ctx, sec_start(i % 4)), NB_OK);

    /* Copy back the other way restores src from a snapshot. */
    assert_int_equal(nb_simflash_copy_from(src, dst), NB_OK);
    assert_int_equal(nb_simflash_erase_count(src, 0),
                     nb_simflash_erase_count(dst, 0));
    nb_simflash_close(dst);

    /* It persisted in the file. */
    dst = NULL;
    assert_int_equal(nb_simflash_open_file(&dst, p), NB_OK);
    assert_memory_equal(nb_simflash_data(dst) + sec_start(4) + 8, data,
                        sizeof(data));
    assert_int_equal(nb_simflash_erase_count(dst, 4), 2);

    assert_int_equal(nb_simflash_create_mem(&odd, &other), NB_OK);
    assert_int_equal(nb_simflash_copy_from(odd, src), NB_ERR_INVAL);
    nb_simflash_close(odd);
    nb_simflash_close(dst);
    nb_simflash_close(src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_geometry_validation),
        cmocka_unit_test(test_file_round_trip),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_nor_violations),
        cmocka_unit_test(test_erase_value),
        cmocka_unit_test(test_cut_clean),
        cmocka_unit_test(test_torn_prog),
        cmocka_unit_test(test_torn_erase),
        cmocka_unit_test(test_torn_determinism),
        cmocka_unit_test(test_bad_sectors),
        cmocka_unit_test(test_flip_bit),
        cmocka_unit_test(test_stats_and_wear),
        cmocka_unit_test(test_copy_from),
    };

    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
