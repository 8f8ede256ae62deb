/* cli.c - helpers of the nobrick-sim command line; see cli.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "nb_num.h"

/* ------------------------------------------------------------------ JSON */

static void put(struct json *j, const char *s, size_t n)
{
    if (j->oom)
        return;
    if (j->len + n + 1 > j->cap) {
        size_t cap = j->cap ? j->cap : 256;
        while (cap < j->len + n + 1)
            cap *= 2;
        char *b = realloc(j->buf, cap);
        if (!b) {
            j->oom = 1;
            return;
        }
        j->buf = b;
        j->cap = cap;
    }
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = '\0';
}

static void puts_(struct json *j, const char *s)
{
    put(j, s, strlen(s));
}

/* A JSON string literal: quotes, backslashes and control bytes escaped;
 * other bytes (UTF-8 in file names) pass through. */
static void quoted(struct json *j, const char *s)
{
    puts_(j, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(j, esc, 2);
        } else if (*p < 0x20 || *p == 0x7F) {
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
            puts_(j, esc);
        } else {
            put(j, (const char *)p, 1);
        }
    }
    puts_(j, "\"");
}

/* Comma and key before a member. */
static void member(struct json *j, const char *key)
{
    if (j->count[j->depth]++)
        puts_(j, ",");
    if (key) {
        quoted(j, key);
        puts_(j, ":");
    }
}

void json_init(struct json *j)
{
    memset(j, 0, sizeof(*j));
    puts_(j, "{");
}

void json_free(struct json *j)
{
    free(j->buf);
    memset(j, 0, sizeof(*j));
}

static void open_level(struct json *j, const char *key, char open,
                       char close)
{
    member(j, key);
    put(j, &open, 1);
    if (j->depth + 1 >= JSON_MAX_DEPTH) {
        j->oom = 1; /* a bug of ours; refuse rather than print garbage */
        return;
    }
    j->count[++j->depth] = 0;
    j->close[j->depth] = close;
}

void json_obj(struct json *j, const char *key)
{
    open_level(j, key, '{', '}');
}

void json_arr(struct json *j, const char *key)
{
    open_level(j, key, '[', ']');
}

void json_end(struct json *j)
{
    if (j->depth == 0)
        return;
    put(j, &j->close[j->depth], 1);
    j->depth--;
}

void json_str(struct json *j, const char *key, const char *val)
{
    member(j, key);
    if (val)
        quoted(j, val);
    else
        puts_(j, "null");
}

void json_u64(struct json *j, const char *key, uint64_t val)
{
    char s[24];
    snprintf(s, sizeof(s), "%" PRIu64, val);
    member(j, key);
    puts_(j, s);
}

void json_bool(struct json *j, const char *key, int val)
{
    member(j, key);
    puts_(j, val ? "true" : "false");
}

void cli_version_str(uint32_t packed, char out[16])
{
    snprintf(out, 16, "%u.%u.%u", (unsigned)nb_version_major(packed),
             (unsigned)nb_version_minor(packed),
             (unsigned)nb_version_patch(packed));
}

void json_version(struct json *j, const char *key, uint32_t packed)
{
    char v[16];
    cli_version_str(packed, v);
    json_str(j, key, v);
}

void json_hex(struct json *j, const char *key, const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    member(j, key);
    puts_(j, "\"");
    for (size_t i = 0; i < n; i++) {
        char h[2] = {digits[p[i] >> 4], digits[p[i] & 15]};
        put(j, h, 2);
    }
    puts_(j, "\"");
}

int json_emit(struct json *j)
{
    while (j->depth > 0)
        json_end(j);
    puts_(j, "}");
    int rc = -1;
    if (!j->oom) {
        fputs(j->buf, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        rc = 0;
    }
    json_free(j);
    return rc;
}

/* ---------------------------------------------------------------- errors */

static int vfail(int code, nb_err err, const char *prefix, const char *fmt,
                 va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    fprintf(stderr, "nobrick-sim: %s%s\n", prefix, msg);
    fflush(stderr);
    struct json j;
    json_init(&j);
    json_bool(&j, "ok", 0);
    json_str(&j, "error", nb_err_name(err));
    json_str(&j, "message", msg);
    if (json_emit(&j))
        puts("{\"ok\":false,\"error\":\"NB_ERR_NOMEM\"}");
    return code;
}

int cli_fail(int code, nb_err err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(code, err, "", fmt, ap);
    va_end(ap);
    return rc;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (cmd)
        return cli_fail(CLI_EXIT_USAGE, NB_ERR_INVAL,
                        "%s: %s (see: nobrick-sim %s --help)", cmd, msg, cmd);
    return cli_fail(CLI_EXIT_USAGE, NB_ERR_INVAL,
                    "%s (see: nobrick-sim --help)", msg);
}

/* ------------------------------------------------------------- arguments */

struct cli_opt *cli_opt(struct cli_opt *opts, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(opts[i].name, name) == 0)
            return &opts[i];
    return NULL;
}

int cli_parse(const char *cmd, int argc, char **argv, struct cli_opt *opts,
              size_t n)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
            return 1;
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
            return cli_usage(cmd, "unexpected argument '%s'", arg);
        const char *eq = strchr(arg, '=');
        size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        struct cli_opt *o = NULL;
        for (size_t k = 0; k < n; k++)
            if (strlen(opts[k].name) == nlen &&
                strncmp(opts[k].name, arg, nlen) == 0)
                o = &opts[k];
        if (!o)
            return cli_usage(cmd, "unknown option '%.*s'", (int)nlen, arg);
        if (o->set)
            return cli_usage(cmd, "option %s given twice", o->name);
        o->set = 1;
        if (o->kind == CLI_FLAG) {
            if (eq)
                return cli_usage(cmd, "option %s takes no value", o->name);
            continue;
        }
        if (eq) {
            o->value = eq + 1;
        } else {
            /* "--flash --torn" is a forgotten value, not a file named
             * "--torn". */
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
                return cli_usage(cmd, "option %s needs a value", o->name);
            o->value = argv[++i];
        }
    }
    return 0;
}

int cli_u64(const char *cmd, const char *opt, const char *s, uint64_t min,
            uint64_t max, uint64_t *out)
{
    char msg[512];
    enum nb_num_status st = nb_parse_u64(s, min, max, out);
    if (st == NB_NUM_OK)
        return 0;
    nb_num_message(st, opt, s, min, max, msg, sizeof(msg));
    return cli_usage(cmd, "%s", msg);
}

int cli_version(const char *cmd, const char *opt, const char *s,
                uint32_t *out)
{
    static const uint32_t limit[3] = {255, 255, 65535};
    uint32_t part[3] = {0, 0, 0};
    const char *p = s;
    for (int k = 0; k < 3; k++) {
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            part[k] = part[k] * 10 + (uint32_t)(*p - '0');
            if (part[k] > limit[k])
                return cli_usage(cmd,
                                 "%s: '%s': part %d is above %u (versions "
                                 "are M.m.p, M and m up to 255, p up to "
                                 "65535)",
                                 opt, s, k + 1, (unsigned)limit[k]);
            p++;
            digits++;
        }
        if (!digits || (k < 2 && *p != '.') || (k == 2 && *p))
            return cli_usage(cmd,
                             "%s: '%s' is not a version M.m.p (for "
                             "example 1.2.3)",
                             opt, s);
        if (k < 2)
            p++;
    }
    nb_version_pack(part[0], part[1], part[2], out);
    return 0;
}

int cli_cut_parse(const char *cmd, struct cli_opt *opts, size_t n,
                  struct cli_cut *cut)
{
    struct cli_opt *at = cli_opt(opts, n, "--cut-at-op");
    struct cli_opt *torn = cli_opt(opts, n, "--torn");
    struct cli_opt *seed = cli_opt(opts, n, "--seed");
    memset(cut, 0, sizeof(*cut));
    if (at->set && cli_u64(cmd, "--cut-at-op", at->value, 0, UINT64_MAX,
                           &cut->op))
        return CLI_EXIT_USAGE;
    if (seed->set &&
        cli_u64(cmd, "--seed", seed->value, 0, UINT64_MAX, &cut->seed))
        return CLI_EXIT_USAGE;
    if ((torn->set || seed->set) && !at->set)
        return cli_usage(cmd, "%s needs --cut-at-op",
                         torn->set ? "--torn" : "--seed");
    cut->armed = at->set;
    cut->torn = torn->set;
    return 0;
}

void cli_cut_arm(struct simdev *sd, const struct cli_cut *cut)
{
    if (!cut->armed)
        return;
    nb_simflash_seed(sd->sim, cut->seed);
    nb_simflash_cut_at(sd->sim, cut->op, cut->torn);
}

void cli_json_ops(struct json *j, struct simdev *sd)
{
    struct nb_simflash_stats st;
    nb_simflash_stats(sd->sim, &st);
    json_u64(j, "ops", st.ops);
    json_u64(j, "prog_ops", st.prog_ops);
    json_u64(j, "erase_ops", st.erase_ops);
    json_u64(j, "bytes_written", st.bytes_written);
}

int cli_power_cut(struct simdev *sd, const struct cli_cut *cut)
{
    if (!nb_simflash_power_lost(sd->sim))
        return -1;
    char msg[256];
    snprintf(msg, sizeof(msg),
             "power cut at flash operation %" PRIu64
             "%s; the flash file keeps what the cut left (run boot)",
             cut->op, cut->torn ? " (torn)" : "");
    fprintf(stderr, "nobrick-sim: %s\n", msg);
    fflush(stderr);
    struct json j;
    json_init(&j);
    json_bool(&j, "ok", 0);
    json_str(&j, "error", nb_err_name(NB_ERR_POWER));
    json_str(&j, "message", msg);
    json_bool(&j, "power_cut", 1);
    json_u64(&j, "op", cut->op);
    json_bool(&j, "torn", cut->torn);
    cli_json_ops(&j, sd);
    json_emit(&j);
    return CLI_EXIT_POWER;
}

/* -------------------------------------------------------------- devices */

void cli_dev_close(struct simdev *sd)
{
    if (!sd)
        return;
    nb_simflash_close(sd->sim);
    if (sd->cfg.crypto) /* bound */
        simdev_unbind(sd);
    free(sd);
}

/* The simulator's file magic, to tell "not ours" from "ours but broken". */
static int has_flash_magic(const char *path)
{
    char m[8];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = pread(fd, m, sizeof(m), 0);
    close(fd);
    return n == (ssize_t)sizeof(m) && memcmp(m, "NBSIMFL1", 8) == 0;
}

static struct simdev *dev_fail(struct simdev *sd, int *rc)
{
    cli_dev_close(sd);
    *rc = CLI_EXIT_FAIL;
    return NULL;
}

struct simdev *cli_dev_open(const char *path, int *rc)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            cli_fail(CLI_EXIT_FAIL, NB_ERR_NOENT,
                     "%s: no such flash file (create one with: nobrick-sim "
                     "init --flash %s --layout ...)",
                     path, path);
        else
            cli_fail(CLI_EXIT_FAIL, NB_ERR_IO, "%s: %s", path,
                     strerror(errno));
        return dev_fail(NULL, rc);
    }
    if (!S_ISREG(st.st_mode)) {
        cli_fail(CLI_EXIT_FAIL, NB_ERR_CORRUPT,
                 "%s: not a regular file, so not a flash file", path);
        return dev_fail(NULL, rc);
    }
    struct simdev *sd = calloc(1, sizeof(*sd));
    if (!sd) {
        cli_fail(CLI_EXIT_FAIL, NB_ERR_NOMEM, "out of memory");
        return dev_fail(NULL, rc);
    }
    nb_err err = nb_simflash_open_file(&sd->sim, path);
    if (err == NB_ERR_CORRUPT && has_flash_magic(path)) {
        cli_fail(CLI_EXIT_FAIL, err,
                 "%s: flash file is truncated or damaged (%lld bytes do "
                 "not match its header)",
                 path, (long long)st.st_size);
        return dev_fail(sd, rc);
    }
    if (err == NB_ERR_CORRUPT) {
        cli_fail(CLI_EXIT_FAIL, err,
                 "%s: not a nobrick-sim flash file (no NBSIMFL1 header)",
                 path);
        return dev_fail(sd, rc);
    }
    if (err) {
        cli_fail(CLI_EXIT_FAIL, err,
                 "%s: cannot open the flash file for reading and writing "
                 "(%s)",
                 path, err == NB_ERR_NOENT ? "it vanished" : "permissions?");
        return dev_fail(sd, rc);
    }
    size_t blen;
    const void *blob = nb_simflash_user(sd->sim, &blen);
    if (simdev_board_decode(blob, blen, &sd->board) != NB_OK) {
        cli_fail(CLI_EXIT_FAIL, NB_ERR_CORRUPT,
                 "%s: the flash file has no valid board description (it "
                 "was not made by nobrick-sim init)",
                 path);
        return dev_fail(sd, rc);
    }
    err = simdev_bind(sd);
    if (err) {
        cli_fail(CLI_EXIT_FAIL, err,
                 "cannot set up the simulated device's crypto and test keys");
        return dev_fail(sd, rc);
    }
    struct nb_layout l = sd->board.layout;
    if (nb_layout_check(&l, &sd->flash) != NB_OK) {
        cli_fail(CLI_EXIT_FAIL, NB_ERR_CORRUPT,
                 "%s: the board layout in the flash file does not fit its "
                 "flash geometry",
                 path);
        return dev_fail(sd, rc);
    }
    err = simdev_open(sd);
    switch (err) {
    case NB_OK:
        return sd;
    case NB_ERR_NOENT:
        cli_fail(CLI_EXIT_FAIL, err,
                 "%s: no valid boot journal (the device was never "
                 "provisioned or its journal is corrupt); nothing was "
                 "written",
                 path);
        break;
    case NB_ERR_INVAL:
        cli_fail(CLI_EXIT_FAIL, err,
                 "%s: the boot journal was written for layout %s, but the "
                 "board is %s",
                 path, nb_layout_name(sd->dev.state.layout),
                 nb_layout_name(sd->board.layout.kind));
        break;
    case NB_ERR_CORRUPT:
        cli_fail(CLI_EXIT_FAIL, err,
                 "%s: the newest boot journal record holds an impossible "
                 "state (corrupt journal)",
                 path);
        break;
    default:
        cli_fail(CLI_EXIT_FAIL, err, "%s: cannot read the boot journal",
                 path);
        break;
    }
    return dev_fail(sd, rc);
}

/* -------------------------------------------------------------- packages */

/* Read `n` bytes at `off`; 0 when all came. */
static int read_at(int fd, uint8_t *p, size_t n, off_t off)
{
    while (n) {
        ssize_t k = pread(fd, p, n, off);
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
        off += k;
    }
    return 0;
}

int cli_read_package(struct simdev *sd, const char *path, uint32_t capacity,
                     uint8_t **pkg, uint32_t *len, struct nb_manifest *m)
{
    struct stat st;
    uint8_t *head = NULL;
    uint32_t mlen;
    int rc = CLI_EXIT_FAIL;
    nb_err err;
    *pkg = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cli_fail(CLI_EXIT_FAIL,
                        errno == ENOENT ? NB_ERR_NOENT : NB_ERR_IO,
                        "%s: cannot open the package: %s", path,
                        strerror(errno));
    if (fstat(fd, &st) != 0) {
        cli_fail(CLI_EXIT_FAIL, NB_ERR_IO, "%s: cannot stat the package: %s",
                 path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        cli_fail(CLI_EXIT_FAIL, NB_ERR_MALFORMED,
                 "%s: not a regular file, so not a package", path);
        goto out;
    }
    if (st.st_size < (off_t)NB_PKG_HDR_SIZE) {
        cli_fail(CLI_EXIT_FAIL, NB_ERR_TRUNCATED,
                 "%s: too short to be a package (%lld bytes; the container "
                 "header alone is %u)",
                 path, (long long)st.st_size, NB_PKG_HDR_SIZE);
        goto out;
    }
    /* Header and manifest first: what is wrong with a file is told
     * without reading all of it. */
    size_t hn = (uint64_t)st.st_size < NB_PKG_HDR_SIZE + NB_MANIFEST_MAX
                    ? (size_t)st.st_size
                    : NB_PKG_HDR_SIZE + NB_MANIFEST_MAX;
    head = malloc(hn);
    if (!head) {
        cli_fail(CLI_EXIT_FAIL, NB_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (read_at(fd, head, hn, 0)) {
        cli_fail(CLI_EXIT_FAIL, NB_ERR_IO, "%s: cannot read the package",
                 path);
        goto out;
    }
    err = nb_pkg_parse_header(head, &mlen);
    if (err == NB_ERR_UNSUPPORTED) {
        cli_fail(CLI_EXIT_FAIL, err,
                 "%s: package container version %u is not supported (this "
                 "simulator reads version %u)",
                 path, head[4], NB_PKG_VERSION);
        goto out;
    }
    if (err) {
        cli_fail(CLI_EXIT_FAIL, err,
                 "%s: not a nobrick package (bad container header: magic, "
                 "reserved bytes or manifest length)",
                 path);
        goto out;
    }
    if (mlen > hn - NB_PKG_HDR_SIZE) {
        cli_fail(CLI_EXIT_FAIL, NB_ERR_TRUNCATED,
                 "%s: the manifest (%" PRIu32 " bytes) runs past the end of "
                 "the file (truncated package)",
                 path, mlen);
        goto out;
    }
    err = nb_manifest_parse_unverified(&sd->crypto, head + NB_PKG_HDR_SIZE,
                                       mlen, m);
    if (err) {
        cli_fail(CLI_EXIT_FAIL, err,
                 "%s: the manifest is not well-formed (%s): not a package "
                 "this device can read",
                 path, nb_err_name(err));
        goto out;
    }
    uint64_t want = (uint64_t)m->payload_offset + m->payload_size;
    if ((uint64_t)st.st_size != want) {
        int shorter = (uint64_t)st.st_size < want;
        cli_fail(CLI_EXIT_FAIL, shorter ? NB_ERR_TRUNCATED : NB_ERR_TRAILING,
                 "%s: the file is %lld bytes but its manifest says %" PRIu64
                 " (payload offset %" PRIu32 " + payload %" PRIu32 "): %s",
                 path, (long long)st.st_size, want, m->payload_offset,
                 m->payload_size,
                 shorter ? "truncated package"
                         : "bytes after the payload (padded package)");
        goto out;
    }
    if (want > capacity) {
        cli_fail(CLI_EXIT_FAIL, NB_ERR_NOSPC,
                 "%s: the package is %" PRIu64 " bytes, the slot holds at "
                 "most %" PRIu32,
                 path, want, capacity);
        goto out;
    }
    *len = (uint32_t)want;
    *pkg = malloc(*len);
    if (!*pkg) {
        cli_fail(CLI_EXIT_FAIL, NB_ERR_NOMEM,
                 "%s: out of memory reading the package", path);
        goto out;
    }
    if (read_at(fd, *pkg, *len, 0)) {
        cli_fail(CLI_EXIT_FAIL, NB_ERR_IO,
                 "%s: cannot read the package (changed while reading?)",
                 path);
        goto fail;
    }
    /* The device writes the padding itself (zeros) and never sees the
     * file's, but a file with anything else there is not a package
     * (docs/package-format.md): refuse it as a verifier would. */
    for (uint32_t i = NB_PKG_HDR_SIZE + mlen; i < m->payload_offset; i++)
        if ((*pkg)[i] != 0) {
            cli_fail(CLI_EXIT_FAIL, NB_ERR_MALFORMED,
                     "%s: the padding between manifest and payload is not "
                     "zero (byte %" PRIu32 ")",
                     path, i);
            goto fail;
        }
    /* The gate the device's caller uses, over exactly the bytes it gets. */
    err = simdev_check_file(sd, *pkg, *len);
    if (!err)
        err = nb_manifest_parse_unverified(&sd->crypto,
                                           *pkg + NB_PKG_HDR_SIZE, mlen, m);
    if (err) {
        cli_fail(CLI_EXIT_FAIL, err,
                 "%s: not a whole package (%s; changed while reading?)",
                 path, nb_err_name(err));
        goto fail;
    }
    rc = 0;
    goto out;
fail:
    free(*pkg);
    *pkg = NULL;
out:
    free(head);
    close(fd);
    return rc;
}

/* ------------------------------------------------- names, slots, output */

uint8_t cli_layout_kind(const char *name)
{
    for (uint8_t k = NB_LAYOUT_AB; k <= NB_LAYOUT_SINGLE; k++)
        if (strcmp(name, nb_layout_name(k)) == 0)
            return k;
    return 0;
}

uint8_t cli_lifecycle(const char *name)
{
    if (strcmp(name, "development") == 0)
        return NB_LIFECYCLE_DEVELOPMENT;
    if (strcmp(name, "production") == 0)
        return NB_LIFECYCLE_PRODUCTION;
    return 0;
}

const char *cli_slot_name(unsigned i)
{
    static const char *const names[NB_MAX_SLOTS] = {"A", "B", "factory"};
    return i < NB_MAX_SLOTS ? names[i] : "?";
}

const char *cli_op_name(uint8_t op)
{
    switch (op) {
    case NB_OP_NONE: return "none";
    case NB_OP_SWAP: return "swap";
    case NB_OP_REVERT: return "revert";
    }
    return "unknown";
}

/* First slot in `state` that an update can use (never the factory slot). */
int cli_find_slot(const struct simdev *sd, uint8_t state)
{
    uint8_t kind = sd->dev.cfg.layout.kind;
    unsigned n = nb_layout_slot_count(kind);
    for (unsigned i = 0; i < n; i++) {
        if (kind == NB_LAYOUT_AB_FACTORY && i == 2)
            continue;
        if (sd->dev.state.slot[i].state == state)
            return (int)i;
    }
    return -1;
}

/* Largest package an update can bring (the core checks the exact target
 * slot again, before writing). */
uint32_t cli_update_capacity(const struct nb_layout *l)
{
    uint32_t cap = 0;
    unsigned n = nb_layout_slot_count(l->kind);
    for (unsigned i = 0; i < n; i++) {
        uint32_t c = nb_layout_capacity(l, i);
        if (!(l->kind == NB_LAYOUT_AB_FACTORY && i == 2) && c > cap)
            cap = c;
    }
    return cap;
}

/* Geometry, areas of the layout and the lifecycle, for init and status. */
void cli_json_board(struct json *j, struct simdev *sd)
{
    const struct nb_simflash_geometry *g = nb_simflash_geometry(sd->sim);
    const struct nb_layout *l = &sd->dev.cfg.layout;
    json_str(j, "layout", nb_layout_name(l->kind));
    json_str(j, "lifecycle", nb_lifecycle_name(sd->dev.state.lifecycle));
    json_obj(j, "geometry");
    json_u64(j, "size", nb_simflash_size(sd->sim));
    json_u64(j, "sectors", nb_simflash_sector_count(sd->sim));
    json_u64(j, "write_size", g->write_size);
    json_u64(j, "erase_value", g->erase_value);
    json_arr(j, "regions");
    for (uint32_t i = 0; i < g->region_count; i++) {
        json_obj(j, NULL);
        json_u64(j, "count", g->regions[i].count);
        json_u64(j, "size", g->regions[i].size);
        json_end(j);
    }
    json_end(j);
    json_end(j);
    json_obj(j, "areas");
    json_obj(j, "journal");
    json_u64(j, "off", l->journal.off);
    json_u64(j, "size", l->journal.size);
    json_end(j);
    json_arr(j, "slots");
    for (unsigned i = 0; i < nb_layout_slot_count(l->kind); i++) {
        json_obj(j, NULL);
        json_str(j, "name", cli_slot_name(i));
        json_u64(j, "off", l->slot[i].off);
        json_u64(j, "size", l->slot[i].size);
        json_u64(j, "capacity", nb_layout_capacity(l, i));
        json_end(j);
    }
    json_end(j);
    json_u64(j, "swap_unit", l->swap_unit);
    json_end(j);
}

/* One slot of the journal state. */
void cli_json_slot(struct json *j, const char *key, const struct simdev *sd,
                   unsigned i)
{
    const struct nb_slot_info *si = &sd->dev.state.slot[i];
    json_obj(j, key);
    json_u64(j, "slot", i);
    json_str(j, "name", cli_slot_name(i));
    json_str(j, "state", nb_slot_state_name(si->state));
    json_u64(j, "attempts", si->attempts);
    json_version(j, "version", si->version);
    json_u64(j, "security_version", si->svn);
    json_u64(j, "size", si->size);
    json_bool(j, "shifted", si->shifted);
    json_end(j);
}

/* A core error of a command, as one line with what to do. */
int cli_dev_error(const char *what, const struct simdev *sd, nb_err err)
{
    const struct nb_state *st = &sd->dev.state;
    if (err == NB_ERR_IO)
        return cli_fail(CLI_EXIT_FAIL, err,
                        "%s: a flash operation failed (bad sector?); reset "
                        "and try again",
                        what);
    if (err == NB_ERR_STATE && st->op != NB_OP_NONE)
        return cli_fail(CLI_EXIT_FAIL, err,
                        "%s: a %s is under way: run boot to finish it first",
                        what, cli_op_name(st->op));
    return cli_fail(CLI_EXIT_FAIL, err, "%s failed (%s)", what,
                    nb_err_name(err));
}

/* ------------------------------------------------------------------ init */

/* Sector size and shape of the geometry; `min_size` bytes at least. */
static void make_geometry(const char *shape, uint32_t sector,
                          uint32_t min_size, struct nb_simflash_geometry *g)
{
    if (shape) {
        simdev_shape(shape, min_size, g);
        return;
    }
    g->region_count = 1;
    g->regions[0].size = sector;
    g->regions[0].count = (min_size + sector - 1) / sector;
}

static void geometry_flash(const struct nb_simflash_geometry *g,
                           struct nb_flash *f)
{
    memset(f, 0, sizeof(*f));
    f->write_size = g->write_size;
    f->erase_value = g->erase_value;
    f->region_count = g->region_count;
    memcpy(f->regions, g->regions, sizeof(f->regions));
}

/* Plan `kind` on a generously sized flash, then cut the flash down to the
 * sectors the plan uses. Returns 0 or a usage error. */
int cli_plan(const char *shape, uint32_t sector, uint8_t kind,
             uint32_t slot_size, struct nb_simflash_geometry *g,
             struct nb_layout *l)
{
    uint32_t big = shape ? (strcmp(shape, "128k") == 0 ? 131072u
                            : strcmp(shape, "mixed") == 0 ? 32768u : 4096u)
                         : sector;
    uint64_t gen = 4ull * big + (nb_layout_slot_count(kind) + 1ull) *
                                    (slot_size + 2ull * big);
    struct nb_flash f;
    if (gen > 0xF0000000u)
        return cli_usage("init", "--slot-size %" PRIu32 " is too large for "
                         "this sector size", slot_size);
    make_geometry(shape, sector, (uint32_t)gen, g);
    geometry_flash(g, &f);
    if (nb_layout_plan(l, &f, kind, slot_size, 0) != NB_OK)
        return cli_usage("init", "cannot plan a %s layout with %" PRIu32
                         "-byte slots on this flash", nb_layout_name(kind),
                         slot_size);
    uint32_t end = l->journal.off + l->journal.size;
    for (unsigned i = 0; i < nb_layout_slot_count(kind); i++)
        if (l->slot[i].off + l->slot[i].size > end)
            end = l->slot[i].off + l->slot[i].size;
    uint32_t base = 0, sectors = 0;
    for (uint32_t i = 0; i < g->region_count; i++) {
        uint32_t span = g->regions[i].count * g->regions[i].size;
        if (base + span >= end) {
            g->regions[i].count = (end - base) / g->regions[i].size;
            g->region_count = g->regions[i].count ? i + 1 : i;
            sectors += g->regions[i].count;
            break;
        }
        base += span;
        sectors += g->regions[i].count;
    }
    for (uint32_t i = g->region_count; i < NB_FLASH_MAX_REGIONS; i++)
        g->regions[i] = (struct nb_flash_region){0, 0};
    if (sectors > NB_SIMFLASH_MAX_SECTORS)
        return cli_usage("init", "the flash would need %" PRIu32 " sectors; "
                         "the simulator holds at most %u (use a larger "
                         "--sector-size or a smaller --slot-size)",
                         sectors, NB_SIMFLASH_MAX_SECTORS);
    geometry_flash(g, &f);
    if (nb_layout_check(l, &f) != NB_OK)
        return cli_usage("init", "the planned layout does not fit the "
                         "trimmed flash (a bug: please report)");
    return 0;
}

/* Move the finished file into place: atomically refusing an existing
 * file unless `force`. */
int cli_place(const char *tmp, const char *path, int force)
{
    if (force) {
        if (rename(tmp, path) == 0)
            return 0;
    } else if (link(tmp, path) == 0) {
        unlink(tmp);
        return 0;
    } else if (errno == EEXIST) {
        return cli_fail(CLI_EXIT_FAIL, NB_ERR_DENIED,
                        "%s: already exists (use --force to replace it)",
                        path);
    } else if (access(path, F_OK) != 0 && rename(tmp, path) == 0) {
        return 0; /* a file system without hard links */
    }
    return cli_fail(CLI_EXIT_FAIL, NB_ERR_IO, "%s: cannot create: %s", path,
                    strerror(errno));
}

