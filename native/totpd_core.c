/*
 * totpd_core.c - HMAC, HOTP truncation, batch verification and CPU dispatch.
 */
#define _DEFAULT_SOURCE 1
#include "totpd_core.h"

#include <stdatomic.h>
#include <string.h>

#include "sha_internal.h"

#if defined(TOTPD_X86) && defined(TOTPD_SIMD)
#include <cpuid.h>
#endif

/* ------------------------------------------------------------------------ */
/* Constant-time helpers.                                                    */

/* All ones if x == 0, else 0 (x < 2^32). */
static inline uint64_t ct_zero_mask32(uint32_t x) { return 0u - (((uint64_t)x - 1u) >> 63); }

/* All ones if a < b (unsigned 64-bit), else 0. */
static inline uint64_t ct_lt_mask64(uint64_t a, uint64_t b) {
    return 0u - ((a ^ ((a ^ b) | ((a - b) ^ b))) >> 63);
}

/* RFC 4226 dynamic truncation over the first 20 digest bytes given as five
 * big-endian words; the offset comes from the digest's last byte. The word
 * pair is selected with masks (no secret-dependent memory index). */
static inline uint32_t dynamic_truncate(const uint32_t w[5], uint32_t last_byte) {
    uint32_t o = last_byte & 15u;
    uint32_t j = o >> 2, r = o & 3u;
    uint32_t hi = 0, lo = 0;
    for (uint32_t i = 0; i < 4; i++) {
        uint32_t m = (uint32_t)ct_zero_mask32(i ^ j);
        hi |= w[i] & m;
        lo |= w[i + 1] & m;
    }
    uint64_t v = ((uint64_t)hi << 32) | lo;
    return (uint32_t)(v >> (32u - 8u * r)) & 0x7fffffffu;
}

/* digits is public: a switch gives constant divisors (multiply, not div). */
static inline uint32_t reduce_digits(uint32_t bin, uint8_t digits) {
    switch (digits) {
        case 6: return bin % 1000000u;
        case 7: return bin % 10000000u;
        default: return bin % 100000000u;
    }
}

/* ------------------------------------------------------------------------ */
/* CPU dispatch.                                                             */

typedef struct {
    int path;
    int sha1_x8; /* SHA-1 verification through an 8-lane kernel */
    int zmm;     /* SHA-1 16-lane and SHA-512 8-lane fused AVX-512 kernels */
#if defined(TOTPD_X86) && defined(TOTPD_SIMD)
    totpd_x8_fn x8;
#endif
    totpd_compress32_fn sha1;
    totpd_compress32_fn sha256;
} impl_t;

/* CPU features, probed once: CPUID traps to the hypervisor in a VM, so it is
 * far too slow to run per call. Bit 0: probed, 1: SHA-NI, 2: AVX2, 3: AVX-512VL,
 * 4: AVX-512BW (with F and VL). */
static atomic_int g_cpu_features = 0;

static int cpu_features(void) {
    int f = atomic_load_explicit(&g_cpu_features, memory_order_relaxed);
    if (f) return f;
    f = 1;
#if defined(TOTPD_X86) && defined(TOTPD_SIMD)
    unsigned a, b, c, d;
    __builtin_cpu_init();
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && ((b >> 29) & 1u) &&
        __builtin_cpu_supports("sse4.1") && __builtin_cpu_supports("ssse3"))
        f |= 2;
    if (__builtin_cpu_supports("avx2")) f |= 4;
    if ((f & 4) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
        f |= 8;
    if ((f & 8) && __builtin_cpu_supports("avx512bw")) f |= 16;
#endif
    atomic_store_explicit(&g_cpu_features, f, memory_order_relaxed);
    return f;
}

static int cpu_has_shani(void) { return (cpu_features() & 2) != 0; }
static int cpu_has_avx2(void) { return (cpu_features() & 4) != 0; }
static int cpu_has_avx512(void) { return (cpu_features() & 8) != 0; }
static int cpu_has_avx512bw(void) { return (cpu_features() & 16) != 0; }

int totpd_path_supported(int path) {
    switch (path) {
        case TOTPD_PATH_AUTO:
        case TOTPD_PATH_PORTABLE: return 1;
        case TOTPD_PATH_SHANI: return cpu_has_shani();
        case TOTPD_PATH_AVX2: return cpu_has_avx2();
        case TOTPD_PATH_AVX512: return cpu_has_avx512();
        case TOTPD_PATH_AVX512X16: return cpu_has_avx512bw();
        default: return 0;
    }
}

/* Best path measured on the reference machine (AMD EPYC, Zen 4 class, 10k
 * keys, window 1, one core): SHA-1 16-lane zmm ~9.0M/s > 8-lane AVX-512VL
 * ~4.6M/s > 8-lane AVX2 ~4.1M/s > one SHA-NI stream ~2.3M/s; SHA-512 8-lane
 * zmm ~2.5M/s against ~0.45M/s portable; SHA-256 uses SHA-NI on every SIMD path. */
static int best_path(void) {
    if (cpu_has_avx512bw()) return TOTPD_PATH_AVX512X16;
    if (cpu_has_avx512()) return TOTPD_PATH_AVX512;
    if (cpu_has_avx2()) return TOTPD_PATH_AVX2;
    if (cpu_has_shani()) return TOTPD_PATH_SHANI;
    return TOTPD_PATH_PORTABLE;
}

static atomic_int g_default_path = 0; /* 0: not chosen yet, resolves to auto */

int totpd_set_default_path(int path) {
    if (path == TOTPD_PATH_AUTO) path = best_path();
    if (path < TOTPD_PATH_PORTABLE || path > TOTPD_PATH_AVX512X16 ||
        !totpd_path_supported(path))
        return TOTPD_ERR_PATH;
    atomic_store(&g_default_path, path);
    return TOTPD_OK;
}

int totpd_default_path(void) {
    int p = atomic_load(&g_default_path);
    if (p == 0) {
        p = best_path();
        int expected = 0;
        atomic_compare_exchange_strong(&g_default_path, &expected, p);
        p = atomic_load(&g_default_path);
    }
    return p;
}

static int resolve_impl(int path, impl_t *im) {
    if (path < 0) path = totpd_default_path();
    if (path == TOTPD_PATH_AUTO) path = best_path();
    if (path < TOTPD_PATH_PORTABLE || path > TOTPD_PATH_AVX512X16 ||
        !totpd_path_supported(path))
        return TOTPD_ERR_PATH;
    im->path = path;
    im->sha1_x8 = 0;
    im->zmm = 0;
    im->sha1 = totpd_sha1_compress_portable;
    im->sha256 = totpd_sha256_compress_portable;
#if defined(TOTPD_X86) && defined(TOTPD_SIMD)
    if (path == TOTPD_PATH_SHANI) {
        im->sha1 = totpd_sha1_compress_shani;
        im->sha256 = totpd_sha256_compress_shani;
    } else if (path == TOTPD_PATH_AVX512X16) {
        im->zmm = 1;
        if (cpu_has_shani()) {
            im->sha1 = totpd_sha1_compress_shani;
            im->sha256 = totpd_sha256_compress_shani;
        }
    } else if (path == TOTPD_PATH_AVX2 || path == TOTPD_PATH_AVX512) {
        im->sha1_x8 = 1;
        im->x8 = path == TOTPD_PATH_AVX2 ? totpd_sha1_compress_avx2_x8
                                         : totpd_sha1_compress_avx512_x8;
        /* Scalar SHA-1 (pad states, totpd_hotp) and SHA-256 use SHA-NI where
         * present: separate functions, so no AVX2/SHA-NI mixing in a loop. */
        if (cpu_has_shani()) {
            im->sha1 = totpd_sha1_compress_shani;
            im->sha256 = totpd_sha256_compress_shani;
        }
    }
#endif
    return TOTPD_OK;
}

/* ------------------------------------------------------------------------ */
/* HMAC pad states. A slot is TOTPD_PAD_SLOT_WORDS uint64 words: bytes       */
/* [0, 64) hold the inner chaining state, [64, 128) the outer one.           */

static void prepare_slot(const uint8_t *key, uint32_t key_len, uint8_t alg, const impl_t *im,
                         uint64_t *slot) {
    uint8_t k[128];
    uint8_t pad[128];
    size_t bs;
    /* alg was validated, but comes from a buffer the caller may change during
     * the call: whatever it holds, bs stays within k and pad. */
    switch (alg) {
        case TOTPD_ALG_SHA1:
        case TOTPD_ALG_SHA256: bs = 64; break;
        default: alg = TOTPD_ALG_SHA512; bs = 128; break;
    }
    memset(k, 0, sizeof k);
    if (key_len > bs) {
        if (alg == TOTPD_ALG_SHA1) totpd_sha1(key, key_len, k);
        else if (alg == TOTPD_ALG_SHA256) totpd_sha256(key, key_len, k);
        else totpd_sha512(key, key_len, k);
    } else if (key_len > 0) {
        memcpy(k, key, key_len);
    }
    uint8_t *out = (uint8_t *)slot;
    for (int which = 0; which < 2; which++) {
        uint8_t x = which == 0 ? 0x36 : 0x5c;
        for (size_t i = 0; i < bs; i++) pad[i] = k[i] ^ x;
        if (alg == TOTPD_ALG_SHA512) {
            uint64_t st[8], blk[16];
            memcpy(st, totpd_sha512_iv, sizeof st);
            for (int t = 0; t < 16; t++) blk[t] = totpd_load_be64(pad + 8 * t);
            totpd_sha512_compress_portable(st, blk);
            memcpy(out + 64 * which, st, sizeof st);
            explicit_bzero(st, sizeof st);
            explicit_bzero(blk, sizeof blk);
        } else {
            uint32_t st[8], blk[16];
            for (int t = 0; t < 16; t++) blk[t] = totpd_load_be32(pad + 4 * t);
            if (alg == TOTPD_ALG_SHA1) {
                memcpy(st, totpd_sha1_iv, sizeof totpd_sha1_iv);
                im->sha1(st, blk);
                memcpy(out + 64 * which, st, 20);
            } else {
                memcpy(st, totpd_sha256_iv, sizeof totpd_sha256_iv);
                im->sha256(st, blk);
                memcpy(out + 64 * which, st, 32);
            }
            explicit_bzero(st, sizeof st);
            explicit_bzero(blk, sizeof blk);
        }
    }
    explicit_bzero(k, sizeof k);
    explicit_bzero(pad, sizeof pad);
}

/* ------------------------------------------------------------------------ */
/* One HOTP value from a prepared slot (scalar paths).                       */

static uint32_t hotp_from_slot(const uint64_t *slot, uint8_t alg, uint64_t step, uint8_t digits,
                               const impl_t *im) {
    const uint8_t *s = (const uint8_t *)slot;
    uint32_t w5[5], last, code;
    if (alg == TOTPD_ALG_SHA512) {
        uint64_t st[8], blk[16];
        memcpy(st, s, 64);
        memset(blk, 0, sizeof blk);
        blk[0] = step;
        blk[1] = 0x8000000000000000ull;
        blk[15] = (128 + 8) * 8;
        totpd_sha512_compress_portable(st, blk);
        memcpy(blk, st, 64);
        blk[8] = 0x8000000000000000ull;
        blk[15] = (128 + 64) * 8;
        memcpy(st, s + 64, 64);
        totpd_sha512_compress_portable(st, blk);
        w5[0] = (uint32_t)(st[0] >> 32);
        w5[1] = (uint32_t)st[0];
        w5[2] = (uint32_t)(st[1] >> 32);
        w5[3] = (uint32_t)st[1];
        w5[4] = (uint32_t)(st[2] >> 32);
        last = (uint32_t)(st[7] & 0xff);
        explicit_bzero(st, sizeof st);
        explicit_bzero(blk, sizeof blk);
    } else {
        int sha1 = alg == TOTPD_ALG_SHA1;
        size_t n = sha1 ? 5 : 8;
        totpd_compress32_fn fn = sha1 ? im->sha1 : im->sha256;
        uint32_t st[8], blk[16];
        memcpy(st, s, 4 * n);
        memset(blk, 0, sizeof blk);
        blk[0] = (uint32_t)(step >> 32);
        blk[1] = (uint32_t)step;
        blk[2] = 0x80000000u;
        blk[15] = (64 + 8) * 8;
        fn(st, blk);
        memcpy(blk, st, 4 * n);
        blk[n] = 0x80000000u;
        blk[15] = (uint32_t)((64 + 4 * n) * 8);
        memcpy(st, s + 64, 4 * n);
        fn(st, blk);
        memcpy(w5, st, sizeof w5);
        last = st[n - 1] & 0xffu;
        explicit_bzero(st, sizeof st);
        explicit_bzero(blk, sizeof blk);
    }
    code = reduce_digits(dynamic_truncate(w5, last), digits);
    explicit_bzero(w5, sizeof w5);
    return code;
}

/* Candidate steps counter+d for d = +window .. -window: each one is computed
 * and compared; the mask select keeps the last match, i.e. the lowest step.
 * Steps below zero wrap and are masked out. */
static int64_t verify_scalar(const uint64_t *slot, uint8_t alg, uint8_t digits, uint64_t counter,
                             uint32_t code, uint32_t window, const impl_t *im) {
    uint64_t result = ~(uint64_t)0;
    for (int64_t d = (int64_t)window; d >= -(int64_t)window; d--) {
        uint64_t below = d < 0 ? (uint64_t)(-d) : 0;
        uint64_t valid = ~ct_lt_mask64(counter, below);
        uint64_t step = counter + (uint64_t)d;
        uint32_t got = hotp_from_slot(slot, alg, step, digits, im);
        uint64_t m = ct_zero_mask32(got ^ code) & valid;
        result = (result & ~m) | (step & m);
    }
    return (int64_t)result;
}

#if defined(TOTPD_X86) && defined(TOTPD_SIMD)
/* Eight SHA-1 pairs through the AVX2 kernel; lanes beyond n repeat lane 0. */
static void verify_sha1_x8(totpd_x8_fn x8, const uint64_t *scratch, const uint8_t *digits,
                           const uint64_t *counters, const uint32_t *codes,
                           const uint32_t *pairs, const uint32_t *kidx, int n, uint32_t window,
                           int64_t *out) {
    uint32_t ist[40], ost[40], st[40];
    uint32_t inner[128], outer[128];
    uint64_t result[8], ctr[8];
    uint32_t code[8];
    uint8_t dig[8];
    memset(inner, 0, sizeof inner);
    memset(outer, 0, sizeof outer);
    for (int l = 0; l < 8; l++) {
        int src = l < n ? l : 0;
        uint32_t p = pairs[src], k = kidx[src];
        const uint8_t *s = (const uint8_t *)(scratch + (size_t)k * TOTPD_PAD_SLOT_WORDS);
        uint32_t a[5], b[5];
        memcpy(a, s, 20);
        memcpy(b, s + 64, 20);
        for (int i = 0; i < 5; i++) {
            ist[i * 8 + l] = a[i];
            ost[i * 8 + l] = b[i];
        }
        explicit_bzero(a, sizeof a);
        explicit_bzero(b, sizeof b);
        ctr[l] = counters[k];
        code[l] = codes[p];
        dig[l] = digits[k];
        result[l] = ~(uint64_t)0;
        inner[2 * 8 + l] = 0x80000000u;
        inner[15 * 8 + l] = (64 + 8) * 8;
        outer[5 * 8 + l] = 0x80000000u;
        outer[15 * 8 + l] = (64 + 20) * 8;
    }
    for (int64_t d = (int64_t)window; d >= -(int64_t)window; d--) {
        uint64_t below = d < 0 ? (uint64_t)(-d) : 0;
        for (int l = 0; l < 8; l++) {
            uint64_t step = ctr[l] + (uint64_t)d;
            inner[0 * 8 + l] = (uint32_t)(step >> 32);
            inner[1 * 8 + l] = (uint32_t)step;
        }
        memcpy(st, ist, sizeof st);
        x8(st, inner);
        memcpy(outer, st, sizeof st); /* words 0..4 of every lane */
        memcpy(st, ost, sizeof st);
        x8(st, outer);
        for (int l = 0; l < 8; l++) {
            uint32_t w5[5];
            for (int i = 0; i < 5; i++) w5[i] = st[i * 8 + l];
            uint32_t got = reduce_digits(dynamic_truncate(w5, st[4 * 8 + l] & 0xffu), dig[l]);
            uint64_t valid = ~ct_lt_mask64(ctr[l], below);
            uint64_t step = ctr[l] + (uint64_t)d;
            uint64_t m = ct_zero_mask32(got ^ code[l]) & valid;
            result[l] = (result[l] & ~m) | (step & m);
            explicit_bzero(w5, sizeof w5);
        }
    }
    for (int l = 0; l < n; l++) out[pairs[l]] = (int64_t)result[l];
    explicit_bzero(ist, sizeof ist);
    explicit_bzero(ost, sizeof ost);
    explicit_bzero(st, sizeof st);
    explicit_bzero(inner, sizeof inner);
    explicit_bzero(outer, sizeof outer);
}
#endif

#if defined(TOTPD_X86) && defined(TOTPD_SIMD)
/* Pad states of up to eight SHA-1 keys of at most 64 bytes through the AVX2
 * kernel (two 8-lane compressions for eight keys). Key l is key_ptr[l] of
 * key_len[l] bytes (read once by the caller). Lanes beyond n repeat key 0.
 * Not inlined: its blocks live in its own frame, under the caller's scrub. */
__attribute__((noinline)) static void prepare_sha1_x8(totpd_x8_fn x8,
                                                      const uint8_t *const *key_ptr,
                                                      const uint32_t *key_len,
                                                      const uint32_t *which, int n,
                                                      uint64_t *scratch) {
    uint32_t blk[2][128], st[2][40];
    for (int l = 0; l < 8; l++) {
        int src = l < n ? l : 0;
        uint32_t len = key_len[src] < 64 ? key_len[src] : 64;
        uint8_t k[64];
        memset(k, 0, sizeof k);
        if (len > 0) memcpy(k, key_ptr[src], len);
        for (int t = 0; t < 16; t++) {
            uint32_t w = totpd_load_be32(k + 4 * t);
            blk[0][t * 8 + l] = w ^ 0x36363636u;
            blk[1][t * 8 + l] = w ^ 0x5c5c5c5cu;
        }
        for (int j = 0; j < 5; j++) st[0][j * 8 + l] = st[1][j * 8 + l] = totpd_sha1_iv[j];
        explicit_bzero(k, sizeof k);
    }
    x8(st[0], blk[0]);
    x8(st[1], blk[1]);
    for (int l = 0; l < n; l++) {
        uint32_t inner[5], outer[5];
        for (int j = 0; j < 5; j++) {
            inner[j] = st[0][j * 8 + l];
            outer[j] = st[1][j * 8 + l];
        }
        uint8_t *slot = (uint8_t *)(scratch + (size_t)which[l] * TOTPD_PAD_SLOT_WORDS);
        memcpy(slot, inner, sizeof inner);
        memcpy(slot + 64, outer, sizeof outer);
        explicit_bzero(inner, sizeof inner);
        explicit_bzero(outer, sizeof outer);
    }
    explicit_bzero(blk, sizeof blk);
    explicit_bzero(st, sizeof st);
}
#endif

#if defined(TOTPD_X86) && defined(TOTPD_SIMD)
/* Groups of at most this many pairs (keys) skip the 16-lane SHA-1 and 8-lane
 * SHA-512 kernels for the scalar code: measured here, one SHA-NI stream wins
 * below 5 SHA-1 lanes and the portable SHA-512 on a single lane. */
static const int kScalarTail16 = 4;
static const int kScalarTail8 = 1;

#endif

/* ------------------------------------------------------------------------ */
/* Stack scrubbing. The compressors and kernels leave HMAC pad states (key    */
/* equivalents) in their stack frames: the unrolled portable SHA-1/SHA-256    */
/* spill the chaining state, the fused AVX-512 kernels spill some registers.  */
/* Every public entry point does its work in a noinline callee and then,      */
/* from its own frame, overwrites the stack area that callee and its callees  */
/* used. Sizes from gcc -fstack-usage at -O3: the deepest non-zmm call chain  */
/* uses under 3 KiB (prepare -> prepare_slot -> totpd_sha512 -> compress, or  */
/* verify -> verify_sha1_x8 -> x8 kernel), the zmm kernels under 10 KiB.      */

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

static inline __attribute__((always_inline)) void scrub_stack(int zmm_ran) {
    if (zmm_ran) scrub_stack_large();
    else scrub_stack_small();
}

/* ------------------------------------------------------------------------ */
/* Validation and public entry points.                                       */

static int check_alg(uint8_t alg) {
    return (alg >= TOTPD_ALG_SHA1 && alg <= TOTPD_ALG_SHA512) ? TOTPD_OK : TOTPD_ERR_ALGORITHM;
}

static int check_digits(uint8_t digits) {
    return (digits >= TOTPD_MIN_DIGITS && digits <= TOTPD_MAX_DIGITS) ? TOTPD_OK
                                                                      : TOTPD_ERR_DIGITS;
}

static int check_table(const uint8_t *algorithms, const uint8_t *digits, const uint64_t *counters,
                       uint32_t n_keys, uint32_t window) {
    if (window > TOTPD_MAX_WINDOW) return TOTPD_ERR_WINDOW;
    for (uint32_t i = 0; i < n_keys; i++) {
        int rc = check_alg(algorithms[i]);
        if (rc == TOTPD_OK && digits) rc = check_digits(digits[i]);
        if (rc != TOTPD_OK) return rc;
        if (counters && counters[i] > (uint64_t)INT64_MAX - window) return TOTPD_ERR_COUNTER;
    }
    return TOTPD_OK;
}

static int check_offsets(const uint32_t *key_offsets, uint32_t n_keys, uint32_t keys_len) {
    if (key_offsets[0] != 0) return TOTPD_ERR_OFFSETS;
    for (uint32_t i = 0; i < n_keys; i++)
        if (key_offsets[i + 1] < key_offsets[i]) return TOTPD_ERR_OFFSETS;
    if (key_offsets[n_keys] > keys_len) return TOTPD_ERR_OFFSETS;
    return TOTPD_OK;
}

/* One read of a value in a caller's buffer, which the compiler may not repeat
 * (a plain load it could legally reload later, after the checks). */
static inline uint32_t read_once_u32(const uint32_t *p) { return *(const volatile uint32_t *)p; }
static inline uint8_t read_once_u8(const uint8_t *p) { return *(const volatile uint8_t *)p; }

/* Key i of the table, its two offsets read once and clamped into the key
 * buffer. The offsets were validated, but the caller's buffers may change
 * during the call (cffi releases the GIL): every later use of key i goes
 * through these values, never through key_offsets again, so no change can
 * move a read outside keys[0, keys_len) or a copy past its buffer. Only
 * public lengths decide the branches. */
static inline const uint8_t *key_span(const uint8_t *keys, uint32_t keys_len,
                                      const uint32_t *key_offsets, uint32_t i, uint32_t *len) {
    uint32_t lo = read_once_u32(key_offsets + i), hi = read_once_u32(key_offsets + i + 1);
    if (lo > keys_len) lo = keys_len;
    if (hi > keys_len) hi = keys_len;
    if (hi < lo) hi = lo;
    *len = hi - lo;
    return keys ? keys + lo : NULL; /* keys == NULL only with keys_len == 0 */
}

/* The work of totpd_hotp, below its frame (see the stack scrubbing above). */
__attribute__((noinline)) static uint32_t hotp_work(const uint8_t *key, uint32_t key_len,
                                                    uint8_t algorithm, uint8_t digits,
                                                    uint64_t counter, const impl_t *im) {
    uint64_t slot[TOTPD_PAD_SLOT_WORDS];
    prepare_slot(key, key_len, algorithm, im, slot);
    /* Scalar SHA-1/SHA-256 here run the path's scalar compressor: SHA-NI on
     * every SIMD path where the CPU has it, else the portable one. */
    uint32_t code = hotp_from_slot(slot, algorithm, counter, digits, im);
    explicit_bzero(slot, sizeof slot);
    return code;
}

int totpd_hotp(const uint8_t *key, uint32_t key_len, uint8_t algorithm, uint8_t digits,
               uint64_t counter, int path, uint32_t *out_code) {
    impl_t im;
    int rc;
    if (!out_code || (!key && key_len > 0)) return TOTPD_ERR_NULL;
    if ((rc = check_alg(algorithm)) != TOTPD_OK) return rc;
    if ((rc = check_digits(digits)) != TOTPD_OK) return rc;
    if ((rc = resolve_impl(path, &im)) != TOTPD_OK) return rc;
    *out_code = hotp_work(key, key_len, algorithm, digits, counter, &im);
    scrub_stack(0);
    return TOTPD_OK;
}

/* The work of totpd_prepare_keys, after validation. Memory-safe whatever the
 * caller's buffers hold by now: each key's offsets and algorithm are read once
 * (key_span) and the kernels get those values, not the buffers. Returns 1 if
 * a zmm kernel ran (its frame needs the large scrub). */
__attribute__((noinline)) static int prepare_work(const uint8_t *keys, uint32_t keys_len,
                                                  const uint32_t *key_offsets,
                                                  const uint8_t *algorithms, uint32_t first_key,
                                                  uint32_t end_key, const impl_t *im,
                                                  uint64_t *scratch) {
    int zmm_ran = 0;
#if defined(TOTPD_X86) && defined(TOTPD_SIMD)
    uint32_t lanes[8], lanes16[16], lanes512[8];
    uint32_t len8[8], len16[16], len512[8];
    const uint8_t *ptr8[8], *ptr16[16], *ptr512[8];
    int n_lanes = 0, n16 = 0, n512 = 0;
#endif
    for (uint32_t i = first_key; i < end_key; i++) {
        uint32_t len;
        const uint8_t *k = key_span(keys, keys_len, key_offsets, i, &len);
        uint8_t alg = read_once_u8(algorithms + i);
#if defined(TOTPD_X86) && defined(TOTPD_SIMD)
        if (im->zmm && alg == TOTPD_ALG_SHA1 && len <= 64) {
            lanes16[n16] = i;
            ptr16[n16] = k;
            len16[n16++] = len;
            if (n16 == 16) {
                totpd_sha1_prepare_x16(ptr16, len16, lanes16, 16, scratch);
                n16 = 0;
                zmm_ran = 1;
            }
            continue;
        }
        if (im->zmm && alg == TOTPD_ALG_SHA512 && len <= 128) {
            lanes512[n512] = i;
            ptr512[n512] = k;
            len512[n512++] = len;
            if (n512 == 8) {
                totpd_sha512_prepare_x8(ptr512, len512, lanes512, 8, scratch);
                n512 = 0;
                zmm_ran = 1;
            }
            continue;
        }
        if (im->sha1_x8 && alg == TOTPD_ALG_SHA1 && len <= 64) {
            lanes[n_lanes] = i;
            ptr8[n_lanes] = k;
            len8[n_lanes++] = len;
            if (n_lanes == 8) {
                prepare_sha1_x8(im->x8, ptr8, len8, lanes, 8, scratch);
                n_lanes = 0;
            }
            continue;
        }
#endif
        prepare_slot(k, len, alg, im, scratch + (size_t)i * TOTPD_PAD_SLOT_WORDS);
    }
#if defined(TOTPD_X86) && defined(TOTPD_SIMD)
    if (n_lanes > 0) prepare_sha1_x8(im->x8, ptr8, len8, lanes, n_lanes, scratch);
    /* Short tails: a scalar stream beats a mostly idle 16 (8) lane kernel. */
    if (n16 > kScalarTail16) {
        totpd_sha1_prepare_x16(ptr16, len16, lanes16, n16, scratch);
        zmm_ran = 1;
    } else {
        for (int l = 0; l < n16; l++)
            prepare_slot(ptr16[l], len16[l], TOTPD_ALG_SHA1, im,
                         scratch + (size_t)lanes16[l] * TOTPD_PAD_SLOT_WORDS);
    }
    if (n512 > kScalarTail8) {
        totpd_sha512_prepare_x8(ptr512, len512, lanes512, n512, scratch);
        zmm_ran = 1;
    } else {
        for (int l = 0; l < n512; l++)
            prepare_slot(ptr512[l], len512[l], TOTPD_ALG_SHA512, im,
                         scratch + (size_t)lanes512[l] * TOTPD_PAD_SLOT_WORDS);
    }
#endif
    return zmm_ran;
}

int totpd_prepare_keys(const uint8_t *keys, uint32_t keys_len, const uint32_t *key_offsets,
                       const uint8_t *algorithms, uint32_t n_keys, uint32_t first_key,
                       uint32_t end_key, int path, uint64_t *scratch) {
    impl_t im;
    int rc;
    if (!key_offsets || (n_keys > 0 && (!algorithms || !scratch)) || (!keys && keys_len > 0))
        return TOTPD_ERR_NULL;
    if (first_key > end_key || end_key > n_keys) return TOTPD_ERR_RANGE;
    if ((rc = check_offsets(key_offsets, n_keys, keys_len)) != TOTPD_OK) return rc;
    if ((rc = check_table(algorithms, NULL, NULL, n_keys, 0)) != TOTPD_OK) return rc;
    if ((rc = resolve_impl(path, &im)) != TOTPD_OK) return rc;
    if (first_key == end_key) return TOTPD_OK;
    scrub_stack(
        prepare_work(keys, keys_len, key_offsets, algorithms, first_key, end_key, &im, scratch));
    return TOTPD_OK;
}

/* The work of totpd_verify_prepared, after validation. Memory-safe whatever
 * the caller's buffers hold by now: each pair's key index is read once and
 * re-checked against n_keys (a key index changed since validation selects key
 * 0, never memory outside the table), and the kernels get that index, not
 * key_index. Returns 1 if a zmm kernel ran. */
__attribute__((noinline)) static int verify_work(const uint64_t *scratch,
                                                 const uint8_t *algorithms,
                                                 const uint8_t *digits, const uint64_t *counters,
                                                 uint32_t n_keys, const uint32_t *key_index,
                                                 const uint32_t *codes, uint32_t n_pairs,
                                                 uint32_t window, const impl_t *im,
                                                 int64_t *out_matched) {
    int zmm_ran = 0;
#if defined(TOTPD_X86) && defined(TOTPD_SIMD)
    uint32_t lanes[8], lanes16[16], lanes512[8];
    uint32_t key8[8], key16[16], key512[8];
    int n_lanes = 0, n16 = 0, n512 = 0;
#endif
    for (uint32_t j = 0; j < n_pairs; j++) {
        uint32_t k = read_once_u32(key_index + j);
        k = k < n_keys ? k : 0; /* n_keys > 0: validation saw n_pairs > 0 valid indices */
        uint8_t alg = read_once_u8(algorithms + k);
#if defined(TOTPD_X86) && defined(TOTPD_SIMD)
        if (im->zmm && alg == TOTPD_ALG_SHA1) {
            lanes16[n16] = j;
            key16[n16++] = k;
            if (n16 == 16) {
                totpd_sha1_verify_x16(scratch, digits, counters, codes, lanes16, key16, 16,
                                      window, out_matched);
                n16 = 0;
                zmm_ran = 1;
            }
            continue;
        }
        if (im->zmm && alg == TOTPD_ALG_SHA512) {
            lanes512[n512] = j;
            key512[n512++] = k;
            if (n512 == 8) {
                totpd_sha512_verify_x8(scratch, digits, counters, codes, lanes512, key512, 8,
                                       window, out_matched);
                n512 = 0;
                zmm_ran = 1;
            }
            continue;
        }
        if (im->sha1_x8 && alg == TOTPD_ALG_SHA1) {
            lanes[n_lanes] = j;
            key8[n_lanes++] = k;
            if (n_lanes == 8) {
                verify_sha1_x8(im->x8, scratch, digits, counters, codes, lanes, key8, 8, window,
                               out_matched);
                n_lanes = 0;
            }
            continue;
        }
#endif
        out_matched[j] = verify_scalar(scratch + (size_t)k * TOTPD_PAD_SLOT_WORDS, alg, digits[k],
                                       counters[k], codes[j], window, im);
    }
#if defined(TOTPD_X86) && defined(TOTPD_SIMD)
    if (n_lanes > 0)
        verify_sha1_x8(im->x8, scratch, digits, counters, codes, lanes, key8, n_lanes, window,
                       out_matched);
    if (n16 > kScalarTail16) {
        totpd_sha1_verify_x16(scratch, digits, counters, codes, lanes16, key16, n16, window,
                              out_matched);
        zmm_ran = 1;
    } else {
        for (int l = 0; l < n16; l++) {
            uint32_t j = lanes16[l], k = key16[l];
            out_matched[j] = verify_scalar(scratch + (size_t)k * TOTPD_PAD_SLOT_WORDS,
                                           TOTPD_ALG_SHA1, digits[k], counters[k], codes[j],
                                           window, im);
        }
    }
    if (n512 > kScalarTail8) {
        totpd_sha512_verify_x8(scratch, digits, counters, codes, lanes512, key512, n512, window,
                               out_matched);
        zmm_ran = 1;
    } else {
        for (int l = 0; l < n512; l++) {
            uint32_t j = lanes512[l], k = key512[l];
            out_matched[j] = verify_scalar(scratch + (size_t)k * TOTPD_PAD_SLOT_WORDS,
                                           TOTPD_ALG_SHA512, digits[k], counters[k], codes[j],
                                           window, im);
        }
    }
#endif
    return zmm_ran;
}

int totpd_verify_prepared(const uint64_t *scratch, const uint8_t *algorithms,
                          const uint8_t *digits, const uint64_t *counters, uint32_t n_keys,
                          const uint32_t *key_index, const uint32_t *codes, uint32_t n_pairs,
                          uint32_t window, int path, int64_t *out_matched) {
    impl_t im;
    int rc;
    if (n_keys > 0 && (!scratch || !algorithms || !digits || !counters)) return TOTPD_ERR_NULL;
    if (n_pairs > 0 && (!key_index || !codes || !out_matched)) return TOTPD_ERR_NULL;
    if ((rc = check_table(algorithms, digits, counters, n_keys, window)) != TOTPD_OK) return rc;
    for (uint32_t j = 0; j < n_pairs; j++)
        if (key_index[j] >= n_keys) return TOTPD_ERR_KEY_INDEX;
    if ((rc = resolve_impl(path, &im)) != TOTPD_OK) return rc;
    if (n_pairs == 0) return TOTPD_OK;
    scrub_stack(verify_work(scratch, algorithms, digits, counters, n_keys, key_index, codes,
                            n_pairs, window, &im, out_matched));
    return TOTPD_OK;
}

int totpd_verify_batch(const uint8_t *keys, uint32_t keys_len, const uint32_t *key_offsets,
                       const uint8_t *algorithms, const uint8_t *digits,
                       const uint64_t *counters, uint32_t n_keys, const uint32_t *key_index,
                       const uint32_t *codes, uint32_t n_pairs, uint32_t window, int path,
                       uint64_t *scratch, int64_t *out_matched) {
    impl_t im;
    int rc;
    if (!key_offsets) return TOTPD_ERR_NULL;
    /* Validate everything before touching scratch or output. */
    if (n_keys > 0 && (!scratch || !algorithms || !digits || !counters)) return TOTPD_ERR_NULL;
    if (n_pairs > 0 && (!key_index || !codes || !out_matched)) return TOTPD_ERR_NULL;
    if (!keys && keys_len > 0) return TOTPD_ERR_NULL;
    if ((rc = check_offsets(key_offsets, n_keys, keys_len)) != TOTPD_OK) return rc;
    if ((rc = check_table(algorithms, digits, counters, n_keys, window)) != TOTPD_OK) return rc;
    for (uint32_t j = 0; j < n_pairs; j++)
        if (key_index[j] >= n_keys) return TOTPD_ERR_KEY_INDEX;
    if ((rc = resolve_impl(path, &im)) != TOTPD_OK) return rc;
    if (n_keys == 0) return TOTPD_OK; /* and so n_pairs == 0 */

    int zmm_ran = prepare_work(keys, keys_len, key_offsets, algorithms, 0, n_keys, &im, scratch);
    if (n_pairs > 0)
        zmm_ran |= verify_work(scratch, algorithms, digits, counters, n_keys, key_index, codes,
                               n_pairs, window, &im, out_matched);
    explicit_bzero(scratch, (size_t)n_keys * TOTPD_PAD_SLOT_WORDS * sizeof(uint64_t));
    scrub_stack(zmm_ran);
    return TOTPD_OK;
}

void totpd_wipe(void *buf, size_t len) {
    if (buf && len) explicit_bzero(buf, len);
}
