/* journal.c - append-only boot state records; see nb_journal.h and
 * docs/journal-format.md for the byte layout. */
#include <string.h>

#include "nb_crc32.h"
#include "nb_journal.h"

/* A program that reports failure, or reads back wrong, costs the rest of
 * its sector; after this many in a row the flash is treated as failed. */
#define NB_JOURNAL_TRIES 4

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Sequence numbers wrap; compare as littlefs does. */
static int seq_newer(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) > 0;
}

void nb_journal_encode(const struct nb_state *st, uint8_t erase_value,
                       uint8_t *rec, uint32_t rec_size)
{
    memset(rec, erase_value, rec_size);
    put32(rec + 0, NB_JOURNAL_MAGIC);
    put32(rec + 4, st->seq);
    rec[8] = NB_JOURNAL_FORMAT;
    rec[9] = st->layout;
    rec[10] = st->lifecycle;
    rec[11] = st->active;
    rec[12] = st->attempt_limit;
    rec[13] = st->op;
    put16(rec + 14, st->op_pos);
    put32(rec + 16, st->floor);
    put32(rec + 20, st->progress);
    for (unsigned i = 0; i < NB_MAX_SLOTS; i++) {
        uint8_t *s = rec + 24 + 16 * i;
        const struct nb_slot_info *si = &st->slot[i];
        s[0] = si->state;
        s[1] = si->attempts;
        s[2] = si->shifted;
        s[3] = 0;
        put32(s + 4, si->size);
        put32(s + 8, si->version);
        put32(s + 12, si->svn);
    }
    put32(rec + 72, st->rev.seq);
    rec[76] = st->rev.count;
    rec[77] = rec[78] = rec[79] = 0;
    for (unsigned i = 0; i < NB_MAX_REVOKED; i++)
        memcpy(rec + 80 + NB_KEY_ID_LEN * i, st->rev.kid[i], NB_KEY_ID_LEN);
    put32(rec + rec_size - 4, nb_crc32(0, rec, rec_size - 4));
}

nb_err nb_journal_decode(const uint8_t *rec, uint32_t rec_size,
                         struct nb_state *st)
{
    if (rec_size < NB_JOURNAL_BODY_SIZE || rec_size > NB_JOURNAL_MAX_RECORD)
        return NB_ERR_INVAL;
    if (get32(rec) != NB_JOURNAL_MAGIC || rec[8] != NB_JOURNAL_FORMAT)
        return NB_ERR_CORRUPT;
    if (get32(rec + rec_size - 4) != nb_crc32(0, rec, rec_size - 4))
        return NB_ERR_CORRUPT;
    memset(st, 0, sizeof(*st));
    st->seq = get32(rec + 4);
    st->layout = rec[9];
    st->lifecycle = rec[10];
    st->active = rec[11];
    st->attempt_limit = rec[12];
    st->op = rec[13];
    st->op_pos = get16(rec + 14);
    st->floor = get32(rec + 16);
    st->progress = get32(rec + 20);
    for (unsigned i = 0; i < NB_MAX_SLOTS; i++) {
        const uint8_t *s = rec + 24 + 16 * i;
        struct nb_slot_info *si = &st->slot[i];
        si->state = s[0];
        si->attempts = s[1];
        si->shifted = s[2];
        si->size = get32(s + 4);
        si->version = get32(s + 8);
        si->svn = get32(s + 12);
    }
    st->rev.seq = get32(rec + 72);
    st->rev.count = rec[76];
    if (st->rev.count > NB_MAX_REVOKED)
        return NB_ERR_CORRUPT;
    for (unsigned i = 0; i < NB_MAX_REVOKED; i++)
        memcpy(st->rev.kid[i], rec + 80 + NB_KEY_ID_LEN * i, NB_KEY_ID_LEN);
    return NB_OK;
}

nb_err nb_journal_init(struct nb_journal *j, const struct nb_flash *flash,
                       uint32_t off, uint32_t len)
{
    uint32_t start, size, sectors = 0;
    memset(j, 0, sizeof(*j));
    if (!nb_flash_aligned(flash, off, len) || len == 0)
        return NB_ERR_INVAL;
    uint32_t ws = flash->write_size;
    j->rec_size = (NB_JOURNAL_BODY_SIZE + ws - 1) / ws * ws;
    for (uint32_t a = off; a - off < len; a = start + size) {
        nb_err err = nb_flash_sector(flash, a, &start, &size);
        if (err)
            return err;
        if (size < j->rec_size)
            return NB_ERR_INVAL;
        sectors++;
    }
    /* With one sector, compaction would erase the only valid record. */
    if (sectors < 2)
        return NB_ERR_INVAL;
    j->flash = flash;
    j->off = off;
    j->len = len;
    return NB_OK;
}

/* Start of the sector after the one starting at `s`, wrapping. */
static uint32_t next_sector(const struct nb_journal *j, uint32_t s)
{
    uint32_t start, size;
    nb_flash_sector(j->flash, s, &start, &size);
    return start + size - j->off >= j->len ? j->off : start + size;
}

static uint32_t sector_end(const struct nb_journal *j, uint32_t s)
{
    uint32_t start, size;
    nb_flash_sector(j->flash, s, &start, &size);
    return start + size;
}

static int is_erased(const uint8_t *p, uint32_t n, uint8_t ev)
{
    for (uint32_t i = 0; i < n; i++)
        if (p[i] != ev)
            return 0;
    return 1;
}

nb_err nb_journal_mount(struct nb_journal *j, struct nb_state *st)
{
    uint8_t rec[NB_JOURNAL_MAX_RECORD];
    struct nb_state cand;
    uint32_t s = j->off;
    int have = 0;
    if (!j->flash)
        return NB_ERR_INVAL;
    j->mounted = 0;
    do {
        uint32_t end = sector_end(j, s), last_used = s;
        int best_here = 0;
        for (uint32_t a = s; a + j->rec_size <= end; a += j->rec_size) {
            nb_err err = j->flash->read(j->flash->ctx, a, rec, j->rec_size);
            if (err)
                return err;
            if (is_erased(rec, j->rec_size, j->flash->erase_value))
                continue;
            last_used = a + j->rec_size;
            if (nb_journal_decode(rec, j->rec_size, &cand) != NB_OK)
                continue;
            if (!have || seq_newer(cand.seq, st->seq)) {
                *st = cand;
                have = 1;
                best_here = 1;
            }
        }
        if (best_here) {
            j->cur_sector = s;
            j->next = last_used;
        }
        s = next_sector(j, s);
    } while (s != j->off);
    if (!have)
        return NB_ERR_NOENT;
    j->seq = st->seq;
    j->mounted = 1;
    return NB_OK;
}

nb_err nb_journal_format(struct nb_journal *j, struct nb_state *st)
{
    nb_err err = nb_flash_erase_range(j->flash, j->off, j->len);
    if (err)
        return err;
    j->cur_sector = j->off;
    j->next = j->off;
    j->seq = 0;
    j->mounted = 1;
    return nb_journal_append(j, st);
}

/* Program one record at `a`: everything but the last write unit, then the
 * last unit (which holds the CRC), then read it back. */
static nb_err write_record(struct nb_journal *j, uint32_t a,
                           const uint8_t *rec)
{
    const struct nb_flash *f = j->flash;
    uint32_t ws = f->write_size, body = j->rec_size - ws;
    uint8_t back[NB_JOURNAL_MAX_RECORD];
    nb_err err;
    if (body) {
        err = f->prog(f->ctx, a, rec, body);
        if (err)
            return err;
    }
    err = f->prog(f->ctx, a + body, rec + body, ws);
    if (err)
        return err;
    err = f->read(f->ctx, a, back, j->rec_size);
    if (err)
        return err;
    return memcmp(back, rec, j->rec_size) ? NB_ERR_IO : NB_OK;
}

nb_err nb_journal_append(struct nb_journal *j, struct nb_state *st)
{
    uint8_t rec[NB_JOURNAL_MAX_RECORD];
    if (!j->mounted)
        return NB_ERR_STATE;
    st->seq = j->seq + 1;
    nb_journal_encode(st, j->flash->erase_value, rec, j->rec_size);
    uint32_t sector = j->cur_sector, a = j->next;
    for (int tries = 0; tries < NB_JOURNAL_TRIES; tries++) {
        nb_err err;
        if (a + j->rec_size > sector_end(j, sector) || a < sector) {
            /* Compaction: the sector we erase never holds the newest
             * record, which stays in cur_sector until this append lands. */
            sector = next_sector(j, sector);
            if (sector == j->cur_sector)
                return NB_ERR_IO;
            err = nb_flash_erase_range(j->flash, sector,
                                       sector_end(j, sector) - sector);
            if (err == NB_ERR_IO) {
                a = sector_end(j, sector); /* skip a bad sector */
                continue;
            }
            if (err)
                return err;
            a = sector;
            j->compactions++;
        }
        err = write_record(j, a, rec);
        if (err == NB_OK) {
            j->cur_sector = sector;
            j->next = a + j->rec_size;
            j->seq = st->seq;
            j->appends++;
            return NB_OK;
        }
        if (err != NB_ERR_IO)
            return err;
        /* This sector failed to take a record (and may hold part of one):
         * move on to the next sector, which is safe because the newest
         * valid record stays where it is until a new one lands. */
        a = sector_end(j, sector);
    }
    return NB_ERR_IO;
}
