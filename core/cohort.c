/* cohort.c - rollout order (nb_cohort.h): SipHash-2-4 over the IDs. */
#include "nb_cohort.h"

#include <string.h>

/* Fixed key: the order must be the same on the server and on a device,
 * and across server processes. The 16 ASCII bytes "nobrick cohort 1",
 * read as two little-endian halves ("nobrick " and "cohort 1"). */
#define NB_COHORT_K0 0x206b636972626f6eull
#define NB_COHORT_K1 0x312074726f686f63ull
#define NB_COHORT_ID_MAX 256u

static uint64_t rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64u - b));
}

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    unsigned i;
    for (i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8u * i);
    return v;
}

/* SipHash-2-4, streaming, so the cohort message needs no buffer (a few
 * dozen bytes of stack on a device instead of the whole message). */
struct sip {
    uint64_t v0, v1, v2, v3;
    uint64_t tail; /* bytes of the unfinished block, little-endian */
    size_t len;    /* bytes taken in so far */
};

static void sip_round(struct sip *s)
{
    s->v0 += s->v1; s->v1 = rotl(s->v1, 13); s->v1 ^= s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3; s->v3 = rotl(s->v3, 16); s->v3 ^= s->v2;
    s->v0 += s->v3; s->v3 = rotl(s->v3, 21); s->v3 ^= s->v0;
    s->v2 += s->v1; s->v1 = rotl(s->v1, 17); s->v1 ^= s->v2;
    s->v2 = rotl(s->v2, 32);
}

static void sip_block(struct sip *s, uint64_t m)
{
    s->v3 ^= m;
    sip_round(s);
    sip_round(s);
    s->v0 ^= m;
}

static void sip_init(struct sip *s, uint64_t k0, uint64_t k1)
{
    s->v0 = k0 ^ 0x736f6d6570736575ull;
    s->v1 = k1 ^ 0x646f72616e646f6dull;
    s->v2 = k0 ^ 0x6c7967656e657261ull;
    s->v3 = k1 ^ 0x7465646279746573ull;
    s->tail = 0;
    s->len = 0;
}

static void sip_update(struct sip *s, const uint8_t *p, size_t n)
{
    while (n > 0 && s->len % 8u != 0) {
        s->tail |= (uint64_t)*p++ << (8u * (s->len++ % 8u));
        n--;
        if (s->len % 8u == 0) {
            sip_block(s, s->tail);
            s->tail = 0;
        }
    }
    for (; n >= 8; n -= 8, p += 8, s->len += 8)
        sip_block(s, load_le64(p));
    for (; n > 0; n--)
        s->tail |= (uint64_t)*p++ << (8u * (s->len++ % 8u));
}

static uint64_t sip_final(struct sip *s)
{
    sip_block(s, s->tail | (uint64_t)s->len << 56);
    s->v2 ^= 0xff;
    sip_round(s);
    sip_round(s);
    sip_round(s);
    sip_round(s);
    return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

uint64_t nb_siphash24(uint64_t k0, uint64_t k1, const void *data, size_t len)
{
    struct sip s;

    sip_init(&s, k0, k1);
    sip_update(&s, (const uint8_t *)data, len);
    return sip_final(&s);
}

/* strlen without the C library: the core links only mem*. */
static size_t id_len(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0')
        n++;
    return n;
}

/* Message: len(rollout) as one byte, rollout, device (the device's length
 * is implied by the total, which SipHash takes in). The rollout ID is cut
 * to 255 bytes so its length fits the byte, the device ID to 256 (server
 * IDs are at most 64 bytes). */
uint32_t nb_cohort_point(const char *rollout_id, const char *device_id)
{
    struct sip s;
    size_t rl = id_len(rollout_id), dl = id_len(device_id);
    uint8_t rl8;

    if (rl > NB_COHORT_ID_MAX - 1)
        rl = NB_COHORT_ID_MAX - 1;
    if (dl > NB_COHORT_ID_MAX)
        dl = NB_COHORT_ID_MAX;
    rl8 = (uint8_t)rl;
    sip_init(&s, NB_COHORT_K0, NB_COHORT_K1);
    sip_update(&s, &rl8, 1);
    sip_update(&s, (const uint8_t *)rollout_id, rl);
    sip_update(&s, (const uint8_t *)device_id, dl);
    return (uint32_t)(sip_final(&s) >> 32);
}

int nb_cohort_in(const char *rollout_id, const char *device_id, uint32_t ppm)
{
    uint64_t point;

    if (ppm >= NB_COHORT_PPM)
        return 1;
    if (ppm == 0)
        return 0;
    /* point / 2^32 < ppm / 10^6, in integers. */
    point = nb_cohort_point(rollout_id, device_id);
    return point * NB_COHORT_PPM < ((uint64_t)ppm << 32);
}

/* v mod n by shift and subtract: a plain `%` on 64 bits calls a runtime
 * helper (__aeabi_uldivmod) that a bare-metal core does not link. */
static uint32_t mod_u64(uint64_t v, uint32_t n)
{
    uint64_t r = 0;
    int bit;
    for (bit = 63; bit >= 0; bit--) {
        r = (r << 1) | ((v >> bit) & 1u);
        if (r >= n)
            r -= n;
    }
    return (uint32_t)r;
}

uint32_t nb_cohort_fixed(const char *device_id, uint32_t n)
{
    size_t len = id_len(device_id), start = len;
    uint64_t v = 0;

    if (n <= 1)
        return 0;
    while (start > 0 && len - start < 18 && device_id[start - 1] >= '0' &&
           device_id[start - 1] <= '9')
        start--;
    if (start == len)
        return mod_u64(nb_siphash24(NB_COHORT_K0, NB_COHORT_K1, device_id,
                                    len), n);
    for (; start < len; start++)
        v = v * 10u + (uint64_t)(device_id[start] - '0');
    return mod_u64(v, n);
}
