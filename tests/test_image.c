/* test_image.c - the image header: make_header + verify round trip on a
 * simulated flash, every single-bit flip fails, sizes past the area,
 * header parsing, semantic version packing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "nb_image.h"
#include "testlib.h"

#define AREA 8192u

static struct tl_dev *mkdev(uint32_t ws, uint8_t ev)
{
    struct nb_simflash_geometry g = tl_geo(ws, ev, 16, 4096);
    return tl_dev_new(&g, NB_LAYOUT_AB, 8192, 0);
}

/* Program `im` at `off` (erased), padded to the write size. */
static void put_image(struct tl_dev *t, uint32_t off,
                      const struct tl_image *im)
{
    uint32_t ws = t->flash.write_size;
    uint32_t n = (im->size + ws - 1) / ws * ws;
    uint8_t *p = malloc(n);
    assert_non_null(p);
    memset(p, t->flash.erase_value, n);
    memcpy(p, im->data, im->size);
    assert_int_equal(t->flash.prog(t->flash.ctx, off, p, n), NB_OK);
    free(p);
}

static void round_trip(void **state)
{
    (void)state;
    static const uint32_t payloads[] = {0, 1, 100, 4031, 4032, 4096, 8128};
    for (unsigned e = 0; e < 2; e++)
        for (unsigned p = 0; p < 7; p++) {
            struct tl_dev *t = mkdev(e ? 1 : 8, e ? 0x00 : 0xFF);
            uint32_t ver = tl_ver(1, 2, 3 + p);
            struct tl_image im =
                tl_image_make(&t->crypto, payloads[p], ver, 7 + p, p);
            put_image(t, 8192, &im);
            struct nb_image_info info;
            memset(&info, 0xA5, sizeof(info));
            assert_int_equal(nb_image_verify(&t->flash, &t->crypto, 8192,
                                             AREA, t->buf, TL_BUF, &info),
                             NB_OK);
            assert_int_equal(info.size, im.size);
            assert_int_equal(info.version, ver);
            assert_int_equal(info.svn, 7 + p);
            assert_memory_equal(info.digest, im.data + 32, NB_SHA256_LEN);
            /* The digest covers header bytes 0..31 and the payload: an
             * independent SHA-256 over the same bytes agrees. */
            uint8_t d[NB_SHA256_LEN];
            assert_int_equal(t->crypto.sha256_start(t->crypto.ctx), NB_OK);
            assert_int_equal(t->crypto.sha256_update(t->crypto.ctx, im.data,
                                                     32),
                             NB_OK);
            assert_int_equal(t->crypto.sha256_update(
                                 t->crypto.ctx, im.data + 64, im.size - 64),
                             NB_OK);
            assert_int_equal(t->crypto.sha256_finish(t->crypto.ctx, d),
                             NB_OK);
            assert_memory_equal(d, im.data + 32, NB_SHA256_LEN);
            /* A tiny work buffer gives the same answer. */
            assert_int_equal(nb_image_verify(&t->flash, &t->crypto, 8192,
                                             AREA, t->buf, 64, &info),
                             NB_OK);
            /* Exactly fitting area. */
            assert_int_equal(nb_image_verify(&t->flash, &t->crypto, 8192,
                                             im.size, t->buf, 100, &info),
                             NB_OK);
            tl_image_free(&im);
            tl_dev_free(t);
        }
}

static void header_layout(void **state)
{
    (void)state;
    struct tl_dev *t = mkdev(8, 0xFF);
    uint8_t payload[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    uint8_t h[NB_IMAGE_HDR_SIZE];
    assert_int_equal(nb_image_make_header(&t->crypto, payload, 10,
                                          0x01020003u, 0x11223344u, h),
                     NB_OK);
    static const uint8_t want[20] = {0x4E, 0x42, 0x49, 0x4D, 64, 0, 1, 0,
                                     10, 0, 0, 0, 0x03, 0x00, 0x02, 0x01,
                                     0x44, 0x33, 0x22, 0x11};
    assert_memory_equal(h, want, 20);
    for (unsigned i = 20; i < 32; i++)
        assert_int_equal(h[i], 0);
    struct nb_image_info info;
    assert_int_equal(nb_image_parse_header(h, 74, &info), NB_OK);
    assert_int_equal(info.size, 74);
    assert_int_equal(info.version, 0x01020003u);
    assert_int_equal(info.svn, 0x11223344u);
    assert_int_equal(nb_image_parse_header(h, 73, &info), NB_ERR_NOSPC);
    uint8_t b[NB_IMAGE_HDR_SIZE];
    memcpy(b, h, sizeof(b)), b[0] ^= 1;
    assert_int_equal(nb_image_parse_header(b, 1000, &info), NB_ERR_CORRUPT);
    memcpy(b, h, sizeof(b)), b[4] = 32;
    assert_int_equal(nb_image_parse_header(b, 1000, &info), NB_ERR_CORRUPT);
    memcpy(b, h, sizeof(b)), b[6] = 2;
    assert_int_equal(nb_image_parse_header(b, 1000, &info), NB_ERR_CORRUPT);
    memcpy(b, h, sizeof(b)), b[25] = 1;
    assert_int_equal(nb_image_parse_header(b, 1000, &info), NB_ERR_CORRUPT);
    /* A payload size that would wrap 32 bits. */
    memcpy(b, h, sizeof(b)), b[8] = b[9] = b[10] = b[11] = 0xFF;
    assert_int_not_equal(nb_image_parse_header(b, 0xFFFFFFFFu, &info),
                         NB_OK);
    memcpy(b, h, sizeof(b)), b[8] = 0xBF, b[9] = b[10] = b[11] = 0xFF;
    assert_int_equal(nb_image_parse_header(b, 0xFFFFFFFFu, &info), NB_OK);
    assert_int_equal(info.size, 0xFFFFFFFFu);
    tl_dev_free(t);
}

static void every_bit_flip_fails(void **state)
{
    (void)state;
    struct tl_dev *t = mkdev(1, 0xFF);
    struct tl_image im = tl_image_make(&t->crypto, 150, tl_ver(2, 0, 1), 3, 9);
    struct nb_image_info info;
    const uint32_t off = 8192;
    put_image(t, off, &im);
    assert_int_equal(nb_image_verify(&t->flash, &t->crypto, off, AREA,
                                     t->buf, TL_BUF, &info),
                     NB_OK);
    for (uint32_t byte = 0; byte < im.size; byte++)
        for (unsigned bit = 0; bit < 8; bit++) {
            assert_int_equal(nb_simflash_flip_bit(t->sim, off + byte, bit),
                             NB_OK);
            nb_err err = nb_image_verify(&t->flash, &t->crypto, off, AREA,
                                         t->buf, TL_BUF, &info);
            if (err != NB_ERR_CORRUPT)
                fail_msg("flip byte %u bit %u: %s", byte, bit,
                         nb_err_name(err));
            assert_int_equal(nb_simflash_flip_bit(t->sim, off + byte, bit),
                             NB_OK);
        }
    /* And the image is intact again. */
    assert_int_equal(nb_image_verify(&t->flash, &t->crypto, off, AREA,
                                     t->buf, TL_BUF, &info),
                     NB_OK);
    /* Blank flash is not an image. */
    assert_int_equal(nb_image_verify(&t->flash, &t->crypto, 16384, AREA,
                                     t->buf, TL_BUF, &info),
                     NB_ERR_CORRUPT);
    tl_image_free(&im);
    tl_dev_free(t);
}

static void size_past_area(void **state)
{
    (void)state;
    struct tl_dev *t = mkdev(8, 0xFF);
    struct tl_image im = tl_image_make(&t->crypto, 5000, 1, 1, 4);
    struct nb_image_info info;
    put_image(t, 8192, &im);
    assert_int_equal(nb_image_verify(&t->flash, &t->crypto, 8192, im.size,
                                     t->buf, TL_BUF, &info),
                     NB_OK);
    /* One byte short: a size past the area is a broken header. */
    assert_int_equal(nb_image_verify(&t->flash, &t->crypto, 8192,
                                     im.size - 1, t->buf, TL_BUF, &info),
                     NB_ERR_CORRUPT);
    assert_int_equal(nb_image_verify(&t->flash, &t->crypto, 8192, 4096,
                                     t->buf, TL_BUF, &info),
                     NB_ERR_CORRUPT);
    /* Work buffer or area smaller than a header. */
    assert_int_equal(nb_image_verify(&t->flash, &t->crypto, 8192, AREA,
                                     t->buf, 63, &info),
                     NB_ERR_NOMEM);
    assert_int_equal(nb_image_verify(&t->flash, &t->crypto, 8192, 63,
                                     t->buf, TL_BUF, &info),
                     NB_ERR_NOMEM);
    /* Past the end of the device: the flash error comes through. */
    uint32_t end = nb_simflash_size(t->sim);
    assert_int_equal(nb_image_verify(&t->flash, &t->crypto, end - 32, AREA,
                                     t->buf, TL_BUF, &info),
                     NB_ERR_RANGE);
    tl_image_free(&im);
    tl_dev_free(t);
}

static void version_pack(void **state)
{
    (void)state;
    uint32_t v = 0x12345678u;
    assert_true(nb_version_pack(1, 2, 3, &v));
    assert_int_equal(v, 0x01020003u);
    assert_int_equal(nb_version_major(v), 1);
    assert_int_equal(nb_version_minor(v), 2);
    assert_int_equal(nb_version_patch(v), 3);
    assert_true(nb_version_pack(255, 255, 65535, &v));
    assert_int_equal(v, 0xFFFFFFFFu);
    assert_int_equal(nb_version_major(v), 255);
    assert_int_equal(nb_version_minor(v), 255);
    assert_int_equal(nb_version_patch(v), 65535);
    assert_true(nb_version_pack(0, 0, 0, &v));
    assert_int_equal(v, 0);
    v = 42;
    assert_false(nb_version_pack(256, 0, 0, &v));
    assert_false(nb_version_pack(0, 256, 0, &v));
    assert_false(nb_version_pack(0, 0, 65536, &v));
    assert_int_equal(v, 42);
    /* Packed versions order as the semantic versions do. */
    uint32_t a, b;
    assert_true(nb_version_pack(1, 9, 65535, &a));
    assert_true(nb_version_pack(2, 0, 0, &b));
    assert_true(a < b);
    assert_true(nb_version_pack(1, 2, 9, &a));
    assert_true(nb_version_pack(1, 3, 0, &b));
    assert_true(a < b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(header_layout),
        cmocka_unit_test(every_bit_flip_fails),
        cmocka_unit_test(size_past_area),
        cmocka_unit_test(version_pack),
    };
    return cmocka_run_group_tests_name("image", tests, NULL, NULL);
}
