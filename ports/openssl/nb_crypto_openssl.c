/* nb_crypto_openssl.c - SHA-256 and ECDSA P-256 verify for the core, from
 * OpenSSL 3's libcrypto (EVP only: nothing deprecated in 3.0 is used).
 *
 * SHA-256 is EVP_sha256() through one EVP_MD_CTX per port struct, so the
 * provider picks the CPU's SHA extensions. A verify builds an EVP_PKEY
 * from the raw point (EVP_PKEY_fromdata), turns r || s into the DER
 * ECDSA-Sig-Value that EVP_PKEY_verify wants, and verifies the digest as
 * given (no second hash).
 */
#include "nb_crypto_openssl.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/params.h>

/* DER of an ECDSA-Sig-Value with two 32-byte integers: SEQUENCE header
 * (2) + 2 x (INTEGER header 2 + a leading zero 1 + 32). */
#define DER_SIG_MAX 72

static nb_err sha256_start(void *ctx)
{
    struct nb_openssl_crypto *o = ctx;
    if (!o || !o->md)
        return NB_ERR_INVAL;
    if (EVP_DigestInit_ex(o->md, EVP_sha256(), NULL) != 1) {
        ERR_clear_error();
        return NB_ERR_IO;
    }
    return NB_OK;
}

static nb_err sha256_update(void *ctx, const void *data, size_t len)
{
    struct nb_openssl_crypto *o = ctx;
    if (!o || !o->md || (!data && len))
        return NB_ERR_INVAL;
    if (len == 0)
        return NB_OK;
    if (EVP_DigestUpdate(o->md, data, len) != 1) {
        ERR_clear_error();
        return NB_ERR_IO;
    }
    return NB_OK;
}

static nb_err sha256_finish(void *ctx, uint8_t digest[NB_SHA256_LEN])
{
    struct nb_openssl_crypto *o = ctx;
    unsigned int n = 0;
    if (!o || !o->md || !digest)
        return NB_ERR_INVAL;
    if (EVP_DigestFinal_ex(o->md, digest, &n) != 1 || n != NB_SHA256_LEN) {
        ERR_clear_error();
        return NB_ERR_IO;
    }
    return NB_OK;
}

nb_err nb_openssl_pkey_from_pub(const uint8_t pub[65], EVP_PKEY **out)
{
    /* OSSL_PARAM wants writable buffers; the params live on the stack, so
     * this allocates nothing but the key itself. */
    char group[] = SN_X9_62_prime256v1;
    uint8_t point[65];
    OSSL_PARAM params[3];
    EVP_PKEY_CTX *pctx = NULL, *check = NULL;
    EVP_PKEY *pkey = NULL;
    nb_err err = NB_ERR_INVAL;

    if (!out)
        return NB_ERR_INVAL;
    *out = NULL;
    /* Uncompressed only: OpenSSL would also take 02/03 (compressed). */
    if (!pub || pub[0] != 0x04)
        return NB_ERR_INVAL;
    memcpy(point, pub, sizeof(point));
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                 group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                                  point, sizeof(point));
    params[2] = OSSL_PARAM_construct_end();

    pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (!pctx) {
        err = NB_ERR_NOMEM;
        goto out;
    }
    /* fromdata decodes the point, which refuses coordinates >= p and
     * points off the curve. */
    if (EVP_PKEY_fromdata_init(pctx) != 1 ||
        EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    /* And once more, explicitly: not infinity, in range, on the curve
     * (P-256 has cofactor 1, so no subgroup check is needed). */
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (!check) {
        err = NB_ERR_NOMEM;
        goto out;
    }
    if (EVP_PKEY_public_check_quick(check) != 1)
        goto out;
    *out = pkey;
    pkey = NULL;
    err = NB_OK;
out:
    if (err)
        ERR_clear_error();
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(pctx);
    EVP_PKEY_free(pkey);
    return err;
}

/* r || s -> DER ECDSA-Sig-Value in der[DER_SIG_MAX]; its length, or 0. */
static int sig_to_der(const uint8_t sig[64], uint8_t der[DER_SIG_MAX])
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL);
    BIGNUM *s = BN_bin2bn(sig + 32, 32, NULL);
    unsigned char *p = der;
    int n = 0;

    if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return 0;
    }
    /* es owns r and s now. */
    n = i2d_ECDSA_SIG(es, NULL);
    if (n <= 0 || n > DER_SIG_MAX)
        n = 0;
    else if (i2d_ECDSA_SIG(es, &p) != n)
        n = 0;
    ECDSA_SIG_free(es);
    return n;
}

nb_err nb_openssl_ecdsa_p256_verify(const uint8_t pub[65],
                                    const uint8_t hash[NB_SHA256_LEN],
                                    const uint8_t sig[64])
{
    uint8_t der[DER_SIG_MAX];
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *vctx = NULL;
    nb_err err = NB_ERR_SIGNATURE;
    int n;

    if (!pub || !hash || !sig)
        return NB_ERR_SIGNATURE;
    if (nb_openssl_pkey_from_pub(pub, &pkey) != NB_OK)
        goto out;
    n = sig_to_der(sig, der);
    if (n == 0)
        goto out;
    vctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (!vctx) {
        err = NB_ERR_NOMEM; /* no verdict on the signature */
        goto out;
    }
    /* The digest is the message: EVP_PKEY_verify does not hash it again.
     * Naming SHA-256 makes it refuse a digest of any other length.
     * OpenSSL checks r and s against [1, n-1]. */
    if (EVP_PKEY_verify_init(vctx) != 1 ||
        EVP_PKEY_CTX_set_signature_md(vctx, EVP_sha256()) != 1)
        goto out;
    if (EVP_PKEY_verify(vctx, der, (size_t)n, hash, NB_SHA256_LEN) == 1)
        err = NB_OK;
out:
    if (err)
        ERR_clear_error(); /* a failed verify leaves entries behind */
    EVP_PKEY_CTX_free(vctx);
    EVP_PKEY_free(pkey);
    return err;
}

static nb_err ecdsa_p256_verify(void *ctx, const uint8_t pub[65],
                                const uint8_t hash[NB_SHA256_LEN],
                                const uint8_t sig[64])
{
    (void)ctx; /* the verify keeps no state */
    return nb_openssl_ecdsa_p256_verify(pub, hash, sig);
}

nb_err nb_crypto_openssl_init(struct nb_crypto *c, struct nb_openssl_crypto *o)
{
    if (!c || !o)
        return NB_ERR_INVAL;
    memset(c, 0, sizeof(*c));
    o->md = EVP_MD_CTX_new();
    if (!o->md)
        return NB_ERR_NOMEM;
    c->ctx = o;
    c->sha256_start = sha256_start;
    c->sha256_update = sha256_update;
    c->sha256_finish = sha256_finish;
    c->ecdsa_p256_verify = ecdsa_p256_verify;
    return NB_OK;
}

void nb_crypto_openssl_free(struct nb_crypto *c, struct nb_openssl_crypto *o)
{
    if (o) {
        EVP_MD_CTX_free(o->md); /* the provider wipes the hash state */
        o->md = NULL;
    }
    if (c)
        memset(c, 0, sizeof(*c));
}
