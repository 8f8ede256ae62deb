/* test_journal.c - the power-safe boot journal.
 *
 * Record encode/decode (revocation lists of 0 to 8 key IDs included, at
 * their documented offsets); the revocation list across appends,
 * remounts and compaction; mount of blank and garbage areas; format + many
 * appends with a remount (a reset) after each; compaction across 2 and 3
 * sectors, uniform and mixed; every power-cut point (clean and torn,
 * several seeds) of a plain append and of an append that compacts; bad
 * program slots, bad program and erase sectors; bit rot in the newest
 * record; sequence numbers across the 32-bit wrap.
 *
 * Shapes: write sizes 1, 8, 32 x erase values 0xFF, 0x00 x areas of
 * 2 x 4 KiB, 3 x 4 KiB, {4 KiB, 8 KiB} and {4 KiB, 8 KiB, 4 KiB}. A
 * failure names its case as "shape/position/cut/torn/seed".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "nb_crc32.h"
#include "nb_journal.h"
#include "testlib.h"

#define SEEDS 5

static unsigned long cases; /* power-cut cases run (reported) */

struct shape {
    uint32_t ws;
    uint8_t ev;
    const char *area; /* "4k2", "4k3", "mix2", "mix3" */
};

static const uint32_t shape_ws[] = {1, 8, 32};
static const uint8_t shape_ev[] = {0xFF, 0x00};
static const char *const shape_area[] = {"4k2", "4k3", "mix2", "mix3"};
#define SHAPES (3 * 2 * 4)

static struct shape shape_n(unsigned n)
{
    struct shape s;
    s.ws = shape_ws[n % 3];
    s.ev = shape_ev[(n / 3) % 2];
    s.area = shape_area[n / 6];
    return s;
}

static struct nb_simflash_geometry shape_geo(const struct shape *s)
{
    struct nb_simflash_geometry g;
    if (!strcmp(s->area, "4k2"))
        return tl_geo(s->ws, s->ev, 2, 4096);
    if (!strcmp(s->area, "4k3"))
        return tl_geo(s->ws, s->ev, 3, 4096);
    g = tl_geo(s->ws, s->ev, 1, 4096);
    tl_geo_add(&g, 1, 8192);
    if (!strcmp(s->area, "mix3"))
        tl_geo_add(&g, 1, 4096);
    return g;
}

/* A journal over a whole simulated device. */
struct jfx {
    struct shape shape;
    struct nb_simflash *sim, *snap;
    struct nb_flash f;
    struct nb_journal j;
    uint32_t size;
    char id[96];
};

static void jfx_open(struct jfx *x, const struct shape *s)
{
    struct nb_simflash_geometry g = shape_geo(s);
    memset(x, 0, sizeof(*x));
    x->shape = *s;
    assert_int_equal(nb_simflash_create_mem(&x->sim, &g), NB_OK);
    assert_int_equal(nb_simflash_create_mem(&x->snap, &g), NB_OK);
    nb_simflash_interface(x->sim, &x->f);
    x->size = nb_simflash_size(x->sim);
    assert_int_equal(nb_journal_init(&x->j, &x->f, 0, x->size), NB_OK);
}

static void jfx_close(struct jfx *x)
{
    struct nb_simflash_stats st;
    nb_simflash_stats(x->sim, &st);
    if (st.violations)
        fail_msg("%s: %u strict-NOR violations", x->shape.area,
                 (unsigned)st.violations);
    nb_simflash_close(x->sim);
    nb_simflash_close(x->snap);
}

/* A state that differs in every field from its neighbours. */
static struct nb_state mkstate(uint32_t i)
{
    struct nb_state st;
    memset(&st, 0, sizeof(st));
    st.layout = (uint8_t)(1 + i % 4);
    st.lifecycle = (uint8_t)(1 + (i / 4) % 2);
    st.active = (uint8_t)(i % 3);
    st.attempt_limit = (uint8_t)(1 + i % 5);
    st.op = (uint8_t)(i % 3);
    st.op_pos = (uint16_t)(i * 7u);
    st.floor = i * 13u;
    st.progress = i * 1000u + 1u;
    for (unsigned k = 0; k < NB_MAX_SLOTS; k++) {
        st.slot[k].state = (uint8_t)((i + k) % 7);
        st.slot[k].attempts = (uint8_t)((i + k) % 4);
        st.slot[k].shifted = (uint8_t)((i >> k) & 1u);
        st.slot[k].size = i * 100u + k;
        st.slot[k].version = i ^ (k << 24);
        st.slot[k].svn = i + k;
    }
    /* The revocation list: 0..8 key IDs; the unused entries hold bytes
     * too (the record keeps all 8). */
    st.rev.seq = i * 7u + 3u;
    st.rev.count = (uint8_t)(i % (NB_MAX_REVOKED + 1));
    for (unsigned k = 0; k < NB_MAX_REVOKED; k++)
        for (unsigned b = 0; b < NB_KEY_ID_LEN; b++)
            st.rev.kid[k][b] = (uint8_t)(i * 31u + k * 8u + b);
    return st;
}

/* Equal in everything but seq. */
static int st_eq(const struct nb_state *a, const struct nb_state *b)
{
    if (a->layout != b->layout || a->lifecycle != b->lifecycle ||
        a->active != b->active || a->attempt_limit != b->attempt_limit ||
        a->op != b->op || a->op_pos != b->op_pos || a->floor != b->floor ||
        a->progress != b->progress)
        return 0;
    for (unsigned k = 0; k < NB_MAX_SLOTS; k++) {
        const struct nb_slot_info *p = &a->slot[k], *q = &b->slot[k];
        if (p->state != q->state || p->attempts != q->attempts ||
            p->shifted != q->shifted || p->size != q->size ||
            p->version != q->version || p->svn != q->svn)
            return 0;
    }
    return a->rev.seq == b->rev.seq && a->rev.count == b->rev.count &&
           memcmp(a->rev.kid, b->rev.kid, sizeof(a->rev.kid)) == 0;
}

#define CHECK(x, cond)                                                     \
    do {                                                                   \
        if (!(cond))                                                       \
            fail_msg("case %s: %s (line %d)", (x)->id, #cond, __LINE__);   \
    } while (0)

/* A reset: a fresh context mounted from flash. */
static nb_err remount(struct jfx *x, struct nb_state *st)
{
    nb_err err = nb_journal_init(&x->j, &x->f, 0, x->size);
    return err ? err : nb_journal_mount(&x->j, st);
}

/* Remount and expect exactly `want` with sequence number `seq`. */
static void expect_state(struct jfx *x, uint32_t want, uint32_t seq)
{
    struct nb_state got, w = mkstate(want);
    CHECK(x, remount(x, &got) == NB_OK);
    CHECK(x, st_eq(&got, &w));
    CHECK(x, got.seq == seq);
    CHECK(x, x->j.seq == seq);
}

static uint32_t sector_end_of(struct jfx *x, uint32_t addr)
{
    uint32_t start, size;
    assert_int_equal(nb_flash_sector(&x->f, addr, &start, &size), NB_OK);
    return start + size;
}

/* The next append needs a new sector. */
static int compacts_next(struct jfx *x)
{
    return x->j.next + x->j.rec_size > sector_end_of(x, x->j.cur_sector);
}

static uint32_t area_records(struct jfx *x)
{
    uint32_t n = 0, start, size;
    for (uint32_t a = 0; a < x->size; a = start + size) {
        assert_int_equal(nb_flash_sector(&x->f, a, &start, &size), NB_OK);
        n += size / x->j.rec_size;
    }
    return n;
}

/* ----------------------------------------------------- encode / decode */

static void encode_decode(void **state)
{
    (void)state;
    /* The record sizes of write sizes 1 (148), 4 (148), 8 (152) and 32
     * (160): the body rounded up to the write size. */
    static const uint32_t sizes[] = {NB_JOURNAL_BODY_SIZE, 152,
                                     NB_JOURNAL_MAX_RECORD};
    uint8_t rec[NB_JOURNAL_MAX_RECORD];
    assert_int_equal(NB_JOURNAL_BODY_SIZE, 148);
    assert_int_equal(NB_JOURNAL_MAX_RECORD, 160);
    for (unsigned s = 0; s < 3; s++)
        for (unsigned e = 0; e < 2; e++)
            for (uint32_t n = 0; n <= NB_MAX_REVOKED; n++) {
                uint32_t rs = sizes[s];
                struct nb_state st = mkstate(72 + 9 * s + n), got;
                assert_int_equal(st.rev.count, n);
                st.seq = 0x89ABCDEFu + s;
                nb_journal_encode(&st, shape_ev[e], rec, rs);
                assert_int_equal(nb_journal_decode(rec, rs, &got), NB_OK);
                assert_true(st_eq(&st, &got));
                assert_int_equal(got.seq, st.seq);
                /* The revocation list at its documented place: sequence
                 * number at 72, count at 76, then 3 zero bytes and the 8
                 * key IDs at 80. */
                assert_int_equal((uint32_t)rec[72] | rec[73] << 8 |
                                     rec[74] << 16 | (uint32_t)rec[75] << 24,
                                 st.rev.seq);
                assert_int_equal(rec[76], n);
                assert_true(!rec[77] && !rec[78] && !rec[79]);
                assert_memory_equal(rec + 80, st.rev.kid,
                                    NB_MAX_REVOKED * NB_KEY_ID_LEN);
                /* Padding between the body and the CRC is erased. */
                for (uint32_t i = 144; i < rs - 4; i++)
                    assert_int_equal(rec[i], shape_ev[e]);
                assert_int_equal(nb_crc32(0, rec, rs - 4),
                                 (uint32_t)rec[rs - 4] | rec[rs - 3] << 8 |
                                     rec[rs - 2] << 16 |
                                     (uint32_t)rec[rs - 1] << 24);
                if (n != 0 && n != NB_MAX_REVOKED)
                    continue; /* the checks below once per size */
                /* Every single-bit flip is caught. */
                for (uint32_t i = 0; i < rs * 8; i++) {
                    rec[i / 8] ^= (uint8_t)(1u << (i % 8));
                    if (nb_journal_decode(rec, rs, &got) != NB_ERR_CORRUPT)
                        fail_msg("rec %u: flip of bit %u accepted", rs, i);
                    rec[i / 8] ^= (uint8_t)(1u << (i % 8));
                }
                /* Bad magic, bad format and a revocation count above 8,
                 * even with a matching CRC. */
                uint8_t bad[NB_JOURNAL_MAX_RECORD];
                uint32_t crc;
                memcpy(bad, rec, rs);
                bad[0] ^= 0x01;
                crc = nb_crc32(0, bad, rs - 4);
                memcpy(bad + rs - 4, &crc, 4); /* host is little-endian */
                assert_int_equal(nb_journal_decode(bad, rs, &got),
                                 NB_ERR_CORRUPT);
                memcpy(bad, rec, rs);
                bad[8] = NB_JOURNAL_FORMAT + 1;
                crc = nb_crc32(0, bad, rs - 4);
                memcpy(bad + rs - 4, &crc, 4);
                assert_int_equal(nb_journal_decode(bad, rs, &got),
                                 NB_ERR_CORRUPT);
                memcpy(bad, rec, rs);
                bad[76] = NB_MAX_REVOKED + 1;
                crc = nb_crc32(0, bad, rs - 4);
                memcpy(bad + rs - 4, &crc, 4);
                assert_int_equal(nb_journal_decode(bad, rs, &got),
                                 NB_ERR_CORRUPT);
                bad[76] = NB_MAX_REVOKED;
                crc = nb_crc32(0, bad, rs - 4);
                memcpy(bad + rs - 4, &crc, 4);
                assert_int_equal(nb_journal_decode(bad, rs, &got), NB_OK);
                assert_int_equal(got.rev.count, NB_MAX_REVOKED);
                /* All erased is not a record. */
                memset(bad, shape_ev[e], rs);
                assert_int_equal(nb_journal_decode(bad, rs, &got),
                                 NB_ERR_CORRUPT);
            }
    assert_int_equal(nb_journal_decode(rec, NB_JOURNAL_BODY_SIZE - 1,
                                       &(struct nb_state){0}),
                     NB_ERR_INVAL);
    assert_int_equal(nb_journal_decode(rec, NB_JOURNAL_MAX_RECORD + 1,
                                       &(struct nb_state){0}),
                     NB_ERR_INVAL);
}

/* The revocation list survives appends, remounts and compaction. */
static void revocations_persist(void **state)
{
    (void)state;
    struct shape s = {8, 0xFF, "4k2"};
    struct jfx x;
    struct nb_state st = mkstate(8), got;
    jfx_open(&x, &s);
    snprintf(x.id, sizeof(x.id), "revocations");
    assert_int_equal(st.rev.count, NB_MAX_REVOKED);
    assert_int_equal(nb_journal_format(&x.j, &st), NB_OK);
    /* More appends than two sectors hold: compaction carries it over. */
    for (uint32_t k = 0; k < 2 * 4096 / x.j.rec_size + 3; k++) {
        st.rev.seq++;
        st.rev.kid[k % NB_MAX_REVOKED][0] ^= 0x5A;
        assert_int_equal(nb_journal_append(&x.j, &st), NB_OK);
        assert_int_equal(remount(&x, &got), NB_OK);
        CHECK(&x, st_eq(&st, &got));
    }
    jfx_close(&x);
}

/* ------------------------------------------------------ init and mount */

static void init_and_blank_mount(void **state)
{
    (void)state;
    for (unsigned e = 0; e < 2; e++) {
        struct shape s = {8, shape_ev[e], "4k3"};
        struct jfx x;
        struct nb_state st = mkstate(1);
        jfx_open(&x, &s);
        snprintf(x.id, sizeof(x.id), "blank/%02x", s.ev);
        /* One sector, misaligned, empty. */
        assert_int_equal(nb_journal_init(&x.j, &x.f, 0, 4096), NB_ERR_INVAL);
        assert_int_equal(nb_journal_init(&x.j, &x.f, 0, 6000), NB_ERR_INVAL);
        assert_int_equal(nb_journal_init(&x.j, &x.f, 512, 8192),
                         NB_ERR_INVAL);
        assert_int_equal(nb_journal_init(&x.j, &x.f, 0, 0), NB_ERR_INVAL);
        assert_int_equal(nb_journal_init(&x.j, &x.f, 4096, 8192), NB_OK);
        /* Blank: nothing there. Appending before a mount is refused. */
        assert_int_equal(remount(&x, &st), NB_ERR_NOENT);
        assert_int_equal(nb_journal_append(&x.j, &st), NB_ERR_STATE);
        /* Garbage everywhere is nothing there either. */
        uint8_t *junk = malloc(x.size);
        assert_non_null(junk);
        tl_fill(junk, x.size, 5);
        assert_int_equal(x.f.prog(x.f.ctx, 0, junk, x.size), NB_OK);
        free(junk);
        assert_int_equal(remount(&x, &st), NB_ERR_NOENT);
        /* Format erases it and writes the first record. */
        st = mkstate(1);
        assert_int_equal(nb_journal_format(&x.j, &st), NB_OK);
        assert_int_equal(st.seq, 1);
        expect_state(&x, 1, 1);
        jfx_close(&x);
    }
    /* Sectors smaller than one record cannot hold a journal. */
    struct nb_simflash_geometry g = tl_geo(32, 0xFF, 4, 64);
    struct nb_simflash *sim;
    struct nb_flash f;
    struct nb_journal j;
    assert_int_equal(nb_simflash_create_mem(&sim, &g), NB_OK);
    nb_simflash_interface(sim, &f);
    assert_int_equal(nb_journal_init(&j, &f, 0, 256), NB_ERR_INVAL);
    nb_simflash_close(sim);
}

/* ------------------------------------------- many appends, compaction */

static void fill_and_remount(void **state)
{
    (void)state;
    for (unsigned n = 0; n < SHAPES; n++) {
        struct shape s = shape_n(n);
        struct jfx x;
        struct nb_state st = mkstate(0);
        uint32_t sectors_seen = 0, last_sector = 0;
        jfx_open(&x, &s);
        assert_int_equal(nb_journal_format(&x.j, &st), NB_OK);
        uint32_t total = 2 * area_records(&x) + 7;
        for (uint32_t i = 1; i <= total; i++) {
            snprintf(x.id, sizeof(x.id), "fill ws=%u ev=%02x %s i=%u", s.ws,
                     s.ev, s.area, i);
            st = mkstate(i);
            CHECK(&x, nb_journal_append(&x.j, &st) == NB_OK);
            CHECK(&x, st.seq == i + 1);
            /* The compaction never leaves the area, never lands on the
             * record it replaces. */
            CHECK(&x, x.j.cur_sector < x.size && x.j.next <= x.size);
            if (x.j.cur_sector != last_sector)
                sectors_seen++;
            last_sector = x.j.cur_sector;
            expect_state(&x, i, i + 1); /* reset after every append */
        }
        CHECK(&x, sectors_seen >= 4); /* wrapped around at least once */
        jfx_close(&x);
    }
}

/* ------------------------------------------------- power-cut sweeps */

/* Cut power at every operation of the next append (clean, then torn with
 * several seeds); after power on the state is the old or the new one,
 * and a following append succeeds and wins. Leaves the flash as it was
 * before the append. */
static void sweep_append(struct jfx *x, uint32_t old_i, uint32_t new_i,
                         uint32_t old_seq, const char *where)
{
    struct nb_state st;
    assert_int_equal(nb_simflash_copy_from(x->snap, x->sim), NB_OK);
    for (int torn = 0; torn <= 1; torn++)
        for (unsigned seed = 0; seed < (torn ? SEEDS : 1u); seed++)
            for (uint64_t k = 0;; k++) {
                snprintf(x->id, sizeof(x->id),
                         "ws=%u ev=%02x %s %s cut=%u torn=%d seed=%u",
                         x->shape.ws, x->shape.ev, x->shape.area, where,
                         (unsigned)k, torn, seed);
                assert_int_equal(nb_simflash_copy_from(x->sim, x->snap),
                                 NB_OK);
                nb_simflash_seed(x->sim, 1000 + seed * 7919 + k);
                CHECK(x, remount(x, &st) == NB_OK && st.seq == old_seq);
                nb_simflash_cut_at(x->sim, k, torn);
                st = mkstate(new_i);
                nb_err err = nb_journal_append(&x->j, &st);
                if (err == NB_OK) {
                    /* k is past the last operation: the sweep is done. */
                    CHECK(x, !nb_simflash_power_lost(x->sim));
                    CHECK(x, k >= 2);
                    nb_simflash_disarm(x->sim);
                    expect_state(x, new_i, old_seq + 1);
                    break;
                }
                CHECK(x, err == NB_ERR_POWER);
                cases++;
                nb_simflash_power_on(x->sim);
                struct nb_state got;
                struct nb_state o = mkstate(old_i), w = mkstate(new_i);
                CHECK(x, remount(x, &got) == NB_OK);
                CHECK(x, (st_eq(&got, &o) && got.seq == old_seq) ||
                             (st_eq(&got, &w) && got.seq == old_seq + 1));
                /* The device goes on: two more appends, each wins. */
                uint32_t base = got.seq;
                for (uint32_t r = 1; r <= 2; r++) {
                    st = mkstate(9000 + r);
                    CHECK(x, nb_journal_append(&x->j, &st) == NB_OK);
                    expect_state(x, 9000 + r, base + r);
                }
            }
    assert_int_equal(nb_simflash_copy_from(x->sim, x->snap), NB_OK);
    struct nb_state back;
    CHECK(x, remount(x, &back) == NB_OK && back.seq == old_seq);
}

static void torn_append_every_point(void **state)
{
    (void)state;
    for (unsigned n = 0; n < SHAPES; n++) {
        struct shape s = shape_n(n);
        struct jfx x;
        struct nb_state st = mkstate(0);
        unsigned compactions = 0, sectors = 0;
        uint32_t start, size;
        jfx_open(&x, &s);
        for (uint32_t a = 0; a < x.size; a = start + size, sectors++)
            assert_int_equal(nb_flash_sector(&x.f, a, &start, &size), NB_OK);
        assert_int_equal(nb_journal_format(&x.j, &st), NB_OK);
        /* Sweep the second append, the last one before each compaction,
         * and each compaction, until the journal has wrapped around. */
        for (uint32_t i = 1; compactions < sectors + 1; i++) {
            char where[48];
            int compacting = compacts_next(&x);
            int last_before = !compacting &&
                              x.j.next + 2 * x.j.rec_size >
                                  sector_end_of(&x, x.j.cur_sector);
            if (i == 2 || compacting || last_before) {
                snprintf(where, sizeof(where), "%s i=%u",
                         compacting ? "compaction" : "append", i);
                sweep_append(&x, i - 1, i, i, where);
            }
            if (compacting)
                compactions++;
            CHECK(&x, !compacting || i > 2);
            st = mkstate(i);
            assert_int_equal(nb_journal_append(&x.j, &st), NB_OK);
            assert_int_equal(st.seq, i + 1);
        }
        jfx_close(&x);
    }
    print_message("journal: %lu power-cut cases\n", cases);
    assert_true(cases > 1000);
}

/* ---------------------------------------------------------- bad flash */

/* A flash wrapper that fails programs touching [lo, hi): mode 1 reports
 * NB_ERR_IO and writes nothing; mode 2 writes all but one bit and reports
 * success (a program that reads back wrong). */
struct wrap {
    struct nb_flash in;
    uint32_t lo, hi;
    int mode, hits;
};

static nb_err w_read(void *c, uint32_t a, void *b, uint32_t n)
{
    struct wrap *w = c;
    return w->in.read(w->in.ctx, a, b, n);
}

static nb_err w_erase(void *c, uint32_t a)
{
    struct wrap *w = c;
    return w->in.erase(w->in.ctx, a);
}

static nb_err w_prog(void *c, uint32_t a, const void *b, uint32_t n)
{
    struct wrap *w = c;
    uint8_t tmp[NB_JOURNAL_MAX_RECORD];
    if (w->mode == 0 || a >= w->hi || a + n <= w->lo)
        return w->in.prog(w->in.ctx, a, b, n);
    w->hits++;
    if (w->mode == 1 || n > sizeof(tmp))
        return NB_ERR_IO;
    memcpy(tmp, b, n);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t change = tmp[i] ^ w->in.erase_value;
        if (change) {
            tmp[i] ^= change & (uint8_t)-change; /* keep one bit erased */
            break;
        }
    }
    return w->in.prog(w->in.ctx, a, tmp, n);
}

static void bad_program_slot(void **state)
{
    (void)state;
    for (int mode = 1; mode <= 2; mode++)
        for (unsigned n = 0; n < SHAPES; n += 4) {
            struct shape s = shape_n(n);
            struct jfx x;
            struct wrap w;
            struct nb_state st = mkstate(0);
            jfx_open(&x, &s);
            snprintf(x.id, sizeof(x.id), "badslot mode=%d ws=%u ev=%02x %s",
                     mode, s.ws, s.ev, s.area);
            memset(&w, 0, sizeof(w));
            w.in = x.f;
            x.f.ctx = &w;
            x.f.read = w_read, x.f.prog = w_prog, x.f.erase = w_erase;
            assert_int_equal(nb_journal_format(&x.j, &st), NB_OK);
            uint32_t i = 1;
            for (; i <= 3; i++) {
                st = mkstate(i);
                CHECK(&x, nb_journal_append(&x.j, &st) == NB_OK);
            }
            /* The next record slot is bad: the append gives up on that
             * sector and lands first in the next one. */
            uint32_t slot = x.j.next, old_sector = x.j.cur_sector;
            w.lo = slot, w.hi = slot + x.j.rec_size, w.mode = mode;
            st = mkstate(i);
            CHECK(&x, nb_journal_append(&x.j, &st) == NB_OK);
            CHECK(&x, w.hits >= 1);
            CHECK(&x, x.j.cur_sector != old_sector);
            CHECK(&x, x.j.next == x.j.cur_sector + x.j.rec_size);
            expect_state(&x, i, i + 1);
            w.mode = 0;
            for (uint32_t r = 1; r <= 3; r++) {
                st = mkstate(i + r);
                CHECK(&x, nb_journal_append(&x.j, &st) == NB_OK);
                expect_state(&x, i + r, i + r + 1);
            }
            i += 4;
            /* The last slot of a sector is bad: the append compacts. */
            while (x.j.next + 2 * x.j.rec_size <=
                   sector_end_of(&x, x.j.cur_sector)) {
                st = mkstate(i);
                CHECK(&x, nb_journal_append(&x.j, &st) == NB_OK);
                i++;
            }
            uint32_t cur = x.j.cur_sector;
            w.lo = x.j.next, w.hi = x.j.next + x.j.rec_size, w.mode = mode;
            st = mkstate(i);
            CHECK(&x, nb_journal_append(&x.j, &st) == NB_OK);
            CHECK(&x, x.j.cur_sector != cur);
            expect_state(&x, i, i + 1);
            w.mode = 0;
            x.f = w.in; /* jfx_close checks the plain device */
            jfx_close(&x);
        }
}

/* A whole sector whose programs fail (simulator BAD_PROG) with one free
 * slot left: the append moves on to the next sector. */
static void bad_program_sector_last_slot(void **state)
{
    (void)state;
    struct shape s = {8, 0xFF, "4k3"};
    struct jfx x;
    struct nb_state st = mkstate(0);
    jfx_open(&x, &s);
    snprintf(x.id, sizeof(x.id), "badprog-last");
    assert_int_equal(nb_journal_format(&x.j, &st), NB_OK);
    uint32_t i = 1;
    while (x.j.next + 2 * x.j.rec_size <= sector_end_of(&x, x.j.cur_sector)) {
        st = mkstate(i++);
        CHECK(&x, nb_journal_append(&x.j, &st) == NB_OK);
    }
    CHECK(&x, x.j.cur_sector == 0);
    assert_int_equal(nb_simflash_set_bad(x.sim, 0, NB_SIMFLASH_BAD_PROG),
                     NB_OK);
    st = mkstate(i);
    CHECK(&x, nb_journal_append(&x.j, &st) == NB_OK);
    CHECK(&x, x.j.cur_sector == 4096);
    expect_state(&x, i, i + 1);
    jfx_close(&x);
}

/* The same with plenty of room left in the bad sector: a journal with a
 * good sector to spare must not give up after a few slots (otherwise no
 * state change can ever be recorded again, at every boot). */
static void bad_program_sector_with_room(void **state)
{
    (void)state;
    for (unsigned n = 0; n < 2; n++) {
        struct shape s = {8, 0xFF, n ? "4k3" : "4k2"};
        struct jfx x;
        struct nb_state st = mkstate(0);
        jfx_open(&x, &s);
        snprintf(x.id, sizeof(x.id), "badprog-room %s", s.area);
        assert_int_equal(nb_journal_format(&x.j, &st), NB_OK);
        for (uint32_t i = 1; i <= 3; i++) {
            st = mkstate(i);
            CHECK(&x, nb_journal_append(&x.j, &st) == NB_OK);
        }
        assert_int_equal(nb_simflash_set_bad(x.sim, 0, NB_SIMFLASH_BAD_PROG),
                         NB_OK);
        st = mkstate(4);
        nb_err err = nb_journal_append(&x.j, &st);
        if (err != NB_OK) {
            /* Whatever happens, the last good state is never lost. */
            expect_state(&x, 3, 4);
            jfx_close(&x);
            fail_msg("%s: append with a bad-program sector holding 4 of %u "
                     "records returned %s; expected it to move to the "
                     "next (good) sector",
                     x.id, 4096 / x.j.rec_size, nb_err_name(err));
        }
        expect_state(&x, 4, 5);
        CHECK(&x, x.j.cur_sector != 0);
        jfx_close(&x);
    }
}

/* 3 sectors, the one to compact into cannot be erased: it is skipped, and
 * its stale records never win. With 2 sectors there is nowhere to go:
 * the append fails and the old state stays. */
static void bad_erase_sector(void **state)
{
    (void)state;
    for (unsigned n = 0; n < SHAPES; n += 5) {
        struct shape s = shape_n(n);
        struct jfx x;
        struct nb_state st = mkstate(0);
        jfx_open(&x, &s);
        snprintf(x.id, sizeof(x.id), "baderase ws=%u ev=%02x %s", s.ws, s.ev,
                 s.area);
        int three = !strcmp(s.area, "4k3") || !strcmp(s.area, "mix3");
        assert_int_equal(nb_journal_format(&x.j, &st), NB_OK);
        uint32_t i = 1, wraps = 0;
        /* Fill every sector once, then stop right before a compaction. */
        uint32_t total = area_records(&x);
        for (; i <= total || !compacts_next(&x); i++) {
            st = mkstate(i);
            CHECK(&x, nb_journal_append(&x.j, &st) == NB_OK);
        }
        uint32_t cur = x.j.cur_sector;
        uint32_t bad = sector_end_of(&x, cur) >= x.size ? 0
                                                        : sector_end_of(&x, cur);
        assert_int_equal(nb_simflash_set_bad(x.sim, bad,
                                             NB_SIMFLASH_BAD_ERASE),
                         NB_OK);
        st = mkstate(i);
        nb_err err = nb_journal_append(&x.j, &st);
        if (!three) {
            CHECK(&x, err == NB_ERR_IO);
            expect_state(&x, i - 1, i);
            jfx_close(&x);
            continue;
        }
        CHECK(&x, err == NB_OK);
        CHECK(&x, x.j.cur_sector != bad && x.j.cur_sector != cur);
        expect_state(&x, i, i + 1);
        /* Two more wraps with a reset after every append. */
        uint32_t last = x.j.cur_sector;
        for (i++; wraps < 4; i++) {
            st = mkstate(i);
            CHECK(&x, nb_journal_append(&x.j, &st) == NB_OK);
            CHECK(&x, x.j.cur_sector != bad);
            if (x.j.cur_sector != last)
                wraps++;
            last = x.j.cur_sector;
            expect_state(&x, i, i + 1);
        }
        jfx_close(&x);
    }
}

/* Bit rot in the newest record: the previous record wins, and the next
 * append wins over both. Once mid-sector, once right after a compaction
 * (the previous record is in the other sector). */
static void bit_flip_newest(void **state)
{
    (void)state;
    for (unsigned n = 0; n < SHAPES; n++) {
        struct shape s = shape_n(n);
        struct jfx x;
        struct nb_state st = mkstate(0);
        uint32_t idx = 0, seq = 1, prev_idx = 0, prev_seq = 0;
        jfx_open(&x, &s);
        assert_int_equal(nb_journal_format(&x.j, &st), NB_OK);
#define APPEND()                                                         \
    do {                                                                 \
        prev_idx = idx, prev_seq = seq;                                  \
        st = mkstate(++idx);                                             \
        CHECK(&x, nb_journal_append(&x.j, &st) == NB_OK);                \
        seq = st.seq;                                                    \
    } while (0)
        for (int round = 0; round < 2; round++) {
            if (round == 0) {
                while (idx < 5)
                    APPEND();
            } else {
                while (!compacts_next(&x))
                    APPEND();
                APPEND();
                assert_int_equal(x.j.next, x.j.cur_sector + x.j.rec_size);
            }
            uint32_t rec = x.j.next - x.j.rec_size;
            static const uint32_t where[] = {0, 30, 0xFFFF};
            for (unsigned w = 0; w < 3; w++) {
                uint32_t at = where[w] == 0xFFFF ? x.j.rec_size - 1 : where[w];
                snprintf(x.id, sizeof(x.id),
                         "flip ws=%u ev=%02x %s round=%d at=%u", s.ws, s.ev,
                         s.area, round, at);
                assert_int_equal(nb_simflash_flip_bit(x.sim, rec + at, 3),
                                 NB_OK);
                expect_state(&x, prev_idx, prev_seq);
                assert_int_equal(nb_simflash_flip_bit(x.sim, rec + at, 3),
                                 NB_OK);
                expect_state(&x, idx, seq);
            }
            /* Leave it corrupt: the next append follows the previous. */
            assert_int_equal(nb_simflash_flip_bit(x.sim, rec + 40, 0), NB_OK);
            expect_state(&x, prev_idx, prev_seq);
            idx = prev_idx, seq = prev_seq;
            APPEND();
            CHECK(&x, seq == prev_seq + 1);
            expect_state(&x, idx, seq);
            APPEND();
            expect_state(&x, idx, seq);
        }
#undef APPEND
        jfx_close(&x);
    }
}

/* Sequence numbers compare across the 32-bit wrap. */
static void seq_wrap(void **state)
{
    (void)state;
    struct shape s = {8, 0xFF, "4k2"};
    struct jfx x;
    uint8_t rec[NB_JOURNAL_MAX_RECORD];
    static const uint32_t seqs0[] = {0xFFFFFFF0u, 0xFFFFFFFEu, 0xFFFFFFFFu,
                                     0u, 1u};
    jfx_open(&x, &s);
    snprintf(x.id, sizeof(x.id), "wrap");
    for (unsigned k = 0; k < 5; k++) {
        struct nb_state st = mkstate(k);
        st.seq = seqs0[k];
        nb_journal_encode(&st, 0xFF, rec, x.j.rec_size);
        assert_int_equal(x.f.prog(x.f.ctx, k * x.j.rec_size, rec,
                                  x.j.rec_size),
                         NB_OK);
    }
    expect_state(&x, 4, 1);
    struct nb_state st = mkstate(5);
    assert_int_equal(nb_journal_append(&x.j, &st), NB_OK);
    assert_int_equal(st.seq, 2);
    expect_state(&x, 5, 2);
    /* Across sectors: sector 1 holds 0xFFFFFFFD, sector 0 the newer. */
    st = mkstate(50);
    st.seq = 0xFFFFFFFDu;
    nb_journal_encode(&st, 0xFF, rec, x.j.rec_size);
    assert_int_equal(x.f.prog(x.f.ctx, 4096, rec, x.j.rec_size), NB_OK);
    expect_state(&x, 5, 2);
    jfx_close(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_decode),
        cmocka_unit_test(revocations_persist),
        cmocka_unit_test(init_and_blank_mount),
        cmocka_unit_test(fill_and_remount),
        cmocka_unit_test(torn_append_every_point),
        cmocka_unit_test(bad_program_slot),
        cmocka_unit_test(bad_program_sector_last_slot),
        cmocka_unit_test(bad_program_sector_with_room),
        cmocka_unit_test(bad_erase_sector),
        cmocka_unit_test(bit_flip_newest),
        cmocka_unit_test(seq_wrap),
    };
    return cmocka_run_group_tests_name("journal", tests, NULL, NULL);
}
