/* keys.c - the token, signing keys, and `nobrick key ...`: init-token,
 * generate, export-public, delegate, revoke.
 *
 * Private keys stay in the PKCS#11 token (ports/pkcs11); a plain PEM key
 * file is accepted only with --insecure-key-file, and then with a
 * warning, for tests and throw-away setups.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ec.h>

#include "nb_sign_openssl.h"
#include "nobrick.h"

#define PEM_FILE_MAX 65536u
#define DAY 86400u

static const char *token_label(const struct ctx *g)
{
    return g->token ? g->token : NB_P11_DEFAULT_TOKEN;
}

void ctx_free(struct ctx *g)
{
    if (g->p11_open)
        nb_p11_close(&g->p11);
    g->p11_open = 0;
    nb_crypto_openssl_free(&g->crypto, &g->ossl);
}

int token_open(struct ctx *g, int login, struct nb_p11 **out)
{
    struct nb_p11 *p = &g->p11;
    *out = p;
    if (!g->p11_open) {
        g->p11_open = 1;
        if (nb_p11_open(p, g->module))
            return fail("%s", p->msg);
        /* Find the token first, so a wrong --token does not ask for a PIN. */
        if (nb_p11_login(p, token_label(g), NULL))
            return fail("%s", p->msg);
    }
    if (!login || p->logged_in)
        return 0;
    char pin[PIN_MAX];
    if (get_user_pin(g, 0, pin))
        return EXIT_FAIL;
    nb_err err = nb_p11_login(p, token_label(g), pin);
    explicit_bzero(pin, sizeof(pin));
    if (err)
        return fail("token '%s': %s", token_label(g), p->msg);
    return 0;
}

void key_id_hex(struct ctx *g, const uint8_t pub[NB_PUBKEY_LEN],
                char out[2 * NB_KEY_ID_LEN + 1])
{
    uint8_t kid[NB_KEY_ID_LEN];
    if (nb_key_id(&g->crypto, pub, kid))
        memset(kid, 0, sizeof(kid));
    fmt_hex(kid, NB_KEY_ID_LEN, out);
}

/* What an error of ports/openssl means for a key file. */
static const char *pem_problem(nb_err err)
{
    switch (err) {
    case NB_ERR_NOENT: return "no such file";
    case NB_ERR_MALFORMED:
        return "not an unencrypted PEM key (encrypted keys are not read)";
    case NB_ERR_UNSUPPORTED: return "not an EC P-256 key";
    case NB_ERR_DENIED: return "exists already: not overwritten";
    case NB_ERR_NOMEM: return "out of memory";
    default: return "cannot be read";
    }
}

int key_open(struct ctx *g, const char *label, const char *file,
             struct key *k)
{
    memset(k, 0, sizeof(*k));
    nb_err err;
    if (file) {
        warn(INSECURE_WARNING);
        k->from_file = 1;
        if ((err = nb_openssl_key_load_pem(file, &k->pkey)))
            return fail("%s: %s: %s", file, nb_err_name(err),
                        pem_problem(err));
        if ((err = nb_openssl_signer(k->pkey, &k->signer)))
            return fail("%s: %s: %s", file, nb_err_name(err),
                        pem_problem(err));
        snprintf(k->desc, sizeof(k->desc), "key file %s", file);
        return 0;
    }
    struct nb_p11 *p;
    if (token_open(g, 1, &p))
        return EXIT_FAIL;
    if (nb_p11_find_key(p, label, 1, &k->p11))
        return fail("token '%s': %s", token_label(g), p->msg);
    nb_p11_signer(&k->p11, &k->signer);
    snprintf(k->desc, sizeof(k->desc), "key '%s' in token '%s'", label,
             token_label(g));
    return 0;
}

void key_close(struct key *k)
{
    EVP_PKEY_free(k->pkey);
    memset(k, 0, sizeof(*k));
}

int pub_open(struct ctx *g, const char *label, const char *pub_file,
             uint8_t pub[NB_PUBKEY_LEN], char *desc, size_t desc_cap)
{
    if (label) {
        struct nb_p11 *p;
        struct nb_p11_key k;
        if (token_open(g, 0, &p))
            return EXIT_FAIL;
        if (nb_p11_find_key(p, label, 0, &k))
            return fail("token '%s': %s", token_label(g), p->msg);
        memcpy(pub, k.pub, NB_PUBKEY_LEN);
        snprintf(desc, desc_cap, "key '%s' in token '%s'", label,
                 token_label(g));
        return 0;
    }
    uint8_t *buf;
    size_t len;
    if (read_file(pub_file, PEM_FILE_MAX, &buf, &len))
        return EXIT_FAIL;
    nb_err err = nb_openssl_pub_from_pem((const char *)buf, len, pub);
    free(buf);
    if (err == NB_ERR_MALFORMED) {
        /* Maybe a private key file: its public half is all we use. */
        EVP_PKEY *pk = NULL;
        if (nb_openssl_key_load_pem(pub_file, &pk) == NB_OK) {
            err = nb_openssl_key_pub(pk, pub);
            EVP_PKEY_free(pk);
        }
    }
    if (err)
        return fail("%s: %s: %s", pub_file, nb_err_name(err),
                    err == NB_ERR_MALFORMED
                        ? "not a PEM public key (SubjectPublicKeyInfo, "
                          "'BEGIN PUBLIC KEY')"
                        : pem_problem(err));
    snprintf(desc, desc_cap, "public key file %s", pub_file);
    return 0;
}

int sign_fail(struct ctx *g, const char *what, const struct key *k,
              nb_err err)
{
    if (!k->from_file && g->p11.msg[0])
        return fail("signing %s with %s: %s", what, k->desc, g->p11.msg);
    return fail("signing %s with %s: %s", what, k->desc, nb_err_name(err));
}

/* ------------------------------------------------------------ commands */

static const char usage_key[] =
    "usage: nobrick key COMMAND [OPTIONS]\n"
    "\n"
    "Keys live in a PKCS#11 token (SoftHSM2 by default). A root key, kept\n"
    "offline, certifies signing keys with delegations; signing keys sign\n"
    "packages.\n"
    "\n"
    "commands:\n"
    "  init-token     create the token and set its PINs\n"
    "  generate       generate an EC P-256 key pair in the token\n"
    "  export-public  write a key's public key as PEM\n"
    "  delegate       certify a signing key with the root key\n"
    "  revoke         sign a revocation list with the root key\n"
    "\n"
    "'nobrick key COMMAND --help' shows the options of a command.\n";

#define TOKEN_HELP                                                          \
    "token options (any command):\n"                                        \
    "  --token LABEL   the token (default nobrick)\n"                       \
    "  --module PATH   the PKCS#11 module (default\n"                       \
    "                  " NB_P11_DEFAULT_MODULE ")\n"                         \
    "  --pin PIN       the user PIN; else the environment variable\n"      \
    "                  NOBRICK_PIN; else a prompt on the terminal. --pin is\n" \
    "                  visible to other users in the process list: prefer\n" \
    "                  NOBRICK_PIN or the prompt.\n"

static const char usage_init_token[] =
    "usage: nobrick key init-token [--so-pin P] [--token LABEL] [--pin PIN]\n"
    "\n"
    "Initialise a new token labelled LABEL (default nobrick) on the first\n"
    "free slot of the module, with the security officer PIN (--so-pin, else\n"
    "NOBRICK_SO_PIN, else a prompt), then set its user PIN (--pin, else\n"
    "NOBRICK_PIN, else a prompt). Refuses when a token with that label\n"
    "exists: initialising it again would destroy its keys.\n"
    "\n" TOKEN_HELP;

static const char usage_generate[] =
    "usage: nobrick key generate --label L\n"
    "       nobrick key generate --insecure-key-file OUT.pem\n"
    "\n"
    "Generate an EC P-256 key pair in the token, labelled L. The private key\n"
    "is sensitive and not extractable: it never leaves the token. Its\n"
    "CKA_ID is the nobrick key ID (first 8 bytes of the SHA-256 of the\n"
    "public point), printed on success. Refuses a label already in use.\n"
    "\n"
    "  --insecure-key-file F  instead, write a new key pair to the PEM file\n"
    "                         F (mode 0600, never overwritten): for tests\n"
    "                         only; keys belong in an HSM\n"
    "\n" TOKEN_HELP;

static const char usage_export[] =
    "usage: nobrick key export-public (--label L | --insecure-key-file F)\n"
    "                                 [--out F.pem]\n"
    "\n"
    "Write the public key of token key L (or of the key file F) as a PEM\n"
    "SubjectPublicKeyInfo, to --out or to stdout. A root's public key is\n"
    "what devices and 'nobrick verify --root-pub' trust. Needs no PIN when\n"
    "the public key object is public (as 'key generate' makes it).\n"
    "\n" TOKEN_HELP;

static const char usage_delegate[] =
    "usage: nobrick key delegate (--root L | --insecure-key-file F)\n"
    "         (--key L | --key-pub F.pem) --valid-days N --vendor UUID\n"
    "         [--class UUID[,UUID...]] [--not-before UNIX] --out D.cose\n"
    "\n"
    "Certify a signing key: a delegation (COSE_Sign1, see\n"
    "docs/package-format.md) signed by the root key, stating the signing\n"
    "key's ID and public key, its validity, and the vendor and classes it\n"
    "may sign for. Packages carry it; devices check it against their root\n"
    "keys.\n"
    "\n"
    "  --root L           root key in the token (signs the delegation)\n"
    "  --insecure-key-file F  the root key from a PEM file instead (tests\n"
    "                     only; prints a warning)\n"
    "  --key L            the signing key being certified (token label)\n"
    "  --key-pub F.pem    ... or its public key as PEM (a key in another\n"
    "                     token or HSM)\n"
    "  --valid-days N     validity in days from --not-before, 1 to 36500\n"
    "  --not-before UNIX  start of validity, Unix seconds (default: now)\n"
    "  --vendor UUID      the vendor ID it may sign for\n"
    "  --class UUIDs      the class IDs it may sign for, comma-separated, at\n"
    "                     most 8 (default: every class of the vendor)\n"
    "  --out D.cose       where to write it\n"
    "\n" TOKEN_HELP;

static const char usage_revoke[] =
    "usage: nobrick key revoke (--root L | --insecure-key-file F) --seq N\n"
    "         [--key-id HEX[,HEX...]] --out R.cose\n"
    "\n"
    "Sign a revocation list with the root key: the signing key IDs listed\n"
    "(16 hex digits each, at most 8; none: an empty list) are refused by\n"
    "devices that accept the list. A device accepts a list only when its\n"
    "sequence number N (0 to 4294967295) is higher than the one it holds,\n"
    "so each new list must carry every key ID still revoked.\n"
    "\n"
    "  --root L           root key in the token\n"
    "  --insecure-key-file F  the root key from a PEM file (tests only)\n"
    "  --seq N            sequence number\n"
    "  --key-id HEXES     key IDs to revoke ('nobrick inspect' shows them)\n"
    "  --out R.cose       where to write it\n"
    "\n" TOKEN_HELP;

static int key_init_token(struct ctx *g, int argc, char **argv)
{
    const char *cmd = "key init-token";
    struct opt o[] = {{.name = "--so-pin", .kind = OPT_VALUE}};
    size_t npos;
    int rc = parse_opts(g, cmd, argc, argv, o, NOPTS(o), NULL, 0, &npos);
    if (rc == 1)
        return fputs(usage_init_token, stdout), EXIT_OK;
    if (rc)
        return rc;
    const char *label = token_label(g);
    if (strlen(label) > NB_P11_LABEL_MAX)
        return usage_err(cmd, "--token: '%s' is longer than %d bytes", label,
                         NB_P11_LABEL_MAX);
    struct nb_p11 *p = &g->p11;
    g->p11_open = 1;
    if (nb_p11_open(p, g->module))
        return fail("%s", p->msg);
    char so[PIN_MAX], user[PIN_MAX];
    if (get_so_pin(o[0].value, 1, so))
        return EXIT_FAIL;
    if (get_user_pin(g, 1, user)) {
        explicit_bzero(so, sizeof(so));
        return EXIT_FAIL;
    }
    nb_err err = nb_p11_init_token(p, label, so, user);
    explicit_bzero(so, sizeof(so));
    explicit_bzero(user, sizeof(user));
    if (err)
        return fail("%s", p->msg);
    printf("initialised token '%s' and set its user PIN\n", label);
    return EXIT_OK;
}

static int key_generate(struct ctx *g, int argc, char **argv)
{
    const char *cmd = "key generate";
    struct opt o[] = {{.name = "--label", .kind = OPT_VALUE},
                      {.name = "--insecure-key-file", .kind = OPT_VALUE}};
    size_t npos;
    int rc = parse_opts(g, cmd, argc, argv, o, NOPTS(o), NULL, 0, &npos);
    if (rc == 1)
        return fputs(usage_generate, stdout), EXIT_OK;
    if (rc)
        return rc;
    if (o[0].set == o[1].set)
        return usage_err(cmd, "give --label (a key in the token) or "
                              "--insecure-key-file, not both");
    char kid[2 * NB_KEY_ID_LEN + 1];
    if (o[1].set) {
        warn(INSECURE_WARNING);
        EVP_PKEY *pk = EVP_EC_gen("P-256");
        if (!pk)
            return fail("OpenSSL could not generate a P-256 key");
        uint8_t pub[NB_PUBKEY_LEN];
        nb_err err = nb_openssl_key_pub(pk, pub);
        if (!err)
            err = nb_openssl_key_save_pem(o[1].value, pk);
        EVP_PKEY_free(pk);
        if (err)
            return fail("%s: %s: %s", o[1].value, nb_err_name(err),
                        pem_problem(err));
        key_id_hex(g, pub, kid);
        printf("wrote P-256 key file %s: key ID %s\n", o[1].value, kid);
        return EXIT_OK;
    }
    struct nb_p11 *p;
    struct nb_p11_key k;
    if (token_open(g, 1, &p))
        return EXIT_FAIL;
    if (nb_p11_generate(p, &g->crypto, o[0].value, &k))
        return fail("token '%s': %s", token_label(g), p->msg);
    key_id_hex(g, k.pub, kid);
    printf("generated P-256 key '%s' in token '%s': key ID %s\n", o[0].value,
           token_label(g), kid);
    return EXIT_OK;
}

static int key_export(struct ctx *g, int argc, char **argv)
{
    const char *cmd = "key export-public";
    struct opt o[] = {{.name = "--label", .kind = OPT_VALUE},
                      {.name = "--insecure-key-file", .kind = OPT_VALUE},
                      {.name = "--out", .kind = OPT_VALUE}};
    size_t npos;
    int rc = parse_opts(g, cmd, argc, argv, o, NOPTS(o), NULL, 0, &npos);
    if (rc == 1)
        return fputs(usage_export, stdout), EXIT_OK;
    if (rc)
        return rc;
    if (o[0].set == o[1].set)
        return usage_err(cmd, "give --label or --insecure-key-file, not "
                              "both");
    uint8_t pub[NB_PUBKEY_LEN];
    char desc[128], pem[NB_OPENSSL_PUB_PEM_MAX], kid[2 * NB_KEY_ID_LEN + 1];
    size_t len;
    if (pub_open(g, o[0].value, o[1].value, pub, desc, sizeof(desc)))
        return EXIT_FAIL;
    nb_err err = nb_openssl_pub_to_pem(pub, pem, sizeof(pem), &len);
    if (err)
        return fail("%s: %s: the public key is not a valid P-256 point",
                    desc, nb_err_name(err));
    if (!o[2].set) {
        fwrite(pem, 1, len, stdout);
        return fflush(stdout) ? fail("stdout: write failed") : EXIT_OK;
    }
    if (write_file(o[2].value, pem, len, 0644))
        return EXIT_FAIL;
    key_id_hex(g, pub, kid);
    printf("wrote %s: public key of %s, key ID %s\n", o[2].value, desc, kid);
    return EXIT_OK;
}

static int key_delegate(struct ctx *g, int argc, char **argv)
{
    const char *cmd = "key delegate";
    struct opt o[] = {
        {.name = "--root", .kind = OPT_VALUE},       {.name = "--insecure-key-file", .kind = OPT_VALUE},
        {.name = "--key", .kind = OPT_VALUE},        {.name = "--key-pub", .kind = OPT_VALUE},
        {.name = "--valid-days", .kind = OPT_VALUE}, {.name = "--not-before", .kind = OPT_VALUE},
        {.name = "--vendor", .kind = OPT_VALUE},     {.name = "--class", .kind = OPT_VALUE},
        {.name = "--out", .kind = OPT_VALUE},
    };
    size_t npos;
    int rc = parse_opts(g, cmd, argc, argv, o, NOPTS(o), NULL, 0, &npos);
    if (rc == 1)
        return fputs(usage_delegate, stdout), EXIT_OK;
    if (rc)
        return rc;
    if (o[0].set == o[1].set)
        return usage_err(cmd, "give --root (the root key in the token) or "
                              "--insecure-key-file, not both");
    if (o[2].set == o[3].set)
        return usage_err(cmd, "give --key (the signing key in the token) or "
                              "--key-pub, not both");
    for (size_t i = 4; i < NOPTS(o); i++)
        if (!o[i].set && i != 5 && i != 7)
            return usage_err(cmd, "%s is required", o[i].name);

    struct nb_delegation_req req;
    uint64_t days, nbf;
    memset(&req, 0, sizeof(req));
    if (parse_u64(cmd, "--valid-days", o[4].value, 1, 36500, &days))
        return EXIT_USAGE;
    nbf = (uint64_t)time(NULL);
    if (o[5].set &&
        parse_u64(cmd, "--not-before", o[5].value, 0, UINT32_MAX, &nbf))
        return EXIT_USAGE;
    if (parse_uuid(cmd, "--vendor", o[6].value, req.vendor))
        return EXIT_USAGE;
    if (o[7].set &&
        parse_uuid_list(cmd, "--class", o[7].value, req.classes,
                        NB_MAX_CLASSES, &req.class_count))
        return EXIT_USAGE;
    req.not_before = nbf;
    req.not_after = nbf + days * DAY;

    struct key root;
    char desc[128], rkid[2 * NB_KEY_ID_LEN + 1], kid[2 * NB_KEY_ID_LEN + 1];
    if (key_open(g, o[0].value, o[1].value, &root))
        return key_close(&root), EXIT_FAIL;
    if (pub_open(g, o[2].value, o[3].value, req.pub, desc, sizeof(desc)))
        return key_close(&root), EXIT_FAIL;
    if (memcmp(req.pub, root.signer.pub, NB_PUBKEY_LEN) == 0) {
        key_close(&root);
        return fail("%s is the root key itself: a root key certifies "
                    "signing keys and never signs packages",
                    desc);
    }
    struct nb_buf out = {0};
    g->p11.msg[0] = '\0';
    nb_err err = nb_build_delegation(&g->crypto, &root.signer, &req, &out);
    if (err) {
        key_close(&root);
        nb_buf_free(&out);
        return sign_fail(g, "the delegation", &root, err);
    }
    rc = write_file(o[8].value, out.p, out.len, 0644);
    nb_buf_free(&out);
    if (rc)
        return key_close(&root), rc;
    char t0[32], t1[32];
    fmt_time(req.not_before, t0);
    fmt_time(req.not_after, t1);
    key_id_hex(g, root.signer.pub, rkid);
    key_id_hex(g, req.pub, kid);
    printf("wrote %s: %s (key ID %s) may sign from %s to %s for vendor %s, "
           "%s; signed by root key ID %s\n",
           o[8].value, desc, kid, t0, t1, o[6].value,
           req.class_count ? "the classes given" : "every class", rkid);
    key_close(&root);
    return EXIT_OK;
}

/* Comma-separated key IDs. */
static int parse_kids(const char *cmd, const char *s,
                      uint8_t kids[NB_MAX_REVOKED][NB_KEY_ID_LEN],
                      unsigned *count)
{
    *count = 0;
    for (const char *p = s;;) {
        size_t len = strcspn(p, ",");
        char one[2 * NB_KEY_ID_LEN + 1];
        if (*count >= NB_MAX_REVOKED)
            return usage_err(cmd, "--key-id: more than %d key IDs",
                             NB_MAX_REVOKED);
        if (len != 2 * NB_KEY_ID_LEN)
            return usage_err(cmd, "--key-id: '%.*s' is not 16 hex digits",
                             (int)len, p);
        memcpy(one, p, len);
        one[len] = '\0';
        if (parse_hex(cmd, "--key-id", one, kids[*count], NB_KEY_ID_LEN))
            return EXIT_USAGE;
        (*count)++;
        if (!p[len])
            return 0;
        p += len + 1;
    }
}

static int key_revoke(struct ctx *g, int argc, char **argv)
{
    const char *cmd = "key revoke";
    struct opt o[] = {{.name = "--root", .kind = OPT_VALUE},
                      {.name = "--insecure-key-file", .kind = OPT_VALUE},
                      {.name = "--seq", .kind = OPT_VALUE},
                      {.name = "--key-id", .kind = OPT_VALUE},
                      {.name = "--out", .kind = OPT_VALUE}};
    size_t npos;
    int rc = parse_opts(g, cmd, argc, argv, o, NOPTS(o), NULL, 0, &npos);
    if (rc == 1)
        return fputs(usage_revoke, stdout), EXIT_OK;
    if (rc)
        return rc;
    if (o[0].set == o[1].set)
        return usage_err(cmd, "give --root (the root key in the token) or "
                              "--insecure-key-file, not both");
    if (!o[2].set)
        return usage_err(cmd, "--seq is required");
    if (!o[4].set)
        return usage_err(cmd, "--out is required");
    uint64_t seq;
    uint8_t kids[NB_MAX_REVOKED][NB_KEY_ID_LEN];
    unsigned count = 0;
    if (parse_u64(cmd, "--seq", o[2].value, 0, UINT32_MAX, &seq))
        return EXIT_USAGE;
    if (o[3].set && parse_kids(cmd, o[3].value, kids, &count))
        return EXIT_USAGE;

    struct key root;
    if (key_open(g, o[0].value, o[1].value, &root))
        return key_close(&root), EXIT_FAIL;
    struct nb_buf out = {0};
    g->p11.msg[0] = '\0';
    nb_err err = nb_build_revocation(&g->crypto, &root.signer, (uint32_t)seq,
                                     count,
                                     (const uint8_t(*)[NB_KEY_ID_LEN])kids,
                                     &out);
    if (err) {
        key_close(&root);
        nb_buf_free(&out);
        return sign_fail(g, "the revocation list", &root, err);
    }
    rc = write_file(o[4].value, out.p, out.len, 0644);
    nb_buf_free(&out);
    char rkid[2 * NB_KEY_ID_LEN + 1];
    key_id_hex(g, root.signer.pub, rkid);
    key_close(&root);
    if (rc)
        return rc;
    printf("wrote %s: revocation list %" PRIu64 " revoking %u key ID%s, "
           "signed by root key ID %s\n",
           o[4].value, seq, count, count == 1 ? "" : "s", rkid);
    return EXIT_OK;
}

int cmd_key(struct ctx *g, int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(struct ctx *, int, char **);
    } sub[] = {
        {"init-token", key_init_token}, {"generate", key_generate},
        {"export-public", key_export},  {"delegate", key_delegate},
        {"revoke", key_revoke},
    };
    int i = 0;
    /* Global options may come before the subcommand too. */
    while (i < argc && argv[i][0] == '-' && strcmp(argv[i], "--help") &&
           strcmp(argv[i], "-h")) {
        int rc = parse_global(g, argc, argv, &i);
        if (rc == 0)
            return usage_err("key", "unknown option '%s' before the command",
                             argv[i]);
        if (rc != 1)
            return rc;
        i++;
    }
    if (i >= argc)
        return usage_err("key", "which command? init-token, generate, "
                                "export-public, delegate or revoke");
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
        strcmp(argv[i], "help") == 0)
        return fputs(usage_key, stdout), EXIT_OK;
    for (size_t k = 0; k < NOPTS(sub); k++)
        if (strcmp(argv[i], sub[k].name) == 0)
            return sub[k].fn(g, argc - i - 1, argv + i + 1);
    return usage_err("key", "unknown command '%s'", argv[i]);
}
