/* main.c - nobrick-sim: a simulated device on a flash file.
 *
 * Each command opens the flash file (a persistent simulated NOR flash,
 * ports/posix), mounts the boot journal as a reset would, runs one step
 * of the real core (stage, boot, confirm, ...) and prints one line of
 * JSON. Helpers (JSON, errors, parsing, opening) are in cli.c; the power
 * cut sweep is in sweep.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "fleet.h"
#include "sweep.h"

#define MIB (1024u * 1024u)
#define NOPTS(o) (sizeof(o) / sizeof((o)[0]))

/* ----------------------------------------------------------------- usage */

static const char usage_main[] =
    "usage: nobrick-sim COMMAND [OPTIONS]\n"
    "\n"
    "A simulated device: a flash file holding the boot journal and the\n"
    "image slots, on which the real bootloader core runs. Images are signed\n"
    "packages (.nbpkg, docs/package-format.md). The simulated device trusts\n"
    "only the simulator's TEST root key and has the test identity, so it\n"
    "installs what make-image writes; packages signed with your own keys\n"
    "by 'nobrick package' are refused (NB_ERR_UNKNOWN_KEY). Every command\n"
    "prints one line of JSON on stdout; on error also one line\n"
    "'nobrick-sim: <what is wrong>' on stderr, and the JSON is\n"
    "{\"ok\":false,\"error\":\"NB_ERR_...\",\"message\":\"...\"}.\n"
    "\n"
    "commands:\n"
    "  init        create and provision a flash file\n"
    "  stage       write a package into the inactive slot, mark it PENDING\n"
    "  boot        run the bootloader once\n"
    "  confirm     confirm the image on trial (the application's call)\n"
    "  status      the boot journal's state and the flash wear\n"
    "  lifecycle   move the lifecycle from development to production\n"
    "  make-image  write a test package signed with the simulator's test keys\n"
    "  sweep       cut power at every point of update cycles, check recovery\n"
    "  replay      re-run one sweep case from its replay ID\n"
    "  fleet       many simulated devices against an update server\n"
    "\n"
    "'nobrick-sim COMMAND --help' shows the options of a command. Numbers\n"
    "are decimal or hex with 0x: no sign, no suffix, no trailing text.\n"
    "\n"
    "exit status: 0 done; 1 failed or refused (files, device, packages);\n"
    "2 stopped by an injected power cut (--cut-at-op; the JSON then has\n"
    "\"power_cut\":true and \"op\"); 64 bad command line (unknown command or\n"
    "option, missing or malformed value): nothing was read or written.\n"
    "Bad input never changes the flash file, except that a payload block\n"
    "that does not match its digest in the signed manifest is only found\n"
    "when it arrives, after the manifest was written (see 'nobrick-sim\n"
    "stage --help').\n";

static const char usage_init[] =
    "usage: nobrick-sim init --flash F --layout ab|ab-swap|ab-factory|single\n"
    "         [--sector-size N | --shape 4k|128k|mixed] [--write-size N]\n"
    "         [--slot-size N] [--erase-value 0xff|0x00]\n"
    "         [--lifecycle development|production] [--attempts N]\n"
    "         [--factory PKG] [--image PKG] [--force]\n"
    "\n"
    "Create a flash file just large enough for the journal (two sectors)\n"
    "and the slots of the layout, and provision it (every slot EMPTY).\n"
    "  --layout L       ab: execute in place from A or B; ab-swap: fixed\n"
    "                   execution slot A, B swapped in; ab-factory: A/B and a\n"
    "                   factory image; single: one slot + recovery loader\n"
    "  --sector-size N  uniform sectors of N bytes, 256 to 16 MiB, a multiple\n"
    "                   of the write size (default 4096)\n"
    "  --shape S        a named shape instead: 4k, 128k, or mixed (4 x 4 KiB,\n"
    "                   2 x 16 KiB, then 32 KiB sectors)\n"
    "  --write-size N   program unit: 1, 2, 4, 8, 16 or 32 (default 8)\n"
    "  --slot-size N    bytes per slot, 1 to 256 MiB, rounded up to whole\n"
    "                   sectors (default 131072; ab-swap: B has one more\n"
    "                   swap unit, its largest sector)\n"
    "  --erase-value V  0xff (default) or 0x00\n"
    "  --lifecycle L    development (default) or production\n"
    "  --attempts N     trial boots before a trial is rejected, 1 to 255\n"
    "                   (default 3)\n"
    "  --factory PKG    ab-factory only: write package PKG as the factory\n"
    "                   image\n"
    "  --image PKG      install package PKG as the first confirmed image\n"
    "                   (stage, boot, confirm: production-line programming)\n"
    "  --force          replace F if it exists (refused otherwise)\n"
    "Packages (.nbpkg, from make-image) are checked as by stage; the device\n"
    "trusts only the simulator's test root.\n"
    "The file is built beside F and renamed into place only when all of it\n"
    "succeeded: a failed init leaves an existing F untouched.\n";

static const char usage_cut[] =
    "  --cut-at-op N    cut the power before flash operation N (a program or\n"
    "                   an erase, counted from 0 when the file is opened):\n"
    "                   the file keeps what the cut left, exit status 2\n"
    "  --torn           tear operation N instead (a partial program, a half\n"
    "                   erased sector)\n"
    "  --seed S         seed of the torn content (default 0)\n";

static const char usage_stage[] =
    "usage: nobrick-sim stage --flash F --image PKG [--cut-at-op N [--torn]\n"
    "         [--seed S]]\n"
    "\n"
    "Install the signed package PKG (.nbpkg, from make-image) into the\n"
    "inactive slot as an update agent would: the manifest first, then the\n"
    "payload in 1 KiB chunks, each block checked against its digest in the\n"
    "manifest before it is written; then read the whole slot back, verify\n"
    "it and mark it PENDING: the next boot tries it once.\n"
    "Refused before anything is written: a file that is not a whole package\n"
    "(shorter than the 12-byte container header, a bad header, a malformed\n"
    "manifest, a length other than payload offset + payload size), a\n"
    "package larger than the slot, a signature that does not verify, a key\n"
    "the device does not trust (the simulated device trusts only the\n"
    "simulator's test root: packages made by 'nobrick package' with your\n"
    "own keys fail with NB_ERR_UNKNOWN_KEY), another vendor, class or\n"
    "hardware revision (the device is nb-test-vendor / nb-test-class /\n"
    "sim-1), a security version below the floor in production (allowed\n"
    "with a warning in development), an update on trial, a swap not yet\n"
    "finished.\n"
    "A payload block that does not match the signed manifest is found when\n"
    "it arrives (as on a device): the command fails with NB_ERR_DIGEST and\n"
    "the slot stays RECEIVING, which never boots; the confirmed image is\n"
    "untouched. (Single-slot layout: the update overwrites the only slot,\n"
    "so until a good package is staged and boots the device stays in\n"
    "recovery.)\n"
    "Output: slot, version, security_version, size (package bytes in the\n"
    "slot), state (PENDING), downgrade, and the flash operations used (ops,\n"
    "prog_ops, erase_ops, bytes_written).\n";

static const char usage_boot[] =
    "usage: nobrick-sim boot --flash F [--cut-at-op N [--torn] [--seed S]]\n"
    "\n"
    "Reset and run the bootloader once: finish an interrupted swap, start or\n"
    "count a trial, reject what fails, fall back to the confirmed, previous\n"
    "or factory image, else stay in recovery. Prints what boots:\n"
    "outcome \"image\" (slot, addr, version, security_version, state TRIAL or\n"
    "CONFIRMED, attempts) or \"recovery\".\n";

static const char usage_confirm[] =
    "usage: nobrick-sim confirm --flash F [--cut-at-op N [--torn] [--seed "
    "S]]\n"
    "\n"
    "Confirm the image on trial (what the application does once healthy):\n"
    "it becomes the active image and the security floor rises to its\n"
    "security version. With nothing on trial and a confirmed image, does\n"
    "nothing (\"changed\":false).\n";

static const char usage_status[] =
    "usage: nobrick-sim status --flash F\n"
    "\n"
    "Print the newest boot journal record (seq, layout, lifecycle, active,\n"
    "floor, attempt_limit, op, op_pos, slots), the layout and geometry, and\n"
    "the flash wear (largest and total sector erase counts). Writes "
    "nothing.\n";

static const char usage_lifecycle[] =
    "usage: nobrick-sim lifecycle --flash F --set production|development\n"
    "         [--cut-at-op N [--torn] [--seed S]]\n"
    "\n"
    "Move the lifecycle. Only development -> production is allowed: a\n"
    "device in production refuses lower security versions, and never goes\n"
    "back.\n";

/* Help on stdout (exit 0) for rc 1 from cli_parse; otherwise pass rc on. */
static int help(int rc, const char *text, int cut)
{
    if (rc != 1)
        return rc;
    fputs(text, stdout);
    if (cut)
        fputs(usage_cut, stdout);
    return 0;
}

/* ------------------------------------------------------------------ init */

/* A package refused by the device for what it is (signature, key,
 * identity, manifest), as one line naming `path`; -1 when `err` is not
 * one of those. `tail` ends the message (" (nothing written)"). */
static int pkg_refused(const char *path, nb_err err, const char *tail)
{
    switch (err) {
    case NB_ERR_SIGNATURE:
        return cli_fail(CLI_EXIT_FAIL, err, "%s: a signature does not "
                        "verify (the manifest or its delegation was altered, "
                        "or not signed by the key it names)%s", path, tail);
    case NB_ERR_UNKNOWN_KEY:
        return cli_fail(CLI_EXIT_FAIL, err, "%s: not signed under a root key "
                        "this device trusts: the simulated device trusts "
                        "only the simulator's test root (packages from "
                        "'nobrick-sim make-image'); packages signed with "
                        "other keys, such as your own with 'nobrick "
                        "package', are refused%s", path, tail);
    case NB_ERR_EXPIRED:
        return cli_fail(CLI_EXIT_FAIL, err, "%s: the signing key's delegation "
                        "was not valid when the manifest was created%s",
                        path, tail);
    case NB_ERR_REVOKED:
        return cli_fail(CLI_EXIT_FAIL, err, "%s: the signing key is revoked%s",
                        path, tail);
    case NB_ERR_VENDOR:
    case NB_ERR_CLASS:
    case NB_ERR_HW_REV:
        return cli_fail(CLI_EXIT_FAIL, err, "%s: the package is for another "
                        "%s (the simulated device is vendor nb-test-vendor, "
                        "class nb-test-class, hardware revision "
                        NB_TEST_HW_REV ")%s", path,
                        err == NB_ERR_VENDOR  ? "vendor, or its key may not "
                                                "sign for this vendor"
                        : err == NB_ERR_CLASS ? "device class, or its key "
                                                "may not sign for this class"
                                              : "hardware revision",
                        tail);
    case NB_ERR_MALFORMED:
    case NB_ERR_TRUNCATED:
    case NB_ERR_TRAILING:
    case NB_ERR_DUPLICATE:
    case NB_ERR_UNKNOWN_FIELD:
    case NB_ERR_UNSUPPORTED:
        return cli_fail(CLI_EXIT_FAIL, err, "%s: the manifest is refused "
                        "(%s)%s", path, nb_err_name(err), tail);
    default:
        return -1;
    }
}

/* Provision the new device, then the factory and first packages. */
static int provision(struct simdev *sd, uint8_t lc, uint8_t attempts,
                     const char *fpath, const uint8_t *fimg, uint32_t flen,
                     const char *ipath, const uint8_t *img, uint32_t len)
{
    nb_err err = nb_device_provision(&sd->dev, &sd->cfg, lc, attempts);
    int rc;
    if (err)
        return cli_dev_error("provisioning", sd, err);
    if (fimg && (err = simdev_factory(sd, fimg, flen)) != NB_OK) {
        if (err == NB_ERR_DIGEST)
            return cli_fail(CLI_EXIT_FAIL, err,
                            "%s: the payload does not match the digests in "
                            "its signed manifest",
                            fpath);
        if ((rc = pkg_refused(fpath, err, "")) >= 0)
            return rc;
        return cli_dev_error("writing the factory package", sd, err);
    }
    if (!img)
        return 0;
    struct nb_boot_result res;
    int down = 0;
    err = simdev_stage(sd, img, len, &down);
    if (err == NB_ERR_DIGEST)
        return cli_fail(CLI_EXIT_FAIL, err,
                        "%s: the payload does not match the digests in its "
                        "signed manifest",
                        ipath);
    if (err && (rc = pkg_refused(ipath, err, "")) >= 0)
        return rc;
    if (!err)
        err = simdev_boot(sd, &res);
    if (!err && (res.outcome != NB_BOOT_IMAGE || res.state != NB_SLOT_TRIAL))
        return cli_fail(CLI_EXIT_FAIL, NB_ERR_STATE,
                        "%s: the first image did not boot on trial", ipath);
    if (!err)
        err = simdev_confirm(sd);
    return err ? cli_dev_error("installing the first image", sd, err) : 0;
}

static int cmd_init(int argc, char **argv)
{
    struct cli_opt o[] = {
        {"--flash", CLI_VALUE, 0, 0},     {"--layout", CLI_VALUE, 0, 0},
        {"--sector-size", CLI_VALUE, 0, 0}, {"--shape", CLI_VALUE, 0, 0},
        {"--write-size", CLI_VALUE, 0, 0}, {"--slot-size", CLI_VALUE, 0, 0},
        {"--erase-value", CLI_VALUE, 0, 0}, {"--lifecycle", CLI_VALUE, 0, 0},
        {"--attempts", CLI_VALUE, 0, 0},  {"--image", CLI_VALUE, 0, 0},
        {"--factory", CLI_VALUE, 0, 0},   {"--force", CLI_FLAG, 0, 0},
    };
    const char *c = "init";
    int rc = cli_parse(c, argc, argv, o, NOPTS(o));
    if (rc)
        return help(rc, usage_init, 0);
    const char *path = o[0].value, *shape = o[3].value;
    const char *ipath = o[9].value, *fpath = o[10].value;
    uint64_t sector = 4096, ws = 8, slot = 131072, ev = 0xFF, att = 3;
    if (!path || !o[1].value)
        return cli_usage(c, "%s is required", path ? "--layout" : "--flash");
    uint8_t kind = cli_layout_kind(o[1].value);
    if (!kind)
        return cli_usage(c, "unknown layout '%s' (ab, ab-swap, ab-factory "
                         "or single)", o[1].value);
    if (o[2].set && shape)
        return cli_usage(c, "--sector-size and --shape exclude each other");
    if (shape && strcmp(shape, "4k") && strcmp(shape, "128k") &&
        strcmp(shape, "mixed"))
        return cli_usage(c, "unknown shape '%s' (4k, 128k or mixed)", shape);
    if ((o[4].set && cli_u64(c, "--write-size", o[4].value, 1, 32, &ws)) ||
        (o[2].set &&
         cli_u64(c, "--sector-size", o[2].value, 256, 16 * MIB, &sector)) ||
        (o[5].set && cli_u64(c, "--slot-size", o[5].value, 1, 256 * MIB,
                             &slot)) ||
        (o[6].set && cli_u64(c, "--erase-value", o[6].value, 0, 255, &ev)) ||
        (o[8].set && cli_u64(c, "--attempts", o[8].value, 1, 255, &att)))
        return CLI_EXIT_USAGE;
    if (ws & (ws - 1))
        return cli_usage(c, "--write-size %" PRIu64 " is not 1, 2, 4, 8, 16 "
                         "or 32", ws);
    if (sector % ws)
        return cli_usage(c, "--sector-size %" PRIu64 " is not a multiple of "
                         "the write size %" PRIu64, sector, ws);
    if (ev != 0xFF && ev != 0x00)
        return cli_usage(c, "--erase-value must be 0xff or 0x00");
    uint8_t lc = NB_LIFECYCLE_DEVELOPMENT;
    if (o[7].set && !(lc = cli_lifecycle(o[7].value)))
        return cli_usage(c, "unknown lifecycle '%s' (development or "
                         "production)", o[7].value);
    if (fpath && kind != NB_LAYOUT_AB_FACTORY)
        return cli_usage(c, "--factory needs --layout ab-factory");

    struct nb_simflash_geometry g = {0};
    struct nb_layout l;
    g.write_size = (uint32_t)ws;
    g.erase_value = (uint8_t)ev;
    rc = cli_plan(shape, (uint32_t)sector, kind, (uint32_t)slot, &g, &l);
    if (rc)
        return rc;
    if (!o[11].set && access(path, F_OK) == 0)
        return cli_fail(CLI_EXIT_FAIL, NB_ERR_DENIED,
                        "%s: already exists (use --force to replace it)",
                        path);

    uint8_t *img = NULL, *fimg = NULL;
    uint32_t len = 0, flen = 0;
    struct nb_manifest m;
    unsigned first = kind == NB_LAYOUT_AB_SWAP ? 1 : 0;
    struct simdev *sd = calloc(1, sizeof(*sd));
    char *tmp = malloc(strlen(path) + 32);
    uint8_t blob[NB_SIMFLASH_USER_MAX];
    size_t blen;
    int bound = 0;
    if (!sd || !tmp) {
        rc = cli_fail(CLI_EXIT_FAIL, NB_ERR_NOMEM, "out of memory");
        goto out;
    }
    sd->board.layout = l;
    blen = simdev_board_encode(&sd->board, blob, sizeof(blob));
    sprintf(tmp, "%s.init-%ld.tmp", path, (long)getpid());
    /* The new file is built beside F: F itself is replaced only at the
     * end, when everything succeeded. */
    nb_err err = nb_simflash_create_file(&sd->sim, tmp, &g, blob, blen);
    if (err) {
        rc = cli_fail(CLI_EXIT_FAIL, err, "%s: cannot create the flash file "
                      "(%s)", path, err == NB_ERR_NOENT
                          ? "no such directory" : "permissions or space?");
        goto out;
    }
    if ((err = simdev_bind(sd)) != NB_OK) {
        rc = cli_fail(CLI_EXIT_FAIL, err, "cannot set up the simulated "
                      "device's crypto and test keys");
        goto out;
    }
    bound = 1;
    /* Read and check the packages before anything is provisioned. */
    if ((fpath && (rc = cli_read_package(sd, fpath,
                                         nb_layout_capacity(&l, 2), &fimg,
                                         &flen, &m))) ||
        (ipath && (rc = cli_read_package(sd, ipath,
                                         nb_layout_capacity(&l, first), &img,
                                         &len, &m))))
        goto out;
    rc = provision(sd, lc, (uint8_t)att, fpath, fimg, flen, ipath, img, len);
    if (!rc && (err = simdev_open(sd)) != NB_OK)
        rc = cli_dev_error("re-reading the journal", sd, err);
    struct json j;
    json_init(&j);
    if (!rc) {
        json_bool(&j, "ok", 1);
        json_str(&j, "command", c);
        json_str(&j, "flash", path);
        cli_json_board(&j, sd);
        json_u64(&j, "attempt_limit", sd->dev.state.attempt_limit);
        if (fpath)
            cli_json_slot(&j, "factory", sd, 2);
        if (ipath)
            cli_json_slot(&j, "image", sd, sd->dev.state.active);
    }
    nb_simflash_close(sd->sim);
    sd->sim = NULL;
    if (!rc)
        rc = cli_place(tmp, path, o[11].set);
    if (rc) {
        unlink(tmp);
        json_free(&j);
    } else {
        json_emit(&j);
    }
out:
    if (sd && sd->sim) { /* failed before the file was complete */
        nb_simflash_close(sd->sim);
        unlink(tmp);
    }
    if (bound)
        simdev_unbind(sd);
    free(sd);
    free(tmp);
    free(img);
    free(fimg);
    return rc;
}

/* -------------------------------------------------- stage, boot, confirm */

#define CUT_OPTS                                                             \
    {"--cut-at-op", CLI_VALUE, 0, 0}, {"--torn", CLI_FLAG, 0, 0},            \
        {"--seed", CLI_VALUE, 0, 0}

/* Parse a device command: --flash first in `o`, cut options last. */
static int dev_cmd(const char *c, int argc, char **argv, struct cli_opt *o,
                   size_t n, const char *usage, struct cli_cut *cut,
                   struct simdev **sd)
{
    int rc = cli_parse(c, argc, argv, o, n);
    if (rc)
        return help(rc, usage, cli_opt(o, n, "--cut-at-op") != NULL);
    for (size_t i = 0; i < n; i++)
        if (o[i].kind == CLI_VALUE && !o[i].set &&
            (i == 0 || strcmp(o[i].name, "--image") == 0 ||
             strcmp(o[i].name, "--set") == 0))
            return cli_usage(c, "%s is required", o[i].name);
    struct cli_opt *set = cli_opt(o, n, "--set");
    if (set && !cli_lifecycle(set->value))
        return cli_usage(c, "unknown lifecycle '%s' (development or "
                         "production)", set->value);
    memset(cut, 0, sizeof(*cut));
    if (cli_opt(o, n, "--cut-at-op") && cli_cut_parse(c, o, n, cut))
        return CLI_EXIT_USAGE;
    *sd = cli_dev_open(o[0].value, &rc);
    return *sd ? 0 : rc;
}

/* JSON head of a successful device command. */
static void ok_head(struct json *j, const char *c, const struct cli_cut *cut)
{
    json_init(j);
    json_bool(j, "ok", 1);
    json_str(j, "command", c);
    if (cut->armed)
        json_bool(j, "power_cut", 0); /* the cut was past the last op */
}

static int stage_error(struct simdev *sd, const char *ipath,
                       const struct nb_manifest *m, uint32_t len, nb_err err)
{
    const struct nb_state *st = &sd->dev.state;
    int t = cli_find_slot(sd, NB_SLOT_TRIAL);
    int r = cli_find_slot(sd, NB_SLOT_RECEIVING);
    int rc;
    switch (err) {
    case NB_ERR_ROLLBACK:
        return cli_fail(CLI_EXIT_FAIL, err, "%s: security version %" PRIu32
                        " is below the floor %" PRIu32 ": refused in "
                        "production (nothing written)", ipath, m->svn,
                        st->floor);
    case NB_ERR_NOSPC:
        return cli_fail(CLI_EXIT_FAIL, err, "%s: the package (%" PRIu32
                        " bytes) does not fit the slot the update goes to "
                        "(nothing written)", ipath, len);
    case NB_ERR_DIGEST:
        if (r >= 0)
            return cli_fail(CLI_EXIT_FAIL, err, "%s: the payload does not "
                            "match the digests in its signed manifest; slot "
                            "%s is left RECEIVING and never boots (%s)",
                            ipath, cli_slot_name((unsigned)r),
                            st->layout == NB_LAYOUT_SINGLE
                                ? "single slot: recovery until a good "
                                  "package is staged"
                                : "the confirmed image is untouched");
        break;
    case NB_ERR_STATE:
        if (st->op == NB_OP_NONE && t >= 0)
            return cli_fail(CLI_EXIT_FAIL, err, "slot %s is on trial: "
                            "confirm it or let it revert (boot) before "
                            "staging another package (nothing written)",
                            cli_slot_name((unsigned)t));
        if (st->op == NB_OP_NONE && st->layout == NB_LAYOUT_AB_SWAP &&
            st->active == 1)
            return cli_fail(CLI_EXIT_FAIL, err, "the confirmed image is "
                            "in slot B: run boot to bring it back to A "
                            "first (nothing written)");
        break;
    default: {
        /* Refused by nb_install_begin, before anything was written; or,
         * should the flash garble the slot, by the final check. */
        struct nb_simflash_stats fs;
        nb_simflash_stats(sd->sim, &fs);
        const char *tail = fs.prog_ops + fs.erase_ops == 0
                               ? " (nothing written)"
                               : " (the slot is left RECEIVING and never "
                                 "boots)";
        if ((rc = pkg_refused(ipath, err, tail)) >= 0)
            return rc;
        break;
    }
    }
    return cli_dev_error("stage", sd, err);
}

static int cmd_stage(int argc, char **argv)
{
    struct cli_opt o[] = {{"--flash", CLI_VALUE, 0, 0},
                          {"--image", CLI_VALUE, 0, 0}, CUT_OPTS};
    struct simdev *sd = NULL;
    struct cli_cut cut;
    struct nb_manifest m;
    uint8_t *pkg = NULL;
    uint32_t len;
    int rc = dev_cmd("stage", argc, argv, o, NOPTS(o), usage_stage, &cut, &sd);
    if (rc || !sd)
        return rc;
    /* The device is mounted (read only so far): check the file before
     * anything is written. */
    uint32_t cap = cli_update_capacity(&sd->dev.cfg.layout);
    rc = cli_read_package(sd, o[1].value, cap, &pkg, &len, &m);
    if (rc)
        goto out;
    cli_cut_arm(sd, &cut);
    int down = 0;
    nb_err err = simdev_stage(sd, pkg, len, &down);
    if (down)
        fprintf(stderr, "warning: security version %" PRIu32 " is below the "
                "floor %" PRIu32 " (allowed in development)\n", m.svn,
                sd->dev.state.floor);
    if ((rc = cli_power_cut(sd, &cut)) >= 0)
        goto out;
    if (err) {
        rc = stage_error(sd, o[1].value, &m, len, err);
        goto out;
    }
    int p = cli_find_slot(sd, NB_SLOT_PENDING);
    const struct nb_slot_info *si = &sd->dev.state.slot[p < 0 ? 0 : p];
    struct json j;
    ok_head(&j, "stage", &cut);
    json_u64(&j, "slot", p < 0 ? 0 : (unsigned)p);
    json_version(&j, "version", si->version);
    json_u64(&j, "security_version", si->svn);
    json_u64(&j, "size", si->size);
    json_str(&j, "state", nb_slot_state_name(p < 0 ? 0 : si->state));
    json_bool(&j, "downgrade", down);
    cli_json_ops(&j, sd);
    json_emit(&j);
    rc = 0;
out:
    free(pkg);
    cli_dev_close(sd);
    return rc;
}

static int cmd_boot(int argc, char **argv)
{
    struct cli_opt o[] = {{"--flash", CLI_VALUE, 0, 0}, CUT_OPTS};
    struct simdev *sd = NULL;
    struct cli_cut cut;
    struct nb_boot_result res;
    int rc = dev_cmd("boot", argc, argv, o, NOPTS(o), usage_boot, &cut, &sd);
    if (rc || !sd)
        return rc;
    cli_cut_arm(sd, &cut);
    nb_err err = simdev_boot(sd, &res);
    if ((rc = cli_power_cut(sd, &cut)) >= 0)
        goto out;
    if (err) {
        rc = cli_dev_error("boot", sd, err);
        goto out;
    }
    struct json j;
    ok_head(&j, "boot", &cut);
    if (res.outcome == NB_BOOT_IMAGE) {
        if (res.downgrade)
            fprintf(stderr, "warning: booting security version %" PRIu32
                    " below the floor %" PRIu32 " (allowed in "
                    "development)\n", res.image.svn, sd->dev.state.floor);
        json_str(&j, "outcome", "image");
        json_u64(&j, "slot", res.slot);
        json_str(&j, "name", cli_slot_name(res.slot));
        json_u64(&j, "addr", res.addr);
        json_version(&j, "version", res.image.version);
        json_u64(&j, "security_version", res.image.svn);
        json_u64(&j, "size", res.image.size);
        json_str(&j, "state", nb_slot_state_name(res.state));
        json_u64(&j, "attempts", res.attempts);
        json_bool(&j, "downgrade", res.downgrade);
    } else {
        json_str(&j, "outcome", "recovery");
    }
    cli_json_ops(&j, sd);
    json_emit(&j);
    rc = 0;
out:
    cli_dev_close(sd);
    return rc;
}

static int cmd_confirm(int argc, char **argv)
{
    struct cli_opt o[] = {{"--flash", CLI_VALUE, 0, 0}, CUT_OPTS};
    struct simdev *sd = NULL;
    struct cli_cut cut;
    int rc = dev_cmd("confirm", argc, argv, o, NOPTS(o), usage_confirm, &cut,
                     &sd);
    if (rc || !sd)
        return rc;
    int trial = cli_find_slot(sd, NB_SLOT_TRIAL);
    cli_cut_arm(sd, &cut);
    nb_err err = simdev_confirm(sd);
    if ((rc = cli_power_cut(sd, &cut)) >= 0)
        goto out;
    if (err == NB_ERR_STATE && sd->dev.state.op == NB_OP_NONE)
        rc = cli_fail(CLI_EXIT_FAIL, err, "nothing to confirm: no image is "
                      "on trial and none is confirmed (stage and boot one)");
    else if (err)
        rc = cli_dev_error("confirm", sd, err);
    if (err)
        goto out;
    struct json j;
    const struct nb_state *st = &sd->dev.state;
    ok_head(&j, "confirm", &cut);
    json_bool(&j, "changed", trial >= 0);
    json_u64(&j, "slot", st->active);
    json_version(&j, "version", st->slot[st->active].version);
    json_u64(&j, "security_version", st->slot[st->active].svn);
    json_str(&j, "state", nb_slot_state_name(st->slot[st->active].state));
    json_u64(&j, "floor", st->floor);
    cli_json_ops(&j, sd);
    json_emit(&j);
    rc = 0;
out:
    cli_dev_close(sd);
    return rc;
}

/* ------------------------------------------------ status, lifecycle */

static int cmd_status(int argc, char **argv)
{
    struct cli_opt o[] = {{"--flash", CLI_VALUE, 0, 0}};
    struct simdev *sd = NULL;
    struct cli_cut cut;
    int rc = dev_cmd("status", argc, argv, o, NOPTS(o), usage_status, &cut,
                     &sd);
    if (rc || !sd)
        return rc;
    const struct nb_state *st = &sd->dev.state;
    uint64_t wmax = 0, wtotal = 0;
    for (uint32_t i = 0; i < nb_simflash_sector_count(sd->sim); i++) {
        uint32_t e = nb_simflash_erase_count(sd->sim, i);
        wtotal += e;
        wmax = e > wmax ? e : wmax;
    }
    struct json j;
    ok_head(&j, "status", &cut);
    json_u64(&j, "seq", st->seq);
    cli_json_board(&j, sd);
    json_u64(&j, "active", st->active);
    json_u64(&j, "floor", st->floor);
    json_u64(&j, "attempt_limit", st->attempt_limit);
    json_str(&j, "op", cli_op_name(st->op));
    json_u64(&j, "op_pos", st->op_pos);
    json_u64(&j, "progress", st->progress);
    json_arr(&j, "slots");
    for (unsigned i = 0; i < nb_layout_slot_count(st->layout); i++)
        cli_json_slot(&j, NULL, sd, i);
    json_end(&j);
    json_obj(&j, "wear");
    json_u64(&j, "max", wmax);
    json_u64(&j, "total", wtotal);
    json_end(&j);
    json_emit(&j);
    cli_dev_close(sd);
    return 0;
}

static int cmd_lifecycle(int argc, char **argv)
{
    struct cli_opt o[] = {{"--flash", CLI_VALUE, 0, 0},
                          {"--set", CLI_VALUE, 0, 0}, CUT_OPTS};
    const char *c = "lifecycle";
    struct simdev *sd = NULL;
    struct cli_cut cut;
    int rc;
    rc = dev_cmd(c, argc, argv, o, NOPTS(o), usage_lifecycle, &cut, &sd);
    if (rc || !sd)
        return rc;
    uint8_t lc = cli_lifecycle(o[1].value), was = sd->dev.state.lifecycle;
    cli_cut_arm(sd, &cut);
    nb_err err = nb_device_set_lifecycle(&sd->dev, lc);
    if ((rc = cli_power_cut(sd, &cut)) >= 0)
        goto out;
    if (err == NB_ERR_DENIED)
        rc = cli_fail(CLI_EXIT_FAIL, err, "the lifecycle is production and "
                      "never goes back to development (that would reopen "
                      "downgrades on a fielded device)");
    else if (err)
        rc = cli_dev_error("lifecycle", sd, err);
    if (err)
        goto out;
    struct json j;
    ok_head(&j, c, &cut);
    json_str(&j, "lifecycle", nb_lifecycle_name(lc));
    json_str(&j, "previous", nb_lifecycle_name(was));
    json_bool(&j, "changed", lc != was);
    cli_json_ops(&j, sd);
    json_emit(&j);
    rc = 0;
out:
    cli_dev_close(sd);
    return rc;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
    } cmds[] = {
        {"init", cmd_init},         {"stage", cmd_stage},
        {"boot", cmd_boot},         {"confirm", cmd_confirm},
        {"status", cmd_status},     {"lifecycle", cmd_lifecycle},
        {"make-image", fleet_image_main}, {"sweep", sweep_main},
        {"replay", replay_main},        {"fleet", fleet_main},
    };
    if (argc < 2)
        return cli_usage(NULL, "missing command");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage_main, stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strcmp(argv[1], cmds[i].name) == 0)
            return cmds[i].run(argc - 1, argv + 1);
    return cli_usage(NULL, "unknown command '%s'", argv[1]);
}
