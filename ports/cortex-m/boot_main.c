/* boot_main.c - a minimal bare-metal nobrick bootloader for QEMU's mps2
 * boards (mps2-an385, Cortex-M3; mps2-an386, Cortex-M4).
 *
 * What a product's bootloader does, with the board's SSRAM standing for
 * flash (mps2_board.h): open the device (mount the journal), run the boot
 * decision (nb_boot: every image is verified before it is chosen: the
 * manifest's signatures against the compiled-in root key, the payload's
 * SHA-256, the rest of the slot erased), and report. It then ends the
 * run through semihosting instead of jumping: the test payloads are
 * random bytes, not code. A product would jump to the image's vector
 * table at res.addr + payload offset instead.
 *
 * Output, one line each:
 *   nobrick: cortex-m4 (cpuid 410fc241), root key <kid>      (TEST KEY)
 *   nobrick: slot N STATE version X.Y.Z [: NB_ERR_... why it was refused]
 *   nobrick: booting slot N version X.Y.Z    (or: nobrick: recovery ...)
 *   nobrick: stack used S of T bytes, mbedTLS pool used P of Q bytes
 *
 * Memory: everything is static; mbedTLS' big numbers come from a static
 * pool (memory_buffer_alloc) of NB_MBEDTLS_POOL bytes.
 */
#include <stdint.h>
#include <string.h>

#include <mbedtls/memory_buffer_alloc.h>

#include "mps2_board.h"
#include "nb_boot.h"
#include "nb_crypto_mbedtls.h"
#include "nb_flash_mem.h"
#include "semihost.h"
#include "startup_mps2.h"
#include "test_root.h"

#ifndef NB_MBEDTLS_POOL
#define NB_MBEDTLS_POOL 4096u
#endif
#define POOL_PAINT 0xA5A5A5A5u
#define POOL_PAINT_FROM 64u /* past memory_buffer_alloc's first header */

/* The trust anchors: compiled in (a product might read them from OTP or
 * a secure element instead). One root: the TEST root of lib/nb_testpkg.c,
 * see test_root.h. */
struct root {
    uint8_t kid[NB_KEY_ID_LEN];
    uint8_t pub[NB_PUBKEY_LEN];
};
static const struct root roots[] = {
    {NB_TEST_ROOT_KID, NB_TEST_ROOT_PUB},
};

static nb_err root_key(void *ctx, const uint8_t kid[NB_KEY_ID_LEN],
                       uint8_t pub[NB_PUBKEY_LEN])
{
    (void)ctx;
    for (unsigned i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
        if (memcmp(kid, roots[i].kid, NB_KEY_ID_LEN) == 0) {
            memcpy(pub, roots[i].pub, NB_PUBKEY_LEN);
            return NB_OK;
        }
    }
    return NB_ERR_UNKNOWN_KEY;
}

static const struct nb_keystore keystore = {NULL, root_key};

static const struct nb_identity identity = {
    NB_TEST_VENDOR,
    NB_TEST_CLASS,
    sizeof(NB_TEST_HW_REV_STR) - 1,
    NB_TEST_HW_REV_STR,
};

static uint64_t mbedtls_pool[NB_MBEDTLS_POOL / 8]; /* 8-byte aligned */
static uint8_t work_buf[NB_MPS2_BUF_SIZE] __attribute__((aligned(8)));
static uint8_t manifest_buf[NB_MPS2_MBUF_SIZE] __attribute__((aligned(8)));
static struct nb_flash flash;
static struct nb_flash_mem flash_mem;
static struct nb_crypto crypto;
static struct nb_mbedtls_crypto crypto_state;
static struct nb_device dev;

/* mbedTLS found its pool corrupted (mbedtls_config_nb.h). */
void nb_mbedtls_exit(int status)
{
    (void)status;
    sh_write0("nobrick: mbedTLS memory pool corrupted\n");
    sh_exit(0);
}

static void put_version(struct sh_line *l, uint32_t v)
{
    sh_line_dec(l, nb_version_major(v));
    sh_line_str(l, ".");
    sh_line_dec(l, nb_version_minor(v));
    sh_line_str(l, ".");
    sh_line_dec(l, nb_version_patch(v));
}

static void put_err(struct sh_line *l, const char *what, nb_err err)
{
    sh_line_str(l, "nobrick: ");
    sh_line_str(l, what);
    sh_line_str(l, ": ");
    sh_line_str(l, nb_err_name(err));
    sh_line_end(l);
}

/* Bytes of the pool ever touched: the allocator writes only headers and
 * the blocks it hands out (zeroed), first fit from the start. */
static uint32_t pool_used(void)
{
    uint32_t n = sizeof(mbedtls_pool) / 4;
    const uint32_t *p = (const uint32_t *)(void *)mbedtls_pool;
    while (n > POOL_PAINT_FROM / 4 && p[n - 1] == POOL_PAINT)
        n--;
    return n * 4;
}

int nb_mps2_main(void)
{
    struct nb_boot_config cfg;
    struct nb_boot_result res;
    struct sh_line l = {{0}, 0};
    uint32_t cpuid = *(volatile const uint32_t *)0xE000ED00u; /* SCB */
    nb_err err;

    mbedtls_memory_buffer_alloc_init((unsigned char *)mbedtls_pool,
                                     sizeof(mbedtls_pool));
    for (uint32_t i = POOL_PAINT_FROM / 4; i < sizeof(mbedtls_pool) / 4; i++)
        ((uint32_t *)(void *)mbedtls_pool)[i] = POOL_PAINT;

    sh_line_str(&l, "nobrick: cortex-m");
    sh_line_dec(&l, ((cpuid >> 4) & 0xFFF) - 0xC20); /* 0xC23: M3 */
    sh_line_str(&l, " (cpuid ");
    uint8_t id[4] = {(uint8_t)(cpuid >> 24), (uint8_t)(cpuid >> 16),
                     (uint8_t)(cpuid >> 8), (uint8_t)cpuid};
    sh_line_hex(&l, id, 4);
    sh_line_str(&l, "), root key ");
    sh_line_hex(&l, roots[0].kid, NB_KEY_ID_LEN);
    sh_line_str(&l, " (TEST KEY)");
    sh_line_end(&l);

    err = nb_flash_mem_init(&flash, &flash_mem,
                            (void *)(uintptr_t)NB_MPS2_FLASH_BASE,
                            NB_MPS2_SECTOR_SIZE, NB_MPS2_SECTOR_COUNT,
                            NB_MPS2_WRITE_SIZE, NB_MPS2_ERASE_VALUE);
    if (err) {
        put_err(&l, "flash", err);
        return 1;
    }
    nb_crypto_mbedtls_init(&crypto, &crypto_state);
    memset(&cfg, 0, sizeof(cfg));
    cfg.flash = &flash;
    cfg.crypto = &crypto;
    cfg.keystore = &keystore;
    cfg.identity = &identity;
    cfg.buf = work_buf;
    cfg.buf_size = sizeof(work_buf);
    cfg.mbuf = manifest_buf;
    cfg.mbuf_size = sizeof(manifest_buf);
    err = nb_layout_plan(&cfg.layout, &flash, NB_MPS2_LAYOUT,
                         NB_MPS2_SLOT_SIZE, 0);
    if (!err)
        err = nb_device_open(&dev, &cfg);
    if (err) {
        /* NB_ERR_NOENT: a blank journal (never provisioned). */
        put_err(&l, "cannot open the device", err);
        return 1;
    }
    /* A flash error aborts the decision; a product resets and retries. */
    err = nb_boot(&dev, &res);
    if (err) {
        put_err(&l, "boot", err);
        return 1;
    }

    /* Every slot's state after the decision, and why a refused one was
     * refused (verified again for the report: a product skips this). */
    for (unsigned i = 0; i < nb_layout_slot_count(cfg.layout.kind); i++) {
        const struct nb_slot_info *si = &dev.state.slot[i];
        struct nb_image_info info;
        sh_line_str(&l, "nobrick: slot ");
        sh_line_dec(&l, i);
        sh_line_str(&l, " ");
        sh_line_str(&l, nb_slot_state_name(si->state));
        if (si->state != NB_SLOT_EMPTY) {
            sh_line_str(&l, " version ");
            put_version(&l, si->version);
        }
        if (si->state == NB_SLOT_REJECTED) {
            err = nb_device_verify_slot(&dev, i, &info);
            sh_line_str(&l, ": ");
            sh_line_str(&l, err ? nb_err_name(err) : "verifies now");
        }
        sh_line_end(&l);
    }

    if (res.outcome != NB_BOOT_IMAGE) {
        sh_line_str(&l, "nobrick: recovery: no image verifies");
        sh_line_end(&l);
    } else {
        sh_line_str(&l, "nobrick: booting slot ");
        sh_line_dec(&l, res.slot);
        sh_line_str(&l, " version ");
        put_version(&l, res.image.version);
        sh_line_end(&l);
    }
    sh_line_str(&l, "nobrick: stack used ");
    sh_line_dec(&l, nb_stack_used());
    sh_line_str(&l, " of ");
    sh_line_dec(&l, nb_stack_size());
    sh_line_str(&l, " bytes, mbedTLS pool used ");
    sh_line_dec(&l, pool_used());
    sh_line_str(&l, " of ");
    sh_line_dec(&l, (uint32_t)sizeof(mbedtls_pool));
    sh_line_str(&l, " bytes");
    sh_line_end(&l);
    nb_crypto_mbedtls_free(&crypto, &crypto_state);
    return res.outcome == NB_BOOT_IMAGE ? 0 : 1;
}
