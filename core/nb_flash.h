/* nb_flash.h - the flash interface a port fills in.
 *
 * NOR semantics: erase sets every byte of a sector to `erase_value`;
 * programming can only move bits away from the erased value, in units of
 * `write_size` bytes, aligned; programming a unit twice without an erase in
 * between is a bug. A port reports every failure as an error code: the core
 * treats a flash result as input, never asserts on it.
 *
 * Geometry is a list of regions, each `count` sectors of `size` bytes, from
 * address 0 upwards (one region for uniform sectors, several for mixed
 * sector sizes as on STM32F4-class parts).
 */
#ifndef NB_FLASH_H
#define NB_FLASH_H

#include <stddef.h>
#include <stdint.h>

#include "nb_err.h"

#define NB_FLASH_MAX_REGIONS 8
#define NB_FLASH_MAX_WRITE 32

struct nb_flash_region {
    uint32_t count; /* number of sectors */
    uint32_t size;  /* bytes per sector */
};

struct nb_flash {
    void *ctx;
    /* Read `len` bytes at `addr`. */
    nb_err (*read)(void *ctx, uint32_t addr, void *buf, uint32_t len);
    /* Program `len` bytes at `addr`; both multiples of write_size. */
    nb_err (*prog)(void *ctx, uint32_t addr, const void *buf, uint32_t len);
    /* Erase the sector that starts at `addr`. */
    nb_err (*erase)(void *ctx, uint32_t addr);

    uint32_t write_size;  /* 1, 2, 4, 8, 16 or 32 */
    uint8_t erase_value;  /* 0xFF or 0x00 */
    uint32_t region_count;
    struct nb_flash_region regions[NB_FLASH_MAX_REGIONS];
};

/* Check the struct once: callbacks present, write size a power of two up
 * to 32, erase value 0xFF or 0x00, regions non-empty and sector sizes
 * multiples of write_size. Returns NB_OK or NB_ERR_INVAL. */
nb_err nb_flash_check(const struct nb_flash *f);

/* Total size in bytes. */
uint32_t nb_flash_size(const struct nb_flash *f);

/* Start and size of the sector containing `addr`. NB_ERR_RANGE when past
 * the end. */
nb_err nb_flash_sector(const struct nb_flash *f, uint32_t addr,
                       uint32_t *start, uint32_t *size);

/* Largest sector size in [off, off+len); 0 when the range is empty or
 * leaves the device. */
uint32_t nb_flash_max_sector(const struct nb_flash *f, uint32_t off,
                             uint32_t len);

/* Number of sectors that [off, off+len) touches; 0 past the end. */
uint32_t nb_flash_sector_count(const struct nb_flash *f, uint32_t off,
                               uint32_t len);

/* True when [off, off+len) starts and ends on sector boundaries. */
int nb_flash_aligned(const struct nb_flash *f, uint32_t off, uint32_t len);

/* Erase every sector of [off, off+len), which must be sector aligned. */
nb_err nb_flash_erase_range(const struct nb_flash *f, uint32_t off,
                            uint32_t len);

/* Copy `len` bytes from `src` to `dst` (destination already erased) using
 * `buf` of `buf_size` bytes (a multiple of write_size). `len` is rounded
 * up to write_size; the bytes read past `len` come from the source, so the
 * source must be readable there. */
nb_err nb_flash_copy(const struct nb_flash *f, uint32_t dst, uint32_t src,
                     uint32_t len, uint8_t *buf, uint32_t buf_size);

/* *filled = 1 when every byte of [off, off+len) reads as `value`; `buf`
 * (buf_size bytes, at least 1) is scratch. */
nb_err nb_flash_is_filled(const struct nb_flash *f, uint32_t off,
                          uint32_t len, uint8_t value, uint8_t *buf,
                          uint32_t buf_size, int *filled);

/* *erased = 1 when [off, off+len) reads as erased. */
nb_err nb_flash_is_erased(const struct nb_flash *f, uint32_t off,
                          uint32_t len, uint8_t *buf, uint32_t buf_size,
                          int *erased);

#endif
