/* config.h - nobrick-server's settings: one table of keys, read from a
 * config file (key = value) and from the command line (--key value), with
 * --help generated from the same table, as nobrick-agent does.
 *
 * File syntax: one "key = value" per line; blank lines and lines starting
 * with '#' are ignored; blanks around key and value are trimmed; a value
 * runs to the end of the line. An unknown key, a repeated key (except the
 * repeatable ones: admin_token_sha256, fleet_token_sha256, root_pub), a
 * malformed number or a number out of range is an error naming the file
 * and line. The command line wins over the file (a repeatable key given
 * on the command line replaces the file's values).
 */
#ifndef NB_SRV_CONFIG_H
#define NB_SRV_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SRV_STR_MAX 1024
#define SRV_MAX_TOKENS 16   /* admin / fleet token hashes */
#define SRV_MAX_ROOTS 8     /* root_pub files */

struct srv_config {
    char listen[SRV_STR_MAX];        /* IPv4 or IPv6 address */
    uint64_t port;                   /* 0: pick a free one */
    char db[SRV_STR_MAX];            /* sqlite path or postgresql:// URL */
    char artifacts[SRV_STR_MAX];     /* artifact directory */
    char public_url[SRV_STR_MAX];    /* base URL of this server, for offers */
    char artifact_base_url[SRV_STR_MAX]; /* where devices fetch artifacts */
    char ftp_base_url[SRV_STR_MAX];  /* optional: offers carry artifacts.ftp */
    char mqtt[SRV_STR_MAX];          /* optional broker host[:port] */
    char mqtt_root[SRV_STR_MAX];     /* topic root (default nobrick) */
    uint64_t threads;
    char tls_cert[SRV_STR_MAX];
    char tls_key[SRV_STR_MAX];
    char admin_token_sha256[SRV_MAX_TOKENS][65];
    unsigned n_admin_token_sha256;
    char admin_token_file[SRV_STR_MAX];
    char fleet_token_sha256[SRV_MAX_TOKENS][65];
    unsigned n_fleet_token_sha256;
    char fleet_token_file[SRV_STR_MAX];
    char root_pub[SRV_MAX_ROOTS][SRV_STR_MAX];
    unsigned n_root_pub;
    uint64_t max_package_size;
    uint64_t poll_seconds;
    uint64_t artifact_auth;          /* 0 or 1 */
    char revocations[SRV_STR_MAX];   /* artifact name of the list */
    uint64_t revocations_seq;
    uint64_t connection_timeout;     /* seconds */
    uint64_t max_connections;
    char ddi_tenant[SRV_STR_MAX];    /* hawkBit DDI tenant */
    char log_level[SRV_STR_MAX];     /* error, warn, info, debug */
    /* Flags (command line only). */
    int insecure_http;
    int quiet;
    /* Which keys were set (file or command line), by table index. */
    uint64_t set;
    uint64_t set_cli;
};

/* Defaults for every key. */
void srv_config_defaults(struct srv_config *o);

/* Set `key` (with '_' or '-') to `value`; `where` names the source for
 * errors ("server.conf:12", "--port"). Returns 0, or -1 after writing one
 * line to `err`. `cli`: a command-line value replaces the file's. */
int srv_config_set(struct srv_config *o, const char *key, const char *value,
                   const char *where, int cli, FILE *err);

/* 1 if `name` (with '_' or '-') is a key of the table. */
int srv_config_is_key(const char *name);

/* Read a config file. Returns 0, or -1 after writing one line to `err`. */
int srv_config_load(struct srv_config *o, const char *path, FILE *err);

/* Check required keys and that values fit together (TLS both or none,
 * plain HTTP only on loopback or with insecure_http, token hashes are 64
 * hex digits, ...). Returns 0, or -1 after one line to `err`. */
int srv_config_check(const struct srv_config *o, FILE *err);

/* 1 when the listen address is a loopback address. */
int srv_config_loopback(const char *addr);

/* The key table as help text (for --help and docs/server.md). */
void srv_config_help(FILE *out);

#endif /* NB_SRV_CONFIG_H */
