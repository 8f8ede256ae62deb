/* err.c - names of the error codes, for logs and one-line CLI errors. */
#include "nb_err.h"

const char *nb_err_name(nb_err err)
{
    switch (err) {
    case NB_OK: return "NB_OK";
    case NB_ERR_IO: return "NB_ERR_IO";
    case NB_ERR_NOENT: return "NB_ERR_NOENT";
    case NB_ERR_DENIED: return "NB_ERR_DENIED";
    case NB_ERR_INVAL: return "NB_ERR_INVAL";
    case NB_ERR_NOSPC: return "NB_ERR_NOSPC";
    case NB_ERR_RANGE: return "NB_ERR_RANGE";
    case NB_ERR_STATE: return "NB_ERR_STATE";
    case NB_ERR_CORRUPT: return "NB_ERR_CORRUPT";
    case NB_ERR_POWER: return "NB_ERR_POWER";
    case NB_ERR_NOMEM: return "NB_ERR_NOMEM";
    case NB_ERR_MALFORMED: return "NB_ERR_MALFORMED";
    case NB_ERR_TRUNCATED: return "NB_ERR_TRUNCATED";
    case NB_ERR_TRAILING: return "NB_ERR_TRAILING";
    case NB_ERR_DUPLICATE: return "NB_ERR_DUPLICATE";
    case NB_ERR_UNKNOWN_FIELD: return "NB_ERR_UNKNOWN_FIELD";
    case NB_ERR_UNSUPPORTED: return "NB_ERR_UNSUPPORTED";
    case NB_ERR_SIGNATURE: return "NB_ERR_SIGNATURE";
    case NB_ERR_UNKNOWN_KEY: return "NB_ERR_UNKNOWN_KEY";
    case NB_ERR_EXPIRED: return "NB_ERR_EXPIRED";
    case NB_ERR_REVOKED: return "NB_ERR_REVOKED";
    case NB_ERR_VENDOR: return "NB_ERR_VENDOR";
    case NB_ERR_CLASS: return "NB_ERR_CLASS";
    case NB_ERR_HW_REV: return "NB_ERR_HW_REV";
    case NB_ERR_ROLLBACK: return "NB_ERR_ROLLBACK";
    case NB_ERR_DIGEST: return "NB_ERR_DIGEST";
    }
    return "NB_ERR_UNKNOWN";
}
