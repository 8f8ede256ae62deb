/* server_out.c - text output of `nobrick server ...`: JSON members as
 * text, tables sized to their contents, key/value blocks, bars, sizes.
 * Everything the server sent is shown with control characters as '?',
 * so an answer cannot move the cursor or fake a line; see server.h. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

#define LABEL_WIDTH 22

/* ------------------------------------------------------------- members */

const char *js_str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

int js_int(const json_t *o, const char *key, int64_t *v)
{
    json_t *m = json_object_get(o, key);
    if (!json_is_integer(m))
        return 0;
    *v = (int64_t)json_integer_value(m);
    return 1;
}

int js_num(const json_t *o, const char *key, double *v)
{
    json_t *m = json_object_get(o, key);
    if (!json_is_number(m))
        return 0;
    *v = json_number_value(m);
    return 1;
}

/* Integer members that hold Unix times. */
static int is_time_key(const char *key)
{
    if (!key)
        return 0;
    size_t n = strlen(key);
    return (n > 3 && strcmp(key + n - 3, "_at") == 0) ||
           strcmp(key, "created") == 0 || strcmp(key, "last_seen") == 0 ||
           strcmp(key, "at") == 0;
}

/* Append s (n bytes) to out, control characters as '?'. */
static void put(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
    for (size_t i = 0; i < n && *len + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        out[(*len)++] = c < 0x20 || c == 0x7F ? '?' : (char)c;
    }
    out[*len] = '\0';
}

static void scalar(const char *key, const json_t *v, char *out, size_t cap,
                   size_t *len)
{
    char tmp[64];
    switch (json_typeof(v)) {
    case JSON_STRING:
        put(out, cap, len, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        if (is_time_key(key) && json_integer_value(v) > 0)
            fmt_time((uint64_t)json_integer_value(v), tmp);
        else
            snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT,
                     json_integer_value(v));
        break;
    case JSON_REAL:
        snprintf(tmp, sizeof(tmp), "%.15g", json_real_value(v));
        break;
    case JSON_TRUE:
        snprintf(tmp, sizeof(tmp), "yes");
        break;
    case JSON_FALSE:
        snprintf(tmp, sizeof(tmp), "no");
        break;
    default:
        snprintf(tmp, sizeof(tmp), "-");
        break;
    }
    put(out, cap, len, tmp, strlen(tmp));
}

void js_text(const char *key, const json_t *v, char *out, size_t cap)
{
    size_t len = 0;
    if (!cap)
        return;
    out[0] = '\0';
    if (!v || json_is_null(v)) {
        put(out, cap, &len, "-", 1);
        return;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        int scalars = 1;
        json_array_foreach(v, i, e) scalars &= !json_is_object(e) &&
                                               !json_is_array(e);
        if (scalars) {
            if (json_array_size(v) == 0)
                put(out, cap, &len, "-", 1);
            json_array_foreach(v, i, e)
            {
                if (i)
                    put(out, cap, &len, ", ", 2);
                scalar(key, e, out, cap, &len);
            }
            return;
        }
    }
    if (json_is_array(v) || json_is_object(v)) {
        char *d = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(15));
        if (d)
            put(out, cap, &len, d, strlen(d));
        free(d);
        return;
    }
    scalar(key, v, out, cap, &len);
}

/* -------------------------------------------------------------- tables */

void table_init(struct table *t, unsigned cols, const char *const *header)
{
    memset(t, 0, sizeof(*t));
    t->cols = cols;
    table_row(t, header);
}

int table_row(struct table *t, const char *const *cells)
{
    if (t->rows == t->cap) {
        unsigned cap = t->cap ? t->cap * 2 : 16;
        char **c = realloc(t->cells, (size_t)cap * t->cols * sizeof(*c));
        if (!c)
            return fail("out of memory");
        t->cells = c;
        t->cap = cap;
    }
    char **row = t->cells + (size_t)t->rows * t->cols;
    for (unsigned i = 0; i < t->cols; i++) {
        row[i] = strdup(cells[i] ? cells[i] : "-");
        if (!row[i]) {
            while (i--)
                free(row[i]);
            return fail("out of memory");
        }
    }
    t->rows++;
    return 0;
}

/* Width on a terminal: UTF-8 code points, not bytes. */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

void table_print(const struct table *t)
{
    size_t w[16] = {0};
    unsigned cols = t->cols < 16 ? t->cols : 16;
    for (unsigned r = 0; r < t->rows; r++)
        for (unsigned c = 0; c < cols; c++) {
            size_t x = width(t->cells[(size_t)r * t->cols + c]);
            if (x > w[c])
                w[c] = x;
        }
    for (unsigned r = 0; r < t->rows; r++) {
        for (unsigned c = 0; c < cols; c++) {
            const char *s = t->cells[(size_t)r * t->cols + c];
            if (c + 1 == cols) {
                fputs(s, stdout);
                break;
            }
            fputs(s, stdout);
            for (size_t k = width(s); k < w[c] + 2; k++)
                putchar(' ');
        }
        putchar('\n');
    }
    fflush(stdout);
}

void table_free(struct table *t)
{
    for (size_t i = 0; i < (size_t)t->rows * t->cols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof(*t));
}

/* ------------------------------------------------------ key/value blocks */

/* The label of a line; padded to the value column when `pad`. */
static void label(const char *key, int indent, int pad)
{
    int n = 0;
    printf("%*s", indent, "");
    for (const char *k = key; *k && n < 64; k++, n++) {
        unsigned char c = (unsigned char)*k;
        putchar(c == '_' ? ' ' : c < 0x20 || c == 0x7F ? '?' : c);
    }
    if (!pad)
        return;
    for (n += indent; n < LABEL_WIDTH; n++)
        putchar(' ');
    putchar(' ');
}

void print_kv(int indent, const char *key, const char *value)
{
    label(key, indent, *value != '\0');
    puts(value);
}

static int in(const char *key, const char *const *skip)
{
    for (; skip && *skip; skip++)
        if (strcmp(*skip, key) == 0)
            return 1;
    return 0;
}

void print_object(const json_t *o, int indent, const char *const *skip)
{
    const char *key;
    json_t *v;
    char text[4096];
    json_object_foreach((json_t *)o, key, v)
    {
        if (in(key, skip))
            continue;
        if (json_is_object(v) && json_object_size(v) && indent < 8) {
            label(key, indent, 0);
            putchar('\n');
            print_object(v, indent + 2, NULL);
            continue;
        }
        int objects = json_is_array(v) && json_array_size(v);
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) objects &= json_is_object(e);
        if (objects) {
            /* a list of records: one line each, "key value, key value" */
            label(key, indent, 0);
            putchar('\n');
            json_array_foreach(v, i, e)
            {
                const char *k2;
                json_t *v2;
                int first = 1;
                printf("%*s- ", indent + 2, "");
                json_object_foreach(e, k2, v2)
                {
                    js_text(k2, v2, text, sizeof(text));
                    printf("%s", first ? "" : ", ");
                    for (const char *p = k2; *p; p++)
                        putchar(*p == '_' ? ' '
                                : (unsigned char)*p < 0x20 ? '?'
                                                           : *p);
                    printf(" %s", text);
                    first = 0;
                }
                putchar('\n');
            }
            continue;
        }
        js_text(key, v, text, sizeof(text));
        label(key, indent, 1);
        puts(text);
    }
    fflush(stdout);
}

/* --------------------------------------------------------------- small */

void fmt_bar(double percent, int w, char *out, size_t cap)
{
    if (w < 3 || (size_t)w + 1 > cap) {
        if (cap)
            out[0] = '\0';
        return;
    }
    if (percent < 0)
        percent = 0;
    if (percent > 100)
        percent = 100;
    int inner = w - 2, full = (int)(percent * inner / 100.0 + 0.5);
    /* Something reached shows at least one mark; not all, not a full bar. */
    if (full == 0 && percent > 0)
        full = 1;
    if (full == inner && percent < 100)
        full = inner - 1;
    out[0] = '[';
    for (int i = 0; i < inner; i++)
        out[1 + i] = i < full ? '#' : '-';
    out[w - 1] = ']';
    out[w] = '\0';
}

void fmt_size(double b, char *out, size_t cap)
{
    static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB"};
    if (b < 1024) {
        snprintf(out, cap, "%.0f B", b);
        return;
    }
    int u = -1;
    while (b >= 1024 && u < 3) {
        b /= 1024;
        u++;
    }
    snprintf(out, cap, "%.1f %s", b, unit[u]);
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
