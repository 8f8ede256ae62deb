/* server_http.c - the requests of `nobrick server ...` (libcurl, jansson):
 * JSON in and out, streamed uploads with a progress bar, list pages, and
 * the one-line error for every way a request can go wrong; see server.h.
 *
 * One curl handle per invocation, reset before each request (so one
 * request's options never leak into the next) but keeping its
 * connections. Redirects are not followed: the admin token goes only to
 * the server that was named.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server.h"

#define CONNECT_TIMEOUT_S 10L
#define REQUEST_TIMEOUT_S 120L /* a JSON request, answer included */
#define STALL_S 60L            /* an upload with no progress for this long */

/* ------------------------------------------------------------ answers */

struct rx {
    char *p;
    size_t len, cap;
    int over;
};

static size_t on_rx(char *p, size_t size, size_t n, void *ud)
{
    struct rx *r = ud;
    size_t len = size * n;
    if (len > SRV_ANSWER_MAX - r->len) {
        r->over = 1;
        return 0;
    }
    if (r->len + len + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + len + 1)
            cap *= 2;
        char *q = realloc(r->p, cap);
        if (!q) {
            r->over = 1;
            return 0;
        }
        r->p = q;
        r->cap = cap;
    }
    memcpy(r->p + r->len, p, len);
    r->len += len;
    r->p[r->len] = '\0';
    return len;
}

/* The server's URL as the user gave it (base without "/api/v1"). */
static void server_url(const struct srv *s, char *out, size_t cap)
{
    size_t n = strlen(s->base);
    if (n >= 7)
        n -= 7;
    snprintf(out, cap, "%.*s", (int)n, s->base);
}

/* Start a request: reset the handle, the options every request has. */
static struct curl_slist *prepare(struct srv *s, const char *url,
                                  struct rx *rx, const char *content_type)
{
    CURL *c = s->curl;
    curl_easy_reset(c);
    s->curl_err[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, s->curl_err);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_rx);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, rx);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "nobrick");
    if (s->common[SO_CACERT].set)
        curl_easy_setopt(c, CURLOPT_CAINFO, s->common[SO_CACERT].value);
    struct curl_slist *h = NULL, *t;
    const char *lines[3] = {s->auth, "Accept: application/json",
                            content_type};
    for (int i = 0; i < 3 && lines[i]; i++) {
        t = curl_slist_append(h, lines[i]);
        if (!t) {
            curl_slist_free_all(h);
            return NULL;
        }
        h = t;
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    return h;
}

/* One line for a request that got no HTTP answer. */
static int transport_fail(struct srv *s, CURLcode cc)
{
    char url[SRV_URL_MAX];
    server_url(s, url, sizeof(url));
    const char *why = s->curl_err[0] ? s->curl_err : curl_easy_strerror(cc);
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
        return fail("%s: cannot reach the server at %s: %s (is "
                    "nobrick-server running there? see --server and "
                    "NOBRICK_SERVER)",
                    s->cmd, url, why);
    case CURLE_OPERATION_TIMEDOUT:
        return fail("%s: the server at %s did not answer in time: %s",
                    s->cmd, url, why);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
        return fail("%s: TLS with %s failed: %s (pass the server's CA "
                    "certificate with --cacert FILE)",
                    s->cmd, url, why);
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        return fail("%s: the connection to %s broke: %s", s->cmd, url,
                    why);
    default:
        return fail("%s: %s: %s", s->cmd, url, why);
    }
}

/* After curl_easy_perform: the answer, or one line saying what went
 * wrong. */
static int finish(struct srv *s, CURLcode cc, struct rx *rx, json_t **out)
{
    if (out)
        *out = NULL;
    if (rx->over && cc != CURLE_OK)
        return fail("%s: the server's answer is larger than %u MiB",
                    s->cmd, SRV_ANSWER_MAX >> 20);
    if (cc != CURLE_OK)
        return transport_fail(s, cc);
    long status = 0;
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
    json_error_t je;
    json_t *ans = NULL;
    if (rx->len)
        ans = json_loadb(rx->p, rx->len, 0, &je);
    char url[SRV_URL_MAX];
    server_url(s, url, sizeof(url));
    if (status >= 200 && status < 300) {
        if (rx->len && !json_is_object(ans)) {
            json_decref(ans);
            return fail("%s: HTTP %ld from %s, but the answer is not a "
                        "JSON object (is this nobrick-server?)",
                        s->cmd, status, url);
        }
        if (!out) {
            json_decref(ans);
            return 0;
        }
        *out = ans ? ans : json_object();
        return *out ? 0 : fail("%s: out of memory", s->cmd);
    }
    const char *code = js_str(ans, "error"), *msg = js_str(ans, "message");
    int rc;
    if (status == 401 || status == 403)
        rc = fail("%s: the server refused the admin token (HTTP %ld%s%s%s%s"
                  "); check --token-file or NOBRICK_ADMIN_TOKEN",
                  s->cmd, status, code ? " " : "", code ? code : "",
                  msg ? ": " : "", msg ? msg : "");
    else if (code || msg)
        rc = fail("%s: %s (HTTP %ld%s%s)", s->cmd, msg ? msg : code, status,
                  code ? " " : "", code ? code : "");
    else if (status == 404)
        rc = fail("%s: HTTP 404 from %s with no error object: no "
                  "management API there (is --server a nobrick-server?)",
                  s->cmd, url);
    else
        rc = fail("%s: HTTP %ld from %s (not an error answer of "
                  "nobrick-server)",
                  s->cmd, status, url);
    json_decref(ans);
    return rc;
}

int srv_json(struct srv *s, const char *method, const char *path,
             json_t *body, json_t **out)
{
    char url[SRV_URL_MAX * 2];
    if (snprintf(url, sizeof(url), "%s%s", s->base, path) >=
        (int)sizeof(url))
        return fail("%s: the request URL is too long", s->cmd);
    char *text = NULL;
    if (body && !(text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15))))
        return fail("%s: out of memory", s->cmd);
    struct rx rx = {0};
    struct curl_slist *h =
        prepare(s, url, &rx, text ? "Content-Type: application/json" : NULL);
    if (!h) {
        free(text);
        return fail("%s: out of memory", s->cmd);
    }
    CURL *c = s->curl;
    curl_easy_setopt(c, CURLOPT_TIMEOUT, REQUEST_TIMEOUT_S);
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else {
        /* POST and PUT both send their body as POST fields; PUT renamed. */
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, text ? (long)strlen(text)
                                                        : 0L);
        curl_easy_setopt(c, CURLOPT_COPYPOSTFIELDS, text ? text : "");
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode cc = curl_easy_perform(c);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
    free(text);
    int rc = finish(s, cc, &rx, out);
    free(rx.p);
    return rc;
}

/* ------------------------------------------------------------- uploads */

struct upload {
    FILE *f;
    uint64_t size, sent;
    int read_errno, shrank;
    /* progress */
    const char *label;
    int tty, drawn, done_drawn, cols;
    double t0, last;
};

static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
    struct upload *u = ud;
    uint64_t left = u->size - u->sent;
    size_t want = size * n;
    if ((uint64_t)want > left)
        want = (size_t)left;
    if (want == 0)
        return 0;
    size_t got = fread(buf, 1, want, u->f);
    if (got == 0) {
        if (ferror(u->f))
            u->read_errno = errno ? errno : EIO;
        else
            u->shrank = 1;
        return CURL_READFUNC_ABORT;
    }
    u->sent += got;
    return got;
}

static void fmt_eta(double s, char *out, size_t cap)
{
    if (s < 0 || s > 359999)
        snprintf(out, cap, "--:--");
    else if (s >= 3600)
        snprintf(out, cap, "%d:%02d:%02d", (int)s / 3600,
                 (int)s / 60 % 60, (int)s % 60);
    else
        snprintf(out, cap, "%d:%02d", (int)s / 60, (int)s % 60);
}

/* "done/total UNIT", both in the unit of the total: "4.5/10.0 MiB". */
static void fmt_pair(uint64_t done, uint64_t total, char *out, size_t cap)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double d = (double)done, t = (double)total;
    int u = 0;
    while (t >= 1024 && u < 4) {
        d /= 1024;
        t /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, cap, "%" PRIu64 "/%" PRIu64 " B", done, total);
    else
        snprintf(out, cap, "%.1f/%.1f %s", d, t, unit[u]);
}

/* "\rLABEL [#####-----]  45%  4.5/10.0 MiB  2.1 MiB/s  ETA 0:03", in the
 * terminal's width; once all is sent, "waiting for the server". */
static void draw(struct upload *u, uint64_t done, double t)
{
    double el = t - u->t0, rate = el > 0.05 ? (double)done / el : 0;
    double pct = u->size ? 100.0 * (double)done / (double)u->size : 100.0;
    char pair[48], r[32], eta[16], tail[128], bar[40];
    fmt_pair(done, u->size, pair, sizeof(pair));
    if (done >= u->size) {
        snprintf(tail, sizeof(tail), "  %s  sent; the server checks it",
                 pair);
    } else {
        fmt_size(rate, r, sizeof(r));
        fmt_eta(rate > 0 ? (double)(u->size - done) / rate : -1, eta,
                sizeof(eta));
        snprintf(tail, sizeof(tail), "  %s  %s/s  ETA %s", pair, r, eta);
    }
    /* The bar keeps its width while the tail changes: room for a tail
     * of up to 44 characters is kept. */
    int ll = (int)strlen(u->label), labw = ll > 20 ? 20 : ll;
    int tw = (int)strlen(tail) > 44 ? (int)strlen(tail) : 44;
    int barw = u->cols - 1 - labw - 1 - 5 - tw;
    if (barw > 32)
        barw = 32;
    if (barw < 10)
        barw = 0;
    bar[0] = '\0';
    if (barw)
        fmt_bar(pct, barw, bar, sizeof(bar));
    fprintf(stderr, "\r%.*s%s %s%s%3.0f%%%s\033[K",
            ll > labw ? labw - 3 : ll, u->label, ll > labw ? "..." : "", bar,
            barw ? " " : "", pct, tail);
    fflush(stderr);
    u->drawn = 1;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    struct upload *u = ud;
    uint64_t done = ulnow < 0 ? 0 : (uint64_t)ulnow;
    if (!u->tty || u->done_drawn)
        return 0;
    double t = now_s();
    if (t - u->last < 0.1 && done < u->size)
        return 0;
    u->last = t;
    draw(u, done, t);
    u->done_drawn = done >= u->size;
    return 0;
}

static int term_cols(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40)
        return ws.ws_col > 200 ? 200 : ws.ws_col;
    return 80;
}

int srv_upload(struct srv *s, const char *method, const char *path,
               const char *file, const char *label, json_t **out)
{
    if (out)
        *out = NULL;
    char url[SRV_URL_MAX * 2];
    if (snprintf(url, sizeof(url), "%s%s", s->base, path) >=
        (int)sizeof(url))
        return fail("%s: the request URL is too long", s->cmd);
    struct upload u;
    memset(&u, 0, sizeof(u));
    u.f = fopen(file, "rb");
    if (!u.f)
        return fail("%s: %s", file, strerror(errno));
    struct stat st;
    if (fstat(fileno(u.f), &st) != 0) {
        int e = errno;
        fclose(u.f);
        return fail("%s: %s", file, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        fclose(u.f);
        return fail("%s: not a regular file", file);
    }
    u.size = (uint64_t)st.st_size;
    u.label = label;
    u.tty = isatty(STDERR_FILENO);
    u.cols = term_cols();
    u.t0 = u.last = now_s();

    struct rx rx = {0};
    struct curl_slist *h =
        prepare(s, url, &rx, "Content-Type: application/octet-stream");
    if (!h) {
        fclose(u.f);
        return fail("%s: out of memory", s->cmd);
    }
    CURL *c = s->curl;
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &u);
    if (strcmp(method, "PUT") == 0) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)u.size);
    } else {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)u.size);
    }
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &u);
    /* No overall limit (a large package on a slow link); a stall ends it. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, STALL_S);
    CURLcode cc = curl_easy_perform(c);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
    fclose(u.f);
    double el = now_s() - u.t0;
    if (u.drawn)
        fputs("\r\033[K", stderr); /* the line is the summary's, or the error's */
    int rc;
    if (u.read_errno)
        rc = fail("%s: reading it failed after %" PRIu64 " bytes: %s", file,
                  u.sent, strerror(u.read_errno));
    else if (u.shrank)
        rc = fail("%s: the file got shorter while it was sent (%" PRIu64
                  " of %" PRIu64 " bytes)",
                  file, u.sent, u.size);
    else
        rc = finish(s, cc, &rx, out);
    free(rx.p);
    if (rc == 0) {
        char sz[64], hs[32], rate[32];
        fmt_size((double)u.size, hs, sizeof(hs));
        if (u.size >= 1024)
            snprintf(sz, sizeof(sz), "%s (%" PRIu64 " bytes)", hs, u.size);
        else
            snprintf(sz, sizeof(sz), "%" PRIu64 " bytes", u.size);
        fmt_size(el > 0.001 ? (double)u.size / el : 0, rate, sizeof(rate));
        fprintf(stderr, "%s: %s sent in %.1f s, %s/s\n", label, sz, el,
                rate);
        fflush(stderr);
    }
    return rc;
}

/* --------------------------------------------------------------- lists */

char *srv_esc(struct srv *s, const char *v)
{
    char *e = curl_easy_escape(s->curl, v, 0);
    if (!e)
        fail("%s: out of memory", s->cmd);
    return e;
}

int srv_list(struct srv *s, const char *path, const char *query,
             uint64_t limit, json_t **items, int *more)
{
    json_t *all = json_array();
    char *after = NULL; /* curl_free'd: escaped "next" of the last page */
    int rc = EXIT_FAIL;
    *items = NULL;
    *more = 0;
    if (!all)
        return fail("%s: out of memory", s->cmd);
    for (;;) {
        uint64_t got = json_array_size(all);
        uint64_t want = limit ? limit - got : SRV_PAGE_MAX;
        if (want > SRV_PAGE_MAX)
            want = SRV_PAGE_MAX;
        char p[SRV_URL_MAX];
        int n = snprintf(p, sizeof(p), "%s?%s%slimit=%" PRIu64 "%s%s", path,
                         query ? query : "", query && *query ? "&" : "",
                         want, after ? "&after=" : "", after ? after : "");
        if (n >= (int)sizeof(p)) {
            fail("%s: the request URL is too long", s->cmd);
            goto out;
        }
        json_t *ans;
        if (srv_json(s, "GET", p, NULL, &ans))
            goto out;
        json_t *page = json_object_get(ans, "items");
        json_t *next = json_object_get(ans, "next");
        if (!json_is_array(page) || (next && !json_is_null(next) &&
                                     !json_is_string(next))) {
            json_decref(ans);
            fail("%s: the server's list has no 'items' array or a bad "
                 "'next' (not the management API of docs/server-api.md?)",
                 s->cmd);
            goto out;
        }
        size_t k;
        json_t *it;
        json_array_foreach(page, k, it)
        {
            if (limit && json_array_size(all) >= limit)
                break;
            json_array_append(all, it);
        }
        int has_next = json_is_string(next);
        char *e = NULL;
        if (has_next) {
            /* A page that is empty, or names the same next again, would
             * loop for ever. */
            e = srv_esc(s, json_string_value(next));
            if (!e || json_array_size(page) == 0 ||
                (after && strcmp(e, after) == 0)) {
                if (e)
                    fail("%s: the server's list pages do not advance "
                         "(next '%s' again)",
                         s->cmd, json_string_value(next));
                curl_free(e);
                json_decref(ans);
                goto out;
            }
        }
        json_decref(ans);
        curl_free(after);
        after = e;
        if (!has_next)
            break;
        if (limit && json_array_size(all) >= limit) {
            *more = 1;
            break;
        }
    }
    *items = all;
    all = NULL;
    rc = 0;
out:
    curl_free(after);
    json_decref(all);
    return rc;
}

void srv_print_json(const json_t *j)
{
    json_dumpf(j, stdout, JSON_COMPACT | JSON_REAL_PRECISION(15));
    putchar('\n');
    fflush(stdout);
}
