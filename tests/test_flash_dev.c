/* test_flash_dev.c - the Linux device flash port (ports/posix/nb_flash_dev).
 *
 * Block backend, on a plain file in a temporary directory, over several
 * flash shapes (sector 512 B to 64 KiB, write size 1 to 32, erased 0xFF
 * and 0x00): erase/program/read round trips that land in the file, every
 * bounds and alignment error, the open errors; then a full core cycle on
 * it (provision a layout from nb_layout_plan, install a test package,
 * boot it on trial, confirm, reopen as after a reset; a second update not
 * confirmed reverts), with check_erased on, so a program of a unit that is
 * not erased would fail the test. The agent's --provision is run on a
 * file too (when NOBRICK_BUILD has nobrick-agent).
 *
 * MTD: only against the kernel's mtdram test device (a RAM-backed MTD),
 * never a real flash partition: an existing /dev/mtdN whose sysfs name is
 * "mtdram test device", else after `modprobe mtdram total_size=1024
 * erase_size=16` (root). When that is not possible the MTD test says why
 * and is skipped; nothing stands in for the kernel.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nb_boot.h"
#include "nb_crypto_openssl.h"
#include "nb_flash_dev.h"
#include "nb_install.h"
#include "nb_testpkg.h"

#define BUF 4096u

static char tmpdir[256];

static void path_in_tmp(char *out, size_t cap, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", tmpdir, name);
    assert_true(n > 0 && (size_t)n < cap);
}

/* A file of `size` bytes (zeros), replaced if there. */
static void make_file(const char *path, uint64_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    close(fd);
}

/* Bytes of the file itself, read without the port. */
static void file_bytes(const char *path, uint64_t off, void *buf, size_t len)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void fill(uint8_t *p, uint32_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (uint32_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

static int setup(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/nb_flash_dev.XXXXXX",
             base && base[0] ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    DIR *dir = opendir(tmpdir);
    struct dirent *e;
    char p[512];
    while (dir && (e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    if (dir)
        closedir(dir);
    rmdir(tmpdir);
    return 0;
}

/* ------------------------------------------------------------ shapes */

struct shape {
    uint32_t sector, write, sectors;
    uint8_t erased_zero;
};

static const struct shape shapes[] = {
    {4096, 8, 16, 0},   {512, 1, 64, 0},   {4096, 32, 16, 1},
    {65536, 16, 4, 0},  {1024, 2, 32, 1},  {2048, 4, 16, 0},
};
#define NSHAPES (sizeof(shapes) / sizeof(shapes[0]))

static void open_shape(const struct shape *s, const char *path,
                       struct nb_flash_dev *d, struct nb_flash *f)
{
    struct nb_flash_dev_config c;
    memset(&c, 0, sizeof(c));
    c.path = path;
    c.sector_size = s->sector;
    c.write_size = s->write;
    c.erased_zero = s->erased_zero;
    c.check_erased = 1;
    assert_int_equal(nb_flash_dev_open(d, &c, f), NB_OK);
}

/* Erase, program and read on one shape; the bytes are in the file. */
static void roundtrip_shape(const struct shape *s)
{
    char path[512];
    struct nb_flash_dev d;
    struct nb_flash f;
    uint8_t ev = s->erased_zero ? 0x00 : 0xFF;
    uint32_t size = s->sector * s->sectors;
    uint8_t *w = malloc(size), *r = malloc(size);
    assert_non_null(w);
    assert_non_null(r);
    path_in_tmp(path, sizeof(path), "rt.img");
    /* A partial sector at the end is not used. */
    make_file(path, (uint64_t)size + s->sector / 2);
    open_shape(s, path, &d, &f);
    assert_string_equal(nb_flash_dev_type_name(&d), "file");
    assert_int_equal(nb_flash_check(&f), NB_OK);
    assert_int_equal(nb_flash_size(&f), size);
    assert_int_equal(f.write_size, s->write);
    assert_int_equal(f.erase_value, ev);
    assert_int_equal(f.region_count, 1);
    assert_int_equal(f.regions[0].size, s->sector);

    for (uint32_t a = 0; a < size; a += s->sector)
        assert_int_equal(f.erase(f.ctx, a), NB_OK);
    assert_int_equal(f.read(f.ctx, 0, r, size), NB_OK);
    for (uint32_t i = 0; i < size; i++)
        if (r[i] != ev)
            fail_msg("byte %u not erased after erase", i);

    /* Program in uneven pieces (multiples of the write size). */
    fill(w, size, s->sector + s->write);
    for (uint32_t a = 0, k = 1; a < size; k++) {
        uint32_t n = s->write * (k % 7 + 1) * 3;
        if (n > size - a)
            n = size - a;
        assert_int_equal(f.prog(f.ctx, a, w + a, n), NB_OK);
        a += n;
    }
    assert_int_equal(f.read(f.ctx, 0, r, size), NB_OK);
    assert_memory_equal(r, w, size);
    /* Unaligned reads are fine. */
    assert_int_equal(f.read(f.ctx, 3, r, 17), NB_OK);
    assert_memory_equal(r, w + 3, 17);
    assert_int_equal(f.read(f.ctx, size - 1, r, 1), NB_OK);
    assert_int_equal(r[0], w[size - 1]);
    assert_int_equal(f.read(f.ctx, size, r, 0), NB_OK);

    /* The bytes are in the file, not only behind the port. */
    file_bytes(path, 0, r, size);
    assert_memory_equal(r, w, size);

    /* Erasing one sector touches only that sector. */
    assert_int_equal(f.erase(f.ctx, s->sector), NB_OK);
    nb_flash_dev_close(&d);
    open_shape(s, path, &d, &f); /* reopened, as after a reset */
    assert_int_equal(f.read(f.ctx, 0, r, size), NB_OK);
    assert_memory_equal(r, w, s->sector);
    for (uint32_t i = s->sector; i < 2 * s->sector; i++)
        if (r[i] != ev)
            fail_msg("byte %u not erased", i);
    assert_memory_equal(r + 2 * s->sector, w + 2 * s->sector,
                        size - 2 * s->sector);
    nb_flash_dev_close(&d);
    nb_flash_dev_close(&d); /* twice is fine */
    free(w);
    free(r);
}

static void block_roundtrip(void **state)
{
    (void)state;
    for (unsigned i = 0; i < NSHAPES; i++)
        roundtrip_shape(&shapes[i]);
}

/* ------------------------------------------------------------ errors */

static void block_access_errors(void **state)
{
    (void)state;
    char path[512];
    struct nb_flash_dev d;
    struct nb_flash f;
    const struct shape s = {4096, 8, 4, 0};
    uint8_t b[64], before[64];
    path_in_tmp(path, sizeof(path), "err.img");
    make_file(path, 4 * 4096);
    open_shape(&s, path, &d, &f);
    memset(b, 0xA5, sizeof(b));

    /* Bounds: NB_ERR_RANGE, including 32-bit wrap-around. */
    assert_int_equal(f.read(f.ctx, 4 * 4096, b, 1), NB_ERR_RANGE);
    assert_int_equal(f.read(f.ctx, 4 * 4096 - 8, b, 16), NB_ERR_RANGE);
    assert_int_equal(f.read(f.ctx, 0xFFFFFFF0u, b, 32), NB_ERR_RANGE);
    assert_int_equal(f.prog(f.ctx, 4 * 4096, b, 8), NB_ERR_RANGE);
    assert_int_equal(f.prog(f.ctx, 0xFFFFFFF8u, b, 16), NB_ERR_RANGE);
    assert_int_equal(f.erase(f.ctx, 4 * 4096), NB_ERR_RANGE);
    assert_int_equal(f.erase(f.ctx, 0xFFFFFFFFu), NB_ERR_RANGE);
    assert_int_equal(f.read(f.ctx, 0, NULL, 8), NB_ERR_INVAL);

    /* Alignment: NB_ERR_INVAL, nothing written. */
    assert_int_equal(f.erase(f.ctx, 0), NB_OK);
    assert_int_equal(f.prog(f.ctx, 4, b, 8), NB_ERR_INVAL);
    assert_int_equal(f.prog(f.ctx, 8, b, 12), NB_ERR_INVAL);
    assert_int_equal(f.prog(f.ctx, 8, NULL, 8), NB_ERR_INVAL);
    assert_int_equal(f.erase(f.ctx, 100), NB_ERR_INVAL);
    assert_int_equal(f.erase(f.ctx, 4096 + 4095), NB_ERR_INVAL);
    file_bytes(path, 0, before, sizeof(before));
    for (unsigned i = 0; i < sizeof(before); i++)
        assert_int_equal(before[i], 0xFF);

    /* check_erased: a unit that is not erased is refused, unchanged. */
    assert_int_equal(f.prog(f.ctx, 16, b, 8), NB_OK);
    uint8_t other[8];
    memset(other, 0x0F, sizeof(other));
    assert_int_equal(f.prog(f.ctx, 8, other, 16), NB_ERR_INVAL);
    assert_int_equal(f.prog(f.ctx, 16, other, 8), NB_ERR_INVAL);
    file_bytes(path, 0, before, 32);
    assert_memory_equal(before + 16, b, 8);
    for (unsigned i = 0; i < 16; i++)
        assert_int_equal(before[i], 0xFF);
    /* The sector of the file that was never erased is zeros: refused. */
    assert_int_equal(f.prog(f.ctx, 3 * 4096, b, 8), NB_ERR_INVAL);

    /* A zero-length program is fine anywhere aligned. */
    assert_int_equal(f.prog(f.ctx, 4 * 4096, b, 0), NB_OK);

    /* Closed: NB_ERR_STATE. */
    nb_flash_dev_close(&d);
    assert_int_equal(f.read(f.ctx, 0, b, 8), NB_ERR_STATE);
    assert_int_equal(f.prog(f.ctx, 0, b, 8), NB_ERR_STATE);
    assert_int_equal(f.erase(f.ctx, 0), NB_ERR_STATE);
}

static nb_err try_open(const char *path, uint8_t type, uint32_t sector,
                       uint32_t ws, uint64_t size)
{
    struct nb_flash_dev d;
    struct nb_flash f;
    struct nb_flash_dev_config c;
    memset(&c, 0, sizeof(c));
    c.path = path;
    c.type = type;
    c.sector_size = sector;
    c.write_size = ws;
    c.size = size;
    nb_err err = nb_flash_dev_open(&d, &c, &f);
    if (!err)
        nb_flash_dev_close(&d);
    assert_false(d.is_open);
    /* A failure says why; a success says nothing. */
    assert_int_equal(nb_flash_dev_why(&d)[0] != '\0', err != NB_OK);
    return err;
}

static void block_open_errors(void **state)
{
    (void)state;
    char path[512], small[512], missing[512];
    struct nb_flash_dev d;
    struct nb_flash f;
    struct nb_flash_dev_config c;
    path_in_tmp(path, sizeof(path), "open.img");
    path_in_tmp(small, sizeof(small), "small.img");
    path_in_tmp(missing, sizeof(missing), "missing.img");
    make_file(path, 8 * 4096);
    make_file(small, 4095);

    assert_int_equal(try_open(path, 0, 0, 0, 0), NB_OK); /* defaults */
    assert_int_equal(try_open(missing, 0, 0, 0, 0), NB_ERR_NOENT);
    assert_int_equal(try_open(path, 0, 4096, 3, 0), NB_ERR_INVAL);
    assert_int_equal(try_open(path, 0, 4096, 64, 0), NB_ERR_INVAL);
    assert_int_equal(try_open(path, 0, 4100, 8, 0), NB_ERR_INVAL);
    assert_int_equal(try_open(path, 0, 4096, 8, 9 * 4096), NB_ERR_INVAL);
    assert_int_equal(try_open(path, 0, 4096, 8, 3 * 4096 + 8),
                     NB_ERR_INVAL);
    assert_int_equal(try_open(small, 0, 4096, 8, 0), NB_ERR_INVAL);
    assert_int_equal(try_open(path, 9, 0, 0, 0), NB_ERR_INVAL);
    /* A regular file is no MTD. */
    assert_int_equal(try_open(path, NB_FLASH_DEV_MTD, 0, 0, 0), NB_ERR_INVAL);
    /* A directory, and a character device that is not an MTD. */
    assert_int_equal(try_open(tmpdir, 0, 0, 0, 0), NB_ERR_UNSUPPORTED);
    assert_int_equal(try_open("/dev/null", 0, 0, 0, 0), NB_ERR_UNSUPPORTED);
    assert_int_equal(try_open("/dev/null", NB_FLASH_DEV_BLOCK, 0, 0, 0),
                     NB_ERR_INVAL);
    assert_int_equal(try_open("", 0, 0, 0, 0), NB_ERR_INVAL);
    memset(&c, 0, sizeof(c));
    assert_int_equal(nb_flash_dev_open(&d, &c, &f), NB_ERR_INVAL);
    assert_int_equal(nb_flash_dev_open(&d, NULL, &f), NB_ERR_INVAL);
    /* Read-only for us: NB_ERR_DENIED (root may write anything). */
    if (geteuid() != 0) {
        assert_int_equal(chmod(path, 0400), 0);
        assert_int_equal(try_open(path, 0, 0, 0, 0), NB_ERR_DENIED);
        assert_int_equal(chmod(path, 0600), 0);
    }

    /* size: a prefix of whole sectors. */
    memset(&c, 0, sizeof(c));
    c.path = path;
    c.size = 3 * 4096;
    assert_int_equal(nb_flash_dev_open(&d, &c, &f), NB_OK);
    assert_int_equal(nb_flash_size(&f), 3 * 4096);
    assert_int_equal(f.erase(f.ctx, 3 * 4096), NB_ERR_RANGE);
    nb_flash_dev_close(&d);
    /* A sector larger than the file. */
    assert_int_equal(try_open(path, 0, 65536, 8, 0), NB_ERR_INVAL);
}

/* --------------------------------------------------------- core cycle */

struct rig {
    struct nb_flash_dev fdev;
    struct nb_flash flash;
    struct nb_openssl_crypto oc;
    struct nb_crypto crypto;
    struct nb_testkeys keys;
    struct nb_identity id;
    struct nb_boot_config cfg;
    struct nb_device dev;
    uint8_t buf[BUF];
    uint8_t mbuf[NB_MANIFEST_MAX];
};

static void rig_keys(struct rig *r)
{
    assert_int_equal(nb_crypto_openssl_init(&r->crypto, &r->oc), NB_OK);
    assert_int_equal(nb_testkeys_init(&r->keys, &r->crypto), NB_OK);
    nb_testpkg_identity(&r->id);
}

static void rig_open(struct rig *r, const struct nb_flash_dev_config *c,
                     uint8_t kind, uint32_t slot)
{
    assert_int_equal(nb_flash_dev_open(&r->fdev, c, &r->flash), NB_OK);
    memset(&r->cfg, 0, sizeof(r->cfg));
    r->cfg.flash = &r->flash;
    r->cfg.crypto = &r->crypto;
    r->cfg.keystore = &r->keys.keystore;
    r->cfg.identity = &r->id;
    assert_int_equal(nb_layout_plan(&r->cfg.layout, &r->flash, kind, slot, 0),
                     NB_OK);
    r->cfg.buf = r->buf;
    r->cfg.buf_size = BUF;
    r->cfg.mbuf = r->mbuf;
    r->cfg.mbuf_size = sizeof(r->mbuf);
}

static void rig_free(struct rig *r)
{
    nb_flash_dev_close(&r->fdev);
    nb_testkeys_free(&r->keys);
    nb_crypto_openssl_free(&r->crypto, &r->oc);
}

/* Install a test package (version, svn) and mark it PENDING. */
static void stage(struct rig *r, uint32_t version, uint32_t svn,
                  uint32_t payload, uint64_t seed)
{
    struct nb_buf pkg;
    struct nb_install in;
    memset(&pkg, 0, sizeof(pkg));
    assert_int_equal(nb_testpkg_make(&r->keys, &r->crypto, version, svn,
                                     payload, seed, &pkg),
                     NB_OK);
    uint32_t mlen = (uint32_t)(pkg.p[8] | pkg.p[9] << 8 | pkg.p[10] << 16 |
                               (uint32_t)pkg.p[11] << 24);
    assert_int_equal(nb_device_open(&r->dev, &r->cfg), NB_OK);
    assert_int_equal(nb_install_begin(&in, &r->dev, pkg.p + NB_PKG_HDR_SIZE,
                                      mlen, NB_TARGET_UPDATE),
                     NB_OK);
    const struct nb_manifest *m = &r->dev.manifest;
    const uint8_t *p = pkg.p + m->payload_offset;
    for (uint32_t done = 0; done < m->payload_size;) {
        uint32_t n = m->payload_size - done < 1500 ? m->payload_size - done
                                                    : 1500;
        assert_int_equal(nb_install_write(&in, p + done, n), NB_OK);
        done += n;
    }
    assert_int_equal(nb_install_finish(&in), NB_OK);
    assert_int_equal(nb_install_set_pending(&r->dev), NB_OK);
    nb_buf_free(&pkg);
}

static void boot(struct rig *r, struct nb_boot_result *res)
{
    assert_int_equal(nb_device_open(&r->dev, &r->cfg), NB_OK);
    assert_int_equal(nb_boot(&r->dev, res), NB_OK);
}

static void cycle(const char *name, uint8_t kind, const struct shape *s,
                  uint32_t slot, uint32_t payload)
{
    char path[512];
    struct rig *r = calloc(1, sizeof(*r));
    struct nb_boot_result res;
    struct nb_flash_dev_config c;
    assert_non_null(r);
    path_in_tmp(path, sizeof(path), name);
    make_file(path, (uint64_t)s->sector * s->sectors);
    memset(&c, 0, sizeof(c));
    c.path = path;
    c.type = NB_FLASH_DEV_BLOCK;
    c.sector_size = s->sector;
    c.write_size = s->write;
    c.erased_zero = s->erased_zero;
    c.check_erased = 1; /* the core never programs a unit twice */
    rig_keys(r);
    rig_open(r, &c, kind, slot);

    /* Blank: no journal. Provision. */
    assert_int_equal(nb_device_open(&r->dev, &r->cfg), NB_ERR_NOENT);
    assert_int_equal(nb_device_provision(&r->dev, &r->cfg,
                                         NB_LIFECYCLE_PRODUCTION, 3),
                     NB_OK);
    boot(r, &res);
    assert_int_equal(res.outcome, NB_BOOT_RECOVERY);

    /* 1.0.0: install, trial, confirm. */
    stage(r, 0x01000000u, 1, payload, 1);
    boot(r, &res);
    assert_int_equal(res.outcome, NB_BOOT_IMAGE);
    assert_int_equal(res.state, NB_SLOT_TRIAL);
    assert_int_equal(res.image.version, 0x01000000u);
    assert_int_equal(nb_device_open(&r->dev, &r->cfg), NB_OK);
    assert_int_equal(nb_confirm(&r->dev), NB_OK);

    /* A reset: the file closed and opened again. */
    nb_flash_dev_close(&r->fdev);
    rig_open(r, &c, kind, slot);
    boot(r, &res);
    assert_int_equal(res.outcome, NB_BOOT_IMAGE);
    assert_int_equal(res.state, NB_SLOT_CONFIRMED);
    assert_int_equal(res.image.version, 0x01000000u);

    if (kind != NB_LAYOUT_SINGLE) {
        /* 1.1.0 never confirmed: after the attempt limit the confirmed
         * 1.0.0 boots again. */
        stage(r, 0x01010000u, 2, payload - 123, 2);
        boot(r, &res);
        assert_int_equal(res.state, NB_SLOT_TRIAL);
        assert_int_equal(res.image.version, 0x01010000u);
        for (int i = 0; i < 4; i++)
            boot(r, &res);
        assert_int_equal(res.outcome, NB_BOOT_IMAGE);
        assert_int_equal(res.state, NB_SLOT_CONFIRMED);
        assert_int_equal(res.image.version, 0x01000000u);
        /* 1.2.0 confirmed. */
        stage(r, 0x01020000u, 3, payload + 77, 3);
        boot(r, &res);
        assert_int_equal(res.state, NB_SLOT_TRIAL);
        assert_int_equal(nb_device_open(&r->dev, &r->cfg), NB_OK);
        assert_int_equal(nb_confirm(&r->dev), NB_OK);
        boot(r, &res);
        assert_int_equal(res.state, NB_SLOT_CONFIRMED);
        assert_int_equal(res.image.version, 0x01020000u);
    }
    rig_free(r);
    free(r);
}

static void block_core_cycle(void **state)
{
    (void)state;
    const struct shape s4k = {4096, 8, 64, 0};
    const struct shape s1 = {4096, 1, 80, 1};
    const struct shape s64k = {65536, 32, 12, 0};
    cycle("ab.img", NB_LAYOUT_AB, &s4k, 100000, 60000);
    cycle("swap.img", NB_LAYOUT_AB_SWAP, &s1, 100000, 60000);
    cycle("ab64k.img", NB_LAYOUT_AB, &s64k, 200000, 150000);
    cycle("single.img", NB_LAYOUT_SINGLE, &s4k, 100000, 60000);
}

/* ------------------------------------------------- agent --provision */

/* Run a shell command; its exit status. */
static int run(const char *cmd)
{
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void agent_provision(void **state)
{
    (void)state;
    const char *build = getenv("NOBRICK_BUILD");
    char agent[512], path[512], blank[512], cmd[2048], out[512];
    if (!build || !build[0]) {
        print_message("agent_provision: NOBRICK_BUILD not set (run under "
                      "ctest); skipped\n");
        skip();
    }
    snprintf(agent, sizeof(agent), "%s/nobrick-agent", build);
    if (access(agent, X_OK) != 0) {
        print_message("agent_provision: %s not built; skipped\n", agent);
        skip();
    }
    path_in_tmp(path, sizeof(path), "agent.img");
    path_in_tmp(blank, sizeof(blank), "blank.img");
    path_in_tmp(out, sizeof(out), "agent.out");
    make_file(path, 64 * 4096);
    make_file(blank, 64 * 4096);
    const char *keys = "--flash-type block --flash-sector-size 4096 "
                       "--flash-write-size 16 --layout ab-swap "
                       "--slot-size 100000";
    snprintf(cmd, sizeof(cmd), "'%s' --provision --flash '%s' %s >'%s' "
             "2>/dev/null", agent, path, keys, out);
    assert_int_equal(run(cmd), 0);
    snprintf(cmd, sizeof(cmd), "grep -q '\"outcome\":\"provisioned\"' '%s'",
             out);
    assert_int_equal(run(cmd), 0);
    /* Again: left alone. */
    snprintf(cmd, sizeof(cmd), "'%s' --provision --flash '%s' %s >'%s' "
             "2>/dev/null", agent, path, keys, out);
    assert_int_equal(run(cmd), 0);
    snprintf(cmd, sizeof(cmd),
             "grep -q '\"outcome\":\"already-provisioned\"' '%s'", out);
    assert_int_equal(run(cmd), 0);
    /* Another layout over the same journal: refused. */
    snprintf(cmd, sizeof(cmd), "'%s' --provision --flash '%s' "
             "--flash-type block --flash-write-size 16 --layout ab "
             "--slot-size 100000 >/dev/null 2>&1", agent, path);
    assert_int_equal(run(cmd), 1);
    /* The agent will not run on a device without a journal. */
    snprintf(cmd, sizeof(cmd), "'%s' --once --flash '%s' %s --device-id d "
             "--server-url http://127.0.0.1:9 >/dev/null 2>&1", agent, blank,
             keys);
    assert_int_equal(run(cmd), 1);
    /* Layout keys with a simulated flash: a usage error. */
    snprintf(cmd, sizeof(cmd), "'%s' --once --flash '%s' --slot-size 1 "
             "--device-id d --server-url http://127.0.0.1:9 >/dev/null 2>&1",
             agent, path);
    assert_int_equal(run(cmd), 64);

    /* What the agent wrote is the journal this port and the core read,
     * with the layout planned the same way. */
    struct rig *r = calloc(1, sizeof(*r));
    struct nb_flash_dev_config c;
    struct nb_boot_result res;
    assert_non_null(r);
    memset(&c, 0, sizeof(c));
    c.path = path;
    c.type = NB_FLASH_DEV_BLOCK;
    c.write_size = 16;
    rig_keys(r);
    rig_open(r, &c, NB_LAYOUT_AB_SWAP, 100000);
    assert_int_equal(nb_device_open(&r->dev, &r->cfg), NB_OK);
    assert_int_equal(r->dev.state.lifecycle, NB_LIFECYCLE_PRODUCTION);
    boot(r, &res);
    assert_int_equal(res.outcome, NB_BOOT_RECOVERY);
    rig_free(r);
    free(r);
}

/* ----------------------------------------------------------------- MTD */

/* Is mtdN the kernel's mtdram test device? */
static int is_mtdram(unsigned n)
{
    char p[128], name[64] = "";
    snprintf(p, sizeof(p), "/sys/class/mtd/mtd%u/name", n);
    FILE *f = fopen(p, "r");
    if (!f)
        return 0;
    if (!fgets(name, sizeof(name), f))
        name[0] = '\0';
    fclose(f);
    name[strcspn(name, "\n")] = '\0';
    return strcmp(name, "mtdram test device") == 0;
}

/* Index of an mtdram device, or -1. */
static int find_mtdram(void)
{
    for (unsigned n = 0; n < 64; n++)
        if (is_mtdram(n))
            return (int)n;
    return -1;
}

/* A device node for mtdN: /dev/mtdN, or (no udev in a container) one
 * made in the temporary directory from sysfs' major:minor. */
static int mtd_node(unsigned n, char *out, size_t cap)
{
    char p[128];
    unsigned maj, min;
    struct stat st;
    snprintf(out, cap, "/dev/mtd%u", n);
    if (stat(out, &st) == 0 && S_ISCHR(st.st_mode))
        return 0;
    snprintf(p, sizeof(p), "/sys/class/mtd/mtd%u/dev", n);
    FILE *f = fopen(p, "r");
    if (!f)
        return -1;
    int ok = fscanf(f, "%u:%u", &maj, &min) == 2;
    fclose(f);
    if (!ok)
        return -1;
    snprintf(out, cap, "%s/mtd%u", tmpdir, n);
    return mknod(out, S_IFCHR | 0600, makedev(maj, min));
}

static void mtd_mtdram(void **state)
{
    (void)state;
    char node[512];
    int loaded = 0, n = find_mtdram();
    if (n < 0) {
        int rc = run("modprobe mtdram total_size=1024 erase_size=16 "
                     ">/dev/null 2>&1");
        if (rc == 0) {
            loaded = 1;
            for (int i = 0; i < 50 && (n = find_mtdram()) < 0; i++)
                usleep(20000);
        }
        if (n < 0) {
            print_message("MTD test SKIPPED: no mtdram device, and "
                          "'modprobe mtdram total_size=1024 erase_size=16' "
                          "%s (needs root and the mtdram module; the "
                          "block/file tests ran)\n",
                          rc == 0 ? "created none" : "failed");
            skip();
        }
    }
    if (mtd_node((unsigned)n, node, sizeof(node)) != 0) {
        print_message("MTD test SKIPPED: mtd%d (mtdram) has no device node "
                      "and none could be made\n", n);
        if (loaded)
            run("rmmod mtdram >/dev/null 2>&1");
        skip();
    }
    print_message("MTD test on %s (mtdram)\n", node);

    struct nb_flash_dev d;
    struct nb_flash f;
    struct nb_flash_dev_config c;
    memset(&c, 0, sizeof(c));
    c.path = node;
    assert_int_equal(nb_flash_dev_open(&d, &c, &f), NB_OK);
    assert_string_equal(nb_flash_dev_type_name(&d), "mtd");
    assert_int_equal(nb_flash_check(&f), NB_OK);
    assert_int_equal(f.erase_value, 0xFF);
    uint32_t size = nb_flash_size(&f), sector = f.regions[0].size;
    print_message("mtdram: %u bytes, %u-byte sectors, write size %u\n", size,
                  sector, f.write_size);
    assert_true(size >= 4 * sector);

    /* Round trip on two sectors. */
    uint8_t *w = malloc(2 * sector), *r = malloc(2 * sector);
    assert_non_null(w);
    assert_non_null(r);
    assert_int_equal(f.erase(f.ctx, 0), NB_OK);
    assert_int_equal(f.erase(f.ctx, sector), NB_OK);
    assert_int_equal(f.read(f.ctx, 0, r, 2 * sector), NB_OK);
    for (uint32_t i = 0; i < 2 * sector; i++)
        if (r[i] != 0xFF)
            fail_msg("mtd byte %u not erased", i);
    fill(w, 2 * sector, 77);
    uint32_t ws = f.write_size, half = sector / ws / 2 * ws;
    assert_int_equal(f.prog(f.ctx, 0, w, half), NB_OK);
    assert_int_equal(f.prog(f.ctx, half, w + half, 2 * sector - half),
                     NB_OK);
    assert_int_equal(f.read(f.ctx, 0, r, 2 * sector), NB_OK);
    assert_memory_equal(r, w, 2 * sector);
    assert_int_equal(f.erase(f.ctx, sector), NB_OK);
    assert_int_equal(f.read(f.ctx, 0, r, 2 * sector), NB_OK);
    assert_memory_equal(r, w, sector);
    for (uint32_t i = sector; i < 2 * sector; i++)
        assert_int_equal(r[i], 0xFF);
    /* Checks before the device. */
    assert_int_equal(f.read(f.ctx, size, r, 1), NB_ERR_RANGE);
    assert_int_equal(f.erase(f.ctx, size), NB_ERR_RANGE);
    assert_int_equal(f.erase(f.ctx, sector / 2), NB_ERR_INVAL);
    if (ws > 1)
        assert_int_equal(f.prog(f.ctx, 1, w, ws), NB_ERR_INVAL);
    nb_flash_dev_close(&d);
    free(w);
    free(r);

    /* Block geometry on an MTD, or an MTD as a block device: refused. */
    c.sector_size = 4096;
    assert_int_equal(nb_flash_dev_open(&d, &c, &f), NB_ERR_INVAL);
    memset(&c, 0, sizeof(c));
    c.path = node;
    c.type = NB_FLASH_DEV_BLOCK;
    assert_int_equal(nb_flash_dev_open(&d, &c, &f), NB_ERR_INVAL);

    /* The core cycle on the MTD. */
    struct rig *rg = calloc(1, sizeof(*rg));
    struct nb_boot_result res;
    assert_non_null(rg);
    memset(&c, 0, sizeof(c));
    c.path = node;
    c.type = NB_FLASH_DEV_MTD;
    rig_keys(rg);
    uint32_t slot = (size - 2 * sector) / 2 / sector * sector - sector;
    rig_open(rg, &c, NB_LAYOUT_AB, slot);
    assert_int_equal(nb_flash_erase_range(&rg->flash, 0, size), NB_OK);
    assert_int_equal(nb_device_provision(&rg->dev, &rg->cfg,
                                         NB_LIFECYCLE_PRODUCTION, 3),
                     NB_OK);
    stage(rg, 0x01000000u, 1, slot / 2, 9);
    boot(rg, &res);
    assert_int_equal(res.state, NB_SLOT_TRIAL);
    assert_int_equal(nb_device_open(&rg->dev, &rg->cfg), NB_OK);
    assert_int_equal(nb_confirm(&rg->dev), NB_OK);
    nb_flash_dev_close(&rg->fdev);
    rig_open(rg, &c, NB_LAYOUT_AB, slot);
    boot(rg, &res);
    assert_int_equal(res.outcome, NB_BOOT_IMAGE);
    assert_int_equal(res.state, NB_SLOT_CONFIRMED);
    assert_int_equal(res.image.version, 0x01000000u);
    rig_free(rg);
    free(rg);
    if (loaded)
        run("rmmod mtdram >/dev/null 2>&1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(block_roundtrip),
        cmocka_unit_test(block_access_errors),
        cmocka_unit_test(block_open_errors),
        cmocka_unit_test(block_core_cycle),
        cmocka_unit_test(agent_provision),
        cmocka_unit_test(mtd_mtdram),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
