/* cbor.c - a bounded CBOR (RFC 8949) reader and the shortest-head writer;
 * nb_cbor.h states the subset accepted and the error codes.
 *
 * How it stays inside the buffer: every length and count is compared with
 * the bytes left (`end - p`, as a size_t) before a pointer moves, so no
 * pointer outside [buf, end] is ever formed, whatever a head claims.
 *
 * How a failed call leaves the cursor: every reader works on a local copy
 * of the cursor and stores it back only on success, so an error consumes
 * nothing and leaves the caller's outputs unwritten.
 *
 * For Cortex-M without libgcc helpers: no 64-bit division, modulo or
 * variable 64-bit shift (only shifts by constants).
 */
#include <stddef.h>
#include <stdint.h>

#include "nb_cbor.h"

/* Bytes between p and end; 0 for an empty (or NULL) cursor. */
static size_t left(const uint8_t *p, const uint8_t *end)
{
    if (p == end)
        return 0; /* also NULL == NULL: no arithmetic on null pointers */
    ptrdiff_t d = end - p;
    return d > 0 ? (size_t)d : 0;
}

/* Decode one head at *pp: the initial byte and its 0, 1, 2, 4 or 8
 * argument bytes. Enforces shortest form, refuses 28..31 and every major 7
 * value but 20..22. Advances *pp only on success. */
static nb_err read_head(const uint8_t **pp, const uint8_t *end,
                        uint8_t *major, uint64_t *val)
{
    const uint8_t *p = *pp;
    size_t n = left(p, end);
    if (n == 0)
        return NB_ERR_TRUNCATED;
    uint8_t ib = *p++;
    n--;
    uint8_t mt = (uint8_t)(ib >> 5);
    uint8_t ai = (uint8_t)(ib & 0x1Fu);
    uint64_t v;

    if (ai < 24) {
        v = ai;
    } else if (ai <= 27) {
        /* Major 7 with an argument is a float (25..27) or a simple value
         * 24..255 (24): refused for what it is, whatever follows. */
        if (mt == NB_CBOR_SIMPLE)
            return NB_ERR_MALFORMED;
        size_t extra;
        uint64_t min;
        switch (ai) {
        case 24: extra = 1; min = 24u; break;
        case 25: extra = 2; min = 0x100u; break;
        case 26: extra = 4; min = 0x10000u; break;
        default: extra = 8; min = 0x100000000u; break;
        }
        if (extra > n)
            return NB_ERR_TRUNCATED;
        v = 0;
        for (size_t i = 0; i < extra; i++)
            v = (v << 8) | *p++;
        if (v < min)
            return NB_ERR_MALFORMED; /* not the shortest head */
    } else {
        /* 28..30 reserved; 31 is an indefinite length, or for major 7
         * the "break" stop code: neither is accepted. */
        return NB_ERR_MALFORMED;
    }

    if (mt == NB_CBOR_SIMPLE && (v < 20u || v > 22u))
        return NB_ERR_MALFORMED; /* only false, true, null */

    *pp = p;
    *major = mt;
    *val = v;
    return NB_OK;
}

void nb_cbor_init(struct nb_cbor *c, const uint8_t *buf, size_t len)
{
    c->p = buf;
    /* NULL + 0 is undefined behaviour: an absent buffer is empty. */
    c->end = buf ? buf + len : buf;
}

nb_err nb_cbor_next(struct nb_cbor *c, struct nb_cbor_item *it)
{
    const uint8_t *p = c->p;
    uint8_t major;
    uint64_t val;
    nb_err err = read_head(&p, c->end, &major, &val);
    if (err)
        return err;

    size_t n = left(p, c->end);
    const uint8_t *data = NULL;
    switch (major) {
    case NB_CBOR_BSTR:
    case NB_CBOR_TSTR:
        if (val > n)
            return NB_ERR_TRUNCATED;
        data = p;
        p += (size_t)val;
        break;
    case NB_CBOR_ARRAY:
        /* Every item takes at least one byte. */
        if (val > n)
            return NB_ERR_TRUNCATED;
        break;
    case NB_CBOR_MAP:
        /* Two items (at least two bytes) per pair; n >> 1 cannot
         * overflow where 2 * val could. */
        if (val > (n >> 1))
            return NB_ERR_TRUNCATED;
        break;
    case NB_CBOR_TAG:
        /* A tag wraps exactly one item. */
        if (n == 0)
            return NB_ERR_TRUNCATED;
        break;
    default:
        break;
    }

    it->major = major;
    it->val = val;
    it->data = data;
    c->p = p;
    return NB_OK;
}

nb_err nb_cbor_skip(struct nb_cbor *c)
{
    /* Iterative: `todo` items are left at the current level, `stack` holds
     * what is left at each enclosing level. Every open container (array,
     * map or tag, empty or not) takes one level. Counts fit in size_t
     * because nb_cbor_next bounds them by the bytes left. */
    struct nb_cbor t = *c;
    size_t stack[NB_CBOR_MAX_DEPTH];
    unsigned depth = 0;
    size_t todo = 1;

    for (;;) {
        while (todo == 0 && depth > 0)
            todo = stack[--depth];
        if (todo == 0)
            break;

        struct nb_cbor_item it;
        nb_err err = nb_cbor_next(&t, &it);
        if (err)
            return err;
        todo--;

        size_t items;
        switch (it.major) {
        case NB_CBOR_ARRAY: items = (size_t)it.val; break;
        case NB_CBOR_MAP: items = (size_t)it.val * 2u; break;
        case NB_CBOR_TAG: items = 1; break;
        default: continue; /* scalar or string: nothing inside */
        }
        if (depth >= NB_CBOR_MAX_DEPTH)
            return NB_ERR_MALFORMED;
        stack[depth++] = todo;
        todo = items;
    }

    *c = t;
    return NB_OK;
}

/* Read one item and require its major type; the cursor moves only when
 * both succeed. */
static nb_err expect(struct nb_cbor *c, uint8_t major,
                     struct nb_cbor_item *it)
{
    struct nb_cbor t = *c;
    nb_err err = nb_cbor_next(&t, it);
    if (err)
        return err;
    if (it->major != major)
        return NB_ERR_MALFORMED;
    *c = t;
    return NB_OK;
}

nb_err nb_cbor_uint(struct nb_cbor *c, uint64_t *v)
{
    struct nb_cbor_item it;
    nb_err err = expect(c, NB_CBOR_UINT, &it);
    if (err)
        return err;
    *v = it.val;
    return NB_OK;
}

nb_err nb_cbor_int(struct nb_cbor *c, int64_t *v)
{
    struct nb_cbor t = *c;
    struct nb_cbor_item it;
    nb_err err = nb_cbor_next(&t, &it);
    if (err)
        return err;
    if (it.major != NB_CBOR_UINT && it.major != NB_CBOR_NINT)
        return NB_ERR_MALFORMED;
    if (it.val > (uint64_t)INT64_MAX)
        return NB_ERR_MALFORMED; /* outside int64_t */
    /* -1 - val >= -1 - INT64_MAX == INT64_MIN: no overflow. */
    *v = it.major == NB_CBOR_UINT ? (int64_t)it.val : -1 - (int64_t)it.val;
    *c = t;
    return NB_OK;
}

static nb_err string(struct nb_cbor *c, uint8_t major, const uint8_t **p,
                     size_t *len)
{
    struct nb_cbor_item it;
    nb_err err = expect(c, major, &it);
    if (err)
        return err;
    *p = it.data;
    *len = (size_t)it.val; /* <= the bytes left, so it fits */
    return NB_OK;
}

nb_err nb_cbor_bstr(struct nb_cbor *c, const uint8_t **p, size_t *len)
{
    return string(c, NB_CBOR_BSTR, p, len);
}

nb_err nb_cbor_tstr(struct nb_cbor *c, const uint8_t **p, size_t *len)
{
    return string(c, NB_CBOR_TSTR, p, len);
}

static nb_err head_only(struct nb_cbor *c, uint8_t major, uint64_t *v)
{
    struct nb_cbor_item it;
    nb_err err = expect(c, major, &it);
    if (err)
        return err;
    *v = it.val;
    return NB_OK;
}

nb_err nb_cbor_array(struct nb_cbor *c, uint64_t *count)
{
    return head_only(c, NB_CBOR_ARRAY, count);
}

nb_err nb_cbor_map(struct nb_cbor *c, uint64_t *count)
{
    return head_only(c, NB_CBOR_MAP, count);
}

nb_err nb_cbor_tag(struct nb_cbor *c, uint64_t *tag)
{
    return head_only(c, NB_CBOR_TAG, tag);
}

int nb_cbor_done(const struct nb_cbor *c)
{
    return left(c->p, c->end) == 0;
}

size_t nb_cbor_head(uint8_t out[9], uint8_t major, uint64_t val)
{
    uint8_t ib = (uint8_t)((major & 7u) << 5);
    size_t n;

    if (val < 24u) {
        out[0] = (uint8_t)(ib | val);
        return 1;
    }
    if (val <= 0xFFu) {
        out[0] = (uint8_t)(ib | 24u);
        n = 1;
    } else if (val <= 0xFFFFu) {
        out[0] = (uint8_t)(ib | 25u);
        n = 2;
    } else if (val <= 0xFFFFFFFFu) {
        out[0] = (uint8_t)(ib | 26u);
        n = 4;
    } else {
        out[0] = (uint8_t)(ib | 27u);
        n = 8;
    }
    for (size_t i = n; i > 0; i--) {
        out[i] = (uint8_t)val; /* big-endian: last byte first */
        val >>= 8;
    }
    return n + 1;
}
