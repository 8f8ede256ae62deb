/* log.c - logfmt lines on stderr; see log.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LINE_MAX_LEN 2048

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int srv_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

int srv_log_on(const struct srv_log *l, enum srv_log_level lv)
{
    return l && l->fd >= 0 && lv <= l->level;
}

/* Append raw text, keeping room for the "...\n" of a cut line. */
static void put(char *buf, size_t cap, size_t *pos, const char *s, size_t n)
{
    if (*pos >= cap - 5)
        return;
    if (n > cap - 5 - *pos)
        n = cap - 5 - *pos;
    memcpy(buf + *pos, s, n);
    *pos += n;
}

static int needs_quotes(const char *v)
{
    if (!*v)
        return 1;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
            return 1;
    return 0;
}

void srv_logfmt_pair(char *buf, size_t cap, size_t *pos, const char *key,
                     const char *value)
{
    if (*pos > 0)
        put(buf, cap, pos, " ", 1);
    put(buf, cap, pos, key, strlen(key));
    put(buf, cap, pos, "=", 1);
    if (!needs_quotes(value)) {
        put(buf, cap, pos, value, strlen(value));
        return;
    }
    put(buf, cap, pos, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(buf, cap, pos, esc, 2);
        } else if (*p == '\n') {
            put(buf, cap, pos, "\\n", 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", *p);
            put(buf, cap, pos, esc, 4);
        } else {
            put(buf, cap, pos, (const char *)p, 1);
        }
    }
    put(buf, cap, pos, "\"", 1);
}

static void line_start(char *buf, size_t cap, size_t *pos,
                       enum srv_log_level lv)
{
    struct timespec ts;
    struct tm tm;
    char t[40], base[24];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(t, sizeof t, "%s.%03uZ", base,
             (unsigned)(ts.tv_nsec / 1000000L) % 1000u);
    srv_logfmt_pair(buf, cap, pos, "time", t);
    srv_logfmt_pair(buf, cap, pos, "level", level_names[lv]);
}

static void line_end(const struct srv_log *l, char *buf, size_t cap,
                     size_t pos)
{
    if (pos >= cap - 5) {
        memcpy(buf + pos, "...", 3);
        pos += 3;
    }
    buf[pos++] = '\n';
    /* One write: lines of several threads never interleave. */
    while (write(l->fd, buf, pos) < 0 && errno == EINTR)
        ;
}

void srv_log_kv(const struct srv_log *l, enum srv_log_level lv,
                const char *msg, ...)
{
    char buf[LINE_MAX_LEN];
    size_t pos = 0;
    va_list ap;
    if (!srv_log_on(l, lv))
        return;
    line_start(buf, sizeof buf, &pos, lv);
    if (msg)
        srv_logfmt_pair(buf, sizeof buf, &pos, "msg", msg);
    va_start(ap, msg);
    for (;;) {
        const char *k = va_arg(ap, const char *), *v;
        if (!k)
            break;
        v = va_arg(ap, const char *);
        if (v && *v)
            srv_logfmt_pair(buf, sizeof buf, &pos, k, v);
    }
    va_end(ap);
    line_end(l, buf, sizeof buf, pos);
}

void srv_logf(const struct srv_log *l, enum srv_log_level lv,
              const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    if (!srv_log_on(l, lv))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    srv_log_kv(l, lv, msg, (const char *)NULL);
}
