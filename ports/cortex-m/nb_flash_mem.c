/* nb_flash_mem.c - NOR flash over memory; see nb_flash_mem.h. */
#include <string.h>

#include "nb_flash_mem.h"

/* [addr, addr+len) inside the region, without overflow. */
static int in_range(const struct nb_flash_mem *m, uint32_t addr, uint32_t len)
{
    return addr <= m->size && len <= m->size - addr;
}

static nb_err mem_read(void *ctx, uint32_t addr, void *buf, uint32_t len)
{
    const struct nb_flash_mem *m = ctx;
    if (!buf && len)
        return NB_ERR_INVAL;
    if (!in_range(m, addr, len))
        return NB_ERR_RANGE;
    if (len)
        memcpy(buf, m->base + addr, len);
    return NB_OK;
}

static nb_err mem_prog(void *ctx, uint32_t addr, const void *buf,
                       uint32_t len)
{
    const struct nb_flash_mem *m = ctx;
    const uint8_t *src = buf;
    if (!buf && len)
        return NB_ERR_INVAL;
    if (!in_range(m, addr, len))
        return NB_ERR_RANGE;
    if (addr % m->write_size || len % m->write_size)
        return NB_ERR_INVAL;
    for (uint32_t u = 0; u < len; u += m->write_size) {
        uint8_t *dst = m->base + addr + u;
        for (uint32_t i = 0; i < m->write_size; i++)
            if (dst[i] != m->erase_value)
                return NB_ERR_IO; /* programmed twice without an erase */
        memcpy(dst, src + u, m->write_size);
    }
    return NB_OK;
}

static nb_err mem_erase(void *ctx, uint32_t addr)
{
    const struct nb_flash_mem *m = ctx;
    if (addr >= m->size)
        return NB_ERR_RANGE;
    if (addr % m->sector_size)
        return NB_ERR_INVAL;
    memset(m->base + addr, m->erase_value, m->sector_size);
    return NB_OK;
}

nb_err nb_flash_mem_init(struct nb_flash *f, struct nb_flash_mem *m,
                         void *base, uint32_t sector_size,
                         uint32_t sector_count, uint32_t write_size,
                         uint8_t erase_value)
{
    memset(f, 0, sizeof(*f));
    memset(m, 0, sizeof(*m));
    if (!base || sector_count == 0 ||
        sector_size > UINT32_MAX / sector_count)
        return NB_ERR_INVAL;
    m->base = base;
    m->size = sector_size * sector_count;
    m->sector_size = sector_size;
    m->write_size = write_size;
    m->erase_value = erase_value;
    f->ctx = m;
    f->read = mem_read;
    f->prog = mem_prog;
    f->erase = mem_erase;
    f->write_size = write_size;
    f->erase_value = erase_value;
    f->region_count = 1;
    f->regions[0].count = sector_count;
    f->regions[0].size = sector_size;
    nb_err err = nb_flash_check(f);
    if (err)
        memset(f, 0, sizeof(*f)); /* unusable: no callbacks to call */
    return err;
}
