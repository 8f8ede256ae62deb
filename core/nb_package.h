/* nb_package.h - verifying the package stored in a slot.
 *
 * The one function that says whether the bytes in a slot may boot: it
 * checks the container header, the manifest (signatures first, see
 * nb_manifest.h), that the package fits this device, that the padding is
 * zero, the payload's SHA-256, and that the rest of the slot is erased.
 */
#ifndef NB_PACKAGE_H
#define NB_PACKAGE_H

#include <stdint.h>

#include "nb_flash.h"
#include "nb_image.h"
#include "nb_manifest.h"

/* What verifying a slot needs. All memory is the caller's. */
struct nb_pkg_env {
    const struct nb_flash *flash;
    const struct nb_crypto *crypto;
    const struct nb_keystore *keystore;
    const struct nb_identity *identity;
    const struct nb_revocations *rev; /* may be NULL */
    uint8_t *buf;  /* scratch for reading the slot */
    uint32_t buf_size;
    uint8_t *mbuf; /* holds the manifest while it is checked */
    uint32_t mbuf_size;
};

/* Verify the package at [off, off+area). On success fills *m (parsed from
 * env->mbuf, which then holds the manifest bytes) and *info. Errors:
 * the flash's, any of nb_manifest_verify's and nb_manifest_check_device's,
 * NB_ERR_NOSPC (manifest larger than mbuf), NB_ERR_TRUNCATED (manifest
 * past the slot), NB_ERR_MALFORMED (padding not zero), NB_ERR_DIGEST
 * (payload), NB_ERR_TRAILING (bytes after the payload). Does NOT check the
 * security version against the floor: the caller's policy does. */
nb_err nb_pkg_verify_slot(const struct nb_pkg_env *env, uint32_t off,
                          uint32_t area, struct nb_manifest *m,
                          struct nb_image_info *info);

#endif
