/* util.c - option parsing, one-line errors, value parsers, files and JSON
 * output of the nobrick tool; see nobrick.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nb_num.h"
#include "nobrick.h"

/* -------------------------------------------------------------- errors */

/* One line: a file name or a value with a newline in it must not start a
 * second line that looks like another message. */
static void one_line(char *s)
{
    for (unsigned char *p = (unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7F)
            *p = '?';
}

static void vsay(const char *prefix, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    one_line(msg);
    fprintf(stderr, "nobrick: %s%s\n", prefix, msg);
    fflush(stderr);
}

int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("", fmt, ap);
    va_end(ap);
    return EXIT_FAIL;
}

void warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("warning: ", fmt, ap);
    va_end(ap);
}

int usage_err(const char *cmd, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (*cmd)
        fail("%s: %s (see 'nobrick %s --help')", cmd, msg, cmd);
    else
        fail("%s (see 'nobrick --help')", msg);
    return EXIT_USAGE;
}

/* ------------------------------------------------------------- options */

struct opt *opt_get(struct opt *opts, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(opts[i].name, name) == 0)
            return &opts[i];
    return NULL;
}

/* "--name=value" or "--name value": the name part and the value. */
static int split(const char *cmd, int argc, char **argv, int *i,
                 const char *name, int takes_value, char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (a[n] == '=') {
        if (!takes_value)
            return usage_err(cmd, "%s takes no value", name);
        *value = (char *)a + n + 1;
        return 0;
    }
    if (!takes_value) {
        *value = NULL;
        return 0;
    }
    if (*i + 1 >= argc)
        return usage_err(cmd, "%s needs a value", name);
    *value = argv[++*i];
    return 0;
}

static int matches(const char *arg, const char *name)
{
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

static int global(struct ctx *g, const char *cmd, int argc, char **argv,
                  int *i)
{
    static const char *names[] = {"--token", "--module", "--pin"};
    for (size_t k = 0; k < NOPTS(names); k++) {
        if (!matches(argv[*i], names[k]))
            continue;
        char *v;
        int rc = split(cmd, argc, argv, i, names[k], 1, &v);
        if (rc)
            return rc;
        if (!*v)
            return usage_err(cmd, "%s: empty value", names[k]);
        const char **slot = k == 0 ? &g->token : &g->module;
        if (k == 2) {
            if (g->pin_arg)
                return usage_err(cmd, "--pin given twice");
            g->pin_arg = v;
        } else {
            if (*slot)
                return usage_err(cmd, "%s given twice", names[k]);
            *slot = v;
        }
        return 1;
    }
    return 0;
}

int parse_global(struct ctx *g, int argc, char **argv, int *i)
{
    return global(g, "", argc, argv, i);
}

int parse_opts(struct ctx *g, const char *cmd, int argc, char **argv,
               struct opt *opts, size_t n, char **pos, size_t maxpos,
               size_t *npos)
{
    int only_pos = 0;
    *npos = 0;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        if (!only_pos && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0))
            return 1;
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (*npos >= maxpos)
                return usage_err(cmd, maxpos ? "unexpected argument '%s'"
                                             : "takes no argument ('%s')",
                                 a);
            pos[(*npos)++] = a;
            continue;
        }
        int rc = global(g, cmd, argc, argv, &i);
        if (rc == 1)
            continue;
        if (rc)
            return rc;
        struct opt *o = NULL;
        for (size_t k = 0; k < n && !o; k++)
            if (matches(a, opts[k].name))
                o = &opts[k];
        if (!o)
            return usage_err(cmd, "unknown option '%.*s'",
                             (int)strcspn(a, "="), a);
        char *v;
        if ((rc = split(cmd, argc, argv, &i, o->name, o->kind != OPT_FLAG,
                        &v)))
            return rc;
        if (o->kind == OPT_MULTI) {
            if (o->count >= MULTI_MAX)
                return usage_err(cmd, "%s given more than %d times", o->name,
                                 MULTI_MAX);
            o->values[o->count++] = v;
        } else if (o->set) {
            return usage_err(cmd, "%s given twice", o->name);
        }
        if (o->kind != OPT_FLAG && (!v || !*v))
            return usage_err(cmd, "%s: empty value", o->name);
        o->set = 1;
        o->value = v;
    }
    return 0;
}

/* -------------------------------------------------------------- values */

int parse_u64(const char *cmd, const char *opt, const char *s, uint64_t min,
              uint64_t max, uint64_t *out)
{
    char msg[512];
    enum nb_num_status st = nb_parse_u64(s, min, max, out);
    if (st == NB_NUM_OK)
        return 0;
    /* A sign is just another character that is not a digit here. */
    if (st == NB_NUM_NEGATIVE)
        st = NB_NUM_BAD_DIGIT;
    nb_num_message(st, opt, s, min, max, msg, sizeof(msg));
    return usage_err(cmd, "%s", msg);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* 2n hex digits at s into out; the length of s is checked by the caller. */
static int unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int uuid_at(const char *s, size_t len, uint8_t out[NB_UUID_LEN])
{
    /* 8-4-4-4-12 */
    static const size_t dash[4] = {8, 13, 18, 23};
    char hex[33];
    size_t h = 0;
    if (len != 36)
        return -1;
    for (size_t i = 0, d = 0; i < 36; i++) {
        if (d < 4 && i == dash[d]) {
            if (s[i] != '-')
                return -1;
            d++;
        } else {
            hex[h++] = s[i];
        }
    }
    return unhex(hex, out, NB_UUID_LEN);
}

int parse_uuid(const char *cmd, const char *opt, const char *s,
               uint8_t out[NB_UUID_LEN])
{
    if (uuid_at(s, strlen(s), out))
        return usage_err(cmd,
                         "%s: '%s' is not a UUID (8-4-4-4-12 hex digits, "
                         "e.g. 6ba7b810-9dad-11d1-80b4-00c04fd430c8)",
                         opt, s);
    return 0;
}

int parse_uuid_list(const char *cmd, const char *opt, const char *s,
                    uint8_t (*out)[NB_UUID_LEN], unsigned max,
                    unsigned *count)
{
    *count = 0;
    for (const char *p = s;;) {
        size_t len = strcspn(p, ",");
        if (*count >= max)
            return usage_err(cmd, "%s: more than %u UUIDs", opt, max);
        if (uuid_at(p, len, out[*count]))
            return usage_err(cmd, "%s: '%.*s' is not a UUID (8-4-4-4-12 "
                             "hex digits)",
                             opt, (int)len, p);
        for (unsigned k = 0; k < *count; k++)
            if (memcmp(out[k], out[*count], NB_UUID_LEN) == 0)
                return usage_err(cmd, "%s: '%.*s' given twice", opt,
                                 (int)len, p);
        (*count)++;
        if (!p[len])
            return 0;
        p += len + 1;
    }
}

int parse_hex(const char *cmd, const char *opt, const char *s, uint8_t *out,
              size_t n)
{
    if (strlen(s) != 2 * n || unhex(s, out, n))
        return usage_err(cmd, "%s: '%s' is not %zu hex digits", opt, s,
                         2 * n);
    return 0;
}

int parse_version(const char *cmd, const char *opt, const char *s,
                  uint32_t v[3])
{
    static const uint32_t max[3] = {255, 255, 65535};
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        uint64_t x = 0;
        size_t digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 6) {
            x = x * 10 + (uint64_t)(*p++ - '0');
            digits++;
        }
        if (!digits || x > max[i] || (i < 2 && *p != '.') ||
            (i == 2 && *p) || (digits > 1 && p[-(long)digits] == '0'))
            return usage_err(cmd,
                             "%s: '%s' is not a version MAJOR.MINOR.PATCH "
                             "(major and minor 0-255, patch 0-65535, no "
                             "leading zeros)",
                             opt, s);
        v[i] = (uint32_t)x;
        p++;
    }
    return 0;
}

void fmt_uuid(const uint8_t u[NB_UUID_LEN], char out[37])
{
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x"
             "%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10],
             u[11], u[12], u[13], u[14], u[15]);
}

void fmt_hex(const uint8_t *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = '\0';
}

void fmt_time(uint64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;
    /* Beyond year 9999 the ISO form stops being fixed-width: show the
     * number instead. */
    if (t > 253402300799ull || (uint64_t)tt != t || !gmtime_r(&tt, &tm) ||
        !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, 32, "%" PRIu64, t);
}

void fmt_version(uint32_t v, char out[16])
{
    snprintf(out, 16, "%u.%u.%u", (unsigned)(v >> 24),
             (unsigned)(v >> 16 & 0xFF), (unsigned)(v & 0xFFFF));
}

/* --------------------------------------------------------------- files */

int read_file(const char *path, size_t max, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fail("%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fail("%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return fail("%s: %" PRIu64 " bytes, more than the %zu allowed here",
                    path, (uint64_t)st.st_size, max);
    }
    size_t cap = (size_t)st.st_size;
    uint8_t *b = malloc(cap ? cap : 1);
    if (!b) {
        close(fd);
        return fail("%s: out of memory", path);
    }
    size_t got = 0;
    while (got < cap) {
        ssize_t r = read(fd, b + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(b);
            close(fd);
            return fail("%s: %s", path, strerror(e));
        }
        if (r == 0)
            break; /* shrank while we read: take what is there */
        got += (size_t)r;
    }
    close(fd);
    *buf = b;
    *len = got;
    return 0;
}

int write_file(const char *path, const void *buf, size_t len, int mode)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp))
        return fail("%s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return fail("%s: cannot create a file beside it: %s", path,
                    strerror(errno));
    const uint8_t *p = buf;
    size_t done = 0;
    int e = 0;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            e = errno;
            break;
        }
        done += (size_t)w;
    }
    if (!e && fchmod(fd, (mode_t)mode) != 0)
        e = errno;
    if (!e && fsync(fd) != 0)
        e = errno;
    if (close(fd) != 0 && !e)
        e = errno;
    if (!e && rename(tmp, path) != 0)
        e = errno;
    if (e) {
        unlink(tmp);
        return fail("%s: %s", path, strerror(e));
    }
    return 0;
}

/* ---------------------------------------------------------------- JSON */

static void jw_quoted(const char *s, size_t n)
{
    /* Valid UTF-8 passes through; control characters, quotes and
     * backslashes are escaped; a byte that is not part of valid UTF-8
     * becomes U+FFFD, so the output is always valid JSON. */
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    putchar('"');
    while (p < end) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
            p++;
        } else if (c < 0x20 || c == 0x7F) {
            printf("\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            putchar((int)c);
            p++;
        } else {
            size_t k = c >= 0xF0 && c <= 0xF4   ? 4
                       : c >= 0xE0 && c <= 0xEF ? 3
                       : c >= 0xC2 && c <= 0xDF ? 2
                                                : 0;
            int ok = k && (size_t)(end - p) >= k;
            for (size_t i = 1; ok && i < k; i++)
                ok = (p[i] & 0xC0) == 0x80;
            /* overlong 3/4-byte forms, surrogates, beyond U+10FFFF */
            if (ok && k == 3)
                ok = !(c == 0xE0 && p[1] < 0xA0) &&
                     !(c == 0xED && p[1] >= 0xA0);
            if (ok && k == 4)
                ok = !(c == 0xF0 && p[1] < 0x90) &&
                     !(c == 0xF4 && p[1] >= 0x90);
            if (ok) {
                fwrite(p, 1, k, stdout);
                p += k;
            } else {
                fputs("\\ufffd", stdout);
                p++;
            }
        }
    }
    putchar('"');
}

static void jw_member(struct jw *j, const char *key)
{
    if (j->count[j->depth]++)
        putchar(',');
    if (key) {
        jw_quoted(key, strlen(key));
        putchar(':');
    }
}

void jw_begin(struct jw *j)
{
    memset(j, 0, sizeof(*j));
    putchar('{');
}

void jw_end_doc(struct jw *j)
{
    (void)j;
    puts("}");
    fflush(stdout);
}

static void jw_open(struct jw *j, const char *key, char c)
{
    jw_member(j, key);
    putchar(c);
    if (j->depth + 1 < (int)NOPTS(j->count))
        j->count[++j->depth] = 0;
}

void jw_obj(struct jw *j, const char *key) { jw_open(j, key, '{'); }
void jw_arr(struct jw *j, const char *key) { jw_open(j, key, '['); }

void jw_close(struct jw *j, char bracket)
{
    putchar(bracket);
    if (j->depth > 0)
        j->depth--;
}

void jw_strn(struct jw *j, const char *key, const char *s, size_t n)
{
    jw_member(j, key);
    jw_quoted(s, n);
}

void jw_str(struct jw *j, const char *key, const char *s)
{
    jw_strn(j, key, s, strlen(s));
}

void jw_u64(struct jw *j, const char *key, uint64_t v)
{
    jw_member(j, key);
    printf("%" PRIu64, v);
}

void jw_bool(struct jw *j, const char *key, int v)
{
    jw_member(j, key);
    fputs(v ? "true" : "false", stdout);
}

void jw_null(struct jw *j, const char *key)
{
    jw_member(j, key);
    fputs("null", stdout);
}

void jw_hex(struct jw *j, const char *key, const uint8_t *p, size_t n)
{
    jw_member(j, key);
    putchar('"');
    for (size_t i = 0; i < n; i++)
        printf("%02x", p[i]);
    putchar('"');
}

void print_escaped(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '\\')
            putchar(c);
        else
            printf("\\x%02x", c);
    }
}
