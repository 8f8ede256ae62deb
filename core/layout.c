/* layout.c - checking and planning where the journal and slots live. */
#include <string.h>

#include "nb_layout.h"

unsigned nb_layout_slot_count(uint8_t kind)
{
    switch (kind) {
    case NB_LAYOUT_AB:
    case NB_LAYOUT_AB_SWAP: return 2;
    case NB_LAYOUT_AB_FACTORY: return 3;
    case NB_LAYOUT_SINGLE: return 1;
    }
    return 0;
}

static int overlap(const struct nb_area *a, const struct nb_area *b)
{
    return a->off < b->off + b->size && b->off < a->off + a->size;
}

/* Every `unit` bytes of the area starts on a sector boundary. */
static int unit_aligned(const struct nb_flash *f, const struct nb_area *a,
                        uint32_t unit)
{
    if (a->size % unit)
        return 0;
    for (uint32_t o = 0; o < a->size; o += unit)
        if (!nb_flash_aligned(f, a->off + o, unit))
            return 0;
    return 1;
}

nb_err nb_layout_check(struct nb_layout *l, const struct nb_flash *f)
{
    unsigned n = nb_layout_slot_count(l->kind);
    if (n == 0)
        return NB_ERR_INVAL;
    if (l->journal.size == 0 ||
        !nb_flash_aligned(f, l->journal.off, l->journal.size))
        return NB_ERR_INVAL;
    if (nb_flash_sector_count(f, l->journal.off, l->journal.size) < 2)
        return NB_ERR_INVAL;
    for (unsigned i = 0; i < n; i++) {
        const struct nb_area *a = &l->slot[i];
        if (a->size == 0 || !nb_flash_aligned(f, a->off, a->size))
            return NB_ERR_INVAL;
        if (overlap(a, &l->journal))
            return NB_ERR_INVAL;
        for (unsigned k = 0; k < i; k++)
            if (overlap(a, &l->slot[k]))
                return NB_ERR_INVAL;
    }
    for (unsigned i = n; i < NB_MAX_SLOTS; i++)
        if (l->slot[i].size != 0)
            return NB_ERR_INVAL;
    l->swap_unit = 0;
    if (l->kind == NB_LAYOUT_AB_SWAP) {
        uint32_t ua = nb_flash_max_sector(f, l->slot[0].off, l->slot[0].size);
        uint32_t ub = nb_flash_max_sector(f, l->slot[1].off, l->slot[1].size);
        uint32_t unit = ua > ub ? ua : ub;
        if (!unit_aligned(f, &l->slot[0], unit) ||
            !unit_aligned(f, &l->slot[1], unit))
            return NB_ERR_INVAL;
        /* B holds A's image at +1 unit while staged, so it needs a spare. */
        if (l->slot[1].size < l->slot[0].size + unit)
            return NB_ERR_INVAL;
        l->swap_unit = unit;
    }
    return NB_OK;
}

/* Smallest sector-aligned length >= min starting at `off`; 0 when the
 * flash ends first. */
static uint32_t take(const struct nb_flash *f, uint32_t off, uint32_t min)
{
    uint32_t a = off, start, size;
    if (min == 0)
        min = 1;
    while (a - off < min) {
        if (nb_flash_sector(f, a, &start, &size))
            return 0;
        a = start + size;
    }
    return a - off;
}

static uint32_t round_up(uint32_t v, uint32_t m)
{
    return (v + m - 1) / m * m;
}

/* Swap needs A and B cut into equal units of whole sectors. With mixed
 * sector sizes that may not work from the first free sector, so try each
 * sector boundary in turn, with the unit the largest sector in reach. */
static nb_err plan_swap(struct nb_layout *l, const struct nb_flash *f,
                        uint32_t off, uint32_t slot_size)
{
    uint32_t total = nb_flash_size(f), start, size;
    for (int tries = 0; tries < 64 && off < total; tries++) {
        uint32_t span = take(f, off, slot_size);
        uint32_t unit = span ? nb_flash_max_sector(f, off, span) : 0;
        for (int round = 0; round < 4 && unit; round++) {
            uint32_t a = round_up(slot_size, unit);
            uint32_t b = a + unit;
            if ((uint64_t)off + a + b > total)
                return NB_ERR_NOSPC;
            l->slot[0].off = off;
            l->slot[0].size = a;
            l->slot[1].off = off + a;
            l->slot[1].size = b;
            if (nb_layout_check(l, f) == NB_OK)
                return NB_OK;
            uint32_t wider = nb_flash_max_sector(f, off, a + b);
            if (wider <= unit)
                break;
            unit = wider;
        }
        if (nb_flash_sector(f, off, &start, &size))
            break;
        off = start + size;
    }
    memset(l->slot, 0, sizeof(l->slot));
    return NB_ERR_NOSPC;
}

nb_err nb_layout_plan(struct nb_layout *l, const struct nb_flash *f,
                      uint8_t kind, uint32_t slot_size, uint32_t journal_min)
{
    unsigned n = nb_layout_slot_count(kind);
    uint32_t start, size;
    memset(l, 0, sizeof(*l));
    if (n == 0 || slot_size == 0)
        return NB_ERR_INVAL;
    l->kind = kind;
    /* Journal: at least two sectors. */
    if (nb_flash_sector(f, 0, &start, &size))
        return NB_ERR_INVAL;
    uint32_t jlen = take(f, 0, size + 1);
    if (jlen && jlen < journal_min)
        jlen = take(f, 0, journal_min);
    if (!jlen)
        return NB_ERR_NOSPC;
    l->journal.off = 0;
    l->journal.size = jlen;
    uint32_t off = jlen;
    if (kind == NB_LAYOUT_AB_SWAP)
        return plan_swap(l, f, off, slot_size);
    for (unsigned i = 0; i < n; i++) {
        uint32_t s = take(f, off, slot_size);
        if (!s)
            return NB_ERR_NOSPC;
        l->slot[i].off = off;
        l->slot[i].size = s;
        off += s;
    }
    return nb_layout_check(l, f) == NB_OK ? NB_OK : NB_ERR_INVAL;
}

uint32_t nb_layout_capacity(const struct nb_layout *l, unsigned i)
{
    if (i >= nb_layout_slot_count(l->kind))
        return 0;
    if (l->kind == NB_LAYOUT_AB_SWAP)
        return l->slot[0].size; /* A executes it; B holds it shifted */
    return l->slot[i].size;
}
