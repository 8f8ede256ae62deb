/* nb_testpkg.c - deterministic test keys and packages; see nb_testpkg.h.
 * NOT for real keys. */
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/sha256.h>

#include "nb_image.h"
#include "nb_testpkg.h"

static const uint8_t test_vendor[NB_UUID_LEN] = {
    0x6e, 0x62, 0x2d, 0x74, 0x65, 0x73, 0x74, 0x2d,
    0x76, 0x65, 0x6e, 0x64, 0x6f, 0x72, 0x00, 0x01}; /* "nb-test-vendor" */
static const uint8_t test_class[NB_UUID_LEN] = {
    0x6e, 0x62, 0x2d, 0x74, 0x65, 0x73, 0x74, 0x2d,
    0x63, 0x6c, 0x61, 0x73, 0x73, 0x00, 0x00, 0x01}; /* "nb-test-class" */

void nb_testpkg_vendor(uint8_t vendor[NB_UUID_LEN])
{
    memcpy(vendor, test_vendor, NB_UUID_LEN);
}

void nb_testpkg_class(uint8_t class_id[NB_UUID_LEN])
{
    memcpy(class_id, test_class, NB_UUID_LEN);
}

void nb_testpkg_identity(struct nb_identity *id)
{
    memset(id, 0, sizeof(*id));
    nb_testpkg_vendor(id->vendor);
    nb_testpkg_class(id->class_id);
    id->hw_rev_len = (uint8_t)strlen(NB_TEST_HW_REV);
    memcpy(id->hw_rev, NB_TEST_HW_REV, id->hw_rev_len);
}

void nb_testpkg_payload(uint8_t *p, uint32_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (uint32_t i = 0; i < n; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        p[i] = (uint8_t)((x * 0x2545F4914F6CDD1Dull) >> 56);
    }
}

/* The blinding RNG mbedTLS asks for; the signature itself is RFC 6979
 * deterministic, so a fixed stream is fine for test keys. */
static int fixed_rng(void *ctx, unsigned char *out, size_t len)
{
    uint64_t *s = ctx;
    for (size_t i = 0; i < len; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        out[i] = (unsigned char)(*s >> 56);
    }
    return 0;
}

nb_err nb_test_key_init(struct nb_test_key *k, uint64_t seed)
{
    uint8_t msg[24] = "nobrick test key", h[32];
    uint64_t rng = seed;
    mbedtls_ecp_point q;
    mbedtls_mpi n1;
    size_t olen = 0;
    int rc;
    for (int i = 0; i < 8; i++)
        msg[16 + i] = (uint8_t)(seed >> (56 - 8 * i));
    mbedtls_ecp_group_init(&k->grp);
    mbedtls_mpi_init(&k->d);
    mbedtls_ecp_point_init(&q);
    mbedtls_mpi_init(&n1);
    /* d = (SHA-256(msg) mod (n - 1)) + 1, as nb_openssl_key_from_seed. */
    rc = mbedtls_sha256_ret(msg, sizeof(msg), h, 0);
    if (!rc)
        rc = mbedtls_ecp_group_load(&k->grp, MBEDTLS_ECP_DP_SECP256R1);
    if (!rc)
        rc = mbedtls_mpi_read_binary(&k->d, h, sizeof(h));
    if (!rc)
        rc = mbedtls_mpi_sub_int(&n1, &k->grp.N, 1);
    if (!rc)
        rc = mbedtls_mpi_mod_mpi(&k->d, &k->d, &n1);
    if (!rc)
        rc = mbedtls_mpi_add_int(&k->d, &k->d, 1);
    if (!rc)
        rc = mbedtls_ecp_mul(&k->grp, &q, &k->d, &k->grp.G, fixed_rng, &rng);
    if (!rc)
        rc = mbedtls_ecp_point_write_binary(&k->grp, &q,
                                            MBEDTLS_ECP_PF_UNCOMPRESSED,
                                            &olen, k->pub, NB_PUBKEY_LEN);
    mbedtls_ecp_point_free(&q);
    mbedtls_mpi_free(&n1);
    if (rc || olen != NB_PUBKEY_LEN) {
        nb_test_key_free(k);
        return NB_ERR_IO;
    }
    return NB_OK;
}

void nb_test_key_free(struct nb_test_key *k)
{
    mbedtls_mpi_free(&k->d);
    mbedtls_ecp_group_free(&k->grp);
}

static nb_err test_sign(void *ctx, const uint8_t hash[NB_SHA256_LEN],
                        uint8_t sig[NB_SIG_LEN])
{
    struct nb_test_key *k = ctx;
    mbedtls_mpi r, s;
    uint64_t rng = 7;
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    int rc = mbedtls_ecdsa_sign_det_ext(&k->grp, &r, &s, &k->d, hash,
                                        NB_SHA256_LEN, MBEDTLS_MD_SHA256,
                                        fixed_rng, &rng);
    if (!rc)
        rc = mbedtls_mpi_write_binary(&r, sig, 32);
    if (!rc)
        rc = mbedtls_mpi_write_binary(&s, sig + 32, 32);
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    return rc ? NB_ERR_IO : NB_OK;
}

static nb_err test_root_key(void *ctx, const uint8_t kid[NB_KEY_ID_LEN],
                            uint8_t pub[NB_PUBKEY_LEN])
{
    const struct nb_testkeys *k = ctx;
    if (memcmp(kid, k->root_kid, NB_KEY_ID_LEN) != 0)
        return NB_ERR_UNKNOWN_KEY;
    memcpy(pub, k->root.pub, NB_PUBKEY_LEN);
    return NB_OK;
}

nb_err nb_testkeys_init(struct nb_testkeys *k, const struct nb_crypto *c)
{
    struct nb_delegation_req req;
    memset(k, 0, sizeof(*k));
    nb_err err = nb_test_key_init(&k->root, NB_TEST_ROOT_SEED);
    if (err)
        return err;
    if ((err = nb_test_key_init(&k->sign, NB_TEST_SIGNER_SEED))) {
        nb_test_key_free(&k->root);
        return err;
    }
    k->root_signer.ctx = &k->root;
    k->root_signer.sign = test_sign;
    memcpy(k->root_signer.pub, k->root.pub, NB_PUBKEY_LEN);
    k->signer.ctx = &k->sign;
    k->signer.sign = test_sign;
    memcpy(k->signer.pub, k->sign.pub, NB_PUBKEY_LEN);
    k->keystore.ctx = k;
    k->keystore.root_key = test_root_key;
    memset(&req, 0, sizeof(req));
    memcpy(req.pub, k->sign.pub, NB_PUBKEY_LEN);
    req.not_before = 946684800u;  /* 2000-01-01 */
    req.not_after = 4102444800u;  /* 2100-01-01 */
    nb_testpkg_vendor(req.vendor);
    err = nb_key_id(c, k->root.pub, k->root_kid);
    if (!err)
        err = nb_build_delegation(c, &k->root_signer, &req, &k->delegation);
    if (err)
        nb_testkeys_free(k);
    return err;
}

void nb_testkeys_free(struct nb_testkeys *k)
{
    nb_test_key_free(&k->root);
    nb_test_key_free(&k->sign);
    nb_buf_free(&k->delegation);
}

nb_err nb_testpkg_make(struct nb_testkeys *k, const struct nb_crypto *c,
                       uint32_t version, uint32_t svn, uint32_t payload_size,
                       uint64_t seed, struct nb_buf *out)
{
    struct nb_manifest_req req;
    struct nb_buf m = {0};
    uint8_t *payload = malloc(payload_size ? payload_size : 1);
    if (!payload)
        return NB_ERR_NOMEM;
    nb_testpkg_payload(payload, payload_size, seed);
    memset(&req, 0, sizeof(req));
    nb_testpkg_vendor(req.vendor);
    nb_testpkg_class(req.class_id);
    req.hw_count = 1;
    req.hw[0] = NB_TEST_HW_REV;
    req.major = nb_version_major(version);
    req.minor = nb_version_minor(version);
    req.patch = nb_version_patch(version);
    req.svn = svn;
    req.created = NB_TEST_CREATED;
    nb_err err = nb_build_manifest(c, &k->signer, k->delegation.p,
                                   k->delegation.len, &req, payload,
                                   payload_size, &m);
    if (!err)
        err = nb_build_package(c, m.p, m.len, payload, payload_size, out);
    nb_buf_free(&m);
    free(payload);
    return err;
}
