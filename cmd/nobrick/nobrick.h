/* nobrick.h - shared parts of the nobrick tool (cmd/nobrick): the command
 * context, option parsing, one-line errors, value parsers, files, PINs,
 * the token and the signers, JSON output.
 *
 * Exit codes (every command):
 *   0   done (verify: the package is valid)
 *   1   failed, refused, or (verify) the package is not valid
 *   64  the command line is wrong; nothing was read, signed or written
 */
#ifndef NOBRICK_H
#define NOBRICK_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "nb_crypto.h"
#include "nb_crypto_openssl.h"
#include "nb_manifest.h"
#include "nb_pkcs11.h"
#include "nb_pkgbuild.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 64

#define NOPTS(o) (sizeof(o) / sizeof((o)[0]))
#define PIN_MAX 256 /* bytes, NUL included */
#define MULTI_MAX 16

/* ------------------------------------------------------------- context */

/* Everything a command needs besides its own options. */
struct ctx {
    struct nb_crypto crypto; /* OpenSSL port: SHA-256, ECDSA verify */
    struct nb_openssl_crypto ossl;
    /* global options (NULL when not given) */
    const char *token;  /* --token, default NB_P11_DEFAULT_TOKEN */
    const char *module; /* --module, default NB_P11_DEFAULT_MODULE */
    char *pin_arg;      /* --pin (wiped from argv once copied) */
    /* the token, opened on first use */
    struct nb_p11 p11;
    int p11_open;
};

/* Close the token (logs out) and release the crypto port. */
void ctx_free(struct ctx *g);

/* ------------------------------------------------------------- options */

enum opt_kind { OPT_FLAG, OPT_VALUE, OPT_MULTI };

struct opt {
    const char *name; /* "--label" */
    enum opt_kind kind;
    int set;
    char *value; /* OPT_VALUE: the last value given */
    char *values[MULTI_MAX]; /* OPT_MULTI */
    int count;
};

/* Parse argv[0..argc) of command `cmd` ("key generate") against `opts`:
 * "--name value" or "--name=value"; "--" ends the options. The global
 * options (--token, --module, --pin) are accepted anywhere and stored in
 * `g`. Positional arguments go to pos[0..*npos) (at most maxpos).
 * Returns 0, 1 when --help/-h was given (print usage, exit 0), or
 * EXIT_USAGE after reporting the error. */
int parse_opts(struct ctx *g, const char *cmd, int argc, char **argv,
               struct opt *opts, size_t n, char **pos, size_t maxpos,
               size_t *npos);

struct opt *opt_get(struct opt *opts, size_t n, const char *name);

/* Parse a global option at argv[*i] (before the command); 1 when it was
 * one (and *i advanced past its value), 0 when not, EXIT_USAGE on error. */
int parse_global(struct ctx *g, int argc, char **argv, int *i);

/* -------------------------------------------------------------- errors */

/* "nobrick: <message>" on stderr, one line (control characters shown as
 * '?'). Returns EXIT_FAIL. */
int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "nobrick: <cmd>: <message> (see 'nobrick <cmd> --help')"; cmd "" for
 * the top level. Returns
 * EXIT_USAGE. */
int usage_err(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "nobrick: warning: <message>" on stderr. */
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define INSECURE_WARNING "signing with a plain key file; keys belong in an HSM"

/* -------------------------------------------------------------- values */

/* Each returns 0 or EXIT_USAGE after saying which option is wrong. */
int parse_u64(const char *cmd, const char *opt, const char *s, uint64_t min,
              uint64_t max, uint64_t *out);
/* 8-4-4-4-12 hex digits. */
int parse_uuid(const char *cmd, const char *opt, const char *s,
               uint8_t out[NB_UUID_LEN]);
/* Comma-separated UUIDs, 1 to max of them. */
int parse_uuid_list(const char *cmd, const char *opt, const char *s,
                    uint8_t (*out)[NB_UUID_LEN], unsigned max,
                    unsigned *count);
/* Exactly 2 * n hex digits. */
int parse_hex(const char *cmd, const char *opt, const char *s, uint8_t *out,
              size_t n);
/* "M.m.p": major, minor <= 255, patch <= 65535. */
int parse_version(const char *cmd, const char *opt, const char *s,
                  uint32_t v[3]);

/* Text forms. */
void fmt_uuid(const uint8_t u[NB_UUID_LEN], char out[37]);
void fmt_hex(const uint8_t *p, size_t n, char *out); /* 2n + 1 bytes */
void fmt_time(uint64_t t, char out[32]); /* ISO-8601 UTC, or the number */
void fmt_version(uint32_t packed, char out[16]);

/* --------------------------------------------------------------- files */

/* Read a whole file (at most `max` bytes; larger files are refused).
 * Reports and returns EXIT_FAIL on error; *buf is malloc'd. */
int read_file(const char *path, size_t max, uint8_t **buf, size_t *len);

/* Write `len` bytes to `path` through a temporary file and rename, so a
 * reader never sees half a file; `mode` for a new file. Reports and
 * returns EXIT_FAIL on error. */
int write_file(const char *path, const void *buf, size_t len, int mode);

/* ---------------------------------------------------------------- PINs */

/* The user PIN: --pin, else NOBRICK_PIN, else a prompt on the terminal
 * (no echo; twice when `confirm`). Reports and returns EXIT_FAIL when
 * there is none. The caller wipes `pin` (explicit_bzero) after use. */
int get_user_pin(struct ctx *g, int confirm, char pin[PIN_MAX]);

/* The security officer PIN: `so_arg` (--so-pin, wiped from argv), else
 * NOBRICK_SO_PIN, else a prompt. */
int get_so_pin(char *so_arg, int confirm, char pin[PIN_MAX]);

/* Wipe a string in place (argv, environment). */
void wipe_str(char *s);

/* ---------------------------------------------------------------- keys */

/* Open the token and, when `login`, log in (asks for the PIN). Reports
 * and returns EXIT_FAIL on error. */
int token_open(struct ctx *g, int login, struct nb_p11 **out);

/* A private key to sign with: in the token (by label) or, with a warning,
 * a PEM file (--insecure-key-file). */
struct key {
    int from_file;
    EVP_PKEY *pkey;        /* from_file */
    struct nb_p11_key p11; /* token */
    struct nb_signer signer;
    char desc[128]; /* "key 'root' in token 'nobrick'" */
};

/* Open the signing key named by `label` (token) or `file`; exactly one
 * must be non-NULL (the caller checked). Reports and returns EXIT_FAIL. */
int key_open(struct ctx *g, const char *label, const char *file,
             struct key *k);
void key_close(struct key *k);

/* Report a failure to sign `what` with `k` (the token's own message when
 * the token failed; clear g->p11.msg before signing). EXIT_FAIL. */
int sign_fail(struct ctx *g, const char *what, const struct key *k,
              nb_err err);

/* The public key of token key `label`, or of the PEM file `pub_file`
 * (public or private key). */
int pub_open(struct ctx *g, const char *label, const char *pub_file,
             uint8_t pub[NB_PUBKEY_LEN], char *desc, size_t desc_cap);

/* Key ID of a public key as 16 hex digits. */
void key_id_hex(struct ctx *g, const uint8_t pub[NB_PUBKEY_LEN],
                char out[2 * NB_KEY_ID_LEN + 1]);

/* ---------------------------------------------------------------- JSON */

/* A JSON document printed to stdout as it is built; commas automatic. */
struct jw {
    int depth;
    int count[16];
};
void jw_begin(struct jw *j);      /* "{" */
void jw_end_doc(struct jw *j);    /* "}\n" */
void jw_obj(struct jw *j, const char *key);
void jw_arr(struct jw *j, const char *key);
void jw_close(struct jw *j, char bracket);
void jw_str(struct jw *j, const char *key, const char *s);
void jw_strn(struct jw *j, const char *key, const char *s, size_t n);
void jw_u64(struct jw *j, const char *key, uint64_t v);
void jw_bool(struct jw *j, const char *key, int v);
void jw_null(struct jw *j, const char *key);
void jw_hex(struct jw *j, const char *key, const uint8_t *p, size_t n);

/* Print bytes (a hardware revision from a manifest) safely on a
 * terminal: printable ASCII as is, everything else as \xNN. */
void print_escaped(const char *s, size_t n);

/* ------------------------------------------------------------ commands */

int cmd_key(struct ctx *g, int argc, char **argv);
int cmd_package(struct ctx *g, int argc, char **argv);
int cmd_inspect(struct ctx *g, int argc, char **argv);
int cmd_verify(struct ctx *g, int argc, char **argv);

#endif
