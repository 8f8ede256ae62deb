/* download - the numbers of issue 4 (the device agent), on this machine:
 *
 *   goodput over loopback (MB/s, MB = 10^6 bytes) of nobrick-agent
 *     downloading a 1 MiB package over HTTP through nb-faultproxy with 0,
 *     10 and 100 injected connection drops (--drop-every-bytes sized to the
 *     package for about that many drops; the count that happened is
 *     printed); goodput = payload bytes / the agent's download_ms (first
 *     attempt to last block: reconnects and backoff waits included);
 *   bytes transferred as a multiple of the payload: the agent's own count
 *     of payload bytes received (all attempts), and every byte the proxy
 *     carried to the agent (manifest range, HTTP headers, bytes in flight
 *     when a connection was dropped);
 *   the agent's peak RSS (ru_maxrss of the child, from wait4).
 *
 * Each row is a whole update cycle of the real programs (nb-testserver,
 * nb-faultproxy, nobrick-sim, nobrick-agent --once) started here on
 * 127.0.0.1, on a fresh simulated flash, ROUNDS times (default 3); the row
 * shows the run with the median goodput and the highest RSS of all runs.
 * The agent's backoff is 1-4 ms here (retry_base_ms 1), so the figures
 * are the link's and the engine's, not the retry policy's: with the
 * default retry_base_ms of 1000 every drop adds a 0.5-1 s wait.
 *
 * Run by hand, not a test:  build/bench/download [ROUNDS]
 * The programs are found in the build tree this binary sits in
 * (build/bench/..), or in $NOBRICK_BUILD.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#define PAYLOAD 1048576u
#define MAX_ROUNDS 15
#define OUT_MAX 8192

struct ctx {
    char build[PATH_MAX - 64]; /* room for "/tests/nb-faultproxy" */
    char dir[64];   /* the work directory */
    char url[64];   /* the device API */
    pid_t server;
    long pkg_size;  /* the 1.1.0 package's bytes */
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2),
                                                      noreturn));

/* What die() stops: the peers it started (the work directory is kept
 * for its logs). */
static pid_t server_pid, proxy_pid;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("download: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (proxy_pid > 0)
        kill(proxy_pid, SIGTERM);
    if (server_pid > 0)
        kill(server_pid, SIGTERM);
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Start argv[0] with stdout to a pipe (*out_fd) or /dev/null, stderr to
 * `errlog` (appended) or /dev/null. */
static pid_t spawn(char *const argv[], int *out_fd, const char *errlog)
{
    int p[2] = {-1, -1};
    if (out_fd && pipe(p) != 0)
        die("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        int err = errlog ? open(errlog, O_WRONLY | O_CREAT | O_APPEND, 0644)
                         : null;
        dup2(null, 0);
        dup2(out_fd ? p[1] : null, 1);
        dup2(err >= 0 ? err : null, 2);
        if (out_fd) {
            close(p[0]);
            close(p[1]);
        }
        execv(argv[0], argv);
        fprintf(stderr, "download: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (out_fd) {
        close(p[1]);
        *out_fd = p[0];
    }
    return pid;
}

/* Read from fd until EOF (or `stop` appears, when given) into buf. */
static size_t read_all(int fd, char *buf, size_t cap, const char *stop,
                       int timeout_ms)
{
    size_t n = 0;
    double end = now_s() + timeout_ms / 1000.0;
    while (n + 1 < cap) {
        struct pollfd pf = {fd, POLLIN, 0};
        int left = (int)((end - now_s()) * 1000);
        if (left <= 0 || poll(&pf, 1, left) <= 0)
            break;
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        buf[n] = '\0';
        if (stop && strstr(buf, stop))
            break;
    }
    buf[n] = '\0';
    return n;
}

/* The port a test peer prints as its first line ("port N"). */
static int read_port(int fd, const char *who)
{
    char line[256];
    int port = 0;
    read_all(fd, line, sizeof(line), "\n", 10000);
    if (sscanf(line, "port %d", &port) != 1 || port <= 0)
        die("%s printed no port line ('%s')", who, line);
    return port;
}

/* Run to completion; exit status (127: could not start). */
static int run_wait(char *const argv[], const char *errlog)
{
    int st;
    pid_t pid = spawn(argv, NULL, errlog);
    if (waitpid(pid, &st, 0) < 0)
        return 127;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static size_t discard(char *p, size_t s, size_t n, void *u)
{
    (void)p;
    (void)u;
    return s * n;
}

/* POST `json` to the test server's control API. */
static void control(const struct ctx *c, const char *path, const char *json)
{
    char url[128];
    long code = 0;
    snprintf(url, sizeof(url), "%s/test/%s", c->url, path);
    CURL *e = curl_easy_init();
    struct curl_slist *h =
        curl_slist_append(NULL, "Content-Type: application/json");
    if (!e || !h)
        die("libcurl: out of memory");
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    CURLcode rc = curl_easy_perform(e);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    if (rc != CURLE_OK || code != 200)
        die("control %s: %s, HTTP %ld", path, curl_easy_strerror(rc), code);
}

/* An unsigned field of the agent's JSON line; -1 when absent. */
static long long field(const char *json, const char *name)
{
    char key[64];
    snprintf(key, sizeof(key), "\"%s\":", name);
    const char *p = strstr(json, key);
    return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

struct result {
    double goodput;   /* MB/s */
    double ratio;     /* bytes / payload */
    long long bytes, download_ms, reopens, drops;
    double wire;      /* bytes the proxy carried to the agent / payload */
    double wall;      /* the agent process, s */
    long rss_kib;
};

/* One update through a proxy dropping once in every `every` bytes (0:
 * none). */
static void one_run(struct ctx *c, unsigned every, unsigned seed,
                    struct result *res)
{
    char path[PATH_MAX], flash[128], arg_every[32], arg_seed[32], to[64],
        offer[512], out[OUT_MAX], errlog[128];
    int px_fd, ag_fd;

    /* The proxy in front of the server. */
    snprintf(path, sizeof(path), "%s/tests/nb-faultproxy", c->build);
    snprintf(to, sizeof(to), "127.0.0.1:%s", strrchr(c->url, ':') + 1);
    snprintf(arg_every, sizeof(arg_every), "%u", every);
    snprintf(arg_seed, sizeof(arg_seed), "%u", seed);
    snprintf(errlog, sizeof(errlog), "%s/proxy.err", c->dir);
    char *px_argv[] = {path, "--listen", "0", "--to", to, "--seed", arg_seed,
                       "--quiet", every ? "--drop-every-bytes" : NULL,
                       arg_every, NULL};
    pid_t px = proxy_pid = spawn(px_argv, &px_fd, errlog);
    int px_port = read_port(px_fd, "nb-faultproxy");

    /* A fresh device running 1.0.0, and the offer through the proxy. */
    snprintf(flash, sizeof(flash), "%s/dev.flash", c->dir);
    snprintf(path, sizeof(path), "%s/nobrick-sim", c->build);
    char v1[128];
    snprintf(v1, sizeof(v1), "%s/v100.nbpkg", c->dir);
    unlink(flash);
    char *init_argv[] = {path, "init", "--flash", flash, "--layout", "ab",
                         "--slot-size", "2097152", "--image", v1, NULL};
    if (run_wait(init_argv, errlog) != 0)
        die("nobrick-sim init failed (see %s)", errlog);
    snprintf(offer, sizeof(offer),
             "{\"device\":\"dev-bench\",\"offer\":{\"rollout\":\"r-%u\","
             "\"version\":\"1.1.0\",\"security_version\":2,"
             "\"package_size\":%ld,\"artifacts\":{\"http\":"
             "\"http://127.0.0.1:%d/api/v1/artifacts/v110.nbpkg\"}}}",
             seed, c->pkg_size, px_port);
    control(c, "offer", offer);

    /* The agent, once. */
    snprintf(path, sizeof(path), "%s/nobrick-agent", c->build);
    snprintf(errlog, sizeof(errlog), "%s/agent.err", c->dir);
    char *ag_argv[] = {path, "--once", "--flash", flash,
                       "--device-id", "dev-bench", "--device-token", "tok",
                       "--server-url", c->url, "--transport", "http",
                       "--retry-base-ms", "1", "--retry-max-ms", "4",
                       "--retry-attempts", "20", "--log-level", "warn",
                       NULL};
    double t0 = now_s();
    pid_t ag = spawn(ag_argv, &ag_fd, errlog);
    read_all(ag_fd, out, sizeof(out), NULL, 120000);
    close(ag_fd);
    int st;
    struct rusage ru;
    if (wait4(ag, &st, 0, &ru) < 0)
        die("wait4: %s", strerror(errno));
    res->wall = now_s() - t0;
    res->rss_kib = ru.ru_maxrss;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 ||
        !strstr(out, "\"outcome\":\"updated\""))
        die("the agent did not update (exit %d): %s (log: %s)",
            WIFEXITED(st) ? WEXITSTATUS(st) : -1, out, errlog);

    /* The proxy's count of drops. */
    kill(px, SIGTERM);
    char sum[1024];
    read_all(px_fd, sum, sizeof(sum), NULL, 5000);
    close(px_fd);
    waitpid(px, &st, 0);
    proxy_pid = 0;
    const char *d = strstr(sum, "drops=");
    res->drops = d ? strtoll(d + 6, NULL, 10) : -1;
    const char *w = strstr(sum, "bytes_down=");
    res->wire = w ? (double)strtoll(w + 11, NULL, 10) / PAYLOAD : -1;

    long long payload = field(out, "payload");
    res->bytes = field(out, "bytes");
    res->download_ms = field(out, "download_ms");
    res->reopens = field(out, "reopens");
    if (payload != PAYLOAD || res->bytes <= 0)
        die("unexpected agent output: %s", out);
    res->ratio = (double)res->bytes / (double)payload;
    res->goodput = (double)payload / 1e6 /
                   ((res->download_ms > 0 ? (double)res->download_ms : 0.5) /
                    1000.0);
}

static int by_goodput(const void *a, const void *b)
{
    double x = ((const struct result *)a)->goodput;
    double y = ((const struct result *)b)->goodput;
    return x < y ? -1 : x > y;
}

static void find_build(struct ctx *c)
{
    const char *env = getenv("NOBRICK_BUILD");
    if (env && env[0]) {
        size_t len = strlen(env);
        if (len >= sizeof(c->build))
            die("NOBRICK_BUILD is too long");
        memcpy(c->build, env, len + 1);
        return;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        die("cannot find the build tree: set NOBRICK_BUILD");
    self[n] = '\0';
    for (int up = 0; up < 2; up++) { /* build/bench/download -> build */
        char *slash = strrchr(self, '/');
        if (!slash)
            die("cannot find the build tree: set NOBRICK_BUILD");
        *slash = '\0';
    }
    size_t len = strlen(self);
    if (len >= sizeof(c->build))
        die("the build tree's path is too long");
    memcpy(c->build, self, len + 1);
}

int main(int argc, char **argv)
{
    struct ctx c;
    int rounds = argc > 1 ? atoi(argv[1]) : 3;
    if (argc > 2 || rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "usage: download [ROUNDS]   (1..%d, default 3)\n",
                MAX_ROUNDS);
        return 64;
    }
    memset(&c, 0, sizeof(c));
    find_build(&c);
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        die("libcurl cannot initialise");
    snprintf(c.dir, sizeof(c.dir), "/tmp/nb-bench-download-XXXXXX");
    if (!mkdtemp(c.dir))
        die("mkdtemp: %s", strerror(errno));

    /* The packages: 1.0.0 on the device, 1.1.0 (1 MiB payload) offered. */
    char sim[PATH_MAX], art[128], pkg[160], v1[128], log[128];
    snprintf(sim, sizeof(sim), "%s/nobrick-sim", c.build);
    snprintf(art, sizeof(art), "%s/art", c.dir);
    snprintf(pkg, sizeof(pkg), "%s/v110.nbpkg", art);
    snprintf(v1, sizeof(v1), "%s/v100.nbpkg", c.dir);
    snprintf(log, sizeof(log), "%s/setup.err", c.dir);
    if (mkdir(art, 0755) != 0)
        die("mkdir %s: %s", art, strerror(errno));
    char *mk1[] = {sim, "make-image", "--version", "1.0.0",
                   "--security-version", "1", "--size", "100000", "--out",
                   v1, NULL};
    char *mk2[] = {sim, "make-image", "--version", "1.1.0",
                   "--security-version", "2", "--size", "1048576", "--out",
                   pkg, NULL};
    if (run_wait(mk1, log) != 0 || run_wait(mk2, log) != 0)
        die("nobrick-sim make-image failed (is %s built? see %s)", sim, log);
    struct stat sb;
    if (stat(pkg, &sb) != 0)
        die("%s: %s", pkg, strerror(errno));
    c.pkg_size = (long)sb.st_size;

    /* The device API. */
    char srv[PATH_MAX];
    int srv_fd;
    snprintf(srv, sizeof(srv), "%s/tests/nb-testserver", c.build);
    snprintf(log, sizeof(log), "%s/server.err", c.dir);
    char *srv_argv[] = {srv, "--artifacts", art, "--quiet", "--device",
                        "dev-bench:tok", NULL};
    c.server = server_pid = spawn(srv_argv, &srv_fd, log);
    snprintf(c.url, sizeof(c.url), "http://127.0.0.1:%d",
             read_port(srv_fd, "nb-testserver"));

    printf("nobrick-agent download over loopback: 1 MiB payload (%ld-byte "
           "package), HTTP through nb-faultproxy,\n%d round(s) per row "
           "(median goodput shown), backoff 1-4 ms\n\n", c.pkg_size, rounds);
    printf("%-6s %-11s %6s %8s %13s %10s %10s %10s %13s\n", "drops",
           "drop every", "drops", "reopens", "goodput MB/s", "bytes",
           "x payload", "wire x", "peak RSS KiB");
    printf("%-6s %-11s %6s %8s %13s %10s %10s %10s %13s\n", "(aim)",
           "(bytes)", "(real)", "", "", "", "", "", "");
    static const unsigned aims[] = {0, 10, 100};
    for (unsigned i = 0; i < sizeof(aims) / sizeof(aims[0]); i++) {
        struct result r[MAX_ROUNDS];
        /* About `aim` drops over the package's bytes on the wire. */
        unsigned every = aims[i] ? (unsigned)(c.pkg_size / aims[i]) : 0;
        long rss = 0;
        for (int k = 0; k < rounds; k++) {
            one_run(&c, every, 1000u * (i + 1) + (unsigned)k, &r[k]);
            if (r[k].rss_kib > rss)
                rss = r[k].rss_kib;
        }
        qsort(r, (size_t)rounds, sizeof(r[0]), by_goodput);
        const struct result *m = &r[rounds / 2];
        char ev[16];
        snprintf(ev, sizeof(ev), "%u", every);
        printf("%-6u %-11s %6lld %8lld %13.1f %10lld %10.3f %10.3f %13ld\n",
               aims[i], every ? ev : "-", m->drops, m->reopens, m->goodput,
               m->bytes, m->ratio, m->wire, rss);
        fflush(stdout);
    }
    printf("\ngoodput = payload / download_ms (the agent's: first attempt "
           "to last block); bytes = payload\nbytes received by the agent, "
           "all attempts; wire = every byte the proxy carried to the agent\n"
           "(the manifest's range, HTTP headers, bytes in flight at a drop) "
           "/ payload; peak RSS = ru_maxrss\nof the agent process\n");

    kill(c.server, SIGTERM);
    int st;
    waitpid(c.server, &st, 0);
    close(srv_fd);
    curl_global_cleanup();
    char rm[160];
    snprintf(rm, sizeof(rm), "rm -rf '%s'", c.dir);
    if (system(rm) != 0)
        fprintf(stderr, "download: could not remove %s\n", c.dir);
    return 0;
}
