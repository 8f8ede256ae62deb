/* package.c - `nobrick package`: sign a payload into a .nbpkg (and,
 * optionally, the detached manifest), with a signing key in the token and
 * the delegation that certifies it.
 *
 * Before anything is signed, the delegation is checked the way a device
 * will check it: it must name this signing key, be valid now, and allow
 * the vendor and class. That check is the core's own parser run over a
 * dry-run manifest with a dummy signature, so the tool and the devices
 * can never disagree about what a delegation allows.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nobrick.h"

#define PAYLOAD_MAX 0xFFFFFFFFu

static const char usage_package[] =
    "usage: nobrick package (--key L | --insecure-key-file F) --delegation D\n"
    "         --in FW.bin --version M.m.p --security-version N\n"
    "         --hw-rev A[,B...] --vendor UUID --class UUID --out FW.nbpkg\n"
    "         [--block-size N] [--payload-offset N] [--manifest-out FW.nbman]\n"
    "\n"
    "Sign the payload FW.bin into a package (docs/package-format.md): a\n"
    "manifest signed by the signing key, carrying its delegation, then the\n"
    "payload. Refuses, before signing, a delegation that does not certify\n"
    "this key, is not valid now, or does not allow the vendor or class.\n"
    "\n"
    "  --key L                signing key in the token\n"
    "  --insecure-key-file F  the signing key from a PEM file instead (tests\n"
    "                         only; prints a warning)\n"
    "  --delegation D         the key's delegation ('nobrick key delegate')\n"
    "  --in FW.bin            the payload, 1 byte to 4 GiB - 1\n"
    "  --version M.m.p        major, minor 0-255, patch 0-65535\n"
    "  --security-version N   0 to 4294967295; devices in production refuse\n"
    "                         a package below the highest they confirmed\n"
    "  --hw-rev A,B           compatible hardware revisions, 1 to 16, each\n"
    "                         1 to 32 bytes\n"
    "  --vendor UUID          vendor ID (8-4-4-4-12 hex digits)\n"
    "  --class UUID           device class ID\n"
    "  --out FW.nbpkg         the package\n"
    "  --block-size N         bytes per checked block: a power of two, 256 to\n"
    "                         1048576 (default: 4096 or more, at most 256\n"
    "                         blocks)\n"
    "  --payload-offset N     where the payload starts in the package (and\n"
    "                         the slot), for images linked to execute in\n"
    "                         place; signed (default: the first multiple of\n"
    "                         512 after the manifest)\n"
    "  --manifest-out F       also write the manifest alone (detached use)\n"
    "  --created UNIX         TESTING ONLY: sign this creation time instead\n"
    "                         of now. The delegation must still be valid\n"
    "                         now, but the time given is not checked against\n"
    "                         it, so this makes packages that verifiers\n"
    "                         refuse (NB_ERR_EXPIRED).\n"
    "\n"
    "token options: --token LABEL, --module PATH, --pin PIN (else\n"
    "NOBRICK_PIN, else a prompt): see 'nobrick key generate --help'.\n";

/* A signer that signs nothing: for the dry run, whose signature nobody
 * checks. */
static nb_err zero_sign(void *ctx, const uint8_t hash[NB_SHA256_LEN],
                        uint8_t sig[NB_SIG_LEN])
{
    (void)ctx;
    (void)hash;
    memset(sig, 0, NB_SIG_LEN);
    return NB_OK;
}

static int parse_hw(const char *cmd, char *s, struct nb_manifest_req *r)
{
    r->hw_count = 0;
    for (char *p = s;;) {
        size_t len = strcspn(p, ",");
        if (r->hw_count >= NB_MAX_HW_REVS)
            return usage_err(cmd, "--hw-rev: more than %d revisions",
                             NB_MAX_HW_REVS);
        if (len == 0 || len > NB_HW_REV_MAX)
            return usage_err(cmd, "--hw-rev: '%.*s': a revision is 1 to %d "
                             "bytes",
                             (int)len, p, NB_HW_REV_MAX);
        for (unsigned k = 0; k < r->hw_count; k++)
            if (strlen(r->hw[k]) == len && memcmp(r->hw[k], p, len) == 0)
                return usage_err(cmd, "--hw-rev: '%.*s' given twice",
                                 (int)len, p);
        r->hw[r->hw_count++] = p;
        if (!p[len])
            return 0;
        p[len] = '\0'; /* the option's own string: split in place */
        p += len + 1;
    }
}

/* Say precisely why the delegation does not allow this package. */
static int delegation_refused(struct ctx *g, const char *dpath, nb_err err,
                              const struct nb_manifest *m, const char *kdesc,
                              const uint8_t pub[NB_PUBKEY_LEN], uint64_t now)
{
    const struct nb_delegation *d = &m->delegation;
    char a[40], b[40], kid[2 * NB_KEY_ID_LEN + 1], dkid[2 * NB_KEY_ID_LEN + 1];
    switch (err) {
    case NB_ERR_UNKNOWN_KEY:
        key_id_hex(g, pub, kid);
        fmt_hex(d->kid, NB_KEY_ID_LEN, dkid);
        return fail("%s: %s: the delegation certifies key ID %s, not %s "
                    "(key ID %s)",
                    dpath, nb_err_name(err), dkid, kdesc, kid);
    case NB_ERR_EXPIRED:
        fmt_time(d->not_before, a);
        fmt_time(d->not_after, b);
        return fail("%s: %s: the delegation is %s (valid from %s to %s); "
                    "ask the root key holder for a new one",
                    dpath, nb_err_name(err),
                    now < d->not_before ? "not valid yet" : "expired", a, b);
    case NB_ERR_VENDOR:
        fmt_uuid(m->vendor, a);
        fmt_uuid(d->vendor, b);
        return fail("%s: %s: the delegation does not allow vendor %s (only "
                    "%s)",
                    dpath, nb_err_name(err), a, b);
    case NB_ERR_CLASS:
        fmt_uuid(m->class_id, a);
        return fail("%s: %s: the delegation does not allow class %s (it "
                    "allows %u class%s; 'nobrick inspect' lists them)",
                    dpath, nb_err_name(err), a, (unsigned)d->class_count,
                    d->class_count == 1 ? "" : "es");
    default:
        return fail("%s: %s: not a valid delegation (make one with 'nobrick "
                    "key delegate')",
                    dpath, nb_err_name(err));
    }
}

int cmd_package(struct ctx *g, int argc, char **argv)
{
    const char *cmd = "package";
    enum {
        KEY, KEYFILE, DELEG, IN, VERSION, SVN, HW, VENDOR, CLASS, OUT,
        BLOCK, OFFSET, MOUT, CREATED
    };
    struct opt o[] = {
        [KEY] = {.name = "--key", .kind = OPT_VALUE},
        [KEYFILE] = {.name = "--insecure-key-file", .kind = OPT_VALUE},
        [DELEG] = {.name = "--delegation", .kind = OPT_VALUE},
        [IN] = {.name = "--in", .kind = OPT_VALUE},
        [VERSION] = {.name = "--version", .kind = OPT_VALUE},
        [SVN] = {.name = "--security-version", .kind = OPT_VALUE},
        [HW] = {.name = "--hw-rev", .kind = OPT_VALUE},
        [VENDOR] = {.name = "--vendor", .kind = OPT_VALUE},
        [CLASS] = {.name = "--class", .kind = OPT_VALUE},
        [OUT] = {.name = "--out", .kind = OPT_VALUE},
        [BLOCK] = {.name = "--block-size", .kind = OPT_VALUE},
        [OFFSET] = {.name = "--payload-offset", .kind = OPT_VALUE},
        [MOUT] = {.name = "--manifest-out", .kind = OPT_VALUE},
        [CREATED] = {.name = "--created", .kind = OPT_VALUE},
    };
    size_t npos;
    int rc = parse_opts(g, cmd, argc, argv, o, NOPTS(o), NULL, 0, &npos);
    if (rc == 1)
        return fputs(usage_package, stdout), EXIT_OK;
    if (rc)
        return rc;
    if (o[KEY].set == o[KEYFILE].set)
        return usage_err(cmd, "give --key (the signing key in the token) or "
                              "--insecure-key-file, not both");
    for (int i = DELEG; i <= OUT; i++)
        if (!o[i].set)
            return usage_err(cmd, "%s is required", o[i].name);

    struct nb_manifest_req req;
    uint64_t v, now = (uint64_t)time(NULL), created = now;
    uint32_t ver[3];
    memset(&req, 0, sizeof(req));
    if (parse_version(cmd, "--version", o[VERSION].value, ver))
        return EXIT_USAGE;
    req.major = ver[0];
    req.minor = ver[1];
    req.patch = ver[2];
    if (parse_u64(cmd, "--security-version", o[SVN].value, 0, UINT32_MAX, &v))
        return EXIT_USAGE;
    req.svn = (uint32_t)v;
    if (parse_hw(cmd, o[HW].value, &req) ||
        parse_uuid(cmd, "--vendor", o[VENDOR].value, req.vendor) ||
        parse_uuid(cmd, "--class", o[CLASS].value, req.class_id))
        return EXIT_USAGE;
    if (o[BLOCK].set) {
        if (parse_u64(cmd, "--block-size", o[BLOCK].value, 256, 1048576, &v))
            return EXIT_USAGE;
        if (v & (v - 1))
            return usage_err(cmd, "--block-size: %" PRIu64
                             " is not a power of two", v);
        req.block_size = (uint32_t)v;
    }
    if (o[OFFSET].set) {
        if (parse_u64(cmd, "--payload-offset", o[OFFSET].value,
                      NB_PKG_HDR_SIZE + 1, NB_PAYLOAD_OFFSET_MAX, &v))
            return EXIT_USAGE;
        req.payload_offset = (uint32_t)v;
    }
    if (o[CREATED].set &&
        parse_u64(cmd, "--created", o[CREATED].value, 0, UINT32_MAX,
                  &created))
        return EXIT_USAGE;
    req.payload_format = NB_PAYLOAD_RAW;

    uint8_t *payload = NULL, *deleg = NULL;
    size_t plen, dlen;
    struct key k;
    struct nb_buf man = {0}, pkg = {0};
    struct nb_manifest m;
    nb_err err;
    memset(&k, 0, sizeof(k));
    rc = EXIT_FAIL;
    if (read_file(o[DELEG].value, NB_MANIFEST_MAX, &deleg, &dlen) ||
        read_file(o[IN].value, PAYLOAD_MAX, &payload, &plen))
        goto out;
    if (plen == 0) {
        fail("%s: empty: a payload has at least one byte", o[IN].value);
        goto out;
    }
    /* A token key's public half needs no PIN: check the delegation before
     * asking for one. A key file is simply loaded. */
    struct nb_signer dummy = {.ctx = NULL, .sign = zero_sign};
    if (o[KEY].set) {
        char desc[128];
        if (pub_open(g, o[KEY].value, NULL, dummy.pub, desc, sizeof(desc)))
            goto out;
        snprintf(k.desc, sizeof(k.desc), "%s", desc);
    } else {
        if (key_open(g, NULL, o[KEYFILE].value, &k))
            goto out;
        memcpy(dummy.pub, k.signer.pub, NB_PUBKEY_LEN);
    }

    /* Dry run: what the device's parser says of this delegation, now. */
    req.created = now;
    err = nb_build_manifest(&g->crypto, &dummy, deleg, dlen, &req, payload,
                            plen, &man);
    if (err == NB_ERR_NOSPC && req.payload_offset) {
        fail("--payload-offset %" PRIu32 " is too small: the header and the "
             "manifest do not fit before it",
             req.payload_offset);
        goto out;
    }
    if (err) {
        fail("cannot build the manifest: %s", nb_err_name(err));
        goto out;
    }
    if (man.len > NB_MANIFEST_MAX) {
        fail("the manifest would be %zu bytes, more than %u: use a larger "
             "--block-size (fewer block digests) or a smaller delegation",
             man.len, NB_MANIFEST_MAX);
        goto out;
    }
    /* On a policy refusal the core has parsed the whole delegation into
     * m.delegation before it says no: the message can show it. */
    err = nb_manifest_parse_unverified(&g->crypto, man.p, (uint32_t)man.len,
                                       &m);
    if (!err)
        err = nb_manifest_check_delegation(&m);
    if (err) {
        delegation_refused(g, o[DELEG].value, err, &m, k.desc, dummy.pub,
                           now);
        goto out;
    }
    if (o[KEY].set) {
        if (key_open(g, o[KEY].value, NULL, &k))
            goto out;
        if (memcmp(k.signer.pub, dummy.pub, NB_PUBKEY_LEN) != 0) {
            fail("%s changed while it was used", k.desc);
            goto out;
        }
    }

    if (o[CREATED].set) {
        char t[32];
        fmt_time(created, t);
        warn("--created is for testing: signing creation time %s, not now",
             t);
    }
    req.created = created;
    nb_buf_free(&man);
    g->p11.msg[0] = '\0';
    err = nb_build_manifest(&g->crypto, &k.signer, deleg, dlen, &req, payload,
                            plen, &man);
    if (err) {
        sign_fail(g, "the manifest", &k, err);
        goto out;
    }
    err = nb_build_package(&g->crypto, man.p, man.len, payload, plen, &pkg);
    if (err) {
        fail("cannot build the package: %s", nb_err_name(err));
        goto out;
    }
    if (write_file(o[OUT].value, pkg.p, pkg.len, 0644) ||
        (o[MOUT].set && write_file(o[MOUT].value, man.p, man.len, 0644)))
        goto out;

    err = nb_manifest_parse_unverified(&g->crypto, man.p, (uint32_t)man.len,
                                       &m);
    nb_err policy = err ? err : nb_manifest_check_delegation(&m);
    char vs[16], kid[2 * NB_KEY_ID_LEN + 1];
    fmt_version(m.version, vs);
    key_id_hex(g, k.signer.pub, kid);
    printf("wrote %s (%zu bytes): version %s, security version %" PRIu32
           ", %zu-byte payload at offset %" PRIu32 " in %" PRIu32
           " block%s of %" PRIu32 ", signed by %s (key ID %s)\n",
           o[OUT].value, pkg.len, vs, m.svn, plen, m.payload_offset,
           m.block_count, m.block_count == 1 ? "" : "s", m.block_size, k.desc,
           kid);
    if (o[MOUT].set)
        printf("wrote %s (%zu bytes): the manifest alone\n", o[MOUT].value,
               man.len);
    if (policy)
        warn("verifiers will refuse this package: %s (the creation time is "
             "outside the delegation)",
             nb_err_name(policy));
    rc = EXIT_OK;
out:
    key_close(&k);
    nb_buf_free(&man);
    nb_buf_free(&pkg);
    free(payload);
    free(deleg);
    return rc;
}
