/*
 * sha_avx512.h - what the fused AVX-512 HMAC-OTP kernels share (included by
 * sha1_avx512.c and sha512_avx512.c only):
 *   SHA-1:   16 messages at once, one per 32-bit lane;
 *   SHA-512:  8 messages at once, one per 64-bit lane.
 *
 * A verify kernel takes up to 16 (8) pairs and does everything in registers:
 * pad states are read from the scratch slots (SHA-1: row loads and an
 * in-register transpose; SHA-512: gathers), every candidate step of the
 * window runs the inner and the outer compression back to back (the inner
 * digest never leaves the registers), then the dynamic truncation, the
 * reduction modulo 10^digits (a multiply-high by a per-lane magic constant)
 * and the comparison run on whole vectors. The verdict is accumulated with
 * mask moves, with no early exit; the per-lane result is a step index turned
 * into the matched counter with masks.
 *
 * The SHA-1 compressions of the verify kernel are inlined with their constant
 * message words (the inner block has 2 variable words of 16, the outer 5), so
 * the zero words, the padding and much of the schedule fold at compile time.
 *
 * A prepare kernel computes the HMAC pad states of up to 16 (8) keys: masked
 * loads of the key bytes (no copy), a byte swap, a transpose (SHA-1: in
 * registers; SHA-512: in cache), two compressions and masked stores (SHA-1)
 * or scatters (SHA-512) into the slots. The SHA-512 transpose buffer is the
 * only key material in memory and is wiped with explicit_bzero.
 *
 * Only AVX-512 code lives here: no SHA-NI in these functions (mixing the two in
 * one loop is far slower); each public function ends with vzeroupper.
 *
 * The reduction: for x < 2^31 and D = 10^d, l = ceil(log2 D),
 * m = ceil(2^(31+l) / D) < 2^32 gives floor(x / D) = (x * m) >> (31 + l)
 * (Granlund-Montgomery, m*D - 2^(31+l) < D <= 2^l); checked exhaustively for
 * the three divisors.
 */
#ifndef TOTPD_SHA_AVX512_H
#define TOTPD_SHA_AVX512_H

#include <immintrin.h>
#include <string.h>

#include "sha_internal.h"
#include "totpd_core.h"

#define TGT __attribute__((target("avx512f,avx512vl,avx512bw")))
#define INL TGT static inline __attribute__((always_inline))

/* Magic reduction constants for digits 6, 7, 8 (index digits - 6). */
static const uint32_t kDiv[3] = {1000000u, 10000000u, 100000000u};
static const uint32_t kMagic[3] = {2251799814u, 3602879702u, 2882303762u};
static const uint32_t kShift[3] = {51u, 55u, 58u}; /* 31 + l */

/* Masked load of len <= 64 key bytes (the rest zero), no read past the key. */
INL __m512i load_key64(const uint8_t *p, uint32_t len) {
    if (len == 0) return _mm512_setzero_si512();
    __mmask64 m = len >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << len) - 1);
    return _mm512_maskz_loadu_epi8(m, p);
}

#endif /* TOTPD_SHA_AVX512_H */
