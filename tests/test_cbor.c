/* test_cbor.c - the bounded CBOR reader (core/cbor.c) against the RFC 8949
 * Appendix A examples as independent vectors: every accepted example
 * decodes to the values the RFC gives; the indefinite-length examples,
 * floats and simple values other than false/true/null are refused; every
 * prefix of every accepted example fails with NB_ERR_TRUNCATED from an
 * exact-size heap copy (so ASan sees any read past the end); non-shortest
 * heads are refused; nb_cbor_head writes the shortest head and reads back;
 * skip over nesting, the depth limit, and huge counts failing at once.
 *
 * A failing vector prints its RFC notation (and the cut length), which is
 * enough to find and re-run it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nb_cbor.h"

/* ------------------------------------------------------------ helpers */

/* Fail with the vector's name (and a cut length, or -1) in the message. */
#define CHECK(name, cut, cond)                                              \
    do {                                                                    \
        if (!(cond)) {                                                      \
            print_error("vector %s (cut %d): failed: %s\n", (name),         \
                        (int)(cut), #cond);                                 \
            fail();                                                         \
        }                                                                   \
    } while (0)

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decode hex (blanks ignored) into an exact-size heap buffer, NULL when
 * empty: ASan flags a read of even one byte past the end. */
static uint8_t *unhex(const char *hex, size_t *len)
{
    size_t n = 0;
    for (const char *s = hex; *s; s++)
        if (*s != ' ')
            n++;
    assert_int_equal(n % 2, 0);
    *len = n / 2;
    if (*len == 0)
        return NULL;
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    size_t i = 0;
    int hi = -1;
    for (const char *s = hex; *s; s++) {
        if (*s == ' ')
            continue;
        int v = hexval(*s);
        assert_true(v >= 0);
        if (hi < 0) {
            hi = v;
        } else {
            buf[i++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    return buf;
}

/* An exact-size copy of the first `len` bytes (NULL when len is 0). */
static uint8_t *copy_prefix(const uint8_t *src, size_t len)
{
    if (len == 0)
        return NULL;
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    memcpy(buf, src, len);
    return buf;
}

/* ------------------------------------------ RFC 8949 Appendix A vectors */

struct exp {
    uint8_t major;   /* 0xFF ends the list */
    uint64_t val;
    const char *str; /* BSTR/TSTR: the expected `val` bytes */
};

#define U(v) {NB_CBOR_UINT, (v), NULL}
#define N(v) {NB_CBOR_NINT, (v), NULL} /* the value is -1 - v */
#define B(n, s) {NB_CBOR_BSTR, (n), (s)}
#define T(n, s) {NB_CBOR_TSTR, (n), (s)}
#define A(n) {NB_CBOR_ARRAY, (n), NULL}
#define M(n) {NB_CBOR_MAP, (n), NULL}
#define G(n) {NB_CBOR_TAG, (n), NULL}
#define S(v) {NB_CBOR_SIMPLE, (v), NULL}
#define END {0xFF, 0, NULL}

struct vec {
    const char *name; /* diagnostic notation, as in the RFC */
    const char *hex;  /* encoding, as in the RFC */
    struct exp it[28]; /* the items nb_cbor_next returns, in order */
};

static const struct vec vectors[] = {
    {"0", "00", {U(0), END}},
    {"1", "01", {U(1), END}},
    {"10", "0a", {U(10), END}},
    {"23", "17", {U(23), END}},
    {"24", "1818", {U(24), END}},
    {"25", "1819", {U(25), END}},
    {"100", "1864", {U(100), END}},
    {"1000", "1903e8", {U(1000), END}},
    {"1000000", "1a000f4240", {U(1000000), END}},
    {"1000000000000", "1b000000e8d4a51000", {U(1000000000000ull), END}},
    {"18446744073709551615", "1bffffffffffffffff", {U(UINT64_MAX), END}},
    {"18446744073709551616", "c249010000000000000000",
     {G(2), B(9, "\x01\0\0\0\0\0\0\0\0"), END}},
    {"-18446744073709551616", "3bffffffffffffffff", {N(UINT64_MAX), END}},
    {"-18446744073709551617", "c349010000000000000000",
     {G(3), B(9, "\x01\0\0\0\0\0\0\0\0"), END}},
    {"-1", "20", {N(0), END}},
    {"-10", "29", {N(9), END}},
    {"-100", "3863", {N(99), END}},
    {"-1000", "3903e7", {N(999), END}},
    {"false", "f4", {S(20), END}},
    {"true", "f5", {S(21), END}},
    {"null", "f6", {S(22), END}},
    {"0(\"2013-03-21T20:04:00Z\")",
     "c074323031332d30332d32315432303a30343a30305a",
     {G(0), T(20, "2013-03-21T20:04:00Z"), END}},
    {"1(1363896240)", "c11a514b67b0", {G(1), U(1363896240u), END}},
    {"23(h'01020304')", "d74401020304",
     {G(23), B(4, "\x01\x02\x03\x04"), END}},
    {"24(h'6449455446')", "d818456449455446",
     {G(24), B(5, "\x64" "IETF"), END}},
    {"32(\"http://www.example.com\")",
     "d82076687474703a2f2f7777772e6578616d706c652e636f6d",
     {G(32), T(22, "http://www.example.com"), END}},
    {"h''", "40", {B(0, ""), END}},
    {"h'01020304'", "4401020304", {B(4, "\x01\x02\x03\x04"), END}},
    {"\"\"", "60", {T(0, ""), END}},
    {"\"a\"", "6161", {T(1, "a"), END}},
    {"\"IETF\"", "6449455446", {T(4, "IETF"), END}},
    {"\"\\\"\\\\\"", "62225c", {T(2, "\"\\"), END}},
    {"\"\\u00fc\"", "62c3bc", {T(2, "\xc3\xbc"), END}},
    {"\"\\u6c34\"", "63e6b0b4", {T(3, "\xe6\xb0\xb4"), END}},
    {"\"\\ud800\\udd51\"", "64f0908591", {T(4, "\xf0\x90\x85\x91"), END}},
    {"[]", "80", {A(0), END}},
    {"[1, 2, 3]", "83010203", {A(3), U(1), U(2), U(3), END}},
    {"[1, [2, 3], [4, 5]]", "8301820203820405",
     {A(3), U(1), A(2), U(2), U(3), A(2), U(4), U(5), END}},
    {"[1, 2, ..., 25]",
     "98190102030405060708090a0b0c0d0e0f101112131415161718181819",
     {A(25), U(1), U(2), U(3), U(4), U(5), U(6), U(7), U(8), U(9), U(10),
      U(11), U(12), U(13), U(14), U(15), U(16), U(17), U(18), U(19), U(20),
      U(21), U(22), U(23), U(24), U(25), END}},
    {"{}", "a0", {M(0), END}},
    {"{1: 2, 3: 4}", "a201020304", {M(2), U(1), U(2), U(3), U(4), END}},
    {"{\"a\": 1, \"b\": [2, 3]}", "a26161016162820203",
     {M(2), T(1, "a"), U(1), T(1, "b"), A(2), U(2), U(3), END}},
    {"[\"a\", {\"b\": \"c\"}]", "826161a161626163",
     {A(2), T(1, "a"), M(1), T(1, "b"), T(1, "c"), END}},
    {"{\"a\": \"A\", \"b\": \"B\", \"c\": \"C\", \"d\": \"D\", \"e\": \"E\"}",
     "a56161614161626142616361436164614461656145",
     {M(5), T(1, "a"), T(1, "A"), T(1, "b"), T(1, "B"), T(1, "c"),
      T(1, "C"), T(1, "d"), T(1, "D"), T(1, "e"), T(1, "E"), END}},
};

#define NVEC (sizeof(vectors) / sizeof(vectors[0]))

/* Compare one decoded item with its expectation. */
static void check_item(const char *name, int cut, const struct exp *e,
                       const struct nb_cbor_item *it, const uint8_t *buf,
                       size_t len)
{
    CHECK(name, cut, it->major == e->major);
    CHECK(name, cut, it->val == e->val);
    if (e->major == NB_CBOR_BSTR || e->major == NB_CBOR_TSTR) {
        CHECK(name, cut, it->data != NULL);
        CHECK(name, cut, it->data >= buf);
        CHECK(name, cut, (size_t)(it->data - buf) + it->val <= len);
        CHECK(name, cut, memcmp(it->data, e->str, (size_t)e->val) == 0);
    } else {
        CHECK(name, cut, it->data == NULL);
    }
}

static void appendix_a_decodes(void **state)
{
    (void)state;
    for (size_t v = 0; v < NVEC; v++) {
        const struct vec *vec = &vectors[v];
        size_t len;
        uint8_t *buf = unhex(vec->hex, &len);
        struct nb_cbor c;

        /* Item by item. */
        nb_cbor_init(&c, buf, len);
        for (const struct exp *e = vec->it; e->major != 0xFF; e++) {
            struct nb_cbor_item it;
            CHECK(vec->name, -1, !nb_cbor_done(&c));
            CHECK(vec->name, -1, nb_cbor_next(&c, &it) == NB_OK);
            check_item(vec->name, -1, e, &it, buf, len);
        }
        CHECK(vec->name, -1, nb_cbor_done(&c));
        CHECK(vec->name, -1, c.p == buf + len);

        /* Each vector is one data item: skip takes exactly all of it. */
        nb_cbor_init(&c, buf, len);
        CHECK(vec->name, -1, nb_cbor_skip(&c) == NB_OK);
        CHECK(vec->name, -1, nb_cbor_done(&c));
        CHECK(vec->name, -1, c.p == buf + len);
        free(buf);
    }
}

/* The typed helpers on the same vectors: right type reads the value,
 * wrong type is NB_ERR_MALFORMED and consumes nothing. */
static void appendix_a_typed(void **state)
{
    (void)state;
    for (size_t v = 0; v < NVEC; v++) {
        const struct vec *vec = &vectors[v];
        const struct exp *e = &vec->it[0];
        size_t len;
        uint8_t *buf = unhex(vec->hex, &len);
        struct nb_cbor c;
        uint64_t u;
        int64_t i;
        const uint8_t *p;
        size_t n;

        nb_cbor_init(&c, buf, len);
        nb_err err = nb_cbor_uint(&c, &u);
        CHECK(vec->name, -1,
              err == (e->major == NB_CBOR_UINT ? NB_OK : NB_ERR_MALFORMED));
        if (!err)
            CHECK(vec->name, -1, u == e->val);
        else
            CHECK(vec->name, -1, c.p == buf);

        nb_cbor_init(&c, buf, len);
        err = nb_cbor_int(&c, &i);
        if ((e->major == NB_CBOR_UINT || e->major == NB_CBOR_NINT) &&
            e->val <= (uint64_t)INT64_MAX) {
            CHECK(vec->name, -1, err == NB_OK);
            CHECK(vec->name, -1,
                  i == (e->major == NB_CBOR_UINT ? (int64_t)e->val
                                                 : -1 - (int64_t)e->val));
        } else {
            CHECK(vec->name, -1, err == NB_ERR_MALFORMED);
            CHECK(vec->name, -1, c.p == buf);
        }

        nb_cbor_init(&c, buf, len);
        err = nb_cbor_bstr(&c, &p, &n);
        CHECK(vec->name, -1,
              err == (e->major == NB_CBOR_BSTR ? NB_OK : NB_ERR_MALFORMED));
        if (!err)
            CHECK(vec->name, -1, n == e->val && !memcmp(p, e->str, n));
        else
            CHECK(vec->name, -1, c.p == buf);

        nb_cbor_init(&c, buf, len);
        err = nb_cbor_tstr(&c, &p, &n);
        CHECK(vec->name, -1,
              err == (e->major == NB_CBOR_TSTR ? NB_OK : NB_ERR_MALFORMED));
        if (!err)
            CHECK(vec->name, -1, n == e->val && !memcmp(p, e->str, n));
        else
            CHECK(vec->name, -1, c.p == buf);

        nb_cbor_init(&c, buf, len);
        err = nb_cbor_array(&c, &u);
        CHECK(vec->name, -1,
              err == (e->major == NB_CBOR_ARRAY ? NB_OK : NB_ERR_MALFORMED));
        CHECK(vec->name, -1, err ? c.p == buf : u == e->val);

        nb_cbor_init(&c, buf, len);
        err = nb_cbor_map(&c, &u);
        CHECK(vec->name, -1,
              err == (e->major == NB_CBOR_MAP ? NB_OK : NB_ERR_MALFORMED));
        CHECK(vec->name, -1, err ? c.p == buf : u == e->val);

        nb_cbor_init(&c, buf, len);
        err = nb_cbor_tag(&c, &u);
        CHECK(vec->name, -1,
              err == (e->major == NB_CBOR_TAG ? NB_OK : NB_ERR_MALFORMED));
        CHECK(vec->name, -1, err ? c.p == buf : u == e->val);
        free(buf);
    }
}

/* Every prefix of every vector: skip fails with NB_ERR_TRUNCATED and
 * leaves the cursor; walking with nb_cbor_next decodes the items that are
 * whole and then fails with NB_ERR_TRUNCATED (never MALFORMED). */
static void appendix_a_truncated(void **state)
{
    (void)state;
    for (size_t v = 0; v < NVEC; v++) {
        const struct vec *vec = &vectors[v];
        size_t len;
        uint8_t *full = unhex(vec->hex, &len);
        for (size_t cut = 0; cut < len; cut++) {
            uint8_t *buf = copy_prefix(full, cut);
            struct nb_cbor c;

            nb_cbor_init(&c, buf, cut);
            CHECK(vec->name, cut, nb_cbor_skip(&c) == NB_ERR_TRUNCATED);
            CHECK(vec->name, cut, c.p == buf);

            nb_cbor_init(&c, buf, cut);
            nb_err err = NB_OK;
            const struct exp *e;
            for (e = vec->it; e->major != 0xFF; e++) {
                struct nb_cbor_item it;
                const uint8_t *before = c.p;
                err = nb_cbor_next(&c, &it);
                if (err) {
                    CHECK(vec->name, cut, c.p == before);
                    break;
                }
                check_item(vec->name, cut, e, &it, buf, cut);
            }
            CHECK(vec->name, cut, err == NB_ERR_TRUNCATED);
            free(buf);
        }
        free(full);
    }
}

/* ------------------------------------------------------------ refusals */

struct bad {
    const char *name;
    const char *hex;
    nb_err err; /* of nb_cbor_skip on the whole input */
};

static const struct bad refused[] = {
    /* Appendix A, indefinite lengths. */
    {"(_ h'0102', h'030405')", "5f42010243030405ff", NB_ERR_MALFORMED},
    {"(_ \"strea\", \"ming\")", "7f657374726561646d696e67ff",
     NB_ERR_MALFORMED},
    {"[_ ]", "9fff", NB_ERR_MALFORMED},
    {"[_ 1, [2, 3], [_ 4, 5]]", "9f018202039f0405ffff", NB_ERR_MALFORMED},
    {"[_ 1, [2, 3], [4, 5]]", "9f01820203820405ff", NB_ERR_MALFORMED},
    {"[1, [2, 3], [_ 4, 5]]", "83018202039f0405ff", NB_ERR_MALFORMED},
    {"[1, [_ 2, 3], [4, 5]]", "83019f0203ff820405", NB_ERR_MALFORMED},
    {"[_ 1, 2, ..., 25]",
     "9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff",
     NB_ERR_MALFORMED},
    {"{_ \"a\": 1, \"b\": [_ 2, 3]}", "bf61610161629f0203ffff",
     NB_ERR_MALFORMED},
    {"[\"a\", {_ \"b\": \"c\"}]", "826161bf61626163ff", NB_ERR_MALFORMED},
    {"{_ \"Fun\": true, \"Amt\": -2}", "bf6346756ef563416d7421ff",
     NB_ERR_MALFORMED},
    /* Additional info 31 on the other majors; a lone break. */
    {"uint ai 31", "1f", NB_ERR_MALFORMED},
    {"nint ai 31", "3f", NB_ERR_MALFORMED},
    {"tag ai 31", "df00", NB_ERR_MALFORMED},
    {"break", "ff", NB_ERR_MALFORMED},
    /* Appendix A, floats (and a tag around one). */
    {"0.0", "f90000", NB_ERR_MALFORMED},
    {"-0.0", "f98000", NB_ERR_MALFORMED},
    {"1.0", "f93c00", NB_ERR_MALFORMED},
    {"1.1", "fb3ff199999999999a", NB_ERR_MALFORMED},
    {"1.5", "f93e00", NB_ERR_MALFORMED},
    {"65504.0", "f97bff", NB_ERR_MALFORMED},
    {"100000.0", "fa47c35000", NB_ERR_MALFORMED},
    {"3.4028234663852886e+38", "fa7f7fffff", NB_ERR_MALFORMED},
    {"1.0e+300", "fb7e37e43c8800759c", NB_ERR_MALFORMED},
    {"5.960464477539063e-8", "f90001", NB_ERR_MALFORMED},
    {"0.00006103515625", "f90400", NB_ERR_MALFORMED},
    {"-4.0", "f9c400", NB_ERR_MALFORMED},
    {"-4.1", "fbc010666666666666", NB_ERR_MALFORMED},
    {"Infinity (half)", "f97c00", NB_ERR_MALFORMED},
    {"NaN (half)", "f97e00", NB_ERR_MALFORMED},
    {"-Infinity (half)", "f9fc00", NB_ERR_MALFORMED},
    {"Infinity (single)", "fa7f800000", NB_ERR_MALFORMED},
    {"NaN (single)", "fa7fc00000", NB_ERR_MALFORMED},
    {"-Infinity (single)", "faff800000", NB_ERR_MALFORMED},
    {"Infinity (double)", "fb7ff0000000000000", NB_ERR_MALFORMED},
    {"NaN (double)", "fb7ff8000000000000", NB_ERR_MALFORMED},
    {"-Infinity (double)", "fbfff0000000000000", NB_ERR_MALFORMED},
    {"1(1363896240.5)", "c1fb41d452d9ec200000", NB_ERR_MALFORMED},
    {"[1.5]", "81f93e00", NB_ERR_MALFORMED},
    /* A float head is refused for what it is, even cut short. */
    {"half float, cut", "f9", NB_ERR_MALFORMED},
    {"double float, cut", "fb3ff1", NB_ERR_MALFORMED},
    /* Appendix A, simple values other than false/true/null. */
    {"undefined", "f7", NB_ERR_MALFORMED},
    {"simple(16)", "f0", NB_ERR_MALFORMED},
    {"simple(255)", "f8ff", NB_ERR_MALFORMED},
    {"simple(0)", "e0", NB_ERR_MALFORMED},
    {"simple(19)", "f3", NB_ERR_MALFORMED},
    {"simple(20) in two bytes", "f814", NB_ERR_MALFORMED},
    {"simple(32)", "f820", NB_ERR_MALFORMED},
    /* Reserved additional info 28..30, every major. */
    {"uint ai 28", "1c", NB_ERR_MALFORMED},
    {"uint ai 29", "1d", NB_ERR_MALFORMED},
    {"uint ai 30", "1e", NB_ERR_MALFORMED},
    {"nint ai 28", "3c", NB_ERR_MALFORMED},
    {"bstr ai 29", "5d", NB_ERR_MALFORMED},
    {"tstr ai 30", "7e", NB_ERR_MALFORMED},
    {"array ai 28", "9c", NB_ERR_MALFORMED},
    {"map ai 29", "bd", NB_ERR_MALFORMED},
    {"tag ai 30", "de00", NB_ERR_MALFORMED},
    {"major 7 ai 28", "fc", NB_ERR_MALFORMED},
    {"major 7 ai 29", "fd", NB_ERR_MALFORMED},
    {"major 7 ai 30", "fe", NB_ERR_MALFORMED},
    /* Non-shortest heads. */
    {"23 in two bytes", "1817", NB_ERR_MALFORMED},
    {"0 in two bytes", "1800", NB_ERR_MALFORMED},
    {"1 in three bytes", "190001", NB_ERR_MALFORMED},
    {"255 in three bytes", "1900ff", NB_ERR_MALFORMED},
    {"65535 in five bytes", "1a0000ffff", NB_ERR_MALFORMED},
    {"0 in five bytes", "1a00000000", NB_ERR_MALFORMED},
    {"2^32-1 in nine bytes", "1b00000000ffffffff", NB_ERR_MALFORMED},
    {"0 in nine bytes", "1b0000000000000000", NB_ERR_MALFORMED},
    {"-24 in two bytes", "3817", NB_ERR_MALFORMED},
    {"-256 in three bytes", "3900ff", NB_ERR_MALFORMED},
    {"h'' in two bytes", "5800", NB_ERR_MALFORMED},
    {"\"a\" in a two-byte head", "780161", NB_ERR_MALFORMED},
    {"[] in two bytes", "9800", NB_ERR_MALFORMED},
    {"{} in three bytes", "b90000", NB_ERR_MALFORMED},
    {"1(0) with a two-byte tag head", "d80100", NB_ERR_MALFORMED},
    {"[23 in two bytes]", "811817", NB_ERR_MALFORMED},
    {"{1: 255 in three bytes}", "a1011900ff", NB_ERR_MALFORMED},
    /* Lengths and counts beyond the buffer, some beyond any pointer. */
    {"h'01020304' short by one", "44010203", NB_ERR_TRUNCATED},
    {"bstr of 2^64-1 bytes", "5bffffffffffffffff00", NB_ERR_TRUNCATED},
    {"bstr of 2^63 bytes", "5b800000000000000000", NB_ERR_TRUNCATED},
    {"bstr of 2^63-1 bytes", "5b7fffffffffffffff00", NB_ERR_TRUNCATED},
    {"tstr of 2^64-1 bytes", "7bffffffffffffffff00", NB_ERR_TRUNCATED},
    {"bstr of 2^32-1 bytes", "5affffffff0102", NB_ERR_TRUNCATED},
    {"array of 2^60 items", "9b100000000000000000000000", NB_ERR_TRUNCATED},
    {"array of 2^64-1 items", "9bffffffffffffffff00", NB_ERR_TRUNCATED},
    {"map of 2^64-1 pairs", "bbffffffffffffffff0000", NB_ERR_TRUNCATED},
    {"map of 2^63 pairs", "bb80000000000000000000", NB_ERR_TRUNCATED},
    {"array of 2^32-1 items", "9affffffff000000", NB_ERR_TRUNCATED},
    {"[array of 2^60 items]", "819b10000000000000000000", NB_ERR_TRUNCATED},
    {"[0, 0, 0, 0] short by one", "84000000", NB_ERR_TRUNCATED},
    {"{0: 0, 0: 0} short by one", "a2000000", NB_ERR_TRUNCATED},
    {"tag with no item", "c1", NB_ERR_TRUNCATED},
    {"empty input", "", NB_ERR_TRUNCATED},
};

#define NBAD (sizeof(refused) / sizeof(refused[0]))

static void refusals(void **state)
{
    (void)state;
    for (size_t v = 0; v < NBAD; v++) {
        const struct bad *b = &refused[v];
        size_t len;
        uint8_t *buf = unhex(b->hex, &len);
        struct nb_cbor c;

        nb_cbor_init(&c, buf, len);
        CHECK(b->name, -1, nb_cbor_skip(&c) == b->err);
        CHECK(b->name, -1, c.p == buf); /* nothing consumed */

        /* Walking with nb_cbor_next meets the same error. */
        nb_cbor_init(&c, buf, len);
        nb_err err;
        struct nb_cbor_item it;
        while ((err = nb_cbor_next(&c, &it)) == NB_OK)
            ;
        CHECK(b->name, -1, err == b->err);
        free(buf);
    }
}

/* Shortest-head boundaries that must be accepted. */
static void shortest_accepted(void **state)
{
    (void)state;
    static const struct {
        const char *hex;
        uint8_t major;
        uint64_t val;
    } ok[] = {
        {"17", 0, 23},
        {"1818", 0, 24},
        {"18ff", 0, 255},
        {"190100", 0, 256},
        {"19ffff", 0, 65535},
        {"1a00010000", 0, 65536},
        {"1affffffff", 0, 0xFFFFFFFFu},
        {"1b0000000100000000", 0, 0x100000000ull},
        {"37", 1, 23},
        {"3818", 1, 24},
        {"d818", 6, 24}, /* plus a byte for the item, below */
    };
    for (size_t v = 0; v < sizeof(ok) / sizeof(ok[0]); v++) {
        char hex[64];
        snprintf(hex, sizeof(hex), "%s%s", ok[v].hex,
                 ok[v].major == NB_CBOR_TAG ? "00" : "");
        size_t len;
        uint8_t *buf = unhex(hex, &len);
        struct nb_cbor c;
        struct nb_cbor_item it;
        nb_cbor_init(&c, buf, len);
        CHECK(hex, -1, nb_cbor_next(&c, &it) == NB_OK);
        CHECK(hex, -1, it.major == ok[v].major && it.val == ok[v].val);
        free(buf);
    }
}

/* Every one-byte input, against the rules written out independently. */
static void every_single_byte(void **state)
{
    (void)state;
    for (unsigned b = 0; b < 256; b++) {
        unsigned major = b >> 5, ai = b & 31;
        nb_err want;
        if (ai >= 28)
            want = NB_ERR_MALFORMED;
        else if (major == 7)
            want = (ai >= 20 && ai <= 22) ? NB_OK : NB_ERR_MALFORMED;
        else if (ai >= 24)
            want = NB_ERR_TRUNCATED; /* the argument bytes are missing */
        else if (major == 6)
            want = NB_ERR_TRUNCATED; /* the tagged item is missing */
        else if (major >= 2 && ai > 0)
            want = NB_ERR_TRUNCATED; /* string bytes or items missing */
        else
            want = NB_OK;

        uint8_t *buf = malloc(1);
        assert_non_null(buf);
        buf[0] = (uint8_t)b;
        struct nb_cbor c;
        nb_cbor_init(&c, buf, 1);
        nb_err err = nb_cbor_skip(&c);
        if (err != want)
            print_error("byte 0x%02x: got %d, want %d\n", b, err, want);
        assert_int_equal(err, want);
        assert_true(want ? c.p == buf : nb_cbor_done(&c));
        free(buf);
    }
}

/* Every one- and two-byte input: whatever nb_cbor_next accepts, its head
 * is exactly what nb_cbor_head writes (one value, one encoding), and
 * nothing reads past the end. */
static void canonical_two_bytes(void **state)
{
    (void)state;
    uint8_t *buf = malloc(2);
    assert_non_null(buf);
    for (unsigned len = 1; len <= 2; len++) {
        for (unsigned x = 0; x < (len == 1 ? 256u : 65536u); x++) {
            uint8_t *p = buf + (2 - len); /* input ends at the allocation */
            if (len == 1) {
                p[0] = (uint8_t)x;
            } else {
                p[0] = (uint8_t)(x >> 8);
                p[1] = (uint8_t)x;
            }
            struct nb_cbor c;
            struct nb_cbor_item it;
            nb_cbor_init(&c, p, len);
            nb_err err = nb_cbor_next(&c, &it);
            assert_true(err == NB_OK || err == NB_ERR_MALFORMED ||
                        err == NB_ERR_TRUNCATED);
            if (err) {
                assert_ptr_equal(c.p, p);
                continue;
            }
            uint8_t head[9];
            size_t hl = nb_cbor_head(head, it.major, it.val);
            const uint8_t *head_end =
                it.data ? it.data : c.p; /* strings: head ends at data */
            assert_int_equal((size_t)(head_end - p), hl);
            assert_memory_equal(head, p, hl);
            assert_true(c.p <= p + len);
        }
    }
    free(buf);
}

/* Values around each head size boundary, encoded by hand with every
 * additional info 24..27: accepted exactly when shortest. */
static void boundaries_by_hand(void **state)
{
    (void)state;
    static const uint64_t mins[4] = {24u, 0x100u, 0x10000u, 0x100000000ull};
    static const uint64_t maxs[4] = {0xFFu, 0xFFFFu, 0xFFFFFFFFu, UINT64_MAX};
    static const unsigned sizes[4] = {1, 2, 4, 8};
    static const uint8_t majors[3] = {NB_CBOR_UINT, NB_CBOR_NINT,
                                      NB_CBOR_TAG};
    for (unsigned m = 0; m < 3; m++) {
        for (unsigned k = 0; k < 4; k++) {
            uint64_t tries[] = {0, 1, 23, mins[k] - 1, mins[k], mins[k] + 1,
                                maxs[k] - 1, maxs[k]};
            for (unsigned t = 0; t < sizeof(tries) / sizeof(tries[0]); t++) {
                uint64_t v = tries[t];
                if (v > maxs[k])
                    continue;
                uint8_t buf[10];
                buf[0] = (uint8_t)(majors[m] << 5 | (24 + k));
                for (unsigned i = 0; i < sizes[k]; i++)
                    buf[1 + i] =
                        (uint8_t)(v >> (8 * (sizes[k] - 1 - i)));
                buf[1 + sizes[k]] = 0; /* the item a tag needs */
                struct nb_cbor c;
                struct nb_cbor_item it;
                nb_cbor_init(&c, buf, 2 + sizes[k]);
                nb_err err = nb_cbor_next(&c, &it);
                if (v < mins[k]) {
                    assert_int_equal(err, NB_ERR_MALFORMED);
                } else {
                    assert_int_equal(err, NB_OK);
                    assert_int_equal(it.major, majors[m]);
                    assert_true(it.val == v);
                    assert_ptr_equal(c.p, buf + 1 + sizes[k]);
                }
            }
        }
    }
}

/* ------------------------------------------------------- typed helpers */

static void int_range(void **state)
{
    (void)state;
    static const struct {
        const char *hex;
        nb_err err;
        int64_t v;
    } cases[] = {
        {"00", NB_OK, 0},
        {"20", NB_OK, -1},
        {"3903e7", NB_OK, -1000},
        {"1b7fffffffffffffff", NB_OK, INT64_MAX},
        {"3b7fffffffffffffff", NB_OK, INT64_MIN},
        {"3b7ffffffffffffffe", NB_OK, INT64_MIN + 1},
        {"1b8000000000000000", NB_ERR_MALFORMED, 0},
        {"3b8000000000000000", NB_ERR_MALFORMED, 0},
        {"1bffffffffffffffff", NB_ERR_MALFORMED, 0},
        {"3bffffffffffffffff", NB_ERR_MALFORMED, 0},
        {"6161", NB_ERR_MALFORMED, 0},
        {"f4", NB_ERR_MALFORMED, 0},
        {"c100", NB_ERR_MALFORMED, 0}, /* a tagged integer is a tag */
        {"3b7fffffff", NB_ERR_TRUNCATED, 0},
        {"", NB_ERR_TRUNCATED, 0},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        size_t len;
        uint8_t *buf = unhex(cases[k].hex, &len);
        struct nb_cbor c;
        int64_t v = 0x5A5A5A5A;
        nb_cbor_init(&c, buf, len);
        nb_err err = nb_cbor_int(&c, &v);
        CHECK(cases[k].hex, -1, err == cases[k].err);
        if (err) {
            CHECK(cases[k].hex, -1, v == 0x5A5A5A5A); /* not written */
            CHECK(cases[k].hex, -1, c.p == buf);      /* not consumed */
        } else {
            CHECK(cases[k].hex, -1, v == cases[k].v);
            CHECK(cases[k].hex, -1, nb_cbor_done(&c));
        }
        free(buf);
    }
}

/* Errors of the helpers leave outputs and cursor as they were. */
static void helpers_leave_state_on_error(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = unhex("6161", &len); /* "a" */
    struct nb_cbor c;
    nb_cbor_init(&c, buf, len);

    uint64_t u = 77;
    const uint8_t *p = (const uint8_t *)"x";
    size_t n = 99;
    assert_int_equal(nb_cbor_uint(&c, &u), NB_ERR_MALFORMED);
    assert_int_equal(nb_cbor_bstr(&c, &p, &n), NB_ERR_MALFORMED);
    assert_int_equal(nb_cbor_array(&c, &u), NB_ERR_MALFORMED);
    assert_int_equal(nb_cbor_map(&c, &u), NB_ERR_MALFORMED);
    assert_int_equal(nb_cbor_tag(&c, &u), NB_ERR_MALFORMED);
    assert_int_equal(u, 77);
    assert_int_equal(n, 99);
    assert_ptr_equal(c.p, buf);
    assert_int_equal(nb_cbor_tstr(&c, &p, &n), NB_OK);
    assert_int_equal(n, 1);
    assert_ptr_equal(p, buf + 1);
    assert_true(nb_cbor_done(&c));
    /* At the end, every reader says truncated. */
    assert_int_equal(nb_cbor_uint(&c, &u), NB_ERR_TRUNCATED);
    assert_int_equal(nb_cbor_skip(&c), NB_ERR_TRUNCATED);
    free(buf);

    /* The head readers themselves refuse counts that cannot fit (every
     * item takes a byte), before any item is read. */
    static const struct {
        const char *hex;
        uint8_t major;
        nb_err err;
    } counts[] = {
        {"83000000", NB_CBOR_ARRAY, NB_OK},
        {"84000000", NB_CBOR_ARRAY, NB_ERR_TRUNCATED},
        {"a200000000", NB_CBOR_MAP, NB_OK},
        {"a2000000", NB_CBOR_MAP, NB_ERR_TRUNCATED},
        {"a100", NB_CBOR_MAP, NB_ERR_TRUNCATED},
        {"bb4000000000000000", NB_CBOR_MAP, NB_ERR_TRUNCATED},
        {"c100", NB_CBOR_TAG, NB_OK},
        {"c1", NB_CBOR_TAG, NB_ERR_TRUNCATED},
        {"d8ff", NB_CBOR_TAG, NB_ERR_TRUNCATED},
    };
    for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
        buf = unhex(counts[k].hex, &len);
        u = 77;
        nb_cbor_init(&c, buf, len);
        nb_err err = counts[k].major == NB_CBOR_ARRAY ? nb_cbor_array(&c, &u)
                     : counts[k].major == NB_CBOR_MAP ? nb_cbor_map(&c, &u)
                                                      : nb_cbor_tag(&c, &u);
        CHECK(counts[k].hex, -1, err == counts[k].err);
        CHECK(counts[k].hex, -1, err ? c.p == buf && u == 77 : c.p > buf);
        struct nb_cbor_item it;
        nb_cbor_init(&c, buf, len);
        CHECK(counts[k].hex, -1, nb_cbor_next(&c, &it) == counts[k].err);
        free(buf);
    }

    /* An empty (NULL) buffer. */
    nb_cbor_init(&c, NULL, 0);
    assert_true(nb_cbor_done(&c));
    struct nb_cbor_item it;
    assert_int_equal(nb_cbor_next(&c, &it), NB_ERR_TRUNCATED);
    assert_int_equal(nb_cbor_skip(&c), NB_ERR_TRUNCATED);
}

/* --------------------------------------------------------------- heads */

static void head_round_trip(void **state)
{
    (void)state;
    static const struct {
        uint64_t val;
        size_t len;
    } b[] = {
        {0, 1}, {1, 1}, {23, 1}, {24, 2}, {255, 2}, {256, 3}, {65535, 3},
        {65536, 5}, {0xFFFFFFFFu, 5}, {0x100000000ull, 9},
        {UINT64_MAX, 9},
    };
    for (uint8_t major = 0; major < 8; major++) {
        for (size_t k = 0; k < sizeof(b) / sizeof(b[0]); k++) {
            uint64_t val = b[k].val;
            uint8_t out[16];
            memset(out, 0xAA, sizeof(out));
            size_t hl = nb_cbor_head(out, major, val);
            assert_int_equal(hl, b[k].len);
            for (size_t i = hl; i < sizeof(out); i++)
                assert_int_equal(out[i], 0xAA); /* nothing past the head */

            /* The bytes, as RFC 8949 section 3 spells them. */
            uint8_t ai = hl == 1 ? (uint8_t)val
                         : hl == 2 ? 24 : hl == 3 ? 25 : hl == 5 ? 26 : 27;
            assert_int_equal(out[0], (uint8_t)(major << 5 | ai));
            for (size_t i = 1; i < hl; i++)
                assert_int_equal(out[i],
                                 (uint8_t)(val >> (8 * (hl - 1 - i))));

            /* Read it back: head + what the item needs after it. */
            size_t body = 0;
            int fits = 1;
            switch (major) {
            case NB_CBOR_BSTR:
            case NB_CBOR_TSTR:
            case NB_CBOR_ARRAY: /* items of one byte (0x00) each */
                fits = val <= 65536u;
                body = fits ? (size_t)val : 16;
                break;
            case NB_CBOR_MAP:
                fits = val <= 65536u;
                body = fits ? 2 * (size_t)val : 16;
                break;
            case NB_CBOR_TAG: body = 1; break;
            default: break;
            }
            size_t len = hl + body;
            uint8_t *buf = malloc(len);
            assert_non_null(buf);
            memcpy(buf, out, hl);
            memset(buf + hl, 0, body);
            struct nb_cbor c;
            struct nb_cbor_item it;
            nb_cbor_init(&c, buf, len);
            nb_err err = nb_cbor_next(&c, &it);
            if (major == NB_CBOR_SIMPLE) {
                assert_int_equal(err, val >= 20 && val <= 22
                                          ? NB_OK : NB_ERR_MALFORMED);
                if (err) {
                    free(buf);
                    continue;
                }
            } else if (!fits) {
                /* The count or length is more than the bytes left. */
                assert_int_equal(err, NB_ERR_TRUNCATED);
                assert_ptr_equal(c.p, buf);
                nb_cbor_init(&c, buf, len);
                assert_int_equal(nb_cbor_skip(&c), NB_ERR_TRUNCATED);
                free(buf);
                continue;
            }
            assert_int_equal(err, NB_OK);
            assert_int_equal(it.major, major);
            assert_true(it.val == val);
            if (major == NB_CBOR_BSTR || major == NB_CBOR_TSTR) {
                assert_ptr_equal(it.data, buf + hl);
                assert_true(nb_cbor_done(&c));
            } else {
                assert_ptr_equal(c.p, buf + hl);
            }
            nb_cbor_init(&c, buf, len);
            assert_int_equal(nb_cbor_skip(&c), NB_OK);
            assert_true(nb_cbor_done(&c));
            free(buf);
        }
    }
}

static void head_literals(void **state)
{
    (void)state;
    static const struct {
        uint8_t major;
        uint64_t val;
        const char *hex; /* from RFC 8949 Appendix A */
    } lit[] = {
        {0, 0, "00"},
        {0, 1000000, "1a000f4240"},
        {0, 1000000000000ull, "1b000000e8d4a51000"},
        {0, UINT64_MAX, "1bffffffffffffffff"},
        {1, 999, "3903e7"},
        {2, 0, "40"},
        {3, 4, "64"},
        {4, 25, "9819"},
        {5, 2, "a2"},
        {6, 1, "c1"},
        {6, 24, "d818"},
        {6, 32, "d820"},
        {7, 20, "f4"},
        {7, 22, "f6"},
    };
    for (size_t k = 0; k < sizeof(lit) / sizeof(lit[0]); k++) {
        size_t len;
        uint8_t *want = unhex(lit[k].hex, &len);
        uint8_t out[9];
        assert_int_equal(nb_cbor_head(out, lit[k].major, lit[k].val), len);
        assert_memory_equal(out, want, len);
        free(want);
    }
    /* Only the low three bits of `major` count. */
    uint8_t out[9];
    assert_int_equal(nb_cbor_head(out, 8 + NB_CBOR_NINT, 0), 1);
    assert_int_equal(out[0], 0x20);
}

/* ---------------------------------------------------------------- skip */

static void skip_sequence(void **state)
{
    (void)state;
    /* 1, [1, [2, 3], [4, 5]], {"a": 1, "b": [2, 3]}, null, 24(h'...') */
    size_t len;
    uint8_t *buf = unhex("01 8301820203820405 a26161016162820203 f6 "
                         "d818456449455446", &len);
    static const size_t ends[] = {1, 9, 18, 19, 27};
    struct nb_cbor c;
    nb_cbor_init(&c, buf, len);
    for (size_t k = 0; k < 5; k++) {
        assert_int_equal(nb_cbor_skip(&c), NB_OK);
        assert_ptr_equal(c.p, buf + ends[k]);
    }
    assert_true(nb_cbor_done(&c));
    assert_int_equal(nb_cbor_skip(&c), NB_ERR_TRUNCATED);
    free(buf);

    /* The shape of a COSE_Sign1: 18([h'a10126', {4: h'3131'}, h'01020304',
     * h'']); skip inside a map, after a value read by hand. */
    buf = unhex("d2 84 43a10126 a1 04 423131 4401020304 40", &len);
    nb_cbor_init(&c, buf, len);
    assert_int_equal(nb_cbor_skip(&c), NB_OK);
    assert_true(nb_cbor_done(&c));

    uint64_t u;
    nb_cbor_init(&c, buf, len);
    assert_int_equal(nb_cbor_tag(&c, &u), NB_OK);
    assert_int_equal(u, 18);
    assert_int_equal(nb_cbor_array(&c, &u), NB_OK);
    assert_int_equal(u, 4);
    assert_int_equal(nb_cbor_skip(&c), NB_OK); /* protected */
    assert_int_equal(nb_cbor_map(&c, &u), NB_OK);
    assert_int_equal(u, 1);
    assert_int_equal(nb_cbor_uint(&c, &u), NB_OK);
    assert_int_equal(u, 4);
    assert_int_equal(nb_cbor_skip(&c), NB_OK); /* kid */
    assert_int_equal(nb_cbor_skip(&c), NB_OK); /* payload */
    const uint8_t *p;
    size_t n;
    assert_int_equal(nb_cbor_bstr(&c, &p, &n), NB_OK);
    assert_int_equal(n, 0);
    assert_true(nb_cbor_done(&c));
    free(buf);

    /* Large flat containers whose counts equal the bytes left. */
    uint8_t *big = malloc(3 + 1000);
    assert_non_null(big);
    big[0] = 0x99; /* array, two-byte count */
    big[1] = 0x03;
    big[2] = 0xE8; /* 1000 */
    memset(big + 3, 0, 1000);
    nb_cbor_init(&c, big, 1003);
    assert_int_equal(nb_cbor_skip(&c), NB_OK);
    assert_true(nb_cbor_done(&c));
    big[0] = 0xB9; /* map of 500 pairs */
    big[1] = 0x01;
    big[2] = 0xF4;
    nb_cbor_init(&c, big, 1003);
    assert_int_equal(nb_cbor_skip(&c), NB_OK);
    assert_true(nb_cbor_done(&c));
    big[2] = 0xF5; /* 501 pairs: one byte short of two per pair */
    nb_cbor_init(&c, big, 1003);
    assert_int_equal(nb_cbor_skip(&c), NB_ERR_TRUNCATED);
    assert_ptr_equal(c.p, big);
    free(big);
}

/* `n` containers opened by `open` (one byte each), then `inner`. */
static uint8_t *nested(size_t n, uint8_t open, const uint8_t *inner,
                       size_t inner_len, const uint8_t *after,
                       size_t after_len, size_t *len)
{
    *len = n + inner_len + after_len;
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    memset(buf, open, n);
    memcpy(buf + n, inner, inner_len);
    if (after_len)
        memcpy(buf + n + inner_len, after, after_len);
    return buf;
}

static void skip_depth(void **state)
{
    (void)state;
    static const uint8_t zero[] = {0x00};
    static const uint8_t empty_array[] = {0x80};
    static const uint8_t empty_map[] = {0xA0};
    static const uint8_t map_head[] = {0xA1, 0x00}; /* {0: ... */
    struct {
        uint8_t open;
        const uint8_t *inner;
        size_t inner_len;
        size_t extra; /* containers the inner part opens itself */
    } kinds[] = {
        {0x81, zero, 1, 0},        /* [[...[0]...]] */
        {0x81, empty_array, 1, 1}, /* [[...[]...]] */
        {0xC1, zero, 1, 0},        /* 1(1(...1(0)...)) */
        {0xC1, empty_map, 1, 1},   /* 1(1(...{}...)) */
    };
    struct nb_cbor c;
    size_t len;
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        for (size_t depth = 1; depth <= NB_CBOR_MAX_DEPTH + 2; depth++) {
            size_t n = depth - kinds[k].extra;
            uint8_t *buf = nested(n, kinds[k].open, kinds[k].inner,
                                  kinds[k].inner_len, NULL, 0, &len);
            nb_cbor_init(&c, buf, len);
            nb_err err = nb_cbor_skip(&c);
            if (depth <= NB_CBOR_MAX_DEPTH) {
                assert_int_equal(err, NB_OK);
                assert_true(nb_cbor_done(&c));
            } else {
                assert_int_equal(err, NB_ERR_MALFORMED);
                assert_ptr_equal(c.p, buf);
            }
            free(buf);
        }
    }

    /* Nested maps {0: {0: ... {0: 0}}}. */
    for (size_t depth = 1; depth <= NB_CBOR_MAX_DEPTH + 1; depth++) {
        len = 2 * depth + 1;
        uint8_t *buf = malloc(len);
        assert_non_null(buf);
        for (size_t i = 0; i < depth; i++)
            memcpy(buf + 2 * i, map_head, 2);
        buf[len - 1] = 0;
        nb_cbor_init(&c, buf, len);
        assert_int_equal(nb_cbor_skip(&c),
                         depth <= NB_CBOR_MAX_DEPTH ? NB_OK
                                                    : NB_ERR_MALFORMED);
        free(buf);
    }

    /* Going back up: [[...[0]...], [...[0]...]] at full depth twice. */
    {
        uint8_t buf[2 * NB_CBOR_MAX_DEPTH + 1];
        size_t i = 0;
        buf[i++] = 0x82;
        for (int half = 0; half < 2; half++) {
            for (int d = 1; d < NB_CBOR_MAX_DEPTH; d++)
                buf[i++] = 0x81;
            buf[i++] = 0x00;
        }
        nb_cbor_init(&c, buf, i);
        assert_int_equal(nb_cbor_skip(&c), NB_OK);
        assert_true(nb_cbor_done(&c));
    }

    /* Very deep input fails at the limit, without recursion. */
    uint8_t *deep = nested(100000, 0x81, zero, 1, NULL, 0, &len);
    nb_cbor_init(&c, deep, len);
    assert_int_equal(nb_cbor_skip(&c), NB_ERR_MALFORMED);
    assert_ptr_equal(c.p, deep);
    free(deep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(appendix_a_decodes),
        cmocka_unit_test(appendix_a_typed),
        cmocka_unit_test(appendix_a_truncated),
        cmocka_unit_test(refusals),
        cmocka_unit_test(shortest_accepted),
        cmocka_unit_test(every_single_byte),
        cmocka_unit_test(canonical_two_bytes),
        cmocka_unit_test(boundaries_by_hand),
        cmocka_unit_test(int_range),
        cmocka_unit_test(helpers_leave_state_on_error),
        cmocka_unit_test(head_round_trip),
        cmocka_unit_test(head_literals),
        cmocka_unit_test(skip_sequence),
        cmocka_unit_test(skip_depth),
    };
    return cmocka_run_group_tests_name("cbor", tests, NULL, NULL);
}
