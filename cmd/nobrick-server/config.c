/* config.c - nobrick-server's settings; see config.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"

enum kind { K_STR, K_U64, K_HASHES, K_PATHS };

struct key {
    const char *name;
    enum kind kind;
    size_t off;          /* the field; for K_HASHES/K_PATHS the array */
    size_t count_off;    /* K_HASHES/K_PATHS: the unsigned count */
    uint64_t min, max;   /* K_U64 */
    const char *def;     /* default as text ("" = none) */
    const char *help;
};

#define S(f) K_STR, offsetof(struct srv_config, f), 0, 0, 0
#define U(f, lo, hi) K_U64, offsetof(struct srv_config, f), 0, lo, hi
#define H(f) K_HASHES, offsetof(struct srv_config, f), \
             offsetof(struct srv_config, n_##f), 0, 0
#define P(f) K_PATHS, offsetof(struct srv_config, f), \
             offsetof(struct srv_config, n_##f), 0, 0
#define MIB (1024ull * 1024ull)

static const struct key keys[] = {
    {"listen", S(listen), "127.0.0.1",
     "IPv4 or IPv6 address to listen on; plain HTTP (no tls_cert) only on "
     "a loopback address unless --insecure-http is given"},
    {"port", U(port, 0, 65535), "8080",
     "TCP port; 0 picks a free one. Once listening, the first line on "
     "stdout is 'port N'"},
    {"db", S(db), "nobrick.db",
     "the database: a SQLite file path (sqlite:PATH also works) or a "
     "postgresql://user@host:port/dbname URL"},
    {"artifacts", S(artifacts), "artifacts",
     "directory of the artifacts (packages, manifests, revocation lists) "
     "served under /api/v1/artifacts/; uploads land here too"},
    {"public_url", S(public_url), "",
     "this server's base URL as devices reach it, put into offers "
     "(default: http(s)://LISTEN:PORT)"},
    {"artifact_base_url", S(artifact_base_url), "",
     "base URL of artifacts in offers when a CDN or nginx serves the "
     "artifact directory (default: PUBLIC_URL/api/v1/artifacts)"},
    {"ftp_base_url", S(ftp_base_url), "",
     "optional: offers also carry artifacts.ftp = FTP_BASE_URL/NAME"},
    {"mqtt", S(mqtt), "",
     "optional broker HOST[:PORT]: the server answers MQTT block requests "
     "for its artifacts (docs/device-api.md) and offers carry "
     "artifacts.mqtt"},
    {"mqtt_root", S(mqtt_root), "nobrick", "MQTT topic root"},
    {"threads", U(threads, 1, 1024), "4",
     "HTTP worker threads (database connections: one more)"},
    {"tls_cert", S(tls_cert), "",
     "PEM certificate (chain) for HTTPS; with tls_key"},
    {"tls_key", S(tls_key), "", "PEM private key for HTTPS"},
    {"admin_token_sha256", H(admin_token_sha256), "",
     "SHA-256 (64 hex digits) of an admin token of the management API; "
     "repeatable"},
    {"admin_token_file", S(admin_token_file), "",
     "file with admin tokens (plain, one a line) whose SHA-256 the server "
     "keeps"},
    {"fleet_token_sha256", H(fleet_token_sha256), "",
     "SHA-256 of a fleet enrolment token: a device's first check-in with it "
     "registers the device and returns its own token; repeatable"},
    {"fleet_token_file", S(fleet_token_file), "",
     "file with fleet enrolment tokens (plain, one a line)"},
    {"root_pub", P(root_pub), "",
     "PEM public root key that package uploads must chain to; repeatable"},
    {"max_package_size", U(max_package_size, 1024, 1ull << 40), "268435456",
     "largest package or file upload in bytes (256 MiB)"},
    {"poll_seconds", U(poll_seconds, 1, 30 * 86400), "300",
     "check-in interval told to devices with nothing to do (an offer says "
     "at most 60)"},
    {"artifact_auth", U(artifact_auth, 0, 1), "0",
     "1: artifact downloads need a device token (Authorization: Bearer)"},
    {"revocations", S(revocations), "",
     "optional: artifact name of the newest signed revocation list; every "
     "check-in answer names it with revocations_seq"},
    {"revocations_seq", U(revocations_seq, 0, 0xFFFFFFFFu), "0",
     "sequence number of that list"},
    {"connection_timeout", U(connection_timeout, 1, 86400), "60",
     "seconds an idle connection is kept"},
    {"max_connections", U(max_connections, 1, 1000000), "1024",
     "connections at once, at most"},
    {"ddi_tenant", S(ddi_tenant), "DEFAULT",
     "hawkBit DDI tenant of /TENANT/controller/v1/... (docs/hawkbit.md); "
     "compared without case"},
    {"log_level", S(log_level), "info", "error, warn, info or debug"},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const struct key *find(const char *name, unsigned *idx)
{
    char n[64];
    size_t len = strlen(name);
    if (len >= sizeof(n))
        return NULL;
    for (size_t i = 0; i <= len; i++)
        n[i] = name[i] == '-' ? '_' : name[i];
    for (unsigned i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, n) == 0) {
            if (idx)
                *idx = i;
            return &keys[i];
        }
    return NULL;
}

int srv_config_is_key(const char *name)
{
    return find(name, NULL) != NULL;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;
    if (!(*s >= '0' && *s <= '9'))
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int is_hex64(const char *s)
{
    size_t n = strlen(s);
    if (n != 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
              (s[i] >= 'A' && s[i] <= 'F')))
            return 0;
    return 1;
}

void srv_config_defaults(struct srv_config *o)
{
    memset(o, 0, sizeof(*o));
    for (unsigned i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];
        char *base = (char *)o + k->off;
        if (k->kind == K_STR)
            snprintf(base, SRV_STR_MAX, "%s", k->def);
        else if (k->kind == K_U64 && k->def[0])
            parse_u64(k->def, k->min, k->max, (uint64_t *)(void *)base);
    }
}

int srv_config_set(struct srv_config *o, const char *key, const char *value,
                   const char *where, int cli, FILE *err)
{
    unsigned idx;
    const struct key *k = find(key, &idx);
    char *base;
    uint64_t bit;
    if (!k) {
        fprintf(err, "nobrick-server: %s: unknown key '%s' (see "
                "nobrick-server --help)\n", where, key);
        return -1;
    }
    base = (char *)o + k->off;
    bit = 1ull << idx;
    if (k->kind == K_HASHES || k->kind == K_PATHS) {
        unsigned *n = (unsigned *)(void *)((char *)o + k->count_off);
        unsigned cap = k->kind == K_HASHES ? SRV_MAX_TOKENS : SRV_MAX_ROOTS;
        size_t width = k->kind == K_HASHES ? 65 : SRV_STR_MAX;
        /* The command line's values replace the file's. */
        if (cli && !(o->set_cli & bit))
            *n = 0;
        if (k->kind == K_HASHES && !is_hex64(value)) {
            fprintf(err, "nobrick-server: %s: %s must be 64 hex digits (the "
                    "SHA-256 of the token, e.g. from sha256sum)\n", where,
                    k->name);
            return -1;
        }
        if (*n >= cap || strlen(value) >= width || !value[0]) {
            fprintf(err, "nobrick-server: %s: %s: %s\n", where, k->name,
                    !value[0] ? "empty value" : *n >= cap ? "too many values"
                                                         : "value too long");
            return -1;
        }
        snprintf(base + (size_t)*n * width, width, "%s", value);
        (*n)++;
        o->set |= bit;
        if (cli)
            o->set_cli |= bit;
        return 0;
    }
    if ((o->set & bit) && !cli && !(o->set_cli & bit)) {
        fprintf(err, "nobrick-server: %s: '%s' is set twice\n", where,
                k->name);
        return -1;
    }
    if (!cli && (o->set_cli & bit))
        return 0; /* the command line wins */
    if (k->kind == K_STR) {
        if (strlen(value) >= SRV_STR_MAX) {
            fprintf(err, "nobrick-server: %s: %s is longer than %d bytes\n",
                    where, k->name, SRV_STR_MAX - 1);
            return -1;
        }
        snprintf(base, SRV_STR_MAX, "%s", value);
    } else if (parse_u64(value, k->min, k->max, (uint64_t *)(void *)base)) {
        fprintf(err, "nobrick-server: %s: %s must be a whole number from "
                "%llu to %llu, not '%s'\n", where, k->name,
                (unsigned long long)k->min, (unsigned long long)k->max,
                value);
        return -1;
    }
    o->set |= bit;
    if (cli)
        o->set_cli |= bit;
    return 0;
}

static char *trim(char *s)
{
    size_t n;
    while (*s == ' ' || *s == '\t')
        s++;
    n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
                 s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

int srv_config_load(struct srv_config *o, const char *path, FILE *err)
{
    char line[SRV_STR_MAX + 128], where[SRV_STR_MAX + 32];
    unsigned lineno = 0;
    int rc = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(err, "nobrick-server: %s: cannot read the config file: %s\n",
                path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        char *s, *eq;
        lineno++;
        snprintf(where, sizeof(where), "%s:%u", path, lineno);
        if (!strchr(line, '\n') && !feof(f)) {
            fprintf(err, "nobrick-server: %s: line too long\n", where);
            rc = -1;
            break;
        }
        s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        eq = strchr(s, '=');
        if (!eq) {
            fprintf(err, "nobrick-server: %s: expected 'key = value'\n",
                    where);
            rc = -1;
            break;
        }
        *eq = '\0';
        if (srv_config_set(o, trim(s), trim(eq + 1), where, 0, err)) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        fprintf(err, "nobrick-server: %s: read error\n", path);
        rc = -1;
    }
    fclose(f);
    return rc;
}

int srv_config_loopback(const char *addr)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, addr, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, addr, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) ||
               (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return 0;
}

static int url_ok(const char *u)
{
    return !u[0] || !strncmp(u, "http://", 7) || !strncmp(u, "https://", 8);
}

int srv_config_check(const struct srv_config *o, FILE *err)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, o->listen, &a4) != 1 &&
        inet_pton(AF_INET6, o->listen, &a6) != 1) {
        fprintf(err, "nobrick-server: listen '%s' is not an IPv4 or IPv6 "
                "address\n", o->listen);
        return -1;
    }
    if (!o->db[0] || !o->artifacts[0]) {
        fprintf(err, "nobrick-server: %s must not be empty\n",
                !o->db[0] ? "db" : "artifacts");
        return -1;
    }
    if (!o->tls_cert[0] != !o->tls_key[0]) {
        fprintf(err, "nobrick-server: HTTPS needs both tls_cert and tls_key "
                "(only %s is set)\n", o->tls_cert[0] ? "tls_cert" : "tls_key");
        return -1;
    }
    if (!o->tls_cert[0] && !o->insecure_http && !srv_config_loopback(o->listen)) {
        fprintf(err, "nobrick-server: refusing plain HTTP on %s: set tls_cert "
                "and tls_key, listen on a loopback address, or pass "
                "--insecure-http (behind a TLS-terminating proxy)\n",
                o->listen);
        return -1;
    }
    if (!url_ok(o->public_url) || !url_ok(o->artifact_base_url)) {
        fprintf(err, "nobrick-server: %s must start with http:// or "
                "https://\n", url_ok(o->public_url) ? "artifact_base_url"
                                                    : "public_url");
        return -1;
    }
    if (o->ftp_base_url[0] && strncmp(o->ftp_base_url, "ftp://", 6) &&
        strncmp(o->ftp_base_url, "ftps://", 7)) {
        fprintf(err, "nobrick-server: ftp_base_url must start with ftp:// or "
                "ftps://\n");
        return -1;
    }
    if (srv_log_level_parse(o->log_level) < 0) {
        fprintf(err, "nobrick-server: log_level '%s': error, warn, info or "
                "debug\n", o->log_level);
        return -1;
    }
    if (o->revocations[0] && !o->revocations_seq) {
        fprintf(err, "nobrick-server: revocations needs revocations_seq (the "
                "list's sequence number, 1 or more)\n");
        return -1;
    }
    return 0;
}

void srv_config_help(FILE *out)
{
    for (unsigned i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];
        const char *p = k->help;
        fprintf(out, "  %s", k->name);
        if (k->def[0])
            fprintf(out, " (default %s)", k->def);
        fputc('\n', out);
        /* Wrap the help at about 72 columns, indented. */
        while (*p) {
            size_t n = strlen(p);
            if (n > 66) {
                n = 66;
                while (n > 0 && p[n] != ' ')
                    n--;
                if (n == 0)
                    n = 66;
            }
            fprintf(out, "      %.*s\n", (int)n, p);
            p += n;
            while (*p == ' ')
                p++;
        }
    }
}
