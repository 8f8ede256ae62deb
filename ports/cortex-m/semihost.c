/* semihost.c - Arm semihosting for Cortex-M; see semihost.h. */
#include "semihost.h"

#define SYS_WRITE0 0x04
#define SYS_EXIT 0x18
#define ADP_STOPPED_APPLICATION_EXIT 0x20026
#define ADP_STOPPED_RUNTIME_ERROR 0x20023

/* On M-profile the call is BKPT 0xAB: operation in r0, argument in r1
 * (for SYS_EXIT on AArch32, the reason code itself). */
static int semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void sh_write0(const char *s)
{
    semihost(SYS_WRITE0, s);
}

void sh_exit(int ok)
{
    semihost(SYS_EXIT, (const void *)(uintptr_t)(
                           ok ? ADP_STOPPED_APPLICATION_EXIT
                              : ADP_STOPPED_RUNTIME_ERROR));
    for (;;)
        ; /* no debugger took the exit: stop here */
}

static void put(struct sh_line *l, char c)
{
    if (l->len < sizeof(l->buf) - 2) /* room for '\n' and NUL */
        l->buf[l->len++] = c;
}

void sh_line_str(struct sh_line *l, const char *s)
{
    while (*s)
        put(l, *s++);
}

void sh_line_dec(struct sh_line *l, uint32_t v)
{
    char d[10];
    int n = 0;
    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        put(l, d[--n]);
}

void sh_line_hex(struct sh_line *l, const uint8_t *p, uint32_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (uint32_t i = 0; i < n; i++) {
        put(l, hex[p[i] >> 4]);
        put(l, hex[p[i] & 15]);
    }
}

void sh_line_end(struct sh_line *l)
{
    l->buf[l->len++] = '\n';
    l->buf[l->len] = '\0';
    sh_write0(l->buf);
    l->len = 0;
}
