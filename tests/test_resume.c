/* test_resume.c - an install interrupted by a power cut at every flash
 * operation resumes from the journal's progress (nb_install_resume) and
 * completes, re-sending at most one sector and one block per cut. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nb_boot.h"
#include "nb_crypto_openssl.h"
#include "nb_install.h"
#include "nb_simflash.h"
#include "nb_testpkg.h"

#define BUF 4096u

struct rig {
    struct nb_simflash *sim, *snap;
    struct nb_flash flash;
    struct nb_openssl_crypto oc;
    struct nb_crypto crypto;
    struct nb_testkeys keys;
    struct nb_identity id;
    struct nb_boot_config cfg;
    struct nb_device dev;
    uint8_t buf[BUF];
    uint8_t mbuf[NB_MANIFEST_MAX];
    struct nb_buf pkg;
    uint32_t mlen;
    struct nb_manifest m;
};

static void rig_init(struct rig *r, uint8_t kind, uint32_t ws,
                     uint32_t sector, uint32_t slot, uint32_t payload)
{
    struct nb_simflash_geometry g;
    memset(r, 0, sizeof(*r));
    memset(&g, 0, sizeof(g));
    g.write_size = ws;
    g.erase_value = 0xFF;
    g.region_count = 1;
    g.regions[0].size = sector;
    g.regions[0].count = (slot * 3) / sector + 4;
    assert_int_equal(nb_simflash_create_mem(&r->sim, &g), NB_OK);
    assert_int_equal(nb_simflash_create_mem(&r->snap, &g), NB_OK);
    nb_simflash_interface(r->sim, &r->flash);
    assert_int_equal(nb_crypto_openssl_init(&r->crypto, &r->oc), NB_OK);
    assert_int_equal(nb_testkeys_init(&r->keys, &r->crypto), NB_OK);
    nb_testpkg_identity(&r->id);
    r->cfg.flash = &r->flash;
    r->cfg.crypto = &r->crypto;
    r->cfg.keystore = &r->keys.keystore;
    r->cfg.identity = &r->id;
    assert_int_equal(nb_layout_plan(&r->cfg.layout, &r->flash, kind, slot, 0),
                     NB_OK);
    r->cfg.buf = r->buf;
    r->cfg.buf_size = BUF;
    r->cfg.mbuf = r->mbuf;
    r->cfg.mbuf_size = sizeof(r->mbuf);
    assert_int_equal(nb_device_provision(&r->dev, &r->cfg,
                                         NB_LIFECYCLE_PRODUCTION, 3),
                     NB_OK);
    assert_int_equal(nb_testpkg_make(&r->keys, &r->crypto, 0x01020000u, 3,
                                     payload, 42, &r->pkg),
                     NB_OK);
    r->mlen = (uint32_t)(r->pkg.p[8] | r->pkg.p[9] << 8 |
                         r->pkg.p[10] << 16 | (uint32_t)r->pkg.p[11] << 24);
    assert_int_equal(nb_manifest_parse_unverified(&r->crypto,
                                                  r->pkg.p + NB_PKG_HDR_SIZE,
                                                  r->mlen, &r->m),
                     NB_OK);
}

static void rig_free(struct rig *r)
{
    nb_buf_free(&r->pkg);
    nb_testkeys_free(&r->keys);
    nb_crypto_openssl_free(&r->crypto, &r->oc);
    nb_simflash_close(r->sim);
    nb_simflash_close(r->snap);
}

/* Send the payload from `from` in odd-sized chunks; counts bytes sent. */
static nb_err send(struct rig *r, struct nb_install *in, uint64_t *sent)
{
    const uint8_t *p = r->pkg.p + r->m.payload_offset;
    for (uint32_t pos = nb_install_offset(in); pos < r->m.payload_size;) {
        uint32_t n = r->m.payload_size - pos < 1500 ? r->m.payload_size - pos
                                                     : 1500;
        nb_err err = nb_install_write(in, p + pos, n);
        if (err)
            return err;
        *sent += n;
        pos += n;
    }
    return nb_install_finish(in);
}

/* Begin (or resume) and run to the end. */
static nb_err attempt(struct rig *r, uint64_t *sent, int *resumed)
{
    struct nb_install in;
    nb_err err = nb_device_open(&r->dev, &r->cfg);
    if (err)
        return err;
    *resumed = 0;
    if (nb_install_resume(&in, &r->dev) == NB_OK) {
        *resumed = 1;
    } else {
        err = nb_device_open(&r->dev, &r->cfg);
        if (!err)
            err = nb_install_begin(&in, &r->dev, r->pkg.p + NB_PKG_HDR_SIZE,
                                   r->mlen, NB_TARGET_UPDATE);
        if (err)
            return err;
    }
    return send(r, &in, sent);
}

static void cut_everywhere(uint8_t kind, uint32_t ws, uint32_t sector,
                           uint32_t slot, uint32_t payload, int torn)
{
    struct rig r;
    struct nb_simflash_stats st;
    struct nb_boot_result res;
    uint64_t sent = 0;
    int resumed, resumes = 0;
    rig_init(&r, kind, ws, sector, slot, payload);
    nb_simflash_copy_from(r.snap, r.sim);
    nb_simflash_reset_stats(r.sim);
    assert_int_equal(attempt(&r, &sent, &resumed), NB_OK);
    nb_simflash_stats(r.sim, &st);
    uint64_t total = st.ops;
    for (uint64_t cut = 0; cut < total; cut++) {
        nb_simflash_copy_from(r.sim, r.snap);
        nb_simflash_seed(r.sim, cut * 7 + 1);
        nb_simflash_cut_at(r.sim, cut, torn);
        sent = 0;
        nb_err err = attempt(&r, &sent, &resumed);
        assert_int_equal(err, NB_ERR_POWER);
        nb_simflash_power_on(r.sim);
        uint64_t before = sent;
        err = attempt(&r, &sent, &resumed);
        if (err != NB_OK)
            fail_msg("cut %llu (torn %d): resume/begin failed: %s",
                     (unsigned long long)cut, torn, nb_err_name(err));
        resumes += resumed;
        /* Re-sent: at most a sector and a block beyond what was lost. */
        if (resumed && sent > r.m.payload_size + sector + r.m.block_size)
            fail_msg("cut %llu: sent %llu for a %u-byte payload",
                     (unsigned long long)cut, (unsigned long long)sent,
                     r.m.payload_size);
        (void)before;
        assert_int_equal(nb_install_set_pending(&r.dev), NB_OK);
        assert_int_equal(nb_device_open(&r.dev, &r.cfg), NB_OK);
        assert_int_equal(nb_boot(&r.dev, &res), NB_OK);
        assert_int_equal(res.outcome, NB_BOOT_IMAGE);
        assert_int_equal(res.state, NB_SLOT_TRIAL);
        assert_int_equal(res.image.version, 0x01020000u);
        nb_simflash_stats(r.sim, &st);
        assert_int_equal(st.violations, 0);
    }
    /* Most cuts land after some progress was recorded. */
    assert_true(resumes > 0);
    rig_free(&r);
}

static void resume_ab_4k(void **s)
{
    (void)s;
    cut_everywhere(NB_LAYOUT_AB, 8, 4096, 65536, 40000, 0);
    cut_everywhere(NB_LAYOUT_AB, 8, 4096, 65536, 40000, 1);
}

static void resume_swap_ws1(void **s)
{
    (void)s;
    cut_everywhere(NB_LAYOUT_AB_SWAP, 1, 4096, 65536, 30001, 1);
}

static void resume_large_sectors(void **s)
{
    (void)s;
    cut_everywhere(NB_LAYOUT_AB, 32, 131072, 262144, 150000, 1);
}

/* A link that drops every few blocks: each retry resumes, and the total
 * sent stays within 1.1x the payload for ten interruptions. */
static void dropped_link_ten_times(void **s)
{
    struct rig r;
    struct nb_install in;
    uint64_t sent = 0;
    (void)s;
    rig_init(&r, NB_LAYOUT_AB, 8, 4096, 1u << 21, 1u << 20);
    assert_int_equal(nb_device_open(&r.dev, &r.cfg), NB_OK);
    assert_int_equal(nb_install_begin(&in, &r.dev, r.pkg.p + NB_PKG_HDR_SIZE,
                                      r.mlen, NB_TARGET_UPDATE),
                     NB_OK);
    const uint8_t *p = r.pkg.p + r.m.payload_offset;
    for (int drop = 0; drop <= 10; drop++) {
        /* Drop the link after a tenth more of the payload (mid-block). */
        uint32_t stop = drop == 10 ? r.m.payload_size
                                   : (uint32_t)((uint64_t)r.m.payload_size *
                                                    (drop + 1) / 11 + 777);
        uint32_t pos = nb_install_offset(&in);
        while (pos < stop) {
            uint32_t n = stop - pos < 1000 ? stop - pos : 1000;
            assert_int_equal(nb_install_write(&in, p + pos, n), NB_OK);
            sent += n;
            pos += n;
        }
        if (drop < 10) {
            /* The process dies with the link: resume from the journal. */
            assert_int_equal(nb_device_open(&r.dev, &r.cfg), NB_OK);
            assert_int_equal(nb_install_resume(&in, &r.dev), NB_OK);
        }
    }
    assert_int_equal(nb_install_finish(&in), NB_OK);
    print_message("1 MiB payload, 10 drops: %llu bytes sent (%.3fx)\n",
                  (unsigned long long)sent, (double)sent / r.m.payload_size);
    assert_true(sent * 10 <= (uint64_t)r.m.payload_size * 11);
    rig_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(resume_ab_4k),
        cmocka_unit_test(resume_swap_ws1),
        cmocka_unit_test(resume_large_sectors),
        cmocka_unit_test(dropped_link_ten_times),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
