/*
 * hmac_x8.c - HMAC-SHA-1 of 8 lanes at once over the 8-lane compressions
 * (sha1_avx2.c: AVX2, and AVX-512VL on 256-bit vectors): pad states of 8
 * keys, and the verdicts of 8 pairs over a whole window.
 *
 * Plain C around the kernels: the lanes are transposed into the kernels'
 * word-major layout (word i of lane l at [i * 8 + l]) and back.
 */
#define _DEFAULT_SOURCE 1
#include <string.h>

#include "core_internal.h"

#if TOTPD_HAVE_X86_SIMD

/* The state of one 8-lane verification: the pad states and the two message
 * blocks in the kernels' layout, and each lane's values, read once. */
typedef struct {
    uint32_t ist[40], ost[40], st[40];
    uint32_t inner[128], outer[128];
    uint64_t result[8], ctr[8];
    uint32_t code[8];
    uint8_t dig[8];
} x8_verify;

static void x8_load(x8_verify *x, const uint64_t *scratch, const uint8_t *digits,
                    const uint64_t *counters, const uint32_t *codes, const uint32_t *pairs,
                    const uint32_t *kidx, int n) {
    memset(x->inner, 0, sizeof x->inner);
    memset(x->outer, 0, sizeof x->outer);
    for (int l = 0; l < 8; l++) {
        int src = l < n ? l : 0;
        uint32_t p = pairs[src], k = kidx[src];
        const uint8_t *s = (const uint8_t *)(scratch + (size_t)k * TOTPD_PAD_SLOT_WORDS);
        uint32_t a[5], b[5];
        memcpy(a, s, 20);
        memcpy(b, s + 64, 20);
        for (int i = 0; i < 5; i++) {
            x->ist[i * 8 + l] = a[i];
            x->ost[i * 8 + l] = b[i];
        }
        explicit_bzero(a, sizeof a);
        explicit_bzero(b, sizeof b);
        x->ctr[l] = counters[k];
        x->code[l] = codes[p];
        x->dig[l] = digits[k];
        x->result[l] = ~(uint64_t)0;
        x->inner[2 * 8 + l] = 0x80000000u;
        x->inner[15 * 8 + l] = (64 + 8) * 8;
        x->outer[5 * 8 + l] = 0x80000000u;
        x->outer[15 * 8 + l] = (64 + 20) * 8;
    }
}

/* Step counter + d of every lane: both compressions, the truncation and the
 * masked comparison (steps below zero wrap and are masked out). */
static void x8_step(x8_verify *x, totpd_x8_fn x8, int64_t d) {
    uint64_t below = d < 0 ? (uint64_t)(-d) : 0;
    for (int l = 0; l < 8; l++) {
        uint64_t step = x->ctr[l] + (uint64_t)d;
        x->inner[0 * 8 + l] = (uint32_t)(step >> 32);
        x->inner[1 * 8 + l] = (uint32_t)step;
    }
    memcpy(x->st, x->ist, sizeof x->st);
    x8(x->st, x->inner);
    memcpy(x->outer, x->st, sizeof x->st); /* words 0..4 of every lane */
    memcpy(x->st, x->ost, sizeof x->st);
    x8(x->st, x->outer);
    for (int l = 0; l < 8; l++) {
        uint32_t w5[5];
        for (int i = 0; i < 5; i++) w5[i] = x->st[i * 8 + l];
        uint32_t got = totpd_reduce_digits(totpd_truncate(w5, x->st[4 * 8 + l] & 0xffu), x->dig[l]);
        uint64_t valid = ~totpd_ct_lt_mask64(x->ctr[l], below);
        uint64_t step = x->ctr[l] + (uint64_t)d;
        x->result[l] = totpd_ct_keep(x->result[l], step, got, x->code[l], valid);
        explicit_bzero(w5, sizeof w5);
    }
}

static inline void verify_x8(totpd_x8_fn x8, const uint64_t *scratch, const uint8_t *digits,
                             const uint64_t *counters, const uint32_t *codes, const uint32_t *pairs,
                             const uint32_t *kidx, int n, uint32_t window, int64_t *out) {
    x8_verify x;
    x8_load(&x, scratch, digits, counters, codes, pairs, kidx, n);
    for (int64_t d = (int64_t)window; d >= -(int64_t)window; d--) x8_step(&x, x8, d);
    for (int l = 0; l < n; l++) out[pairs[l]] = (int64_t)x.result[l];
    explicit_bzero(&x, sizeof x);
}

/* Pad states of up to eight SHA-1 keys of at most 64 bytes (two 8-lane
 * compressions for eight keys). */
static inline void prepare_x8(totpd_x8_fn x8, const uint8_t *const *key_ptr,
                              const uint32_t *key_len, const uint32_t *which, int n,
                              uint64_t *scratch) {
    uint32_t blk[2][128], st[2][40];
    for (int l = 0; l < 8; l++) {
        int src = l < n ? l : 0;
        uint32_t len = key_len[src] < 64 ? key_len[src] : 64;
        uint8_t k[64];
        memset(k, 0, sizeof k);
        if (len > 0) memcpy(k, key_ptr[src], len);
        for (int t = 0; t < 16; t++) {
            uint32_t w = totpd_load_be32(k + 4 * t);
            blk[0][t * 8 + l] = w ^ 0x36363636u;
            blk[1][t * 8 + l] = w ^ 0x5c5c5c5cu;
        }
        for (int j = 0; j < 5; j++) st[0][j * 8 + l] = st[1][j * 8 + l] = totpd_sha1_iv[j];
        explicit_bzero(k, sizeof k);
    }
    x8(st[0], blk[0]);
    x8(st[1], blk[1]);
    for (int l = 0; l < n; l++) {
        uint32_t inner[5], outer[5];
        for (int j = 0; j < 5; j++) {
            inner[j] = st[0][j * 8 + l];
            outer[j] = st[1][j * 8 + l];
        }
        uint8_t *slot = (uint8_t *)(scratch + (size_t)which[l] * TOTPD_PAD_SLOT_WORDS);
        memcpy(slot, inner, sizeof inner);
        memcpy(slot + 64, outer, sizeof outer);
        explicit_bzero(inner, sizeof inner);
        explicit_bzero(outer, sizeof outer);
    }
    explicit_bzero(blk, sizeof blk);
    explicit_bzero(st, sizeof st);
}

void totpd_sha1_verify_x8_avx2(const uint64_t *scratch, const uint8_t *digits,
                               const uint64_t *counters, const uint32_t *codes,
                               const uint32_t *pairs, const uint32_t *kidx, int n, uint32_t window,
                               int64_t *out) {
    verify_x8(totpd_sha1_compress_avx2_x8, scratch, digits, counters, codes, pairs, kidx, n, window,
              out);
}

void totpd_sha1_verify_x8_avx512(const uint64_t *scratch, const uint8_t *digits,
                                 const uint64_t *counters, const uint32_t *codes,
                                 const uint32_t *pairs, const uint32_t *kidx, int n,
                                 uint32_t window, int64_t *out) {
    verify_x8(totpd_sha1_compress_avx512_x8, scratch, digits, counters, codes, pairs, kidx, n,
              window, out);
}

void totpd_sha1_prepare_x8_avx2(const uint8_t *const *key_ptr, const uint32_t *key_len,
                                const uint32_t *which, int n, uint64_t *scratch) {
    prepare_x8(totpd_sha1_compress_avx2_x8, key_ptr, key_len, which, n, scratch);
}

void totpd_sha1_prepare_x8_avx512(const uint8_t *const *key_ptr, const uint32_t *key_len,
                                  const uint32_t *which, int n, uint64_t *scratch) {
    prepare_x8(totpd_sha1_compress_avx512_x8, key_ptr, key_len, which, n, scratch);
}

#endif /* TOTPD_HAVE_X86_SIMD */
