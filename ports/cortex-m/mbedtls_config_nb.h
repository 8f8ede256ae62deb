/* mbedtls_config_nb.h - the smallest mbedTLS 2.28 configuration the
 * bootloader's crypto port (ports/mbedtls/nb_crypto_mbedtls.c) needs:
 * SHA-256 and ECDSA verify on P-256, nothing else.
 *
 * Used through -DMBEDTLS_CONFIG_FILE='"mbedtls_config_nb.h"' by
 * scripts/arm-bootloader.sh. No entropy, no RNG, no file system, no
 * network, no time, no printf: a verify needs none of them. Memory comes
 * from a static pool (memory_buffer_alloc) that the bootloader hands to
 * mbedtls_memory_buffer_alloc_init() once at start-up.
 */
#ifndef NB_MBEDTLS_CONFIG_NB_H
#define NB_MBEDTLS_CONFIG_NB_H

/* Inline assembly for the bignum inner loop (UMAAL on Cortex-M4,
 * UMULL/ADDS on Cortex-M3): both smaller and faster than the C loop. */
#define MBEDTLS_HAVE_ASM

/* calloc/free through function pointers, pointed at a static pool. */
#define MBEDTLS_PLATFORM_C
#define MBEDTLS_PLATFORM_MEMORY
#define MBEDTLS_PLATFORM_NO_STD_FUNCTIONS
#define MBEDTLS_MEMORY_BUFFER_ALLOC_C
/* memory_buffer_alloc calls exit() when it finds its pool corrupted;
 * there is no exit() here: the bootloader supplies this (it never
 * returns). */
void nb_mbedtls_exit(int status);
#define MBEDTLS_PLATFORM_EXIT_MACRO nb_mbedtls_exit

/* The arithmetic. */
#define MBEDTLS_BIGNUM_C
/* Divide by hand rather than through a 64-bit division: saves libgcc's
 * __aeabi_uldivmod (about 0.6 KiB on Cortex-M4 with nothing else that
 * needs it). */
#define MBEDTLS_NO_UDBL_DIVISION
#define MBEDTLS_ECP_C
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED /* the only curve: ES256 */
#define MBEDTLS_ECP_NIST_OPTIM           /* fast reduction mod p-256 */
/* The bootloader only verifies: there is no RNG to blind a scalar
 * multiplication with, and a verify has no secret to protect. */
#define MBEDTLS_ECP_NO_INTERNAL_RNG
/* Peak RAM: a window of 2 points and no cached comb table for G (the
 * port loads and frees the group on every verify, so a cached table would
 * cost RAM and save nothing). */
#define MBEDTLS_ECP_WINDOW_SIZE 2
#define MBEDTLS_ECP_FIXED_POINT_OPTIM 0
#define MBEDTLS_ECP_MAX_BITS 256

/* ECDSA verify; mbedTLS' ECDSA module requires both ASN.1 modules (the
 * linker drops the DER signature functions the port does not call). */
#define MBEDTLS_ECDSA_C
#define MBEDTLS_ASN1_PARSE_C
#define MBEDTLS_ASN1_WRITE_C

/* SHA-256 (SHA-224 comes along with it in 2.28), the rolled-up variant:
 * about a third of the code, somewhat slower. */
#define MBEDTLS_SHA256_C
#define MBEDTLS_SHA256_SMALLER

#include "mbedtls/check_config.h"

#endif
