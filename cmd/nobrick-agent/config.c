/* config.c - nobrick-agent's settings; see config.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "config.h"

enum kind { K_STR, K_U64 };

struct key {
    const char *name;
    enum kind kind;
    size_t off;
    uint64_t min, max;   /* K_U64 */
    const char *def;     /* default as text ("" = none) */
    const char *help;
};

#define S(f) K_STR, offsetof(struct agent_opts, f), 0, 0
#define U(f, lo, hi) K_U64, offsetof(struct agent_opts, f), lo, hi
#define DAY 86400000u
/* The simulated device's revision (NB_TEST_HW_REV of lib/nb_testpkg.h). */
#define HW_REV_DEFAULT "sim-1"

static const struct key keys[] = {
    {"flash", S(flash), "",
     "the device's flash (required): with flash_type sim a simulated flash "
     "file made by 'nobrick-sim init'; mtd: /dev/mtdN; block: a block "
     "device or a plain file (used at its current length)"},
    {"flash_type", S(flash_type), "sim",
     "sim, mtd or block: the flash backend (mtd and block need layout and "
     "slot_size, and a device provisioned with --provision)"},
    {"flash_sector_size", U(flash_sector_size, 1, 1u << 30), "4096",
     "block only: the erase unit in bytes, a multiple of flash_write_size"},
    {"flash_write_size", U(flash_write_size, 1, 32), "8",
     "block only: the program unit in bytes: 1, 2, 4, 8, 16 or 32"},
    {"flash_erase_value", S(flash_erase_value), "0xff",
     "block only: the value an erase writes, 0xff or 0x00"},
    {"layout", S(layout), "ab",
     "mtd/block only: ab, ab-swap or single, planned over the device's "
     "geometry (journal first, then the slots); never change it after "
     "provisioning"},
    {"slot_size", U(slot_size, 1, 0xFFFFFFFFu), "",
     "mtd/block only: bytes per slot, rounded up to whole sectors "
     "(required for mtd/block; never change it after provisioning)"},
    {"device_id", S(device_id), "",
     "this device's ID at the server: 1-64 of A-Z a-z 0-9 . _ - (required)"},
    {"server_url", S(server_url), "",
     "the update server, e.g. http://127.0.0.1:8080 (required; /api/v1 is "
     "appended)"},
    {"device_token", S(device_token), "",
     "bearer token of the device API (or a fleet enrolment token on the "
     "first check-in)"},
    {"token_file", S(token_file), "",
     "file holding the token: read when device_token is not set; a token "
     "the server issues at enrolment is written to it"},
    {"hw_rev", S(hw_rev), HW_REV_DEFAULT,
     "the device's hardware revision: told at check-in, and packages must "
     "list it"},
    {"root_pub", S(root_pub), "",
     "root public keys the device trusts: PEM files (nobrick key "
     "export-public), comma-separated, up to 4; empty: the simulator's TEST "
     "root (never for a product)"},
    {"vendor", S(vendor), "",
     "this device's vendor ID (UUID) that packages must carry; empty: the "
     "test vendor"},
    {"class", S(class_id), "",
     "this device's class ID (UUID) that packages must carry; empty: the "
     "test class"},
    {"transport", S(transport), "https,http,ftps,ftp,mqtt,file",
     "transports in order of preference; the first one the offer carries is "
     "used (http/https: artifacts.http, ftp/ftps: artifacts.ftp, mqtt: "
     "artifacts.mqtt, file: the artifact's file name in file_dir)"},
    {"file_dir", S(file_dir), ".",
     "directory where the file transport finds an artifact by its file "
     "name; no file outside it is read"},
    {"mqtt_host", S(mqtt_host), "127.0.0.1", "MQTT broker host"},
    {"mqtt_port", U(mqtt_port, 1, 65535), "1883", "MQTT broker port"},
    {"ca_file", S(ca_file), "",
     "PEM CA certificate(s) for https and ftps (default: the system's)"},
    {"connect_timeout_ms", U(connect_timeout_ms, 1, DAY), "10000",
     "time to connect (TCP, TLS, FTP login, MQTT CONNACK)"},
    {"request_timeout_ms", U(request_timeout_ms, 1, DAY), "30000",
     "time for one device-API request (check-in, report, manifest)"},
    {"stall_timeout_ms", U(stall_timeout_ms, 1, DAY), "30000",
     "a download that receives no byte for this long is dropped (and "
     "retried)"},
    {"retry_base_ms", U(retry_base_ms, 1, DAY), "1000",
     "first backoff after a failed attempt; doubled after each one"},
    {"retry_max_ms", U(retry_max_ms, 1, DAY), "60000",
     "backoff cap; each wait is jittered to [d/2, d]"},
    {"retry_attempts", U(retry_attempts, 1, 1000), "5",
     "attempts of a phase (check-in, manifest, download) before it fails; "
     "a download attempt that made progress does not count"},
    {"progress_interval_ms", U(progress_interval_ms, 1, DAY), "2000",
     "at most one 'downloading' report per interval"},
    {"health_cmd", S(health_cmd), "",
     "health check of the trial image, run with /bin/sh -c; exit 0 = "
     "healthy; NOBRICK_VERSION is set (default: none, always healthy)"},
    {"health_timeout_ms", U(health_timeout_ms, 1, DAY), "30000",
     "the health check is killed and counts as failed after this long"},
    {"ack_timeout_ms", U(ack_timeout_ms, 1, DAY), "30000",
     "the server must acknowledge the health report within this time, "
     "else the trial is not confirmed and reverts"},
    {"poll_ms", U(poll_ms, 1, 30u * DAY), "300000",
     "check-in interval when the server does not say (poll_seconds)"},
    {"state_file", S(state_file), "",
     "small file where the agent keeps the rollout it works on and the "
     "offer that last failed, across restarts (default: RAM only)"},
    {"log_level", S(log_level), "info",
     "error, warn, info or debug (stderr)"},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* The key, with '-' read as '_'. */
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

int agent_opts_is_key(const char *name)
{
    return find(name, NULL) != NULL;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max,
                     uint64_t *out)
{
    char *end;
    if (!(*s >= '0' && *s <= '9'))
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int set_key(struct agent_opts *o, const struct key *k,
                   const char *value)
{
    char *base = (char *)o + k->off;
    if (k->kind == K_STR) {
        size_t n = strlen(value);
        if (n >= AGENT_STR_MAX)
            return -1;
        memcpy(base, value, n + 1);
        return 0;
    }
    return parse_u64(value, k->min, k->max, (uint64_t *)(void *)base);
}

void agent_opts_defaults(struct agent_opts *o)
{
    memset(o, 0, sizeof(*o));
    for (unsigned i = 0; i < NKEYS; i++)
        if (set_key(o, &keys[i], keys[i].def) != 0 &&
            keys[i].kind == K_STR)
            abort(); /* a default too long: a bug in the table */
}

int agent_opts_set(struct agent_opts *o, const char *key, const char *value,
                   const char *where, int cli, FILE *err)
{
    unsigned idx;
    const struct key *k = find(key, &idx);
    if (!k) {
        fprintf(err, "nobrick-agent: %s: unknown key '%s' (see "
                "nobrick-agent --help)\n", where, key);
        return -1;
    }
    uint64_t bit = 1ull << idx;
    if ((o->set & bit) && !cli) {
        fprintf(err, "nobrick-agent: %s: '%s' is set twice\n", where,
                k->name);
        return -1;
    }
    if (set_key(o, k, value) != 0) {
        if (k->kind == K_U64)
            fprintf(err, "nobrick-agent: %s: %s must be a whole number from "
                    "%llu to %llu, not '%s'\n", where, k->name,
                    (unsigned long long)k->min, (unsigned long long)k->max,
                    value);
        else
            fprintf(err, "nobrick-agent: %s: %s is longer than %d bytes\n",
                    where, k->name, AGENT_STR_MAX - 1);
        return -1;
    }
    o->set |= bit;
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
                 s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

int agent_opts_load(struct agent_opts *o, const char *path, FILE *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(err, "nobrick-agent: %s: cannot read the config file: %s\n",
                path, strerror(errno));
        return -1;
    }
    char line[AGENT_STR_MAX + 128], where[64 + AGENT_STR_MAX];
    unsigned lineno = 0;
    int rc = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        snprintf(where, sizeof(where), "%s:%u", path, lineno);
        if (!strchr(line, '\n') && !feof(f)) {
            fprintf(err, "nobrick-agent: %s: line too long\n", where);
            rc = -1;
            break;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            fprintf(err, "nobrick-agent: %s: expected 'key = value'\n",
                    where);
            rc = -1;
            break;
        }
        *eq = '\0';
        if (agent_opts_set(o, trim(s), trim(eq + 1), where, 0, err)) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        fprintf(err, "nobrick-agent: %s: read error\n", path);
        rc = -1;
    }
    fclose(f);
    return rc;
}

int agent_opts_prefer(const char *list, uint8_t *kinds, unsigned cap)
{
    unsigned n = 0;
    const char *p = list;
    while (*p) {
        char name[16];
        size_t len = 0;
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (!*p)
            break;
        while (p[len] && p[len] != ',' && p[len] != ' ' && p[len] != '\t')
            len++;
        if (len >= sizeof(name))
            return -1;
        memcpy(name, p, len);
        name[len] = '\0';
        p += len;
        int k = nb_agent_transport_kind(name);
        if (k < 0 || n >= cap)
            return -1;
        for (unsigned i = 0; i < n; i++)
            if (kinds[i] == k)
                return -1;
        kinds[n++] = (uint8_t)k;
    }
    return (int)n;
}

int agent_opts_layout_kind(const char *name)
{
    if (strcmp(name, "ab") == 0)
        return NB_LAYOUT_AB;
    if (strcmp(name, "ab-swap") == 0)
        return NB_LAYOUT_AB_SWAP;
    if (strcmp(name, "single") == 0)
        return NB_LAYOUT_SINGLE;
    return 0;
}

int agent_opts_erase_value(const char *s)
{
    if (strcmp(s, "0xff") == 0 || strcmp(s, "0xFF") == 0 ||
        strcmp(s, "255") == 0)
        return 0xFF;
    if (strcmp(s, "0x00") == 0 || strcmp(s, "0x0") == 0 ||
        strcmp(s, "0") == 0)
        return 0x00;
    return -1;
}

/* Was key `name` set (file or command line)? */
static int was_set(const struct agent_opts *o, const char *name)
{
    unsigned idx;
    return find(name, &idx) && (o->set & (1ull << idx));
}

int agent_opts_check_flash(const struct agent_opts *o, FILE *err)
{
    static const char *const block_keys[] = {
        "flash_sector_size", "flash_write_size", "flash_erase_value"};
    static const char *const layout_keys[] = {"layout", "slot_size"};
    if (!o->flash[0]) {
        fprintf(err, "nobrick-agent: flash is required (in the config file "
                "or as --flash)\n");
        return -1;
    }
    int sim = strcmp(o->flash_type, "sim") == 0;
    int block = strcmp(o->flash_type, "block") == 0;
    if (!sim && !block && strcmp(o->flash_type, "mtd") != 0) {
        fprintf(err, "nobrick-agent: flash_type '%s': sim, mtd or block\n",
                o->flash_type);
        return -1;
    }
    for (unsigned i = 0; !block && i < 3; i++)
        if (was_set(o, block_keys[i])) {
            fprintf(err, "nobrick-agent: %s is for flash_type block only "
                    "(%s)\n", block_keys[i], sim ? "a simulated flash file "
                    "carries its geometry" : "an MTD's geometry comes from "
                    "its driver");
            return -1;
        }
    for (unsigned i = 0; sim && i < 2; i++)
        if (was_set(o, layout_keys[i])) {
            fprintf(err, "nobrick-agent: %s is for flash_type mtd or block "
                    "only (a simulated flash file carries its layout)\n",
                    layout_keys[i]);
            return -1;
        }
    if (sim)
        return 0;
    if (!agent_opts_layout_kind(o->layout)) {
        fprintf(err, "nobrick-agent: layout '%s': ab, ab-swap or single\n",
                o->layout);
        return -1;
    }
    if (!o->slot_size) {
        fprintf(err, "nobrick-agent: slot_size is required with flash_type "
                "%s\n", o->flash_type);
        return -1;
    }
    if (!block)
        return 0;
    uint64_t ws = o->flash_write_size, ss = o->flash_sector_size;
    if (ws & (ws - 1)) {
        fprintf(err, "nobrick-agent: flash_write_size %llu is not 1, 2, 4, "
                "8, 16 or 32\n", (unsigned long long)ws);
        return -1;
    }
    if (ss % ws) {
        fprintf(err, "nobrick-agent: flash_sector_size %llu is not a "
                "multiple of flash_write_size %llu\n",
                (unsigned long long)ss, (unsigned long long)ws);
        return -1;
    }
    if (agent_opts_erase_value(o->flash_erase_value) < 0) {
        fprintf(err, "nobrick-agent: flash_erase_value '%s': 0xff or 0x00\n",
                o->flash_erase_value);
        return -1;
    }
    return 0;
}

static int id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int agent_opts_check(const struct agent_opts *o, FILE *err)
{
    uint8_t kinds[NB_AGENT_MAX_PREFER];
    if (agent_opts_check_flash(o, err))
        return -1;
    if (!o->device_id[0] || !o->server_url[0]) {
        fprintf(err, "nobrick-agent: %s is required (in the config file or "
                "as --%s)\n",
                !o->device_id[0] ? "device_id" : "server_url",
                !o->device_id[0] ? "device-id" : "server-url");
        return -1;
    }
    if (!id_ok(o->device_id)) {
        fprintf(err, "nobrick-agent: device_id '%s' must be 1-64 of A-Z a-z "
                "0-9 . _ -\n", o->device_id);
        return -1;
    }
    if (strncmp(o->server_url, "http://", 7) != 0 &&
        strncmp(o->server_url, "https://", 8) != 0) {
        fprintf(err, "nobrick-agent: server_url '%s' must start with "
                "http:// or https://\n", o->server_url);
        return -1;
    }
    if (strlen(o->hw_rev) == 0 || strlen(o->hw_rev) > NB_HW_REV_MAX) {
        fprintf(err, "nobrick-agent: hw_rev must be 1 to %d characters\n",
                NB_HW_REV_MAX);
        return -1;
    }
    int n = agent_opts_prefer(o->transport, kinds, NB_AGENT_MAX_PREFER);
    if (n <= 0) {
        fprintf(err, "nobrick-agent: transport '%s': give one or more of "
                "https, http, ftps, ftp, mqtt, file, each once\n",
                o->transport);
        return -1;
    }
    if (o->retry_max_ms < o->retry_base_ms) {
        fprintf(err, "nobrick-agent: retry_max_ms (%llu) is below "
                "retry_base_ms (%llu)\n",
                (unsigned long long)o->retry_max_ms,
                (unsigned long long)o->retry_base_ms);
        return -1;
    }
    if (strcmp(o->log_level, "error") && strcmp(o->log_level, "warn") &&
        strcmp(o->log_level, "info") && strcmp(o->log_level, "debug")) {
        fprintf(err, "nobrick-agent: log_level '%s': error, warn, info or "
                "debug\n", o->log_level);
        return -1;
    }
    return 0;
}

void agent_opts_help(FILE *out)
{
    for (unsigned i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];
        fprintf(out, "  %s", k->name);
        if (k->def[0])
            fprintf(out, " (default %s)", k->def);
        fputc('\n', out);
        /* Wrap the help at about 72 columns, indented. */
        const char *p = k->help;
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
