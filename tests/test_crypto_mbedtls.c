/* test_crypto_mbedtls.c - the mbedTLS crypto port and the core helpers
 * over it (nb_sha256, nb_crypto_check), checked against the FIPS 180-2
 * SHA-256 test vectors and the ECDSA P-256/SHA-256 vectors of RFC 6979
 * appendix A.2.5, not against our own code.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "nb_crypto.h"
#include "nb_crypto_mbedtls.h"
#include "nb_err.h"

/* FIPS 180-2, appendix B.1: "abc". */
static const uint8_t digest_abc[NB_SHA256_LEN] = {
    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde,
    0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
    0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
};

/* FIPS 180-2, appendix B.2: the 448-bit (56-byte) message. */
static const char msg_448[] =
    "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
static const uint8_t digest_448[NB_SHA256_LEN] = {
    0x24, 0x8d, 0x6a, 0x61, 0xd2, 0x06, 0x38, 0xb8, 0xe5, 0xc0, 0x26, 0x93,
    0x0c, 0x3e, 0x60, 0x39, 0xa3, 0x3c, 0xe4, 0x59, 0x64, 0xff, 0x21, 0x67,
    0xf6, 0xec, 0xed, 0xd4, 0x19, 0xdb, 0x06, 0xc1,
};

/* FIPS 180-2, appendix B.3: one million 'a'. */
static const uint8_t digest_million_a[NB_SHA256_LEN] = {
    0xcd, 0xc7, 0x6e, 0x5c, 0x99, 0x14, 0xfb, 0x92, 0x81, 0xa1, 0xc7, 0xe2,
    0x84, 0xd7, 0x3e, 0x67, 0xf1, 0x80, 0x9a, 0x48, 0xa4, 0x97, 0x20, 0x0e,
    0x04, 0x6d, 0x39, 0xcc, 0xc7, 0x11, 0x2c, 0xd0,
};

/* SHA-256 of the empty message (FIPS 180-4 examples). */
static const uint8_t digest_empty[NB_SHA256_LEN] = {
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8,
    0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
    0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
};

#define MILLION 1000000u

struct fixture {
    struct nb_crypto c;
    struct nb_mbedtls_crypto m;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    nb_crypto_mbedtls_init(&f->c, &f->m);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    nb_crypto_mbedtls_free(&f->c, &f->m);
    free(f);
    return 0;
}

/* Hash `data` through the port's callbacks, fed in chunks of `chunk`
 * bytes (0 = one update). */
static void hash_chunked(const struct nb_crypto *c, const uint8_t *data,
                         size_t len, size_t chunk, uint8_t out[NB_SHA256_LEN])
{
    size_t off = 0;
    assert_int_equal(c->sha256_start(c->ctx), NB_OK);
    if (chunk == 0)
        chunk = len;
    while (off < len) {
        size_t n = len - off < chunk ? len - off : chunk;
        assert_int_equal(c->sha256_update(c->ctx, data + off, n), NB_OK);
        off += n;
    }
    assert_int_equal(c->sha256_finish(c->ctx, out), NB_OK);
}

static void test_init_fills_interface(void **state)
{
    struct fixture *f = *state;
    assert_ptr_equal(f->c.ctx, &f->m);
    assert_int_equal(nb_crypto_check(&f->c), NB_OK);
}

static void test_abc(void **state)
{
    struct fixture *f = *state;
    uint8_t d[NB_SHA256_LEN];
    assert_int_equal(nb_sha256(&f->c, "abc", 3, d), NB_OK);
    assert_memory_equal(d, digest_abc, NB_SHA256_LEN);
}

static void test_448_bit(void **state)
{
    struct fixture *f = *state;
    uint8_t d[NB_SHA256_LEN];
    assert_int_equal(strlen(msg_448), 56);
    assert_int_equal(nb_sha256(&f->c, msg_448, 56, d), NB_OK);
    assert_memory_equal(d, digest_448, NB_SHA256_LEN);
}

static void test_empty(void **state)
{
    struct fixture *f = *state;
    uint8_t d[NB_SHA256_LEN];
    assert_int_equal(nb_sha256(&f->c, "", 0, d), NB_OK);
    assert_memory_equal(d, digest_empty, NB_SHA256_LEN);
    /* A NULL buffer of length zero is the empty message too. */
    assert_int_equal(nb_sha256(&f->c, NULL, 0, d), NB_OK);
    assert_memory_equal(d, digest_empty, NB_SHA256_LEN);
}

static void test_million_a(void **state)
{
    struct fixture *f = *state;
    uint8_t d[NB_SHA256_LEN];
    uint8_t *buf = malloc(MILLION);
    assert_non_null(buf);
    memset(buf, 'a', MILLION);

    /* One shot through the core helper. */
    assert_int_equal(nb_sha256(&f->c, buf, MILLION, d), NB_OK);
    assert_memory_equal(d, digest_million_a, NB_SHA256_LEN);

    /* 1000 updates of 1000 bytes, as FIPS 180-2 describes it. */
    hash_chunked(&f->c, buf, MILLION, 1000, d);
    assert_memory_equal(d, digest_million_a, NB_SHA256_LEN);

    /* An odd chunk size that never lines up with the 64-byte block. */
    hash_chunked(&f->c, buf, MILLION, 4093, d);
    assert_memory_equal(d, digest_million_a, NB_SHA256_LEN);
    free(buf);
}

/* Every split of a message into two updates, and several chunk sizes,
 * gives the digest of a single update. */
static void test_split_updates(void **state)
{
    struct fixture *f = *state;
    static const size_t chunks[] = { 1, 3, 7, 63, 64, 65, 127, 128, 129 };
    uint8_t msg[300];
    uint8_t whole[NB_SHA256_LEN], d[NB_SHA256_LEN];
    size_t i, cut;

    for (i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)(i * 131u + 7u);
    assert_int_equal(nb_sha256(&f->c, msg, sizeof(msg), whole), NB_OK);

    for (cut = 0; cut <= sizeof(msg); cut++) {
        assert_int_equal(f->c.sha256_start(f->c.ctx), NB_OK);
        assert_int_equal(f->c.sha256_update(f->c.ctx, msg, cut), NB_OK);
        assert_int_equal(
            f->c.sha256_update(f->c.ctx, msg + cut, sizeof(msg) - cut), NB_OK);
        assert_int_equal(f->c.sha256_finish(f->c.ctx, d), NB_OK);
        assert_memory_equal(d, whole, NB_SHA256_LEN);
    }
    for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        hash_chunked(&f->c, msg, sizeof(msg), chunks[i], d);
        assert_memory_equal(d, whole, NB_SHA256_LEN);
    }

    /* Split FIPS vectors too. */
    hash_chunked(&f->c, (const uint8_t *)msg_448, 56, 5, d);
    assert_memory_equal(d, digest_448, NB_SHA256_LEN);
    hash_chunked(&f->c, (const uint8_t *)"abc", 3, 1, d);
    assert_memory_equal(d, digest_abc, NB_SHA256_LEN);
}

/* A start abandons any hash in progress: the struct can be reused. */
static void test_restart(void **state)
{
    struct fixture *f = *state;
    uint8_t d[NB_SHA256_LEN];
    assert_int_equal(f->c.sha256_start(f->c.ctx), NB_OK);
    assert_int_equal(f->c.sha256_update(f->c.ctx, "garbage", 7), NB_OK);
    assert_int_equal(nb_sha256(&f->c, "abc", 3, d), NB_OK);
    assert_memory_equal(d, digest_abc, NB_SHA256_LEN);
    assert_int_equal(nb_sha256(&f->c, "abc", 3, d), NB_OK);
    assert_memory_equal(d, digest_abc, NB_SHA256_LEN);
}

static void test_bad_arguments(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(f->c.sha256_start(NULL), NB_ERR_INVAL);
    assert_int_equal(f->c.sha256_start(f->c.ctx), NB_OK);
    assert_int_equal(f->c.sha256_update(f->c.ctx, NULL, 1), NB_ERR_INVAL);
    assert_int_equal(f->c.sha256_finish(f->c.ctx, NULL), NB_ERR_INVAL);
}

static void test_crypto_check(void **state)
{
    struct fixture *f = *state;
    struct nb_crypto c;

    assert_int_equal(nb_crypto_check(NULL), NB_ERR_INVAL);

    memset(&c, 0, sizeof(c));
    assert_int_equal(nb_crypto_check(&c), NB_ERR_INVAL);

    c = f->c;
    c.sha256_start = NULL;
    assert_int_equal(nb_crypto_check(&c), NB_ERR_INVAL);
    c = f->c;
    c.sha256_update = NULL;
    assert_int_equal(nb_crypto_check(&c), NB_ERR_INVAL);
    c = f->c;
    c.sha256_finish = NULL;
    assert_int_equal(nb_crypto_check(&c), NB_ERR_INVAL);

    c = f->c;
    assert_int_equal(nb_crypto_check(&c), NB_OK);
}

/* A port whose update fails: nb_sha256 must pass the error up and not
 * call finish. */
static int finish_calls;
static nb_err failing_start(void *ctx) { (void)ctx; return NB_OK; }
static nb_err failing_update(void *ctx, const void *data, size_t len)
{
    (void)ctx; (void)data; (void)len;
    return NB_ERR_IO;
}
static nb_err counting_finish(void *ctx, uint8_t digest[NB_SHA256_LEN])
{
    (void)ctx; (void)digest;
    finish_calls++;
    return NB_OK;
}

static void test_sha256_propagates_errors(void **state)
{
    struct nb_crypto c = { NULL, failing_start, failing_update,
                           counting_finish, NULL };
    uint8_t d[NB_SHA256_LEN];
    (void)state;
    finish_calls = 0;
    assert_int_equal(nb_sha256(&c, "abc", 3, d), NB_ERR_IO);
    assert_int_equal(finish_calls, 0);
}

static void test_free_clears(void **state)
{
    struct nb_crypto c;
    struct nb_mbedtls_crypto m;
    (void)state;
    nb_crypto_mbedtls_init(&c, &m);
    nb_crypto_mbedtls_free(&c, &m);
    assert_int_equal(nb_crypto_check(&c), NB_ERR_INVAL);
    nb_crypto_mbedtls_free(&c, &m); /* twice is harmless */
}

/* ------------------------------------------------------------- ECDSA */

/* RFC 6979, appendix A.2.5: P-256, the key pair's public point U, and the
 * SHA-256 signatures of "sample" and "test". */
static const char rfc_ux[] =
    "60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6";
static const char rfc_uy[] =
    "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299";
static const struct {
    const char *msg, *r, *s;
} rfc_sigs[] = {
    { "sample",
      "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716",
      "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8" },
    { "test",
      "F1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367",
      "019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083" },
};
#define RFC_SIG_COUNT (sizeof(rfc_sigs) / sizeof(rfc_sigs[0]))

/* P-256: the field prime p and the group order n (SEC 2 / FIPS 186-4). */
static const char p256_p[] =
    "FFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF";
static const char p256_n[] =
    "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551";

static void unhex(const char *hex, uint8_t *out, size_t len)
{
    size_t i;
    assert_int_equal(strlen(hex), 2 * len);
    for (i = 0; i < len; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

static void rfc_pub(uint8_t pub[65])
{
    pub[0] = 0x04;
    unhex(rfc_ux, pub + 1, 32);
    unhex(rfc_uy, pub + 33, 32);
}

/* Hash and signature of RFC vector `i`. */
static void rfc_vector(const struct nb_crypto *c, size_t i,
                       uint8_t hash[NB_SHA256_LEN], uint8_t sig[64])
{
    assert_int_equal(
        nb_sha256(c, rfc_sigs[i].msg, strlen(rfc_sigs[i].msg), hash), NB_OK);
    unhex(rfc_sigs[i].r, sig, 32);
    unhex(rfc_sigs[i].s, sig + 32, 32);
}

static nb_err verify(const struct nb_crypto *c, const uint8_t pub[65],
                     const uint8_t hash[NB_SHA256_LEN], const uint8_t sig[64])
{
    return c->ecdsa_p256_verify(c->ctx, pub, hash, sig);
}

static void test_ecdsa_rfc6979(void **state)
{
    struct fixture *f = *state;
    uint8_t pub[65], hash[NB_SHA256_LEN], sig[64];
    size_t i;

    assert_non_null(f->c.ecdsa_p256_verify);
    rfc_pub(pub);
    for (i = 0; i < RFC_SIG_COUNT; i++) {
        rfc_vector(&f->c, i, hash, sig);
        assert_int_equal(verify(&f->c, pub, hash, sig), NB_OK);
    }
    /* Each signature belongs to its own message only. */
    rfc_vector(&f->c, 0, hash, sig);
    unhex(rfc_sigs[1].r, sig, 32);
    unhex(rfc_sigs[1].s, sig + 32, 32);
    assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);
}

/* Every single-bit flip of the hash, the signature or the public key
 * fails, and leaves the original valid. */
static void test_ecdsa_bit_flips(void **state)
{
    struct fixture *f = *state;
    uint8_t pub[65], hash[NB_SHA256_LEN], sig[64];
    size_t i, bit;

    rfc_pub(pub);
    for (i = 0; i < RFC_SIG_COUNT; i++) {
        rfc_vector(&f->c, i, hash, sig);
        for (bit = 0; bit < 8 * sizeof(hash); bit++) {
            hash[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            if (verify(&f->c, pub, hash, sig) != NB_ERR_SIGNATURE)
                fail_msg("vector %zu: hash bit %zu flipped verifies", i, bit);
            hash[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        for (bit = 0; bit < 8 * sizeof(sig); bit++) {
            sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            if (verify(&f->c, pub, hash, sig) != NB_ERR_SIGNATURE)
                fail_msg("vector %zu: sig bit %zu flipped verifies", i, bit);
            sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        for (bit = 0; bit < 8 * sizeof(pub); bit++) {
            pub[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            if (verify(&f->c, pub, hash, sig) != NB_ERR_SIGNATURE)
                fail_msg("vector %zu: pub bit %zu flipped verifies", i, bit);
            pub[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        assert_int_equal(verify(&f->c, pub, hash, sig), NB_OK);
    }
}

/* r and s must lie in [1, n-1]. */
static void test_ecdsa_bad_scalars(void **state)
{
    struct fixture *f = *state;
    uint8_t pub[65], hash[NB_SHA256_LEN], sig[64], good[64], n[32];
    int half;

    rfc_pub(pub);
    rfc_vector(&f->c, 0, hash, good);
    unhex(p256_n, n, 32);
    for (half = 0; half < 2; half++) {
        uint8_t *x = sig + 32 * half; /* r, then s */

        memcpy(sig, good, 64);
        memset(x, 0, 32); /* 0 */
        assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);

        memcpy(sig, good, 64);
        memcpy(x, n, 32); /* n */
        assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);

        memcpy(sig, good, 64);
        memcpy(x, n, 32);
        x[31]++; /* n + 1 (n ends in 0x51: no carry) */
        assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);

        memcpy(sig, good, 64);
        memset(x, 0xFF, 32); /* 2^256 - 1 */
        assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);
    }
    memset(sig, 0, 64); /* r = s = 0 */
    assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);
}

/* Keys that are not an uncompressed point on P-256. */
static void test_ecdsa_bad_points(void **state)
{
    struct fixture *f = *state;
    uint8_t good[65], pub[65], hash[NB_SHA256_LEN], sig[64];
    uint8_t p[32];
    int i;

    rfc_pub(good);
    rfc_vector(&f->c, 0, hash, sig);
    unhex(p256_p, p, 32);

    /* Off the curve: y + 1. */
    memcpy(pub, good, 65);
    pub[64] ^= 0x01;
    assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);

    /* Off the curve: (0, 0) and (1, 1). */
    memset(pub, 0, 65);
    pub[0] = 0x04;
    assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);
    pub[32] = 1;
    pub[64] = 1;
    assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);

    /* A coordinate not below p: x = p, then y = p. */
    memcpy(pub, good, 65);
    memcpy(pub + 1, p, 32);
    assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);
    memcpy(pub, good, 65);
    memcpy(pub + 33, p, 32);
    assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);

    /* The right X with another first byte: compressed (02, 03), hybrid
     * (06, 07), infinity (00). */
    {
        static const uint8_t firsts[] = { 0x00, 0x02, 0x03, 0x06, 0x07, 0xFF };
        for (i = 0; i < (int)sizeof(firsts); i++) {
            memcpy(pub, good, 65);
            pub[0] = firsts[i];
            assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);
        }
    }

    /* -U = (x, p - y) is on the curve, but it is another key. */
    {
        unsigned borrow = 0;
        memcpy(pub, good, 65);
        for (i = 31; i >= 0; i--) {
            int v = (int)p[i] - (int)good[33 + i] - (int)borrow;
            borrow = v < 0;
            pub[33 + i] = (uint8_t)(v + (borrow ? 256 : 0));
        }
        assert_int_equal(borrow, 0);
        assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);
    }

    /* NULL arguments are a failed verify, not a crash. */
    assert_int_equal(verify(&f->c, NULL, hash, sig), NB_ERR_SIGNATURE);
    assert_int_equal(verify(&f->c, good, NULL, sig), NB_ERR_SIGNATURE);
    assert_int_equal(verify(&f->c, good, hash, NULL), NB_ERR_SIGNATURE);
    assert_int_equal(verify(&f->c, good, hash, sig), NB_OK);
}

/* A verify in the middle of a hash leaves the hash alone. */
static void test_ecdsa_keeps_running_hash(void **state)
{
    struct fixture *f = *state;
    uint8_t pub[65], hash[NB_SHA256_LEN], sig[64], d[NB_SHA256_LEN];

    rfc_pub(pub);
    rfc_vector(&f->c, 0, hash, sig);
    assert_int_equal(f->c.sha256_start(f->c.ctx), NB_OK);
    assert_int_equal(f->c.sha256_update(f->c.ctx, "ab", 2), NB_OK);
    assert_int_equal(verify(&f->c, pub, hash, sig), NB_OK);
    assert_int_equal(f->c.sha256_update(f->c.ctx, "c", 1), NB_OK);
    assert_int_equal(f->c.sha256_finish(f->c.ctx, d), NB_OK);
    assert_memory_equal(d, digest_abc, NB_SHA256_LEN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_init_fills_interface, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_448_bit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_million_a, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_updates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crypto_check, setup, teardown),
        cmocka_unit_test(test_sha256_propagates_errors),
        cmocka_unit_test(test_free_clears),
        cmocka_unit_test_setup_teardown(test_ecdsa_rfc6979, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ecdsa_bit_flips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ecdsa_bad_scalars, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ecdsa_bad_points, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ecdsa_keeps_running_hash, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
