/* fleet_image.c - simulated firmware: the behaviour tag a payload carries,
 * TEST packages for several hardware revisions, and the make-image
 * command that writes them.
 *
 * The tag is the first 64 bytes of the payload (so it is covered by the
 * manifest's digests and signature like every other byte):
 *
 *   "NBSIMFW1 " BEHAVIOUR "\n", then zero bytes up to 64
 *
 * BEHAVIOUR is healthy, crash-on-boot, crash-on-hw:REV, health-fail or
 * no-server. A payload that does not start with the magic is healthy
 * (every package make-image wrote before the tag existed). The simulated
 * device reads the tag from the slot the bootloader started, after it
 * booted it (fleet_dev.c); the rest of the payload is the usual
 * reproducible xorshift stream of nb_testpkg.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "fleet.h"

#define MIB (1024u * 1024u)

static const char *const beh_names[FLEET_BEH_COUNT] = {
    "healthy", "crash-on-boot", "crash-on-hw", "health-fail", "no-server"};

/* A hardware revision as the manifest carries it: 1 to 32 printable
 * characters, no blank, no comma or colon (the separators of our lists). */
static int hw_rev_ok(const char *s, size_t n)
{
    if (n == 0 || n > NB_HW_REV_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~' || s[i] == ',' || s[i] == ':')
            return 0;
    return 1;
}

int fleet_behaviour_parse(const char *s, struct fleet_behaviour *b)
{
    memset(b, 0, sizeof(*b));
    const char *colon = strchr(s, ':');
    if (strncmp(s, "crash-on-hw:", 12) == 0) {
        if (!hw_rev_ok(s + 12, strlen(s + 12)))
            return -1;
        b->kind = FLEET_BEH_CRASH_ON_HW;
        memcpy(b->hw, s + 12, strlen(s + 12) + 1);
        return 0;
    }
    if (colon)
        return -1;
    for (unsigned i = 0; i < FLEET_BEH_COUNT; i++)
        if (i != FLEET_BEH_CRASH_ON_HW && strcmp(s, beh_names[i]) == 0) {
            b->kind = (uint8_t)i;
            return 0;
        }
    return -1;
}

void fleet_behaviour_str(const struct fleet_behaviour *b, char *out,
                         size_t cap)
{
    if (b->kind == FLEET_BEH_CRASH_ON_HW)
        snprintf(out, cap, "crash-on-hw:%s", b->hw);
    else
        snprintf(out, cap, "%s",
                 b->kind < FLEET_BEH_COUNT ? beh_names[b->kind] : "?");
}

void fleet_tag_decode(const uint8_t p[FLEET_TAG_SIZE],
                      struct fleet_behaviour *b, int *known)
{
    const size_t ml = sizeof(FLEET_TAG_MAGIC) - 1;
    char text[FLEET_TAG_SIZE];
    memset(b, 0, sizeof(*b));
    *known = 1;
    if (memcmp(p, FLEET_TAG_MAGIC, ml) != 0)
        return; /* an untagged payload: healthy */
    const uint8_t *nl = memchr(p + ml, '\n', FLEET_TAG_SIZE - ml);
    size_t n = nl ? (size_t)(nl - (p + ml)) : 0;
    memcpy(text, p + ml, n);
    text[n] = '\0';
    if (!nl || fleet_behaviour_parse(text, b) != 0) {
        memset(b, 0, sizeof(*b));
        *known = 0;
    }
}

int fleet_behaviour_crashes(const struct fleet_behaviour *b, const char *hw)
{
    return b->kind == FLEET_BEH_CRASH_ON_BOOT ||
           (b->kind == FLEET_BEH_CRASH_ON_HW && strcmp(b->hw, hw) == 0);
}

nb_err fleet_make_package(struct nb_testkeys *k, const struct nb_crypto *c,
                          uint32_t version, uint32_t svn,
                          uint32_t payload_size, uint64_t seed,
                          const struct fleet_behaviour *b,
                          const char *const *hw, unsigned hw_count,
                          struct nb_buf *out)
{
    struct nb_manifest_req req;
    struct nb_buf m = {0};
    if (hw_count > NB_MAX_HW_REVS || (b && payload_size < FLEET_TAG_SIZE))
        return NB_ERR_INVAL;
    uint8_t *payload = malloc(payload_size ? payload_size : 1);
    if (!payload)
        return NB_ERR_NOMEM;
    nb_testpkg_payload(payload, payload_size, seed);
    if (b) {
        /* magic (9) + at most "crash-on-hw:" and 32 characters + '\n' */
        char text[48];
        const size_t ml = sizeof(FLEET_TAG_MAGIC) - 1;
        fleet_behaviour_str(b, text, sizeof(text));
        size_t n = strlen(text);
        memset(payload, 0, FLEET_TAG_SIZE);
        memcpy(payload, FLEET_TAG_MAGIC, ml);
        memcpy(payload + ml, text, n);
        payload[ml + n] = '\n';
    }
    /* The same request as nb_testpkg_make, so that without a tag and
     * with hardware revision sim-1 the bytes are exactly its bytes. */
    memset(&req, 0, sizeof(req));
    nb_testpkg_vendor(req.vendor);
    nb_testpkg_class(req.class_id);
    if (hw_count == 0) {
        req.hw_count = 1;
        req.hw[0] = NB_TEST_HW_REV;
    } else {
        req.hw_count = hw_count;
        for (unsigned i = 0; i < hw_count; i++)
            req.hw[i] = hw[i];
    }
    req.major = nb_version_major(version);
    req.minor = nb_version_minor(version);
    req.patch = nb_version_patch(version);
    req.svn = svn;
    req.created = NB_TEST_CREATED;
    nb_err err = nb_build_manifest(c, &k->signer, k->delegation.p,
                                   k->delegation.len, &req, payload,
                                   payload_size, &m);
    if (!err)
        err = nb_build_package(c, m.p, m.len, payload, payload_size, out);
    nb_buf_free(&m);
    free(payload);
    return err;
}

/* ------------------------------------------------------------ make-image */

static const char usage_make_image[] =
    "usage: nobrick-sim make-image --version M.m.p --security-version N\n"
    "         --size BYTES --out PKG [--seed S] [--hw-revs REV,...]\n"
    "         [--behaviour B]\n"
    "\n"
    "Write a signed TEST package (.nbpkg, docs/package-format.md): BYTES\n"
    "bytes of reproducible payload and a manifest for the simulated device\n"
    "(vendor nb-test-vendor, class nb-test-class, hardware revision sim-1),\n"
    "signed with the simulator's TEST keys. Those keys are computed from\n"
    "public seeds: anyone can sign with them. They are for the simulator\n"
    "only, NEVER for real devices; real packages are made with 'nobrick\n"
    "package' and keys in an HSM. The same arguments always give the same\n"
    "bytes.\n"
    "  --version V           M and m 0 to 255, p 0 to 65535\n"
    "  --security-version N  0 to 4294967295\n"
    "  --size BYTES          payload bytes, 1 to 256 MiB (the file adds the\n"
    "                        container header, manifest and zero padding)\n"
    "  --out PKG             file to write (replaced if it exists)\n"
    "  --seed S              payload seed (default: from the version and\n"
    "                        security version)\n"
    "  --hw-revs LIST        hardware revisions the manifest lists, comma-\n"
    "                        separated, up to 16 (default sim-1)\n"
    "  --behaviour B         what the simulated firmware does when booted\n"
    "                        (nobrick-sim fleet): healthy, crash-on-boot,\n"
    "                        crash-on-hw:REV, health-fail or no-server; put\n"
    "                        as a tag in the first 64 payload bytes (--size\n"
    "                        at least 64). Without it the payload has no\n"
    "                        tag, which a simulated device runs as healthy.\n"
    "Output: size is the file's (and the slot's) package bytes; sha256 is\n"
    "the payload's SHA-256 as signed in the manifest; file_sha256 is what\n"
    "sha256sum prints; keys says \"test\" and warning repeats that the\n"
    "package is signed with the simulator's test keys.\n";

/* Split a comma list of hardware revisions into `names` (pointers into
 * `buf`). Returns the count, or -1. */
static int split_hw(const char *list, char *buf, size_t cap,
                    const char *names[NB_MAX_HW_REVS])
{
    int n = 0;
    if (strlen(list) >= cap)
        return -1;
    memcpy(buf, list, strlen(list) + 1);
    for (char *p = buf;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        if (n == NB_MAX_HW_REVS || !hw_rev_ok(p, strlen(p)))
            return -1;
        for (int i = 0; i < n; i++)
            if (strcmp(names[i], p) == 0)
                return -1;
        names[n++] = p;
        if (!comma)
            return n;
        p = comma + 1;
    }
}

int fleet_image_main(int argc, char **argv)
{
    struct cli_opt o[] = {
        {"--version", CLI_VALUE, 0, 0},
        {"--security-version", CLI_VALUE, 0, 0},
        {"--size", CLI_VALUE, 0, 0},
        {"--out", CLI_VALUE, 0, 0},
        {"--seed", CLI_VALUE, 0, 0},
        {"--hw-revs", CLI_VALUE, 0, 0},
        {"--behaviour", CLI_VALUE, 0, 0},
    };
    const char *c = "make-image";
    int rc = cli_parse(c, argc, argv, o, sizeof(o) / sizeof(o[0]));
    if (rc == 1) {
        fputs(usage_make_image, stdout);
        return 0;
    }
    if (rc)
        return rc;
    for (unsigned i = 0; i < 4; i++)
        if (!o[i].set)
            return cli_usage(c, "%s is required", o[i].name);
    uint32_t version;
    uint64_t svn, size, seed = 0;
    if (cli_version(c, "--version", o[0].value, &version) ||
        cli_u64(c, "--security-version", o[1].value, 0, UINT32_MAX, &svn) ||
        cli_u64(c, "--size", o[2].value, 1, 256 * MIB, &size) ||
        (o[4].set && cli_u64(c, "--seed", o[4].value, 0, UINT64_MAX, &seed)))
        return CLI_EXIT_USAGE;
    char hwbuf[NB_MAX_HW_REVS * (NB_HW_REV_MAX + 1) + 1];
    const char *hw[NB_MAX_HW_REVS];
    int hw_count = 0;
    if (o[5].set &&
        (hw_count = split_hw(o[5].value, hwbuf, sizeof(hwbuf), hw)) < 0)
        return cli_usage(c, "--hw-revs '%s': a comma-separated list of 1 to "
                         "16 different revisions, each 1 to 32 printable "
                         "characters without blanks, ',' or ':'",
                         o[5].value);
    struct fleet_behaviour beh;
    if (o[6].set && fleet_behaviour_parse(o[6].value, &beh) != 0)
        return cli_usage(c, "unknown --behaviour '%s' (healthy, "
                         "crash-on-boot, crash-on-hw:REV, health-fail or "
                         "no-server)", o[6].value);
    if (o[6].set && size < FLEET_TAG_SIZE)
        return cli_usage(c, "--behaviour needs --size of at least %u (the "
                         "tag is the first %u payload bytes)",
                         FLEET_TAG_SIZE, FLEET_TAG_SIZE);
    if (!o[4].set)
        seed = (uint64_t)version << 32 | svn;
    /* The simulator's TEST keys (nb_testpkg.h): public seeds, so a
     * simulated fleet and its replays see byte-identical packages. */
    struct nb_openssl_crypto oc;
    struct nb_crypto crypto;
    struct nb_testkeys keys;
    struct nb_manifest m;
    struct nb_buf pkg = {0};
    uint8_t digest[NB_SHA256_LEN];
    nb_err err = nb_crypto_openssl_init(&crypto, &oc);
    if (err)
        return cli_fail(CLI_EXIT_FAIL, err, "cannot set up the crypto port");
    if ((err = nb_testkeys_init(&keys, &crypto)) != NB_OK) {
        nb_crypto_openssl_free(&crypto, &oc);
        return cli_fail(CLI_EXIT_FAIL, err, "cannot derive the test keys");
    }
    err = fleet_make_package(&keys, &crypto, version, (uint32_t)svn,
                             (uint32_t)size, seed, o[6].set ? &beh : NULL,
                             hw, (unsigned)hw_count, &pkg);
    if (!err)
        err = nb_manifest_parse_unverified(
            &crypto, pkg.p + NB_PKG_HDR_SIZE,
            (uint32_t)pkg.p[8] | (uint32_t)pkg.p[9] << 8 |
                (uint32_t)pkg.p[10] << 16 | (uint32_t)pkg.p[11] << 24,
            &m);
    if (!err)
        err = nb_sha256(&crypto, pkg.p, pkg.len, digest);
    if (err) {
        rc = cli_fail(CLI_EXIT_FAIL, err, "cannot make the test package%s",
                      err == NB_ERR_NOSPC ? " (the manifest is too large)"
                                          : "");
        goto out;
    }
    FILE *f = fopen(o[3].value, "wb");
    if (!f) {
        rc = cli_fail(CLI_EXIT_FAIL, errno == ENOENT ? NB_ERR_NOENT
                      : NB_ERR_IO, "%s: cannot create: %s", o[3].value,
                      strerror(errno));
        goto out;
    }
    int bad = fwrite(pkg.p, 1, pkg.len, f) != pkg.len;
    bad |= fclose(f) != 0;
    if (bad) {
        unlink(o[3].value);
        rc = cli_fail(CLI_EXIT_FAIL, NB_ERR_IO, "%s: write failed (disk "
                      "full?)", o[3].value);
        goto out;
    }
    struct json j;
    json_init(&j);
    json_bool(&j, "ok", 1);
    json_str(&j, "command", c);
    json_str(&j, "out", o[3].value);
    json_version(&j, "version", version);
    json_u64(&j, "security_version", svn);
    json_u64(&j, "payload_size", size);
    json_u64(&j, "size", pkg.len);
    json_u64(&j, "manifest_size", m.len);
    json_u64(&j, "payload_offset", m.payload_offset);
    json_u64(&j, "block_size", m.block_size);
    json_hex(&j, "key_id", m.kid, NB_KEY_ID_LEN);
    json_str(&j, "keys", "test");
    json_str(&j, "warning", "signed with the simulator's TEST keys (public "
             "seeds): for nobrick-sim only, never for real devices");
    json_hex(&j, "sha256", m.digest, NB_SHA256_LEN);
    json_hex(&j, "file_sha256", digest, NB_SHA256_LEN);
    json_arr(&j, "hw_revs");
    if (hw_count == 0)
        json_str(&j, NULL, NB_TEST_HW_REV);
    for (int i = 0; i < hw_count; i++)
        json_str(&j, NULL, hw[i]);
    json_end(&j);
    if (o[6].set) {
        char text[48];
        fleet_behaviour_str(&beh, text, sizeof(text));
        json_str(&j, "behaviour", text);
    }
    json_emit(&j);
out:
    nb_buf_free(&pkg);
    nb_testkeys_free(&keys);
    nb_crypto_openssl_free(&crypto, &oc);
    return rc;
}
