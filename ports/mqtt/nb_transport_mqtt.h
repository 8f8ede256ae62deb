/* nb_transport_mqtt.h - a struct nb_transport over MQTT (libmosquitto),
 * for devices that reach their update server only through a broker.
 *
 * Protocol: docs/device-api.md, "MQTT transport". The device subscribes
 * to {root}/{device_id}/data, publishes a JSON block request on
 * {root}/{device_id}/req for every range it opens, and receives the bytes
 * as binary messages of at most 16 KiB. MQTT v5, QoS 1 both ways.
 *
 * Single-threaded: open() and read() run the mosquitto loop themselves
 * (no background thread), so nothing happens between calls except that
 * the broker may close an idle connection; the next open() notices and
 * reconnects. open() connects if needed (CONNACK, then SUBACK) and
 * publishes a request with a new id; a range longer than request_max is
 * asked for in pieces, the next once the previous has fully arrived.
 * close() forgets the request (data still arriving for it is dropped)
 * and, when it was not finished, publishes a cancel so the server stops
 * sending it.
 *
 * Every data message is checked before a byte of it is kept: the request
 * id (messages of a closed or earlier request are dropped), the offset (it
 * must continue exactly where the previous message ended; duplicates and
 * gaps are dropped), the length field against the message size. Data
 * beyond the requested length is never delivered: such a message is
 * dropped and the range ends with NB_ERR_RANGE. Received data waits in a
 * bounded buffer (buf_size); the loop runs only when that buffer is empty,
 * so the socket, not memory, absorbs a fast sender. The device declares
 * an MQTT maximum packet size of one block message to the broker, so a
 * larger message is discarded by the broker and never allocated here.
 *
 * What it does NOT check: that the bytes are the right bytes. Anyone who
 * may publish on the data topic can send well-formed wrong data; the
 * download engine catches it with the manifest's block digests. Binding a
 * device to its own topics is the broker's job (ACLs, see the doc).
 *
 * Errors from read(): NB_ERR_IO (connection lost, no progress for
 * stall_timeout_ms, server busy), NB_ERR_NOENT (the server does not have
 * the artifact), NB_ERR_RANGE (offset past the end, or the server sent
 * more than asked), NB_ERR_DENIED (the broker refused a request publish);
 * *got = 0 with NB_OK when the server ended the range early (the file is
 * shorter) or the range is complete. From open(): NB_ERR_IO (cannot
 * connect, no CONNACK/SUBACK within connect_timeout_ms), NB_ERR_DENIED
 * (the broker refused the credentials or the subscription).
 *
 * Known limit: the TCP connect itself is libmosquitto's blocking connect
 * (MQTT v5 connect properties have no asynchronous variant in
 * libmosquitto 2.0), so an unreachable (black-holed) broker host blocks
 * open() for the system's TCP connect timeout; CONNACK and SUBACK are
 * bounded by connect_timeout_ms.
 */
#ifndef NB_TRANSPORT_MQTT_H
#define NB_TRANSPORT_MQTT_H

#include <stdint.h>

#include "nb_mqtt_proto.h"
#include "nb_transport.h"

struct nb_mqtt_config {
    const char *host;      /* broker host name or address (required) */
    int port;              /* 0: 1883, or 8883 with cafile */
    const char *device_id; /* topic level: 1..64 printable, no / + # */
    const char *artifact;  /* artifact name as offered (nb_mqtt_artifact_ok) */
    const char *topic_root; /* NULL: "nobrick" */
    const char *client_id; /* NULL: device_id (so broker ACLs can use %c) */
    const char *username;  /* NULL: none */
    const char *password;  /* NULL: none */
    const char *cafile;    /* NULL: plain TCP; else TLS, broker checked
                            * against this CA (and its host name) */
    const char *certfile;  /* TLS client certificate, or NULL */
    const char *keyfile;   /* its key, or NULL */
    uint32_t connect_timeout_ms; /* 0: 10000; CONNACK + SUBACK */
    uint32_t stall_timeout_ms;   /* 0: 30000; no valid data for this long
                                  * -> NB_ERR_IO */
    uint32_t request_max;  /* 0: 1 MiB; a longer range is requested in
                            * pieces of this size, one after the other, so
                            * the broker never queues more for a device */
    uint32_t buf_size;     /* 0: 64 KiB; at least 2 * NB_MQTT_MAX_DATA */
    uint16_t keepalive_s;  /* 0: 30 */
};

struct nb_mqtt_stats {
    uint64_t bytes;     /* data bytes accepted */
    uint32_t requests;  /* requests published */
    uint32_t connects;  /* successful connections (CONNACK + SUBACK) */
    uint32_t late;      /* messages of another request id, dropped */
    uint32_t bad;       /* malformed messages, or wrong offset, dropped */
    uint32_t overrun;   /* messages past the requested length, dropped */
};

struct nb_mqtt_transport;

/* Check the configuration (NB_ERR_INVAL names nothing more: a bad field
 * is a programming error; see the comments above), allocate the context,
 * copy every string, and fill *t. Does not connect: the first open()
 * does. Free with nb_mqtt_transport_free. */
nb_err nb_mqtt_transport_new(struct nb_mqtt_transport **out,
                             const struct nb_mqtt_config *cfg,
                             struct nb_transport *t);

/* Disconnect and free (NULL is fine). */
void nb_mqtt_transport_free(struct nb_mqtt_transport *m);

/* Counters since nb_mqtt_transport_new. */
void nb_mqtt_transport_stats(const struct nb_mqtt_transport *m,
                             struct nb_mqtt_stats *st);

#endif
