/* nb_image.h - what the core remembers about an image, and the packed
 * semantic version.
 *
 * The image itself is a signed package (nb_package.h, format in
 * docs/package-format.md); this is the summary the journal keeps of it and
 * the boot decision reports.
 */
#ifndef NB_IMAGE_H
#define NB_IMAGE_H

#include <stdint.h>

#include "nb_crypto.h"

struct nb_image_info {
    uint32_t size;    /* bytes of the package in the slot: payload offset +
                       * payload size */
    uint32_t version; /* packed semantic version */
    uint32_t svn;     /* security version */
    uint8_t digest[NB_SHA256_LEN]; /* payload SHA-256 */
};

/* Pack and unpack a semantic version (major and minor up to 255, patch up
 * to 65535). nb_version_pack returns 0 and leaves *out alone when out of
 * range. */
int nb_version_pack(uint32_t major, uint32_t minor, uint32_t patch,
                    uint32_t *out);
uint32_t nb_version_major(uint32_t v);
uint32_t nb_version_minor(uint32_t v);
uint32_t nb_version_patch(uint32_t v);

#endif
