/* nb_pkgbuild.h - building packages, delegations and revocation lists
 * (host side: the nobrick tool, the simulator, tests).
 *
 * Encodes exactly the formats of docs/package-format.md, which the core's
 * nb_manifest.h decodes. Signing goes through a struct nb_signer, so the
 * private key can stay in a PKCS#11 token (the nobrick tool) or be a test
 * key in memory (the simulator and tests, ports/openssl).
 */
#ifndef NB_PKGBUILD_H
#define NB_PKGBUILD_H

#include <stddef.h>
#include <stdint.h>

#include "nb_crypto.h"
#include "nb_manifest.h"

/* Something that can make an ES256 signature with one private key. */
struct nb_signer {
    void *ctx;
    /* Sign a SHA-256 digest: r || s into sig. */
    nb_err (*sign)(void *ctx, const uint8_t hash[NB_SHA256_LEN],
                   uint8_t sig[NB_SIG_LEN]);
    uint8_t pub[NB_PUBKEY_LEN]; /* its public key */
};

/* A growable byte buffer (malloc). */
struct nb_buf {
    uint8_t *p;
    size_t len, cap;
};
void nb_buf_free(struct nb_buf *b);

/* What goes into a delegation. */
struct nb_delegation_req {
    uint8_t pub[NB_PUBKEY_LEN]; /* the key being delegated */
    uint64_t not_before, not_after;
    uint8_t vendor[NB_UUID_LEN];
    unsigned class_count; /* 0: every class of the vendor */
    uint8_t classes[NB_MAX_CLASSES][NB_UUID_LEN];
};

/* What goes into a manifest (besides what is computed from the payload). */
struct nb_manifest_req {
    uint8_t vendor[NB_UUID_LEN];
    uint8_t class_id[NB_UUID_LEN];
    unsigned hw_count;
    const char *hw[NB_MAX_HW_REVS];
    uint32_t major, minor, patch;
    uint32_t svn;
    uint32_t block_size;     /* 0: chosen from the payload size */
    uint8_t payload_format;  /* NB_PAYLOAD_RAW */
    int has_precursor;
    uint8_t precursor[NB_SHA256_LEN];
    uint64_t created;        /* Unix seconds */
    uint32_t payload_offset; /* 0: the smallest 512-aligned offset */
};

/* Sign a delegation with the root signer: out = COSE_Sign1 bytes. */
nb_err nb_build_delegation(const struct nb_crypto *c,
                           const struct nb_signer *root,
                           const struct nb_delegation_req *req,
                           struct nb_buf *out);

/* Sign a revocation list with the root signer. */
nb_err nb_build_revocation(const struct nb_crypto *c,
                           const struct nb_signer *root, uint32_t seq,
                           unsigned count,
                           const uint8_t kids[][NB_KEY_ID_LEN],
                           struct nb_buf *out);

/* Build the manifest (COSE_Sign1 bytes) for `payload`, signed by
 * `signer`, carrying `delegation` (COSE_Sign1 bytes from
 * nb_build_delegation). */
nb_err nb_build_manifest(const struct nb_crypto *c,
                         const struct nb_signer *signer,
                         const uint8_t *delegation, size_t delegation_len,
                         const struct nb_manifest_req *req,
                         const uint8_t *payload, size_t payload_len,
                         struct nb_buf *out);

/* Wrap manifest and payload in the .nbpkg container (the payload offset
 * is read from the manifest, which is parsed but not verified). */
nb_err nb_build_package(const struct nb_crypto *c,
                        const uint8_t *manifest, size_t manifest_len,
                        const uint8_t *payload, size_t payload_len,
                        struct nb_buf *out);

#endif
