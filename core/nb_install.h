/* nb_install.h - streaming a signed package into a slot.
 *
 * Push style: nb_install_begin() with the manifest (COSE_Sign1 bytes),
 * nb_install_write() with the payload in chunks of any length,
 * nb_install_finish() when their sum equals the payload size.
 *
 * begin verifies the manifest (signatures first) and refuses everything
 * refusable before a byte of the slot is touched: a bad or revoked
 * signature, another vendor, class or hardware revision, a package that
 * does not fit, a security version below the floor in production, a
 * device with an update on trial. Then it records the slot RECEIVING
 * (never bootable) and writes the container header and manifest.
 *
 * Each payload block is held in the device's work buffer (which belongs
 * to the install until finish) and checked against the manifest's block
 * digest before it is written; a bad block is dropped with NB_ERR_DIGEST
 * and the caller sends it again from nb_install_offset(). finish erases
 * the rest of the slot, reads the whole slot back and verifies it like
 * the bootloader does; only then is the slot VERIFIED.
 * nb_install_set_pending() asks the bootloader to try it once.
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
    uint32_t base;     /* flash address of the package's first byte */
    uint32_t end;      /* flash address of the end of the slot */
    uint32_t erased;   /* flash address up to which the slot is erased */
    uint32_t pos;      /* payload bytes checked and written */
    uint32_t fill;     /* bytes of the current block in the work buffer */
    uint32_t floor;    /* flash address below which nothing is programmed
                        * (already holds these bytes, see resume) */
    uint32_t saved;    /* progress last recorded in the journal */
    struct nb_image_info info;
};

/* Verify the manifest, choose the target slot, check the package against
 * the device and the boot state, record it RECEIVING and write the
 * container's header and manifest. `manifest` may be d->cfg.mbuf. */
nb_err nb_install_begin(struct nb_install *in, struct nb_device *d,
                        const uint8_t *manifest, uint32_t manifest_len,
                        uint8_t target);

/* Resume the download recorded in the journal: the slot is RECEIVING
 * and holds the container header and manifest written by begin. The
 * manifest is read back from the slot and verified again (keys may have
 * been revoked meanwhile), then writing continues from the progress the
 * journal recorded, backed up to the start of the sector it lies in
 * (that sector may hold a torn write and is erased again; the bytes of it
 * before the progress point are sent again but not reprogrammed). The
 * caller sends the payload from nb_install_offset(). NB_ERR_NOENT when
 * there is nothing to resume; a failure means: start over with begin. */
nb_err nb_install_resume(struct nb_install *in, struct nb_device *d);

/* Append payload bytes. NB_ERR_RANGE past the payload size; NB_ERR_DIGEST
 * when a block fails its check: it is dropped, with anything after it in
 * this call, and the payload must continue from nb_install_offset(). */
nb_err nb_install_write(struct nb_install *in, const void *data,
                        uint32_t len);

/* Payload offset the next nb_install_write() continues from: the bytes
 * accepted so far, a block still being collected included (after
 * NB_ERR_DIGEST that block was dropped, so this is its start). */
uint32_t nb_install_offset(const struct nb_install *in);

/* Erase the rest of the slot, verify it whole, record VERIFIED (factory:
 * CONFIRMED). A failure leaves the slot RECEIVING: it never boots. */
nb_err nb_install_finish(struct nb_install *in);

/* Mark the VERIFIED slot PENDING: the next boot tries it. */
nb_err nb_install_set_pending(struct nb_device *d);

#endif
