/* nb_transport_curl.h - the HTTP(S) and FTP(S) transport over libcurl.
 *
 * Fills a `struct nb_transport` (core/nb_transport.h) for one URL:
 *
 *   http://, https://  a GET with "Range: bytes=a-b" (the end is always
 *                      sent, so a server stops where we asked);
 *   ftp://             RETR after "REST a" (libcurl's CURLOPT_RANGE for
 *                      FTP: it closes the data connection after b-a+1
 *                      bytes); with `ftp_tls` set, explicit FTPS (AUTH
 *                      TLS, control and data connections encrypted, the
 *                      transfer refused when the server cannot);
 *   ftps://            implicit FTPS (TLS from the first byte, port 990).
 *
 * FTP credentials go in the URL (ftp://user:password@host/path); without
 * them libcurl logs in as anonymous. HTTP is always HTTP/1.1 (see the
 * memory bound below). libcurl's proxy environment variables (http_proxy,
 * https_proxy, no_proxy, ...) apply.
 *
 * Pull over push: libcurl pushes bytes into a write callback; this port
 * drives the transfer with the multi interface (curl_multi_perform +
 * curl_multi_poll) only inside open() and read(), into a bounded buffer of
 * its own. When that buffer cannot take the next chunk, the transfer is
 * paused (CURL_WRITEFUNC_PAUSE; libcurl then keeps that one chunk and
 * stops reading the socket) until read() has drained it, so memory stays
 * bounded whatever the peer sends: this port's buffer, libcurl's receive
 * buffer and one paused chunk (each at most CURL_MAX_WRITE_SIZE, 16 KiB,
 * for HTTP/1.1 and FTP without content decoding, which is never asked
 * for), plus TLS state.
 *
 * What a range may deliver (never more than asked):
 *   - 206 Partial Content: its Content-Range must start at the requested
 *     offset and end within the requested range, and Content-Length, when
 *     given, must match it; else NB_ERR_RANGE before a byte is delivered.
 *   - 200 OK (a server that ignores Range): NB_ERR_RANGE, unless the
 *     range starts at 0 and Content-Length is not larger than the range
 *     (that is: we asked for the whole file, or a server without Range
 *     support has a file no longer than what we asked for). Skipping to
 *     the offset by discarding bytes is deliberately NOT done: for a large
 *     offset it would move most of the file again over a link that is
 *     slow, metered or just dropped us.
 *   - A peer that sends more bytes than requested anyway (no
 *     Content-Length, or a lying one) is cut off at the requested length:
 *     the bytes inside the range are delivered, then read() returns
 *     NB_ERR_RANGE where the end would have been.
 *   - A range that yields no byte at all (FTP REST to exactly the end of
 *     the file, an empty 200) is NB_ERR_RANGE; one that ends early is the
 *     end of what the peer sends (read() gives *got = 0; the download
 *     engine reports NB_ERR_TRUNCATED).
 *
 * Errors (open() and read()):
 *   NB_ERR_IO      cannot connect, connect timeout, reset, TLS handshake
 *                  failure, a stall (no byte for `stall_timeout_ms`), HTTP
 *                  5xx, any other transfer failure: worth retrying later.
 *   NB_ERR_NOENT   HTTP 404, 410; FTP 550 (no such file or directory).
 *   NB_ERR_DENIED  HTTP 401, 403 and every other 4xx; a 3xx that is not
 *                  followed; FTP login refused (530); the server's TLS
 *                  certificate fails verification (wrong CA, wrong name,
 *                  expired) or an FTP server refuses TLS when `ftp_tls`
 *                  requires it: this is a refusal by policy, not a bad
 *                  link, and retrying will not change it.
 *   NB_ERR_RANGE   HTTP 416, see the rules above; FTP REST refused or
 *                  past the end of the file.
 *   NB_ERR_INVAL   malformed URL, unsupported scheme, unreadable CA file.
 *   NB_ERR_NOMEM   allocation failure.
 *   NB_ERR_STATE   read() without an open range (or after close()).
 * nb_curl_detail() gives a one-line reason for logs and reports.
 *
 * Allocation: unlike the core this port allocates (libcurl handles, its
 * buffer) in nb_curl_init() and frees it in nb_curl_free(). A `struct
 * nb_curl` must not be copied or moved while initialised (libcurl keeps a
 * pointer to it); the `struct nb_transport` filled by init points at it.
 * One thread at a time may use one instance; separate instances are
 * independent.
 */
#ifndef NB_TRANSPORT_CURL_H
#define NB_TRANSPORT_CURL_H

#include <stdint.h>

#include <curl/curl.h>

#include "nb_err.h"
#include "nb_transport.h"

#define NB_CURL_CONNECT_TIMEOUT_MS 10000u /* default connect_timeout_ms */
#define NB_CURL_STALL_TIMEOUT_MS 30000u   /* default stall_timeout_ms */
#define NB_CURL_BUFFER_SIZE 32768u        /* default buffer_size */
#define NB_CURL_BUFFER_MIN CURL_MAX_WRITE_SIZE

/* Configuration. A zeroed field means its default. The strings are
 * copied by libcurl in nb_curl_init(); they need not outlive it. */
struct nb_curl_config {
    /* The resource: http://, https://, ftp:// or ftps://. Required. */
    const char *url;
    /* PEM file of the CA certificate(s) that the server's certificate must
     * chain to (HTTPS, FTPS). NULL: the system's default store. For a
     * self-signed server certificate, this file is that certificate. */
    const char *ca_file;
    /* 1: do not verify the server's certificate or name. For tests only:
     * it lets anybody on the path act as the server. (The package is
     * still checked against its signed manifest, so a device cannot be
     * given bad firmware this way, but it can be starved or tracked.) */
    int insecure;
    /* 1: ftp:// URLs use explicit TLS (AUTH TLS) for control and data,
     * and the transfer fails with NB_ERR_DENIED when the server cannot. */
    int ftp_tls;
    /* For HTTP(S): sent as "Authorization: Bearer <token>" (only to the
     * host of `url`, never to a host a redirect points at). NULL: none. */
    const char *bearer_token;
    /* Redirects followed (HTTP(S) only; from https, only to https).
     * 0: none (a 3xx is NB_ERR_DENIED). */
    uint32_t max_redirects;
    /* Time to establish the connection (TCP, TLS, FTP login); 0: 10 s. */
    uint32_t connect_timeout_ms;
    /* No byte for this long while open() or read() waits: NB_ERR_IO
     * (open() waits up to connect + stall for the response to start);
     * 0: 30 s. */
    uint32_t stall_timeout_ms;
    /* This port's receive buffer, allocated by nb_curl_init(); 0: 32 KiB;
     * at least NB_CURL_BUFFER_MIN (libcurl's largest chunk). */
    uint32_t buffer_size;
};

/* One transport instance. Private: use the functions below. */
struct nb_curl {
    CURLM *multi;
    CURL *easy;
    uint8_t *buf;
    uint32_t size, head, fill;      /* buffer, its unread bytes at head */
    uint32_t connect_ms, stall_ms;
    uint32_t offset, len;           /* the open range */
    uint32_t recv;                  /* bytes of the range accepted so far */
    uint8_t active;                 /* a range is open */
    uint8_t attached;               /* easy handle is in the multi */
    uint8_t whole;                  /* a whole-resource GET (no Range) */
    uint8_t paused;                 /* the write callback paused the transfer */
    uint8_t checked;                /* the response was checked */
    uint8_t done;                   /* libcurl finished the transfer */
    uint8_t have_cr;                /* a Content-Range header was seen */
    uint64_t cr_start, cr_end;      /* its bytes a-b */
    CURLcode result;                /* the transfer's result, once done */
    nb_err err;                     /* the range's error, once known */
    char range[32];
    char errbuf[CURL_ERROR_SIZE];
    char detail[CURL_ERROR_SIZE + 64];
};

/* Call once per process before any other function here, before threads
 * are started (curl_global_init; this port keeps no global state of its
 * own). NB_ERR_IO if libcurl cannot initialise (e.g. its TLS library). */
nb_err nb_curl_global_init(void);

/* Release libcurl's global state (curl_global_cleanup), after the last
 * nb_curl_free(); optional at process exit. */
void nb_curl_global_cleanup(void);

/* Check `cfg`, allocate `c`'s handles and buffer, and fill `t` (t->ctx =
 * c). NB_ERR_INVAL when a field is wrong (nb_curl_detail() says which:
 * no URL, a scheme other than http, https, ftp, ftps, an unreadable
 * ca_file, buffer_size below NB_CURL_BUFFER_MIN); NB_ERR_NOMEM. Nothing is
 * sent before open(). On failure `c` needs no nb_curl_free() (harmless). */
nb_err nb_curl_init(struct nb_curl *c, const struct nb_curl_config *cfg,
                    struct nb_transport *t);

/* Close any open range and free everything init allocated. Safe on a
 * zeroed or failed `c`, and twice. */
void nb_curl_free(struct nb_curl *c);

/* One line on the last error of `c` ("HTTP 404", "no data for 500 ms",
 * libcurl's message...), "" if none. Owned by `c`. */
const char *nb_curl_detail(const struct nb_curl *c);

/* GET a small resource whole (a manifest, a JSON document) into `buf`:
 * no Range, at most `cap` bytes; *len is its length. `url` overrides
 * cfg->url when not NULL (so one config serves several URLs); `cfg` may
 * be NULL if `url` is given (all defaults). Errors as above, and
 * NB_ERR_NOSPC when the resource is longer than `cap` (nothing beyond
 * `cap` is ever written; *len is then 0). A 206 answer is NB_ERR_RANGE.
 * `detail`, when not NULL, receives nb_curl_detail()'s line (at most
 * `detail_size` bytes with the NUL). */
nb_err nb_curl_get_small(const char *url, const struct nb_curl_config *cfg,
                         uint8_t *buf, uint32_t cap, uint32_t *len,
                         char *detail, uint32_t detail_size);

#endif
