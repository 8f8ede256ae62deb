/* nb_crypto_mbedtls.c - SHA-256 and ECDSA P-256 verify for the core, from
 * mbedTLS 2.28.
 *
 * Uses the *_ret functions of the 2.x API (the variants without _ret are
 * deprecated in 2.28 and removed in 3.x, where the _ret names are gone
 * too; a 3.x port would drop the suffix).
 *
 * This port is also the MCU reference: the verify keeps its group, point
 * and numbers on the stack for the length of one call (mbedTLS allocates
 * their limbs through its calloc, which an MCU build points at a static
 * pool) and frees all of them before returning. Nothing is cached in
 * `struct nb_mbedtls_crypto`, which therefore stays free of interior
 * pointers.
 */
#include "nb_crypto_mbedtls.h"

#include <string.h>

#include <mbedtls/bignum.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>

static nb_err sha256_start(void *ctx)
{
    struct nb_mbedtls_crypto *m = ctx;
    if (!m)
        return NB_ERR_INVAL;
    if (mbedtls_sha256_starts_ret(&m->sha, 0) != 0)
        return NB_ERR_IO;
    return NB_OK;
}

static nb_err sha256_update(void *ctx, const void *data, size_t len)
{
    struct nb_mbedtls_crypto *m = ctx;
    if (!m || (!data && len))
        return NB_ERR_INVAL;
    if (len == 0)
        return NB_OK;
    if (mbedtls_sha256_update_ret(&m->sha, data, len) != 0)
        return NB_ERR_IO;
    return NB_OK;
}

static nb_err sha256_finish(void *ctx, uint8_t digest[NB_SHA256_LEN])
{
    struct nb_mbedtls_crypto *m = ctx;
    if (!m || !digest)
        return NB_ERR_INVAL;
    if (mbedtls_sha256_finish_ret(&m->sha, digest) != 0)
        return NB_ERR_IO;
    return NB_OK;
}

/* ECDSA P-256 over a SHA-256 digest. Every failure, a malformed key and a
 * NULL argument included, is NB_ERR_SIGNATURE, except running out of
 * memory (mbedTLS allocates bignums): NB_ERR_NOMEM, which is no verdict.
 *   - the key must be an uncompressed point (04 || X || Y) on the curve
 *     with coordinates below p (mbedtls_ecp_point_read_binary refuses any
 *     other first byte at this length; mbedtls_ecp_check_pubkey checks
 *     the range and the curve equation);
 *   - r and s must lie in [1, n-1] (mbedtls_ecdsa_verify checks this).
 * The running hash in `ctx` is not touched. */
static nb_err ecdsa_p256_verify(void *ctx, const uint8_t pub[65],
                                const uint8_t hash[NB_SHA256_LEN],
                                const uint8_t sig[64])
{
    mbedtls_ecp_group grp;
    mbedtls_ecp_point q;
    mbedtls_mpi r, s;
    nb_err err = NB_ERR_SIGNATURE;

    (void)ctx;
    if (!pub || !hash || !sig || pub[0] != 0x04)
        return NB_ERR_SIGNATURE; /* 0x04 explicit, whatever mbedTLS takes */

    mbedtls_ecp_group_init(&grp);
    mbedtls_ecp_point_init(&q);
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);

    /* An allocation failure (a small static pool on an MCU) says nothing
     * about the signature: it must not reject a good image for good. */
    int rc = mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1);
    if (rc)
        goto fail;
    rc = mbedtls_ecp_point_read_binary(&grp, &q, pub, 65);
    if (!rc)
        rc = mbedtls_ecp_check_pubkey(&grp, &q);
    if (!rc)
        rc = mbedtls_mpi_read_binary(&r, sig, 32);
    if (!rc)
        rc = mbedtls_mpi_read_binary(&s, sig + 32, 32);
    if (!rc)
        rc = mbedtls_ecdsa_verify(&grp, hash, NB_SHA256_LEN, &q, &r, &s);
    if (rc)
        goto fail;
    err = NB_OK;
    goto out;
fail:
    if (rc == MBEDTLS_ERR_MPI_ALLOC_FAILED || rc == MBEDTLS_ERR_ECP_ALLOC_FAILED)
        err = NB_ERR_NOMEM;
out:
    mbedtls_mpi_free(&s);
    mbedtls_mpi_free(&r);
    mbedtls_ecp_point_free(&q);
    mbedtls_ecp_group_free(&grp);
    return err;
}

void nb_crypto_mbedtls_init(struct nb_crypto *c, struct nb_mbedtls_crypto *m)
{
    mbedtls_sha256_init(&m->sha);
    memset(c, 0, sizeof(*c));
    c->ctx = m;
    c->sha256_start = sha256_start;
    c->sha256_update = sha256_update;
    c->sha256_finish = sha256_finish;
    c->ecdsa_p256_verify = ecdsa_p256_verify;
}

void nb_crypto_mbedtls_free(struct nb_crypto *c, struct nb_mbedtls_crypto *m)
{
    if (m)
        mbedtls_sha256_free(&m->sha); /* zeroizes the context */
    if (c)
        memset(c, 0, sizeof(*c));
}
