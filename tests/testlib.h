/* testlib.h - shared helpers of the core unit tests: a simulated device
 * (memory flash + layout + crypto port + the TEST keys and identity of
 * lib/nb_testpkg.h + work and manifest buffers + nb_device), signed test
 * packages with a seeded payload, install/stage/boot in one call, and
 * hand-built manifests (for the cases our own builder refuses to make:
 * duplicate keys, unknown critical keys, extensions, wrong digests).
 *
 * Header only (static inline functions), so no build change is needed:
 * each tests/test_*.c includes it after <cmocka.h>.
 *
 * Crypto is the OpenSSL port, as in the simulator: a power-cut sweep
 * verifies two signatures per slot check and OpenSSL does that about
 * twenty times faster than mbedTLS. The mbedTLS port is checked on the
 * same packages in test_package.c and test_manifest.c.
 *
 * !!! The keys are the deterministic test keys of nb_testpkg.h, computed
 * from public seeds: for tests only. !!!
 */
#ifndef NB_TESTLIB_H
#define NB_TESTLIB_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nb_boot.h"
#include "nb_cbor.h"
#include "nb_crypto_openssl.h"
#include "nb_install.h"
#include "nb_pkgbuild.h"
#include "nb_sign_openssl.h"
#include "nb_simflash.h"
#include "nb_testpkg.h"

#define TL_BUF 4096u   /* work buffer: a multiple of every write size, and
                        * the test packages' block size (4 KiB) */
#define TL_CHUNK 777u  /* install chunk: deliberately odd */

/* --------------------------------------------------------------- rng */

static inline uint64_t tl_rng(uint64_t *s)
{
    /* xorshift64*, never zero-seeded */
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static inline void tl_fill(uint8_t *p, uint32_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (uint32_t i = 0; i < n; i++)
        p[i] = (uint8_t)(tl_rng(&s) >> 32);
}

/* --------------------------------------------------------- geometries */

static inline struct nb_simflash_geometry tl_geo(uint32_t ws, uint8_t ev,
                                                 uint32_t count,
                                                 uint32_t size)
{
    struct nb_simflash_geometry g;
    memset(&g, 0, sizeof(g));
    g.write_size = ws;
    g.erase_value = ev;
    g.region_count = 1;
    g.regions[0].count = count;
    g.regions[0].size = size;
    return g;
}

/* Append a region of `count` sectors of `size` bytes. */
static inline void tl_geo_add(struct nb_simflash_geometry *g, uint32_t count,
                              uint32_t size)
{
    g->regions[g->region_count].count = count;
    g->regions[g->region_count].size = size;
    g->region_count++;
}

/* ------------------------------------------------------------ devices */

struct tl_dev {
    struct nb_simflash *sim;
    struct nb_flash flash;
    struct nb_openssl_crypto oc;
    struct nb_crypto crypto;
    int has_keys;
    struct nb_testkeys keys;   /* test root, test signer, delegation */
    struct nb_identity id;     /* the test identity (hw rev "sim-1") */
    struct nb_boot_config cfg;
    struct nb_device dev;
    uint8_t buf[TL_BUF];
    uint8_t mbuf[NB_MANIFEST_MAX];
};

/* Flash and crypto only: no layout, keys or config (flash tests). Heap
 * allocated: the crypto struct points into it. */
static inline struct tl_dev *tl_dev_bare(const struct nb_simflash_geometry *g)
{
    struct tl_dev *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    assert_int_equal(nb_simflash_create_mem(&t->sim, g), NB_OK);
    nb_simflash_interface(t->sim, &t->flash);
    assert_int_equal(nb_crypto_openssl_init(&t->crypto, &t->oc), NB_OK);
    return t;
}

/* A blank device with a planned layout, trusting the test root, with the
 * test identity. */
static inline struct tl_dev *tl_dev_new(const struct nb_simflash_geometry *g,
                                        uint8_t kind, uint32_t slot_size,
                                        uint32_t journal_min)
{
    struct tl_dev *t = tl_dev_bare(g);
    assert_int_equal(nb_testkeys_init(&t->keys, &t->crypto), NB_OK);
    t->has_keys = 1;
    nb_testpkg_identity(&t->id);
    assert_int_equal(nb_layout_plan(&t->cfg.layout, &t->flash, kind,
                                    slot_size, journal_min),
                     NB_OK);
    t->cfg.flash = &t->flash;
    t->cfg.crypto = &t->crypto;
    t->cfg.keystore = &t->keys.keystore;
    t->cfg.identity = &t->id;
    t->cfg.buf = t->buf;
    t->cfg.buf_size = TL_BUF;
    t->cfg.mbuf = t->mbuf;
    t->cfg.mbuf_size = NB_MANIFEST_MAX;
    return t;
}

static inline void tl_dev_free(struct tl_dev *t)
{
    if (!t)
        return;
    if (t->has_keys)
        nb_testkeys_free(&t->keys);
    nb_crypto_openssl_free(&t->crypto, &t->oc);
    nb_simflash_close(t->sim);
    free(t);
}

static inline uint64_t tl_violations(const struct tl_dev *t)
{
    struct nb_simflash_stats st;
    nb_simflash_stats(t->sim, &st);
    return st.violations;
}

static inline uint64_t tl_ops(const struct tl_dev *t)
{
    struct nb_simflash_stats st;
    nb_simflash_stats(t->sim, &st);
    return st.ops;
}

static inline void tl_provision(struct tl_dev *t, uint8_t lifecycle,
                                uint8_t limit)
{
    assert_int_equal(nb_device_provision(&t->dev, &t->cfg, lifecycle, limit),
                     NB_OK);
}

/* A reset: mount the journal into a fresh nb_device. */
static inline nb_err tl_open(struct tl_dev *t)
{
    return nb_device_open(&t->dev, &t->cfg);
}

/* A reset followed by one run of the bootloader. */
static inline nb_err tl_boot(struct tl_dev *t, struct nb_boot_result *res)
{
    nb_err err = tl_open(t);
    if (err)
        return err;
    return nb_boot(&t->dev, res);
}

/* The verification environment of the device's slots (nb_pkg_verify_slot)
 * with the device's buffers, keys, identity and revocations. */
static inline struct nb_pkg_env tl_env(struct tl_dev *t)
{
    struct nb_pkg_env e;
    memset(&e, 0, sizeof(e));
    e.flash = &t->flash;
    e.crypto = &t->crypto;
    e.keystore = &t->keys.keystore;
    e.identity = &t->id;
    e.rev = &t->dev.state.rev;
    e.buf = t->buf;
    e.buf_size = TL_BUF;
    e.mbuf = t->mbuf;
    e.mbuf_size = NB_MANIFEST_MAX;
    return e;
}

/* ------------------------------------------------------------- images */

/* A package (.nbpkg bytes), as it lies in a slot. */
struct tl_image {
    uint8_t *data;
    uint32_t size;   /* package bytes: payload offset + payload size */
    uint32_t version, svn;
    uint32_t mlen;   /* manifest (COSE_Sign1) bytes, at data + 12 */
    uint32_t poff;   /* payload offset */
    uint32_t psize;  /* payload bytes */
};

/* Adopt the bytes of `b` (the image owns them from here), reading sizes
 * from the container and the (unverified) manifest. */
static inline struct tl_image tl_image_adopt(const struct nb_crypto *c,
                                             struct nb_buf *b)
{
    struct tl_image im;
    struct nb_manifest m;
    memset(&im, 0, sizeof(im));
    assert_true(b->len >= NB_PKG_HDR_SIZE && b->len <= UINT32_MAX);
    assert_int_equal(nb_pkg_parse_header(b->p, &im.mlen), NB_OK);
    assert_int_equal(nb_manifest_parse_unverified(c, b->p + NB_PKG_HDR_SIZE,
                                                  im.mlen, &m),
                     NB_OK);
    im.data = b->p;
    im.size = (uint32_t)b->len;
    im.version = m.version;
    im.svn = m.svn;
    im.poff = m.payload_offset;
    im.psize = m.payload_size;
    assert_int_equal(im.size, im.poff + im.psize);
    memset(b, 0, sizeof(*b));
    return im;
}

/* A test package: `payload` bytes from `seed`, signed by the test signer
 * (delegated by the test root), for the test identity. */
static inline struct tl_image tl_image_make(struct tl_dev *t,
                                            uint32_t payload,
                                            uint32_t version, uint32_t svn,
                                            uint64_t seed)
{
    struct nb_buf b = {0};
    assert_int_equal(nb_testpkg_make(&t->keys, &t->crypto, version, svn,
                                     payload, seed, &b),
                     NB_OK);
    return tl_image_adopt(&t->crypto, &b);
}

/* A test package of exactly `total` bytes in the slot (payload offset +
 * payload size): the payload size is chosen to fit. */
static inline struct tl_image tl_image_sized(struct tl_dev *t,
                                             uint32_t total,
                                             uint32_t version, uint32_t svn,
                                             uint64_t seed)
{
    uint32_t poff = 512;
    for (int round = 0; round < 6; round++) {
        assert_true(total > poff);
        struct tl_image im = tl_image_make(t, total - poff, version, svn,
                                           seed);
        if (im.size == total)
            return im;
        poff = im.poff;
        free(im.data);
    }
    fail_msg("no package of exactly %u bytes", (unsigned)total);
    struct tl_image none = {0};
    return none;
}

static inline void tl_image_free(struct tl_image *im)
{
    free(im->data);
    im->data = NULL;
}

/* The manifest request of the test packages (test vendor and class,
 * hardware revision NB_TEST_HW_REV, created NB_TEST_CREATED). */
static inline struct nb_manifest_req tl_req(uint32_t version, uint32_t svn)
{
    struct nb_manifest_req r;
    memset(&r, 0, sizeof(r));
    nb_testpkg_vendor(r.vendor);
    nb_testpkg_class(r.class_id);
    r.hw_count = 1;
    r.hw[0] = NB_TEST_HW_REV;
    r.major = nb_version_major(version);
    r.minor = nb_version_minor(version);
    r.patch = nb_version_patch(version);
    r.svn = svn;
    r.created = NB_TEST_CREATED;
    return r;
}

/* A package built from `req` with our builder, signed by `signer` under
 * `deleg` (NULL: the test signer and its delegation). */
static inline struct tl_image tl_image_req(struct tl_dev *t,
                                           const struct nb_signer *signer,
                                           const struct nb_buf *deleg,
                                           const struct nb_manifest_req *req,
                                           uint32_t payload, uint64_t seed)
{
    struct nb_buf m = {0}, pkg = {0};
    uint8_t *p = malloc(payload ? payload : 1);
    assert_non_null(p);
    nb_testpkg_payload(p, payload, seed);
    if (!signer) {
        signer = &t->keys.signer;
        deleg = &t->keys.delegation;
    }
    assert_int_equal(nb_build_manifest(&t->crypto, signer, deleg->p,
                                       deleg->len, req, p, payload, &m),
                     NB_OK);
    assert_int_equal(nb_build_package(&t->crypto, m.p, m.len, p, payload,
                                      &pkg),
                     NB_OK);
    nb_buf_free(&m);
    free(p);
    return tl_image_adopt(&t->crypto, &pkg);
}

/* begin (manifest) + write (payload, odd chunks) + finish; the first
 * error. */
static inline nb_err tl_install(struct tl_dev *t, const struct tl_image *im,
                                uint8_t target)
{
    struct nb_install in;
    nb_err err = nb_install_begin(&in, &t->dev, im->data + NB_PKG_HDR_SIZE,
                                  im->mlen, target);
    const uint8_t *p = im->data + im->poff;
    for (uint32_t o = 0; !err && o < im->psize; o += TL_CHUNK) {
        uint32_t n = im->psize - o < TL_CHUNK ? im->psize - o : TL_CHUNK;
        err = nb_install_write(&in, p + o, n);
    }
    return err ? err : nb_install_finish(&in);
}

/* Install and mark pending, on a freshly opened device. */
static inline nb_err tl_stage(struct tl_dev *t, const struct tl_image *im)
{
    nb_err err = tl_open(t);
    if (!err)
        err = tl_install(t, im, NB_TARGET_UPDATE);
    return err ? err : nb_install_set_pending(&t->dev);
}

/* Nonzero when the flash holds `im` bit-exact at `addr`. */
static inline int tl_holds(struct tl_dev *t, uint32_t addr,
                           const struct tl_image *im)
{
    if (addr + im->size > nb_simflash_size(t->sim))
        return 0;
    return memcmp(nb_simflash_data(t->sim) + addr, im->data, im->size) == 0;
}

/* Program `len` bytes at `addr` (erased), padded to the write size with
 * the erased value. */
static inline void tl_put(struct tl_dev *t, uint32_t addr, const void *data,
                          uint32_t len)
{
    uint32_t ws = t->flash.write_size;
    uint32_t n = (len + ws - 1) / ws * ws;
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    memset(p, t->flash.erase_value, n);
    memcpy(p, data, len);
    assert_int_equal(t->flash.prog(t->flash.ctx, addr, p, n), NB_OK);
    free(p);
}

/* Payload offset of the package at `addr` (container header and manifest
 * read from flash, not verified). */
static inline uint32_t tl_payload_offset(struct tl_dev *t, uint32_t addr)
{
    const uint8_t *d = nb_simflash_data(t->sim) + addr;
    struct nb_manifest m;
    uint32_t mlen;
    assert_int_equal(nb_pkg_parse_header(d, &mlen), NB_OK);
    assert_int_equal(nb_manifest_parse_unverified(&t->crypto,
                                                  d + NB_PKG_HDR_SIZE, mlen,
                                                  &m),
                     NB_OK);
    return m.payload_offset;
}

/* A copy of the whole flash content, for "nothing written" checks. */
static inline uint8_t *tl_snapshot(struct tl_dev *t)
{
    uint32_t n = nb_simflash_size(t->sim);
    uint8_t *p = malloc(n);
    assert_non_null(p);
    memcpy(p, nb_simflash_data(t->sim), n);
    return p;
}

static inline int tl_same(struct tl_dev *t, const uint8_t *snap)
{
    return memcmp(nb_simflash_data(t->sim), snap,
                  nb_simflash_size(t->sim)) == 0;
}

/* Packed version helper. */
static inline uint32_t tl_ver(uint32_t major, uint32_t minor, uint32_t patch)
{
    uint32_t v = 0;
    assert_true(nb_version_pack(major, minor, patch, &v));
    return v;
}

/* ----------------------------------------------------- other keys */

/* A key pair from a seed (OpenSSL; random ECDSA nonces) and its signer. */
struct tl_key {
    EVP_PKEY *pkey;
    struct nb_signer s;
    uint8_t kid[NB_KEY_ID_LEN];
};

static inline void tl_key_init(struct tl_key *k, const struct nb_crypto *c,
                               uint64_t seed)
{
    memset(k, 0, sizeof(*k));
    assert_int_equal(nb_openssl_key_from_seed(seed, &k->pkey), NB_OK);
    assert_int_equal(nb_openssl_signer(k->pkey, &k->s), NB_OK);
    assert_int_equal(nb_key_id(c, k->s.pub, k->kid), NB_OK);
}

static inline void tl_key_free(struct tl_key *k)
{
    EVP_PKEY_free(k->pkey);
    k->pkey = NULL;
}

/* A keystore trusting exactly one root public key. */
struct tl_keystore {
    struct nb_keystore ks;
    uint8_t kid[NB_KEY_ID_LEN];
    uint8_t pub[NB_PUBKEY_LEN];
};

static inline nb_err tl_keystore_root(void *ctx,
                                      const uint8_t kid[NB_KEY_ID_LEN],
                                      uint8_t pub[NB_PUBKEY_LEN])
{
    const struct tl_keystore *k = ctx;
    if (memcmp(kid, k->kid, NB_KEY_ID_LEN) != 0)
        return NB_ERR_UNKNOWN_KEY;
    memcpy(pub, k->pub, NB_PUBKEY_LEN);
    return NB_OK;
}

/* Heap allocated: ks.ctx points at it. */
static inline struct tl_keystore *tl_keystore_new(const struct nb_crypto *c,
                                                  const uint8_t
                                                      pub[NB_PUBKEY_LEN])
{
    struct tl_keystore *k = calloc(1, sizeof(*k));
    assert_non_null(k);
    memcpy(k->pub, pub, NB_PUBKEY_LEN);
    assert_int_equal(nb_key_id(c, pub, k->kid), NB_OK);
    k->ks.ctx = k;
    k->ks.root_key = tl_keystore_root;
    return k;
}

/* A delegation of `pub` signed by `root`: test vendor, validity
 * [nbf, naf], `class_count` classes (0: every class). */
static inline void tl_delegate(const struct nb_crypto *c,
                               const struct nb_signer *root,
                               const uint8_t pub[NB_PUBKEY_LEN],
                               uint64_t nbf, uint64_t naf,
                               unsigned class_count,
                               const uint8_t (*classes)[NB_UUID_LEN],
                               struct nb_buf *out)
{
    struct nb_delegation_req r;
    memset(&r, 0, sizeof(r));
    memcpy(r.pub, pub, NB_PUBKEY_LEN);
    r.not_before = nbf;
    r.not_after = naf;
    nb_testpkg_vendor(r.vendor);
    r.class_count = class_count;
    for (unsigned i = 0; i < class_count; i++)
        memcpy(r.classes[i], classes[i], NB_UUID_LEN);
    assert_int_equal(nb_build_delegation(c, root, &r, out), NB_OK);
}

/* ------------------------------------------- hand-built manifests */

/* Append bytes to a buffer (our own writer, independent of
 * lib/nb_pkgbuild.c's, so that it can write what the builder refuses). */
static inline void tl_cat(struct nb_buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        assert_non_null(q);
        b->p = q;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

static inline void tl_cbor(struct nb_buf *b, uint8_t major, uint64_t val)
{
    uint8_t h[9];
    tl_cat(b, h, nb_cbor_head(h, major, val));
}

static inline void tl_cbor_int(struct nb_buf *b, int64_t v)
{
    if (v >= 0)
        tl_cbor(b, NB_CBOR_UINT, (uint64_t)v);
    else
        tl_cbor(b, NB_CBOR_NINT, (uint64_t)(-1 - v));
}

static inline void tl_cbor_bstr(struct nb_buf *b, const void *p, size_t n)
{
    tl_cbor(b, NB_CBOR_BSTR, n);
    tl_cat(b, p, n);
}

static inline void tl_cbor_tstr(struct nb_buf *b, const char *s)
{
    tl_cbor(b, NB_CBOR_TSTR, strlen(s));
    tl_cat(b, s, strlen(s));
}

/* One extra map entry: key, then `raw` (encoded CBOR) as the value, or
 * the unsigned `value` when raw is NULL. */
struct tl_extra {
    int64_t key;
    uint64_t value;
    const uint8_t *raw;
    size_t raw_len;
};

/* What a hand-built manifest map holds: the fields of `req`, computed
 * from the payload, unless overridden here. */
struct tl_mopts {
    uint32_t block_size;          /* 0: 4096 */
    uint32_t payload_offset;      /* 0: 1024 */
    const uint8_t *digest;        /* field 8 override (32 bytes), or NULL */
    int omit;                     /* leave this field out (1..15), or 0 */
    const struct tl_extra *extra; /* entries appended after field 15 */
    unsigned extra_count;
};

/* Encode a manifest map for `payload` under signer key ID `kid`. */
static inline void tl_manifest_map(const struct nb_crypto *c,
                                   const struct nb_manifest_req *r,
                                   const struct tl_mopts *o,
                                   const uint8_t kid[NB_KEY_ID_LEN],
                                   const uint8_t *payload, uint32_t n,
                                   struct nb_buf *out)
{
    uint32_t bs = o->block_size ? o->block_size : 4096;
    uint32_t blocks = (n + bs - 1) / bs;
    uint8_t d[NB_SHA256_LEN];
    unsigned fields = 14 + (r->has_precursor ? 1 : 0) - (o->omit ? 1 : 0);
    tl_cbor(out, NB_CBOR_MAP, fields + o->extra_count);
    for (int key = 1; key <= 15; key++) {
        if (key == o->omit || (key == 12 && !r->has_precursor))
            continue;
        tl_cbor_int(out, key);
        switch (key) {
        case 1: tl_cbor_int(out, NB_MANIFEST_FORMAT); break;
        case 2: tl_cbor_bstr(out, r->vendor, NB_UUID_LEN); break;
        case 3: tl_cbor_bstr(out, r->class_id, NB_UUID_LEN); break;
        case 4:
            tl_cbor(out, NB_CBOR_ARRAY, r->hw_count);
            for (unsigned i = 0; i < r->hw_count; i++)
                tl_cbor_tstr(out, r->hw[i]);
            break;
        case 5:
            tl_cbor(out, NB_CBOR_ARRAY, 3);
            tl_cbor_int(out, r->major);
            tl_cbor_int(out, r->minor);
            tl_cbor_int(out, r->patch);
            break;
        case 6: tl_cbor_int(out, r->svn); break;
        case 7: tl_cbor_int(out, n); break;
        case 8:
            assert_int_equal(nb_sha256(c, payload, n, d), NB_OK);
            tl_cbor_bstr(out, o->digest ? o->digest : d, NB_SHA256_LEN);
            break;
        case 9: tl_cbor_int(out, bs); break;
        case 10:
            tl_cbor(out, NB_CBOR_BSTR, (uint64_t)blocks * NB_SHA256_LEN);
            for (uint32_t i = 0; i < blocks; i++) {
                uint32_t k = n - i * bs < bs ? n - i * bs : bs;
                assert_int_equal(nb_sha256(c, payload + i * bs, k, d), NB_OK);
                tl_cat(out, d, NB_SHA256_LEN);
            }
            break;
        case 11: tl_cbor_int(out, r->payload_format); break;
        case 12: tl_cbor_bstr(out, r->precursor, NB_SHA256_LEN); break;
        case 13: tl_cbor_int(out, (int64_t)r->created); break;
        case 14: tl_cbor_bstr(out, kid, NB_KEY_ID_LEN); break;
        case 15:
            tl_cbor_int(out, o->payload_offset ? o->payload_offset : 1024);
            break;
        }
    }
    for (unsigned i = 0; i < o->extra_count; i++) {
        tl_cbor_int(out, o->extra[i].key);
        if (o->extra[i].raw)
            tl_cat(out, o->extra[i].raw, o->extra[i].raw_len);
        else
            tl_cbor_int(out, (int64_t)o->extra[i].value);
    }
}

/* Sign `payload` (encoded CBOR) as a tagged COSE_Sign1 the way
 * lib/nb_pkgbuild.c does: protected {1: -7, 4: kid}, unprotected
 * {-70001: deleg} (or {} when deleg is NULL), signature over the RFC 9052
 * Sig_structure ["Signature1", protected, h'', payload]. */
static inline void tl_sign1(const struct nb_crypto *c,
                            const struct nb_signer *s, const uint8_t *deleg,
                            size_t deleg_len, const struct nb_buf *payload,
                            struct nb_buf *out)
{
    struct nb_buf prot = {0}, ss = {0};
    uint8_t kid[NB_KEY_ID_LEN], hash[NB_SHA256_LEN], sig[NB_SIG_LEN];
    assert_int_equal(nb_key_id(c, s->pub, kid), NB_OK);
    tl_cbor(&prot, NB_CBOR_MAP, 2);
    tl_cbor_int(&prot, 1);
    tl_cbor_int(&prot, NB_COSE_ALG_ES256);
    tl_cbor_int(&prot, 4);
    tl_cbor_bstr(&prot, kid, NB_KEY_ID_LEN);
    tl_cbor(&ss, NB_CBOR_ARRAY, 4);
    tl_cbor_tstr(&ss, "Signature1");
    tl_cbor_bstr(&ss, prot.p, prot.len);
    tl_cbor_bstr(&ss, NULL, 0);
    tl_cbor_bstr(&ss, payload->p, payload->len);
    assert_int_equal(nb_sha256(c, ss.p, ss.len, hash), NB_OK);
    assert_int_equal(s->sign(s->ctx, hash, sig), NB_OK);
    tl_cbor(out, NB_CBOR_TAG, NB_COSE_TAG_SIGN1);
    tl_cbor(out, NB_CBOR_ARRAY, 4);
    tl_cbor_bstr(out, prot.p, prot.len);
    if (deleg) {
        tl_cbor(out, NB_CBOR_MAP, 1);
        tl_cbor_int(out, NB_COSE_LABEL_DELEGATION);
        tl_cbor_bstr(out, deleg, deleg_len);
    } else {
        tl_cbor(out, NB_CBOR_MAP, 0);
    }
    tl_cbor_bstr(out, payload->p, payload->len);
    tl_cbor_bstr(out, sig, NB_SIG_LEN);
    nb_buf_free(&prot);
    nb_buf_free(&ss);
}

/* A hand-built manifest signed by the test signer (with its delegation),
 * for `req` and payload bytes `p`: *out receives the COSE_Sign1 bytes. */
static inline void tl_manifest_hand(struct tl_dev *t,
                                    const struct nb_manifest_req *req,
                                    const struct tl_mopts *o,
                                    const uint8_t *p, uint32_t n,
                                    struct nb_buf *out)
{
    struct nb_buf map = {0};
    uint8_t kid[NB_KEY_ID_LEN];
    assert_int_equal(nb_key_id(&t->crypto, t->keys.signer.pub, kid), NB_OK);
    tl_manifest_map(&t->crypto, req, o, kid, p, n, &map);
    tl_sign1(&t->crypto, &t->keys.signer, t->keys.delegation.p,
             t->keys.delegation.len, &map, out);
    nb_buf_free(&map);
}

/* The container around manifest bytes and a payload, written by hand
 * (nb_build_package would refuse a manifest it cannot parse). */
static inline struct tl_image tl_image_container(const uint8_t *m,
                                                 uint32_t mlen,
                                                 uint32_t poff,
                                                 const uint8_t *payload,
                                                 uint32_t n, uint32_t version,
                                                 uint32_t svn)
{
    struct tl_image im;
    assert_true(NB_PKG_HDR_SIZE + mlen <= poff);
    memset(&im, 0, sizeof(im));
    im.size = poff + n;
    im.data = calloc(1, im.size);
    assert_non_null(im.data);
    memcpy(im.data, "NBPK", 4);
    im.data[4] = NB_PKG_VERSION;
    for (int i = 0; i < 4; i++)
        im.data[8 + i] = (uint8_t)(mlen >> (8 * i));
    memcpy(im.data + NB_PKG_HDR_SIZE, m, mlen);
    memcpy(im.data + poff, payload, n);
    im.version = version;
    im.svn = svn;
    im.mlen = mlen;
    im.poff = poff;
    im.psize = n;
    return im;
}

/* A hand-built package: manifest as tl_manifest_hand, payload from
 * `seed`, offset o->payload_offset (default 1024). */
static inline struct tl_image tl_image_hand(struct tl_dev *t,
                                            const struct nb_manifest_req *req,
                                            const struct tl_mopts *o,
                                            uint32_t payload, uint64_t seed)
{
    struct nb_buf m = {0};
    uint8_t *p = malloc(payload ? payload : 1);
    assert_non_null(p);
    nb_testpkg_payload(p, payload, seed);
    tl_manifest_hand(t, req, o, p, payload, &m);
    uint32_t version = 0; /* 0 when the request's version is out of range
                           * (a manifest meant to be refused) */
    if (!nb_version_pack(req->major, req->minor, req->patch, &version))
        version = 0;
    struct tl_image im = tl_image_container(
        m.p, (uint32_t)m.len, o->payload_offset ? o->payload_offset : 1024,
        p, payload, version, req->svn);
    nb_buf_free(&m);
    free(p);
    return im;
}

#endif
