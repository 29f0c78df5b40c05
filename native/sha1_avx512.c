/*
 * sha1_avx512.c - the fused 16-lane SHA-1 HMAC-OTP kernels (see sha_avx512.h).
 */
#define _DEFAULT_SOURCE 1
#include "sha_internal.h"

#if TOTPD_HAVE_X86_SIMD
#include "sha_avx512.h"

#define XOR3_32(x, y, z) _mm512_ternarylogic_epi32((x), (y), (z), 0x96)
#define CH_32(x, y, z) _mm512_ternarylogic_epi32((x), (y), (z), 0xCA)
#define MAJ_32(x, y, z) _mm512_ternarylogic_epi32((x), (y), (z), 0xE8)

/* Generic vector operations (not intrinsics) for the message schedule and the
 * K + W sums: GCC folds them when message words are compile-time constants
 * (the padding and the zero words of the fixed-length HMAC blocks), and emits
 * vprold / vpternlogd for the rest. */
typedef uint32_t v16u __attribute__((vector_size(64)));

/* W[t] = rol1(W[t-3] ^ W[t-8] ^ W[t-14] ^ W[t-16]). */
INL __m512i sha1_sched_x16(__m512i a, __m512i b, __m512i c, __m512i d) {
    v16u x = (v16u)a ^ (v16u)b ^ (v16u)c ^ (v16u)d;
    return (__m512i)((x << 1) | (x >> 31));
}

/* One compression, always inlined so that the callers' constant message words
 * fold (the verify kernel's inner and outer blocks have only 2 and 5 variable
 * words of 16). One stream at a time: the state and the 16-word schedule
 * window stay in registers (two interleaved streams spilled to the stack),
 * and the out-of-order core already overlaps the rounds with the schedule. */
INL void sha1_x16_rounds(__m512i s[5], __m512i w[16]) {
    __m512i a = s[0], b = s[1], c = s[2], d = s[3], e = s[4];
#pragma GCC unroll 80
    for (int t = 0; t < 80; t++) {
        __m512i wt;
        if (t < 16) {
            wt = w[t];
        } else {
            wt = sha1_sched_x16(w[(t - 3) & 15], w[(t - 8) & 15], w[(t - 14) & 15], w[t & 15]);
            w[t & 15] = wt;
        }
        __m512i f;
        uint32_t k;
        if (t < 20) {
            f = CH_32(b, c, d);
            k = 0x5a827999u;
        } else if (t < 40) {
            f = XOR3_32(b, c, d);
            k = 0x6ed9eba1u;
        } else if (t < 60) {
            f = MAJ_32(b, c, d);
            k = 0x8f1bbcdcu;
        } else {
            f = XOR3_32(b, c, d);
            k = 0xca62c1d6u;
        }
        /* The critical path is a -> rol5 (2 cycles on Zen 4) -> add, and
         * a -> f -> add -> add: e + K + W is summed off the path, then added
         * to f, then to rol5(a). The opaque values keep GCC's reassociation
         * from chaining the five terms its own way (a 4-add path). */
        __m512i ekw = _mm512_add_epi32(e, (__m512i)((v16u)wt + k));
        __asm__("" : "+v"(ekw));
        __m512i fekw = _mm512_add_epi32(f, ekw);
        __asm__("" : "+v"(fekw));
        __m512i tmp = _mm512_add_epi32(_mm512_rol_epi32(a, 5), fekw);
        e = d;
        d = c;
        c = _mm512_rol_epi32(b, 30);
        b = a;
        a = tmp;
    }
    s[0] = _mm512_add_epi32(s[0], a);
    s[1] = _mm512_add_epi32(s[1], b);
    s[2] = _mm512_add_epi32(s[2], c);
    s[3] = _mm512_add_epi32(s[3], d);
    s[4] = _mm512_add_epi32(s[4], e);
}

/* The generic compression for the prepare kernel (one out-of-line copy). */
TGT static __attribute__((noinline)) void sha1_x16(__m512i s[5], const __m512i win[16]) {
    __m512i w[16];
    for (int t = 0; t < 16; t++) w[t] = win[t];
    sha1_x16_rounds(s, w);
}

/* Per-lane 32-bit values through a 3-entry table indexed by digits - 6. */
INL __m512i lut3_32(__m512i sel, const uint32_t t[3]) {
    return _mm512_permutexvar_epi32(sel, _mm512_setr_epi32((int)t[0], (int)t[1], (int)t[2], 0, 0, 0,
                                                           0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
}

/* The HOTP value of every lane from the outer state (SHA-1, 32-bit lanes). */
INL __m512i sha1_code_x16(const __m512i h[5], __m512i magic, __m512i magic_hi, __m512i post,
                          __m512i div) {
    const __m512i one = _mm512_set1_epi32(1), two = _mm512_set1_epi32(2),
                  three = _mm512_set1_epi32(3);
    __m512i off = _mm512_and_si512(h[4], _mm512_set1_epi32(15));
    __m512i j = _mm512_srli_epi32(off, 2);
    __m512i sh = _mm512_slli_epi32(_mm512_and_si512(off, three), 3); /* 8 * (off & 3) */
    __mmask16 j1 = _mm512_cmpeq_epi32_mask(j, one), j2 = _mm512_cmpeq_epi32_mask(j, two),
              j3 = _mm512_cmpeq_epi32_mask(j, three);
    __m512i hi = _mm512_mask_blend_epi32(j1, h[0], h[1]);
    hi = _mm512_mask_blend_epi32(j2, hi, h[2]);
    hi = _mm512_mask_blend_epi32(j3, hi, h[3]);
    __m512i lo = _mm512_mask_blend_epi32(j1, h[1], h[2]);
    lo = _mm512_mask_blend_epi32(j2, lo, h[3]);
    lo = _mm512_mask_blend_epi32(j3, lo, h[4]);
    /* srlv by 32 gives 0, as the offset-multiple-of-4 case needs. */
    __m512i bin = _mm512_or_si512(
        _mm512_sllv_epi32(hi, sh),
        _mm512_srlv_epi32(lo, _mm512_sub_epi32(_mm512_set1_epi32(32), sh)));
    bin = _mm512_and_si512(bin, _mm512_set1_epi32(0x7fffffff));
    /* floor(bin / D): high halves of the 64-bit products of even and odd lanes. */
    __m512i pe = _mm512_mul_epu32(bin, magic);
    __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(bin, 32), magic_hi);
    __m512i q = _mm512_mask_blend_epi32((__mmask16)0xAAAA, _mm512_srli_epi64(pe, 32), po);
    q = _mm512_srlv_epi32(q, post);
    return _mm512_sub_epi32(bin, _mm512_mullo_epi32(q, div));
}

/* In-register transpose of a 16 x 16 matrix of 32-bit words (row i of the
 * input becomes lane i of every output): 64 shuffles, no memory. */
INL void transpose16_x16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* u[4i + k], 128-bit lane j: word 4j + k of rows 4i .. 4i + 3. */
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int k = 0; k < 4; k++) {
        __m512i a02 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x88);
        __m512i a13 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xDD);
        __m512i b02 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x88);
        __m512i b13 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xDD);
        r[k] = _mm512_shuffle_i32x4(a02, b02, 0x88);
        r[4 + k] = _mm512_shuffle_i32x4(a13, b13, 0x88);
        r[8 + k] = _mm512_shuffle_i32x4(a02, b02, 0xDD);
        r[12 + k] = _mm512_shuffle_i32x4(a13, b13, 0xDD);
    }
}

/* The verdicts of every candidate step for 16 lanes: per lane the step index
 * (0 .. 2 * window) of the lowest matching step, or -1. hi_zero (a constant at
 * each call site) says that no step's counter reaches 2^32, so the inner
 * block's first word is the constant 0: the first rounds then depend on the
 * key alone (hoisted out of the loop) and more of the schedule folds. */
INL __m512i sha1_verify_steps_x16(const __m512i ist[5], const __m512i ost[5], __m512i vlo,
                                  __m512i vhi, __m512i vlow8, __m512i vcode, __m512i magic,
                                  __m512i magic_hi, __m512i post, __m512i div, uint32_t window,
                                  const int hi_zero) {
    const __m512i one = _mm512_set1_epi32(1), zero = _mm512_setzero_si512();
    const __m512i pad80 = _mm512_set1_epi32((int)0x80000000u);
    __m512i res_v = _mm512_set1_epi32(-1);
    /* Candidate steps counter + d, d = +window .. -window; the mask move keeps
     * the last match, the lowest step. Steps below zero wrap and are masked
     * out. */
    for (int64_t d = (int64_t)window; d >= -(int64_t)window; d--) {
        __m512i slo = _mm512_add_epi32(vlo, _mm512_set1_epi32((int)d));
        __m512i shi = zero;
        if (!hi_zero) {
            shi = vhi;
            if (d > 0)
                shi = _mm512_mask_add_epi32(shi, _mm512_cmplt_epu32_mask(slo, vlo), shi, one);
            else if (d < 0)
                shi = _mm512_mask_sub_epi32(shi, _mm512_cmpgt_epu32_mask(slo, vlo), shi, one);
        }
        __mmask16 valid = d < 0 ? _mm512_cmpge_epu32_mask(vlow8, _mm512_set1_epi32((int)-d))
                                : (__mmask16)0xFFFF;
        __m512i s[5], w[16];
        for (int t = 0; t < 5; t++) s[t] = ist[t];
        w[0] = shi;
        w[1] = slo;
        w[2] = pad80;
        for (int t = 3; t < 15; t++) w[t] = zero;
        w[15] = _mm512_set1_epi32((64 + 8) * 8);
        sha1_x16_rounds(s, w);
        for (int t = 0; t < 5; t++) w[t] = s[t];
        w[5] = pad80;
        for (int t = 6; t < 15; t++) w[t] = zero;
        w[15] = _mm512_set1_epi32((64 + 20) * 8);
        for (int t = 0; t < 5; t++) s[t] = ost[t];
        sha1_x16_rounds(s, w);
        __m512i got = sha1_code_x16(s, magic, magic_hi, post, div);
        __mmask16 m = _mm512_cmpeq_epi32_mask(got, vcode) & valid;
        res_v = _mm512_mask_mov_epi32(res_v, m, _mm512_set1_epi32((int)(d + (int64_t)window)));
    }
    return res_v;
}

/* low8 below saturates at 255: it decides "step counter + d < 0" for d down
 * to -window, which needs window < 255. */
_Static_assert(TOTPD_MAX_WINDOW < 255, "sha1_verify_x16 saturates the counter's low8 at 255");

TGT void totpd_sha1_verify_x16(const uint64_t *scratch, const uint8_t *digits,
                               const uint64_t *counters, const uint32_t *codes,
                               const uint32_t *pairs, const uint32_t *kidx, int n, uint32_t window,
                               int64_t *out) {
    __attribute__((aligned(64))) uint64_t slot[16], ctr[16];
    __attribute__((aligned(64))) uint32_t lo[16], hi[16], low8[16], code[16], dsel[16];
    __attribute__((aligned(64))) int32_t res[16];
    /* Every step's counter below 2^32 (a public fact about the counters, not
     * about which step matches): steps below zero are masked out, whatever
     * their block. */
    int hi_zero = 1;
    for (int l = 0; l < 16; l++) {
        int s = l < n ? l : 0;
        uint32_t p = pairs[s], k = kidx[s];
        uint64_t c = counters[k];
        slot[l] = (uint64_t)k * (TOTPD_PAD_SLOT_WORDS * 2); /* in uint32 words */
        ctr[l] = c;
        lo[l] = (uint32_t)c;
        hi[l] = (uint32_t)(c >> 32);
        low8[l] = c < 255 ? (uint32_t)c : 255u; /* only c < window matters */
        code[l] = codes[p];
        dsel[l] = (uint32_t)digits[k] - 6u;
        hi_zero &= c <= (uint64_t)UINT32_MAX - window;
    }
    const __m512i vlo = _mm512_load_si512(lo), vhi = _mm512_load_si512(hi);
    const __m512i vlow8 = _mm512_load_si512(low8), vcode = _mm512_load_si512(code);
    const __m512i sel = _mm512_load_si512(dsel);
    const __m512i magic = lut3_32(sel, kMagic);
    const __m512i magic_hi = _mm512_srli_epi64(magic, 32);
    const __m512i post = _mm512_sub_epi32(lut3_32(sel, kShift), _mm512_set1_epi32(32));
    const __m512i div = lut3_32(sel, kDiv);
    /* The pad states: lane l's row holds the inner state (slot words 0..4)
     * in words 0..4 and the outer state (slot words 16..20) in words 8..12;
     * a transpose turns the rows into the state vectors (cheaper than 20
     * gathers). */
    const uint32_t *base = (const uint32_t *)scratch;
    __m512i r[16], ist[5], ost[5];
    for (int l = 0; l < 16; l++) {
        const uint32_t *p = base + slot[l];
        r[l] = _mm512_mask_loadu_epi32(_mm512_maskz_loadu_epi32((__mmask16)0x001F, p),
                                       (__mmask16)0x1F00, p + 8);
    }
    transpose16_x16(r);
    for (int i = 0; i < 5; i++) {
        ist[i] = r[i];
        ost[i] = r[8 + i];
    }
    __m512i res_v = hi_zero ? sha1_verify_steps_x16(ist, ost, vlo, vhi, vlow8, vcode, magic,
                                                    magic_hi, post, div, window, 1)
                            : sha1_verify_steps_x16(ist, ost, vlo, vhi, vlow8, vcode, magic,
                                                    magic_hi, post, div, window, 0);
    _mm512_store_si512(res, res_v);
    for (int l = 0; l < n; l++) {
        /* res = step - (counter - window), or -1: -1 stays -1 through the OR. */
        uint64_t none = (uint64_t)(int64_t)(res[l] >> 31);
        uint64_t step = ctr[l] + (uint64_t)(int64_t)res[l] - window;
        out[pairs[l]] = (int64_t)(step | none);
    }
    _mm256_zeroupper();
}

/* Byte swap of every 32-bit (64-bit) word of a 512-bit vector. */
INL __m512i bswap32_x16(__m512i v) {
    const __m512i m = _mm512_broadcast_i32x4(
        _mm_setr_epi8(3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12));
    return _mm512_shuffle_epi8(v, m);
}

/* The key blocks are loaded and transposed in registers (no key copy in
 * memory), and the pad states transposed back and stored with masked stores:
 * gathers and scatters cost as much as a compression here. Register spills
 * are wiped by the caller's stack scrub. */
TGT void totpd_sha1_prepare_x16(const uint8_t *const *key_ptr, const uint32_t *key_len,
                                const uint32_t *which, int n, uint64_t *scratch) {
    __m512i r[16], w[16], s[2][5];
    for (int l = 0; l < 16; l++) {
        int src = l < n ? l : 0;
        uint32_t len = key_len[src] < 64 ? key_len[src] : 64;
        r[l] = bswap32_x16(load_key64(len ? key_ptr[src] : NULL, len));
    }
    transpose16_x16(r);
    for (int i = 0; i < 2; i++) {
        const __m512i pad = _mm512_set1_epi32(i ? 0x5c5c5c5c : 0x36363636);
        for (int t = 0; t < 16; t++) w[t] = _mm512_xor_si512(r[t], pad);
        for (int t = 0; t < 5; t++) s[i][t] = _mm512_set1_epi32((int)totpd_sha1_iv[t]);
        sha1_x16(s[i], w);
    }
    /* Lane l's row: inner state in words 0..4, outer state in words 8..12,
     * stored at slot words 0..4 and 16..20. */
    for (int t = 0; t < 5; t++) {
        r[t] = s[0][t];
        r[8 + t] = s[1][t];
    }
    for (int t = 5; t < 8; t++) r[t] = r[8 + t] = _mm512_setzero_si512();
    transpose16_x16(r);
    uint32_t *base = (uint32_t *)scratch;
    for (int l = 0; l < n; l++) {
        uint32_t *slot = base + (size_t)which[l] * (TOTPD_PAD_SLOT_WORDS * 2);
        _mm512_mask_storeu_epi32(slot, (__mmask16)0x001F, r[l]);
        _mm512_mask_storeu_epi32(slot + 8, (__mmask16)0x1F00, r[l]);
    }
    _mm256_zeroupper();
}
#endif /* TOTPD_HAVE_X86_SIMD */
