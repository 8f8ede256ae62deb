/* auth.c - bearer tokens: the server keeps only SHA-256 hashes of admin,
 * fleet and device tokens, and compares hashes in constant time, so
 * neither a database dump nor a timing measurement gives a token away. */
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <mbedtls/sha256.h>

#include "server.h"

const char *srv_bearer(const struct srv_req *r)
{
    const char *h = srv_req_header(r, "Authorization");
    size_t n;
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    n = strlen(h);
    if (n == 0 || n > SRV_TOKEN_MAX)
        return NULL;
    return h;
}

static void sha256(const char *s, uint8_t out[32])
{
    mbedtls_sha256_ret((const unsigned char *)s, strlen(s), out, 0);
}

void srv_token_sha256_hex(const char *token, char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    uint8_t h[32];
    sha256(token, h);
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[h[i] >> 4];
        hex[2 * i + 1] = digits[h[i] & 15];
    }
    hex[64] = '\0';
}

/* Constant time in the contents: every byte is looked at. */
static int mem_eq(const uint8_t *a, const uint8_t *b, size_t n)
{
    uint8_t d = 0;
    for (size_t i = 0; i < n; i++)
        d |= (uint8_t)(a[i] ^ b[i]);
    return d == 0;
}

int srv_hex_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    uint8_t d = (uint8_t)(la != lb);
    for (size_t i = 0; i < la && i < lb; i++) {
        /* Case-insensitive for hex letters: configs may use upper case. */
        uint8_t x = (uint8_t)a[i] | 0x20, y = (uint8_t)b[i] | 0x20;
        d |= (uint8_t)(x ^ y);
    }
    return d == 0 && la > 0;
}

/* Any of n hashes; all are compared, whichever matches. */
static int any_hash(const uint8_t (*set)[32], unsigned n, const char *token)
{
    uint8_t h[32];
    int ok = 0;
    if (!token || !*token)
        return 0;
    sha256(token, h);
    for (unsigned i = 0; i < n; i++)
        ok |= mem_eq(set[i], h, 32);
    memset(h, 0, sizeof h);
    return ok;
}

int srv_auth_admin(const struct srv *s, const struct srv_req *r)
{
    return any_hash((const uint8_t (*)[32])s->admin_sha, s->n_admin,
                    srv_bearer(r));
}

int srv_auth_fleet(const struct srv *s, const char *token)
{
    return any_hash((const uint8_t (*)[32])s->fleet_sha, s->n_fleet, token);
}

nb_err srv_new_token(char out[65])
{
    static const char digits[] = "0123456789abcdef";
    uint8_t r[32];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = getrandom(r + got, sizeof r - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return NB_ERR_IO;
        got += (size_t)n;
    }
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[r[i] >> 4];
        out[2 * i + 1] = digits[r[i] & 15];
    }
    out[64] = '\0';
    memset(r, 0, sizeof r);
    return NB_OK;
}
