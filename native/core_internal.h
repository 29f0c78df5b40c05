/*
 * core_internal.h - what the parts of the core share (not public).
 *
 *   dispatch.c   CPU features, the process default path, what a path runs
 *   hmac.c       HMAC pad states, one HOTP value and one window from them
 *   hmac_x8.c    the same for 8 SHA-1 lanes over the 8-lane compressions
 *   lanes.c      lane groups and the batch work (prepare keys, verify pairs)
 *   batch.c      validation, stack scrubbing and the public entry points
 *   errors.c     totpd_strerror
 *   sha_*.c      the SHA compressions and the fused AVX-512 kernels
 */
#ifndef TOTPD_CORE_INTERNAL_H
#define TOTPD_CORE_INTERNAL_H

#include <stdint.h>

#include "sha_internal.h"
#include "totpd_core.h"

/* ------------------------------------------------------------------------ */
/* What a CPU path runs.                                                     */

#define TOTPD_MAX_LANES 16
#define TOTPD_N_ALGS 3 /* TOTPD_ALG_SHA1 .. TOTPD_ALG_SHA512 */
_Static_assert(TOTPD_ALG_SHA1 == 1 && TOTPD_ALG_SHA512 == TOTPD_N_ALGS,
               "per-algorithm tables are indexed by algorithm - 1");

/* A multi-lane kernel (the fused AVX-512 ones in sha_avx512_*.c, the 8-lane
 * SHA-1 drivers in hmac_x8.c). verify: lane l is pair pairs[l] checked against
 * key kidx[l] (already range-checked), from the pad states in scratch to
 * out[pairs[l]]. prepare: the pad states of keys which[0..n), key l being
 * key_ptr[l] of key_len[l] bytes, into their scratch slots. Lanes beyond n
 * repeat lane 0 and are not written. Every per-item value comes from the
 * caller's lane arrays, read once from the caller's buffers. */
typedef void (*totpd_verify_lanes_fn)(const uint64_t *scratch, const uint8_t *digits,
                                      const uint64_t *counters, const uint32_t *codes,
                                      const uint32_t *pairs, const uint32_t *kidx, int n,
                                      uint32_t window, int64_t *out);
typedef void (*totpd_prepare_lanes_fn)(const uint8_t *const *key_ptr, const uint32_t *key_len,
                                       const uint32_t *which, int n, uint64_t *scratch);

typedef struct {
    int width;            /* lanes per call, at most TOTPD_MAX_LANES */
    int scalar_tail;      /* a last group of at most this many items runs scalar */
    int large_frame;      /* its frame needs the large stack scrub (batch.c) */
    uint32_t max_key_len; /* longer keys are hashed first: prepared by the scalar code */
    totpd_verify_lanes_fn verify;
    totpd_prepare_lanes_fn prepare;
} totpd_lane_kernel;

typedef struct {
    totpd_compress32_fn sha1; /* scalar compressions */
    totpd_compress32_fn sha256;
    /* lanes[algorithm - 1]: the multi-lane kernel, NULL where it runs scalar. */
    const totpd_lane_kernel *lanes[TOTPD_N_ALGS];
} totpd_impl;

/* What path (TOTPD_PATH_*, or -1 for the process default) runs here;
 * TOTPD_ERR_PATH if unknown or not supported by this CPU. */
int totpd_resolve_impl(int path, totpd_impl *im);

/* ------------------------------------------------------------------------ */
/* HMAC. A pad slot is TOTPD_PAD_SLOT_WORDS uint64 words: bytes [0, 64) hold */
/* the inner chaining state, [64, 128) the outer one.                        */

/* The pad states of one key (alg: whatever it holds, the slot is filled). */
void totpd_hmac_pads(const uint8_t *key, uint32_t key_len, uint8_t alg, const totpd_impl *im,
                     uint64_t *slot);
/* The HOTP value of one step from a pad slot. */
uint32_t totpd_hmac_hotp(const uint64_t *slot, uint8_t alg, uint64_t step, uint8_t digits,
                         const totpd_impl *im);
/* The lowest step of [counter - window, counter + window] whose value is
 * code, or -1; every step computed and compared, no early exit. */
int64_t totpd_hmac_verify(const uint64_t *slot, uint8_t alg, uint8_t digits, uint64_t counter,
                          uint32_t code, uint32_t window, const totpd_impl *im);

/* 8-lane SHA-1 HMAC over the AVX2 and AVX-512VL compressions (hmac_x8.c;
 * only when TOTPD_HAVE_X86_SIMD). */
void totpd_sha1_verify_x8_avx2(const uint64_t *scratch, const uint8_t *digits,
                               const uint64_t *counters, const uint32_t *codes,
                               const uint32_t *pairs, const uint32_t *kidx, int n, uint32_t window,
                               int64_t *out);
void totpd_sha1_verify_x8_avx512(const uint64_t *scratch, const uint8_t *digits,
                                 const uint64_t *counters, const uint32_t *codes,
                                 const uint32_t *pairs, const uint32_t *kidx, int n,
                                 uint32_t window, int64_t *out);
void totpd_sha1_prepare_x8_avx2(const uint8_t *const *key_ptr, const uint32_t *key_len,
                                const uint32_t *which, int n, uint64_t *scratch);
void totpd_sha1_prepare_x8_avx512(const uint8_t *const *key_ptr, const uint32_t *key_len,
                                  const uint32_t *which, int n, uint64_t *scratch);

/* ------------------------------------------------------------------------ */
/* Batch work (lanes.c), after validation (batch.c).                         */

/* One call's inputs: the caller's structs copied field by field, each field
 * read once on entry. */
typedef struct {
    totpd_key_table keys;
    totpd_pairs pairs;
    uint32_t window;
    totpd_impl im;
} totpd_call;

/* Pad states of keys [first, end) into scratch; pairs [first, end) verified
 * into out. Memory-safe whatever the caller's buffers hold by now. Both
 * return 1 if a kernel with a large frame ran (see the stack scrub). */
int totpd_prepare_range(const totpd_call *c, uint32_t first, uint32_t end, uint64_t *scratch);
int totpd_verify_range(const totpd_call *c, uint32_t first, uint32_t end, const uint64_t *scratch,
                       int64_t *out);

/* ------------------------------------------------------------------------ */
/* Constant-time helpers and the HOTP truncation.                            */

/* All ones if x == 0, else 0 (x < 2^32). */
static inline uint64_t totpd_ct_zero_mask32(uint32_t x) { return 0u - (((uint64_t)x - 1u) >> 63); }

/* All ones if a < b (unsigned 64-bit), else 0. */
static inline uint64_t totpd_ct_lt_mask64(uint64_t a, uint64_t b) {
    return 0u - ((a ^ ((a ^ b) | ((a - b) ^ b))) >> 63);
}

/* RFC 4226 dynamic truncation over the first 20 digest bytes given as five
 * big-endian words; the offset comes from the digest's last byte. The word
 * pair is selected with masks (no secret-dependent memory index). */
static inline uint32_t totpd_truncate(const uint32_t w[5], uint32_t last_byte) {
    uint32_t o = last_byte & 15u;
    uint32_t j = o >> 2, r = o & 3u;
    uint32_t hi = 0, lo = 0;
    for (uint32_t i = 0; i < 4; i++) {
        uint32_t m = (uint32_t)totpd_ct_zero_mask32(i ^ j);
        hi |= w[i] & m;
        lo |= w[i + 1] & m;
    }
    uint64_t v = ((uint64_t)hi << 32) | lo;
    return (uint32_t)(v >> (32u - 8u * r)) & 0x7fffffffu;
}

/* digits is public: a switch gives constant divisors (multiply, not div). */
static inline uint32_t totpd_reduce_digits(uint32_t bin, uint8_t digits) {
    switch (digits) {
        case 6: return bin % 1000000u;
        case 7: return bin % 10000000u;
        default: return bin % 100000000u;
    }
}

/* A window's accumulator: result becomes step where got == code and valid is
 * all ones (a mask select, no branch on the comparison). */
static inline uint64_t totpd_ct_keep(uint64_t result, uint64_t step, uint32_t got, uint32_t code,
                                     uint64_t valid) {
    uint64_t m = totpd_ct_zero_mask32(got ^ code) & valid;
    return (result & ~m) | (step & m);
}

#endif /* TOTPD_CORE_INTERNAL_H */
