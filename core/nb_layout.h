/* nb_layout.h - where the journal and the slots live on the flash.
 *
 * Slot 0 is A (the execution slot of the swap layout), slot 1 is B (the
 * staging slot of the swap layout, one swap unit larger than A), slot 2 is
 * the factory image (ab-factory only, never written by an update). The
 * single layout has slot 0 only.
 */
#ifndef NB_LAYOUT_H
#define NB_LAYOUT_H

#include <stdint.h>

#include "nb_flash.h"
#include "nb_state.h"

struct nb_area {
    uint32_t off;
    uint32_t size;
};

struct nb_layout {
    uint8_t kind; /* enum nb_layout_kind */
    struct nb_area journal;
    struct nb_area slot[NB_MAX_SLOTS];
    uint32_t swap_unit; /* ab-swap: the largest sector in slots A and B */
};

/* Number of slots a layout kind uses (1, 2 or 3). */
unsigned nb_layout_slot_count(uint8_t kind);

/* Check a layout against a flash: areas inside the device, sector aligned,
 * not overlapping, journal of two or more sectors, swap geometry
 * consistent. Fills in swap_unit. NB_OK or NB_ERR_INVAL. */
nb_err nb_layout_check(struct nb_layout *l, const struct nb_flash *f);

/* Plan a layout of `kind` on `f`: journal first (two sectors, or more so
 * that it spans at least `journal_min` bytes), then slots of at least
 * `slot_size` bytes each, rounded up to whole sectors (B one swap unit
 * larger for ab-swap). NB_ERR_NOSPC when the flash is too small. */
nb_err nb_layout_plan(struct nb_layout *l, const struct nb_flash *f,
                      uint8_t kind, uint32_t slot_size, uint32_t journal_min);

/* Usable image capacity of slot `i` (B of ab-swap loses its spare unit). */
uint32_t nb_layout_capacity(const struct nb_layout *l, unsigned i);

#endif
