/* test_crc32.c - CRC-32 (IEEE 802.3, reflected, as zlib): the standard
 * check value, empty input, and incremental use equal to one shot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "nb_crc32.h"

static void check_value(void **state)
{
    (void)state;
    assert_int_equal(nb_crc32(0, "123456789", 9), 0xCBF43926u);
    /* More independent vectors (zlib's crc32). */
    assert_int_equal(nb_crc32(0, "a", 1), 0xE8B7BE43u);
    assert_int_equal(nb_crc32(0, "abc", 3), 0x352441C2u);
    assert_int_equal(
        nb_crc32(0, "The quick brown fox jumps over the lazy dog", 43),
        0x414FA339u);
    static const uint8_t zeros[4] = {0, 0, 0, 0};
    assert_int_equal(nb_crc32(0, zeros, 4), 0x2144DF1Cu);
}

static void empty_input(void **state)
{
    (void)state;
    assert_int_equal(nb_crc32(0, "", 0), 0u);
    assert_int_equal(nb_crc32(0, NULL, 0), 0u);
    /* An empty update leaves a running CRC unchanged. */
    uint32_t c = nb_crc32(0, "123", 3);
    assert_int_equal(nb_crc32(c, NULL, 0), c);
}

static void incremental_equals_one_shot(void **state)
{
    (void)state;
    uint8_t buf[300];
    for (unsigned i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 37u + 11u);
    uint32_t whole = nb_crc32(0, buf, sizeof(buf));
    for (unsigned cut = 0; cut <= sizeof(buf); cut++) {
        uint32_t c = nb_crc32(0, buf, cut);
        c = nb_crc32(c, buf + cut, sizeof(buf) - cut);
        assert_int_equal(c, whole);
    }
    /* Byte by byte. */
    uint32_t c = 0;
    for (unsigned i = 0; i < sizeof(buf); i++)
        c = nb_crc32(c, buf + i, 1);
    assert_int_equal(c, whole);
    assert_int_equal(nb_crc32(nb_crc32(0, "12345", 5), "6789", 4),
                     0xCBF43926u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(check_value),
        cmocka_unit_test(empty_input),
        cmocka_unit_test(incremental_equals_one_shot),
    };
    return cmocka_run_group_tests_name("crc32", tests, NULL, NULL);
}
