/* inspect.c - `nobrick inspect` (show every field, verifying nothing) and
 * `nobrick verify` (exit 0 only for a valid package, else the exact
 * reason).
 *
 * verify checks a package file as a device checks a slot, in the order of
 * docs/package-format.md: container header, manifest and delegation
 * signatures against the --root-pub keys (nb_manifest_verify), the
 * revocation list, the device identity given on the command line, then
 * the layout (file length exactly offset + payload size, zero padding)
 * and the payload (each block, then the whole SHA-256). The core's
 * nb_pkg_verify_slot does the same over a flash slot; a file has no
 * erased tail and its identity checks are optional here, so the steps are
 * composed from the same core calls instead.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nobrick.h"

#define FILE_MAX (0xFFFFFFFFull + NB_PAYLOAD_OFFSET_MAX)
#define KID_HEX (2 * NB_KEY_ID_LEN + 1)

static const char *format_name(uint8_t f)
{
    switch (f) {
    case NB_PAYLOAD_RAW: return "raw";
    case NB_PAYLOAD_ZSTD: return "zstd";
    case NB_PAYLOAD_LZ4: return "lz4";
    case NB_PAYLOAD_DELTA: return "delta";
    case NB_PAYLOAD_ENCRYPTED: return "encrypted";
    default: return "unknown";
    }
}

/* A whole file and where its manifest is. */
struct file {
    const char *path;
    uint8_t *buf;
    size_t len;
    int is_pkg;          /* container; else a bare manifest (.nbman) */
    const uint8_t *man;  /* manifest bytes */
    uint32_t mlen;
};

/* Read `path` and find the manifest: a container (magic "NBPK") or a
 * bare manifest (a tagged COSE_Sign1, first byte 0xD2). Container header
 * errors and a file too short for its manifest come back as nb_err in
 * *err with *what saying where. */
static int load(const char *path, struct file *f, nb_err *err,
                const char **what)
{
    memset(f, 0, sizeof(*f));
    f->path = path;
    *err = NB_OK;
    *what = NULL;
    if (read_file(path, FILE_MAX, &f->buf, &f->len))
        return EXIT_FAIL;
    if (memcmp(f->buf, "NBPK", f->len < 4 ? f->len : 4) == 0) {
        f->is_pkg = 1;
        if (f->len < NB_PKG_HDR_SIZE) {
            *err = NB_ERR_TRUNCATED;
            *what = "the file ends inside the 12-byte container header";
            return 0;
        }
        if ((*err = nb_pkg_parse_header(f->buf, &f->mlen))) {
            *what = *err == NB_ERR_UNSUPPORTED
                        ? "the container version is not 1"
                        : "the container header is not valid (reserved "
                          "bytes not zero, or manifest length not 1 to "
                          "16384)";
            return 0;
        }
        if (f->len < NB_PKG_HDR_SIZE + (size_t)f->mlen) {
            *err = NB_ERR_TRUNCATED;
            *what = "the file ends inside the manifest";
            return 0;
        }
        f->man = f->buf + NB_PKG_HDR_SIZE;
        return 0;
    }
    if (f->len >= 1 && f->buf[0] == 0xD2) {
        if (f->len > NB_MANIFEST_MAX) {
            *err = NB_ERR_NOSPC;
            *what = "a manifest is at most 16384 bytes";
            return 0;
        }
        f->man = f->buf;
        f->mlen = (uint32_t)f->len;
        return 0;
    }
    *err = NB_ERR_MALFORMED;
    *what = "neither a package (magic \"NBPK\") nor a manifest (a tagged "
            "COSE_Sign1)";
    return 0;
}

/* What a manifest error means, in a sentence. */
static const char *manifest_problem(nb_err err)
{
    switch (err) {
    case NB_ERR_MALFORMED:
        return "the manifest or its delegation is not well-formed";
    case NB_ERR_TRUNCATED:
        return "the manifest ends before one of its items does";
    case NB_ERR_TRAILING:
        return "bytes follow the end of an item of the manifest";
    case NB_ERR_DUPLICATE: return "a key appears twice in a map";
    case NB_ERR_UNKNOWN_FIELD:
        return "the manifest has a critical field (or header) this verifier "
               "does not know";
    case NB_ERR_UNSUPPORTED:
        return "the manifest uses a format version, algorithm or payload "
               "format this verifier does not support";
    case NB_ERR_SIGNATURE:
        return "a signature does not verify: the manifest or its delegation "
               "was altered, or signed by another key";
    case NB_ERR_UNKNOWN_KEY:
        return "the manifest is signed by a key its delegation does not "
               "certify";
    case NB_ERR_EXPIRED:
        return "the delegation was not valid when the manifest was created";
    case NB_ERR_REVOKED: return "the signing key is revoked";
    case NB_ERR_VENDOR:
        return "the delegation does not allow the manifest's vendor ID";
    case NB_ERR_CLASS:
        return "the delegation does not allow the manifest's class ID";
    case NB_ERR_NOSPC: return "the manifest is larger than 16384 bytes";
    default: return "the manifest cannot be read";
    }
}

/* ------------------------------------------------------------- inspect */

static const char usage_inspect[] =
    "usage: nobrick inspect FILE [--json]\n"
    "\n"
    "Show every field of a package (.nbpkg) or a detached manifest (.nbman):\n"
    "container, manifest, delegation. NOTHING IS VERIFIED: signatures,\n"
    "trust and the payload digest are not checked, so this shows what the\n"
    "file claims. Use 'nobrick verify' to decide whether to trust it.\n"
    "\n"
    "  --json   one JSON object instead of text (\"verified\": false)\n";

static void text_field(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void text_field(const char *name, const char *fmt, ...)
{
    va_list ap;
    printf("  %-20s ", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

static void show_text(struct ctx *g, const struct file *f,
                      const struct nb_manifest *m, nb_err problem)
{
    char u[37], h[2 * NB_SHA256_LEN + 1], t[32], vs[16];
    const struct nb_delegation *d = &m->delegation;
    printf("%s: nobrick %s -- NOT VERIFIED: inspect shows what the file "
           "claims; run 'nobrick verify' to check it\n",
           f->path, f->is_pkg ? "package" : "manifest (detached)");
    if (f->is_pkg) {
        uint32_t pad = m->payload_offset - NB_PKG_HDR_SIZE - f->mlen;
        size_t zero = 0;
        const uint8_t *p = f->man + f->mlen;
        size_t avail = f->len - NB_PKG_HDR_SIZE - f->mlen;
        for (size_t i = 0; i < pad && i < avail && !p[i]; i++)
            zero++;
        uint64_t want = (uint64_t)m->payload_offset + m->payload_size;
        printf("container\n");
        text_field("magic", "NBPK");
        text_field("version", "%u", f->buf[4]);
        text_field("manifest length", "%" PRIu32 " bytes", f->mlen);
        text_field("padding", "%" PRIu32 " bytes, %s", pad,
                   zero == pad ? "all zero" : "NOT all zero");
        text_field("file size", "%zu bytes (%s: offset + payload size = %"
                   PRIu64 ")",
                   f->len,
                   f->len == want ? "exact"
                   : f->len < want ? "TOO SHORT"
                                   : "TOO LONG",
                   want);
    }
    printf("manifest\n");
    text_field("format version", "%u", NB_MANIFEST_FORMAT);
    fmt_uuid(m->vendor, u);
    text_field("vendor ID", "%s", u);
    fmt_uuid(m->class_id, u);
    text_field("class ID", "%s", u);
    printf("  %-20s ", "hardware revisions");
    for (unsigned i = 0; i < m->hw_count; i++) {
        if (i)
            fputs(", ", stdout);
        print_escaped((const char *)f->man + m->hw_off[i], m->hw_len[i]);
    }
    putchar('\n');
    fmt_version(m->version, vs);
    text_field("version", "%s", vs);
    text_field("security version", "%" PRIu32, m->svn);
    text_field("payload size", "%" PRIu32 " bytes", m->payload_size);
    fmt_hex(m->digest, NB_SHA256_LEN, h);
    text_field("payload SHA-256", "%s", h);
    text_field("payload offset", "%" PRIu32, m->payload_offset);
    text_field("block size", "%" PRIu32 " bytes", m->block_size);
    text_field("block count", "%" PRIu32, m->block_count);
    for (uint32_t i = 0; i < m->block_count; i++) {
        fmt_hex(nb_manifest_block_digest(m, f->man, i), NB_SHA256_LEN, h);
        printf("  %-20s %" PRIu32 ": %s\n", i ? "" : "block SHA-256", i, h);
    }
    text_field("payload format", "%s (%u)", format_name(m->payload_format),
               m->payload_format);
    if (m->has_precursor)
        fmt_hex(m->precursor, NB_SHA256_LEN, h);
    text_field("precursor SHA-256", "%s", m->has_precursor ? h : "none");
    fmt_time(m->created, t);
    text_field("created", "%s (%" PRIu64 ")", t, m->created);
    fmt_hex(m->kid, NB_KEY_ID_LEN, h);
    text_field("signer key ID", "%s", h);
    printf("delegation\n");
    fmt_hex(d->root_kid, NB_KEY_ID_LEN, h);
    text_field("root key ID", "%s (signed it)", h);
    fmt_hex(d->kid, NB_KEY_ID_LEN, h);
    text_field("key ID", "%s", h);
    char pub[2 * NB_PUBKEY_LEN + 1];
    fmt_hex(d->pub, NB_PUBKEY_LEN, pub);
    text_field("public key", "%s", pub);
    fmt_time(d->not_before, t);
    text_field("not before", "%s (%" PRIu64 ")", t, d->not_before);
    fmt_time(d->not_after, t);
    text_field("not after", "%s (%" PRIu64 ")", t, d->not_after);
    fmt_uuid(d->vendor, u);
    text_field("vendor ID", "%s", u);
    if (!d->class_count)
        text_field("class IDs", "any class of the vendor");
    for (unsigned i = 0; i < d->class_count; i++) {
        fmt_uuid(d->classes[i], u);
        printf("  %-20s %s\n", i ? "" : "class IDs", u);
    }
    if (problem)
        printf("problem: %s: %s\n", nb_err_name(problem),
               manifest_problem(problem));
    (void)g;
}

static void show_json(const struct file *f, const struct nb_manifest *m,
                      nb_err problem)
{
    struct jw j;
    char u[37], t[32], vs[16];
    const struct nb_delegation *d = &m->delegation;
    jw_begin(&j);
    jw_bool(&j, "verified", 0);
    jw_str(&j, "note",
           "inspect does not verify: signatures, trust and the payload "
           "digest are not checked; use nobrick verify");
    jw_str(&j, "file", f->path);
    jw_str(&j, "kind", f->is_pkg ? "package" : "manifest");
    jw_u64(&j, "file_size", f->len);
    if (problem)
        jw_str(&j, "problem", nb_err_name(problem));
    else
        jw_null(&j, "problem");
    if (f->is_pkg) {
        uint32_t pad = m->payload_offset - NB_PKG_HDR_SIZE - f->mlen;
        size_t avail = f->len - NB_PKG_HDR_SIZE - f->mlen, zero = 0;
        const uint8_t *p = f->man + f->mlen;
        for (size_t i = 0; i < pad && i < avail && !p[i]; i++)
            zero++;
        jw_obj(&j, "container");
        jw_u64(&j, "version", f->buf[4]);
        jw_u64(&j, "manifest_length", f->mlen);
        jw_u64(&j, "payload_offset", m->payload_offset);
        jw_u64(&j, "padding", pad);
        jw_bool(&j, "padding_zero", zero == pad);
        jw_bool(&j, "length_exact", f->len == (uint64_t)m->payload_offset +
                                                  m->payload_size);
        jw_close(&j, '}');
    }
    jw_obj(&j, "manifest");
    jw_u64(&j, "format_version", NB_MANIFEST_FORMAT);
    fmt_uuid(m->vendor, u);
    jw_str(&j, "vendor_id", u);
    fmt_uuid(m->class_id, u);
    jw_str(&j, "class_id", u);
    jw_arr(&j, "hw_revisions");
    for (unsigned i = 0; i < m->hw_count; i++)
        jw_strn(&j, NULL, (const char *)f->man + m->hw_off[i], m->hw_len[i]);
    jw_close(&j, ']');
    fmt_version(m->version, vs);
    jw_str(&j, "version", vs);
    jw_u64(&j, "version_packed", m->version);
    jw_u64(&j, "security_version", m->svn);
    jw_u64(&j, "payload_size", m->payload_size);
    jw_hex(&j, "payload_sha256", m->digest, NB_SHA256_LEN);
    jw_u64(&j, "payload_offset", m->payload_offset);
    jw_u64(&j, "block_size", m->block_size);
    jw_u64(&j, "block_count", m->block_count);
    jw_arr(&j, "block_sha256");
    for (uint32_t i = 0; i < m->block_count; i++)
        jw_hex(&j, NULL, nb_manifest_block_digest(m, f->man, i),
               NB_SHA256_LEN);
    jw_close(&j, ']');
    jw_str(&j, "payload_format", format_name(m->payload_format));
    if (m->has_precursor)
        jw_hex(&j, "precursor_sha256", m->precursor, NB_SHA256_LEN);
    else
        jw_null(&j, "precursor_sha256");
    jw_u64(&j, "created", m->created);
    fmt_time(m->created, t);
    jw_str(&j, "created_utc", t);
    jw_hex(&j, "signer_key_id", m->kid, NB_KEY_ID_LEN);
    jw_close(&j, '}');
    jw_obj(&j, "delegation");
    jw_hex(&j, "root_key_id", d->root_kid, NB_KEY_ID_LEN);
    jw_hex(&j, "key_id", d->kid, NB_KEY_ID_LEN);
    jw_hex(&j, "public_key", d->pub, NB_PUBKEY_LEN);
    jw_u64(&j, "not_before", d->not_before);
    fmt_time(d->not_before, t);
    jw_str(&j, "not_before_utc", t);
    jw_u64(&j, "not_after", d->not_after);
    fmt_time(d->not_after, t);
    jw_str(&j, "not_after_utc", t);
    fmt_uuid(d->vendor, u);
    jw_str(&j, "vendor_id", u);
    jw_arr(&j, "class_ids");
    for (unsigned i = 0; i < d->class_count; i++) {
        fmt_uuid(d->classes[i], u);
        jw_str(&j, NULL, u);
    }
    jw_close(&j, ']');
    jw_close(&j, '}');
    jw_end_doc(&j);
}

int cmd_inspect(struct ctx *g, int argc, char **argv)
{
    const char *cmd = "inspect";
    struct opt o[] = {{.name = "--json", .kind = OPT_FLAG}};
    char *pos[1];
    size_t npos;
    int rc = parse_opts(g, cmd, argc, argv, o, NOPTS(o), pos, 1, &npos);
    if (rc == 1)
        return fputs(usage_inspect, stdout), EXIT_OK;
    if (rc)
        return rc;
    if (npos != 1)
        return usage_err(cmd, "which file?");
    struct file f;
    nb_err err;
    const char *what;
    if (load(pos[0], &f, &err, &what))
        return EXIT_FAIL;
    if (err) {
        free(f.buf);
        return fail("%s: %s: %s", pos[0], nb_err_name(err), what);
    }
    struct nb_manifest m;
    err = nb_manifest_parse_unverified(&g->crypto, f.man, f.mlen, &m);
    /* The delegation's policy is checked over parsed fields: show them
     * with the problem noted. Anything else left the fields unparsed. */
    if (!err)
        err = nb_manifest_check_delegation(&m);
    if (err && err != NB_ERR_EXPIRED && err != NB_ERR_VENDOR &&
        err != NB_ERR_CLASS && err != NB_ERR_UNKNOWN_KEY) {
        free(f.buf);
        return fail("%s: %s: %s", pos[0], nb_err_name(err),
                    manifest_problem(err));
    }
    if (o[0].set)
        show_json(&f, &m, err);
    else
        show_text(g, &f, &m, err);
    free(f.buf);
    return fflush(stdout) ? fail("stdout: write failed") : EXIT_OK;
}

/* -------------------------------------------------------------- verify */

static const char usage_verify[] =
    "usage: nobrick verify --root-pub ROOT.pem [--root-pub MORE.pem ...]\n"
    "         [--hw-rev R] [--vendor UUID] [--class UUID]\n"
    "         [--revocations R.cose] FW.nbpkg\n"
    "       nobrick verify --root-pub ROOT.pem ... --manifest FW.nbman\n"
    "         --payload FW.bin\n"
    "\n"
    "Check a package as a device does: the delegation's signature by one of\n"
    "the root keys, the key not revoked, the manifest's signature by the\n"
    "delegated key, every manifest field, the creation time within the\n"
    "delegation, vendor and class allowed by it, then the container (file\n"
    "length exactly payload offset + payload size, zero padding) and the\n"
    "payload (every block digest and the SHA-256). Detached: the manifest\n"
    "and the payload as two files.\n"
    "\n"
    "  --root-pub F       a trusted root public key (PEM); repeatable\n"
    "  --hw-rev R         the device's hardware revision: must be listed\n"
    "  --vendor UUID      the device's vendor ID: must be the package's\n"
    "  --class UUID       the device's class ID: must be the package's\n"
    "  --revocations F    a revocation list signed by a root key: packages\n"
    "                     signed by a key it lists are refused\n"
    "\n"
    "Does NOT check the security version against a device's floor, nor the\n"
    "delegation against today's date (a device compares the creation time).\n"
    "\n"
    "exit status: 0 valid; 1 not valid, with one line\n"
    "'nobrick: FILE: NB_ERR_...: reason' on stderr; 64 bad command line.\n";

#define MAX_ROOTS MULTI_MAX

struct roots {
    unsigned n;
    uint8_t kid[MAX_ROOTS][NB_KEY_ID_LEN];
    uint8_t pub[MAX_ROOTS][NB_PUBKEY_LEN];
};

static nb_err root_key(void *ctx, const uint8_t kid[NB_KEY_ID_LEN],
                       uint8_t pub[NB_PUBKEY_LEN])
{
    const struct roots *r = ctx;
    for (unsigned i = 0; i < r->n; i++)
        if (memcmp(r->kid[i], kid, NB_KEY_ID_LEN) == 0) {
            memcpy(pub, r->pub[i], NB_PUBKEY_LEN);
            return NB_OK;
        }
    return NB_ERR_UNKNOWN_KEY;
}

/* "nobrick: FILE: NB_ERR_X: sentence" and exit 1. */
static int invalid(const char *path, nb_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int invalid(const char *path, nb_err err, const char *fmt, ...)
{
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return fail("%s: %s: %s", path, nb_err_name(err), msg);
}

/* Why nb_manifest_verify said no, with the fields that say so. */
static int manifest_invalid(struct ctx *g, const char *path, nb_err err,
                            const struct file *f, const struct roots *roots,
                            const struct nb_revocations *rev,
                            const char *rev_path)
{
    struct nb_manifest m;
    char h[KID_HEX], a[40], b[40], c[40];
    nb_err perr = nb_manifest_parse_unverified(&g->crypto, f->man, f->mlen,
                                               &m);
    const struct nb_delegation *d = &m.delegation;
    (void)perr; /* the fields below are filled when err says they were */
    switch (err) {
    case NB_ERR_UNKNOWN_KEY: {
        uint8_t pub[NB_PUBKEY_LEN];
        if (root_key((void *)roots, d->root_kid, pub) != NB_OK) {
            fmt_hex(d->root_kid, NB_KEY_ID_LEN, h);
            return invalid(path, err,
                           "the delegation is signed by root key ID %s, "
                           "which is not one of the --root-pub keys",
                           h);
        }
        return invalid(path, err, "%s", manifest_problem(err));
    }
    case NB_ERR_EXPIRED:
        fmt_time(m.created, a);
        fmt_time(d->not_before, b);
        fmt_time(d->not_after, c);
        return invalid(path, err,
                       "the delegation was not valid when the manifest was "
                       "created (created %s; delegation valid from %s to %s)",
                       a, b, c);
    case NB_ERR_REVOKED:
        fmt_hex(d->kid, NB_KEY_ID_LEN, h);
        return invalid(path, err,
                       "the signing key ID %s is revoked by revocation list "
                       "%" PRIu32 " (%s)",
                       h, rev->seq, rev_path);
    case NB_ERR_VENDOR:
        fmt_uuid(m.vendor, a);
        return invalid(path, err,
                       "the delegation does not allow the manifest's vendor "
                       "ID %s",
                       a);
    case NB_ERR_CLASS:
        fmt_uuid(m.class_id, a);
        return invalid(path, err,
                       "the delegation does not allow the manifest's class "
                       "ID %s",
                       a);
    default:
        return invalid(path, err, "%s", manifest_problem(err));
    }
}

/* Payload against the manifest: every block, then the whole digest. */
static int check_payload(struct ctx *g, const char *path,
                         const struct nb_manifest *m, const uint8_t *mbytes,
                         const uint8_t *payload)
{
    uint8_t digest[NB_SHA256_LEN];
    for (uint32_t i = 0; i < m->block_count; i++) {
        size_t off = (size_t)i * m->block_size;
        size_t n = m->payload_size - off < m->block_size
                       ? m->payload_size - off
                       : m->block_size;
        if (nb_sha256(&g->crypto, payload + off, n, digest))
            return fail("%s: SHA-256 failed", path);
        if (memcmp(digest, nb_manifest_block_digest(m, mbytes, i),
                   NB_SHA256_LEN) != 0)
            return invalid(path, NB_ERR_DIGEST,
                           "block %" PRIu32 " of the payload (bytes %zu to "
                           "%zu) does not match its digest in the manifest",
                           i, off, off + n - 1);
    }
    if (nb_sha256(&g->crypto, payload, m->payload_size, digest))
        return fail("%s: SHA-256 failed", path);
    if (memcmp(digest, m->digest, NB_SHA256_LEN) != 0)
        return invalid(path, NB_ERR_DIGEST,
                       "the payload's SHA-256 does not match the manifest");
    return 0;
}

int cmd_verify(struct ctx *g, int argc, char **argv)
{
    const char *cmd = "verify";
    enum { ROOT, HW, VENDOR, CLASS, REV, MAN, PAY };
    struct opt o[] = {
        [ROOT] = {.name = "--root-pub", .kind = OPT_MULTI},
        [HW] = {.name = "--hw-rev", .kind = OPT_VALUE},
        [VENDOR] = {.name = "--vendor", .kind = OPT_VALUE},
        [CLASS] = {.name = "--class", .kind = OPT_VALUE},
        [REV] = {.name = "--revocations", .kind = OPT_VALUE},
        [MAN] = {.name = "--manifest", .kind = OPT_VALUE},
        [PAY] = {.name = "--payload", .kind = OPT_VALUE},
    };
    char *pos[1];
    size_t npos;
    int rc = parse_opts(g, cmd, argc, argv, o, NOPTS(o), pos, 1, &npos);
    if (rc == 1)
        return fputs(usage_verify, stdout), EXIT_OK;
    if (rc)
        return rc;
    if (!o[ROOT].set)
        return usage_err(cmd, "--root-pub is required: the root keys to "
                              "trust");
    int detached = o[MAN].set || o[PAY].set;
    if (detached && !(o[MAN].set && o[PAY].set))
        return usage_err(cmd, "--manifest and --payload go together");
    if (detached && npos)
        return usage_err(cmd, "give a package or --manifest and --payload, "
                              "not both");
    if (!detached && npos != 1)
        return usage_err(cmd, "which package?");
    uint8_t vendor[NB_UUID_LEN], class_id[NB_UUID_LEN];
    if (o[VENDOR].set && parse_uuid(cmd, "--vendor", o[VENDOR].value, vendor))
        return EXIT_USAGE;
    if (o[CLASS].set && parse_uuid(cmd, "--class", o[CLASS].value, class_id))
        return EXIT_USAGE;
    if (o[HW].set && strlen(o[HW].value) > NB_HW_REV_MAX)
        return usage_err(cmd, "--hw-rev: at most %d bytes", NB_HW_REV_MAX);

    struct roots roots;
    memset(&roots, 0, sizeof(roots));
    for (int i = 0; i < o[ROOT].count; i++) {
        char desc[128];
        if (pub_open(g, NULL, o[ROOT].values[i], roots.pub[roots.n], desc,
                     sizeof(desc)))
            return EXIT_FAIL;
        if (nb_key_id(&g->crypto, roots.pub[roots.n], roots.kid[roots.n]))
            return fail("SHA-256 failed");
        roots.n++;
    }
    struct nb_keystore ks = {.ctx = &roots, .root_key = root_key};

    struct nb_revocations rev, *revp = NULL;
    if (o[REV].set) {
        uint8_t *buf;
        size_t len;
        if (read_file(o[REV].value, NB_MANIFEST_MAX, &buf, &len))
            return EXIT_FAIL;
        nb_err err = nb_revocation_verify(&g->crypto, &ks, NULL, buf,
                                          (uint32_t)len, &rev);
        free(buf);
        if (err)
            return invalid(o[REV].value, err,
                           "not a valid revocation list%s",
                           err == NB_ERR_UNKNOWN_KEY
                               ? ": it is not signed by one of the "
                                 "--root-pub keys"
                               : err == NB_ERR_SIGNATURE
                                     ? ": its signature does not verify"
                                     : "");
        revp = &rev;
    }

    struct file f, pay;
    nb_err err;
    const char *what, *path = detached ? o[MAN].value : pos[0];
    memset(&pay, 0, sizeof(pay));
    if (load(path, &f, &err, &what))
        return EXIT_FAIL;
    rc = EXIT_FAIL;
    if (err) {
        invalid(path, err, "%s", what);
        goto out;
    }
    if (detached && f.is_pkg) {
        usage_err(cmd, "%s is a package, not a manifest: verify it without "
                       "--manifest and --payload",
                  path);
        rc = EXIT_USAGE;
        goto out;
    }
    if (!detached && !f.is_pkg) {
        fail("%s: not a package (a detached manifest?): verify a manifest "
             "with --manifest %s --payload FW.bin",
             path, path);
        goto out;
    }

    struct nb_manifest m;
    err = nb_manifest_verify(&g->crypto, &ks, revp, f.man, f.mlen, &m);
    if (err) {
        manifest_invalid(g, path, err, &f, &roots, revp, o[REV].value);
        goto out;
    }

    /* The device's identity, where given. */
    char a[37], b[37];
    if (o[VENDOR].set && memcmp(m.vendor, vendor, NB_UUID_LEN) != 0) {
        fmt_uuid(m.vendor, a);
        invalid(path, NB_ERR_VENDOR, "the package is for vendor %s, not %s",
                a, o[VENDOR].value);
        goto out;
    }
    if (o[CLASS].set && memcmp(m.class_id, class_id, NB_UUID_LEN) != 0) {
        fmt_uuid(m.class_id, a);
        invalid(path, NB_ERR_CLASS, "the package is for class %s, not %s", a,
                o[CLASS].value);
        goto out;
    }
    if (o[HW].set) {
        size_t n = strlen(o[HW].value);
        unsigned i = 0;
        while (i < m.hw_count &&
               (m.hw_len[i] != n ||
                memcmp(f.man + m.hw_off[i], o[HW].value, n) != 0))
            i++;
        if (i == m.hw_count) {
            invalid(path, NB_ERR_HW_REV,
                    "hardware revision '%s' is not listed in the package "
                    "(%u revision%s listed; 'nobrick inspect' shows them)",
                    o[HW].value, (unsigned)m.hw_count,
                    m.hw_count == 1 ? "" : "s");
            goto out;
        }
    }

    const uint8_t *payload;
    if (detached) {
        if (read_file(o[PAY].value, 0xFFFFFFFFu, &pay.buf, &pay.len))
            goto out;
        if (pay.len != m.payload_size) {
            invalid(o[PAY].value,
                    pay.len < m.payload_size ? NB_ERR_TRUNCATED
                                             : NB_ERR_TRAILING,
                    "the payload is %zu bytes; the manifest says %" PRIu32,
                    pay.len, m.payload_size);
            goto out;
        }
        payload = pay.buf;
    } else {
        uint64_t end = (uint64_t)m.payload_offset + m.payload_size;
        if (f.len < end) {
            invalid(path, NB_ERR_TRUNCATED,
                    "the file is %zu bytes; it ends before the end of the "
                    "payload at byte %" PRIu64,
                    f.len, end);
            goto out;
        }
        if (f.len > end) {
            invalid(path, NB_ERR_TRAILING,
                    "%" PRIu64 " bytes follow the end of the payload: "
                    "nothing may be appended to a package",
                    (uint64_t)f.len - end);
            goto out;
        }
        for (size_t i = NB_PKG_HDR_SIZE + f.mlen; i < m.payload_offset; i++)
            if (f.buf[i]) {
                invalid(path, NB_ERR_MALFORMED,
                        "the padding between the manifest and the payload "
                        "is not zero (byte %zu)",
                        i);
                goto out;
            }
        payload = f.buf + m.payload_offset;
    }
    if (check_payload(g, detached ? o[PAY].value : path, &m, f.man, payload))
        goto out;

    char vs[16], t[32], kid[KID_HEX], rkid[KID_HEX];
    fmt_version(m.version, vs);
    fmt_time(m.created, t);
    fmt_hex(m.kid, NB_KEY_ID_LEN, kid);
    fmt_hex(m.delegation.root_kid, NB_KEY_ID_LEN, rkid);
    fmt_uuid(m.vendor, a);
    fmt_uuid(m.class_id, b);
    printf("%s: valid: version %s, security version %" PRIu32
           ", vendor %s, class %s, %" PRIu32 "-byte payload, created %s, "
           "signed by key ID %s (delegated by root key ID %s)\n",
           detached ? o[PAY].value : path, vs, m.svn, a, b, m.payload_size,
           t, kid, rkid);
    rc = EXIT_OK;
out:
    free(f.buf);
    free(pay.buf);
    return rc;
}
