/*
 * sha_internal.h - compression functions shared inside the core (not public).
 *
 * Compression functions take the message block as big-endian words already
 * decoded (uint32_t[16] for SHA-1/SHA-256, uint64_t[16] for SHA-512): the
 * HMAC code builds its blocks as words, so no byte swapping is needed.
 */
#ifndef TOTPD_SHA_INTERNAL_H
#define TOTPD_SHA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* The x86 SIMD kernels (SHA-NI, AVX2, AVX-512) are compiled in: an x86 target
 * and a build that asks for them (TOTPD_SIMD, set by native/build_native.py).
 * The one place this condition is written; everything else tests this macro. */
#if (defined(__x86_64__) || defined(__i386__)) && defined(TOTPD_SIMD)
#define TOTPD_HAVE_X86_SIMD 1
#else
#define TOTPD_HAVE_X86_SIMD 0
#endif

typedef void (*totpd_compress32_fn)(uint32_t *state, const uint32_t *block);

void totpd_sha1_compress_portable(uint32_t state[5], const uint32_t block[16]);
void totpd_sha256_compress_portable(uint32_t state[8], const uint32_t block[16]);
void totpd_sha512_compress_portable(uint64_t state[8], const uint64_t block[16]);

/* Whole-message hashes (portable), for HMAC keys longer than a block. */
void totpd_sha1(const uint8_t *msg, size_t len, uint8_t out[20]);
void totpd_sha256(const uint8_t *msg, size_t len, uint8_t out[32]);
void totpd_sha512(const uint8_t *msg, size_t len, uint8_t out[64]);

extern const uint32_t totpd_sha1_iv[5];
extern const uint32_t totpd_sha256_iv[8];
extern const uint64_t totpd_sha512_iv[8];
/* 16-byte aligned: the SHA-NI rounds load it four words at a time. */
extern const uint32_t totpd_sha256_k[64] __attribute__((aligned(16)));
extern const uint64_t totpd_sha512_k[80];

/* The SIMD kernels below exist only when TOTPD_HAVE_X86_SIMD; the dispatcher
 * (dispatch.c) is the only code that names them. */

/* SHA-NI (compiled with target("sha,sse4.1"); call only when supported). */
void totpd_sha1_compress_shani(uint32_t state[5], const uint32_t block[16]);
void totpd_sha256_compress_shani(uint32_t state[8], const uint32_t block[16]);

/* AVX2 8-lane SHA-1: lane l of every vector is message l.
 * state: 5 x 8 words (state[i*8 + l] = word i of lane l), updated in place.
 * block: 16 x 8 words (block[t*8 + l] = word t of lane l). */
void totpd_sha1_compress_avx2_x8(uint32_t state[40], const uint32_t block[128]);
/* Same lanes and layout, with AVX-512VL (vprold, vpternlogd) on 256-bit vectors. */
void totpd_sha1_compress_avx512_x8(uint32_t state[40], const uint32_t block[128]);
typedef void (*totpd_x8_fn)(uint32_t state[40], const uint32_t block[128]);

/* Fused AVX-512 (F, VL, BW) kernels on 512-bit registers (sha1_avx512.c,
 * sha512_avx512.c): 16 SHA-1 (8 SHA-512) lanes, the lane kernel interface of
 * core_internal.h (totpd_lane_kernel); prepare reads at most 64 (128) bytes of
 * a key. */
void totpd_sha1_verify_x16(const uint64_t *scratch, const uint8_t *digits, const uint64_t *counters,
                           const uint32_t *codes, const uint32_t *pairs, const uint32_t *kidx,
                           int n, uint32_t window, int64_t *out);
void totpd_sha1_prepare_x16(const uint8_t *const *key_ptr, const uint32_t *key_len,
                            const uint32_t *which, int n, uint64_t *scratch);
void totpd_sha512_verify_x8(const uint64_t *scratch, const uint8_t *digits,
                            const uint64_t *counters, const uint32_t *codes, const uint32_t *pairs,
                            const uint32_t *kidx, int n, uint32_t window, int64_t *out);
void totpd_sha512_prepare_x8(const uint8_t *const *key_ptr, const uint32_t *key_len,
                             const uint32_t *which, int n, uint64_t *scratch);

static inline uint32_t totpd_load_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline uint64_t totpd_load_be64(const uint8_t *p) {
    return ((uint64_t)totpd_load_be32(p) << 32) | (uint64_t)totpd_load_be32(p + 4);
}

static inline void totpd_store_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void totpd_store_be64(uint8_t *p, uint64_t v) {
    totpd_store_be32(p, (uint32_t)(v >> 32));
    totpd_store_be32(p + 4, (uint32_t)v);
}

#endif /* TOTPD_SHA_INTERNAL_H */
