/*
 * sha_portable.c - portable C11 SHA-1, SHA-256 and SHA-512 (FIPS 180-4).
 */
#define _DEFAULT_SOURCE 1
#include <string.h>

#include "sha_internal.h"

const uint32_t totpd_sha1_iv[5] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u, 0xc3d2e1f0u};

const uint32_t totpd_sha256_iv[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                     0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};

const uint64_t totpd_sha512_iv[8] = {
    0x6a09e667f3bcc908ull, 0xbb67ae8584caa73bull, 0x3c6ef372fe94f82bull, 0xa54ff53a5f1d36f1ull,
    0x510e527fade682d1ull, 0x9b05688c2b3e6c1full, 0x1f83d9abfb41bd6bull, 0x5be0cd19137e2179ull};

const uint32_t totpd_sha256_k[64] __attribute__((aligned(16))) = {
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

const uint64_t totpd_sha512_k[80] = {
    0x428a2f98d728ae22ull, 0x7137449123ef65cdull, 0xb5c0fbcfec4d3b2full, 0xe9b5dba58189dbbcull,
    0x3956c25bf348b538ull, 0x59f111f1b605d019ull, 0x923f82a4af194f9bull, 0xab1c5ed5da6d8118ull,
    0xd807aa98a3030242ull, 0x12835b0145706fbeull, 0x243185be4ee4b28cull, 0x550c7dc3d5ffb4e2ull,
    0x72be5d74f27b896full, 0x80deb1fe3b1696b1ull, 0x9bdc06a725c71235ull, 0xc19bf174cf692694ull,
    0xe49b69c19ef14ad2ull, 0xefbe4786384f25e3ull, 0x0fc19dc68b8cd5b5ull, 0x240ca1cc77ac9c65ull,
    0x2de92c6f592b0275ull, 0x4a7484aa6ea6e483ull, 0x5cb0a9dcbd41fbd4ull, 0x76f988da831153b5ull,
    0x983e5152ee66dfabull, 0xa831c66d2db43210ull, 0xb00327c898fb213full, 0xbf597fc7beef0ee4ull,
    0xc6e00bf33da88fc2ull, 0xd5a79147930aa725ull, 0x06ca6351e003826full, 0x142929670a0e6e70ull,
    0x27b70a8546d22ffcull, 0x2e1b21385c26c926ull, 0x4d2c6dfc5ac42aedull, 0x53380d139d95b3dfull,
    0x650a73548baf63deull, 0x766a0abb3c77b2a8ull, 0x81c2c92e47edaee6ull, 0x92722c851482353bull,
    0xa2bfe8a14cf10364ull, 0xa81a664bbc423001ull, 0xc24b8b70d0f89791ull, 0xc76c51a30654be30ull,
    0xd192e819d6ef5218ull, 0xd69906245565a910ull, 0xf40e35855771202aull, 0x106aa07032bbd1b8ull,
    0x19a4c116b8d2d0c8ull, 0x1e376c085141ab53ull, 0x2748774cdf8eeb99ull, 0x34b0bcb5e19b48a8ull,
    0x391c0cb3c5c95a63ull, 0x4ed8aa4ae3418acbull, 0x5b9cca4f7763e373ull, 0x682e6ff3d6b2b8a3ull,
    0x748f82ee5defb2fcull, 0x78a5636f43172f60ull, 0x84c87814a1f0ab72ull, 0x8cc702081a6439ecull,
    0x90befffa23631e28ull, 0xa4506cebde82bde9ull, 0xbef9a3f7b2c67915ull, 0xc67178f2e372532bull,
    0xca273eceea26619cull, 0xd186b8c721c0c207ull, 0xeada7dd6cde0eb1eull, 0xf57d4f7fee6ed178ull,
    0x06f067aa72176fbaull, 0x0a637dc5a2c898a6ull, 0x113f9804bef90daeull, 0x1b710b35131c471bull,
    0x28db77f523047d84ull, 0x32caab7b40c72493ull, 0x3c9ebe0a15c9bebcull, 0x431d67c49c100d4cull,
    0x4cc5d4becb3e42b6ull, 0x597f299cfc657e2aull, 0x5fcb6fab3ad6faecull, 0x6c44198c4a475817ull};

static inline uint32_t rol32(uint32_t x, unsigned n) { return (x << n) | (x >> (32u - n)); }
static inline uint32_t ror32(uint32_t x, unsigned n) { return (x >> n) | (x << (32u - n)); }
static inline uint64_t ror64(uint64_t x, unsigned n) { return (x >> n) | (x << (64u - n)); }

void totpd_sha1_compress_portable(uint32_t state[5], const uint32_t block[16]) {
    uint32_t w[16];
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3], e = state[4];
#pragma GCC unroll 80
    for (int t = 0; t < 80; t++) {
        uint32_t wt;
        if (t < 16) {
            wt = block[t];
        } else {
            wt = rol32(w[(t - 3) & 15] ^ w[(t - 8) & 15] ^ w[(t - 14) & 15] ^ w[t & 15], 1);
        }
        w[t & 15] = wt;
        uint32_t f, k;
        if (t < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999u;
        } else if (t < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1u;
        } else if (t < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdcu;
        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6u;
        }
        uint32_t tmp = rol32(a, 5) + f + e + k + wt;
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = tmp;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    explicit_bzero(w, sizeof w);
}

void totpd_sha256_compress_portable(uint32_t state[8], const uint32_t block[16]) {
    uint32_t w[16];
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
#pragma GCC unroll 64
    for (int t = 0; t < 64; t++) {
        uint32_t wt;
        if (t < 16) {
            wt = block[t];
        } else {
            uint32_t w15 = w[(t - 15) & 15], w2 = w[(t - 2) & 15];
            uint32_t s0 = ror32(w15, 7) ^ ror32(w15, 18) ^ (w15 >> 3);
            uint32_t s1 = ror32(w2, 17) ^ ror32(w2, 19) ^ (w2 >> 10);
            wt = w[t & 15] + s0 + w[(t - 7) & 15] + s1;
        }
        w[t & 15] = wt;
        uint32_t S1 = ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = h + S1 + ch + totpd_sha256_k[t] + wt;
        uint32_t S0 = ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
    explicit_bzero(w, sizeof w);
}

void totpd_sha512_compress_portable(uint64_t state[8], const uint64_t block[16]) {
    uint64_t w[16];
    uint64_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint64_t e = state[4], f = state[5], g = state[6], h = state[7];
    /* Fully unrolled: the variable rotation becomes register renaming. */
#pragma GCC unroll 80
    for (int t = 0; t < 80; t++) {
        uint64_t wt;
        if (t < 16) {
            wt = block[t];
        } else {
            uint64_t w15 = w[(t - 15) & 15], w2 = w[(t - 2) & 15];
            uint64_t s0 = ror64(w15, 1) ^ ror64(w15, 8) ^ (w15 >> 7);
            uint64_t s1 = ror64(w2, 19) ^ ror64(w2, 61) ^ (w2 >> 6);
            wt = w[t & 15] + s0 + w[(t - 7) & 15] + s1;
        }
        w[t & 15] = wt;
        uint64_t S1 = ror64(e, 14) ^ ror64(e, 18) ^ ror64(e, 41);
        uint64_t ch = (e & f) ^ (~e & g);
        uint64_t t1 = h + S1 + ch + totpd_sha512_k[t] + wt;
        uint64_t S0 = ror64(a, 28) ^ ror64(a, 34) ^ ror64(a, 39);
        uint64_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint64_t t2 = S0 + maj;
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
    explicit_bzero(w, sizeof w);
}

/* Merkle-Damgard driver for the 64-byte-block hashes (SHA-1, SHA-256). */
static void md32_hash(const uint8_t *msg, size_t len, uint32_t *state, totpd_compress32_fn fn) {
    uint32_t block[16];
    uint8_t tail[128];
    size_t full = len / 64;
    for (size_t i = 0; i < full; i++) {
        for (int t = 0; t < 16; t++) block[t] = totpd_load_be32(msg + 64 * i + 4 * (size_t)t);
        fn(state, block);
    }
    size_t rest = len - 64 * full;
    size_t tail_len = (rest + 9 <= 64) ? 64 : 128;
    memset(tail, 0, sizeof tail);
    if (rest > 0) memcpy(tail, msg + 64 * full, rest);
    tail[rest] = 0x80;
    totpd_store_be64(tail + tail_len - 8, (uint64_t)len * 8u);
    for (size_t off = 0; off < tail_len; off += 64) {
        for (int t = 0; t < 16; t++) block[t] = totpd_load_be32(tail + off + 4 * (size_t)t);
        fn(state, block);
    }
    explicit_bzero(block, sizeof block);
    explicit_bzero(tail, sizeof tail);
}

void totpd_sha1(const uint8_t *msg, size_t len, uint8_t out[20]) {
    uint32_t st[5];
    memcpy(st, totpd_sha1_iv, sizeof st);
    md32_hash(msg, len, st, totpd_sha1_compress_portable);
    for (int i = 0; i < 5; i++) totpd_store_be32(out + 4 * i, st[i]);
    explicit_bzero(st, sizeof st);
}

void totpd_sha256(const uint8_t *msg, size_t len, uint8_t out[32]) {
    uint32_t st[8];
    memcpy(st, totpd_sha256_iv, sizeof st);
    md32_hash(msg, len, st, totpd_sha256_compress_portable);
    for (int i = 0; i < 8; i++) totpd_store_be32(out + 4 * i, st[i]);
    explicit_bzero(st, sizeof st);
}

void totpd_sha512(const uint8_t *msg, size_t len, uint8_t out[64]) {
    uint64_t st[8];
    uint64_t block[16];
    uint8_t tail[256];
    memcpy(st, totpd_sha512_iv, sizeof st);
    size_t full = len / 128;
    for (size_t i = 0; i < full; i++) {
        for (int t = 0; t < 16; t++) block[t] = totpd_load_be64(msg + 128 * i + 8 * (size_t)t);
        totpd_sha512_compress_portable(st, block);
    }
    size_t rest = len - 128 * full;
    size_t tail_len = (rest + 17 <= 128) ? 128 : 256;
    memset(tail, 0, sizeof tail);
    if (rest > 0) memcpy(tail, msg + 128 * full, rest);
    tail[rest] = 0x80;
    /* 128-bit length; the high 64 bits hold len >> 61. */
    totpd_store_be64(tail + tail_len - 16, (uint64_t)len >> 61);
    totpd_store_be64(tail + tail_len - 8, (uint64_t)len << 3);
    for (size_t off = 0; off < tail_len; off += 128) {
        for (int t = 0; t < 16; t++) block[t] = totpd_load_be64(tail + off + 8 * (size_t)t);
        totpd_sha512_compress_portable(st, block);
    }
    for (int i = 0; i < 8; i++) totpd_store_be64(out + 8 * i, st[i]);
    explicit_bzero(st, sizeof st);
    explicit_bzero(block, sizeof block);
    explicit_bzero(tail, sizeof tail);
}
