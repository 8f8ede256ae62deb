/* nb_manifest.h - signed manifests, delegations and revocation lists.
 *
 * The formats are in docs/package-format.md. Everything here works on a
 * caller's buffer, allocates nothing and acts on no field before the
 * signatures over it have verified.
 */
#ifndef NB_MANIFEST_H
#define NB_MANIFEST_H

#include <stdint.h>

#include "nb_crypto.h"

#define NB_KEY_ID_LEN 8
#define NB_PUBKEY_LEN 65 /* uncompressed P-256 point: 04 || X || Y */
#define NB_SIG_LEN 64    /* r || s */
#define NB_UUID_LEN 16
#define NB_MANIFEST_MAX 16384u
#define NB_PKG_HDR_SIZE 12u
#define NB_PKG_MAGIC 0x4B50424Eu /* "NBPK" */
#define NB_PKG_VERSION 1u
#define NB_MAX_HW_REVS 16
#define NB_HW_REV_MAX 32
#define NB_MAX_CLASSES 8
#define NB_MAX_REVOKED 8
#define NB_COSE_TAG_SIGN1 18
#define NB_COSE_ALG_ES256 (-7)
#define NB_COSE_LABEL_DELEGATION (-70001)
#define NB_MANIFEST_FORMAT 1u
#define NB_PAYLOAD_OFFSET_MAX 1048576u

enum nb_payload_format {
    NB_PAYLOAD_RAW = 0,
    NB_PAYLOAD_ZSTD = 1,     /* reserved */
    NB_PAYLOAD_LZ4 = 2,      /* reserved */
    NB_PAYLOAD_DELTA = 3,    /* reserved */
    NB_PAYLOAD_ENCRYPTED = 4 /* reserved */
};

/* Trust anchors: a port standing for compiled-in keys, a secure element
 * or OTP. */
struct nb_keystore {
    void *ctx;
    /* Copy the root public key whose key ID is `kid` into `pub`;
     * NB_ERR_UNKNOWN_KEY when there is none. */
    nb_err (*root_key)(void *ctx, const uint8_t kid[NB_KEY_ID_LEN],
                       uint8_t pub[NB_PUBKEY_LEN]);
};

/* What the device is: compared with every manifest. */
struct nb_identity {
    uint8_t vendor[NB_UUID_LEN];
    uint8_t class_id[NB_UUID_LEN];
    uint8_t hw_rev_len;
    char hw_rev[NB_HW_REV_MAX]; /* not NUL-terminated */
};

/* Key IDs revoked by the newest root-signed list the device accepted. */
struct nb_revocations {
    uint32_t seq;
    uint8_t count;
    uint8_t kid[NB_MAX_REVOKED][NB_KEY_ID_LEN];
};

struct nb_delegation {
    uint8_t root_kid[NB_KEY_ID_LEN]; /* root key that signed it */
    uint8_t kid[NB_KEY_ID_LEN];
    uint8_t pub[NB_PUBKEY_LEN];
    uint64_t not_before, not_after;
    uint8_t vendor[NB_UUID_LEN];
    uint8_t class_count; /* 0: every class of the vendor */
    uint8_t classes[NB_MAX_CLASSES][NB_UUID_LEN];
};

/* A parsed manifest. Strings and the block table are kept as offsets into
 * the manifest bytes (no pointers), so the struct can be copied. */
struct nb_manifest {
    uint32_t len;                /* manifest (COSE_Sign1) bytes */
    uint8_t kid[NB_KEY_ID_LEN];  /* signer */
    uint8_t vendor[NB_UUID_LEN];
    uint8_t class_id[NB_UUID_LEN];
    uint8_t hw_count;
    uint16_t hw_off[NB_MAX_HW_REVS];
    uint8_t hw_len[NB_MAX_HW_REVS];
    uint32_t version; /* packed: major << 24 | minor << 16 | patch */
    uint32_t svn;
    uint32_t payload_size;
    uint8_t digest[NB_SHA256_LEN];
    uint32_t block_size;
    uint32_t block_count;
    uint16_t block_table_off; /* offset of the first block digest */
    uint8_t payload_format;
    uint8_t has_precursor;
    uint8_t precursor[NB_SHA256_LEN];
    uint64_t created;
    uint32_t payload_offset;
    struct nb_delegation delegation;
};

/* Key ID of a public key: SHA-256(pub)[0..8). */
nb_err nb_key_id(const struct nb_crypto *c, const uint8_t pub[NB_PUBKEY_LEN],
                 uint8_t kid[NB_KEY_ID_LEN]);

/* Verify a manifest (COSE_Sign1 bytes) and parse it: delegation signature
 * by a root in `ks`, delegation not revoked in `rev` (may be NULL), the
 * manifest signature by the delegated key, then every field strictly,
 * the signer key ID, the creation time within the delegation, vendor and
 * class allowed by the delegation. Does NOT check the device's identity,
 * the slot size, the security version or the payload: see
 * nb_manifest_check_device() and nb_pkg_verify_slot(). */
nb_err nb_manifest_verify(const struct nb_crypto *c,
                          const struct nb_keystore *ks,
                          const struct nb_revocations *rev, const uint8_t *m,
                          uint32_t len, struct nb_manifest *out);

/* Parse the structure and every field without checking any signature or
 * policy (signer key, revocation, creation time, vendor, class): for
 * inspection and packaging tools only. Never act on the result. */
nb_err nb_manifest_parse_unverified(const struct nb_crypto *c,
                                    const uint8_t *m, uint32_t len,
                                    struct nb_manifest *out);

/* What a delegation allows, over a parsed manifest: the signer key ID is
 * the delegated key's (NB_ERR_UNKNOWN_KEY), the creation time lies within
 * the delegation's validity (NB_ERR_EXPIRED), vendor (NB_ERR_VENDOR) and
 * class (NB_ERR_CLASS) are allowed. nb_manifest_verify runs it; tools run
 * it after nb_manifest_parse_unverified to say why a package would be
 * refused. */
nb_err nb_manifest_check_delegation(const struct nb_manifest *m);

/* The manifest fits this device: vendor, class, hardware revision, and a
 * package of offset + size within `capacity`. `mbytes` are the manifest
 * bytes `m` was parsed from (the revision strings live there). */
nb_err nb_manifest_check_device(const struct nb_manifest *m,
                                const uint8_t *mbytes,
                                const struct nb_identity *id,
                                uint32_t capacity);

/* Digest of block `i` from the manifest bytes `m` the struct came from. */
const uint8_t *nb_manifest_block_digest(const struct nb_manifest *m,
                                        const uint8_t *mbytes, uint32_t i);

/* Verify a root-signed revocation list and parse it into *out. It must
 * be newer (sequence number) than `current` (may be NULL). */
nb_err nb_revocation_verify(const struct nb_crypto *c,
                            const struct nb_keystore *ks,
                            const struct nb_revocations *current,
                            const uint8_t *list, uint32_t len,
                            struct nb_revocations *out);

/* Container header: magic, version, reserved bytes, manifest length. */
nb_err nb_pkg_parse_header(const uint8_t hdr[NB_PKG_HDR_SIZE],
                           uint32_t *manifest_len);

#endif
