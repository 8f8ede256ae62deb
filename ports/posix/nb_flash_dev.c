/* nb_flash_dev.c - the flash of a Linux-class device: an MTD character
 * device, or a block device or plain file; see nb_flash_dev.h.
 *
 * Every access is checked against the geometry first (bounds, alignment),
 * so the device only ever sees requests a NOR part would accept; the rest
 * is a thin layer over pread, pwrite, the MTD ioctls and fdatasync that
 * turns every OS failure into an nb_err.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_CLOEXEC, pread/pwrite, fdatasync */
#endif

#include "nb_flash_dev.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/fs.h>       /* BLKGETSIZE64 */
#include <mtd/mtd-user.h>   /* MEMGETINFO, MEMERASE, ECCGETSTATS */

#define DEFAULT_SECTOR 4096u
#define DEFAULT_WRITE 8u
#define MAX_SECTOR (1u << 30)
#define CHUNK 4096u /* stack buffer for erase (block) and the erased check */
#define EUCLEAN_RETRIES 3

/* ------------------------------------------------------------ helpers */

static nb_err os_err(int e)
{
    switch (e) {
    case ENOENT:
    case ENXIO:
    case ENODEV:
        return NB_ERR_NOENT;
    case EACCES:
    case EPERM:
    case EROFS:
    case EBUSY: /* a block device opened O_EXCL while mounted */
        return NB_ERR_DENIED;
    default:
        return NB_ERR_IO;
    }
}

/* Start and size of the sector holding `addr` (addr < d->size). */
static void locate(const struct nb_flash_dev *d, uint32_t addr,
                   uint32_t *start, uint32_t *size)
{
    uint32_t base = 0;
    for (uint32_t i = 0; i < d->region_count; i++) {
        uint32_t span = d->regions[i].count * d->regions[i].size;
        if (addr - base < span) {
            *start = base + (addr - base) / d->regions[i].size *
                                d->regions[i].size;
            *size = d->regions[i].size;
            return;
        }
        base += span;
    }
    *start = *size = 0; /* not reached: callers check addr < size */
}

static int in_range(const struct nb_flash_dev *d, uint32_t addr,
                    uint32_t len)
{
    return (uint64_t)addr + len <= d->size;
}

/* Read exactly `len` bytes at `off`. A -1 return delivers no data whatever
 * errno says, so EUCLEAN (corrected bit flips: the data is good) is read
 * again; EBADMSG (uncorrectable), EIO and the rest are NB_ERR_IO, and so
 * is an end of file before `len` (a file that shrank). */
static nb_err read_full(int fd, uint64_t off, uint8_t *p, uint32_t len)
{
    int clean_retries = 0;
    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EUCLEAN && clean_retries++ < EUCLEAN_RETRIES)
                continue;
            return NB_ERR_IO;
        }
        if (n == 0)
            return NB_ERR_IO;
        p += n;
        off += (uint64_t)n;
        len -= (uint32_t)n;
    }
    return NB_OK;
}

static nb_err write_full(int fd, uint64_t off, const uint8_t *p, uint32_t len)
{
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return NB_ERR_IO; /* EIO, ENOSPC, EFBIG, ... */
        }
        if (n == 0)
            return NB_ERR_IO;
        p += n;
        off += (uint64_t)n;
        len -= (uint32_t)n;
    }
    return NB_OK;
}

/* Block/file: make the last write durable (unless a test said no). */
static nb_err sync_dev(const struct nb_flash_dev *d)
{
    if (d->type != NB_FLASH_DEV_BLOCK || d->no_sync)
        return NB_OK;
    while (fdatasync(d->fd) != 0) {
        if (errno != EINTR)
            return NB_ERR_IO;
    }
    return NB_OK;
}

/* ---------------------------------------------------------- callbacks */

static nb_err dev_read(void *ctx, uint32_t addr, void *buf, uint32_t len)
{
    struct nb_flash_dev *d = ctx;
    struct mtd_ecc_stats before, after;
    if (!d->is_open)
        return NB_ERR_STATE;
    if (!in_range(d, addr, len))
        return NB_ERR_RANGE;
    if (len == 0)
        return NB_OK;
    if (!buf)
        return NB_ERR_INVAL;
    int ecc = d->type == NB_FLASH_DEV_MTD && d->have_ecc &&
              ioctl(d->fd, ECCGETSTATS, &before) == 0;
    nb_err err = read_full(d->fd, addr, buf, len);
    if (err)
        return err;
    /* mtdchar hands out data with an uncorrectable ECC error and returns
     * success; only the counter tells. Corrected flips are fine. */
    if (ecc && ioctl(d->fd, ECCGETSTATS, &after) == 0 &&
        after.failed != before.failed)
        return NB_ERR_IO;
    return NB_OK;
}

/* Block/file with check_erased: does [addr, addr+len) read as erased? */
static nb_err check_erased(const struct nb_flash_dev *d, uint32_t addr,
                           uint32_t len)
{
    uint8_t buf[CHUNK];
    while (len) {
        uint32_t n = len < CHUNK ? len : CHUNK;
        nb_err err = read_full(d->fd, addr, buf, n);
        if (err)
            return err;
        for (uint32_t i = 0; i < n; i++)
            if (buf[i] != d->erase_value)
                return NB_ERR_INVAL;
        addr += n;
        len -= n;
    }
    return NB_OK;
}

static nb_err dev_prog(void *ctx, uint32_t addr, const void *buf,
                       uint32_t len)
{
    struct nb_flash_dev *d = ctx;
    if (!d->is_open)
        return NB_ERR_STATE;
    if (!in_range(d, addr, len))
        return NB_ERR_RANGE;
    if (addr % d->write_size || len % d->write_size || (len && !buf))
        return NB_ERR_INVAL;
    if (len == 0)
        return NB_OK;
    nb_err err;
    if (d->type == NB_FLASH_DEV_BLOCK && d->check_erased &&
        (err = check_erased(d, addr, len)) != NB_OK)
        return err;
    if ((err = write_full(d->fd, addr, buf, len)) != NB_OK)
        return err;
    return sync_dev(d);
}

static nb_err dev_erase(void *ctx, uint32_t addr)
{
    struct nb_flash_dev *d = ctx;
    uint32_t start, size;
    if (!d->is_open)
        return NB_ERR_STATE;
    if (addr >= d->size)
        return NB_ERR_RANGE;
    locate(d, addr, &start, &size);
    if (start != addr)
        return NB_ERR_INVAL;
    if (d->type == NB_FLASH_DEV_MTD) {
        struct erase_info_user e = {addr, size};
        while (ioctl(d->fd, MEMERASE, &e) != 0) {
            if (errno != EINTR)
                return NB_ERR_IO;
        }
        return NB_OK;
    }
    uint8_t buf[CHUNK];
    memset(buf, d->erase_value, sizeof(buf));
    for (uint32_t done = 0; done < size;) {
        uint32_t n = size - done < CHUNK ? size - done : CHUNK;
        nb_err err = write_full(d->fd, (uint64_t)addr + done, buf, n);
        if (err)
            return err;
        done += n;
    }
    return sync_dev(d);
}

/* --------------------------------------------------------------- open */

/* Fail the open with `err`, saying why (a string literal). */
#define FAIL(err, text)                                                   \
    do {                                                                  \
        d->why = (text);                                                  \
        return (err);                                                     \
    } while (0)

/* Keep the whole sectors of d->regions that fit below `limit` bytes and
 * below 4 GiB. Returns the bytes kept. */
static uint64_t trim(struct nb_flash_dev *d, uint64_t limit)
{
    uint64_t base = 0;
    uint32_t n = 0;
    if (limit > 0xFFFFFFFFu)
        limit = 0xFFFFFFFFu;
    for (uint32_t i = 0; i < d->region_count; i++) {
        uint64_t room = limit - base, sz = d->regions[i].size;
        uint64_t all = d->regions[i].count, cnt = all;
        if (cnt > room / sz)
            cnt = room / sz;
        if (cnt == 0)
            break;
        d->regions[i].count = (uint32_t)cnt;
        base += cnt * sz;
        n = i + 1;
        if (cnt < all)
            break;
    }
    for (uint32_t i = n; i < NB_FLASH_MAX_REGIONS; i++)
        d->regions[i] = (struct nb_flash_region){0, 0};
    d->region_count = n;
    return base;
}

static int pow2_write(uint32_t ws)
{
    return ws >= 1 && ws <= NB_FLASH_MAX_WRITE && (ws & (ws - 1)) == 0;
}

static nb_err setup_mtd(struct nb_flash_dev *d, const struct mtd_info_user *mi)
{
    switch (mi->type) {
    case MTD_NORFLASH:
    case MTD_RAM:
    case MTD_DATAFLASH:
        break;
    default: /* NAND, MLC NAND, UBI volumes, ROM, absent */
        FAIL(NB_ERR_UNSUPPORTED, "an MTD of a type the core cannot drive "
             "(NAND, UBI, ROM): only NOR, RAM and DataFlash");
    }
    if (!(mi->flags & MTD_WRITEABLE))
        FAIL(NB_ERR_UNSUPPORTED, "a read-only MTD");
    d->mtd_type = mi->type;
    d->write_size = mi->writesize ? mi->writesize : 1;
    d->erase_value = 0xFF;
    if (!pow2_write(d->write_size))
        FAIL(NB_ERR_UNSUPPORTED, "the MTD's writesize is not a power of two "
             "up to 32");
    d->dev_size = mi->size;
    int nreg = 0;
    if (ioctl(d->fd, MEMGETREGIONCOUNT, &nreg) != 0 || nreg <= 0) {
        if (mi->erasesize == 0 || mi->erasesize % d->write_size)
            FAIL(NB_ERR_UNSUPPORTED, "the MTD's erasesize is not a "
                 "multiple of its writesize");
        d->region_count = 1;
        d->regions[0].size = mi->erasesize;
        d->regions[0].count = mi->size / mi->erasesize;
        return NB_OK;
    }
    /* Mixed sector sizes (boot-block NOR): the driver's erase regions, in
     * address order, adjacent ones of one size merged. */
    uint64_t base = 0;
    d->region_count = 0;
    for (int i = 0; i < nreg; i++) {
        struct region_info_user r;
        memset(&r, 0, sizeof(r));
        r.regionindex = (uint32_t)i;
        if (ioctl(d->fd, MEMGETREGIONINFO, &r) != 0)
            FAIL(NB_ERR_IO, "MEMGETREGIONINFO failed");
        if (r.offset != base || r.erasesize == 0 || r.numblocks == 0 ||
            r.erasesize % d->write_size)
            FAIL(NB_ERR_UNSUPPORTED, "the MTD's erase regions are not "
                 "contiguous whole sectors");
        struct nb_flash_region *last =
            d->region_count ? &d->regions[d->region_count - 1] : NULL;
        if (last && last->size == r.erasesize) {
            last->count += r.numblocks;
        } else {
            if (d->region_count == NB_FLASH_MAX_REGIONS)
                FAIL(NB_ERR_UNSUPPORTED, "the MTD has more erase regions "
                     "than NB_FLASH_MAX_REGIONS");
            d->regions[d->region_count].size = r.erasesize;
            d->regions[d->region_count].count = r.numblocks;
            d->region_count++;
        }
        base += (uint64_t)r.erasesize * r.numblocks;
    }
    if (base != mi->size)
        FAIL(NB_ERR_UNSUPPORTED, "the MTD's erase regions do not cover it");
    return NB_OK;
}

static nb_err setup_block(struct nb_flash_dev *d,
                          const struct nb_flash_dev_config *cfg,
                          const struct stat *st)
{
    uint32_t sector = cfg->sector_size ? cfg->sector_size : DEFAULT_SECTOR;
    d->write_size = cfg->write_size ? cfg->write_size : DEFAULT_WRITE;
    d->erase_value = cfg->erased_zero ? 0x00 : 0xFF;
    if (!pow2_write(d->write_size))
        FAIL(NB_ERR_INVAL, "write_size is not 1, 2, 4, 8, 16 or 32");
    if (sector > MAX_SECTOR || sector % d->write_size)
        FAIL(NB_ERR_INVAL, "sector_size is not a multiple of write_size "
             "(up to 1 GiB)");
    if (S_ISREG(st->st_mode)) {
        d->is_file = 1;
        d->dev_size = (uint64_t)st->st_size;
    } else {
        uint64_t bytes = 0;
        if (ioctl(d->fd, BLKGETSIZE64, &bytes) != 0)
            FAIL(NB_ERR_IO, "BLKGETSIZE64 failed");
        d->dev_size = bytes;
    }
    d->region_count = 1;
    d->regions[0].size = sector;
    uint64_t count = d->dev_size / sector;
    d->regions[0].count = count > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)count;
    return NB_OK;
}

static nb_err open_dev(struct nb_flash_dev *d,
                       const struct nb_flash_dev_config *cfg)
{
    struct stat st;
    int blockish = cfg->sector_size || cfg->write_size || cfg->erased_zero ||
                   cfg->check_erased || cfg->no_sync;
    if (stat(cfg->path, &st) != 0)
        FAIL(os_err(errno), errno == ENOENT ? "no such file or device"
                                            : "cannot stat the path");
    if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode) && !S_ISREG(st.st_mode))
        FAIL(NB_ERR_UNSUPPORTED, "neither a character device, a block "
             "device nor a regular file");
    if (cfg->type == NB_FLASH_DEV_MTD && !S_ISCHR(st.st_mode))
        FAIL(NB_ERR_INVAL, "type MTD, but not a character device");
    /* An MTD overwritten without erase: never. */
    if (cfg->type == NB_FLASH_DEV_BLOCK && S_ISCHR(st.st_mode))
        FAIL(NB_ERR_INVAL, "type block, but a character device");
    /* O_EXCL on a block device: refused while it is mounted or claimed. */
    int flags = O_RDWR | O_CLOEXEC | (S_ISBLK(st.st_mode) ? O_EXCL : 0);
    int fd = open(cfg->path, flags);
    if (fd < 0)
        FAIL(os_err(errno), errno == EBUSY ? "in use (mounted?)"
                                           : "cannot open it read-write");
    d->fd = fd;
    d->is_open = 1;
    struct stat st2;
    if (fstat(fd, &st2) != 0)
        FAIL(NB_ERR_IO, "fstat failed");
    if ((st2.st_mode & S_IFMT) != (st.st_mode & S_IFMT))
        FAIL(NB_ERR_IO, "replaced between stat and open");
    if (S_ISCHR(st2.st_mode)) {
        struct mtd_info_user mi;
        memset(&mi, 0, sizeof(mi));
        if (ioctl(fd, MEMGETINFO, &mi) != 0)
            FAIL(cfg->type == NB_FLASH_DEV_MTD ? NB_ERR_INVAL
                                               : NB_ERR_UNSUPPORTED,
                 "a character device that is not an MTD (MEMGETINFO)");
        if (blockish)
            FAIL(NB_ERR_INVAL, "block/file settings given for an MTD");
        d->type = NB_FLASH_DEV_MTD;
        nb_err err = setup_mtd(d, &mi);
        if (err)
            return err;
        struct mtd_ecc_stats es;
        d->have_ecc = ioctl(fd, ECCGETSTATS, &es) == 0;
        return NB_OK;
    }
    d->type = NB_FLASH_DEV_BLOCK;
    d->no_sync = cfg->no_sync ? 1 : 0;
    d->check_erased = cfg->check_erased ? 1 : 0;
    return setup_block(d, cfg, &st2);
}

nb_err nb_flash_dev_open(struct nb_flash_dev *d,
                         const struct nb_flash_dev_config *cfg,
                         struct nb_flash *out)
{
    if (!d || !cfg || !out)
        return NB_ERR_INVAL;
    memset(d, 0, sizeof(*d));
    d->fd = -1;
    if (!cfg->path || !cfg->path[0]) {
        d->why = "no path";
        return NB_ERR_INVAL;
    }
    if (cfg->type > NB_FLASH_DEV_BLOCK) {
        d->why = "unknown type";
        return NB_ERR_INVAL;
    }
    nb_err err = open_dev(d, cfg);
    if (!err) {
        if (cfg->size > d->dev_size) {
            err = NB_ERR_INVAL;
            d->why = "size is larger than the device";
        } else {
            uint64_t kept = trim(d, cfg->size ? cfg->size : d->dev_size);
            if (kept == 0) {
                err = NB_ERR_INVAL;
                d->why = "the device is smaller than one sector";
            } else if (cfg->size && kept != cfg->size) {
                err = NB_ERR_INVAL;
                d->why = "size is not whole sectors, or above 4 GiB";
            }
            d->size = (uint32_t)kept;
        }
    }
    if (!err) {
        memset(out, 0, sizeof(*out));
        out->ctx = d;
        out->read = dev_read;
        out->prog = dev_prog;
        out->erase = dev_erase;
        out->write_size = d->write_size;
        out->erase_value = d->erase_value;
        out->region_count = d->region_count;
        memcpy(out->regions, d->regions, sizeof(out->regions));
        if ((err = nb_flash_check(out)) != NB_OK)
            d->why = "the geometry fails nb_flash_check";
    }
    if (err)
        nb_flash_dev_close(d);
    return err;
}

#undef FAIL

void nb_flash_dev_close(struct nb_flash_dev *d)
{
    if (!d || !d->is_open)
        return;
    close(d->fd);
    d->fd = -1;
    d->is_open = 0;
}

const char *nb_flash_dev_why(const struct nb_flash_dev *d)
{
    return d->why ? d->why : "";
}

const char *nb_flash_dev_type_name(const struct nb_flash_dev *d)
{
    if (!d->is_open)
        return "closed";
    if (d->type == NB_FLASH_DEV_MTD)
        return "mtd";
    return d->is_file ? "file" : "block";
}
