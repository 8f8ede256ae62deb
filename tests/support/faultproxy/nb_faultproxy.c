/* nb_faultproxy.c - nb-faultproxy: a TCP proxy that breaks connections on
 * purpose, for the agent's tests (issue 4).
 *
 * One thread, one poll loop, any number of connections. Between the agent
 * and the server it drops connections at byte offsets, stalls them and
 * flips single bits in transit, all from one seeded generator, so a run
 * with the same --seed and the same traffic makes the same faults. Every
 * start prints its seed on stderr; pass it back with --seed to replay.
 *
 * Faults are placed on one byte counter shared by all connections,
 * counting the bytes that flow in the faulted direction(s) (server to
 * client by default). "--flip-every-bytes N" flips one bit at a random
 * place in each window of N bytes of that counter ([0,N), [N,2N), ...);
 * drops and stalls likewise happen once per window, after a random byte
 * in it. A shared counter rather than one per connection, because a
 * client that opens a new connection for every block would otherwise
 * never reach N on any of them.
 *
 * A drop delivers every byte before its offset, then closes both sides.
 * A stall delivers the bytes before its offset, then forwards nothing
 * more in that direction of that connection for M ms.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#define BUF_SIZE (64 * 1024)

static const char usage_text[] =
    "usage: nb-faultproxy --listen PORT --to HOST:PORT [options]\n"
    "\n"
    "A TCP proxy that drops, stalls and corrupts connections on purpose.\n"
    "Prints 'port N' as the first line on stdout once it listens, and a\n"
    "summary line on stdout at SIGTERM or SIGINT (then exits 0) or SIGUSR1\n"
    "(then goes on). Faults fall on a byte counter shared by all\n"
    "connections, in the faulted direction(s) only.\n"
    "\n"
    "  --listen PORT            port to listen on (0: pick a free one)\n"
    "  --bind ADDR              IPv4 address to listen on (default 127.0.0.1)\n"
    "  --to HOST:PORT           where to forward each connection\n"
    "  --seed S                 seed of the fault generator (default: from\n"
    "                           the clock; printed on stderr either way)\n"
    "  --drop-every-bytes N     close the connection once in every N bytes,\n"
    "                           after a random byte of each window of N\n"
    "  --drop-random P          close the connection after each byte with\n"
    "                           probability P (0 < P <= 1)\n"
    "  --stall-ms M             with --stall-every-bytes N: once in every N\n"
    "  --stall-every-bytes N    bytes, at a random byte, hold that direction\n"
    "                           of that connection for M ms\n"
    "  --flip-every-bytes N     flip one random bit of one random byte in\n"
    "                           every window of N bytes\n"
    "  --direction DIR          which bytes are faulted and counted: down\n"
    "                           (server to client, default), up, both\n"
    "  --quiet                  no per-connection lines on stderr\n"
    "  --verbose                a line on stderr for every fault\n"
    "\n"
    "summary: 'summary connections=C active=A connect_failures=F\n"
    "         bytes_up=U bytes_down=D drops=N flips=N stalls=N'\n"
    "exit status: 0 after SIGTERM/SIGINT, 1 on a start-up error, 64 bad usage.\n";

enum { DIR_UP = 1, DIR_DOWN = 2 };

/* One direction of one connection: bytes read from `from`, written to `to`. */
struct flow {
    unsigned char buf[BUF_SIZE];
    size_t off, len;        /* pending bytes: buf[off, len) */
    int eof;                /* `from` reached end of stream */
    int shut;               /* shutdown(to, SHUT_WR) done */
    int faulted;            /* faults apply to this direction */
    int drop_pending;       /* close the connection once buf is flushed */
    int stall_pending;      /* stall once buf is flushed */
    int64_t stall_until;    /* ms, CLOCK_MONOTONIC; read nothing before */
    uint64_t bytes;         /* bytes delivered */
};

struct conn {
    unsigned long id;
    int cfd, sfd;           /* client side, server side */
    int connecting;         /* non-blocking connect to the server pending */
    int dropped;
    struct flow up, down;   /* client->server, server->client */
};

struct faults {
    uint64_t pos;           /* bytes counted so far */
    uint64_t drop_every;    /* windowed drops, or */
    double drop_p;          /* per-byte drop probability */
    uint64_t drop_win, next_drop;
    uint64_t flip_every, flip_win, next_flip;
    uint64_t stall_every, stall_win, next_stall;
    int64_t stall_ms;
    uint64_t rng;
};

struct stats {
    uint64_t conns, connect_failures, bytes_up, bytes_down, drops, flips, stalls;
};

struct proxy {
    int lfd;
    struct sockaddr_storage to;
    socklen_t tolen;
    int dirs;               /* DIR_UP | DIR_DOWN */
    int quiet, verbose;
    struct faults f;
    struct stats st;
    struct conn **conns;
    size_t nconns, cap;
};

/* splitmix64: small, seedable, good enough to place faults. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return n ? rng_next(s) % n : 0;
}

/* Bytes until the next drop, >= 1, drawn from a geometric distribution. */
static uint64_t geometric_gap(uint64_t *s, double p)
{
    double u, g;
    if (p >= 1.0)
        return 1;
    u = ((double)(rng_next(s) >> 11) + 1.0) / 9007199254740993.0;  /* (0,1] */
    g = floor(log(u) / log1p(-p));
    if (!(g < 1e18))
        g = 1e18;
    return (uint64_t)g + 1;
}

static void schedule_drop(struct faults *f)
{
    if (f->drop_every) {
        f->next_drop = f->drop_win * f->drop_every + 1 + rng_below(&f->rng, f->drop_every);
        f->drop_win++;
    } else if (f->drop_p > 0) {
        f->next_drop = f->pos + geometric_gap(&f->rng, f->drop_p);
    }
}

static void schedule_flip(struct faults *f)
{
    f->next_flip = f->flip_win * f->flip_every + rng_below(&f->rng, f->flip_every);
    f->flip_win++;
}

static void schedule_stall(struct faults *f)
{
    f->next_stall = f->stall_win * f->stall_every + 1 + rng_below(&f->rng, f->stall_every);
    f->stall_win++;
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void print_summary(const struct proxy *p, FILE *out)
{
    fprintf(out, "summary connections=%" PRIu64 " active=%zu connect_failures=%" PRIu64
            " bytes_up=%" PRIu64 " bytes_down=%" PRIu64 " drops=%" PRIu64
            " flips=%" PRIu64 " stalls=%" PRIu64 "\n",
            p->st.conns, p->nconns, p->st.connect_failures, p->st.bytes_up,
            p->st.bytes_down, p->st.drops, p->st.flips, p->st.stalls);
    fflush(out);
}

static void set_sock_opts(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void conn_close(struct proxy *p, size_t i, const char *why)
{
    struct conn *c = p->conns[i];
    if (!p->quiet)
        fprintf(stderr, "nb-faultproxy: conn %lu closed (%s): up %" PRIu64
                " down %" PRIu64 "\n", c->id, why, c->up.bytes, c->down.bytes);
    close(c->cfd);
    close(c->sfd);
    free(c);
    p->conns[i] = p->conns[--p->nconns];
}

/* Room for one more connection in p->conns. 0 or -1. */
static int conns_reserve(struct proxy *p)
{
    size_t cap;
    struct conn **n;
    if (p->nconns < p->cap)
        return 0;
    cap = p->cap ? p->cap * 2 : 16;
    n = realloc(p->conns, cap * sizeof *n);
    if (!n)
        return -1;
    p->conns = n;
    p->cap = cap;
    return 0;
}

static void accept_all(struct proxy *p)
{
    for (;;) {
        struct conn *c;
        int cfd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), sfd;
        if (cfd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                fprintf(stderr, "nb-faultproxy: accept: %s\n", strerror(errno));
            return;
        }
        p->st.conns++;
        sfd = socket(p->to.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        c = calloc(1, sizeof *c);
        if (sfd < 0 || !c || conns_reserve(p) != 0) {
            fprintf(stderr, "nb-faultproxy: out of resources, refusing a connection\n");
            if (sfd >= 0)
                close(sfd);
            free(c);
            close(cfd);
            continue;
        }
        set_sock_opts(cfd);
        set_sock_opts(sfd);
        c->id = (unsigned long)p->st.conns;
        c->cfd = cfd;
        c->sfd = sfd;
        c->up.faulted = (p->dirs & DIR_UP) != 0;
        c->down.faulted = (p->dirs & DIR_DOWN) != 0;
        if (connect(sfd, (struct sockaddr *)&p->to, p->tolen) != 0) {
            if (errno != EINPROGRESS) {
                fprintf(stderr, "nb-faultproxy: conn %lu: connect: %s\n", c->id,
                        strerror(errno));
                p->st.connect_failures++;
                close(sfd);
                close(cfd);
                free(c);
                continue;
            }
            c->connecting = 1;
        }
        p->conns[p->nconns++] = c;
        if (!p->quiet)
            fprintf(stderr, "nb-faultproxy: conn %lu opened\n", c->id);
    }
}

/*
 * Reads what `from` has into fl (empty), applying the faults when fl is
 * faulted. Returns 0, or -1 when the connection must be closed.
 */
static int flow_read(struct proxy *p, struct conn *c, struct flow *fl, int from)
{
    struct faults *f = &p->f;
    size_t want = BUF_SIZE;
    ssize_t n;

    if (fl->faulted) {
        if ((f->drop_every || f->drop_p > 0) && f->next_drop - f->pos < want)
            want = (size_t)(f->next_drop - f->pos);
        if (f->stall_every && f->next_stall - f->pos < want)
            want = (size_t)(f->next_stall - f->pos);
    }
    n = recv(from, fl->buf, want, 0);
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    if (n == 0) {
        fl->eof = 1;
        return 0;
    }
    fl->off = 0;
    fl->len = (size_t)n;
    if (!fl->faulted)
        return 0;

    while (f->flip_every && f->next_flip < f->pos + (uint64_t)n) {
        unsigned bit = (unsigned)rng_below(&f->rng, 8);
        fl->buf[f->next_flip - f->pos] ^= (unsigned char)(1u << bit);
        p->st.flips++;
        if (p->verbose)
            fprintf(stderr, "nb-faultproxy: conn %lu: flip bit %u at byte %" PRIu64
                    " (%s %" PRIu64 ")\n", c->id, bit, f->next_flip,
                    fl == &c->up ? "up" : "down",
                    fl->bytes + (f->next_flip - f->pos));
        schedule_flip(f);
    }
    f->pos += (uint64_t)n;
    if ((f->drop_every || f->drop_p > 0) && f->pos == f->next_drop) {
        fl->drop_pending = 1;
        p->st.drops++;
        if (p->verbose)
            fprintf(stderr, "nb-faultproxy: conn %lu: drop after byte %" PRIu64
                    " (%s %" PRIu64 ")\n", c->id, f->pos,
                    fl == &c->up ? "up" : "down", fl->bytes + (uint64_t)n);
        schedule_drop(f);
    }
    if (f->stall_every && f->pos == f->next_stall) {
        fl->stall_pending = 1;
        p->st.stalls++;
        if (p->verbose)
            fprintf(stderr, "nb-faultproxy: conn %lu: stall %" PRId64 " ms after byte %"
                    PRIu64 "\n", c->id, f->stall_ms, f->pos);
        schedule_stall(f);
    }
    return 0;
}

/* Writes what fl holds to `to`. 0, or -1 when the connection must close. */
static int flow_write(struct proxy *p, struct conn *c, struct flow *fl, int to)
{
    ssize_t n = send(to, fl->buf + fl->off, fl->len - fl->off, MSG_NOSIGNAL);
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    fl->off += (size_t)n;
    fl->bytes += (uint64_t)n;
    if (fl == &c->up)
        p->st.bytes_up += (uint64_t)n;
    else
        p->st.bytes_down += (uint64_t)n;
    if (fl->off == fl->len) {
        fl->off = fl->len = 0;
        if (fl->drop_pending) {
            c->dropped = 1;
            return -1;
        }
        if (fl->stall_pending) {
            fl->stall_pending = 0;
            fl->stall_until = now_ms() + p->f.stall_ms;
        }
    }
    return 0;
}

/* Half-closes `to` once `from` ended and everything was forwarded. */
static void flow_finish(struct flow *fl, int to)
{
    if (fl->eof && fl->len == 0 && !fl->shut) {
        shutdown(to, SHUT_WR);
        fl->shut = 1;
    }
}

static int parse_u64(const char *s, uint64_t lo, uint64_t *out)
{
    char *end;
    unsigned long long v;
    if (*s == '-')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v < lo)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static int resolve_to(struct proxy *p, const char *arg)
{
    char host[256];
    const char *colon, *port, *h = arg;
    size_t hlen;
    struct addrinfo hints, *res;
    int rc;

    if (arg[0] == '[') {                  /* [v6]:port */
        const char *rb = strchr(arg, ']');
        if (!rb || rb[1] != ':')
            return -1;
        h = arg + 1;
        hlen = (size_t)(rb - h);
        port = rb + 2;
    } else {
        colon = strrchr(arg, ':');
        if (!colon)
            return -1;
        hlen = (size_t)(colon - arg);
        port = colon + 1;
    }
    if (hlen == 0 || hlen >= sizeof host || !*port)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "nb-faultproxy: %s: %s\n", arg, gai_strerror(rc));
        return -1;
    }
    memcpy(&p->to, res->ai_addr, res->ai_addrlen);
    p->tolen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, "nb-faultproxy: %s%s\n(see nb-faultproxy --help)\n", msg, arg);
    return 64;
}

enum {
    OPT_LISTEN = 256, OPT_BIND, OPT_TO, OPT_SEED, OPT_DROP_EVERY, OPT_DROP_RANDOM,
    OPT_STALL_MS, OPT_STALL_EVERY, OPT_FLIP_EVERY, OPT_DIRECTION, OPT_QUIET,
    OPT_VERBOSE, OPT_HELP
};

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"bind", required_argument, NULL, OPT_BIND},
    {"to", required_argument, NULL, OPT_TO},
    {"seed", required_argument, NULL, OPT_SEED},
    {"drop-every-bytes", required_argument, NULL, OPT_DROP_EVERY},
    {"drop-random", required_argument, NULL, OPT_DROP_RANDOM},
    {"stall-ms", required_argument, NULL, OPT_STALL_MS},
    {"stall-every-bytes", required_argument, NULL, OPT_STALL_EVERY},
    {"flip-every-bytes", required_argument, NULL, OPT_FLIP_EVERY},
    {"direction", required_argument, NULL, OPT_DIRECTION},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/*
 * The poll loop: runs until SIGTERM or SIGINT. 0, or 1 on a poll error.
 * The signals stay blocked and are read from sigfd, so none interrupts a
 * half-done step. pfds[0] is the listening socket, pfds[1] sigfd, then
 * two per connection (client side, server side).
 */
static int run(struct proxy *p, int sigfd)
{
    struct pollfd *pfds = NULL;
    size_t pcap = 0;
    int rc = 0;

    for (;;) {
        int64_t now = now_ms(), wake = -1;
        size_t i, np = 2;
        int n, timeout = -1;

        if (pcap < 2 + 2 * p->nconns) {
            size_t cap = 2 * (2 + 2 * p->nconns);
            struct pollfd *np_ = realloc(pfds, cap * sizeof *np_);
            if (!np_) {
                fprintf(stderr, "nb-faultproxy: out of memory\n");
                rc = 1;
                break;
            }
            pfds = np_;
            pcap = cap;
        }
        pfds[0].fd = p->lfd;
        pfds[0].events = POLLIN;
        pfds[0].revents = 0;
        pfds[1].fd = sigfd;
        pfds[1].events = POLLIN;
        pfds[1].revents = 0;
        for (i = 0; i < p->nconns; i++) {
            struct conn *c = p->conns[i];
            short ce = 0, se = 0;
            int up_ready = now >= c->up.stall_until, down_ready = now >= c->down.stall_until;
            if (c->up.len == 0 && !c->up.eof && up_ready)
                ce |= POLLIN;
            if (c->down.len > 0)
                ce |= POLLOUT;
            if (c->connecting) {
                se |= POLLOUT;
            } else {
                if (c->down.len == 0 && !c->down.eof && down_ready)
                    se |= POLLIN;
                if (c->up.len > 0)
                    se |= POLLOUT;
            }
            if (!up_ready && c->up.len == 0 && !c->up.eof)
                wake = (wake < 0 || c->up.stall_until < wake) ? c->up.stall_until : wake;
            if (!down_ready && c->down.len == 0 && !c->down.eof)
                wake = (wake < 0 || c->down.stall_until < wake) ? c->down.stall_until : wake;
            /* fd -1: poll ignores it, so no POLLHUP spins while idle. */
            pfds[np].fd = ce ? c->cfd : -1;
            pfds[np].events = ce;
            pfds[np].revents = 0;
            pfds[np + 1].fd = se ? c->sfd : -1;
            pfds[np + 1].events = se;
            pfds[np + 1].revents = 0;
            np += 2;
        }
        if (wake >= 0)
            timeout = wake - now <= 0 ? 0 : (int)(wake - now);
        n = poll(pfds, (nfds_t)np, timeout);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "nb-faultproxy: poll: %s\n", strerror(errno));
            rc = 1;
            break;
        }
        if (n <= 0)
            continue;
        if (pfds[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
                if (si.ssi_signo != SIGUSR1)
                    break;
                print_summary(p, stdout);
            }
        }

        /* Connections: walk backwards, as closing moves the last one to i. */
        for (i = p->nconns; i-- > 0;) {
            struct conn *c = p->conns[i];
            struct pollfd *cp = &pfds[2 + 2 * i], *sp = &pfds[3 + 2 * i];
            const char *why = NULL;

            if (c->connecting && sp->revents) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->sfd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) {
                    fprintf(stderr, "nb-faultproxy: conn %lu: connect: %s\n", c->id,
                            strerror(err));
                    p->st.connect_failures++;
                    conn_close(p, i, "connect failed");
                    continue;
                }
                c->connecting = 0;
                sp->revents &= (short)~POLLOUT;
                if (c->up.len > 0)
                    sp->revents |= POLLOUT;     /* try the pending bytes now */
            }
            if ((cp->revents & POLLERR) || (sp->revents & POLLERR)) {
                conn_close(p, i, "socket error");
                continue;
            }
            if ((cp->revents & (POLLIN | POLLHUP)) && (cp->events & POLLIN) &&
                flow_read(p, c, &c->up, c->cfd) != 0)
                why = "client read error";
            if (!why && (sp->revents & (POLLIN | POLLHUP)) && (sp->events & POLLIN) &&
                flow_read(p, c, &c->down, c->sfd) != 0)
                why = "server read error";
            if (!why && c->down.len > 0 && (cp->revents & POLLOUT) &&
                flow_write(p, c, &c->down, c->cfd) != 0)
                why = c->dropped ? "dropped" : "client write error";
            if (!why && !c->connecting && c->up.len > 0 && (sp->revents & POLLOUT) &&
                flow_write(p, c, &c->up, c->sfd) != 0)
                why = c->dropped ? "dropped" : "server write error";
            if (!why && !c->connecting) {
                flow_finish(&c->up, c->sfd);
                flow_finish(&c->down, c->cfd);
                if (c->up.shut && c->down.shut)
                    why = "closed";
            }
            if (why)
                conn_close(p, i, why);
        }
        if (pfds[0].revents & POLLIN)
            accept_all(p);
    }
    free(pfds);
    return rc;
}

int main(int argc, char **argv)
{
    struct proxy p;
    struct sockaddr_in sa;
    socklen_t salen = sizeof sa;
    const char *bind_addr = "127.0.0.1", *to = NULL;
    uint64_t listen_port = UINT64_MAX, seed = 0, v;
    int have_seed = 0, opt, one = 1, rc = 1, sigfd = -1;
    sigset_t sigs;
    size_t i;

    memset(&p, 0, sizeof p);
    p.lfd = -1;
    p.dirs = DIR_DOWN;

    while ((opt = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        switch (opt) {
        case OPT_LISTEN:
            if (parse_u64(optarg, 0, &listen_port) || listen_port > 65535)
                return usage_error("bad --listen ", optarg);
            break;
        case OPT_BIND: bind_addr = optarg; break;
        case OPT_TO: to = optarg; break;
        case OPT_SEED:
            if (parse_u64(optarg, 0, &seed))
                return usage_error("bad --seed ", optarg);
            have_seed = 1;
            break;
        case OPT_DROP_EVERY:
            if (parse_u64(optarg, 1, &p.f.drop_every))
                return usage_error("bad --drop-every-bytes ", optarg);
            break;
        case OPT_DROP_RANDOM: {
            char *end;
            errno = 0;
            p.f.drop_p = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(p.f.drop_p > 0 && p.f.drop_p <= 1))
                return usage_error("bad --drop-random (0 < P <= 1) ", optarg);
            break;
        }
        case OPT_STALL_MS:
            if (parse_u64(optarg, 1, &v) || v > 3600 * 1000)
                return usage_error("bad --stall-ms ", optarg);
            p.f.stall_ms = (int64_t)v;
            break;
        case OPT_STALL_EVERY:
            if (parse_u64(optarg, 1, &p.f.stall_every))
                return usage_error("bad --stall-every-bytes ", optarg);
            break;
        case OPT_FLIP_EVERY:
            if (parse_u64(optarg, 1, &p.f.flip_every))
                return usage_error("bad --flip-every-bytes ", optarg);
            break;
        case OPT_DIRECTION:
            if (!strcmp(optarg, "down"))
                p.dirs = DIR_DOWN;
            else if (!strcmp(optarg, "up"))
                p.dirs = DIR_UP;
            else if (!strcmp(optarg, "both"))
                p.dirs = DIR_UP | DIR_DOWN;
            else
                return usage_error("bad --direction (down, up or both) ", optarg);
            break;
        case OPT_QUIET: p.quiet = 1; break;
        case OPT_VERBOSE: p.verbose = 1; break;
        case OPT_HELP:
            fputs(usage_text, stdout);
            return 0;
        default:
            fprintf(stderr, "(see nb-faultproxy --help)\n");
            return 64;
        }
    }
    if (optind != argc)
        return usage_error("unexpected argument ", argv[optind]);
    if (listen_port == UINT64_MAX || !to)
        return usage_error("--listen and --to are required", "");
    if (p.f.drop_every && p.f.drop_p > 0)
        return usage_error("--drop-every-bytes and --drop-random exclude each other", "");
    if ((p.f.stall_ms > 0) != (p.f.stall_every > 0))
        return usage_error("--stall-ms and --stall-every-bytes go together", "");
    if (resolve_to(&p, to) != 0)
        return usage_error("bad --to (HOST:PORT) ", to);

    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)listen_port);
    if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1)
        return usage_error("bad --bind (an IPv4 address) ", bind_addr);

    if (!have_seed) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        seed = ((uint64_t)t.tv_sec * 1000000007ull) ^ (uint64_t)t.tv_nsec ^
               ((uint64_t)getpid() << 32);
    }
    p.f.rng = seed;
    if (p.f.drop_every || p.f.drop_p > 0)
        schedule_drop(&p.f);
    if (p.f.flip_every)
        schedule_flip(&p.f);
    if (p.f.stall_every)
        schedule_stall(&p.f);

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGUSR1);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    sigfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sigfd < 0) {
        fprintf(stderr, "nb-faultproxy: signalfd: %s\n", strerror(errno));
        return 1;
    }

    p.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p.lfd < 0 ||
        setsockopt(p.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(p.lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(p.lfd, 128) != 0 ||
        getsockname(p.lfd, (struct sockaddr *)&sa, &salen) != 0) {
        fprintf(stderr, "nb-faultproxy: cannot listen on %s:%" PRIu64 ": %s\n",
                bind_addr, listen_port, strerror(errno));
        goto out;
    }
    printf("port %u\n", (unsigned)ntohs(sa.sin_port));
    fflush(stdout);
    fprintf(stderr, "nb-faultproxy: listening on %s:%u, to %s, seed %" PRIu64 "\n",
            bind_addr, (unsigned)ntohs(sa.sin_port), to, seed);

    rc = run(&p, sigfd);
    print_summary(&p, stdout);
    if (!p.quiet)
        print_summary(&p, stderr);

out:
    for (i = p.nconns; i-- > 0;)
        conn_close(&p, i, "proxy stopping");
    free(p.conns);
    if (p.lfd >= 0)
        close(p.lfd);
    close(sigfd);
    return rc;
}
