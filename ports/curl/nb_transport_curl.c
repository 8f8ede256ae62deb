/* nb_transport_curl.c - HTTP(S) and FTP(S) ranges over libcurl; see
 * nb_transport_curl.h for the contract.
 *
 * One easy handle per instance, in a multi handle of its own, kept across
 * ranges so a keep-alive connection is reused. open() adds the handle with
 * the range set and drives the transfer until the response has been
 * checked (its first body byte) or has ended; read() hands out buffered
 * bytes, driving the transfer only when the buffer is empty. The write
 * callback never takes a chunk that does not fit: it pauses the transfer
 * instead, and read() resumes it once there is room for the largest chunk
 * libcurl passes.
 */
#include "nb_transport_curl.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* The longest single wait in curl_multi_poll. libcurl 7.88 (Debian 12)
 * sometimes misses input that its TLS layer already holds (seen on the
 * FTPS data connection: a poll sleeps to its full timeout with the bytes
 * already read; upstream fixed this class of bug in 2025, curl pull
 * request 17636, "multi: fix polling with pending input"). So no wait is
 * long: a missed wake-up costs at most this much, and waiting for a
 * stalled peer costs ten wake-ups a second. */
#define POLL_MAX_MS 100u

/* ------------------------------------------------------------ helpers */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Record the range's error (the first one wins) with a one-line reason. */
static nb_err fail(struct nb_curl *c, nb_err err, const char *fmt, ...)
{
    if (c->err)
        return c->err;
    c->err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
    va_end(ap);
    return err;
}

static int scheme_is(const char *url, const char *scheme)
{
    size_t n = strlen(scheme);
    return strncasecmp(url, scheme, n) == 0 && strncmp(url + n, "://", 3) == 0;
}

/* Is the transfer (after redirects) HTTP or HTTPS? */
static int is_http(struct nb_curl *c)
{
    char *scheme = NULL;
    if (curl_easy_getinfo(c->easy, CURLINFO_SCHEME, &scheme) != CURLE_OK ||
        !scheme)
        return 0;
    return strncasecmp(scheme, "http", 4) == 0;
}

/* An HTTP status that is not a usable answer. */
static nb_err status_err(long code)
{
    if (code == 404 || code == 410)
        return NB_ERR_NOENT;
    if (code == 416)
        return NB_ERR_RANGE;
    if (code >= 500)
        return NB_ERR_IO;
    if (code >= 300)
        return NB_ERR_DENIED; /* 401, 403, other 4xx, unfollowed 3xx */
    return NB_ERR_IO;         /* 1xx, 204 and friends: not a body */
}

/* A finished transfer's libcurl result. */
static nb_err curl_err(struct nb_curl *c, CURLcode rc)
{
    long code = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
    const char *msg = c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);
    nb_err err;
    switch (rc) {
    case CURLE_HTTP_RETURNED_ERROR:
        return fail(c, status_err(code), "HTTP %ld", code);
    case CURLE_REMOTE_FILE_NOT_FOUND:
        err = NB_ERR_NOENT;
        break;
    case CURLE_REMOTE_ACCESS_DENIED:
        /* FTP: libcurl's only source of it is a refused CWD (550): the
         * directory is not there for us, like a missing file. */
        err = NB_ERR_NOENT;
        break;
    case CURLE_LOGIN_DENIED:
    case CURLE_USE_SSL_FAILED:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_TOO_MANY_REDIRECTS:
        err = NB_ERR_DENIED;
        break;
    case CURLE_RANGE_ERROR:
    case CURLE_BAD_DOWNLOAD_RESUME:
    case CURLE_FTP_COULDNT_USE_REST:
        err = NB_ERR_RANGE;
        break;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_NOT_BUILT_IN:
        err = NB_ERR_INVAL;
        break;
    case CURLE_OUT_OF_MEMORY:
        err = NB_ERR_NOMEM;
        break;
    default:
        err = NB_ERR_IO; /* connect, timeout, reset, TLS handshake... */
        break;
    }
    if (code && is_http(c))
        return fail(c, err, "%s (HTTP %ld)", msg, code);
    return fail(c, err, "%s", msg);
}

/* Parse "bytes a-b/total" (a Content-Range value). */
static int parse_content_range(const char *v, size_t n, uint64_t *a,
                               uint64_t *b)
{
    char tmp[96];
    if (n >= sizeof(tmp))
        return 0;
    memcpy(tmp, v, n);
    tmp[n] = 0;
    char *p = tmp;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncasecmp(p, "bytes", 5) != 0)
        return 0;
    p += 5;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p < '0' || *p > '9')
        return 0;
    char *end;
    unsigned long long x = strtoull(p, &end, 10);
    if (*end != '-' || end[1] < '0' || end[1] > '9')
        return 0;
    unsigned long long y = strtoull(end + 1, &end, 10);
    if (*end != '/')
        return 0;
    *a = x;
    *b = y;
    return 1;
}

/* -------------------------------------------------------- callbacks */

static size_t on_header(char *data, size_t size, size_t nmemb, void *ctx)
{
    struct nb_curl *c = ctx;
    size_t n = size * nmemb;
    static const char cr[] = "content-range:";
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        c->have_cr = 0; /* a new response (redirect, 100 Continue) */
    } else if (n > sizeof(cr) - 1 && strncasecmp(data, cr, sizeof(cr) - 1) == 0) {
        size_t k = sizeof(cr) - 1, m = n - k;
        while (m && (data[k + m - 1] == '\r' || data[k + m - 1] == '\n'))
            m--;
        c->have_cr = (uint8_t)parse_content_range(data + k, m, &c->cr_start,
                                                  &c->cr_end);
        if (!c->have_cr)
            c->cr_start = c->cr_end = 0;
    }
    return n;
}

/* Check the response before its first body byte is taken (or when it
 * ends without one): only a body that is exactly the requested bytes may
 * pass. */
static nb_err check_response(struct nb_curl *c)
{
    if (c->checked)
        return c->err;
    c->checked = 1;
    long code = 0;
    curl_off_t cl = -1;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(c->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    int http = is_http(c);
    if (c->whole) {
        if (http && code != 200)
            return fail(c, code == 206 ? NB_ERR_RANGE : status_err(code),
                        "HTTP %ld to a GET without Range", code);
        if (cl >= 0 && (uint64_t)cl > c->len)
            return fail(c, NB_ERR_NOSPC,
                        "resource of %" PRId64 " bytes, room for %" PRIu32,
                        (int64_t)cl, c->len);
        return NB_OK;
    }
    if (!http)
        return NB_OK; /* FTP: libcurl checks REST against SIZE itself and
                       * stops reading at the range's end */
    uint64_t last = (uint64_t)c->offset + c->len - 1;
    if (code == 206) {
        if (!c->have_cr)
            return fail(c, NB_ERR_RANGE, "206 without a usable Content-Range");
        if (c->cr_start != c->offset || c->cr_end < c->cr_start ||
            c->cr_end > last)
            return fail(c, NB_ERR_RANGE,
                        "206 with bytes %" PRIu64 "-%" PRIu64
                        " for bytes=%s", c->cr_start, c->cr_end, c->range);
        if (cl >= 0 && (uint64_t)cl != c->cr_end - c->cr_start + 1)
            return fail(c, NB_ERR_RANGE,
                        "206 with Content-Length %" PRId64
                        " for bytes %" PRIu64 "-%" PRIu64,
                        (int64_t)cl, c->cr_start, c->cr_end);
        return NB_OK;
    }
    if (code == 200) {
        /* The server ignored Range. Usable only if the range is the
         * start of the file and the file is no longer than the range. */
        if (c->offset != 0)
            return fail(c, NB_ERR_RANGE,
                        "server ignored Range (200 for bytes=%s)", c->range);
        if (cl >= 0 && (uint64_t)cl > c->len)
            return fail(c, NB_ERR_RANGE,
                        "server ignored Range (200 with %" PRId64
                        " bytes for bytes=%s)", (int64_t)cl, c->range);
        return NB_OK;
    }
    return fail(c, status_err(code), "HTTP %ld", code);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ctx)
{
    struct nb_curl *c = ctx;
    size_t n = size * nmemb;
    if (c->err || !c->active)
        return 0; /* abort (CURLE_WRITE_ERROR): the error is ours */
    if (check_response(c))
        return 0;
    uint32_t room = c->len - c->recv;
    uint32_t take = n < room ? (uint32_t)n : room;
    if (take > c->size) {
        /* Cannot happen with buffer_size >= CURL_MAX_WRITE_SIZE; refuse
         * rather than pause forever. */
        fail(c, NB_ERR_IO, "chunk of %zu bytes exceeds the buffer", n);
        return 0;
    }
    if (take > c->size - c->fill) {
        c->paused = 1;
        return CURL_WRITEFUNC_PAUSE; /* libcurl keeps this chunk */
    }
    if (c->head + c->fill + take > c->size) {
        memmove(c->buf, c->buf + c->head, c->fill);
        c->head = 0;
    }
    memcpy(c->buf + c->head + c->fill, data, take);
    c->fill += take;
    c->recv += take;
    if (take < n) {
        fail(c, c->whole ? NB_ERR_NOSPC : NB_ERR_RANGE,
             "peer sent more than the %" PRIu32 " bytes requested", c->len);
        return 0; /* cut the peer off */
    }
    return n;
}

/* ------------------------------------------------------ the engine room */

/* Collect libcurl's verdict on a finished transfer. */
static void collect(struct nb_curl *c)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg == CURLMSG_DONE && m->easy_handle == c->easy) {
            c->done = 1;
            c->result = m->data.result;
        }
    }
}

/* Drive the transfer until the buffer holds bytes, the response has been
 * checked (when `until_checked`), it is finished, or an error: at most
 * `limit_ms` without a byte, then NB_ERR_IO. */
static void drive(struct nb_curl *c, int until_checked, uint32_t limit_ms)
{
    uint64_t start = now_ms();
    for (;;) {
        int running = 0;
        CURLMcode mc = curl_multi_perform(c->multi, &running);
        if (mc != CURLM_OK) {
            fail(c, NB_ERR_IO, "curl_multi_perform: %s",
                 curl_multi_strerror(mc));
            return;
        }
        collect(c);
        if (c->err || c->done || c->fill || (until_checked && c->checked))
            return;
        uint64_t spent = now_ms() - start;
        if (spent >= limit_ms) {
            fail(c, NB_ERR_IO, "no data for %" PRIu32 " ms", limit_ms);
            return;
        }
        uint64_t wait = limit_ms - spent;
        if (wait > POLL_MAX_MS)
            wait = POLL_MAX_MS;
        /* curl_multi_poll returns early when libcurl's own timers are due. */
        mc = curl_multi_poll(c->multi, NULL, 0, (int)wait, NULL);
        if (mc != CURLM_OK) {
            fail(c, NB_ERR_IO, "curl_multi_poll: %s", curl_multi_strerror(mc));
            return;
        }
    }
}

/* The range's outcome once its buffer is empty and the transfer ended:
 * NB_OK (end) or the error. */
static nb_err finish(struct nb_curl *c)
{
    if (c->err)
        return c->err;
    if (!c->done)
        return NB_OK;
    if (c->result != CURLE_OK)
        return curl_err(c, c->result);
    nb_err err = check_response(c); /* a response with no body at all */
    if (err)
        return err;
    if (!c->whole && c->len && c->recv == 0)
        return fail(c, NB_ERR_RANGE, "no byte of the range bytes=%s", c->range);
    return NB_OK;
}

static void detach(struct nb_curl *c)
{
    if (c->attached) {
        /* Mid-transfer, this abandons the connection. */
        curl_multi_remove_handle(c->multi, c->easy);
        c->attached = 0;
    }
    c->active = 0;
    c->paused = 0;
    c->head = c->fill = 0;
}

/* Start a request for [offset, offset+len) (whole: the resource without
 * Range, at most `len` bytes). */
static nb_err start(struct nb_curl *c, uint32_t offset, uint32_t len,
                    int whole)
{
    detach(c);
    c->offset = offset;
    c->len = len;
    c->recv = 0;
    c->whole = (uint8_t)whole;
    c->checked = c->done = c->have_cr = 0;
    c->cr_start = c->cr_end = 0;
    c->result = CURLE_OK;
    c->err = NB_OK;
    c->errbuf[0] = 0;
    c->detail[0] = 0;
    c->range[0] = 0;
    if (!whole && (uint64_t)offset + len > UINT32_MAX + 1ull)
        return fail(c, NB_ERR_RANGE, "range past 4 GiB");
    c->active = 1;
    if (!whole && len == 0) {
        c->done = 1; /* nothing to fetch: read() ends at once */
        c->checked = 1;
        return NB_OK;
    }
    if (!whole)
        snprintf(c->range, sizeof(c->range), "%" PRIu32 "-%" PRIu64, offset,
                 (uint64_t)offset + len - 1);
    if (curl_easy_setopt(c->easy, CURLOPT_RANGE, whole ? NULL : c->range) !=
        CURLE_OK)
        return fail(c, NB_ERR_NOMEM, "CURLOPT_RANGE");
    CURLMcode mc = curl_multi_add_handle(c->multi, c->easy);
    if (mc != CURLM_OK)
        return fail(c, NB_ERR_IO, "curl_multi_add_handle: %s",
                    curl_multi_strerror(mc));
    c->attached = 1;
    drive(c, 1, c->connect_ms + c->stall_ms);
    if (c->fill)
        return NB_OK; /* body bytes arrived: checked */
    return finish(c);
}

static nb_err t_open(void *ctx, uint32_t offset, uint32_t len)
{
    struct nb_curl *c = ctx;
    if (!c || !c->easy)
        return NB_ERR_INVAL;
    return start(c, offset, len, 0);
}

static nb_err t_read(void *ctx, uint8_t *out, uint32_t cap, uint32_t *got)
{
    struct nb_curl *c = ctx;
    if (got)
        *got = 0;
    if (!c || !c->easy || !got || !out || cap == 0)
        return NB_ERR_INVAL;
    if (!c->active)
        return NB_ERR_STATE;
    if (c->fill == 0 && !c->err && !c->done) {
        if (c->paused) {
            /* Cannot happen (we resume as soon as there is room), but a
             * paused transfer with an empty buffer would never move. */
            c->paused = 0;
            curl_easy_pause(c->easy, CURLPAUSE_CONT);
        }
        if (c->fill == 0)
            drive(c, 0, c->stall_ms);
    }
    if (c->fill) {
        uint32_t n = cap < c->fill ? cap : c->fill;
        memcpy(out, c->buf + c->head, n);
        c->head += n;
        c->fill -= n;
        if (c->fill == 0)
            c->head = 0;
        *got = n;
        if (c->paused && c->size - c->fill >= CURL_MAX_WRITE_SIZE &&
            !c->err) {
            /* Room for any chunk: resume. libcurl may hand over the
             * chunk it kept right here, through on_write. */
            c->paused = 0;
            CURLcode rc = curl_easy_pause(c->easy, CURLPAUSE_CONT);
            if (rc != CURLE_OK)
                curl_err(c, rc);
        }
        return NB_OK;
    }
    return finish(c);
}

static void t_close(void *ctx)
{
    struct nb_curl *c = ctx;
    if (c && c->easy)
        detach(c);
}

/* ---------------------------------------------------------------- API */

nb_err nb_curl_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? NB_OK
                                                             : NB_ERR_IO;
}

void nb_curl_global_cleanup(void)
{
    curl_global_cleanup();
}

const char *nb_curl_detail(const struct nb_curl *c)
{
    return c ? c->detail : "";
}

void nb_curl_free(struct nb_curl *c)
{
    if (!c)
        return;
    if (c->easy && c->multi && c->attached)
        curl_multi_remove_handle(c->multi, c->easy);
    if (c->easy)
        curl_easy_cleanup(c->easy);
    if (c->multi)
        curl_multi_cleanup(c->multi);
    free(c->buf);
    c->easy = NULL;
    c->multi = NULL;
    c->buf = NULL;
    c->attached = c->active = 0;
}

#define SETOPT(opt, val)                                                   \
    do {                                                                   \
        if (curl_easy_setopt(c->easy, opt, val) != CURLE_OK) {             \
            snprintf(c->detail, sizeof(c->detail), "setting %s", #opt);    \
            err = NB_ERR_INVAL;                                            \
            goto out;                                                      \
        }                                                                  \
    } while (0)

nb_err nb_curl_init(struct nb_curl *c, const struct nb_curl_config *cfg,
                    struct nb_transport *t)
{
    if (!c)
        return NB_ERR_INVAL;
    memset(c, 0, sizeof(*c));
    if (t)
        memset(t, 0, sizeof(*t));
    nb_err err = NB_ERR_INVAL;
    const char *why = NULL;
    int https = 0, ftp = 0;
    if (!cfg || !t)
        why = "cfg and t are required";
    else if (!cfg->url || !cfg->url[0])
        why = "url is required";
    else if (!(scheme_is(cfg->url, "http") ||
               (https = scheme_is(cfg->url, "https")) ||
               (ftp = scheme_is(cfg->url, "ftp")) ||
               scheme_is(cfg->url, "ftps")))
        why = "url: scheme is not http, https, ftp or ftps";
    else if (cfg->ca_file && access(cfg->ca_file, R_OK) != 0)
        why = "ca_file: cannot be read";
    else if (cfg->buffer_size && cfg->buffer_size < NB_CURL_BUFFER_MIN)
        why = "buffer_size: below NB_CURL_BUFFER_MIN";
    if (why) {
        snprintf(c->detail, sizeof(c->detail), "%s", why);
        return NB_ERR_INVAL;
    }
    c->size = cfg->buffer_size ? cfg->buffer_size : NB_CURL_BUFFER_SIZE;
    c->connect_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms
                                            : NB_CURL_CONNECT_TIMEOUT_MS;
    c->stall_ms = cfg->stall_timeout_ms ? cfg->stall_timeout_ms
                                        : NB_CURL_STALL_TIMEOUT_MS;
    c->buf = malloc(c->size);
    c->multi = curl_multi_init();
    c->easy = curl_easy_init();
    if (!c->buf || !c->multi || !c->easy) {
        snprintf(c->detail, sizeof(c->detail), "out of memory");
        err = NB_ERR_NOMEM;
        goto out;
    }
    SETOPT(CURLOPT_URL, cfg->url);
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https,ftp,ftps");
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_ERRORBUFFER, c->errbuf);
    SETOPT(CURLOPT_WRITEFUNCTION, on_write);
    SETOPT(CURLOPT_WRITEDATA, c);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, c);
    SETOPT(CURLOPT_FAILONERROR, 1L); /* >= 400: no body, the status */
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_ms);
    SETOPT(CURLOPT_USERAGENT, "nobrick-agent/1");
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    /* No Accept-Encoding: the bytes must be the file's bytes, and a
     * decoder could inflate a chunk past the buffer bound. HTTP/1.1 only:
     * libcurl keeps receiving a paused HTTP/2 stream into memory up to its
     * flow-control window (megabytes), which would undo the bound; one
     * range at a time gains nothing from HTTP/2 anyway. */
    SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    if (cfg->max_redirects) {
        SETOPT(CURLOPT_FOLLOWLOCATION, 1L);
        SETOPT(CURLOPT_MAXREDIRS, (long)cfg->max_redirects);
        SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, https ? "https" : "http,https");
    }
    if (cfg->ca_file)
        SETOPT(CURLOPT_CAINFO, cfg->ca_file);
    if (cfg->insecure) {
        SETOPT(CURLOPT_SSL_VERIFYPEER, 0L);
        SETOPT(CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (ftp && cfg->ftp_tls)
        SETOPT(CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    if (cfg->bearer_token) {
        SETOPT(CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
        SETOPT(CURLOPT_XOAUTH2_BEARER, cfg->bearer_token);
    }
    /* Connection reuse across ranges, within this instance only. */
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 1L);
    t->ctx = c;
    t->open = t_open;
    t->read = t_read;
    t->close = t_close;
    return NB_OK;
out:
    {
        char keep[sizeof(c->detail)];
        memcpy(keep, c->detail, sizeof(keep));
        nb_curl_free(c);
        memcpy(c->detail, keep, sizeof(keep));
    }
    if (t)
        memset(t, 0, sizeof(*t));
    return err;
}

nb_err nb_curl_get_small(const char *url, const struct nb_curl_config *cfg,
                         uint8_t *buf, uint32_t cap, uint32_t *len,
                         char *detail, uint32_t detail_size)
{
    if (len)
        *len = 0;
    if (detail && detail_size)
        detail[0] = 0;
    if (!len || (!buf && cap) || (!url && (!cfg || !cfg->url)))
        return NB_ERR_INVAL;
    struct nb_curl_config local;
    if (cfg)
        local = *cfg;
    else
        memset(&local, 0, sizeof(local));
    if (url)
        local.url = url;
    struct nb_curl *c = malloc(sizeof(*c));
    if (!c)
        return NB_ERR_NOMEM;
    struct nb_transport t;
    nb_err err = nb_curl_init(c, &local, &t);
    if (!err)
        err = start(c, 0, cap, 1);
    uint32_t n = 0;
    while (!err) {
        uint32_t got = 0;
        if (n == cap) {
            /* Full: one more byte would not fit. on_write never takes
             * more than `cap`, so this only sees the end or the error. */
            uint8_t extra;
            err = t_read(c, &extra, 1, &got);
            if (!err && got)
                err = fail(c, NB_ERR_NOSPC, "resource longer than %" PRIu32,
                           cap);
            break;
        }
        err = t_read(c, buf + n, cap - n, &got);
        if (!err && got == 0)
            break;
        n += got;
    }
    if (detail && detail_size)
        snprintf(detail, detail_size, "%s", c->detail);
    nb_curl_free(c);
    free(c);
    if (!err)
        *len = n;
    return err;
}
