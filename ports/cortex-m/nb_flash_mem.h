/* nb_flash_mem.h - a flash port over plain memory, with NOR semantics
 * enforced in software.
 *
 * Stands for a real flash driver where the "flash" is RAM: the Cortex-M
 * bootloader on QEMU's mps2 boards (whose 4 MiB at 0x00000000 is writable)
 * and the host tool that prepares the same bytes (ports/cortex-m/mkflash.c).
 * It keeps the rules of nb_flash.h as a flash controller would:
 *   - erase: a whole sector, which then reads as `erase_value`;
 *   - program: aligned units of `write_size` bytes, each of which must
 *     read as erased first (as on STM32L4/G4-class controllers, which
 *     refuse to program a double word twice); a unit that does not is not
 *     written and the call fails with NB_ERR_IO, units before it stay
 *     programmed;
 *   - anything outside the region, or misaligned: NB_ERR_RANGE /
 *     NB_ERR_INVAL, nothing touched.
 * Uniform sectors only. The memory is the caller's; nothing is allocated.
 */
#ifndef NB_FLASH_MEM_H
#define NB_FLASH_MEM_H

#include <stdint.h>

#include "nb_flash.h"

struct nb_flash_mem {
    uint8_t *base;        /* first byte of the memory standing for flash */
    uint32_t size;        /* sector_size * sector_count */
    uint32_t sector_size;
    uint32_t write_size;
    uint8_t erase_value;
};

/* Fill `f` with a flash of `sector_count` sectors of `sector_size` bytes
 * at `base`, programmed in units of `write_size`, erased to
 * `erase_value`; `m` holds the state and must outlive `f`. The memory is
 * taken as it is (not erased): it holds what the "flash" holds. Returns
 * nb_flash_check()'s verdict: NB_OK or NB_ERR_INVAL. */
nb_err nb_flash_mem_init(struct nb_flash *f, struct nb_flash_mem *m,
                         void *base, uint32_t sector_size,
                         uint32_t sector_count, uint32_t write_size,
                         uint8_t erase_value);

#endif
