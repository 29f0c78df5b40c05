/*
 * test_residue.c - no HMAC pad state (a key equivalent) may stay on the stack
 * after an entry point of the core returns. Built with the production flags
 * (-O3, no sanitizer: ASan changes every frame) by
 * tests/native/test_native_residue.py.
 *
 * For every CPU path and a few batch shapes: compute the pad states of the
 * keys (totpd_prepare_keys into a static buffer), zero a deep stack area,
 * call the entry point, then read the same stack area back through a large
 * uninitialized volatile local of a function called from the same frame, and
 * count the 32-bit words equal to a word of a pad state. The pad state words
 * are hash outputs, so a chance match is about 2^-32 per word.
 * Exits non-zero if any residue is found.
 */
#define _DEFAULT_SOURCE 1
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "totpd_core.h"

enum { NK = 16, MAXK = 200, AREA = 16384 /* 32-bit words: 64 KiB of stack */ };

static uint8_t keys[NK * MAXK], algs[NK], digs[NK];
static uint32_t offsets[NK + 1], kidx[NK], codes[NK];
static uint64_t ctr[NK], scratch[NK * TOTPD_PAD_SLOT_WORDS];
static uint64_t secret[NK * TOTPD_PAD_SLOT_WORDS];
static int64_t out[NK];
static uint32_t hotp_code;
static totpd_key_table tab = {.keys = keys,
                              .n_keys = NK,
                              .offsets = offsets,
                              .algorithms = algs,
                              .digits = digs,
                              .counters = ctr};
static totpd_pairs prs = {.key_index = kidx, .codes = codes};

__attribute__((noinline)) static void clear_stack(void) {
    volatile uint32_t area[AREA + 1024];
    for (size_t i = 0; i < sizeof area / sizeof area[0]; i++) area[i] = 0;
    __asm__ __volatile__("" : : "r"(area) : "memory");
}

/* Reads the stack the entry point just used (same caller frame, so the same
 * addresses): the values are whatever the core left there. */
__attribute__((noinline)) static int scan_stack(void) {
    volatile uint32_t area[AREA];
    __asm__ __volatile__("" : : "r"(area) : "memory");
    int hits = 0;
    for (size_t w = 0; w < AREA; w++) {
        uint32_t v = area[w];
        if (v == 0) continue;
        const uint32_t *s = (const uint32_t *)secret;
        for (size_t i = 0; i < 2 * (size_t)NK * TOTPD_PAD_SLOT_WORDS; i++) {
            if (s[i] == v) {
                hits++;
                fprintf(stderr, "  pad-state word %zu (key %zu) at %zu bytes below the scan top\n",
                        i, i / (TOTPD_PAD_SLOT_WORDS * 2), (AREA - w) * 4);
            }
        }
    }
    return hits;
}

enum { CALL_BATCH, CALL_SPLIT, CALL_HOTP };

/* The entry point and the scan, called from one frame; nothing in between. */
__attribute__((noinline)) static int call_and_scan(int call, int path, uint32_t np) {
    prs.n_pairs = np;
    clear_stack();
    switch (call) {
        case CALL_BATCH:
            if (totpd_verify_batch(&tab, &prs, 1, path, scratch, out) != TOTPD_OK) return -1;
            break;
        case CALL_SPLIT:
            if (totpd_prepare_keys(&tab, 0, NK, path, scratch) != TOTPD_OK) return -1;
            break;
        default:
            if (totpd_hotp(keys, offsets[1], algs[0], digs[0], ctr[0], path, &hotp_code) !=
                TOTPD_OK)
                return -1;
            break;
    }
    return scan_stack();
}

/* As call_and_scan, for the second half of the split API. */
__attribute__((noinline)) static int call_verify_prepared_and_scan(int path, uint32_t np) {
    clear_stack();
    if (totpd_verify_prepared(&tab, &prs, 0, np, 1, path, scratch, out) != TOTPD_OK) return -1;
    return scan_stack();
}

static int failures = 0, cases = 0;

static void run(int path, uint8_t alg, uint32_t klen, uint32_t np) {
    offsets[0] = 0;
    for (uint32_t i = 0; i < NK; i++) {
        offsets[i + 1] = offsets[i] + klen;
        algs[i] = alg;
        digs[i] = 6;
        ctr[i] = 1000 + i;
        kidx[i] = i;
        codes[i] = 123456;
    }
    for (uint32_t i = 0; i < NK * klen; i++) keys[i] = (uint8_t)(0xA5 ^ (i * 37 + 11));
    tab.keys_len = offsets[NK];
    /* The secrets; this call's own residue is cleared by clear_stack(). */
    if (totpd_prepare_keys(&tab, 0, NK, TOTPD_PATH_PORTABLE, secret) != TOTPD_OK) {
        failures++;
        return;
    }
    int batch = call_and_scan(CALL_BATCH, path, np);
    int prep = call_and_scan(CALL_SPLIT, path, np);
    int ver = call_verify_prepared_and_scan(path, np);
    totpd_wipe(scratch, sizeof scratch);
    int hotp = call_and_scan(CALL_HOTP, path, np);
    if (batch != 0 || prep != 0 || ver != 0 || hotp != 0) {
        printf("path %d alg %u klen %u pairs %u: pad-state words left on the stack by "
               "verify_batch %d, prepare_keys %d, verify_prepared %d, hotp %d\n",
               path, alg, klen, np, batch, prep, ver, hotp);
        failures++;
    }
    cases++;
}

int main(void) {
    static const uint32_t klens[] = {20, 64, 100, 200};
    int tested = 0;
    for (int path = TOTPD_PATH_PORTABLE; path <= TOTPD_PATH_AVX512X16; path++) {
        if (!totpd_path_supported(path)) continue;
        for (uint8_t alg = TOTPD_ALG_SHA1; alg <= TOTPD_ALG_SHA512; alg++) {
            for (size_t i = 0; i < sizeof klens / sizeof klens[0]; i++) {
                run(path, alg, klens[i], NK); /* full lane groups */
                run(path, alg, klens[i], 3);  /* scalar tails */
            }
        }
        tested++;
    }
    printf("paths tested: %d, cases: %d, failures: %d\n", tested, cases, failures);
    return failures ? 1 : 0;
}
