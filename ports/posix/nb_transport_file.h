/* nb_transport_file.h - the local-file transport (POSIX port).
 *
 * A struct nb_transport over one file: a package copied to the device
 * (USB stick, a shared directory), or a test's artifact. Each range opens
 * the file anew (so a file replaced between attempts is picked up) and
 * reads it with pread at the range's offset; no read goes past the range
 * asked for, and a file shorter than the range ends it early (got = 0),
 * which the download engine reports as NB_ERR_TRUNCATED.
 *
 * Errors of open: NB_ERR_NOENT (no such file), NB_ERR_DENIED (no
 * permission), NB_ERR_RANGE (the range starts or ends past the end of the
 * file), NB_ERR_IO (anything else the OS refuses). read: NB_ERR_IO.
 */
#ifndef NB_TRANSPORT_FILE_H
#define NB_TRANSPORT_FILE_H

#include <stdint.h>

#include "nb_transport.h"

#define NB_TRANSPORT_FILE_PATH_MAX 4096

struct nb_transport_file {
    char path[NB_TRANSPORT_FILE_PATH_MAX];
    int fd;          /* open during a range, else -1 */
    uint64_t pos;    /* file offset of the next read */
    uint64_t end;    /* file offset where the range ends */
    uint32_t max_read; /* cap per read (0: none); tests use it to make
                        * reads look like network packets */
    uint64_t bytes;  /* bytes read, all ranges */
    uint32_t opens;  /* ranges opened */
};

/* Set up `tf` for `path` and point `t` at it. NB_ERR_INVAL when the path
 * is empty or too long. Nothing is opened until t->open. */
nb_err nb_transport_file_init(struct nb_transport_file *tf, const char *path,
                              struct nb_transport *t);

/* Close the file if a range is still open. */
void nb_transport_file_free(struct nb_transport_file *tf);

#endif
