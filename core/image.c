/* image.c - the packed semantic version. */
#include "nb_image.h"

int nb_version_pack(uint32_t major, uint32_t minor, uint32_t patch,
                    uint32_t *out)
{
    if (major > 255 || minor > 255 || patch > 65535)
        return 0;
    *out = major << 24 | minor << 16 | patch;
    return 1;
}

uint32_t nb_version_major(uint32_t v) { return v >> 24; }
uint32_t nb_version_minor(uint32_t v) { return (v >> 16) & 0xFF; }
uint32_t nb_version_patch(uint32_t v) { return v & 0xFFFF; }
