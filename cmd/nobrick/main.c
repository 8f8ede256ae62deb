/* main.c - nobrick: make, inspect and verify signed firmware packages, and
 * manage the keys that sign them (in a PKCS#11 token).
 *
 * Thin over the core (core/manifest.c parses and verifies), the package
 * builder (lib/nb_pkgbuild.c), the OpenSSL crypto port (ports/openssl)
 * and the PKCS#11 client (ports/pkcs11). The commands are in keys.c,
 * package.c and inspect.c; helpers in util.c and pin.c.
 */
#include <stdio.h>
#include <string.h>

#include "nobrick.h"
#include "server.h"

static const char usage_main[] =
    "usage: nobrick [--token LABEL] [--module PATH] [--pin PIN] COMMAND ...\n"
    "\n"
    "Signed firmware packages for nobrick devices (docs/package-format.md).\n"
    "Private keys live in a PKCS#11 token (SoftHSM2 by default).\n"
    "\n"
    "commands:\n"
    "  key init-token     create the token and set its PINs\n"
    "  key generate       generate a P-256 key pair in the token\n"
    "  key export-public  a key's public key as PEM (root keys for devices)\n"
    "  key delegate       certify a signing key with the root key\n"
    "  key revoke         sign a revocation list with the root key\n"
    "  package            sign a payload into a package\n"
    "  inspect            show every field of a package (verifies nothing)\n"
    "  verify             check a package against trusted root keys\n"
    "  server ...         upload packages, manage devices and rollouts on\n"
    "                     a nobrick-server ('nobrick server --help')\n"
    "\n"
    "global options (before or after the command):\n"
    "  --token LABEL   the token (default nobrick)\n"
    "  --module PATH   the PKCS#11 module (default\n"
    "                  " NB_P11_DEFAULT_MODULE ")\n"
    "  --pin PIN       the user PIN; else NOBRICK_PIN; else a prompt on the\n"
    "                  terminal (without a terminal: an error)\n"
    "\n"
    "'nobrick COMMAND --help' shows the options of a command.\n"
    "\n"
    "exit status: 0 done (verify: valid); 1 failed or not valid, with one\n"
    "line 'nobrick: ...' on stderr; 64 bad command line (nothing done).\n";

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(struct ctx *, int, char **);
    } cmds[] = {
        {"key", cmd_key},
        {"package", cmd_package},
        {"inspect", cmd_inspect},
        {"verify", cmd_verify},
        {"server", cmd_server},
    };
    struct ctx g;
    memset(&g, 0, sizeof(g));
    int i = 1, rc;
    while (i < argc && argv[i][0] == '-' && strcmp(argv[i], "--help") &&
           strcmp(argv[i], "-h")) {
        rc = parse_global(&g, argc, argv, &i);
        if (rc == 0) {
            wipe_str(g.pin_arg);
            fail("unknown option '%s' (see 'nobrick --help')", argv[i]);
            return EXIT_USAGE;
        }
        if (rc != 1) {
            wipe_str(g.pin_arg);
            return rc;
        }
        i++;
    }
    if (i >= argc) {
        wipe_str(g.pin_arg);
        fputs(usage_main, stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h") ||
        !strcmp(argv[i], "help")) {
        wipe_str(g.pin_arg);
        fputs(usage_main, stdout);
        return EXIT_OK;
    }
    for (size_t k = 0; k < NOPTS(cmds); k++) {
        if (strcmp(argv[i], cmds[k].name))
            continue;
        if (nb_crypto_openssl_init(&g.crypto, &g.ossl)) {
            wipe_str(g.pin_arg);
            return fail("OpenSSL could not allocate a digest context");
        }
        rc = cmds[k].fn(&g, argc - i - 1, argv + i + 1);
        wipe_str(g.pin_arg); /* when no command used it */
        ctx_free(&g);
        return rc;
    }
    wipe_str(g.pin_arg);
    fail("unknown command '%s' (see 'nobrick --help')", argv[i]);
    return EXIT_USAGE;
}
