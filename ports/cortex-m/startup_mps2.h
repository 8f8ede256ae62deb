/* startup_mps2.h - what the reset handler offers the bootloader. */
#ifndef NB_STARTUP_MPS2_H
#define NB_STARTUP_MPS2_H

#include <stdint.h>

#define NB_STACK_PAINT 0xC5C5C5C5u

/* The bootloader proper; 0 when it found an image to boot. */
int nb_mps2_main(void);

/* Deepest stack use so far (painted bytes overwritten), and the stack's
 * size (mps2.ld). */
uint32_t nb_stack_used(void);
uint32_t nb_stack_size(void);

#endif
