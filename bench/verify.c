/* verify - the numbers of issue 3 (signed packages), on this machine:
 *
 *   SHA-256 throughput of the core's verifier: 16 KiB updates through the
 *     struct nb_crypto callbacks, for the mbedTLS and the OpenSSL port;
 *   `openssl speed -evp sha256 -seconds 1 -bytes 16384`, run in the same
 *     process, and the OpenSSL port's share of it (the issue wants >= 90 %);
 *   ECDSA P-256 verify time per operation through each port;
 *   manifest parse + signature verify (nb_manifest_verify: delegation and
 *     manifest signatures, key IDs, every field) through each port.
 *
 * Throughput is bytes per second of CPU time (the process's), as `openssl
 * speed` reports without -elapsed, so that a busy machine skews neither
 * side; MB = 10^6 bytes. Each figure is the best of ROUNDS rounds, and the
 * rounds interleave the ports and openssl speed, so all three see the same
 * machine. usage: verify [ROUNDS]   (default 3)
 *
 * The bootloader's added .text for Cortex-M4 is not measured here (that
 * is the ARM build's job).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nb_crypto.h"
#include "nb_crypto_mbedtls.h"
#include "nb_crypto_openssl.h"
#include "nb_manifest.h"
#include "nb_pkgbuild.h"
#include "nb_sign_openssl.h"

#define CHUNK 16384u
#define MIN_SECONDS 1.0
#define MAX_BYTES (4096ull << 20) /* stop at 4 GiB even if the clock lags */

/* RFC 6979 A.2.5: the P-256 public key and the signature of "sample". */
static const char rfc_ux[] =
    "60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6";
static const char rfc_uy[] =
    "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299";
static const char rfc_r[] =
    "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716";
static const char rfc_s[] =
    "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8";

static void die(const char *what, nb_err err)
{
    fprintf(stderr, "verify: %s: %s (%d)\n", what, nb_err_name(err), (int)err);
    exit(1);
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void unhex(const char *hex, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned v = 0;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            die("bad hex constant", NB_ERR_INVAL);
        out[i] = (uint8_t)v;
    }
}

/* ------------------------------------------------------------ SHA-256 */

/* Bytes per CPU second of SHA-256 through the port's callbacks: one hash
 * of 16 KiB updates until at least MIN_SECONDS of CPU time. */
static double sha_rate(const struct nb_crypto *c, const uint8_t *buf)
{
    uint8_t d[NB_SHA256_LEN];
    uint64_t bytes = 0;
    double t0 = cpu_now(), t;
    nb_err err = c->sha256_start(c->ctx);

    if (err)
        die("sha256_start", err);
    do {
        for (unsigned i = 0; i < 64; i++) { /* 1 MiB between clock reads */
            err = c->sha256_update(c->ctx, buf, CHUNK);
            if (err)
                die("sha256_update", err);
        }
        bytes += 64u * CHUNK;
        t = cpu_now() - t0;
    } while (t < MIN_SECONDS && bytes < MAX_BYTES);
    err = c->sha256_finish(c->ctx, d);
    if (err)
        die("sha256_finish", err);
    t = cpu_now() - t0;
    return (double)bytes / t;
}

/* `openssl speed` on 16 KiB blocks, in bytes per second; 0 when it
 * cannot be run or its output not read. Machine-readable output (-mr):
 * the line "+F:<n>:sha256:<bytes per second>". */
static double openssl_speed(void)
{
    FILE *p = popen("openssl speed -mr -evp sha256 -seconds 1 -bytes 16384 "
                    "2>/dev/null", "r");
    char line[512];
    double rate = 0;

    if (!p)
        return 0;
    while (fgets(line, sizeof(line), p)) {
        int n = 0;
        char alg[64];
        double v = 0;
        if (sscanf(line, "+F:%d:%63[^:]:%lf", &n, alg, &v) == 3 && v > 0)
            rate = v;
    }
    if (pclose(p) != 0)
        return 0;
    return rate;
}

/* -------------------------------------------------------------- ECDSA */

/* Microseconds of CPU time per verify of the RFC vector. */
static double verify_us(const struct nb_crypto *c)
{
    uint8_t pub[65], hash[NB_SHA256_LEN], sig[64];
    uint64_t n = 0;
    double t0, t;
    nb_err err;

    pub[0] = 0x04;
    unhex(rfc_ux, pub + 1, 32);
    unhex(rfc_uy, pub + 33, 32);
    unhex(rfc_r, sig, 32);
    unhex(rfc_s, sig + 32, 32);
    err = nb_sha256(c, "sample", 6, hash);
    if (err)
        die("sha256", err);
    t0 = cpu_now();
    do {
        for (unsigned i = 0; i < 16; i++) {
            err = c->ecdsa_p256_verify(c->ctx, pub, hash, sig);
            if (err)
                die("ecdsa_p256_verify of the RFC 6979 vector", err);
        }
        n += 16;
        t = cpu_now() - t0;
    } while (t < MIN_SECONDS);
    return t * 1e6 / (double)n;
}

/* ----------------------------------------------------------- manifest */

/* A one-root keystore. */
struct one_root {
    const struct nb_crypto *c;
    uint8_t pub[NB_PUBKEY_LEN];
};

static nb_err root_key(void *ctx, const uint8_t kid[NB_KEY_ID_LEN],
                       uint8_t pub[NB_PUBKEY_LEN])
{
    struct one_root *r = ctx;
    uint8_t mine[NB_KEY_ID_LEN];
    nb_err err = nb_key_id(r->c, r->pub, mine);
    if (err)
        return err;
    if (memcmp(mine, kid, NB_KEY_ID_LEN) != 0)
        return NB_ERR_UNKNOWN_KEY;
    memcpy(pub, r->pub, NB_PUBKEY_LEN);
    return NB_OK;
}

struct test_manifest {
    struct nb_buf bytes;
    uint8_t root_pub[NB_PUBKEY_LEN];
    uint32_t payload_size, block_size;
};

/* A realistic manifest: test keys (root seed 1, signer seed 2), a
 * delegation for the vendor and one class, a 1 MiB payload in 4 KiB
 * blocks (256 block digests), two hardware revisions. */
static void make_manifest(const struct nb_crypto *c, struct test_manifest *tm)
{
    struct nb_delegation_req dreq;
    struct nb_manifest_req mreq;
    struct nb_signer root, signer;
    struct nb_buf deleg = { 0 };
    EVP_PKEY *rk = NULL, *sk = NULL;
    uint8_t *payload;
    nb_err err;

    memset(tm, 0, sizeof(*tm));
    tm->payload_size = 1u << 20;
    tm->block_size = 4096;
    payload = malloc(tm->payload_size);
    if (!payload)
        die("malloc", NB_ERR_NOMEM);
    for (uint32_t i = 0; i < tm->payload_size; i++)
        payload[i] = (uint8_t)(i * 2654435761u >> 24);

    if ((err = nb_openssl_key_from_seed(1, &rk)) ||
        (err = nb_openssl_key_from_seed(2, &sk)) ||
        (err = nb_openssl_signer(rk, &root)) ||
        (err = nb_openssl_signer(sk, &signer)))
        die("test keys", err);
    memcpy(tm->root_pub, root.pub, NB_PUBKEY_LEN);

    memset(&dreq, 0, sizeof(dreq));
    memcpy(dreq.pub, signer.pub, NB_PUBKEY_LEN);
    dreq.not_before = 1700000000u;
    dreq.not_after = 2000000000u;
    memset(dreq.vendor, 0xA5, NB_UUID_LEN);
    dreq.class_count = 1;
    memset(dreq.classes[0], 0x5A, NB_UUID_LEN);
    if ((err = nb_build_delegation(c, &root, &dreq, &deleg)))
        die("nb_build_delegation", err);

    memset(&mreq, 0, sizeof(mreq));
    memcpy(mreq.vendor, dreq.vendor, NB_UUID_LEN);
    memcpy(mreq.class_id, dreq.classes[0], NB_UUID_LEN);
    mreq.hw_count = 2;
    mreq.hw[0] = "rev-a";
    mreq.hw[1] = "rev-b";
    mreq.major = 1;
    mreq.minor = 2;
    mreq.patch = 3;
    mreq.svn = 1;
    mreq.block_size = tm->block_size;
    mreq.payload_format = NB_PAYLOAD_RAW;
    mreq.created = 1800000000u;
    if ((err = nb_build_manifest(c, &signer, deleg.p, deleg.len, &mreq,
                                 payload, tm->payload_size, &tm->bytes)))
        die("nb_build_manifest", err);

    nb_buf_free(&deleg);
    EVP_PKEY_free(sk);
    EVP_PKEY_free(rk);
    free(payload);
}

/* Microseconds of CPU time per nb_manifest_verify through `c`. */
static double manifest_us(const struct nb_crypto *c,
                          const struct test_manifest *tm)
{
    struct one_root r;
    struct nb_keystore ks;
    struct nb_manifest m;
    uint64_t n = 0;
    double t0, t;
    nb_err err;

    r.c = c;
    memcpy(r.pub, tm->root_pub, NB_PUBKEY_LEN);
    ks.ctx = &r;
    ks.root_key = root_key;
    t0 = cpu_now();
    do {
        for (unsigned i = 0; i < 8; i++) {
            err = nb_manifest_verify(c, &ks, NULL, tm->bytes.p,
                                     (uint32_t)tm->bytes.len, &m);
            if (err)
                die("nb_manifest_verify", err);
        }
        n += 8;
        t = cpu_now() - t0;
    } while (t < MIN_SECONDS);
    if (m.payload_size != tm->payload_size)
        die("nb_manifest_verify: wrong payload size", NB_ERR_CORRUPT);
    return t * 1e6 / (double)n;
}

/* ---------------------------------------------------------------- main */

static double max2(double a, double b) { return a > b ? a : b; }
static double min2(double a, double b) { return a == 0 || b < a ? b : a; }

int main(int argc, char **argv)
{
    struct nb_crypto mc, oc;
    struct nb_mbedtls_crypto m;
    struct nb_openssl_crypto o;
    struct test_manifest tm;
    double sha_m = 0, sha_o = 0, speed = 0;
    double ver_m = 0, ver_o = 0, man_m = 0, man_o = 0;
    int rounds = argc > 1 ? atoi(argv[1]) : 3;
    uint8_t *buf;
    nb_err err;

    if (rounds < 1 || rounds > 100) {
        fprintf(stderr, "usage: verify [ROUNDS]   (1..100, default 3)\n");
        return 2;
    }
    nb_crypto_mbedtls_init(&mc, &m);
    if ((err = nb_crypto_openssl_init(&oc, &o)))
        die("nb_crypto_openssl_init", err);
    buf = malloc(CHUNK);
    if (!buf)
        die("malloc", NB_ERR_NOMEM);
    for (unsigned i = 0; i < CHUNK; i++)
        buf[i] = (uint8_t)(i * 131u + 7u);
    make_manifest(&oc, &tm);

    printf("bench/verify: %d round(s), best of each; CPU time; "
           "MB = 10^6 bytes\n", rounds);
    for (int r = 0; r < rounds; r++) {
        sha_m = max2(sha_m, sha_rate(&mc, buf));
        sha_o = max2(sha_o, sha_rate(&oc, buf));
        speed = max2(speed, openssl_speed());
        ver_m = min2(ver_m, verify_us(&mc));
        ver_o = min2(ver_o, verify_us(&oc));
        man_m = min2(man_m, manifest_us(&mc, &tm));
        man_o = min2(man_o, manifest_us(&oc, &tm));
    }

    printf("\nSHA-256 throughput, 16 KiB updates through struct nb_crypto\n");
    printf("  %-38s %9.1f MB/s\n", "mbedTLS port", sha_m / 1e6);
    printf("  %-38s %9.1f MB/s\n", "OpenSSL port", sha_o / 1e6);
    if (speed > 0) {
        printf("  %-38s %9.1f MB/s\n",
               "openssl speed -evp sha256 (16384 B)", speed / 1e6);
        printf("  %-38s %9.1f %%   (issue 3 wants >= 90 %%)\n",
               "OpenSSL port / openssl speed", 100.0 * sha_o / speed);
        printf("  %-38s %9.1f %%\n", "mbedTLS port / openssl speed",
               100.0 * sha_m / speed);
    } else {
        printf("  openssl speed: could not be run (is the openssl "
               "command installed?)\n");
    }

    printf("\nECDSA P-256 verify (RFC 6979 A.2.5 \"sample\"), per operation\n");
    printf("  %-38s %9.1f us\n", "mbedTLS port", ver_m);
    printf("  %-38s %9.1f us\n", "OpenSSL port", ver_o);

    printf("\nManifest parse + signature verify (nb_manifest_verify: "
           "delegation + manifest\n  signatures, %zu-byte manifest, "
           "%" PRIu32 " block digests), per manifest\n",
           tm.bytes.len, tm.payload_size / tm.block_size);
    printf("  %-38s %9.1f us\n", "mbedTLS port", man_m);
    printf("  %-38s %9.1f us\n", "OpenSSL port", man_o);

    nb_buf_free(&tm.bytes);
    free(buf);
    nb_crypto_openssl_free(&oc, &o);
    nb_crypto_mbedtls_free(&mc, &m);
    return 0;
}
