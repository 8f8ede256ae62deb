/* fleet_check.c - the end of a fleet run: the invariant check of every
 * device's flash, the tables and the summary line, the JSON report, and
 * the few management-API calls (tags, what the server last heard).
 *
 * The check works on a copy of the device's flash (so the run's files
 * stay as the run left them) and uses only the real core:
 *   1. nb_device_open + nb_boot: the bootloader must boot an image, and
 *      nb_device_verify_slot (nb_pkg_verify_slot: signatures, identity,
 *      payload digest, erased tail) must pass for that slot;
 *   2. resetting without confirming, at most attempt limit + 3 times,
 *      must reach a CONFIRMED image that verifies too, and whose firmware
 *      does not crash on this hardware revision (else the device has lost
 *      its confirmed image);
 *   3. the simulated flash saw no strict-NOR violation.
 * A device failing 1 or 2 is bricked.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "fleet.h"

static void brick(struct fleet_final *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void brick(struct fleet_final *r, const char *fmt, ...)
{
    va_list ap;
    r->bricked = 1;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof(r->why), fmt, ap);
    va_end(ap);
}

void fleet_check_device(struct fleet_worker *w, struct fleet_dev *d)
{
    struct fleet *f = w->f;
    struct fleet_final *r = &d->fin;
    struct nb_simflash_stats st;
    struct nb_boot_config c;
    struct nb_boot_result res;
    struct nb_image_info info;
    struct nb_flash fl;
    struct nb_device *dev = malloc(sizeof(*dev));
    const char *hw = f->o.hw[d->hw].name;
    memset(r, 0, sizeof(*r));
    r->checked = 1;
    nb_simflash_stats(d->sim, &st);
    r->violations = st.violations;
    r->flash_ops = st.ops - d->ops_at_start;
    if (!dev || nb_simflash_copy_from(w->check, d->sim) != NB_OK) {
        brick(r, "cannot check it: out of memory");
        free(dev);
        return;
    }
    nb_simflash_interface(w->check, &fl);
    memset(&c, 0, sizeof(c));
    c.flash = &fl;
    c.crypto = &w->crypto;
    c.keystore = &f->keys.keystore;
    c.identity = &f->ids[d->hw];
    c.layout = f->layout;
    c.buf = w->cbuf;
    c.buf_size = FLEET_BUF;
    c.mbuf = w->cmbuf;
    c.mbuf_size = NB_MANIFEST_MAX;
    nb_err err = nb_device_open(dev, &c);
    if (err) {
        brick(r, "no valid boot journal: %s", nb_err_name(err));
        goto out;
    }
    r->state = dev->state;
    if ((err = nb_boot(dev, &res)) != NB_OK ||
        res.outcome != NB_BOOT_IMAGE) {
        brick(r, "the bootloader finds nothing to boot (%s)",
              err ? nb_err_name(err) : "recovery");
        goto out;
    }
    r->boot_slot = res.slot;
    r->boot_state = res.state;
    r->boot_version = res.image.version;
    if ((err = nb_device_verify_slot(dev, res.slot, &info)) != NB_OK) {
        brick(r, "slot %u boots but does not verify: %s",
              (unsigned)res.slot, nb_err_name(err));
        goto out;
    }
    r->boots = 1;
    /* Never confirmed from here on: the way back must still be there. */
    for (unsigned k = 0; res.state != NB_SLOT_CONFIRMED &&
                         k < (unsigned)dev->state.attempt_limit + 3; k++) {
        if ((err = nb_device_open(dev, &c)) != NB_OK ||
            (err = nb_boot(dev, &res)) != NB_OK ||
            res.outcome != NB_BOOT_IMAGE) {
            brick(r, "lost its confirmed image: resets end in recovery "
                  "(%s)", err ? nb_err_name(err) : "nothing bootable");
            goto out;
        }
    }
    if (res.state != NB_SLOT_CONFIRMED) {
        brick(r, "lost its confirmed image: still on trial after the "
              "attempt limit");
        goto out;
    }
    if ((err = nb_device_verify_slot(dev, res.slot, &info)) != NB_OK) {
        brick(r, "its confirmed image in slot %u does not verify: %s",
              (unsigned)res.slot, nb_err_name(err));
        goto out;
    }
    struct fleet_behaviour b;
    int known;
    fleet_dev_read_behaviour(&fl, res.addr, w->scratch, &w->crypto, &b,
                             &known);
    if (fleet_behaviour_crashes(&b, hw)) {
        brick(r, "its confirmed firmware crashes at boot on %s", hw);
        goto out;
    }
    r->confirmed_slot = res.slot;
    r->confirmed_version = res.image.version;
    r->keeps_confirmed = 1;
out:
    free(dev);
}

/* ----------------------------------------------------- management API */

struct body {
    char *p;
    size_t len;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct body *b = ud;
    size_t len = size * n;
    if (b->len + len > 65536)
        return 0;
    char *q = realloc(b->p, b->len + len + 1);
    if (!q)
        return 0;
    memcpy(q + b->len, p, len);
    b->len += len;
    q[b->len] = '\0';
    b->p = q;
    return len;
}

/* One management-API request; the answer (JSON) in *out when 2xx.
 * Returns the HTTP status, or 0 when there was no answer. */
static long admin_request(CURL *h, struct fleet *f, const char *method,
                          const char *path, const char *body, json_t **out)
{
    char url[1024], auth[600];
    struct curl_slist *hdrs = NULL;
    struct body b = {NULL, 0};
    long status = 0;
    size_t sl = strlen(f->o.server);
    while (sl && f->o.server[sl - 1] == '/')
        sl--;
    snprintf(url, sizeof(url), "%.*s%s", (int)sl, f->o.server, path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
             f->o.admin_token);
    hdrs = curl_slist_append(hdrs, auth);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 15000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    if (body)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    if (out)
        *out = status >= 200 && status < 300 && b.p
                   ? json_loads(b.p, 0, NULL)
                   : NULL;
    free(b.p);
    return status;
}

int fleet_server_put_tags(struct fleet *f, struct fleet_dev *d)
{
    char path[256], body[160];
    CURL *h;
    if (!f->o.admin_token || !(h = curl_easy_init()))
        return -1;
    snprintf(path, sizeof(path), "/api/v1/devices/%s/tags", d->id);
    snprintf(body, sizeof(body), "{\"tags\":[\"%s\"]}",
             f->o.tags[d->tag].name);
    long st = admin_request(h, f, "PUT", path, body, NULL);
    curl_easy_cleanup(h);
    if (st < 200 || st >= 300)
        fleet_log(f, d->id, NB_AGENT_LOG_WARN, "tags: HTTP %ld", st);
    return st >= 200 && st < 300 ? 0 : -1;
}

void fleet_check_server(struct fleet *f)
{
    CURL *h = curl_easy_init();
    for (uint32_t i = 0; h && i < f->n; i++) {
        struct fleet_dev *d = f->devs[i];
        char path[256];
        json_t *j = NULL;
        snprintf(path, sizeof(path), "/api/v1/devices/%s", d->id);
        admin_request(h, f, "GET", path, NULL, &j);
        json_t *v = json_object_get(j, "version");
        d->fin.server_checked = 1;
        snprintf(d->fin.server_version, sizeof(d->fin.server_version), "%s",
                 json_is_string(v) ? json_string_value(v) : "?");
        char mine[NB_AGENT_VERSION_MAX];
        fleet_version_str(d->fin.boot_version, mine);
        d->fin.server_match = strcmp(mine, d->fin.server_version) == 0;
        json_decref(j);
    }
    curl_easy_cleanup(h);
}

/* ----------------------------------------------------- server process */

void fleet_server_sample(struct fleet *f, int end)
{
    char path[64], buf[2048];
    FILE *fp;
    if (!f->o.server_pid)
        return;
    snprintf(path, sizeof(path), "/proc/%ld/stat", f->o.server_pid);
    if ((fp = fopen(path, "r")) != NULL) {
        size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
        buf[n] = '\0';
        fclose(fp);
        /* After the last ')' : state(3) ... utime(14) stime(15). */
        char *p = strrchr(buf, ')');
        unsigned long long ut = 0, stime = 0;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
                        "%*u %llu %llu", &ut, &stime) == 2) {
            double s = (double)(ut + stime) / (double)sysconf(_SC_CLK_TCK);
            if (end)
                f->srv_cpu1 = s;
            else
                f->srv_cpu0 = s;
        }
    }
    snprintf(path, sizeof(path), "/proc/%ld/status", f->o.server_pid);
    if (end && (fp = fopen(path, "r")) != NULL) {
        while (fgets(buf, sizeof(buf), fp)) {
            sscanf(buf, "VmRSS: %ld", &f->srv_rss_kb);
            sscanf(buf, "VmHWM: %ld", &f->srv_hwm_kb);
        }
        fclose(fp);
    }
}

/* ---------------------------------------------------------- summaries */

struct totals {
    uint32_t updated, reverted, bricked, violations, mismatches;
    uint64_t fired[FLEET_F_COUNT], crashes, cycles, steps, requests,
        checkins, reverts, lag_max, lag_sum;
};

static int updated(const struct fleet_dev *d)
{
    return !d->fin.bricked && d->fin.keeps_confirmed &&
           d->fin.confirmed_version != d->start_confirmed;
}

static void totals(struct fleet *f, struct totals *t)
{
    memset(t, 0, sizeof(*t));
    for (uint32_t i = 0; i < f->n; i++) {
        const struct fleet_dev *d = f->devs[i];
        t->updated += updated(d);
        t->reverted += d->reverts > 0;
        t->reverts += d->reverts;
        t->bricked += d->fin.bricked;
        t->violations += d->fin.violations != 0;
        t->mismatches += d->fin.server_checked && !d->fin.server_match;
        for (unsigned k = 0; k < FLEET_F_COUNT; k++)
            t->fired[k] += d->faults[k];
        t->crashes += d->crashes;
        t->cycles += d->power_cycles;
    }
    for (uint32_t i = 0; i < f->o.threads; i++) {
        t->steps += f->workers[i].steps;
        t->requests += f->workers[i].requests;
        t->checkins += f->workers[i].checkins;
        t->lag_sum += f->workers[i].lag_sum;
        if (f->workers[i].lag_max > t->lag_max)
            t->lag_max = f->workers[i].lag_max;
    }
}

static long peak_rss_kb(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
}

/* The version table: for each version, devices running it (after a
 * power-on) and devices whose confirmed image it is. */
static void version_table(struct fleet *f)
{
    uint32_t ver[64], run[64], conf[64], n = 0;
    for (uint32_t i = 0; i < f->n; i++) {
        const struct fleet_final *r = &f->devs[i]->fin;
        uint32_t vs[2] = {r->boots ? r->boot_version : 0,
                          r->keeps_confirmed ? r->confirmed_version : 0};
        for (int s = 0; s < 2; s++) {
            uint32_t k = 0;
            while (k < n && ver[k] != vs[s])
                k++;
            if (k == n && n < 64) {
                ver[n] = vs[s];
                run[n] = conf[n] = 0;
                n++;
            }
            if (k < n)
                (s ? conf : run)[k]++;
        }
    }
    printf("%-12s %9s %9s\n", "version", "running", "confirmed");
    for (uint32_t a = 0; a < n; a++) {
        uint32_t m = a;
        for (uint32_t b = a + 1; b < n; b++)
            if (ver[b] < ver[m])
                m = b;
        uint32_t t;
        t = ver[a], ver[a] = ver[m], ver[m] = t;
        t = run[a], run[a] = run[m], run[m] = t;
        t = conf[a], conf[a] = conf[m], conf[m] = t;
        char v[NB_AGENT_VERSION_MAX];
        fleet_version_str(ver[a], v);
        printf("%-12s %9u %9u\n", ver[a] ? v : "none", (unsigned)run[a],
               (unsigned)conf[a]);
    }
}

static void state_table(struct fleet *f)
{
    uint32_t st[NB_AGENT_STATE_COUNT] = {0}, oc[8] = {0};
    for (uint32_t i = 0; i < f->n; i++) {
        const struct fleet_dev *d = f->devs[i];
        if (d->agent.state < NB_AGENT_STATE_COUNT)
            st[d->agent.state]++;
        oc[d->agent.outcome & 7]++;
    }
    printf("\n%-16s %9s\n", "agent state", "devices");
    for (unsigned s = 0; s < NB_AGENT_STATE_COUNT; s++)
        if (st[s])
            printf("%-16s %9u\n", nb_agent_state_name((uint8_t)s),
                   (unsigned)st[s]);
    printf("\n%-16s %9s\n", "last outcome", "devices");
    for (unsigned o = 0; o < 8; o++)
        if (oc[o])
            printf("%-16s %9u\n", nb_agent_outcome_name((uint8_t)o),
                   (unsigned)oc[o]);
}

uint32_t fleet_summary(struct fleet *f, uint32_t *invariant_failures)
{
    struct totals t;
    double secs = (double)f->stopped_at / 1000.0;
    unsigned shown = 0;
    totals(f, &t);
    version_table(f);
    state_table(f);
    printf("\nfaults fired:");
    for (unsigned k = 0; k < FLEET_F_COUNT; k++)
        printf("%s %s %" PRIu64, k ? "," : "", fleet_fault_name(k),
               t.fired[k]);
    printf("; firmware crashes %" PRIu64 "; power cycles %" PRIu64 "\n",
           t.crashes, t.cycles);
    printf("ran %.1f s: %" PRIu64 " steps, %" PRIu64 " device-API requests "
           "(%" PRIu64 " check-ins, %.0f/s); peak RSS %ld KiB\n", secs,
           t.steps, t.requests, t.checkins,
           secs > 0 ? (double)t.checkins / secs : 0.0, peak_rss_kb());
    printf("steps came %.1f ms late on average, %" PRIu64 " ms at most "
           "(taken out of the devices' clocks)\n",
           t.steps ? (double)t.lag_sum / (double)t.steps : 0.0, t.lag_max);
    if (f->o.server_pid)
        printf("server %ld: %.2f s CPU, %.3f ms per check-in, RSS %ld KiB "
               "(peak %ld KiB)\n", f->o.server_pid, f->srv_cpu1 - f->srv_cpu0,
               t.checkins ? (f->srv_cpu1 - f->srv_cpu0) * 1000.0 /
                                (double)t.checkins
                          : 0.0,
               f->srv_rss_kb, f->srv_hwm_kb);
    if (f->o.until != FLEET_UNTIL_NONE)
        printf("until: %s\n", f->until_met ? "met" : "NOT met before the end "
               "of the run");
    for (uint32_t i = 0; i < f->n; i++) {
        const struct fleet_dev *d = f->devs[i];
        if (shown >= 20)
            break;
        if (d->fin.bricked) {
            printf("BRICKED %s (%s): %s (its fault plan again: --first-id %u "
                   "--devices 1 --seed %" PRIu64 " --faults %s)\n", d->id,
                   f->o.hw[d->hw].name, d->fin.why, (unsigned)d->number,
                   f->o.seed, f->o.faults_spec);
            shown++;
        }
        if (d->fin.violations) {
            printf("VIOLATION %s: %" PRIu64 " strict-NOR flash violations "
                   "(a bug)\n", d->id, d->fin.violations);
            shown++;
        }
        if (d->fin.server_checked && !d->fin.server_match) {
            char v[NB_AGENT_VERSION_MAX];
            fleet_version_str(d->fin.boot_version, v);
            printf("SERVER %s: runs %s, the server last heard %s\n", d->id, v,
                   d->fin.server_version);
            shown++;
        }
    }
    printf("devices: %u, updated: %u, reverted: %u, bricked: %u\n",
           (unsigned)f->n, (unsigned)t.updated, (unsigned)t.reverted,
           (unsigned)t.bricked);
    fflush(stdout);
    *invariant_failures = t.violations + t.mismatches;
    return t.bricked;
}

/* ------------------------------------------------------------- report */

static json_t *jver(uint32_t v)
{
    char s[NB_AGENT_VERSION_MAX];
    fleet_version_str(v, s);
    return json_string(s);
}

static json_t *device_json(struct fleet *f, const struct fleet_dev *d)
{
    const struct fleet_final *r = &d->fin;
    json_t *o = json_object(), *faults = json_object(), *slots = json_array();
    json_object_set_new(o, "id", json_string(d->id));
    json_object_set_new(o, "hw_rev", json_string(f->o.hw[d->hw].name));
    if (f->o.tag_count)
        json_object_set_new(o, "tag", json_string(f->o.tags[d->tag].name));
    json_object_set_new(o, "running", r->boots ? jver(r->boot_version)
                                               : json_null());
    json_object_set_new(o, "running_state",
                        json_string(r->boots ? nb_slot_state_name(
                                                   r->boot_state)
                                             : "none"));
    json_object_set_new(o, "confirmed", r->keeps_confirmed
                                            ? jver(r->confirmed_version)
                                            : json_null());
    json_object_set_new(o, "started_on", jver(d->start_confirmed));
    for (unsigned i = 0; i < nb_layout_slot_count(f->layout.kind); i++) {
        const struct nb_slot_info *s = &r->state.slot[i];
        json_t *js = json_pack("{s:i, s:s}", "slot", (int)i, "state",
                               nb_slot_state_name(s->state));
        if (s->state != NB_SLOT_EMPTY)
            json_object_set_new(js, "version", jver(s->version));
        json_array_append_new(slots, js);
    }
    json_object_set_new(o, "slots", slots);
    for (unsigned k = 0; k < FLEET_F_COUNT; k++)
        if (k != FLEET_F_BAD_BLOCK)
            json_object_set_new(faults, fleet_fault_name(k),
                                json_integer(d->faults[k]));
    json_object_set_new(faults, "bad_block",
                        d->bad_flags
                            ? json_pack("{s:I, s:s}", "addr",
                                        (json_int_t)d->bad_addr, "kind",
                                        d->bad_flags == NB_SIMFLASH_BAD_PROG
                                            ? "program"
                                            : "erase")
                            : json_null());
    json_object_set_new(o, "faults", faults);
    json_object_set_new(o, "crashes", json_integer(d->crashes));
    json_object_set_new(o, "power_cycles", json_integer(d->power_cycles));
    json_object_set_new(o, "attempts", json_integer(d->attempts));
    json_object_set_new(o, "updates", json_integer(d->updates));
    json_object_set_new(o, "reverts", json_integer(d->reverts));
    json_object_set_new(o, "failures", json_integer(d->failures));
    json_object_set_new(o, "checkins", json_integer(d->checkins));
    json_object_set_new(o, "agent_state",
                        json_string(nb_agent_state_name(d->agent.state)));
    json_object_set_new(o, "last_outcome",
                        json_string(nb_agent_outcome_name(d->agent.outcome)));
    json_object_set_new(o, "flash_ops",
                        json_integer((json_int_t)r->flash_ops));
    json_object_set_new(o, "violations",
                        json_integer((json_int_t)r->violations));
    json_object_set_new(o, "settled", json_boolean(d->pub.settled));
    json_object_set_new(o, "updated", json_boolean(updated(d)));
    json_object_set_new(o, "reverted", json_boolean(d->reverts > 0));
    json_object_set_new(o, "bricked", json_boolean(r->bricked));
    if (r->bricked)
        json_object_set_new(o, "why", json_string(r->why));
    if (d->unknown_beh)
        json_object_set_new(o, "unknown_behaviour", json_true());
    if (r->server_checked)
        json_object_set_new(o, "server_version",
                            json_string(r->server_version));
    return o;
}

int fleet_report_write(struct fleet *f, const char *path)
{
    struct totals t;
    totals(f, &t);
    double secs = (double)f->stopped_at / 1000.0;
    json_t *root = json_object(), *tot = json_object(), *cfg = json_object();
    json_t *devs = json_array(), *fired = json_object(), *hw = json_object();
    for (unsigned k = 0; k < FLEET_F_COUNT; k++)
        json_object_set_new(fired, fleet_fault_name(k),
                            json_integer((json_int_t)t.fired[k]));
    for (unsigned h = 0; h < f->o.hw_count; h++)
        json_object_set_new(hw, f->o.hw[h].name,
                            json_integer(f->o.hw[h].weight));
    json_object_set_new(cfg, "server", json_string(f->o.server));
    json_object_set_new(cfg, "seed", json_integer((json_int_t)f->o.seed));
    json_object_set_new(cfg, "faults", json_string(f->o.faults_spec));
    json_object_set_new(cfg, "hw_revs", hw);
    json_object_set_new(cfg, "layout",
                        json_string(nb_layout_name(f->layout.kind)));
    json_object_set_new(cfg, "slot_size", json_integer(f->o.slot_size));
    json_object_set_new(cfg, "first_id", json_integer(f->o.first_id));
    json_object_set_new(cfg, "threads", json_integer(f->o.threads));
    json_object_set_new(cfg, "time_scale", json_real(f->o.time_scale));
    json_object_set_new(cfg, "poll_ms", json_integer(f->o.poll_ms));
    json_object_set_new(cfg, "initial_version", jver(f->initial_version));
    json_object_set_new(tot, "devices", json_integer(f->n));
    json_object_set_new(tot, "updated", json_integer(t.updated));
    json_object_set_new(tot, "reverted", json_integer(t.reverted));
    json_object_set_new(tot, "bricked", json_integer(t.bricked));
    json_object_set_new(tot, "reverts", json_integer((json_int_t)t.reverts));
    json_object_set_new(tot, "violations", json_integer(t.violations));
    json_object_set_new(tot, "server_mismatches", json_integer(t.mismatches));
    json_object_set_new(tot, "faults", fired);
    json_object_set_new(tot, "crashes", json_integer((json_int_t)t.crashes));
    json_object_set_new(tot, "power_cycles",
                        json_integer((json_int_t)t.cycles));
    json_object_set_new(tot, "steps", json_integer((json_int_t)t.steps));
    json_object_set_new(tot, "requests", json_integer((json_int_t)t.requests));
    json_object_set_new(tot, "checkins", json_integer((json_int_t)t.checkins));
    json_object_set_new(tot, "elapsed_s", json_real(secs));
    json_object_set_new(tot, "updated_per_s",
                        json_real(secs > 0 ? t.updated / secs : 0));
    json_object_set_new(tot, "checkins_per_s",
                        json_real(secs > 0 ? (double)t.checkins / secs : 0));
    json_object_set_new(tot, "peak_rss_kb", json_integer(peak_rss_kb()));
    json_object_set_new(tot, "step_lag_ms_mean",
                        json_real(t.steps ? (double)t.lag_sum /
                                                (double)t.steps
                                          : 0));
    json_object_set_new(tot, "step_lag_ms_max",
                        json_integer((json_int_t)t.lag_max));
    json_object_set_new(tot, "until_met", json_boolean(f->until_met));
    if (f->o.server_pid) {
        double cpu = f->srv_cpu1 - f->srv_cpu0;
        json_object_set_new(tot, "server_cpu_s", json_real(cpu));
        json_object_set_new(tot, "server_cpu_ms_per_checkin",
                            json_real(t.checkins ? cpu * 1000.0 /
                                                       (double)t.checkins
                                                 : 0));
        json_object_set_new(tot, "server_rss_kb", json_integer(f->srv_rss_kb));
        json_object_set_new(tot, "server_peak_rss_kb",
                            json_integer(f->srv_hwm_kb));
    }
    for (uint32_t i = 0; i < f->n; i++)
        json_array_append_new(devs, device_json(f, f->devs[i]));
    json_object_set_new(root, "config", cfg);
    json_object_set_new(root, "totals", tot);
    json_object_set_new(root, "devices", devs);
    int rc = json_dump_file(root, path, JSON_COMPACT) == 0 ? 0 : -1;
    json_decref(root);
    if (rc)
        fprintf(stderr, "nobrick-sim fleet: %s: cannot write the report\n",
                path);
    return rc;
}
