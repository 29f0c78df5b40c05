/*
 * hmac.c - HMAC pad states of a key, and the HOTP values of a window from
 * them, one stream at a time (the scalar code of every path).
 */
#define _DEFAULT_SOURCE 1
#include <string.h>

#include "core_internal.h"

/* One pad state of a SHA-512 key block (128 bytes) into out (64 bytes). */
static void pad_state64(const uint8_t pad[128], uint8_t *out) {
    uint64_t st[8], blk[16];
    memcpy(st, totpd_sha512_iv, sizeof st);
    for (int t = 0; t < 16; t++) blk[t] = totpd_load_be64(pad + 8 * t);
    totpd_sha512_compress_portable(st, blk);
    memcpy(out, st, sizeof st);
    explicit_bzero(st, sizeof st);
    explicit_bzero(blk, sizeof blk);
}

/* One pad state of a SHA-1 or SHA-256 key block (64 bytes) into out. */
static void pad_state32(const uint8_t pad[64], uint8_t alg, const totpd_impl *im, uint8_t *out) {
    uint32_t st[8], blk[16];
    for (int t = 0; t < 16; t++) blk[t] = totpd_load_be32(pad + 4 * t);
    if (alg == TOTPD_ALG_SHA1) {
        memcpy(st, totpd_sha1_iv, sizeof totpd_sha1_iv);
        im->sha1(st, blk);
        memcpy(out, st, 20);
    } else {
        memcpy(st, totpd_sha256_iv, sizeof totpd_sha256_iv);
        im->sha256(st, blk);
        memcpy(out, st, 32);
    }
    explicit_bzero(st, sizeof st);
    explicit_bzero(blk, sizeof blk);
}

void totpd_hmac_pads(const uint8_t *key, uint32_t key_len, uint8_t alg, const totpd_impl *im,
                     uint64_t *slot) {
    uint8_t k[128];
    uint8_t pad[128];
    size_t bs;
    /* alg was validated, but comes from a buffer the caller may change during
     * the call: whatever it holds, bs stays within k and pad. */
    switch (alg) {
        case TOTPD_ALG_SHA1:
        case TOTPD_ALG_SHA256: bs = 64; break;
        default:
            alg = TOTPD_ALG_SHA512;
            bs = 128;
            break;
    }
    memset(k, 0, sizeof k);
    if (key_len > bs) {
        if (alg == TOTPD_ALG_SHA1) totpd_sha1(key, key_len, k);
        else if (alg == TOTPD_ALG_SHA256) totpd_sha256(key, key_len, k);
        else totpd_sha512(key, key_len, k);
    } else if (key_len > 0) {
        memcpy(k, key, key_len);
    }
    uint8_t *out = (uint8_t *)slot;
    for (int which = 0; which < 2; which++) {
        uint8_t x = which == 0 ? 0x36 : 0x5c;
        for (size_t i = 0; i < bs; i++) pad[i] = k[i] ^ x;
        if (alg == TOTPD_ALG_SHA512) pad_state64(pad, out + 64 * which);
        else pad_state32(pad, alg, im, out + 64 * which);
    }
    explicit_bzero(k, sizeof k);
    explicit_bzero(pad, sizeof pad);
}

uint32_t totpd_hmac_hotp(const uint64_t *slot, uint8_t alg, uint64_t step, uint8_t digits,
                         const totpd_impl *im) {
    const uint8_t *s = (const uint8_t *)slot;
    uint32_t w5[5], last, code;
    if (alg == TOTPD_ALG_SHA512) {
        uint64_t st[8], blk[16];
        memcpy(st, s, 64);
        memset(blk, 0, sizeof blk);
        blk[0] = step;
        blk[1] = 0x8000000000000000ull;
        blk[15] = (128 + 8) * 8;
        totpd_sha512_compress_portable(st, blk);
        memcpy(blk, st, 64);
        blk[8] = 0x8000000000000000ull;
        blk[15] = (128 + 64) * 8;
        memcpy(st, s + 64, 64);
        totpd_sha512_compress_portable(st, blk);
        w5[0] = (uint32_t)(st[0] >> 32);
        w5[1] = (uint32_t)st[0];
        w5[2] = (uint32_t)(st[1] >> 32);
        w5[3] = (uint32_t)st[1];
        w5[4] = (uint32_t)(st[2] >> 32);
        last = (uint32_t)(st[7] & 0xff);
        explicit_bzero(st, sizeof st);
        explicit_bzero(blk, sizeof blk);
    } else {
        int sha1 = alg == TOTPD_ALG_SHA1;
        size_t n = sha1 ? 5 : 8;
        totpd_compress32_fn fn = sha1 ? im->sha1 : im->sha256;
        uint32_t st[8], blk[16];
        memcpy(st, s, 4 * n);
        memset(blk, 0, sizeof blk);
        blk[0] = (uint32_t)(step >> 32);
        blk[1] = (uint32_t)step;
        blk[2] = 0x80000000u;
        blk[15] = (64 + 8) * 8;
        fn(st, blk);
        memcpy(blk, st, 4 * n);
        blk[n] = 0x80000000u;
        blk[15] = (uint32_t)((64 + 4 * n) * 8);
        memcpy(st, s + 64, 4 * n);
        fn(st, blk);
        memcpy(w5, st, sizeof w5);
        last = st[n - 1] & 0xffu;
        explicit_bzero(st, sizeof st);
        explicit_bzero(blk, sizeof blk);
    }
    code = totpd_reduce_digits(totpd_truncate(w5, last), digits);
    explicit_bzero(w5, sizeof w5);
    return code;
}

/* Candidate steps counter+d for d = +window .. -window: each one is computed
 * and compared; the mask select keeps the last match, i.e. the lowest step.
 * Steps below zero wrap and are masked out. */
int64_t totpd_hmac_verify(const uint64_t *slot, uint8_t alg, uint8_t digits, uint64_t counter,
                          uint32_t code, uint32_t window, const totpd_impl *im) {
    uint64_t result = ~(uint64_t)0;
    for (int64_t d = (int64_t)window; d >= -(int64_t)window; d--) {
        uint64_t below = d < 0 ? (uint64_t)(-d) : 0;
        uint64_t valid = ~totpd_ct_lt_mask64(counter, below);
        uint64_t step = counter + (uint64_t)d;
        uint32_t got = totpd_hmac_hotp(slot, alg, step, digits, im);
        result = totpd_ct_keep(result, step, got, code, valid);
    }
    return (int64_t)result;
}
