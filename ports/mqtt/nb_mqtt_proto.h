/* nb_mqtt_proto.h - the wire format of the MQTT block transport, shared by
 * the device side (nb_transport_mqtt.c) and the serving side
 * (lib/nb_mqtt_serve.c). docs/device-api.md, "MQTT transport", is the
 * specification; this header only names its numbers.
 *
 * Topics: {root}/{device_id}/req (device -> server, a JSON request) and
 * {root}/{device_id}/data (server -> device, binary messages). A data
 * message is a 12-byte header, all u32 little-endian,
 *     0  request id     4  offset     8  length of the data that follows
 * then `length` bytes (at most NB_MQTT_MAX_DATA). Lengths from
 * NB_MQTT_CODE_MIN up are reply codes that end a request, with no data.
 */
#ifndef NB_MQTT_PROTO_H
#define NB_MQTT_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define NB_MQTT_ROOT_DEFAULT "nobrick"
#define NB_MQTT_HDR 12u
#define NB_MQTT_MAX_DATA 16384u       /* data bytes per message, at most */
#define NB_MQTT_ID_MAX 64u            /* device id: 1..64 characters */
#define NB_MQTT_ROOT_MAX 64u          /* topic root: 1..64 characters */
#define NB_MQTT_ARTIFACT_MAX 128u     /* artifact name: 1..128 characters */
#define NB_MQTT_REQ_MAX 512u          /* a request's JSON, at most */

/* Reply codes in the length field. */
#define NB_MQTT_CODE_NOENT 0xFFFFFFFFu /* no such artifact (or bad name) */
#define NB_MQTT_CODE_RANGE 0xFFFFFFFEu /* offset at or past the end */
#define NB_MQTT_CODE_BUSY 0xFFFFFFFDu  /* server cannot serve now: retry */
#define NB_MQTT_CODE_MIN 0xFFFFFFFDu

static inline void nb_mqtt_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t nb_mqtt_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Nonzero when `s` (n bytes) is usable as one topic level (a device id,
 * a topic root component): 1..max printable ASCII characters, none of
 * '/', '+', '#'. A root may contain '/' (several levels): pass
 * allow_slash. */
static inline int nb_mqtt_level_ok(const char *s, size_t n, size_t max,
                                   int allow_slash)
{
    if (!s || n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7F || c == '+' || c == '#' ||
            (c == '/' && !allow_slash))
            return 0;
    }
    return !allow_slash || (s[0] != '/' && s[n - 1] != '/');
}

/* Nonzero when `s` (n bytes) is a valid artifact name: 1..128 printable
 * ASCII characters, no '/', no '\\', no '"', no "..", not starting with
 * '.'. Such a name is a plain file name, and needs no escaping in JSON. */
static inline int nb_mqtt_artifact_ok(const char *s, size_t n)
{
    if (!s || n == 0 || n > NB_MQTT_ARTIFACT_MAX || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7F || c == '/' || c == '\\' || c == '"')
            return 0;
        if (c == '.' && i + 1 < n && s[i + 1] == '.')
            return 0;
    }
    return 1;
}

#endif
