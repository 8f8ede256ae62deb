/* nb_cbor.h - a bounded CBOR (RFC 8949) reader, and the one encoder
 * primitive the core and the host tools share.
 *
 * Pull style over a caller's buffer: no allocation, no recursion beyond
 * NB_CBOR_MAX_DEPTH, nothing read past `end`. It accepts the subset
 * manifests use and refuses the rest with a precise code:
 *   - indefinite lengths (NB_ERR_MALFORMED): our encoder never emits them;
 *   - non-shortest heads (NB_ERR_MALFORMED): one value, one encoding, so
 *     a signed manifest has exactly one meaning;
 *   - floats and simple values other than false/true/null
 *     (NB_ERR_MALFORMED); reserved additional info 28..30 likewise;
 *   - a head or string running past the end (NB_ERR_TRUNCATED), and an
 *     array, map or tag whose items cannot fit in the bytes left (every
 *     item takes at least one byte), so a huge count fails at once.
 *
 * On any error the cursor is left where it was and no output is written;
 * callers treat every error as fatal anyway.
 *
 * Not checked: that text strings are valid UTF-8, what a tag number means
 * or whether its content suits it, map key order or duplicate keys (the
 * manifest parser checks the keys it reads).
 */
#ifndef NB_CBOR_H
#define NB_CBOR_H

#include <stddef.h>
#include <stdint.h>

#include "nb_err.h"

/* Containers (arrays, maps, tags; empty ones too) nb_cbor_skip will open
 * one inside the other; one more is NB_ERR_MALFORMED. */
#define NB_CBOR_MAX_DEPTH 8

enum nb_cbor_major {
    NB_CBOR_UINT = 0,
    NB_CBOR_NINT = 1,  /* value -1 - val */
    NB_CBOR_BSTR = 2,
    NB_CBOR_TSTR = 3,
    NB_CBOR_ARRAY = 4,
    NB_CBOR_MAP = 5,
    NB_CBOR_TAG = 6,
    NB_CBOR_SIMPLE = 7 /* false (20), true (21), null (22) only */
};

struct nb_cbor {
    const uint8_t *p;   /* next byte */
    const uint8_t *end; /* one past the last byte */
};

struct nb_cbor_item {
    uint8_t major;       /* enum nb_cbor_major */
    uint64_t val;        /* uint/nint value, string length, item count,
                          * tag number or simple value */
    const uint8_t *data; /* BSTR/TSTR: the string bytes (inside the buffer);
                          * NULL for the other types */
};

/* Start reading `len` bytes at `buf` (the caller's; not copied, and it
 * must outlive the cursor). `buf` NULL means empty. */
void nb_cbor_init(struct nb_cbor *c, const uint8_t *buf, size_t len);

/* Read one head (and, for strings, step over the bytes). Containers are
 * not descended: read their `val` items next (a map has 2 * val). Checks
 * that the declared items could fit: array val <= bytes left, map
 * 2 * val <= bytes left, a tag is followed by at least one byte.
 * Returns NB_OK, NB_ERR_TRUNCATED or NB_ERR_MALFORMED (see above). */
nb_err nb_cbor_next(struct nb_cbor *c, struct nb_cbor_item *it);

/* Skip one complete data item, nested ones included: iterative, at most
 * NB_CBOR_MAX_DEPTH containers deep (deeper: NB_ERR_MALFORMED). */
nb_err nb_cbor_skip(struct nb_cbor *c);

/* Read an item of the given major type, else NB_ERR_MALFORMED (and the
 * codes of nb_cbor_next). On error nothing is consumed or written.
 * Strings point into the buffer; array/map/tag return the head only. */
nb_err nb_cbor_uint(struct nb_cbor *c, uint64_t *v);
/* Major 0 or 1; a value outside int64_t is NB_ERR_MALFORMED. */
nb_err nb_cbor_int(struct nb_cbor *c, int64_t *v);
nb_err nb_cbor_bstr(struct nb_cbor *c, const uint8_t **p, size_t *len);
nb_err nb_cbor_tstr(struct nb_cbor *c, const uint8_t **p, size_t *len);
nb_err nb_cbor_array(struct nb_cbor *c, uint64_t *count);
nb_err nb_cbor_map(struct nb_cbor *c, uint64_t *count);
nb_err nb_cbor_tag(struct nb_cbor *c, uint64_t *tag);

/* Nonzero when every byte has been read. */
int nb_cbor_done(const struct nb_cbor *c);

/* Write the shortest head for (major, val) to `out` (9 bytes suffice);
 * returns its length (1, 2, 3, 5 or 9). Only the low 3 bits of `major`
 * are used. A head only: string bytes and items are the caller's. */
size_t nb_cbor_head(uint8_t out[9], uint8_t major, uint64_t val);

#endif
