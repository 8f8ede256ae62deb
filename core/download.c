/* download.c - the download engine; see nb_download.h. */
#include "nb_download.h"

/* Read exactly `len` bytes of an open range into the install; a short
 * range is NB_ERR_TRUNCATED. The reads never ask for more than is left,
 * which is what bounds an endless stream. */
static nb_err pump(struct nb_install *in, const struct nb_transport *t,
                   uint32_t len, uint8_t *buf, uint32_t buf_size,
                   struct nb_download_stats *st)
{
    while (len) {
        uint32_t got = 0, cap = len < buf_size ? len : buf_size;
        nb_err err = t->read(t->ctx, buf, cap, &got);
        if (err)
            return err;
        if (got == 0)
            return NB_ERR_TRUNCATED;
        if (got > cap)
            return NB_ERR_RANGE; /* a port that overran its buffer */
        st->bytes += got;
        len -= got;
        if ((err = nb_install_write(in, buf, got)))
            return err;
    }
    return NB_OK;
}

/* Fetch [from, from+len) of the payload as one range. */
static nb_err fetch(struct nb_install *in, const struct nb_transport *t,
                    uint32_t base, uint32_t from, uint32_t len, uint8_t *buf,
                    uint32_t buf_size, struct nb_download_stats *st)
{
    st->opens++;
    nb_err err = t->open(t->ctx, base + from, len);
    if (!err)
        err = pump(in, t, len, buf, buf_size, st);
    t->close(t->ctx);
    return err;
}

nb_err nb_download_payload(struct nb_install *in, const struct nb_transport *t,
                           uint32_t base, uint8_t *buf, uint32_t buf_size,
                           struct nb_download_stats *stats)
{
    struct nb_download_stats local = {0, 0, 0};
    struct nb_download_stats *st = stats ? stats : &local;
    if (!in->dev || !t || !t->open || !t->read || !t->close || !buf ||
        buf_size == 0)
        return NB_ERR_INVAL;
    uint32_t size = in->dev->manifest.payload_size;
    uint32_t bs = in->dev->manifest.block_size;
    unsigned retries = 0;
    while (nb_install_offset(in) < size) {
        uint32_t pos = nb_install_offset(in);
        nb_err err = fetch(in, t, base, pos, size - pos, buf, buf_size, st);
        if (err != NB_ERR_DIGEST)
            return err;
        /* A block failed its check: it was dropped, so the install is at
         * its start. Fetch it again alone, a bounded number of times. */
        st->bad_blocks++;
        for (;;) {
            uint32_t at = nb_install_offset(in);
            uint32_t n = size - at < bs ? size - at : bs;
            if (++retries > NB_DOWNLOAD_BLOCK_RETRIES)
                return NB_ERR_DIGEST;
            err = fetch(in, t, base, at, n, buf, buf_size, st);
            if (err != NB_ERR_DIGEST)
                break;
            st->bad_blocks++;
        }
        if (err)
            return err;
        retries = 0;
    }
    return NB_OK;
}
