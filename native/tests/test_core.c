/*
 * test_core.c - standalone checks of the C core, built with ASan+UBSan (gcc,
 * and clang where installed) by tests/native/test_native_sanitizers.py.
 * Counts failed checks and exits non-zero if any failed.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "totpd_core.h"

static int failures = 0;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                      \
        }                                                                    \
    } while (0)

static void seed(uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = (uint8_t)('0' + (i + 1) % 10);
}

static const uint64_t kTimes[6] = {59, 1111111109, 1111111111, 1234567890, 2000000000,
                                   20000000000ull};
static const uint32_t kExpect[3][6] = {
    {94287082, 7081804, 14050471, 89005924, 69279037, 65353130},
    {46119246, 68084774, 67062674, 91819424, 90698825, 77737706},
    {90693936, 25091201, 99943326, 93441116, 38618901, 47863826},
};
static const uint32_t kHotp[10] = {755224, 287082, 359152, 969429, 338314,
                                   254676, 287922, 162583, 399871, 520489};

static void test_path(int path) {
    uint8_t key[64];
    uint32_t code = 0;
    static const uint32_t sizes[3] = {20, 32, 64};
    seed(key, sizeof key);

    for (uint64_t c = 0; c < 10; c++) {
        CHECK(totpd_hotp(key, 20, TOTPD_ALG_SHA1, 6, c, path, &code) == TOTPD_OK);
        CHECK(code == kHotp[c]);
    }
    for (int a = 0; a < 3; a++) {
        for (int i = 0; i < 6; i++) {
            CHECK(totpd_hotp(key, sizes[a], (uint8_t)(a + 1), 8, kTimes[i] / 30, path, &code) ==
                  TOTPD_OK);
            CHECK(code == kExpect[a][i]);
        }
    }
    /* The trap: the 20-byte seed must not give the SHA-256/512 answers. */
    CHECK(totpd_hotp(key, 20, TOTPD_ALG_SHA256, 8, 1, path, &code) == TOTPD_OK);
    CHECK(code == 32247374u && code != kExpect[1][0]);
    CHECK(totpd_hotp(key, 20, TOTPD_ALG_SHA512, 8, 1, path, &code) == TOTPD_OK);
    CHECK(code == 69342147u && code != kExpect[2][0]);

    /* Batch: 3 keys (one per algorithm), 25 pairs: offsets -2..+2 of the
     * RFC vectors, with window 1; plus counter-0 edge and a wrong code. */
    enum { NK = 4, NP = 23 };
    uint8_t keys[20 + 32 + 64 + 20];
    uint32_t offsets[NK + 1] = {0, 20, 52, 116, 136};
    uint8_t algs[NK] = {1, 2, 3, 1};
    uint8_t digs[NK] = {8, 8, 8, 6};
    uint64_t ctr[NK];
    uint32_t kidx[NP], codes[NP];
    int64_t out[NP], want[NP];
    uint64_t scratch[NK * TOTPD_PAD_SLOT_WORDS];
    memcpy(keys, key, 20);
    memcpy(keys + 20, key, 32);
    memcpy(keys + 52, key, 64);
    memcpy(keys + 116, key, 20);
    uint64_t t = kTimes[3] / 30; /* vector time step */
    int p = 0;
    for (int a = 0; a < 3; a++) {
        for (int off = -2; off <= 2; off++) {
            /* code is the vector for step t; server counter is t - off */
            kidx[p] = (uint32_t)a;
            codes[p] = kExpect[a][3];
            want[p] = (off >= -1 && off <= 1) ? (int64_t)t : -1;
            p++;
        }
        ctr[a] = 0; /* set per sub-batch below */
    }
    /* counter 0 edge on key 3 (SHA-1, 6 digits): hotp(0)=755224, hotp(1)=287082 */
    kidx[p] = 3; codes[p] = 755224; want[p] = 0; p++;
    kidx[p] = 3; codes[p] = 287082; want[p] = 1; p++;
    kidx[p] = 3; codes[p] = 359152; want[p] = -1; p++;
    kidx[p] = 3; codes[p] = 1000000; want[p] = -1; p++;
    kidx[p] = 3; codes[p] = 0xffffffffu; want[p] = -1; p++;
    kidx[p] = 0; codes[p] = 0; want[p] = -1; p++;
    kidx[p] = 1; codes[p] = kExpect[1][3] % 1000000; want[p] = -1; p++;
    kidx[p] = 2; codes[p] = kExpect[0][3]; want[p] = -1; p++;
    CHECK(p == NP);
    ctr[3] = 0;
    for (int off = -2; off <= 2; off++) {
        for (int a = 0; a < 3; a++) ctr[a] = t - (uint64_t)off;
        memset(out, 0x55, sizeof out);
        CHECK(totpd_verify_batch(keys, sizeof keys, offsets, algs, digs, ctr, NK, kidx, codes, NP,
                                 1, path, scratch, out) == TOTPD_OK);
        for (int a = 0; a < 3; a++) {
            int j = a * 5 + (off + 2);
            CHECK(out[j] == want[j]);
        }
        for (int j = 15; j < NP; j++) CHECK(out[j] == want[j]);
        for (size_t w = 0; w < NK * TOTPD_PAD_SLOT_WORDS; w++) CHECK(scratch[w] == 0);
    }
    /* window 0: only the exact step */
    for (int a = 0; a < 3; a++) ctr[a] = t + 1;
    CHECK(totpd_verify_batch(keys, sizeof keys, offsets, algs, digs, ctr, NK, kidx, codes, NP, 0,
                             path, scratch, out) == TOTPD_OK);
    for (int a = 0; a < 3; a++) CHECK(out[a * 5] == -1);
    for (int a = 0; a < 3; a++) ctr[a] = t;
    CHECK(totpd_verify_batch(keys, sizeof keys, offsets, algs, digs, ctr, NK, kidx, codes, NP, 0,
                             path, scratch, out) == TOTPD_OK);
    for (int a = 0; a < 3; a++) CHECK(out[a * 5] == (int64_t)t);

    /* Errors, output untouched. */
    int64_t sentinel[NP];
    memset(sentinel, 0x55, sizeof sentinel);
    memcpy(out, sentinel, sizeof out);
    CHECK(totpd_verify_batch(keys, sizeof keys, offsets, algs, digs, ctr, NK, kidx, codes, NP,
                             TOTPD_MAX_WINDOW + 1, path, scratch, out) == TOTPD_ERR_WINDOW);
    algs[1] = 4;
    CHECK(totpd_verify_batch(keys, sizeof keys, offsets, algs, digs, ctr, NK, kidx, codes, NP, 1,
                             path, scratch, out) == TOTPD_ERR_ALGORITHM);
    algs[1] = 2;
    digs[2] = 9;
    CHECK(totpd_verify_batch(keys, sizeof keys, offsets, algs, digs, ctr, NK, kidx, codes, NP, 1,
                             path, scratch, out) == TOTPD_ERR_DIGITS);
    digs[2] = 5;
    CHECK(totpd_verify_batch(keys, sizeof keys, offsets, algs, digs, ctr, NK, kidx, codes, NP, 1,
                             path, scratch, out) == TOTPD_ERR_DIGITS);
    digs[2] = 8;
    offsets[2] = 10;
    CHECK(totpd_verify_batch(keys, sizeof keys, offsets, algs, digs, ctr, NK, kidx, codes, NP, 1,
                             path, scratch, out) == TOTPD_ERR_OFFSETS);
    offsets[2] = 52;
    CHECK(totpd_verify_batch(keys, sizeof keys - 1, offsets, algs, digs, ctr, NK, kidx, codes,
                             NP, 1, path, scratch, out) == TOTPD_ERR_OFFSETS);
    kidx[4] = NK;
    CHECK(totpd_verify_batch(keys, sizeof keys, offsets, algs, digs, ctr, NK, kidx, codes, NP, 1,
                             path, scratch, out) == TOTPD_ERR_KEY_INDEX);
    kidx[4] = 0;
    ctr[0] = (uint64_t)INT64_MAX;
    CHECK(totpd_verify_batch(keys, sizeof keys, offsets, algs, digs, ctr, NK, kidx, codes, NP, 1,
                             path, scratch, out) == TOTPD_ERR_COUNTER);
    ctr[0] = t;
    CHECK(memcmp(out, sentinel, sizeof out) == 0);
    CHECK(totpd_hotp(key, 20, 0, 6, 0, path, &code) == TOTPD_ERR_ALGORITHM);
    CHECK(totpd_hotp(key, 20, 1, 9, 0, path, &code) == TOTPD_ERR_DIGITS);
    CHECK(totpd_hotp(key, 20, 1, 6, 0, path, NULL) == TOTPD_ERR_NULL);
}

/* Differential batch check against per-step totpd_hotp on the portable path:
 * enough SHA-1 and SHA-512 pairs to fill the 16 (8) lane kernels, keys of
 * 0..80 bytes, every digit count, windows 0..TOTPD_MAX_WINDOW, counters at
 * the edges (below the window, across 2^32) and codes of steps inside and
 * just outside the window. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_differential(int path) {
    enum { NK = 97, NP = 211, MAXK = 80 };
    static const uint64_t edge[] = {0, 1, 2, 7, 8, 9, 0xfffffff8ull, 0xfffffffeull, 0xffffffffull,
                                    0x100000000ull, 0x100000001ull, 0x1fffffffeull,
                                    0x7ffffffffffffff0ull};
    uint8_t keys[NK * MAXK], algs[NK], digs[NK];
    uint32_t offsets[NK + 1], kidx[NP], codes[NP];
    uint64_t ctr[NK];
    int64_t out[NP];
    static uint64_t scratch[NK * TOTPD_PAD_SLOT_WORDS];
    for (size_t i = 0; i < sizeof keys; i++) keys[i] = (uint8_t)rng();
    for (int round = 0; round < 6; round++) {
        uint32_t window = round < 2 ? (uint32_t)round : (uint32_t)(rng() % (TOTPD_MAX_WINDOW + 1));
        offsets[0] = 0;
        for (int k = 0; k < NK; k++) {
            uint32_t r = (uint32_t)(rng() % 8);
            uint32_t len = r < 3 ? 20 : r < 5 ? (uint32_t)(rng() % 65) : (uint32_t)(rng() % (MAXK + 1));
            offsets[k + 1] = offsets[k] + len;
            algs[k] = (uint8_t)(rng() % 5 == 0 ? 1 + rng() % 3 : 1);
            digs[k] = (uint8_t)(6 + rng() % 3);
            uint64_t e = rng() % 3 == 0 ? edge[rng() % (sizeof edge / sizeof edge[0])]
                                        : 50000000 + rng() % 1000;
            /* Every counter of a lane group below 2^32 in some rounds, mixed in others. */
            if (round % 2 == 0 && e > 0xffffffffull - TOTPD_MAX_WINDOW) e = 56666666;
            ctr[k] = e;
        }
        for (int j = 0; j < NP; j++) {
            uint32_t k = (uint32_t)(rng() % NK);
            kidx[j] = k;
            int64_t off = (int64_t)(rng() % (2 * window + 3)) - (int64_t)window - 1;
            uint64_t step = ctr[k] + (uint64_t)off;
            codes[j] = (uint32_t)rng() % 100000000u;
            if ((int64_t)ctr[k] + off >= 0 && rng() % 4 != 0)
                CHECK(totpd_hotp(keys + offsets[k], offsets[k + 1] - offsets[k], algs[k], digs[k],
                                 step, TOTPD_PATH_PORTABLE, &codes[j]) == TOTPD_OK);
        }
        memset(out, 0x55, sizeof out);
        CHECK(totpd_verify_batch(keys, offsets[NK], offsets, algs, digs, ctr, NK, kidx, codes, NP,
                                 window, path, scratch, out) == TOTPD_OK);
        for (int j = 0; j < NP; j++) {
            uint32_t k = kidx[j];
            int64_t want = -1;
            for (int64_t d = -(int64_t)window; d <= (int64_t)window && want < 0; d++) {
                uint32_t c;
                if ((int64_t)ctr[k] + d < 0) continue;
                CHECK(totpd_hotp(keys + offsets[k], offsets[k + 1] - offsets[k], algs[k], digs[k],
                                 ctr[k] + (uint64_t)d, TOTPD_PATH_PORTABLE, &c) == TOTPD_OK);
                if (c == codes[j]) want = (int64_t)(ctr[k] + (uint64_t)d);
            }
            if (out[j] != want) {
                fprintf(stderr, "path %d pair %d key %u alg %u ctr %" PRIu64 " window %u: %" PRId64
                                " != %" PRId64 "\n",
                        path, j, k, algs[k], ctr[k], window, out[j], want);
                failures++;
            }
        }
    }
}

/* The split API (totpd_prepare_keys over key ranges, totpd_verify_prepared
 * over pair ranges) gives the one-call answer for every way of cutting the
 * batch, including empty ranges; its argument errors leave scratch and the
 * output untouched. */
static void test_split(int path) {
    enum { NK = 41, NP = 67, MAXK = 140 };
    static uint8_t keys[NK * MAXK];
    static uint64_t scratch[NK * TOTPD_PAD_SLOT_WORDS];
    uint8_t algs[NK], digs[NK];
    uint32_t offsets[NK + 1], kidx[NP], codes[NP];
    uint64_t ctr[NK];
    int64_t want[NP], out[NP];
    static const uint32_t cuts[] = {1, 2, 3, 7, 16, 41, 67};
    for (size_t i = 0; i < sizeof keys; i++) keys[i] = (uint8_t)rng();
    offsets[0] = 0;
    for (int k = 0; k < NK; k++) {
        offsets[k + 1] = offsets[k] + (uint32_t)(rng() % (MAXK + 1));
        /* Mostly SHA-1 and SHA-512, so the lane kernels run. */
        algs[k] = (uint8_t)(k % 5 == 4 ? TOTPD_ALG_SHA256 : k % 3 == 2 ? TOTPD_ALG_SHA512 : 1);
        digs[k] = (uint8_t)(6 + rng() % 3);
        ctr[k] = k % 7 == 0 ? (uint64_t)(k % 3) : 1000000 + rng() % 1000;
    }
    for (int j = 0; j < NP; j++) {
        uint32_t k = (uint32_t)(rng() % NK);
        kidx[j] = k;
        codes[j] = (uint32_t)rng() % 1000000u;
        if (rng() % 3 != 0)
            CHECK(totpd_hotp(keys + offsets[k], offsets[k + 1] - offsets[k], algs[k], digs[k],
                             ctr[k] + rng() % 3 - 1, TOTPD_PATH_PORTABLE, &codes[j]) == TOTPD_OK);
    }
    CHECK(totpd_verify_batch(keys, offsets[NK], offsets, algs, digs, ctr, NK, kidx, codes, NP, 1,
                             path, scratch, want) == TOTPD_OK);
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        uint32_t step = cuts[c];
        memset(out, 0x55, sizeof out);
        for (uint32_t lo = 0; lo <= NK; lo += step) {
            uint32_t hi = lo + step < NK ? lo + step : NK;
            CHECK(totpd_prepare_keys(keys, offsets[NK], offsets, algs, NK, lo, hi, path, scratch) ==
                  TOTPD_OK);
        }
        for (uint32_t lo = 0; lo <= NP; lo += step) {
            uint32_t hi = lo + step < NP ? lo + step : NP;
            CHECK(totpd_verify_prepared(scratch, algs, digs, ctr, NK, kidx + lo, codes + lo, hi - lo,
                                        1, path, out + lo) == TOTPD_OK);
        }
        CHECK(memcmp(out, want, sizeof out) == 0);
        totpd_wipe(scratch, sizeof scratch);
    }

    /* Argument errors: nothing written. */
    memset(out, 0x55, sizeof out);
    int64_t sentinel[NP];
    memcpy(sentinel, out, sizeof out);
    CHECK(totpd_prepare_keys(keys, offsets[NK], offsets, algs, NK, 5, 4, path, scratch) ==
          TOTPD_ERR_RANGE);
    CHECK(totpd_prepare_keys(keys, offsets[NK], offsets, algs, NK, 0, NK + 1, path, scratch) ==
          TOTPD_ERR_RANGE);
    CHECK(totpd_prepare_keys(keys, offsets[NK], NULL, algs, NK, 0, NK, path, scratch) ==
          TOTPD_ERR_NULL);
    CHECK(totpd_prepare_keys(keys, offsets[NK], offsets, NULL, NK, 0, NK, path, scratch) ==
          TOTPD_ERR_NULL);
    CHECK(totpd_prepare_keys(keys, offsets[NK], offsets, algs, NK, 0, NK, path, NULL) ==
          TOTPD_ERR_NULL);
    CHECK(totpd_prepare_keys(NULL, offsets[NK], offsets, algs, NK, 0, NK, path, scratch) ==
          TOTPD_ERR_NULL);
    CHECK(totpd_prepare_keys(keys, offsets[NK] - 1, offsets, algs, NK, 0, NK, path, scratch) ==
          TOTPD_ERR_OFFSETS);
    CHECK(totpd_prepare_keys(keys, offsets[NK], offsets, algs, NK, 0, NK, 99, scratch) ==
          TOTPD_ERR_PATH);
    for (size_t w = 0; w < NK * TOTPD_PAD_SLOT_WORDS; w++) CHECK(scratch[w] == 0);
    CHECK(totpd_verify_prepared(NULL, algs, digs, ctr, NK, kidx, codes, NP, 1, path, out) ==
          TOTPD_ERR_NULL);
    CHECK(totpd_verify_prepared(scratch, algs, NULL, ctr, NK, kidx, codes, NP, 1, path, out) ==
          TOTPD_ERR_NULL);
    CHECK(totpd_verify_prepared(scratch, algs, digs, NULL, NK, kidx, codes, NP, 1, path, out) ==
          TOTPD_ERR_NULL);
    CHECK(totpd_verify_prepared(scratch, algs, digs, ctr, NK, NULL, codes, NP, 1, path, out) ==
          TOTPD_ERR_NULL);
    CHECK(totpd_verify_prepared(scratch, algs, digs, ctr, NK, kidx, NULL, NP, 1, path, out) ==
          TOTPD_ERR_NULL);
    CHECK(totpd_verify_prepared(scratch, algs, digs, ctr, NK, kidx, codes, NP, 1, path, NULL) ==
          TOTPD_ERR_NULL);
    uint32_t saved = kidx[3];
    kidx[3] = NK;
    CHECK(totpd_verify_prepared(scratch, algs, digs, ctr, NK, kidx, codes, NP, 1, path, out) ==
          TOTPD_ERR_KEY_INDEX);
    kidx[3] = saved;
    CHECK(totpd_verify_prepared(scratch, algs, digs, ctr, NK, kidx, codes, NP,
                                TOTPD_MAX_WINDOW + 1, path, out) == TOTPD_ERR_WINDOW);
    CHECK(memcmp(out, sentinel, sizeof out) == 0);
    /* Empty ranges and empty pair lists: OK, nothing touched, NULLs allowed. */
    CHECK(totpd_prepare_keys(keys, offsets[NK], offsets, algs, NK, 7, 7, path, scratch) ==
          TOTPD_OK);
    for (size_t w = 0; w < NK * TOTPD_PAD_SLOT_WORDS; w++) CHECK(scratch[w] == 0);
    CHECK(totpd_verify_prepared(scratch, algs, digs, ctr, NK, NULL, NULL, 0, 1, path, NULL) ==
          TOTPD_OK);
    CHECK(totpd_verify_prepared(NULL, NULL, NULL, NULL, 0, NULL, NULL, 0, 1, path, NULL) ==
          TOTPD_OK);
    CHECK(totpd_prepare_keys(NULL, 0, offsets, NULL, 0, 0, 0, path, NULL) == TOTPD_OK);
}

/* Empty tables, empty batches and keys == NULL (allowed with keys_len 0: every
 * key empty), on every lane kernel and every scalar tail. */
static void test_empty(int path) {
    enum { NK = 2 * 16 + 8 + 8 + 5 };
    uint32_t offsets[NK + 1] = {0};
    uint8_t algs[NK], digs[NK];
    uint64_t ctr[NK], scratch[NK * TOTPD_PAD_SLOT_WORDS];
    uint32_t kidx[NK], codes[NK];
    int64_t out[NK];
    uint8_t one = 0;
    CHECK(totpd_verify_batch(NULL, 0, offsets, NULL, NULL, NULL, 0, NULL, NULL, 0, 1, path, NULL,
                             NULL) == TOTPD_OK);
    kidx[0] = 0;
    CHECK(totpd_verify_batch(NULL, 0, offsets, NULL, NULL, NULL, 0, kidx, codes, 1, 1, path, NULL,
                             out) == TOTPD_ERR_KEY_INDEX);
    CHECK(totpd_verify_batch(NULL, 1, offsets, NULL, NULL, NULL, 0, NULL, NULL, 0, 1, path, NULL,
                             NULL) == TOTPD_ERR_NULL);
    CHECK(totpd_verify_batch(NULL, 0, NULL, NULL, NULL, NULL, 0, NULL, NULL, 0, 1, path, NULL,
                             NULL) == TOTPD_ERR_NULL);
    /* Group sizes per algorithm: SHA-1 16 + 16 + 3 (tail), SHA-512 8 + 1
     * (tail), SHA-256 2; n_keys from 1 (the scalar tails alone) to NK. */
    for (int k = 0; k < NK; k++) {
        offsets[k + 1] = 0;
        algs[k] = (uint8_t)(k < 35 ? TOTPD_ALG_SHA1 : k < 44 ? TOTPD_ALG_SHA512 : TOTPD_ALG_SHA256);
        digs[k] = (uint8_t)(6 + k % 3);
        ctr[k] = (uint64_t)k;
    }
    static const int sizes[] = {1, 2, 5, 16, 35, 36, 37, 44, NK};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        uint32_t nk = (uint32_t)sizes[s];
        /* Reorder so that small tables also mix algorithms: key 0 SHA-1, key 1 SHA-512. */
        uint8_t a[NK];
        memcpy(a, algs, sizeof a);
        if (nk <= 5) {
            a[1] = TOTPD_ALG_SHA512;
            a[2] = TOTPD_ALG_SHA256;
        }
        for (uint32_t j = 0; j < nk; j++) {
            kidx[j] = j;
            CHECK(totpd_hotp(NULL, 0, a[j], digs[j], ctr[j], TOTPD_PATH_PORTABLE, &codes[j]) ==
                  TOTPD_OK);
        }
        memset(out, 0x55, sizeof out);
        CHECK(totpd_verify_batch(NULL, 0, offsets, a, digs, ctr, nk, kidx, codes, nk, 0, path,
                                 scratch, out) == TOTPD_OK);
        for (uint32_t j = 0; j < nk; j++) CHECK(out[j] == (int64_t)ctr[j]);
        for (size_t w = 0; w < nk * TOTPD_PAD_SLOT_WORDS; w++) CHECK(scratch[w] == 0);
        /* No pairs: OK, the output untouched, scratch wiped. */
        CHECK(totpd_verify_batch(NULL, 0, offsets, a, digs, ctr, nk, NULL, NULL, 0, 1, path,
                                 scratch, NULL) == TOTPD_OK);
        for (size_t w = 0; w < nk * TOTPD_PAD_SLOT_WORDS; w++) CHECK(scratch[w] == 0);
        CHECK(totpd_prepare_keys(NULL, 0, offsets, a, nk, 0, nk, path, scratch) == TOTPD_OK);
        CHECK(totpd_verify_prepared(scratch, a, digs, ctr, nk, kidx, codes, nk, 0, path, out) ==
              TOTPD_OK);
        for (uint32_t j = 0; j < nk; j++) CHECK(out[j] == (int64_t)ctr[j]);
        totpd_wipe(scratch, sizeof scratch);
    }
    /* An empty key through a non-NULL pointer gives the same code. */
    uint32_t c1, c2;
    CHECK(totpd_hotp(NULL, 0, TOTPD_ALG_SHA1, 6, 5, path, &c1) == TOTPD_OK);
    CHECK(totpd_hotp(&one, 0, TOTPD_ALG_SHA1, 6, 5, path, &c2) == TOTPD_OK);
    CHECK(c1 == c2);
    CHECK(totpd_hotp(NULL, 1, TOTPD_ALG_SHA1, 6, 5, path, &c1) == TOTPD_ERR_NULL);
}

/* A caller that changes its buffers during a call (cffi releases the GIL)
 * gets meaningless answers, but no access outside the buffers: every value
 * the core validated is read once more at most, then clamped. A second thread
 * flips, between values that each pass validation (or not): key offsets so a
 * key switches between 20 and 250 bytes (lane kernel or hashed), algorithms,
 * and key indices. ASan reports any overflow. */
enum { RACE_NK = 6, RACE_KEYS = 300, RACE_CALLS = 4000 };
static uint8_t race_keys[RACE_KEYS];
static volatile uint32_t race_off[RACE_NK + 1] = {0, 20, 260, 270, 280, 290, 300};
static volatile uint8_t race_alg[RACE_NK] = {1, 1, 1, 1, 1, 3};
static volatile uint32_t race_kidx[RACE_NK] = {0, 1, 2, 3, 4, 5};
static atomic_int race_stop;

static void *racer(void *arg) {
    (void)arg;
    /* Mostly values that each pass validation (so the calls get past it even
     * while this thread is descheduled); now and then, for a moment, values
     * validation would reject. */
    for (uint32_t i = 0; !atomic_load_explicit(&race_stop, memory_order_relaxed); i++) {
        race_off[1] = i & 1 ? 250 : 20;
        race_alg[0] = (i & 2) ? TOTPD_ALG_SHA512 : TOTPD_ALG_SHA1;
        race_alg[5] = (i & 4) ? TOTPD_ALG_SHA256 : TOTPD_ALG_SHA512;
        race_kidx[0] = (i & 8) ? 5 : 0;
        if (i % 64 == 0) {
            race_alg[0] = 77;
            race_kidx[0] = 0x40000000u;
            race_kidx[3] = RACE_NK;
            race_kidx[3] = 3;
            race_kidx[0] = 0;
            race_alg[0] = TOTPD_ALG_SHA1;
        }
    }
    return NULL;
}

static void test_race(void) {
    uint8_t digs[RACE_NK] = {6, 6, 6, 6, 6, 6};
    uint64_t ctr[RACE_NK] = {5, 5, 5, 5, 5, 5}, scratch[RACE_NK * TOTPD_PAD_SLOT_WORDS];
    uint32_t codes[RACE_NK] = {0};
    int64_t out[RACE_NK];
    const uint32_t *off = (const uint32_t *)race_off;
    const uint8_t *alg = (const uint8_t *)race_alg;
    const uint32_t *kidx = (const uint32_t *)race_kidx;
    pthread_t t;
    for (size_t i = 0; i < sizeof race_keys; i++) race_keys[i] = (uint8_t)i;
    atomic_store(&race_stop, 0);
    if (pthread_create(&t, NULL, racer, NULL) != 0) {
        fprintf(stderr, "test_race: pthread_create failed\n");
        failures++;
        return;
    }
    for (int path = TOTPD_PATH_PORTABLE; path <= TOTPD_PATH_AVX512X16; path++) {
        if (!totpd_path_supported(path)) continue;
        for (int i = 0; i < RACE_CALLS; i++) {
            /* Return codes vary with the race; only memory safety is checked. */
            (void)totpd_verify_batch(race_keys, RACE_KEYS, off, alg, digs, ctr, RACE_NK, kidx,
                                     codes, RACE_NK, 1, path, scratch, out);
            (void)totpd_prepare_keys(race_keys, RACE_KEYS, off, alg, RACE_NK, 0, RACE_NK, path,
                                     scratch);
            (void)totpd_verify_prepared(scratch, alg, digs, ctr, RACE_NK, kidx, codes, RACE_NK, 1,
                                        path, out);
        }
    }
    atomic_store(&race_stop, 1);
    pthread_join(t, NULL);
}

int main(void) {
    int tested = 0;
    CHECK(totpd_set_default_path(99) == TOTPD_ERR_PATH);
    for (int path = TOTPD_PATH_PORTABLE; path <= TOTPD_PATH_AVX512X16; path++) {
        if (!totpd_path_supported(path)) {
            uint32_t code;
            CHECK(totpd_hotp((const uint8_t *)"k", 1, 1, 6, 0, path, &code) == TOTPD_ERR_PATH);
            CHECK(totpd_set_default_path(path) == TOTPD_ERR_PATH);
            continue;
        }
        CHECK(totpd_set_default_path(path) == TOTPD_OK);
        CHECK(totpd_default_path() == path);
        test_path(path);
        test_path(-1);
        test_differential(path);
        test_split(path);
        test_empty(path);
        tested++;
    }
    test_race();
    CHECK(totpd_set_default_path(TOTPD_PATH_AUTO) == TOTPD_OK);
    CHECK(totpd_default_path() != TOTPD_PATH_AUTO);
    printf("paths tested: %d, failures: %d\n", tested, failures);
    return failures ? 1 : 0;
}
