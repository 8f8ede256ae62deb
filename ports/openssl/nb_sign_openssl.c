/* nb_sign_openssl.c - host-side ES256 keys and signing over OpenSSL 3
 * (test keys from a seed, PEM key files, PEM public keys). See
 * nb_sign_openssl.h; nothing deprecated in OpenSSL 3.0 is used.
 */
#include "nb_sign_openssl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "nb_crypto_openssl.h"

#define TEST_KEY_LABEL "nobrick test key" /* 16 bytes, no NUL hashed */
#define DER_SIG_MAX 80 /* an ECDSA-Sig-Value for P-256 is at most 72 */

/* ---------------------------------------------------------- public keys */

static int is_p256(const EVP_PKEY *key)
{
    char name[64];
    size_t n = 0;
    int nid;

    if (!key || !EVP_PKEY_is_a(key, "EC"))
        return 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, name,
                                       sizeof(name), &n) != 1)
        return 0; /* explicit curve parameters: refused */
    nid = OBJ_sn2nid(name);
    if (nid == NID_undef)
        nid = EC_curve_nist2nid(name); /* "P-256" */
    return nid == NID_X9_62_prime256v1;
}

nb_err nb_openssl_key_pub(const EVP_PKEY *key, uint8_t pub[65])
{
    BIGNUM *x = NULL, *y = NULL;
    nb_err err = NB_ERR_IO;

    if (!key || !pub)
        return NB_ERR_INVAL;
    if (!is_p256(key)) {
        ERR_clear_error();
        return NB_ERR_UNSUPPORTED;
    }
    /* X and Y rather than the encoded point, whose form (compressed or
     * not) depends on how the key was made. */
    if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x) != 1 ||
        EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y) != 1)
        goto out;
    pub[0] = 0x04;
    if (BN_bn2binpad(x, pub + 1, 32) != 32 ||
        BN_bn2binpad(y, pub + 33, 32) != 32)
        goto out;
    err = NB_OK;
out:
    if (err)
        ERR_clear_error();
    BN_free(x);
    BN_free(y);
    return err;
}

nb_err nb_openssl_pub_to_pem(const uint8_t pub[65], char *out, size_t cap,
                             size_t *len)
{
    EVP_PKEY *pkey = NULL;
    BIO *bio = NULL;
    char *data = NULL;
    long n;
    nb_err err;

    if (!pub || !out)
        return NB_ERR_INVAL;
    err = nb_openssl_pkey_from_pub(pub, &pkey);
    if (err)
        return err;
    err = NB_ERR_NOMEM;
    bio = BIO_new(BIO_s_mem());
    if (!bio)
        goto out;
    err = NB_ERR_IO;
    if (PEM_write_bio_PUBKEY(bio, pkey) != 1)
        goto out;
    n = BIO_get_mem_data(bio, &data);
    if (n <= 0 || !data)
        goto out;
    err = NB_ERR_NOMEM;
    if ((size_t)n >= cap)
        goto out;
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    if (len)
        *len = (size_t)n;
    err = NB_OK;
out:
    if (err)
        ERR_clear_error();
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    return err;
}

nb_err nb_openssl_pub_from_pem(const char *pem, size_t len, uint8_t pub[65])
{
    EVP_PKEY *pkey = NULL;
    BIO *bio;
    nb_err err;

    if (!pem || !pub || len > 0x7fffffff)
        return NB_ERR_INVAL;
    bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return NB_ERR_NOMEM;
    pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!pkey) {
        ERR_clear_error();
        return NB_ERR_MALFORMED;
    }
    err = nb_openssl_key_pub(pkey, pub);
    EVP_PKEY_free(pkey);
    return err;
}

/* ------------------------------------------------------------ test keys */

nb_err nb_openssl_key_from_seed(uint64_t seed, EVP_PKEY **out)
{
    uint8_t in[sizeof(TEST_KEY_LABEL) - 1 + 8];
    uint8_t h[32], pub[65];
    char group[] = SN_X9_62_prime256v1;
    EC_GROUP *grp = NULL;
    EC_POINT *q = NULL;
    BN_CTX *bctx = NULL;
    BIGNUM *d = NULL, *nm1 = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_PKEY *pkey = NULL;
    nb_err err = NB_ERR_IO;
    unsigned i;

    if (!out)
        return NB_ERR_INVAL;
    *out = NULL;

    /* H = SHA-256("nobrick test key" || seed as u64 big-endian) */
    memcpy(in, TEST_KEY_LABEL, sizeof(TEST_KEY_LABEL) - 1);
    for (i = 0; i < 8; i++)
        in[sizeof(TEST_KEY_LABEL) - 1 + i] = (uint8_t)(seed >> (56 - 8 * i));
    if (EVP_Digest(in, sizeof(in), h, NULL, EVP_sha256(), NULL) != 1)
        goto out;

    /* d = (H mod (n - 1)) + 1, in [1, n-1] */
    grp = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    bctx = BN_CTX_secure_new();
    d = BN_secure_new();
    nm1 = BN_new();
    q = grp ? EC_POINT_new(grp) : NULL;
    if (!grp || !bctx || !d || !nm1 || !q) {
        err = NB_ERR_NOMEM;
        goto out;
    }
    if (!BN_bin2bn(h, sizeof(h), d) ||
        !BN_copy(nm1, EC_GROUP_get0_order(grp)) || !BN_sub_word(nm1, 1) ||
        !BN_mod(d, d, nm1, bctx) || !BN_add_word(d, 1))
        goto out;

    /* Q = d G, uncompressed */
    if (!EC_POINT_mul(grp, q, d, NULL, NULL, bctx) ||
        EC_POINT_point2oct(grp, q, POINT_CONVERSION_UNCOMPRESSED, pub,
                           sizeof(pub), bctx) != sizeof(pub))
        goto out;

    /* The key pair as an EVP_PKEY. */
    bld = OSSL_PARAM_BLD_new();
    if (!bld) {
        err = NB_ERR_NOMEM;
        goto out;
    }
    if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                         group, 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub,
                                          sizeof(pub)) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d))
        goto out;
    params = OSSL_PARAM_BLD_to_param(bld);
    pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (!params || !pctx) {
        err = NB_ERR_NOMEM;
        goto out;
    }
    if (EVP_PKEY_fromdata_init(pctx) != 1 ||
        EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_KEYPAIR, params) != 1)
        goto out;
    *out = pkey;
    pkey = NULL;
    err = NB_OK;
out:
    if (err)
        ERR_clear_error();
    OPENSSL_cleanse(h, sizeof(h));
    OPENSSL_cleanse(in, sizeof(in));
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(params); /* secure memory for the private key: wiped */
    OSSL_PARAM_BLD_free(bld);
    BN_clear_free(d);
    BN_free(nm1);
    EC_POINT_free(q);
    BN_CTX_free(bctx);
    EC_GROUP_free(grp);
    return err;
}

/* ------------------------------------------------------------ PEM files */

/* A passphrase callback that refuses: an encrypted key fails to load
 * instead of prompting on the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf; (void)size; (void)rwflag; (void)u;
    return -1;
}

nb_err nb_openssl_key_load_pem(const char *path, EVP_PKEY **out)
{
    EVP_PKEY *pkey;
    FILE *f;

    if (!path || !out)
        return NB_ERR_INVAL;
    *out = NULL;
    f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? NB_ERR_NOENT : NB_ERR_IO;
    pkey = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
    fclose(f);
    if (!pkey) {
        ERR_clear_error();
        return NB_ERR_MALFORMED;
    }
    if (!is_p256(pkey)) {
        ERR_clear_error();
        EVP_PKEY_free(pkey);
        return NB_ERR_UNSUPPORTED;
    }
    *out = pkey;
    return NB_OK;
}

nb_err nb_openssl_key_save_pem(const char *path, const EVP_PKEY *key)
{
    FILE *f;
    int fd, ok;

    if (!path || !key)
        return NB_ERR_INVAL;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == EEXIST ? NB_ERR_DENIED
               : errno == ENOENT ? NB_ERR_NOENT : NB_ERR_IO;
    /* 0600 whatever the umask was. */
    if (fchmod(fd, 0600) != 0) {
        close(fd);
        unlink(path);
        return NB_ERR_IO;
    }
    f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(path);
        return NB_ERR_IO;
    }
    ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        ok = 0;
    if (fclose(f) != 0)
        ok = 0;
    if (!ok) {
        ERR_clear_error();
        unlink(path);
        return NB_ERR_IO;
    }
    return NB_OK;
}

/* --------------------------------------------------------------- signer */

static nb_err signer_sign(void *ctx, const uint8_t hash[NB_SHA256_LEN],
                          uint8_t sig[NB_SIG_LEN])
{
    EVP_PKEY *key = ctx;
    EVP_PKEY_CTX *sctx = NULL;
    ECDSA_SIG *es = NULL;
    const BIGNUM *r = NULL, *s = NULL;
    uint8_t der[DER_SIG_MAX];
    const unsigned char *p = der;
    size_t n = sizeof(der);
    nb_err err = NB_ERR_IO;

    if (!key || !hash || !sig)
        return NB_ERR_INVAL;
    sctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    if (!sctx)
        goto out;
    /* Signs the digest as given (no second hash). */
    if (EVP_PKEY_sign_init(sctx) != 1 ||
        EVP_PKEY_CTX_set_signature_md(sctx, EVP_sha256()) != 1 ||
        EVP_PKEY_sign(sctx, der, &n, hash, NB_SHA256_LEN) != 1)
        goto out;
    es = d2i_ECDSA_SIG(NULL, &p, (long)n);
    if (!es || p != der + n)
        goto out;
    ECDSA_SIG_get0(es, &r, &s);
    if (!r || !s || BN_bn2binpad(r, sig, 32) != 32 ||
        BN_bn2binpad(s, sig + 32, 32) != 32)
        goto out;
    err = NB_OK;
out:
    if (err)
        ERR_clear_error();
    ECDSA_SIG_free(es);
    EVP_PKEY_CTX_free(sctx);
    return err;
}

nb_err nb_openssl_signer(EVP_PKEY *key, struct nb_signer *out)
{
    nb_err err;

    if (!key || !out)
        return NB_ERR_INVAL;
    memset(out, 0, sizeof(*out));
    err = nb_openssl_key_pub(key, out->pub);
    if (err)
        return err;
    out->ctx = key;
    out->sign = signer_sign;
    return NB_OK;
}
