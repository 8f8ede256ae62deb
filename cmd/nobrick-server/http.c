/* http.c - libmicrohttpd glue: requests in, srv_dispatch(), responses
 * out, one log line per request; see http.h. The only file that includes
 * microhttpd.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "http.h"

#define DRAIN_MAX (1024 * 1024)   /* body bytes read past a cap, at most */
#define STREAM_BLOCK (64 * 1024)

struct srv_http {
    struct MHD_Daemon *d;
    struct srv *s;
    unsigned port;
    char *cert, *key;
};

/* One request, in MHD's per-request pointer. */
struct hreq {
    struct srv *s;
    struct timespec t0;
    char *method, *url;
    char *body;
    size_t len, cap;
    uint64_t received;          /* body bytes seen, stored or not */
    int too_large;
    int upload;                 /* streamed to upload_fd */
    int upload_fd;
    char upload_path[PATH_MAX];
    int status;                 /* once answered */
    uint64_t bytes;             /* of the answer's body */
    char device[SRV_ID_MAX + 1];
    char remote[INET6_ADDRSTRLEN + 8];
};

/* ------------------------------------------------------------ helpers */

static double elapsed_ms(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 +
           (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static void remote_of(struct MHD_Connection *c, char *out, size_t cap)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    out[0] = '\0';
    if (!ci || !ci->client_addr)
        return;
    if (ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)ci->client_addr;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        port = ntohs(in->sin_port);
        snprintf(out, cap, "%s:%u", ip, port);
    } else if (ci->client_addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)ci->client_addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        port = ntohs(in6->sin6_port);
        snprintf(out, cap, "[%s]:%u", ip, port);
    }
}

struct kvs {
    struct srv_kv *kv;
    unsigned n, cap;
};

static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind,
                               const char *key, const char *value)
{
    struct kvs *k = cls;
    (void)kind;
    if (k->n < k->cap) {
        k->kv[k->n].key = key;
        k->kv[k->n].value = value ? value : "";
        k->n++;
    }
    return MHD_YES;
}

static void count_status(struct srv *s, int st)
{
    __atomic_add_fetch(&s->m.http[st >= 100 && st < 600 ? st / 100 : 0], 1,
                       __ATOMIC_RELAXED);
    if (st >= 100 && st < 600)
        __atomic_add_fetch(&s->m.http_code[st], 1, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ responses */

/* A SRV_BODY_MULTI response, owned by its MHD response. */
struct multi {
    struct srv_resp r;
};

static ssize_t multi_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct multi *m = cls;
    long n = srv_multipart_read(&m->r, pos, buf, max);
    if (n < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (n == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    return (ssize_t)n;
}

static void multi_free(void *cls)
{
    struct multi *m = cls;
    if (m->r.fd >= 0)
        close(m->r.fd);
    free(m);
}

/* Build the MHD response; takes what resp owns (body, fd). */
static struct MHD_Response *make_response(struct srv_resp *resp,
                                          uint64_t *bytes)
{
    struct MHD_Response *mr = NULL;
    *bytes = 0;
    switch (resp->kind) {
    case SRV_BODY_BUF:
        mr = MHD_create_response_from_buffer(resp->body_len, resp->body,
                                             MHD_RESPMEM_MUST_FREE);
        if (mr) {
            *bytes = resp->body_len;
            resp->body = NULL;
        }
        break;
    case SRV_BODY_FILE:
        /* MHD reads at the offset (sendfile, or pread under TLS) and
         * closes the file with the response. */
        mr = MHD_create_response_from_fd_at_offset64(resp->length, resp->fd,
                                                     resp->offset);
        if (mr) {
            *bytes = resp->length;
            resp->fd = -1;
        }
        break;
    case SRV_BODY_MULTI: {
        struct multi *m = malloc(sizeof *m);
        uint64_t total = srv_multipart_length(resp);
        if (!m)
            break;
        memcpy(&m->r, resp, sizeof m->r);
        m->r.body = NULL;
        mr = MHD_create_response_from_callback(total, STREAM_BLOCK, multi_read,
                                               m, multi_free);
        if (mr) {
            *bytes = total;
            resp->fd = -1; /* now m's */
        } else {
            free(m);
        }
        break;
    }
    default:
        mr = MHD_create_response_from_buffer(0, (void *)"",
                                             MHD_RESPMEM_PERSISTENT);
        break;
    }
    if (!mr)
        return NULL;
    if (resp->content_type)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE,
                                resp->content_type);
    for (unsigned i = 0; i < resp->n_hdrs; i++)
        MHD_add_response_header(mr, resp->hdrs[i].name, resp->hdrs[i].value);
    return mr;
}

static enum MHD_Result send_resp(struct MHD_Connection *c, struct hreq *h,
                                 struct srv_resp *resp)
{
    uint64_t bytes;
    struct MHD_Response *mr = make_response(resp, &bytes);
    enum MHD_Result ret;
    if (!mr) {
        srv_resp_free(resp);
        return MHD_NO;
    }
    ret = MHD_queue_response(c, (unsigned)resp->status, mr);
    MHD_destroy_response(mr);
    h->status = resp->status;
    h->bytes = bytes;
    snprintf(h->device, sizeof h->device, "%s", resp->device);
    srv_resp_free(resp);
    return ret;
}

/* An answer before the body is read (the body is then not read at all). */
static enum MHD_Result early(struct MHD_Connection *c, struct hreq *h,
                             int status, const char *msg)
{
    struct srv_resp resp;
    srv_resp_init(&resp);
    srv_resp_error(&resp, status, "%s", msg);
    count_status(h->s, status);
    return send_resp(c, h, &resp);
}

/* ------------------------------------------------------------- requests */

static void upload_close(struct hreq *h)
{
    if (h->upload_fd >= 0) {
        close(h->upload_fd);
        h->upload_fd = -1;
    }
    if (h->upload_path[0]) {
        unlink(h->upload_path); /* gone already if a handler kept it */
        h->upload_path[0] = '\0';
    }
}

/* First call: headers are known, the body is not read yet. */
static enum MHD_Result begin(struct MHD_Connection *c, struct hreq *h)
{
    struct srv *s = h->s;
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t len = cl ? strtoull(cl, NULL, 10) : 0;
    if (!srv_is_upload(h->method, h->url)) {
        if (len > SRV_JSON_MAX) {
            char msg[64];
            snprintf(msg, sizeof msg, "body over %d bytes", SRV_JSON_MAX);
            return early(c, h, 413, msg);
        }
        return MHD_YES;
    }
    /* Uploads: refuse before reading (possibly) hundreds of MiB. */
    {
        struct srv_kv hv[SRV_MAX_HDRS];
        struct kvs k = {hv, 0, SRV_MAX_HDRS};
        struct srv_req r;
        memset(&r, 0, sizeof r);
        MHD_get_connection_values(c, MHD_HEADER_KIND, collect, &k);
        r.method = h->method;
        r.path = h->url;
        r.headers = hv;
        r.n_headers = k.n;
        if (!srv_auth_admin(s, &r))
            return early(c, h, 401, s->n_admin ? "missing or wrong admin token"
                                               : "the management API is "
                                                 "disabled: no admin token "
                                                 "is configured");
    }
    if (len > s->cfg->max_package_size) {
        char msg[96];
        snprintf(msg, sizeof msg, "upload over max_package_size (%llu bytes)",
                 (unsigned long long)s->cfg->max_package_size);
        return early(c, h, 413, msg);
    }
    if ((size_t)snprintf(h->upload_path, sizeof h->upload_path,
                         "%s/.upload-XXXXXX", s->cfg->artifacts) >=
        sizeof h->upload_path)
        return early(c, h, 500, "artifact directory path too long");
    h->upload_fd = mkstemp(h->upload_path);
    if (h->upload_fd < 0) {
        h->upload_path[0] = '\0';
        srv_logf(&s->log, SRV_LOG_ERROR, "cannot create an upload file in %s: "
                 "%s", s->cfg->artifacts, strerror(errno));
        return early(c, h, 500, "cannot store the upload");
    }
    h->upload = 1;
    return MHD_YES;
}

/* A piece of the body. MHD_NO drops the connection (a body far past its
 * cap, or a write error). */
static enum MHD_Result body_piece(struct hreq *h, const char *data, size_t n)
{
    h->received += n;
    if (h->upload) {
        if (h->too_large || h->received > h->s->cfg->max_package_size) {
            h->too_large = 1;
            return h->received > h->s->cfg->max_package_size + DRAIN_MAX
                       ? MHD_NO : MHD_YES;
        }
        while (n) {
            ssize_t w = write(h->upload_fd, data, n);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                srv_logf(&h->s->log, SRV_LOG_ERROR, "upload write: %s",
                         strerror(errno));
                return MHD_NO;
            }
            data += w;
            n -= (size_t)w;
        }
        return MHD_YES;
    }
    if (h->too_large || h->len + n > SRV_JSON_MAX) {
        h->too_large = 1;
        return h->received > SRV_JSON_MAX + DRAIN_MAX ? MHD_NO : MHD_YES;
    }
    if (h->len + n > h->cap) {
        size_t cap = h->cap ? h->cap : 4096;
        char *b;
        while (cap < h->len + n)
            cap *= 2;
        b = realloc(h->body, cap + 1);
        if (!b)
            return MHD_NO;
        h->body = b;
        h->cap = cap;
    }
    memcpy(h->body + h->len, data, n);
    h->len += n;
    h->body[h->len] = '\0';
    return MHD_YES;
}

/* The whole request is in: dispatch it. */
static enum MHD_Result finish(struct MHD_Connection *c, struct hreq *h)
{
    struct srv_kv hv[SRV_MAX_HDRS], qv[SRV_MAX_HDRS];
    struct kvs kh = {hv, 0, SRV_MAX_HDRS}, kq = {qv, 0, SRV_MAX_HDRS};
    struct srv_req r;
    struct srv_resp resp;
    enum MHD_Result ret;

    if (h->upload && h->too_large) {
        char msg[96];
        upload_close(h);
        snprintf(msg, sizeof msg, "upload over max_package_size (%llu bytes)",
                 (unsigned long long)h->s->cfg->max_package_size);
        return early(c, h, 413, msg);
    }
    if (h->upload && h->upload_fd >= 0) {
        /* Durable before a handler may keep it. */
        if (fsync(h->upload_fd) != 0) {
            upload_close(h);
            return early(c, h, 500, "cannot store the upload");
        }
        close(h->upload_fd);
        h->upload_fd = -1;
    }
    MHD_get_connection_values(c, MHD_HEADER_KIND, collect, &kh);
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect, &kq);
    memset(&r, 0, sizeof r);
    r.method = h->method;
    r.path = h->url;
    r.headers = hv;
    r.n_headers = kh.n;
    r.query = qv;
    r.n_query = kq.n;
    r.body = h->body;
    r.body_len = h->len;
    r.body_too_large = h->too_large;
    r.upload_path = h->upload ? h->upload_path : NULL;
    r.upload_size = h->received;
    r.remote = h->remote;
    srv_resp_init(&resp);
    srv_dispatch(h->s, &r, &resp);
    upload_close(h);
    ret = send_resp(c, h, &resp);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct srv *s = cls;
    struct hreq *h = *con_cls;
    (void)version;
    if (!h) {
        h = calloc(1, sizeof *h);
        if (!h)
            return MHD_NO;
        h->s = s;
        h->upload_fd = -1;
        clock_gettime(CLOCK_MONOTONIC, &h->t0);
        h->method = strdup(method);
        h->url = strdup(url);
        *con_cls = h;
        if (!h->method || !h->url)
            return MHD_NO;
        remote_of(c, h->remote, sizeof h->remote);
        return begin(c, h);
    }
    if (h->status) {          /* answered early: ignore the body */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        enum MHD_Result ret = body_piece(h, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return ret;
    }
    return finish(c, h);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct srv *s = cls;
    struct hreq *h = *con_cls;
    (void)c;
    if (!h)
        return;
    *con_cls = NULL;
    upload_close(h);
    if (s->log.requests && srv_log_on(&s->log, SRV_LOG_INFO)) {
        char status[8], bytes[24], ms[24];
        snprintf(status, sizeof status, "%d", h->status);
        snprintf(bytes, sizeof bytes, "%" PRIu64, h->bytes);
        snprintf(ms, sizeof ms, "%.1f", elapsed_ms(&h->t0));
        srv_log_kv(&s->log, SRV_LOG_INFO, NULL, "method", h->method, "path",
                   h->url, "status", h->status ? status : "-", "bytes", bytes,
                   "ms", ms, "device", h->device, "remote", h->remote,
                   "end", toe == MHD_REQUEST_TERMINATED_COMPLETED_OK
                              ? NULL : "connection closed",
                   (const char *)NULL);
    }
    free(h->method);
    free(h->url);
    free(h->body);
    free(h);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct srv *s = cls;
    char msg[512];
    size_t n;
    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    srv_log_kv(&s->log, SRV_LOG_WARN, msg, "from", "libmicrohttpd",
               (const char *)NULL);
}

/* ------------------------------------------------------------ lifecycle */

static char *read_file(const char *path, char *msg, size_t msglen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (!f) {
        snprintf(msg, msglen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && n < (1 << 20) &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) != NULL) {
        if (fread(buf, 1, (size_t)n, f) == (size_t)n) {
            buf[n] = '\0';
        } else {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    if (!buf)
        snprintf(msg, msglen, "%s: cannot read it (at most 1 MiB)", path);
    return buf;
}

nb_err srv_http_start(struct srv *s, struct srv_http **out, char *msg,
                      size_t msglen)
{
    const struct srv_config *cfg = s->cfg;
    struct srv_http *h = calloc(1, sizeof *h);
    struct sockaddr_storage ss;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    const union MHD_DaemonInfo *di;
    int tls = cfg->tls_cert[0] != '\0';
    *out = NULL;
    if (!h) {
        snprintf(msg, msglen, "out of memory");
        return NB_ERR_NOMEM;
    }
    h->s = s;
    memset(&ss, 0, sizeof ss);
    if (inet_pton(AF_INET, cfg->listen,
                  &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        ((struct sockaddr_in *)&ss)->sin_family = AF_INET;
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)cfg->port);
    } else if (inet_pton(AF_INET6, cfg->listen,
                         &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        ((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)cfg->port);
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(msg, msglen, "listen %s: not an IP address", cfg->listen);
        free(h);
        return NB_ERR_INVAL;
    }
    flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) ? MHD_USE_EPOLL
                                                         : MHD_USE_AUTO;
    if (tls) {
        if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
            snprintf(msg, msglen, "this libmicrohttpd has no TLS support");
            free(h);
            return NB_ERR_UNSUPPORTED;
        }
        h->cert = read_file(cfg->tls_cert, msg, msglen);
        h->key = h->cert ? read_file(cfg->tls_key, msg, msglen) : NULL;
        if (!h->key) {
            free(h->cert);
            free(h);
            return NB_ERR_NOENT;
        }
        flags |= MHD_USE_TLS;
    }
    h->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->threads,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->connection_timeout,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
        tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, h->cert,
        MHD_OPTION_HTTPS_MEM_KEY, h->key,
        MHD_OPTION_END);
    if (!h->d) {
        snprintf(msg, msglen, "cannot listen on %s port %llu%s", cfg->listen,
                 (unsigned long long)cfg->port,
                 tls ? " (or the TLS certificate or key is not usable)" : "");
        srv_http_stop(h);
        return NB_ERR_IO;
    }
    di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : (unsigned)cfg->port;
    *out = h;
    return NB_OK;
}

unsigned srv_http_port(const struct srv_http *h)
{
    return h->port;
}

void srv_http_stop(struct srv_http *h)
{
    if (!h)
        return;
    if (h->d)
        MHD_stop_daemon(h->d);
    if (h->key) {
        memset(h->key, 0, strlen(h->key)); /* the private key */
        free(h->key);
    }
    free(h->cert);
    free(h);
}
