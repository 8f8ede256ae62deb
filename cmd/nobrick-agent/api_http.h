/* api_http.h - the device API over HTTP(S): libcurl's easy interface and
 * jansson, behind struct nb_agent_api (agent.h).
 *
 * One easy handle per device, reused so that connections are kept alive.
 * Every request has a connect timeout and a total timeout; answers are
 * bounded (NB_API_HTTP_BODY_MAX, the device API's limit); the device's
 * bearer token goes to the server only (never to a manifest URL on
 * another host). Status codes map to errors as agent.h says.
 */
#ifndef API_HTTP_H
#define API_HTTP_H

#include <stdint.h>

#include "agent.h"

#define NB_API_HTTP_BODY_MAX 65536u
#define NB_API_HTTP_TOKEN_MAX 512

struct nb_api_http_config {
    const char *server_url;  /* "http://127.0.0.1:8080" (no /api/v1) */
    const char *device_id;
    const char *token;       /* device token, or the enrolment token */
    const char *ca_file;     /* NULL: the system's CAs */
    uint32_t connect_timeout_ms;
    uint32_t timeout_ms;     /* a whole request */
    /* The server gave the device its own token (enrolment): store it.
     * NULL: kept in RAM only. */
    void (*token_issued)(void *ctx, const char *token);
    void *token_ctx;
};

struct nb_api_http; /* opaque: a curl handle and buffers */

/* NB_ERR_NOMEM, NB_ERR_INVAL (missing server_url or device_id, a URL or
 * token too long). */
nb_err nb_api_http_new(struct nb_api_http **out,
                       const struct nb_api_http_config *cfg);
void nb_api_http_free(struct nb_api_http *h);

/* Fill `api` with the callbacks (ctx = h). */
void nb_api_http_interface(struct nb_api_http *h, struct nb_agent_api *api);

/* Error of an HTTP status (0: no answer). Exposed for tests. */
nb_err nb_api_http_status_err(long status);

/* Parse a check-in answer (JSON text). Exposed for tests. */
nb_err nb_api_http_parse_checkin(const char *json, size_t len,
                                 struct nb_agent_checkin_reply *out);

#endif
