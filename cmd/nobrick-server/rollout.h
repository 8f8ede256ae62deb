/* rollout.h - the rollout rules, as pure functions: no database, no clock.
 *
 * A rollout offers one package to a target (hardware revisions, tags,
 * groups, device ID modulo N, explicit device IDs), in steps: step k
 * reaches the first steps[k].ppm parts per million of the target, in the
 * order of nb_cohort_point(rollout ID, device ID) (core/nb_cohort.h), and
 * holds there for steps[k].hold_s seconds before the next. New offers are
 * made, and steps advance, only inside the allowed windows. The rollout
 * pauses itself when the failures of the current step (failed installs,
 * reverted trials, devices silent for silent_s after their offer) pass
 * fail_ppm of the devices attempted in that step - counted per step, not
 * over the whole target, so a bad release stops early.
 *
 * The server stores the policy and target as JSON (the forms below, also
 * in docs/server-api.md) and calls these functions with the time it
 * reads, so tests drive them with simulated time.
 *
 * JSON forms:
 *   policy: {
 *     "schedule": [{"percent": 1, "hold": "1d"}, {"percent": 10, "hold": "7d"},
 *                  {"percent": 100}]
 *              or {"ramp_percent": 1, "every": "1d"}   (1 %, 2 %, ... 100 %)
 *     "windows": [{"days": "mon-thu", "from": "00:00", "to": "24:00"},
 *                 {"days": "fri", "from": "00:00", "to": "12:00"}, ...]
 *              or "always"
 *     "utc_offset": "+01:00",            windows are in this local time
 *     "failure_threshold": "5%",         or a fraction 0.05
 *     "min_attempted": 10,               no verdict with fewer attempts
 *     "silent_timeout": "6h"
 *   }  every key optional; defaults: schedule 1 % (1d), 10 % (1d),
 *   50 % (1d), 100 %; windows every day except Friday from 12:00; UTC;
 *   threshold 5 %; min_attempted 10; silent_timeout 6h.
 *   Durations: an integer of seconds or "90s", "30m", "6h", "1d", "1w"
 *   (one unit), at most NB_RO_MAX_DURATION_S.
 *   target: {"hw_revs": ["sim-1"], "tags": ["eu"], "groups": ["line-3"],
 *            "modulo": {"n": 10, "residues": [0, 1]}, "devices": ["d-1"]}
 *   every key optional; a device must match each key given (any value
 *   within a key). Empty target: every device.
 *
 * Details of the forms (docs/rollouts.md explains them for users):
 *   - schedule: 1..NB_RO_MAX_STEPS steps, "percent" a number (5, 0.5) or
 *     a string ("5%", "0.5%"), a whole number of ppm (at most 4 decimals),
 *     strictly rising, the last exactly 100. "hold" defaults to "1d"; on
 *     the last step it is accepted and ignored (stored as 0). A ramp
 *     {"ramp_percent": r, "every": d} is r, 2r, ... below 100, then 100,
 *     each held d (> 0); at most NB_RO_MAX_STEPS steps (r >= 0.7813).
 *   - windows: 1..NB_RO_MAX_WINDOWS of {"days", "from", "to"}, all three
 *     optional ("days" defaults to every day, "from" to "00:00", "to" to
 *     "24:00"). days: comma-separated names or ranges of mon tue wed thu
 *     fri sat sun, a range may wrap ("fri-mon"), no day twice. from < to,
 *     "HH:MM", "to" up to "24:00": a window never crosses midnight; a
 *     night window is two entries (22:00-24:00 and the next day's
 *     00:00-06:00, which join). "always": no limit. The allowed time is
 *     the union of the windows.
 *   - utc_offset: "+HH:MM" or "-HH:MM", at most 14:00. A fixed offset,
 *     no daylight saving.
 *   - failure_threshold: a fraction 0..1 or a string "0%".."100%".
 *   - min_attempted: an integer 0..1000000. silent_timeout: > 0.
 *   - target lists: 1..NB_RO_MAX_LIST distinct strings; tags, groups and
 *     devices 1 to 64 of [A-Za-z0-9._-] (as the server's IDs), hw_revs 1
 *     to 64 printable ASCII. modulo: n 2..256, 1..NB_RO_MAX_LIST distinct
 *     residues below n.
 *   Anything else (an unknown key, a wrong type, a negative, fractional
 *   where whole, huge or non-finite number) is refused with NB_ERR_INVAL
 *   and one line naming the key ("policy.schedule[2].percent: ...").
 */
#ifndef NB_ROLLOUT_H
#define NB_ROLLOUT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "nb_err.h"

#define NB_RO_MAX_STEPS 128
#define NB_RO_MAX_WINDOWS 16
#define NB_RO_MAX_LIST 32        /* values per target key */
#define NB_RO_NAME_MAX 65        /* a hw_rev, tag, group or device ID + NUL */
#define NB_RO_PPM 1000000u
#define NB_RO_MAX_DURATION_S (366u * 86400u) /* any hold, every, timeout */
#define NB_RO_NEVER INT64_MAX     /* nb_ro_window_next: no window opens */

struct nb_ro_step {
    uint32_t ppm;     /* share of the target reached, 1..1000000, rising */
    uint32_t hold_s;  /* seconds before the next step (ignored on the last) */
};

struct nb_ro_window {
    uint8_t days;      /* bit 0 = Monday ... bit 6 = Sunday */
    uint16_t from_min; /* minutes after local midnight, from < to */
    uint16_t to_min;   /* up to 1440 */
};

struct nb_ro_policy {
    struct nb_ro_step steps[NB_RO_MAX_STEPS];
    unsigned n_steps;                  /* >= 1; the last has ppm 1000000 */
    struct nb_ro_window windows[NB_RO_MAX_WINDOWS];
    unsigned n_windows;                /* 0: always allowed */
    int32_t utc_offset_s;
    uint32_t fail_ppm;
    uint32_t min_attempted;
    uint32_t silent_s;
};

struct nb_ro_target {
    char hw_revs[NB_RO_MAX_LIST][NB_RO_NAME_MAX];
    unsigned n_hw_revs;
    char tags[NB_RO_MAX_LIST][NB_RO_NAME_MAX];
    unsigned n_tags;
    char groups[NB_RO_MAX_LIST][NB_RO_NAME_MAX];
    unsigned n_groups;
    char devices[NB_RO_MAX_LIST][NB_RO_NAME_MAX];
    unsigned n_devices;
    uint32_t modulo;                   /* 0: no modulo rule */
    uint8_t residues[NB_RO_MAX_LIST];  /* residues < modulo */
    unsigned n_residues;
};

/* Counts of the current step's devices (those first offered in it). */
struct nb_ro_counts {
    uint32_t attempted;  /* offered in this step */
    uint32_t failed;     /* reported failed */
    uint32_t reverted;   /* trial reverted */
    uint32_t silent;     /* no terminal state and nothing heard for silent_s */
};

/* Parse the JSON forms above (NULL or JSON null: all defaults, i.e. the
 * default policy / the empty target). The whole struct is written (unused
 * entries zeroed), so two parses of equal JSON compare equal with memcmp.
 * On error: NB_ERR_INVAL, one line naming the key into err (if err and
 * errlen > 0; truncated to fit), and *p / *t left unspecified. */
nb_err nb_ro_policy_parse(const json_t *j, struct nb_ro_policy *p,
                          char *err, size_t errlen);
nb_err nb_ro_target_parse(const json_t *j, struct nb_ro_target *t,
                          char *err, size_t errlen);
/* Canonical JSON of a parsed policy / target (new references; NULL only
 * when out of memory). Parsing it gives back the same struct (memcmp
 * equal). Policy: every key written; the schedule as a list (a ramp is
 * expanded), percents as integers where whole, else "0.5%" strings;
 * durations as "7d", "6h", "90m", "45s" (largest exact unit); the
 * threshold as a "5%" string; windows as "always" or a list with days
 * like "mon-thu" or "sat,sun". Target: only the keys that are set. */
json_t *nb_ro_policy_json(const struct nb_ro_policy *p);
json_t *nb_ro_target_json(const struct nb_ro_target *t);

/* 1 when `now` (Unix seconds) falls in an allowed window: a window
 * covers [from, to) local time on its days, local time being
 * now + utc_offset_s (1970-01-01 was a Thursday). No windows: always. */
int nb_ro_in_window(const struct nb_ro_policy *p, int64_t now);

/* The first moment >= t that is in a window: t itself when t is in one,
 * else the next window opening. NB_RO_NEVER when no window ever opens (a
 * hand-built policy with no days; a parsed one always has one) or the
 * opening is beyond int64. Start a rollout, and resume one, with
 * step_started = nb_ro_window_next(p, now) so the first hold counts from
 * when offers can be made. */
int64_t nb_ro_window_next(const struct nb_ro_policy *p, int64_t t);

/* The step at `now` of a running rollout that entered `step` at
 * `step_started`; *started (if not NULL) gets that step's start. The rule,
 * applied repeatedly from `step` (so a late call can pass several steps):
 *   the hold of step k ends at  end = started_k + steps[k].hold_s;
 *   step k+1 starts at          started_k+1 = nb_ro_window_next(p, end),
 *   i.e. when the hold ends, or, if that is outside the windows, at the
 *   next window opening (a computed time, not `now`);
 *   it is entered when          started_k+1 <= now.
 * Never past the last step (a step beyond it is taken as the last).
 * started > now (a step set to start at a coming window) never advances.
 * Pure time: the caller checks nb_ro_should_pause for the current step
 * before advancing (a paused rollout does not advance). */
unsigned nb_ro_advance(const struct nb_ro_policy *p, unsigned step,
                       int64_t step_started, int64_t now, int64_t *started);

/* Share of the target reached at `step` (ppm); a step beyond the last
 * is the last (1000000). */
uint32_t nb_ro_step_ppm(const struct nb_ro_policy *p, unsigned step);

/* 1 when the step's failures call for an automatic pause. With
 * bad = failed + reverted + silent (all counts of the current step):
 *   pause  when  bad * 1000000 > fail_ppm * max(attempted, min_attempted)
 * which is two rules in one:
 *   - attempted >= min_attempted: the step's failure share is over the
 *     threshold (bad / attempted > fail_ppm / 10^6);
 *   - attempted < min_attempted: the failures alone are already over the
 *     threshold of min_attempted, so even if every device still to come
 *     up to min_attempted succeeds, the verdict at min_attempted would be
 *     a pause: pause now rather than wait for it.
 * Exactly at the threshold is not over it. E.g. 5 % and min_attempted 10:
 * 1 bad of 1..19 attempted pauses, 1 of 20 does not (5 %), 2 of 40 does
 * not, 3 of 40 does. */
int nb_ro_should_pause(const struct nb_ro_policy *p,
                       const struct nb_ro_counts *c);

/* One line for a rollout's pause_reason, e.g. "auto: 3 of 20 attempted
 * failed, reverted or went silent (15% > 5%)" or, before min_attempted,
 * "auto: 2 of 4 attempted failed, reverted or went silent (already over
 * 5% of min_attempted 10)". Writes "" when there is no reason to pause
 * (and nothing when buf is NULL or len 0). Returns buf. */
char *nb_ro_pause_reason(const struct nb_ro_policy *p,
                         const struct nb_ro_counts *c, char *buf,
                         size_t len);

/* A share as percent text, exact: "5%", "0.5%", "0.0001%" (at most 12
 * bytes with the NUL). Returns buf. */
char *nb_ro_ppm_str(uint32_t ppm, char *buf, size_t len);

/* 1 when the device matches the target (every given key): hw_rev in
 * hw_revs, group in groups, any of its tags in tags, its ID in devices,
 * nb_cohort_fixed(device_id, modulo) in residues (the number the ID ends
 * with modulo n; an ID that does not end with a digit takes its SipHash).
 * A NULL hw_rev / group / device_id never matches a key that is set
 * (tags may be NULL when n_tags is 0). Exact, case-sensitive compares. */
int nb_ro_target_match(const struct nb_ro_target *t, const char *device_id,
                       const char *hw_rev, const char *group,
                       const char *const *tags, unsigned n_tags);

/* 1 when a device that matches the target is offered at this step:
 * nb_cohort_in(rollout_id, device_id, nb_ro_step_ppm(p, step)). This
 * function has no device attributes: the caller checks
 * nb_ro_target_match first. Monotone: reached at step k implies reached
 * at every later step (the steps rise). */
int nb_ro_device_reached(const struct nb_ro_policy *p, unsigned step,
                         const char *rollout_id, const char *device_id);

#endif /* NB_ROLLOUT_H */
