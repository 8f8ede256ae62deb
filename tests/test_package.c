/* test_package.c - a signed package in a slot (core/package.c) and the
 * device around it: nb_pkg_verify_slot on a simulated flash, installs
 * (nb_install_*), boots and revocations.
 *
 * A good package verifies for several payload sizes, write sizes and
 * erased values, through the OpenSSL and the mbedTLS ports, with a tiny
 * work buffer and an exactly fitting area. Every single-bit flip of a
 * small package (300-byte payload, 256-byte blocks) is rejected:
 * signature bytes with NB_ERR_SIGNATURE, payload bytes with
 * NB_ERR_DIGEST, padding with NB_ERR_MALFORMED, the rest never accepted.
 * The manifest cut at every length, bytes after the payload
 * (NB_ERR_TRAILING), nonzero padding. Then, on a device: the wrong root
 * key, an expired delegation, a revoked key (nb_device_apply_revocations;
 * boot and install refuse), another vendor, class (by the identity and by
 * the delegation) or hardware revision, a lower security version in
 * production (NB_ERR_ROLLBACK), a package larger than the slot, duplicate
 * and unknown critical keys (extensions install and boot), each refused
 * by nb_install_begin with nothing written; a bad block during
 * nb_install_write (NB_ERR_DIGEST, then resent from nb_install_offset())
 * and a whole-payload digest that no block betrays (finish refuses).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "nb_crypto_mbedtls.h"
#include "testlib.h"

#define SLOT 16384u
#define DEV NB_LIFECYCLE_DEVELOPMENT
#define PROD NB_LIFECYCLE_PRODUCTION

static struct tl_dev *live; /* freed by the teardown if a test fails */

static struct tl_dev *mkdev(uint32_t ws, uint8_t ev)
{
    struct nb_simflash_geometry g = tl_geo(ws, ev, 16, 4096);
    live = tl_dev_new(&g, NB_LAYOUT_AB, SLOT, 0);
    return live;
}

static void done(struct tl_dev *t)
{
    uint64_t v = tl_violations(t);
    live = NULL;
    tl_dev_free(t);
    assert_int_equal(v, 0);
}

static int teardown(void **state)
{
    (void)state;
    tl_dev_free(live);
    live = NULL;
    return 0;
}

static uint32_t slot_a(struct tl_dev *t) { return t->cfg.layout.slot[0].off; }

/* Erase slot A and program `im` there. */
static void put_image(struct tl_dev *t, const struct tl_image *im)
{
    assert_int_equal(nb_flash_erase_range(&t->flash, slot_a(t), SLOT), NB_OK);
    tl_put(t, slot_a(t), im->data, im->size);
}

static nb_err verify_a(struct tl_dev *t, uint32_t area)
{
    struct nb_pkg_env e = tl_env(t);
    struct nb_manifest m;
    struct nb_image_info info;
    return nb_pkg_verify_slot(&e, slot_a(t), area, &m, &info);
}

/* The small package of the flip test. */
static struct tl_image small(struct tl_dev *t)
{
    struct nb_manifest_req r = tl_req(tl_ver(2, 0, 1), 3);
    r.block_size = 256;
    return tl_image_req(t, NULL, NULL, &r, 300, 9);
}

static nb_err begin(struct tl_dev *t, struct nb_install *in,
                    const struct tl_image *im, uint8_t target)
{
    return nb_install_begin(in, &t->dev, im->data + NB_PKG_HDR_SIZE,
                            im->mlen, target);
}

/* On an opened device: nb_install_begin refuses `im` with `want` and
 * writes nothing. */
static void refused(struct tl_dev *t, const struct tl_image *im, nb_err want)
{
    struct nb_install in;
    assert_int_equal(tl_open(t), NB_OK);
    uint8_t *snap = tl_snapshot(t);
    uint64_t ops = tl_ops(t);
    nb_err err = begin(t, &in, im, NB_TARGET_UPDATE);
    if (err != want)
        fail_msg("install_begin: %s, expected %s", nb_err_name(err),
                 nb_err_name(want));
    assert_true(tl_same(t, snap));
    assert_int_equal(tl_ops(t), ops);
    free(snap);
}

/* Stage, trial boot, confirm. */
static void update(struct tl_dev *t, const struct tl_image *im)
{
    struct nb_boot_result r;
    assert_int_equal(tl_stage(t, im), NB_OK);
    assert_int_equal(tl_boot(t, &r), NB_OK);
    assert_int_equal(r.outcome, NB_BOOT_IMAGE);
    assert_int_equal(r.image.version, im->version);
    assert_int_equal(r.state, NB_SLOT_TRIAL);
    assert_true(tl_holds(t, r.addr, im));
    assert_int_equal(tl_open(t), NB_OK);
    assert_int_equal(nb_confirm(&t->dev), NB_OK);
}

/* ------------------------------------------------------ verify_slot */

static void good_package(void **state)
{
    (void)state;
    static const uint32_t payloads[] = {1, 300, 4096, 4097, 9000};
    for (unsigned e = 0; e < 3; e++)
        for (unsigned p = 0; p < 5; p++) {
            struct tl_dev *t = mkdev(e == 0 ? 8 : e == 1 ? 1 : 32,
                                     e == 1 ? 0x00 : 0xFF);
            struct tl_image im = tl_image_make(t, payloads[p],
                                               tl_ver(1, 2, 3 + p), 7 + p, p);
            struct nb_pkg_env env = tl_env(t);
            struct nb_manifest m;
            struct nb_image_info info;
            put_image(t, &im);
            memset(&info, 0xA5, sizeof(info));
            assert_int_equal(nb_pkg_verify_slot(&env, slot_a(t), SLOT, &m,
                                                &info),
                             NB_OK);
            assert_int_equal(info.size, im.size);
            assert_int_equal(info.version, tl_ver(1, 2, 3 + p));
            assert_int_equal(info.svn, 7 + p);
            uint8_t d[NB_SHA256_LEN];
            assert_int_equal(nb_sha256(&t->crypto, im.data + im.poff,
                                       im.psize, d),
                             NB_OK);
            assert_memory_equal(info.digest, d, NB_SHA256_LEN);
            assert_memory_equal(env.mbuf, im.data + NB_PKG_HDR_SIZE, im.mlen);
            /* Exactly fitting area; one byte less does not fit. */
            assert_int_equal(verify_a(t, im.size), NB_OK);
            assert_int_equal(verify_a(t, im.size - 1), NB_ERR_NOSPC);
            assert_int_equal(verify_a(t, NB_PKG_HDR_SIZE + im.mlen - 1),
                             NB_ERR_TRUNCATED);
            /* Tiny work buffer; too small buffers. */
            env.buf_size = NB_PKG_HDR_SIZE;
            assert_int_equal(nb_pkg_verify_slot(&env, slot_a(t), SLOT, &m,
                                                &info),
                             NB_OK);
            env.buf_size = NB_PKG_HDR_SIZE - 1;
            assert_int_equal(nb_pkg_verify_slot(&env, slot_a(t), SLOT, &m,
                                                &info),
                             NB_ERR_NOMEM);
            env = tl_env(t);
            env.mbuf_size = im.mlen - 1;
            assert_int_equal(nb_pkg_verify_slot(&env, slot_a(t), SLOT, &m,
                                                &info),
                             NB_ERR_NOSPC);
            /* Through the mbedTLS port (the MCU's). */
            struct nb_mbedtls_crypto mc;
            struct nb_crypto c;
            nb_crypto_mbedtls_init(&c, &mc);
            env = tl_env(t);
            env.crypto = &c;
            assert_int_equal(nb_pkg_verify_slot(&env, slot_a(t), SLOT, &m,
                                                &info),
                             NB_OK);
            nb_crypto_mbedtls_free(&c, &mc);
            /* Blank flash is not a package. */
            env = tl_env(t);
            assert_int_equal(nb_pkg_verify_slot(&env, slot_a(t) + SLOT, SLOT,
                                                &m, &info),
                             NB_ERR_MALFORMED);
            tl_image_free(&im);
            done(t);
        }
}

static void every_bit_flip(void **state)
{
    (void)state;
    struct tl_dev *t = mkdev(1, 0xFF);
    struct tl_image im = small(t);
    const uint32_t a = slot_a(t), area = 8192;
    const uint32_t mend = NB_PKG_HDR_SIZE + im.mlen;
    uint32_t dg = 0, dl = (uint32_t)t->keys.delegation.len;
    while (memcmp(im.data + dg, t->keys.delegation.p, dl) != 0)
        dg++;
    uint32_t dsig = dg + dl - NB_SIG_LEN;
    unsigned long n = 0, sig = 0, digest = 0, pad = 0, other = 0;
    put_image(t, &im);
    assert_int_equal(verify_a(t, area), NB_OK);
    for (uint32_t byte = 0; byte < im.size; byte++)
        for (unsigned bit = 0; bit < 8; bit++) {
            assert_int_equal(nb_simflash_flip_bit(t->sim, a + byte, bit),
                             NB_OK);
            nb_err err = verify_a(t, area);
            assert_int_equal(nb_simflash_flip_bit(t->sim, a + byte, bit),
                             NB_OK);
            n++;
            if (err == NB_OK)
                fail_msg("flip of byte %u bit %u accepted", byte, bit);
            nb_err want = NB_OK; /* any refusal */
            if ((byte >= mend - NB_SIG_LEN && byte < mend) ||
                (byte >= dsig && byte < dsig + NB_SIG_LEN))
                want = NB_ERR_SIGNATURE, sig++;
            else if (byte >= im.poff)
                want = NB_ERR_DIGEST, digest++;
            else if (byte >= mend)
                want = NB_ERR_MALFORMED, pad++;
            else
                other++;
            if (want != NB_OK && err != want)
                fail_msg("flip of byte %u bit %u: %s, expected %s", byte, bit,
                         nb_err_name(err), nb_err_name(want));
        }
    print_message("%u-byte package (manifest %u, payload %u): %lu flips "
                  "refused; signature bytes %lu as NB_ERR_SIGNATURE, "
                  "payload %lu as NB_ERR_DIGEST, padding %lu as "
                  "NB_ERR_MALFORMED, header and manifest %lu\n",
                  im.size, im.mlen, im.psize, n, sig, digest, pad, other);
    /* And bits flipped in the erased tail: something appended. */
    for (uint32_t byte = im.size; byte < im.size + 64; byte++) {
        assert_int_equal(nb_simflash_flip_bit(t->sim, a + byte, byte % 8),
                         NB_OK);
        assert_int_equal(verify_a(t, area), NB_ERR_TRAILING);
        assert_int_equal(nb_simflash_flip_bit(t->sim, a + byte, byte % 8),
                         NB_OK);
    }
    assert_int_equal(verify_a(t, area), NB_OK);
    tl_image_free(&im);
    done(t);
}

/* The container claims a manifest of every shorter length (the rest of
 * the slot erased); and the slot ends inside the manifest. */
static void manifest_truncated(void **state)
{
    (void)state;
    struct tl_dev *t = mkdev(8, 0xFF);
    struct tl_image im = small(t);
    unsigned long trunc = 0;
    for (uint32_t len = 1; len < im.mlen; len++) {
        uint8_t *p = malloc(NB_PKG_HDR_SIZE + len);
        assert_non_null(p);
        memcpy(p, im.data, NB_PKG_HDR_SIZE + len);
        for (int i = 0; i < 4; i++)
            p[8 + i] = (uint8_t)(len >> (8 * i));
        assert_int_equal(nb_flash_erase_range(&t->flash, slot_a(t), SLOT),
                         NB_OK);
        tl_put(t, slot_a(t), p, NB_PKG_HDR_SIZE + len);
        free(p);
        nb_err err = verify_a(t, SLOT);
        if (err == NB_OK)
            fail_msg("manifest cut to %u bytes accepted", len);
        trunc += err == NB_ERR_TRUNCATED;
    }
    print_message("%u truncated manifests refused, %lu as "
                  "NB_ERR_TRUNCATED\n", im.mlen - 1, trunc);
    put_image(t, &im);
    for (uint32_t area = NB_PKG_HDR_SIZE; area < NB_PKG_HDR_SIZE + im.mlen;
         area += 37)
        assert_int_equal(verify_a(t, area), NB_ERR_TRUNCATED);
    tl_image_free(&im);
    done(t);
}

static void trailing_and_padding(void **state)
{
    (void)state;
    for (unsigned e = 0; e < 2; e++) {
        struct tl_dev *t = mkdev(8, e ? 0x00 : 0xFF);
        struct tl_image im = tl_image_make(t, 5000, tl_ver(1, 0, 0), 1, 5);
        /* One bit off the erased value right after the payload, further
         * on, or in the last byte of the slot. */
        static const int32_t at[] = {0, 1, 100, -1};
        for (unsigned i = 0; i < 4; i++) {
            put_image(t, &im);
            uint32_t off = at[i] < 0 ? SLOT - 1 : im.size + (uint32_t)at[i];
            assert_int_equal(nb_simflash_flip_bit(t->sim, slot_a(t) + off,
                                                  i),
                             NB_OK);
            assert_int_equal(verify_a(t, SLOT), NB_ERR_TRAILING);
            /* Outside the area given, it is not the package's. */
            if (at[i] >= 100)
                assert_int_equal(verify_a(t, im.size + 64), NB_OK);
        }
        /* Nonzero padding between manifest and payload. */
        assert_true(im.poff > NB_PKG_HDR_SIZE + im.mlen);
        for (uint32_t p = NB_PKG_HDR_SIZE + im.mlen; p < im.poff; p += 61) {
            im.data[p] = 0x20;
            put_image(t, &im);
            assert_int_equal(verify_a(t, SLOT), NB_ERR_MALFORMED);
            im.data[p] = 0;
        }
        put_image(t, &im);
        assert_int_equal(verify_a(t, SLOT), NB_OK);
        tl_image_free(&im);
        done(t);
    }
}

/* ------------------------------------------------- keys on a device */

static void wrong_root_and_expired(void **state)
{
    (void)state;
    struct tl_dev *t = mkdev(8, 0xFF);
    struct tl_image im = tl_image_make(t, 5000, tl_ver(1, 0, 0), 1, 5);
    struct tl_key other, k;
    struct nb_boot_result r;
    tl_key_init(&other, &t->crypto, 99);
    tl_key_init(&k, &t->crypto, 60);
    tl_provision(t, DEV, 3);
    update(t, &im);
    /* A device trusting another root: the slot no longer verifies, the
     * bootloader rejects it, installs are refused. */
    struct tl_keystore *ks = tl_keystore_new(&t->crypto, other.s.pub);
    struct nb_pkg_env env = tl_env(t);
    struct nb_manifest m;
    struct nb_image_info info;
    env.keystore = &ks->ks;
    assert_int_equal(nb_pkg_verify_slot(&env, slot_a(t), SLOT, &m, &info),
                     NB_ERR_UNKNOWN_KEY);
    const struct nb_keystore *good = t->cfg.keystore;
    t->cfg.keystore = &ks->ks;
    refused(t, &im, NB_ERR_UNKNOWN_KEY);
    assert_int_equal(tl_boot(t, &r), NB_OK);
    assert_int_equal(r.outcome, NB_BOOT_RECOVERY);
    t->cfg.keystore = good;
    free(ks);
    /* A delegation that had expired when the manifest was created. */
    struct nb_buf d = {0};
    tl_delegate(&t->crypto, &t->keys.root_signer, k.s.pub, 946684800u,
                NB_TEST_CREATED - 1, 0, NULL, &d);
    struct nb_manifest_req req = tl_req(tl_ver(2, 0, 0), 2);
    struct tl_image ex = tl_image_req(t, &k.s, &d, &req, 5000, 6);
    refused(t, &ex, NB_ERR_EXPIRED);
    put_image(t, &ex);
    assert_int_equal(verify_a(t, SLOT), NB_ERR_EXPIRED);
    tl_image_free(&ex);
    nb_buf_free(&d);
    tl_key_free(&k);
    tl_key_free(&other);
    tl_image_free(&im);
    done(t);
}

static void revoked_key(void **state)
{
    (void)state;
    struct tl_dev *t = mkdev(8, 0xFF);
    struct tl_image v1 = tl_image_make(t, 5000, tl_ver(1, 0, 0), 1, 1);
    struct tl_image v2 = tl_image_make(t, 6000, tl_ver(2, 0, 0), 2, 2);
    struct tl_key k2;
    struct nb_buf d2 = {0}, list = {0};
    struct nb_boot_result r;
    uint8_t kid[1][NB_KEY_ID_LEN];
    tl_key_init(&k2, &t->crypto, 70);
    tl_delegate(&t->crypto, &t->keys.root_signer, k2.s.pub, 0, 4102444800u,
                0, NULL, &d2);
    struct nb_manifest_req req = tl_req(tl_ver(3, 0, 0), 3);
    struct tl_image v3 = tl_image_req(t, &k2.s, &d2, &req, 7000, 3);
    tl_provision(t, DEV, 3);
    update(t, &v1);
    /* Revoke the test signer: root-signed list, sequence 1. */
    assert_int_equal(nb_key_id(&t->crypto, t->keys.signer.pub, kid[0]),
                     NB_OK);
    assert_int_equal(nb_build_revocation(&t->crypto, &t->keys.root_signer, 1,
                                         1, (const uint8_t(*)[8])kid, &list),
                     NB_OK);
    assert_int_equal(tl_open(t), NB_OK);
    assert_int_equal(nb_device_apply_revocations(&t->dev, list.p,
                                                 (uint32_t)list.len),
                     NB_OK);
    /* Kept in the journal across a reset. */
    assert_int_equal(tl_open(t), NB_OK);
    assert_int_equal(t->dev.state.rev.seq, 1);
    assert_int_equal(t->dev.state.rev.count, 1);
    assert_memory_equal(t->dev.state.rev.kid[0], kid[0], NB_KEY_ID_LEN);
    /* The same list again, an unsigned or non-root one: refused, the
     * state unchanged. */
    assert_int_equal(nb_device_apply_revocations(&t->dev, list.p,
                                                 (uint32_t)list.len),
                     NB_ERR_ROLLBACK);
    struct nb_buf bad = {0};
    assert_int_equal(nb_build_revocation(&t->crypto, &t->keys.signer, 2, 0,
                                         NULL, &bad),
                     NB_OK);
    assert_int_equal(nb_device_apply_revocations(&t->dev, bad.p,
                                                 (uint32_t)bad.len),
                     NB_ERR_UNKNOWN_KEY);
    bad.p[bad.len - 1] ^= 1;
    assert_int_equal(nb_device_apply_revocations(&t->dev, bad.p,
                                                 (uint32_t)bad.len),
                     NB_ERR_UNKNOWN_KEY);
    nb_buf_free(&bad);
    assert_int_equal(tl_open(t), NB_OK);
    assert_int_equal(t->dev.state.rev.seq, 1);
    /* The slot signed by the revoked key fails verification... */
    struct nb_pkg_env env = tl_env(t);
    struct nb_manifest m;
    struct nb_image_info info;
    assert_int_equal(nb_pkg_verify_slot(&env, slot_a(t), SLOT, &m, &info),
                     NB_ERR_REVOKED);
    /* ... the installer refuses the revoked key's packages ... */
    refused(t, &v2, NB_ERR_REVOKED);
    /* ... and the bootloader no longer boots the confirmed image. */
    assert_int_equal(tl_boot(t, &r), NB_OK);
    assert_int_equal(r.outcome, NB_BOOT_RECOVERY);
    assert_int_equal(t->dev.state.slot[0].state, NB_SLOT_REJECTED);
    /* A package from a key that is not revoked installs and boots. */
    update(t, &v3);
    assert_int_equal(tl_boot(t, &r), NB_OK);
    assert_int_equal(r.image.version, v3.version);
    assert_int_equal(r.state, NB_SLOT_CONFIRMED);
    /* A newer, empty list un-revokes (the root decides). */
    nb_buf_free(&list);
    assert_int_equal(nb_build_revocation(&t->crypto, &t->keys.root_signer, 2,
                                         0, NULL, &list),
                     NB_OK);
    assert_int_equal(tl_open(t), NB_OK);
    assert_int_equal(nb_device_apply_revocations(&t->dev, list.p,
                                                 (uint32_t)list.len),
                     NB_OK);
    assert_int_equal(tl_open(t), NB_OK);
    assert_int_equal(t->dev.state.rev.count, 0);
    assert_int_equal(tl_stage(t, &v2), NB_OK);
    nb_buf_free(&list);
    nb_buf_free(&d2);
    tl_key_free(&k2);
    tl_image_free(&v1);
    tl_image_free(&v2);
    tl_image_free(&v3);
    done(t);
}

/* ---------------------------------------------------- refused installs */

static void identity_rollback_and_size(void **state)
{
    (void)state;
    struct tl_dev *t = mkdev(8, 0xFF);
    struct tl_image v5 = tl_image_make(t, 5000, tl_ver(1, 0, 0), 5, 1);
    struct tl_image v4 = tl_image_make(t, 5000, tl_ver(2, 0, 0), 4, 2);
    tl_provision(t, PROD, 3);
    update(t, &v5);
    /* Lower security version in production. */
    refused(t, &v4, NB_ERR_ROLLBACK);
    /* The device's identity. */
    struct nb_identity keep = t->id;
    t->id.vendor[0] ^= 1;
    refused(t, &v5, NB_ERR_VENDOR);
    t->id = keep;
    t->id.class_id[15] ^= 1;
    refused(t, &v5, NB_ERR_CLASS);
    t->id = keep;
    t->id.hw_rev[4] = '2'; /* "sim-2" */
    refused(t, &v5, NB_ERR_HW_REV);
    t->id = keep;
    /* Made for other hardware revisions only. */
    struct nb_manifest_req req = tl_req(tl_ver(3, 0, 0), 6);
    req.hw[0] = "sim-10";
    struct tl_image hw = tl_image_req(t, NULL, NULL, &req, 1000, 3);
    refused(t, &hw, NB_ERR_HW_REV);
    tl_image_free(&hw);
    /* Signed under a delegation restricted to another class. */
    struct tl_key k;
    struct nb_buf d = {0};
    uint8_t cls[1][NB_UUID_LEN];
    tl_key_init(&k, &t->crypto, 71);
    nb_testpkg_class(cls[0]);
    cls[0][15] ^= 0x40;
    tl_delegate(&t->crypto, &t->keys.root_signer, k.s.pub, 0, 4102444800u, 1,
                (const uint8_t(*)[NB_UUID_LEN])cls, &d);
    req = tl_req(tl_ver(3, 0, 0), 6);
    struct tl_image c = tl_image_req(t, &k.s, &d, &req, 1000, 3);
    refused(t, &c, NB_ERR_CLASS);
    tl_image_free(&c);
    nb_buf_free(&d);
    tl_key_free(&k);
    /* Larger than the slot by one byte, then exactly fitting. */
    uint32_t cap = nb_layout_capacity(&t->cfg.layout, 1);
    struct tl_image big = tl_image_sized(t, cap + 1, tl_ver(4, 0, 0), 6, 4);
    refused(t, &big, NB_ERR_NOSPC);
    tl_image_free(&big);
    big = tl_image_sized(t, cap, tl_ver(4, 0, 1), 6, 4);
    update(t, &big);
    tl_image_free(&big);
    tl_image_free(&v5);
    tl_image_free(&v4);
    done(t);
}

/* Hand-built manifests: duplicate and unknown critical keys refused with
 * nothing written; extension keys install, verify and boot; a payload
 * digest that no block betrays is caught by finish. */
static void hand_built(void **state)
{
    (void)state;
    struct tl_dev *t = mkdev(8, 0xFF);
    struct nb_manifest_req req = tl_req(tl_ver(1, 0, 0), 1);
    struct nb_install in;
    struct nb_boot_result r;
    tl_provision(t, DEV, 3);
    struct tl_extra dup = {5, 0, (const uint8_t[]){0x83, 1, 0, 0}, 4};
    struct tl_mopts o = {.extra = &dup, .extra_count = 1};
    struct tl_image im = tl_image_hand(t, &req, &o, 6000, 1);
    refused(t, &im, NB_ERR_DUPLICATE);
    put_image(t, &im);
    assert_int_equal(verify_a(t, SLOT), NB_ERR_DUPLICATE);
    tl_image_free(&im);
    struct tl_extra crit = {16, 1, NULL, 0};
    o = (struct tl_mopts){.extra = &crit, .extra_count = 1};
    im = tl_image_hand(t, &req, &o, 6000, 1);
    refused(t, &im, NB_ERR_UNKNOWN_FIELD);
    put_image(t, &im);
    assert_int_equal(verify_a(t, SLOT), NB_ERR_UNKNOWN_FIELD);
    tl_image_free(&im);
    /* Extensions, a nested one too: accepted and ignored. */
    static const uint8_t nested[] = {0xA1, 0x20, 0x81, 0x41, 0x00};
    struct tl_extra ext[2] = {{-3, 99, NULL, 0},
                              {-100, 0, nested, sizeof(nested)}};
    o = (struct tl_mopts){.extra = ext, .extra_count = 2};
    im = tl_image_hand(t, &req, &o, 6000, 1);
    update(t, &im);
    assert_int_equal(tl_boot(t, &r), NB_OK);
    assert_int_equal(r.state, NB_SLOT_CONFIRMED);
    assert_true(tl_holds(t, r.addr, &im));
    tl_image_free(&im);
    /* Every block matches its digest, the whole payload's does not. */
    uint8_t zero[NB_SHA256_LEN] = {0};
    req = tl_req(tl_ver(2, 0, 0), 2);
    o = (struct tl_mopts){.digest = zero};
    im = tl_image_hand(t, &req, &o, 9000, 2);
    assert_int_equal(tl_open(t), NB_OK);
    assert_int_equal(begin(t, &in, &im, NB_TARGET_UPDATE), NB_OK);
    assert_int_equal(nb_install_write(&in, im.data + im.poff, im.psize),
                     NB_OK);
    assert_int_equal(nb_install_finish(&in), NB_ERR_DIGEST);
    assert_int_equal(t->dev.state.slot[in.slot].state, NB_SLOT_RECEIVING);
    assert_int_equal(tl_boot(t, &r), NB_OK);
    assert_int_equal(r.state, NB_SLOT_CONFIRMED);
    assert_int_equal(r.image.version, tl_ver(1, 0, 0));
    tl_image_free(&im);
    done(t);
}

/* A block that arrives wrong is dropped with NB_ERR_DIGEST, nothing of it
 * written; the sender resends from nb_install_offset() and the install
 * completes. For a middle block, the short last block, and twice. */
static void bad_block_resent(void **state)
{
    (void)state;
    static const struct {
        uint32_t chunk, bad[2];
    } cases[] = {
        {777, {2 * 4096 + 5, 0}},   /* a middle block */
        {4096, {3 * 4096 + 3, 0}},  /* the short last block */
        {1, {100, 0}},              /* byte by byte, the first block */
        {5000, {4096, 3 * 4096}},   /* two blocks, one after the other */
    };
    for (unsigned c = 0; c < 4; c++) {
        struct tl_dev *t = mkdev(8, 0xFF);
        struct tl_image im = tl_image_make(t, 3 * 4096 + 1000,
                                           tl_ver(1, 0, c), 1, c);
        struct nb_install in;
        struct nb_boot_result r;
        uint8_t *p = malloc(im.psize);
        assert_non_null(p);
        tl_provision(t, DEV, 3);
        assert_int_equal(tl_open(t), NB_OK);
        assert_int_equal(begin(t, &in, &im, NB_TARGET_UPDATE), NB_OK);
        for (unsigned k = 0; k < 2 && (k == 0 || cases[c].bad[k]); k++) {
            uint32_t b = cases[c].bad[k], start = b / 4096 * 4096;
            memcpy(p, im.data + im.poff, im.psize);
            p[b] ^= 0x08;
            nb_err err = NB_OK;
            uint32_t o = nb_install_offset(&in);
            while (!err && o < im.psize) {
                uint32_t n = im.psize - o < cases[c].chunk ? im.psize - o
                                                           : cases[c].chunk;
                err = nb_install_write(&in, p + o, n);
                o += n;
            }
            assert_int_equal(err, NB_ERR_DIGEST);
            assert_int_equal(nb_install_offset(&in), start);
            /* Nothing of the bad block reached the flash. */
            const uint8_t *f = nb_simflash_data(t->sim) + in.base + im.poff;
            for (uint32_t i = start; i < start + 4096 && i < im.psize; i++)
                assert_int_equal(f[i], 0xFF);
        }
        /* Resend from the offset, in the same chunks. */
        for (uint32_t o = nb_install_offset(&in); o < im.psize;) {
            uint32_t n = im.psize - o < cases[c].chunk ? im.psize - o
                                                       : cases[c].chunk;
            assert_int_equal(nb_install_write(&in, im.data + im.poff + o, n),
                             NB_OK);
            o += n;
        }
        assert_int_equal(nb_install_offset(&in), im.psize);
        assert_int_equal(nb_install_finish(&in), NB_OK);
        assert_int_equal(nb_install_set_pending(&t->dev), NB_OK);
        assert_int_equal(tl_boot(t, &r), NB_OK);
        assert_int_equal(r.state, NB_SLOT_TRIAL);
        assert_true(tl_holds(t, r.addr, &im));
        free(p);
        tl_image_free(&im);
        done(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(good_package, teardown),
        cmocka_unit_test_teardown(every_bit_flip, teardown),
        cmocka_unit_test_teardown(manifest_truncated, teardown),
        cmocka_unit_test_teardown(trailing_and_padding, teardown),
        cmocka_unit_test_teardown(wrong_root_and_expired, teardown),
        cmocka_unit_test_teardown(revoked_key, teardown),
        cmocka_unit_test_teardown(identity_rollback_and_size, teardown),
        cmocka_unit_test_teardown(hand_built, teardown),
        cmocka_unit_test_teardown(bad_block_resent, teardown),
    };
    return cmocka_run_group_tests_name("package", tests, NULL, NULL);
}
