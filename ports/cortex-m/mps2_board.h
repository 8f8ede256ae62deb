/* mps2_board.h - what the Cortex-M bootloader (boot_main.c) and the host
 * tool that prepares its flash (mkflash.c) must agree on: where the
 * "flash" is, its geometry, the layout and the buffer sizes.
 *
 * QEMU's mps2-an385 (Cortex-M3) and mps2-an386 (Cortex-M4) have 4 MiB of
 * writable SSRAM at 0x00000000. The bootloader runs from its first MiB
 * (mps2.ld); the next bytes stand for the device's flash, starting at
 * NB_MPS2_FLASH_BASE: 4 KiB sectors written in 8-byte units (an
 * STM32L4-like part), a two-sector journal, then slots A and B.
 */
#ifndef NB_MPS2_BOARD_H
#define NB_MPS2_BOARD_H

#define NB_MPS2_FLASH_BASE 0x00100000u
#define NB_MPS2_SECTOR_SIZE 4096u
#define NB_MPS2_WRITE_SIZE 8u
#define NB_MPS2_ERASE_VALUE 0xFFu
#define NB_MPS2_SLOT_SIZE 65536u /* per slot; 16 sectors */
/* Journal (2 sectors) + slots A and B. */
#define NB_MPS2_SECTOR_COUNT \
    (2u + 2u * (NB_MPS2_SLOT_SIZE / NB_MPS2_SECTOR_SIZE))
#define NB_MPS2_FLASH_SIZE (NB_MPS2_SECTOR_COUNT * NB_MPS2_SECTOR_SIZE)

/* nb_layout_plan(..., NB_LAYOUT_AB, NB_MPS2_SLOT_SIZE, 0): journal at 0,
 * A after it, B after A. Both sides plan it with the same call. */
#define NB_MPS2_LAYOUT NB_LAYOUT_AB

/* Work buffer (journal records, slot reads) and manifest buffer: the
 * largest manifest this device accepts. */
#define NB_MPS2_BUF_SIZE 512u
#define NB_MPS2_MBUF_SIZE 2048u

#endif
