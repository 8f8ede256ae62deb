/* server_devices.c - `nobrick server devices ...`: list, show, add (the
 * device's token is shown once, or written to a new 0600 file), tag and
 * group; see server.h and docs/server-api.md#devices. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server.h"

#define TAGS_MAX 32

static const char usage_devices[] =
    "usage: nobrick server devices [list] [--tag T] [--group G] [--hw-rev R]\n"
    "         [--version V] [--limit N]\n"
    "       nobrick server devices show ID\n"
    "       nobrick server devices add ID --hw-rev R [--tag T ...] [--group G]\n"
    "         [--token-out FILE]\n"
    "       nobrick server devices tag ID (T... | --none)\n"
    "       nobrick server devices group ID (G | --none)\n"
    "\n"
    "list   the devices, filtered by tag, group, hardware revision and\n"
    "       running version; --limit N shows at most N (default 100; 0:\n"
    "       all)\n"
    "show   every field of one device, its rollouts and last events\n"
    "add    register a device: its ID and tags and group are 1 to 64 of\n"
    "       A-Z a-z 0-9 . _ -, its hardware revision 1 to 64 printable\n"
    "       ASCII characters (a package lists revisions of 1 to 32). Prints\n"
    "       the device's token, which the server shows only this once;\n"
    "       --token-out FILE writes it to FILE instead (a new file, mode\n"
    "       0600)\n"
    "tag    replace the device's tags (at most 32; --none: remove them all)\n"
    "group  set the device's group (--none: no group)\n"
    "\n"
    "Tags may be given one per option or separated by commas.\n"
    "\n"
    "server options: --server URL, --token-file FILE, --cacert FILE, --json\n"
    "(see 'nobrick server --help').\n";

/* The first of `keys` present in the object, as text. */
static void cell(const json_t *it, const char *const *keys, char *out,
                 size_t cap)
{
    for (; *keys; keys++) {
        json_t *v = json_object_get(it, *keys);
        if (v) {
            js_text(*keys, v, out, cap);
            return;
        }
    }
    js_text(NULL, NULL, out, cap);
}

static int list(struct srv *s, int argc, char **argv)
{
    enum { TAG, GROUP, HW, VER, LIMIT };
    struct opt o[] = {[TAG] = {.name = "--tag", .kind = OPT_VALUE},
                      [GROUP] = {.name = "--group", .kind = OPT_VALUE},
                      [HW] = {.name = "--hw-rev", .kind = OPT_VALUE},
                      [VER] = {.name = "--version", .kind = OPT_VALUE},
                      [LIMIT] = {.name = "--limit", .kind = OPT_VALUE}};
    static const char *const qname[] = {"tag", "group", "hw_rev", "version"};
    size_t npos;
    int rc = srv_parse(s, argc, argv, o, NOPTS(o), NULL, 0, &npos);
    if (rc == 1)
        return fputs(usage_devices, stdout), EXIT_OK;
    if (rc)
        return rc;
    uint64_t limit = 100;
    if (o[LIMIT].set && parse_u64(s->cmd, "--limit", o[LIMIT].value, 0,
                                  100000000, &limit))
        return EXIT_USAGE;
    if ((o[TAG].set && srv_check_name(s, "--tag", o[TAG].value)) ||
        (o[GROUP].set && srv_check_name(s, "--group", o[GROUP].value)) ||
        (o[HW].set && srv_check_hw_rev(s, "--hw-rev", o[HW].value)) ||
        (o[VER].set && srv_check_id(s, "--version", o[VER].value)))
        return EXIT_USAGE;
    if ((rc = srv_open(s)))
        return rc;
    char q[1024] = "";
    size_t ql = 0;
    for (int k = TAG; k <= VER; k++) {
        if (!o[k].set)
            continue;
        char *e = srv_esc(s, o[k].value);
        if (!e)
            return EXIT_FAIL;
        ql += (size_t)snprintf(q + ql, sizeof(q) - ql, "%s%s=%s",
                               ql ? "&" : "", qname[k], e);
        curl_free(e);
        if (ql >= sizeof(q))
            return fail("%s: the filter is too long", s->cmd);
    }
    json_t *items;
    int more;
    if (srv_list(s, "/devices", q, limit, &items, &more))
        return EXIT_FAIL;
    if (s->json) {
        json_t *doc = json_pack("{s:O,s:b}", "items", items, "more", more);
        srv_print_json(doc);
        json_decref(doc);
        json_decref(items);
        return EXIT_OK;
    }
    static const char *const hdr[] = {"ID",   "HW REV", "VERSION",
                                      "GROUP", "TAGS",   "LAST SEEN"};
    static const char *const k_id[] = {"id", NULL};
    static const char *const k_hw[] = {"hw_rev", NULL};
    static const char *const k_ver[] = {"version", NULL};
    static const char *const k_group[] = {"group", NULL};
    static const char *const k_tags[] = {"tags", NULL};
    static const char *const k_seen[] = {"last_seen_at", "last_seen",
                                         "last_checkin_at", NULL};
    static const char *const *const keys[] = {k_id,    k_hw,   k_ver,
                                              k_group, k_tags, k_seen};
    struct table t;
    table_init(&t, 6, hdr);
    size_t i;
    json_t *it;
    rc = 0;
    json_array_foreach(items, i, it)
    {
        char c[6][256];
        const char *cells[6];
        for (int k = 0; k < 6; k++) {
            cell(it, keys[k], c[k], sizeof(c[k]));
            cells[k] = c[k];
        }
        if ((rc = table_row(&t, cells)))
            break;
    }
    if (!rc)
        table_print(&t);
    table_free(&t);
    if (!rc && more)
        warn("showing the first %" PRIu64 " devices; --limit N shows more "
             "(0: all)", limit);
    json_decref(items);
    return rc;
}

/* "/devices/ID" + tail, the ID escaped. */
static int device_path(struct srv *s, const char *id, const char *tail,
                       char *out, size_t cap)
{
    char *e = srv_esc(s, id);
    if (!e)
        return EXIT_FAIL;
    snprintf(out, cap, "/devices/%s%s", e, tail);
    curl_free(e);
    return 0;
}

static int show(struct srv *s, int argc, char **argv)
{
    char *pos[1];
    size_t npos;
    int rc = srv_parse(s, argc, argv, NULL, 0, pos, 1, &npos);
    if (rc == 1)
        return fputs(usage_devices, stdout), EXIT_OK;
    if (rc)
        return rc;
    if (npos != 1)
        return usage_err(s->cmd, "which device? give its ID");
    if (srv_check_id(s, "device", pos[0]))
        return EXIT_USAGE;
    srv_about(s, pos[0]);
    if ((rc = srv_open(s)))
        return rc;
    char path[SRV_ID_MAX * 3 + 32];
    json_t *d;
    if (device_path(s, pos[0], "", path, sizeof(path)) ||
        srv_json(s, "GET", path, NULL, &d))
        return EXIT_FAIL;
    if (s->json)
        srv_print_json(d);
    else
        print_object(d, 0, NULL);
    json_decref(d);
    return EXIT_OK;
}

/* Write the token to a new file, mode 0600; never over an existing one. */
static int write_token(const char *path, const char *tok, const char **why)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        *why = strerror(errno);
        return -1;
    }
    size_t n = strlen(tok), done = 0;
    int e = 0;
    while (done <= n && !e) {
        const char *p = done < n ? tok + done : "\n";
        size_t len = done < n ? n - done : 1;
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            e = errno;
        else
            done += (size_t)w;
    }
    if (!e && fsync(fd) != 0)
        e = errno;
    if (close(fd) != 0 && !e)
        e = errno;
    if (e) {
        unlink(path);
        *why = strerror(e);
        return -1;
    }
    return 0;
}

static int add(struct srv *s, int argc, char **argv)
{
    enum { HW, TAG, GROUP, OUT };
    struct opt o[] = {[HW] = {.name = "--hw-rev", .kind = OPT_VALUE},
                      [TAG] = {.name = "--tag", .kind = OPT_MULTI},
                      [GROUP] = {.name = "--group", .kind = OPT_VALUE},
                      [OUT] = {.name = "--token-out", .kind = OPT_VALUE}};
    char *pos[1];
    size_t npos;
    int rc = srv_parse(s, argc, argv, o, NOPTS(o), pos, 1, &npos);
    if (rc == 1)
        return fputs(usage_devices, stdout), EXIT_OK;
    if (rc)
        return rc;
    if (npos != 1)
        return usage_err(s->cmd, "which device? give its ID");
    if (!o[HW].set)
        return usage_err(s->cmd, "--hw-rev is required");
    if (srv_check_name(s, "device ID", pos[0]) ||
        srv_check_hw_rev(s, "--hw-rev", o[HW].value) ||
        (o[GROUP].set && srv_check_name(s, "--group", o[GROUP].value)))
        return EXIT_USAGE;
    json_t *tags = srv_name_list(s, "--tag", o[TAG].values, o[TAG].count, 1,
                                 TAGS_MAX);
    if (!tags)
        return EXIT_USAGE;
    struct stat st;
    if (o[OUT].set && lstat(o[OUT].value, &st) == 0) {
        json_decref(tags);
        return fail("%s exists already: not overwritten (the token is "
                    "shown only once)",
                    o[OUT].value);
    }
    json_t *body = json_pack("{s:s,s:s,s:o}", "id", pos[0], "hw_rev",
                             o[HW].value, "tags", tags);
    if (body && o[GROUP].set)
        json_object_set_new(body, "group", json_string(o[GROUP].value));
    if (!body)
        return fail("out of memory");
    srv_about(s, pos[0]);
    json_t *ans = NULL;
    if ((rc = srv_open(s)) || (rc = srv_json(s, "POST", "/devices", body,
                                             &ans))) {
        json_decref(body);
        return rc;
    }
    json_decref(body);
    const char *tok = js_str(ans, "token");
    if (!tok || !*tok) {
        json_decref(ans);
        return fail("%s: the server added device %s but its answer has no "
                    "token",
                    s->cmd, pos[0]);
    }
    const char *why = NULL;
    if (o[OUT].set && write_token(o[OUT].value, tok, &why) != 0) {
        /* The device exists now, and its token is never shown again:
         * stdout is the only place left for it. */
        puts(tok);
        fflush(stdout);
        rc = fail("%s: %s; device %s was added and its token is printed "
                  "on stdout instead (it is not shown again)",
                  o[OUT].value, why, pos[0]);
    } else if (s->json) {
        if (o[OUT].set)
            json_object_del(ans, "token");
        srv_print_json(ans);
    } else if (o[OUT].set) {
        printf("added device %s; its token is in %s (mode 0600)\n", pos[0],
               o[OUT].value);
    } else {
        puts(tok);
        if (isatty(STDOUT_FILENO))
            warn("this is device %s's token, shown only this once: keep "
                 "it now (or use --token-out FILE)",
                 pos[0]);
    }
    fflush(stdout);
    json_decref(ans);
    return rc;
}

/* The value list of an answer (or of what was sent) as "eu, beta". */
static void say_list(const char *id, const char *what, const json_t *ans,
                     const json_t *sent, const char *key)
{
    const json_t *v = json_object_get(ans, key);
    if (!v)
        v = sent;
    char text[2048];
    if (!v || json_is_null(v) || (json_is_array(v) && !json_array_size(v))) {
        printf("device %s: no %s\n", id, what);
    } else {
        js_text(key, v, text, sizeof(text));
        printf("device %s: %s %s\n", id, key, text);
    }
    fflush(stdout);
}

static int tag(struct srv *s, int argc, char **argv)
{
    struct opt o[] = {{.name = "--none", .kind = OPT_FLAG}};
    char *pos[1 + TAGS_MAX + 1];
    size_t npos;
    int rc = srv_parse(s, argc, argv, o, NOPTS(o), pos, NOPTS(pos), &npos);
    if (rc == 1)
        return fputs(usage_devices, stdout), EXIT_OK;
    if (rc)
        return rc;
    if (npos < 1)
        return usage_err(s->cmd, "which device? give its ID, then its tags");
    if (srv_check_id(s, "device", pos[0]))
        return EXIT_USAGE;
    if (npos == 1 && !o[0].set)
        return usage_err(s->cmd, "give the tags, or --none to remove them "
                                 "all");
    if (npos > 1 && o[0].set)
        return usage_err(s->cmd, "give tags or --none, not both");
    json_t *tags = srv_name_list(s, "tag", pos + 1, (int)npos - 1, 1,
                                 TAGS_MAX);
    if (!tags)
        return EXIT_USAGE;
    json_t *body = json_pack("{s:O}", "tags", tags), *ans = NULL;
    char path[SRV_ID_MAX * 3 + 32];
    srv_about(s, pos[0]);
    if (!body)
        rc = fail("out of memory");
    else if (!(rc = srv_open(s)) &&
             !(rc = device_path(s, pos[0], "/tags", path, sizeof(path))))
        rc = srv_json(s, "PUT", path, body, &ans);
    if (!rc) {
        if (s->json)
            srv_print_json(ans);
        else
            say_list(pos[0], "tags", ans, tags, "tags");
    }
    json_decref(ans);
    json_decref(body);
    json_decref(tags);
    return rc;
}

static int group(struct srv *s, int argc, char **argv)
{
    struct opt o[] = {{.name = "--none", .kind = OPT_FLAG}};
    char *pos[2];
    size_t npos;
    int rc = srv_parse(s, argc, argv, o, NOPTS(o), pos, 2, &npos);
    if (rc == 1)
        return fputs(usage_devices, stdout), EXIT_OK;
    if (rc)
        return rc;
    if (npos < 1)
        return usage_err(s->cmd, "which device? give its ID, then its group");
    if (srv_check_id(s, "device", pos[0]))
        return EXIT_USAGE;
    if ((npos == 2) == o[0].set)
        return usage_err(s->cmd, "give the group, or --none for no group");
    if (npos == 2 && srv_check_name(s, "group", pos[1]))
        return EXIT_USAGE;
    json_t *g = npos == 2 ? json_string(pos[1]) : json_null();
    json_t *body = json_pack("{s:O}", "group", g), *ans = NULL;
    char path[SRV_ID_MAX * 3 + 32];
    srv_about(s, pos[0]);
    if (!body)
        rc = fail("out of memory");
    else if (!(rc = srv_open(s)) &&
             !(rc = device_path(s, pos[0], "/group", path, sizeof(path))))
        rc = srv_json(s, "PUT", path, body, &ans);
    if (!rc) {
        if (s->json)
            srv_print_json(ans);
        else
            say_list(pos[0], "group", ans, g, "group");
    }
    json_decref(ans);
    json_decref(body);
    json_decref(g);
    return rc;
}

int srv_devices(struct srv *s, int argc, char **argv)
{
    static const struct srv_sub subs[] = {
        {"list", list}, {"show", show},   {"add", add},
        {"tag", tag},   {"group", group},
    };
    return srv_group(s, "devices", subs, NOPTS(subs), usage_devices, argc,
                     argv);
}
