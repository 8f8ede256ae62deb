/* fleet_setup.c - making the fleet's devices: the flash layout, the
 * initial package, a golden flash per hardware revision, and each device
 * (memory, or a flash file in --dir that nobrick-sim status can read,
 * reused when it exists).
 *
 * Production line: every new device starts from a "golden" flash made
 * once per hardware revision by the real code (provision, then stage,
 * boot and confirm the initial package with that revision's identity),
 * copied byte for byte, as a factory programs a fleet.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "fleet.h"

/* DIR/ID.agent: returns 1 when read, 0 when absent, -1 on a bad file. */
static int load_agent_file(struct fleet_dev *d, char *hw, size_t hwcap)
{
    char path[4096], line[700];
    fleet_dev_path(d, path, sizeof(path), "agent");
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? 0 : -1;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        const char *v = eq + 1;
        size_t n = strlen(v);
#define FIELD(key, dst)                                                    \
    if (strcmp(line, key) == 0 && n < sizeof(dst))                         \
        memcpy(dst, v, n + 1);
        FIELD("token", d->token)
        FIELD("rollout", d->memo.rollout)
        FIELD("version", d->memo.version)
        FIELD("failed_rollout", d->memo.failed_rollout)
        FIELD("failed_version", d->memo.failed_version)
#undef FIELD
        if (strcmp(line, "hw_rev") == 0 && n < hwcap)
            memcpy(hw, v, n + 1);
    }
    fclose(f);
    d->have_memo = 1;
    return 1;
}

/* ----------------------------------------------------------- creation */

static int valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static uint64_t mix(uint64_t seed, uint64_t number, uint64_t stream)
{
    uint64_t s = seed ^ (number * 0xD1B54A32D192ED03ull) ^
                 (stream * 0x8CB92BA72F3D8DD7ull);
    return fleet_rng(&s);
}

/* The golden flash of hardware revision `h`: provisioned and running the
 * initial package confirmed, made by the real install and boot code. */
static struct nb_simflash *make_golden(struct fleet *f, unsigned h,
                                       const struct nb_buf *pkg)
{
    struct simdev *sd = calloc(1, sizeof(*sd));
    struct nb_boot_result res;
    const char *hw = f->o.hw[h].name;
    const char *what = "provisioning";
    nb_err err = NB_ERR_NOMEM;
    int bound = 0;
    if (!sd)
        goto out;
    if ((err = nb_simflash_create_mem(&sd->sim, &f->geo)) != NB_OK)
        goto out;
    sd->board.layout = f->layout;
    if ((err = simdev_bind(sd)) != NB_OK)
        goto out;
    bound = 1;
    sd->identity = f->ids[h];
    sd->cfg.keystore = &f->keys.keystore; /* the TEST root or --root-pub */
    err = simdev_check_file(sd, pkg->p, (uint32_t)pkg->len);
    what = "checking the initial package";
    if (!err) {
        what = "provisioning";
        err = nb_device_provision(&sd->dev, &sd->cfg, f->o.lifecycle,
                                  f->o.attempts);
    }
    if (!err && f->layout.kind == NB_LAYOUT_AB_FACTORY) {
        what = "writing the factory image";
        err = simdev_factory(sd, pkg->p, (uint32_t)pkg->len);
    }
    if (!err) {
        what = "installing the initial package";
        err = simdev_stage(sd, pkg->p, (uint32_t)pkg->len, NULL);
    }
    if (!err)
        err = simdev_boot(sd, &res);
    if (!err && (res.outcome != NB_BOOT_IMAGE || res.state != NB_SLOT_TRIAL))
        err = NB_ERR_STATE;
    if (!err)
        err = simdev_confirm(sd);
out:
    if (err) {
        fprintf(stderr, "nobrick-sim fleet: hardware revision %s: %s: %s%s\n",
                hw, what, nb_err_name(err),
                err == NB_ERR_HW_REV ? " (the initial package must list every "
                "--hw-revs revision: make-image --hw-revs ...)"
                : err == NB_ERR_NOSPC ? " (the package does not fit the "
                "slots: raise --slot-size)" : "");
        if (sd)
            nb_simflash_close(sd->sim);
    }
    struct nb_simflash *g = err ? NULL : sd->sim;
    if (bound)
        simdev_unbind(sd);
    free(sd);
    return g;
}

/* The initial package: --image, or 1.0.0 built here. */
static int initial_package(struct fleet *f, struct nb_buf *pkg)
{
    if (f->o.image) {
        FILE *fp = fopen(f->o.image, "rb");
        long len = -1;
        if (fp && fseek(fp, 0, SEEK_END) == 0)
            len = ftell(fp);
        if (!fp || len <= 0 || len > 256l * 1024 * 1024 ||
            fseek(fp, 0, SEEK_SET) != 0 || !(pkg->p = malloc((size_t)len)) ||
            fread(pkg->p, 1, (size_t)len, fp) != (size_t)len) {
            fprintf(stderr, "nobrick-sim fleet: %s: cannot read the initial "
                    "package\n", f->o.image);
            if (fp)
                fclose(fp);
            return -1;
        }
        fclose(fp);
        pkg->len = pkg->cap = (size_t)len;
    } else {
        const char *hw[FLEET_MAX_HW];
        struct fleet_behaviour b = {FLEET_BEH_HEALTHY, ""};
        uint32_t v;
        nb_version_pack(1, 0, 0, &v);
        for (unsigned i = 0; i < f->o.hw_count; i++)
            hw[i] = f->o.hw[i].name;
        if (fleet_make_package(&f->keys, &f->crypto, v, 1, f->o.image_size,
                               (uint64_t)v << 32 | 1, &b, hw, f->o.hw_count,
                               pkg) != NB_OK) {
            fprintf(stderr, "nobrick-sim fleet: cannot make the initial "
                    "package\n");
            return -1;
        }
    }
    struct nb_manifest m;
    uint32_t mlen;
    if (pkg->len < NB_PKG_HDR_SIZE ||
        nb_pkg_parse_header(pkg->p, &mlen) != NB_OK ||
        mlen > pkg->len - NB_PKG_HDR_SIZE ||
        nb_manifest_parse_unverified(&f->crypto, pkg->p + NB_PKG_HDR_SIZE,
                                     mlen, &m) != NB_OK) {
        fprintf(stderr, "nobrick-sim fleet: %s: not a package\n",
                f->o.image ? f->o.image : "initial package");
        return -1;
    }
    f->initial_version = m.version;
    return 0;
}

static int same_layout(const struct nb_layout *a, const struct nb_layout *b)
{
    if (a->kind != b->kind || a->journal.off != b->journal.off ||
        a->journal.size != b->journal.size)
        return 0;
    for (unsigned i = 0; i < NB_MAX_SLOTS; i++)
        if (a->slot[i].off != b->slot[i].off ||
            a->slot[i].size != b->slot[i].size)
            return 0;
    return 1;
}

/* The device's flash: an existing file of --dir, a new file, or memory.
 * Returns 0 or -1 after a message. */
static int open_flash(struct fleet *f, struct fleet_dev *d,
                      struct nb_simflash *const *golden, int *reused)
{
    char path[4096];
    *reused = 0;
    if (!f->o.dir)
        return nb_simflash_create_mem(&d->sim, &f->geo) == NB_OK &&
                       nb_simflash_copy_from(d->sim, golden[d->hw]) == NB_OK
                   ? 0
                   : -1;
    fleet_dev_path(d, path, sizeof(path), "flash");
    if (!f->o.fresh && access(path, F_OK) == 0) {
        struct simdev_board b;
        size_t blen;
        if (nb_simflash_open_file(&d->sim, path) != NB_OK) {
            fprintf(stderr, "nobrick-sim fleet: %s: not a simulated flash "
                    "file (use --fresh to re-create the fleet)\n", path);
            return -1;
        }
        const void *blob = nb_simflash_user(d->sim, &blen);
        if (simdev_board_decode(blob, blen, &b) != NB_OK ||
            !same_layout(&b.layout, &f->layout) ||
            nb_simflash_size(d->sim) != nb_simflash_size(golden[0])) {
            fprintf(stderr, "nobrick-sim fleet: %s: made with another layout "
                    "or slot size (use the same --layout and --slot-size, or "
                    "--fresh)\n", path);
            return -1;
        }
        *reused = 1;
        return 0;
    }
    uint8_t blob[NB_SIMFLASH_USER_MAX];
    struct simdev_board b = {f->layout};
    size_t blen = simdev_board_encode(&b, blob, sizeof(blob));
    if (nb_simflash_create_file(&d->sim, path, &f->geo, blob, blen) !=
            NB_OK ||
        nb_simflash_copy_from(d->sim, golden[d->hw]) != NB_OK) {
        fprintf(stderr, "nobrick-sim fleet: %s: cannot create it: %s\n", path,
                strerror(errno));
        return -1;
    }
    return 0;
}

/* Version of the confirmed image per the journal (0 when none). */
static uint32_t confirmed_version(struct fleet *f, struct fleet_dev *d)
{
    struct nb_boot_config c;
    struct nb_device *dev = malloc(sizeof(*dev));
    uint32_t v = 0;
    if (!dev)
        return 0;
    memset(&c, 0, sizeof(c));
    c.flash = &d->flash;
    c.crypto = &f->crypto;
    c.keystore = &f->keys.keystore;
    c.identity = &f->ids[d->hw];
    c.layout = f->layout;
    c.buf = d->buf;
    c.buf_size = FLEET_BUF;
    c.mbuf = d->mbuf;
    c.mbuf_size = NB_MANIFEST_MAX;
    if (nb_device_open(dev, &c) == NB_OK) {
        const struct nb_slot_info *s = &dev->state.slot[dev->state.active];
        v = s->state == NB_SLOT_CONFIRMED ? s->version : 0;
    }
    free(dev);
    return v;
}

/* Pick an index by the weights, with `r` in [0, 1). */
static unsigned pick(const struct fleet_weighted *w, unsigned n, double r)
{
    unsigned total = 0, acc = 0;
    for (unsigned i = 0; i < n; i++)
        total += w[i].weight;
    double x = r * total;
    for (unsigned i = 0; i < n; i++) {
        acc += w[i].weight;
        if (x < acc)
            return i;
    }
    return n - 1;
}

static int make_device(struct fleet *f, uint32_t i,
                       struct nb_simflash *const *golden)
{
    struct fleet_dev *d = calloc(1, sizeof(*d));
    if (!d) {
        fprintf(stderr, "nobrick-sim fleet: out of memory at device %u\n",
                (unsigned)i);
        return -1;
    }
    f->devs[i] = d;
    d->f = f;
    d->index = i;
    d->number = f->o.first_id + i;
    snprintf(d->id, sizeof(d->id), "%s%06u", f->o.id_prefix,
             (unsigned)d->number);
    if (!valid_id(d->id)) {
        fprintf(stderr, "nobrick-sim fleet: '%s' is not a device ID (1 to 64 "
                "of A-Z a-z 0-9 . _ -): change --id-prefix\n", d->id);
        return -1;
    }
    uint64_t setup = mix(f->o.seed, d->number, 0);
    d->rng_fault = mix(f->o.seed, d->number, 1);
    d->rng_agent = mix(f->o.seed, d->number, 2);
    d->hw = (uint8_t)pick(f->o.hw, f->o.hw_count, fleet_rng_unit(&setup));
    d->tag = (uint8_t)(f->o.tag_count
                           ? pick(f->o.tags, f->o.tag_count,
                                  fleet_rng_unit(&setup))
                           : 0);
    d->wall_wake = f->o.ramp_ms ? fleet_rng(&setup) % f->o.ramp_ms : 0;
    d->cuts_left = 6;
    if (f->o.dir) {
        char hw[NB_HW_REV_MAX + 1] = "";
        int r = load_agent_file(d, hw, sizeof(hw));
        if (r < 0) {
            fprintf(stderr, "nobrick-sim fleet: %s/%s.agent: cannot read it\n",
                    f->o.dir, d->id);
            return -1;
        }
        if (r > 0 && hw[0] && !f->o.fresh) {
            unsigned h = 0;
            while (h < f->o.hw_count && strcmp(f->o.hw[h].name, hw) != 0)
                h++;
            if (h == f->o.hw_count) {
                fprintf(stderr, "nobrick-sim fleet: %s is hardware revision "
                        "%s (%s/%s.agent), which --hw-revs does not list\n",
                        d->id, hw, f->o.dir, d->id);
                return -1;
            }
            d->hw = (uint8_t)h;
        }
        if (f->o.fresh) {
            memset(&d->memo, 0, sizeof(d->memo));
            d->token[0] = '\0';
            d->have_memo = 0;
        }
    }
    int reused;
    if (open_flash(f, d, golden, &reused))
        return -1;
    nb_simflash_interface(d->sim, &d->flash);
    nb_simflash_seed(d->sim, mix(f->o.seed, d->number, 3));
    fleet_fault_bad_block(d);
    struct nb_simflash_stats st;
    nb_simflash_stats(d->sim, &st);
    d->ops_at_start = st.ops;
    d->start_confirmed = confirmed_version(f, d);
    d->pub.enrolled = d->token[0] != 0;
    if (f->o.dir && !reused)
        fleet_dev_save(d);
    return 0;
}

int fleet_devices_create(struct fleet *f)
{
    struct nb_simflash *golden[FLEET_MAX_HW] = {0};
    struct nb_buf pkg = {0};
    int rc = -1;
    f->geo.write_size = 8;
    f->geo.erase_value = 0xFF;
    if (cli_plan(NULL, 4096, f->o.layout, f->o.slot_size, &f->geo,
                 &f->layout) != 0)
        return -1;
    for (unsigned h = 0; h < f->o.hw_count; h++) {
        struct nb_identity *id = &f->ids[h];
        nb_testpkg_identity(id);
        if (fleet_trust_identity(&f->o, id))
            return -1;
        id->hw_rev_len = (uint8_t)strlen(f->o.hw[h].name);
        memcpy(id->hw_rev, f->o.hw[h].name, id->hw_rev_len);
    }
    if (initial_package(f, &pkg))
        goto out;
    for (unsigned h = 0; h < f->o.hw_count; h++)
        if (!(golden[h] = make_golden(f, h, &pkg)))
            goto out;
    if (f->o.dir && mkdir(f->o.dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "nobrick-sim fleet: %s: cannot create: %s\n",
                f->o.dir, strerror(errno));
        goto out;
    }
    f->devs = calloc(f->o.devices, sizeof(*f->devs));
    if (!f->devs)
        goto out;
    f->n = f->o.devices;
    for (uint32_t i = 0; i < f->n; i++)
        if (make_device(f, i, golden))
            goto out;
    rc = 0;
out:
    for (unsigned h = 0; h < FLEET_MAX_HW; h++)
        nb_simflash_close(golden[h]);
    nb_buf_free(&pkg);
    return rc;
}

void fleet_devices_free(struct fleet *f)
{
    for (uint32_t i = 0; f->devs && i < f->n; i++) {
        struct fleet_dev *d = f->devs[i];
        if (!d)
            continue;
        fleet_dev_stop(d);
        nb_simflash_close(d->sim);
        free(d);
    }
    free(f->devs);
    f->devs = NULL;
}
