/* nb_flash_dev.h - the flash of a Linux-class device (POSIX port): an MTD
 * character device, or a block device or plain file.
 *
 * MTD (/dev/mtdN, NOR or RAM-type parts): geometry from the MEMGETINFO
 * ioctl (erasesize, writesize, size; erase regions from
 * MEMGETREGIONINFO when the part has several sector sizes), erase with
 * MEMERASE, program with pwrite, read with pread. Programming follows the
 * hardware's NOR semantics; the erase value is 0xFF. NAND (page-sized
 * writes, no partial programming, bad blocks) does not fit the core's
 * interface and is refused (NB_ERR_UNSUPPORTED), as is a writesize above
 * NB_FLASH_MAX_WRITE. Errors: EIO -> NB_ERR_IO; an uncorrectable ECC
 * error on read (EBADMSG, or the ECCGETSTATS "failed" counter rising
 * across the read: mtdchar hands the data out and hides the code) ->
 * NB_ERR_IO; corrected bit flips (EUCLEAN, or "corrected" rising) ->
 * success.
 *
 * Block device or plain file (an eMMC partition, a disk image): a
 * configured sector size (the erase unit), write size and erase value.
 * Erase writes the erase value over the sector, program is pwrite, read is
 * pread. Each erase and each program is followed by fdatasync, so it is on
 * the medium before the call returns and before the journal relies on it.
 * That costs one cache flush per call (on eMMC: about a millisecond to
 * tens of milliseconds; an install calls program once per work buffer, the
 * journal once per record). `no_sync` turns it off: for tests only, never
 * on a device (a power cut then loses writes the journal counts as done).
 * A plain file is used at its current length (make it with truncate -s);
 * it is never created or grown.
 *
 * Checks, for both kinds, before anything reaches the device: an access
 * that leaves the device is NB_ERR_RANGE; a program whose address or
 * length is not a multiple of the write size, or an erase not at a sector
 * start, is NB_ERR_INVAL (a bug in the caller; nothing written). Core
 * addresses are 32-bit: only the first 4 GiB (whole sectors) of a larger
 * device are used.
 *
 * Memory: struct nb_flash_dev is caller owned, holds the file descriptor
 * and the geometry, no pointers into itself (`why` points at static
 * text); no allocation anywhere. The struct
 * nb_flash filled in points at it (ctx), so it must stay in place while
 * the flash is in use.
 */
#ifndef NB_FLASH_DEV_H
#define NB_FLASH_DEV_H

#include <stdint.h>

#include "nb_flash.h"

enum nb_flash_dev_type {
    NB_FLASH_DEV_AUTO = 0,  /* MTD when the path is a character device on
                             * which MEMGETINFO succeeds, else block/file */
    NB_FLASH_DEV_MTD = 1,   /* /dev/mtdN */
    NB_FLASH_DEV_BLOCK = 2  /* block device or regular file */
};

struct nb_flash_dev_config {
    const char *path;
    uint8_t type;          /* enum nb_flash_dev_type; 0 = auto */
    /* Block/file only (an MTD's geometry comes from the driver; giving
     * these for an MTD is NB_ERR_INVAL). Zero means the default. */
    uint32_t sector_size;  /* erase unit, a multiple of write_size;
                            * default 4096 */
    uint32_t write_size;   /* 1, 2, 4, 8, 16 or 32; default 8 */
    uint8_t erased_zero;   /* nonzero: the erase value is 0x00; default
                            * 0xFF (a separate flag, since a zeroed field
                            * means the default) */
    uint64_t size;         /* bytes to use from the start (0 = all); a
                            * multiple of the sector size */
    /* Block/file, tests only: nonzero skips fdatasync (see above). */
    uint8_t no_sync;
    /* Block/file: nonzero makes program check that its range reads as
     * erased first, as the simulated flash does (NB_ERR_INVAL, nothing
     * written, when not): costs a read per program. A block device
     * would silently overwrite; tests use this to prove the core never
     * asks for that. */
    uint8_t check_erased;
};

struct nb_flash_dev {
    int fd;                /* valid while is_open */
    uint8_t is_open;
    uint8_t type;          /* NB_FLASH_DEV_MTD or NB_FLASH_DEV_BLOCK */
    uint8_t is_file;       /* BLOCK: a regular file, not a block device */
    uint8_t no_sync;
    uint8_t check_erased;
    uint8_t have_ecc;      /* MTD: ECCGETSTATS works */
    uint32_t mtd_type;     /* MTD: MTD_NORFLASH, MTD_RAM, ... */
    uint32_t size;         /* bytes used */
    uint32_t write_size;
    uint8_t erase_value;
    uint32_t region_count;
    struct nb_flash_region regions[NB_FLASH_MAX_REGIONS];
    uint64_t dev_size;     /* the whole device or file, bytes */
    const char *why;       /* after a failed open: a string literal */
};

/* Open the device and fill `out` (callbacks with ctx = d, and geometry).
 * Returns NB_OK; NB_ERR_NOENT when the path does not exist; NB_ERR_DENIED
 * when it may not be opened read-write; NB_ERR_INVAL for a bad config
 * (geometry fields out of range, MTD with block fields, explicit MTD on a
 * path that is not one, size larger than the device or not whole
 * sectors, a device smaller than one sector); NB_ERR_UNSUPPORTED for an
 * MTD the core cannot drive (NAND, read-only, writesize above 32, more
 * than NB_FLASH_MAX_REGIONS erase regions) or a path that is neither an
 * MTD, a block device nor a regular file; NB_ERR_IO when the OS fails
 * otherwise. On error nothing stays open, and nb_flash_dev_why() says
 * which setting or property was the problem. */
nb_err nb_flash_dev_open(struct nb_flash_dev *d,
                         const struct nb_flash_dev_config *cfg,
                         struct nb_flash *out);

/* Close the device (fd). Safe on a device that is not open, and twice. */
void nb_flash_dev_close(struct nb_flash_dev *d);

/* Why the last nb_flash_dev_open of `d` failed ("write_size is not 1, 2,
 * 4, 8, 16 or 32", "in use (mounted?)", ...); "" after a success. Static
 * text, never NULL. */
const char *nb_flash_dev_why(const struct nb_flash_dev *d);

/* What `d` is, for messages: "mtd", "block", "file", or "closed". */
const char *nb_flash_dev_type_name(const struct nb_flash_dev *d);

#endif
