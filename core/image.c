/* image.c - the image header and the one function that says whether the
 * bytes in a slot form a good image. */
#include <string.h>

#include "nb_image.h"

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

int nb_version_pack(uint32_t major, uint32_t minor, uint32_t patch,
                    uint32_t *out)
{
    if (major > 255 || minor > 255 || patch > 65535)
        return 0;
    *out = major << 24 | minor << 16 | patch;
    return 1;
}

uint32_t nb_version_major(uint32_t v) { return v >> 24; }
uint32_t nb_version_minor(uint32_t v) { return (v >> 16) & 0xFF; }
uint32_t nb_version_patch(uint32_t v) { return v & 0xFFFF; }

nb_err nb_image_parse_header(const uint8_t hdr[NB_IMAGE_HDR_SIZE],
                             uint32_t max_size, struct nb_image_info *info)
{
    if (get32(hdr) != NB_IMAGE_MAGIC)
        return NB_ERR_CORRUPT;
    if ((hdr[4] | hdr[5] << 8) != NB_IMAGE_HDR_SIZE ||
        (hdr[6] | hdr[7] << 8) != NB_IMAGE_HDR_VERSION)
        return NB_ERR_CORRUPT;
    for (unsigned i = 20; i < 32; i++)
        if (hdr[i] != 0)
            return NB_ERR_CORRUPT;
    uint32_t payload = get32(hdr + 8);
    if (payload > 0xFFFFFFFFu - NB_IMAGE_HDR_SIZE)
        return NB_ERR_CORRUPT;
    if (payload + NB_IMAGE_HDR_SIZE > max_size)
        return NB_ERR_NOSPC;
    info->size = payload + NB_IMAGE_HDR_SIZE;
    info->version = get32(hdr + 12);
    info->svn = get32(hdr + 16);
    memcpy(info->digest, hdr + 32, NB_SHA256_LEN);
    return NB_OK;
}

nb_err nb_image_make_header(const struct nb_crypto *crypto,
                            const uint8_t *payload, uint32_t payload_size,
                            uint32_t version, uint32_t svn,
                            uint8_t hdr[NB_IMAGE_HDR_SIZE])
{
    memset(hdr, 0, NB_IMAGE_HDR_SIZE);
    put32(hdr, NB_IMAGE_MAGIC);
    hdr[4] = NB_IMAGE_HDR_SIZE;
    hdr[6] = NB_IMAGE_HDR_VERSION;
    put32(hdr + 8, payload_size);
    put32(hdr + 12, version);
    put32(hdr + 16, svn);
    nb_err err = crypto->sha256_start(crypto->ctx);
    if (!err)
        err = crypto->sha256_update(crypto->ctx, hdr, 32);
    if (!err)
        err = crypto->sha256_update(crypto->ctx, payload, payload_size);
    if (!err)
        err = crypto->sha256_finish(crypto->ctx, hdr + 32);
    return err;
}

nb_err nb_image_verify(const struct nb_flash *flash,
                       const struct nb_crypto *crypto, uint32_t off,
                       uint32_t area, uint8_t *buf, uint32_t buf_size,
                       struct nb_image_info *info)
{
    uint8_t digest[NB_SHA256_LEN];
    struct nb_image_info hi;
    if (buf_size < NB_IMAGE_HDR_SIZE || area < NB_IMAGE_HDR_SIZE)
        return NB_ERR_NOMEM;
    nb_err err = flash->read(flash->ctx, off, buf, NB_IMAGE_HDR_SIZE);
    if (err)
        return err;
    err = nb_image_parse_header(buf, area, &hi);
    if (err == NB_ERR_NOSPC)
        return NB_ERR_CORRUPT; /* a size past the slot is a broken header */
    if (err)
        return err;
    err = crypto->sha256_start(crypto->ctx);
    if (!err)
        err = crypto->sha256_update(crypto->ctx, buf, 32);
    for (uint32_t done = NB_IMAGE_HDR_SIZE; !err && done < hi.size;) {
        uint32_t n = hi.size - done < buf_size ? hi.size - done : buf_size;
        err = flash->read(flash->ctx, off + done, buf, n);
        if (!err)
            err = crypto->sha256_update(crypto->ctx, buf, n);
        done += n;
    }
    if (!err)
        err = crypto->sha256_finish(crypto->ctx, digest);
    if (err)
        return err;
    /* Not constant time: the digest is public, nothing secret leaks. */
    if (memcmp(digest, hi.digest, NB_SHA256_LEN) != 0)
        return NB_ERR_CORRUPT;
    *info = hi;
    return NB_OK;
}
