/* nb_swap.h - the swap strategy of the ab-swap layout (see swap.c for the
 * algorithm). Internal to the core: the boot decision calls it. */
#ifndef NB_SWAP_H
#define NB_SWAP_H

#include "nb_boot.h"

/* Number of phases of the current op (two per swap unit of the larger
 * image). */
uint32_t nb_swap_phases(const struct nb_device *d);

/* Mark the start of NB_OP_SWAP or NB_OP_REVERT in d->state; the caller
 * commits it (together with any other change of that decision). */
nb_err nb_swap_start(struct nb_device *d, uint8_t op);

/* Run the op recorded in the state from its recorded position to the end,
 * committing each completed phase, then the final record in which the
 * images have changed places. Safe to call again after a power cut. */
nb_err nb_swap_resume(struct nb_device *d);

#endif
