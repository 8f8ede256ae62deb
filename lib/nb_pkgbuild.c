/* nb_pkgbuild.c - encoding packages, delegations and revocation lists (host
 * side); the core's manifest.c is the decoder of the same formats. */
#include <stdlib.h>
#include <string.h>

#include "nb_cbor.h"
#include "nb_pkgbuild.h"

void nb_buf_free(struct nb_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static nb_err put(struct nb_buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q)
            return NB_ERR_NOMEM;
        b->p = q;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    return NB_OK;
}

static nb_err head(struct nb_buf *b, uint8_t major, uint64_t val)
{
    uint8_t h[9];
    return put(b, h, nb_cbor_head(h, major, val));
}

static nb_err uint_(struct nb_buf *b, uint64_t v)
{
    return head(b, NB_CBOR_UINT, v);
}

static nb_err int_(struct nb_buf *b, int64_t v)
{
    return v >= 0 ? head(b, NB_CBOR_UINT, (uint64_t)v)
                  : head(b, NB_CBOR_NINT, (uint64_t)(-1 - v));
}

static nb_err bstr(struct nb_buf *b, const void *p, size_t n)
{
    nb_err err = head(b, NB_CBOR_BSTR, n);
    return err ? err : put(b, p, n);
}

static nb_err tstr(struct nb_buf *b, const char *s)
{
    size_t n = strlen(s);
    nb_err err = head(b, NB_CBOR_TSTR, n);
    return err ? err : put(b, s, n);
}

/* Hash the Sig_structure of RFC 9052 4.4 and sign it. */
static nb_err sign(const struct nb_crypto *c, const struct nb_signer *s,
                   const struct nb_buf *prot, const struct nb_buf *payload,
                   uint8_t sig[NB_SIG_LEN])
{
    struct nb_buf ss = {0};
    uint8_t hash[NB_SHA256_LEN];
    nb_err err = head(&ss, NB_CBOR_ARRAY, 4);
    if (!err)
        err = tstr(&ss, "Signature1");
    if (!err)
        err = bstr(&ss, prot->p, prot->len);
    if (!err)
        err = bstr(&ss, NULL, 0);
    if (!err)
        err = bstr(&ss, payload->p, payload->len);
    if (!err)
        err = nb_sha256(c, ss.p, ss.len, hash);
    if (!err)
        err = s->sign(s->ctx, hash, sig);
    nb_buf_free(&ss);
    return err;
}

/* Tagged COSE_Sign1 around an encoded payload. With `sig` NULL the
 * signature is zeros (used to measure the length before signing). */
static nb_err sign1(const struct nb_crypto *c, const struct nb_signer *s,
                    const uint8_t *deleg, size_t deleg_len,
                    const struct nb_buf *payload, int really,
                    struct nb_buf *out)
{
    struct nb_buf prot = {0};
    uint8_t kid[NB_KEY_ID_LEN], sig[NB_SIG_LEN] = {0};
    nb_err err = nb_key_id(c, s->pub, kid);
    if (!err)
        err = head(&prot, NB_CBOR_MAP, 2);
    if (!err)
        err = uint_(&prot, 1);
    if (!err)
        err = int_(&prot, NB_COSE_ALG_ES256);
    if (!err)
        err = uint_(&prot, 4);
    if (!err)
        err = bstr(&prot, kid, NB_KEY_ID_LEN);
    if (!err && really)
        err = sign(c, s, &prot, payload, sig);
    if (!err)
        err = head(out, NB_CBOR_TAG, NB_COSE_TAG_SIGN1);
    if (!err)
        err = head(out, NB_CBOR_ARRAY, 4);
    if (!err)
        err = bstr(out, prot.p, prot.len);
    if (!err && deleg) {
        err = head(out, NB_CBOR_MAP, 1);
        if (!err)
            err = int_(out, NB_COSE_LABEL_DELEGATION);
        if (!err)
            err = bstr(out, deleg, deleg_len);
    } else if (!err) {
        err = head(out, NB_CBOR_MAP, 0);
    }
    if (!err)
        err = bstr(out, payload->p, payload->len);
    if (!err)
        err = bstr(out, sig, NB_SIG_LEN);
    nb_buf_free(&prot);
    return err;
}

nb_err nb_build_delegation(const struct nb_crypto *c,
                           const struct nb_signer *root,
                           const struct nb_delegation_req *req,
                           struct nb_buf *out)
{
    struct nb_buf p = {0};
    uint8_t kid[NB_KEY_ID_LEN];
    if (req->class_count > NB_MAX_CLASSES || req->pub[0] != 0x04 ||
        req->not_after < req->not_before)
        return NB_ERR_INVAL;
    nb_err err = nb_key_id(c, req->pub, kid);
    if (!err)
        err = head(&p, NB_CBOR_MAP, 6);
    if (!err && !(err = uint_(&p, 1)))
        err = bstr(&p, kid, NB_KEY_ID_LEN);
    if (!err && !(err = uint_(&p, 2)))
        err = bstr(&p, req->pub, NB_PUBKEY_LEN);
    if (!err && !(err = uint_(&p, 3)))
        err = uint_(&p, req->not_before);
    if (!err && !(err = uint_(&p, 4)))
        err = uint_(&p, req->not_after);
    if (!err && !(err = uint_(&p, 5)))
        err = bstr(&p, req->vendor, NB_UUID_LEN);
    if (!err && !(err = uint_(&p, 6)))
        err = head(&p, NB_CBOR_ARRAY, req->class_count);
    for (unsigned i = 0; !err && i < req->class_count; i++)
        err = bstr(&p, req->classes[i], NB_UUID_LEN);
    if (!err)
        err = sign1(c, root, NULL, 0, &p, 1, out);
    nb_buf_free(&p);
    return err;
}

nb_err nb_build_revocation(const struct nb_crypto *c,
                           const struct nb_signer *root, uint32_t seq,
                           unsigned count,
                           const uint8_t kids[][NB_KEY_ID_LEN],
                           struct nb_buf *out)
{
    struct nb_buf p = {0};
    if (count > NB_MAX_REVOKED)
        return NB_ERR_NOSPC;
    nb_err err = head(&p, NB_CBOR_MAP, 2);
    if (!err && !(err = uint_(&p, 1)))
        err = uint_(&p, seq);
    if (!err && !(err = uint_(&p, 2)))
        err = head(&p, NB_CBOR_ARRAY, count);
    for (unsigned i = 0; !err && i < count; i++)
        err = bstr(&p, kids[i], NB_KEY_ID_LEN);
    if (!err)
        err = sign1(c, root, NULL, 0, &p, 1, out);
    nb_buf_free(&p);
    return err;
}

/* Blocks of 4 KiB or more, at most 256 of them: the table stays <= 8 KiB. */
static uint32_t auto_block_size(size_t payload_len)
{
    uint32_t bs = 4096;
    while ((payload_len + bs - 1) / bs > 256 && bs < 1048576)
        bs *= 2;
    return bs;
}

static nb_err manifest_map(const struct nb_crypto *c,
                           const struct nb_manifest_req *r, uint32_t bs,
                           const uint8_t kid[NB_KEY_ID_LEN],
                           const uint8_t *payload, size_t len,
                           uint32_t offset, struct nb_buf *p)
{
    uint8_t digest[NB_SHA256_LEN];
    size_t blocks = (len + bs - 1) / bs;
    nb_err err = head(p, NB_CBOR_MAP, r->has_precursor ? 15 : 14);
    if (!err && !(err = uint_(p, 1)))
        err = uint_(p, NB_MANIFEST_FORMAT);
    if (!err && !(err = uint_(p, 2)))
        err = bstr(p, r->vendor, NB_UUID_LEN);
    if (!err && !(err = uint_(p, 3)))
        err = bstr(p, r->class_id, NB_UUID_LEN);
    if (!err && !(err = uint_(p, 4)))
        err = head(p, NB_CBOR_ARRAY, r->hw_count);
    for (unsigned i = 0; !err && i < r->hw_count; i++)
        err = tstr(p, r->hw[i]);
    if (!err && !(err = uint_(p, 5)))
        err = head(p, NB_CBOR_ARRAY, 3);
    if (!err && !(err = uint_(p, r->major)) && !(err = uint_(p, r->minor)))
        err = uint_(p, r->patch);
    if (!err && !(err = uint_(p, 6)))
        err = uint_(p, r->svn);
    if (!err && !(err = uint_(p, 7)))
        err = uint_(p, len);
    if (!err)
        err = nb_sha256(c, payload, len, digest);
    if (!err && !(err = uint_(p, 8)))
        err = bstr(p, digest, NB_SHA256_LEN);
    if (!err && !(err = uint_(p, 9)))
        err = uint_(p, bs);
    if (!err && !(err = uint_(p, 10)))
        err = head(p, NB_CBOR_BSTR, blocks * NB_SHA256_LEN);
    for (size_t i = 0; !err && i < blocks; i++) {
        size_t n = len - i * bs < bs ? len - i * bs : bs;
        err = nb_sha256(c, payload + i * bs, n, digest);
        if (!err)
            err = put(p, digest, NB_SHA256_LEN);
    }
    if (!err && !(err = uint_(p, 11)))
        err = uint_(p, r->payload_format);
    if (!err && r->has_precursor && !(err = uint_(p, 12)))
        err = bstr(p, r->precursor, NB_SHA256_LEN);
    if (!err && !(err = uint_(p, 13)))
        err = uint_(p, r->created);
    if (!err && !(err = uint_(p, 14)))
        err = bstr(p, kid, NB_KEY_ID_LEN);
    if (!err && !(err = uint_(p, 15)))
        err = uint_(p, offset);
    return err;
}

nb_err nb_build_manifest(const struct nb_crypto *c,
                         const struct nb_signer *signer,
                         const uint8_t *delegation, size_t delegation_len,
                         const struct nb_manifest_req *req,
                         const uint8_t *payload, size_t payload_len,
                         struct nb_buf *out)
{
    uint8_t kid[NB_KEY_ID_LEN];
    uint32_t bs = req->block_size ? req->block_size
                                  : auto_block_size(payload_len);
    uint32_t offset = req->payload_offset ? req->payload_offset : 512;
    nb_err err;
    if (payload_len == 0 || payload_len > 0xFFFFFFFFu || req->hw_count == 0 ||
        req->hw_count > NB_MAX_HW_REVS || req->major > 255 ||
        req->minor > 255 || req->patch > 65535 || bs < 256 || bs > 1048576 ||
        (bs & (bs - 1)))
        return NB_ERR_INVAL;
    if ((err = nb_key_id(c, signer->pub, kid)))
        return err;
    /* The offset is inside what is signed and must lie past the manifest:
     * measure with a dummy signature until the two agree. */
    for (int round = 0; round < 4; round++) {
        struct nb_buf p = {0}, m = {0};
        err = manifest_map(c, req, bs, kid, payload, payload_len, offset, &p);
        if (!err)
            err = sign1(c, signer, delegation, delegation_len, &p, 0, &m);
        size_t mlen = m.len, need = (NB_PKG_HDR_SIZE + mlen + 511) / 512 * 512;
        nb_buf_free(&m);
        if (!err && req->payload_offset && NB_PKG_HDR_SIZE + mlen > offset)
            err = NB_ERR_NOSPC; /* the requested offset is too small */
        if (!err && (req->payload_offset || need == offset)) {
            out->len = 0;
            err = sign1(c, signer, delegation, delegation_len, &p, 1, out);
            nb_buf_free(&p);
            return err;
        }
        nb_buf_free(&p);
        if (err)
            return err;
        offset = (uint32_t)need;
    }
    return NB_ERR_INVAL;
}

nb_err nb_build_package(const struct nb_crypto *c,
                        const uint8_t *manifest, size_t manifest_len,
                        const uint8_t *payload, size_t payload_len,
                        struct nb_buf *out)
{
    struct nb_manifest m;
    uint8_t hdr[NB_PKG_HDR_SIZE] = {'N', 'B', 'P', 'K', NB_PKG_VERSION};
    if (manifest_len > NB_MANIFEST_MAX)
        return NB_ERR_NOSPC;
    nb_err err = nb_manifest_parse_unverified(c, manifest,
                                              (uint32_t)manifest_len, &m);
    if (err)
        return err;
    if (m.payload_size != payload_len)
        return NB_ERR_INVAL;
    for (int i = 0; i < 4; i++)
        hdr[8 + i] = (uint8_t)(manifest_len >> (8 * i));
    out->len = 0;
    err = put(out, hdr, sizeof(hdr));
    if (!err)
        err = put(out, manifest, manifest_len);
    while (!err && out->len < m.payload_offset) {
        static const uint8_t zero = 0;
        err = put(out, &zero, 1);
    }
    if (!err)
        err = put(out, payload, payload_len);
    return err;
}
