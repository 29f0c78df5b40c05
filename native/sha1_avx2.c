/*
 * sha1_avx2.c - SHA-1 compression of 8 independent messages at once (AVX2),
 * one message per 32-bit lane.
 *
 * Kept in its own function and file, away from the SHA-NI code: mixing the
 * two in one loop is far slower (benchmarks/NOTES.md). The function ends with
 * vzeroupper (emitted by GCC for AVX functions) before returning to SSE code.
 */
#define _DEFAULT_SOURCE 1
#include "sha_internal.h"

#if TOTPD_HAVE_X86_SIMD
#include <immintrin.h>

/* ---- AVX2: rotates as shift/shift/or ---------------------------------- */
#define SHA1X8_NAME totpd_sha1_compress_avx2_x8
#define SHA1X8_ATTR __attribute__((target("avx2")))
#define ROL(x, n) _mm256_or_si256(_mm256_slli_epi32((x), (n)), _mm256_srli_epi32((x), 32 - (n)))
#define XOR4(p, q, r, s) _mm256_xor_si256(_mm256_xor_si256((p), (q)), _mm256_xor_si256((r), (s)))
#define F_CH _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d)))
#define F_PAR _mm256_xor_si256(_mm256_xor_si256(b, c), d)
#define F_MAJ _mm256_or_si256(_mm256_and_si256(b, c), _mm256_and_si256(d, _mm256_or_si256(b, c)))
#include "sha1_x8_body.h"
#undef SHA1X8_NAME
#undef SHA1X8_ATTR
#undef ROL
#undef XOR4
#undef F_CH
#undef F_PAR
#undef F_MAJ

/* ---- AVX-512VL on 256-bit vectors: vprold and vpternlogd ----------------- */
#define SHA1X8_NAME totpd_sha1_compress_avx512_x8
#define SHA1X8_ATTR __attribute__((target("avx2,avx512f,avx512vl")))
#define ROL(x, n) _mm256_rol_epi32((x), (n))
#define XOR4(p, q, r, s) _mm256_ternarylogic_epi32(_mm256_xor_si256((p), (q)), (r), (s), 0x96)
#define F_CH _mm256_ternarylogic_epi32(b, c, d, 0xCA)
#define F_PAR _mm256_ternarylogic_epi32(b, c, d, 0x96)
#define F_MAJ _mm256_ternarylogic_epi32(b, c, d, 0xE8)
#include "sha1_x8_body.h"
#undef SHA1X8_NAME
#undef SHA1X8_ATTR
#undef ROL
#undef XOR4
#undef F_CH
#undef F_PAR
#undef F_MAJ
#endif
