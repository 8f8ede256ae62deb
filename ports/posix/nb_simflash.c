/* nb_simflash.c - simulated NOR flash with power faults (POSIX port).
 *
 * Every device, memory- or file-backed, is one buffer in the file layout
 * (header, flash bytes, wear counters). For a file that buffer is a
 * MAP_SHARED mapping, so each program or erase lands in the file without
 * an explicit write and a crash of the test process still leaves the
 * device as the last completed operation left it; a memory device is the
 * same layout in a calloc'd block, so the rest of the code never asks
 * which kind it has.
 *
 * Fault order for program and erase, chosen so that a caller bug is
 * always reported as a bug and a sweep sees the same op numbering with
 * or without faults:
 *   power lost? -> NB_ERR_POWER (not counted: the device is off)
 *   count the op
 *   NOR rules broken? -> violation, NB_ERR_INVAL, nothing written
 *   cut armed for this op? -> (torn: tear it) power lost, NB_ERR_POWER
 *   bad sector? -> NB_ERR_IO, nothing changed
 *   do it
 */
#if !defined(_POSIX_C_SOURCE) && !defined(_DEFAULT_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include "nb_simflash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Header layout, all integers little-endian (see nb_simflash.h). */
#define HDR_SIZE 4096u
#define FMT_VERSION 1u
#define OFF_MAGIC 0u
#define OFF_VERSION 8u
#define OFF_HDR_SIZE 12u
#define OFF_WRITE_SIZE 16u
#define OFF_ERASE_VALUE 20u
#define OFF_REGION_COUNT 24u
#define OFF_REGIONS 28u /* NB_FLASH_MAX_REGIONS x (u32 count, u32 size) */
#define OFF_USER_LEN (OFF_REGIONS + 8u * NB_FLASH_MAX_REGIONS)
#define OFF_USER (OFF_USER_LEN + 4u)

static const char magic[8] = {'N', 'B', 'S', 'I', 'M', 'F', 'L', '1'};

/* Compile-time check that the user blob fits in the header. */
typedef char nb_simflash_hdr_fits[(OFF_USER + NB_SIMFLASH_USER_MAX <= HDR_SIZE)
                                      ? 1 : -1];

struct nb_simflash {
    struct nb_simflash_geometry geo; /* unused regions zeroed */
    uint32_t size;                   /* flash bytes */
    uint32_t sectors;
    uint8_t *image;   /* header + flash + wear */
    size_t image_len;
    int mapped;       /* image is an mmap of the file, else malloc'd */
    uint8_t *data;    /* image + HDR_SIZE */
    uint8_t *wear;    /* data + size: one LE u32 per sector */
    uint8_t *bad;     /* nb_simflash_bad flags per sector, runtime only */
    uint64_t rng;     /* splitmix64 state */
    uint64_t ops_since_on;
    uint64_t cut_op;
    int cut_armed;
    int cut_torn;
    int power_lost;
    struct nb_simflash_stats stats;
};

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* splitmix64: tiny, full-period, and independent of the C library, so a
 * seed replays the same torn bytes on every platform. */
static uint64_t rng_next(struct nb_simflash *s)
{
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform enough in [0, n) for n <= 2^32, without a division. */
static uint32_t rng_below(struct nb_simflash *s, uint32_t n)
{
    return (uint32_t)(((rng_next(s) >> 32) * (uint64_t)n) >> 32);
}

/* Validate geometry; on success give total size and sector count. The
 * sector count is checked before the size so the size sum cannot
 * overflow 64 bits. */
static nb_err check_geometry(const struct nb_simflash_geometry *g,
                             uint32_t *size, uint32_t *sectors)
{
    uint64_t total = 0, n = 0;
    uint32_t i;

    switch (g->write_size) {
    case 1: case 2: case 4: case 8: case 16: case 32: break;
    default: return NB_ERR_INVAL;
    }
    if (g->erase_value != 0xFF && g->erase_value != 0x00)
        return NB_ERR_INVAL;
    if (g->region_count < 1 || g->region_count > NB_FLASH_MAX_REGIONS)
        return NB_ERR_INVAL;
    for (i = 0; i < g->region_count; i++) {
        const struct nb_flash_region *r = &g->regions[i];
        if (r->count == 0 || r->size == 0 || r->size % g->write_size)
            return NB_ERR_INVAL;
        n += r->count;
        if (n > NB_SIMFLASH_MAX_SECTORS)
            return NB_ERR_INVAL;
        total += (uint64_t)r->count * r->size;
        if (total > UINT32_MAX)
            return NB_ERR_INVAL; /* addresses are u32 */
    }
    *size = (uint32_t)total;
    *sectors = (uint32_t)n;
    return NB_OK;
}

/* Bytes of the whole image; 0 when it cannot be addressed on this host. */
static size_t image_len(uint32_t size, uint32_t sectors)
{
    uint64_t len = (uint64_t)HDR_SIZE + size + 4u * (uint64_t)sectors;
    return len > SIZE_MAX ? 0 : (size_t)len;
}

/* Index, start and size of the sector holding `addr` (< s->size). */
static void locate(const struct nb_simflash *s, uint32_t addr,
                   uint32_t *index, uint32_t *start, uint32_t *ssize)
{
    uint32_t base = 0, first = 0, i;

    *index = *start = *ssize = 0;
    for (i = 0; i < s->geo.region_count; i++) {
        const struct nb_flash_region *r = &s->geo.regions[i];
        uint64_t span = (uint64_t)r->count * r->size;
        if ((uint64_t)(addr - base) < span) {
            uint32_t k = (addr - base) / r->size;
            *index = first + k;
            *start = base + k * r->size;
            *ssize = r->size;
            return;
        }
        base += (uint32_t)span;
        first += r->count;
    }
}

static int in_range(const struct nb_simflash *s, uint32_t addr,
                    uint32_t len)
{
    return (uint64_t)addr + len <= s->size;
}

/* OR of the bad flags of every sector that [addr, addr+len) touches. */
static unsigned range_flags(const struct nb_simflash *s, uint32_t addr,
                            uint32_t len)
{
    uint64_t a = addr, end = (uint64_t)addr + len;
    unsigned flags = 0;
    uint32_t idx, start, ssize;

    while (a < end) {
        locate(s, (uint32_t)a, &idx, &start, &ssize);
        flags |= s->bad[idx];
        a = (uint64_t)start + ssize;
    }
    return flags;
}

static int range_erased(const struct nb_simflash *s, uint32_t addr,
                        uint32_t len)
{
    const uint8_t *p = s->data + addr;
    uint32_t i;

    for (i = 0; i < len; i++)
        if (p[i] != s->geo.erase_value)
            return 0;
    return 1;
}

static void wear_inc(struct nb_simflash *s, uint32_t idx)
{
    uint8_t *p = s->wear + 4u * (size_t)idx;
    put_le32(p, get_le32(p) + 1u);
}

/* Units before a random k written, unit k with a random subset of the
 * bits that would move away from the erased value, the rest untouched.
 * The range was checked erased, so "ev ^ subset" is exact. */
static void torn_prog(struct nb_simflash *s, uint32_t addr,
                      const uint8_t *src, uint32_t len)
{
    uint32_t ws = s->geo.write_size, units = len / ws, k, i;
    uint8_t ev = s->geo.erase_value;

    if (units == 0)
        return;
    k = rng_below(s, units);
    memcpy(s->data + addr, src, (size_t)k * ws);
    for (i = 0; i < ws; i++) {
        uint32_t o = k * ws + i;
        uint8_t change = (uint8_t)(src[o] ^ ev);
        s->data[addr + o] = (uint8_t)(ev ^ (change & (uint8_t)rng_next(s)));
    }
}

/* Each byte: its old value, the erased value or noise, so a reader can
 * see any mix (a real half-erase is not even byte-granular). */
static void torn_erase(struct nb_simflash *s, uint32_t start, uint32_t ssize)
{
    uint32_t i;

    for (i = 0; i < ssize; i++) {
        uint64_t r = rng_next(s);
        switch (r % 3) {
        case 0: break;
        case 1: s->data[start + i] = s->geo.erase_value; break;
        default: s->data[start + i] = (uint8_t)(r >> 8); break;
        }
    }
}

/* Shared by program and erase: does the armed cut fire on op `op`? If so
 * the power is now off. Called only once the op has passed the NOR
 * checks, so a torn op always has valid arguments. */
static int cut_fires(struct nb_simflash *s, uint64_t op)
{
    if (!s->cut_armed || op != s->cut_op)
        return 0;
    s->cut_armed = 0;
    s->power_lost = 1;
    return 1;
}

static nb_err sim_read(void *ctx, uint32_t addr, void *buf, uint32_t len)
{
    struct nb_simflash *s = ctx;
    uint8_t *dst = buf;
    uint64_t a, end;
    uint32_t idx, start, ssize;

    if (s->power_lost)
        return NB_ERR_POWER;
    if (!in_range(s, addr, len))
        return NB_ERR_RANGE;
    if (len == 0)
        return NB_OK;
    if (!buf)
        return NB_ERR_INVAL;
    memcpy(dst, s->data + addr, len);
    /* A bad-read sector corrupts every read of it the same way, so the
     * caller's retry cannot paper over it. */
    for (a = addr, end = (uint64_t)addr + len; a < end;
         a = (uint64_t)start + ssize) {
        locate(s, (uint32_t)a, &idx, &start, &ssize);
        if (s->bad[idx] & NB_SIMFLASH_BAD_READ)
            dst[a - addr] ^= 1u;
    }
    return NB_OK;
}

static nb_err sim_prog(void *ctx, uint32_t addr, const void *buf,
                       uint32_t len)
{
    struct nb_simflash *s = ctx;
    uint32_t ws = s->geo.write_size;
    uint64_t op;

    if (s->power_lost)
        return NB_ERR_POWER;
    op = s->ops_since_on++;
    s->stats.ops++;
    s->stats.prog_ops++;
    if (addr % ws || len % ws || !in_range(s, addr, len) || (len && !buf) ||
        !range_erased(s, addr, len)) {
        s->stats.violations++;
        return NB_ERR_INVAL;
    }
    if (cut_fires(s, op)) {
        if (s->cut_torn)
            torn_prog(s, addr, buf, len);
        return NB_ERR_POWER;
    }
    if (range_flags(s, addr, len) & NB_SIMFLASH_BAD_PROG)
        return NB_ERR_IO;
    if (len)
        memcpy(s->data + addr, buf, len);
    s->stats.bytes_written += len;
    return NB_OK;
}

static nb_err sim_erase(void *ctx, uint32_t addr)
{
    struct nb_simflash *s = ctx;
    uint32_t idx, start, ssize;
    uint64_t op;

    if (s->power_lost)
        return NB_ERR_POWER;
    op = s->ops_since_on++;
    s->stats.ops++;
    s->stats.erase_ops++;
    if (addr >= s->size) {
        s->stats.violations++;
        return NB_ERR_INVAL;
    }
    locate(s, addr, &idx, &start, &ssize);
    if (start != addr) {
        s->stats.violations++;
        return NB_ERR_INVAL;
    }
    if (cut_fires(s, op)) {
        if (s->cut_torn) {
            torn_erase(s, start, ssize);
            wear_inc(s, idx); /* the cells were stressed all the same */
        }
        return NB_ERR_POWER;
    }
    if (s->bad[idx] & NB_SIMFLASH_BAD_ERASE)
        return NB_ERR_IO;
    memset(s->data + start, s->geo.erase_value, ssize);
    wear_inc(s, idx);
    return NB_OK;
}

/* Allocate the struct and its bad-sector table for a checked geometry. */
static nb_err sim_new(struct nb_simflash **out,
                      const struct nb_simflash_geometry *g, uint32_t size,
                      uint32_t sectors)
{
    struct nb_simflash *s = calloc(1, sizeof(*s));

    if (!s)
        return NB_ERR_NOMEM;
    s->bad = calloc(sectors, 1);
    if (!s->bad) {
        free(s);
        return NB_ERR_NOMEM;
    }
    s->geo.write_size = g->write_size;
    s->geo.erase_value = g->erase_value;
    s->geo.region_count = g->region_count;
    memcpy(s->geo.regions, g->regions,
           g->region_count * sizeof(g->regions[0]));
    s->size = size;
    s->sectors = sectors;
    s->image_len = image_len(size, sectors);
    *out = s;
    return NB_OK;
}

static void sim_attach(struct nb_simflash *s, uint8_t *image, int mapped)
{
    s->image = image;
    s->mapped = mapped;
    s->data = image + HDR_SIZE;
    s->wear = s->data + s->size;
}

/* Write a fresh header, erase every sector, zero the wear counters. */
static void sim_format(struct nb_simflash *s, const void *user,
                       size_t user_len)
{
    uint8_t *h = s->image;
    uint32_t i;

    memset(h, 0, HDR_SIZE);
    memcpy(h + OFF_MAGIC, magic, sizeof(magic));
    put_le32(h + OFF_VERSION, FMT_VERSION);
    put_le32(h + OFF_HDR_SIZE, HDR_SIZE);
    put_le32(h + OFF_WRITE_SIZE, s->geo.write_size);
    put_le32(h + OFF_ERASE_VALUE, s->geo.erase_value);
    put_le32(h + OFF_REGION_COUNT, s->geo.region_count);
    for (i = 0; i < s->geo.region_count; i++) {
        put_le32(h + OFF_REGIONS + 8u * i, s->geo.regions[i].count);
        put_le32(h + OFF_REGIONS + 8u * i + 4u, s->geo.regions[i].size);
    }
    put_le32(h + OFF_USER_LEN, (uint32_t)user_len);
    if (user_len)
        memcpy(h + OFF_USER, user, user_len);
    memset(s->data, s->geo.erase_value, s->size);
    memset(s->wear, 0, 4u * (size_t)s->sectors);
}

static void sim_free(struct nb_simflash *s)
{
    free(s->bad);
    free(s);
}

nb_err nb_simflash_create_mem(struct nb_simflash **out,
                              const struct nb_simflash_geometry *g)
{
    struct nb_simflash *s;
    uint32_t size, sectors;
    uint8_t *image;
    nb_err err;

    if (!out || !g)
        return NB_ERR_INVAL;
    *out = NULL;
    err = check_geometry(g, &size, &sectors);
    if (err)
        return err;
    if (!image_len(size, sectors))
        return NB_ERR_NOMEM;
    err = sim_new(&s, g, size, sectors);
    if (err)
        return err;
    image = malloc(s->image_len);
    if (!image) {
        sim_free(s);
        return NB_ERR_NOMEM;
    }
    sim_attach(s, image, 0);
    sim_format(s, NULL, 0);
    *out = s;
    return NB_OK;
}

nb_err nb_simflash_create_file(struct nb_simflash **out, const char *path,
                               const struct nb_simflash_geometry *g,
                               const void *user, size_t user_len)
{
    struct nb_simflash *s;
    uint32_t size, sectors;
    void *map;
    nb_err err;
    int fd;

    if (!out || !path || !g || user_len > NB_SIMFLASH_USER_MAX ||
        (user_len && !user))
        return NB_ERR_INVAL;
    *out = NULL;
    err = check_geometry(g, &size, &sectors);
    if (err)
        return err;
    if (!image_len(size, sectors))
        return NB_ERR_NOMEM;
    err = sim_new(&s, g, size, sectors);
    if (err)
        return err;
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        sim_free(s);
        return errno == ENOENT ? NB_ERR_NOENT : NB_ERR_IO;
    }
    if (ftruncate(fd, (off_t)s->image_len) != 0) {
        close(fd);
        sim_free(s);
        return NB_ERR_IO;
    }
    map = mmap(NULL, s->image_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd); /* the mapping keeps the file */
    if (map == MAP_FAILED) {
        sim_free(s);
        return NB_ERR_IO;
    }
    sim_attach(s, map, 1);
    sim_format(s, user, user_len);
    *out = s;
    return NB_OK;
}

/* Parse and check a header read from a file; the file's length must be
 * exactly what the geometry implies, so a truncated or padded file is
 * refused before anything is mapped (a short mapping would SIGBUS). */
static nb_err parse_header(const uint8_t *h, uint64_t file_len,
                           struct nb_simflash_geometry *g, uint32_t *size,
                           uint32_t *sectors)
{
    uint32_t ev, i;

    if (memcmp(h + OFF_MAGIC, magic, sizeof(magic)) != 0 ||
        get_le32(h + OFF_VERSION) != FMT_VERSION ||
        get_le32(h + OFF_HDR_SIZE) != HDR_SIZE)
        return NB_ERR_CORRUPT;
    memset(g, 0, sizeof(*g));
    g->write_size = get_le32(h + OFF_WRITE_SIZE);
    ev = get_le32(h + OFF_ERASE_VALUE);
    if (ev != 0xFF && ev != 0x00)
        return NB_ERR_CORRUPT; /* checked before narrowing to u8 */
    g->erase_value = (uint8_t)ev;
    g->region_count = get_le32(h + OFF_REGION_COUNT);
    for (i = 0; i < NB_FLASH_MAX_REGIONS && i < g->region_count; i++) {
        g->regions[i].count = get_le32(h + OFF_REGIONS + 8u * i);
        g->regions[i].size = get_le32(h + OFF_REGIONS + 8u * i + 4u);
    }
    if (check_geometry(g, size, sectors) != NB_OK)
        return NB_ERR_CORRUPT;
    if (get_le32(h + OFF_USER_LEN) > NB_SIMFLASH_USER_MAX)
        return NB_ERR_CORRUPT;
    if (file_len != (uint64_t)HDR_SIZE + *size + 4u * (uint64_t)*sectors)
        return NB_ERR_CORRUPT;
    return NB_OK;
}

nb_err nb_simflash_open_file(struct nb_simflash **out, const char *path)
{
    struct nb_simflash_geometry g;
    struct nb_simflash *s = NULL;
    uint8_t hdr[HDR_SIZE];
    uint32_t size, sectors;
    struct stat st;
    void *map;
    nb_err err;
    int fd;

    if (!out || !path)
        return NB_ERR_INVAL;
    *out = NULL;
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? NB_ERR_NOENT : NB_ERR_IO;
    if (fstat(fd, &st) != 0) {
        err = NB_ERR_IO;
        goto out;
    }
    /* Not a regular file (a FIFO would block, a device has no length):
     * not one of ours. */
    if (!S_ISREG(st.st_mode) || st.st_size < (off_t)HDR_SIZE) {
        err = NB_ERR_CORRUPT;
        goto out;
    }
    if (pread(fd, hdr, HDR_SIZE, 0) != (ssize_t)HDR_SIZE) {
        err = NB_ERR_IO;
        goto out;
    }
    err = parse_header(hdr, (uint64_t)st.st_size, &g, &size, &sectors);
    if (err)
        goto out;
    if (!image_len(size, sectors)) {
        err = NB_ERR_NOMEM;
        goto out;
    }
    err = sim_new(&s, &g, size, sectors);
    if (err)
        goto out;
    map = mmap(NULL, s->image_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        sim_free(s);
        err = NB_ERR_IO;
        goto out;
    }
    sim_attach(s, map, 1);
    *out = s;
    err = NB_OK;
out:
    close(fd);
    return err;
}

void nb_simflash_close(struct nb_simflash *s)
{
    if (!s)
        return;
    if (s->mapped) {
        /* Best effort: close has no error path, and the kernel writes
         * the pages back anyway; msync only makes it happen now. */
        (void)msync(s->image, s->image_len, MS_SYNC);
        (void)munmap(s->image, s->image_len);
    } else {
        free(s->image);
    }
    sim_free(s);
}

void nb_simflash_interface(struct nb_simflash *s, struct nb_flash *f)
{
    memset(f, 0, sizeof(*f));
    f->ctx = s;
    f->read = sim_read;
    f->prog = sim_prog;
    f->erase = sim_erase;
    f->write_size = s->geo.write_size;
    f->erase_value = s->geo.erase_value;
    f->region_count = s->geo.region_count;
    memcpy(f->regions, s->geo.regions, sizeof(f->regions));
}

const struct nb_simflash_geometry *nb_simflash_geometry(
    const struct nb_simflash *s)
{
    return &s->geo;
}

const void *nb_simflash_user(const struct nb_simflash *s, size_t *len)
{
    if (len)
        *len = get_le32(s->image + OFF_USER_LEN);
    return s->image + OFF_USER;
}

uint32_t nb_simflash_size(const struct nb_simflash *s)
{
    return s->size;
}

uint32_t nb_simflash_sector_count(const struct nb_simflash *s)
{
    return s->sectors;
}

uint8_t *nb_simflash_data(struct nb_simflash *s)
{
    return s->data;
}

static int same_geometry(const struct nb_simflash_geometry *a,
                         const struct nb_simflash_geometry *b)
{
    uint32_t i;

    if (a->write_size != b->write_size || a->erase_value != b->erase_value ||
        a->region_count != b->region_count)
        return 0;
    for (i = 0; i < a->region_count; i++)
        if (a->regions[i].count != b->regions[i].count ||
            a->regions[i].size != b->regions[i].size)
            return 0;
    return 1;
}

nb_err nb_simflash_copy_from(struct nb_simflash *dst,
                             const struct nb_simflash *src)
{
    if (!dst || !src || !same_geometry(&dst->geo, &src->geo))
        return NB_ERR_INVAL;
    if (dst != src) {
        memcpy(dst->data, src->data, dst->size);
        memcpy(dst->wear, src->wear, 4u * (size_t)dst->sectors);
    }
    memset(dst->bad, 0, dst->sectors);
    dst->cut_armed = 0;
    dst->power_lost = 0;
    dst->ops_since_on = 0;
    return NB_OK;
}

void nb_simflash_seed(struct nb_simflash *s, uint64_t seed)
{
    s->rng = seed;
}

void nb_simflash_cut_at(struct nb_simflash *s, uint64_t op, int torn)
{
    s->cut_armed = 1;
    s->cut_op = op;
    s->cut_torn = torn != 0;
}

void nb_simflash_disarm(struct nb_simflash *s)
{
    s->cut_armed = 0;
}

int nb_simflash_power_lost(const struct nb_simflash *s)
{
    return s->power_lost;
}

void nb_simflash_power_on(struct nb_simflash *s)
{
    s->power_lost = 0;
    s->cut_armed = 0;
    s->ops_since_on = 0;
}

nb_err nb_simflash_set_bad(struct nb_simflash *s, uint32_t addr,
                           unsigned flags)
{
    uint32_t idx, start, ssize;

    if (flags & ~(unsigned)(NB_SIMFLASH_BAD_PROG | NB_SIMFLASH_BAD_ERASE |
                            NB_SIMFLASH_BAD_READ))
        return NB_ERR_INVAL;
    if (addr >= s->size)
        return NB_ERR_RANGE;
    locate(s, addr, &idx, &start, &ssize);
    s->bad[idx] = (uint8_t)flags;
    return NB_OK;
}

nb_err nb_simflash_flip_bit(struct nb_simflash *s, uint32_t addr,
                            unsigned bit)
{
    if (bit > 7)
        return NB_ERR_INVAL;
    if (addr >= s->size)
        return NB_ERR_RANGE;
    s->data[addr] ^= (uint8_t)(1u << bit);
    return NB_OK;
}

void nb_simflash_stats(const struct nb_simflash *s,
                       struct nb_simflash_stats *out)
{
    *out = s->stats;
}

void nb_simflash_reset_stats(struct nb_simflash *s)
{
    memset(&s->stats, 0, sizeof(s->stats));
}

uint32_t nb_simflash_erase_count(const struct nb_simflash *s,
                                 uint32_t sector_index)
{
    if (sector_index >= s->sectors)
        return 0;
    return get_le32(s->wear + 4u * (size_t)sector_index);
}
