/*
 * lanes.c - the batch work: the pad states of a key range and the verdicts of
 * a pair range, each item either through its path's multi-lane kernel (items
 * of one algorithm gathered into a lane group) or through the scalar code.
 *
 * Memory-safe whatever the caller's buffers hold by now (they may change
 * during the call: cffi releases the GIL). Each value that selects memory is
 * read once and clamped: a key's offsets (key_span), its algorithm, a pair's
 * key index (re-checked against n_keys: a changed index selects key 0). The
 * kernels get those values, never the buffers.
 */
#include <stddef.h>

#include "core_internal.h"

/* One read of a value in a caller's buffer, which the compiler may not repeat
 * (a plain load it could legally reload later, after the checks). */
static inline uint32_t read_once_u32(const uint32_t *p) { return *(const volatile uint32_t *)p; }
static inline uint8_t read_once_u8(const uint8_t *p) { return *(const volatile uint8_t *)p; }

/* Key i of the table, its two offsets read once and clamped into the key
 * buffer: every later use of key i goes through these values, so no change
 * can move a read outside keys[0, keys_len). Only public lengths decide the
 * branches. */
static inline const uint8_t *key_span(const totpd_key_table *t, uint32_t i, uint32_t *len) {
    uint32_t lo = read_once_u32(t->offsets + i), hi = read_once_u32(t->offsets + i + 1);
    if (lo > t->keys_len) lo = t->keys_len;
    if (hi > t->keys_len) hi = t->keys_len;
    if (hi < lo) hi = lo;
    *len = hi - lo;
    return t->keys ? t->keys + lo : NULL; /* keys == NULL only with keys_len == 0 */
}

static inline uint64_t *slot_of(uint64_t *scratch, uint32_t k) {
    return scratch + (size_t)k * TOTPD_PAD_SLOT_WORDS;
}

static inline const uint64_t *const_slot_of(const uint64_t *scratch, uint32_t k) {
    return scratch + (size_t)k * TOTPD_PAD_SLOT_WORDS;
}

/* The items of one algorithm waiting for its lane kernel. */
typedef struct {
    const totpd_lane_kernel *kernel; /* NULL: this algorithm runs scalar on this path */
    int width;                       /* the kernel's, kept here for the per-item test */
    uint32_t max_key_len;            /* likewise */
    uint8_t alg;
    int n;
    uint32_t item[TOTPD_MAX_LANES];      /* the pair (verify) or the key (prepare) */
    uint32_t key[TOTPD_MAX_LANES];       /* verify: the pair's key */
    const uint8_t *ptr[TOTPD_MAX_LANES]; /* prepare: the key's bytes */
    uint32_t len[TOTPD_MAX_LANES];       /* prepare: the key's length */
} lanes_t;

static void lanes_init(lanes_t g[TOTPD_N_ALGS], const totpd_impl *im) {
    for (int a = 0; a < TOTPD_N_ALGS; a++) {
        const totpd_lane_kernel *k = im->lanes[a];
        g[a].kernel = k;
        g[a].width = k ? k->width : 0;
        g[a].max_key_len = k ? k->max_key_len : 0;
        g[a].alg = (uint8_t)(a + 1);
        g[a].n = 0;
    }
}

/* The group of an algorithm, or NULL where it runs scalar (or alg is no
 * algorithm: the caller changed its buffer since validation). */
static inline lanes_t *lanes_for(lanes_t g[TOTPD_N_ALGS], uint8_t alg) {
    unsigned a = (unsigned)alg - 1u;
    return a < TOTPD_N_ALGS && g[a].width ? &g[a] : NULL;
}

/* A work loop's cursor: the group the last item went to, and its count. The
 * count stays in the loop's registers while a run of items of one algorithm
 * lasts and goes back to the group when the run ends (lanes_enter) or the
 * group is full (lanes_full): kept in the group, it would put a store-to-load
 * round trip on every item. */
typedef struct {
    lanes_t *g; /* NULL before the first item */
    int n;
} lanes_cursor;

/* The lane of group g for the next item. */
static inline int lanes_enter(lanes_cursor *cur, lanes_t *g) {
    if (cur->g != g) {
        if (cur->g) cur->g->n = cur->n;
        cur->g = g;
        cur->n = g->n;
    }
    return cur->n++;
}

/* 1 when the cursor's group is full: its count is back in the group, to flush. */
static inline int lanes_full(lanes_cursor *cur) {
    if (cur->n < cur->g->width) return 0;
    cur->g->n = cur->n;
    cur->n = 0;
    return 1;
}

/* Every count back in its group, to flush the last groups. */
static inline void lanes_leave(lanes_cursor *cur) {
    if (cur->g) cur->g->n = cur->n;
    cur->g = NULL;
}

/* Adds a key (prepare) or a pair (verify) to group g; 1 when it is full. */
static inline int lanes_push_key(lanes_cursor *cur, lanes_t *g, uint32_t i, const uint8_t *ptr,
                                 uint32_t len) {
    int l = lanes_enter(cur, g);
    g->item[l] = i;
    g->ptr[l] = ptr;
    g->len[l] = len;
    return lanes_full(cur);
}

static inline int lanes_push_pair(lanes_cursor *cur, lanes_t *g, uint32_t j, uint32_t k) {
    int l = lanes_enter(cur, g);
    g->item[l] = j;
    g->key[l] = k;
    return lanes_full(cur);
}

/* ------------------------------------------------------------------------ */
/* Prepare: pad states.                                                      */

static void prepare_one(const totpd_call *c, uint32_t i, const uint8_t *key, uint32_t len,
                        uint8_t alg, uint64_t *scratch) {
    totpd_hmac_pads(key, len, alg, &c->im, slot_of(scratch, i));
}

/* Empties the group: its kernel, or the scalar code for a short last group.
 * Returns 1 if a kernel with a large frame ran. */
static int lanes_flush_prepare(lanes_t *g, const totpd_call *c, uint64_t *scratch) {
    int n = g->n;
    g->n = 0;
    if (n == 0) return 0;
    if (n > g->kernel->scalar_tail) {
        g->kernel->prepare(g->ptr, g->len, g->item, n, scratch);
        return g->kernel->large_frame;
    }
    for (int l = 0; l < n; l++) prepare_one(c, g->item[l], g->ptr[l], g->len[l], g->alg, scratch);
    return 0;
}

__attribute__((noinline)) int totpd_prepare_range(const totpd_call *c, uint32_t first, uint32_t end,
                                                  uint64_t *scratch) {
    const totpd_key_table t = c->keys; /* in registers through the loop */
    lanes_t groups[TOTPD_N_ALGS];
    lanes_cursor cur = {NULL, 0};
    int large = 0;
    lanes_init(groups, &c->im);
    for (uint32_t i = first; i < end; i++) {
        uint32_t len;
        const uint8_t *key = key_span(&t, i, &len);
        uint8_t alg = read_once_u8(t.algorithms + i);
        lanes_t *g = lanes_for(groups, alg);
        if (!g || len > g->max_key_len) prepare_one(c, i, key, len, alg, scratch);
        else if (lanes_push_key(&cur, g, i, key, len)) large |= lanes_flush_prepare(g, c, scratch);
    }
    lanes_leave(&cur);
    for (int a = 0; a < TOTPD_N_ALGS; a++) large |= lanes_flush_prepare(&groups[a], c, scratch);
    return large;
}

/* ------------------------------------------------------------------------ */
/* Verify: verdicts.                                                         */

static void verify_one(const totpd_call *c, uint32_t j, uint32_t k, uint8_t alg,
                       const uint64_t *scratch, int64_t *out) {
    const totpd_key_table *t = &c->keys;
    out[j] = totpd_hmac_verify(const_slot_of(scratch, k), alg, t->digits[k], t->counters[k],
                               c->pairs.codes[j], c->window, &c->im);
}

/* As lanes_flush_prepare, for pairs. */
static int lanes_flush_verify(lanes_t *g, const totpd_call *c, const uint64_t *scratch,
                              int64_t *out) {
    int n = g->n;
    g->n = 0;
    if (n == 0) return 0;
    if (n > g->kernel->scalar_tail) {
        g->kernel->verify(scratch, c->keys.digits, c->keys.counters, c->pairs.codes, g->item,
                          g->key, n, c->window, out);
        return g->kernel->large_frame;
    }
    for (int l = 0; l < n; l++) verify_one(c, g->item[l], g->key[l], g->alg, scratch, out);
    return 0;
}

__attribute__((noinline)) int totpd_verify_range(const totpd_call *c, uint32_t first, uint32_t end,
                                                 const uint64_t *scratch, int64_t *out) {
    lanes_t groups[TOTPD_N_ALGS];
    lanes_cursor cur = {NULL, 0};
    int large = 0;
    lanes_init(groups, &c->im);
    for (uint32_t j = first; j < end; j++) {
        uint32_t k = read_once_u32(c->pairs.key_index + j);
        k = k < c->keys.n_keys ? k : 0; /* n_keys > 0: validation saw a valid index */
        uint8_t alg = read_once_u8(c->keys.algorithms + k);
        lanes_t *g = lanes_for(groups, alg);
        if (!g) verify_one(c, j, k, alg, scratch, out);
        else if (lanes_push_pair(&cur, g, j, k)) large |= lanes_flush_verify(g, c, scratch, out);
    }
    lanes_leave(&cur);
    for (int a = 0; a < TOTPD_N_ALGS; a++) large |= lanes_flush_verify(&groups[a], c, scratch, out);
    return large;
}
