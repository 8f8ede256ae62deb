/* curl_transport_test.c - the libcurl transport (ports/curl) against real
 * peers on 127.0.0.1: nginx (HTTP, HTTPS), vsftpd (FTP, explicit FTPS),
 * and misbehaving HTTP servers of its own (threads in this process): one
 * that accepts and says nothing, one that stalls mid-body, one that
 * ignores Range or sends more than it announced, one that never stops.
 *
 * Run by tests/test_transport_curl.sh, which starts nginx and vsftpd and
 * passes, in the environment:
 *   NBT_DIR      the directory both serve (this program writes its files)
 *   NBT_HTTP     http://127.0.0.1:PORT       NBT_HTTPS  https://127.0.0.1:PORT
 *   NBT_FTP      ftp://127.0.0.1:PORT (plain, anonymous, read-only)
 *   NBT_FTPS     ftp://127.0.0.1:PORT (AUTH TLS required)
 *   NBT_CA       the servers' self-signed certificate (PEM)
 *   NBT_OTHER_CA another self-signed certificate (a wrong CA)
 * nginx serves /denied/ (403), /gone (410), /auth (401), /err (500),
 * /teapot (418), /moved (302 to /big.bin), and /private/ only with
 * "Authorization: Bearer s3cret" (else 401).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "nb_boot.h"
#include "nb_crypto_openssl.h"
#include "nb_download.h"
#include "nb_install.h"
#include "nb_simflash.h"
#include "nb_testpkg.h"
#include "nb_transport_curl.h"

#define BIG_SIZE (1u << 20)
#define SMALL_SIZE 1000u
#define STALL_MS 400u

static const char *dir, *http, *https, *ftp, *ftps, *ca, *other_ca;
static uint8_t *big;   /* the content of big.bin */
static uint8_t *small; /* the content of small.bin */

/* ------------------------------------------------------------ helpers */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !v[0]) {
        fprintf(stderr, "curl_transport_test: %s is not set (run "
                        "tests/test_transport_curl.sh)\n", name);
        exit(1);
    }
    return v;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void fill_random(uint8_t *p, uint32_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (uint32_t i = 0; i < n; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        p[i] = (uint8_t)((x * 0x2545F4914F6CDD1Dull) >> 56);
    }
}

static void write_file(const char *name, const uint8_t *p, uint32_t n)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static char *url(const char *base, const char *path)
{
    static char u[8][512];
    static int i;
    char *s = u[i++ % 8];
    snprintf(s, sizeof(u[0]), "%s/%s", base, path);
    return s;
}

static struct nb_curl_config cfg_for(const char *u)
{
    struct nb_curl_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.url = u;
    cfg.ca_file = ca;
    cfg.connect_timeout_ms = 5000;
    cfg.stall_timeout_ms = 5000;
    return cfg;
}

/* Read the open range to its end with reads of at most `cap` bytes into
 * `out` (room for `room` bytes: more is a failure); the bytes read, or -1
 * with *err set. */
static long read_all(const struct nb_transport *t, uint8_t *out, uint32_t room,
                     uint32_t cap, nb_err *err)
{
    uint32_t n = 0;
    uint8_t *tmp = malloc(cap);
    assert_non_null(tmp);
    for (;;) {
        uint32_t got = 12345;
        *err = t->read(t->ctx, tmp, cap, &got);
        if (*err) {
            assert_int_equal(got, 0);
            free(tmp);
            return -1;
        }
        assert_true(got <= cap);
        if (got == 0)
            break;
        assert_true(n + got <= room);
        memcpy(out + n, tmp, got);
        n += got;
    }
    free(tmp);
    return (long)n;
}

/* Open [off, off+len) of `u`, read it with reads of `cap`, check it
 * equals `want` (of `want_len` bytes: a shorter range at the end). */
static void check_slice(struct nb_transport *t, uint32_t off, uint32_t len,
                        uint32_t cap, const uint8_t *want, uint32_t want_len)
{
    uint8_t *out = malloc(len ? len : 1);
    assert_non_null(out);
    nb_err err = t->open(t->ctx, off, len);
    if (err)
        fail_msg("open(%u, %u): %s: %s", off, len, nb_err_name(err),
                 nb_curl_detail(t->ctx));
    long n = read_all(t, out, len, cap, &err);
    if (n < 0)
        fail_msg("read(%u, %u, cap %u): %s: %s", off, len, cap,
                 nb_err_name(err), nb_curl_detail(t->ctx));
    assert_int_equal(n, want_len);
    assert_memory_equal(out, want, want_len);
    /* The end stays the end. */
    uint32_t got = 1;
    uint8_t b;
    assert_int_equal(t->read(t->ctx, &b, 1, &got), NB_OK);
    assert_int_equal(got, 0);
    t->close(t->ctx);
    free(out);
}

/* The error of open, or of the first read that fails, for a range. */
static nb_err range_err(const struct nb_curl_config *cfg, uint32_t off,
                        uint32_t len, char *detail, size_t dsize)
{
    struct nb_curl c;
    struct nb_transport t;
    nb_err err = nb_curl_init(&c, cfg, &t);
    if (err)
        fail_msg("init %s: %s", cfg->url, nb_curl_detail(&c));
    err = t.open(t.ctx, off, len);
    if (!err) {
        uint8_t *buf = malloc(len ? len : 1);
        assert_non_null(buf);
        long n = read_all(&t, buf, len, 65536, &err);
        free(buf);
        if (n >= 0)
            err = NB_OK;
    }
    if (detail)
        snprintf(detail, dsize, "%s", nb_curl_detail(&c));
    t.close(t.ctx);
    nb_curl_free(&c);
    return err;
}

static void expect_err(const char *u, uint32_t off, uint32_t len, nb_err want)
{
    struct nb_curl_config cfg = cfg_for(u);
    char detail[512];
    nb_err err = range_err(&cfg, off, len, detail, sizeof(detail));
    if (err != want)
        fail_msg("%s [%u+%u]: %s, expected %s (%s)", u, off, len,
                 nb_err_name(err), nb_err_name(want), detail);
    print_message("  %-50s -> %s (%s)\n", u, nb_err_name(err), detail);
}

/* ------------------------------------------- misbehaving HTTP servers */

enum fake_mode {
    FAKE_SILENT,        /* accept, send nothing */
    FAKE_STALL_MID,     /* 206 + half the range, then nothing */
    FAKE_200_CL,        /* ignore Range: 200 + Content-Length: whole file */
    FAKE_200_CLOSE,     /* ignore Range: 200, no length, whole file, close */
    FAKE_206_EXTRA,     /* right Content-Range, no length, 1000 extra bytes */
    FAKE_206_WRONG,     /* Content-Range starting one byte later */
    FAKE_206_LONG_CL,   /* right Content-Range, Content-Length + 100 */
    FAKE_200_ENDLESS,   /* 200, no length, bytes until the client goes */
    FAKE_206_DROP       /* 206 + Content-Length, half the range, close */
};

static const char *const fake_names[] = {
    "silent", "stall-mid", "200+length", "200+close", "206+extra",
    "206-wrong-range", "206-long-length", "200-endless", "206-drop",
};

struct fake {
    int fd;
    uint16_t port;
    volatile int mode;
    volatile int stop;
    volatile uint64_t sent; /* body bytes the server managed to send */
    pthread_t th;
    int held[16];
    int nheld;
};

static int send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Read the request head; the range asked for (or the whole file). */
static int read_request(int fd, uint64_t *a, uint64_t *b)
{
    char req[4096];
    size_t n = 0;
    while (n < sizeof(req) - 1) {
        ssize_t k = recv(fd, req + n, sizeof(req) - 1 - n, 0);
        if (k <= 0)
            return -1;
        n += (size_t)k;
        req[n] = 0;
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    *a = 0;
    *b = BIG_SIZE - 1;
    const char *r = strstr(req, "Range: bytes=");
    if (r) {
        unsigned long long x, y;
        if (sscanf(r + 13, "%llu-%llu", &x, &y) == 2) {
            *a = x;
            *b = y;
        }
    }
    return 0;
}

static void serve(struct fake *f, int fd)
{
    uint64_t a, b;
    char head[512];
    if (f->mode == FAKE_SILENT) {
        if (f->nheld < 16)
            f->held[f->nheld++] = fd;
        else
            close(fd);
        return;
    }
    if (read_request(fd, &a, &b) < 0) {
        close(fd);
        return;
    }
    uint64_t len = b - a + 1;
    uint64_t src = a; /* file offset of the first body byte */
    uint64_t body_len = len;
    switch (f->mode) {
    case FAKE_STALL_MID:
    case FAKE_206_DROP:
        snprintf(head, sizeof(head), "HTTP/1.1 206 Partial Content\r\n"
                 "Content-Range: bytes %llu-%llu/%u\r\n"
                 "Content-Length: %llu\r\n\r\n", (unsigned long long)a,
                 (unsigned long long)b, BIG_SIZE, (unsigned long long)len);
        body_len = len / 2;
        break;
    case FAKE_200_CL:
        snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\n"
                 "Content-Length: %u\r\n\r\n", BIG_SIZE);
        src = 0;
        body_len = BIG_SIZE;
        break;
    case FAKE_200_CLOSE:
    case FAKE_200_ENDLESS:
        snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\n"
                 "Connection: close\r\n\r\n");
        src = 0;
        body_len = BIG_SIZE;
        break;
    case FAKE_206_EXTRA:
        snprintf(head, sizeof(head), "HTTP/1.1 206 Partial Content\r\n"
                 "Content-Range: bytes %llu-%llu/%u\r\n"
                 "Connection: close\r\n\r\n", (unsigned long long)a,
                 (unsigned long long)b, BIG_SIZE);
        body_len = len + 1000;
        break;
    case FAKE_206_WRONG:
        snprintf(head, sizeof(head), "HTTP/1.1 206 Partial Content\r\n"
                 "Content-Range: bytes %llu-%llu/%u\r\n"
                 "Content-Length: %llu\r\n\r\n", (unsigned long long)a + 1,
                 (unsigned long long)b + 1, BIG_SIZE, (unsigned long long)len);
        src = a + 1;
        break;
    case FAKE_206_LONG_CL:
        snprintf(head, sizeof(head), "HTTP/1.1 206 Partial Content\r\n"
                 "Content-Range: bytes %llu-%llu/%u\r\n"
                 "Content-Length: %llu\r\n\r\n", (unsigned long long)a,
                 (unsigned long long)b, BIG_SIZE,
                 (unsigned long long)len + 100);
        body_len = len + 100;
        break;
    default:
        close(fd);
        return;
    }
    if (send_all(fd, head, strlen(head)) == 0) {
        if (f->mode == FAKE_200_ENDLESS)
            body_len = UINT64_MAX;
        /* The file's bytes from `src`, wrapping around at its end. */
        for (uint64_t i = 0; i < body_len && !f->stop;) {
            uint64_t at = (src + i) % BIG_SIZE;
            uint64_t n = BIG_SIZE - at < 16384 ? BIG_SIZE - at : 16384;
            if (n > body_len - i)
                n = body_len - i;
            if (send_all(fd, big + at, (size_t)n) < 0)
                break;
            i += n;
            f->sent += n;
        }
    }
    if (f->mode == FAKE_206_DROP) {
        /* A reset, not an orderly end: unread request bytes are gone. */
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
        return;
    }
    if (f->mode == FAKE_STALL_MID && f->nheld < 16) {
        f->held[f->nheld++] = fd; /* keep it open, say nothing */
        return;
    }
    shutdown(fd, SHUT_WR);
    close(fd);
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    while (!f->stop) {
        struct pollfd p = {f->fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(f->fd, NULL, NULL);
        if (fd >= 0)
            serve(f, fd);
    }
    return NULL;
}

static uint16_t listen_any(int *fdp)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    *fdp = fd;
    return ntohs(sa.sin_port);
}

static void fake_start(struct fake *f, enum fake_mode mode)
{
    memset(f, 0, sizeof(*f));
    f->mode = mode;
    f->port = listen_any(&f->fd);
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
    f->stop = 1;
    pthread_join(f->th, NULL);
    for (int i = 0; i < f->nheld; i++)
        close(f->held[i]);
    close(f->fd);
}

static char *fake_url(const struct fake *f)
{
    static char u[64];
    snprintf(u, sizeof(u), "http://127.0.0.1:%u/big.bin", f->port);
    return u;
}

/* ----------------------------------------------------------- the tests */

static const uint32_t caps[] = {1, 7, 4096, 65536, BIG_SIZE};

struct slice {
    uint32_t off, len;
};

static const struct slice slices[] = {
    {0, 1},          {1, 1000},           {4095, 4097},
    {65537, 100000}, {BIG_SIZE - 1, 1},   {BIG_SIZE - 1000, 1000},
    {12345, 300000}, {0, BIG_SIZE},
};

/* Every slice with every read size, on one transport (ranges in a row
 * reuse the connection). Caps of 1 and 7 only on the short slices. */
static void slices_over(const char *base, int ftp_tls)
{
    struct nb_curl_config cfg = cfg_for(url(base, "big.bin"));
    cfg.ftp_tls = ftp_tls;
    struct nb_curl c;
    struct nb_transport t;
    assert_int_equal(nb_curl_init(&c, &cfg, &t), NB_OK);
    for (size_t i = 0; i < sizeof(slices) / sizeof(slices[0]); i++) {
        for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++) {
            const struct slice *s = &slices[i];
            if (caps[k] < 4096 && s->len > 100000)
                continue;
            check_slice(&t, s->off, s->len, caps[k], big + s->off, s->len);
        }
    }
    /* A range past the end is cut short by the server: the bytes there
     * are, then the end (the engine calls that NB_ERR_TRUNCATED). */
    check_slice(&t, BIG_SIZE - 10, 100, 64, big + BIG_SIZE - 10, 10);
    /* Abandon a range half-read, then read another. */
    uint8_t b[100];
    uint32_t got;
    assert_int_equal(t.open(t.ctx, 0, BIG_SIZE), NB_OK);
    assert_int_equal(t.read(t.ctx, b, sizeof(b), &got), NB_OK);
    assert_true(got > 0 && got <= sizeof(b));
    assert_memory_equal(b, big, got);
    t.close(t.ctx);
    check_slice(&t, 777, 5000, 4096, big + 777, 5000);
    /* An empty range: the end at once, nothing sent. */
    assert_int_equal(t.open(t.ctx, 5, 0), NB_OK);
    assert_int_equal(t.read(t.ctx, b, 1, &got), NB_OK);
    assert_int_equal(got, 0);
    t.close(t.ctx);
    t.close(t.ctx); /* twice: harmless */
    nb_curl_free(&c);
    nb_curl_free(&c);
}

static void test_http_slices(void **state)
{
    (void)state;
    slices_over(http, 0);
}

static void test_https_slices(void **state)
{
    (void)state;
    slices_over(https, 0);
}

static void test_ftp_slices(void **state)
{
    (void)state;
    slices_over(ftp, 0);
}

static void test_ftps_slices(void **state)
{
    (void)state;
    slices_over(ftps, 1);
}

/* The smallest buffer, reads larger than it, and reads of one byte:
 * the transfer pauses and resumes many times. */
static void test_small_buffer(void **state)
{
    (void)state;
    const char *bases[] = {http, https, ftp};
    for (size_t i = 0; i < 3; i++) {
        struct nb_curl_config cfg = cfg_for(url(bases[i], "big.bin"));
        cfg.buffer_size = NB_CURL_BUFFER_MIN;
        struct nb_curl c;
        struct nb_transport t;
        assert_int_equal(nb_curl_init(&c, &cfg, &t), NB_OK);
        check_slice(&t, 3, BIG_SIZE - 3, 100000, big + 3, BIG_SIZE - 3);
        check_slice(&t, 100, 70000, 1, big + 100, 70000);
        nb_curl_free(&c);
    }
}

static void test_http_status(void **state)
{
    (void)state;
    expect_err(url(http, "nothing-here.bin"), 0, 10, NB_ERR_NOENT);
    expect_err(url(http, "gone"), 0, 10, NB_ERR_NOENT);
    expect_err(url(http, "auth"), 0, 10, NB_ERR_DENIED);
    expect_err(url(http, "denied/big.bin"), 0, 10, NB_ERR_DENIED);
    expect_err(url(http, "teapot"), 0, 10, NB_ERR_DENIED);
    expect_err(url(http, "err"), 0, 10, NB_ERR_IO);
    expect_err(url(http, "big.bin"), BIG_SIZE, 10, NB_ERR_RANGE);
    expect_err(url(http, "big.bin"), BIG_SIZE + 5000, 10, NB_ERR_RANGE);
    expect_err(url(https, "nothing-here.bin"), 0, 10, NB_ERR_NOENT);
    expect_err(url(https, "denied/big.bin"), 0, 10, NB_ERR_DENIED);
    expect_err(url(https, "big.bin"), BIG_SIZE, 1, NB_ERR_RANGE);
    /* An empty file has no byte 0. */
    expect_err(url(http, "empty.bin"), 0, 10, NB_ERR_RANGE);
    /* A redirect is not followed unless configured. */
    expect_err(url(http, "moved"), 0, 10, NB_ERR_DENIED);
    struct nb_curl_config cfg = cfg_for(url(http, "moved"));
    cfg.max_redirects = 2;
    struct nb_curl c;
    struct nb_transport t;
    assert_int_equal(nb_curl_init(&c, &cfg, &t), NB_OK);
    check_slice(&t, 1000, 2000, 512, big + 1000, 2000);
    nb_curl_free(&c);
}

static void test_ftp_errors(void **state)
{
    (void)state;
    expect_err(url(ftp, "nothing-here.bin"), 0, 10, NB_ERR_NOENT);
    expect_err(url(ftp, "no-dir/big.bin"), 0, 10, NB_ERR_NOENT);
    expect_err(url(ftp, "big.bin"), BIG_SIZE + 1, 10, NB_ERR_RANGE);
    expect_err(url(ftp, "big.bin"), BIG_SIZE, 10, NB_ERR_RANGE);
    expect_err(url(ftp, "empty.bin"), 0, 10, NB_ERR_RANGE);
    char u[600];
    snprintf(u, sizeof(u), "ftp://someone:wrong@%s/big.bin",
             ftp + strlen("ftp://"));
    expect_err(u, 0, 10, NB_ERR_DENIED);
    expect_err(url(ftps, "nothing-here.bin"), 0, 10, NB_ERR_DENIED);
    /* (the TLS-only server refuses a login without TLS: 530) */

    /* TLS required but the server has none; TLS with the wrong CA. */
    struct nb_curl_config cfg = cfg_for(url(ftp, "big.bin"));
    cfg.ftp_tls = 1;
    char detail[512];
    assert_int_equal(range_err(&cfg, 0, 10, detail, sizeof(detail)),
                     NB_ERR_DENIED);
    print_message("  ftp_tls to a plain server -> DENIED (%s)\n", detail);
    cfg = cfg_for(url(ftps, "big.bin"));
    cfg.ftp_tls = 1;
    cfg.ca_file = other_ca;
    assert_int_equal(range_err(&cfg, 0, 10, detail, sizeof(detail)),
                     NB_ERR_DENIED);
    print_message("  FTPS, wrong CA -> DENIED (%s)\n", detail);
    cfg.ca_file = ca;
    snprintf(u, sizeof(u), "%s", url(ftps, "nothing-here.bin"));
    cfg.url = u;
    assert_int_equal(range_err(&cfg, 0, 10, detail, sizeof(detail)),
                     NB_ERR_NOENT);
}

static void test_tls_verification(void **state)
{
    (void)state;
    char detail[512];
    struct nb_curl_config cfg = cfg_for(url(https, "big.bin"));
    /* A CA that did not sign the server's certificate. */
    cfg.ca_file = other_ca;
    assert_int_equal(range_err(&cfg, 0, 10, detail, sizeof(detail)),
                     NB_ERR_DENIED);
    print_message("  wrong CA -> DENIED (%s)\n", detail);
    /* The system store does not know our self-signed certificate
     * (DENIED), or there is no system store (INVAL: package
     * ca-certificates is not installed). */
    cfg.ca_file = NULL;
    nb_err err = range_err(&cfg, 0, 10, detail, sizeof(detail));
    print_message("  system store -> %s (%s)\n", nb_err_name(err), detail);
    assert_true(err == NB_ERR_DENIED || err == NB_ERR_INVAL);
    /* The right CA, the wrong name (the certificate names 127.0.0.1). */
    char u[600];
    snprintf(u, sizeof(u), "https://localhost:%s/big.bin",
             strrchr(https, ':') + 1);
    cfg = cfg_for(u);
    assert_int_equal(range_err(&cfg, 0, 10, detail, sizeof(detail)),
                     NB_ERR_DENIED);
    print_message("  wrong name -> DENIED (%s)\n", detail);
    /* insecure (tests only) accepts anything. */
    cfg.ca_file = other_ca;
    cfg.insecure = 1;
    assert_int_equal(range_err(&cfg, 0, 10, NULL, 0), NB_OK);
}

static void test_refused(void **state)
{
    (void)state;
    int fd;
    uint16_t port = listen_any(&fd);
    close(fd); /* nobody listens there now */
    char u[64];
    snprintf(u, sizeof(u), "http://127.0.0.1:%u/big.bin", port);
    uint64_t t0 = now_ms();
    expect_err(u, 0, 10, NB_ERR_IO);
    assert_true(now_ms() - t0 < 3000);
    snprintf(u, sizeof(u), "ftp://127.0.0.1:%u/big.bin", port);
    expect_err(u, 0, 10, NB_ERR_IO);
}

static void test_stall(void **state)
{
    (void)state;
    struct fake f;
    char detail[512];
    /* Accepts, says nothing: open gives up after connect + stall time
     * (here 400 + 400 ms). */
    fake_start(&f, FAKE_SILENT);
    struct nb_curl_config cfg = cfg_for(fake_url(&f));
    cfg.stall_timeout_ms = STALL_MS;
    cfg.connect_timeout_ms = STALL_MS;
    uint64_t t0 = now_ms();
    assert_int_equal(range_err(&cfg, 0, 1000, detail, sizeof(detail)),
                     NB_ERR_IO);
    uint64_t dt = now_ms() - t0;
    print_message("  silent server -> IO after %llu ms (%s)\n",
                  (unsigned long long)dt, detail);
    assert_true(dt >= STALL_MS && dt < 2 * STALL_MS + 3000);
    fake_stop(&f);

    /* Half the range, then nothing: the half is delivered, then IO
     * within the stall time. */
    fake_start(&f, FAKE_STALL_MID);
    cfg = cfg_for(fake_url(&f));
    cfg.stall_timeout_ms = STALL_MS;
    struct nb_curl c;
    struct nb_transport t;
    assert_int_equal(nb_curl_init(&c, &cfg, &t), NB_OK);
    assert_int_equal(t.open(t.ctx, 1000, 20000), NB_OK);
    uint8_t *buf = malloc(20000);
    assert_non_null(buf);
    uint32_t n = 0, got;
    nb_err err;
    for (;;) {
        t0 = now_ms();
        err = t.read(t.ctx, buf + n, 20000 - n, &got);
        if (err)
            break;
        assert_true(got > 0);
        n += got;
    }
    dt = now_ms() - t0;
    print_message("  stall after %u bytes -> %s after %llu ms (%s)\n", n,
                  nb_err_name(err), (unsigned long long)dt,
                  nb_curl_detail(&c));
    assert_int_equal(err, NB_ERR_IO);
    assert_int_equal(n, 10000);
    assert_memory_equal(buf, big + 1000, n);
    assert_true(dt >= STALL_MS - 10 && dt < STALL_MS + 3000);
    /* It stays failed. */
    assert_int_equal(t.read(t.ctx, buf, 1, &got), NB_ERR_IO);
    t.close(t.ctx);
    free(buf);
    nb_curl_free(&c);
    fake_stop(&f);
}

/* The peer drops the connection mid-range: what came is delivered, then
 * NB_ERR_IO (worth retrying from there). */
static void test_dropped(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, FAKE_206_DROP);
    struct nb_curl_config cfg = cfg_for(fake_url(&f));
    struct nb_curl c;
    struct nb_transport t;
    assert_int_equal(nb_curl_init(&c, &cfg, &t), NB_OK);
    uint8_t *buf = malloc(40000);
    assert_non_null(buf);
    assert_int_equal(t.open(t.ctx, 500, 40000), NB_OK);
    uint32_t n = 0, got;
    nb_err err;
    while (!(err = t.read(t.ctx, buf + n, 40000 - n, &got)) && got)
        n += got;
    print_message("  dropped after %u bytes -> %s (%s)\n", n,
                  nb_err_name(err), nb_curl_detail(&c));
    assert_int_equal(err, NB_ERR_IO);
    assert_true(n <= 20000);
    assert_memory_equal(buf, big + 500, n);
    t.close(t.ctx);
    free(buf);
    nb_curl_free(&c);
    fake_stop(&f);
}

/* Never more than asked: read everything the transport gives for
 * [off, off+len) from a fake server in `mode`; the result. *delivered is
 * the byte count on success, 0 when open() already refused. */
static nb_err overlong(enum fake_mode mode, uint32_t off, uint32_t len,
                       uint32_t *delivered)
{
    *delivered = UINT32_MAX;
    struct fake f;
    fake_start(&f, mode);
    struct nb_curl_config cfg = cfg_for(fake_url(&f));
    struct nb_curl c;
    struct nb_transport t;
    assert_int_equal(nb_curl_init(&c, &cfg, &t), NB_OK);
    uint8_t *buf = malloc(len + 1);
    assert_non_null(buf);
    nb_err err = t.open(t.ctx, off, len);
    long n = 0;
    if (err)
        *delivered = 0;
    else {
        n = read_all(&t, buf, len, 4096, &err);
        if (n >= 0) {
            err = NB_OK;
            *delivered = (uint32_t)n;
        }
    }
    /* read_all fails the test if more than len bytes come. */
    if (!err)
        assert_memory_equal(buf, big + off, (size_t)n);
    print_message("  %s, bytes=%u-%u -> %s (%s)\n", fake_names[mode], off,
                  off + len - 1, nb_err_name(err), nb_curl_detail(&c));
    t.close(t.ctx);
    free(buf);
    nb_curl_free(&c);
    fake_stop(&f);
    return err;
}

/* Count the bytes delivered before an error, and check them. */
static nb_err overlong_count(enum fake_mode mode, uint32_t off, uint32_t len,
                             uint32_t cap, uint32_t *delivered,
                             uint64_t *server_sent)
{
    struct fake f;
    fake_start(&f, mode);
    struct nb_curl_config cfg = cfg_for(fake_url(&f));
    cfg.buffer_size = NB_CURL_BUFFER_MIN;
    struct nb_curl c;
    struct nb_transport t;
    assert_int_equal(nb_curl_init(&c, &cfg, &t), NB_OK);
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    uint32_t n = 0, got;
    nb_err err = t.open(t.ctx, off, len);
    while (!err) {
        err = t.read(t.ctx, buf, cap, &got);
        if (err || got == 0)
            break;
        assert_true(got <= cap);
        assert_true(n + got <= len);
        assert_memory_equal(buf, big + ((off + n) % BIG_SIZE), got);
        n += got;
    }
    *delivered = n;
    print_message("  %s, bytes=%u-%u -> %s after %u bytes (%s)\n",
                  fake_names[mode],
                  off, off + len - 1, nb_err_name(err), n,
                  nb_curl_detail(&c));
    t.close(t.ctx);
    free(buf);
    nb_curl_free(&c);
    f.stop = 1;
    pthread_join(f.th, NULL);
    if (server_sent)
        *server_sent = f.sent;
    f.stop = 0;
    for (int i = 0; i < f.nheld; i++)
        close(f.held[i]);
    close(f.fd);
    return err;
}

static void test_never_more_than_asked(void **state)
{
    (void)state;
    uint32_t n = 0;
    /* 200 to a range that does not start at 0: refused by open(),
     * nothing delivered. */
    assert_int_equal(overlong(FAKE_200_CL, 5000, 1000, &n), NB_ERR_RANGE);
    assert_int_equal(n, 0);
    assert_int_equal(overlong(FAKE_200_CLOSE, 5000, 1000, &n), NB_ERR_RANGE);
    assert_int_equal(n, 0);
    /* 200 from 0 with a Content-Length beyond the range: refused. */
    assert_int_equal(overlong(FAKE_200_CL, 0, 1000, &n), NB_ERR_RANGE);
    assert_int_equal(n, 0);
    /* 200 from 0 for the whole file: that is what we asked for. */
    assert_int_equal(overlong(FAKE_200_CL, 0, BIG_SIZE, &n), NB_OK);
    assert_int_equal(n, BIG_SIZE);
    /* A 206 for another range, or with a longer Content-Length. */
    assert_int_equal(overlong(FAKE_206_WRONG, 100, 1000, &n), NB_ERR_RANGE);
    assert_int_equal(n, 0);
    assert_int_equal(overlong(FAKE_206_LONG_CL, 100, 1000, &n), NB_ERR_RANGE);
    assert_int_equal(n, 0);
    /* No length at all, and more bytes than the range: the range, then
     * RANGE where the end would be. */
    assert_int_equal(overlong_count(FAKE_206_EXTRA, 100, 5000, 777, &n, NULL),
                     NB_ERR_RANGE);
    assert_int_equal(n, 5000);
    assert_int_equal(overlong_count(FAKE_200_CLOSE, 0, 3000, 4096, &n, NULL),
                     NB_ERR_RANGE);
    assert_int_equal(n, 3000);
    /* An endless stream, read slowly through the smallest buffer: cut at
     * the range's end. */
    uint64_t sent = 0;
    assert_int_equal(overlong_count(FAKE_200_ENDLESS, 0, 300000, 100, &n,
                                    &sent),
                     NB_ERR_RANGE);
    assert_int_equal(n, 300000);
    print_message("  endless server had sent %llu bytes when cut off\n",
                  (unsigned long long)sent);
}

static void test_get_small(void **state)
{
    (void)state;
    uint8_t buf[4096];
    uint32_t len = 99;
    char detail[256];
    const char *bases[] = {http, https, ftp};
    for (size_t i = 0; i < 3; i++) {
        struct nb_curl_config cfg = cfg_for(NULL);
        assert_int_equal(nb_curl_get_small(url(bases[i], "small.bin"), &cfg,
                                           buf, sizeof(buf), &len, detail,
                                           sizeof(detail)),
                         NB_OK);
        assert_int_equal(len, SMALL_SIZE);
        assert_memory_equal(buf, small, SMALL_SIZE);
        /* Exactly the capacity fits. */
        assert_int_equal(nb_curl_get_small(url(bases[i], "small.bin"), &cfg,
                                           buf, SMALL_SIZE, &len, NULL, 0),
                         NB_OK);
        assert_int_equal(len, SMALL_SIZE);
        /* One byte less does not, and nothing past cap is written. */
        memset(buf, 0xAA, sizeof(buf));
        assert_int_equal(nb_curl_get_small(url(bases[i], "small.bin"), &cfg,
                                           buf, SMALL_SIZE - 1, &len, detail,
                                           sizeof(detail)),
                         NB_ERR_NOSPC);
        assert_int_equal(len, 0);
        assert_int_equal(buf[SMALL_SIZE - 1], 0xAA);
        print_message("  %s: cap too small -> NOSPC (%s)\n", bases[i], detail);
        assert_int_equal(nb_curl_get_small(url(bases[i], "big.bin"), &cfg,
                                           buf, sizeof(buf), &len, NULL, 0),
                         NB_ERR_NOSPC);
        assert_int_equal(nb_curl_get_small(url(bases[i], "empty.bin"), &cfg,
                                           buf, sizeof(buf), &len, NULL, 0),
                         NB_OK);
        assert_int_equal(len, 0);
        assert_int_equal(nb_curl_get_small(url(bases[i], "nothing.bin"), &cfg,
                                           buf, sizeof(buf), &len, NULL, 0),
                         NB_ERR_NOENT);
    }
    /* No config: defaults (plain HTTP needs none). */
    assert_int_equal(nb_curl_get_small(url(http, "small.bin"), NULL, buf,
                                       sizeof(buf), &len, NULL, 0),
                     NB_OK);
    assert_int_equal(len, SMALL_SIZE);
    /* A server that never stops, no length: cut at cap. */
    struct fake f;
    fake_start(&f, FAKE_200_ENDLESS);
    struct nb_curl_config cfg = cfg_for(NULL);
    assert_int_equal(nb_curl_get_small(fake_url(&f), &cfg, buf, sizeof(buf),
                                       &len, NULL, 0),
                     NB_ERR_NOSPC);
    fake_stop(&f);
}

static void test_config(void **state)
{
    (void)state;
    struct nb_curl c;
    struct nb_transport t;
    struct nb_curl_config cfg = cfg_for(NULL);
    assert_int_equal(nb_curl_init(&c, &cfg, &t), NB_ERR_INVAL);
    print_message("  no url: %s\n", nb_curl_detail(&c));
    assert_null(t.read);
    cfg.url = "gopher://127.0.0.1/x";
    assert_int_equal(nb_curl_init(&c, &cfg, &t), NB_ERR_INVAL);
    cfg.url = "file:///etc/passwd";
    assert_int_equal(nb_curl_init(&c, &cfg, &t), NB_ERR_INVAL);
    cfg.url = url(http, "big.bin");
    cfg.buffer_size = 1000;
    assert_int_equal(nb_curl_init(&c, &cfg, &t), NB_ERR_INVAL);
    print_message("  small buffer: %s\n", nb_curl_detail(&c));
    cfg.buffer_size = 0;
    cfg.ca_file = "/nonexistent/ca.pem";
    assert_int_equal(nb_curl_init(&c, &cfg, &t), NB_ERR_INVAL);
    nb_curl_free(&c); /* harmless after a failed init */
    cfg.ca_file = ca;
    assert_int_equal(nb_curl_init(&c, &cfg, &t), NB_OK);
    uint8_t b[4];
    uint32_t got = 7;
    assert_int_equal(t.read(t.ctx, b, sizeof(b), &got), NB_ERR_STATE);
    assert_int_equal(got, 0);
    assert_int_equal(t.open(t.ctx, UINT32_MAX, 2), NB_ERR_RANGE);
    t.close(t.ctx);
    nb_curl_free(&c);
    assert_int_equal(nb_curl_get_small(NULL, NULL, b, 4, &got, NULL, 0),
                     NB_ERR_INVAL);
}

/* nginx answers /private/ only with "Authorization: Bearer s3cret". */
static void test_bearer(void **state)
{
    (void)state;
    expect_err(url(http, "private/big.bin"), 0, 10, NB_ERR_DENIED);
    struct nb_curl_config cfg = cfg_for(url(https, "private/big.bin"));
    cfg.bearer_token = "s3cret";
    struct nb_curl c;
    struct nb_transport t;
    assert_int_equal(nb_curl_init(&c, &cfg, &t), NB_OK);
    check_slice(&t, 10, 5000, 4096, big + 10, 5000);
    nb_curl_free(&c);
    cfg.bearer_token = "wrong";
    assert_int_equal(range_err(&cfg, 0, 10, NULL, 0), NB_ERR_DENIED);
}

/* ------------------------------------------ through the download engine */

struct rig {
    struct nb_simflash *sim;
    struct nb_flash flash;
    struct nb_openssl_crypto oc;
    struct nb_crypto crypto;
    struct nb_testkeys keys;
    struct nb_identity id;
    struct nb_boot_config cfg;
    struct nb_device dev;
    uint8_t buf[4096];
    uint8_t mbuf[NB_MANIFEST_MAX];
    struct nb_buf pkg;
    uint32_t mlen;
    struct nb_manifest m;
};

static void rig_init(struct rig *r, uint32_t payload)
{
    struct nb_simflash_geometry g;
    memset(r, 0, sizeof(*r));
    memset(&g, 0, sizeof(g));
    g.write_size = 8;
    g.erase_value = 0xFF;
    g.region_count = 1;
    g.regions[0].size = 4096;
    g.regions[0].count = (3 * 262144) / 4096 + 4;
    assert_int_equal(nb_simflash_create_mem(&r->sim, &g), NB_OK);
    nb_simflash_interface(r->sim, &r->flash);
    assert_int_equal(nb_crypto_openssl_init(&r->crypto, &r->oc), NB_OK);
    assert_int_equal(nb_testkeys_init(&r->keys, &r->crypto), NB_OK);
    nb_testpkg_identity(&r->id);
    r->cfg.flash = &r->flash;
    r->cfg.crypto = &r->crypto;
    r->cfg.keystore = &r->keys.keystore;
    r->cfg.identity = &r->id;
    assert_int_equal(nb_layout_plan(&r->cfg.layout, &r->flash, NB_LAYOUT_AB,
                                    262144, 0),
                     NB_OK);
    r->cfg.buf = r->buf;
    r->cfg.buf_size = sizeof(r->buf);
    r->cfg.mbuf = r->mbuf;
    r->cfg.mbuf_size = sizeof(r->mbuf);
    assert_int_equal(nb_device_provision(&r->dev, &r->cfg,
                                         NB_LIFECYCLE_PRODUCTION, 3),
                     NB_OK);
    assert_int_equal(nb_testpkg_make(&r->keys, &r->crypto, 0x01020000u, 3,
                                     payload, 42, &r->pkg),
                     NB_OK);
    assert_int_equal(nb_pkg_parse_header(r->pkg.p, &r->mlen), NB_OK);
    assert_int_equal(nb_manifest_parse_unverified(&r->crypto,
                                                  r->pkg.p + NB_PKG_HDR_SIZE,
                                                  r->mlen, &r->m),
                     NB_OK);
}

static void rig_free(struct rig *r)
{
    nb_buf_free(&r->pkg);
    nb_testkeys_free(&r->keys);
    nb_crypto_openssl_free(&r->crypto, &r->oc);
    nb_simflash_close(r->sim);
}

/* The agent's path: the manifest by nb_curl_get_small (the first
 * payload_offset bytes of the package are header + manifest), then the
 * payload through the engine, then finish (reads the slot back). */
static void engine_over(const char *base, int ftp_tls)
{
    struct rig r;
    rig_init(&r, 150001);
    write_file("pkg.nbpkg", r.pkg.p, (uint32_t)r.pkg.len);

    struct nb_curl_config cfg = cfg_for(url(base, "pkg.nbpkg"));
    cfg.ftp_tls = ftp_tls;
    /* Fetch the manifest with a range (header + manifest). */
    struct nb_curl c;
    struct nb_transport t;
    assert_int_equal(nb_curl_init(&c, &cfg, &t), NB_OK);
    uint8_t *man = malloc(r.m.payload_offset);
    assert_non_null(man);
    nb_err err;
    assert_int_equal(t.open(t.ctx, 0, r.m.payload_offset), NB_OK);
    assert_int_equal(read_all(&t, man, r.m.payload_offset, 4096, &err),
                     r.m.payload_offset);
    t.close(t.ctx);
    uint32_t mlen;
    assert_int_equal(nb_pkg_parse_header(man, &mlen), NB_OK);

    struct nb_install in;
    assert_int_equal(nb_device_open(&r.dev, &r.cfg), NB_OK);
    assert_int_equal(nb_install_begin(&in, &r.dev, man + NB_PKG_HDR_SIZE,
                                      mlen, NB_TARGET_UPDATE),
                     NB_OK);
    uint8_t rx[3000];
    struct nb_download_stats st;
    memset(&st, 0, sizeof(st));
    err = nb_download_payload(&in, &t, r.m.payload_offset, rx, sizeof(rx),
                              &st);
    if (err)
        fail_msg("download: %s: %s", nb_err_name(err), nb_curl_detail(&c));
    assert_int_equal(st.bytes, r.m.payload_size);
    assert_int_equal(st.opens, 1);
    assert_int_equal(nb_install_finish(&in), NB_OK);
    print_message("  %s: %u payload bytes in %u range(s), verified\n", base,
                  (unsigned)st.bytes, st.opens);
    nb_curl_free(&c);
    free(man);
    rig_free(&r);
}

static void test_engine(void **state)
{
    (void)state;
    engine_over(http, 0);
    engine_over(https, 0);
    engine_over(ftp, 0);
    engine_over(ftps, 1);
}

/* The engine on a transport whose peer ignores Range: the attempt ends
 * with NB_ERR_RANGE and nothing beyond the payload reaches the install. */
static void test_engine_bad_server(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, 50000);
    struct fake f;
    fake_start(&f, FAKE_200_CL);
    struct nb_curl_config cfg = cfg_for(fake_url(&f));
    struct nb_curl c;
    struct nb_transport t;
    assert_int_equal(nb_curl_init(&c, &cfg, &t), NB_OK);
    struct nb_install in;
    assert_int_equal(nb_device_open(&r.dev, &r.cfg), NB_OK);
    assert_int_equal(nb_install_begin(&in, &r.dev, r.pkg.p + NB_PKG_HDR_SIZE,
                                      r.mlen, NB_TARGET_UPDATE),
                     NB_OK);
    uint8_t rx[4096];
    struct nb_download_stats st;
    memset(&st, 0, sizeof(st));
    assert_int_equal(nb_download_payload(&in, &t, r.m.payload_offset, rx,
                                         sizeof(rx), &st),
                     NB_ERR_RANGE);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(nb_install_offset(&in), 0);
    nb_curl_free(&c);
    fake_stop(&f);
    rig_free(&r);
}

static int setup(void **state)
{
    (void)state;
    big = malloc(BIG_SIZE);
    small = malloc(SMALL_SIZE);
    if (!big || !small)
        return -1;
    fill_random(big, BIG_SIZE, 1);
    fill_random(small, SMALL_SIZE, 2);
    write_file("big.bin", big, BIG_SIZE);
    write_file("small.bin", small, SMALL_SIZE);
    write_file("empty.bin", small, 0);
    char sub[1024];
    snprintf(sub, sizeof(sub), "%s/private", dir);
    mkdir(sub, 0755);
    write_file("private/big.bin", big, BIG_SIZE);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(big);
    free(small);
    return 0;
}

int main(void)
{
    dir = env("NBT_DIR");
    http = env("NBT_HTTP");
    https = env("NBT_HTTPS");
    ftp = env("NBT_FTP");
    ftps = env("NBT_FTPS");
    ca = env("NBT_CA");
    other_ca = env("NBT_OTHER_CA");
    if (nb_curl_global_init()) {
        fprintf(stderr, "curl_global_init failed\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_http_slices),
        cmocka_unit_test(test_https_slices),
        cmocka_unit_test(test_ftp_slices),
        cmocka_unit_test(test_ftps_slices),
        cmocka_unit_test(test_small_buffer),
        cmocka_unit_test(test_http_status),
        cmocka_unit_test(test_ftp_errors),
        cmocka_unit_test(test_tls_verification),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_stall),
        cmocka_unit_test(test_dropped),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_never_more_than_asked),
        cmocka_unit_test(test_get_small),
        cmocka_unit_test(test_engine),
        cmocka_unit_test(test_engine_bad_server),
    };
    int rc = cmocka_run_group_tests_name("transport_curl", tests, setup,
                                         teardown);
    nb_curl_global_cleanup();
    return rc;
}
