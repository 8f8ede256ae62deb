/* simdev.h - a simulated device: simulated flash, layout, crypto port and
 * the core's nb_device, as the CLI and the sweep use it.
 *
 * Every step (boot, stage, confirm) starts by mounting the journal from
 * flash into a fresh nb_device, as a reset or a new process would: no
 * state survives in RAM between steps.
 */
#ifndef SIMDEV_H
#define SIMDEV_H

#include <stddef.h>
#include <stdint.h>

#include "nb_boot.h"
#include "nb_crypto_mbedtls.h"
#include "nb_install.h"
#include "nb_simflash.h"

#define SIMDEV_BUF 4096u
#define SIMDEV_CHUNK 1024u /* bytes per nb_install_write: a "network" read */

/* What the flash file's header says about the board. */
struct simdev_board {
    struct nb_layout layout;
};

struct simdev {
    struct nb_simflash *sim;
    struct nb_flash flash;
    struct nb_mbedtls_crypto mc;
    struct nb_crypto crypto;
    struct simdev_board board;
    struct nb_boot_config cfg;
    struct nb_device dev;
    uint8_t buf[SIMDEV_BUF];
};

/* Named flash shapes: "4k" (4 KiB sectors), "128k", "mixed" (4, 16 and
 * 32 KiB sectors). Fills regions for at least `min_size` bytes. */
int simdev_shape(const char *name, uint32_t min_size,
                 struct nb_simflash_geometry *g);

/* Board blob for the flash file header. */
size_t simdev_board_encode(const struct simdev_board *b, uint8_t *out,
                           size_t cap);
nb_err simdev_board_decode(const uint8_t *in, size_t len,
                           struct simdev_board *b);

/* Wire up callbacks once `sim` and `board` are set. */
void simdev_bind(struct simdev *sd);

/* Open (mount) the device as after a reset. */
nb_err simdev_open(struct simdev *sd);

/* Stage an image (header + payload): install, verify, mark PENDING. Sets
 * *downgrade when the security version is below the floor (development). */
nb_err simdev_stage(struct simdev *sd, const uint8_t *img, uint32_t len,
                    int *downgrade);

/* Write the factory image (ab-factory provisioning). */
nb_err simdev_factory(struct simdev *sd, const uint8_t *img, uint32_t len);

/* Reset and run the bootloader once. */
nb_err simdev_boot(struct simdev *sd, struct nb_boot_result *res);

/* Reset and confirm the running trial image (the application's call). */
nb_err simdev_confirm(struct simdev *sd);

/* Make a test image: deterministic payload of `payload_size` bytes from
 * `seed`, with a valid header. `out` must hold NB_IMAGE_HDR_SIZE +
 * payload_size bytes. */
nb_err simdev_make_image(const struct nb_crypto *crypto, uint32_t version,
                         uint32_t svn, uint32_t payload_size, uint64_t seed,
                         uint8_t *out);

#endif
