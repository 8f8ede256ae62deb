/* nb_boot.h - the device: boot decision, confirmation, lifecycle.
 *
 * A struct nb_device is the bootloader's (and the agent's) whole view of
 * the boot state: the port's flash and crypto, the layout, a work buffer
 * and the state loaded from the journal. Every change to the state goes
 * through the journal before it has any effect.
 */
#ifndef NB_BOOT_H
#define NB_BOOT_H

#include <stdint.h>

#include "nb_crypto.h"
#include "nb_flash.h"
#include "nb_image.h"
#include "nb_journal.h"
#include "nb_layout.h"
#include "nb_manifest.h"
#include "nb_package.h"
#include "nb_state.h"

struct nb_boot_config {
    const struct nb_flash *flash;
    const struct nb_crypto *crypto;     /* hash and ECDSA verify */
    const struct nb_keystore *keystore; /* root public keys */
    const struct nb_identity *identity; /* vendor, class, hw revision */
    struct nb_layout layout;
    /* Work buffer, caller owned: a multiple of the write size, at least
     * NB_JOURNAL_MAX_RECORD bytes, and at least a package's block size to
     * install it (each block is checked before it is written). Larger
     * means fewer flash operations when copying. */
    uint8_t *buf;
    uint32_t buf_size;
    /* Manifest buffer, caller owned: the largest manifest accepted. */
    uint8_t *mbuf;
    uint32_t mbuf_size;
};

struct nb_device {
    struct nb_boot_config cfg;
    struct nb_journal journal;
    struct nb_state state;       /* the newest journal record */
    struct nb_manifest manifest; /* of the last package verified */
};

enum nb_boot_outcome {
    NB_BOOT_IMAGE = 1,   /* jump to res->addr */
    NB_BOOT_RECOVERY = 2 /* nothing bootable: stay in recovery, re-fetch */
};

struct nb_boot_result {
    uint8_t outcome;   /* enum nb_boot_outcome */
    uint8_t slot;      /* slot booted */
    uint8_t state;     /* its state: TRIAL or CONFIRMED */
    uint8_t attempts;  /* trial boots so far, this one included */
    uint8_t downgrade; /* security version below the floor (development) */
    uint32_t addr;     /* flash address of the image header */
    struct nb_image_info image;
};

/* Check the config, mount the journal and load the state. NB_ERR_NOENT
 * when the journal holds no valid record (not provisioned or destroyed),
 * NB_ERR_INVAL for a bad config or a journal written for another layout. */
nb_err nb_device_open(struct nb_device *d, const struct nb_boot_config *cfg);

/* Provision a blank device: erase the journal and write the first record
 * (every slot EMPTY). Slot contents are left alone. */
nb_err nb_device_provision(struct nb_device *d,
                           const struct nb_boot_config *cfg,
                           uint8_t lifecycle, uint8_t attempt_limit);

/* Run the boot decision once: resume an interrupted swap, start or count a
 * trial, reject what fails, fall back to the confirmed, previous or
 * factory image, else recovery. Every image is verified before it is
 * chosen. Returns NB_OK with *res filled, or a flash error (the caller
 * resets and tries again). */
nb_err nb_boot(struct nb_device *d, struct nb_boot_result *res);

/* Confirm the image on trial: CONFIRMED, becomes the active slot, and the
 * security floor rises to its security version. NB_OK when nothing is on
 * trial and the active image is already confirmed. */
nb_err nb_confirm(struct nb_device *d);

/* Move the lifecycle; only DEVELOPMENT -> PRODUCTION is allowed. */
nb_err nb_device_set_lifecycle(struct nb_device *d, uint8_t lifecycle);

/* Flash address where slot `i`'s image starts (after a shift, if any). */
uint32_t nb_device_image_addr(const struct nb_device *d, unsigned i);

/* Verify slot `i`'s package (nb_pkg_verify_slot, with the device's
 * revocations) and compare it with the journal's record of the slot
 * (size, version, security version). */
nb_err nb_device_verify_slot(struct nb_device *d, unsigned i,
                             struct nb_image_info *info);

/* Persist d->state as a new journal record (one state change). */
nb_err nb_device_commit(struct nb_device *d);

/* Accept a root-signed revocation list (nb_revocation_verify): newer than
 * the one held, it replaces it in the journal. From then on packages
 * signed by a listed key are refused by installer and bootloader. */
nb_err nb_device_apply_revocations(struct nb_device *d, const uint8_t *list,
                                   uint32_t len);

#endif
