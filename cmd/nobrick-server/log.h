/* log.h - nobrick-server's log: one logfmt line per event on stderr.
 *
 *   time=2026-01-02T03:04:05.678Z level=info msg="listening" port=8080
 *   time=... level=info method=POST path=/api/v1/devices/d-1/checkin
 *            status=200 bytes=57 ms=1.3 device=d-1 remote=127.0.0.1:40112
 *
 * Values that contain a blank, '"', '=' or a control byte are quoted
 * with Go-style escapes, so every line splits unambiguously. The level is
 * checked before anything is formatted. Lines are written with one
 * write(2) each, so lines of several threads never interleave.
 */
#ifndef NB_SRV_LOG_H
#define NB_SRV_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum srv_log_level {
    SRV_LOG_ERROR = 0,
    SRV_LOG_WARN,
    SRV_LOG_INFO,
    SRV_LOG_DEBUG
};

struct srv_log {
    int fd;                   /* 2 by default; -1: nothing is written */
    enum srv_log_level level; /* lines above it are dropped */
    int requests;             /* 0: no per-request lines (--quiet) */
};

/* "error", "warn", "info", "debug" -> level; -1 for anything else. */
int srv_log_level_parse(const char *s);

/* Whether a line of this level would be written. */
int srv_log_on(const struct srv_log *l, enum srv_log_level lv);

/* One line: time and level, then `msg` as msg="...", then the pairs
 * given as alternating key, value strings ending with NULL; a NULL or
 * empty value leaves its pair out. */
void srv_log_kv(const struct srv_log *l, enum srv_log_level lv,
                const char *msg, ...);

/* printf-style message (becomes msg="..."). */
void srv_logf(const struct srv_log *l, enum srv_log_level lv,
              const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Append key=value (quoted when needed) to buf at *pos; never overflows
 * (the line is cut and ends with "..."). */
void srv_logfmt_pair(char *buf, size_t cap, size_t *pos, const char *key,
                     const char *value);

#endif /* NB_SRV_LOG_H */
