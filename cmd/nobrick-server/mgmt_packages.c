/* mgmt_packages.c - /api/v1/packages of the management API: upload a
 * package (verified against the configured root keys before anything is
 * kept), add extra files to it for hawkBit DDI clients, list and show.
 *
 * Files in the artifact directory (served under /api/v1/artifacts/):
 *   {id}.nbpkg                       the package, as uploaded
 *   {id}.nbman                       its manifest (the offers' manifest_url)
 *   {id}--{sha256[0..12)}--{name}    extra file `name` of the package
 * where {id} is "pkg-" and the first 12 hex digits of the package file's
 * SHA-256. An extra file's name on disk carries its own digest, so
 * replacing it never overwrites bytes a stored row still describes: the
 * new file is renamed into place, the row changed and committed, and only
 * then the old file removed.
 *
 * Durability: the upload (already in the artifact directory, see struct
 * srv_req) is fsync'ed, renamed to its name, the directory fsync'ed, and
 * only then the row inserted and committed; the answer follows the
 * commit. A failure at any point removes the files it had put in place,
 * unless a committed row refers to them (the same bytes uploaded at the
 * same time by another request). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mgmt_priv.h"
#include "pkgverify.h"

#define EXTRA_NAME_MAX 200

/* ---------------------------------------------------------------- files */

static int fsync_dir(struct srv *s)
{
    return fsync(s->artifacts_fd);
}

/* Write `len` bytes as artifact `name` through a temporary file (a name
 * starting with '.', which the artifact handler never serves), fsync'ed
 * before the rename. 0, or -1 with errno. */
static int write_artifact(struct srv *s, const char *name, const void *buf,
                          size_t len)
{
    char tmp[SRV_NAME_MAX + 32], rnd[65];
    const uint8_t *p = buf;
    int fd, e;
    if (srv_new_token(rnd) != NB_OK) {
        errno = EIO;
        return -1;
    }
    snprintf(tmp, sizeof tmp, ".%.200s.tmp-%.12s", name, rnd);
    fd = openat(s->artifacts_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                0644);
    if (fd < 0)
        return -1;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto fail;
        p += n;
        len -= (size_t)n;
    }
    if (fsync(fd) || close(fd)) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (renameat(s->artifacts_fd, tmp, s->artifacts_fd, name))
        goto fail;
    return 0;
fail:
    e = errno ? errno : EIO;
    if (fd >= 0)
        close(fd);
    unlinkat(s->artifacts_fd, tmp, 0);
    errno = e;
    return -1;
}

/* The upload's file, open for reading; -1 after answering. */
static int open_upload(struct mg *m, const char *what)
{
    int fd;
    if (!m->req->upload_path) {
        srv_resp_error(m->resp, 400, "no body: send the %s as the raw "
                       "request body (Content-Type: "
                       "application/octet-stream)", what);
        return -1;
    }
    /* A path as http.c made it (cfg->artifacts + "/.upload-XXXXXX"):
     * absolute, or relative to the working directory like
     * cfg->artifacts. */
    fd = open(m->req->upload_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        srv_logf(&m->s->log, SRV_LOG_ERROR, "upload %s: %s",
                 m->req->upload_path, strerror(errno));
        srv_resp_error(m->resp, 500, "cannot read the upload");
    }
    return fd;
}

/* fsync the upload, rename it to `name`, fsync the directory. */
static int keep_upload(struct mg *m, int fd, const char *name)
{
    if (fsync(fd) ||
        renameat(AT_FDCWD, m->req->upload_path, m->s->artifacts_fd, name) ||
        fsync_dir(m->s)) {
        srv_logf(&m->s->log, SRV_LOG_ERROR, "keeping upload as %s: %s", name,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/* 1 when a committed package row has this ID (its files are in use). */
static int package_exists(struct mg *m, const char *id)
{
    struct nb_db_conn *c = nb_db_acquire(m->s->db);
    struct srv_package *p = malloc(sizeof *p);
    nb_err err = p ? srv_store_package_get(c, id, p) : NB_ERR_NOMEM;
    nb_db_release(m->s->db, c);
    free(p);
    /* Unknown (a database error): keep the files rather than risk
     * removing a package's. */
    return err != NB_ERR_NOENT;
}

static void package_answer(struct mg *m, int status, const char *id)
{
    struct srv_package *p = malloc(sizeof *p);
    struct srv_package_file *f = malloc(MG_FILES_MAX * sizeof *f);
    unsigned n = 0;
    nb_err err = (p && f) ? NB_OK : NB_ERR_NOMEM;
    if (!err)
        err = srv_store_package_get(m->c, id, p);
    if (!err)
        err = srv_store_package_files(m->c, id, f, MG_FILES_MAX, &n);
    if (err)
        mg_db_error(m, err, "package");
    else
        srv_resp_json(m->resp, status, mg_package_json(p, f, n));
    free(p);
    free(f);
}

/* --------------------------------------------------------------- upload */

static void set_location(struct mg *m, const char *id)
{
    char loc[SRV_ST_ID + 32];
    snprintf(loc, sizeof loc, "/api/v1/packages/%s", id);
    srv_resp_header(m->resp, "Location", loc);
}

/* The verdict of srv_pkg_verify as an answer. */
static void refuse_package(struct mg *m, nb_err err, const char *msg)
{
    if (err == NB_ERR_IO || err == NB_ERR_NOMEM) {
        srv_logf(&m->s->log, SRV_LOG_ERROR, "package upload: %s: %s",
                 nb_err_name(err), msg);
        srv_resp_error(m->resp, 500, "%s: %s", nb_err_name(err), msg);
    } else if (srv_pkg_err_is_trust(err)) {
        srv_resp_error_code(m->resp, 422, "signature", "%s: %s",
                            nb_err_name(err), msg);
    } else {
        srv_resp_error(m->resp, 400, "%s: %s", nb_err_name(err), msg);
    }
}

static void fill_package(struct srv_package *p, const struct srv_pkginfo *in,
                         const char *channel, int64_t now)
{
    memset(p, 0, sizeof *p);
    snprintf(p->id, sizeof p->id, "pkg-%.12s", in->file_sha256_hex);
    snprintf(p->version, sizeof p->version, "%s", in->version);
    p->security_version = in->m.svn;
    snprintf(p->channel, sizeof p->channel, "%s", channel);
    snprintf(p->vendor, sizeof p->vendor, "%s", in->vendor);
    snprintf(p->class_id, sizeof p->class_id, "%s", in->class_id);
    for (unsigned i = 0; i < in->n_hw && i < SRV_ST_MAX_HW; i++)
        snprintf(p->hw_revs[p->n_hw_revs++], SRV_ST_ID, "%s", in->hw[i]);
    p->size = (int64_t)in->size;
    p->payload_offset = in->m.payload_offset;
    p->payload_size = in->m.payload_size;
    snprintf(p->sha256, sizeof p->sha256, "%s", in->file_sha256_hex);
    snprintf(p->file, sizeof p->file, "%s.nbpkg", p->id);
    snprintf(p->manifest_file, sizeof p->manifest_file, "%s.nbman", p->id);
    p->created_at = now;
}

/* Inside the transaction: put the files in place and insert the row.
 * 1 done (answered 201), 0 refused or failed (answered). *placed is set
 * once files were put in place. */
static int store_package(struct mg *m, int fd, const struct srv_pkginfo *in,
                         struct srv_package *p, int *placed)
{
    struct srv_package *old = malloc(sizeof *old);
    int64_t max_svn = 0, seq;
    int found = 0, ok = 0;
    nb_err err = old ? NB_OK : NB_ERR_NOMEM;

    /* Uploads one at a time: bumping a counter row locks it until the
     * commit, so on PostgreSQL too (where BEGIN takes no lock) two uploads
     * cannot both pass the rollback check, nor both insert the same
     * bytes. SQLite's BEGIN IMMEDIATE serialises them anyway. A refused
     * upload rolls the counter back with everything else. */
    if (!err)
        err = srv_store_next(m->c, "package_uploads", &seq);
    if (err) {
        mg_db_error(m, err, "package");
        free(old);
        return 0;
    }
    /* The same bytes again: the package as it is. */
    if (!err && (err = srv_store_package_by_sha256(m->c, p->sha256, old)) ==
                    NB_OK) {
        package_answer(m, 200, old->id);
        set_location(m, old->id);
        free(old);
        return 0; /* nothing to write: roll back */
    }
    if (err == NB_ERR_NOENT)
        err = srv_store_package_get(m->c, p->id, old);
    if (err == NB_OK) {
        /* Another file whose SHA-256 starts with the same 48 bits. */
        srv_resp_error(m->resp, 409, "package ID %s is taken by a different "
                       "file", p->id);
        goto out;
    }
    if (err == NB_ERR_NOENT && strcmp(p->channel, "production") == 0)
        err = srv_store_package_max_svn(m->c, "production", &max_svn, &found);
    if (err && err != NB_ERR_NOENT) {
        mg_db_error(m, err, "package");
        goto out;
    }
    if (found && p->security_version < max_svn) {
        srv_resp_error_code(m->resp, 409, "rollback", "security version %lld "
                            "is below %lld, the highest in channel "
                            "production (upload it to channel development "
                            "to test a downgrade)",
                            (long long)p->security_version,
                            (long long)max_svn);
        goto out;
    }
    *placed = 1;
    if (write_artifact(m->s, p->manifest_file, in->manifest, in->mlen) ||
        keep_upload(m, fd, p->file)) {
        srv_logf(&m->s->log, SRV_LOG_ERROR, "package %s: cannot write its "
                 "files: %s", p->id, strerror(errno));
        srv_resp_error(m->resp, 500, "cannot write the package's files");
        goto out;
    }
    err = srv_store_package_insert(m->c, p);
    if (err) {
        mg_db_error(m, err, "package");
        goto out;
    }
    package_answer(m, 201, p->id);
    set_location(m, p->id);
    ok = m->resp->status == 201;
out:
    free(old);
    return ok;
}

static void upload(struct mg *m)
{
    static const char *const qk[] = {"channel", NULL};
    const char *channel = srv_req_query(m->req, "channel");
    struct srv_trust *t = NULL;
    struct srv_pkginfo *in = NULL;
    struct srv_package *p = NULL;
    char msg[512];
    int fd = -1, placed = 0, ok;
    nb_err err;

    if (!mg_query_keys(m, qk))
        return;
    if (!channel)
        channel = "production";
    if (strcmp(channel, "production") && strcmp(channel, "development")) {
        srv_resp_error(m->resp, 400, "channel must be production or "
                       "development");
        return;
    }
    if ((fd = open_upload(m, "package (.nbpkg)")) < 0)
        return;
    t = malloc(sizeof *t);
    in = malloc(sizeof *in);
    p = malloc(sizeof *p);
    if (!t || !in || !p) {
        srv_resp_error(m->resp, 500, "out of memory");
        goto out;
    }
    err = srv_trust_load(m->s->cfg, m->s->artifacts_fd, t, msg, sizeof msg);
    if (err) {
        srv_logf(&m->s->log, SRV_LOG_ERROR, "package upload: %s", msg);
        srv_resp_error(m->resp, 500, "the server cannot verify packages: %s",
                       msg);
        goto out;
    }
    err = srv_pkg_verify(fd, t, in, msg, sizeof msg);
    if (err) {
        refuse_package(m, err, msg);
        goto out;
    }
    fill_package(p, in, channel, m->now);
    if (!mg_begin(m))
        goto out;
    ok = store_package(m, fd, in, p, &placed);
    err = mg_end(m, ok);
    if (ok && !err) {
        srv_log_kv(&m->s->log, SRV_LOG_INFO, "package uploaded", "id", p->id,
                   "version", p->version, "channel", p->channel, NULL);
        goto out;
    }
    /* Refused or failed after the files were put in place: remove them,
     * unless a committed row refers to them (the same bytes, uploaded at
     * the same time by another request, won the insert). */
    if (placed && !package_exists(m, p->id)) {
        unlinkat(m->s->artifacts_fd, p->file, 0);
        unlinkat(m->s->artifacts_fd, p->manifest_file, 0);
        fsync_dir(m->s);
    }
out:
    if (fd >= 0)
        close(fd);
    free(t);
    free(in);
    free(p);
}

/* ---------------------------------------------------------- extra files */

static int valid_extra_name(const char *s)
{
    size_t n = strlen(s);
    if (!srv_valid_artifact_name(s) || n > EXTRA_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
              c == '+' || c == '~'))
            return 0;
    }
    return 1;
}

static void put_file(struct mg *m, const char *id, const char *name)
{
    static const char *const qk[] = {NULL};
    struct srv_file_hashes h;
    struct srv_package_file *files = NULL, nf;
    struct srv_package *p = NULL;
    char old_file[SRV_ST_NAME] = "";
    int64_t seq;
    unsigned n = 0;
    int fd = -1, ok = 0, placed = 0, replaced = 0;
    nb_err err;

    if (!mg_query_keys(m, qk))
        return;
    if (!valid_extra_name(name)) {
        srv_resp_error(m->resp, 400, "bad file name: 1 to %d of A-Z a-z 0-9 "
                       ". _ - + ~, not starting with '.', no \"..\"",
                       EXTRA_NAME_MAX);
        return;
    }
    if ((fd = open_upload(m, "file")) < 0)
        return;
    if ((err = srv_file_hashes(fd, &h)) != NB_OK) {
        srv_resp_error(m->resp, 500, "cannot read the upload");
        goto out;
    }
    if (h.size == 0) {
        srv_resp_error(m->resp, 400, "empty body: the file's bytes are "
                       "expected");
        goto out;
    }
    files = malloc(MG_FILES_MAX * sizeof *files);
    p = malloc(sizeof *p);
    if (!files || !p) {
        srv_resp_error(m->resp, 500, "out of memory");
        goto out;
    }
    memset(&nf, 0, sizeof nf);
    snprintf(nf.package_id, sizeof nf.package_id, "%s", id);
    snprintf(nf.name, sizeof nf.name, "%s", name);
    snprintf(nf.file, sizeof nf.file, "%s--%.12s--%s", id, h.sha256, name);
    nf.size = (int64_t)h.size;
    memcpy(nf.sha256, h.sha256, sizeof nf.sha256);
    memcpy(nf.sha1, h.sha1, sizeof nf.sha1);
    memcpy(nf.md5, h.md5, sizeof nf.md5);
    nf.created_at = m->now;
    if (!mg_begin(m))
        goto out;
    /* One upload at a time (see store_package): two replacements of the
     * same file cannot both remove the same old one and orphan a new. */
    err = srv_store_next(m->c, "package_uploads", &seq);
    if (!err)
        err = srv_store_package_get(m->c, id, p);
    if (!err)
        err = srv_store_package_files(m->c, id, files, MG_FILES_MAX, &n);
    if (err) {
        mg_db_error(m, err, "package");
        goto end;
    }
    for (unsigned i = 0; i < n; i++)
        if (strcmp(files[i].name, name) == 0) {
            replaced = 1;
            snprintf(old_file, sizeof old_file, "%s", files[i].file);
        }
    if (!replaced && n >= MG_FILES_MAX) {
        srv_resp_error(m->resp, 409, "package %s has %d files already", id,
                       MG_FILES_MAX);
        goto end;
    }
    placed = strcmp(old_file, nf.file) != 0;
    if (keep_upload(m, fd, nf.file)) {
        srv_resp_error(m->resp, 500, "cannot write the file");
        goto end;
    }
    if ((err = srv_store_package_file_put(m->c, &nf)) != NB_OK) {
        mg_db_error(m, err, "file");
        goto end;
    }
    srv_resp_json(m->resp, replaced ? 200 : 201,
                  json_pack("{s:s, s:o}", "package", id, "file",
                            mg_file_json(&nf)));
    ok = 1;
end:
    err = mg_end(m, ok);
    if (ok && !err) {
        /* The old bytes under another name are no longer referred to. */
        if (replaced && strcmp(old_file, nf.file) != 0) {
            unlinkat(m->s->artifacts_fd, old_file, 0);
            fsync_dir(m->s);
        }
    } else if (placed) {
        unlinkat(m->s->artifacts_fd, nf.file, 0);
        fsync_dir(m->s);
    }
out:
    if (fd >= 0)
        close(fd);
    free(files);
    free(p);
}

/* ------------------------------------------------------------ list, show */

static void list(struct mg *m)
{
    static const char *const qk[] = {"limit", "after", NULL};
    const char *after = srv_req_query(m->req, "after");
    struct srv_package *items = NULL;
    struct srv_package_file *f = NULL;
    unsigned limit, n = 0, nf;
    int more = 0, ok = 0;
    json_t *a;
    nb_err err;

    if (!mg_query_keys(m, qk) || !mg_limit(m, &limit))
        return;
    if (after && !srv_valid_id(after)) {
        srv_resp_error(m->resp, 400, "after must be a package ID");
        return;
    }
    if (!mg_begin(m))
        return;
    f = malloc(MG_FILES_MAX * sizeof *f);
    err = f ? srv_store_package_list(m->c, after, limit, &items, &n, &more)
            : NB_ERR_NOMEM;
    a = json_array();
    for (unsigned i = 0; !err && i < n; i++) {
        err = srv_store_package_files(m->c, items[i].id, f, MG_FILES_MAX,
                                      &nf);
        if (!err && a)
            json_array_append_new(a, mg_package_json(&items[i], f, nf));
    }
    if (err) {
        json_decref(a);
        mg_db_error(m, err, "package");
    } else {
        srv_resp_json(m->resp, 200,
                      mg_page(a, more && n ? items[n - 1].id : NULL));
        ok = 1;
    }
    mg_end(m, ok);
    free(items);
    free(f);
}

static void show(struct mg *m, const char *id)
{
    static const char *const qk[] = {NULL};
    if (!mg_query_keys(m, qk))
        return;
    if (!mg_begin(m))
        return;
    package_answer(m, 200, id);
    mg_end(m, m->resp->status == 200);
}

void mg_packages(struct mg *m)
{
    const char *method = m->req->method;
    if (m->n_seg == 1) {
        if (strcmp(method, "GET") == 0)
            list(m);
        else if (strcmp(method, "POST") == 0)
            upload(m);
        else
            mg_not_allowed(m, "GET, POST");
        return;
    }
    if (!srv_valid_id(m->seg[1])) {
        srv_resp_error(m->resp, 400, "bad package ID");
        return;
    }
    if (m->n_seg == 2) {
        if (mg_method(m, "GET", "GET"))
            show(m, m->seg[1]);
        return;
    }
    if (m->n_seg == 4 && strcmp(m->seg[2], "files") == 0) {
        if (mg_method(m, "PUT", "PUT"))
            put_file(m, m->seg[1], m->seg[3]);
        return;
    }
    srv_resp_error(m->resp, 404, "no such endpoint");
}
