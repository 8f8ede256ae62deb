/* state.c - the slot state table, anti-rollback and lifecycle rules. */
#include "nb_state.h"

const char *nb_slot_state_name(uint8_t state)
{
    static const char *const names[NB_SLOT_STATE_COUNT] = {
        "EMPTY", "RECEIVING", "VERIFIED", "PENDING",
        "TRIAL", "CONFIRMED", "REJECTED"};
    return state < NB_SLOT_STATE_COUNT ? names[state] : "UNKNOWN";
}

const char *nb_lifecycle_name(uint8_t lc)
{
    switch (lc) {
    case NB_LIFECYCLE_DEVELOPMENT: return "development";
    case NB_LIFECYCLE_PRODUCTION: return "production";
    }
    return "unknown";
}

const char *nb_layout_name(uint8_t layout)
{
    switch (layout) {
    case NB_LAYOUT_AB: return "ab";
    case NB_LAYOUT_AB_SWAP: return "ab-swap";
    case NB_LAYOUT_AB_FACTORY: return "ab-factory";
    case NB_LAYOUT_SINGLE: return "single";
    }
    return "unknown";
}

#define B(s) (1u << NB_SLOT_##s)

/* allowed[from] = set of states `from` may move to. Every edge has a
 * reason:
 *  - RECEIVING from anywhere but TRIAL: a new download may replace an
 *    empty, stale, rejected or previous image (never the one on trial,
 *    which is running, nor the active one: the installer checks that).
 *  - REJECTED from RECEIVING..CONFIRMED: the image failed its check or
 *    its trial.
 *  - TRIAL -> TRIAL: one more trial boot counted.
 *  - VERIFIED -> CONFIRMED: factory provisioning only.
 *  - REJECTED/RECEIVING -> EMPTY: a slot cleared. */
static const uint8_t allowed[NB_SLOT_STATE_COUNT] = {
    [NB_SLOT_EMPTY] = B(RECEIVING),
    [NB_SLOT_RECEIVING] = B(RECEIVING) | B(VERIFIED) | B(REJECTED) | B(EMPTY),
    [NB_SLOT_VERIFIED] = B(RECEIVING) | B(PENDING) | B(CONFIRMED) | B(REJECTED),
    [NB_SLOT_PENDING] = B(RECEIVING) | B(TRIAL) | B(REJECTED),
    [NB_SLOT_TRIAL] = B(TRIAL) | B(CONFIRMED) | B(REJECTED),
    [NB_SLOT_CONFIRMED] = B(RECEIVING) | B(REJECTED),
    [NB_SLOT_REJECTED] = B(RECEIVING) | B(EMPTY),
};

#undef B

int nb_slot_transition_allowed(uint8_t from, uint8_t to)
{
    if (from >= NB_SLOT_STATE_COUNT || to >= NB_SLOT_STATE_COUNT)
        return 0;
    return (allowed[from] >> to) & 1u;
}

nb_err nb_state_set_slot(struct nb_state *st, unsigned i, uint8_t to)
{
    if (i >= NB_MAX_SLOTS)
        return NB_ERR_INVAL;
    if (!nb_slot_transition_allowed(st->slot[i].state, to))
        return NB_ERR_STATE;
    st->slot[i].state = to;
    if (to != NB_SLOT_TRIAL)
        st->slot[i].attempts = 0;
    return NB_OK;
}

nb_err nb_state_set_lifecycle(struct nb_state *st, uint8_t lc)
{
    if (lc != NB_LIFECYCLE_DEVELOPMENT && lc != NB_LIFECYCLE_PRODUCTION)
        return NB_ERR_INVAL;
    /* A device in production never goes back: that would reopen
     * downgrades on a fielded device. */
    if (st->lifecycle == NB_LIFECYCLE_PRODUCTION &&
        lc != NB_LIFECYCLE_PRODUCTION)
        return NB_ERR_DENIED;
    st->lifecycle = lc;
    return NB_OK;
}

nb_err nb_state_check_svn(const struct nb_state *st, uint32_t svn,
                          int *downgrade)
{
    *downgrade = 0;
    if (svn >= st->floor)
        return NB_OK;
    if (st->lifecycle != NB_LIFECYCLE_DEVELOPMENT)
        return NB_ERR_ROLLBACK;
    *downgrade = 1;
    return NB_OK;
}

nb_err nb_state_check(const struct nb_state *st, unsigned slot_count)
{
    if (st->layout < NB_LAYOUT_AB || st->layout > NB_LAYOUT_SINGLE)
        return NB_ERR_CORRUPT;
    if (st->lifecycle != NB_LIFECYCLE_DEVELOPMENT &&
        st->lifecycle != NB_LIFECYCLE_PRODUCTION)
        return NB_ERR_CORRUPT;
    if (st->active >= slot_count || st->attempt_limit == 0)
        return NB_ERR_CORRUPT;
    if (st->op > NB_OP_REVERT)
        return NB_ERR_CORRUPT;
    for (unsigned i = 0; i < NB_MAX_SLOTS; i++) {
        if (st->slot[i].state >= NB_SLOT_STATE_COUNT)
            return NB_ERR_CORRUPT;
        if (i >= slot_count && st->slot[i].state != NB_SLOT_EMPTY)
            return NB_ERR_CORRUPT;
    }
    return NB_OK;
}
