/* nb_sign_openssl.h - host-side ES256 keys and signing over OpenSSL 3:
 * a `struct nb_signer` (lib/nb_pkgbuild.h) for the simulator, the tests
 * and the nobrick tool's --insecure-key-file, and PEM conversions of
 * public keys for `nobrick key export-public` and `nobrick verify
 * --root-pub`.
 *
 * Production private keys live in a PKCS#11 token and never pass through
 * this file. Keys here are in process memory, unprotected.
 *
 * Every EVP_PKEY this file returns is owned by the caller
 * (EVP_PKEY_free). Errors: NB_ERR_INVAL (bad argument), NB_ERR_NOENT (no
 * such file), NB_ERR_IO (a file or OpenSSL operation failed),
 * NB_ERR_MALFORMED (not a PEM key we can read), NB_ERR_UNSUPPORTED (a
 * key, but not EC P-256), NB_ERR_DENIED (would overwrite a file),
 * NB_ERR_NOMEM (an output buffer is too small, or OpenSSL could not
 * allocate).
 */
#ifndef NB_SIGN_OPENSSL_H
#define NB_SIGN_OPENSSL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "nb_pkgbuild.h"

/* Room for the PEM of a P-256 SubjectPublicKeyInfo (178 characters) and
 * its terminating NUL. */
#define NB_OPENSSL_PUB_PEM_MAX 256

/* !!! TEST KEYS ONLY: NOT SECRET, NEVER FOR A REAL DEVICE OR PACKAGE !!!
 *
 * A deterministic P-256 key pair computed from `seed`, for simulators and
 * tests that must agree on keys without files. Anyone can recompute the
 * private key from the seed: a device that trusts such a key as a root
 * accepts firmware from anybody.
 *
 * The private scalar is d = (H mod (n - 1)) + 1, with H the SHA-256 of the
 * 16 ASCII bytes "nobrick test key" followed by `seed` as 8 bytes
 * big-endian, read as a big-endian integer, and n the order of P-256; so
 * d lies in [1, n-1]. *out receives a new key pair. */
nb_err nb_openssl_key_from_seed(uint64_t seed, EVP_PKEY **out);

/* Read an unencrypted PEM private key (PKCS#8 "PRIVATE KEY" or SEC 1 "EC
 * PRIVATE KEY") from `path` into *out; it must be EC P-256. Encrypted
 * keys are refused (NB_ERR_MALFORMED): this never prompts for a
 * passphrase. For --insecure-key-file only; printing the warning is the
 * caller's job. */
nb_err nb_openssl_key_load_pem(const char *path, EVP_PKEY **out);

/* Write the private key `key` to `path` as an unencrypted PKCS#8 PEM,
 * file mode 0600. Refuses to overwrite an existing file (NB_ERR_DENIED);
 * on a failure no file is left behind. The key material is written in
 * the clear: test and --insecure-key-file use only. */
nb_err nb_openssl_key_save_pem(const char *path, const EVP_PKEY *key);

/* Fill `out` with a signer over `key` (an EC P-256 key pair): its public
 * key (04 || X || Y) and a sign callback that returns r || s, each 32
 * bytes big-endian, zero-padded. The signer borrows `key` (out->ctx ==
 * key): the key must outlive it, and the caller still frees the key.
 * Signatures use OpenSSL's random nonce, so they are NOT deterministic.
 * The callback returns NB_OK, NB_ERR_INVAL (NULL argument) or NB_ERR_IO
 * (OpenSSL failed, e.g. the key has no private part).
 * NB_ERR_UNSUPPORTED when `key` is not EC P-256. */
nb_err nb_openssl_signer(EVP_PKEY *key, struct nb_signer *out);

/* The public key of an EC P-256 key (private or public) as 04 || X || Y.
 * NB_ERR_UNSUPPORTED when `key` is not EC P-256. */
nb_err nb_openssl_key_pub(const EVP_PKEY *key, uint8_t pub[65]);

/* The PEM ("-----BEGIN PUBLIC KEY-----", a SubjectPublicKeyInfo) of the
 * P-256 point `pub` (04 || X || Y), NUL-terminated in `out` (`cap`
 * bytes; NB_OPENSSL_PUB_PEM_MAX is enough); *len (may be NULL) receives
 * its length without the NUL. NB_ERR_INVAL when `pub` is not an
 * uncompressed point on the curve, NB_ERR_NOMEM when `cap` is too small.
 */
nb_err nb_openssl_pub_to_pem(const uint8_t pub[65], char *out, size_t cap,
                             size_t *len);

/* The P-256 point of the first "PUBLIC KEY" PEM block in `pem` (`len`
 * bytes, need not be NUL-terminated) as 04 || X || Y. NB_ERR_MALFORMED
 * when there is no readable public key (the point must be on the curve),
 * NB_ERR_UNSUPPORTED when it is not EC P-256. Says nothing about whether
 * the key is to be trusted. */
nb_err nb_openssl_pub_from_pem(const char *pem, size_t len, uint8_t pub[65]);

#endif
