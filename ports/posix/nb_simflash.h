/* nb_simflash.h - simulated NOR flash with power faults (POSIX port).
 *
 * Backed by memory, or by a file mapped with mmap (so the CLI's commands
 * act on a persistent device). Strict NOR semantics: programming a unit
 * that is not erased, or an unaligned access, is recorded as a violation
 * (a bug in the caller, which tests assert never happens) and fails with
 * NB_ERR_INVAL.
 *
 * Faults, all seeded and reproducible:
 *   - power cut before flash operation N (operations = program and erase
 *     calls, counted from 0 since the last nb_simflash_power_on); with
 *     `torn`, operation N is torn instead: a program leaves the units
 *     before a random one written, that unit with a random subset of its
 *     intended bit changes, the rest untouched; an erase leaves the sector
 *     with arbitrary content. From then until nb_simflash_power_on(),
 *     read, program and erase all fail with NB_ERR_POWER (not counted).
 *   - bad sectors: program fails, erase fails, or reads return flipped
 *     bits, per sector. Bad flags live in memory only (not in the file).
 *   - a bit flip in stored data (bit rot).
 *
 * Order of checks in program and erase: power lost; count the operation;
 * NOR violation (NB_ERR_INVAL, nothing written); armed cut (NB_ERR_POWER);
 * bad sector (NB_ERR_IO, nothing changed). So a violating call still
 * consumes an operation index, and a cut fires before a bad sector
 * reports.
 *
 * Counters: operations, program operations, erases, bytes programmed, and
 * the erase count of every sector (kept in the file for file-backed
 * devices; incremented by every successful or torn erase).
 *
 * File format (file-backed), all integers little-endian u32:
 *     0  magic "NBSIMFL1" (8 bytes)     8  format version (1)
 *    12  header size (4096)            16  write_size
 *    20  erase_value (0xFF or 0x00)    24  region_count (1..8)
 *    28  8 x {sector count, sector size} (unused entries zero)
 *    92  user blob length (<= NB_SIMFLASH_USER_MAX)
 *    96  user blob (the CLI keeps the board description there)
 *  4096  the flash bytes, then one u32 erase count per sector.
 * The file length must be exactly 4096 + size + 4 * sectors.
 */
#ifndef NB_SIMFLASH_H
#define NB_SIMFLASH_H

#include <stddef.h>
#include <stdint.h>

#include "nb_flash.h"

#define NB_SIMFLASH_USER_MAX 1024
#define NB_SIMFLASH_MAX_SECTORS 65536

enum nb_simflash_bad {
    NB_SIMFLASH_GOOD = 0,
    NB_SIMFLASH_BAD_PROG = 1,  /* program reports failure, writes nothing */
    NB_SIMFLASH_BAD_ERASE = 2, /* erase reports failure, content untouched */
    NB_SIMFLASH_BAD_READ = 4   /* reads return the data with a bit flipped */
};

struct nb_simflash_geometry {
    uint32_t write_size;
    uint8_t erase_value;
    uint32_t region_count;
    struct nb_flash_region regions[NB_FLASH_MAX_REGIONS];
};

struct nb_simflash_stats {
    /* All cumulative until nb_simflash_reset_stats (power_on keeps them).
     * Calls made while power is lost are not counted. */
    uint64_t ops;        /* program + erase calls, incl. failed and torn */
    uint64_t prog_ops;   /* program calls */
    uint64_t erase_ops;  /* erase calls */
    uint64_t bytes_written; /* bytes of completed programs (not torn) */
    uint64_t violations; /* strict-NOR violations (bugs) */
};

struct nb_simflash; /* opaque; owns its memory or its mapping */

/* A memory-backed device, every sector erased. NB_ERR_INVAL for a bad
 * geometry (see nb_flash_check; also at most NB_SIMFLASH_MAX_SECTORS
 * sectors and 4 GiB - 1), NB_ERR_NOMEM when allocation fails. */
nb_err nb_simflash_create_mem(struct nb_simflash **out,
                              const struct nb_simflash_geometry *g);

/* Create a file-backed device (the file is created or truncated, every
 * sector erased) with `user` (up to NB_SIMFLASH_USER_MAX bytes) stored in
 * the header. */
nb_err nb_simflash_create_file(struct nb_simflash **out, const char *path,
                               const struct nb_simflash_geometry *g,
                               const void *user, size_t user_len);

/* Open an existing file. NB_ERR_NOENT when missing, NB_ERR_CORRUPT when
 * the header is bad or the file length is wrong, NB_ERR_IO when the OS
 * refuses (permissions, mmap). Faults start disarmed, all sectors good. */
nb_err nb_simflash_open_file(struct nb_simflash **out, const char *path);

/* Flush (file-backed) and free. NULL is fine. */
void nb_simflash_close(struct nb_simflash *s);

/* Fill `f` with this device's callbacks and geometry (ctx = s). read
 * returns NB_ERR_RANGE outside the device; prog and erase return
 * NB_ERR_INVAL for a NOR violation (unaligned, outside the device, a unit
 * not fully erased, erase not at a sector start). */
void nb_simflash_interface(struct nb_simflash *s, struct nb_flash *f);

const struct nb_simflash_geometry *nb_simflash_geometry(
    const struct nb_simflash *s);
/* The user blob stored at creation (length 0 for a memory device); owned
 * by `s`. */
const void *nb_simflash_user(const struct nb_simflash *s, size_t *len);
uint32_t nb_simflash_size(const struct nb_simflash *s);
uint32_t nb_simflash_sector_count(const struct nb_simflash *s);

/* Direct access to the bytes (tests and the sweep's snapshots). */
uint8_t *nb_simflash_data(struct nb_simflash *s);

/* Copy content and wear counters from `src` (same geometry, else
 * NB_ERR_INVAL). Faults and power state of `dst` are reset (bad sectors
 * cleared, cut disarmed, power on); its stats, seed and user blob stay. */
nb_err nb_simflash_copy_from(struct nb_simflash *dst,
                             const struct nb_simflash *src);

/* Seed for torn content (default 0). The same seed and the same calls
 * give the same bytes. */
void nb_simflash_seed(struct nb_simflash *s, uint64_t seed);

/* Arm a power cut before (or, torn, during) operation `op` (0-based,
 * counted from the last power on). One cut at a time; it disarms when it
 * fires. */
void nb_simflash_cut_at(struct nb_simflash *s, uint64_t op, int torn);
void nb_simflash_disarm(struct nb_simflash *s);

/* Nonzero while power is off (after a cut). */
int nb_simflash_power_lost(const struct nb_simflash *s);

/* Power comes back: clears the cut, zeroes the per-power-on operation
 * counter. Wear counters and bad sectors stay. */
void nb_simflash_power_on(struct nb_simflash *s);

/* Set the flags of the sector containing `addr` (enum nb_simflash_bad,
 * OR-ed; replaces the old flags, NB_SIMFLASH_GOOD clears). A bad-read
 * sector flips bit 0 of the first byte of its overlap in every read.
 * NB_ERR_RANGE past the end, NB_ERR_INVAL for unknown flags. */
nb_err nb_simflash_set_bad(struct nb_simflash *s, uint32_t addr,
                           unsigned flags);

/* Flip bit `bit` (0..7) of the stored byte at `addr`; not an operation.
 * NB_ERR_RANGE past the end, NB_ERR_INVAL for bit > 7. */
nb_err nb_simflash_flip_bit(struct nb_simflash *s, uint32_t addr,
                            unsigned bit);

void nb_simflash_stats(const struct nb_simflash *s,
                       struct nb_simflash_stats *out);
/* Zero the counters of stats (not the wear counters). */
void nb_simflash_reset_stats(struct nb_simflash *s);
/* Erase count of a sector (0 for an index past the end). */
uint32_t nb_simflash_erase_count(const struct nb_simflash *s,
                                 uint32_t sector_index);

#endif
