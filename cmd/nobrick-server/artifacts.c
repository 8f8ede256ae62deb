/* artifacts.c - GET and HEAD /api/v1/artifacts/{name}: regular files of
 * the artifact directory, with HTTP Range (RFC 9110): one range answers
 * 206 with Content-Range, several answer 206 multipart/byteranges, none
 * satisfiable answers 416. File bytes are always read at their offset
 * (pread, or sendfile through MHD), never read and thrown away.
 *
 * A name is a plain file name: no '/', '\\', "..", leading '.', control
 * bytes; the file is opened relative to the directory with O_NOFOLLOW and
 * must be a regular file, so neither a path nor a symbolic link, FIFO or
 * device leads anywhere else. (Uploads in progress are ".upload-*": never
 * served.) */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server.h"
#include "store.h"

/* ---------------------------------------------------------------- ranges */

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Digits into *v (saturating at UINT64_MAX); 1 if there was a digit. */
static int digits(const char **pp, uint64_t *v)
{
    const char *p = *pp;
    int any = 0;
    *v = 0;
    while (*p >= '0' && *p <= '9') {
        uint64_t d = (uint64_t)(*p - '0');
        *v = *v > (UINT64_MAX - d) / 10 ? UINT64_MAX : *v * 10 + d;
        any = 1;
        p++;
    }
    *pp = p;
    return any;
}

int srv_parse_ranges(const char *h, uint64_t size, struct srv_range *out,
                     unsigned max)
{
    const char *p;
    unsigned n = 0, specs = 0;
    if (!h || strncasecmp(h, "bytes=", 6) != 0)
        return 0;
    p = h + 6;
    for (;;) {
        uint64_t a = 0, b = 0;
        int have_a, have_b;
        p = skip_ows(p);
        have_a = digits(&p, &a);
        if (*p++ != '-')
            return 0;
        have_b = digits(&p, &b);
        p = skip_ows(p);
        if ((*p != ',' && *p != '\0') || (!have_a && !have_b) ||
            (have_a && have_b && b < a))
            return 0; /* not a valid header: ignored (RFC 9110 14.2) */
        if (++specs > max)
            return 0; /* too many: the whole file instead */
        if (!have_a) {                  /* suffix: the last b bytes */
            if (b > 0 && size > 0) {
                out[n].first = b >= size ? 0 : size - b;
                out[n].last = size - 1;
                n++;
            }
        } else if (a < size) {
            out[n].first = a;
            out[n].last = (!have_b || b >= size) ? size - 1 : b;
            n++;
        }
        if (*p == '\0')
            break;
        p++; /* ',' */
    }
    return n ? (int)n : -1;
}

/* ------------------------------------------------------------- multipart */

/* The header before part i (CRLF, boundary, its two fields, CRLF). */
static int part_head(const struct srv_resp *resp, unsigned i, char *buf,
                     size_t cap)
{
    return snprintf(buf, cap, "\r\n--%s\r\nContent-Type: application/"
                    "octet-stream\r\nContent-Range: bytes %" PRIu64 "-%"
                    PRIu64 "/%" PRIu64 "\r\n\r\n", resp->boundary,
                    resp->ranges[i].first, resp->ranges[i].last,
                    resp->file_size);
}

static int tail(const struct srv_resp *resp, char *buf, size_t cap)
{
    return snprintf(buf, cap, "\r\n--%s--\r\n", resp->boundary);
}

uint64_t srv_multipart_length(const struct srv_resp *resp)
{
    char buf[256];
    uint64_t n = 0;
    for (unsigned i = 0; i < resp->n_ranges; i++)
        n += (uint64_t)part_head(resp, i, buf, sizeof buf) +
             resp->ranges[i].last - resp->ranges[i].first + 1;
    return n + (uint64_t)tail(resp, buf, sizeof buf);
}

/* Copy text[from..] (the segment at `pos` - start). */
static long from_text(const char *text, size_t len, uint64_t off, char *buf,
                      size_t max)
{
    size_t n = len - (size_t)off;
    if (n > max)
        n = max;
    memcpy(buf, text + off, n);
    return (long)n;
}

long srv_multipart_read(const struct srv_resp *resp, uint64_t pos, char *buf,
                        size_t max)
{
    char head[256];
    uint64_t at = 0;
    for (unsigned i = 0; i < resp->n_ranges; i++) {
        size_t hl = (size_t)part_head(resp, i, head, sizeof head);
        uint64_t dl = resp->ranges[i].last - resp->ranges[i].first + 1;
        if (pos < at + hl)
            return from_text(head, hl, pos - at, buf, max);
        at += hl;
        if (pos < at + dl) {
            uint64_t off = pos - at, want = dl - off;
            ssize_t got;
            if (want > max)
                want = max;
            do {
                got = pread(resp->fd, buf, (size_t)want,
                            (off_t)(resp->ranges[i].first + off));
            } while (got < 0 && errno == EINTR);
            return got > 0 ? (long)got : -1; /* 0: the file shrank */
        }
        at += dl;
    }
    {
        size_t tl = (size_t)tail(resp, head, sizeof head);
        if (pos < at + tl)
            return from_text(head, tl, pos - at, buf, max);
    }
    return 0;
}

/* ---------------------------------------------------------------- handler */

/* Artifact downloads may require a device's (or an admin's) token. */
static int artifact_auth_ok(struct srv *s, const struct srv_req *req)
{
    const char *tok = srv_bearer(req);
    struct srv_device *d;
    struct nb_db_conn *c;
    char hash[65];
    nb_err err;
    if (!s->cfg->artifact_auth || srv_auth_admin(s, req))
        return 1;
    if (!tok)
        return 0;
    d = malloc(sizeof *d);
    if (!d)
        return 0;
    srv_token_sha256_hex(tok, hash);
    c = nb_db_acquire(s->db);
    /* A lookup by the hash of the token: the index compares SHA-256
     * values, which tells an attacker nothing about a token. */
    err = srv_store_device_by_token(c, hash, d);
    nb_db_release(s->db, c);
    free(d);
    return err == NB_OK;
}

static void new_boundary(char out[40])
{
    static const char digits_hex[] = "0123456789abcdef";
    uint8_t r[12] = {0};
    if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
        memset(r, 0x5a, sizeof r); /* a fixed boundary works as well */
    memcpy(out, "nobrick-", 8);
    for (int i = 0; i < 12; i++) {
        out[8 + 2 * i] = digits_hex[r[i] >> 4];
        out[9 + 2 * i] = digits_hex[r[i] & 15];
    }
    out[32] = '\0';
}

void srv_artifact_handle(struct srv *s, const struct srv_req *req,
                         const char *name, struct srv_resp *resp)
{
    struct stat st;
    struct srv_range rg[SRV_MAX_RANGES];
    char cr[96];
    int get = strcmp(req->method, "GET") == 0, fd, n;
    uint64_t size, bytes;

    if (!get && strcmp(req->method, "HEAD") != 0) {
        srv_resp_error(resp, 405, "use GET or HEAD");
        srv_resp_header(resp, "Allow", "GET, HEAD");
        return;
    }
    if (!srv_valid_artifact_name(name)) {
        srv_resp_error(resp, 400, "bad artifact name: a plain file name is "
                       "expected");
        return;
    }
    if (!artifact_auth_ok(s, req)) {
        srv_resp_error(resp, 401, "artifacts need a device token");
        return;
    }
    /* O_NONBLOCK: opening a FIFO must not hang the thread; it is refused
     * below as not a regular file. */
    fd = openat(s->artifacts_fd, name,
                O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        srv_resp_error(resp, 404, "no artifact %s", name);
        return;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        srv_resp_error(resp, 404, "no artifact %s", name);
        return;
    }
    size = (uint64_t)st.st_size;
    n = srv_parse_ranges(srv_req_header(req, "Range"), size, rg,
                         SRV_MAX_RANGES);
    if (n < 0) {
        close(fd);
        srv_resp_error(resp, 416, "range not satisfiable: %s has %" PRIu64
                       " bytes", name, size);
        snprintf(cr, sizeof cr, "bytes */%" PRIu64, size);
        srv_resp_header(resp, "Content-Range", cr);
        return;
    }
    srv_resp_free(resp);
    resp->fd = fd;
    resp->file_size = size;
    resp->content_type = "application/octet-stream";
    srv_resp_header(resp, "Accept-Ranges", "bytes");
    if (n == 0) {
        resp->status = 200;
        resp->kind = SRV_BODY_FILE;
        resp->offset = 0;
        resp->length = size;
        bytes = size;
    } else if (n == 1) {
        resp->status = 206;
        resp->kind = SRV_BODY_FILE;
        resp->offset = rg[0].first;
        resp->length = rg[0].last - rg[0].first + 1;
        snprintf(cr, sizeof cr, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64,
                 rg[0].first, rg[0].last, size);
        srv_resp_header(resp, "Content-Range", cr);
        bytes = resp->length;
    } else {
        resp->status = 206;
        resp->kind = SRV_BODY_MULTI;
        memcpy(resp->ranges, rg, (size_t)n * sizeof rg[0]);
        resp->n_ranges = (unsigned)n;
        new_boundary(resp->boundary);
        resp->content_type = NULL; /* set with the boundary below */
        snprintf(cr, sizeof cr, "multipart/byteranges; boundary=%s",
                 resp->boundary);
        srv_resp_header(resp, "Content-Type", cr);
        bytes = srv_multipart_length(resp);
    }
    if (get) {
        resp->download = 1;
        __atomic_add_fetch(&s->m.downloads, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&s->m.download_bytes, bytes, __ATOMIC_RELAXED);
    }
}
