/*
 * sha1_x8_body.h - body of the 8-lane SHA-1 compression, included by
 * sha1_avx2.c once per instruction set. The includer defines SHA1X8_NAME,
 * SHA1X8_ATTR, ROL(x, n), XOR4(a, b, c, d), F_CH, F_PAR and F_MAJ (over the
 * round variables b, c, d).
 */
SHA1X8_ATTR void SHA1X8_NAME(uint32_t state[40], const uint32_t block[128]) {
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
            wt = XOR4(w[((t)-3) & 15], w[((t)-8) & 15], w[((t)-14) & 15], w[(t)&15]);   \
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

    const __m256i k1 = _mm256_set1_epi32(0x5a827999);
    const __m256i k2 = _mm256_set1_epi32(0x6ed9eba1);
    const __m256i k3 = _mm256_set1_epi32((int)0x8f1bbcdcu);
    const __m256i k4 = _mm256_set1_epi32((int)0xca62c1d6u);
    for (int t = 0; t < 20; t++) STEP(t, F_CH, k1)
    for (int t = 20; t < 40; t++) STEP(t, F_PAR, k2)
    for (int t = 40; t < 60; t++) STEP(t, F_MAJ, k3)
    for (int t = 60; t < 80; t++) STEP(t, F_PAR, k4)
#undef STEP

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
