/* boot.c - the boot decision: which verified image runs, and what the
 * journal must say before it does. */
#include <string.h>

#include "nb_boot.h"
#include "nb_swap.h"

/* Each pass of the decision commits one change that moves the state
 * towards a boot; this bounds the passes even on a corrupt state. */
#define NB_BOOT_MAX_PASSES 16

nb_err nb_device_commit(struct nb_device *d)
{
    return nb_journal_append(&d->journal, &d->state);
}

static nb_err check_config(const struct nb_boot_config *cfg,
                           struct nb_layout *layout)
{
    if (!cfg || nb_flash_check(cfg->flash) || nb_crypto_check(cfg->crypto) ||
        !cfg->crypto->ecdsa_p256_verify || !cfg->keystore ||
        !cfg->keystore->root_key || !cfg->identity)
        return NB_ERR_INVAL;
    uint32_t ws = cfg->flash->write_size;
    if (!cfg->buf || cfg->buf_size % ws != 0 ||
        cfg->buf_size < NB_JOURNAL_MAX_RECORD || !cfg->mbuf ||
        cfg->mbuf_size < 256)
        return NB_ERR_INVAL;
    *layout = cfg->layout;
    return nb_layout_check(layout, cfg->flash);
}

static nb_err setup(struct nb_device *d, const struct nb_boot_config *cfg)
{
    memset(d, 0, sizeof(*d));
    nb_err err = check_config(cfg, &d->cfg.layout);
    if (err)
        return err;
    struct nb_layout l = d->cfg.layout;
    d->cfg = *cfg;
    d->cfg.layout = l;
    return nb_journal_init(&d->journal, cfg->flash, l.journal.off,
                           l.journal.size);
}

nb_err nb_device_open(struct nb_device *d, const struct nb_boot_config *cfg)
{
    nb_err err = setup(d, cfg);
    if (err)
        return err;
    err = nb_journal_mount(&d->journal, &d->state);
    if (err)
        return err;
    if (d->state.layout != d->cfg.layout.kind)
        return NB_ERR_INVAL;
    if (nb_state_check(&d->state, nb_layout_slot_count(d->state.layout)))
        return NB_ERR_CORRUPT;
    return NB_OK;
}

nb_err nb_device_provision(struct nb_device *d,
                           const struct nb_boot_config *cfg,
                           uint8_t lifecycle, uint8_t attempt_limit)
{
    nb_err err = setup(d, cfg);
    if (err)
        return err;
    if (lifecycle != NB_LIFECYCLE_DEVELOPMENT &&
        lifecycle != NB_LIFECYCLE_PRODUCTION)
        return NB_ERR_INVAL;
    d->state.layout = d->cfg.layout.kind;
    d->state.lifecycle = lifecycle;
    d->state.attempt_limit =
        attempt_limit ? attempt_limit : NB_DEFAULT_ATTEMPT_LIMIT;
    return nb_journal_format(&d->journal, &d->state);
}

uint32_t nb_device_image_addr(const struct nb_device *d, unsigned i)
{
    const struct nb_layout *l = &d->cfg.layout;
    return l->slot[i].off + (d->state.slot[i].shifted ? l->swap_unit : 0);
}

nb_err nb_device_verify_slot(struct nb_device *d, unsigned i,
                             struct nb_image_info *info)
{
    const struct nb_layout *l = &d->cfg.layout;
    const struct nb_slot_info *si = &d->state.slot[i];
    if (i >= nb_layout_slot_count(l->kind))
        return NB_ERR_INVAL;
    struct nb_pkg_env env = {
        .flash = d->cfg.flash, .crypto = d->cfg.crypto,
        .keystore = d->cfg.keystore, .identity = d->cfg.identity,
        .rev = &d->state.rev, .buf = d->cfg.buf, .buf_size = d->cfg.buf_size,
        .mbuf = d->cfg.mbuf, .mbuf_size = d->cfg.mbuf_size};
    uint32_t area = l->slot[i].size - (si->shifted ? l->swap_unit : 0);
    nb_err err = nb_pkg_verify_slot(&env, nb_device_image_addr(d, i), area,
                                    &d->manifest, info);
    if (err)
        return err;
    /* The journal says which image belongs here; a different one (say, a
     * valid image half swapped) is not the image we decided to boot. */
    if (info->size != si->size || info->version != si->version ||
        info->svn != si->svn)
        return NB_ERR_CORRUPT;
    return NB_OK;
}

nb_err nb_device_apply_revocations(struct nb_device *d, const uint8_t *list,
                                   uint32_t len)
{
    struct nb_revocations rev;
    nb_err err = nb_revocation_verify(d->cfg.crypto, d->cfg.keystore,
                                      &d->state.rev, list, len, &rev);
    if (err)
        return err;
    d->state.rev = rev;
    return nb_device_commit(d);
}

/* Slots the CPU can run from: any slot when executing in place, only A
 * when it cannot remap. */
static int executable(const struct nb_device *d, unsigned i)
{
    uint8_t kind = d->cfg.layout.kind;
    if (kind == NB_LAYOUT_AB_SWAP || kind == NB_LAYOUT_SINGLE)
        return i == 0;
    return i < nb_layout_slot_count(kind);
}

static int find(const struct nb_device *d, uint8_t state)
{
    unsigned n = nb_layout_slot_count(d->cfg.layout.kind);
    for (unsigned i = 0; i < n; i++)
        if (d->state.slot[i].state == state)
            return (int)i;
    return -1;
}

/* Verify slot i and check its security version against the floor. */
static nb_err acceptable(struct nb_device *d, unsigned i,
                         struct nb_image_info *info, int *downgrade)
{
    nb_err err = nb_device_verify_slot(d, i, info);
    if (err)
        return err;
    return nb_state_check_svn(&d->state, info->svn, downgrade);
}

/* A flash failure aborts the decision (the caller resets and retries);
 * any other failure of a check means "this image must not boot". */
static int fatal(nb_err err)
{
    return err == NB_ERR_IO || err == NB_ERR_POWER || err == NB_ERR_INVAL ||
           err == NB_ERR_NOMEM;
}

static void booted(struct nb_device *d, unsigned i,
                   const struct nb_image_info *info, int downgrade,
                   struct nb_boot_result *res)
{
    res->outcome = NB_BOOT_IMAGE;
    res->slot = (uint8_t)i;
    res->state = d->state.slot[i].state;
    res->attempts = d->state.slot[i].attempts;
    res->downgrade = (uint8_t)downgrade;
    res->addr = nb_device_image_addr(d, i);
    res->image = *info;
}

/* Reject slot i; in the swap layout a rejected image in A gives A back to
 * the confirmed image in B, in the same record. */
static nb_err reject(struct nb_device *d, unsigned i)
{
    nb_err err = nb_state_set_slot(&d->state, i, NB_SLOT_REJECTED);
    if (err)
        return err;
    if (d->cfg.layout.kind == NB_LAYOUT_AB_SWAP && i == 0 &&
        d->state.slot[1].state == NB_SLOT_CONFIRMED &&
        !d->state.slot[1].shifted)
        nb_swap_start(d, NB_OP_REVERT);
    return nb_device_commit(d);
}

/* The trial slot: count one more boot, or give up on it. */
static nb_err boot_trial(struct nb_device *d, unsigned t, int fresh,
                         struct nb_boot_result *res, int *done)
{
    struct nb_slot_info *si = &d->state.slot[t];
    struct nb_image_info info;
    int down;
    nb_err err;
    if (!fresh) {
        if (si->attempts >= d->state.attempt_limit)
            return reject(d, t);
        si->attempts++;
        err = nb_device_commit(d);
        if (err)
            return err;
    }
    err = acceptable(d, t, &info, &down);
    if (fatal(err))
        return err;
    if (err)
        return reject(d, t);
    booted(d, t, &info, down, res);
    *done = 1;
    return NB_OK;
}

/* A pending slot: check it, then start its trial (swap layout: swap it
 * into A first). */
static nb_err start_trial(struct nb_device *d, unsigned p,
                          struct nb_boot_result *res, int *done)
{
    struct nb_image_info info;
    int down;
    nb_err err = acceptable(d, p, &info, &down);
    if (fatal(err))
        return err;
    if (err)
        return reject(d, p);
    if (d->cfg.layout.kind == NB_LAYOUT_AB_SWAP) {
        err = nb_swap_start(d, NB_OP_SWAP);
        return err ? err : nb_device_commit(d);
    }
    err = nb_state_set_slot(&d->state, p, NB_SLOT_TRIAL);
    if (err)
        return err;
    d->state.slot[p].attempts = 1;
    err = nb_device_commit(d);
    if (err)
        return err;
    booted(d, p, &info, down, res);
    *done = 1;
    return NB_OK;
}

/* No trial under way: boot the confirmed image, or fall back. */
static nb_err boot_confirmed(struct nb_device *d, struct nb_boot_result *res,
                             int *done)
{
    struct nb_state *st = &d->state;
    unsigned n = nb_layout_slot_count(d->cfg.layout.kind);
    struct nb_image_info info;
    int down;
    nb_err err;
    /* The active slot first, then any other confirmed one in slot order:
     * a previous image, and last the factory image (always slot 2). */
    for (unsigned k = 0; k <= n; k++) {
        unsigned i = k == 0 ? st->active : k - 1;
        if ((k > 0 && i == st->active) ||
            st->slot[i].state != NB_SLOT_CONFIRMED)
            continue;
        if (!executable(d, i)) {
            /* Swap layout: the confirmed image is in B; bring it back. */
            if (st->slot[0].state == NB_SLOT_CONFIRMED)
                return reject(d, 0);
            err = nb_swap_start(d, NB_OP_REVERT);
            return err ? err : nb_device_commit(d);
        }
        err = acceptable(d, i, &info, &down);
        if (fatal(err))
            return err;
        if (err == NB_ERR_ROLLBACK)
            continue; /* intact but below the floor: leave it be */
        if (err)
            return reject(d, i);
        if (st->active != i) {
            st->active = (uint8_t)i;
            err = nb_device_commit(d);
            if (err)
                return err;
        }
        booted(d, i, &info, down, res);
        *done = 1;
        return NB_OK;
    }
    /* Nothing confirmed boots: a complete download deserves a trial
     * before recovery. */
    int v = find(d, NB_SLOT_VERIFIED);
    if (v >= 0) {
        err = nb_state_set_slot(st, (unsigned)v, NB_SLOT_PENDING);
        return err ? err : nb_device_commit(d);
    }
    res->outcome = NB_BOOT_RECOVERY;
    *done = 1;
    return NB_OK;
}

nb_err nb_boot(struct nb_device *d, struct nb_boot_result *res)
{
    int done = 0, fresh = 0;
    memset(res, 0, sizeof(*res));
    for (int pass = 0; pass < NB_BOOT_MAX_PASSES && !done; pass++) {
        struct nb_state *st = &d->state;
        nb_err err;
        int t, p;
        if (st->op != NB_OP_NONE) {
            /* The record that ends a swap already counts trial boot 1. */
            fresh = st->op == NB_OP_SWAP;
            err = nb_swap_resume(d);
        } else if ((t = find(d, NB_SLOT_TRIAL)) >= 0) {
            err = boot_trial(d, (unsigned)t, fresh, res, &done);
        } else if ((p = find(d, NB_SLOT_PENDING)) >= 0) {
            err = start_trial(d, (unsigned)p, res, &done);
        } else {
            err = boot_confirmed(d, res, &done);
        }
        if (err)
            return err;
        if (st->op == NB_OP_NONE && find(d, NB_SLOT_TRIAL) < 0)
            fresh = 0;
    }
    if (!done)
        res->outcome = NB_BOOT_RECOVERY;
    return NB_OK;
}

nb_err nb_confirm(struct nb_device *d)
{
    struct nb_state *st = &d->state;
    int t = find(d, NB_SLOT_TRIAL);
    if (st->op != NB_OP_NONE)
        return NB_ERR_STATE;
    if (t < 0)
        return st->slot[st->active].state == NB_SLOT_CONFIRMED
                   ? NB_OK
                   : NB_ERR_STATE;
    nb_err err = nb_state_set_slot(st, (unsigned)t, NB_SLOT_CONFIRMED);
    if (err)
        return err;
    st->active = (uint8_t)t;
    /* The floor rises only here, so a failing trial can still fall back
     * to the image it replaced. */
    if (st->slot[t].svn > st->floor)
        st->floor = st->slot[t].svn;
    return nb_device_commit(d);
}

nb_err nb_device_set_lifecycle(struct nb_device *d, uint8_t lifecycle)
{
    if (d->state.lifecycle == lifecycle)
        return NB_OK;
    nb_err err = nb_state_set_lifecycle(&d->state, lifecycle);
    return err ? err : nb_device_commit(d);
}
