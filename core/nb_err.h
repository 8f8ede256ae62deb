/* nb_err.h - the one error enum of nobrick.
 *
 * Negative values are errors, zero is success; positive results stay free
 * for functions that return a count. Callers react differently to "the
 * flash failed" (IO), "the data is wrong" (CORRUPT) and "this is not
 * allowed" (DENIED), so those are kept apart.
 */
#ifndef NB_ERR_H
#define NB_ERR_H

typedef enum nb_err {
    NB_OK = 0,
    NB_ERR_IO = -5,        /* flash read/program/erase reported failure */
    NB_ERR_NOENT = -2,     /* nothing there (no record, no image) */
    NB_ERR_DENIED = -13,   /* not allowed (lifecycle back, a refusal) */
    NB_ERR_INVAL = -22,    /* bad argument or configuration */
    NB_ERR_NOSPC = -28,    /* does not fit (image larger than slot) */
    NB_ERR_RANGE = -34,    /* address or length outside the device */
    NB_ERR_STATE = -71,    /* operation not valid in the current state */
    NB_ERR_CORRUPT = -84,  /* data fails its check (CRC, digest, format) */
    NB_ERR_POWER = -100,   /* power was cut (simulated flash only) */
    NB_ERR_NOMEM = -12,    /* out of memory, or a buffer too small: no
                            * verdict on the data */

    /* Package and manifest rejections: one code per reason, so a log line
     * or a test can tell them apart (see docs/package-format.md). */
    NB_ERR_MALFORMED = -200,   /* not well-formed, or a form we refuse */
    NB_ERR_TRUNCATED = -201,   /* input ends before its declared end */
    NB_ERR_TRAILING = -202,    /* bytes after the declared end */
    NB_ERR_DUPLICATE = -203,   /* a map key appears twice */
    NB_ERR_UNKNOWN_FIELD = -204, /* an unknown critical field */
    NB_ERR_UNSUPPORTED = -205, /* a valid value we do not implement */
    NB_ERR_SIGNATURE = -206,   /* a signature does not verify */
    NB_ERR_UNKNOWN_KEY = -207, /* no trust anchor with that key ID */
    NB_ERR_EXPIRED = -208,     /* delegation not valid at creation time */
    NB_ERR_REVOKED = -209,     /* signing key revoked by the root */
    NB_ERR_VENDOR = -210,      /* vendor ID not this device's / not allowed */
    NB_ERR_CLASS = -211,       /* class ID not this device's / not allowed */
    NB_ERR_HW_REV = -212,      /* this hardware revision is not listed */
    NB_ERR_ROLLBACK = -213,    /* security version below the floor */
    NB_ERR_DIGEST = -214       /* payload or block digest mismatch */
} nb_err;

/* Short stable name of an error ("NB_ERR_IO"); never NULL. */
const char *nb_err_name(nb_err err);

#endif
