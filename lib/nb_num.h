/* nb_num.h - strict parsing of numbers given on command lines and in
 * config files (host programs): decimal, or hex with 0x; no blanks, sign
 * or trailing junk, which strtoull alone would accept. */
#ifndef NB_NUM_H
#define NB_NUM_H

#include <stddef.h>
#include <stdint.h>

enum nb_num_status {
    NB_NUM_OK = 0,
    NB_NUM_EMPTY,     /* "" */
    NB_NUM_NEGATIVE,  /* starts with '-' */
    NB_NUM_NOT_A_NUMBER, /* "0x" alone, or strtoull refused it */
    NB_NUM_BAD_DIGIT, /* a character that is not a digit of its base */
    NB_NUM_TOO_LARGE, /* above max (or above 2^64-1) */
    NB_NUM_TOO_SMALL  /* below min */
};

/* Parse `s` into *out within [min, max]. */
enum nb_num_status nb_parse_u64(const char *s, uint64_t min, uint64_t max,
                                uint64_t *out);

/* The one-line message for a status, "OPT: 'S' is ...", into buf. */
void nb_num_message(enum nb_num_status st, const char *opt, const char *s,
                    uint64_t min, uint64_t max, char *buf, size_t size);

#endif
