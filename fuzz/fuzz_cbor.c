/* fuzz_cbor.c - libFuzzer target for the bounded CBOR reader (core/cbor.c).
 *
 * Walks arbitrary input three ways and traps on any broken invariant
 * (ASan/UBSan catch the reads past the end and the undefined behaviour):
 *   1. nb_cbor_skip item after item until an error or the end, checked
 *      against a small recursive reference built on nb_cbor_next (same
 *      end, same error);
 *   2. nb_cbor_next head after head: the cursor moves forward and stays
 *      inside the buffer, strings lie inside it, an error consumes
 *      nothing, and every accepted head is exactly the one nb_cbor_head
 *      writes (shortest form: one value, one encoding);
 *   3. the typed helpers at each position agree with nb_cbor_next.
 *
 * Build by hand:
 *   clang-14 -g -O1 -fsanitize=fuzzer,address,undefined -Icore \
 *     fuzz/fuzz_cbor.c core/cbor.c core/err.c -o /tmp/fuzz_cbor
 *   /tmp/fuzz_cbor -max_total_time=30
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nb_cbor.h"

#define CHECK(cond)              \
    do {                         \
        if (!(cond))             \
            __builtin_trap();    \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The obvious recursive skip; depth counts the containers around the
 * item, as nb_cbor_skip does. */
static nb_err ref_skip(struct nb_cbor *c, unsigned depth)
{
    struct nb_cbor_item it;
    nb_err err = nb_cbor_next(c, &it);
    if (err)
        return err;
    uint64_t items;
    switch (it.major) {
    case NB_CBOR_ARRAY: items = it.val; break;
    case NB_CBOR_MAP: items = 2 * it.val; break;
    case NB_CBOR_TAG: items = 1; break;
    default: return NB_OK;
    }
    if (depth >= NB_CBOR_MAX_DEPTH)
        return NB_ERR_MALFORMED;
    for (uint64_t i = 0; i < items; i++)
        if ((err = ref_skip(c, depth + 1)))
            return err;
    return NB_OK;
}

static int is_error(nb_err err)
{
    return err == NB_ERR_MALFORMED || err == NB_ERR_TRUNCATED;
}

static void walk_skip(const uint8_t *data, size_t size)
{
    struct nb_cbor c, ref;
    nb_cbor_init(&c, data, size);
    while (!nb_cbor_done(&c)) {
        const uint8_t *before = c.p;
        ref = c;
        nb_err err = nb_cbor_skip(&c);
        nb_err want = ref_skip(&ref, 0);
        CHECK(err == want);
        if (err) {
            CHECK(is_error(err));
            CHECK(c.p == before);
            return;
        }
        CHECK(c.p == ref.p);
        CHECK(c.p > before && c.p <= data + size);
    }
    CHECK(nb_cbor_skip(&c) == NB_ERR_TRUNCATED);
}

/* Each typed helper at the cursor agrees with nb_cbor_next. */
static void check_helpers(const struct nb_cbor *at, nb_err next_err,
                          const struct nb_cbor_item *it,
                          const struct nb_cbor *after)
{
    struct nb_cbor c;
    uint64_t u;
    int64_t i;
    const uint8_t *p;
    size_t n;
    nb_err err;

#define EXPECT_FOR(major_ok)                                             \
    do {                                                                 \
        if (next_err) {                                                  \
            CHECK(err == next_err && c.p == at->p);                      \
        } else if (!(major_ok)) {                                        \
            CHECK(err == NB_ERR_MALFORMED && c.p == at->p);              \
        } else {                                                         \
            CHECK(err == NB_OK && c.p == after->p);                      \
        }                                                                \
    } while (0)

    c = *at;
    err = nb_cbor_uint(&c, &u);
    EXPECT_FOR(it->major == NB_CBOR_UINT);
    if (!err)
        CHECK(u == it->val);

    c = *at;
    err = nb_cbor_bstr(&c, &p, &n);
    EXPECT_FOR(it->major == NB_CBOR_BSTR);
    if (!err)
        CHECK(p == it->data && n == it->val);

    c = *at;
    err = nb_cbor_tstr(&c, &p, &n);
    EXPECT_FOR(it->major == NB_CBOR_TSTR);
    if (!err)
        CHECK(p == it->data && n == it->val);

    c = *at;
    err = nb_cbor_array(&c, &u);
    EXPECT_FOR(it->major == NB_CBOR_ARRAY);
    if (!err)
        CHECK(u == it->val);

    c = *at;
    err = nb_cbor_map(&c, &u);
    EXPECT_FOR(it->major == NB_CBOR_MAP);
    if (!err)
        CHECK(u == it->val);

    c = *at;
    err = nb_cbor_tag(&c, &u);
    EXPECT_FOR(it->major == NB_CBOR_TAG);
    if (!err)
        CHECK(u == it->val);

    c = *at;
    err = nb_cbor_int(&c, &i);
    EXPECT_FOR((it->major == NB_CBOR_UINT || it->major == NB_CBOR_NINT) &&
               it->val <= (uint64_t)INT64_MAX);
    if (!err)
        CHECK(it->major == NB_CBOR_UINT ? i >= 0 && (uint64_t)i == it->val
                                        : i < 0 && (uint64_t)(-1 - i) == it->val);
#undef EXPECT_FOR
}

static void walk_next(const uint8_t *data, size_t size)
{
    struct nb_cbor c;
    nb_cbor_init(&c, data, size);
    for (;;) {
        struct nb_cbor at = c;
        struct nb_cbor_item it;
        memset(&it, 0, sizeof(it));
        nb_err err = nb_cbor_next(&c, &it);
        check_helpers(&at, err, &it, &c);
        if (err) {
            CHECK(is_error(err));
            CHECK(c.p == at.p);
            if (nb_cbor_done(&c))
                CHECK(err == NB_ERR_TRUNCATED);
            return;
        }
        CHECK(c.p > at.p && c.p <= data + size);
        CHECK(it.major <= NB_CBOR_SIMPLE);

        /* The head read is the shortest one for its value. */
        uint8_t head[9];
        size_t hl = nb_cbor_head(head, it.major, it.val);
        const uint8_t *head_end = c.p;
        if (it.major == NB_CBOR_BSTR || it.major == NB_CBOR_TSTR) {
            CHECK(it.data >= at.p && it.data <= c.p);
            CHECK((size_t)(c.p - it.data) == it.val);
            head_end = it.data;
        } else {
            CHECK(it.data == NULL);
        }
        CHECK((size_t)(head_end - at.p) == hl);
        CHECK(memcmp(head, at.p, hl) == 0);

        /* What the reader promises about what follows. */
        size_t left = (size_t)(data + size - c.p);
        if (it.major == NB_CBOR_ARRAY)
            CHECK(it.val <= left);
        if (it.major == NB_CBOR_MAP)
            CHECK(it.val <= left / 2);
        if (it.major == NB_CBOR_TAG)
            CHECK(left >= 1);
        if (it.major == NB_CBOR_SIMPLE)
            CHECK(it.val >= 20 && it.val <= 22);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    walk_skip(data, size);
    walk_next(data, size);
    return 0;
}
