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
#include "nb_crypto_openssl.h"
#include "nb_install.h"
#include "nb_simflash.h"
#include "nb_testpkg.h"

#define SIMDEV_BUF 4096u
#define SIMDEV_CHUNK 1024u /* bytes per nb_install_write: a "network" read */

/* What the flash file's header says about the board. */
struct simdev_board {
    struct nb_layout layout;
};

/* The simulated device trusts the TEST root of nb_testpkg.h (keys from
 * public seeds: a simulator, never a product) and has the test identity.
 * Crypto goes through the OpenSSL port: this is a host program. */
struct simdev {
    struct nb_simflash *sim;
    struct nb_flash flash;
    struct nb_openssl_crypto oc;
    struct nb_crypto crypto;
    struct nb_testkeys keys;
    struct nb_identity identity;
    struct simdev_board board;
    struct nb_boot_config cfg;
    struct nb_device dev;
    uint8_t buf[SIMDEV_BUF];
    uint8_t mbuf[NB_MANIFEST_MAX];
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

/* Wire up callbacks once `sim` (or, with `sim` NULL, `flash`) and `board`
 * are set: crypto port, test keys, identity, config. Pair with
 * simdev_unbind(). */
nb_err simdev_bind(struct simdev *sd);
void simdev_unbind(struct simdev *sd);

/* Open (mount) the device as after a reset. */
nb_err simdev_open(struct simdev *sd);

/* Check that `pkg` is a whole package (.nbpkg) before anything is written:
 * container header, manifest shape, length exactly offset + payload. The
 * signatures are checked by the installer. */
nb_err simdev_check_file(struct simdev *sd, const uint8_t *pkg, uint32_t len);

/* Stage a package (.nbpkg bytes): install, verify, mark PENDING. Sets
 * *downgrade when the security version is below the floor (development). */
nb_err simdev_stage(struct simdev *sd, const uint8_t *pkg, uint32_t len,
                    int *downgrade);

/* Write the factory package (ab-factory provisioning). */
nb_err simdev_factory(struct simdev *sd, const uint8_t *pkg, uint32_t len);

/* Reset and run the bootloader once. */
nb_err simdev_boot(struct simdev *sd, struct nb_boot_result *res);

/* Reset and confirm the running trial image (the application's call). */
nb_err simdev_confirm(struct simdev *sd);

/* Make a test package signed with the test keys: deterministic payload of
 * `payload_size` bytes from `seed` (nb_testpkg_make). */
nb_err simdev_make_package(struct simdev *sd, uint32_t version, uint32_t svn,
                           uint32_t payload_size, uint64_t seed,
                           struct nb_buf *out);

#endif
