/* store_impl.h - what store.c and store_rollouts.c share: copying column
 * values into fixed struct fields (noting what did not fit), JSON string
 * lists, and growing result arrays. Private to the store. */
#ifndef NB_SRV_STORE_IMPL_H
#define NB_SRV_STORE_IMPL_H

#include <stddef.h>

#include "store.h"

/* A row callback's state: where to put rows and what went wrong. */
struct st_fill {
    void *items;        /* array of `size`-byte structs (grown if `grow`) */
    size_t size;
    unsigned n, cap;
    int grow;           /* realloc the array when full */
    int nospc;          /* a value did not fit its field */
    int nomem;
};

/* Copy column `col` (NULL -> "") into dst; sets f->nospc when cut. */
void st_text(struct st_fill *f, const struct nb_db_row *row, int col,
             char *dst, size_t cap);
/* The next free item, zeroed (NULL: full or out of memory, noted). */
void *st_next(struct st_fill *f);
/* The error for a fill after the query ran. */
nb_err st_fill_err(const struct st_fill *f, nb_err err);

/* A JSON array of strings -> list; 0, or -1 when malformed / too many /
 * too long. */
int st_list_parse(const char *json, char (*out)[SRV_ST_ID], unsigned cap,
                  unsigned *n);
/* A list -> JSON array text (malloc'ed), NULL on out of memory. */
char *st_list_json(const char *const *items, unsigned n);
char *st_list_json2(const char (*items)[SRV_ST_ID], unsigned n);

/* limit as the API takes it: 0 -> 100, capped at SRV_ST_LIST_MAX. */
unsigned st_limit(unsigned limit);

#endif /* NB_SRV_STORE_IMPL_H */
