/* store_mgmt.c - store queries of the management API; see store_mgmt.h. */
#include "store_mgmt.h"

nb_err srv_store_rollout_resume(struct nb_db_conn *c, const char *id,
                                int64_t step, int64_t started, int64_t now)
{
    struct nb_db_val p[4] = {NB_DB_S(id), NB_DB_I(step), NB_DB_I(started),
                             NB_DB_I(now)};
    int64_t changed = 0;
    nb_err err = nb_db_exec(c, "UPDATE rollouts SET state = 'running', "
                            "pause_reason = NULL, step = ?2, "
                            "step_started_at = ?3, updated_at = ?4 WHERE "
                            "id = ?1", p, 4, NULL, NULL, &changed);
    if (!err && changed == 0)
        return NB_ERR_NOENT;
    if (err)
        return err;
    /* The refresh judges the current and the previous step: the operator
     * has seen those failures, so both leave the judgement. */
    return nb_db_exec(c, "UPDATE device_rollouts SET step = -1 - step WHERE "
                      "rollout_id = ?1 AND step >= 0 AND step >= ?2 - 1 AND "
                      "step <= ?2", p, 2, NULL, NULL, NULL);
}
