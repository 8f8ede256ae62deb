/* nb_transport_mqtt.c - the MQTT transport (libmosquitto, MQTT v5, no
 * background thread); see nb_transport_mqtt.h and docs/device-api.md. */
#include "nb_transport_mqtt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#define HOST_MAX 255u
#define TOPIC_MAX (NB_MQTT_ROOT_MAX + 1 + NB_MQTT_ID_MAX + 5)
#define LOOP_SLICE_MS 1000u

struct nb_mqtt_transport {
    struct mosquitto *mosq;
    char host[HOST_MAX + 1];
    int port;
    char artifact[NB_MQTT_ARTIFACT_MAX + 1];
    char req_topic[TOPIC_MAX + 1];
    char data_topic[TOPIC_MAX + 1];
    uint32_t connect_ms, stall_ms, req_max, cap;
    uint16_t keepalive;
    uint32_t max_packet; /* declared to the broker in CONNECT */

    /* connection: set by the callbacks */
    int connected;  /* CONNACK accepted */
    int subscribed; /* SUBACK granted */
    int sub_mid;
    nb_err conn_err; /* a refusal seen in CONNACK or SUBACK */

    /* the open range: [start, start + len) of the artifact */
    int open;
    uint32_t start, len;
    uint32_t accepted;  /* bytes accepted into the buffer (from start) */
    uint32_t req_id;    /* id of the current piece; 0: none */
    uint32_t req_end;   /* end of the current piece (from start) */
    int req_mid;        /* message id of its publish */
    int ended;          /* the server ended the range early */
    nb_err err;         /* ends the range once the buffer is drained */
    uint64_t progress_ms; /* last request or accepted data */
    uint32_t next_id;

    uint8_t *buf; /* ring buffer of cap bytes */
    uint32_t head, count;
    struct nb_mqtt_stats st;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------ callbacks */

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    struct nb_mqtt_transport *m = obj;
    (void)flags;
    (void)props;
    if (rc != 0) {
        /* Refused: bad user name or password, not authorized, banned,
         * bad authentication method -> DENIED; anything else (server
         * unavailable, busy, quota) is worth retrying later. */
        m->conn_err = (rc == MQTT_RC_BAD_USERNAME_OR_PASSWORD ||
                       rc == MQTT_RC_NOT_AUTHORIZED ||
                       rc == MQTT_RC_BANNED ||
                       rc == MQTT_RC_BAD_AUTHENTICATION_METHOD)
                          ? NB_ERR_DENIED
                          : NB_ERR_IO;
        return;
    }
    m->connected = 1;
    /* Queued here, sent when the callback returns. */
    if (mosquitto_subscribe_v5(mosq, &m->sub_mid, m->data_topic, 1, 0,
                               NULL) != MOSQ_ERR_SUCCESS)
        m->conn_err = NB_ERR_IO;
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid,
                         int qos_count, const int *granted,
                         const mosquitto_property *props)
{
    struct nb_mqtt_transport *m = obj;
    (void)mosq;
    (void)props;
    if (mid != m->sub_mid)
        return;
    if (qos_count < 1 || granted[0] >= 0x80) {
        m->conn_err = NB_ERR_DENIED; /* the broker refused the topic */
        return;
    }
    m->subscribed = 1;
    m->st.connects++;
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc,
                          const mosquitto_property *props)
{
    struct nb_mqtt_transport *m = obj;
    (void)mosq;
    (void)rc;
    (void)props;
    m->connected = 0;
    m->subscribed = 0;
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason,
                       const mosquitto_property *props)
{
    struct nb_mqtt_transport *m = obj;
    (void)mosq;
    (void)props;
    if (!m->open || mid != m->req_mid || m->err)
        return;
    /* The broker's PUBACK for our request. "No matching subscribers":
     * no server listens, so waiting for the stall timeout is pointless. */
    if (reason == MQTT_RC_NO_MATCHING_SUBSCRIBERS)
        m->err = NB_ERR_IO;
    else if (reason == MQTT_RC_NOT_AUTHORIZED)
        m->err = NB_ERR_DENIED;
    else if (reason >= 0x80)
        m->err = NB_ERR_IO;
}

/* Copy data into the ring buffer; the caller checked it fits. */
static void ring_put(struct nb_mqtt_transport *m, const uint8_t *p, uint32_t n)
{
    uint32_t tail = (m->head + m->count) % m->cap;
    uint32_t first = m->cap - tail < n ? m->cap - tail : n;
    memcpy(m->buf + tail, p, first);
    memcpy(m->buf, p + first, n - first);
    m->count += n;
}

static void on_message(struct mosquitto *mosq, void *obj,
                       const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    struct nb_mqtt_transport *m = obj;
    (void)mosq;
    (void)props;
    if (!msg->topic || strcmp(msg->topic, m->data_topic) != 0 ||
        msg->payloadlen < (int)NB_MQTT_HDR) {
        m->st.bad++;
        return;
    }
    const uint8_t *p = msg->payload;
    uint32_t n = (uint32_t)msg->payloadlen - NB_MQTT_HDR;
    uint32_t id = nb_mqtt_get32(p), off = nb_mqtt_get32(p + 4),
             len = nb_mqtt_get32(p + 8);
    if (!m->open || m->req_id == 0 || id != m->req_id) {
        m->st.late++; /* a closed, earlier or foreign request */
        return;
    }
    if (m->err || m->ended) {
        m->st.late++; /* this range is over already */
        return;
    }
    if (len == NB_MQTT_CODE_RANGE && m->accepted > 0) {
        /* A later piece starts at the end of the file: the range ends
         * there, as it would have with one request for all of it. */
        m->ended = 1;
        return;
    }
    if (len >= NB_MQTT_CODE_MIN) {
        m->err = len == NB_MQTT_CODE_NOENT   ? NB_ERR_NOENT
                 : len == NB_MQTT_CODE_RANGE ? NB_ERR_RANGE
                                             : NB_ERR_IO;
        return;
    }
    uint32_t expect = m->start + m->accepted;
    if (len != n || len > NB_MQTT_MAX_DATA || off != expect) {
        m->st.bad++; /* malformed, duplicate or out of order */
        return;
    }
    if (len == 0) {
        m->ended = 1; /* the server has no more: the file ends here */
        return;
    }
    if (len > m->req_end - m->accepted) {
        /* More than asked for: never deliver it; the range is spoilt. */
        m->st.overrun++;
        m->err = NB_ERR_RANGE;
        return;
    }
    if (len > m->cap - m->count) {
        m->err = NB_ERR_IO; /* cannot happen with cap >= 4 messages */
        return;
    }
    ring_put(m, p + NB_MQTT_HDR, len);
    m->accepted += len;
    m->st.bytes += len;
    m->progress_ms = now_ms();
}

/* ----------------------------------------------------------- connection */

static void lost(struct nb_mqtt_transport *m)
{
    m->connected = 0;
    m->subscribed = 0;
}

/* Connected and subscribed, or an error. An existing connection is
 * checked first (a zero-timeout loop reads what the broker sent while we
 * were idle: a close, or late data, which is dropped). */
static nb_err ensure_connected(struct nb_mqtt_transport *m)
{
    if (m->subscribed) {
        if (mosquitto_loop(m->mosq, 0, 1) == MOSQ_ERR_SUCCESS && m->subscribed)
            return NB_OK;
        lost(m);
    }
    mosquitto_property *props = NULL;
    if (mosquitto_property_add_int32(&props, MQTT_PROP_MAXIMUM_PACKET_SIZE,
                                     m->max_packet) != MOSQ_ERR_SUCCESS)
        return NB_ERR_IO;
    m->conn_err = NB_OK;
    int rc = mosquitto_connect_bind_v5(m->mosq, m->host, m->port, m->keepalive,
                                       NULL, props);
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS)
        return rc == MOSQ_ERR_INVAL ? NB_ERR_INVAL : NB_ERR_IO;
    uint64_t deadline = now_ms() + m->connect_ms;
    while (!m->subscribed) {
        uint64_t now = now_ms();
        if (m->conn_err || now >= deadline) {
            nb_err err = m->conn_err ? m->conn_err : NB_ERR_IO;
            mosquitto_disconnect_v5(m->mosq, 0, NULL);
            lost(m);
            return err;
        }
        uint64_t wait = deadline - now < LOOP_SLICE_MS ? deadline - now
                                                       : LOOP_SLICE_MS;
        rc = mosquitto_loop(m->mosq, (int)wait, 1);
        if (rc != MOSQ_ERR_SUCCESS && !m->conn_err) {
            lost(m);
            return NB_ERR_IO;
        }
    }
    return NB_OK;
}

/* Publish a request for `n` bytes from the range's current position
 * under a new id (n = 0: a cancel, which the server does not answer). */
static nb_err publish_request(struct nb_mqtt_transport *m, uint32_t n)
{
    char json[NB_MQTT_REQ_MAX];
    if (++m->next_id == 0)
        m->next_id = 1;
    int k = snprintf(json, sizeof(json),
                     "{\"artifact\":\"%s\",\"offset\":%lu,\"length\":%lu,"
                     "\"id\":%lu}",
                     m->artifact, (unsigned long)(m->start + m->accepted),
                     (unsigned long)n, (unsigned long)m->next_id);
    if (k < 0 || (size_t)k >= sizeof(json))
        return NB_ERR_INVAL;
    int mid = 0;
    int rc = mosquitto_publish_v5(m->mosq, &mid, m->req_topic, k, json, 1,
                                  false, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        lost(m);
        return NB_ERR_IO;
    }
    if (n) {
        m->req_id = m->next_id;
        m->req_end = m->accepted + n;
        m->req_mid = mid;
        m->st.requests++;
        m->progress_ms = now_ms();
    }
    return NB_OK;
}

/* Publish the request for the next piece of the range. */
static nb_err request_next(struct nb_mqtt_transport *m)
{
    uint32_t left = m->len - m->accepted;
    return publish_request(m, left < m->req_max ? left : m->req_max);
}

/* ------------------------------------------------------ the transport */

static void mq_close(void *ctx)
{
    struct nb_mqtt_transport *m = ctx;
    /* A piece still coming: tell the server to stop sending it (best
     * effort; a new request would replace it anyway). */
    if (m->open && m->req_id && m->accepted < m->req_end && !m->ended &&
        m->subscribed)
        (void)publish_request(m, 0);
    /* Forget the request: whatever still arrives for it is dropped. */
    m->open = 0;
    m->req_id = 0;
    m->head = m->count = 0;
    m->err = NB_OK;
    m->ended = 0;
}

static nb_err mq_open(void *ctx, uint32_t offset, uint32_t len)
{
    struct nb_mqtt_transport *m = ctx;
    mq_close(m);
    if ((uint64_t)offset + len > UINT32_MAX)
        return NB_ERR_RANGE;
    nb_err err = ensure_connected(m);
    if (err)
        return err;
    m->open = 1;
    m->start = offset;
    m->len = len;
    m->accepted = 0;
    m->req_end = 0;
    if (len == 0)
        return NB_OK; /* nothing to ask for */
    err = request_next(m);
    if (err)
        mq_close(m);
    return err;
}

static nb_err mq_read(void *ctx, uint8_t *buf, uint32_t cap, uint32_t *got)
{
    struct nb_mqtt_transport *m = ctx;
    *got = 0;
    if (!buf || cap == 0)
        return NB_ERR_INVAL;
    if (!m->open)
        return NB_ERR_STATE;
    for (;;) {
        /* The current piece is all here: ask for the next one now, so it
         * travels while the engine writes this one. */
        if (!m->err && !m->ended && m->accepted == m->req_end &&
            m->accepted < m->len && m->connected) {
            nb_err err = request_next(m);
            if (err)
                m->err = err;
        }
        if (m->count) {
            uint32_t n = cap < m->count ? cap : m->count;
            uint32_t first = m->cap - m->head < n ? m->cap - m->head : n;
            memcpy(buf, m->buf + m->head, first);
            memcpy(buf + first, m->buf, n - first);
            m->head = (m->head + n) % m->cap;
            m->count -= n;
            *got = n;
            return NB_OK;
        }
        if (m->err)
            return m->err;
        if (m->ended || m->accepted == m->len)
            return NB_OK; /* the end of what the server sends */
        if (!m->subscribed)
            return m->err = NB_ERR_IO;
        uint64_t now = now_ms();
        if (now - m->progress_ms >= m->stall_ms)
            return m->err = NB_ERR_IO; /* stalled */
        uint64_t wait = m->progress_ms + m->stall_ms - now;
        if (wait > LOOP_SLICE_MS)
            wait = LOOP_SLICE_MS;
        /* The buffer is empty here, so it has room for everything one
         * loop can deliver (a few messages). */
        int rc = mosquitto_loop(m->mosq, (int)wait, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
            lost(m);
            if (!m->err)
                m->err = NB_ERR_IO;
        }
    }
}

/* ------------------------------------------------------------- set up */

static int str_ok(const char *s, size_t max)
{
    return s && s[0] && strlen(s) <= max;
}

nb_err nb_mqtt_transport_new(struct nb_mqtt_transport **out,
                             const struct nb_mqtt_config *cfg,
                             struct nb_transport *t)
{
    if (!out || !cfg || !t)
        return NB_ERR_INVAL;
    *out = NULL;
    const char *root = cfg->topic_root ? cfg->topic_root : NB_MQTT_ROOT_DEFAULT;
    uint32_t cap = cfg->buf_size ? cfg->buf_size : 65536u;
    if (!str_ok(cfg->host, HOST_MAX) || cfg->port < 0 || cfg->port > 65535 ||
        !cfg->device_id ||
        !nb_mqtt_level_ok(cfg->device_id, strlen(cfg->device_id),
                          NB_MQTT_ID_MAX, 0) ||
        !nb_mqtt_level_ok(root, strlen(root), NB_MQTT_ROOT_MAX, 1) ||
        !cfg->artifact ||
        !nb_mqtt_artifact_ok(cfg->artifact, strlen(cfg->artifact)) ||
        cap < 4 * NB_MQTT_MAX_DATA ||
        (cfg->keepalive_s && cfg->keepalive_s < 5) ||
        (cfg->password && !cfg->username) || (cfg->certfile && !cfg->cafile) ||
        (!cfg->certfile != !cfg->keyfile))
        return NB_ERR_INVAL;

    struct nb_mqtt_transport *m = calloc(1, sizeof(*m));
    if (!m)
        return NB_ERR_NOMEM;
    m->buf = malloc(cap);
    if (!m->buf) {
        free(m);
        return NB_ERR_NOMEM;
    }
    m->cap = cap;
    strcpy(m->host, cfg->host);
    m->port = cfg->port ? cfg->port : cfg->cafile ? 8883 : 1883;
    strcpy(m->artifact, cfg->artifact);
    snprintf(m->req_topic, sizeof(m->req_topic), "%s/%s/req", root,
             cfg->device_id);
    snprintf(m->data_topic, sizeof(m->data_topic), "%s/%s/data", root,
             cfg->device_id);
    m->connect_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 10000u;
    m->stall_ms = cfg->stall_timeout_ms ? cfg->stall_timeout_ms : 30000u;
    m->req_max = cfg->request_max ? cfg->request_max : 1u << 20;
    m->keepalive = cfg->keepalive_s ? cfg->keepalive_s : 30;
    /* One data message: fixed header (5), topic (2 + n), packet id (2),
     * properties (a length and some slack for what a broker may add),
     * our header and a full block. */
    m->max_packet = 5 + 2 + (uint32_t)strlen(m->data_topic) + 2 + 4 + 256 +
                    NB_MQTT_HDR + NB_MQTT_MAX_DATA;
    /* Request ids start at a random point, so a restarted device never
     * mistakes data for its previous life's request for its own. */
    if (getrandom(&m->next_id, sizeof(m->next_id), 0) !=
        (ssize_t)sizeof(m->next_id))
        m->next_id = (uint32_t)now_ms() ^ ((uint32_t)getpid() << 16);

    mosquitto_lib_init(); /* reference counted in libmosquitto 2.0 */
    const char *cid = cfg->client_id ? cfg->client_id : cfg->device_id;
    m->mosq = mosquitto_new(cid, true, m);
    nb_err err = NB_ERR_NOMEM;
    if (!m->mosq)
        goto fail;
    err = NB_ERR_INVAL;
    if (mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION,
                             MQTT_PROTOCOL_V5) != MOSQ_ERR_SUCCESS)
        goto fail;
    if (cfg->username &&
        mosquitto_username_pw_set(m->mosq, cfg->username, cfg->password) !=
            MOSQ_ERR_SUCCESS)
        goto fail;
    if (cfg->cafile &&
        mosquitto_tls_set(m->mosq, cfg->cafile, NULL, cfg->certfile,
                          cfg->keyfile, NULL) != MOSQ_ERR_SUCCESS)
        goto fail;
    mosquitto_connect_v5_callback_set(m->mosq, on_connect);
    mosquitto_subscribe_v5_callback_set(m->mosq, on_subscribe);
    mosquitto_disconnect_v5_callback_set(m->mosq, on_disconnect);
    mosquitto_publish_v5_callback_set(m->mosq, on_publish);
    mosquitto_message_v5_callback_set(m->mosq, on_message);

    t->ctx = m;
    t->open = mq_open;
    t->read = mq_read;
    t->close = mq_close;
    *out = m;
    return NB_OK;
fail:
    nb_mqtt_transport_free(m);
    return err;
}

void nb_mqtt_transport_free(struct nb_mqtt_transport *m)
{
    if (!m)
        return;
    if (m->mosq) {
        if (m->connected)
            mosquitto_disconnect_v5(m->mosq, 0, NULL);
        mosquitto_destroy(m->mosq);
    }
    mosquitto_lib_cleanup();
    free(m->buf);
    free(m);
}

void nb_mqtt_transport_stats(const struct nb_mqtt_transport *m,
                             struct nb_mqtt_stats *st)
{
    *st = m->st;
}
