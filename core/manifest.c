/* manifest.c - COSE_Sign1 manifests, delegations and revocation lists:
 * verify the signatures, then parse every field strictly. The formats are
 * in docs/package-format.md. */
#include <string.h>

#include "nb_cbor.h"
#include "nb_manifest.h"

/* The shape of a COSE_Sign1: where its parts sit in the buffer. */
struct sign1 {
    const uint8_t *prot;
    size_t prot_len;
    const uint8_t *payload;
    size_t payload_len;
    const uint8_t *sig;
    uint8_t kid[NB_KEY_ID_LEN];
    const uint8_t *deleg; /* outer manifests only */
    size_t deleg_len;
};

/* Protected header: exactly {1: -7, 4: kid}. */
static nb_err parse_protected(struct sign1 *s)
{
    struct nb_cbor c;
    uint64_t n, label;
    unsigned seen = 0;
    nb_cbor_init(&c, s->prot, s->prot_len);
    nb_err err = nb_cbor_map(&c, &n);
    if (err)
        return err;
    for (uint64_t i = 0; i < n; i++) {
        if ((err = nb_cbor_uint(&c, &label)))
            return err == NB_ERR_MALFORMED ? NB_ERR_UNKNOWN_FIELD : err;
        if (label == 1) {
            int64_t alg;
            if (seen & 1)
                return NB_ERR_DUPLICATE;
            if ((err = nb_cbor_int(&c, &alg)))
                return err;
            if (alg != NB_COSE_ALG_ES256)
                return NB_ERR_UNSUPPORTED;
            seen |= 1;
        } else if (label == 4) {
            const uint8_t *p;
            size_t len;
            if (seen & 2)
                return NB_ERR_DUPLICATE;
            if ((err = nb_cbor_bstr(&c, &p, &len)))
                return err;
            if (len != NB_KEY_ID_LEN)
                return NB_ERR_MALFORMED;
            memcpy(s->kid, p, NB_KEY_ID_LEN);
            seen |= 2;
        } else {
            return NB_ERR_UNKNOWN_FIELD; /* crit included: not supported */
        }
    }
    if (!nb_cbor_done(&c))
        return NB_ERR_TRAILING;
    return seen == 3 ? NB_OK : NB_ERR_MALFORMED;
}

/* Unprotected header: {-70001: delegation} on a manifest, {} otherwise. */
static nb_err parse_unprotected(struct nb_cbor *c, int outer, struct sign1 *s)
{
    uint64_t n;
    int64_t label;
    nb_err err = nb_cbor_map(c, &n);
    if (err)
        return err;
    if (n != (outer ? 1u : 0u))
        return n > 1 ? NB_ERR_UNKNOWN_FIELD
                     : (outer ? NB_ERR_MALFORMED : NB_ERR_UNKNOWN_FIELD);
    if (!outer)
        return NB_OK;
    if ((err = nb_cbor_int(c, &label)))
        return err;
    if (label != NB_COSE_LABEL_DELEGATION)
        return NB_ERR_UNKNOWN_FIELD;
    return nb_cbor_bstr(c, &s->deleg, &s->deleg_len);
}

static nb_err parse_sign1(const uint8_t *buf, size_t len, int outer,
                          struct sign1 *s)
{
    struct nb_cbor c;
    uint64_t tag, n;
    size_t sig_len;
    memset(s, 0, sizeof(*s));
    nb_cbor_init(&c, buf, len);
    nb_err err = nb_cbor_tag(&c, &tag);
    if (err)
        return err;
    if (tag != NB_COSE_TAG_SIGN1)
        return NB_ERR_MALFORMED;
    if ((err = nb_cbor_array(&c, &n)))
        return err;
    if (n != 4)
        return NB_ERR_MALFORMED;
    if ((err = nb_cbor_bstr(&c, &s->prot, &s->prot_len)) ||
        (err = parse_unprotected(&c, outer, s)) ||
        (err = nb_cbor_bstr(&c, &s->payload, &s->payload_len)) ||
        (err = nb_cbor_bstr(&c, &s->sig, &sig_len)))
        return err;
    if (sig_len != NB_SIG_LEN)
        return NB_ERR_MALFORMED;
    if (!nb_cbor_done(&c))
        return NB_ERR_TRAILING;
    return parse_protected(s);
}

static nb_err hash_bstr(const struct nb_crypto *c, const uint8_t *p,
                        size_t len)
{
    uint8_t head[9];
    size_t h = nb_cbor_head(head, NB_CBOR_BSTR, len);
    nb_err err = c->sha256_update(c->ctx, head, h);
    return err ? err : c->sha256_update(c->ctx, p, len);
}

/* RFC 9052 section 4.4: Sig_structure = ["Signature1", protected,
 * external_aad = h'', payload], hashed as it streams. */
static nb_err verify_sign1(const struct nb_crypto *c, const struct sign1 *s,
                           const uint8_t pub[NB_PUBKEY_LEN])
{
    static const uint8_t prefix[] = {0x84, 0x6A, 'S', 'i', 'g', 'n', 'a',
                                     't',  'u',  'r', 'e', '1'};
    static const uint8_t empty_aad = 0x40;
    uint8_t hash[NB_SHA256_LEN];
    nb_err err = c->sha256_start(c->ctx);
    if (!err)
        err = c->sha256_update(c->ctx, prefix, sizeof(prefix));
    if (!err)
        err = hash_bstr(c, s->prot, s->prot_len);
    if (!err)
        err = c->sha256_update(c->ctx, &empty_aad, 1);
    if (!err)
        err = hash_bstr(c, s->payload, s->payload_len);
    if (!err)
        err = c->sha256_finish(c->ctx, hash);
    if (err)
        return err;
    err = c->ecdsa_p256_verify(c->ctx, pub, hash, s->sig);
    /* Out of memory or a failing port is no verdict on the signature. */
    if (err == NB_OK || err == NB_ERR_NOMEM || err == NB_ERR_IO)
        return err;
    return NB_ERR_SIGNATURE;
}

/* A keystore that cannot answer (a secure element's bus error, no memory)
 * gives no verdict: only "no such key" means the key is unknown, or a
 * good image would be rejected for good. */
static nb_err key_error(nb_err err)
{
    if (err == NB_ERR_IO || err == NB_ERR_NOMEM || err == NB_ERR_POWER)
        return err;
    return NB_ERR_UNKNOWN_KEY;
}

nb_err nb_key_id(const struct nb_crypto *c, const uint8_t pub[NB_PUBKEY_LEN],
                 uint8_t kid[NB_KEY_ID_LEN])
{
    uint8_t d[NB_SHA256_LEN];
    nb_err err = nb_sha256(c, pub, NB_PUBKEY_LEN, d);
    if (!err)
        memcpy(kid, d, NB_KEY_ID_LEN);
    return err;
}

/* Fixed-size byte string field. */
static nb_err fixed_bstr(struct nb_cbor *c, uint8_t *out, size_t want)
{
    const uint8_t *p;
    size_t len;
    nb_err err = nb_cbor_bstr(c, &p, &len);
    if (err)
        return err;
    if (len != want)
        return NB_ERR_MALFORMED;
    memcpy(out, p, want);
    return NB_OK;
}

static nb_err uint32_field(struct nb_cbor *c, uint32_t *out)
{
    uint64_t v;
    nb_err err = nb_cbor_uint(c, &v);
    if (err)
        return err;
    if (v > 0xFFFFFFFFu)
        return NB_ERR_MALFORMED;
    *out = (uint32_t)v;
    return NB_OK;
}

/* Extension (negative) keys seen in one map: bounded, so that a
 * duplicate can be refused like any other duplicate key. */
#define NB_MAX_EXTENSIONS 8

struct ext_seen {
    unsigned n;
    int64_t key[NB_MAX_EXTENSIONS];
};

/* Map key: a positive key (0 included) is returned; a negative one (an
 * extension) has its value skipped and *key set to EXTENSION. */
#define EXTENSION UINT64_MAX
static nb_err map_key(struct nb_cbor *c, struct ext_seen *ext, uint64_t *key)
{
    int64_t k;
    nb_err err = nb_cbor_int(c, &k);
    if (err)
        return err;
    if (k < 0) {
        for (unsigned i = 0; i < ext->n; i++)
            if (ext->key[i] == k)
                return NB_ERR_DUPLICATE;
        if (ext->n == NB_MAX_EXTENSIONS)
            return NB_ERR_MALFORMED; /* more extensions than we track */
        ext->key[ext->n++] = k;
        *key = EXTENSION;
        return nb_cbor_skip(c);
    }
    *key = (uint64_t)k;
    return NB_OK;
}

static nb_err parse_delegation(const struct nb_crypto *cr,
                               const struct sign1 *s, struct nb_delegation *d)
{
    struct nb_cbor c;
    uint64_t n, key, v;
    uint32_t seen = 0;
    uint8_t kid[NB_KEY_ID_LEN];
    struct ext_seen ext = {0, {0}};
    nb_err err;
    memset(d, 0, sizeof(*d));
    memcpy(d->root_kid, s->kid, NB_KEY_ID_LEN);
    nb_cbor_init(&c, s->payload, s->payload_len);
    if ((err = nb_cbor_map(&c, &n)))
        return err;
    for (uint64_t i = 0; i < n; i++) {
        if ((err = map_key(&c, &ext, &key)))
            return err;
        if (key == EXTENSION)
            continue;
        if (key == 0 || key > 6)
            return NB_ERR_UNKNOWN_FIELD;
        if (seen & (1u << key))
            return NB_ERR_DUPLICATE;
        seen |= 1u << key;
        switch (key) {
        case 1: err = fixed_bstr(&c, d->kid, NB_KEY_ID_LEN); break;
        case 2: err = fixed_bstr(&c, d->pub, NB_PUBKEY_LEN); break;
        case 3: err = nb_cbor_uint(&c, &d->not_before); break;
        case 4: err = nb_cbor_uint(&c, &d->not_after); break;
        case 5: err = fixed_bstr(&c, d->vendor, NB_UUID_LEN); break;
        case 6:
            if ((err = nb_cbor_array(&c, &v)))
                return err;
            if (v > NB_MAX_CLASSES)
                return NB_ERR_MALFORMED;
            d->class_count = (uint8_t)v;
            for (uint64_t k = 0; k < v && !err; k++)
                err = fixed_bstr(&c, d->classes[k], NB_UUID_LEN);
            break;
        }
        if (err)
            return err;
    }
    if (!nb_cbor_done(&c))
        return NB_ERR_TRAILING;
    if (seen != 0x7E || d->pub[0] != 0x04)
        return NB_ERR_MALFORMED;
    /* The key ID names this very key: a root cannot vouch for one key
     * under another's name. */
    if ((err = nb_key_id(cr, d->pub, kid)))
        return err;
    return memcmp(kid, d->kid, NB_KEY_ID_LEN) ? NB_ERR_MALFORMED : NB_OK;
}

static nb_err parse_hw(struct nb_cbor *c, const uint8_t *base,
                       struct nb_manifest *m)
{
    uint64_t n;
    nb_err err = nb_cbor_array(c, &n);
    if (err)
        return err;
    if (n == 0 || n > NB_MAX_HW_REVS)
        return NB_ERR_MALFORMED;
    m->hw_count = (uint8_t)n;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *p;
        size_t len;
        if ((err = nb_cbor_tstr(c, &p, &len)))
            return err;
        if (len == 0 || len > NB_HW_REV_MAX)
            return NB_ERR_MALFORMED;
        m->hw_off[i] = (uint16_t)(p - base);
        m->hw_len[i] = (uint8_t)len;
    }
    return NB_OK;
}

static nb_err parse_version(struct nb_cbor *c, uint32_t *out)
{
    static const uint32_t max[3] = {255, 255, 65535};
    uint64_t n, v[3];
    nb_err err = nb_cbor_array(c, &n);
    if (err)
        return err;
    if (n != 3)
        return NB_ERR_MALFORMED;
    for (int i = 0; i < 3; i++) {
        if ((err = nb_cbor_uint(c, &v[i])))
            return err;
        if (v[i] > max[i])
            return NB_ERR_MALFORMED;
    }
    *out = (uint32_t)(v[0] << 24 | v[1] << 16 | v[2]);
    return NB_OK;
}

/* Blocks of a power-of-two size covering `size` bytes, without a 64-bit
 * division (the core links without libgcc helpers on Cortex-M). */
static uint32_t block_count(uint32_t size, uint32_t bs)
{
    unsigned shift = 0;
    while ((1u << shift) < bs)
        shift++;
    return (uint32_t)(((uint64_t)size + bs - 1) >> shift);
}

static nb_err parse_fields(struct nb_cbor *c, const uint8_t *base,
                           uint32_t total_len, struct nb_manifest *m)
{
    uint64_t n, key, v;
    uint32_t seen = 0, table_len = 0, fmt_version = 0;
    struct ext_seen ext = {0, {0}};
    const uint8_t *table = NULL;
    size_t len;
    nb_err err = nb_cbor_map(c, &n);
    if (err)
        return err;
    for (uint64_t i = 0; i < n; i++) {
        if ((err = map_key(c, &ext, &key)))
            return err;
        if (key == EXTENSION)
            continue;
        if (key == 0 || key > 15)
            return NB_ERR_UNKNOWN_FIELD;
        if (seen & (1u << key))
            return NB_ERR_DUPLICATE;
        seen |= 1u << key;
        switch (key) {
        case 1: err = uint32_field(c, &fmt_version); break;
        case 2: err = fixed_bstr(c, m->vendor, NB_UUID_LEN); break;
        case 3: err = fixed_bstr(c, m->class_id, NB_UUID_LEN); break;
        case 4: err = parse_hw(c, base, m); break;
        case 5: err = parse_version(c, &m->version); break;
        case 6: err = uint32_field(c, &m->svn); break;
        case 7: err = uint32_field(c, &m->payload_size); break;
        case 8: err = fixed_bstr(c, m->digest, NB_SHA256_LEN); break;
        case 9: err = uint32_field(c, &m->block_size); break;
        case 10:
            err = nb_cbor_bstr(c, &table, &len);
            if (!err && len > NB_MANIFEST_MAX)
                err = NB_ERR_MALFORMED;
            table_len = (uint32_t)len;
            break;
        case 11:
            err = nb_cbor_uint(c, &v);
            if (!err && v > NB_PAYLOAD_ENCRYPTED)
                err = NB_ERR_MALFORMED;
            m->payload_format = (uint8_t)v;
            break;
        case 12:
            err = fixed_bstr(c, m->precursor, NB_SHA256_LEN);
            m->has_precursor = 1;
            break;
        case 13: err = nb_cbor_uint(c, &m->created); break;
        case 14: err = fixed_bstr(c, m->kid, NB_KEY_ID_LEN); break;
        case 15: err = uint32_field(c, &m->payload_offset); break;
        }
        if (err)
            return err;
    }
    if (!nb_cbor_done(c))
        return NB_ERR_TRAILING;
    if ((seen & 0xEFFEu) != 0xEFFEu) /* all but 12 (precursor) */
        return NB_ERR_MALFORMED;
    if (fmt_version != NB_MANIFEST_FORMAT)
        return NB_ERR_UNSUPPORTED;
    if (m->payload_size == 0 || m->block_size < 256 ||
        m->block_size > 1048576 || (m->block_size & (m->block_size - 1)))
        return NB_ERR_MALFORMED;
    m->block_count = block_count(m->payload_size, m->block_size);
    if ((uint64_t)m->block_count * NB_SHA256_LEN != table_len)
        return NB_ERR_MALFORMED;
    m->block_table_off = (uint16_t)(table - base);
    if (m->payload_offset > NB_PAYLOAD_OFFSET_MAX ||
        m->payload_offset < NB_PKG_HDR_SIZE + total_len)
        return NB_ERR_MALFORMED;
    if (m->payload_format != NB_PAYLOAD_RAW)
        return NB_ERR_UNSUPPORTED;
    return NB_OK;
}

/* Everything but the two signature checks; `verify` says whether they
 * run (inspection tools skip them). */
static nb_err manifest(const struct nb_crypto *c, const struct nb_keystore *ks,
                       const struct nb_revocations *rev, const uint8_t *buf,
                       uint32_t len, int verify, struct nb_manifest *m)
{
    struct sign1 outer, inner;
    uint8_t root[NB_PUBKEY_LEN];
    nb_err err;
    memset(m, 0, sizeof(*m));
    if (len > NB_MANIFEST_MAX)
        return NB_ERR_NOSPC;
    if (verify && (!ks || !ks->root_key || !c->ecdsa_p256_verify))
        return NB_ERR_INVAL;
    if ((err = parse_sign1(buf, len, 1, &outer)) ||
        (err = parse_sign1(outer.deleg, outer.deleg_len, 0, &inner)))
        return err;
    if (verify) {
        err = ks->root_key(ks->ctx, inner.kid, root);
        if (err)
            return key_error(err);
        if ((err = verify_sign1(c, &inner, root)))
            return err;
    }
    struct nb_delegation *d = &m->delegation;
    if ((err = parse_delegation(c, &inner, d)))
        return err;
    if (verify) {
        if (rev)
            for (unsigned i = 0; i < rev->count && i < NB_MAX_REVOKED; i++)
                if (memcmp(rev->kid[i], d->kid, NB_KEY_ID_LEN) == 0)
                    return NB_ERR_REVOKED;
        if (memcmp(outer.kid, d->kid, NB_KEY_ID_LEN) != 0)
            return NB_ERR_UNKNOWN_KEY; /* signed by a key nobody delegated */
        if ((err = verify_sign1(c, &outer, d->pub)))
            return err;
    }
    struct nb_cbor cb;
    nb_cbor_init(&cb, outer.payload, outer.payload_len);
    if ((err = parse_fields(&cb, buf, len, m)))
        return err;
    m->len = len;
    /* Inspection stops here: the rest is policy over verified fields. */
    if (!verify)
        return NB_OK;
    if (memcmp(m->kid, outer.kid, NB_KEY_ID_LEN) != 0)
        return NB_ERR_MALFORMED;
    return nb_manifest_check_delegation(m);
}

nb_err nb_manifest_check_delegation(const struct nb_manifest *m)
{
    const struct nb_delegation *d = &m->delegation;
    if (memcmp(m->kid, d->kid, NB_KEY_ID_LEN) != 0)
        return NB_ERR_UNKNOWN_KEY;
    if (m->created < d->not_before || m->created > d->not_after)
        return NB_ERR_EXPIRED;
    if (memcmp(m->vendor, d->vendor, NB_UUID_LEN) != 0)
        return NB_ERR_VENDOR;
    if (d->class_count) {
        unsigned i = 0;
        while (i < d->class_count &&
               memcmp(d->classes[i], m->class_id, NB_UUID_LEN) != 0)
            i++;
        if (i == d->class_count)
            return NB_ERR_CLASS;
    }
    return NB_OK;
}

nb_err nb_manifest_verify(const struct nb_crypto *c,
                          const struct nb_keystore *ks,
                          const struct nb_revocations *rev, const uint8_t *m,
                          uint32_t len, struct nb_manifest *out)
{
    return manifest(c, ks, rev, m, len, 1, out);
}

nb_err nb_manifest_parse_unverified(const struct nb_crypto *c,
                                    const uint8_t *m, uint32_t len,
                                    struct nb_manifest *out)
{
    return manifest(c, NULL, NULL, m, len, 0, out);
}

nb_err nb_manifest_check_device(const struct nb_manifest *m,
                                const uint8_t *mbytes,
                                const struct nb_identity *id,
                                uint32_t capacity)
{
    if (memcmp(m->vendor, id->vendor, NB_UUID_LEN) != 0)
        return NB_ERR_VENDOR;
    if (memcmp(m->class_id, id->class_id, NB_UUID_LEN) != 0)
        return NB_ERR_CLASS;
    unsigned i = 0;
    while (i < m->hw_count &&
           (m->hw_len[i] != id->hw_rev_len ||
            memcmp(mbytes + m->hw_off[i], id->hw_rev, id->hw_rev_len) != 0))
        i++;
    if (i == m->hw_count)
        return NB_ERR_HW_REV;
    if ((uint64_t)m->payload_offset + m->payload_size > capacity)
        return NB_ERR_NOSPC;
    return NB_OK;
}

const uint8_t *nb_manifest_block_digest(const struct nb_manifest *m,
                                        const uint8_t *mbytes, uint32_t i)
{
    if (i >= m->block_count)
        return NULL;
    return mbytes + m->block_table_off + (size_t)i * NB_SHA256_LEN;
}

nb_err nb_revocation_verify(const struct nb_crypto *c,
                            const struct nb_keystore *ks,
                            const struct nb_revocations *current,
                            const uint8_t *list, uint32_t len,
                            struct nb_revocations *out)
{
    struct sign1 s;
    struct nb_cbor cb;
    uint8_t root[NB_PUBKEY_LEN];
    uint64_t n, key, v;
    uint32_t seen = 0;
    struct ext_seen ext = {0, {0}};
    nb_err err;
    memset(out, 0, sizeof(*out));
    if (!ks || !ks->root_key || !c->ecdsa_p256_verify)
        return NB_ERR_INVAL;
    if ((err = parse_sign1(list, len, 0, &s)))
        return err;
    if ((err = ks->root_key(ks->ctx, s.kid, root)))
        return key_error(err);
    if ((err = verify_sign1(c, &s, root)))
        return err;
    nb_cbor_init(&cb, s.payload, s.payload_len);
    if ((err = nb_cbor_map(&cb, &n)))
        return err;
    for (uint64_t i = 0; i < n; i++) {
        if ((err = map_key(&cb, &ext, &key)))
            return err;
        if (key == EXTENSION)
            continue;
        if (key == 0 || key > 2)
            return NB_ERR_UNKNOWN_FIELD;
        if (seen & (1u << key))
            return NB_ERR_DUPLICATE;
        seen |= 1u << key;
        if (key == 1) {
            err = uint32_field(&cb, &out->seq);
        } else {
            err = nb_cbor_array(&cb, &v);
            if (!err && v > NB_MAX_REVOKED)
                err = NB_ERR_NOSPC;
            out->count = (uint8_t)v;
            for (uint64_t k = 0; k < v && !err; k++)
                err = fixed_bstr(&cb, out->kid[k], NB_KEY_ID_LEN);
        }
        if (err)
            return err;
    }
    if (!nb_cbor_done(&cb))
        return NB_ERR_TRAILING;
    if (seen != 0x6)
        return NB_ERR_MALFORMED;
    /* An older list must not undo a newer revocation. */
    if (current && out->seq <= current->seq)
        return NB_ERR_ROLLBACK;
    return NB_OK;
}

nb_err nb_pkg_parse_header(const uint8_t hdr[NB_PKG_HDR_SIZE],
                           uint32_t *manifest_len)
{
    uint32_t magic = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 |
                     (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
    uint32_t len = (uint32_t)hdr[8] | (uint32_t)hdr[9] << 8 |
                   (uint32_t)hdr[10] << 16 | (uint32_t)hdr[11] << 24;
    if (magic != NB_PKG_MAGIC)
        return NB_ERR_MALFORMED;
    if (hdr[4] != NB_PKG_VERSION)
        return NB_ERR_UNSUPPORTED;
    if (hdr[5] | hdr[6] | hdr[7])
        return NB_ERR_MALFORMED;
    if (len == 0 || len > NB_MANIFEST_MAX)
        return NB_ERR_MALFORMED;
    *manifest_len = len;
    return NB_OK;
}
