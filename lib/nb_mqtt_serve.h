/* nb_mqtt_serve.h - the serving side of the MQTT block transport: answers
 * device block requests with byte ranges of files in one directory.
 *
 * Protocol: docs/device-api.md, "MQTT transport". The server subscribes to
 * {root}/+/req and answers each request on {root}/{device_id}/data, QoS 1,
 * in messages of at most NB_MQTT_MAX_DATA bytes of data. Written to be
 * embedded in the update server (which owns the artifacts directory) as
 * well as run alone by a small program (tests/mqtt/mqtt_responder.c).
 *
 * Per request:
 *   - the artifact name must pass nb_mqtt_artifact_ok (no '/', no "..",
 *     not hidden) and name a regular file in the directory, opened with
 *     openat(O_NOFOLLOW) so that neither a path nor a symbolic link leads
 *     outside; else one NB_MQTT_CODE_NOENT reply;
 *   - an offset at or past the end of the file: one NB_MQTT_CODE_RANGE;
 *   - otherwise the bytes from the offset, read with pread (the bytes
 *     before the offset are never read), up to the requested length or
 *     the end of the file; when the file ends first, a zero-length message
 *     follows the last data (the device reports the range truncated);
 *   - length 0 sends nothing and cancels the device's stream;
 *   - a device has one stream at a time: a new request replaces the one
 *     in progress (which the device has abandoned, e.g. to fetch one bad
 *     block again);
 *   - more devices streaming than max_streams: NB_MQTT_CODE_BUSY.
 * Malformed requests (not JSON, a missing or out-of-range field, over
 * NB_MQTT_REQ_MAX bytes) are dropped: there is no id to answer.
 *
 * Memory: bounded by max_streams (one open file each) and window (data
 * messages published but not yet acknowledged by the broker, over all
 * streams, each at most 16 KiB + header inside libmosquitto). Streams are
 * served round robin, one message each, so one large download does not
 * hold up the others.
 *
 * What it does NOT do: authenticate devices (the broker's ACLs decide
 * who may publish on {root}/{id}/req and read {root}/{id}/data), or
 * limit how often a device may ask (a request is cheap: one open and
 * fstat; the broker's rate limits apply).
 */
#ifndef NB_MQTT_SERVE_H
#define NB_MQTT_SERVE_H

#include <stdint.h>

#include "nb_err.h"
#include "nb_mqtt_proto.h"

struct nb_mqtt_serve_config {
    const char *host;       /* broker host name or address (required) */
    int port;               /* 0: 1883, or 8883 with cafile */
    const char *dir;        /* directory of artifacts (required) */
    const char *topic_root; /* NULL: "nobrick" */
    const char *client_id;  /* NULL: "nobrick-serve-<pid>" */
    const char *username;   /* NULL: none */
    const char *password;   /* NULL: none */
    const char *cafile;     /* NULL: plain TCP; else TLS with this CA */
    const char *certfile;   /* TLS client certificate, or NULL */
    const char *keyfile;    /* its key, or NULL */
    unsigned max_streams;   /* 0: 64 devices served at once */
    unsigned window;        /* 0: 16 data messages awaiting PUBACK */
    uint16_t keepalive_s;   /* 0: 30 */
    int log_level;          /* 0 silent, 1 errors, 2 + requests (stderr) */
};

struct nb_mqtt_serve_stats {
    uint64_t requests;   /* well-formed requests */
    uint64_t malformed;  /* requests dropped */
    uint64_t refused;    /* NOENT, RANGE and BUSY replies */
    uint64_t replaced;   /* streams replaced or cancelled unfinished */
    uint64_t completed;  /* streams sent to their end */
    uint64_t messages;   /* data messages published (incl. end markers) */
    uint64_t bytes;      /* data bytes published */
    uint64_t connects;   /* connections to the broker */
};

struct nb_mqtt_serve;

/* Check the configuration, open the directory, create the client and
 * connect (blocking; NB_ERR_IO when the broker cannot be reached: the
 * server is created anyway and nb_mqtt_serve_step keeps trying, so *out
 * is set whenever the result is NB_OK or NB_ERR_IO). NB_ERR_INVAL for a
 * bad field, NB_ERR_NOENT when the directory cannot be opened. */
nb_err nb_mqtt_serve_new(struct nb_mqtt_serve **out,
                         const struct nb_mqtt_serve_config *cfg);

/* One turn: wait up to timeout_ms for broker traffic (not at all while a
 * stream can send), handle requests and acknowledgements, then send what
 * the window allows. NB_ERR_IO while the broker is unreachable (every
 * stream is dropped: devices ask again); it reconnects at most once a
 * second, from this call. */
nb_err nb_mqtt_serve_step(struct nb_mqtt_serve *s, int timeout_ms);

/* Nonzero while connected to the broker and subscribed. */
int nb_mqtt_serve_connected(const struct nb_mqtt_serve *s);

/* Number of streams in progress. */
unsigned nb_mqtt_serve_active(const struct nb_mqtt_serve *s);

void nb_mqtt_serve_stats(const struct nb_mqtt_serve *s,
                         struct nb_mqtt_serve_stats *st);

/* Disconnect, close every file, free (NULL is fine). */
void nb_mqtt_serve_free(struct nb_mqtt_serve *s);

#endif
