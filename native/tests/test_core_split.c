/*
 * test_core_split.c - the split API (totpd_prepare_keys, totpd_verify_prepared)
 * and empty tables and batches (see test_core.c).
 */
#include <string.h>

#include "check.h"

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
        b->algs[k] = (uint8_t)(k % 5 == 4 ? TOTPD_ALG_SHA256 : k % 3 == 2 ? TOTPD_ALG_SHA512 : 1);
        b->digs[k] = (uint8_t)(6 + rng() % 3);
        b->ctr[k] = k % 7 == 0 ? (uint64_t)(k % 3) : 1000000 + rng() % 1000;
    }
    for (int j = 0; j < SPLIT_NP; j++) {
        uint32_t k = (uint32_t)(rng() % SPLIT_NK);
        b->kidx[j] = k;
        b->codes[j] = (uint32_t)rng() % 1000000u;
        if (rng() % 3 != 0)
            CHECK(totpd_hotp(b->keys + b->offsets[k], b->offsets[k + 1] - b->offsets[k], b->algs[k],
                             b->digs[k], b->ctr[k] + rng() % 3 - 1, TOTPD_PATH_PORTABLE,
                             &b->codes[j]) == TOTPD_OK);
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
void test_split(int path) {
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
void test_split_prepare_errors(int path) {
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
void test_split_verify_errors(int path) {
    static split_batch b;
    split_setup(&b);
    memset(b.out, 0x55, sizeof b.out);
    memcpy(b.want, b.out, sizeof b.out);
    const uint64_t *scr = b.scratch;
    totpd_key_table bad = b.tab;
    totpd_pairs bad_pairs = b.prs;
    CHECK(totpd_verify_prepared(NULL, &b.prs, 0, SPLIT_NP, 1, path, scr, b.out) == TOTPD_ERR_NULL);
    CHECK(totpd_verify_prepared(&b.tab, NULL, 0, SPLIT_NP, 1, path, scr, b.out) == TOTPD_ERR_NULL);
    CHECK(totpd_verify_prepared(&b.tab, &b.prs, 0, SPLIT_NP, 1, path, NULL, b.out) ==
          TOTPD_ERR_NULL);
    CHECK(totpd_verify_prepared(&b.tab, &b.prs, 0, SPLIT_NP, 1, path, scr, NULL) == TOTPD_ERR_NULL);
    bad.digits = NULL;
    CHECK(totpd_verify_prepared(&bad, &b.prs, 0, SPLIT_NP, 1, path, scr, b.out) == TOTPD_ERR_NULL);
    bad = b.tab;
    bad.counters = NULL;
    CHECK(totpd_verify_prepared(&bad, &b.prs, 0, SPLIT_NP, 1, path, scr, b.out) == TOTPD_ERR_NULL);
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

/* An empty table: no pairs is OK, any pair a key index error; NULL buffers
 * only where nothing is read (keys with keys_len 0, not offsets). An empty
 * key through a non-NULL pointer gives the same code as through NULL. */
void test_empty_tables(int path) {
    uint32_t offsets[1] = {0}, kidx[1] = {0}, codes[1] = {0}, c1, c2;
    int64_t out[1];
    uint8_t one = 0;
    totpd_key_table tab = {.offsets = offsets};
    const totpd_pairs none = {.n_pairs = 0};
    const totpd_pairs one_pair = {.key_index = kidx, .codes = codes, .n_pairs = 1};
    CHECK(totpd_verify_batch(&tab, &none, 1, path, NULL, NULL) == TOTPD_OK);
    CHECK(totpd_verify_batch(&tab, &one_pair, 1, path, NULL, out) == TOTPD_ERR_KEY_INDEX);
    tab.keys_len = 1;
    CHECK(totpd_verify_batch(&tab, &none, 1, path, NULL, NULL) == TOTPD_ERR_NULL);
    tab.keys_len = 0;
    tab.offsets = NULL;
    CHECK(totpd_verify_batch(&tab, &none, 1, path, NULL, NULL) == TOTPD_ERR_NULL);
    CHECK(totpd_verify_batch(NULL, &none, 1, path, NULL, NULL) == TOTPD_ERR_NULL);
    CHECK(totpd_verify_batch(&tab, NULL, 1, path, NULL, NULL) == TOTPD_ERR_NULL);
    CHECK(totpd_hotp(NULL, 0, TOTPD_ALG_SHA1, 6, 5, path, &c1) == TOTPD_OK);
    CHECK(totpd_hotp(&one, 0, TOTPD_ALG_SHA1, 6, 5, path, &c2) == TOTPD_OK);
    CHECK(c1 == c2);
    CHECK(totpd_hotp(NULL, 1, TOTPD_ALG_SHA1, 6, 5, path, &c1) == TOTPD_ERR_NULL);
}

/* Tables of empty keys (keys == NULL, allowed with keys_len 0) on every lane
 * kernel and every scalar tail. */
void test_empty(int path) {
    enum { NK = 2 * 16 + 8 + 8 + 5 };
    uint32_t offsets[NK + 1] = {0};
    uint8_t algs[NK], digs[NK];
    uint64_t ctr[NK], scratch[NK * TOTPD_PAD_SLOT_WORDS];
    uint32_t kidx[NK], codes[NK];
    int64_t out[NK];
    totpd_key_table tab;
    totpd_pairs prs;
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
}
