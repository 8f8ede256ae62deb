/* pkgverify.c - verifying an uploaded package file against the server's
 * root keys and revocation list; see pkgverify.h. The order of the checks
 * and the sentences follow `nobrick verify` (cmd/nobrick/inspect.c), with
 * the mbedTLS crypto port instead of OpenSSL and a single streaming pass
 * over the file instead of reading it whole. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/ecp.h>
#include <mbedtls/md5.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha1.h>
#include <mbedtls/sha256.h>

#include "nb_crypto_mbedtls.h"
#include "nb_image.h"
#include "pkgverify.h"

#define PEM_MAX 16384
#define CHUNK (64 * 1024)
#define KID_HEX (2 * NB_KEY_ID_LEN + 1)

static void hex(const uint8_t *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static void uuid(const uint8_t u[NB_UUID_LEN], char out[37])
{
    char h[33];
    hex(u, NB_UUID_LEN, h);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16,
             h + 20);
}

/* pread exactly n bytes at off: 0, or -1 (errno; EIO for a short file). */
static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EIO;
            return -1;
        }
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* A whole small file (at most max bytes) into a malloc'ed, NUL-terminated
 * buffer. */
static nb_err slurp(int dirfd, const char *path, size_t max, uint8_t **buf,
                    size_t *len, char *msg, size_t msglen)
{
    struct stat st;
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    *buf = NULL;
    if (fd < 0) {
        snprintf(msg, msglen, "%s: %s", path, strerror(errno));
        return NB_ERR_NOENT;
    }
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        snprintf(msg, msglen, "%s: not a regular file of at most %zu bytes",
                 path, max);
        close(fd);
        return NB_ERR_NOENT;
    }
    *len = (size_t)st.st_size;
    *buf = malloc(*len + 1);
    if (!*buf) {
        close(fd);
        snprintf(msg, msglen, "out of memory");
        return NB_ERR_NOMEM;
    }
    if (*len && pread_all(fd, *buf, *len, 0)) {
        snprintf(msg, msglen, "%s: %s", path, strerror(errno));
        close(fd);
        free(*buf);
        *buf = NULL;
        return NB_ERR_NOENT;
    }
    (*buf)[*len] = '\0';
    close(fd);
    return NB_OK;
}

/* A PEM SubjectPublicKeyInfo of a P-256 key -> 04 || X || Y. */
static nb_err pem_pub(const uint8_t *pem, size_t len, uint8_t pub[65])
{
    mbedtls_pk_context pk;
    size_t olen = 0;
    nb_err err = NB_OK;
    mbedtls_pk_init(&pk);
    /* PEM input must include its terminating NUL in the length. */
    if (mbedtls_pk_parse_public_key(&pk, pem, len + 1) != 0)
        err = NB_ERR_MALFORMED;
    else if (mbedtls_pk_get_type(&pk) != MBEDTLS_PK_ECKEY ||
             mbedtls_pk_ec(pk)->grp.id != MBEDTLS_ECP_DP_SECP256R1)
        err = NB_ERR_UNSUPPORTED;
    else if (mbedtls_ecp_point_write_binary(
                 &mbedtls_pk_ec(pk)->grp, &mbedtls_pk_ec(pk)->Q,
                 MBEDTLS_ECP_PF_UNCOMPRESSED, &olen, pub, 65) != 0 ||
             olen != 65)
        err = NB_ERR_MALFORMED;
    mbedtls_pk_free(&pk);
    return err;
}

static nb_err trust_root_key(void *ctx, const uint8_t kid[NB_KEY_ID_LEN],
                             uint8_t pub[NB_PUBKEY_LEN])
{
    const struct srv_trust *t = ctx;
    for (unsigned i = 0; i < t->n_roots; i++)
        if (memcmp(t->kid[i], kid, NB_KEY_ID_LEN) == 0) {
            memcpy(pub, t->pub[i], NB_PUBKEY_LEN);
            return NB_OK;
        }
    return NB_ERR_UNKNOWN_KEY;
}

nb_err srv_trust_load(const struct srv_config *cfg, int artifacts_fd,
                      struct srv_trust *t, char *msg, size_t msglen)
{
    struct nb_mbedtls_crypto mc;
    struct nb_crypto crypto;
    struct nb_keystore ks;
    uint8_t *buf;
    size_t len;
    nb_err err = NB_OK;

    memset(t, 0, sizeof *t);
    if (cfg->n_root_pub == 0) {
        snprintf(msg, msglen, "no root_pub is configured: the server cannot "
                 "verify packages");
        return NB_ERR_NOENT;
    }
    nb_crypto_mbedtls_init(&crypto, &mc);
    for (unsigned i = 0; i < cfg->n_root_pub && i < SRV_MAX_ROOTS; i++) {
        err = slurp(AT_FDCWD, cfg->root_pub[i], PEM_MAX, &buf, &len, msg,
                    msglen);
        if (err) {
            char m[300];
            snprintf(m, sizeof m, "root_pub %.280s", msg);
            snprintf(msg, msglen, "%s", m);
            goto out;
        }
        err = pem_pub(buf, len, t->pub[t->n_roots]);
        free(buf);
        if (!err)
            err = nb_key_id(&crypto, t->pub[t->n_roots], t->kid[t->n_roots]);
        if (err) {
            snprintf(msg, msglen, "root_pub %s: not a P-256 public key PEM "
                     "(SubjectPublicKeyInfo, 'BEGIN PUBLIC KEY')",
                     cfg->root_pub[i]);
            goto out;
        }
        t->n_roots++;
    }
    if (cfg->revocations[0]) {
        err = slurp(artifacts_fd, cfg->revocations, NB_MANIFEST_MAX, &buf,
                    &len, msg, msglen);
        if (err) {
            char m[300];
            snprintf(m, sizeof m, "revocations %.280s", msg);
            snprintf(msg, msglen, "%s", m);
            goto out;
        }
        ks.ctx = t;
        ks.root_key = trust_root_key;
        err = nb_revocation_verify(&crypto, &ks, NULL, buf, (uint32_t)len,
                                   &t->rev);
        free(buf);
        if (err) {
            snprintf(msg, msglen, "revocations %s: not a revocation list "
                     "signed by a root_pub key (%s)", cfg->revocations,
                     nb_err_name(err));
            goto out;
        }
        t->has_rev = 1;
    }
out:
    nb_crypto_mbedtls_free(&crypto, &mc);
    return err;
}

int srv_pkg_err_is_trust(nb_err err)
{
    switch (err) {
    case NB_ERR_SIGNATURE:
    case NB_ERR_UNKNOWN_KEY:
    case NB_ERR_EXPIRED:
    case NB_ERR_REVOKED:
    case NB_ERR_VENDOR:
    case NB_ERR_CLASS:
    case NB_ERR_DIGEST:
        return 1;
    default:
        return 0;
    }
}

/* Why nb_manifest_verify said no (the sentences of `nobrick verify`). */
static void manifest_problem(const struct nb_crypto *crypto,
                             const struct srv_trust *t, nb_err err,
                             const uint8_t *man, uint32_t mlen, char *msg,
                             size_t msglen)
{
    struct nb_manifest m;
    char h[KID_HEX];
    memset(&m, 0, sizeof m);
    (void)nb_manifest_parse_unverified(crypto, man, mlen, &m);
    switch (err) {
    case NB_ERR_MALFORMED:
        snprintf(msg, msglen, "the manifest or its delegation is not "
                 "well-formed");
        break;
    case NB_ERR_TRUNCATED:
        snprintf(msg, msglen, "the manifest ends before one of its items "
                 "does");
        break;
    case NB_ERR_TRAILING:
        snprintf(msg, msglen, "bytes follow the end of an item of the "
                 "manifest");
        break;
    case NB_ERR_DUPLICATE:
        snprintf(msg, msglen, "a key appears twice in a map of the manifest");
        break;
    case NB_ERR_UNKNOWN_FIELD:
        snprintf(msg, msglen, "the manifest has a critical field (or header) "
                 "this server does not know");
        break;
    case NB_ERR_UNSUPPORTED:
        snprintf(msg, msglen, "the manifest uses a format version, algorithm "
                 "or payload format this server does not support");
        break;
    case NB_ERR_SIGNATURE:
        snprintf(msg, msglen, "a signature does not verify: the manifest or "
                 "its delegation was altered, or signed by another key");
        break;
    case NB_ERR_UNKNOWN_KEY: {
        uint8_t pub[NB_PUBKEY_LEN];
        hex(m.delegation.root_kid, NB_KEY_ID_LEN, h);
        if (trust_root_key((void *)t, m.delegation.root_kid, pub) != NB_OK)
            snprintf(msg, msglen, "the delegation is signed by root key ID "
                     "%s, which is not one of the server's root_pub keys", h);
        else
            snprintf(msg, msglen, "the manifest is signed by a key its "
                     "delegation does not certify");
        break;
    }
    case NB_ERR_EXPIRED:
        snprintf(msg, msglen, "the delegation was not valid when the manifest "
                 "was created (created %" PRIu64 "; delegation valid from %"
                 PRIu64 " to %" PRIu64 ")", m.created,
                 m.delegation.not_before, m.delegation.not_after);
        break;
    case NB_ERR_REVOKED:
        hex(m.delegation.kid, NB_KEY_ID_LEN, h);
        snprintf(msg, msglen, "the signing key ID %s is revoked by revocation "
                 "list %" PRIu32, h, t->rev.seq);
        break;
    case NB_ERR_VENDOR:
        snprintf(msg, msglen, "the delegation does not allow the manifest's "
                 "vendor ID");
        break;
    case NB_ERR_CLASS:
        snprintf(msg, msglen, "the delegation does not allow the manifest's "
                 "class ID");
        break;
    default:
        snprintf(msg, msglen, "the manifest cannot be verified");
        break;
    }
}

/* The streaming pass: whole-file SHA-256, zero padding, block digests,
 * payload SHA-256. */
struct pass {
    mbedtls_sha256_context file, payload, block;
    uint32_t block_i;      /* current block */
    uint32_t block_fill;   /* bytes of it hashed so far */
};

static nb_err pass_payload(struct pass *p, const struct nb_manifest *m,
                           const uint8_t *mbytes, const uint8_t *b, size_t n,
                           char *msg, size_t msglen)
{
    uint8_t d[32];
    mbedtls_sha256_update_ret(&p->payload, b, n);
    while (n) {
        uint32_t want = m->block_size;
        uint64_t left_in_payload =
            (uint64_t)m->payload_size - (uint64_t)p->block_i * m->block_size;
        size_t take;
        if (left_in_payload < want)
            want = (uint32_t)left_in_payload;
        if (want == 0)
            break; /* cannot happen: the file length was checked */
        take = want - p->block_fill;
        if (take > n)
            take = n;
        mbedtls_sha256_update_ret(&p->block, b, take);
        p->block_fill += (uint32_t)take;
        b += take;
        n -= take;
        if (p->block_fill == want) {
            mbedtls_sha256_finish_ret(&p->block, d);
            if (memcmp(d, nb_manifest_block_digest(m, mbytes, p->block_i),
                       32) != 0) {
                uint64_t first = (uint64_t)p->block_i * m->block_size;
                snprintf(msg, msglen, "block %" PRIu32 " of the payload "
                         "(payload bytes %" PRIu64 " to %" PRIu64 ") does "
                         "not match its digest in the manifest", p->block_i,
                         first, first + want - 1);
                return NB_ERR_DIGEST;
            }
            p->block_i++;
            p->block_fill = 0;
            mbedtls_sha256_starts_ret(&p->block, 0);
        }
    }
    return NB_OK;
}

static nb_err stream(int fd, struct srv_pkginfo *out, struct pass *p,
                     char *msg, size_t msglen)
{
    const struct nb_manifest *m = &out->m;
    uint64_t pad_from = NB_PKG_HDR_SIZE + (uint64_t)out->mlen;
    uint64_t pay_from = m->payload_offset, pos = 0;
    uint8_t *buf = malloc(CHUNK), d[32];
    nb_err err = NB_OK;
    if (!buf) {
        snprintf(msg, msglen, "out of memory");
        return NB_ERR_NOMEM;
    }
    mbedtls_sha256_starts_ret(&p->file, 0);
    mbedtls_sha256_starts_ret(&p->payload, 0);
    mbedtls_sha256_starts_ret(&p->block, 0);
    p->block_i = 0;
    p->block_fill = 0;
    while (pos < out->size) {
        size_t n = out->size - pos < CHUNK ? (size_t)(out->size - pos) : CHUNK;
        if (pread_all(fd, buf, n, pos)) {
            snprintf(msg, msglen, "cannot read the upload: %s",
                     strerror(errno));
            err = NB_ERR_IO;
            break;
        }
        mbedtls_sha256_update_ret(&p->file, buf, n);
        /* The padding [pad_from, pay_from) must be zero. */
        for (uint64_t i = pos < pad_from ? pad_from : pos;
             i < pay_from && i < pos + n; i++)
            if (buf[i - pos]) {
                snprintf(msg, msglen, "the padding between the manifest and "
                         "the payload is not zero (byte %" PRIu64 ")", i);
                err = NB_ERR_MALFORMED;
                goto out;
            }
        if (pos + n > pay_from) {
            uint64_t skip = pos < pay_from ? pay_from - pos : 0;
            err = pass_payload(p, m, out->manifest, buf + skip,
                               n - (size_t)skip, msg, msglen);
            if (err)
                goto out;
        }
        pos += n;
    }
    if (err)
        goto out;
    mbedtls_sha256_finish_ret(&p->payload, d);
    if (memcmp(d, m->digest, 32) != 0) {
        snprintf(msg, msglen, "the payload's SHA-256 does not match the "
                 "manifest");
        err = NB_ERR_DIGEST;
        goto out;
    }
    mbedtls_sha256_finish_ret(&p->file, out->file_sha256);
    hex(out->file_sha256, 32, out->file_sha256_hex);
out:
    free(buf);
    return err;
}

/* The fields the server keeps, as text. */
static nb_err describe(struct srv_pkginfo *out, char *msg, size_t msglen)
{
    const struct nb_manifest *m = &out->m;
    snprintf(out->version, sizeof out->version, "%u.%u.%u",
             (unsigned)nb_version_major(m->version),
             (unsigned)nb_version_minor(m->version),
             (unsigned)nb_version_patch(m->version));
    uuid(m->vendor, out->vendor);
    uuid(m->class_id, out->class_id);
    hex(m->kid, NB_KEY_ID_LEN, out->signer_kid);
    hex(m->delegation.root_kid, NB_KEY_ID_LEN, out->root_kid);
    out->n_hw = m->hw_count;
    for (unsigned i = 0; i < m->hw_count; i++) {
        const uint8_t *s = out->manifest + m->hw_off[i];
        for (unsigned k = 0; k < m->hw_len[i]; k++)
            if (s[k] < 0x20 || s[k] > 0x7e) {
                snprintf(msg, msglen, "hardware revision %u is not printable "
                         "ASCII: the server matches it against devices' "
                         "hw_rev as text", i);
                return NB_ERR_MALFORMED;
            }
        memcpy(out->hw[i], s, m->hw_len[i]);
        out->hw[i][m->hw_len[i]] = '\0';
    }
    return NB_OK;
}

nb_err srv_pkg_verify(int fd, const struct srv_trust *t,
                      struct srv_pkginfo *out, char *msg, size_t msglen)
{
    struct nb_mbedtls_crypto mc;
    struct nb_crypto crypto;
    struct nb_keystore ks = {(void *)t, trust_root_key};
    struct stat st;
    struct pass *p = NULL;
    uint8_t hdr[NB_PKG_HDR_SIZE];
    uint64_t end;
    nb_err err;

    memset(out, 0, sizeof *out);
    msg[0] = '\0';
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        snprintf(msg, msglen, "the upload is not a readable file");
        return NB_ERR_IO;
    }
    out->size = (uint64_t)st.st_size;
    if (out->size < NB_PKG_HDR_SIZE) {
        snprintf(msg, msglen, "%s", out->size == 0
                 ? "the body is empty: a package (.nbpkg) is expected"
                 : "the file ends inside the 12-byte container header");
        return NB_ERR_TRUNCATED;
    }
    if (pread_all(fd, hdr, sizeof hdr, 0)) {
        snprintf(msg, msglen, "cannot read the upload: %s", strerror(errno));
        return NB_ERR_IO;
    }
    if (memcmp(hdr, "NBPK", 4) != 0) {
        snprintf(msg, msglen, "not a package: the file does not start with "
                 "the magic \"NBPK\"");
        return NB_ERR_MALFORMED;
    }
    if ((err = nb_pkg_parse_header(hdr, &out->mlen)) != NB_OK) {
        snprintf(msg, msglen, "%s", err == NB_ERR_UNSUPPORTED
                 ? "the container version is not 1"
                 : "the container header is not valid (reserved bytes not "
                   "zero, or manifest length not 1 to 16384)");
        return err;
    }
    if (out->size < NB_PKG_HDR_SIZE + (uint64_t)out->mlen) {
        snprintf(msg, msglen, "the file ends inside the manifest");
        return NB_ERR_TRUNCATED;
    }
    if (pread_all(fd, out->manifest, out->mlen, NB_PKG_HDR_SIZE)) {
        snprintf(msg, msglen, "cannot read the upload: %s", strerror(errno));
        return NB_ERR_IO;
    }
    nb_crypto_mbedtls_init(&crypto, &mc);
    err = nb_manifest_verify(&crypto, &ks, t->has_rev ? &t->rev : NULL,
                             out->manifest, out->mlen, &out->m);
    if (err == NB_ERR_NOMEM || err == NB_ERR_IO) {
        snprintf(msg, msglen, "the crypto port gave no answer");
        goto out;
    }
    if (err) {
        manifest_problem(&crypto, t, err, out->manifest, out->mlen, msg,
                         msglen);
        goto out;
    }
    end = (uint64_t)out->m.payload_offset + out->m.payload_size;
    if (out->size != end) {
        err = out->size < end ? NB_ERR_TRUNCATED : NB_ERR_TRAILING;
        if (err == NB_ERR_TRUNCATED)
            snprintf(msg, msglen, "the file is %" PRIu64 " bytes; it ends "
                     "before the end of the payload at byte %" PRIu64,
                     out->size, end);
        else
            snprintf(msg, msglen, "%" PRIu64 " bytes follow the end of the "
                     "payload: nothing may be appended to a package",
                     out->size - end);
        goto out;
    }
    if ((err = describe(out, msg, msglen)) != NB_OK)
        goto out;
    p = malloc(sizeof *p);
    if (!p) {
        snprintf(msg, msglen, "out of memory");
        err = NB_ERR_NOMEM;
        goto out;
    }
    mbedtls_sha256_init(&p->file);
    mbedtls_sha256_init(&p->payload);
    mbedtls_sha256_init(&p->block);
    err = stream(fd, out, p, msg, msglen);
    mbedtls_sha256_free(&p->file);
    mbedtls_sha256_free(&p->payload);
    mbedtls_sha256_free(&p->block);
    free(p);
out:
    nb_crypto_mbedtls_free(&crypto, &mc);
    return err;
}

nb_err srv_file_hashes(int fd, struct srv_file_hashes *out)
{
    mbedtls_sha256_context s256;
    mbedtls_sha1_context s1;
    mbedtls_md5_context m5;
    uint8_t *buf = malloc(CHUNK), d[32];
    uint64_t pos = 0;
    nb_err err = NB_OK;
    memset(out, 0, sizeof *out);
    if (!buf)
        return NB_ERR_NOMEM;
    mbedtls_sha256_init(&s256);
    mbedtls_sha1_init(&s1);
    mbedtls_md5_init(&m5);
    mbedtls_sha256_starts_ret(&s256, 0);
    mbedtls_sha1_starts_ret(&s1);
    mbedtls_md5_starts_ret(&m5);
    for (;;) {
        ssize_t n = pread(fd, buf, CHUNK, (off_t)pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = NB_ERR_IO;
            break;
        }
        if (n == 0)
            break;
        mbedtls_sha256_update_ret(&s256, buf, (size_t)n);
        mbedtls_sha1_update_ret(&s1, buf, (size_t)n);
        mbedtls_md5_update_ret(&m5, buf, (size_t)n);
        pos += (uint64_t)n;
    }
    if (!err) {
        out->size = pos;
        mbedtls_sha256_finish_ret(&s256, d);
        hex(d, 32, out->sha256);
        mbedtls_sha1_finish_ret(&s1, d);
        hex(d, 20, out->sha1);
        mbedtls_md5_finish_ret(&m5, d);
        hex(d, 16, out->md5);
    }
    mbedtls_sha256_free(&s256);
    mbedtls_sha1_free(&s1);
    mbedtls_md5_free(&m5);
    free(buf);
    return err;
}
