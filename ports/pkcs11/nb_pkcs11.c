/* nb_pkcs11.c - a small PKCS#11 client; see nb_pkcs11.h.
 *
 * One module, one token, one session: enough for a command-line tool that
 * signs a few things and exits. The module is found with dlopen rather
 * than linked, so one binary works with SoftHSM2, p11-kit's proxy or a
 * vendor's HSM module.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include "nb_pkcs11.h"

#define FN(p) ((CK_FUNCTION_LIST_PTR)(p)->fn)

/* DER of the OID of P-256 (prime256v1, 1.2.840.10045.3.1.7): CKA_EC_PARAMS. */
static const uint8_t p256_oid[] = {0x06, 0x08, 0x2A, 0x86, 0x48,
                                   0xCE, 0x3D, 0x03, 0x01, 0x07};

/* ------------------------------------------------------------- errors */

#define N(x) {x, #x}
static const struct {
    CK_RV rv;
    const char *name;
} rv_names[] = {
    N(CKR_OK),
    N(CKR_CANCEL),
    N(CKR_HOST_MEMORY),
    N(CKR_SLOT_ID_INVALID),
    N(CKR_GENERAL_ERROR),
    N(CKR_FUNCTION_FAILED),
    N(CKR_ARGUMENTS_BAD),
    N(CKR_NO_EVENT),
    N(CKR_NEED_TO_CREATE_THREADS),
    N(CKR_CANT_LOCK),
    N(CKR_ATTRIBUTE_READ_ONLY),
    N(CKR_ATTRIBUTE_SENSITIVE),
    N(CKR_ATTRIBUTE_TYPE_INVALID),
    N(CKR_ATTRIBUTE_VALUE_INVALID),
    N(CKR_ACTION_PROHIBITED),
    N(CKR_DATA_INVALID),
    N(CKR_DATA_LEN_RANGE),
    N(CKR_DEVICE_ERROR),
    N(CKR_DEVICE_MEMORY),
    N(CKR_DEVICE_REMOVED),
    N(CKR_ENCRYPTED_DATA_INVALID),
    N(CKR_ENCRYPTED_DATA_LEN_RANGE),
    N(CKR_FUNCTION_CANCELED),
    N(CKR_FUNCTION_NOT_PARALLEL),
    N(CKR_FUNCTION_NOT_SUPPORTED),
    N(CKR_KEY_HANDLE_INVALID),
    N(CKR_KEY_SIZE_RANGE),
    N(CKR_KEY_TYPE_INCONSISTENT),
    N(CKR_KEY_NOT_NEEDED),
    N(CKR_KEY_CHANGED),
    N(CKR_KEY_NEEDED),
    N(CKR_KEY_INDIGESTIBLE),
    N(CKR_KEY_FUNCTION_NOT_PERMITTED),
    N(CKR_KEY_NOT_WRAPPABLE),
    N(CKR_KEY_UNEXTRACTABLE),
    N(CKR_MECHANISM_INVALID),
    N(CKR_MECHANISM_PARAM_INVALID),
    N(CKR_OBJECT_HANDLE_INVALID),
    N(CKR_OPERATION_ACTIVE),
    N(CKR_OPERATION_NOT_INITIALIZED),
    N(CKR_PIN_INCORRECT),
    N(CKR_PIN_INVALID),
    N(CKR_PIN_LEN_RANGE),
    N(CKR_PIN_EXPIRED),
    N(CKR_PIN_LOCKED),
    N(CKR_SESSION_CLOSED),
    N(CKR_SESSION_COUNT),
    N(CKR_SESSION_HANDLE_INVALID),
    N(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
    N(CKR_SESSION_READ_ONLY),
    N(CKR_SESSION_EXISTS),
    N(CKR_SESSION_READ_ONLY_EXISTS),
    N(CKR_SESSION_READ_WRITE_SO_EXISTS),
    N(CKR_SIGNATURE_INVALID),
    N(CKR_SIGNATURE_LEN_RANGE),
    N(CKR_TEMPLATE_INCOMPLETE),
    N(CKR_TEMPLATE_INCONSISTENT),
    N(CKR_TOKEN_NOT_PRESENT),
    N(CKR_TOKEN_NOT_RECOGNIZED),
    N(CKR_TOKEN_WRITE_PROTECTED),
    N(CKR_UNWRAPPING_KEY_HANDLE_INVALID),
    N(CKR_UNWRAPPING_KEY_SIZE_RANGE),
    N(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
    N(CKR_USER_ALREADY_LOGGED_IN),
    N(CKR_USER_NOT_LOGGED_IN),
    N(CKR_USER_PIN_NOT_INITIALIZED),
    N(CKR_USER_TYPE_INVALID),
    N(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
    N(CKR_USER_TOO_MANY_TYPES),
    N(CKR_WRAPPED_KEY_INVALID),
    N(CKR_WRAPPED_KEY_LEN_RANGE),
    N(CKR_WRAPPING_KEY_HANDLE_INVALID),
    N(CKR_WRAPPING_KEY_SIZE_RANGE),
    N(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
    N(CKR_RANDOM_SEED_NOT_SUPPORTED),
    N(CKR_RANDOM_NO_RNG),
    N(CKR_DOMAIN_PARAMS_INVALID),
    N(CKR_CURVE_NOT_SUPPORTED),
    N(CKR_BUFFER_TOO_SMALL),
    N(CKR_SAVED_STATE_INVALID),
    N(CKR_INFORMATION_SENSITIVE),
    N(CKR_STATE_UNSAVEABLE),
    N(CKR_CRYPTOKI_NOT_INITIALIZED),
    N(CKR_CRYPTOKI_ALREADY_INITIALIZED),
    N(CKR_MUTEX_BAD),
    N(CKR_MUTEX_NOT_LOCKED),
    N(CKR_NEW_PIN_MODE),
    N(CKR_NEXT_OTP),
    N(CKR_EXCEEDED_MAX_ITERATIONS),
    N(CKR_FIPS_SELF_TEST_FAILED),
    N(CKR_LIBRARY_LOAD_FAILED),
    N(CKR_PIN_TOO_WEAK),
    N(CKR_PUBLIC_KEY_INVALID),
    N(CKR_FUNCTION_REJECTED),
};
#undef N

const char *nb_p11_rv_name(unsigned long rv)
{
    for (size_t i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++)
        if (rv_names[i].rv == rv)
            return rv_names[i].name;
    return NULL;
}

/* What a failure means to the caller. */
static nb_err rv_err(CK_RV rv)
{
    switch (rv) {
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_EXPIRED:
    case CKR_PIN_LOCKED:
    case CKR_PIN_TOO_WEAK:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_USER_PIN_NOT_INITIALIZED:
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
    case CKR_TOKEN_WRITE_PROTECTED:
        return NB_ERR_DENIED;
    case CKR_HOST_MEMORY:
    case CKR_DEVICE_MEMORY:
        return NB_ERR_NOMEM;
    case CKR_SLOT_ID_INVALID:
    case CKR_TOKEN_NOT_PRESENT:
        return NB_ERR_NOENT;
    case CKR_ARGUMENTS_BAD:
    case CKR_ATTRIBUTE_VALUE_INVALID:
    case CKR_TEMPLATE_INCOMPLETE:
    case CKR_TEMPLATE_INCONSISTENT:
    case CKR_MECHANISM_INVALID:
    case CKR_CURVE_NOT_SUPPORTED:
    case CKR_DOMAIN_PARAMS_INVALID:
        return NB_ERR_INVAL;
    default:
        return NB_ERR_IO;
    }
}

/* A hint for the codes a user can do something about. */
static const char *rv_hint(CK_RV rv)
{
    switch (rv) {
    case CKR_PIN_INCORRECT: return " (wrong PIN)";
    case CKR_PIN_LOCKED: return " (too many wrong PINs: the token is locked)";
    case CKR_PIN_LEN_RANGE: return " (PIN too short or too long; SoftHSM2: 4 to 255 bytes)";
    case CKR_USER_PIN_NOT_INITIALIZED: return " (the token has no user PIN yet)";
    case CKR_USER_NOT_LOGGED_IN: return " (a PIN is needed)";
    case CKR_MECHANISM_INVALID: return " (the token does not support EC P-256 / ECDSA)";
    case CKR_CURVE_NOT_SUPPORTED: return " (the token does not support P-256)";
    default: return "";
    }
}

static nb_err fail(struct nb_p11 *p, nb_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static nb_err fail(struct nb_p11 *p, nb_err err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->msg, sizeof(p->msg), fmt, ap);
    va_end(ap);
    return err;
}

/* "C_Login: CKR_PIN_INCORRECT (wrong PIN)" */
static nb_err fail_rv(struct nb_p11 *p, const char *call, CK_RV rv)
{
    const char *name = nb_p11_rv_name(rv);
    if (name)
        return fail(p, rv_err(rv), "%s: %s%s", call, name, rv_hint(rv));
    return fail(p, rv_err(rv), "%s: %s 0x%lx", call,
                (rv & CKR_VENDOR_DEFINED) ? "CKR_VENDOR_DEFINED" : "CKR",
                (unsigned long)rv);
}

/* ---------------------------------------------------- module, session */

nb_err nb_p11_open(struct nb_p11 *p, const char *module)
{
    memset(p, 0, sizeof(*p));
    if (!module)
        module = NB_P11_DEFAULT_MODULE;
    p->dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    if (!p->dl) {
        const char *e = dlerror();
        return fail(p, NB_ERR_NOENT,
                    "cannot load the PKCS#11 module %s: %s (install softhsm2 "
                    "or pass --module)",
                    module, e ? e : "unknown error");
    }
    CK_C_GetFunctionList get = NULL;
    /* POSIX guarantees this conversion works for dlsym. */
    *(void **)&get = dlsym(p->dl, "C_GetFunctionList");
    if (!get)
        return fail(p, NB_ERR_INVAL,
                    "%s is not a PKCS#11 module: no C_GetFunctionList",
                    module);
    CK_FUNCTION_LIST_PTR fl = NULL;
    CK_RV rv = get(&fl);
    if (rv != CKR_OK)
        return fail_rv(p, "C_GetFunctionList", rv);
    if (!fl)
        return fail(p, NB_ERR_INVAL, "C_GetFunctionList: no function list");
    p->fn = fl;
    rv = fl->C_Initialize(NULL);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED)
        return NB_OK; /* someone else's: not ours to finalize */
    if (rv != CKR_OK) {
        nb_err err = fail_rv(p, "C_Initialize", rv);
        if (strstr(module, "softhsm")) {
            size_t n = strlen(p->msg);
            snprintf(p->msg + n, sizeof(p->msg) - n,
                     " (SoftHSM2: does SOFTHSM2_CONF name a readable "
                     "config whose tokendir exists?)");
        }
        return err;
    }
    p->initialized = 1;
    return NB_OK;
}

void nb_p11_close(struct nb_p11 *p)
{
    CK_FUNCTION_LIST_PTR f = FN(p);
    if (f) {
        if (p->logged_in)
            f->C_Logout(p->session);
        if (p->has_session)
            f->C_CloseSession(p->session);
        if (p->initialized)
            f->C_Finalize(NULL);
    }
    if (p->dl)
        dlclose(p->dl);
    p->dl = NULL;
    p->fn = NULL;
    p->initialized = p->has_session = p->logged_in = 0;
}

/* A token label: blank padded to 32 bytes, not NUL terminated. */
static nb_err pad_label(struct nb_p11 *p, const char *label,
                        CK_UTF8CHAR out[NB_P11_LABEL_MAX])
{
    size_t n = strlen(label);
    if (n == 0 || n > NB_P11_LABEL_MAX)
        return fail(p, NB_ERR_INVAL,
                    "token label '%s': must be 1 to %d bytes", label,
                    NB_P11_LABEL_MAX);
    memset(out, ' ', NB_P11_LABEL_MAX);
    memcpy(out, label, n);
    return NB_OK;
}

static int label_eq(const CK_UTF8CHAR tok[NB_P11_LABEL_MAX],
                    const CK_UTF8CHAR want[NB_P11_LABEL_MAX])
{
    return memcmp(tok, want, NB_P11_LABEL_MAX) == 0;
}

/* Slots with a token: *n in, *n out. */
static nb_err list_slots(struct nb_p11 *p, CK_SLOT_ID *slots, CK_ULONG *n)
{
    CK_RV rv = FN(p)->C_GetSlotList(CK_TRUE, slots, n);
    if (rv == CKR_BUFFER_TOO_SMALL)
        return fail(p, NB_ERR_NOMEM, "C_GetSlotList: more than %lu slots",
                    (unsigned long)*n);
    if (rv != CKR_OK)
        return fail_rv(p, "C_GetSlotList", rv);
    return NB_OK;
}

#define MAX_SLOTS 64

/* The slot of the initialised token labelled `want`. */
static nb_err find_token(struct nb_p11 *p, const CK_UTF8CHAR want[32],
                         CK_SLOT_ID *slot, int *found)
{
    CK_SLOT_ID slots[MAX_SLOTS];
    CK_ULONG n = MAX_SLOTS;
    *found = 0;
    nb_err err = list_slots(p, slots, &n);
    if (err)
        return err;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        CK_RV rv = FN(p)->C_GetTokenInfo(slots[i], &ti);
        if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_TOKEN_NOT_RECOGNIZED)
            continue;
        if (rv != CKR_OK)
            return fail_rv(p, "C_GetTokenInfo", rv);
        if ((ti.flags & CKF_TOKEN_INITIALIZED) && label_eq(ti.label, want)) {
            if (*found)
                return fail(p, NB_ERR_INVAL,
                            "two tokens are labelled '%.32s': ambiguous",
                            (const char *)want);
            *slot = slots[i];
            *found = 1;
        }
    }
    return NB_OK;
}

static nb_err open_session(struct nb_p11 *p, CK_SLOT_ID slot)
{
    CK_SESSION_HANDLE s;
    CK_RV rv = FN(p)->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                    NULL, NULL, &s);
    if (rv != CKR_OK)
        return fail_rv(p, "C_OpenSession", rv);
    p->slot = slot;
    p->session = s;
    p->has_session = 1;
    return NB_OK;
}

static void close_session(struct nb_p11 *p)
{
    if (p->logged_in)
        FN(p)->C_Logout(p->session);
    if (p->has_session)
        FN(p)->C_CloseSession(p->session);
    p->logged_in = p->has_session = 0;
}

static nb_err login(struct nb_p11 *p, CK_USER_TYPE who, const char *call,
                    const char *pin)
{
    CK_RV rv = FN(p)->C_Login(p->session, who, (CK_UTF8CHAR_PTR)pin,
                              (CK_ULONG)strlen(pin));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
        return fail_rv(p, call, rv);
    p->logged_in = 1;
    return NB_OK;
}

nb_err nb_p11_init_token(struct nb_p11 *p, const char *label,
                         const char *so_pin, const char *user_pin)
{
    if (!p->fn)
        return fail(p, NB_ERR_STATE, "PKCS#11 module not loaded");
    CK_UTF8CHAR want[NB_P11_LABEL_MAX];
    nb_err err = pad_label(p, label, want);
    if (err)
        return err;

    CK_SLOT_ID slots[MAX_SLOTS];
    CK_ULONG n = MAX_SLOTS;
    err = list_slots(p, slots, &n);
    if (err)
        return err;
    int have_free = 0;
    CK_SLOT_ID free_slot = 0;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        CK_RV rv = FN(p)->C_GetTokenInfo(slots[i], &ti);
        if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_TOKEN_NOT_RECOGNIZED)
            continue;
        if (rv != CKR_OK)
            return fail_rv(p, "C_GetTokenInfo", rv);
        if (ti.flags & CKF_TOKEN_INITIALIZED) {
            if (label_eq(ti.label, want))
                return fail(p, NB_ERR_DENIED,
                            "a token labelled '%s' exists already (slot "
                            "%lu); initialising it again would destroy its "
                            "keys",
                            label, (unsigned long)slots[i]);
        } else if (!have_free) {
            have_free = 1;
            free_slot = slots[i];
        }
    }
    if (!have_free)
        return fail(p, NB_ERR_NOENT,
                    "no slot with an uninitialised token: the module "
                    "offers none");

    CK_RV rv = FN(p)->C_InitToken(free_slot, (CK_UTF8CHAR_PTR)so_pin,
                                  (CK_ULONG)strlen(so_pin), want);
    if (rv != CKR_OK)
        return fail_rv(p, "C_InitToken", rv);

    /* SoftHSM2 moves a token it has just initialised to a new slot ID:
     * find it again by its label. */
    CK_SLOT_ID slot;
    int found;
    err = find_token(p, want, &slot, &found);
    if (err)
        return err;
    if (!found)
        return fail(p, NB_ERR_IO,
                    "C_InitToken succeeded but no token labelled '%s' "
                    "appeared",
                    label);
    err = open_session(p, slot);
    if (err)
        return err;
    err = login(p, CKU_SO, "C_Login (security officer)", so_pin);
    if (!err) {
        rv = FN(p)->C_InitPIN(p->session, (CK_UTF8CHAR_PTR)user_pin,
                              (CK_ULONG)strlen(user_pin));
        if (rv != CKR_OK)
            err = fail_rv(p, "C_InitPIN", rv);
    }
    close_session(p);
    return err;
}

nb_err nb_p11_login(struct nb_p11 *p, const char *label, const char *pin)
{
    if (!p->fn)
        return fail(p, NB_ERR_STATE, "PKCS#11 module not loaded");
    CK_UTF8CHAR want[NB_P11_LABEL_MAX];
    nb_err err = pad_label(p, label, want);
    if (err)
        return err;
    CK_SLOT_ID slot;
    int found;
    err = find_token(p, want, &slot, &found);
    if (err)
        return err;
    if (!found)
        return fail(p, NB_ERR_NOENT,
                    "no token labelled '%s' (create it with 'nobrick key "
                    "init-token', or pass --token)",
                    label);
    close_session(p);
    err = open_session(p, slot);
    if (err)
        return err;
    if (pin)
        return login(p, CKU_USER, "C_Login", pin);
    return NB_OK;
}

/* ------------------------------------------------------------ objects */

/* Up to `max` objects matching the template; *count is how many were
 * found (at most max; max + 1 is not looked for). */
static nb_err find_objects(struct nb_p11 *p, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                           CK_OBJECT_HANDLE *out, CK_ULONG max,
                           CK_ULONG *count)
{
    CK_RV rv = FN(p)->C_FindObjectsInit(p->session, tmpl, n);
    if (rv != CKR_OK)
        return fail_rv(p, "C_FindObjectsInit", rv);
    rv = FN(p)->C_FindObjects(p->session, out, max, count);
    CK_RV rv2 = FN(p)->C_FindObjectsFinal(p->session);
    if (rv != CKR_OK)
        return fail_rv(p, "C_FindObjects", rv);
    if (rv2 != CKR_OK)
        return fail_rv(p, "C_FindObjectsFinal", rv2);
    return NB_OK;
}

/* Read one attribute into buf (at most *len bytes); *len is its length. */
static nb_err get_attr(struct nb_p11 *p, CK_OBJECT_HANDLE o,
                       CK_ATTRIBUTE_TYPE type, void *buf, CK_ULONG *len)
{
    CK_ATTRIBUTE a = {type, buf, *len};
    CK_RV rv = FN(p)->C_GetAttributeValue(p->session, o, &a, 1);
    if (rv != CKR_OK)
        return fail_rv(p, "C_GetAttributeValue", rv);
    if (a.ulValueLen == (CK_ULONG)-1)
        return fail(p, NB_ERR_INVAL, "C_GetAttributeValue: attribute 0x%lx "
                    "unavailable", (unsigned long)type);
    *len = a.ulValueLen;
    return NB_OK;
}

/* CKA_EC_POINT is a DER OCTET STRING (04 41) around the 65-byte point;
 * a few modules return the bare point: accept both. */
static nb_err unwrap_point(struct nb_p11 *p, const char *label,
                           const uint8_t *v, CK_ULONG len, uint8_t pub[65])
{
    if (len == 67 && v[0] == 0x04 && v[1] == 0x41 && v[2] == 0x04) {
        memcpy(pub, v + 2, 65);
        return NB_OK;
    }
    if (len == 65 && v[0] == 0x04) {
        memcpy(pub, v, 65);
        return NB_OK;
    }
    return fail(p, NB_ERR_INVAL,
                "key '%s': CKA_EC_POINT is not an uncompressed P-256 point "
                "(%lu bytes)",
                label, (unsigned long)len);
}

nb_err nb_p11_find_key(struct nb_p11 *p, const char *label, int need_private,
                       struct nb_p11_key *k)
{
    memset(k, 0, sizeof(*k));
    k->p = p;
    if (!p->has_session)
        return fail(p, NB_ERR_STATE, "no session on the token");
    if (need_private && !p->logged_in)
        return fail(p, NB_ERR_STATE, "not logged in to the token");

    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_LABEL, (void *)label, (CK_ULONG)strlen(label)},
    };
    CK_OBJECT_HANDLE h[2];
    CK_ULONG count;
    nb_err err = find_objects(p, t, 3, h, 2, &count);
    if (err)
        return err;
    if (count == 0)
        return fail(p, NB_ERR_NOENT,
                    "no EC public key labelled '%s' on the token%s", label,
                    p->logged_in ? "" : " (or it is private: give a PIN)");
    if (count > 1)
        return fail(p, NB_ERR_INVAL,
                    "more than one public key labelled '%s': ambiguous",
                    label);
    uint8_t v[128];
    CK_ULONG len = sizeof(v);
    err = get_attr(p, h[0], CKA_EC_PARAMS, v, &len);
    if (err)
        return err;
    if (len != sizeof(p256_oid) || memcmp(v, p256_oid, len) != 0)
        return fail(p, NB_ERR_INVAL, "key '%s' is not on the P-256 curve",
                    label);
    len = sizeof(v);
    err = get_attr(p, h[0], CKA_EC_POINT, v, &len);
    if (err)
        return err;
    err = unwrap_point(p, label, v, len, k->pub);
    if (err)
        return err;

    if (!need_private)
        return NB_OK;
    cls = CKO_PRIVATE_KEY;
    err = find_objects(p, t, 3, h, 2, &count);
    if (err)
        return err;
    if (count == 0)
        return fail(p, NB_ERR_NOENT,
                    "no EC private key labelled '%s' on the token", label);
    if (count > 1)
        return fail(p, NB_ERR_INVAL,
                    "more than one private key labelled '%s': ambiguous",
                    label);
    k->priv = h[0];
    return NB_OK;
}

nb_err nb_p11_generate(struct nb_p11 *p, const struct nb_crypto *c,
                       const char *label, struct nb_p11_key *k)
{
    memset(k, 0, sizeof(*k));
    k->p = p;
    if (!p->logged_in)
        return fail(p, NB_ERR_STATE, "not logged in to the token");
    size_t llen = strlen(label);
    if (llen == 0 || llen > 64)
        return fail(p, NB_ERR_INVAL, "key label '%s': must be 1 to 64 bytes",
                    label);

    /* Refuse a label in use: find-by-label must stay unambiguous. */
    CK_ATTRIBUTE byl[] = {{CKA_LABEL, (void *)label, (CK_ULONG)llen}};
    CK_OBJECT_HANDLE h[1];
    CK_ULONG count;
    nb_err err = find_objects(p, byl, 1, h, 1, &count);
    if (err)
        return err;
    if (count)
        return fail(p, NB_ERR_DENIED,
                    "an object labelled '%s' exists already on the token; "
                    "choose another label",
                    label);

    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pubt[] = {
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &no, sizeof(no)},
        {CKA_VERIFY, &yes, sizeof(yes)},
        {CKA_EC_PARAMS, (void *)p256_oid, sizeof(p256_oid)},
        {CKA_LABEL, (void *)label, (CK_ULONG)llen},
    };
    CK_ATTRIBUTE privt[] = {
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_SIGN, &yes, sizeof(yes)},
        {CKA_LABEL, (void *)label, (CK_ULONG)llen},
    };
    CK_OBJECT_HANDLE hpub, hpriv;
    CK_RV rv = FN(p)->C_GenerateKeyPair(
        p->session, &mech, pubt, sizeof(pubt) / sizeof(pubt[0]), privt,
        sizeof(privt) / sizeof(privt[0]), &hpub, &hpriv);
    if (rv != CKR_OK)
        return fail_rv(p, "C_GenerateKeyPair", rv);

    uint8_t v[128];
    CK_ULONG len = sizeof(v);
    uint8_t digest[NB_SHA256_LEN];
    err = get_attr(p, hpub, CKA_EC_POINT, v, &len);
    if (!err)
        err = unwrap_point(p, label, v, len, k->pub);
    if (!err && nb_sha256(c, k->pub, 65, digest) != NB_OK)
        err = fail(p, NB_ERR_IO, "SHA-256 of the new public key failed");
    if (!err) {
        /* CKA_ID = the nobrick key ID, so other PKCS#11 tools show it. */
        CK_ATTRIBUTE id = {CKA_ID, digest, 8};
        rv = FN(p)->C_SetAttributeValue(p->session, hpub, &id, 1);
        if (rv == CKR_OK)
            rv = FN(p)->C_SetAttributeValue(p->session, hpriv, &id, 1);
        if (rv != CKR_OK)
            err = fail_rv(p, "C_SetAttributeValue (CKA_ID)", rv);
    }
    if (err) {
        /* Leave no half-made key behind. */
        FN(p)->C_DestroyObject(p->session, hpriv);
        FN(p)->C_DestroyObject(p->session, hpub);
        memset(k->pub, 0, sizeof(k->pub));
        return err;
    }
    k->priv = hpriv;
    return NB_OK;
}

/* ------------------------------------------------------------ signing */

nb_err nb_p11_sign(struct nb_p11_key *k, const uint8_t hash[NB_SHA256_LEN],
                   uint8_t sig[64])
{
    struct nb_p11 *p = k->p;
    if (!p || !p->logged_in || !k->priv)
        return p ? fail(p, NB_ERR_STATE, "no private key to sign with")
                 : NB_ERR_STATE;
    CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
    CK_RV rv = FN(p)->C_SignInit(p->session, &mech, k->priv);
    if (rv != CKR_OK)
        return fail_rv(p, "C_SignInit", rv);
    uint8_t out[132]; /* room for any curve a module might use by mistake */
    CK_ULONG len = sizeof(out);
    rv = FN(p)->C_Sign(p->session, (CK_BYTE_PTR)hash, NB_SHA256_LEN, out,
                       &len);
    if (rv != CKR_OK)
        return fail_rv(p, "C_Sign", rv);
    if (len != 64)
        return fail(p, NB_ERR_INVAL,
                    "C_Sign: a %lu-byte signature, not the 64 of P-256",
                    (unsigned long)len);
    memcpy(sig, out, 64);
    return NB_OK;
}

static nb_err signer_sign(void *ctx, const uint8_t hash[NB_SHA256_LEN],
                          uint8_t sig[NB_SIG_LEN])
{
    return nb_p11_sign(ctx, hash, sig);
}

void nb_p11_signer(struct nb_p11_key *k, struct nb_signer *s)
{
    memset(s, 0, sizeof(*s));
    s->ctx = k;
    s->sign = signer_sign;
    memcpy(s->pub, k->pub, sizeof(s->pub));
}
