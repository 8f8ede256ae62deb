/* nb_crypto.h - the crypto port interface.
 *
 * The core never links a crypto library: a port (ports/mbedtls,
 * ports/openssl) fills this struct. One hash runs at a time per struct:
 * `ctx` holds the running state.
 */
#ifndef NB_CRYPTO_H
#define NB_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "nb_err.h"

#define NB_SHA256_LEN 32

struct nb_crypto {
    void *ctx;
    nb_err (*sha256_start)(void *ctx);
    nb_err (*sha256_update)(void *ctx, const void *data, size_t len);
    nb_err (*sha256_finish)(void *ctx, uint8_t digest[NB_SHA256_LEN]);
    /* ECDSA P-256 verify of `hash` with `pub` (65 bytes, 04 || X || Y)
     * and `sig` (r || s, 32 bytes each, big-endian). NB_OK when valid,
     * NB_ERR_SIGNATURE when not (a bad point or key included),
     * NB_ERR_NOMEM when the port ran out of memory: that is no verdict
     * and must never be reported as a bad signature, or a good image
     * would be rejected for good. Does not touch the running hash. Only
     * needed to verify manifests. */
    nb_err (*ecdsa_p256_verify)(void *ctx, const uint8_t pub[65],
                                const uint8_t hash[NB_SHA256_LEN],
                                const uint8_t sig[64]);
};

/* Check that the hash callbacks are present (ecdsa_p256_verify is checked
 * where a signature is verified). NB_OK or NB_ERR_INVAL. */
nb_err nb_crypto_check(const struct nb_crypto *c);

/* One-shot SHA-256 of a buffer. */
nb_err nb_sha256(const struct nb_crypto *c, const void *data, size_t len,
                 uint8_t digest[NB_SHA256_LEN]);

#endif
