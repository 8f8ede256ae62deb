/* flash.c - geometry helpers and checked copies over the flash port. */
#include <string.h>

#include "nb_flash.h"

nb_err nb_flash_check(const struct nb_flash *f)
{
    if (!f || !f->read || !f->prog || !f->erase)
        return NB_ERR_INVAL;
    uint32_t ws = f->write_size;
    if (ws == 0 || ws > NB_FLASH_MAX_WRITE || (ws & (ws - 1)) != 0)
        return NB_ERR_INVAL;
    if (f->erase_value != 0xFF && f->erase_value != 0x00)
        return NB_ERR_INVAL;
    if (f->region_count == 0 || f->region_count > NB_FLASH_MAX_REGIONS)
        return NB_ERR_INVAL;
    uint64_t total = 0;
    for (uint32_t i = 0; i < f->region_count; i++) {
        const struct nb_flash_region *r = &f->regions[i];
        if (r->count == 0 || r->size == 0 || r->size % ws != 0)
            return NB_ERR_INVAL;
        total += (uint64_t)r->count * r->size;
    }
    /* Addresses are 32-bit throughout the core. */
    if (total > 0xFFFFFFFFu)
        return NB_ERR_INVAL;
    return NB_OK;
}

uint32_t nb_flash_size(const struct nb_flash *f)
{
    uint32_t total = 0;
    for (uint32_t i = 0; i < f->region_count; i++)
        total += f->regions[i].count * f->regions[i].size;
    return total;
}

nb_err nb_flash_sector(const struct nb_flash *f, uint32_t addr,
                       uint32_t *start, uint32_t *size)
{
    uint32_t base = 0;
    for (uint32_t i = 0; i < f->region_count; i++) {
        const struct nb_flash_region *r = &f->regions[i];
        uint32_t span = r->count * r->size;
        if (addr - base < span) {
            *start = base + (addr - base) / r->size * r->size;
            *size = r->size;
            return NB_OK;
        }
        base += span;
    }
    return NB_ERR_RANGE;
}

uint32_t nb_flash_max_sector(const struct nb_flash *f, uint32_t off,
                             uint32_t len)
{
    uint32_t max = 0, start, size;
    if (len == 0 || (uint64_t)off + len > nb_flash_size(f))
        return 0;
    for (uint32_t a = off; a - off < len; a = start + size) {
        if (nb_flash_sector(f, a, &start, &size))
            return 0;
        if (size > max)
            max = size;
    }
    return max;
}

uint32_t nb_flash_sector_count(const struct nb_flash *f, uint32_t off,
                               uint32_t len)
{
    uint32_t n = 0, start, size;
    if ((uint64_t)off + len > nb_flash_size(f))
        return 0;
    for (uint32_t a = off; a - off < len; a = start + size) {
        if (nb_flash_sector(f, a, &start, &size))
            return 0;
        n++;
    }
    return n;
}

int nb_flash_aligned(const struct nb_flash *f, uint32_t off, uint32_t len)
{
    uint32_t start, size, total = nb_flash_size(f);
    if ((uint64_t)off + len > total)
        return 0;
    if (nb_flash_sector(f, off, &start, &size) || start != off)
        return 0;
    if (off + len == total)
        return 1;
    return nb_flash_sector(f, off + len, &start, &size) == NB_OK &&
           start == off + len;
}

nb_err nb_flash_erase_range(const struct nb_flash *f, uint32_t off,
                            uint32_t len)
{
    uint32_t start, size;
    if (!nb_flash_aligned(f, off, len))
        return NB_ERR_INVAL;
    for (uint32_t a = off; a - off < len; a = start + size) {
        nb_err err = nb_flash_sector(f, a, &start, &size);
        if (err)
            return err;
        err = f->erase(f->ctx, start);
        if (err)
            return err;
    }
    return NB_OK;
}

nb_err nb_flash_copy(const struct nb_flash *f, uint32_t dst, uint32_t src,
                     uint32_t len, uint8_t *buf, uint32_t buf_size)
{
    uint32_t ws = f->write_size;
    uint32_t chunk = buf_size / ws * ws;
    if (chunk == 0)
        return NB_ERR_NOMEM;
    len = (len + ws - 1) / ws * ws;
    for (uint32_t done = 0; done < len;) {
        uint32_t n = len - done < chunk ? len - done : chunk;
        nb_err err = f->read(f->ctx, src + done, buf, n);
        if (err)
            return err;
        err = f->prog(f->ctx, dst + done, buf, n);
        if (err)
            return err;
        done += n;
    }
    return NB_OK;
}

nb_err nb_flash_is_filled(const struct nb_flash *f, uint32_t off,
                          uint32_t len, uint8_t value, uint8_t *buf,
                          uint32_t buf_size, int *filled)
{
    *filled = 0;
    if (buf_size == 0)
        return NB_ERR_NOMEM;
    for (uint32_t done = 0; done < len;) {
        uint32_t n = len - done < buf_size ? len - done : buf_size;
        nb_err err = f->read(f->ctx, off + done, buf, n);
        if (err)
            return err;
        for (uint32_t i = 0; i < n; i++)
            if (buf[i] != value)
                return NB_OK;
        done += n;
    }
    *filled = 1;
    return NB_OK;
}

nb_err nb_flash_is_erased(const struct nb_flash *f, uint32_t off,
                          uint32_t len, uint8_t *buf, uint32_t buf_size,
                          int *erased)
{
    return nb_flash_is_filled(f, off, len, f->erase_value, buf, buf_size,
                              erased);
}
