/* fleet_trust.c - a fleet that trusts a product's root key, vendor and
 * class instead of the simulator's TEST identity (make demo signs with a
 * root in a PKCS#11 token; its devices must trust that root alone). */
#include <stdio.h>
#include <string.h>

#include "fleet.h"
#include "nb_sign_openssl.h"

static nb_err root_key(void *ctx, const uint8_t kid[NB_KEY_ID_LEN],
                       uint8_t pub[NB_PUBKEY_LEN])
{
    const struct fleet *f = ctx;
    if (memcmp(f->root_kid, kid, NB_KEY_ID_LEN) != 0)
        return NB_ERR_UNKNOWN_KEY;
    memcpy(pub, f->root_pub, NB_PUBKEY_LEN);
    return NB_OK;
}

int fleet_trust_root(struct fleet *f)
{
    char pem[4096];
    FILE *in = fopen(f->o.root_pub, "rb");
    size_t len = in ? fread(pem, 1, sizeof(pem) - 1, in) : 0;
    if (in)
        fclose(in);
    if (!in || nb_openssl_pub_from_pem(pem, len, f->root_pub) != NB_OK ||
        nb_key_id(&f->crypto, f->root_pub, f->root_kid) != NB_OK) {
        fprintf(stderr, "nobrick-sim fleet: --root-pub %s: %s\n",
                f->o.root_pub, !in ? "cannot read it"
                                   : "not a P-256 public key in PEM");
        return -1;
    }
    /* Every device and the end-of-run check use keys.keystore. */
    f->keys.keystore.ctx = f;
    f->keys.keystore.root_key = root_key;
    return 0;
}

/* 8-4-4-4-12 hex digits. */
static int uuid_parse(const char *s, uint8_t out[NB_UUID_LEN])
{
    unsigned n = 0;
    if (strlen(s) != 36)
        return -1;
    for (unsigned i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23, v;
        char c = s[i];
        if (dash) {
            if (c != '-')
                return -1;
            continue;
        }
        v = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
        if (v < 0)
            return -1;
        if (n % 2 == 0)
            out[n / 2] = (uint8_t)(v << 4);
        else
            out[n / 2] |= (uint8_t)v;
        n++;
    }
    return 0;
}

int fleet_trust_identity(const struct fleet_opts *o, struct nb_identity *id)
{
    if (o->vendor && uuid_parse(o->vendor, id->vendor)) {
        fprintf(stderr, "nobrick-sim fleet: --vendor '%s': not a UUID "
                "(8-4-4-4-12 hex digits)\n", o->vendor);
        return -1;
    }
    if (o->class_id && uuid_parse(o->class_id, id->class_id)) {
        fprintf(stderr, "nobrick-sim fleet: --class '%s': not a UUID "
                "(8-4-4-4-12 hex digits)\n", o->class_id);
        return -1;
    }
    return 0;
}
