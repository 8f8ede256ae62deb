/* semihost.h - Arm semihosting: the debugger (here QEMU with
 * -semihosting-config enable=on) prints for the target and ends the run.
 *
 * Only for running under a debugger or QEMU: on a board with no debugger
 * attached the BKPT instruction behind these calls faults. A product's
 * bootloader has no console at all, or a UART.
 */
#ifndef NB_SEMIHOST_H
#define NB_SEMIHOST_H

#include <stdint.h>

/* Print a NUL-terminated string (SYS_WRITE0). */
void sh_write0(const char *s);

/* End the run (SYS_EXIT): QEMU exits with status 0 when `ok`, else 1. */
void sh_exit(int ok) __attribute__((noreturn));

/* A line assembled piece by piece, printed by sh_line_end(). Text past
 * the buffer is dropped. */
struct sh_line {
    char buf[120];
    uint32_t len;
};
void sh_line_str(struct sh_line *l, const char *s);
void sh_line_dec(struct sh_line *l, uint32_t v);
void sh_line_hex(struct sh_line *l, const uint8_t *p, uint32_t n);
void sh_line_end(struct sh_line *l); /* prints it with '\n', empties it */

#endif
