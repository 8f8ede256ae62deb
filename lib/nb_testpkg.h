/* nb_testpkg.h - deterministic TEST keys and packages for the simulator,
 * the tests and the benchmarks.
 *
 * !!! The keys here are computed from public seeds: anyone can recompute
 * them. A device that trusts the test root accepts firmware from anybody.
 * They exist so that a simulated fleet, a power-cut sweep and its replay
 * see byte-identical packages (RFC 6979 deterministic ECDSA, through
 * mbedTLS). Real packages are signed with keys in a PKCS#11 token by the
 * nobrick tool. !!!
 */
#ifndef NB_TESTPKG_H
#define NB_TESTPKG_H

#include <stdint.h>

#include <mbedtls/ecp.h>

#include "nb_manifest.h"
#include "nb_pkgbuild.h"

#define NB_TEST_ROOT_SEED 1u
#define NB_TEST_SIGNER_SEED 2u
#define NB_TEST_HW_REV "sim-1"
#define NB_TEST_CREATED 1767225600u /* 2026-01-01T00:00:00Z */

struct nb_test_key {
    mbedtls_ecp_group grp;
    mbedtls_mpi d;
    uint8_t pub[NB_PUBKEY_LEN];
};

struct nb_testkeys {
    struct nb_test_key root, sign;
    uint8_t root_kid[NB_KEY_ID_LEN];
    struct nb_signer root_signer, signer;
    struct nb_keystore keystore; /* trusts the test root only */
    struct nb_buf delegation;    /* test root -> test signer, any class */
};

/* The simulated device's identity: test vendor and class, hardware
 * revision NB_TEST_HW_REV. */
void nb_testpkg_identity(struct nb_identity *id);
void nb_testpkg_vendor(uint8_t vendor[NB_UUID_LEN]);
void nb_testpkg_class(uint8_t class_id[NB_UUID_LEN]);

/* Derive a test key from a seed (the same derivation as ports/openssl's
 * nb_openssl_key_from_seed, so both give the same key pair). */
nb_err nb_test_key_init(struct nb_test_key *k, uint64_t seed);
void nb_test_key_free(struct nb_test_key *k);

/* Root and signer test keys, a keystore trusting the root, and the
 * delegation (valid 2000..2100, the test vendor, every class). `c` is
 * used to hash. */
nb_err nb_testkeys_init(struct nb_testkeys *k, const struct nb_crypto *c);
void nb_testkeys_free(struct nb_testkeys *k);

/* A package (.nbpkg bytes) for the test identity: payload of
 * `payload_size` bytes from `seed`, version, security version; the same
 * arguments always give the same bytes. */
nb_err nb_testpkg_make(struct nb_testkeys *k, const struct nb_crypto *c,
                       uint32_t version, uint32_t svn, uint32_t payload_size,
                       uint64_t seed, struct nb_buf *out);

/* Deterministic test payload bytes. */
void nb_testpkg_payload(uint8_t *p, uint32_t n, uint64_t seed);

#endif
