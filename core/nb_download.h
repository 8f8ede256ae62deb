/* nb_download.h - the download engine: payload bytes from a transport into
 * an install, block by block.
 *
 * One call is one attempt: it requests the rest of the payload from the
 * install's offset, feeds what arrives to nb_install_write (which checks
 * every block against the signed manifest before it is written), and when
 * a block fails its check, fetches that block again alone. It returns when
 * the payload is complete (then call nb_install_finish), or with the
 * transport's error: the caller decides whether and when to try again
 * (backoff, jitter, giving up on a 4xx), and a new attempt - even after a
 * reset, via nb_install_resume - continues at the first block not yet
 * written, never from zero.
 */
#ifndef NB_DOWNLOAD_H
#define NB_DOWNLOAD_H

#include <stdint.h>

#include "nb_install.h"
#include "nb_transport.h"

#define NB_DOWNLOAD_BLOCK_RETRIES 3

struct nb_download_stats {
    uint64_t bytes;      /* bytes received from the transport */
    uint32_t opens;      /* ranges requested */
    uint32_t bad_blocks; /* blocks that failed their check on arrival */
};

/* Fetch the payload of `in` from `t`, where payload byte 0 is at
 * `base` in the transport's resource (0 for a detached payload, the
 * manifest's payload offset for a whole .nbpkg). `buf` (buf_size bytes,
 * any size) is the receive buffer. Errors: the transport's;
 * NB_ERR_TRUNCATED when the peer ends the range early; NB_ERR_DIGEST when
 * a block is still bad after NB_DOWNLOAD_BLOCK_RETRIES fetches of it
 * alone; the install's and the flash's. `stats` may be NULL. */
nb_err nb_download_payload(struct nb_install *in, const struct nb_transport *t,
                           uint32_t base, uint8_t *buf, uint32_t buf_size,
                           struct nb_download_stats *stats);

#endif
