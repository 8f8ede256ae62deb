/* config.h - nobrick-agent's settings: one table of keys, read from a
 * config file (key = value) and from the command line (--key value), with
 * the help text generated from the same table (so --help, docs/agent.md
 * and the parser cannot drift apart).
 *
 * File syntax: one "key = value" per line; blank lines and lines starting
 * with '#' are ignored; blanks around key and value are trimmed; a value
 * runs to the end of the line (no quoting, '#' inside a value is kept).
 * An unknown key, a repeated key, a malformed number or a number out of
 * range is an error naming the file and line. The command line wins over
 * the file.
 */
#ifndef AGENT_CONFIG_H
#define AGENT_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define AGENT_STR_MAX 1024

struct agent_opts {
    char flash[AGENT_STR_MAX];
    /* The flash backend (sim, mtd, block) and, for mtd/block, the layout
     * to plan on it; for block also its geometry. */
    char flash_type[AGENT_STR_MAX];
    uint64_t flash_sector_size;
    uint64_t flash_write_size;
    char flash_erase_value[AGENT_STR_MAX];
    char layout[AGENT_STR_MAX];
    uint64_t slot_size;
    char device_id[AGENT_STR_MAX];
    char server_url[AGENT_STR_MAX];
    char device_token[AGENT_STR_MAX];
    char token_file[AGENT_STR_MAX];
    char hw_rev[AGENT_STR_MAX];
    /* Trust anchors and identity of a real product (empty: the
     * simulator's TEST root, vendor and class). */
    char root_pub[AGENT_STR_MAX];
    char vendor[AGENT_STR_MAX];
    char class_id[AGENT_STR_MAX];
    char transport[AGENT_STR_MAX];
    char file_dir[AGENT_STR_MAX];
    char mqtt_host[AGENT_STR_MAX];
    uint64_t mqtt_port;
    char ca_file[AGENT_STR_MAX];
    uint64_t connect_timeout_ms;
    uint64_t request_timeout_ms;
    uint64_t stall_timeout_ms;
    uint64_t retry_base_ms;
    uint64_t retry_max_ms;
    uint64_t retry_attempts;
    uint64_t progress_interval_ms;
    char health_cmd[AGENT_STR_MAX];
    uint64_t health_timeout_ms;
    uint64_t ack_timeout_ms;
    uint64_t poll_ms;
    char state_file[AGENT_STR_MAX];
    char log_level[AGENT_STR_MAX];
    /* Which keys were set (file or command line), by table index. */
    uint64_t set;
};

/* Defaults for every key. */
void agent_opts_defaults(struct agent_opts *o);

/* Set `key` (with '_' or '-') to `value`; `where` names the source for
 * errors ("agent.conf:12", "--retry-base-ms"). Returns 0, or -1 after
 * writing one line to `err`. `cli`: a command-line value may replace one
 * from the file (but not one from the command line). */
int agent_opts_set(struct agent_opts *o, const char *key, const char *value,
                   const char *where, int cli, FILE *err);

/* Read a config file. Returns 0, or -1 after writing one line to `err`. */
int agent_opts_load(struct agent_opts *o, const char *path, FILE *err);

/* Check that the required keys are there and the values fit together.
 * Returns 0, or -1 after writing one line to `err`. */
int agent_opts_check(const struct agent_opts *o, FILE *err);

/* Check only the flash keys (flash, flash_type, the block geometry,
 * layout, slot_size): what --provision needs. Returns 0, or -1 after
 * writing one line to `err`. agent_opts_check includes this. */
int agent_opts_check_flash(const struct agent_opts *o, FILE *err);

/* The layout kind (enum nb_layout_kind) named by `name` (ab, ab-swap,
 * single), or 0. */
int agent_opts_layout_kind(const char *name);

/* The erase value named by `s` ("0xff", "0xFF", "255", "0x00", "0"):
 * 0xFF or 0x00, or -1. */
int agent_opts_erase_value(const char *s);

/* Is `name` (without "--") a config key? */
int agent_opts_is_key(const char *name);

/* Write the key reference: one entry per key with default and meaning. */
void agent_opts_help(FILE *out);

/* Parse a transport preference list ("https, http, ftp") into kinds.
 * Returns the count, or -1 when a name is unknown or repeated. */
int agent_opts_prefer(const char *list, uint8_t *kinds, unsigned cap);

#endif
