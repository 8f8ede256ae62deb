/* nb_crc32.h - CRC-32 (IEEE 802.3, reflected, as zlib) for journal records.
 * Bitwise: the journal checks a few hundred bytes per boot, so a 1 KiB
 * table is not worth its flash on a Cortex-M. */
#ifndef NB_CRC32_H
#define NB_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: start with crc = 0. crc32("123456789") = 0xCBF43926. */
uint32_t nb_crc32(uint32_t crc, const void *data, size_t len);

#endif
