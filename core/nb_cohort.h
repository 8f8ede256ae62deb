/* nb_cohort.h - which devices a staged rollout reaches first.
 *
 * A rollout at p % reaches the devices whose cohort point for that
 * rollout falls in the first p % of the 32-bit range. The point is
 * SipHash-2-4 of (rollout ID, device ID) under a fixed key, so the order
 * is uniform, stable for one rollout (a device reached at 1 % stays
 * reached at 10 %), and unrelated between rollouts: each release reaches a
 * different first 1 %. Server and device compute the same value, so a
 * device can tell whether an offer for it is plausible.
 *
 * Not a secret and not a defence: anyone can compute the order. It only
 * spreads risk.
 */
#ifndef NB_COHORT_H
#define NB_COHORT_H

#include <stddef.h>
#include <stdint.h>

#define NB_COHORT_PPM 1000000u

/* SipHash-2-4 of `data` under the 128-bit key k (little-endian halves),
 * as in the reference definition (Aumasson and Bernstein, 2012). */
uint64_t nb_siphash24(uint64_t k0, uint64_t k1, const void *data, size_t len);

/* The device's point in rollout `rollout_id`'s order: uniform over 2^32.
 * Exactly: the high 32 bits of SipHash-2-4 under the key "nobrick cohort
 * 1" (16 ASCII bytes; k0 = bytes 0..7, k1 = bytes 8..15, little-endian)
 * of the message  len(rollout_id) (one byte) || rollout_id || device_id,
 * so ("ab", "c") and ("a", "bc") differ. IDs are cut to 255 (rollout)
 * and 256 (device) bytes. Both strings non-NULL, NUL-terminated. */
uint32_t nb_cohort_point(const char *rollout_id, const char *device_id);

/* 1 when the device is within the first `ppm` parts per million of the
 * rollout's order (ppm >= 1000000: every device; 0: none). */
int nb_cohort_in(const char *rollout_id, const char *device_id, uint32_t ppm);

/* The device's fixed residue modulo n, the same in every
 * rollout: the decimal number the device ID ends with (its last 18 digits
 * at most), modulo n; an ID that does not end with a digit takes its
 * SipHash (same key, the ID alone as message) modulo n. "dev-0042" with
 * n = 10 is 2. n = 0 or 1: 0. */
uint32_t nb_cohort_fixed(const char *device_id, uint32_t n);

#endif /* NB_COHORT_H */
