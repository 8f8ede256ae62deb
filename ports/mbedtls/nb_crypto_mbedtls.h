/* nb_crypto_mbedtls.h - the crypto port over mbedTLS 2.28.
 *
 * Fills a `struct nb_crypto` (core/nb_crypto.h) with SHA-256 and ECDSA
 * P-256 verify from mbedTLS. The caller owns both structs. The hash
 * allocates nothing; a verify allocates its big numbers through mbedTLS'
 * calloc (on an MCU: a static pool) and frees them before it returns.
 * `c->ctx` points at `m`, so `m` must outlive every use of `c`.
 *
 * ecdsa_p256_verify returns NB_OK or NB_ERR_SIGNATURE (also for a key
 * that is not an uncompressed point on P-256, and for r or s outside
 * [1, n-1] or a NULL argument), and NB_ERR_NOMEM when mbedTLS could not
 * allocate (no verdict: the bootloader resets and retries). It does NOT check
 * that the key is trusted: that is the manifest code's job.
 */
#ifndef NB_CRYPTO_MBEDTLS_H
#define NB_CRYPTO_MBEDTLS_H

#include <mbedtls/sha256.h>

#include "nb_crypto.h"

/* State of the mbedTLS port: the running SHA-256 (a verify keeps no
 * state here). */
struct nb_mbedtls_crypto {
    mbedtls_sha256_context sha;
};

/* Initialise `m` and point `c` at it. Never fails; both must be non-NULL.
 * Pair with nb_crypto_mbedtls_free(). */
void nb_crypto_mbedtls_init(struct nb_crypto *c, struct nb_mbedtls_crypto *m);

/* Release `m` (wipes the hash state) and clear `c`. Safe to call twice. */
void nb_crypto_mbedtls_free(struct nb_crypto *c, struct nb_mbedtls_crypto *m);

#endif
