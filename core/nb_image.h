/* nb_image.h - the image check.
 *
 * For now an image is a 64-byte header followed by the payload. The header
 * carries sizes, version, security version and a SHA-256 over the header's
 * first 32 bytes and the payload, so a flipped bit anywhere, header fields
 * included, fails the check. Signed manifests will replace this header;
 * everything that decides whether a slot may boot goes through
 * nb_image_verify() so that change stays in one place.
 *
 * Header (little-endian):
 *   0  u32 magic 0x4D49424E ("NBIM")
 *   4  u16 header size (64)
 *   6  u16 header format version (1)
 *   8  u32 payload size
 *  12  u32 version (major << 24 | minor << 16 | patch)
 *  16  u32 security version
 *  20  u8[12] reserved, zero
 *  32  u8[32] SHA-256 over bytes 0..31 and the payload
 */
#ifndef NB_IMAGE_H
#define NB_IMAGE_H

#include <stdint.h>

#include "nb_crypto.h"
#include "nb_flash.h"

#define NB_IMAGE_MAGIC 0x4D49424Eu
#define NB_IMAGE_HDR_SIZE 64u
#define NB_IMAGE_HDR_VERSION 1u

struct nb_image_info {
    uint32_t size;    /* total bytes: header + payload */
    uint32_t version; /* packed semantic version */
    uint32_t svn;     /* security version */
    uint8_t digest[NB_SHA256_LEN];
};

/* Pack and unpack a semantic version (major and minor up to 255, patch up
 * to 65535). nb_version_pack returns 0 and leaves *out alone when out of
 * range. */
int nb_version_pack(uint32_t major, uint32_t minor, uint32_t patch,
                    uint32_t *out);
uint32_t nb_version_major(uint32_t v);
uint32_t nb_version_minor(uint32_t v);
uint32_t nb_version_patch(uint32_t v);

/* Parse a header from `hdr` (NB_IMAGE_HDR_SIZE bytes): magic, sizes and
 * reserved bytes. Does NOT check the digest. NB_ERR_CORRUPT when malformed,
 * NB_ERR_NOSPC when the image would not fit in `max_size` bytes. */
nb_err nb_image_parse_header(const uint8_t hdr[NB_IMAGE_HDR_SIZE],
                             uint32_t max_size, struct nb_image_info *info);

/* Build a header for a payload (host tools and tests). The digest is
 * computed with `crypto`. */
nb_err nb_image_make_header(const struct nb_crypto *crypto,
                            const uint8_t *payload, uint32_t payload_size,
                            uint32_t version, uint32_t svn,
                            uint8_t hdr[NB_IMAGE_HDR_SIZE]);

/* Verify the image stored at [off, off+area) of `flash`: header well
 * formed, image fits the area, digest matches. On success fills *info.
 * `buf` (buf_size bytes, at least NB_IMAGE_HDR_SIZE) is scratch. */
nb_err nb_image_verify(const struct nb_flash *flash,
                       const struct nb_crypto *crypto, uint32_t off,
                       uint32_t area, uint8_t *buf, uint32_t buf_size,
                       struct nb_image_info *info);

#endif
