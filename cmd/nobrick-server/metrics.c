/* metrics.c - GET /metrics in the Prometheus text format (version 0.0.4).
 *
 * Counters are this process's own (since it started): several server
 * processes are scraped one by one and summed by Prometheus. Rollout
 * progress is read from the database, so every process reports the same
 * fleet-wide numbers for it. No authentication: bind it to a trusted
 * network (docs/server.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "server.h"
#include "store.h"

#define MAX_ROLLOUTS 100

static uint64_t get(const uint64_t *v)
{
    return __atomic_load_n(v, __ATOMIC_RELAXED);
}

static void counter(FILE *f, const char *name, const char *help, uint64_t v)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name,
            name, (unsigned long long)v);
}

static void head(FILE *f, const char *name, const char *type,
                 const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Rollout gauges from the database; 0, or -1 on a database error. */
static int rollouts(struct srv *s, FILE *f)
{
    static const char *const names[] = {
        "offered", "downloading", "verified", "installing", "trial",
        "confirmed", "failed", "reverted", "silent"};
    char (*ids)[SRV_ST_ID] = malloc(MAX_ROLLOUTS * sizeof *ids);
    struct srv_rollout *r = malloc(sizeof *r);
    struct nb_ro_policy *pol = malloc(sizeof *pol);
    struct nb_db_conn *c;
    unsigned n = 0;
    int rc = 0;
    nb_err err;
    if (!ids || !r || !pol) {
        free(ids);
        free(r);
        free(pol);
        return -1;
    }
    c = nb_db_acquire(s->db);
    err = srv_store_rollout_active(c, ids, MAX_ROLLOUTS, &n);
    head(f, "nobrick_rollout_devices", "gauge",
         "Devices of an active rollout by state (silent: no word for the "
         "policy's silent_timeout, also counted in their state).");
    for (unsigned i = 0; !err && i < n; i++) {
        struct srv_rollout_counts k;
        json_error_t je;
        json_t *jp;
        char msg[80];
        err = srv_store_rollout_get(c, ids[i], r);
        if (err == NB_ERR_NOENT) {
            err = NB_OK;
            continue;
        }
        jp = err ? NULL : json_loads(r->policy, 0, &je);
        if (!jp || nb_ro_policy_parse(jp, pol, msg, sizeof msg) != NB_OK)
            memset(pol, 0, sizeof *pol);
        json_decref(jp);
        if (!err)
            err = srv_store_rollout_counts(c, r->id, srv_now(s), pol->silent_s,
                                           &k);
        if (err)
            break;
        const int64_t v[] = {k.offered, k.downloading, k.verified,
                             k.installing, k.trial, k.confirmed, k.failed,
                             k.reverted, k.silent};
        for (unsigned j = 0; j < 9; j++)
            fprintf(f, "nobrick_rollout_devices{rollout=\"%s\",state=\"%s\"} "
                    "%lld\n", r->id, names[j], (long long)v[j]);
    }
    head(f, "nobrick_rollout_percent", "gauge",
         "Share of an active rollout's target reached by its current step.");
    for (unsigned i = 0; !err && i < n; i++) {
        json_error_t je;
        json_t *jp;
        char msg[80];
        if (srv_store_rollout_get(c, ids[i], r) != NB_OK)
            continue;
        jp = json_loads(r->policy, 0, &je);
        if (jp && nb_ro_policy_parse(jp, pol, msg, sizeof msg) == NB_OK)
            fprintf(f, "nobrick_rollout_percent{rollout=\"%s\"} %.4f\n", r->id,
                    nb_ro_step_ppm(pol, (unsigned)r->step) / 10000.0);
        json_decref(jp);
    }
    head(f, "nobrick_rollout_paused", "gauge",
         "1 when an active rollout is paused (by hand or automatically).");
    for (unsigned i = 0; !err && i < n; i++)
        if (srv_store_rollout_get(c, ids[i], r) == NB_OK)
            fprintf(f, "nobrick_rollout_paused{rollout=\"%s\"} %d\n", r->id,
                    strcmp(r->state, SRV_RO_PAUSED) == 0);
    if (!err) {
        int64_t devices = 0;
        err = srv_store_device_count(c, &devices);
        head(f, "nobrick_devices", "gauge", "Registered devices.");
        fprintf(f, "nobrick_devices %lld\n", (long long)devices);
    }
    if (err)
        rc = -1;
    nb_db_release(s->db, c);
    free(ids);
    free(r);
    free(pol);
    return rc;
}

void srv_metrics_handle(struct srv *s, const struct srv_req *req,
                        struct srv_resp *resp)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f;
    int rc;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        srv_resp_error(resp, 405, "use GET");
        return;
    }
    f = open_memstream(&text, &len);
    if (!f) {
        srv_resp_error(resp, 500, "out of memory");
        return;
    }
    counter(f, "nobrick_checkins_total", "Device check-ins answered.",
            get(&s->m.checkins));
    counter(f, "nobrick_offers_total", "New offers made at check-in.",
            get(&s->m.offers));
    counter(f, "nobrick_enrolments_total",
            "Devices enrolled with a fleet token.", get(&s->m.enrolments));
    counter(f, "nobrick_downloads_total",
            "Artifact downloads answered (GET, 200 or 206).",
            get(&s->m.downloads));
    counter(f, "nobrick_download_bytes_total",
            "Bytes of artifact download answers.", get(&s->m.download_bytes));
    head(f, "nobrick_reports_total", "counter", "Device reports by state.");
    for (int i = 0; i < 7; i++)
        fprintf(f, "nobrick_reports_total{state=\"%s\"} %llu\n",
                srv_report_states[i], (unsigned long long)get(&s->m.reports[i]));
    head(f, "nobrick_health_reports_total", "counter",
         "Health reports acknowledged, by verdict.");
    fprintf(f, "nobrick_health_reports_total{healthy=\"true\"} %llu\n",
            (unsigned long long)(get(&s->m.health) -
                                 get(&s->m.health_unhealthy)));
    fprintf(f, "nobrick_health_reports_total{healthy=\"false\"} %llu\n",
            (unsigned long long)get(&s->m.health_unhealthy));
    head(f, "nobrick_http_requests_total", "counter",
         "HTTP requests answered, by status code.");
    for (int code = 100; code < 600; code++) {
        uint64_t v = get(&s->m.http_code[code]);
        if (v)
            fprintf(f, "nobrick_http_requests_total{code=\"%d\"} %llu\n", code,
                    (unsigned long long)v);
    }
    rc = rollouts(s, f);
    if (fclose(f) != 0 || !text) {
        free(text);
        srv_resp_error(resp, 500, "out of memory");
        return;
    }
    if (rc) {
        free(text);
        srv_resp_error(resp, 503, "the database does not answer");
        return;
    }
    srv_resp_text(resp, 200, "text/plain; version=0.0.4; charset=utf-8", text,
                  len);
    free(text);
}
