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

/* Erase the slot's sectors up to `addr` (exclusive) ahead of writing. */
static nb_err erase_to(struct nb_install *in, uint32_t addr)
{
    const struct nb_flash *f = in->dev->cfg.flash;
    while (in->erased < addr) {
        uint32_t start, size;
        nb_err err = nb_flash_sector(f, in->erased, &start, &size);
        if (!err)
            err = f->erase(f->ctx, start);
        if (err)
            return err;
        in->erased = start + size;
    }
    return NB_OK;
}

/* Program `n` bytes of the work buffer at `addr`, padded to the write
 * size with the erased value. */
static nb_err program(struct nb_install *in, uint32_t addr, uint32_t n)
{
    const struct nb_boot_config *c = &in->dev->cfg;
    uint32_t ws = c->flash->write_size;
    uint32_t padded = (n + ws - 1) / ws * ws, skip = 0;
    memset(c->buf + n, c->flash->erase_value, padded - n);
    /* After a resume, the part of a block below the floor is already on
     * flash (written from the same verified bytes): leave it. */
    if (addr < in->floor)
        skip = in->floor - addr < padded ? in->floor - addr : padded;
    if (skip == padded)
        return NB_OK;
    nb_err err = erase_to(in, addr + padded);
    return err ? err
               : c->flash->prog(c->flash->ctx, addr + skip, c->buf + skip,
                                padded - skip);
}

/* Record progress when the written payload has reached a new sector:
 * at most one journal append per sector. */
static nb_err save_progress(struct nb_install *in)
{
    const struct nb_flash *f = in->dev->cfg.flash;
    uint32_t pay = in->base + in->dev->manifest.payload_offset;
    uint32_t s_new, s_old, size;
    if (in->pos == in->dev->manifest.payload_size)
        return NB_OK; /* finish records VERIFIED instead */
    if (nb_flash_sector(f, pay + in->pos, &s_new, &size) ||
        nb_flash_sector(f, pay + in->saved, &s_old, &size) || s_new == s_old)
        return NB_OK;
    in->dev->state.progress = in->pos;
    in->saved = in->pos;
    return nb_device_commit(in->dev);
}

/* The container's first bytes: header, manifest, zero padding. */
static nb_err write_prefix(struct nb_install *in, uint32_t mlen)
{
    const struct nb_boot_config *c = &in->dev->cfg;
    uint32_t total = in->dev->manifest.payload_offset, fill = 0;
    for (uint32_t pos = 0; pos < total; pos++) {
        uint8_t b = 0;
        if (pos < 4)
            b = (uint8_t)(NB_PKG_MAGIC >> (8 * pos));
        else if (pos == 4)
            b = NB_PKG_VERSION;
        else if (pos >= 8 && pos < 12)
            b = (uint8_t)(mlen >> (8 * (pos - 8)));
        else if (pos >= NB_PKG_HDR_SIZE && pos < NB_PKG_HDR_SIZE + mlen)
            b = c->mbuf[pos - NB_PKG_HDR_SIZE];
        c->buf[fill++] = b;
        if (fill == c->buf_size || pos + 1 == total) {
            nb_err err = program(in, in->base + pos + 1 - fill, fill);
            if (err)
                return err;
            fill = 0;
        }
    }
    return NB_OK;
}

nb_err nb_install_begin(struct nb_install *in, struct nb_device *d,
                        const uint8_t *manifest, uint32_t manifest_len,
                        uint8_t target)
{
    struct nb_state *st = &d->state;
    const struct nb_boot_config *c = &d->cfg;
    const struct nb_layout *l = &c->layout;
    struct nb_manifest *m = &d->manifest;
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
    if (manifest_len > c->mbuf_size)
        return NB_ERR_NOSPC;
    if (manifest != c->mbuf)
        memmove(c->mbuf, manifest, manifest_len);
    err = nb_manifest_verify(c->crypto, c->keystore, &st->rev, c->mbuf,
                             manifest_len, m);
    if (err)
        return err;
    err = nb_manifest_check_device(m, c->mbuf, c->identity,
                                   nb_layout_capacity(l, slot));
    if (err)
        return err;
    if (target == NB_TARGET_UPDATE) {
        err = nb_state_check_svn(st, m->svn, &down);
        if (err)
            return err;
    }
    /* Each block is checked whole before it is written: a block larger
     * than this device's work buffer is a package it cannot take. */
    if (m->block_size > c->buf_size)
        return NB_ERR_UNSUPPORTED;
    if (m->payload_offset % c->flash->write_size)
        return NB_ERR_UNSUPPORTED;
    /* Everything refusable is refused above: only now touch the state. */
    err = nb_state_set_slot(st, slot, NB_SLOT_RECEIVING);
    if (err)
        return err;
    struct nb_slot_info *si = &st->slot[slot];
    si->size = m->payload_offset + m->payload_size;
    si->version = m->version;
    si->svn = m->svn;
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
    in->end = l->slot[slot].off + l->slot[slot].size;
    in->erased = in->base;
    in->info.size = si->size;
    in->info.version = m->version;
    in->info.svn = m->svn;
    memcpy(in->info.digest, m->digest, NB_SHA256_LEN);
    err = write_prefix(in, manifest_len);
    if (err)
        in->dev = NULL;
    return err;
}

nb_err nb_install_resume(struct nb_install *in, struct nb_device *d)
{
    struct nb_state *st = &d->state;
    const struct nb_boot_config *c = &d->cfg;
    const struct nb_layout *l = &c->layout;
    struct nb_manifest *m = &d->manifest;
    uint8_t hdr[NB_PKG_HDR_SIZE];
    uint32_t mlen, start, size;
    unsigned slot, n = nb_layout_slot_count(l->kind);
    int down = 0;
    nb_err err;
    memset(in, 0, sizeof(*in));
    if (st->op != NB_OP_NONE)
        return NB_ERR_STATE;
    for (slot = 0; slot < n; slot++)
        if (st->slot[slot].state == NB_SLOT_RECEIVING)
            break;
    if (slot == n)
        return NB_ERR_NOENT;
    uint32_t base = nb_device_image_addr(d, slot);
    if ((err = c->flash->read(c->flash->ctx, base, hdr, sizeof(hdr))))
        return err;
    if ((err = nb_pkg_parse_header(hdr, &mlen)))
        return err;
    if (mlen > c->mbuf_size)
        return NB_ERR_NOSPC;
    if ((err = c->flash->read(c->flash->ctx, base + NB_PKG_HDR_SIZE, c->mbuf,
                              mlen)))
        return err;
    /* The same checks as begin, on the manifest the slot holds. */
    if ((err = nb_manifest_verify(c->crypto, c->keystore, &st->rev, c->mbuf,
                                  mlen, m)))
        return err;
    if ((err = nb_manifest_check_device(m, c->mbuf, c->identity,
                                        nb_layout_capacity(l, slot))))
        return err;
    uint8_t target = l->kind == NB_LAYOUT_AB_FACTORY && slot == 2
                         ? NB_TARGET_FACTORY
                         : NB_TARGET_UPDATE;
    if (target == NB_TARGET_UPDATE &&
        (err = nb_state_check_svn(st, m->svn, &down)))
        return err;
    const struct nb_slot_info *si = &st->slot[slot];
    if (si->size != m->payload_offset + m->payload_size ||
        si->version != m->version || si->svn != m->svn ||
        st->progress > m->payload_size || m->block_size > c->buf_size ||
        st->progress % m->block_size)
        return NB_ERR_CORRUPT;
    /* Nothing written past the prefix yet: starting over costs less than
     * a sector, and begin rewrites a prefix a power cut may have torn. */
    if (st->progress == 0)
        return NB_ERR_NOENT;
    /* Back up to the sector holding the progress point: it may hold a
     * torn program, so it is erased again; the verified bytes before the
     * point are sent again and skipped when programming. */
    uint32_t pay = base + m->payload_offset;
    if ((err = nb_flash_sector(c->flash, pay + st->progress, &start, &size)))
        return err;
    uint32_t pos = start > pay ? (start - pay) / m->block_size * m->block_size
                               : 0;
    in->dev = d;
    in->slot = (uint8_t)slot;
    in->target = target;
    in->downgrade = (uint8_t)down;
    in->base = base;
    in->end = l->slot[slot].off + l->slot[slot].size;
    in->erased = start;
    in->floor = start;
    in->pos = pos;
    in->saved = pos;
    in->info.size = si->size;
    in->info.version = m->version;
    in->info.svn = m->svn;
    memcpy(in->info.digest, m->digest, NB_SHA256_LEN);
    /* That sector may also hold the end of the prefix: write it again. */
    if (start < pay && (err = write_prefix(in, mlen)))
        in->dev = NULL;
    return err;
}

/* The block in the work buffer is complete: check it, then write it. */
static nb_err commit_block(struct nb_install *in)
{
    struct nb_device *d = in->dev;
    const struct nb_manifest *m = &d->manifest;
    uint8_t digest[NB_SHA256_LEN];
    uint32_t index = in->pos / m->block_size;
    uint32_t n = in->fill;
    in->fill = 0;
    nb_err err = nb_sha256(d->cfg.crypto, d->cfg.buf, n, digest);
    if (err)
        return err;
    if (memcmp(digest, nb_manifest_block_digest(m, d->cfg.mbuf, index),
               NB_SHA256_LEN) != 0)
        return NB_ERR_DIGEST;
    err = program(in, in->base + m->payload_offset + in->pos, n);
    if (err)
        return err;
    in->pos += n;
    return save_progress(in);
}

nb_err nb_install_write(struct nb_install *in, const void *data,
                        uint32_t len)
{
    const uint8_t *p = data;
    if (!in->dev)
        return NB_ERR_STATE;
    const struct nb_manifest *m = &in->dev->manifest;
    if (len > m->payload_size - in->pos - in->fill)
        return NB_ERR_RANGE;
    while (len) {
        uint32_t block_start = in->pos;
        uint32_t block_len = m->payload_size - block_start < m->block_size
                                 ? m->payload_size - block_start
                                 : m->block_size;
        uint32_t room = block_len - in->fill;
        uint32_t n = len < room ? len : room;
        memcpy(in->dev->cfg.buf + in->fill, p, n);
        in->fill += n;
        p += n;
        len -= n;
        if (in->fill == block_len) {
            nb_err err = commit_block(in);
            if (err)
                return err;
        }
    }
    return NB_OK;
}

uint32_t nb_install_offset(const struct nb_install *in)
{
    /* Bytes of a block not yet complete count: a link that dropped
     * mid-block continues where it stopped. */
    return in->pos + in->fill;
}

nb_err nb_install_finish(struct nb_install *in)
{
    struct nb_device *d = in->dev;
    struct nb_image_info info;
    if (!d)
        return NB_ERR_STATE;
    if (in->fill != 0 || in->pos != d->manifest.payload_size)
        return NB_ERR_STATE;
    /* Nothing may follow the payload: the rest of the slot is erased. */
    nb_err err = erase_to(in, in->end);
    if (err)
        return err;
    /* Read back what the flash holds now, not what we meant to write. */
    err = nb_device_verify_slot(d, in->slot, &info);
    if (err)
        return err;
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
