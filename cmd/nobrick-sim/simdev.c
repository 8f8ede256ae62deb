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

void simdev_bind(struct simdev *sd)
{
    nb_simflash_interface(sd->sim, &sd->flash);
    nb_crypto_mbedtls_init(&sd->crypto, &sd->mc);
    memset(&sd->cfg, 0, sizeof(sd->cfg));
    sd->cfg.flash = &sd->flash;
    sd->cfg.crypto = &sd->crypto;
    sd->cfg.layout = sd->board.layout;
    sd->cfg.buf = sd->buf;
    sd->cfg.buf_size = SIMDEV_BUF;
}

nb_err simdev_open(struct simdev *sd)
{
    return nb_device_open(&sd->dev, &sd->cfg);
}

static nb_err stream(struct nb_install *in, const uint8_t *img, uint32_t len)
{
    for (uint32_t done = 0; done < len;) {
        uint32_t n = len - done < SIMDEV_CHUNK ? len - done : SIMDEV_CHUNK;
        nb_err err = nb_install_write(in, img + done, n);
        if (err)
            return err;
        done += n;
    }
    return nb_install_finish(in);
}

static nb_err install(struct simdev *sd, const uint8_t *img, uint32_t len,
                      uint8_t target, int *downgrade)
{
    struct nb_install in;
    struct nb_image_info hi;
    if (len < NB_IMAGE_HDR_SIZE)
        return NB_ERR_CORRUPT;
    /* Refuse a file that disagrees with its header before the journal
     * hears of it. */
    nb_err err = nb_image_parse_header(img, len, &hi);
    if (err)
        return err;
    if (hi.size != len)
        return NB_ERR_CORRUPT;
    err = simdev_open(sd);
    if (!err)
        err = nb_install_begin(&in, &sd->dev, img, target);
    if (err)
        return err;
    if (downgrade)
        *downgrade = in.downgrade;
    return stream(&in, img, len);
}

nb_err simdev_stage(struct simdev *sd, const uint8_t *img, uint32_t len,
                    int *downgrade)
{
    nb_err err = install(sd, img, len, NB_TARGET_UPDATE, downgrade);
    return err ? err : nb_install_set_pending(&sd->dev);
}

nb_err simdev_factory(struct simdev *sd, const uint8_t *img, uint32_t len)
{
    return install(sd, img, len, NB_TARGET_FACTORY, NULL);
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

nb_err simdev_make_image(const struct nb_crypto *crypto, uint32_t version,
                         uint32_t svn, uint32_t payload_size, uint64_t seed,
                         uint8_t *out)
{
    uint8_t *payload = out + NB_IMAGE_HDR_SIZE;
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (uint32_t i = 0; i < payload_size; i++) {
        /* xorshift64*: reproducible bytes that differ per image. */
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        payload[i] = (uint8_t)((x * 0x2545F4914F6CDD1Dull) >> 56);
    }
    return nb_image_make_header(crypto, payload, payload_size, version, svn,
                                out);
}
