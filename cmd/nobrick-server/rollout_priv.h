/* rollout_priv.h - helpers shared by rollout.c and rollout_policy.c (not
 * part of the rollout interface). */
#ifndef NB_ROLLOUT_PRIV_H
#define NB_ROLLOUT_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "nb_err.h"

/* Write one line (printf format) into err, if err and errlen > 0;
 * returns NB_ERR_INVAL. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
nb_err nb_ro_fail(char *err, size_t errlen, const char *fmt, ...);

/* NB_ERR_INVAL naming `path` when object `o` has a key not in `known`
 * (NULL-terminated). */
nb_err nb_ro_check_keys(const json_t *o, const char *path,
                        const char *const *known, char *err, size_t errlen);

/* A JSON integer 0..max into *out. */
nb_err nb_ro_parse_uint(const json_t *v, const char *path, uint32_t max,
                        uint32_t *out, char *err, size_t errlen);

#endif /* NB_ROLLOUT_PRIV_H */
