/* nb_mqtt_serve.c - the serving side of the MQTT block transport
 * (libmosquitto, MQTT v5, one thread); see nb_mqtt_serve.h. */
#include "nb_mqtt_serve.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#define HOST_MAX 255u
#define CLIENT_ID_MAX 64u
#define CONNECT_TIMEOUT_MS 10000u
#define RECONNECT_MS 1000u

enum conn_state { DOWN, CONNECTING, UP };

struct stream {
    int fd; /* -1: the slot is free */
    char device[NB_MQTT_ID_MAX + 1];
    uint32_t id;
    uint32_t next, end; /* next offset to send; end of what we send */
    int marker;         /* a zero-length end message follows the data */
};

struct nb_mqtt_serve {
    struct mosquitto *mosq;
    int dirfd;
    char host[HOST_MAX + 1];
    int port;
    uint16_t keepalive;
    char root[NB_MQTT_ROOT_MAX + 1];
    char sub_topic[NB_MQTT_ROOT_MAX + 7];
    uint32_t max_packet;
    int log_level;

    enum conn_state state;
    int sub_mid;
    uint64_t attempt_ms; /* last connection attempt */

    struct stream *streams;
    unsigned nstreams, rr;
    unsigned window, inflight;
    struct nb_mqtt_serve_stats st;
    uint8_t msg[NB_MQTT_HDR + NB_MQTT_MAX_DATA];
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Log to stderr when `level` is enabled (checked before formatting). */
#define SLOG(s, level, ...)                                                 \
    do {                                                                    \
        if ((s)->log_level >= (level))                                      \
            slog(__VA_ARGS__);                                              \
    } while (0)

static void slog(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("nb_mqtt_serve: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* -------------------------------------------------------------- streams */

static void stream_end(struct stream *st)
{
    if (st->fd >= 0)
        close(st->fd);
    st->fd = -1;
}

static void drop_all(struct nb_mqtt_serve *s)
{
    for (unsigned i = 0; i < s->nstreams; i++)
        stream_end(&s->streams[i]);
    s->inflight = 0;
}

static struct stream *find(struct nb_mqtt_serve *s, const char *device)
{
    for (unsigned i = 0; i < s->nstreams; i++)
        if (s->streams[i].fd >= 0 && strcmp(s->streams[i].device, device) == 0)
            return &s->streams[i];
    return NULL;
}

static struct stream *free_slot(struct nb_mqtt_serve *s)
{
    for (unsigned i = 0; i < s->nstreams; i++)
        if (s->streams[i].fd < 0)
            return &s->streams[i];
    return NULL;
}

/* Publish one data message (header + n bytes already in s->msg + 12) to
 * the device. 0 on success. */
static int publish(struct nb_mqtt_serve *s, const char *device, uint32_t id,
                   uint32_t off, uint32_t len, uint32_t n)
{
    char topic[NB_MQTT_ROOT_MAX + NB_MQTT_ID_MAX + 8];
    snprintf(topic, sizeof(topic), "%s/%s/data", s->root, device);
    nb_mqtt_put32(s->msg, id);
    nb_mqtt_put32(s->msg + 4, off);
    nb_mqtt_put32(s->msg + 8, len);
    int rc = mosquitto_publish_v5(s->mosq, NULL, topic, (int)(NB_MQTT_HDR + n),
                                  s->msg, 1, false, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        SLOG(s, 1, "publish to %s: %s", topic, mosquitto_strerror(rc));
        if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST)
            s->state = DOWN;
        return -1;
    }
    s->inflight++;
    s->st.messages++;
    s->st.bytes += n;
    return 0;
}

static void reply_code(struct nb_mqtt_serve *s, const char *device,
                       uint32_t id, uint32_t off, uint32_t code)
{
    s->st.refused++;
    publish(s, device, id, off, code, 0);
}

/* A uint32 from a JSON integer in [min, UINT32_MAX]; 0 on success. */
static int get_u32(json_t *obj, const char *key, uint32_t min, uint32_t *v)
{
    json_t *j = json_object_get(obj, key);
    if (!json_is_integer(j))
        return -1;
    json_int_t x = json_integer_value(j);
    if (x < (json_int_t)min || x > (json_int_t)UINT32_MAX)
        return -1;
    *v = (uint32_t)x;
    return 0;
}

static void handle_request(struct nb_mqtt_serve *s, const char *device,
                           const void *payload, int len)
{
    json_error_t jerr;
    json_t *req = NULL;
    uint32_t off, n, id;
    if (len <= 0 || (unsigned)len > NB_MQTT_REQ_MAX ||
        !(req = json_loadb(payload, (size_t)len, JSON_REJECT_DUPLICATES,
                           &jerr)) ||
        !json_is_object(req) || get_u32(req, "offset", 0, &off) ||
        get_u32(req, "length", 0, &n) || get_u32(req, "id", 1, &id) ||
        !json_is_string(json_object_get(req, "artifact"))) {
        s->st.malformed++;
        SLOG(s, 1, "%s: malformed request dropped", device);
        json_decref(req);
        return;
    }
    json_t *a = json_object_get(req, "artifact");
    const char *name = json_string_value(a);
    size_t name_len = json_string_length(a);
    s->st.requests++;

    /* Any request ends the device's current stream. */
    struct stream *st = find(s, device);
    if (st) {
        s->st.replaced++;
        stream_end(st);
    }
    if (n == 0)
        goto out; /* a cancel */

    /* The name (no embedded NUL: strlen must agree), then the file: a
     * regular file in the directory, never through a symbolic link. */
    if (strlen(name) != name_len || !nb_mqtt_artifact_ok(name, name_len)) {
        SLOG(s, 2, "%s: request %lu: bad artifact name", device,
             (unsigned long)id);
        reply_code(s, device, id, off, NB_MQTT_CODE_NOENT);
        goto out;
    }
    SLOG(s, 2, "%s: request %lu: %s [%lu, +%lu)", device, (unsigned long)id,
         name, (unsigned long)off, (unsigned long)n);
    int fd = openat(s->dirfd, name,
                    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        if (fd >= 0)
            close(fd);
        reply_code(s, device, id, off, NB_MQTT_CODE_NOENT);
        goto out;
    }
    uint64_t size = (uint64_t)sb.st_size;
    uint64_t want_end = (uint64_t)off + n;
    if (off >= size || want_end > (uint64_t)UINT32_MAX + 1) {
        close(fd);
        reply_code(s, device, id, off, NB_MQTT_CODE_RANGE);
        goto out;
    }
    st = free_slot(s);
    if (!st) {
        close(fd);
        reply_code(s, device, id, off, NB_MQTT_CODE_BUSY);
        goto out;
    }
    st->fd = fd;
    snprintf(st->device, sizeof(st->device), "%s", device);
    st->id = id;
    st->next = off;
    st->end = (uint32_t)(want_end < size ? want_end : size);
    st->marker = want_end > size;
out:
    json_decref(req);
}

/* Read exactly n bytes at `off`, or fewer at the end of the file. */
static ssize_t pread_full(int fd, uint8_t *p, uint32_t n, uint32_t off)
{
    uint32_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, p + got, n - got, (off_t)off + got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (uint32_t)r;
    }
    return (ssize_t)got;
}

/* Send the next message of a stream. */
static void send_next(struct nb_mqtt_serve *s, struct stream *st)
{
    if (st->next < st->end) {
        uint32_t n = st->end - st->next < NB_MQTT_MAX_DATA
                         ? st->end - st->next
                         : NB_MQTT_MAX_DATA;
        ssize_t r = pread_full(st->fd, s->msg + NB_MQTT_HDR, n, st->next);
        if (r < 0) {
            SLOG(s, 1, "%s: read error: %s", st->device, strerror(errno));
            reply_code(s, st->device, st->id, st->next, NB_MQTT_CODE_BUSY);
            stream_end(st);
            return;
        }
        if ((uint32_t)r < n) {
            /* The file shrank since the request: end where it ends. */
            st->end = st->next + (uint32_t)r;
            st->marker = 1;
            n = (uint32_t)r;
        }
        if (n) {
            if (publish(s, st->device, st->id, st->next, n, n)) {
                stream_end(st);
                return;
            }
            st->next += n;
        }
    } else if (st->marker) {
        st->marker = 0;
        if (publish(s, st->device, st->id, st->next, 0, 0)) {
            stream_end(st);
            return;
        }
    }
    if (st->next == st->end && !st->marker) {
        s->st.completed++;
        stream_end(st);
    }
}

/* Round robin over the streams, one message each, while the window lets. */
static int can_send(const struct nb_mqtt_serve *s)
{
    return s->state == UP && s->inflight < s->window &&
           nb_mqtt_serve_active(s) > 0;
}

static void pump(struct nb_mqtt_serve *s)
{
    while (can_send(s)) {
        for (unsigned k = 0; k < s->nstreams && can_send(s); k++) {
            struct stream *st = &s->streams[s->rr];
            s->rr = (s->rr + 1) % s->nstreams;
            if (st->fd >= 0)
                send_next(s, st);
        }
    }
}

/* ------------------------------------------------------------ callbacks */

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    struct nb_mqtt_serve *s = obj;
    (void)flags;
    (void)props;
    if (rc != 0) {
        SLOG(s, 1, "broker refused the connection: %s",
             mosquitto_reason_string(rc));
        return;
    }
    s->st.connects++;
    if (mosquitto_subscribe_v5(mosq, &s->sub_mid, s->sub_topic, 1, 0, NULL) !=
        MOSQ_ERR_SUCCESS)
        SLOG(s, 1, "cannot subscribe to %s", s->sub_topic);
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid,
                         int qos_count, const int *granted,
                         const mosquitto_property *props)
{
    struct nb_mqtt_serve *s = obj;
    (void)mosq;
    (void)props;
    if (mid != s->sub_mid)
        return;
    if (qos_count < 1 || granted[0] >= 0x80) {
        SLOG(s, 1, "broker refused the subscription to %s", s->sub_topic);
        return;
    }
    s->state = UP;
    SLOG(s, 2, "serving %s", s->sub_topic);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc,
                          const mosquitto_property *props)
{
    struct nb_mqtt_serve *s = obj;
    (void)mosq;
    (void)props;
    if (s->state != DOWN)
        SLOG(s, 1, "disconnected (%d)", rc);
    s->state = DOWN;
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason,
                       const mosquitto_property *props)
{
    struct nb_mqtt_serve *s = obj;
    (void)mosq;
    (void)mid;
    (void)props;
    (void)reason; /* "no matching subscribers": the device went away */
    if (s->inflight)
        s->inflight--;
}

static void on_message(struct mosquitto *mosq, void *obj,
                       const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    struct nb_mqtt_serve *s = obj;
    (void)mosq;
    (void)props;
    /* {root}/{device}/req */
    size_t rl = strlen(s->root), tl = msg->topic ? strlen(msg->topic) : 0;
    if (tl < rl + 6 || memcmp(msg->topic, s->root, rl) != 0 ||
        msg->topic[rl] != '/' || strcmp(msg->topic + tl - 4, "/req") != 0)
        return;
    char device[NB_MQTT_ID_MAX + 1];
    size_t dl = tl - rl - 5;
    if (!nb_mqtt_level_ok(msg->topic + rl + 1, dl, NB_MQTT_ID_MAX, 0)) {
        s->st.malformed++;
        return;
    }
    memcpy(device, msg->topic + rl + 1, dl);
    device[dl] = 0;
    handle_request(s, device, msg->payload, msg->payloadlen);
}

/* ----------------------------------------------------------- connection */

static nb_err try_connect(struct nb_mqtt_serve *s)
{
    mosquitto_property *props = NULL;
    s->attempt_ms = now_ms();
    drop_all(s);
    if (mosquitto_property_add_int32(&props, MQTT_PROP_MAXIMUM_PACKET_SIZE,
                                     s->max_packet) != MOSQ_ERR_SUCCESS)
        return NB_ERR_IO;
    int rc = mosquitto_connect_bind_v5(s->mosq, s->host, s->port, s->keepalive,
                                       NULL, props);
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS) {
        SLOG(s, 1, "cannot connect to %s:%d: %s", s->host, s->port,
             mosquitto_strerror(rc));
        s->state = DOWN;
        return NB_ERR_IO;
    }
    s->state = CONNECTING;
    return NB_OK;
}

nb_err nb_mqtt_serve_step(struct nb_mqtt_serve *s, int timeout_ms)
{
    if (s->state == DOWN) {
        uint64_t since = now_ms() - s->attempt_ms;
        if (since < RECONNECT_MS) {
            uint64_t wait = RECONNECT_MS - since;
            if (timeout_ms >= 0 && wait > (uint64_t)timeout_ms)
                wait = (uint64_t)timeout_ms;
            struct timespec ts = {(time_t)(wait / 1000),
                                  (long)(wait % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            return NB_ERR_IO;
        }
        if (try_connect(s))
            return NB_ERR_IO;
    }
    if (s->state == CONNECTING &&
        now_ms() - s->attempt_ms > CONNECT_TIMEOUT_MS) {
        SLOG(s, 1, "no CONNACK/SUBACK from %s:%d", s->host, s->port);
        mosquitto_disconnect_v5(s->mosq, 0, NULL);
        s->state = DOWN;
        return NB_ERR_IO;
    }
    int rc = mosquitto_loop(s->mosq, can_send(s) ? 0 : timeout_ms, 1);
    if (rc != MOSQ_ERR_SUCCESS || s->state == DOWN) {
        s->state = DOWN;
        drop_all(s);
        return NB_ERR_IO;
    }
    pump(s);
    return NB_OK;
}

int nb_mqtt_serve_connected(const struct nb_mqtt_serve *s)
{
    return s->state == UP;
}

unsigned nb_mqtt_serve_active(const struct nb_mqtt_serve *s)
{
    unsigned n = 0;
    for (unsigned i = 0; i < s->nstreams; i++)
        n += s->streams[i].fd >= 0;
    return n;
}

void nb_mqtt_serve_stats(const struct nb_mqtt_serve *s,
                         struct nb_mqtt_serve_stats *st)
{
    *st = s->st;
}

nb_err nb_mqtt_serve_new(struct nb_mqtt_serve **out,
                         const struct nb_mqtt_serve_config *cfg)
{
    if (!out || !cfg)
        return NB_ERR_INVAL;
    *out = NULL;
    const char *root = cfg->topic_root ? cfg->topic_root : NB_MQTT_ROOT_DEFAULT;
    if (!cfg->host || !cfg->host[0] || strlen(cfg->host) > HOST_MAX ||
        cfg->port < 0 || cfg->port > 65535 || !cfg->dir ||
        !nb_mqtt_level_ok(root, strlen(root), NB_MQTT_ROOT_MAX, 1) ||
        (cfg->client_id && (!cfg->client_id[0] ||
                            strlen(cfg->client_id) > CLIENT_ID_MAX)) ||
        (cfg->keepalive_s && cfg->keepalive_s < 5) ||
        (cfg->password && !cfg->username) || (cfg->certfile && !cfg->cafile) ||
        (!cfg->certfile != !cfg->keyfile) || cfg->max_streams > 65536 ||
        cfg->window > 65535)
        return NB_ERR_INVAL;

    struct nb_mqtt_serve *s = calloc(1, sizeof(*s));
    if (!s)
        return NB_ERR_NOMEM;
    s->nstreams = cfg->max_streams ? cfg->max_streams : 64;
    s->streams = calloc(s->nstreams, sizeof(*s->streams));
    if (!s->streams) {
        free(s);
        return NB_ERR_NOMEM;
    }
    for (unsigned i = 0; i < s->nstreams; i++)
        s->streams[i].fd = -1;
    s->dirfd = open(cfg->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        free(s->streams);
        free(s);
        return NB_ERR_NOENT;
    }
    snprintf(s->host, sizeof(s->host), "%s", cfg->host);
    s->port = cfg->port ? cfg->port : cfg->cafile ? 8883 : 1883;
    s->keepalive = cfg->keepalive_s ? cfg->keepalive_s : 30;
    snprintf(s->root, sizeof(s->root), "%s", root);
    snprintf(s->sub_topic, sizeof(s->sub_topic), "%s/+/req", root);
    s->window = cfg->window ? cfg->window : 16;
    s->log_level = cfg->log_level;
    /* A request message: fixed header, topic, packet id, properties and
     * slack, a request. Larger ones are discarded by the broker. */
    s->max_packet = 5 + 2 + (uint32_t)strlen(root) + NB_MQTT_ID_MAX + 5 + 2 +
                    4 + 256 + NB_MQTT_REQ_MAX;

    mosquitto_lib_init(); /* reference counted in libmosquitto 2.0 */
    char cid[CLIENT_ID_MAX + 1];
    if (cfg->client_id)
        snprintf(cid, sizeof(cid), "%s", cfg->client_id);
    else
        snprintf(cid, sizeof(cid), "nobrick-serve-%ld", (long)getpid());
    s->mosq = mosquitto_new(cid, true, s);
    nb_err err = NB_ERR_NOMEM;
    if (!s->mosq)
        goto fail;
    err = NB_ERR_INVAL;
    if (mosquitto_int_option(s->mosq, MOSQ_OPT_PROTOCOL_VERSION,
                             MQTT_PROTOCOL_V5) != MOSQ_ERR_SUCCESS)
        goto fail;
    if (cfg->username &&
        mosquitto_username_pw_set(s->mosq, cfg->username, cfg->password) !=
            MOSQ_ERR_SUCCESS)
        goto fail;
    if (cfg->cafile &&
        mosquitto_tls_set(s->mosq, cfg->cafile, NULL, cfg->certfile,
                          cfg->keyfile, NULL) != MOSQ_ERR_SUCCESS)
        goto fail;
    mosquitto_connect_v5_callback_set(s->mosq, on_connect);
    mosquitto_subscribe_v5_callback_set(s->mosq, on_subscribe);
    mosquitto_disconnect_v5_callback_set(s->mosq, on_disconnect);
    mosquitto_publish_v5_callback_set(s->mosq, on_publish);
    mosquitto_message_v5_callback_set(s->mosq, on_message);
    *out = s;

    /* Connect now and wait for the subscription, so that a caller that
     * gets NB_OK knows requests are being heard. */
    if (try_connect(s))
        return NB_ERR_IO;
    while (s->state == CONNECTING) {
        if (nb_mqtt_serve_step(s, 100) && s->state == DOWN)
            return NB_ERR_IO;
    }
    return s->state == UP ? NB_OK : NB_ERR_IO;
fail:
    nb_mqtt_serve_free(s);
    return err;
}

void nb_mqtt_serve_free(struct nb_mqtt_serve *s)
{
    if (!s)
        return;
    drop_all(s);
    if (s->mosq) {
        if (s->state != DOWN)
            mosquitto_disconnect_v5(s->mosq, 0, NULL);
        mosquitto_destroy(s->mosq);
    }
    mosquitto_lib_cleanup();
    close(s->dirfd);
    free(s->streams);
    free(s);
}
