/* main.c - nobrick-server: the update server (issue 5).
 *
 * Reads the configuration (file, then command-line flags), opens the
 * database and runs its migrations, listens (HTTP on loopback, HTTPS, or
 * plain HTTP anywhere only with --insecure-http), prints "port N" on
 * stdout once listening, optionally answers MQTT block requests for the
 * artifacts, and runs until SIGTERM or SIGINT. Everything it knows is in
 * the database, so it can be killed at any moment and restarted, and
 * several can share one PostgreSQL database. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__ /* defined by any libc header above */
#include <malloc.h>
#endif

#include "http.h"
#include "nb_mqtt_serve.h"
#include "server.h"

static const char usage_head[] =
    "usage: nobrick-server [--config FILE] [--KEY VALUE ...] [flags]\n"
    "\n"
    "The nobrick update server: device API, artifacts, management API,\n"
    "metrics (docs/server.md, docs/device-api.md, docs/server-api.md).\n"
    "Settings come from the config file (KEY = VALUE lines), then from\n"
    "--KEY VALUE (or --KEY=VALUE) flags, which win. Prints 'port N' as the\n"
    "first line on stdout once it listens; logs one logfmt line per request\n"
    "on stderr; stops on SIGTERM or SIGINT.\n"
    "\n"
    "flags:\n"
    "  --config FILE      read settings from FILE\n"
    "  --insecure-http    allow plain HTTP on a non-loopback address (behind\n"
    "                     a TLS-terminating proxy on a trusted network)\n"
    "  --quiet            no per-request log lines\n"
    "  --help             this text\n"
    "\n"
    "settings (config keys; repeatable ones may be given several times):\n";

static const char usage_tail[] =
    "\n"
    "exit status: 0 after SIGTERM/SIGINT, 1 on a start-up error, 64 bad "
    "usage.\n";

/* ------------------------------------------------------------------ mqtt */

struct mqtt_run {
    struct nb_mqtt_serve *ms;
    pthread_t thread;
    int stop;    /* __atomic */
    int started;
};

static void *mqtt_loop(void *arg)
{
    struct mqtt_run *m = arg;
    while (!__atomic_load_n(&m->stop, __ATOMIC_RELAXED))
        nb_mqtt_serve_step(m->ms, 200);
    return NULL;
}

/* cfg->mqtt is HOST or HOST:PORT. */
static int mqtt_start(struct srv *s, struct mqtt_run *m)
{
    const struct srv_config *cfg = s->cfg;
    struct nb_mqtt_serve_config mc;
    char host[SRV_STR_MAX];
    const char *colon = strrchr(cfg->mqtt, ':');
    int port = 0;
    nb_err err;
    memset(&mc, 0, sizeof mc);
    snprintf(host, sizeof host, "%s", cfg->mqtt);
    if (colon && !strchr(colon, ']')) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (*end || p < 1 || p > 65535) {
            fprintf(stderr, "nobrick-server: mqtt '%s': HOST or HOST:PORT\n",
                    cfg->mqtt);
            return -1;
        }
        port = (int)p;
        host[colon - cfg->mqtt] = '\0';
    }
    mc.host = host;
    mc.port = port;
    mc.dir = cfg->artifacts;
    mc.topic_root = cfg->mqtt_root[0] ? cfg->mqtt_root : NULL;
    mc.log_level = 1;
    err = nb_mqtt_serve_new(&m->ms, &mc);
    if (err && err != NB_ERR_IO) {
        fprintf(stderr, "nobrick-server: mqtt: %s\n", nb_err_name(err));
        return -1;
    }
    if (err == NB_ERR_IO)
        srv_logf(&s->log, SRV_LOG_WARN, "mqtt broker %s not reachable yet; "
                 "retrying", cfg->mqtt);
    if (pthread_create(&m->thread, NULL, mqtt_loop, m) != 0) {
        nb_mqtt_serve_free(m->ms);
        m->ms = NULL;
        return -1;
    }
    m->started = 1;
    return 0;
}

static void mqtt_stop(struct mqtt_run *m)
{
    if (!m->started)
        return;
    __atomic_store_n(&m->stop, 1, __ATOMIC_RELAXED);
    pthread_join(m->thread, NULL);
    nb_mqtt_serve_free(m->ms);
}

/* ------------------------------------------------------------ arguments */

/* Returns 0 to go on, or an exit status. */
static int parse_args(int argc, char **argv, struct srv_config *cfg)
{
    const char *config = NULL;
    int i;
    /* First the config file, so that flags win over it. */
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_head, stdout);
            srv_config_help(stdout);
            fputs(usage_tail, stdout);
            return -1;
        }
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            config = argv[++i];
        else if (!strncmp(argv[i], "--config=", 9))
            config = argv[i] + 9;
    }
    if (config && srv_config_load(cfg, config, stderr))
        return 1;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *val;
        char key[64], where[80];
        const char *eq;
        if (!strcmp(a, "--config")) {
            i++;
            continue;
        }
        if (!strncmp(a, "--config=", 9))
            continue;
        if (!strcmp(a, "--insecure-http")) {
            cfg->insecure_http = 1;
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            cfg->quiet = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "nobrick-server: unexpected argument '%s' (see "
                    "nobrick-server --help)\n", a);
            return 64;
        }
        a += 2;
        eq = strchr(a, '=');
        if ((eq ? (size_t)(eq - a) : strlen(a)) >= sizeof key) {
            fprintf(stderr, "nobrick-server: unknown flag '%s'\n", argv[i]);
            return 64;
        }
        snprintf(key, sizeof key, "%.*s", (int)(eq ? (size_t)(eq - a)
                                                   : strlen(a)), a);
        if (!srv_config_is_key(key)) {
            fprintf(stderr, "nobrick-server: unknown flag '--%s' (see "
                    "nobrick-server --help)\n", key);
            return 64;
        }
        if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            fprintf(stderr, "nobrick-server: --%s needs a value\n", key);
            return 64;
        }
        snprintf(where, sizeof where, "--%s", key);
        if (srv_config_set(cfg, key, val, where, 1, stderr))
            return 64;
    }
    return 0;
}

/* Keep freed heap memory instead of handing it back at once. A request
 * allocates and frees some 100 KB (decide() in device_api.c, SQLite's
 * caches); with glibc's default 128 KB trim threshold each free at the
 * top of a thread's heap was trimmed with madvise(MADV_DONTNEED), and
 * every trim flushes the TLB of every CPU the server runs on: over half
 * of the server's CPU time per check-in, and page faults to get the
 * memory back (docs/benchmarks.md). Setting the threshold also ends
 * glibc's moving mmap threshold, so it is set here too: blocks of 1 MiB
 * and up still come from mmap and go back to the kernel when freed. */
static void heap_tuning(void)
{
#ifdef __GLIBC__
    mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
    mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
#endif
}

int main(int argc, char **argv)
{
    static struct srv_config cfg;
    static struct srv s;
    struct srv_http *h = NULL;
    struct mqtt_run mq;
    char msg[512], url[300];
    sigset_t sigs;
    int rc, sig;

    heap_tuning();
    memset(&mq, 0, sizeof mq);
    srv_config_defaults(&cfg);
    rc = parse_args(argc, argv, &cfg);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (srv_config_check(&cfg, stderr))
        return 1;

    /* Signals go to sigwait in this thread only: every thread started
     * after this (MHD's, the MQTT loop) inherits the mask. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    if (srv_init(&s, &cfg, msg, sizeof msg) != NB_OK) {
        fprintf(stderr, "nobrick-server: %s\n", msg);
        return 1;
    }
    if (srv_http_start(&s, &h, msg, sizeof msg) != NB_OK) {
        fprintf(stderr, "nobrick-server: %s\n", msg);
        srv_fini(&s);
        return 1;
    }
    snprintf(url, sizeof url, strchr(cfg.listen, ':') ? "%s://[%s]:%u"
                                                      : "%s://%s:%u",
             cfg.tls_cert[0] ? "https" : "http", cfg.listen,
             srv_http_port(h));
    srv_set_public_url(&s, url);
    if (cfg.mqtt[0] && mqtt_start(&s, &mq) != 0) {
        srv_http_stop(h);
        srv_fini(&s);
        return 1;
    }
    printf("port %u\n", srv_http_port(h));
    fflush(stdout);
    {
        char port[16], pool[16];
        snprintf(port, sizeof port, "%u", srv_http_port(h));
        snprintf(pool, sizeof pool, "%llu", (unsigned long long)cfg.threads);
        srv_log_kv(&s.log, SRV_LOG_INFO, "listening", "listen", cfg.listen,
                   "port", port, "tls", cfg.tls_cert[0] ? "on" : "off",
                   "db", nb_db_backend(s.db), "threads", pool,
                   "public_url", s.public_url, "artifacts", cfg.artifacts,
                   (const char *)NULL);
    }
    if (!cfg.public_url[0] && !srv_config_loopback(cfg.listen))
        srv_logf(&s.log, SRV_LOG_WARN, "public_url is not set: offers name "
                 "%s, which devices may not reach", s.public_url);

    while (sigwait(&sigs, &sig) != 0)
        ;
    srv_logf(&s.log, SRV_LOG_INFO, "signal %d: stopping", sig);
    mqtt_stop(&mq);
    srv_http_stop(h);
    srv_fini(&s);
    return 0;
}
