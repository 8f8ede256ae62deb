/* nb_pkcs11.h - a small PKCS#11 client: the signing keys of the nobrick
 * tool live in a token (SoftHSM2 by default, any HSM with a PKCS#11
 * module works the same way), never in a file.
 *
 * The module is loaded with dlopen; the token is found by its label. Keys
 * are EC P-256 key pairs found by CKA_LABEL; the private half is created
 * sensitive and not extractable, so it never leaves the token: signing is
 * CKM_ECDSA over a SHA-256 digest computed by the caller.
 *
 * Every failure returns an nb_err and leaves one line in `p->msg` that
 * names the PKCS#11 call and its CKR_ code, for example
 * "C_Login: CKR_PIN_INCORRECT (wrong PIN)". The header does not include
 * pkcs11.h: handles are CK_ULONGs (unsigned long) here.
 *
 * PINs are passed as NUL-terminated strings and never copied: the caller
 * owns them and wipes them after use.
 */
#ifndef NB_PKCS11_H
#define NB_PKCS11_H

#include <stdint.h>

#include "nb_crypto.h"
#include "nb_pkgbuild.h"

/* SoftHSM2's module on Debian. */
#define NB_P11_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define NB_P11_DEFAULT_TOKEN "nobrick"
#define NB_P11_LABEL_MAX 32 /* token labels: 32 bytes, blank padded */

/* A loaded module and, after nb_p11_login, a logged-in session. */
struct nb_p11 {
    void *dl;            /* dlopen handle */
    void *fn;            /* CK_FUNCTION_LIST_PTR */
    int initialized;     /* C_Initialize succeeded */
    int has_session;
    int logged_in;
    unsigned long slot;    /* CK_SLOT_ID of the token */
    unsigned long session; /* CK_SESSION_HANDLE */
    char msg[256];         /* the last error, one line */
};

/* A key pair in the token. */
struct nb_p11_key {
    struct nb_p11 *p;
    unsigned long priv;           /* CK_OBJECT_HANDLE of the private key */
    uint8_t pub[65];              /* 04 || X || Y */
};

/* Load `module` (NULL: NB_P11_DEFAULT_MODULE), get its function list and
 * C_Initialize it. On failure p->msg says why; call nb_p11_close anyway
 * (safe on a zeroed or half-opened struct). */
nb_err nb_p11_open(struct nb_p11 *p, const char *module);

/* Log out, close the session, C_Finalize and unload. Safe to call twice. */
void nb_p11_close(struct nb_p11 *p);

/* Initialise a new token labelled `label` on the first slot whose token
 * is not initialised yet (SoftHSM2 always keeps one such slot), with the
 * security officer PIN `so_pin`, then set the user PIN to `user_pin`.
 * NB_ERR_DENIED when a token with that label already exists (initialising
 * it again would destroy its keys); NB_ERR_NOENT when no free slot. */
nb_err nb_p11_init_token(struct nb_p11 *p, const char *label,
                         const char *so_pin, const char *user_pin);

/* Find the token labelled `label` and open a read-write session on it;
 * log in as the user with `pin` unless `pin` is NULL (public objects
 * only). NB_ERR_NOENT when no token has that label, NB_ERR_DENIED for a
 * wrong or locked PIN. */
nb_err nb_p11_login(struct nb_p11 *p, const char *label, const char *pin);

/* Generate an EC P-256 key pair labelled `label` on the token (logged in):
 * the private key CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not
 * CKA_EXTRACTABLE, CKA_SIGN; the public key CKA_TOKEN, CKA_VERIFY, not
 * CKA_PRIVATE (readable without a PIN). CKA_ID of both is the key's
 * nobrick key ID (SHA-256 of the point, first 8 bytes; `c` computes it).
 * NB_ERR_DENIED when an object with that label exists already. On success
 * *k is the new key. */
nb_err nb_p11_generate(struct nb_p11 *p, const struct nb_crypto *c,
                       const char *label, struct nb_p11_key *k);

/* Find the key pair labelled `label`: its public point (from the public
 * key object's CKA_EC_POINT, checked to be an uncompressed point on a
 * P-256 key) and, when logged in, its private key. `need_private` zero
 * looks up the public key only (k->priv is then 0). NB_ERR_NOENT when
 * there is none, NB_ERR_INVAL when the label is ambiguous or the key is
 * not P-256. Does NOT check that the point lies on the curve: the
 * verifier does that. */
nb_err nb_p11_find_key(struct nb_p11 *p, const char *label, int need_private,
                       struct nb_p11_key *k);

/* Sign a SHA-256 digest with CKM_ECDSA: r || s (64 bytes, big-endian). */
nb_err nb_p11_sign(struct nb_p11_key *k, const uint8_t hash[NB_SHA256_LEN],
                   uint8_t sig[64]);

/* A struct nb_signer (lib/nb_pkgbuild.h) over the key; `k` must outlive
 * it. */
void nb_p11_signer(struct nb_p11_key *k, struct nb_signer *s);

/* Name of a CKR_ return value ("CKR_PIN_INCORRECT"); NULL for a code it
 * does not know (vendor-defined ones included). */
const char *nb_p11_rv_name(unsigned long rv);

#endif
