/* nb_transport_file.c - the local-file transport; see nb_transport_file.h. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nb_transport_file.h"

static nb_err os_err(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return NB_ERR_NOENT;
    case EACCES:
    case EPERM:
        return NB_ERR_DENIED;
    default:
        return NB_ERR_IO;
    }
}

static void tf_close(void *ctx)
{
    struct nb_transport_file *tf = ctx;
    if (tf->fd >= 0)
        close(tf->fd);
    tf->fd = -1;
    tf->pos = tf->end = 0;
}

static nb_err tf_open(void *ctx, uint32_t offset, uint32_t len)
{
    struct nb_transport_file *tf = ctx;
    struct stat st;
    tf_close(tf);
    int fd = open(tf->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return os_err(errno);
    if (fstat(fd, &st) != 0) {
        nb_err err = os_err(errno);
        close(fd);
        return err;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return S_ISDIR(st.st_mode) ? NB_ERR_NOENT : NB_ERR_IO;
    }
    uint64_t size = (uint64_t)st.st_size;
    if ((uint64_t)offset > size || (uint64_t)offset + len > size) {
        close(fd);
        return NB_ERR_RANGE;
    }
    tf->fd = fd;
    tf->pos = offset;
    tf->end = (uint64_t)offset + len;
    tf->opens++;
    return NB_OK;
}

static nb_err tf_read(void *ctx, uint8_t *buf, uint32_t cap, uint32_t *got)
{
    struct nb_transport_file *tf = ctx;
    *got = 0;
    if (tf->fd < 0)
        return NB_ERR_STATE;
    uint64_t left = tf->end - tf->pos;
    uint32_t n = left < cap ? (uint32_t)left : cap;
    if (tf->max_read && n > tf->max_read)
        n = tf->max_read;
    if (n == 0)
        return NB_OK;
    for (;;) {
        ssize_t r = pread(tf->fd, buf, n, (off_t)tf->pos);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return NB_ERR_IO;
        /* r == 0: the file shrank under us; the range ends early. */
        tf->pos += (uint64_t)r;
        tf->bytes += (uint64_t)r;
        *got = (uint32_t)r;
        return NB_OK;
    }
}

nb_err nb_transport_file_init(struct nb_transport_file *tf, const char *path,
                              struct nb_transport *t)
{
    memset(tf, 0, sizeof(*tf));
    tf->fd = -1;
    size_t n = path ? strlen(path) : 0;
    if (n == 0 || n >= sizeof(tf->path))
        return NB_ERR_INVAL;
    memcpy(tf->path, path, n + 1);
    t->ctx = tf;
    t->open = tf_open;
    t->read = tf_read;
    t->close = tf_close;
    return NB_OK;
}

void nb_transport_file_free(struct nb_transport_file *tf)
{
    tf_close(tf);
}
