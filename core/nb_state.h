/* nb_state.h - the boot state: slot states, versions, floor, lifecycle.
 *
 * The whole boot state fits in one struct, written as one journal record,
 * so one state change is one append. The journal is the only truth about
 * it; nothing else on flash says which slot boots.
 *
 * Slot life: EMPTY -> RECEIVING -> VERIFIED -> PENDING -> TRIAL ->
 * CONFIRMED, or REJECTED. nb_slot_transition_allowed() is the table.
 */
#ifndef NB_STATE_H
#define NB_STATE_H

#include <stdint.h>

#include "nb_err.h"
#include "nb_manifest.h"

#define NB_MAX_SLOTS 3
#define NB_DEFAULT_ATTEMPT_LIMIT 3

enum nb_slot_state {
    NB_SLOT_EMPTY = 0,
    NB_SLOT_RECEIVING = 1, /* being written; never bootable */
    NB_SLOT_VERIFIED = 2,  /* complete and checked, not yet asked for */
    NB_SLOT_PENDING = 3,   /* asked to boot once as a trial */
    NB_SLOT_TRIAL = 4,     /* booted, waiting for confirmation */
    NB_SLOT_CONFIRMED = 5, /* known good */
    NB_SLOT_REJECTED = 6,  /* failed its trial or its check; never boots */
    NB_SLOT_STATE_COUNT = 7
};

enum nb_lifecycle {
    NB_LIFECYCLE_DEVELOPMENT = 1, /* lower security versions allowed */
    NB_LIFECYCLE_PRODUCTION = 2   /* lower security versions refused */
};

enum nb_layout_kind {
    NB_LAYOUT_AB = 1,         /* execute in place from slot A or B */
    NB_LAYOUT_AB_SWAP = 2,    /* fixed execution slot A, B swapped in */
    NB_LAYOUT_AB_FACTORY = 3, /* A/B plus a read-only factory image */
    NB_LAYOUT_SINGLE = 4      /* one slot plus a recovery loader */
};

/* A multi-step flash operation in progress, resumed from the journal. */
enum nb_op {
    NB_OP_NONE = 0,
    NB_OP_SWAP = 1,  /* moving B's image into A, A's into B */
    NB_OP_REVERT = 2 /* undoing a swap */
};

struct nb_slot_info {
    uint8_t state;    /* enum nb_slot_state */
    uint8_t attempts; /* trial boots so far (TRIAL only) */
    uint8_t shifted;  /* image starts one swap unit into the slot */
    uint32_t size;    /* image bytes, header included; 0 when EMPTY */
    uint32_t version; /* packed semantic version */
    uint32_t svn;     /* security version */
};

struct nb_state {
    uint32_t seq;          /* journal sequence number of this record */
    uint8_t layout;        /* enum nb_layout_kind */
    uint8_t lifecycle;     /* enum nb_lifecycle */
    uint8_t active;        /* slot holding the last confirmed image */
    uint8_t attempt_limit; /* trial boots before a trial is rejected */
    uint8_t op;            /* enum nb_op */
    uint16_t op_pos;       /* completed phases of the op */
    uint32_t floor;        /* lowest security version allowed */
    uint32_t progress;     /* RECEIVING: bytes written and checked */
    struct nb_slot_info slot[NB_MAX_SLOTS];
    struct nb_revocations rev; /* newest root-signed revocation list */
};

/* Name of a slot state ("CONFIRMED"), lifecycle, layout; never NULL. */
const char *nb_slot_state_name(uint8_t state);
const char *nb_lifecycle_name(uint8_t lc);
const char *nb_layout_name(uint8_t layout);

/* The transition table: nonzero when a slot may go from `from` to `to`. */
int nb_slot_transition_allowed(uint8_t from, uint8_t to);

/* Move slot `i` to `to`, or NB_ERR_STATE when the table forbids it. */
nb_err nb_state_set_slot(struct nb_state *st, unsigned i, uint8_t to);

/* Lifecycle goes DEVELOPMENT -> PRODUCTION only. */
nb_err nb_state_set_lifecycle(struct nb_state *st, uint8_t lc);

/* Anti-rollback: NB_OK when `svn` may be installed or booted; in
 * DEVELOPMENT a lower one is allowed and *downgrade is set to 1; in
 * PRODUCTION it is NB_ERR_ROLLBACK. */
nb_err nb_state_check_svn(const struct nb_state *st, uint32_t svn,
                          int *downgrade);

/* Sanity check of a decoded state (known enums, slot indexes in range). */
nb_err nb_state_check(const struct nb_state *st, unsigned slot_count);

#endif
