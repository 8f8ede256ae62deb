/* store.h - nobrick-server's domain queries over db.h.
 *
 * Every function takes a connection (struct nb_db_conn) and runs its
 * statements on it; the caller decides the transaction (nb_db_begin /
 * nb_db_commit), so a change of several rows is one transaction and an
 * answer is sent only after the commit. SQL text is the same on SQLite
 * and PostgreSQL, with ?N parameters only: no value is ever spliced into
 * SQL. Structs are plain values (no pointers), filled by the calls.
 *
 * Tables (schema.c; docs/server.md shows them):
 *   devices          id, token hash, hw_rev, group, tags, version, ...
 *   device_tags      (device_id, tag): for filtering by tag
 *   packages         id, version, security_version, channel, hw_revs, ...
 *   package_files    extra files of a package (hawkBit DDI)
 *   rollouts         id "r-N", package, target and policy JSON, state,
 *                    current step and when it started
 *   device_rollouts  one row per device that was offered a rollout:
 *                    created at its first offer, never before (a rollout
 *                    to 100,000 devices has no rows until they check in)
 *   events           append-only log of reports, health reports, offers
 *   counters         named sequences (rollout IDs)
 *
 * Errors: NB_ERR_NOENT (no such row), NB_ERR_DUPLICATE (unique key),
 * NB_ERR_NOSPC (a stored value does not fit its struct field), NB_ERR_IO
 * (database busy or lost), NB_ERR_INVAL (an SQL error: a bug), as db.h.
 */
#ifndef NB_SRV_STORE_H
#define NB_SRV_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "nb_err.h"
#include "rollout.h"

#define SRV_ST_ID 65          /* IDs, tags, groups, hw_revs: 64 + NUL */
#define SRV_ST_VERSION 33     /* "M.m.p" */
#define SRV_ST_HEX 65         /* SHA-256 hex */
#define SRV_ST_NAME 256       /* file names */
#define SRV_ST_TEXT 512       /* reasons, details */
#define SRV_ST_SLOTS 1024     /* the slots JSON of the last check-in */
#define SRV_ST_JSON 16384     /* a rollout's target or policy JSON */
#define SRV_ST_MAX_TAGS NB_RO_MAX_LIST
#define SRV_ST_MAX_HW NB_RO_MAX_LIST
#define SRV_ST_LIST_MAX 1000  /* items per list page */

/* Run the schema migrations (schema.c) up to the newest version, each in
 * its own transaction; `backend` is nb_db_backend()'s name. Processes
 * sharing a database hold nb_db_migration_lock around it. NB_ERR_STATE
 * when the database has a newer schema than this server knows. */
nb_err srv_schema_migrate(struct nb_db_conn *c, const char *backend);
/* The schema version in the database (0: empty database). */
nb_err srv_schema_version(struct nb_db_conn *c, int64_t *version);
#define SRV_SCHEMA_VERSION 2

/* Next value of a named counter (1, 2, ...), inside the caller's
 * transaction. */
nb_err srv_store_next(struct nb_db_conn *c, const char *name, int64_t *out);

/* --------------------------------------------------------------- devices */

struct srv_device {
    char id[SRV_ST_ID];
    char hw_rev[SRV_ST_ID];
    char group[SRV_ST_ID];                  /* "" = none */
    char tags[SRV_ST_MAX_TAGS][SRV_ST_ID];  /* sorted, unique */
    unsigned n_tags;
    char version[SRV_ST_VERSION];           /* "" until its first check-in */
    int64_t security_version;
    char slots[SRV_ST_SLOTS];               /* JSON array, "" = unknown */
    char token_sha256[SRV_ST_HEX];          /* "" = no token */
    int enrol_pending;   /* enrolled by a fleet token and its own token not
                          * used yet: a repeated enrolment may replace it */
    int64_t created_at;
    int64_t last_seen;                      /* 0 = never checked in */
};

/* Insert a device (every field of d; tags too). NB_ERR_DUPLICATE when the
 * ID exists. */
nb_err srv_store_device_create(struct nb_db_conn *c,
                               const struct srv_device *d);
nb_err srv_store_device_get(struct nb_db_conn *c, const char *id,
                            struct srv_device *out);
/* The device whose token hashes to token_sha256 (artifact auth). */
nb_err srv_store_device_by_token(struct nb_db_conn *c,
                                 const char *token_sha256,
                                 struct srv_device *out);

struct srv_device_filter {
    const char *tag;      /* NULL: any */
    const char *group;
    const char *hw_rev;
    const char *version;
    const char *after;    /* paging: IDs greater than this */
    unsigned limit;       /* 0: 100; capped at SRV_ST_LIST_MAX */
};

/* A page of devices in ID order: *out (malloc'ed; free() it) gets *n
 * devices; *more is 1 when another page follows. */
nb_err srv_store_device_list(struct nb_db_conn *c,
                             const struct srv_device_filter *f,
                             struct srv_device **out, unsigned *n,
                             int *more);
/* Replace the tags (validated by the caller; duplicates dropped). */
nb_err srv_store_device_set_tags(struct nb_db_conn *c, const char *id,
                                 const char *const *tags, unsigned n_tags);
/* Set or clear ("" or NULL) the group. */
nb_err srv_store_device_set_group(struct nb_db_conn *c, const char *id,
                                  const char *group);
/* Replace the token hash; enrol_pending as given. */
nb_err srv_store_device_set_token(struct nb_db_conn *c, const char *id,
                                  const char *token_sha256,
                                  int enrol_pending);
/* How stale devices.last_seen may get, in seconds. A check-in that tells
 * nothing new (same hw_rev, version, security version and slots) writes
 * last_seen only when the stored one is this old: otherwise every
 * check-in would commit a write, and a durable commit (an fsync) per
 * check-in caps the server at a few hundred check-ins per second. An
 * hour, well above the default poll interval (300 s): with an interval
 * below a device's poll interval every check-in would write again.
 * last_seen is for people (the management API); nothing decides on it. */
#define SRV_SEEN_INTERVAL 3600

/* 1 when a check-in reporting these values must be written (something
 * changed, last_seen is SRV_SEEN_INTERVAL old or from the future), 0 when
 * the stored row d may stay as it is. */
int srv_device_seen_due(const struct srv_device *d, const char *hw_rev,
                        const char *version, int64_t security_version,
                        const char *slots, int64_t now);
/* What a check-in tells about the device. */
nb_err srv_store_device_seen(struct nb_db_conn *c, const char *id,
                             const char *hw_rev, const char *version,
                             int64_t security_version, const char *slots,
                             int64_t now);
nb_err srv_store_device_count(struct nb_db_conn *c, int64_t *n);

/* -------------------------------------------------------------- packages */

struct srv_package {
    char id[SRV_ST_ID];
    char version[SRV_ST_VERSION];
    int64_t security_version;
    char channel[16];                     /* production, development */
    char vendor[40];                      /* UUID text */
    char class_id[40];
    char hw_revs[SRV_ST_MAX_HW][SRV_ST_ID];
    unsigned n_hw_revs;
    int64_t size;                         /* of the .nbpkg file */
    int64_t payload_offset;
    int64_t payload_size;
    char sha256[SRV_ST_HEX];              /* of the whole file */
    char file[SRV_ST_NAME];               /* artifact name of the package */
    char manifest_file[SRV_ST_NAME];      /* artifact name, "" = none */
    int64_t created_at;
};

struct srv_package_file {
    char package_id[SRV_ST_ID];
    char name[SRV_ST_NAME];               /* as DDI clients see it */
    char file[SRV_ST_NAME];               /* artifact name on disk */
    int64_t size;
    char sha256[SRV_ST_HEX];
    char sha1[41];
    char md5[33];
    int64_t created_at;
};

/* NB_ERR_DUPLICATE for a known ID or sha256. */
nb_err srv_store_package_insert(struct nb_db_conn *c,
                                const struct srv_package *p);
nb_err srv_store_package_get(struct nb_db_conn *c, const char *id,
                             struct srv_package *out);
nb_err srv_store_package_by_sha256(struct nb_db_conn *c, const char *sha256,
                                   struct srv_package *out);
/* A page in ID order (after, limit as for devices). */
nb_err srv_store_package_list(struct nb_db_conn *c, const char *after,
                              unsigned limit, struct srv_package **out,
                              unsigned *n, int *more);
/* Highest security_version uploaded to `channel`; *found 0 (and *svn 0)
 * when the channel has no package. */
nb_err srv_store_package_max_svn(struct nb_db_conn *c, const char *channel,
                                 int64_t *svn, int *found);
/* Add or replace (same package and name) an extra file. */
nb_err srv_store_package_file_put(struct nb_db_conn *c,
                                  const struct srv_package_file *f);
/* The extra files of a package, in name order (at most `cap`). */
nb_err srv_store_package_files(struct nb_db_conn *c, const char *package_id,
                               struct srv_package_file *out, unsigned cap,
                               unsigned *n);

/* -------------------------------------------------------------- rollouts */

/* Rollout states as stored. */
#define SRV_RO_RUNNING "running"
#define SRV_RO_PAUSED "paused"
#define SRV_RO_ABORTED "aborted"
#define SRV_RO_COMPLETED "completed"

struct srv_rollout {
    char id[SRV_ST_ID];                   /* "r-N" */
    int64_t seq;                          /* N: newer rollouts are larger */
    char package_id[SRV_ST_ID];
    char state[16];
    char pause_reason[SRV_ST_TEXT];       /* "" = none */
    int64_t step;                         /* 0-based index into the schedule */
    int64_t step_started_at;
    char target[SRV_ST_JSON];             /* canonical JSON (rollout.h) */
    char policy[SRV_ST_JSON];
    int64_t created_at;
    int64_t updated_at;
};

/* Insert a new rollout: its id and seq are assigned here (r->id, r->seq
 * are written back); state, step and times as given (state "" means
 * running, step_started_at 0 means created_at). */
nb_err srv_store_rollout_insert(struct nb_db_conn *c, struct srv_rollout *r);
nb_err srv_store_rollout_get(struct nb_db_conn *c, const char *id,
                             struct srv_rollout *out);
/* A page of rollouts, newest first (seq descending); `state` NULL for
 * any. after: the seq of the last item of the previous page (0: none). */
nb_err srv_store_rollout_list(struct nb_db_conn *c, const char *state,
                              int64_t after, unsigned limit,
                              struct srv_rollout **out, unsigned *n,
                              int *more);
/* IDs of the rollouts still in play (running, paused, completed), newest
 * first, at most `cap`. (IDs only: a check-in then reads the one or two
 * rollouts it needs.) */
nb_err srv_store_rollout_active(struct nb_db_conn *c, char (*ids)[SRV_ST_ID],
                                unsigned cap, unsigned *n);
/* Set state and pause reason (NULL or "" clears it). */
nb_err srv_store_rollout_set_state(struct nb_db_conn *c, const char *id,
                                   const char *state, const char *reason,
                                   int64_t now);
/* Set the current step and when it started. */
nb_err srv_store_rollout_set_step(struct nb_db_conn *c, const char *id,
                                  int64_t step, int64_t started, int64_t now);

/* Devices of a rollout by state; `silent` counts those not final whose
 * last word is older than silent_s (they are also in their state). */
struct srv_rollout_counts {
    int64_t offered, downloading, verified, installing, trial;
    int64_t confirmed, failed, reverted;
    int64_t silent;
    int64_t total;                        /* rows = devices offered */
};
nb_err srv_store_rollout_counts(struct nb_db_conn *c, const char *id,
                                int64_t now, int64_t silent_s,
                                struct srv_rollout_counts *out);
/* The counts nb_ro_should_pause judges: devices first offered in `step`;
 * failed and reverted by state, silent as above. */
nb_err srv_store_rollout_step_counts(struct nb_db_conn *c, const char *id,
                                     int64_t step, int64_t now,
                                     int64_t silent_s,
                                     struct nb_ro_counts *out);

/* What srv_store_rollout_refresh looks at. */
#define SRV_RF_STEP 1u      /* advance the step (cheap: no counting) */
#define SRV_RF_PAUSE 2u     /* count the current step; pause if over */
#define SRV_RF_COMPLETE 4u  /* completed <-> running (an indexed probe) */
#define SRV_RF_ALL 7u

/* Bring rollout `id` up to date at `now`, inside the caller's
 * transaction: advance its step through the schedule and windows
 * (nb_ro_advance), pause it automatically when the current step's
 * failures pass the threshold (nb_ro_should_pause; reason "auto: ..."),
 * mark it completed when its last step is reached and every device
 * offered it is final (and running again should a device be offered
 * later); `what` picks which (SRV_RF_*), so a hot path pays only for what
 * it needs. Only running and completed rollouts change: paused and
 * aborted ones wait for the operator. *changed (may be NULL) is 1 when
 * something was written; *out (may be NULL) gets the rollout as it is
 * now. Used by check-ins, reports and the management status call. */
nb_err srv_store_rollout_refresh(struct nb_db_conn *c, const char *id,
                                 int64_t now, unsigned what, int *changed,
                                 struct srv_rollout *out);

/* ------------------------------------------------------- device_rollouts */

/* Per-device states (the report states plus "offered"). Final: confirmed,
 * failed, reverted. */
struct srv_devro {
    char device_id[SRV_ST_ID];
    char rollout_id[SRV_ST_ID];
    char state[16];
    int64_t step;             /* the step in which it was first offered */
    int64_t offered_at;
    int64_t updated_at;       /* its last word about this rollout */
    int64_t bytes, total;
    char reason[64];          /* NB_ERR_... of a failure */
    char detail[SRV_ST_TEXT];
    char health_nonce[129];
    int healthy;              /* -1 no health report, 0, 1 */
};

int srv_devro_final(const char *state);

/* Insert or replace the row (device_id, rollout_id). */
nb_err srv_store_devro_upsert(struct nb_db_conn *c, const struct srv_devro *d);
/* Insert the row only if there is none (a first offer): *created is 1
 * when this call inserted it. */
nb_err srv_store_devro_offer(struct nb_db_conn *c, const struct srv_devro *d,
                             int *created);
nb_err srv_store_devro_get(struct nb_db_conn *c, const char *device_id,
                           const char *rollout_id, struct srv_devro *out);
/* Rows of one device, newest offer first (at most cap). */
nb_err srv_store_devro_of_device(struct nb_db_conn *c, const char *device_id,
                                 struct srv_devro *out, unsigned cap,
                                 unsigned *n);
/* Rows of one rollout (paging by device ID). */
nb_err srv_store_devro_of_rollout(struct nb_db_conn *c, const char *rollout_id,
                                  const char *after, unsigned limit,
                                  struct srv_devro **out, unsigned *n,
                                  int *more);
nb_err srv_store_devro_count(struct nb_db_conn *c, int64_t *n);

/* ---------------------------------------------------------------- events */

struct srv_event {
    int64_t id;
    int64_t at;
    char device_id[SRV_ST_ID];
    char rollout_id[SRV_ST_ID];   /* "" = none */
    char kind[16];                /* checkin, offer, report, health, enrol */
    char body[2048];              /* JSON, cut at 2047 bytes */
};

/* Append one event; body is JSON text (NULL: "{}"). */
nb_err srv_store_event_append(struct nb_db_conn *c, int64_t at,
                              const char *device_id, const char *rollout_id,
                              const char *kind, const char *body);
/* The newest events of a device (kind NULL: any), newest first. */
nb_err srv_store_events_of_device(struct nb_db_conn *c, const char *device_id,
                                  const char *kind, struct srv_event *out,
                                  unsigned cap, unsigned *n);
nb_err srv_store_event_count(struct nb_db_conn *c, int64_t *n);

#endif /* NB_SRV_STORE_H */
