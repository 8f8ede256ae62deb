/* fuzz_manifest.c - libFuzzer target for the manifest parser (core/
 * manifest.c over core/cbor.c): whatever the bytes, parsing returns a code
 * and never reads outside the input, and what it accepts is consistent.
 *
 * The input is used as a manifest (COSE_Sign1 bytes), as a revocation
 * list, and as a package container header. Signatures of fuzzed input
 * never verify, so nb_manifest_verify is exercised up to the root-key
 * check; nb_manifest_parse_unverified reaches every field of the map.
 *
 * scripts/fuzz.sh builds and runs it (make fuzz; 60 s in make test).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nb_crypto_mbedtls.h"
#include "nb_manifest.h"

#define CHECK(cond)           \
    do {                      \
        if (!(cond))          \
            __builtin_trap(); \
    } while (0)

static nb_err no_root(void *ctx, const uint8_t kid[NB_KEY_ID_LEN],
                      uint8_t pub[NB_PUBKEY_LEN])
{
    (void)ctx;
    (void)kid;
    memset(pub, 0, NB_PUBKEY_LEN);
    return NB_ERR_UNKNOWN_KEY;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct nb_mbedtls_crypto mc;
    static struct nb_crypto c;
    static int ready;
    struct nb_keystore ks = {NULL, no_root};
    struct nb_manifest m;
    struct nb_revocations rev;
    struct nb_identity id;
    uint32_t len = size > NB_MANIFEST_MAX ? NB_MANIFEST_MAX : (uint32_t)size;
    if (!ready) {
        nb_crypto_mbedtls_init(&c, &mc);
        ready = 1;
    }
    nb_err err = nb_manifest_parse_unverified(&c, data, len, &m);
    if (err == NB_OK) {
        /* Every offset the struct hands out lies inside the input. */
        CHECK(m.len == len);
        CHECK(m.hw_count >= 1 && m.hw_count <= NB_MAX_HW_REVS);
        for (unsigned i = 0; i < m.hw_count; i++)
            CHECK((uint32_t)m.hw_off[i] + m.hw_len[i] <= len);
        CHECK(m.block_count >= 1);
        CHECK((uint64_t)m.block_table_off +
                  (uint64_t)m.block_count * NB_SHA256_LEN <= len);
        CHECK(nb_manifest_block_digest(&m, data, m.block_count - 1));
        CHECK(!nb_manifest_block_digest(&m, data, m.block_count));
        CHECK(m.payload_offset >= NB_PKG_HDR_SIZE + len);
        memset(&id, 0, sizeof(id));
        memcpy(id.vendor, m.vendor, NB_UUID_LEN);
        memcpy(id.class_id, m.class_id, NB_UUID_LEN);
        id.hw_rev_len = m.hw_len[0];
        memcpy(id.hw_rev, data + m.hw_off[0], m.hw_len[0]);
        err = nb_manifest_check_device(&m, data, &id, 0xFFFFFFFFu);
        CHECK(err == NB_OK || err == NB_ERR_NOSPC);
    }
    /* Unsigned input can never pass verification. */
    CHECK(nb_manifest_verify(&c, &ks, NULL, data, len, &m) != NB_OK);
    CHECK(nb_revocation_verify(&c, &ks, NULL, data, len, &rev) != NB_OK);
    if (size >= NB_PKG_HDR_SIZE) {
        uint32_t mlen = 0;
        if (nb_pkg_parse_header(data, &mlen) == NB_OK)
            CHECK(mlen >= 1 && mlen <= NB_MANIFEST_MAX);
    }
    return 0;
}
