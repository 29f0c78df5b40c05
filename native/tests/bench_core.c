/*
 * bench_core.c - quick C-level throughput check of totpd_verify_batch (no
 * Python). Not part of the test suite; build by hand:
 *   gcc -O3 -std=c11 -fno-strict-aliasing -DTOTPD_SIMD=1 -Inative native/[a-z]*.c \
 *       native/tests/bench_core.c
 * usage: bench_core [n_keys] [reps]  -> median verifications/s per alg/path.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "totpd_core.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    uint32_t n = argc > 1 ? (uint32_t)atoi(argv[1]) : 10000;
    int reps = argc > 2 ? atoi(argv[2]) : 15;
    static const uint32_t klen[4] = {0, 20, 32, 64};
    static const char *names[] = {"", "portable", "shani", "avx2", "avx512", "avx512x16"};
    uint8_t *keys = malloc((size_t)n * 64);
    uint32_t *off = malloc(((size_t)n + 1) * 4), *idx = malloc((size_t)n * 4),
             *codes = malloc((size_t)n * 4);
    uint8_t *algs = malloc(n), *digs = malloc(n);
    uint64_t *ctr = malloc((size_t)n * 8);
    uint64_t *scratch = malloc((size_t)n * TOTPD_PAD_SLOT_WORDS * 8);
    int64_t *out = malloc((size_t)n * 8);
    totpd_key_table tab = {.keys = keys,
                           .n_keys = n,
                           .offsets = off,
                           .algorithms = algs,
                           .digits = digs,
                           .counters = ctr};
    const totpd_pairs prs = {.key_index = idx, .codes = codes, .n_pairs = n};
    srand(1);
    for (size_t i = 0; i < (size_t)n * 64; i++) keys[i] = (uint8_t)rand();
    for (int alg = 1; alg <= 3; alg++) {
        off[0] = 0;
        for (uint32_t i = 0; i < n; i++) {
            off[i + 1] = off[i] + klen[alg];
            algs[i] = (uint8_t)alg;
            digs[i] = 6;
            ctr[i] = 56666666 + i;
            idx[i] = i;
        }
        tab.keys_len = off[n];
        for (uint32_t i = 0; i < n; i++)
            totpd_hotp(keys + off[i], klen[alg], (uint8_t)alg, 6, ctr[i], 1, &codes[i]);
        for (int path = 1; path <= 5; path++) {
            if (!totpd_path_supported(path)) continue;
            double t[64];
            int r = reps < 64 ? reps : 64;
            for (int k = 0; k < r; k++) {
                double t0 = now();
                totpd_verify_batch(&tab, &prs, 1, path, scratch, out);
                t[k] = now() - t0;
            }
            int bad = 0;
            for (uint32_t i = 0; i < n; i++) bad += out[i] != (int64_t)ctr[i];
            qsort(t, (size_t)r, sizeof t[0], cmp);
            printf("alg %d %-10s %8.3f M/s%s\n", alg, names[path], n / t[r / 2] / 1e6,
                   bad ? "  WRONG" : "");
        }
    }
    return 0;
}
