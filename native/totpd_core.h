/*
 * totpd_core.h - public API of the totpd C core (HMAC-SHA1/256/512 HOTP/TOTP).
 *
 * The section between the TOTPD-CDEF-BEGIN and TOTPD-CDEF-END markers doubles
 * as the cffi cdef: native/build_native.py reads it, drops preprocessor lines
 * other than the #define constants and replaces every constant's value by
 * "..." so the values always come from this C header.
 *
 * Rules of the core:
 *   - no allocation, no global state besides the CPU-path dispatch choice;
 *   - every buffer belongs to the caller;
 *   - every candidate step of a window is computed and compared with no early
 *     exit, the verdict is accumulated with masks;
 *   - key material (key copies, HMAC pad states) is wiped with explicit_bzero,
 *     and the stack the work used is scrubbed before an entry point returns;
 *   - the caller's buffers must not change during a call; if they do (the GIL
 *     is released), the answers are meaningless but every access stays inside
 *     the buffers: the fields of the table and pairs structs are read once, on
 *     entry; every value that selects memory (key offsets, algorithm, key
 *     index) is read once and clamped; digits, counters and codes select none
 *     and are read as needed.
 *
 * Functions return TOTPD_OK (0) or a negative TOTPD_ERR_* code.
 */
#ifndef TOTPD_CORE_H
#define TOTPD_CORE_H

#include <stddef.h>
#include <stdint.h>

/* TOTPD-CDEF-BEGIN */
#define TOTPD_OK 0
#define TOTPD_ERR_ALGORITHM -1 /* algorithm is not 1, 2 or 3 */
#define TOTPD_ERR_DIGITS -2    /* digits outside 6..8 */
#define TOTPD_ERR_OFFSETS -3   /* key offsets not monotonic / beyond the key buffer */
#define TOTPD_ERR_WINDOW -4    /* window larger than TOTPD_MAX_WINDOW */
#define TOTPD_ERR_KEY_INDEX -5 /* a pair refers to a key index >= n_keys */
#define TOTPD_ERR_COUNTER -6   /* counter + window does not fit in int64 */
#define TOTPD_ERR_PATH -7      /* unknown CPU path, or not supported by this CPU */
#define TOTPD_ERR_NULL -8      /* a required pointer is NULL */
#define TOTPD_ERR_RANGE -9     /* first/end key or pair range outside its table */

#define TOTPD_ALG_SHA1 1
#define TOTPD_ALG_SHA256 2
#define TOTPD_ALG_SHA512 3

#define TOTPD_MIN_DIGITS 6
#define TOTPD_MAX_DIGITS 8
#define TOTPD_MAX_WINDOW 8

/* Scratch needed per key by the batch API, in uint64_t words (HMAC inner and
 * outer chaining states; SHA-512 needs 2 x 8 words). */
#define TOTPD_PAD_SLOT_WORDS 16

#define TOTPD_PATH_AUTO 0     /* best supported path (resolved at selection) */
#define TOTPD_PATH_PORTABLE 1 /* portable C for every algorithm */
#define TOTPD_PATH_SHANI 2    /* SHA-NI for SHA-1 and SHA-256, portable SHA-512 */
#define TOTPD_PATH_AVX2 3     /* SHA-1 8-lane AVX2; SHA-256 SHA-NI if present */
#define TOTPD_PATH_AVX512 4   /* as AVX2, with AVX-512VL rotates and ternlog */
/* AVX512X16: fused kernels on 512-bit registers, SHA-1 16 lanes and SHA-512
 * 8 lanes (AVX-512F/VL/BW); SHA-256 SHA-NI if present. */
#define TOTPD_PATH_AVX512X16 5

/* The key table of a batch: key i is keys[offsets[i] .. offsets[i+1]) (n_keys + 1
 * offsets, offsets[0] == 0, non-decreasing, the last one <= keys_len);
 * algorithms[i] is a TOTPD_ALG_*, digits[i] 6..8, counters[i] the server's current
 * time step for that key. keys may be NULL when keys_len is 0. */
typedef struct {
    const uint8_t *keys;
    uint32_t keys_len;
    uint32_t n_keys;
    const uint32_t *offsets;
    const uint8_t *algorithms;
    const uint8_t *digits;
    const uint64_t *counters;
} totpd_key_table;

/* The pairs of a batch: pair j checks codes[j] against key key_index[j]. */
typedef struct {
    const uint32_t *key_index;
    const uint32_t *codes;
    uint32_t n_pairs;
} totpd_pairs;

/* One HOTP value (RFC 4226): the dynamic truncation modulo 10^digits.
 * path: TOTPD_PATH_* or -1 for the process default. */
int totpd_hotp(const uint8_t *key, uint32_t key_len, uint8_t algorithm, uint8_t digits,
               uint64_t counter, int path, uint32_t *out_code);

/* Batch verification: every pair j checks its code at every step of
 * [counter - window, counter + window] of its key (negative steps are skipped)
 * and writes the lowest matching step to out_matched[j], or -1.
 * scratch: n_keys * TOTPD_PAD_SLOT_WORDS uint64_t words, owned by the caller;
 * it holds the per-key HMAC pad states and is wiped before return.
 * path: TOTPD_PATH_* or -1 for the process default.
 * Everything is validated before any work; on error out_matched is untouched. */
int totpd_verify_batch(const totpd_key_table *keys, const totpd_pairs *pairs, uint32_t window,
                       int path, uint64_t *scratch, int64_t *out_matched);

/* The two halves of totpd_verify_batch, for callers that split a large batch
 * across threads: first totpd_prepare_keys over disjoint key ranges
 * [first_key, end_key) (it reads keys, offsets and algorithms of the table),
 * then totpd_verify_prepared over disjoint pair ranges [first_pair, end_pair)
 * (it reads algorithms, digits and counters, and writes out_matched[j] for the
 * pairs j of its range), then totpd_wipe(scratch): the caller owns the wipe in
 * this mode. */
int totpd_prepare_keys(const totpd_key_table *keys, uint32_t first_key, uint32_t end_key, int path,
                       uint64_t *scratch);
int totpd_verify_prepared(const totpd_key_table *keys, const totpd_pairs *pairs,
                          uint32_t first_pair, uint32_t end_pair, uint32_t window, int path,
                          const uint64_t *scratch, int64_t *out_matched);

/* A short English description of a TOTPD_ERR_* code (a static string). */
const char *totpd_strerror(int code);

/* explicit_bzero for the caller's buffers (scratch, key copies). */
void totpd_wipe(void *buf, size_t len);

/* CPU dispatch. totpd_path_supported: 1 if this CPU runs the path, else 0.
 * totpd_set_default_path: the process default (TOTPD_PATH_AUTO resolves to the
 * best supported path); TOTPD_ERR_PATH if unknown or unsupported.
 * totpd_default_path: the resolved default (never TOTPD_PATH_AUTO). */
int totpd_path_supported(int path);
int totpd_set_default_path(int path);
int totpd_default_path(void);
/* TOTPD-CDEF-END */

#endif /* TOTPD_CORE_H */
