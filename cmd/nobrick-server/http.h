/* http.h - nobrick-server's HTTP(S) front end on libmicrohttpd.
 *
 * Collects each request (headers, query, a JSON body of at most 64 KiB,
 * or an upload streamed to a temporary file in the artifact directory up
 * to max_package_size), hands it to srv_dispatch(), and turns the struct
 * srv_resp into an MHD response: a buffer, a file range read at its
 * offset (MHD_create_response_from_fd_at_offset64: sendfile on plain
 * HTTP, pread under TLS), or a multipart/byteranges stream read with
 * pread. Then one log line per request.
 *
 * Threads: MHD's internal polling thread with a pool of cfg->threads
 * threads, epoll where libmicrohttpd has it. TLS with MHD's GnuTLS when
 * tls_cert and tls_key are set.
 */
#ifndef NB_SRV_HTTP_H
#define NB_SRV_HTTP_H

#include <stddef.h>

#include "nb_err.h"
#include "server.h"

struct srv_http;

/* Start listening on cfg->listen : cfg->port. On failure one line into
 * msg. The server context must outlive the listener. */
nb_err srv_http_start(struct srv *s, struct srv_http **out, char *msg,
                      size_t msglen);

/* The port actually bound (cfg->port 0 picks one). */
unsigned srv_http_port(const struct srv_http *h);

/* Stop accepting, finish the requests in progress, free. NULL is fine. */
void srv_http_stop(struct srv_http *h);

#endif /* NB_SRV_HTTP_H */
