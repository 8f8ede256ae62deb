/* pkgverify.h - how nobrick-server checks an uploaded package file before
 * it keeps it: the same steps as `nobrick verify` (cmd/nobrick/inspect.c)
 * and a device's installer, over a file descriptor, reading the file
 * once from start to end (a package may be far larger than memory):
 *
 *   1. container header (nb_pkg_parse_header);
 *   2.-7. the manifest and its delegation: COSE structure, the
 *      delegation's signature by one of the configured root keys, its key
 *      ID not in the revocation list, the manifest's signature by the
 *      delegated key, every manifest field, creation time within the
 *      delegation, vendor and class allowed (nb_manifest_verify);
 *   the container layout: file length exactly payload offset + payload
 *      size, zero padding between manifest and payload;
 *   10. the payload: every block against its digest, then the whole
 *      SHA-256;
 *   and one rule of the server's own: the hardware revisions are
 *      printable ASCII (the server keeps them as JSON text and matches
 *      them against devices' hw_rev).
 *
 * It does NOT check a device's identity (vendor, class, hardware revision
 * of any one device) nor the security version against anything: the
 * management API applies its channel rule (no rollback in production)
 * itself.
 *
 * The trust anchors are the PEM files of the config's root_pub keys, and
 * the revocation list the config's `revocations` artifact (a root-signed
 * list, docs/package-format.md); both are read by srv_trust_load, once
 * per upload, so a changed file takes effect at the next upload.
 */
#ifndef NB_SRV_PKGVERIFY_H
#define NB_SRV_PKGVERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "nb_manifest.h"

/* What the server trusts: root public keys and the revocation list. A
 * plain value (no pointers): copy it freely. */
struct srv_trust {
    unsigned n_roots;
    uint8_t kid[SRV_MAX_ROOTS][NB_KEY_ID_LEN];
    uint8_t pub[SRV_MAX_ROOTS][NB_PUBKEY_LEN];
    int has_rev;                  /* a revocation list is configured */
    struct nb_revocations rev;
};

/* Read cfg->root_pub (PEM SubjectPublicKeyInfo files, "BEGIN PUBLIC KEY",
 * P-256 only) and, when cfg->revocations is set, that file in the
 * artifact directory `artifacts_fd`, verified with those roots
 * (nb_revocation_verify). Errors, with one line in msg naming the file:
 *   NB_ERR_NOENT  no root_pub configured, or a file that cannot be read
 *   NB_ERR_MALFORMED / NB_ERR_UNSUPPORTED  not a P-256 public key PEM
 *   any nb_revocation_verify error for the revocation list. */
nb_err srv_trust_load(const struct srv_config *cfg, int artifacts_fd,
                      struct srv_trust *t, char *msg, size_t msglen);

/* A verified package: what the server stores about it. */
struct srv_pkginfo {
    uint64_t size;                       /* of the whole file */
    uint8_t file_sha256[32];
    char file_sha256_hex[65];
    struct nb_manifest m;                /* parsed from manifest[] */
    uint8_t manifest[NB_MANIFEST_MAX];   /* the COSE_Sign1 bytes */
    uint32_t mlen;
    char version[16];                    /* "M.m.p" */
    char vendor[37], class_id[37];       /* UUID text */
    unsigned n_hw;
    char hw[NB_MAX_HW_REVS][NB_HW_REV_MAX + 1];
    char signer_kid[2 * NB_KEY_ID_LEN + 1];
    char root_kid[2 * NB_KEY_ID_LEN + 1];
};

/* Verify the package file open at `fd` (read with pread; the offset is
 * not used) against `t`. NB_OK and *out filled, or the nb_err of the
 * first check that failed with one line in msg saying why (without the
 * error name; the caller prefixes it). NB_ERR_IO when the file cannot be
 * read, NB_ERR_NOMEM when a buffer cannot be had: no verdict. */
nb_err srv_pkg_verify(int fd, const struct srv_trust *t,
                      struct srv_pkginfo *out, char *msg, size_t msglen);

/* 1 for errors that say the package is not trustworthy (signature, key,
 * revocation, delegation limits, digest): the API answers 422
 * "signature"; 0 for errors of form (malformed, truncated, trailing, an
 * unknown field or unsupported value): 400. NB_ERR_IO and NB_ERR_NOMEM
 * are neither (500). */
int srv_pkg_err_is_trust(nb_err err);

/* Streaming hashes of a file for the extra files of a package (hawkBit
 * DDI clients want all three): lowercase hex, NUL-terminated. */
struct srv_file_hashes {
    uint64_t size;
    char sha256[65];
    char sha1[41];
    char md5[33];
};
nb_err srv_file_hashes(int fd, struct srv_file_hashes *out);

#endif /* NB_SRV_PKGVERIFY_H */
