/* nb_num.c - see nb_num.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "nb_num.h"

enum nb_num_status nb_parse_u64(const char *s, uint64_t min, uint64_t max,
                                uint64_t *out)
{
    const char *p = s;
    int base = 10;
    if (!s || !*s)
        return NB_NUM_EMPTY;
    if (s[0] == '-')
        return NB_NUM_NEGATIVE;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    }
    /* strtoull alone would accept blanks, a sign and trailing junk. */
    if (!*p)
        return NB_NUM_NOT_A_NUMBER;
    for (const char *c = p; *c; c++) {
        int ok = (*c >= '0' && *c <= '9') ||
                 (base == 16 && ((*c >= 'a' && *c <= 'f') ||
                                 (*c >= 'A' && *c <= 'F')));
        if (!ok)
            return NB_NUM_BAD_DIGIT;
    }
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(p, &end, base);
    if (errno == ERANGE || (uint64_t)v > max)
        return NB_NUM_TOO_LARGE;
    if (errno || !end || *end)
        return NB_NUM_NOT_A_NUMBER;
    if ((uint64_t)v < min)
        return NB_NUM_TOO_SMALL;
    *out = (uint64_t)v;
    return NB_NUM_OK;
}

void nb_num_message(enum nb_num_status st, const char *opt, const char *s,
                    uint64_t min, uint64_t max, char *buf, size_t size)
{
    switch (st) {
    case NB_NUM_OK:
        snprintf(buf, size, "%s: '%s' is fine", opt, s);
        return;
    case NB_NUM_EMPTY:
        snprintf(buf, size, "%s: empty value", opt);
        return;
    case NB_NUM_NEGATIVE:
        snprintf(buf, size, "%s: '%s' is negative", opt, s);
        return;
    case NB_NUM_NOT_A_NUMBER:
        snprintf(buf, size, "%s: '%s' is not a number", opt, s);
        return;
    case NB_NUM_BAD_DIGIT:
        snprintf(buf, size,
                 "%s: '%s' is not a number (decimal, or hex with 0x)", opt,
                 s);
        return;
    case NB_NUM_TOO_LARGE:
        snprintf(buf, size, "%s: '%s' is too large (at most %" PRIu64 ")",
                 opt, s, max);
        return;
    case NB_NUM_TOO_SMALL:
        snprintf(buf, size, "%s: '%s' is too small (at least %" PRIu64 ")",
                 opt, s, min);
        return;
    }
    snprintf(buf, size, "%s: '%s' is not a number", opt, s);
}
