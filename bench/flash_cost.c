/* flash_cost - what one upgrade and one revert cost the flash, per layout.
 *
 * 128 KiB slots, 4 KiB sectors, 8-byte writes, signed test packages
 * (lib/nb_testpkg.h) of 102,472 bytes in the slot: container header,
 * manifest, zero padding and payload (the payload size is chosen so that
 * payload offset + payload size is exactly that). For each layout:
 * provision, install v1 and confirm it, then measure
 *   upgrade: stage v2 (the download: manifest, payload block by block,
 *            then the rest of the slot erased), trial boot (the install: a
 *            swap in
 *            ab-swap), confirm, boot;
 *   revert:  stage v3, trial boot, resets without confirming until the
 *            confirmed v2 runs again.
 * Printed per phase: sector erases, program operations, bytes programmed
 * outside the journal (and as a multiple of the package size), journal
 * bytes, and fault points (program + erase operations: every one is a
 * place power can fail, and the sweep tests each).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simdev.h"

#define IMAGE_SIZE 102472u
#define SLOT_SIZE (128u * 1024u)

struct counts {
    uint64_t erases, progs, data_bytes, journal_bytes;
};

/* A shim between the core and the simulated flash that counts by area. */
struct meter {
    struct nb_flash inner;
    struct nb_area journal;
    struct counts c;
};

static nb_err m_read(void *ctx, uint32_t addr, void *buf, uint32_t len)
{
    struct meter *m = ctx;
    return m->inner.read(m->inner.ctx, addr, buf, len);
}

static nb_err m_prog(void *ctx, uint32_t addr, const void *buf, uint32_t len)
{
    struct meter *m = ctx;
    m->c.progs++;
    if (addr >= m->journal.off && addr < m->journal.off + m->journal.size)
        m->c.journal_bytes += len;
    else
        m->c.data_bytes += len;
    return m->inner.prog(m->inner.ctx, addr, buf, len);
}

static nb_err m_erase(void *ctx, uint32_t addr)
{
    struct meter *m = ctx;
    m->c.erases++;
    return m->inner.erase(m->inner.ctx, addr);
}

static void die(const char *what, nb_err err)
{
    fprintf(stderr, "flash_cost: %s: %s\n", what, nb_err_name(err));
    exit(1);
}

static void row(const char *layout, const char *phase, const struct counts *c)
{
    printf("%-11s %-16s %7" PRIu64 " %7" PRIu64 " %10" PRIu64 " %6.2fx %8"
           PRIu64 " %7" PRIu64 "\n",
           layout, phase, c->erases, c->progs, c->data_bytes,
           (double)c->data_bytes / IMAGE_SIZE, c->journal_bytes,
           c->erases + c->progs);
}

static void add(struct counts *a, const struct counts *b)
{
    a->erases += b->erases;
    a->progs += b->progs;
    a->data_bytes += b->data_bytes;
    a->journal_bytes += b->journal_bytes;
}

/* A test package of exactly IMAGE_SIZE bytes in the slot: the payload
 * offset depends on the manifest's length, which depends on the payload
 * size (one digest per block), so settle the two. */
static void make_package(struct simdev *sd, uint32_t version, uint32_t svn,
                         uint64_t seed, struct nb_buf *out)
{
    uint32_t poff = 512;
    for (int round = 0; round < 6; round++) {
        struct nb_manifest m;
        nb_err err = simdev_make_package(sd, version, svn, IMAGE_SIZE - poff,
                                         seed, out);
        if (!err)
            err = nb_manifest_parse_unverified(
                &sd->crypto, out->p + NB_PKG_HDR_SIZE,
                (uint32_t)out->p[8] | (uint32_t)out->p[9] << 8 |
                    (uint32_t)out->p[10] << 16 | (uint32_t)out->p[11] << 24,
                &m);
        if (err)
            die("make package", err);
        if (out->len == IMAGE_SIZE)
            return;
        poff = m.payload_offset;
        nb_buf_free(out);
    }
    die("no package of exactly the image size", NB_ERR_INVAL);
}

static void run(uint8_t kind)
{
    static struct simdev sd;
    static struct meter m;
    struct nb_simflash_geometry g = {.write_size = 8, .erase_value = 0xFF,
                                     .region_count = 1,
                                     .regions = {{8 * SLOT_SIZE / 4096, 4096}}};
    struct nb_boot_result res;
    struct nb_buf img[3] = {{0}};
    const char *name = nb_layout_name(kind);
    nb_err err;

    memset(&sd, 0, sizeof(sd));
    memset(&m, 0, sizeof(m));
    if ((err = nb_simflash_create_mem(&sd.sim, &g)))
        die("flash", err);
    nb_simflash_interface(sd.sim, &m.inner);
    if ((err = nb_layout_plan(&sd.board.layout, &m.inner, kind, SLOT_SIZE, 0)))
        die("layout", err);
    if ((err = simdev_bind(&sd)))
        die("crypto and test keys", err);
    /* Route the core's flash through the meter. */
    sd.flash = m.inner;
    sd.flash.ctx = &m;
    sd.flash.read = m_read;
    sd.flash.prog = m_prog;
    sd.flash.erase = m_erase;
    m.journal = sd.board.layout.journal;
    for (unsigned i = 0; i < 3; i++) {
        uint32_t v = 0;
        nb_version_pack(1, i, 0, &v);
        make_package(&sd, v, 1 + i, 100 + i, &img[i]);
    }
    if ((err = nb_device_provision(&sd.dev, &sd.cfg,
                                   NB_LIFECYCLE_PRODUCTION, 3)))
        die("provision", err);
    if ((err = simdev_stage(&sd, img[0].p, IMAGE_SIZE, NULL)) ||
        (err = simdev_boot(&sd, &res)) || (err = simdev_confirm(&sd)))
        die("install v1", err);

    struct counts total = {0};
    memset(&m.c, 0, sizeof(m.c));
    if ((err = simdev_stage(&sd, img[1].p, IMAGE_SIZE, NULL)))
        die("stage v2", err);
    row(name, "upgrade: stage", &m.c);
    add(&total, &m.c);
    memset(&m.c, 0, sizeof(m.c));
    if ((err = simdev_boot(&sd, &res)) || (err = simdev_confirm(&sd)) ||
        (err = simdev_boot(&sd, &res)))
        die("upgrade to v2", err);
    row(name, "upgrade: install", &m.c);
    add(&total, &m.c);
    row(name, "upgrade: total", &total);

    memset(&total, 0, sizeof(total));
    memset(&m.c, 0, sizeof(m.c));
    if ((err = simdev_stage(&sd, img[2].p, IMAGE_SIZE, NULL)))
        die("stage v3", err);
    add(&total, &m.c);
    memset(&m.c, 0, sizeof(m.c));
    for (int k = 0; k < 8; k++) {
        if ((err = simdev_boot(&sd, &res)))
            die("revert", err);
        if (res.outcome != NB_BOOT_IMAGE)
            break;
        if (res.state == NB_SLOT_CONFIRMED)
            break;
    }
    if (kind != NB_LAYOUT_SINGLE &&
        (res.state != NB_SLOT_CONFIRMED || res.image.version != (1u << 24 | 1u << 16)))
        die("revert did not bring v2 back", NB_ERR_STATE);
    row(name, kind == NB_LAYOUT_SINGLE ? "revert: (none)" : "revert: trial+back",
        &m.c);
    add(&total, &m.c);
    row(name, "revert: total", &total);
    nb_simflash_close(sd.sim);
    for (unsigned i = 0; i < 3; i++)
        nb_buf_free(&img[i]);
    simdev_unbind(&sd);
}

int main(void)
{
    printf("flash cost: %u-byte image (signed package in the slot: header, "
           "manifest, padding, payload), 128 KiB slots, 4 KiB sectors, "
           "8-byte writes\n", IMAGE_SIZE);
    printf("%-11s %-16s %7s %7s %10s %7s %8s %7s\n", "layout", "phase",
           "erases", "progs", "data B", "x image", "journal", "faults");
    run(NB_LAYOUT_AB);
    run(NB_LAYOUT_AB_SWAP);
    run(NB_LAYOUT_AB_FACTORY);
    run(NB_LAYOUT_SINGLE);
    printf("single: no second slot, so a failed trial goes to recovery "
           "(re-fetch) instead of reverting.\n");
    return 0;
}
