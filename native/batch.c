/*
 * batch.c - the public entry points: the caller's structs read once, every
 * argument validated before any work, the work (lanes.c, hmac.c) done in a
 * callee, then the stack that work used scrubbed.
 */
#define _DEFAULT_SOURCE 1
#include <string.h>

#include "core_internal.h"

/* ------------------------------------------------------------------------ */
/* Stack scrubbing. The compressions and kernels leave HMAC pad states (key  */
/* equivalents) in their stack frames: the unrolled portable SHA-1/SHA-256   */
/* spill the chaining state, the fused AVX-512 kernels spill some registers. */
/* Every public entry point does its work in a noinline callee and then,     */
/* from its own frame, overwrites the stack area that callee and its callees */
/* used. The sizes cover the deepest call chains as gcc -fstack-usage counts */
/* them at -O3 (prepare -> pads -> totpd_sha512 -> compression, or verify -> */
/* 8-lane driver -> 8-lane kernel; the zmm kernels' chains for the large     */
/* one); native/tests/test_residue.c checks that nothing is left.            */

#define TOTPD_SCRUB_SMALL 4096
#define TOTPD_SCRUB_LARGE 16384

__attribute__((noinline)) static void scrub_stack_small(void) {
    uint8_t buf[TOTPD_SCRUB_SMALL];
    explicit_bzero(buf, sizeof buf);
    __asm__ __volatile__("" : : "r"(buf) : "memory");
}

__attribute__((noinline)) static void scrub_stack_large(void) {
    uint8_t buf[TOTPD_SCRUB_LARGE];
    explicit_bzero(buf, sizeof buf);
    __asm__ __volatile__("" : : "r"(buf) : "memory");
}

static inline __attribute__((always_inline)) void scrub_stack(int large) {
    if (large) scrub_stack_large();
    else scrub_stack_small();
}

/* ------------------------------------------------------------------------ */
/* The caller's structs, each field read once: a caller that changes them    */
/* during the call (the GIL is released) cannot make validation and work see */
/* two different values of one field.                                        */

static void load_call(totpd_call *c, const totpd_key_table *keys, const totpd_pairs *pairs,
                      uint32_t window) {
    const volatile totpd_key_table *t = keys;
    c->keys.keys = t->keys;
    c->keys.keys_len = t->keys_len;
    c->keys.n_keys = t->n_keys;
    c->keys.offsets = t->offsets;
    c->keys.algorithms = t->algorithms;
    c->keys.digits = t->digits;
    c->keys.counters = t->counters;
    memset(&c->pairs, 0, sizeof c->pairs);
    if (pairs) {
        const volatile totpd_pairs *p = pairs;
        c->pairs.key_index = p->key_index;
        c->pairs.codes = p->codes;
        c->pairs.n_pairs = p->n_pairs;
    }
    c->window = window;
}

/* ------------------------------------------------------------------------ */
/* Validation.                                                               */

static int check_alg(uint8_t alg) {
    return (alg >= TOTPD_ALG_SHA1 && alg <= TOTPD_ALG_SHA512) ? TOTPD_OK : TOTPD_ERR_ALGORITHM;
}

static int check_digits(uint8_t digits) {
    return (digits >= TOTPD_MIN_DIGITS && digits <= TOTPD_MAX_DIGITS) ? TOTPD_OK : TOTPD_ERR_DIGITS;
}

/* The buffers the key-bytes side (prepare) reads. */
static int need_key_bytes(const totpd_key_table *t, const uint64_t *scratch) {
    if (!t->offsets || (!t->keys && t->keys_len > 0)) return TOTPD_ERR_NULL;
    if (t->n_keys > 0 && (!t->algorithms || !scratch)) return TOTPD_ERR_NULL;
    return TOTPD_OK;
}

/* The buffers the verify side reads for a non-empty pair range. */
static int need_verify_buffers(const totpd_call *c, uint32_t n_pairs, const uint64_t *scratch,
                               const int64_t *out) {
    const totpd_key_table *t = &c->keys;
    if (t->n_keys > 0 && (!scratch || !t->algorithms || !t->digits || !t->counters))
        return TOTPD_ERR_NULL;
    if (n_pairs > 0 && (!c->pairs.key_index || !c->pairs.codes || !out)) return TOTPD_ERR_NULL;
    return TOTPD_OK;
}

static int check_offsets(const totpd_key_table *t) {
    const uint32_t *off = t->offsets;
    if (off[0] != 0) return TOTPD_ERR_OFFSETS;
    for (uint32_t i = 0; i < t->n_keys; i++)
        if (off[i + 1] < off[i]) return TOTPD_ERR_OFFSETS;
    if (off[t->n_keys] > t->keys_len) return TOTPD_ERR_OFFSETS;
    return TOTPD_OK;
}

/* Every key's algorithm; with verify, its digits and counter + window too. */
static int check_columns(const totpd_key_table *t, int verify, uint32_t window) {
    if (window > TOTPD_MAX_WINDOW) return TOTPD_ERR_WINDOW;
    for (uint32_t i = 0; i < t->n_keys; i++) {
        int rc = check_alg(t->algorithms[i]);
        if (rc == TOTPD_OK && verify) rc = check_digits(t->digits[i]);
        if (rc != TOTPD_OK) return rc;
        if (verify && t->counters[i] > (uint64_t)INT64_MAX - window) return TOTPD_ERR_COUNTER;
    }
    return TOTPD_OK;
}

static int check_key_index(const totpd_call *c, uint32_t first, uint32_t end) {
    for (uint32_t j = first; j < end; j++)
        if (c->pairs.key_index[j] >= c->keys.n_keys) return TOTPD_ERR_KEY_INDEX;
    return TOTPD_OK;
}

/* ------------------------------------------------------------------------ */
/* Entry points.                                                             */

int totpd_verify_batch(const totpd_key_table *keys, const totpd_pairs *pairs, uint32_t window,
                       int path, uint64_t *scratch, int64_t *out_matched) {
    totpd_call c;
    int rc;
    if (!keys || !pairs) return TOTPD_ERR_NULL;
    load_call(&c, keys, pairs, window);
    uint32_t n_keys = c.keys.n_keys, n_pairs = c.pairs.n_pairs;
    /* Everything validated before scratch or the output is touched. */
    if ((rc = need_key_bytes(&c.keys, scratch)) != TOTPD_OK) return rc;
    if ((rc = need_verify_buffers(&c, n_pairs, scratch, out_matched)) != TOTPD_OK) return rc;
    if ((rc = check_offsets(&c.keys)) != TOTPD_OK) return rc;
    if ((rc = check_columns(&c.keys, 1, window)) != TOTPD_OK) return rc;
    if ((rc = check_key_index(&c, 0, n_pairs)) != TOTPD_OK) return rc;
    if ((rc = totpd_resolve_impl(path, &c.im)) != TOTPD_OK) return rc;
    if (n_keys == 0) return TOTPD_OK; /* and so n_pairs == 0 */

    int large = totpd_prepare_range(&c, 0, n_keys, scratch);
    if (n_pairs > 0) large |= totpd_verify_range(&c, 0, n_pairs, scratch, out_matched);
    explicit_bzero(scratch, (size_t)n_keys * TOTPD_PAD_SLOT_WORDS * sizeof(uint64_t));
    scrub_stack(large);
    return TOTPD_OK;
}

int totpd_prepare_keys(const totpd_key_table *keys, uint32_t first_key, uint32_t end_key, int path,
                       uint64_t *scratch) {
    totpd_call c;
    int rc;
    if (!keys) return TOTPD_ERR_NULL;
    load_call(&c, keys, NULL, 0);
    if ((rc = need_key_bytes(&c.keys, scratch)) != TOTPD_OK) return rc;
    if (first_key > end_key || end_key > c.keys.n_keys) return TOTPD_ERR_RANGE;
    if ((rc = check_offsets(&c.keys)) != TOTPD_OK) return rc;
    if ((rc = check_columns(&c.keys, 0, 0)) != TOTPD_OK) return rc;
    if ((rc = totpd_resolve_impl(path, &c.im)) != TOTPD_OK) return rc;
    if (first_key == end_key) return TOTPD_OK;
    scrub_stack(totpd_prepare_range(&c, first_key, end_key, scratch));
    return TOTPD_OK;
}

int totpd_verify_prepared(const totpd_key_table *keys, const totpd_pairs *pairs,
                          uint32_t first_pair, uint32_t end_pair, uint32_t window, int path,
                          const uint64_t *scratch, int64_t *out_matched) {
    totpd_call c;
    int rc;
    if (!keys || !pairs) return TOTPD_ERR_NULL;
    load_call(&c, keys, pairs, window);
    if (first_pair > end_pair || end_pair > c.pairs.n_pairs) return TOTPD_ERR_RANGE;
    uint32_t n = end_pair - first_pair;
    if ((rc = need_verify_buffers(&c, n, scratch, out_matched)) != TOTPD_OK) return rc;
    if ((rc = check_columns(&c.keys, 1, window)) != TOTPD_OK) return rc;
    if ((rc = check_key_index(&c, first_pair, end_pair)) != TOTPD_OK) return rc;
    if ((rc = totpd_resolve_impl(path, &c.im)) != TOTPD_OK) return rc;
    if (n == 0) return TOTPD_OK;
    scrub_stack(totpd_verify_range(&c, first_pair, end_pair, scratch, out_matched));
    return TOTPD_OK;
}

/* The work of totpd_hotp, below its frame (see the stack scrubbing above). */
__attribute__((noinline)) static uint32_t hotp_work(const uint8_t *key, uint32_t key_len,
                                                    uint8_t algorithm, uint8_t digits,
                                                    uint64_t counter, const totpd_impl *im) {
    uint64_t slot[TOTPD_PAD_SLOT_WORDS];
    totpd_hmac_pads(key, key_len, algorithm, im, slot);
    /* Scalar SHA-1/SHA-256 here run the path's scalar compressor: SHA-NI on
     * every SIMD path where the CPU has it, else the portable one. */
    uint32_t code = totpd_hmac_hotp(slot, algorithm, counter, digits, im);
    explicit_bzero(slot, sizeof slot);
    return code;
}

int totpd_hotp(const uint8_t *key, uint32_t key_len, uint8_t algorithm, uint8_t digits,
               uint64_t counter, int path, uint32_t *out_code) {
    totpd_impl im;
    int rc;
    if (!out_code || (!key && key_len > 0)) return TOTPD_ERR_NULL;
    if ((rc = check_alg(algorithm)) != TOTPD_OK) return rc;
    if ((rc = check_digits(digits)) != TOTPD_OK) return rc;
    if ((rc = totpd_resolve_impl(path, &im)) != TOTPD_OK) return rc;
    *out_code = hotp_work(key, key_len, algorithm, digits, counter, &im);
    scrub_stack(0);
    return TOTPD_OK;
}

void totpd_wipe(void *buf, size_t len) {
    if (buf && len) explicit_bzero(buf, len);
}
