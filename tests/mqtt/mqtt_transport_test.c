/* mqtt_transport_test.c - the MQTT transport (ports/mqtt) against a real
 * mosquitto broker and the real responder (lib/nb_mqtt_serve.c, run as
 * tests/mqtt/mqtt_responder), plus an in-process fake server for what
 * the real one never does (silence, too much data, wrong offsets, wrong
 * ids, corrupted blocks). Run by tests/test_transport_mqtt.sh, which
 * starts the brokers and the responder and passes:
 *   NB_MQTT_PORT       broker with the responder (topic root "nobrick")
 *   NB_MQTT_DIR        the directory the responder serves
 *   NB_MQTT_PORT2      a second broker, killed by one test
 *   NB_MQTT_PID2       its process id
 *   NB_MQTT_DEAD_PORT  a port nothing listens on
 *   NB_MQTT_TLS_PORT   broker 1's TLS listener
 *   NB_MQTT_CA         the CA (self-signed certificate) of that listener
 *   NB_MQTT_OTHER_CA   an unrelated certificate
 *   NB_MQTT_AUTH_PORT  broker 1's listener with users "dev" (all device
 *                      topics), "noreq" (no requests) and "nodata" (no
 *                      data), password "secret"
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <mosquitto.h>

#include "nb_boot.h"
#include "nb_crypto_openssl.h"
#include "nb_download.h"
#include "nb_install.h"
#include "nb_simflash.h"
#include "nb_testpkg.h"
#include "nb_transport_mqtt.h"

#define MIB (1024u * 1024u)
#define STALL_MS 1500u

static int port1, port2, dead_port, tls_port, auth_port;
static const char *ca, *other_ca;
static pid_t pid2;
static const char *dir;
static uint8_t *blob; /* NB_MQTT_DIR/blob.bin: 1 MiB, seeded bytes */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void write_file(const char *name, const uint8_t *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* A device-side transport on `port` for `device`/`artifact`. */
static struct nb_mqtt_transport *dev_new(struct nb_transport *t, int port,
                                         const char *root, const char *device,
                                         const char *artifact,
                                         uint32_t request_max)
{
    struct nb_mqtt_config c;
    struct nb_mqtt_transport *m = NULL;
    memset(&c, 0, sizeof(c));
    c.host = "127.0.0.1";
    c.port = port;
    c.topic_root = root;
    c.device_id = device;
    c.artifact = artifact;
    c.connect_timeout_ms = 3000;
    c.stall_timeout_ms = STALL_MS;
    c.request_max = request_max;
    assert_int_equal(nb_mqtt_transport_new(&m, &c, t), NB_OK);
    return m;
}

/* Read the open range to its end (got == 0) or an error, into out
 * (capacity cap); reads of `chunk` bytes. Returns the error, *n the bytes
 * delivered (never more than cap: a transport that delivered more fails
 * the test). */
static nb_err read_all(struct nb_transport *t, uint8_t *out, uint32_t cap,
                       uint32_t chunk, uint32_t *n)
{
    *n = 0;
    for (;;) {
        uint32_t got = 0, want = chunk;
        uint8_t tmp[70000];
        assert_true(want <= sizeof(tmp));
        nb_err err = t->read(t->ctx, tmp, want, &got);
        assert_true(got <= want);
        if (err)
            return err;
        if (got == 0)
            return NB_OK;
        if (got > cap - *n)
            fail_msg("delivered %u bytes past the %u requested",
                     *n + got - cap, cap);
        memcpy(out + *n, tmp, got);
        *n += got;
    }
}

/* ------------------------------------------------------------ the fake */

/* A fake server on its own libmosquitto thread: records requests and
 * answers them according to its mode; tests may also publish scripted
 * messages with fake_send. */
enum fake_mode {
    F_SILENT,    /* subscribed, never answers */
    F_SERVE,     /* serves `data` correctly */
    F_FLIP_ONCE, /* serves `data`, one bit flipped in the first answer */
    F_EXTRA,     /* serves `data`, then 1000 bytes more */
    F_PARTIAL    /* serves the first 3 messages of each request only */
};

struct fake {
    struct mosquitto *mosq;
    pthread_mutex_t mu;
    enum fake_mode mode;
    char root[32];
    const uint8_t *data;
    uint32_t size;
    int subscribed;
    unsigned nreq, ncancel;
    uint32_t id, off, len;
    char device[NB_MQTT_ID_MAX + 1];
    int flipped;
};

/* Publish one data message; no cmocka asserts here, since the fake's
 * thread calls it too. Returns the libmosquitto result. */
static int fake_pub(struct fake *f, const char *device, uint32_t id,
                    uint32_t off, uint32_t lenfield, const uint8_t *p,
                    uint32_t n)
{
    char topic[128];
    uint8_t *msg = malloc(NB_MQTT_HDR + n + 1);
    if (!msg)
        return MOSQ_ERR_NOMEM;
    nb_mqtt_put32(msg, id);
    nb_mqtt_put32(msg + 4, off);
    nb_mqtt_put32(msg + 8, lenfield);
    if (n)
        memcpy(msg + NB_MQTT_HDR, p, n);
    snprintf(topic, sizeof(topic), "%s/%s/data", f->root, device);
    int rc = mosquitto_publish(f->mosq, NULL, topic, (int)(NB_MQTT_HDR + n),
                               msg, 1, false);
    free(msg);
    return rc;
}

static void fake_send(struct fake *f, const char *device, uint32_t id,
                      uint32_t off, uint32_t lenfield, const uint8_t *p,
                      uint32_t n)
{
    assert_int_equal(fake_pub(f, device, id, off, lenfield, p, n),
                     MOSQ_ERR_SUCCESS);
}

/* Serve [off, off + len) of f->data in 16 KiB messages, at most `max`
 * messages (0: all). */
static void fake_serve(struct fake *f, const char *device, uint32_t id,
                       uint32_t off, uint32_t len, unsigned max, int flip)
{
    uint8_t buf[NB_MQTT_MAX_DATA];
    unsigned k = 0;
    for (uint32_t pos = off; pos < off + len && pos < f->size; k++) {
        if (max && k == max)
            return;
        uint32_t n = off + len - pos < NB_MQTT_MAX_DATA ? off + len - pos
                                                       : NB_MQTT_MAX_DATA;
        if (n > f->size - pos)
            n = f->size - pos;
        memcpy(buf, f->data + pos, n);
        if (flip && k == 1)
            buf[100] ^= 0x10;
        if (fake_pub(f, device, id, pos, n, buf, n))
            return;
        pos += n;
    }
}

static void fake_on_message(struct mosquitto *mosq, void *obj,
                            const struct mosquitto_message *msg)
{
    struct fake *f = obj;
    char device[NB_MQTT_ID_MAX + 1], json[NB_MQTT_REQ_MAX + 1];
    char artifact[NB_MQTT_ARTIFACT_MAX + 1];
    unsigned off, len, id;
    size_t rl = strlen(f->root);
    (void)mosq;
    if (strncmp(msg->topic, f->root, rl) != 0 || msg->topic[rl] != '/' ||
        msg->payloadlen <= 0 || msg->payloadlen > (int)NB_MQTT_REQ_MAX)
        return;
    const char *d = msg->topic + rl + 1, *e = strchr(d, '/');
    if (!e || (size_t)(e - d) > NB_MQTT_ID_MAX)
        return;
    memcpy(device, d, (size_t)(e - d));
    device[e - d] = 0;
    memcpy(json, msg->payload, (size_t)msg->payloadlen);
    json[msg->payloadlen] = 0;
    if (sscanf(json,
               "{\"artifact\":\"%128[^\"]\",\"offset\":%u,\"length\":%u,"
               "\"id\":%u}",
               artifact, &off, &len, &id) != 4)
        return;
    pthread_mutex_lock(&f->mu);
    if (len == 0) { /* a cancel: counted apart, never answered */
        f->ncancel++;
        pthread_mutex_unlock(&f->mu);
        return;
    }
    f->nreq++;
    f->id = id;
    f->off = off;
    f->len = len;
    snprintf(f->device, sizeof(f->device), "%s", device);
    enum fake_mode mode = f->mode;
    int flip = mode == F_FLIP_ONCE && !f->flipped;
    if (flip)
        f->flipped = 1;
    pthread_mutex_unlock(&f->mu);
    switch (mode) {
    case F_SILENT: break;
    case F_SERVE:
    case F_FLIP_ONCE: fake_serve(f, device, id, off, len, 0, flip); break;
    case F_PARTIAL: fake_serve(f, device, id, off, len, 3, 0); break;
    case F_EXTRA: {
        static uint8_t extra[1000];
        fake_serve(f, device, id, off, len, 0, 0);
        fake_pub(f, device, id, off + len, sizeof(extra), extra,
                 sizeof(extra));
        break;
    }
    }
}

static void fake_on_subscribe(struct mosquitto *mosq, void *obj, int mid,
                              int n, const int *granted)
{
    struct fake *f = obj;
    (void)mosq;
    (void)mid;
    pthread_mutex_lock(&f->mu);
    f->subscribed = n == 1 && granted[0] < 0x80;
    pthread_mutex_unlock(&f->mu);
}

static struct fake *fake_start(int port, const char *root, enum fake_mode mode,
                               const uint8_t *data, uint32_t size)
{
    struct fake *f = calloc(1, sizeof(*f));
    char topic[64];
    assert_non_null(f);
    pthread_mutex_init(&f->mu, NULL);
    f->mode = mode;
    f->data = data;
    f->size = size;
    snprintf(f->root, sizeof(f->root), "%s", root);
    f->mosq = mosquitto_new(NULL, true, f);
    assert_non_null(f->mosq);
    mosquitto_message_callback_set(f->mosq, fake_on_message);
    mosquitto_subscribe_callback_set(f->mosq, fake_on_subscribe);
    assert_int_equal(mosquitto_connect(f->mosq, "127.0.0.1", port, 30),
                     MOSQ_ERR_SUCCESS);
    snprintf(topic, sizeof(topic), "%s/+/req", root);
    assert_int_equal(mosquitto_subscribe(f->mosq, NULL, topic, 1),
                     MOSQ_ERR_SUCCESS);
    assert_int_equal(mosquitto_loop_start(f->mosq), MOSQ_ERR_SUCCESS);
    for (int i = 0; i < 300; i++) {
        pthread_mutex_lock(&f->mu);
        int ok = f->subscribed;
        pthread_mutex_unlock(&f->mu);
        if (ok)
            return f;
        usleep(10000);
    }
    fail_msg("fake server: no SUBACK");
    return NULL;
}

/* Wait for request number `n` (counted from 1); returns its id. */
static uint32_t fake_wait(struct fake *f, unsigned n, uint32_t *off,
                          uint32_t *len)
{
    for (int i = 0; i < 300; i++) {
        pthread_mutex_lock(&f->mu);
        int ok = f->nreq >= n;
        uint32_t id = f->id;
        if (off)
            *off = f->off;
        if (len)
            *len = f->len;
        pthread_mutex_unlock(&f->mu);
        if (ok)
            return id;
        usleep(10000);
    }
    fail_msg("fake server: request %u never came", n);
    return 0;
}

/* Wait until `n` cancels have come. */
static void fake_wait_cancels(struct fake *f, unsigned n)
{
    for (int i = 0; i < 300; i++) {
        pthread_mutex_lock(&f->mu);
        int ok = f->ncancel >= n;
        pthread_mutex_unlock(&f->mu);
        if (ok)
            return;
        usleep(10000);
    }
    fail_msg("fake server: cancel %u never came", n);
}

static void fake_stop(struct fake *f)
{
    mosquitto_disconnect(f->mosq);
    mosquitto_loop_stop(f->mosq, true);
    mosquitto_destroy(f->mosq);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

/* ------------------------------------------------- the real responder */

/* Ranges at various offsets and lengths, read in various chunk sizes:
 * every byte equals the file's. */
static void ranges(void **state)
{
    static const struct { uint32_t off, len, chunk, req_max; } r[] = {
        {0, MIB, 65536, 0},          {0, MIB, 4096, 100000},
        {1, 100, 7, 0},              {16383, 16386, 1000, 0},
        {12345, 200000, 16384, 0},   {MIB - 1, 1, 1, 0},
        {777, 3 * 16384, 65536, 16384}, {500000, 123457, 3000, 50000},
    };
    struct nb_transport t;
    uint8_t *out = malloc(MIB);
    (void)state;
    assert_non_null(out);
    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
        struct nb_mqtt_stats st;
        char device[32];
        snprintf(device, sizeof(device), "ranges-%zu", i);
        struct nb_mqtt_transport *m =
            dev_new(&t, port1, NULL, device, "blob.bin", r[i].req_max);
        /* Twice on one connection: the second open reuses it. */
        for (int pass = 0; pass < 2; pass++) {
            uint32_t n;
            assert_int_equal(t.open(t.ctx, r[i].off, r[i].len), NB_OK);
            nb_err err = read_all(&t, out, r[i].len, r[i].chunk, &n);
            if (err || n != r[i].len)
                fail_msg("range %zu [%u,+%u): %s after %u bytes", i,
                         r[i].off, r[i].len, nb_err_name(err), n);
            assert_memory_equal(out, blob + r[i].off, r[i].len);
            t.close(t.ctx);
        }
        nb_mqtt_transport_stats(m, &st);
        assert_int_equal(st.bytes, 2ull * r[i].len);
        assert_int_equal(st.connects, 1);
        assert_int_equal(st.bad, 0);
        assert_int_equal(st.overrun, 0);
        nb_mqtt_transport_free(m);
    }
    free(out);
}

/* A range abandoned half way (as the engine does to fetch a bad block
 * again): close tells the server to stop, and the next range on the same
 * connection gets only its own bytes, although the old one's may still
 * be arriving. */
static void abandon_range(void **state)
{
    struct nb_transport t;
    struct nb_mqtt_stats st;
    uint8_t out[20000];
    uint32_t n = 0, got;
    (void)state;
    struct nb_mqtt_transport *m =
        dev_new(&t, port1, NULL, "abandon-1", "blob.bin", 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(t.open(t.ctx, 0, MIB), NB_OK);
        assert_int_equal(t.read(t.ctx, out, 1000, &got), NB_OK);
        assert_int_equal(got, 1000);
        assert_memory_equal(out, blob, 1000);
        t.close(t.ctx);
        assert_int_equal(t.open(t.ctx, 300000 + (uint32_t)i, 20000), NB_OK);
        assert_int_equal(read_all(&t, out, 20000, 3000, &n), NB_OK);
        assert_int_equal(n, 20000);
        assert_memory_equal(out, blob + 300000 + i, 20000);
        t.close(t.ctx);
    }
    nb_mqtt_transport_stats(m, &st);
    assert_int_equal(st.bad, 0);
    assert_int_equal(st.overrun, 0);
    nb_mqtt_transport_free(m);
}

/* Past the end of the file: a range that runs over ends early (got 0);
 * one that starts at or past the end is NB_ERR_RANGE. */
static void end_of_file(void **state)
{
    struct nb_transport t;
    uint8_t out[1000];
    uint32_t n;
    (void)state;
    struct nb_mqtt_transport *m =
        dev_new(&t, port1, NULL, "eof-1", "blob.bin", 0);
    assert_int_equal(t.open(t.ctx, MIB - 100, 1000), NB_OK);
    assert_int_equal(read_all(&t, out, 1000, 1000, &n), NB_OK);
    assert_int_equal(n, 100);
    assert_memory_equal(out, blob + MIB - 100, 100);
    t.close(t.ctx);
    assert_int_equal(t.open(t.ctx, MIB, 10), NB_OK);
    assert_int_equal(read_all(&t, out, 10, 10, &n), NB_ERR_RANGE);
    t.close(t.ctx);
    assert_int_equal(t.open(t.ctx, MIB + 5000, 10), NB_OK);
    assert_int_equal(read_all(&t, out, 10, 10, &n), NB_ERR_RANGE);
    t.close(t.ctx);
    /* Zero length: nothing asked, nothing read. */
    assert_int_equal(t.open(t.ctx, 5, 0), NB_OK);
    assert_int_equal(read_all(&t, out, 0, 10, &n), NB_OK);
    assert_int_equal(n, 0);
    t.close(t.ctx);
    nb_mqtt_transport_free(m);

    /* In pieces, the same: a piece that would start at the end of the
     * file ends the range there (not NB_ERR_RANGE). */
    static uint8_t big[3 * 16384];
    m = dev_new(&t, port1, NULL, "eof-2", "blob.bin", 16384);
    assert_int_equal(t.open(t.ctx, MIB - 16384, sizeof(big)), NB_OK);
    assert_int_equal(read_all(&t, big, sizeof(big), 4096, &n), NB_OK);
    assert_int_equal(n, 16384);
    assert_memory_equal(big, blob + MIB - 16384, 16384);
    t.close(t.ctx);
    assert_int_equal(t.open(t.ctx, MIB - 16000, sizeof(big)), NB_OK);
    assert_int_equal(read_all(&t, big, sizeof(big), 4096, &n), NB_OK);
    assert_int_equal(n, 16000);
    assert_memory_equal(big, blob + MIB - 16000, 16000);
    t.close(t.ctx);
    nb_mqtt_transport_free(m);
}

/* Unknown artifacts, and names the server refuses although the device's
 * check would let them through to the server (a directory, a symbolic
 * link, a FIFO): all NB_ERR_NOENT. Names with '/' or ".." never leave the
 * device (NB_ERR_INVAL at set up). */
static void not_found(void **state)
{
    static const char *names[] = {"missing.bin", "sub", "link.bin",
                                  "fifo"};
    char path[4096];
    struct nb_transport t;
    uint8_t out[16];
    uint32_t n;
    (void)state;
    snprintf(path, sizeof(path), "%s/sub", dir);
    assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
    snprintf(path, sizeof(path), "%s/link.bin", dir);
    assert_true(symlink("blob.bin", path) == 0 || errno == EEXIST);
    snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_true(mkfifo(path, 0644) == 0 || errno == EEXIST);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char device[32];
        snprintf(device, sizeof(device), "noent-%zu", i);
        struct nb_mqtt_transport *m =
            dev_new(&t, port1, NULL, device, names[i], 0);
        uint64_t t0 = now_ms();
        assert_int_equal(t.open(t.ctx, 0, 16), NB_OK);
        nb_err err = read_all(&t, out, 16, 16, &n);
        if (err != NB_ERR_NOENT)
            fail_msg("%s: %s, not NB_ERR_NOENT", names[i], nb_err_name(err));
        assert_int_equal(n, 0);
        assert_true(now_ms() - t0 < STALL_MS); /* an answer, not a stall */
        t.close(t.ctx);
        nb_mqtt_transport_free(m);
    }
    static const char *bad[] = {"../blob.bin", "a/b", "..", ".hidden", "",
                                "x\"y", "a\\b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct nb_mqtt_config c;
        struct nb_mqtt_transport *m = NULL;
        memset(&c, 0, sizeof(c));
        c.host = "127.0.0.1";
        c.device_id = "bad-name";
        c.artifact = bad[i];
        assert_int_equal(nb_mqtt_transport_new(&m, &c, &t), NB_ERR_INVAL);
        assert_null(m);
    }
}

/* The server's own checks, for devices that do not use our transport:
 * raw requests naming paths outside the directory get NOENT; malformed
 * ones get nothing. */
static int raw_done;
static uint32_t raw_len;
static void raw_on_message(struct mosquitto *mosq, void *obj,
                           const struct mosquitto_message *msg)
{
    (void)mosq;
    (void)obj;
    if (msg->payloadlen >= (int)NB_MQTT_HDR) {
        raw_len = nb_mqtt_get32((const uint8_t *)msg->payload + 8);
        raw_done = 1;
    }
}

static void server_refuses_paths(void **state)
{
    static const char *reqs[] = {
        "{\"artifact\":\"../blob.bin\",\"offset\":0,\"length\":10,\"id\":1}",
        "{\"artifact\":\"sub/../blob.bin\",\"offset\":0,\"length\":10,"
        "\"id\":2}",
        "{\"artifact\":\"\\u002e\\u002e/etc/passwd\",\"offset\":0,"
        "\"length\":10,\"id\":3}",
        "{\"artifact\":\"/etc/passwd\",\"offset\":0,\"length\":10,\"id\":4}",
    };
    static const char *malformed[] = {
        "not json",
        "{\"artifact\":\"blob.bin\\u0000x\",\"offset\":0,\"length\":10,"
        "\"id\":5}",
        "{\"artifact\":\"blob.bin\",\"offset\":-1,\"length\":10,\"id\":6}",
        "{\"artifact\":\"blob.bin\",\"offset\":0,\"length\":10,\"id\":0}",
        "{\"artifact\":\"blob.bin\",\"offset\":0,\"length\":4294967296,"
        "\"id\":7}",
        "{\"artifact\":\"blob.bin\",\"offset\":0,\"offset\":0,\"length\":1,"
        "\"id\":8}",
        "{\"artifact\":7,\"offset\":0,\"length\":10,\"id\":9}",
    };
    (void)state;
    struct mosquitto *c = mosquitto_new(NULL, true, NULL);
    assert_non_null(c);
    mosquitto_message_callback_set(c, raw_on_message);
    assert_int_equal(mosquitto_connect(c, "127.0.0.1", port1, 30), 0);
    assert_int_equal(mosquitto_subscribe(c, NULL, "nobrick/raw-1/data", 1), 0);
    for (int i = 0; i < 20; i++)
        mosquitto_loop(c, 20, 1);
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]) +
                               sizeof(malformed) / sizeof(malformed[0]);
         i++) {
        int is_bad = i >= sizeof(reqs) / sizeof(reqs[0]);
        const char *r =
            is_bad ? malformed[i - sizeof(reqs) / sizeof(reqs[0])] : reqs[i];
        raw_done = 0;
        assert_int_equal(mosquitto_publish(c, NULL, "nobrick/raw-1/req",
                                           (int)strlen(r), r, 1, false),
                         0);
        uint64_t t0 = now_ms();
        while (!raw_done && now_ms() - t0 < (is_bad ? 400u : 3000u))
            mosquitto_loop(c, 50, 1);
        if (is_bad && raw_done)
            fail_msg("malformed request %s was answered", r);
        if (!is_bad && (!raw_done || raw_len != NB_MQTT_CODE_NOENT))
            fail_msg("request %s: %s %08x", r,
                     raw_done ? "answer" : "no answer", raw_len);
    }
    mosquitto_disconnect(c);
    mosquitto_destroy(c);
}

/* The whole chain: a signed 1 MiB package fetched through the engine
 * (nb_download_payload) into a real install on simulated flash. */
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

static struct rig *rig_new(uint32_t payload)
{
    struct rig *r = calloc(1, sizeof(*r));
    struct nb_simflash_geometry g;
    assert_non_null(r);
    memset(&g, 0, sizeof(g));
    g.write_size = 8;
    g.erase_value = 0xFF;
    g.region_count = 1;
    g.regions[0].size = 4096;
    g.regions[0].count = (2 * MIB * 3) / 4096 + 4;
    assert_int_equal(nb_simflash_create_mem(&r->sim, &g), NB_OK);
    nb_simflash_interface(r->sim, &r->flash);
    assert_int_equal(nb_crypto_openssl_init(&r->crypto, &r->oc), NB_OK);
    assert_int_equal(nb_testkeys_init(&r->keys, &r->crypto), NB_OK);
    nb_testpkg_identity(&r->id);
    r->cfg.flash = &r->flash;
    r->cfg.crypto = &r->crypto;
    r->cfg.keystore = &r->keys.keystore;
    r->cfg.identity = &r->id;
    assert_int_equal(
        nb_layout_plan(&r->cfg.layout, &r->flash, NB_LAYOUT_AB, 2 * MIB, 0),
        NB_OK);
    r->cfg.buf = r->buf;
    r->cfg.buf_size = sizeof(r->buf);
    r->cfg.mbuf = r->mbuf;
    r->cfg.mbuf_size = sizeof(r->mbuf);
    assert_int_equal(
        nb_device_provision(&r->dev, &r->cfg, NB_LIFECYCLE_PRODUCTION, 3),
        NB_OK);
    assert_int_equal(nb_testpkg_make(&r->keys, &r->crypto, 0x01020000u, 3,
                                     payload, 42, &r->pkg),
                     NB_OK);
    r->mlen = nb_mqtt_get32(r->pkg.p + 8);
    assert_int_equal(nb_manifest_parse_unverified(&r->crypto,
                                                  r->pkg.p + NB_PKG_HDR_SIZE,
                                                  r->mlen, &r->m),
                     NB_OK);
    return r;
}

static void rig_free(struct rig *r)
{
    nb_buf_free(&r->pkg);
    nb_testkeys_free(&r->keys);
    nb_crypto_openssl_free(&r->crypto, &r->oc);
    nb_simflash_close(r->sim);
    free(r);
}

static nb_err rig_download(struct rig *r, struct nb_transport *t,
                           struct nb_download_stats *ds)
{
    struct nb_install in;
    uint8_t buf[5000]; /* deliberately not a block multiple */
    assert_int_equal(nb_device_open(&r->dev, &r->cfg), NB_OK);
    assert_int_equal(nb_install_begin(&in, &r->dev,
                                      r->pkg.p + NB_PKG_HDR_SIZE, r->mlen,
                                      NB_TARGET_UPDATE),
                     NB_OK);
    memset(ds, 0, sizeof(*ds));
    nb_err err = nb_download_payload(&in, t, r->m.payload_offset, buf,
                                     sizeof(buf), ds);
    return err ? err : nb_install_finish(&in);
}

static void download_into_install(void **state)
{
    struct nb_transport t;
    struct nb_download_stats ds;
    (void)state;
    struct rig *r = rig_new(MIB);
    write_file("fw.nbpkg", r->pkg.p, r->pkg.len);
    struct nb_mqtt_transport *m =
        dev_new(&t, port1, NULL, "install-1", "fw.nbpkg", 0);
    uint64_t t0 = now_ms();
    assert_int_equal(rig_download(r, &t, &ds), NB_OK);
    uint64_t ms = now_ms() - t0;
    print_message("1 MiB payload over MQTT: %llu bytes, %u range(s), "
                  "%llu ms\n",
                  (unsigned long long)ds.bytes, ds.opens,
                  (unsigned long long)ms);
    assert_int_equal(ds.bytes, r->m.payload_size);
    assert_int_equal(ds.opens, 1);
    assert_int_equal(ds.bad_blocks, 0);
    nb_mqtt_transport_free(m);
    rig_free(r);
}

/* A responder that flips a bit once: the engine fetches that block again
 * alone, and the install completes. */
static void corrupted_block_refetched(void **state)
{
    struct nb_transport t;
    struct nb_download_stats ds;
    (void)state;
    struct rig *r = rig_new(200000);
    struct fake *f = fake_start(port1, "flip", F_FLIP_ONCE, r->pkg.p,
                                (uint32_t)r->pkg.len);
    struct nb_mqtt_transport *m =
        dev_new(&t, port1, "flip", "flip-1", "fw.nbpkg", 0);
    assert_int_equal(rig_download(r, &t, &ds), NB_OK);
    assert_int_equal(ds.bad_blocks, 1);
    assert_true(ds.opens >= 2);
    assert_true(ds.bytes <= (uint64_t)r->m.payload_size + 2 * 16384 + 4096);
    nb_mqtt_transport_free(m);
    fake_stop(f);
    rig_free(r);
}

/* ------------------------------------------------------------- failures */

/* No broker: open fails with NB_ERR_IO, at once. */
static void broker_absent(void **state)
{
    struct nb_transport t;
    (void)state;
    struct nb_mqtt_transport *m =
        dev_new(&t, dead_port, NULL, "absent-1", "blob.bin", 0);
    uint64_t t0 = now_ms();
    assert_int_equal(t.open(t.ctx, 0, 100), NB_ERR_IO);
    t.close(t.ctx);
    assert_true(now_ms() - t0 < 2000);
    nb_mqtt_transport_free(m);
}

/* The broker dies in the middle of a range: what arrived is delivered,
 * then NB_ERR_IO (without waiting for the stall timeout); the next open
 * fails too. */
static void broker_dies(void **state)
{
    struct nb_transport t;
    uint8_t *out = malloc(MIB);
    uint32_t n;
    (void)state;
    assert_non_null(out);
    struct fake *f = fake_start(port2, "nobrick", F_PARTIAL, blob, MIB);
    struct nb_mqtt_transport *m =
        dev_new(&t, port2, NULL, "dies-1", "blob.bin", 0);
    assert_int_equal(t.open(t.ctx, 0, MIB), NB_OK);
    /* Three messages come, then nothing: read them. */
    n = 0;
    while (n < 3 * NB_MQTT_MAX_DATA) {
        uint32_t got = 0;
        assert_int_equal(t.read(t.ctx, out + n, MIB - n, &got), NB_OK);
        assert_true(got > 0);
        n += got;
    }
    assert_memory_equal(out, blob, n);
    assert_int_equal(kill(pid2, SIGKILL), 0);
    uint64_t t0 = now_ms();
    uint32_t got = 0;
    assert_int_equal(t.read(t.ctx, out, 100, &got), NB_ERR_IO);
    assert_int_equal(got, 0);
    assert_true(now_ms() - t0 < STALL_MS + 500);
    t.close(t.ctx);
    assert_int_equal(t.open(t.ctx, 0, 100), NB_ERR_IO);
    t.close(t.ctx);
    nb_mqtt_transport_free(m);
    fake_stop(f);
    free(out);
}

/* A server that hears the request and never answers: NB_ERR_IO once the
 * stall timeout has passed, not before, not much later. */
static void responder_silent(void **state)
{
    struct nb_transport t;
    uint8_t out[100];
    uint32_t n;
    (void)state;
    struct fake *f = fake_start(port1, "silent", F_SILENT, NULL, 0);
    struct nb_mqtt_transport *m =
        dev_new(&t, port1, "silent", "silent-1", "blob.bin", 0);
    uint64_t t0 = now_ms();
    assert_int_equal(t.open(t.ctx, 0, 100), NB_OK);
    assert_int_equal(read_all(&t, out, 100, 100, &n), NB_ERR_IO);
    uint64_t ms = now_ms() - t0;
    assert_int_equal(n, 0);
    if (ms < STALL_MS || ms > STALL_MS + 1500)
        fail_msg("stalled after %llu ms (timeout %u)", (unsigned long long)ms,
                 STALL_MS);
    t.close(t.ctx);
    nb_mqtt_transport_free(m);
    fake_stop(f);
}

/* Nobody subscribed to the request topic: the broker says so in its
 * PUBACK, and the transport gives NB_ERR_IO without waiting. */
static void no_server(void **state)
{
    struct nb_transport t;
    uint8_t out[100];
    uint32_t n;
    (void)state;
    struct nb_mqtt_transport *m =
        dev_new(&t, port1, "nobody", "nobody-1", "blob.bin", 0);
    uint64_t t0 = now_ms();
    assert_int_equal(t.open(t.ctx, 0, 100), NB_OK);
    assert_int_equal(read_all(&t, out, 100, 100, &n), NB_ERR_IO);
    assert_true(now_ms() - t0 < STALL_MS);
    t.close(t.ctx);
    nb_mqtt_transport_free(m);
}

/* ---------------------------------------------------- a lying server */

struct lie {
    struct fake *f;
    struct nb_mqtt_transport *m;
    struct nb_transport t;
    unsigned nreq;
};

static void lie_open(struct lie *l, uint32_t off, uint32_t len,
                     uint32_t *id)
{
    assert_int_equal(l->t.open(l->t.ctx, off, len), NB_OK);
    *id = fake_wait(l->f, ++l->nreq, NULL, NULL);
}

/* Scripted wrong answers: whatever they are, the transport delivers
 * nothing but the requested bytes, in order, and never more. */
static void misbehaving_responder(void **state)
{
    struct lie l;
    struct nb_mqtt_stats st;
    uint8_t out[70000];
    uint32_t id, n;
    const char *dev = "liar-1";
    (void)state;
    memset(&l, 0, sizeof(l));
    l.f = fake_start(port1, "liar", F_SILENT, NULL, 0);
    l.m = dev_new(&l.t, port1, "liar", dev, "blob.bin", 0);

    /* One message larger than the request: dropped, NB_ERR_RANGE. */
    lie_open(&l, 0, 1000, &id);
    fake_send(l.f, dev, id, 0, 1500, blob, 1500);
    assert_int_equal(read_all(&l.t, out, 1000, 4096, &n), NB_ERR_RANGE);
    assert_int_equal(n, 0);
    l.t.close(l.t.ctx);
    fake_wait_cancels(l.f, 1); /* closed unfinished: the server is told */

    /* The second message passes the end: the first is delivered, then
     * NB_ERR_RANGE. */
    lie_open(&l, 0, 1000, &id);
    fake_send(l.f, dev, id, 0, 800, blob, 800);
    fake_send(l.f, dev, id, 800, 800, blob + 800, 800);
    assert_int_equal(read_all(&l.t, out, 1000, 4096, &n), NB_ERR_RANGE);
    assert_int_equal(n, 800);
    assert_memory_equal(out, blob, 800);
    l.t.close(l.t.ctx);

    /* All of it, then more: exactly the range is delivered. */
    lie_open(&l, 2000, 1000, &id);
    fake_send(l.f, dev, id, 2000, 1000, blob + 2000, 1000);
    fake_send(l.f, dev, id, 3000, 500, blob + 3000, 500);
    nb_err err = read_all(&l.t, out, 1000, 4096, &n);
    assert_true(err == NB_OK || err == NB_ERR_RANGE);
    assert_int_equal(n, 1000);
    assert_memory_equal(out, blob + 2000, 1000);
    l.t.close(l.t.ctx);

    /* Wrong offsets (a gap, a step back), a wrong length field, a short
     * message, wrong ids: all dropped; the right messages among them are
     * delivered, duplicates once. */
    nb_mqtt_transport_stats(l.m, &st);
    uint32_t bad0 = st.bad, late0 = st.late;
    lie_open(&l, 5000, 1500, &id);
    fake_send(l.f, dev, id, 5100, 500, blob + 5100, 500);    /* gap */
    fake_send(l.f, dev, id, 4900, 500, blob + 4900, 500);    /* back */
    fake_send(l.f, dev, id + 1, 5000, 500, blob + 5000, 500); /* id */
    fake_send(l.f, dev, id - 1, 5000, 500, blob + 5000, 500); /* id */
    fake_send(l.f, dev, id, 5000, 600, blob + 5000, 500);    /* length */
    fake_send(l.f, dev, id, 5000, 500, blob + 5000, 500);    /* good */
    fake_send(l.f, dev, id, 5000, 500, blob + 5000, 500);    /* duplicate */
    {
        char topic[64];
        snprintf(topic, sizeof(topic), "liar/%s/data", dev);
        assert_int_equal(mosquitto_publish(l.f->mosq, NULL, topic, 5, "short",
                                           1, false),
                         0);
    }
    fake_send(l.f, dev, id, 5500, 1000, blob + 5500, 1000); /* good */
    assert_int_equal(read_all(&l.t, out, 1500, 4096, &n), NB_OK);
    assert_int_equal(n, 1500);
    assert_memory_equal(out, blob + 5000, 1500);
    l.t.close(l.t.ctx);
    nb_mqtt_transport_stats(l.m, &st);
    assert_int_equal(st.bad - bad0, 5);
    /* (late also counts the previous case's extra message, when it was
     * read after the snapshot) */
    assert_true(st.late - late0 >= 2);

    /* Only wrong offsets: nothing delivered, NB_ERR_IO after the stall
     * timeout (dropped messages are not progress). */
    lie_open(&l, 5000, 1000, &id);
    for (int i = 0; i < 5; i++)
        fake_send(l.f, dev, id, 5001 + (uint32_t)i, 500, blob, 500);
    assert_int_equal(read_all(&l.t, out, 1000, 4096, &n), NB_ERR_IO);
    assert_int_equal(n, 0);
    l.t.close(l.t.ctx);

    /* A message above the declared maximum packet size: the broker
     * discards it, the device never sees it (and never allocates it). */
    nb_mqtt_transport_stats(l.m, &st);
    bad0 = st.bad;
    late0 = st.late;
    static uint8_t big[65536];
    lie_open(&l, 0, 65536, &id);
    fake_send(l.f, dev, id, 0, 65536, big, 65536);
    assert_int_equal(read_all(&l.t, out, 65536, 65536, &n), NB_ERR_IO);
    assert_int_equal(n, 0);
    l.t.close(l.t.ctx);
    nb_mqtt_transport_stats(l.m, &st);
    assert_int_equal(st.bad, bad0);
    assert_int_equal(st.late, late0);

    /* Data, then a refusal: the data, then NB_ERR_NOENT. */
    lie_open(&l, 0, 1000, &id);
    fake_send(l.f, dev, id, 0, 300, blob, 300);
    fake_send(l.f, dev, id, 0, NB_MQTT_CODE_NOENT, NULL, 0);
    assert_int_equal(read_all(&l.t, out, 1000, 4096, &n), NB_ERR_NOENT);
    assert_int_equal(n, 300);
    l.t.close(l.t.ctx);

    /* Late data for a closed request is dropped; the new one's is not. */
    uint32_t old;
    lie_open(&l, 0, 1000, &old);
    l.t.close(l.t.ctx);
    lie_open(&l, 0, 1000, &id);
    assert_true(id != old);
    fake_send(l.f, dev, old, 0, 1000, blob + 1, 1000);
    fake_send(l.f, dev, id, 0, 1000, blob, 1000);
    assert_int_equal(read_all(&l.t, out, 1000, 4096, &n), NB_OK);
    assert_int_equal(n, 1000);
    assert_memory_equal(out, blob, 1000);
    l.t.close(l.t.ctx);

    nb_mqtt_transport_free(l.m);
    fake_stop(l.f);
}

/* Through the engine, a server that always sends more than asked: the
 * engine never receives a byte past the payload, and the install gets
 * only verified blocks. */
/* TLS to the broker (its certificate checked against the CA given), the
 * responder on the plain listener of the same broker; a wrong CA: no
 * connection, NB_ERR_IO. */
static void tls(void **state)
{
    struct nb_transport t;
    struct nb_mqtt_config c;
    struct nb_mqtt_transport *m = NULL;
    uint8_t out[50000];
    uint32_t n;
    (void)state;
    for (int wrong = 0; wrong < 2; wrong++) {
        memset(&c, 0, sizeof(c));
        c.host = "127.0.0.1";
        c.port = tls_port;
        c.device_id = wrong ? "tls-2" : "tls-1";
        c.artifact = "blob.bin";
        c.cafile = wrong ? other_ca : ca;
        c.connect_timeout_ms = 3000;
        c.stall_timeout_ms = STALL_MS;
        assert_int_equal(nb_mqtt_transport_new(&m, &c, &t), NB_OK);
        if (wrong) {
            assert_int_equal(t.open(t.ctx, 0, 100), NB_ERR_IO);
        } else {
            assert_int_equal(t.open(t.ctx, 4321, sizeof(out)), NB_OK);
            assert_int_equal(read_all(&t, out, sizeof(out), 10000, &n), NB_OK);
            assert_int_equal(n, sizeof(out));
            assert_memory_equal(out, blob + 4321, sizeof(out));
        }
        t.close(t.ctx);
        nb_mqtt_transport_free(m);
    }
}

/* User name and password: the right ones work; a wrong password is
 * NB_ERR_DENIED at open, and so is a request the broker's ACL refuses
 * (its PUBACK says so), at read. A user that may not read its data topic
 * is granted the subscription by mosquitto, which then delivers nothing:
 * that one can only stall (NB_ERR_IO). */
static void credentials(void **state)
{
    static const struct {
        const char *user, *pass;
        nb_err open, read;
    } cases[] = {
        {"dev", "secret", NB_OK, NB_OK},
        {"dev", "wrong", NB_ERR_DENIED, NB_OK},
        {"noreq", "secret", NB_OK, NB_ERR_DENIED},
        {"nodata", "secret", NB_OK, NB_ERR_IO},
    };
    struct nb_transport t;
    struct nb_mqtt_config c;
    struct nb_mqtt_transport *m = NULL;
    uint8_t out[1000];
    uint32_t n;
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&c, 0, sizeof(c));
        c.host = "127.0.0.1";
        c.port = auth_port;
        c.device_id = "auth-1";
        c.artifact = "blob.bin";
        c.username = cases[i].user;
        c.password = cases[i].pass;
        c.connect_timeout_ms = 3000;
        c.stall_timeout_ms = STALL_MS;
        assert_int_equal(nb_mqtt_transport_new(&m, &c, &t), NB_OK);
        nb_err err = t.open(t.ctx, 10, sizeof(out));
        if (err != cases[i].open)
            fail_msg("%s/%s: open %s", cases[i].user, cases[i].pass,
                     nb_err_name(err));
        if (!err) {
            err = read_all(&t, out, sizeof(out), 512, &n);
            if (err != cases[i].read)
                fail_msg("%s: read %s", cases[i].user, nb_err_name(err));
            assert_int_equal(n, err ? 0 : sizeof(out));
            if (!err)
                assert_memory_equal(out, blob + 10, sizeof(out));
        }
        t.close(t.ctx);
        nb_mqtt_transport_free(m);
    }
}

static void engine_too_much(void **state)
{
    struct nb_transport t;
    struct nb_download_stats ds;
    (void)state;
    struct rig *r = rig_new(100000);
    struct fake *f = fake_start(port1, "extra", F_EXTRA, r->pkg.p,
                                (uint32_t)r->pkg.len);
    struct nb_mqtt_transport *m =
        dev_new(&t, port1, "extra", "extra-1", "fw.nbpkg", 0);
    nb_err err = rig_download(r, &t, &ds);
    assert_true(err == NB_OK || err == NB_ERR_RANGE);
    assert_true(ds.bytes <= r->m.payload_size);
    nb_mqtt_transport_free(m);
    fake_stop(f);
    rig_free(r);
}

static int env_int(const char *name)
{
    const char *v = getenv(name);
    if (!v) {
        fprintf(stderr, "mqtt_transport_test: %s not set (run "
                        "tests/test_transport_mqtt.sh)\n", name);
        exit(2);
    }
    return atoi(v);
}

int main(void)
{
    port1 = env_int("NB_MQTT_PORT");
    port2 = env_int("NB_MQTT_PORT2");
    pid2 = (pid_t)env_int("NB_MQTT_PID2");
    dead_port = env_int("NB_MQTT_DEAD_PORT");
    tls_port = env_int("NB_MQTT_TLS_PORT");
    auth_port = env_int("NB_MQTT_AUTH_PORT");
    dir = getenv("NB_MQTT_DIR");
    ca = getenv("NB_MQTT_CA");
    other_ca = getenv("NB_MQTT_OTHER_CA");
    if (!dir || !ca || !other_ca)
        return 2;
    mosquitto_lib_init();
    blob = malloc(MIB);
    if (!blob)
        return 2;
    nb_testpkg_payload(blob, MIB, 7); /* seeded: a failure replays */
    char path[4096];
    snprintf(path, sizeof(path), "%s/blob.bin", dir);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(blob, 1, MIB, f) != MIB || fclose(f))
        return 2;

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ranges),
        cmocka_unit_test(abandon_range),
        cmocka_unit_test(end_of_file),
        cmocka_unit_test(not_found),
        cmocka_unit_test(server_refuses_paths),
        cmocka_unit_test(download_into_install),
        cmocka_unit_test(corrupted_block_refetched),
        cmocka_unit_test(broker_absent),
        cmocka_unit_test(broker_dies),
        cmocka_unit_test(responder_silent),
        cmocka_unit_test(no_server),
        cmocka_unit_test(misbehaving_responder),
        cmocka_unit_test(engine_too_much),
        cmocka_unit_test(tls),
        cmocka_unit_test(credentials),
    };
    /* NB_MQTT_ONLY=pattern runs the matching tests only (the script's
     * second run, after a broker restart). */
    if (getenv("NB_MQTT_ONLY"))
        cmocka_set_test_filter(getenv("NB_MQTT_ONLY"));
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(blob);
    mosquitto_lib_cleanup();
    return rc;
}
