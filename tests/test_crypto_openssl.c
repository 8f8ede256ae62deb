/* test_crypto_openssl.c - the OpenSSL crypto port (ports/openssl) and the
 * host-side signing helpers (nb_sign_openssl.h).
 *
 * Checked against independent vectors: FIPS 180-2 for SHA-256, RFC 6979
 * appendix A.2.5 for ECDSA P-256/SHA-256, the fixed SubjectPublicKeyInfo
 * prefix of a P-256 key; and across libraries: signatures made with the
 * OpenSSL test keys verify through the mbedTLS port too, and the test
 * key derivation is recomputed with mbedTLS.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <mbedtls/bignum.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "nb_crypto.h"
#include "nb_crypto_mbedtls.h"
#include "nb_crypto_openssl.h"
#include "nb_err.h"
#include "nb_sign_openssl.h"

/* ---------------------------------------------------------- vectors */

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

/* DER SubjectPublicKeyInfo of a P-256 key, up to the point (RFC 5480):
 * SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING }. */
static const uint8_t spki_prefix[26] = {
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
    0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01,
    0x07, 0x03, 0x42, 0x00,
};

/* ---------------------------------------------------------- helpers */

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

struct fixture {
    struct nb_crypto c;  /* the OpenSSL port under test */
    struct nb_openssl_crypto o;
    struct nb_crypto mc; /* the mbedTLS port, for cross checks */
    struct nb_mbedtls_crypto m;
    char dir[64];        /* a private temporary directory */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    if (nb_crypto_openssl_init(&f->c, &f->o) != NB_OK) {
        free(f);
        return -1;
    }
    nb_crypto_mbedtls_init(&f->mc, &f->m);
    snprintf(f->dir, sizeof(f->dir), "/tmp/nb-crypto-openssl.XXXXXX");
    if (!mkdtemp(f->dir)) {
        nb_crypto_mbedtls_free(&f->mc, &f->m);
        nb_crypto_openssl_free(&f->c, &f->o);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", f->dir);
    nb_crypto_mbedtls_free(&f->mc, &f->m);
    nb_crypto_openssl_free(&f->c, &f->o);
    free(f);
    return 0;
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

/* ---------------------------------------------------------- SHA-256 */

static void test_init_fills_interface(void **state)
{
    struct fixture *f = *state;
    assert_ptr_equal(f->c.ctx, &f->o);
    assert_non_null(f->o.md);
    assert_non_null(f->c.ecdsa_p256_verify);
    assert_int_equal(nb_crypto_check(&f->c), NB_OK);
}

static void test_sha256_fips(void **state)
{
    struct fixture *f = *state;
    uint8_t d[NB_SHA256_LEN];
    uint8_t *buf;

    assert_int_equal(nb_sha256(&f->c, "abc", 3, d), NB_OK);
    assert_memory_equal(d, digest_abc, NB_SHA256_LEN);
    assert_int_equal(nb_sha256(&f->c, msg_448, 56, d), NB_OK);
    assert_memory_equal(d, digest_448, NB_SHA256_LEN);
    assert_int_equal(nb_sha256(&f->c, "", 0, d), NB_OK);
    assert_memory_equal(d, digest_empty, NB_SHA256_LEN);
    assert_int_equal(nb_sha256(&f->c, NULL, 0, d), NB_OK);
    assert_memory_equal(d, digest_empty, NB_SHA256_LEN);

    buf = malloc(MILLION);
    assert_non_null(buf);
    memset(buf, 'a', MILLION);
    assert_int_equal(nb_sha256(&f->c, buf, MILLION, d), NB_OK);
    assert_memory_equal(d, digest_million_a, NB_SHA256_LEN);
    hash_chunked(&f->c, buf, MILLION, 1000, d); /* as FIPS 180-2 says */
    assert_memory_equal(d, digest_million_a, NB_SHA256_LEN);
    hash_chunked(&f->c, buf, MILLION, 4093, d);
    assert_memory_equal(d, digest_million_a, NB_SHA256_LEN);
    hash_chunked(&f->c, buf, MILLION, 16384, d);
    assert_memory_equal(d, digest_million_a, NB_SHA256_LEN);
    free(buf);

    hash_chunked(&f->c, (const uint8_t *)msg_448, 56, 5, d);
    assert_memory_equal(d, digest_448, NB_SHA256_LEN);
    hash_chunked(&f->c, (const uint8_t *)"abc", 3, 1, d);
    assert_memory_equal(d, digest_abc, NB_SHA256_LEN);
}

/* Both ports agree on every length from 0 to 300 and every split. */
static void test_sha256_matches_mbedtls(void **state)
{
    struct fixture *f = *state;
    uint8_t msg[300], a[NB_SHA256_LEN], b[NB_SHA256_LEN];
    size_t i, len;

    for (i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)(i * 131u + 7u);
    for (len = 0; len <= sizeof(msg); len++) {
        assert_int_equal(nb_sha256(&f->c, msg, len, a), NB_OK);
        assert_int_equal(nb_sha256(&f->mc, msg, len, b), NB_OK);
        assert_memory_equal(a, b, NB_SHA256_LEN);
        /* split at len: two updates */
        assert_int_equal(f->c.sha256_start(f->c.ctx), NB_OK);
        assert_int_equal(f->c.sha256_update(f->c.ctx, msg, len), NB_OK);
        assert_int_equal(
            f->c.sha256_update(f->c.ctx, msg + len, sizeof(msg) - len), NB_OK);
        assert_int_equal(f->c.sha256_finish(f->c.ctx, a), NB_OK);
        assert_int_equal(nb_sha256(&f->mc, msg, sizeof(msg), b), NB_OK);
        assert_memory_equal(a, b, NB_SHA256_LEN);
    }
}

static void test_sha256_restart_and_args(void **state)
{
    struct fixture *f = *state;
    uint8_t d[NB_SHA256_LEN];

    assert_int_equal(f->c.sha256_start(f->c.ctx), NB_OK);
    assert_int_equal(f->c.sha256_update(f->c.ctx, "garbage", 7), NB_OK);
    assert_int_equal(nb_sha256(&f->c, "abc", 3, d), NB_OK);
    assert_memory_equal(d, digest_abc, NB_SHA256_LEN);

    assert_int_equal(f->c.sha256_start(NULL), NB_ERR_INVAL);
    assert_int_equal(f->c.sha256_start(f->c.ctx), NB_OK);
    assert_int_equal(f->c.sha256_update(f->c.ctx, NULL, 1), NB_ERR_INVAL);
    assert_int_equal(f->c.sha256_finish(f->c.ctx, NULL), NB_ERR_INVAL);
}

static void test_init_free(void **state)
{
    struct nb_crypto c;
    struct nb_openssl_crypto o;
    (void)state;
    assert_int_equal(nb_crypto_openssl_init(NULL, &o), NB_ERR_INVAL);
    assert_int_equal(nb_crypto_openssl_init(&c, NULL), NB_ERR_INVAL);
    assert_int_equal(nb_crypto_openssl_init(&c, &o), NB_OK);
    nb_crypto_openssl_free(&c, &o);
    assert_int_equal(nb_crypto_check(&c), NB_ERR_INVAL);
    assert_null(o.md);
    nb_crypto_openssl_free(&c, &o); /* twice is harmless */
    nb_crypto_openssl_free(NULL, NULL);
}

/* ------------------------------------------------------------ ECDSA */

static void test_ecdsa_rfc6979(void **state)
{
    struct fixture *f = *state;
    uint8_t pub[65], hash[NB_SHA256_LEN], sig[64];
    size_t i;

    rfc_pub(pub);
    for (i = 0; i < RFC_SIG_COUNT; i++) {
        rfc_vector(&f->c, i, hash, sig);
        assert_int_equal(verify(&f->c, pub, hash, sig), NB_OK);
        assert_int_equal(nb_openssl_ecdsa_p256_verify(pub, hash, sig), NB_OK);
    }
    rfc_vector(&f->c, 0, hash, sig);
    unhex(rfc_sigs[1].r, sig, 32);
    unhex(rfc_sigs[1].s, sig + 32, 32);
    assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);
}

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
        memset(x, 0, 32);
        assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);

        memcpy(sig, good, 64);
        memcpy(x, n, 32);
        assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);

        memcpy(sig, good, 64);
        memcpy(x, n, 32);
        x[31]++; /* n + 1 */
        assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);

        memcpy(sig, good, 64);
        memset(x, 0xFF, 32);
        assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);
    }
    memset(sig, 0, 64);
    assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);
}

static void test_ecdsa_bad_points(void **state)
{
    struct fixture *f = *state;
    static const uint8_t firsts[] = { 0x00, 0x02, 0x03, 0x06, 0x07, 0xFF };
    uint8_t good[65], pub[65], hash[NB_SHA256_LEN], sig[64], p[32];
    unsigned borrow = 0;
    int i;

    rfc_pub(good);
    rfc_vector(&f->c, 0, hash, sig);
    unhex(p256_p, p, 32);

    memcpy(pub, good, 65);
    pub[64] ^= 0x01; /* off the curve */
    assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);

    memset(pub, 0, 65);
    pub[0] = 0x04; /* (0, 0) */
    assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);
    pub[32] = 1;
    pub[64] = 1; /* (1, 1) */
    assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);

    memcpy(pub, good, 65);
    memcpy(pub + 1, p, 32); /* x = p */
    assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);
    memcpy(pub, good, 65);
    memcpy(pub + 33, p, 32); /* y = p */
    assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);

    /* Compressed, hybrid and infinity forms are refused. A compressed
     * 02/03 || X is a valid encoding OpenSSL itself would accept. */
    for (i = 0; i < (int)sizeof(firsts); i++) {
        memcpy(pub, good, 65);
        pub[0] = firsts[i];
        assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);
    }

    /* -U: on the curve, another key. */
    memcpy(pub, good, 65);
    for (i = 31; i >= 0; i--) {
        int v = (int)p[i] - (int)good[33 + i] - (int)borrow;
        borrow = v < 0;
        pub[33 + i] = (uint8_t)(v + (borrow ? 256 : 0));
    }
    assert_int_equal(borrow, 0);
    assert_int_equal(verify(&f->c, pub, hash, sig), NB_ERR_SIGNATURE);

    assert_int_equal(verify(&f->c, NULL, hash, sig), NB_ERR_SIGNATURE);
    assert_int_equal(verify(&f->c, good, NULL, sig), NB_ERR_SIGNATURE);
    assert_int_equal(verify(&f->c, good, hash, NULL), NB_ERR_SIGNATURE);
    assert_int_equal(verify(&f->c, good, hash, sig), NB_OK);
}

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

/* ------------------------------------------------- test keys, signer */

/* The documented derivation, recomputed with mbedTLS:
 * d = (SHA-256("nobrick test key" || seed_be64) mod (n - 1)) + 1. */
static void mbedtls_test_pub(struct fixture *f, uint64_t seed,
                             uint8_t pub[65])
{
    uint8_t in[24], h[NB_SHA256_LEN];
    mbedtls_ecp_group grp;
    mbedtls_ecp_point q;
    mbedtls_mpi d, nm1;
    size_t olen = 0;
    int i;

    memcpy(in, "nobrick test key", 16);
    for (i = 0; i < 8; i++)
        in[16 + i] = (uint8_t)(seed >> (56 - 8 * i));
    assert_int_equal(nb_sha256(&f->mc, in, sizeof(in), h), NB_OK);

    mbedtls_ecp_group_init(&grp);
    mbedtls_ecp_point_init(&q);
    mbedtls_mpi_init(&d);
    mbedtls_mpi_init(&nm1);
    assert_int_equal(mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1), 0);
    assert_int_equal(mbedtls_mpi_read_binary(&d, h, sizeof(h)), 0);
    assert_int_equal(mbedtls_mpi_sub_int(&nm1, &grp.N, 1), 0);
    assert_int_equal(mbedtls_mpi_mod_mpi(&d, &d, &nm1), 0);
    assert_int_equal(mbedtls_mpi_add_int(&d, &d, 1), 0);
    /* NULL RNG: mbedTLS 2.28 blinds with its internal one. */
    assert_int_equal(mbedtls_ecp_mul(&grp, &q, &d, &grp.G, NULL, NULL), 0);
    assert_int_equal(mbedtls_ecp_point_write_binary(
                         &grp, &q, MBEDTLS_ECP_PF_UNCOMPRESSED, &olen, pub, 65),
                     0);
    assert_int_equal(olen, 65);
    mbedtls_mpi_free(&nm1);
    mbedtls_mpi_free(&d);
    mbedtls_ecp_point_free(&q);
    mbedtls_ecp_group_free(&grp);
}

static void test_key_from_seed(void **state)
{
    struct fixture *f = *state;
    static const uint64_t seeds[] = { 0, 1, 2, 42, 0xFFFFFFFFFFFFFFFFull };
    uint8_t pubs[5][65], again[65], expect[65];
    struct nb_signer s;
    EVP_PKEY *k;
    size_t i, j;

    for (i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        assert_int_equal(nb_openssl_key_from_seed(seeds[i], &k), NB_OK);
        assert_int_equal(nb_openssl_signer(k, &s), NB_OK);
        memcpy(pubs[i], s.pub, 65);
        assert_int_equal(nb_openssl_key_pub(k, again), NB_OK);
        assert_memory_equal(again, s.pub, 65);
        EVP_PKEY_free(k);

        /* deterministic */
        assert_int_equal(nb_openssl_key_from_seed(seeds[i], &k), NB_OK);
        assert_int_equal(nb_openssl_key_pub(k, again), NB_OK);
        assert_memory_equal(again, pubs[i], 65);
        EVP_PKEY_free(k);

        /* as documented, by another library */
        mbedtls_test_pub(f, seeds[i], expect);
        assert_memory_equal(expect, pubs[i], 65);

        for (j = 0; j < i; j++)
            assert_memory_not_equal(pubs[i], pubs[j], 65);
    }
    assert_int_equal(nb_openssl_key_from_seed(1, NULL), NB_ERR_INVAL);
}

/* Sign with a test key; verify through BOTH ports. */
static void test_sign_verify_cross_library(void **state)
{
    struct fixture *f = *state;
    uint8_t hash[NB_SHA256_LEN], sig[64];
    struct nb_signer s;
    EVP_PKEY *k;
    uint64_t seed;
    int padded_r = 0, padded_s = 0;
    unsigned i;

    for (seed = 1; seed <= 4; seed++) {
        assert_int_equal(nb_openssl_key_from_seed(seed, &k), NB_OK);
        assert_int_equal(nb_openssl_signer(k, &s), NB_OK);
        assert_ptr_equal(s.ctx, k);
        for (i = 0; i < 8; i++) {
            char msg[32];
            snprintf(msg, sizeof(msg), "message %u/%u", (unsigned)seed, i);
            assert_int_equal(nb_sha256(&f->c, msg, strlen(msg), hash), NB_OK);
            assert_int_equal(s.sign(s.ctx, hash, sig), NB_OK);
            assert_int_equal(verify(&f->c, s.pub, hash, sig), NB_OK);
            assert_int_equal(verify(&f->mc, s.pub, hash, sig), NB_OK);
            /* a flipped bit fails in both */
            hash[i] ^= 0x80;
            assert_int_equal(verify(&f->c, s.pub, hash, sig), NB_ERR_SIGNATURE);
            assert_int_equal(verify(&f->mc, s.pub, hash, sig),
                             NB_ERR_SIGNATURE);
            hash[i] ^= 0x80;
            sig[63 - i] ^= 0x01;
            assert_int_equal(verify(&f->c, s.pub, hash, sig), NB_ERR_SIGNATURE);
            assert_int_equal(verify(&f->mc, s.pub, hash, sig),
                             NB_ERR_SIGNATURE);
        }
        EVP_PKEY_free(k);
    }

    /* Zero padding: sign until r and s have each come out with a leading
     * zero byte (1 in 256 each), and check those verify in both. */
    assert_int_equal(nb_openssl_key_from_seed(7, &k), NB_OK);
    assert_int_equal(nb_openssl_signer(k, &s), NB_OK);
    assert_int_equal(nb_sha256(&f->c, "padding", 7, hash), NB_OK);
    for (i = 0; i < 20000 && !(padded_r && padded_s); i++) {
        assert_int_equal(s.sign(s.ctx, hash, sig), NB_OK);
        if (sig[0] == 0 || sig[32] == 0) {
            padded_r |= sig[0] == 0;
            padded_s |= sig[32] == 0;
            assert_int_equal(verify(&f->c, s.pub, hash, sig), NB_OK);
            assert_int_equal(verify(&f->mc, s.pub, hash, sig), NB_OK);
        }
    }
    assert_true(padded_r && padded_s);
    assert_int_equal(s.sign(s.ctx, NULL, sig), NB_ERR_INVAL);
    EVP_PKEY_free(k);
}

/* A P-384 key, in PEM, public or private. */
static void p384_pem(int private_key, char *out, size_t cap)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    long n;
    assert_non_null(k);
    assert_non_null(b);
    if (private_key)
        assert_int_equal(
            PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
    else
        assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    n = BIO_get_mem_data(b, &data);
    assert_true(n > 0 && (size_t)n < cap);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    BIO_free(b);
    EVP_PKEY_free(k);
}

static void test_signer_refuses_other_keys(void **state)
{
    struct nb_signer s;
    uint8_t pub[65], hash[NB_SHA256_LEN] = { 0 }, sig[64];
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    (void)state;

    assert_non_null(k);
    assert_int_equal(nb_openssl_signer(k, &s), NB_ERR_UNSUPPORTED);
    assert_int_equal(nb_openssl_key_pub(k, pub), NB_ERR_UNSUPPORTED);
    EVP_PKEY_free(k);
    k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(k);
    assert_int_equal(nb_openssl_signer(k, &s), NB_ERR_UNSUPPORTED);
    EVP_PKEY_free(k);
    assert_int_equal(nb_openssl_signer(NULL, &s), NB_ERR_INVAL);

    /* A public key alone: a signer, but its signing fails. */
    rfc_pub(pub);
    assert_int_equal(nb_openssl_pkey_from_pub(pub, &k), NB_OK);
    assert_int_equal(nb_openssl_signer(k, &s), NB_OK);
    assert_memory_equal(s.pub, pub, 65);
    assert_int_equal(s.sign(s.ctx, hash, sig), NB_ERR_IO);
    EVP_PKEY_free(k);
}

/* ------------------------------------------------------------- PEM */

static void test_pub_pem(void **state)
{
    char pem[NB_OPENSSL_PUB_PEM_MAX], other[1024];
    uint8_t pub[65], back[65], der[128];
    const char *begin = "-----BEGIN PUBLIC KEY-----\n";
    const char *end = "-----END PUBLIC KEY-----\n";
    char b64[256];
    size_t len = 0, blen = 0, i;
    int n;
    (void)state;

    rfc_pub(pub);
    assert_int_equal(nb_openssl_pub_to_pem(pub, pem, sizeof(pem), &len), NB_OK);
    assert_int_equal(strlen(pem), len);
    assert_int_equal(len, 178);
    assert_memory_equal(pem, begin, strlen(begin));
    assert_string_equal(pem + len - strlen(end), end);

    /* Independent check: the base64 body is the RFC 5480 DER prefix
     * followed by the point. */
    for (i = strlen(begin); i < len - strlen(end); i++)
        if (pem[i] != '\n')
            b64[blen++] = pem[i];
    n = EVP_DecodeBlock(der, (const unsigned char *)b64, (int)blen);
    assert_true(n >= 91); /* DecodeBlock counts the '=' padding too */
    assert_memory_equal(der, spki_prefix, sizeof(spki_prefix));
    assert_memory_equal(der + sizeof(spki_prefix), pub, 65);

    /* and back */
    memset(back, 0, sizeof(back));
    assert_int_equal(nb_openssl_pub_from_pem(pem, len, back), NB_OK);
    assert_memory_equal(back, pub, 65);
    /* surrounded by other text (a PEM file may hold comments) */
    snprintf(other, sizeof(other), "a comment\n%s", pem);
    assert_int_equal(nb_openssl_pub_from_pem(other, strlen(other), back),
                     NB_OK);
    assert_memory_equal(back, pub, 65);

    /* buffer too small; a point off the curve */
    assert_int_equal(nb_openssl_pub_to_pem(pub, pem, 178, NULL), NB_ERR_NOMEM);
    pub[64] ^= 1;
    assert_int_equal(nb_openssl_pub_to_pem(pub, pem, sizeof(pem), NULL),
                     NB_ERR_INVAL);
    pub[64] ^= 1;
    pub[0] = 0x02;
    assert_int_equal(nb_openssl_pub_to_pem(pub, pem, sizeof(pem), NULL),
                     NB_ERR_INVAL);

    /* not a key; truncated; another curve */
    assert_int_equal(nb_openssl_pub_from_pem("hello", 5, back),
                     NB_ERR_MALFORMED);
    rfc_pub(pub);
    assert_int_equal(nb_openssl_pub_to_pem(pub, pem, sizeof(pem), &len), NB_OK);
    assert_int_equal(nb_openssl_pub_from_pem(pem, len / 2, back),
                     NB_ERR_MALFORMED);
    p384_pem(0, other, sizeof(other));
    assert_int_equal(nb_openssl_pub_from_pem(other, strlen(other), back),
                     NB_ERR_UNSUPPORTED);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static void test_key_pem_files(void **state)
{
    struct fixture *f = *state;
    char path[128], other[2048];
    struct nb_signer s1, s2;
    uint8_t hash[NB_SHA256_LEN], sig[64];
    struct stat st;
    EVP_PKEY *k, *back;
    BIO *b;

    snprintf(path, sizeof(path), "%s/key.pem", f->dir);
    assert_int_equal(nb_openssl_key_from_seed(3, &k), NB_OK);
    assert_int_equal(nb_openssl_key_save_pem(path, k), NB_OK);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* never overwrites */
    assert_int_equal(nb_openssl_key_save_pem(path, k), NB_ERR_DENIED);

    assert_int_equal(nb_openssl_key_load_pem(path, &back), NB_OK);
    assert_int_equal(nb_openssl_signer(k, &s1), NB_OK);
    assert_int_equal(nb_openssl_signer(back, &s2), NB_OK);
    assert_memory_equal(s1.pub, s2.pub, 65);
    assert_int_equal(nb_sha256(&f->c, "loaded", 6, hash), NB_OK);
    assert_int_equal(s2.sign(s2.ctx, hash, sig), NB_OK);
    assert_int_equal(verify(&f->mc, s1.pub, hash, sig), NB_OK);
    EVP_PKEY_free(back);

    /* missing file, missing directory, garbage */
    snprintf(path, sizeof(path), "%s/none.pem", f->dir);
    assert_int_equal(nb_openssl_key_load_pem(path, &back), NB_ERR_NOENT);
    assert_null(back);
    snprintf(path, sizeof(path), "%s/no/dir.pem", f->dir);
    assert_int_equal(nb_openssl_key_save_pem(path, k), NB_ERR_NOENT);
    snprintf(path, sizeof(path), "%s/garbage.pem", f->dir);
    write_file(path, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    assert_int_equal(nb_openssl_key_load_pem(path, &back), NB_ERR_MALFORMED);

    /* a public key is not a private key */
    snprintf(path, sizeof(path), "%s/pub.pem", f->dir);
    {
        char pem[NB_OPENSSL_PUB_PEM_MAX];
        assert_int_equal(nb_openssl_pub_to_pem(s1.pub, pem, sizeof(pem), NULL),
                         NB_OK);
        write_file(path, pem);
    }
    assert_int_equal(nb_openssl_key_load_pem(path, &back), NB_ERR_MALFORMED);

    /* another curve */
    snprintf(path, sizeof(path), "%s/p384.pem", f->dir);
    p384_pem(1, other, sizeof(other));
    write_file(path, other);
    assert_int_equal(nb_openssl_key_load_pem(path, &back), NB_ERR_UNSUPPORTED);
    assert_null(back);

    /* encrypted: refused, without prompting */
    snprintf(path, sizeof(path), "%s/enc.pem", f->dir);
    b = BIO_new(BIO_s_mem());
    assert_non_null(b);
    assert_int_equal(PEM_write_bio_PrivateKey(b, k, EVP_aes_128_cbc(),
                                              (unsigned char *)"secret", 6,
                                              NULL, NULL),
                     1);
    {
        char *data = NULL;
        long n = BIO_get_mem_data(b, &data);
        assert_true(n > 0 && (size_t)n < sizeof(other));
        memcpy(other, data, (size_t)n);
        other[n] = '\0';
    }
    BIO_free(b);
    write_file(path, other);
    assert_int_equal(nb_openssl_key_load_pem(path, &back), NB_ERR_MALFORMED);

    assert_int_equal(nb_openssl_key_load_pem(NULL, &back), NB_ERR_INVAL);
    assert_int_equal(nb_openssl_key_save_pem(path, NULL), NB_ERR_INVAL);
    EVP_PKEY_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_init_fills_interface, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sha256_fips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sha256_matches_mbedtls, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sha256_restart_and_args, setup,
                                        teardown),
        cmocka_unit_test(test_init_free),
        cmocka_unit_test_setup_teardown(test_ecdsa_rfc6979, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ecdsa_bit_flips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ecdsa_bad_scalars, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ecdsa_bad_points, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ecdsa_keeps_running_hash, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_key_from_seed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_verify_cross_library, setup,
                                        teardown),
        cmocka_unit_test(test_signer_refuses_other_keys),
        cmocka_unit_test(test_pub_pem),
        cmocka_unit_test_setup_teardown(test_key_pem_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
