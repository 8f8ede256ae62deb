/* test_manifest_cose.c - the signed formats of core/manifest.c checked
 * from outside: the COSE_Sign1 of a test manifest and of its delegation
 * taken apart by hand, their Sig_structure (RFC 9052 section 4.4) built
 * by hand, hashed with OpenSSL's EVP and verified with the OpenSSL
 * port's nb_openssl_ecdsa_p256_verify against keys derived by OpenSSL
 * (not by the mbedTLS code that signed them); key IDs recomputed; and
 * negative controls (another context string, a non-empty external AAD,
 * the payload alone) that must not verify. Then revocation lists
 * (nb_revocation_verify) and the container header (nb_pkg_parse_header).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/evp.h>

#include "testlib.h"

static struct tl_dev *T; /* keys, identity, crypto; its flash is unused */

static int setup(void **state)
{
    (void)state;
    struct nb_simflash_geometry g = tl_geo(8, 0xFF, 8, 4096);
    T = tl_dev_new(&g, NB_LAYOUT_AB, 8192, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tl_dev_free(T);
    T = NULL;
    return 0;
}

/* An exact-size heap copy of `n` bytes (NULL when n == 0). */
static uint8_t *dup_(const uint8_t *p, uint32_t n)
{
    if (!n)
        return NULL;
    uint8_t *q = malloc(n);
    assert_non_null(q);
    memcpy(q, p, n);
    return q;
}

static nb_err verify(const uint8_t *p, uint32_t n, struct nb_manifest *m)
{
    uint8_t *q = dup_(p, n);
    nb_err err = nb_manifest_verify(&T->crypto, &T->keys.keystore, NULL, q, n,
                                    m);
    free(q);
    return err;
}

/* A small package: 300-byte payload in 256-byte blocks. */
static struct tl_image small(uint32_t svn)
{
    struct nb_manifest_req r = tl_req(tl_ver(1, 2, 3), svn);
    r.block_size = 256;
    return tl_image_req(T, NULL, NULL, &r, 300, 42);
}

/* ------------------------------------------------- COSE, by hand */

/* A CBOR head, decoded by hand (RFC 8949 section 3): major type and
 * argument; returns its length. Only what these structures use. */
static size_t rd_head(const uint8_t *p, uint8_t *major, uint64_t *val)
{
    uint8_t ai = p[0] & 31;
    *major = p[0] >> 5;
    if (ai < 24) {
        *val = ai;
        return 1;
    }
    size_t n = ai == 24 ? 1 : ai == 25 ? 2 : ai == 26 ? 4 : 8;
    assert_true(ai <= 27);
    *val = 0;
    for (size_t i = 0; i < n; i++)
        *val = *val << 8 | p[1 + i];
    return 1 + n;
}

/* A byte string at p: its content and where the next item starts. */
static const uint8_t *rd_bstr(const uint8_t *p, size_t *len,
                              const uint8_t **next)
{
    uint8_t major;
    uint64_t v;
    size_t h = rd_head(p, &major, &v);
    assert_int_equal(major, 2);
    *len = (size_t)v;
    *next = p + h + v;
    return p + h;
}

/* A definite-length head written by hand (shortest form). */
static size_t wr_head(uint8_t *out, uint8_t major, uint64_t n)
{
    if (n < 24) {
        out[0] = (uint8_t)(major << 5 | n);
        return 1;
    }
    size_t k = n <= 0xFF ? 1 : n <= 0xFFFF ? 2 : n <= 0xFFFFFFFFu ? 4 : 8;
    out[0] = (uint8_t)(major << 5 | (k == 1 ? 24 : k == 2 ? 25 : k == 4 ? 26
                                                                      : 27));
    for (size_t i = 0; i < k; i++)
        out[1 + i] = (uint8_t)(n >> (8 * (k - 1 - i)));
    return 1 + k;
}

/* The parts of a tagged COSE_Sign1. */
struct parts {
    const uint8_t *prot, *deleg, *payload, *sig;
    size_t prot_len, deleg_len, payload_len;
};

static void take_apart(const uint8_t *p, size_t n, int outer,
                       struct parts *s)
{
    const uint8_t *q = p, *end = p + n;
    size_t sig_len;
    memset(s, 0, sizeof(*s));
    assert_int_equal(q[0], 0xD2); /* tag 18: COSE_Sign1 */
    assert_int_equal(q[1], 0x84); /* array of 4 */
    s->prot = rd_bstr(q + 2, &s->prot_len, &q);
    if (outer) {
        /* {-70001: bstr}: -70001 is major 1, argument 70000 = 0x11170 */
        static const uint8_t label[] = {0xA1, 0x3A, 0x00, 0x01, 0x11, 0x70};
        assert_memory_equal(q, label, sizeof(label));
        s->deleg = rd_bstr(q + sizeof(label), &s->deleg_len, &q);
    } else {
        assert_int_equal(q[0], 0xA0); /* {} */
        q++;
    }
    s->payload = rd_bstr(q, &s->payload_len, &q);
    s->sig = rd_bstr(q, &sig_len, &q);
    assert_int_equal(sig_len, 64);
    assert_ptr_equal(q, end);
}

/* SHA-256 with OpenSSL's EVP, not through a crypto port. */
static void evp_sha256(const uint8_t *p, size_t n, uint8_t out[32])
{
    unsigned int len = 0;
    assert_int_equal(EVP_Digest(p, n, out, &len, EVP_sha256(), NULL), 1);
    assert_int_equal(len, 32);
}

/* Build Sig_structure = ["Signature1", protected, external_aad, payload]
 * by hand, hash it, verify `sig` by `pub`. `context` and `aad` vary for
 * the negative controls. */
static nb_err check_sig(const struct parts *s, const uint8_t pub[65],
                        const char *context, const uint8_t *aad,
                        size_t aad_len)
{
    size_t n = 32 + strlen(context) + s->prot_len + aad_len + s->payload_len;
    uint8_t *b = malloc(n), h[32];
    size_t k = 0;
    assert_non_null(b);
    b[k++] = 0x84;
    k += wr_head(b + k, 3, strlen(context));
    memcpy(b + k, context, strlen(context));
    k += strlen(context);
    k += wr_head(b + k, 2, s->prot_len);
    memcpy(b + k, s->prot, s->prot_len);
    k += s->prot_len;
    k += wr_head(b + k, 2, aad_len);
    if (aad_len)
        memcpy(b + k, aad, aad_len);
    k += aad_len;
    k += wr_head(b + k, 2, s->payload_len);
    memcpy(b + k, s->payload, s->payload_len);
    k += s->payload_len;
    evp_sha256(b, k, h);
    free(b);
    return nb_openssl_ecdsa_p256_verify(pub, h, s->sig);
}

/* A key pair derived by OpenSSL from a test seed: its public key. */
static void openssl_pub(uint64_t seed, uint8_t pub[65])
{
    EVP_PKEY *k = NULL;
    assert_int_equal(nb_openssl_key_from_seed(seed, &k), NB_OK);
    assert_int_equal(nb_openssl_key_pub(k, pub), NB_OK);
    EVP_PKEY_free(k);
}

static void sig_structure(void **state)
{
    (void)state;
    struct tl_image im = small(1);
    const uint8_t *mb = im.data + NB_PKG_HDR_SIZE;
    uint8_t root[65], signer[65], h[32];
    struct parts outer, inner;
    openssl_pub(NB_TEST_ROOT_SEED, root);
    openssl_pub(NB_TEST_SIGNER_SEED, signer);
    /* The two derivations (OpenSSL here, mbedTLS in nb_testpkg.c) agree. */
    assert_memory_equal(root, T->keys.root_signer.pub, 65);
    assert_memory_equal(signer, T->keys.signer.pub, 65);

    take_apart(mb, im.mlen, 1, &outer);
    take_apart(outer.deleg, outer.deleg_len, 0, &inner);
    /* Protected headers: exactly {1: -7, 4: h'<key ID>'}, the key ID the
     * first 8 bytes of SHA-256 over the uncompressed point. */
    static const uint8_t prot_head[] = {0xA2, 0x01, 0x26, 0x04, 0x48};
    assert_int_equal(outer.prot_len, 13);
    assert_int_equal(inner.prot_len, 13);
    assert_memory_equal(outer.prot, prot_head, sizeof(prot_head));
    assert_memory_equal(inner.prot, prot_head, sizeof(prot_head));
    evp_sha256(signer, 65, h);
    assert_memory_equal(outer.prot + 5, h, 8);
    evp_sha256(root, 65, h);
    assert_memory_equal(inner.prot + 5, h, 8);
    /* The delegation's payload names the signer: field 2 holds its key,
     * field 1 its key ID. */
    static const uint8_t f2[] = {0x02, 0x58, 0x41};
    const uint8_t *at = NULL;
    for (size_t i = 0; i + sizeof(f2) + 65 <= inner.payload_len && !at; i++)
        if (!memcmp(inner.payload + i, f2, sizeof(f2)))
            at = inner.payload + i + sizeof(f2);
    assert_non_null(at);
    assert_memory_equal(at, signer, 65);

    /* Both signatures verify over the hand-built Sig_structure. */
    assert_int_equal(check_sig(&outer, signer, "Signature1", NULL, 0), NB_OK);
    assert_int_equal(check_sig(&inner, root, "Signature1", NULL, 0), NB_OK);
    /* Negative controls: the wrong key, COSE_Sign's context, an external
     * AAD, and a signature over the payload alone. */
    static const uint8_t aad[] = {0x00};
    assert_int_equal(check_sig(&outer, root, "Signature1", NULL, 0),
                     NB_ERR_SIGNATURE);
    assert_int_equal(check_sig(&outer, signer, "Signature", NULL, 0),
                     NB_ERR_SIGNATURE);
    assert_int_equal(check_sig(&outer, signer, "Signature1", aad, 1),
                     NB_ERR_SIGNATURE);
    evp_sha256(outer.payload, outer.payload_len, h);
    assert_int_equal(nb_openssl_ecdsa_p256_verify(signer, h, outer.sig),
                     NB_ERR_SIGNATURE);
    /* And the core accepts exactly this manifest. */
    struct nb_manifest m;
    assert_int_equal(verify(mb, im.mlen, &m), NB_OK);
    tl_image_free(&im);
}

/* ---------------------------------------------------- revocation lists */

static void revocation_lists(void **state)
{
    (void)state;
    const struct nb_crypto *c = &T->crypto;
    const struct nb_keystore *ks = &T->keys.keystore;
    uint8_t kids[2][NB_KEY_ID_LEN] = {{1, 1, 1, 1, 1, 1, 1, 1},
                                      {2, 2, 2, 2, 2, 2, 2, 2}};
    struct nb_revocations cur, out;
    struct nb_buf l = {0};
    assert_int_equal(nb_build_revocation(c, &T->keys.root_signer, 5, 2,
                                         (const uint8_t(*)[8])kids, &l),
                     NB_OK);
    uint8_t *q = dup_(l.p, (uint32_t)l.len);
    uint32_t n = (uint32_t)l.len;
    assert_int_equal(nb_revocation_verify(c, ks, NULL, q, n, &out), NB_OK);
    assert_int_equal(out.seq, 5);
    assert_int_equal(out.count, 2);
    assert_memory_equal(out.kid, kids, sizeof(kids));
    memset(&cur, 0, sizeof(cur));
    cur.seq = 4;
    assert_int_equal(nb_revocation_verify(c, ks, &cur, q, n, &out), NB_OK);
    /* Not newer than the one held: an old list must not undo a newer
     * revocation. */
    cur.seq = 5;
    assert_int_equal(nb_revocation_verify(c, ks, &cur, q, n, &out),
                     NB_ERR_ROLLBACK);
    cur.seq = 6;
    assert_int_equal(nb_revocation_verify(c, ks, &cur, q, n, &out),
                     NB_ERR_ROLLBACK);
    /* Every flip refused; truncations too. */
    for (uint32_t i = 0; i < 8 * n; i++) {
        q[i / 8] ^= (uint8_t)(1u << (i % 8));
        if (nb_revocation_verify(c, ks, NULL, q, n, &out) == NB_OK)
            fail_msg("revocation list byte %u bit %u: accepted", i / 8,
                     i % 8);
        q[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    for (uint32_t len = 0; len < n; len++) {
        uint8_t *t = dup_(l.p, len);
        assert_int_not_equal(nb_revocation_verify(c, ks, NULL, t, len, &out),
                             NB_OK);
        free(t);
    }
    free(q);
    nb_buf_free(&l);
    /* Signed by the signing key (not a root). */
    assert_int_equal(nb_build_revocation(c, &T->keys.signer, 5, 2,
                                         (const uint8_t(*)[8])kids, &l),
                     NB_OK);
    assert_int_equal(nb_revocation_verify(c, ks, NULL, l.p, (uint32_t)l.len,
                                          &out),
                     NB_ERR_UNKNOWN_KEY);
    nb_buf_free(&l);
    /* Hand-built payloads. */
    static const struct {
        const char *what;
        int count, dup, unknown, ext;
        nb_err want;
    } cases[] = {
        {"0 kids", 0, 0, 0, 0, NB_OK},
        {"8 kids", 8, 0, 0, 0, NB_OK},
        {"9 kids", 9, 0, 0, 0, NB_ERR_NOSPC},
        {"duplicate key", 1, 1, 0, 0, NB_ERR_DUPLICATE},
        {"unknown key 3", 1, 0, 1, 0, NB_ERR_UNKNOWN_FIELD},
        {"extension", 1, 0, 0, 1, NB_OK},
        {"no field 2", -1, 0, 0, 0, NB_ERR_MALFORMED},
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct nb_buf p = {0};
        int cnt = cases[i].count;
        tl_cbor(&p, NB_CBOR_MAP, (cnt >= 0 ? 2u : 1u) + (unsigned)cases[i].dup +
                                     (unsigned)cases[i].unknown +
                                     (unsigned)cases[i].ext);
        tl_cbor_int(&p, 1);
        tl_cbor_int(&p, 7);
        if (cnt >= 0) {
            tl_cbor_int(&p, 2);
            tl_cbor(&p, NB_CBOR_ARRAY, (uint64_t)cnt);
            for (int k = 0; k < cnt; k++)
                tl_cbor_bstr(&p, kids[k % 2], NB_KEY_ID_LEN);
        }
        if (cases[i].dup) {
            tl_cbor_int(&p, 1);
            tl_cbor_int(&p, 8);
        }
        if (cases[i].unknown) {
            tl_cbor_int(&p, 3);
            tl_cbor_int(&p, 0);
        }
        if (cases[i].ext) {
            tl_cbor_int(&p, -2);
            tl_cbor_tstr(&p, "note");
        }
        tl_sign1(c, &T->keys.root_signer, NULL, 0, &p, &l);
        nb_err err = nb_revocation_verify(c, ks, NULL, l.p, (uint32_t)l.len,
                                          &out);
        if (err != cases[i].want)
            fail_msg("revocation list, %s: %s", cases[i].what,
                     nb_err_name(err));
        if (!err)
            assert_int_equal(out.seq, 7);
        nb_buf_free(&p);
        nb_buf_free(&l);
    }
    /* A manifest is not a revocation list (it has an unprotected
     * header), nor a revocation list a manifest. */
    struct tl_image im = small(1);
    struct nb_manifest m;
    assert_int_not_equal(nb_revocation_verify(c, ks, NULL,
                                              im.data + NB_PKG_HDR_SIZE,
                                              im.mlen, &out),
                         NB_OK);
    assert_int_equal(nb_build_revocation(c, &T->keys.root_signer, 1, 0, NULL,
                                         &l),
                     NB_OK);
    assert_int_not_equal(verify(l.p, (uint32_t)l.len, &m), NB_OK);
    nb_buf_free(&l);
    tl_image_free(&im);
}

/* ------------------------------------------------- container header */

static void container_header(void **state)
{
    (void)state;
    uint8_t h[NB_PKG_HDR_SIZE] = {'N', 'B', 'P', 'K', 1, 0, 0, 0, 0x34, 0x12,
                                  0, 0};
    uint8_t b[NB_PKG_HDR_SIZE];
    uint32_t len = 0;
    assert_int_equal(nb_pkg_parse_header(h, &len), NB_OK);
    assert_int_equal(len, 0x1234);
    /* Limits: 1 .. 16384. */
    static const struct {
        uint32_t len;
        nb_err want;
    } lens[] = {{0, NB_ERR_MALFORMED},       {1, NB_OK},
                {NB_MANIFEST_MAX, NB_OK},    {NB_MANIFEST_MAX + 1,
                                              NB_ERR_MALFORMED},
                {0xFFFFFFFFu, NB_ERR_MALFORMED}};
    for (unsigned i = 0; i < 5; i++) {
        memcpy(b, h, sizeof(b));
        for (int k = 0; k < 4; k++)
            b[8 + k] = (uint8_t)(lens[i].len >> (8 * k));
        len = 77;
        assert_int_equal(nb_pkg_parse_header(b, &len), lens[i].want);
        assert_int_equal(len, lens[i].want ? 77 : lens[i].len);
    }
    /* Every flip of magic, version and reserved bytes. */
    for (unsigned i = 0; i < 64; i++) {
        memcpy(b, h, sizeof(b));
        b[i / 8] ^= (uint8_t)(1u << (i % 8));
        nb_err err = nb_pkg_parse_header(b, &len);
        nb_err want = i / 8 == 4 ? NB_ERR_UNSUPPORTED : NB_ERR_MALFORMED;
        if (err != want)
            fail_msg("header byte %u bit %u: %s", i / 8, i % 8,
                     nb_err_name(err));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sig_structure),
        cmocka_unit_test(revocation_lists),
        cmocka_unit_test(container_header),
    };
    return cmocka_run_group_tests_name("manifest_cose", tests, setup,
                                       teardown);
}
