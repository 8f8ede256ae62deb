/* nb_journal.h - the power-safe boot journal.
 *
 * An area of two or more sectors holding fixed-size records, each a full
 * copy of struct nb_state with a sequence number and a CRC-32 in its last
 * write unit, which is programmed last. The newest valid record wins; a
 * torn record fails its CRC and reads as "not there". When the current
 * sector is full, the next sector is erased and the new record becomes its
 * first (compaction): the sector erased never holds the newest record, so
 * power may fail at any point of it. See docs/journal-format.md.
 */
#ifndef NB_JOURNAL_H
#define NB_JOURNAL_H

#include <stdint.h>

#include "nb_flash.h"
#include "nb_state.h"

#define NB_JOURNAL_MAGIC 0x314A424Eu /* "NBJ1" */
#define NB_JOURNAL_FORMAT 1u
#define NB_JOURNAL_BODY_SIZE 148u /* bytes before padding, CRC included */
#define NB_JOURNAL_MAX_RECORD 160u

/* Runtime context; plain data, no interior pointers but `flash`. */
struct nb_journal {
    const struct nb_flash *flash;
    uint32_t off, len;     /* the journal area, sector aligned */
    uint32_t rec_size;     /* body rounded up to write_size */
    uint32_t cur_sector;   /* start of the sector holding the newest */
    uint32_t next;         /* address of the next free record slot */
    uint32_t seq;          /* sequence number of the newest record */
    uint32_t appends;      /* appends since mount (statistics) */
    uint32_t compactions;  /* sector changes since mount */
    uint8_t mounted;
};

/* Encode/decode one record (rec_size bytes, padded with erase_value).
 * decode returns NB_ERR_CORRUPT for a bad magic, format or CRC. */
void nb_journal_encode(const struct nb_state *st, uint8_t erase_value,
                       uint8_t *rec, uint32_t rec_size);
nb_err nb_journal_decode(const uint8_t *rec, uint32_t rec_size,
                         struct nb_state *st);

/* Set up a context over [off, off+len), which must be sector aligned and
 * hold at least two sectors. No flash access. */
nb_err nb_journal_init(struct nb_journal *j, const struct nb_flash *flash,
                       uint32_t off, uint32_t len);

/* Scan the area and load the newest valid record into *st. NB_ERR_NOENT
 * when there is none (blank or entirely corrupt journal). */
nb_err nb_journal_mount(struct nb_journal *j, struct nb_state *st);

/* Erase the area and write `st` as the first record (provisioning). */
nb_err nb_journal_format(struct nb_journal *j, struct nb_state *st);

/* Append `st` as the newest record; st->seq is set to the new sequence
 * number. On success the state is durable. */
nb_err nb_journal_append(struct nb_journal *j, struct nb_state *st);

#endif
