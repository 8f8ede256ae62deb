/* server.c - `nobrick server ...`: the management API of nobrick-server
 * (docs/server-api.md) from the command line. This file holds the
 * dispatch, the options every server command takes, the session (server
 * URL, admin token, curl handle), `upload` and `packages`; devices and
 * rollouts are in server_devices.c and server_rollouts.c, the requests in
 * server_http.c; see server.h.
 *
 * The admin token comes from --token-file, else NOBRICK_ADMIN_TOKEN; the
 * tool's global --token (a PKCS#11 token label elsewhere) is taken here
 * as the admin token itself, with a warning, because a command line is
 * visible to every user of the machine.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server.h"

#define SPEC_MAX 24

static const char usage_server[] =
    "usage: nobrick server [--server URL] [--token-file FILE] [--cacert FILE]\n"
    "         [--json] COMMAND ...\n"
    "\n"
    "Packages, devices and rollouts of a nobrick-server, through its\n"
    "management API (docs/server-api.md).\n"
    "\n"
    "commands:\n"
    "  upload PKG.nbpkg      upload a signed package; prints its ID\n"
    "  packages [list]       the packages\n"
    "  packages show ID      one package\n"
    "  devices [list]        the devices (--tag, --group, --hw-rev, --limit)\n"
    "  devices show ID       one device, with its rollouts and events\n"
    "  devices add ID        register a device; prints its token once\n"
    "  devices tag ID T...   replace a device's tags\n"
    "  devices group ID G    set a device's group (--none: no group)\n"
    "  rollouts create       offer a package to a target, in steps\n"
    "  rollouts [list]       the rollouts\n"
    "  rollouts show ID      state, reach and devices per state\n"
    "  rollouts pause ID     stop new offers (--reason TEXT)\n"
    "  rollouts resume ID    start the current step again\n"
    "  rollouts abort ID     end a rollout for good\n"
    "  rollouts wait ID      poll until a state or a percentage is reached\n"
    "\n"
    "server options (anywhere after 'server'):\n"
    "  --server URL        the server, e.g. https://updates.example.com:8443\n"
    "                      (else NOBRICK_SERVER)\n"
    "  --token-file FILE   the admin token: the first line of FILE (else\n"
    "                      NOBRICK_ADMIN_TOKEN)\n"
    "  --token TOKEN       the admin token itself: other users see it in the\n"
    "                      process list, so this warns; prefer the above\n"
    "  --cacert FILE       CA certificate(s), PEM, that an https server's\n"
    "                      certificate must chain to (default: the system's)\n"
    "  --json              print the server's JSON answers, one per line\n"
    "\n"
    "'nobrick server COMMAND --help' shows the options of a command.\n"
    "\n"
    "exit status: 0 done; 1 failed (refused by the server, server not\n"
    "reachable, wait timed out), with one line 'nobrick: ...' on stderr;\n"
    "64 bad command line (nothing sent).\n";

#define SERVER_OPTS                                                         \
    "server options: --server URL, --token-file FILE, --cacert FILE, --json\n" \
    "(see 'nobrick server --help').\n"

static const char usage_upload[] =
    "usage: nobrick server upload PKG.nbpkg [--channel production|development]\n"
    "         [--file NAME=PATH ...]\n"
    "\n"
    "Upload a signed package, streamed from the file, and print its package\n"
    "ID. The server checks its signatures against its root keys\n"
    "(root_pub) and its payload digest, and refuses in channel production a\n"
    "security version below the highest uploaded there (rollback). The same\n"
    "bytes uploaded again give the same package and ID.\n"
    "\n"
    "  --channel C       production (default) or development\n"
    "  --file NAME=PATH  also upload PATH as the package's file NAME, for\n"
    "                    hawkBit DDI clients (a .swu, ...); repeatable, up\n"
    "                    to 16; NAME is 1 to 64 of A-Z a-z 0-9 . _ -\n"
    "\n"
    "Progress (percent, bytes, rate, time left) is drawn on stderr when it\n"
    "is a terminal; otherwise one line once each file is sent. With --json,\n"
    "the package object (after its files) instead of the ID.\n"
    "\n" SERVER_OPTS;

static const char usage_packages[] =
    "usage: nobrick server packages [list] [--limit N]\n"
    "       nobrick server packages show ID\n"
    "\n"
    "list: the packages, oldest first: ID, version, security version,\n"
    "channel, hardware revisions, size, upload time. --limit N shows at\n"
    "most N (default 100; 0: all).\n"
    "show: every field of one package, its extra files included.\n"
    "\n" SERVER_OPTS;

/* ----------------------------------------------------------- options */

static int is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 ||
           strcmp(a, "help") == 0;
}

static int matches(const char *arg, const char *name)
{
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

int srv_parse(struct srv *s, int argc, char **argv, struct opt *spec,
              size_t n, char **pos, size_t maxpos, size_t *npos)
{
    struct opt all[SO_COUNT + SPEC_MAX];
    if (n > SPEC_MAX) { /* a bug; not 1, which means --help here */
        fail("%s: more than %d options", s->cmd, SPEC_MAX);
        return EXIT_USAGE;
    }
    memcpy(all, s->common, sizeof(s->common));
    if (n)
        memcpy(all + SO_COUNT, spec, n * sizeof(*spec));
    int rc = parse_opts(s->g, s->cmd, argc, argv, all, SO_COUNT + n, pos,
                        maxpos, npos);
    memcpy(s->common, all, sizeof(s->common));
    if (n)
        memcpy(spec, all + SO_COUNT, n * sizeof(*spec));
    if (rc)
        return rc;
    if (s->g->module)
        return usage_err(s->cmd, "--module has no use in server commands");
    if (s->g->pin_arg)
        return usage_err(s->cmd, "--pin has no use in server commands");
    s->json = s->common[SO_JSON].set;
    return 0;
}

/* The common options (and the tool's global ones) before a command word,
 * from argv[*i]. `strict`: anything else is an error; else stop there.
 * Returns 0 or EXIT_USAGE. */
static int pre_opts(struct srv *s, int argc, char **argv, int *i, int strict)
{
    while (*i < argc && argv[*i][0] == '-' && argv[*i][1] &&
           !is_help(argv[*i])) {
        int rc = parse_global(s->g, argc, argv, i);
        if (rc == 1) {
            (*i)++;
            continue;
        }
        if (rc)
            return rc;
        int k = 0;
        while (k < SO_COUNT && !matches(argv[*i], s->common[k].name))
            k++;
        if (k == SO_COUNT) {
            if (!strict)
                return 0;
            return usage_err(s->cmd, "unknown option '%.*s' before the "
                                     "command",
                             (int)strcspn(argv[*i], "="), argv[*i]);
        }
        int take = s->common[k].kind != OPT_FLAG && !strchr(argv[*i], '=')
                       ? 2 : 1;
        if (take > argc - *i)
            take = argc - *i;
        size_t np;
        rc = parse_opts(s->g, s->cmd, take, argv + *i, s->common, SO_COUNT,
                        NULL, 0, &np);
        if (rc)
            return rc == 1 ? EXIT_USAGE : rc;
        *i += take;
    }
    return 0;
}

static int id_ok(const char *id)
{
    size_t n = strlen(id);
    int bad = n == 0 || n > SRV_ID_MAX || strcmp(id, ".") == 0 ||
              strcmp(id, "..") == 0;
    for (size_t i = 0; i < n && !bad; i++)
        bad = (unsigned char)id[i] <= 0x20 || id[i] == 0x7F || id[i] == '/';
    return !bad;
}

int srv_check_id(const struct srv *s, const char *what, const char *id)
{
    if (!id_ok(id))
        return usage_err(s->cmd, "%s '%s' is not an ID (1 to %d printable "
                         "characters, no '/' or blank)",
                         what, id, SRV_ID_MAX);
    return 0;
}

int srv_check_name(const struct srv *s, const char *what, const char *v)
{
    size_t n = strlen(v);
    int bad = n == 0 || n > 64;
    for (size_t i = 0; i < n && !bad; i++)
        bad = !((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
                (v[i] >= '0' && v[i] <= '9') || v[i] == '.' || v[i] == '_' ||
                v[i] == '-');
    if (bad)
        return usage_err(s->cmd, "%s: '%s' is not 1 to 64 of A-Z a-z 0-9 . _ -",
                         what, v);
    return 0;
}

int srv_check_hw_rev(const struct srv *s, const char *what, const char *v)
{
    size_t n = strlen(v);
    int bad = n == 0 || n > 64;
    for (size_t i = 0; i < n && !bad; i++)
        bad = (unsigned char)v[i] < 0x20 || (unsigned char)v[i] >= 0x7F;
    if (bad)
        return usage_err(s->cmd, "%s: '%s' is not a hardware revision (1 to "
                         "64 printable ASCII characters)",
                         what, v);
    return 0;
}

json_t *srv_name_list(const struct srv *s, const char *what,
                      char *const *values, int count, int check,
                      unsigned max)
{
    json_t *a = json_array();
    char one[256];
    if (!a) {
        fail("out of memory");
        return NULL;
    }
    for (int i = 0; i < count; i++) {
        for (const char *p = values[i];;) {
            size_t len = strcspn(p, ",");
            snprintf(one, sizeof(one), "%.*s", (int)len, p);
            if ((check ? srv_check_name(s, what, one)
                       : srv_check_hw_rev(s, what, one)))
                goto bad;
            size_t k;
            json_t *e;
            json_array_foreach(a, k, e) if (strcmp(json_string_value(e),
                                                   one) == 0)
            {
                usage_err(s->cmd, "%s: '%s' given twice", what, one);
                goto bad;
            }
            if (json_array_size(a) >= max) {
                usage_err(s->cmd, "%s: more than %u values", what, max);
                goto bad;
            }
            json_array_append_new(a, json_string(one));
            if (!p[len])
                break;
            p += len + 1;
        }
    }
    return a;
bad:
    json_decref(a);
    return NULL;
}

/* ----------------------------------------------------------- session */

/* 1 when the URL's host is this machine (a token may go there in clear). */
static int loopback(const char *url)
{
    const char *h = strstr(url, "://") + 3;
    size_t n = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":/");
    return (n == 9 && strncasecmp(h, "localhost", 9) == 0) ||
           strncmp(h, "127.", 4) == 0 || (n == 5 && strncmp(h, "[::1]", 5) == 0);
}

static int set_url(struct srv *s)
{
    const char *u = s->common[SO_SERVER].value, *src = "--server";
    if (!s->common[SO_SERVER].set) {
        u = getenv("NOBRICK_SERVER");
        src = "NOBRICK_SERVER";
        if (!u || !*u)
            return fail("%s: no server: pass --server URL or set "
                        "NOBRICK_SERVER",
                        s->cmd);
    }
    size_t n = strlen(u);
    int ok = (strncasecmp(u, "http://", 7) == 0 && n > 7) ||
             (strncasecmp(u, "https://", 8) == 0 && n > 8);
    for (size_t i = 0; i < n && ok; i++)
        ok = (unsigned char)u[i] > 0x20 && u[i] != 0x7F;
    if (!ok || n >= SRV_URL_MAX - 16) {
        if (s->common[SO_SERVER].set)
            return usage_err(s->cmd, "--server: '%s' is not an http:// or "
                             "https:// URL", u);
        return fail("%s: %s: '%s' is not an http:// or https:// URL",
                    s->cmd, src, u);
    }
    while (n > 8 && u[n - 1] == '/')
        n--;
    if (n > 7 + 8 && strncmp(u + n - 7, "/api/v1", 7) == 0)
        n -= 7;
    snprintf(s->base, sizeof(s->base), "%.*s/api/v1", (int)n, u);
    return 0;
}

/* The first line of a token file, without its line end. */
static int read_token_file(struct srv *s, const char *path,
                           char tok[SRV_TOKEN_MAX + 2])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail("%s: not a regular file", path);
    }
    if (st.st_mode & 077)
        warn("%s can be read by other users (mode %04o): chmod 600 it",
             path, (unsigned)(st.st_mode & 07777));
    size_t got = 0;
    while (got < SRV_TOKEN_MAX + 1) {
        ssize_t r = read(fd, tok + got, SRV_TOKEN_MAX + 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return fail("%s: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    tok[got] = '\0';
    tok[strcspn(tok, "\r\n")] = '\0';
    (void)s;
    return 0;
}

static int set_token(struct srv *s)
{
    char tok[SRV_TOKEN_MAX + 2];
    const char *src;
    if (s->g->token && s->common[SO_TOKEN_FILE].set)
        return usage_err(s->cmd, "give --token-file or --token, not both");
    if (s->g->token) {
        warn("--token is visible to other users in the process list; "
             "prefer --token-file FILE or NOBRICK_ADMIN_TOKEN");
        snprintf(tok, sizeof(tok), "%s", s->g->token);
        wipe_str((char *)s->g->token);
        src = "--token";
    } else if (s->common[SO_TOKEN_FILE].set) {
        src = s->common[SO_TOKEN_FILE].value;
        if (read_token_file(s, src, tok))
            return EXIT_FAIL;
    } else {
        const char *e = getenv("NOBRICK_ADMIN_TOKEN");
        if (!e || !*e)
            return fail("%s: no admin token: pass --token-file FILE or set "
                        "NOBRICK_ADMIN_TOKEN",
                        s->cmd);
        snprintf(tok, sizeof(tok), "%s", e);
        src = "NOBRICK_ADMIN_TOKEN";
    }
    size_t n = strlen(tok);
    int ok = n > 0 && n <= SRV_TOKEN_MAX;
    for (size_t i = 0; i < n && ok; i++)
        ok = tok[i] > 0x20 && tok[i] < 0x7F;
    if (!ok) {
        explicit_bzero(tok, sizeof(tok));
        return fail("%s: the admin token from %s is not 1 to %d printable "
                    "characters without blanks",
                    s->cmd, src, SRV_TOKEN_MAX);
    }
    size_t cap = n + 32;
    s->auth = malloc(cap);
    if (!s->auth) {
        explicit_bzero(tok, sizeof(tok));
        return fail("out of memory");
    }
    snprintf(s->auth, cap, "Authorization: Bearer %s", tok);
    explicit_bzero(tok, sizeof(tok));
    return 0;
}

int srv_open(struct srv *s)
{
    int rc = set_url(s);
    if (rc)
        return rc;
    if ((rc = set_token(s)))
        return rc;
    if (strncasecmp(s->base, "http://", 7) == 0 && !loopback(s->base))
        warn("the admin token goes in clear to %.*s: use https", 
             (int)(strlen(s->base) - 7), s->base);
    if (s->common[SO_CACERT].set &&
        access(s->common[SO_CACERT].value, R_OK) != 0)
        return fail("%s: %s", s->common[SO_CACERT].value, strerror(errno));
    s->curl = curl_easy_init();
    if (!s->curl)
        return fail("%s: libcurl could not start", s->cmd);
    return 0;
}

void srv_about(struct srv *s, const char *id)
{
    size_t n = strlen(s->cmd);
    snprintf(s->cmd + n, sizeof(s->cmd) - n, " %s", id);
}

void srv_close(struct srv *s)
{
    if (s->curl)
        curl_easy_cleanup(s->curl);
    s->curl = NULL;
    if (s->auth) {
        explicit_bzero(s->auth, strlen(s->auth));
        free(s->auth);
    }
    s->auth = NULL;
}

/* ------------------------------------------------------------ upload */

static int upload(struct srv *s, int argc, char **argv)
{
    enum { CHANNEL, FILES };
    struct opt o[] = {[CHANNEL] = {.name = "--channel", .kind = OPT_VALUE},
                      [FILES] = {.name = "--file", .kind = OPT_MULTI}};
    char *pos[1];
    size_t npos;
    int rc = srv_parse(s, argc, argv, o, NOPTS(o), pos, 1, &npos);
    if (rc == 1)
        return fputs(usage_upload, stdout), EXIT_OK;
    if (rc)
        return rc;
    if (npos != 1)
        return usage_err(s->cmd, "which package? give PKG.nbpkg");
    const char *channel = o[CHANNEL].set ? o[CHANNEL].value : "production";
    if (strcmp(channel, "production") && strcmp(channel, "development"))
        return usage_err(s->cmd, "--channel: '%s' is not production or "
                         "development", channel);
    char names[MULTI_MAX][65];
    const char *paths[MULTI_MAX];
    for (int i = 0; i < o[FILES].count; i++) {
        char *v = o[FILES].values[i], *eq = strchr(v, '=');
        if (!eq || eq == v || !eq[1] || eq - v > 64)
            return usage_err(s->cmd, "--file: '%s' is not NAME=PATH", v);
        snprintf(names[i], sizeof(names[i]), "%.*s", (int)(eq - v), v);
        paths[i] = eq + 1;
        if (srv_check_name(s, "--file", names[i]))
            return EXIT_USAGE;
        for (int k = 0; k < i; k++)
            if (strcmp(names[k], names[i]) == 0)
                return usage_err(s->cmd, "--file: name '%s' given twice",
                                 names[i]);
    }

    /* Every file readable, and the package a package, before sending. */
    char magic[4] = {0};
    FILE *f = fopen(pos[0], "rb");
    if (!f)
        return fail("%s: %s", pos[0], strerror(errno));
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    if (got != 4 || memcmp(magic, "NBPK", 4) != 0)
        return fail("%s: not a nobrick package (it does not start with "
                    "'NBPK'); make one with 'nobrick package'",
                    pos[0]);
    for (int i = 0; i < o[FILES].count; i++) {
        struct stat st;
        if (stat(paths[i], &st) != 0)
            return fail("%s: %s", paths[i], strerror(errno));
        if (!S_ISREG(st.st_mode) || access(paths[i], R_OK) != 0)
            return fail("%s: not a readable regular file", paths[i]);
    }
    if ((rc = srv_open(s)))
        return rc;

    char path[128];
    snprintf(path, sizeof(path), "/packages?channel=%s", channel);
    const char *base = strrchr(pos[0], '/') ? strrchr(pos[0], '/') + 1
                                            : pos[0];
    json_t *pkg;
    if (srv_upload(s, "POST", path, pos[0], base, &pkg))
        return EXIT_FAIL;
    const char *id = js_str(pkg, "id");
    char idc[SRV_ID_MAX + 1];
    if (!id || !id_ok(id)) {
        json_decref(pkg);
        return fail("%s: the server's answer has no usable package 'id'",
                    s->cmd);
    }
    snprintf(idc, sizeof(idc), "%s", id);
    if (!s->json)
        printf("%s\n", idc), fflush(stdout);
    char *eid = srv_esc(s, idc);
    rc = eid ? 0 : EXIT_FAIL;
    for (int i = 0; i < o[FILES].count && !rc; i++) {
        snprintf(s->cmd, sizeof(s->cmd), "server upload: file %.64s of %.128s",
                 names[i], idc);
        char fp[SRV_URL_MAX];
        snprintf(fp, sizeof(fp), "/packages/%s/files/%.64s", eid, names[i]);
        rc = srv_upload(s, "PUT", fp, paths[i], names[i], NULL);
    }
    if (!rc && s->json && o[FILES].count) {
        /* The package as it is now, with its files. */
        json_decref(pkg);
        pkg = NULL;
        char pp[SRV_ID_MAX * 3 + 16];
        snprintf(pp, sizeof(pp), "/packages/%s", eid);
        rc = srv_json(s, "GET", pp, NULL, &pkg);
    }
    if (!rc && s->json)
        srv_print_json(pkg);
    curl_free(eid);
    json_decref(pkg);
    return rc;
}

/* ---------------------------------------------------------- packages */

static int packages_list(struct srv *s, int argc, char **argv)
{
    struct opt o[] = {{.name = "--limit", .kind = OPT_VALUE}};
    size_t npos;
    int rc = srv_parse(s, argc, argv, o, NOPTS(o), NULL, 0, &npos);
    if (rc == 1)
        return fputs(usage_packages, stdout), EXIT_OK;
    if (rc)
        return rc;
    uint64_t limit = 100;
    if (o[0].set && parse_u64(s->cmd, "--limit", o[0].value, 0, 100000000,
                              &limit))
        return EXIT_USAGE;
    if ((rc = srv_open(s)))
        return rc;
    json_t *items;
    int more;
    if (srv_list(s, "/packages", NULL, limit, &items, &more))
        return EXIT_FAIL;
    if (s->json) {
        json_t *doc = json_pack("{s:O,s:b}", "items", items, "more", more);
        srv_print_json(doc);
        json_decref(doc);
        json_decref(items);
        return EXIT_OK;
    }
    static const char *const hdr[] = {"ID", "VERSION", "SECURITY", "CHANNEL",
                                      "HW REVS", "SIZE", "UPLOADED"};
    static const char *const key[] = {"id", "version", "security_version",
                                      "channel", "hw_revs", "size",
                                      "created_at"};
    struct table t;
    table_init(&t, 7, hdr);
    size_t i;
    json_t *it;
    rc = 0;
    json_array_foreach(items, i, it)
    {
        char c[7][256];
        const char *cells[7];
        for (int k = 0; k < 7; k++) {
            js_text(key[k], json_object_get(it, key[k]), c[k], sizeof(c[k]));
            cells[k] = c[k];
        }
        if ((rc = table_row(&t, cells)))
            break;
    }
    if (!rc)
        table_print(&t);
    table_free(&t);
    if (!rc && more)
        warn("showing the first %" PRIu64 " packages; --limit N shows more "
             "(0: all)", limit);
    json_decref(items);
    return rc;
}

static int packages_show(struct srv *s, int argc, char **argv)
{
    char *pos[1];
    size_t npos;
    int rc = srv_parse(s, argc, argv, NULL, 0, pos, 1, &npos);
    if (rc == 1)
        return fputs(usage_packages, stdout), EXIT_OK;
    if (rc)
        return rc;
    if (npos != 1)
        return usage_err(s->cmd, "which package? give its ID");
    if (srv_check_id(s, "package", pos[0]))
        return EXIT_USAGE;
    srv_about(s, pos[0]);
    if ((rc = srv_open(s)))
        return rc;
    char *e = srv_esc(s, pos[0]);
    if (!e)
        return EXIT_FAIL;
    char path[SRV_ID_MAX * 3 + 16];
    snprintf(path, sizeof(path), "/packages/%s", e);
    curl_free(e);
    json_t *p;
    if (srv_json(s, "GET", path, NULL, &p))
        return EXIT_FAIL;
    if (s->json)
        srv_print_json(p);
    else
        print_object(p, 0, NULL);
    json_decref(p);
    return EXIT_OK;
}

/* ------------------------------------------------------------ groups */

int srv_group(struct srv *s, const char *name, const struct srv_sub *subs,
              size_t n, const char *usage, int argc, char **argv)
{
    int i = 0, rc = pre_opts(s, argc, argv, &i, 0);
    if (rc)
        return rc;
    if (i < argc && is_help(argv[i]))
        return fputs(usage, stdout), EXIT_OK;
    const struct srv_sub *sb = &subs[0];
    if (i < argc && argv[i][0] != '-') {
        for (sb = subs; sb < subs + n && strcmp(argv[i], sb->name); sb++)
            ;
        if (sb == subs + n)
            return usage_err(s->cmd, "unknown command '%s'", argv[i]);
        i++;
    }
    snprintf(s->cmd, sizeof(s->cmd), "server %s %s", name, sb->name);
    return sb->fn(s, argc - i, argv + i);
}

static int packages(struct srv *s, int argc, char **argv)
{
    static const struct srv_sub subs[] = {{"list", packages_list},
                                          {"show", packages_show}};
    return srv_group(s, "packages", subs, NOPTS(subs), usage_packages, argc,
                     argv);
}

int cmd_server(struct ctx *g, int argc, char **argv)
{
    static const struct srv_sub cmds[] = {{"upload", upload},
                                      {"packages", packages},
                                      {"devices", srv_devices},
                                      {"rollouts", srv_rollouts}};
    struct srv s;
    memset(&s, 0, sizeof(s));
    s.g = g;
    s.common[SO_SERVER] = (struct opt){.name = "--server", .kind = OPT_VALUE};
    s.common[SO_TOKEN_FILE] =
        (struct opt){.name = "--token-file", .kind = OPT_VALUE};
    s.common[SO_CACERT] = (struct opt){.name = "--cacert", .kind = OPT_VALUE};
    s.common[SO_JSON] = (struct opt){.name = "--json", .kind = OPT_FLAG};
    snprintf(s.cmd, sizeof(s.cmd), "server");
    int i = 0, rc = pre_opts(&s, argc, argv, &i, 1);
    if (rc)
        return rc;
    if (i >= argc)
        return usage_err("server", "which command? upload, packages, "
                                   "devices or rollouts");
    if (is_help(argv[i]))
        return fputs(usage_server, stdout), EXIT_OK;
    size_t k = 0;
    while (k < NOPTS(cmds) && strcmp(argv[i], cmds[k].name))
        k++;
    if (k == NOPTS(cmds))
        return usage_err("server", "unknown command '%s'", argv[i]);
    snprintf(s.cmd, sizeof(s.cmd), "server %s", cmds[k].name);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return fail("server: libcurl could not start");
    rc = cmds[k].fn(&s, argc - i - 1, argv + i + 1);
    srv_close(&s);
    curl_global_cleanup();
    return rc;
}
