/* nb_install.h - streaming an image into a slot.
 *
 * Push style: nb_install_begin() with the image header, nb_install_write()
 * with the image bytes from offset 0 (header included) in chunks of any
 * length, nb_install_finish() when their sum equals the image size. The
 * device's work buffer belongs to the install until finish. The
 * slot is RECEIVING (never bootable) from begin until finish has read the
 * whole slot back and checked its digest; then it is VERIFIED.
 * nb_install_set_pending() asks the bootloader to try it once.
 *
 * Everything refusable is refused in begin, before a byte of the slot is
 * touched: an image that does not fit, a security version below the
 * floor in production, a device with an update on trial.
 */
#ifndef NB_INSTALL_H
#define NB_INSTALL_H

#include <stdint.h>

#include "nb_boot.h"

enum nb_install_target {
    NB_TARGET_UPDATE = 0, /* the inactive slot of the layout */
    NB_TARGET_FACTORY = 1 /* provisioning of the factory slot only */
};

struct nb_install {
    struct nb_device *dev;
    uint8_t slot;      /* target slot */
    uint8_t target;    /* enum nb_install_target */
    uint8_t downgrade; /* lower security version (development) */
    uint32_t base;     /* flash address of the image's first byte */
    uint32_t pos;      /* image bytes accepted so far */
    uint32_t erased;   /* flash address up to which the slot is erased */
    uint32_t fill;     /* bytes held in the device's work buffer */
    struct nb_image_info info;
};

/* Choose the target slot, check the header against it and the boot state,
 * and record it RECEIVING. */
nb_err nb_install_begin(struct nb_install *in, struct nb_device *d,
                        const uint8_t hdr[NB_IMAGE_HDR_SIZE], uint8_t target);

/* Append image bytes. NB_ERR_RANGE when they would pass the image size. */
nb_err nb_install_write(struct nb_install *in, const void *data,
                        uint32_t len);

/* Flush, read the slot back, verify, record VERIFIED (factory: CONFIRMED).
 * NB_ERR_CORRUPT leaves the slot RECEIVING: it never boots. */
nb_err nb_install_finish(struct nb_install *in);

/* Mark the VERIFIED slot PENDING: the next boot tries it. */
nb_err nb_install_set_pending(struct nb_device *d);

#endif
