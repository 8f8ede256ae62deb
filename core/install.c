/* install.c - streaming an image into the inactive slot, see nb_install.h. */
#include <string.h>

#include "nb_install.h"

/* The slot an update goes to: never the one holding the confirmed image
 * (it is our way back), never the one on trial (it is running). Among the
 * rest, prefer one that does not hold a previous confirmed image. */
static nb_err pick_slot(const struct nb_device *d, unsigned *slot)
{
    const struct nb_state *st = &d->state;
    switch (d->cfg.layout.kind) {
    case NB_LAYOUT_SINGLE:
        /* One slot: the recovery loader overwrites it; until the new
         * image verifies, the device stays in recovery. */
        if (st->slot[0].state == NB_SLOT_TRIAL)
            return NB_ERR_STATE;
        *slot = 0;
        return NB_OK;
    case NB_LAYOUT_AB_SWAP:
        /* During a trial the confirmed image lives in B. */
        if (st->slot[0].state == NB_SLOT_TRIAL || st->active == 1)
            return NB_ERR_STATE;
        *slot = 1;
        return NB_OK;
    case NB_LAYOUT_AB:
    case NB_LAYOUT_AB_FACTORY: {
        int best = -1;
        for (unsigned i = 0; i < 2; i++) {
            uint8_t s = st->slot[i].state;
            if (s == NB_SLOT_TRIAL)
                return NB_ERR_STATE;
            if (i == st->active && s == NB_SLOT_CONFIRMED)
                continue;
            if (best < 0 || (st->slot[best].state == NB_SLOT_CONFIRMED &&
                             s != NB_SLOT_CONFIRMED))
                best = (int)i;
        }
        if (best < 0)
            return NB_ERR_STATE;
        *slot = (unsigned)best;
        return NB_OK;
    }
    }
    return NB_ERR_INVAL;
}

nb_err nb_install_begin(struct nb_install *in, struct nb_device *d,
                        const uint8_t hdr[NB_IMAGE_HDR_SIZE], uint8_t target)
{
    struct nb_state *st = &d->state;
    const struct nb_layout *l = &d->cfg.layout;
    unsigned slot;
    int down = 0;
    nb_err err;
    memset(in, 0, sizeof(*in));
    if (st->op != NB_OP_NONE)
        return NB_ERR_STATE; /* a swap must finish (boot) first */
    if (target == NB_TARGET_FACTORY) {
        if (l->kind != NB_LAYOUT_AB_FACTORY ||
            st->slot[2].state == NB_SLOT_CONFIRMED)
            return NB_ERR_DENIED;
        slot = 2;
    } else if (target == NB_TARGET_UPDATE) {
        err = pick_slot(d, &slot);
        if (err)
            return err;
    } else {
        return NB_ERR_INVAL;
    }
    err = nb_image_parse_header(hdr, nb_layout_capacity(l, slot), &in->info);
    if (err)
        return err;
    if (target == NB_TARGET_UPDATE) {
        err = nb_state_check_svn(st, in->info.svn, &down);
        if (err)
            return err;
    }
    /* Everything refusable is refused above: only now touch the state. */
    err = nb_state_set_slot(st, slot, NB_SLOT_RECEIVING);
    if (err)
        return err;
    struct nb_slot_info *si = &st->slot[slot];
    si->size = in->info.size;
    si->version = in->info.version;
    si->svn = in->info.svn;
    si->shifted = l->kind == NB_LAYOUT_AB_SWAP && slot == 1;
    st->progress = 0;
    err = nb_device_commit(d);
    if (err)
        return err;
    in->dev = d;
    in->slot = (uint8_t)slot;
    in->target = target;
    in->downgrade = (uint8_t)down;
    in->base = nb_device_image_addr(d, slot);
    in->erased = in->base;
    return NB_OK;
}

/* Program the buffered bytes at the current position, erasing the sectors
 * they reach first. */
static nb_err flush(struct nb_install *in)
{
    const struct nb_boot_config *c = &in->dev->cfg;
    const struct nb_flash *f = c->flash;
    uint32_t ws = f->write_size;
    uint32_t n = (in->fill + ws - 1) / ws * ws;
    uint32_t addr = in->base + in->pos - in->fill;
    if (in->fill == 0)
        return NB_OK;
    memset(c->buf + in->fill, f->erase_value, n - in->fill);
    while (in->erased < addr + n) {
        uint32_t start, size;
        nb_err err = nb_flash_sector(f, in->erased, &start, &size);
        if (!err)
            err = f->erase(f->ctx, start);
        if (err)
            return err;
        in->erased = start + size;
    }
    in->fill = 0;
    return f->prog(f->ctx, addr, c->buf, n);
}

nb_err nb_install_write(struct nb_install *in, const void *data,
                        uint32_t len)
{
    const uint8_t *p = data;
    if (!in->dev)
        return NB_ERR_STATE;
    if (len > in->info.size - in->pos)
        return NB_ERR_RANGE;
    while (len) {
        uint32_t room = in->dev->cfg.buf_size - in->fill;
        uint32_t n = len < room ? len : room;
        memcpy(in->dev->cfg.buf + in->fill, p, n);
        in->fill += n;
        in->pos += n;
        p += n;
        len -= n;
        if (in->fill == in->dev->cfg.buf_size) {
            nb_err err = flush(in);
            if (err)
                return err;
        }
    }
    return NB_OK;
}

nb_err nb_install_finish(struct nb_install *in)
{
    struct nb_device *d = in->dev;
    struct nb_image_info info;
    if (!d)
        return NB_ERR_STATE;
    if (in->pos != in->info.size)
        return NB_ERR_STATE;
    nb_err err = flush(in);
    if (err)
        return err;
    /* Read back what the flash holds now, not what we meant to write. */
    err = nb_device_verify_slot(d, in->slot, &info);
    if (err)
        return err;
    if (memcmp(info.digest, in->info.digest, NB_SHA256_LEN) != 0)
        return NB_ERR_CORRUPT;
    err = nb_state_set_slot(&d->state, in->slot, NB_SLOT_VERIFIED);
    if (!err && in->target == NB_TARGET_FACTORY)
        err = nb_state_set_slot(&d->state, in->slot, NB_SLOT_CONFIRMED);
    if (err)
        return err;
    d->state.progress = 0;
    in->dev = NULL;
    return nb_device_commit(d);
}

nb_err nb_install_set_pending(struct nb_device *d)
{
    unsigned n = nb_layout_slot_count(d->cfg.layout.kind);
    for (unsigned i = 0; i < n; i++) {
        if (d->cfg.layout.kind == NB_LAYOUT_AB_FACTORY && i == 2)
            continue;
        if (d->state.slot[i].state == NB_SLOT_VERIFIED) {
            nb_err err = nb_state_set_slot(&d->state, i, NB_SLOT_PENDING);
            return err ? err : nb_device_commit(d);
        }
    }
    return NB_ERR_STATE;
}
