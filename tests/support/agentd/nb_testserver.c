/* nb_testserver.c - nb-testserver: a small device-API server for the
 * agent's tests (issue 4).
 *
 * The agent's end-to-end tests of what a correct server does run against
 * the real nobrick-server (tests/test_agent_server.sh,
 * tests/test_agent_roots.sh). This server is still used where a test
 * needs a server that misbehaves on purpose, or offers what nobrick-server
 * never offers, through the control API below:
 *   - tests/test_agent_e2e.sh: an offer for another hardware revision,
 *     health acknowledgements dropped, artifacts answered 403/404/503,
 *     check-ins dropped or held unanswered;
 *   - tests/test_agent_ftp.sh: the device API while vsftpd serves the
 *     packages (not moved to nobrick-server yet);
 *   - tests/test_fleet.sh: nobrick-sim fleet's offers and faults;
 *   - tests/test_testserver.sh: this server's own test.
 *
 * Implements docs/device-api.md on libmicrohttpd (one thread per
 * connection) and jansson: check-in, reports, health report and
 * acknowledgement, and artifacts with single-range support read at the
 * offset with pread. Test-grade: all state lives in memory (device tokens
 * in plain text, which the real server must not do), the event log is a
 * JSONL file, and a control API under /test/ lets a test change what the
 * server does while it runs:
 *
 *   POST /test/offer   {"device": "ID" or "*", "offer": {...} or null}
 *   GET  /test/offer   the configured offers, by device ("*": every device)
 *   POST /test/mode    {"drop_health_ack": true, "status_artifacts": 403, ...}
 *   GET  /test/mode    the current mode
 *   POST /test/device  {"device": "ID", "token": "TOKEN"}  register a device
 *   GET  /test/stats   request and byte counters
 *
 * The control API has no authentication: the server binds to loopback
 * for tests only. See usage_text below for every flag and mode key.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <jansson.h>
#include <microhttpd.h>

#define BODY_MAX (64 * 1024)        /* docs/device-api.md: bodies <= 64 KiB */
#define ID_MAX 64                   /* device IDs: [A-Za-z0-9._-]{1,64} */
#define TOKEN_MAX 128
#define NAME_MAX_LEN 255            /* artifact file names */
#define STREAM_BLOCK (64 * 1024)
#define API "/api/v1"

static const char usage_text[] =
    "usage: nb-testserver [options]\n"
    "\n"
    "A small device-API server (docs/device-api.md) for the agent's tests.\n"
    "Prints 'port N' as the first line on stdout once it listens; runs until\n"
    "SIGTERM or SIGINT. One line per request on stderr.\n"
    "\n"
    "  --port N              TCP port (default 0: pick a free one)\n"
    "  --bind ADDR           IPv4 address to listen on (default 127.0.0.1)\n"
    "  --artifacts DIR       directory served under /api/v1/artifacts/ (default .)\n"
    "  --device ID:TOKEN     a registered device and its token (repeatable)\n"
    "  --fleet-token TOKEN   fleet enrolment token (first check-in registers)\n"
    "  --offer FILE          initial offers: {\"device\": ID|\"*\", \"offer\": {...}}\n"
    "                        or an array of such objects\n"
    "  --log FILE            append check-ins, reports and health reports to FILE\n"
    "                        as JSON lines (time, device, kind, then the body)\n"
    "  --public-url URL      base URL put into offers (default http://ADDR:PORT)\n"
    "  --poll-seconds N      poll_seconds of a 'none' answer (default 300)\n"
    "  --artifact-auth       artifacts need a device token too (default: open)\n"
    "  --quiet               no per-request log lines\n"
    "\n"
    "test modes (also keys of POST /test/mode, same names with '_'):\n"
    "  --drop-checkins       close check-in connections without an answer\n"
    "  --drop-reports        close report connections without recording them\n"
    "  --drop-health-ack     record health reports, then close without an ack\n"
    "  --silent              hold device and artifact requests unanswered\n"
    "                        (until silent is turned off or the client leaves)\n"
    "  --status-checkin CODE, --status-reports CODE, --status-health CODE,\n"
    "  --status-artifacts CODE\n"
    "                        answer every such request with CODE (e.g. 403,\n"
    "                        404, 410, 500) and a JSON error; 0 = normal\n"
    "  --ignore-range        answer artifact requests 200 with the whole file\n"
    "  --endless-artifacts   stream artifacts forever (chunked, repeating)\n"
    "\n"
    "An offer is the check-in answer of docs/device-api.md without \"action\"\n"
    "(\"rollout\" and \"version\" required). Two shortcuts: \"artifact\": NAME\n"
    "fills artifacts.http and package_size from the artifact directory, and\n"
    "\"manifest\": NAME fills manifest_url, both under the public URL. A device\n"
    "gets its own offer, else the \"*\" offer, when its version differs.\n"
    "\n"
    "exit status: 0 after SIGTERM/SIGINT, 1 on a start-up error, 64 bad usage.\n";

/* ------------------------------------------------------------------ state */

struct mode {
    int drop_checkins, drop_reports, drop_health_ack, silent;
    int status_checkin, status_reports, status_health, status_artifacts;
    int ignore_range, endless_artifacts;
    int poll_seconds;
    char public_url[256];
};

struct device {
    char id[ID_MAX + 1];
    char token[TOKEN_MAX + 1];
    int pending;        /* enrolled by fleet token, own token not used yet */
    json_t *rollouts;   /* object used as a set: rollouts offered to it */
};

struct stats {
    uint64_t requests, checkins, offers, reports, health, artifact_requests,
        artifact_bytes, dropped, refused, unauthorized;
};

struct srv {
    pthread_mutex_t lock;   /* guards everything below that changes */
    struct device *devices;
    size_t ndevices, cap;
    json_t *offers;         /* device ID or "*" -> offer object */
    struct mode mode;
    struct stats st;
    /* fixed after start-up */
    int artifacts_fd;
    int log_fd;
    int quiet;
    int artifact_auth;
    char fleet_token[TOKEN_MAX + 1];
    int stopping;            /* __atomic: set once at shutdown */
};

/* One request, kept in MHD's per-request pointer. */
struct req {
    struct srv *srv;
    struct timespec t0;
    char method[8];
    char url[160];
    char *body;
    size_t len;
    int too_large;
    int status;              /* 0 until a response is queued */
    const char *note;        /* why it was dropped, etc. */
    char device[ID_MAX + 1];
    uint64_t served;         /* artifact bytes handed to MHD */
    const char *content_range;   /* for a 416 answer */
};

/* Artifact stream state, owned by the MHD response. */
struct stream {
    struct srv *srv;
    struct req *req;   /* valid while MHD may call stream_read */
    int fd;
    uint64_t start, len, size;
    int endless;
};

static void srv_lock(struct srv *s) { pthread_mutex_lock(&s->lock); }
static void srv_unlock(struct srv *s) { pthread_mutex_unlock(&s->lock); }

static double elapsed_ms(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 +
           (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Constant-time comparison of two NUL-terminated tokens. */
static int token_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i;
    unsigned char d = (unsigned char)(la != lb);
    for (i = 0; i < la && i < lb; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

static int valid_id(const char *id)
{
    size_t n = strlen(id), i;
    if (n == 0 || n > ID_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return !(strcmp(id, ".") == 0 || strcmp(id, "..") == 0);
}

/* A plain file name: no '/', no "..", no leading '.', no control bytes. */
static int valid_artifact_name(const char *name)
{
    size_t n = strlen(name), i;
    if (n == 0 || n > NAME_MAX_LEN || name[0] == '.' || strstr(name, ".."))
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/' || c == '\\' || c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

/* Caller holds the lock. */
static struct device *find_device(struct srv *s, const char *id)
{
    size_t i;
    for (i = 0; i < s->ndevices; i++)
        if (strcmp(s->devices[i].id, id) == 0)
            return &s->devices[i];
    return NULL;
}

/* Caller holds the lock. Registers id (or replaces its token). */
static struct device *add_device(struct srv *s, const char *id, const char *token)
{
    struct device *d = find_device(s, id);
    if (!d) {
        if (s->ndevices == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 16;
            struct device *nd = realloc(s->devices, cap * sizeof *nd);
            if (!nd)
                return NULL;
            s->devices = nd;
            s->cap = cap;
        }
        d = &s->devices[s->ndevices];
        memset(d, 0, sizeof *d);
        d->rollouts = json_object();
        if (!d->rollouts)
            return NULL;
        snprintf(d->id, sizeof d->id, "%s", id);
        s->ndevices++;
    }
    snprintf(d->token, sizeof d->token, "%s", token);
    d->pending = 0;
    return d;
}

static int new_token(char out[33])
{
    unsigned char r[16];
    size_t i;
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return -1;
    for (i = 0; i < sizeof r; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
    return 0;
}

/* ------------------------------------------------------------- responses */

static const char *error_code(int status)
{
    switch (status) {
    case 400: return "bad_request";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "bad_request";
    case 409: return "conflict";
    case 410: return "gone";     /* only from the status_* test modes */
    case 413: return "too_large";
    case 416: return "bad_request";
    default: return status >= 500 ? "internal" : "bad_request";
    }
}

/* Queues obj (stolen) as the JSON answer with the given status. */
static enum MHD_Result send_json(struct MHD_Connection *c, struct req *r,
                                 int status, json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    struct MHD_Response *resp;
    enum MHD_Result ret;
    json_decref(obj);
    if (!text) {
        status = 500;
        text = strdup("{\"error\":\"internal\",\"message\":\"out of memory\"}");
        if (!text)
            return MHD_NO;
    }
    resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (status == 401)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (r->content_range)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, r->content_range);
    ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, struct req *r,
                                  int status, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (status == 401) {
        srv_lock(r->srv);
        r->srv->st.unauthorized++;
        srv_unlock(r->srv);
    }
    return send_json(c, r, status,
                     json_pack("{s:s, s:s}", "error", error_code(status),
                               "message", msg));
}

/* Ends the request without an answer: MHD closes the connection. */
static enum MHD_Result drop(struct req *r, const char *why)
{
    srv_lock(r->srv);
    r->srv->st.dropped++;
    srv_unlock(r->srv);
    r->note = why;
    return MHD_NO;
}

/* ------------------------------------------------------------- event log */

static void iso_time(char out[48])
{
    struct timespec ts;
    struct tm tm;
    char base[24];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 48, "%s.%03uZ", base, (unsigned)(ts.tv_nsec / 1000000L) % 1000u);
}

/* Appends {"time", "device", "kind", ...body} as one line. 0 or -1. */
static int log_event(struct srv *s, const char *device, const char *kind,
                     json_t *body, json_t *extra)
{
    char t[48];
    json_t *line;
    char *text;
    size_t len, done = 0;
    int rc = 0;
    if (s->log_fd < 0)
        return 0;
    iso_time(t);
    line = json_pack("{s:s, s:s, s:s}", "time", t, "device", device, "kind", kind);
    if (!line)
        return -1;
    json_object_update_missing(line, body);
    if (extra)
        json_object_update(line, extra);
    text = json_dumps(line, JSON_COMPACT);
    json_decref(line);
    if (!text)
        return -1;
    len = strlen(text);
    text[len++] = '\n';   /* json_dumps' NUL becomes the newline */
    srv_lock(s);
    while (done < len) {
        ssize_t n = write(s->log_fd, text + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = -1;
            break;
        }
        done += (size_t)n;
    }
    srv_unlock(s);
    free(text);
    return rc;
}

/* --------------------------------------------------------------- helpers */

static struct mode get_mode(struct srv *s)
{
    struct mode m;
    srv_lock(s);
    m = s->mode;
    srv_unlock(s);
    return m;
}

/* Holds a request while the server is silent. */
static void wait_while_silent(struct srv *s, struct req *r)
{
    struct timespec ts = {0, 20 * 1000 * 1000};
    int waited = 0;
    while (!__atomic_load_n(&s->stopping, __ATOMIC_RELAXED) && get_mode(s).silent) {
        waited = 1;
        nanosleep(&ts, NULL);
    }
    if (waited)
        r->note = "held (silent)";
}

static json_t *parse_body(struct req *r, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j;
    if (r->len == 0) {
        snprintf(err, errlen, "empty body");
        return NULL;
    }
    j = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        snprintf(err, errlen, "invalid JSON: %s", je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        snprintf(err, errlen, "body is not a JSON object");
        return NULL;
    }
    return j;
}

static const char *str_field(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/*
 * Authenticates a device request. Accepts the device's own token, or, on
 * a check-in of a device not yet registered (or enrolled but whose own
 * token was never used, so the answer that carried it may have been
 * lost), the fleet token: then *issued gets a new device token for the
 * answer. 0 ok, else the HTTP status to answer.
 */
static int auth_device(struct srv *s, struct MHD_Connection *c, const char *id,
                       int checkin, char issued[TOKEN_MAX + 1])
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_AUTHORIZATION);
    struct device *d;
    int rc = 401;
    issued[0] = '\0';
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return 401;
    h += 7;
    while (*h == ' ')
        h++;
    if (!*h || strlen(h) > TOKEN_MAX)
        return 401;
    srv_lock(s);
    d = find_device(s, id);
    if (d && token_eq(d->token, h)) {
        d->pending = 0;
        rc = 0;
    } else if (checkin && s->fleet_token[0] && token_eq(s->fleet_token, h) &&
               (!d || d->pending)) {
        char tok[33];
        if (new_token(tok) == 0 && (d = add_device(s, id, tok)) != NULL) {
            d->pending = 1;
            snprintf(issued, TOKEN_MAX + 1, "%s", tok);
            rc = 0;
        } else {
            rc = 500;
        }
    }
    srv_unlock(s);
    return rc;
}

/* Any registered device's own token (for --artifact-auth). */
static int auth_any_device(struct srv *s, struct MHD_Connection *c)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_AUTHORIZATION);
    size_t i;
    int ok = 0;
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    h += 7;
    while (*h == ' ')
        h++;
    srv_lock(s);
    for (i = 0; i < s->ndevices; i++)
        ok |= token_eq(s->devices[i].token, h);
    srv_unlock(s);
    return ok;
}

/* Is rollout one the device was offered or has configured? Locks. */
static int device_in_rollout(struct srv *s, const char *id, const char *rollout)
{
    struct device *d;
    json_t *o;
    int in = 0;
    srv_lock(s);
    d = find_device(s, id);
    if (d && json_object_get(d->rollouts, rollout))
        in = 1;
    if (!in && (o = json_object_get(s->offers, id)) != NULL)
        in = str_field(o, "rollout") && strcmp(str_field(o, "rollout"), rollout) == 0;
    if (!in && (o = json_object_get(s->offers, "*")) != NULL)
        in = str_field(o, "rollout") && strcmp(str_field(o, "rollout"), rollout) == 0;
    srv_unlock(s);
    return in;
}

/* ---------------------------------------------------------- device calls */

/* The answer to a check-in from a device at version cur; new reference. */
static json_t *checkin_answer(struct srv *s, const char *id, const char *cur,
                              const struct mode *m, const char *base)
{
    json_t *offer, *ans, *arts;
    const char *art, *man, *ver;
    char url[768];
    struct device *d;

    srv_lock(s);
    offer = json_object_get(s->offers, id);
    if (!offer)
        offer = json_object_get(s->offers, "*");
    ver = offer ? str_field(offer, "version") : NULL;
    if (!offer || !ver || strcmp(ver, cur) == 0) {
        srv_unlock(s);
        return json_pack("{s:s, s:i}", "action", "none",
                         "poll_seconds", m->poll_seconds);
    }
    /* "action" first, then the offer's keys in their order. */
    ans = json_pack("{s:s}", "action", "update");
    if (ans && json_object_update(ans, offer) != 0) {
        json_decref(ans);
        ans = NULL;
    }
    if (ans) {
        json_t *deep = json_deep_copy(ans);   /* nothing shared with offers */
        json_decref(ans);
        ans = deep;
    }
    d = find_device(s, id);
    if (ans && d)
        json_object_set_new(d->rollouts, str_field(ans, "rollout"), json_true());
    s->st.offers++;
    srv_unlock(s);
    if (!ans)
        return NULL;

    art = str_field(ans, "artifact");
    if (art) {
        arts = json_object_get(ans, "artifacts");
        if (!json_is_object(arts)) {
            arts = json_object();
            json_object_set_new(ans, "artifacts", arts);
        }
        if (!json_object_get(arts, "http")) {
            snprintf(url, sizeof url, "%s" API "/artifacts/%s", base, art);
            json_object_set_new(arts, "http", json_string(url));
        }
        if (!json_object_get(ans, "package_size")) {
            struct stat st;
            if (valid_artifact_name(art) &&
                fstatat(s->artifacts_fd, art, &st, 0) == 0 && S_ISREG(st.st_mode))
                json_object_set_new(ans, "package_size",
                                    json_integer((json_int_t)st.st_size));
        }
    }
    man = str_field(ans, "manifest");
    if (man && !json_object_get(ans, "manifest_url")) {
        snprintf(url, sizeof url, "%s" API "/artifacts/%s", base, man);
        json_object_set_new(ans, "manifest_url", json_string(url));
    }
    json_object_del(ans, "artifact");
    json_object_del(ans, "manifest");
    if (!json_object_get(ans, "poll_seconds"))
        json_object_set_new(ans, "poll_seconds", json_integer(60));
    return ans;
}

static enum MHD_Result do_checkin(struct MHD_Connection *c, struct req *r,
                                  const char *id, json_t *body,
                                  const char *issued, const struct mode *m)
{
    struct srv *s = r->srv;
    json_t *v, *ans;
    const char *ver = str_field(body, "version");
    const char *action;

    if (!str_field(body, "hw_rev") || !ver)
        return send_error(c, r, 400, "hw_rev and version must be strings");
    v = json_object_get(body, "security_version");
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return send_error(c, r, 400, "security_version must be an integer >= 0");
    if (!json_is_array(json_object_get(body, "slots")))
        return send_error(c, r, 400, "slots must be an array");
    v = json_object_get(body, "update");
    if (v && !json_is_object(v))
        return send_error(c, r, 400, "update must be an object");

    ans = checkin_answer(s, id, ver, m, m->public_url);
    if (!ans)
        return send_error(c, r, 500, "out of memory");
    if (issued[0])
        json_object_set_new(ans, "device_token", json_string(issued));
    action = str_field(ans, "action");
    {
        json_t *extra = json_pack("{s:s}", "answer", action ? action : "?");
        if (log_event(s, id, "checkin", body, extra) != 0) {
            json_decref(extra);
            json_decref(ans);
            return send_error(c, r, 500, "cannot write the event log");
        }
        json_decref(extra);
    }
    if (m->drop_checkins) {
        json_decref(ans);
        return drop(r, "dropped (drop_checkins)");
    }
    return send_json(c, r, 200, ans);
}

static enum MHD_Result do_report(struct MHD_Connection *c, struct req *r,
                                 const char *id, json_t *body, const struct mode *m)
{
    static const char *const states[] = {"downloading", "verified", "installing",
                                         "trial", "confirmed", "failed", "reverted"};
    const char *state = str_field(body, "state"), *rollout = str_field(body, "rollout");
    size_t i;
    int known = 0;

    if (!rollout || !str_field(body, "version"))
        return send_error(c, r, 400, "rollout and version must be strings");
    for (i = 0; state && i < sizeof states / sizeof states[0]; i++)
        known |= strcmp(state, states[i]) == 0;
    if (!known)
        return send_error(c, r, 400, "state must be one of downloading, verified, "
                          "installing, trial, confirmed, failed, reverted");
    if (strcmp(state, "downloading") == 0 &&
        (!json_is_integer(json_object_get(body, "bytes")) ||
         !json_is_integer(json_object_get(body, "total"))))
        return send_error(c, r, 400, "downloading needs integer bytes and total");
    if (strcmp(state, "failed") == 0 && !str_field(body, "reason"))
        return send_error(c, r, 400, "failed needs a reason");
    if (!device_in_rollout(r->srv, id, rollout))
        return send_error(c, r, 409, "device %s is not in rollout %s", id, rollout);
    if (m->drop_reports)
        return drop(r, "dropped (drop_reports)");
    if (log_event(r->srv, id, "report", body, NULL) != 0)
        return send_error(c, r, 500, "cannot write the event log");
    return send_json(c, r, 200, json_pack("{s:b}", "ok", 1));
}

static enum MHD_Result do_health(struct MHD_Connection *c, struct req *r,
                                 const char *id, json_t *body, const struct mode *m)
{
    const char *rollout = str_field(body, "rollout"), *nonce = str_field(body, "nonce");
    if (!rollout || !str_field(body, "version"))
        return send_error(c, r, 400, "rollout and version must be strings");
    if (!json_is_boolean(json_object_get(body, "healthy")))
        return send_error(c, r, 400, "healthy must be a boolean");
    if (!nonce || !nonce[0] || strlen(nonce) > 128)
        return send_error(c, r, 400, "nonce must be a string of 1 to 128 bytes");
    if (!device_in_rollout(r->srv, id, rollout))
        return send_error(c, r, 409, "device %s is not in rollout %s", id, rollout);
    if (log_event(r->srv, id, "health", body, NULL) != 0)
        return send_error(c, r, 500, "cannot write the event log");
    if (m->drop_health_ack)
        return drop(r, "recorded, ack dropped (drop_health_ack)");
    return send_json(c, r, 200, json_pack("{s:b, s:s}", "ack", 1, "nonce", nonce));
}

/* /api/v1/devices/{id}/{checkin|reports|health} */
static enum MHD_Result handle_device(struct MHD_Connection *c, struct req *r,
                                     const char *path, const char *method)
{
    struct srv *s = r->srv;
    char id[ID_MAX + 1], issued[TOKEN_MAX + 1], err[200];
    const char *slash = strchr(path, '/'), *what;
    size_t idlen;
    int checkin, reports, health, st, status;
    struct mode m;
    json_t *body;
    enum MHD_Result ret;

    if (!slash)
        return send_error(c, r, 404, "no such endpoint");
    idlen = (size_t)(slash - path);
    what = slash + 1;
    checkin = strcmp(what, "checkin") == 0;
    reports = strcmp(what, "reports") == 0;
    health = strcmp(what, "health") == 0;
    if (!checkin && !reports && !health)
        return send_error(c, r, 404, "no such endpoint");
    if (idlen == 0 || idlen > ID_MAX)
        return send_error(c, r, 400, "bad device id");
    memcpy(id, path, idlen);
    id[idlen] = '\0';
    if (!valid_id(id))
        return send_error(c, r, 400, "bad device id");
    snprintf(r->device, sizeof r->device, "%s", id);
    if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
        return send_error(c, r, 405, "use POST");
    if (r->too_large)
        return send_error(c, r, 413, "body over %d bytes", BODY_MAX);

    wait_while_silent(s, r);
    st = auth_device(s, c, id, checkin, issued);
    if (st)
        return send_error(c, r, st, st == 401 ? "missing or wrong token" : "cannot register");

    srv_lock(s);
    if (checkin)
        s->st.checkins++;
    else if (reports)
        s->st.reports++;
    else
        s->st.health++;
    srv_unlock(s);

    m = get_mode(s);
    status = checkin ? m.status_checkin : reports ? m.status_reports : m.status_health;
    if (status) {
        srv_lock(s);
        s->st.refused++;
        srv_unlock(s);
        r->note = "refused (status mode)";
        return send_error(c, r, status, "refused by test mode");
    }

    body = parse_body(r, err, sizeof err);
    if (!body)
        return send_error(c, r, 400, "%s", err);
    if (checkin)
        ret = do_checkin(c, r, id, body, issued, &m);
    else if (reports)
        ret = do_report(c, r, id, body, &m);
    else
        ret = do_health(c, r, id, body, &m);
    json_decref(body);
    return ret;
}

/* ------------------------------------------------------------- artifacts */

/*
 * Parses a Range header against a file of size bytes. Returns 1 with
 * [*first, *last] for one satisfiable range, -1 when unsatisfiable (416),
 * 0 to serve the whole file: no header, a header that does not parse
 * (RFC 9110 says to ignore it) or several ranges (which a server may
 * answer with the whole representation).
 */
static int parse_range(const char *h, uint64_t size, uint64_t *first, uint64_t *last)
{
    uint64_t a = 0, b = 0;
    int have_a = 0, have_b = 0, big_a = 0;
    if (!h)
        return 0;
    if (strncasecmp(h, "bytes=", 6) != 0)
        return 0;
    h += 6;
    if (strchr(h, ','))
        return 0;
    while (*h >= '0' && *h <= '9') {
        if (a > (UINT64_MAX - 9) / 10)
            big_a = 1;      /* saturate: beyond any file */
        else
            a = a * 10 + (uint64_t)(*h - '0');
        have_a = 1;
        h++;
    }
    if (*h++ != '-')
        return 0;
    while (*h >= '0' && *h <= '9') {
        if (b <= (UINT64_MAX - 9) / 10)
            b = b * 10 + (uint64_t)(*h - '0');
        else
            b = UINT64_MAX;
        have_b = 1;
        h++;
    }
    if (*h != '\0' || (!have_a && !have_b))
        return 0;
    if (!have_a) {                       /* suffix: the last b bytes */
        if (b == 0 || size == 0)
            return -1;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return 1;
    }
    if (have_b && b < a)
        return 0;
    if (big_a || a >= size)
        return -1;
    *first = a;
    *last = (!have_b || b >= size) ? size - 1 : b;
    return 1;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *st = cls;
    uint64_t off, want;
    ssize_t n;

    if (st->endless) {
        if (st->size == 0) {
            memset(buf, 0, max);
            n = (ssize_t)max;
            goto out;
        }
        off = pos % st->size;
        want = st->size - off;
    } else {
        if (pos >= st->len)
            return MHD_CONTENT_READER_END_OF_STREAM;
        off = st->start + pos;
        want = st->len - pos;
    }
    if (want > max)
        want = max;
    do {
        n = pread(st->fd, buf, (size_t)want, (off_t)off);
    } while (n < 0 && errno == EINTR);
    if (n <= 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;   /* error, or file shrank */
out:
    st->req->served += (uint64_t)n;
    srv_lock(st->srv);
    st->srv->st.artifact_bytes += (uint64_t)n;
    srv_unlock(st->srv);
    return n;
}

static void stream_free(void *cls)
{
    struct stream *st = cls;
    close(st->fd);
    free(st);
}

static enum MHD_Result handle_artifact(struct MHD_Connection *c, struct req *r,
                                       const char *name, const char *method)
{
    struct srv *s = r->srv;
    struct MHD_Response *resp;
    struct stream *st;
    struct stat sb;
    struct mode m;
    uint64_t first = 0, last = 0, size;
    int fd, rng, status;
    char cr[96];
    enum MHD_Result ret;

    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return send_error(c, r, 405, "use GET or HEAD");
    if (!valid_artifact_name(name))
        return send_error(c, r, 400, "bad artifact name");
    wait_while_silent(s, r);
    if (s->artifact_auth && !auth_any_device(s, c))
        return send_error(c, r, 401, "missing or wrong token");
    srv_lock(s);
    s->st.artifact_requests++;
    srv_unlock(s);
    m = get_mode(s);
    if (m.status_artifacts) {
        srv_lock(s);
        s->st.refused++;
        srv_unlock(s);
        r->note = "refused (status mode)";
        return send_error(c, r, m.status_artifacts, "refused by test mode");
    }

    fd = openat(s->artifacts_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return send_error(c, r, 404, "no artifact %s", name);
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return send_error(c, r, 404, "no artifact %s", name);
    }
    size = (uint64_t)sb.st_size;

    rng = (m.ignore_range || m.endless_artifacts) ? 0 :
          parse_range(MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                  MHD_HTTP_HEADER_RANGE),
                      size, &first, &last);
    if (rng < 0) {
        close(fd);
        snprintf(cr, sizeof cr, "bytes */%" PRIu64, size);
        r->content_range = cr;
        return send_error(c, r, 416, "range not satisfiable (size %" PRIu64 ")", size);
    }

    st = calloc(1, sizeof *st);
    if (!st) {
        close(fd);
        return send_error(c, r, 500, "out of memory");
    }
    st->srv = s;
    st->req = r;
    st->fd = fd;
    st->size = size;
    st->endless = m.endless_artifacts;
    st->start = rng ? first : 0;
    st->len = rng ? last - first + 1 : size;
    resp = MHD_create_response_from_callback(
        st->endless ? MHD_SIZE_UNKNOWN : st->len, STREAM_BLOCK,
        stream_read, st, stream_free);
    if (!resp) {
        stream_free(st);
        return send_error(c, r, 500, "out of memory");
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    status = 200;
    if (rng) {
        snprintf(cr, sizeof cr, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first, last, size);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
        status = 206;
    }
    ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    return ret;
}

/* ---------------------------------------------------------- test control */

static json_t *mode_json(const struct mode *m)
{
    return json_pack("{s:b, s:b, s:b, s:b, s:i, s:i, s:i, s:i, s:b, s:b, s:i, s:s}",
                     "drop_checkins", m->drop_checkins, "drop_reports", m->drop_reports,
                     "drop_health_ack", m->drop_health_ack, "silent", m->silent,
                     "status_checkin", m->status_checkin,
                     "status_reports", m->status_reports,
                     "status_health", m->status_health,
                     "status_artifacts", m->status_artifacts,
                     "ignore_range", m->ignore_range,
                     "endless_artifacts", m->endless_artifacts,
                     "poll_seconds", m->poll_seconds, "public_url", m->public_url);
}

/* Applies the keys of o to m. 0, or -1 with err set (m then unchanged). */
static int mode_apply(struct mode *m, json_t *o, char *err, size_t errlen)
{
    struct mode n = *m;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        int *flag = NULL, *code = NULL;
        if (!strcmp(key, "drop_checkins")) flag = &n.drop_checkins;
        else if (!strcmp(key, "drop_reports")) flag = &n.drop_reports;
        else if (!strcmp(key, "drop_health_ack")) flag = &n.drop_health_ack;
        else if (!strcmp(key, "silent")) flag = &n.silent;
        else if (!strcmp(key, "ignore_range")) flag = &n.ignore_range;
        else if (!strcmp(key, "endless_artifacts")) flag = &n.endless_artifacts;
        else if (!strcmp(key, "status_checkin")) code = &n.status_checkin;
        else if (!strcmp(key, "status_reports")) code = &n.status_reports;
        else if (!strcmp(key, "status_health")) code = &n.status_health;
        else if (!strcmp(key, "status_artifacts")) code = &n.status_artifacts;
        if (flag) {
            if (!json_is_boolean(v))
                goto bad_type;
            *flag = json_is_true(v);
        } else if (code) {
            json_int_t x;
            if (!json_is_integer(v))
                goto bad_type;
            x = json_integer_value(v);
            if (x != 0 && (x < 400 || x > 599)) {
                snprintf(err, errlen, "%s must be 0 or 400..599", key);
                return -1;
            }
            *code = (int)x;
        } else if (!strcmp(key, "poll_seconds")) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > INT_MAX)
                goto bad_type;
            n.poll_seconds = (int)json_integer_value(v);
        } else if (!strcmp(key, "public_url")) {
            if (!json_is_string(v) || json_string_length(v) >= sizeof n.public_url)
                goto bad_type;
            snprintf(n.public_url, sizeof n.public_url, "%s", json_string_value(v));
        } else {
            snprintf(err, errlen, "unknown mode key %s", key);
            return -1;
        }
        continue;
    bad_type:
        snprintf(err, errlen, "bad value for %s", key);
        return -1;
    }
    *m = n;
    return 0;
}

/* Caller holds the lock (or is single-threaded). {"device", "offer"}. */
static int offer_apply(struct srv *s, json_t *o, char *err, size_t errlen)
{
    json_t *dv = json_object_get(o, "device"), *offer = json_object_get(o, "offer");
    const char *dev = "*";
    if (dv) {
        if (!json_is_string(dv) ||
            (strcmp(json_string_value(dv), "*") != 0 && !valid_id(json_string_value(dv)))) {
            snprintf(err, errlen, "device must be a device id or \"*\"");
            return -1;
        }
        dev = json_string_value(dv);
    }
    if (!offer) {
        snprintf(err, errlen, "missing offer (an object, or null to clear)");
        return -1;
    }
    if (json_is_null(offer)) {
        json_object_del(s->offers, dev);
        return 0;
    }
    if (!json_is_object(offer) || !str_field(offer, "rollout") ||
        !str_field(offer, "version")) {
        snprintf(err, errlen, "offer must be an object with rollout and version strings");
        return -1;
    }
    if (str_field(offer, "artifact") && !valid_artifact_name(str_field(offer, "artifact"))) {
        snprintf(err, errlen, "bad artifact name");
        return -1;
    }
    json_object_set_new(s->offers, dev, json_deep_copy(offer));
    return 0;
}

static enum MHD_Result handle_test(struct MHD_Connection *c, struct req *r,
                                   const char *what, const char *method)
{
    struct srv *s = r->srv;
    int post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
    int get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
    char err[200];
    json_t *body = NULL, *ans = NULL;
    int rc = 0;

    if (r->too_large)
        return send_error(c, r, 413, "body over %d bytes", BODY_MAX);
    if (post) {
        body = parse_body(r, err, sizeof err);
        if (!body)
            return send_error(c, r, 400, "%s", err);
    } else if (!get) {
        return send_error(c, r, 405, "use GET or POST");
    }

    srv_lock(s);
    if (!strcmp(what, "mode")) {
        if (post)
            rc = mode_apply(&s->mode, body, err, sizeof err);
        ans = mode_json(&s->mode);
    } else if (!strcmp(what, "offer")) {
        if (post)
            rc = offer_apply(s, body, err, sizeof err);
        ans = json_deep_copy(s->offers);
    } else if (!strcmp(what, "device") && post) {
        const char *id = str_field(body, "device"), *tok = str_field(body, "token");
        if (!id || !valid_id(id) || !tok || !tok[0] || strlen(tok) > TOKEN_MAX) {
            snprintf(err, sizeof err, "need device (an id) and token (1..%d bytes)", TOKEN_MAX);
            rc = -1;
        } else if (!add_device(s, id, tok)) {
            snprintf(err, sizeof err, "out of memory");
            rc = -1;
        }
        ans = json_pack("{s:b}", "ok", 1);
    } else if (!strcmp(what, "stats") && get) {
        ans = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                        "requests", (json_int_t)s->st.requests,
                        "checkins", (json_int_t)s->st.checkins,
                        "offers", (json_int_t)s->st.offers,
                        "reports", (json_int_t)s->st.reports,
                        "health", (json_int_t)s->st.health,
                        "artifact_requests", (json_int_t)s->st.artifact_requests,
                        "artifact_bytes", (json_int_t)s->st.artifact_bytes,
                        "dropped", (json_int_t)s->st.dropped,
                        "refused", (json_int_t)s->st.refused,
                        "unauthorized", (json_int_t)s->st.unauthorized);
    } else {
        srv_unlock(s);
        json_decref(body);
        return send_error(c, r, 404, "no such test endpoint");
    }
    srv_unlock(s);
    json_decref(body);
    if (rc) {
        json_decref(ans);
        return send_error(c, r, 400, "%s", err);
    }
    return send_json(c, r, 200, ans);
}

/* ------------------------------------------------------------ MHD glue */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct srv *s = cls;
    struct req *r = *con_cls;
    (void)version;

    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->srv = s;
        clock_gettime(CLOCK_MONOTONIC, &r->t0);
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->url, sizeof r->url, "%s", url);
        *con_cls = r;
        srv_lock(s);
        s->st.requests++;
        srv_unlock(s);
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        if (!r->too_large && r->len + n <= BODY_MAX) {
            char *b = realloc(r->body, r->len + n);
            if (!b)
                return MHD_NO;
            memcpy(b + r->len, upload_data, n);
            r->body = b;
            r->len += n;
        } else {
            r->too_large = 1;   /* read the rest, then answer 413 */
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (!strncmp(url, "/test/", 6))
        return handle_test(c, r, url + 6, method);
    if (!strncmp(url, API "/artifacts/", sizeof API "/artifacts/" - 1))
        return handle_artifact(c, r, url + sizeof API "/artifacts/" - 1, method);
    if (!strncmp(url, API "/devices/", sizeof API "/devices/" - 1))
        return handle_device(c, r, url + sizeof API "/devices/" - 1, method);
    return send_error(c, r, 404, "no such endpoint");
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct srv *s = cls;
    struct req *r = *con_cls;
    const union MHD_ConnectionInfo *ci;
    char addr[INET_ADDRSTRLEN + 8] = "?";

    if (!r)
        return;
    *con_cls = NULL;
    if (!s->quiet) {
        char status[8];
        ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)ci->client_addr;
            char ip[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
            snprintf(addr, sizeof addr, "%s:%u", ip, (unsigned)ntohs(in->sin_port));
        }
        if (r->status)
            snprintf(status, sizeof status, "%d", r->status);
        else
            snprintf(status, sizeof status, "-");
        fprintf(stderr, "nb-testserver: %s %s %s %s in=%zu served=%" PRIu64
                " %.1fms%s%s%s%s%s%s\n",
                addr, r->method, r->url, status, r->len, r->served,
                elapsed_ms(&r->t0),
                r->device[0] ? " device=" : "", r->device,
                r->note ? " " : "", r->note ? r->note : "",
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed",
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : ")");
    }
    free(r->body);
    free(r);
}

/* libmicrohttpd's own messages, on one prefixed line each. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;
    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    fprintf(stderr, "nb-testserver: libmicrohttpd: %s\n", msg);
}

/* --------------------------------------------------------------- start-up */

static int load_offers(struct srv *s, const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je), *e;
    char err[200];
    size_t i;
    int rc = 0;
    if (!j) {
        fprintf(stderr, "nb-testserver: %s:%d: %s\n", path, je.line, je.text);
        return -1;
    }
    if (json_is_object(j)) {
        rc = offer_apply(s, j, err, sizeof err);
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, e) {
            if (!json_is_object(e) || (rc = offer_apply(s, e, err, sizeof err)) != 0) {
                if (!json_is_object(e))
                    snprintf(err, sizeof err, "entry %zu is not an object", i);
                rc = -1;
                break;
            }
        }
    } else {
        snprintf(err, sizeof err, "not an object or an array");
        rc = -1;
    }
    if (rc)
        fprintf(stderr, "nb-testserver: %s: %s\n", path, err);
    json_decref(j);
    return rc;
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

enum {
    OPT_PORT = 256, OPT_BIND, OPT_ARTIFACTS, OPT_DEVICE, OPT_FLEET, OPT_OFFER,
    OPT_LOG, OPT_PUBLIC, OPT_POLL, OPT_ARTAUTH, OPT_QUIET, OPT_HELP,
    OPT_DROP_CHECKINS, OPT_DROP_REPORTS, OPT_DROP_HEALTH, OPT_SILENT,
    OPT_ST_CHECKIN, OPT_ST_REPORTS, OPT_ST_HEALTH, OPT_ST_ARTIFACTS,
    OPT_IGNORE_RANGE, OPT_ENDLESS
};

static const struct option long_opts[] = {
    {"port", required_argument, NULL, OPT_PORT},
    {"bind", required_argument, NULL, OPT_BIND},
    {"artifacts", required_argument, NULL, OPT_ARTIFACTS},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"fleet-token", required_argument, NULL, OPT_FLEET},
    {"offer", required_argument, NULL, OPT_OFFER},
    {"log", required_argument, NULL, OPT_LOG},
    {"public-url", required_argument, NULL, OPT_PUBLIC},
    {"poll-seconds", required_argument, NULL, OPT_POLL},
    {"artifact-auth", no_argument, NULL, OPT_ARTAUTH},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, OPT_HELP},
    {"drop-checkins", no_argument, NULL, OPT_DROP_CHECKINS},
    {"drop-reports", no_argument, NULL, OPT_DROP_REPORTS},
    {"drop-health-ack", no_argument, NULL, OPT_DROP_HEALTH},
    {"silent", no_argument, NULL, OPT_SILENT},
    {"status-checkin", required_argument, NULL, OPT_ST_CHECKIN},
    {"status-reports", required_argument, NULL, OPT_ST_REPORTS},
    {"status-health", required_argument, NULL, OPT_ST_HEALTH},
    {"status-artifacts", required_argument, NULL, OPT_ST_ARTIFACTS},
    {"ignore-range", no_argument, NULL, OPT_IGNORE_RANGE},
    {"endless-artifacts", no_argument, NULL, OPT_ENDLESS},
    {NULL, 0, NULL, 0},
};

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "nb-testserver: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see nb-testserver --help)\n");
    return 64;
}

int main(int argc, char **argv)
{
    struct srv s;
    struct MHD_Daemon *d = NULL;
    const union MHD_DaemonInfo *di;
    struct sockaddr_in sa;
    const char *bind_addr = "127.0.0.1", *artifacts = ".", *log_path = NULL;
    const char *offer_path = NULL, *public_url = NULL;
    sigset_t sigs;
    int port = 0, opt, sig, rc = 1, i, *code;
    unsigned port_bound;

    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.lock, NULL);
    s.artifacts_fd = -1;
    s.log_fd = -1;
    s.mode.poll_seconds = 300;
    s.offers = json_object();
    if (!s.offers)
        return 1;

    while ((opt = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        code = NULL;
        switch (opt) {
        case OPT_PORT:
            if (parse_int(optarg, 0, 65535, &port)) {
                rc = usage_error("bad --port %s", optarg);
                goto out;
            }
            break;
        case OPT_BIND: bind_addr = optarg; break;
        case OPT_ARTIFACTS: artifacts = optarg; break;
        case OPT_DEVICE: {
            char *colon = strchr(optarg, ':');
            if (!colon || colon == optarg || !colon[1] || strlen(colon + 1) > TOKEN_MAX) {
                rc = usage_error("bad --device %s (ID:TOKEN)", optarg);
                goto out;
            }
            *colon = '\0';
            if (!valid_id(optarg)) {
                rc = usage_error("bad device id %s", optarg);
                goto out;
            }
            if (!add_device(&s, optarg, colon + 1))
                goto out;
            break;
        }
        case OPT_FLEET:
            if (!optarg[0] || strlen(optarg) > TOKEN_MAX) {
                rc = usage_error("bad --fleet-token%s", "");
                goto out;
            }
            snprintf(s.fleet_token, sizeof s.fleet_token, "%s", optarg);
            break;
        case OPT_OFFER: offer_path = optarg; break;
        case OPT_LOG: log_path = optarg; break;
        case OPT_PUBLIC:
            if (strlen(optarg) >= sizeof s.mode.public_url) {
                rc = usage_error("--public-url too long%s", "");
                goto out;
            }
            public_url = optarg;
            break;
        case OPT_POLL:
            if (parse_int(optarg, 0, INT_MAX, &s.mode.poll_seconds)) {
                rc = usage_error("bad --poll-seconds %s", optarg);
                goto out;
            }
            break;
        case OPT_ARTAUTH: s.artifact_auth = 1; break;
        case OPT_QUIET: s.quiet = 1; break;
        case OPT_HELP:
            fputs(usage_text, stdout);
            rc = 0;
            goto out;
        case OPT_DROP_CHECKINS: s.mode.drop_checkins = 1; break;
        case OPT_DROP_REPORTS: s.mode.drop_reports = 1; break;
        case OPT_DROP_HEALTH: s.mode.drop_health_ack = 1; break;
        case OPT_SILENT: s.mode.silent = 1; break;
        case OPT_ST_CHECKIN: code = &s.mode.status_checkin; break;
        case OPT_ST_REPORTS: code = &s.mode.status_reports; break;
        case OPT_ST_HEALTH: code = &s.mode.status_health; break;
        case OPT_ST_ARTIFACTS: code = &s.mode.status_artifacts; break;
        case OPT_IGNORE_RANGE: s.mode.ignore_range = 1; break;
        case OPT_ENDLESS: s.mode.endless_artifacts = 1; break;
        default:
            rc = 64;
            fprintf(stderr, "(see nb-testserver --help)\n");
            goto out;
        }
        if (code && (parse_int(optarg, 0, 599, code) || (*code && *code < 400))) {
            rc = usage_error("bad status code %s (0 or 400..599)", optarg);
            goto out;
        }
    }
    if (optind != argc) {
        rc = usage_error("unexpected argument %s", argv[optind]);
        goto out;
    }

    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1) {
        rc = usage_error("bad --bind %s (an IPv4 address)", bind_addr);
        goto out;
    }
    s.artifacts_fd = open(artifacts, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s.artifacts_fd < 0) {
        fprintf(stderr, "nb-testserver: %s: %s\n", artifacts, strerror(errno));
        goto out;
    }
    if (log_path) {
        s.log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (s.log_fd < 0) {
            fprintf(stderr, "nb-testserver: %s: %s\n", log_path, strerror(errno));
            goto out;
        }
    }
    if (offer_path && load_offers(&s, offer_path) != 0)
        goto out;

    /* Signals go to main's sigwait only; every thread MHD starts inherits
     * this mask. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                         MHD_USE_POLL | MHD_USE_ERROR_LOG,
                         0, NULL, NULL, on_request, &s,
                         MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, &s,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)512,
                         MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "nb-testserver: cannot listen on %s:%d\n", bind_addr, port);
        goto out;
    }
    di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    port_bound = di ? di->port : (unsigned)port;
    srv_lock(&s);
    if (public_url)
        snprintf(s.mode.public_url, sizeof s.mode.public_url, "%s", public_url);
    else
        snprintf(s.mode.public_url, sizeof s.mode.public_url, "http://%s:%u",
                 bind_addr, port_bound);
    srv_unlock(&s);
    printf("port %u\n", port_bound);
    fflush(stdout);
    if (!s.quiet)
        fprintf(stderr, "nb-testserver: listening on %s:%u, artifacts in %s\n",
                bind_addr, port_bound, artifacts);

    while (sigwait(&sigs, &sig) != 0)
        ;
    if (!s.quiet)
        fprintf(stderr, "nb-testserver: signal %d, stopping\n", sig);
    rc = 0;

out:
    __atomic_store_n(&s.stopping, 1, __ATOMIC_RELAXED);
    if (d)
        MHD_stop_daemon(d);
    for (i = 0; i < (int)s.ndevices; i++)
        json_decref(s.devices[i].rollouts);
    free(s.devices);
    json_decref(s.offers);
    if (s.artifacts_fd >= 0)
        close(s.artifacts_fd);
    if (s.log_fd >= 0)
        close(s.log_fd);
    pthread_mutex_destroy(&s.lock);
    return rc;
}
