/*
 * sha1_avx2.c - SHA-1 compression of 8 independent messages at once (AVX2),
 * one message per 32-bit lane.
 *
 * Kept in its own function and file, away from the SHA-NI code: mixing the
 * two in one loop was measured 57x slower. The function ends with vzeroupper
 * (emitted by GCC for AVX functions) before returning to SSE code.
 */
#define _DEFAULT_SOURCE 1
#include "sha_internal.h"

#if defined(TOTPD_X86) && defined(TOTPD_SIMD)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))

#define ROL(x, n) _mm256_or_si256(_mm256_slli_epi32((x), (n)), _mm256_srli_epi32((x), 32 - (n)))

AVX2 void totpd_sha1_compress_avx2_x8(uint32_t state[40], const uint32_t block[128]) {
    __m256i a = _mm256_loadu_si256((const __m256i *)(state + 0));
    __m256i b = _mm256_loadu_si256((const __m256i *)(state + 8));
    __m256i c = _mm256_loadu_si256((const __m256i *)(state + 16));
    __m256i d = _mm256_loadu_si256((const __m256i *)(state + 24));
    __m256i e = _mm256_loadu_si256((const __m256i *)(state + 32));
    const __m256i a0 = a, b0 = b, c0 = c, d0 = d, e0 = e;
    __m256i w[16];
    for (int t = 0; t < 16; t++) w[t] = _mm256_loadu_si256((const __m256i *)(block + 8 * t));

#define STEP(t, F, K)                                                                   \
    {                                                                                   \
        __m256i wt;                                                                     \
        if ((t) < 16) {                                                                 \
            wt = w[(t)&15];                                                             \
        } else {                                                                        \
            wt = _mm256_xor_si256(_mm256_xor_si256(w[((t)-3) & 15], w[((t)-8) & 15]),   \
                                  _mm256_xor_si256(w[((t)-14) & 15], w[(t)&15]));       \
            wt = ROL(wt, 1);                                                            \
            w[(t)&15] = wt;                                                             \
        }                                                                               \
        __m256i tmp = _mm256_add_epi32(_mm256_add_epi32(ROL(a, 5), (F)),                \
                                       _mm256_add_epi32(_mm256_add_epi32(e, (K)), wt)); \
        e = d;                                                                          \
        d = c;                                                                          \
        c = ROL(b, 30);                                                                 \
        b = a;                                                                          \
        a = tmp;                                                                        \
    }
#define F_CH _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d)))
#define F_PAR _mm256_xor_si256(_mm256_xor_si256(b, c), d)
#define F_MAJ \
    _mm256_or_si256(_mm256_and_si256(b, c), _mm256_and_si256(d, _mm256_or_si256(b, c)))

    const __m256i k1 = _mm256_set1_epi32(0x5a827999);
    const __m256i k2 = _mm256_set1_epi32(0x6ed9eba1);
    const __m256i k3 = _mm256_set1_epi32((int)0x8f1bbcdcu);
    const __m256i k4 = _mm256_set1_epi32((int)0xca62c1d6u);
    for (int t = 0; t < 20; t++) STEP(t, F_CH, k1)
    for (int t = 20; t < 40; t++) STEP(t, F_PAR, k2)
    for (int t = 40; t < 60; t++) STEP(t, F_MAJ, k3)
    for (int t = 60; t < 80; t++) STEP(t, F_PAR, k4)
#undef STEP
#undef F_CH
#undef F_PAR
#undef F_MAJ

    _mm256_storeu_si256((__m256i *)(state + 0), _mm256_add_epi32(a, a0));
    _mm256_storeu_si256((__m256i *)(state + 8), _mm256_add_epi32(b, b0));
    _mm256_storeu_si256((__m256i *)(state + 16), _mm256_add_epi32(c, c0));
    _mm256_storeu_si256((__m256i *)(state + 24), _mm256_add_epi32(d, d0));
    _mm256_storeu_si256((__m256i *)(state + 32), _mm256_add_epi32(e, e0));
    /* Key-dependent schedule words: clear them (the wipe of the caller's
     * buffers covers the state). */
    for (int t = 0; t < 16; t++) w[t] = _mm256_setzero_si256();
    __asm__ __volatile__("" : : "m"(w) : "memory");
    _mm256_zeroupper();
}
#endif
