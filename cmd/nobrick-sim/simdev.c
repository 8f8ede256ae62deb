/* simdev.c - a simulated device over the core; see simdev.h. */
#include <string.h>

#include "simdev.h"

#define BOARD_MAGIC 0x44424E42u /* "BNBD" */
#define BOARD_VERSION 1u

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

int simdev_shape(const char *name, uint32_t min_size,
                 struct nb_simflash_geometry *g)
{
    g->region_count = 1;
    if (strcmp(name, "4k") == 0) {
        g->regions[0].size = 4096;
    } else if (strcmp(name, "128k") == 0) {
        g->regions[0].size = 131072;
    } else if (strcmp(name, "mixed") == 0) {
        /* Small sectors first, as on STM32F4-class parts. */
        g->region_count = 3;
        g->regions[0] = (struct nb_flash_region){4, 4096};
        g->regions[1] = (struct nb_flash_region){2, 16384};
        g->regions[2].size = 32768;
        uint32_t head = 4 * 4096 + 2 * 16384;
        uint32_t rest = min_size > head ? min_size - head : 0;
        g->regions[2].count = (rest + 32767) / 32768 + 1;
        return 1;
    } else {
        return 0;
    }
    g->regions[0].count = (min_size + g->regions[0].size - 1) /
                          g->regions[0].size;
    return 1;
}

size_t simdev_board_encode(const struct simdev_board *b, uint8_t *out,
                           size_t cap)
{
    const struct nb_layout *l = &b->layout;
    size_t need = 12 + 8 * (1 + NB_MAX_SLOTS);
    if (cap < need)
        return 0;
    put32(out, BOARD_MAGIC);
    put32(out + 4, BOARD_VERSION);
    put32(out + 8, l->kind);
    put32(out + 12, l->journal.off);
    put32(out + 16, l->journal.size);
    for (unsigned i = 0; i < NB_MAX_SLOTS; i++) {
        put32(out + 20 + 8 * i, l->slot[i].off);
        put32(out + 24 + 8 * i, l->slot[i].size);
    }
    return need;
}

nb_err simdev_board_decode(const uint8_t *in, size_t len,
                           struct simdev_board *b)
{
    memset(b, 0, sizeof(*b));
    if (len < 12 + 8 * (1 + NB_MAX_SLOTS) || get32(in) != BOARD_MAGIC ||
        get32(in + 4) != BOARD_VERSION || get32(in + 8) > 255)
        return NB_ERR_CORRUPT;
    struct nb_layout *l = &b->layout;
    l->kind = (uint8_t)get32(in + 8);
    l->journal.off = get32(in + 12);
    l->journal.size = get32(in + 16);
    for (unsigned i = 0; i < NB_MAX_SLOTS; i++) {
        l->slot[i].off = get32(in + 20 + 8 * i);
        l->slot[i].size = get32(in + 24 + 8 * i);
    }
    return NB_OK;
}

nb_err simdev_bind(struct simdev *sd)
{
    /* Without a simulated flash, sd->flash is already another port's
     * (an MTD or block device: nobrick-agent). */
    if (sd->sim)
        nb_simflash_interface(sd->sim, &sd->flash);
    nb_err err = nb_crypto_openssl_init(&sd->crypto, &sd->oc);
    if (err)
        return err;
    if ((err = nb_testkeys_init(&sd->keys, &sd->crypto))) {
        nb_crypto_openssl_free(&sd->crypto, &sd->oc);
        return err;
    }
    nb_testpkg_identity(&sd->identity);
    memset(&sd->cfg, 0, sizeof(sd->cfg));
    sd->cfg.flash = &sd->flash;
    sd->cfg.crypto = &sd->crypto;
    sd->cfg.keystore = &sd->keys.keystore;
    sd->cfg.identity = &sd->identity;
    sd->cfg.layout = sd->board.layout;
    sd->cfg.buf = sd->buf;
    sd->cfg.buf_size = SIMDEV_BUF;
    sd->cfg.mbuf = sd->mbuf;
    sd->cfg.mbuf_size = NB_MANIFEST_MAX;
    return NB_OK;
}

void simdev_unbind(struct simdev *sd)
{
    nb_testkeys_free(&sd->keys);
    nb_crypto_openssl_free(&sd->crypto, &sd->oc);
}

nb_err simdev_open(struct simdev *sd)
{
    return nb_device_open(&sd->dev, &sd->cfg);
}

nb_err simdev_check_file(struct simdev *sd, const uint8_t *pkg, uint32_t len)
{
    struct nb_manifest m;
    uint32_t mlen;
    if (len < NB_PKG_HDR_SIZE)
        return NB_ERR_TRUNCATED;
    nb_err err = nb_pkg_parse_header(pkg, &mlen);
    if (err)
        return err;
    if (mlen > len - NB_PKG_HDR_SIZE)
        return NB_ERR_TRUNCATED;
    err = nb_manifest_parse_unverified(&sd->crypto, pkg + NB_PKG_HDR_SIZE,
                                       mlen, &m);
    if (err)
        return err;
    uint64_t want = (uint64_t)m.payload_offset + m.payload_size;
    if (len < want)
        return NB_ERR_TRUNCATED;
    return len > want ? NB_ERR_TRAILING : NB_OK;
}

static nb_err install(struct simdev *sd, const uint8_t *pkg, uint32_t len,
                      uint8_t target, int *downgrade)
{
    struct nb_install in;
    /* Refuse a file that is not a whole package before the journal hears
     * of it. */
    nb_err err = simdev_check_file(sd, pkg, len);
    if (!err)
        err = simdev_open(sd);
    if (!err)
        err = nb_install_begin(&in, &sd->dev, pkg + NB_PKG_HDR_SIZE,
                               pkg[8] | pkg[9] << 8 | pkg[10] << 16 |
                                   (uint32_t)pkg[11] << 24,
                               target);
    if (err)
        return err;
    if (downgrade)
        *downgrade = in.downgrade;
    const struct nb_manifest *m = &sd->dev.manifest;
    const uint8_t *payload = pkg + m->payload_offset;
    for (uint32_t done = 0; done < m->payload_size;) {
        uint32_t n = m->payload_size - done < SIMDEV_CHUNK
                         ? m->payload_size - done
                         : SIMDEV_CHUNK;
        err = nb_install_write(&in, payload + done, n);
        if (err)
            return err;
        done += n;
    }
    return nb_install_finish(&in);
}

nb_err simdev_stage(struct simdev *sd, const uint8_t *pkg, uint32_t len,
                    int *downgrade)
{
    nb_err err = install(sd, pkg, len, NB_TARGET_UPDATE, downgrade);
    return err ? err : nb_install_set_pending(&sd->dev);
}

nb_err simdev_factory(struct simdev *sd, const uint8_t *pkg, uint32_t len)
{
    return install(sd, pkg, len, NB_TARGET_FACTORY, NULL);
}

nb_err simdev_boot(struct simdev *sd, struct nb_boot_result *res)
{
    nb_err err = simdev_open(sd);
    return err ? err : nb_boot(&sd->dev, res);
}

nb_err simdev_confirm(struct simdev *sd)
{
    nb_err err = simdev_open(sd);
    return err ? err : nb_confirm(&sd->dev);
}

nb_err simdev_make_package(struct simdev *sd, uint32_t version, uint32_t svn,
                           uint32_t payload_size, uint64_t seed,
                           struct nb_buf *out)
{
    return nb_testpkg_make(&sd->keys, &sd->crypto, version, svn,
                           payload_size, seed, out);
}
