/*
 * sha_shani.c - SHA-1 and SHA-256 compression with the x86 SHA extensions.
 *
 * Compiled for every x86 target: the functions carry target("sha,sse4.1")
 * and are only called after runtime dispatch found SHA-NI. Blocks arrive as
 * big-endian words already decoded (see sha_internal.h), so no byte shuffle.
 */
#define _DEFAULT_SOURCE 1
#include "sha_internal.h"

#if TOTPD_HAVE_X86_SIMD
#include <immintrin.h>

#define SHANI __attribute__((target("sha,sse4.1,ssse3")))

/* SHA-1: the rounds instructions want W[t] in the highest dword. */
#define SHA1_LOAD(i) _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(block + 4 * (i))), 0x1B)

/* Message schedule: M[g] = msg2(msg1(M[g-4], M[g-3]) ^ M[g-2], M[g-1]). */
#define SHA1_NEXT(m4, m3, m2, m1) \
    _mm_sha1msg2_epu32(_mm_xor_si128(_mm_sha1msg1_epu32((m4), (m3)), (m2)), (m1))

SHANI void totpd_sha1_compress_shani(uint32_t state[5], const uint32_t block[16]) {
    __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)state), 0x1B);
    __m128i e0 = _mm_set_epi32((int)state[4], 0, 0, 0);
    const __m128i abcd_save = abcd, e_save = e0;
    __m128i m0 = SHA1_LOAD(0), m1 = SHA1_LOAD(1), m2 = SHA1_LOAD(2), m3 = SHA1_LOAD(3);
    __m128i e1, prev;

    /* group 0 */
    e0 = _mm_add_epi32(e0, m0);
    prev = abcd;
    abcd = _mm_sha1rnds4_epu32(abcd, e0, 0);
#define GROUP(msg, f)                      \
    e1 = _mm_sha1nexte_epu32(prev, (msg)); \
    prev = abcd;                           \
    abcd = _mm_sha1rnds4_epu32(abcd, e1, f);
    GROUP(m1, 0)
    GROUP(m2, 0)
    GROUP(m3, 0)
    /* groups 4..19, rotating m0..m3 as M[g-4..g-1] */
#define GROUP_N(f)                              \
    {                                           \
        __m128i mn = SHA1_NEXT(m0, m1, m2, m3); \
        m0 = m1;                                \
        m1 = m2;                                \
        m2 = m3;                                \
        m3 = mn;                                \
        GROUP(mn, f)                            \
    }
    /* Five groups a row, as the comments count them. */
    /* clang-format off */
    GROUP_N(0) /* 4 */
    GROUP_N(1) GROUP_N(1) GROUP_N(1) GROUP_N(1) GROUP_N(1)  /* 5..9 */
    GROUP_N(2) GROUP_N(2) GROUP_N(2) GROUP_N(2) GROUP_N(2)  /* 10..14 */
    GROUP_N(3) GROUP_N(3) GROUP_N(3) GROUP_N(3) GROUP_N(3)  /* 15..19 */
    /* clang-format on */
#undef GROUP_N
#undef GROUP
        e0 = _mm_sha1nexte_epu32(prev, e_save);
    abcd = _mm_add_epi32(abcd, abcd_save);
    _mm_storeu_si128((__m128i *)state, _mm_shuffle_epi32(abcd, 0x1B));
    state[4] = (uint32_t)_mm_extract_epi32(e0, 3);
}

SHANI void totpd_sha256_compress_shani(uint32_t state[8], const uint32_t block[16]) {
    __m128i tmp = _mm_loadu_si128((const __m128i *)state);       /* a b c d */
    __m128i st1 = _mm_loadu_si128((const __m128i *)(state + 4)); /* e f g h */
    tmp = _mm_shuffle_epi32(tmp, 0xB1);                          /* c d a b */
    st1 = _mm_shuffle_epi32(st1, 0x1B);                          /* h g f e */
    __m128i st0 = _mm_alignr_epi8(tmp, st1, 8);                  /* ABEF */
    st1 = _mm_blend_epi16(st1, tmp, 0xF0);                       /* CDGH */
    const __m128i save0 = st0, save1 = st1;
    __m128i m[4];
    for (int i = 0; i < 4; i++) m[i] = _mm_loadu_si128((const __m128i *)(block + 4 * i));
    for (int g = 0; g < 16; g++) {
        __m128i cur;
        if (g < 4) {
            cur = m[g];
        } else {
            __m128i a = m[(g - 4) & 3], b = m[(g - 3) & 3], c = m[(g - 2) & 3], d = m[(g - 1) & 3];
            cur = _mm_sha256msg2_epu32(
                _mm_add_epi32(_mm_sha256msg1_epu32(a, b), _mm_alignr_epi8(d, c, 4)), d);
            m[g & 3] = cur;
        }
        __m128i k = _mm_load_si128((const __m128i *)(totpd_sha256_k + 4 * g));
        __m128i msg = _mm_add_epi32(cur, k);
        st1 = _mm_sha256rnds2_epu32(st1, st0, msg);
        msg = _mm_shuffle_epi32(msg, 0x0E);
        st0 = _mm_sha256rnds2_epu32(st0, st1, msg);
    }
    st0 = _mm_add_epi32(st0, save0);
    st1 = _mm_add_epi32(st1, save1);
    tmp = _mm_shuffle_epi32(st0, 0x1B);    /* FEBA */
    st1 = _mm_shuffle_epi32(st1, 0xB1);    /* DCHG */
    st0 = _mm_blend_epi16(tmp, st1, 0xF0); /* DCBA */
    st1 = _mm_alignr_epi8(st1, tmp, 8);    /* HGFE */
    _mm_storeu_si128((__m128i *)state, st0);
    _mm_storeu_si128((__m128i *)(state + 4), st1);
}
#endif
