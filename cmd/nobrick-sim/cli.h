/* cli.h - helpers of the nobrick-sim command line (see main.c): one-line
 * JSON output, one-line errors, strict option and number parsing, opening
 * the simulated device with a precise message for every way it can fail.
 *
 * Exit codes (the same for every command):
 *   0  done
 *   1  the operation failed or was refused (files, device, packages)
 *   2  an injected power cut (--cut-at-op) stopped the command
 *  64  the command line is wrong (unknown command or option, missing or
 *      malformed value); nothing was read or written
 */
#ifndef CLI_H
#define CLI_H

#include <stddef.h>
#include <stdint.h>

#include "simdev.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_POWER 2
#define CLI_EXIT_USAGE 64

/* ------------------------------------------------------------------ JSON */

/* A JSON object built in memory and printed as one line, so a command
 * that fails half-way never leaves a partial line on stdout. Commas are
 * placed automatically. Out of memory is remembered and reported by
 * json_emit (which then prints nothing). */
#define JSON_MAX_DEPTH 8

struct json {
    char *buf;
    size_t len, cap;
    int depth;
    int count[JSON_MAX_DEPTH]; /* members written at each depth */
    char close[JSON_MAX_DEPTH]; /* bracket that closes each depth */
    int oom;
};

void json_init(struct json *j);  /* opens the top-level object */
void json_free(struct json *j);
/* `key` NULL inside arrays. */
void json_obj(struct json *j, const char *key);
void json_arr(struct json *j, const char *key);
void json_end(struct json *j); /* closes the innermost object or array */
void json_str(struct json *j, const char *key, const char *val);
void json_u64(struct json *j, const char *key, uint64_t val);
void json_bool(struct json *j, const char *key, int val);
/* A version "M.m.p" from a packed version. */
void json_version(struct json *j, const char *key, uint32_t packed);
/* Lower-case hex of `n` bytes. */
void json_hex(struct json *j, const char *key, const uint8_t *p, size_t n);
/* Close every open level, print the line and free. Returns 0, or -1 when
 * the object could not be built (out of memory). */
int json_emit(struct json *j);

/* "M.m.p" into out (at least 16 bytes). */
void cli_version_str(uint32_t packed, char out[16]);

/* ---------------------------------------------------------------- errors */

/* Report a failure: "nobrick-sim: <message>" on stderr and
 * {"ok":false,"error":"<nb_err_name(err)>","message":"<message>"} on
 * stdout. Returns `code` (CLI_EXIT_FAIL or CLI_EXIT_USAGE) for the caller
 * to return. */
int cli_fail(int code, nb_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A usage error of command `cmd`: as cli_fail with NB_ERR_INVAL and exit
 * CLI_EXIT_USAGE, the message followed by a pointer to --help. */
int cli_usage(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------- arguments */

enum cli_opt_kind { CLI_FLAG, CLI_VALUE };

struct cli_opt {
    const char *name; /* "--flash" */
    enum cli_opt_kind kind;
    const char *value; /* CLI_VALUE: the string given, else NULL */
    int set;           /* given on the command line */
};

/* Parse argv[1..argc) against `opts` ("--name value" or "--name=value").
 * Returns 0 when parsed, 1 when --help/-h was asked for (the caller prints
 * its usage and exits 0), or CLI_EXIT_USAGE after reporting an unknown or
 * repeated option, a missing value or a stray argument. */
int cli_parse(const char *cmd, int argc, char **argv, struct cli_opt *opts,
              size_t n);

/* Find an option of the table by name (must exist). */
struct cli_opt *cli_opt(struct cli_opt *opts, size_t n, const char *name);

/* Parse a whole unsigned number: decimal, or hex with 0x. Refuses empty
 * strings, signs, blanks, trailing characters, overflow and values
 * outside [min, max]. Returns 0, or CLI_EXIT_USAGE after reporting which
 * option was wrong and why. */
int cli_u64(const char *cmd, const char *opt, const char *s, uint64_t min,
            uint64_t max, uint64_t *out);

/* Parse "M.m.p" (major, minor <= 255, patch <= 65535) into a packed
 * version. Returns 0 or CLI_EXIT_USAGE. */
int cli_version(const char *cmd, const char *opt, const char *s,
                uint32_t *out);

/* -------------------------------------------------------------- devices */

/* Open the flash file `path` as a simulated device and mount its journal
 * (reads only: nothing is written). On failure reports it and returns
 * NULL with *rc set to the exit code. */
struct simdev *cli_dev_open(const char *path, int *rc);

/* Flush and free (NULL is fine). */
void cli_dev_close(struct simdev *sd);

/* A power cut asked for on the command line. */
struct cli_cut {
    int armed;     /* --cut-at-op given */
    int torn;      /* --torn: operation `op` is torn, not skipped */
    uint64_t op;   /* flash operation index, counted from the open */
    uint64_t seed; /* --seed: the torn content's random seed */
};

/* Parse --cut-at-op, --torn and --seed of the table (before anything is
 * opened). Returns 0 or CLI_EXIT_USAGE (malformed numbers, --torn or
 * --seed without --cut-at-op). */
int cli_cut_parse(const char *cmd, struct cli_opt *opts, size_t n,
                  struct cli_cut *cut);

/* Arm the cut on an open device (no-op when none was asked for). The
 * operation count starts at the open. */
void cli_cut_arm(struct simdev *sd, const struct cli_cut *cut);

/* After a command that could have been cut: when the device lost power,
 * report the cut (stderr line, JSON with "power_cut":true and "op") and
 * return CLI_EXIT_POWER; otherwise return -1. */
int cli_power_cut(struct simdev *sd, const struct cli_cut *cut);

/* Flash statistics of this run as JSON members (ops, prog_ops, erase_ops,
 * bytes_written). */
void cli_json_ops(struct json *j, struct simdev *sd);

/* -------------------------------------------------------------- packages */

/* Read a package file (.nbpkg) whole and check it before any flash is
 * touched: container header, manifest well-formed, file length exactly
 * payload offset + payload size, zero padding (then simdev_check_file
 * over the bytes read), and a package of at most `capacity` bytes.
 * Signatures, vendor, class, hardware revision and security version are
 * NOT checked here: nb_install_begin checks them before it writes
 * anything; each payload block is checked on arrival. `sd` must be bound
 * (its crypto parses).
 * On success *pkg (malloc'd, caller frees), *len and *m (the manifest,
 * parsed but NOT verified: for messages only) are set; on failure
 * reports it (NB_ERR_TRUNCATED, NB_ERR_TRAILING, NB_ERR_MALFORMED, ...,
 * NB_ERR_NOSPC) and returns CLI_EXIT_FAIL. */
int cli_read_package(struct simdev *sd, const char *path, uint32_t capacity,
                     uint8_t **pkg, uint32_t *len, struct nb_manifest *m);

/* ------------------------------------------------- names, slots, output */

/* Layout kind from its name ("ab-swap"), lifecycle from its name; 0 when
 * unknown. */
uint8_t cli_layout_kind(const char *name);
uint8_t cli_lifecycle(const char *name);
/* "A", "B", "factory"; "none", "swap", "revert". */
const char *cli_slot_name(unsigned i);
const char *cli_op_name(uint8_t op);

/* First slot in `state` that an update can use (never the factory slot);
 * -1 when none. */
int cli_find_slot(const struct simdev *sd, uint8_t state);

/* Largest package an update can bring; the core checks the exact target
 * slot again before it writes anything. */
uint32_t cli_update_capacity(const struct nb_layout *l);

/* JSON members: layout, lifecycle, geometry and areas (init, status). */
void cli_json_board(struct json *j, struct simdev *sd);
/* JSON object `key` for slot `i` of the journal state. */
void cli_json_slot(struct json *j, const char *key, const struct simdev *sd,
                   unsigned i);

/* Report a core error of `what` as one line with what to do; returns
 * CLI_EXIT_FAIL. */
int cli_dev_error(const char *what, const struct simdev *sd, nb_err err);

/* ------------------------------------------------------------------ init */

/* Plan layout `kind` with slots of `slot_size` bytes on sectors of
 * `sector` bytes (or the named `shape` when not NULL), and set *g (write
 * size and erase value already in it) to exactly the sectors it uses.
 * Returns 0 or CLI_EXIT_USAGE after reporting why. */
int cli_plan(const char *shape, uint32_t sector, uint8_t kind,
             uint32_t slot_size, struct nb_simflash_geometry *g,
             struct nb_layout *l);

/* Move the finished file `tmp` to `path`: atomically refused when `path`
 * exists, unless `force`. Returns 0 or CLI_EXIT_FAIL after reporting. */
int cli_place(const char *tmp, const char *path, int force);

#endif
