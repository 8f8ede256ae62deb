/* test_cohort.c - the rollout order (core/cohort.c, nb_cohort.h).
 *
 * SipHash-2-4 against the 64 reference vectors of the SipHash authors
 * (github.com/veorq/SipHash vectors.h: key 00..0f, message 00 01 ..
 * (len-1)), which an independent Python implementation written from the
 * paper also reproduces; nb_cohort_point against values of that Python
 * implementation (pins the message format and the key, so a device or a
 * tool in another language can compute the same order); then the
 * statistical promises over 100,000 sequential device IDs: uniform
 * points, independent orders for two rollouts, stable cohorts as the
 * share grows; the exact ppm boundary; nb_cohort_fixed.
 *
 * Statistical bounds are checked on fixed inputs (no randomness), so a
 * run is reproducible; each bound is several standard deviations wide.
 * A failing check prints the device ID or vector that failed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "nb_cohort.h"

#define N_IDS 100000u

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            print_error("failed: %s: ", #cond);                             \
            print_error(__VA_ARGS__);                                       \
            print_error("\n");                                              \
            fail();                                                         \
        }                                                                   \
    } while (0)

static void dev_id(char *buf, size_t len, unsigned i)
{
    snprintf(buf, len, "dev-%06u", i);
}

/* --------------------------------------------------------- SipHash */

/* vectors_sip64 of the reference implementation: SipHash-2-4 output,
 * little-endian bytes, for message i = bytes 0, 1, ..., i-1. */
static const uint8_t sip64[64][8] = {
    {0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72},
    {0xfd, 0x67, 0xdc, 0x93, 0xc5, 0x39, 0xf8, 0x74},
    {0x5a, 0x4f, 0xa9, 0xd9, 0x09, 0x80, 0x6c, 0x0d},
    {0x2d, 0x7e, 0xfb, 0xd7, 0x96, 0x66, 0x67, 0x85},
    {0xb7, 0x87, 0x71, 0x27, 0xe0, 0x94, 0x27, 0xcf},
    {0x8d, 0xa6, 0x99, 0xcd, 0x64, 0x55, 0x76, 0x18},
    {0xce, 0xe3, 0xfe, 0x58, 0x6e, 0x46, 0xc9, 0xcb},
    {0x37, 0xd1, 0x01, 0x8b, 0xf5, 0x00, 0x02, 0xab},
    {0x62, 0x24, 0x93, 0x9a, 0x79, 0xf5, 0xf5, 0x93},
    {0xb0, 0xe4, 0xa9, 0x0b, 0xdf, 0x82, 0x00, 0x9e},
    {0xf3, 0xb9, 0xdd, 0x94, 0xc5, 0xbb, 0x5d, 0x7a},
    {0xa7, 0xad, 0x6b, 0x22, 0x46, 0x2f, 0xb3, 0xf4},
    {0xfb, 0xe5, 0x0e, 0x86, 0xbc, 0x8f, 0x1e, 0x75},
    {0x90, 0x3d, 0x84, 0xc0, 0x27, 0x56, 0xea, 0x14},
    {0xee, 0xf2, 0x7a, 0x8e, 0x90, 0xca, 0x23, 0xf7},
    {0xe5, 0x45, 0xbe, 0x49, 0x61, 0xca, 0x29, 0xa1},
    {0xdb, 0x9b, 0xc2, 0x57, 0x7f, 0xcc, 0x2a, 0x3f},
    {0x94, 0x47, 0xbe, 0x2c, 0xf5, 0xe9, 0x9a, 0x69},
    {0x9c, 0xd3, 0x8d, 0x96, 0xf0, 0xb3, 0xc1, 0x4b},
    {0xbd, 0x61, 0x79, 0xa7, 0x1d, 0xc9, 0x6d, 0xbb},
    {0x98, 0xee, 0xa2, 0x1a, 0xf2, 0x5c, 0xd6, 0xbe},
    {0xc7, 0x67, 0x3b, 0x2e, 0xb0, 0xcb, 0xf2, 0xd0},
    {0x88, 0x3e, 0xa3, 0xe3, 0x95, 0x67, 0x53, 0x93},
    {0xc8, 0xce, 0x5c, 0xcd, 0x8c, 0x03, 0x0c, 0xa8},
    {0x94, 0xaf, 0x49, 0xf6, 0xc6, 0x50, 0xad, 0xb8},
    {0xea, 0xb8, 0x85, 0x8a, 0xde, 0x92, 0xe1, 0xbc},
    {0xf3, 0x15, 0xbb, 0x5b, 0xb8, 0x35, 0xd8, 0x17},
    {0xad, 0xcf, 0x6b, 0x07, 0x63, 0x61, 0x2e, 0x2f},
    {0xa5, 0xc9, 0x1d, 0xa7, 0xac, 0xaa, 0x4d, 0xde},
    {0x71, 0x65, 0x95, 0x87, 0x66, 0x50, 0xa2, 0xa6},
    {0x28, 0xef, 0x49, 0x5c, 0x53, 0xa3, 0x87, 0xad},
    {0x42, 0xc3, 0x41, 0xd8, 0xfa, 0x92, 0xd8, 0x32},
    {0xce, 0x7c, 0xf2, 0x72, 0x2f, 0x51, 0x27, 0x71},
    {0xe3, 0x78, 0x59, 0xf9, 0x46, 0x23, 0xf3, 0xa7},
    {0x38, 0x12, 0x05, 0xbb, 0x1a, 0xb0, 0xe0, 0x12},
    {0xae, 0x97, 0xa1, 0x0f, 0xd4, 0x34, 0xe0, 0x15},
    {0xb4, 0xa3, 0x15, 0x08, 0xbe, 0xff, 0x4d, 0x31},
    {0x81, 0x39, 0x62, 0x29, 0xf0, 0x90, 0x79, 0x02},
    {0x4d, 0x0c, 0xf4, 0x9e, 0xe5, 0xd4, 0xdc, 0xca},
    {0x5c, 0x73, 0x33, 0x6a, 0x76, 0xd8, 0xbf, 0x9a},
    {0xd0, 0xa7, 0x04, 0x53, 0x6b, 0xa9, 0x3e, 0x0e},
    {0x92, 0x59, 0x58, 0xfc, 0xd6, 0x42, 0x0c, 0xad},
    {0xa9, 0x15, 0xc2, 0x9b, 0xc8, 0x06, 0x73, 0x18},
    {0x95, 0x2b, 0x79, 0xf3, 0xbc, 0x0a, 0xa6, 0xd4},
    {0xf2, 0x1d, 0xf2, 0xe4, 0x1d, 0x45, 0x35, 0xf9},
    {0x87, 0x57, 0x75, 0x19, 0x04, 0x8f, 0x53, 0xa9},
    {0x10, 0xa5, 0x6c, 0xf5, 0xdf, 0xcd, 0x9a, 0xdb},
    {0xeb, 0x75, 0x09, 0x5c, 0xcd, 0x98, 0x6c, 0xd0},
    {0x51, 0xa9, 0xcb, 0x9e, 0xcb, 0xa3, 0x12, 0xe6},
    {0x96, 0xaf, 0xad, 0xfc, 0x2c, 0xe6, 0x66, 0xc7},
    {0x72, 0xfe, 0x52, 0x97, 0x5a, 0x43, 0x64, 0xee},
    {0x5a, 0x16, 0x45, 0xb2, 0x76, 0xd5, 0x92, 0xa1},
    {0xb2, 0x74, 0xcb, 0x8e, 0xbf, 0x87, 0x87, 0x0a},
    {0x6f, 0x9b, 0xb4, 0x20, 0x3d, 0xe7, 0xb3, 0x81},
    {0xea, 0xec, 0xb2, 0xa3, 0x0b, 0x22, 0xa8, 0x7f},
    {0x99, 0x24, 0xa4, 0x3c, 0xc1, 0x31, 0x57, 0x24},
    {0xbd, 0x83, 0x8d, 0x3a, 0xaf, 0xbf, 0x8d, 0xb7},
    {0x0b, 0x1a, 0x2a, 0x32, 0x65, 0xd5, 0x1a, 0xea},
    {0x13, 0x50, 0x79, 0xa3, 0x23, 0x1c, 0xe6, 0x60},
    {0x93, 0x2b, 0x28, 0x46, 0xe4, 0xd7, 0x06, 0x66},
    {0xe1, 0x91, 0x5f, 0x5c, 0xb1, 0xec, 0xa4, 0x6c},
    {0xf3, 0x25, 0x96, 0x5c, 0xa1, 0x6d, 0x62, 0x9f},
    {0x57, 0x5f, 0xf2, 0x8e, 0x60, 0x38, 0x1b, 0xe5},
    {0x72, 0x45, 0x06, 0xeb, 0x4c, 0x32, 0x8a, 0x95},
};

static void test_siphash_reference_vectors(void **state)
{
    const uint64_t k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;
    uint8_t msg[64];
    unsigned len, i;

    (void)state;
    for (i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    /* The value the paper's test vector list starts with. */
    assert_true(nb_siphash24(k0, k1, msg, 0) == 0x726fdb47dd0e0e31ull);
    /* The paper's worked example (Appendix A): 15 bytes 00..0e. */
    assert_true(nb_siphash24(k0, k1, msg, 15) == 0xa129ca6149be45e5ull);
    for (len = 0; len < 64; len++) {
        uint64_t want = 0, got = nb_siphash24(k0, k1, msg, len);
        for (i = 0; i < 8; i++)
            want |= (uint64_t)sip64[len][i] << (8 * i);
        CHECK(got == want, "SipHash vector len %u: got %016llx want %016llx",
              len, (unsigned long long)got, (unsigned long long)want);
    }
}

/* Unaligned input gives the same hash (the loads are bytewise). */
static void test_siphash_unaligned(void **state)
{
    uint8_t buf[80];
    unsigned off, i;

    (void)state;
    for (off = 0; off < 8; off++) {
        for (i = 0; i < 64; i++)
            buf[off + i] = (uint8_t)i;
        uint64_t want = 0;
        for (i = 0; i < 8; i++)
            want |= (uint64_t)sip64[63][i] << (8 * i);
        CHECK(nb_siphash24(0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull,
                           buf + off, 63) == want,
              "offset %u", off);
    }
}

/* ---------------------------------------------------- cohort point */

/* From an independent Python SipHash-2-4 (written from the paper): the
 * high 32 bits of SipHash under "nobrick cohort 1" of
 * len(rollout) || rollout || device. */
static void test_point_vectors(void **state)
{
    static const struct {
        const char *r, *d;
        uint32_t point;
    } v[] = {
        {"r-1", "dev-0001", 0x35148fdbu},
        {"r-1", "dev-0002", 0xb1bfec45u},
        {"rollout-42", "d-1", 0x480bcb9eu},
        {"", "", 0xb5d54330u},
        {"ab", "c", 0xff352622u},
        {"a", "bc", 0xd72958ccu},
    };
    unsigned i;

    (void)state;
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint32_t got = nb_cohort_point(v[i].r, v[i].d);
        CHECK(got == v[i].point, "point(\"%s\", \"%s\") = %08x, want %08x",
              v[i].r, v[i].d, got, v[i].point);
    }
}

/* The point is SipHash of the message spelled out here, for every split
 * of lengths (the code feeds the message in three pieces), and the cut
 * of long IDs: rollout to 255 bytes, device to 256. */
static void test_point_message(void **state)
{
    static char r[301], d[301];
    static uint8_t msg[1 + 255 + 256];
    const uint64_t k0 = 0x206b636972626f6eull; /* "nobrick " */
    const uint64_t k1 = 0x312074726f686f63ull; /* "cohort 1" */
    unsigned rl, dl, i;

    (void)state;
    for (i = 0; i < 300; i++) {
        r[i] = (char)('a' + i % 26);
        d[i] = (char)('0' + i % 10);
    }
    for (rl = 0; rl <= 300; rl += rl < 20 ? 1 : 47) {
        for (dl = 0; dl <= 300; dl += dl < 20 ? 1 : 53) {
            unsigned cr = rl > 255 ? 255 : rl, cd = dl > 256 ? 256 : dl;
            uint32_t want;
            r[rl] = d[dl] = '\0';
            msg[0] = (uint8_t)cr;
            memcpy(msg + 1, r, cr);
            memcpy(msg + 1 + cr, d, cd);
            want = (uint32_t)(nb_siphash24(k0, k1, msg, 1 + cr + cd) >> 32);
            CHECK(nb_cohort_point(r, d) == want,
                  "rollout length %u, device length %u", rl, dl);
            r[rl] = (char)('a' + rl % 26);
            d[dl] = (char)('0' + dl % 10);
        }
    }
}

static void test_length_separation(void **state)
{
    (void)state;
    assert_true(nb_cohort_point("ab", "c") != nb_cohort_point("a", "bc"));
    assert_true(nb_cohort_point("", "abc") != nb_cohort_point("a", "bc"));
    assert_true(nb_cohort_point("abc", "") != nb_cohort_point("ab", "c"));
    /* Deterministic. */
    assert_true(nb_cohort_point("r-1", "dev-1") ==
                nb_cohort_point("r-1", "dev-1"));
}

/* Chi-square of the points over 100 equal buckets for 100,000 sequential
 * IDs (99 degrees of freedom: mean 99, sd 14; the bound 157 is about the
 * 99.98 % quantile; these IDs give 88 to 121); and the share in the
 * first 1 %. */
static void check_uniform(const char *rollout)
{
    static unsigned bucket[100];
    unsigned i, in1 = 0;
    char id[32];
    double chi = 0, expect = N_IDS / 100.0;

    memset(bucket, 0, sizeof(bucket));
    for (i = 0; i < N_IDS; i++) {
        uint32_t p;
        dev_id(id, sizeof(id), i);
        p = nb_cohort_point(rollout, id);
        bucket[((uint64_t)p * 100u) >> 32]++;
        in1 += (unsigned)nb_cohort_in(rollout, id, 10000);
    }
    for (i = 0; i < 100; i++)
        chi += (bucket[i] - expect) * (bucket[i] - expect) / expect;
    CHECK(chi < 157.0, "rollout %s: chi-square %.1f over 100 buckets",
          rollout, chi);
    /* Two-sided: far too even a spread (below the 0.02 % quantile, about
     * 57) means the points follow the IDs' sequence, as a multiplicative
     * hash of sequential IDs does, rather than a random order. */
    CHECK(chi > 55.0, "rollout %s: chi-square %.1f: too even to be random",
          rollout, chi);
    /* 1 % of 100,000 is 1000, sd 31: 800..1200 is over 6 sd. */
    CHECK(in1 >= 800 && in1 <= 1200, "rollout %s: %u of %u in the first 1 %%",
          rollout, in1, N_IDS);
    /* The first bucket is the first 1 % too. */
    CHECK(bucket[0] >= 800 && bucket[0] <= 1200, "rollout %s: bucket 0 %u",
          rollout, bucket[0]);
}

static void test_uniform(void **state)
{
    (void)state;
    check_uniform("r-1");
    check_uniform("r-2");
    check_uniform("rollout-2025-11-fw-1.1.0");
}

/* The first 10 % of two rollouts overlap in about 1 % of the devices (as
 * for independent orders), and their points are uncorrelated. */
static void check_independent(const char *a, const char *b)
{
    unsigned i, both = 0, in_a = 0;
    double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0, cov, n = N_IDS;
    char id[32];

    for (i = 0; i < N_IDS; i++) {
        double x, y;
        int ia, ib;
        dev_id(id, sizeof(id), i);
        ia = nb_cohort_in(a, id, 100000);
        ib = nb_cohort_in(b, id, 100000);
        in_a += (unsigned)ia;
        both += (unsigned)(ia && ib);
        x = nb_cohort_point(a, id) / 4294967296.0;
        y = nb_cohort_point(b, id) / 4294967296.0;
        sa += x;
        sb += y;
        saa += x * x;
        sbb += y * y;
        sab += x * y;
    }
    /* Expected 1000 (sd 31); 700..1300 is about 10 sd. */
    CHECK(both >= 700 && both <= 1300,
          "rollouts %s/%s: first 10 %% overlap in %u of %u", a, b, both,
          N_IDS);
    CHECK(in_a >= 9400 && in_a <= 10600, "rollout %s: %u in the first 10 %%",
          a, in_a);
    /* Pearson's r = cov / sqrt(var_a var_b); its sd for independent
     * samples is 1/sqrt(n) = 0.0032, so |r| < 0.02 is over 6 sd.
     * Compared squared, without libm. */
    cov = n * sab - sa * sb;
    CHECK(cov * cov < 0.02 * 0.02 * (n * saa - sa * sa) * (n * sbb - sb * sb),
          "rollouts %s/%s: correlation r^2 = %.6f", a, b,
          cov * cov / ((n * saa - sa * sa) * (n * sbb - sb * sb)));
}

static void test_independent_rollouts(void **state)
{
    (void)state;
    check_independent("r-1", "r-2");
    check_independent("r-1", "r-10");
    check_independent("pkg-a", "pkg-b");
}

/* Reached at a share implies reached at every larger share; the ppm
 * boundary is exactly point * 10^6 < ppm * 2^32. */
static void test_stable_and_boundary(void **state)
{
    static const uint32_t shares[] = {1, 10, 100, 1000, 10000, 50000,
                                      100000, 250000, 500000, 999999};
    unsigned i, k;
    char id[32];

    (void)state;
    for (i = 0; i < 20000; i++) {
        uint32_t p, first;
        dev_id(id, sizeof(id), i);
        for (k = 0; k + 1 < sizeof(shares) / sizeof(shares[0]); k++)
            CHECK(!nb_cohort_in("r-7", id, shares[k]) ||
                      nb_cohort_in("r-7", id, shares[k + 1]),
                  "%s: in at %u ppm, out at %u ppm", id, shares[k],
                  shares[k + 1]);
        CHECK(!nb_cohort_in("r-7", id, 10000) ||
                  nb_cohort_in("r-7", id, 100000),
              "%s: in at 1 %%, out at 10 %%", id);
        /* The smallest share that reaches this device. */
        p = nb_cohort_point("r-7", id);
        first = (uint32_t)(((uint64_t)p * 1000000u) >> 32) + 1u;
        CHECK(nb_cohort_in("r-7", id, first), "%s: point %08x out at %u",
              id, p, first);
        CHECK(!nb_cohort_in("r-7", id, first - 1), "%s: point %08x in at %u",
              id, p, first - 1);
    }
}

static void test_ppm_edges(void **state)
{
    unsigned i, in = 0;
    char id[32];

    (void)state;
    for (i = 0; i < N_IDS; i++) {
        dev_id(id, sizeof(id), i);
        CHECK(!nb_cohort_in("r-1", id, 0), "%s in at 0 ppm", id);
        CHECK(nb_cohort_in("r-1", id, 1000000), "%s out at 100 %%", id);
        CHECK(nb_cohort_in("r-1", id, 4000000000u), "%s out above 100 %%",
              id);
        in += (unsigned)nb_cohort_in("r-1", id, 1);
    }
    /* 1 ppm of 100,000: expected 0.1 devices. */
    assert_true(in <= 3);
    /* A device exactly on a boundary (found by search, confirmed by the
     * Python implementation): point 0xc0000000 is 75 % of 2^32, so it is
     * outside the first 75 % (the range is half-open) and inside at
     * 750001 ppm. */
    assert_true(nb_cohort_point("r-edge", "dev-170507255") == 0xc0000000u);
    assert_false(nb_cohort_in("r-edge", "dev-170507255", 750000));
    assert_true(nb_cohort_in("r-edge", "dev-170507255", 750001));
}

/* ------------------------------------------------------ fixed residue */

static void test_fixed(void **state)
{
    static unsigned count[10];
    unsigned i;
    char id[32];

    (void)state;
    assert_int_equal(nb_cohort_fixed("dev-0042", 10), 2);
    assert_int_equal(nb_cohort_fixed("dev-0042", 100), 42);
    assert_int_equal(nb_cohort_fixed("42", 5), 2);
    assert_int_equal(nb_cohort_fixed("sim-1", 2), 1);
    assert_int_equal(nb_cohort_fixed("a7b12", 10), 2);
    /* The last 18 digits: 1234567890123456789 is cut to
     * 234567890123456789 (the two differ modulo 1000000007). */
    assert_true(1234567890123456789ull % 1000000007ull !=
                234567890123456789ull % 1000000007ull);
    assert_int_equal(nb_cohort_fixed("x1234567890123456789", 1000000007u),
                     234567890123456789ull % 1000000007ull);
    assert_int_equal(nb_cohort_fixed("999999999999999999", 1000000007u),
                     999999999999999999ull % 1000000007ull);
    /* n = 0 and n = 1: residue 0. */
    assert_int_equal(nb_cohort_fixed("dev-0042", 0), 0);
    assert_int_equal(nb_cohort_fixed("dev-0042", 1), 0);
    assert_int_equal(nb_cohort_fixed("abc", 0), 0);
    assert_int_equal(nb_cohort_fixed("abc", 1), 0);
    /* No trailing digit: SipHash of the ID under the cohort key, modulo n
     * (independent Python values). */
    assert_int_equal(nb_cohort_fixed("abc", 10), 6);
    assert_int_equal(nb_cohort_fixed("abc", 7), 4);
    assert_int_equal(nb_cohort_fixed("sensor-x", 10), 1);
    assert_int_equal(nb_cohort_fixed("dev-", 10), 9);
    assert_int_equal(nb_cohort_fixed("", 10), nb_cohort_fixed("", 10));
    /* Digit-free IDs spread over the residues: 1000 IDs, expected 100
     * per residue (sd 9.5). */
    memset(count, 0, sizeof(count));
    for (i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "node-%c%c%c", 'a' + i / 100,
                 'a' + i / 10 % 10, 'a' + i % 10);
        count[nb_cohort_fixed(id, 10)]++;
    }
    for (i = 0; i < 10; i++)
        CHECK(count[i] >= 60 && count[i] <= 140, "residue %u: %u of 1000", i,
              count[i]);
    /* Numeric IDs follow their number exactly. */
    for (i = 0; i < 1000; i++) {
        dev_id(id, sizeof(id), i);
        CHECK(nb_cohort_fixed(id, 7) == i % 7, "%s mod 7", id);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash_reference_vectors),
        cmocka_unit_test(test_siphash_unaligned),
        cmocka_unit_test(test_point_vectors),
        cmocka_unit_test(test_point_message),
        cmocka_unit_test(test_length_separation),
        cmocka_unit_test(test_uniform),
        cmocka_unit_test(test_independent_rollouts),
        cmocka_unit_test(test_stable_and_boundary),
        cmocka_unit_test(test_ppm_edges),
        cmocka_unit_test(test_fixed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
