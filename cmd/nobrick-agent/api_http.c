/* api_http.c - the device API over libcurl and jansson; see api_http.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "api_http.h"

struct nb_api_http {
    CURL *curl;
    char base[NB_AGENT_URL_MAX];   /* server_url + "/api/v1/devices/<id>" */
    char server[NB_AGENT_URL_MAX]; /* server_url, for the token rule */
    char auth[NB_API_HTTP_TOKEN_MAX + 32];
    char ca_file[NB_AGENT_URL_MAX];
    uint32_t connect_timeout_ms, timeout_ms;
    void (*token_issued)(void *ctx, const char *token);
    void *token_ctx;
    /* The answer being received. */
    uint8_t *rx;
    size_t rx_len, rx_cap;
    int rx_over;
    char err[CURL_ERROR_SIZE];
};

nb_err nb_api_http_status_err(long status)
{
    if (status >= 200 && status < 300)
        return NB_OK;
    switch (status) {
    case 401:
    case 403:
        return NB_ERR_DENIED;
    case 404:
    case 410:
        return NB_ERR_NOENT;
    case 409:
        return NB_ERR_STATE;
    case 413:
        return NB_ERR_NOSPC;
    case 416:
        return NB_ERR_RANGE;
    default:
        break;
    }
    if (status >= 400 && status < 500)
        return NB_ERR_INVAL;
    return NB_ERR_IO; /* 5xx, 1xx/3xx we do not follow, no answer */
}

/* ------------------------------------------------------------- transfer */

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    struct nb_api_http *h = ud;
    size_t len = size * n;
    if (len > h->rx_cap - h->rx_len) {
        h->rx_over = 1;
        return 0; /* aborts the transfer: the answer is over its bound */
    }
    memcpy(h->rx + h->rx_len, p, len);
    h->rx_len += len;
    return len;
}

/* One request: POST `body` (JSON) when not NULL, else GET. The answer
 * goes to rx (at most cap bytes). `auth`: send the bearer token. */
static nb_err request(struct nb_api_http *h, const char *url,
                      const char *body, uint8_t *rx, size_t cap,
                      uint32_t timeout_ms, int auth, long *status)
{
    CURL *c = h->curl;
    struct curl_slist *hdrs = NULL;
    h->rx = rx;
    h->rx_len = 0;
    h->rx_cap = cap;
    h->rx_over = 0;
    h->err[0] = '\0';
    *status = 0;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->err);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)h->connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cap);
    if (h->ca_file[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, h->ca_file);
    if (auth && h->auth[0])
        hdrs = curl_slist_append(hdrs, h->auth);
    if (body) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    /* Expect: 100-continue only costs a round trip for small bodies. */
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(hdrs);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    if (h->rx_over || rc == CURLE_FILESIZE_EXCEEDED)
        return NB_ERR_NOSPC;
    if (rc != CURLE_OK)
        return NB_ERR_IO;
    return nb_api_http_status_err(*status);
}

/* POST JSON to base + path; parse the answer into *out (NULL: ignored). */
static nb_err post_json(struct nb_api_http *h, const char *path, json_t *req,
                        uint32_t timeout_ms, json_t **out)
{
    char url[NB_AGENT_URL_MAX + 32];
    uint8_t *rx = malloc(NB_API_HTTP_BODY_MAX + 1);
    char *body = json_dumps(req, JSON_COMPACT);
    long status;
    nb_err err = NB_ERR_NOMEM;
    if (out)
        *out = NULL;
    if (!rx || !body)
        goto out;
    snprintf(url, sizeof(url), "%s%s", h->base, path);
    err = request(h, url, body, rx, NB_API_HTTP_BODY_MAX, timeout_ms, 1,
                  &status);
    if (err || !out)
        goto out;
    json_error_t je;
    *out = json_loadb((const char *)rx, h->rx_len, 0, &je);
    if (!*out || !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        err = NB_ERR_MALFORMED;
    }
out:
    free(body);
    free(rx);
    return err;
}

/* ------------------------------------------------------------- check-in */

/* Copy a JSON string member into dst; absent is "". 0 when present but
 * not a string or too long. */
static int get_str(json_t *o, const char *key, char *dst, size_t cap)
{
    json_t *v = json_object_get(o, key);
    dst[0] = '\0';
    if (!v || json_is_null(v))
        return 1;
    if (!json_is_string(v))
        return 0;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n >= cap || memchr(s, '\0', n))
        return 0;
    memcpy(dst, s, n + 1);
    return 1;
}

/* A u32 member; absent is 0. */
static int get_u32(json_t *o, const char *key, uint32_t *out)
{
    json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v || json_is_null(v))
        return 1;
    if (!json_is_integer(v))
        return 0;
    json_int_t i = json_integer_value(v);
    if (i < 0 || i > (json_int_t)UINT32_MAX)
        return 0;
    *out = (uint32_t)i;
    return 1;
}

nb_err nb_api_http_parse_checkin(const char *json, size_t len,
                                 struct nb_agent_checkin_reply *out)
{
    json_error_t je;
    json_t *o = json_loadb(json, len, 0, &je);
    memset(out, 0, sizeof(*out));
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return NB_ERR_MALFORMED;
    }
    nb_err err = NB_ERR_MALFORMED;
    char action[16];
    struct nb_agent_offer *of = &out->offer;
    if (!get_str(o, "action", action, sizeof(action)) ||
        !get_u32(o, "poll_seconds", &out->poll_seconds))
        goto out;
    json_t *rev = json_object_get(o, "revocations");
    if (rev && !json_is_null(rev) &&
        (!json_is_object(rev) ||
         !get_str(rev, "url", out->revocations_url,
                  sizeof(out->revocations_url)) ||
         !get_u32(rev, "seq", &out->revocations_seq)))
        goto out;
    if (strcmp(action, "none") == 0 || action[0] == '\0') {
        out->action = NB_AGENT_ACTION_NONE;
        err = NB_OK;
        goto out;
    }
    if (strcmp(action, "update") != 0)
        goto out;
    out->action = NB_AGENT_ACTION_UPDATE;
    json_t *art = json_object_get(o, "artifacts");
    if (art && !json_is_object(art))
        goto out;
    if (!get_str(o, "rollout", of->rollout, sizeof(of->rollout)) ||
        !get_str(o, "version", of->version, sizeof(of->version)) ||
        !get_u32(o, "security_version", &of->svn) ||
        !get_u32(o, "package_size", &of->package_size) ||
        !get_u32(o, "payload_offset", &of->payload_offset) ||
        !get_u32(o, "payload_size", &of->payload_size) ||
        !get_str(o, "manifest_url", of->manifest_url,
                 sizeof(of->manifest_url)))
        goto out;
    if (art) {
        json_t *mq = json_object_get(art, "mqtt");
        if (!get_str(art, "http", of->http_url, sizeof(of->http_url)) ||
            !get_str(art, "ftp", of->ftp_url, sizeof(of->ftp_url)) ||
            !get_str(art, "file", of->file_path, sizeof(of->file_path)))
            goto out;
        if (mq && json_is_object(mq)) {
            if (!get_str(mq, "artifact", of->mqtt_artifact,
                         sizeof(of->mqtt_artifact)))
                goto out;
        } else if (mq && json_is_string(mq)) {
            if (!get_str(art, "mqtt", of->mqtt_artifact,
                         sizeof(of->mqtt_artifact)))
                goto out;
        } else if (mq && !json_is_null(mq)) {
            goto out;
        }
    }
    if (!of->version[0])
        goto out;
    err = NB_OK;
out:
    json_decref(o);
    return err;
}

static json_t *slot_json(unsigned i, const struct nb_slot_info *s)
{
    char v[NB_AGENT_VERSION_MAX];
    json_t *o = json_object();
    json_object_set_new(o, "slot", json_integer(i));
    json_object_set_new(o, "state", json_string(nb_slot_state_name(s->state)));
    if (s->state != NB_SLOT_EMPTY) {
        nb_agent_version_str(s->version, v);
        json_object_set_new(o, "version", json_string(v));
        json_object_set_new(o, "security_version", json_integer(s->svn));
    }
    return o;
}

static nb_err http_checkin(void *ctx, const struct nb_agent_checkin *in,
                           struct nb_agent_checkin_reply *out)
{
    struct nb_api_http *h = ctx;
    json_t *req = json_object(), *slots = json_array(), *ans = NULL;
    json_object_set_new(req, "hw_rev", json_string(in->hw_rev));
    json_object_set_new(req, "version", json_string(in->version));
    json_object_set_new(req, "security_version", json_integer(in->svn));
    for (unsigned i = 0; i < in->slot_count; i++)
        json_array_append_new(slots, slot_json(i, &in->slots[i]));
    json_object_set_new(req, "slots", slots);
    if (in->has_update) {
        json_t *u = json_object();
        json_object_set_new(u, "rollout", json_string(in->update_rollout));
        json_object_set_new(u, "state", json_string(in->update_state));
        json_object_set_new(u, "bytes", json_integer((json_int_t)
                                                     in->update_bytes));
        json_object_set_new(req, "update", u);
    }
    nb_err err = post_json(h, "/checkin", req, h->timeout_ms, &ans);
    json_decref(req);
    if (err)
        return err;
    /* Enrolment: the server issued the device its own token. */
    json_t *tok = json_object_get(ans, "device_token");
    if (json_is_string(tok) && json_string_length(tok) > 0 &&
        json_string_length(tok) < NB_API_HTTP_TOKEN_MAX) {
        snprintf(h->auth, sizeof(h->auth), "Authorization: Bearer %s",
                 json_string_value(tok));
        if (h->token_issued)
            h->token_issued(h->token_ctx, json_string_value(tok));
    }
    char *text = json_dumps(ans, JSON_COMPACT);
    json_decref(ans);
    if (!text)
        return NB_ERR_NOMEM;
    err = nb_api_http_parse_checkin(text, strlen(text), out);
    free(text);
    return err;
}

/* -------------------------------------------------------------- reports */

static nb_err http_report(void *ctx, const struct nb_agent_report *r)
{
    struct nb_api_http *h = ctx;
    json_t *req = json_object();
    if (r->rollout && r->rollout[0])
        json_object_set_new(req, "rollout", json_string(r->rollout));
    json_object_set_new(req, "version", json_string(r->version));
    json_object_set_new(req, "state", json_string(r->state));
    if (r->has_progress) {
        json_object_set_new(req, "bytes", json_integer((json_int_t)r->bytes));
        json_object_set_new(req, "total", json_integer((json_int_t)r->total));
    }
    if (r->reason)
        json_object_set_new(req, "reason", json_string(r->reason));
    if (r->detail)
        json_object_set_new(req, "detail", json_string(r->detail));
    nb_err err = post_json(h, "/reports", req, h->timeout_ms, NULL);
    json_decref(req);
    return err;
}

static nb_err http_health(void *ctx, const struct nb_agent_health_report *r,
                          uint32_t timeout_ms,
                          struct nb_agent_health_ack *ack)
{
    struct nb_api_http *h = ctx;
    json_t *req = json_object(), *ans = NULL;
    if (r->rollout && r->rollout[0])
        json_object_set_new(req, "rollout", json_string(r->rollout));
    json_object_set_new(req, "version", json_string(r->version));
    json_object_set_new(req, "healthy", json_boolean(r->healthy));
    json_object_set_new(req, "nonce", json_string(r->nonce));
    if (r->detail)
        json_object_set_new(req, "detail", json_string(r->detail));
    uint32_t t = timeout_ms < h->timeout_ms ? timeout_ms : h->timeout_ms;
    nb_err err = post_json(h, "/health", req, t ? t : 1, &ans);
    json_decref(req);
    memset(ack, 0, sizeof(*ack));
    if (err)
        return err;
    ack->ack = json_is_true(json_object_get(ans, "ack"));
    if (!get_str(ans, "nonce", ack->nonce, sizeof(ack->nonce)))
        ack->nonce[0] = '\0';
    json_decref(ans);
    return NB_OK;
}

static nb_err http_fetch_manifest(void *ctx, const char *url, uint8_t *buf,
                                  uint32_t cap, uint32_t *len)
{
    struct nb_api_http *h = ctx;
    long status;
    size_t sl = strlen(h->server);
    /* The token goes to our server only, not to a CDN. */
    int auth = strncmp(url, h->server, sl) == 0 &&
               (url[sl] == '/' || url[sl] == '\0');
    nb_err err = request(h, url, NULL, buf, cap, h->timeout_ms, auth,
                         &status);
    *len = err ? 0 : (uint32_t)h->rx_len;
    return err;
}

/* ------------------------------------------------------------ lifecycle */

nb_err nb_api_http_new(struct nb_api_http **out,
                       const struct nb_api_http_config *cfg)
{
    *out = NULL;
    if (!cfg->server_url || !cfg->server_url[0] || !cfg->device_id ||
        !cfg->device_id[0])
        return NB_ERR_INVAL;
    struct nb_api_http *h = calloc(1, sizeof(*h));
    if (!h)
        return NB_ERR_NOMEM;
    size_t sl = strlen(cfg->server_url);
    while (sl && cfg->server_url[sl - 1] == '/')
        sl--;
    if (sl >= sizeof(h->server) ||
        (size_t)snprintf(h->base, sizeof(h->base), "%.*s/api/v1/devices/%s",
                         (int)sl, cfg->server_url, cfg->device_id) >=
            sizeof(h->base) ||
        (cfg->token && strlen(cfg->token) >= NB_API_HTTP_TOKEN_MAX) ||
        (cfg->ca_file && strlen(cfg->ca_file) >= sizeof(h->ca_file))) {
        free(h);
        return NB_ERR_INVAL;
    }
    memcpy(h->server, cfg->server_url, sl);
    h->server[sl] = '\0';
    if (cfg->token && cfg->token[0])
        snprintf(h->auth, sizeof(h->auth), "Authorization: Bearer %s",
                 cfg->token);
    else
        h->auth[0] = '\0'; /* no token: the server says 401 */
    if (cfg->ca_file)
        snprintf(h->ca_file, sizeof(h->ca_file), "%s", cfg->ca_file);
    h->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms
                                                    : 10000;
    h->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 30000;
    h->token_issued = cfg->token_issued;
    h->token_ctx = cfg->token_ctx;
    h->curl = curl_easy_init();
    if (!h->curl) {
        free(h);
        return NB_ERR_NOMEM;
    }
    *out = h;
    return NB_OK;
}

void nb_api_http_free(struct nb_api_http *h)
{
    if (!h)
        return;
    curl_easy_cleanup(h->curl);
    free(h);
}

void nb_api_http_interface(struct nb_api_http *h, struct nb_agent_api *api)
{
    api->ctx = h;
    api->checkin = http_checkin;
    api->report = http_report;
    api->health = http_health;
    api->fetch_manifest = http_fetch_manifest;
}
