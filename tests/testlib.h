/* testlib.h - shared helpers of the core unit tests: a simulated device
 * (memory flash + layout + crypto port + work buffer + nb_device), images
 * with a seeded random payload, install/stage/boot in one call.
 *
 * Header only (static inline functions), so no build change is needed:
 * each tests/test_*.c includes it after <cmocka.h>.
 */
#ifndef NB_TESTLIB_H
#define NB_TESTLIB_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nb_boot.h"
#include "nb_crypto_mbedtls.h"
#include "nb_install.h"
#include "nb_simflash.h"

#define TL_BUF 4096u   /* work buffer: a multiple of every write size */
#define TL_CHUNK 777u  /* install chunk: deliberately odd */

/* --------------------------------------------------------------- rng */

static inline uint64_t tl_rng(uint64_t *s)
{
    /* xorshift64*, never zero-seeded */
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static inline void tl_fill(uint8_t *p, uint32_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (uint32_t i = 0; i < n; i++)
        p[i] = (uint8_t)(tl_rng(&s) >> 32);
}

/* --------------------------------------------------------- geometries */

static inline struct nb_simflash_geometry tl_geo(uint32_t ws, uint8_t ev,
                                                 uint32_t count,
                                                 uint32_t size)
{
    struct nb_simflash_geometry g;
    memset(&g, 0, sizeof(g));
    g.write_size = ws;
    g.erase_value = ev;
    g.region_count = 1;
    g.regions[0].count = count;
    g.regions[0].size = size;
    return g;
}

/* Append a region of `count` sectors of `size` bytes. */
static inline void tl_geo_add(struct nb_simflash_geometry *g, uint32_t count,
                              uint32_t size)
{
    g->regions[g->region_count].count = count;
    g->regions[g->region_count].size = size;
    g->region_count++;
}

/* ------------------------------------------------------------ devices */

struct tl_dev {
    struct nb_simflash *sim;
    struct nb_flash flash;
    struct nb_mbedtls_crypto mc;
    struct nb_crypto crypto;
    struct nb_boot_config cfg;
    struct nb_device dev;
    uint8_t buf[TL_BUF];
};

/* A blank device with a planned layout (heap allocated: the crypto and
 * config structs point into it). */
static inline struct tl_dev *tl_dev_new(const struct nb_simflash_geometry *g,
                                        uint8_t kind, uint32_t slot_size,
                                        uint32_t journal_min)
{
    struct tl_dev *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    assert_int_equal(nb_simflash_create_mem(&t->sim, g), NB_OK);
    nb_simflash_interface(t->sim, &t->flash);
    nb_crypto_mbedtls_init(&t->crypto, &t->mc);
    assert_int_equal(nb_layout_plan(&t->cfg.layout, &t->flash, kind,
                                    slot_size, journal_min),
                     NB_OK);
    t->cfg.flash = &t->flash;
    t->cfg.crypto = &t->crypto;
    t->cfg.buf = t->buf;
    t->cfg.buf_size = TL_BUF;
    return t;
}

static inline void tl_dev_free(struct tl_dev *t)
{
    if (!t)
        return;
    nb_crypto_mbedtls_free(&t->crypto, &t->mc);
    nb_simflash_close(t->sim);
    free(t);
}

static inline uint64_t tl_violations(const struct tl_dev *t)
{
    struct nb_simflash_stats st;
    nb_simflash_stats(t->sim, &st);
    return st.violations;
}

static inline uint64_t tl_ops(const struct tl_dev *t)
{
    struct nb_simflash_stats st;
    nb_simflash_stats(t->sim, &st);
    return st.ops;
}

static inline void tl_provision(struct tl_dev *t, uint8_t lifecycle,
                                uint8_t limit)
{
    assert_int_equal(nb_device_provision(&t->dev, &t->cfg, lifecycle, limit),
                     NB_OK);
}

/* A reset: mount the journal into a fresh nb_device. */
static inline nb_err tl_open(struct tl_dev *t)
{
    return nb_device_open(&t->dev, &t->cfg);
}

/* A reset followed by one run of the bootloader. */
static inline nb_err tl_boot(struct tl_dev *t, struct nb_boot_result *res)
{
    nb_err err = tl_open(t);
    if (err)
        return err;
    return nb_boot(&t->dev, res);
}

/* ------------------------------------------------------------- images */

struct tl_image {
    uint8_t *data; /* header + payload */
    uint32_t size;
    uint32_t version, svn;
};

static inline struct tl_image tl_image_make(const struct nb_crypto *c,
                                            uint32_t payload,
                                            uint32_t version, uint32_t svn,
                                            uint64_t seed)
{
    struct tl_image im;
    im.size = NB_IMAGE_HDR_SIZE + payload;
    im.version = version;
    im.svn = svn;
    im.data = malloc(im.size);
    assert_non_null(im.data);
    tl_fill(im.data + NB_IMAGE_HDR_SIZE, payload, seed);
    assert_int_equal(nb_image_make_header(c, im.data + NB_IMAGE_HDR_SIZE,
                                          payload, version, svn, im.data),
                     NB_OK);
    return im;
}

static inline void tl_image_free(struct tl_image *im)
{
    free(im->data);
    im->data = NULL;
}

/* begin + write (odd chunks) + finish; the first error. */
static inline nb_err tl_install(struct tl_dev *t, const struct tl_image *im,
                                uint8_t target)
{
    struct nb_install in;
    nb_err err = nb_install_begin(&in, &t->dev, im->data, target);
    for (uint32_t o = 0; !err && o < im->size; o += TL_CHUNK) {
        uint32_t n = im->size - o < TL_CHUNK ? im->size - o : TL_CHUNK;
        err = nb_install_write(&in, im->data + o, n);
    }
    return err ? err : nb_install_finish(&in);
}

/* Install and mark pending, on a freshly opened device. */
static inline nb_err tl_stage(struct tl_dev *t, const struct tl_image *im)
{
    nb_err err = tl_open(t);
    if (!err)
        err = tl_install(t, im, NB_TARGET_UPDATE);
    return err ? err : nb_install_set_pending(&t->dev);
}

/* Nonzero when the flash holds `im` bit-exact at `addr`. */
static inline int tl_holds(struct tl_dev *t, uint32_t addr,
                           const struct tl_image *im)
{
    if (addr + im->size > nb_simflash_size(t->sim))
        return 0;
    return memcmp(nb_simflash_data(t->sim) + addr, im->data, im->size) == 0;
}

/* A copy of the whole flash content, for "nothing written" checks. */
static inline uint8_t *tl_snapshot(struct tl_dev *t)
{
    uint32_t n = nb_simflash_size(t->sim);
    uint8_t *p = malloc(n);
    assert_non_null(p);
    memcpy(p, nb_simflash_data(t->sim), n);
    return p;
}

static inline int tl_same(struct tl_dev *t, const uint8_t *snap)
{
    return memcmp(nb_simflash_data(t->sim), snap,
                  nb_simflash_size(t->sim)) == 0;
}

/* Packed version helper. */
static inline uint32_t tl_ver(uint32_t major, uint32_t minor, uint32_t patch)
{
    uint32_t v = 0;
    assert_true(nb_version_pack(major, minor, patch, &v));
    return v;
}

#endif
