/* swap.c - the swap strategy for MCUs that execute from a fixed slot A.
 *
 * B is one swap unit larger than A. A staged image sits in B shifted by
 * one unit, so B's first unit is free. Step i of the swap, in two phases:
 *   phase 0: erase B[i], copy A[i] (old unit i) -> B[i]
 *   phase 1: erase A[i], copy B[i+1] (new unit i) -> A[i]
 * B[i] is free at step i because its content (new unit i-1) went to
 * A[i-1] in step i-1. Each phase reads only units no earlier phase has
 * overwritten, so a phase interrupted by a power cut is simply redone: the
 * journal records every completed phase (op_pos). Only the bytes of each
 * image are copied, so one upgrade writes old size + new size bytes: 2.0x
 * for images of equal size, with no scratch area. Units of A that the
 * arriving image does not reach are erased, so nothing stale follows an
 * image in A (the package check requires an erased tail).
 *
 * A revert undoes the phases in reverse order:
 *   undo phase 1 of step i: erase A[i], copy B[i] (old unit i) -> A[i]
 *   undo phase 0 of step i: erase B[i], copy A[i-1] (new unit i-1) -> B[i]
 * after which A holds the old image and B the new one, shifted again.
 */
#include "nb_swap.h"

static uint32_t units(uint32_t size, uint32_t unit)
{
    return (size + unit - 1) / unit;
}

/* Bytes of an image of `size` bytes that fall in unit `i`. */
static uint32_t used(uint32_t size, uint32_t unit, uint32_t i)
{
    uint32_t start = i * unit;
    if (start >= size)
        return 0;
    return size - start < unit ? size - start : unit;
}

static nb_err move_unit(struct nb_device *d, uint32_t dst, uint32_t src,
                        uint32_t len)
{
    const struct nb_boot_config *c = &d->cfg;
    uint32_t unit = c->layout.swap_unit;
    nb_err err = nb_flash_erase_range(c->flash, dst, unit);
    if (err)
        return err;
    return nb_flash_copy(c->flash, dst, src, len, c->buf, c->buf_size);
}

uint32_t nb_swap_phases(const struct nb_device *d)
{
    const struct nb_state *st = &d->state;
    uint32_t unit = d->cfg.layout.swap_unit;
    /* During a swap slot 0 describes the old image; during a revert slot
     * 1 does. Either way the step count covers the larger image. */
    uint32_t a = units(st->slot[0].size, unit);
    uint32_t b = units(st->slot[1].size, unit);
    return 2 * (a > b ? a : b);
}

/* Erase unit `dst` without copying into it: a unit the arriving image
 * does not reach, so that nothing stale follows it in the slot. */
static nb_err clear_unit(struct nb_device *d, uint32_t dst, int *worked)
{
    *worked = 1;
    return nb_flash_erase_range(d->cfg.flash, dst, d->cfg.layout.swap_unit);
}

/* Run forward phase `q`; *worked says whether it touched the flash. */
static nb_err forward(struct nb_device *d, uint32_t q, int *worked)
{
    const struct nb_layout *l = &d->cfg.layout;
    uint32_t unit = l->swap_unit, i = q / 2;
    uint32_t a = l->slot[0].off, b = l->slot[1].off;
    uint32_t old_n = used(d->state.slot[0].size, unit, i);
    uint32_t new_n = used(d->state.slot[1].size, unit, i);
    *worked = 0;
    if (!(q & 1)) {
        if (!old_n)
            return NB_OK;
        *worked = 1;
        return move_unit(d, b + i * unit, a + i * unit, old_n);
    }
    if (new_n) {
        *worked = 1;
        return move_unit(d, a + i * unit, b + (i + 1) * unit, new_n);
    }
    /* A[i] still holds old unit i (saved in B[i]): clear it. */
    return old_n ? clear_unit(d, a + i * unit, worked) : NB_OK;
}

/* Undo forward phase `q` (during a revert slot 1 holds the old image's
 * description and slot 0 the new one's). */
static nb_err backward(struct nb_device *d, uint32_t q, int *worked)
{
    const struct nb_layout *l = &d->cfg.layout;
    uint32_t unit = l->swap_unit, i = q / 2;
    uint32_t a = l->slot[0].off, b = l->slot[1].off;
    uint32_t old_size = d->state.slot[1].size;
    uint32_t new_size = d->state.slot[0].size;
    *worked = 0;
    if (q & 1) {
        uint32_t n = used(old_size, unit, i);
        if (n) {
            *worked = 1;
            return move_unit(d, a + i * unit, b + i * unit, n);
        }
        /* A[i] holds new unit i, past the end of the old image. */
        return used(new_size, unit, i) ? clear_unit(d, a + i * unit, worked)
                                       : NB_OK;
    }
    /* Forward phase 0 wrote B[i] only when the old image reached unit i;
     * what it overwrote was new unit i-1 (B[0] was the free unit). */
    if (i == 0 || !used(old_size, unit, i))
        return NB_OK;
    uint32_t n = used(new_size, unit, i - 1);
    if (!n)
        return NB_OK;
    *worked = 1;
    return move_unit(d, b + i * unit, a + (i - 1) * unit, n);
}

/* The record that ends an op: the images have changed places. */
static void finish(struct nb_state *st)
{
    struct nb_slot_info a = st->slot[0], b = st->slot[1];
    if (st->op == NB_OP_SWAP) {
        st->slot[0] = b;
        st->slot[0].shifted = 0;
        st->slot[0].state = NB_SLOT_TRIAL;
        st->slot[0].attempts = 1;
        st->slot[1] = a;
        st->slot[1].shifted = 0;
        st->slot[1].attempts = 0;
        /* The confirmed image now lives in B until the trial confirms. */
        st->active = a.state == NB_SLOT_CONFIRMED ? 1 : 0;
    } else {
        st->slot[0] = b;
        st->slot[0].shifted = 0;
        st->slot[1] = a;
        st->slot[1].shifted = 1;
        st->slot[1].state = NB_SLOT_REJECTED;
        st->slot[1].attempts = 0;
        st->active = 0;
    }
    st->op = NB_OP_NONE;
    st->op_pos = 0;
}

nb_err nb_swap_resume(struct nb_device *d)
{
    struct nb_state *st = &d->state;
    if (d->cfg.layout.kind != NB_LAYOUT_AB_SWAP || st->op == NB_OP_NONE)
        return st->op == NB_OP_NONE ? NB_OK : NB_ERR_CORRUPT;
    uint32_t total = nb_swap_phases(d);
    if (st->op_pos > total)
        return NB_ERR_CORRUPT;
    while (st->op_pos < total) {
        int worked = 0;
        uint32_t k = st->op_pos;
        nb_err err = st->op == NB_OP_SWAP ? forward(d, k, &worked)
                                          : backward(d, total - 1 - k, &worked);
        if (err)
            return err;
        st->op_pos++;
        /* A phase with nothing to copy needs no record of its own. */
        if (worked && st->op_pos < total) {
            err = nb_device_commit(d);
            if (err)
                return err;
        }
    }
    finish(st);
    return nb_device_commit(d);
}

nb_err nb_swap_start(struct nb_device *d, uint8_t op)
{
    struct nb_state *st = &d->state;
    if (d->cfg.layout.kind != NB_LAYOUT_AB_SWAP || st->op != NB_OP_NONE)
        return NB_ERR_STATE;
    st->op = op;
    st->op_pos = 0;
    return NB_OK;
}
