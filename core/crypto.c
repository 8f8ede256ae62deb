/* crypto.c - helpers over the crypto port. */
#include "nb_crypto.h"

nb_err nb_crypto_check(const struct nb_crypto *c)
{
    if (!c || !c->sha256_start || !c->sha256_update || !c->sha256_finish)
        return NB_ERR_INVAL;
    return NB_OK;
}

nb_err nb_sha256(const struct nb_crypto *c, const void *data, size_t len,
                 uint8_t digest[NB_SHA256_LEN])
{
    nb_err err = c->sha256_start(c->ctx);
    if (err)
        return err;
    err = c->sha256_update(c->ctx, data, len);
    if (err)
        return err;
    return c->sha256_finish(c->ctx, digest);
}
