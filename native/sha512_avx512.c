/*
 * sha512_avx512.c - the fused 8-lane SHA-512 HMAC-OTP kernels (see sha_avx512.h).
 */
#define _DEFAULT_SOURCE 1
#include "sha_internal.h"

#if TOTPD_HAVE_X86_SIMD
#include "sha_avx512.h"

#define XOR3_64(x, y, z) _mm512_ternarylogic_epi64((x), (y), (z), 0x96)
#define CH_64(x, y, z) _mm512_ternarylogic_epi64((x), (y), (z), 0xCA)
#define MAJ_64(x, y, z) _mm512_ternarylogic_epi64((x), (y), (z), 0xE8)

INL __m512i bswap64_x8(__m512i v) {
    const __m512i m = _mm512_broadcast_i32x4(
        _mm_setr_epi8(7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8));
    return _mm512_shuffle_epi8(v, m);
}

INL void sha512_x8(__m512i s[8], __m512i w[16]) {
    __m512i a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
#pragma GCC unroll 80
    for (int t = 0; t < 80; t++) {
        __m512i wt;
        if (t < 16) {
            wt = w[t];
        } else {
            __m512i w15 = w[(t - 15) & 15], w2 = w[(t - 2) & 15];
            __m512i s0 = XOR3_64(_mm512_ror_epi64(w15, 1), _mm512_ror_epi64(w15, 8),
                                 _mm512_srli_epi64(w15, 7));
            __m512i s1 = XOR3_64(_mm512_ror_epi64(w2, 19), _mm512_ror_epi64(w2, 61),
                                 _mm512_srli_epi64(w2, 6));
            wt = _mm512_add_epi64(_mm512_add_epi64(w[t & 15], s0),
                                  _mm512_add_epi64(w[(t - 7) & 15], s1));
            w[t & 15] = wt;
        }
        __m512i S1 = XOR3_64(_mm512_ror_epi64(e, 14), _mm512_ror_epi64(e, 18),
                             _mm512_ror_epi64(e, 41));
        __m512i t1 = _mm512_add_epi64(
            _mm512_add_epi64(h, S1),
            _mm512_add_epi64(
                CH_64(e, f, g),
                _mm512_add_epi64(_mm512_set1_epi64((long long)totpd_sha512_k[t]), wt)));
        __m512i S0 = XOR3_64(_mm512_ror_epi64(a, 28), _mm512_ror_epi64(a, 34),
                             _mm512_ror_epi64(a, 39));
        __m512i t2 = _mm512_add_epi64(S0, MAJ_64(a, b, c));
        h = g;
        g = f;
        f = e;
        e = _mm512_add_epi64(d, t1);
        d = c;
        c = b;
        b = a;
        a = _mm512_add_epi64(t1, t2);
    }
    s[0] = _mm512_add_epi64(s[0], a);
    s[1] = _mm512_add_epi64(s[1], b);
    s[2] = _mm512_add_epi64(s[2], c);
    s[3] = _mm512_add_epi64(s[3], d);
    s[4] = _mm512_add_epi64(s[4], e);
    s[5] = _mm512_add_epi64(s[5], f);
    s[6] = _mm512_add_epi64(s[6], g);
    s[7] = _mm512_add_epi64(s[7], h);
}

INL __m512i lut3_64(__m512i sel, const uint32_t t[3]) {
    return _mm512_permutexvar_epi64(
        sel, _mm512_setr_epi64((long long)t[0], (long long)t[1], (long long)t[2], 0, 0, 0, 0, 0));
}

TGT void totpd_sha512_verify_x8(const uint64_t *scratch, const uint8_t *digits,
                                const uint64_t *counters, const uint32_t *codes,
                                const uint32_t *pairs, const uint32_t *kidx, int n, uint32_t window,
                                int64_t *out) {
    __attribute__((aligned(64))) uint64_t slot[8], ctr[8], code[8], dsel[8];
    __attribute__((aligned(64))) int64_t res[8];
    for (int l = 0; l < 8; l++) {
        int s = l < n ? l : 0;
        uint32_t p = pairs[s], k = kidx[s];
        slot[l] = (uint64_t)k * TOTPD_PAD_SLOT_WORDS;
        ctr[l] = counters[k];
        code[l] = codes[p];
        dsel[l] = (uint64_t)digits[k] - 6u;
    }
    const __m512i vctr = _mm512_load_si512(ctr), vcode = _mm512_load_si512(code);
    const __m512i sel = _mm512_load_si512(dsel);
    const __m512i magic = lut3_64(sel, kMagic), shift = lut3_64(sel, kShift),
                  div = lut3_64(sel, kDiv);
    const __m512i ix = _mm512_load_si512(slot);
    const long long *base = (const long long *)scratch;
    __m512i ist[8], ost[8];
    for (int i = 0; i < 8; i++) {
        ist[i] = _mm512_i64gather_epi64(ix, base + i, 8);
        ost[i] = _mm512_i64gather_epi64(ix, base + 8 + i, 8);
    }
    const __m512i zero = _mm512_setzero_si512();
    const __m512i pad80 = _mm512_set1_epi64((long long)0x8000000000000000ull);
    const __m512i seven = _mm512_set1_epi64(7);
    __m512i res_v = _mm512_set1_epi64(-1);
    for (int64_t d = (int64_t)window; d >= -(int64_t)window; d--) {
        __m512i s[8], w[16];
        __mmask8 valid = d < 0 ? _mm512_cmpge_epu64_mask(vctr, _mm512_set1_epi64(-d))
                               : (__mmask8)0xFF;
        for (int t = 0; t < 8; t++) s[t] = ist[t];
        w[0] = _mm512_add_epi64(vctr, _mm512_set1_epi64(d));
        w[1] = pad80;
        for (int t = 2; t < 15; t++) w[t] = zero;
        w[15] = _mm512_set1_epi64((128 + 8) * 8);
        sha512_x8(s, w);
        for (int t = 0; t < 8; t++) w[t] = s[t];
        w[8] = pad80;
        for (int t = 9; t < 15; t++) w[t] = zero;
        w[15] = _mm512_set1_epi64((128 + 64) * 8);
        for (int t = 0; t < 8; t++) s[t] = ost[t];
        sha512_x8(s, w);
        /* Truncation: 4 bytes at offset o (0..15) of the big-endian s0|s1|s2. */
        __m512i off = _mm512_and_si512(s[7], _mm512_set1_epi64(15));
        __mmask8 upper = _mm512_cmpgt_epu64_mask(off, seven);
        __m512i sh = _mm512_slli_epi64(_mm512_and_si512(off, seven), 3);
        __m512i x = _mm512_mask_blend_epi64(upper, s[0], s[1]);
        __m512i y = _mm512_mask_blend_epi64(upper, s[1], s[2]);
        __m512i v = _mm512_or_si512(
            _mm512_sllv_epi64(x, sh),
            _mm512_srlv_epi64(y, _mm512_sub_epi64(_mm512_set1_epi64(64), sh)));
        __m512i bin = _mm512_and_si512(_mm512_srli_epi64(v, 32), _mm512_set1_epi64(0x7fffffff));
        __m512i q = _mm512_srlv_epi64(_mm512_mul_epu32(bin, magic), shift);
        __m512i got = _mm512_sub_epi64(bin, _mm512_mul_epu32(q, div));
        __mmask8 m = _mm512_cmpeq_epi64_mask(got, vcode) & valid;
        res_v = _mm512_mask_mov_epi64(res_v, m, _mm512_set1_epi64(d + (int64_t)window));
    }
    _mm512_store_si512(res, res_v);
    for (int l = 0; l < n; l++) {
        uint64_t none = (uint64_t)(res[l] >> 63);
        uint64_t step = ctr[l] + (uint64_t)res[l] - window;
        out[pairs[l]] = (int64_t)(step | none);
    }
    _mm256_zeroupper();
}

TGT void totpd_sha512_prepare_x8(const uint8_t *const *key_ptr, const uint32_t *key_len,
                                 const uint32_t *which, int n, uint64_t *scratch) {
    __attribute__((aligned(64))) uint64_t kb[8 * 16];
    __attribute__((aligned(64))) uint64_t slot[8];
    for (int l = 0; l < 8; l++) {
        int src = l < n ? l : 0;
        uint32_t i = which[src];
        uint32_t len = key_len[src] < 128 ? key_len[src] : 128;
        const uint8_t *p = len ? key_ptr[src] : NULL;
        slot[l] = (uint64_t)i * TOTPD_PAD_SLOT_WORDS;
        _mm512_store_si512(kb + 16 * l, bswap64_x8(load_key64(p, len < 64 ? len : 64)));
        _mm512_store_si512(kb + 16 * l + 8, bswap64_x8(load_key64(len > 64 ? p + 64 : NULL,
                                                                  len > 64 ? len - 64 : 0)));
    }
    __m512i s[2][8], w[2][16];
    const __m512i col = _mm512_setr_epi64(0, 16, 32, 48, 64, 80, 96, 112);
    for (int t = 0; t < 16; t++) {
        __m512i v = _mm512_i64gather_epi64(_mm512_add_epi64(col, _mm512_set1_epi64(t)),
                                           (const long long *)kb, 8);
        w[0][t] = _mm512_xor_si512(v, _mm512_set1_epi64(0x3636363636363636ll));
        w[1][t] = _mm512_xor_si512(v, _mm512_set1_epi64(0x5c5c5c5c5c5c5c5cll));
    }
    for (int i = 0; i < 2; i++) {
        for (int t = 0; t < 8; t++) s[i][t] = _mm512_set1_epi64((long long)totpd_sha512_iv[t]);
        sha512_x8(s[i], w[i]);
    }
    __mmask8 m = (__mmask8)(n >= 8 ? 0xFF : (1u << n) - 1);
    const __m512i ix = _mm512_load_si512(slot);
    long long *base = (long long *)scratch;
    for (int i = 0; i < 2; i++)
        for (int t = 0; t < 8; t++)
            _mm512_mask_i64scatter_epi64(base + 8 * i + t, m, ix, s[i][t], 8);
    explicit_bzero(kb, sizeof kb);
    _mm256_zeroupper();
}
#endif /* TOTPD_HAVE_X86_SIMD */
