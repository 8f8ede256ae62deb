/* server.h - `nobrick server ...`: a client of nobrick-server's management
 * API (docs/server-api.md) over libcurl and jansson.
 *
 *   server.c           dispatch, the options every server command takes,
 *                      the session (URL, admin token), upload, packages
 *   server_http.c      requests: JSON in and out, streamed uploads with a
 *                      progress bar, one-line errors, list pages
 *   server_out.c       text output: tables, key/value blocks, bars, times
 *   server_devices.c   devices list, show, add, tag, group
 *   server_rollouts.c  rollouts list, show, pause, resume, abort, wait
 *   server_policy.c    rollouts create: the target and policy JSON from
 *                      files or options
 *
 * Every command reports its own errors (one line, see nobrick.h) and
 * returns EXIT_OK, EXIT_FAIL or EXIT_USAGE; nothing is sent to the server
 * before the command line has been checked completely.
 */
#ifndef NOBRICK_SERVER_H
#define NOBRICK_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <curl/curl.h>
#include <jansson.h>

#include "nobrick.h"

#define SRV_URL_MAX 2048
#define SRV_TOKEN_MAX 4096   /* bytes of an admin token */
#define SRV_ANSWER_MAX (64u << 20) /* bytes of one JSON answer */
#define SRV_PAGE_MAX 1000    /* items per list request (the API's bound) */
#define SRV_ID_MAX 128       /* an ID given on the command line */

/* The options every server command takes, in struct srv.common. */
enum { SO_SERVER, SO_TOKEN_FILE, SO_CACERT, SO_JSON, SO_COUNT };

/* One `nobrick server` invocation. */
struct srv {
    struct ctx *g;
    char cmd[256];                /* "server devices add", for messages */
    struct opt common[SO_COUNT];  /* --server --token-file --cacert --json */
    int json;                     /* --json: print the server's answers */
    /* set by srv_open */
    char base[SRV_URL_MAX];       /* ".../api/v1" */
    char *auth;                   /* "Authorization: Bearer ..." (wiped) */
    CURL *curl;
    char curl_err[CURL_ERROR_SIZE];
};

/* ------------------------------------------------------------ server.c */

/* Parse argv[0..argc) of command s->cmd against the common options plus
 * `spec[0..n)` (the command's own; at most 24). Same contract as
 * parse_opts: 0, 1 for --help, or EXIT_USAGE after reporting. */
int srv_parse(struct srv *s, int argc, char **argv, struct opt *spec,
              size_t n, char **pos, size_t maxpos, size_t *npos);

/* Resolve the server URL and the admin token, and make the curl handle.
 * Reports and returns EXIT_FAIL (EXIT_USAGE for a malformed URL). */
int srv_open(struct srv *s);
void srv_close(struct srv *s);

/* Name the object of the command in its messages from here on
 * ("server devices show d-1: ..."); after the command line is checked. */
void srv_about(struct srv *s, const char *id);

/* Check an ID given on the command line ("devices show ID"): 1 to
 * SRV_ID_MAX printable characters, not "." or "..". EXIT_USAGE. */
int srv_check_id(const struct srv *s, const char *what, const char *id);

/* A device ID, tag or group: 1 to 64 of [A-Za-z0-9._-]. EXIT_USAGE. */
int srv_check_name(const struct srv *s, const char *what, const char *v);

/* A hardware revision: 1 to 64 printable ASCII characters (the server's
 * bound; a package lists revisions of up to 32). EXIT_USAGE. */
int srv_check_hw_rev(const struct srv *s, const char *what, const char *v);

/* values[0..count), each one value or several separated by commas
 * (`--tag a,b --tag c`), as a JSON array of strings, each checked with
 * srv_check_name (check 1) or srv_check_hw_rev (check 0); at most `max`,
 * no repeats. `what` names them in errors. NULL after reporting
 * (EXIT_USAGE). */
json_t *srv_name_list(const struct srv *s, const char *what,
                      char *const *values, int count, int check,
                      unsigned max);

/* ------------------------------------------------------- server_http.c */

/* One request to s->base + path ("/devices/d-1?tag=eu"): `body` (may be
 * NULL) is sent as JSON. On a 2xx answer *out (may be NULL: not wanted)
 * gets the parsed JSON object (a new reference; an empty answer gives an
 * empty object). Any other outcome is reported in one line naming
 * s->cmd: the server's error code and message, an unreachable server, a
 * refused token. Returns 0 or EXIT_FAIL. */
int srv_json(struct srv *s, const char *method, const char *path,
             json_t *body, json_t **out);

/* Stream the file at `file` as the body of `method path`
 * (application/octet-stream), never holding it in memory, with a
 * progress bar on stderr when stderr is a terminal and one plain line
 * when the transfer ends otherwise. `label` names it in the bar. *out
 * as for srv_json. */
int srv_upload(struct srv *s, const char *method, const char *path,
               const char *file, const char *label, json_t **out);

/* A list: pages of GET path?query&limit=..&after=.. until `limit` items
 * (0: all of them) or the server's last page. *items gets the items, in
 * order (new reference); *more is 1 when the server has more. */
int srv_list(struct srv *s, const char *path, const char *query,
             uint64_t limit, json_t **items, int *more);

/* curl_easy_escape for a path segment or a query value; malloc'd (the
 * caller frees with curl_free), NULL after reporting. */
char *srv_esc(struct srv *s, const char *v);

/* Print a JSON value on stdout, compact, one line. */
void srv_print_json(const json_t *j);

/* ------------------------------------------------------- server_out.c */

/* Members of a JSON object, with fallbacks (NULL when missing). */
const char *js_str(const json_t *o, const char *key);
int js_int(const json_t *o, const char *key, int64_t *v);
int js_num(const json_t *o, const char *key, double *v);

/* A value as text for a table cell or a line: strings as they are,
 * numbers, times (integer members named created_at, *_at, last_seen...)
 * as ISO-8601 UTC, arrays of scalars joined with ", ", null and missing
 * as "-". Control characters become '?'. Into out (truncated). */
void js_text(const char *key, const json_t *v, char *out, size_t cap);

/* A table on stdout: columns sized to their widest cell. */
struct table {
    unsigned cols, rows, cap;
    char **cells; /* rows * cols, row 0 the header */
};
void table_init(struct table *t, unsigned cols, const char *const *header);
/* Append a row of `cols` cells (copied). 0, or EXIT_FAIL (no memory). */
int table_row(struct table *t, const char *const *cells);
void table_print(const struct table *t);
void table_free(struct table *t);

/* Every member of an object as "label   value" lines (labels are the
 * keys with '_' shown as ' '), nested objects indented, `skip` (a NULL
 * terminated list, may be NULL) left out. */
void print_object(const json_t *o, int indent, const char *const *skip);

/* One "label   value" line as print_object makes them (the value is
 * printed as it is: js_text has made it safe). */
void print_kv(int indent, const char *key, const char *value);

/* "[######------]" of `percent` (0..100) in `width` characters. */
void fmt_bar(double percent, int width, char *out, size_t cap);

/* Bytes as "1.5 MiB" (or "312 B"). */
void fmt_size(double bytes, char *out, size_t cap);

/* Seconds since the epoch, with a monotonic clock's precision. */
double now_s(void);

/* -------------------------------------------------- the command groups */

/* A command of a group ("devices add"). */
struct srv_sub {
    const char *name;
    int (*fn)(struct srv *, int, char **);
};

/* `nobrick server GROUP [SUB] ...` from argv after GROUP: the server
 * options may come first; no SUB (nothing, or an option next) runs
 * subs[0], the group's list. `usage` for --help. */
int srv_group(struct srv *s, const char *name, const struct srv_sub *subs,
              size_t n, const char *usage, int argc, char **argv);

int srv_devices(struct srv *s, int argc, char **argv);
int srv_rollouts(struct srv *s, int argc, char **argv);
/* server_policy.c */
int srv_rollouts_create(struct srv *s, int argc, char **argv);

/* A duration "90s", "500ms", "6h", "1d", "2w", or plain seconds, at most
 * max_s seconds, into *ms. EXIT_USAGE after reporting. */
int srv_duration(const struct srv *s, const char *opt, const char *v,
                 uint64_t max_s, uint64_t *ms);

/* The entry point, from main.c. */
int cmd_server(struct ctx *g, int argc, char **argv);

#endif /* NOBRICK_SERVER_H */
