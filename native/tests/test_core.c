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

static void test_hotp_vectors(int path) {
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
    CHECK(totpd_hotp(key, 20, 0, 6, 0, path, &code) == TOTPD_ERR_ALGORITHM);
    CHECK(totpd_hotp(key, 20, 1, 9, 0, path, &code) == TOTPD_ERR_DIGITS);
    CHECK(totpd_hotp(key, 20, 1, 6, 0, path, NULL) == TOTPD_ERR_NULL);
}

/* A batch of the RFC vectors: 3 keys (one per algorithm), 15 pairs: offsets
 * -2..+2 of the vector's step, checked with window 1; plus a SHA-1 key at
 * counter 0 (the edge) and wrong codes. want: the answers at offset 0. */
enum { VEC_NK = 4, VEC_NP = 23 };
typedef struct {
    uint8_t keys[20 + 32 + 64 + 20];
    uint32_t offsets[VEC_NK + 1];
    uint8_t algs[VEC_NK], digs[VEC_NK];
    uint64_t ctr[VEC_NK], t;
    uint32_t kidx[VEC_NP], codes[VEC_NP];
    int64_t out[VEC_NP], want[VEC_NP];
    uint64_t scratch[VEC_NK * TOTPD_PAD_SLOT_WORDS];
    totpd_key_table tab;
    totpd_pairs prs;
} vec_batch;

static void vec_pair(vec_batch *b, int *p, uint32_t k, uint32_t code, int64_t want) {
    b->kidx[*p] = k;
    b->codes[*p] = code;
    b->want[*p] = want;
    (*p)++;
}

static void vec_setup(vec_batch *b) {
    static const uint32_t offsets[VEC_NK + 1] = {0, 20, 52, 116, 136};
    static const uint8_t algs[VEC_NK] = {1, 2, 3, 1}, digs[VEC_NK] = {8, 8, 8, 6};
    uint8_t key[64];
    seed(key, sizeof key);
    memcpy(b->keys, key, 20);
    memcpy(b->keys + 20, key, 32);
    memcpy(b->keys + 52, key, 64);
    memcpy(b->keys + 116, key, 20);
    memcpy(b->offsets, offsets, sizeof offsets);
    memcpy(b->algs, algs, sizeof algs);
    memcpy(b->digs, digs, sizeof digs);
    b->t = kTimes[3] / 30; /* the vector's time step */
    int p = 0;
    for (uint32_t a = 0; a < 3; a++) {
        /* code is the vector for step t; the server's counter is t - off */
        for (int off = -2; off <= 2; off++)
            vec_pair(b, &p, a, kExpect[a][3], (off >= -1 && off <= 1) ? (int64_t)b->t : -1);
        b->ctr[a] = b->t;
    }
    /* counter 0 edge on key 3 (SHA-1, 6 digits): hotp(0)=755224, hotp(1)=287082 */
    b->ctr[3] = 0;
    vec_pair(b, &p, 3, 755224, 0);
    vec_pair(b, &p, 3, 287082, 1);
    vec_pair(b, &p, 3, 359152, -1);
    vec_pair(b, &p, 3, 1000000, -1);
    vec_pair(b, &p, 3, 0xffffffffu, -1);
    vec_pair(b, &p, 0, 0, -1);
    vec_pair(b, &p, 1, kExpect[1][3] % 1000000, -1);
    vec_pair(b, &p, 2, kExpect[0][3], -1);
    CHECK(p == VEC_NP);
    b->tab = (totpd_key_table){.keys = b->keys,
                               .keys_len = sizeof b->keys,
                               .n_keys = VEC_NK,
                               .offsets = b->offsets,
                               .algorithms = b->algs,
                               .digits = b->digs,
                               .counters = b->ctr};
    b->prs = (totpd_pairs){.key_index = b->kidx, .codes = b->codes, .n_pairs = VEC_NP};
}

static void test_batch_vectors(int path) {
    static vec_batch b;
    vec_setup(&b);
    uint64_t t = b.t;
    for (int off = -2; off <= 2; off++) {
        for (int a = 0; a < 3; a++) b.ctr[a] = t - (uint64_t)off;
        memset(b.out, 0x55, sizeof b.out);
        CHECK(totpd_verify_batch(&b.tab, &b.prs, 1, path, b.scratch, b.out) == TOTPD_OK);
        for (int a = 0; a < 3; a++) {
            int j = a * 5 + (off + 2);
            CHECK(b.out[j] == b.want[j]);
        }
        for (int j = 15; j < VEC_NP; j++) CHECK(b.out[j] == b.want[j]);
        for (size_t w = 0; w < VEC_NK * TOTPD_PAD_SLOT_WORDS; w++) CHECK(b.scratch[w] == 0);
    }
    /* window 0: only the exact step */
    for (int a = 0; a < 3; a++) b.ctr[a] = t + 1;
    CHECK(totpd_verify_batch(&b.tab, &b.prs, 0, path, b.scratch, b.out) == TOTPD_OK);
    for (int a = 0; a < 3; a++) CHECK(b.out[a * 5] == -1);
    for (int a = 0; a < 3; a++) b.ctr[a] = t;
    CHECK(totpd_verify_batch(&b.tab, &b.prs, 0, path, b.scratch, b.out) == TOTPD_OK);
    for (int a = 0; a < 3; a++) CHECK(b.out[a * 5] == (int64_t)t);
}

/* One bad value at a time: its error, and the output untouched. */
static void test_batch_errors(int path) {
    static vec_batch b;
    vec_setup(&b);
    int64_t sentinel[VEC_NP];
    memset(sentinel, 0x55, sizeof sentinel);
    memcpy(b.out, sentinel, sizeof b.out);
    CHECK(totpd_verify_batch(&b.tab, &b.prs, TOTPD_MAX_WINDOW + 1, path, b.scratch, b.out) ==
          TOTPD_ERR_WINDOW);
    b.algs[1] = 4;
    CHECK(totpd_verify_batch(&b.tab, &b.prs, 1, path, b.scratch, b.out) == TOTPD_ERR_ALGORITHM);
    b.algs[1] = 2;
    b.digs[2] = 9;
    CHECK(totpd_verify_batch(&b.tab, &b.prs, 1, path, b.scratch, b.out) == TOTPD_ERR_DIGITS);
    b.digs[2] = 5;
    CHECK(totpd_verify_batch(&b.tab, &b.prs, 1, path, b.scratch, b.out) == TOTPD_ERR_DIGITS);
    b.digs[2] = 8;
    b.offsets[2] = 10;
    CHECK(totpd_verify_batch(&b.tab, &b.prs, 1, path, b.scratch, b.out) == TOTPD_ERR_OFFSETS);
    b.offsets[2] = 52;
    b.tab.keys_len--;
    CHECK(totpd_verify_batch(&b.tab, &b.prs, 1, path, b.scratch, b.out) == TOTPD_ERR_OFFSETS);
    b.tab.keys_len++;
    b.kidx[4] = VEC_NK;
    CHECK(totpd_verify_batch(&b.tab, &b.prs, 1, path, b.scratch, b.out) == TOTPD_ERR_KEY_INDEX);
    b.kidx[4] = 0;
    b.ctr[0] = (uint64_t)INT64_MAX;
    CHECK(totpd_verify_batch(&b.tab, &b.prs, 1, path, b.scratch, b.out) == TOTPD_ERR_COUNTER);
    b.ctr[0] = b.t;
    CHECK(memcmp(b.out, sentinel, sizeof b.out) == 0);
    /* The same table, valid again, still verifies. */
    CHECK(totpd_verify_batch(&b.tab, &b.prs, 1, path, b.scratch, b.out) == TOTPD_OK);
    for (int j = 15; j < VEC_NP; j++) CHECK(b.out[j] == b.want[j]);
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
    const totpd_key_table tab = {.keys = keys,
                                 .n_keys = NK,
                                 .offsets = offsets,
                                 .algorithms = algs,
                                 .digits = digs,
                                 .counters = ctr};
    const totpd_pairs prs = {.key_index = kidx, .codes = codes, .n_pairs = NP};
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
        totpd_key_table round_tab = tab;
        round_tab.keys_len = offsets[NK];
        memset(out, 0x55, sizeof out);
        CHECK(totpd_verify_batch(&round_tab, &prs, window, path, scratch, out) == TOTPD_OK);
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

/* A batch for the split API: mostly SHA-1 and SHA-512 keys of 0..140 bytes
 * (the lane kernels run, and keys longer than a block), codes of steps in
 * and out of window 1. */
enum { SPLIT_NK = 41, SPLIT_NP = 67, SPLIT_MAXK = 140 };
typedef struct {
    uint8_t keys[SPLIT_NK * SPLIT_MAXK], algs[SPLIT_NK], digs[SPLIT_NK];
    uint32_t offsets[SPLIT_NK + 1], kidx[SPLIT_NP], codes[SPLIT_NP];
    uint64_t ctr[SPLIT_NK], scratch[SPLIT_NK * TOTPD_PAD_SLOT_WORDS];
    int64_t want[SPLIT_NP], out[SPLIT_NP];
    totpd_key_table tab;
    totpd_pairs prs;
} split_batch;

static void split_setup(split_batch *b) {
    for (size_t i = 0; i < sizeof b->keys; i++) b->keys[i] = (uint8_t)rng();
    b->offsets[0] = 0;
    for (int k = 0; k < SPLIT_NK; k++) {
        b->offsets[k + 1] = b->offsets[k] + (uint32_t)(rng() % (SPLIT_MAXK + 1));
        b->algs[k] =
            (uint8_t)(k % 5 == 4 ? TOTPD_ALG_SHA256 : k % 3 == 2 ? TOTPD_ALG_SHA512 : 1);
        b->digs[k] = (uint8_t)(6 + rng() % 3);
        b->ctr[k] = k % 7 == 0 ? (uint64_t)(k % 3) : 1000000 + rng() % 1000;
    }
    for (int j = 0; j < SPLIT_NP; j++) {
        uint32_t k = (uint32_t)(rng() % SPLIT_NK);
        b->kidx[j] = k;
        b->codes[j] = (uint32_t)rng() % 1000000u;
        if (rng() % 3 != 0)
            CHECK(totpd_hotp(b->keys + b->offsets[k], b->offsets[k + 1] - b->offsets[k],
                             b->algs[k], b->digs[k], b->ctr[k] + rng() % 3 - 1,
                             TOTPD_PATH_PORTABLE, &b->codes[j]) == TOTPD_OK);
    }
    b->tab = (totpd_key_table){.keys = b->keys,
                               .keys_len = b->offsets[SPLIT_NK],
                               .n_keys = SPLIT_NK,
                               .offsets = b->offsets,
                               .algorithms = b->algs,
                               .digits = b->digs,
                               .counters = b->ctr};
    b->prs = (totpd_pairs){.key_index = b->kidx, .codes = b->codes, .n_pairs = SPLIT_NP};
}

/* The split API (totpd_prepare_keys over key ranges, totpd_verify_prepared
 * over pair ranges) gives the one-call answer for every way of cutting the
 * batch, including empty ranges. */
static void test_split(int path) {
    static split_batch b;
    static const uint32_t cuts[] = {1, 2, 3, 7, 16, 41, 67};
    split_setup(&b);
    CHECK(totpd_verify_batch(&b.tab, &b.prs, 1, path, b.scratch, b.want) == TOTPD_OK);
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        uint32_t step = cuts[c];
        memset(b.out, 0x55, sizeof b.out);
        for (uint32_t lo = 0; lo <= SPLIT_NK; lo += step) {
            uint32_t hi = lo + step < SPLIT_NK ? lo + step : SPLIT_NK;
            CHECK(totpd_prepare_keys(&b.tab, lo, hi, path, b.scratch) == TOTPD_OK);
        }
        for (uint32_t lo = 0; lo <= SPLIT_NP; lo += step) {
            uint32_t hi = lo + step < SPLIT_NP ? lo + step : SPLIT_NP;
            CHECK(totpd_verify_prepared(&b.tab, &b.prs, lo, hi, 1, path, b.scratch, b.out) ==
                  TOTPD_OK);
        }
        CHECK(memcmp(b.out, b.want, sizeof b.out) == 0);
        totpd_wipe(b.scratch, sizeof b.scratch);
    }
}

/* totpd_prepare_keys with one bad argument each: an error, scratch untouched;
 * an empty range: OK, nothing touched, NULLs allowed. */
static void test_split_prepare_errors(int path) {
    static split_batch b;
    split_setup(&b);
    totpd_key_table bad = b.tab;
    CHECK(totpd_prepare_keys(&b.tab, 5, 4, path, b.scratch) == TOTPD_ERR_RANGE);
    CHECK(totpd_prepare_keys(&b.tab, 0, SPLIT_NK + 1, path, b.scratch) == TOTPD_ERR_RANGE);
    CHECK(totpd_prepare_keys(NULL, 0, SPLIT_NK, path, b.scratch) == TOTPD_ERR_NULL);
    bad.offsets = NULL;
    CHECK(totpd_prepare_keys(&bad, 0, SPLIT_NK, path, b.scratch) == TOTPD_ERR_NULL);
    bad = b.tab;
    bad.algorithms = NULL;
    CHECK(totpd_prepare_keys(&bad, 0, SPLIT_NK, path, b.scratch) == TOTPD_ERR_NULL);
    CHECK(totpd_prepare_keys(&b.tab, 0, SPLIT_NK, path, NULL) == TOTPD_ERR_NULL);
    bad = b.tab;
    bad.keys = NULL;
    CHECK(totpd_prepare_keys(&bad, 0, SPLIT_NK, path, b.scratch) == TOTPD_ERR_NULL);
    bad = b.tab;
    bad.keys_len--;
    CHECK(totpd_prepare_keys(&bad, 0, SPLIT_NK, path, b.scratch) == TOTPD_ERR_OFFSETS);
    CHECK(totpd_prepare_keys(&b.tab, 0, SPLIT_NK, 99, b.scratch) == TOTPD_ERR_PATH);
    for (size_t w = 0; w < SPLIT_NK * TOTPD_PAD_SLOT_WORDS; w++) CHECK(b.scratch[w] == 0);
    CHECK(totpd_prepare_keys(&b.tab, 7, 7, path, b.scratch) == TOTPD_OK);
    for (size_t w = 0; w < SPLIT_NK * TOTPD_PAD_SLOT_WORDS; w++) CHECK(b.scratch[w] == 0);
    const totpd_key_table empty = {.offsets = b.offsets};
    CHECK(totpd_prepare_keys(&empty, 0, 0, path, NULL) == TOTPD_OK);
}

/* totpd_verify_prepared with one bad argument each: an error, the output
 * untouched; an empty range: OK, NULLs allowed. */
static void test_split_verify_errors(int path) {
    static split_batch b;
    split_setup(&b);
    memset(b.out, 0x55, sizeof b.out);
    memcpy(b.want, b.out, sizeof b.out);
    const uint64_t *scr = b.scratch;
    totpd_key_table bad = b.tab;
    totpd_pairs bad_pairs = b.prs;
    CHECK(totpd_verify_prepared(NULL, &b.prs, 0, SPLIT_NP, 1, path, scr, b.out) ==
          TOTPD_ERR_NULL);
    CHECK(totpd_verify_prepared(&b.tab, NULL, 0, SPLIT_NP, 1, path, scr, b.out) ==
          TOTPD_ERR_NULL);
    CHECK(totpd_verify_prepared(&b.tab, &b.prs, 0, SPLIT_NP, 1, path, NULL, b.out) ==
          TOTPD_ERR_NULL);
    CHECK(totpd_verify_prepared(&b.tab, &b.prs, 0, SPLIT_NP, 1, path, scr, NULL) ==
          TOTPD_ERR_NULL);
    bad.digits = NULL;
    CHECK(totpd_verify_prepared(&bad, &b.prs, 0, SPLIT_NP, 1, path, scr, b.out) ==
          TOTPD_ERR_NULL);
    bad = b.tab;
    bad.counters = NULL;
    CHECK(totpd_verify_prepared(&bad, &b.prs, 0, SPLIT_NP, 1, path, scr, b.out) ==
          TOTPD_ERR_NULL);
    bad_pairs.key_index = NULL;
    CHECK(totpd_verify_prepared(&b.tab, &bad_pairs, 0, SPLIT_NP, 1, path, scr, b.out) ==
          TOTPD_ERR_NULL);
    bad_pairs = b.prs;
    bad_pairs.codes = NULL;
    CHECK(totpd_verify_prepared(&b.tab, &bad_pairs, 0, SPLIT_NP, 1, path, scr, b.out) ==
          TOTPD_ERR_NULL);
    CHECK(totpd_verify_prepared(&b.tab, &b.prs, 5, 4, 1, path, scr, b.out) == TOTPD_ERR_RANGE);
    CHECK(totpd_verify_prepared(&b.tab, &b.prs, 0, SPLIT_NP + 1, 1, path, scr, b.out) ==
          TOTPD_ERR_RANGE);
    b.kidx[3] = SPLIT_NK;
    CHECK(totpd_verify_prepared(&b.tab, &b.prs, 0, SPLIT_NP, 1, path, scr, b.out) ==
          TOTPD_ERR_KEY_INDEX);
    b.kidx[3] = 0;
    CHECK(totpd_verify_prepared(&b.tab, &b.prs, 0, SPLIT_NP, TOTPD_MAX_WINDOW + 1, path, scr,
                                b.out) == TOTPD_ERR_WINDOW);
    CHECK(memcmp(b.out, b.want, sizeof b.out) == 0);
    const totpd_pairs none = {.n_pairs = 0};
    CHECK(totpd_verify_prepared(&b.tab, &none, 0, 0, 1, path, scr, NULL) == TOTPD_OK);
    CHECK(totpd_verify_prepared(&b.tab, &b.prs, 9, 9, 1, path, scr, NULL) == TOTPD_OK);
    const totpd_key_table empty = {.n_keys = 0};
    CHECK(totpd_verify_prepared(&empty, &none, 0, 0, 1, path, NULL, NULL) == TOTPD_OK);
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
    totpd_key_table tab = {.offsets = offsets};
    totpd_pairs prs = {.n_pairs = 0};
    const totpd_pairs one_pair = {.key_index = kidx, .codes = codes, .n_pairs = 1};
    CHECK(totpd_verify_batch(&tab, &prs, 1, path, NULL, NULL) == TOTPD_OK);
    kidx[0] = 0;
    CHECK(totpd_verify_batch(&tab, &one_pair, 1, path, NULL, out) == TOTPD_ERR_KEY_INDEX);
    tab.keys_len = 1;
    CHECK(totpd_verify_batch(&tab, &prs, 1, path, NULL, NULL) == TOTPD_ERR_NULL);
    tab.keys_len = 0;
    tab.offsets = NULL;
    CHECK(totpd_verify_batch(&tab, &prs, 1, path, NULL, NULL) == TOTPD_ERR_NULL);
    CHECK(totpd_verify_batch(NULL, &prs, 1, path, NULL, NULL) == TOTPD_ERR_NULL);
    CHECK(totpd_verify_batch(&tab, NULL, 1, path, NULL, NULL) == TOTPD_ERR_NULL);
    tab.offsets = offsets;
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
        tab = (totpd_key_table){
            .offsets = offsets, .n_keys = nk, .algorithms = a, .digits = digs, .counters = ctr};
        prs = (totpd_pairs){.key_index = kidx, .codes = codes, .n_pairs = nk};
        const totpd_pairs no_pairs = {.n_pairs = 0};
        memset(out, 0x55, sizeof out);
        CHECK(totpd_verify_batch(&tab, &prs, 0, path, scratch, out) == TOTPD_OK);
        for (uint32_t j = 0; j < nk; j++) CHECK(out[j] == (int64_t)ctr[j]);
        for (size_t w = 0; w < nk * TOTPD_PAD_SLOT_WORDS; w++) CHECK(scratch[w] == 0);
        /* No pairs: OK, the output untouched, scratch wiped. */
        CHECK(totpd_verify_batch(&tab, &no_pairs, 1, path, scratch, NULL) == TOTPD_OK);
        for (size_t w = 0; w < nk * TOTPD_PAD_SLOT_WORDS; w++) CHECK(scratch[w] == 0);
        CHECK(totpd_prepare_keys(&tab, 0, nk, path, scratch) == TOTPD_OK);
        CHECK(totpd_verify_prepared(&tab, &prs, 0, nk, 0, path, scratch, out) == TOTPD_OK);
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
 * key indices, and the key and pair counts in the table and pairs structs.
 * ASan reports any overflow. */
enum { RACE_NK = 6, RACE_KEYS = 300, RACE_CALLS = 4000 };
static uint8_t race_keys[RACE_KEYS];
static volatile uint32_t race_off[RACE_NK + 1] = {0, 20, 260, 270, 280, 290, 300};
static volatile uint8_t race_alg[RACE_NK] = {1, 1, 1, 1, 1, 3};
static volatile uint32_t race_kidx[RACE_NK] = {0, 1, 2, 3, 4, 5};
static totpd_key_table race_tab;
static totpd_pairs race_prs;
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
        ((volatile totpd_key_table *)&race_tab)->n_keys = (i & 16) ? RACE_NK - 1 : RACE_NK;
        ((volatile totpd_pairs *)&race_prs)->n_pairs = (i & 32) ? 2 : RACE_NK;
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
    race_tab = (totpd_key_table){.keys = race_keys,
                                 .keys_len = RACE_KEYS,
                                 .n_keys = RACE_NK,
                                 .offsets = (const uint32_t *)race_off,
                                 .algorithms = (const uint8_t *)race_alg,
                                 .digits = digs,
                                 .counters = ctr};
    race_prs = (totpd_pairs){
        .key_index = (const uint32_t *)race_kidx, .codes = codes, .n_pairs = RACE_NK};
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
            (void)totpd_verify_batch(&race_tab, &race_prs, 1, path, scratch, out);
            (void)totpd_prepare_keys(&race_tab, 0, RACE_NK, path, scratch);
            (void)totpd_verify_prepared(&race_tab, &race_prs, 0, RACE_NK, 1, path, scratch, out);
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
        test_hotp_vectors(path);
        test_hotp_vectors(-1);
        test_batch_vectors(path);
        test_batch_vectors(-1);
        test_batch_errors(path);
        test_batch_errors(-1);
        test_differential(path);
        test_split(path);
        test_split_prepare_errors(path);
        test_split_verify_errors(path);
        test_empty(path);
        tested++;
    }
    test_race();
    CHECK(totpd_set_default_path(TOTPD_PATH_AUTO) == TOTPD_OK);
    CHECK(totpd_default_path() != TOTPD_PATH_AUTO);
    printf("paths tested: %d, failures: %d\n", tested, failures);
    return failures ? 1 : 0;
}
