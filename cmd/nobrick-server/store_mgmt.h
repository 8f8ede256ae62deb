/* store_mgmt.h - store queries that only the management API needs, over
 * db.h like store.h (same conventions: the caller's connection and
 * transaction, ?N parameters only, errors as store.h). */
#ifndef NB_SRV_STORE_MGMT_H
#define NB_SRV_STORE_MGMT_H

#include <stdint.h>

#include "db.h"
#include "nb_err.h"

/* Resume a paused rollout: state running, no pause reason, the current
 * step `step` starts again at `started` (its hold counts from there), and
 * its counts start again: the rows of devices first offered in that step
 * or the one before (the two steps the refresh judges) are moved out (their step becomes -1 - step, "offered
 * in step `step` before a resume"), so srv_store_rollout_step_counts, and
 * with it the automatic pause, judges only devices offered after the
 * resume. The rows keep their state, so the rollout's overall counts do
 * not change. NB_ERR_NOENT when there is no such rollout. */
nb_err srv_store_rollout_resume(struct nb_db_conn *c, const char *id,
                                int64_t step, int64_t started, int64_t now);

#endif /* NB_SRV_STORE_MGMT_H */
