/*
 * test_core.c - standalone checks of the C core, built with ASan+UBSan (gcc,
 * and clang where installed) by tests/native/test_native_sanitizers.py,
 * together with test_core_split.c and test_core_race.c. Counts failed checks
 * and exits non-zero if any failed.
 */
#include <string.h>

#include "check.h"

int failures = 0;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void seed(uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = (uint8_t)('0' + (i + 1) % 10);
}

static const uint64_t kTimes[6] = {59,         1111111109, 1111111111,
                                   1234567890, 2000000000, 20000000000ull};
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
        test_empty_tables(path);
        test_empty(path);
        tested++;
    }
    test_race();
    CHECK(totpd_set_default_path(TOTPD_PATH_AUTO) == TOTPD_OK);
    CHECK(totpd_default_path() != TOTPD_PATH_AUTO);
    printf("paths tested: %d, failures: %d\n", tested, failures);
    return failures ? 1 : 0;
}
