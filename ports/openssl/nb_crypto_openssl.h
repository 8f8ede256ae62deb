/* nb_crypto_openssl.h - the crypto port over OpenSSL 3's libcrypto.
 *
 * For Linux-class devices and the host tools. Fills a `struct nb_crypto`
 * (core/nb_crypto.h) with SHA-256 through EVP (which uses the CPU's SHA
 * extensions where present) and ECDSA P-256 verify through EVP_PKEY.
 *
 * Unlike the mbedTLS port this one allocates: the EVP_MD_CTX in
 * nb_crypto_openssl_init() (released by nb_crypto_openssl_free()), and
 * the key and signature objects of each verify (released before it
 * returns). `c->ctx` points at `o`, so `o` must outlive every use of `c`.
 * One hash runs at a time per struct, as the interface says.
 */
#ifndef NB_CRYPTO_OPENSSL_H
#define NB_CRYPTO_OPENSSL_H

#include <openssl/evp.h>

#include "nb_crypto.h"

/* State of the OpenSSL port: the running SHA-256 (owned; allocated by
 * nb_crypto_openssl_init). */
struct nb_openssl_crypto {
    EVP_MD_CTX *md;
};

/* Allocate the digest context in `o` and point `c` at it. NB_OK, or
 * NB_ERR_NOMEM when OpenSSL cannot allocate it (then `c` is cleared and
 * `o->md` is NULL; calling nb_crypto_openssl_free() is still harmless).
 * NB_ERR_INVAL when `c` or `o` is NULL. */
nb_err nb_crypto_openssl_init(struct nb_crypto *c, struct nb_openssl_crypto *o);

/* Release `o` (the digest context wipes its state when freed) and clear
 * `c`. Either may be NULL. Safe to call twice. */
void nb_crypto_openssl_free(struct nb_crypto *c, struct nb_openssl_crypto *o);

/* The verify behind c->ecdsa_p256_verify, usable without a struct (it
 * keeps no state): NB_OK when `sig` (r || s) is a valid ECDSA P-256
 * signature of the SHA-256 digest `hash` by `pub` (04 || X || Y), else
 * NB_ERR_SIGNATURE, also for a key that is not an uncompressed point on
 * the curve, r or s outside [1, n-1], a NULL argument or an OpenSSL
 * failure. Does NOT check that the key is trusted. */
nb_err nb_openssl_ecdsa_p256_verify(const uint8_t pub[65],
                                    const uint8_t hash[NB_SHA256_LEN],
                                    const uint8_t sig[64]);

/* An EVP_PKEY holding the public key `pub` (04 || X || Y on P-256), for
 * the signing helpers and tools. The caller frees it with EVP_PKEY_free.
 * NB_ERR_INVAL when the point is not an uncompressed point on the curve;
 * NB_ERR_NOMEM when OpenSSL fails. */
nb_err nb_openssl_pkey_from_pub(const uint8_t pub[65], EVP_PKEY **out);

#endif
