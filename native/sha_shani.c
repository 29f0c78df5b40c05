/*
 * sha_shani.c - SHA-1 and SHA-256 compression with the x86 SHA extensions.
 *
 * Compiled for every x86 target: the functions carry target("sha,sse4.1")
 * and are only called after runtime dispatch found SHA-NI. Blocks arrive as
 * big-endian words already decoded (see sha_internal.h), so no byte shuffle.
 */
#define _DEFAULT_SOURCE 1
#include "sha_internal.h"

#if defined(TOTPD_X86) && defined(TOTPD_SIMD)
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
#define GROUP(msg, f)                         \
    e1 = _mm_sha1nexte_epu32(prev, (msg));    \
    prev = abcd;                              \
    abcd = _mm_sha1rnds4_epu32(abcd, e1, f);
    GROUP(m1, 0)
    GROUP(m2, 0)
    GROUP(m3, 0)
    /* groups 4..19, rotating m0..m3 as M[g-4..g-1] */
#define GROUP_N(f)                            \
    {                                         \
        __m128i mn = SHA1_NEXT(m0, m1, m2, m3); \
        m0 = m1;                              \
        m1 = m2;                              \
        m2 = m3;                              \
        m3 = mn;                              \
        GROUP(mn, f)                          \
    }
    GROUP_N(0) /* 4 */
    GROUP_N(1) GROUP_N(1) GROUP_N(1) GROUP_N(1) GROUP_N(1)  /* 5..9 */
    GROUP_N(2) GROUP_N(2) GROUP_N(2) GROUP_N(2) GROUP_N(2)  /* 10..14 */
    GROUP_N(3) GROUP_N(3) GROUP_N(3) GROUP_N(3) GROUP_N(3)  /* 15..19 */
#undef GROUP_N
#undef GROUP
    e0 = _mm_sha1nexte_epu32(prev, e_save);
    abcd = _mm_add_epi32(abcd, abcd_save);
    _mm_storeu_si128((__m128i *)state, _mm_shuffle_epi32(abcd, 0x1B));
    state[4] = (uint32_t)_mm_extract_epi32(e0, 3);
}

static const uint32_t K256[64] __attribute__((aligned(16))) = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u,
    0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu,
    0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu,
    0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau, 0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u,
    0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu,
    0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u, 0x19a4c116u,
    0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u,
    0xc67178f2u};

SHANI void totpd_sha256_compress_shani(uint32_t state[8], const uint32_t block[16]) {
    __m128i tmp = _mm_loadu_si128((const __m128i *)state);        /* a b c d */
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
            __m128i a = m[(g - 4) & 3], b = m[(g - 3) & 3], c = m[(g - 2) & 3],
                    d = m[(g - 1) & 3];
            cur = _mm_sha256msg2_epu32(
                _mm_add_epi32(_mm_sha256msg1_epu32(a, b), _mm_alignr_epi8(d, c, 4)), d);
            m[g & 3] = cur;
        }
        __m128i msg = _mm_add_epi32(cur, _mm_load_si128((const __m128i *)(K256 + 4 * g)));
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
