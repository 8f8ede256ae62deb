/* nb_transport.h - the transport interface: how the download engine gets
 * bytes, whatever carries them (HTTP(S) with Range, FTP(S) with REST,
 * MQTT block requests, a local file).
 *
 * A transport instance stands for one resource (a package, a payload, a
 * manifest): which one is the port's configuration, not the core's
 * business. The engine asks for a byte range and reads it; every read is
 * bounded by what it asked for, so an endless or oversized stream can
 * never overrun a buffer or a slot.
 */
#ifndef NB_TRANSPORT_H
#define NB_TRANSPORT_H

#include <stdint.h>

#include "nb_err.h"

struct nb_transport {
    void *ctx;
    /* Start fetching `len` bytes of the resource from `offset`. Errors:
     * NB_ERR_IO (no connection, timeout: worth retrying later),
     * NB_ERR_NOENT (the resource is gone: 404, 410), NB_ERR_DENIED
     * (refused: 401, 403), NB_ERR_RANGE (the server cannot serve that
     * range). */
    nb_err (*open)(void *ctx, uint32_t offset, uint32_t len);
    /* Read up to `cap` bytes of the range into `buf`; *got = 0 with NB_OK
     * is the end of what the peer sends. A dropped link or a stall past
     * the port's timeout is NB_ERR_IO. */
    nb_err (*read)(void *ctx, uint8_t *buf, uint32_t cap, uint32_t *got);
    /* End the range (also after an error). */
    void (*close)(void *ctx);
};

#endif
