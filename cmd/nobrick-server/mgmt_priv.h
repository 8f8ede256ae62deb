/* mgmt_priv.h - what the files of the management API share (private to
 * mgmt_*.c): the request context, strict input checks, the transaction
 * helpers and the JSON forms of packages, devices and rollouts.
 *
 *   mgmt_api.c       srv_mgmt_handle: routing, input checks, transactions,
 *                    error answers, paging
 *   mgmt_packages.c  /api/v1/packages...: upload, extra files, list, show
 *   mgmt_devices.c   /api/v1/devices...: register, list, show, tags, group
 *   mgmt_rollouts.c  /api/v1/rollouts...: create, list, show with status,
 *                    pause, resume, abort
 *
 * Every handler runs in one database transaction and answers only after
 * it committed; a refused request (4xx) rolls back, so it changes
 * nothing. Inputs are checked before anything is written: unknown keys,
 * wrong types, malformed IDs are refused with 400 and one line naming the
 * key. Values reach SQL only as parameters (store.h).
 */
#ifndef NB_SRV_MGMT_PRIV_H
#define NB_SRV_MGMT_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "server.h"
#include "store.h"

#define MG_MAX_SEGS 4         /* "packages", ID, "files", name */
#define MG_SEG_MAX SRV_NAME_MAX
#define MG_REASON_MAX 400     /* a pause reason given by the operator */
#define MG_FILES_MAX 64       /* extra files listed per package */
#define MG_DEVICE_ROLLOUTS 20 /* rollouts shown with a device */
#define MG_DEVICE_EVENTS 20   /* events shown with a device */

struct mg {
    struct srv *s;
    const struct srv_req *req;
    struct srv_resp *resp;
    struct nb_db_conn *c;     /* set by mg_begin */
    int64_t now;
    /* The path after /api/v1/, split at '/'. */
    char seg[MG_MAX_SEGS][MG_SEG_MAX + 1];
    unsigned n_seg;
};

/* --------------------------------------------------------------- routes */

void mg_packages(struct mg *m);
void mg_devices(struct mg *m);
void mg_rollouts(struct mg *m);

/* --------------------------------------------------------------- checks */

/* 1 when the method is `method`; else answers 405 with Allow: `allow`. */
int mg_method(struct mg *m, const char *method, const char *allow);
/* Answer 405 naming the allowed methods. */
void mg_not_allowed(struct mg *m, const char *allow);

/* The request's JSON object body. An empty body is an empty object when
 * `optional`, else 400. NULL after answering 400 (not JSON, not an
 * object, duplicate keys). The caller json_decref's it. */
json_t *mg_body(struct mg *m, int optional);
/* 1 when every key of `o` is in the NULL-terminated `keys`; else answers
 * 400 naming the first unknown key. */
int mg_keys(struct mg *m, json_t *o, const char *const *keys);
/* 1 when every query argument is in `keys` (NULL-terminated) and given at
 * most once; else answers 400. */
int mg_query_keys(struct mg *m, const char *const *keys);
/* limit (1..SRV_ST_LIST_MAX, default 100): 1, or 0 after answering 400. */
int mg_limit(struct mg *m, unsigned *limit);

/* A string member (NULL when absent or JSON null and !required): 1, or 0
 * after answering 400 ("<key> must be ..."). `check` (may be NULL)
 * validates the value, `what` says what it must be. Strings never hold a
 * NUL byte (mg_body refuses "\u0000"). */
int mg_str(struct mg *m, json_t *o, const char *key, int required,
           int (*check)(const char *), const char *what, const char **out);

/* Validators. */
int mg_valid_hw_rev(const char *s);   /* as srv_valid_id (device API) */
int mg_valid_text(const char *s);     /* printable (no control bytes),
                                       * 1..MG_REASON_MAX bytes */

/* Copy `in` for an error message: control bytes and non-ASCII as '?',
 * cut to fit. Returns out. */
char *mg_clean(const char *in, char *out, size_t cap);

/* --------------------------------------------------------- transactions */

/* Take a connection and open a transaction: 1, or 0 after answering
 * 503. */
int mg_begin(struct mg *m);
/* Commit when `ok` (a failed commit replaces the answer with 503/500 and
 * returns the error), else roll back; give the connection back. */
nb_err mg_end(struct mg *m, int ok);
/* Answer for a store error: NB_ERR_NOENT 404 "no such <what>",
 * NB_ERR_DUPLICATE 409, NB_ERR_IO 503, anything else 500 (logged). */
void mg_db_error(struct mg *m, nb_err err, const char *what);

/* ---------------------------------------------------------------- JSON */

/* {"items": items (stolen), "next": next_id or null}. */
json_t *mg_page(json_t *items, const char *next_id);

json_t *mg_package_json(const struct srv_package *p,
                        const struct srv_package_file *files, unsigned n);
json_t *mg_file_json(const struct srv_package_file *f);
json_t *mg_device_json(const struct srv_device *d);
/* A stored JSON text as a value (JSON null if it does not parse). */
json_t *mg_stored_json(const char *text);

#endif /* NB_SRV_MGMT_PRIV_H */
