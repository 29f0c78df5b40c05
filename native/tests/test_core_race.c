/*
 * test_core_race.c - every path against the portable per-step HOTP, and a
 * caller that changes its buffers during calls (see test_core.c).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "check.h"

/* Differential batch check against per-step totpd_hotp on the portable path:
 * enough SHA-1 and SHA-512 pairs to fill the 16 (8) lane kernels, keys of
 * 0..80 bytes, every digit count, windows 0..TOTPD_MAX_WINDOW, counters at
 * the edges (below the window, across 2^32) and codes of steps inside and
 * just outside the window. */
enum { DIFF_NK = 97, DIFF_NP = 211, DIFF_MAXK = 80 };
typedef struct {
    uint8_t keys[DIFF_NK * DIFF_MAXK], algs[DIFF_NK], digs[DIFF_NK];
    uint32_t offsets[DIFF_NK + 1], kidx[DIFF_NP], codes[DIFF_NP];
    uint64_t ctr[DIFF_NK], scratch[DIFF_NK * TOTPD_PAD_SLOT_WORDS];
    int64_t out[DIFF_NP];
} diff_batch;

/* Key lengths, algorithms, digits and counters; with low32, every counter of
 * a lane group below 2^32 (the kernels' folded path), else mixed. */
static void diff_keys(diff_batch *b, int low32) {
    /* clang-format off */
    static const uint64_t edge[] = {0, 1, 2, 7, 8, 9, 0xfffffff8ull, 0xfffffffeull, 0xffffffffull,
                                    0x100000000ull, 0x100000001ull, 0x1fffffffeull,
                                    0x7ffffffffffffff0ull};
    /* clang-format on */
    b->offsets[0] = 0;
    for (int k = 0; k < DIFF_NK; k++) {
        uint32_t r = (uint32_t)(rng() % 8);
        uint32_t len = r < 3   ? 20
                       : r < 5 ? (uint32_t)(rng() % 65)
                               : (uint32_t)(rng() % (DIFF_MAXK + 1));
        b->offsets[k + 1] = b->offsets[k] + len;
        b->algs[k] = (uint8_t)(rng() % 5 == 0 ? 1 + rng() % 3 : 1);
        b->digs[k] = (uint8_t)(6 + rng() % 3);
        uint64_t e = rng() % 3 == 0 ? edge[rng() % (sizeof edge / sizeof edge[0])]
                                    : 50000000 + rng() % 1000;
        if (low32 && e > 0xffffffffull - TOTPD_MAX_WINDOW) e = 56666666;
        b->ctr[k] = e;
    }
}

/* Pairs with codes of steps inside and just outside the window, or random. */
static void diff_pairs(diff_batch *b, uint32_t window) {
    for (int j = 0; j < DIFF_NP; j++) {
        uint32_t k = (uint32_t)(rng() % DIFF_NK);
        b->kidx[j] = k;
        int64_t off = (int64_t)(rng() % (2 * window + 3)) - (int64_t)window - 1;
        uint64_t step = b->ctr[k] + (uint64_t)off;
        b->codes[j] = (uint32_t)rng() % 100000000u;
        if ((int64_t)b->ctr[k] + off >= 0 && rng() % 4 != 0)
            CHECK(totpd_hotp(b->keys + b->offsets[k], b->offsets[k + 1] - b->offsets[k], b->algs[k],
                             b->digs[k], step, TOTPD_PATH_PORTABLE, &b->codes[j]) == TOTPD_OK);
    }
}

/* The lowest step of key k's window whose portable HOTP is code, or -1. */
static int64_t diff_want(const diff_batch *b, uint32_t k, uint32_t code, uint32_t window) {
    for (int64_t d = -(int64_t)window; d <= (int64_t)window; d++) {
        uint32_t c;
        if ((int64_t)b->ctr[k] + d < 0) continue;
        CHECK(totpd_hotp(b->keys + b->offsets[k], b->offsets[k + 1] - b->offsets[k], b->algs[k],
                         b->digs[k], b->ctr[k] + (uint64_t)d, TOTPD_PATH_PORTABLE, &c) == TOTPD_OK);
        if (c == code) return (int64_t)(b->ctr[k] + (uint64_t)d);
    }
    return -1;
}

void test_differential(int path) {
    static diff_batch b;
    const totpd_pairs prs = {.key_index = b.kidx, .codes = b.codes, .n_pairs = DIFF_NP};
    for (size_t i = 0; i < sizeof b.keys; i++) b.keys[i] = (uint8_t)rng();
    for (int round = 0; round < 6; round++) {
        uint32_t window = round < 2 ? (uint32_t)round : (uint32_t)(rng() % (TOTPD_MAX_WINDOW + 1));
        diff_keys(&b, round % 2 == 0);
        diff_pairs(&b, window);
        const totpd_key_table tab = {.keys = b.keys,
                                     .keys_len = b.offsets[DIFF_NK],
                                     .n_keys = DIFF_NK,
                                     .offsets = b.offsets,
                                     .algorithms = b.algs,
                                     .digits = b.digs,
                                     .counters = b.ctr};
        memset(b.out, 0x55, sizeof b.out);
        CHECK(totpd_verify_batch(&tab, &prs, window, path, b.scratch, b.out) == TOTPD_OK);
        for (int j = 0; j < DIFF_NP; j++) {
            uint32_t k = b.kidx[j];
            int64_t want = diff_want(&b, k, b.codes[j], window);
            if (b.out[j] != want) {
                fprintf(stderr,
                        "path %d pair %d key %u alg %u ctr %" PRIu64 " window %u: %" PRId64
                        " != %" PRId64 "\n",
                        path, j, k, b.algs[k], b.ctr[k], window, b.out[j], want);
                failures++;
            }
        }
    }
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

void test_race(void) {
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
