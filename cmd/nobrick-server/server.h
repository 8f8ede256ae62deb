/* server.h - the shared context of nobrick-server and its request model.
 *
 * Every handler sees a request as a struct srv_req and fills in a struct
 * srv_resp; none of them touches libmicrohttpd. http.c translates MHD's
 * callbacks into these structs, and srv_dispatch() routes them, so unit
 * tests and the libFuzzer target drive the whole server without a socket.
 *
 * A struct srv holds what is fixed after start-up (configuration, token
 * hashes, the artifact directory, the database pool) and counters for
 * /metrics. Everything else lives in the database: several server
 * processes may share one PostgreSQL database behind a load balancer.
 *
 * Routes (docs/device-api.md, docs/server-api.md):
 *   GET  /metrics, GET /healthz                           metrics.c
 *   GET|HEAD /api/v1/artifacts/{name}                     artifacts.c
 *   POST /api/v1/devices/{id}/checkin|reports|health      device_api.c
 *   /api/v1/packages..., /api/v1/rollouts..., and every other
 *        /api/v1/devices... path                          srv_mgmt_handle
 *        (called only with a valid admin token)           (mgmt_api.c)
 *   /{tenant}/controller/v1/...                           srv_ddi_handle
 *        (does its own authentication)                    (ddi.c)
 */
#ifndef NB_SRV_SERVER_H
#define NB_SRV_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "nb_err.h"

#define SRV_JSON_MAX (64 * 1024)   /* a JSON request body, at most */
#define SRV_ID_MAX 64              /* device, tag, group IDs: 1..64 chars */
#define SRV_TOKEN_MAX 256          /* a bearer token, at most */
#define SRV_NAME_MAX 255           /* an artifact file name, at most */
#define SRV_MAX_HDRS 64            /* headers / query args kept per request */
#define SRV_MAX_RANGES 16          /* ranges of one multi-range request */
#define SRV_URL_MAX 1024

/* ------------------------------------------------------------- requests */

struct srv_kv {
    const char *key;
    const char *value;
};

/* One request. All pointers stay valid until srv_dispatch returns; the
 * caller (http.c, a test, the fuzzer) owns them. */
struct srv_req {
    const char *method;         /* "GET", "POST", ... */
    const char *path;           /* percent-decoded, without the query */
    const struct srv_kv *headers;   /* names compared case-insensitively */
    unsigned n_headers;
    const struct srv_kv *query;     /* decoded query arguments */
    unsigned n_query;
    /* The body: JSON requests carry it here (at most SRV_JSON_MAX; a
     * longer one never reaches a handler: body_too_large is set and the
     * dispatcher answers 413). */
    const char *body;
    size_t body_len;
    int body_too_large;
    /* Uploads (srv_is_upload): the body was streamed to this file in the
     * artifact directory, never held in memory. A handler that keeps it
     * renames it (same directory, so rename(2) is atomic); whatever is
     * left there is deleted after the answer. NULL for other requests. */
    const char *upload_path;
    uint64_t upload_size;
    const char *remote;         /* "ip:port" of the client, or "" */
};

/* Header value (case-insensitive name) or query argument; NULL if absent. */
const char *srv_req_header(const struct srv_req *r, const char *name);
const char *srv_req_query(const struct srv_req *r, const char *key);

/* 1 for requests whose body is a package or file upload, streamed to a
 * temporary file up to max_package_size instead of the 64 KiB JSON cap:
 * POST /api/v1/packages and PUT /api/v1/packages/{id}/files/{name}. */
int srv_is_upload(const char *method, const char *path);

/* ------------------------------------------------------------ responses */

enum srv_body {
    SRV_BODY_NONE = 0,
    SRV_BODY_BUF,      /* body/body_len, malloc'ed, owned by the response */
    SRV_BODY_FILE,     /* fd: bytes [offset, offset + length) of the file */
    SRV_BODY_MULTI     /* fd: ranges[] as multipart/byteranges */
};

struct srv_range {
    uint64_t first, last;   /* inclusive */
};

struct srv_resp {
    int status;                   /* 0 until a handler answers */
    enum srv_body kind;
    char *body;                   /* SRV_BODY_BUF: malloc'ed */
    size_t body_len;
    const char *content_type;     /* static string, or NULL */
    int fd;                       /* SRV_BODY_FILE / MULTI: owned, or -1 */
    uint64_t file_size;
    uint64_t offset, length;      /* SRV_BODY_FILE */
    struct srv_range ranges[SRV_MAX_RANGES];   /* SRV_BODY_MULTI */
    unsigned n_ranges;
    char boundary[40];            /* SRV_BODY_MULTI */
    /* Extra headers (copied; cut to fit). */
    struct {
        char name[40];
        char value[160];
    } hdrs[6];
    unsigned n_hdrs;
    /* For the request log line and /metrics. */
    char device[SRV_ID_MAX + 1];
    int download;                 /* an artifact body (counted in metrics) */
};

/* Start a response: status 0, no body, fd -1. */
void srv_resp_init(struct srv_resp *resp);
/* Free what the response owns (the body buffer, the file). */
void srv_resp_free(struct srv_resp *resp);
/* Add a header (truncated to fit; at most 6). */
void srv_resp_header(struct srv_resp *resp, const char *name,
                     const char *value);
/* Answer with `j` (stolen; NULL means out of memory: 500) as JSON. */
void srv_resp_json(struct srv_resp *resp, int status, json_t *j);
/* Answer `status` with {"error": code-for-status, "message": ...}; the
 * code is the one docs/device-api.md gives for the status (400
 * bad_request, 401 unauthorized, 403 forbidden, 404 not_found, 405
 * bad_request, 409 conflict, 413 too_large, 416 bad_request, 5xx
 * internal). */
void srv_resp_error(struct srv_resp *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with an explicit error code ("rollback", "signature", ...). */
void srv_resp_error_code(struct srv_resp *resp, int status, const char *code,
                         const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Answer with text (copied), e.g. the Prometheus exposition. */
void srv_resp_text(struct srv_resp *resp, int status, const char *type,
                   const char *text, size_t len);

/* ------------------------------------------------------ server context */

struct srv_metrics {
    /* Updated with __atomic builtins from the request threads. */
    uint64_t checkins, offers, enrolments;
    uint64_t downloads, download_bytes;
    uint64_t reports[8];      /* by srv_report_state() index */
    uint64_t health, health_unhealthy;
    uint64_t http[6];         /* by status class: 1xx..5xx, [0] other */
    uint64_t http_code[600];  /* by exact status (100..599) */
};

struct srv {
    const struct srv_config *cfg;
    struct nb_db *db;
    int artifacts_fd;             /* O_DIRECTORY of cfg->artifacts */
    /* SHA-256 of every accepted admin / fleet token (from the config's
     * *_sha256 keys and *_file files). */
    uint8_t admin_sha[SRV_MAX_TOKENS][32];
    unsigned n_admin;
    uint8_t fleet_sha[SRV_MAX_TOKENS][32];
    unsigned n_fleet;
    /* The base of artifact URLs put into offers, without a trailing '/':
     * artifact_base_url, else public_url + "/api/v1/artifacts". */
    char artifact_base[SRV_URL_MAX];
    char public_url[SRV_URL_MAX];  /* without a trailing '/' */
    int mqtt_enabled;             /* offers carry artifacts.mqtt */
    struct srv_log log;
    struct srv_metrics m;
    /* The clock (Unix seconds); NULL: time(2). Tests set it. */
    int64_t (*now)(void *ctx);
    void *now_ctx;
};

/* Fill in a struct srv from a checked configuration: read the token
 * files, open the artifact directory and the database (pool of
 * cfg->threads + 1 connections), run the schema migrations. One line into
 * msg on failure. public_url may be completed later (srv_set_public_url)
 * once the port is known. */
nb_err srv_init(struct srv *s, const struct srv_config *cfg, char *msg,
                size_t msglen);
void srv_fini(struct srv *s);
/* Set public_url / artifact_base from cfg, or from `fallback` (e.g.
 * "http://127.0.0.1:8080") when cfg->public_url is empty. */
void srv_set_public_url(struct srv *s, const char *fallback);

int64_t srv_now(const struct srv *s);

/* Route one request: every answer, including errors, ends up in resp
 * (status set). Thread-safe; never touches libmicrohttpd. */
void srv_dispatch(struct srv *s, const struct srv_req *req,
                  struct srv_resp *resp);

/* ----------------------------------------------------------- handlers */

/* Management API (docs/server-api.md), implemented in mgmt_api.c. Called
 * for /api/v1/packages..., /api/v1/rollouts... and /api/v1/devices paths
 * other than a device's checkin/reports/health, and only after the admin
 * token has been checked. Must set resp->status. */
void srv_mgmt_handle(struct srv *s, const struct srv_req *req,
                     struct srv_resp *resp);

/* hawkBit DDI (docs/hawkbit.md), implemented in ddi.c: paths
 * /{tenant}/controller/v1/...; `tenant` is the first path segment and
 * `rest` what follows "/controller/v1" (starting with '/' or empty). The
 * handler authenticates the request itself. Weak default: 404. */
void srv_ddi_handle(struct srv *s, const struct srv_req *req,
                    const char *tenant, const char *rest,
                    struct srv_resp *resp);

/* device_api.c: POST /api/v1/devices/{id}/{checkin|reports|health}. */
void srv_device_handle(struct srv *s, const struct srv_req *req,
                       const char *device_id, const char *what,
                       struct srv_resp *resp);
/* artifacts.c: GET|HEAD /api/v1/artifacts/{name}. */
void srv_artifact_handle(struct srv *s, const struct srv_req *req,
                         const char *name, struct srv_resp *resp);
/* metrics.c: GET /metrics. */
void srv_metrics_handle(struct srv *s, const struct srv_req *req,
                        struct srv_resp *resp);

/* ------------------------------------------------------ authentication */

/* The bearer token of the request ("Authorization: Bearer X"), or NULL. */
const char *srv_bearer(const struct srv_req *r);
/* SHA-256 of a token, as 64 lowercase hex digits + NUL. */
void srv_token_sha256_hex(const char *token, char hex[65]);
/* 1 when the request carries a configured admin token (constant time
 * over each configured hash). */
int srv_auth_admin(const struct srv *s, const struct srv_req *r);
/* 1 when the token is a configured fleet enrolment token. */
int srv_auth_fleet(const struct srv *s, const char *token);
/* Constant-time comparison of two NUL-terminated strings of hex digits
 * (equal lengths expected; a length difference is not secret). */
int srv_hex_eq(const char *a, const char *b);
/* A new random token: 64 hex digits (32 bytes from getrandom) + NUL. */
nb_err srv_new_token(char out[65]);

/* ------------------------------------------------------------- helpers */

/* 1..64 of [A-Za-z0-9._-], not "." or "..": device IDs, tags, groups. */
int srv_valid_id(const char *s);
/* A plain artifact file name: 1..255 bytes, no '/', '\\', control bytes,
 * "..", no leading '.'. */
int srv_valid_artifact_name(const char *s);
/* Parse "M.m.p" (each part 0..2^32-1, no sign or blanks). 1 if valid. */
int srv_version_parse(const char *s, uint64_t out[3]);
/* <0, 0, >0 like strcmp, for two valid versions. */
int srv_version_cmp(const char *a, const char *b);

/* Parse a Range header value against a file of `size` bytes (RFC 9110):
 * 0 = serve the whole file (no header, or one that does not parse, which
 * RFC 9110 says to ignore); n > 0 = n satisfiable ranges in out (at most
 * `max`; ranges past the end are dropped, overlapping or adjacent ones
 * are NOT merged, more than `max` ranges: the whole file); -1 = none of
 * them satisfiable (416). */
int srv_parse_ranges(const char *h, uint64_t size, struct srv_range *out,
                     unsigned max);

/* The multipart/byteranges body of a SRV_BODY_MULTI response: its total
 * length, and its bytes from `pos` (at most `max`; file bytes are read
 * with pread at their offset). Returns the count, 0 at the end, -1 on a
 * read error. */
uint64_t srv_multipart_length(const struct srv_resp *resp);
long srv_multipart_read(const struct srv_resp *resp, uint64_t pos, char *buf,
                        size_t max);

/* Report states of docs/device-api.md, in this order (the index is what
 * srv_metrics.reports counts): downloading, verified, installing, trial,
 * confirmed, failed, reverted. Returns the index, or -1. */
int srv_report_state(const char *state);
extern const char *const srv_report_states[7];

#endif /* NB_SRV_SERVER_H */
