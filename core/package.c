/* package.c - is the package in a slot good to boot? Every byte of the
 * slot is accounted for: container header, signed manifest, zero padding,
 * payload (SHA-256 from the manifest) and an erased tail. */
#include <string.h>

#include "nb_package.h"

nb_err nb_pkg_verify_slot(const struct nb_pkg_env *env, uint32_t off,
                          uint32_t area, struct nb_manifest *m,
                          struct nb_image_info *info)
{
    const struct nb_flash *f = env->flash;
    const struct nb_crypto *c = env->crypto;
    uint32_t mlen;
    int ok;
    if (env->buf_size < NB_PKG_HDR_SIZE)
        return NB_ERR_NOMEM;
    if (area < NB_PKG_HDR_SIZE)
        return NB_ERR_TRUNCATED;
    nb_err err = f->read(f->ctx, off, env->buf, NB_PKG_HDR_SIZE);
    if (err)
        return err;
    if ((err = nb_pkg_parse_header(env->buf, &mlen)))
        return err;
    if (mlen > env->mbuf_size)
        return NB_ERR_NOSPC;
    if (NB_PKG_HDR_SIZE + mlen > area)
        return NB_ERR_TRUNCATED;
    if ((err = f->read(f->ctx, off + NB_PKG_HDR_SIZE, env->mbuf, mlen)))
        return err;
    if ((err = nb_manifest_verify(c, env->keystore, env->rev, env->mbuf, mlen,
                                  m)))
        return err;
    if ((err = nb_manifest_check_device(m, env->mbuf, env->identity, area)))
        return err;
    /* Padding between manifest and payload: zero, so nothing unsigned
     * can hide there. */
    uint32_t pad = NB_PKG_HDR_SIZE + mlen;
    err = nb_flash_is_filled(f, off + pad, m->payload_offset - pad, 0,
                             env->buf, env->buf_size, &ok);
    if (err)
        return err;
    if (!ok)
        return NB_ERR_MALFORMED;
    uint8_t digest[NB_SHA256_LEN];
    err = c->sha256_start(c->ctx);
    for (uint32_t done = 0; !err && done < m->payload_size;) {
        uint32_t n = m->payload_size - done < env->buf_size
                         ? m->payload_size - done
                         : env->buf_size;
        err = f->read(f->ctx, off + m->payload_offset + done, env->buf, n);
        if (!err)
            err = c->sha256_update(c->ctx, env->buf, n);
        done += n;
    }
    if (!err)
        err = c->sha256_finish(c->ctx, digest);
    if (err)
        return err;
    if (memcmp(digest, m->digest, NB_SHA256_LEN) != 0)
        return NB_ERR_DIGEST;
    /* The tail up to the end of the slot is erased: nothing appended. */
    uint32_t end = m->payload_offset + m->payload_size;
    err = nb_flash_is_erased(f, off + end, area - end, env->buf,
                             env->buf_size, &ok);
    if (err)
        return err;
    if (!ok)
        return NB_ERR_TRAILING;
    info->size = end;
    info->version = m->version;
    info->svn = m->svn;
    memcpy(info->digest, m->digest, NB_SHA256_LEN);
    return NB_OK;
}
