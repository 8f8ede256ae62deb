/* test_manifest.c - core/manifest.c alone (no flash): nb_manifest_verify,
 * nb_manifest_parse_unverified, nb_manifest_check_device,
 * nb_revocation_verify and nb_pkg_parse_header.
 *
 * A good manifest parses to the fields it was built from (and verifies
 * through the mbedTLS port as through OpenSSL); every single-bit flip and
 * every truncation is refused, signature bytes with NB_ERR_SIGNATURE, and
 * nothing the signatures do not cover is ever accepted; then one case per
 * rejection code: unknown root, a key nobody delegated, expired and
 * revoked delegations, vendor, class and hardware revision (by the
 * identity and by the delegation), sizes, duplicate and unknown critical
 * keys (negative extension keys are accepted), malformed fields.
 * Hand-built manifests come from testlib.h's encoder, which also rebuilds
 * our builder's output byte for byte. test_manifest_cose.c checks the
 * COSE signatures independently, revocation lists and container
 * headers.
 *
 * Memory under test is an exact-size heap copy, so ASan sees any read
 * past the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "nb_crypto_mbedtls.h"
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

/* Verify `n` bytes at `p` (copied exactly) with the test keystore. */
static nb_err verify_rev(const uint8_t *p, uint32_t n,
                         const struct nb_revocations *rev,
                         struct nb_manifest *m)
{
    uint8_t *q = dup_(p, n);
    nb_err err = nb_manifest_verify(&T->crypto, &T->keys.keystore, rev, q, n,
                                    m);
    free(q);
    return err;
}

static nb_err verify(const uint8_t *p, uint32_t n, struct nb_manifest *m)
{
    return verify_rev(p, n, NULL, m);
}

static nb_err verify_im(const struct tl_image *im, struct nb_manifest *m)
{
    return verify(im->data + NB_PKG_HDR_SIZE, im->mlen, m);
}

static nb_err unverified(const uint8_t *p, uint32_t n, struct nb_manifest *m)
{
    uint8_t *q = dup_(p, n);
    nb_err err = nb_manifest_parse_unverified(&T->crypto, q, n, m);
    free(q);
    return err;
}

/* Where `needle` lies in `hay` (must be there). */
static uint32_t find(const uint8_t *hay, uint32_t n, const uint8_t *needle,
                     uint32_t k)
{
    for (uint32_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return i;
    fail_msg("bytes not found");
    return 0;
}

/* A small package: 300-byte payload in 256-byte blocks. */
static struct tl_image small(uint32_t svn)
{
    struct nb_manifest_req r = tl_req(tl_ver(1, 2, 3), svn);
    r.block_size = 256;
    return tl_image_req(T, NULL, NULL, &r, 300, 42);
}

/* ------------------------------------------------------- good manifest */

static void fields(void **state)
{
    (void)state;
    static const char *const hw[] = {"rev-a", NB_TEST_HW_REV, "x"};
    struct nb_manifest_req r = tl_req(tl_ver(1, 2, 3), 7);
    r.hw_count = 3;
    for (int i = 0; i < 3; i++)
        r.hw[i] = hw[i];
    r.block_size = 256;
    r.has_precursor = 1;
    for (int i = 0; i < NB_SHA256_LEN; i++)
        r.precursor[i] = (uint8_t)(0xA0 + i);
    r.created = NB_TEST_CREATED + 5;
    struct tl_image im = tl_image_req(T, NULL, NULL, &r, 1000, 9);
    const uint8_t *mb = im.data + NB_PKG_HDR_SIZE, *pl = im.data + im.poff;
    struct nb_manifest m, u;
    uint8_t d[NB_SHA256_LEN], kid[NB_KEY_ID_LEN];
    memset(&m, 0xA5, sizeof(m));
    assert_int_equal(nb_manifest_verify(&T->crypto, &T->keys.keystore, NULL,
                                        mb, im.mlen, &m),
                     NB_OK);
    assert_int_equal(m.len, im.mlen);
    assert_int_equal(m.version, tl_ver(1, 2, 3));
    assert_int_equal(m.svn, 7);
    assert_int_equal(m.payload_size, 1000);
    assert_int_equal(nb_sha256(&T->crypto, pl, 1000, d), NB_OK);
    assert_memory_equal(m.digest, d, NB_SHA256_LEN);
    assert_int_equal(m.block_size, 256);
    assert_int_equal(m.block_count, 4);
    for (uint32_t i = 0; i < 4; i++) {
        uint32_t n = i < 3 ? 256 : 1000 - 768;
        assert_int_equal(nb_sha256(&T->crypto, pl + 256 * i, n, d), NB_OK);
        assert_memory_equal(nb_manifest_block_digest(&m, mb, i), d,
                            NB_SHA256_LEN);
    }
    assert_null(nb_manifest_block_digest(&m, mb, 4));
    assert_int_equal(m.payload_format, NB_PAYLOAD_RAW);
    assert_int_equal(m.has_precursor, 1);
    assert_memory_equal(m.precursor, r.precursor, NB_SHA256_LEN);
    assert_int_equal(m.created, NB_TEST_CREATED + 5);
    assert_int_equal(m.payload_offset, im.poff);
    assert_true(m.payload_offset >= NB_PKG_HDR_SIZE + im.mlen);
    assert_int_equal(nb_key_id(&T->crypto, T->keys.signer.pub, kid), NB_OK);
    assert_memory_equal(m.kid, kid, NB_KEY_ID_LEN);
    assert_memory_equal(m.vendor, T->id.vendor, NB_UUID_LEN);
    assert_memory_equal(m.class_id, T->id.class_id, NB_UUID_LEN);
    assert_int_equal(m.hw_count, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(m.hw_len[i], strlen(hw[i]));
        assert_memory_equal(mb + m.hw_off[i], hw[i], strlen(hw[i]));
    }
    /* The delegation it carries. */
    const struct nb_delegation *dl = &m.delegation;
    assert_memory_equal(dl->root_kid, T->keys.root_kid, NB_KEY_ID_LEN);
    assert_memory_equal(dl->kid, kid, NB_KEY_ID_LEN);
    assert_memory_equal(dl->pub, T->keys.signer.pub, NB_PUBKEY_LEN);
    assert_int_equal(dl->not_before, 946684800u);
    assert_int_equal(dl->not_after, 4102444800u);
    assert_memory_equal(dl->vendor, T->id.vendor, NB_UUID_LEN);
    assert_int_equal(dl->class_count, 0);
    /* The unverified parse sees the same; the device fits. */
    memset(&u, 0x5A, sizeof(u));
    assert_int_equal(nb_manifest_parse_unverified(&T->crypto, mb, im.mlen,
                                                  &u),
                     NB_OK);
    assert_memory_equal(&u, &m, sizeof(m));
    assert_int_equal(nb_manifest_check_device(&m, mb, &T->id, im.size),
                     NB_OK);
    /* The mbedTLS port (the MCU's) agrees with the OpenSSL one. */
    struct nb_mbedtls_crypto mc;
    struct nb_crypto c;
    nb_crypto_mbedtls_init(&c, &mc);
    assert_int_equal(nb_manifest_verify(&c, &T->keys.keystore, NULL, mb,
                                        im.mlen, &u),
                     NB_OK);
    assert_memory_equal(&u, &m, sizeof(m));
    uint8_t *bad = dup_(mb, im.mlen);
    bad[im.mlen - 1] ^= 1;
    assert_int_equal(nb_manifest_verify(&c, &T->keys.keystore, NULL, bad,
                                        im.mlen, &u),
                     NB_ERR_SIGNATURE);
    free(bad);
    nb_crypto_mbedtls_free(&c, &mc);
    /* Our builder and testlib's independent encoder agree byte for byte
     * (ECDSA with RFC 6979 nonces is deterministic). */
    struct tl_mopts o = {.block_size = 256, .payload_offset = im.poff};
    struct tl_image h = tl_image_hand(T, &r, &o, 1000, 9);
    assert_int_equal(h.size, im.size);
    assert_memory_equal(h.data, im.data, im.size);
    tl_image_free(&h);
    tl_image_free(&im);
}

/* ------------------------------------------ flips and truncations */

static void every_bit_flip(void **state)
{
    (void)state;
    struct tl_image im = small(1);
    const uint8_t *mb = im.data + NB_PKG_HDR_SIZE;
    uint32_t n = im.mlen;
    uint8_t *q = dup_(mb, n);
    struct nb_manifest m;
    /* Where the signatures lie: the manifest's is its last 64 bytes, the
     * delegation's the last 64 of the delegation inside it. */
    uint32_t dg = find(mb, n, T->keys.delegation.p,
                       (uint32_t)T->keys.delegation.len);
    uint32_t dsig = dg + (uint32_t)T->keys.delegation.len - NB_SIG_LEN;
    unsigned long codes[16] = {0}, signed_ok = 0;
    assert_int_equal(verify(q, n, &m), NB_OK);
    for (uint32_t i = 0; i < 8 * n; i++) {
        q[i / 8] ^= (uint8_t)(1u << (i % 8));
        nb_err err = nb_manifest_verify(&T->crypto, &T->keys.keystore, NULL,
                                        q, n, &m);
        nb_err u = nb_manifest_parse_unverified(&T->crypto, q, n, &m);
        q[i / 8] ^= (uint8_t)(1u << (i % 8));
        uint32_t at = i / 8;
        if (err == NB_OK)
            fail_msg("manifest byte %u bit %u: flip accepted", at, i % 8);
        int in_sig = at >= n - NB_SIG_LEN ||
                     (at >= dsig && at < dsig + NB_SIG_LEN);
        if (in_sig && err != NB_ERR_SIGNATURE)
            fail_msg("signature byte %u bit %u: %s", at, i % 8,
                     nb_err_name(err));
        /* What still parses differs only in signed bytes: refused by a
         * signature or as signed by a key nobody trusts/delegated. */
        if (u == NB_OK) {
            signed_ok++;
            if (err != NB_ERR_SIGNATURE && err != NB_ERR_UNKNOWN_KEY)
                fail_msg("byte %u bit %u parses but verify says %s", at,
                         i % 8, nb_err_name(err));
        }
        codes[err <= -200 && err > -215 ? -(int)err - 200 : 15]++;
    }
    print_message("%u-byte manifest, %u flips: %lu still parse (refused by "
                  "a signature or key); SIGNATURE %lu, MALFORMED %lu, "
                  "TRUNCATED %lu, TRAILING %lu, UNKNOWN_FIELD %lu, "
                  "UNKNOWN_KEY %lu, UNSUPPORTED %lu, other %lu\n",
                  n, 8 * n, signed_ok, codes[6], codes[0], codes[1],
                  codes[2], codes[4], codes[7], codes[5],
                  8 * n - codes[6] - codes[0] - codes[1] - codes[2] -
                      codes[4] - codes[7] - codes[5]);
    /* Targeted: a flipped signed field is a bad signature, not a parse
     * error; a flipped kid is an unknown key. */
    memcpy(q, mb, n);
    q[dg + (uint32_t)T->keys.delegation.len + 20] ^= 0x01; /* manifest map */
    assert_int_equal(verify(q, n, &m), NB_ERR_SIGNATURE);
    memcpy(q, mb, n);
    q[dg + 10] ^= 0x01; /* inside the delegation's protected header kid */
    assert_int_equal(verify(q, n, &m), NB_ERR_UNKNOWN_KEY);
    free(q);
    tl_image_free(&im);
}

static void truncation_and_trailing(void **state)
{
    (void)state;
    struct tl_image im = small(1);
    const uint8_t *mb = im.data + NB_PKG_HDR_SIZE;
    struct nb_manifest m;
    unsigned long trunc = 0;
    for (uint32_t len = 0; len < im.mlen; len++) {
        nb_err err = verify(mb, len, &m);
        if (err == NB_OK || unverified(mb, len, &m) == NB_OK)
            fail_msg("manifest cut to %u of %u bytes accepted", len,
                     im.mlen);
        trunc += err == NB_ERR_TRUNCATED;
    }
    print_message("%u truncations refused, %lu as NB_ERR_TRUNCATED\n",
                  im.mlen, trunc);
    assert_int_equal(verify(mb, im.mlen - 1, &m), NB_ERR_TRUNCATED);
    /* One byte more is trailing, whatever the byte. */
    uint8_t *q = malloc(im.mlen + 1);
    assert_non_null(q);
    memcpy(q, mb, im.mlen);
    for (int b = 0; b < 256; b += 51) {
        q[im.mlen] = (uint8_t)b;
        assert_int_equal(verify(q, im.mlen + 1, &m), NB_ERR_TRAILING);
        assert_int_equal(unverified(q, im.mlen + 1, &m), NB_ERR_TRAILING);
    }
    free(q);
    /* Longer than any manifest: refused before it is read. */
    assert_int_equal(nb_manifest_verify(&T->crypto, &T->keys.keystore, NULL,
                                        mb, NB_MANIFEST_MAX + 1, &m),
                     NB_ERR_NOSPC);
    tl_image_free(&im);
}

/* ------------------------------------------------------------- keys */

static void unknown_and_wrong_keys(void **state)
{
    (void)state;
    struct tl_image im = small(1);
    const uint8_t *mb = im.data + NB_PKG_HDR_SIZE;
    struct nb_manifest m;
    struct tl_key other, root2, k3;
    tl_key_init(&other, &T->crypto, 99);
    tl_key_init(&root2, &T->crypto, 50);
    tl_key_init(&k3, &T->crypto, 51);
    /* A keystore trusting another root; one trusting the signing key
     * itself (it is not a root). */
    struct tl_keystore *ks = tl_keystore_new(&T->crypto, other.s.pub);
    assert_int_equal(nb_manifest_verify(&T->crypto, &ks->ks, NULL, mb,
                                        im.mlen, &m),
                     NB_ERR_UNKNOWN_KEY);
    free(ks);
    ks = tl_keystore_new(&T->crypto, T->keys.signer.pub);
    assert_int_equal(nb_manifest_verify(&T->crypto, &ks->ks, NULL, mb,
                                        im.mlen, &m),
                     NB_ERR_UNKNOWN_KEY);
    /* The right key ID but another public key behind it. */
    memcpy(ks->kid, T->keys.root_kid, NB_KEY_ID_LEN);
    memcpy(ks->pub, other.s.pub, NB_PUBKEY_LEN);
    assert_int_equal(nb_manifest_verify(&T->crypto, &ks->ks, NULL, mb,
                                        im.mlen, &m),
                     NB_ERR_SIGNATURE);
    free(ks);
    /* A chain under another root: unknown here, good where that root is
     * trusted. */
    struct nb_buf d2 = {0};
    tl_delegate(&T->crypto, &root2.s, k3.s.pub, 0, 4102444800u, 0, NULL,
                &d2);
    struct nb_manifest_req r = tl_req(tl_ver(1, 0, 0), 1);
    struct tl_image im2 = tl_image_req(T, &k3.s, &d2, &r, 300, 1);
    assert_int_equal(verify_im(&im2, &m), NB_ERR_UNKNOWN_KEY);
    ks = tl_keystore_new(&T->crypto, root2.s.pub);
    assert_int_equal(nb_manifest_verify(&T->crypto, &ks->ks, NULL,
                                        im2.data + NB_PKG_HDR_SIZE, im2.mlen,
                                        &m),
                     NB_OK);
    free(ks);
    tl_image_free(&im2);
    /* Signed by a key other than the delegated one: its key ID names
     * nobody the root vouched for. */
    im2 = tl_image_req(T, &other.s, &T->keys.delegation, &r, 300, 1);
    assert_int_equal(verify_im(&im2, &m), NB_ERR_UNKNOWN_KEY);
    tl_image_free(&im2);
    /* ... and claiming the delegated key's ID while signing with another
     * key: a bad signature. */
    struct nb_signer liar = other.s;
    memcpy(liar.pub, T->keys.signer.pub, NB_PUBKEY_LEN);
    im2 = tl_image_req(T, &liar, &T->keys.delegation, &r, 300, 1);
    assert_int_equal(verify_im(&im2, &m), NB_ERR_SIGNATURE);
    tl_image_free(&im2);
    /* A delegation whose key ID is not its key's (a root cannot vouch for
     * one key under another's name): refused even though signed. */
    struct nb_buf p = {0}, d3 = {0};
    uint8_t vendor[NB_UUID_LEN];
    nb_testpkg_vendor(vendor);
    tl_cbor(&p, NB_CBOR_MAP, 6);
    tl_cbor_int(&p, 1);
    tl_cbor_bstr(&p, other.kid, NB_KEY_ID_LEN);
    tl_cbor_int(&p, 2);
    tl_cbor_bstr(&p, k3.s.pub, NB_PUBKEY_LEN);
    tl_cbor_int(&p, 3);
    tl_cbor_int(&p, 0);
    tl_cbor_int(&p, 4);
    tl_cbor_int(&p, 4102444800);
    tl_cbor_int(&p, 5);
    tl_cbor_bstr(&p, vendor, NB_UUID_LEN);
    tl_cbor_int(&p, 6);
    tl_cbor(&p, NB_CBOR_ARRAY, 0);
    tl_sign1(&T->crypto, &T->keys.root_signer, NULL, 0, &p, &d3);
    uint8_t pl[300];
    nb_testpkg_payload(pl, sizeof(pl), 1);
    nb_buf_free(&p); /* our builder makes the manifest; it would refuse to
                      * wrap it in a package */
    assert_int_equal(nb_build_manifest(&T->crypto, &k3.s, d3.p, d3.len, &r,
                                       pl, sizeof(pl), &p),
                     NB_OK);
    assert_int_equal(verify(p.p, (uint32_t)p.len, &m), NB_ERR_MALFORMED);
    nb_buf_free(&p);
    nb_buf_free(&d2);
    nb_buf_free(&d3);
    tl_key_free(&other);
    tl_key_free(&root2);
    tl_key_free(&k3);
    tl_image_free(&im);
}

static void expired_delegation(void **state)
{
    (void)state;
    const uint64_t c = NB_TEST_CREATED;
    struct tl_key k;
    struct nb_buf d = {0};
    struct nb_manifest m;
    tl_key_init(&k, &T->crypto, 60);
    tl_delegate(&T->crypto, &T->keys.root_signer, k.s.pub, c + 10, c + 20, 0,
                NULL, &d);
    static const struct {
        int64_t at;
        nb_err want;
    } cases[] = {{0, NB_ERR_EXPIRED},  {9, NB_ERR_EXPIRED}, {10, NB_OK},
                 {15, NB_OK},          {20, NB_OK},         {21, NB_ERR_EXPIRED},
                 {100000, NB_ERR_EXPIRED}};
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct nb_manifest_req r = tl_req(tl_ver(1, 0, 0), 1);
        r.created = c + (uint64_t)cases[i].at;
        struct tl_image im = tl_image_req(T, &k.s, &d, &r, 300, 1);
        nb_err err = verify_im(&im, &m);
        if (err != cases[i].want)
            fail_msg("created at not_before%+lld: %s", (long long)cases[i].at - 10,
                     nb_err_name(err));
        tl_image_free(&im);
    }
    nb_buf_free(&d);
    tl_key_free(&k);
}

static void revoked_key(void **state)
{
    (void)state;
    struct tl_image im = small(1);
    struct nb_revocations rev;
    struct nb_manifest m;
    uint8_t kid[NB_KEY_ID_LEN];
    assert_int_equal(nb_key_id(&T->crypto, T->keys.signer.pub, kid), NB_OK);
    memset(&rev, 0, sizeof(rev));
    rev.seq = 3;
    const uint8_t *mb = im.data + NB_PKG_HDR_SIZE;
    assert_int_equal(verify_rev(mb, im.mlen, &rev, &m), NB_OK);
    for (unsigned k = 0; k < NB_MAX_REVOKED; k++)
        memset(rev.kid[k], 0x11 * (k + 1), NB_KEY_ID_LEN);
    rev.count = NB_MAX_REVOKED;
    assert_int_equal(verify_rev(mb, im.mlen, &rev, &m), NB_OK);
    memcpy(rev.kid[NB_MAX_REVOKED - 1], kid, NB_KEY_ID_LEN);
    assert_int_equal(verify_rev(mb, im.mlen, &rev, &m), NB_ERR_REVOKED);
    /* Entries past the count do not count. */
    rev.count = NB_MAX_REVOKED - 1;
    assert_int_equal(verify_rev(mb, im.mlen, &rev, &m), NB_OK);
    /* Inspection ignores revocation (it checks nothing). */
    rev.count = NB_MAX_REVOKED;
    assert_int_equal(unverified(mb, im.mlen, &m), NB_OK);
    tl_image_free(&im);
}

/* ------------------------------------------------------------ policy */

static void vendor_class_hw_and_size(void **state)
{
    (void)state;
    struct nb_manifest m;
    struct nb_identity id;
    static const char *const hw[] = {"sim-0", NB_TEST_HW_REV, "sim-10"};
    struct nb_manifest_req r = tl_req(tl_ver(1, 0, 0), 1);
    r.hw_count = 3;
    for (int i = 0; i < 3; i++)
        r.hw[i] = hw[i];
    struct tl_image im = tl_image_req(T, NULL, NULL, &r, 300, 1);
    const uint8_t *mb = im.data + NB_PKG_HDR_SIZE;
    assert_int_equal(verify_im(&im, &m), NB_OK);
    assert_int_equal(nb_manifest_check_device(&m, mb, &T->id, im.size),
                     NB_OK);
    /* By the device's identity. */
    id = T->id;
    id.vendor[15] ^= 1;
    assert_int_equal(nb_manifest_check_device(&m, mb, &id, im.size),
                     NB_ERR_VENDOR);
    id = T->id;
    id.class_id[0] ^= 0x80;
    assert_int_equal(nb_manifest_check_device(&m, mb, &id, im.size),
                     NB_ERR_CLASS);
    static const char *const not_listed[] = {"sim-", "sim-2", "sim-100",
                                             "SIM-1", "sim-1 "};
    for (int i = 0; i < 5; i++) {
        id = T->id;
        id.hw_rev_len = (uint8_t)strlen(not_listed[i]);
        memcpy(id.hw_rev, not_listed[i], id.hw_rev_len);
        assert_int_equal(nb_manifest_check_device(&m, mb, &id, im.size),
                         NB_ERR_HW_REV);
    }
    id.hw_rev_len = 6;
    memcpy(id.hw_rev, "sim-10", 6);
    assert_int_equal(nb_manifest_check_device(&m, mb, &id, im.size), NB_OK);
    /* Offset + size against the slot. */
    assert_int_equal(nb_manifest_check_device(&m, mb, &T->id, im.size - 1),
                     NB_ERR_NOSPC);
    assert_int_equal(nb_manifest_check_device(&m, mb, &T->id, 0),
                     NB_ERR_NOSPC);
    tl_image_free(&im);

    /* By the signed manifest: another vendor than the delegation allows
     * (our test delegation is for the test vendor). */
    r = tl_req(tl_ver(1, 0, 0), 1);
    r.vendor[3] ^= 4;
    im = tl_image_req(T, NULL, NULL, &r, 300, 1);
    assert_int_equal(verify_im(&im, &m), NB_ERR_VENDOR);
    tl_image_free(&im);

    /* By the delegation: restricted to other classes, then including
     * this one. */
    struct tl_key k;
    struct nb_buf d = {0};
    uint8_t classes[3][NB_UUID_LEN];
    tl_key_init(&k, &T->crypto, 61);
    for (int i = 0; i < 3; i++) {
        nb_testpkg_class(classes[i]);
        classes[i][15] = (uint8_t)(0x10 + i);
    }
    r = tl_req(tl_ver(1, 0, 0), 1);
    for (int allowed = 0; allowed < 2; allowed++) {
        if (allowed)
            nb_testpkg_class(classes[1]);
        tl_delegate(&T->crypto, &T->keys.root_signer, k.s.pub, 0,
                    4102444800u, 3, (const uint8_t(*)[NB_UUID_LEN])classes,
                    &d);
        im = tl_image_req(T, &k.s, &d, &r, 300, 1);
        assert_int_equal(verify_im(&im, &m), allowed ? NB_OK : NB_ERR_CLASS);
        tl_image_free(&im);
        nb_buf_free(&d);
    }
    /* A delegation for another vendor. */
    struct nb_delegation_req dr;
    memset(&dr, 0, sizeof(dr));
    memcpy(dr.pub, k.s.pub, NB_PUBKEY_LEN);
    dr.not_after = 4102444800u;
    nb_testpkg_vendor(dr.vendor);
    dr.vendor[0] ^= 1;
    assert_int_equal(nb_build_delegation(&T->crypto, &T->keys.root_signer,
                                         &dr, &d),
                     NB_OK);
    im = tl_image_req(T, &k.s, &d, &r, 300, 1);
    assert_int_equal(verify_im(&im, &m), NB_ERR_VENDOR);
    tl_image_free(&im);
    nb_buf_free(&d);
    tl_key_free(&k);
}

/* ------------------------------------------------ hand-built manifests */

/* Verify a hand-built manifest for the test request with options `o`
 * (the manifest alone: no container, whose layout it may contradict). */
static nb_err hand(const struct nb_manifest_req *r, const struct tl_mopts *o,
                   struct nb_manifest *m)
{
    struct nb_buf b = {0};
    uint8_t p[300];
    nb_testpkg_payload(p, sizeof(p), 3);
    tl_manifest_hand(T, r, o, p, sizeof(p), &b);
    nb_err err = verify(b.p, (uint32_t)b.len, m);
    nb_buf_free(&b);
    return err;
}

static void keys_and_fields(void **state)
{
    (void)state;
    struct nb_manifest m;
    struct nb_manifest_req r = tl_req(tl_ver(1, 0, 0), 4);
    struct tl_mopts o = {0};
    assert_int_equal(hand(&r, &o, &m), NB_OK);
    /* Keys: duplicate, unknown critical, extensions. */
    static const uint8_t nested[] = {0xA1, 0x01, 0x82, 0x01, 0x02}; /* {1:[1,2]} */
    static const uint8_t text[] = {0x63, 'a', 'b', 'c'};
    const struct {
        struct tl_extra e;
        nb_err want;
    } cases[] = {
        {{6, 4, NULL, 0}, NB_ERR_DUPLICATE},
        {{1, 1, NULL, 0}, NB_ERR_DUPLICATE},
        {{15, 1024, NULL, 0}, NB_ERR_DUPLICATE},
        {{16, 0, NULL, 0}, NB_ERR_UNKNOWN_FIELD},
        {{0, 1, NULL, 0}, NB_ERR_UNKNOWN_FIELD}, /* key 0 is critical too */
        {{100000, 1, NULL, 0}, NB_ERR_UNKNOWN_FIELD},
        {{-1, 7, NULL, 0}, NB_OK},
        {{-5, 0, nested, sizeof(nested)}, NB_OK},
        {{-70001, 0, text, sizeof(text)}, NB_OK},
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        o = (struct tl_mopts){.extra = &cases[i].e, .extra_count = 1};
        nb_err err = hand(&r, &o, &m);
        if (err != cases[i].want)
            fail_msg("extra key %lld: %s, expected %s",
                     (long long)cases[i].e.key, nb_err_name(err),
                     nb_err_name(cases[i].want));
        if (err == NB_OK) /* an extension is ignored, not mistaken */
            assert_int_equal(m.svn, 4);
    }
    /* Extension keys are remembered too: a duplicate one is refused, and
     * so is a ninth extension (regression: both were once accepted). */
    {
        struct tl_extra two[2] = {{-3, 1, NULL, 0}, {-3, 2, NULL, 0}};
        o = (struct tl_mopts){.extra = two, .extra_count = 2};
        assert_int_equal(hand(&r, &o, &m), NB_ERR_DUPLICATE);
        struct tl_extra many[9];
        for (int i = 0; i < 9; i++)
            many[i] = (struct tl_extra){-1 - i, (uint64_t)i, NULL, 0};
        o = (struct tl_mopts){.extra = many, .extra_count = 8};
        assert_int_equal(hand(&r, &o, &m), NB_OK);
        o = (struct tl_mopts){.extra = many, .extra_count = 9};
        assert_int_equal(hand(&r, &o, &m), NB_ERR_MALFORMED);
    }
    /* Every required field left out. */
    for (int k = 1; k <= 15; k++) {
        if (k == 12)
            continue;
        o = (struct tl_mopts){.omit = k};
        nb_err err = hand(&r, &o, &m);
        if (err != NB_ERR_MALFORMED)
            fail_msg("without field %d: %s", k, nb_err_name(err));
    }
    /* Field values. */
    o = (struct tl_mopts){.block_size = 300};
    assert_int_equal(hand(&r, &o, &m), NB_ERR_MALFORMED);
    o = (struct tl_mopts){.block_size = 128};
    assert_int_equal(hand(&r, &o, &m), NB_ERR_MALFORMED);
    o = (struct tl_mopts){.payload_offset = 64}; /* inside the manifest */
    assert_int_equal(hand(&r, &o, &m), NB_ERR_MALFORMED);
    o = (struct tl_mopts){0};
    r.payload_format = NB_PAYLOAD_ZSTD;
    assert_int_equal(hand(&r, &o, &m), NB_ERR_UNSUPPORTED);
    r.payload_format = 5;
    assert_int_equal(hand(&r, &o, &m), NB_ERR_MALFORMED);
    r = tl_req(tl_ver(1, 0, 0), 4);
    r.hw_count = 0;
    assert_int_equal(hand(&r, &o, &m), NB_ERR_MALFORMED);
    r = tl_req(tl_ver(1, 0, 0), 4);
    r.patch = 65536;
    assert_int_equal(hand(&r, &o, &m), NB_ERR_MALFORMED);
    /* A wrong payload digest is the payload's problem, not the
     * manifest's: it verifies (nb_pkg_verify_slot refuses the slot). */
    r = tl_req(tl_ver(1, 0, 0), 4);
    uint8_t zero[NB_SHA256_LEN] = {0};
    o = (struct tl_mopts){.digest = zero};
    assert_int_equal(hand(&r, &o, &m), NB_OK);
    /* Signer key ID (field 14) not the protected one. */
    struct nb_buf map = {0}, out = {0};
    uint8_t p[300], kid[NB_KEY_ID_LEN] = {1, 2, 3, 4, 5, 6, 7, 8};
    struct nb_manifest_req r2 = tl_req(tl_ver(1, 0, 0), 4);
    nb_testpkg_payload(p, 300, 3);
    o = (struct tl_mopts){0};
    tl_manifest_map(&T->crypto, &r2, &o, kid, p, 300, &map);
    tl_sign1(&T->crypto, &T->keys.signer, T->keys.delegation.p,
             T->keys.delegation.len, &map, &out);
    assert_int_equal(verify(out.p, (uint32_t)out.len, &m), NB_ERR_MALFORMED);
    nb_buf_free(&map);
    nb_buf_free(&out);
}

/* A keystore that cannot answer gives no verdict (regression: its error
 * once became NB_ERR_UNKNOWN_KEY, and the bootloader then rejected a good
 * image for good). */
static nb_err broken_root(void *ctx, const uint8_t kid[NB_KEY_ID_LEN],
                          uint8_t pub[NB_PUBKEY_LEN])
{
    (void)kid;
    (void)pub;
    return *(const nb_err *)ctx;
}

static void keystore_failure_is_no_verdict(void **state)
{
    (void)state;
    struct tl_image im = small(1);
    struct nb_manifest m;
    struct nb_revocations rev;
    const uint8_t *man = im.data + NB_PKG_HDR_SIZE;
    uint32_t mlen = im.mlen;
    const nb_err errs[] = {NB_ERR_IO, NB_ERR_NOMEM, NB_ERR_UNKNOWN_KEY,
                           NB_ERR_NOENT};
    const nb_err want[] = {NB_ERR_IO, NB_ERR_NOMEM, NB_ERR_UNKNOWN_KEY,
                           NB_ERR_UNKNOWN_KEY};
    for (unsigned i = 0; i < 4; i++) {
        struct nb_keystore ks = {(void *)&errs[i], broken_root};
        assert_int_equal(nb_manifest_verify(&T->crypto, &ks, NULL, man, mlen,
                                            &m),
                         want[i]);
        assert_int_equal(nb_revocation_verify(&T->crypto, &ks, NULL, man,
                                              mlen, &rev) == NB_OK,
                         0);
    }
    tl_image_free(&im);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fields),
        cmocka_unit_test(every_bit_flip),
        cmocka_unit_test(truncation_and_trailing),
        cmocka_unit_test(unknown_and_wrong_keys),
        cmocka_unit_test(expired_delegation),
        cmocka_unit_test(revoked_key),
        cmocka_unit_test(vendor_class_hw_and_size),
        cmocka_unit_test(keys_and_fields),
        cmocka_unit_test(keystore_failure_is_no_verdict),
    };
    return cmocka_run_group_tests_name("manifest", tests, setup, teardown);
}
